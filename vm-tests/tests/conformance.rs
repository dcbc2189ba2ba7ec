//! Policy conformance: the Kubernetes network-policy e2e model (pods a, b, c in namespaces x, y,
//! z; see `weft_vm_tests::netpol`) run against weft with real TCP, UDP and ICMP.
//!
//! Every scenario writes its policies, applies them with the real weft binary and compares the
//! full 9x9 reachability matrix of each probe it names with the matrix the semantics give. The
//! expected matrices are written from Kubernetes' and Calico's documented semantics, as
//! predicates on (client, server), never read back from what weft does:
//!
//! - Kubernetes: a pod selected by a policy of a type is isolated in that direction and only
//!   what some rule of some selecting policy allows gets through (policies are ORed); the API
//!   server's defaults (policyTypes: Ingress, plus Egress when there are egress rules; protocol
//!   TCP); peers are ORed, the selectors within one peer ANDed; a rule without peers matches
//!   every peer, one without ports every port; an empty rule list allows nothing.
//! - Calico: tiers by order, policies by order then name, rules in order; Allow and Deny end
//!   the evaluation, Pass skips to the next tier, Log goes on; a tier whose policies select the
//!   endpoint but decide nothing denies (unless its defaultAction is Pass); profiles after all
//!   tiers, in order; no allowing profile means deny. Kubernetes policies sit in the default
//!   tier at order 1000.
//! - Replies of an allowed flow always pass, and a pod always reaches itself (that traffic
//!   never leaves its namespace; the e2e suite's AllowLoopback).

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use weft_vm_tests::netpol::*;

macro_rules! cluster {
    ($name:literal) => {
        match Cluster::new($name) {
            Some(c) => c,
            None => return,
        }
    };
}

/// A Kubernetes NetworkPolicy; `spec` is the YAML under `spec:`, indented by two spaces.
fn knp(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{}",
        spec.trim_start_matches('\n')
    )
}

/// A Calico NetworkPolicy.
fn cnp(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{}",
        spec.trim_start_matches('\n')
    )
}

/// A Calico GlobalNetworkPolicy.
fn gnp(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{}",
        spec.trim_start_matches('\n')
    )
}

/// A Calico Tier.
fn tier(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: {name}\nspec:\n{}",
        spec.trim_start_matches('\n')
    )
}

fn docs(d: &[String]) -> String {
    d.join("---\n")
}

const TCP80: Probe = Probe::Tcp(80);
const TCP81: Probe = Probe::Tcp(81);
const UDP80: Probe = Probe::Udp(80);
const UDP81: Probe = Probe::Udp(81);
const PING_CODE_1: Probe = Probe::Icmp {
    icmp_type: 8,
    code: 1,
};
const TIMESTAMP: Probe = Probe::Icmp {
    icmp_type: 13,
    code: 0,
};

// ---------------------------------------------------------------------------------------------
// Without policy
// ---------------------------------------------------------------------------------------------

/// No policy selects anything: the namespace profiles (allow all) decide, on every protocol.
#[test]
fn baseline_profiles_allow_everything() {
    let c = cluster!("baseline_profiles_allow_everything");
    c.apply();
    let all = Reachability::all();
    c.check(&[
        (TCP80, &all),
        (TCP81, &all),
        (UDP80, &all),
        (UDP81, &all),
        (PING, &all),
        (TIMESTAMP, &all),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy: the e2e classics
// ---------------------------------------------------------------------------------------------

/// An empty podSelector selects every pod of x; an empty ingress list allows nothing.
#[test]
fn k8s_default_deny_ingress() {
    let c = cluster!("k8s_default_deny_ingress");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "default-deny-ingress",
            "
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
",
        ),
    );
    c.apply();
    let m = Reachability::new(|_, t| t.ns != "x");
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

#[test]
fn k8s_default_deny_egress() {
    let c = cluster!("k8s_default_deny_egress");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "default-deny-egress",
            "
  podSelector: {}
  policyTypes: [Egress]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, _| f.ns != "x");
    c.check(&[(TCP81, &m), (UDP80, &m), (PING, &m)]);
}

#[test]
fn k8s_default_deny_all() {
    let c = cluster!("k8s_default_deny_all");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "default-deny-all",
            "
  podSelector: {}
  policyTypes: [Ingress, Egress]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| f.ns != "x" && t.ns != "x");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// Policies are ORed: a restrictive policy plus one whose only rule is empty (`{}`: every peer,
/// every port) allows everything.
#[test]
fn k8s_allow_all_policy_takes_precedence_over_a_narrower_one() {
    let c = cluster!("k8s_allow_all_policy_takes_precedence_over_a_narrower_one");
    c.write(
        "np-81.yaml",
        &knp(
            "x",
            "allow-81",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - ports: [{port: 81}]
",
        ),
    );
    c.apply();
    let not_xa = Reachability::new(|_, t| !t.is("x/a"));
    let all = Reachability::all();
    c.check(&[
        (TCP80, &not_xa),
        (TCP81, &all),
        (UDP81, &not_xa),
        (PING, &not_xa),
    ]);
    c.write(
        "np-all.yaml",
        &knp(
            "x",
            "allow-all",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - {}
",
        ),
    );
    c.apply();
    c.check(&[(TCP80, &all), (TCP81, &all), (UDP81, &all), (PING, &all)]);
}

#[test]
fn k8s_pod_selector_in_the_same_namespace() {
    let c = cluster!("k8s_pod_selector_in_the_same_namespace");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "allow-client-b",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - podSelector: {matchLabels: {pod: b}}
",
        ),
    );
    c.apply();
    // A peer with only a podSelector means pods of the policy's own namespace.
    let m = Reachability::new(|f, t| !t.is("x/a") || f.is("x/b"));
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

#[test]
fn k8s_pod_selector_match_expressions() {
    let mut c = cluster!("k8s_pod_selector_match_expressions");
    c.label_pod("x/c", "tier", "backend");
    c.write(
        "np.yaml",
        &docs(&[
            knp(
                "x",
                "a-from-tiered",
                "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - podSelector:
            matchExpressions: [{key: tier, operator: Exists}]
",
            ),
            knp(
                "x",
                "b-from-untiered",
                "
  podSelector: {matchLabels: {pod: b}}
  ingress:
    - from:
        - podSelector:
            matchExpressions: [{key: tier, operator: DoesNotExist}]
",
            ),
            knp(
                "x",
                "c-from-not-a",
                "
  podSelector: {matchLabels: {pod: c}}
  ingress:
    - from:
        - podSelector:
            matchExpressions: [{key: pod, operator: NotIn, values: [a]}]
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| {
        if t.is("x/a") {
            f.is("x/c")
        } else if t.is("x/b") {
            f.ns == "x" && !f.is("x/c")
        } else if t.is("x/c") {
            f.ns == "x" && f.name != "a"
        } else {
            true
        }
    });
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

#[test]
fn k8s_namespace_selector_match_expressions() {
    let c = cluster!("k8s_namespace_selector_match_expressions");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "from-other-namespaces",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "x");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// Two peers are alternatives.
#[test]
fn k8s_pod_selector_or_namespace_selector() {
    let c = cluster!("k8s_pod_selector_or_namespace_selector");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "ns-or-pod",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
        - podSelector: {matchLabels: {pod: b}}
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "x" || f.is("x/b"));
    c.check(&[(TCP81, &m), (UDP80, &m)]);
}

/// namespaceSelector and podSelector in one peer must both match.
#[test]
fn k8s_pod_selector_and_namespace_selector() {
    let c = cluster!("k8s_pod_selector_and_namespace_selector");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "ns-and-pod",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
          podSelector: {matchLabels: {pod: b}}
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || (f.ns != "x" && f.name == "b"));
    c.check(&[(TCP80, &m), (UDP81, &m)]);
}

#[test]
fn k8s_multiple_pod_and_namespace_selectors() {
    let c = cluster!("k8s_multiple_pod_and_namespace_selectors");
    c.write(
        "np.yaml",
        &docs(&[
            knp(
                "x",
                "a-from-bc-elsewhere",
                "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
          podSelector:
            matchExpressions: [{key: pod, operator: In, values: [b, c]}]
",
            ),
            knp(
                "x",
                "b-from-y-a",
                "
  podSelector: {matchLabels: {pod: b}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {ns: y}}
          podSelector: {matchLabels: {pod: a}}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| {
        if t.is("x/a") {
            f.ns != "x" && f.name != "a"
        } else if t.is("x/b") {
            f.is("y/a")
        } else {
            true
        }
    });
    c.check(&[(TCP80, &m), (PING, &m)]);
}

/// The namespace label the API server puts on every Namespace selects it by name.
#[test]
fn k8s_namespace_selector_by_the_default_name_label() {
    let c = cluster!("k8s_namespace_selector_by_the_default_name_label");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "from-y-by-name",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns == "y");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// A port without a protocol is TCP's.
#[test]
fn k8s_ports() {
    let c = cluster!("k8s_ports");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "y-on-81",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
      ports: [{port: 81}]
",
        ),
    );
    c.apply();
    let y_only = Reachability::new(|f, t| !t.is("x/a") || f.ns == "y");
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[
        (TCP81, &y_only),
        (TCP80, &nobody),
        (UDP81, &nobody),
        (PING, &nobody),
    ]);
}

/// Stacked policies on the same pod add up.
#[test]
fn k8s_stacked_policies_add_up() {
    let c = cluster!("k8s_stacked_policies_add_up");
    let policy = |port: u16| {
        knp(
            "x",
            &format!("y-on-{port}"),
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  ingress:
    - from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]
      ports: [{{port: {port}}}]
"
            ),
        )
    };
    c.write("np-81.yaml", &policy(81));
    c.apply();
    let y_only = Reachability::new(|f, t| !t.is("x/a") || f.ns == "y");
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP81, &y_only), (TCP80, &nobody)]);
    c.write("np-80.yaml", &policy(80));
    c.apply();
    c.check(&[(TCP81, &y_only), (TCP80, &y_only), (UDP80, &nobody)]);
}

#[test]
fn k8s_ingress_named_ports() {
    let c = cluster!("k8s_ingress_named_ports");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "named",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - ports:
        - port: serve-81-tcp
        - port: serve-80-udp
          protocol: UDP
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[
        (TCP81, &all),
        (TCP80, &nobody),
        (UDP80, &all),
        (UDP81, &nobody),
    ]);
}

#[test]
fn k8s_ingress_named_port_from_a_namespace() {
    let c = cluster!("k8s_ingress_named_port_from_a_namespace");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "named-from-y",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
      ports: [{port: serve-80-tcp}]
",
        ),
    );
    c.apply();
    let y_only = Reachability::new(|f, t| !t.is("x/a") || f.ns == "y");
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP80, &y_only), (TCP81, &nobody), (UDP80, &nobody)]);
}

/// An egress named port is the destination's.
#[test]
fn k8s_egress_named_port() {
    let c = cluster!("k8s_egress_named_port");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "out-on-80",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - ports: [{port: serve-80-tcp}]
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let silent = Reachability::new(|f, _| !f.is("x/a"));
    // Ingress to x/a is not isolated: others still reach it on 81.
    c.check(&[(TCP80, &all), (TCP81, &silent), (UDP80, &silent)]);
}

#[test]
fn k8s_ingress_on_any_port_of_a_protocol() {
    let c = cluster!("k8s_ingress_on_any_port_of_a_protocol");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "tcp-only",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - ports: [{protocol: TCP}]
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[
        (TCP80, &all),
        (TCP81, &all),
        (UDP80, &nobody),
        (PING, &nobody),
    ]);
}

/// SCTP 80 is not TCP 80 (nor UDP 80).
#[test]
fn k8s_sctp_is_not_tcp() {
    let c = cluster!("k8s_sctp_is_not_tcp");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "sctp-80",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - ports: [{protocol: SCTP, port: 80}]
",
        ),
    );
    c.apply();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP80, &nobody), (UDP80, &nobody)]);
}

#[test]
fn k8s_port_ranges_with_end_port() {
    let c = cluster!("k8s_port_ranges_with_end_port");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "ranges",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - ports:
        - {port: 81, endPort: 90}
        - {protocol: UDP, port: 79, endPort: 80}
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[
        (TCP81, &all),
        (TCP80, &nobody),
        (UDP80, &all),
        (UDP81, &nobody),
    ]);
}

#[test]
fn k8s_updated_policy_is_enforced() {
    let c = cluster!("k8s_updated_policy_is_enforced");
    let policy = |port: u16| {
        knp(
            "x",
            "one-port",
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  ingress:
    - ports: [{{port: {port}}}]
"
            ),
        )
    };
    c.write("np.yaml", &policy(81));
    c.apply();
    let all = Reachability::all();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP81, &all), (TCP80, &nobody)]);
    c.write("np.yaml", &policy(80));
    c.apply();
    c.check(&[(TCP80, &all), (TCP81, &nobody)]);
}

#[test]
fn k8s_policy_deleted_stops_being_enforced() {
    let c = cluster!("k8s_policy_deleted_stops_being_enforced");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "deny-all",
            "
  podSelector: {}
  policyTypes: [Ingress, Egress]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| f.ns != "x" && t.ns != "x");
    c.check(&[(TCP80, &m)]);
    c.remove("np.yaml");
    c.apply();
    let all = Reachability::all();
    c.check(&[(TCP80, &all), (UDP81, &all), (PING, &all)]);
}

/// A namespace that gains the label a namespaceSelector looks for is let in.
#[test]
fn k8s_updated_namespace_labels() {
    let mut c = cluster!("k8s_updated_namespace_labels");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "from-updated-ns",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns2: updated}}}]
",
        ),
    );
    c.apply();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP80, &nobody)]);
    c.label_namespace("y", "ns2", "updated");
    c.apply();
    let y_only = Reachability::new(|f, t| !t.is("x/a") || f.ns == "y");
    c.check(&[(TCP80, &y_only), (UDP81, &y_only)]);
}

/// A pod that gains the label a podSelector looks for is let in, in the policy's namespace only.
#[test]
fn k8s_updated_pod_labels() {
    let mut c = cluster!("k8s_updated_pod_labels");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "from-updated-pod",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{podSelector: {matchLabels: {pod2: updated}}}]
",
        ),
    );
    c.apply();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP80, &nobody)]);
    c.label_pod("x/b", "pod2", "updated");
    c.label_pod("y/b", "pod2", "updated");
    c.apply();
    let xb = Reachability::new(|f, t| !t.is("x/a") || f.is("x/b"));
    c.check(&[(TCP80, &xb), (UDP80, &xb)]);
}

/// A pod that gains the label a policy's podSelector looks for becomes isolated.
#[test]
fn k8s_deny_ingress_to_an_updated_pod() {
    let mut c = cluster!("k8s_deny_ingress_to_an_updated_pod");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "isolate-targets",
            "
  podSelector: {matchLabels: {target: isolated}}
  policyTypes: [Ingress]
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    c.check(&[(TCP80, &all)]);
    c.label_pod("x/a", "target", "isolated");
    c.apply();
    let nobody = Reachability::new(|_, t| !t.is("x/a"));
    c.check(&[(TCP80, &nobody), (PING, &nobody)]);
}

#[test]
fn k8s_deny_ingress_from_other_namespaces() {
    let c = cluster!("k8s_deny_ingress_from_other_namespaces");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "same-namespace-only",
            "
  podSelector: {}
  ingress:
    - from: [{podSelector: {}}]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| t.ns != "x" || f.ns == "x");
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

#[test]
fn k8s_egress_to_a_namespace() {
    let c = cluster!("k8s_egress_to_a_namespace");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "to-y",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !f.is("x/a") || t.ns == "y");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

#[test]
fn k8s_deny_egress_from_one_pod() {
    let c = cluster!("k8s_deny_egress_from_one_pod");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "a-silent",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: []
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, _| !f.is("x/a"));
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

#[test]
fn k8s_ingress_and_egress_together() {
    let c = cluster!("k8s_ingress_and_egress_together");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "both",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{podSelector: {matchLabels: {pod: b}}}]
  egress:
    - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
",
        ),
    );
    c.apply();
    let m =
        Reachability::new(|f, t| (!t.is("x/a") || f.is("x/b")) && (!f.is("x/a") || t.ns == "y"));
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// The client's egress policy denies what the server's ingress policy allows.
#[test]
fn k8s_client_egress_denies_what_the_server_allows() {
    let c = cluster!("k8s_client_egress_denies_what_the_server_allows");
    c.write(
        "np.yaml",
        &docs(&[
            knp(
                "y",
                "allow-all-ingress",
                "
  podSelector: {}
  ingress: [{}]
",
            ),
            knp(
                "x",
                "a-to-y-b",
                "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - to:
        - namespaceSelector: {matchLabels: {ns: y}}
          podSelector: {matchLabels: {pod: b}}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| !f.is("x/a") || t.is("y/b"));
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

#[test]
fn k8s_allow_all_egress_takes_precedence() {
    let c = cluster!("k8s_allow_all_egress_takes_precedence");
    c.write(
        "np-80.yaml",
        &knp(
            "x",
            "out-80",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - ports: [{port: 80}]
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let silent = Reachability::new(|f, _| !f.is("x/a"));
    c.check(&[(TCP80, &all), (TCP81, &silent), (UDP80, &silent)]);
    c.write(
        "np-all.yaml",
        &knp(
            "x",
            "out-all",
            "
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{}]
",
        ),
    );
    c.apply();
    c.check(&[(TCP80, &all), (TCP81, &all), (UDP80, &all)]);
}

#[test]
fn k8s_egress_to_an_ip_block() {
    let c = cluster!("k8s_egress_to_an_ip_block");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "to-y-b",
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: {}/32}}}}]
",
                Pod::get("y/b").ip()
            ),
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !f.is("x/a") || t.is("y/b"));
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

#[test]
fn k8s_egress_to_an_ip_block_with_except() {
    let c = cluster!("k8s_egress_to_an_ip_block_with_except");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "to-all-but-y",
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: 10.66.0.0/16, except: [{}]}}}}]
",
                ns_cidr("y")
            ),
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !f.is("x/a") || t.ns != "y");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// An address in one policy's except is still allowed by another policy that names it.
#[test]
fn k8s_ip_in_an_except_is_allowed_by_another_policy() {
    let c = cluster!("k8s_ip_in_an_except_is_allowed_by_another_policy");
    let yb = Pod::get("y/b").ip();
    c.write(
        "np-except.yaml",
        &knp(
            "x",
            "all-but-y-b",
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: 10.66.0.0/16, except: [{yb}/32]}}}}]
"
            ),
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !f.is("x/a") || !t.is("y/b"));
    c.check(&[(TCP80, &m)]);
    c.write(
        "np-yb.yaml",
        &knp(
            "x",
            "y-b",
            &format!(
                "
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: {yb}/32}}}}]
"
            ),
        ),
    );
    c.apply();
    let all = Reachability::all();
    c.check(&[(TCP80, &all), (UDP80, &all)]);
}

#[test]
fn k8s_ingress_from_an_ip_block_with_except() {
    let c = cluster!("k8s_ingress_from_an_ip_block_with_except");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "from-all-but-z",
            &format!(
                "
  podSelector: {{}}
  ingress:
    - from: [{{ipBlock: {{cidr: 10.66.0.0/16, except: [{}]}}}}]
",
                ns_cidr("z")
            ),
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| t.ns != "x" || f.ns != "z");
    c.check(&[(TCP81, &m), (UDP80, &m), (PING, &m)]);
}

/// With egress rules and no policyTypes, the API server makes the policy [Ingress, Egress]:
/// ingress is isolated too, with no rule allowing any.
#[test]
fn k8s_policy_types_inferred_from_egress_rules() {
    let c = cluster!("k8s_policy_types_inferred_from_egress_rules");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "egress-rules-only",
            "
  podSelector: {matchLabels: {pod: a}}
  egress:
    - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") && (!f.is("x/a") || t.ns == "y"));
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// With only ingress rules and no policyTypes, egress stays open.
#[test]
fn k8s_policy_types_inferred_without_egress_rules() {
    let c = cluster!("k8s_policy_types_inferred_without_egress_rules");
    c.write(
        "np.yaml",
        &knp(
            "x",
            "ingress-rules-only",
            "
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{podSelector: {matchLabels: {pod: b}}}]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.is("x/b"));
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// Kubernetes policies sit in Calico's default tier at order 1000: a Calico policy of order 500
/// decides before them, one of order 2000 after them.
#[test]
fn k8s_policies_sit_at_order_1000_in_the_default_tier() {
    let c = cluster!("k8s_policies_sit_at_order_1000_in_the_default_tier");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "deny-y-before",
                "
  order: 500
  selector: pod == 'a'
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'y'}
",
            ),
            cnp(
                "x",
                "deny-z-after",
                "
  order: 2000
  selector: pod == 'a'
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'z'}
",
            ),
            knp(
                "x",
                "allow-all",
                "
  podSelector: {matchLabels: {pod: a}}
  ingress: [{}]
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "y");
    c.check(&[(TCP80, &m), (UDP81, &m)]);
}

// ---------------------------------------------------------------------------------------------
// Calico: policies, tiers and order
// ---------------------------------------------------------------------------------------------

#[test]
fn calico_global_network_policy() {
    let c = cluster!("calico_global_network_policy");
    c.write(
        "gnp.yaml",
        &docs(&[
            gnp(
                "b-only-from-z",
                "
  selector: pod == 'b'
  types: [Ingress]
  ingress:
    - action: Allow
      source: {namespaceSelector: ns == 'z'}
",
            ),
            gnp(
                "y-c-not-to-x",
                "
  namespaceSelector: ns == 'y'
  selector: pod == 'c'
  types: [Egress]
  egress:
    - action: Deny
      destination: {namespaceSelector: ns == 'x'}
    - action: Allow
",
            ),
        ]),
    );
    c.apply();
    let m =
        Reachability::new(|f, t| (t.name != "b" || f.ns == "z") && !(f.is("y/c") && t.ns == "x"));
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

/// A tier decides before the tiers after it: its Allow is final, its Pass defers to them.
/// Moving the tier after the default tier reverses who decides.
#[test]
fn calico_tier_order() {
    let c = cluster!("calico_tier_order");
    let first = |order: u32| {
        docs(&[
            tier("first", &format!("  order: {order}\n")),
            gnp(
                "first.a-from-y",
                "
  tier: first
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {namespaceSelector: ns == 'y'}
    - action: Pass
",
            ),
        ])
    };
    c.write("tier.yaml", &first(100));
    c.write(
        "deny.yaml",
        &gnp(
            "deny-a",
            "
  selector: pod == 'a'
  types: [Ingress]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| t.name != "a" || f.ns == "y");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
    // After the default tier (order 1000000), whose deny-a now decides first.
    c.write("tier.yaml", &first(2_000_000));
    c.apply();
    let m = Reachability::new(|_, t| t.name != "a");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// Pass skips the rest of the tier; the next tier (here the default tier with a Kubernetes
/// policy) decides.
#[test]
fn calico_pass_to_the_next_tier() {
    let c = cluster!("calico_pass_to_the_next_tier");
    c.write(
        "tier.yaml",
        &docs(&[
            tier("security", "  order: 100\n"),
            gnp(
                "security.quarantine-z",
                "
  tier: security
  selector: all()
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'z'}
    - action: Pass
",
            ),
        ]),
    );
    c.write(
        "np.yaml",
        &knp(
            "x",
            "default-deny",
            "
  podSelector: {}
  policyTypes: [Ingress]
",
        ),
    );
    c.apply();
    let m = Reachability::new(|f, t| f.ns != "z" && t.ns != "x");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// A tier whose defaultAction is Pass passes what its policies leave undecided; with the
/// default (Deny) the same policies deny it.
#[test]
fn calico_tier_default_action_pass() {
    let c = cluster!("calico_tier_default_action_pass");
    let security = |default_action: &str| {
        docs(&[
            tier("security", &format!("  order: 100\n{default_action}")),
            gnp(
                "security.quarantine-z",
                "
  tier: security
  selector: all()
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'z'}
",
            ),
        ])
    };
    c.write("tier.yaml", &security("  defaultAction: Pass\n"));
    c.apply();
    let m = Reachability::new(|f, _| f.ns != "z");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
    c.write("tier.yaml", &security(""));
    c.apply();
    let none = Reachability::none();
    c.check(&[(TCP80, &none), (PING, &none)]);
}

/// A tier none of whose policies selects an endpoint plays no part for it.
#[test]
fn calico_tier_that_selects_nothing_is_skipped() {
    let c = cluster!("calico_tier_that_selects_nothing_is_skipped");
    c.write(
        "tier.yaml",
        &docs(&[
            tier("security", "  order: 100\n"),
            gnp(
                "security.x-private",
                "
  tier: security
  selector: projectcalico.org/namespace == 'x'
  ingress:
    - action: Allow
      source: {selector: projectcalico.org/namespace == 'x'}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| t.ns != "x" || f.ns == "x");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

#[test]
fn calico_deny_before_allow_by_order() {
    let c = cluster!("calico_deny_before_allow_by_order");
    let policies = |deny_order: u32| {
        docs(&[
            cnp(
                "x",
                "deny-y",
                &format!(
                    "
  order: {deny_order}
  selector: pod == 'a'
  ingress:
    - action: Deny
      source: {{namespaceSelector: ns == 'y'}}
"
                ),
            ),
            cnp(
                "x",
                "allow-all",
                "
  order: 20
  selector: pod == 'a'
  ingress:
    - action: Allow
",
            ),
        ])
    };
    c.write("np.yaml", &policies(10));
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "y");
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
    c.write("np.yaml", &policies(30));
    c.apply();
    let all = Reachability::all();
    c.check(&[(TCP80, &all), (UDP80, &all)]);
}

/// Policies of equal order are taken in name order.
#[test]
fn calico_equal_order_is_broken_by_name() {
    let c = cluster!("calico_equal_order_is_broken_by_name");
    let policies = |deny: &str, allow: &str| {
        docs(&[
            cnp(
                "x",
                deny,
                "
  order: 100
  selector: pod == 'a'
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'y'}
",
            ),
            cnp(
                "x",
                allow,
                "
  order: 100
  selector: pod == 'a'
  ingress:
    - action: Allow
",
            ),
        ])
    };
    c.write("np.yaml", &policies("aa-deny-y", "bb-allow"));
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "y");
    c.check(&[(TCP80, &m)]);
    c.write("np.yaml", &policies("bb-deny-y", "aa-allow"));
    c.apply();
    let all = Reachability::all();
    c.check(&[(TCP80, &all)]);
}

/// A policy without an order comes after every policy with one.
#[test]
fn calico_policy_without_order_comes_last() {
    let c = cluster!("calico_policy_without_order_comes_last");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "allow-all-unordered",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
",
            ),
            cnp(
                "x",
                "deny-y-late",
                "
  order: 5000
  selector: pod == 'a'
  ingress:
    - action: Deny
      source: {namespaceSelector: ns == 'y'}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| !t.is("x/a") || f.ns != "y");
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// Rules apply in order; Log matches and goes on to the next rule.
#[test]
fn calico_rules_in_order_and_log_goes_on() {
    let c = cluster!("calico_rules_in_order_and_log_goes_on");
    c.write(
        "np.yaml",
        &cnp(
            "x",
            "ordered",
            "
  selector: pod == 'a'
  ingress:
    - action: Log
    - action: Allow
      protocol: TCP
      destination: {ports: [80]}
    - action: Deny
      source: {namespaceSelector: ns == 'y'}
    - action: Allow
",
        ),
    );
    c.apply();
    let all = Reachability::all();
    let not_y = Reachability::new(|f, t| !t.is("x/a") || f.ns != "y");
    c.check(&[
        (TCP80, &all),
        (TCP81, &not_y),
        (UDP80, &not_y),
        (PING, &not_y),
    ]);
}

/// Calico's own defaulting of types: a policy with only egress rules is an egress policy and
/// leaves ingress alone (unlike a Kubernetes policy); one with only ingress rules leaves
/// egress alone.
#[test]
fn calico_types_default_from_the_rules() {
    let c = cluster!("calico_types_default_from_the_rules");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-egress",
                "
  selector: pod == 'a'
  egress:
    - action: Deny
      destination: {namespaceSelector: ns == 'y'}
    - action: Allow
",
            ),
            cnp(
                "y",
                "b-ingress",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      source: {selector: all()}
",
            ),
        ]),
    );
    c.apply();
    // y/b's rule selector is scoped to namespace y: only y's pods get in.
    let m =
        Reachability::new(|f, t| (!f.is("x/a") || t.ns != "y") && (!t.is("y/b") || f.ns == "y"));
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

// ---------------------------------------------------------------------------------------------
// Calico: rule matches
// ---------------------------------------------------------------------------------------------

/// notSelector excludes what it selects; in a namespaced policy the rule is still limited to
/// the policy's namespace, in a global one it is not.
#[test]
fn calico_not_selector() {
    let c = cluster!("calico_not_selector");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-not-from-b",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {notSelector: pod == 'b'}
",
            ),
            gnp(
                "y-a-not-from-b",
                "
  selector: pod == 'a' && projectcalico.org/namespace == 'y'
  ingress:
    - action: Allow
      source: {notSelector: pod == 'b'}
",
            ),
            gnp(
                "z-c-not-to-x",
                "
  selector: pod == 'c' && projectcalico.org/namespace == 'z'
  types: [Egress]
  egress:
    - action: Allow
      destination: {notSelector: projectcalico.org/namespace == 'x'}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| {
        let ingress = if t.is("x/a") {
            f.ns == "x" && f.name != "b"
        } else if t.is("y/a") {
            f.name != "b"
        } else {
            true
        };
        ingress && (!f.is("z/c") || t.ns != "x")
    });
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

#[test]
fn calico_nets_and_not_nets() {
    let c = cluster!("calico_nets_and_not_nets");
    let (x, y, z) = (ns_cidr("x"), ns_cidr("y"), ns_cidr("z"));
    let za = Pod::get("z/a").ip();
    let ya = Pod::get("y/a").ip();
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-from-z-net",
                &format!(
                    "
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {{nets: [{z}]}}
"
                ),
            ),
            cnp(
                "x",
                "b-not-from-z-net",
                &format!(
                    "
  selector: pod == 'b'
  ingress:
    - action: Allow
      source: {{notNets: [{z}]}}
"
                ),
            ),
            cnp(
                "x",
                "c-not-to-y-net",
                &format!(
                    "
  selector: pod == 'c'
  types: [Egress]
  egress:
    - action: Allow
      destination: {{notNets: [{y}]}}
"
                ),
            ),
            cnp(
                "y",
                "a-to-x-and-z-a",
                &format!(
                    "
  selector: pod == 'a'
  types: [Egress]
  egress:
    - action: Allow
      source: {{nets: [{ya}/32]}}
      destination: {{nets: [{x}, {za}/32]}}
"
                ),
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| {
        let ingress = if t.is("x/a") {
            f.ns == "z"
        } else if t.is("x/b") {
            f.ns != "z"
        } else {
            true
        };
        let egress = if f.is("x/c") {
            t.ns != "y"
        } else if f.is("y/a") {
            t.ns == "x" || t.is("z/a")
        } else {
            true
        };
        ingress && egress
    });
    c.check(&[(TCP80, &m), (UDP81, &m), (PING, &m)]);
}

/// ports and notPorts on both sides; numeric ranges. A client's source port is ephemeral
/// (32768 and up), so it is never in 1:1023.
#[test]
fn calico_ports_and_not_ports() {
    let c = cluster!("calico_ports_and_not_ports");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-not-80",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {notPorts: [80]}
",
            ),
            cnp(
                "x",
                "b-udp-range",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      protocol: UDP
      destination: {ports: ['79:80']}
",
            ),
            cnp(
                "x",
                "c-unprivileged-clients",
                "
  selector: pod == 'c'
  ingress:
    - action: Allow
      protocol: TCP
      source: {notPorts: ['1:1023']}
",
            ),
            cnp(
                "y",
                "a-privileged-clients",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      protocol: TCP
      source: {ports: ['1:1023']}
",
            ),
            cnp(
                "z",
                "a-out-from-ephemeral",
                "
  selector: pod == 'a'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      source: {ports: ['32768:65535']}
",
            ),
        ]),
    );
    c.apply();
    let matrix = |probe: Probe| {
        Reachability::new(move |f, t| {
            let (tcp, port) = match probe {
                Probe::Tcp(p) => (true, p),
                Probe::Udp(p) => (false, p),
                Probe::Icmp { .. } => unreachable!(),
            };
            let ingress = match t.id().as_str() {
                "x/a" => tcp && port != 80,
                "x/b" => !tcp && port == 80,
                "x/c" => tcp,
                // No client connects from a port below 1024.
                "y/a" => false,
                _ => true,
            };
            ingress && (!f.is("z/a") || tcp)
        })
    };
    let (t80, t81, u80, u81) = (matrix(TCP80), matrix(TCP81), matrix(UDP80), matrix(UDP81));
    c.check(&[(TCP80, &t80), (TCP81, &t81), (UDP80, &u80), (UDP81, &u81)]);
}

/// protocol by name and number, notProtocol.
#[test]
fn calico_protocol_and_not_protocol() {
    let c = cluster!("calico_protocol_and_not_protocol");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-not-udp",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      notProtocol: UDP
",
            ),
            cnp(
                "x",
                "b-17",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      protocol: 17
",
            ),
            cnp(
                "x",
                "c-1",
                "
  selector: pod == 'c'
  ingress:
    - action: Allow
      protocol: 1
",
            ),
            cnp(
                "y",
                "a-no-tcp",
                "
  selector: pod == 'a'
  ingress:
    - action: Deny
      protocol: 6
    - action: Allow
",
            ),
            cnp(
                "y",
                "b-out-tcp-only",
                "
  selector: pod == 'b'
  types: [Egress]
  egress:
    - action: Allow
      protocol: 6
",
            ),
        ]),
    );
    c.apply();
    // 6 TCP, 17 UDP, 1 ICMP
    let matrix = |proto: u8| {
        Reachability::new(move |f, t| {
            let ingress = if t.is("x/a") {
                proto != 17
            } else if t.is("x/b") {
                proto == 17
            } else if t.is("x/c") {
                proto == 1
            } else if t.is("y/a") {
                proto != 6
            } else {
                true
            };
            ingress && (!f.is("y/b") || proto == 6)
        })
    };
    let (tcp, udp, icmp) = (matrix(6), matrix(17), matrix(1));
    c.check(&[(TCP80, &tcp), (UDP80, &udp), (PING, &icmp)]);
}

/// ICMP type and code, and the not-variants; echo requests with code 0 and 1 and timestamp
/// requests (type 13), which the kernel answers too.
#[test]
fn calico_icmp_type_and_code() {
    let c = cluster!("calico_icmp_type_and_code");
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-echo-code-0",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      protocol: ICMP
      icmp: {type: 8, code: 0}
",
            ),
            cnp(
                "x",
                "b-not-echo",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      protocol: ICMP
      notICMP: {type: 8}
",
            ),
            cnp(
                "x",
                "c-timestamp",
                "
  selector: pod == 'c'
  ingress:
    - action: Allow
      protocol: ICMP
      icmp: {type: 13}
",
            ),
            cnp(
                "y",
                "a-echo",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      protocol: ICMP
      icmp: {type: 8}
",
            ),
            cnp(
                "y",
                "b-not-echo-code-1",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      protocol: ICMP
      notICMP: {type: 8, code: 1}
",
            ),
            cnp(
                "y",
                "c-out-echo",
                "
  selector: pod == 'c'
  types: [Egress]
  egress:
    - action: Allow
      protocol: ICMP
      icmp: {type: 8}
",
            ),
        ]),
    );
    c.apply();
    // (type, code) of the request; None for TCP.
    let matrix = |req: Option<(u8, u8)>| {
        Reachability::new(move |f, t| {
            let ingress = match (t.id().as_str(), req) {
                ("x/a", r) => r == Some((8, 0)),
                ("x/b", r) | ("x/c", r) => r.is_some_and(|(ty, _)| ty != 8),
                ("y/a", r) => r.is_some_and(|(ty, _)| ty == 8),
                ("y/b", r) => r.is_some_and(|r| r != (8, 1)),
                _ => true,
            };
            let egress = !f.is("y/c") || req.is_some_and(|(ty, _)| ty == 8);
            ingress && egress
        })
    };
    let (echo0, echo1, ts, tcp) = (
        matrix(Some((8, 0))),
        matrix(Some((8, 1))),
        matrix(Some((13, 0))),
        matrix(None),
    );
    c.check(&[
        (PING, &echo0),
        (PING_CODE_1, &echo1),
        (TIMESTAMP, &ts),
        (TCP80, &tcp),
    ]);
}

/// Every selector operator, each guarding one pod.
#[test]
fn calico_selector_operators() {
    let mut c = cluster!("calico_selector_operators");
    for p in Pod::all() {
        c.label_pod(&p.id(), "name", &format!("{}-in-{}", p.name, p.ns));
    }
    c.label_pod("x/b", "role", "db");
    c.label_pod("z/c", "role", "db");
    let guarded: [(&str, &str); 9] = [
        ("x/a", "pod in {'b', 'c'}"),
        ("x/b", "pod not in {'b'}"),
        ("x/c", "has(role)"),
        ("y/a", "!has(role)"),
        ("y/b", "name contains 'c-in'"),
        ("y/c", "name starts with 'b-'"),
        ("z/a", "name ends with '-z'"),
        ("z/b", "pod == 'a' || role == 'db'"),
        ("z/c", "pod != 'a' && !(projectcalico.org/namespace == 'y')"),
    ];
    let policies: Vec<String> = guarded
        .iter()
        .map(|(id, sel)| {
            let p = Pod::get(id);
            gnp(
                &format!("guard-{}-{}", p.ns, p.name),
                &format!(
                    "
  selector: pod == '{}' && projectcalico.org/namespace == '{}'
  ingress:
    - action: Allow
      source: {{selector: \"{sel}\"}}
",
                    p.name, p.ns
                ),
            )
        })
        .collect();
    c.write("gnp.yaml", &docs(&policies));
    c.apply();
    let db = |p: Pod| p.is("x/b") || p.is("z/c");
    let m = Reachability::new(|f, t| match t.id().as_str() {
        "x/a" => f.name == "b" || f.name == "c",
        "x/b" => f.name != "b",
        "x/c" => db(f),
        "y/a" => !db(f),
        "y/b" => f.name == "c",
        "y/c" => f.name == "b",
        "z/a" => f.ns == "z",
        "z/b" => f.name == "a" || db(f),
        "z/c" => f.name != "a" && f.ns != "y",
        _ => unreachable!(),
    });
    c.check(&[(TCP80, &m), (UDP80, &m)]);
}

/// namespaceSelector on namespace labels, from Namespace resources and from a Calico profile
/// standing in for a namespace (Calico without Kubernetes); all() means every namespace.
#[test]
fn calico_namespace_selectors_from_namespaces_and_profiles() {
    let mut c = cluster!("calico_namespace_selectors_from_namespaces_and_profiles");
    c.label_namespace("y", "team", "blue");
    c.remove_namespace("z");
    c.write(
        "01-profile-kns-z.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.z}
spec:
  labelsToApply:
    pcns.ns: z
    pcns.team: blue
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
"#,
    );
    c.write(
        "np.yaml",
        &docs(&[
            cnp(
                "x",
                "a-from-blue",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {namespaceSelector: team == 'blue'}
",
            ),
            cnp(
                "x",
                "b-from-y-by-name",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      source: {namespaceSelector: projectcalico.org/name == 'y'}
",
            ),
            cnp(
                "x",
                "c-from-z-b",
                "
  selector: pod == 'c'
  ingress:
    - action: Allow
      source: {namespaceSelector: ns == 'z', selector: pod == 'b'}
",
            ),
            gnp(
                "y-a-from-any-c",
                "
  selector: pod == 'a' && projectcalico.org/namespace == 'y'
  ingress:
    - action: Allow
      source: {namespaceSelector: all(), selector: pod == 'c'}
",
            ),
            cnp(
                "y",
                "b-from-other-namespaces",
                "
  selector: pod == 'b'
  ingress:
    - action: Allow
      source: {namespaceSelector: \"ns not in {'y'}\"}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| match t.id().as_str() {
        "x/a" => f.ns == "y" || f.ns == "z",
        "x/b" => f.ns == "y",
        "x/c" => f.is("z/b"),
        "y/a" => f.name == "c",
        "y/b" => f.ns != "y",
        _ => true,
    });
    c.check(&[(TCP80, &m), (UDP81, &m)]);
}

/// Selectors pick network sets by their labels: a GlobalNetworkSet from a global policy or
/// (with namespaceSelector global()) a namespaced one, a NetworkSet from its own namespace's
/// policies; the addresses count, whatever endpoints hold them.
#[test]
fn calico_network_sets() {
    let c = cluster!("calico_network_sets");
    c.write(
        "sets.yaml",
        &format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: trusted-z
  labels: {{role: trusted}}
spec:
  nets: [{}]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: partners
  namespace: y
  labels: {{role: partner}}
spec:
  nets: [{}/32]
",
            ns_cidr("z"),
            Pod::get("x/b").ip()
        ),
    );
    c.write(
        "np.yaml",
        &docs(&[
            gnp(
                "x-a-from-trusted",
                "
  selector: pod == 'a' && projectcalico.org/namespace == 'x'
  ingress:
    - action: Allow
      source: {selector: role == 'trusted'}
",
            ),
            cnp(
                "y",
                "a-from-partners",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {selector: role == 'partner'}
",
            ),
            cnp(
                "x",
                "c-from-trusted-in-x",
                "
  selector: pod == 'c'
  ingress:
    - action: Allow
      source: {selector: role == 'trusted'}
",
            ),
            cnp(
                "z",
                "a-from-global-trusted",
                "
  selector: pod == 'a'
  ingress:
    - action: Allow
      source: {namespaceSelector: global(), selector: role == 'trusted'}
",
            ),
            gnp(
                "y-c-to-trusted",
                "
  selector: pod == 'c' && projectcalico.org/namespace == 'y'
  types: [Egress]
  egress:
    - action: Allow
      destination: {selector: role == 'trusted'}
",
            ),
        ]),
    );
    c.apply();
    let m = Reachability::new(|f, t| {
        let ingress = match t.id().as_str() {
            "x/a" => f.ns == "z",
            "y/a" => f.is("x/b"),
            // The global set is in no namespace: x's own policy cannot see it.
            "x/c" => false,
            "z/a" => f.ns == "z",
            _ => true,
        };
        ingress && (!f.is("y/c") || t.ns == "z")
    });
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// Profiles alone: rules of the listed profiles in order, the first decision wins, and no
/// profile (or none that allows) means deny.
#[test]
fn calico_profiles_alone_and_a_workload_without_profile() {
    let mut c = cluster!("calico_profiles_alone_and_a_workload_without_profile");
    c.write(
        "01-profiles.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: from-a}
spec:
  ingress:
    - action: Allow
      source: {selector: pod == 'a'}
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: deny-y}
spec:
  ingress:
    - action: Deny
      source: {selector: projectcalico.org/namespace == 'y'}
"#,
    );
    for p in ["y/a", "y/b", "y/c"] {
        c.set_profiles(p, &["from-a"]);
    }
    c.set_profiles("x/b", &["kns.x", "deny-y"]);
    c.set_profiles("x/c", &["deny-y", "kns.x"]);
    for p in ["z/a", "z/b", "z/c"] {
        c.set_profiles(p, &[]);
    }
    c.apply();
    let m = Reachability::new(|f, t| {
        let ingress = match t.ns {
            "y" => f.name == "a",
            "z" => false,
            _ => !(t.is("x/c") && f.ns == "y"),
        };
        ingress && f.ns != "z"
    });
    c.check(&[(TCP80, &m), (UDP80, &m), (PING, &m)]);
}

/// A named port means each endpoint's own declaration of it, on either side of the rule.
#[test]
fn calico_named_ports_resolve_per_endpoint() {
    let mut c = cluster!("calico_named_ports_resolve_per_endpoint");
    let web = |p: Pod| -> u16 {
        if p.is("x/b") || p.is("y/c") || p.is("z/b") {
            81
        } else {
            80
        }
    };
    for p in Pod::all() {
        c.add_named_port(&p.id(), "web", "TCP", web(p));
    }
    c.write(
        "np.yaml",
        &docs(&[
            gnp(
                "z-web-in",
                "
  selector: projectcalico.org/namespace == 'z'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [web]}
",
            ),
            gnp(
                "x-a-web-out",
                "
  selector: pod == 'a' && projectcalico.org/namespace == 'x'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {ports: [web]}
",
            ),
            knp(
                "y",
                "web-in",
                "
  podSelector: {}
  ingress:
    - ports: [{port: web}]
",
            ),
        ]),
    );
    c.apply();
    let matrix = |port: u16| {
        Reachability::new(move |f, t| {
            let ingress = t.ns == "x" || port == web(t);
            let egress = !f.is("x/a") || port == web(t);
            ingress && egress
        })
    };
    let udp = Reachability::new(|f, t| t.ns == "x" && !f.is("x/a"));
    let (t80, t81) = (matrix(80), matrix(81));
    c.check(&[(TCP80, &t80), (TCP81, &t81), (UDP80, &udp)]);
}

/// A named port in notPorts excludes each endpoint's own port of that name, whether the
/// endpoint is the rule's own (ingress) or the peer (egress).
#[test]
fn calico_named_not_ports_resolve_per_endpoint() {
    let mut c = cluster!("calico_named_not_ports_resolve_per_endpoint");
    let web = |p: Pod| -> u16 {
        if p.is("x/b") || p.is("y/c") || p.is("z/b") {
            81
        } else {
            80
        }
    };
    for p in Pod::all() {
        c.add_named_port(&p.id(), "web", "TCP", web(p));
    }
    c.write(
        "np.yaml",
        &docs(&[
            gnp(
                "z-not-web-in",
                "
  selector: projectcalico.org/namespace == 'z'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: {notPorts: [web]}
",
            ),
            gnp(
                "x-a-not-web-out",
                "
  selector: pod == 'a' && projectcalico.org/namespace == 'x'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {notPorts: [web]}
",
            ),
        ]),
    );
    c.apply();
    let matrix = |port: u16| {
        Reachability::new(move |f, t| {
            (t.ns != "z" || port != web(t)) && (!f.is("x/a") || port != web(t))
        })
    };
    let udp = Reachability::new(|f, t| t.ns != "z" && !f.is("x/a"));
    let (t80, t81) = (matrix(80), matrix(81));
    c.check(&[(TCP80, &t80), (TCP81, &t81), (UDP81, &udp)]);
}

/// Rules look at both sides: an ingress rule's destination is the endpoint itself, an egress
/// rule's source likewise.
#[test]
fn calico_rules_match_on_both_sides() {
    let c = cluster!("calico_rules_match_on_both_sides");
    c.write(
        "np.yaml",
        &docs(&[
            gnp(
                "x-pairs",
                &format!(
                    "
  selector: projectcalico.org/namespace == 'x'
  types: [Ingress]
  ingress:
    - action: Allow
      source: {{selector: pod == 'a'}}
      destination: {{selector: pod == 'b'}}
    - action: Allow
      source: {{selector: pod == 'c'}}
      destination: {{nets: [{}/32]}}
    - action: Allow
      protocol: UDP
      destination: {{notSelector: pod == 'c'}}
",
                    Pod::get("x/c").ip()
                ),
            ),
            gnp(
                "y-a-out",
                &format!(
                    "
  selector: pod == 'a' && projectcalico.org/namespace == 'y'
  types: [Egress]
  egress:
    - action: Allow
      source: {{selector: pod == 'b'}}
    - action: Allow
      source: {{nets: [{}/32]}}
      destination: {{selector: pod == 'c'}}
",
                    Pod::get("y/a").ip()
                ),
            ),
        ]),
    );
    c.apply();
    let matrix = |udp: bool| {
        Reachability::new(move |f, t| {
            let ingress = t.ns != "x"
                || (t.is("x/b") && f.name == "a")
                || (t.is("x/c") && f.name == "c")
                || (udp && !t.is("x/c"));
            let egress = !f.is("y/a") || t.name == "c";
            ingress && egress
        })
    };
    let (tcp, udp) = (matrix(false), matrix(true));
    c.check(&[(TCP80, &tcp), (UDP80, &udp)]);
}

// ---------------------------------------------------------------------------------------------
// Changes to running traffic
// ---------------------------------------------------------------------------------------------

const ECHO: Duration = Duration::from_secs(2);
/// How long a connection the policy cut gets to show it is cut.
const CUT: Duration = Duration::from_millis(800);

fn to_xa_from(peers: &[&str]) -> String {
    let peers: String = peers
        .iter()
        .map(|id| {
            let p = Pod::get(id);
            format!(
                "        - namespaceSelector: {{matchLabels: {{ns: {}}}}}\n          podSelector: {{matchLabels: {{pod: {}}}}}\n",
                p.ns, p.name
            )
        })
        .collect();
    knp(
        "x",
        "to-x-a",
        &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n    - from:\n{peers}"),
    )
}

/// A change that opens a new path leaves established connections it still allows alone; a
/// change that no longer allows an established connection cuts it at its next packet (weft
/// judges such flows again; Calico would let them run until they end: docs/design.md).
#[test]
fn dynamic_established_connections_across_policy_changes() {
    let c = cluster!("dynamic_established_connections_across_policy_changes");
    c.write("np.yaml", &to_xa_from(&["y/a"]));
    c.apply();
    let from = |peers: &'static [&'static str]| {
        Reachability::new(move |f, t| !t.is("x/a") || peers.iter().any(|p| f.is(p)))
    };
    c.check(&[(TCP80, &from(&["y/a"]))]);
    let mut ya = c.connect("y/a", "x/a", 80);
    assert!(ya.echo(ECHO), "{} carries data", ya.what());

    // Open a second path: the first connection is untouched.
    c.write("np.yaml", &to_xa_from(&["y/a", "y/b"]));
    c.apply();
    assert!(
        ya.echo(ECHO),
        "{} still carries data after a change that still allows it",
        ya.what()
    );
    c.check(&[(TCP80, &from(&["y/a", "y/b"]))]);
    let mut yb = c.connect("y/b", "x/a", 80);
    assert!(yb.echo(ECHO), "{} carries data", yb.what());

    // Close the first path: its connection stops at its next packet, the other goes on.
    c.write("np.yaml", &to_xa_from(&["y/b"]));
    c.apply();
    assert!(
        yb.echo(ECHO),
        "{} still carries data: the new policy allows it",
        yb.what()
    );
    assert!(
        !ya.echo(CUT),
        "{} must stop: the new policy denies it and weft cuts denied flows",
        ya.what()
    );
    c.check(&[(TCP80, &from(&["y/b"]))]);
}

/// The same on the client's side: an egress change cuts the client's established connection.
#[test]
fn dynamic_egress_change_cuts_an_established_connection() {
    let c = cluster!("dynamic_egress_change_cuts_an_established_connection");
    c.apply();
    let mut to_z = c.connect("x/b", "z/c", 81);
    let mut to_y = c.connect("x/b", "y/c", 81);
    assert!(to_z.echo(ECHO) && to_y.echo(ECHO));
    c.write(
        "np.yaml",
        &knp(
            "x",
            "b-to-y",
            "
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
",
        ),
    );
    c.apply();
    assert!(to_y.echo(ECHO), "{} is still allowed", to_y.what());
    assert!(
        !to_z.echo(CUT),
        "{} must stop: x/b may no longer send to z",
        to_z.what()
    );
    let m = Reachability::new(|f, t| !f.is("x/b") || t.ns == "y");
    c.check(&[(TCP81, &m)]);
}

/// While policy changes, a path that every version denies never opens and a flow that every
/// version allows loses nothing. An apply takes about 10 ms and the switch inside it far less,
/// so the probes are dense: intruders send a UDP datagram every 200 us (any echo is a breach)
/// and try TCP connections, and an allowed UDP stream sends a numbered datagram every 100 us,
/// every one of which must be echoed, across 40 applies that each give x/a a new ruleset.
#[test]
fn dynamic_no_window_while_policy_changes() {
    let c = cluster!("dynamic_no_window_while_policy_changes");
    let versions = [to_xa_from(&["x/b"]), to_xa_from(&["x/b", "y/b"])];
    c.write("np.yaml", &versions[0]);
    c.apply();
    let mut kept = c.connect("x/b", "x/a", 80);
    assert!(kept.echo(ECHO));

    let stop = Arc::new(AtomicBool::new(false));
    let xa = Pod::get("x/a").ip();
    let mut intruders = Vec::new();
    for intruder in ["z/c", "y/c", "x/c"] {
        let blasting = stop.clone();
        intruders.push(c.netns(Pod::get(intruder)).spawn(move || {
            let (sent, breaches) = udp_blast(xa, 81, &blasting);
            (intruder, "UDP", sent, breaches)
        }));
        let knocking = stop.clone();
        intruders.push(c.netns(Pod::get(intruder)).spawn(move || {
            let (mut tried, mut breaches) = (0u32, 0u32);
            while !knocking.load(Ordering::Relaxed) {
                let addr = SocketAddr::from((xa, 80));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(5)).is_ok() {
                    breaches += 1;
                }
                tried += 1;
            }
            (intruder, "TCP", tried, breaches)
        }));
    }
    let stream = {
        let stop = stop.clone();
        c.netns(Pod::get("x/b"))
            .spawn(move || udp_stream(xa, 80, &stop))
    };
    thread::sleep(Duration::from_millis(50));
    for i in 0..40 {
        c.write("np.yaml", &versions[(i + 1) % 2]);
        c.apply();
    }
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let mut report = String::new();
    let mut breached = false;
    for h in intruders {
        let (who, proto, tried, breaches) = h.join().expect("intruder");
        report += &format!("{who} -> x/a {proto}: {tried} tries, {breaches} got through; ");
        assert!(tried > 0, "{who} tried nothing");
        breached |= breaches > 0;
    }
    let (sent, echoed) = stream.join().expect("stream");
    eprintln!("during 40 applies: {report}x/b -> x/a UDP: {sent} sent, {echoed} echoed");
    assert!(!breached, "a path every version denies opened: {report}");
    assert!(sent > 100, "the stream ran: {sent} datagrams");
    assert_eq!(echoed, sent, "the flow every version allows lost datagrams");
    assert!(
        kept.echo(ECHO),
        "{} carries data after the changes",
        kept.what()
    );
    let m = Reachability::new(|f, t| !t.is("x/a") || f.is("x/b"));
    c.check(&[(TCP80, &m), (UDP81, &m)]);
}

/// Sends a datagram to `to:port` every 200 us until `stop`; returns (sent, echoes received).
fn udp_blast(to: Ipv4Addr, port: u16, stop: &AtomicBool) -> (u32, u32) {
    let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    let (mut sent, mut echoes) = (0u32, 0u32);
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        if s.send_to(b"intruder", (to, port)).is_ok() {
            sent += 1;
        }
        while s.recv_from(&mut buf).is_ok() {
            echoes += 1;
        }
        thread::sleep(Duration::from_micros(200));
    }
    // Anything still on its way.
    thread::sleep(Duration::from_millis(100));
    while s.recv_from(&mut buf).is_ok() {
        echoes += 1;
    }
    (sent, echoes)
}

/// Sends a numbered datagram to `to:port` every 100 us until `stop`, then waits for the last
/// echoes; returns (sent, distinct numbers echoed).
fn udp_stream(to: Ipv4Addr, port: u16, stop: &AtomicBool) -> (u32, u32) {
    let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
    big_receive_buffer(&s);
    s.connect((to, port)).expect("connect");
    s.set_nonblocking(true).expect("nonblocking");
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 64];
    let mut drain = |seen: &mut std::collections::BTreeSet<u32>| {
        while let Ok(n) = s.recv(&mut buf) {
            if n == 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
        }
    };
    let mut sent = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if s.send(&sent.to_be_bytes()).is_ok() {
            sent += 1;
        }
        drain(&mut seen);
        thread::sleep(Duration::from_micros(100));
    }
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(10));
        drain(&mut seen);
        if seen.len() as u32 == sent {
            break;
        }
    }
    (sent, seen.len() as u32)
}
