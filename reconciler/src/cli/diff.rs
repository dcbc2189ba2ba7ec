//! `weft diff DIR`: the unified diff of the live and the desired state (kubectl diff's exit
//! codes: 0 none, 1 changes, 2 error), then what it does to routes that are not weft's (takes
//! them over, puts them back); `--output json` prints the plan.

use std::path::Path;
use std::process::ExitCode;

use weft::run::{self, RunError};

use super::{HostArgs, LoadArgs, Output};

pub async fn run(
    dir: &Path,
    load: LoadArgs,
    host: &HostArgs,
    output: Output,
    verbose: bool,
) -> ExitCode {
    let r = async {
        let cfg = run::load(dir, load.options())?;
        let h = host.open().await?;
        let planned = run::plan(&h, &cfg).await;
        // The process ends soon: freeing a large configuration piece by piece takes longer
        // than the kernel takes to take back the whole.
        std::mem::forget(cfg);
        planned
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
    // What `weft apply` would refuse (its guard), said here too: the diff below is what the
    // files ask for, not what an apply would do.
    let refusal = weft::guard::check(
        &planned.desired.state,
        &planned.observed,
        &weft::facts::node_name(host.node.as_deref()),
        host.guard,
    )
    .err()
    .map(|r| r.to_string());
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "changes": changes,
                "operations": planned.ops,
                "warnings": planned.desired.warnings,
                "refused": refusal,
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
            if let Some(r) = &refusal {
                eprintln!("weft apply would refuse this: {r}");
            }
            let label = dir.display().to_string();
            if planned.observed != planned.desired.state {
                print!(
                    "{}",
                    weft::plan::render_diff(
                        &planned.observed,
                        &planned.desired.state,
                        &label,
                        &planned.desired.names()
                    )
                );
            }
            print!("{}", weft::plan::render_foreign(&planned.ops));
            if verbose {
                for (i, op) in planned.ops.iter().enumerate() {
                    println!("# {:>3}. {}", i + 1, op.describe());
                }
            }
            if !changes {
                eprintln!("no changes: the live state matches {label}");
            }
        }
    }
    std::mem::forget(planned);
    ExitCode::from(u8::from(changes))
}
