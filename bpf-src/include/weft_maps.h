/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every BPF map weft pins, with its key and value layout: the one place they are defined.
 *
 * Rules for this file:
 *  - fixed-width types only, padding spelled out, a _Static_assert on every size;
 *  - addresses in network byte order, ports in host byte order unless a field says otherwise;
 *  - a layout change is a new map version (a new map name suffix) and a migration, never an
 *    in-place edit of a pinned map.
 *
 * Mirrors (keep in step): reconciler/src/bpf/maps.rs (the Rust side, built from the skeleton's
 * generated types; a test checks sizes against the object's BTF); the classifier's #defines in
 * reconciler/src/policy/tables.rs (a test reads them from this file).
 */
#ifndef WEFT_MAPS_H
#define WEFT_MAPS_H

#include <linux/types.h>

/* ---- Conntrack ---------------------------------------------------------------------------- */

/*
 * A flow is stored once, under its normalised tuple: (addr_a, port_a) <= (addr_b, port_b)
 * compared as (address, port). An ICMP query (echo, timestamp...) has the identifier as the
 * requester's port and the identifier plus one as the responder's (parse.h says why).
 */
struct weft_ct4_key {
	__u32 addr_a;
	__u32 addr_b;
	__u16 port_a;
	__u16 port_b;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct weft_ct4_key) == 16, "weft_ct4_key");

enum weft_ct_type {
	WEFT_CT_NORMAL = 0,
	WEFT_CT_NAT_FWD = 1, /* pre-NAT tuple; points at the reverse entry (services) */
	WEFT_CT_NAT_REV = 2, /* post-NAT tuple; carries the original destination (services) */
};

/* weft_ct4_value.flags */
#define WEFT_CT_F_B_ORIGINATED 0x01 /* the first packet came from side b */
#define WEFT_CT_F_MIDFLOW 0x02      /* created from a TCP packet that was not a SYN */

/* weft_ct_leg.tcp_flags: what the side sent */
#define WEFT_CT_LEG_SYN 0x01
#define WEFT_CT_LEG_ACK 0x02
#define WEFT_CT_LEG_FIN 0x04
#define WEFT_CT_LEG_RST 0x08

/*
 * One side of a flow. approved_by is the policy ruleset of that side's endpoint that allowed the
 * flow (its egress ruleset if it originated the flow, its ingress ruleset if it answered). A
 * packet whose endpoint side is approved by the endpoint's current ruleset skips policy; a
 * policy change gives the endpoint a new ruleset id, so its flows are judged again, once.
 */
struct weft_ct_leg {
	__u32 approved_by;
	__u8 tcp_flags;
	__u8 pad[3];
};
_Static_assert(sizeof(struct weft_ct_leg) == 8, "weft_ct_leg");

struct weft_ct4_value {
	__u64 created_ns;   /* bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC, tick resolution) */
	__u64 last_seen_ns; /* ditto; the garbage collector compares it with the timeouts */
	__u8 type;          /* enum weft_ct_type */
	__u8 flags;         /* WEFT_CT_F_* */
	__u8 pad0[6];
	struct weft_ct_leg leg_a;
	struct weft_ct_leg leg_b;
	/* Service NAT (later issues); zero for WEFT_CT_NORMAL. */
	struct weft_ct4_key nat_rev_key; /* NAT_FWD: the reverse entry's key */
	__u32 nat_orig_daddr;            /* NAT_REV: frontend address replies are rewritten to */
	__u16 nat_orig_dport;
	__u16 pad1;
	__u32 nat_orig_saddr; /* NAT_REV with SNAT: the client's original address */
	__u16 nat_orig_sport;
	__u16 pad2;
	__u32 tun_addr; /* VXLAN: the node the flow is tunnelled to or from */
	__u32 pad3;
};
_Static_assert(sizeof(struct weft_ct4_value) == 80, "weft_ct4_value");

/* ---- Conntrack garbage collection --------------------------------------------------------- */
/*
 * The context of the weft_ctgc program (bpf-src/weft_ctgc.bpf.c), passed in and read back
 * through BPF_PROG_TEST_RUN. One index space for the timeouts going in and the tallies coming
 * out: what expired under which timeout.
 */
#define WEFT_CTGC_GRACE 0           /* timeout: CreationGracePeriod (nothing expires by it) */
#define WEFT_CTGC_TCP_SYN_SENT 1    /* a TCP flow not yet acknowledged by both sides */
#define WEFT_CTGC_TCP_ESTABLISHED 2
#define WEFT_CTGC_TCP_FINS 3        /* both sides have sent FIN */
#define WEFT_CTGC_TCP_RST 4
#define WEFT_CTGC_UDP 5
#define WEFT_CTGC_GENERIC 6         /* protocols other than TCP, UDP and ICMP */
#define WEFT_CTGC_ICMP 7
#define WEFT_CTGC_NAT_ORPHAN 8      /* tally: a NAT forward entry whose reverse entry is gone */
#define WEFT_CTGC_SLOTS 9

struct weft_ctgc_args {
	__u64 timeout_ns[WEFT_CTGC_SLOTS]; /* in: idle time after which an entry expires */
	__u64 now_ns;                      /* out: bpf_ktime_get_ns() at the start of the pass */
	__u64 scanned;                     /* out: entries visited */
	__u64 nat_fwd_deleted;             /* out: forward entries deleted with their reverse entry */
	__u64 expired[WEFT_CTGC_SLOTS];    /* out: entries deleted, by the timeout that expired */
};
_Static_assert(sizeof(struct weft_ctgc_args) == 168, "weft_ctgc_args");

/* ---- Interfaces ---------------------------------------------------------------------------- */

/* weft_iface_value.flags */
#define WEFT_IFACE_F_WORKLOAD 0x01 /* host side of a workload's veth */
#define WEFT_IFACE_F_DATA 0x02     /* a host interface facing the network (BPFDataIfacePattern) */
#define WEFT_IFACE_F_NAT 0x04      /* bpfout.weft: host traffic to services routed through weft */
#define WEFT_IFACE_F_TRACE 0x08    /* bpfLogLevel Debug: trace packets here (weft_trace_flt says which) */

struct weft_iface_value {
	__u32 flags;       /* WEFT_IFACE_F_* */
	__u32 ruleset_in;  /* policy for traffic to the endpoint; 0 = none loaded: drop */
	__u32 ruleset_out; /* policy for traffic from the endpoint; 0 = none loaded: drop */
	__u32 pad;
	char name[16]; /* for logs and dumps only */
};
_Static_assert(sizeof(struct weft_iface_value) == 32, "weft_iface_value");

/* ---- Routes -------------------------------------------------------------------------------- */

/* weft_route_value.flags */
#define WEFT_RT_F_LOCAL_HOST 0x01     /* an address of this host */
#define WEFT_RT_F_LOCAL_WORKLOAD 0x02 /* a workload on this host, behind ifindex */
#define WEFT_RT_F_REMOTE_WORKLOAD 0x04 /* a workload on another host, at next_hop */
#define WEFT_RT_F_IN_POOL 0x08        /* inside an IPPool */
#define WEFT_RT_F_NAT_OUTGOING 0x10   /* inside an IPPool with natOutgoing */

struct weft_route4_key {
	__u32 prefixlen;
	__u32 addr;
};
_Static_assert(sizeof(struct weft_route4_key) == 8, "weft_route4_key");

struct weft_route_value {
	__u32 flags;    /* WEFT_RT_F_* */
	__u32 ifindex;  /* LOCAL_WORKLOAD: the host-side interface */
	__u32 next_hop; /* REMOTE_WORKLOAD: the node's address */
	__u32 pad;
};
_Static_assert(sizeof(struct weft_route_value) == 16, "weft_route_value");

/* ---- Policy classifier --------------------------------------------------------------------- */
/*
 * Each endpoint direction's ordered tiers, policies, rules and profiles are compiled in
 * userspace into a ruleset: a few step functions that answer in a fixed number of steps
 * whatever the number of rules. A flow is described from the endpoint's point of view, in the
 * flow's own direction: the peer address (the source for ingress, the destination for egress),
 * the local address, the protocol, the originator's port (sport) and the responder's port
 * (dport; for ICMP the first packet's type << 8 | code).
 *
 * A ruleset is one array of 64-byte cells (an inner map of weft_pol_rs, keyed by the
 * ruleset's 32-bit id, written once and frozen). Cell 0 is the header (WEFT_POL_H_* words).
 * Every step function is a trie of 16-way nodes, one node per cell: an entry with
 * WEFT_POL_LEAF set is a value (the low 31 bits), otherwise the index of the next node's cell;
 * each node consumes the next 4 bits of the key, most significant first. A lookup thus reads
 * at most 8 nodes for an address and 6 for (protocol << 16 | port), however large the trie.
 * Tables are arrays of 32-bit words numbered across cells (word i is w[i % 16] of cell i / 16):
 *
 *   1. address trie (root WEFT_POL_H_ADDR_ROOT, key: peer address, host order) -> aclass;
 *   2. only with WEFT_RS_F_CTX: the local address's index l among the endpoint's (the first
 *      of the header's inline addresses it equals, else their count; with more than
 *      WEFT_POL_INLINE_LOCALS addresses, the local trie at WEFT_POL_H_LOCAL_ROOT says), then
 *      ctx root table word WEFT_POL_H_CTX_ROOTS + l -> a trie keyed by (protocol << 16 |
 *      sport) -> cclass; otherwise cclass is 0;
 *   3. rows table word WEFT_POL_H_ROWS + aclass * contexts + cclass -> the root of the class's
 *      function, keyed by (protocol << 16 | dport) -> a verdict index. A class's function is
 *      laid over the function every class shares (the rules that name no peer; its root per
 *      context class is at WEFT_POL_H_BACKGROUND + cclass): where the class adds nothing its
 *      trie points into the shared one, so each class costs only the nodes of its own rules;
 *   4. verdict i: words WEFT_POL_H_VERDICTS + 2i (action | flags << 8) and + 2i + 1 (the
 *      deciding rule's id); the table starts a cell, so a verdict never straddles two.
 *
 * A changed policy is written under a new id and switched to by one update of the interface
 * entry, so no packet ever sees half a policy; the old ruleset is deleted from weft_pol_rs
 * after, and the kernel frees its cells once no program can still be reading them.
 */

#define WEFT_POL_CELL_WORDS 16
#define WEFT_POL_STRIDE 4 /* bits a node consumes */
#define WEFT_POL_LEAF 0x80000000u
#define WEFT_POL_MAGIC 0x77706c31u /* "wpl1": this layout */

struct weft_pol_cell {
	__u32 w[WEFT_POL_CELL_WORDS];
};
_Static_assert(sizeof(struct weft_pol_cell) == 64, "weft_pol_cell");

/* Header words (cell 0). */
#define WEFT_POL_H_MAGIC 0
#define WEFT_POL_H_FLAGS 1      /* WEFT_RS_F_* */
#define WEFT_POL_H_CONTEXTS 2   /* context classes (1 without WEFT_RS_F_CTX) */
#define WEFT_POL_H_ADDR_ROOT 3  /* entry */
#define WEFT_POL_H_LOCAL_ROOT 4 /* entry */
#define WEFT_POL_H_CTX_ROOTS 5  /* word index */
#define WEFT_POL_H_ROWS 6       /* word index */
#define WEFT_POL_H_BACKGROUND 7 /* word index */
#define WEFT_POL_H_VERDICTS 8   /* word index */
#define WEFT_POL_H_CELLS 9      /* cells in the ruleset */
#define WEFT_POL_H_ID 10        /* the ruleset's id: a hash of everything else */
#define WEFT_POL_H_LOCALS 11    /* the endpoint's local addresses (with WEFT_RS_F_CTX) */
#define WEFT_POL_H_LOCAL0 12    /* up to WEFT_POL_INLINE_LOCALS of them, host order */
#define WEFT_POL_INLINE_LOCALS 4

/* WEFT_POL_H_FLAGS */
#define WEFT_RS_F_CTX 0x01 /* rules look at the local address or the source port */

/* Verdict actions (low byte of a verdict's first word) and flags (second byte). */
#define WEFT_ACT_DENY 0
#define WEFT_ACT_ALLOW 1
#define WEFT_VERDICT_F_LOG 0x01 /* a Log rule matched before the deciding rule */

/* ---- Services (NAT) ------------------------------------------------------------------------ */
/*
 * A frontend is an (address, port, protocol) a client connects to: a ClusterIP, an external
 * IP, a LoadBalancer ingress IP, or a host address with a NodePort. Its backends are
 * (svc_id, ordinal) entries, local ones first, so [0, local_count) is the local subset.
 */
struct weft_nat_fe4_key {
	__u32 addr;
	__u16 port; /* host order */
	__u8 proto;
	__u8 pad;
};
_Static_assert(sizeof(struct weft_nat_fe4_key) == 8, "weft_nat_fe4_key");

/* weft_nat_fe_value.flags */
#define WEFT_NAT_F_LOCAL_ONLY 0x01 /* only local backends ([0, local_count)): traffic policy Local */
#define WEFT_NAT_F_SRC_RANGES 0x02 /* clients must be in weft_nat_src4 (loadBalancerSourceRanges) */
#define WEFT_NAT_F_MAGLEV 0x04     /* backends come from weft_maglev, by a hash of the flow */

struct weft_nat_fe_value {
	__u32 svc_id;             /* names the service port's backend list */
	__u32 count;              /* backends; 0: the service has none ready and rejects */
	__u32 local_count;        /* of which the first local_count are on this node */
	__u32 affinity_timeout_s; /* sessionAffinity ClientIP; 0: none */
	__u32 flags;              /* WEFT_NAT_F_* */
	__u32 maglev_size;        /* WEFT_NAT_F_MAGLEV: slots in the lookup table */
};
_Static_assert(sizeof(struct weft_nat_fe_value) == 24, "weft_nat_fe_value");

struct weft_nat_be_key {
	__u32 svc_id;
	__u32 ordinal; /* or, in weft_maglev, the slot */
};
_Static_assert(sizeof(struct weft_nat_be_key) == 8, "weft_nat_be_key");

struct weft_nat_be4_value {
	__u32 addr;
	__u16 port; /* host order */
	__u16 pad;
};
_Static_assert(sizeof(struct weft_nat_be4_value) == 8, "weft_nat_be4_value");

/* loadBalancerSourceRanges: (svc_id, client prefix) -> allowed. */
struct weft_nat_src4_key {
	__u32 prefixlen; /* 32 + client prefix length */
	__u32 svc_id;
	__u32 addr;
};
_Static_assert(sizeof(struct weft_nat_src4_key) == 12, "weft_nat_src4_key");

/* sessionAffinity ClientIP: the backend a client was last given. */
struct weft_nat_aff4_key {
	__u32 svc_id;
	__u32 client;
};
_Static_assert(sizeof(struct weft_nat_aff4_key) == 8, "weft_nat_aff4_key");

struct weft_nat_aff4_value {
	__u64 used_ns;  /* bpf_ktime_get_ns() of the last flow that used it */
	__u32 ordinal;  /* where the backend was: if it is there no more, the client gets a new one */
	__u32 pad;
	struct weft_nat_be4_value backend;
};
_Static_assert(sizeof(struct weft_nat_aff4_value) == 24, "weft_nat_aff4_value");

/* Connect-time load balancing of unconnected UDP: (backend, socket) -> the frontend the
 * program sent to, so replies (recvmsg) read as coming from the service. */
struct weft_ctlb_rev4_key {
	__u32 addr;
	__u16 port;
	__u16 pad;
	__u64 cookie; /* bpf_get_socket_cookie() */
};
_Static_assert(sizeof(struct weft_ctlb_rev4_key) == 16, "weft_ctlb_rev4_key");

/* ---- Counters ------------------------------------------------------------------------------ */

/* weft_counters_key.hook */
#define WEFT_HOOK_FROM_WEP 0 /* tc ingress of a workload interface */
#define WEFT_HOOK_TO_WEP 1   /* tc egress of a workload interface */
#define WEFT_HOOK_FROM_HEP 2 /* tc ingress of a data interface */
#define WEFT_HOOK_TO_HEP 3   /* tc egress of a data interface */
#define WEFT_HOOK_FROM_NAT 4 /* tc ingress of bpfout.weft */

struct weft_counters_key {
	__u32 ifindex;
	__u32 hook;
};
_Static_assert(sizeof(struct weft_counters_key) == 8, "weft_counters_key");

#define WEFT_COUNTERS_MAX 32 /* > WEFT_REASON_MAX in weft_reasons.h */

struct weft_counters {
	__u64 packets[WEFT_COUNTERS_MAX]; /* indexed by enum weft_reason */
};
_Static_assert(sizeof(struct weft_counters) == 256, "weft_counters");

/* ---- Events: flow logs and packet traces --------------------------------------------------- */
/*
 * weft_flows and weft_trace are ring buffers of struct weft_event, read by `weft flows` and
 * `weft trace` (reconciler/src/events/). Two rings, not one: each has a single consumer
 * position, so `weft flows` and `weft trace` can run at once, and a busy trace can never crowd
 * flow records out.
 *
 * A flow record is written when policy decides a flow for an endpoint (a new flow, or a known
 * flow its endpoint's policy judges for the first time) and for the drops listed in events.h;
 * packets of established flows never write one. A trace record is written for every packet on
 * an interface with WEFT_IFACE_F_TRACE that its weft_trace_flt entry matches. A record the ring
 * has no room for is counted in weft_ring_lost instead.
 */

/* weft_event.kind */
#define WEFT_EVENT_FLOW 1
#define WEFT_EVENT_TRACE 2

/* weft_event.ct: what conntrack said about the packet */
#define WEFT_CTR_NONE 0        /* not looked up: not parsed, no interface entry, spoofed, ... */
#define WEFT_CTR_NEW 1         /* no entry: the packet opens a flow */
#define WEFT_CTR_ESTABLISHED 2 /* an entry of type WEFT_CT_NORMAL */
#define WEFT_CTR_NAT_FWD 3     /* a service flow, in the client's terms (WEFT_CT_NAT_FWD) */
#define WEFT_CTR_NAT_REV 4     /* a service flow, in the backend's terms (WEFT_CT_NAT_REV) */
#define WEFT_CTR_RELATED 5     /* an ICMP error about a known flow */
#define WEFT_CTR_REUSED 6      /* a finished TCP flow's tuple, opened again by a SYN */

/* weft_event.flags */
#define WEFT_EV_F_POLICY 0x01        /* policy ran: rule_id is the deciding rule */
#define WEFT_EV_F_ALLOW 0x02         /* ... and allowed the flow */
#define WEFT_EV_F_LOG 0x04           /* ... after a Log rule matched */
#define WEFT_EV_F_EP_ORIGINATED 0x08 /* the endpoint on this interface opened the flow */

/* weft_event.nat: the translation applied to a passed packet */
#define WEFT_EV_NAT_NONE 0
#define WEFT_EV_NAT_DNAT 1  /* destination -> nat_addr:nat_port (the backend) */
#define WEFT_EV_NAT_UNNAT 2 /* source -> nat_addr:nat_port (the frontend, on a reply) */

/* weft_event.parse beyond enum weft_parse_result (parse.h): parsing did not run */
#define WEFT_EV_PARSE_NONE 0xff

struct weft_event {
	__u64 time_ns;  /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u32 ifindex;
	__u8 kind;      /* WEFT_EVENT_* */
	__u8 hook;      /* WEFT_HOOK_* */
	__u8 reason;    /* enum weft_reason; WEFT_REASON_MAX: a host interface without an entry */
	__u8 flags;     /* WEFT_EV_F_* */
	__u32 saddr;    /* the packet as it arrived; zero unless parse is IPV4 or FRAGMENT */
	__u32 daddr;
	__u16 sport;    /* host order; ICMP queries: as in struct weft_pkt4 (parse.h) */
	__u16 dport;
	__u8 proto;
	__u8 parse;     /* enum weft_parse_result, or WEFT_EV_PARSE_NONE */
	__u8 ct;        /* WEFT_CTR_* */
	__u8 nat;       /* WEFT_EV_NAT_* */
	__u32 nat_addr;
	__u16 nat_port; /* host order */
	__u16 len;      /* the packet's length, at most 65535 */
	__u32 rule_id;  /* with WEFT_EV_F_POLICY: the deciding rule (its verdict's rule id) */
	__s32 verdict;  /* the tc verdict: -1 pass on, 2 drop, 7 redirect */
	__u8 tcp_flags; /* TCP: the flags byte */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad[5];
};
_Static_assert(sizeof(struct weft_event) == 56, "weft_event");

/* weft_ring_lost (per CPU): records a ring had no room for, by ring; readers keep what they
 * have reported in the upper slots (the programs never write those). */
#define WEFT_LOST_FLOWS 0
#define WEFT_LOST_TRACE 1
#define WEFT_LOST_FLOWS_SEEN 2
#define WEFT_LOST_TRACE_SEEN 3
#define WEFT_LOST_SLOTS 4

/*
 * weft_trace_flt: ifindex -> which packets of a traced interface are traced. Compiled from a
 * bpfLogFilters expression in the pcap subset (reconciler/model/src/pcap.rs): every term must
 * match; unused slots have sides 0. No terms and no flags: every packet.
 */
#define WEFT_TF_SIDE_SRC 0x01
#define WEFT_TF_SIDE_DST 0x02 /* both bits: either side */
#define WEFT_TF_MAX_HOSTS 4
#define WEFT_TF_MAX_PORTS 4

/* weft_trace_filter.flags */
#define WEFT_TF_F_IPV4 0x01 /* IPv4 packets only (every term implies it) */

struct weft_trace_host {
	__u32 addr; /* network order, host bits clear */
	__u32 mask; /* network order */
	__u8 sides; /* WEFT_TF_SIDE_*; 0: an unused slot */
	__u8 pad[3];
};
_Static_assert(sizeof(struct weft_trace_host) == 12, "weft_trace_host");

struct weft_trace_port {
	__u16 port; /* host order; TCP, UDP or SCTP */
	__u8 sides; /* WEFT_TF_SIDE_*; 0: an unused slot */
	__u8 pad;
};
_Static_assert(sizeof(struct weft_trace_port) == 4, "weft_trace_port");

struct weft_trace_filter {
	__u8 flags; /* WEFT_TF_F_* */
	__u8 proto; /* 0: any */
	__u8 pad[2];
	struct weft_trace_host hosts[WEFT_TF_MAX_HOSTS];
	struct weft_trace_port ports[WEFT_TF_MAX_PORTS];
};
_Static_assert(sizeof(struct weft_trace_filter) == 68, "weft_trace_filter");

#endif /* WEFT_MAPS_H */
