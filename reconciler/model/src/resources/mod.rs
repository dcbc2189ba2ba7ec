//! The resource types weft reads, one module per API group. Field names are exactly the
//! upstream ones (Calico's `projectcalico.org/v3`, Kubernetes' `v1`, `networking.k8s.io/v1` and
//! `discovery.k8s.io/v1`); unknown fields are errors.

pub mod calico;
pub mod felix;
pub mod k8s;
pub mod meta;
