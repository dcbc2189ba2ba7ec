//! Policy semantics through the real programs: a configuration in YAML, compiled by
//! `weft::desired::desired` as `weft apply` compiles it, its map entries written into a private
//! copy of weft's maps, then hand-built packets through `weft_from_wep` (the workload's egress
//! policy) and `weft_to_wep` (its ingress policy) with BPF_PROG_TEST_RUN. Each check asserts the
//! verdict and that the deciding rule's hit counter, and no other rule's, went up by one.
//!
//! The workload under test is demo/wl (WL, labels app=web, named port http = TCP 8080) on
//! interface caliwl, which the synthetic host facts give ifindex 1 (`lo`: a test run needs a
//! device that exists). The other endpoints are on another node: they are there to be selected.
//! Tests skip only where root or bpffs is missing, and fail there under WEFT_REQUIRE_KERNEL=1.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use weft::desired::{self, Desired};
use weft::facts::HostFacts;
use weft::policy::resolve::Direction;
use weft_golden::harness::{Flow4, Harness, DROP, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_SYN};

const WL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
/// demo/client: app=client, named port metrics = TCP 9100.
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 5);
/// other/db (namespace labels team=blue): app=db, named port metrics = TCP 9200.
const DB: Ipv4Addr = Ipv4Addr::new(10, 65, 2, 7);
/// No endpoint's.
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

const IN: Direction = Direction::Ingress;
const OUT: Direction = Direction::Egress;

/// Namespaces, the workload under test (with `profiles`) and the endpoints policies select.
fn base(profiles: &[&str]) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: demo, labels: {{team: red}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: other, labels: {{team: blue}}}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: wl, namespace: demo, labels: {{app: web}}}}
spec:
  node: n1
  interfaceName: caliwl
  ipNetworks: [{WL}/32]
  profiles: [{}]
  ports: [{{name: http, protocol: TCP, port: 8080}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: client, namespace: demo, labels: {{app: client}}}}
spec:
  node: n2
  interfaceName: calic
  ipNetworks: [{CLIENT}/32]
  profiles: [kns.demo]
  ports: [{{name: metrics, protocol: TCP, port: 9100}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: db, namespace: other, labels: {{app: db}}}}
spec:
  node: n2
  interfaceName: calid
  ipNetworks: [{DB}/32]
  profiles: [kns.other]
  ports: [{{name: metrics, protocol: TCP, port: 9200}}]
"#,
        profiles.join(", ")
    )
}

/// The compiled configuration, installed into a loaded object.
struct Policy {
    h: Harness,
    d: Desired,
    /// Source ports (and ICMP identifiers) are never reused: every check is a new flow.
    next: Cell<u16>,
}

fn setup(test: &str, profiles: &[&str], policy: &str) -> Option<Policy> {
    let cfg = weft_model::load_texts([
        ("base.yaml".to_string(), base(profiles)),
        ("policy.yaml".to_string(), policy.to_string()),
    ])
    .unwrap_or_else(|d| panic!("{test}: the configuration is invalid:\n{d}"));
    let facts = HostFacts::fixture("n1", &[("caliwl", IFINDEX)]);
    let d = desired::desired(&cfg, &facts).unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_eq!(d.endpoints.len(), 1, "{test}: only demo/wl is on this node");
    let h = Harness::load(test)?;
    h.install(&d.state);
    Some(Policy {
        h,
        d,
        next: Cell::new(40000),
    })
}

impl Policy {
    fn port(&self) -> u16 {
        let p = self.next.get();
        self.next.set(p + 1);
        p
    }

    /// A TCP SYN from `src` to `dst:dport`, from a fresh source port.
    fn tcp(&self, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        packet::tcp(src, self.port(), dst, dport, TCP_SYN)
    }

    fn udp(&self, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        packet::udp(src, sport, dst, dport)
    }

    fn echo(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        packet::icmp_echo(src, dst, 8, self.port())
    }

    /// An ICMP error from `src` about a flow conntrack does not know (so policy judges it).
    fn icmp_error(&self, src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, code: u8) -> Vec<u8> {
        let quoted = packet::ipv4_raw(
            dst,
            src,
            17,
            &[],
            &packet::udp_hdr(self.port(), 53, b"weft"),
        );
        packet::icmp_error(src, dst, icmp_type, code, &quoted)
    }

    /// Every rule of demo/wl in `dir` (by what `weft dump policy` calls it) with its hits.
    fn hits(&self, dir: Direction) -> Vec<(String, u64)> {
        let mut seen = BTreeSet::new();
        self.d.rules[&("demo/wl".to_string(), dir)]
            .iter()
            .filter(|r| seen.insert(r.id))
            .map(|r| (r.describe(), self.h.rule_hits(r.id)))
            .collect()
    }

    /// Runs `packet`, a new flow of demo/wl in `dir`, and checks the verdict and that `rule`
    /// decided it: its counter, and no other, went up by one.
    #[track_caller]
    fn expect(&self, dir: Direction, packet: &[u8], verdict: i32, rule: &str) {
        let before = self.hits(dir);
        assert!(
            before.iter().any(|(r, _)| r == rule),
            "demo/wl has no {dir} rule {rule:?}; it has {before:#?}"
        );
        let prog = match dir {
            Direction::Ingress => "weft_to_wep",
            Direction::Egress => "weft_from_wep",
        };
        let got = self.h.run(prog, packet).retval;
        let after = self.hits(dir);
        let changed: Vec<(&str, u64)> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, a)| (a.0.as_str(), a.1 - b.1))
            .collect();
        let what = if verdict == PASS { "pass" } else { "drop" };
        assert_eq!(
            got, verdict,
            "{dir}: expected {what} by {rule:?}; rules that counted: {changed:?}"
        );
        assert_eq!(
            changed,
            [(rule, 1)],
            "{dir}: the packet should have been decided by {rule:?}"
        );
    }

    fn ruleset(&self, dir: Direction) -> u32 {
        match dir {
            Direction::Ingress => self.d.endpoints[0].ruleset_ingress,
            Direction::Egress => self.d.endpoints[0].ruleset_egress,
        }
    }
}

const TIER_END: &str = "end of tier default ingress";
const TIER_END_OUT: &str = "end of tier default egress";

/// A Calico NetworkPolicy for demo/wl with these ingress rules.
fn ingress(rules: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: demo}}\nspec:\n  selector: app == 'web'\n  ingress:\n{rules}"
    )
}

/// A GlobalNetworkPolicy for demo/wl with these egress rules.
fn global_egress(rules: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: out}}\nspec:\n  selector: app == 'web'\n  types: [Egress]\n  egress:\n{rules}"
    )
}

const RULE0: &str = "NetworkPolicy demo/web ingress rule 0";
const RULE1: &str = "NetworkPolicy demo/web ingress rule 1";

// ---- Protocols -------------------------------------------------------------------------------

#[test]
fn protocol_by_name_and_by_number() {
    let Some(p) = setup(
        "protocol",
        &[],
        &ingress("    - {action: Allow, protocol: TCP}\n    - {action: Allow, protocol: 17}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(IN, &p.udp(CLIENT, 5000, WL, 53), PASS, RULE1);
    p.expect(IN, &p.echo(CLIENT, WL), DROP, TIER_END);
}

#[test]
fn not_protocol() {
    let Some(p) = setup(
        "not_protocol",
        &[],
        &ingress("    - {action: Allow, notProtocol: TCP}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.udp(CLIENT, 5000, WL, 53), PASS, RULE0);
    p.expect(IN, &p.echo(CLIENT, WL), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
}

// ---- Addresses -------------------------------------------------------------------------------

#[test]
fn nets() {
    let Some(p) = setup(
        "nets",
        &[],
        &ingress("    - action: Allow\n      source: {nets: [10.65.1.0/24, 198.51.100.0/24]}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(
        IN,
        &p.tcp(Ipv4Addr::new(198, 51, 100, 1), WL, 80),
        PASS,
        RULE0,
    );
    p.expect(IN, &p.tcp(DB, WL, 80), DROP, TIER_END);
}

#[test]
fn not_nets() {
    let Some(p) = setup(
        "not_nets",
        &[],
        &ingress("    - action: Allow\n      source: {notNets: [10.65.1.0/24]}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(DB, WL, 80), PASS, RULE0);
    p.expect(IN, &p.tcp(STRANGER, WL, 80), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
}

#[test]
fn selector_within_the_policys_namespace() {
    let Some(p) = setup(
        "selector",
        &[],
        &ingress(
            "    - action: Allow\n      source: {selector: app == 'client'}\n    - action: Allow\n      source: {selector: app == 'db'}\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    // A namespaced policy's selector picks endpoints of its own namespace only.
    p.expect(IN, &p.tcp(DB, WL, 80), DROP, TIER_END);
    p.expect(IN, &p.tcp(STRANGER, WL, 80), DROP, TIER_END);
}

#[test]
fn not_selector() {
    let Some(p) = setup(
        "not_selector",
        &[],
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: in}\nspec:\n  selector: app == 'web'\n  ingress:\n    - action: Allow\n      source: {notSelector: app == 'client'}\n",
    ) else {
        return;
    };
    let rule = "GlobalNetworkPolicy in ingress rule 0";
    p.expect(IN, &p.tcp(DB, WL, 80), PASS, rule);
    p.expect(IN, &p.tcp(STRANGER, WL, 80), PASS, rule);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
}

#[test]
fn namespace_selector() {
    let Some(p) = setup(
        "namespace_selector",
        &[],
        &ingress("    - action: Allow\n      source: {namespaceSelector: team == 'blue'}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(DB, WL, 80), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
    p.expect(IN, &p.tcp(STRANGER, WL, 80), DROP, TIER_END);
}

#[test]
fn network_sets_by_selector() {
    let sets = "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: partners, namespace: demo, labels: {kind: partner}}\nspec: {nets: [198.51.100.0/24]}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: internet, labels: {kind: world}}\nspec: {nets: [0.0.0.0/0]}\n---\n";
    let policy = global_egress(
        "    - action: Allow\n      protocol: TCP\n      destination: {selector: kind == 'partner'}\n    - action: Deny\n      destination: {selector: kind == 'world'}\n",
    );
    let Some(p) = setup("network_sets", &["kns.demo"], &format!("{sets}{policy}")) else {
        return;
    };
    p.expect(
        OUT,
        &p.tcp(WL, Ipv4Addr::new(198, 51, 100, 7), 443),
        PASS,
        "GlobalNetworkPolicy out egress rule 0",
    );
    // UDP to a partner is not allowed by rule 0; the partner is in the world set too.
    p.expect(
        OUT,
        &p.udp(WL, 5000, Ipv4Addr::new(198, 51, 100, 7), 53),
        DROP,
        "GlobalNetworkPolicy out egress rule 1",
    );
    p.expect(
        OUT,
        &p.tcp(WL, STRANGER, 443),
        DROP,
        "GlobalNetworkPolicy out egress rule 1",
    );
}

// ---- Ports -----------------------------------------------------------------------------------

#[test]
fn ports() {
    let Some(p) = setup(
        "ports",
        &[],
        &ingress(
            "    - action: Allow\n      protocol: TCP\n      destination: {ports: [80, 443]}\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 443), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 81), DROP, TIER_END);
    p.expect(IN, &p.udp(CLIENT, 5000, WL, 80), DROP, TIER_END);
}

#[test]
fn port_ranges() {
    let Some(p) = setup(
        "port_ranges",
        &[],
        &ingress(
            "    - action: Allow\n      protocol: TCP\n      destination: {ports: ['8000:8100']}\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 8000), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 8100), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 7999), DROP, TIER_END);
    p.expect(IN, &p.tcp(CLIENT, WL, 8101), DROP, TIER_END);
}

#[test]
fn not_ports() {
    let Some(p) = setup(
        "not_ports",
        &[],
        &ingress(
            "    - action: Allow\n      protocol: TCP\n      destination: {notPorts: [22, '6000:6100']}\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 22), DROP, TIER_END);
    p.expect(IN, &p.tcp(CLIENT, WL, 6050), DROP, TIER_END);
}

#[test]
fn source_ports() {
    // The originator's port: the classifier's context stage.
    let Some(p) = setup(
        "source_ports",
        &[],
        &ingress("    - action: Allow\n      protocol: UDP\n      source: {ports: [53]}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.udp(CLIENT, 53, WL, 5353), PASS, RULE0);
    p.expect(IN, &p.udp(CLIENT, 54, WL, 5353), DROP, TIER_END);
}

#[test]
fn named_ports_on_the_endpoints_side() {
    let Some(p) = setup(
        "named_ports_local",
        &[],
        &ingress("    - action: Allow\n      protocol: TCP\n      destination: {ports: [http]}\n"),
    ) else {
        return;
    };
    // demo/wl declares http as TCP 8080.
    p.expect(IN, &p.tcp(CLIENT, WL, 8080), PASS, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
}

#[test]
fn named_ports_on_the_peers_side() {
    let Some(p) = setup(
        "named_ports_peer",
        &[],
        &global_egress(
            "    - action: Allow\n      protocol: TCP\n      destination: {ports: [metrics]}\n",
        ),
    ) else {
        return;
    };
    // Each peer's own value of "metrics": client 9100, db 9200.
    let rule = "GlobalNetworkPolicy out egress rule 0";
    p.expect(OUT, &p.tcp(WL, CLIENT, 9100), PASS, rule);
    p.expect(OUT, &p.tcp(WL, DB, 9200), PASS, rule);
    p.expect(OUT, &p.tcp(WL, CLIENT, 9200), DROP, TIER_END_OUT);
    p.expect(OUT, &p.tcp(WL, DB, 9100), DROP, TIER_END_OUT);
    p.expect(OUT, &p.tcp(WL, STRANGER, 9100), DROP, TIER_END_OUT);
}

// ---- ICMP ------------------------------------------------------------------------------------

#[test]
fn icmp_type_and_code() {
    let Some(p) = setup(
        "icmp",
        &[],
        &ingress(
            "    - action: Allow\n      protocol: ICMP\n      icmp: {type: 8}\n    - action: Allow\n      protocol: ICMP\n      icmp: {type: 3, code: 4}\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.echo(CLIENT, WL), PASS, RULE0);
    // Fragmentation needed (3/4) about a flow conntrack does not know: policy decides.
    p.expect(IN, &p.icmp_error(CLIENT, WL, 3, 4), PASS, RULE1);
    p.expect(IN, &p.icmp_error(CLIENT, WL, 3, 3), DROP, TIER_END);
}

#[test]
fn not_icmp() {
    let Some(p) = setup(
        "not_icmp",
        &[],
        &ingress("    - action: Allow\n      protocol: ICMP\n      notICMP: {type: 8}\n"),
    ) else {
        return;
    };
    p.expect(IN, &p.icmp_error(CLIENT, WL, 3, 3), PASS, RULE0);
    p.expect(IN, &p.echo(CLIENT, WL), DROP, TIER_END);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), DROP, TIER_END);
}

// ---- Actions, tiers and profiles -------------------------------------------------------------

#[test]
fn allow_and_deny_in_rule_order() {
    let Some(p) = setup(
        "allow_deny",
        &[],
        &ingress(
            "    - action: Deny\n      protocol: TCP\n      destination: {ports: [22]}\n    - action: Allow\n      protocol: TCP\n",
        ),
    ) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 22), DROP, RULE0);
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE1);
}

#[test]
fn both_directions() {
    let policy = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: demo}\nspec:\n  selector: app == 'web'\n  ingress:\n    - {action: Allow, protocol: TCP, source: {selector: app == 'client'}}\n  egress:\n    - {action: Allow, protocol: UDP, destination: {ports: [53]}}\n";
    let Some(p) = setup("both_directions", &[], policy) else {
        return;
    };
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(
        OUT,
        &p.udp(WL, 5000, STRANGER, 53),
        PASS,
        "NetworkPolicy demo/web egress rule 0",
    );
    p.expect(OUT, &p.tcp(WL, CLIENT, 80), DROP, TIER_END_OUT);
}

#[test]
fn pass_goes_on_to_the_next_tier() {
    let policy = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: gate}
spec:
  tier: security
  selector: app == 'web'
  ingress:
    - {action: Pass, source: {selector: app == 'client'}}
    - {action: Deny, protocol: TCP}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: demo}
spec:
  selector: app == 'web'
  ingress:
    - {action: Allow, protocol: TCP}
"#;
    let Some(p) = setup("pass", &[], policy) else {
        return;
    };
    // Passed by the security tier, allowed by the default tier.
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE0);
    p.expect(
        IN,
        &p.tcp(DB, WL, 80),
        DROP,
        "GlobalNetworkPolicy gate ingress rule 1",
    );
    // Neither rule of the security tier matches UDP: the tier ends in deny.
    p.expect(
        IN,
        &p.udp(DB, 5000, WL, 53),
        DROP,
        "end of tier security ingress",
    );
}

#[test]
fn a_tier_with_default_action_pass_hands_on_what_it_did_not_decide() {
    let policy = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: observe}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: block-db}
spec:
  tier: observe
  selector: app == 'web'
  ingress:
    - {action: Deny, source: {nets: [10.65.2.0/24]}}
"#;
    let Some(p) = setup("default_action_pass", &["kns.demo"], policy) else {
        return;
    };
    p.expect(
        IN,
        &p.tcp(DB, WL, 80),
        DROP,
        "GlobalNetworkPolicy block-db ingress rule 0",
    );
    // Nothing in the default tier selects demo/wl: on to its profile.
    p.expect(
        IN,
        &p.tcp(CLIENT, WL, 80),
        PASS,
        "Profile kns.demo ingress rule 0",
    );
}

#[test]
fn log_then_allow() {
    let Some(p) = setup(
        "log",
        &[],
        &ingress("    - {action: Log, protocol: TCP}\n    - {action: Allow, protocol: TCP}\n"),
    ) else {
        return;
    };
    // Log decides nothing: the Allow after it is counted, and the verdict carries the log.
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, RULE1);
    let flow = |proto, dport| Flow4 {
        peer: CLIENT,
        local: WL,
        proto,
        sport: 40000,
        dport,
    };
    let v = p.h.verdict(p.ruleset(IN), &flow(6, 80)).expect("a verdict");
    assert!(v.log, "the verdict carries the Log rule's mark");
    let udp =
        p.h.verdict(p.ruleset(IN), &flow(17, 53))
            .expect("a verdict");
    assert!(!udp.log, "the Log rule is TCP's");
    p.expect(IN, &p.udp(CLIENT, 5000, WL, 53), DROP, TIER_END);
}

#[test]
fn profiles_decide_when_no_policy_selects() {
    let profile = r#"apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: restrict}
spec:
  ingress:
    - {action: Deny, protocol: TCP, destination: {ports: [22]}}
    - {action: Pass, protocol: UDP}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: egress-only, namespace: demo}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
    - {action: Allow, protocol: UDP}
"#;
    let Some(p) = setup("profiles", &["restrict", "kns.demo"], profile) else {
        return;
    };
    // The policy selects demo/wl for egress only: ingress goes to the profiles, in order.
    p.expect(
        IN,
        &p.tcp(CLIENT, WL, 22),
        DROP,
        "Profile restrict ingress rule 0",
    );
    p.expect(
        IN,
        &p.tcp(CLIENT, WL, 80),
        PASS,
        "Profile kns.demo ingress rule 0",
    );
    // No tier follows a profile: a Pass there denies (as in Calico's eBPF dataplane), though
    // the next profile would allow.
    p.expect(
        IN,
        &p.udp(CLIENT, 5000, WL, 53),
        DROP,
        "Profile restrict ingress rule 1",
    );
    // Egress is selected: the tier's end, not the profile, decides TCP.
    p.expect(OUT, &p.tcp(WL, CLIENT, 80), DROP, TIER_END_OUT);
}

#[test]
fn without_policy_or_profile_everything_is_denied() {
    let Some(p) = setup("default_deny", &[], "") else {
        return;
    };
    p.expect(
        IN,
        &p.tcp(CLIENT, WL, 80),
        DROP,
        "default deny (no policy or profile allowed it) ingress",
    );
    p.expect(
        OUT,
        &p.tcp(WL, CLIENT, 80),
        DROP,
        "default deny (no policy or profile allowed it) egress",
    );
}

#[test]
fn a_kubernetes_network_policy_with_the_api_servers_defaulting() {
    let policy = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: demo}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 80}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: late, namespace: demo}
spec:
  order: 1001
  selector: app == 'web'
  ingress:
    - {action: Deny, protocol: TCP}
"#;
    let Some(p) = setup("kubernetes", &["kns.demo"], policy) else {
        return;
    };
    let k8s = "NetworkPolicy (networking.k8s.io) demo/web ingress rule 0";
    // Order 1000 in the default tier: before the Calico policy of order 1001.
    p.expect(IN, &p.tcp(CLIENT, WL, 80), PASS, k8s);
    p.expect(
        IN,
        &p.tcp(CLIENT, WL, 81),
        DROP,
        "NetworkPolicy demo/late ingress rule 0",
    );
    // A port without a protocol is TCP's.
    p.expect(IN, &p.udp(CLIENT, 5000, WL, 80), DROP, TIER_END);
    // podSelector peers are pods of the policy's namespace.
    p.expect(
        IN,
        &p.tcp(DB, WL, 80),
        DROP,
        "NetworkPolicy demo/late ingress rule 0",
    );
    // policyTypes defaults to [Ingress]: egress is the profile's.
    p.expect(
        OUT,
        &p.tcp(WL, CLIENT, 80),
        PASS,
        "Profile kns.demo egress rule 0",
    );
}
