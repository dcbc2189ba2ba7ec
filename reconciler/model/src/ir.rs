//! The policy IR: the one form of policy the dataplane compiler sees, whatever resource it came
//! from. Calico NetworkPolicy, GlobalNetworkPolicy and Profile rules and Kubernetes
//! NetworkPolicy all end up here, with Calico's semantics made explicit:
//!
//! - selectors are complete predicates on an entity's labels, namespace scope folded in (every
//!   namespaced entity carries `projectcalico.org/namespace` and its namespace's labels prefixed
//!   `pcns.`; service accounts' labels are prefixed `pcsa.`);
//! - Kubernetes defaulting (policy types, TCP, order 1000, tier "default") is done;
//! - CIDRs are parsed and masked, ports and protocols are numbers.
//!
//! Converting checks as it goes: each function records problems with the path of the value at
//! fault, so one walk both validates and converts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diag::{ResourceId, Source};
use crate::net::{self, Cidr, IntOrString, PortMatch, PROTO_ICMP, PROTO_ICMPV6};
use crate::problems::Problems;
use crate::resources::calico::{
    Action, EntityRule, GlobalNetworkPolicy, IcmpFields, NetworkPolicy, Rule,
};
use crate::resources::k8s::{KubernetesNetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use crate::resources::meta::{LabelSelector, LabelSelectorOperator, Labels, PolicyType};
use crate::selector::{
    Selector, NAMESPACE_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_LABEL_PREFIX,
};
use crate::validate;
use crate::yaml::Path;

/// One policy, ready for the compiler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyIr {
    pub id: ResourceId,
    pub source: Source,
    pub tier: String,
    /// Lower first; None sorts after every number.
    pub order: Option<f64>,
    /// The endpoints the policy applies to; restricted to the policy's namespace for namespaced
    /// kinds.
    pub selector: Selector,
    /// None: the policy does not apply to ingress. Some(empty): it applies and allows nothing.
    pub ingress: Option<Vec<RuleIr>>,
    pub egress: Option<Vec<RuleIr>>,
    pub do_not_track: bool,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
}

/// One rule. Everything that is set must match for the rule to apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleIr {
    /// Position in the resource's rule list (for a Kubernetes policy: the Kubernetes rule's
    /// index, shared by the rules it expands to).
    pub index: usize,
    pub action: Action,
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: EntityIr,
    pub destination: EntityIr,
    pub metadata_annotations: Labels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

/// One side of a rule. Empty lists and None mean "anything".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntityIr {
    pub nets: Vec<Cidr>,
    pub not_nets: Vec<Cidr>,
    /// Matches entities (endpoints, network sets) by their labels, namespace scope included.
    pub selector: Option<Selector>,
    /// Excludes entities by their labels; as in Calico, not scoped to a namespace.
    pub not_selector: Option<Selector>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

/// The rule that allows everything, as in the profiles Calico makes for namespaces.
pub(crate) fn allow_all_rule() -> RuleIr {
    RuleIr {
        index: 0,
        action: Action::Allow,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: EntityIr::default(),
        destination: EntityIr::default(),
        metadata_annotations: Labels::new(),
    }
}

/// Calico's defaulting of `types`: Ingress unless there are only egress rules; both when there
/// are rules for both.
fn policy_types(
    types: &Option<Vec<PolicyType>>,
    ingress: &[Rule],
    egress: &[Rule],
) -> (bool, bool) {
    match types {
        Some(t) if !t.is_empty() => (
            t.contains(&PolicyType::Ingress),
            t.contains(&PolicyType::Egress),
        ),
        _ => (egress.is_empty() || !ingress.is_empty(), !egress.is_empty()),
    }
}

fn check_order(order: Option<f64>, path: &Path, p: &mut Problems) -> Option<f64> {
    match order {
        Some(o) if !o.is_finite() => {
            p.at(
                &path.key("order"),
                "order must be a number; write e.g. order: 100",
            );
            None
        }
        o => o,
    }
}

/// Converts a Calico NetworkPolicy (namespaced).
pub(crate) fn network_policy(
    np: &NetworkPolicy,
    id: ResourceId,
    source: Source,
    p: &mut Problems,
) -> PolicyIr {
    let ns = id.namespace.clone().unwrap_or_default();
    let spec = &np.spec;
    let path = Path::root().key("spec");
    let own = p
        .selector(&path.key("selector"), spec.selector.as_deref(), false)
        .unwrap_or_else(Selector::all);
    let mut selector = own.and(Selector::label_eq(NAMESPACE_LABEL, &ns));
    if let Some(sa) = p.selector(
        &path.key("serviceAccountSelector"),
        spec.service_account_selector.as_deref(),
        false,
    ) {
        selector = selector.and(sa.prefix_labels(SERVICE_ACCOUNT_LABEL_PREFIX));
    }
    let (ingress, egress) = policy_types(&spec.types, &spec.ingress, &spec.egress);
    PolicyIr {
        tier: spec.tier.clone().unwrap_or_else(|| "default".into()),
        order: check_order(spec.order, &path, p),
        selector,
        ingress: ingress.then(|| rules(&spec.ingress, &path.key("ingress"), Some(&ns), p)),
        egress: egress.then(|| rules(&spec.egress, &path.key("egress"), Some(&ns), p)),
        do_not_track: false,
        pre_dnat: false,
        apply_on_forward: false,
        id,
        source,
    }
}

/// Converts a Calico GlobalNetworkPolicy.
pub(crate) fn global_network_policy(
    gnp: &GlobalNetworkPolicy,
    id: ResourceId,
    source: Source,
    p: &mut Problems,
) -> PolicyIr {
    let spec = &gnp.spec;
    let path = Path::root().key("spec");
    let mut selector = p
        .selector(&path.key("selector"), spec.selector.as_deref(), false)
        .unwrap_or_else(Selector::all);
    if let Some(ns) = p.selector(
        &path.key("namespaceSelector"),
        spec.namespace_selector.as_deref(),
        false,
    ) {
        selector = selector.and(ns.to_entity_namespace_selector());
    }
    if let Some(sa) = p.selector(
        &path.key("serviceAccountSelector"),
        spec.service_account_selector.as_deref(),
        false,
    ) {
        selector = selector.and(sa.to_entity_service_account_selector());
    }
    let (ingress, egress) = policy_types(&spec.types, &spec.ingress, &spec.egress);
    if spec.do_not_track && spec.pre_dnat {
        p.at(
            &path.key("preDNAT"),
            "preDNAT and doNotTrack cannot both be true; keep one of them",
        );
    }
    if spec.pre_dnat && !spec.egress.is_empty() {
        p.at(
            &path.key("egress"),
            "preDNAT policy cannot have egress rules; move them to another policy",
        );
    }
    let types_egress = spec
        .types
        .as_ref()
        .is_some_and(|t| t.contains(&PolicyType::Egress));
    if spec.pre_dnat && types_egress {
        p.at(
            &path.key("types"),
            "preDNAT policy cannot have type Egress; write types: [Ingress]",
        );
    }
    if (spec.pre_dnat || spec.do_not_track) && !spec.apply_on_forward {
        let field = if spec.pre_dnat {
            "preDNAT"
        } else {
            "doNotTrack"
        };
        p.at(
            &path.key("applyOnForward"),
            format!("{field} policy must also set applyOnForward: true"),
        );
    }
    PolicyIr {
        tier: spec.tier.clone().unwrap_or_else(|| "default".into()),
        order: check_order(spec.order, &path, p),
        selector,
        ingress: ingress.then(|| rules(&spec.ingress, &path.key("ingress"), None, p)),
        egress: egress.then(|| rules(&spec.egress, &path.key("egress"), None, p)),
        do_not_track: spec.do_not_track,
        pre_dnat: spec.pre_dnat,
        apply_on_forward: spec.apply_on_forward,
        id,
        source,
    }
}

/// Converts the rules of a policy or profile. `ns` is the namespace of a namespaced policy; its
/// rule selectors without a namespaceSelector only select entities of that namespace.
pub(crate) fn rules(
    rules: &[Rule],
    path: &Path,
    ns: Option<&str>,
    p: &mut Problems,
) -> Vec<RuleIr> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(r, i, &path.index(i), ns, p))
        .collect()
}

fn rule(r: &Rule, index: usize, path: &Path, ns: Option<&str>, p: &mut Problems) -> RuleIr {
    let ip_version = match r.ip_version {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => {
            p.at(
                &path.key("ipVersion"),
                format!("ipVersion {v} is not 4 or 6"),
            );
            None
        }
    };
    let protocol = r
        .protocol
        .as_ref()
        .and_then(|v| match net::parse_protocol(v) {
            Ok(n) => Some(n),
            Err(e) => {
                p.at(&path.key("protocol"), e);
                None
            }
        });
    let not_protocol = r
        .not_protocol
        .as_ref()
        .and_then(|v| match net::parse_protocol(v) {
            Ok(n) => Some(n),
            Err(e) => {
                p.at(&path.key("notProtocol"), e);
                None
            }
        });
    for (proto, field) in [(protocol, "protocol"), (not_protocol, "notProtocol")] {
        match (proto, ip_version) {
            (Some(PROTO_ICMP), Some(6)) => p.at(
                &path.key(field),
                "ICMP is IPv4's; write ICMPv6 for ipVersion 6, or ipVersion: 4",
            ),
            (Some(PROTO_ICMPV6), Some(4)) => p.at(
                &path.key(field),
                "ICMPv6 is IPv6's; write ICMP for ipVersion 4, or ipVersion: 6",
            ),
            _ => {}
        }
    }
    let is_icmp = matches!(protocol, Some(PROTO_ICMP | PROTO_ICMPV6));
    let icmp = icmp_match(&r.icmp, &path.key("icmp"), is_icmp, p);
    let not_icmp = icmp_match(&r.not_icmp, &path.key("notICMP"), is_icmp, p);
    if r.http.is_some() {
        p.at(
            &path.key("http"),
            "HTTP matches are not supported by weft yet: it cannot see requests; remove http from the rule",
        );
    }
    let source = entity(&r.source, &path.key("source"), ns, p);
    let destination = entity(&r.destination, &path.key("destination"), ns, p);
    for (side, e, field) in [
        ("source", &source.ports, "ports"),
        ("source", &source.not_ports, "notPorts"),
        ("destination", &destination.ports, "ports"),
        ("destination", &destination.not_ports, "notPorts"),
    ] {
        check_ports_protocol(e, protocol, &path.key(side).key(field), p);
    }
    check_ip_versions(r, ip_version, &source, &destination, path, p);
    RuleIr {
        index,
        action: r.action,
        ip_version,
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        source,
        destination,
        metadata_annotations: r
            .metadata
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default(),
    }
}

fn icmp_match(
    f: &Option<IcmpFields>,
    path: &Path,
    is_icmp: bool,
    p: &mut Problems,
) -> Option<IcmpMatch> {
    let f = f.as_ref()?;
    if !is_icmp {
        p.at(
            path,
            "ICMP matches need protocol ICMP or ICMPv6; add protocol: ICMP (or ICMPv6) to the rule",
        );
    }
    let icmp_type = match f.icmp_type {
        None => None,
        Some(t) => match u8::try_from(t) {
            Ok(t) if t <= 254 => Some(t),
            _ => {
                p.at(
                    &path.key("type"),
                    format!("ICMP type {t} is out of range; write 0 to 254"),
                );
                None
            }
        },
    };
    let code = match f.code {
        None => None,
        Some(c) => match u8::try_from(c) {
            Ok(c) => Some(c),
            Err(_) => {
                p.at(
                    &path.key("code"),
                    format!("ICMP code {c} is out of range; write 0 to 255"),
                );
                None
            }
        },
    };
    if f.code.is_some() && f.icmp_type.is_none() {
        p.at(
            &path.key("code"),
            "an ICMP code needs an ICMP type; add type to the match",
        );
    }
    icmp_type.map(|icmp_type| IcmpMatch { icmp_type, code })
}

/// Numeric ports only make sense with a protocol that has ports; named ports may also go
/// without a protocol (the endpoint's declaration says which), as in Calico.
fn check_ports_protocol(ports: &[PortMatch], protocol: Option<u8>, path: &Path, p: &mut Problems) {
    if ports.is_empty() {
        return;
    }
    match protocol {
        Some(proto) if !net::protocol_has_ports(proto) => p.at(
            path,
            format!(
                "ports need protocol TCP, UDP or SCTP, not {}; change the protocol or remove the ports",
                net::protocol_name(proto)
            ),
        ),
        None if ports.iter().any(|m| matches!(m, PortMatch::Range { .. })) => p.at(
            path,
            "numeric ports need a protocol; add protocol: TCP (or UDP, SCTP) to the rule",
        ),
        _ => {}
    }
}

/// A rule holds one IP version: its CIDRs must agree with each other and with ipVersion.
fn check_ip_versions(
    r: &Rule,
    ip_version: Option<u8>,
    source: &EntityIr,
    destination: &EntityIr,
    path: &Path,
    p: &mut Problems,
) {
    let mut seen: Option<u8> = ip_version;
    let fields = [
        ("source", "nets", &source.nets, &r.source.nets),
        ("source", "notNets", &source.not_nets, &r.source.not_nets),
        (
            "destination",
            "nets",
            &destination.nets,
            &r.destination.nets,
        ),
        (
            "destination",
            "notNets",
            &destination.not_nets,
            &r.destination.not_nets,
        ),
    ];
    for (side, field, cidrs, _) in fields {
        for (i, c) in cidrs.iter().enumerate() {
            let v = c.ip_version();
            match seen {
                None => seen = Some(v),
                Some(s) if s != v => {
                    let why = if ip_version.is_some() {
                        format!("the rule has ipVersion {s}")
                    } else {
                        format!("the rule already has IPv{s} networks")
                    };
                    p.at(
                        &path.key(side).key(field).index(i),
                        format!(
                            "{c} is an IPv{v} network but {why}; write one rule per IP version"
                        ),
                    );
                    return;
                }
                Some(_) => {}
            }
        }
    }
}

fn cidr_list(values: &[String], path: &Path, p: &mut Problems) -> Vec<Cidr> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                p.at(&path.index(i), e);
                None
            }
        })
        .collect()
}

fn port_list(values: &[IntOrString], path: &Path, p: &mut Problems) -> Vec<PortMatch> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match net::parse_rule_port(v) {
            Ok(m) => Some(m),
            Err(e) => {
                p.at(&path.index(i), e);
                None
            }
        })
        .collect()
}

/// One side of a Calico rule, with Calico's namespace scoping: the selectors (selector, service
/// accounts) are ANDed with the namespace selector, or with "in the policy's namespace" for a
/// namespaced policy, as soon as any selector field is used.
fn entity(e: &EntityRule, path: &Path, ns: Option<&str>, p: &mut Problems) -> EntityIr {
    let nets = cidr_list(&e.nets, &path.key("nets"), p);
    let not_nets = cidr_list(&e.not_nets, &path.key("notNets"), p);
    for (i, c) in not_nets.iter().enumerate() {
        if c.is_everything() {
            p.at(
                &path.key("notNets").index(i),
                format!(
                    "notNets {c} excludes every address, so the rule could never match; remove it"
                ),
            );
        }
    }
    if e.services.is_some() {
        p.at(
            &path.key("services"),
            "service matches are not supported by weft yet; select the service's endpoints with a selector instead",
        );
    }
    let selector = p.selector(&path.key("selector"), e.selector.as_deref(), false);
    let not_selector = p.selector(&path.key("notSelector"), e.not_selector.as_deref(), false);
    let ns_path = path.key("namespaceSelector");
    let namespace_selector = p.selector(&ns_path, e.namespace_selector.as_deref(), true);
    if let Some(sel) = &namespace_selector {
        if sel.uses_global() && !sel.is_global() {
            p.at(
                &ns_path,
                "global() cannot be combined with other expressions; write namespaceSelector: global() alone",
            );
        }
    }
    let service_accounts = e.service_accounts.as_ref().and_then(|sa| {
        let sa_path = path.key("serviceAccounts");
        let by_labels = p
            .selector(&sa_path.key("selector"), sa.selector.as_deref(), false)
            .map(|s| s.prefix_labels(SERVICE_ACCOUNT_LABEL_PREFIX));
        let by_name = (!sa.names.is_empty())
            .then(|| Selector::label_in(SERVICE_ACCOUNT_LABEL, sa.names.iter().cloned()));
        match (by_labels, by_name) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        }
    });

    let endpoints = match (service_accounts, selector) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    };
    let scope = match (&namespace_selector, ns) {
        (Some(sel), _) => Some(sel.to_entity_namespace_selector()),
        (None, Some(ns)) => Some(Selector::label_eq(NAMESPACE_LABEL, ns)),
        (None, None) => None,
    };
    let selector = match scope {
        Some(scope)
            if endpoints.is_some() || not_selector.is_some() || namespace_selector.is_some() =>
        {
            Some(match endpoints {
                Some(sel) => scope.and(sel),
                None => scope,
            })
        }
        _ => endpoints,
    };
    EntityIr {
        nets,
        not_nets,
        selector,
        not_selector,
        ports: port_list(&e.ports, &path.key("ports"), p),
        not_ports: port_list(&e.not_ports, &path.key("notPorts"), p),
    }
}

/// A Kubernetes label selector as a Calico selector (an empty one selects everything).
pub(crate) fn label_selector(ls: &LabelSelector, path: &Path, p: &mut Problems) -> Selector {
    validate::labels(&ls.match_labels, &path.key("matchLabels"), p);
    let mut sel = Selector::all();
    for (k, v) in &ls.match_labels {
        sel = sel.and(Selector::label_eq(k, v));
    }
    for (i, e) in ls.match_expressions.iter().enumerate() {
        let path = path.key("matchExpressions").index(i);
        validate::label_key(&e.key, &path.key("key"), p);
        for (j, v) in e.values.iter().enumerate() {
            validate::label_value(v, &path.key("values").index(j), p);
        }
        let term = match e.operator {
            LabelSelectorOperator::In | LabelSelectorOperator::NotIn => {
                if e.values.is_empty() {
                    p.at(
                        &path.key("values"),
                        format!("operator {:?} needs at least one value", e.operator),
                    );
                }
                if e.operator == LabelSelectorOperator::In {
                    Selector::label_in(&e.key, e.values.iter().cloned())
                } else {
                    Selector::label_not_in(&e.key, e.values.iter().cloned())
                }
            }
            LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist => {
                if !e.values.is_empty() {
                    p.at(
                        &path.key("values"),
                        format!("operator {:?} takes no values; remove them", e.operator),
                    );
                }
                if e.operator == LabelSelectorOperator::Exists {
                    Selector::has(&e.key)
                } else {
                    Selector::has(&e.key).not()
                }
            }
        };
        sel = sel.and(term);
    }
    sel
}

/// Kubernetes policies select pods. In weft pods are workload endpoints, which (unlike network
/// sets) always carry the orchestrator label; Calico instead requires orchestrator "k8s", which
/// would leave out endpoints written by hand.
fn pods() -> Selector {
    Selector::has(ORCHESTRATOR_LABEL)
}

/// Converts a Kubernetes NetworkPolicy the way Calico's converter does, with the API server's
/// defaulting: tier "default", order 1000, TCP when no protocol, policy types from the rules.
/// Each peer becomes its own rule (peers are alternatives), and within a peer the pod and
/// namespace selectors are ANDed; ports are grouped per protocol into one rule per (protocol,
/// peer).
pub(crate) fn kubernetes_network_policy(
    np: &KubernetesNetworkPolicy,
    id: ResourceId,
    source: Source,
    p: &mut Problems,
) -> PolicyIr {
    let ns = id.namespace.clone().unwrap_or_default();
    let spec = &np.spec;
    let path = Path::root().key("spec");
    let selector = Selector::label_eq(NAMESPACE_LABEL, &ns)
        .and(pods())
        .and(label_selector(
            &spec.pod_selector,
            &path.key("podSelector"),
            p,
        ));
    // The API server's defaulting: Ingress, plus Egress when there are egress rules.
    let (ingress, egress) = match &spec.policy_types {
        Some(t) if !t.is_empty() => (
            t.contains(&PolicyType::Ingress),
            t.contains(&PolicyType::Egress),
        ),
        _ => (true, !spec.egress.is_empty()),
    };
    let mut ingress_rules = Vec::new();
    for (i, r) in spec.ingress.iter().enumerate() {
        let rp = path.key("ingress").index(i);
        ingress_rules.extend(k8s_rule(&r.from, &r.ports, i, &rp, "from", &ns, true, p));
    }
    let mut egress_rules = Vec::new();
    for (i, r) in spec.egress.iter().enumerate() {
        let rp = path.key("egress").index(i);
        egress_rules.extend(k8s_rule(&r.to, &r.ports, i, &rp, "to", &ns, false, p));
    }
    PolicyIr {
        tier: "default".into(),
        order: Some(1000.0),
        selector,
        ingress: ingress.then_some(ingress_rules),
        egress: egress.then_some(egress_rules),
        do_not_track: false,
        pre_dnat: false,
        apply_on_forward: false,
        id,
        source,
    }
}

#[allow(clippy::too_many_arguments)]
fn k8s_rule(
    peers: &[NetworkPolicyPeer],
    ports: &[NetworkPolicyPort],
    index: usize,
    path: &Path,
    peers_field: &'static str,
    ns: &str,
    ingress: bool,
    p: &mut Problems,
) -> Vec<RuleIr> {
    // Ports per protocol; None as the port list means every port of that protocol.
    let mut by_protocol: BTreeMap<String, (u8, Option<Vec<PortMatch>>)> = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.key("ports").index(i);
        let proto = port
            .protocol
            .unwrap_or(crate::resources::k8s::KubernetesProtocol::Tcp);
        let name = net::protocol_name(proto.number()).into_owned();
        let matched = k8s_port(port, &pp, p);
        let entry = by_protocol
            .entry(name)
            .or_insert((proto.number(), Some(Vec::new())));
        match (matched, &mut entry.1) {
            (None, all) => *all = None,
            (Some(m), Some(list)) => list.push(m),
            (Some(_), None) => {}
        }
    }
    let groups: Vec<(Option<u8>, Vec<PortMatch>)> = if by_protocol.is_empty() {
        vec![(None, Vec::new())]
    } else {
        by_protocol
            .into_values()
            .map(|(proto, ports)| (Some(proto), simplify_ports(ports.unwrap_or_default())))
            .collect()
    };
    let entities: Vec<EntityIr> = if peers.is_empty() {
        vec![EntityIr::default()]
    } else {
        peers
            .iter()
            .enumerate()
            .map(|(i, peer)| k8s_peer(peer, &path.key(peers_field).index(i), ns, p))
            .collect()
    };
    let mut out = Vec::new();
    for (protocol, ports) in &groups {
        for peer in &entities {
            let mut rule = allow_all_rule();
            rule.index = index;
            rule.protocol = *protocol;
            if ingress {
                rule.source = peer.clone();
                rule.destination.ports = ports.clone();
            } else {
                rule.destination = EntityIr {
                    ports: ports.clone(),
                    ..peer.clone()
                };
            }
            out.push(rule);
        }
    }
    out
}

/// The port of a Kubernetes policy port entry; None means every port.
fn k8s_port(port: &NetworkPolicyPort, path: &Path, p: &mut Problems) -> Option<PortMatch> {
    let value = port.port.as_ref()?;
    match value {
        IntOrString::Int(n) => {
            let lo = match u16::try_from(*n) {
                Ok(lo) if lo > 0 => lo,
                _ => {
                    p.at(
                        &path.key("port"),
                        format!("port {n} is out of range; write 1 to 65535"),
                    );
                    return Some(PortMatch::single(0));
                }
            };
            let hi = match port.end_port {
                None => lo,
                Some(end) => match u16::try_from(end) {
                    Ok(hi) if hi >= lo => hi,
                    _ => {
                        p.at(
                            &path.key("endPort"),
                            format!("endPort {end} must be from port ({lo}) to 65535"),
                        );
                        lo
                    }
                },
            };
            Some(PortMatch::Range { lo, hi })
        }
        IntOrString::String(name) => {
            if let Some(why) = net::iana_port_name_problem(name) {
                p.at(
                    &path.key("port"),
                    format!("{name:?} is not a port number or port name: a name {why}"),
                );
            }
            if port.end_port.is_some() {
                p.at(
                    &path.key("endPort"),
                    "endPort needs a numeric port; write the first port number as port",
                );
            }
            Some(PortMatch::Named(name.clone()))
        }
    }
}

/// Merges numeric ranges that overlap or touch; named ports first, as Calico's converter does.
fn simplify_ports(ports: Vec<PortMatch>) -> Vec<PortMatch> {
    let mut named: Vec<PortMatch> = Vec::new();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for m in ports {
        match m {
            PortMatch::Named(_) => {
                if !named.contains(&m) {
                    named.push(m)
                }
            }
            PortMatch::Range { lo, hi } => ranges.push((lo, hi)),
        }
    }
    ranges.sort();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    named
        .into_iter()
        .chain(
            merged
                .into_iter()
                .map(|(lo, hi)| PortMatch::Range { lo, hi }),
        )
        .collect()
}

fn k8s_peer(peer: &NetworkPolicyPeer, path: &Path, ns: &str, p: &mut Problems) -> EntityIr {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            p.at(
                &path.key("ipBlock"),
                "ipBlock cannot be combined with podSelector or namespaceSelector; write them as separate peers",
            );
        }
        let bp = path.key("ipBlock");
        let cidr = match block.cidr.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                p.at(&bp.key("cidr"), e);
                None
            }
        };
        let not_nets = cidr_list(&block.except, &bp.key("except"), p);
        if let Some(cidr) = cidr {
            for (i, ex) in not_nets.iter().enumerate() {
                if !cidr.contains_cidr(ex) || *ex == cidr {
                    p.at(
                        &bp.key("except").index(i),
                        format!("{ex} is not strictly inside {cidr}; except may only carve pieces out of cidr"),
                    );
                }
            }
        }
        return EntityIr {
            nets: cidr.into_iter().collect(),
            not_nets,
            ..EntityIr::default()
        };
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        p.at(
            path,
            "a peer needs podSelector, namespaceSelector or ipBlock; write podSelector: {} for every pod of the namespace",
        );
    }
    let pods_sel = match &peer.pod_selector {
        Some(ls) => pods().and(label_selector(ls, &path.key("podSelector"), p)),
        None => pods(),
    };
    let scope = match &peer.namespace_selector {
        Some(ls) => {
            label_selector(ls, &path.key("namespaceSelector"), p).to_entity_namespace_selector()
        }
        None => Selector::label_eq(NAMESPACE_LABEL, ns),
    };
    EntityIr {
        selector: Some(scope.and(pods_sel)),
        ..EntityIr::default()
    }
}
