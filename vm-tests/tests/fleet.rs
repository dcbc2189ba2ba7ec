//! A fleet on one kernel: three host namespaces on an underlay bridge, each running its own
//! weft (own --node, --bpffs and --state-dir) on one shared config directory, two workloads
//! per host, real TCP, UDP and ICMP between hosts over weft's VXLAN.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weft_vm_tests::daemon::{wait_for, DEADLINE};
use weft_vm_tests::fleet::{self, workload_ip, workload_name, Fleet};
use weft_vm_tests::streams::{tcp_echo_server, Streams};
use weft_vm_tests::{
    answer_server, named_server, ping_ok, tcp_hello, tcp_ok, tcp_server, udp_ok, udp_server, Netns,
    PROBE_TIMEOUT,
};

const TCP: u16 = 8080;
const UDP: u16 = 5353;

/// Every workload of the fleet serves TCP and UDP.
fn serve_all(f: &Fleet) {
    for h in &f.hosts {
        for w in &h.workloads {
            tcp_server(&w.ns, TCP);
            udp_server(&w.ns, UDP);
        }
    }
}

fn policy(name: &str, body: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{body}")
}

#[test]
fn workloads_on_three_hosts_reach_each_other_over_vxlan_and_policy_holds_where_each_lives() {
    let Some(f) = Fleet::new("fleet-basics", 3, 2) else {
        return;
    };
    f.pool("Always");
    f.apply_all();
    serve_all(&f);

    for (i, j) in [(1, 0), (1, 1), (2, 0), (2, 1)] {
        let to = workload_ip(i, j);
        assert!(
            f.route_get(0, to).contains("dev vxlan.calico"),
            "{to} goes through VXLAN: {}",
            f.route_get(0, to)
        );
        assert!(tcp_ok(&f.w(0, 0).ns, to, TCP), "TCP h0w0 -> {to}");
        assert!(udp_ok(&f.w(0, 0).ns, to, UDP), "UDP h0w0 -> {to}");
        assert!(ping_ok(&f.w(0, 0).ns, to), "ICMP h0w0 -> {to}");
    }
    assert!(
        tcp_ok(&f.w(2, 1).ns, workload_ip(0, 1), TCP),
        "back the other way"
    );
    assert!(
        tcp_ok(&f.w(1, 0).ns, workload_ip(2, 0), TCP),
        "between the far hosts"
    );
    // Each host routes the others' blocks whole, and blackholes its own beneath its
    // workloads' routes: an address of node-0's block that no workload has ends there.
    let unused = Ipv4Addr::new(10, 244, 1, 50);
    assert!(
        f.route_get(1, unused).contains("dev vxlan.calico"),
        "{}",
        f.route_get(1, unused)
    );
    let own =
        weft_vm_tests::output_text(&f.hosts[0].host.ip(&["route", "show", "type", "blackhole"]));
    assert!(own.contains("10.244.1.0/26"), "node-0's blackholes: {own}");

    // Ingress, enforced on h1w0's host: only h0w0, selected by its labels, which works only
    // if node-1 sees h0w0's own address (nothing masqueraded between hosts).
    f.write(
        "10-ingress.yaml",
        &policy(
            "h1w0-from-h0w0",
            "  selector: app == 'h1w0'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n      protocol: TCP\n      source: {selector: app == 'h0w0'}\n",
        ),
    );
    // Egress, enforced on h2w1's host: not to h0w0.
    f.write(
        "11-egress.yaml",
        &policy(
            "h2w1-not-to-h0w0",
            "  selector: app == 'h2w1'\n  types: [Egress]\n  egress:\n    - action: Deny\n      destination: {selector: app == 'h0w0'}\n    - action: Allow\n",
        ),
    );
    f.apply_all();
    let h1w0 = workload_ip(1, 0);
    assert!(
        tcp_ok(&f.w(0, 0).ns, h1w0, TCP),
        "allowed by label across hosts"
    );
    assert!(
        !tcp_ok(&f.w(0, 1).ns, h1w0, TCP),
        "another workload of that host"
    );
    assert!(
        !tcp_ok(&f.w(2, 0).ns, h1w0, TCP),
        "a workload of a third host"
    );
    assert!(
        !tcp_ok(&f.w(1, 1).ns, h1w0, TCP),
        "a neighbour on the same host"
    );
    assert!(!udp_ok(&f.w(0, 0).ns, h1w0, UDP), "UDP is not allowed");
    assert!(
        !tcp_ok(&f.w(2, 1).ns, workload_ip(0, 0), TCP),
        "egress denied at the source"
    );
    assert!(
        tcp_ok(&f.w(2, 1).ns, workload_ip(0, 1), TCP),
        "the rest of its egress"
    );

    // Removing the policies restores everything.
    f.remove("10-ingress.yaml");
    f.remove("11-egress.yaml");
    f.apply_all();
    assert!(tcp_ok(&f.w(2, 0).ns, h1w0, TCP));
    assert!(tcp_ok(&f.w(2, 1).ns, workload_ip(0, 0), TCP));
}

#[test]
fn cross_subnet_encapsulates_only_to_the_other_subnet() {
    let Some(f) = Fleet::new("fleet-cross-subnet", 3, 1) else {
        return;
    };
    f.pool("CrossSubnet");
    f.apply_all();
    serve_all(&f);
    let (near, _) = fleet::underlay(1);
    let same = f.route_get(0, workload_ip(1, 0));
    assert!(
        same.contains(&format!("via {near} dev eth0")),
        "node-1 shares node-0's subnet: straight over the underlay, unencapsulated: {same}"
    );
    let other = f.route_get(0, workload_ip(2, 0));
    assert!(
        other.contains("dev vxlan.calico"),
        "node-2 is behind a router: through VXLAN: {other}"
    );
    for (i, to) in [
        (0, workload_ip(1, 0)),
        (0, workload_ip(2, 0)),
        (2, workload_ip(1, 0)),
    ] {
        assert!(tcp_ok(&f.w(i, 0).ns, to, TCP), "h{i}w0 -> {to}");
        assert!(ping_ok(&f.w(i, 0).ns, to), "h{i}w0 -> {to} (ICMP)");
    }
}

/// A server in `ns` on `port` that sends `bytes` bytes to each connection and closes it.
fn bulk_server(ns: &Netns, port: u16, bytes: usize) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind bulk");
        tx.send(()).expect("ready");
        let data = vec![0x5au8; bytes];
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(&data);
        }
    });
    rx.recv().expect("bulk server ready");
}

/// How many bytes a connection from `ns` to `to:port` receives before the server closes it,
/// giving up after `within`.
fn bulk_fetch(ns: &Netns, to: Ipv4Addr, port: u16, within: Duration) -> usize {
    ns.run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT)
        else {
            return 0;
        };
        read_up_to(&mut s, usize::MAX, within)
    })
}

/// How many bytes `s` gives, up to `most`, before it closes or `within` runs out.
fn read_up_to(s: &mut TcpStream, most: usize, within: Duration) -> usize {
    let end = Instant::now() + within;
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut n = 0;
    let mut buf = vec![0u8; 65536];
    while n < most && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    n
}

#[test]
fn a_4_mb_transfer_across_hosts_does_not_stall_on_the_vxlan_mtu() {
    let Some(f) = Fleet::new("fleet-mtu", 2, 1) else {
        return;
    };
    f.pool("Always");
    f.apply_all();
    const BYTES: usize = 4 << 20;
    for (i, j) in [(0, 1), (1, 0)] {
        bulk_server(&f.w(i, 0).ns, 9000, BYTES);
        // The workloads' own MTU stays 1500 over a 1450-byte VXLAN device.
        let mtu = weft_vm_tests::output_text(&f.w(j, 0).ns.ip(&["-o", "link", "show", "eth0"]));
        assert!(mtu.contains("mtu 1500"), "{mtu}");
        let got = bulk_fetch(
            &f.w(j, 0).ns,
            workload_ip(i, 0),
            9000,
            Duration::from_secs(20),
        );
        assert_eq!(got, BYTES, "h{j}w0 fetching 4 MB from h{i}w0");
        // The handshake's MSS was clamped to the tunnel's: no segment was too big for it, so
        // no fragmentation-needed lowered the sender's path MTU.
        let cached = weft_vm_tests::output_text(&f.w(i, 0).ns.ip(&[
            "route",
            "get",
            &workload_ip(j, 0).to_string(),
        ]));
        assert!(
            !cached.contains("mtu"),
            "h{i}w0 learnt a path MTU: {cached}"
        );
    }
}

#[test]
fn a_cluster_ip_spread_across_hosts_reaches_every_backend_from_workloads_and_hosts() {
    let Some(f) = Fleet::new("fleet-clusterip", 3, 1) else {
        return;
    };
    f.pool("Always");
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    f.write(
        "20-service.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: fleet}}\nspec:\n  clusterIP: {VIP}\n  ports:\n    - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: fleet\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n  - {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n  - {{addresses: [{}], nodeName: {}}}\n  - {{addresses: [{}], nodeName: {}}}\n",
            workload_ip(1, 0),
            fleet::node(1),
            workload_ip(2, 0),
            fleet::node(2),
        ),
    );
    f.apply_all();
    for i in [1, 2] {
        named_server(&f.w(i, 0).ns, 8080, &workload_name(i, 0));
    }
    let want: std::collections::BTreeSet<String> =
        [workload_name(1, 0), workload_name(2, 0)].into();
    // From a workload (translated by weft_from_wep) and from host 0 itself (connect-time load
    // balancing, whose cgroup programs every host's weft attaches to the one cgroup root: each
    // serves its own namespace's sockets only).
    for (what, ns) in [
        ("workload h0w0", &f.w(0, 0).ns),
        ("host node-0", &f.hosts[0].host),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            if let Some(name) = tcp_hello(ns, VIP, 80) {
                seen.insert(name);
            }
            if seen == want {
                break;
            }
        }
        assert_eq!(seen, want, "{what} reaches both remote backends");
    }
}

#[test]
fn the_daemons_route_a_new_workload_within_5_s_of_the_write_and_withdraw_it_on_removal() {
    let Some(mut f) = Fleet::new("fleet-daemon", 3, 1) else {
        return;
    };
    f.pool("Always");
    let mut daemons: Vec<_> = f.hosts.iter().map(|h| h.daemon(&[])).collect();
    for d in &mut daemons {
        d.started();
    }
    serve_all(&f);
    assert!(tcp_ok(&f.w(0, 0).ns, workload_ip(2, 0), TCP));

    // A new workload on node-1: its device first (as a CNI would make it), then its file. Its
    // address is in a block node-1 has nothing in yet (10.244.2.64/26), so the other hosts
    // route the block when it comes and withdraw it when it goes.
    let ip = Ipv4Addr::new(10, 244, 2, 100);
    assert_eq!(
        workload_ip(1, 0),
        Ipv4Addr::new(10, 244, 2, 2),
        "node-1's first block"
    );
    let w = f.hosts[1].workload("cali1", ip);
    tcp_server(&f.hosts[1].w(w).ns, TCP);
    let name = workload_name(1, 1);
    let yaml = f.hosts[1].wep_yaml(w, &name, "fleet", &[("app", &name)], &["kns.fleet"]);
    let written = Instant::now();
    f.write(&format!("workloads/{name}.yaml"), &yaml);
    for i in [0, 2] {
        wait_for(
            &format!("h{i}w0 to reach the new workload"),
            Duration::from_secs(5).saturating_sub(written.elapsed()),
            || tcp_ok(&f.w(i, 0).ns, ip, TCP).then_some(()),
        );
    }
    eprintln!(
        "reached from both other hosts {:?} after the write",
        written.elapsed()
    );

    f.remove(&format!("workloads/{name}.yaml"));
    for i in [0, 2] {
        wait_for(&format!("node-{i} to withdraw the route"), DEADLINE, || {
            (!f.route_get(i, ip).contains("vxlan.calico")).then_some(())
        });
    }
    assert!(!tcp_ok(&f.w(0, 0).ns, ip, TCP), "no longer reached");
}

#[test]
fn a_killed_hosts_weft_restarted_after_a_change_loses_no_cross_host_connection() {
    let Some(f) = Fleet::new("fleet-restart", 3, 1) else {
        return;
    };
    f.pool("Always");
    let mut daemons: Vec<_> = f.hosts.iter().map(|h| h.daemon(&[])).collect();
    for d in &mut daemons {
        d.started();
    }
    tcp_echo_server(&f.w(1, 0).ns, 7000);
    let streams = Streams::open(&f.w(0, 0).ns, workload_ip(1, 0), 7000, 8);
    streams.wait_progress(3, DEADLINE);

    daemons[1].kill9();
    // A change while node-1's weft is down: a policy elsewhere, and a new node's worth of
    // settings it must pick up.
    f.write(
        "30-other.yaml",
        &policy(
            "h2w0-only-tcp",
            "  selector: app == 'h2w0'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n      protocol: TCP\n",
        ),
    );
    streams.wait_progress(3, DEADLINE);
    let mut again = f.hosts[1].daemon(&[]);
    again.started();
    streams.wait_progress(5, DEADLINE);
    let report = streams.stop();
    assert!(
        report.lost.is_empty(),
        "cross-host streams lost over the restart: {:?}",
        report.lost
    );
    assert!(report.rounds > 0);
    // Dropped, the other daemons are killed with -9 too.
    drop((again, daemons));
}

#[test]
fn a_deleted_vxlan_device_and_fdb_entry_are_made_again_by_the_daemon() {
    let Some(f) = Fleet::new("fleet-drift", 2, 1) else {
        return;
    };
    f.pool("Always");
    let mut d0 = f.hosts[0].daemon(&["--resync", "1s"]);
    d0.started();
    f.hosts[1].apply();
    serve_all(&f);
    let to = workload_ip(1, 0);
    assert!(tcp_ok(&f.w(0, 0).ns, to, TCP));

    f.hosts[0].host.ip(&["link", "del", "vxlan.calico"]);
    wait_for(
        "the VXLAN device and its route to be back",
        DEADLINE,
        || f.route_get(0, to).contains("vxlan.calico").then_some(()),
    );
    wait_for("traffic over it again", DEADLINE, || {
        tcp_ok(&f.w(0, 0).ns, to, TCP).then_some(())
    });

    let fdb = |f: &Fleet| {
        weft_vm_tests::output_text(&weft_vm_tests::sh(&[
            "nsenter",
            &format!("--net={}", f.hosts[0].host.path().display()),
            "bridge",
            "fdb",
            "show",
            "dev",
            "vxlan.calico",
        ]))
    };
    let (far, _) = fleet::underlay(1);
    let entry = fdb(&f)
        .lines()
        .find(|l| l.contains(&format!("dst {far}")))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .expect("an FDB entry for node-1");
    weft_vm_tests::sh(&[
        "nsenter",
        &format!("--net={}", f.hosts[0].host.path().display()),
        "bridge",
        "fdb",
        "del",
        &entry,
        "dev",
        "vxlan.calico",
        "self",
    ]);
    assert!(!fdb(&f).contains(&entry));
    wait_for("the FDB entry to be written again", DEADLINE, || {
        fdb(&f).contains(&entry).then_some(())
    });
    assert!(tcp_ok(&f.w(0, 0).ns, to, TCP));
}

/// A TCP server in `ns` on `port` that answers each connection with the address it came from.
fn peer_server(ns: &Netns, port: u16) {
    answer_server(ns, port, |peer| peer.ip().to_string());
}

#[test]
fn a_node_port_reached_on_one_host_is_served_by_a_backend_on_another_which_sees_the_client() {
    let Some(f) = Fleet::new("fleet-nodeport", 3, 1) else {
        return;
    };
    f.pool("Always");
    // One backend, on node-1; the port of each service is open on every host.
    f.write(
        "20-services.yaml",
        &(fleet::node_port_service("cluster", 30080, 8080, "TCP", "Cluster")
            + &fleet::node_port_service("local", 30081, 8080, "TCP", "Local")),
    );
    f.apply_all();
    peer_server(&f.w(1, 0).ns, 8080);
    let ask = |host: usize, port: u16| tcp_hello(&f.underlay, fleet::underlay(host).0, port);
    for host in 0..3 {
        assert_eq!(
            ask(host, 30080),
            Some(fleet::outside_for(host).to_string()),
            "NodePort on node-{host}: served by node-1's backend, which sees the client's own address"
        );
    }
    // externalTrafficPolicy Local: only where a backend is local.
    assert_eq!(ask(1, 30081), Some(fleet::OUTSIDE.to_string()));
    assert_eq!(ask(0, 30081), None, "node-0 has no local backend");
    assert_eq!(ask(2, 30081), None, "node-2 has no local backend");
}

/// A UDP receiver in `ns` on `port`: each datagram's source address, as it arrives.
fn udp_sources(ns: &Netns, port: u16) -> mpsc::Receiver<Ipv4Addr> {
    let (ready_tx, ready) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        ready_tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            if let std::net::IpAddr::V4(a) = from.ip() {
                let _ = tx.send(a);
            }
        }
    });
    ready.recv().expect("receiver ready");
    rx
}

/// Sends a datagram from `ns`, from source address `from` (an address of `ns`), to `to:port`.
fn send_from(ns: &Netns, from: Ipv4Addr, to: Ipv4Addr, port: u16) {
    ns.run(move || {
        let s = std::net::UdpSocket::bind((from, 0)).expect("bind source");
        s.send_to(b"rpf", (to, port)).expect("send");
    });
}

/// Whether `rx` hears from `from` within a probe's time.
fn heard(rx: &mpsc::Receiver<Ipv4Addr>, from: Ipv4Addr) -> bool {
    let end = Instant::now() + PROBE_TIMEOUT;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(a) if a == from => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn strict_rpf_drops_sources_whose_route_is_elsewhere_and_loose_only_unroutable_ones() {
    let Some(f) = Fleet::new("fleet-rpf", 1, 2) else {
        return;
    };
    f.pool("Always");
    let felix = |mode: &str| f.felix(&format!("  bpfEnforceRPF: {mode}\n"));
    felix("Strict");
    // The host routes what comes in on its uplink to its workloads, as routers do, and only
    // weft judges the sources: the kernel's own reverse-path filter is off there.
    f.hosts[0].host.run(|| {
        for k in ["all", "eth0"] {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{k}/rp_filter"), "0")
                .expect("rp_filter");
        }
        std::fs::write("/proc/sys/net/ipv4/conf/eth0/forwarding", "1").expect("forwarding");
    });
    let target = workload_ip(0, 0);
    let spoofed = workload_ip(0, 1); // h0w1's address, whose route on node-0 is its own veth
    let (node0, _) = fleet::underlay(0);
    f.underlay.ip(&[
        "route",
        "add",
        &format!("{target}/32"),
        "via",
        &node0.to_string(),
    ]);
    f.underlay
        .ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "br0"]);
    let rx = udp_sources(&f.w(0, 0).ns, 6000);

    send_from(&f.underlay, fleet::OUTSIDE, target, 6000);
    assert!(heard(&rx, fleet::OUTSIDE), "a genuine source from outside");
    let before = f.hosts[0].counted("to-wep", "drop-rpf");
    send_from(&f.underlay, spoofed, target, 6000);
    assert!(
        !heard(&rx, spoofed),
        "Strict: h0w1's address coming in on eth0"
    );
    assert!(
        f.hosts[0].counted("to-wep", "drop-rpf") > before,
        "counted as drop-rpf"
    );

    // A workload cannot send from an address not its own, whatever the setting.
    f.w(0, 1)
        .ns
        .ip(&["addr", "add", "10.244.1.99/32", "dev", "eth0"]);
    send_from(&f.w(0, 1).ns, Ipv4Addr::new(10, 244, 1, 99), target, 6000);
    assert!(
        !heard(&rx, Ipv4Addr::new(10, 244, 1, 99)),
        "spoofed by a workload"
    );

    // Loose: a route back exists (through h0w1's veth), so it passes.
    felix("Loose");
    send_from(&f.underlay, spoofed, target, 6000);
    assert!(heard(&rx, spoofed), "Loose: the source has a route");
}

#[test]
fn under_dsr_the_backends_host_answers_the_client_itself_and_opted_out_clients_go_back_through_the_host_they_reached(
) {
    let Some(f) = Fleet::new("fleet-dsr", 3, 1) else {
        return;
    };
    f.pool("Always");
    f.write(
        "05-felix.yaml",
        &format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfExternalServiceMode: DSR\n  bpfDSROptoutCIDRs: [{}/32]\n", fleet::OUTSIDE),
    );
    f.write(
        "20-service.yaml",
        &fleet::node_port_service("web", 30080, 8080, "TCP", "Cluster"),
    );
    f.apply_all();
    peer_server(&f.w(1, 0).ns, 8080);
    // The client to node `host`'s NodePort, from the address the underlay's routes choose.
    let ask = |host: usize| tcp_hello(&f.underlay, fleet::underlay(host).0, 30080);
    // DSR: node-0 sends the client's packets on unchanged; node-1 translates them and answers
    // the client itself, so nothing comes back into node-0's tunnel. The client speaks to
    // node-0 from its address on the other subnet, which is not opted out.
    let dsr_client = fleet::OUTSIDE_B;
    let (node0, _) = fleet::underlay(0);
    let route = [
        "route".to_string(),
        "replace".into(),
        format!("{node0}/32"),
        "dev".into(),
        "br0".into(),
        "src".into(),
        dsr_client.to_string(),
    ];
    f.underlay
        .ip(&route.iter().map(String::as_str).collect::<Vec<_>>());
    let before = f.hosts[0].host.rx_packets("vxlan.calico");
    for _ in 0..3 {
        assert_eq!(
            ask(0),
            Some(dsr_client.to_string()),
            "served, the client's address kept"
        );
    }
    assert_eq!(
        f.hosts[0].host.rx_packets("vxlan.calico"),
        before,
        "no reply came back through node-0"
    );
    assert_eq!(ask(2), Some(dsr_client.to_string()), "through node-2 too");
    assert_eq!(
        ask(1),
        Some(fleet::OUTSIDE.to_string()),
        "and on the backend's own node"
    );

    // An opted-out client is served as in Tunnel mode: its replies come back through node-0.
    f.underlay.ip(&["route", "del", &format!("{node0}/32")]);
    let before = f.hosts[0].host.rx_packets("vxlan.calico");
    assert_eq!(ask(0), Some(fleet::OUTSIDE.to_string()));
    assert!(
        f.hosts[0].host.rx_packets("vxlan.calico") > before,
        "the opted-out client's replies came back through node-0"
    );
}

/// Sends `bytes` bytes from `ns` to `to:port` (an echo server behind it) and reads them back;
/// how many came back before `within` ran out.
fn echo_upload(ns: &Netns, to: Ipv4Addr, port: u16, bytes: usize, within: Duration) -> usize {
    ns.run(move || {
        let Ok(s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT) else {
            return 0;
        };
        let mut writer = s.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            let chunk = vec![0xa5u8; 65536];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if writer.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n;
            }
        });
        let mut s = s;
        let n = read_up_to(&mut s, bytes, within);
        let _ = sender.join();
        n
    })
}

#[test]
fn with_xdp_acceleration_a_node_ports_remote_flow_is_forwarded_from_xdp_in_tunnel_and_dsr_mode() {
    let Some(f) = Fleet::new("fleet-xdp", 2, 1) else {
        return;
    };
    f.pool("Always");
    let felix = |mode: &str| {
        f.felix(&format!(
            "  bpfExternalServiceAcceleration: XDP\n  bpfExternalServiceMode: {mode}\n"
        ))
    };
    // NodePorts of node-1's workload: a TCP echo server, who the backend sees, and a UDP
    // receiver.
    f.write(
        "20-services.yaml",
        &(fleet::node_port_service("echo", 30080, 8080, "TCP", "Cluster")
            + &fleet::node_port_service("who", 30081, 8081, "TCP", "Cluster")
            + &fleet::node_port_service("dgram", 30082, 8082, "UDP", "Cluster")),
    );
    felix("Tunnel");
    tcp_echo_server(&f.w(1, 0).ns, 8080);
    peer_server(&f.w(1, 0).ns, 8081);
    let heard_from = udp_sources(&f.w(1, 0).ns, 8082);
    // node-0's uplink is a veth: its XDP runs in generic mode, where XDP_TX always reaches
    // the peer.
    let link = weft_vm_tests::output_text(&f.hosts[0].host.ip(&["link", "show", "eth0"]));
    assert!(link.contains("xdpgeneric"), "{link}");
    let (node0, _) = fleet::underlay(0);
    let client = fleet::outside_for(0);
    for (round, mode) in ["Tunnel", "DSR"].into_iter().enumerate() {
        felix(mode);
        let before = f.hosts[0].counted("xdp", "accept-xdp-forward");
        let bytes = 4 << 20;
        assert_eq!(
            echo_upload(&f.underlay, node0, 30080, bytes, Duration::from_secs(20)),
            bytes,
            "{mode}: 4 MB up through node-0's NodePort to node-1's backend, and back"
        );
        // Generic XDP sees the client's TCP segments as the veth hands them over, coalesced
        // beyond the underlay's MTU, and leaves those to tc; its ACKs it sends on.
        assert!(
            f.hosts[0].counted("xdp", "accept-xdp-forward") > before,
            "{mode}: some of the TCP flow went from XDP"
        );
        assert_eq!(
            tcp_hello(&f.underlay, node0, 30081),
            Some(client.to_string()),
            "{mode}: the backend sees the client's own address"
        );

        // Datagrams of one flow: the first is tc's, the rest go from XDP.
        let before = f.hosts[0].counted("xdp", "accept-xdp-forward");
        let sent = 400;
        f.underlay.run(move || {
            let s = std::net::UdpSocket::bind((client, 40000 + round as u16)).expect("bind");
            for i in 0..sent {
                s.send_to(&[0x42; 512], (node0, 30082)).expect("send");
                if i % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        let mut got = 0;
        while let Ok(from) = heard_from.recv_timeout(PROBE_TIMEOUT) {
            assert_eq!(from, client, "{mode}: the client's own address");
            got += 1;
            if got == sent {
                break;
            }
        }
        let by_xdp = f.hosts[0].counted("xdp", "accept-xdp-forward") - before;
        assert!(
            got >= sent * 9 / 10,
            "{mode}: {got} of {sent} datagrams arrived"
        );
        assert!(
            by_xdp as usize >= got * 9 / 10,
            "{mode}: {by_xdp} of the {got} datagrams that arrived went from XDP"
        );
    }
}
