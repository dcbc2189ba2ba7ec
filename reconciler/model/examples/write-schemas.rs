//! Writes weft's JSON Schemas into `schemas/` at the top of the repository (or the directory
//! given as the first argument). The weft binary does the same with `weft schemas DIR`.

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("write-schemas: {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    for (name, json) in weft_model::schemas() {
        let path = dir.join(&name);
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("write-schemas: {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    println!(
        "wrote {} schemas to {}",
        weft_model::schemas().len(),
        dir.display()
    );
    std::process::ExitCode::SUCCESS
}
