//! The pipeline shared by the commands: load the files, gather the host's facts, compute the
//! desired state, observe the live one, plan.

use std::path::Path;

use weft_model::{Config, Diagnostics};

use crate::bpf::Pins;
use crate::desired::{self, Desired, DesiredError};
use crate::facts::HostFacts;
use crate::netlink::{Netlink, NetlinkError};
use crate::observe::{self, ObserveError};
use crate::plan::{self, Op};
use crate::state::HostState;

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
}

/// Where weft runs: its pins, its netlink connection, the host's facts.
pub struct Host {
    pub pins: Pins,
    pub nl: Netlink,
    pub facts: HostFacts,
}

impl Host {
    /// Connects and gathers the facts. `cgroup` is where connect-time load balancing attaches
    /// (None: the cgroup2 root).
    pub async fn open(pins: Pins, node: String, cgroup: Option<String>) -> Result<Host, RunError> {
        let nl = Netlink::connect().map_err(RunError::Connect)?;
        let facts = HostFacts::gather(&nl, node, cgroup).await?;
        Ok(Host { pins, nl, facts })
    }

    pub async fn refresh_facts(&mut self) -> Result<(), RunError> {
        self.facts =
            HostFacts::gather(&self.nl, self.facts.node.clone(), self.facts.cgroup.clone()).await?;
        Ok(())
    }

    pub async fn observe(&self, desired: &HostState) -> Result<HostState, RunError> {
        Ok(observe::observe(&self.pins, &self.nl, &self.facts, desired).await?)
    }
}

pub fn load(dir: &Path) -> Result<Config, RunError> {
    weft_model::load_dir(dir).map_err(RunError::Invalid)
}

/// What a run would do.
pub struct Planned {
    pub desired: Desired,
    pub observed: HostState,
    pub ops: Vec<Op>,
}

pub async fn plan(host: &Host, cfg: &Config) -> Result<Planned, RunError> {
    plan_desired(host, desired::desired(cfg, &host.facts)?).await
}

/// What it would take to reach `desired` from the live state.
pub async fn plan_desired(host: &Host, desired: Desired) -> Result<Planned, RunError> {
    let observed = host.observe(&desired.state).await?;
    let ops = plan::plan(&desired.state, &observed, desired.settings.sizes);
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
}

impl Outcome {
    pub fn converged(&self, desired: &HostState) -> bool {
        self.after == *desired
    }
}

/// Runs `ops` (planned to reach `desired`), then observes again. `progress` hears about each
/// operation before it runs.
pub async fn converge(
    host: &mut Host,
    desired: &HostState,
    ops: &[Op],
    progress: impl FnMut(usize, usize, &Op),
) -> Result<Outcome, RunError> {
    let mut applier = crate::apply::Applier::new(&host.pins, &host.nl, &host.facts);
    applier.run(ops, progress).await?;
    host.refresh_facts().await?;
    let after = host.observe(desired).await?;
    Ok(Outcome {
        after,
        ops: ops.len(),
    })
}

/// Applies `cfg`: plans, runs the plan and observes again. Devices weft creates come first and
/// the rest is planned again once they exist, since map entries and attachments need their
/// indexes. Returns the (final) plan and what came of it.
pub async fn apply_config(
    host: &mut Host,
    cfg: &Config,
    progress: impl FnMut(usize, usize, &Op),
) -> Result<(Planned, Outcome), RunError> {
    apply_desired(host, |facts| Ok(desired::desired(cfg, facts)?), progress).await
}

/// `apply_config` for a desired state that `make` computes from the host's facts (asked again
/// once devices weft creates exist).
pub async fn apply_desired(
    host: &mut Host,
    mut make: impl FnMut(&HostFacts) -> Result<Desired, RunError>,
    mut progress: impl FnMut(usize, usize, &Op),
) -> Result<(Planned, Outcome), RunError> {
    let mut planned = plan_desired(host, make(&host.facts)?).await?;
    if planned.ops.iter().any(Op::creates_link) {
        let devices: Vec<Op> = planned
            .ops
            .iter()
            .filter(|o| o.creates_link())
            .cloned()
            .collect();
        crate::apply::Applier::new(&host.pins, &host.nl, &host.facts)
            .run(&devices, &mut progress)
            .await?;
        host.refresh_facts().await?;
        planned = plan_desired(host, make(&host.facts)?).await?;
    }
    let outcome = converge(host, &planned.desired.state, &planned.ops, progress).await?;
    Ok((planned, outcome))
}

/// Removes everything weft created (its pin directories included).
pub async fn teardown(
    host: &mut Host,
    progress: impl FnMut(usize, usize, &Op),
) -> Result<Outcome, RunError> {
    let empty = HostState::default();
    let observed = host.observe(&empty).await?;
    let ops = plan::plan(&empty, &observed, Default::default());
    let outcome = converge(host, &empty, &ops, progress).await?;
    for d in [
        host.pins.links(),
        host.pins.progs(),
        host.pins.maps(),
        host.pins.root.clone(),
    ] {
        let _ = std::fs::remove_dir(d);
    }
    Ok(outcome)
}
