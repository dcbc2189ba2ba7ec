//! The fleet: other nodes, and the workloads that live on them. One directory describes every
//! host; each host's weft programs its own part of the paths between them.
//!
//! - **Nodes.** A Node's underlay address is `spec.bgp.ipv4Address` (with its prefix length,
//!   which says which nodes share its subnet), else its first IPv4 `spec.addresses` entry
//!   (CalicoNodeIP before InternalIP before the rest). That address is also its VTEP. Its
//!   address on the VXLAN device is `spec.ipv4VXLANTunnelAddr`, and its VTEP MAC is
//!   `spec.vxlanTunnelMACAddr`, or, where that is not written, one derived from the node's
//!   name (`vtep_mac`), which every host derives alike.
//! - **VXLAN** is on when FelixConfiguration `vxlanEnabled` says so, or, where it is not set,
//!   when an enabled IPPool has `vxlanMode` Always or CrossSubnet (Calico's rule). weft then
//!   owns `vxlan.calico`: VNI `vxlanVNI`, UDP port `vxlanPort`, this node's underlay address as
//!   its source, learning off, MTU `vxlanMTU` or 50 below the underlay interface's, and the
//!   node's tunnel address as a /32. For every other node with an underlay and a tunnel
//!   address: a permanent neighbour entry (tunnel address -> VTEP MAC) and a permanent FDB
//!   entry (VTEP MAC -> underlay address), so nothing is ever flooded or learnt; and a route
//!   to its tunnel address, which its host processes talk to workloads from.
//! - **Remote workloads** are routed by block, as Calico's IPAM hands them out: the blocks are
//!   taken from the endpoints themselves (IPAM block resources are not read). An address's
//!   block is the `blockSize` (26 where unset) prefix of the most specific enabled pool that
//!   holds it. A block whose endpoint addresses are all on one other node is routed whole to
//!   that node, one route for up to 64 workloads; in a block that several nodes have addresses
//!   in (this one included; Calico's borrowed addresses), each remote address gets a /32. An
//!   address in no pool gets a /32. Routes come and go with the endpoints. A block whose
//!   endpoint addresses are all this node's gets a blackhole route, as in Calico: a packet for
//!   an address of it that no workload has (yet) goes no further than this node, where the
//!   other nodes' block routes send it. Which path follows the address's IPPool (the most
//!   specific
//!   enabled one containing it): `vxlanMode` Always goes through the VXLAN device, onlink via
//!   the node's tunnel address; CrossSubnet does so only when the node's underlay address is
//!   outside this node's subnet, and otherwise routes straight to the node's underlay
//!   address; Never routes straight to a node on the same subnet (what BGP would learn on a
//!   flat network) and not at all to one beyond. An address in no pool goes through VXLAN
//!   when it is on. Nothing is masqueraded: the far end sees the workload's own address.
//! - Files with no Node resource and VXLAN off are one host's: endpoints of other nodes there
//!   are policy peers only, and nothing is routed to them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_model::{Config, EncapsulationMode, Node};

use super::Desired;
use crate::bpf::maps::{self, Route4Key, RouteValue};
use crate::facts::HostFacts;
use crate::policy::flat::Net4;
use crate::state::{
    LinkState, NeighbourState, OwnedLink, RouteState, VxlanLink, DATA_SYSCTLS, VXLAN_SYSCTLS,
};
use crate::warning::Warning;

/// The VXLAN device weft owns: Calico's name, so tools that know Calico find it.
pub const VXLAN_DEV: &str = "vxlan.calico";

/// What VXLAN adds to a packet: outer IPv4 (20), UDP (8), VXLAN (8) and Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// A node as this one reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Its underlay address, which is also its VTEP.
    pub underlay: Ipv4Addr,
    /// The subnet of its underlay address (its prefix length as written).
    pub subnet: Net4,
    /// Its address on the VXLAN device.
    pub tunnel: Option<Ipv4Addr>,
    pub mac: [u8; 6],
}

/// The VTEP MAC of a node that does not write one: locally administered and unicast (0x66
/// first), then the first five bytes of the FNV-1a 64-bit hash of the node's name, mixed by
/// SplitMix64's finaliser so that names differing in one letter differ in every byte. Every
/// host computes the same one, since nobody else tells them. Fixed forever: a change would
/// part hosts running different versions.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let b = h.to_be_bytes();
    [0x66, b[0], b[1], b[2], b[3], b[4]]
}

/// `a.b.c.d[/len]` as an address and its subnet, host bits kept in the address.
fn addr_and_subnet(s: &str) -> Option<(Ipv4Addr, Net4)> {
    let (a, len) = match s.split_once('/') {
        Some((a, len)) => (a, len.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    let a: Ipv4Addr = a.trim().parse().ok()?;
    Some((a, Net4::new(u32::from(a), len)))
}

/// The node's underlay address: `spec.bgp.ipv4Address`, else its addresses by type.
fn underlay(n: &Node) -> Option<(Ipv4Addr, Net4)> {
    if let Some(a) = n
        .spec
        .bgp
        .as_ref()
        .and_then(|b| b.ipv4_address.as_deref())
        .and_then(addr_and_subnet)
    {
        return Some(a);
    }
    let rank = |t: Option<&str>| match t {
        Some("CalicoNodeIP") => 0,
        Some("InternalIP") => 1,
        _ => 2,
    };
    let mut addrs: Vec<_> = n
        .spec
        .addresses
        .iter()
        .filter_map(|a| {
            Some((
                rank(a.address_type.as_deref()),
                addr_and_subnet(&a.address)?,
            ))
        })
        .collect();
    addrs.sort_by_key(|(r, _)| *r);
    addrs.into_iter().next().map(|(_, a)| a)
}

/// Node `n` as the fleet sees it; None when it has no IPv4 underlay address.
pub fn peer(n: &Node) -> Option<Peer> {
    let (underlay, subnet) = underlay(n)?;
    let name = n.metadata.name.clone();
    Some(Peer {
        tunnel: n
            .spec
            .ipv4_vxlan_tunnel_addr
            .as_deref()
            .and_then(addr_and_subnet)
            .map(|(a, _)| a),
        mac: n
            .spec
            .vxlan_tunnel_mac_addr
            .as_deref()
            .and_then(|m| weft_model::net::parse_mac(m).ok())
            .unwrap_or_else(|| vtep_mac(&name)),
        name,
        underlay,
        subnet,
    })
}

/// An enabled IPv4 pool: its network, how its addresses cross between nodes, and the length
/// of its blocks.
struct Pool {
    net: Net4,
    mode: EncapsulationMode,
    block: u8,
}

/// Calico's IPv4 blockSize where a pool does not write one.
const DEFAULT_BLOCK: u8 = 26;

/// The block of the most specific pool that holds `addr`, if one does.
fn block_of(pools: &[Pool], addr: Ipv4Addr) -> Option<Net4> {
    pools
        .iter()
        .find(|pl| pl.net.contains_addr(u32::from(addr)))
        .map(|pl| Net4::new(u32::from(addr), pl.block))
}

fn pools(cfg: &Config) -> Vec<Pool> {
    let mut out: Vec<Pool> = cfg
        .ip_pools
        .iter()
        .filter(|p| !p.value.spec.disabled)
        .filter_map(|p| {
            let net = addr_and_subnet(&p.value.spec.cidr)?.1;
            let block = p
                .value
                .spec
                .block_size
                .and_then(|b| u8::try_from(b).ok())
                .unwrap_or(DEFAULT_BLOCK)
                .clamp(net.len, 32);
            Some(Pool {
                net,
                mode: p.value.spec.vxlan_mode.unwrap_or(EncapsulationMode::Never),
                block,
            })
        })
        .collect();
    // Most specific first: an address belongs to the narrowest pool that holds it.
    out.sort_by_key(|p| std::cmp::Reverse(p.net.len));
    out
}

/// How this node reaches a remote workload's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Vxlan,
    Direct,
    Unreachable,
}

/// Whether VXLAN is on for a node with settings `felix`: `vxlanEnabled`, or where that is not
/// set, an enabled IPPool with `vxlanMode` Always or CrossSubnet.
pub fn vxlan_on(cfg: &Config, felix: &weft_model::FelixConfigurationSpec) -> bool {
    felix.vxlan_enabled_setting().unwrap_or_else(|| {
        pools(cfg).iter().any(|p| {
            matches!(
                p.mode,
                EncapsulationMode::Always | EncapsulationMode::CrossSubnet
            )
        })
    })
}

/// The interface holding this host's address `addr`, with its index.
fn link_with(facts: &HostFacts, addr: Ipv4Addr) -> Option<(String, u32)> {
    facts
        .link_addrs
        .iter()
        .find(|(_, addrs)| addrs.contains(&addr))
        .and_then(|(i, _)| facts.link_name(*i).map(|n| (n.to_string(), *i)))
}

/// The VXLAN device's MTU: `vxlanMTU`, or 50 below the underlay interface's.
fn device_mtu(
    felix: &weft_model::FelixConfigurationSpec,
    facts: &HostFacts,
    underlay_index: u32,
) -> u32 {
    match felix.vxlan_mtu() {
        0 => facts
            .link_mtus
            .get(&underlay_index)
            .copied()
            .unwrap_or(1500)
            .saturating_sub(VXLAN_OVERHEAD),
        m => m,
    }
}

/// This node as a VTEP, and the MTU of its tunnel device. None when the device cannot be made
/// (no underlay address on this host).
fn this_vtep(
    cfg: &Config,
    facts: &HostFacts,
    felix: &weft_model::FelixConfigurationSpec,
) -> Option<(Peer, u32)> {
    let me = cfg
        .nodes
        .iter()
        .find(|n| n.value.metadata.name == facts.node)
        .and_then(|n| peer(&n.value))?;
    let (_, index) = link_with(facts, me.underlay)?;
    let mtu = device_mtu(felix, facts, index);
    Some((me, mtu))
}

/// The MSS workloads' TCP handshakes are clamped to while this node has the tunnel (VXLAN
/// on): the device's MTU less 40 (IPv4 and TCP headers). None when the device cannot be made.
pub fn mss_clamp(
    cfg: &Config,
    facts: &HostFacts,
    felix: &weft_model::FelixConfigurationSpec,
) -> Option<u16> {
    let (_, mtu) = this_vtep(cfg, facts, felix)?;
    u16::try_from(mtu.saturating_sub(40)).ok()
}

/// What XDP's NodePort acceleration writes the tunnel's headers from
/// (bpfExternalServiceAcceleration XDP): vxlan.calico's VNI, port and MTU, this node's underlay
/// address and VTEP MAC. None where the tunnel device cannot be made (no underlay address on
/// this host).
pub fn xdp_accel(
    cfg: &Config,
    facts: &HostFacts,
    felix: &weft_model::FelixConfigurationSpec,
) -> Option<crate::objects::XdpAccel> {
    let (me, mtu) = this_vtep(cfg, facts, felix)?;
    Some(crate::objects::XdpAccel {
        vni: felix.vxlan_vni(),
        port: felix.vxlan_port(),
        mtu: u16::try_from(mtu).ok()?,
        untracked: felix.xdp_enabled(),
        vtep: me.underlay,
        vtep_mac: me.mac,
    })
}

/// A remote workload's address, or a block of them, as weft_rt4 holds it.
pub struct RemoteWorkload {
    /// The address, or the block (see the module's doc).
    pub net: Net4,
    /// Its node's underlay address, or its tunnel address where the route is the tunnel.
    pub next_hop: Ipv4Addr,
    pub in_pool: bool,
    /// Reached through vxlan.calico.
    pub tunneled: bool,
}

/// Another node's VTEP on the tunnel.
pub struct Vtep {
    pub mac: [u8; 6],
    /// Its address on vxlan.calico.
    pub tunnel: Ipv4Addr,
    /// Its underlay address: where the tunnel's packets to it go.
    pub underlay: Ipv4Addr,
}

/// What the fleet adds to this node's desired state, and what it leaves to the maps.
#[derive(Default)]
pub struct Fleet {
    /// Remote workloads' weft_rt4 entries, written where this node has maps.
    pub remote: Vec<RemoteWorkload>,
    /// The other nodes' VTEPs: weft_vtep4 and weft_node4 entries.
    pub vteps: Vec<Vtep>,
    /// This node has the VXLAN device: flows may come in through it.
    pub tunnel: bool,
}

impl Fleet {
    /// The weft_vtep4 entries.
    pub fn vtep_entries(&self) -> impl Iterator<Item = maps::Entry> + '_ {
        self.vteps.iter().map(|v| {
            let k = maps::VtepKey {
                mac: v.mac,
                pad: [0; 2],
            };
            maps::spec::VTEP4.entry(&k, &maps::addr_be(v.tunnel))
        })
    }

    /// The weft_node4 entries: what XDP's NodePort acceleration sends to each node by.
    pub fn node_entries(&self) -> impl Iterator<Item = maps::Entry> + '_ {
        self.vteps.iter().map(|v| {
            let value = maps::Node4Value {
                underlay: maps::addr_be(v.underlay),
                mac: v.mac,
                pad: [0; 2],
            };
            maps::spec::NODE4.entry(&maps::addr_be(v.tunnel), &value)
        })
    }

    /// The weft_rt4 entries of the remote workloads; `tunnel` is vxlan.calico's index, once
    /// it exists (DSR forwards through it by these entries).
    pub fn route_entries(&self, tunnel: Option<u32>) -> impl Iterator<Item = maps::Entry> + '_ {
        self.remote.iter().map(move |r| {
            let k = Route4Key {
                prefixlen: u32::from(r.net.len),
                addr: maps::addr_be(Ipv4Addr::from(r.net.addr)),
            };
            let mut flags = maps::RT_F_REMOTE_WORKLOAD;
            if r.in_pool {
                flags |= maps::RT_F_IN_POOL;
            }
            let mut ifindex = 0;
            if let (true, Some(t)) = (r.tunneled, tunnel) {
                flags |= maps::RT_F_TUNNELED;
                ifindex = t;
            }
            let v = RouteValue {
                flags,
                ifindex,
                next_hop: maps::addr_be(r.next_hop),
                pad: 0,
            };
            maps::entry(&k, &v)
        })
    }
}

/// The nodes of `cfg` with an underlay address: this one (`node`), and the others by name.
/// A Node without one is a warning.
fn nodes<'c>(
    cfg: &'c Config,
    node: &str,
    warnings: &mut Vec<Warning>,
) -> (Option<Peer>, BTreeMap<&'c str, Peer>) {
    let mut me = None;
    let mut peers = BTreeMap::new();
    for n in &cfg.nodes {
        let name = n.value.metadata.name.as_str();
        match peer(&n.value) {
            Some(p) if name == node => me = Some(p),
            Some(p) => {
                peers.insert(name, p);
            }
            None => warnings.push(Warning::resource(
                format!("Node {name}"),
                format!(
                    "{}: Node {name} has no IPv4 underlay address (spec.bgp.ipv4Address or spec.addresses), so {}",
                    n.source,
                    if name == node {
                        "this node reaches no workload on another node"
                    } else {
                        "its workloads are not reached from this node"
                    }
                ),
            )),
        }
    }
    (me, peers)
}

/// The IPv4 addresses of workloads on other nodes, by node, gathered from the endpoints one
/// at a time (`add`) in the one walk over them that also finds this node's own.
#[derive(Default)]
pub struct RemoteAddrs<'c> {
    by_node: BTreeMap<&'c str, Vec<Ipv4Addr>>,
    /// A node's endpoints mostly come one after another: the list of the last is at hand.
    last: Option<(&'c str, Vec<Ipv4Addr>)>,
}

impl<'c> RemoteAddrs<'c> {
    /// Somewhere to gather them, where the fleet's plumbing routes other nodes' endpoints at
    /// all: only with Node resources or VXLAN. Otherwise (None) they are policy peers only (a
    /// single host's files may name them): nothing to route, nothing to say, and their
    /// addresses need not be gathered (2 ms at 10,000, on every change).
    pub fn wanted(cfg: &Config, facts: &HostFacts) -> Option<Self> {
        let routed = !cfg.nodes.is_empty() || vxlan_on(cfg, &cfg.felix_for_node(&facts.node));
        routed.then(RemoteAddrs::default)
    }

    pub fn add(&mut self, node: &'c str, nets: &[weft_model::Cidr]) {
        if self.last.as_ref().is_none_or(|(n, _)| *n != node) {
            if let Some((n, addrs)) = self.last.take() {
                self.by_node.insert(n, addrs);
            }
            let had = self.by_node.remove(node).unwrap_or_default();
            self.last = Some((node, had));
        }
        let addrs = &mut self.last.as_mut().expect("just set").1;
        for c in nets {
            if let weft_model::Cidr::V4 { addr, .. } = *c {
                addrs.push(addr);
            }
        }
    }

    /// By node, leaving out any address this node's own endpoints claim.
    fn finish(
        mut self,
        local_addrs: &BTreeMap<Ipv4Addr, String>,
    ) -> BTreeMap<&'c str, Vec<Ipv4Addr>> {
        if let Some((n, addrs)) = self.last.take() {
            self.by_node.insert(n, addrs);
        }
        self.by_node.retain(|_, addrs| {
            addrs.retain(|a| !local_addrs.contains_key(a));
            !addrs.is_empty()
        });
        self.by_node
    }
}

/// The route from this node (`me`, its underlay interface `underlay_dev`) to workload
/// address `addr` on node `p`, by the address's pool (see the module's doc); or why there is
/// none.
fn route_to(
    addr: Ipv4Addr,
    p: &Peer,
    me: &Peer,
    pools: &[Pool],
    vxlan_on: bool,
    underlay_dev: &str,
) -> Result<RouteState, String> {
    let same_subnet = me.subnet.contains_addr(u32::from(p.underlay));
    let mode = match pools
        .iter()
        .find(|pl| pl.net.contains_addr(u32::from(addr)))
    {
        Some(pl) => pl.mode,
        None if vxlan_on => EncapsulationMode::Always,
        None => EncapsulationMode::Never,
    };
    let path = match mode {
        EncapsulationMode::Always if vxlan_on => Path::Vxlan,
        EncapsulationMode::CrossSubnet if vxlan_on && !same_subnet => Path::Vxlan,
        _ if same_subnet => Path::Direct,
        _ => Path::Unreachable,
    };
    match path {
        Path::Vxlan => p
            .tunnel
            .map(|gw| RouteState {
                dev: VXLAN_DEV.into(),
                via: Some(gw),
                onlink: true,
            })
            .ok_or_else(|| format!("Node {} has no spec.ipv4VXLANTunnelAddr", p.name)),
        Path::Direct => Ok(RouteState {
            dev: underlay_dev.to_string(),
            via: Some(p.underlay),
            onlink: false,
        }),
        Path::Unreachable => Err(format!(
            "its pool does not use VXLAN and node {} ({}) is not on this node's subnet {}",
            p.name, p.underlay, me.subnet
        )),
    }
}

/// vxlan.calico (its address, settings and MTU `mtu`), and a neighbour entry, an FDB entry and
/// a route to the tunnel address of every other node that has one.
fn tunnel(
    me: &Peer,
    peers: &BTreeMap<&str, Peer>,
    felix: &weft_model::FelixConfigurationSpec,
    mtu: u32,
    d: &mut Desired,
    fleet: &mut Fleet,
) {
    d.state.links.insert(
        VXLAN_DEV.into(),
        LinkState {
            sysctls: sysctls(VXLAN_SYSCTLS),
            owned: Some(OwnedLink {
                kind: "vxlan".into(),
                peer: None,
                mac: me.mac,
                up: true,
                vxlan: Some(VxlanLink {
                    vni: felix.vxlan_vni(),
                    port: felix.vxlan_port(),
                    local: me.underlay,
                    mtu,
                    learning: false,
                }),
            }),
        },
    );
    if let Some(t) = me.tunnel {
        d.state.addresses.insert((VXLAN_DEV.into(), t, 32));
    }
    fleet.tunnel = true;
    for p in peers.values() {
        let Some(t) = p.tunnel else { continue };
        fleet.vteps.push(Vtep {
            mac: p.mac,
            tunnel: t,
            underlay: p.underlay,
        });
        d.state
            .neighbours
            .insert((VXLAN_DEV.into(), t), NeighbourState { lladdr: p.mac });
        d.state.fdb.insert((VXLAN_DEV.into(), p.mac), p.underlay);
        // The node's own tunnel address: what its host processes talk to workloads from, so
        // answers to them find their way back.
        d.state
            .routes
            .entry(Net4::host(u32::from(t)))
            .or_insert(RouteState {
                dev: VXLAN_DEV.into(),
                via: Some(t),
                onlink: true,
            });
    }
}

/// The fleet's part of this node's desired state (see the module's doc): the VXLAN device,
/// its address, neighbour and FDB entries, and the routes to remote workloads, into `d`.
/// `local_addrs` are this node's own endpoints' addresses, which no remote route may take.
pub fn plumbing<'c>(
    cfg: &'c Config,
    facts: &HostFacts,
    local_addrs: &BTreeMap<Ipv4Addr, String>,
    remote: Option<RemoteAddrs<'c>>,
    d: &mut Desired,
) -> Fleet {
    let mut fleet = Fleet::default();
    let felix = cfg.felix_for_node(&facts.node);
    let pools = pools(cfg);
    let vxlan_on = vxlan_on(cfg, &felix);
    let (me, peers) = nodes(cfg, &facts.node, &mut d.warnings);
    // Without Node resources and VXLAN, nothing to route (`RemoteAddrs::wanted`).
    let Some(remote) = remote else {
        return fleet;
    };
    let remote = remote.finish(local_addrs);
    if remote.is_empty() && !vxlan_on {
        return fleet;
    }
    let Some(me) = me else {
        if !remote.is_empty() {
            d.warnings.push(Warning::host(format!(
                "node {} has no Node resource with an IPv4 underlay address, so workloads on other nodes are not routed from here",
                facts.node
            )));
        }
        return fleet;
    };
    // The interface that holds this node's underlay address.
    let Some((underlay_dev, underlay_index)) = link_with(facts, me.underlay) else {
        d.warnings.push(Warning::host(format!(
            "node {}: its underlay address {} (from its Node resource) is on none of this host's interfaces, so workloads on other nodes are not routed from here",
            facts.node, me.underlay
        )));
        return fleet;
    };

    // Which nodes have endpoint addresses in each pool block, this one included.
    // (A node's addresses mostly share a block with the one before: that block is not
    // looked up again.)
    let mut owners: BTreeMap<Net4, BTreeSet<&str>> = BTreeMap::new();
    fn own<'a>(
        owners: &mut BTreeMap<Net4, BTreeSet<&'a str>>,
        pools: &[Pool],
        node: &'a str,
        addrs: impl Iterator<Item = &'a Ipv4Addr>,
    ) {
        let mut last = None;
        for addr in addrs {
            let b = block_of(pools, *addr);
            if let Some(block) = b.filter(|_| b != last) {
                owners.entry(block).or_default().insert(node);
                last = b;
            }
        }
    }
    own(&mut owners, &pools, &facts.node, local_addrs.keys());
    for (node, addrs) in &remote {
        own(&mut owners, &pools, node, addrs.iter());
    }
    for (node, addrs) in &remote {
        let Some(p) = peers.get(node) else {
            d.warnings.push(Warning::host(format!(
                "workloads on node {node} are not routed from here: no Node resource of that name has an IPv4 underlay address"
            )));
            continue;
        };
        let mut last_routed = None;
        for addr in addrs {
            // The node's whole block where no other node has an address in it, else the
            // address alone.
            let block = block_of(&pools, *addr);
            let net = block
                .filter(|b| owners.get(b).is_some_and(|o| o.len() == 1))
                .unwrap_or(Net4::host(u32::from(*addr)));
            if last_routed == Some(net) || d.state.routes.contains_key(&net) {
                continue;
            }
            match route_to(*addr, p, &me, &pools, vxlan_on, &underlay_dev) {
                Ok(route) => {
                    fleet.remote.push(RemoteWorkload {
                        net,
                        next_hop: route.via.unwrap_or(p.underlay),
                        // A block is a pool's: an address has one where a pool holds it.
                        in_pool: block.is_some(),
                        tunneled: route.dev == VXLAN_DEV,
                    });
                    d.state.routes.insert(net, route);
                    last_routed = Some(net);
                }
                Err(why) => d.warnings.push(Warning::host(format!(
                    "workload address {addr} on node {node} is not routed: {why}"
                ))),
            }
        }
    }
    // This node's own blocks: what no workload of theirs has goes no further (Calico's
    // blackhole route for a node's affine blocks).
    for (block, o) in &owners {
        if o.len() == 1 && o.contains(facts.node.as_str()) {
            d.state
                .routes
                .entry(*block)
                .or_insert_with(RouteState::blackhole);
        }
    }
    if fleet.remote.iter().any(|r| !r.tunneled) {
        // What comes in over the underlay unencapsulated is forwarded on to workloads.
        d.state
            .links
            .entry(underlay_dev.clone())
            .or_default()
            .sysctls
            .extend(sysctls(DATA_SYSCTLS));
    }
    if vxlan_on || fleet.remote.iter().any(|r| r.tunneled) {
        let mtu = device_mtu(&felix, facts, underlay_index);
        tunnel(&me, &peers, &felix, mtu, d, &mut fleet);
    }
    fleet
}

fn sysctls(set: &[(&str, &str)]) -> BTreeMap<String, String> {
    set.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::desired;
    use crate::testdir::config as load;

    #[test]
    fn remote_addresses_are_gathered_by_node_in_any_order_and_never_a_local_one() {
        let cidr = |s: &str| s.parse::<weft_model::Cidr>().unwrap();
        let mut r = RemoteAddrs::default();
        r.add("n2", &[cidr("10.0.2.1/32")]);
        r.add("n3", &[cidr("10.0.3.1/32"), cidr("fd00::3/128")]);
        // n2 again, after another node: its list goes on.
        r.add("n2", &[cidr("10.0.2.2/32"), cidr("10.0.9.9/32")]);
        r.add("n4", &[cidr("10.0.9.8/32")]);
        // 10.0.9.9 and 10.0.9.8 are this node's own endpoints' addresses: n4 is left with none.
        let local = BTreeMap::from([
            (Ipv4Addr::new(10, 0, 9, 9), "own/a".to_string()),
            (Ipv4Addr::new(10, 0, 9, 8), "own/b".to_string()),
        ]);
        let by_node = r.finish(&local);
        assert_eq!(
            by_node,
            BTreeMap::from([
                (
                    "n2",
                    vec![Ipv4Addr::new(10, 0, 2, 1), Ipv4Addr::new(10, 0, 2, 2)]
                ),
                ("n3", vec![Ipv4Addr::new(10, 0, 3, 1)]),
            ])
        );
    }

    /// n1 on 172.16.0.11/24 with eth0 (index 2) holding that address.
    fn facts() -> HostFacts {
        let mut f = HostFacts::fixture("n1", &[("lo", 1), ("eth0", 2), ("calia", 5)]);
        f.link_addrs
            .insert(2, [Ipv4Addr::new(172, 16, 0, 11)].into());
        f.link_mtus.insert(2, 9000);
        f
    }

    fn node(name: &str, underlay: &str, tunnel: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\nspec:\n  bgp: {{ipv4Address: {underlay}}}\n  ipv4VXLANTunnelAddr: {tunnel}\n")
    }

    fn pool(cidr: &str, mode: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p-{}}}\nspec: {{cidr: {cidr}, vxlanMode: {mode}}}\n", cidr.replace(['.', '/'], "-"))
    }

    fn wep(name: &str, node: &str, ip: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default}}\nspec: {{node: {node}, interfaceName: cali{name}, ipNetworks: [{ip}]}}\n")
    }

    fn fleet(extra: &[&str]) -> Vec<String> {
        let mut docs = vec![
            node("n1", "172.16.0.11/24", "10.244.1.0"),
            node("n2", "172.16.0.12/24", "10.244.2.0"),
            node("n3", "172.17.0.13/24", "10.244.3.0"),
            wep("a", "n1", "10.244.1.2"),
            wep("b", "n2", "10.244.2.2"),
            wep("c", "n3", "10.244.3.2"),
        ];
        docs.extend(extra.iter().map(|s| s.to_string()));
        docs
    }

    fn state(docs: &[String]) -> crate::desired::Desired {
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        desired(&load(&refs), &facts()).expect("desired")
    }

    /// How `ip` is routed: by the most specific of weft's routes that holds it.
    fn route(d: &crate::desired::Desired, ip: [u8; 4]) -> Option<String> {
        routed_by(d, ip).map(|(_, r)| r)
    }

    /// The most specific of weft's routes that holds `ip`, and how it reads.
    fn routed_by(d: &crate::desired::Desired, ip: [u8; 4]) -> Option<(Net4, String)> {
        let a = u32::from(Ipv4Addr::from(ip));
        d.state
            .routes
            .iter()
            .filter(|(net, _)| net.contains_addr(a))
            .max_by_key(|(net, _)| net.len)
            .map(|(net, r)| (*net, r.show()))
    }

    #[test]
    fn a_block_on_one_node_is_routed_whole_and_a_shared_one_address_by_address() {
        let d = state(&fleet(&[
            &pool("10.244.0.0/16", "Always"),
            &wep("b2", "n2", "10.244.2.3"),
            // Borrowed: n3 has an address in n2's block 10.244.2.0/26.
            &wep("c2", "n3", "10.244.2.9"),
            // n2 has one in the next block, which no other node has any of.
            &wep("b3", "n2", "10.244.2.70"),
            // And one in the block of this node's endpoint a (10.244.1.2).
            &wep("b4", "n2", "10.244.1.10"),
        ]));
        let net = |a: [u8; 4], len| Net4::new(u32::from(Ipv4Addr::from(a)), len);
        let via2 = "via 10.244.2.0 dev vxlan.calico onlink".to_string();
        let via3 = "via 10.244.3.0 dev vxlan.calico onlink".to_string();
        assert_eq!(
            routed_by(&d, [10, 244, 2, 2]),
            Some((net([10, 244, 2, 2], 32), via2.clone()))
        );
        assert_eq!(
            routed_by(&d, [10, 244, 2, 3]),
            Some((net([10, 244, 2, 3], 32), via2.clone()))
        );
        assert_eq!(
            routed_by(&d, [10, 244, 2, 9]),
            Some((net([10, 244, 2, 9], 32), via3.clone()))
        );
        assert_eq!(
            routed_by(&d, [10, 244, 2, 70]),
            Some((net([10, 244, 2, 64], 26), via2.clone())),
            "a block only n2 has addresses in: one route"
        );
        assert_eq!(
            routed_by(&d, [10, 244, 3, 2]),
            Some((net([10, 244, 3, 0], 26), via3)),
            "n3's block"
        );
        assert_eq!(
            routed_by(&d, [10, 244, 1, 10]),
            Some((net([10, 244, 1, 10], 32), via2)),
            "an address in this node's block"
        );
        // weft_rt4 holds the same prefixes.
        let rt = d.state.maps[maps::RT4].entries.as_ref().expect("rt4");
        let key = |a: [u8; 4], len: u32| {
            maps::spec::RT4
                .entry(
                    &Route4Key {
                        prefixlen: len,
                        addr: maps::addr_be(Ipv4Addr::from(a)),
                    },
                    &Default::default(),
                )
                .0
        };
        assert!(rt.contains_key(&key([10, 244, 2, 64], 26)));
        assert!(rt.contains_key(&key([10, 244, 2, 9], 32)));
        assert!(
            !rt.contains_key(&key([10, 244, 2, 0], 26)),
            "a shared block"
        );
        assert_eq!(
            routed_by(&d, [10, 244, 1, 50]),
            None,
            "this node's block is shared with n2: no blackhole"
        );

        // A block of this node's alone is a blackhole beneath its workloads' own routes.
        let d = state(&fleet(&[&pool("10.244.0.0/16", "Always")]));
        assert_eq!(
            routed_by(&d, [10, 244, 1, 50]),
            Some((net([10, 244, 1, 0], 26), "blackhole".to_string()))
        );
        assert_eq!(
            route(&d, [10, 244, 1, 2]).as_deref(),
            Some("dev calia scope link")
        );
    }

    #[test]
    fn a_pools_block_size_sets_the_blocks() {
        let d = state(&fleet(&[
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.244.0.0/16, vxlanMode: Always, blockSize: 24}\n",
        ]));
        assert_eq!(
            routed_by(&d, [10, 244, 3, 200]).map(|(n, _)| n),
            Some(Net4::new(u32::from(Ipv4Addr::new(10, 244, 3, 0)), 24))
        );
    }

    #[test]
    fn a_vxlan_pool_alone_turns_vxlan_on_and_routes_every_remote_workload_through_its_vtep() {
        let d = state(&fleet(&[&pool("10.244.0.0/16", "Always")]));
        let dev = d.state.links.get(VXLAN_DEV).expect("the VXLAN device");
        let o = dev.owned.as_ref().expect("weft's own");
        assert_eq!(
            o.vxlan,
            Some(VxlanLink {
                vni: 4096,
                port: 4789,
                local: Ipv4Addr::new(172, 16, 0, 11),
                mtu: 9000 - VXLAN_OVERHEAD,
                learning: false,
            })
        );
        assert_eq!(o.mac, vtep_mac("n1"));
        assert!(d
            .state
            .addresses
            .contains(&(VXLAN_DEV.into(), Ipv4Addr::new(10, 244, 1, 0), 32)));
        // The tunnel address is the host's from the first apply on, before any fact says so.
        let rt = d.state.maps[maps::RT4]
            .entries
            .as_ref()
            .expect("weft_rt4 entries");
        let k = Route4Key {
            prefixlen: 32,
            addr: maps::addr_be(Ipv4Addr::new(10, 244, 1, 0)),
        };
        let v = rt
            .get(&maps::spec::RT4.entry(&k, &Default::default()).0)
            .expect("an rt4 entry");
        assert_eq!(
            maps::spec::RT4.decode(&[0; 8], v).map(|(_, v)| v.flags),
            Some(maps::RT_F_LOCAL_HOST)
        );
        assert_eq!(
            route(&d, [10, 244, 2, 2]).as_deref(),
            Some("via 10.244.2.0 dev vxlan.calico onlink")
        );
        assert_eq!(
            route(&d, [10, 244, 3, 2]).as_deref(),
            Some("via 10.244.3.0 dev vxlan.calico onlink")
        );
        // The local workload keeps its own route; nothing routes to this node's own VTEP.
        assert_eq!(
            route(&d, [10, 244, 1, 2]).as_deref(),
            Some("dev calia scope link")
        );
        assert_eq!(
            route(&d, [10, 244, 3, 0]).as_deref(),
            Some("via 10.244.3.0 dev vxlan.calico onlink"),
            "a node's tunnel address"
        );
        for (n, underlay, tunnel) in [
            ("n2", [172, 16, 0, 12], [10, 244, 2, 0]),
            ("n3", [172, 17, 0, 13], [10, 244, 3, 0]),
        ] {
            let mac = vtep_mac(n);
            assert_eq!(
                d.state
                    .neighbours
                    .get(&(VXLAN_DEV.into(), Ipv4Addr::from(tunnel))),
                Some(&NeighbourState { lladdr: mac })
            );
            assert_eq!(
                d.state.fdb.get(&(VXLAN_DEV.into(), mac)),
                Some(&Ipv4Addr::from(underlay))
            );
        }
        assert_eq!(d.state.fdb.len(), 2, "no entry for this node itself");
    }

    #[test]
    fn vxlan_enabled_false_overrides_the_pool_and_cross_subnet_encapsulates_only_across_subnets() {
        let off = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {vxlanEnabled: false}\n";
        let d = state(&fleet(&[&pool("10.244.0.0/16", "Always"), off]));
        assert!(!d.state.links.contains_key(VXLAN_DEV));
        // Without VXLAN, only the node on this subnet is reachable, straight over the underlay.
        assert_eq!(
            route(&d, [10, 244, 2, 2]).as_deref(),
            Some("via 172.16.0.12 dev eth0")
        );
        assert_eq!(route(&d, [10, 244, 3, 2]), None);
        assert!(d.warnings.iter().any(|w| w.message.contains("10.244.3.2")));

        let d = state(&fleet(&[&pool("10.244.0.0/16", "CrossSubnet")]));
        assert_eq!(
            route(&d, [10, 244, 2, 2]).as_deref(),
            Some("via 172.16.0.12 dev eth0"),
            "same subnet: no encapsulation"
        );
        assert_eq!(
            route(&d, [10, 244, 3, 2]).as_deref(),
            Some("via 10.244.3.0 dev vxlan.calico onlink")
        );
        assert_eq!(
            d.state.links.get("eth0").map(|l| l.sysctls.len()),
            Some(DATA_SYSCTLS.len()),
            "the underlay forwards what arrives unencapsulated"
        );
    }

    #[test]
    fn dsr_makes_node_ports_frontends_at_any_address_and_writes_the_opt_outs() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  ports:\n    - {port: 80, targetPort: 8080, nodePort: 30080}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080}]\nendpoints:\n  - {addresses: [10.244.2.2], nodeName: n2}\n";
        let mode = |m: &str| {
            format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {{bpfExternalServiceMode: {m}, bpfDSROptoutCIDRs: [198.51.100.0/24]}}\n")
        };
        let any_node_port = |d: &crate::desired::Desired| {
            maps::spec::NAT_FE4
                .decode_all(d.state.maps[maps::NAT_FE4].entries.as_ref().unwrap())
                .any(|(k, v)| {
                    k.addr == 0 && k.port == 30080 && v.flags & maps::NAT_F_LOCAL_ONLY != 0
                })
        };
        let d = state(&fleet(&[
            &pool("10.244.0.0/16", "Always"),
            svc,
            &mode("DSR"),
        ]));
        assert!(d.settings.wep.dsr);
        assert!(
            any_node_port(&d),
            "the NodePort at 0.0.0.0, local backends only"
        );
        assert_eq!(
            d.state.maps[maps::DSR_OPTOUT4]
                .entries
                .as_ref()
                .map(|e| e.len()),
            Some(1)
        );
        let d = state(&fleet(&[
            &pool("10.244.0.0/16", "Always"),
            svc,
            &mode("Tunnel"),
        ]));
        assert!(!d.settings.wep.dsr && !any_node_port(&d));
        assert_eq!(
            d.state.maps[maps::DSR_OPTOUT4]
                .entries
                .as_ref()
                .map(|e| e.len()),
            Some(0)
        );
    }

    #[test]
    fn xdp_acceleration_attaches_xdp_to_the_data_interface_and_names_every_nodes_vtep() {
        let accel = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {bpfExternalServiceAcceleration: XDP}\n";
        // Data interfaces carry programs where there are services.
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  ports:\n    - {port: 80, targetPort: 8080, nodePort: 30080}\n";
        let d = state(&fleet(&[&pool("10.244.0.0/16", "Always"), svc, accel]));
        assert_eq!(
            d.settings.wep.xdp_accel,
            Some(crate::objects::XdpAccel {
                vni: 4096,
                port: 4789,
                mtu: 9000 - VXLAN_OVERHEAD as u16,
                untracked: true,
                vtep: Ipv4Addr::new(172, 16, 0, 11),
                vtep_mac: vtep_mac("n1"),
            })
        );
        let xdp: Vec<&str> = d
            .state
            .attachments
            .iter()
            .filter(|((_, hook), _)| *hook == crate::bpf::Hook::Xdp)
            .map(|((dev, _), a)| {
                assert_eq!(a.program, "weft_xdp");
                dev.as_str()
            })
            .collect();
        assert_eq!(xdp, ["eth0"], "the data interface, not the tunnel");
        let nodes: BTreeMap<u32, maps::Node4Value> = maps::spec::NODE4
            .decode_all(d.state.maps[maps::NODE4].entries.as_ref().unwrap())
            .collect();
        let want = |underlay: [u8; 4], name: &str| maps::Node4Value {
            underlay: maps::addr_be(Ipv4Addr::from(underlay)),
            mac: vtep_mac(name),
            pad: [0; 2],
        };
        assert_eq!(nodes.len(), 2, "the other nodes, not this one");
        for (tunnel, underlay, name) in [
            ([10, 244, 2, 0], [172, 16, 0, 12], "n2"),
            ([10, 244, 3, 0], [172, 17, 0, 13], "n3"),
        ] {
            let got = nodes[&maps::addr_be(Ipv4Addr::from(tunnel))];
            let w = want(underlay, name);
            assert_eq!((got.underlay, got.mac), (w.underlay, w.mac), "{name}");
        }

        // Off by default, and off without the tunnel it needs.
        let d = state(&fleet(&[&pool("10.244.0.0/16", "Always"), svc]));
        assert_eq!(d.settings.wep.xdp_accel, None);
        assert!(!d
            .state
            .attachments
            .keys()
            .any(|(_, h)| *h == crate::bpf::Hook::Xdp));
        assert_eq!(
            d.state.maps[maps::NODE4].entries.as_ref().map(|e| e.len()),
            Some(0)
        );
        let d = state(&fleet(&[svc, accel]));
        assert_eq!(d.settings.wep.xdp_accel, None);
        // xdpEnabled: false leaves host endpoints' untracked stage to tc.
        let no_untracked = accel.replace("XDP}", "XDP, xdpEnabled: false}");
        let d = state(&fleet(&[
            &pool("10.244.0.0/16", "Always"),
            svc,
            &no_untracked,
        ]));
        assert_eq!(d.settings.wep.xdp_accel.map(|x| x.untracked), Some(false));
    }

    #[test]
    fn no_vxlan_and_no_pools_leaves_the_host_alone() {
        let d = state(&[
            node("n1", "172.16.0.11/24", "10.244.1.0"),
            node("n2", "172.17.0.12/24", "10.244.2.0"),
        ]);
        assert!(d.state.links.is_empty() && d.state.routes.is_empty());
    }

    #[test]
    fn settings_written_win_and_a_written_mac_is_used() {
        let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {vxlanEnabled: true, vxlanVNI: 7, vxlanPort: 8472, vxlanMTU: 1400}\n";
        let n2 = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n2}\nspec:\n  bgp: {ipv4Address: 172.16.0.12/24}\n  ipv4VXLANTunnelAddr: 10.244.2.0\n  vxlanTunnelMACAddr: \"02:00:00:00:00:02\"\n";
        let docs = [
            node("n1", "172.16.0.11/24", "10.244.1.0"),
            n2.to_string(),
            wep("b", "n2", "10.99.0.2"),
            felix.to_string(),
        ];
        let d = state(&docs);
        let v = d.state.links[VXLAN_DEV]
            .owned
            .as_ref()
            .unwrap()
            .vxlan
            .unwrap();
        assert_eq!((v.vni, v.port, v.mtu), (7, 8472, 1400));
        let mac = [2, 0, 0, 0, 0, 2];
        assert_eq!(
            d.state.fdb.get(&(VXLAN_DEV.into(), mac)),
            Some(&Ipv4Addr::new(172, 16, 0, 12))
        );
        assert_eq!(
            route(&d, [10, 99, 0, 2]).as_deref(),
            Some("via 10.244.2.0 dev vxlan.calico onlink"),
            "an address in no pool goes through VXLAN when it is on"
        );
    }

    #[test]
    fn derived_macs_are_unicast_local_and_apart() {
        let names = ["n1", "n2", "n3", "node-a", "node-b", "edge-017", "edge-018"];
        let macs: std::collections::BTreeSet<[u8; 6]> = names.iter().map(|n| vtep_mac(n)).collect();
        assert_eq!(macs.len(), names.len());
        for m in &macs {
            assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast: {m:?}");
        }
        // Fixed forever: hosts of different versions must agree.
        assert_eq!(
            crate::state::mac_string(&vtep_mac("n1")),
            "66:f8:e4:61:10:45"
        );
        assert_eq!(
            crate::state::mac_string(&vtep_mac("n2")),
            "66:c1:e0:ca:a6:db"
        );
    }

    #[test]
    fn a_node_without_an_underlay_address_is_said_and_its_workloads_left_unrouted() {
        let bare = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n2}\nspec: {}\n";
        let docs = [
            node("n1", "172.16.0.11/24", "10.244.1.0"),
            bare.to_string(),
            wep("b", "n2", "10.244.2.2"),
            pool("10.244.0.0/16", "Always"),
        ];
        let d = state(&docs);
        assert_eq!(route(&d, [10, 244, 2, 2]), None);
        assert!(
            d.warnings
                .iter()
                .any(|w| w.message.contains("Node n2 has no IPv4 underlay")),
            "{:?}",
            d.warnings
        );
    }
}
