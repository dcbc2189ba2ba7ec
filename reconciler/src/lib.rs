//! weft: a file-driven eBPF dataplane. See docs/design.md for the flow from files to kernel.

pub mod bpf;
pub mod policy;
