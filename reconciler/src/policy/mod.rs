//! Policy: from the policies, profiles and tiers that apply to an endpoint to the classifier
//! tables the kernel consults.
//!
//! `resolve` turns the policy IR into ordered rules per endpoint and direction, `flat` is the
//! compiler's input (rules as conditions on the dimensions of a flow), `classify` the compiler,
//! `lpm` the step-function encoding it relies on, `tables` the map entries. `reference` is the
//! meaning all of that must keep: Calico's semantics evaluated on the configuration itself.

pub mod classify;
pub mod flat;
pub mod lpm;
pub mod reference;
pub mod resolve;
pub mod tables;
