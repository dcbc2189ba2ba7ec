//! Where a reconcile's time goes: `let _p = timing::phase("observe");` logs the phase's wall
//! time and the process's resident set at debug level when it ends (`WEFT_LOG=debug`). Cheap
//! enough to leave in: an Instant and, below debug, nothing else.

use std::time::Instant;

/// A phase being timed; it logs when dropped.
pub struct Phase {
    name: &'static str,
    started: Instant,
}

pub fn phase(name: &'static str) -> Phase {
    Phase {
        name,
        started: Instant::now(),
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                "phase {}: {:.1} ms (RSS {}, peak {})",
                self.name,
                self.started.elapsed().as_secs_f64() * 1e3,
                status("VmRSS:"),
                status("VmHWM:")
            );
        }
    }
}

/// A line of /proc/self/status, such as the resident set's size.
fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        })
        .unwrap_or_default()
}
