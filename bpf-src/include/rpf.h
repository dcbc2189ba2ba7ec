/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpfEnforceRPF: a packet forwarded to a workload or a service backend must have come in where
 * the route back to its source leaves (Strict), or its source must have a route at all (Loose).
 * Checked on a flow's first packet, where weft is the first to see it come in from elsewhere:
 * a data interface translating it to a service, and a workload's ingress for what the host
 * forwards (skb->ingress_ifindex names where it came in). What comes from a local workload is
 * held to its own addresses already (weft_wladdr4), and what comes through the tunnel was held
 * so by the node that sent it, or is a client that node forwarded, whose route is not the
 * tunnel (tunnel.h): neither is checked again. A lookup the kernel cannot answer for forwarding (forwarding off on that
 * interface) is no verdict: the kernel will not forward the packet anyway.
 */
#ifndef WEFT_RPF_H
#define WEFT_RPF_H

#include "weft_bpf.h"
#include "weft_settings.h"
#include "parse.h"

WEFT_INLINE bool weft_rpf_ok(struct __sk_buff *skb, const struct weft_pkt4 *p, __u32 in_ifindex)
{
	__u32 zero = 0;
	struct weft_scratch *s;
	long rc;

	if (weft_rpf == WEFT_RPF_DISABLED || in_ifindex == 0)
		return true;
	/* struct bpf_fib_lookup is 64 bytes: off the stack, which the pipeline fills. */
	s = bpf_map_lookup_elem(&weft_scratch, &zero);
	if (!s)
		return true;
	__builtin_memset(&s->fib, 0, sizeof(s->fib));
	s->fib.family = AF_INET;
	s->fib.ipv4_src = p->daddr;
	s->fib.ipv4_dst = p->saddr;
	s->fib.ifindex = in_ifindex;
	rc = bpf_fib_lookup(skb, &s->fib, sizeof(s->fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return true;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return false;
	return weft_rpf == WEFT_RPF_LOOSE || s->fib.ifindex == in_ifindex;
}

#endif /* WEFT_RPF_H */
