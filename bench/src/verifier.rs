//! `weft-bench verifier`: the verifier's cost of every program weft ships, for the suite's
//! table: `weft verifier` (weft::bpf::verifier) measured on this kernel, one row per program
//! and instruction set, the costliest of its settings' variants.

use std::process::ExitCode;

use weft::bpf::verifier::{self, ProgramCost, BUDGET, INSN_LIMIT};

use crate::report::{Common, Report, Row};

const COMMAND: &str = "weft verifier";

pub fn run(common: Common, _args: &[String]) -> ExitCode {
    let costs = verifier::measure();
    let mut rows = Vec::new();
    // Each (program, ISA) once, in the order measured.
    let mut keys: Vec<(&str, String, verifier::Isa)> = Vec::new();
    for c in &costs {
        let k = (c.object, c.program.clone(), c.isa);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut all_met = true;
    for (object, program, isa) in keys {
        let variants: Vec<&ProgramCost> = costs
            .iter()
            .filter(|c| c.object == object && c.program == program && c.isa == isa)
            .collect();
        let worst = variants
            .iter()
            .max_by_key(|c| (!c.loaded, c.insns_processed.unwrap_or(u32::MAX)))
            .expect("at least one variant");
        let met = variants.iter().all(|c| c.within_budget());
        all_met &= met;
        let value = f64::from(worst.insns_processed.unwrap_or(0));
        rows.push(Row {
            name: format!("{program} ({}, {})", isa.as_str(), worst.settings),
            value,
            unit: "insns".into(),
            runs: Some(variants.len() as u32),
            baseline: Some(f64::from(INSN_LIMIT)),
            baseline_name: Some("the verifier's limit".into()),
            ratio: Some(value / f64::from(INSN_LIMIT)),
            target: Some("ratio <= 0.25".into()),
            met: Some(met),
            detail: Some(if worst.loaded {
                format!(
                    "peak states {}, verified in {} ms, {} bytes jited; the costliest of {} variant(s)",
                    worst.peak_states.map_or("-".into(), |v| v.to_string()),
                    worst
                        .verification_us
                        .map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0)),
                    worst.jited_bytes.map_or("-".into(), |v| v.to_string()),
                    variants.len()
                )
            } else {
                format!(
                    "REJECTED: {}",
                    worst
                        .error
                        .as_deref()
                        .and_then(|e| e.lines().last())
                        .unwrap_or("")
                )
            }),
            command: COMMAND.into(),
            ..Default::default()
        });
    }
    let report = Report {
        subcommand: "verifier".into(),
        title: format!(
            "the verifier's cost of every program on Linux {}",
            weft::bpf::features::kernel_release()
        ),
        rows,
        notes: vec![format!(
            "Instructions processed (the count the verifier's limit of {INSN_LIMIT} applies to) for each program as shipped (clang's default ISA) and built for ISA v2 and v3, the costliest of the variants its .rodata settings make (DefaultEndpointToHostAction; connect-time load balancing of UDP and the netns check). weft's budget is a quarter of the limit ({BUDGET}): golden/tests/verifier.rs fails above it, here and in every kernel of vm-tests/matrix. `weft verifier` prints every variant."
        )],
    };
    if common.json {
        report.print_json();
    } else {
        println!("{}\n$ {COMMAND}\n", report.title);
        for r in &report.rows {
            println!(
                "{:<55} {:>8} {:>6.2}%  {}",
                r.name,
                r.value,
                r.ratio.unwrap_or_default() * 100.0,
                r.detail.clone().unwrap_or_default()
            );
        }
    }
    if all_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
