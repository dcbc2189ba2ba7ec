//! The desired state with the service tables kept per service, so that a long-running caller
//! can work out a changed service alone (`Computed::update_services`) and get what a full
//! computation gives. `desired::compute` makes one; `desired::desired` is the same with nothing
//! remembered.
//!
//! A changed service takes this way only when nothing outside it depends on it: its port ids
//! and frontends are its own (no other service claims them), its addresses are not a
//! workload's, and services neither appear nor all go (which adds or removes maps and
//! programs). Otherwise the caller computes anew, which is always right.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_model::{Config, Delta, EndpointSlice, Service, Source, WorkloadEndpoint};

use super::{Desired, DesiredError, Settings, NAT_GATEWAY, NAT_IN};
use crate::bpf::maps;
use crate::facts::HostFacts;
use crate::incremental::drop_later;
use crate::plan::{self, Op};
use crate::policy::flat::Net4;
use crate::services::{self, PortTables, ServiceKey};
use crate::state::{HostState, MapState, RouteState};

/// The maps whose entries belong to service ports.
const SERVICE_MAPS: [&str; 4] = [maps::NAT_FE4, maps::NAT_BE4, maps::NAT_SRC4, maps::MAGLEV4];

/// Each service's ports as last worked out, and what from: the same Service and EndpointSlices
/// (the very resources, shared with the configuration, so an unchanged file's are the same),
/// on a node with the same name, addresses and settings. A computation after a change
/// elsewhere (a policy) reuses them rather than working out every service again.
#[derive(Clone, Default)]
pub struct PortsMemo {
    context: Option<(String, BTreeSet<Ipv4Addr>, services::ServiceSettings)>,
    by_service: BTreeMap<ServiceKey, Memoized>,
    /// What the last `ports` read, and what it and `tables` gave: while the inputs are the
    /// same allocations, so are the results (a policy changed, not a service).
    last: Option<(Inputs, Ports)>,
    merged: Option<services::ServiceTables>,
    /// What the ports of `last` claim, once counted.
    claims: Option<Arc<Claims>>,
}

/// Each service's ports, shared by the memo and the states computed with them: a policy's
/// change hands them on without copying 10,000 keys.
type Ports = Arc<BTreeMap<ServiceKey, Arc<Vec<PortTables>>>>;

/// Everything services' tables are made of: the Services, EndpointSlices and
/// WorkloadEndpoints (which a selector picks) of a configuration, in order. Held, not only
/// compared, so that an allocation is never freed and reused by another resource meanwhile.
#[derive(Clone)]
struct Inputs {
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    endpoints: Vec<Arc<WorkloadEndpoint>>,
    /// Whether a Service has a selector (and `endpoints` are held).
    selectors: bool,
}

use super::values;

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Inputs {{ {} services, {} slices, {} endpoints }}",
            self.services.len(),
            self.slices.len(),
            self.endpoints.len()
        )
    }
}

impl Inputs {
    fn of(cfg: &Config) -> Inputs {
        let selectors = cfg
            .services
            .iter()
            .any(|s| !s.value.spec.selector.is_empty());
        Inputs {
            services: values(&cfg.services),
            slices: values(&cfg.endpoint_slices),
            // Endpoints matter only to a Service with a selector (and one coming is a change
            // of the Services).
            endpoints: if selectors {
                values(&cfg.workload_endpoints)
            } else {
                Vec::new()
            },
            selectors,
        }
    }

    /// Whether `cfg`'s inputs are these (as `of(cfg)` would take them), compared in place:
    /// after a policy's change they are, and taking 20,000 resources only to compare them cost
    /// more than the rest of the memo's work.
    fn are_of(&self, cfg: &Config) -> bool {
        use super::same_values as same;
        // The same Services have the same selectors.
        same(&self.services, &cfg.services)
            && same(&self.slices, &cfg.endpoint_slices)
            && (!self.selectors || same(&self.endpoints, &cfg.workload_endpoints))
    }
}

#[derive(Clone)]
struct Memoized {
    service: Arc<Service>,
    source: Source,
    slices: Vec<Arc<EndpointSlice>>,
    ports: Arc<Vec<PortTables>>,
}

impl PortsMemo {
    /// The ports of every service of `cfg`, reusing what is unchanged.
    fn ports(&mut self, cfg: &Config, facts: &HostFacts, ss: &services::ServiceSettings) -> Ports {
        let context = (facts.node.clone(), facts.host_addrs.clone(), ss.clone());
        if self.context.as_ref() != Some(&context) {
            self.by_service.clear();
            self.last = None;
            self.claims = None;
            self.context = Some(context);
        }
        if let Some((_, ports)) = self.last.as_ref().filter(|(i, _)| i.are_of(cfg)) {
            return ports.clone();
        }
        let inputs = Inputs::of(cfg);
        self.merged = None;
        self.claims = None;
        let slices = services::slices_by_service(cfg);
        let endpoints = services::Selectable::new(cfg);
        let mut now = BTreeMap::new();
        let mut out = BTreeMap::new();
        for item in &cfg.services {
            let key = services::service_key(&item.value);
            let mine = services::service_slices(&endpoints, &item.value, slices.get(&key));
            // Written slices are the configuration's own (the same Arc when unchanged); the
            // ones made from a selector are made anew each time, and compared by value.
            let same = self.by_service.remove(&key).filter(|m| {
                Arc::ptr_eq(&m.service, &item.value)
                    && m.source == item.source
                    && m.slices.len() == mine.len()
                    && m.slices
                        .iter()
                        .zip(&mine)
                        .all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
            });
            let m = match same {
                Some(m) => m,
                None => {
                    let refs: Vec<&EndpointSlice> = mine.iter().map(|s| &**s).collect();
                    let ports =
                        services::service_ports(item, &refs, &facts.node, &facts.host_addrs, ss);
                    Memoized {
                        service: item.value.clone(),
                        source: item.source.clone(),
                        slices: mine,
                        ports: Arc::new(ports),
                    }
                }
            };
            out.insert(key.clone(), m.ports.clone());
            now.insert(key, m);
        }
        // Only what this configuration has stays remembered.
        self.by_service = now;
        let out = Arc::new(out);
        drop_later(self.last.replace((inputs, out.clone())));
        out
    }

    /// The service tables of `ports` (what `ports` just gave for `cfg`): merged again only
    /// when the ports were worked out again. Their entries are shared with the last tables,
    /// so the plan passes the NAT maps over whole.
    fn tables(
        &mut self,
        cfg: &Config,
        ports: &BTreeMap<ServiceKey, Arc<Vec<PortTables>>>,
    ) -> services::ServiceTables {
        if let Some(t) = &self.merged {
            return t.clone();
        }
        let t = services::merge(cfg, ports);
        self.merged = Some(t.clone());
        t
    }

    /// Before `Computed::update_services` works out a change of services alone: the merged
    /// tables are dropped, so that the state holding their entries is their only owner and
    /// patches them in place rather than copying them.
    pub fn forget_tables(&mut self) {
        // The ports too, which the state patches (`adopt` takes them back from it).
        drop_later(self.last.take());
        drop_later(self.merged.take());
        // Let go of at once (the state holds them too, so this frees nothing), not later: a
        // second holder would make the change copy them whole.
        self.claims = None;
    }

    /// Before a computation of `cfg`: if `c` is a state `update_services` brought up to date
    /// for the same inputs as `cfg`'s, its ports and tables are what `ports` and `tables`
    /// would give, and the computation (a policy's change) reuses them rather than merging
    /// every service's tables again. They are what `services::merge` gives, for
    /// `update_services` works only where no two ports claim one id or frontend (so nothing
    /// clashes), and its warnings are the services'. Done here rather than after each
    /// service's change, which would pay for it whether or not a computation follows.
    pub fn adopt(&mut self, cfg: &Config, c: &Computed) {
        if self.merged.is_some() {
            return;
        }
        let Some(inputs) = c.updated_for.as_ref().filter(|i| i.are_of(cfg)) else {
            return;
        };
        let context = (
            c.facts.node.clone(),
            c.facts.host_addrs.clone(),
            super::service_settings(&c.desired.settings),
        );
        if c.claims.shared > 0 || self.context.as_ref() != Some(&context) {
            return;
        }
        let entries = |map: &str| c.desired.state.maps.get(map)?.entries.clone();
        let (Some(frontends), Some(backends), Some(source_ranges), Some(maglev)) = (
            entries(maps::NAT_FE4),
            entries(maps::NAT_BE4),
            entries(maps::NAT_SRC4),
            entries(maps::MAGLEV4),
        ) else {
            return;
        };
        self.merged = Some(services::ServiceTables {
            frontends,
            backends,
            source_ranges,
            maglev,
            service_ips: c.claims.ips.keys().copied().collect(),
            names: c.desired.services.clone(),
            warnings: c
                .desired
                .warnings
                .iter()
                .filter(|w| w.is_service())
                .cloned()
                .collect(),
        });
        drop_later(self.last.replace((inputs.clone(), c.ports.clone())));
        self.claims = Some(c.claims.clone());
    }
}

/// A desired state, what it was computed from, and its service tables per service.
#[derive(Clone, Debug)]
pub struct Computed {
    pub facts: HostFacts,
    pub desired: Desired,
    ports: Ports,
    /// What the ports claim; shared with `PortsMemo` while its ports are these.
    claims: Arc<Claims>,
    /// Routes that are not services': workloads' (local and remote) and the NAT gateway's.
    other_routes: BTreeSet<Net4>,
    /// The inputs of the configuration `update_services` last brought this state up to date
    /// with (`PortsMemo::adopt`); None for a state computed whole.
    updated_for: Option<Inputs>,
}

/// What service ports claim, counted.
#[derive(Clone, Debug, Default, PartialEq)]
struct Claims {
    /// How many ports claim each service id ...
    ids: BTreeMap<u32, u32>,
    /// ... write each frontend key ...
    frontends: BTreeMap<maps::Bytes, u32>,
    /// ... and are reached at each service address.
    ips: BTreeMap<Ipv4Addr, u32>,
    /// Ids and frontend keys claimed more than once: the tables then depend on service order.
    shared: usize,
}

fn port_entries(p: &PortTables) -> Option<&services::PortEntries> {
    match p {
        PortTables::Port(e) => Some(e),
        PortTables::Warning(_) => None,
    }
}

fn map_entries<'a>(e: &'a services::PortEntries, map: &str) -> &'a [maps::Entry] {
    match map {
        maps::NAT_FE4 => &e.frontends,
        maps::NAT_BE4 => &e.backends,
        maps::NAT_SRC4 => &e.source_ranges,
        _ => &e.maglev,
    }
}

fn service_route() -> RouteState {
    RouteState {
        dev: NAT_IN.into(),
        via: Some(NAT_GATEWAY),
        onlink: false,
    }
}

fn is_key(svc: &weft_model::Service, key: &ServiceKey) -> bool {
    svc.metadata.name == key.1 && svc.metadata.namespace.as_deref().unwrap_or("default") == key.0
}

/// The ports of the service `key` as `cfg` has it now (none if it is gone).
fn ports_now(
    cfg: &Config,
    key: &ServiceKey,
    facts: &HostFacts,
    settings: &Settings,
) -> Vec<PortTables> {
    let Some(item) = cfg.services.iter().find(|s| is_key(&s.value, key)) else {
        return Vec::new();
    };
    let written: Vec<&Arc<EndpointSlice>> = cfg
        .endpoint_slices
        .iter()
        .filter(|s| services::slice_service_ref(&s.value) == Some((&key.0, &key.1)))
        .map(|s| &s.value)
        .collect();
    let slices =
        services::service_slices(&services::Selectable::new(cfg), &item.value, Some(&written));
    let refs: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
    services::service_ports(
        item,
        &refs,
        &facts.node,
        &facts.host_addrs,
        &super::service_settings(settings),
    )
}

impl Computed {
    /// The desired state of `cfg` on this host (`desired::compute`). `cache` is the policy
    /// compiler's memory between runs.
    pub(super) fn compute(
        cfg: &Config,
        facts: &HostFacts,
        cache: &mut crate::policy::Cache,
    ) -> Result<Computed, DesiredError> {
        let settings = Settings::for_node(cfg, facts);
        let ss = super::service_settings(&settings);
        let ports = {
            let _p = crate::timing::phase("desired: service ports");
            cache.services.ports(cfg, facts, &ss)
        };
        let tables = {
            let _p = crate::timing::phase("desired: service tables");
            cache.services.tables(cfg, &ports)
        };
        let desired = super::desired_from(cfg, facts, &settings, tables, cache)?;
        let mut c = Computed {
            facts: facts.clone(),
            ports: Ports::default(),
            claims: Arc::default(),
            other_routes: desired
                .endpoints
                .iter()
                .flat_map(|e| e.addrs.iter())
                .chain([&NAT_GATEWAY])
                .map(|a| Net4::host(u32::from(*a)))
                .chain(
                    desired
                        .state
                        .routes
                        .iter()
                        .filter(|(_, r)| **r != service_route())
                        .map(|(dst, _)| *dst),
                )
                .collect(),
            desired,
            updated_for: None,
        };
        match cache.services.claims.clone() {
            Some(claims) => c.claims = claims,
            None => {
                for e in ports
                    .values()
                    .flat_map(|p| p.iter())
                    .filter_map(port_entries)
                {
                    c.count(e, 1);
                }
                cache.services.claims = Some(c.claims.clone());
            }
        }
        c.ports = ports;
        Ok(c)
    }

    /// Counts a port's claims in (+1) or out (-1).
    fn count(&mut self, e: &services::PortEntries, by: i32) {
        let claims = Arc::make_mut(&mut self.claims);
        fn bump<K: Ord>(m: &mut BTreeMap<K, u32>, k: K, by: i32) -> u32 {
            let n = m.entry(k).or_default();
            let was = *n;
            *n = n.wrapping_add_signed(by);
            was
        }
        fn unzero<K: Ord>(m: &mut BTreeMap<K, u32>, k: &K) {
            if m.get(k) == Some(&0) {
                m.remove(k);
            }
        }
        let shared = |was: u32| match (was, by) {
            (1, 1) => 1i64,
            (2, -1) => -1,
            _ => 0,
        };
        let mut delta = shared(bump(&mut claims.ids, e.id, by));
        unzero(&mut claims.ids, &e.id);
        for (k, _) in &e.frontends {
            delta += shared(bump(&mut claims.frontends, k.clone(), by));
            unzero(&mut claims.frontends, k);
        }
        for ip in &e.service_ips {
            bump(&mut claims.ips, *ip, by);
            unzero(&mut claims.ips, ip);
        }
        claims.shared = (claims.shared as i64 + delta) as usize;
    }

    /// Takes the services `keys` to what `cfg` says of them now, and returns the operations
    /// that take the kernel there from the state this one stood for. None, with nothing
    /// changed, when the change reaches beyond those services: then compute anew.
    pub fn update_services(
        &mut self,
        cfg: &Config,
        keys: &BTreeSet<ServiceKey>,
    ) -> Option<Vec<Op>> {
        // Services must be there before (and after, below): their first coming and their
        // last going add or remove more than entries (data interfaces' programs, bpfin/bpfout).
        if self.claims.shared > 0
            || self.claims.frontends.is_empty()
            || !self.desired.state.maps.contains_key(maps::NAT_FE4)
        {
            return None;
        }
        let settings = self.desired.settings.clone();
        let new: BTreeMap<&ServiceKey, Vec<PortTables>> = keys
            .iter()
            .map(|k| (k, ports_now(cfg, k, &self.facts, &settings)))
            .collect();
        let old: BTreeMap<&ServiceKey, Vec<PortTables>> = keys
            .iter()
            .map(|k| {
                (
                    k,
                    self.ports.get(k).map(|p| (**p).clone()).unwrap_or_default(),
                )
            })
            .collect();
        let olds = || old.values().flat_map(|v| v.iter()).filter_map(port_entries);
        let news = || new.values().flatten().filter_map(port_entries);

        // Nothing outside these services may claim what they claim now.
        let mut old_ids: BTreeMap<u32, u32> = BTreeMap::new();
        let mut old_fe: BTreeMap<&[u8], u32> = BTreeMap::new();
        for e in olds() {
            *old_ids.entry(e.id).or_default() += 1;
            for (k, _) in &e.frontends {
                *old_fe.entry(k).or_default() += 1;
            }
        }
        let mut new_ids = BTreeSet::new();
        let mut new_fe = BTreeSet::new();
        for e in news() {
            let elsewhere = self.claims.ids.get(&e.id).copied().unwrap_or(0)
                - old_ids.get(&e.id).copied().unwrap_or(0);
            if elsewhere > 0 || !new_ids.insert(e.id) {
                return None;
            }
            for (k, _) in &e.frontends {
                let elsewhere = self.claims.frontends.get(k).copied().unwrap_or(0)
                    - old_fe.get(k.as_slice()).copied().unwrap_or(0);
                if elsewhere > 0 || !new_fe.insert(k.as_slice()) {
                    return None;
                }
            }
            if settings.host_nat
                && e.service_ips
                    .iter()
                    .any(|ip| self.other_routes.contains(&Net4::host(u32::from(*ip))))
            {
                return None;
            }
        }
        let old_fe_count: usize = old_fe.values().map(|n| *n as usize).sum();
        if self.claims.frontends.len() - old_fe_count + new_fe.len() == 0 {
            return None;
        }

        // The old and new entries of these services, and their routes that come or go.
        let mut before = HostState::default();
        let mut after = HostState::default();
        for map in SERVICE_MAPS {
            let def = self.desired.state.maps.get(map)?.def.clone();
            let entries = |ports: &mut dyn Iterator<Item = &services::PortEntries>| {
                ports
                    .flat_map(|e| map_entries(e, map).iter().cloned())
                    .collect::<maps::Entries>()
            };
            before.maps.insert(
                map.to_string(),
                MapState {
                    def: def.clone(),
                    entries: Some(Arc::new(entries(&mut olds()))),
                },
            );
            after.maps.insert(
                map.to_string(),
                MapState {
                    def,
                    entries: Some(Arc::new(entries(&mut news()))),
                },
            );
        }
        let affected: BTreeSet<Ipv4Addr> = olds()
            .chain(news())
            .flat_map(|e| e.service_ips.iter().copied())
            .collect();
        let had: BTreeSet<Ipv4Addr> = affected
            .iter()
            .filter(|ip| self.claims.ips.contains_key(ip))
            .copied()
            .collect();
        let old_refs: Vec<services::PortEntries> = olds().cloned().collect();
        let new_refs: Vec<services::PortEntries> = news().cloned().collect();
        for e in &old_refs {
            self.count(e, -1);
        }
        for e in &new_refs {
            self.count(e, 1);
        }
        if settings.host_nat {
            for ip in &affected {
                let dst = Net4::host(u32::from(*ip));
                match (had.contains(ip), self.claims.ips.contains_key(ip)) {
                    (true, false) => {
                        before.routes.insert(dst, service_route());
                    }
                    (false, true) => {
                        after.routes.insert(dst, service_route());
                    }
                    _ => {}
                }
            }
        }
        let ops = plan::plan(&after, &before, settings.sizes);

        // The desired state, patched as the operations patch the kernel.
        for map in SERVICE_MAPS {
            let (Some(b), Some(a)) = (
                before.maps[map].entries.as_ref(),
                after.maps[map].entries.as_ref(),
            ) else {
                continue;
            };
            let Some(entries) = self
                .desired
                .state
                .maps
                .get_mut(map)
                .and_then(|m| m.entries.as_mut())
                .map(Arc::make_mut)
            else {
                continue;
            };
            for k in b.keys() {
                entries.remove(k);
            }
            entries.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for op in &ops {
            match op {
                Op::RouteReplace { dst, route, .. } => {
                    self.desired.state.routes.insert(*dst, route.clone());
                }
                Op::RouteDelete { dst, .. } => {
                    self.desired.state.routes.remove(dst);
                }
                _ => {}
            }
        }
        for e in olds() {
            Arc::make_mut(&mut self.desired.services).remove(&e.id);
        }
        for e in news() {
            Arc::make_mut(&mut self.desired.services).insert(e.id, e.name.clone());
        }
        for (k, p) in new {
            let ports = Arc::make_mut(&mut self.ports);
            if p.is_empty() && !cfg.services.iter().any(|s| is_key(&s.value, k)) {
                ports.remove(k);
            } else {
                ports.insert(k.clone(), Arc::new(p));
            }
        }
        // The services' warnings as a full computation gives them: in the services' order.
        self.desired.warnings.retain(|w| !w.is_service());
        for item in &cfg.services {
            for p in self
                .ports
                .get(&services::service_key(&item.value))
                .into_iter()
                .flat_map(|p| p.iter())
            {
                if let PortTables::Warning(w) = p {
                    self.desired.warnings.push(w.clone());
                }
            }
        }
        self.desired.warnings.extend(services::slice_warnings(cfg));
        crate::warning::order(&mut self.desired.warnings);
        drop_later(self.updated_for.replace(Inputs::of(cfg)));
        Some(ops)
    }
}

/// The services a change of files touched (through their Service or their slices), or None
/// for a change that is not only services'.
pub fn touched(d: Delta) -> Option<BTreeSet<ServiceKey>> {
    match d {
        Delta::Unchanged => Some(BTreeSet::new()),
        Delta::Other => None,
        Delta::Services { before, after } => {
            let mut keys = BTreeSet::new();
            for part in [before, after] {
                keys.extend(
                    part.services
                        .iter()
                        .map(|s| services::service_key(&s.value)),
                );
                keys.extend(
                    part.endpoint_slices
                        .iter()
                        .filter_map(|s| services::slice_service(&s.value)),
                );
            }
            Some(keys)
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::testdir::TestDir;
    use weft_model::Documents;

    fn facts() -> HostFacts {
        HostFacts::fixture(
            "n1",
            &[
                ("lo", 1),
                ("eth0", 2),
                ("calia", 5),
                (NAT_IN, 7),
                (super::super::NAT_OUT, 8),
            ],
        )
    }

    fn service(name: &str, ty: &str, ip: &str, ports: &str) -> String {
        // Each service its own external address (from its name's first letter).
        let ext = name.as_bytes()[0];
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  type: {ty}\n  clusterIP: {ip}\n  externalIPs: [198.51.100.{ext}]\n  ports:\n{ports}")
    }

    const HTTP: &str = "    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\n";
    const TWO: &str = "    - {name: http, port: 80, nodePort: 30081}\n    - {name: dns, port: 53, protocol: UDP}\n    - {name: sig, port: 99, protocol: SCTP}\n";

    fn slice(service: &str, port: u16, addrs: &[&str]) -> String {
        let eps: String = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  - {{addresses: [{a}], nodeName: n{}}}\n", i % 2 + 1))
            .collect();
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n  - {{name: http, port: {port}}}\n  - {{name: dns, port: 53, protocol: UDP}}\nendpoints:\n{eps}")
    }

    const WEP: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: shop}\nspec:\n  node: n1\n  interfaceName: calia\n  ipNetworks: [10.65.0.2]\n  profiles: [projectcalico-default-allow]\n";

    /// Applies one file change to `docs` and `c` through the fast path; None if it declined.
    fn step(
        dir: &TestDir,
        docs: &mut Documents,
        c: &mut Computed,
        file: &str,
        text: Option<String>,
    ) -> Option<(Vec<Op>, HostState)> {
        dir.set(file, text);
        let keys = touched(docs.reread(&[file])).expect("a change to services only");
        let before = c.desired.state.clone();
        let ops = c.update_services(docs.config().expect("valid"), &keys)?;
        Some((ops, before))
    }

    #[test]
    fn a_changed_service_worked_out_alone_gives_what_a_full_computation_gives() {
        let dir = TestDir::new("same");
        endpoint_and_service(&dir);
        dir.set(
            "b.yaml",
            Some(
                service("b", "ClusterIP", "10.96.0.2", HTTP)
                    + "---\n"
                    + &slice("b", 8080, &["10.65.2.1"]),
            ),
        );
        let mut docs = Documents::read_dir(&dir.0);
        let mut c =
            Computed::compute(docs.config().unwrap(), &facts(), &mut Default::default()).unwrap();
        assert!(!c.desired.warnings.is_empty(), "SCTP is warned about");
        let changes: Vec<(&str, &str, Option<String>)> = vec![
            (
                "an endpoint added",
                "a.yaml",
                Some(
                    service("a", "NodePort", "10.96.0.1", TWO)
                        + "---\n"
                        + &slice("a", 80, &["10.65.1.1", "10.65.1.2", "10.65.1.3"]),
                ),
            ),
            (
                "an endpoint removed",
                "a.yaml",
                Some(
                    service("a", "NodePort", "10.96.0.1", TWO)
                        + "---\n"
                        + &slice("a", 80, &["10.65.1.3"]),
                ),
            ),
            (
                "a port changed",
                "b.yaml",
                Some(
                    service("b", "ClusterIP", "10.96.0.2", HTTP)
                        + "---\n"
                        + &slice("b", 8081, &["10.65.2.1"]),
                ),
            ),
            (
                "a service added",
                "d.yaml",
                Some(service("d", "ClusterIP", "10.96.0.4", HTTP)),
            ),
            (
                "its slice in a file of its own",
                "d-slice.yaml",
                Some(slice("d", 8080, &["10.65.4.1"])),
            ),
            (
                "a cluster IP changed",
                "a.yaml",
                Some(
                    service("a", "NodePort", "10.96.0.9", TWO)
                        + "---\n"
                        + &slice("a", 80, &["10.65.1.3"]),
                ),
            ),
            (
                "a service sharing b's address on another port",
                "e.yaml",
                Some(service(
                    "e",
                    "ClusterIP",
                    "10.96.0.2",
                    "    - {name: http, port: 81}\n",
                )),
            ),
            ("b goes, e keeps the address", "b.yaml", None),
            ("e goes, the address with it", "e.yaml", None),
            ("a slice without its service", "d.yaml", None),
        ];
        for (what, file, text) in changes {
            let (ops, before) = step(&dir, &mut docs, &mut c, file, text)
                .unwrap_or_else(|| panic!("{what}: the fast path declined"));
            let fresh =
                Computed::compute(docs.config().unwrap(), &facts(), &mut Default::default())
                    .unwrap();
            assert_eq!(c.desired.state, fresh.desired.state, "{what}: the state");
            assert_eq!(
                c.desired.services, fresh.desired.services,
                "{what}: the names"
            );
            assert_eq!(
                c.desired.warnings, fresh.desired.warnings,
                "{what}: the warnings"
            );
            assert_eq!(
                (&c.ports, &*c.claims),
                (&fresh.ports, &*fresh.claims),
                "{what}: the books"
            );
            assert_eq!(
                ops,
                plan::plan(&fresh.desired.state, &before, fresh.desired.settings.sizes),
                "{what}: the operations are the full plan's"
            );
            assert!(!ops.is_empty(), "{what}: something to do");
        }
    }

    #[test]
    fn a_change_that_reaches_beyond_its_services_is_declined_and_changes_nothing() {
        let dir = TestDir::new("beyond");
        dir.set("wep.yaml", Some(WEP.into()));
        dir.set("a.yaml", Some(service("a", "ClusterIP", "10.96.0.1", HTTP)));
        let mut docs = Documents::read_dir(&dir.0);
        let mut c =
            Computed::compute(docs.config().unwrap(), &facts(), &mut Default::default()).unwrap();
        let state = c.desired.state.clone();
        // Another service on a's frontend: which one wins depends on order.
        assert!(step(
            &dir,
            &mut docs,
            &mut c,
            "b.yaml",
            Some(service("b", "ClusterIP", "10.96.0.1", HTTP))
        )
        .is_none());
        assert_eq!(c.desired.state, state);
        dir.set("b.yaml", None);
        docs.reread(&["b.yaml"]);
        // A service on a workload's address.
        assert!(step(
            &dir,
            &mut docs,
            &mut c,
            "c.yaml",
            Some(service("c", "ClusterIP", "10.65.0.2", HTTP))
        )
        .is_none());
        dir.set("c.yaml", None);
        docs.reread(&["c.yaml"]);
        // The last service going takes the maps with it.
        assert!(step(&dir, &mut docs, &mut c, "a.yaml", None).is_none());
        assert_eq!(
            c.desired.state, state,
            "declined changes leave the state as it was"
        );
        // And the first coming brings programs and devices, not only entries.
        let mut c =
            Computed::compute(docs.config().unwrap(), &facts(), &mut Default::default()).unwrap();
        assert!(
            c.desired.state.maps.contains_key(maps::NAT_FE4),
            "the workload has maps"
        );
        let svc = service("a", "ClusterIP", "10.96.0.1", HTTP);
        assert!(step(&dir, &mut docs, &mut c, "a.yaml", Some(svc)).is_none());
    }

    /// The endpoint and service "a" (a NodePort with two backends) the memo tests start from.
    fn endpoint_and_service(dir: &TestDir) {
        dir.set("wep.yaml", Some(WEP.into()));
        dir.set(
            "a.yaml",
            Some(
                service("a", "NodePort", "10.96.0.1", TWO)
                    + "---\n"
                    + &slice("a", 80, &["10.65.1.1", "10.65.1.2"]),
            ),
        );
    }

    /// A Kubernetes policy of the shop that lets `port` in.
    fn policy_port(port: u16) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{protocol: TCP, port: {port}}}]\n")
    }

    /// A change that is not a service's (a policy) finds the service tables as they were:
    /// the NAT maps' entries are the very allocation the last state holds, so the plan passes
    /// them over; the state is still what a computation from nothing gives. A service's change
    /// works them out again.
    #[test]
    fn a_policy_change_keeps_the_service_tables_and_a_service_change_does_not() {
        let dir = TestDir::new("memo");
        endpoint_and_service(&dir);
        dir.set("p.yaml", Some(policy_port(80)));
        let mut docs = Documents::read_dir(&dir.0);
        let mut cache = crate::policy::Cache::default();
        let f = facts();
        let nat = |c: &Computed| c.desired.state.maps[maps::NAT_BE4].entries.clone().unwrap();
        let first = Computed::compute(docs.config().unwrap(), &f, &mut cache).unwrap();
        assert!(!nat(&first).is_empty());

        dir.set("p.yaml", Some(policy_port(81)));
        docs.reread(&["p.yaml"]);
        let cfg = docs.config().unwrap();
        let second = Computed::compute(cfg, &f, &mut cache).unwrap();
        assert!(Arc::ptr_eq(&nat(&first), &nat(&second)));
        assert!(
            Arc::ptr_eq(&first.ports, &second.ports),
            "each service's ports, handed on"
        );
        let fresh = Computed::compute(cfg, &f, &mut crate::policy::Cache::default()).unwrap();
        assert_eq!(second.desired.state, fresh.desired.state);
        assert_ne!(
            second.desired.state, first.desired.state,
            "the policy changed"
        );

        dir.set(
            "a.yaml",
            Some(
                service("a", "NodePort", "10.96.0.1", TWO)
                    + "---\n"
                    + &slice("a", 80, &["10.65.1.1", "10.65.1.3"]),
            ),
        );
        docs.reread(&["a.yaml"]);
        let cfg = docs.config().unwrap();
        let third = Computed::compute(cfg, &f, &mut cache).unwrap();
        assert!(!Arc::ptr_eq(&nat(&second), &nat(&third)));
        assert!(!Arc::ptr_eq(&second.ports, &third.ports));
        assert_eq!(third.ports, fresh_ports(cfg, &f));
        let fresh = Computed::compute(cfg, &f, &mut crate::policy::Cache::default()).unwrap();
        assert_eq!(third.desired.state, fresh.desired.state);
        assert_ne!(nat(&second), nat(&third), "the backends changed");
    }

    fn fresh_ports(cfg: &Config, f: &HostFacts) -> Ports {
        Computed::compute(cfg, f, &mut crate::policy::Cache::default())
            .unwrap()
            .ports
    }

    /// After a service's change worked out alone, the tables it patched are taken as the
    /// merged ones: a policy's change next shares them, and still gives what a computation
    /// from nothing gives (warnings and all).
    #[test]
    fn tables_a_service_change_patched_are_the_next_computations_own() {
        let dir = TestDir::new("adopt");
        endpoint_and_service(&dir);
        dir.set("b.yaml", Some(service("b", "ClusterIP", "10.96.0.2", HTTP)));
        // A slice whose Service is not in the files: a service warning.
        dir.set("x.yaml", Some(slice("gone", 80, &["10.65.9.9"])));
        dir.set("p.yaml", Some(policy_port(80)));
        let mut docs = Documents::read_dir(&dir.0);
        let mut cache = crate::policy::Cache::default();
        let f = facts();
        let mut c = Computed::compute(docs.config().unwrap(), &f, &mut cache).unwrap();

        cache.services.forget_tables();
        let text = service("b", "ClusterIP", "10.96.0.2", HTTP)
            + "---\n"
            + &slice("b", 8080, &["10.65.2.1"]);
        step(&dir, &mut docs, &mut c, "b.yaml", Some(text)).expect("worked out alone");

        dir.set("p.yaml", Some(policy_port(81)));
        docs.reread(&["p.yaml"]);
        let cfg = docs.config().unwrap();
        cache.services.adopt(cfg, &c);
        let next = Computed::compute(cfg, &f, &mut cache).unwrap();
        let nat = |c: &Computed| c.desired.state.maps[maps::NAT_BE4].entries.clone().unwrap();
        assert!(
            Arc::ptr_eq(&nat(&c), &nat(&next)),
            "the patched tables, shared"
        );
        let fresh = Computed::compute(cfg, &f, &mut crate::policy::Cache::default()).unwrap();
        assert_eq!(next.desired.state, fresh.desired.state);
        assert_eq!(next.desired.services, fresh.desired.services);
        assert_eq!(next.desired.warnings, fresh.desired.warnings);
        assert!(next.desired.warnings.iter().any(|w| w.is_service()));
        // The claims counted after the service's change are taken, not counted again, and
        // are what counting gives.
        assert!(Arc::ptr_eq(&c.claims, &next.claims), "the claims, shared");
        assert_eq!(*next.claims, *fresh.claims);

        // A second service change on the state whose claims the memo shares: its books
        // are its own (copied on write), and right.
        let mut c = next;
        cache.services.forget_tables();
        let text = service("b", "ClusterIP", "10.96.0.2", HTTP)
            + "---\n"
            + &slice("b", 8080, &["10.65.2.2"]);
        step(&dir, &mut docs, &mut c, "b.yaml", Some(text)).expect("worked out alone");
        let cfg = docs.config().unwrap();
        let fresh = Computed::compute(cfg, &f, &mut crate::policy::Cache::default()).unwrap();
        assert_eq!(*c.claims, *fresh.claims);
        assert_eq!(c.desired.state, fresh.desired.state);
    }

    /// A local endpoint of the shop labelled app=`app`, on interface cali`app`.
    fn labelled(app: &str, addr: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {app}, namespace: shop, labels: {{app: {app}}}}}\nspec:\n  node: n1\n  interfaceName: cali{app}\n  ipNetworks: [{addr}]\n  profiles: [projectcalico-default-allow]\n")
    }

    /// A Kubernetes policy `name` of the shop for the pods labelled app=`app`, letting `port` in.
    fn policy_for(name: &str, app: &str, port: u16) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  ingress:\n  - ports: [{{protocol: TCP, port: {port}}}]\n")
    }

    /// After a change to policies alone, only the endpoints a changed policy selects (as it
    /// was or as it is) are resolved again; the others keep their rulesets, and the entities
    /// are not labelled again. Each step gives what a computation from nothing gives.
    #[test]
    fn a_policy_change_resolves_only_the_endpoints_it_selects() {
        let dir = TestDir::new("rulesets");
        dir.set("a.yaml", Some(labelled("a", "10.65.0.2")));
        dir.set("b.yaml", Some(labelled("b", "10.65.0.3")));
        dir.set("pa.yaml", Some(policy_for("pa", "a", 80)));
        dir.set("pb.yaml", Some(policy_for("pb", "b", 80)));
        let f = HostFacts::fixture("n1", &[("lo", 1), ("calia", 5), ("calib", 6)]);
        let mut docs = Documents::read_dir(&dir.0);
        let mut cache = crate::policy::Cache::default();
        let first = Computed::compute(docs.config().unwrap(), &f, &mut cache).unwrap();
        assert_eq!(cache.endpoints.reused(), 0, "nothing to reuse yet");

        // (file, text, rulesets reused: two per endpoint a changed policy does not select)
        let steps: [(&str, String, usize); 6] = [
            // pa changes: b's two rulesets stay.
            ("pa.yaml", policy_for("pa", "a", 81), 2),
            // pb moves from b to a: it selected b and now selects a; both are resolved.
            ("pb.yaml", policy_for("pb", "a", 80), 0),
            // A policy that selects nobody comes: both stay.
            ("pz.yaml", policy_for("pz", "z", 80), 4),
            // An endpoint's labels change: every endpoint is resolved again.
            (
                "b.yaml",
                labelled("b", "10.65.0.3").replace("app: b}", "app: b, tier: x}"),
                0,
            ),
            // And then a policy change reuses again.
            ("pa.yaml", policy_for("pa", "a", 82), 2),
            // The namespace's labels (its profile's) label every endpoint: all resolved again.
            (
                "ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: x}}\n"
                    .into(),
                0,
            ),
        ];
        let mut was = first.desired.state;
        let mut entities = cache.entities.of(docs.config().unwrap()).0;
        for (file, text, reused) in steps {
            dir.set(file, Some(text));
            docs.reread(&[file]);
            let cfg = docs.config().unwrap();
            let now = Computed::compute(cfg, &f, &mut cache).unwrap();
            assert_eq!(cache.endpoints.reused(), reused, "{file}");
            let made = cache.entities.of(cfg).0;
            assert_eq!(
                Arc::ptr_eq(&made, &entities),
                file.starts_with('p'),
                "{file}: entities made again only when they may have changed"
            );
            // Made again, they share what did not change: all but b's after b's labels
            // changed, none after the namespace's.
            let shared = made
                .iter()
                .zip(entities.iter())
                .filter(|(a, b)| Arc::ptr_eq(a, b))
                .count();
            let expected = match file {
                "b.yaml" => made.len() - 1,
                "ns.yaml" => 0,
                _ => made.len(),
            };
            assert_eq!(shared, expected, "{file}: entities shared");
            assert_eq!(
                format!("{:?}", made.iter().map(|e| &**e).collect::<Vec<_>>()),
                format!(
                    "{:?}",
                    crate::desired::entities(cfg).iter().collect::<Vec<_>>()
                ),
                "{file}: as a fresh computation makes them"
            );
            entities = made;
            let fresh = Computed::compute(cfg, &f, &mut crate::policy::Cache::default()).unwrap();
            assert_eq!(now.desired.state, fresh.desired.state, "{file}");
            assert_eq!(now.desired.rules, fresh.desired.rules, "{file}");
            if file != "pz.yaml" && file != "b.yaml" && file != "ns.yaml" {
                assert_ne!(now.desired.state, was, "{file} changed a ruleset");
            }
            was = now.desired.state;
        }
    }
}
