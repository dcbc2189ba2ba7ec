//! The daemon's own process and build, as every Prometheus client reports them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ..., and `weft_build_info`):
//! read from `/proc/self` at each scrape (three small files and the descriptor directory), and
//! encoded by `prometheus-client`, the Prometheus project's Rust client, so that names, types
//! and number formats are the ones dashboards and alerts written for other daemons expect.

use std::io;
use std::path::Path;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// What `/proc/self` says of this process at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open descriptors (`ulimit -n`); u64::MAX when unlimited.
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub threads: u64,
}

impl ProcessStats {
    /// Reads this process's figures.
    pub fn read() -> io::Result<ProcessStats> {
        let proc = Path::new("/proc");
        let me = proc.join("self");
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let open_fds = std::fs::read_dir(me.join("fd"))?.count() as u64;
        ProcessStats::parse(
            &std::fs::read_to_string(me.join("stat"))?,
            &std::fs::read_to_string(me.join("limits"))?,
            &std::fs::read_to_string(proc.join("stat"))?,
            Clock {
                ticks_per_second: u64::try_from(ticks).unwrap_or(100).max(1),
                page_bytes: u64::try_from(page).unwrap_or(4096),
            },
            // The descriptor read_dir held open while counting is not one of ours after.
            open_fds.saturating_sub(1),
        )
    }

    /// The figures from the text of `/proc/self/stat`, `/proc/self/limits` and `/proc/stat`
    /// (for the boot time), and the count of `/proc/self/fd`.
    fn parse(
        stat: &str,
        limits: &str,
        system_stat: &str,
        clock: Clock,
        open_fds: u64,
    ) -> io::Result<ProcessStats> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        // The command name (field 2) is in parentheses and may hold spaces and parentheses:
        // the fields counted here start after its last ')', with field 3 (state) first.
        let rest = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| bad("/proc/self/stat has no command name"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field n of proc(5) is fields[n - 3].
        let field = |n: usize| -> io::Result<u64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(&format!("/proc/self/stat has no field {n}")))
        };
        let (utime, stime) = (field(14)?, field(15)?);
        let boot = system_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("/proc/stat has no btime"))?;
        let ticks = clock.ticks_per_second as f64;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next())
            .map(|soft| soft.parse().unwrap_or(u64::MAX))
            .ok_or_else(|| bad("/proc/self/limits has no Max open files"))?;
        Ok(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: field(24)? * clock.page_bytes,
            virtual_bytes: field(23)?,
            open_fds,
            max_fds,
            start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
            threads: field(20)?,
        })
    }
}

/// The kernel's units in `/proc`: clock ticks (`getconf CLK_TCK`) and the page size.
#[derive(Debug, Clone, Copy)]
struct Clock {
    ticks_per_second: u64,
    page_bytes: u64,
}

/// The process and build families in the text exposition, without OpenMetrics' closing
/// `# EOF` (the daemon's own families follow). A process that cannot read `/proc/self` still
/// reports its build.
pub fn render(stats: Option<&ProcessStats>) -> String {
    let mut registry = Registry::default();
    if let Some(p) = stats {
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(p.cpu_seconds),
        );
        // Whole numbers print as such; the encoder ends each help with a full stop.
        let whole = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let gauges: [(&str, &str, i64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                whole(p.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                whole(p.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                whole(p.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                whole(p.max_fds),
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                whole(p.threads),
            ),
        ];
        for (name, help, value) in gauges {
            registry.register(name, help, ConstGauge::new(value));
        }
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            ConstGauge::new(p.start_time_seconds),
        );
    }
    let build = Family::<Vec<(String, String)>, Gauge>::default();
    build
        .get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
        .set(1);
    registry.register(
        "weft_build_info",
        "The weft that is running: its version, as a label; the value is always 1",
        build,
    );
    let mut out = String::new();
    encode_registry(&mut out, &registry).expect("encoding into a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_sane() {
        let p = ProcessStats::read().expect("/proc/self");
        assert!(p.resident_bytes > 0, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds > 0, "{p:?}");
        assert!(p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.threads >= 1, "{p:?}");
        assert!(p.cpu_seconds >= 0.0, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the past, and this year rather than at the epoch.
        assert!(p.start_time_seconds <= now + 1.0, "{p:?}");
        assert!(p.start_time_seconds > now - 86_400.0 * 365.0, "{p:?}");
        // Burning CPU shows.
        let before = p.cpu_seconds;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(ProcessStats::read().unwrap().cpu_seconds > before);
    }

    #[test]
    fn proc_texts_parse_field_by_field() {
        // A command name with spaces and a parenthesis, as a thread may name itself.
        let stat = "4242 (weft (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            1024                 524288               files\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let clock = Clock {
            ticks_per_second: 100,
            page_bytes: 4096,
        };
        let p = ProcessStats::parse(stat, limits, system, clock, 9).unwrap();
        assert_eq!(
            p,
            ProcessStats {
                cpu_seconds: 3.0,
                resident_bytes: 2560 * 4096,
                virtual_bytes: 104_857_600,
                open_fds: 9,
                max_fds: 1024,
                start_time_seconds: p.start_time_seconds,
                threads: 7,
            }
        );
        assert!(
            (p.start_time_seconds - 1_700_000_123.45).abs() < 1e-3,
            "{p:?}"
        );
        let unlimited = limits.replace("1024                 524288", "unlimited  unlimited");
        assert_eq!(
            ProcessStats::parse(stat, &unlimited, system, clock, 9)
                .unwrap()
                .max_fds,
            u64::MAX
        );
        assert!(ProcessStats::parse("4242 weft", limits, system, clock, 9).is_err());
        assert!(ProcessStats::parse(stat, limits, "cpu 1\n", clock, 9).is_err());
    }
}
