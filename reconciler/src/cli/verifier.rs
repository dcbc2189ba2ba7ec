//! `weft verifier`: every program weft loads, in every variant, as this kernel's verifier
//! sees it (see `weft::bpf::verifier`).

use std::process::ExitCode;

use weft::bpf::verifier::{self, ProgramCost, BUDGET, INSN_LIMIT};

use super::{say, Output};

pub fn run(output: Output) -> ExitCode {
    let kernel = weft::bpf::features::kernel_release();
    let costs = verifier::measure();
    let failed = costs.iter().filter(|c| !c.loaded).count();
    let over = costs
        .iter()
        .filter(|c| c.loaded && !c.within_budget())
        .count();
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "kernel": kernel,
                "limit": INSN_LIMIT,
                "budget": BUDGET,
                "loaded": costs.len() - failed,
                "programs": costs,
            });
            println!("{doc:#}");
        }
        Output::Text => print!("{}", render(&kernel, &costs)),
    }
    if failed + over > 0 {
        say(format_args!(
            "weft verifier: {failed} program(s) did not load, {over} over the budget of {BUDGET} \
             instructions (a quarter of the verifier's limit)"
        ));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn render(kernel: &str, costs: &[ProgramCost]) -> String {
    let mut rows = vec![[
        "object".to_string(),
        "program".into(),
        "isa".into(),
        "settings".into(),
        "insns processed".into(),
        "of limit".into(),
        "peak states".into(),
        "verify ms".into(),
        "jited bytes".into(),
    ]];
    let opt = |v: Option<u32>| v.map_or("-".into(), |v| v.to_string());
    for c in costs {
        rows.push([
            c.object.to_string(),
            c.program.clone(),
            c.isa.as_str().into(),
            c.settings.clone(),
            opt(c.insns_processed),
            c.share_of_limit()
                .map_or("-".into(), |s| format!("{:.2}%", s * 100.0)),
            opt(c.peak_states),
            c.verification_us
                .map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0)),
            if c.loaded {
                opt(c.jited_bytes)
            } else {
                "REJECTED".into()
            },
        ]);
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = format!(
        "kernel {kernel}: {} of {} programs loaded; verifier limit {INSN_LIMIT} instructions, \
         weft's budget {BUDGET}\n",
        costs.iter().filter(|c| c.loaded).count(),
        costs.len()
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= 4 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        s += line.join("  ").trim_end();
        s += "\n";
    }
    for c in costs.iter().filter(|c| !c.loaded) {
        s += &format!(
            "\n{} {} ({}, {}) was rejected:\n{}\n",
            c.object,
            c.program,
            c.isa.as_str(),
            c.settings,
            c.error.as_deref().unwrap_or("")
        );
    }
    s
}
