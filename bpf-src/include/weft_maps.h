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
 * compared as (address, port). ICMP echo uses the identifier as both ports.
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
	__u64 created_ns;   /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
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

/* ---- Interfaces ---------------------------------------------------------------------------- */

/* weft_iface_value.flags */
#define WEFT_IFACE_F_WORKLOAD 0x01 /* host side of a workload's veth */

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

/* ---- Counters ------------------------------------------------------------------------------ */

/* weft_counters_key.hook */
#define WEFT_HOOK_FROM_WEP 0 /* tc ingress of a workload interface */
#define WEFT_HOOK_TO_WEP 1   /* tc egress of a workload interface */

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

#endif /* WEFT_MAPS_H */
