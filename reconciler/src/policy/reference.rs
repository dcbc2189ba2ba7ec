//! A reference evaluator of policy: Calico's semantics read straight off the configuration, one
//! flow at a time. It walks the tiers in order, the policies of each tier that select the
//! endpoint, their rules in order, then the endpoint's profiles, and says which rule decides.
//!
//! It shares nothing with the compiler (`resolve` → `classify`) but the rule ids, so that tests
//! can hold the compiled classifier to it on any configuration: it is written for being read,
//! not for speed.
//!
//! Addresses stand for entities the way Calico's IP sets make them: an address matches a
//! selector when some entity that owns it (a workload or host endpoint by its addresses, a
//! network set by its nets) has labels the selector matches, and a named port when such an
//! entity declares that port for the flow's protocol. On one side of a rule Calico folds the
//! notSelector into the selector when both are given (one entity must match `selector &&
//! !notSelector`), and filters named ports, positive and negated alike, by that positive
//! selector (felix/calc/rule_scanner.go).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use weft_model::net::{PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE};
use weft_model::{Action, Cidr, Config, EntityIr, IcmpMatch, Kind, PolicyIr, PortMatch, RuleIr};

use super::flat::Verdict;
use super::resolve::{
    policy_origin, profile_origin, rule_id, tier_end_origin, Direction, Endpoint,
    DEFAULT_DENY_ORIGIN,
};

/// Calico's order for its built-in tier.
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// A flow as the endpoint sees it, in the flow's own direction (the originator's packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The other side's address: the source of an ingress flow, the destination of an egress one.
    pub peer: Ipv4Addr,
    /// The endpoint's side's address.
    pub local: Ipv4Addr,
    pub proto: u8,
    /// The originator's port (TCP, UDP, UDPLite, SCTP); 0 for other protocols.
    pub sport: u16,
    /// The responder's port; for ICMP `type << 8 | code`; 0 for other protocols.
    pub dport: u16,
}

impl Packet {
    pub fn ports(peer: Ipv4Addr, local: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> Packet {
        Packet {
            peer,
            local,
            proto,
            sport,
            dport,
        }
    }

    pub fn icmp(peer: Ipv4Addr, local: Ipv4Addr, icmp_type: u8, code: u8) -> Packet {
        Packet {
            peer,
            local,
            proto: PROTO_ICMP,
            sport: 0,
            dport: u16::from(icmp_type) << 8 | u16::from(code),
        }
    }

    /// The ports the dataplane reads for this protocol (see bpf-src/include/parse.h).
    fn has_ports(&self) -> bool {
        matches!(
            self.proto,
            PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP
        )
    }

    fn icmp_type_code(&self) -> Option<(u8, u8)> {
        (self.proto == PROTO_ICMP).then_some(((self.dport >> 8) as u8, self.dport as u8))
    }
}

/// Something a selector can stand for: its labels, the addresses it owns, its named ports.
#[derive(Clone, Debug)]
struct Owner {
    labels: BTreeMap<String, String>,
    nets: Vec<Cidr>,
    /// (name, protocol, port)
    named_ports: Vec<(String, u8, u16)>,
}

/// An owner's labels and named ports.
type OwnerRef<'a> = (&'a BTreeMap<String, String>, &'a [(String, u8, u16)]);

struct Tier<'c> {
    name: String,
    /// defaultAction Pass: a flow no rule decided goes on to the next tier.
    pass: bool,
    policies: Vec<&'c PolicyIr>,
}

/// The configuration, arranged for walking.
pub struct Reference<'c> {
    config: &'c Config,
    owners: Vec<Owner>,
    tiers: Vec<Tier<'c>>,
}

/// Calico's order of tiers and policies: by order (none after every number), then by name.
fn order_key(o: Option<f64>) -> f64 {
    o.unwrap_or(f64::INFINITY)
}

impl<'c> Reference<'c> {
    pub fn new(config: &'c Config) -> Self {
        let mut owners = Vec::new();
        for w in &config.workload_endpoints {
            owners.push(Owner {
                labels: config.endpoint_labels(&w.value),
                nets: w.value.ip_networks().to_vec(),
                named_ports: w.value.named_ports(),
            });
        }
        for h in &config.host_endpoints {
            owners.push(Owner {
                labels: config.host_endpoint_labels(&h.value),
                nets: h.value.expected_ips().to_vec(),
                named_ports: h.value.named_ports(),
            });
        }
        for n in &config.network_sets {
            owners.push(Owner {
                labels: config.network_set_labels(&n.value),
                nets: n.value.nets().to_vec(),
                named_ports: Vec::new(),
            });
        }
        for n in &config.global_network_sets {
            owners.push(Owner {
                labels: config.global_network_set_labels(&n.value),
                nets: n.value.nets().to_vec(),
                named_ports: Vec::new(),
            });
        }

        let mut tiers: Vec<(f64, Tier)> = config
            .tiers
            .iter()
            .map(|t| {
                let name = t.value.metadata.name.clone();
                let order = if name == "default" {
                    DEFAULT_TIER_ORDER
                } else {
                    order_key(t.value.spec.order)
                };
                let pass = t.value.spec.default_action == Some(Action::Pass);
                (
                    order,
                    Tier {
                        name,
                        pass,
                        policies: Vec::new(),
                    },
                )
            })
            .collect();
        if !tiers.iter().any(|(_, t)| t.name == "default") {
            tiers.push((
                DEFAULT_TIER_ORDER,
                Tier {
                    name: "default".into(),
                    pass: false,
                    policies: Vec::new(),
                },
            ));
        }
        tiers.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut tiers: Vec<Tier> = tiers.into_iter().map(|(_, t)| t).collect();
        for t in &mut tiers {
            // doNotTrack and preDNAT policies are host endpoints' (Calico puts them in their
            // own tiers of host endpoints only): a workload never sees them.
            t.policies = config
                .policies
                .iter()
                .map(|p| &**p)
                .filter(|p| p.tier == t.name && !p.do_not_track && !p.pre_dnat)
                .collect();
            t.policies.sort_by(|a, b| {
                order_key(a.order)
                    .total_cmp(&order_key(b.order))
                    .then_with(|| tie_key(a).cmp(&tie_key(b)))
            });
        }
        Reference {
            config,
            owners,
            tiers,
        }
    }

    /// The verdict for `pkt` on `ep` in `dir`, and the rule that decided it.
    pub fn evaluate(&self, ep: &Endpoint, dir: Direction, pkt: &Packet) -> Verdict {
        self.walk(ep, dir, pkt, &mut None)
    }

    /// As `evaluate`, with the steps that led there, for people reading a test failure.
    pub fn explain(&self, ep: &Endpoint, dir: Direction, pkt: &Packet) -> (Verdict, Vec<String>) {
        let mut steps = Some(Vec::new());
        let v = self.walk(ep, dir, pkt, &mut steps);
        (v, steps.unwrap_or_default())
    }

    fn walk(
        &self,
        ep: &Endpoint,
        dir: Direction,
        pkt: &Packet,
        trace: &mut Option<Vec<String>>,
    ) -> Verdict {
        let mut note = |s: String| {
            if let Some(t) = trace.as_mut() {
                t.push(s);
            }
        };
        let mut log = false;
        for tier in &self.tiers {
            let selecting: Vec<&PolicyIr> = tier
                .policies
                .iter()
                .copied()
                .filter(|p| rules_of(p, dir).is_some() && p.selector.matches(&ep.labels))
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let mut passed = false;
            'policies: for p in selecting {
                let origin = policy_origin(&p.id);
                for r in rules_of(p, dir).unwrap_or_default() {
                    if !self.rule_matches(r, ep, dir, pkt) {
                        continue;
                    }
                    note(format!(
                        "{origin} {dir} rule {} matches: {:?}",
                        r.index, r.action
                    ));
                    let id = rule_id(&origin, dir, Some(r.index));
                    match r.action {
                        Action::Allow | Action::Deny => {
                            return Verdict {
                                allow: r.action == Action::Allow,
                                no_match: false,
                                log,
                                rule_id: id,
                            }
                        }
                        Action::Pass => {
                            passed = true;
                            break 'policies;
                        }
                        Action::Log => log = true,
                    }
                }
            }
            if passed {
                note(format!("tier {}: passed on", tier.name));
            } else if tier.pass {
                note(format!(
                    "tier {}: nothing decided, defaultAction Pass",
                    tier.name
                ));
            } else {
                note(format!(
                    "tier {}: nothing decided, the tier ends in deny",
                    tier.name
                ));
                return Verdict {
                    allow: false,
                    no_match: false,
                    log,
                    rule_id: rule_id(&tier_end_origin(&tier.name), dir, None),
                };
            }
        }
        for name in &ep.profiles {
            let Some((ingress, egress)) = self.config.profile_rules(name) else {
                continue;
            };
            let rules = match dir {
                Direction::Ingress => ingress,
                Direction::Egress => egress,
            };
            let origin = profile_origin(name);
            for r in &rules {
                if !self.rule_matches(r, ep, dir, pkt) {
                    continue;
                }
                note(format!(
                    "{origin} {dir} rule {} matches: {:?}",
                    r.index, r.action
                ));
                let id = rule_id(&origin, dir, Some(r.index));
                match r.action {
                    // No tier follows a profile: Calico's eBPF dataplane denies on a Pass there.
                    Action::Allow | Action::Deny | Action::Pass => {
                        return Verdict {
                            allow: r.action == Action::Allow,
                            no_match: false,
                            log,
                            rule_id: id,
                        }
                    }
                    Action::Log => log = true,
                }
            }
        }
        note("no tier decided and no profile allowed: denied".into());
        Verdict {
            allow: false,
            no_match: false,
            log,
            rule_id: rule_id(DEFAULT_DENY_ORIGIN, dir, None),
        }
    }

    fn rule_matches(&self, r: &RuleIr, ep: &Endpoint, dir: Direction, pkt: &Packet) -> bool {
        if is_ipv6_rule(r) {
            return false;
        }
        if r.protocol.is_some_and(|p| p != pkt.proto) || r.not_protocol == Some(pkt.proto) {
            return false;
        }
        let icmp = pkt.icmp_type_code();
        if let Some(m) = &r.icmp {
            if !icmp.is_some_and(|tc| icmp_matches(m, tc)) {
                return false;
            }
        }
        if let Some(m) = &r.not_icmp {
            if icmp.is_some_and(|tc| icmp_matches(m, tc)) {
                return false;
            }
        }
        // The originator's port is the source's in both directions.
        let (src, dst) = match dir {
            Direction::Ingress => (pkt.peer, pkt.local),
            Direction::Egress => (pkt.local, pkt.peer),
        };
        self.side_matches(&r.source, src, pkt.sport, ep, pkt)
            && self.side_matches(&r.destination, dst, pkt.dport, ep, pkt)
    }

    /// The entities that own `addr`: those of the configuration, and the endpoint itself for
    /// its own addresses.
    fn owners_of<'a>(&'a self, addr: Ipv4Addr, ep: &'a Endpoint) -> Vec<OwnerRef<'a>> {
        let ip = IpAddr::V4(addr);
        let mut v: Vec<OwnerRef<'a>> = self
            .owners
            .iter()
            .filter(|o| o.nets.iter().any(|n| n.contains(ip)))
            .map(|o| (&o.labels, o.named_ports.as_slice()))
            .collect();
        if ep.addrs.contains(&u32::from(addr)) {
            v.push((&ep.labels, ep.named_ports.as_slice()));
        }
        v
    }

    fn side_matches(
        &self,
        e: &EntityIr,
        addr: Ipv4Addr,
        port: u16,
        ep: &Endpoint,
        pkt: &Packet,
    ) -> bool {
        let ip = IpAddr::V4(addr);
        if !e.nets.is_empty() && !e.nets.iter().any(|n| n.contains(ip)) {
            return false;
        }
        if e.not_nets.iter().any(|n| n.contains(ip)) {
            return false;
        }
        let owners = self.owners_of(addr, ep);
        // With a selector, one entity must match it and not the notSelector; without one, no
        // entity of the address may match the notSelector.
        let positive = |labels: &BTreeMap<String, String>| match &e.selector {
            Some(s) => {
                s.matches(labels) && e.not_selector.as_ref().is_none_or(|n| !n.matches(labels))
            }
            None => true,
        };
        match (&e.selector, &e.not_selector) {
            (Some(_), _) => {
                if !owners.iter().any(|(l, _)| positive(l)) {
                    return false;
                }
            }
            (None, Some(n)) => {
                if owners.iter().any(|(l, _)| n.matches(l)) {
                    return false;
                }
            }
            (None, None) => {}
        }
        let port = pkt.has_ports().then_some(port);
        let port_matches = |m: &PortMatch| match (m, port) {
            (_, None) => false,
            (PortMatch::Range { lo, hi }, Some(p)) => *lo <= p && p <= *hi,
            (PortMatch::Named(name), Some(p)) => owners.iter().any(|(labels, ports)| {
                positive(labels)
                    && ports
                        .iter()
                        .any(|(n, proto, pt)| n == name && *proto == pkt.proto && *pt == p)
            }),
        };
        if !e.ports.is_empty() && !e.ports.iter().any(port_matches) {
            return false;
        }
        !e.not_ports.iter().any(port_matches)
    }
}

/// What breaks ties between policies of equal order: Calico compares "name/namespace/kind"
/// (felix/calc/policy_sorter.go), the most specific part first.
fn tie_key(p: &PolicyIr) -> String {
    let kind = match p.id.kind {
        Kind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
        Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        _ => "NetworkPolicy",
    };
    format!(
        "{}/{}/{kind}",
        p.id.name,
        p.id.namespace.as_deref().unwrap_or_default()
    )
}

fn rules_of(p: &PolicyIr, dir: Direction) -> Option<&[RuleIr]> {
    match dir {
        Direction::Ingress => p.ingress.as_deref(),
        Direction::Egress => p.egress.as_deref(),
    }
}

/// A rule is of one IP version (validation sees to it): ipVersion 6, or IPv6 networks, make it
/// an IPv6 rule, which no IPv4 flow matches. Calico drops such rules from IPv4 policy, notNets
/// included (a rule whose only condition is an IPv6 notNets does not become "match all").
fn is_ipv6_rule(r: &RuleIr) -> bool {
    r.ip_version == Some(6)
        || [&r.source, &r.destination]
            .iter()
            .flat_map(|e| e.nets.iter().chain(&e.not_nets))
            .any(|c| !c.is_v4())
}

fn icmp_matches(m: &IcmpMatch, (icmp_type, code): (u8, u8)) -> bool {
    m.icmp_type == icmp_type && m.code.is_none_or(|c| c == code)
}
