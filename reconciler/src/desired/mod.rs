//! Desired state: a pure function of the configuration and the host's facts.
//!
//! Workloads: for every workload endpoint of this node whose interface exists, its rulesets
//! (compiled policy, shared between endpoints with identical policy), its entry in weft_iface,
//! its addresses in weft_rt4, a /32 route through its interface, a permanent neighbour entry
//! when its MAC is known, forwarding and proxy ARP on the interface, and the two programs on
//! the interface's hooks.
//!
//! Services: the NAT maps (see services.rs); the data interfaces (BPFDataIfacePattern) get the
//! host programs so NodePorts and external addresses are translated where they arrive; with
//! BPFHostNetworkedNATWithoutCTLB, the bpfin.weft/bpfout.weft pair, routes to every service
//! address into bpfin.weft, and the translating program on bpfout.weft.
//!
//! With neither workloads nor services weft wants nothing at all: no maps, no programs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_model::{Cidr, Config, Item};

use crate::bpf::maps::{self, IfaceValue, MapSizes, Route4Key, RouteValue};
use crate::events::filter::{self as trace_filter, TraceSettings};
use crate::facts::HostFacts;
use crate::objects::CtTimeouts;
use crate::objects::Hook;
use crate::objects::{AttachMode, CgroupHook};
use crate::objects::{EpToHost, Object, ProgramIdentity, ProgramSettings, Rpf};
use crate::policy::classify::CompileError;
use crate::policy::flat::Net4;
use crate::policy::resolve::{Direction, Endpoint, Entities, Entity, PolicyIndex, RuleInfo, Stage};
use crate::services::{ServiceSettings, ServiceTables};
pub mod computed;
pub mod fleet;
pub mod hosts;
pub use computed::Computed;

use crate::warning::{self, Warning};

use crate::state::{
    AttachmentState, CgroupAttachment, HostState, LinkState, MapState, Names, NeighbourState,
    OwnedLink, ProgramState, RouteState, DATA_SYSCTLS, NAT_IN_SYSCTLS, NAT_OUT_SYSCTLS,
    WORKLOAD_SYSCTLS,
};

/// The devices host processes' traffic to services takes when the socket layer does not
/// translate it: routed into NAT_IN, it comes out of NAT_OUT, where weft translates it.
pub const NAT_IN: &str = "bpfin.weft";
pub const NAT_OUT: &str = "bpfout.weft";
/// Fixed, locally administered MACs ("weft" in the middle), so the gateway's neighbour entry is
/// known before the devices exist.
pub const NAT_IN_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x66, 0x74, 0x00];
pub const NAT_OUT_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x66, 0x74, 0x01];
/// The gateway service routes use on bpfin.weft: it resolves to bpfout.weft's MAC.
pub const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

/// Connect-time load balancing (BPFConnectTimeLoadBalancing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctlb {
    Tcp,
    Enabled,
    Disabled,
}

/// The dataplane settings FelixConfiguration chooses for this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub wep: ProgramSettings,
    pub attach: AttachMode,
    /// bpfAttachType is left unset on a kernel with TCX: the mode of each attachment is
    /// settled against the live state (`plan::settle_attach_modes`).
    pub attach_auto: bool,
    pub sizes: MapSizes,
    pub ctlb: Ctlb,
    /// BPFHostNetworkedNATWithoutCTLB.
    pub host_nat: bool,
    /// BPFDataIfacePattern.
    pub data_ifaces: String,
    pub maglev_max_endpoints: u32,
    /// BPFExcludeCIDRsFromNAT.
    pub exclude_nat: Vec<Net4>,
    /// BPFConntrackTimeouts: what the conntrack collector deletes when.
    pub ct_timeouts: CtTimeouts,
    /// BPFLogLevel and BPFLogFilters: which interfaces' packets are traced.
    pub trace: TraceSettings,
    /// XDPEnabled: host endpoints' untracked ingress policy drops in XDP too.
    pub xdp: bool,
}

impl Settings {
    pub fn for_node(cfg: &Config, facts: &HostFacts) -> Settings {
        let felix = cfg.felix_for_node(&facts.node);
        let ep_to_host = match felix.default_endpoint_to_host_action() {
            weft_model::EndpointToHostAction::Drop => EpToHost::Drop,
            weft_model::EndpointToHostAction::Return => EpToHost::Return,
            weft_model::EndpointToHostAction::Accept => EpToHost::Accept,
        };
        let attach = match felix.bpf_attach_type() {
            weft_model::BpfAttachType::Tc => AttachMode::Tc,
            weft_model::BpfAttachType::Tcx if facts.tcx => AttachMode::Tcx,
            // TCX asked for (or defaulted to) on a kernel without it: fall back, as Calico does.
            weft_model::BpfAttachType::Tcx => AttachMode::Tc,
        };
        let maglev_max_endpoints = felix.bpf_maglev_max_endpoints_per_service();
        let tunnel = fleet::vxlan_on(cfg, &felix);
        let sizes = MapSizes::from_felix(&felix);
        let ctlb = match felix.bpf_connect_time_load_balancing() {
            weft_model::BpfConnectTimeLoadBalancing::Tcp => Ctlb::Tcp,
            weft_model::BpfConnectTimeLoadBalancing::Enabled => Ctlb::Enabled,
            weft_model::BpfConnectTimeLoadBalancing::Disabled => Ctlb::Disabled,
        };
        let exclude_nat = felix
            .bpf_exclude_cidrs_from_nat()
            .iter()
            .filter_map(|c| match c {
                Cidr::V4 { addr, len } => Some(Net4::new(u32::from(*addr), *len)),
                Cidr::V6 { .. } => None,
            })
            .collect();
        Settings {
            wep: ProgramSettings {
                ep_to_host,
                ctlb_udp: ctlb == Ctlb::Enabled,
                netns_cookie: facts.netns_cookie,
                tunnel,
                mss_clamp: tunnel
                    .then(|| fleet::mss_clamp(cfg, facts, &felix))
                    .flatten()
                    .unwrap_or(0),
                dsr: felix.bpf_external_service_mode() == weft_model::BpfExternalServiceMode::Dsr
                    && tunnel,
                xdp_accel: (tunnel
                    && felix.bpf_external_service_acceleration()
                        == weft_model::BpfExternalServiceAcceleration::Xdp)
                    .then(|| fleet::xdp_accel(cfg, facts, &felix))
                    .flatten(),
                rpf: match felix.bpf_enforce_rpf() {
                    weft_model::BpfEnforceRpf::Disabled => Rpf::Disabled,
                    weft_model::BpfEnforceRpf::Strict => Rpf::Strict,
                    weft_model::BpfEnforceRpf::Loose => Rpf::Loose,
                },
            },
            attach,
            attach_auto: attach == AttachMode::Tcx && !felix.bpf_attach_type_is_set(),
            sizes,
            ctlb,
            host_nat: felix.bpf_host_networked_nat_without_ctlb()
                == weft_model::EnabledDisabled::Enabled,
            data_ifaces: felix.bpf_data_iface_pattern().to_string(),
            maglev_max_endpoints,
            exclude_nat,
            ct_timeouts: CtTimeouts::from_config(&felix.bpf_conntrack_timeouts()),
            trace: TraceSettings::new(felix.bpf_log_level(), &felix.bpf_log_filters()),
            xdp: felix.xdp_enabled(),
        }
    }
}

/// A local endpoint weft programs, for status and dumps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointSummary {
    pub name: String,
    pub iface: String,
    pub ifindex: u32,
    pub addrs: Vec<Ipv4Addr>,
    pub ruleset_ingress: u32,
    pub ruleset_egress: u32,
}

#[derive(Clone, Debug)]
pub struct Desired {
    pub state: HostState,
    pub settings: Settings,
    /// Things the user should know that do not stop the apply, in `warning::order`.
    pub warnings: Vec<Warning>,
    pub endpoints: Vec<EndpointSummary>,
    pub host_endpoints: Vec<hosts::HostEndpointSummary>,
    /// Per (endpoint name, direction): its rules in evaluation order, with ids.
    pub rules: BTreeMap<(String, Direction), Vec<RuleInfo>>,
    /// What service ids stand for.
    pub services: Arc<BTreeMap<u32, String>>,
    /// The address sets the local endpoints' rules select, by selector (Calico's IP sets).
    pub ip_sets: BTreeMap<String, Vec<Net4>>,
}

impl Desired {
    /// The attach modes, settled against `live` (the state observed, or the state last applied
    /// when that is trusted) where bpfAttachType is left unset: `plan::settle_attach_modes`.
    /// Every plan from a computed state to a live one goes through here first.
    pub fn settle_attach_modes(&mut self, live: &HostState) {
        if self.settings.attach_auto {
            crate::plan::settle_attach_modes(&mut self.state, live);
        }
    }

    /// What the rule and service ids of the configuration stand for.
    pub fn names(&self) -> Names {
        // A rule shared by many endpoints is described once.
        let mut rules = BTreeMap::new();
        for r in self.rules.values().flatten() {
            rules.entry(r.id).or_insert_with(|| r.describe());
        }
        Names {
            rules,
            services: self.services.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("WorkloadEndpoints {a} and {b} both use interface {iface} on this node")]
    SharedInterface { a: String, b: String, iface: String },
    #[error("WorkloadEndpoints {a} and {b} both claim address {addr} on this node")]
    SharedAddress {
        a: String,
        b: String,
        addr: Ipv4Addr,
    },
    #[error("compiling {endpoint} {direction} policy: {source}")]
    Compile {
        endpoint: String,
        direction: Direction,
        source: CompileError,
    },
    #[error(
        "FelixConfiguration bpfDataIfacePattern {pattern:?} is not a regular expression: {message}"
    )]
    DataIfacePattern { pattern: String, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    MapsFull(Vec<FullMap>),
}

/// A map too small for the entries the desired state puts in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("map {map} would hold {entries} entries and holds at most {max}: {setting}")]
pub struct FullMap {
    pub map: String,
    pub entries: usize,
    pub max: u32,
    /// What to do about it: the FelixConfiguration field to raise, or that the size is fixed.
    pub setting: String,
    /// The FelixConfiguration field the map's size follows, if any.
    pub field: Option<&'static str>,
}

/// Reading the validated resources: the values were checked by weft-model, so a value that
/// does not parse here is skipped rather than reported twice.
mod read {
    use weft_model::net::{parse_mac, parse_protocol};
    use weft_model::{EndpointPort, IntOrString, WorkloadEndpoint, WorkloadEndpointPort};

    fn port(name: &str, protocol: &IntOrString, port: i64) -> Option<(String, u8, u16)> {
        Some((
            name.to_string(),
            parse_protocol(protocol).ok()?,
            u16::try_from(port).ok()?,
        ))
    }

    pub fn wep_ports(p: &[WorkloadEndpointPort]) -> Vec<(String, u8, u16)> {
        p.iter()
            .filter(|p| !p.name.is_empty())
            .filter_map(|p| port(&p.name, &p.protocol, p.port))
            .collect()
    }

    pub fn hep_ports(p: &[EndpointPort]) -> Vec<(String, u8, u16)> {
        p.iter()
            .filter_map(|p| port(&p.name, &p.protocol, p.port))
            .collect()
    }

    pub fn mac(w: &WorkloadEndpoint) -> Option<[u8; 6]> {
        w.spec.mac.as_deref().and_then(|m| parse_mac(m).ok())
    }

    pub fn name(w: &WorkloadEndpoint) -> String {
        match &w.metadata.namespace {
            Some(ns) => format!("{ns}/{}", w.metadata.name),
            None => w.metadata.name.clone(),
        }
    }
}

fn v4_hosts(nets: &[Cidr]) -> Vec<Ipv4Addr> {
    nets.iter()
        .filter_map(|c| match c {
            Cidr::V4 { addr, .. } => Some(*addr),
            Cidr::V6 { .. } => None,
        })
        .collect()
}

fn net4(c: &Cidr) -> Option<Net4> {
    match c {
        Cidr::V4 { addr, len } => Some(Net4::new(u32::from(*addr), *len)),
        Cidr::V6 { .. } => None,
    }
}

/// Everything selectors can pick, across the whole fleet's configuration.
pub fn entities(cfg: &Config) -> Vec<Entity> {
    entities_reusing(cfg, None, &mut LabelSets::default())
        .1
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect()
}

/// `entities`, each taken from `last` (what they were made of, and what was made) where its
/// resource is the very one it was made of then, rather than made again; with what they are
/// made of now. What stayed is moved from `last`, not copied.
fn entities_reusing(
    cfg: &Config,
    last: Option<(EntityInputs, Vec<Arc<Entity>>)>,
    labels: &mut LabelSets,
) -> (EntityInputs, Vec<Arc<Entity>>) {
    /// One kind's: `held` and `made` are the last list's, in load order as `items` are, so
    /// one walk over both finds what stayed (and drops what went).
    fn of<T>(
        items: &[Item<T>],
        held: Vec<Item<T>>,
        made: &mut std::vec::IntoIter<Arc<Entity>>,
        mut make: impl FnMut(&T) -> Entity,
        inputs: &mut Vec<Item<T>>,
        out: &mut Vec<Arc<Entity>>,
    ) {
        let mut last = held.into_iter().zip(made.by_ref()).peekable();
        inputs.reserve(items.len());
        for i in items {
            let went = |(h, _): &(Item<T>, _)| {
                !Arc::ptr_eq(&h.value, &i.value) && h.source.load_order() < i.source.load_order()
            };
            while last.next_if(went).is_some() {}
            match last.next_if(|(h, _)| Arc::ptr_eq(&h.value, &i.value)) {
                Some((h, e)) => {
                    inputs.push(h);
                    out.push(e);
                }
                None => {
                    inputs.push(Item {
                        source: i.source.clone(),
                        value: i.value.clone(),
                    });
                    out.push(Arc::new(make(&i.value)));
                }
            }
        }
        // What is left of this kind's went; the next kind's entities follow in `made`.
        last.for_each(drop);
    }
    let (held, made) = last.unwrap_or_default();
    let mut made = made.into_iter();
    let nets = |cidrs: &[Cidr]| cidrs.iter().filter_map(net4).collect();
    let mut out = Vec::with_capacity(
        cfg.workload_endpoints.len()
            + cfg.host_endpoints.len()
            + cfg.network_sets.len()
            + cfg.global_network_sets.len(),
    );
    let mut inputs = EntityInputs {
        profiles: values(&cfg.profiles),
        ..Default::default()
    };
    of(
        &cfg.workload_endpoints,
        held.workloads,
        &mut made,
        |w| {
            Entity::new(
                labels.share(cfg.endpoint_labels(w)),
                nets(w.ip_networks()),
                read::wep_ports(&w.spec.ports),
            )
        },
        &mut inputs.workloads,
        &mut out,
    );
    of(
        &cfg.host_endpoints,
        held.hosts,
        &mut made,
        |h| {
            Entity::new(
                labels.share(cfg.host_endpoint_labels(h)),
                nets(h.expected_ips()),
                read::hep_ports(&h.spec.ports),
            )
        },
        &mut inputs.hosts,
        &mut out,
    );
    of(
        &cfg.network_sets,
        held.sets,
        &mut made,
        |n| {
            Entity::new(
                labels.share(cfg.network_set_labels(n)),
                nets(n.nets()),
                Vec::new(),
            )
        },
        &mut inputs.sets,
        &mut out,
    );
    of(
        &cfg.global_network_sets,
        held.global_sets,
        &mut made,
        |n| {
            let l = labels.share(cfg.global_network_set_labels(n));
            Entity::new(l, nets(n.nets()), Vec::new())
        },
        &mut inputs.global_sets,
        &mut out,
    );
    (inputs, out)
}

/// `entities` of a configuration and their fingerprint (`resolve::universe`), as last made.
/// Where the profiles that label them are the very same, only the entities of resources not
/// seen last time are made: a change to policies or services labels no endpoint again (25 ms
/// at 10,000 endpoints), and a node added with its workloads labels only those (100,000
/// remote workloads took 80 ms to label).
#[derive(Clone, Default)]
pub struct EntitiesMemo {
    last: Option<(EntityInputs, Entities, u64)>,
    labels: LabelSets,
}

/// The label sets of entities, each kept once and shared by every entity that has it: an
/// entity's labels (its own, its profiles' and its namespace's, a map of a few pairs) were
/// about 550 bytes, most of an entity, and the pods of a deployment have the same.
#[derive(Clone, Default)]
struct LabelSets(crate::policy::fxhash::FxHashSet<Arc<BTreeMap<String, String>>>);

impl LabelSets {
    fn share(&mut self, labels: BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
        if let Some(kept) = self.0.get(&labels) {
            return kept.clone();
        }
        let kept = Arc::new(labels);
        self.0.insert(kept.clone());
        kept
    }

    /// Lets go of the sets no entity has any more.
    fn prune(&mut self) {
        self.0.retain(|l| Arc::strong_count(l) > 1);
    }
}

/// What entities are made of: endpoints and network sets (with where each is, to walk the
/// last list beside the next), and the profiles (namespaces' included) that label them. Held,
/// not only compared, so that no allocation is freed and reused by another resource
/// meanwhile.
#[derive(Clone, Default)]
struct EntityInputs {
    workloads: Vec<Item<weft_model::WorkloadEndpoint>>,
    hosts: Vec<Item<weft_model::HostEndpoint>>,
    sets: Vec<Item<weft_model::NetworkSet>>,
    global_sets: Vec<Item<weft_model::GlobalNetworkSet>>,
    profiles: Vec<Arc<weft_model::Profile>>,
}

/// The resources of a list, shared: what a memo holds to know its inputs again.
pub(crate) fn values<T>(items: &[weft_model::Item<T>]) -> Vec<Arc<T>> {
    items.iter().map(|i| i.value.clone()).collect()
}

/// What a memo holds of a resource: the resource, or the resource with where it is.
pub(crate) trait Held<T> {
    fn resource(&self) -> &Arc<T>;
}

impl<T> Held<T> for Arc<T> {
    fn resource(&self) -> &Arc<T> {
        self
    }
}

impl<T> Held<T> for Item<T> {
    fn resource(&self) -> &Arc<T> {
        &self.value
    }
}

/// Whether `items` hold the very allocations `held`, in order (`same_allocations` with
/// `values(items)`, without taking them).
pub(crate) fn same_values<T>(held: &[impl Held<T>], items: &[Item<T>]) -> bool {
    held.len() == items.len()
        && held
            .iter()
            .zip(items)
            .all(|(a, b)| Arc::ptr_eq(a.resource(), &b.value))
}

/// Whether two lists hold the very same allocations, in order: a memo's inputs unchanged.
pub(crate) fn same_allocations<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
}

impl EntityInputs {
    /// Whether `cfg`'s inputs are these, compared where they are rather than taken first.
    fn are_of(&self, cfg: &Config) -> bool {
        use self::same_values as same;
        same(&self.workloads, &cfg.workload_endpoints)
            && same(&self.hosts, &cfg.host_endpoints)
            && same(&self.sets, &cfg.network_sets)
            && same(&self.global_sets, &cfg.global_network_sets)
            && same(&self.profiles, &cfg.profiles)
    }
}

impl EntitiesMemo {
    /// `entities(cfg)` and their fingerprint.
    pub fn of(&mut self, cfg: &Config) -> (Entities, u64) {
        if let Some((_, e, u)) = self.last.as_ref().filter(|(i, _, _)| i.are_of(cfg)) {
            return (e.clone(), *u);
        }
        // The last list is taken apart where nobody else holds it (a computation's index
        // has let it go by now), and copied otherwise.
        let last = self
            .last
            .take()
            .filter(|(i, _, _)| same_values(&i.profiles, &cfg.profiles))
            .map(|(i, e, _)| (i, Arc::unwrap_or_clone(e)));
        let (inputs, e) = entities_reusing(cfg, last, &mut self.labels);
        self.labels.prune();
        let u = crate::policy::resolve::universe(&e);
        let e = Arc::new(e);
        self.last = Some((inputs, e.clone(), u));
        (e, u)
    }
}

/// A workload endpoint as policy sees it: its labels, addresses, named ports and profiles.
pub fn endpoint(cfg: &Config, wep: &weft_model::WorkloadEndpoint) -> Endpoint {
    Endpoint {
        labels: cfg.endpoint_labels(wep),
        addrs: v4_hosts(wep.ip_networks())
            .iter()
            .map(|a| u32::from(*a))
            .collect(),
        named_ports: read::wep_ports(&wep.spec.ports),
        profiles: wep.spec.profiles.clone(),
    }
}

/// The desired state of `cfg` on a host with `facts`: the one computation every caller makes.
/// `cache` is what a long-running caller keeps between computations (the policy compiler's
/// memory: a changed policy recompiles only the rulesets it reaches); a fresh cache is a full
/// computation, and gives the same result.
pub fn compute(
    cfg: &Config,
    facts: &HostFacts,
    cache: &mut crate::policy::Cache,
) -> Result<Computed, DesiredError> {
    let _p = crate::timing::phase("desired");
    Computed::compute(cfg, facts, cache)
}

/// `compute` with nothing remembered, for a one-shot caller.
pub fn desired(cfg: &Config, facts: &HostFacts) -> Result<Desired, DesiredError> {
    Ok(compute(cfg, facts, &mut crate::policy::Cache::default())?.desired)
}

/// What `cfg` leaves silently undone on node `node`, said: what the files' own loading noted
/// (`Config::warnings`), a node name that no WorkloadEndpoint names (a `--node` typo would
/// otherwise program nothing and say nothing).
fn config_warnings(cfg: &Config, node: &str, any_local: bool) -> Vec<Warning> {
    let mut out: Vec<Warning> = cfg
        .warnings
        .iter()
        .map(|w| {
            let about = w
                .resource
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            Warning::resource(about, w.to_string())
        })
        .collect();
    // The node names are gathered only when none is this one's (`any_local`: the caller
    // found this node's endpoints).
    let nodes: BTreeSet<&str> = if any_local {
        BTreeSet::new()
    } else {
        cfg.workload_endpoints
            .iter()
            .filter_map(|w| w.value.spec.node.as_deref())
            .collect()
    };
    if !nodes.is_empty() {
        let shown: Vec<&str> = nodes.iter().take(5).copied().collect();
        out.push(Warning::host(format!(
            "node {node} (--node, or the host name) matches no WorkloadEndpoint's spec.node, so no endpoint is programmed here; the files name {}{}",
            shown.join(", "),
            if nodes.len() > shown.len() { ", ..." } else { "" }
        )));
    }
    out
}

/// What can be found wrong with the desired state of `cfg` on node `node` before any host is
/// asked (`weft validate`): maps too small for their entries, endpoints sharing an interface
/// or an address, policies that do not compile. It assumes a host where every interface the
/// node's endpoints name exists and 192.0.2.1 is the one address; the plan checks again
/// against the real host, whose facts may add entries (more addresses, say).
pub fn check_node(cfg: &Config, node: &str) -> Result<(), DesiredError> {
    let ifaces: BTreeSet<&str> = cfg
        .workload_endpoints
        .iter()
        .filter(|w| w.value.spec.node.as_deref() == Some(node))
        .filter_map(|w| w.value.spec.interface_name.as_deref())
        .collect();
    // Index 1 is lo's.
    let links: Vec<(&str, u32)> = ifaces.into_iter().zip(2..).collect();
    desired(cfg, &HostFacts::fixture(node, &links)).map(|_| ())
}

/// What shapes the service tables, from the node's settings.
pub fn service_settings(settings: &Settings) -> ServiceSettings {
    ServiceSettings {
        maglev_max_endpoints: settings.maglev_max_endpoints,
        exclude: settings.exclude_nat.clone(),
        dsr: settings.wep.dsr,
    }
}

/// The desired state, with the settings and service tables worked out already (`Computed`
/// keeps the tables per service).
fn desired_from(
    cfg: &Config,
    facts: &HostFacts,
    settings: &Settings,
    svc: ServiceTables,
    cache: &mut crate::policy::Cache,
) -> Result<Desired, DesiredError> {
    let settings = settings.clone();
    let mut d = Desired {
        state: HostState::default(),
        settings: settings.clone(),
        warnings: Vec::new(),
        endpoints: Vec::new(),
        host_endpoints: Vec::new(),
        rules: BTreeMap::new(),
        services: Arc::default(),
        ip_sets: BTreeMap::new(),
    };

    // This node's endpoints whose interface exists.
    let mut local = Vec::new();
    let mut by_iface: BTreeMap<&str, String> = BTreeMap::new();
    let mut by_addr: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    // Other nodes' endpoints are gathered in the same walk, for the fleet's routes.
    let mut remote = fleet::RemoteAddrs::wanted(cfg, facts);
    for w in &cfg.workload_endpoints {
        let wep = &w.value;
        match (wep.spec.node.as_deref(), remote.as_mut()) {
            (Some(n), _) if n == facts.node => {}
            (Some(n), Some(remote)) => {
                remote.add(n, wep.ip_networks());
                continue;
            }
            _ => continue,
        }
        let name = read::name(wep);
        let iface = wep.spec.interface_name.as_deref().unwrap_or_default();
        if let Some(other) = by_iface.insert(iface, name.clone()) {
            return Err(DesiredError::SharedInterface {
                a: other,
                b: name,
                iface: iface.to_string(),
            });
        }
        for a in v4_hosts(wep.ip_networks()) {
            if let Some(other) = by_addr.insert(a, name.clone()) {
                return Err(DesiredError::SharedAddress {
                    a: other,
                    b: name,
                    addr: a,
                });
            }
        }
        match facts.links.get(iface) {
            Some(&ifindex) => local.push((w, ifindex)),
            None => d.warnings.push(Warning::endpoint(
                name.clone(),
                format!(
                    "{}: WorkloadEndpoint {name}: interface {iface} does not exist on node {}; it is programmed once it appears",
                    w.source, facts.node
                ),
            )),
        }
    }
    d.warnings.extend(svc.warnings.iter().cloned());
    d.warnings
        .extend(config_warnings(cfg, &facts.node, !by_iface.is_empty()));
    let fleet = fleet::plumbing(cfg, facts, &by_addr, remote, &mut d);
    let covered = hosts::covered(cfg, facts, &by_iface, &mut d.warnings);
    if local.is_empty() && svc.is_empty() && covered.is_empty() {
        warning::order(&mut d.warnings);
        return Ok(d);
    }

    let mut entries: BTreeMap<&str, maps::Entries> = maps::RECONCILED
        .iter()
        .map(|m| (*m, maps::Entries::new()))
        .collect();
    let mut shared: BTreeMap<&str, Arc<maps::Entries>> = BTreeMap::new();
    let mut add = |map: &'static str, kv: maps::Entry| {
        entries
            .get_mut(map)
            .expect("reconciled map")
            .insert(kv.0, kv.1);
    };

    // The host's addresses, with those weft gives its own devices (the tunnel address), which
    // are the host's as soon as the device exists: the first apply makes it.
    let own: BTreeSet<Ipv4Addr> = d.state.addresses.iter().map(|(_, a, _)| *a).collect();
    for addr in facts.host_addrs.union(&own) {
        let k = Route4Key {
            prefixlen: 32,
            addr: maps::addr_be(*addr),
        };
        let v = RouteValue {
            flags: maps::RT_F_LOCAL_HOST,
            ifindex: 0,
            next_hop: 0,
            pad: 0,
        };
        add(maps::RT4, maps::entry(&k, &v));
    }
    for kv in fleet.route_entries(facts.links.get(fleet::VXLAN_DEV).copied()) {
        add(maps::RT4, kv);
    }
    if settings.wep.dsr {
        let felix = cfg.felix_for_node(&facts.node);
        for c in felix.bpf_dsr_optout_cidrs() {
            if let Some(n) = net4(&c) {
                let k = maps::DsrOptout4Key {
                    prefixlen: u32::from(n.len),
                    addr: maps::addr_be(Ipv4Addr::from(n.addr)),
                };
                add(maps::DSR_OPTOUT4, maps::spec::DSR_OPTOUT4.entry(&k, &1));
            }
        }
    }
    for kv in fleet.vtep_entries() {
        add(maps::VTEP4, kv);
    }
    if settings.wep.xdp_accel.is_some() {
        for kv in fleet.node_entries() {
            add(maps::NODE4, kv);
        }
    }
    if fleet.tunnel {
        if let Some(&ifindex) = facts.links.get(fleet::VXLAN_DEV) {
            let iv = IfaceValue {
                flags: maps::IFACE_F_TUNNEL,
                ruleset_in: 0,
                ruleset_out: 0,
                pad: 0,
                name: maps::c_name(fleet::VXLAN_DEV),
            };
            add(maps::IFACE, maps::entry(&ifindex, &iv));
        }
        // Flows other nodes forward here through the tunnel answer back through them.
        d.state.attachments.insert(
            (fleet::VXLAN_DEV.to_string(), Hook::Ingress),
            AttachmentState {
                program: "weft_from_tun".into(),
                mode: settings.attach,
            },
        );
        program(&mut d, "weft_from_tun", &settings);
    }

    if !local.is_empty() || !covered.is_empty() {
        let (entities, universe) = cache.entities.of(cfg);
        let index = PolicyIndex::with_selections(
            cfg,
            entities,
            universe,
            std::mem::take(&mut cache.selections),
        );
        workloads(cfg, &settings, local, &index, cache, &mut d, &mut add)?;
        hosts::rulesets(cfg, facts, &covered, &index, cache, &mut d, &mut add)?;
        d.ip_sets = index.ip_sets();
        cache.selections = index.into_selections();
        cache.sweep();
    }
    if !covered.is_empty() {
        hosts::failsafes(cfg, facts, &mut add);
    }
    host_interfaces(
        &settings,
        facts,
        !svc.is_empty(),
        &covered,
        &by_iface,
        &mut d,
        &mut add,
    )?;
    if !svc.is_empty() {
        service_plumbing(&settings, facts, &svc, &mut d, &mut add);
        d.services = svc.names;
        // The NAT maps hold the services' entries and nothing else: taken whole, shared.
        for (map, e) in [
            (maps::NAT_FE4, svc.frontends),
            (maps::NAT_BE4, svc.backends),
            (maps::NAT_SRC4, svc.source_ranges),
            (maps::MAGLEV4, svc.maglev),
        ] {
            entries.remove(map);
            shared.insert(map, e);
        }
    }

    let traced = trace_filter::apply(
        &settings.trace,
        entries.get_mut(maps::IFACE).expect("reconciled map"),
        |i| facts.link_name(i).map(str::to_string),
    );
    entries.insert(maps::TRACE_FILTER, traced);

    // The kernel refuses entries past a map's size: say which settings to raise, before
    // anything is written, rather than fail halfway through an apply.
    let mut full = Vec::new();
    for def in maps::defs(&settings.sizes) {
        let e = entries
            .remove(def.name.as_str())
            .map(Arc::new)
            .or_else(|| shared.remove(def.name.as_str()));
        if let Some(n) = e
            .as_ref()
            .map(|e| e.len())
            .filter(|n| *n > def.max_entries as usize)
        {
            let field = maps::spec::named(&def.name).and_then(|s| s.sized_by());
            full.push(FullMap {
                map: def.name.clone(),
                entries: n,
                max: def.max_entries,
                setting: size_setting(field),
                field,
            });
        }
        d.state
            .maps
            .insert(def.name.clone(), MapState { def, entries: e });
    }
    if !full.is_empty() {
        return Err(DesiredError::MapsFull(full));
    }
    warning::order(&mut d.warnings);
    Ok(d)
}

/// What to do about a map too small: raise `field`, the FelixConfiguration field its spec says
/// it follows, or, for a map of fixed size, configure fewer objects.
fn size_setting(field: Option<&str>) -> String {
    match field {
        Some(field) => format!("raise FelixConfiguration {field}"),
        None => "this map's size is fixed; configure fewer objects of its kind".into(),
    }
}

/// Wants the program `name`, and with it every program of its object: they are loaded and
/// pinned together.
fn program(d: &mut Desired, name: &str, settings: &Settings) {
    let object = Object::of_program(name).expect("a program of weft's objects");
    for p in object.programs() {
        let identity = ProgramIdentity::current(object, settings.wep);
        d.state
            .programs
            .insert(p.to_string(), ProgramState { identity });
    }
}

fn workloads(
    cfg: &Config,
    settings: &Settings,
    local: Vec<(&weft_model::Item<weft_model::WorkloadEndpoint>, u32)>,
    index: &PolicyIndex,
    cache: &mut crate::policy::Cache,
    d: &mut Desired,
    add: &mut impl FnMut(&'static str, maps::Entry),
) -> Result<(), DesiredError> {
    let _p = crate::timing::phase("desired: workloads");
    cache.endpoints.begin(cfg, index.universe());
    for (w, ifindex) in local {
        let wep = &w.value;
        let name = read::name(wep);
        let iface = wep.interface_name().to_string();
        let addrs = v4_hosts(wep.ip_networks());
        let ep = endpoint(cfg, wep);
        let mut ids = BTreeMap::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            let resolved = cache
                .endpoints
                .ruleset(&name, dir, &ep, || index.ruleset(&ep, dir));
            ids.insert(
                dir,
                keep_ruleset(
                    cache,
                    d,
                    name.clone(),
                    dir,
                    (resolved.key, &resolved.spec),
                    resolved.info.clone(),
                )?
                .id(),
            );
        }
        let iv = IfaceValue {
            flags: maps::IFACE_F_WORKLOAD,
            ruleset_in: ids[&Direction::Ingress],
            ruleset_out: ids[&Direction::Egress],
            pad: 0,
            name: maps::c_name(&iface),
        };
        add(maps::IFACE, maps::entry(&ifindex, &iv));
        for a in &addrs {
            let k = Route4Key {
                prefixlen: 32,
                addr: maps::addr_be(*a),
            };
            let v = RouteValue {
                flags: maps::RT_F_LOCAL_WORKLOAD,
                ifindex,
                next_hop: 0,
                pad: 0,
            };
            add(maps::RT4, maps::entry(&k, &v));
            add(maps::WLADDR4, maps::entry(&maps::addr_be(*a), &ifindex));
            d.state
                .routes
                .insert(Net4::host(u32::from(*a)), RouteState::direct(&iface));
            if let Some(mac) = read::mac(wep) {
                d.state
                    .neighbours
                    .insert((iface.clone(), *a), NeighbourState { lladdr: mac });
            }
        }
        d.state.links.insert(
            iface.clone(),
            LinkState {
                sysctls: WORKLOAD_SYSCTLS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                owned: None,
            },
        );
        for (hook, prog) in [
            (Hook::Ingress, "weft_from_wep"),
            (Hook::Egress, "weft_to_wep"),
        ] {
            d.state.attachments.insert(
                (iface.clone(), hook),
                AttachmentState {
                    program: prog.into(),
                    mode: settings.attach,
                },
            );
            program(d, prog, settings);
        }
        d.endpoints.push(EndpointSummary {
            name,
            iface,
            ifindex,
            addrs,
            ruleset_ingress: ids[&Direction::Ingress],
            ruleset_egress: ids[&Direction::Egress],
        });
    }
    cache.endpoints.finish();
    Ok(())
}

/// Compiles `spec` (through `cache`) into the desired rulesets and keeps what its rule ids
/// stand for under `(endpoint, dir)`; its cells.
fn keep_ruleset(
    cache: &mut crate::policy::Cache,
    d: &mut Desired,
    endpoint: String,
    dir: Direction,
    (key, spec): (u128, &crate::policy::flat::RulesetSpec),
    info: Vec<RuleInfo>,
) -> Result<std::sync::Arc<crate::policy::tables::Cells>, DesiredError> {
    let cells = cache
        .ruleset_keyed(key, spec)
        .map_err(|source| DesiredError::Compile {
            endpoint: endpoint.clone(),
            direction: dir,
            source,
        })?;
    d.state
        .rulesets
        .entry(cells.id())
        .or_insert_with(|| cells.clone());
    d.rules.insert((endpoint, dir), info);
    Ok(cells)
}

/// The host interfaces weft attaches to: the data interfaces (BPFDataIfacePattern), where
/// NodePort and external traffic arrives, when there are services; and the interfaces host
/// endpoints cover.
fn host_interfaces(
    settings: &Settings,
    facts: &HostFacts,
    services: bool,
    covered: &[hosts::Covered],
    workload_ifaces: &BTreeMap<&str, String>,
    d: &mut Desired,
    add: &mut impl FnMut(&'static str, maps::Entry),
) -> Result<(), DesiredError> {
    let mut flags: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    if services {
        let pattern = regex_lite::Regex::new(&settings.data_ifaces).map_err(|e| {
            DesiredError::DataIfacePattern {
                pattern: settings.data_ifaces.clone(),
                message: e.to_string(),
            }
        })?;
        for (name, &ifindex) in &facts.links {
            if pattern.is_match(name)
                && !workload_ifaces.contains_key(name.as_str())
                && name != NAT_IN
                && name != NAT_OUT
                && name != "lo"
            {
                flags.insert(name, (ifindex, maps::IFACE_F_DATA));
            }
        }
    }
    for c in covered {
        flags.entry(&c.iface).or_insert((c.ifindex, 0)).1 |= maps::IFACE_F_HEP;
    }
    for (name, (ifindex, flags)) in flags {
        let iv = IfaceValue {
            flags,
            ruleset_in: 0,
            ruleset_out: 0,
            pad: 0,
            name: maps::c_name(name),
        };
        add(maps::IFACE, maps::entry(&ifindex, &iv));
        // Translated NodePort and external traffic is forwarded on to the backend.
        let sysctls = if flags & maps::IFACE_F_DATA != 0 {
            DATA_SYSCTLS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        } else {
            BTreeMap::new()
        };
        d.state.links.insert(
            name.to_string(),
            LinkState {
                sysctls,
                owned: None,
            },
        );
        for (hook, prog) in [
            (Hook::Ingress, "weft_from_hep"),
            (Hook::Egress, "weft_to_hep"),
        ] {
            d.state.attachments.insert(
                (name.to_string(), hook),
                AttachmentState {
                    program: prog.into(),
                    mode: settings.attach,
                },
            );
            program(d, prog, settings);
        }
        // Untracked ingress policy drops in XDP, before an skb exists.
        let untracked = d.host_endpoints.iter().any(|h| {
            h.ifindex == ifindex
                && h.rulesets.iter().any(|&(stage, dir, id)| {
                    stage == Stage::Untracked && dir == Direction::Ingress && id != 0
                })
        });
        // Known NodePort flows to remote backends are sent on from XDP, on the interfaces
        // service traffic comes in by.
        let accel = settings.wep.xdp_accel.is_some()
            && flags & maps::IFACE_F_DATA != 0
            && name != fleet::VXLAN_DEV;
        if (settings.xdp && untracked) || accel {
            // XDP_TX out of a veth needs generic mode (`AttachMode::XdpGeneric`).
            let mode = if accel && facts.veths.contains(&ifindex) {
                AttachMode::XdpGeneric
            } else {
                AttachMode::Tcx
            };
            d.state.attachments.insert(
                (name.to_string(), Hook::Xdp),
                AttachmentState {
                    program: "weft_xdp".into(),
                    mode,
                },
            );
            program(d, "weft_xdp", settings);
        }
    }
    Ok(())
}

/// The bpfin/bpfout pair with its routes, and connect-time load balancing (the NAT tables'
/// entries are the caller's to move in).
fn service_plumbing(
    settings: &Settings,
    facts: &HostFacts,
    svc: &ServiceTables,
    d: &mut Desired,
    add: &mut impl FnMut(&'static str, maps::Entry),
) {
    // Host processes' traffic to services that the socket layer does not translate.
    if settings.host_nat {
        d.state.links.insert(
            NAT_IN.into(),
            LinkState {
                sysctls: NAT_IN_SYSCTLS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                owned: Some(OwnedLink {
                    kind: "veth".into(),
                    peer: Some(NAT_OUT.into()),
                    mac: NAT_IN_MAC,
                    up: true,
                    vxlan: None,
                }),
            },
        );
        d.state.links.insert(
            NAT_OUT.into(),
            LinkState {
                sysctls: NAT_OUT_SYSCTLS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                owned: Some(OwnedLink {
                    kind: "veth".into(),
                    peer: Some(NAT_IN.into()),
                    mac: NAT_OUT_MAC,
                    up: true,
                    vxlan: None,
                }),
            },
        );
        d.state.neighbours.insert(
            (NAT_IN.into(), NAT_GATEWAY),
            NeighbourState {
                lladdr: NAT_OUT_MAC,
            },
        );
        d.state.routes.insert(
            Net4::host(u32::from(NAT_GATEWAY)),
            RouteState::direct(NAT_IN),
        );
        for ip in &svc.service_ips {
            d.state.routes.insert(
                Net4::host(u32::from(*ip)),
                RouteState {
                    dev: NAT_IN.into(),
                    via: Some(NAT_GATEWAY),
                    onlink: false,
                },
            );
        }
        d.state.attachments.insert(
            (NAT_OUT.into(), Hook::Ingress),
            AttachmentState {
                program: "weft_from_nat".into(),
                mode: settings.attach,
            },
        );
        program(d, "weft_from_nat", settings);
        // bpfout's index exists once the device does; until then the plan creates it first.
        if let Some(&ifindex) = facts.links.get(NAT_OUT) {
            let iv = IfaceValue {
                flags: maps::IFACE_F_NAT,
                ruleset_in: 0,
                ruleset_out: 0,
                pad: 0,
                name: maps::c_name(NAT_OUT),
            };
            add(maps::IFACE, maps::entry(&ifindex, &iv));
        }
    }

    // Connect-time load balancing for host processes.
    if settings.ctlb != Ctlb::Disabled {
        match &facts.cgroup {
            Some(cgroup) => {
                let hooks: &[CgroupHook] =
                    if settings.ctlb == Ctlb::Enabled { &CgroupHook::ALL } else { &[CgroupHook::Connect4] };
                for hook in hooks {
                    let prog = format!("weft_{}", hook.as_str());
                    program(d, &prog, settings);
                    d.state.cgroup_attachments.insert(*hook, CgroupAttachment { cgroup: cgroup.clone(), program: prog });
                }
            }
            None => d.warnings.push(Warning::host(
                "no cgroup2 hierarchy is mounted: connect-time load balancing is off (host processes reach services through bpfin.weft)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::policy::flat::{proto_port, Flow};

    fn facts() -> HostFacts {
        HostFacts::fixture("n1", &[("lo", 1), ("calia", 5), ("calib", 6)])
    }

    use crate::testdir::config as load;

    fn wep(name: &str, node: &str, iface: &str, ip: &str, profiles: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}\nspec:\n  node: {node}\n  interfaceName: {iface}\n  ipNetworks: [{ip}]\n  profiles: [{profiles}]\n"
        )
    }

    #[test]
    fn entities_with_the_same_labels_share_them_until_none_has_them() {
        // Two endpoints labelled alike (`wep` labels each with its name: a2 takes a's), and
        // one other.
        let a2 =
            wep("a2", "n2", "cali2", "10.65.0.12/32", "kns.default").replace("app: a2", "app: a");
        let b = wep("b", "n2", "cali3", "10.65.0.13/32", "kns.default");
        let a = wep("a", "n2", "cali1", "10.65.0.11/32", "kns.default");
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n";
        let mut memo = EntitiesMemo::default();
        let (e, _) = memo.of(&load(&[ns, &a, &a2, &b]));
        assert!(Arc::ptr_eq(&e[0].labels, &e[1].labels), "a and a2 share");
        assert!(!Arc::ptr_eq(&e[0].labels, &e[2].labels));
        assert_eq!(e[0].labels.get("app").map(String::as_str), Some("a"));
        assert_eq!(memo.labels.0.len(), 2);
        drop(e);
        // b goes (a configuration read again: nothing is reused), and its set with it.
        let (e, _) = memo.of(&load(&[ns, &a, &a2]));
        assert_eq!(e.len(), 2);
        assert_eq!(memo.labels.0.len(), 1, "b's labels are let go");
    }

    #[test]
    fn more_backends_than_the_map_holds_name_the_setting_to_raise() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n    - {name: http, port: 80}\n";
        let eps: String = (1..=10)
            .map(|i| format!("  - {{addresses: [10.65.1.{i}]}}\n"))
            .collect();
        let slice = format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n  - {{name: http, port: 80}}\nendpoints:\n{eps}");
        let felix = |n: u32| {
            format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  bpfMapSizeNATBackend: {n}\n")
        };
        let err = desired(&load(&[svc, &slice, &felix(4)]), &facts()).expect_err("too small");
        let said = err.to_string();
        assert!(
            said.contains(maps::NAT_BE4)
                && said.contains("10 entries")
                && said.contains("bpfMapSizeNATBackend"),
            "{said}"
        );
        assert!(desired(&load(&[svc, &slice, &felix(10)]), &facts()).is_ok());
    }

    #[test]
    fn a_warm_cache_changes_nothing_desired_state_says() {
        let policy = |port: u16, action: &str, net: &str| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: app == 'a'\n  ingress:\n    - action: {action}\n      protocol: TCP\n      source: {{selector: app == 'b'}}\n      destination: {{ports: [{port}]}}\n    - action: Deny\n      protocol: TCP\n      source: {{nets: [{net}]}}\n    - action: Allow\n      protocol: UDP\n      destination: {{ports: [53]}}\n"
            )
        };
        let weps = [
            wep(
                "a",
                "n1",
                "calia",
                "10.0.0.1",
                "projectcalico-default-allow",
            ),
            wep(
                "b",
                "n1",
                "calib",
                "10.0.0.2",
                "projectcalico-default-allow",
            ),
        ];
        let config = |p: String| load(&[&weps[0], &weps[1], &p]);
        let mut cache = crate::policy::Cache::default();
        let mut previous = None;
        for p in [
            policy(80, "Allow", "10.1.0.0/16"),
            policy(81, "Allow", "10.1.0.0/16"),
            policy(81, "Deny", "10.1.0.0/16"),
            policy(81, "Deny", "10.2.0.0/24"),
            policy(80, "Allow", "10.1.0.0/16"),
        ] {
            let cfg = config(p);
            let warm = compute(&cfg, &facts(), &mut cache)
                .expect("desired")
                .desired;
            let cold = desired(&cfg, &facts()).expect("desired");
            assert_eq!(warm.state, cold.state);
            if let Some(prev) = previous.replace(cold.state) {
                assert_ne!(prev, warm.state, "each step changes the policy");
            }
        }
    }

    #[test]
    fn only_this_nodes_endpoints_with_an_interface_are_programmed() {
        let cfg = load(&[
            &wep(
                "a",
                "n1",
                "calia",
                "10.0.0.1",
                "projectcalico-default-allow",
            ),
            &wep(
                "b",
                "n2",
                "calib",
                "10.0.0.2",
                "projectcalico-default-allow",
            ),
            &wep(
                "c",
                "n1",
                "calic",
                "10.0.0.3",
                "projectcalico-default-allow",
            ),
        ]);
        let d = desired(&cfg, &facts()).expect("desired");
        let names: Vec<&str> = d.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["default/a"],
            "b is on another node, c's interface is missing"
        );
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0]
                .message
                .contains("interface calic does not exist on node n1"),
            "{:?}",
            d.warnings
        );
        assert!(d.state.attachments.keys().all(|(i, _)| i == "calia"));
    }

    #[test]
    fn no_local_endpoint_means_no_maps_and_no_programs() {
        let cfg = load(&[&wep(
            "b",
            "n2",
            "calib",
            "10.0.0.2",
            "projectcalico-default-allow",
        )]);
        let d = desired(&cfg, &facts()).expect("desired");
        assert_eq!(d.state, HostState::default());
    }

    #[test]
    fn two_endpoints_on_one_interface_is_an_error() {
        let cfg = load(&[
            &wep(
                "a",
                "n1",
                "calia",
                "10.0.0.1",
                "projectcalico-default-allow",
            ),
            &wep(
                "b",
                "n1",
                "calia",
                "10.0.0.2",
                "projectcalico-default-allow",
            ),
        ]);
        let e = desired(&cfg, &facts()).expect_err("shared interface");
        assert_eq!(
            e.to_string(),
            "WorkloadEndpoints default/a and default/b both use interface calia on this node"
        );
    }

    #[test]
    fn identical_policy_shares_one_ruleset() {
        let cfg = load(&[
            &wep(
                "a",
                "n1",
                "calia",
                "10.0.0.1",
                "projectcalico-default-allow",
            ),
            &wep(
                "b",
                "n1",
                "calib",
                "10.0.0.2",
                "projectcalico-default-allow",
            ),
        ]);
        let d = desired(&cfg, &facts()).expect("desired");
        assert_eq!(
            d.endpoints[0].ruleset_ingress,
            d.endpoints[1].ruleset_ingress
        );
        assert_eq!(d.endpoints[0].ruleset_egress, d.endpoints[1].ruleset_egress);
    }

    /// Evaluates the ordered rules weft compiled for `ep` in `dir` on one TCP flow.
    fn verdict(cfg: &Config, ep: &str, dir: Direction, peer: [u8; 4], port: u16) -> (bool, String) {
        let index = PolicyIndex::new(cfg, entities(cfg));
        let w = cfg
            .workload_endpoints
            .iter()
            .find(|w| w.value.metadata.name == ep)
            .expect("endpoint");
        let e = Endpoint {
            labels: cfg.endpoint_labels(&w.value),
            addrs: v4_hosts(w.value.ip_networks())
                .iter()
                .map(|a| u32::from(*a))
                .collect(),
            named_ports: read::wep_ports(&w.value.spec.ports),
            profiles: w.value.spec.profiles.clone(),
        };
        let (spec, info) = index.ruleset(&e, dir);
        let v = spec.evaluate(&Flow {
            peer: u32::from_be_bytes(peer),
            local: 0,
            sport: proto_port(6, 40000),
            dport: proto_port(6, port),
        });
        let name = info
            .iter()
            .find(|i| i.id == v.rule_id)
            .map(|i| i.describe())
            .unwrap_or_default();
        (v.allow, name)
    }

    #[test]
    fn profiles_decide_when_no_policy_selects_and_tiers_end_in_deny_when_one_does() {
        let k8s_policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n    - ports: [{port: 80}]\n";
        let cfg = load(&[
            &wep(
                "a",
                "n1",
                "calia",
                "10.0.0.1",
                "projectcalico-default-allow",
            ),
            &wep(
                "b",
                "n1",
                "calib",
                "10.0.0.2",
                "projectcalico-default-allow",
            ),
            k8s_policy,
        ]);
        assert!(verdict(&cfg, "a", Direction::Ingress, [10, 0, 0, 2], 80).0);
        let (allow, rule) = verdict(&cfg, "a", Direction::Ingress, [10, 0, 0, 2], 81);
        assert!(!allow && rule == "end of tier default ingress", "{rule}");
        // b is selected by nothing: its profile allows.
        let (allow, rule) = verdict(&cfg, "b", Direction::Ingress, [10, 0, 0, 1], 81);
        assert!(
            allow && rule.starts_with("Profile projectcalico-default-allow"),
            "{rule}"
        );
        // a's egress is not selected (the policy has no egress type): the profile allows.
        assert!(verdict(&cfg, "a", Direction::Egress, [10, 0, 0, 2], 443).0);
    }

    #[test]
    fn without_profiles_everything_is_denied_by_default() {
        let cfg = load(&["apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: default}\nspec:\n  node: n1\n  interfaceName: calia\n  ipNetworks: [10.0.0.1]\n"]);
        let (allow, rule) = verdict(&cfg, "a", Direction::Ingress, [10, 0, 0, 2], 80);
        assert!(!allow && rule.starts_with("default deny"), "{rule}");
    }
}
