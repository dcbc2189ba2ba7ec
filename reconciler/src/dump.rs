//! `weft dump`: what is in weft's maps, as tables for people and as JSON for programs (in the
//! spirit of `bpftool -j` and `calico-bpf ... --json`).
//!
//! Reading the pinned maps is the only kernel access here (`read_*`); decoding map bytes into
//! rows and rendering rows are pure functions, tested without a kernel. Policy is the one dump
//! that needs the configuration: the kernel holds compiled classifiers, not rules, so the rules
//! and their order come from the desired state (`Desired::rules`), and only their hit counts
//! from the kernel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use serde::Serialize;

use crate::bpf::maps::{self, CtLeg, Entries, IfaceValue, Plain};
use crate::bpf::reasons::REASONS;
use crate::bpf::stats::XdpDrops;
use crate::bpf::{BpfError, Pins};
use crate::desired::Desired;
use crate::policy::lpm;
use crate::policy::resolve::Direction;
use crate::policy::tables::{self, Cells};

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("map {name} is not pinned under {root}; has `weft apply` run with this --bpffs?")]
    NotPinned { name: String, root: PathBuf },
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("{wanted} is not an endpoint weft programs on this node; it programs: {known}")]
    UnknownEndpoint { wanted: String, known: String },
}

// ---- Reading the pinned maps -----------------------------------------------------------------

fn open(pins: &Pins, name: &str) -> Result<MapHandle, DumpError> {
    let path = pins.map(name);
    if !path.exists() {
        return Err(DumpError::NotPinned {
            name: name.into(),
            root: pins.root.clone(),
        });
    }
    MapHandle::from_pinned_path(&path).map_err(|source| {
        DumpError::Bpf(BpfError::Map {
            name: name.into(),
            source,
        })
    })
}

/// Every entry of a pinned map (`bpftool map dump pinned <root>/maps/<name>`).
pub fn read_map(pins: &Pins, name: &str) -> Result<Entries, DumpError> {
    open(pins, name)?;
    Ok(crate::observe::read_entries(pins, name)?)
}

/// Every entry of a pinned per-CPU map: key -> one value per CPU.
pub type PerCpuEntries = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

pub fn read_per_cpu(pins: &Pins, name: &str) -> Result<PerCpuEntries, DumpError> {
    let m = open(pins, name)?;
    let mut out = PerCpuEntries::new();
    for k in m.keys() {
        let v = m
            .lookup_percpu(&k, MapFlags::ANY)
            .map_err(|source| BpfError::Map {
                name: name.into(),
                source,
            })?;
        if let Some(v) = v {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, which conntrack stamps.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---- Tables ----------------------------------------------------------------------------------

/// Columns padded to their widest cell; numeric columns (named in `right`) aligned right.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&'static str, bool)]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.0).collect(),
            right: headers.iter().map(|h| h.1).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len() - 1;
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                if self.right[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                } else {
                    l.push_str(c);
                    if i != last {
                        l.push_str(&" ".repeat(pad));
                    }
                }
                if i != last {
                    l.push_str("  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(self.headers.clone(), &mut out);
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

fn ip(a: u32) -> Ipv4Addr {
    // Map addresses are network-order bytes stored as a native u32.
    Ipv4Addr::from(a.to_ne_bytes())
}

/// A ruleset or rule id as the tables write it.
fn hex(id: u32) -> String {
    format!("{id:#010x}")
}

/// A duration for people: 4.2s, 3m07s, 2h05m.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s < 60 {
        format!("{:.1}s", ns as f64 / 1e9)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

// ---- Policy ----------------------------------------------------------------------------------

/// Packets each rule decided, summed over CPUs, from weft_rule_ctrs and XDP's drops.
pub fn rule_hits(per_cpu: &PerCpuEntries, xdp: &XdpDrops) -> BTreeMap<u32, u64> {
    let mut out: BTreeMap<u32, u64> = BTreeMap::new();
    for (id, cpus) in maps::spec::RULE_COUNTERS.decode_per_cpu(per_cpu) {
        *out.entry(id).or_default() += cpus.iter().sum::<u64>();
    }
    for ((_, id), n) in xdp {
        *out.entry(*id).or_default() += n;
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyDump {
    pub endpoint: String,
    pub iface: String,
    pub ifindex: u32,
    pub directions: Vec<DirectionDump>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirectionDump {
    pub direction: Direction,
    /// The ruleset the configuration compiles to.
    pub ruleset: u32,
    /// The ruleset the kernel uses for the endpoint (weft_iface); None if it has no entry.
    pub live_ruleset: Option<u32>,
    /// In evaluation order: policies' rules tier by tier, each tier's end, the profiles' rules,
    /// the default deny.
    pub rules: Vec<RuleRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRow {
    pub id: u32,
    /// The policy, profile, tier end or default deny the rule belongs to.
    pub origin: String,
    /// The rule's index in its resource; None for tier ends and the default deny.
    pub index: Option<usize>,
    pub action: String,
    /// Packets the rule decided (every endpoint that shares the rule counts).
    pub hits: u64,
}

/// The rules of `endpoint` (namespace/name or interface) in evaluation order with their hits.
pub fn policy(
    desired: &Desired,
    endpoint: &str,
    directions: &[Direction],
    hits: &BTreeMap<u32, u64>,
    live_ifaces: &Entries,
) -> Result<PolicyDump, DumpError> {
    let ep = desired
        .endpoints
        .iter()
        .find(|e| e.name == endpoint || e.iface == endpoint)
        .ok_or_else(|| DumpError::UnknownEndpoint {
            wanted: endpoint.into(),
            known: if desired.endpoints.is_empty() {
                "none".into()
            } else {
                desired
                    .endpoints
                    .iter()
                    .map(|e| format!("{} ({})", e.name, e.iface))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    let live = live_ifaces
        .get(ep.ifindex.as_bytes())
        .and_then(|v| IfaceValue::from_bytes(v));
    let mut out = PolicyDump {
        endpoint: ep.name.clone(),
        iface: ep.iface.clone(),
        ifindex: ep.ifindex,
        directions: Vec::new(),
    };
    for &dir in directions {
        let (ruleset, live_ruleset) = match dir {
            Direction::Ingress => (ep.ruleset_ingress, live.map(|v| v.ruleset_in)),
            Direction::Egress => (ep.ruleset_egress, live.map(|v| v.ruleset_out)),
        };
        let mut rules: Vec<RuleRow> = Vec::new();
        for r in desired
            .rules
            .get(&(ep.name.clone(), dir))
            .into_iter()
            .flatten()
        {
            // A Kubernetes rule expands to several that share its id: show it once.
            if rules.iter().any(|x| x.id == r.id) {
                continue;
            }
            rules.push(RuleRow {
                id: r.id,
                origin: r.origin.clone(),
                index: r.index,
                action: r.action.clone(),
                hits: hits.get(&r.id).copied().unwrap_or(0),
            });
        }
        out.directions.push(DirectionDump {
            direction: dir,
            ruleset,
            live_ruleset,
            rules,
        });
    }
    Ok(out)
}

pub fn render_policy(p: &PolicyDump) -> String {
    let mut out = String::new();
    for (i, d) in p.directions.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} {} (interface {}, ifindex {}, ruleset {})",
            p.endpoint,
            d.direction,
            p.iface,
            p.ifindex,
            hex(d.ruleset)
        );
        match d.live_ruleset {
            Some(l) if l == d.ruleset => {}
            Some(l) => {
                let _ = writeln!(
                    out,
                    "warning: the kernel uses ruleset {} for it, not this configuration's: `weft apply` has not run since the configuration changed",
                    hex(l)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "warning: the kernel has no entry for this endpoint: `weft apply` has not programmed it"
                );
            }
        }
        let mut t = Table::new(&[
            ("#", true),
            ("RULE ID", false),
            ("ACTION", false),
            ("HITS", true),
            ("RULE", false),
        ]);
        for (n, r) in d.rules.iter().enumerate() {
            let what = match r.index {
                Some(i) => format!("{} rule {i}", r.origin),
                None => r.origin.clone(),
            };
            t.row(vec![
                (n + 1).to_string(),
                hex(r.id),
                r.action.clone(),
                r.hits.to_string(),
                what,
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

// ---- Endpoints -------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    pub ifindex: u32,
    pub iface: String,
    pub flags: Vec<&'static str>,
    pub ruleset_ingress: u32,
    pub ruleset_egress: u32,
}

/// weft_iface decoded; `name_of` names interfaces that exist (the entry's own name otherwise).
pub fn endpoints(iface: &Entries, name_of: impl Fn(u32) -> Option<String>) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = maps::spec::IFACE
        .decode_all(iface)
        .map(|(ifindex, v)| EndpointRow {
            ifindex,
            iface: name_of(ifindex).unwrap_or_else(|| maps::from_c_name(&v.name)),
            flags: maps::iface_flags(v.flags),
            ruleset_ingress: v.ruleset_in,
            ruleset_egress: v.ruleset_out,
        })
        .collect();
    rows.sort_by_key(|r| r.ifindex);
    rows
}

pub fn render_endpoints(rows: &[EndpointRow]) -> String {
    let mut t = Table::new(&[
        ("INTERFACE", false),
        ("IFINDEX", true),
        ("FLAGS", false),
        ("INGRESS RULESET", false),
        ("EGRESS RULESET", false),
    ]);
    for r in rows {
        t.row(vec![
            r.iface.clone(),
            r.ifindex.to_string(),
            flags_cell(&r.flags),
            hex(r.ruleset_ingress),
            hex(r.ruleset_egress),
        ]);
    }
    t.render()
}

// ---- Host endpoints ----------------------------------------------------------------------------

/// The stages a packet through a host endpoint meets, in order (bpf-src/include/hep.h).
pub const HOST_ENDPOINT_ORDER: [&str; 6] = [
    "failsafe ports (to and from the host): allowed",
    "untracked (doNotTrack) policy, every packet: allow passes untracked, deny drops, no match goes on",
    "conntrack: a flow the host endpoint let through passes",
    "pre-DNAT policy, arriving, before service NAT: allow skips normal policy, deny drops, no match goes on",
    "service NAT",
    "normal policy: the host's own traffic (tiers, profiles, then deny); forwarded traffic (applyOnForward policies; none: allowed)",
];

#[derive(Clone, Debug, Serialize)]
pub struct HostEndpointRow {
    pub ifindex: u32,
    pub iface: String,
    pub ruleset_in: u32,
    pub ruleset_out: u32,
    pub ruleset_forward_in: u32,
    pub ruleset_forward_out: u32,
    pub ruleset_pre_dnat: u32,
    pub ruleset_untracked_in: u32,
    pub ruleset_untracked_out: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailsafeRow {
    pub direction: &'static str,
    pub protocol: String,
    pub port: u16,
    /// The peer's network: the source inbound, the destination outbound.
    pub peer: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostEndpointsDump {
    pub order: Vec<&'static str>,
    pub host_endpoints: Vec<HostEndpointRow>,
    pub failsafes: Vec<FailsafeRow>,
}

/// weft_hep and weft_failsafe4 decoded.
pub fn host_endpoints(
    hep: &Entries,
    failsafe: &Entries,
    name_of: impl Fn(u32) -> Option<String>,
) -> HostEndpointsDump {
    let host_endpoints = maps::spec::HEP
        .decode_all(hep)
        .map(|(ifindex, v)| HostEndpointRow {
            ifindex,
            iface: name_of(ifindex).unwrap_or_else(|| ifindex.to_string()),
            ruleset_in: v.ruleset_in,
            ruleset_out: v.ruleset_out,
            ruleset_forward_in: v.ruleset_fwd_in,
            ruleset_forward_out: v.ruleset_fwd_out,
            ruleset_pre_dnat: v.ruleset_prednat,
            ruleset_untracked_in: v.ruleset_untracked_in,
            ruleset_untracked_out: v.ruleset_untracked_out,
        })
        .collect();
    let mut failsafes: Vec<(maps::Failsafe4Key, FailsafeRow)> = maps::spec::FAILSAFE4
        .decode_all(failsafe)
        .map(|(k, _)| {
            let net = crate::policy::flat::Net4::new(
                u32::from(Ipv4Addr::from(k.addr.to_ne_bytes())),
                (k.prefixlen.saturating_sub(32)) as u8,
            );
            (
                k,
                FailsafeRow {
                    direction: if k.dir == maps::FS_IN {
                        "inbound"
                    } else {
                        "outbound"
                    },
                    protocol: maps::proto_name(k.proto),
                    port: k.port,
                    peer: net.to_string(),
                },
            )
        })
        .collect();
    failsafes.sort_by_key(|(k, _)| (k.dir, k.proto, k.port, k.prefixlen));
    HostEndpointsDump {
        order: HOST_ENDPOINT_ORDER.to_vec(),
        host_endpoints,
        failsafes: failsafes.into_iter().map(|(_, r)| r).collect(),
    }
}

pub fn render_host_endpoints(d: &HostEndpointsDump) -> String {
    let mut out = String::from("Evaluation order on a host endpoint:\n");
    for (i, o) in d.order.iter().enumerate() {
        let _ = writeln!(out, "  {}. {o}", i + 1);
    }
    out.push('\n');
    let ruleset = |id: u32| if id == 0 { "-".to_string() } else { hex(id) };
    let mut t = Table::new(&[
        ("INTERFACE", false),
        ("IFINDEX", true),
        ("IN", false),
        ("OUT", false),
        ("FORWARD IN", false),
        ("FORWARD OUT", false),
        ("PRE-DNAT", false),
        ("UNTRACKED IN", false),
        ("UNTRACKED OUT", false),
    ]);
    for r in &d.host_endpoints {
        t.row(vec![
            r.iface.clone(),
            r.ifindex.to_string(),
            ruleset(r.ruleset_in),
            ruleset(r.ruleset_out),
            ruleset(r.ruleset_forward_in),
            ruleset(r.ruleset_forward_out),
            ruleset(r.ruleset_pre_dnat),
            ruleset(r.ruleset_untracked_in),
            ruleset(r.ruleset_untracked_out),
        ]);
    }
    if d.host_endpoints.is_empty() {
        out.push_str("No host endpoints.\n");
    } else {
        out.push_str(&t.render());
    }
    out.push_str("\nFailsafe rules (stage 1), in the order they are looked up:\n");
    if d.failsafes.is_empty() {
        out.push_str("  none\n");
    }
    for f in &d.failsafes {
        let _ = writeln!(
            out,
            "  {} {} {} {} {}",
            f.direction,
            f.protocol,
            f.port,
            if f.direction == "inbound" {
                "from"
            } else {
                "to"
            },
            f.peer
        );
    }
    out
}

fn flags_cell(flags: &[&str]) -> String {
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

// ---- Conntrack -------------------------------------------------------------------------------

/// One side of a flow: its address and port, the ruleset that approved it, the TCP flags it sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowSide {
    pub addr: Ipv4Addr,
    /// ICMP echo: the identifier.
    pub port: u16,
    /// The ruleset of this side's endpoint that allowed the flow; None if none did (yet).
    pub approved_by: Option<u32>,
    pub tcp_flags: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    pub protocol: String,
    pub proto: u8,
    /// normal, nat-fwd or nat-rev.
    pub kind: &'static str,
    /// The side that sent the first packet.
    pub originator: FlowSide,
    pub responder: FlowSide,
    /// Created from a TCP packet that was not a SYN (conntrack lost, or asymmetric routing).
    pub midflow: bool,
    /// nat-rev: the frontend the client sent to (replies are given it back); nat-fwd: the
    /// backend the client's packets are sent on to.
    pub nat: Option<String>,
    pub age_ns: u64,
    pub idle_ns: u64,
}

fn leg_flags(f: u8) -> Vec<&'static str> {
    [
        (maps::CT_LEG_SYN, "syn"),
        (maps::CT_LEG_ACK, "ack"),
        (maps::CT_LEG_FIN, "fin"),
        (maps::CT_LEG_RST, "rst"),
    ]
    .iter()
    .filter(|(bit, _)| f & bit != 0)
    .map(|(_, n)| *n)
    .collect()
}

fn side(addr: u32, port: u16, leg: &CtLeg) -> FlowSide {
    FlowSide {
        addr: ip(addr),
        port,
        approved_by: (leg.approved_by != 0).then_some(leg.approved_by),
        tcp_flags: leg_flags(leg.tcp_flags),
    }
}

/// weft_ct4 decoded, each flow oriented from its originator; ages against `now_ns`
/// (CLOCK_MONOTONIC).
pub fn conntrack(ct: &Entries, now_ns: u64) -> Vec<FlowRow> {
    let mut rows: Vec<FlowRow> = maps::spec::CT4
        .decode_all(ct)
        .map(|(k, v)| {
            let a = side(k.addr_a, k.port_a, &v.leg_a);
            let b = side(k.addr_b, k.port_b, &v.leg_b);
            let (originator, responder) = if v.flags & maps::CT_F_B_ORIGINATED != 0 {
                (b, a)
            } else {
                (a, b)
            };
            FlowRow {
                protocol: weft_model::net::protocol_name(k.proto).to_lowercase(),
                proto: k.proto,
                kind: match v.r#type {
                    maps::CT_NORMAL => "normal",
                    maps::CT_NAT_FWD => "nat-fwd",
                    maps::CT_NAT_REV => "nat-rev",
                    _ => "unknown",
                },
                originator,
                responder,
                midflow: v.flags & maps::CT_F_MIDFLOW != 0,
                nat: match v.r#type {
                    maps::CT_NAT_REV => Some(format!(
                        "frontend {}:{}",
                        ip(v.nat_orig_daddr),
                        v.nat_orig_dport
                    )),
                    maps::CT_NAT_FWD => {
                        // The reverse entry's key holds client and backend; the backend is the
                        // side that is not this flow's originator.
                        let r = v.nat_rev_key;
                        let (client, _) = if v.flags & maps::CT_F_B_ORIGINATED != 0 {
                            (k.addr_b, k.port_b)
                        } else {
                            (k.addr_a, k.port_a)
                        };
                        let (addr, port) = if r.addr_a == client {
                            (r.addr_b, r.port_b)
                        } else {
                            (r.addr_a, r.port_a)
                        };
                        Some(format!("backend {}:{}", ip(addr), port))
                    }
                    _ => None,
                },
                age_ns: now_ns.saturating_sub(v.created_ns),
                idle_ns: now_ns.saturating_sub(v.last_seen_ns),
            }
        })
        .collect();
    rows.sort_by(|x, y| {
        (
            x.proto,
            x.originator.addr,
            x.originator.port,
            x.responder.addr,
            x.responder.port,
        )
            .cmp(&(
                y.proto,
                y.originator.addr,
                y.originator.port,
                y.responder.addr,
                y.responder.port,
            ))
    });
    rows
}

fn side_cells(s: &FlowSide) -> (String, String, String) {
    (
        format!("{}:{}", s.addr, s.port),
        s.approved_by.map(hex).unwrap_or_else(|| "-".into()),
        flags_cell(&s.tcp_flags),
    )
}

pub fn render_conntrack(rows: &[FlowRow]) -> String {
    let mut t = Table::new(&[
        ("PROTO", false),
        ("ORIGINATOR", false),
        ("RESPONDER", false),
        ("ORIG APPROVED BY", false),
        ("RESP APPROVED BY", false),
        ("ORIG TCP", false),
        ("RESP TCP", false),
        ("AGE", true),
        ("IDLE", true),
        ("NOTES", false),
    ]);
    for r in rows {
        let (oa, oap, of) = side_cells(&r.originator);
        let (ra, rap, rf) = side_cells(&r.responder);
        let mut notes = Vec::new();
        if r.kind != "normal" {
            notes.push(r.kind);
        }
        if r.midflow {
            notes.push("midflow");
        }
        let nat;
        if let Some(n) = &r.nat {
            nat = n.clone();
            notes.push(&nat);
        }
        t.row(vec![
            r.protocol.clone(),
            oa,
            ra,
            oap,
            rap,
            of,
            rf,
            duration(r.age_ns),
            duration(r.idle_ns),
            flags_cell(&notes),
        ]);
    }
    let mut out = t.render();
    let _ = writeln!(out, "{} flow(s)", rows.len());
    out
}

// ---- Counters --------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    pub ifindex: u32,
    pub iface: String,
    /// from-wep (tc ingress of a workload interface), to-wep (its tc egress), from-hep,
    /// to-hep (a host interface's), from-nat (bpfout.weft's ingress), xdp (a host endpoint's
    /// XDP).
    pub hook: &'static str,
    /// Packets by reason (bpf/reasons.rs), summed over CPUs; only reasons that counted.
    pub reasons: BTreeMap<&'static str, u64>,
}

/// weft_ctrs decoded, with XDP's drops: per interface and hook, the non-zero reason counters.
pub fn counters(
    per_cpu: &PerCpuEntries,
    xdp: &XdpDrops,
    name_of: impl Fn(u32) -> Option<String>,
) -> Vec<CounterRow> {
    let mut by_hook: BTreeMap<(u32, u32), BTreeMap<&'static str, u64>> = BTreeMap::new();
    for (k, cpus) in maps::spec::COUNTERS.decode_per_cpu(per_cpu) {
        let reasons = by_hook.entry((k.ifindex, k.hook)).or_default();
        for c in &cpus {
            for (i, n) in c.packets.iter().enumerate() {
                if *n != 0 {
                    let name = REASONS.get(i).copied().unwrap_or("unknown-reason");
                    *reasons.entry(name).or_insert(0) += n;
                }
            }
        }
    }
    for ((ifindex, _), n) in xdp {
        let reasons = by_hook.entry((*ifindex, maps::HOOK_XDP)).or_default();
        *reasons
            .entry(REASONS[crate::bpf::reasons::DROP_UNTRACKED])
            .or_insert(0) += n;
    }
    let mut rows: Vec<CounterRow> = by_hook
        .into_iter()
        .map(|((ifindex, hook), reasons)| CounterRow {
            ifindex,
            iface: name_of(ifindex).unwrap_or_else(|| format!("if{ifindex}")),
            hook: maps::hook_name(hook),
            reasons,
        })
        .collect();
    rows.sort_by(|a, b| (a.ifindex, a.hook).cmp(&(b.ifindex, b.hook)));
    rows
}

pub fn render_counters(rows: &[CounterRow]) -> String {
    let mut t = Table::new(&[
        ("INTERFACE", false),
        ("IFINDEX", true),
        ("HOOK", false),
        ("REASON", false),
        ("PACKETS", true),
    ]);
    for r in rows {
        for (reason, n) in &r.reasons {
            t.row(vec![
                r.iface.clone(),
                r.ifindex.to_string(),
                r.hook.into(),
                (*reason).into(),
                n.to_string(),
            ]);
        }
    }
    t.render()
}

// ---- Routes ----------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    pub prefix: String,
    pub flags: Vec<&'static str>,
    /// Local workloads: the interface they are behind.
    pub ifindex: Option<u32>,
    pub iface: Option<String>,
    /// Remote workloads: the node they are on.
    pub next_hop: Option<Ipv4Addr>,
}

fn route_flags(f: u32) -> Vec<&'static str> {
    [
        (maps::RT_F_LOCAL_HOST, "local-host"),
        (maps::RT_F_LOCAL_WORKLOAD, "local-workload"),
        (maps::RT_F_REMOTE_WORKLOAD, "remote-workload"),
        (maps::RT_F_IN_POOL, "in-pool"),
        (maps::RT_F_NAT_OUTGOING, "nat-outgoing"),
    ]
    .iter()
    .filter(|(bit, _)| f & bit != 0)
    .map(|(_, n)| *n)
    .collect()
}

/// weft_rt4 decoded, by prefix.
pub fn routes(rt: &Entries, name_of: impl Fn(u32) -> Option<String>) -> Vec<RouteRow> {
    let mut rows: Vec<(u32, u32, RouteRow)> = maps::spec::RT4
        .decode_all(rt)
        .map(|(k, v)| {
            let local = v.flags & maps::RT_F_LOCAL_WORKLOAD != 0;
            let remote = v.flags & maps::RT_F_REMOTE_WORKLOAD != 0;
            let ifindex = local.then_some(v.ifindex);
            (
                u32::from(ip(k.addr)),
                k.prefixlen,
                RouteRow {
                    prefix: format!("{}/{}", ip(k.addr), k.prefixlen),
                    flags: route_flags(v.flags),
                    ifindex,
                    iface: ifindex.map(|i| name_of(i).unwrap_or_else(|| format!("if{i}"))),
                    next_hop: remote.then(|| ip(v.next_hop)),
                },
            )
        })
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    rows.into_iter().map(|r| r.2).collect()
}

pub fn render_routes(rows: &[RouteRow]) -> String {
    let mut t = Table::new(&[("PREFIX", false), ("FLAGS", false), ("VIA", false)]);
    for r in rows {
        let via = match (&r.iface, r.ifindex, r.next_hop) {
            (Some(n), Some(i), _) => format!("dev {n} (ifindex {i})"),
            (_, _, Some(h)) => format!("node {h}"),
            _ => "-".into(),
        };
        t.row(vec![r.prefix.clone(), flags_cell(&r.flags), via]);
    }
    t.render()
}

// ---- IP sets --------------------------------------------------------------------------------

/// What rule selectors stand for, and what the kernel classifies addresses by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpSetsDump {
    /// Each selector the local endpoints' rules use, with the addresses it selects now
    /// (workload and host endpoints' addresses, network sets' nets): Calico's IP sets.
    pub sets: Vec<IpSetRow>,
    /// The kernel's side: each ruleset's peer address prefixes (decoded from weft_pol_rs), the
    /// sets compiled into address classes.
    pub rulesets: Vec<RulesetPrefixes>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpSetRow {
    pub selector: String,
    pub members: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RulesetPrefixes {
    pub ruleset: u32,
    /// The endpoints and directions the configuration gives this ruleset (none: a ruleset
    /// left in the kernel that no endpoint uses).
    pub used_by: Vec<String>,
    /// Address prefix -> class, most specific last.
    pub prefixes: Vec<(String, u32)>,
}

/// The sets of `desired` beside the address stage of the rulesets in the kernel (weft_pol_rs,
/// by id): each ruleset's peer-address step function, written as the prefixes that cover it.
pub fn ip_sets(desired: &Desired, rulesets: &BTreeMap<u32, Arc<Cells>>) -> IpSetsDump {
    let sets = desired
        .ip_sets
        .iter()
        .map(|(sel, nets)| IpSetRow {
            selector: sel.clone(),
            members: nets.iter().map(|n| n.to_string()).collect(),
        })
        .collect();
    let mut by_ruleset: BTreeMap<u32, Vec<(u32, u32, u32)>> = BTreeMap::new();
    for (id, cells) in rulesets {
        let prefixes = by_ruleset.entry(*id).or_default();
        // A ruleset that does not decode shows with no prefixes; `weft dump policy` says why.
        if let Ok(c) = tables::decode(cells) {
            for p in lpm::encode(32, &c.addr) {
                prefixes.push((u32::from(p.len), p.base as u32, p.value));
            }
        }
    }
    let mut users: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in &desired.endpoints {
        users
            .entry(e.ruleset_ingress)
            .or_default()
            .push(format!("{} ({}) ingress", e.name, e.iface));
        users
            .entry(e.ruleset_egress)
            .or_default()
            .push(format!("{} ({}) egress", e.name, e.iface));
    }
    let rulesets = by_ruleset
        .into_iter()
        .map(|(ruleset, mut prefixes)| {
            prefixes.sort();
            RulesetPrefixes {
                ruleset,
                used_by: users.get(&ruleset).cloned().unwrap_or_default(),
                prefixes: prefixes
                    .into_iter()
                    .map(|(len, a, class)| (format!("{}/{len}", Ipv4Addr::from(a)), class))
                    .collect(),
            }
        })
        .collect();
    IpSetsDump { sets, rulesets }
}

pub fn render_ip_sets(d: &IpSetsDump) -> String {
    let mut t = Table::new(&[("SELECTOR", false), ("MEMBERS", false)]);
    for s in &d.sets {
        t.row(vec![
            s.selector.clone(),
            if s.members.is_empty() {
                "(none)".into()
            } else {
                s.members.join(", ")
            },
        ]);
    }
    let mut out = t.render();
    let _ = writeln!(out, "{} set(s)", d.sets.len());
    out.push('\n');
    let mut t = Table::new(&[("RULESET", false), ("PREFIXES", true), ("USED BY", false)]);
    for r in &d.rulesets {
        t.row(vec![
            format!("{:#010x}", r.ruleset),
            r.prefixes.len().to_string(),
            if r.used_by.is_empty() {
                "(no endpoint)".into()
            } else {
                r.used_by.join(", ")
            },
        ]);
    }
    out += &t.render();
    let _ = writeln!(
        out,
        "{} ruleset(s) in the kernel (their prefixes with --json)",
        d.rulesets.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::maps::{Counters, Ct4Key, Ct4Value, Route4Key, RouteValue};
    use crate::desired::{EndpointSummary, Settings};
    use crate::policy::classify::{Compiled, Decision};
    use crate::policy::flat::Verdict;
    use crate::policy::resolve::RuleInfo;
    use crate::state::HostState;

    fn be(a: [u8; 4]) -> u32 {
        maps::addr_be(Ipv4Addr::from(a))
    }

    #[test]
    fn tables_align_columns_and_numbers_to_the_right() {
        let mut t = Table::new(&[("NAME", false), ("N", true), ("LAST", false)]);
        t.row(vec!["a".into(), "7".into(), "x".into()]);
        t.row(vec!["longer".into(), "1234".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME       N  LAST\na          7  x\nlonger  1234\n"
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(4_200_000_000), "4.2s");
        assert_eq!(duration(187_000_000_000), "3m07s");
        assert_eq!(duration(7_500_000_000_000), "2h05m");
    }

    fn desired_with(rules: Vec<RuleInfo>, egress: Vec<RuleInfo>) -> Desired {
        Desired {
            state: HostState::default(),
            settings: Settings::for_node(&Default::default(), &Default::default()),
            warnings: Vec::new(),
            host_endpoints: Vec::new(),
            endpoints: vec![EndpointSummary {
                name: "demo/wl".into(),
                iface: "caliwl".into(),
                ifindex: 7,
                addrs: vec![Ipv4Addr::new(10, 65, 0, 2)],
                ruleset_ingress: 0x1111,
                ruleset_egress: 0x2222,
            }],
            rules: BTreeMap::from([
                (("demo/wl".to_string(), Direction::Ingress), rules),
                (("demo/wl".to_string(), Direction::Egress), egress),
            ]),
            services: Default::default(),
            ip_sets: BTreeMap::from([(
                "app == \"web\"".to_string(),
                vec![
                    crate::policy::flat::Net4::new(0x0a41_0003, 32),
                    crate::policy::flat::Net4::new(0x0a42_0000, 16),
                ],
            )]),
        }
    }

    #[test]
    fn ip_sets_show_selectors_members_and_the_kernels_prefixes_per_ruleset() {
        let d = desired_with(Vec::new(), Vec::new());
        // Ruleset 0x1111 gives 10.65.0.3 a class of its own; 0x9999 has none.
        let ruleset = |addr: Vec<(u64, u32)>| {
            let classes = addr.iter().map(|(_, c)| *c).max().unwrap_or(0) as usize + 1;
            let deny = Decision::Verdict(Verdict {
                allow: false,
                no_match: false,
                log: false,
                rule_id: 1,
            });
            Arc::new(tables::encode(&Compiled {
                flags: 0,
                addr,
                locals: Vec::new(),
                ctx: Vec::new(),
                contexts: 1,
                rows: vec![None; classes],
                background: vec![0],
                functions: vec![vec![(0, deny)]],
            }))
        };
        let web = u64::from(u32::from(Ipv4Addr::new(10, 65, 0, 3)));
        let kernel = BTreeMap::from([
            (0x1111, ruleset(vec![(0, 0), (web, 1), (web + 1, 0)])),
            (0x9999, ruleset(vec![(0, 0)])),
        ]);
        let dump = ip_sets(&d, &kernel);
        assert_eq!(
            dump.sets,
            vec![IpSetRow {
                selector: "app == \"web\"".into(),
                members: vec!["10.65.0.3/32".into(), "10.66.0.0/16".into()],
            }]
        );
        assert_eq!(dump.rulesets.len(), 2);
        assert_eq!(dump.rulesets[0].used_by, vec!["demo/wl (caliwl) ingress"]);
        assert_eq!(
            dump.rulesets[0].prefixes,
            vec![
                ("0.0.0.0/0".to_string(), 0),
                ("10.65.0.3/32".to_string(), 1)
            ]
        );
        assert!(
            dump.rulesets[1].used_by.is_empty(),
            "a ruleset no endpoint uses"
        );
        let table = render_ip_sets(&dump);
        assert!(table.contains("10.65.0.3/32, 10.66.0.0/16"), "{table}");
        assert!(
            table.contains("0x00009999") && table.contains("(no endpoint)"),
            "{table}"
        );
    }

    fn info(id: u32, origin: &str, dir: Direction, index: Option<usize>, action: &str) -> RuleInfo {
        RuleInfo {
            id,
            origin: origin.into(),
            direction: dir,
            index,
            action: action.into(),
        }
    }

    #[test]
    fn policy_lists_rules_in_order_with_hits_once_per_id_and_says_when_the_kernel_differs() {
        let d = desired_with(
            vec![
                info(
                    10,
                    "NetworkPolicy (networking.k8s.io) demo/web",
                    Direction::Ingress,
                    Some(0),
                    "Allow",
                ),
                info(
                    10,
                    "NetworkPolicy (networking.k8s.io) demo/web",
                    Direction::Ingress,
                    Some(0),
                    "Allow",
                ),
                info(
                    11,
                    "end of tier default",
                    Direction::Ingress,
                    None,
                    "Deny (end of tier)",
                ),
                info(
                    12,
                    "default deny (no policy or profile allowed it)",
                    Direction::Ingress,
                    None,
                    "Deny (default)",
                ),
            ],
            vec![info(
                20,
                "Profile kns.demo",
                Direction::Egress,
                Some(0),
                "Allow",
            )],
        );
        let hits = BTreeMap::from([(10, 5), (11, 2), (20, 9)]);
        let live = Entries::from([(
            7u32.as_bytes().into(),
            IfaceValue {
                flags: maps::IFACE_F_WORKLOAD,
                ruleset_in: 0x1111,
                ruleset_out: 0x9999,
                pad: 0,
                name: maps::c_name("caliwl"),
            }
            .as_bytes()
            .into(),
        )]);
        let p = policy(
            &d,
            "caliwl",
            &[Direction::Ingress, Direction::Egress],
            &hits,
            &live,
        )
        .expect("endpoint by interface");
        assert_eq!(p.endpoint, "demo/wl");
        let ingress = &p.directions[0];
        let ids: Vec<(u32, u64)> = ingress.rules.iter().map(|r| (r.id, r.hits)).collect();
        assert_eq!(ids, [(10, 5), (11, 2), (12, 0)]);
        assert_eq!(ingress.live_ruleset, Some(0x1111));
        assert_eq!(p.directions[1].live_ruleset, Some(0x9999));

        let text = render_policy(&p);
        assert_eq!(
            text,
            "demo/wl ingress (interface caliwl, ifindex 7, ruleset 0x00001111)
#  RULE ID     ACTION              HITS  RULE
1  0x0000000a  Allow                  5  NetworkPolicy (networking.k8s.io) demo/web rule 0
2  0x0000000b  Deny (end of tier)     2  end of tier default
3  0x0000000c  Deny (default)         0  default deny (no policy or profile allowed it)

demo/wl egress (interface caliwl, ifindex 7, ruleset 0x00002222)
warning: the kernel uses ruleset 0x00009999 for it, not this configuration's: `weft apply` has not run since the configuration changed
#  RULE ID     ACTION  HITS  RULE
1  0x00000014  Allow      9  Profile kns.demo rule 0
"
        );
        let json = serde_json::to_value(&p).expect("serializes");
        assert_eq!(json["directions"][0]["direction"], "ingress");
        assert_eq!(json["directions"][0]["rules"][0]["hits"], 5);
        assert_eq!(
            json["directions"][0]["rules"][1]["index"],
            serde_json::Value::Null
        );

        let only_egress = policy(&d, "demo/wl", &[Direction::Egress], &hits, &Entries::new())
            .expect("endpoint by name");
        assert_eq!(only_egress.directions.len(), 1);
        assert!(render_policy(&only_egress).contains("the kernel has no entry for this endpoint"));

        let e = policy(&d, "demo/nope", &[Direction::Ingress], &hits, &live).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "demo/nope is not an endpoint weft programs on this node; it programs: demo/wl (caliwl)"
        );
    }

    #[test]
    fn rule_hits_sum_over_cpus() {
        let per_cpu = PerCpuEntries::from([
            (
                7u32.as_bytes().into(),
                vec![3u64.as_bytes().into(), 4u64.as_bytes().into()],
            ),
            (
                9u32.as_bytes().into(),
                vec![0u64.as_bytes().into(), 1u64.as_bytes().into()],
            ),
        ]);
        assert_eq!(
            rule_hits(&per_cpu, &XdpDrops::new()),
            BTreeMap::from([(7, 7), (9, 1)])
        );
        // XDP's drops are hits of their rules too.
        let xdp = XdpDrops::from([((3, 9), 5), ((4, 11), 2)]);
        assert_eq!(
            rule_hits(&per_cpu, &xdp),
            BTreeMap::from([(7, 7), (9, 6), (11, 2)])
        );
    }

    #[test]
    fn endpoints_decode_weft_iface() {
        let v = IfaceValue {
            flags: maps::IFACE_F_WORKLOAD,
            ruleset_in: 0xabc,
            ruleset_out: 0xdef,
            pad: 0,
            name: maps::c_name("calia"),
        };
        let e = Entries::from([
            (5u32.as_bytes().into(), v.as_bytes().into()),
            (3u32.as_bytes().into(), v.as_bytes().into()),
        ]);
        let rows = endpoints(&e, |i| (i == 3).then(|| "calib".to_string()));
        assert_eq!(rows[0].iface, "calib", "the live name wins");
        assert_eq!(
            rows[1].iface, "calia",
            "the entry's name when the interface is gone"
        );
        assert_eq!(
            render_endpoints(&rows),
            "INTERFACE  IFINDEX  FLAGS     INGRESS RULESET  EGRESS RULESET
calib            3  workload  0x00000abc       0x00000def
calia            5  workload  0x00000abc       0x00000def
"
        );
        let json = serde_json::to_string(&rows[0]).expect("serializes");
        assert_eq!(
            json,
            r#"{"ifindex":3,"iface":"calib","flags":["workload"],"ruleset_ingress":2748,"ruleset_egress":3567}"#
        );
    }

    #[test]
    fn conntrack_is_oriented_from_the_originator_with_legs_and_ages() {
        // 10.65.0.2:40000 -> 10.65.1.5:80, opened by side b (the normalised key puts
        // 10.65.0.1 first), answered, approved by the originator's egress ruleset.
        let k = Ct4Key {
            addr_a: be([10, 65, 0, 1]),
            addr_b: be([10, 65, 0, 2]),
            port_a: 80,
            port_b: 40000,
            proto: 6,
            pad: [0; 3],
        };
        let mut v = Ct4Value {
            created_ns: 1_000_000_000,
            last_seen_ns: 9_000_000_000,
            r#type: maps::CT_NORMAL,
            flags: maps::CT_F_B_ORIGINATED,
            ..Default::default()
        };
        v.leg_b.approved_by = 0x2222;
        v.leg_b.tcp_flags = maps::CT_LEG_SYN | maps::CT_LEG_ACK;
        v.leg_a.tcp_flags = maps::CT_LEG_SYN | maps::CT_LEG_ACK | maps::CT_LEG_FIN;
        let udp = Ct4Key {
            addr_a: be([10, 65, 0, 2]),
            addr_b: be([10, 65, 1, 5]),
            port_a: 5353,
            port_b: 53,
            proto: 17,
            pad: [0; 3],
        };
        let u = Ct4Value {
            created_ns: 70_000_000_000,
            last_seen_ns: 70_000_000_000,
            flags: maps::CT_F_MIDFLOW,
            ..Default::default()
        };
        let e = Entries::from([
            (k.as_bytes().into(), v.as_bytes().into()),
            (udp.as_bytes().into(), u.as_bytes().into()),
        ]);
        let rows = conntrack(&e, 130_000_000_000);
        assert_eq!(rows.len(), 2);
        let tcp = &rows[0];
        assert_eq!((tcp.protocol.as_str(), tcp.proto), ("tcp", 6));
        assert_eq!(tcp.originator.addr, Ipv4Addr::new(10, 65, 0, 2));
        assert_eq!(tcp.originator.port, 40000);
        assert_eq!(tcp.originator.approved_by, Some(0x2222));
        assert_eq!(tcp.responder.approved_by, None);
        assert_eq!(tcp.responder.tcp_flags, ["syn", "ack", "fin"]);
        assert_eq!(
            (tcp.age_ns, tcp.idle_ns),
            (129_000_000_000, 121_000_000_000)
        );
        assert_eq!(
            render_conntrack(&rows),
            "PROTO  ORIGINATOR       RESPONDER     ORIG APPROVED BY  RESP APPROVED BY  ORIG TCP  RESP TCP       AGE   IDLE  NOTES
tcp    10.65.0.2:40000  10.65.0.1:80  0x00002222        -                 syn,ack   syn,ack,fin  2m09s  2m01s  -
udp    10.65.0.2:5353   10.65.1.5:53  -                 -                 -         -            1m00s  1m00s  midflow
2 flow(s)
"
        );
        let json = serde_json::to_value(&rows[0]).expect("serializes");
        assert_eq!(json["originator"]["addr"], "10.65.0.2");
        assert_eq!(json["originator"]["approved_by"], 0x2222);
        assert_eq!(json["responder"]["tcp_flags"][2], "fin");
        assert_eq!(json["kind"], "normal");
    }

    #[test]
    fn counters_sum_cpus_and_name_reasons() {
        let k = maps::CountersKey {
            ifindex: 4,
            hook: maps::HOOK_TO_WEP,
        };
        let mut c1 = Counters::default();
        c1.packets[crate::bpf::reasons::ACCEPT_POLICY] = 2;
        c1.packets[crate::bpf::reasons::DROP_POLICY] = 1;
        let mut c2 = Counters::default();
        c2.packets[crate::bpf::reasons::ACCEPT_POLICY] = 3;
        let per_cpu = PerCpuEntries::from([(
            k.as_bytes().into(),
            vec![c1.as_bytes().into(), c2.as_bytes().into()],
        )]);
        let xdp = XdpDrops::from([((4, 9), 5), ((4, 11), 2)]);
        let rows = counters(&per_cpu, &xdp, |_| None);
        assert_eq!(rows[0].iface, "if4");
        assert_eq!(
            render_counters(&rows),
            "INTERFACE  IFINDEX  HOOK    REASON          PACKETS
if4              4  to-wep  accept-policy         5
if4              4  to-wep  drop-policy           1
if4              4  xdp     drop-untracked        7
"
        );
        let json = serde_json::to_string(&rows[0]).expect("serializes");
        assert_eq!(
            json,
            r#"{"ifindex":4,"iface":"if4","hook":"to-wep","reasons":{"accept-policy":5,"drop-policy":1}}"#
        );
    }

    #[test]
    fn routes_by_prefix_with_where_they_lead() {
        let entry = |a: [u8; 4], len: u32, flags: u32, ifindex: u32, next_hop: u32| {
            (
                Route4Key {
                    prefixlen: len,
                    addr: be(a),
                }
                .as_bytes()
                .into(),
                RouteValue {
                    flags,
                    ifindex,
                    next_hop,
                    pad: 0,
                }
                .as_bytes()
                .into(),
            )
        };
        let e = Entries::from([
            entry([10, 65, 0, 2], 32, maps::RT_F_LOCAL_WORKLOAD, 5, 0),
            entry([192, 0, 2, 1], 32, maps::RT_F_LOCAL_HOST, 0, 0),
            entry(
                [10, 65, 8, 0],
                26,
                maps::RT_F_REMOTE_WORKLOAD | maps::RT_F_IN_POOL,
                0,
                be([192, 0, 2, 7]),
            ),
        ]);
        let rows = routes(&e, |i| (i == 5).then(|| "calia".to_string()));
        assert_eq!(
            render_routes(&rows),
            "PREFIX        FLAGS                    VIA
10.65.0.2/32  local-workload           dev calia (ifindex 5)
10.65.8.0/26  remote-workload,in-pool  node 192.0.2.7
192.0.2.1/32  local-host               -
"
        );
        assert_eq!(rows[1].next_hop, Some(Ipv4Addr::new(192, 0, 2, 7)));
    }
}

/// One service frontend with its backends, as `weft dump nat` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NatRow {
    pub frontend: String,
    pub protocol: String,
    pub svc_id: u32,
    /// The service's name, when the configuration is at hand.
    pub service: Option<String>,
    pub backends: Vec<String>,
    /// Where the backends come from (the Service's selector, or its EndpointSlices), when
    /// the configuration is at hand.
    pub from: Option<String>,
    pub local_backends: u32,
    pub flags: Vec<String>,
}

/// weft_nat_fe4 with each frontend's backends from weft_nat_be4.
pub fn nat(
    frontends: &Entries,
    backends: &Entries,
    names: &std::collections::BTreeMap<u32, String>,
    origins: &std::collections::BTreeMap<u32, String>,
) -> Vec<NatRow> {
    use crate::bpf::maps::{NatBackend, NatBackendKey, NatFrontend, NatFrontendKey};
    let mut by_svc: std::collections::BTreeMap<u32, Vec<(u32, String)>> =
        std::collections::BTreeMap::new();
    for (k, v) in backends {
        let (Some(k), Some(v)) = (NatBackendKey::from_bytes(k), NatBackend::from_bytes(v)) else {
            continue;
        };
        by_svc
            .entry(k.svc_id)
            .or_default()
            .push((k.ordinal, format!("{}:{}", ip(v.addr), v.port)));
    }
    let mut rows: Vec<NatRow> = frontends
        .iter()
        .filter_map(|(k, v)| {
            let k = NatFrontendKey::from_bytes(k)?;
            let v = NatFrontend::from_bytes(v)?;
            let mut bes = by_svc.get(&v.svc_id).cloned().unwrap_or_default();
            bes.sort();
            let mut flags = Vec::new();
            if v.flags & maps::NAT_F_LOCAL_ONLY != 0 {
                flags.push("local-only".to_string());
            }
            if v.flags & maps::NAT_F_SRC_RANGES != 0 {
                flags.push("source-ranges".to_string());
            }
            if v.flags & maps::NAT_F_MAGLEV != 0 {
                flags.push(format!("maglev/{}", v.maglev_size));
            }
            if v.affinity_timeout_s != 0 {
                flags.push(format!("affinity/{}s", v.affinity_timeout_s));
            }
            Some(NatRow {
                frontend: format!("{}:{}", ip(k.addr), k.port),
                protocol: weft_model::net::protocol_name(k.proto).to_lowercase(),
                svc_id: v.svc_id,
                service: names.get(&v.svc_id).cloned(),
                backends: bes
                    .into_iter()
                    .take(v.count as usize)
                    .map(|(_, b)| b)
                    .collect(),
                from: origins.get(&v.svc_id).cloned(),
                local_backends: v.local_count,
                flags,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.frontend, &a.protocol).cmp(&(&b.frontend, &b.protocol)));
    rows
}

pub fn render_nat(rows: &[NatRow]) -> String {
    let mut t = Table::new(&[
        ("FRONTEND", false),
        ("PROTO", false),
        ("SERVICE", false),
        ("BACKENDS", false),
        ("FROM", false),
        ("LOCAL", true),
        ("FLAGS", false),
    ]);
    for r in rows {
        t.row(vec![
            r.frontend.clone(),
            r.protocol.clone(),
            r.service.clone().unwrap_or_else(|| hex(r.svc_id)),
            if r.backends.is_empty() {
                "(none: rejects)".into()
            } else {
                r.backends.join(" ")
            },
            r.from.clone().unwrap_or_else(|| "-".into()),
            r.local_backends.to_string(),
            if r.flags.is_empty() {
                "-".into()
            } else {
                r.flags.join(",")
            },
        ]);
    }
    let mut out = t.render();
    let _ = writeln!(out, "{} frontend(s)", rows.len());
    out
}
