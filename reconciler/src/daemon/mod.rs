//! `weft run DIR`: the daemon. It converges once at start, then again whenever something
//! wakes it (a change under DIR, an interface appearing or going, the resync timer, SIGHUP):
//! read the files, gather the host's facts, compute the desired state, observe, plan, apply.
//! One shortcut: when only files changed and the state it last converged to is trusted (it
//! observed it live, and the host's facts are the same), the change is applied as the
//! difference against that state without observing (`incremental`), a changed service worked
//! out alone. The resync timer and every other wake observe, so drift is still found.
//!
//! Files that do not validate are reported (file:line:column) and the last good configuration
//! stays in force, both in the kernel and for drift repair. Objects that drifted from what weft
//! made are repaired by the same plan, and each repair is logged and counted (see `drift`).
//! Stopping the daemon (SIGTERM, SIGINT, or kill -9) leaves the dataplane as it is: pinned
//! maps, programs and links outlive it, and the next start adopts them.

pub mod ctgc;
pub mod drift;
pub mod metrics;
pub mod process;
pub mod readiness;
pub mod status;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;
use weft_model::Config;

use crate::desired::Computed;
use crate::incremental;
use crate::kernel::Kernel;
use crate::run::{Host, RunError};
use crate::state::HostState;
use metrics::Shared;
use status::{ConfigStatus, ErrorRecord, Reconcile, RepairRecord};
use watch::Trigger;

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    /// How the directory's files are read (links out of it followed or not).
    pub read: weft_model::ReadOptions,
    /// Where status.json goes.
    pub state_dir: PathBuf,
    /// How often to look for drift when nothing else wakes the daemon.
    pub resync: Duration,
    /// How long the files must be quiet before a change is acted on.
    pub debounce: Duration,
    /// Where to serve /metrics and /status, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How often the conntrack collector sweeps (Calico: 10 s); None: never.
    pub ct_gc: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("watching {dir}: {source}")]
    Watch { dir: PathBuf, source: notify::Error },
    #[error("listening for interface changes: {0}")]
    Links(std::io::Error),
    #[error("metrics: listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("installing a signal handler: {0}")]
    Signal(std::io::Error),
    #[error("the state directory: {0}")]
    StateDir(#[from] crate::statedir::StateDirError),
}

/// The longest a burst of file changes can hold a reconcile back.
const MAX_BATCH: Duration = Duration::from_secs(5);

/// The first retry after a failed reconcile; doubled at each failure up to the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What the loop does after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Wait for the next wake.
    Await,
    /// Reconcile again after this long, whatever else wakes the loop meanwhile.
    Requeue(Duration),
}

/// The error policy: after a failed reconcile, try again after a delay that doubles with each
/// failure in a row, up to the resync period; a success starts over. (Level-triggered: the
/// retry reconciles everything, not the failed part.)
#[derive(Clone, Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(resync: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY,
            max: resync.max(FIRST_RETRY),
        }
    }

    fn after(&mut self, ok: bool) -> Action {
        if ok {
            self.next = FIRST_RETRY;
            return Action::Await;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        Action::Requeue(wait)
    }
}

/// The daemon's memory between reconciles.
struct Daemon {
    host: Host,
    opts: Options,
    shared: Arc<Mutex<Shared>>,
    /// The files, parsed (only changed ones again), the policy compiler's memory, and the
    /// state last converged to while it is trusted.
    files: incremental::Reconciler,
    /// The files the watcher saw change since the last reconcile.
    changed: Arc<Mutex<watch::Changed>>,
    /// The configuration last read that validated and compiled, and since when it has been
    /// in force (its first read).
    last_good: Option<LastGood>,
    /// The state weft last converged to (what drift is measured against).
    last_made: Made,
    /// The rules' names are to be made again from the state last applied.
    names_stale: bool,
    /// What was last said about the files, so an unchanged problem is not repeated at every
    /// resync.
    last_said: String,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(host: Host, opts: Options) -> Result<(), DaemonError> {
    // Refused at start rather than warned about at every reconcile: a directory of another
    // user's is one where they could write in root's place.
    crate::statedir::ensure(&opts.state_dir)?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    {
        let mut sh = shared.lock().expect("status lock");
        sh.status.pid = std::process::id();
        sh.status.dir = opts.dir.display().to_string();
        sh.status.node = host.facts.node.clone();
        sh.status.started_at = status::now();
        sh.status.kernel = status::KernelStatus {
            release: host.kernel.release.clone(),
            missing: host.kernel.missing().map(|f| f.describe()).collect(),
        };
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut files =
        watch::FileWatch::new(&opts.dir, tx.clone()).map_err(|source| DaemonError::Watch {
            dir: opts.dir.clone(),
            source,
        })?;
    let links = tx.clone();
    crate::netlink::monitor::watch_links(move || {
        let _ = links.send(Trigger::Links);
    })
    .map_err(DaemonError::Links)?;
    spawn_resync(tx.clone(), opts.resync);
    let collector_runs = host.kernel.has(crate::bpf::features::SYSCALL_PROGRAMS);
    if let (Some(every), true) = (opts.ct_gc, collector_runs) {
        ctgc::spawn(
            host.pins.clone(),
            every,
            shared.clone(),
            opts.state_dir.clone(),
        );
    }
    if let Some(addr) = opts.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        tracing::info!("serving /metrics and /status on http://{addr}");
        tokio::spawn(metrics::serve(listener, host.pins.clone(), shared.clone()));
    }
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    tracing::info!(
        dir = %opts.dir.display(),
        node = %host.facts.node,
        resync = ?opts.resync,
        "weft daemon starting"
    );
    let mut r = Daemon {
        host,
        shared,
        files: incremental::Reconciler::open(&opts.dir, opts.read),
        changed: files.changed(),
        last_good: None,
        last_made: Made::Nothing,
        names_stale: false,
        last_said: String::new(),
        opts,
    };
    let _ = tx.send(Trigger::Start);
    let mut backoff = Backoff::new(r.opts.resync);
    let mut ready = false;
    loop {
        tokio::select! {
            batch = watch::next_batch(&mut rx, r.opts.debounce, MAX_BATCH) => {
                let Some(batch) = batch else { break };
                files.rewatch();
                let ok = r.reconcile(batch[0]).await;
                if !ready {
                    // Type=notify: started once the first reconcile is done, whatever it
                    // found (a failed one is retried, and the status says why).
                    ready = true;
                    readiness::ready(if ok { "converged" } else { "first reconcile failed; retrying (weft status says why)" });
                }
                if let Action::Requeue(wait) = backoff.after(ok) {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = tx.send(Trigger::Retry);
                    });
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reconciling now");
                let _ = tx.send(Trigger::Resync);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("weft daemon stopping; the dataplane stays as it is");
    Ok(())
}

fn spawn_resync(tx: UnboundedSender<Trigger>, every: Duration) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            if tx.send(Trigger::Resync).is_err() {
                return;
            }
        }
    });
}

impl Daemon {
    /// One reconcile; false when it failed (and should be retried).
    async fn reconcile(&mut self, trigger: Trigger) -> bool {
        let started = Instant::now();
        let mut rec = Reconcile {
            at: status::now(),
            trigger: trigger.as_str().to_string(),
            ..Default::default()
        };
        let result = self.converge(trigger, &mut rec).await;
        rec.duration_ms = started.elapsed().as_millis() as u64;
        let ok = result.is_ok();
        // After a converge, the maps weft sets whole hold what it made; the rest (and
        // everything after a failure) are counted.
        let made = self.made().filter(|_| ok && rec.result == "converged");
        let known = |name: &str| {
            let m = made?.maps.get(name)?;
            m.entries.as_ref().map(|e| e.len() as u64)
        };
        let maps = crate::bpf::stats::map_fill_knowing(&self.host.pins, known).unwrap_or_default();
        let mut sh = self.shared.lock().expect("status lock");
        sh.durations.observe(started.elapsed().as_secs_f64());
        let st = &mut sh.status;
        *st.reconciles.entry(rec.trigger.clone()).or_default() += 1;
        match result {
            Ok(()) => {}
            Err(e) => {
                tracing::error!("reconcile failed (retrying): {e}");
                rec.result = "failed".into();
                st.apply_errors += 1;
                st.last_error = Some(ErrorRecord {
                    at: rec.at,
                    message: e.to_string(),
                });
            }
        }
        if rec.operations > 0 {
            st.applies += 1;
            st.last_apply = Some(rec.clone());
        }
        tracing::debug!(
            trigger = trigger.as_str(),
            result = %rec.result,
            operations = rec.operations,
            ms = rec.duration_ms,
            "reconciled"
        );
        st.last_reconcile = Some(rec);
        st.maps = maps;
        st.updated_at = status::now();
        if let Err(e) = st.write(&self.opts.state_dir) {
            tracing::warn!(
                "writing {}: {e}",
                status::status_path(&self.opts.state_dir).display()
            );
        }
        drop(sh);
        if std::mem::take(&mut self.names_stale) {
            if let Some(c) = self.files.applied() {
                let names = c.desired.names();
                self.shared.lock().expect("status lock").rules = names;
            }
        }
        // What this reconcile replaced is freed now that its work is done and said.
        incremental::empty_trash();
        ok
    }

    /// Takes the files as read (`changed`: some text changed since the last reconcile),
    /// keeping the last good configuration when they do not validate, and computes what it
    /// asks of this host. The second value is true
    /// when that is the files' configuration (not the last good one kept in their place).
    fn desired(&mut self, rec: &mut Reconcile, changed: bool) -> Option<(Computed, bool)> {
        let read = match self.files.documents().config() {
            Ok(cfg) => {
                let cfg = cfg.clone();
                self.files
                    .compute(&cfg, &self.host.facts)
                    .map_err(|e| vec![e.to_string()])
            }
            Err(d) => Err(d.0.iter().map(|p| p.to_string()).collect()),
        };
        let problem = match read {
            Ok(c) => {
                let since = match &self.last_good {
                    Some(g) if !changed => g.since(),
                    _ => status::now(),
                };
                self.files_good(since);
                self.shared.lock().expect("status lock").ct_timeouts =
                    Some(c.desired.settings.ct_timeouts);
                self.set_config(true, Vec::new());
                if !self.last_said.is_empty() {
                    tracing::info!("the configuration validates again");
                    self.last_said.clear();
                }
                return Some((c, true));
            }
            Err(problem) => problem,
        };
        rec.result = "invalid".into();
        let said = problem.join("\n");
        if said != self.last_said {
            tracing::error!(
                "{}: {} problem(s); {}:\n{said}",
                self.opts.dir.display(),
                problem.len(),
                if self.last_good.is_some() {
                    "the last good configuration stays in force"
                } else {
                    "nothing is applied until the files validate"
                }
            );
            self.last_said = said;
        }
        self.keep_last_good();
        self.set_config(false, problem);
        let cfg = self.last_good_config()?;
        // Facts may have changed since; the last good files are recompiled against them.
        match self.files.compute(&cfg, &self.host.facts) {
            Ok(c) => Some((c, false)),
            Err(e) => {
                tracing::error!("the last good configuration no longer compiles: {e}");
                None
            }
        }
    }

    /// The files' configuration as it is now is the last good one, in force since `since`.
    fn files_good(&mut self, since: u64) {
        if let Some(LastGood::Kept { cfg, .. }) = self.last_good.replace(LastGood::Files { since })
        {
            incremental::drop_later(cfg);
        }
        if let Some(cfg) = self.files.forget_previous() {
            incremental::drop_later(cfg);
        }
    }

    /// The files moved on to a configuration that does not validate or compile (or was not
    /// applied): the last good one, if it was theirs, is kept from before their change (or is
    /// theirs still, where they did not change: the host's facts did).
    fn keep_last_good(&mut self) {
        if let Some(LastGood::Files { since }) = self.last_good {
            self.last_good = self
                .files
                .previous_config()
                .or_else(|| self.files.documents().config().ok().cloned())
                .map(|cfg| LastGood::Kept { cfg, since });
            if let Some(cfg) = self.files.forget_previous() {
                incremental::drop_later(cfg);
            }
        }
    }

    /// The last good configuration.
    fn last_good_config(&self) -> Option<Arc<Config>> {
        match self.last_good.as_ref()? {
            LastGood::Files { .. } => self.files.documents().config().ok().cloned(),
            LastGood::Kept { cfg, .. } => Some(cfg.clone()),
        }
    }

    /// The state weft last converged to, if it knows it.
    fn made(&self) -> Option<&HostState> {
        match &self.last_made {
            Made::Nothing => None,
            Made::Own(s) => Some(s),
            Made::Trusted => self.files.applied().map(|c| &c.desired.state),
        }
    }

    /// The warnings of the configuration in force, for the status and the metrics; each new
    /// one is logged once.
    fn set_warnings(&self, warnings: &[crate::warning::Warning]) {
        let now: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        let mut sh = self.shared.lock().expect("status lock");
        for w in now.iter().filter(|w| !sh.status.warnings.contains(w)) {
            tracing::warn!("{w}");
        }
        sh.status.warnings = now;
    }

    fn set_config(&self, valid: bool, problems: Vec<String>) {
        let mut sh = self.shared.lock().expect("status lock");
        sh.status.config = ConfigStatus {
            valid,
            problems,
            in_force_since: self.last_good.as_ref().map(LastGood::since),
            revision: status::git_revision(&self.opts.dir),
        };
    }

    async fn converge(&mut self, trigger: Trigger, rec: &mut Reconcile) -> Result<(), RunError> {
        self.host.refresh_facts().await?;
        // Only the files whose text changed are parsed again; on a file wake, only the files
        // the events named are read (unless they could not say).
        let named = self.changed.lock().expect("watch lock").take();
        let changed = match named {
            Some(paths) if trigger == Trigger::Files => self.files.files_changed(&paths),
            _ => self.files.rescan(),
        };
        if trigger == Trigger::Files
            && self.files.trusted(&self.host.facts)
            && self.files.documents().config().is_ok()
            && self.apply_changes(rec).await?
        {
            return Ok(());
        }
        rec.how = "observed".into();
        let Some((c, current)) = self.desired(rec, changed) else {
            self.files.forget();
            return Ok(());
        };
        let Some(cfg) = self.last_good_config() else {
            return Ok(());
        };
        let cfg = &*cfg;
        for w in &c.desired.warnings {
            tracing::debug!("{w}");
        }
        self.set_warnings(&c.desired.warnings);
        let names = c.desired.names();
        // The one converge loop; drift is judged on the live state as first observed.
        let mut drifted = Vec::new();
        let last_made = match std::mem::replace(&mut self.last_made, Made::Nothing) {
            Made::Nothing => None,
            Made::Own(s) => Some(*s),
            Made::Trusted => self.files.take_applied().map(|c| c.desired.state),
        };
        let step = self
            .files
            .sync_to(&mut self.host, cfg, c, current, |planned| {
                drifted = drift::find(
                    &planned.desired.state,
                    &planned.observed,
                    last_made.as_ref(),
                );
                for dr in &drifted {
                    tracing::warn!(
                        kind = dr.kind.as_str(),
                        "repairing drift: {} {} is {}",
                        dr.kind.as_str(),
                        dr.object,
                        dr.change.as_str()
                    );
                }
            })
            .await;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                self.last_made = last_made.map_or(Made::Nothing, |s| Made::Own(Box::new(s)));
                return Err(e);
            }
        };
        let synced = step.sync.expect("a full sync says what it made");
        rec.operations = step.ops.len() + step.created;
        rec.objects = step.ops.iter().map(crate::apply::objects).sum();
        rec.repairs = drifted.len();
        self.shared.lock().expect("status lock").rules = names;
        if rec.result.is_empty() {
            rec.result = "converged".into();
        }
        if rec.operations == 0 {
            if last_made.is_none() {
                tracing::info!(
                    "the live state already matches {}: adopted as it is",
                    self.opts.dir.display()
                );
            }
            self.last_made = Made::Own(Box::new(synced.made));
            return Ok(());
        }
        tracing::info!(
            "applied {} operation(s) on {} object(s){}",
            rec.operations,
            rec.objects,
            if drifted.is_empty() {
                String::new()
            } else {
                format!(", repairing {} drifted", drifted.len())
            }
        );
        {
            let mut sh = self.shared.lock().expect("status lock");
            let st = &mut sh.status;
            for dr in &drifted {
                *st.drift_repaired
                    .entry(dr.kind.as_str().to_string())
                    .or_default() += 1;
                st.recent_repairs.push(RepairRecord {
                    at: rec.at,
                    kind: dr.kind.as_str().into(),
                    object: dr.object.clone(),
                    change: dr.change.as_str().into(),
                });
            }
            let n = st.recent_repairs.len();
            if n > status::RECENT_REPAIRS {
                st.recent_repairs.drain(..n - status::RECENT_REPAIRS);
            }
        }
        if step.converged {
            tracing::info!(
                "converged: the live state matches {}",
                self.opts.dir.display()
            );
        } else {
            let rules = self.shared.lock().expect("status lock").rules.clone();
            let diff = crate::plan::render_diff(
                &synced.after,
                &synced.made,
                &self.opts.dir.display().to_string(),
                &rules,
            );
            tracing::warn!("applied, but the live state still differs:\n{diff}");
            if rec.result == "converged" {
                rec.result = "differs".into();
            }
        }
        self.last_made = Made::Own(Box::new(synced.made));
        Ok(())
    }

    /// Files changed and the state last converged to is trusted: the difference is applied
    /// against it, without observing (`incremental::Reconciler::apply_changes`).
    async fn apply_changes(&mut self, rec: &mut Reconcile) -> Result<bool, RunError> {
        let step = match self.files.try_apply_changes(&mut self.host).await {
            Ok(Some(step)) => step,
            // The change needs a full sync: the caller's, which counts drift.
            Ok(None) => return Ok(false),
            Err(e) => {
                // Whatever was applied of it is not known: the next wake observes.
                self.files.forget();
                self.keep_last_good();
                return Err(e);
            }
        };
        rec.how = "incremental".into();
        if let incremental::How::Services(n) = step.how {
            rec.services = n;
        }
        rec.operations = step.ops.len();
        rec.objects = step.ops.iter().map(crate::apply::objects).sum();
        rec.result = if step.converged {
            "converged".into()
        } else {
            "differs".into()
        };
        if step.how != incremental::How::Nothing {
            self.files_good(status::now());
        }
        self.set_config(true, Vec::new());
        if !self.last_said.is_empty() {
            tracing::info!("the configuration validates again");
            self.last_said.clear();
        }
        if let Some(c) = self.files.applied() {
            self.set_warnings(&c.desired.warnings);
            let mut sh = self.shared.lock().expect("status lock");
            sh.ct_timeouts = Some(c.desired.settings.ct_timeouts);
            self.last_made = Made::Trusted;
            // The rules' names (for metrics and messages) are made once the status is out.
            self.names_stale = true;
        }
        if !step.ops.is_empty() {
            tracing::info!(
                how = ?step.how,
                "applied {} operation(s) on {} object(s) against the state last converged to",
                rec.operations,
                rec.objects
            );
        }
        Ok(true)
    }
}

/// The last good configuration.
enum LastGood {
    /// The files' own (`Documents::config`), not held here as well: a second holder would
    /// make each change the documents patch a copy of the whole configuration.
    Files { since: u64 },
    /// Kept from before the files moved on to one that does not validate or compile.
    Kept { cfg: Arc<Config>, since: u64 },
}

impl LastGood {
    fn since(&self) -> u64 {
        match self {
            LastGood::Files { since } | LastGood::Kept { since, .. } => *since,
        }
    }
}

/// The state weft last converged to.
enum Made {
    /// None yet: the daemon just started.
    Nothing,
    /// What a full sync made.
    Own(Box<HostState>),
    /// What the incremental reconciler applied and trusts (not copied: at 10,000 endpoints a
    /// copy was a large part of a change's bookkeeping). Should it stop trusting it after a
    /// failed step, the next sync counts no drift.
    Trusted,
}

/// What to observe for a rollback: the interfaces and attachments of both states (`a` wins
/// where both configure one).
pub fn scope_of(a: &HostState, b: &HostState) -> HostState {
    let mut scope = b.scope();
    scope.links.extend(a.links.clone());
    scope.attachments.extend(a.attachments.clone());
    scope
        .cgroup_attachments
        .extend(a.cgroup_attachments.clone());
    scope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_wait_twice_as_long_up_to_the_resync_and_a_success_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let s = Duration::from_secs;
        let waits: Vec<Action> = (0..5).map(|_| b.after(false)).collect();
        assert_eq!(
            waits,
            [1, 2, 4, 5, 5].map(|n| Action::Requeue(s(n))).to_vec()
        );
        assert_eq!(b.after(true), Action::Await);
        assert_eq!(b.after(false), Action::Requeue(s(1)));
        // A resync shorter than the first retry still retries.
        let mut b = Backoff::new(Duration::from_millis(100));
        assert_eq!(b.after(false), Action::Requeue(FIRST_RETRY));
        assert_eq!(b.after(false), Action::Requeue(FIRST_RETRY));
    }
}
