/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Host endpoints: the stages a host interface with a HostEndpoint adds to the pipeline
 * (flow.h), in Calico's order:
 *
 *   1. failsafe ports: to or from the host itself, allowed whatever the policy;
 *   2. untracked (doNotTrack) policy: every packet, before conntrack, no state: an allow
 *      passes at once, untracked; a deny drops; no match goes on;
 *   3. conntrack: a known flow passes once the host endpoint has judged it;
 *   4. pre-DNAT policy, arriving only, on the destination the client sent to: an allow skips
 *      the host endpoint's normal policy; a deny drops; no match goes on;
 *   5. service NAT;
 *   6. normal policy: for the host's own traffic, the endpoint's policies and profiles,
 *      denying what nothing allows; for forwarded traffic, its applyOnForward policies, and
 *      nothing when none selects it.
 *
 * "Inside" is the host side of the interface (the host, or where forwarded traffic comes from
 * or goes to), "outside" the network the interface faces. The host endpoint's mark in a
 * conntrack entry is on the outside side's leg (WEFT_CT_F_HEP_A/B).
 */
#ifndef WEFT_HEP_H
#define WEFT_HEP_H

#include "weft_bpf.h"
#include "parse.h"
#include "policy.h"
#include "counters.h"
#include "icmp.h"
#include "events.h"

#define WEFT_IS_HEP(hook) ((hook) == WEFT_HOOK_FROM_HEP || (hook) == WEFT_HOOK_TO_HEP)

/* What stage 2 leaves to the rest of the pipeline: no tc verdict (WEFT_PASS is -1). */
#define WEFT_HEP_GO_ON 100

/* Why the host endpoint's policy has nothing more to say about a packet. */
#define WEFT_HEP_DONE_FAILSAFE 1
#define WEFT_HEP_DONE_PREDNAT 2

/* An address of this host: its own, or broadcast and multicast, which the host receives. */
WEFT_INLINE bool weft_hep_is_host(__u32 addr)
{
	struct weft_route4_key k = { .prefixlen = 32, .addr = addr };
	struct weft_route_value *rt;

	if ((bpf_ntohl(addr) >> 28) >= 0xe)
		return true;
	rt = bpf_map_lookup_elem(&weft_rt4, &k);
	return rt && (rt->flags & WEFT_RT_F_LOCAL_HOST);
}

/* Whether some failsafe entry is for this direction, protocol and port (weft_fs_ports). */
WEFT_INLINE bool weft_fs_port(__u8 dir, __u8 proto, __u16 port)
{
	__u32 word = ((__u32)dir << 11) | ((__u32)(proto == IPPROTO_UDP) << 10) | (port >> 6);
	__u64 *bits = bpf_map_lookup_elem(&weft_fs_ports, &word);

	return bits && (*bits >> (port & 63)) & 1;
}

/*
 * Whether a failsafe port lets the packet through, arriving (`in`) or leaving: to or from the
 * host on one of its direction's ports, or as the answer on one of the other direction's (so
 * that a failsafe connection open before the host endpoint, with no conntrack entry of weft's,
 * is never cut in either direction).
 */
WEFT_INLINE bool weft_is_failsafe4(bool in, const struct weft_pkt4 *p)
{
	struct weft_failsafe4_key k = {
		.prefixlen = 64,
		.dir = in ? WEFT_FS_IN : WEFT_FS_OUT,
		.proto = p->proto,
		.port = p->dport,
		.addr = in ? p->saddr : p->daddr,
	};

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return false;
	if (weft_fs_port(k.dir, p->proto, p->dport) && bpf_map_lookup_elem(&weft_failsafe4, &k))
		return true;
	k.dir = in ? WEFT_FS_OUT : WEFT_FS_IN;
	k.port = p->sport;
	return weft_fs_port(k.dir, p->proto, p->sport) &&
	       bpf_map_lookup_elem(&weft_failsafe4, &k) != NULL;
}

/* The flow of packet `p` as a host endpoint's ruleset sees it, from the inside. */
WEFT_INLINE void weft_hep_flow(bool in, const struct weft_pkt4 *p, __u32 dst, __u16 dport,
			       struct weft_flow4 *f)
{
	f->proto = p->proto;
	f->peer = in ? p->saddr : dst;
	f->local = in ? dst : p->saddr;
	f->sport = p->sport;
	f->dport = dport;
	if (p->proto == IPPROTO_ICMP) {
		f->sport = 0;
		f->dport = (p->icmp_type << 8) | p->icmp_code;
	}
}

/*
 * Stages 1 and 2, for every packet: returns a verdict, or WEFT_HEP_GO_ON with *done set to
 * WEFT_HEP_DONE_FAILSAFE when a failsafe port let the packet through.
 */
WEFT_INLINE int weft_hep_stateless(const struct weft_hep_value *hep, bool in, const struct weft_pkt4 *p,
				   __u8 *done, __u32 *reason, struct weft_outcome *out)
{
	struct weft_policy_result r = {};
	struct weft_flow4 f = {};
	__u32 ruleset;

	/* The failsafe lookup first: it misses for most packets, sparing the host lookup. */
	if (weft_is_failsafe4(in, p) && weft_hep_is_host(in ? p->daddr : p->saddr)) {
		*done = WEFT_HEP_DONE_FAILSAFE;
		return WEFT_HEP_GO_ON;
	}
	ruleset = in ? hep->ruleset_untracked_in : hep->ruleset_untracked_out;
	if (!ruleset)
		return WEFT_HEP_GO_ON;
	weft_hep_flow(in, p, p->daddr, p->dport, &f);
	weft_policy4(ruleset, &f, &r);
	if (r.flags & WEFT_VERDICT_F_NO_MATCH)
		return WEFT_HEP_GO_ON;
	weft_count_rule(r.rule_id);
	weft_note_policy(out, r.action, r.flags, r.rule_id, !in);
	if (r.action == WEFT_ACT_ALLOW)
		return weft_verdict(reason, WEFT_REASON_ACCEPT_UNTRACKED, WEFT_PASS);
	return weft_verdict(reason, WEFT_REASON_DROP_UNTRACKED, WEFT_DROP);
}

/*
 * Stage 6 for a flow's first packet through the host endpoint, or a known flow it has not
 * judged yet: whether its policy lets the flow through. `in`: the packet arrives; `inside`,
 * `outside`: the flow's addresses on either side of the interface (after translation);
 * `outside_originated`: the flow was opened from outside; sport and dport are the
 * originator's and the responder's ports.
 */
WEFT_INLINE bool weft_hep_allows(const struct weft_hep_value *hep, bool outside_originated, __u32 inside,
				 __u32 outside, __u8 proto, __u16 sport, __u16 dport, struct weft_outcome *out)
{
	struct weft_policy_result r = {};
	struct weft_flow4 f = {
		.peer = outside,
		.local = inside,
		.sport = sport,
		.dport = dport,
		.proto = proto,
	};
	bool host = weft_hep_is_host(inside);
	__u32 ruleset;

	if (host)
		ruleset = outside_originated ? hep->ruleset_in : hep->ruleset_out;
	else
		ruleset = outside_originated ? hep->ruleset_fwd_in : hep->ruleset_fwd_out;
	/* Forwarded traffic no applyOnForward policy selects passes. */
	if (!host && !ruleset)
		return true;
	weft_policy4(ruleset, &f, &r);
	weft_count_rule(r.rule_id);
	weft_note_policy(out, r.action, r.flags, r.rule_id, !outside_originated);
	return r.action == WEFT_ACT_ALLOW;
}

/* The conntrack flag of the host endpoint facing side a (or b). */
WEFT_INLINE __u8 weft_hep_ct_flag(bool outside_is_a)
{
	return outside_is_a ? WEFT_CT_F_HEP_A : WEFT_CT_F_HEP_B;
}

/*
 * Stage 3: a known flow through a host endpoint. `k` is the flow's tuple (translated, for a
 * service flow), `outside_is_a` which of its sides is outside the interface. Judged once,
 * then marked.
 */
WEFT_INLINE bool weft_hep_approve(const struct weft_hep_value *hep, const struct weft_ct4_key *k,
				  struct weft_ct4_value *ct, bool outside_is_a, const struct weft_pkt4 *p,
				  struct weft_outcome *out)
{
	__u8 flag = weft_hep_ct_flag(outside_is_a);
	bool a_originated = !(ct->flags & WEFT_CT_F_B_ORIGINATED);
	__u16 sport = a_originated ? k->port_a : k->port_b;
	__u16 dport = a_originated ? k->port_b : k->port_a;

	if (ct->flags & flag)
		return true;
	if (k->proto == IPPROTO_ICMP) {
		sport = 0;
		dport = weft_icmp_dport(p->icmp_type, p->icmp_code);
	}
	if (!weft_hep_allows(hep, outside_is_a == a_originated, outside_is_a ? k->addr_b : k->addr_a,
			     outside_is_a ? k->addr_a : k->addr_b, k->proto, sport, dport, out))
		return false;
	ct->flags |= flag;
	return true;
}

#endif /* WEFT_HEP_H */
