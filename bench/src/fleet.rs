//! `weft-bench fleet`: a fleet's control plane at 1,000 nodes and 100,000 remote workloads,
//! through the real `weft` binary in a network namespace of its own (the host of one node).
//!
//! The directory holds an IPPool with vxlanMode Always, NODES Node resources (ten to a file)
//! and WORKLOADS WorkloadEndpoints spread evenly over the other nodes (a hundred to a file),
//! plus LOCAL workloads of this node with a veth each. Measured:
//!
//! - cold converge: `weft apply DIR` from nothing (vxlan.calico, a neighbour and FDB entry per
//!   node, a route per remote workload address, the programs and maps of the local
//!   workloads), wall and CPU time and peak RSS;
//! - `weft diff DIR` on the converged host (it must find nothing);
//! - one node added under `weft run`: a file with a Node and a hundred workloads on it renamed
//!   into place, until a route to its last workload exists (routes go in after the node's
//!   neighbour and FDB entries), seen from this process by a UDP connect() in the namespace,
//!   which has no default route; CHANGES trials;
//! - the daemon's peak RSS (VmHWM) after all that.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::control::{Daemon, Host};
use crate::netns::Netns;
use crate::report::{Common, Report, Row, Spread};

const NODE: &str = "node-0";
const LOCAL: usize = 10;
const CHANGES: usize = 5;
const DEBOUNCE: &str = "10ms";
const TIMEOUT: Duration = Duration::from_secs(300);

/// Node `i`'s underlay address (this node is 0): 172.16.0.0/12, one /12 subnet for all.
fn underlay(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i as u32)
}

/// Node `i`'s tunnel address, and its workloads': 10.<i>.<j>.0/24 blocks, node i at
/// 10.0.0.0 + i * 256 (up to 65,536 nodes), workload j at + 1 + j.
fn tunnel(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i as u32) * 256)
}

fn workload(i: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(tunnel(i)) + 1 + j as u32)
}

fn node_yaml(i: usize) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node-{i}}}\nspec:\n  bgp: {{ipv4Address: {}/12}}\n  ipv4VXLANTunnelAddr: {}\n",
        underlay(i),
        tunnel(i)
    )
}

fn wep_yaml(i: usize, j: usize) -> String {
    let iface = if i == 0 {
        format!("cali{j}")
    } else {
        format!("cali{i}x{j}")
    };
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: w{i}-{j}, namespace: fleet, labels: {{app: a{}}}}}\nspec: {{node: node-{i}, interfaceName: {iface}, ipNetworks: [{}/32], profiles: [kns.fleet]}}\n",
        j % 10,
        workload(i, j)
    )
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("writing the configuration");
    std::fs::rename(&tmp, path).expect("renaming it into place");
}

/// The directory of `nodes` nodes and `workloads` remote workloads.
fn write_config(dir: &Path, nodes: usize, workloads: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("nodes")).expect("config dir");
    std::fs::create_dir_all(dir.join("workloads")).expect("config dir");
    std::fs::write(
        dir.join("00-base.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: fleet}\nspec: {cidr: 10.0.0.0/8, vxlanMode: Always}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: fleet}\n",
    )
    .expect("base");
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(10) {
        let text: String = chunk.iter().map(|&i| node_yaml(i)).collect();
        std::fs::write(dir.join(format!("nodes/{}.yaml", chunk[0])), text).expect("nodes");
    }
    let local: String = (0..LOCAL).map(|j| wep_yaml(0, j)).collect();
    std::fs::write(dir.join("workloads/local.yaml"), local).expect("local workloads");
    // Remote workloads, evenly over nodes 1..nodes.
    let per_node = workloads / (nodes - 1).max(1);
    let mut file = String::new();
    let mut count = 0;
    for i in 1..nodes {
        for j in 0..per_node {
            file += &wep_yaml(i, j);
            count += 1;
            if count % 100 == 0 {
                std::fs::write(dir.join(format!("workloads/{count}.yaml")), &file)
                    .expect("workloads");
                file.clear();
            }
        }
    }
    if !file.is_empty() {
        std::fs::write(dir.join(format!("workloads/{count}.yaml")), &file).expect("workloads");
    }
}

/// This node's namespace: its underlay interface with its address (no default route, so a
/// route to a remote workload exists only once weft writes it) and its local workloads' veths.
fn host() -> Netns {
    let ns = Netns::new("weft-bench-fleet-");
    let mut batch = format!(
        "link add eth0 type veth peer name eth1\naddr add {}/12 dev eth0\nlink set eth0 up\nlink set eth1 up\n",
        underlay(0)
    );
    for j in 0..LOCAL {
        batch += &format!("link add cali{j} type veth peer name cali{j}p\nlink set cali{j} up\nlink set cali{j}p up\n");
    }
    let file = std::env::temp_dir().join(format!("{}.links", ns.name));
    std::fs::write(&file, batch).expect("writing the link batch");
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(&file)
        .output()
        .expect("ip -batch");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "creating links: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ns
}

/// Whether the namespace routes `to` now: a UDP connect() does the route lookup, and fails
/// with ENETUNREACH without one (the namespace has no default route).
fn routed(ns: &Netns, to: Ipv4Addr) -> bool {
    ns.run(move || {
        std::net::UdpSocket::bind(("0.0.0.0", 0))
            .and_then(|s| s.connect((to, 9)))
            .is_ok()
    })
}

struct Figures {
    nodes: usize,
    workloads: usize,
    cold: crate::control::Ran,
    diff: crate::control::Ran,
    node_added: Vec<f64>,
    daemon_rss_mib: f64,
}

fn measure(bin: &Path, nodes: usize, workloads: usize) -> Figures {
    let dir = std::env::temp_dir().join(format!("weftbench-fleet-{}-{nodes}", std::process::id()));
    write_config(&dir, nodes, workloads);
    let w = Host::in_ns(host(), bin, NODE, &format!("fleet-{}", std::process::id()));
    let ns = &w.ns;
    let d = dir.to_str().expect("a UTF-8 path");
    let cold = crate::control::run_timed(&mut w.weft(&["apply", d]));
    assert_eq!(cold.code, 0, "weft apply converged");
    assert!(
        routed(ns, workload(nodes - 1, 0)),
        "a remote workload is routed"
    );
    eprintln!(
        "{nodes} nodes, {workloads} workloads: cold apply {:.0} ms",
        cold.wall.as_secs_f64() * 1e3
    );
    let diff = crate::control::run_timed(&mut w.weft(&["diff", d]));
    assert_eq!(diff.code, 0, "weft diff finds nothing after apply");

    let state = w.state.to_str().expect("a UTF-8 path").to_string();
    let daemon = Daemon(
        w.weft(&["run", d, "--state-dir", &state, "--debounce", DEBOUNCE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weft run"),
    );
    // Started and converged: the status file says so.
    let status = w.state.join("status.json");
    let t = Instant::now();
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"converged\"")) {
        assert!(t.elapsed() < TIMEOUT, "weft run did not converge");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut node_added = Vec::new();
    for k in 0..CHANGES {
        let i = nodes + k;
        let mut text = node_yaml(i);
        for j in 0..100 {
            text += &wep_yaml(i, j);
        }
        let last = workload(i, 99);
        assert!(!routed(ns, last));
        let t = Instant::now();
        write_atomic(&dir.join(format!("nodes/added-{i}.yaml")), &text);
        while !routed(ns, last) {
            assert!(
                t.elapsed() < TIMEOUT,
                "the added node's workloads were not routed"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        node_added.push(t.elapsed().as_secs_f64() * 1e3);
        // Let the daemon's bookkeeping finish before the next trial.
        std::thread::sleep(Duration::from_secs(1));
    }
    let daemon_rss_mib = crate::control::vm_hwm_mib(daemon.0.id());
    drop(daemon);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    Figures {
        nodes,
        workloads,
        cold,
        diff,
        node_added,
        daemon_rss_mib,
    }
}

/// `--nodes N --workloads M` (default 1,000 and 100,000; --quick 100 and 10,000).
pub fn run(common: Common, args: &[String]) -> ExitCode {
    let (mut nodes, mut workloads) = if common.quick {
        (100, 10_000)
    } else {
        (1_000, 100_000)
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse().ok())) {
            ("--nodes", Some(v)) if v >= 2 => nodes = v,
            ("--workloads", Some(v)) => workloads = v,
            _ => {
                eprintln!("usage: weft-bench fleet [--json] [--quick] [--nodes N] [--workloads M]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(bin) = crate::traffic::ready("weft-bench fleet") else {
        return ExitCode::FAILURE;
    };
    report(&measure(&bin, nodes, workloads)).print(common, "weft-bench fleet");
    ExitCode::SUCCESS
}

fn report(f: &Figures) -> Report {
    let what = format!(
        "{} nodes, {} remote workloads",
        f.nodes,
        crate::traffic::rig::thousands(f.workloads)
    );
    let row = |name: &str, value: f64, unit: &str, target: Option<f64>| Row {
        name: format!("{what}: {name}"),
        value,
        unit: unit.into(),
        target: target.map(|t| format!("<= {t} {unit}")),
        met: target.map(|t| value <= t),
        command: "weft-bench fleet".into(),
        ..Default::default()
    };
    // The targets are set at 1,000 nodes and 100,000 workloads.
    let at_scale = f.nodes >= 1_000 && f.workloads >= 100_000;
    let t = |v: f64| at_scale.then_some(v);
    let added = Spread::of(&f.node_added).expect("trials");
    let mut rows = vec![
        Row {
            detail: Some(format!("CPU {:.0} ms", f.cold.cpu.as_secs_f64() * 1e3)),
            ..row(
                "cold converge of routes, neighbours and FDB (`weft apply`, from nothing)",
                f.cold.wall.as_secs_f64() * 1e3,
                "ms",
                t(2000.0),
            )
        },
        row(
            "`weft diff` on the converged host",
            f.diff.wall.as_secs_f64() * 1e3,
            "ms",
            None,
        ),
        Row {
            runs: Some(added.runs),
            min: Some(added.min),
            max: Some(added.max),
            ..row(
                "one node (and its 100 workloads) added under `weft run`, file written to routed",
                added.median,
                "ms",
                t(50.0),
            )
        },
        row("peak RSS of `weft run`", f.daemon_rss_mib, "MiB", t(150.0)),
        row("peak RSS of `weft apply`", f.cold.rss_mib, "MiB", t(100.0)),
    ];
    rows.retain(|r| r.value.is_finite());
    Report {
        subcommand: "fleet".into(),
        title: format!("a fleet's control plane: {what} (the weft binary)"),
        rows,
        notes: vec![format!(
            "An IPPool with vxlanMode Always, Node resources ten to a file, remote WorkloadEndpoints a hundred to a file spread evenly over the other nodes, and {LOCAL} local workloads with a veth each. weft runs in a network namespace of its own (no default route) with a private bpffs root. One node added: a file with a Node and 100 workloads on it renamed into place, until a UDP connect() in the namespace finds a route to its last workload, {CHANGES} trials, with `weft run --debounce {DEBOUNCE}`. Peak RSS from wait4 (apply) and VmHWM (the daemon)."
        )],
    }
}
