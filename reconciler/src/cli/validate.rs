//! `weft validate DIR`: every problem at once; exit 0 valid, 1 invalid.
//!
//! First the files and resources (weft-model), then what the desired state of each node would
//! break without asking its host (`weft::validate`).

use std::path::Path;
use std::process::ExitCode;

use weft_model::Diagnostics;

use super::LoadArgs;

pub fn run(dir: &Path, node: Option<&str>, load: LoadArgs) -> ExitCode {
    let r = weft_model::load_dir_with(dir, load.options()).and_then(|cfg| {
        let problems = weft::validate::node_problems(dir, &cfg, node);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Diagnostics(problems))
        }
    });
    match r {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} resources)",
                dir.display(),
                cfg.resource_count()
            );
            // The process ends now: freeing a large configuration piece by piece takes longer
            // than the kernel takes to take back the whole.
            std::mem::forget(cfg);
            ExitCode::SUCCESS
        }
        Err(d) => {
            eprintln!("{d}");
            eprintln!("{}: {} problem(s)", dir.display(), d.0.len());
            ExitCode::from(1)
        }
    }
}
