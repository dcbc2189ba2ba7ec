//! The `weft` command: one module per subcommand under cli/.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod cli;

use cli::{HostArgs, LoadArgs, Output};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A file-driven eBPF dataplane: policy and services for Linux hosts from a directory of YAML files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every resource under DIR; report all problems with file:line:column. Also checks
    /// what each node's desired state would break (maps too small for their entries,
    /// endpoints sharing an interface or address). Exit 0 valid, 1 invalid.
    Validate {
        dir: PathBuf,
        /// Check the desired state of this node only. Default: every node an endpoint names.
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        load: LoadArgs,
        /// `-o json`: the problems and warnings as objects, for CI.
        #[command(flatten)]
        json: cli::JsonArg,
    },
    /// Show what `apply` would change, as a unified diff of the live and the desired state.
    /// Changes nothing. Exit 0 no changes, 1 changes, 2 error.
    Diff {
        dir: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: HostArgs,
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
        /// Also list the operations, in the order apply would run them.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Make the kernel match DIR, then check that it does. Exit 0 when the live state equals
    /// the desired state, 1 when the files are invalid (nothing is touched), 2 on other errors.
    ///
    /// With --confirm-within, wait for `weft confirm` that long; without it, put back the
    /// state that was live before (exit 3), so a policy that cuts you off undoes itself.
    Apply {
        dir: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: HostArgs,
        /// Roll back unless `weft confirm` arrives within this long (e.g. 30s, 2m).
        #[arg(long, value_name = "DURATION", value_parser = cli::parse_duration)]
        confirm_within: Option<Duration>,
        /// Let weft's routes replace routes of others at the same destinations (`weft diff`
        /// shows them). weft records each and puts it back when its own route there goes.
        #[arg(long)]
        take_over_routes: bool,
        /// Converge even to no endpoints at all while some are live (an empty directory
        /// removes everything weft made; without this, apply refuses and says what would go).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Keep what a `weft apply --confirm-within` applied. Exit 0 confirmed, 1 nothing waits.
    Confirm {
        #[arg(long, env = "WEFT_STATE_DIR", default_value = weft::daemon::status::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// The daemon: apply DIR, then converge again whenever a file under it changes, an
    /// interface appears or goes, or the resync timer fires (repairing drift), until SIGTERM.
    /// Files that do not validate are reported and the last good configuration stays.
    Run {
        dir: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: HostArgs,
        /// Let weft's routes replace routes of others at the same destinations, as
        /// `weft apply --take-over-routes` does.
        #[arg(long)]
        take_over_routes: bool,
        /// Converge even to no endpoints at all while some are live (as `weft apply
        /// --allow-empty`); without this an empty checkout changes nothing.
        #[arg(long)]
        allow_empty: bool,
        /// The largest share of the live endpoints, in percent, one change may remove; a
        /// change that removes more (and more than one) is refused and the live state stays.
        #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
        max_endpoint_removal: u8,
        /// How often to look for drift when nothing else happens.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = cli::parse_duration)]
        resync: Duration,
        /// How long the files must be quiet before a change is acted on.
        #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = cli::parse_duration)]
        debounce: Duration,
        /// Serve Prometheus metrics (/metrics) and the status (/status) on this address,
        /// e.g. 127.0.0.1:9771.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// How often to sweep the conntrack map for flows idle past their timeouts
        /// (BPFConntrackTimeouts); 0 turns the collector off.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = cli::parse_duration)]
        conntrack_gc_interval: Duration,
    },
    /// What the daemon last did, its last error, drift repaired, and how full the maps are.
    /// Exit 0 when the daemon runs and its last reconcile did not fail, 2 when this user
    /// cannot tell (the state directory is root's alone), 1 otherwise.
    Status {
        #[arg(long, env = "WEFT_STATE_DIR", default_value = weft::daemon::status::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Where weft pins its maps.
        #[arg(long, env = "WEFT_BPFFS", default_value = weft::bpf::DEFAULT_ROOT)]
        bpffs: PathBuf,
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Sweep the conntrack map once, now: delete the flows idle past their timeouts
    /// (BPFConntrackTimeouts of DIR's FelixConfiguration; Calico's defaults without DIR).
    /// The daemon does this by itself every --conntrack-gc-interval.
    Gc {
        dir: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// The node whose FelixConfiguration sets the timeouts, and the maps.
        #[command(flatten)]
        host: cli::NodeArgs,
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Load every BPF program weft has, in every variant that changes what the verifier walks
    /// (objects, settings compiled in, instruction sets), and print what each costs the
    /// verifier on this kernel. Nothing is pinned or attached. Exit 1 when a program does not
    /// load or uses more than a quarter of the verifier's limit.
    Verifier {
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove everything weft created, and nothing else.
    Teardown {
        #[command(flatten)]
        pins: cli::PinArgs,
    },
    /// Write the JSON Schemas (draft-07) of every resource kind into DIR.
    Schemas { dir: PathBuf },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell),
    /// e.g. `weft completions bash > /usr/share/bash-completion/completions/weft`.
    Completions { shell: clap_complete::Shell },
    /// Print weft's man page (roff), e.g. `weft man > /usr/share/man/man1/weft.1`.
    Man,
    /// Show what is in weft's maps: policy with hit counts, endpoints, conntrack, counters,
    /// routes. As a table, or as JSON with --json.
    Dump {
        #[command(subcommand)]
        what: cli::dump::What,
    },
    /// Flow records: how policy decided each new flow for each endpoint (verdict, deciding
    /// rule, service translation) and drops worth seeing. Prints what weft_flows holds, or
    /// with --follow keeps printing. DIR, the configuration weft applied, names the rules.
    Flows {
        /// The configuration weft applied, to name the deciding rules.
        dir: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: cli::DaemonNodeArgs,
        /// One JSON object per line (`-o json` or `--json`).
        #[command(flatten)]
        json: cli::JsonArg,
        /// Keep printing records as they come, until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// Packet traces of the interfaces bpfLogLevel Debug and bpfLogFilters select: per packet,
    /// parse, conntrack, policy and translation results and the verdict. Prints what
    /// weft_trace holds, or with --follow keeps printing. DIR names the rules.
    Trace {
        /// The configuration weft applied, to name the deciding rules.
        dir: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        host: cli::DaemonNodeArgs,
        /// One JSON object per line (`-o json` or `--json`).
        #[command(flatten)]
        json: cli::JsonArg,
        /// Keep printing records as they come, until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only this interface's records.
        #[arg(long, value_name = "NAME")]
        iface: Option<String>,
    },
}

/// mimalloc's option `purge_delay` (its index in mimalloc.h's `mi_option_e`, the same in
/// mimalloc 2 and 3; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the pages the heap frees, for the next allocation, instead of giving them back to the
/// kernel a second after (mimalloc's default). In a VM a page given back costs a fault and its
/// zeroing when it is touched again, and each of the daemon's changes frees and allocates most
/// of the same memory: at 10,000 endpoints, policies and services, a policy's change took 80
/// ms and a service's 100 with the default, 48 and 41 ms with this (alternating runs of
/// `weft-bench control`), with the same peak RSS within the runs' spread: what is kept is
/// what the peak already counted. The daemon's RSS stays near its peak between changes. For
/// the daemon only: a command that runs once has no next change to keep pages for.
fn keep_freed_pages() {
    // SAFETY: sets an integer option; mimalloc reads it when it next decides to purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// See the workspace's Cargo.toml for why not glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) {
        keep_freed_pages();
    }
    cli::init_logging(matches!(cli.command, Command::Run { .. }));
    // A command that only reads and prints ends quietly when its reader goes away
    // (`weft dump | head`), as other Unix tools do: SIGPIPE's default. Commands that change
    // the host keep Rust's default (ignored, writes fail instead): being killed halfway
    // through an apply would half-apply it.
    let changes_host = matches!(
        cli.command,
        Command::Apply { .. }
            | Command::Confirm { .. }
            | Command::Run { .. }
            | Command::Gc { .. }
            | Command::Teardown { .. }
    );
    if !changes_host {
        cli::default_sigpipe();
    }
    match cli.command {
        Command::Validate {
            dir,
            node,
            load,
            json,
        } => cli::validate::run(&dir, node.as_deref(), load, json.on()),
        Command::Schemas { dir } => cli::schemas::run(&dir),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "weft", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    cli::say(format_args!("weft: writing the man page: {e}"));
                    ExitCode::from(2)
                }
            }
        }
        Command::Diff {
            dir,
            load,
            host,
            output,
            verbose,
        } => cli::block_on(cli::diff::run(&dir, load, &host, output, verbose)),
        Command::Apply {
            dir,
            load,
            mut host,
            confirm_within,
            take_over_routes,
            allow_empty,
        } => {
            host.take_over_routes = take_over_routes;
            host.guard = weft::guard::Guard {
                allow_empty,
                max_removal_percent: None,
            };
            let confirm = confirm_within.map(|within| cli::apply::Confirm {
                within,
                state_dir: host.state_dir.clone(),
            });
            cli::block_on(cli::apply::run(&dir, load, &host, confirm))
        }
        Command::Confirm { state_dir } => cli::confirm::run(&state_dir),
        Command::Run {
            dir,
            load,
            mut host,
            take_over_routes,
            allow_empty,
            max_endpoint_removal,
            resync,
            debounce,
            metrics_listen,
            conntrack_gc_interval,
        } => {
            host.take_over_routes = take_over_routes;
            host.guard = weft::guard::Guard {
                allow_empty,
                max_removal_percent: Some(max_endpoint_removal),
            };
            cli::block_on(cli::run::run(
                &dir,
                &host,
                daemon_options(
                    load,
                    host.state_dir.clone(),
                    resync,
                    debounce,
                    metrics_listen,
                    conntrack_gc_interval,
                ),
            ))
        }
        Command::Gc {
            dir,
            load,
            host,
            output,
        } => cli::gc::run(dir.as_deref(), load, &host.host(), output),
        Command::Status {
            state_dir,
            bpffs,
            output,
        } => cli::status::run(&state_dir, &bpffs, output),
        Command::Verifier { output } => cli::verifier::run(output),
        Command::Teardown { pins } => cli::block_on(cli::teardown::run(&pins.host())),
        Command::Dump { what } => cli::block_on(cli::dump::run(&what)),
        Command::Flows {
            dir,
            load,
            host,
            json,
            follow,
        } => cli::block_on(cli::flows::run(
            dir.as_deref(),
            load,
            &host.host(),
            json.on(),
            follow,
        )),
        Command::Trace {
            dir,
            load,
            host,
            json,
            follow,
            iface,
        } => cli::block_on(cli::trace::run(
            dir.as_deref(),
            load,
            &host.host(),
            json.on(),
            follow,
            iface.as_deref(),
        )),
    }
}

fn daemon_options(
    load: LoadArgs,
    state_dir: PathBuf,
    resync: Duration,
    debounce: Duration,
    metrics: Option<SocketAddr>,
    ct_gc: Duration,
) -> cli::run::Timing {
    cli::run::Timing {
        read: load.options(),
        state_dir,
        resync,
        debounce,
        metrics,
        ct_gc: (!ct_gc.is_zero()).then_some(ct_gc),
    }
}
