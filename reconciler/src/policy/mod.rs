//! Policy: from the policies, profiles and tiers that apply to an endpoint to the classifier
//! tables the kernel consults.
//!
//! `resolve` turns the IR into `flat` rules (conditions on the dimensions of a flow, the
//! compiler's input, with its reference evaluator); `classify` compiles them into step
//! functions, `tables` encodes those as the cells the kernel walks, `show` renders them for
//! people (with `lpm`, which writes a step function as the few prefixes it needs).

pub mod classify;
pub mod flat;
pub mod fxhash;
pub mod lpm;
pub mod resolve;
pub mod show;
pub mod tables;

/// What compiling policy remembers from one run to the next, so that a long-running
/// reconciler recompiles after a small change only what the change touches: what selectors
/// picked (for the same entities) and the class functions painted (by content). Outputs never
/// depend on it: a compile with a warm cache says what a fresh one says.
#[derive(Clone, Default)]
pub struct Cache {
    pub selections: resolve::Selections,
    pub memo: classify::Memo,
}
