//! `weft validate DIR`: every problem at once; exit 0 valid, 1 invalid.
//!
//! First the files and resources (weft-model), then what the desired state of each node would
//! break without asking its host (`weft::validate`).

use std::path::Path;
use std::process::ExitCode;

use weft_model::Diagnostics;

use super::LoadArgs;

pub fn run(dir: &Path, node: Option<&str>, load: LoadArgs, json: bool) -> ExitCode {
    let r = weft_model::load_dir_with(dir, load.options()).and_then(|cfg| {
        let problems = weft::validate::node_problems(dir, &cfg, node);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Diagnostics(problems))
        }
    });
    if json {
        let (valid, resources, problems, warnings) = match &r {
            Ok(cfg) => (true, cfg.resource_count(), Vec::new(), cfg.warnings.clone()),
            Err(d) => {
                let mut d = d.clone();
                d.sort();
                (false, 0, d.0, Vec::new())
            }
        };
        let doc = serde_json::json!({
            "valid": valid,
            "resources": resources,
            "problems": problems.iter().map(object).collect::<Vec<_>>(),
            "warnings": warnings.iter().map(object).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("problems serialize")
        );
        if let Ok(cfg) = r {
            std::mem::forget(cfg);
        }
        return if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
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

/// A problem or warning as CI reads it.
fn object(d: &weft_model::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "resource": d.resource.as_ref().map(|r| serde_json::json!({
            "kind": r.kind.kind_name(),
            "namespace": r.namespace,
            "name": r.name,
        })),
        "message": d.message,
    })
}
