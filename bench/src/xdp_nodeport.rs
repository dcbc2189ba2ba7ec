//! `weft-bench xdp-nodeport`: a NodePort packet whose backend is on another node, per packet
//! through BPF_PROG_TEST_RUN, on XDP's path (bpfExternalServiceAcceleration XDP: weft_xdp
//! translates it, wraps it in VXLAN and sends it back out) against tc's (weft_from_hep
//! translates it and passes it on to the stack, which routes it into vxlan.calico).
//!
//! The packet is the client's ACK of an established flow (its SYN took the tc path and made
//! the conntrack pair), on node A's maps as `weft apply` fills them (weft_golden::underlay), in
//! Tunnel and in DSR mode. Each figure is the mean of single runs on fresh copies of the packet
//! (with `repeat`, the kernel would run the program again on the frame it already rewrote),
//! the median of several measurements; the XDP floor (a drop that looks at nothing) is
//! measured the same way, beside them.
//!
//! The tc figure is weft's program alone: on that path the kernel's routing, the tunnel
//! device and a second pass through the stack come on top, and none of them on XDP's. So the
//! whole path is measured too: a UDP flood of one flow from the outside client through node-0's
//! NodePort to its backend on node-1, on vm-tests' fleet of two hosts (their uplinks veths, so
//! weft's XDP runs in generic mode there), with the acceleration on and off in turn: datagrams
//! that reach the backend's interface per second, and per busy core-second of the machine.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use weft_vm_tests::fleet::{self, Fleet};

use weft_golden::harness::{Floor, Harness, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_SYN};
use weft_golden::underlay::{node_a, settings, BACKEND, CLIENT, NODE_A_UNDERLAY, NODE_PORT};

use crate::report::{Common, Report, Row};
use crate::traffic::load::Stat;

const COMMAND: &str = "weft-bench xdp-nodeport";
const XDP_TX: i32 = 3;
const TC_ACT_REDIRECT: i32 = 7;

#[derive(Clone, Copy)]
struct Amounts {
    runs: usize,
    packets: usize,
}

const FULL: Amounts = Amounts {
    runs: 5,
    packets: 200_000,
};
const QUICK: Amounts = Amounts {
    runs: 3,
    packets: 20_000,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per packet, medians.
struct Figures {
    tc: f64,
    xdp: f64,
    /// The floors: a tc program that parses and passes, an XDP program that drops, looking
    /// at nothing (what BPF_PROG_TEST_RUN itself costs a single run).
    tc_floor: f64,
    xdp_floor: f64,
}

/// Measures one mode on a thread of its own (the underlay's namespace is the thread's).
fn measure(dsr: bool, a: Amounts) -> Option<Figures> {
    std::thread::spawn(move || {
        let floor = Floor::load("weft-bench")?;
        let (h, up0) = node_a("weft-bench", settings(dsr, true))?;
        Some(measure_on(&h, up0, &floor, dsr, a))
    })
    .join()
    .expect("the measuring thread")
}

fn measure_on(h: &Harness, up0: u32, floor: &Floor, dsr: bool, a: Amounts) -> Figures {
    let syn = packet::tcp(CLIENT, 40000, NODE_A_UNDERLAY, NODE_PORT, TCP_SYN);
    let tc_verdict = if dsr { TC_ACT_REDIRECT } else { PASS };
    assert_eq!(h.run("weft_from_hep", &syn).retval, tc_verdict, "the SYN");
    let ack = packet::tcp(CLIENT, 40000, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
    let translated = packet::tcp(CLIENT, 40000, BACKEND, 8080, TCP_ACK);
    let (mut tc, mut xdp, mut tc_fl, mut xdp_fl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let mut total = 0u64;
        for _ in 0..a.packets {
            let r = h.run("weft_from_hep", &ack);
            assert_eq!(r.retval, tc_verdict, "tc: verdict");
            total += u64::from(r.duration_ns);
        }
        let r = h.run("weft_from_hep", &ack);
        if !dsr {
            assert_eq!(r.data, translated, "tc: translated");
        }
        tc.push(total as f64 / a.packets as f64);
        let mut total = 0u64;
        for _ in 0..a.packets {
            let r = h.run_xdp_at("weft_xdp", &ack, up0, 1);
            assert_eq!(r.retval, XDP_TX, "XDP: sent on");
            total += u64::from(r.duration_ns);
        }
        xdp.push(total as f64 / a.packets as f64);
        let total: u64 = (0..a.packets)
            .map(|_| u64::from(floor.run_xdp_repeat(&ack, 1).duration_ns))
            .sum();
        xdp_fl.push(total as f64 / a.packets as f64);
        let total: u64 = (0..a.packets)
            .map(|_| u64::from(floor.run_repeat(&ack, 1).duration_ns))
            .sum();
        tc_fl.push(total as f64 / a.packets as f64);
    }
    Figures {
        tc: median(tc),
        xdp: median(xdp),
        tc_floor: median(tc_fl),
        xdp_floor: median(xdp_fl),
    }
}

const FLOOD_PORT: u16 = 30082;

/// One flood of `secs`: (datagrams at the backend per second, per busy core-second, sent
/// from XDP).
fn flood(f: &Fleet, secs: f64) -> (f64, f64, u64) {
    let (node0, _) = fleet::underlay(0);
    let client = fleet::outside_for(0);
    let backend = &f.w(1, 0).ns;
    let forwarded = || f.hosts[0].counted("xdp", "accept-xdp-forward");
    let (rx0, fwd0) = (backend.rx_packets("eth0"), forwarded());
    let stat = Stat::now(None);
    let started = Instant::now();
    f.underlay.run(move || {
        let s = std::net::UdpSocket::bind((client, 40_000)).expect("bind");
        let payload = [0x42u8; 64];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            for _ in 0..64 {
                let _ = s.send_to(&payload, (node0, FLOOD_PORT));
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = stat.since();
    let got = backend.rx_packets("eth0") - rx0;
    let pps = got as f64 / elapsed;
    (pps, pps / cpu.busy.max(1e-9), forwarded() - fwd0)
}

fn flood_rows(bin: &Path, runs: usize, secs: f64) -> Vec<Row> {
    std::env::set_var("WEFT_BIN", bin);
    let f = Fleet::new("weft-bench xdp-nodeport", 2, 1).expect("root and a bpffs");
    f.pool("Always");
    f.write(
        "20-service.yaml",
        &fleet::node_port_service("dgram", FLOOD_PORT, 8082, "UDP", "Cluster"),
    );
    let set = |accel: bool| {
        f.felix(&format!(
            "  bpfExternalServiceAcceleration: {}\n",
            if accel { "XDP" } else { "Disabled" }
        ))
    };
    // [accelerated, tc]: (pps, per core-second, from XDP) of each run.
    let mut got: [Vec<(f64, f64, u64)>; 2] = [vec![], vec![]];
    for _ in 0..runs {
        for (i, accel) in [true, false].into_iter().enumerate() {
            set(accel);
            got[i].push(flood(&f, secs));
        }
    }
    let med = |v: &[(f64, f64, u64)], k: usize| {
        median(
            v.iter()
                .map(|x| [x.0, x.1, x.2 as f64][k])
                .collect::<Vec<_>>(),
        )
    };
    let (xdp, tc) = (&got[0], &got[1]);
    let row = |what: &str, k: usize, unit: &str| {
        Row {
        name: format!("UDP flood of one flow through node-0's NodePort to node-1's backend: {what}, XDP acceleration"),
        value: med(xdp, k),
        unit: unit.into(),
        runs: Some(runs as u32),
        baseline: Some(med(tc, k)),
        baseline_name: Some("the tc path (acceleration off)".into()),
        ratio: Some(med(xdp, k) / med(tc, k)),
        detail: Some(format!(
            "sent on from node-0's XDP: {:.0} per run with the acceleration, {:.0} without",
            med(xdp, 2),
            med(tc, 2)
        )),
        command: COMMAND.into(),
        ..Default::default()
    }
    };
    vec![
        row("datagrams at the backend per second", 0, "pkt/s"),
        row("datagrams per busy core-second", 1, "pkt/core-s"),
    ]
}

pub fn run(common: Common) -> ExitCode {
    let a = if common.quick { QUICK } else { FULL };
    let mut rows = Vec::new();
    for (dsr, mode) in [(false, "Tunnel"), (true, "DSR")] {
        eprintln!("{mode} ...");
        let Some(f) = measure(dsr, a) else {
            eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
            return ExitCode::FAILURE;
        };
        let ratio = f.xdp / f.tc;
        rows.push(Row {
            name: format!(
                "NodePort to a remote backend ({mode}), per established packet: XDP's path"
            ),
            value: f.xdp,
            unit: "ns/packet".into(),
            runs: Some(a.runs as u32),
            baseline: Some(f.tc),
            baseline_name: Some("tc's path: weft_from_hep alone".into()),
            ratio: Some(ratio),
            target: Some("ratio <= 0.5".into()),
            met: Some(ratio <= 0.5),
            detail: Some(format!(
                "XDP translates{}, wraps in VXLAN and sends back out (XDP_TX). Above the floors (a single run's own cost: XDP {:.1} ns, tc {:.1} ns): XDP {:.1} ns, tc {:.1} ns, ratio {:.2}",
                if dsr { " nothing (node B does)" } else { "" },
                f.xdp_floor,
                f.tc_floor,
                f.xdp - f.xdp_floor,
                f.tc - f.tc_floor,
                (f.xdp - f.xdp_floor) / (f.tc - f.tc_floor)
            )),
            command: COMMAND.into(),
            ..Default::default()
        });
    }
    let Some(bin) = crate::traffic::ready(COMMAND) else {
        return ExitCode::FAILURE;
    };
    eprintln!("flood ...");
    let (runs, secs) = if common.quick { (1, 2.0) } else { (3, 5.0) };
    rows.extend(flood_rows(&bin, runs, secs));
    let report = Report {
        subcommand: "xdp-nodeport".into(),
        title: "NodePort to a remote backend per packet: XDP acceleration against the tc path"
            .into(),
        rows,
        notes: vec![format!(
            "BPF_PROG_TEST_RUN, kernel-reported ns per packet: the mean of {} single runs, median of {} measurements, on node A's maps (a NodePort whose one backend is on node B; the flow's SYN took the tc path). XDP's figure is the whole of its path: translation, the tunnel's headers (the underlay's next hop from the kernel's FIB, asked at most once a second per CPU) and XDP_TX; both paths make the same two conntrack lookups. tc's is weft's program alone; on that path the kernel then routes the packet, encapsulates it in vxlan.calico and sends it through the stack a second time, none of which this measures, so the ratio understates what XDP saves.",
            a.packets, a.runs
        ), format!(
            "The flood: vm-tests' fleet of two host namespaces on an underlay bridge, one workload each; a Service of type NodePort (UDP) whose one backend is node-1's workload, Tunnel mode; one sender thread in the underlay sending 64-byte datagrams of one flow to node-0's NodePort for {secs} s per run, {runs} run(s) alternating between the acceleration on and off (`weft apply` between them); medians. Counted at the backend's interface. On veths the whole way runs in the sender's softirq, so the rate is the whole chain's (sender, bridge, node-0, node-1's tunnel, the workload), of which node-0's part is what changes."
        )],
    };
    if common.json {
        report.print_json();
    } else {
        report.print_text(COMMAND);
    }
    ExitCode::SUCCESS
}
