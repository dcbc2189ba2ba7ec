//! From resources to the IR and to labels: the meaning of policies is checked by evaluating
//! their selectors against the labels real endpoints get, not by comparing strings.

use std::collections::BTreeMap;

use super::*;
use crate::{Action, Cidr, EntityIr, PolicyIr, PortMatch, RuleIr};

const NAMESPACES: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod, team: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: lab, labels: {env: test}}
";

/// Workload endpoints: shop/web (app web), shop/db (app db, service account db-sa),
/// lab/web (app web), each with its namespace's profile; a network set in shop with app web;
/// a global network set and a host endpoint with app web.
const ENTITIES: &str = "\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: cali1, orchestrator: k8s, profiles: [kns.shop], ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n1, interfaceName: cali2, serviceAccountName: db-sa, profiles: [kns.shop], ipNetworks: [10.0.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: lab, labels: {app: web}}
spec: {node: n1, interfaceName: cali3, profiles: [kns.lab], ipNetworks: [10.0.0.3/32]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: web-set, namespace: shop, labels: {app: web}}
spec: {nets: [192.168.0.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: world, labels: {app: web}}
spec: {nets: [0.0.0.0/0]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-eth0, labels: {app: web}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.16.0.1]}
";

struct World {
    config: Config,
}

impl World {
    fn new(policies: &str) -> World {
        World {
            config: load_ok(&[
                ("0-namespaces.yaml", NAMESPACES),
                ("1-entities.yaml", ENTITIES),
                ("2-policies.yaml", policies),
            ]),
        }
    }

    /// Every entity by a readable name, with the labels selectors see.
    fn entities(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let c = &self.config;
        let mut out = Vec::new();
        for w in &c.workload_endpoints {
            out.push((
                format!("wep {}", w.value.display_name()),
                c.endpoint_labels(&w.value),
            ));
        }
        for s in &c.network_sets {
            out.push((
                format!("set {}/{}", s.value.namespace(), s.value.metadata.name),
                c.network_set_labels(&s.value),
            ));
        }
        for s in &c.global_network_sets {
            out.push((
                format!("gset {}", s.value.metadata.name),
                c.global_network_set_labels(&s.value),
            ));
        }
        for h in &c.host_endpoints {
            out.push((
                format!("hep {}", h.value.metadata.name),
                c.host_endpoint_labels(&h.value),
            ));
        }
        out
    }

    /// The entities a selector matches.
    fn selected(&self, sel: Option<&crate::Selector>) -> Vec<String> {
        self.entities()
            .into_iter()
            .filter(|(_, labels)| sel.is_none_or(|s| s.matches(labels)))
            .map(|(name, _)| name)
            .collect()
    }

    /// The endpoints a policy applies to (policies apply to endpoints, never to network sets).
    fn applies_to(&self, p: &PolicyIr) -> Vec<String> {
        self.selected(Some(&p.selector))
            .into_iter()
            .filter(|name| name.starts_with("wep") || name.starts_with("hep"))
            .collect()
    }

    fn policy(&self, name: &str) -> &PolicyIr {
        self.config
            .policies
            .iter()
            .find(|p| p.id.name == name)
            .unwrap_or_else(|| panic!("no policy {name}"))
    }
}

fn ingress(p: &PolicyIr) -> &[RuleIr] {
    p.ingress.as_deref().expect("applies to ingress")
}

fn egress(p: &PolicyIr) -> &[RuleIr] {
    p.egress.as_deref().expect("applies to egress")
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

#[test]
fn endpoint_labels_fold_in_namespace_profiles_and_calico_labels() {
    let w = World::new("");
    let c = &w.config;
    let db = &c.workload_endpoints[1].value;
    let labels = c.endpoint_labels(db);
    let expect: BTreeMap<String, String> = [
        ("app", "db"),
        ("pcns.env", "prod"),
        ("pcns.team", "web"),
        ("pcns.projectcalico.org/name", "shop"),
        ("pcns.kubernetes.io/metadata.name", "shop"),
        ("projectcalico.org/namespace", "shop"),
        ("projectcalico.org/orchestrator", ""),
        ("projectcalico.org/serviceaccount", "db-sa"),
        ("pcsa.projectcalico.org/name", "db-sa"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expect);
    let web = &c.workload_endpoints[0].value;
    assert_eq!(
        c.endpoint_labels(web)["projectcalico.org/orchestrator"],
        "k8s"
    );
}

#[test]
fn own_labels_win_over_profiles_and_the_first_profile_wins() {
    let c = load_ok(&[(
        "a.yaml",
        "\
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: first}
spec: {labelsToApply: {a: from-first, b: from-first}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: second}
spec: {labelsToApply: {a: from-second, b: from-second, c: from-second}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: w
  labels: {a: own, pcns.env: forged, pcsa.x: forged, projectcalico.org/namespace: forged}
spec: {node: n, interfaceName: cali1, profiles: [first, second]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h, labels: {a: own}}
spec: {node: n, interfaceName: eth0, profiles: [second, first]}
",
    )]);
    let labels = c.endpoint_labels(&c.workload_endpoints[0].value);
    assert_eq!(labels["a"], "own");
    assert_eq!(labels["b"], "from-first");
    assert_eq!(labels["c"], "from-second");
    // Labels that would make an endpoint pose as another namespace's are dropped.
    assert!(!labels.contains_key("pcns.env"));
    assert!(!labels.contains_key("pcsa.x"));
    assert_eq!(labels["projectcalico.org/namespace"], "default");
    // Even without a Namespace resource, the namespace's name is a label.
    assert_eq!(labels["pcns.projectcalico.org/name"], "default");
    let hep = c.host_endpoint_labels(&c.host_endpoints[0].value);
    assert_eq!(hep["a"], "own");
    assert_eq!(hep["b"], "from-second");
    assert!(!hep.contains_key("projectcalico.org/namespace"));
}

#[test]
fn namespace_and_default_allow_profiles_are_made() {
    let w = World::new("");
    let c = &w.config;
    let kns = c.profile("kns.shop").unwrap();
    assert_eq!(kns.source, c.namespaces[0].source);
    assert_eq!(kns.value.spec.labels_to_apply["pcns.env"], "prod");
    assert_eq!(
        kns.value.spec.labels_to_apply["pcns.projectcalico.org/name"],
        "shop"
    );
    // As the API server labels every Namespace.
    assert_eq!(
        kns.value.spec.labels_to_apply["pcns.kubernetes.io/metadata.name"],
        "shop"
    );
    let (ingress, egress) = c.profile_rules("kns.shop").unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].action, Action::Allow);
    assert_eq!(ingress[0].source, EntityIr::default());
    assert_eq!(egress, ingress);
    let allow = c.profile(crate::DEFAULT_ALLOW_PROFILE).unwrap();
    assert_eq!(allow.source, crate::Source::builtin());
    assert!(c.profile_rules(crate::DEFAULT_ALLOW_PROFILE).is_some());
    assert!(c.profile_rules("nope").is_none());
    // Made profiles are not counted as resources read.
    assert_eq!(c.resource_count(), 8);
    assert_eq!(c.profiles.len(), 3);
}

#[test]
fn user_profile_rules_become_ir() {
    let c = load_ok(&[(
        "p.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\nspec:\n  ingress:\n  - {action: Deny, protocol: TCP, destination: {ports: [22]}}\n  - {action: Allow, source: {selector: \"app == 'x'\"}}\n",
    )]);
    let (ingress, egress) = c.profile_rules("p").unwrap();
    assert!(egress.is_empty());
    assert_eq!(ingress[0].action, Action::Deny);
    assert_eq!(ingress[0].destination.ports, [PortMatch::single(22)]);
    // Profile rules are global: their selectors are not scoped to a namespace.
    assert_eq!(ingress[1].index, 1);
    assert_eq!(
        ingress[1].source.selector.as_ref().unwrap().to_string(),
        "app == 'x'"
    );
}

#[test]
fn calico_network_policy_is_scoped_to_its_namespace() {
    let w = World::new(
        "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec:
  order: 10
  selector: app == 'web'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
  - action: Allow
    source: {namespaceSelector: env == 'test', selector: app == 'web'}
  - action: Allow
    source: {namespaceSelector: all()}
  - action: Allow
    source: {namespaceSelector: global()}
  - action: Allow
    source: {notSelector: app == 'web'}
  - action: Deny
    source: {nets: [10.0.0.0/8]}
",
    );
    let p = w.policy("np");
    assert_eq!(p.tier, "default");
    assert_eq!(p.order, Some(10.0));
    assert_eq!(w.applies_to(p), ["wep shop/web"]);
    // Egress is not covered: only ingress rules were written and types were not.
    assert!(p.egress.is_none());
    let r = ingress(p);
    assert_eq!(
        w.selected(r[0].source.selector.as_ref()),
        ["wep shop/web", "set shop/web-set"]
    );
    assert_eq!(w.selected(r[1].source.selector.as_ref()), ["wep lab/web"]);
    assert_eq!(
        w.selected(r[2].source.selector.as_ref()),
        [
            "wep shop/web",
            "wep shop/db",
            "wep lab/web",
            "set shop/web-set"
        ]
    );
    assert_eq!(
        w.selected(r[3].source.selector.as_ref()),
        ["gset world", "hep host-eth0"]
    );
    // A notSelector alone scopes the positive side to the namespace; the notSelector itself
    // is not scoped, as in Calico.
    assert_eq!(
        w.selected(r[4].source.selector.as_ref()),
        ["wep shop/web", "wep shop/db", "set shop/web-set"]
    );
    assert_eq!(
        w.selected(r[4].source.not_selector.as_ref()),
        [
            "wep shop/web",
            "wep lab/web",
            "set shop/web-set",
            "gset world",
            "hep host-eth0"
        ]
    );
    // Nets alone leave the selector empty: any address in them.
    assert_eq!(r[5].source.selector, None);
    assert_eq!(r[5].source.nets, [cidr("10.0.0.0/8")]);
    assert_eq!(r[5].action, Action::Deny);
    assert_eq!(
        r.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
}

#[test]
fn global_network_policy_ranges_over_everything() {
    let w = World::new(
        "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: gnp}
spec:
  selector: app == 'web'
  egress:
  - action: Allow
    destination: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: in-prod}
spec:
  namespaceSelector: env == 'prod'
  types: [Ingress, Egress]
  ingress:
  - action: Pass
    metadata: {annotations: {why: because}}
",
    );
    let p = w.policy("gnp");
    assert!(p.ingress.is_none());
    assert_eq!(
        w.applies_to(p),
        ["wep shop/web", "wep lab/web", "hep host-eth0"]
    );
    assert_eq!(
        w.selected(egress(p)[0].destination.selector.as_ref()),
        [
            "wep shop/web",
            "wep lab/web",
            "set shop/web-set",
            "gset world",
            "hep host-eth0"
        ]
    );
    let p = w.policy("in-prod");
    assert_eq!(w.applies_to(p), ["wep shop/web", "wep shop/db"]);
    // Types listed explicitly: egress applies with no rules, which allows nothing.
    assert_eq!(p.egress.as_deref(), Some(&[][..]));
    assert_eq!(ingress(p)[0].action, Action::Pass);
    assert_eq!(ingress(p)[0].metadata_annotations["why"], "because");
}

#[test]
fn service_account_matches_use_the_endpoint_service_account() {
    let w = World::new(
        "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sa}
spec:
  serviceAccountSelector: projectcalico.org/name == 'db-sa'
  ingress:
  - action: Allow
    source: {serviceAccounts: {names: [db-sa]}}
  - action: Allow
    source: {serviceAccounts: {selector: projectcalico.org/name starts with 'db'}, selector: app == 'db'}
",
    );
    let p = w.policy("sa");
    assert_eq!(w.applies_to(p), ["wep shop/db"]);
    assert_eq!(
        w.selected(ingress(p)[0].source.selector.as_ref()),
        ["wep shop/db"]
    );
    assert_eq!(
        w.selected(ingress(p)[1].source.selector.as_ref()),
        ["wep shop/db"]
    );
}

#[test]
fn kubernetes_policy_defaults() {
    let w = World::new(
        "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: with-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only, namespace: lab}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: In, values: [web, db]}]
  policyTypes: [Egress]
  ingress:
  - {}
",
    );
    let p = w.policy("deny-all");
    assert_eq!(p.id.kind, crate::Kind::KubernetesNetworkPolicy);
    assert_eq!((p.tier.as_str(), p.order), ("default", Some(1000.0)));
    // Every pod of the namespace, and nothing that is not a pod (the network set).
    assert_eq!(w.applies_to(p), ["wep shop/web", "wep shop/db"]);
    // Ingress by default, with no rules: deny all ingress. Egress untouched.
    assert_eq!(p.ingress.as_deref(), Some(&[][..]));
    assert!(p.egress.is_none());

    let p = w.policy("with-egress");
    assert_eq!(w.applies_to(p), ["wep shop/web"]);
    assert_eq!(p.ingress.as_deref(), Some(&[][..]));
    // An empty rule allows everything.
    let r = egress(p);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].action, Action::Allow);
    assert_eq!(
        (r[0].protocol, &r[0].destination),
        (None, &EntityIr::default())
    );

    let p = w.policy("egress-only");
    assert_eq!(w.applies_to(p), ["wep lab/web"]);
    assert!(p.ingress.is_none());
    assert_eq!(p.egress.as_deref(), Some(&[][..]));
}

#[test]
fn kubernetes_peers_or_and_selectors_within_a_peer_and() {
    let w = World::new(
        "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: peers, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - namespaceSelector: {matchLabels: {env: test}}
    - namespaceSelector: {matchLabels: {env: test}}
      podSelector: {matchLabels: {app: db}}
    - namespaceSelector: {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
  - from:
    - podSelector: {}
",
    );
    let p = w.policy("peers");
    let r = ingress(p);
    assert_eq!(r.len(), 6);
    assert_eq!(
        r.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 0, 0, 0, 0, 1]
    );
    assert!(r
        .iter()
        .all(|r| r.action == Action::Allow && r.protocol.is_none()));
    assert_eq!(w.selected(r[0].source.selector.as_ref()), ["wep shop/web"]);
    assert_eq!(w.selected(r[1].source.selector.as_ref()), ["wep lab/web"]);
    assert!(w.selected(r[2].source.selector.as_ref()).is_empty());
    assert_eq!(
        w.selected(r[3].source.selector.as_ref()),
        ["wep shop/web", "wep shop/db", "wep lab/web"]
    );
    assert_eq!(r[4].source.selector, None);
    assert_eq!(r[4].source.nets, [cidr("10.0.0.0/8")]);
    assert_eq!(r[4].source.not_nets, [cidr("10.1.0.0/16")]);
    assert_eq!(
        w.selected(r[5].source.selector.as_ref()),
        ["wep shop/web", "wep shop/db"]
    );
}

#[test]
fn kubernetes_ports_group_by_protocol_and_multiply_by_peers() {
    let w = World::new(
        "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ports, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - ports:
    - port: 80
    - {port: 81}
    - {port: 8000, endPort: 8080}
    - {port: http}
    - {protocol: UDP, port: 53}
    - {protocol: SCTP}
    from:
    - podSelector: {matchLabels: {app: web}}
    - ipBlock: {cidr: 192.168.0.0/16}
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
    ports: [{protocol: UDP, port: 53}, {protocol: UDP}]
",
    );
    let p = w.policy("ports");
    let r = ingress(p);
    // SCTP, TCP and UDP (sorted by name), each once per peer.
    let shape: Vec<(Option<u8>, Vec<PortMatch>, Vec<Cidr>)> = r
        .iter()
        .map(|r| {
            (
                r.protocol,
                r.destination.ports.clone(),
                r.source.nets.clone(),
            )
        })
        .collect();
    let tcp = vec![
        PortMatch::Named("http".into()),
        PortMatch::Range { lo: 80, hi: 81 },
        PortMatch::Range { lo: 8000, hi: 8080 },
    ];
    assert_eq!(
        shape,
        [
            (Some(132), vec![], vec![]),
            (Some(132), vec![], vec![cidr("192.168.0.0/16")]),
            (Some(6), tcp.clone(), vec![]),
            (Some(6), tcp, vec![cidr("192.168.0.0/16")]),
            (Some(17), vec![PortMatch::single(53)], vec![]),
            (
                Some(17),
                vec![PortMatch::single(53)],
                vec![cidr("192.168.0.0/16")]
            ),
        ]
    );
    assert_eq!(w.selected(r[0].source.selector.as_ref()), ["wep shop/web"]);
    // Egress: the peer and the ports are both on the destination side; a protocol without a
    // port means every port of it, which wins over the single port.
    let e = egress(p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].protocol, Some(17));
    assert_eq!(e[0].destination.nets, [cidr("10.0.0.0/8")]);
    assert!(e[0].destination.ports.is_empty());
    assert_eq!(e[0].source, EntityIr::default());
}

#[test]
fn felix_configuration_for_a_node_lays_its_own_over_the_default() {
    let c = load_ok(&[(
        "f.yaml",
        "\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfLogLevel: Info, bpfMapSizeRoute: 1000, defaultEndpointToHostAction: Return}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.n1}
spec: {bpfLogLevel: Debug, bpfAttachType: TC}
",
    )]);
    let n1 = c.felix_for_node("n1");
    assert_eq!(n1.bpf_log_level(), crate::BpfLogLevel::Debug);
    assert_eq!(n1.bpf_map_size_route(), 1000);
    assert_eq!(n1.bpf_attach_type(), crate::BpfAttachType::Tc);
    assert_eq!(
        n1.default_endpoint_to_host_action(),
        crate::EndpointToHostAction::Return
    );
    let n2 = c.felix_for_node("n2");
    assert_eq!(n2.bpf_log_level(), crate::BpfLogLevel::Info);
    assert_eq!(n2.bpf_attach_type(), crate::BpfAttachType::Tcx);
    // With no configuration at all, Calico's defaults.
    let none = load_ok(&[]).felix_for_node("n1");
    assert_eq!(none.bpf_map_size_conntrack(), 512_000);
    assert_eq!(
        none.default_endpoint_to_host_action(),
        crate::EndpointToHostAction::Drop
    );
}

#[test]
fn tiers_and_policies_come_in_evaluation_order() {
    let c = load_ok(&[(
        "t.yaml",
        "\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: last}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b}
spec: {tier: security, order: 5}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a}
spec: {tier: security}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: c}
spec: {tier: security, order: 5}
",
    )]);
    let tiers: Vec<(String, Option<f64>, Action)> = c
        .tiers_in_order()
        .into_iter()
        .map(|t| (t.name, t.order, t.default_action))
        .collect();
    assert_eq!(
        tiers,
        [
            ("security".into(), Some(100.0), Action::Pass),
            ("default".into(), Some(1_000_000.0), Action::Deny),
            ("last".into(), None, Action::Deny),
        ]
    );
    let names: Vec<&str> = c
        .policies_in_tier("security")
        .iter()
        .map(|p| p.id.name.as_str())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
    assert!(c.policies_in_tier("default").is_empty());
}

#[test]
fn policies_of_equal_order_go_by_name_whatever_their_kind() {
    // Calico breaks ties on "name/namespace/kind": the GlobalNetworkPolicy "a" comes before the
    // NetworkPolicy "b", and the Kubernetes policy "b" of namespace "x" after the Calico one of
    // namespace "w".
    let c = load_ok(&[(
        "p.yaml",
        "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b, namespace: x}
spec: {order: 1000}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: x}
spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b, namespace: w}
spec: {order: 1000}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: c}
spec: {order: 1000}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a}
spec: {order: 1000}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-b}
spec: {order: 1000}
",
    )]);
    let order: Vec<String> = c
        .policies_in_tier("default")
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(
        order,
        [
            // "a-b//..." sorts before "a//...": '-' is below '/', as the joined strings compare.
            "GlobalNetworkPolicy a-b",
            "GlobalNetworkPolicy a",
            "NetworkPolicy w/b",
            "NetworkPolicy (networking.k8s.io) x/b",
            "NetworkPolicy x/b",
            "GlobalNetworkPolicy c",
        ]
    );
}

#[test]
fn accessors_the_dataplane_uses() {
    let w = World::new("");
    let c = &w.config;
    let db = &c.workload_endpoints[1].value;
    assert_eq!(db.display_name(), "shop/db");
    assert_eq!((db.node(), db.interface_name()), ("n1", "cali2"));
    assert_eq!(db.ip_networks(), [cidr("10.0.0.2/32")]);
    assert_eq!(db.profiles(), ["kns.shop"]);
    assert_eq!(db.mac(), None);
    assert_eq!(
        c.host_endpoints[0].value.expected_ips(),
        [cidr("172.16.0.1/32")]
    );
    assert_eq!(c.network_sets[0].value.nets(), [cidr("192.168.0.0/24")]);
    assert_eq!(c.global_network_sets[0].value.nets(), [cidr("0.0.0.0/0")]);
    let named = load_ok(&[(
        "w.yaml",
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec:\n  node: n\n  interfaceName: cali9\n  mac: 02:00:00:00:00:09\n  ports: [{name: http, protocol: TCP, port: 8080}, {name: dns, protocol: UDP, port: 53}]\n",
    )]);
    let w = &named.workload_endpoints[0].value;
    assert_eq!(
        w.named_ports(),
        [("http".into(), 6, 8080), ("dns".into(), 17, 53)]
    );
    assert_eq!(w.mac(), Some([2, 0, 0, 0, 0, 9]));
}

#[test]
fn an_empty_kubernetes_policy_types_list_is_defaulted() {
    let w = World::new(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: []\n  egress: [{}]\n",
    );
    let p = w.policy("k");
    assert_eq!(p.ingress.as_deref(), Some(&[][..]));
    assert_eq!(egress(p).len(), 1);
}
