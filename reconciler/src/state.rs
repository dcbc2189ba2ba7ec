//! The state weft manages on one host. Desired and observed state are the same types, so the
//! plan is a diff of two values, and `weft diff` a diff of their renderings.
//!
//! Only what weft owns or sets appears here; ifindexes of interfaces weft does not create are
//! facts (see `facts`), not state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use crate::bpf::maps::{self, Entries, MapDef};
use crate::objects::Hook;
use crate::objects::ProgramIdentity;
use crate::objects::{AttachMode, CgroupHook};
use crate::policy::flat::Net4;
use crate::policy::show;
use crate::policy::tables::Cells;

mod apply;
pub use apply::Refused;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Interfaces weft configures, by name.
    pub links: BTreeMap<String, LinkState>,
    /// Addresses weft assigns on devices it creates (the VXLAN device's tunnel address), as
    /// (device, address, prefix length).
    pub addresses: BTreeSet<(String, Ipv4Addr, u8)>,
    /// Routes weft owns (protocol 87) in the main table, by destination.
    pub routes: BTreeMap<Net4, RouteState>,
    /// Neighbour entries weft owns (protocol 87), by (device, address).
    pub neighbours: BTreeMap<(String, Ipv4Addr), NeighbourState>,
    /// Forwarding entries on the VXLAN device weft owns: (device, MAC) -> the remote VTEP's
    /// underlay address (`bridge fdb replace <mac> dev <dev> dst <ip> self permanent`).
    pub fdb: BTreeMap<(String, [u8; 6]), Ipv4Addr>,
    /// Programs pinned under `<root>/progs`, by name.
    pub programs: BTreeMap<String, ProgramState>,
    /// Programs on interface hooks, by (interface, hook).
    pub attachments: BTreeMap<(String, Hook), AttachmentState>,
    /// Programs on cgroup hooks (connect-time load balancing), by hook.
    pub cgroup_attachments: BTreeMap<CgroupHook, CgroupAttachment>,
    /// Maps pinned under `<root>/maps`, by name.
    pub maps: BTreeMap<String, MapState>,
    /// Compiled rulesets in weft_pol_rs, by id (the id is a hash of the cells).
    pub rulesets: BTreeMap<u32, Arc<Cells>>,
}

/// What weft sets on an interface: per-device sysctls (`sysctl net.ipv4.conf.<dev>.<key>`), and
/// for devices weft creates itself, the device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkState {
    /// Keys are paths under /proc/sys/net with `{dev}` standing for the device name, e.g.
    /// `ipv4/conf/{dev}/forwarding`.
    pub sysctls: BTreeMap<String, String>,
    /// The device itself, when weft owns it (alias `weft`).
    pub owned: Option<OwnedLink>,
}

/// A device weft creates: `ip link add <name> address <mac> type veth peer name <peer> ...`
/// or `... type vxlan ...`; then `ip link set <name> alias weft up`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnedLink {
    /// `veth` or `vxlan`.
    pub kind: String,
    /// The other end of a veth pair.
    pub peer: Option<String>,
    pub mac: [u8; 6],
    pub up: bool,
    /// A VXLAN device's settings.
    pub vxlan: Option<VxlanLink>,
}

/// `ip link add <name> type vxlan id <vni> local <local> dstport <port> nolearning mtu <mtu>`:
/// no remote and no group, so nothing floods; every remote VTEP is a static FDB entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VxlanLink {
    pub vni: u32,
    pub port: u16,
    /// This node's underlay address, the source of encapsulated packets.
    pub local: Ipv4Addr,
    pub mtu: u32,
    /// Source MAC learning: weft wants it off, and a device found with it on is made again.
    pub learning: bool,
}

impl std::fmt::Display for VxlanLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "id {} local {} dstport {} {}learning mtu {}",
            self.vni,
            self.local,
            self.port,
            if self.learning { "" } else { "no" },
            self.mtu
        )
    }
}

/// The alias that marks devices weft created.
pub const OWNED_ALIAS: &str = "weft";

/// A route weft owns: `ip route replace <dst> [via <gw>] dev <dev> [onlink] proto 87`, or
/// `ip route replace blackhole <dst> proto 87` where `dev` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteState {
    /// Empty for a blackhole.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dev: String,
    /// A gateway on `dev`: service addresses go to bpfin.weft through a gateway whose route
    /// and neighbour entry weft owns too; remote workloads through the VTEP of their node.
    pub via: Option<Ipv4Addr>,
    /// The gateway is on the link though no address of the device covers it (a remote
    /// VTEP's tunnel address on the VXLAN device).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub onlink: bool,
}

impl RouteState {
    /// Straight out of `dev` (scope link).
    pub fn direct(dev: &str) -> RouteState {
        RouteState {
            dev: dev.to_string(),
            via: None,
            onlink: false,
        }
    }

    /// Nowhere: what matches it is dropped (this node's own IPAM blocks, so that an address
    /// of theirs no workload has goes no further).
    pub fn blackhole() -> RouteState {
        RouteState::direct("")
    }

    pub fn is_blackhole(&self) -> bool {
        self.dev.is_empty()
    }

    /// As `ip route` shows it after the destination.
    pub fn show(&self) -> String {
        if self.is_blackhole() {
            return "blackhole".into();
        }
        match self.via {
            Some(gw) => format!(
                "via {gw} dev {}{}",
                self.dev,
                if self.onlink { " onlink" } else { "" }
            ),
            None => format!("dev {} scope link", self.dev),
        }
    }
}

/// A permanent neighbour entry: `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent
/// proto 87`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeighbourState {
    pub lladdr: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramState {
    pub identity: ProgramIdentity,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachmentState {
    /// The pinned program's name, or `prog id N` for one weft does not know.
    pub program: String,
    pub mode: AttachMode,
}

/// What `observe` names the program of a TCX link whose interface is gone (the link stays
/// pinned until detached).
pub const DEFUNCT: &str = "defunct (interface gone)";

/// A program on a cgroup hook: `bpftool cgroup attach <cgroup> <hook> pinned <program>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupAttachment {
    /// The cgroup directory (the cgroup2 root by default).
    pub cgroup: String,
    pub program: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapState {
    pub def: MapDef,
    /// The entries, for maps whose entries are desired state; None for maps the dataplane
    /// fills (conntrack, counters). Shared, so that a map whose entries did not change (the
    /// NAT tables when a policy changes) is the same allocation in the old and new state, and
    /// the plan passes it over without comparing its entries (`Arc`'s equality checks the
    /// pointer first); a writer takes its own copy with `Arc::make_mut`.
    #[serde(skip)]
    pub entries: Option<Arc<Entries>>,
}

/// The sysctl keys weft sets on a workload interface, with the values it sets.
pub const WORKLOAD_SYSCTLS: &[(&str, &str)] = &[
    // Routes to and from the workload go through the host.
    ("ipv4/conf/{dev}/forwarding", "1"),
    // The host answers ARP for the workload's default gateway (Calico's 169.254.1.1 scheme).
    ("ipv4/conf/{dev}/proxy_arp", "1"),
    // ... at once, not after the default random delay of up to 0.8 s.
    ("ipv4/neigh/{dev}/proxy_delay", "0"),
    // A reply weft gives a service's address back to may carry one of the host's own addresses
    // (a NodePort) as its source. weft_from_wep has already checked that the workload sent it
    // from its own address, which is a stricter reverse-path check than the kernel's.
    ("ipv4/conf/{dev}/accept_local", "1"),
    ("ipv4/conf/{dev}/rp_filter", "0"),
];

/// bpfout.weft: host packets to services arrive here (from bpfin.weft) with the host's own
/// source address, are translated, and are routed on to the backend.
pub const NAT_OUT_SYSCTLS: &[(&str, &str)] = &[
    ("ipv4/conf/{dev}/forwarding", "1"),
    ("ipv4/conf/{dev}/accept_local", "1"),
    ("ipv4/conf/{dev}/rp_filter", "0"),
];

/// bpfin.weft: answers weft sends back to a host process arrive here.
pub const NAT_IN_SYSCTLS: &[(&str, &str)] = &[
    ("ipv4/conf/{dev}/rp_filter", "0"),
    ("ipv4/conf/{dev}/accept_local", "1"),
];

/// A data interface: NodePort and external traffic arriving on it is forwarded to backends.
pub const DATA_SYSCTLS: &[(&str, &str)] = &[("ipv4/conf/{dev}/forwarding", "1")];

/// The fleet's VXLAN device: what arrives decapsulated is forwarded on to workloads, including
/// flows from outside the fleet another node forwarded here, whose source's route is not the
/// tunnel (weft's programs check sources; bpfEnforceRPF).
pub const VXLAN_SYSCTLS: &[(&str, &str)] = &[
    ("ipv4/conf/{dev}/forwarding", "1"),
    ("ipv4/conf/{dev}/rp_filter", "0"),
];

/// Every sysctl key weft may set, for finding what to put back.
pub fn managed_sysctl_keys() -> BTreeSet<&'static str> {
    WORKLOAD_SYSCTLS
        .iter()
        .chain(NAT_OUT_SYSCTLS)
        .chain(NAT_IN_SYSCTLS)
        .chain(DATA_SYSCTLS)
        .chain(VXLAN_SYSCTLS)
        .map(|(k, _)| *k)
        .collect()
}

pub use crate::bpf::maps::Names;

impl OwnedLink {
    /// As `ip link` would be told to make it, after its name: `veth peer P lladdr M up` or
    /// `vxlan id ... lladdr M up`.
    pub fn describe(&self) -> String {
        let mut out = self.kind.clone();
        if let Some(p) = &self.peer {
            let _ = write!(out, " peer {p}");
        }
        if let Some(v) = &self.vxlan {
            let _ = write!(out, " {v}");
        }
        let _ = write!(
            out,
            " lladdr {} {}",
            mac_string(&self.mac),
            if self.up { "up" } else { "down" }
        );
        out
    }
}

pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl HostState {
    /// What `observe` looks at of a state to know where to look (its interfaces and hooks),
    /// without the rest: a scope that costs little to keep.
    pub fn scope(&self) -> HostState {
        HostState {
            links: self.links.clone(),
            attachments: self.attachments.clone(),
            cgroup_attachments: self.cgroup_attachments.clone(),
            ..HostState::default()
        }
    }

    /// A stable, line-per-object rendering grouped by kind of object: what `weft diff` diffs.
    /// `names` says what rule and service ids stand for, so entries say which rule they are.
    pub fn render(&self, names: &Names) -> String {
        let mut out = String::new();
        out.push_str("# links\n");
        for (name, l) in &self.links {
            if let Some(o) = &l.owned {
                let _ = writeln!(out, "link {name} {} alias {OWNED_ALIAS}", o.describe());
            }
            for (k, v) in &l.sysctls {
                let _ = writeln!(
                    out,
                    "link {name} sysctl net.{}={v}",
                    k.replace("{dev}", name).replace('/', ".")
                );
            }
        }
        out.push_str("# addresses\n");
        for (dev, a, len) in &self.addresses {
            let _ = writeln!(out, "address {a}/{len} dev {dev}");
        }
        out.push_str("# routes\n");
        for (dst, r) in &self.routes {
            let _ = writeln!(out, "route {dst} {} proto weft", r.show());
        }
        out.push_str("# neighbours\n");
        for ((dev, ip), n) in &self.neighbours {
            let _ = writeln!(
                out,
                "neighbour {ip} dev {dev} lladdr {} permanent proto weft",
                mac_string(&n.lladdr)
            );
        }
        out.push_str("# fdb\n");
        for ((dev, mac), dst) in &self.fdb {
            let _ = writeln!(
                out,
                "fdb {} dev {dev} dst {dst} self permanent",
                mac_string(mac)
            );
        }
        out.push_str("# programs\n");
        for (name, p) in &self.programs {
            let _ = writeln!(out, "program {name} {}", p.identity.describe());
        }
        for ((iface, hook), a) in &self.attachments {
            let _ = writeln!(
                out,
                "attach {iface} {} {} ({})",
                hook.as_str(),
                a.program,
                a.mode.as_str()
            );
        }
        for (hook, a) in &self.cgroup_attachments {
            let _ = writeln!(
                out,
                "attach cgroup {} {} {}",
                a.cgroup,
                hook.as_str(),
                a.program
            );
        }
        out.push_str("# maps\n");
        for (name, m) in &self.maps {
            let _ = writeln!(out, "map {name} {}", m.def.shape());
            if let Some(entries) = &m.entries {
                let mut lines: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| maps::render(name, k, v, names))
                    .collect();
                lines.sort();
                for l in lines {
                    let _ = writeln!(out, "map {name} {l}");
                }
            }
            if name == maps::POL_RS {
                for (id, cells) in &self.rulesets {
                    for l in show::render(*id, cells, &names.rules) {
                        let _ = writeln!(out, "map {name} {l}");
                    }
                }
            }
        }
        out
    }

    /// How many objects of each kind, for summaries.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let entries: usize = self
            .maps
            .values()
            .filter_map(|m| m.entries.as_ref())
            .map(|e| e.len())
            .sum();
        BTreeMap::from([
            ("links", self.links.len()),
            ("addresses", self.addresses.len()),
            ("routes", self.routes.len()),
            ("neighbours", self.neighbours.len()),
            ("fdb entries", self.fdb.len()),
            ("programs", self.programs.len()),
            (
                "attachments",
                self.attachments.len() + self.cgroup_attachments.len(),
            ),
            ("maps", self.maps.len()),
            ("map entries", entries),
            ("rulesets", self.rulesets.len()),
            (
                "ruleset cells",
                self.rulesets.values().map(|c| c.len()).sum(),
            ),
        ])
    }
}
