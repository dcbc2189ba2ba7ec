/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What every weft BPF program includes: kernel UAPI, libbpf helpers, weft's shared layouts. */
#ifndef WEFT_BPF_H
#define WEFT_BPF_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "weft_maps.h"
#include "weft_reasons.h"

#define WEFT_INLINE static __always_inline

/*
 * Verdicts. An accepted packet continues to the next program on the hook, if any (TCX_NEXT and
 * TC_ACT_UNSPEC are both -1), so weft coexists with other tc users; a dropped one stops.
 */
#define WEFT_PASS TC_ACT_UNSPEC
#define WEFT_DROP TC_ACT_SHOT

/* DefaultEndpointToHostAction, as weft_ep_to_host_action */
#define WEFT_EP_TO_HOST_DROP 0
#define WEFT_EP_TO_HOST_RETURN 1
#define WEFT_EP_TO_HOST_ACCEPT 2

/* Address families for helpers' parameters (sys/socket.h drags in libc headers). */
#define AF_INET 2

/* bpfEnforceRPF, as weft_rpf */
#define WEFT_RPF_DISABLED 0
#define WEFT_RPF_STRICT 1
#define WEFT_RPF_LOOSE 2

/* ICMP types weft looks at (linux/icmp.h drags in libc headers, so they are spelled here). */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_TIMESTAMP 13
#define ICMP_TIMESTAMPREPLY 14
#define ICMP_INFO_REQUEST 15
#define ICMP_INFO_REPLY 16
#define ICMP_ADDRESS 17
#define ICMP_ADDRESSREPLY 18

#endif /* WEFT_BPF_H */
