//! The foundation end to end: files -> `weft apply` -> programs on real veths -> real traffic.

use std::net::Ipv4Addr;

use weft::bpf::maps::Plain;
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);

/// Three workloads in namespace "shop", all allowed by their namespace's profile: a, b (a web
/// server) and c.
fn three(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(
        SHOP_NAMESPACE,
        "wl",
        &[("app", "client"), ("app", "web"), ("app", "other")],
    );
    tcp_server(&bed.w(1).ns, 80);
    tcp_server(&bed.w(1).ns, 8080);
    udp_server(&bed.w(1).ns, 53);
    tcp_server(&bed.w(0).ns, 80);
    Some(bed)
}

const WEB_POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web
  namespace: shop
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: app == 'client'
      destination:
        ports: [80]
    - action: Allow
      protocol: UDP
      source:
        selector: app == 'client'
      destination:
        ports: [53]
"#;

#[test]
fn policy_allows_what_it_says_and_denies_the_rest() {
    let Some(bed) = three("policy_allows_what_it_says_and_denies_the_rest") else {
        return;
    };
    bed.write("policy.yaml", WEB_POLICY);
    bed.apply();
    let (a, c) = (&bed.w(0).ns, &bed.w(2).ns);
    assert!(tcp_ok(a, B, 80), "a -> b:80 is allowed by policy web");
    assert!(udp_ok(a, B, 53), "a -> b:53/udp is allowed by policy web");
    assert!(
        !tcp_ok(a, B, 8080),
        "a -> b:8080 matches no rule: the policy's tier denies it"
    );
    assert!(!tcp_ok(c, B, 80), "c is not a client");
    assert!(!udp_ok(c, B, 53), "c is not a client (udp)");
    assert!(!ping_ok(a, B), "no rule of web allows ICMP to b");
    assert!(
        ping_ok(&bed.w(1).ns, A),
        "b -> a ping: a's profile allows it and the reply passes on conntrack"
    );
    // b has no egress policy, and its profile allows: it can reach a.
    assert!(
        tcp_ok(&bed.w(1).ns, A, 80),
        "b -> a:80 is allowed by the namespace profile"
    );
}

#[test]
fn replies_pass_when_the_reverse_direction_is_denied() {
    let Some(bed) = three("replies_pass_when_the_reverse_direction_is_denied") else {
        return;
    };
    // a may only send to b:80; b may receive only from a and may send nothing at all.
    bed.write(
        "policy.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-out, namespace: shop}
spec:
  selector: app == 'client'
  types: [Ingress, Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {selector: app == 'web', ports: [80]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-in, namespace: shop}
spec:
  selector: app == 'web'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      source: {selector: app == 'client'}
"#,
    );
    bed.apply();
    assert!(
        tcp_ok(&bed.w(0).ns, B, 80),
        "a -> b:80 works: b's replies pass on conntrack though b's egress and a's ingress deny all"
    );
    assert!(
        !tcp_ok(&bed.w(1).ns, A, 80),
        "b -> a is denied both by b's egress and a's ingress"
    );
    assert!(
        !tcp_ok(&bed.w(0).ns, B, 8080),
        "a's egress allows only port 80"
    );
}

#[test]
fn deleting_a_policy_file_opens_the_path() {
    let Some(bed) = three("deleting_a_policy_file_opens_the_path") else {
        return;
    };
    bed.write("policy.yaml", WEB_POLICY);
    bed.apply();
    assert!(
        !tcp_ok(&bed.w(2).ns, B, 80),
        "c -> b denied while the policy exists"
    );
    bed.remove("policy.yaml");
    bed.apply();
    assert!(
        tcp_ok(&bed.w(2).ns, B, 80),
        "with the policy gone, b's profile allows c"
    );
    assert!(tcp_ok(&bed.w(0).ns, B, 8080), "and any port");
}

#[test]
fn apply_twice_changes_nothing_and_diff_agrees() {
    let Some(bed) = three("apply_twice_changes_nothing_and_diff_agrees") else {
        return;
    };
    bed.write("policy.yaml", WEB_POLICY);
    let (code, out) = bed.diff();
    assert_eq!(code, 1, "diff before the first apply shows changes:\n{out}");
    assert!(
        out.contains("+attach calib egress weft_to_wep"),
        "the diff names the attachment:\n{out}"
    );
    assert!(
        out.contains("+route 10.65.0.3/32 dev calib"),
        "the diff names the route:\n{out}"
    );
    bed.apply();
    let (code, out) = bed.diff();
    assert_eq!(code, 0, "diff after apply shows nothing:\n{out}");
    let second = bed.apply();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("no changes"),
        "the second apply changes nothing:\n{stderr}"
    );
    // And the dataplane still works.
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
}

#[test]
fn removing_an_endpoint_removes_its_programs_routes_and_entries() {
    let Some(bed) = three("removing_an_endpoint_removes_its_programs_routes_and_entries") else {
        return;
    };
    bed.apply();
    let routes = String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout)
        .into_owned();
    assert!(
        routes.contains("10.65.0.4 dev calic"),
        "route to c programmed:\n{routes}"
    );
    assert!(
        bed.bpffs.join("links/calic:ingress").exists(),
        "c's tc ingress link is pinned"
    );
    bed.remove("wl/c.yaml");
    bed.apply();
    let routes = String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout)
        .into_owned();
    assert!(
        !routes.contains("10.65.0.4"),
        "route to c removed:\n{routes}"
    );
    assert!(
        routes.contains("10.65.0.3 dev calib"),
        "b's route stays:\n{routes}"
    );
    assert!(
        !bed.bpffs.join("links/calic:ingress").exists()
            && !bed.bpffs.join("links/calic:egress").exists(),
        "c's links removed"
    );
    let net = String::from_utf8_lossy(
        &sh(&[
            "nsenter",
            &format!("--net={}", bed.host.path().display()),
            "bpftool",
            "-j",
            "net",
            "show",
            "dev",
            "calic",
        ])
        .stdout,
    )
    .into_owned();
    assert!(!net.contains("weft_"), "no weft program on calic: {net}");
    let (code, out) = bed.diff();
    assert_eq!(code, 0, "{out}");
    // c's entries are gone from the interface and route maps; b's are still there.
    let pins = weft::bpf::Pins::new(&bed.bpffs);
    let names: Vec<String> = weft::observe::read_entries(&pins, "weft_iface")
        .expect("weft_iface")
        .values()
        .filter_map(|v| weft::bpf::maps::IfaceValue::from_bytes(v))
        .map(|v| weft::bpf::maps::from_c_name(&v.name))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        !names.contains(&"calic".to_string()),
        "weft_iface has no entry for calic: {names:?}"
    );
    let routes: Vec<[u8; 4]> = weft::observe::read_entries(&pins, "weft_rt4")
        .expect("weft_rt4")
        .keys()
        .filter_map(|k| weft::bpf::maps::Route4Key::from_bytes(k))
        .map(|k| k.addr.to_ne_bytes())
        .collect();
    assert!(
        !routes.contains(&[10, 65, 0, 4]) && routes.contains(&[10, 65, 0, 3]),
        "weft_rt4 holds b but not c: {routes:?}"
    );
    // c's interface settings are back to the namespace defaults.
    let fwd = String::from_utf8_lossy(
        &sh(&[
            "ip",
            "netns",
            "exec",
            &bed.host.name,
            "cat",
            "/proc/sys/net/ipv4/conf/calic/proxy_arp",
        ])
        .stdout,
    )
    .trim()
    .to_string();
    assert_eq!(fwd, "0", "proxy_arp reset on calic");
    // And b still works.
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
}

#[test]
fn no_policy_and_no_allowing_profile_is_denied() {
    let Some(mut bed) = Bed::new("no_policy_and_no_allowing_profile_is_denied") else {
        return;
    };
    bed.workload("calia", A);
    bed.workload("calib", B);
    tcp_server(&bed.w(1).ns, 80);
    // No profiles at all: Calico's default is deny.
    bed.write(
        "a.yaml",
        &bed.wep_yaml(0, "a", "default", &[("app", "a")], &[]),
    );
    bed.write(
        "b.yaml",
        &bed.wep_yaml(1, "b", "default", &[("app", "b")], &[]),
    );
    bed.apply();
    assert!(
        !tcp_ok(&bed.w(0).ns, B, 80),
        "a workload with no policy and no profile is denied"
    );
}

#[test]
fn workload_to_host_follows_default_endpoint_to_host_action() {
    let Some(mut bed) = Bed::new("workload_to_host_follows_default_endpoint_to_host_action") else {
        return;
    };
    bed.workload("calia", A);
    bed.write("00-namespace.yaml", SHOP_NAMESPACE);
    bed.write(
        "a.yaml",
        &bed.wep_yaml(0, "a", "shop", &[("app", "a")], &["kns.shop"]),
    );
    tcp_server(&bed.host, 9000);
    bed.apply();
    assert!(
        !tcp_ok(&bed.w(0).ns, HOST_IP, 9000),
        "Drop (the default) stops a workload reaching the host"
    );
    // The host reaching the workload is a different matter: the workload's ingress decides.
    tcp_server(&bed.w(0).ns, 80);
    assert!(
        tcp_ok(&bed.host, A, 80),
        "host -> workload allowed by the profile"
    );
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  defaultEndpointToHostAction: Accept\n",
    );
    bed.apply();
    assert!(
        tcp_ok(&bed.w(0).ns, HOST_IP, 9000),
        "Accept lets it through"
    );
}

#[test]
fn invalid_files_change_nothing() {
    let Some(bed) = three("invalid_files_change_nothing") else {
        return;
    };
    bed.write("policy.yaml", WEB_POLICY);
    bed.apply();
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));
    // Break the policy and remove it in the same edit: nothing may change.
    bed.write("policy.yaml", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector: app == 'web'\n  ingress:\n    - action: Allow\n      source:\n        nets: [10.0.0.300/8]\n");
    let out = bed.weft(&["apply", bed.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "invalid config: exit 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.yaml:11:"),
        "the error names file and line: {err}"
    );
    assert!(
        !tcp_ok(&bed.w(2).ns, B, 80),
        "the last good policy is still enforced"
    );
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
}
