//! The plan: a pure diff of observed and desired state into an ordered list of operations.
//!
//! The order keeps every endpoint protected throughout: devices weft creates first (their
//! indexes are needed by everything after), settings and maps, then programs, then map entries
//! (a ruleset's entries before the interface entry that points at it), then attachments, and
//! only then the routes that send traffic to a new workload or service. Removal runs the other
//! way: routes first, then attachments, then entries, pins and devices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use crate::bpf::maps::{self, MapDef, MapSizes};
use crate::facts::ForeignRoute;
use crate::objects::Hook;
use crate::objects::{AttachMode, CgroupHook};
use crate::objects::{Object, ProgramIdentity};
use crate::policy::flat::Net4;
use crate::policy::tables::Cells;
use crate::state::{mac_string, HostState, Names, RouteState, VxlanLink};

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// `ip link add <name> address <mac> type veth peer name <peer> address <peer_mac>`, alias
    /// weft on both ends.
    CreateVeth {
        name: String,
        #[serde(serialize_with = "ser_mac")]
        mac: [u8; 6],
        peer: String,
        #[serde(serialize_with = "ser_mac")]
        peer_mac: [u8; 6],
    },
    /// `ip link add <name> address <mac> type vxlan id <vni> local <ip> dstport <port>
    /// nolearning mtu <mtu>`, alias weft.
    CreateVxlan {
        name: String,
        #[serde(serialize_with = "ser_mac")]
        mac: [u8; 6],
        #[serde(serialize_with = "ser_display")]
        vxlan: VxlanLink,
    },
    /// `ip addr add <addr>/<len> dev <dev>` (a device weft created).
    AddressAdd {
        dev: String,
        addr: Ipv4Addr,
        len: u8,
    },
    AddressDelete {
        dev: String,
        addr: Ipv4Addr,
        len: u8,
    },
    /// `ip link set <name> up`.
    SetLinkUp {
        name: String,
    },
    /// `ip link del <name>` (a device weft created).
    DeleteLink {
        name: String,
    },
    /// `sysctl -w net.<key>=<value>` for one device.
    SetSysctl {
        dev: String,
        key: String,
        value: String,
    },
    /// Back to the namespace's default (`net.ipv4.conf.default.*`).
    ResetSysctl {
        dev: String,
        key: String,
    },
    /// Unpin a map whose definition changed, keeping its entries for the new one where the
    /// layout allows (a resize); the next LoadPrograms creates and pins the new map.
    ReplaceMap {
        name: String,
        old: MapDef,
        new: MapDef,
    },
    /// Load an object's programs (creating missing maps), pin them, and switch every attachment
    /// of the old programs to the new ones in place.
    LoadPrograms {
        object: Object,
        identity: ProgramIdentity,
        #[serde(skip)]
        sizes: MapSizes,
    },
    /// `bpftool map update` for each entry.
    WriteEntries {
        map: String,
        #[serde(serialize_with = "ser_entries")]
        entries: Vec<maps::Entry>,
    },
    /// Create an array of the ruleset's cells, write them, freeze it and add it to
    /// weft_pol_rs under its id (`bpftool map create`, `update`, `freeze`, `update outer`).
    LoadRuleset {
        #[serde(serialize_with = "ser_id")]
        id: u32,
        #[serde(rename = "cells", serialize_with = "ser_cells")]
        cells: Arc<Cells>,
    },
    /// Remove a ruleset from weft_pol_rs; the kernel frees its cells once no program reads them.
    DropRuleset {
        #[serde(serialize_with = "ser_id")]
        id: u32,
    },
    /// `bpftool map delete` for each key.
    DeleteEntries {
        map: String,
        #[serde(serialize_with = "ser_keys")]
        keys: Vec<maps::Bytes>,
    },
    Attach {
        iface: String,
        hook: Hook,
        program: String,
        mode: AttachMode,
    },
    Detach {
        iface: String,
        hook: Hook,
        mode: AttachMode,
    },
    /// `bpftool cgroup attach <cgroup> <hook> pinned <program>` (as a pinned link).
    AttachCgroup {
        hook: CgroupHook,
        cgroup: String,
        program: String,
    },
    DetachCgroup {
        hook: CgroupHook,
    },
    /// `ip route replace <dst> [via <gw>] dev <dev> [onlink] proto 87`.
    RouteReplace {
        #[serde(serialize_with = "ser_display")]
        dst: Net4,
        #[serde(flatten)]
        route: RouteState,
        /// The route of someone else's this one replaces (`foreign_routes`): run only with
        /// leave, and recorded so that it is put back when weft's route goes.
        #[serde(skip_serializing_if = "Option::is_none")]
        takes_over: Option<ForeignRoute>,
    },
    RouteDelete {
        #[serde(serialize_with = "ser_display")]
        dst: Net4,
        #[serde(flatten)]
        route: RouteState,
    },
    /// `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent proto 87`.
    NeighReplace {
        dev: String,
        ip: Ipv4Addr,
        #[serde(serialize_with = "ser_mac")]
        lladdr: [u8; 6],
    },
    NeighDelete {
        dev: String,
        ip: Ipv4Addr,
    },
    /// `bridge fdb replace <mac> dev <dev> dst <ip> self permanent`: frames for a remote
    /// VTEP's MAC go to its underlay address.
    FdbReplace {
        dev: String,
        #[serde(serialize_with = "ser_mac")]
        mac: [u8; 6],
        dst: Ipv4Addr,
    },
    FdbDelete {
        dev: String,
        #[serde(serialize_with = "ser_mac")]
        mac: [u8; 6],
    },
    /// `ip route add <route>`: a route of someone else's that weft took over, put back as it
    /// was once weft's route there is gone.
    RouteRestore {
        route: ForeignRoute,
    },
    UnpinProgram {
        name: String,
    },
    UnpinMap {
        name: String,
    },
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_id<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:#010x}"))
}

fn ser_cells<S: serde::Serializer>(v: &Arc<Cells>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.len() as u64)
}

fn ser_mac<S: serde::Serializer>(v: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&mac_string(v))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Serialize)]
struct EntryJson {
    key: String,
    value: String,
}

fn ser_entries<S: serde::Serializer>(v: &[maps::Entry], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(k, v)| EntryJson {
        key: hex(k),
        value: hex(v),
    }))
}

fn ser_keys<S: serde::Serializer>(v: &[maps::Bytes], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|k| hex(k)))
}

impl Op {
    /// One line for people, in the words of the equivalent command.
    pub fn describe(&self) -> String {
        let route = |dst: &Net4, r: &RouteState| {
            if r.is_blackhole() {
                format!("blackhole {dst} proto 87")
            } else {
                format!("{dst} {} proto 87", r.show())
            }
        };
        match self {
            Op::CreateVeth {
                name,
                mac,
                peer,
                peer_mac,
            } => format!(
                "ip link add {name} address {} type veth peer name {peer} address {} (alias weft)",
                mac_string(mac),
                mac_string(peer_mac)
            ),
            Op::CreateVxlan { name, mac, vxlan } => format!(
                "ip link add {name} address {} type vxlan {vxlan} (alias weft)",
                mac_string(mac)
            ),
            Op::AddressAdd { dev, addr, len } => format!("ip addr add {addr}/{len} dev {dev}"),
            Op::AddressDelete { dev, addr, len } => format!("ip addr del {addr}/{len} dev {dev}"),
            Op::SetLinkUp { name } => format!("ip link set {name} up"),
            Op::DeleteLink { name } => format!("ip link del {name}"),
            Op::SetSysctl { dev, key, value } => format!(
                "sysctl net.{}={value}",
                key.replace("{dev}", dev).replace('/', ".")
            ),
            Op::ResetSysctl { dev, key } => format!(
                "sysctl net.{} back to its default",
                key.replace("{dev}", dev).replace('/', ".")
            ),
            Op::ReplaceMap { name, old, new } => {
                format!("replace map {name} ({} -> {})", old.shape(), new.shape())
            }
            Op::LoadPrograms {
                object, identity, ..
            } => format!("load {} programs ({})", object.name(), identity.describe()),
            Op::WriteEntries { map, entries } => {
                format!("write {} entries to {map}", entries.len())
            }
            Op::LoadRuleset { id, cells } => {
                format!("load ruleset {id:#010x} ({} cells)", cells.len())
            }
            Op::DropRuleset { id } => format!("drop ruleset {id:#010x}"),
            Op::DeleteEntries { map, keys } => format!("delete {} entries from {map}", keys.len()),
            Op::Attach {
                iface,
                hook,
                program,
                mode,
            } => format!(
                "attach {program} to {iface} {} ({})",
                hook.as_str(),
                mode.as_str()
            ),
            Op::Detach { iface, hook, mode } => {
                format!("detach from {iface} {} ({})", hook.as_str(), mode.as_str())
            }
            Op::AttachCgroup {
                hook,
                cgroup,
                program,
            } => {
                format!("attach {program} to cgroup {cgroup} {}", hook.as_str())
            }
            Op::DetachCgroup { hook } => format!("detach from cgroup {}", hook.as_str()),
            Op::RouteReplace {
                dst,
                route: r,
                takes_over: None,
            } => format!("ip route replace {}", route(dst, r)),
            Op::RouteReplace {
                dst,
                route: r,
                takes_over: Some(theirs),
            } => format!(
                "ip route replace {}, taking over the foreign route {theirs}",
                route(dst, r)
            ),
            Op::RouteDelete { dst, route: r } => format!("ip route del {}", route(dst, r)),
            Op::RouteRestore { route } => {
                format!("ip route add {route} (the foreign route weft took over, put back)")
            }
            Op::NeighReplace { dev, ip, lladdr } => format!(
                "ip neigh replace {ip} lladdr {} dev {dev} nud permanent proto 87",
                mac_string(lladdr)
            ),
            Op::NeighDelete { dev, ip } => format!("ip neigh del {ip} dev {dev}"),
            Op::FdbReplace { dev, mac, dst } => format!(
                "bridge fdb replace {} dev {dev} dst {dst} self permanent",
                mac_string(mac)
            ),
            Op::FdbDelete { dev, mac } => {
                format!("bridge fdb del {} dev {dev} self", mac_string(mac))
            }
            Op::UnpinProgram { name } => format!("unpin program {name}"),
            Op::UnpinMap { name } => format!("unpin map {name}"),
        }
    }

    /// The interface the operation acts on, if any: gone, it takes the operation's object
    /// with it (routes, neighbours, attachments and settings live on their device).
    pub fn iface(&self) -> Option<&str> {
        match self {
            Op::SetLinkUp { name } => Some(name),
            Op::RouteReplace { route, .. } | Op::RouteDelete { route, .. } => {
                (!route.is_blackhole()).then_some(route.dev.as_str())
            }
            Op::AddressAdd { dev, .. }
            | Op::AddressDelete { dev, .. }
            | Op::FdbReplace { dev, .. }
            | Op::FdbDelete { dev, .. }
            | Op::SetSysctl { dev, .. }
            | Op::ResetSysctl { dev, .. }
            | Op::NeighReplace { dev, .. }
            | Op::NeighDelete { dev, .. } => Some(dev),
            Op::Attach { iface, .. } | Op::Detach { iface, .. } => Some(iface),
            _ => None,
        }
    }

    /// Operations that create devices: everything else may need their indexes.
    pub fn creates_link(&self) -> bool {
        matches!(
            self,
            Op::CreateVeth { .. } | Op::CreateVxlan { .. } | Op::DeleteLink { .. }
        )
    }

    /// Operations that run before the programs a `LoadPrograms` loaded are switched to: they
    /// fill the maps those programs bring (rulesets, then entries) and name no program. Any
    /// other operation (an attachment names a program) switches first. Filling a replaced map
    /// whole before the switch is what lets the new programs find every entry from their first
    /// packet.
    pub fn runs_before_switch(&self) -> bool {
        matches!(
            self,
            Op::LoadPrograms { .. }
                | Op::LoadRuleset { .. }
                | Op::DropRuleset { .. }
                | Op::WriteEntries { .. }
                | Op::DeleteEntries { .. }
        )
    }
}

/// The maps whose entries are written in this order, after the rulesets: what a key points at
/// goes in first.
const WRITE_ORDER: &[&str] = &[
    maps::NAT_BE4,
    maps::MAGLEV4,
    maps::NAT_SRC4,
    maps::NAT_FE4,
    maps::RT4,
    maps::WLADDR4,
    maps::VTEP4,
    maps::NODE4,
    maps::DSR_OPTOUT4,
    maps::TRACE_FILTER,
    // A port's bit before its failsafe entries, and after them when it goes: the bitmap may
    // send a packet to look for an entry there is none of, never skip one there is.
    maps::FS_PORTS,
    maps::FAILSAFE4,
    maps::XDP_SRC4,
    maps::XDP_HOST4,
    maps::HEP,
    maps::IFACE,
];

/// Computes the operations that take the kernel from `observed` to `desired`.
pub fn plan(desired: &HostState, observed: &HostState, sizes: MapSizes) -> Vec<Op> {
    let mut ops = Vec::new();

    // Devices weft creates, a veth pair at a time (from the end whose name sorts first): made
    // again whole when either end differs, as deleting one end deletes the other.
    let owned = |s: &'_ HostState, n: &str| s.links.get(n).and_then(|l| l.owned.clone());
    // Devices deleted here: nothing that was on them (settings, attachments, routes,
    // neighbours) is on the devices made in their place.
    let mut gone: BTreeSet<String> = BTreeSet::new();
    for (name, l) in &desired.links {
        let Some(want) = &l.owned else { continue };
        let peer = want.peer.clone().unwrap_or_default();
        let peer_want = owned(desired, &peer);
        if peer_want.is_some() && peer < *name {
            continue;
        }
        let mut ends = vec![(name.clone(), want.clone())];
        ends.extend(peer_want.clone().map(|w| (peer.clone(), w)));
        let whole = ends.iter().all(|(n, w)| {
            owned(observed, n).is_some_and(|h| {
                h.kind == w.kind && h.peer == w.peer && h.mac == w.mac && h.vxlan == w.vxlan
            })
        });
        if !whole {
            for (n, _) in &ends {
                let Some(have) = owned(observed, n) else {
                    continue;
                };
                if gone.insert(n.clone()) {
                    ops.push(Op::DeleteLink { name: n.clone() });
                }
                gone.extend(have.peer);
            }
            ops.push(match want.vxlan {
                Some(vxlan) => Op::CreateVxlan {
                    name: name.clone(),
                    mac: want.mac,
                    vxlan,
                },
                None => Op::CreateVeth {
                    name: name.clone(),
                    mac: want.mac,
                    peer,
                    peer_mac: peer_want.map(|p| p.mac).unwrap_or_default(),
                },
            });
        }
        for (n, w) in &ends {
            if w.up && (!whole || owned(observed, n).is_some_and(|h| !h.up)) {
                ops.push(Op::SetLinkUp { name: n.clone() });
            }
        }
    }
    let without_gone;
    let observed = if gone.is_empty() {
        observed
    } else {
        without_gone = observed.without_devices(&gone);
        &without_gone
    };

    // Interface settings weft wants.
    for (dev, l) in &desired.links {
        let have = observed.links.get(dev);
        for (key, value) in &l.sysctls {
            if have.and_then(|h| h.sysctls.get(key)) != Some(value) {
                ops.push(Op::SetSysctl {
                    dev: dev.clone(),
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
    }

    // Maps: missing or reshaped ones mean a (re)load of every object that uses them.
    let mut fresh_maps: BTreeSet<&str> = BTreeSet::new();
    for (name, m) in &desired.maps {
        match observed.maps.get(name) {
            None => {
                fresh_maps.insert(name);
            }
            Some(o) if o.def != m.def => {
                ops.push(Op::ReplaceMap {
                    name: name.clone(),
                    old: o.def.clone(),
                    new: m.def.clone(),
                });
                fresh_maps.insert(name);
            }
            Some(_) => {}
        }
    }
    for object in Object::ALL {
        let wanted: Vec<_> = desired
            .programs
            .iter()
            .filter(|(n, _)| Object::of_program(n) == Some(object))
            .collect();
        let Some((_, first)) = wanted.first() else {
            continue;
        };
        let stale = wanted
            .iter()
            .any(|(n, p)| observed.programs.get(*n) != Some(*p));
        if stale || !fresh_maps.is_empty() {
            ops.push(Op::LoadPrograms {
                object,
                identity: first.identity,
                sizes,
            });
        }
    }

    // Rulesets, then entries, in an order that never lets a key point at something not there
    // yet: an interface switches to a ruleset only once all of it is in place.
    let have_rulesets = if fresh_maps.contains(maps::POL_RS) {
        None
    } else {
        Some(&observed.rulesets)
    };
    for (id, cells) in &desired.rulesets {
        if have_rulesets.and_then(|h| h.get(id)) != Some(cells) {
            if have_rulesets.is_some_and(|h| h.contains_key(id)) {
                // Same id, other cells: not ours, or damaged. Replace it whole.
                ops.push(Op::DropRuleset { id: *id });
            }
            ops.push(Op::LoadRuleset {
                id: *id,
                cells: cells.clone(),
            });
        }
    }
    for map in WRITE_ORDER {
        let Some(want) = desired.maps.get(*map).and_then(|m| m.entries.as_ref()) else {
            continue;
        };
        let have = if fresh_maps.contains(map) {
            None
        } else {
            observed.maps.get(*map).and_then(|m| m.entries.as_ref())
        };
        let mut entries: Vec<maps::Entry> = Vec::new();
        entry_diff(want, have, |k, v, h| {
            if h != Some(v) {
                entries.push((k.clone(), v.clone()));
            }
        });
        if !entries.is_empty() {
            ops.push(Op::WriteEntries {
                map: map.to_string(),
                entries,
            });
        }
    }

    // Attachments: a changed mode attaches the new way before detaching the old. A link in
    // one XDP mode is the same pin as in the other: the new one replaces it.
    for ((iface, hook), a) in &desired.attachments {
        match observed.attachments.get(&(iface.clone(), *hook)) {
            Some(o) if o == a => {}
            Some(o) if o.mode == a.mode || (o.mode.is_link() && a.mode.is_link()) => {
                ops.push(Op::Attach {
                    iface: iface.clone(),
                    hook: *hook,
                    program: a.program.clone(),
                    mode: a.mode,
                })
            }
            Some(o) => {
                ops.push(Op::Attach {
                    iface: iface.clone(),
                    hook: *hook,
                    program: a.program.clone(),
                    mode: a.mode,
                });
                ops.push(Op::Detach {
                    iface: iface.clone(),
                    hook: *hook,
                    mode: o.mode,
                });
            }
            None => ops.push(Op::Attach {
                iface: iface.clone(),
                hook: *hook,
                program: a.program.clone(),
                mode: a.mode,
            }),
        }
    }

    for (hook, a) in &desired.cgroup_attachments {
        if observed.cgroup_attachments.get(hook) != Some(a) {
            ops.push(Op::AttachCgroup {
                hook: *hook,
                cgroup: a.cgroup.clone(),
                program: a.program.clone(),
            });
        }
    }

    // Addresses, FDB entries and neighbours before routes: the route to a remote workload
    // goes through its node's VTEP, which needs its neighbour and FDB entries.
    for (dev, addr, len) in desired.addresses.difference(&observed.addresses) {
        ops.push(Op::AddressAdd {
            dev: dev.clone(),
            addr: *addr,
            len: *len,
        });
    }
    for ((dev, mac), dst) in &desired.fdb {
        if observed.fdb.get(&(dev.clone(), *mac)) != Some(dst) {
            ops.push(Op::FdbReplace {
                dev: dev.clone(),
                mac: *mac,
                dst: *dst,
            });
        }
    }
    for ((dev, ip), n) in &desired.neighbours {
        if observed.neighbours.get(&(dev.clone(), *ip)) != Some(n) {
            ops.push(Op::NeighReplace {
                dev: dev.clone(),
                ip: *ip,
                lladdr: n.lladdr,
            });
        }
    }
    // Direct routes first: a route through a gateway needs the route to the gateway.
    for gatewayed in [false, true] {
        for (dst, r) in desired
            .routes
            .iter()
            .filter(|(_, r)| r.via.is_some() == gatewayed)
        {
            if observed.routes.get(dst) != Some(r) {
                ops.push(Op::RouteReplace {
                    dst: *dst,
                    route: r.clone(),
                    takes_over: None,
                });
            }
        }
    }

    // Removal, the other way round.
    for gatewayed in [true, false] {
        for (dst, r) in observed
            .routes
            .iter()
            .filter(|(_, r)| r.via.is_some() == gatewayed)
        {
            if !desired.routes.contains_key(dst) {
                ops.push(Op::RouteDelete {
                    dst: *dst,
                    route: r.clone(),
                });
            }
        }
    }
    for (dev, ip) in observed.neighbours.keys() {
        if !desired.neighbours.contains_key(&(dev.clone(), *ip)) {
            ops.push(Op::NeighDelete {
                dev: dev.clone(),
                ip: *ip,
            });
        }
    }
    for (dev, mac) in observed.fdb.keys() {
        if !desired.fdb.contains_key(&(dev.clone(), *mac)) {
            ops.push(Op::FdbDelete {
                dev: dev.clone(),
                mac: *mac,
            });
        }
    }
    for (dev, addr, len) in observed.addresses.difference(&desired.addresses) {
        ops.push(Op::AddressDelete {
            dev: dev.clone(),
            addr: *addr,
            len: *len,
        });
    }
    for ((iface, hook), o) in &observed.attachments {
        if !desired.attachments.contains_key(&(iface.clone(), *hook)) {
            ops.push(Op::Detach {
                iface: iface.clone(),
                hook: *hook,
                mode: o.mode,
            });
        }
    }
    for hook in observed.cgroup_attachments.keys() {
        if !desired.cgroup_attachments.contains_key(hook) {
            ops.push(Op::DetachCgroup { hook: *hook });
        }
    }
    for map in WRITE_ORDER.iter().rev() {
        // A replaced map is written whole (its entries are not carried over): nothing to delete.
        if fresh_maps.contains(map) {
            continue;
        }
        let Some(have) = observed.maps.get(*map).and_then(|m| m.entries.as_ref()) else {
            continue;
        };
        let want = desired.maps.get(*map).and_then(|m| m.entries.as_ref());
        let mut keys: Vec<maps::Bytes> = Vec::new();
        entry_diff(have, want, |k, _, w| {
            if w.is_none() {
                keys.push(k.clone());
            }
        });
        if !keys.is_empty() && desired.maps.contains_key(*map) {
            ops.push(Op::DeleteEntries {
                map: map.to_string(),
                keys,
            });
        }
    }
    // Rulesets no interface points at any more (its entry was switched or deleted above).
    if let Some(have) = have_rulesets {
        if desired.maps.contains_key(maps::POL_RS) {
            for id in have.keys() {
                if !desired.rulesets.contains_key(id) {
                    ops.push(Op::DropRuleset { id: *id });
                }
            }
        }
    }
    for (dev, l) in &observed.links {
        let want = desired.links.get(dev);
        for key in l.sysctls.keys() {
            if want.is_none_or(|w| !w.sysctls.contains_key(key)) {
                ops.push(Op::ResetSysctl {
                    dev: dev.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    for name in observed.programs.keys() {
        if !desired.programs.contains_key(name) {
            ops.push(Op::UnpinProgram { name: name.clone() });
        }
    }
    for name in observed.maps.keys() {
        if !desired.maps.contains_key(name) {
            ops.push(Op::UnpinMap { name: name.clone() });
        }
    }
    for (name, l) in &observed.links {
        if l.owned.is_some() && desired.links.get(name).is_none_or(|d| d.owned.is_none()) {
            ops.push(Op::DeleteLink { name: name.clone() });
        }
    }
    ops
}

/// The plan `ops` on a host with routes of others: a RouteReplace whose destination has a
/// route of someone else's (`foreign`) is marked as taking it over, which `weft diff` shows and
/// apply refuses without leave; after a RouteDelete where weft took a route over
/// (`taken_over`), that route is put back. The rest is `ops` as it was. Marking a marked plan
/// again changes nothing.
pub fn with_foreign_routes(
    ops: Vec<Op>,
    foreign: &BTreeMap<Net4, ForeignRoute>,
    taken_over: &BTreeMap<Net4, ForeignRoute>,
) -> Vec<Op> {
    if foreign.is_empty() && taken_over.is_empty() {
        return ops;
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::RouteReplace { dst, route, .. } => out.push(Op::RouteReplace {
                takes_over: foreign.get(&dst).cloned(),
                dst,
                route,
            }),
            Op::RouteDelete { dst, route } => {
                out.push(Op::RouteDelete { dst, route });
                if let Some(theirs) = taken_over.get(&dst) {
                    out.push(Op::RouteRestore {
                        route: theirs.clone(),
                    });
                }
            }
            // Put back after their RouteDelete, above.
            Op::RouteRestore { .. } => {}
            other => out.push(other),
        }
    }
    out
}

/// The destinations `ops` routes anew: a route of someone else's can be there only where weft
/// has none of its own (the kernel keeps one route per destination, tos and metric), so these
/// are where to look for one (`with_foreign_routes`).
pub fn new_route_destinations(ops: &[Op], observed: Option<&HostState>) -> BTreeSet<Net4> {
    ops.iter()
        .filter_map(|o| match o {
            Op::RouteReplace { dst, .. } => Some(*dst),
            _ => None,
        })
        .filter(|dst| observed.is_none_or(|o| !o.routes.contains_key(dst)))
        .collect()
}

/// The routes of others `ops` takes over, one per line as `ip route` shows them.
pub fn takeovers(ops: &[Op]) -> Vec<&ForeignRoute> {
    ops.iter()
        .filter_map(|o| match o {
            Op::RouteReplace {
                takes_over: Some(theirs),
                ..
            } => Some(theirs),
            _ => None,
        })
        .collect()
}

/// What `ops` does to routes that are not weft's, a line each, as `weft diff` shows it below
/// the diff (which shows weft's objects only).
pub fn render_foreign(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        match op {
            Op::RouteReplace {
                dst,
                route,
                takes_over: Some(theirs),
            } => out.push_str(&format!(
                "take over foreign route {theirs}: replaced by weft's {dst} {} (apply refuses without --take-over-routes)\n",
                if route.is_blackhole() {
                    "blackhole".to_string()
                } else {
                    format!("dev {}", route.dev)
                }
            )),
            Op::RouteRestore { route } => {
                out.push_str(&format!("put back foreign route {route}: weft took it over\n"))
            }
            _ => {}
        }
    }
    out
}

/// Whether replacing the map `name` keeps its entries: the applier copies them into the new
/// map when the layout allows (a resize). Only the dataplane's own maps (conntrack, affinity)
/// are carried: the reconciled ones get exactly their desired entries, written whole into the
/// new map before the switch (a copy of the old ones would bring back entries the plan
/// removes and, into a smaller map, crowd out live ones). weft_pol_rs's values are maps, not
/// entries to copy.
pub fn carries_entries(name: &str, old: &MapDef, new: &MapDef) -> bool {
    old.map_type == new.map_type
        && old.key_size == new.key_size
        && old.value_size == new.value_size
        && name != maps::POL_RS
        && !maps::RECONCILED.contains(&name)
}

/// The unified diff of the two renderings, as `weft diff` prints it; empty when equal.
/// How many new TCX attachments one converge makes at most; more than this many new ones are
/// made with tc. Each TCX attachment waits for two RCU grace periods under the RTNL lock
/// (8-12 ms here, and attachments on threads only queue behind each other), while a tc filter
/// takes under a millisecond: 100 new endpoints took 2.4 s with TCX, 0.17 s with tc.
pub const TCX_BULK: usize = 16;

/// The attach modes of `desired` where bpfAttachType is left unset (`Settings::attach_auto`):
/// an interface hook keeps the mode it has live (a new program replaces the old in place), and
/// new attachments use TCX, unless there are more than `TCX_BULK` of them, as when a host with
/// many endpoints starts: then they use tc. An explicit bpfAttachType is always obeyed.
/// `live` is the state observed, or the state last applied when that is trusted.
pub fn settle_attach_modes(desired: &mut HostState, live: &HostState) {
    let new = desired
        .attachments
        .keys()
        .filter(|k| !live.attachments.contains_key(*k))
        .count();
    let fresh = if new > TCX_BULK {
        AttachMode::Tc
    } else {
        AttachMode::Tcx
    };
    for (k, a) in desired.attachments.iter_mut() {
        // XDP is always a link.
        if k.1 != Hook::Xdp {
            a.mode = live.attachments.get(k).map_or(fresh, |l| l.mode);
        }
    }
}

pub fn render_diff(
    observed: &HostState,
    desired: &HostState,
    desired_label: &str,
    names: &Names,
) -> String {
    // Rendering is most of a diff's time at scale (every ruleset's cells and map entries as
    // text); equal states render equal.
    if observed == desired {
        return String::new();
    }
    let (a, b) = (observed.render(names), desired.render(names));
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header("live", desired_label)
        .to_string()
}

/// Walks `a`'s entries in key order beside `b`'s, calling `f` with each of `a`'s entries and
/// `b`'s value under the same key: one pass over two sorted maps rather than a lookup per
/// entry. The same allocation on both sides (a map the change did not touch, shared between
/// the old and new state) is passed over whole.
fn entry_diff(
    a: &Arc<maps::Entries>,
    b: Option<&Arc<maps::Entries>>,
    mut f: impl FnMut(&maps::Bytes, &maps::Bytes, Option<&maps::Bytes>),
) {
    if b.is_some_and(|b| Arc::ptr_eq(a, b)) {
        return;
    }
    let mut others = b.into_iter().flat_map(|b| b.iter()).peekable();
    for (k, v) in a.iter() {
        while others.next_if(|(o, _)| *o < k).is_some() {}
        let same = others.next_if(|(o, _)| *o == k).map(|(_, w)| w);
        f(k, v, same);
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::desired::desired;
    use crate::facts::HostFacts;

    fn facts() -> HostFacts {
        HostFacts::fixture("n1", &[("lo", 1), ("calia", 5), ("calib", 6)])
    }

    fn wep(name: &str, iface: &str, ip: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}\nspec:\n  node: n1\n  interfaceName: {iface}\n  ipNetworks: [{ip}]\n  profiles: [projectcalico-default-allow]\n"
        )
    }

    const DENY_A: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-a}\nspec:\n  selector: app == 'a'\n  ingress:\n    - action: Deny\n";

    fn state(files: &[&str]) -> HostState {
        let cfg = weft_model::load_texts(
            files
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("f{i}.yaml"), t.to_string())),
        )
        .expect("valid");
        desired(&cfg, &facts()).expect("desired").state
    }

    fn position(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter()
            .position(f)
            .unwrap_or_else(|| panic!("no such op in {ops:#?}"))
    }

    #[test]
    fn nothing_to_do_when_equal_or_both_empty() {
        assert!(plan(
            &HostState::default(),
            &HostState::default(),
            MapSizes::default()
        )
        .is_empty());
        let s = state(&[&wep("a", "calia", "10.0.0.1")]);
        assert!(plan(&s, &s, MapSizes::default()).is_empty());
    }

    #[test]
    fn a_new_endpoint_is_protected_before_it_is_routed() {
        let s = state(&[&wep("a", "calia", "10.0.0.1")]);
        let ops = plan(&s, &HostState::default(), MapSizes::default());
        let sysctl = position(&ops, |o| matches!(o, Op::SetSysctl { .. }));
        let load = position(&ops, |o| matches!(o, Op::LoadPrograms { .. }));
        let policy = position(&ops, |o| matches!(o, Op::LoadRuleset { .. }));
        let iface = position(
            &ops,
            |o| matches!(o, Op::WriteEntries { map, .. } if map == maps::IFACE),
        );
        let attach = position(&ops, |o| matches!(o, Op::Attach { .. }));
        let route = position(&ops, |o| matches!(o, Op::RouteReplace { .. }));
        assert!(
            sysctl < load && load < policy && policy < iface && iface < attach && attach < route,
            "{ops:#?}"
        );
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::Attach { .. }))
                .count(),
            2,
            "both hooks"
        );
    }

    #[test]
    fn a_policy_change_writes_the_new_ruleset_before_switching_and_deletes_the_old_after() {
        let before = state(&[&wep("a", "calia", "10.0.0.1")]);
        let after = state(&[&wep("a", "calia", "10.0.0.1"), DENY_A]);
        let ops = plan(&after, &before, MapSizes::default());
        let new_ruleset = position(&ops, |o| matches!(o, Op::LoadRuleset { .. }));
        let switch = position(
            &ops,
            |o| matches!(o, Op::WriteEntries { map, .. } if map == maps::IFACE),
        );
        let old = position(&ops, |o| matches!(o, Op::DropRuleset { .. }));
        assert!(new_ruleset < switch && switch < old, "{ops:#?}");
        // Only the changed direction's ruleset: the egress one is shared and stays.
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::LoadRuleset { .. }))
                .count(),
            1,
            "{ops:#?}"
        );
        assert!(
            !ops.iter().any(|o| matches!(
                o,
                Op::LoadPrograms { .. } | Op::Attach { .. } | Op::Detach { .. }
            )),
            "programs untouched: {ops:#?}"
        );
    }

    #[test]
    fn a_removed_endpoint_is_unrouted_before_it_is_unprotected() {
        let before = state(&[
            &wep("a", "calia", "10.0.0.1"),
            &wep("b", "calib", "10.0.0.2"),
        ]);
        let after = state(&[&wep("a", "calia", "10.0.0.1")]);
        let ops = plan(&after, &before, MapSizes::default());
        let route = position(
            &ops,
            |o| matches!(o, Op::RouteDelete { route, .. } if route.dev == "calib"),
        );
        let detach = position(
            &ops,
            |o| matches!(o, Op::Detach { iface, .. } if iface == "calib"),
        );
        let entries = position(
            &ops,
            |o| matches!(o, Op::DeleteEntries { map, .. } if map == maps::IFACE),
        );
        let sysctl = position(
            &ops,
            |o| matches!(o, Op::ResetSysctl { dev, .. } if dev == "calib"),
        );
        assert!(
            route < detach && detach < entries && entries < sysctl,
            "{ops:#?}"
        );
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::UnpinMap { .. } | Op::UnpinProgram { .. })),
            "a still needs them: {ops:#?}"
        );
    }

    #[test]
    fn the_last_endpoint_leaving_removes_programs_and_maps() {
        let before = state(&[&wep("a", "calia", "10.0.0.1")]);
        let ops = plan(&HostState::default(), &before, MapSizes::default());
        assert!(ops.iter().any(|o| matches!(o, Op::UnpinProgram { .. })));
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::UnpinMap { .. }))
                .count(),
            before.maps.len()
        );
        assert!(
            !ops.iter().any(|o| matches!(o, Op::DeleteEntries { .. })),
            "unpinned maps need no emptying: {ops:#?}"
        );
    }

    #[test]
    fn a_resized_map_is_replaced_and_refilled() {
        let before = state(&[&wep("a", "calia", "10.0.0.1")]);
        let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfMapSizeRoute: 1024\n";
        let cfg = weft_model::load_texts([
            ("a.yaml", wep("a", "calia", "10.0.0.1")),
            ("f.yaml", felix.to_string()),
        ])
        .expect("valid");
        let d = desired(&cfg, &facts()).expect("desired");
        let ops = plan(&d.state, &before, d.settings.sizes);
        let replace = position(
            &ops,
            |o| matches!(o, Op::ReplaceMap { name, new, .. } if name == maps::RT4 && new.max_entries == 1024),
        );
        let load = position(&ops, |o| matches!(o, Op::LoadPrograms { .. }));
        let refill = position(
            &ops,
            |o| matches!(o, Op::WriteEntries { map, .. } if map == maps::RT4),
        );
        assert!(replace < load && load < refill, "{ops:#?}");
    }

    #[test]
    fn a_shrunk_map_gets_exactly_its_desired_entries_before_the_switch() {
        let felix = |n: u32| {
            format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  bpfMapSizeIfState: {n}\n")
        };
        // Two endpoints, room for ten; then one leaves and the map shrinks to one entry.
        let before = state(&[
            &wep("a", "calia", "10.0.0.1"),
            &wep("b", "calib", "10.0.0.2"),
            &felix(10),
        ]);
        let after = state(&[&wep("a", "calia", "10.0.0.1"), &felix(1)]);
        let ops = plan(&after, &before, MapSizes::default());
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o, Op::WriteEntries { map, .. } | Op::DeleteEntries { map, .. } if map == maps::IFACE))
            .collect();
        let want = after.maps[maps::IFACE].entries.as_ref().expect("entries");
        assert!(
            matches!(writes[..], [Op::WriteEntries { entries, .. }] if entries.len() == want.len()),
            "the new map is written whole, nothing carried to delete: {writes:#?}"
        );
        let Some(Op::ReplaceMap { name, old, new }) = ops
            .iter()
            .find(|o| matches!(o, Op::ReplaceMap { name, .. } if name == maps::IFACE))
        else {
            panic!("weft_iface is replaced: {ops:#?}");
        };
        assert!(!carries_entries(name, old, new));
        // Run against the model of the kernel: the map holds exactly a's entry, and the
        // programs were switched to only after every write (nothing after the load but
        // rulesets and entries until then).
        let mut live = before.clone();
        live.apply(&ops).expect("the plan applies");
        assert_eq!(live.maps[maps::IFACE].entries.as_ref(), Some(want));
        let load = position(&ops, |o| matches!(o, Op::LoadPrograms { .. }));
        let write = position(
            &ops,
            |o| matches!(o, Op::WriteEntries { map, .. } if map == maps::IFACE),
        );
        assert!(
            ops[load..=write].iter().all(Op::runs_before_switch),
            "{ops:#?}"
        );
    }

    #[test]
    fn switching_attach_mode_attaches_the_new_way_first() {
        let tcx = state(&[&wep("a", "calia", "10.0.0.1")]);
        let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfAttachType: TC\n";
        let tc = state(&[&wep("a", "calia", "10.0.0.1"), felix]);
        let ops = plan(&tc, &tcx, MapSizes::default());
        let attach = position(&ops, |o| {
            matches!(
                o,
                Op::Attach {
                    mode: AttachMode::Tc,
                    ..
                }
            )
        });
        let detach = position(&ops, |o| {
            matches!(
                o,
                Op::Detach {
                    mode: AttachMode::Tcx,
                    ..
                }
            )
        });
        assert!(attach < detach, "{ops:#?}");
    }

    #[test]
    fn an_xdp_link_changing_mode_is_replaced_not_detached_after() {
        use crate::state::AttachmentState;
        let xdp = |mode| {
            let mut s = HostState::default();
            s.attachments.insert(
                ("eth0".to_string(), Hook::Xdp),
                AttachmentState {
                    program: "weft_xdp".into(),
                    mode,
                },
            );
            s
        };
        let (native, generic) = (xdp(AttachMode::Tcx), xdp(AttachMode::XdpGeneric));
        for (from, to) in [(&native, &generic), (&generic, &native)] {
            let ops = plan(to, from, MapSizes::default());
            assert!(
                matches!(ops.as_slice(), [Op::Attach { .. }]),
                "one attach, which replaces the link: {ops:#?}"
            );
            let mut model = from.clone();
            model.programs.insert(
                "weft_xdp".into(),
                crate::state::ProgramState {
                    identity: crate::objects::ProgramIdentity::current(
                        crate::objects::Object::Hep,
                        Default::default(),
                    ),
                },
            );
            model.apply(&ops).expect("the model applies it");
            assert_eq!(model.attachments, to.attachments);
        }
    }

    #[test]
    fn unset_attach_modes_keep_what_is_live_and_use_tc_for_many_new() {
        use crate::state::AttachmentState;
        let hooks = |n: usize, mode| -> HostState {
            let mut s = HostState::default();
            for i in 0..n {
                s.attachments.insert(
                    (format!("cali{i}"), Hook::Ingress),
                    AttachmentState {
                        program: "weft_to_wep".into(),
                        mode,
                    },
                );
            }
            s
        };
        // A few new ones: TCX, as Calico's default says.
        let mut few = hooks(TCX_BULK, AttachMode::Tcx);
        settle_attach_modes(&mut few, &HostState::default());
        assert!(few.attachments.values().all(|a| a.mode == AttachMode::Tcx));
        // Many new ones: tc, and they keep it on the next converge, with one more added.
        let mut many = hooks(TCX_BULK + 1, AttachMode::Tcx);
        settle_attach_modes(&mut many, &HostState::default());
        assert!(many.attachments.values().all(|a| a.mode == AttachMode::Tc));
        let mut next = hooks(TCX_BULK + 2, AttachMode::Tcx);
        settle_attach_modes(&mut next, &many);
        let modes: Vec<AttachMode> = next.attachments.values().map(|a| a.mode).collect();
        assert_eq!(
            modes.iter().filter(|m| **m == AttachMode::Tc).count(),
            TCX_BULK + 1
        );
        assert_eq!(
            next.attachments[&(format!("cali{}", TCX_BULK + 1), Hook::Ingress)].mode,
            AttachMode::Tcx
        );
        // Settled against what it produced, a plan has nothing to do.
        assert!(plan(&many, &many.clone(), MapSizes::default()).is_empty());
    }

    #[test]
    fn a_route_over_a_foreign_one_takes_it_over_and_one_taken_is_put_back_after_weft_lets_go() {
        let s = state(&[&wep("a", "calia", "10.0.0.1")]);
        let dst = Net4::host(u32::from(Ipv4Addr::new(10, 0, 0, 1)));
        let theirs = ForeignRoute {
            dst,
            shown: "10.0.0.1/32 via 192.0.2.2 dev eth0 proto static".into(),
            message: vec![2, 32],
        };
        let none = BTreeMap::new();
        let plain = with_foreign_routes(
            plan(&s, &HostState::default(), MapSizes::default()),
            &none,
            &none,
        );
        assert!(
            takeovers(&plain).is_empty(),
            "no foreign route, no takeover"
        );
        assert_eq!(render_foreign(&plain), "");

        let foreign = BTreeMap::from([(dst, theirs.clone())]);
        let fresh = plan(&s, &HostState::default(), MapSizes::default());
        assert_eq!(
            new_route_destinations(&fresh, Some(&HostState::default())),
            BTreeSet::from([dst]),
            "where to look for routes of others"
        );
        assert!(
            new_route_destinations(&fresh, Some(&s)).is_empty(),
            "not where weft has its own"
        );
        let ops = with_foreign_routes(fresh, &foreign, &none);
        assert_eq!(takeovers(&ops), vec![&theirs]);
        assert_eq!(ops.len(), plain.len(), "marked, not added to");
        assert!(
            render_foreign(&ops).contains(
                "take over foreign route 10.0.0.1/32 via 192.0.2.2 dev eth0 proto static: replaced by weft's 10.0.0.1/32 dev calia"
            ),
            "{}",
            render_foreign(&ops)
        );
        assert_eq!(
            with_foreign_routes(ops.clone(), &foreign, &none),
            ops,
            "marking twice"
        );

        // The workload goes: weft's route is deleted, and theirs comes back right after.
        let taken = BTreeMap::from([(dst, theirs.clone())]);
        let ops = with_foreign_routes(
            plan(&HostState::default(), &s, MapSizes::default()),
            &none,
            &taken,
        );
        let del = position(
            &ops,
            |o| matches!(o, Op::RouteDelete { dst: d, .. } if *d == dst),
        );
        let put = position(
            &ops,
            |o| matches!(o, Op::RouteRestore { route } if *route == theirs),
        );
        assert_eq!(put, del + 1, "{ops:#?}");
        assert_eq!(
            with_foreign_routes(ops.clone(), &none, &taken),
            ops,
            "put back once"
        );
        assert!(render_foreign(&ops).contains("put back foreign route 10.0.0.1/32 via"));
    }

    #[test]
    fn the_rendered_diff_is_empty_for_equal_states() {
        let s = state(&[&wep("a", "calia", "10.0.0.1")]);
        assert_eq!(render_diff(&s, &s, "x", &Names::default()), "");
        let d = render_diff(&HostState::default(), &s, "x", &Names::default());
        assert!(
            d.contains("+route 10.0.0.1/32 dev calia scope link proto weft"),
            "{d}"
        );
    }
}
