//! The pipeline shared by the commands: load the files, gather the host's facts, compute the
//! desired state, observe the live one, plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use weft_model::{Config, Diagnostics, ReadOptions};

use crate::apply::Progress;
use crate::bpf::features::{self, Features, Without};
use crate::bpf::Pins;
use crate::desired::{self, Desired, DesiredError};
use crate::facts::{ForeignRoute, HostFacts};
use crate::guard::Guard;
use crate::kernel::{Applied, Kernel};
use crate::netlink::{Netlink, NetlinkError};
use crate::observe::{self, ObserveError};
use crate::plan::{self, Op};
use crate::policy::flat::Net4;
use crate::state::HostState;
use crate::takeover;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error("netlink: {0}")]
    Connect(std::io::Error),
    /// An operation the in-memory kernel (`kernel::MemKernel`) refused or was told to fail.
    #[error("{0}")]
    Mem(String),
    #[error(transparent)]
    Takeover(#[from] crate::takeover::TakeoverError),
    #[error(transparent)]
    Refused(#[from] crate::guard::Refusal),
    #[error("this kernel ({release}) lacks what weft needs:\n  {}", missing.join("\n  "))]
    Kernel {
        release: String,
        missing: Vec<String>,
    },
}

/// Where weft runs: its pins, its netlink connection, the host's facts.
pub struct Host {
    pub pins: Pins,
    pub nl: Netlink,
    pub facts: HostFacts,
    /// Interfaces that are administratively down.
    pub down: BTreeSet<String>,
    /// What the kernel has of what weft uses.
    pub kernel: Features,
    /// Where weft keeps what the kernel does not: the status, confirmations, and the record
    /// of the routes it took over (`takeover`).
    pub state_dir: PathBuf,
    /// Whether weft may replace routes of others at destinations it wants (`takeover`).
    pub take_over_routes: bool,
    /// What one converge may take away (`guard`).
    pub guard: Guard,
}

impl Host {
    /// The routes the record in the state directory says weft took over and still holds.
    async fn taken_over(&self) -> Result<BTreeMap<Net4, ForeignRoute>, RunError> {
        let record = takeover::read(&self.state_dir);
        let foreign = self
            .foreign_routes(&record.keys().copied().collect())
            .await?;
        Ok(takeover::recorded(record, &foreign))
    }

    /// Connects and gathers the facts. `cgroup` is where connect-time load balancing attaches
    /// (None: the cgroup2 root).
    /// Refuses a kernel that lacks what weft cannot do without, naming it; says once per
    /// process what weft does about the rest.
    pub async fn open(
        pins: Pins,
        state_dir: PathBuf,
        node: String,
        cgroup: Option<String>,
    ) -> Result<Host, RunError> {
        let _p = crate::timing::phase("open the host");
        let kernel = features::probe(&pins.root);
        let required = kernel.missing_required();
        if !required.is_empty() {
            return Err(RunError::Kernel {
                release: kernel.release.clone(),
                missing: required.iter().map(|f| f.describe()).collect(),
            });
        }
        let nl = Netlink::connect().map_err(RunError::Connect)?;
        let (facts, down) = crate::netlink::facts::gather(&nl, node, cgroup).await?;
        let mut host = Host {
            pins,
            nl,
            facts,
            down,
            kernel,
            state_dir,
            take_over_routes: false,
            guard: Guard::default(),
        };
        host.facts.taken_over = host.taken_over().await?;
        Ok(host)
    }

    /// Says, once per process, what this kernel lacks and what weft does about it (for the
    /// commands that program the kernel: apply and run).
    pub fn say_kernel(&self) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            for f in self.kernel.missing() {
                match f.without {
                    Without::Off(_) => {
                        tracing::warn!("kernel {}: {}", self.kernel.release, f.describe())
                    }
                    _ => tracing::info!("kernel {}: {}", self.kernel.release, f.describe()),
                }
            }
        });
    }

    /// What `cfg` asks of this host as it is now: the desired state, less the routes and
    /// neighbours of interfaces that are down. The kernel removes those when an interface
    /// goes down and refuses them until it is up again; weft puts them back then (as Calico
    /// does), rather than failing on them meanwhile. The programs stay attached throughout.
    pub fn desired(&self, cfg: &Config) -> Result<Desired, RunError> {
        self.desired_cached(cfg, &mut crate::policy::Cache::default())
    }

    /// `desired`, through what the compiler remembers in `cache`.
    pub fn desired_cached(
        &self,
        cfg: &Config,
        cache: &mut crate::policy::Cache,
    ) -> Result<Desired, RunError> {
        let d = desired::compute(cfg, &self.facts, cache)?.desired;
        Ok(self.without_down(d))
    }
}

/// The real host: netlink for links, addresses, routes and neighbours, bpffs and the BPF
/// syscalls for programs and maps.
impl Kernel for Host {
    fn facts(&self) -> &HostFacts {
        &self.facts
    }

    fn down(&self) -> &BTreeSet<String> {
        &self.down
    }

    async fn refresh_facts(&mut self) -> Result<(), RunError> {
        let _p = crate::timing::phase("facts");
        (self.facts, self.down) = crate::netlink::facts::gather(
            &self.nl,
            self.facts.node.clone(),
            self.facts.cgroup.clone(),
        )
        .await?;
        self.facts.taken_over = self.taken_over().await?;
        Ok(())
    }

    async fn foreign_routes(
        &self,
        at: &BTreeSet<Net4>,
    ) -> Result<BTreeMap<Net4, ForeignRoute>, RunError> {
        if at.is_empty() {
            return Ok(BTreeMap::new());
        }
        let _p = crate::timing::phase("foreign routes");
        let name_of: BTreeMap<u32, String> = self
            .facts
            .links
            .iter()
            .map(|(n, i)| (*i, n.clone()))
            .collect();
        Ok(self.nl.foreign_routes_v4(at, &name_of).await?)
    }

    fn guard(&self) -> Guard {
        self.guard
    }

    fn may_run(&self, ops: &[Op]) -> Result<(), RunError> {
        Ok(takeover::check(ops, self.take_over_routes)?)
    }

    async fn observe(&self, scope: &HostState) -> Result<HostState, RunError> {
        let _p = crate::timing::phase("observe");
        Ok(observe::observe(&self.pins, &self.nl, &self.facts, scope).await?)
    }

    async fn apply(
        &mut self,
        ops: &[Op],
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Applied, RunError> {
        let _p = crate::timing::phase("apply");
        // Every way to the kernel passes here, the incremental one too: routes of others are
        // taken over only with leave, and put back where weft lets go.
        let foreign = self
            .foreign_routes(&plan::new_route_destinations(ops, None))
            .await?;
        let ops = takeover::mark(ops, &foreign, &self.facts.taken_over);
        let takeovers = takeover::Takeovers {
            allowed: self.take_over_routes,
            state_dir: &self.state_dir,
        };
        takeovers.before(&ops, &self.facts.taken_over)?;
        let vanished = crate::apply::Applier::new(&self.pins, &self.nl, &self.facts)
            .run(&ops, progress)
            .await?;
        takeovers.after(&ops)?;
        Ok(Applied { vanished })
    }
}

/// Reads and checks the configuration under `dir`.
pub fn load(dir: &Path, read: ReadOptions) -> Result<Config, RunError> {
    let _p = crate::timing::phase("load the files");
    weft_model::load_dir_with(dir, read).map_err(RunError::Invalid)
}

/// What a run would do.
pub struct Planned {
    pub desired: Desired,
    pub observed: HostState,
    pub ops: Vec<Op>,
}

/// What `cfg` asks of this host as it is now (`Host::desired`), and what it would take.
pub async fn plan(host: &Host, cfg: &Config) -> Result<Planned, RunError> {
    // weft's maps are read on a thread of their own while the desired state is worked out
    // (they do not depend on it): at 10,000 endpoints, policies and services they take 130
    // ms, most of an observation. The compiler's memory goes before the rest is read.
    let (desired, maps) = std::thread::scope(|s| {
        let maps = s.spawn(|| {
            let _p = crate::timing::phase("observe: maps");
            observe::observe_maps(&host.pins)
        });
        let desired = host.desired(cfg);
        (desired, maps.join().expect("the map reader panicked"))
    });
    let desired = desired?;
    let observed = {
        let _p = crate::timing::phase("observe");
        observe::observe_rest(&host.pins, &host.nl, &host.facts, &desired.state, maps?).await?
    };
    plan_observed(host, desired, observed).await
}

/// `plan`, remembering what the policy compiler compiled in `cache`, for a caller that goes on
/// to `apply_planned` with the plan and the cache.
pub async fn plan_cached(
    host: &Host,
    cfg: &Config,
    cache: &mut crate::policy::Cache,
) -> Result<Planned, RunError> {
    plan_desired(host, host.desired_cached(cfg, cache)?).await
}

/// What it would take to reach `desired` (as `Kernel::without_down` trims it) from the live
/// state.
pub async fn plan_desired<K: Kernel>(host: &K, desired: Desired) -> Result<Planned, RunError> {
    let observed = host.observe(&desired.state).await?;
    plan_observed(host, desired, observed).await
}

/// `plan_desired` with the live state observed already.
async fn plan_observed<K: Kernel>(
    host: &K,
    mut desired: Desired,
    observed: HostState,
) -> Result<Planned, RunError> {
    let _p = crate::timing::phase("plan");
    desired.settle_attach_modes(&observed);
    let ops = plan::plan(&desired.state, &observed, desired.settings.sizes);
    let foreign = host
        .foreign_routes(&plan::new_route_destinations(&ops, Some(&observed)))
        .await?;
    let ops = plan::with_foreign_routes(ops, &foreign, &host.facts().taken_over);
    Ok(Planned {
        desired,
        observed,
        ops,
    })
}

/// What an apply achieved.
pub struct Outcome {
    /// The live state observed afterwards.
    pub after: HostState,
    /// How many operations ran.
    pub ops: usize,
    /// Interfaces that went away while the operations ran (theirs were skipped).
    pub vanished: BTreeSet<String>,
}

impl Outcome {
    pub fn converged(&self, desired: &HostState) -> bool {
        self.after == *desired
    }
}

/// Runs `ops` (planned to reach `desired`), then observes again. `progress` hears about each
/// operation before it runs.
pub async fn converge<K: Kernel>(
    host: &mut K,
    desired: &HostState,
    ops: &[Op],
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<Outcome, RunError> {
    let applied = host.apply(ops, &mut progress).await?;
    host.refresh_facts().await?;
    let after = host.observe(desired).await?;
    Ok(Outcome {
        after,
        ops: ops.len(),
        vanished: applied.vanished,
    })
}

/// Applies `cfg`: plans, runs the plan and observes again. Devices weft creates come first and
/// the rest is planned again once they exist, since map entries and attachments need their
/// indexes. Returns the (final) plan and what came of it.
pub async fn apply_config(
    host: &mut Host,
    cfg: &Config,
    progress: impl FnMut(&Progress<'_>),
) -> Result<(Planned, Outcome), RunError> {
    apply_planned(
        host,
        cfg,
        None,
        &mut crate::policy::Cache::default(),
        progress,
    )
    .await
}

/// `apply_config` from a plan made already for the host as it is (`plan_cached`, with the same
/// `cache`): the desired state is not worked out again for the same facts, and once weft's
/// devices exist, it is worked out with what the compiler remembers.
pub async fn apply_planned(
    host: &mut Host,
    cfg: &Config,
    first: Option<Planned>,
    cache: &mut crate::policy::Cache,
    progress: impl FnMut(&Progress<'_>),
) -> Result<(Planned, Outcome), RunError> {
    let c = converge_from(
        host,
        first,
        |facts| Ok(desired::compute(cfg, facts, cache)?.desired),
        |_| {},
        progress,
    )
    .await?;
    Ok((c.planned, c.outcome))
}

/// What one converge did.
pub struct Converged {
    /// The final plan: from the live state as observed once devices existed.
    pub planned: Planned,
    /// How many devices were created before it.
    pub created: usize,
    pub outcome: Outcome,
}

/// The converge loop every full reconcile runs (`weft apply`, the daemon's start and resyncs,
/// `incremental::Reconciler::sync`): the desired state that `make` computes from the host's
/// facts, trimmed of what down interfaces refuse (`Host::without_down`); the live state
/// observed; the plan, which `first` sees before anything runs (the daemon judges drift on
/// it); devices weft creates first, then `make` asked again and the rest planned once they
/// exist; the plan run; the live state observed again. With nothing to do, nothing runs and
/// the observation stands.
pub async fn apply_desired<K: Kernel>(
    host: &mut K,
    make: impl FnMut(&HostFacts) -> Result<Desired, RunError>,
    first: impl FnOnce(&Planned),
    progress: impl FnMut(&Progress<'_>),
) -> Result<Converged, RunError> {
    converge_from(host, None, make, first, progress).await
}

/// `apply_desired`, starting from `planned` when the caller has planned for the host as it is
/// already.
async fn converge_from<K: Kernel>(
    host: &mut K,
    planned: Option<Planned>,
    mut make: impl FnMut(&HostFacts) -> Result<Desired, RunError>,
    first: impl FnOnce(&Planned),
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<Converged, RunError> {
    let mut planned = match planned {
        Some(p) => p,
        None => plan_desired(host, host.without_down(make(host.facts())?)).await?,
    };
    first(&planned);
    host.may_run(&planned.ops)?;
    // Before anything runs: a state that takes away what the operator cannot have meant is
    // refused, and the live one stays.
    crate::guard::check(
        &planned.desired.state,
        &planned.observed,
        &host.facts().node,
        host.guard(),
    )?;
    let mut created = 0;
    if create_devices(host, &planned.ops, &mut progress).await? {
        created = planned.ops.iter().filter(|o| o.creates_link()).count();
        planned = plan_desired(host, host.without_down(make(host.facts())?)).await?;
    }
    if planned.ops.is_empty() && created == 0 {
        let outcome = Outcome {
            after: std::mem::take(&mut planned.observed),
            ops: 0,
            vanished: BTreeSet::new(),
        };
        return Ok(Converged {
            planned,
            created,
            outcome,
        });
    }
    let mut outcome = converge(host, &planned.desired.state, &planned.ops, &mut progress).await?;
    // Interfaces that went away meanwhile had their operations skipped: the rest converged,
    // and a plan from the facts as they are now (which leave those endpoints out, with a
    // warning) takes away what they left behind, such as their map entries. Interfaces may
    // keep going away; after a few rounds the next reconcile is left to finish.
    let mut vanished = std::mem::take(&mut outcome.vanished);
    for _ in 0..VANISHED_ROUNDS {
        if vanished.is_empty() || outcome.converged(&planned.desired.state) {
            break;
        }
        planned = plan_desired(host, host.without_down(make(host.facts())?)).await?;
        outcome = converge(host, &planned.desired.state, &planned.ops, &mut progress).await?;
        vanished.append(&mut outcome.vanished);
    }
    outcome.vanished = vanished;
    Ok(Converged {
        planned,
        created,
        outcome,
    })
}

/// How many times one converge plans again for interfaces that went away during its apply.
const VANISHED_ROUNDS: usize = 3;

/// Runs the operations of `ops` that create devices, and gathers the host's facts again so
/// that a new plan can name the devices' indexes (map entries, attachments). True when there
/// were any: the caller must then compute the desired state and plan again.
pub async fn create_devices<K: Kernel>(
    host: &mut K,
    ops: &[Op],
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<bool, RunError> {
    let devices: Vec<Op> = ops.iter().filter(|o| o.creates_link()).cloned().collect();
    if devices.is_empty() {
        return Ok(false);
    }
    // weft's own devices: none of them goes away unasked.
    host.apply(&devices, &mut progress).await?;
    host.refresh_facts().await?;
    Ok(true)
}

/// Removes everything weft created (its pin directories included), and puts back the routes
/// of others it took over.
pub async fn teardown(
    host: &mut Host,
    progress: impl FnMut(&Progress<'_>),
) -> Result<Outcome, RunError> {
    let empty = HostState::default();
    let observed = host.observe(&empty).await?;
    let mut ops = plan::plan(&empty, &observed, Default::default());
    // Routes weft took over whose own route is gone already (deleted by hand): put back too.
    ops.extend(
        host.facts
            .taken_over
            .values()
            .filter(|r| !observed.routes.contains_key(&r.dst))
            .map(|r| Op::RouteRestore { route: r.clone() }),
    );
    let outcome = converge(host, &empty, &ops, progress).await?;
    for ring in [
        crate::events::ring::Ring::Flows,
        crate::events::ring::Ring::Trace,
    ] {
        let _ = std::fs::remove_dir(crate::events::ring::lock_path(&host.pins, ring));
    }
    for d in [
        host.pins.root.join("readers"),
        host.pins.links(),
        host.pins.progs(),
        host.pins.maps(),
        host.pins.root.clone(),
    ] {
        let _ = std::fs::remove_dir(d);
    }
    Ok(outcome)
}

/// A progress reporter that logs through tracing: each operation as it starts, with how many
/// objects of how many are done, and within a long operation the count at most once a second.
pub fn log_progress() -> impl FnMut(&Progress<'_>) {
    let mut last = std::time::Instant::now();
    move |p: &Progress<'_>| {
        if p.starting {
            tracing::info!(
                "[{}/{}] {} ({} of {} objects done)",
                p.index,
                p.ops,
                p.op.describe(),
                p.objects_done,
                p.objects
            );
            last = std::time::Instant::now();
        } else if last.elapsed() >= std::time::Duration::from_secs(1) {
            tracing::info!(
                "[{}/{}] {} of {} objects done",
                p.index,
                p.ops,
                p.objects_done,
                p.objects
            );
            last = std::time::Instant::now();
        }
    }
}
