//! Shared pieces of the subcommands: the host options, output format, exit codes, logging.

pub mod apply;
pub mod confirm;
pub mod diff;
pub mod dump;
pub mod flows;
pub mod gc;
pub mod run;
pub mod schemas;
pub mod status;
pub mod teardown;
pub mod trace;
pub mod validate;
pub mod verifier;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use weft::bpf::Pins;
use weft::run::{Host, RunError};

/// What a command that programs the host (or shows what it would program: `weft diff`) needs
/// to know of it.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// This host's node name (endpoints are programmed where spec.node matches). Default:
    /// $WEFT_NODENAME, $NODENAME, then the hostname.
    #[arg(long, env = "WEFT_NODENAME")]
    pub node: Option<String>,
    /// Where weft pins its maps, programs and links.
    #[arg(long, env = "WEFT_BPFFS", default_value = weft::bpf::DEFAULT_ROOT)]
    pub bpffs: PathBuf,
    /// The cgroup connect-time load balancing attaches to. Default: the cgroup2 root.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Where weft keeps what the kernel does not: the daemon's status, a pending confirmation,
    /// the routes it took over. Made root's alone (0700).
    #[arg(long, env = "WEFT_STATE_DIR", default_value = weft::daemon::status::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Whether weft may replace routes of others at destinations it wants (set by the
    /// commands that change the kernel: `--take-over-routes`).
    #[arg(skip)]
    pub take_over_routes: bool,
    /// What one converge may take away (set by the commands that converge: `--allow-empty`,
    /// `--max-endpoint-removal`).
    #[arg(skip)]
    pub guard: weft::guard::Guard,
}

/// What a command that only removes weft's objects needs to know of the host: where they are
/// pinned and where weft keeps its records. (No node name or cgroup: nothing is programmed.)
#[derive(clap::Args, Clone)]
pub struct PinArgs {
    /// Where weft pins its maps, programs and links.
    #[arg(long, env = "WEFT_BPFFS", default_value = weft::bpf::DEFAULT_ROOT)]
    pub bpffs: PathBuf,
    /// Where weft keeps what the kernel does not (the routes it took over, to put back).
    #[arg(long, env = "WEFT_STATE_DIR", default_value = weft::daemon::status::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

impl PinArgs {
    pub fn host(&self) -> HostArgs {
        HostArgs::reading(None, &self.bpffs, Some(&self.state_dir))
    }
}

/// What a command that only reads weft's maps needs to know of the host: where they are
/// pinned. (No node name: it names nothing by the configuration; no cgroup or state directory:
/// nothing is attached or recorded.)
#[derive(clap::Args, Clone)]
pub struct MapArgs {
    /// Where weft pins its maps, programs and links.
    #[arg(long, env = "WEFT_BPFFS", default_value = weft::bpf::DEFAULT_ROOT)]
    pub bpffs: PathBuf,
}

impl MapArgs {
    pub fn host(&self) -> HostArgs {
        HostArgs::reading(None, &self.bpffs, None)
    }
}

/// What a command that reads weft's maps and works out this node's desired state (to name
/// rules and services, or to read its FelixConfiguration) needs: the node and the maps. (No
/// cgroup or state directory: nothing is attached or recorded.)
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// This host's node name (whose desired state names what the maps hold). Default:
    /// $WEFT_NODENAME, $NODENAME, then the hostname.
    #[arg(long, env = "WEFT_NODENAME")]
    pub node: Option<String>,
    /// Where weft pins its maps, programs and links.
    #[arg(long, env = "WEFT_BPFFS", default_value = weft::bpf::DEFAULT_ROOT)]
    pub bpffs: PathBuf,
}

impl NodeArgs {
    pub fn host(&self) -> HostArgs {
        HostArgs::reading(self.node.clone(), &self.bpffs, None)
    }
}

/// `NodeArgs` for a command whose DIR defaults to the daemon's: also the state directory,
/// where the daemon's status says which directory that is.
#[derive(clap::Args, Clone)]
pub struct DaemonNodeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Where the daemon keeps its status, which names its configuration directory when DIR
    /// is left out.
    #[arg(long, env = "WEFT_STATE_DIR", default_value = weft::daemon::status::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

impl DaemonNodeArgs {
    pub fn host(&self) -> HostArgs {
        HostArgs::reading(
            self.node.node.clone(),
            &self.node.bpffs,
            Some(&self.state_dir),
        )
    }
}

impl HostArgs {
    /// The host as a command that changes nothing sees it: no cgroup (the cgroup2 root), and
    /// the default state directory unless it needs its own.
    fn reading(
        node: Option<String>,
        bpffs: &std::path::Path,
        state_dir: Option<&std::path::Path>,
    ) -> HostArgs {
        HostArgs {
            node,
            bpffs: bpffs.to_path_buf(),
            cgroup: None,
            state_dir: state_dir.map_or_else(
                || PathBuf::from(weft::daemon::status::DEFAULT_STATE_DIR),
                std::path::Path::to_path_buf,
            ),
            take_over_routes: false,
            guard: weft::guard::Guard::default(),
        }
    }

    pub async fn open(&self) -> Result<Host, RunError> {
        let mut h = Host::open(
            Pins::new(&self.bpffs),
            self.state_dir.clone(),
            weft::facts::node_name(self.node.as_deref()),
            self.cgroup.clone(),
        )
        .await?;
        h.take_over_routes = self.take_over_routes;
        h.guard = self.guard;
        Ok(h)
    }
}

/// How DIR's files are read.
#[derive(clap::Args, Clone, Copy, Default)]
pub struct LoadArgs {
    /// Also read files that symbolic links in DIR lead to outside it. Without this such a
    /// link is a problem and nothing of its target is read: a commit to a checked-out DIR
    /// could otherwise point one at any file weft may read and have it quoted in messages.
    #[arg(long)]
    pub follow_outside_links: bool,
}

impl LoadArgs {
    pub fn options(self) -> weft_model::ReadOptions {
        weft_model::ReadOptions {
            follow_outside_links: self.follow_outside_links,
        }
    }
}

/// Machine output, spelled as every command that prints spells it: `-o json`, or `--json`.
#[derive(clap::Args, Clone, Copy)]
pub struct JsonArg {
    /// `json` prints JSON; `text`, the default, prints for people.
    #[arg(long, short, value_enum, default_value = "text")]
    output: Output,
    /// The same as `-o json`.
    #[arg(long, short)]
    json: bool,
}

impl JsonArg {
    pub fn on(self) -> bool {
        self.json || self.output == Output::Json
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
            say(format_args!("weft: starting the runtime: {e}"));
            ExitCode::from(2)
        }
    }
}

/// Writes a line to stderr, ignoring failure: a confirm-within apply must go on (and roll
/// back) after the operator's terminal is gone, where `eprintln!` would panic.
pub fn say(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Puts SIGPIPE back to its default (the process ends, quietly, when it writes to a pipe
/// nobody reads any more); Rust ignores it, so a print to a closed pipe panicked instead.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The configuration directory a command reads: `given`, or else the one the daemon
/// converges to (its status file in the state directory says which), so that `weft flows`
/// and `weft dump policy` name rules without being told where the files are.
pub fn dir_or_daemons(given: Option<&std::path::Path>, host: &HostArgs) -> Option<PathBuf> {
    given.map(PathBuf::from).or_else(|| {
        weft::daemon::status::Status::read(&host.state_dir)
            .ok()
            .map(|s| PathBuf::from(s.dir))
            .filter(|d| !d.as_os_str().is_empty())
    })
}

/// Takes the host's writer lock (`weft::writer`) for a command that changes the host, or says
/// who holds it and what to do about that (exit 2).
pub fn writer(host: &HostArgs) -> Result<weft::writer::Writer, ExitCode> {
    weft::writer::acquire(&host.bpffs).map_err(|e| {
        let hint = match &e {
            weft::writer::WriterError::Held { argv, .. } => match daemon_dir(argv) {
                Some(dir) => format!(
                    "; it is the daemon, which keeps this host converged to {}: change the files there (it applies them), or stop it first",
                    dir.display()
                ),
                None => "; wait for it to finish, then run this again".into(),
            },
            _ => String::new(),
        };
        say(format_args!("weft: {e}{hint}"));
        ExitCode::from(2)
    })
}

/// The directory a `weft run` command line converges to, read as weft reads its own.
fn daemon_dir(argv: &[String]) -> Option<PathBuf> {
    match crate::Cli::try_parse_from(argv).ok()?.command {
        crate::Command::Run { dir, .. } => Some(dir),
        _ => None,
    }
}

/// Logs go to stderr through tracing, at the level `$WEFT_LOG` names (error, warn, info,
/// debug, trace; default info). The daemon's lines carry a timestamp, a command's do not.
pub fn init_logging(timestamps: bool) {
    let level = std::env::var("WEFT_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let _ = if timestamps {
        b.try_init()
    } else {
        b.without_time().try_init()
    };
}

/// Exit 1 for a configuration that does not validate (nothing was touched), 2 for the rest.
pub fn report(e: &RunError) -> ExitCode {
    match e {
        RunError::Invalid(d) => {
            say(format_args!("{d}"));
            say(format_args!(
                "nothing was changed: {} problem(s) in the configuration",
                d.0.len()
            ));
            ExitCode::from(1)
        }
        other => {
            say(format_args!("weft: {other}"));
            ExitCode::from(2)
        }
    }
}

/// A duration as people write it: `500ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // As FelixConfiguration writes durations (one parser for both: 1m30s, 1.5s, 500ms), and a
    // bare number of seconds.
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too large"));
    }
    weft_model::parse_go_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_written() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("s").is_err());
    }
}
