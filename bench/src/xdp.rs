//! `weft-bench xdp`: what a host endpoint's untracked deny costs, in XDP and in tc.
//!
//! 1. Per packet, through BPF_PROG_TEST_RUN (the kernel's own average over a million runs,
//!    the median of five): weft_xdp dropping a denied source, beside an XDP program that drops
//!    without looking at anything (the floor); the same with XDP's per-CPU cache of verdicts
//!    off, as every packet of a flood from ever-new sources would be; the same policy in tc
//!    (weft_from_hep's untracked stage). Target: XDP drop within 2x the floor. The XDP paper's
//!    anchor, 24 Mpps per core for a drop, is printed beside the packet rate.
//! 2. A flood on a veth pair, one sender thread of UDP from the denied source: packets dropped
//!    per second and per busy core (the whole machine's CPU, sender included) by weft's XDP,
//!    weft's tc stage (xdpEnabled: false) and iptables raw (`-t raw PREROUTING -s ... -j DROP`,
//!    legacy). Beside it, an allowed client's new TCP connections per second during the flood,
//!    against the same client with no flood.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft::bpf::maps::{self, spec, HepValue};
use weft::bpf::pinned::Pinned as _;
use weft::bpf::reasons;
use weft::objects::Object;
use weft::policy::flat::{AddrTerm, FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, SpanSet};
use weft_golden::harness::{allow_all, Floor, Harness, IFINDEX};
use weft_golden::packet;
use weft_vm_tests::Netns;

use crate::report::{Common, Report, Row};
use crate::traffic::load::{new_connections, EchoServer, Stat};

const COMMAND: &str = "cargo run --release -p weft-bench -- xdp";
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const BAD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const GOOD_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const GOOD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const XDP_DROP: i32 = 1;

/// Untracked ingress: everything from BAD is denied (rule 7); anything else goes on.
fn deny_bad() -> RulesetSpec {
    RulesetSpec {
        sets: vec![vec![Net4::host(u32::from(BAD))]],
        locals: vec![],
        rules: vec![FlatRule {
            id: 7,
            action: FlatAction::Deny,
            group: 0,
            peer: vec![AddrTerm {
                set: 0,
                member: true,
            }],
            local: vec![true],
            sport: SpanSet::full(),
            dport: SpanSet::full(),
        }],
        groups: vec![GroupEnd::Pass],
        default_rule: 8,
        open_end: true,
    }
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn per_packet(runs: usize, repeat: u32) -> Result<Vec<Row>, String> {
    let mut h = Harness::load("bench_xdp").ok_or("needs root and a bpffs at /sys/fs/bpf")?;
    h.load_also(Object::Hep);
    let floor = Floor::load("bench_xdp").ok_or("needs root")?;
    let allow = h.ruleset(&allow_all());
    let untracked = deny_bad();
    let v = HepValue {
        ruleset_in: allow,
        ruleset_out: allow,
        ruleset_untracked_in: h.ruleset(&untracked),
        ..Default::default()
    };
    // XDP's fast path for it, as `weft apply` writes it: the policy is by source alone.
    let cells = weft::policy::tables::encode(
        &weft::policy::classify::compile(&untracked).map_err(|e| e.to_string())?,
    );
    let fast = weft::desired::hosts::xdp_fast_path(IFINDEX, &cells);
    for (map, (k, v)) in &fast {
        libbpf_rs::MapCore::update(&h.map(map), k, v, libbpf_rs::MapFlags::ANY)
            .map_err(|e| e.to_string())?;
    }
    spec::HEP
        .update(&h.map(spec::HEP.name), &IFINDEX, &v)
        .map_err(|e| e.to_string())?;
    h.iface_flags(IFINDEX, maps::IFACE_F_HEP, 0, 0);
    h.route(HOST, 32, maps::RT_F_LOCAL_HOST, 0);
    let frame = packet::udp(BAD, 4000, HOST, 53);
    assert_eq!(h.run_xdp("weft_xdp", &frame).retval, XDP_DROP);

    let gen = h.map(maps::XDP_GEN);
    let cache = |on| weft::bpf::xdp::set_cache(&gen, on).map_err(|e| e.to_string());
    let (mut xfloor, mut xdp, mut uncached, mut tc) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        xfloor.push(f64::from(floor.run_xdp_repeat(&frame, repeat).duration_ns));
        xdp.push(f64::from(
            h.run_xdp_repeat("weft_xdp", &frame, repeat).duration_ns,
        ));
        cache(false)?;
        uncached.push(f64::from(
            h.run_xdp_repeat("weft_xdp", &frame, repeat).duration_ns,
        ));
        cache(true)?;
        tc.push(f64::from(
            h.run_repeat("weft_from_hep", &frame, repeat).duration_ns,
        ));
    }
    // The same policy without its fast path: XDP walks the ruleset, as for a policy that
    // looks at ports.
    for (map, (k, _)) in &fast {
        libbpf_rs::MapCore::delete(&h.map(map), k).map_err(|e| e.to_string())?;
    }
    weft::bpf::xdp::void_cache(&h.map(maps::XDP_GEN)).map_err(|e| e.to_string())?;
    let mut walk = Vec::new();
    for _ in 0..runs {
        walk.push(f64::from(
            h.run_xdp_repeat("weft_xdp", &frame, repeat).duration_ns,
        ));
    }
    let (f, _, _) = median(&mut xfloor);
    let (x, xmin, xmax) = median(&mut xdp);
    let (t, tmin, tmax) = median(&mut tc);
    let (w, wmin, wmax) = median(&mut walk);
    let (u, umin, umax) = median(&mut uncached);
    let f = f.max(1.0);
    let floor_name = "an XDP program that drops without looking";
    let row = |name: &str, (v, min, max): (f64, f64, f64), baseline: f64, of: &str| Row {
        name: format!("per packet: {name}"),
        value: v,
        unit: "ns".into(),
        runs: Some(runs as u32),
        min: Some(min),
        max: Some(max),
        baseline: Some(baseline),
        baseline_name: Some(of.into()),
        ratio: Some(v / baseline),
        detail: Some(format!("{:.1} Mpps per core", 1e3 / v)),
        command: COMMAND.into(),
        ..Default::default()
    };
    let mut drop = row(
        "weft_xdp drops a denied source (a policy by source; its verdict cached per CPU)",
        (x, xmin, xmax),
        f,
        floor_name,
    );
    drop.target = Some("ratio <= 2".into());
    drop.met = Some(x / f <= 2.0);
    drop.detail = Some(format!(
        "{:.1} Mpps per core (the XDP paper's anchor: 24 Mpps for a drop); floor {f:.1} ns",
        1e3 / x
    ));
    Ok(vec![
        drop,
        row(
            "weft_xdp with its cache off (every packet looked up, as in a flood of ever-new sources)",
            (u, umin, umax),
            f,
            floor_name,
        ),
        row(
            "weft_xdp walking the ruleset (a policy that looks at ports)",
            (w, wmin, wmax),
            f,
            floor_name,
        ),
        row(
            "the same policy in tc (weft_from_hep, untracked stage)",
            (t, tmin, tmax),
            x,
            "weft_xdp",
        ),
    ])
}

/// Runs `args` in `ns` (nsenter: /sys stays as it is, so the bpffs under it too).
fn in_ns(ns: &Netns, args: &[&str]) -> Result<(), String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What drops the flood.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dropper {
    WeftXdp,
    WeftTc,
    IptablesRaw,
}

impl Dropper {
    fn label(self) -> &'static str {
        match self {
            Dropper::WeftXdp => "weft, XDP (untracked policy)",
            Dropper::WeftTc => "weft, tc (untracked policy, xdpEnabled: false)",
            Dropper::IptablesRaw => "iptables-legacy raw PREROUTING DROP",
        }
    }
}

/// The flood rig: a host namespace with eth0 (192.0.2.1) to the flooder's namespace and eth2
/// (198.51.100.1) to an allowed client's, a TCP echo server on the host.
struct FloodRig {
    host: Netns,
    flooder: Netns,
    client: Netns,
    config: PathBuf,
    bpffs: PathBuf,
    _server: EchoServer,
}

impl FloodRig {
    fn new() -> FloodRig {
        let host = Netns::new("weftbench-xh");
        let flooder = Netns::new("weftbench-xf");
        let client = Netns::new("weftbench-xc");
        for (dev, peer, ns, host_ip, peer_ip) in [
            ("eth0", "eth1", &flooder, HOST, BAD),
            ("eth2", "eth3", &client, GOOD_HOST, GOOD),
        ] {
            host.ip(&[
                "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", &ns.name,
            ]);
            host.ip(&["addr", "add", &format!("{host_ip}/24"), "dev", dev]);
            host.ip(&["link", "set", dev, "up"]);
            ns.ip(&["addr", "add", &format!("{peer_ip}/24"), "dev", peer]);
            ns.ip(&["link", "set", peer, "up"]);
            ns.ip(&["link", "set", "lo", "up"]);
        }
        host.ip(&["link", "set", "lo", "up"]);
        let server = EchoServer::start(&host, 7000, 2);
        let id = std::process::id();
        let config = std::env::temp_dir().join(format!("weftbench-xdp-{id}"));
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/weftbench-xdp-{id}"));
        FloodRig {
            host,
            flooder,
            client,
            config,
            bpffs,
            _server: server,
        }
    }

    fn weft(&self, bin: &Path, xdp: bool) -> Result<(), String> {
        std::fs::create_dir_all(&self.config).map_err(|e| e.to_string())?;
        let files = [
            ("hep.yaml", "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: all\n  labels: {edge: \"true\"}\nspec:\n  node: bench\n  interfaceName: \"*\"\n".to_string()),
            ("policy.yaml", format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: drop-flooder\nspec:\n  selector: edge == 'true'\n  doNotTrack: true\n  applyOnForward: true\n  types: [Ingress]\n  ingress:\n    - action: Deny\n      source: {{nets: [{BAD}/32]}}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow\nspec:\n  selector: edge == 'true'\n  types: [Ingress, Egress]\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n")),
            ("felix.yaml", format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  xdpEnabled: {xdp}\n")),
        ];
        for (name, text) in files {
            std::fs::write(self.config.join(name), text).map_err(|e| e.to_string())?;
        }
        in_ns(
            &self.host,
            &[
                bin.to_str().unwrap_or_default(),
                "apply",
                self.config.to_str().unwrap_or_default(),
                "--node",
                "bench",
                "--bpffs",
                self.bpffs.to_str().unwrap_or_default(),
                "--state-dir",
                self.config.join("state").to_str().unwrap_or_default(),
                "--allow-empty",
            ],
        )
    }

    fn teardown(&self, bin: &Path) {
        let _ = in_ns(
            &self.host,
            &[
                bin.to_str().unwrap_or_default(),
                "teardown",
                "--bpffs",
                self.bpffs.to_str().unwrap_or_default(),
                "--state-dir",
                self.config.join("state").to_str().unwrap_or_default(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.bpffs);
        let _ = std::fs::remove_dir_all(&self.config);
    }

    /// Packets dropped so far by `d`.
    fn dropped(&self, d: Dropper) -> u64 {
        match d {
            Dropper::IptablesRaw => {
                let out = Command::new("nsenter")
                    .arg(format!("--net={}", self.host.path().display()))
                    .args(["iptables-legacy", "-t", "raw", "-nvxL", "PREROUTING"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                out.lines()
                    .find(|l| l.contains("DROP"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            }
            Dropper::WeftXdp | Dropper::WeftTc => {
                let hook = if d == Dropper::WeftXdp {
                    maps::HOOK_XDP
                } else {
                    maps::HOOK_FROM_HEP
                };
                let pins = weft::bpf::Pins::new(&self.bpffs);
                weft::bpf::stats::packet_counters(&pins)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| c.hook == hook)
                    .map(|c| c.packets[reasons::DROP_UNTRACKED])
                    .sum()
            }
        }
    }
}

/// Floods UDP from the flooder for `secs`, one thread; returns packets sent.
fn flood(ns: &Netns, secs: f64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    ns.spawn(move || {
        let s = UdpSocket::bind((BAD, 0)).expect("bind");
        let payload = [0u8; 64];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut sent = 0u64;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                if s.send_to(&payload, (HOST, 9)).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
}

fn flood_rows(bin: &Path, secs: f64) -> Result<Vec<Row>, String> {
    let rig = FloodRig::new();
    let to = SocketAddr::from((GOOD_HOST, 7000));
    let quiet = new_connections(&rig.client, to, secs, 1)?.value;
    let mut rows = Vec::new();
    for d in [Dropper::WeftXdp, Dropper::WeftTc, Dropper::IptablesRaw] {
        match d {
            Dropper::WeftXdp => rig.weft(bin, true)?,
            Dropper::WeftTc => rig.weft(bin, false)?,
            Dropper::IptablesRaw => {
                rig.teardown(bin);
                in_ns(
                    &rig.host,
                    &[
                        "iptables-legacy",
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-s",
                        &BAD.to_string(),
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        let before = rig.dropped(d);
        let stat = Stat::now(None);
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sender = flood(&rig.flooder, secs, stop.clone());
        let sent = sender.join().map_err(|_| "flood thread panicked")?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = stat.since();
        let dropped = rig.dropped(d) - before;
        let pps = dropped as f64 / elapsed;
        // The allowed client while the flood runs again.
        let stop2 = Arc::new(AtomicBool::new(false));
        let sender2 = flood(&rig.flooder, secs + 1.0, stop2.clone());
        let during = new_connections(&rig.client, to, secs, 1).map(|s| s.value);
        stop2.store(true, Ordering::Relaxed);
        let _ = sender2.join();
        let during = during?;
        rows.push(Row {
            name: format!("flood: {}", d.label()),
            value: pps,
            unit: "pkt/s dropped".into(),
            runs: Some(1),
            detail: Some(format!(
                "{sent} sent, {dropped} dropped; {:.0} drops per busy core-second ({:.2} cores busy); allowed client {during:.0} conn/s during the flood, {quiet:.0} without ({:.2}x)",
                dropped as f64 / (cpu.busy * elapsed).max(1e-9),
                cpu.busy,
                during / quiet.max(1e-9)
            )),
            command: COMMAND.into(),
            ..Default::default()
        });
    }
    rig.teardown(bin);
    let _ = in_ns(&rig.host, &["iptables-legacy", "-t", "raw", "-F"]);
    Ok(rows)
}

pub fn run(common: Common, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("weft-bench xdp: takes no arguments but --json and --quick");
        return ExitCode::from(2);
    }
    let (runs, repeat, secs) = if common.quick {
        (3, 200_000, 1.0)
    } else {
        (5, 1_000_000, 3.0)
    };
    let mut rows = match per_packet(runs, repeat) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-bench xdp: {e}");
            return ExitCode::from(2);
        }
    };
    let bin = match crate::traffic::weft_bin() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("weft-bench xdp: {e}");
            return ExitCode::from(2);
        }
    };
    match flood_rows(&bin, secs) {
        Ok(r) => rows.extend(r),
        Err(e) => {
            eprintln!("weft-bench xdp: flood: {e}");
            return ExitCode::from(2);
        }
    }
    let report = Report {
        subcommand: "xdp".into(),
        title: "Host endpoint untracked deny: XDP, tc and iptables raw".into(),
        rows,
        notes: vec![
            "Per packet: BPF_PROG_TEST_RUN's own average over the repeats, median of the runs; the same UDP packet from the denied source for every program.".into(),
            "Flood: one sender thread on this 2-core machine; the sender's own cost is in the busy cores, so drops per busy core-second compare the three paths at equal load rather than the sender's limit.".into(),
        ],
    };
    if common.json {
        report.print_json();
    } else {
        println!("{}\n$ {COMMAND}\n", report.title);
        for r in &report.rows {
            println!("{:<72} {:>12.1} {}", r.name, r.value, r.unit);
            if let (Some(b), Some(ratio)) = (r.baseline, r.ratio) {
                println!(
                    "    {:.2}x {} ({b:.1}){}",
                    ratio,
                    r.baseline_name.as_deref().unwrap_or("baseline"),
                    r.target
                        .as_ref()
                        .map(|t| format!(
                            "; target {t}: {}",
                            if r.met == Some(true) { "met" } else { "missed" }
                        ))
                        .unwrap_or_default()
                );
            }
            if let Some(d) = &r.detail {
                println!("    {d}");
            }
        }
    }
    ExitCode::SUCCESS
}
