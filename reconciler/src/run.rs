//! The pipeline shared by the commands: load the files, gather the host's facts, compute the
//! desired state, observe the live one, plan.

use std::collections::BTreeSet;
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
    pub async fn open(pins: Pins, node: String) -> Result<Host, RunError> {
        let nl = Netlink::connect().map_err(RunError::Connect)?;
        let facts = HostFacts::gather(&nl, node).await?;
        Ok(Host { pins, nl, facts })
    }

    pub async fn refresh_facts(&mut self) -> Result<(), RunError> {
        self.facts = HostFacts::gather(&self.nl, self.facts.node.clone()).await?;
        Ok(())
    }

    pub async fn observe(&self, desired: &HostState) -> Result<HostState, RunError> {
        let scope: BTreeSet<String> = desired.links.keys().cloned().collect();
        Ok(observe::observe(&self.pins, &self.nl, &self.facts, &scope).await?)
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
    let desired = desired::desired(cfg, &host.facts)?;
    let observed = host.observe(&desired.state).await?;
    let ops = plan::plan(&desired.state, &observed, desired.settings.sizes);
    Ok(Planned {
        desired,
        observed,
        ops,
    })
}
