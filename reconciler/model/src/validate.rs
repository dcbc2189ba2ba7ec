//! Checks of single resources that serde cannot express: names, labels, addresses, ports,
//! enumerations with rules between fields. Each check records every problem it finds, with the
//! path of the value, and returns the parsed values the rest of the model needs. Checks that
//! span resources (duplicates, references) are in `load`; policies are checked while they are
//! converted (`ir`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::diag::Kind;
use crate::net::{self, Cidr, IntOrString};
use crate::problems::Problems;
use crate::resources::calico::FelixConfiguration;
use crate::resources::calico::{
    EncapsulationMode, HostEndpoint, IPPool, Node, Tier, WorkloadEndpoint,
};
use crate::resources::felix::{self, BpfAttachOption};
use crate::resources::k8s::{AddressType, EndpointSlice, Service, ServiceType};
use crate::resources::meta::Labels;
use crate::yaml::Path;

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks metadata.name against the rules of the kind (those of Calico's validator and of the
/// Kubernetes API server).
pub(crate) fn name(kind: Kind, name: &str, p: &mut Problems) {
    let path = Path::root().key("metadata").key("name");
    let subdomain = "use lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit";
    let problem = match kind {
        Kind::Tier | Kind::Namespace if !is_dns_label(name) => Some(format!(
            "{name:?} is not a valid {kind} name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        )),
        Kind::Service if !is_dns_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) => {
            Some(format!(
                "{name:?} is not a valid Service name; use up to 63 lower-case letters, digits and '-', starting with a letter"
            ))
        }
        Kind::NetworkPolicy => {
            let parts: Vec<&str> = name.split('.').collect();
            let ok = (parts.len() <= 2 && parts.iter().all(|p| is_dns_label(p)))
                || ((name.starts_with("knp.default.") || name.starts_with("ossg.default."))
                    && is_dns_subdomain(name));
            (!ok).then(|| {
                format!("{name:?} is not a valid NetworkPolicy name; use lower-case letters, digits and '-', with at most one '.'")
            })
        }
        Kind::GlobalNetworkPolicy => {
            let parts: Vec<&str> = name.split('.').collect();
            let ok = parts.len() <= 2 && parts.iter().all(|p| is_dns_label(p));
            (!ok).then(|| {
                format!("{name:?} is not a valid GlobalNetworkPolicy name; use lower-case letters, digits and '-', with at most one '.'")
            })
        }
        _ if !is_dns_subdomain(name) => Some(format!("{name:?} is not a valid name; {subdomain}")),
        _ => None,
    };
    if let Some(msg) = problem {
        p.at(&path, msg);
    }
}

/// Checks a namespace name (metadata.namespace, or a reference to a namespace).
pub(crate) fn namespace_name(ns: &str, path: &Path, p: &mut Problems) {
    if !is_dns_label(ns) {
        p.at(
            path,
            format!("{ns:?} is not a valid namespace name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"),
        );
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn label_key_ok(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(k),
    }
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty() || is_label_name(v)
}

pub(crate) fn label_key(k: &str, path: &Path, p: &mut Problems) {
    if !label_key_ok(k) {
        p.at(
            path,
            format!("label key {k:?} is not valid; write an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit"),
        );
    }
}

pub(crate) fn label_value(v: &str, path: &Path, p: &mut Problems) {
    if !label_value_ok(v) {
        p.at(
            path,
            format!("label value {v:?} is not valid; write up to 63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit, or nothing"),
        );
    }
}

/// Checks the keys and values of a label map.
pub(crate) fn labels(map: &Labels, path: &Path, p: &mut Problems) {
    for (k, v) in map {
        // The path is made only for a label that is wrong: most are not.
        if !label_key_ok(k) || !label_value_ok(v) {
            let at = path.key(k.clone());
            label_key(k, &at, p);
            label_value(v, &at, p);
        }
    }
}

fn cidrs(values: &[String], path: &Path, p: &mut Problems) -> Vec<Cidr> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                p.at(&path.index(i), e);
                None
            }
        })
        .collect()
}

fn ip(s: &str, path: &Path, p: &mut Problems) -> Option<IpAddr> {
    match net::parse_ip(s) {
        Ok(a) => Some(a),
        Err(e) => {
            p.at(path, e);
            None
        }
    }
}

fn ip_of_version(s: &str, v4: bool, path: &Path, p: &mut Problems) {
    if let Some(a) = ip(s, path, p) {
        if a.is_ipv4() != v4 {
            let (want, example) = if v4 {
                ("IPv4", "10.0.0.1")
            } else {
                ("IPv6", "fd00::1")
            };
            p.at(
                path,
                format!("{s} is not an {want} address; write e.g. {example}"),
            );
        }
    }
}

/// The network list of a NetworkSet or GlobalNetworkSet.
pub(crate) fn network_set_nets(nets: &[String], p: &mut Problems) -> Vec<Cidr> {
    cidrs(nets, &Path::root().key("spec").key("nets"), p)
}

/// A protocol that must have ports (for named ports of endpoints).
fn port_protocol(v: &IntOrString, path: &Path, p: &mut Problems) -> Option<u8> {
    match net::parse_protocol(v) {
        Ok(proto) if net::protocol_has_ports(proto) => Some(proto),
        Ok(proto) => {
            p.at(
                path,
                format!(
                    "a port needs protocol TCP, UDP or SCTP, not {}",
                    net::protocol_name(proto)
                ),
            );
            None
        }
        Err(e) => {
            p.at(path, e);
            None
        }
    }
}

fn port_number(n: i64, path: &Path, zero_ok: bool, p: &mut Problems) -> Option<u16> {
    match u16::try_from(n) {
        Ok(port) if port > 0 || zero_ok => Some(port),
        _ => {
            let lo = if zero_ok { 0 } else { 1 };
            p.at(
                path,
                format!("port {n} is out of range; write {lo} to 65535"),
            );
            None
        }
    }
}

/// Checks a WorkloadEndpoint and returns its addresses and named ports.
pub(crate) fn workload_endpoint(
    w: &WorkloadEndpoint,
    p: &mut Problems,
) -> (Vec<Cidr>, Vec<(String, u8, u16)>) {
    let spec = &w.spec;
    let path = Path::root().key("spec");
    if spec.node.as_deref().is_none_or(str::is_empty) {
        p.missing(
            &path,
            "node",
            "write the name of the host the endpoint is on",
        );
    }
    match spec.interface_name.as_deref() {
        None | Some("") => p.missing(
            &path,
            "interfaceName",
            "write the host-side interface's name, such as cali0123456789a",
        ),
        Some(name) => {
            if let Some(e) = net::interface_name_problem(name) {
                p.at(&path.key("interfaceName"), e);
            }
        }
    }
    let mut nets = Vec::new();
    for (i, s) in spec.ip_networks.iter().enumerate() {
        let ip_path = path.key("ipNetworks").index(i);
        match s.parse::<Cidr>() {
            Ok(c) if c.prefix_len() != if c.is_v4() { 32 } else { 128 } => p.at(
                &ip_path,
                format!(
                    "{s} holds more than one address; write the workload's own address, such as {}/{}",
                    c.addr(),
                    if c.is_v4() { 32 } else { 128 }
                ),
            ),
            Ok(c) => nets.push(c),
            Err(e) => p.at(&ip_path, e),
        }
    }
    for (i, nat) in spec.ip_nats.iter().enumerate() {
        let nat_path = path.key("ipNATs").index(i);
        let internal = ip(&nat.internal_ip, &nat_path.key("internalIP"), p);
        let external = ip(&nat.external_ip, &nat_path.key("externalIP"), p);
        if let (Some(int), Some(ext)) = (internal, external) {
            if int.is_ipv4() != ext.is_ipv4() {
                p.at(
                    &nat_path,
                    "internalIP and externalIP must be of the same IP version",
                );
            }
            if !nets.iter().any(|n| n.contains(int)) {
                p.at(
                    &nat_path.key("internalIP"),
                    format!("{int} is not one of the endpoint's ipNetworks; NAT only the endpoint's own addresses"),
                );
            }
        }
    }
    if let Some(gw) = &spec.ipv4_gateway {
        ip_of_version(gw, true, &path.key("ipv4Gateway"), p);
    }
    if let Some(gw) = &spec.ipv6_gateway {
        ip_of_version(gw, false, &path.key("ipv6Gateway"), p);
    }
    if let Some(mac) = &spec.mac {
        if let Err(e) = net::parse_mac(mac) {
            p.at(&path.key("mac"), e);
        }
    }
    for (i, prof) in spec.profiles.iter().enumerate() {
        if !is_dns_subdomain(prof) {
            p.at(
                &path.key("profiles").index(i),
                format!("{prof:?} is not a valid profile name"),
            );
        }
    }
    let mut named = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let pp = path.key("ports").index(i);
        if !port.name.is_empty() {
            if let Some(why) = net::iana_port_name_problem(&port.name) {
                p.at(&pp.key("name"), format!("port name {:?} {why}", port.name));
            }
        }
        let proto = port_protocol(&port.protocol, &pp.key("protocol"), p);
        let number = port_number(port.port, &pp.key("port"), false, p);
        port_number(port.host_port, &pp.key("hostPort"), true, p);
        if let Some(host_ip) = &port.host_ip {
            ip(host_ip, &pp.key("hostIP"), p);
        }
        if let (Some(proto), Some(number)) = (proto, number) {
            if !port.name.is_empty() {
                named.push((port.name.clone(), proto, number));
            }
        }
    }
    cidrs(
        &spec.allow_spoofed_source_prefixes,
        &path.key("allowSpoofedSourcePrefixes"),
        p,
    );
    (nets, named)
}

/// Checks a HostEndpoint and returns its expected addresses and named ports.
pub(crate) fn host_endpoint(
    h: &HostEndpoint,
    p: &mut Problems,
) -> (Vec<Cidr>, Vec<(String, u8, u16)>) {
    let spec = &h.spec;
    let path = Path::root().key("spec");
    if spec.node.as_deref().is_none_or(str::is_empty) {
        p.missing(
            &path,
            "node",
            "write the name of the host the interface is on",
        );
    }
    match spec.interface_name.as_deref() {
        None | Some("") if spec.expected_ips.is_empty() => p.at_unprefixed(
            &path,
            "a HostEndpoint needs spec.interfaceName or spec.expectedIPs; write interfaceName: eth0 (or \"*\" for every interface)",
        ),
        None | Some("") | Some("*") => {}
        Some(name) => {
            if let Some(e) = net::interface_name_problem(name) {
                p.at(&path.key("interfaceName"), format!("{e}, or \"*\""));
            }
        }
    }
    let mut ips = Vec::new();
    for (i, s) in spec.expected_ips.iter().enumerate() {
        if let Some(a) = ip(s, &path.key("expectedIPs").index(i), p) {
            ips.push(Cidr::host(a));
        }
    }
    let mut named = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let pp = path.key("ports").index(i);
        if let Some(why) = net::iana_port_name_problem(&port.name) {
            p.at(&pp.key("name"), format!("port name {:?} {why}", port.name));
        }
        let proto = port_protocol(&port.protocol, &pp.key("protocol"), p);
        let number = port_number(port.port, &pp.key("port"), false, p);
        if let (Some(proto), Some(number)) = (proto, number) {
            named.push((port.name.clone(), proto, number));
        }
    }
    (ips, named)
}

/// The defaults Calico insists on for its built-in tier.
pub(crate) const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

pub(crate) fn tier(t: &Tier, p: &mut Problems) {
    let path = Path::root().key("spec");
    use crate::resources::calico::Action;
    if let Some(o) = t.spec.order {
        if !o.is_finite() {
            p.at(
                &path.key("order"),
                "order must be a number; write e.g. order: 100",
            );
        }
    }
    match t.spec.default_action {
        None | Some(Action::Deny) | Some(Action::Pass) => {}
        Some(a) => p.at(
            &path.key("defaultAction"),
            format!("a tier's defaultAction is Deny or Pass, not {a:?}"),
        ),
    }
    if t.metadata.name == "default" {
        if t.spec.order.is_some_and(|o| o != DEFAULT_TIER_ORDER) {
            p.at(
                &path.key("order"),
                "the default tier's order is 1000000; remove order or write order: 1000000",
            );
        }
        if t.spec.default_action == Some(Action::Pass) {
            p.at(
                &path.key("defaultAction"),
                "the default tier's defaultAction is Deny; remove defaultAction",
            );
        }
    }
}

pub(crate) fn ip_pool(pool: &IPPool, p: &mut Problems) {
    let spec = &pool.spec;
    let path = Path::root().key("spec");
    if spec.cidr.is_empty() {
        p.at(
            &path,
            "spec.cidr is missing; write the pool's network, such as 10.244.0.0/16",
        );
    }
    let cidr = match Cidr::parse_reporting_host_bits(&spec.cidr) {
        Ok((c, true)) => {
            p.at(
                &path.key("cidr"),
                format!(
                    "{} has host bits set; write the network address {c}",
                    spec.cidr
                ),
            );
            Some(c)
        }
        Ok((c, false)) => Some(c),
        Err(e) if !spec.cidr.is_empty() => {
            p.at(&path.key("cidr"), e);
            None
        }
        Err(_) => None,
    };
    if let (Some(c), Some(size)) = (cidr, spec.block_size) {
        let (lo, hi) = if c.is_v4() { (20, 32) } else { (116, 128) };
        if !(lo..=hi).contains(&size) || size < i64::from(c.prefix_len()) {
            p.at(
                &path.key("blockSize"),
                format!("blockSize {size} must be from {lo} to {hi} and no shorter than the pool's prefix ({})", c.prefix_len()),
            );
        }
    }
    if cidr.is_some_and(|c| !c.is_v4())
        && matches!(
            spec.ipip_mode,
            Some(EncapsulationMode::Always | EncapsulationMode::CrossSubnet)
        )
    {
        p.at(
            &path.key("ipipMode"),
            "IPIP cannot carry IPv6; write ipipMode: Never",
        );
    }
    p.selector(
        &path.key("nodeSelector"),
        spec.node_selector.as_deref(),
        false,
    );
    p.selector(
        &path.key("namespaceSelector"),
        spec.namespace_selector.as_deref(),
        false,
    );
}

pub(crate) fn node(n: &Node, p: &mut Problems) {
    let spec = &n.spec;
    let path = Path::root().key("spec");
    if let Some(a) = &spec.ipv4_vxlan_tunnel_addr {
        ip_of_version(a, true, &path.key("ipv4VXLANTunnelAddr"), p);
    }
    if let Some(a) = &spec.ipv6_vxlan_tunnel_addr {
        ip_of_version(a, false, &path.key("ipv6VXLANTunnelAddr"), p);
    }
    for (field, mac) in [
        ("vxlanTunnelMACAddr", &spec.vxlan_tunnel_mac_addr),
        ("vxlanTunnelMACAddrV6", &spec.vxlan_tunnel_mac_addr_v6),
    ] {
        if let Some(mac) = mac {
            if let Err(e) = net::parse_mac(mac) {
                p.at(&path.key(field), e);
            }
        }
    }
    if let Some(bgp) = &spec.bgp {
        let bp = path.key("bgp");
        for (field, value) in [
            ("ipv4Address", &bgp.ipv4_address),
            ("ipv6Address", &bgp.ipv6_address),
        ] {
            if let Some(v) = value {
                if let Err(e) = v.parse::<Cidr>() {
                    p.at(&bp.key(field), e);
                }
            }
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        let ap = path.key("addresses").index(i);
        if let Err(e) = a.address.parse::<Cidr>() {
            p.at(&ap.key("address"), e);
        }
        if let Some(t) = &a.address_type {
            if !matches!(t.as_str(), "CalicoNodeIP" | "InternalIP" | "ExternalIP") {
                p.at(
                    &ap.key("type"),
                    format!("address type {t:?} is not known; write CalicoNodeIP, InternalIP or ExternalIP"),
                );
            }
        }
    }
}

/// The FelixConfiguration settings weft acts on must make sense; the others are only
/// type-checked.
pub(crate) fn felix_configuration(fc: &FelixConfiguration, p: &mut Problems) {
    let name = &fc.metadata.name;
    if name != "default" && !name.starts_with("node.") {
        p.at(
            &Path::root().key("metadata").key("name"),
            format!("FelixConfiguration {name:?} would never be used; name it default (every node) or node.<node name> (one node)"),
        );
    }
    let spec = &fc.spec;
    let path = Path::root().key("spec");
    if spec.node_selector.is_some() {
        p.at(
            &path.key("nodeSelector"),
            "nodeSelector is not supported by weft yet; name the configuration node.<node name> instead",
        );
    }
    if spec.bpf_attach_type == Some(BpfAttachOption::Netkit) {
        p.at(
            &path.key("bpfAttachType"),
            "Netkit is not supported by weft; write TCX (or TC for the legacy qdisc)",
        );
    }
    for (field, value) in [
        ("bpfMapSizeNATFrontend", spec.bpf_map_size_nat_frontend),
        ("bpfMapSizeNATBackend", spec.bpf_map_size_nat_backend),
        ("bpfMapSizeNATAffinity", spec.bpf_map_size_nat_affinity),
        ("bpfMapSizeRoute", spec.bpf_map_size_route),
        ("bpfMapSizeConntrack", spec.bpf_map_size_conntrack),
        ("bpfMapSizeIPSets", spec.bpf_map_size_ip_sets),
        ("bpfMapSizeIfState", spec.bpf_map_size_if_state),
        (
            "bpfMapSizePerCpuConntrack",
            spec.bpf_map_size_per_cpu_conntrack,
        ),
        (
            "bpfMapSizeConntrackCleanupQueue",
            spec.bpf_map_size_conntrack_cleanup_queue,
        ),
    ] {
        if let Some(n) = value {
            if n <= 0 || n > i64::from(u32::MAX) {
                p.at(
                    &path.key(field),
                    format!(
                        "{field} {n} is not a map size; write a number of entries from 1 to {}",
                        u32::MAX
                    ),
                );
            }
        }
    }
    if let Some(n) = spec.bpf_export_buffer_size_mb {
        let max = felix::MAX_EXPORT_BUFFER_MB;
        if n < 1 || n > i64::from(max) {
            p.at(
                &path.key("bpfExportBufferSizeMB"),
                format!("bpfExportBufferSizeMB {n} is out of range; write 1 to {max} (MiB)"),
            );
        }
    }
    for (field, value) in [
        (
            "bpfMaglevMaxEndpointsPerService",
            spec.bpf_maglev_max_endpoints_per_service,
        ),
        ("bpfMaglevMaxServices", spec.bpf_maglev_max_services),
    ] {
        if let Some(n) = value {
            if !(1..=3000).contains(&n) {
                p.at(
                    &path.key(field),
                    format!("{field} {n} is out of range; write 1 to 3000"),
                );
            }
        }
    }
    if let Some(v) = &spec.bpf_psnat_ports {
        match net::parse_rule_port(v) {
            Ok(net::PortMatch::Range { lo, .. }) if lo > 0 => {}
            _ => p.at(
                &path.key("bpfPSNATPorts"),
                format!("{v} is not a port range; write lo:hi such as 20000:29999"),
            ),
        }
    }
    for (field, list) in [
        ("bpfExcludeCIDRsFromNAT", &spec.bpf_exclude_cidrs_from_nat),
        ("bpfDSROptoutCIDRs", &spec.bpf_dsr_optout_cidrs),
    ] {
        if let Some(list) = list {
            cidrs(list, &path.key(field), p);
        }
    }
    for (field, list) in [
        (
            "failsafeInboundHostPorts",
            &spec.failsafe_inbound_host_ports,
        ),
        (
            "failsafeOutboundHostPorts",
            &spec.failsafe_outbound_host_ports,
        ),
    ] {
        for (i, pp) in list.iter().flatten().enumerate() {
            let at = path.key(field).index(i);
            if let Err(e) = felix::failsafe_protocol(pp.protocol.as_deref()) {
                p.at(&at.key("protocol"), e);
            }
            port_number(pp.port, &at.key("port"), true, p);
            if let Some(n) = &pp.net {
                if let Err(e) = n.parse::<Cidr>() {
                    p.at(&at.key("net"), e);
                }
            }
        }
    }
    if let Some(port) = spec.vxlan_port {
        port_number(port, &path.key("vxlanPort"), false, p);
    }
    if let Some(vni) = spec.vxlan_vni {
        if !(1..=0xff_ffff).contains(&vni) {
            p.at(
                &path.key("vxlanVNI"),
                format!("vxlanVNI {vni} is out of range; write 1 to 16777215"),
            );
        }
    }
    for (field, mtu) in [
        ("vxlanMTU", spec.vxlan_mtu),
        ("vxlanMTUV6", spec.vxlan_mtu_v6),
    ] {
        if let Some(m) = mtu {
            if m != 0 && !(68..=65535).contains(&m) {
                p.at(
                    &path.key(field),
                    format!("{field} {m} is out of range; write 0 (automatic) or 68 to 65535"),
                );
            }
        }
    }
    for (key, expr) in spec.bpf_log_filters.iter().flatten() {
        let at = path.key("bpfLogFilters").key(key.clone());
        if let Some(e) = net::interface_name_problem(key) {
            p.at(&at, format!("{e}, or all, weps or heps"));
        }
        if let Err(e) = crate::pcap::parse_filter(expr) {
            p.in_text(
                &at,
                expr,
                e.column,
                format!("filter {expr:?} at column {}: {}", e.column, e.message),
            );
        }
    }
    if let Some(prefix) = &spec.interface_prefix {
        for part in prefix.split(',').map(str::trim) {
            if part.is_empty() || part.len() > 14 || net::interface_name_problem(part).is_some() {
                p.at(
                    &path.key("interfacePrefix"),
                    format!("{part:?} is not an interface name prefix; write e.g. cali, or several separated by commas"),
                );
            }
        }
    }
}

pub(crate) fn service(s: &Service, p: &mut Problems) {
    let spec = &s.spec;
    let path = Path::root().key("spec");
    let mut names = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let pp = path.key("ports").index(i);
        match &port.name {
            Some(name) if !name.is_empty() => {
                if !is_dns_label(name) {
                    p.at(&pp.key("name"), format!("port name {name:?} must be lower-case letters, digits and '-' (at most 63)"));
                }
                if !names.insert(name.clone()) {
                    p.at(
                        &pp.key("name"),
                        format!("port name {name:?} is used twice; give each port its own name"),
                    );
                }
            }
            _ if spec.ports.len() > 1 => p.missing(
                &pp,
                "name",
                "a service with several ports must name each of them",
            ),
            _ => {}
        }
        port_number(port.port, &pp.key("port"), false, p);
        match &port.target_port {
            Some(IntOrString::Int(n)) => {
                port_number(*n, &pp.key("targetPort"), false, p);
            }
            Some(IntOrString::String(name)) => {
                if let Some(why) = net::iana_port_name_problem(name) {
                    p.at(
                        &pp.key("targetPort"),
                        format!("{name:?} is not a port number or port name: a name {why}"),
                    );
                }
            }
            None => {}
        }
        if let Some(n) = port.node_port {
            port_number(n, &pp.key("nodePort"), true, p);
        }
    }
    let cluster_ip = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty());
    if let Some(c) = cluster_ip.filter(|c| *c != "None") {
        ip(c, &path.key("clusterIP"), p);
    }
    for (i, c) in spec.cluster_ips.iter().enumerate() {
        if c != "None" {
            ip(c, &path.key("clusterIPs").index(i), p);
        }
    }
    if let (Some(c), Some(first)) = (cluster_ip, spec.cluster_ips.first()) {
        if c != first {
            p.at(
                &path.key("clusterIPs"),
                format!("clusterIPs must start with clusterIP ({c})"),
            );
        }
    }
    for (i, e) in spec.external_ips.iter().enumerate() {
        ip(e, &path.key("externalIPs").index(i), p);
    }
    if let Some(lb) = &spec.load_balancer_ip {
        if !lb.is_empty() {
            ip(lb, &path.key("loadBalancerIP"), p);
        }
    }
    cidrs(
        &spec.load_balancer_source_ranges,
        &path.key("loadBalancerSourceRanges"),
        p,
    );
    if let Some(t) = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
    {
        if !(1..=86400).contains(&t) {
            p.at(
                &path
                    .key("sessionAffinityConfig")
                    .key("clientIP")
                    .key("timeoutSeconds"),
                format!("timeoutSeconds {t} is out of range; write 1 to 86400"),
            );
        }
    }
    if spec.service_type == Some(ServiceType::ExternalName)
        && spec.external_name.as_deref().is_none_or(str::is_empty)
    {
        p.missing(
            &path,
            "externalName",
            "an ExternalName service names the DNS name it stands for",
        );
    }
    labels(&spec.selector, &path.key("selector"), p);
    if let Some(status) = &s.status {
        for (i, ing) in status
            .load_balancer
            .iter()
            .flat_map(|lb| lb.ingress.iter())
            .enumerate()
        {
            if let Some(a) = &ing.ip {
                ip(
                    a,
                    &Path::root()
                        .key("status")
                        .key("loadBalancer")
                        .key("ingress")
                        .index(i)
                        .key("ip"),
                    p,
                );
            }
        }
    }
}

pub(crate) fn endpoint_slice(es: &EndpointSlice, p: &mut Problems) {
    if !es
        .metadata
        .labels
        .contains_key(EndpointSlice::SERVICE_NAME_LABEL)
    {
        p.at(
            &Path::root().key("metadata"),
            format!(
                "an EndpointSlice names its service with the label {}; add it",
                EndpointSlice::SERVICE_NAME_LABEL
            ),
        );
    }
    for (i, ep) in es.endpoints().iter().enumerate() {
        let ep_path = Path::root().key("endpoints").index(i);
        if ep.addresses.is_empty() || ep.addresses.len() > 100 {
            p.at(
                &ep_path.key("addresses"),
                "an endpoint has 1 to 100 addresses",
            );
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let at = ep_path.key("addresses").index(j);
            match es.address_type {
                AddressType::IPv4 => ip_of_version(a, true, &at, p),
                AddressType::IPv6 => ip_of_version(a, false, &at, p),
                AddressType::Fqdn => {
                    if !is_dns_subdomain(a) {
                        p.at(&at, format!("{a:?} is not a DNS name"));
                    }
                }
            }
        }
    }
    for (i, port) in es.ports().iter().enumerate() {
        let pp = Path::root().key("ports").index(i);
        if let Some(n) = port.port {
            port_number(n, &pp.key("port"), false, p);
        }
        if let Some(name) = &port.name {
            if !name.is_empty() && !is_dns_label(name) {
                p.at(&pp.key("name"), format!("port name {name:?} must be lower-case letters, digits and '-' (at most 63)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("kns.default"));
        assert!(!is_dns_subdomain("a..b"));
    }

    #[test]
    fn label_rules() {
        let mut p = Problems::default();
        let root = Path::root();
        label_key("app", &root, &mut p);
        label_key("k8s.io/app-name", &root, &mut p);
        label_value("", &root, &mut p);
        label_value("v1.2_3", &root, &mut p);
        assert!(p.is_empty(), "{p:?}");
        label_key("-app", &root, &mut p);
        label_key("Bad_Prefix/x", &root, &mut p);
        label_value("a b", &root, &mut p);
        assert_eq!(p.0.len(), 3);
    }
}
