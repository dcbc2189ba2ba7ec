//! Services end to end: Kubernetes Service and EndpointSlice files -> weft's NAT -> real TCP and
//! UDP clients and servers in network namespaces.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};

use weft_vm_tests::daemon::*;
use weft_vm_tests::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B1: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 11);
const B2: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";

fn service(name: &str, extra: &str, ports: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n{extra}  ports:\n{ports}")
}

fn slice(service: &str, ports: &str, endpoints: &[(Ipv4Addr, bool)], node: &str) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(ip, ready)| format!("  - addresses: [\"{ip}\"]\n    nodeName: {node}\n    conditions: {{ready: {ready}}}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n{ports}endpoints:\n{eps}"
    )
}

/// A client and two backends in namespace shop, all allowed by their profile.
fn bed(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.workload("calic", CLIENT);
    bed.workload("calib1", B1);
    bed.workload("calib2", B2);
    bed.write("00-ns.yaml", NAMESPACE);
    bed.write(
        "wl/client.yaml",
        &bed.wep_yaml(0, "client", "shop", &[("app", "client")], &["kns.shop"]),
    );
    bed.write(
        "wl/b1.yaml",
        &bed.wep_yaml(1, "b1", "shop", &[("app", "web")], &["kns.shop"]),
    );
    bed.write(
        "wl/b2.yaml",
        &bed.wep_yaml(2, "b2", "shop", &[("app", "web")], &["kns.shop"]),
    );
    named_server(&bed.w(1).ns, 8080, "b1");
    named_server(&bed.w(2).ns, 8080, "b2");
    Some(bed)
}

#[test]
fn cluster_ip_tcp_reaches_every_ready_backend() {
    let Some(bed) = bed("cluster_ip_tcp_reaches_every_ready_backend") else {
        return;
    };
    bed.write(
        "svc.yaml",
        &service(
            "web",
            &format!("  clusterIP: {VIP}\n"),
            "    - {name: http, port: 80, targetPort: 8080}\n",
        ),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true), (B2, true)],
            &bed.node,
        ),
    );
    bed.apply();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        let who = tcp_hello(&bed.w(0).ns, VIP, 80).expect("the cluster IP answers");
        *seen.entry(who).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "new connections spread over both backends: {seen:?}"
    );
    assert!(
        seen.values().all(|&n| n >= 5),
        "neither backend is starved: {seen:?}"
    );

    // What weft shows of it: the frontend with both backends, and the flows' NAT entries.
    let config = bed.config.to_str().unwrap().to_string();
    let bpffs = bed.bpffs.to_str().unwrap().to_string();
    let out = bed.weft(&[
        "dump", "nat", &config, "--json", "--node", &bed.node, "--bpffs", &bpffs,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nat: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let fe = nat
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["frontend"] == format!("{VIP}:80"))
        .expect("the frontend");
    assert_eq!(fe["service"], "shop/web port http");
    assert_eq!(fe["backends"].as_array().unwrap().len(), 2, "{fe}");
    assert_eq!(fe["from"], "EndpointSlice shop/web-1", "{fe}");
    let out = bed.weft(&["dump", "conntrack", "--json", "--bpffs", &bpffs]);
    let ct: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let kinds: Vec<&str> = ct
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"nat-fwd") && kinds.contains(&"nat-rev"),
        "{kinds:?}"
    );
    let rev = ct
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "nat-rev")
        .unwrap();
    assert_eq!(rev["nat"], format!("frontend {VIP}:80"), "{rev}");
}

/// Echoes UDP datagrams, prefixed with its name.
fn named_udp_server(ns: &Netns, port: u16, name: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    ns.spawn(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(name.as_bytes(), from);
        }
    });
    rx.recv().expect("ready");
}

/// Sends a datagram from `ns` to `to:port` and returns the answer and who it came from.
fn udp_hello(ns: &Netns, to: Ipv4Addr, port: u16) -> Option<(String, SocketAddr)> {
    ns.run(move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        s.send_to(b"hi", (to, port)).ok()?;
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
    })
}

#[test]
fn cluster_ip_udp_answers_from_the_service_address() {
    let Some(bed) = bed("cluster_ip_udp_answers_from_the_service_address") else {
        return;
    };
    named_udp_server(&bed.w(1).ns, 5353, "b1");
    named_udp_server(&bed.w(2).ns, 5353, "b2");
    bed.write(
        "svc.yaml",
        &service(
            "dns",
            &format!("  clusterIP: {VIP}\n"),
            "    - {name: dns, port: 53, targetPort: 5353, protocol: UDP}\n",
        ),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "dns",
            "  - {name: dns, port: 5353, protocol: UDP}\n",
            &[(B1, true), (B2, true)],
            &bed.node,
        ),
    );
    bed.apply();
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let (who, from) = udp_hello(&bed.w(0).ns, VIP, 53).expect("the service answers");
        assert_eq!(
            from,
            SocketAddr::from((VIP, 53)),
            "the reply comes from the service address, un-NATed"
        );
        *seen.entry(who).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "spread over both backends: {seen:?}");
}

#[test]
fn a_backend_leaving_gets_no_new_connections_and_others_keep_theirs() {
    let Some(bed) = bed("a_backend_leaving_gets_no_new_connections_and_others_keep_theirs") else {
        return;
    };
    // A long-lived connection straight to b2, and one through the service that lands on b2.
    let (tx, rx) = std::sync::mpsc::channel::<std::net::TcpStream>();
    bed.w(2).ns.spawn(move || {
        let l = std::net::TcpListener::bind(("0.0.0.0", 9000)).expect("bind");
        for s in l.incoming().flatten() {
            let _ = tx.send(s);
        }
    });
    bed.write("svc.yaml", &service("web", &format!("  clusterIP: {VIP}\n"), "    - {name: http, port: 80, targetPort: 8080}\n    - {name: echo, port: 90, targetPort: 9000}\n"));
    bed.write(
        "slice.yaml",
        &slice("web", "  - {name: http, port: 8080, protocol: TCP}\n  - {name: echo, port: 9000, protocol: TCP}\n", &[(B1, true), (B2, true)], &bed.node),
    );
    bed.apply();
    // Through the service to port 90: only b2 listens on 9000, so retry until it lands there.
    let client = bed.w(0).ns.run(move || {
        for _ in 0..50 {
            if let Ok(s) = TcpStream::connect_timeout(&SocketAddr::from((VIP, 90)), PROBE_TIMEOUT) {
                return Some(s);
            }
        }
        None
    });
    let mut client = client.expect("a connection through the service reached b2");
    let mut server = rx.recv().expect("b2 accepted it");
    let roundtrip = |c: &mut TcpStream, s: &mut TcpStream, msg: &[u8]| -> bool {
        c.set_read_timeout(Some(PROBE_TIMEOUT)).ok();
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok();
        if c.write_all(msg).is_err() {
            return false;
        }
        let mut buf = vec![0u8; msg.len()];
        if s.read_exact(&mut buf).is_err() || buf != msg {
            return false;
        }
        s.write_all(&buf).is_ok() && c.read_exact(&mut buf).is_ok() && buf == msg
    };
    assert!(roundtrip(&mut client, &mut server, b"before"));
    // b1 leaves the slice.
    bed.write("slice.yaml", &slice("web", "  - {name: http, port: 8080, protocol: TCP}\n  - {name: echo, port: 9000, protocol: TCP}\n", &[(B2, true)], &bed.node));
    bed.apply();
    for _ in 0..20 {
        assert_eq!(
            tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(),
            Some("b2"),
            "new connections only go to b2"
        );
    }
    assert!(
        roundtrip(&mut client, &mut server, b"after"),
        "the established connection to b2 survived"
    );
    // b1 not ready any more (rather than gone): the same.
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, false), (B2, true)],
            &bed.node,
        ),
    );
    bed.apply();
    for _ in 0..10 {
        assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b2"));
    }
}

#[test]
fn session_affinity_keeps_a_client_on_one_backend() {
    let Some(bed) = bed("session_affinity_keeps_a_client_on_one_backend") else {
        return;
    };
    bed.write(
        "svc.yaml",
        &service("web", &format!("  clusterIP: {VIP}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 600}}}}\n"), "    - {name: http, port: 80, targetPort: 8080}\n"),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true), (B2, true)],
            &bed.node,
        ),
    );
    bed.apply();
    let first = tcp_hello(&bed.w(0).ns, VIP, 80).expect("answers");
    for _ in 0..20 {
        assert_eq!(
            tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(),
            Some(first.as_str()),
            "the client sticks to {first}"
        );
    }
}

#[test]
fn a_service_without_ready_backends_rejects_at_once() {
    let Some(bed) = bed("a_service_without_ready_backends_rejects_at_once") else {
        return;
    };
    bed.write("svc.yaml", &service("web", &format!("  clusterIP: {VIP}\n"), "    - {name: http, port: 80, targetPort: 8080}\n    - {name: dns, port: 53, protocol: UDP}\n"));
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, false)],
            &bed.node,
        ),
    );
    bed.apply();
    let tcp = bed.w(0).ns.run(move || {
        let t = std::time::Instant::now();
        let r = TcpStream::connect_timeout(
            &SocketAddr::from((VIP, 80)),
            std::time::Duration::from_secs(3),
        );
        (r.map(|_| ()).map_err(|e| e.kind()), t.elapsed())
    });
    assert_eq!(
        tcp.0,
        Err(std::io::ErrorKind::ConnectionRefused),
        "TCP is refused, not left to time out"
    );
    let udp = bed.w(0).ns.run(move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        s.connect((VIP, 53)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        s.send(b"q").expect("send");
        let mut buf = [0u8; 8];
        s.recv(&mut buf).map(|_| ()).map_err(|e| e.kind())
    });
    assert_eq!(
        udp,
        Err(std::io::ErrorKind::ConnectionRefused),
        "UDP gets ICMP port unreachable"
    );
}

const FELIX_DATA_IFACE: &str =
    "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfDataIfacePattern: \"^up0$\"\n";

#[test]
fn node_port_external_ip_and_load_balancer_from_outside() {
    let Some(bed) = bed("node_port_external_ip_and_load_balancer_from_outside") else {
        return;
    };
    let ext = Ipv4Addr::new(198, 51, 100, 10);
    let lb = Ipv4Addr::new(198, 51, 100, 20);
    bed.write("felix.yaml", FELIX_DATA_IFACE);
    bed.write(
        "svc.yaml",
        &format!(
            "{}status:\n  loadBalancer:\n    ingress:\n      - ip: {lb}\n",
            service(
                "web",
                &format!("  type: LoadBalancer\n  clusterIP: {VIP}\n  externalIPs: [{ext}]\n  loadBalancerSourceRanges: [192.0.2.0/30]\n"),
                "    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n"
            )
        ),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true), (B2, true)],
            &bed.node,
        ),
    );
    bed.apply();
    // The outside network routes the service's external addresses to the host.
    bed.outside.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        &HOST_IP.to_string(),
    ]);
    let out = &bed.outside;
    assert!(
        tcp_hello(out, HOST_IP, 30080).is_some(),
        "the NodePort answers on the host's address"
    );
    let (peer, _) =
        host_connect(&bed.host, HOST_IP, 30080).expect("the NodePort answers the host itself");
    assert_eq!(
        peer.port(),
        8080,
        "connect-time load balancing gave the host's socket a backend"
    );
    assert!(tcp_hello(out, ext, 80).is_some(), "the external IP answers");
    assert!(
        tcp_hello(out, lb, 80).is_some(),
        "the LoadBalancer IP answers a client inside loadBalancerSourceRanges (192.0.2.2)"
    );
    // Narrow the source ranges to exclude the outside client.
    bed.write(
        "svc.yaml",
        &format!(
            "{}status:\n  loadBalancer:\n    ingress:\n      - ip: {lb}\n",
            service(
                "web",
                &format!("  type: LoadBalancer\n  clusterIP: {VIP}\n  externalIPs: [{ext}]\n  loadBalancerSourceRanges: [203.0.113.0/24]\n"),
                "    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n"
            )
        ),
    );
    bed.apply();
    assert!(
        tcp_hello(out, lb, 80).is_none(),
        "outside the source ranges: dropped"
    );
    assert!(
        tcp_hello(out, HOST_IP, 30080).is_some(),
        "the NodePort is not subject to the LoadBalancer's ranges"
    );
}

#[test]
fn traffic_policy_local_uses_only_this_nodes_backends() {
    let Some(bed) = bed("traffic_policy_local_uses_only_this_nodes_backends") else {
        return;
    };
    // 10.65.9.9 is a backend on another node: unreachable from here, so a connection sent to
    // it fails. Local traffic policies must never send one there.
    let remote = Ipv4Addr::new(10, 65, 9, 9);
    bed.write("felix.yaml", FELIX_DATA_IFACE);
    let slice_text = format!(
        "{}  - addresses: [\"{remote}\"]\n    nodeName: node-b\n",
        slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true), (B2, true)],
            &bed.node
        )
    );
    bed.write("slice.yaml", &slice_text);
    bed.write(
        "svc.yaml",
        &service("web", &format!("  type: NodePort\n  clusterIP: {VIP}\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n"), "    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n"),
    );
    bed.apply();
    for _ in 0..20 {
        assert!(
            tcp_hello(&bed.w(0).ns, VIP, 80).is_some(),
            "internalTrafficPolicy Local: only local backends"
        );
        assert!(
            tcp_hello(&bed.outside, HOST_IP, 30080).is_some(),
            "externalTrafficPolicy Local: only local backends"
        );
    }
    // With Cluster policies the remote backend is in the running: some connections fail.
    bed.write(
        "svc.yaml",
        &service(
            "web",
            &format!("  type: NodePort\n  clusterIP: {VIP}\n"),
            "    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n",
        ),
    );
    bed.apply();
    let failures = (0..30)
        .filter(|_| tcp_hello(&bed.w(0).ns, VIP, 80).is_none())
        .count();
    assert!(
        failures > 0,
        "with Cluster policy the remote backend gets some connections"
    );
}

#[test]
fn policy_sees_the_backend_not_the_service_address() {
    let Some(bed) = bed("policy_sees_the_backend_not_the_service_address") else {
        return;
    };
    bed.write(
        "svc.yaml",
        &service(
            "web",
            &format!("  clusterIP: {VIP}\n"),
            "    - {name: http, port: 80, targetPort: 8080}\n",
        ),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true), (B2, true)],
            &bed.node,
        ),
    );
    // The client may talk to b1 on 8080 only; nothing mentions the service address or port 80.
    bed.write(
        "policy.yaml",
        &format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: client, namespace: shop}}\nspec:\n  selector: app == 'client'\n  types: [Egress]\n  egress:\n    - action: Allow\n      protocol: TCP\n      destination: {{nets: [{B1}/32], ports: [8080]}}\n"),
    );
    bed.apply();
    let mut ok = BTreeMap::new();
    for _ in 0..30 {
        *ok.entry(tcp_hello(&bed.w(0).ns, VIP, 80)).or_insert(0) += 1;
    }
    assert!(
        ok.contains_key(&Some("b1".to_string())),
        "connections translated to b1 pass: {ok:?}"
    );
    assert!(
        ok.contains_key(&None),
        "connections translated to b2 are denied: {ok:?}"
    );
    assert!(
        !ok.contains_key(&Some("b2".to_string())),
        "never reaches b2: {ok:?}"
    );
}

#[test]
fn host_processes_reach_services_through_bpfnat() {
    let Some(bed) = bed("host_processes_reach_services_through_bpfnat") else {
        return;
    };
    named_udp_server(&bed.w(1).ns, 5353, "b1");
    named_udp_server(&bed.w(2).ns, 5353, "b2");
    // No connect-time balancing: every protocol takes the bpfin/bpfout route.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfConnectTimeLoadBalancing: Disabled\n",
    );
    bed.write(
        "svc.yaml",
        &service("web", &format!("  clusterIP: {VIP}\n"), "    - {name: http, port: 80, targetPort: 8080}\n    - {name: dns, port: 53, targetPort: 5353, protocol: UDP}\n"),
    );
    bed.write(
        "slice.yaml",
        &slice("web", "  - {name: http, port: 8080, protocol: TCP}\n  - {name: dns, port: 5353, protocol: UDP}\n", &[(B1, true), (B2, true)], &bed.node),
    );
    bed.apply();
    let routes = String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout)
        .into_owned();
    assert!(
        routes.contains(&format!("{VIP} via 169.254.77.1 dev bpfin.weft")),
        "service address routed into bpfin.weft:\n{routes}"
    );
    let mut seen = BTreeMap::new();
    for _ in 0..20 {
        let (who, from) =
            udp_hello(&bed.host, VIP, 53).expect("UDP from the host reaches the service");
        assert_eq!(
            from,
            SocketAddr::from((VIP, 53)),
            "answered from the service address"
        );
        *seen.entry(who).or_insert(0) += 1;
        assert!(
            tcp_hello(&bed.host, VIP, 80).is_some(),
            "TCP from the host too"
        );
    }
    assert_eq!(seen.len(), 2, "spread over both backends: {seen:?}");
    // Everything about bpfnat goes when the services do.
    bed.remove("svc.yaml");
    bed.remove("slice.yaml");
    bed.apply();
    let links = String::from_utf8_lossy(&bed.host.ip(&["link", "show"]).stdout).into_owned();
    assert!(
        !links.contains("bpfin.weft") && !links.contains("bpfout.weft"),
        "the pair is removed:\n{links}"
    );
    let routes = String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout)
        .into_owned();
    assert!(!routes.contains("bpfin"), "and its routes:\n{routes}");
}

/// Connects from the host and says who the socket thinks it is talking to, and what answered.
fn host_connect(ns: &Netns, to: Ipv4Addr, port: u16) -> Option<(SocketAddr, String)> {
    ns.run(move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT).ok()?;
        let peer = s.peer_addr().ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some((peer, out))
    })
}

#[test]
fn connect_time_load_balancing_gives_host_sockets_a_backend() {
    let Some(bed) = bed("connect_time_load_balancing_gives_host_sockets_a_backend") else {
        return;
    };
    named_udp_server(&bed.w(1).ns, 5353, "b1");
    named_udp_server(&bed.w(2).ns, 5353, "b2");
    bed.write(
        "svc.yaml",
        &service("web", &format!("  clusterIP: {VIP}\n"), "    - {name: http, port: 80, targetPort: 8080}\n    - {name: dns, port: 53, targetPort: 5353, protocol: UDP}\n"),
    );
    bed.write(
        "slice.yaml",
        &slice("web", "  - {name: http, port: 8080, protocol: TCP}\n  - {name: dns, port: 5353, protocol: UDP}\n", &[(B1, true), (B2, true)], &bed.node),
    );
    // The default, TCP: connect() is translated, UDP goes through bpfin.
    bed.apply();
    let mut backends = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (peer, who) = host_connect(&bed.host, VIP, 80).expect("the host reaches the service");
        assert_ne!(
            peer.ip(),
            std::net::IpAddr::V4(VIP),
            "the socket was given a backend at connect()"
        );
        assert_eq!(peer.port(), 8080);
        backends.insert(who);
    }
    assert_eq!(
        backends.len(),
        2,
        "connect() spreads over the backends: {backends:?}"
    );
    let (_, from) = udp_hello(&bed.host, VIP, 53).expect("UDP through bpfin");
    assert_eq!(from, SocketAddr::from((VIP, 53)));
    // Enabled: unconnected UDP is translated at sendmsg and its replies read as the service's.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfConnectTimeLoadBalancing: Enabled\n",
    );
    bed.apply();
    for _ in 0..10 {
        let (_, from) = udp_hello(&bed.host, VIP, 53).expect("UDP translated at the socket");
        assert_eq!(
            from,
            SocketAddr::from((VIP, 53)),
            "recvmsg gives the service's address back"
        );
    }
    // Disabled: even TCP goes through bpfin, so the socket sees the service address.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfConnectTimeLoadBalancing: Disabled\n",
    );
    bed.apply();
    let (peer, _) = host_connect(&bed.host, VIP, 80).expect("still reachable");
    assert_eq!(
        peer,
        SocketAddr::from((VIP, 80)),
        "no translation at the socket any more"
    );
    // Programs on the cgroup are weft's to remove.
    let links: Vec<String> = std::fs::read_dir(bed.bpffs.join("links"))
        .expect("links")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!links.iter().any(|l| l.starts_with("cgroup:")), "{links:?}");
}

#[test]
fn sockets_of_other_namespaces_are_not_translated() {
    let Some(bed) = bed("sockets_of_other_namespaces_are_not_translated") else {
        return;
    };
    bed.write(
        "svc.yaml",
        &service(
            "web",
            &format!("  clusterIP: {VIP}\n"),
            "    - {name: http, port: 80, targetPort: 8080}\n",
        ),
    );
    bed.write(
        "slice.yaml",
        &slice(
            "web",
            "  - {name: http, port: 8080, protocol: TCP}\n",
            &[(B1, true)],
            &bed.node,
        ),
    );
    bed.apply();
    // The client workload's own socket is in another namespace: its connect() is left alone,
    // and the service is reached through weft_from_wep's per-packet translation instead.
    let (peer, who) = host_connect(&bed.w(0).ns, VIP, 80).expect("reachable from the workload");
    assert_eq!(peer, SocketAddr::from((VIP, 80)));
    assert_eq!(who, "b1");
}

/// `weft run`: a changed EndpointSlice, and then a new Service, are each worked out alone
/// against the state the daemon converged to (no observing), and real traffic follows them at
/// once; a resync afterwards, which observes the kernel as `weft apply` does, finds nothing to
/// do, and neither does `weft diff`.
#[test]
fn under_weft_run_a_changed_service_moves_traffic_and_a_resync_finds_nothing_to_do() {
    let Some(bed) =
        bed("under_weft_run_a_changed_service_moves_traffic_and_a_resync_finds_nothing_to_do")
    else {
        return;
    };
    let http = "    - {name: http, port: 80, targetPort: 8080}\n";
    let ports = "  - {name: http, port: 8080, protocol: TCP}\n";
    bed.write(
        "svc/web.yaml",
        &service("web", &format!("  clusterIP: {VIP}\n"), http),
    );
    bed.write(
        "svc/web-slice.yaml",
        &slice("web", ports, &[(B1, true)], &bed.node),
    );
    // No resync timer during the test: only files and SIGHUP wake the daemon.
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "300ms"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");
    for _ in 0..5 {
        assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b1"));
    }
    let applies = |s: &serde_json::Value| s["applies"].as_u64().unwrap_or(0);

    // The backend moves from b1 to b2.
    let (files0, applies0) = (reconciles(&s, "files"), applies(&s));
    bed.write(
        "svc/web-slice.yaml",
        &slice("web", ports, &[(B2, true)], &bed.node),
    );
    let s = d.wait("the slice's reconcile", |s| applies(s) > applies0);
    assert_eq!(reconciles(&s, "files"), files0 + 1, "{s}\n{}", d.log_text());
    let last = &s["last_apply"];
    assert_eq!(last["trigger"], "files", "{s}");
    assert_eq!(
        (last["how"].as_str(), last["services"].as_u64()),
        (Some("incremental"), Some(1)),
        "one service worked out alone against the state converged to\n{s}\n{}",
        d.log_text()
    );
    assert_eq!(last["result"], "converged", "{s}");
    // The status is written after the maps are: every new connection goes to b2 now.
    for _ in 0..5 {
        assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b2"));
    }

    // A new service in files of its own: its frontend comes the same way.
    let applies1 = applies(&s);
    bed.write(
        "svc/api.yaml",
        &(service("api", &format!("  clusterIP: {VIP2}\n"), http)
            + "---\n"
            + &slice("api", ports, &[(B1, true)], &bed.node)),
    );
    let s = d.wait("the new service's reconcile", |s| applies(s) > applies1);
    let last = &s["last_apply"];
    assert_eq!(
        (last["how"].as_str(), last["services"].as_u64()),
        (Some("incremental"), Some(1)),
        "{s}"
    );
    assert_eq!(tcp_hello(&bed.w(0).ns, VIP2, 80).as_deref(), Some("b1"));
    assert_eq!(
        tcp_hello(&bed.host, VIP2, 80).as_deref(),
        Some("b1"),
        "host processes reach it too"
    );
    assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b2"));

    // The full way: SIGHUP asks for a resync, which observes the live state.
    let (resyncs, applies2) = (reconciles(&s, "resync"), applies(&s));
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) }, 0);
    let s = d.wait("the resync", |s| reconciles(s, "resync") > resyncs);
    let last = &s["last_reconcile"];
    assert_eq!(last["how"], "observed", "{s}");
    assert_eq!(
        (last["operations"].as_u64(), last["repairs"].as_u64()),
        (Some(0), Some(0)),
        "the resync found nothing to do after the incremental reconciles\n{}",
        d.log_text()
    );
    assert_eq!(last_result(&s), "converged", "{s}");
    assert_eq!(applies(&s), applies2, "{s}");
    let (code, diff) = bed.diff();
    assert_eq!(code, 0, "weft diff finds nothing either:\n{diff}");
}

#[test]
fn a_service_with_a_selector_reaches_what_it_selects_and_follows_label_changes() {
    let Some(bed) =
        bed("a_service_with_a_selector_reaches_what_it_selects_and_follows_label_changes")
    else {
        return;
    };
    // No EndpointSlice: weft makes the service's slices from the endpoints its selector picks.
    bed.write(
        "svc.yaml",
        &service(
            "web",
            &format!("  clusterIP: {VIP}\n  selector: {{app: web}}\n"),
            "    - {name: http, port: 80, targetPort: 8080}\n",
        ),
    );
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "50ms"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");
    let spread = || -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..40 {
            if let Some(name) = tcp_hello(&bed.w(0).ns, VIP, 80) {
                *seen.entry(name).or_insert(0) += 1;
            }
        }
        seen
    };
    let seen = spread();
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["b1", "b2"],
        "connections spread over both selected endpoints: {seen:?}"
    );
    assert_eq!(
        seen.values().sum::<usize>(),
        40,
        "every connection answered: {seen:?}"
    );

    // `weft dump nat` says the backends come from the selector.
    let config = bed.config.to_str().unwrap().to_string();
    let bpffs = bed.bpffs.to_str().unwrap().to_string();
    let out = bed.weft(&[
        "dump", "nat", &config, "--node", &bed.node, "--bpffs", &bpffs,
    ]);
    let table = output_text(&out);
    assert!(
        table.contains("shop/web port http") && table.contains("selector app=web"),
        "{table}"
    );

    // b2 is relabelled: it is no longer selected, and new connections go to b1 alone.
    bed.write(
        "wl/b2.yaml",
        &bed.wep_yaml(2, "b2", "shop", &[("app", "web-old")], &["kns.shop"]),
    );
    wait_for("b2 to leave the service", DEADLINE, || {
        let seen = spread();
        (seen.keys().cloned().collect::<Vec<_>>() == ["b1"] && seen["b1"] == 40).then_some(())
    });
    // And back.
    bed.write(
        "wl/b2.yaml",
        &bed.wep_yaml(2, "b2", "shop", &[("app", "web")], &["kns.shop"]),
    );
    wait_for("b2 to be selected again", DEADLINE, || {
        (spread().len() == 2).then_some(())
    });
    d.term();
}
