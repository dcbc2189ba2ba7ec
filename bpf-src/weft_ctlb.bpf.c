// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connect-time load balancing (BPFConnectTimeLoadBalancing): host processes connecting to a
 * service address are given a backend at connect() (and, for unconnected UDP, at sendmsg()),
 * so their packets go straight to the backend and no per-packet translation is needed. Replies
 * to unconnected UDP sockets read as coming from the service (recvmsg). Attached to a cgroup;
 * only sockets of the network namespace weft serves are translated.
 *
 * What is not translated here (other protocols, UDP unless enabled, services without
 * backends) takes the routes into bpfin.weft, where weft_from_nat translates or rejects it.
 */
#include "weft_bpf.h"
#include "weft_defs_maps.h"
#include "weft_settings.h"
#include "nat.h"

#define WEFT_SOCK_OK 1

WEFT_INLINE bool weft_ctlb_serves(struct bpf_sock_addr *ctx, __u8 proto)
{
	if (weft_netns_cookie && bpf_get_netns_cookie(ctx) != weft_netns_cookie)
		return false;
	return proto == IPPROTO_TCP || (proto == IPPROTO_UDP && weft_ctlb_udp);
}

/* Gives the socket a backend for the service address it names; remembers, for UDP, which
 * frontend the backend stands for. */
WEFT_INLINE void weft_ctlb_translate(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct weft_pkt4 p = {};
	struct weft_nat_choice c = {};

	p.daddr = ctx->user_ip4;
	p.dport = bpf_ntohs(ctx->user_port);
	p.proto = proto;
	if (weft_nat_lookup4(&p, &c) != WEFT_NAT_OK)
		return;
	if (proto == IPPROTO_UDP) {
		struct weft_ctlb_rev4_key k = { .addr = c.addr, .port = c.port, .cookie = bpf_get_socket_cookie(ctx) };
		struct weft_nat_be4_value fe = { .addr = p.daddr, .port = p.dport };

		bpf_map_update_elem(&weft_ctlb_rev4, &k, &fe, BPF_ANY);
	}
	ctx->user_ip4 = c.addr;
	ctx->user_port = bpf_htons(c.port);
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	__u8 proto = ctx->protocol;

	if (weft_ctlb_serves(ctx, proto))
		weft_ctlb_translate(ctx, proto);
	return WEFT_SOCK_OK;
}

SEC("cgroup/sendmsg4")
int weft_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (weft_ctlb_serves(ctx, IPPROTO_UDP))
		weft_ctlb_translate(ctx, IPPROTO_UDP);
	return WEFT_SOCK_OK;
}

SEC("cgroup/recvmsg4")
int weft_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct weft_ctlb_rev4_key k = {
		.addr = ctx->user_ip4,
		.port = bpf_ntohs(ctx->user_port),
		.cookie = bpf_get_socket_cookie(ctx),
	};
	struct weft_nat_be4_value *fe;

	if (!weft_ctlb_serves(ctx, IPPROTO_UDP))
		return WEFT_SOCK_OK;
	fe = bpf_map_lookup_elem(&weft_ctlb_rev4, &k);
	if (fe) {
		ctx->user_ip4 = fe->addr;
		ctx->user_port = bpf_htons(fe->port);
	}
	return WEFT_SOCK_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
