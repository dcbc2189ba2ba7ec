// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Workload endpoints: the programs on the host side of a workload's veth.
 *
 *   weft_from_wep  tc ingress: packets the workload sends (its egress policy; services)
 *   weft_to_wep    tc egress:  packets to the workload (its ingress policy)
 *
 * One load serves every workload interface; what differs per interface (its rulesets) is in
 * weft_iface. The pipeline itself is in include/flow.h.
 */
#include "weft_bpf.h"
#include "weft_defs_maps.h"
#include "flow.h"

SEC("tc")
int weft_from_wep(struct __sk_buff *skb)
{
	return weft_tc(skb, WEFT_HOOK_FROM_WEP);
}

SEC("tc")
int weft_to_wep(struct __sk_buff *skb)
{
	return weft_tc(skb, WEFT_HOOK_TO_WEP);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
