//! The verifier's budget: every program weft loads, in every variant (`weft verifier`), must
//! load on this kernel and use at most a quarter of the verifier's instruction limit. The
//! kernel matrix (vm-tests/matrix) runs this test on each kernel it boots.

use weft::bpf::verifier::{self, Isa, BUDGET};

#[test]
fn every_program_loads_far_inside_the_verifiers_budget() {
    if !weft_golden::kernel::available("verifier_budget") {
        return;
    }
    let costs = verifier::measure();
    let report: Vec<String> = costs
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}: {}",
                c.object,
                c.program,
                c.isa.as_str(),
                c.settings,
                match (c.loaded, c.insns_processed) {
                    (false, _) => format!("REJECTED\n{}", c.error.as_deref().unwrap_or("")),
                    (true, Some(n)) => format!("{n} instructions processed"),
                    (true, None) => "loaded, no count".into(),
                }
            )
        })
        .collect();
    eprintln!("{}", report.join("\n"));
    // Every shipped program, in each instruction set: nothing left out of the measure.
    for program in [
        "weft_from_wep",
        "weft_to_wep",
        "weft_from_hep",
        "weft_to_hep",
        "weft_from_nat",
        "weft_connect4",
        "weft_sendmsg4",
        "weft_recvmsg4",
        "weft_ctgc",
    ] {
        for isa in Isa::ALL {
            assert!(
                costs.iter().any(|c| c.program == program && c.isa == isa),
                "{program} ({}) was not measured",
                isa.as_str()
            );
        }
    }
    let bad: Vec<&String> = costs
        .iter()
        .zip(&report)
        .filter(|(c, _)| !c.within_budget())
        .map(|(_, r)| r)
        .collect();
    assert!(
        bad.is_empty(),
        "over the budget of {BUDGET} instructions, or rejected:\n{}",
        bad.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
