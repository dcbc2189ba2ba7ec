//! Policy: from the policies, profiles and tiers that apply to an endpoint to the classifier
//! tables the kernel consults.
//!
//! `flat` is the compiler's input (rules as conditions on the dimensions of a flow), `classify`
//! the compiler, `lpm` the step-function encoding it relies on.

pub mod classify;
pub mod flat;
pub mod lpm;
pub mod resolve;
pub mod tables;
