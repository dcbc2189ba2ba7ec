//! The daemon's conntrack collector: a thread that sweeps the pinned conntrack map every
//! interval with the timeouts of the configuration in force (see weft::bpf::ctgc). It follows
//! the map through resizes (a migration pins a new map: the collector is loaded again) and
//! keeps out of the reconciler's way: a sweep is one system call, whatever the map's size.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bpf::ctgc::{Collector, Sweep};
use crate::bpf::Pins;

use super::metrics::Shared;
use super::status::{self, SweepRecord};

/// CPU time of the calling thread (user and system), as CLOCK_THREAD_CPUTIME_ID counts it.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Starts the collector thread. It sweeps only once a configuration is in force (the
/// reconciler sets `Shared::ct_timeouts`).
pub fn spawn(pins: Pins, every: Duration, shared: Arc<Mutex<Shared>>, state_dir: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("weft-ctgc".into())
        .spawn(move || {
            let mut collector: Option<Collector> = None;
            loop {
                std::thread::sleep(every);
                let Some(timeouts) = shared.lock().expect("status lock").ct_timeouts else {
                    continue;
                };
                if !collector.as_ref().is_some_and(|c| c.is_current(&pins)) {
                    collector = match Collector::load(&pins) {
                        Ok(c) => c,
                        Err(e) => {
                            let e = format!("loading: {e}");
                            let mut sh = shared.lock().expect("status lock");
                            if sh.status.conntrack_gc.failed(&e, status::now()) {
                                tracing::warn!(
                                    "conntrack collector: {}",
                                    e.lines().next().unwrap_or_default()
                                );
                            }
                            tracing::debug!("conntrack collector: {e}");
                            None
                        }
                    };
                }
                let Some(c) = &collector else { continue };
                let (wall, cpu) = (Instant::now(), thread_cpu());
                let result = c.sweep(&timeouts);
                let (wall, cpu) = (wall.elapsed(), thread_cpu().saturating_sub(cpu));
                record(&shared, result, wall, cpu, &state_dir);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("starting the conntrack collector: {e}; conntrack relies on its LRU alone");
    }
}

fn record(
    shared: &Mutex<Shared>,
    result: std::io::Result<Sweep>,
    wall: Duration,
    cpu: Duration,
    state_dir: &Path,
) {
    let mut sh = shared.lock().expect("status lock");
    let gc = &mut sh.status.conntrack_gc;
    match result {
        Ok(sweep) => {
            gc.sweeps += 1;
            for (reason, n) in &sweep.expired {
                *gc.deleted.entry((*reason).to_string()).or_default() += n;
            }
            if sweep.nat_fwd_deleted > 0 {
                *gc.deleted.entry("nat-pair".into()).or_default() += sweep.nat_fwd_deleted;
            }
            if sweep.deleted() > 0 {
                tracing::debug!(
                    scanned = sweep.scanned,
                    deleted = sweep.deleted(),
                    us = wall.as_micros() as u64,
                    "conntrack swept"
                );
            }
            gc.failing = None;
            gc.last = Some(SweepRecord {
                at: status::now(),
                scanned: sweep.scanned,
                deleted: sweep.deleted(),
                wall_us: wall.as_micros() as u64,
                cpu_us: cpu.as_micros() as u64,
            });
        }
        Err(e) => {
            let e = format!("sweeping: {e}");
            if gc.failed(&e, status::now()) {
                tracing::warn!("conntrack collector: {e}");
            } else {
                tracing::debug!("conntrack collector: {e}");
            }
        }
    }
    sh.status.updated_at = status::now();
    if let Err(e) = sh.status.write(state_dir) {
        tracing::warn!("writing {}: {e}", status::status_path(state_dir).display());
    }
}
