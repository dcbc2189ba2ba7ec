//! `weft-bench traffic`: TCP between two workloads on veths, through each configuration of
//! [`rig::Kind`] (no rules, weft, iptables, nftables) at each rule count: throughput with one
//! and eight iperf3 streams, request/response rate on one connection, new connections per
//! second, and the CPU they used.
//!
//! Every configuration is set up at once, each in namespaces of its own, and each run measures
//! them all back to back (starting from a different one each run), so a ratio compares figures
//! taken seconds apart. The machine is shared; the ratio of each run is taken against the
//! baseline of the same run, and a row's ratio is the median of those.
//!
//! After the timed runs, a second pass with the kernel's BPF statistics on (they slow every
//! program down a little, so never during the timed runs) says what weft's programs cost per
//! packet and per connection in this traffic.

pub mod load;
pub mod rig;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use load::Sample;
use rig::{Kind, Rig};

use crate::report::{figure, Common, Report, Row, Spread};

const USAGE: &str = "usage: weft-bench traffic [--json] [--quick] [--runs N] [--duration SECS]
       [--rules N,N...] [--conn-threads N] [--only weft,iptables,nftables] [--loads LIST]
       [--nice N] [--no-prog-stats]

  --runs N          timed runs of every load on every configuration (default 7; --quick 2)
  --duration SECS   seconds per measurement (default 2; --quick 1)
  --rules N,N       policy sizes (default 1000,10000)
  --conn-threads N  client threads opening connections (default 4)
  --only LIST       configurations beside the baseline (default weft,iptables,nftables)
  --loads LIST      stream1,stream8,rr,crr (default all)
  --nice N          the niceness of every thread and process of the bench (default -10)
  --no-prog-stats   skip the pass that reads weft's per-program cost";

/// What a measurement does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    Stream1,
    Stream8,
    RequestResponse,
    NewConnections,
}

impl Load {
    const ALL: [Load; 4] = [
        Load::Stream1,
        Load::Stream8,
        Load::RequestResponse,
        Load::NewConnections,
    ];

    fn key(self) -> &'static str {
        match self {
            Load::Stream1 => "stream1",
            Load::Stream8 => "stream8",
            Load::RequestResponse => "rr",
            Load::NewConnections => "crr",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Load::Stream1 => "TCP throughput, 1 stream (iperf3)",
            Load::Stream8 => "TCP throughput, 8 streams (iperf3 -P 8)",
            Load::RequestResponse => "request/response, 1 byte each way on one connection",
            Load::NewConnections => "new connections (connect, 1 byte each way, close)",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Load::Stream1 | Load::Stream8 => "Gbit/s",
            Load::RequestResponse => "transactions/s",
            Load::NewConnections => "conn/s",
        }
    }

    /// The figure in the row's unit.
    fn scale(self, v: f64) -> f64 {
        match self {
            Load::Stream1 | Load::Stream8 => v / 1e9,
            _ => v,
        }
    }

    /// Issue 6's target for weft, as the least ratio to the baseline.
    fn weft_target(self) -> Option<f64> {
        match self {
            Load::Stream1 | Load::Stream8 => Some(0.95),
            Load::NewConnections => Some(0.9),
            Load::RequestResponse => None,
        }
    }
}

struct Options {
    runs: usize,
    duration: u32,
    rules: Vec<usize>,
    conn_threads: usize,
    kinds: Vec<Kind>,
    loads: Vec<Load>,
    nice: i32,
    prog_stats: bool,
}

impl Options {
    fn parse(common: Common, args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            runs: if common.quick { 2 } else { 7 },
            duration: if common.quick { 1 } else { 2 },
            rules: vec![1000, 10_000],
            conn_threads: 4,
            kinds: vec![Kind::Weft, Kind::Iptables, Kind::Nftables],
            loads: Load::ALL.to_vec(),
            nice: -10,
            prog_stats: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} wants a value"));
            let number = |v: &str| -> Result<usize, String> {
                v.parse().map_err(|_| format!("{a}: not a number: {v}"))
            };
            match a.as_str() {
                "--runs" => o.runs = number(value()?)?.max(1),
                "--duration" => o.duration = number(value()?)?.max(1) as u32,
                "--conn-threads" => o.conn_threads = number(value()?)?.max(1),
                "--rules" => {
                    o.rules = value()?.split(',').map(number).collect::<Result<_, _>>()?;
                    if o.rules.iter().any(|&n| n == 0 || n > 40_000) {
                        return Err("--rules: each count between 1 and 40,000".into());
                    }
                }
                "--only" => {
                    o.kinds = value()?
                        .split(',')
                        .map(|k| match k {
                            "weft" => Ok(Kind::Weft),
                            "iptables" => Ok(Kind::Iptables),
                            "nftables" => Ok(Kind::Nftables),
                            _ => Err(format!("--only: no configuration {k}")),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--loads" => {
                    o.loads = value()?
                        .split(',')
                        .map(|k| {
                            Load::ALL
                                .into_iter()
                                .find(|l| l.key() == k)
                                .ok_or(format!("--loads: no load {k}"))
                        })
                        .collect::<Result<_, _>>()?
                }
                "--nice" => {
                    let v = value()?;
                    o.nice = v
                        .parse()
                        .map_err(|_| format!("--nice: not a number: {v}"))?;
                }
                "--no-prog-stats" => o.prog_stats = false,
                _ => return Err(format!("unknown argument {a}")),
            }
        }
        Ok(o)
    }

    /// The command line that repeats this measurement.
    fn command(&self, common: Common) -> String {
        let mut c = String::from("weft-bench traffic");
        if common.quick {
            c.push_str(" --quick");
        }
        let defaults = Options::parse(common, &[]).expect("defaults parse");
        if self.runs != defaults.runs {
            c.push_str(&format!(" --runs {}", self.runs));
        }
        if self.duration != defaults.duration {
            c.push_str(&format!(" --duration {}", self.duration));
        }
        if self.rules != defaults.rules {
            let r: Vec<String> = self.rules.iter().map(usize::to_string).collect();
            c.push_str(&format!(" --rules {}", r.join(",")));
        }
        if self.conn_threads != defaults.conn_threads {
            c.push_str(&format!(" --conn-threads {}", self.conn_threads));
        }
        if self.nice != defaults.nice {
            c.push_str(&format!(" --nice {}", self.nice));
        }
        c
    }
}

/// The weft binary beside this one (`cargo build --release -p weft`), or $WEFT_BIN.
pub(crate) fn weft_bin() -> Result<PathBuf, String> {
    let bin = match std::env::var_os("WEFT_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("weft"),
    };
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release -p weft) or set WEFT_BIN",
            bin.display()
        ))
    }
}

/// What a benchmark of the weft binary needs before it starts: root and a bpffs, and the
/// binary (`weft_bin`). Says what is missing, as `command`, when something is.
pub(crate) fn ready(command: &str) -> Option<PathBuf> {
    if !weft_golden::kernel::available(command) {
        eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
        return None;
    }
    weft_bin().map_err(|e| eprintln!("{command}: {e}")).ok()
}

fn tools_present() -> Result<(), String> {
    for tool in [
        "ip",
        "nsenter",
        "iperf3",
        rig::IPTABLES_RESTORE,
        "nft",
        "bpftool",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
        if !found {
            return Err(format!("{tool} is missing (scripts/setup.sh installs it)"));
        }
    }
    Ok(())
}

pub fn run(common: Common, args: &[String]) -> ExitCode {
    let opts = match Options::parse(common, args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("weft-bench traffic: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !weft_golden::kernel::available("weft-bench traffic") {
        return ExitCode::FAILURE;
    }
    let weft = match weft_bin().and_then(|b| tools_present().map(|()| b)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("weft-bench traffic: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Latency-bound loads (one request/response connection) otherwise wait behind whatever
    // else the shared machine runs; a niceness set here is inherited by every thread and
    // process made after it.
    // SAFETY: setpriority has no memory preconditions.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, opts.nice) } != 0 {
        eprintln!(
            "weft-bench traffic: setpriority {}: {}",
            opts.nice,
            std::io::Error::last_os_error()
        );
    }
    for gone in rig::sweep() {
        eprintln!("removed {gone}, left by an earlier run");
    }

    let mut rigs = vec![Rig::new(Kind::Plain, 1, &weft)];
    for &n in &opts.rules {
        for &kind in &opts.kinds {
            rigs.push(Rig::new(kind, n, &weft));
        }
    }
    for r in &rigs {
        eprintln!("set up {} in {:.1} s", r.label, r.setup.as_secs_f64());
        if let Err(e) = r.check() {
            eprintln!("weft-bench traffic: {e}");
            return ExitCode::FAILURE;
        }
    }

    let started = Instant::now();
    let mut samples: BTreeMap<(Load, usize), Vec<Sample>> = BTreeMap::new();
    for run in 0..opts.runs {
        for &l in &opts.loads {
            for k in 0..rigs.len() {
                let i = (k + run) % rigs.len();
                match measure(&rigs[i], l, &opts) {
                    Ok(s) => {
                        eprintln!(
                            "  {} {}: {} {} (bench CPU {:.2} cores)",
                            l.key(),
                            rigs[i].label,
                            figure(l.scale(s.value)),
                            l.unit(),
                            s.own
                        );
                        samples.entry((l, i)).or_default().push(s)
                    }
                    Err(e) => {
                        eprintln!("weft-bench traffic: {}: {}: {e}", rigs[i].label, l.what());
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        eprintln!(
            "run {}/{} done ({:.0} s)",
            run + 1,
            opts.runs,
            started.elapsed().as_secs_f64()
        );
    }

    let stats = if opts.prog_stats {
        prog_stats(&rigs, &opts)
    } else {
        Vec::new()
    };
    let report = report(&rigs, &samples, &stats, &opts, common);
    drop(rigs);
    if common.json {
        report.print_json();
    } else {
        print_table(&report);
    }
    ExitCode::SUCCESS
}

fn measure(rig: &Rig, l: Load, opts: &Options) -> Result<Sample, String> {
    let secs = f64::from(opts.duration);
    match l {
        Load::Stream1 => load::iperf(
            &rig.client,
            rig.iperf_addr,
            rig.iperf_pid(),
            1,
            opts.duration,
        ),
        Load::Stream8 => load::iperf(
            &rig.client,
            rig.iperf_addr,
            rig.iperf_pid(),
            8,
            opts.duration,
        ),
        Load::RequestResponse => load::request_response(&rig.client, rig.echo_addr, secs),
        Load::NewConnections => {
            load::new_connections(&rig.client, rig.echo_addr, secs, opts.conn_threads)
        }
    }
}

/// What weft's programs cost in one rig under one load, from the kernel's BPF statistics.
struct ProgCost {
    rig: usize,
    load: Load,
    /// Whether the traffic went to the ClusterIP (the timed runs' path) or straight to the
    /// server, which tells the translation's share from the rest.
    via_service: bool,
    /// The load's figure during the pass (in its raw unit) and how long it ran.
    value: f64,
    secs: f64,
    /// Per program: name, runs, total ns.
    progs: Vec<(String, u64, u64)>,
}

/// run_cnt and run_time_ns of every program pinned under a weft rig's bpffs root.
fn prog_counters(bpffs: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(bpffs.join("progs")) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(o) = std::process::Command::new("bpftool")
            .args(["-j", "prog", "show", "pinned"])
            .arg(&path)
            .output()
        else {
            continue;
        };
        let Ok(j) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let cnt = j["run_cnt"].as_u64().unwrap_or(0);
        let ns = j["run_time_ns"].as_u64().unwrap_or(0);
        out.insert(name, (cnt, ns));
    }
    out
}

/// The statistics pass: BPF run-time statistics on (BPF_ENABLE_STATS: on while this process
/// holds the descriptor, so a crash cannot leave them on), one new-connection and one
/// single-stream measurement per weft rig.
fn prog_stats(rigs: &[Rig], opts: &Options) -> Vec<ProgCost> {
    // SAFETY: a plain syscall wrapper; the descriptor is closed below.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
    };
    if fd < 0 {
        eprintln!("weft-bench traffic: BPF_ENABLE_STATS failed ({fd}): no per-program figures");
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, r) in rigs.iter().enumerate() {
        let Some(bpffs) = r.bpffs() else { continue };
        let direct = std::net::SocketAddr::from((rules::SERVER, rules::DIRECT_PORT));
        for (l, via_service) in [
            (Load::NewConnections, true),
            (Load::NewConnections, false),
            (Load::Stream1, true),
        ] {
            let before = prog_counters(bpffs);
            let s = if via_service {
                measure(r, l, opts)
            } else {
                load::new_connections(
                    &r.client,
                    direct,
                    f64::from(opts.duration),
                    opts.conn_threads,
                )
            };
            let Ok(s) = s else { continue };
            // The figure is a rate over the load's own duration (iperf3's start and end are
            // outside it), so this many seconds of it make the work done.
            let secs = f64::from(opts.duration);
            let after = prog_counters(bpffs);
            let mut progs: Vec<(String, u64, u64)> = after
                .iter()
                .filter_map(|(name, &(cnt, ns))| {
                    let (c0, n0) = before.get(name).copied().unwrap_or((0, 0));
                    (cnt > c0).then(|| (name.clone(), cnt - c0, ns - n0))
                })
                .collect();
            // Programs that ran a handful of times (a connect of iperf3's, a stray packet on
            // another device) say nothing about the load.
            let most = progs.iter().map(|p| p.1).max().unwrap_or(0);
            progs.retain(|p| p.1 * 100 >= most);
            out.push(ProgCost {
                rig: i,
                load: l,
                via_service,
                value: s.value,
                secs,
                progs,
            });
        }
    }
    // SAFETY: the descriptor bpf_enable_stats returned.
    unsafe { libc::close(fd) };
    out
}

fn report(
    rigs: &[Rig],
    samples: &BTreeMap<(Load, usize), Vec<Sample>>,
    stats: &[ProgCost],
    opts: &Options,
    common: Common,
) -> Report {
    let command = opts.command(common);
    let baseline_name = rigs[0].label.clone();
    let mut rows = Vec::new();
    let mut missed = Vec::new();
    for &l in &opts.loads {
        let Some(base) = samples.get(&(l, 0)) else {
            continue;
        };
        let base_spread = Spread::of(&base.iter().map(|s| s.value).collect::<Vec<_>>());
        for (i, r) in rigs.iter().enumerate() {
            let Some(ss) = samples.get(&(l, i)) else {
                continue;
            };
            let values: Vec<f64> = ss.iter().map(|s| l.scale(s.value)).collect();
            let Some(spread) = Spread::of(&values) else {
                continue;
            };
            let med = |f: fn(&Sample) -> f64| {
                Spread::of(&ss.iter().map(f).collect::<Vec<_>>()).map_or(0.0, |s| s.median)
            };
            let errors: u64 = ss.iter().map(|s| s.errors).sum();
            let mut detail = format!(
                "CPU: bench {:.2} cores ({} {:.2}); machine {:.2}, softirq {:.2}",
                med(|s| s.own),
                if matches!(l, Load::Stream1 | Load::Stream8) {
                    "iperf3 client"
                } else {
                    "client"
                },
                med(|s| s.client),
                med(|s| s.cpu),
                med(|s| s.softirq),
            );
            if errors > 0 {
                detail.push_str(&format!("; {errors} failed connections"));
            }
            // The figure per core of the bench's own CPU: on a machine whose other work takes
            // a varying share, this follows the datapath's cost rather than that share.
            let per_core = |s: &Sample| l.scale(s.value) / s.own.max(1e-9);
            let per_core_ratios: Vec<f64> = ss
                .iter()
                .zip(base)
                .map(|(s, b)| per_core(s) / per_core(b))
                .collect();
            detail.push_str(&format!(
                "; per bench core {} {}",
                figure(
                    Spread::of(&ss.iter().map(per_core).collect::<Vec<_>>())
                        .map_or(0.0, |s| s.median)
                ),
                l.unit()
            ));
            let mut row = Row {
                name: format!("{}: {}", r.label, l.what()),
                value: spread.median,
                unit: l.unit().into(),
                runs: Some(spread.runs),
                min: Some(spread.min),
                max: Some(spread.max),
                detail: Some(detail),
                command: command.clone(),
                ..Row::default()
            };
            if i != 0 {
                // Paired: each run's figure over the baseline's in the same run.
                let ratios: Vec<f64> = ss
                    .iter()
                    .zip(base)
                    .map(|(s, b)| s.value / b.value)
                    .collect();
                row.baseline = base_spread.map(|s| l.scale(s.median));
                row.baseline_name = Some(baseline_name.clone());
                row.ratio = Spread::of(&ratios).map(|s| s.median);
                if let (Some(r), Some(c)) = (Spread::of(&ratios), Spread::of(&per_core_ratios)) {
                    let d = row.detail.get_or_insert_with(String::new);
                    d.push_str(&format!(
                        ", ratio {:.2}; the runs' ratios {:.2}-{:.2}",
                        c.median, r.min, r.max
                    ));
                }
                if r.kind == Kind::Weft {
                    if let (Some(t), Some(ratio)) = (l.weft_target(), row.ratio) {
                        row.target = Some(format!("ratio >= {t}"));
                        row.met = Some(ratio >= t);
                        if ratio < t {
                            missed.push(Miss {
                                rig: i,
                                load: l,
                                ratio,
                                target: t,
                                runs: Spread::of(&ratios),
                                per_core: Spread::of(&per_core_ratios).map(|s| s.median),
                            });
                        }
                    }
                }
            }
            rows.push(row);
        }
    }

    // The statistics pass, as rows of their own.
    for c in stats {
        let r = &rigs[c.rig];
        let work = c.value * c.secs;
        let per = match c.load {
            Load::NewConnections => "connection",
            _ => "MB received",
        };
        let per_unit = match c.load {
            Load::NewConnections => work,
            _ => work / 8e6,
        };
        for (name, cnt, ns) in &c.progs {
            rows.push(Row {
                name: format!(
                    "{}: {name}, under {}{}",
                    r.label,
                    c.load.key(),
                    if c.via_service {
                        ""
                    } else {
                        " straight to the server (no NAT)"
                    }
                ),
                value: *ns as f64 / *cnt as f64,
                unit: "ns/run".into(),
                runs: Some(1),
                detail: Some(format!(
                    "{:.1} runs per {per}, {:.2} µs per {per}; {:.1}% of one core",
                    *cnt as f64 / per_unit,
                    *ns as f64 / per_unit / 1e3,
                    *ns as f64 / c.secs / 1e7
                )),
                command: format!("{command} (statistics pass: BPF_ENABLE_STATS)"),
                ..Row::default()
            });
        }
    }

    let mut notes = vec![
        format!(
            "Each configuration has its own host, client and server namespaces, all set up at once; each of {} runs measures every configuration back to back ({} s per measurement), starting from a different configuration each run. A figure is the median of the runs, with their minimum and maximum beside it; a ratio is the median of the runs' own ratios to the baseline measured in the same run.",
            opts.runs, opts.duration
        ),
        "Traffic goes from the client workload to the server workload through the host namespace: straight to the server's address in (a), to the ClusterIP in (b), (c) and (d). The policy is on the server's ingress; only its last rule admits the traffic (see bench/src/traffic/rules.rs for the three renderings).".into(),
        format!(
            "CPU, in cores (of {}): \"bench\" is the benchmark's own processes (getrusage of this process and its waited-for children, /proc/PID/stat of the iperf3 server) and the ksoftirqd threads: client, server, and the kernel's work on their behalf, softirq included, which this kernel charges to the task it interrupts or, when deferred, to ksoftirqd. \"Machine\" is the whole machine's busy time from /proc/stat, softirq apart; other engineers' work on the shared machine lands in it too. The client's share is its threads' own (RUSAGE_THREAD) or the iperf3 client process's.",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!(
            "Every thread and process of the benchmark runs at niceness {}, so that the loads wait less behind other work on the shared machine.",
            opts.nice
        ),
        "Per bench core: the figure divided by the bench's CPU in the same measurement, and its ratio to the baseline's (the median of the runs' ratios). Here the bench gets a share of the two cores that changes from second to second with what else runs, and throughput follows that share; per core, it follows what each configuration costs. \"The runs' ratios\" is the spread of the per-run ratios the row's ratio is the median of: the resolution of this run.".into(),
        format!(
            "New connections: {} client threads, each connecting, sending 1 byte, reading 1 byte and the server's close, then closing; the server closes first, so TIME_WAIT stays on the server and the client's ports stay free. The client's CPU beside the figure shows how much of the machine it takes.",
            opts.conn_threads
        ),
    ];
    if stats.iter().any(|c| !c.progs.is_empty()) {
        notes.push("Per-program rows come from a pass after the timed runs with the kernel's BPF statistics on (BPF_ENABLE_STATS), one measurement per load; the statistics add two clock reads to every run of a program, so the ns per run are slightly high. weft_connect4 is the cgroup connect hook for connect-time load balancing: attached to the root cgroup, it runs on every connect() on the machine (it returns at once for sockets outside weft's host namespace), so every weft configuration's instance also runs in the other configurations, the baseline's included.".into());
    }
    // A latency-bound load stalls whole runs when its packets' receive work waits behind
    // other work on the machine: say how often, so a reader weighs those rows.
    let mut collapsed = 0;
    let mut configurations = 0;
    let mut total = 0;
    for i in 0..rigs.len() {
        if let Some(ss) = samples.get(&(Load::RequestResponse, i)) {
            let values: Vec<f64> = ss.iter().map(|s| s.value).collect();
            let Some(m) = Spread::of(&values) else {
                continue;
            };
            let n = values.iter().filter(|&&v| v < m.median / 10.0).count();
            collapsed += n;
            configurations += usize::from(n > 0);
            total += values.len();
        }
    }
    if collapsed > 0 {
        notes.push(format!(
            "Request/response is bound by latency and the most sensitive to the shared machine: {collapsed} of its {total} measurements, in {configurations} of the {} configurations, fell below a tenth of their configuration's median (one connection whose every round trip waits for the CPU). The median of the runs discounts them; the ratios of those rows are the least certain here.",
            rigs.len()
        ));
    }
    let setups: Vec<String> = rigs
        .iter()
        .skip(1)
        .map(|r| format!("{} {:.1} s", r.label, r.setup.as_secs_f64()))
        .collect();
    notes.push(format!(
        "Set-up times (weft apply, iptables-legacy-restore, nft -f): {}.",
        setups.join("; ")
    ));
    for m in missed {
        notes.push(explain_miss(rigs, &m, samples, stats));
    }
    Report {
        subcommand: "traffic".into(),
        title: "TCP between two workloads on veths in network namespaces".into(),
        rows,
        notes,
    }
}

/// Why weft missed a target, in the figures this run has: CPU per unit of work against the
/// baseline's, and what weft's programs spent per unit in the statistics pass.
/// A target weft missed, with what the run knows about how sure that is.
struct Miss {
    rig: usize,
    load: Load,
    ratio: f64,
    target: f64,
    /// The runs' own ratios.
    runs: Option<Spread>,
    /// The median ratio per bench core.
    per_core: Option<f64>,
}

fn explain_miss(
    rigs: &[Rig],
    m: &Miss,
    samples: &BTreeMap<(Load, usize), Vec<Sample>>,
    stats: &[ProgCost],
) -> String {
    let (i, l, ratio, target) = (m.rig, m.load, m.ratio, m.target);
    let per_unit = |k: usize| -> Option<f64> {
        let ss = samples.get(&(l, k))?;
        let v: Vec<f64> = ss.iter().map(|s| s.own / s.value).collect();
        Spread::of(&v).map(|s| s.median)
    };
    let (unit, scale) = match l {
        Load::NewConnections => ("µs of CPU per connection", 1e6),
        // cores / (bit/s) = CPU seconds per bit; 8e6 bits in a MB, 1e6 µs in a second.
        _ => ("µs of CPU per MB", 8e12),
    };
    let mut s = format!(
        "Missed: {}, {} at {:.2} of the baseline (target {target}).",
        rigs[i].label,
        l.what(),
        ratio
    );
    if let Some(r) = m.runs.filter(|r| r.max >= target) {
        s.push_str(&format!(
            " The runs' own ratios range {:.2}-{:.2}, across the target, so this run cannot tell the miss from noise",
            r.min, r.max
        ));
        match m.per_core {
            Some(c) => s.push_str(&format!("; per bench core the ratio is {c:.2}.")),
            None => s.push('.'),
        }
    }
    if let (Some(w), Some(b)) = (per_unit(i), per_unit(0)) {
        s.push_str(&format!(
            " The bench's processes spent {} {unit} against {} in (a): {} more, where the target allows {}.",
            figure(w * scale),
            figure(b * scale),
            figure((w - b) * scale),
            figure(b * scale * (1.0 / target - 1.0))
        ));
    }
    // The statistics pass measured one stream for both throughput loads: the per-packet cost
    // of an established flow is the same.
    let pass_load = match l {
        Load::Stream8 => Load::Stream1,
        other => other,
    };
    if let Some(c) = stats
        .iter()
        .find(|c| c.rig == i && c.load == pass_load && c.via_service)
    {
        let work = c.value
            * c.secs
            * match c.load {
                Load::NewConnections => 1.0,
                _ => 1.0 / 8e6,
            };
        let what = match c.load {
            Load::NewConnections => "connection",
            _ => "MB",
        };
        let total: u64 = c.progs.iter().map(|p| p.2).sum();
        s.push_str(&format!(
            " weft's programs ran {} µs per {what} in the statistics pass ({}).",
            figure(total as f64 / work / 1e3),
            c.progs
                .iter()
                .map(|(n, cnt, ns)| format!(
                    "{n}: {:.1} runs × {} ns",
                    *cnt as f64 / work,
                    figure(*ns as f64 / *cnt as f64)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(d) = stats
            .iter()
            .find(|d| d.rig == i && d.load == c.load && !d.via_service)
        {
            let direct: u64 = d.progs.iter().map(|p| p.2).sum();
            let direct_work = d.value * d.secs;
            if c.load == Load::NewConnections && direct_work > 0.0 {
                s.push_str(&format!(
                    " Straight to the server, without the ClusterIP, they ran {} µs per connection: the translation's share is the difference.",
                    figure(direct as f64 / direct_work / 1e3)
                ));
            }
        }
    }
    s.push_str(
        " What would close it: less work per packet in weft's programs on real traffic (compare their ns per run here with the packet rows' BPF_PROG_TEST_RUN figures for the same paths), or handing workload-to-workload packets straight to the peer's namespace (a FIB lookup and bpf_redirect_peer, as Calico's and Cilium's dataplanes do), so that the host's forwarding path, which (a) pays too, no longer runs.",
    );
    s
}

fn print_table(r: &Report) {
    println!("{}", r.title);
    println!();
    println!(
        "{:<88} {:>12} {:>20} {:>7} {:>10}",
        "configuration: load", "median", "min-max", "ratio", "target"
    );
    for row in &r.rows {
        let spread = match (row.min, row.max) {
            (Some(a), Some(b)) => format!("{}-{}", figure(a), figure(b)),
            _ => String::new(),
        };
        let target = match (&row.target, row.met) {
            (Some(t), Some(true)) => format!("{t} met"),
            (Some(t), _) => format!("{t} MISSED"),
            _ => String::new(),
        };
        println!(
            "{:<88} {:>12} {:>20} {:>7} {:>10}",
            row.name,
            format!("{} {}", figure(row.value), row.unit),
            spread,
            row.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
            target
        );
        if let Some(d) = &row.detail {
            println!("    {d}");
        }
    }
    println!();
    for n in &r.notes {
        println!("- {n}");
    }
    println!(
        "\n$ {}",
        r.rows.first().map_or("", |row| row.command.as_str())
    );
}
