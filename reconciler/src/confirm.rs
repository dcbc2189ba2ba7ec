//! `weft apply --confirm-within DURATION` and `weft confirm`: an apply that undoes itself
//! unless confirmed in time (netplan try's idea), so a policy that cuts the operator off
//! cannot keep them out.
//!
//! The waiting apply and `weft confirm` meet in the state directory (default /run/weft): the
//! apply writes `confirm.pending`; `weft confirm` renames it to `confirm.done`; at the
//! deadline the apply renames it to `confirm.expired` and rolls back. A rename either happens
//! or finds the file gone, so exactly one of the two wins, whatever the timing.
//!
//! The rollback restores what was observed live before the apply: `plan(previous, live)`.
//!
//! Only the user who runs the apply (root) may confirm: the state directory is theirs alone
//! (`statedir`), and `weft confirm` says so plainly to anyone else.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bpf::maps::{self, MapSizes};
use crate::daemon::status::alive;
use crate::kernel::Kernel;
use crate::observe;
use crate::run::{self, Host, Outcome, RunError};
use crate::state::HostState;
use crate::statedir::{self, StateDirError};

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("another apply (pid {pid}, {dir}) is waiting for confirmation; confirm it with `weft confirm` or let it roll back first")]
    Busy { pid: u32, dir: String },
    #[error("nothing is waiting for confirmation (no {path}): it was confirmed, rolled back, or never asked for")]
    NothingPending { path: PathBuf },
    #[error("only the user who runs `weft apply` (uid {owner}) may confirm, as {dir} is theirs; run `sudo weft confirm`")]
    NotOwner { dir: PathBuf, owner: u32 },
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ConfirmError + '_ {
    move |source| ConfirmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a pending confirmation file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInfo {
    pub pid: u32,
    /// The configuration directory applied.
    pub dir: String,
    /// When the rollback starts, in seconds since the Unix epoch.
    pub deadline: u64,
}

/// A confirmation this process waits for.
pub struct Pending {
    state_dir: PathBuf,
}

fn pending_path(state_dir: &Path) -> PathBuf {
    state_dir.join("confirm.pending")
}

fn done_path(state_dir: &Path) -> PathBuf {
    state_dir.join("confirm.done")
}

fn expired_path(state_dir: &Path) -> PathBuf {
    state_dir.join("confirm.expired")
}

fn read_info(path: &Path) -> io::Result<PendingInfo> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How a wait for confirmation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Confirmed,
    /// The deadline passed (or the wait was interrupted) first: roll back.
    Expired,
}

impl Pending {
    /// Announces that this process waits for confirmation until `info.deadline`. Fails while
    /// another live process waits; a file left by a dead one is replaced.
    pub fn begin(state_dir: &Path, info: &PendingInfo) -> Result<Pending, ConfirmError> {
        statedir::ensure(state_dir)?;
        let path = pending_path(state_dir);
        if let Ok(other) = read_info(&path) {
            if other.pid != info.pid && alive(other.pid) {
                return Err(ConfirmError::Busy {
                    pid: other.pid,
                    dir: other.dir,
                });
            }
        }
        for stale in [done_path(state_dir), expired_path(state_dir)] {
            let _ = std::fs::remove_file(stale);
        }
        let json = serde_json::to_vec(info).expect("pending info serializes");
        statedir::write(state_dir, "confirm.pending", &json)?;
        Ok(Pending {
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Whether `weft confirm` has answered.
    pub fn confirmed(&self) -> bool {
        done_path(&self.state_dir).exists()
    }

    /// Claims the pending confirmation for a rollback. Answers Confirmed instead when
    /// `weft confirm` got there first.
    pub fn expire(&self) -> Answer {
        match std::fs::rename(pending_path(&self.state_dir), expired_path(&self.state_dir)) {
            Ok(()) => Answer::Expired,
            Err(_) if self.confirmed() => Answer::Confirmed,
            // The file vanished some other way (removed by hand): nobody confirmed.
            Err(_) => Answer::Expired,
        }
    }

    /// Removes the files of this confirmation (as dropping it does).
    pub fn finish(self) {}
}

impl Drop for Pending {
    fn drop(&mut self) {
        for p in [
            pending_path(&self.state_dir),
            done_path(&self.state_dir),
            expired_path(&self.state_dir),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The confirmation another live process waits for, if any.
pub fn waiting(state_dir: &Path) -> Option<PendingInfo> {
    read_info(&pending_path(state_dir))
        .ok()
        .filter(|i| i.pid != std::process::id() && alive(i.pid))
}

/// `weft confirm`: answers the pending confirmation, if there is one.
pub fn confirm(state_dir: &Path) -> Result<PendingInfo, ConfirmError> {
    if let Some(Err(owner)) = statedir::owner_check(state_dir) {
        return Err(ConfirmError::NotOwner {
            dir: state_dir.to_path_buf(),
            owner,
        });
    }
    let path = pending_path(state_dir);
    let info = match read_info(&path) {
        Ok(i) => i,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ConfirmError::NothingPending { path })
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    match std::fs::rename(&path, done_path(state_dir)) {
        Ok(()) => Ok(info),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ConfirmError::NothingPending { path }),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The map sizes a state's maps have (what LoadPrograms must recreate them with).
pub fn sizes_of(s: &HostState) -> MapSizes {
    let d = MapSizes::default();
    let size = |name: &str, default: u32| {
        s.maps
            .get(name)
            .map(|m| m.def.max_entries)
            .unwrap_or(default)
    };
    MapSizes {
        conntrack: size(maps::CT4, d.conntrack),
        if_state: size(maps::IFACE, d.if_state),
        route: size(maps::RT4, d.route),
        nat_frontend: size(maps::NAT_FE4, d.nat_frontend),
        nat_backend: size(maps::NAT_BE4, d.nat_backend),
        nat_affinity: size(maps::NAT_AFF4, d.nat_affinity),
        maglev: size(maps::MAGLEV4, d.maglev),
        events: size(maps::FLOWS, d.events),
    }
}

/// Puts back `previous` (observed before an apply that produced `applied`): plans from what
/// is live now, observing the interfaces of both states.
pub async fn rollback(
    host: &mut Host,
    previous: &HostState,
    applied: &HostState,
) -> Result<Outcome, RunError> {
    host.refresh_facts().await?;
    let scope = crate::daemon::scope_of(previous, applied);
    let live = observe::observe(&host.pins, &host.nl, &host.facts, &scope).await?;
    let ops = crate::plan::plan(previous, &live, sizes_of(previous));
    tracing::info!("rolling back: {} operation(s)", ops.len());
    run::converge(host, previous, &ops, run::log_progress()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-confirm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn info() -> PendingInfo {
        PendingInfo {
            pid: std::process::id(),
            dir: "cfg".into(),
            deadline: 0,
        }
    }

    #[test]
    fn a_confirm_before_the_deadline_wins_and_one_after_finds_nothing() {
        let d = dir("win");
        let p = Pending::begin(&d, &info()).expect("begin");
        assert!(!p.confirmed());
        assert_eq!(confirm(&d).expect("confirm").dir, "cfg");
        assert!(p.confirmed());
        assert_eq!(p.expire(), Answer::Confirmed, "the rollback lost the race");
        p.finish();
        assert!(matches!(
            confirm(&d),
            Err(ConfirmError::NothingPending { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn after_expiry_a_confirm_is_too_late() {
        let d = dir("late");
        let p = Pending::begin(&d, &info()).expect("begin");
        assert_eq!(p.expire(), Answer::Expired);
        assert!(matches!(
            confirm(&d),
            Err(ConfirmError::NothingPending { .. })
        ));
        p.finish();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_live_waiter_blocks_another_and_a_dead_one_does_not() {
        let d = dir("busy");
        // pid 1 is always alive.
        let other = PendingInfo { pid: 1, ..info() };
        let _p = Pending::begin(&d, &other).expect("begin");
        assert!(matches!(
            Pending::begin(&d, &info()),
            Err(ConfirmError::Busy { pid: 1, .. })
        ));
        let dead = PendingInfo {
            pid: u32::MAX - 1,
            ..info()
        };
        std::fs::write(pending_path(&d), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(Pending::begin(&d, &info()).is_ok(), "stale file replaced");
        let _ = std::fs::remove_dir_all(&d);
    }
}
