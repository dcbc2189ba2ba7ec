//! `weft status`: what the daemon last did (from its status file) and how full the pinned maps
//! are (read live). Exit 0 when the daemon runs, its last reconcile did not fail and its files
//! validate; 2 when this user cannot tell (the state directory is root's alone); 1 otherwise.

use std::path::Path;
use std::process::ExitCode;

use weft::bpf::stats::{self, MapFill};
use weft::bpf::Pins;
use weft::daemon::status::{self, rfc3339, Reconcile, Status};

use super::{say, Output};

pub fn run(state_dir: &Path, bpffs: &Path, output: Output) -> ExitCode {
    let st = Status::read(state_dir);
    let maps = stats::map_fill(&Pins::new(bpffs));
    // Another user may not read root's state directory: that says nothing of the daemon.
    let denied = matches!(&st, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied);
    let running = st.as_ref().is_ok_and(|s| status::alive(s.pid));
    // Healthy: running, the last reconcile did not fail, and the files validate (while they
    // do not, the last good configuration is in force, not the files).
    let healthy = running && st.as_ref().is_ok_and(healthy);
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                // null: cannot tell.
                "running": (!denied).then_some(running),
                "daemon": st.as_ref().ok(),
                "maps": maps.as_ref().ok(),
                "kernel": weft::bpf::features::probe(bpffs),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("status serializes")
            );
        }
        Output::Text => {
            match &st {
                Ok(s) => print!("{}", render(s, running)),
                Err(e) if denied => println!(
                    "daemon: cannot tell: permission denied reading {} ({e}); the state directory is root's, run `sudo weft status`",
                    status::status_path(state_dir).display()
                ),
                Err(e) => {
                    println!(
                        "daemon: no status in {} ({e}); is `weft run` running?",
                        status::status_path(state_dir).display()
                    );
                    // No daemon to have recorded it: what this kernel lacks, asked now.
                    let k = weft::bpf::features::probe(bpffs);
                    let missing: Vec<String> = k.missing().map(|f| f.describe()).collect();
                    println!(
                        "kernel: {}{}",
                        k.release,
                        if missing.is_empty() {
                            ", everything weft uses is there"
                        } else {
                            ""
                        }
                    );
                    for m in missing {
                        println!("  {m}");
                    }
                }
            }
            match &maps {
                Ok(m) => print!("{}", render_maps(m)),
                Err(e) => say(format_args!("weft: reading the pinned maps: {e}")),
            }
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else if denied {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// A running daemon is healthy when its last reconcile did not fail, its files validate and
/// no background part keeps failing (the conntrack collector, `FAILING_FOR_GOOD` times in a
/// row).
fn healthy(s: &Status) -> bool {
    s.config.valid
        && s.last_reconcile
            .as_ref()
            .is_some_and(|r| r.result != "failed")
        && s.conntrack_gc
            .failing
            .as_ref()
            .is_none_or(|f| f.times < status::FAILING_FOR_GOOD)
}

fn reconcile_line(r: &Reconcile) -> String {
    format!(
        "{} ({}): {}, {} operation(s) on {} object(s), {} drift repair(s), {} ms",
        rfc3339(r.at),
        r.trigger,
        r.result,
        r.operations,
        r.objects,
        r.repairs,
        r.duration_ms
    )
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render(s: &Status, running: bool) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!(
        "daemon: {} (pid {}), watching {} as node {}, started {}",
        if running { "running" } else { "NOT running" },
        s.pid,
        s.dir,
        s.node,
        rfc3339(s.started_at)
    ));
    if !s.kernel.release.is_empty() {
        line(format!(
            "kernel: {}{}",
            s.kernel.release,
            if s.kernel.missing.is_empty() {
                ", everything weft uses is there"
            } else {
                ""
            }
        ));
        for m in &s.kernel.missing {
            line(format!("  {m}"));
        }
    }
    line(format!(
        "last reconcile: {}",
        s.last_reconcile
            .as_ref()
            .map(reconcile_line)
            .unwrap_or_else(|| "none yet".into())
    ));
    line(format!(
        "last apply: {}",
        s.last_apply
            .as_ref()
            .map(reconcile_line)
            .unwrap_or_else(|| "none (nothing needed changing)".into())
    ));
    line(format!(
        "last error: {}",
        s.last_error
            .as_ref()
            .map(|e| format!("{}: {}", rfc3339(e.at), e.message))
            .unwrap_or_else(|| "none".into())
    ));
    if !s.warnings.is_empty() {
        line(format!("warnings: {}", s.warnings.len()));
        for w in &s.warnings {
            line(format!("  {w}"));
        }
    }
    let revision = s
        .config
        .revision
        .as_ref()
        .map(|r| format!(" (git {r})"))
        .unwrap_or_default();
    if s.config.valid {
        line(format!("configuration: valid{revision}"));
    } else {
        line(format!(
            "configuration: INVALID{revision}, {} problem(s); {}:",
            s.config.problems.len(),
            match s.config.in_force_since {
                Some(t) => format!("the last good one (read {}) stays in force", rfc3339(t)),
                None => "nothing is applied until it validates".into(),
            }
        ));
        for p in &s.config.problems {
            line(format!("  {p}"));
        }
    }
    line(format!(
        "drift repaired: {}{}",
        s.repairs_total(),
        if s.drift_repaired.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts(&s.drift_repaired))
        }
    ));
    for r in s.recent_repairs.iter().rev().take(5) {
        line(format!(
            "  {} {} {}: {}",
            rfc3339(r.at),
            r.kind,
            r.object,
            r.change
        ));
    }
    line(format!(
        "reconciles: {} ({}); applies {}; apply errors {}",
        s.reconciles_total(),
        counts(&s.reconciles),
        s.applies,
        s.apply_errors
    ));
    let gc = &s.conntrack_gc;
    line(format!(
        "conntrack gc: {} sweep(s), {} deleted{}{}{}",
        gc.sweeps,
        gc.deleted_total(),
        if gc.deleted.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts(&gc.deleted))
        },
        gc.last.as_ref().map_or(String::new(), |l| format!(
            "; last {}: {} scanned, {} deleted in {:.1} ms",
            rfc3339(l.at),
            l.scanned,
            l.deleted,
            l.wall_us as f64 / 1e3
        )),
        if gc.errors > 0 {
            format!("; {} error(s)", gc.errors)
        } else {
            String::new()
        }
    ));
    if let Some(f) = &gc.failing {
        line(format!(
            "  FAILING since {} ({} time(s) in a row): {}",
            rfc3339(f.since),
            f.times,
            f.reason
        ));
    }
    out
}

pub fn render_maps(maps: &[MapFill]) -> String {
    let mut out = String::from("maps (live):\n");
    if maps.is_empty() {
        out.push_str("  none pinned\n");
    }
    for m in maps {
        out.push_str(&format!(
            "  {:<16} {:>9} / {:<9} {:>5.1}%\n",
            m.name,
            m.entries,
            m.max_entries,
            m.percent()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::daemon::status::Failing;

    #[test]
    fn healthy_means_converged_valid_and_nothing_failing_for_good() {
        let mut s = Status {
            last_reconcile: Some(Reconcile {
                result: "converged".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.config.valid = true;
        assert!(healthy(&s));
        s.conntrack_gc.failing = Some(Failing {
            since: 1,
            times: status::FAILING_FOR_GOOD - 1,
            reason: "loading: refused".into(),
        });
        assert!(healthy(&s), "a failure that may pass");
        s.conntrack_gc.failing.as_mut().unwrap().times = status::FAILING_FOR_GOOD;
        assert!(!healthy(&s), "one that lasts");
        assert!(render(&s, true).contains("FAILING since"));
        s.conntrack_gc.failing = None;
        s.config.valid = false;
        assert!(!healthy(&s), "files that do not validate");
    }
}
