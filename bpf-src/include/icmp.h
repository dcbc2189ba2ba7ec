/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors weft sends itself: "port unreachable" for a service without backends, as
 * kube-proxy's REJECT does. The packet is turned into the error in place: cut to its IPv4
 * header and 8 bytes of L4, a new IPv4 and ICMP header put in front, addresses swapped.
 */
#ifndef WEFT_ICMP_H
#define WEFT_ICMP_H

#include "weft_bpf.h"
#include "parse.h"

#define WEFT_ICMP_DEST_UNREACH 3
#define WEFT_ICMP_PORT_UNREACH 3

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

/* Folds a 32-bit one's complement sum into a checksum. */
WEFT_INLINE __u16 weft_fold_csum(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * Turns the packet into an ICMP error from the address it was sent to back to its sender.
 * Returns 0 on success; the caller sends the result back where the packet came from.
 */
WEFT_INLINE int weft_icmp_reply4(struct __sk_buff *skb, const struct weft_pkt4 *p, __u8 type, __u8 code)
{
	__u32 ihl_len = (__u32)(p->l4_off - sizeof(struct ethhdr)) & 0x3c;
	/* RFC 792 asks for 8 bytes of what followed the IPv4 header; a TCP header is quoted
	 * whole: a packet whose checksum the NIC (or veth) was to fill in cannot be cut before
	 * its checksum field. */
	__u32 quoted = ihl_len + (p->proto == IPPROTO_TCP ? 20 : 8);
	__u32 zero_key = 0;
	struct weft_scratch *scratch = bpf_map_lookup_elem(&weft_scratch, &zero_key);
	struct ethhdr eth;
	struct iphdr ip = {};
	__u8 icmp[8] = { type, code };
	__s64 sum;

	if (ihl_len < 20 || !scratch)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return -1;
	/* Keep the original IPv4 header and 8 bytes of what followed it, then make room. */
	if (bpf_skb_change_tail(skb, sizeof(struct ethhdr) + quoted, 0))
		return -1;
	if (bpf_skb_adjust_room(skb, sizeof(struct iphdr) + 8, BPF_ADJ_ROOM_MAC, 0))
		return -1;

	/* Ethernet: back to the sender. */
	{
		__u8 tmp[ETH_ALEN];

		__builtin_memcpy(tmp, eth.h_source, ETH_ALEN);
		__builtin_memcpy(eth.h_source, eth.h_dest, ETH_ALEN);
		__builtin_memcpy(eth.h_dest, tmp, ETH_ALEN);
	}
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return -1;

	ip.version = 4;
	ip.ihl = 5;
	ip.tot_len = bpf_htons(sizeof(struct iphdr) + 8 + quoted);
	ip.ttl = 64;
	ip.protocol = IPPROTO_ICMP;
	ip.saddr = p->daddr;
	ip.daddr = p->saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0);
	if (sum < 0)
		return -1;
	ip.check = weft_fold_csum((__u32)sum);
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &ip, sizeof(ip), 0))
		return -1;

	/* The ICMP checksum covers its header and the quoted packet. */
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + sizeof(ip), icmp, sizeof(icmp), 0))
		return -1;
	{
		__u32 q = quoted + 8, n;

		if (q < 36 || q > sizeof(scratch->icmp))
			return -1;
		/* q rounded down to a multiple of 4, computed so that the register passed carries
		 * its own bounds ([36, 96]): older verifiers (6.1, with 32-bit subregisters) lose a
		 * bound that was checked on a copy. */
		n = ((q - 36) & 0x3c) + 36;
		if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr) + sizeof(ip), scratch->icmp, n))
			return -1;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)scratch->icmp, n, 0);
	}
	if (sum < 0)
		return -1;
	{
		__u16 c = weft_fold_csum((__u32)sum);

		if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + sizeof(ip) + 2, &c, sizeof(c), 0))
			return -1;
	}
	return 0;
}

#endif /* WEFT_ICMP_H */
