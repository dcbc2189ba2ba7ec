//! `weft-bench nat-packet`: what weft_from_wep costs per packet on the service NAT path, with
//! 10 and with 10,000 services installed (production map sizes), through BPF_PROG_TEST_RUN.
//! The figure must not grow with the number of services: frontends and backends are hash
//! lookups.
//!
//! Both cases are measured as many single runs (repeat 1), each on a fresh copy of its packet,
//! averaging the kernel's own duration: with `repeat` the kernel runs the program again on the
//! packet it has already rewritten, so every run after the first would see a flow to the
//! backend rather than one to the frontend. The floor (weft's parsing, then pass) is measured
//! the same way on the same packets.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use weft::bpf::load::ProgramSettings;
use weft::bpf::maps::{self, MapSizes, NatBackend, NatBackendKey, NatFrontend, NatFrontendKey};
use weft_golden::harness::{allow_all, Floor, Harness, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_SYN};

use crate::report::{Common, Report, Row};

const COMMAND: &str = "cargo run --release -p weft-bench -- nat-packet";
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const BACKENDS: u32 = 10;
const FIRST_PORT: u16 = 10_000;
const ESTABLISHED_PORT: u16 = 61_000;

/// How much is measured.
#[derive(Clone, Copy)]
struct Amounts {
    /// Measurements per figure; each figure is their median.
    runs: usize,
    /// New flows per measurement, each with a source port of its own (runs x this must stay
    /// below ESTABLISHED_PORT - FIRST_PORT).
    new_flows: u16,
    /// Packets of the established flow per measurement.
    established: usize,
}

/// 5 x 200,000 = 1,000,000 established packets.
const FULL: Amounts = Amounts {
    runs: 5,
    new_flows: 10_000,
    established: 200_000,
};

/// --quick: a tenth of the packets, for trying it out.
const QUICK: Amounts = Amounts {
    runs: 3,
    new_flows: 2_000,
    established: 20_000,
};

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i)
}

fn backend(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 2 + i * BACKENDS + j)
}

/// The harness with `n` services of ten backends each and a client workload.
fn setup(n: u32) -> Option<Harness> {
    let h = Harness::load_sized(
        "weft-bench",
        ProgramSettings::default(),
        &MapSizes::default(),
    )?;
    h.route(CLIENT, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let rs = h.ruleset(&allow_all());
    h.iface(IFINDEX, rs, rs);
    let mut fe = Vec::new();
    let mut be = Vec::new();
    for i in 0..n {
        let k = NatFrontendKey {
            addr: maps::addr_be(vip(i)),
            port: 80,
            proto: 6,
            pad: 0,
        };
        let v = NatFrontend {
            svc_id: i + 1,
            count: BACKENDS,
            local_count: 0,
            affinity_timeout_s: 0,
            flags: 0,
            maglev_size: 0,
        };
        fe.push(maps::entry(&k, &v));
        for j in 0..BACKENDS {
            let k = NatBackendKey {
                svc_id: i + 1,
                ordinal: j,
            };
            let v = NatBackend {
                addr: maps::addr_be(backend(i, j)),
                port: 8080,
                pad: 0,
            };
            be.push(maps::entry(&k, &v));
        }
    }
    for (map, entries) in [(maps::NAT_BE4, &be), (maps::NAT_FE4, &fe)] {
        weft::bpf::batch::write(
            &h.map(map),
            entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .expect("writing services");
    }
    Some(h)
}

/// The destination of a frame the program passed.
fn destination(frame: &[u8]) -> (Ipv4Addr, u16) {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    (
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per packet of the NAT path with `n` services: (new flow, established flow), and the
/// floor measured the same way: (new-flow packets, established packets).
fn measure(n: u32, floor: &Floor, a: Amounts) -> Option<((f64, f64), (f64, f64))> {
    let h = setup(n)?;
    let target = n / 2;
    let backends: BTreeSet<(Ipv4Addr, u16)> =
        (0..BACKENDS).map(|j| (backend(target, j), 8080)).collect();
    let to = vip(target);

    // New flows: each SYN is translated and creates its NAT_FWD and NAT_REV entries.
    let mut new = Vec::new();
    let mut floor_new = Vec::new();
    for run in 0..a.runs as u16 {
        let syns: Vec<Vec<u8>> = (0..a.new_flows)
            .map(|i| packet::tcp(CLIENT, FIRST_PORT + run * a.new_flows + i, to, 80, TCP_SYN))
            .collect();
        let before = h.ct().len();
        let mut total = 0u64;
        for p in &syns {
            let r = h.run("weft_from_wep", p);
            assert_eq!(r.retval, PASS, "new flow: verdict");
            assert!(
                backends.contains(&destination(&r.data)),
                "new flow: translated to a backend"
            );
            total += u64::from(r.duration_ns);
        }
        assert_eq!(
            h.ct().len() - before,
            2 * usize::from(a.new_flows),
            "every SYN made its conntrack pair"
        );
        new.push(total as f64 / f64::from(a.new_flows));
        let total: u64 = syns
            .iter()
            .map(|p| u64::from(floor.run_repeat(p, 1).duration_ns))
            .sum();
        floor_new.push(total as f64 / f64::from(a.new_flows));
    }

    // An established flow: its SYN made the pair; each ACK is translated through them.
    let ack = packet::tcp(CLIENT, ESTABLISHED_PORT, to, 80, TCP_ACK);
    let first = h.run(
        "weft_from_wep",
        &packet::tcp(CLIENT, ESTABLISHED_PORT, to, 80, TCP_SYN),
    );
    let chosen = destination(&first.data);
    let mut est = Vec::new();
    let mut floor_est = Vec::new();
    for _ in 0..a.runs {
        let mut total = 0u64;
        for _ in 0..a.established {
            let r = h.run("weft_from_wep", &ack);
            total += u64::from(r.duration_ns);
            assert_eq!(r.retval, PASS, "established flow: verdict");
        }
        let r = h.run("weft_from_wep", &ack);
        assert_eq!(r.retval, PASS, "established flow: verdict");
        assert_eq!(
            destination(&r.data),
            chosen,
            "established flow: the same backend"
        );
        est.push(total as f64 / a.established as f64);
        let total: u64 = (0..a.established)
            .map(|_| u64::from(floor.run_repeat(&ack, 1).duration_ns))
            .sum();
        floor_est.push(total as f64 / a.established as f64);
    }
    let accepted = h.counter(IFINDEX, maps::HOOK_FROM_WEP, weft::bpf::reasons::ACCEPT_CT);
    assert!(
        accepted >= (a.runs * a.established) as u64,
        "the established packets passed on conntrack: {accepted}"
    );
    Some((
        (median(new), median(est)),
        (median(floor_new), median(floor_est)),
    ))
}

pub fn run(common: Common) -> ExitCode {
    let Some(floor) = Floor::load("weft-bench") else {
        eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
        return ExitCode::FAILURE;
    };
    let a = if common.quick { QUICK } else { FULL };
    let (runs, new_flows, established) = (a.runs, a.new_flows, a.established);
    let mut results = Vec::new();
    for n in [10u32, 10_000] {
        eprintln!("{n} services ...");
        match measure(n, &floor, a) {
            Some(r) => results.push((n, r)),
            None => return ExitCode::FAILURE,
        }
    }
    if common.json {
        let (a, b) = (&results[0].1, &results[1].1);
        let row = |what: &str, x: f64, y: f64, floor: f64, target: bool| Row {
            name: format!("{what} at 10,000 services vs 10"),
            value: y,
            unit: "ns/packet".into(),
            runs: Some(runs as u32),
            baseline: Some(x),
            baseline_name: Some(format!("the same at 10 services: {x:.1} ns/packet")),
            ratio: Some(y / x),
            target: target.then(|| "ratio <= 1.1 (does not grow)".to_string()),
            met: target.then_some(y / x <= 1.1),
            detail: Some(format!(
                "{:.1} ns above the floor (parse and pass, same packets: {floor:.1} ns)",
                y - floor
            )),
            command: "weft-bench nat-packet".into(),
            ..Default::default()
        };
        let report = Report {
            subcommand: "nat-packet".into(),
            title: "the service NAT path per packet through BPF_PROG_TEST_RUN".into(),
            rows: vec![
                row("new flow to a ClusterIP (SYN, backend chosen, CT pair made)", a.0 .0, b.0 .0, b.1 .0, true),
                row("established translated flow (ACK)", a.0 .1, b.0 .1, b.1 .1, true),
            ],
            notes: vec![format!(
                "weft_from_wep, kernel-reported ns per packet: the mean of single runs (new flows: {new_flows} per measurement, each a flow of its own; established: {established}), median of {runs} measurements, at 10 and at 10,000 services with 10 backends each. Frontends and backends are hash maps: the lookup does not grow with the count. Target: the figure at 10,000 services over the figure at 10 (ratio) <= 1.1, i.e. within 10%, about the spread of repeated runs on this shared machine."
            )],
        };
        report.print_json();
        return ExitCode::SUCCESS;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!("weft_from_wep on the service NAT path through BPF_PROG_TEST_RUN: kernel-reported ns per packet,");
    println!(
        "mean of single runs (new flows: {new_flows} per measurement; established: {established}), median of {runs} measurements"
    );
    println!("$ {COMMAND}");
    println!(
        "kernel {}, {cpu}",
        read("/proc/sys/kernel/osrelease").trim()
    );
    println!();
    let (a, b) = (&results[0].1, &results[1].1);
    println!(
        "{:<44} {:>14} {:>16} {:>10}",
        "case", "10 services", "10,000 services", "ratio"
    );
    let row = |what: &str, x: f64, y: f64| {
        println!("{what:<44} {x:>14.1} {y:>16.1} {:>10.3}", y / x);
    };
    row("new flow (SYN to a frontend, CT pair made)", a.0 .0, b.0 .0);
    row("established translated flow (ACK)", a.0 .1, b.0 .1);
    row("floor, on the new-flow packets", a.1 .0, b.1 .0);
    row("floor, on the established packets", a.1 .1, b.1 .1);
    row(
        "new flow, above the floor",
        a.0 .0 - a.1 .0,
        b.0 .0 - b.1 .0,
    );
    row(
        "established, above the floor",
        a.0 .1 - a.1 .1,
        b.0 .1 - b.1 .1,
    );
    println!();
    println!(
        "target: ratio (10,000 services over 10) <= 1.1 for the new-flow and established rows"
    );
    ExitCode::SUCCESS
}
