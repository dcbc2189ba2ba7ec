//! The resource types weft reads, one module per API group. Field names are exactly the
//! upstream ones (Calico's `projectcalico.org/v3`, Kubernetes' `v1`, `networking.k8s.io/v1` and
//! `discovery.k8s.io/v1`); unknown fields are errors.

pub mod calico;
pub mod felix;
pub mod k8s;
pub mod meta;

use std::fmt;
use std::sync::OnceLock;

/// Values parsed from a resource's fields on first use (addresses from strings), kept next to
/// the resource so accessors can hand out slices. Not part of the resource's data: it is
/// skipped by serde and the schema, and never makes two resources unequal.
#[derive(Clone, Default)]
pub struct Parsed<T>(OnceLock<T>);

impl<T> Parsed<T> {
    pub(crate) fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }
}

impl<T> PartialEq for Parsed<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parsed")
    }
}
