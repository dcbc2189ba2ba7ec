//! `weft validate DIR`: every problem at once; exit 0 valid, 1 invalid.

use std::path::Path;
use std::process::ExitCode;

use super::LoadArgs;

pub fn run(dir: &Path, load: LoadArgs) -> ExitCode {
    match weft_model::load_dir_with(dir, load.options()) {
        Ok(cfg) => {
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
