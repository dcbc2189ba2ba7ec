/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Conntrack: one weft_ct4 entry per flow under its normalised tuple, with a leg per side. See
 * weft_maps.h for what a leg's approval means.
 */
#ifndef WEFT_CONNTRACK_H
#define WEFT_CONNTRACK_H

#include "weft_bpf.h"
#include "parse.h"

/*
 * Conntrack's clock: CLOCK_MONOTONIC at tick resolution. Timeouts are seconds, and reading
 * the precise clock costs more than a conntrack lookup on a virtual machine (the benchmark's
 * breakdown in BENCHMARKS.md), on every packet of every established flow.
 */
WEFT_INLINE __u64 weft_ct_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Builds the normalised key of a tuple; says whether the source landed on side a. */
WEFT_INLINE bool weft_ct4_key_of(struct weft_ct4_key *k, __u32 saddr, __u32 daddr, __u16 sport,
				 __u16 dport, __u8 proto)
{
	bool src_is_a = saddr < daddr || (saddr == daddr && sport <= dport);

	k->proto = proto;
	k->pad[0] = 0;
	k->pad[1] = 0;
	k->pad[2] = 0;
	if (src_is_a) {
		k->addr_a = saddr;
		k->addr_b = daddr;
		k->port_a = sport;
		k->port_b = dport;
	} else {
		k->addr_a = daddr;
		k->addr_b = saddr;
		k->port_a = dport;
		k->port_b = sport;
	}
	return src_is_a;
}

/* The TCP flags a packet contributes to its sender's leg. */
WEFT_INLINE __u8 weft_ct_leg_flags(const struct weft_pkt4 *p)
{
	__u8 f = 0;

	if (p->proto != IPPROTO_TCP)
		return 0;
	if (p->tcp_flags & WEFT_TCP_SYN)
		f |= WEFT_CT_LEG_SYN;
	if (p->tcp_flags & WEFT_TCP_ACK)
		f |= WEFT_CT_LEG_ACK;
	if (p->tcp_flags & WEFT_TCP_FIN)
		f |= WEFT_CT_LEG_FIN;
	if (p->tcp_flags & WEFT_TCP_RST)
		f |= WEFT_CT_LEG_RST;
	return f;
}

WEFT_INLINE bool weft_tcp_is_syn(const struct weft_pkt4 *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (WEFT_TCP_SYN | WEFT_TCP_ACK)) == WEFT_TCP_SYN;
}

/*
 * A TCP connection that has been reset, or closed from both sides, is over: a new SYN on the
 * same tuple starts a new flow, judged by policy again.
 */
WEFT_INLINE bool weft_ct_tcp_finished(const struct weft_ct4_value *v)
{
	__u8 a = v->leg_a.tcp_flags, b = v->leg_b.tcp_flags;

	return ((a | b) & WEFT_CT_LEG_RST) || ((a & WEFT_CT_LEG_FIN) && (b & WEFT_CT_LEG_FIN));
}

/* Creates the entry for a new flow whose first packet is p, approved for one side; `tun`, when
 * another node forwarded it here through the tunnel, is that node (tunnel.h). */
WEFT_INLINE int weft_ct4_create(const struct weft_ct4_key *k, const struct weft_pkt4 *p,
				bool src_is_a, bool approve_src, __u32 ruleset, __u8 flags,
				const struct weft_tun_flow *tun)
{
	struct weft_ct4_value val = {}, *v = &val;
	struct weft_ct_leg *src_leg, *dst_leg;
	__u64 now = weft_ct_now();

	src_leg = src_is_a ? &v->leg_a : &v->leg_b;
	dst_leg = src_is_a ? &v->leg_b : &v->leg_a;
	v->created_ns = now;
	v->last_seen_ns = now;
	v->type = WEFT_CT_NORMAL;
	v->flags = flags;
	if (!src_is_a)
		v->flags |= WEFT_CT_F_B_ORIGINATED;
	if (p->proto == IPPROTO_TCP && !weft_tcp_is_syn(p))
		v->flags |= WEFT_CT_F_MIDFLOW;
	src_leg->tcp_flags = weft_ct_leg_flags(p);
	if (approve_src)
		src_leg->approved_by = ruleset;
	else
		dst_leg->approved_by = ruleset;
	if (tun) {
		v->tun_addr = tun->tun_addr;
		v->tun_ifindex = tun->ifindex;
	}
	return bpf_map_update_elem(&weft_ct4, k, v, BPF_ANY);
}

/*
 * Creates the two entries of a new service flow: NAT_REV under the translated tuple (`rev`,
 * client -> backend), holding the legs and the frontend to restore, and NAT_FWD under the
 * tuple the client sent (`fwd`), pointing at it. `src_is_a` is the client's side in `rev`.
 */
WEFT_INLINE int weft_ct4_create_nat(const struct weft_ct4_key *fwd, const struct weft_ct4_key *rev,
				    const struct weft_pkt4 *p, bool src_is_a, bool approve_src, __u32 ruleset,
				    __u32 frontend, __u16 frontend_port, __u8 flags)
{
	struct weft_ct4_value val = {}, *v = &val;
	__u64 now = weft_ct_now();

	v->created_ns = now;
	v->last_seen_ns = now;
	v->type = WEFT_CT_NAT_REV;
	v->flags = flags;
	if (!src_is_a)
		v->flags |= WEFT_CT_F_B_ORIGINATED;
	if (p->proto == IPPROTO_TCP && !weft_tcp_is_syn(p))
		v->flags |= WEFT_CT_F_MIDFLOW;
	if (src_is_a) {
		v->leg_a.tcp_flags = weft_ct_leg_flags(p);
		if (approve_src)
			v->leg_a.approved_by = ruleset;
	} else {
		v->leg_b.tcp_flags = weft_ct_leg_flags(p);
		if (approve_src)
			v->leg_b.approved_by = ruleset;
	}
	v->nat_orig_daddr = frontend;
	v->nat_orig_dport = frontend_port;
	if (bpf_map_update_elem(&weft_ct4, rev, v, BPF_ANY))
		return -1;

	__builtin_memset(v, 0, sizeof(*v));
	v->created_ns = now;
	v->last_seen_ns = now;
	v->type = WEFT_CT_NAT_FWD;
	v->nat_rev_key = *rev;
	return bpf_map_update_elem(&weft_ct4, fwd, v, BPF_ANY);
}

#endif /* WEFT_CONNTRACK_H */
