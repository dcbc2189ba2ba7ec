//! Policy: from the policies, profiles and tiers that apply to an endpoint to the classifier
//! tables the kernel consults.
//!
//! `resolve` turns the IR into `flat` rules (conditions on the dimensions of a flow, the
//! compiler's input, with its reference evaluator); `classify` compiles them into step
//! functions, `tables` encodes those as the cells the kernel walks, `show` renders them for
//! people (with `lpm`, which writes a step function as the few prefixes it needs).

pub mod classify;
pub mod flat;
pub mod lpm;
pub mod resolve;
pub mod show;
pub mod tables;
