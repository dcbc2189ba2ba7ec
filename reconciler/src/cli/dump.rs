//! `weft dump ...`: what is in weft's maps, as a table or (`--json`) as JSON. Exit 0, or 2 when
//! something cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use weft::bpf::{maps, rulesets};
use weft::dump::{self, DumpError};
use weft::policy::resolve::Direction;
use weft::run::{self, Host, RunError};

use super::{report, DaemonNodeArgs, HostArgs, JsonArg, LoadArgs, MapArgs, NodeArgs};

#[derive(Subcommand)]
pub enum What {
    /// The rules of ENDPOINT (namespace/name, or its interface) in evaluation order, per
    /// direction, with how many packets each decided; DIR is the configuration weft applied.
    Policy {
        endpoint: String,
        /// The configuration directory; the daemon's (from its status) when left out.
        dir: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// One direction only.
        #[arg(long, value_enum)]
        direction: Option<DirectionArg>,
        #[command(flatten)]
        host: DaemonNodeArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// The address sets rule selectors stand for (Calico's IP sets), from DIR as it is now,
    /// beside the kernel's per-ruleset address prefixes (decoded from weft_pol_rs).
    Ipsets {
        dir: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: NodeArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Interfaces weft programs (weft_iface): index, name, rulesets.
    Endpoints {
        #[command(flatten)]
        host: MapArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Host endpoints (weft_hep): each covered interface's rulesets by stage, the evaluation
    /// order, and the failsafe rules (weft_failsafe4).
    HostEndpoints {
        #[command(flatten)]
        host: MapArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Service frontends (weft_nat_fe4) with their backends; DIR, if given, names the services.
    Nat {
        dir: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: NodeArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Flows in conntrack (weft_ct4): who opened them, what approved each side, ages.
    Conntrack {
        #[command(flatten)]
        host: MapArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Packet counters per interface and hook, by reason (weft_ctrs).
    Counters {
        #[command(flatten)]
        host: MapArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// weft's routing table (weft_rt4).
    Routes {
        #[command(flatten)]
        host: MapArgs,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Ingress,
    Egress,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Dump(#[from] DumpError),
}

fn print<T: Serialize>(json: bool, rows: &T, table: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(rows).expect("dump rows serialize")
        );
    } else {
        print!("{}", table(rows));
    }
}

fn name_of(h: &Host) -> impl Fn(u32) -> Option<String> + '_ {
    |i| h.facts.link_name(i).map(str::to_string)
}

async fn policy(
    endpoint: &str,
    dir: &Path,
    load: LoadArgs,
    direction: Option<DirectionArg>,
    host: &HostArgs,
    json: bool,
) -> Result<(), Error> {
    let cfg = run::load(dir, load.options())?;
    let h = host.open().await?;
    let desired = weft::desired::desired(&cfg, &h.facts).map_err(RunError::from)?;
    let directions = match direction {
        None => vec![Direction::Ingress, Direction::Egress],
        Some(DirectionArg::Ingress) => vec![Direction::Ingress],
        Some(DirectionArg::Egress) => vec![Direction::Egress],
    };
    let hits = dump::rule_hits(
        &dump::read_per_cpu(&h.pins, maps::RULE_COUNTERS)?,
        &weft::bpf::stats::xdp_drops(&h.pins).map_err(DumpError::from)?,
    );
    let live = dump::read_map(&h.pins, maps::IFACE)?;
    let p = dump::policy(&desired, endpoint, &directions, &hits, &live)?;
    print(json, &p, dump::render_policy);
    if !json {
        println!("(hits: the packets a rule decided, for every endpoint it applies to; policy judges a flow's first packet, and every packet of a flow it denies)");
    }
    Ok(())
}

async fn maps_dump(what: &What) -> Result<(), Error> {
    match what {
        What::Policy {
            endpoint,
            dir,
            load,
            direction,
            host,
            json,
        } => {
            let host = &host.host();
            let dir = super::dir_or_daemons(dir.as_deref(), host).ok_or_else(|| {
                RunError::Invalid(weft_model::Diagnostics(vec![weft_model::Diagnostic {
                    file: host.state_dir.join("status.json"),
                    line: 0,
                    column: 0,
                    resource: None,
                    message: "no DIR given, and no daemon status to take the daemon's from; name the configuration directory".into(),
                }]))
            })?;
            policy(endpoint, &dir, *load, *direction, host, json.on()).await?
        }
        What::Ipsets {
            dir,
            load,
            host,
            json,
        } => {
            let cfg = run::load(dir, load.options())?;
            let h = host.host().open().await?;
            let desired = weft::desired::desired(&cfg, &h.facts).map_err(RunError::from)?;
            let d = dump::ip_sets(
                &desired,
                &rulesets::read_all(&h.pins).map_err(DumpError::from)?,
            );
            print(json.on(), &d, dump::render_ip_sets);
        }
        What::Endpoints { host, json } => {
            let h = host.host().open().await?;
            let rows = dump::endpoints(&dump::read_map(&h.pins, maps::IFACE)?, name_of(&h));
            print(json.on(), &rows, |r| dump::render_endpoints(r));
        }
        What::HostEndpoints { host, json } => {
            let h = host.host().open().await?;
            let d = dump::host_endpoints(
                &dump::read_map(&h.pins, maps::HEP)?,
                &dump::read_map(&h.pins, maps::FAILSAFE4)?,
                name_of(&h),
            );
            print(json.on(), &d, dump::render_host_endpoints);
        }
        What::Conntrack { host, json } => {
            let h = host.host().open().await?;
            let entries = dump::read_map(&h.pins, maps::CT4)?;
            let rows = dump::conntrack(&entries, dump::monotonic_now_ns());
            print(json.on(), &rows, |r| dump::render_conntrack(r));
        }
        What::Nat {
            dir,
            load,
            host,
            json,
        } => {
            let h = host.host().open().await?;
            let (names, origins) = match dir {
                Some(d) => {
                    let cfg = run::load(d, load.options())?;
                    let names = weft::services::tables(
                        &cfg,
                        &h.facts.node,
                        &h.facts.host_addrs,
                        &Default::default(),
                    )
                    .names;
                    (names, weft::services::backend_origins(&cfg))
                }
                None => Default::default(),
            };
            let rows = dump::nat(
                &dump::read_map(&h.pins, maps::NAT_FE4)?,
                &dump::read_map(&h.pins, maps::NAT_BE4)?,
                &names,
                &origins,
            );
            print(json.on(), &rows, |r| dump::render_nat(r));
        }
        What::Counters { host, json } => {
            let h = host.host().open().await?;
            let per_cpu = dump::read_per_cpu(&h.pins, maps::COUNTERS)?;
            let xdp = weft::bpf::stats::xdp_drops(&h.pins).map_err(DumpError::from)?;
            let rows = dump::counters(&per_cpu, &xdp, name_of(&h));
            print(json.on(), &rows, |r| dump::render_counters(r));
        }
        What::Routes { host, json } => {
            let h = host.host().open().await?;
            let rows = dump::routes(&dump::read_map(&h.pins, maps::RT4)?, name_of(&h));
            print(json.on(), &rows, |r| dump::render_routes(r));
        }
    }
    Ok(())
}

pub async fn run(what: &What) -> ExitCode {
    match maps_dump(what).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Run(e)) => report(&e),
        Err(Error::Dump(e)) => {
            eprintln!("weft: {e}");
            ExitCode::from(2)
        }
    }
}
