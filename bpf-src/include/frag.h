/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv4 fragments (weft_maps.h, weft_frags4): a first fragment leaves its ports under the
 * datagram's identity; a later fragment takes them, and goes through the pipeline as a packet
 * of that flow (its verdict is the flow's; a translation rewrites only its addresses).
 */
#ifndef WEFT_FRAG_H
#define WEFT_FRAG_H

#include "weft_bpf.h"
#include "parse.h"

WEFT_INLINE void weft_frag_key(struct weft_frag4_key *k, const struct weft_pkt4 *p)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->id = p->ip_id;
	k->proto = p->proto;
	k->pad = 0;
}

/* A first fragment leaves its ports for the later ones. */
WEFT_INLINE void weft_frag_note(const struct weft_pkt4 *p)
{
	struct weft_frag4_key k;
	struct weft_frag4_value v = {
		.sport = p->sport,
		.dport = p->dport,
		.icmp_type = p->icmp_type,
		.icmp_code = p->icmp_code,
	};

	weft_frag_key(&k, p);
	bpf_map_update_elem(&weft_frags4, &k, &v, BPF_ANY);
}

/* A later fragment (WEFT_PARSE_FRAGMENT from weft_parse4): a packet of its first fragment's
 * flow, or still WEFT_PARSE_FRAGMENT when that fragment has not been seen. */
WEFT_INLINE int weft_frag_later(struct weft_pkt4 *p)
{
	struct weft_frag4_key k;
	struct weft_frag4_value *v;

	weft_frag_key(&k, p);
	v = bpf_map_lookup_elem(&weft_frags4, &k);
	if (!v)
		return WEFT_PARSE_FRAGMENT;
	p->sport = v->sport;
	p->dport = v->dport;
	p->icmp_type = v->icmp_type;
	p->icmp_code = v->icmp_code;
	p->frag = WEFT_FRAG_LATER;
	return WEFT_PARSE_IPV4;
}

#endif /* WEFT_FRAG_H */
