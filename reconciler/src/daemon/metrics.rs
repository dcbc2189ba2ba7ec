//! Prometheus metrics in the text exposition format (version 0.0.4), served over plain HTTP
//! by a few lines on tokio: `GET /metrics`, and `GET /status` for the status as JSON. The
//! daemon's own counters come from its `Status`; map fill, packets by reason and rule hits
//! are read from the pinned maps at each scrape, the process's figures from `/proc/self`
//! (`process.rs`, which `prometheus-client` encodes).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::drift::Kind;
use super::process::{self, ProcessStats};
use super::status::Status;
use crate::bpf::reasons::REASONS;
use crate::bpf::stats::{self, HookCounters, MapFill};
use crate::bpf::Pins;
use crate::state::Names;

/// Upper bounds of the reconcile duration histogram, in seconds.
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus histogram.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound of `BUCKETS`.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        if self.counts.len() != BUCKETS.len() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= *b {
                *c += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// What the daemon shares with the metrics endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    pub status: Status,
    pub durations: Histogram,
    /// What the rule ids of the configuration in force stand for.
    pub rules: Names,
    /// The conntrack timeouts of the configuration in force; None until one is.
    pub ct_timeouts: Option<crate::bpf::ctgc::CtTimeouts>,
}

/// What one scrape read from the pinned maps, and of this process.
#[derive(Debug, Default)]
pub struct Dataplane {
    pub maps: Vec<MapFill>,
    pub packets: Vec<HookCounters>,
    pub rule_hits: std::collections::BTreeMap<u32, u64>,
    /// None when `/proc/self` could not be read (said in the log).
    pub process: Option<ProcessStats>,
}

impl Dataplane {
    /// Reads the pinned maps; a map that cannot be read is left out and said so in the log.
    pub fn read(pins: &Pins) -> Dataplane {
        let warn = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!("metrics: reading {what}: {e}");
        };
        Dataplane {
            maps: stats::map_fill(pins).unwrap_or_else(|e| {
                warn("map fill", &e);
                Vec::new()
            }),
            packets: stats::packet_counters(pins).unwrap_or_else(|e| {
                warn("packet counters", &e);
                Vec::new()
            }),
            rule_hits: stats::rule_hits(pins).unwrap_or_else(|e| {
                warn("rule counters", &e);
                Default::default()
            }),
            process: ProcessStats::read()
                .inspect_err(|e| warn("/proc/self", e))
                .ok(),
        }
    }
}

/// A label value, escaped as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(shared: &Shared, dp: &Dataplane) -> String {
    let s = &shared.status;
    let mut out = String::new();

    header(
        &mut out,
        "weft_reconcile_duration_seconds",
        "histogram",
        "Time from waking to the live state observed again, per reconcile.",
    );
    let h = &shared.durations;
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "weft_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {}",
            h.counts.get(i).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "weft_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "weft_reconcile_duration_seconds_sum {}", h.sum);
    let _ = writeln!(out, "weft_reconcile_duration_seconds_count {}", h.count);

    header(
        &mut out,
        "weft_reconciles_total",
        "counter",
        "Reconciles, by what woke them.",
    );
    for t in ["start", "files", "links", "resync", "retry"] {
        let _ = writeln!(
            out,
            "weft_reconciles_total{{trigger=\"{t}\"}} {}",
            s.reconciles.get(t).copied().unwrap_or(0)
        );
    }
    header(
        &mut out,
        "weft_applies_total",
        "counter",
        "Reconciles that changed something in the kernel.",
    );
    let _ = writeln!(out, "weft_applies_total {}", s.applies);
    header(
        &mut out,
        "weft_apply_errors_total",
        "counter",
        "Reconciles that failed (the kernel refused an operation, or observing failed).",
    );
    let _ = writeln!(out, "weft_apply_errors_total {}", s.apply_errors);
    header(
        &mut out,
        "weft_config_valid",
        "gauge",
        "1 when the files validated at the last read, 0 when the last good configuration is in force instead.",
    );
    let _ = writeln!(out, "weft_config_valid {}", u8::from(s.config.valid));
    header(
        &mut out,
        "weft_config_warnings",
        "gauge",
        "Warnings of the configuration in force: what it leaves undone (weft status lists them).",
    );
    let _ = writeln!(out, "weft_config_warnings {}", s.warnings.len());
    header(
        &mut out,
        "weft_last_apply_timestamp_seconds",
        "gauge",
        "When the last reconcile that changed something ran.",
    );
    let _ = writeln!(
        out,
        "weft_last_apply_timestamp_seconds {}",
        s.last_apply.as_ref().map(|r| r.at).unwrap_or(0)
    );
    header(
        &mut out,
        "weft_drift_repairs_total",
        "counter",
        "Objects weft made that someone else changed, and weft put back, by kind.",
    );
    for k in Kind::ALL {
        let _ = writeln!(
            out,
            "weft_drift_repairs_total{{kind=\"{}\"}} {}",
            k.as_str(),
            s.drift_repaired.get(k.as_str()).copied().unwrap_or(0)
        );
    }

    let gc = &s.conntrack_gc;
    header(
        &mut out,
        "weft_conntrack_gc_sweeps_total",
        "counter",
        "Sweeps of the conntrack map by the collector.",
    );
    let _ = writeln!(out, "weft_conntrack_gc_sweeps_total {}", gc.sweeps);
    header(
        &mut out,
        "weft_conntrack_gc_errors_total",
        "counter",
        "Sweeps that failed to load or run.",
    );
    let _ = writeln!(out, "weft_conntrack_gc_errors_total {}", gc.errors);
    header(
        &mut out,
        "weft_conntrack_gc_deleted_total",
        "counter",
        "Conntrack entries the collector deleted, by the timeout that expired them.",
    );
    for (reason, n) in &gc.deleted {
        let _ = writeln!(
            out,
            "weft_conntrack_gc_deleted_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    header(
        &mut out,
        "weft_conntrack_gc_last_sweep_seconds",
        "gauge",
        "Wall time of the last sweep.",
    );
    let _ = writeln!(
        out,
        "weft_conntrack_gc_last_sweep_seconds {}",
        gc.last.as_ref().map_or(0.0, |l| l.wall_us as f64 / 1e6)
    );

    header(
        &mut out,
        "weft_map_entries",
        "gauge",
        "Entries in each pinned map.",
    );
    for m in &dp.maps {
        let _ = writeln!(
            out,
            "weft_map_entries{{map=\"{}\"}} {}",
            label(&m.name),
            m.entries
        );
    }
    header(
        &mut out,
        "weft_map_max_entries",
        "gauge",
        "Capacity of each pinned map (BPFMapSize*).",
    );
    for m in &dp.maps {
        let _ = writeln!(
            out,
            "weft_map_max_entries{{map=\"{}\"}} {}",
            label(&m.name),
            m.max_entries
        );
    }

    header(
        &mut out,
        "weft_packets_total",
        "counter",
        "Packets the workload programs accepted or dropped, by interface, hook and reason.",
    );
    for c in &dp.packets {
        let iface = c
            .iface
            .clone()
            .unwrap_or_else(|| format!("if{}", c.ifindex));
        for (i, n) in c.packets.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let reason = REASONS.get(i).copied().unwrap_or("unknown");
            let verdict = if reason.starts_with("accept") {
                "accept"
            } else {
                "drop"
            };
            let _ = writeln!(
                out,
                "weft_packets_total{{iface=\"{}\",hook=\"{}\",verdict=\"{verdict}\",reason=\"{reason}\"}} {n}",
                label(&iface),
                crate::bpf::maps::hook_name(c.hook)
            );
        }
    }

    header(
        &mut out,
        "weft_rule_hits_total",
        "counter",
        "Packets each policy rule decided: policy judges a flow's first packet, and every packet of a flow it denies (the rest pass on conntrack).",
    );
    for (id, n) in &dp.rule_hits {
        let name = shared
            .rules
            .rules
            .get(id)
            .map(String::as_str)
            .unwrap_or("(not in the configuration in force)");
        let _ = writeln!(
            out,
            "weft_rule_hits_total{{rule_id=\"{id:#010x}\",rule=\"{}\"}} {n}",
            label(name)
        );
    }
    out.push_str(&process::render(dp.process.as_ref()));
    out
}

/// Serves `GET /metrics` and `GET /status` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, pins: Pins, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let (pins, shared) = (pins.clone(), shared.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(conn, &pins, &shared).await {
                tracing::debug!("metrics: {e}");
            }
        });
    }
}

async fn answer(mut conn: TcpStream, pins: &Pins, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // The request line and headers; a client that sends nothing for 5 s is dropped.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (code, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            // Read the maps outside the lock: the daemon must not wait for a scrape.
            let dp = Dataplane::read(pins);
            let body = {
                let sh = shared.lock().expect("metrics lock");
                render(&sh, &dp)
            };
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", "/status") => {
            let st = shared.lock().expect("metrics lock").status.clone();
            (
                "200 OK",
                "application/json",
                serde_json::to_string_pretty(&st).expect("status serializes"),
            )
        }
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_and_sane_histogram_buckets() {
        let mut sh = Shared::default();
        sh.durations.observe(0.02);
        sh.durations.observe(3.0);
        sh.status.reconciles.insert("files".into(), 2);
        sh.status.drift_repaired.insert("route".into(), 1);
        sh.rules
            .rules
            .insert(0x1234, "NetworkPolicy shop/web ingress rule 0".into());
        let dp = Dataplane {
            maps: vec![MapFill {
                name: "weft_ct4".into(),
                entries: 3,
                max_entries: 512_000,
            }],
            packets: vec![HookCounters {
                ifindex: 5,
                iface: Some("calia".into()),
                hook: crate::bpf::maps::HOOK_TO_WEP,
                packets: {
                    let mut v = vec![0; REASONS.len()];
                    v[crate::bpf::reasons::DROP_POLICY] = 7;
                    v
                },
            }],
            rule_hits: [(0x1234, 9)].into(),
            process: Some(ProcessStats::read().expect("/proc/self")),
        };
        let text = render(&sh, &dp);
        for line in [
            "weft_reconcile_duration_seconds_bucket{le=\"0.025\"} 1",
            "weft_reconcile_duration_seconds_bucket{le=\"5\"} 2",
            "weft_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2",
            "weft_reconcile_duration_seconds_count 2",
            "weft_reconciles_total{trigger=\"files\"} 2",
            "weft_drift_repairs_total{kind=\"route\"} 1",
            "weft_drift_repairs_total{kind=\"map-entry\"} 0",
            "weft_map_entries{map=\"weft_ct4\"} 3",
            "weft_map_max_entries{map=\"weft_ct4\"} 512000",
            "weft_packets_total{iface=\"calia\",hook=\"to-wep\",verdict=\"drop\",reason=\"drop-policy\"} 7",
            "weft_rule_hits_total{rule_id=\"0x00001234\",rule=\"NetworkPolicy shop/web ingress rule 0\"} 9",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        // Every sample belongs to a family declared before it (prometheus-client declares a
        // counter without its samples' _total, as OpenMetrics does).
        let mut declared = std::collections::BTreeSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or_default().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{l} has no TYPE line");
            }
        }
        // Each family is declared once, HELP before TYPE, and has samples.
        let mut helps = std::collections::BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let family = rest.split(' ').next().unwrap_or_default();
                *helps.entry(family).or_insert(0) += 1;
                assert!(
                    i > 0 && lines[i - 1].starts_with(&format!("# HELP {family} ")),
                    "{family} has no HELP line before its TYPE"
                );
            }
        }
        assert!(
            helps.values().all(|n| *n == 1),
            "families declared twice: {helps:?}"
        );
        assert!(
            !text.contains("# EOF"),
            "the exposition is 0.0.4 text, not OpenMetrics"
        );
    }

    /// The process and build families, each once, with values that make sense for this
    /// process.
    #[test]
    fn the_process_and_build_families_are_there_once() {
        let dp = Dataplane {
            process: Some(ProcessStats::read().expect("/proc/self")),
            ..Dataplane::default()
        };
        let text = render(&Shared::default(), &dp);
        let value = |name: &str| -> f64 {
            let samples: Vec<&str> = text
                .lines()
                .filter(|l| l.split(['{', ' ']).next() == Some(name))
                .collect();
            assert_eq!(samples.len(), 1, "{name}: {samples:?} in:\n{text}");
            samples[0].rsplit(' ').next().unwrap().parse().expect(name)
        };
        for (family, kind) in [
            ("process_cpu_seconds", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("process_threads", "gauge"),
            ("weft_build_info", "gauge"),
        ] {
            let declared = format!("# TYPE {family} {kind}");
            assert_eq!(
                text.lines().filter(|l| *l == declared).count(),
                1,
                "{declared:?} in:\n{text}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_open_fds") > 0.0);
        assert!(value("process_threads") >= 1.0);
        let build = format!(
            "weft_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "no {build:?} in:\n{text}");
        // Without /proc/self the build is still said.
        let text = render(&Shared::default(), &Dataplane::default());
        assert!(!text.contains("process_"), "{text}");
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
