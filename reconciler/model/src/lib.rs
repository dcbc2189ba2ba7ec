//! weft-model: the first, pure stage of weft. It reads a directory of YAML files (Calico
//! `projectcalico.org/v3` resources and a few Kubernetes ones), checks them, and turns policy of
//! every flavour into one IR. No kernel access and no network: the `weft` crate takes it from
//! here (desired state, observation, plan, apply).
//!
//! Entry points: [`load_dir`] (files to [`Config`], or every problem as [`Diagnostics`]) and
//! [`schemas`] (JSON Schemas for editors).

mod config;
mod diag;
mod ir;
mod load;
pub mod net;
mod problems;
pub mod resources;
mod schema;
pub mod selector;
mod validate;
mod yaml;

pub use config::{Config, TierIr, DEFAULT_ALLOW_PROFILE, NAMESPACE_PROFILE_PREFIX};
pub use diag::{Diagnostic, Diagnostics, Item, Kind, ResourceId, Source};
pub use ir::{EntityIr, IcmpMatch, PolicyIr, RuleIr};
pub use load::{load_dir, load_texts};
pub use net::{Cidr, IntOrString, PortMatch};
pub use resources::calico::*;
pub use resources::felix::*;
pub use resources::k8s::*;
pub use resources::meta::*;
pub use schema::{schema_file_name, schemas};
pub use selector::{Selector, SelectorError};

#[cfg(test)]
mod tests;
