//! Shared pieces of the subcommands: the host options, output format, exit codes.

pub mod apply;
pub mod diff;
pub mod dump;
pub mod schemas;
pub mod teardown;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use weft::bpf::Pins;
use weft::run::{Host, RunError};

#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// This host's node name (endpoints are programmed where spec.node matches). Default:
    /// $WEFT_NODENAME, $NODENAME, then the hostname.
    #[arg(long)]
    pub node: Option<String>,
    /// Where weft pins its maps, programs and links.
    #[arg(long, default_value = weft::bpf::DEFAULT_ROOT)]
    pub bpffs: PathBuf,
    /// The cgroup connect-time load balancing attaches to. Default: the cgroup2 root.
    #[arg(long)]
    pub cgroup: Option<String>,
}

impl HostArgs {
    pub async fn open(&self) -> Result<Host, RunError> {
        Host::open(
            Pins::new(&self.bpffs),
            weft::facts::node_name(self.node.as_deref()),
            self.cgroup.clone(),
        )
        .await
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

pub fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("weft: starting the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exit 1 for a configuration that does not validate (nothing was touched), 2 for the rest.
pub fn report(e: &RunError) -> ExitCode {
    match e {
        RunError::Invalid(d) => {
            eprintln!("{d}");
            eprintln!(
                "nothing was changed: {} problem(s) in the configuration",
                d.0.len()
            );
            ExitCode::from(1)
        }
        other => {
            eprintln!("weft: {other}");
            ExitCode::from(2)
        }
    }
}

/// Prints an operation as it starts.
pub fn progress(i: usize, n: usize, op: &weft::plan::Op) {
    eprintln!("[{i}/{n}] {}", op.describe());
}
