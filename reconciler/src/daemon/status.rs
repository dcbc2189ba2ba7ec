//! What the daemon has done, as `weft status` and the metrics endpoint read it. The daemon
//! rewrites `<state dir>/status.json` (default /run/weft) after every reconcile, atomically,
//! so a reader never sees half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bpf::stats::MapFill;
use crate::statedir::{self, StateDirError};

/// The default directory of the daemon's status file and of pending confirmations.
pub const DEFAULT_STATE_DIR: &str = "/run/weft";

pub fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One reconcile: why it ran and what came of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What woke it: start, files, links, resync (the first of these, when several did).
    pub trigger: String,
    /// observed: the live state was read and diffed (start, resync, interfaces, retries, and
    /// files when the last state is not trusted); incremental: the files' change was applied
    /// against the state last converged to.
    #[serde(default)]
    pub how: String,
    /// For an incremental reconcile of Services and EndpointSlices alone: how many services
    /// were worked out again on their own (0: the desired state was computed anew).
    #[serde(default)]
    pub services: usize,
    /// converged, differs (applied, but live still differs), failed, invalid (the files do
    /// not validate; the last good configuration was used).
    pub result: String,
    pub operations: usize,
    pub objects: usize,
    /// How many of the objects were drift repairs.
    pub repairs: usize,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub at: u64,
    pub message: String,
}

/// The configuration as last read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub valid: bool,
    /// Every problem, as `file:line:column: ...`, when it does not validate.
    pub problems: Vec<String>,
    /// When the configuration in force was read (seconds since the Unix epoch).
    pub in_force_since: Option<u64>,
    /// The commit the directory is at, when it is a git checkout: `0123456789ab (main)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// The commit the git checkout holding `dir` is at, as `0123456789ab (branch)`, read from
/// its files (git itself is not needed); None outside a checkout. Follows `dir` if it is a
/// link (a checkout swapped in whole, as git-sync does).
pub fn git_revision(dir: &Path) -> Option<String> {
    let mut at = dir.canonicalize().ok()?;
    let gitdir = loop {
        let dotgit = at.join(".git");
        if dotgit.is_dir() {
            break dotgit;
        }
        if dotgit.is_file() {
            // A worktree or submodule: "gitdir: <path>".
            let text = std::fs::read_to_string(&dotgit).ok()?;
            let p = PathBuf::from(text.trim().strip_prefix("gitdir: ")?);
            break if p.is_absolute() { p } else { at.join(p) };
        }
        if !at.pop() {
            return None;
        }
    };
    // Refs live in the worktree's directory or the repository's common one.
    let common = std::fs::read_to_string(gitdir.join("commondir"))
        .ok()
        .map(|c| gitdir.join(c.trim()));
    let head = std::fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let head = head.trim();
    let (sha, branch) = match head.strip_prefix("ref: ") {
        Some(r) => {
            let dirs = std::iter::once(&gitdir).chain(common.as_ref());
            let loose = dirs
                .clone()
                .find_map(|d| std::fs::read_to_string(d.join(r)).ok());
            let sha = loose.or_else(|| {
                dirs.filter_map(|d| std::fs::read_to_string(d.join("packed-refs")).ok())
                    .find_map(|packed| {
                        packed.lines().find_map(|l| {
                            let (sha, name) = l.split_once(' ')?;
                            (name == r).then(|| sha.to_string())
                        })
                    })
            })?;
            (sha, r.strip_prefix("refs/heads/").unwrap_or(r).to_string())
        }
        None => (head.to_string(), "detached".to_string()),
    };
    let sha = sha.trim();
    (sha.len() >= 12 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{} ({branch})", &sha[..12]))
}

/// One repair of drift.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    pub at: u64,
    pub kind: String,
    pub object: String,
    pub change: String,
}

/// How many repairs the status file keeps the details of.
pub const RECENT_REPAIRS: usize = 32;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub dir: String,
    pub node: String,
    pub started_at: u64,
    pub updated_at: u64,
    /// Reconciles by trigger.
    pub reconciles: BTreeMap<String, u64>,
    /// Reconciles that ran at least one operation.
    pub applies: u64,
    pub apply_errors: u64,
    pub last_reconcile: Option<Reconcile>,
    /// The last reconcile that ran operations.
    pub last_apply: Option<Reconcile>,
    pub last_error: Option<ErrorRecord>,
    pub config: ConfigStatus,
    /// Drift repairs by kind of object.
    pub drift_repaired: BTreeMap<String, u64>,
    pub recent_repairs: Vec<RepairRecord>,
    /// Fill levels of the pinned maps after the last reconcile.
    pub maps: Vec<MapFill>,
    /// The conntrack collector's work.
    #[serde(default)]
    pub conntrack_gc: CtGcStatus,
    /// What the kernel lacks of what weft uses, and what weft does about it.
    #[serde(default)]
    pub kernel: KernelStatus,
    /// What the configuration in force leaves undone and says so (a Service without a
    /// clusterIP, a node name no endpoint names...), as of the last reconcile.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The kernel as the daemon found it at start (weft::bpf::features).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStatus {
    pub release: String,
    /// One line per missing feature: its name and what weft does without it.
    pub missing: Vec<String>,
}

/// What the conntrack collector has done since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtGcStatus {
    pub sweeps: u64,
    pub errors: u64,
    /// Entries deleted, by the timeout that expired them (see weft::bpf::ctgc).
    pub deleted: BTreeMap<String, u64>,
    pub last: Option<SweepRecord>,
    /// Why the collector fails, while it does (cleared by a sweep that works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<Failing>,
}

/// A background part that keeps failing: since when, how many times in a row, and why (the
/// error's first line; the rest, a verifier's log say, goes to the debug log only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    pub since: u64,
    pub times: u64,
    pub reason: String,
}

/// After how many failures in a row a background part counts as failing for good: `weft
/// status` exits 1.
pub const FAILING_FOR_GOOD: u64 = 3;

impl CtGcStatus {
    /// Notes a failure: true when it is worth a line in the log (the first of a run, or a
    /// new reason); the same failure again is for the debug log.
    pub fn failed(&mut self, error: &str, now: u64) -> bool {
        self.errors += 1;
        let reason = error.lines().next().unwrap_or_default().to_string();
        match &mut self.failing {
            Some(f) if f.reason == reason => {
                f.times += 1;
                false
            }
            _ => {
                self.failing = Some(Failing {
                    since: now,
                    times: 1,
                    reason,
                });
                true
            }
        }
    }

    pub fn deleted_total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// One sweep of the conntrack map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub at: u64,
    pub scanned: u64,
    pub deleted: u64,
    pub wall_us: u64,
    /// CPU time the sweep took (the BPF program runs in the daemon's system call).
    pub cpu_us: u64,
}

impl Status {
    pub fn reconciles_total(&self) -> u64 {
        self.reconciles.values().sum()
    }

    pub fn repairs_total(&self) -> u64 {
        self.drift_repaired.values().sum()
    }

    /// Writes the status file atomically, readable by root alone (`statedir::write`).
    pub fn write(&self, state_dir: &Path) -> Result<(), StateDirError> {
        let json = serde_json::to_vec_pretty(self).expect("status serializes");
        statedir::write(state_dir, "status.json", &json)
    }

    pub fn read(state_dir: &Path) -> std::io::Result<Status> {
        let bytes = std::fs::read(status_path(state_dir))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Whether process `pid` exists (signal 0 checks without sending). A process of another user
/// exists too: kill refuses it (EPERM) rather than not finding it (ESRCH).
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `secs` since the Unix epoch as RFC 3339 in UTC, e.g. 2024-05-01T12:00:00Z.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_is_logged_once_per_reason_and_a_working_sweep_ends_it() {
        let mut gc = CtGcStatus::default();
        assert!(gc.failed("loading: the verifier refused it\nverifier log line", 10));
        assert!(!gc.failed("loading: the verifier refused it\nanother log", 20));
        let f = gc.failing.clone().expect("failing");
        assert_eq!(
            (f.since, f.times, f.reason.as_str()),
            (10, 2, "loading: the verifier refused it")
        );
        assert!(gc.failed("sweeping: EPERM", 30), "a new reason is said");
        assert_eq!(gc.errors, 3);
    }

    #[test]
    fn the_revision_of_a_git_checkout_is_read_from_its_files() {
        let dir = std::env::temp_dir().join(format!("weft-gitrev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("policies/a.yaml"), "{}\n").unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["-c", "user.name=weft", "-c", "user.email=weft@localhost"])
                .args(args)
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(git_revision(&dir), None, "not a checkout yet");
        git(&["init", "-q", "-b", "main"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "first"]);
        let sha = git(&["rev-parse", "HEAD"]);
        let want = Some(format!("{} (main)", &sha[..12]));
        // From the top, and from a directory below it (the daemon may watch a subdirectory).
        assert_eq!(git_revision(&dir), want);
        assert_eq!(git_revision(&dir.join("policies")), want);
        // Refs packed, as `git gc` leaves them.
        git(&["pack-refs", "--all"]);
        assert_eq!(git_revision(&dir), want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_status_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("weft-status-test-{}", std::process::id()));
        let mut s = Status {
            pid: 7,
            applies: 2,
            ..Default::default()
        };
        s.reconciles.insert("files".into(), 3);
        s.write(&dir).expect("write");
        assert_eq!(Status::read(&dir).expect("read"), s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
