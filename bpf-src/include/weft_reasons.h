/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Why a packet was accepted or dropped: the index into struct weft_counters.packets.
 *
 * Append only, never renumber: counters are pinned. Rust's constants are generated from this
 * file (reconciler/src/abi.rs); the names `weft dump counters` shows are in
 * reconciler/src/bpf/reasons.rs, one per reason up to WEFT_REASON_MAX (checked at compile time).
 */
#ifndef WEFT_REASONS_H
#define WEFT_REASONS_H

enum weft_reason {
	WEFT_REASON_ACCEPT_POLICY = 0,    /* new flow allowed by policy */
	WEFT_REASON_ACCEPT_CT = 1,        /* packet of a known flow */
	WEFT_REASON_ACCEPT_RELATED = 2,   /* ICMP error about a known flow */
	WEFT_REASON_ACCEPT_ARP = 3,       /* ARP: the host answers it */
	WEFT_REASON_DROP_POLICY = 4,      /* denied by policy, tier end or profile end */
	WEFT_REASON_DROP_SHORT = 5,       /* truncated Ethernet, IP or L4 header */
	WEFT_REASON_DROP_BAD_IP = 6,      /* IPv4 header fails sanity checks */
	WEFT_REASON_DROP_FRAGMENT = 7,    /* non-first IPv4 fragment: ports unknown */
	WEFT_REASON_DROP_SPOOFED = 8,     /* source address is not the workload's */
	WEFT_REASON_DROP_ETHERTYPE = 9,   /* neither IPv4 nor ARP */
	WEFT_REASON_DROP_EP_TO_HOST = 10, /* DefaultEndpointToHostAction: Drop */
	WEFT_REASON_DROP_NO_IFACE = 11,   /* program on an interface weft has no entry for */
	WEFT_REASON_DROP_CT_FULL = 12,    /* conntrack entry could not be created */
	WEFT_REASON_DROP_IPV6 = 13,       /* IPv6 is not programmed yet */
	WEFT_REASON_ACCEPT_NAT = 14,      /* new flow to a service, translated to a backend */
	WEFT_REASON_REJECT_NO_BACKEND = 15, /* service without ready backends: ICMP unreachable sent */
	WEFT_REASON_DROP_SRC_RANGE = 16,  /* client outside loadBalancerSourceRanges */
	WEFT_REASON_DROP_NAT = 17,        /* translation failed (packet rewrite) */
	WEFT_REASON_ACCEPT_HOST = 18,     /* host interface traffic that is none of weft's business */
	WEFT_REASON_ACCEPT_FAILSAFE = 19, /* host endpoint: a failsafe port */
	WEFT_REASON_ACCEPT_UNTRACKED = 20, /* host endpoint: allowed by doNotTrack policy, untracked */
	WEFT_REASON_DROP_UNTRACKED = 21,  /* host endpoint: denied by doNotTrack policy */
	WEFT_REASON_DROP_PREDNAT = 22,    /* host endpoint: denied by preDNAT policy */
	WEFT_REASON_DROP_RPF = 23,        /* bpfEnforceRPF: the source's route is not where it came in */
	WEFT_REASON_ACCEPT_XDP_FWD = 24,  /* known service flow sent on to its backend's node from XDP */
	WEFT_REASON_MAX = 25,
};

#endif /* WEFT_REASONS_H */
