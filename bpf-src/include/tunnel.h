/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fleet's tunnel (vxlan.calico), for flows from outside the fleet that another node
 * forwarded here: a NodePort or external address reached on that node, translated there to a
 * backend on this one, the client's own address kept. The replies must go back through that
 * node, which holds the translation (bpfExternalServiceMode Tunnel); routed by their
 * destination, they would leave straight for the client with the backend's address.
 *
 *   1. weft_from_tun, on the tunnel's ingress (after the kernel decapsulates), notes the
 *      sending node under the flow's conntrack key (weft_tun_flows4): the inner frame's source
 *      MAC is that node's VTEP (weft_vtep4). Flows from the fleet's own addresses are left
 *      out: routes take their replies the same way. TCP is noted on its SYN, where the
 *      workload's ingress makes the flow's entry; its other segments pass untouched.
 *   2. The workload's ingress hook gives the flow's new conntrack entry that node (tun_addr).
 *   3. The workload's egress hook sends the flow's replies to that node's tunnel address,
 *      through the tunnel (bpf_redirect_neigh: weft's permanent neighbour and FDB entries
 *      resolve it).
 */
#ifndef WEFT_TUNNEL_H
#define WEFT_TUNNEL_H

#include "weft_bpf.h"
#include "weft_settings.h"
#include "parse.h"
#include "conntrack.h"
#include "nat.h"

/* Sends the packet to a node's tunnel address through the tunnel device `ifindex` (weft's
 * permanent neighbour and FDB entries resolve it). */
WEFT_INLINE int weft_tun_send(__u32 ifindex, __u32 tun_addr)
{
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = tun_addr };

	return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
}

/*
 * bpfExternalServiceMode DSR, on the node the client reached: a new NodePort or external flow
 * whose chosen backend lives on a node reached through the tunnel goes there unchanged, unless
 * the client is in bpfDSROptoutCIDRs (those are served as in Tunnel mode). Returns the route
 * to the backend's node, or NULL for the ordinary path.
 */
WEFT_INLINE const struct weft_route_value *weft_dsr_route(const struct weft_pkt4 *p, __u32 backend)
{
	struct weft_route4_key rk = { .prefixlen = 32, .addr = backend };
	struct weft_dsr_optout4_key ok = { .prefixlen = 32, .addr = p->saddr };
	struct weft_route_value *rt;

	if (!weft_dsr)
		return NULL;
	rt = bpf_map_lookup_elem(&weft_rt4, &rk);
	if (!rt || !(rt->flags & WEFT_RT_F_TUNNELED))
		return NULL;
	if (bpf_map_lookup_elem(&weft_dsr_optout4, &ok))
		return NULL;
	return rt;
}

/*
 * bpfExternalServiceMode DSR, on the backend's node: a flow another node forwarded unchanged
 * (its destination still the frontend the client reached: that node's address and NodePort,
 * or an external or load balancer address) is translated here to one of this node's own
 * backends, with the conntrack entries of any service flow, so that the workload's replies
 * are given the frontend back on their way out and go straight to the client. A NodePort is
 * found by its port alone (the frontend of address 0.0.0.0), since the address is the other
 * node's. Returns true when the packet was such a flow's.
 */
WEFT_INLINE bool weft_dsr_arrive(struct __sk_buff *skb, const struct weft_pkt4 *p)
{
	struct weft_route4_key dk = { .prefixlen = 32, .addr = p->daddr };
	struct weft_nat_choice nat = { .local_only = 1 };
	struct weft_ct4_key k, post;
	struct weft_ct4_value *ct;
	struct weft_route_value *rt;
	struct weft_pkt4 q;
	bool src_is_a;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return false;
	weft_ct4_key_of(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	ct = bpf_map_lookup_elem(&weft_ct4, &k);
	if (ct) {
		struct weft_ct4_key rk = ct->nat_rev_key;
		struct weft_ct4_value *rev;
		bool client_is_a;

		if (ct->type != WEFT_CT_NAT_FWD)
			return false;
		rev = bpf_map_lookup_elem(&weft_ct4, &rk);
		if (!rev)
			return false;
		client_is_a = !(rev->flags & WEFT_CT_F_B_ORIGINATED);
		if (p->saddr != (client_is_a ? rk.addr_a : rk.addr_b) ||
		    p->sport != (client_is_a ? rk.port_a : rk.port_b))
			return false;
		weft_rewrite4(skb, p, true, p->daddr, client_is_a ? rk.addr_b : rk.addr_a, p->dport,
			      client_is_a ? rk.port_b : rk.port_a);
		return true;
	}
	/* Only a flow's first packet starts one; what is routed here is not a frontend. */
	if (p->proto == IPPROTO_TCP && !weft_tcp_is_syn(p))
		return false;
	rt = bpf_map_lookup_elem(&weft_rt4, &dk);
	if (rt && (rt->flags & (WEFT_RT_F_LOCAL_HOST | WEFT_RT_F_LOCAL_WORKLOAD)))
		return false;
	q = *p;
	if (weft_nat_lookup4(&q, &nat) != WEFT_NAT_OK) {
		q.daddr = 0;
		if (weft_nat_lookup4(&q, &nat) != WEFT_NAT_OK)
			return false;
	}
	src_is_a = weft_ct4_key_of(&post, p->saddr, nat.addr, p->sport, nat.port, p->proto);
	if (weft_ct4_create_nat(&k, &post, p, src_is_a, false, 0, p->daddr, p->dport, 0))
		return false;
	weft_rewrite4(skb, p, true, p->daddr, nat.addr, p->dport, nat.port);
	return true;
}

WEFT_INLINE int weft_from_tunnel(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct weft_pkt4 p = {};
	struct weft_route4_key rk = { .prefixlen = 32 };
	struct weft_route_value *rt;
	struct weft_vtep_key vk = {};
	struct weft_tun_flow v, *have;
	struct weft_ct4_key k;
	__u32 *node;

	if ((void *)(eth + 1) > end)
		return WEFT_PASS;
	__builtin_memcpy(vk.mac, eth->h_source, ETH_ALEN);
	if (weft_parse4(skb, &p) != WEFT_PARSE_IPV4 || p.icmp_error)
		return WEFT_PASS;
	if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP && p.proto != IPPROTO_SCTP)
		return WEFT_PASS;
	/* Nothing to do for a TCP segment after the SYN, but under DSR, whose flows are
	 * translated here packet by packet. */
	if (!weft_dsr && p.proto == IPPROTO_TCP && !weft_tcp_is_syn(&p))
		return WEFT_PASS;
	rk.addr = p.saddr;
	rt = bpf_map_lookup_elem(&weft_rt4, &rk);
	if (rt && (rt->flags & (WEFT_RT_F_LOCAL_HOST | WEFT_RT_F_LOCAL_WORKLOAD | WEFT_RT_F_REMOTE_WORKLOAD)))
		return WEFT_PASS;
	if (weft_dsr && weft_dsr_arrive(skb, &p))
		return WEFT_PASS;
	if (p.proto == IPPROTO_TCP && !weft_tcp_is_syn(&p))
		return WEFT_PASS;
	node = bpf_map_lookup_elem(&weft_vtep4, &vk);
	if (!node)
		return WEFT_PASS;
	weft_ct4_key_of(&k, p.saddr, p.daddr, p.sport, p.dport, p.proto);
	have = bpf_map_lookup_elem(&weft_tun_flows4, &k);
	if (have && have->tun_addr == *node && have->ifindex == skb->ifindex)
		return WEFT_PASS;
	v.tun_addr = *node;
	v.ifindex = skb->ifindex;
	bpf_map_update_elem(&weft_tun_flows4, &k, &v, BPF_ANY);
	return WEFT_PASS;
}

/* The node a new flow to a workload came through, if another node forwarded it here. */
WEFT_INLINE const struct weft_tun_flow *weft_tun_origin(const struct weft_ct4_key *k)
{
	if (!weft_tunnel)
		return NULL;
	return bpf_map_lookup_elem(&weft_tun_flows4, k);
}

/* Whether a packet of a known flow goes to the node the flow is tied to, through the tunnel:
 * a workload's reply to a client that node forwarded here, or, under DSR on the node the
 * client reached, the client's packets to its backend's node. */
WEFT_INLINE bool weft_tun_bound(const __u32 hook, const struct weft_ct4_value *ct, bool src_is_a)
{
	if (!ct->tun_addr)
		return false;
	if (hook == WEFT_HOOK_FROM_WEP)
		return weft_tunnel && src_is_a == !!(ct->flags & WEFT_CT_F_B_ORIGINATED);
	if (hook == WEFT_HOOK_FROM_HEP)
		return weft_dsr && (ct->flags & WEFT_CT_F_DSR);
	return false;
}

/*
 * A workload's TCP handshake (SYN, SYN-ACK) leaving it while the fleet's tunnel is up: its MSS
 * option is clamped to what the tunnel carries (weft_mss_clamp), as a workload MTU of the
 * tunnel's would have it (Calico's CNI sets that MTU; weft does not own the workloads'
 * devices), so that neither end sends a segment the tunnel must refuse. Stacks put the MSS
 * option first; one elsewhere is left alone, and the kernel's fragmentation-needed, which
 * passes as related to the flow, still brings the path MTU down.
 */
WEFT_INLINE void weft_clamp_mss(struct __sk_buff *skb, const struct weft_pkt4 *p)
{
	struct {
		__u8 kind;
		__u8 len;
		__u16 mss; /* network order */
	} opt;
	__u16 clamp = bpf_htons(weft_mss_clamp);
	__u8 doff;

	if (bpf_skb_load_bytes(skb, p->l4_off + 12, &doff, 1) || (doff >> 4) <= 5)
		return;
	if (bpf_skb_load_bytes(skb, p->l4_off + 20, &opt, sizeof(opt)))
		return;
	if (opt.kind != 2 || opt.len != 4 || bpf_ntohs(opt.mss) <= weft_mss_clamp)
		return;
	if (bpf_l4_csum_replace(skb, p->l4_off + 16, opt.mss, clamp, sizeof(clamp)))
		return;
	bpf_skb_store_bytes(skb, p->l4_off + 22, &clamp, sizeof(clamp), 0);
}

#endif /* WEFT_TUNNEL_H */
