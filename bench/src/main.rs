//! weft's benchmarks: commands that print figures for people, not timed tests (figures want a
//! release build and a quiet machine, and a threshold in CI would only be noise).
//!
//! `weft-bench packet`: what the workload program costs per packet, through BPF_PROG_TEST_RUN
//! with the kernel's own clock, beside the floor (`weft_floor`: the same parsing, then pass).
//! The object and its maps are loaded under a private bpffs root with production map sizes,
//! exactly as the packet tests load them.
//!
//! `weft-bench nat-packet`: the service NAT path per packet at 10 and 10,000 services (see
//! nat_packet.rs).
//!
//! `weft-bench services`: cold converge of N services from files and one changed service, beside
//! kube-proxy's iptables-restore and nft -f (see services.rs).

mod control;
mod ctgc;
mod fleet;
mod fleet_traffic;
mod nat_packet;
mod netns;
mod services;
mod svcgen;
mod xdp_nodeport;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use weft::bpf::load::ProgramSettings;
use weft::bpf::maps::{self, MapSizes};
use weft::bpf::reasons;
use weft::policy::flat::{
    proto_port, AddrTerm, FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, SpanSet,
};
use weft_golden::harness::{Floor, Harness, DROP, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_SYN};

const COMMAND: &str = "weft-bench packet";

/// Runs of each measurement; each figure is their median.
const RUNS: usize = 5;
/// BPF_PROG_TEST_RUN repeat for the cases where every run takes the same path.
const REPEAT: u32 = 1_000_000;
/// Single runs (repeat 1) per measurement of a new allowed flow, each with its own source port.
const SINGLES: u16 = 10_000;
/// The first source port of those flows; RUNS * SINGLES ports above it are used, none twice.
const FIRST_PORT: u16 = 10_000;
/// Source ports of the established and the denied flow, outside those.
const ESTABLISHED_PORT: u16 = 61_000;
const DENIED_PORT: u16 = 61_001;

/// The workload's address, and the peer its flows go to.
const WL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 5);

mod change;
mod flows;
mod gen;
mod lookup;
mod policy;
mod report;
mod suite;
mod traffic;
mod verifier;
mod xdp;

use report::{Common, Report, Spread};

/// A subcommand's entry point: the common flags, then its own arguments.
type Entry = fn(Common, &[String]) -> ExitCode;

/// Every subcommand: its name, what it measures, its entry point. `suite` runs them by name
/// (a name it knows that is not here yet shows as "not built"); each speaks the `--json`
/// contract of report.rs.
pub(crate) const COMMANDS: &[(&str, &str, Entry)] = &[
    (
        "packet",
        "ns per packet of weft_wep through BPF_PROG_TEST_RUN, beside the floor",
        packet,
    ),
    (
        "policy",
        "ns per new flow under 10 to 10,000 rules, cells and bytes, compile time",
        policy::run,
    ),
    (
        "policy-change",
        "ms from a one-rule change at 10,000 rules to the new policy live",
        change::run,
    ),
    (
        "lookup",
        "ns per LPM trie lookup and µs per written entry as the trie fills",
        lookup::run,
    ),
    (
        "ct-gc",
        "one conntrack sweep of 1,000,000 entries: weft's BPF collector beside userspace sweeps",
        ctgc::run,
    ),
    (
        "traffic",
        "TCP between workloads on veths: no rules, weft, iptables, nftables",
        traffic::run,
    ),
    (
        "verifier",
        "the verifier's cost of every program and variant on this kernel, against its limit",
        verifier::run,
    ),
    (
        "services",
        "cold converge of 1,000 and 10,000 services and one changed service, beside iptables-restore and nft -f",
        services_cmd,
    ),
    (
        "control",
        "control plane at 1,000 and 10,000 endpoints, policies, services: converge, diff, one change, RSS",
        control::run,
    ),
    (
        "nat-packet",
        "ns per packet of the service NAT path at 10 and 10,000 services",
        |common, _| nat_packet::run(common),
    ),
    (
        "xdp",
        "a host endpoint's untracked deny per packet (XDP, tc) and under a flood (XDP, tc, iptables raw)",
        xdp::run,
    ),
    (
        "fleet",
        "a fleet's control plane at 1,000 nodes and 100,000 remote workloads: converge, one node added, RSS",
        fleet::run,
    ),
    (
        "xdp-nodeport",
        "a NodePort packet to a remote backend per packet: XDP acceleration against the tc path",
        |common, _| xdp_nodeport::run(common),
    ),
    (
        "fleet-traffic",
        "TCP between workloads on two hosts: weft's VXLAN against plain Linux VXLAN",
        fleet_traffic::run,
    ),
    (
        "suite",
        "every subcommand, written to BENCHMARKS.md",
        suite::run,
    ),
];

fn usage() -> ExitCode {
    eprintln!("usage: weft-bench <subcommand> [--json] [--quick] [options]\n");
    for (name, what, _) in COMMANDS {
        eprintln!("  {name:<9} {what}");
    }
    eprintln!("\n  --json    print the figures as JSON (the contract in bench/src/report.rs)");
    eprintln!("  --quick   fewer, shorter runs");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return usage();
    }
    let name = args.remove(0);
    let common = Common::take(&mut args);
    match COMMANDS.iter().find(|(n, _, _)| *n == name) {
        Some((_, _, entry)) => entry(common, &args),
        // The services benchmark's configuration directory, for looking at or profiling
        // `weft validate` / `weft apply` on it.
        None if name == "services-dir" && (args.len() == 1 || args.len() == 3) => {
            let n = match args.get(1).map(String::as_str) {
                Some("--services") => match args.get(2).and_then(|v| v.parse().ok()) {
                    Some(n) => n,
                    None => return usage(),
                },
                _ => 10_000,
            };
            services::write_dir(std::path::Path::new(&args[0]), n);
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("weft-bench: no subcommand {name}\n");
            usage()
        }
    }
}

/// `weft-bench services [--services N] [--runs R] [--limit SECONDS]`.
fn services_cmd(common: Common, args: &[String]) -> ExitCode {
    // 1,000 and 10,000 services (the sizes); --quick: one run at 1,000.
    let mut a = services::Args {
        sizes: if common.quick {
            vec![1_000]
        } else {
            vec![1_000, 10_000]
        },
        runs: if common.quick { 1 } else { 3 },
        limit_s: 120,
        json: common.json,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--services", Some(v)) if v >= 2 => a.sizes = vec![v],
            ("--runs", Some(v)) if v >= 1 => a.runs = v,
            ("--limit", Some(v)) if v >= 1 => a.limit_s = v as u64,
            _ => {
                eprintln!("usage: weft-bench services [--services N] [--runs R] [--limit SECONDS]");
                return ExitCode::from(2);
            }
        }
    }
    services::run(&a)
}

/// A small but realistic egress policy that needs all three classifier lookups (the source
/// port rule makes it use the context stage): SSH denied, web to 10/8, DNS to 192.168/16 from
/// unprivileged ports, everything else denied at the end of the tier.
fn egress_policy() -> RulesetSpec {
    let rule = |id, action, peer: Vec<AddrTerm>, sport, dport| FlatRule {
        id,
        action,
        group: 0,
        peer,
        local: vec![true, true],
        sport,
        dport,
    };
    let one = |proto, port| {
        let v = proto_port(proto, port);
        SpanSet::from_spans([(v, v)])
    };
    let in_set = |set| vec![AddrTerm { set, member: true }];
    RulesetSpec {
        sets: vec![
            vec![Net4::new(u32::from(Ipv4Addr::new(10, 0, 0, 0)), 8)],
            vec![Net4::new(u32::from(Ipv4Addr::new(192, 168, 0, 0)), 16)],
        ],
        locals: vec![u32::from(WL)],
        rules: vec![
            rule(1, FlatAction::Deny, vec![], SpanSet::full(), one(6, 22)),
            rule(
                2,
                FlatAction::Allow,
                in_set(0),
                SpanSet::full(),
                one(6, 80).union(&one(6, 443)),
            ),
            rule(
                3,
                FlatAction::Allow,
                in_set(1),
                SpanSet::from_spans([(proto_port(17, 1024), proto_port(17, u16::MAX))]),
                one(17, 53),
            ),
        ],
        groups: vec![GroupEnd::Deny(9)],
        default_rule: 10,
        open_end: false,
    }
}

fn spread(v: &[f64]) -> Spread {
    Spread::of(v).expect("at least one run")
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row of the table: the runs' median, minimum and maximum, and the floor's median.
struct Row {
    case: &'static str,
    method: String,
    ns: Spread,
    floor_ns: f64,
}

fn packet(common: Common, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("weft-bench packet: takes no arguments but --json and --quick");
        return ExitCode::from(2);
    }
    let Some(h) = Harness::load_sized(
        "weft-bench",
        ProgramSettings::default(),
        &MapSizes::default(),
    ) else {
        eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
        return ExitCode::FAILURE;
    };
    let floor = Floor::load("weft-bench").expect("checked by the harness's load");
    h.route(WL, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let ingress = h.ruleset(&RulesetSpec {
        groups: vec![GroupEnd::Deny(20)],
        ..Default::default()
    });
    let egress = h.ruleset(&egress_policy());
    h.iface(IFINDEX, ingress, egress);
    let from = maps::HOOK_FROM_WEP;
    let count = |reason| h.counter(IFINDEX, from, reason);

    // Each measurement checks that its packets took the path it names, so a change that sends
    // them elsewhere shows as an error rather than as a faster figure.
    let repeated = |run: &dyn Fn() -> (i32, u32), want: i32, what: &str| -> Spread {
        spread(
            &(0..RUNS)
                .map(|_| {
                    let (rc, ns) = run();
                    assert_eq!(rc, want, "{what}: verdict");
                    f64::from(ns)
                })
                .collect::<Vec<_>>(),
        )
    };

    // (a) The floor, on the established flow's packet.
    let ack = packet::tcp(WL, ESTABLISHED_PORT, PEER, 80, TCP_ACK);
    let floor_repeat = repeated(
        &|| {
            let r = floor.run_repeat(&ack, REPEAT);
            (r.retval, r.duration_ns)
        },
        PASS,
        "floor",
    );

    // (b) An established flow: its SYN made the entry and approved the workload's leg.
    assert_eq!(
        h.run(
            "weft_from_wep",
            &packet::tcp(WL, ESTABLISHED_PORT, PEER, 80, TCP_SYN)
        )
        .retval,
        PASS
    );
    let before = count(reasons::ACCEPT_CT);
    let established = repeated(
        &|| {
            let r = h.run_repeat("weft_from_wep", &ack, REPEAT);
            (r.retval, r.duration_ns)
        },
        PASS,
        "established flow",
    );
    assert_eq!(
        count(reasons::ACCEPT_CT) - before,
        RUNS as u64 * u64::from(REPEAT),
        "established flow: every packet passed on conntrack"
    );

    // (c) A new flow the policy denies: all three lookups, then the end of the tier.
    let denied_syn = packet::tcp(WL, DENIED_PORT, PEER, 8080, TCP_SYN);
    let before = count(reasons::DROP_POLICY);
    let denied = repeated(
        &|| {
            let r = h.run_repeat("weft_from_wep", &denied_syn, REPEAT);
            (r.retval, r.duration_ns)
        },
        DROP,
        "denied flow",
    );
    assert_eq!(
        count(reasons::DROP_POLICY) - before,
        RUNS as u64 * u64::from(REPEAT)
    );
    assert_eq!(h.rule_hits(9), RUNS as u64 * u64::from(REPEAT));

    // (d) New flows the policy allows, each inserting its conntrack entry. Repeating one
    // packet would make every run after the first an established flow, so each run is a
    // single packet of its own flow, and the figure is the mean of the kernel's durations.
    // The floor is measured the same way on the same packets beside it.
    const _: () =
        assert!(FIRST_PORT as usize + RUNS * SINGLES as usize <= ESTABLISHED_PORT as usize);
    let syns: Vec<Vec<Vec<u8>>> = (0..RUNS as u16)
        .map(|run| {
            (0..SINGLES)
                .map(|i| packet::tcp(WL, FIRST_PORT + run * SINGLES + i, PEER, 80, TCP_SYN))
                .collect()
        })
        .collect();
    let mean_single = |run: &dyn Fn(&[u8]) -> (i32, u32), want: i32, batch: &[Vec<u8>]| {
        let total: u64 = batch
            .iter()
            .map(|p| {
                let (rc, ns) = run(p);
                assert_eq!(rc, want);
                u64::from(ns)
            })
            .sum();
        total as f64 / batch.len() as f64
    };
    // And the denied flow of (c) the same way, to tell the insert's cost from what single runs
    // cost any path (a cold cache, the clock read around one packet).
    let denied_syns: Vec<Vec<u8>> = (0..SINGLES)
        .map(|i| packet::tcp(WL, FIRST_PORT + i, PEER, 8080, TCP_SYN))
        .collect();
    let flows_before = h.ct().len();
    let mut floor_singles = Vec::new();
    let mut denied_singles = Vec::new();
    let mut inserts = Vec::new();
    for batch in &syns {
        denied_singles.push(mean_single(
            &|p| {
                let r = h.run("weft_from_wep", p);
                (r.retval, r.duration_ns)
            },
            DROP,
            &denied_syns,
        ));
        floor_singles.push(mean_single(
            &|p| {
                let r = floor.run_repeat(p, 1);
                (r.retval, r.duration_ns)
            },
            PASS,
            batch,
        ));
        inserts.push(mean_single(
            &|p| {
                let r = h.run("weft_from_wep", p);
                (r.retval, r.duration_ns)
            },
            PASS,
            batch,
        ));
    }
    assert_eq!(
        h.ct().len() - flows_before,
        RUNS * usize::from(SINGLES),
        "every allowed SYN inserted an entry"
    );
    let floor_single = spread(&floor_singles);
    let denied_single = spread(&denied_singles);
    let insert = spread(&inserts);

    let repeat = format!("repeat {REPEAT}");
    let singles = format!("mean of {SINGLES} runs of 1");
    let rows = [
        Row {
            case: "(a) floor: parse, pass",
            method: repeat.clone(),
            ns: floor_repeat,
            floor_ns: floor_repeat.median,
        },
        Row {
            case: "(b) established flow (TCP ACK)",
            method: repeat.clone(),
            ns: established,
            floor_ns: floor_repeat.median,
        },
        Row {
            case: "(c) new flow, denied by policy",
            method: repeat,
            ns: denied,
            floor_ns: floor_repeat.median,
        },
        Row {
            case: "(a) floor: parse, pass",
            method: singles.clone(),
            ns: floor_single,
            floor_ns: floor_single.median,
        },
        Row {
            case: "(c) new flow, denied by policy",
            method: singles.clone(),
            ns: denied_single,
            floor_ns: floor_single.median,
        },
        Row {
            case: "(d) new flow, allowed, CT insert",
            method: singles,
            ns: insert,
            floor_ns: floor_single.median,
        },
    ];
    if common.json {
        let report = Report {
            subcommand: "packet".into(),
            title: "weft_from_wep per packet through BPF_PROG_TEST_RUN".into(),
            rows: rows
                .iter()
                .map(|r| report::Row {
                    name: format!("{} ({})", r.case, r.method),
                    value: r.ns.median,
                    unit: "ns/packet".into(),
                    runs: Some(r.ns.runs),
                    min: Some(r.ns.min),
                    max: Some(r.ns.max),
                    baseline: Some(r.floor_ns),
                    baseline_name: Some(format!("(a) floor ({})", r.method)),
                    ratio: Some(r.ns.median / r.floor_ns),
                    detail: Some(format!("{:+.1} ns over the floor", r.ns.median - r.floor_ns)),
                    // Issue 6: an established flow at most 1.3 x the floor.
                    target: r.case.starts_with("(b)").then(|| "ratio <= 1.3".into()),
                    met: r
                        .case
                        .starts_with("(b)")
                        .then(|| r.ns.median / r.floor_ns <= 1.3),
                    command: COMMAND.into(),
                })
                .collect(),
            notes: vec![format!(
                "Kernel-reported ns per packet (BPF_PROG_TEST_RUN's duration), median of {RUNS} runs; the floor is weft_floor, the same parsing then pass, measured the same way beside it. Maps at production sizes under a private bpffs root."
            )],
        };
        report.print_json();
    } else {
        print_table(&rows);
    }
    ExitCode::SUCCESS
}

/// The kernel and CPU the figures come from.
pub(crate) fn print_machine() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease");
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!("kernel {}, {cpu}", kernel.trim());
}

fn print_table(rows: &[Row]) {
    println!("weft_from_wep through BPF_PROG_TEST_RUN: kernel-reported ns per packet, median of {RUNS} runs");
    println!("$ {COMMAND}");
    print_machine();
    println!();
    println!(
        "{:<34} {:<28} {:>10} {:>16} {:>8} {:>10}",
        "case", "method", "ns/packet", "min-max", "x floor", "+ns floor"
    );
    for r in rows {
        println!(
            "{:<34} {:<28} {:>10.1} {:>16} {:>8.2} {:>10.1}",
            r.case,
            r.method,
            r.ns.median,
            format!("{:.1}-{:.1}", r.ns.min, r.ns.max),
            r.ns.median / r.floor_ns,
            r.ns.median - r.floor_ns
        );
    }
}
