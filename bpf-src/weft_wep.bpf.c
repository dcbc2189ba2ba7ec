// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Workload endpoints: the programs on the host side of a workload's veth.
 *
 *   weft_from_wep  tc ingress: packets the workload sends (its egress policy)
 *   weft_to_wep    tc egress:  packets to the workload (its ingress policy)
 *
 * One load serves every workload interface; what differs per interface (its rulesets) is in
 * weft_iface. A packet of a known flow passes on its conntrack entry; a new flow is judged by
 * the endpoint's compiled ruleset and, if allowed, gets an entry.
 */
#include "weft_bpf.h"
#include "weft_defs_maps.h"
#include "parse.h"
#include "conntrack.h"
#include "policy.h"
#include "counters.h"

/* ---- Settings, filled in by the loader (reconciler/src/bpf/load.rs) ---- */

/* Identifies the build of this object, so that `weft diff` can tell a stale program. */
const volatile __u64 weft_object_id = 0;
/* DefaultEndpointToHostAction for a workload's new flows to the host: WEFT_EP_TO_HOST_*.
 * Return is treated as Accept until host endpoints have policy of their own. */
const volatile __u8 weft_ep_to_host_action = WEFT_EP_TO_HOST_DROP;

WEFT_INLINE int weft_verdict(__u32 ifindex, __u32 hook, __u32 reason, int rc)
{
	weft_count(ifindex, hook, reason);
	return rc;
}

WEFT_INLINE bool weft_is_host_addr(__u32 addr)
{
	struct weft_route4_key k = { .prefixlen = 32, .addr = addr };
	struct weft_route_value *rt = bpf_map_lookup_elem(&weft_rt4, &k);

	return rt && (rt->flags & WEFT_RT_F_LOCAL_HOST);
}

/* The ICMP "port" a ruleset matches on: the flow's first packet's type and code. */
WEFT_INLINE __u16 weft_icmp_dport(__u8 type, __u8 code)
{
	/* A reply is judged as the request that opened its flow. */
	switch (type) {
	case ICMP_ECHOREPLY:
		return ICMP_ECHO << 8;
	case ICMP_TIMESTAMPREPLY:
		return ICMP_TIMESTAMP << 8;
	case ICMP_INFO_REPLY:
		return ICMP_INFO_REQUEST << 8;
	case ICMP_ADDRESSREPLY:
		return ICMP_ADDRESS << 8;
	}
	return (type << 8) | code;
}

WEFT_INLINE int weft_wep(struct __sk_buff *skb, const bool from_wep)
{
	__u32 hook = from_wep ? WEFT_HOOK_FROM_WEP : WEFT_HOOK_TO_WEP;
	__u32 ifindex = skb->ifindex;
	struct weft_policy_result r;
	struct weft_iface_value *iface;
	struct weft_ct4_value *ct = NULL;
	struct weft_ct4_key k;
	struct weft_flow4 f;
	struct weft_pkt4 p;
	__u32 ruleset;
	bool src_is_a;

	iface = bpf_map_lookup_elem(&weft_iface, &ifindex);
	if (!iface)
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_NO_IFACE, WEFT_DROP);

	switch (weft_parse4(skb, &p)) {
	case WEFT_PARSE_IPV4:
		break;
	case WEFT_PARSE_ARP:
		return weft_verdict(ifindex, hook, WEFT_REASON_ACCEPT_ARP, WEFT_PASS);
	case WEFT_PARSE_IPV6:
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_IPV6, WEFT_DROP);
	case WEFT_PARSE_OTHER_ETHERTYPE:
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_ETHERTYPE, WEFT_DROP);
	case WEFT_PARSE_SHORT:
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_SHORT, WEFT_DROP);
	case WEFT_PARSE_FRAGMENT:
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_FRAGMENT, WEFT_DROP);
	default:
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_BAD_IP, WEFT_DROP);
	}

	if (from_wep) {
		/* A workload sends only from its own addresses. */
		struct weft_route4_key rk = { .prefixlen = 32, .addr = p.saddr };
		struct weft_route_value *rt = bpf_map_lookup_elem(&weft_rt4, &rk);

		if (!rt || !(rt->flags & WEFT_RT_F_LOCAL_WORKLOAD) || rt->ifindex != ifindex)
			return weft_verdict(ifindex, hook, WEFT_REASON_DROP_SPOOFED, WEFT_DROP);
	}

	if (p.icmp_error) {
		/* An ICMP error about a known flow travels with that flow. */
		weft_ct4_key_of(&k, p.inner_saddr, p.inner_daddr, p.inner_sport, p.inner_dport,
				p.inner_proto);
		if (bpf_map_lookup_elem(&weft_ct4, &k))
			return weft_verdict(ifindex, hook, WEFT_REASON_ACCEPT_RELATED, WEFT_PASS);
	}

	src_is_a = weft_ct4_key_of(&k, p.saddr, p.daddr, p.sport, p.dport, p.proto);
	if (!p.icmp_error) {
		ct = bpf_map_lookup_elem(&weft_ct4, &k);
		if (ct && weft_tcp_is_syn(&p) && weft_ct_tcp_finished(ct))
			ct = NULL; /* the tuple is reused by a new connection */
	}

	if (ct) {
		bool a_originated = !(ct->flags & WEFT_CT_F_B_ORIGINATED);
		bool ep_is_a = from_wep ? src_is_a : !src_is_a;
		bool ep_originated = ep_is_a == a_originated;
		struct weft_ct_leg *ep_leg = ep_is_a ? &ct->leg_a : &ct->leg_b;
		struct weft_ct_leg *src_leg = src_is_a ? &ct->leg_a : &ct->leg_b;

		ruleset = ep_originated ? iface->ruleset_out : iface->ruleset_in;
		if (ruleset == 0 || ep_leg->approved_by != ruleset) {
			/* The endpoint's policy changed since it approved this flow (or it never
			 * did): judge the flow again, as it was first seen. */
			f.proto = k.proto;
			f.peer = ep_is_a ? k.addr_b : k.addr_a;
			f.local = ep_is_a ? k.addr_a : k.addr_b;
			f.sport = a_originated ? k.port_a : k.port_b;
			f.dport = a_originated ? k.port_b : k.port_a;
			if (k.proto == IPPROTO_ICMP) {
				f.sport = 0;
				f.dport = weft_icmp_dport(p.icmp_type, p.icmp_code);
			}
			weft_policy4(ruleset, &f, &r);
			weft_count_rule(r.rule_id);
			if (r.action != WEFT_ACT_ALLOW)
				return weft_verdict(ifindex, hook, WEFT_REASON_DROP_POLICY, WEFT_DROP);
			ep_leg->approved_by = ruleset;
		}
		src_leg->tcp_flags |= weft_ct_leg_flags(&p);
		ct->last_seen_ns = bpf_ktime_get_ns();
		return weft_verdict(ifindex, hook, WEFT_REASON_ACCEPT_CT, WEFT_PASS);
	}

	/* A new flow, originated by this packet's source. */
	f.proto = p.proto;
	f.peer = from_wep ? p.daddr : p.saddr;
	f.local = from_wep ? p.saddr : p.daddr;
	f.sport = p.sport;
	f.dport = p.dport;
	if (p.proto == IPPROTO_ICMP) {
		f.sport = 0;
		f.dport = (p.icmp_type << 8) | p.icmp_code;
	}
	ruleset = from_wep ? iface->ruleset_out : iface->ruleset_in;
	weft_policy4(ruleset, &f, &r);
	weft_count_rule(r.rule_id);
	if (r.action != WEFT_ACT_ALLOW)
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_POLICY, WEFT_DROP);
	if (from_wep && weft_ep_to_host_action == WEFT_EP_TO_HOST_DROP && weft_is_host_addr(p.daddr))
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_EP_TO_HOST, WEFT_DROP);
	/* ICMP errors are never flows of their own. */
	if (!p.icmp_error && weft_ct4_create(&k, &p, src_is_a, from_wep, ruleset))
		return weft_verdict(ifindex, hook, WEFT_REASON_DROP_CT_FULL, WEFT_DROP);
	return weft_verdict(ifindex, hook, WEFT_REASON_ACCEPT_POLICY, WEFT_PASS);
}

SEC("tc")
int weft_from_wep(struct __sk_buff *skb)
{
	return weft_wep(skb, true);
}

SEC("tc")
int weft_to_wep(struct __sk_buff *skb)
{
	return weft_wep(skb, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
