// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Host interfaces: where traffic to services enters from outside the host, and where host
 * processes' traffic to services is routed when connect-time load balancing does not
 * translate it.
 *
 *   weft_from_hep  tc ingress of a data interface (BPFDataIfacePattern): NodePorts, external
 *                  IPs and LoadBalancer IPs, translated to a backend
 *   weft_to_hep    tc egress of a data interface: replies of translated flows
 *   weft_from_nat  tc ingress of bpfout.weft: host processes' packets to services, routed into
 *                  bpfin.weft, translated here
 *   weft_xdp       XDP of a host endpoint's interface: its untracked ingress policy's drops;
 *                  of a data interface under bpfExternalServiceAcceleration XDP: known
 *                  NodePort flows sent on to a remote backend's node (include/xdp.h)
 *   weft_from_tun  tc ingress of the fleet's tunnel (vxlan.calico): which node forwarded a
 *                  flow from outside the fleet here, for its replies (include/tunnel.h)
 *
 * An interface without a HostEndpoint carries no policy: anything that is not a service flow
 * passes untouched. The pipeline is in include/flow.h, a host endpoint's stages in
 * include/hep.h, the XDP program in include/xdp.h.
 */
#include "weft_bpf.h"
#include "weft_defs_maps.h"
#include "flow.h"
#include "xdp.h"

SEC("tc")
int weft_from_hep(struct __sk_buff *skb)
{
	return weft_tc(skb, WEFT_HOOK_FROM_HEP);
}

SEC("tc")
int weft_to_hep(struct __sk_buff *skb)
{
	return weft_tc(skb, WEFT_HOOK_TO_HEP);
}

SEC("tc")
int weft_from_nat(struct __sk_buff *skb)
{
	return weft_tc(skb, WEFT_HOOK_FROM_NAT);
}

SEC("tc")
int weft_from_tun(struct __sk_buff *skb)
{
	return weft_from_tunnel(skb);
}

SEC("xdp")
int weft_xdp(struct xdp_md *ctx)
{
	return weft_xdp_main(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
