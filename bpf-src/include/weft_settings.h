/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Settings the loader fills in (reconciler/src/bpf/load.rs) as .rodata, one set for every
 * object so the loader and `weft diff` read them one way. The verifier sees them as constants,
 * so branches a setting turns off cost nothing.
 *
 * Mirror (keep in step): reconciler/src/bpf/load.rs ProgramSettings.
 */
#ifndef WEFT_SETTINGS_H
#define WEFT_SETTINGS_H

#include "weft_bpf.h"

/* Identifies the build of this object, so that `weft diff` can tell a stale program. */
const volatile __u64 weft_object_id = 0;
/* DefaultEndpointToHostAction for a workload's new flows to the host: WEFT_EP_TO_HOST_*.
 * Return is treated as Accept until host endpoints have policy of their own. */
const volatile __u8 weft_ep_to_host_action = WEFT_EP_TO_HOST_DROP;
/* Connect-time load balancing translates UDP as well as TCP (BPFConnectTimeLoadBalancing
 * Enabled rather than TCP). */
const volatile __u8 weft_ctlb_udp = 0;
/* The network namespace weft serves, by cookie: connect-time load balancing translates only
 * its sockets (0: any). */
const volatile __u64 weft_netns_cookie = 0;
/* Flows may come from other nodes through the fleet's tunnel (vxlan.calico exists): new flows
 * to workloads look up which node forwarded them (tunnel.h). */
const volatile __u8 weft_tunnel = 0;
/* The MSS a workload's TCP handshake is clamped to while the tunnel is up (its MTU less 40);
 * 0: none (tunnel.h). */
const volatile __u16 weft_mss_clamp = 0;
/* bpfExternalServiceMode DSR: a NodePort or external flow whose backend is on another node is
 * forwarded to it unchanged through the tunnel, and answered from there (tunnel.h). */
const volatile __u8 weft_dsr = 0;
/* bpfExternalServiceAcceleration XDP: the packets of a known NodePort or external flow whose
 * backend is on another node are sent on from XDP, encapsulated there (xdp.h). The tunnel's
 * VNI, UDP port (host order) and MTU, and this node's VTEP (address in network order, and
 * MAC), as vxlan.calico has them. */
const volatile __u8 weft_xdp_accel = 0;
/* Under the acceleration, whether XDP also runs a host endpoint's untracked ingress stage
 * (xdpEnabled, default true); 0 leaves that stage to tc alone. */
const volatile __u8 weft_xdp_untracked_on = 1;
const volatile __u32 weft_vxlan_vni = 0;
const volatile __u16 weft_vxlan_port = 0;
const volatile __u16 weft_vxlan_mtu = 0;
const volatile __u32 weft_vtep_addr = 0;
const volatile __u8 weft_vtep_mac[6] = {};
/* bpfEnforceRPF: WEFT_RPF_*. */
const volatile __u8 weft_rpf = WEFT_RPF_DISABLED;

#endif /* WEFT_SETTINGS_H */
