/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ethernet, IPv4 and L4 header parsing into struct weft_pkt4. */
#ifndef WEFT_PARSE_H
#define WEFT_PARSE_H

#include "weft_bpf.h"

/* What a packet is, as far as policy and conntrack care. */
struct weft_pkt4 {
	__u32 saddr; /* network order */
	__u32 daddr;
	__u16 sport; /* host order; ICMP queries: see weft_icmp_query_ports; other ICMP: 0 */
	__u16 dport;
	__u8 proto;
	__u8 tcp_flags; /* TCP: the flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 icmp_error; /* an ICMP error; inner_* describe the packet it is about */
	__u8 inner_ihl;  /* ICMP error: the quoted IPv4 header's length in 32-bit words */
	__u16 l4_off; /* offset of the L4 header from the start of the frame */
	__u32 inner_saddr;
	__u32 inner_daddr;
	__u16 inner_sport;
	__u16 inner_dport;
	__u8 inner_proto;
	__u8 frag;   /* WEFT_FRAG_* */
	__u16 ip_id; /* IPv4 identification, network order */
};

/* struct weft_pkt4.frag */
#define WEFT_FRAG_NONE 0
#define WEFT_FRAG_FIRST 1 /* the first fragment of a datagram: it has the L4 header */
#define WEFT_FRAG_LATER 2 /* a later fragment: ports from its first (weft_frags4), no L4 header */

enum weft_parse_result {
	WEFT_PARSE_IPV4 = 0,
	WEFT_PARSE_ARP,
	WEFT_PARSE_IPV6,
	WEFT_PARSE_OTHER_ETHERTYPE,
	WEFT_PARSE_SHORT,
	WEFT_PARSE_BAD_IP,
	WEFT_PARSE_FRAGMENT,
};

#define WEFT_TCP_FIN 0x01
#define WEFT_TCP_SYN 0x02
#define WEFT_TCP_RST 0x04
#define WEFT_TCP_ACK 0x10

#define WEFT_IP_MF 0x2000
#define WEFT_IP_OFFSET 0x1fff

/* The byte offset of the TCP flags within the TCP header. */
#define WEFT_TCP_FLAGS_OFF 13

/* Bytes of the L4 header weft reads, per protocol; 0 for protocols it does not look into. */
WEFT_INLINE __u32 weft_l4_hdr_len(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
		return 8;
	case IPPROTO_SCTP:
		return 12;
	case IPPROTO_ICMP:
		return 8;
	default:
		return 0;
	}
}

WEFT_INLINE bool weft_icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
	       type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* ICMP queries: requests and the replies that answer them, tied by an identifier. */
WEFT_INLINE bool weft_icmp_is_request(__u8 type)
{
	return type == ICMP_ECHO || type == ICMP_TIMESTAMP || type == ICMP_INFO_REQUEST ||
	       type == ICMP_ADDRESS;
}

WEFT_INLINE bool weft_icmp_is_reply(__u8 type)
{
	return type == ICMP_ECHOREPLY || type == ICMP_TIMESTAMPREPLY || type == ICMP_INFO_REPLY ||
	       type == ICMP_ADDRESSREPLY;
}

/*
 * The "ports" of an ICMP query (l4: its header): the identifier on the requester's side, the
 * identifier plus one on the responder's. A request and its reply share a conntrack key, while
 * a request the other way is a flow of its own that policy judges: whatever its identifier,
 * (id, id + 1) never equals the other way's (id' + 1, id'), which a pair such as (id, 0) would
 * when both identifiers are 0 (common for timestamp requests).
 */
WEFT_INLINE void weft_icmp_query_ports(const __u8 *l4, __u16 *sport, __u16 *dport)
{
	__u16 id = (l4[4] << 8) | l4[5];

	if (weft_icmp_is_request(l4[0])) {
		*sport = id;
		*dport = id + 1;
	} else if (weft_icmp_is_reply(l4[0])) {
		*sport = id + 1;
		*dport = id;
	}
}

/*
 * The packet that an ICMP error quotes: its IPv4 header and the first 8 bytes of its L4 header,
 * read with bpf_skb_load_bytes (it sits past the headers that direct access has checked).
 */
WEFT_INLINE int weft_parse_icmp_inner(struct __sk_buff *skb, __u32 off, struct weft_pkt4 *p)
{
	struct iphdr inner;
	__u8 l4[8];

	if (bpf_skb_load_bytes(skb, off, &inner, sizeof(inner)))
		return WEFT_PARSE_SHORT;
	if (inner.version != 4 || inner.ihl < 5)
		return WEFT_PARSE_BAD_IP;
	p->inner_saddr = inner.saddr;
	p->inner_daddr = inner.daddr;
	p->inner_proto = inner.protocol;
	p->inner_ihl = inner.ihl;
	p->inner_sport = 0;
	p->inner_dport = 0;
	if (bpf_skb_load_bytes(skb, off + inner.ihl * 4, l4, sizeof(l4)))
		return WEFT_PARSE_SHORT;
	switch (inner.protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		p->inner_sport = (l4[0] << 8) | l4[1];
		p->inner_dport = (l4[2] << 8) | l4[3];
		break;
	case IPPROTO_ICMP:
		weft_icmp_query_ports(l4, &p->inner_sport, &p->inner_dport);
		break;
	}
	p->icmp_error = 1;
	return WEFT_PARSE_IPV4;
}

/*
 * Parses the packet's headers. Only an IPv4 packet whose L4 header (as far as weft reads it) is
 * all present yields WEFT_PARSE_IPV4; anything else says why not.
 */
WEFT_INLINE int weft_parse4(struct __sk_buff *skb, struct weft_pkt4 *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ihl_len, l4_len, need;
	__u8 *l4;

	if ((void *)(eth + 1) > data_end)
		return WEFT_PARSE_SHORT;
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		break;
	case bpf_htons(ETH_P_ARP):
		return WEFT_PARSE_ARP;
	case bpf_htons(ETH_P_IPV6):
		return WEFT_PARSE_IPV6;
	default:
		return WEFT_PARSE_OTHER_ETHERTYPE;
	}

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end) {
		/* Headers may sit in a non-linear part: pull them in once, then look again. */
		if (skb->len < sizeof(*eth) + sizeof(*ip) ||
		    bpf_skb_pull_data(skb, sizeof(*eth) + sizeof(*ip)))
			return WEFT_PARSE_SHORT;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > data_end)
			return WEFT_PARSE_SHORT;
	}
	if (ip->version != 4 || ip->ihl < 5)
		return WEFT_PARSE_BAD_IP;
	ihl_len = ip->ihl * 4;
	if (bpf_ntohs(ip->tot_len) < ihl_len)
		return WEFT_PARSE_BAD_IP;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->icmp_code = 0;
	p->icmp_error = 0;
	p->l4_off = sizeof(struct ethhdr) + ihl_len;
	p->ip_id = ip->id;
	p->frag = WEFT_FRAG_NONE;

	if (ip->frag_off & bpf_htons(WEFT_IP_OFFSET))
		return WEFT_PARSE_FRAGMENT;
	if (ip->frag_off & bpf_htons(WEFT_IP_MF))
		p->frag = WEFT_FRAG_FIRST;

	l4_len = weft_l4_hdr_len(p->proto);
	if (!l4_len)
		return WEFT_PARSE_IPV4;
	need = sizeof(struct ethhdr) + ihl_len + l4_len;
	if (bpf_ntohs(ip->tot_len) < ihl_len + l4_len)
		return WEFT_PARSE_SHORT;
	if (data + need > data_end) {
		if (skb->len < need || bpf_skb_pull_data(skb, need))
			return WEFT_PARSE_SHORT;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	/* ihl_len is at most 60: the verifier can bound the offset. */
	l4 = data + sizeof(struct ethhdr) + (ihl_len & 0x3c);

	switch (p->proto) {
	case IPPROTO_TCP:
		if ((void *)(l4 + 20) > data_end)
			return WEFT_PARSE_SHORT;
		p->sport = (l4[0] << 8) | l4[1];
		p->dport = (l4[2] << 8) | l4[3];
		p->tcp_flags = l4[WEFT_TCP_FLAGS_OFF];
		break;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if ((void *)(l4 + 4) > data_end)
			return WEFT_PARSE_SHORT;
		p->sport = (l4[0] << 8) | l4[1];
		p->dport = (l4[2] << 8) | l4[3];
		break;
	case IPPROTO_ICMP:
		if ((void *)(l4 + 8) > data_end)
			return WEFT_PARSE_SHORT;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		weft_icmp_query_ports(l4, &p->sport, &p->dport);
		if (weft_icmp_is_error(p->icmp_type)) {
			int rc = weft_parse_icmp_inner(skb, sizeof(struct ethhdr) + ihl_len + 8, p);
			if (rc != WEFT_PARSE_IPV4)
				return rc;
		}
		break;
	}
	return WEFT_PARSE_IPV4;
}

#endif /* WEFT_PARSE_H */
