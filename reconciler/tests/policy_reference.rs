//! The policy compiler against the reference evaluator, on random configurations.
//!
//! Each case is a configuration written as YAML text, the way a user would write it, and loaded
//! with `weft_model::load_texts`: namespaces with labels, a dozen workload endpoints (random
//! labels, addresses, named ports, profiles, service accounts), host endpoints, namespaced and
//! global network sets, tiers with random order and defaultAction, Calico NetworkPolicy and
//! GlobalNetworkPolicy and Kubernetes NetworkPolicy with random rules over every match kind and
//! action, and profiles. For every workload endpoint, both directions and a few dozen random
//! flows, the compiled classifier (`resolve` → `classify::compile` → `classify::lookup`) must
//! give exactly the reference's verdict, Log flag and deciding rule.
//!
//! `WEFT_PROPTEST_CASES=n` runs n cases (default 200); `WEFT_PROPTEST_SEED=s` runs the one case
//! with seed s. A failure prints the seed, the configuration, the flow, what each stage said and
//! the reference's reasoning.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use weft::desired;
use weft::policy::flat::{proto_port, Flow, Verdict};
use weft::policy::reference::{Packet, Reference};
use weft::policy::resolve::{Direction, Endpoint, PolicyIndex, RuleInfo};
use weft::policy::{classify, tables};
use weft_model::Config;

// The seeded generator is weft_model::rng::Rng (splitmix64).
use weft_model::rng::Rng;

// ---- YAML, written as people write it --------------------------------------------------------

/// A YAML node: a plain scalar (written as is), a mapping or a sequence.
enum Y {
    S(String),
    M(Vec<(String, Y)>),
    L(Vec<Y>),
}

fn s(x: impl ToString) -> Y {
    Y::S(x.to_string())
}

/// A double-quoted scalar (selectors hold quotes, braces and `!`).
fn q(x: &str) -> Y {
    let mut out = String::from("\"");
    for c in x.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    Y::S(out)
}

fn m(entries: Vec<(&str, Y)>) -> Y {
    Y::M(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn render_map(entries: &[(String, Y)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in entries {
        match v {
            Y::S(x) => {
                let _ = writeln!(out, "{pad}{k}: {x}");
            }
            Y::M(e) if e.is_empty() => {
                let _ = writeln!(out, "{pad}{k}: {{}}");
            }
            Y::L(l) if l.is_empty() => {
                let _ = writeln!(out, "{pad}{k}: []");
            }
            Y::M(e) => {
                let _ = writeln!(out, "{pad}{k}:");
                render_map(e, indent + 2, out);
            }
            Y::L(l) => {
                let _ = writeln!(out, "{pad}{k}:");
                render_list(l, indent + 2, out);
            }
        }
    }
}

fn render_list(items: &[Y], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Y::S(x) => {
                let _ = writeln!(out, "{pad}- {x}");
            }
            Y::M(e) if e.is_empty() => {
                let _ = writeln!(out, "{pad}- {{}}");
            }
            Y::M(e) => {
                // The first key goes on the dash's line.
                let mut sub = String::new();
                render_map(e, indent + 2, &mut sub);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&sub[indent + 2..]);
            }
            Y::L(l) => {
                let _ = writeln!(out, "{pad}-");
                render_list(l, indent + 2, out);
            }
        }
    }
}

fn document(api: &str, kind: &str, metadata: Y, spec: Option<Y>) -> String {
    let mut entries = vec![
        ("apiVersion".to_string(), s(api)),
        ("kind".to_string(), s(kind)),
        ("metadata".to_string(), metadata),
    ];
    if let Some(spec) = spec {
        entries.push(("spec".to_string(), spec));
    }
    let mut out = String::new();
    render_map(&entries, 0, &mut out);
    out
}

// ---- The universe a configuration is drawn from ----------------------------------------------

const CALICO: &str = "projectcalico.org/v3";
const NAMESPACES: [&str; 3] = ["ns-a", "ns-b", "ns-c"];
const LABELS: [(&str, &[&str]); 3] = [
    ("app", &["web", "db", "cache"]),
    ("role", &["front", "back"]),
    ("env", &["prod", "dev"]),
];
const NS_LABELS: [(&str, &[&str]); 2] = [("team", &["red", "blue"]), ("env", &["prod", "dev"])];
const PORT_NAMES: [&str; 4] = ["http", "dns", "metrics", "web"];
const PORTS: [u16; 6] = [53, 80, 443, 8080, 9090, 1000];
const RANGES: [&str; 5] = ["8000:8100", "1:1024", "50:60", "9000:9100", "0:65535"];
const NETS_V4: [&str; 11] = [
    "10.65.0.0/16",
    "10.65.1.0/24",
    "10.65.1.0/28",
    "10.65.2.16/28",
    "10.65.0.0/24",
    "10.66.0.0/16",
    "192.168.0.0/16",
    "172.16.0.0/12",
    "0.0.0.0/0",
    "10.65.3.0/24",
    "8.8.8.8/32",
];
const NETS_V6: [&str; 3] = ["fd00::/64", "fd00:1::/48", "::/0"];
const SERVICE_ACCOUNTS: [&str; 2] = ["sa-1", "sa-2"];
const POLICY_NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "omega"];
const ORDERS: [Option<u32>; 7] = [
    None,
    Some(10),
    Some(100),
    Some(100),
    Some(100),
    Some(500),
    Some(1000),
];

/// Addresses peers are drawn from beside the endpoints' own.
const OUTSIDE: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 66, 0, 5),
    Ipv4Addr::new(192, 168, 7, 7),
    Ipv4Addr::new(172, 16, 3, 3),
    Ipv4Addr::new(8, 8, 8, 8),
    Ipv4Addr::new(10, 65, 1, 5),
    Ipv4Addr::new(10, 65, 2, 20),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProtoKind {
    Ports,
    Icmp,
    Other,
}

struct Gen {
    rng: Rng,
    wep_addrs: Vec<Ipv4Addr>,
    hep_addrs: Vec<Ipv4Addr>,
    tiers: Vec<&'static str>,
    used_names: Vec<String>,
}

impl Gen {
    fn labels(&mut self, keys: &[(&str, &[&str])], percent: u64) -> Y {
        let mut v = Vec::new();
        for (k, values) in keys {
            if self.rng.chance(percent) {
                v.push((k.to_string(), s(self.rng.pick_copied(values))));
            }
        }
        Y::M(v)
    }

    /// A space, or none, around operators: the parser must not care.
    fn sp(&mut self) -> &'static str {
        self.rng.pick_copied(&[" ", " ", ""])
    }

    fn quoted(&mut self, v: &str) -> String {
        if self.rng.chance(50) {
            format!("'{v}'")
        } else {
            format!("\"{v}\"")
        }
    }

    fn label_atom(&mut self, keys: &[(&str, &[&str])]) -> String {
        let (k, values) = self.rng.pick_copied(keys);
        let v = self.rng.pick_copied(values);
        let w = self.rng.pick_copied(values);
        let sp = self.sp();
        match self.rng.below(9) {
            0 => format!("has({k})"),
            1 => format!("!has({k})"),
            2 => format!("{k}{sp}=={sp}{}", self.quoted(v)),
            3 => format!("{k}{sp}!={sp}{}", self.quoted(v)),
            4 => format!("{k} in {{{}, {}}}", self.quoted(v), self.quoted(w)),
            5 => format!("{k} not in {{{}}}", self.quoted(v)),
            6 => format!("{k} starts with {}", self.quoted(&v[..1])),
            7 => format!("{k} ends with {}", self.quoted(&v[v.len() - 1..])),
            _ => format!("{k} contains {}", self.quoted(&v[1..2])),
        }
    }

    /// A selector on endpoints' and network sets' labels, in Calico's whole grammar.
    fn selector(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(45) {
            return match self.rng.below(13) {
                0 => "all()".into(),
                1 => {
                    let ns = self.rng.pick_copied(&NAMESPACES);
                    format!("projectcalico.org/namespace == {}", self.quoted(ns))
                }
                _ => self.label_atom(&LABELS),
            };
        }
        let a = self.selector(depth - 1);
        let b = self.selector(depth - 1);
        let sp = self.sp();
        match self.rng.below(4) {
            0 => format!("{a}{sp}&&{sp}{b}"),
            1 => format!("{a}{sp}||{sp}{b}"),
            2 => format!("!({a})"),
            _ => format!("({a}) && ({b} || {})", self.label_atom(&LABELS)),
        }
    }

    /// A selector on namespaces' labels; `global()` (not in a namespace) only in rules.
    fn namespace_selector(&mut self, in_rule: bool) -> String {
        match self.rng.below(8) {
            0 => "all()".into(),
            1 if in_rule => "global()".into(),
            1 => "!has(team)".into(),
            2 => {
                let ns = self.rng.pick_copied(&NAMESPACES);
                format!("projectcalico.org/name == {}", self.quoted(ns))
            }
            3 => {
                let a = self.label_atom(&NS_LABELS);
                let b = self.label_atom(&NS_LABELS);
                format!("{a} || {b}")
            }
            _ => self.label_atom(&NS_LABELS),
        }
    }

    fn net(&mut self, v6: bool) -> String {
        if v6 {
            return self.rng.pick_copied(&NETS_V6).to_string();
        }
        if self.rng.chance(15) {
            let all: Vec<Ipv4Addr> = self
                .wep_addrs
                .iter()
                .chain(&self.hep_addrs)
                .copied()
                .collect();
            return format!("{}/32", self.rng.pick_copied(&all));
        }
        self.rng.pick_copied(&NETS_V4).to_string()
    }

    fn port_list(&mut self, numeric: bool, named: bool) -> Y {
        let n = 1 + self.rng.below(3);
        let mut v = Vec::new();
        for _ in 0..n {
            let choice = if numeric && named {
                self.rng.below(3)
            } else if numeric {
                self.rng.below(2)
            } else {
                2
            };
            v.push(match choice {
                0 => s(self.rng.pick_copied(&PORTS)),
                1 => q(self.rng.pick_copied(&RANGES)),
                _ => s(self.rng.pick_copied(&PORT_NAMES)),
            });
        }
        Y::L(v)
    }

    /// One side of a Calico rule.
    fn entity(&mut self, kind: Option<ProtoKind>, v6: bool) -> Y {
        let numeric = kind == Some(ProtoKind::Ports);
        let named = numeric || kind.is_none();
        let mut e = Vec::new();
        if self.rng.chance(25) {
            let nets = (0..1 + self.rng.below(2))
                .map(|_| s(self.net(v6)))
                .collect();
            e.push(("nets", Y::L(nets)));
        }
        if self.rng.chance(12) {
            let mut net = self.net(v6);
            while net == "0.0.0.0/0" || net == "::/0" {
                net = self.net(v6);
            }
            e.push(("notNets", Y::L(vec![s(net)])));
        }
        if self.rng.chance(30) {
            let sel = self.selector(2);
            e.push(("selector", q(&sel)));
        }
        if self.rng.chance(15) {
            let sel = self.selector(1);
            e.push(("notSelector", q(&sel)));
        }
        if self.rng.chance(10) {
            let sel = self.namespace_selector(true);
            e.push(("namespaceSelector", q(&sel)));
        }
        if self.rng.chance(5) {
            let sa = self.rng.pick_copied(&SERVICE_ACCOUNTS);
            e.push(("serviceAccounts", m(vec![("names", Y::L(vec![s(sa)]))])));
        }
        if (numeric && self.rng.chance(40)) || (named && !numeric && self.rng.chance(20)) {
            e.push(("ports", self.port_list(numeric, named)));
        }
        if (numeric && self.rng.chance(15)) || (named && !numeric && self.rng.chance(10)) {
            e.push(("notPorts", self.port_list(numeric, named)));
        }
        m(e)
    }

    fn icmp_fields(&mut self) -> Y {
        let mut f = vec![("type", s(self.rng.pick_copied(&[0u8, 3, 8, 11])))];
        if self.rng.chance(50) {
            f.push(("code", s(self.rng.pick_copied(&[0u8, 1, 3]))));
        }
        m(f)
    }

    /// A Calico rule over every match kind.
    fn rule(&mut self) -> Y {
        let action = self
            .rng
            .weighted(&[("Allow", 4), ("Deny", 3), ("Pass", 2), ("Log", 2)]);
        let mut r = vec![("action", s(action))];
        let v6 = self.rng.chance(6);
        let mut kind = None;
        if self.rng.chance(65) {
            let (written, k) = self.rng.pick_copied(&[
                ("TCP", ProtoKind::Ports),
                ("UDP", ProtoKind::Ports),
                ("SCTP", ProtoKind::Ports),
                ("6", ProtoKind::Ports),
                ("17", ProtoKind::Ports),
                ("\"132\"", ProtoKind::Ports),
                ("ICMP", ProtoKind::Icmp),
                ("1", ProtoKind::Icmp),
                ("47", ProtoKind::Other),
                ("UDPLite", ProtoKind::Other),
            ]);
            let (written, k) = if v6 && k == ProtoKind::Icmp {
                ("ICMPv6", ProtoKind::Other)
            } else {
                (written, k)
            };
            r.push(("protocol", s(written)));
            kind = Some(k);
        }
        if self.rng.chance(12) {
            let choices: &[&str] = if v6 {
                &["TCP", "UDP", "17", "47"]
            } else {
                &["TCP", "UDP", "ICMP", "17", "47"]
            };
            r.push(("notProtocol", s(self.rng.pick_copied(choices))));
        }
        if v6 && self.rng.chance(50) {
            r.push(("ipVersion", s(6)));
        } else if !v6 && self.rng.chance(8) {
            r.push(("ipVersion", s(4)));
        }
        if kind == Some(ProtoKind::Icmp) {
            if self.rng.chance(40) {
                r.push(("icmp", self.icmp_fields()));
            }
            if self.rng.chance(25) {
                r.push(("notICMP", self.icmp_fields()));
            }
        }
        r.push(("source", self.entity(kind, v6)));
        r.push(("destination", self.entity(kind, v6)));
        m(r)
    }

    fn rules(&mut self, max: usize) -> Y {
        Y::L((0..self.rng.below(max + 1)).map(|_| self.rule()).collect())
    }

    fn types(&mut self) -> Option<Y> {
        match self.rng.below(5) {
            0 => Some(Y::L(vec![s("Ingress")])),
            1 => Some(Y::L(vec![s("Egress")])),
            2 => Some(Y::L(vec![s("Ingress"), s("Egress")])),
            _ => None,
        }
    }

    fn name(&mut self, scope: &str) -> String {
        loop {
            let n = self.rng.pick_copied(&POLICY_NAMES);
            let key = format!("{scope}/{n}");
            if !self.used_names.contains(&key) {
                self.used_names.push(key);
                return n.to_string();
            }
        }
    }

    fn order(&mut self) -> Option<Y> {
        self.rng.pick_copied(&ORDERS).map(s)
    }

    fn tier(&mut self) -> Option<Y> {
        if !self.tiers.is_empty() && self.rng.chance(50) {
            Some(s(self.rng.pick_copied(&self.tiers)))
        } else if self.rng.chance(10) {
            Some(s("default"))
        } else {
            None
        }
    }

    fn calico_policy(&mut self, global: bool) -> String {
        let ns = self.rng.pick_copied(&NAMESPACES);
        let scope = if global {
            "gnp".to_string()
        } else {
            format!("np/{ns}")
        };
        let name = self.name(&scope);
        let mut spec = Vec::new();
        if let Some(t) = self.tier() {
            spec.push(("tier", t));
        }
        if let Some(o) = self.order() {
            spec.push(("order", o));
        }
        if self.rng.chance(70) {
            let sel = self.selector(2);
            spec.push(("selector", q(&sel)));
        }
        if global && self.rng.chance(20) {
            let sel = self.namespace_selector(false);
            spec.push(("namespaceSelector", q(&sel)));
        }
        if self.rng.chance(8) {
            let sa = self.rng.pick_copied(&SERVICE_ACCOUNTS);
            spec.push((
                "serviceAccountSelector",
                q(&format!("projectcalico.org/name == '{sa}'")),
            ));
        }
        // Host-endpoint policy: Calico never applies it to workloads.
        if global && self.rng.chance(8) {
            if self.rng.chance(50) {
                spec.push(("doNotTrack", s("true")));
                spec.push(("applyOnForward", s("true")));
            } else {
                spec.push(("preDNAT", s("true")));
                spec.push(("applyOnForward", s("true")));
                spec.push(("types", Y::L(vec![s("Ingress")])));
                spec.push(("ingress", self.rules(3)));
                return self.policy_doc(global, &name, ns, spec);
            }
        }
        if let Some(t) = self.types() {
            spec.push(("types", t));
        }
        spec.push(("ingress", self.rules(3)));
        spec.push(("egress", self.rules(3)));
        self.policy_doc(global, &name, ns, spec)
    }

    fn policy_doc(&mut self, global: bool, name: &str, ns: &str, spec: Vec<(&str, Y)>) -> String {
        if global {
            document(
                CALICO,
                "GlobalNetworkPolicy",
                m(vec![("name", s(name))]),
                Some(m(spec)),
            )
        } else {
            document(
                CALICO,
                "NetworkPolicy",
                m(vec![("name", s(name)), ("namespace", s(ns))]),
                Some(m(spec)),
            )
        }
    }

    fn k8s_label_selector(&mut self, keys: &[(&str, &[&str])]) -> Y {
        match self.rng.below(4) {
            0 => m(vec![]),
            1 | 2 => m(vec![("matchLabels", self.labels(keys, 50))]),
            _ => {
                let (k, values) = self.rng.pick_copied(keys);
                let op = self
                    .rng
                    .pick_copied(&["In", "NotIn", "Exists", "DoesNotExist"]);
                let mut e = vec![("key", s(k)), ("operator", s(op))];
                if op == "In" || op == "NotIn" {
                    e.push(("values", Y::L(vec![s(self.rng.pick_copied(values))])));
                }
                m(vec![("matchExpressions", Y::L(vec![m(e)]))])
            }
        }
    }

    fn k8s_peer(&mut self) -> Y {
        if self.rng.chance(30) {
            let (cidr, excepts): (&str, &[&str]) = self.rng.pick_copied(&[
                ("10.65.0.0/16", &["10.65.1.0/24", "10.65.2.16/28"][..]),
                ("0.0.0.0/0", &["10.65.0.0/16"][..]),
                ("10.65.1.0/24", &["10.65.1.0/28"][..]),
                ("192.168.0.0/16", &[][..]),
            ]);
            let mut b = vec![("cidr", s(cidr))];
            if !excepts.is_empty() && self.rng.chance(50) {
                b.push(("except", Y::L(vec![s(self.rng.pick_copied(excepts))])));
            }
            return m(vec![("ipBlock", m(b))]);
        }
        let mut p = Vec::new();
        let which = self.rng.below(3);
        if which != 1 {
            p.push(("podSelector", self.k8s_label_selector(&LABELS)));
        }
        if which != 0 {
            p.push(("namespaceSelector", self.k8s_label_selector(&NS_LABELS)));
        }
        m(p)
    }

    fn k8s_port(&mut self) -> Y {
        let mut p = Vec::new();
        if self.rng.chance(60) {
            p.push(("protocol", s(self.rng.pick_copied(&["TCP", "UDP", "SCTP"]))));
        }
        match self.rng.below(5) {
            0 => {}
            1 => p.push(("port", s(self.rng.pick_copied(&PORT_NAMES)))),
            2 => {
                let lo = self.rng.pick_copied(&[50u16, 8000, 1000]);
                p.push(("port", s(lo)));
                p.push(("endPort", s(lo + self.rng.pick_copied(&[0u16, 10, 100]))));
            }
            _ => p.push(("port", s(self.rng.pick_copied(&PORTS)))),
        }
        m(p)
    }

    fn k8s_rules(&mut self, peers_key: &str) -> Y {
        let mut rules = Vec::new();
        for _ in 0..self.rng.below(3) {
            let mut r = Vec::new();
            if self.rng.chance(60) {
                let peers = (0..1 + self.rng.below(2))
                    .map(|_| self.k8s_peer())
                    .collect();
                r.push((peers_key, Y::L(peers)));
            }
            if self.rng.chance(50) {
                let ports = (0..1 + self.rng.below(2))
                    .map(|_| self.k8s_port())
                    .collect();
                r.push(("ports", Y::L(ports)));
            }
            rules.push(m(r));
        }
        Y::L(rules)
    }

    fn k8s_policy(&mut self) -> String {
        let ns = self.rng.pick_copied(&NAMESPACES);
        let name = self.name(&format!("knp/{ns}"));
        let mut spec = vec![("podSelector", self.k8s_label_selector(&LABELS))];
        match self.rng.below(5) {
            0 => spec.push(("policyTypes", Y::L(vec![s("Ingress")]))),
            1 => spec.push(("policyTypes", Y::L(vec![s("Egress")]))),
            2 => spec.push(("policyTypes", Y::L(vec![s("Ingress"), s("Egress")]))),
            _ => {}
        }
        spec.push(("ingress", self.k8s_rules("from")));
        spec.push(("egress", self.k8s_rules("to")));
        document(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            m(vec![("name", s(name)), ("namespace", s(ns))]),
            Some(m(spec)),
        )
    }

    fn named_ports(&mut self, max: usize) -> Option<Y> {
        let n = self.rng.below(max + 1);
        if n == 0 {
            return None;
        }
        let mut names: Vec<&str> = PORT_NAMES.to_vec();
        let mut v = Vec::new();
        for _ in 0..n {
            let name = names.remove(self.rng.below(names.len()));
            v.push(m(vec![
                ("name", s(name)),
                (
                    "protocol",
                    s(self.rng.pick_copied(&["TCP", "TCP", "UDP", "SCTP"])),
                ),
                (
                    "port",
                    s(self.rng.pick_copied(&[80u16, 53, 8080, 9090, 443])),
                ),
            ]));
        }
        Some(Y::L(v))
    }
}

/// One random configuration, as files of YAML.
fn generate(seed: u64) -> Vec<(String, String)> {
    let mut g = Gen {
        rng: Rng(seed),
        wep_addrs: Vec::new(),
        hep_addrs: Vec::new(),
        tiers: Vec::new(),
        used_names: Vec::new(),
    };
    let mut files = Vec::new();
    let mut add = |name: &str, docs: Vec<String>| {
        if !docs.is_empty() {
            files.push((format!("{name}.yaml"), docs.join("---\n")));
        }
    };

    let namespaces = NAMESPACES
        .iter()
        .map(|ns| {
            let labels = g.labels(&NS_LABELS, 60);
            document(
                "v1",
                "Namespace",
                m(vec![("name", s(ns)), ("labels", labels)]),
                None,
            )
        })
        .collect();
    add("00-namespaces", namespaces);

    // Unique addresses for the endpoints.
    let mut pool: Vec<Ipv4Addr> = (0..3u8)
        .flat_map(|c| (1..=30u8).map(move |d| Ipv4Addr::new(10, 65, c, d)))
        .collect();
    let mut take = |g: &mut Gen| pool.remove(g.rng.below(pool.len()));
    let mut wep_addrs: Vec<Vec<Ipv4Addr>> = Vec::new();
    for _ in 0..12 {
        let mut a = vec![take(&mut g)];
        if g.rng.chance(25) {
            a.push(take(&mut g));
        }
        g.wep_addrs.extend(&a);
        wep_addrs.push(a);
    }
    g.hep_addrs = vec![Ipv4Addr::new(10, 65, 3, 4), Ipv4Addr::new(10, 65, 3, 9)];

    // Tiers, the default one sometimes written out.
    let mut tiers = Vec::new();
    for name in ["t1", "t2"] {
        if g.rng.chance(55) {
            g.tiers.push(name);
            let mut spec = Vec::new();
            if let Some(o) = g
                .rng
                .pick(&[None, Some(50), Some(100), Some(100), Some(2_000_000)])
            {
                spec.push(("order", s(o)));
            }
            match g.rng.below(3) {
                0 => spec.push(("defaultAction", s("Pass"))),
                1 => spec.push(("defaultAction", s("Deny"))),
                _ => {}
            }
            tiers.push(document(
                CALICO,
                "Tier",
                m(vec![("name", s(name))]),
                Some(m(spec)),
            ));
        }
    }
    if g.rng.chance(10) {
        tiers.push(document(
            CALICO,
            "Tier",
            m(vec![("name", s("default"))]),
            Some(m(vec![("order", s(1_000_000))])),
        ));
    }
    add("01-tiers", tiers);

    let profiles = ["prof-a", "prof-b"]
        .iter()
        .map(|name| {
            let mut spec = vec![("ingress", g.rules(3)), ("egress", g.rules(3))];
            if g.rng.chance(40) {
                spec.push(("labelsToApply", g.labels(&LABELS, 50)));
            }
            document(CALICO, "Profile", m(vec![("name", s(name))]), Some(m(spec)))
        })
        .collect();
    add("02-profiles", profiles);

    let mut endpoints = Vec::new();
    for (i, addrs) in wep_addrs.iter().enumerate() {
        let ns = g.rng.pick_copied(&NAMESPACES);
        let labels = g.labels(&LABELS, 60);
        let mut spec = vec![
            ("node", s(if g.rng.chance(80) { "n1" } else { "n2" })),
            ("interfaceName", s(format!("cali{i}"))),
            (
                "ipNetworks",
                Y::L(addrs.iter().map(|a| s(format!("{a}/32"))).collect()),
            ),
        ];
        if g.rng.chance(85) {
            spec.push(("orchestrator", s(g.rng.pick_copied(&["k8s", "cni"]))));
        }
        if g.rng.chance(30) {
            spec.push((
                "serviceAccountName",
                s(g.rng.pick_copied(&SERVICE_ACCOUNTS)),
            ));
        }
        let mut profiles = Vec::new();
        for p in [
            format!("kns.{ns}"),
            "prof-a".into(),
            "prof-b".into(),
            "projectcalico-default-allow".into(),
        ] {
            if g.rng.chance(35) {
                profiles.push(p);
            }
        }
        if g.rng.chance(50) {
            profiles.reverse();
        }
        spec.push(("profiles", Y::L(profiles.into_iter().map(s).collect())));
        if let Some(ports) = g.named_ports(2) {
            spec.push(("ports", ports));
        }
        endpoints.push(document(
            CALICO,
            "WorkloadEndpoint",
            m(vec![
                ("name", s(format!("w{i}"))),
                ("namespace", s(ns)),
                ("labels", labels),
            ]),
            Some(m(spec)),
        ));
    }
    for (i, a) in g.hep_addrs.clone().iter().enumerate() {
        let labels = g.labels(&LABELS, 60);
        let mut spec = vec![
            ("node", s("n1")),
            ("interfaceName", s(format!("eth{i}"))),
            ("expectedIPs", Y::L(vec![s(a)])),
        ];
        if g.rng.chance(30) {
            spec.push(("profiles", Y::L(vec![s("prof-a")])));
        }
        if let Some(ports) = g.named_ports(2) {
            spec.push(("ports", ports));
        }
        endpoints.push(document(
            CALICO,
            "HostEndpoint",
            m(vec![("name", s(format!("hep{i}"))), ("labels", labels)]),
            Some(m(spec)),
        ));
    }
    add("03-endpoints", endpoints);

    let mut sets = Vec::new();
    for i in 0..2 {
        let labels = g.labels(&LABELS, 60);
        let nets = (0..1 + g.rng.below(2))
            .map(|_| {
                let v6 = g.rng.chance(5);
                s(g.net(v6))
            })
            .collect();
        sets.push(document(
            CALICO,
            "NetworkSet",
            m(vec![
                ("name", s(format!("set{i}"))),
                ("namespace", s(g.rng.pick_copied(&NAMESPACES))),
                ("labels", labels),
            ]),
            Some(m(vec![("nets", Y::L(nets))])),
        ));
    }
    for i in 0..2 {
        let labels = g.labels(&LABELS, 60);
        let nets = (0..1 + g.rng.below(2)).map(|_| s(g.net(false))).collect();
        sets.push(document(
            CALICO,
            "GlobalNetworkSet",
            m(vec![("name", s(format!("gset{i}"))), ("labels", labels)]),
            Some(m(vec![("nets", Y::L(nets))])),
        ));
    }
    add("04-sets", sets);

    let mut policies = Vec::new();
    for _ in 0..1 + g.rng.below(4) {
        policies.push(g.calico_policy(false));
    }
    for _ in 0..1 + g.rng.below(3) {
        policies.push(g.calico_policy(true));
    }
    for _ in 0..g.rng.below(3) {
        policies.push(g.k8s_policy());
    }
    add("05-policies", policies);
    files
}

// ---- Flows -----------------------------------------------------------------------------------

fn random_packet(rng: &mut Rng, ep_addrs: &[Ipv4Addr], others: &[Ipv4Addr]) -> Packet {
    let peer = match rng.below(20) {
        0..=6 => rng.pick_copied(others),
        7..=8 => rng.pick_copied(ep_addrs),
        9..=12 => Ipv4Addr::new(10, 65, rng.below(4) as u8, rng.below(256) as u8),
        _ => rng.pick_copied(&OUTSIDE),
    };
    let local = rng.pick_copied(ep_addrs);
    let proto = rng.weighted(&[(6u8, 35), (17, 25), (132, 8), (136, 4), (1, 20), (47, 8)]);
    match proto {
        1 => Packet::icmp(
            peer,
            local,
            rng.pick_copied(&[0, 3, 8, 11, 5]),
            rng.pick_copied(&[0, 1, 3]),
        ),
        6 | 17 | 132 | 136 => {
            let sport = if rng.chance(70) {
                rng.pick_copied(&[53, 80, 1000, 40000, 8080, 8050])
            } else {
                rng.next_u64() as u16
            };
            let dport = if rng.chance(85) {
                rng.pick_copied(&[
                    0, 1, 53, 55, 80, 443, 1000, 1024, 1025, 8000, 8050, 8080, 8100, 9090, 65535,
                ])
            } else {
                rng.next_u64() as u16
            };
            Packet::ports(peer, local, proto, sport, dport)
        }
        _ => Packet::ports(peer, local, proto, 0, 0),
    }
}

/// The flow as the compiled classifier takes it (see bpf-src/weft_wep.bpf.c).
fn flow_of(ep: &Endpoint, p: &Packet) -> Flow {
    let local = ep
        .addrs
        .iter()
        .position(|&a| a == u32::from(p.local))
        .unwrap_or(ep.addrs.len());
    Flow {
        peer: u32::from(p.peer),
        local,
        sport: proto_port(p.proto, p.sport),
        dport: proto_port(p.proto, p.dport),
    }
}

fn describe(v: Option<Verdict>, info: &[RuleInfo]) -> String {
    match v {
        None => "no verdict (no entry matched)".into(),
        Some(v) => format!(
            "{}{} by {:#010x} ({})",
            if v.allow { "allow" } else { "deny" },
            if v.log { " with log" } else { "" },
            v.rule_id,
            info.iter()
                .find(|i| i.id == v.rule_id)
                .map(|i| i.describe())
                .unwrap_or_else(|| "a rule the compiler does not know".into())
        ),
    }
}

// ---- The property ----------------------------------------------------------------------------

/// What decided the flows the test saw, so that it can tell it exercised every kind of outcome.
#[derive(Default, Debug)]
struct Outcomes {
    policy_allow: usize,
    policy_deny: usize,
    kubernetes_allow: usize,
    tier_end: usize,
    profile_allow: usize,
    profile_deny: usize,
    default_deny: usize,
    logged: usize,
}

impl Outcomes {
    fn count(&mut self, v: &Verdict, info: &[RuleInfo]) {
        let Some(rule) = info.iter().find(|i| i.id == v.rule_id) else {
            return;
        };
        let n = match (rule.index, rule.origin.as_str(), v.allow) {
            (None, o, _) if o.starts_with("end of tier") => &mut self.tier_end,
            (None, _, _) => &mut self.default_deny,
            (Some(_), o, true) if o.starts_with("Profile") => &mut self.profile_allow,
            (Some(_), o, false) if o.starts_with("Profile") => &mut self.profile_deny,
            (Some(_), o, true) if o.contains("networking.k8s.io") => &mut self.kubernetes_allow,
            (Some(_), _, true) => &mut self.policy_allow,
            (Some(_), _, false) => &mut self.policy_deny,
        };
        *n += 1;
        if v.log {
            self.logged += 1;
        }
    }

    fn all_seen(&self) -> bool {
        [
            self.policy_allow,
            self.policy_deny,
            self.kubernetes_allow,
            self.tier_end,
            self.profile_allow,
            self.profile_deny,
            self.default_deny,
            self.logged,
        ]
        .iter()
        .all(|&n| n > 0)
    }
}

/// Checks one configuration; returns how many (endpoint, direction, flow) triples agreed, or
/// a report of the first disagreement.
fn check(seed: u64, flows_per: usize, outcomes: &mut Outcomes) -> Result<usize, String> {
    let files = generate(seed);
    let show = || {
        files
            .iter()
            .map(|(n, t)| format!("# ---- {n}\n{t}"))
            .collect::<String>()
    };
    let cfg: Config = weft_model::load_texts(files.clone()).map_err(|d| {
        format!(
            "seed {seed}: the generated configuration is invalid:\n{d}\n{}",
            show()
        )
    })?;
    let reference = Reference::new(&cfg);
    let index = PolicyIndex::new(&cfg, desired::entities(&cfg));
    let mut rng = Rng(seed ^ 0x5eed_f10e);
    let all_addrs: Vec<Ipv4Addr> = cfg
        .workload_endpoints
        .iter()
        .flat_map(|w| w.value.ip_networks().to_vec())
        .chain(
            cfg.host_endpoints
                .iter()
                .flat_map(|h| h.value.expected_ips().to_vec()),
        )
        .filter_map(|c| match c.addr() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut agreed = 0;
    for w in &cfg.workload_endpoints {
        let addrs: Vec<Ipv4Addr> = w
            .value
            .ip_networks()
            .iter()
            .filter_map(|c| match c.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let ep = Endpoint {
            labels: cfg.endpoint_labels(&w.value),
            addrs: addrs.iter().map(|&a| u32::from(a)).collect(),
            named_ports: w.value.named_ports(),
            profiles: w.value.spec.profiles.clone(),
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            let (spec, info) = index.ruleset(&ep, dir);
            let compiled =
                classify::compile(&spec).map_err(|e| format!("seed {seed}: compiling: {e}"))?;
            // What the kernel holds: the compiled functions encoded as cells.
            let cells = tables::encode(&compiled);
            for _ in 0..flows_per {
                let pkt = random_packet(&mut rng, &addrs, &all_addrs);
                let want = reference.evaluate(&ep, dir, &pkt);
                let flow = flow_of(&ep, &pkt);
                let got = tables::lookup(&cells, u32::from(pkt.local), &flow).ok();
                if got == Some(want) {
                    agreed += 1;
                    outcomes.count(&want, &info);
                    continue;
                }
                let ordered = spec.evaluate(&flow);
                let stage = if ordered == want {
                    "the ordered rules (resolve) agree with the reference: the classifier (classify, or its cells: tables) is at fault"
                } else {
                    "the ordered rules (resolve) already disagree with the reference"
                };
                let (_, steps) = reference.explain(&ep, dir, &pkt);
                return Err(format!(
                    "seed {seed}: WorkloadEndpoint {} {dir}, {pkt:?}\n  reference: {}\n  compiled:  {}\n  ordered rules: {}\n  {stage}\n  the reference's reasoning:\n    {}\n  the endpoint's rules: {}\n\n{}",
                    w.value.display_name(),
                    describe(Some(want), &info),
                    describe(got, &info),
                    describe(Some(ordered), &info),
                    steps.join("\n    "),
                    info.iter().map(|i| format!("\n    {:#010x} {} {}", i.id, i.describe(), i.action)).collect::<String>(),
                    show()
                ));
            }
        }
    }
    Ok(agreed)
}

#[test]
fn compiled_policy_agrees_with_the_reference_on_random_configurations() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("WEFT_PROPTEST_SEED") {
        Some(s) => vec![s],
        None => {
            let base = 0x7765_6674_0000_0000u64;
            (0..env("WEFT_PROPTEST_CASES").unwrap_or(200))
                .map(|i| base + i)
                .collect()
        }
    };
    let mut checked = 0;
    let mut outcomes = Outcomes::default();
    let several = seeds.len() > 1;
    for seed in seeds {
        match check(seed, 24, &mut outcomes) {
            Ok(n) => checked += n,
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("{checked} (endpoint, direction, flow) verdicts agreed; decided by: {outcomes:?}");
    assert!(
        !several || outcomes.all_seen(),
        "the random configurations never produced some kind of outcome: {outcomes:?}"
    );
}
