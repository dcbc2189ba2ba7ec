//! The `weft` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use weft::bpf::Pins;
use weft::run::{self, Host, RunError};
use weft::state::HostState;

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

#[derive(clap::Args, Clone)]
struct HostArgs {
    /// This host's node name (endpoints are programmed where spec.node matches). Default:
    /// $WEFT_NODENAME, $NODENAME, then the hostname.
    #[arg(long)]
    node: Option<String>,
    /// Where weft pins its maps, programs and links.
    #[arg(long, default_value = weft::bpf::DEFAULT_ROOT)]
    bpffs: PathBuf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check every resource under DIR; report all problems with file:line:column.
    /// Exit 0 valid, 1 invalid.
    Validate { dir: PathBuf },
    /// Show what `apply` would change, as a unified diff of the live and the desired state.
    /// Changes nothing. Exit 0 no changes, 1 changes, 2 error.
    Diff {
        dir: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Also list the operations, in the order apply would run them.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Make the kernel match DIR, then check that it does. Exit 0 when the live state equals
    /// the desired state, 1 when the files are invalid (nothing is touched), 2 on other errors.
    Apply {
        dir: PathBuf,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Remove everything weft created, and nothing else.
    Teardown {
        #[command(flatten)]
        host: HostArgs,
    },
    /// Write the JSON Schemas (draft-07) of every resource kind into DIR.
    Schemas { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { dir } => validate(&dir),
        Command::Schemas { dir } => schemas(&dir),
        Command::Diff {
            dir,
            host,
            output,
            verbose,
        } => block_on(diff(&dir, &host, output, verbose)),
        Command::Apply { dir, host } => block_on(apply(&dir, &host)),
        Command::Teardown { host } => block_on(teardown(&host)),
    }
}

fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
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

fn validate(dir: &Path) -> ExitCode {
    match weft_model::load_dir(dir) {
        Ok(cfg) => {
            println!(
                "{}: valid ({} resources)",
                dir.display(),
                cfg.resource_count()
            );
            ExitCode::SUCCESS
        }
        Err(d) => {
            eprintln!("{d}");
            eprintln!("{}: {} problem(s)", dir.display(), d.0.len());
            ExitCode::from(1)
        }
    }
}

fn schemas(dir: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("weft: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    for (name, json) in weft_model::schemas() {
        let path = dir.join(&name);
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("weft: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn report(e: &RunError) -> ExitCode {
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

async fn open(host: &HostArgs) -> Result<Host, RunError> {
    Host::open(
        Pins::new(&host.bpffs),
        weft::facts::node_name(host.node.as_deref()),
    )
    .await
}

async fn diff(dir: &Path, host: &HostArgs, output: Output, verbose: bool) -> ExitCode {
    let r = async {
        let cfg = run::load(dir)?;
        let h = open(host).await?;
        run::plan(&h, &cfg).await
    }
    .await;
    let planned = match r {
        Ok(p) => p,
        Err(RunError::Invalid(d)) => {
            eprintln!("{d}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("weft: {e}");
            return ExitCode::from(2);
        }
    };
    let changes = !planned.ops.is_empty();
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "changes": changes,
                "operations": planned.ops,
                "warnings": planned.desired.warnings,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("plan serializes")
            );
        }
        Output::Text => {
            for w in &planned.desired.warnings {
                eprintln!("warning: {w}");
            }
            print!(
                "{}",
                weft::plan::render_diff(
                    &planned.observed,
                    &planned.desired.state,
                    &dir.display().to_string(),
                    &planned.desired.rule_names()
                )
            );
            if verbose {
                for (i, op) in planned.ops.iter().enumerate() {
                    println!("# {:>3}. {}", i + 1, op.describe());
                }
            }
            if !changes {
                eprintln!("no changes: the live state matches {}", dir.display());
            }
        }
    }
    ExitCode::from(u8::from(changes))
}

async fn converge(
    h: &mut Host,
    desired: &HostState,
    ops: &[weft::plan::Op],
    label: &str,
) -> Result<HostState, RunError> {
    let mut applier = weft::apply::Applier::new(&h.pins, &h.nl, &h.facts);
    applier
        .run(ops, |i, n, op| eprintln!("[{i}/{n}] {}", op.describe()))
        .await?;
    h.refresh_facts().await?;
    let after = h.observe(desired).await?;
    if after != *desired {
        eprintln!(
            "{}",
            weft::plan::render_diff(&after, desired, label, &Default::default())
        );
    }
    Ok(after)
}

async fn apply(dir: &Path, host: &HostArgs) -> ExitCode {
    let r = async {
        let cfg = run::load(dir)?;
        let mut h = open(host).await?;
        let planned = run::plan(&h, &cfg).await?;
        for w in &planned.desired.warnings {
            eprintln!("warning: {w}");
        }
        if planned.ops.is_empty() {
            eprintln!("no changes: the live state matches {}", dir.display());
            return Ok(true);
        }
        let after = converge(
            &mut h,
            &planned.desired.state,
            &planned.ops,
            &dir.display().to_string(),
        )
        .await?;
        Ok::<bool, RunError>(after == planned.desired.state)
    }
    .await;
    match r {
        Ok(true) => {
            eprintln!("applied: the live state matches {}", dir.display());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!(
                "weft: applied, but the live state still differs from {} (diff above)",
                dir.display()
            );
            ExitCode::from(2)
        }
        Err(e) => report(&e),
    }
}

async fn teardown(host: &HostArgs) -> ExitCode {
    let r = async {
        let mut h = open(host).await?;
        let empty = HostState::default();
        let observed = h.observe(&empty).await?;
        let ops = weft::plan::plan(&empty, &observed, Default::default());
        if ops.is_empty() {
            eprintln!("nothing to remove");
            return Ok(true);
        }
        let after = converge(&mut h, &empty, &ops, "nothing").await?;
        // The pin directories themselves.
        for d in [
            h.pins.links(),
            h.pins.progs(),
            h.pins.maps(),
            h.pins.root.clone(),
        ] {
            let _ = std::fs::remove_dir(d);
        }
        Ok::<bool, RunError>(after == empty)
    }
    .await;
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => report(&e),
    }
}
