//! `weft-bench fleet-traffic`: TCP between workloads on two hosts, through weft's VXLAN
//! against plain Linux VXLAN between the same kind of namespaces with no programs.
//!
//! Each rig is vm-tests' fleet of two host namespaces on an underlay bridge, one workload on
//! each. The plain rig is configured by hand the way weft configures it (a `vxlan.calico`
//! with learning off, a permanent neighbour and FDB entry for the other host, a /32 route per
//! workload, proxy ARP on the workloads' veths); the weft rig is `weft apply` on each host of
//! an IPPool with vxlanMode Always, the two Nodes and the two WorkloadEndpoints, whose
//! profile allows everything. The loads are the traffic benchmark's (iperf3 with 1 and 8
//! streams; new connections, one byte each way). Runs alternate between the rigs, and each
//! figure is the median of its runs.
//!
//! A NodePort too: new connections from the outside client (the underlay) to node-0's
//! NodePort, whose one backend is the workload on node-1. weft serves it as a Service of type
//! NodePort in the files (Tunnel mode: the backend sees the client); the plain rig as
//! kube-proxy's iptables mode would, a DNAT in PREROUTING and a MASQUERADE in POSTROUTING
//! (iptables-legacy), over the same plain VXLAN.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use weft_vm_tests::fleet::{self, workload_ip, Fleet};

use crate::report::{Common, Report, Row, Spread};
use crate::traffic::load::{self, EchoServer, Sample};

const ECHO_PORT: u16 = 8080;
const NODE_PORT: u16 = 30080;
const IPERF_PORT: u16 = 5201;
const CONN_THREADS: usize = 4;

struct Rig {
    fleet: Fleet,
    iperf: Child,
    _echo: EchoServer,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.iperf.kill();
        let _ = self.iperf.wait();
    }
}

fn sysctl(ns: &weft_vm_tests::Netns, key: &'static str) {
    ns.run(move || std::fs::write(format!("/proc/sys/net/{key}"), "1"))
        .unwrap_or_else(|e| panic!("sysctl {key}: {e}"));
}

/// What weft programs on each host, by hand, with no programs: the baseline.
fn plain_vxlan(f: &Fleet) {
    let mac = |i: usize| format!("02:00:00:00:00:{:02x}", i + 1);
    for i in 0..2 {
        let h = &f.hosts[i].host;
        let (local, _) = fleet::underlay(i);
        h.ip(&[
            "link",
            "add",
            "vxlan.calico",
            "address",
            &mac(i),
            "mtu",
            "1450",
            "type",
            "vxlan",
            "id",
            "4096",
            "local",
            &local.to_string(),
            "dstport",
            "4789",
            "nolearning",
        ]);
        h.ip(&[
            "addr",
            "add",
            &format!("{}/32", fleet::tunnel(i)),
            "dev",
            "vxlan.calico",
        ]);
        h.ip(&["link", "set", "vxlan.calico", "up"]);
        let j = 1 - i;
        let (far, _) = fleet::underlay(j);
        h.ip(&[
            "neigh",
            "add",
            &fleet::tunnel(j).to_string(),
            "lladdr",
            &mac(j),
            "dev",
            "vxlan.calico",
            "nud",
            "permanent",
        ]);
        weft_vm_tests::sh(&[
            "nsenter",
            &format!("--net={}", h.path().display()),
            "bridge",
            "fdb",
            "add",
            &mac(j),
            "dev",
            "vxlan.calico",
            "dst",
            &far.to_string(),
            "self",
            "permanent",
        ]);
        h.ip(&[
            "route",
            "add",
            &format!("{}/32", workload_ip(j, 0)),
            "via",
            &fleet::tunnel(j).to_string(),
            "dev",
            "vxlan.calico",
            "onlink",
        ]);
        h.ip(&[
            "route",
            "add",
            &format!("{}/32", workload_ip(i, 0)),
            "dev",
            "cali0",
            "scope",
            "link",
        ]);
        // The other host's tunnel address, which its masqueraded NodePort clients come from.
        h.ip(&[
            "route",
            "add",
            &format!("{}/32", fleet::tunnel(j)),
            "via",
            &fleet::tunnel(j).to_string(),
            "dev",
            "vxlan.calico",
            "onlink",
        ]);
        for key in [
            "ipv4/conf/all/forwarding",
            "ipv4/conf/cali0/forwarding",
            "ipv4/conf/cali0/proxy_arp",
            "ipv4/conf/vxlan.calico/forwarding",
        ] {
            sysctl(h, key);
        }
    }
    // kube-proxy's iptables mode for the NodePort on node-0, reduced to its one service.
    let backend_ip = workload_ip(1, 0).to_string();
    let backend = format!("{backend_ip}:{ECHO_PORT}");
    let (node_port, echo_port) = (NODE_PORT.to_string(), ECHO_PORT.to_string());
    let host0 = format!("--net={}", f.hosts[0].host.path().display());
    for rule in [
        vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--dport",
            &node_port,
            "-j",
            "DNAT",
            "--to-destination",
            &backend,
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-p",
            "tcp",
            "-d",
            &backend_ip,
            "--dport",
            &echo_port,
            "-j",
            "MASQUERADE",
        ],
    ] {
        let mut args = vec!["nsenter", &host0, "iptables-legacy"];
        args.extend(rule);
        weft_vm_tests::sh(&args);
    }
}

/// Where the outside client connects to reach the NodePort: node-0's underlay address.
fn node_port_addr() -> SocketAddr {
    SocketAddr::from((fleet::underlay(0).0, NODE_PORT))
}

fn rig(plain: bool) -> Rig {
    let f = Fleet::new("weft-bench fleet-traffic", 2, 1).expect("root and a bpffs");
    if plain {
        plain_vxlan(&f);
    } else {
        f.pool("Always");
        f.write(
            "20-service.yaml",
            &fleet::node_port_service("echo", NODE_PORT, ECHO_PORT, "TCP", "Cluster"),
        );
        f.apply_all();
    }
    let server = &f.w(1, 0).ns;
    let echo = EchoServer::start(server, ECHO_PORT, 16);
    let iperf = Command::new("nsenter")
        .arg(format!("--net={}", server.path().display()))
        .args(["iperf3", "-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    let rig = Rig {
        fleet: f,
        iperf,
        _echo: echo,
    };
    // Reachable, and iperf3 listening, before anything is measured.
    let to = SocketAddr::from((workload_ip(1, 0), ECHO_PORT));
    let client = &rig.fleet.w(0, 0).ns;
    let end = Instant::now() + Duration::from_secs(10);
    while client.run(move || load::one_exchange(to)).is_err() {
        assert!(
            Instant::now() < end,
            "the server is not reachable across hosts"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let outside = &rig.fleet.underlay;
    while outside
        .run(|| load::one_exchange(node_port_addr()))
        .is_err()
    {
        assert!(Instant::now() < end, "the NodePort does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    let iperf_at = SocketAddr::from((workload_ip(1, 0), IPERF_PORT));
    while client
        .run(move || std::net::TcpStream::connect_timeout(&iperf_at, Duration::from_millis(200)))
        .is_err()
    {
        assert!(Instant::now() < end, "iperf3 -s did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    rig
}

#[derive(Clone, Copy)]
enum Load {
    Stream1,
    Stream8,
    Connections,
    NodePort,
}

impl Load {
    const ALL: [Load; 4] = [
        Load::Stream1,
        Load::Stream8,
        Load::Connections,
        Load::NodePort,
    ];

    fn name(self) -> &'static str {
        match self {
            Load::Stream1 => "weft's VXLAN across hosts: TCP throughput, 1 stream (iperf3)",
            Load::Stream8 => "weft's VXLAN across hosts: TCP throughput, 8 streams (iperf3 -P 8)",
            Load::Connections => {
                "weft's VXLAN across hosts: new connections (connect, 1 byte each way, close)"
            }
            Load::NodePort => {
                "a NodePort on node-0, its backend on node-1: new connections from outside"
            }
        }
    }

    /// The target on the ratio to the baseline, where it sets one.
    fn target(self) -> Option<f64> {
        match self {
            Load::Stream1 | Load::Stream8 => Some(0.95),
            Load::Connections => Some(0.9),
            Load::NodePort => None,
        }
    }

    fn baseline(self) -> &'static str {
        match self {
            Load::NodePort => {
                "kube-proxy's iptables mode (DNAT + MASQUERADE, iptables-legacy) over plain Linux VXLAN"
            }
            _ => "plain Linux VXLAN, no programs",
        }
    }

    fn unit(self) -> (&'static str, f64) {
        match self {
            Load::Stream1 | Load::Stream8 => ("Gbit/s", 1e9),
            Load::Connections | Load::NodePort => ("conn/s", 1.0),
        }
    }
}

fn measure(r: &Rig, l: Load, secs: u32) -> Result<Sample, String> {
    let client = &r.fleet.w(0, 0).ns;
    match l {
        Load::Stream1 | Load::Stream8 => load::iperf(
            client,
            SocketAddr::from((workload_ip(1, 0), IPERF_PORT)),
            r.iperf.id(),
            if matches!(l, Load::Stream1) { 1 } else { 8 },
            secs,
        ),
        Load::Connections => load::new_connections(
            client,
            SocketAddr::from((workload_ip(1, 0), ECHO_PORT)),
            f64::from(secs),
            CONN_THREADS,
        ),
        Load::NodePort => load::new_connections(
            &r.fleet.underlay,
            node_port_addr(),
            f64::from(secs),
            CONN_THREADS,
        ),
    }
}

/// `--runs N --duration SECS` (default 3 runs of 5 s; --quick 1 of 2 s).
pub fn run(common: Common, args: &[String]) -> ExitCode {
    let (mut runs, mut secs) = if common.quick { (1, 2) } else { (3, 5) };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse().ok())) {
            ("--runs", Some(v)) if v >= 1 => runs = v,
            ("--duration", Some(v)) if v >= 1 => secs = v,
            _ => {
                eprintln!(
                    "usage: weft-bench fleet-traffic [--json] [--quick] [--runs N] [--duration SECS]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(bin) = crate::traffic::ready("weft-bench fleet-traffic") else {
        return ExitCode::FAILURE;
    };
    // The fleet's beds run the weft binary named here.
    std::env::set_var("WEFT_BIN", Path::new(&bin));
    let rigs = [rig(true), rig(false)];
    let mut figures: Vec<[Vec<f64>; 2]> = Load::ALL.iter().map(|_| [vec![], vec![]]).collect();
    for run in 0..runs {
        for (li, l) in Load::ALL.iter().enumerate() {
            for (ri, r) in rigs.iter().enumerate() {
                match measure(r, *l, secs) {
                    Ok(s) => figures[li][ri].push(s.value),
                    Err(e) => {
                        eprintln!("weft-bench fleet-traffic: run {run}, {}: {e}", l.name());
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    drop(rigs);
    report(&figures, runs, secs).print(common, "weft-bench fleet-traffic");
    ExitCode::SUCCESS
}

fn report(figures: &[[Vec<f64>; 2]], runs: u32, secs: u32) -> Report {
    let mut rows = Vec::new();
    for (l, [plain, weft]) in Load::ALL.iter().zip(figures) {
        let (unit, scale) = l.unit();
        let (p, w) = (
            Spread::of(plain).expect("runs"),
            Spread::of(weft).expect("runs"),
        );
        let ratio = w.median / p.median;
        rows.push(Row {
            name: l.name().into(),
            value: w.median / scale,
            unit: unit.into(),
            runs: Some(w.runs),
            min: Some(w.min / scale),
            max: Some(w.max / scale),
            baseline: Some(p.median / scale),
            baseline_name: Some(l.baseline().into()),
            ratio: Some(ratio),
            target: l.target().map(|t| format!("ratio >= {t}")),
            met: l.target().map(|t| ratio >= t),
            detail: Some(format!(
                "baseline {:.*}-{:.*} {unit} over its runs",
                usize::from(scale > 1.0) * 2,
                p.min / scale,
                usize::from(scale > 1.0) * 2,
                p.max / scale
            )),
            command: "weft-bench fleet-traffic".into(),
        });
    }
    Report {
        subcommand: "fleet-traffic".into(),
        title: "TCP between workloads on two hosts: weft's VXLAN against plain Linux VXLAN, and a NodePort against kube-proxy's iptables".into(),
        rows,
        notes: vec![format!(
            "Two host namespaces on an underlay bridge (vm-tests' fleet), one workload each at MTU 1500 over a 1450-byte vxlan.calico. Plain: the same device, neighbour, FDB entry and routes made by hand, no programs (the kernel's fragmentation-needed sets the path MTU). weft: `weft apply` on both hosts (an IPPool with vxlanMode Always, two Nodes, two endpoints whose profile allows everything; weft clamps the handshakes' MSS). NodePort: the outside client (the underlay namespace) to node-0's NodePort {NODE_PORT}, one backend on node-1; weft's Service (Tunnel mode, the backend sees the client) against kube-proxy's iptables rules for it on plain VXLAN (DNAT, then MASQUERADE to node-0's tunnel address), whose rate varies widely from run to run (its range is in the detail). {runs} run(s) of {secs} s per load, alternating between the rigs; medians. New connections: {CONN_THREADS} client threads."
        )],
    }
}
