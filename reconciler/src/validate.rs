//! What `weft validate` finds beyond the files: the desired state of each node, computed for
//! a host assumed from the files alone (`desired::check_node`), and what it would break: maps
//! too small for their entries, endpoints sharing an interface or an address. An apply
//! refuses those same states before it touches anything; validate says so, at the resource
//! to change, before a host is ever asked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use weft_model::{Config, Diagnostic, Kind, ResourceId};

use crate::desired::{self, DesiredError};

/// The problems of the desired state on `node`, or on every node an endpoint names.
pub fn node_problems(dir: &Path, cfg: &Config, node: Option<&str>) -> Vec<Diagnostic> {
    let nodes: BTreeSet<&str> = match node {
        Some(n) => BTreeSet::from([n]),
        None => cfg
            .workload_endpoints
            .iter()
            .filter_map(|w| w.value.spec.node.as_deref())
            .collect(),
    };
    let mut problems = Vec::new();
    for node in nodes {
        let Err(e) = desired::check_node(cfg, node) else {
            continue;
        };
        match e {
            DesiredError::MapsFull(full) => {
                for f in full {
                    problems.push(at_settings(dir, cfg, node, format!("on node {node}, {f}")));
                }
            }
            DesiredError::SharedInterface { ref b, .. }
            | DesiredError::SharedAddress { ref b, .. } => {
                problems.push(at_endpoint(dir, cfg, b, format!("on node {node}: {e}")));
            }
            e => problems.push(Diagnostic {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                resource: None,
                message: format!("on node {node}: {e}"),
            }),
        }
    }
    problems
}

/// A problem of map sizes, at the FelixConfiguration that sizes the maps of `node`
/// (`node.<node>`, else `default`), or at the directory when there is none.
fn at_settings(dir: &Path, cfg: &Config, node: &str, message: String) -> Diagnostic {
    let named = |name: &str| {
        cfg.felix_configurations
            .iter()
            .find(|f| f.value.metadata.name == name)
    };
    match named(&format!("node.{node}")).or_else(|| named("default")) {
        Some(f) => Diagnostic {
            file: f.source.file.to_path_buf(),
            line: f.source.line,
            column: f.source.column,
            resource: Some(ResourceId {
                kind: Kind::FelixConfiguration,
                namespace: None,
                name: f.value.metadata.name.clone(),
            }),
            message,
        },
        None => Diagnostic {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            resource: None,
            message: format!("{message} (in a FelixConfiguration named default)"),
        },
    }
}

/// A problem at the WorkloadEndpoint `name` (`namespace/name`).
fn at_endpoint(dir: &Path, cfg: &Config, name: &str, message: String) -> Diagnostic {
    let found = cfg.workload_endpoints.iter().find(|w| {
        let m = &w.value.metadata;
        match &m.namespace {
            Some(ns) => {
                name.strip_prefix(ns.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    == Some(m.name.as_str())
            }
            None => m.name == name,
        }
    });
    match found {
        Some(w) => Diagnostic {
            file: w.source.file.to_path_buf(),
            line: w.source.line,
            column: w.source.column,
            resource: Some(ResourceId {
                kind: Kind::WorkloadEndpoint,
                namespace: w.value.metadata.namespace.clone(),
                name: w.value.metadata.name.clone(),
            }),
            message,
        },
        None => Diagnostic {
            file: PathBuf::from(dir),
            line: 0,
            column: 0,
            resource: None,
            message,
        },
    }
}
