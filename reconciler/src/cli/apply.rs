//! `weft apply DIR`: converge, then observe again; exit 0 only if the live state is the desired
//! one, 1 if the files are invalid (nothing is touched), 2 otherwise.

use std::path::Path;
use std::process::ExitCode;

use weft::run::{self, RunError};

use super::{progress, report, HostArgs};

pub async fn run(dir: &Path, host: &HostArgs) -> ExitCode {
    let label = dir.display().to_string();
    let r = async {
        let cfg = run::load(dir)?;
        let mut h = host.open().await?;
        let (planned, outcome) = run::apply_config(&mut h, &cfg, progress).await?;
        for w in &planned.desired.warnings {
            eprintln!("warning: {w}");
        }
        if outcome.ops == 0 {
            eprintln!("no changes: the live state matches {label}");
            return Ok(true);
        }
        let converged = outcome.converged(&planned.desired.state);
        if !converged {
            let names = planned.desired.names();
            eprint!(
                "{}",
                weft::plan::render_diff(&outcome.after, &planned.desired.state, &label, &names)
            );
        }
        Ok::<bool, RunError>(converged)
    }
    .await;
    match r {
        Ok(true) => {
            eprintln!("applied: the live state matches {label}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("weft: applied, but the live state still differs from {label} (diff above)");
            ExitCode::from(2)
        }
        Err(e) => report(&e),
    }
}
