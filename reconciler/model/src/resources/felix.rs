//! FelixConfiguration: every field of Calico's FelixConfigurationSpec is accepted (so existing
//! Calico files load), each optional so that a node's configuration can be laid over the
//! cluster-wide one field by field. The settings weft acts on are typed and have accessors that
//! return Calico's default when the field is unset; the rest are kept loosely typed. One field
//! is weft's own, for what Calico does not have: `bpfExternalServiceAcceleration` (a file that
//! sets it is not Calico's any more).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::net::{Cidr, IntOrString, PROTO_TCP, PROTO_UDP};

/// Declares the spec struct (every field optional and skipped when unset) together with the
/// field-by-field merge used to lay `node.<name>` over `default`.
macro_rules! felix_spec {
    ($( $(#[$attr:meta])* $field:ident : $ty:ty, )*) => {
        /// The values of a FelixConfiguration. Unset fields take the value of the `default`
        /// configuration, then Calico's default (see the accessor methods).
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct FelixConfigurationSpec {
            $(
                $(#[$attr])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl FelixConfigurationSpec {
            /// `self` with every unset field taken from `base`.
            pub fn merged_over(&self, base: &FelixConfigurationSpec) -> FelixConfigurationSpec {
                FelixConfigurationSpec {
                    $( $field: self.$field.clone().or_else(|| base.$field.clone()), )*
                }
            }
        }
    };
}

felix_spec! {
    /// Not supported by weft: name the configuration `default` or `node.<name>` instead.
    node_selector: String,
    use_internal_dataplane_driver: bool,
    dataplane_driver: String,
    dataplane_watchdog_timeout: GoDuration,
    ipv6_support: bool,
    route_refresh_interval: GoDuration,
    interface_refresh_interval: GoDuration,
    iptables_refresh_interval: GoDuration,
    iptables_post_write_check_interval: GoDuration,
    iptables_lock_probe_interval: GoDuration,
    feature_detect_override: String,
    feature_gates: String,
    ipsets_refresh_interval: GoDuration,
    max_ipset_size: i64,
    iptables_backend: String,
    xdp_refresh_interval: GoDuration,
    netlink_timeout: GoDuration,
    metadata_addr: String,
    metadata_port: i64,
    openstack_region: String,
    /// Comma-separated prefixes of workload interface names (default "cali").
    interface_prefix: String,
    interface_exclude: String,
    chain_insert_mode: String,
    /// What happens to traffic from a workload to its own host once the workload's egress policy
    /// allowed it: Drop (default), Return (on to host endpoint policy) or Accept.
    default_endpoint_to_host_action: EndpointToHostAction,
    iptables_filter_allow_action: String,
    iptables_mangle_allow_action: String,
    iptables_filter_deny_action: String,
    log_prefix: String,
    log_action_rate_limit: String,
    log_action_rate_limit_burst: i64,
    log_file_path: String,
    log_severity_file: String,
    log_severity_screen: String,
    log_severity_sys: String,
    log_debug_filename_regex: String,
    ipip_enabled: bool,
    #[serde(rename = "ipipMTU")]
    ipip_mtu: i64,
    /// Whether weft sets up VXLAN to other nodes (default off).
    vxlan_enabled: bool,
    /// MTU of the VXLAN device; 0 (default) works it out from the host's interfaces.
    #[serde(rename = "vxlanMTU")]
    vxlan_mtu: i64,
    #[serde(rename = "vxlanMTUV6")]
    vxlan_mtu_v6: i64,
    /// UDP port of VXLAN traffic (default 4789).
    vxlan_port: i64,
    /// VXLAN network identifier (default 4096).
    #[serde(rename = "vxlanVNI")]
    vxlan_vni: i64,
    #[serde(rename = "allowVXLANPacketsFromWorkloads")]
    allow_vxlan_packets_from_workloads: bool,
    #[serde(rename = "allowIPIPPacketsFromWorkloads")]
    allow_ipip_packets_from_workloads: bool,
    reporting_interval: GoDuration,
    #[serde(rename = "reportingTTL")]
    reporting_ttl: GoDuration,
    endpoint_reporting_enabled: bool,
    endpoint_reporting_delay: GoDuration,
    endpoint_status_path_prefix: String,
    iptables_mark_mask: i64,
    disable_conntrack_invalid_check: bool,
    health_enabled: bool,
    health_host: String,
    health_port: i64,
    health_timeout_overrides: Vec<HealthTimeoutOverride>,
    prometheus_metrics_enabled: bool,
    prometheus_metrics_host: String,
    prometheus_metrics_port: i64,
    prometheus_go_metrics_enabled: bool,
    prometheus_process_metrics_enabled: bool,
    #[serde(rename = "prometheusWireGuardMetricsEnabled")]
    prometheus_wireguard_metrics_enabled: bool,
    #[serde(rename = "prometheusMetricsCAFile")]
    prometheus_metrics_ca_file: String,
    prometheus_metrics_cert_file: String,
    prometheus_metrics_key_file: String,
    prometheus_metrics_client_auth: String,
    /// Host ports that stay open inbound whatever the policy, so that a bad policy cannot lock
    /// operators out (default: SSH, DHCP, BGP, etcd, Kubernetes API and Typha ports).
    failsafe_inbound_host_ports: Vec<ProtoPort>,
    /// Host ports that stay reachable outbound whatever the policy (default: DNS, DHCP, BGP,
    /// etcd, Kubernetes API and Typha ports).
    failsafe_outbound_host_ports: Vec<ProtoPort>,
    kube_node_port_ranges: Vec<IntOrString>,
    policy_sync_path_prefix: String,
    usage_reporting_enabled: bool,
    usage_reporting_initial_delay: GoDuration,
    usage_reporting_interval: GoDuration,
    nat_port_range: IntOrString,
    nat_outgoing_address: String,
    nat_outgoing_exclusions: String,
    device_route_source_address: String,
    #[serde(rename = "deviceRouteSourceAddressIPv6")]
    device_route_source_address_ipv6: String,
    device_route_protocol: i64,
    remove_external_routes: bool,
    program_cluster_routes: String,
    ip_forwarding: String,
    external_nodes_list: Vec<String>,
    debug_memory_profile_path: String,
    debug_disable_log_dropping: bool,
    debug_simulate_calc_graph_hang_after: GoDuration,
    debug_simulate_dataplane_hang_after: GoDuration,
    debug_simulate_dataplane_apply_delay: GoDuration,
    debug_host: String,
    debug_port: i64,
    #[serde(rename = "iptablesNATOutgoingInterfaceFilter")]
    iptables_nat_outgoing_interface_filter: String,
    sidecar_acceleration_enabled: bool,
    /// Untracked ingress policy on host endpoints runs in XDP (Calico's default: true).
    xdp_enabled: bool,
    #[serde(rename = "genericXDPEnabled")]
    generic_xdp_enabled: bool,
    nftables_mode: String,
    nftables_flow_table_offload: String,
    nftables_flow_table_data_iface_pattern: String,
    nftables_refresh_interval: GoDuration,
    nftables_filter_allow_action: String,
    nftables_mangle_allow_action: String,
    nftables_filter_deny_action: String,
    nftables_mark_mask: i64,
    bpf_enabled: bool,
    #[serde(rename = "bpfOverlayHostSourceIP")]
    bpf_overlay_host_source_ip: String,
    bpf_disable_unprivileged: bool,
    #[serde(rename = "bpfJITHardening")]
    bpf_jit_hardening: String,
    /// Off (default), Info or Debug: how much the BPF programs log to the trace pipe.
    bpf_log_level: BpfLogLevel,
    bpf_conntrack_log_level: String,
    bpf_conntrack_mode: String,
    /// How long idle connection-tracking entries live, per state.
    bpf_conntrack_timeouts: BpfConntrackTimeouts,
    #[serde(rename = "bpfIPFragTimeout")]
    bpf_ip_frag_timeout: GoDuration,
    /// Per-interface pcap filter expressions that restrict debug logging; keys are interface
    /// names, "all", "weps" or "heps".
    bpf_log_filters: BTreeMap<String, String>,
    #[serde(rename = "bpfCTLBLogFilter")]
    bpf_ctlb_log_filter: String,
    /// Regular expression of the host interfaces that carry workload and service traffic.
    bpf_data_iface_pattern: String,
    bpf_l3_iface_pattern: String,
    bpf_connect_time_load_balancing_enabled: bool,
    /// TCP (default), Enabled or Disabled: whether connect() to a service address is translated
    /// at the socket, for TCP only or for every protocol.
    bpf_connect_time_load_balancing: BpfConnectTimeLoadBalancing,
    /// Enabled (default) or Disabled: whether host processes reach services through the NAT
    /// program when connect-time translation does not apply to them.
    #[serde(rename = "bpfHostNetworkedNATWithoutCTLB")]
    bpf_host_networked_nat_without_ctlb: EnabledDisabled,
    /// Tunnel (default) or DSR: how traffic from outside to a service reaches a remote backend.
    bpf_external_service_mode: BpfExternalServiceMode,
    /// Disabled (default) or XDP: a weft setting, not Calico's. With XDP, the packets of a known
    /// NodePort, external or LoadBalancer flow whose backend is on another node are sent on
    /// through the VXLAN tunnel from XDP on the data interface, before the host's stack sees
    /// them; a flow's first packet still takes the tc path.
    bpf_external_service_acceleration: BpfExternalServiceAcceleration,
    /// Clients in these networks are served in Tunnel mode even when the mode is DSR.
    #[serde(rename = "bpfDSROptoutCIDRs")]
    bpf_dsr_optout_cidrs: Vec<String>,
    bpf_ext_to_service_connmark: i64,
    bpf_kube_proxy_iptables_cleanup_enabled: bool,
    bpf_kube_proxy_min_sync_period: GoDuration,
    bpf_kube_proxy_healthz_port: i64,
    /// The range ("lo:hi", default 20000:29999) from which a new source port is picked when two
    /// flows would collide after NAT.
    #[serde(rename = "bpfPSNATPorts")]
    bpf_psnat_ports: IntOrString,
    /// Entries of the service frontend map (default 65536).
    #[serde(rename = "bpfMapSizeNATFrontend")]
    bpf_map_size_nat_frontend: i64,
    /// Entries of the service backend map (default 262144).
    #[serde(rename = "bpfMapSizeNATBackend")]
    bpf_map_size_nat_backend: i64,
    /// Entries of the session affinity map (default 65536).
    #[serde(rename = "bpfMapSizeNATAffinity")]
    bpf_map_size_nat_affinity: i64,
    /// Entries of the route map (default 262144).
    bpf_map_size_route: i64,
    /// Entries of the connection tracking map (default 512000).
    bpf_map_size_conntrack: i64,
    bpf_map_size_per_cpu_conntrack: i64,
    bpf_map_size_conntrack_scaling: String,
    bpf_map_size_conntrack_cleanup_queue: i64,
    /// Entries of the IP set map (default 1048576).
    #[serde(rename = "bpfMapSizeIPSets")]
    bpf_map_size_ip_sets: i64,
    /// Entries of the interface state map (default 1000).
    bpf_map_size_if_state: i64,
    bpf_host_conntrack_bypass: bool,
    #[serde(rename = "bpfIPFragmentReassemblyEnabled")]
    bpf_ip_fragment_reassembly_enabled: bool,
    /// Disabled, Strict or Loose (default): reverse-path filtering of packets from host interfaces.
    #[serde(rename = "bpfEnforceRPF")]
    bpf_enforce_rpf: BpfEnforceRpf,
    bpf_policy_debug_enabled: bool,
    bpf_force_track_packets_from_ifaces: Vec<String>,
    #[serde(rename = "bpfDisableGROForIfaces")]
    bpf_disable_gro_for_ifaces: String,
    /// Destinations that service NAT never translates.
    #[serde(rename = "bpfExcludeCIDRsFromNAT")]
    bpf_exclude_cidrs_from_nat: Vec<String>,
    /// MiB of each event ring buffer: flow logs (`weft flows`) and packet traces (`weft trace`).
    #[serde(rename = "bpfExportBufferSizeMB")]
    bpf_export_buffer_size_mb: i64,
    istio_ambient_mode: String,
    #[serde(rename = "istioDSCPMark")]
    istio_dscp_mark: IntOrString,
    cgroup_v2_path: String,
    flow_logs_policy_evaluation_mode: String,
    bpf_redirect_to_peer: String,
    /// TC (legacy clsact qdisc) or TCX (default where the kernel has it): how programs are
    /// attached to interfaces. Calico's Netkit is not supported by weft.
    bpf_attach_type: BpfAttachOption,
    flow_logs_flush_interval: GoDuration,
    flow_logs_collector_debug_trace: bool,
    flow_logs_goldmane_server: String,
    flow_logs_local_reporter: String,
    bpf_profiling: String,
    route_source: String,
    route_table_ranges: Vec<RouteTableIdRange>,
    route_table_range: RouteTableRange,
    route_sync_disabled: bool,
    ipv4_normal_route_priority: i64,
    ipv4_elevated_route_priority: i64,
    ipv6_normal_route_priority: i64,
    ipv6_elevated_route_priority: i64,
    live_migration_route_convergence_time: GoDuration,
    wireguard_enabled: bool,
    wireguard_enabled_v6: bool,
    wireguard_threading_enabled: bool,
    wireguard_listening_port: i64,
    wireguard_listening_port_v6: i64,
    wireguard_routing_rule_priority: i64,
    wireguard_interface_name: String,
    wireguard_interface_name_v6: String,
    #[serde(rename = "wireguardMTU")]
    wireguard_mtu: i64,
    #[serde(rename = "wireguardMTUV6")]
    wireguard_mtu_v6: i64,
    wireguard_host_encryption_enabled: bool,
    wireguard_keep_alive: GoDuration,
    aws_src_dst_check: String,
    service_loop_prevention: String,
    workload_source_spoofing: String,
    mtu_iface_pattern: String,
    #[serde(rename = "floatingIPs")]
    floating_ips: String,
    local_subnet_l2_reachability: String,
    local_subnet_l2_reachability_refresh_interval: GoDuration,
    windows_manage_firewall_rules: String,
    #[serde(rename = "goGCThreshold")]
    go_gc_threshold: i64,
    #[serde(rename = "goMemoryLimitMB")]
    go_memory_limit_mb: i64,
    go_max_procs: i64,
    #[serde(rename = "requireMTUFile")]
    require_mtu_file: bool,
    /// Largest number of backends of a Maglev service (default 100, at most 3000).
    bpf_maglev_max_endpoints_per_service: i64,
    /// Largest number of Maglev services (default 100, at most 3000).
    bpf_maglev_max_services: i64,
}

/// Deserializes a string and converts it, failing inside the string's own deserialization so
/// that the YAML error points at the value rather than at the mapping around it.
pub(crate) fn deserialize_str_with<'de, D, T, F>(d: D, f: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<F>(F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.0)(s).map_err(E::custom)
        }
    }
    d.deserialize_str(V(f))
}

/// Declares an enum that accepts its values in any letter case, as Calico does for the settings
/// whose schema pattern starts with `(?i)`. It serializes to the canonical spelling.
macro_rules! case_insensitive_enum {
    ($(#[$m:meta])* $name:ident { $( $(#[$vm:meta])* $variant:ident = $text:literal, )+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical spelling.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_str_with(d, |s| {
                    $name::ALL
                        .iter()
                        .find(|v| v.as_str().eq_ignore_ascii_case(s))
                        .copied()
                        .ok_or_else(|| {
                            let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                            format!("{s:?} is not a valid value; write one of {}", names.join(", "))
                        })
                })
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                schemars::json_schema!({
                    "type": "string",
                    "enum": [$($text),+]
                })
            }
        }
    };
}

case_insensitive_enum! {
    /// What happens to traffic from a workload to its own host.
    EndpointToHostAction {
        Drop = "Drop",
        /// Go on to the host endpoint's policy (or accept, if there is none).
        Return = "Return",
        Accept = "Accept",
    }
}

case_insensitive_enum! {
    BpfLogLevel {
        Off = "Off",
        Info = "Info",
        Debug = "Debug",
    }
}

case_insensitive_enum! {
    BpfExternalServiceMode {
        Tunnel = "Tunnel",
        /// Direct server return: the backend's node replies to the client itself.
        Dsr = "DSR",
    }
}

case_insensitive_enum! {
    BpfExternalServiceAcceleration {
        Disabled = "Disabled",
        /// Known flows to remote backends are forwarded from XDP.
        Xdp = "XDP",
    }
}

case_insensitive_enum! {
    BpfEnforceRpf {
        Disabled = "Disabled",
        Strict = "Strict",
        Loose = "Loose",
    }
}

/// How programs are attached to interfaces, as written (upstream's BPFAttachOption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BpfAttachOption {
    /// A clsact qdisc with a cls_bpf filter (`tc filter add ... bpf`).
    #[serde(rename = "TC")]
    Tc,
    /// A bpf_link on the interface's TCX hook (kernel 6.6 and later).
    #[serde(rename = "TCX")]
    Tcx,
    /// Calico's netkit devices; accepted by the schema so Calico files load, rejected by weft.
    Netkit,
}

/// How weft attaches programs to interfaces: the attach options it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BpfAttachType {
    /// A clsact qdisc with a cls_bpf filter (`tc filter add ... bpf`).
    Tc,
    /// A bpf_link on the interface's TCX hook (kernel 6.6 and later).
    Tcx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BpfConnectTimeLoadBalancing {
    #[serde(rename = "TCP")]
    Tcp,
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EnabledDisabled {
    Enabled,
    Disabled,
}

/// A Go duration such as "90s", "1m30s" or "500ms"; checked when the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoDuration(String);

impl GoDuration {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn duration(&self) -> Duration {
        parse_go_duration(&self.0).unwrap_or_default()
    }
}

impl std::str::FromStr for GoDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_go_duration(s).map(|_| GoDuration(s.to_string()))
    }
}

/// Parses a sequence of numbers with units (h, m, s, ms, us, µs, ns), e.g. "1h2m3.5s".
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{s:?} is not a duration; write a number with a unit, such as 90s, 1m30s or 500ms")
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str_with(d, str::parse)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as 90s, 1m30s or 500ms.",
            "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|µs|ns))+$|^0$"
        })
    }
}

/// A protocol, port and optional network, as in the failsafe port lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtoPort {
    /// tcp or udp (any case); tcp when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub port: i64,
    /// Only this remote network; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthTimeoutOverride {
    pub name: String,
    pub timeout: GoDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTableRange {
    pub min: i64,
    pub max: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTableIdRange {
    pub min: i64,
    pub max: i64,
}

/// A connection-tracking timeout: a duration, or "Auto" to take the kernel's netfilter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConntrackTimeout {
    After(Duration),
    Auto,
}

impl ConntrackTimeout {
    fn parse(s: &str) -> Result<ConntrackTimeout, String> {
        if s == "Auto" {
            Ok(ConntrackTimeout::Auto)
        } else {
            parse_go_duration(s)
                .map(ConntrackTimeout::After)
                .map_err(|e| format!("{e}, or Auto"))
        }
    }
}

/// A conntrack timeout as written: a duration or "Auto".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackTimeoutValue(String);

impl ConntrackTimeoutValue {
    pub fn value(&self) -> ConntrackTimeout {
        ConntrackTimeout::parse(&self.0).unwrap_or(ConntrackTimeout::Auto)
    }
}

impl Serialize for ConntrackTimeoutValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConntrackTimeoutValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str_with(d, |s| {
            ConntrackTimeout::parse(s).map(|_| ConntrackTimeoutValue(s.to_string()))
        })
    }
}

impl JsonSchema for ConntrackTimeoutValue {
    fn schema_name() -> Cow<'static, str> {
        "ConntrackTimeout".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as 60s, or Auto for the kernel's value.",
            "pattern": "^(([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|µs|ns))+|Auto)$"
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BpfConntrackTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_grace_period: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "tcpSynSent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_syn_sent: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "tcpEstablished",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_established: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "tcpFinsSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_fins_seen: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "tcpResetSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_reset_seen: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "udpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub udp_timeout: Option<ConntrackTimeoutValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_timeout: Option<ConntrackTimeoutValue>,
    #[serde(
        rename = "icmpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub icmp_timeout: Option<ConntrackTimeoutValue>,
}

/// Connection-tracking timeouts with Calico's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackTimeouts {
    pub creation_grace_period: ConntrackTimeout,
    pub tcp_syn_sent: ConntrackTimeout,
    pub tcp_established: ConntrackTimeout,
    pub tcp_fins_seen: ConntrackTimeout,
    pub tcp_reset_seen: ConntrackTimeout,
    pub udp: ConntrackTimeout,
    pub generic: ConntrackTimeout,
    pub icmp: ConntrackTimeout,
}

/// A port that stays open whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailsafePort {
    pub protocol: u8,
    pub port: u16,
    /// Only for this remote network, if set.
    pub net: Option<Cidr>,
}

const FAILSAFE_INBOUND: [(u8, u16); 9] = [
    (PROTO_TCP, 22),
    (PROTO_UDP, 68),
    (PROTO_TCP, 179),
    (PROTO_TCP, 2379),
    (PROTO_TCP, 2380),
    (PROTO_TCP, 5473),
    (PROTO_TCP, 6443),
    (PROTO_TCP, 6666),
    (PROTO_TCP, 6667),
];

const FAILSAFE_OUTBOUND: [(u8, u16); 9] = [
    (PROTO_UDP, 53),
    (PROTO_UDP, 67),
    (PROTO_TCP, 179),
    (PROTO_TCP, 2379),
    (PROTO_TCP, 2380),
    (PROTO_TCP, 5473),
    (PROTO_TCP, 6443),
    (PROTO_TCP, 6666),
    (PROTO_TCP, 6667),
];

/// Parses a failsafe protocol; tcp when absent.
pub(crate) fn failsafe_protocol(p: Option<&str>) -> Result<u8, String> {
    match p {
        None => Ok(PROTO_TCP),
        Some(p) if p.eq_ignore_ascii_case("tcp") => Ok(PROTO_TCP),
        Some(p) if p.eq_ignore_ascii_case("udp") => Ok(PROTO_UDP),
        Some(p) if p.eq_ignore_ascii_case("sctp") => Ok(crate::net::PROTO_SCTP),
        Some(p) => Err(format!(
            "protocol {p:?} is not known here; write tcp, udp or sctp"
        )),
    }
}

/// The default of BPFDataIfacePattern: the usual names of physical and bonded interfaces.
pub const DEFAULT_BPF_DATA_IFACE_PATTERN: &str =
    "^((en|wl|ww|sl|ib)[Popsx].*|(eth|wlan|wwan|bond).*)";

/// The largest bpfExportBufferSizeMB weft takes (a ring buffer's size is a u32 of bytes).
pub const MAX_EXPORT_BUFFER_MB: u32 = 1024;

/// Calico's defaults for the settings that size weft's BPF maps: the one table. The accessors
/// of `FelixConfigurationSpec` fall back to it; weft's `MapSizes::default()` is its
/// `MapSizes::from_felix` of an empty FelixConfiguration, and a test in weft holds the
/// max_entries compiled into bpf-src/include/weft_defs_maps.h to what that gives.
pub mod map_size_defaults {
    /// bpfMapSizeConntrack: entries of the connection tracking map.
    pub const CONNTRACK: u32 = 512_000;
    /// bpfMapSizeNATFrontend: entries of the service frontend map.
    pub const NAT_FRONTEND: u32 = 65_536;
    /// bpfMapSizeNATBackend: entries of the service backend map.
    pub const NAT_BACKEND: u32 = 262_144;
    /// bpfMapSizeNATAffinity: entries of the session affinity map.
    pub const NAT_AFFINITY: u32 = 65_536;
    /// bpfMapSizeRoute: entries of the route map.
    pub const ROUTE: u32 = 262_144;
    /// bpfMapSizeIPSets: entries of the IP set map.
    pub const IP_SETS: u32 = 1_048_576;
    /// bpfMapSizeIfState: entries of the interface state map.
    pub const IF_STATE: u32 = 1_000;
    /// bpfMaglevMaxServices: the largest number of Maglev services.
    pub const MAGLEV_MAX_SERVICES: u32 = 100;
    /// bpfMaglevMaxEndpointsPerService: the largest number of backends of a Maglev service.
    pub const MAGLEV_MAX_ENDPOINTS_PER_SERVICE: u32 = 100;
    /// bpfExportBufferSizeMB: MiB of each event ring buffer.
    pub const EXPORT_BUFFER_MB: u32 = 1;
}

/// The slots of a Maglev service's lookup table for at most `max_endpoints` backends: the
/// smallest prime at least five times as many.
pub fn maglev_table_size(max_endpoints: u32) -> u32 {
    next_prime(5 * max_endpoints.max(1))
}

/// The smallest prime at least `n` (Maglev's table size must be prime).
pub fn next_prime(n: u32) -> u32 {
    let is_prime = |x: u32| x >= 2 && (2..).take_while(|d| d * d <= x).all(|d| x % d != 0);
    (n.max(2)..)
        .find(|&x| is_prime(x))
        .expect("primes do not run out")
}

/// Map sizes must fit the kernel's u32 max_entries; validation rejects the rest, so the
/// accessors can fall back to the default for values that never get this far.
fn map_size(v: Option<i64>, default: u32) -> u32 {
    v.and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn cidrs(v: &Option<Vec<String>>) -> Vec<Cidr> {
    v.iter().flatten().filter_map(|s| s.parse().ok()).collect()
}

impl FelixConfigurationSpec {
    pub fn default_endpoint_to_host_action(&self) -> EndpointToHostAction {
        self.default_endpoint_to_host_action
            .unwrap_or(EndpointToHostAction::Drop)
    }

    /// TCX unless TC is asked for (Netkit is rejected by validation).
    pub fn bpf_attach_type(&self) -> BpfAttachType {
        match self.bpf_attach_type {
            Some(BpfAttachOption::Tc) => BpfAttachType::Tc,
            _ => BpfAttachType::Tcx,
        }
    }

    /// Whether bpfAttachType is set at all (left unset, weft picks per attachment: see
    /// `weft::plan::settle_attach_modes`).
    pub fn bpf_attach_type_is_set(&self) -> bool {
        self.bpf_attach_type.is_some()
    }

    /// Whether host endpoints' untracked ingress policy runs in XDP too (XDPEnabled).
    pub fn xdp_enabled(&self) -> bool {
        self.xdp_enabled.unwrap_or(true)
    }

    pub fn bpf_log_level(&self) -> BpfLogLevel {
        self.bpf_log_level.unwrap_or(BpfLogLevel::Off)
    }

    pub fn bpf_log_filters(&self) -> BTreeMap<String, String> {
        self.bpf_log_filters.clone().unwrap_or_default()
    }

    pub fn bpf_map_size_conntrack(&self) -> u32 {
        map_size(self.bpf_map_size_conntrack, map_size_defaults::CONNTRACK)
    }

    pub fn bpf_map_size_nat_frontend(&self) -> u32 {
        map_size(
            self.bpf_map_size_nat_frontend,
            map_size_defaults::NAT_FRONTEND,
        )
    }

    pub fn bpf_map_size_nat_backend(&self) -> u32 {
        map_size(
            self.bpf_map_size_nat_backend,
            map_size_defaults::NAT_BACKEND,
        )
    }

    pub fn bpf_map_size_nat_affinity(&self) -> u32 {
        map_size(
            self.bpf_map_size_nat_affinity,
            map_size_defaults::NAT_AFFINITY,
        )
    }

    pub fn bpf_map_size_route(&self) -> u32 {
        map_size(self.bpf_map_size_route, map_size_defaults::ROUTE)
    }

    pub fn bpf_map_size_ip_sets(&self) -> u32 {
        map_size(self.bpf_map_size_ip_sets, map_size_defaults::IP_SETS)
    }

    pub fn bpf_map_size_if_state(&self) -> u32 {
        map_size(self.bpf_map_size_if_state, map_size_defaults::IF_STATE)
    }

    pub fn bpf_conntrack_timeouts(&self) -> ConntrackTimeouts {
        let t = self.bpf_conntrack_timeouts.clone().unwrap_or_default();
        let get = |v: &Option<ConntrackTimeoutValue>, default: ConntrackTimeout| {
            v.as_ref().map_or(default, ConntrackTimeoutValue::value)
        };
        let secs = |s| ConntrackTimeout::After(Duration::from_secs(s));
        ConntrackTimeouts {
            creation_grace_period: get(&t.creation_grace_period, secs(10)),
            tcp_syn_sent: get(&t.tcp_syn_sent, secs(20)),
            tcp_established: get(&t.tcp_established, secs(3600)),
            tcp_fins_seen: get(&t.tcp_fins_seen, ConntrackTimeout::Auto),
            tcp_reset_seen: get(&t.tcp_reset_seen, secs(40)),
            udp: get(&t.udp_timeout, secs(60)),
            generic: get(&t.generic_timeout, secs(600)),
            icmp: get(&t.icmp_timeout, secs(5)),
        }
    }

    /// The newer setting wins; the deprecated boolean turns it off when only it is set.
    pub fn bpf_connect_time_load_balancing(&self) -> BpfConnectTimeLoadBalancing {
        match (
            self.bpf_connect_time_load_balancing,
            self.bpf_connect_time_load_balancing_enabled,
        ) {
            (Some(v), _) => v,
            (None, Some(false)) => BpfConnectTimeLoadBalancing::Disabled,
            (None, _) => BpfConnectTimeLoadBalancing::Tcp,
        }
    }

    pub fn bpf_host_networked_nat_without_ctlb(&self) -> EnabledDisabled {
        self.bpf_host_networked_nat_without_ctlb
            .unwrap_or(EnabledDisabled::Enabled)
    }

    pub fn bpf_exclude_cidrs_from_nat(&self) -> Vec<Cidr> {
        cidrs(&self.bpf_exclude_cidrs_from_nat)
    }

    pub fn bpf_external_service_mode(&self) -> BpfExternalServiceMode {
        self.bpf_external_service_mode
            .unwrap_or(BpfExternalServiceMode::Tunnel)
    }

    pub fn bpf_external_service_acceleration(&self) -> BpfExternalServiceAcceleration {
        self.bpf_external_service_acceleration
            .unwrap_or(BpfExternalServiceAcceleration::Disabled)
    }

    pub fn bpf_dsr_optout_cidrs(&self) -> Vec<Cidr> {
        cidrs(&self.bpf_dsr_optout_cidrs)
    }

    pub fn bpf_maglev_max_endpoints_per_service(&self) -> u32 {
        map_size(
            self.bpf_maglev_max_endpoints_per_service,
            map_size_defaults::MAGLEV_MAX_ENDPOINTS_PER_SERVICE,
        )
    }

    /// Slots in each Maglev service's lookup table (`maglev_table_size`).
    pub fn bpf_maglev_table_size(&self) -> u32 {
        maglev_table_size(self.bpf_maglev_max_endpoints_per_service())
    }

    pub fn bpf_maglev_max_services(&self) -> u32 {
        map_size(
            self.bpf_maglev_max_services,
            map_size_defaults::MAGLEV_MAX_SERVICES,
        )
    }

    /// The size of each of the event ring buffers (flow logs, packet traces), in MiB; default 1.
    /// The kernel wants a power of two: other sizes are rounded up.
    pub fn bpf_export_buffer_size_mb(&self) -> u32 {
        self.bpf_export_buffer_size_mb
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_EXPORT_BUFFER_MB).contains(n))
            .unwrap_or(map_size_defaults::EXPORT_BUFFER_MB)
    }

    pub fn bpf_enforce_rpf(&self) -> BpfEnforceRpf {
        self.bpf_enforce_rpf.unwrap_or(BpfEnforceRpf::Loose)
    }

    /// The inclusive range of ports for resolving source-port collisions.
    pub fn bpf_psnat_ports(&self) -> (u16, u16) {
        match self
            .bpf_psnat_ports
            .as_ref()
            .map(crate::net::parse_rule_port)
        {
            Some(Ok(crate::net::PortMatch::Range { lo, hi })) => (lo, hi),
            _ => (20_000, 29_999),
        }
    }

    pub fn failsafe_inbound_host_ports(&self) -> Vec<FailsafePort> {
        failsafes(&self.failsafe_inbound_host_ports, &FAILSAFE_INBOUND)
    }

    pub fn failsafe_outbound_host_ports(&self) -> Vec<FailsafePort> {
        failsafes(&self.failsafe_outbound_host_ports, &FAILSAFE_OUTBOUND)
    }

    /// vxlanEnabled as written: unset, VXLAN follows the IPPools' vxlanMode.
    pub fn vxlan_enabled_setting(&self) -> Option<bool> {
        self.vxlan_enabled
    }

    pub fn vxlan_enabled(&self) -> bool {
        self.vxlan_enabled.unwrap_or(false)
    }

    pub fn vxlan_port(&self) -> u16 {
        self.vxlan_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(4789)
    }

    pub fn vxlan_vni(&self) -> u32 {
        self.vxlan_vni
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| (1..=0xff_ffff).contains(v))
            .unwrap_or(4096)
    }

    /// 0 means: work it out from the host's interfaces.
    pub fn vxlan_mtu(&self) -> u32 {
        self.vxlan_mtu
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0)
    }

    /// Prefixes of workload interface names.
    pub fn interface_prefixes(&self) -> Vec<String> {
        let prefixes: Vec<String> = self
            .interface_prefix
            .as_deref()
            .unwrap_or("cali")
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if prefixes.is_empty() {
            vec!["cali".to_string()]
        } else {
            prefixes
        }
    }

    pub fn bpf_data_iface_pattern(&self) -> &str {
        self.bpf_data_iface_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_BPF_DATA_IFACE_PATTERN)
    }
}

fn failsafes(v: &Option<Vec<ProtoPort>>, default: &[(u8, u16)]) -> Vec<FailsafePort> {
    match v {
        None => default
            .iter()
            .map(|&(protocol, port)| FailsafePort {
                protocol,
                port,
                net: None,
            })
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|p| {
                Some(FailsafePort {
                    protocol: failsafe_protocol(p.protocol.as_deref()).ok()?,
                    port: u16::try_from(p.port).ok()?,
                    net: match &p.net {
                        Some(n) => Some(n.parse().ok()?),
                        None => None,
                    },
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FelixConfigurationSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_come_from_calico() {
        let s = FelixConfigurationSpec::default();
        assert_eq!(
            s.default_endpoint_to_host_action(),
            EndpointToHostAction::Drop
        );
        assert_eq!(s.bpf_attach_type(), BpfAttachType::Tcx);
        assert_eq!(s.bpf_log_level(), BpfLogLevel::Off);
        assert_eq!(s.bpf_map_size_conntrack(), 512_000);
        assert_eq!(s.bpf_map_size_nat_frontend(), 65_536);
        assert_eq!(s.bpf_map_size_nat_backend(), 262_144);
        assert_eq!(s.bpf_map_size_nat_affinity(), 65_536);
        assert_eq!(s.bpf_map_size_route(), 262_144);
        assert_eq!(s.bpf_map_size_ip_sets(), 1_048_576);
        assert_eq!(s.bpf_map_size_if_state(), 1_000);
        assert_eq!(
            s.bpf_connect_time_load_balancing(),
            BpfConnectTimeLoadBalancing::Tcp
        );
        assert_eq!(
            s.bpf_host_networked_nat_without_ctlb(),
            EnabledDisabled::Enabled
        );
        assert_eq!(
            s.bpf_external_service_mode(),
            BpfExternalServiceMode::Tunnel
        );
        assert_eq!(s.bpf_enforce_rpf(), BpfEnforceRpf::Loose);
        assert_eq!(
            s.bpf_external_service_acceleration(),
            BpfExternalServiceAcceleration::Disabled
        );
        assert_eq!(s.bpf_psnat_ports(), (20_000, 29_999));
        assert_eq!(s.bpf_maglev_max_services(), 100);
        assert_eq!(s.bpf_maglev_max_endpoints_per_service(), 100);
        assert_eq!(s.vxlan_port(), 4789);
        assert_eq!(s.vxlan_vni(), 4096);
        assert!(!s.vxlan_enabled());
        assert_eq!(s.interface_prefixes(), vec!["cali"]);
        assert_eq!(s.bpf_data_iface_pattern(), DEFAULT_BPF_DATA_IFACE_PATTERN);
        let inbound = s.failsafe_inbound_host_ports();
        assert_eq!(inbound.len(), 9);
        assert_eq!(
            inbound[0],
            FailsafePort {
                protocol: PROTO_TCP,
                port: 22,
                net: None
            }
        );
        assert_eq!(s.failsafe_outbound_host_ports()[0].port, 53);
        let ct = s.bpf_conntrack_timeouts();
        assert_eq!(
            ct.tcp_established,
            ConntrackTimeout::After(Duration::from_secs(3600))
        );
        assert_eq!(ct.tcp_fins_seen, ConntrackTimeout::Auto);
    }

    #[test]
    fn set_values_win_and_case_does_not_matter_where_calico_ignores_it() {
        let s = spec(
            "defaultEndpointToHostAction: accept\nbpfLogLevel: DEBUG\nbpfAttachType: TC\n\
             bpfMapSizeConntrack: 1000\nbpfMapSizeNATFrontend: 7\nbpfPSNATPorts: '3000:4000'\n\
             bpfConnectTimeLoadBalancingEnabled: false\ninterfacePrefix: 'tap, cali'\n\
             failsafeInboundHostPorts: [{protocol: UDP, port: 53, net: 10.0.0.0/8}]\n\
             bpfConntrackTimeouts: {tcpEstablished: 2h, udpTimeout: Auto}\n\
             bpfExcludeCIDRsFromNAT: [10.0.0.0/8, 'fd00::/64']\n",
        );
        assert_eq!(
            s.default_endpoint_to_host_action(),
            EndpointToHostAction::Accept
        );
        assert_eq!(s.bpf_log_level(), BpfLogLevel::Debug);
        assert_eq!(s.bpf_attach_type(), BpfAttachType::Tc);
        assert_eq!(s.bpf_map_size_conntrack(), 1000);
        assert_eq!(s.bpf_map_size_nat_frontend(), 7);
        assert_eq!(s.bpf_psnat_ports(), (3000, 4000));
        assert_eq!(
            s.bpf_connect_time_load_balancing(),
            BpfConnectTimeLoadBalancing::Disabled
        );
        assert_eq!(s.interface_prefixes(), vec!["tap", "cali"]);
        assert_eq!(
            s.failsafe_inbound_host_ports(),
            vec![FailsafePort {
                protocol: PROTO_UDP,
                port: 53,
                net: Some("10.0.0.0/8".parse().unwrap())
            }]
        );
        let ct = s.bpf_conntrack_timeouts();
        assert_eq!(
            ct.tcp_established,
            ConntrackTimeout::After(Duration::from_secs(7200))
        );
        assert_eq!(ct.udp, ConntrackTimeout::Auto);
        assert_eq!(ct.icmp, ConntrackTimeout::After(Duration::from_secs(5)));
        assert_eq!(s.bpf_exclude_cidrs_from_nat().len(), 2);
        // Serializing keeps the canonical spelling and leaves unset fields out.
        let out = serde_yaml::to_string(&s).unwrap();
        assert!(out.contains("defaultEndpointToHostAction: Accept"), "{out}");
        assert!(!out.contains("vxlanPort"), "{out}");
    }

    #[test]
    fn bad_values_are_rejected_with_advice() {
        let e =
            serde_yaml::from_str::<FelixConfigurationSpec>("defaultEndpointToHostAction: Allow\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("write one of Drop, Return, Accept"), "{e}");
        let e =
            serde_yaml::from_str::<FelixConfigurationSpec>("routeRefreshInterval: 10 minutes\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("not a duration"), "{e}");
        let e = serde_yaml::from_str::<FelixConfigurationSpec>(
            "bpfConntrackTimeouts: {udpTimeout: soon}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("or Auto"), "{e}");
        assert!(serde_yaml::from_str::<FelixConfigurationSpec>("bpfMapSizeConntrak: 5\n").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("10d").is_err());
        assert!(parse_go_duration("s").is_err());
    }

    #[test]
    fn merge_lays_node_values_over_defaults() {
        let base = spec("bpfLogLevel: Info\nvxlanPort: 4790\nbpfMapSizeRoute: 10\n");
        let node = spec("bpfLogLevel: Debug\nbpfMapSizeIfState: 20\n");
        let merged = node.merged_over(&base);
        assert_eq!(merged.bpf_log_level(), BpfLogLevel::Debug);
        assert_eq!(merged.vxlan_port(), 4790);
        assert_eq!(merged.bpf_map_size_route(), 10);
        assert_eq!(merged.bpf_map_size_if_state(), 20);
        assert_eq!(merged.bpf_map_size_conntrack(), 512_000);
    }
}
