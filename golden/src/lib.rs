//! Shared pieces of weft's packet tests and benchmarks: hand-built packets, and a harness that
//! loads the real BPF objects under a private bpffs root, fills their maps the way
//! `weft apply` would, and runs the programs with BPF_PROG_TEST_RUN.

pub mod harness;
pub mod kernel;
pub mod packet;
pub mod underlay;
