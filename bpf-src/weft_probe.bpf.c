// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark probes: one map lookup per run, so `weft-bench lookup` can tell what a lookup in a
 * map of a given size costs. The key comes from the packet's IPv4 addresses (source, then
 * destination). Never attached.
 */
#include "weft_bpf.h"

struct weft_probe_key {
	__u32 prefixlen;
	__u32 hi; /* the packet's source address */
	__u32 lo; /* the packet's destination address */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4194304);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_probe_key);
	__type(value, __u32);
} weft_probe_lpm SEC(".maps");

WEFT_INLINE int weft_probe_read(struct __sk_buff *skb, struct weft_probe_key *k)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > end)
		return -1;
	k->prefixlen = 64;
	k->hi = ip->saddr;
	k->lo = ip->daddr;
	return 0;
}

/* The same work without the lookup. */
SEC("tc")
int weft_probe_none(struct __sk_buff *skb)
{
	struct weft_probe_key k;

	if (weft_probe_read(skb, &k))
		return WEFT_DROP;
	return k.lo == 0 ? WEFT_DROP : WEFT_PASS;
}

SEC("tc")
int weft_probe_lpm_lookup(struct __sk_buff *skb)
{
	struct weft_probe_key k;

	if (weft_probe_read(skb, &k))
		return WEFT_DROP;
	return bpf_map_lookup_elem(&weft_probe_lpm, &k) ? WEFT_PASS : WEFT_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
