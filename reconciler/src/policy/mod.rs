//! Policy: from the policies, profiles and tiers that apply to an endpoint to the classifier
//! tables the kernel consults.
//!
//! `resolve` turns the IR into `flat` rules (conditions on the dimensions of a flow, the
//! compiler's input, with its reference evaluator); `classify` compiles them into step
//! functions, `tables` encodes those as the cells the kernel walks, `show` renders them for
//! people (with `lpm`, which writes a step function as the few prefixes it needs).
//! `reference` is the meaning all of that must keep: Calico's semantics evaluated on the
//! configuration itself.

pub mod classify;
pub mod flat;
pub mod fxhash;
pub mod lpm;
pub mod reference;
pub mod resolve;
pub mod show;
pub mod tables;

use std::sync::Arc;

/// What compiling policy remembers from one run to the next, so that a long-running
/// reconciler recompiles after a small change only what the change touches: what selectors
/// picked (for the same entities), the class functions painted (by content), the tries
/// encoded from them (`tables::Nodes`) and the rulesets encoded (by their rules). Outputs
/// never depend on it: a compile with a warm cache says what a fresh one says.
#[derive(Clone, Default)]
pub struct Cache {
    pub selections: resolve::Selections,
    /// The local endpoints' rulesets, for a change to policies alone.
    pub endpoints: resolve::EndpointRulesets,
    /// The entities policy selects from, while their resources are the same.
    pub entities: crate::desired::EntitiesMemo,
    pub memo: classify::Memo,
    pub nodes: tables::Nodes,
    rulesets: fxhash::FxHashMap<u128, (Arc<tables::Cells>, bool)>,
    /// Not policy's, but remembered alike by the desired-state computation that carries this
    /// cache: each service's ports, while its resources are the same.
    pub services: crate::desired::computed::PortsMemo,
}

/// What tells one ruleset's spec from another's, for `Cache::ruleset`: two 64-bit hashes
/// with different seeds.
pub fn spec_key(spec: &flat::RulesetSpec) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = fxhash::FxHasher::with_seed(0x243f_6a88_85a3_08d3);
    let mut b = fxhash::FxHasher::with_seed(0x1319_8a2e_0370_7344);
    spec.hash(&mut a);
    spec.hash(&mut b);
    u128::from(a.finish()) << 64 | u128::from(b.finish())
}

impl Cache {
    /// The cells of `spec`'s ruleset: compiled and encoded, or as they were for the same
    /// rules before (and for every other endpoint with the same rules).
    pub fn ruleset(
        &mut self,
        spec: &flat::RulesetSpec,
    ) -> Result<Arc<tables::Cells>, classify::CompileError> {
        self.ruleset_keyed(spec_key(spec), spec)
    }

    /// `ruleset`, for a spec whose `spec_key` the caller has.
    pub fn ruleset_keyed(
        &mut self,
        key: u128,
        spec: &flat::RulesetSpec,
    ) -> Result<Arc<tables::Cells>, classify::CompileError> {
        if let Some((cells, used)) = self.rulesets.get_mut(&key) {
            *used = true;
            return Ok(cells.clone());
        }
        let compiled = classify::compile_with(spec, &mut self.memo)?;
        let cells = Arc::new(tables::encode_with(&compiled, &mut self.nodes));
        self.rulesets.insert(key, (cells.clone(), true));
        Ok(cells)
    }

    /// Forgets what no compile used since the last sweep.
    pub fn sweep(&mut self) {
        self.memo.sweep();
        self.nodes.sweep();
        self.rulesets.retain(|_, (_, used)| std::mem::take(used));
    }
}
