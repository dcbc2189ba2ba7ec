//! weft-model: the first, pure stage of weft. It reads a directory of YAML files (Calico
//! `projectcalico.org/v3` resources and Kubernetes NetworkPolicy, Namespace, Service and
//! EndpointSlice), checks them, and turns policy of every flavour into one IR. No kernel access
//! and no network: the `weft` crate takes it from here (desired state, observation, plan,
//! apply).
//!
//! - [`load_dir`]: files to a [`Config`], or every problem of the run as [`Diagnostics`]
//!   (file:line:column, the resource, what to write instead). Nothing half-loads. Only regular
//!   files of at most [`MAX_FILE_BYTES`] are read, links only inside the directory unless
//!   [`ReadOptions`] say otherwise ([`load_dir_with`]).
//! - [`Documents`]: the same, kept file by file for a process that runs on: only changed files
//!   are parsed again, and a change to Services and EndpointSlices alone patches the `Config`.
//! - [`Config`]: every resource as an [`Item`] (value and [`Source`]) in load order; the
//!   policies as [`PolicyIr`]; label lookups that fold in profiles and namespaces
//!   ([`Config::endpoint_labels`] and friends); profile rules as IR
//!   ([`Config::profile_rules`]); tiers in evaluation order ([`Config::tiers_in_order`]); a
//!   node's settings ([`Config::felix_for_node`], whose accessors give Calico's defaults).
//! - [`Selector`]: Calico's selector language, parsed with error columns and evaluated on a
//!   label map.
//! - [`schemas`]: draft-07 JSON Schemas of every kind, for editors.
//! - [`pcap`]: the subset of pcap filter expressions `bpfLogFilters` may use.

mod aliases;
mod config;
mod diag;
mod documents;
mod fastyaml;
mod ir;
mod load;
pub mod net;
pub mod pcap;
mod problems;
pub mod resources;
pub mod rng;
mod schema;
pub mod selector;
mod validate;
mod yaml;

pub use config::{Config, TierIr, DEFAULT_ALLOW_PROFILE, NAMESPACE_PROFILE_PREFIX};
pub use diag::{Diagnostic, Diagnostics, Item, Kind, ResourceId, Source};
pub use documents::{Delta, Documents, ServicesPart};
pub use ir::{EntityIr, IcmpMatch, PolicyIr, RuleIr};
pub use load::{load_dir, load_dir_with, load_texts, ReadOptions, MAX_FILE_BYTES};
pub use net::{Cidr, IntOrString, PortMatch};
pub use resources::calico::*;
pub use resources::felix::*;
pub use resources::k8s::*;
pub use resources::meta::*;
pub use schema::{schema_file_name, schemas};
pub use selector::{Selector, SelectorError};

#[cfg(test)]
mod tests;
