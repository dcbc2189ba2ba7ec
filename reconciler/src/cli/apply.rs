//! `weft apply DIR`: converge, then observe again; exit 0 only if the live state is the desired
//! one, 1 if the files are invalid (nothing is touched), 2 otherwise.
//!
//! With `--confirm-within DURATION` it then waits for `weft confirm`, and without it puts back
//! the state observed before the apply (exit 3). The wait survives the operator's terminal
//! going away (SIGHUP is ignored); Ctrl-C or SIGTERM rolls back at once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use weft::confirm::{self, Answer, Pending, PendingInfo};
use weft::daemon::status;
use weft::run::{self, RunError};

use super::{report, say, HostArgs, LoadArgs};

/// How a confirm-within apply waits.
pub struct Confirm {
    pub within: Duration,
    pub state_dir: PathBuf,
}

/// Exit code of an apply that was not confirmed and was rolled back.
const ROLLED_BACK: u8 = 3;

pub async fn run(
    dir: &Path,
    load: LoadArgs,
    host: &HostArgs,
    confirm: Option<Confirm>,
) -> ExitCode {
    let label = dir.display().to_string();
    // Held until this process ends: through a confirm-within wait and its rollback too.
    let _writer = match super::writer(host) {
        Ok(w) => w,
        Err(code) => return code,
    };
    // Registered before anything changes: from here on a hangup does not stop this process.
    let signals = match &confirm {
        Some(_) => match Signals::new() {
            Ok(s) => Some(s),
            Err(e) => {
                say(format_args!("weft: installing signal handlers: {e}"));
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if let Some(other) = confirm
        .as_ref()
        .and_then(|c| confirm::waiting(&c.state_dir))
    {
        say(format_args!(
            "weft: another apply (pid {}, {}) is waiting for confirmation; confirm it with `weft confirm` or let it roll back first",
            other.pid, other.dir
        ));
        return ExitCode::from(2);
    }
    let r = async {
        let cfg = run::load(dir, load.options())?;
        let mut h = host.open().await?;
        h.say_kernel();
        // What is live now: the state a rollback returns to.
        let mut cache = weft::policy::Cache::default();
        let before = run::plan_cached(&h, &cfg, &mut cache).await?;
        for w in &before.desired.warnings {
            tracing::warn!("{w}");
        }
        if before.ops.is_empty() {
            say(format_args!("no changes: the live state matches {label}"));
            std::mem::forget(cfg);
            return Ok((true, None));
        }
        // The state a rollback returns to (should the apply fail partway, or go unconfirmed),
        // and where this apply aims (a rollback observes its interfaces too).
        let previous = before.observed.clone();
        let aimed = before.desired.state.scope();
        let result =
            run::apply_planned(&mut h, &cfg, Some(before), &mut cache, run::log_progress()).await;
        // The process ends soon: freeing a large configuration piece by piece takes longer
        // than the kernel takes to take back the whole.
        std::mem::forget(cache);
        std::mem::forget(cfg);
        let (planned, outcome) = match result {
            Ok(x) => x,
            // Refused before anything ran: there is nothing to put back.
            Err(e @ (RunError::Refused(_) | RunError::Takeover(_))) => return Err(e),
            Err(e) => {
                // Nothing half-applied: what was live before comes back.
                say(format_args!("weft: {e}; rolling back to the state before this apply"));
                match confirm::rollback(&mut h, &previous, &aimed).await {
                    Ok(o) if o.converged(&previous) => {
                        say(format_args!("rolled back: the live state is as it was"))
                    }
                    Ok(_) => say(format_args!(
                        "weft: rolled back, but the live state still differs from before"
                    )),
                    Err(r) => say(format_args!("weft: the rollback failed too: {r}")),
                }
                return Err(e);
            }
        };
        for iface in &outcome.vanished {
            say(format_args!(
                "weft: warning: interface {iface} went away during the apply; its endpoint is left out until it is back"
            ));
        }
        let waiting = confirm
            .is_some()
            .then(|| (h, previous, planned.desired.state.scope()));
        let converged = outcome.converged(&planned.desired.state);
        if !converged {
            let names = planned.desired.names();
            say(format_args!(
                "{}",
                weft::plan::render_diff(&outcome.after, &planned.desired.state, &label, &names)
            ));
        }
        Ok::<_, RunError>((converged, waiting))
    }
    .await;
    let (converged, waiting) = match r {
        Ok(x) => x,
        Err(e) => return report(&e),
    };
    if converged {
        say(format_args!("applied: the live state matches {label}"));
    } else {
        say(format_args!(
            "weft: applied, but the live state still differs from {label} (diff above)"
        ));
    }
    let (Some((mut h, previous, applied)), Some(c), Some(mut signals)) =
        (waiting, confirm, signals)
    else {
        return if converged {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    };
    let info = PendingInfo {
        pid: std::process::id(),
        dir: label.clone(),
        deadline: status::now() + c.within.as_secs(),
    };
    let pending = match Pending::begin(&c.state_dir, &info) {
        Ok(p) => p,
        Err(e) => {
            say(format_args!("weft: {e}; rolling back"));
            let _ = confirm::rollback(&mut h, &previous, &applied).await;
            return ExitCode::from(2);
        }
    };
    say(format_args!(
        "run `weft confirm` within {}s to keep this; otherwise the previous state comes back",
        c.within.as_secs_f64()
    ));
    match wait(&pending, c.within, &mut signals).await {
        Answer::Confirmed => {
            pending.finish();
            say(format_args!("confirmed: keeping {label}"));
            if converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Answer::Expired => {
            say(format_args!("not confirmed: rolling back"));
            let r = confirm::rollback(&mut h, &previous, &applied).await;
            pending.finish();
            match r {
                Ok(o) if o.converged(&previous) => {
                    say(format_args!(
                        "rolled back: the previous state is live again"
                    ));
                    ExitCode::from(ROLLED_BACK)
                }
                Ok(o) => {
                    say(format_args!(
                        "weft: rolled back, but the live state differs from the previous one:\n{}",
                        weft::plan::render_diff(
                            &o.after,
                            &previous,
                            "previous",
                            &Default::default()
                        )
                    ));
                    ExitCode::from(2)
                }
                Err(e) => {
                    say(format_args!("weft: rolling back: {e}"));
                    ExitCode::from(2)
                }
            }
        }
    }
}

struct Signals {
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }
}

/// Waits for `weft confirm` until `within` has passed; Ctrl-C or SIGTERM ends the wait early
/// (as a refusal), SIGHUP is ignored.
async fn wait(pending: &Pending, within: Duration, s: &mut Signals) -> Answer {
    let deadline = tokio::time::Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if pending.confirmed() {
                    return Answer::Confirmed;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return pending.expire(),
            _ = s.hup.recv() => {}
            _ = s.int.recv() => return pending.expire(),
            _ = s.term.recv() => return pending.expire(),
        }
    }
}
