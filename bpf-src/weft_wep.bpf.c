// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "weft_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1000);
	__type(key, __u32);
	__type(value, struct weft_iface_value);
} weft_iface SEC(".maps");

const volatile __u64 weft_object_id = 0;

SEC("tc")
int weft_from_wep(struct __sk_buff *skb)
{
	__u32 k = skb->ifindex;
	struct weft_iface_value *v = bpf_map_lookup_elem(&weft_iface, &k);
	return v ? 0 : 2 + (int)weft_object_id;
}
char LICENSE[] SEC("license") = "Dual BSD/GPL";
