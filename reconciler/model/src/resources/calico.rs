//! Calico's `projectcalico.org/v3` resources, with every field upstream has, spelled as upstream
//! spells it. Values that need checking (CIDRs, ports, selectors...) are kept as written and
//! checked by `validate`, so that all problems of a file are reported at once with positions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Condition, Labels, ObjectMeta, PolicyType};
use crate::net::{self, Cidr, IntOrString};

/// Declares a resource document: apiVersion and kind (constants in the schema), metadata, and
/// the given fields.
macro_rules! resource {
    ($(#[$m:meta])* $name:ident, $api:tt, $kind:tt, { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            #[schemars(extend("const" = $api))]
            pub api_version: String,
            #[schemars(extend("const" = $kind))]
            pub kind: String,
            pub metadata: ObjectMeta,
            $($body)*
        }
    };
}
pub(crate) use resource;

/// What a rule does with the packets it matches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier and go on with the next one.
    Pass,
    /// Log the packet and go on with the next rule.
    Log,
}

resource!(
    /// An interface of a workload (a container or VM) on some host; weft programs the host side
    /// of it.
    WorkloadEndpoint, "projectcalico.org/v3", "WorkloadEndpoint", {
    #[serde(skip)]
    #[schemars(skip)]
    parsed: super::Parsed<Vec<Cidr>>,
    #[serde(default)]
    pub spec: WorkloadEndpointSpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    /// Who created the workload (k8s, cni, ...); becomes the label projectcalico.org/orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Box<str>>,
    /// The host the endpoint is on; weft programs only the endpoints of its own node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Box<str>>,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Box<str>>,
    /// Becomes the label projectcalico.org/serviceaccount, for serviceAccounts rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<Box<str>>,
    /// The workload's addresses, each a single address (/32 or /128).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(rename = "ipNATs", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<Box<str>>,
    /// Profiles whose labels and rules apply to the endpoint, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host-side interface, e.g. cali0123456789a (at most 15 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<Box<str>>,
    /// The workload side's MAC address; weft adds a permanent neighbour entry for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Box<str>>,
    /// Named ports that policy rules may refer to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    // Boxed: 248 bytes that nearly every endpoint leaves unset (24 MB at 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<Box<QosControls>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointPort {
    #[serde(default)]
    pub name: String,
    #[schemars(with = "crate::net::PortProtocolSchema")]
    pub protocol: IntOrString,
    pub port: i64,
    #[serde(default)]
    pub host_port: i64,
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpNat {
    #[serde(rename = "internalIP")]
    pub internal_ip: String,
    #[serde(rename = "externalIP")]
    pub external_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QosControls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<IntOrString>,
}

resource!(
    /// One of the host's own interfaces (or all of them, with interfaceName "*").
    HostEndpoint, "projectcalico.org/v3", "HostEndpoint", {
    #[serde(skip)]
    #[schemars(skip)]
    parsed: super::Parsed<Vec<Cidr>>,
    #[serde(default)]
    pub spec: HostEndpointSpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostEndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// An interface name, or "*" for every interface of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(rename = "expectedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPort {
    pub name: String,
    #[schemars(with = "crate::net::PortProtocolSchema")]
    pub protocol: IntOrString,
    pub port: i64,
}

resource!(
    /// Rules for the endpoints of one namespace.
    NetworkPolicy, "projectcalico.org/v3", "NetworkPolicy", {
    #[serde(default)]
    pub spec: NetworkPolicySpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The tier the policy belongs to; "default" when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower orders are evaluated first; policies without an order come last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// The endpoints (of the policy's namespace) the policy applies to; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Ingress, Egress or both; derived from the rules present when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<PerformanceHint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PerformanceHint {
    AssumeNeededOnEveryNode,
}

resource!(
    /// Rules for endpoints in every namespace and for host endpoints.
    GlobalNetworkPolicy, "projectcalico.org/v3", "GlobalNetworkPolicy", {
    #[serde(default)]
    pub spec: GlobalNetworkPolicySpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    /// Untracked policy: evaluated before connection tracking, for host endpoints.
    #[serde(default)]
    pub do_not_track: bool,
    /// Evaluated before service NAT, for host endpoints.
    #[serde(rename = "preDNAT", default)]
    pub pre_dnat: bool,
    /// Also applies to traffic forwarded through a host endpoint.
    #[serde(default)]
    pub apply_on_forward: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Restricts the policy to endpoints in the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<PerformanceHint>,
}

/// One rule of a policy or profile: what it matches and what it does then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub action: Action,
    /// 4 or 6: match only that IP version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    /// TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::net::ProtocolSchema>")]
    pub protocol: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// What `protocol` takes; the rule matches every other protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::net::ProtocolSchema>")]
    pub not_protocol: Option<IntOrString>,
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    #[serde(default)]
    pub source: EntityRule,
    #[serde(default)]
    pub destination: EntityRule,
    /// Layer-7 matches; weft cannot enforce them and rejects rules that use them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IcmpFields {
    /// ICMP type, 0 to 254.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    /// ICMP code, 0 to 255; needs a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// The source or destination side of a rule. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Kubernetes service matches; not supported by weft yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<IntOrString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleMetadata {
    #[serde(
        default,
        deserialize_with = "crate::resources::meta::text_map",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub annotations: Labels,
}

resource!(
    /// An ordered group of policies; a packet that no policy of a tier decides is dropped (or
    /// passed on, with defaultAction Pass).
    Tier, "projectcalico.org/v3", "Tier", {
    #[serde(default)]
    pub spec: TierSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TierStatus>,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierSpec {
    /// Lower orders are evaluated first; tiers without an order come last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Deny (the default) or Pass: what happens to a packet that policies of the tier apply to
    /// but no rule decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

resource!(
    /// Labels and rules that endpoints listing the profile inherit; profile rules are evaluated
    /// after all tiers.
    Profile, "projectcalico.org/v3", "Profile", {
    #[serde(default)]
    pub spec: ProfileSpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels given to every endpoint that lists this profile (its own labels win).
    #[serde(
        default,
        deserialize_with = "crate::resources::meta::text_map",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub labels_to_apply: Labels,
}

resource!(
    /// Named networks of one namespace, selectable by labels in rules.
    NetworkSet, "projectcalico.org/v3", "NetworkSet", {
    #[serde(skip)]
    #[schemars(skip)]
    parsed: super::Parsed<Vec<Cidr>>,
    #[serde(default)]
    pub spec: NetworkSetSpec,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

resource!(
    /// Named networks outside any namespace, selectable by labels in rules.
    GlobalNetworkSet, "projectcalico.org/v3", "GlobalNetworkSet", {
    #[serde(skip)]
    #[schemars(skip)]
    parsed: super::Parsed<Vec<Cidr>>,
    #[serde(default)]
    pub spec: NetworkSetSpec,
});

resource!(
    /// Dataplane settings: `default` for every node, `node.<name>` for one node.
    FelixConfiguration, "projectcalico.org/v3", "FelixConfiguration", {
    #[serde(default)]
    pub spec: super::felix::FelixConfigurationSpec,
});

resource!(
    /// A host, with its addresses and tunnel settings.
    Node, "projectcalico.org/v3", "Node", {
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        rename = "ipv4VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    #[serde(
        rename = "vxlanTunnelMACAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    #[serde(
        rename = "ipv6VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    #[serde(
        rename = "vxlanTunnelMACAddrV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeBgpSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(
        rename = "ipv4IPIPTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    #[serde(
        rename = "routeReflectorClusterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    pub orchestrator: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeWireguardSpec {
    #[serde(
        rename = "interfaceIPv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    #[serde(
        rename = "interfaceIPv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAddress {
    pub address: String,
    /// CalicoNodeIP, InternalIP or ExternalIP.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInterface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    #[serde(
        rename = "wireguardPublicKeyV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_public_key_v6: Option<String>,
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

resource!(
    /// A range of workload addresses, with its encapsulation and NAT settings.
    IPPool, "projectcalico.org/v3", "IPPool", {
    #[serde(default)]
    pub spec: IpPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IpPoolStatus>,
});

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpPoolSpec {
    /// The pool's network, strictly masked, e.g. 10.244.0.0/16.
    pub cidr: String,
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapsulationMode>,
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapsulationMode>,
    /// Masquerade traffic from the pool to destinations outside every pool.
    #[serde(default)]
    pub nat_outgoing: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(rename = "disableBGPExport", default)]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<IpPoolAllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EncapsulationMode {
    Never,
    Always,
    CrossSubnet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IpPoolAllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpPoolStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The named ports of an endpoint as (name, protocol number, port), skipping entries that do
/// not parse (validation reports them).
fn named_ports<'a>(
    ports: impl Iterator<Item = (&'a str, &'a IntOrString, i64)>,
) -> Vec<(String, u8, u16)> {
    ports
        .filter(|(name, _, _)| !name.is_empty())
        .filter_map(|(name, proto, port)| {
            let proto = net::parse_protocol(proto).ok()?;
            let port = u16::try_from(port).ok()?;
            Some((name.to_string(), proto, port))
        })
        .collect()
}

impl WorkloadEndpoint {
    /// The endpoint's namespace ("default" when unset).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `namespace/name`.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace(), self.metadata.name)
    }

    /// The node the endpoint is on ("" when unset, which validation rejects).
    pub fn node(&self) -> &str {
        self.spec.node.as_deref().unwrap_or("")
    }

    /// The host-side interface ("" when unset, which validation rejects).
    pub fn interface_name(&self) -> &str {
        self.spec.interface_name.as_deref().unwrap_or("")
    }

    /// The endpoint's addresses, each a /32 or /128.
    pub fn ip_networks(&self) -> &[Cidr] {
        self.parsed.get_or_init(|| {
            self.spec
                .ip_networks
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
    }

    pub fn mac(&self) -> Option<[u8; 6]> {
        self.spec
            .mac
            .as_deref()
            .and_then(|m| net::parse_mac(m).ok())
    }

    pub fn profiles(&self) -> &[String] {
        &self.spec.profiles
    }

    /// Declared named ports as (name, protocol, port).
    pub fn named_ports(&self) -> Vec<(String, u8, u16)> {
        named_ports(
            self.spec
                .ports
                .iter()
                .map(|p| (p.name.as_str(), &p.protocol, p.port)),
        )
    }
}

impl HostEndpoint {
    pub fn node(&self) -> &str {
        self.spec.node.as_deref().unwrap_or("")
    }

    /// An interface name, "*" for all of the host's interfaces, or None (then the interface
    /// is the one that has one of the expected addresses).
    pub fn interface_name(&self) -> Option<&str> {
        self.spec
            .interface_name
            .as_deref()
            .filter(|s| !s.is_empty())
    }

    /// The expected addresses, each as a /32 or /128.
    pub fn expected_ips(&self) -> &[Cidr] {
        self.parsed.get_or_init(|| {
            self.spec
                .expected_ips
                .iter()
                .filter_map(|s| s.parse::<std::net::IpAddr>().ok().map(Cidr::host))
                .collect()
        })
    }

    pub fn profiles(&self) -> &[String] {
        &self.spec.profiles
    }

    pub fn named_ports(&self) -> Vec<(String, u8, u16)> {
        named_ports(
            self.spec
                .ports
                .iter()
                .map(|p| (p.name.as_str(), &p.protocol, p.port)),
        )
    }
}

impl NetworkSet {
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn nets(&self) -> &[Cidr] {
        self.parsed.get_or_init(|| {
            self.spec
                .nets
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
    }
}

impl GlobalNetworkSet {
    pub fn nets(&self) -> &[Cidr] {
        self.parsed.get_or_init(|| {
            self.spec
                .nets
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
    }
}

impl TierSpec {
    /// True if packets no rule of the tier decided go on to the next tier.
    pub fn default_action_is_pass(&self) -> bool {
        self.default_action == Some(Action::Pass)
    }
}
