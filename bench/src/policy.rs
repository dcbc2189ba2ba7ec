//! `weft-bench policy`: what deciding a new flow costs as the policy grows.
//!
//! For 10, 100, 1,000 and 10,000 rules in each direction (`gen`), the configuration's YAML is
//! loaded through weft-model, compiled by the real pipeline (`desired`), and its map entries
//! are written into the real BPF object loaded with production map sizes (the packet tests'
//! harness). New flows whose verdicts come from deep in the rule list are then sent through
//! weft_to_wep (ingress) and weft_from_wep (egress) with BPF_PROG_TEST_RUN. Every packet's
//! verdict is checked against the reference evaluator through the rule hit counters, so a
//! fast wrong answer fails the run instead of improving a figure.
//!
//! Denied flows leave nothing behind, so they repeat 1,000,000 times per run. An allowed flow
//! becomes established after its first packet, so allowed flows are measured one new flow
//! per run (a distinct source port each), as the mean of the kernel's durations, beside the
//! floor measured the same way.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapHandle};
use weft::bpf::maps;
use weft::bpf::rulesets;
use weft::desired::{self, Desired};
use weft::facts::HostFacts;
use weft::policy::flat::RulesetSpec;
use weft::policy::resolve::{Direction, PolicyIndex};
use weft_golden::harness::{Floor, Harness, DROP, IFINDEX, PASS};

use crate::flows::{self, TestFlow};
use crate::gen;
use crate::report::{self, Common, Report};
use crate::{median, print_machine};

const COMMAND: &str = "cargo run --release -p weft-bench -- policy";
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// The sizes `--quick` runs: the ends of the ratio.
const QUICK_SIZES: [usize; 2] = [10, 10_000];
/// Source ports of allowed flows start here; each flow gets runs * singles of its own.
const FIRST_SPORT: u16 = 20_000;
/// The originator's port flows are chosen with.
const PROBE_SPORT: u16 = 40_000;
/// Allowed and denied flows per direction.
const PER_KIND: usize = 3;

/// How much to measure: the full runs, or `--quick`'s fewer and shorter ones.
#[derive(Clone, Copy)]
struct Effort {
    runs: usize,
    repeat: u32,
    /// New allowed flows per run, one packet each.
    singles: u16,
}

impl Effort {
    fn of(common: Common) -> Effort {
        if common.quick {
            Effort {
                runs: 3,
                repeat: 100_000,
                singles: 500,
            }
        } else {
            Effort {
                runs: 5,
                repeat: 1_000_000,
                singles: 2_000,
            }
        }
    }
}

/// The sizes to run: SIZES (QUICK_SIZES with `--quick`), or WEFT_BENCH_SIZES (e.g.
/// `10,100`) for a look at others.
fn sizes(common: Common) -> Vec<usize> {
    match std::env::var("WEFT_BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if common.quick => QUICK_SIZES.to_vec(),
        Err(_) => SIZES.to_vec(),
    }
}

pub fn facts() -> HostFacts {
    HostFacts::fixture(gen::NODE, &[(gen::TARGET_IFACE, IFINDEX)])
}

pub fn target() -> Ipv4Addr {
    Ipv4Addr::from(gen::TARGET_ADDR)
}

/// A configuration loaded and compiled, with how long each took.
pub struct Compiled {
    pub config: weft_model::Config,
    pub desired: Desired,
    pub load: Duration,
    pub compile: Duration,
}

pub fn load_and_compile(texts: Vec<(String, String)>) -> Compiled {
    let t = Instant::now();
    let config = weft_model::load_texts(texts).unwrap_or_else(|d| panic!("generated config: {d}"));
    let load = t.elapsed();
    let t = Instant::now();
    let desired = desired::desired(&config, &facts()).expect("desired state");
    let compile = t.elapsed();
    assert_eq!(desired.endpoints.len(), 1, "the target is programmed");
    Compiled {
        config,
        desired,
        load,
        compile,
    }
}

/// The target's ordered rules in one direction, for the reference evaluator.
pub fn spec(config: &weft_model::Config, dir: Direction) -> RulesetSpec {
    spec_and_rules(config, dir).0
}

/// The target's ordered rules in one direction and what each rule id stands for.
pub fn spec_and_rules(
    config: &weft_model::Config,
    dir: Direction,
) -> (RulesetSpec, Vec<weft::policy::resolve::RuleInfo>) {
    let index = PolicyIndex::new(config, desired::entities(config));
    let wep = config
        .workload_endpoints
        .iter()
        .find(|w| w.value.metadata.name == "target")
        .expect("the target endpoint");
    index.ruleset(&desired::endpoint(config, &wep.value), dir)
}

/// Loads the rulesets and writes every reconciled map's desired entries, as a fresh `weft
/// apply` would.
pub fn install(h: &Harness, d: &Desired) -> Duration {
    let t = Instant::now();
    for (id, cells) in &d.state.rulesets {
        rulesets::load(&h.pins, *id, cells).expect("loading a ruleset");
    }
    for name in maps::RECONCILED {
        if let Some(e) = d.state.maps.get(*name).and_then(|m| m.entries.as_ref()) {
            h.write(name, e);
        }
    }
    t.elapsed()
}

/// The memory the kernel accounts to a map (`memlock` in its fdinfo).
fn memlock(m: &MapHandle) -> u64 {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", m.as_fd().as_raw_fd()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The policy the kernel holds: rulesets, their cells, and the bytes the kernel accounts to
/// their arrays and to weft_pol_rs.
pub struct Usage {
    pub rulesets: usize,
    pub cells: usize,
    pub bytes: u64,
}

pub fn usage(h: &Harness) -> Usage {
    let outer = h.map(maps::POL_RS);
    let mut u = Usage {
        rulesets: 0,
        cells: 0,
        bytes: memlock(&outer),
    };
    for k in outer.keys() {
        let id = u32::from_ne_bytes(k[..4].try_into().expect("a ruleset id"));
        let inner = rulesets::open(&h.pins, id)
            .expect("weft_pol_rs")
            .expect("listed");
        u.rulesets += 1;
        u.cells += inner.max_entries() as usize;
        u.bytes += memlock(&inner);
    }
    u
}

fn prog(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "weft_to_wep",
        Direction::Egress => "weft_from_wep",
    }
}

/// Figures for one direction at one size.
struct DirFigures {
    denied: Vec<(TestFlow, f64)>,
    allowed: Vec<(TestFlow, f64)>,
    floor_single: f64,
}

fn measure_dir(
    h: &Harness,
    floor: &Floor,
    spec: &RulesetSpec,
    dir: Direction,
    e: Effort,
) -> DirFigures {
    let Effort {
        runs,
        repeat,
        singles,
    } = e;
    let cands = flows::candidates(spec, PROBE_SPORT, 24);
    if std::env::var_os("WEFT_BENCH_DEBUG").is_some() {
        for r in spec.rules.iter().take(40) {
            eprintln!(
                "{dir} rule {:?} {:?} g{} peer {:?} sport {:?} dport {:?} local {:?}",
                r.id,
                r.action,
                r.group,
                r.peer,
                r.sport.spans(),
                r.dport.spans(),
                r.local
            );
        }
        for c in &cands {
            eprintln!(
                "{dir} candidate {} -> {:?} depth {}",
                c.describe(),
                c.verdict,
                c.depth
            );
        }
    }
    let (allowed, denied) = flows::pick(cands, PER_KIND);
    assert!(
        !allowed.is_empty() && !denied.is_empty(),
        "{dir}: found {} allowed and {} denied flows",
        allowed.len(),
        denied.len()
    );
    let local = target();
    let prog = prog(dir);

    let mut denied_ns = Vec::new();
    for f in &denied {
        let pkt = f.packet(dir, local, PROBE_SPORT);
        let before = h.rule_hits(f.verdict.rule_id);
        let ns = median(
            (0..runs)
                .map(|_| {
                    let r = h.run_repeat(prog, &pkt, repeat);
                    assert_eq!(r.retval, DROP, "{dir} {}: verdict", f.describe());
                    f64::from(r.duration_ns)
                })
                .collect(),
        );
        assert_eq!(
            h.rule_hits(f.verdict.rule_id) - before,
            runs as u64 * u64::from(repeat),
            "{dir} {}: every packet decided by rule {:#010x}",
            f.describe(),
            f.verdict.rule_id
        );
        denied_ns.push((f.clone(), ns));
    }

    let mut allowed_ns = Vec::new();
    let mut floor_singles = Vec::new();
    for (k, f) in allowed.iter().enumerate() {
        let base = FIRST_SPORT + (k * runs) as u16 * singles;
        let last = base + runs as u16 * singles - 1;
        assert!(
            flows::same_verdict_for(spec, f, &[base, base + singles, last]),
            "{dir} {}: the verdict depends on the source port",
            f.describe()
        );
        let before = h.rule_hits(f.verdict.rule_id);
        let mut means = Vec::new();
        for run in 0..runs as u16 {
            let pkts: Vec<Vec<u8>> = (0..singles)
                .map(|i| f.packet(dir, local, base + run * singles + i))
                .collect();
            let mut total = 0u64;
            for p in &pkts {
                let r = h.run(prog, p);
                assert_eq!(r.retval, PASS, "{dir} {}: verdict", f.describe());
                total += u64::from(r.duration_ns);
            }
            means.push(total as f64 / f64::from(singles));
            let mut ftotal = 0u64;
            for p in &pkts {
                ftotal += u64::from(floor.run_repeat(p, 1).duration_ns);
            }
            floor_singles.push(ftotal as f64 / f64::from(singles));
        }
        assert_eq!(
            h.rule_hits(f.verdict.rule_id) - before,
            runs as u64 * u64::from(singles),
            "{dir} {}: every flow decided by rule {:#010x}",
            f.describe(),
            f.verdict.rule_id
        );
        allowed_ns.push((f.clone(), median(means)));
    }
    DirFigures {
        denied: denied_ns,
        allowed: allowed_ns,
        floor_single: median(floor_singles),
    }
}

struct SizeFigures {
    rules: usize,
    flat: [usize; 2],
    load: Duration,
    compile: Duration,
    install: Duration,
    usage: Usage,
    floor: f64,
    dirs: Vec<(Direction, DirFigures)>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

impl SizeFigures {
    fn denied(&self) -> f64 {
        mean(
            self.dirs
                .iter()
                .flat_map(|(_, d)| d.denied.iter().map(|(_, ns)| *ns)),
        )
    }

    fn allowed(&self) -> f64 {
        mean(
            self.dirs
                .iter()
                .flat_map(|(_, d)| d.allowed.iter().map(|(_, ns)| *ns)),
        )
    }

    fn floor_single(&self) -> f64 {
        mean(self.dirs.iter().map(|(_, d)| d.floor_single))
    }
}

pub fn run(common: Common, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("weft-bench policy: takes no arguments but --json and --quick");
        return ExitCode::from(2);
    }
    let effort = Effort::of(common);
    let Effort { runs, repeat, .. } = effort;
    let Some(floor) = Floor::load("weft-bench policy") else {
        eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
        return ExitCode::FAILURE;
    };
    let mut all = Vec::new();
    for n in sizes(common) {
        let texts = gen::render(&gen::build(n));
        let c = load_and_compile(texts);
        let cells: usize = c.desired.state.rulesets.values().map(|r| r.len()).sum();
        eprintln!(
            "{n} rules: load {:.1} ms, compile {:.1} ms, {cells} cells",
            c.load.as_secs_f64() * 1e3,
            c.compile.as_secs_f64() * 1e3
        );
        let h = Harness::load_sized(
            "weft-bench policy",
            Default::default(),
            &c.desired.settings.sizes,
        )
        .expect("checked above");
        let install = install(&h, &c.desired);

        let usage = usage(&h);
        let mut dirs = Vec::new();
        let mut flat = [0; 2];
        for (i, dir) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            let spec = spec(&c.config, dir);
            flat[i] = spec.rules.len();
            dirs.push((dir, measure_dir(&h, &floor, &spec, dir, effort)));
        }
        let pkt = dirs[0].1.denied[0]
            .0
            .packet(Direction::Ingress, target(), PROBE_SPORT);
        let floor_ns = median(
            (0..runs)
                .map(|_| {
                    let r = floor.run_repeat(&pkt, repeat);
                    assert_eq!(r.retval, PASS);
                    f64::from(r.duration_ns)
                })
                .collect(),
        );
        let f = SizeFigures {
            rules: n,
            flat,
            load: c.load,
            compile: c.compile,
            install,
            usage,
            floor: floor_ns,
            dirs,
        };
        eprintln!(
            "{n} rules: compile {:.1} ms, denied {:.1} ns, allowed {:.1} ns",
            f.compile.as_secs_f64() * 1e3,
            f.denied(),
            f.allowed()
        );
        all.push(f);
    }
    if all.is_empty() {
        eprintln!("weft-bench policy: no sizes to run");
        return ExitCode::from(2);
    }
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report(&all, effort)).expect("a report serialises")
        );
    } else {
        print(&all, effort);
    }
    ExitCode::SUCCESS
}

/// The rule count issue 3's ratio is judged at, against the first size measured.
const TARGET_RULES: usize = 10_000;
const TARGET_RATIO: f64 = 1.5;

fn report(all: &[SizeFigures], e: Effort) -> Report {
    let first = &all[0];
    let mut rows = Vec::new();
    type Figure = fn(&SizeFigures) -> f64;
    let kinds: [(&str, Figure); 2] = [
        ("denied", SizeFigures::denied),
        ("allowed", SizeFigures::allowed),
    ];
    for (kind, figure) in kinds {
        let base = figure(first);
        for f in all {
            let v = figure(f);
            let judged = f.rules == TARGET_RULES;
            let floor = if kind == "denied" {
                f.floor
            } else {
                f.floor_single()
            };
            rows.push(report::Row {
                name: format!("new flow {kind}, {} rules", thousands(f.rules)),
                value: v,
                unit: "ns/packet".into(),
                runs: Some(e.runs as u32),
                baseline: Some(base),
                baseline_name: Some(format!("{} rules", thousands(first.rules))),
                ratio: Some(v / base),
                target: judged.then(|| format!("ratio <= {TARGET_RATIO}")),
                met: judged.then(|| v / base <= TARGET_RATIO),
                detail: Some(format!(
                    "{:.2} x floor; flat rules in/out {}/{}; {} cells ({} KiB in the kernel, {} rulesets)",
                    v / floor,
                    f.flat[0],
                    f.flat[1],
                    f.usage.cells,
                    f.usage.bytes / 1024,
                    f.usage.rulesets
                )),
                command: COMMAND.into(),
                ..Default::default()
            });
        }
    }
    for f in all {
        rows.push(report::Row {
            name: format!("compile, {} rules", thousands(f.rules)),
            value: f.compile.as_secs_f64() * 1e3,
            unit: "ms".into(),
            runs: Some(1),
            detail: Some(format!(
                "from the loaded configuration to cells, nothing remembered; load {:.0} ms, install {:.0} ms; {} cells, {} KiB in the kernel",
                f.load.as_secs_f64() * 1e3,
                f.install.as_secs_f64() * 1e3,
                f.usage.cells,
                f.usage.bytes / 1024
            )),
            command: COMMAND.into(),
            ..Default::default()
        });
    }
    Report {
        subcommand: "policy".into(),
        title: "A new flow's policy decision as the rules grow".into(),
        rows,
        notes: vec![
            format!(
                "One endpoint's new flows through weft_to_wep and weft_from_wep (BPF_PROG_TEST_RUN, kernel-reported ns), with verdicts from deep in the rule list, each checked against the reference evaluator through the rule hit counters. Denied: mean over the flows of each one's median of {} runs of repeat {}. Allowed: a new flow per packet (each inserts its conntrack entry), mean of {} runs of 1, median of {} runs.",
                e.runs, e.repeat, e.singles, e.runs
            ),
            "Rules per direction selecting the endpoint, mixing selectors, CIDRs, port ranges, named ports and Pass across four tiers and a profile (bench/src/gen.rs); the ratio is against the smallest size of the same run.".into(),
        ],
    }
}

/// 10000 as "10,000".
pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print(all: &[SizeFigures], e: Effort) {
    let Effort {
        runs,
        repeat,
        singles,
    } = e;
    println!("one endpoint's new flows through weft_to_wep / weft_from_wep (BPF_PROG_TEST_RUN), kernel-reported ns per packet");
    println!("$ {COMMAND}");
    print_machine();
    println!();
    println!("per direction: rules = rules selecting the endpoint (flat = after named-port and protocol splitting)");
    println!(
        "{:>7} {:>13} {:>9} {:>11} {:>11} {:>9} {:>13} {:>11}",
        "rules",
        "flat in/out",
        "load ms",
        "compile ms",
        "install ms",
        "rulesets",
        "cells (64 B)",
        "kernel KiB"
    );
    for f in all {
        println!(
            "{:>7} {:>13} {:>9.1} {:>11.1} {:>11.1} {:>9} {:>13} {:>11}",
            f.rules,
            format!("{}/{}", f.flat[0], f.flat[1]),
            f.load.as_secs_f64() * 1e3,
            f.compile.as_secs_f64() * 1e3,
            f.install.as_secs_f64() * 1e3,
            f.usage.rulesets,
            f.usage.cells,
            f.usage.bytes / 1024
        );
    }
    println!();
    println!("ns per packet: denied = mean over the flows of each flow's median of {runs} runs of repeat {repeat};");
    println!("allowed = new flows of their own, mean of {singles} runs of 1, median of {runs}; floor = parsing only, same method");
    println!(
        "{:>7} {:>12} {:>12} {:>10} {:>14} {:>14} {:>10}",
        "rules", "floor", "denied", "x floor", "floor single", "allowed", "x floor"
    );
    for f in all {
        println!(
            "{:>7} {:>12.1} {:>12.1} {:>10.2} {:>14.1} {:>14.1} {:>10.2}",
            f.rules,
            f.floor,
            f.denied(),
            f.denied() / f.floor,
            f.floor_single(),
            f.allowed(),
            f.allowed() / f.floor_single()
        );
    }
    let (first, last) = (&all[0], &all[all.len() - 1]);
    println!();
    println!(
        "ratio {} / {} rules: denied {:.2}, allowed {:.2}   (target: at most 1.5)",
        last.rules,
        first.rules,
        last.denied() / first.denied(),
        last.allowed() / first.allowed()
    );
    println!();
    println!("flows (verdict from the reference evaluator, depth = position of the deciding rule among the flat rules):");
    for f in all {
        for (dir, d) in &f.dirs {
            for (kind, list) in [("denied", &d.denied), ("allowed", &d.allowed)] {
                for (flow, ns) in list {
                    println!(
                        "{:>7} {:<8} {:<8} {:<28} rule {:#010x} depth {:>6}/{:<6} {:>8.1} ns",
                        f.rules,
                        dir.as_str(),
                        kind,
                        flow.describe(),
                        flow.verdict.rule_id,
                        flow.depth,
                        f.flat[if *dir == Direction::Ingress { 0 } else { 1 }],
                        ns
                    );
                }
            }
        }
    }
}
