//! The figures a subcommand hands the suite: the contract between `weft-bench suite` and every
//! other subcommand.
//!
//! Every subcommand accepts `--json` (print one [`Report`] as JSON on stdout instead of its
//! table; progress and diagnostics go to stderr) and `--quick` (fewer or shorter runs, for
//! development; a subcommand may ignore it). A report is:
//!
//! ```json
//! {
//!   "subcommand": "traffic",
//!   "title": "TCP between two workloads on veths",
//!   "rows": [{
//!     "name": "weft, 1,000 rules: new connections",   // what was measured
//!     "value": 21000.0, "unit": "conn/s",              // the median of `runs` runs
//!     "runs": 5, "min": 20500.0, "max": 22100.0,       // the spread of those runs
//!     "baseline": 22000.0, "baseline_name": "no programs, no rules",
//!     "ratio": 0.95,                                    // value / baseline (how it was paired: notes)
//!     "target": "ratio >= 0.9", "met": true,            // a target from the issue, if any
//!     "detail": "CPU 1.9 cores (softirq 0.4)",          // anything else a reader wants beside it
//!     "command": "weft-bench traffic"                   // the command that measures it
//!   }],
//!   "notes": ["how it was measured, what a missed target means"]
//! }
//! ```
//!
//! Every field but name, value, unit and command may be left out. The suite renders the rows
//! in BENCHMARKS.md as they come; it judges nothing itself, so `met` is the subcommand's call.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub subcommand: String,
    pub title: String,
    pub rows: Vec<Row>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub command: String,
}

impl Report {
    /// Prints the report as JSON on stdout (`--json`: the suite reads it there).
    pub fn print_json(&self) {
        println!(
            "{}",
            serde_json::to_string_pretty(self).expect("a report serialises")
        );
    }

    /// Prints the report for people: its title and `command`, a line per row (its figure,
    /// its ratio to its baseline, its target and whether it was met), details and notes.
    pub fn print_text(&self, command: &str) {
        println!("{}\n$ {command}\n", self.title);
        for r in &self.rows {
            let ratio = match (r.ratio, &r.baseline_name) {
                (Some(x), Some(b)) => format!("({x:.2}x {b}) "),
                _ => String::new(),
            };
            let target = match (&r.target, r.met) {
                (Some(t), Some(true)) => format!("(target {t}: met)"),
                (Some(t), _) => format!("(target {t}: MISSED)"),
                _ => String::new(),
            };
            println!(
                "{:<92} {:>10.1} {:<7} {ratio}{target}",
                r.name, r.value, r.unit
            );
            if let Some(d) = &r.detail {
                println!("    {d}");
            }
        }
        for n in &self.notes {
            println!("\n{n}");
        }
    }

    /// `--json`, or the text for people.
    pub fn print(&self, common: Common, command: &str) {
        if common.json {
            self.print_json();
        } else {
            self.print_text(command);
        }
    }
}

/// The flags every subcommand takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Common {
    pub json: bool,
    pub quick: bool,
}

impl Common {
    /// Takes `--json` and `--quick` out of `args`, leaving the subcommand's own.
    pub fn take(args: &mut Vec<String>) -> Common {
        let mut c = Common::default();
        args.retain(|a| match a.as_str() {
            "--json" => {
                c.json = true;
                false
            }
            "--quick" => {
                c.quick = true;
                false
            }
            _ => true,
        });
        c
    }
}

/// Median, minimum and maximum of some runs' figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: u32,
}

impl Spread {
    /// None for no runs. With an even count the median is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n as u32,
        })
    }
}

/// The facts about this machine that a reader needs beside its figures.
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
        }
    }
}

/// A figure with three significant digits or so, as a table shows it.
pub fn figure(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn a_report_reads_back_with_optional_fields_left_out() {
        let text = r#"{"subcommand":"x","title":"t","rows":[{"name":"n","value":1.5,"unit":"ns","command":"weft-bench x"}]}"#;
        let r: Report = serde_json::from_str(text).unwrap();
        assert_eq!(r.rows[0].value, 1.5);
        assert!(r.rows[0].ratio.is_none() && r.notes.is_empty());
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.rows[0].command, "weft-bench x");
    }
}
