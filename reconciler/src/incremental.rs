//! The incremental reconciler, for a process that runs on (`weft run`) and hears which files
//! changed: the same converge as `weft apply`, without paying for the whole directory on every
//! change.
//!
//! - Files: `weft_model::Documents` keeps every file parsed; a change parses that file again,
//!   and a change to Services and EndpointSlices alone, or to policies alone, patches the
//!   configuration in place.
//! - Desired state: `desired::Computed` is the desired state with the service tables kept per
//!   service. A changed service is worked out again alone and its old and new entries diffed;
//!   anything else computes the desired state anew (`desired::compute`, through the policy
//!   cache kept here).
//! - Live state: between full syncs (`Reconciler::sync`, which observes the kernel as
//!   `weft apply` does) the reconciler trusts its own writes: the desired state it last applied
//!   is what it diffs against, so a change costs neither a dump of every map nor of every route.
//!   A failed apply forgets that state, and the next change syncs in full.

use std::collections::BTreeSet;
use std::path::Path;

use weft_model::{Config, Delta, Documents, ReadOptions};

use crate::desired::computed::touched;
use crate::desired::{self, Computed, DesiredError};
use crate::facts::HostFacts;
use crate::kernel::Kernel;
use crate::plan::{self, Op};
use crate::run::{self, RunError};
use crate::services::ServiceKey;
use crate::state::HostState;

/// How a step reached the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Nothing had changed.
    Nothing,
    /// Only these many services were worked out again.
    Services(usize),
    /// The desired state was computed anew and diffed against the last one applied.
    Desired,
    /// A full sync: the live state observed, as `weft apply` does.
    Observed,
}

/// What a step did.
#[derive(Clone, Debug)]
pub struct Step {
    pub how: How,
    /// The operations run (for a full sync: the final plan's, after any devices).
    pub ops: Vec<Op>,
    /// Devices created before them.
    pub created: usize,
    /// Whether the live state matched the desired one afterwards (taken as so by a step that
    /// trusts its writes).
    pub converged: bool,
    /// For a full sync: the states it made and found.
    pub sync: Option<Synced>,
}

/// What a full sync converged to, and the live state it observed afterwards.
#[derive(Clone, Debug)]
pub struct Synced {
    pub made: HostState,
    pub after: HostState,
}

/// What has changed since the last step.
#[derive(Default, Debug)]
struct Pending {
    services: BTreeSet<ServiceKey>,
    other: bool,
}

/// Files, the desired state last applied, and what changed since.
pub struct Reconciler {
    docs: Documents,
    applied: Option<Computed>,
    /// What the policy compiler remembers between steps: a changed policy recompiles only
    /// the rulesets it reaches.
    policy: crate::policy::Cache,
    pending: Pending,
}

impl Reconciler {
    /// Reads every file under `dir`; nothing is applied until `sync`.
    pub fn open(dir: &Path, read: ReadOptions) -> Reconciler {
        Reconciler {
            docs: Documents::read_dir_with(dir, read),
            applied: None,
            policy: crate::policy::Cache::default(),
            pending: Pending {
                services: BTreeSet::new(),
                other: true,
            },
        }
    }

    pub fn documents(&self) -> &Documents {
        &self.docs
    }

    /// The files' configuration before their last change (`Documents::previous`).
    pub fn previous_config(&self) -> Option<std::sync::Arc<Config>> {
        self.docs.previous()
    }

    /// The files' change is taken (`Documents::forget_previous`).
    pub fn forget_previous(&mut self) -> Option<std::sync::Arc<Config>> {
        self.docs.forget_previous()
    }

    /// The desired state last applied, if the reconciler trusts it.
    pub fn applied(&self) -> Option<&Computed> {
        self.applied.as_ref()
    }

    /// Takes the state last applied, trusting it no more (a full sync follows).
    pub fn take_applied(&mut self) -> Option<Computed> {
        self.applied.take()
    }

    /// Reads these files again (changed, created or removed).
    pub fn files_changed<P: AsRef<Path>>(&mut self, paths: &[P]) -> bool {
        let d = self.docs.reread(paths);
        let changed = !matches!(d, Delta::Unchanged);
        self.note(d);
        changed
    }

    /// Reads the whole directory again, parsing what changed; true when some file's text did.
    pub fn rescan(&mut self) -> bool {
        let d = self.docs.rescan();
        let changed = !matches!(d, Delta::Unchanged);
        self.note(d);
        changed
    }

    /// Whether `apply_changes` would work from the state last applied (rather than observe).
    pub fn trusted(&self, facts: &HostFacts) -> bool {
        self.applied.as_ref().is_some_and(|c| &c.facts == facts)
    }

    /// The desired state of `cfg` (this reconciler's files, or a configuration kept from
    /// before they broke) on a host with `facts`, through this reconciler's policy cache.
    pub fn compute(&mut self, cfg: &Config, facts: &HostFacts) -> Result<Computed, DesiredError> {
        desired::compute(cfg, facts, &mut self.policy)
    }

    /// Takes `c` as the state live now: the caller applied it and observed it (a full
    /// converge of its own), so later changes are applied against it.
    pub fn adopt(&mut self, c: Computed) {
        self.applied = Some(c);
        self.pending = Pending::default();
    }

    /// What is live is not known: the next `apply_changes` observes.
    pub fn forget(&mut self) {
        self.applied = None;
    }

    fn note(&mut self, d: Delta) {
        match touched(d) {
            Some(keys) => self.pending.services.extend(keys),
            None => self.pending.other = true,
        }
    }

    /// Converges as `weft apply` does: observes the live state, applies the difference,
    /// observes again. The level-triggered step, for start-up and for periodic resyncs.
    pub async fn sync<K: Kernel>(&mut self, host: &mut K) -> Result<Step, RunError> {
        self.applied = None;
        host.refresh_facts().await?;
        let cfg = self
            .docs
            .config()
            .map_err(|d| RunError::Invalid(d.clone()))?;
        let c = desired::compute(cfg, host.facts(), &mut self.policy)?;
        let (step, trusted) = converge_to(&mut self.policy, host, cfg, c, true, |_| {}).await?;
        self.applied = trusted;
        self.pending = Pending::default();
        Ok(step)
    }

    /// `sync` to `cfg`, whose desired state for the host's facts as they are is `c` (computed
    /// already by the caller); `current` says whether `cfg` is the files' own configuration
    /// (rather than the last good one kept in their place), for only that is trusted after.
    /// `first` sees the plan from the live state as first observed, before anything runs.
    pub async fn sync_to<K: Kernel>(
        &mut self,
        host: &mut K,
        cfg: &Config,
        c: Computed,
        current: bool,
        first: impl FnOnce(&run::Planned),
    ) -> Result<Step, RunError> {
        self.applied = None;
        let (step, trusted) = converge_to(&mut self.policy, host, cfg, c, current, first).await?;
        self.applied = trusted;
        self.pending = Pending::default();
        Ok(step)
    }

    /// Applies what changed since the last step, trusting the state last applied: a changed
    /// service alone where it can, else the desired state computed anew; a full `sync` when
    /// there is no trusted state, the host's facts changed, or devices must be created.
    pub async fn apply_changes<K: Kernel>(&mut self, host: &mut K) -> Result<Step, RunError> {
        match self.try_apply_changes(host).await? {
            Some(step) => Ok(step),
            None => self.sync(host).await,
        }
    }

    /// `apply_changes` without the full sync: None when the change needs one (the caller
    /// then runs its own, as the daemon does to count drift).
    pub async fn try_apply_changes<K: Kernel>(
        &mut self,
        host: &mut K,
    ) -> Result<Option<Step>, RunError> {
        let trusted = self
            .applied
            .as_ref()
            .is_some_and(|c| &c.facts == host.facts());
        if !trusted {
            return Ok(None);
        }
        if !self.pending.other && self.pending.services.is_empty() {
            return Ok(Some(Step {
                how: How::Nothing,
                ops: Vec::new(),
                created: 0,
                converged: true,
                sync: None,
            }));
        }
        let cfg = self
            .docs
            .config()
            .map_err(|d| RunError::Invalid(d.clone()))?;
        let applied = self.applied.as_mut().expect("trusted");
        if !self.pending.other {
            self.policy.services.forget_tables();
            if let Some(ops) = applied.update_services(cfg, &self.pending.services) {
                let n = self.pending.services.len();
                return self.run(host, ops, None, How::Services(n)).await.map(Some);
            }
        }
        self.policy.services.adopt(cfg, applied);
        let mut new = desired::compute(cfg, host.facts(), &mut self.policy)?;
        new.desired.settle_attach_modes(&applied.desired.state);
        let ops = plan::plan(
            &new.desired.state,
            &applied.desired.state,
            new.desired.settings.sizes,
        );
        if ops.iter().any(Op::creates_link) {
            return Ok(None);
        }
        crate::guard::check(
            &new.desired.state,
            &applied.desired.state,
            &host.facts().node,
            host.guard(),
        )?;
        self.run(host, ops, Some(new), How::Desired).await.map(Some)
    }

    /// The converge loop fed a smaller difference: `ops`, planned against the state last
    /// applied, run without observing before or after (the state is trusted).
    async fn run<K: Kernel>(
        &mut self,
        host: &mut K,
        ops: Vec<Op>,
        new: Option<Computed>,
        how: How,
    ) -> Result<Step, RunError> {
        let applied = match host.apply(&ops, &mut |_| {}).await {
            Ok(a) => a,
            Err(e) => {
                // What is live now is not known: the next step observes.
                self.applied = None;
                return Err(e);
            }
        };
        // An interface went away meanwhile and its operations were skipped: the state
        // planned for is not live, so the next step observes (the link monitor wakes it).
        let converged = applied.vanished.is_empty();
        match new {
            Some(new) if converged => drop_later(self.applied.replace(new)),
            _ if !converged => self.applied = None,
            _ => {}
        }
        self.pending = Pending::default();
        Ok(Step {
            how,
            ops,
            created: 0,
            converged,
            sync: None,
        })
    }
}

/// A full sync: `run::apply_desired`, the one converge loop, computing through `policy`.
/// Returns what it did and the state to trust after, if any: `c` (or a computation for the
/// facts as they are now), when it is live, was not trimmed for interfaces that are down, and
/// `current` says it is the files' own. Free of the reconciler, so that `cfg` may be borrowed
/// from its files.
async fn converge_to<K: Kernel>(
    policy: &mut crate::policy::Cache,
    host: &mut K,
    cfg: &Config,
    c: Computed,
    current: bool,
    first: impl FnOnce(&run::Planned),
) -> Result<(Step, Option<Computed>), RunError> {
    let mut last = Some(c);
    let converged = run::apply_desired(
        host,
        |facts| {
            let c = match last.take().filter(|c| &c.facts == facts) {
                Some(c) => c,
                None => desired::compute(cfg, facts, policy)?,
            };
            let d = c.desired.clone();
            last = Some(c);
            Ok(d)
        },
        first,
        run::log_progress(),
    )
    .await?;
    let made = converged.planned.desired.state;
    let after = converged.outcome.after;
    // Nothing to do is live as planned (a plan covers what observe reads).
    let nothing = converged.planned.ops.is_empty() && converged.created == 0;
    let live = nothing || after == made;
    // Applying can change the facts it was computed from (a device it created comes up):
    // the state is trusted for the facts as they are now.
    let computed = match last {
        Some(c) if &c.facts == host.facts() => Some(c),
        _ => desired::compute(cfg, host.facts(), policy).ok(),
    };
    let trusted = computed
        .map(|mut c| {
            c.desired.settle_attach_modes(&made);
            c
        })
        .filter(|c| current && live && c.desired.state == made);
    Ok((
        Step {
            how: How::Observed,
            ops: converged.planned.ops,
            created: converged.created,
            converged: live,
            sync: Some(Synced { made, after }),
        },
        trusted,
    ))
}

/// What replaced states and configurations wait in to be freed.
static TRASH: std::sync::Mutex<Vec<Box<dyn Send>>> = std::sync::Mutex::new(Vec::new());

/// Frees `v` later, when `empty_trash` is called: a state or configuration of 10,000
/// endpoints takes tens of milliseconds to free, which a change should not wait for (and a
/// thread freeing it meanwhile slows the reconcile down through the allocator's locks).
pub(crate) fn drop_later<T: Send + 'static>(v: T) {
    TRASH.lock().expect("trash lock").push(Box::new(v));
}

/// Frees what `drop_later` kept: the daemon calls it once a reconcile's work is done.
pub fn empty_trash() {
    let trash = std::mem::take(&mut *TRASH.lock().expect("trash lock"));
    drop(trash);
}
