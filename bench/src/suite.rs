//! `weft-bench suite`: runs every benchmark subcommand and writes BENCHMARKS.md.
//!
//! Each subcommand runs as a child process of this binary with `--json` (and `--quick` when
//! asked), so one that fails or panics costs its own rows only, and whatever it set up is
//! removed by its own process. Its stderr (progress) passes through; its stdout is the report
//! of report.rs. A subcommand named in [`SUITE`] that this build does not have yet is a "not
//! built" row; one that exists but does not print the contract yet has its text output kept
//! in the file as it came.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::report::{figure, Common, Machine, Report};

/// The suite in the order it runs: subcommand, and what it measures (shown while it is not
/// built). Issue 6's benchmarks; the lead wires each into `COMMANDS` as it lands.
const SUITE: &[(&str, &str)] = &[
    (
        "packet",
        "per-packet cost of weft_from_wep through BPF_PROG_TEST_RUN",
    ),
    ("policy", "new flow under 10 and 10,000 rules"),
    ("policy-change", "the cost of a policy change"),
    (
        "services",
        "control plane: cold converge and one-change latency at 1,000 and 10,000 services",
    ),
    (
        "control",
        "control plane at 1,000 and 10,000 endpoints, policies and services: converge, diff, one change, RSS",
    ),
    ("nat-packet", "NAT hit at 10,000 services"),
    ("ct-gc", "conntrack GC of 1,000,000 entries"),
    (
        "verifier",
        "the verifier's cost of every program (instructions processed against the limit)",
    ),
    (
        "traffic",
        "TCP between workloads: no rules, weft, iptables, nftables",
    ),
    (
        "lookup",
        "a kernel LPM trie's lookup and write costs as it fills (why rulesets are not tries)",
    ),
    (
        "xdp",
        "a host endpoint's untracked deny: per packet in XDP and tc, and under a flood beside iptables raw",
    ),
    (
        "fleet",
        "a fleet's control plane at 1,000 nodes and 100,000 remote workloads: converge, one node added, RSS",
    ),
    (
        "fleet-traffic",
        "TCP between workloads on two hosts: weft's VXLAN against plain Linux VXLAN",
    ),
    (
        "xdp-nodeport",
        "a NodePort packet to a remote backend: XDP acceleration against the tc path, per packet",
    ),
];

const USAGE: &str = "usage: weft-bench suite [--quick] [--out FILE] [--only NAME,NAME...]

  --quick       every subcommand's --quick (for trying the suite out)
  --out FILE    where to write (default BENCHMARKS.md)
  --only LIST   run these subcommands only";

/// How one subcommand went.
enum Outcome {
    Report(Report),
    NotBuilt,
    /// It ran but printed no report: its text output.
    Text(String),
    Failed(String),
}

pub fn run(common: Common, args: &[String]) -> ExitCode {
    let mut out = PathBuf::from("BENCHMARKS.md");
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--out", Some(v)) => out = v.into(),
            ("--only", Some(v)) => only = Some(v.split(',').map(String::from).collect()),
            _ => {
                eprintln!("weft-bench suite: bad arguments\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("weft-bench suite: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let mut results = Vec::new();
    for &(name, what) in SUITE {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let built = crate::COMMANDS.iter().any(|(n, _, _)| *n == name);
        if !built {
            eprintln!("== {name}: not built");
            results.push((name, what, Outcome::NotBuilt, 0.0));
            continue;
        }
        eprintln!("== {name}");
        let t = Instant::now();
        let mut cmd = Command::new(&exe);
        cmd.arg(name).arg("--json");
        if common.quick {
            cmd.arg("--quick");
        }
        let outcome = match cmd.stderr(Stdio::inherit()).output() {
            Err(e) => Outcome::Failed(format!("could not run: {e}")),
            Ok(o) if !o.status.success() => Outcome::Failed(format!(
                "{}{}",
                o.status,
                tail(&String::from_utf8_lossy(&o.stdout))
            )),
            Ok(o) => match serde_json::from_slice::<Report>(&o.stdout) {
                Ok(r) => Outcome::Report(r),
                Err(_) => Outcome::Text(String::from_utf8_lossy(&o.stdout).into_owned()),
            },
        };
        let secs = t.elapsed().as_secs_f64();
        eprintln!("== {name}: {:.0} s", secs);
        results.push((name, what, outcome, secs));
    }
    let failed = results
        .iter()
        .any(|(_, _, o, _)| matches!(o, Outcome::Failed(_)));
    let text = render(
        &results,
        common,
        &load_before,
        started.elapsed().as_secs_f64(),
    );
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("weft-bench suite: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("wrote {}", out.display());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The last lines of a failed subcommand's output.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].iter().map(|l| format!("\n{l}")).collect()
}

/// A table cell: no pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn render(
    results: &[(&str, &str, Outcome, f64)],
    common: Common,
    load_before: &str,
    secs: f64,
) -> String {
    let m = Machine::read();
    let mut s = String::new();
    s.push_str("# weft benchmarks\n\n");
    let _ = writeln!(
        s,
        "Written by `scripts/bench.sh{}` (`weft-bench suite`) on {}, in {:.0} minutes. Do not edit: run it again. \
         `weft-bench` is `target/release/weft-bench`, which the script builds with `weft` beside it.\n",
        if common.quick { " --quick" } else { "" },
        utc_now(),
        secs / 60.0
    );
    let _ = writeln!(
        s,
        "Machine: Linux {}, {}, {} cores, {:.0} GiB; load average {} when the suite started. \
         The machine is shared with other builds and tests: absolute figures are noisy (see each row's \
         min-max), and the result is the ratio to a baseline measured in the same run.\n",
        m.kernel,
        m.cpu,
        m.cores,
        m.memory_gib,
        load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    if common.quick {
        s.push_str("**Quick run** (`--quick`): fewer and shorter runs than the real suite.\n\n");
    }

    // Targets first, the way a reader asks: did weft meet them?
    let targets: Vec<(&str, &crate::report::Row)> = results
        .iter()
        .filter_map(|(n, _, o, _)| match o {
            Outcome::Report(r) => Some((*n, r)),
            _ => None,
        })
        .flat_map(|(n, r)| {
            r.rows
                .iter()
                .filter(|row| row.target.is_some())
                .map(move |row| (n, row))
        })
        .collect();
    if !targets.is_empty() {
        s.push_str("## Targets\n\n| what | result | target | met |\n|---|---|---|---|\n");
        for (_, row) in &targets {
            let target = row.target.as_deref().unwrap_or_default();
            // A target on the ratio shows the ratio; one on the figure (ms, MiB) the figure.
            let result = if target.starts_with("ratio") {
                row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default()
            } else {
                format!("{} {}", figure(row.value), row.unit)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                cell(&row.name),
                result,
                cell(target),
                met(row.met)
            );
        }
        s.push('\n');
    }

    for (name, what, outcome, secs) in results {
        match outcome {
            Outcome::NotBuilt => {
                let _ = writeln!(
                    s,
                    "## {name}: not built\n\n{what}: `weft-bench {name}` is not in this build yet.\n"
                );
            }
            Outcome::Failed(why) => {
                let _ = writeln!(
                    s,
                    "## {name}: FAILED\n\n{what}: `weft-bench {name} --json` failed after {secs:.0} s: {}\n",
                    cell(why)
                );
            }
            Outcome::Text(text) => {
                let _ = writeln!(
                    s,
                    "## {name}\n\n{what}. `weft-bench {name}` does not print the `--json` report yet; its output as it came ({secs:.0} s):\n\n```\n{}\n```\n",
                    text.trim_end()
                );
            }
            Outcome::Report(r) => {
                let _ = writeln!(s, "## {name}: {}\n", r.title);
                let _ = writeln!(s, "{} rows, {secs:.0} s.\n", r.rows.len());
                s.push_str("| what | figure | min-max (runs) | baseline | ratio | target | met | detail | command |\n");
                s.push_str("|---|---|---|---|---|---|---|---|---|\n");
                for row in &r.rows {
                    let spread = match (row.min, row.max) {
                        (Some(a), Some(b)) => format!(
                            "{}-{}{}",
                            figure(a),
                            figure(b),
                            row.runs.map(|n| format!(" ({n})")).unwrap_or_default()
                        ),
                        _ => row.runs.map(|n| format!("({n})")).unwrap_or_default(),
                    };
                    let baseline = match (row.baseline, &row.baseline_name) {
                        (Some(b), Some(n)) => format!("{} {}: {}", figure(b), row.unit, n),
                        (Some(b), None) => format!("{} {}", figure(b), row.unit),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {} {} | {} | {} | {} | {} | {} | {} | `{}` |",
                        cell(&row.name),
                        figure(row.value),
                        cell(&row.unit),
                        spread,
                        cell(&baseline),
                        row.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
                        cell(row.target.as_deref().unwrap_or_default()),
                        if row.target.is_some() {
                            met(row.met)
                        } else {
                            ""
                        },
                        cell(row.detail.as_deref().unwrap_or_default()),
                        row.command
                    );
                }
                s.push('\n');
                for n in &r.notes {
                    let _ = writeln!(s, "- {}", n.replace('\n', " "));
                }
                s.push('\n');
            }
        }
    }
    s
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**MISSED**",
        None => "",
    }
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn every_subcommand_is_in_the_suite() {
        // A subcommand added to COMMANDS but not to SUITE would never reach BENCHMARKS.md.
        for (name, _, _) in crate::COMMANDS {
            assert!(
                *name == "suite" || SUITE.iter().any(|(n, _)| n == name),
                "{name} is missing from SUITE"
            );
        }
    }

    #[test]
    fn a_subcommand_not_built_is_a_row_not_a_crash() {
        let text = render(
            &[("ct-gc", "conntrack GC", Outcome::NotBuilt, 0.0)],
            Common::default(),
            "0.1 0.2 0.3 1/1 1",
            1.0,
        );
        assert!(text.contains("## ct-gc: not built"), "{text}");
    }
}
