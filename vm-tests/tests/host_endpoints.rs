//! Host endpoints on a real kernel: the host is a namespace with two uplinks (up0 to
//! "outside", 192.0.2.0/24; up2 to "outside2", 198.51.100.0/24) and its own TCP and UDP
//! servers; policy selects the HostEndpoints by label, as Calico's does.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use weft_vm_tests::*;

const HOST2_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUTSIDE2_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);

/// A second uplink, up2, to a namespace of its own.
fn second_uplink(bed: &Bed) -> Netns {
    let ns = Netns::new("wo2");
    bed.host.ip(&[
        "link", "add", "up2", "type", "veth", "peer", "name", "up3", "netns", &ns.name,
    ]);
    bed.host
        .ip(&["addr", "add", &format!("{HOST2_IP}/24"), "dev", "up2"]);
    bed.host.ip(&["link", "set", "up2", "up"]);
    ns.ip(&["addr", "add", &format!("{OUTSIDE2_IP}/24"), "dev", "up3"]);
    ns.ip(&["link", "set", "up3", "up"]);
    ns.ip(&["route", "add", "default", "via", &HOST2_IP.to_string()]);
    ns
}

fn hep(name: &str, iface: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  labels:\n    edge: \"true\"\nspec:\n  node: node-a\n  interfaceName: \"{iface}\"\n"
    )
}

fn felix(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n{spec}")
}

/// A bed with two uplinks and servers on the host: TCP 22, 8080, 8081 and UDP 5353.
fn bed(test: &str) -> Option<(Bed, Netns)> {
    let bed = Bed::new(test)?;
    let outside2 = second_uplink(&bed);
    for port in [22, 8080, 8081] {
        tcp_server(&bed.host, port);
    }
    udp_server(&bed.host, 5353);
    Some((bed, outside2))
}

/// The workload "web" (10.65.0.2, app: web, in the shop namespace) serving TCP 8080.
fn web(bed: &mut Bed) {
    bed.write("00-namespace.yaml", SHOP_NAMESPACE);
    let w = bed.workload("caliweb", WEB);
    tcp_server(&bed.w(w).ns, 8080);
    let wep = bed.wep_yaml(w, "web", "shop", &[("app", "web")], &["kns.shop"]);
    bed.write("web.yaml", &wep);
}

/// Ingress to the host: TCP 8080 from 192.0.2.0/24 only. Egress from the host: TCP 9090 to
/// the outside namespace is denied, the rest allowed.
const EDGE_POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: edge
spec:
  selector: edge == 'true'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: TCP
      source:
        nets: [192.0.2.0/24]
      destination:
        ports: [8080]
  egress:
    - action: Deny
      protocol: TCP
      destination:
        nets: [192.0.2.2/32]
        ports: [9090]
    - action: Allow
"#;

#[test]
fn host_endpoint_policy_polices_the_hosts_own_traffic_on_its_interfaces() {
    let Some((bed, outside2)) = bed("host_endpoint_policy") else {
        return;
    };
    tcp_server(&bed.outside, 9090);
    tcp_server(&bed.outside, 9091);
    // Before any host endpoint, the host is open.
    bed.apply();
    assert!(tcp_ok(&bed.outside, HOST_IP, 8081));

    bed.write("hep.yaml", &hep("up0", "up0"));
    bed.write("policy.yaml", EDGE_POLICY);
    bed.apply();
    assert!(
        tcp_ok(&bed.outside, HOST_IP, 8080),
        "8080 is allowed from 192.0.2.0/24"
    );
    assert!(
        !tcp_ok(&bed.outside, HOST_IP, 8081),
        "8081 is allowed by no rule"
    );
    assert!(
        !udp_ok(&bed.outside, HOST_IP, 5353),
        "UDP is allowed by no rule"
    );
    assert!(
        !tcp_ok(&bed.host, OUTSIDE_IP, 9090),
        "the host's own connection to 192.0.2.2:9090 is denied by egress policy"
    );
    assert!(
        tcp_ok(&bed.host, OUTSIDE_IP, 9091),
        "the host's other connections are allowed"
    );
    // A host endpoint on up0 leaves up2 alone.
    assert!(
        tcp_ok(&outside2, HOST2_IP, 8081),
        "up2 has no host endpoint: it is not policed"
    );

    // A wildcard host endpoint covers every interface: up2 is policed too, and 8080 is not
    // allowed from 198.51.100.0/24.
    bed.remove("hep.yaml");
    bed.write("hep.yaml", &hep("all", "*"));
    bed.apply();
    assert!(
        !tcp_ok(&outside2, HOST2_IP, 8081),
        "interfaceName \"*\" polices up2 as well"
    );
    assert!(
        !tcp_ok(&outside2, HOST2_IP, 8080),
        "8080 is allowed only from 192.0.2.0/24"
    );
    assert!(tcp_ok(&bed.outside, HOST_IP, 8080));
    let (code, text) = bed.diff();
    assert_eq!(code, 0, "converged:\n{text}");

    // Removing the host endpoint restores access (and leaves weft nothing to program here,
    // which the wipe guard asks to be said).
    bed.remove("hep.yaml");
    let config = bed.config.to_str().expect("utf-8 path").to_string();
    let out = bed.weft(&["apply", &config, "--allow-empty"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(tcp_ok(&bed.outside, HOST_IP, 8081));
    assert!(tcp_ok(&outside2, HOST2_IP, 8081));
    assert!(tcp_ok(&bed.host, OUTSIDE_IP, 9090));
}

#[test]
fn failsafe_ports_stay_open_under_deny_all_until_they_are_emptied() {
    let Some((bed, _outside2)) = bed("failsafe_ports") else {
        return;
    };
    // A host endpoint and no policy: everything to and from the host is denied ...
    bed.write("hep.yaml", &hep("up0", "up0"));
    bed.apply();
    assert!(!tcp_ok(&bed.outside, HOST_IP, 8080), "deny-all");
    // ... but SSH, a failsafe port.
    assert!(
        tcp_ok(&bed.outside, HOST_IP, 22),
        "TCP 22 is a failsafe port: reachable under deny-all"
    );
    let bpffs = bed.bpffs.to_str().expect("utf-8 path").to_string();
    let dump = bed.weft(&["dump", "host-endpoints", "--bpffs", &bpffs]);
    let text = output_text(&dump);
    assert!(dump.status.success(), "{text}");
    assert!(
        text.contains("inbound tcp 22"),
        "the dump shows the failsafe rules:\n{text}"
    );

    // An empty list in the default FelixConfiguration turns the failsafes off.
    bed.write(
        "felix.yaml",
        &felix("  failsafeInboundHostPorts: []\n  failsafeOutboundHostPorts: []\n"),
    );
    bed.apply();
    assert!(
        !tcp_ok(&bed.outside, HOST_IP, 22),
        "with the failsafes emptied, deny-all denies SSH too"
    );
}

#[test]
fn pre_dnat_policy_denies_a_node_port_from_one_range_and_allows_it_from_another() {
    let Some((mut bed, outside2)) = bed("pre_dnat") else {
        return;
    };
    web(&mut bed);
    bed.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  selector:\n    app: web\n  ports:\n    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n",
    );
    bed.write("felix.yaml", &felix("  bpfDataIfacePattern: \"^up\"\n"));
    bed.write("hep.yaml", &hep("all", "*"));
    bed.write(
        "prednat.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: node-port-ranges
spec:
  selector: edge == 'true'
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: TCP
      source:
        nets: [198.51.100.0/24]
      destination:
        ports: [30080]
"#,
    );
    bed.apply();
    assert!(
        tcp_ok(&bed.outside, HOST_IP, 30080),
        "the NodePort from 192.0.2.0/24: no pre-DNAT rule matches, and forwarded traffic no applyOnForward policy selects passes"
    );
    assert!(
        !tcp_ok(&outside2, HOST2_IP, 30080),
        "the NodePort from 198.51.100.0/24 is denied before NAT"
    );
    // Not an implicit deny: without the rule, 198.51.100.0/24 gets through.
    bed.remove("prednat.yaml");
    bed.apply();
    assert!(tcp_ok(&outside2, HOST2_IP, 30080));
}

#[test]
fn apply_on_forward_decides_whether_host_endpoint_policy_sees_forwarded_traffic() {
    let Some((mut bed, _outside2)) = bed("apply_on_forward") else {
        return;
    };
    web(&mut bed);
    // The host routes between its uplink and its workloads (weft sets forwarding only on the
    // interfaces it forwards to itself: workloads and data interfaces).
    bed.outside
        .ip(&["route", "add", "10.65.0.0/16", "via", &HOST_IP.to_string()]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &bed.host.name,
        "sysctl",
        "-qw",
        "net.ipv4.conf.up0.forwarding=1",
    ]);
    bed.write("hep.yaml", &hep("up0", "up0"));
    let policy = |aof: bool| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: no-8080\nspec:\n  selector: edge == 'true'\n  applyOnForward: {aof}\n  types: [Ingress]\n  ingress:\n    - action: Deny\n      protocol: TCP\n      destination:\n        ports: [8080]\n    - action: Allow\n"
        )
    };
    bed.write("policy.yaml", &policy(false));
    bed.apply();
    assert!(
        tcp_ok(&bed.outside, WEB, 8080),
        "applyOnForward false: forwarded traffic to the workload is not the host endpoint's"
    );
    assert!(
        !tcp_ok(&bed.outside, HOST_IP, 8080),
        "the host's own 8080 is denied"
    );
    bed.write("policy.yaml", &policy(true));
    bed.apply();
    assert!(
        !tcp_ok(&bed.outside, WEB, 8080),
        "applyOnForward true: the policy denies forwarded traffic too"
    );
}

/// doNotTrack: a denied source gets nothing, and while it floods the host with UDP, an
/// allowed client's connections still succeed.
#[test]
fn untracked_policy_drops_a_flooding_source_while_others_connect() {
    let Some((bed, outside2)) = bed("untracked") else {
        return;
    };
    bed.write("hep.yaml", &hep("all", "*"));
    let drop_from = |net: &str| {
        format!(
            r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: drop-flooder
spec:
  selector: edge == 'true'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - action: Deny
      source:
        nets: [{net}]
"#
        )
    };
    bed.write("untracked.yaml", &drop_from("198.51.100.2/32"));
    bed.write(
        "allow.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-all\nspec:\n  selector: edge == 'true'\n  types: [Ingress, Egress]\n  ingress:\n    - action: Allow\n  egress:\n    - action: Allow\n",
    );
    bed.apply();
    assert!(
        !tcp_ok(&outside2, HOST2_IP, 8080),
        "the denied source gets nothing"
    );
    assert!(!udp_ok(&outside2, HOST2_IP, 5353));
    assert!(tcp_ok(&bed.outside, HOST_IP, 8080));

    let flood = outside2.spawn(|| {
        let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        let end = Instant::now() + Duration::from_secs(5);
        let payload = [0u8; 512];
        let mut sent = 0u64;
        while Instant::now() < end {
            for _ in 0..256 {
                if s.send_to(&payload, (HOST2_IP, 5353)).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    });
    let (mut ok, mut tried) = (0, 0);
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        tried += 1;
        if tcp_ok(&bed.outside, HOST_IP, 8080) {
            ok += 1;
        }
    }
    let sent = flood.join().expect("flood");
    assert!(sent > 10_000, "the flood sent {sent} datagrams");
    assert!(
        ok * 100 >= tried * 95,
        "{ok} of {tried} connections succeeded during the flood"
    );
    let xdp_drops = bed.counted("xdp", "drop-untracked");
    assert!(
        xdp_drops * 10 >= sent * 9,
        "the flood is dropped in XDP: {xdp_drops} of {sent} datagrams"
    );

    // Another source denied instead: XDP's verdict for this one, cached on every CPU the
    // flood ran on, is void, and it connects. Then denied again.
    bed.write("untracked.yaml", &drop_from("198.51.100.99/32"));
    bed.apply();
    assert!(
        tcp_ok(&outside2, HOST2_IP, 8080),
        "a source the policy no longer denies connects"
    );
    bed.write("untracked.yaml", &drop_from("198.51.100.2/32"));
    bed.apply();
    assert!(!tcp_ok(&outside2, HOST2_IP, 8080), "denied again");
    let xdp_drops = bed.counted("xdp", "drop-untracked");

    // With XDP off, tc drops it instead.
    bed.write("felix.yaml", &felix("  xdpEnabled: false\n"));
    bed.apply();
    assert!(!udp_ok(&outside2, HOST2_IP, 5353));
    assert!(
        bed.counted("from-hep", "drop-untracked") >= 1,
        "tc's untracked stage drops it"
    );
    assert_eq!(
        bed.counted("xdp", "drop-untracked"),
        xdp_drops,
        "XDP is detached"
    );
}
