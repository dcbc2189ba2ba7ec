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
#include "conntrack.h"
#include "counters.h"

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

/* What a host endpoint's untracked ingress policy says of a packet. */
enum weft_xdp_untracked_verdict {
	WEFT_XDP_UNTRACKED_NONE,  /* no such policy, or none of its rules matched */
	WEFT_XDP_UNTRACKED_ALLOW, /* allowed untracked: tc lets it through as it is */
	WEFT_XDP_UNTRACKED_DROP,  /* denied, counted */
};

/*
 * The untracked stage. `*hep_out` is the interface's host endpoint, where it was looked up
 * (always, under NodePort acceleration, which needs it too and would rather not pay the fast
 * path's four lookups on an interface with no untracked policy; without it, the fast path
 * comes first, so that a flood is decided in two array lookups).
 */
WEFT_INLINE int weft_xdp_untracked(__u32 ifindex, const struct weft_pkt4 *p, struct weft_hep_value **hep_out)
{
	struct weft_policy_result r = {};
	struct weft_flow4 f = {};
	struct weft_hep_value *hep = NULL;
	const struct weft_xdp_src_value *sv;

	*hep_out = NULL;
	if (weft_xdp_accel) {
		hep = bpf_map_lookup_elem(&weft_hep, &ifindex);
		*hep_out = hep;
		if (!hep || !hep->ruleset_untracked_in)
			return WEFT_XDP_UNTRACKED_NONE;
	}
	/* The fast path: a verdict by the source alone. */
	sv = weft_xdp_by_source(ifindex, p->saddr);
	if (sv) {
		if (!sv->drop)
			return WEFT_XDP_UNTRACKED_ALLOW;
		return weft_xdp_deny(ifindex, p, sv->rule_id) == XDP_DROP ? WEFT_XDP_UNTRACKED_DROP
									   : WEFT_XDP_UNTRACKED_ALLOW;
	}
	if (!weft_xdp_accel)
		hep = bpf_map_lookup_elem(&weft_hep, &ifindex);
	if (!hep || !hep->ruleset_untracked_in)
		return WEFT_XDP_UNTRACKED_NONE;
	weft_hep_flow(true, p, p->daddr, p->dport, &f);
	weft_policy4(hep->ruleset_untracked_in, &f, &r);
	if (r.flags & WEFT_VERDICT_F_NO_MATCH)
		return WEFT_XDP_UNTRACKED_NONE;
	if (r.action == WEFT_ACT_ALLOW)
		return WEFT_XDP_UNTRACKED_ALLOW;
	return weft_xdp_deny(ifindex, p, r.rule_id) == XDP_DROP ? WEFT_XDP_UNTRACKED_DROP
								 : WEFT_XDP_UNTRACKED_ALLOW;
}

/* ---- NodePort acceleration ------------------------------------------------------------------
 *
 * bpfExternalServiceAcceleration XDP, on the node a client outside the fleet reached: the
 * packets of a known NodePort or external flow whose backend lives on another node are sent on
 * from XDP, without an skb, routing or the tunnel device: translated as tc would translate them
 * and their TTL counted down as routing would (not under DSR, where tc's way redirects them
 * unchanged, and so does XDP's), and
 * wrapped in the VXLAN headers vxlan.calico would give them (outer Ethernet to the underlay's
 * next hop, which the kernel's FIB names; IPv4 from this node's VTEP to the backend node's; UDP
 * to the tunnel's port; the VNI; inner Ethernet between the two VTEPs' MACs, by which the
 * backend node knows who forwarded the flow), then sent back out of the interface they came
 * in by (XDP_TX).
 *
 * Only what tc would merely pass on: a flow's first packet, and any TCP segment that changes
 * its state (SYN, FIN, RST), go the tc way, which makes and ends conntrack entries; so do
 * fragments, packets whose TTL runs out, packets larger than the tunnel's MTU (the
 * stack answers those), next hops the kernel has not resolved and underlay routes through
 * another interface. Conntrack stays the one tc keeps: XDP only marks the flow seen, on the
 * client's leg, as tc would. Replies come back through the tunnel to tc, as before.
 */

/* Outer Ethernet, IPv4, UDP and VXLAN headers. */
#define WEFT_VXLAN_ENCAP_LEN 50
#define WEFT_VXLAN_FLAG_VNI 0x08000000

struct weft_vxlan_outer {
	struct ethhdr eth;
	struct iphdr ip;
	__u16 sport;
	__u16 dport;
	__u16 len;
	__u16 check;
	__u32 flags;
	__u32 vni;
} __attribute__((packed));
_Static_assert(sizeof(struct weft_vxlan_outer) == WEFT_VXLAN_ENCAP_LEN, "weft_vxlan_outer");

/* A checksum after a 32-bit word it covers changed from `from` to `to` (RFC 1624: HC' = ~(~HC
 * + ~m + m')); either byte order, so long as all three are read alike. */
WEFT_INLINE __u16 weft_csum_replace4(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~(from & 0xffff);
	s += (__u16)~(from >> 16);
	s += (to & 0xffff) + (to >> 16);
	return weft_fold_csum(s);
}

WEFT_INLINE __u16 weft_csum_replace2(__u16 check, __u16 from, __u16 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~from;
	s += to;
	return weft_fold_csum(s);
}

/* Where a known service flow's packet from its client goes: its conntrack entry holding the
 * flow's legs, the client's side of it, the backend (unchanged under DSR) and the backend's
 * node's tunnel address. False for anything tc must see. */
struct weft_xdp_fwd {
	struct weft_ct4_value *holder;
	bool client_is_a;
	bool dnat;
	__u32 backend;
	__u16 backend_port;
	__u32 node;
};

WEFT_INLINE bool weft_xdp_fwd_of(const struct weft_pkt4 *p, struct weft_xdp_fwd *fw)
{
	struct weft_route4_key rtk = { .prefixlen = 32 };
	struct weft_ct4_key k, rk;
	struct weft_ct4_value *ct, *rev;
	struct weft_route_value *rt;
	bool src_is_a = weft_ct4_key_of(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);

	ct = bpf_map_lookup_elem(&weft_ct4, &k);
	if (!ct)
		return false;
	if (ct->type == WEFT_CT_NAT_FWD) {
		rk = ct->nat_rev_key;
		rev = bpf_map_lookup_elem(&weft_ct4, &rk);
		if (!rev)
			return false;
		fw->holder = rev;
		fw->client_is_a = !(rev->flags & WEFT_CT_F_B_ORIGINATED);
		if (p->saddr != (fw->client_is_a ? rk.addr_a : rk.addr_b) ||
		    p->sport != (fw->client_is_a ? rk.port_a : rk.port_b))
			return false;
		fw->dnat = true;
		fw->backend = fw->client_is_a ? rk.addr_b : rk.addr_a;
		fw->backend_port = fw->client_is_a ? rk.port_b : rk.port_a;
		rtk.addr = fw->backend;
		rt = bpf_map_lookup_elem(&weft_rt4, &rtk);
		if (!rt || !(rt->flags & WEFT_RT_F_TUNNELED))
			return false;
		fw->node = rt->next_hop;
		return true;
	}
	/* bpfExternalServiceMode DSR: the flow's entry is the client's own tuple, tied to the
	 * backend's node. */
	if (ct->type != WEFT_CT_NORMAL || !(ct->flags & WEFT_CT_F_DSR) || !ct->tun_addr)
		return false;
	if (src_is_a != !(ct->flags & WEFT_CT_F_B_ORIGINATED))
		return false;
	fw->holder = ct;
	fw->client_is_a = src_is_a;
	fw->dnat = false;
	fw->backend = p->daddr;
	fw->backend_port = p->dport;
	fw->node = ct->tun_addr;
	return true;
}

/*
 * The way to a node's underlay address: the interface and the next hop's MAC, as the kernel's
 * FIB says, asked at most once a WEFT_XDP_FIB_TTL_NS per node and CPU (weft_xdp_fib). NULL
 * where the FIB has no ready answer (no route, the next hop not resolved): the stack's way
 * resolves it.
 */
WEFT_INLINE const struct weft_xdp_fib *weft_xdp_next_hop(struct xdp_md *ctx, __u32 underlay)
{
	__u32 slot = (underlay * 0x9e3779b1u) >> 26;
	struct weft_xdp_fib *c = bpf_map_lookup_elem(&weft_xdp_fib, &slot);
	struct bpf_fib_lookup fib = {};
	__u64 now = bpf_ktime_get_coarse_ns();

	if (!c)
		return NULL;
	if (c->at_ns && c->underlay == underlay && now - c->at_ns < WEFT_XDP_FIB_TTL_NS)
		return c;
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = weft_vtep_addr;
	fib.ipv4_dst = underlay;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
		c->at_ns = 0;
		return NULL;
	}
	c->at_ns = now;
	c->underlay = underlay;
	c->ifindex = fib.ifindex;
	__builtin_memcpy(c->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(c->smac, fib.smac, ETH_ALEN);
	return c;
}

WEFT_INLINE int weft_xdp_forward(struct xdp_md *ctx, struct weft_pkt4 *p, const struct weft_hep_value *hep)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	const struct weft_xdp_fib *nh;
	struct weft_vxlan_outer *o;
	struct weft_node4_value *node;
	struct weft_xdp_fwd fw = {};
	struct ethhdr *eth;
	struct iphdr *ip;
	__u16 *l4, *csum = NULL;
	__u32 inner_len, h, s = 0;
	int i;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return XDP_PASS;
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || (ip->frag_off & bpf_htons(WEFT_IP_MF)))
		return XDP_PASS;
	l4 = (void *)ip + ip->ihl * 4;
	if (p->proto == IPPROTO_TCP) {
		if ((void *)l4 + 20 > end)
			return XDP_PASS;
		p->tcp_flags = ((__u8 *)l4)[WEFT_TCP_FLAGS_OFF];
		if (p->tcp_flags & (WEFT_TCP_SYN | WEFT_TCP_FIN | WEFT_TCP_RST))
			return XDP_PASS;
	} else if ((void *)l4 + 8 > end) {
		return XDP_PASS;
	}
	if (!weft_xdp_fwd_of(p, &fw) || weft_ct_tcp_finished(fw.holder))
		return XDP_PASS;
	/* Translated, the packet is routed on (its TTL counted down) where tc's way would be;
	 * under DSR, tc's way redirects it as it came. A TTL that runs out is the stack's. */
	if (fw.dnat && ip->ttl <= 1)
		return XDP_PASS;
	/* A host endpoint's policy approved the flow once, on tc's way (hep.h). */
	if (hep && !(fw.holder->flags & weft_hep_ct_flag(fw.client_is_a)))
		return XDP_PASS;
	node = bpf_map_lookup_elem(&weft_node4, &fw.node);
	if (!node)
		return XDP_PASS;
	/* What vxlan.calico could not carry, the stack answers (fragmentation needed). */
	if (bpf_ntohs(ip->tot_len) > weft_vxlan_mtu)
		return XDP_PASS;
	inner_len = (__u32)(end - data);
	nh = weft_xdp_next_hop(ctx, node->underlay);
	if (!nh || nh->ifindex != ifindex)
		return XDP_PASS;

	/* Known, and on its way: the flow's bookkeeping, as tc's would be. */
	if (fw.client_is_a)
		fw.holder->leg_a.tcp_flags |= weft_ct_leg_flags(p);
	else
		fw.holder->leg_b.tcp_flags |= weft_ct_leg_flags(p);
	fw.holder->last_seen_ns = weft_ct_now();

	if (bpf_xdp_adjust_head(ctx, -WEFT_VXLAN_ENCAP_LEN))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	o = data;
	eth = (void *)(o + 1);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_DROP;
	l4 = (void *)ip + ip->ihl * 4;
	if (p->proto == IPPROTO_TCP) {
		if ((void *)l4 + 20 > end)
			return XDP_DROP;
		csum = &l4[8];
	} else {
		if ((void *)l4 + 8 > end)
			return XDP_DROP;
		if (l4[3])
			csum = &l4[3];
	}

	/* The inner packet: translated and one hop older (not under DSR), between the VTEPs. */
	if (fw.dnat) {
		__u16 port = bpf_htons(fw.backend_port);

		if (csum) {
			*csum = weft_csum_replace4(*csum, ip->daddr, fw.backend);
			*csum = weft_csum_replace2(*csum, l4[1], port);
			if (!*csum && p->proto == IPPROTO_UDP)
				*csum = 0xffff;
		}
		ip->check = weft_csum_replace4(ip->check, ip->daddr, fw.backend);
		ip->daddr = fw.backend;
		l4[1] = port;
		ip->check = weft_csum_replace2(ip->check, bpf_htons(ip->ttl << 8), bpf_htons((ip->ttl - 1) << 8));
		ip->ttl -= 1;
	}
	__builtin_memcpy(eth->h_dest, node->mac, ETH_ALEN);
	for (i = 0; i < ETH_ALEN; i++)
		eth->h_source[i] = weft_vtep_mac[i];
	eth->h_proto = bpf_htons(ETH_P_IP);

	/* The tunnel's headers. The UDP source port spreads flows over the underlay's paths, as
	 * the kernel's VXLAN does; no UDP checksum, as vxlan.calico sends none. */
	__builtin_memcpy(o->eth.h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(o->eth.h_source, nh->smac, ETH_ALEN);
	o->eth.h_proto = bpf_htons(ETH_P_IP);
	o->ip.version = 4;
	o->ip.ihl = 5;
	o->ip.tos = 0;
	o->ip.tot_len = bpf_htons(inner_len + WEFT_VXLAN_ENCAP_LEN - sizeof(struct ethhdr));
	o->ip.id = 0;
	o->ip.frag_off = 0;
	o->ip.ttl = 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.check = 0;
	o->ip.saddr = weft_vtep_addr;
	o->ip.daddr = node->underlay;
	for (i = 0; i < (int)sizeof(struct iphdr) / 2; i++)
		s += ((__u16 *)((void *)o + sizeof(struct ethhdr)))[i];
	o->ip.check = weft_fold_csum(s);
	h = (p->saddr ^ p->daddr ^ ((__u32)p->sport << 16 | p->dport) ^ p->proto) * 0x9e3779b1u;
	o->sport = bpf_htons(0xc000 | (h >> 18));
	o->dport = bpf_htons(weft_vxlan_port);
	o->len = bpf_htons(inner_len + WEFT_VXLAN_ENCAP_LEN - sizeof(struct ethhdr) - sizeof(struct iphdr));
	o->check = 0;
	o->flags = bpf_htonl(WEFT_VXLAN_FLAG_VNI);
	o->vni = bpf_htonl(weft_vxlan_vni << 8);

	weft_count(ifindex, WEFT_HOOK_XDP, WEFT_REASON_ACCEPT_XDP_FWD);
	return XDP_TX;
}

/* XDP on a data or host endpoint interface: the untracked policy's drops, then, where it is
 * on, NodePort acceleration. */
WEFT_INLINE int weft_xdp_main(struct xdp_md *ctx)
{
	struct weft_hep_value *hep;
	struct weft_pkt4 p = {};
	int verdict;

	if (!weft_xdp_parse4(ctx, &p))
		return XDP_PASS;
	if (weft_xdp_accel && !weft_xdp_untracked_on) {
		__u32 ifindex = ctx->ingress_ifindex;

		hep = bpf_map_lookup_elem(&weft_hep, &ifindex);
		return weft_xdp_forward(ctx, &p, hep);
	}
	verdict = weft_xdp_untracked(ctx->ingress_ifindex, &p, &hep);
	if (verdict == WEFT_XDP_UNTRACKED_DROP)
		return XDP_DROP;
	if (weft_xdp_accel && verdict == WEFT_XDP_UNTRACKED_NONE)
		return weft_xdp_forward(ctx, &p, hep);
	return XDP_PASS;
}

#endif /* WEFT_XDP_H */
