/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-packet pipeline every tc hook runs: parse, conntrack, service translation, policy.
 * The hook is a compile-time constant in each entry program, so each program keeps only its
 * own branches.
 *
 * Hooks (see weft_maps.h, WEFT_HOOK_*):
 *   FROM_WEP  tc ingress of a workload's host-side veth: its egress policy; service NAT
 *   TO_WEP    tc egress of the same: its ingress policy
 *   FROM_HEP  tc ingress of a data interface: NodePort / external IP / LoadBalancer NAT
 *   TO_HEP    tc egress of a data interface: replies of translated flows
 *   FROM_NAT  tc ingress of bpfout.weft: host processes' traffic to services
 * (and, apart from this pipeline, FROM_TUN: tc ingress of the fleet's tunnel, tunnel.h)
 * A host interface without a HostEndpoint carries no policy: weft only translates there, and
 * passes everything else untouched. One with a HostEndpoint adds its stages (hep.h).
 *
 * Service flows get two conntrack entries: NAT_FWD under the tuple the client sent
 * (client -> frontend) pointing at NAT_REV under the translated tuple (client -> backend),
 * which holds the flow's legs and the frontend to restore. The first weft hook that sees a
 * reply (backend -> client) restores the frontend as its source ("un-NAT"); hooks after it
 * see the frontend tuple and find NAT_FWD.
 *
 * Every packet leaves through weft_tc, which makes the translation, counts the reason and, for
 * the few packets that call for one, writes a flow or trace record (events.h).
 */
#ifndef WEFT_FLOW_H
#define WEFT_FLOW_H

#include "weft_bpf.h"
#include "weft_settings.h"
#include "parse.h"
#include "frag.h"
#include "conntrack.h"
#include "policy.h"
#include "counters.h"
#include "nat.h"
#include "icmp.h"
#include "events.h"
#include "hep.h"
#include "tunnel.h"
#include "rpf.h"


#define WEFT_IS_WEP(hook) ((hook) == WEFT_HOOK_FROM_WEP || (hook) == WEFT_HOOK_TO_WEP)
/* Hooks where new flows to a service frontend are translated. */
#define WEFT_DOES_NAT(hook) \
	((hook) == WEFT_HOOK_FROM_WEP || (hook) == WEFT_HOOK_FROM_HEP || (hook) == WEFT_HOOK_FROM_NAT)

/* The same values as WEFT_EV_NAT_*: records show the translation as the pipeline chose it. */
enum weft_nat_action {
	WEFT_ACT_NONE = WEFT_EV_NAT_NONE,
	WEFT_ACT_DNAT = WEFT_EV_NAT_DNAT,   /* destination -> backend */
	WEFT_ACT_UNNAT = WEFT_EV_NAT_UNNAT, /* source backend -> frontend */
};

WEFT_INLINE bool weft_is_host_addr(__u32 addr)
{
	struct weft_route4_key k = { .prefixlen = 32, .addr = addr };
	struct weft_route_value *rt = bpf_map_lookup_elem(&weft_rt4, &k);

	return rt && (rt->flags & WEFT_RT_F_LOCAL_HOST);
}

/*
 * Whether the endpoint behind a workload hook approves a known flow: its leg is approved by
 * its current ruleset, or its current ruleset allows the flow when judged again as first seen
 * (which the outcome notes: it is this endpoint's decision on the flow).
 */
WEFT_INLINE bool weft_ct_approve(const struct weft_iface_value *iface, const struct weft_ct4_key *k,
				 struct weft_ct4_value *ct, bool ep_is_a, const struct weft_pkt4 *p,
				 struct weft_outcome *out)
{
	bool a_originated = !(ct->flags & WEFT_CT_F_B_ORIGINATED);
	bool ep_originated = ep_is_a == a_originated;
	struct weft_ct_leg *ep_leg = ep_is_a ? &ct->leg_a : &ct->leg_b;
	__u32 ruleset = ep_originated ? iface->ruleset_out : iface->ruleset_in;
	struct weft_policy_result r = {};
	struct weft_flow4 f = {};

	if (ruleset != 0 && ep_leg->approved_by == ruleset)
		return true;
	/* The endpoint's policy changed since it approved this flow (or it never did). */
	f.proto = k->proto;
	f.peer = ep_is_a ? k->addr_b : k->addr_a;
	f.local = ep_is_a ? k->addr_a : k->addr_b;
	f.sport = a_originated ? k->port_a : k->port_b;
	f.dport = a_originated ? k->port_b : k->port_a;
	if (k->proto == IPPROTO_ICMP) {
		f.sport = 0;
		f.dport = weft_icmp_dport(p->icmp_type, p->icmp_code);
	}
	weft_policy4(ruleset, &f, &r);
	weft_count_rule(r.rule_id);
	weft_note_policy(out, r.action, r.flags, r.rule_id, ep_originated);
	if (r.action != WEFT_ACT_ALLOW)
		return false;
	ep_leg->approved_by = ruleset;
	return true;
}

/* Rewrites an ICMP error's outer source (or destination) address, IPv4 checksum with it. */
WEFT_INLINE int weft_icmp_outer4(struct __sk_buff *skb, bool dst, __u32 old_addr, __u32 new_addr)
{
	__u32 off = sizeof(struct ethhdr) + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));

	if (bpf_l3_csum_replace(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, check), old_addr, new_addr,
				sizeof(__u32)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new_addr, sizeof(new_addr), 0) ? -1 : 0;
}

/*
 * Rewrites the address and port of the packet an ICMP error quotes: its destination
 * (inner_dst) or its source. The quoted IPv4 header's checksum follows the address; the ICMP
 * checksum, which covers the quoted header, changes by the port only (the address and the
 * quoted checksum change by opposite amounts). The quoted L4 checksum, past the 8 bytes an
 * error must quote for TCP, is left as it is, as routers leave it.
 */
WEFT_INLINE int weft_icmp_inner4(struct __sk_buff *skb, const struct weft_pkt4 *p, bool inner_dst, __u32 old_addr,
				 __u32 new_addr, __u16 old_port, __u16 new_port)
{
	__u32 inner = p->l4_off + 8;
	__u32 ihl = (p->inner_ihl * 4) & 0x3c;
	__u32 addr_off = inner + (inner_dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u16 old_be = bpf_htons(old_port), new_be = bpf_htons(new_port);

	if (bpf_l3_csum_replace(skb, inner + offsetof(struct iphdr, check), old_addr, new_addr, sizeof(__u32)))
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0))
		return -1;
	if (old_port == new_port)
		return 0;
	if (bpf_l4_csum_replace(skb, p->l4_off + 2, old_be, new_be, sizeof(__u16)))
		return -1;
	return bpf_skb_store_bytes(skb, inner + ihl + (inner_dst ? 2 : 0), &new_be, sizeof(new_be), 0) ? -1 : 0;
}

/*
 * An ICMP error about a service flow quotes the packet as it was where the error arose. About
 * the client's packet after translation (client -> backend: a router's TTL exceeded or
 * fragmentation needed, the backend's port unreachable), it goes to the client, who must read
 * it as about its own packet (client -> frontend), from the service if the backend sent it.
 * About a reply after it was given the frontend back (frontend -> client), it goes to the
 * backend, who must read it as about its own (backend -> client); that is translated where
 * new flows are. Errors about a flow in terms its receiver knows pass as they are. `rk` is the
 * key `ct` was found under. Returns -1 when a rewrite fails.
 */
WEFT_INLINE int weft_icmp_related_nat(struct __sk_buff *skb, const struct weft_pkt4 *p, const __u32 hook,
				      struct weft_ct4_key *rk, struct weft_ct4_value *ct)
{
	struct weft_ct4_value *rev = ct;
	bool client_is_a;
	__u32 client, backend, frontend;
	__u16 client_port, backend_port, frontend_port;

	if (p->inner_proto != IPPROTO_TCP && p->inner_proto != IPPROTO_UDP && p->inner_proto != IPPROTO_SCTP)
		return 0;
	if (ct->type == WEFT_CT_NAT_FWD) {
		if (!WEFT_DOES_NAT(hook))
			return 0;
		*rk = ct->nat_rev_key;
		rev = bpf_map_lookup_elem(&weft_ct4, rk);
		if (!rev)
			return 0;
	} else if (ct->type != WEFT_CT_NAT_REV) {
		return 0;
	}
	client_is_a = !(rev->flags & WEFT_CT_F_B_ORIGINATED);
	client = client_is_a ? rk->addr_a : rk->addr_b;
	client_port = client_is_a ? rk->port_a : rk->port_b;
	backend = client_is_a ? rk->addr_b : rk->addr_a;
	backend_port = client_is_a ? rk->port_b : rk->port_a;
	frontend = rev->nat_orig_daddr;
	frontend_port = rev->nat_orig_dport;

	if (ct->type == WEFT_CT_NAT_REV) {
		if (p->inner_saddr != client || p->inner_sport != client_port || p->inner_daddr != backend)
			return 0;
		if (weft_icmp_inner4(skb, p, true, backend, frontend, backend_port, frontend_port))
			return -1;
		return p->saddr == backend ? weft_icmp_outer4(skb, false, backend, frontend) : 0;
	}
	if (p->inner_saddr != frontend || p->inner_sport != frontend_port || p->inner_daddr != client)
		return 0;
	if (weft_icmp_inner4(skb, p, false, frontend, backend, frontend_port, backend_port))
		return -1;
	return p->daddr == frontend ? weft_icmp_outer4(skb, true, frontend, backend) : 0;
}

/* Sends an ICMP port unreachable back to the sender of a packet to a service without backends. */
WEFT_INLINE int weft_reject(struct __sk_buff *skb, const struct weft_pkt4 *p, __u32 ifindex, const __u32 hook,
			    __u32 *reason)
{
	if (weft_icmp_reply4(skb, p, WEFT_ICMP_DEST_UNREACH, WEFT_ICMP_PORT_UNREACH))
		return weft_verdict(reason, WEFT_REASON_DROP_NAT, WEFT_DROP);
	*reason = WEFT_REASON_REJECT_NO_BACKEND;
	/* A workload gets it straight into its namespace (past our own egress hook); a data
	 * interface or bpfout sends it back out where the packet came in. */
	if (hook == WEFT_HOOK_FROM_WEP)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/*
 * Judges one packet: returns its verdict, says why in *reason, and notes in *out the
 * translation a passed packet still needs (made once, in weft_tc) and what records say.
 */
WEFT_INLINE int weft_tc_packet(struct __sk_buff *skb, const __u32 hook, __u32 *reason, struct weft_pkt4 *p,
			       struct weft_outcome *out)
{
	__u32 ifindex = skb->ifindex;
	struct weft_iface_value *iface;
	struct weft_hep_value *hep = NULL;
	struct weft_ct4_value *ct = NULL, *holder = NULL;
	struct weft_ct4_key k, post;
	struct weft_policy_result r = {};
	struct weft_nat_choice nat = {};
	struct weft_flow4 f = {};
	__u8 action = WEFT_ACT_NONE;
	__u32 nat_addr = 0;
	__u16 nat_port = 0;
	__u32 ruleset = 0;
	__u8 ct_flags = 0;
	bool src_is_a;
	/* WEFT_HEP_DONE_*: a failsafe port let the packet through, or pre-DNAT policy allowed its
	 * flow; the host endpoint's policy has nothing more to say. */
	__u8 hep_done = 0;

	iface = bpf_map_lookup_elem(&weft_iface, &ifindex);
	if (!iface) {
		/* A workload interface without its entry fails closed; a host interface open. */
		if (WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_DROP_NO_IFACE, WEFT_DROP);
		*reason = WEFT_REASON_MAX; /* not counted: weft does not know the interface */
		return WEFT_PASS;
	}
	if (iface->flags & WEFT_IFACE_F_TRACE)
		out->flags = WEFT_OUT_F_TRACE;
	if (WEFT_IS_HEP(hook) && (iface->flags & WEFT_IFACE_F_HEP))
		hep = bpf_map_lookup_elem(&weft_hep, &ifindex);

	out->parse = weft_parse4(skb, p);
	if (out->parse == WEFT_PARSE_FRAGMENT)
		out->parse = weft_frag_later(p);
	else if (out->parse == WEFT_PARSE_IPV4 && p->frag == WEFT_FRAG_FIRST)
		weft_frag_note(p);
	switch (out->parse) {
	case WEFT_PARSE_IPV4:
		break;
	case WEFT_PARSE_ARP:
		return weft_verdict(reason, WEFT_REASON_ACCEPT_ARP, WEFT_PASS);
	case WEFT_PARSE_IPV6:
		if (!WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
		return weft_verdict(reason, WEFT_REASON_DROP_IPV6, WEFT_DROP);
	case WEFT_PARSE_OTHER_ETHERTYPE:
		if (!WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
		return weft_verdict(reason, WEFT_REASON_DROP_ETHERTYPE, WEFT_DROP);
	case WEFT_PARSE_SHORT:
		if (!WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
		return weft_verdict(reason, WEFT_REASON_DROP_SHORT, WEFT_DROP);
	case WEFT_PARSE_FRAGMENT:
		if (!WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
		return weft_verdict(reason, WEFT_REASON_DROP_FRAGMENT, WEFT_DROP);
	default:
		if (!WEFT_IS_WEP(hook))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
		return weft_verdict(reason, WEFT_REASON_DROP_BAD_IP, WEFT_DROP);
	}

	if (hook == WEFT_HOOK_FROM_WEP) {
		/* A workload sends only from its own addresses. */
		__u32 *from = bpf_map_lookup_elem(&weft_wladdr4, &p->saddr);

		if (!from || *from != ifindex)
			return weft_verdict(reason, WEFT_REASON_DROP_SPOOFED, WEFT_DROP);
	}

	if (p->icmp_error) {
		/* An ICMP error about a known flow travels with that flow. */
		weft_ct4_key_of(&k, p->inner_saddr, p->inner_daddr, p->inner_sport, p->inner_dport, p->inner_proto);
		ct = bpf_map_lookup_elem(&weft_ct4, &k);
		if (ct) {
			out->ct = WEFT_CTR_RELATED;
			if (weft_icmp_related_nat(skb, p, hook, &k, ct))
				return weft_verdict(reason, WEFT_REASON_DROP_NAT, WEFT_DROP);
			return weft_verdict(reason, WEFT_REASON_ACCEPT_RELATED, WEFT_PASS);
		}
	}

	if (hep) {
		int rc = weft_hep_stateless(hep, hook == WEFT_HOOK_FROM_HEP, p, &hep_done, reason, out);

		if (rc != WEFT_HEP_GO_ON)
			return rc;
	}

	src_is_a = weft_ct4_key_of(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	post = k;
	if (!p->icmp_error)
		ct = bpf_map_lookup_elem(&weft_ct4, &k);

	if (ct && ct->type == WEFT_CT_NAT_FWD) {
		/* A service flow in the client's terms: its legs live in the reverse entry. */
		struct weft_ct4_key rk = ct->nat_rev_key;
		struct weft_ct4_value *rev = bpf_map_lookup_elem(&weft_ct4, &rk);

		if (rev) {
			bool client_is_a = !(rev->flags & WEFT_CT_F_B_ORIGINATED);
			__u32 client = client_is_a ? rk.addr_a : rk.addr_b;
			__u16 client_port = client_is_a ? rk.port_a : rk.port_b;

			post = rk;
			holder = rev;
			out->ct = WEFT_CTR_NAT_FWD;
			if (p->saddr == client && p->sport == client_port) {
				/* Client to frontend: on to the backend. */
				src_is_a = client_is_a;
				action = WEFT_ACT_DNAT;
				nat_addr = client_is_a ? rk.addr_b : rk.addr_a;
				nat_port = client_is_a ? rk.port_b : rk.port_a;
			} else {
				/* A reply already given the frontend's address back. */
				src_is_a = !client_is_a;
			}
		}
	} else if (ct) {
		holder = ct;
		out->ct = ct->type == WEFT_CT_NAT_REV ? WEFT_CTR_NAT_REV : WEFT_CTR_ESTABLISHED;
		if (ct->type == WEFT_CT_NAT_REV && src_is_a == !!(ct->flags & WEFT_CT_F_B_ORIGINATED)) {
			/* The backend answering: the client must see the frontend answer. */
			action = WEFT_ACT_UNNAT;
			nat_addr = ct->nat_orig_daddr;
			nat_port = ct->nat_orig_dport;
		}
	}
	if (holder && weft_tcp_is_syn(p) && weft_ct_tcp_finished(holder)) {
		/* The tuple is reused by a new connection: judge it afresh. */
		out->ct = WEFT_CTR_REUSED;
		holder = NULL;
		action = WEFT_ACT_NONE;
		post = k;
		src_is_a = weft_ct4_key_of(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	}

	if (holder) {
		out->action = action;
		out->addr = nat_addr;
		out->port = nat_port;
		if (WEFT_IS_WEP(hook)) {
			bool ep_is_a = hook == WEFT_HOOK_FROM_WEP ? src_is_a : !src_is_a;

			if (!weft_ct_approve(iface, &post, holder, ep_is_a, p, out))
				return weft_verdict(reason, WEFT_REASON_DROP_POLICY, WEFT_DROP);
		} else if (hep && !hep_done) {
			/* Arriving, the outside is the source; leaving, the destination. */
			bool outside_is_a = hook == WEFT_HOOK_FROM_HEP ? src_is_a : !src_is_a;

			if (!weft_hep_approve(hep, &post, holder, outside_is_a, p, out))
				return weft_verdict(reason, WEFT_REASON_DROP_POLICY, WEFT_DROP);
		}
		if (src_is_a)
			holder->leg_a.tcp_flags |= weft_ct_leg_flags(p);
		else
			holder->leg_b.tcp_flags |= weft_ct_leg_flags(p);
		holder->last_seen_ns = weft_ct_now();
		if (weft_tun_bound(hook, holder, src_is_a))
			return weft_verdict(reason, WEFT_REASON_ACCEPT_CT,
					    weft_tun_send(holder->tun_ifindex, holder->tun_addr));
		return weft_verdict(reason, WEFT_REASON_ACCEPT_CT, WEFT_PASS);
	}

	/* A new flow, originated by this packet's source. */
	if (out->ct == WEFT_CTR_NONE)
		out->ct = WEFT_CTR_NEW;
	if (hep && !hep_done && hook == WEFT_HOOK_FROM_HEP && hep->ruleset_prednat && !p->icmp_error) {
		/* Pre-DNAT policy sees the destination the client sent to. */
		weft_hep_flow(true, p, p->daddr, p->dport, &f);
		weft_policy4(hep->ruleset_prednat, &f, &r);
		if (!(r.flags & WEFT_VERDICT_F_NO_MATCH)) {
			weft_count_rule(r.rule_id);
			weft_note_policy(out, r.action, r.flags, r.rule_id, false);
			if (r.action != WEFT_ACT_ALLOW)
				return weft_verdict(reason, WEFT_REASON_DROP_PREDNAT, WEFT_DROP);
			hep_done = WEFT_HEP_DONE_PREDNAT;
		}
	}
	if (WEFT_DOES_NAT(hook) && !p->icmp_error) {
		switch (weft_nat_lookup4(p, &nat)) {
		case WEFT_NAT_OK:
			if (hook == WEFT_HOOK_FROM_HEP && !weft_rpf_ok(skb, p, ifindex))
				return weft_verdict(reason, WEFT_REASON_DROP_RPF, WEFT_DROP);
			action = WEFT_ACT_DNAT;
			nat_addr = nat.addr;
			nat_port = nat.port;
			/* Noted now, so that a record of a denial names the backend; weft_tc
			 * translates only what passes. */
			out->action = action;
			out->addr = nat_addr;
			out->port = nat_port;
			break;
		case WEFT_NAT_NO_BACKEND:
			return weft_reject(skb, p, ifindex, hook, reason);
		case WEFT_NAT_DENIED:
			return weft_verdict(reason, WEFT_REASON_DROP_SRC_RANGE, WEFT_DROP);
		default:
			break;
		}
	}
	if (action == WEFT_ACT_NONE && !WEFT_IS_WEP(hook) && !hep) {
		/* Host traffic that is not for a service: not weft's to judge or track. */
		if (hook == WEFT_HOOK_FROM_NAT)
			return weft_verdict(reason, WEFT_REASON_DROP_NAT, WEFT_DROP);
		return weft_verdict(reason, WEFT_REASON_ACCEPT_HOST, WEFT_PASS);
	}

	/* What the host forwards to a workload: another node's tunnelled client, or checked for
	 * where it came in (rpf.h). */
	const struct weft_tun_flow *tun = NULL;

	if (hook == WEFT_HOOK_TO_WEP && !p->icmp_error && (weft_tunnel || weft_rpf != WEFT_RPF_DISABLED)) {
		__u32 in = skb->ingress_ifindex;
		struct weft_iface_value *from = in ? bpf_map_lookup_elem(&weft_iface, &in) : NULL;

		/* Through the tunnel: another node's workload (that node held it to its own
		 * addresses) or a client that node forwarded. From a local workload: held to its
		 * addresses already. Anything else is checked. */
		if (from && (from->flags & WEFT_IFACE_F_TUNNEL))
			tun = weft_tun_origin(&k);
		else if (!(from && (from->flags & WEFT_IFACE_F_WORKLOAD)) && !weft_rpf_ok(skb, p, in))
			return weft_verdict(reason, WEFT_REASON_DROP_RPF, WEFT_DROP);
	}

	/* Policy sees the flow after translation: the backend, not the frontend. */
	if (action == WEFT_ACT_DNAT)
		src_is_a = weft_ct4_key_of(&post, p->saddr, nat_addr, p->sport, nat_port, p->proto);
	if (WEFT_IS_WEP(hook)) {
		__u32 dst = action == WEFT_ACT_DNAT ? nat_addr : p->daddr;

		f.proto = p->proto;
		f.peer = hook == WEFT_HOOK_FROM_WEP ? dst : p->saddr;
		f.local = hook == WEFT_HOOK_FROM_WEP ? p->saddr : dst;
		f.sport = p->sport;
		f.dport = action == WEFT_ACT_DNAT ? nat_port : p->dport;
		if (p->proto == IPPROTO_ICMP) {
			f.sport = 0;
			f.dport = (p->icmp_type << 8) | p->icmp_code;
		}
		ruleset = hook == WEFT_HOOK_FROM_WEP ? iface->ruleset_out : iface->ruleset_in;
		weft_policy4(ruleset, &f, &r);
		weft_count_rule(r.rule_id);
		weft_note_policy(out, r.action, r.flags, r.rule_id, hook == WEFT_HOOK_FROM_WEP);
		if (r.action != WEFT_ACT_ALLOW)
			return weft_verdict(reason, WEFT_REASON_DROP_POLICY, WEFT_DROP);
		if (hook == WEFT_HOOK_FROM_WEP && weft_ep_to_host_action == WEFT_EP_TO_HOST_DROP && weft_is_host_addr(dst))
			return weft_verdict(reason, WEFT_REASON_DROP_EP_TO_HOST, WEFT_DROP);
	} else if (hep) {
		bool in = hook == WEFT_HOOK_FROM_HEP;
		__u32 dst = action == WEFT_ACT_DNAT ? nat_addr : p->daddr;
		__u16 dport = action == WEFT_ACT_DNAT ? nat_port : p->dport;

		/* The host endpoint's mark goes on the outside side's leg of the entry made below. */
		ct_flags = weft_hep_ct_flag(in ? src_is_a : !src_is_a);
		if (!hep_done) {
			weft_hep_flow(in, p, dst, dport, &f);
			if (!weft_hep_allows(hep, in, f.local, f.peer, f.proto, f.sport, f.dport, out))
				return weft_verdict(reason, WEFT_REASON_DROP_POLICY, WEFT_DROP);
		}
	}
	/* ICMP errors are never flows of their own. */
	if (p->icmp_error)
		return weft_verdict(reason, WEFT_REASON_ACCEPT_POLICY, WEFT_PASS);

	if (action == WEFT_ACT_DNAT) {
		const struct weft_route_value *via = hook == WEFT_HOOK_FROM_HEP ? weft_dsr_route(p, nat_addr) : NULL;

		if (via) {
			/* DSR: on, unchanged, to the backend's node, which answers the client. */
			struct weft_tun_flow t = { .tun_addr = via->next_hop, .ifindex = via->ifindex };

			out->action = WEFT_ACT_NONE;
			src_is_a = weft_ct4_key_of(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
			if (weft_ct4_create(&k, p, src_is_a, false, 0, ct_flags | WEFT_CT_F_DSR, &t))
				return weft_verdict(reason, WEFT_REASON_DROP_CT_FULL, WEFT_DROP);
			return weft_verdict(reason, WEFT_REASON_ACCEPT_NAT, weft_tun_send(t.ifindex, t.tun_addr));
		}
		if (weft_ct4_create_nat(&k, &post, p, src_is_a, hook == WEFT_HOOK_FROM_WEP, ruleset, p->daddr, p->dport,
					ct_flags))
			return weft_verdict(reason, WEFT_REASON_DROP_CT_FULL, WEFT_DROP);
		return weft_verdict(reason, WEFT_REASON_ACCEPT_NAT, WEFT_PASS);
	}
	if (weft_ct4_create(&k, p, src_is_a, hook == WEFT_HOOK_FROM_WEP, ruleset, ct_flags, tun))
		return weft_verdict(reason, WEFT_REASON_DROP_CT_FULL, WEFT_DROP);
	if (hep_done == WEFT_HEP_DONE_FAILSAFE)
		return weft_verdict(reason, WEFT_REASON_ACCEPT_FAILSAFE, WEFT_PASS);
	return weft_verdict(reason, WEFT_REASON_ACCEPT_POLICY, WEFT_PASS);
}

WEFT_INLINE int weft_tc(struct __sk_buff *skb, const __u32 hook)
{
	__u32 ifindex = skb->ifindex;
	__u32 reason = WEFT_REASON_MAX;
	struct weft_outcome out = { .parse = WEFT_EV_PARSE_NONE };
	/* Zeroed: it goes whole to global functions (weft_report), and verifiers before 6.3
	 * refuse a pointer to stack bytes never written. */
	struct weft_pkt4 p = {};
	int rc = weft_tc_packet(skb, hook, &reason, &p, &out);

	/* A denied flow's translation is noted for its record, but not made. */
	if (out.action == WEFT_ACT_DNAT && rc == WEFT_PASS) {
		if (weft_rewrite4(skb, &p, true, p.daddr, out.addr, p.dport, out.port)) {
			rc = WEFT_DROP;
			reason = WEFT_REASON_DROP_NAT;
		}
	} else if (out.action == WEFT_ACT_UNNAT && rc == WEFT_PASS) {
		if (weft_rewrite4(skb, &p, false, p.saddr, out.addr, p.sport, out.port)) {
			rc = WEFT_DROP;
			reason = WEFT_REASON_DROP_NAT;
		}
	}
	if (hook == WEFT_HOOK_FROM_WEP && weft_mss_clamp && rc == WEFT_PASS && p.proto == IPPROTO_TCP &&
	    (p.tcp_flags & WEFT_TCP_SYN) && p.frag == WEFT_FRAG_NONE)
		weft_clamp_mss(skb, &p);
	if (reason < WEFT_REASON_MAX)
		weft_count(ifindex, hook, reason);
	/* Established flows on untraced interfaces get no further than this test. */
	if (out.flags || ((WEFT_FLOW_REASONS >> (reason & 63)) & 1)) {
		out.reason = reason;
		/* Sent on through the tunnel is passed; redirected back where it came from, rejected. */
		out.verdict = rc == TC_ACT_REDIRECT && reason != WEFT_REASON_REJECT_NO_BACKEND ? WEFT_PASS : rc;
		weft_report(skb, hook, &p, &out);
	}
	return rc;
}

#endif /* WEFT_FLOW_H */
