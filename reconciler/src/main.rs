//! The `weft` command: one module per subcommand under cli/.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::{HostArgs, Output};

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
    /// Check every resource under DIR; report all problems with file:line:column.
    /// Exit 0 valid, 1 invalid.
    Validate { dir: PathBuf },
    /// Show what `apply` would change, as a unified diff of the live and the desired state.
    /// Changes nothing. Exit 0 no changes, 1 changes, 2 error.
    Diff {
        dir: PathBuf,
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
    /// Show what is in weft's maps: policy with hit counts, endpoints, conntrack, counters,
    /// routes. As a table, or as JSON with --json.
    Dump {
        #[command(subcommand)]
        what: cli::dump::What,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { dir } => cli::validate::run(&dir),
        Command::Schemas { dir } => cli::schemas::run(&dir),
        Command::Diff {
            dir,
            host,
            output,
            verbose,
        } => cli::block_on(cli::diff::run(&dir, &host, output, verbose)),
        Command::Apply { dir, host } => cli::block_on(cli::apply::run(&dir, &host)),
        Command::Teardown { host } => cli::block_on(cli::teardown::run(&host)),
        Command::Dump { what } => cli::block_on(cli::dump::run(&what)),
    }
}
