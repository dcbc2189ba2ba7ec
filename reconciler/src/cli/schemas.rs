//! `weft schemas DIR`: the JSON Schemas (draft-07) of every kind, for yaml-language-server.

use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> ExitCode {
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
