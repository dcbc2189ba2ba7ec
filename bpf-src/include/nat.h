/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Services: finding a flow's frontend, choosing its backend (random, sticky per client with
 * sessionAffinity, or Maglev), and rewriting addresses and ports with their checksums.
 */
#ifndef WEFT_NAT_H
#define WEFT_NAT_H

#include "weft_bpf.h"
#include "parse.h"

enum weft_nat_result {
	WEFT_NAT_NONE = 0,   /* not a service frontend */
	WEFT_NAT_OK,         /* translate to the chosen backend */
	WEFT_NAT_NO_BACKEND, /* a frontend without backends: reject */
	WEFT_NAT_DENIED,     /* a client outside loadBalancerSourceRanges: drop */
};

struct weft_nat_choice {
	__u32 svc_id;
	__u32 addr;       /* backend, network order */
	__u16 port;       /* host order */
	__u16 local_only; /* in: choose among this node's backends only (tunnel.h, DSR) */
};

/* A stable, well-spread hash of a flow for Maglev: the same flow lands in the same slot on
 * every node and after every restart. */
WEFT_INLINE __u32 weft_flow_hash(const struct weft_pkt4 *p)
{
	__u32 h = 0x9e3779b9;

	h ^= p->saddr;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h ^= p->daddr;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	h ^= ((__u32)p->sport << 16) | p->dport;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h ^= p->proto;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Looks up the frontend of a new flow and chooses its backend. */
WEFT_INLINE int weft_nat_choose4(const struct weft_pkt4 *p, struct weft_nat_choice *c)
{
	struct weft_nat_fe4_key fk = { .addr = p->daddr, .port = p->dport, .proto = p->proto };
	struct weft_nat_fe_value *fe;
	struct weft_nat_be_key bk;
	struct weft_nat_be4_value *be = NULL;
	__u32 count;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return WEFT_NAT_NONE;
	fe = bpf_map_lookup_elem(&weft_nat_fe4, &fk);
	if (!fe)
		return WEFT_NAT_NONE;
	if (fe->flags & WEFT_NAT_F_SRC_RANGES) {
		struct weft_nat_src4_key sk = { .prefixlen = 64, .svc_id = fe->svc_id, .addr = p->saddr };

		if (!bpf_map_lookup_elem(&weft_nat_src4, &sk))
			return WEFT_NAT_DENIED;
	}
	count = (c->local_only || (fe->flags & WEFT_NAT_F_LOCAL_ONLY)) ? fe->local_count : fe->count;
	if (count == 0)
		return WEFT_NAT_NO_BACKEND;
	c->svc_id = fe->svc_id;
	bk.svc_id = fe->svc_id;

	if (fe->flags & WEFT_NAT_F_MAGLEV && fe->maglev_size && !c->local_only) {
		bk.ordinal = weft_flow_hash(p) % fe->maglev_size;
		be = bpf_map_lookup_elem(&weft_maglev4, &bk);
	} else if (fe->affinity_timeout_s) {
		struct weft_nat_aff4_key ak = { .svc_id = fe->svc_id, .client = p->saddr };
		struct weft_nat_aff4_value *aff = bpf_map_lookup_elem(&weft_nat_aff4, &ak);
		__u64 now = bpf_ktime_get_ns();

		if (aff && now - aff->used_ns < (__u64)fe->affinity_timeout_s * 1000000000ULL &&
		    aff->ordinal < count) {
			/* Sticky only while the backend is still where the client left it. */
			bk.ordinal = aff->ordinal;
			be = bpf_map_lookup_elem(&weft_nat_be4, &bk);
			if (be && (be->addr != aff->backend.addr || be->port != aff->backend.port))
				be = NULL;
		}
		if (!be) {
			bk.ordinal = bpf_get_prandom_u32() % count;
			be = bpf_map_lookup_elem(&weft_nat_be4, &bk);
		}
		if (be) {
			struct weft_nat_aff4_value nv = { .used_ns = now, .ordinal = bk.ordinal, .backend = *be };

			bpf_map_update_elem(&weft_nat_aff4, &ak, &nv, BPF_ANY);
		}
	} else {
		bk.ordinal = bpf_get_prandom_u32() % count;
		be = bpf_map_lookup_elem(&weft_nat_be4, &bk);
	}
	if (!be)
		return WEFT_NAT_NO_BACKEND;
	c->addr = be->addr;
	c->port = be->port;
	return WEFT_NAT_OK;
}

/* weft_nat_choose4 as a global function: the verifier checks it once, on its own. */
__noinline int weft_nat_lookup4(const struct weft_pkt4 *p, struct weft_nat_choice *c)
{
	if (!p || !c)
		return WEFT_NAT_NONE;
	return weft_nat_choose4(p, c);
}

/* Offset of the L4 checksum, or 0 for protocols weft does not translate. */
WEFT_INLINE __u32 weft_l4_csum_off(const struct weft_pkt4 *p)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		return p->l4_off + 16;
	case IPPROTO_UDP:
		return p->l4_off + 6;
	}
	return 0;
}

/*
 * Rewrites the destination (dst = true) or the source address and port of the packet,
 * keeping the IPv4 and L4 checksums right. Returns 0 on success.
 */
WEFT_INLINE int weft_rewrite4(struct __sk_buff *skb, const struct weft_pkt4 *p, bool dst, __u32 old_addr,
			      __u32 new_addr, __u16 old_port, __u16 new_port)
{
	__u32 addr_off = sizeof(struct ethhdr) + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u32 port_off = p->l4_off + (dst ? 2 : 0);
	__u32 csum_off = weft_l4_csum_off(p);
	__u16 old_port_be = bpf_htons(old_port), new_port_be = bpf_htons(new_port);
	__u64 l4_flags = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (p->frag == WEFT_FRAG_LATER) {
		/* No L4 header here: the first fragment's rewrite covered the datagram's checksum
		 * and ports. */
		if (old_addr == new_addr)
			return 0;
		if (bpf_l3_csum_replace(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, check), old_addr, new_addr,
					sizeof(__u32)))
			return -1;
		return bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) ? -1 : 0;
	}
	if (!csum_off)
		return -1;
	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4_flags | BPF_F_PSEUDO_HDR | sizeof(__u32)))
			return -1;
		if (bpf_l3_csum_replace(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, check), old_addr, new_addr,
					sizeof(__u32)))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0))
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port_be, new_port_be, l4_flags | sizeof(__u16)))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port_be, sizeof(new_port_be), 0))
			return -1;
	}
	return 0;
}

#endif /* WEFT_NAT_H */
