//! How the model names resources and reports problems: every problem is a `Diagnostic` with a
//! file, line and column and, when known, the resource; a failed load returns all of them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The kinds of resource weft reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    WorkloadEndpoint,
    HostEndpoint,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    Profile,
    NetworkSet,
    GlobalNetworkSet,
    FelixConfiguration,
    Node,
    IPPool,
    KubernetesNetworkPolicy,
    Namespace,
    Service,
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::WorkloadEndpoint,
        Kind::HostEndpoint,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::Tier,
        Kind::Profile,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::FelixConfiguration,
        Kind::Node,
        Kind::IPPool,
        Kind::KubernetesNetworkPolicy,
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
    ];

    /// The `kind` field as upstream writes it.
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::Tier => "Tier",
            Kind::Profile => "Profile",
            Kind::NetworkSet => "NetworkSet",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::Node => "Node",
            Kind::IPPool => "IPPool",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The `apiVersion` field the kind is read with.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => "networking.k8s.io/v1",
            Kind::Namespace | Kind::Service => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            _ => "projectcalico.org/v3",
        }
    }

    /// The kind written as `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.kind_name() == kind)
    }

    /// True for kinds whose resources live in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::WorkloadEndpoint
                | Kind::NetworkPolicy
                | Kind::NetworkSet
                | Kind::KubernetesNetworkPolicy
                | Kind::Service
                | Kind::EndpointSlice
        )
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Both API groups have a NetworkPolicy; say which one.
            Kind::KubernetesNetworkPolicy => f.write_str("NetworkPolicy (networking.k8s.io)"),
            k => f.write_str(k.kind_name()),
        }
    }
}

/// Names one resource: kind, namespace (for namespaced kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ResourceId {
    /// `namespace/name`, or `name` for cluster-wide resources.
    pub fn namespaced_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.namespaced_name())
    }
}

/// Where a resource's document (or list item) starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// Shared by every resource of the file (a configuration is copied often, its 10,000
    /// paths need not be).
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Source {
    /// Where the resource comes in load order: its file (the bytes of the path), then its
    /// place in the file.
    pub fn load_order(&self) -> (&[u8], usize, usize) {
        use std::os::unix::ffi::OsStrExt;
        (self.file.as_os_str().as_bytes(), self.line, self.column)
    }
}

fn serialize_path<S: Serializer>(p: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    Serialize::serialize(&**p, s)
}

impl Source {
    /// The source of things weft makes itself, such as the built-in default-allow profile.
    pub fn builtin() -> Source {
        Source {
            file: Arc::from(Path::new("<built-in>")),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A resource together with where it was read. The resource is shared: a process that keeps
/// the parsed files and the configuration made from them (`Documents`), or a last good
/// configuration beside the current one, holds each resource once.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<T> {
    pub source: Source,
    pub value: Arc<T>,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub resource: Option<ResourceId>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load. Displayed one per line, sorted by file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Sorts by position (the order `Display` uses) and drops exact repeats.
    /// Files compare by the bytes of their path, the order they are loaded in.
    pub fn sort(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        self.0.sort_by(|a, b| {
            let key = |d: &Diagnostic| (d.file.as_os_str().as_bytes().to_vec(), d.line, d.column);
            key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
        });
        self.0.dedup();
    }
}

impl Diagnostics {
    /// Keeps the first `n` problems of each file (in the order `sort` gives) and says how many
    /// more there are, where the first of them is.
    pub(crate) fn cap_per_file(&mut self, n: usize) {
        let mut kept: Vec<Diagnostic> = Vec::with_capacity(self.0.len().min(n * 4));
        let mut i = 0;
        while i < self.0.len() {
            let file = &self.0[i].file;
            let end = i + self.0[i..].iter().take_while(|d| &d.file == file).count();
            kept.extend(self.0[i..end.min(i + n)].iter().cloned());
            if end - i > n {
                let first = &self.0[i + n];
                kept.push(Diagnostic {
                    file: first.file.clone(),
                    line: first.line,
                    column: first.column,
                    resource: None,
                    message: format!(
                        "{} more problems in this file from here on, not listed; fix the ones listed and validate again",
                        end - i - n
                    ),
                });
            }
            i = end;
        }
        self.0 = kept;
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.clone();
        sorted.sort();
        for (i, d) in sorted.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_position_and_resource() {
        let d = Diagnostic {
            file: "p/a.yaml".into(),
            line: 3,
            column: 7,
            resource: Some(ResourceId {
                kind: Kind::NetworkPolicy,
                namespace: Some("default".into()),
                name: "web".into(),
            }),
            message: "bad".into(),
        };
        assert_eq!(
            d.to_string(),
            "p/a.yaml:3:7: NetworkPolicy default/web: bad"
        );
        let d = Diagnostic {
            resource: None,
            ..d
        };
        assert_eq!(d.to_string(), "p/a.yaml:3:7: bad");
    }

    #[test]
    fn diagnostics_print_sorted_one_per_line() {
        let at = |file: &str, line, column| Diagnostic {
            file: file.into(),
            line,
            column,
            resource: None,
            message: "m".into(),
        };
        let ds = Diagnostics(vec![
            at("b.yaml", 1, 1),
            at("a/z.yaml", 1, 1),
            at("a.yaml", 9, 2),
            at("a.yaml", 9, 1),
        ]);
        // By the bytes of the path, as files are loaded: '.' sorts before '/'.
        assert_eq!(
            ds.to_string(),
            "a.yaml:9:1: m\na.yaml:9:2: m\na/z.yaml:1:1: m\nb.yaml:1:1: m"
        );
    }

    #[test]
    fn kinds_round_trip_and_tell_the_two_network_policies_apart() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_type(k.api_version(), k.kind_name()), Some(k));
        }
        assert_eq!(
            Kind::KubernetesNetworkPolicy.to_string(),
            "NetworkPolicy (networking.k8s.io)"
        );
        assert_eq!(Kind::NetworkPolicy.to_string(), "NetworkPolicy");
        assert_eq!(Kind::from_type("v1", "NetworkPolicy"), None);
    }
}
