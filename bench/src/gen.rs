//! Realistic policy configurations of a chosen size, as the YAML text users write.
//!
//! One local workload endpoint (`bench/target` on node `bench-node`, interface `bench0`) sits
//! in a cluster whose universe is the same at every size: 2,000 remote workload endpoints in 20
//! namespaces with app/tier/version labels and named ports, 50 host endpoints, 100 namespaced
//! and 100 global network sets of 1 to 8 CIDRs each. Only the policy grows: `rules` rules in
//! each direction that select the target, spread over four tiers (security and platform with
//! Pass as their default action, app and default ending in deny) and an explicit profile, in
//! policies of up to ten rules, plus as many policies again that select other endpoints.
//!
//! Rules mix what users write: peers by workload selector (single labels, `in` sets, `&&`),
//! by namespace selector, by network-set selector, by host-endpoint selector, by CIDR (with
//! notNets and notSelector exclusions), or any peer; TCP, UDP and ICMP; single ports, port
//! lists, port ranges and named ports on both sides; source-port ranges; Allow, Deny, Pass and
//! the odd Log. Everything is drawn from a fixed seed, so a size always yields the same text.

use std::fmt::Write as _;

/// The local endpoint's address and interface.
pub const TARGET_ADDR: [u8; 4] = [10, 65, 0, 2];
pub const TARGET_IFACE: &str = "bench0";
pub const NODE: &str = "bench-node";

const NAMESPACES: usize = 20;
const WORKLOADS: usize = 2000;
const APPS: usize = 150;
const HOSTS: usize = 50;
const SETS: usize = 100;
const TIERS: [&str; 4] = ["web", "api", "db", "cache"];
const COMMON_TCP: [u16; 14] = [
    80, 443, 8080, 8443, 22, 5432, 3306, 6379, 9090, 9100, 50051, 27017, 11211, 2379,
];
const RISKY_TCP: [u16; 8] = [23, 135, 139, 445, 3389, 5900, 2375, 6000];
const COMMON_UDP: [u16; 6] = [53, 123, 514, 161, 4789, 8472];

/// xorshift64*: a small deterministic generator, so every size always yields the same text.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One side of a rule, as the YAML's source or destination.
#[derive(Clone, Debug, Default)]
pub struct Entity {
    pub selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub not_selector: Option<String>,
    pub nets: Vec<String>,
    pub not_nets: Vec<String>,
    pub ports: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub action: &'static str,
    pub protocol: Option<&'static str>,
    /// ICMP type and optional code.
    pub icmp: Option<(u8, Option<u8>)>,
    pub source: Entity,
    pub destination: Entity,
}

#[derive(Clone, Debug)]
pub struct Policy {
    /// GlobalNetworkPolicy, or a NetworkPolicy in namespace `bench`.
    pub global: bool,
    pub name: String,
    pub tier: &'static str,
    pub order: u32,
    pub selector: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// A whole configuration before rendering: what a change edits.
#[derive(Clone, Debug)]
pub struct Config {
    pub policies: Vec<Policy>,
    pub profile_ingress: Vec<Rule>,
    pub profile_egress: Vec<Rule>,
}

fn addr(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// The i-th remote workload's address: 10.64.0.0/16, 200 per /24.
pub fn workload_addr(i: usize) -> [u8; 4] {
    [10, 64, (i / 200) as u8, (i % 200 + 1) as u8]
}

fn workload_ns(i: usize) -> usize {
    i % NAMESPACES
}

/// The network sets' CIDRs, drawn from a few supernets, /12 to /32.
fn set_nets(rng: &mut Rng) -> Vec<String> {
    (0..1 + rng.below(8)).map(|_| random_cidr(rng)).collect()
}

fn random_cidr(rng: &mut Rng) -> String {
    let bases: [([u8; 4], u8); 7] = [
        ([172, 16, 0, 0], 12),
        ([100, 64, 0, 0], 10),
        ([198, 18, 0, 0], 15),
        ([203, 0, 113, 0], 24),
        ([45, 0, 0, 0], 8),
        ([52, 0, 0, 0], 8),
        ([10, 64, 0, 0], 16),
    ];
    let (base, blen) = *rng.pick(&bases);
    let len = (blen + 4 + rng.below(u64::from(33 - blen - 4)) as u8).min(32);
    let host_bits = 32 - u32::from(blen);
    let base = u32::from_be_bytes(base);
    let offset = if host_bits == 0 {
        0
    } else {
        (rng.next() as u32) & ((1u32 << host_bits) - 1)
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let a = (base | offset) & mask;
    format!("{}/{len}", std::net::Ipv4Addr::from(a))
}

/// A peer for a rule: who is on the other side.
fn peer(rng: &mut Rng) -> Entity {
    let mut e = Entity::default();
    match rng.below(100) {
        0..=33 => e.selector = Some(format!("app == 'app-{}'", rng.below(APPS as u64))),
        34..=37 => {
            e.selector = Some(format!(
                "tier == '{}' && version == 'v{}'",
                rng.pick(&TIERS),
                rng.below(3)
            ))
        }
        38..=41 => {
            let apps: Vec<String> = (0..2 + rng.below(4))
                .map(|_| format!("'app-{}'", rng.below(APPS as u64)))
                .collect();
            e.selector = Some(format!("app in {{{}}}", apps.join(", ")));
        }
        42..=65 => e.nets = (0..1 + rng.below(3)).map(|_| random_cidr(rng)).collect(),
        66..=71 => {
            e.selector = Some(format!(
                "set == '{}set-{}'",
                if rng.chance(50) { "g" } else { "ns" },
                rng.below(SETS as u64)
            ))
        }
        72..=76 => {
            e.selector = Some(format!(
                "kind == '{}'",
                rng.pick(&["partner", "saas", "monitoring", "blocklist", "corp"])
            ))
        }
        77..=80 => e.selector = Some(format!("role == 'node' && zone == 'z-{}'", rng.below(3))),
        81..=91 => {
            e.namespace_selector = Some(format!("team == 'team-{}'", rng.below(8)));
            e.selector = Some(format!("tier == '{}'", rng.pick(&TIERS)));
        }
        _ => {}
    }
    if rng.chance(8) {
        e.not_nets = vec![format!("10.64.{}.0/24", rng.below(10))];
    } else if e.selector.is_some() && rng.chance(5) {
        e.not_selector = Some("version == 'v2'".into());
    }
    e
}

/// A tier's actions with their shares in percent.
type Actions = &'static [(&'static str, u64)];

/// A rule of one direction; `actions` are the tier's actions with their shares in percent.
fn rule(rng: &mut Rng, egress: bool, actions: &[(&'static str, u64)]) -> Rule {
    let mut roll = rng.below(100);
    let mut action = actions[actions.len() - 1].0;
    for (a, share) in actions {
        if roll < *share {
            action = a;
            break;
        }
        roll -= share;
    }
    let mut peer = peer(rng);
    let mut local = Entity::default();
    let any_peer = peer.selector.is_none() && peer.nets.is_empty();
    let (protocol, icmp) = match rng.below(100) {
        // Nobody writes "any peer, any protocol" halfway down a list: it would end the list.
        _ if any_peer => (Some("TCP"), None),
        0..=59 => (Some("TCP"), None),
        60..=84 => (Some("UDP"), None),
        85..=89 => {
            let t = *rng.pick(&[
                (8u8, None),
                (0, None),
                (3, Some(4u8)),
                (3, None),
                (11, None),
            ]);
            (Some("ICMP"), Some(t))
        }
        _ => (None, None),
    };
    let mut ports = Vec::new();
    match protocol {
        // A rule for every peer names a service port: a Deny one a port nobody should reach.
        Some("TCP") if any_peer && action == "Deny" => ports.push(rng.pick(&RISKY_TCP).to_string()),
        Some("TCP") if any_peer => ports.push(rng.pick(&COMMON_TCP).to_string()),
        Some("TCP") => match rng.below(100) {
            0..=44 => ports.push(rng.pick(&COMMON_TCP).to_string()),
            45..=59 => ports.push((1024 + rng.below(60_000)).to_string()),
            60..=74 => {
                let lo = 1024 + rng.below(60_000);
                let hi = (lo + 10 + rng.below(990)).min(65535);
                ports.push(format!("{lo}:{hi}"));
            }
            75..=89 => ports.push(rng.pick(&["http", "metrics", "grpc"]).to_string()),
            _ => {
                ports.push(rng.pick(&COMMON_TCP).to_string());
                ports.push(rng.pick(&COMMON_TCP).to_string());
                ports.push("30000:32767".into());
            }
        },
        Some("UDP") => match rng.below(100) {
            0..=59 => ports.push(rng.pick(&COMMON_UDP).to_string()),
            60..=79 => ports.push((1024 + rng.below(60_000)).to_string()),
            _ => {
                let lo = 1024 + rng.below(60_000);
                let hi = (lo + 10 + rng.below(500)).min(65535);
                ports.push(format!("{lo}:{hi}"));
            }
        },
        _ => {}
    }
    // Named ports are the responder's: the target's own on ingress; on egress the selected
    // peers' (only meaningful with a selector, so it falls back to a number otherwise).
    let named = ports
        .iter()
        .any(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()));
    if egress && named && peer.selector.is_none() {
        ports = vec!["443".into()];
    }
    let mut source_ports = Vec::new();
    if protocol.is_some() && icmp.is_none() && rng.chance(4) {
        source_ports.push("1024:65535".to_string());
    }
    let (source, destination) = if egress {
        peer.ports = ports;
        local.ports = source_ports;
        (local, peer)
    } else {
        local.ports = ports;
        peer.ports = source_ports;
        (peer, local)
    };
    Rule {
        action,
        protocol,
        icmp,
        source,
        destination,
    }
}

/// The policy selectors that pick the target, and some that pick other endpoints.
const TARGET_SELECTORS: [&str; 5] = [
    "app == 'target'",
    "tier == 'api'",
    "all()",
    "has(app) && team == 'payments'",
    "app in {'target', 'app-7'}",
];

/// Builds the configuration with `rules` rules in each direction selecting the target.
pub fn build(rules: usize) -> Config {
    let mut rng = Rng::new(0x5eed_0000 + rules as u64);
    let profile_rules = (rules / 20).clamp(1, 50);
    let in_policies = rules - profile_rules;
    // Tier shares of the policy rules: security 15%, platform 15%, app 40%, default the rest.
    let sec = in_policies * 15 / 100;
    let plat = in_policies * 15 / 100;
    let app = in_policies * 40 / 100;
    let def = in_policies - sec - plat - app;
    let tiers: [(&'static str, usize, Actions); 4] = [
        (
            "security",
            sec,
            &[("Deny", 40), ("Pass", 40), ("Allow", 18), ("Log", 2)],
        ),
        (
            "platform",
            plat,
            &[("Pass", 50), ("Allow", 35), ("Deny", 15)],
        ),
        ("app", app, &[("Allow", 75), ("Deny", 15), ("Pass", 10)]),
        ("default", def, &[("Allow", 70), ("Deny", 20), ("Pass", 10)]),
    ];
    let mut policies = Vec::new();
    for (tier, n, actions) in tiers {
        let mut left = n;
        let mut k = 0;
        while left > 0 {
            let size = left.min(10);
            left -= size;
            let global = tier != "default" || rng.chance(50);
            let mut p = Policy {
                global,
                name: format!("{tier}.p-{k:04}"),
                tier,
                order: 10 * k as u32,
                selector: rng.pick(&TARGET_SELECTORS).to_string(),
                ingress: (0..size).map(|_| rule(&mut rng, false, actions)).collect(),
                egress: (0..size).map(|_| rule(&mut rng, true, actions)).collect(),
            };
            if !global {
                p.name = format!("p-{k:04}");
                // A namespaced policy's selectors pick peers in its own namespace unless a
                // namespace selector widens them, as most such rules do.
                let peers = p.ingress.iter_mut().map(|r| &mut r.source);
                for peer in peers.chain(p.egress.iter_mut().map(|r| &mut r.destination)) {
                    if peer.selector.is_some() && peer.namespace_selector.is_none() {
                        peer.namespace_selector = Some(if rng.chance(50) {
                            "all()".to_string()
                        } else {
                            format!("team == 'team-{}'", rng.below(8))
                        });
                    }
                }
            }
            policies.push(p);
            // A policy for other endpoints beside each: it costs parsing, not the target.
            policies.push(Policy {
                global: true,
                name: format!("{tier}.other-{k:04}"),
                tier,
                order: 10 * k as u32 + 5,
                selector: format!("app == 'app-{}'", rng.below(APPS as u64)),
                ingress: (0..size).map(|_| rule(&mut rng, false, actions)).collect(),
                egress: (0..size).map(|_| rule(&mut rng, true, actions)).collect(),
            });
            k += 1;
        }
    }
    let profile_actions: &[(&str, u64)] = &[("Allow", 70), ("Deny", 30)];
    Config {
        policies,
        profile_ingress: (0..profile_rules)
            .map(|_| rule(&mut rng, false, profile_actions))
            .collect(),
        profile_egress: (0..profile_rules)
            .map(|_| rule(&mut rng, true, profile_actions))
            .collect(),
    }
}

fn quote_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.clone()
            } else {
                format!("'{s}'")
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn entity_yaml(e: &Entity) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &e.selector {
        parts.push(format!("selector: \"{s}\""));
    }
    if let Some(s) = &e.namespace_selector {
        parts.push(format!("namespaceSelector: \"{s}\""));
    }
    if let Some(s) = &e.not_selector {
        parts.push(format!("notSelector: \"{s}\""));
    }
    if !e.nets.is_empty() {
        parts.push(format!("nets: {}", quote_list(&e.nets)));
    }
    if !e.not_nets.is_empty() {
        parts.push(format!("notNets: {}", quote_list(&e.not_nets)));
    }
    if !e.ports.is_empty() {
        parts.push(format!("ports: {}", quote_list(&e.ports)));
    }
    format!("{{{}}}", parts.join(", "))
}

fn rules_yaml(out: &mut String, key: &str, rules: &[Rule]) {
    if rules.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {key}:");
    for r in rules {
        let _ = writeln!(out, "    - action: {}", r.action);
        if let Some(p) = r.protocol {
            let _ = writeln!(out, "      protocol: {p}");
        }
        if let Some((t, c)) = r.icmp {
            match c {
                Some(c) => {
                    let _ = writeln!(out, "      icmp: {{type: {t}, code: {c}}}");
                }
                None => {
                    let _ = writeln!(out, "      icmp: {{type: {t}}}");
                }
            }
        }
        let _ = writeln!(out, "      source: {}", entity_yaml(&r.source));
        let _ = writeln!(out, "      destination: {}", entity_yaml(&r.destination));
    }
}

/// The universe: namespaces, remote workloads, host endpoints, network sets, the target.
fn universe() -> String {
    let mut rng = Rng::new(0x0c1a_55e5);
    let mut out = String::new();
    let envs = ["prod", "staging", "dev"];
    for n in 0..NAMESPACES {
        let _ = writeln!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n:02}, labels: {{env: {}, team: team-{}}}}}\n---",
            envs[n % 3],
            n % 8
        );
    }
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench, labels: {{env: prod, team: team-0}}}}\n---"
    );
    for i in 0..WORKLOADS {
        let app = i % APPS;
        let http = [80, 8080, 8000, 3000][app % 4];
        let metrics = [9090, 9100][app % 2];
        let _ = writeln!(
            out,
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: w-{i:04}, namespace: ns-{:02}, labels: {{app: app-{app}, tier: {}, version: v{}}}}}\nspec:\n  node: node-{:02}\n  interfaceName: cali{i:04}\n  ipNetworks: [{}/32]\n  profiles: [kns.ns-{:02}]\n  ports:\n    - {{name: http, protocol: TCP, port: {http}}}\n    - {{name: metrics, protocol: TCP, port: {metrics}}}\n    - {{name: grpc, protocol: TCP, port: {}}}\n---",
            workload_ns(i),
            TIERS[i % 4],
            i % 3,
            i % 50,
            addr(workload_addr(i)),
            workload_ns(i),
            50051 + (app % 3) as u16,
        );
    }
    for h in 0..HOSTS {
        let _ = writeln!(
            out,
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: node-{h:02}-eth0, labels: {{role: node, zone: z-{}}}}}\nspec:\n  node: node-{h:02}\n  interfaceName: eth0\n  expectedIPs: [192.168.1.{}]\n---",
            h % 3,
            h + 10
        );
    }
    let kinds = ["partner", "saas", "monitoring", "blocklist", "corp"];
    for s in 0..SETS {
        let _ = writeln!(
            out,
            "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {{name: ns-set-{s}, namespace: ns-{:02}, labels: {{set: ns-set-{s}, kind: {}}}}}\nspec:\n  nets: {}\n---",
            s % NAMESPACES,
            kinds[s % 5],
            quote_list(&set_nets(&mut rng))
        );
        let _ = writeln!(
            out,
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: g-set-{s}, labels: {{set: g-set-{s}, kind: {}}}}}\nspec:\n  nets: {}\n---",
            kinds[(s + 2) % 5],
            quote_list(&set_nets(&mut rng))
        );
    }
    let _ = writeln!(
        out,
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: target, namespace: bench, labels: {{app: target, tier: api, team: payments}}}}\nspec:\n  node: {NODE}\n  interfaceName: {TARGET_IFACE}\n  ipNetworks: [{}/32]\n  profiles: [bench-extra, kns.bench]\n  ports:\n    - {{name: http, protocol: TCP, port: 8080}}\n    - {{name: metrics, protocol: TCP, port: 9090}}\n    - {{name: grpc, protocol: TCP, port: 50051}}",
        addr(TARGET_ADDR)
    );
    out
}

/// The configuration as files, in the order `weft` would read a directory.
pub fn render(c: &Config) -> Vec<(String, String)> {
    let mut files = vec![("00-universe.yaml".to_string(), universe())];
    let mut tiers = String::new();
    for (name, order, action) in [
        ("security", 100, "Pass"),
        ("platform", 200, "Pass"),
        ("app", 300, "Pass"),
    ] {
        let _ = writeln!(
            tiers,
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\nspec: {{order: {order}, defaultAction: {action}}}\n---"
        );
    }
    let mut profile = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: bench-extra}\nspec:\n",
    );
    rules_yaml(&mut profile, "ingress", &c.profile_ingress);
    rules_yaml(&mut profile, "egress", &c.profile_egress);
    tiers.push_str(&profile);
    files.push(("10-tiers-and-profile.yaml".into(), tiers));
    let mut pols = String::new();
    for p in &c.policies {
        let kind = if p.global {
            "GlobalNetworkPolicy"
        } else {
            "NetworkPolicy"
        };
        let ns = if p.global { "" } else { ", namespace: bench" };
        let _ = writeln!(
            pols,
            "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {}{ns}}}\nspec:\n  tier: {}\n  order: {}\n  selector: \"{}\"\n  types: [Ingress, Egress]",
            p.name, p.tier, p.order, p.selector
        );
        rules_yaml(&mut pols, "ingress", &p.ingress);
        rules_yaml(&mut pols, "egress", &p.egress);
        pols.push_str("---\n");
    }
    files.push(("20-policies.yaml".into(), pols));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_loads_cleanly() {
        for n in [10, 100, 1000] {
            let c = build(n);
            weft_model::load_texts(render(&c)).unwrap_or_else(|d| panic!("{n}: {d}"));
        }
    }
}
