//! Services: Kubernetes Service and EndpointSlice manifests as the entries of weft's NAT maps.
//! A pure function of the configuration, this node's name and its addresses.
//!
//! Each service port gets an id (`svc_id`) naming its backend list: the usable endpoints of
//! the service's slices, on this port, local ones first so `[0, local_count)` is the local
//! subset. Frontends point at it: every cluster IP, external IP and LoadBalancer ingress IP,
//! and each host address with the NodePort. Which subset a frontend uses follows the traffic
//! policies: internalTrafficPolicy for cluster IPs, externalTrafficPolicy for the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_model::{
    AddressType, Cidr, Config, Endpoint, EndpointConditions, EndpointSlice, EndpointSlicePort,
    IntOrString, Item, KubernetesProtocol, Labels, ObjectMeta, Service, ServicePort, ServiceType,
    SessionAffinity, TrafficPolicy, WorkloadEndpoint,
};

pub use weft_model::next_prime;

use crate::bpf::maps::{
    self, spec, Entries, NatBackend, NatBackendKey, NatFrontend, NatFrontendKey, NatSrcKey,
};
use crate::policy::flat::Net4;
use crate::warning::Warning;

/// Calico's annotation asking for Maglev backend selection of a service's external traffic.
pub const MAGLEV_ANNOTATION: &str = "lb.projectcalico.org/external-traffic-strategy";

/// What services need, per node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTables {
    /// The NAT maps' entries, shared with the desired states made from them.
    pub frontends: Arc<Entries>,
    pub backends: Arc<Entries>,
    pub source_ranges: Arc<Entries>,
    pub maglev: Arc<Entries>,
    /// Addresses host processes reach services at (routed into bpfin.weft).
    pub service_ips: BTreeSet<Ipv4Addr>,
    /// svc_id -> "namespace/name port" for renderings; shared with the desired states made
    /// from these tables (10,000 names are not copied for each computation).
    pub names: Arc<BTreeMap<u32, String>>,
    /// Things the user should know (ports weft cannot translate, id clashes).
    pub warnings: Vec<Warning>,
}

impl ServiceTables {
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty()
    }
}

/// Settings that shape the tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSettings {
    /// BPFMaglevMaxEndpointsPerService.
    pub maglev_max_endpoints: u32,
    /// BPFExcludeCIDRsFromNAT: frontends inside these are not translated.
    pub exclude: Vec<Net4>,
    /// bpfExternalServiceMode DSR: NodePorts are frontends at 0.0.0.0 too, where a flow
    /// another node forwarded unchanged finds them (its address is the other node's).
    pub dsr: bool,
}

/// A usable backend. The field order is the backend list's order: local ones first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Backend {
    remote: bool,
    addr: Ipv4Addr,
    port: u16,
}

fn proto_number(p: Option<KubernetesProtocol>) -> u8 {
    match p.unwrap_or(KubernetesProtocol::Tcp) {
        KubernetesProtocol::Tcp => 6,
        KubernetesProtocol::Udp => 17,
        KubernetesProtocol::Sctp => 132,
    }
}

/// A service port's id and label (its name, or its number when unnamed), as the frontends,
/// the backends and `weft dump nat` name it.
pub fn port_id(namespace: &str, service: &str, port: &ServicePort) -> (u32, String) {
    let label = match port.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => port.port.to_string(),
    };
    let id = svc_id(
        namespace,
        service,
        &format!("{label}/{}", proto_number(port.protocol)),
    );
    (id, label)
}

/// A stable id for a service port: FNV-1a of "namespace/name/port", never 0.
pub fn svc_id(namespace: &str, name: &str, port: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{namespace}/{name}/{port}").bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

fn fnv64(seed: u64, s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Maglev's lookup table (Eisenbud et al., NSDI 2016): every backend fills slots along its own
/// permutation of the table in turn, so each gets a near-equal share and a change of backends
/// moves few slots.
pub fn maglev_table(backends: &[String], size: u32) -> Vec<usize> {
    let m = size as u64;
    if backends.is_empty() || m < 2 {
        return Vec::new();
    }
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| {
            (
                fnv64(0x5eed_0001, b) % m,
                fnv64(0x5eed_0002, b) % (m - 1) + 1,
            )
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut table = vec![usize::MAX; size as usize];
    let mut filled = 0;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != usize::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = i;
            next[i] += 1;
            filled += 1;
            if filled == size as usize {
                break 'fill;
            }
        }
    }
    table
}

/// A service's key among services: (namespace, name).
pub type ServiceKey = (String, String);

pub fn service_key(svc: &Service) -> ServiceKey {
    (
        svc.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        svc.metadata.name.clone(),
    )
}

/// The service an EndpointSlice belongs to (its `kubernetes.io/service-name` label), if it
/// is an IPv4 slice, the only ones weft translates to.
pub fn slice_service(s: &EndpointSlice) -> Option<ServiceKey> {
    slice_service_ref(s).map(|(ns, name)| (ns.to_string(), name.to_string()))
}

/// `slice_service`, borrowed from the slice: for scans of every slice, which need not copy
/// ten thousand names to compare them.
pub fn slice_service_ref(s: &EndpointSlice) -> Option<(&str, &str)> {
    if s.address_type != AddressType::IPv4 {
        return None;
    }
    let name = s.metadata.labels.get(EndpointSlice::SERVICE_NAME_LABEL)?;
    Some((s.metadata.namespace.as_deref().unwrap_or("default"), name))
}

/// The annotation that takes a WorkloadEndpoint out of the backends of the Services that
/// select it: `"false"` makes it not ready (a pod's readiness, which files cannot probe).
pub const READY_ANNOTATION: &str = "weft.projectcalico.org/ready";

/// The WorkloadEndpoints of a configuration by namespace and label, so that a Service's
/// selector is matched against the endpoints carrying its rarest pair rather than against
/// every endpoint (ten thousand Services over ten thousand endpoints would otherwise be a
/// hundred million label lookups). The index is made when a selector first asks: Services
/// without one (the common case with written slices) never pay for it.
pub struct Selectable<'a> {
    cfg: &'a Config,
    /// (namespace, key, value) -> indices into the configuration's endpoints, ascending.
    by_label: std::cell::OnceCell<LabelIndex<'a>>,
}

type LabelIndex<'a> = std::collections::HashMap<(&'a str, &'a str, &'a str), Vec<u32>>;

impl<'a> Selectable<'a> {
    pub fn new(cfg: &'a Config) -> Selectable<'a> {
        Selectable {
            cfg,
            by_label: std::cell::OnceCell::new(),
        }
    }

    fn index(&self) -> &LabelIndex<'a> {
        self.by_label.get_or_init(|| {
            let mut by_label = LabelIndex::new();
            for (i, w) in self.cfg.workload_endpoints.iter().enumerate() {
                let ns = w.value.metadata.namespace.as_deref().unwrap_or("default");
                for (k, v) in &w.value.metadata.labels {
                    by_label
                        .entry((ns, k.as_str(), v.as_str()))
                        .or_default()
                        .push(i as u32);
                }
            }
            by_label
        })
    }

    /// The endpoints in namespace `ns` carrying every pair of `selector` (not empty), in
    /// configuration order.
    fn select(&self, ns: &str, selector: &Labels) -> Vec<&'a WorkloadEndpoint> {
        let index = self.index();
        let lists: Option<Vec<&Vec<u32>>> = selector
            .iter()
            .map(|(k, v)| index.get(&(ns, k.as_str(), v.as_str())))
            .collect();
        let Some(rarest) = lists.and_then(|l| l.into_iter().min_by_key(|l| l.len())) else {
            return Vec::new();
        };
        rarest
            .iter()
            .map(|&i| &*self.cfg.workload_endpoints[i as usize].value)
            .filter(|w| {
                selector
                    .iter()
                    .all(|(k, v)| w.metadata.labels.get(k) == Some(v))
            })
            .collect()
    }
}

/// The slices a service's backends come from. A Service with a selector gets those the
/// EndpointSlice controller would make (`selected_slices`) from the endpoints it selects
/// (`endpoints`): without Kubernetes nothing else makes them. Any other gets the slices
/// written for it (`written`, from `slices_by_service`).
pub fn service_slices(
    endpoints: &Selectable,
    svc: &Service,
    written: Option<&Vec<&Arc<EndpointSlice>>>,
) -> Vec<Arc<EndpointSlice>> {
    if svc.spec.selector.is_empty() {
        return written
            .into_iter()
            .flatten()
            .map(|s| Arc::clone(s))
            .collect();
    }
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let selected = endpoints.select(ns, &svc.spec.selector);
    selected_slices(svc, &selected)
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// What Kubernetes' EndpointSlice controller makes for the Service `svc` from the endpoints
/// its selector selects (`selected`): each endpoint's addresses, ready unless annotated
/// `READY_ANNOTATION: "false"`, on its node; each service port's target port resolved per
/// endpoint (`targetPort` a number, or the name of one of the endpoint's `ports`; the service
/// port when absent), an endpoint whose named port is missing being no backend of that port.
/// Endpoints whose target ports resolve alike share a slice, as the controller groups them.
pub fn selected_slices(svc: &Service, selected: &[&WorkloadEndpoint]) -> Vec<EndpointSlice> {
    let ns = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    type Mapping = Vec<(Option<String>, u8, i64)>;
    let mut groups: BTreeMap<Mapping, (Vec<EndpointSlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for w in selected {
        let ports: Vec<EndpointSlicePort> = svc
            .spec
            .ports
            .iter()
            .filter_map(|p| {
                let proto = proto_number(p.protocol);
                let port = match &p.target_port {
                    None => p.port,
                    Some(IntOrString::Int(n)) => *n,
                    Some(IntOrString::String(name)) => w.spec.ports.iter().find_map(|wp| {
                        (wp.name == *name
                            && weft_model::net::parse_protocol(&wp.protocol).ok() == Some(proto))
                        .then_some(wp.port)
                    })?,
                };
                Some(EndpointSlicePort {
                    name: p.name.clone(),
                    protocol: p.protocol,
                    port: Some(port),
                    app_protocol: None,
                })
            })
            .collect();
        let addresses: Vec<String> = w
            .spec
            .ip_networks
            .iter()
            .filter_map(|n| match n.parse::<Cidr>() {
                Ok(Cidr::V4 { addr, .. }) => Some(addr.to_string()),
                _ => None,
            })
            .collect();
        if addresses.is_empty() {
            continue;
        }
        let ready = w
            .metadata
            .annotations
            .get(READY_ANNOTATION)
            .map(String::as_str)
            != Some("false");
        let mapping: Mapping = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    proto_number(p.protocol),
                    p.port.unwrap_or(0),
                )
            })
            .collect();
        let group = groups.entry(mapping).or_insert_with(|| (ports, Vec::new()));
        group.1.push(Endpoint {
            addresses,
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            node_name: w.spec.node.as_deref().map(str::to_string),
            ..Endpoint::default()
        });
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (_, (ports, endpoints)))| EndpointSlice {
            api_version: "discovery.k8s.io/v1".into(),
            kind: "EndpointSlice".into(),
            metadata: ObjectMeta {
                name: format!("{}-selected-{i}", svc.metadata.name),
                namespace: Some(ns.clone()),
                labels: Labels::from([(
                    EndpointSlice::SERVICE_NAME_LABEL.to_string(),
                    svc.metadata.name.clone(),
                )]),
                ..ObjectMeta::default()
            },
            address_type: AddressType::IPv4,
            endpoints: Some(endpoints),
            ports: Some(ports),
        })
        .collect()
}

/// Every service's IPv4 EndpointSlices, in load order: one pass, so that finding a service's
/// slices costs a lookup rather than a scan of every slice.
pub fn slices_by_service(cfg: &Config) -> BTreeMap<ServiceKey, Vec<&Arc<EndpointSlice>>> {
    let mut by: BTreeMap<ServiceKey, Vec<&Arc<EndpointSlice>>> = BTreeMap::new();
    for s in &cfg.endpoint_slices {
        if let Some(k) = slice_service(&s.value) {
            by.entry(k).or_default().push(&s.value);
        }
    }
    by
}

/// The backends of one service port: ready endpoints (all of them with
/// publishNotReadyAddresses), or, when none is ready, the serving ones that are terminating (as
/// kube-proxy does); local first.
fn backends(
    slices: &[&EndpointSlice],
    port_name: &str,
    proto: u8,
    node: &str,
    publish_not_ready: bool,
) -> Vec<Backend> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for s in slices {
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or("") == port_name && proto_number(p.protocol) == proto
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in s.endpoints() {
            let c = e.conditions.clone().unwrap_or_default();
            let is_ready = c.ready.unwrap_or(true);
            let serving = c.serving.unwrap_or(is_ready);
            let is_terminating = c.terminating.unwrap_or(false);
            let remote = e.node_name.as_deref() != Some(node);
            for a in e.addresses.iter().filter_map(|a| v4(a)) {
                let b = Backend {
                    remote,
                    addr: a,
                    port,
                };
                if is_ready || publish_not_ready {
                    ready.insert(b);
                } else if serving && is_terminating {
                    terminating.insert(b);
                }
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen.into_iter().collect()
}

/// One port of a service as the tables need it, worked out on its own. `tables` puts the
/// ports of every service together; the incremental reconciler keeps them per service so that a
/// changed service is worked out again alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortTables {
    /// A port weft cannot translate: only a warning.
    Warning(Warning),
    Port(Box<PortEntries>),
}

/// The entries of one service port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortEntries {
    pub id: u32,
    /// "namespace/name port label", what the id stands for.
    pub name: String,
    /// For the warning when the id clashes with another port's.
    pub service: String,
    pub label: String,
    pub frontends: Vec<maps::Entry>,
    pub backends: Vec<maps::Entry>,
    pub source_ranges: Vec<maps::Entry>,
    pub maglev: Vec<maps::Entry>,
    /// Addresses host processes reach this port at (not excluded from NAT).
    pub service_ips: Vec<Ipv4Addr>,
}

/// What services need, per node: every service's ports put together in load order. A port
/// whose id another port took first is left out, with a warning.
pub fn tables(
    cfg: &Config,
    node: &str,
    host_addrs: &BTreeSet<Ipv4Addr>,
    settings: &ServiceSettings,
) -> ServiceTables {
    merge(cfg, &ports(cfg, node, host_addrs, settings))
}

/// Every service's ports, worked out one service at a time.
pub fn ports(
    cfg: &Config,
    node: &str,
    host_addrs: &BTreeSet<Ipv4Addr>,
    settings: &ServiceSettings,
) -> BTreeMap<ServiceKey, Arc<Vec<PortTables>>> {
    let slices = slices_by_service(cfg);
    let endpoints = Selectable::new(cfg);
    cfg.services
        .iter()
        .map(|item| {
            let key = service_key(&item.value);
            let mine = service_slices(&endpoints, &item.value, slices.get(&key));
            let refs: Vec<&EndpointSlice> = mine.iter().map(|s| &**s).collect();
            let p = service_ports(item, &refs, node, host_addrs, settings);
            (key, Arc::new(p))
        })
        .collect()
}

/// Every service's ports put together in load order: the service tables, from the ports
/// worked out per service.
pub fn merge(cfg: &Config, ports: &BTreeMap<ServiceKey, Arc<Vec<PortTables>>>) -> ServiceTables {
    let mut t = ServiceTables::default();
    for item in &cfg.services {
        for p in ports
            .get(&service_key(&item.value))
            .into_iter()
            .flat_map(|p| p.iter())
        {
            add_port(&mut t, p.clone());
        }
    }
    t.warnings.extend(slice_warnings(cfg));
    t
}

/// Where each service port's backends come from, by service port id (what `weft dump nat`
/// shows): the Service's selector (weft made the slices), or the EndpointSlices written for it.
pub fn backend_origins(cfg: &Config) -> BTreeMap<u32, String> {
    let written = slices_by_service(cfg);
    let mut out = BTreeMap::new();
    for item in &cfg.services {
        let svc = &item.value;
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let origin = if svc.spec.selector.is_empty() {
            let names: Vec<String> = written
                .get(&service_key(svc))
                .into_iter()
                .flatten()
                .map(|s| format!("{ns}/{}", s.metadata.name))
                .collect();
            if names.is_empty() {
                "no EndpointSlice".to_string()
            } else {
                format!("EndpointSlice {}", names.join(" "))
            }
        } else {
            let pairs: Vec<String> = svc
                .spec
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("selector {}", pairs.join(","))
        };
        for port in &svc.spec.ports {
            out.insert(port_id(ns, &svc.metadata.name, port).0, origin.clone());
        }
    }
    out
}

/// A warning for each EndpointSlice that serves nothing: its Service is not in the files (a
/// typo in the service-name label, say), or has a selector, whose slices weft makes itself
/// from the endpoints it selects, as Kubernetes' controller does.
pub fn slice_warnings(cfg: &Config) -> Vec<Warning> {
    let services: BTreeMap<(&str, &str), bool> = cfg
        .services
        .iter()
        .map(|s| {
            let m = &s.value.metadata;
            let ns = m.namespace.as_deref().unwrap_or("default");
            ((ns, m.name.as_str()), !s.value.spec.selector.is_empty())
        })
        .collect();
    cfg.endpoint_slices
        .iter()
        .filter_map(|s| {
            let key = slice_service_ref(&s.value)?;
            // A Service with written slices uses them; one with a selector, or none, does not.
            let has_selector = match services.get(&key) {
                Some(false) => return None,
                known => known.is_some(),
            };
            let name = format!("{}/{}", key.0, key.1);
            let why = if has_selector {
                format!(
                    "its Service {name} has a selector, so weft makes the service's slices from the WorkloadEndpoints it selects (as Kubernetes' EndpointSlice controller does) and this one is not used; remove it, or the selector"
                )
            } else {
                format!("its Service {name} is not in the files, so its endpoints serve nothing")
            };
            Some(Warning::service(
                name.clone(),
                format!(
                    "{}: EndpointSlice {}/{}: {why}",
                    s.source, key.0, s.value.metadata.name
                ),
            ))
        })
        .collect()
}

/// Adds one port's entries to `t`, unless its id is taken.
pub fn add_port(t: &mut ServiceTables, p: PortTables) {
    let p = match p {
        PortTables::Warning(w) => {
            t.warnings.push(w);
            return;
        }
        PortTables::Port(p) => p,
    };
    if let Some(other) = t.names.get(&p.id) {
        t.warnings.push(Warning::service(
            p.service.clone(),
            format!(
                "Service {} port {}: its id clashes with {other}; it is not programmed",
                p.service, p.label
            ),
        ));
        return;
    }
    Arc::make_mut(&mut t.names).insert(p.id, p.name);
    Arc::make_mut(&mut t.frontends).extend(p.frontends);
    Arc::make_mut(&mut t.backends).extend(p.backends);
    Arc::make_mut(&mut t.source_ranges).extend(p.source_ranges);
    Arc::make_mut(&mut t.maglev).extend(p.maglev);
    t.service_ips.extend(p.service_ips);
}

/// The ports of one service, given its IPv4 EndpointSlices in load order.
pub fn service_ports(
    item: &Item<Service>,
    slices: &[&EndpointSlice],
    node: &str,
    host_addrs: &BTreeSet<Ipv4Addr>,
    settings: &ServiceSettings,
) -> Vec<PortTables> {
    let mut out = Vec::new();
    let excluded = |a: Ipv4Addr| {
        settings
            .exclude
            .iter()
            .any(|n| n.contains_addr(u32::from(a)))
    };
    let svc = &item.value;
    let spec = &svc.spec;
    let ty = spec.service_type.unwrap_or(ServiceType::ClusterIP);
    if ty == ServiceType::ExternalName {
        return out;
    }
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let affinity = match spec.session_affinity {
        Some(SessionAffinity::ClientIP) => spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800) as u32,
        _ => 0,
    };
    let maglev = svc
        .metadata
        .annotations
        .get(MAGLEV_ANNOTATION)
        .is_some_and(|v| v == "maglev");
    let etp_local = spec.external_traffic_policy == Some(TrafficPolicy::Local);
    let itp_local = spec.internal_traffic_policy == Some(TrafficPolicy::Local);
    let mut cluster_ips: Vec<Ipv4Addr> = spec.cluster_ips.iter().filter_map(|s| v4(s)).collect();
    if let Some(ip) = spec.cluster_ip.as_deref().and_then(v4) {
        if !cluster_ips.contains(&ip) {
            cluster_ips.push(ip);
        }
    }
    let external: Vec<Ipv4Addr> = spec.external_ips.iter().filter_map(|s| v4(s)).collect();
    let mut lb: Vec<Ipv4Addr> = Vec::new();
    if ty == ServiceType::LoadBalancer {
        lb.extend(
            svc.status
                .iter()
                .flat_map(|s| s.load_balancer.iter())
                .flat_map(|l| l.ingress.iter())
                .filter_map(|i| i.ip.as_deref().and_then(v4)),
        );
        lb.extend(spec.load_balancer_ip.as_deref().and_then(v4));
    }
    let source_ranges: Vec<Net4> = spec
        .load_balancer_source_ranges
        .iter()
        .filter_map(|s| match s.parse::<Cidr>() {
            Ok(Cidr::V4 { addr, len }) => Some(Net4::new(u32::from(addr), len)),
            _ => None,
        })
        .collect();
    let node_ports = matches!(ty, ServiceType::NodePort | ServiceType::LoadBalancer);
    let svc_name = format!("{ns}/{}", svc.metadata.name);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if cluster_ips.is_empty() && !headless {
        // Kubernetes' API server gives a Service its clusterIP; from files nothing does.
        out.push(PortTables::Warning(Warning::service(
            svc_name.clone(),
            format!(
                "{}: Service {svc_name}: spec.clusterIP is missing, and without Kubernetes nothing allocates one: the service has no cluster address (write one from your service range, or \"None\" for a headless service)",
                item.source
            ),
        )));
    }

    for port in &spec.ports {
        let proto = proto_number(port.protocol);
        let name = port.name.clone().unwrap_or_default();
        let (id, label) = port_id(ns, &svc.metadata.name, port);
        if proto == 132 {
            out.push(PortTables::Warning(Warning::service(
                format!("{ns}/{}", svc.metadata.name),
                format!(
                    "{}: Service {ns}/{}: port {label} is SCTP, which weft does not translate yet",
                    item.source, svc.metadata.name
                ),
            )));
            continue;
        }
        let Ok(svc_port) = u16::try_from(port.port) else {
            continue;
        };
        // Backends are matched to a service port by name: a slice whose ports are named
        // otherwise gives this port none, silently, unless said.
        let slice_ports: BTreeSet<&str> = slices
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter(|p| proto_number(p.protocol) == proto)
            .map(|p| p.name.as_deref().unwrap_or(""))
            .collect();
        if !slices.is_empty() && !slice_ports.contains(name.as_str()) {
            let theirs: Vec<String> = slice_ports
                .iter()
                .map(|n| {
                    if n.is_empty() {
                        "(unnamed)".to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            out.push(PortTables::Warning(Warning::service(
                svc_name.clone(),
                format!(
                    "{}: Service {svc_name}: port {label} has no port of that name in its EndpointSlices (they name {}), so it has no backends; name the ports alike",
                    item.source,
                    if theirs.is_empty() { "none".to_string() } else { theirs.join(", ") }
                ),
            )));
        }
        let mut t = PortEntries {
            id,
            name: format!("{ns}/{} port {label}", svc.metadata.name),
            service: format!("{ns}/{}", svc.metadata.name),
            label: label.clone(),
            ..PortEntries::default()
        };
        let bes = backends(slices, &name, proto, node, spec.publish_not_ready_addresses);
        let local = bes.iter().filter(|b| !b.remote).count() as u32;
        for (i, b) in bes.iter().enumerate() {
            let k = NatBackendKey {
                svc_id: id,
                ordinal: i as u32,
            };
            let v = NatBackend {
                addr: maps::addr_be(b.addr),
                port: b.port,
                pad: 0,
            };
            t.backends.push(spec::NAT_BE4.entry(&k, &v));
        }
        let maglev_size = if maglev && !bes.is_empty() {
            weft_model::maglev_table_size(settings.maglev_max_endpoints)
        } else {
            0
        };
        if maglev_size > 0 {
            let names: Vec<String> = bes
                .iter()
                .map(|b| format!("{}:{}", b.addr, b.port))
                .collect();
            for (slot, bi) in maglev_table(&names, maglev_size).into_iter().enumerate() {
                let b = bes[bi];
                let k = NatBackendKey {
                    svc_id: id,
                    ordinal: slot as u32,
                };
                let v = NatBackend {
                    addr: maps::addr_be(b.addr),
                    port: b.port,
                    pad: 0,
                };
                t.maglev.push(spec::MAGLEV4.entry(&k, &v));
            }
        }
        for r in &source_ranges {
            let k = NatSrcKey {
                prefixlen: 32 + u32::from(r.len),
                svc_id: id,
                addr: maps::addr_be(Ipv4Addr::from(r.addr)),
            };
            t.source_ranges.push(spec::NAT_SRC4.entry(&k, &1u32));
        }
        let frontend = |addr: Ipv4Addr, fport: u16, flags: u32, t: &mut PortEntries| {
            if excluded(addr) {
                return;
            }
            let k = NatFrontendKey {
                addr: maps::addr_be(addr),
                port: fport,
                proto,
                pad: 0,
            };
            let v = NatFrontend {
                svc_id: id,
                count: bes.len() as u32,
                local_count: local,
                affinity_timeout_s: affinity,
                flags,
                maglev_size: if flags & maps::NAT_F_MAGLEV != 0 {
                    maglev_size
                } else {
                    0
                },
            };
            t.frontends.push(spec::NAT_FE4.entry(&k, &v));
        };
        let internal = if itp_local { maps::NAT_F_LOCAL_ONLY } else { 0 };
        let external_flags = if etp_local { maps::NAT_F_LOCAL_ONLY } else { 0 }
            | if maglev_size > 0 {
                maps::NAT_F_MAGLEV
            } else {
                0
            };
        let service_ip = |ip: Ipv4Addr, t: &mut PortEntries| {
            if !excluded(ip) {
                t.service_ips.push(ip);
            }
        };
        for ip in &cluster_ips {
            frontend(*ip, svc_port, internal, &mut t);
            service_ip(*ip, &mut t);
        }
        for ip in &external {
            frontend(*ip, svc_port, external_flags, &mut t);
            service_ip(*ip, &mut t);
        }
        let ranges = if source_ranges.is_empty() {
            0
        } else {
            maps::NAT_F_SRC_RANGES
        };
        for ip in &lb {
            frontend(*ip, svc_port, external_flags | ranges, &mut t);
            service_ip(*ip, &mut t);
        }
        if node_ports {
            if let Some(np) = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            {
                // NodePorts are tied to this node: no Maglev, which is for failover between nodes.
                let flags = if etp_local { maps::NAT_F_LOCAL_ONLY } else { 0 };
                for a in host_addrs.iter().filter(|a| !a.is_loopback()) {
                    frontend(*a, np, flags, &mut t);
                }
                if settings.dsr {
                    frontend(Ipv4Addr::UNSPECIFIED, np, maps::NAT_F_LOCAL_ONLY, &mut t);
                }
            }
        }
        out.push(PortTables::Port(Box::new(t)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::maps::Plain;

    use crate::testdir::config as load;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  externalTrafficPolicy: Local\n  ports:\n    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n";

    fn slice(endpoints: &str) -> String {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n  - {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n{endpoints}")
    }

    fn frontends(t: &ServiceTables) -> Vec<(NatFrontendKey, NatFrontend)> {
        t.frontends
            .iter()
            .map(|(k, v)| {
                (
                    NatFrontendKey::from_bytes(k).unwrap(),
                    NatFrontend::from_bytes(v).unwrap(),
                )
            })
            .collect()
    }

    fn backends_of(t: &ServiceTables) -> Vec<(u32, Ipv4Addr)> {
        t.backends
            .iter()
            .map(|(k, v)| {
                (
                    NatBackendKey::from_bytes(k).unwrap().ordinal,
                    Ipv4Addr::from(NatBackend::from_bytes(v).unwrap().addr.to_ne_bytes()),
                )
            })
            .collect()
    }

    #[test]
    fn ready_backends_local_first_and_frontends_per_address() {
        let cfg = load(&[
            SVC,
            &slice("  - {addresses: [10.65.0.9], nodeName: other}\n  - {addresses: [10.65.0.2], nodeName: n1}\n  - {addresses: [10.65.0.3], nodeName: n1, conditions: {ready: false}}\n"),
        ]);
        let hosts = BTreeSet::from([Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(127, 0, 0, 1)]);
        let t = tables(
            &cfg,
            "n1",
            &hosts,
            &ServiceSettings {
                maglev_max_endpoints: 100,
                exclude: vec![],
                dsr: false,
            },
        );
        assert_eq!(
            backends_of(&t),
            vec![
                (0, Ipv4Addr::new(10, 65, 0, 2)),
                (1, Ipv4Addr::new(10, 65, 0, 9))
            ]
        );
        let fe = frontends(&t);
        assert_eq!(
            fe.len(),
            2,
            "the cluster IP and the NodePort on 192.0.2.1, not on loopback: {fe:?}"
        );
        let cluster = fe.iter().find(|(k, _)| k.port == 80).unwrap().1;
        assert_eq!(
            (cluster.count, cluster.local_count, cluster.flags),
            (2, 1, 0)
        );
        let nodeport = fe.iter().find(|(k, _)| k.port == 30080).unwrap().1;
        assert_eq!(
            nodeport.flags,
            maps::NAT_F_LOCAL_ONLY,
            "externalTrafficPolicy Local"
        );
        assert!(t.service_ips.contains(&Ipv4Addr::new(10, 96, 0, 10)));
    }

    #[test]
    fn terminating_serving_endpoints_are_used_only_when_none_is_ready() {
        let cfg = load(&[SVC, &slice("  - {addresses: [10.65.0.2], conditions: {ready: false, serving: true, terminating: true}}\n")]);
        let t = tables(&cfg, "n1", &BTreeSet::new(), &ServiceSettings::default());
        assert_eq!(backends_of(&t).len(), 1);
        let cfg = load(&[
            SVC,
            &slice("  - {addresses: [10.65.0.2], conditions: {ready: false, serving: true, terminating: true}}\n  - {addresses: [10.65.0.3]}\n"),
        ]);
        let t = tables(&cfg, "n1", &BTreeSet::new(), &ServiceSettings::default());
        assert_eq!(backends_of(&t), vec![(0, Ipv4Addr::new(10, 65, 0, 3))]);
    }

    #[test]
    fn a_service_without_slices_still_has_a_frontend_that_rejects() {
        let t = tables(
            &load(&[SVC]),
            "n1",
            &BTreeSet::new(),
            &ServiceSettings::default(),
        );
        let fe = frontends(&t);
        assert_eq!(fe.len(), 1);
        assert_eq!(fe[0].1.count, 0);
    }

    fn wep(name: &str, ip: &str, labels: &str, ports: &str, extra_meta: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{{labels}}}\n{extra_meta}spec:\n  node: n2\n  interfaceName: cali{name}\n  ipNetworks: [{ip}/32]\n  profiles: [projectcalico-default-allow]\n  ports: [{ports}]\n"
        )
    }

    #[test]
    fn a_selector_makes_the_slices_kubernetes_would_from_the_endpoints_it_selects() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: web}\n  ports:\n    - {name: http, port: 80, targetPort: http}\n    - {name: admin, port: 81, targetPort: 9000}\n";
        let cfg = load(&[
            svc,
            // Named port http at 8080 and at 8081: two slices, as the controller makes them.
            &wep(
                "b1",
                "10.65.0.11",
                "app: web",
                "{name: http, protocol: TCP, port: 8080}",
                "",
            ),
            &wep(
                "b2",
                "10.65.0.12",
                "app: web",
                "{name: http, protocol: TCP, port: 8081}",
                "",
            ),
            // No port named http: a backend of admin only.
            &wep(
                "b3",
                "10.65.0.13",
                "app: web",
                "{name: other, protocol: TCP, port: 7000}",
                "",
            ),
            // Not ready, by annotation.
            &wep(
                "b4",
                "10.65.0.14",
                "app: web",
                "{name: http, protocol: TCP, port: 8080}",
                "  annotations: {weft.projectcalico.org/ready: \"false\"}\n",
            ),
            // Not selected: other labels, or another namespace.
            &wep(
                "c",
                "10.65.0.20",
                "app: db",
                "{name: http, protocol: TCP, port: 8080}",
                "",
            ),
            &wep(
                "d",
                "10.65.0.21",
                "app: web",
                "{name: http, protocol: TCP, port: 8080}",
                "",
            )
            .replace("namespace: shop", "namespace: other"),
        ]);
        let slices = service_slices(&Selectable::new(&cfg), &cfg.services[0].value, None);
        // (address, the slice's (port name, port), ready)
        type Seen = (String, Vec<(Option<String>, Option<i64>)>, bool);
        let mut seen: Vec<Seen> = slices
            .iter()
            .flat_map(|s| {
                let ports: Vec<(Option<String>, Option<i64>)> =
                    s.ports().iter().map(|p| (p.name.clone(), p.port)).collect();
                s.endpoints()
                    .iter()
                    .map(|e| {
                        let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                        (e.addresses[0].clone(), ports.clone(), ready)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        seen.sort();
        let http = |p: i64| (Some("http".to_string()), Some(p));
        let admin = (Some("admin".to_string()), Some(9000));
        assert_eq!(
            seen,
            vec![
                ("10.65.0.11".into(), vec![http(8080), admin.clone()], true),
                ("10.65.0.12".into(), vec![http(8081), admin.clone()], true),
                ("10.65.0.13".into(), vec![admin.clone()], true),
                ("10.65.0.14".into(), vec![http(8080), admin.clone()], false),
            ]
        );
        // Through the tables: port 80 has the three ready backends that name http.
        let t = tables(&cfg, "n1", &BTreeSet::new(), &ServiceSettings::default());
        let http_id = svc_id("shop", "web", "http/6");
        let mut backends: Vec<Ipv4Addr> = t
            .backends
            .iter()
            .filter(|(k, _)| NatBackendKey::from_bytes(k).unwrap().svc_id == http_id)
            .map(|(_, v)| Ipv4Addr::from(NatBackend::from_bytes(v).unwrap().addr.to_ne_bytes()))
            .collect();
        backends.sort();
        assert_eq!(
            backends,
            vec![Ipv4Addr::new(10, 65, 0, 11), Ipv4Addr::new(10, 65, 0, 12)]
        );
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn slices_written_for_a_service_with_a_selector_are_not_used_and_said_so() {
        let svc = SVC.replace("  ports:", "  selector: {app: web}\n  ports:");
        let cfg = load(&[
            &svc,
            &slice("  - addresses: [10.65.0.50]\n    conditions: {ready: true}\n"),
        ]);
        let t = tables(&cfg, "n1", &BTreeSet::new(), &ServiceSettings::default());
        assert!(
            backends_of(&t).is_empty(),
            "the written slice's endpoint is not used"
        );
        assert!(
            t.warnings.iter().any(|w| w
                .message
                .contains("EndpointSlice shop/web-1: its Service shop/web has a selector")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn maglev_tables_are_balanced_and_stable() {
        let names: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:80")).collect();
        let m = next_prime(500);
        assert_eq!(m, 503);
        let table = maglev_table(&names, m);
        assert_eq!(table.len(), 503);
        let mut counts = vec![0; 10];
        for &b in &table {
            counts[b] += 1;
        }
        assert!(
            counts.iter().all(|&c| (45..=56).contains(&c)),
            "near-equal shares: {counts:?}"
        );
        // Removing one backend moves few of the others' slots.
        let fewer: Vec<String> = names[..9].to_vec();
        let t2 = maglev_table(&fewer, m);
        let moved = table
            .iter()
            .zip(&t2)
            .filter(|(a, b)| **a != 9 && a != b)
            .count();
        assert!(
            moved < 503 / 10,
            "only slots of the removed backend should move much: {moved}"
        );
    }
}
