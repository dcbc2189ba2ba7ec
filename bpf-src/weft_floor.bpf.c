// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The benchmark floors: the same header parsing as weft_wep, then pass; and for XDP, a drop
 * that looks at nothing. `weft-bench` reports weft's per-packet cost beside these, measured in
 * the same run. Never attached.
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

SEC("xdp")
int weft_xdp_floor(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
