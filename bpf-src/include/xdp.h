/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP on a host endpoint's interface: its untracked (doNotTrack) ingress policy, decided before
 * an skb exists. What it denies is dropped here, counted under the interface's XDP hook;
 * everything else goes on to tc, which decides it in full (hep.h): allowed and undecided
 * packets, anything that is not plain unicast IPv4 (ARP, IPv6, VLAN-tagged frames, broadcast
 * and multicast), non-first fragments (their ports are in the first), malformed and truncated
 * frames, and the failsafe ports, which no policy closes.
 */
#ifndef WEFT_XDP_H
#define WEFT_XDP_H

#include "weft_bpf.h"
#include "hep.h"

/* Parses an untagged IPv4 frame's addresses and ports; false for anything else. */
WEFT_INLINE bool weft_xdp_parse4(struct xdp_md *ctx, struct weft_pkt4 *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u8 *l4;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return false;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return false;
	if (ip->frag_off & bpf_htons(WEFT_IP_OFFSET))
		return false;
	/* Broadcast and multicast are the host's stack's to sort out (DHCP, routing protocols). */
	if ((bpf_ntohl(ip->daddr) >> 28) >= 0xe || (eth->h_dest[0] & 1))
		return false;
	l4 = (__u8 *)ip + ip->ihl * 4;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if ((void *)(l4 + 4) > end)
			return false;
		p->sport = (l4[0] << 8) | l4[1];
		p->dport = (l4[2] << 8) | l4[3];
		break;
	case IPPROTO_ICMP:
		if ((void *)(l4 + 2) > end)
			return false;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		break;
	}
	return true;
}

/* Counts a drop: in this CPU's slot for the pair, or where tc counts if another holds it. */
WEFT_INLINE void weft_xdp_count(__u32 ifindex, __u32 rule_id)
{
	__u32 slot = (ifindex ^ rule_id) % WEFT_XDP_CTR_SLOTS;
	struct weft_xdp_ctr *c = bpf_map_lookup_elem(&weft_xdp_ctrs, &slot);

	if (c && !c->ifindex) {
		c->ifindex = ifindex;
		c->rule_id = rule_id;
	}
	if (c && c->ifindex == ifindex && c->rule_id == rule_id) {
		c->packets += 1;
		return;
	}
	weft_count_rule(rule_id);
	weft_count(ifindex, WEFT_HOOK_XDP, WEFT_REASON_DROP_UNTRACKED);
}

/* A denial, unless a failsafe port overrules it: counted and dropped. */
WEFT_INLINE int weft_xdp_deny(__u32 ifindex, const struct weft_pkt4 *p, __u32 rule_id)
{
	/* The failsafes come first in tc; here they are asked only about a denial, which they
	 * overrule: the same verdicts, and what passes pays for no lookup of theirs. */
	if (weft_is_failsafe4(true, p) && weft_hep_is_host(p->daddr))
		return XDP_PASS;
	weft_xdp_count(ifindex, rule_id);
	return XDP_DROP;
}

/*
 * The fast path's verdict for a source on an interface: from this CPU's cache, else from the
 * address's entry, else from its prefix's (and then cached); NULL where the interface's policy
 * is not by source alone.
 */
WEFT_INLINE const struct weft_xdp_src_value *weft_xdp_by_source(__u32 ifindex, __u32 saddr)
{
	__u32 zero = 0, slot = ((saddr ^ ifindex) * 0x9e3779b1u) >> 24;
	struct weft_xdp_host4_key hk = { .ifindex = ifindex, .addr = saddr };
	struct weft_xdp_src4_key sk = { .prefixlen = 64, .ifindex = ifindex, .addr = saddr };
	/* Read before the lookups: a change after this read voids what they find. */
	__u64 *gen = bpf_map_lookup_elem(&weft_xdp_gen, &zero);
	struct weft_xdp_cache *c = bpf_map_lookup_elem(&weft_xdp_cache, &slot);
	struct weft_xdp_src_value *sv;
	__u64 g;

	if (!gen || !c)
		return NULL;
	g = *gen;
	if (c->gen == g && c->ifindex == ifindex && c->addr == saddr && g != WEFT_XDP_GEN_OFF)
		return &c->v;
	sv = bpf_map_lookup_elem(&weft_xdp_host4, &hk);
	if (!sv)
		sv = bpf_map_lookup_elem(&weft_xdp_src4, &sk);
	if (!sv)
		return NULL;
	c->gen = g;
	c->ifindex = ifindex;
	c->addr = saddr;
	c->v = *sv;
	return sv;
}

WEFT_INLINE int weft_xdp_untracked(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct weft_policy_result r = {};
	struct weft_flow4 f = {};
	struct weft_pkt4 p = {};
	struct weft_hep_value *hep;
	const struct weft_xdp_src_value *sv;

	if (!weft_xdp_parse4(ctx, &p))
		return XDP_PASS;
	/* The fast path: a verdict by the source alone. */
	sv = weft_xdp_by_source(ifindex, p.saddr);
	if (sv)
		return sv->drop ? weft_xdp_deny(ifindex, &p, sv->rule_id) : XDP_PASS;
	hep = bpf_map_lookup_elem(&weft_hep, &ifindex);
	if (!hep || !hep->ruleset_untracked_in)
		return XDP_PASS;
	weft_hep_flow(true, &p, p.daddr, p.dport, &f);
	weft_policy4(hep->ruleset_untracked_in, &f, &r);
	if ((r.flags & WEFT_VERDICT_F_NO_MATCH) || r.action == WEFT_ACT_ALLOW)
		return XDP_PASS;
	return weft_xdp_deny(ifindex, &p, r.rule_id);
}

#endif /* WEFT_XDP_H */
