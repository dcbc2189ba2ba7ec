// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The benchmark floor: the same header parsing as weft_wep, then pass. `weft-bench` reports
 * weft's per-packet cost beside this one's, measured in the same run. Never attached.
 */
#include "weft_bpf.h"
#include "parse.h"

SEC("tc")
int weft_floor(struct __sk_buff *skb)
{
	struct weft_pkt4 p;

	if (weft_parse4(skb, &p) != WEFT_PARSE_IPV4)
		return WEFT_DROP;
	return WEFT_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
