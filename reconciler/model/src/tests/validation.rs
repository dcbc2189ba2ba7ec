//! Every kind of problem, with its whole message and position pinned.

use super::*;

const GNP: &str =
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n";

/// A GlobalNetworkPolicy whose spec is `spec` (indented by two spaces); the spec starts on
/// line 6.
fn gnp(spec: &str) -> String {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("{GNP}{indented}")
}

fn gnp_err(spec: &str) -> String {
    one_err(&[("p.yaml", &gnp(spec))])
}

fn gnp_errs(spec: &str) -> Vec<String> {
    load_err(&[("p.yaml", &gnp(spec))])
}

#[test]
fn bad_cidr() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  source:\n    nets: [\"10.0.0.300/8\"]"),
        "p.yaml:9:14: GlobalNetworkPolicy p: spec.ingress[0].source.nets[0]: \"10.0.0.300/8\" is not a CIDR; write an address and prefix length such as 10.0.0.0/8"
    );
    assert_eq!(
        gnp_err("egress:\n- action: Allow\n  destination:\n    notNets:\n    - 10.0.0.0/8\n    - fd00::/129"),
        "p.yaml:11:9: GlobalNetworkPolicy p: spec.egress[0].destination.notNets[1]: \"fd00::/129\" is not a CIDR; write an address and prefix length such as fd00::/64"
    );
}

#[test]
fn host_bits_are_masked_not_refused() {
    let c = load_ok(&[(
        "p.yaml",
        &gnp("ingress:\n- action: Allow\n  source:\n    nets: [10.1.2.3/8, 10.9.9.9]"),
    )]);
    let nets: Vec<String> = c.policies[0].ingress.as_ref().unwrap()[0]
        .source
        .nets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "10.9.9.9/32"]);
}

#[test]
fn catch_all_not_nets_would_never_match() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  source:\n    notNets: [0.0.0.0/0]"),
        "p.yaml:9:17: GlobalNetworkPolicy p: spec.ingress[0].source.notNets[0]: notNets 0.0.0.0/0 excludes every address, so the rule could never match; remove it"
    );
}

#[test]
fn a_rule_holds_one_ip_version() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  source:\n    nets: [10.0.0.0/8]\n  destination:\n    nets: [\"fd00::/64\"]"),
        "p.yaml:11:14: GlobalNetworkPolicy p: spec.ingress[0].destination.nets[0]: fd00::/64 is an IPv6 network but the rule already has IPv4 networks; write one rule per IP version"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  ipVersion: 6\n  source:\n    nets: [10.0.0.0/8]"),
        "p.yaml:10:14: GlobalNetworkPolicy p: spec.ingress[0].source.nets[0]: 10.0.0.0/8 is an IPv4 network but the rule has ipVersion 6; write one rule per IP version"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  ipVersion: 5"),
        "p.yaml:8:16: GlobalNetworkPolicy p: spec.ingress[0].ipVersion: ipVersion 5 is not 4 or 6"
    );
}

#[test]
fn ports() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: TCP\n  destination:\n    ports: [80, 70000]"),
        "p.yaml:10:19: GlobalNetworkPolicy p: spec.ingress[0].destination.ports[1]: port 70000 is out of range; write a number from 0 to 65535, a range such as 8000:8080 or a port name"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: UDP\n  destination:\n    ports: [\"9000:8000\"]"),
        "p.yaml:10:15: GlobalNetworkPolicy p: spec.ingress[0].destination.ports[0]: port range \"9000:8000\" starts after it ends; write the lower port first, such as 8000:9000"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: TCP\n  source:\n    notPorts: [\"web server\"]"),
        "p.yaml:10:18: GlobalNetworkPolicy p: spec.ingress[0].source.notPorts[0]: \"web server\" is not a port; write a number from 0 to 65535, a range such as 8000:8080 or a port name (letters, digits, '_', '.' or '-', at most 128)"
    );
}

#[test]
fn ports_need_a_protocol_that_has_ports() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  destination:\n    ports: [443]"),
        "p.yaml:9:14: GlobalNetworkPolicy p: spec.ingress[0].destination.ports: numeric ports need a protocol; add protocol: TCP (or UDP, SCTP) to the rule"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: ICMP\n  destination:\n    ports: [https]"),
        "p.yaml:10:14: GlobalNetworkPolicy p: spec.ingress[0].destination.ports: ports need protocol TCP, UDP or SCTP, not ICMP; change the protocol or remove the ports"
    );
    // Named ports may go without a protocol, as in Calico; numbered protocols count too.
    load_ok(&[("p.yaml", &gnp("ingress:\n- action: Allow\n  destination:\n    ports: [https]\n- action: Allow\n  protocol: 132\n  destination:\n    ports: [\"1:2\"]"))]);
}

#[test]
fn protocols() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: tcp"),
        "p.yaml:8:15: GlobalNetworkPolicy p: spec.ingress[0].protocol: protocol \"tcp\" is not known; protocol names are case-sensitive: write TCP"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  notProtocol: 0"),
        "p.yaml:8:18: GlobalNetworkPolicy p: spec.ingress[0].notProtocol: protocol 0 is out of range; write TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: ICMP\n  ipVersion: 6"),
        "p.yaml:8:15: GlobalNetworkPolicy p: spec.ingress[0].protocol: ICMP is IPv4's; write ICMPv6 for ipVersion 6, or ipVersion: 4"
    );
}

#[test]
fn icmp_matches() {
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  protocol: UDP\n  icmp: {type: 8}"),
        "p.yaml:9:11: GlobalNetworkPolicy p: spec.ingress[0].icmp: ICMP matches need protocol ICMP or ICMPv6; add protocol: ICMP (or ICMPv6) to the rule"
    );
    assert_eq!(
        gnp_errs("ingress:\n- action: Allow\n  protocol: ICMPv6\n  icmp: {type: 255, code: 256}\n  notICMP: {code: 1}"),
        [
            "p.yaml:9:18: GlobalNetworkPolicy p: spec.ingress[0].icmp.type: ICMP type 255 is out of range; write 0 to 254",
            "p.yaml:9:29: GlobalNetworkPolicy p: spec.ingress[0].icmp.code: ICMP code 256 is out of range; write 0 to 255",
            "p.yaml:10:21: GlobalNetworkPolicy p: spec.ingress[0].notICMP.code: an ICMP code needs an ICMP type; add type to the match",
        ]
    );
    let c = load_ok(&[("p.yaml", &gnp("ingress:\n- action: Deny\n  protocol: ICMP\n  icmp: {type: 3, code: 4}\n  notICMP: {type: 0}"))]);
    let r = &c.policies[0].ingress.as_ref().unwrap()[0];
    assert_eq!(
        r.icmp,
        Some(crate::IcmpMatch {
            icmp_type: 3,
            code: Some(4)
        })
    );
    assert_eq!(
        r.not_icmp,
        Some(crate::IcmpMatch {
            icmp_type: 0,
            code: None
        })
    );
}

#[test]
fn selector_errors_point_inside_the_selector_when_it_is_written_verbatim() {
    // Plain scalar: the column of the offending character.
    assert_eq!(
        gnp_err("selector: app == web"),
        "p.yaml:6:20: GlobalNetworkPolicy p: spec.selector: invalid selector \"app == web\": expected a quoted value after == but found label \"web\"; write e.g. app == 'value' (at column 8 of the selector)"
    );
    // Quoted without escapes: one more for the quote.
    assert_eq!(
        gnp_err("selector: \"role in {'a' 'b'}\""),
        "p.yaml:6:27: GlobalNetworkPolicy p: spec.selector: invalid selector \"role in {'a' 'b'}\": expected ',' or '}' in the set but found string 'b' (at column 14 of the selector)"
    );
    // Folded over lines: the scalar's own position.
    assert_eq!(
        gnp_err("selector: >-\n  a == 'x' &&\n  b === 'y'"),
        "p.yaml:6:13: GlobalNetworkPolicy p: spec.selector: invalid selector \"a == 'x' && b === 'y'\": expected '==' but found a single '=' (at column 17 of the selector)"
    );
}

#[test]
fn a_selector_nested_too_deep_is_a_problem_at_its_column_and_quoted_only_by_its_start() {
    // 5,000 levels overflowed the stack of validate, apply and the daemon alike.
    let deep = format!("{}a == 'b'{}", "(".repeat(5_000), ")".repeat(5_000));
    let e = gnp_err(&format!("selector: \"{deep}\""));
    // Column 13 is the opening quote's: the 65th '(' is 65 further on.
    assert_eq!(
        e,
        format!(
            "p.yaml:6:78: GlobalNetworkPolicy p: spec.selector: invalid selector \"{}\"... (10008 characters): parentheses nest more than 64 deep here; write the expression with fewer levels (&& and || chains need no parentheses) (at column 65 of the selector)",
            "(".repeat(60)
        )
    );
}

#[test]
fn every_selector_field_is_checked() {
    let errs = gnp_errs(
        "selector: \"a ==\"\nnamespaceSelector: \"(b\"\nserviceAccountSelector: c d\ningress:\n- action: Allow\n  source:\n    selector: \"&\"\n    notSelector: \"x in\"\n    namespaceSelector: \"!\"\n    serviceAccounts:\n      selector: \"y ||\"",
    );
    let fields: Vec<&str> = errs.iter().map(|e| e.split(": ").nth(2).unwrap()).collect();
    assert_eq!(
        fields,
        [
            "spec.selector",
            "spec.namespaceSelector",
            "spec.serviceAccountSelector",
            "spec.ingress[0].source.selector",
            "spec.ingress[0].source.notSelector",
            "spec.ingress[0].source.namespaceSelector",
            "spec.ingress[0].source.serviceAccounts.selector",
        ]
    );
    // Network sets' and pools' selectors too.
    let e = one_err(&[(
        "pool.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec:\n  cidr: 10.0.0.0/16\n  nodeSelector: \"!!\"\n",
    )]);
    assert!(
        e.starts_with("pool.yaml:6:20: IPPool p: spec.nodeSelector: invalid selector \"!!\""),
        "{e}"
    );
}

#[test]
fn global_is_only_for_rule_namespace_selectors() {
    assert_eq!(
        gnp_err("selector: global()"),
        "p.yaml:6:13: GlobalNetworkPolicy p: spec.selector: global() can only be used in a rule's namespaceSelector; write all() to select everything"
    );
    assert_eq!(
        gnp_err("ingress:\n- action: Allow\n  source:\n    namespaceSelector: global() && a == 'b'"),
        "p.yaml:9:26: GlobalNetworkPolicy p: spec.ingress[0].source.namespaceSelector: global() cannot be combined with other expressions; write namespaceSelector: global() alone"
    );
    load_ok(&[(
        "p.yaml",
        &gnp("ingress:\n- action: Allow\n  source:\n    namespaceSelector: global()"),
    )]);
}

#[test]
fn features_weft_cannot_honour_are_refused() {
    assert_eq!(
        gnp_errs("ingress:\n- action: Allow\n  http:\n    methods: [GET]\n- action: Allow\n  destination:\n    services: {name: api, namespace: shop}"),
        [
            "p.yaml:9:7: GlobalNetworkPolicy p: spec.ingress[0].http: HTTP matches are not supported by weft yet: it cannot see requests; remove http from the rule",
            "p.yaml:12:17: GlobalNetworkPolicy p: spec.ingress[1].destination.services: service matches are not supported by weft yet; select the service's endpoints with a selector instead",
        ]
    );
}

#[test]
fn pre_dnat_and_untracked_policy_rules() {
    assert_eq!(
        gnp_errs("preDNAT: true\ndoNotTrack: true\negress:\n- action: Allow"),
        [
            "p.yaml:6:3: GlobalNetworkPolicy p: spec.applyOnForward: preDNAT policy must also set applyOnForward: true",
            "p.yaml:6:12: GlobalNetworkPolicy p: spec.preDNAT: preDNAT and doNotTrack cannot both be true; keep one of them",
            "p.yaml:9:3: GlobalNetworkPolicy p: spec.egress: preDNAT policy cannot have egress rules; move them to another policy",
        ]
    );
}

#[test]
fn several_problems_of_one_document_are_reported_together() {
    let errs = gnp_errs(
        "selector: a = 'b'\ningress:\n- action: Allow\n  protocol: TCP\n  source:\n    nets: [300.0.0.0/8]\n  destination:\n    ports: [99999]",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("p.yaml:6:15: GlobalNetworkPolicy p: spec.selector: "),
        "{}",
        errs[0]
    );
    assert!(
        errs[1]
            .starts_with("p.yaml:11:14: GlobalNetworkPolicy p: spec.ingress[0].source.nets[0]: "),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with(
            "p.yaml:13:15: GlobalNetworkPolicy p: spec.ingress[0].destination.ports[0]: "
        ),
        "{}",
        errs[2]
    );
}

#[test]
fn problems_of_many_files_are_reported_together_sorted() {
    let errs = load_err(&[
        ("z.yaml", &gnp("order: .nan")),
        (
            "a.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: A}\n",
        ),
        ("m/x.yaml", "apiVersion: v1\nkind: Thing\n"),
    ]);
    assert_eq!(
        errs,
        [
            "a.yaml:3:18: Namespace A: metadata.name: \"A\" is not a valid Namespace name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            "m/x.yaml:2:7: kind \"Thing\" is not one weft reads; the kinds are projectcalico.org/v3: WorkloadEndpoint, HostEndpoint, NetworkPolicy, GlobalNetworkPolicy, Tier, Profile, NetworkSet, GlobalNetworkSet, FelixConfiguration, Node, IPPool; networking.k8s.io/v1: NetworkPolicy; v1: Namespace, Service, List; discovery.k8s.io/v1: EndpointSlice",
            "z.yaml:6:10: GlobalNetworkPolicy p: spec.order: order must be a number; write e.g. order: 100",
        ]
    );
}

#[test]
fn duplicates() {
    let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web\n";
    let errs = load_err(&[
        ("a.yaml", np),
        (
            "b.yaml",
            &format!("# again\n{np}---\n{np}  namespace: other\n---\n{np}  namespace: default\n"),
        ),
    ]);
    assert_eq!(
        errs,
        [
            "b.yaml:2:1: NetworkPolicy default/web: duplicate NetworkPolicy default/web (first defined at a.yaml:1:1)",
            "b.yaml:13:1: NetworkPolicy default/web: duplicate NetworkPolicy default/web (first defined at a.yaml:1:1)",
        ]
    );
    // The same name in two kinds, or a Calico and a Kubernetes NetworkPolicy, is fine.
    load_ok(&[
        ("a.yaml", np),
        ("b.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: {podSelector: {}}\n"),
    ]);
}

#[test]
fn profiles_that_clash_with_made_ones() {
    let errs = load_err(&[
        ("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"),
        ("p.yaml", "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.shop}\n---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: projectcalico-default-allow}\n"),
    ]);
    assert_eq!(
        errs,
        [
            "p.yaml:1:1: Profile kns.shop: duplicate Profile kns.shop (first defined at ns.yaml:1:1, made for the Namespace there); remove this Profile or rename it",
            "p.yaml:5:1: Profile projectcalico-default-allow: Profile projectcalico-default-allow is built in; choose another name",
        ]
    );
}

fn wep(spec: &str) -> String {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w\n  namespace: shop\nspec:\n{indented}")
}

const WEP_OK: &str = "node: host1\ninterfaceName: cali1\n";

#[test]
fn missing_profiles() {
    assert_eq!(
        one_err(&[("w.yaml", &wep(&format!("{WEP_OK}profiles: [projectcalico-default-allow, kns.shop]")))]),
        "w.yaml:9:43: WorkloadEndpoint shop/w: spec.profiles[1]: profile \"kns.shop\" does not exist; define a Profile named kns.shop or a Namespace named shop"
    );
    let errs = load_err(&[(
        "w.yaml",
        &wep(&format!("{WEP_OK}profiles:\n- kns.shop\n- mine")),
    )]);
    assert_eq!(
        errs,
        [
            "w.yaml:10:5: WorkloadEndpoint shop/w: spec.profiles[0]: profile \"kns.shop\" does not exist; define a Profile named kns.shop or a Namespace named shop",
            "w.yaml:11:5: WorkloadEndpoint shop/w: spec.profiles[1]: profile \"mine\" does not exist; define a Profile named mine",
        ]
    );
    load_ok(&[
        (
            "w.yaml",
            &wep(&format!(
                "{WEP_OK}profiles: [kns.shop, mine, projectcalico-default-allow]"
            )),
        ),
        (
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        ),
        (
            "p.yaml",
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: mine}\n",
        ),
    ]);
}

#[test]
fn missing_tiers() {
    assert_eq!(
        gnp_err("tier: security"),
        "p.yaml:6:9: GlobalNetworkPolicy p: spec.tier: tier \"security\" does not exist; define a Tier named security"
    );
    load_ok(&[
        ("p.yaml", &gnp("tier: security")),
        ("t.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n"),
    ]);
    load_ok(&[("p.yaml", &gnp("tier: default"))]);
}

#[test]
fn workload_endpoints() {
    assert_eq!(
        load_err(&[("w.yaml", &wep("workload: x"))]),
        [
            "w.yaml:7:3: WorkloadEndpoint shop/w: spec.interfaceName is missing; write the host-side interface's name, such as cali0123456789a",
            "w.yaml:7:3: WorkloadEndpoint shop/w: spec.node is missing; write the name of the host the endpoint is on",
        ]
    );
    assert_eq!(
        load_err(&[("w.yaml", &wep("node: h\ninterfaceName: cali/0123456789abc\nmac: 02:42:ac:11:00\nipNetworks: [10.0.0.0/24, 10.0.0.7, \"fd00::1/128\"]\nipv4Gateway: \"fd00::1\"\nports:\n- {name: HTTP, protocol: ICMP, port: 0}"))]),
        [
            "w.yaml:8:18: WorkloadEndpoint shop/w: spec.interfaceName: \"cali/0123456789abc\" is not an interface name; write 1 to 15 letters, digits, '_', '.' or '-', such as eth0",
            "w.yaml:9:8: WorkloadEndpoint shop/w: spec.mac: \"02:42:ac:11:00\" is not a MAC address; write six pairs of hex digits such as 02:42:ac:11:00:02",
            "w.yaml:10:16: WorkloadEndpoint shop/w: spec.ipNetworks[0]: 10.0.0.0/24 holds more than one address; write the workload's own address, such as 10.0.0.0/32",
            "w.yaml:11:16: WorkloadEndpoint shop/w: spec.ipv4Gateway: fd00::1 is not an IPv4 address; write e.g. 10.0.0.1",
            "w.yaml:13:12: WorkloadEndpoint shop/w: spec.ports[0].name: port name \"HTTP\" may contain only lower-case letters, digits and '-'",
            "w.yaml:13:28: WorkloadEndpoint shop/w: spec.ports[0].protocol: a port needs protocol TCP, UDP or SCTP, not ICMP",
            "w.yaml:13:40: WorkloadEndpoint shop/w: spec.ports[0].port: port 0 is out of range; write 1 to 65535",
        ]
    );
}

#[test]
fn host_endpoints() {
    let hep = |spec: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: h}}\nspec:\n{spec}")
    };
    assert_eq!(
        load_err(&[("h.yaml", &hep("  profiles: []\n"))]),
        [
            "h.yaml:5:3: HostEndpoint h: a HostEndpoint needs spec.interfaceName or spec.expectedIPs; write interfaceName: eth0 (or \"*\" for every interface)",
            "h.yaml:5:3: HostEndpoint h: spec.node is missing; write the name of the host the interface is on",
        ]
    );
    assert_eq!(
        one_err(&[("h.yaml", &hep("  node: n\n  expectedIPs: [10.0.0.1, 10.0.0.0/8]\n"))]),
        "h.yaml:6:27: HostEndpoint h: spec.expectedIPs[1]: \"10.0.0.0/8\" is not an IP address; write an address such as 10.0.0.1 or fd00::1"
    );
    load_ok(&[("h.yaml", &hep("  node: n\n  interfaceName: \"*\"\n"))]);
}

#[test]
fn metadata() {
    let errs = load_err(&[(
        "t.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: a.b\n  namespace: x\n  labels: {\"-bad\": ok, good: \"not ok\"}\n",
    )]);
    assert_eq!(
        errs,
        [
            "t.yaml:4:9: Tier a.b: metadata.name: \"a.b\" is not a valid Tier name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            "t.yaml:5:14: Tier a.b: metadata.namespace: a Tier is not namespaced; remove metadata.namespace",
            "t.yaml:6:20: Tier a.b: metadata.labels.-bad: label key \"-bad\" is not valid; write an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit",
            "t.yaml:6:30: Tier a.b: metadata.labels.good: label value \"not ok\" is not valid; write up to 63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit, or nothing",
        ]
    );
}

/// Label and annotation values are text, as in Kubernetes: YAML reads `version: 1.10` as the
/// number 1.1, which kubectl, calicoctl and the JSON Schemas refuse, and which a tool that
/// rewrites the file writes back as 1.1.
#[test]
fn unquoted_numbers_and_booleans_are_not_label_values() {
    let wep = |labels: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: a\n  namespace: x\n  labels: {labels}\nspec:\n  node: n\n  interfaceName: calia\n  ipNetworks: [10.65.0.2/32]\n  profiles: [projectcalico-default-allow]\n")
    };
    assert_eq!(
        one_err(&[("w.yaml", &wep("{version: 1.10}"))]),
        "w.yaml:6:21: WorkloadEndpoint x/a: metadata.labels.version: YAML reads this unquoted value as the number 1.1, and values here are text; write it in quotes exactly as meant, such as \"1.10\""
    );
    assert_eq!(
        one_err(&[("w.yaml", &wep("{canary: true}"))]),
        "w.yaml:6:20: WorkloadEndpoint x/a: metadata.labels.canary: YAML reads this unquoted value as the boolean true, and values here are text; write it in quotes exactly as meant, such as \"1.10\""
    );
    assert_eq!(
        one_err(&[("w.yaml", &wep("{build: 42}"))]),
        "w.yaml:6:19: WorkloadEndpoint x/a: metadata.labels.build: YAML reads this unquoted value as the number 42, and values here are text; write it in quotes exactly as meant, such as \"1.10\""
    );
    // Quoted, and text that only starts like a number, are labels as written.
    let c = load_ok(&[(
        "w.yaml",
        &wep("{version: \"1.10\", build: '42', tag: 1.10-rc1}"),
    )]);
    let labels = &c.workload_endpoints[0].value.metadata.labels;
    assert_eq!(labels["version"], "1.10");
    assert_eq!(labels["build"], "42");
    assert_eq!(labels["tag"], "1.10-rc1");
    // The same in a Kubernetes selector and a Service's selector.
    let errs = load_err(&[(
        "n.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {tier: 2}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec:\n  selector: {on: yes, v: 2.0}\n  ports: [{port: 80}]\n",
    )]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with("n.yaml:5:37: NetworkPolicy (networking.k8s.io) x/p: spec.podSelector.matchLabels.tier: YAML reads this unquoted value as the number 2"), "{}", errs[0]);
    assert!(errs[1].starts_with("n.yaml:11:26: Service x/s: spec.selector.v: YAML reads this unquoted value as the number 2"), "{}", errs[1]);
}

#[test]
fn tiers() {
    let tier = |name: &str, spec: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    assert_eq!(
        one_err(&[("t.yaml", &tier("default", "{order: 5, defaultAction: Deny}"))]),
        "t.yaml:4:15: Tier default: spec.order: the default tier's order is 1000000; remove order or write order: 1000000"
    );
    assert_eq!(
        one_err(&[("t.yaml", &tier("security", "{defaultAction: Log}"))]),
        "t.yaml:4:23: Tier security: spec.defaultAction: a tier's defaultAction is Deny or Pass, not Log"
    );
}

#[test]
fn ip_pools() {
    let pool = |spec: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec: {spec}\n"
        )
    };
    assert_eq!(
        one_err(&[("p.yaml", &pool("{cidr: 10.1.2.0/16}"))]),
        "p.yaml:4:14: IPPool p: spec.cidr: 10.1.2.0/16 has host bits set; write the network address 10.1.0.0/16"
    );
    assert_eq!(
        one_err(&[("p.yaml", &pool("{cidr: \"fd00::/48\", blockSize: 26, ipipMode: Never}"))]),
        "p.yaml:4:38: IPPool p: spec.blockSize: blockSize 26 must be from 116 to 128 and no shorter than the pool's prefix (48)"
    );
    assert_eq!(
        one_err(&[("p.yaml", &pool("{vxlanMode: Always}"))]),
        "p.yaml:4:7: IPPool p: spec: missing field `cidr`"
    );
}

fn felix(name: &str, spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

#[test]
fn felix_configuration_values() {
    assert_eq!(
        load_err(&[("f.yaml", &felix("global", "  bpfMapSizeConntrack: 0\n  bpfAttachType: Netkit\n  nodeSelector: all()\n  bpfPSNATPorts: http\n  vxlanVNI: 0\n  failsafeInboundHostPorts: [{protocol: icmp, port: 1}]\n  bpfLogFilters: {\"bad/name\": \"tcp\"}\n"))]),
        [
            "f.yaml:3:18: FelixConfiguration global: metadata.name: FelixConfiguration \"global\" would never be used; name it default (every node) or node.<node name> (one node)",
            "f.yaml:5:24: FelixConfiguration global: spec.bpfMapSizeConntrack: bpfMapSizeConntrack 0 is not a map size; write a number of entries from 1 to 4294967295",
            "f.yaml:6:18: FelixConfiguration global: spec.bpfAttachType: Netkit is not supported by weft; write TCX (or TC for the legacy qdisc)",
            "f.yaml:7:17: FelixConfiguration global: spec.nodeSelector: nodeSelector is not supported by weft yet; name the configuration node.<node name> instead",
            "f.yaml:8:18: FelixConfiguration global: spec.bpfPSNATPorts: http is not a port range; write lo:hi such as 20000:29999",
            "f.yaml:9:13: FelixConfiguration global: spec.vxlanVNI: vxlanVNI 0 is out of range; write 1 to 16777215",
            "f.yaml:10:41: FelixConfiguration global: spec.failsafeInboundHostPorts[0].protocol: protocol \"icmp\" is not known here; write tcp, udp or sctp",
            "f.yaml:11:31: FelixConfiguration global: spec.bpfLogFilters.bad/name: \"bad/name\" is not an interface name; write 1 to 15 letters, digits, '_', '.' or '-', such as eth0, or all, weps or heps",
        ]
    );
}

#[test]
fn bpf_log_filters_outside_the_pcap_subset_name_the_expression_and_the_subset() {
    let errs = load_err(&[(
        "f.yaml",
        &felix(
            "default",
            "  bpfLogLevel: Debug\n  bpfLogFilters:\n    all: host 10.0.0.1 or port 53\n    weps: \"tcp and port 80\"\n    eth0: \"host db.local\"\n  bpfExportBufferSizeMB: 0\n",
        ),
    )]);
    assert_eq!(
        errs,
        [
            format!("f.yaml:7:24: FelixConfiguration default: spec.bpfLogFilters.all: filter \"host 10.0.0.1 or port 53\" at column 15: `or` is not supported; {}", crate::pcap::SUPPORTED),
            "f.yaml:9:17: FelixConfiguration default: spec.bpfLogFilters.eth0: filter \"host db.local\" at column 6: \"db.local\" is not an IPv4 address; host names are not supported, write e.g. host 10.0.0.1".to_string(),
            "f.yaml:10:26: FelixConfiguration default: spec.bpfExportBufferSizeMB: bpfExportBufferSizeMB 0 is out of range; write 1 to 1024 (MiB)".to_string(),
        ]
    );
}

#[test]
fn felix_configuration_types() {
    assert_eq!(
        one_err(&[("f.yaml", &felix("default", "  defaultEndpointToHostAction: Allow\n"))]),
        "f.yaml:5:32: FelixConfiguration default: spec.defaultEndpointToHostAction: \"Allow\" is not a valid value; write one of Drop, Return, Accept"
    );
    assert_eq!(
        one_err(&[("f.yaml", &felix("default", "  bpfAttachType: tcx\n"))]),
        "f.yaml:5:18: FelixConfiguration default: spec.bpfAttachType: unknown variant `tcx`, expected one of `TC`, `TCX`, `Netkit`"
    );
    assert_eq!(
        one_err(&[("f.yaml", &felix("default", "  routeRefreshInterval: 1 minute\n"))]),
        "f.yaml:5:25: FelixConfiguration default: spec.routeRefreshInterval: \"1 minute\" is not a duration; write a number with a unit, such as 90s, 1m30s or 500ms"
    );
    assert_eq!(
        one_err(&[("f.yaml", &felix("default", "  bpfMapSizeConntrak: 5\n"))]),
        "f.yaml:5:3: FelixConfiguration default: spec: unknown field `bpfMapSizeConntrak`; did you mean `bpfMapSizeConntrack`?"
    );
}

fn k8s_np(spec: &str) -> String {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k, namespace: shop}}\nspec:\n{indented}")
}

#[test]
fn kubernetes_network_policies() {
    assert_eq!(
        load_err(&[("k.yaml", &k8s_np("podSelector:\n  matchExpressions:\n  - {key: app, operator: In}\n  - {key: tier, operator: Exists, values: [x]}\ningress:\n- ports:\n  - {port: http, endPort: 90}\n  - {port: 90, endPort: 80}\n  - {port: 0}\n  from:\n  - {}\n  - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16, 10.0.0.0/8]}\n    podSelector: {}"))]),
        [
            "k.yaml:7:7: NetworkPolicy (networking.k8s.io) shop/k: spec.podSelector.matchExpressions[0].values: operator In needs at least one value",
            "k.yaml:8:45: NetworkPolicy (networking.k8s.io) shop/k: spec.podSelector.matchExpressions[1].values: operator Exists takes no values; remove them",
            "k.yaml:11:29: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].ports[0].endPort: endPort needs a numeric port; write the first port number as port",
            "k.yaml:12:27: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].ports[1].endPort: endPort 80 must be from port (90) to 65535",
            "k.yaml:13:14: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].ports[2].port: port 0 is out of range; write 1 to 65535",
            "k.yaml:15:7: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock; write podSelector: {} for every pod of the namespace",
            "k.yaml:16:16: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].from[1].ipBlock: ipBlock cannot be combined with podSelector or namespaceSelector; write them as separate peers",
            "k.yaml:16:44: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].from[1].ipBlock.except[0]: 11.0.0.0/16 is not strictly inside 10.0.0.0/8; except may only carve pieces out of cidr",
            "k.yaml:16:57: NetworkPolicy (networking.k8s.io) shop/k: spec.ingress[0].from[1].ipBlock.except[1]: 10.0.0.0/8 is not strictly inside 10.0.0.0/8; except may only carve pieces out of cidr",
        ]
    );
    assert_eq!(
        one_err(&[("k.yaml", &k8s_np("ingress: []"))]),
        "k.yaml:5:3: NetworkPolicy (networking.k8s.io) shop/k: spec: missing field `podSelector`"
    );
    assert_eq!(
        one_err(&[("k.yaml", &k8s_np("podSelector: {}\negress:\n- ports: [{protocol: ICMP}]"))]),
        "k.yaml:7:24: NetworkPolicy (networking.k8s.io) shop/k: spec.egress[0].ports[0].protocol: unknown variant `ICMP`, expected one of `TCP`, `UDP`, `SCTP`"
    );
}

#[test]
fn services() {
    let svc = |spec: &str| {
        let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: api}}\nspec:\n{indented}")
    };
    assert_eq!(
        load_err(&[("s.yaml", &svc("clusterIP: 10.96.0.300\nexternalIPs: [1.2.3.4, nope]\nports:\n- {port: 80, targetPort: 70000}\n- {name: b, port: 443, targetPort: HTTPS}\nsessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}"))]),
        [
            "s.yaml:5:14: Service default/api: spec.clusterIP: \"10.96.0.300\" is not an IP address; write an address such as 10.0.0.1 or fd00::1",
            "s.yaml:6:26: Service default/api: spec.externalIPs[1]: \"nope\" is not an IP address; write an address such as 10.0.0.1 or fd00::1",
            "s.yaml:8:5: Service default/api: spec.ports[0].name is missing; a service with several ports must name each of them",
            "s.yaml:8:28: Service default/api: spec.ports[0].targetPort: port 70000 is out of range; write 1 to 65535",
            "s.yaml:9:38: Service default/api: spec.ports[1].targetPort: \"HTTPS\" is not a port number or port name: a name may contain only lower-case letters, digits and '-'",
            "s.yaml:10:54: Service default/api: spec.sessionAffinityConfig.clientIP.timeoutSeconds: timeoutSeconds 0 is out of range; write 1 to 86400",
        ]
    );
    load_ok(&[(
        "s.yaml",
        &svc("clusterIP: None\nports:\n- {port: 53, protocol: UDP, targetPort: dns}"),
    )]);
}

#[test]
fn endpoint_slices() {
    let text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api-1}\naddressType: IPv4\nendpoints:\n- addresses: [\"fd00::1\"]\nports:\n- {port: 0}\n";
    assert_eq!(
        load_err(&[("e.yaml", text)]),
        [
            "e.yaml:3:11: EndpointSlice default/api-1: metadata: an EndpointSlice names its service with the label kubernetes.io/service-name; add it",
            "e.yaml:6:15: EndpointSlice default/api-1: endpoints[0].addresses[0]: fd00::1 is not an IPv4 address; write e.g. 10.0.0.1",
            "e.yaml:8:10: EndpointSlice default/api-1: ports[0].port: port 0 is out of range; write 1 to 65535",
        ]
    );
    load_ok(&[(
        "e.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: api-1\n  labels: {kubernetes.io/service-name: api}\naddressType: IPv4\nendpoints: null\nports: null\n",
    )]);
}

#[test]
fn references_to_unreadable_resources_are_not_reported_twice() {
    let errs = load_err(&[
        ("p.yaml", "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: mine}\nspec: {labelz: {}}\n"),
        ("n.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\nspec: {finalisers: []}\n"),
        ("t.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: sec}\nspec: {order: soon}\n"),
        ("w.yaml", &wep(&format!("{WEP_OK}profiles: [mine, kns.shop]"))),
        ("q.yaml", &gnp("tier: sec")),
    ]);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("n.yaml:4:8: Namespace shop: spec: unknown field `finalisers`; did you mean `finalizers`?"), "{}", errs[0]);
    assert!(
        errs[1].starts_with("p.yaml:4:8: Profile mine: spec: unknown field `labelz`"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2]
            .starts_with("t.yaml:4:15: Tier sec: spec.order: text \"soon\" is not what goes here"),
        "{}",
        errs[2]
    );
}
