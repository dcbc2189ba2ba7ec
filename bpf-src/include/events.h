/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow logs and packet traces: struct weft_event records into the weft_flows and weft_trace
 * ring buffers (layouts and what each record means: weft_maps.h).
 *
 * None of this is on the per-packet path. The pipeline notes what it decided in a struct
 * weft_outcome as it goes (a few bytes it writes anyway); weft_tc calls weft_report only when
 * policy ran, a drop worth a flow record happened, or the interface is traced, so packets of
 * established flows pay one test. weft_report is a global function of its own, so its stack
 * frame is not added to the pipeline's, the verifier checks it once, and the record itself
 * lives in the ring, not on the stack.
 * A full ring drops the record and counts it (weft_ring_lost): a flood of denied packets costs
 * a failed reservation each, never more.
 */
#ifndef WEFT_EVENTS_H
#define WEFT_EVENTS_H

#include "weft_bpf.h"
#include "parse.h"

/* Reasons whose packets make a flow record even when policy did not run (services on host
 * interfaces, drops before or after policy). Denials by policy make one through the policy
 * flag as well as here. */
#define WEFT_FLOW_REASONS                                                                          \
	((1ULL << WEFT_REASON_ACCEPT_POLICY) | (1ULL << WEFT_REASON_DROP_POLICY) |                \
	 (1ULL << WEFT_REASON_DROP_SPOOFED) | (1ULL << WEFT_REASON_DROP_EP_TO_HOST) |             \
	 (1ULL << WEFT_REASON_DROP_CT_FULL) | (1ULL << WEFT_REASON_ACCEPT_NAT) |                  \
	 (1ULL << WEFT_REASON_REJECT_NO_BACKEND) | (1ULL << WEFT_REASON_DROP_SRC_RANGE) |         \
	 (1ULL << WEFT_REASON_DROP_NAT) | (1ULL << WEFT_REASON_DROP_RPF))

/* weft_outcome.flags beyond WEFT_EV_F_*: the interface is traced (never written to records). */
#define WEFT_OUT_F_TRACE 0x80

/* What the pipeline decided about one packet: the translation weft_tc still has to make, and
 * what records say about it. */
struct weft_outcome {
	__u32 addr;    /* translation: the new address (network order) */
	__u16 port;    /* ... and port (host order) */
	__u8 action;   /* the translation: WEFT_EV_NAT_* (flow.h's enum weft_nat_action agrees) */
	__u8 flags;    /* WEFT_EV_F_*, WEFT_OUT_F_TRACE */
	__u32 rule_id; /* with WEFT_EV_F_POLICY */
	__u8 parse;    /* enum weft_parse_result, or WEFT_EV_PARSE_NONE */
	__u8 ct;       /* WEFT_CTR_* */
	__u8 reason;   /* filled in by weft_tc for weft_report */
	__s8 verdict;  /* ditto */
};

/* Notes a policy verdict: which rule decided, and whether the endpoint opened the flow. */
WEFT_INLINE void weft_note_policy(struct weft_outcome *o, __u8 action, __u8 vflags, __u32 rule_id,
				  bool ep_originated)
{
	o->flags |= WEFT_EV_F_POLICY;
	if (action == WEFT_ACT_ALLOW)
		o->flags |= WEFT_EV_F_ALLOW;
	if (vflags & WEFT_VERDICT_F_LOG)
		o->flags |= WEFT_EV_F_LOG;
	if (ep_originated)
		o->flags |= WEFT_EV_F_EP_ORIGINATED;
	o->rule_id = rule_id;
}

WEFT_INLINE bool weft_has_tuple(__u8 parse)
{
	return parse == WEFT_PARSE_IPV4 || parse == WEFT_PARSE_FRAGMENT;
}

/* A subprogram, not inlined: once for both rings, and its signature puts struct weft_event in
 * the object's BTF, from which the Rust side's type is generated. The caller sets e->kind. */
static __attribute__((noinline)) int weft_fill_event(struct weft_event *e, struct __sk_buff *skb, __u32 hook,
						      const struct weft_pkt4 *p, const struct weft_outcome *o)
{
	e->time_ns = bpf_ktime_get_ns();
	e->ifindex = skb->ifindex;
	e->hook = hook;
	e->reason = o->reason;
	e->flags = o->flags & ~WEFT_OUT_F_TRACE;
	e->parse = o->parse;
	e->ct = o->ct;
	e->nat = o->action;
	e->nat_addr = o->addr;
	e->nat_port = o->port;
	e->len = skb->len > 0xffff ? 0xffff : skb->len;
	e->rule_id = o->rule_id;
	e->verdict = o->verdict;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->pad[2] = 0;
	e->pad[3] = 0;
	e->pad[4] = 0;
	if (weft_has_tuple(o->parse)) {
		e->saddr = p->saddr;
		e->daddr = p->daddr;
		e->sport = p->sport;
		e->dport = p->dport;
		e->proto = p->proto;
		e->tcp_flags = p->tcp_flags;
		e->icmp_type = p->icmp_type;
		e->icmp_code = p->icmp_code;
	} else {
		e->saddr = 0;
		e->daddr = 0;
		e->sport = 0;
		e->dport = 0;
		e->proto = 0;
		e->tcp_flags = 0;
		e->icmp_type = 0;
		e->icmp_code = 0;
	}
	return 0;
}

WEFT_INLINE void weft_count_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&weft_ring_lost, &slot);

	if (n)
		*n += 1;
}

WEFT_INLINE bool weft_side_match(__u8 sides, __u32 src, __u32 dst, __u32 want, __u32 mask)
{
	return ((sides & WEFT_TF_SIDE_SRC) && (src & mask) == want) ||
	       ((sides & WEFT_TF_SIDE_DST) && (dst & mask) == want);
}

/* Whether a traced interface's filter takes this packet: every term must match. */
WEFT_INLINE bool weft_trace_match(const struct weft_trace_filter *f, const struct weft_pkt4 *p,
				  __u8 parse)
{
	if (!f->flags)
		return true;
	if (!weft_has_tuple(parse))
		return false;
	if (f->proto && f->proto != p->proto)
		return false;
#pragma unroll
	for (int i = 0; i < WEFT_TF_MAX_HOSTS; i++) {
		const struct weft_trace_host *h = &f->hosts[i];

		if (h->sides && !weft_side_match(h->sides, p->saddr, p->daddr, h->addr, h->mask))
			return false;
	}
#pragma unroll
	for (int i = 0; i < WEFT_TF_MAX_PORTS; i++) {
		const struct weft_trace_port *t = &f->ports[i];

		if (!t->sides)
			continue;
		/* As in pcap, only TCP, UDP and SCTP have ports; a fragment's are unknown. */
		if (parse != WEFT_PARSE_IPV4 ||
		    (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP && p->proto != IPPROTO_SCTP))
			return false;
		if (!(((t->sides & WEFT_TF_SIDE_SRC) && p->sport == t->port) ||
		      ((t->sides & WEFT_TF_SIDE_DST) && p->dport == t->port)))
			return false;
	}
	return true;
}

/* Writes the flow record and the trace record a packet calls for. A global function: verified
 * once, on its own, not again for every path of the pipeline that reaches it. */
__noinline int weft_report(struct __sk_buff *skb, __u32 hook, const struct weft_pkt4 *p,
			   const struct weft_outcome *o)
{
	struct weft_event *e;

	if (!p || !o)
		return 0;

	if ((o->flags & WEFT_EV_F_POLICY) || ((WEFT_FLOW_REASONS >> (o->reason & 63)) & 1)) {
		e = bpf_ringbuf_reserve(&weft_flows, sizeof(*e), 0);
		if (e) {
			weft_fill_event(e, skb, hook, p, o);
			e->kind = WEFT_EVENT_FLOW;
			bpf_ringbuf_submit(e, 0);
		} else {
			weft_count_lost(WEFT_LOST_FLOWS);
		}
	}
	if (o->flags & WEFT_OUT_F_TRACE) {
		__u32 ifindex = skb->ifindex;
		struct weft_trace_filter *f = bpf_map_lookup_elem(&weft_trace_flt, &ifindex);

		if (!f || !weft_trace_match(f, p, o->parse))
			return 0;
		e = bpf_ringbuf_reserve(&weft_trace, sizeof(*e), 0);
		if (e) {
			weft_fill_event(e, skb, hook, p, o);
			e->kind = WEFT_EVENT_TRACE;
			bpf_ringbuf_submit(e, 0);
		} else {
			weft_count_lost(WEFT_LOST_TRACE);
		}
	}
	return 0;
}

#endif /* WEFT_EVENTS_H */
