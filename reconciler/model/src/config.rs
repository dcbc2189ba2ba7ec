//! The loaded configuration: every resource with where it came from, the policy IR, and the
//! label and settings lookups that depend on several resources at once (an endpoint's labels
//! come from itself, its profiles and its namespace; a node's settings from two
//! FelixConfigurations).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{Diagnostic, Item, Kind};
use crate::ir::{PolicyIr, RuleIr};
use crate::resources::calico::FelixConfiguration;
use crate::resources::calico::{
    Action, GlobalNetworkPolicy, GlobalNetworkSet, HostEndpoint, IPPool, NetworkPolicy, NetworkSet,
    Node, Profile, Tier, WorkloadEndpoint,
};
use crate::resources::felix::FelixConfigurationSpec;
use crate::resources::k8s::{EndpointSlice, KubernetesNetworkPolicy, Namespace, Service};
use crate::selector::{
    NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, NAME_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_LABEL_PREFIX,
};
use crate::validate::DEFAULT_TIER_ORDER;

/// Prefix of the profiles Calico makes for Kubernetes namespaces.
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";
/// The profile that allows everything both ways, always defined.
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

/// Everything read from a configuration directory, valid and cross-checked. Resources are in
/// load order (files in byte order of their relative path, documents in file order).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub workload_endpoints: Vec<Item<WorkloadEndpoint>>,
    pub host_endpoints: Vec<Item<HostEndpoint>>,
    pub network_policies: Vec<Item<NetworkPolicy>>,
    pub global_network_policies: Vec<Item<GlobalNetworkPolicy>>,
    pub tiers: Vec<Item<Tier>>,
    /// The Profiles in the files, then one `kns.<namespace>` per Namespace (with the
    /// Namespace's source) and the built-in `projectcalico-default-allow`.
    pub profiles: Vec<Item<Profile>>,
    pub network_sets: Vec<Item<NetworkSet>>,
    pub global_network_sets: Vec<Item<GlobalNetworkSet>>,
    pub felix_configurations: Vec<Item<FelixConfiguration>>,
    pub nodes: Vec<Item<Node>>,
    pub ip_pools: Vec<Item<IPPool>>,
    pub k8s_network_policies: Vec<Item<KubernetesNetworkPolicy>>,
    pub namespaces: Vec<Item<Namespace>>,
    pub services: Vec<Item<Service>>,
    pub endpoint_slices: Vec<Item<EndpointSlice>>,
    /// Every policy (Calico NetworkPolicy and GlobalNetworkPolicy, Kubernetes NetworkPolicy)
    /// in load order; shared by copies of the configuration, as the resources are.
    pub policies: Vec<Arc<PolicyIr>>,
    /// Rules of every profile in `profiles`, by name: (ingress, egress).
    pub(crate) profile_rules: BTreeMap<String, (Vec<RuleIr>, Vec<RuleIr>)>,
    /// How many of `profiles` weft made (namespace profiles and the default-allow one).
    pub(crate) synthesized_profiles: usize,
    /// What the files leave to weft to decide, and should say, each at its resource: a
    /// policy without a namespace taken to be in "default", say. Not problems: the
    /// configuration is valid.
    pub warnings: Vec<Diagnostic>,
}

/// A tier as the compiler needs it, the implicit default tier included.
#[derive(Debug, Clone, PartialEq)]
pub struct TierIr {
    pub name: String,
    /// Lower first; None sorts after every number.
    pub order: Option<f64>,
    /// Deny or Pass: what happens when the tier's policies apply but no rule decides.
    pub default_action: Action,
}

impl Config {
    /// How many resources were read (the profiles weft makes itself not counted).
    pub fn resource_count(&self) -> usize {
        self.workload_endpoints.len()
            + self.host_endpoints.len()
            + self.network_policies.len()
            + self.global_network_policies.len()
            + self.tiers.len()
            + (self.profiles.len() - self.synthesized_profiles)
            + self.network_sets.len()
            + self.global_network_sets.len()
            + self.felix_configurations.len()
            + self.nodes.len()
            + self.ip_pools.len()
            + self.k8s_network_policies.len()
            + self.namespaces.len()
            + self.services.len()
            + self.endpoint_slices.len()
    }

    /// The settings of one node: the FelixConfiguration `node.<node>` laid over `default`.
    pub fn felix_for_node(&self, node: &str) -> FelixConfigurationSpec {
        let find = |name: &str| {
            self.felix_configurations
                .iter()
                .find(|f| f.value.metadata.name == name)
                .map(|f| f.value.spec.clone())
                .unwrap_or_default()
        };
        find(&format!("node.{node}")).merged_over(&find("default"))
    }

    pub fn profile(&self, name: &str) -> Option<&Item<Profile>> {
        self.profiles.iter().find(|p| p.value.metadata.name == name)
    }

    /// The rules of a profile as IR: (ingress, egress).
    pub fn profile_rules(&self, name: &str) -> Option<(Vec<RuleIr>, Vec<RuleIr>)> {
        self.profile_rules.get(name).cloned()
    }

    /// The labels a namespace gives the entities in it (`pcns.`-prefixed), from the namespace's
    /// profile; at least `pcns.projectcalico.org/name`, even when no Namespace is defined.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .profile(&format!("{NAMESPACE_PROFILE_PREFIX}{namespace}"))
            .map(|p| BTreeMap::from(p.value.spec.labels_to_apply.clone()))
            .unwrap_or_default();
        labels
            .entry(format!("{NAMESPACE_LABEL_PREFIX}{NAME_LABEL}"))
            .or_insert_with(|| namespace.to_string());
        labels
    }

    /// Labels of the listed profiles, the first profile winning over later ones.
    fn profile_labels(&self, profiles: &[String]) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for name in profiles.iter().rev() {
            if let Some(p) = self.profile(name) {
                labels.extend(p.value.spec.labels_to_apply.clone());
            }
        }
        labels
    }

    /// The labels policy selectors see on a workload endpoint, built as Calico builds them:
    /// the namespace's labels, then the profiles' (first profile wins), then the endpoint's own
    /// (minus any `pcns.`/`pcsa.` labels, which would let it pose as another namespace's), then
    /// the labels Calico sets itself: namespace, orchestrator and service account.
    pub fn endpoint_labels(&self, wep: &WorkloadEndpoint) -> BTreeMap<String, String> {
        let ns = wep.namespace();
        let mut labels = self.namespace_labels(ns);
        labels.extend(self.profile_labels(&wep.spec.profiles));
        labels.extend(
            wep.metadata
                .labels
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with(NAMESPACE_LABEL_PREFIX)
                        && !k.starts_with(SERVICE_ACCOUNT_LABEL_PREFIX)
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        labels.insert(NAMESPACE_LABEL.into(), ns.into());
        labels.insert(
            ORCHESTRATOR_LABEL.into(),
            wep.spec
                .orchestrator
                .as_deref()
                .unwrap_or_default()
                .to_string(),
        );
        if let Some(sa) = wep
            .spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            labels.insert(SERVICE_ACCOUNT_LABEL.into(), sa.into());
            labels.insert(
                format!("{SERVICE_ACCOUNT_LABEL_PREFIX}{NAME_LABEL}"),
                sa.into(),
            );
        }
        labels
    }

    /// A host endpoint's labels: its own over its profiles'. It is in no namespace.
    pub fn host_endpoint_labels(&self, hep: &HostEndpoint) -> BTreeMap<String, String> {
        let mut labels = self.profile_labels(&hep.spec.profiles);
        labels.extend(hep.metadata.labels.clone());
        labels.remove(NAMESPACE_LABEL);
        labels
    }

    /// A network set's labels: its namespace's, its own, and the namespace label.
    pub fn network_set_labels(&self, set: &NetworkSet) -> BTreeMap<String, String> {
        let ns = set.namespace();
        let mut labels = self.namespace_labels(ns);
        labels.extend(set.metadata.labels.clone());
        labels.insert(NAMESPACE_LABEL.into(), ns.into());
        labels
    }

    /// A global network set's labels: its own. It is in no namespace.
    pub fn global_network_set_labels(&self, set: &GlobalNetworkSet) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from(set.metadata.labels.clone());
        labels.remove(NAMESPACE_LABEL);
        labels
    }

    /// The tiers in evaluation order (order, then name), the default tier included.
    pub fn tiers_in_order(&self) -> Vec<TierIr> {
        let mut tiers: Vec<TierIr> = self
            .tiers
            .iter()
            .map(|t| TierIr {
                name: t.value.metadata.name.clone(),
                order: if t.value.metadata.name == "default" {
                    Some(DEFAULT_TIER_ORDER)
                } else {
                    t.value.spec.order
                },
                default_action: if t.value.spec.default_action_is_pass() {
                    Action::Pass
                } else {
                    Action::Deny
                },
            })
            .collect();
        if !tiers.iter().any(|t| t.name == "default") {
            tiers.push(TierIr {
                name: "default".into(),
                order: Some(DEFAULT_TIER_ORDER),
                default_action: Action::Deny,
            });
        }
        tiers.sort_by(|a, b| {
            let key = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
            key(a.order)
                .total_cmp(&key(b.order))
                .then_with(|| a.name.cmp(&b.name))
        });
        tiers
    }

    /// The policies of one tier in evaluation order: by order, ties broken by name as Calico
    /// breaks them (felix's policy sorter compares "name/namespace/kind", the most specific part
    /// first), whatever the kinds.
    pub fn policies_in_tier(&self, tier: &str) -> Vec<&PolicyIr> {
        // The bytes of "name/namespace/kind", compared as that string is, without making it:
        // a tier holds up to tens of thousands of policies.
        fn tie(p: &PolicyIr) -> impl Iterator<Item = u8> + '_ {
            let kind = match p.id.kind {
                Kind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
                k => k.kind_name(),
            };
            p.id.name
                .bytes()
                .chain(*b"/")
                .chain(p.id.namespace.as_deref().unwrap_or_default().bytes())
                .chain(*b"/")
                .chain(kind.bytes())
        }
        let mut policies: Vec<&PolicyIr> = self
            .policies
            .iter()
            .map(|p| &**p)
            .filter(|p| p.tier == tier)
            .collect();
        policies.sort_by(|a, b| {
            let key = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
            key(a.order)
                .total_cmp(&key(b.order))
                .then_with(|| tie(a).cmp(tie(b)))
        });
        policies
    }
}
