//! weft: a file-driven eBPF dataplane. See docs/design.md for the flow from files to kernel.

pub mod abi;
pub mod apply;
pub mod bpf;
pub mod confirm;
pub mod daemon;
pub mod desired;
pub mod dump;
pub mod events;
pub mod facts;
pub mod guard;
pub mod incremental;
pub mod kernel;
pub mod netlink;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod run;
pub mod services;
pub mod state;
pub mod statedir;
pub mod takeover;
#[cfg(test)]
mod testdir;
pub mod timing;
pub mod validate;
pub mod warning;
pub mod writer;
