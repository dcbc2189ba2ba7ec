//! From the policy IR to a `RulesetSpec` for one endpoint and direction: which tiers and
//! policies select the endpoint, in Calico's order, and each rule reduced to conditions on the
//! flow's peer address, local address, source port and destination port.
//!
//! Selectors become address sets: the addresses of every workload endpoint, host endpoint and
//! network set whose labels the selector matches. Named ports on the endpoint's own side become
//! its port numbers; on the peer's side a rule splits into one sub-rule per port value, each
//! restricted to the peers that have that port (the same rule id, so counters and order hold).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::fxhash::FxHashMap;

use weft_model::{
    Action, Cidr, Config, EntityIr, PolicyIr, PortMatch, ResourceId, RuleIr, Selector,
};

use super::flat::{
    proto_port, AddrTerm, FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, SpanSet,
};

/// A flow direction as seen by the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which policies decide a ruleset, and how it ends: Calico's stages. A workload endpoint has
/// only the normal stage; a host endpoint has all four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The endpoint's own traffic (for a host endpoint, the host's processes'): every policy
    /// but doNotTrack and preDNAT ones, each tier ending in deny, then the profiles, then deny.
    Normal,
    /// Traffic a host endpoint forwards: its applyOnForward policies, each tier ending in
    /// deny, then deny; no profiles. With no such policy there is no ruleset: it passes.
    Forward,
    /// Arriving at a host endpoint, before service NAT: preDNAT policies. What they do not
    /// decide goes on to the normal stage (no tier ends in deny, nothing denies at the end).
    PreDnat,
    /// Every packet through a host endpoint, before conntrack: doNotTrack policies; open
    /// ended like preDNAT.
    Untracked,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Normal => "normal",
            Stage::Forward => "forward",
            Stage::PreDnat => "pre-dnat",
            Stage::Untracked => "untracked",
        }
    }

    /// Whether policy `p` belongs to this stage.
    fn takes(self, p: &PolicyIr) -> bool {
        match self {
            Stage::Normal => !p.do_not_track && !p.pre_dnat,
            Stage::Forward => !p.do_not_track && !p.pre_dnat && p.apply_on_forward,
            Stage::PreDnat => p.pre_dnat,
            Stage::Untracked => p.do_not_track,
        }
    }

    /// Whether what no rule decides goes on to the next stage.
    fn open_end(self) -> bool {
        matches!(self, Stage::PreDnat | Stage::Untracked)
    }
}

/// Something a selector can pick, with the addresses and named ports it stands for.
#[derive(Clone, Debug)]
pub struct Entity {
    /// Shared by the entities whose labels are the same (the pods of one deployment, say:
    /// `desired::EntitiesMemo` shares them).
    pub labels: Arc<BTreeMap<String, String>>,
    pub nets: Vec<Net4>,
    /// (name, protocol, port)
    pub named_ports: Vec<(String, u8, u16)>,
    /// A hash of the three, made once: `universe` combines them.
    fingerprint: u64,
}

impl Entity {
    pub fn new(
        labels: Arc<BTreeMap<String, String>>,
        nets: Vec<Net4>,
        named_ports: Vec<(String, u8, u16)>,
    ) -> Entity {
        use std::hash::{Hash, Hasher};
        let mut h = super::fxhash::FxHasher::default();
        labels.hash(&mut h);
        nets.hash(&mut h);
        named_ports.hash(&mut h);
        Entity {
            labels,
            nets,
            named_ports,
            fingerprint: h.finish(),
        }
    }
}

/// Every entity of a configuration, each shared with the next computation's list where its
/// resource and the profiles that label it are the same (`desired::EntitiesMemo`).
pub type Entities = Arc<Vec<Arc<Entity>>>;

/// A local endpoint as policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub labels: BTreeMap<String, String>,
    /// Its own IPv4 addresses (host order).
    pub addrs: Vec<u32>,
    pub named_ports: Vec<(String, u8, u16)>,
    pub profiles: Vec<String>,
}

/// What a rule id stands for, for counters and `weft dump policy`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub id: u32,
    /// e.g. "GlobalNetworkPolicy allow-dns", "tier security", "profile kns.default".
    pub origin: String,
    pub direction: Direction,
    /// Index in its resource's rule list; None for tier ends and the default deny.
    pub index: Option<usize>,
    pub action: String,
}

impl RuleInfo {
    /// e.g. "NetworkPolicy demo/web ingress rule 0", "tier default ingress end".
    pub fn describe(&self) -> String {
        match self.index {
            Some(i) => format!("{} {} rule {i}", self.origin, self.direction),
            None => format!("{} {}", self.origin, self.direction),
        }
    }
}

/// Where a policy's rules come from, in rule ids and dumps: e.g. "NetworkPolicy demo/web".
pub fn policy_origin(id: &ResourceId) -> String {
    format!("{} {}", id.kind, id.namespaced_name())
}

/// Where a profile's rules come from: e.g. "Profile kns.demo".
pub fn profile_origin(profile: &str) -> String {
    format!("Profile {profile}")
}

/// The pseudo-rule a tier's policies end in when no rule decided: e.g. "end of tier default".
pub fn tier_end_origin(tier: &str) -> String {
    format!("end of tier {tier}")
}

/// The pseudo-rule that denies what no tier decided and no profile allowed.
pub const DEFAULT_DENY_ORIGIN: &str = "default deny (no policy or profile allowed it)";
/// What an open-ended stage's rulesets count the flows they leave undecided against.
pub const NO_MATCH_ORIGIN: &str = "no match (on to the next stage)";

/// Names rules stably: a hash of where they come from (never 0, which the programs read as
/// "no verdict").
pub fn rule_id(origin: &str, direction: Direction, index: Option<usize>) -> u32 {
    let s = format!("{origin}\u{0}{direction}\u{0}{index:?}");
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    if h == 0 {
        1
    } else {
        h
    }
}

/// Everything about the configuration that every endpoint's compilation shares.
pub struct PolicyIndex<'c> {
    pub config: &'c Config,
    entities: Entities,
    /// Tiers in evaluation order: (name, policies in order, tier's default action is Pass).
    tiers: Vec<(String, Vec<&'c PolicyIr>, bool)>,
    /// Per tier, its policies by the label their selector requires.
    tier_index: Vec<PolicyLabels<'c>>,
    /// The entities by label, made when a selector first needs it.
    entity_index: std::cell::OnceCell<EntityLabels>,
    selectors: std::cell::RefCell<Selections>,
}

/// A tier's policies (positions in its list) by the `key == 'value'` their selector requires
/// (`Selector::required_label`); the others in `rest`. An endpoint needs only evaluate the
/// policies under its own labels and the rest: at 10,000 namespaced policies, a few hundred.
struct PolicyLabels<'c> {
    by: FxHashMap<&'c str, FxHashMap<&'c str, Vec<usize>>>,
    rest: Vec<usize>,
}

impl<'c> PolicyLabels<'c> {
    fn new(pols: &[&'c PolicyIr]) -> Self {
        let mut by: FxHashMap<&str, FxHashMap<&str, Vec<usize>>> = FxHashMap::default();
        let mut rest = Vec::new();
        for (i, p) in pols.iter().enumerate() {
            match p.selector.required_label() {
                Some((k, v)) => by.entry(k).or_default().entry(v).or_default().push(i),
                None => rest.push(i),
            }
        }
        PolicyLabels { by, rest }
    }

    /// Positions of the policies that may select an endpoint with `labels`, in order.
    fn candidates(&self, labels: &BTreeMap<String, String>) -> Vec<usize> {
        let mut out = self.rest.clone();
        for (k, v) in labels {
            if let Some(hit) = self.by.get(k.as_str()).and_then(|m| m.get(v.as_str())) {
                out.extend_from_slice(hit);
            }
        }
        out.sort_unstable();
        out
    }
}

/// Entities (positions) by each of their labels.
struct EntityLabels(FxHashMap<String, FxHashMap<String, Vec<usize>>>);

impl EntityLabels {
    fn new(entities: &[Arc<Entity>]) -> Self {
        let mut by: FxHashMap<String, FxHashMap<String, Vec<usize>>> = FxHashMap::default();
        for (i, e) in entities.iter().enumerate() {
            for (k, v) in e.labels.iter() {
                by.entry(k.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(i);
            }
        }
        EntityLabels(by)
    }
}

/// What selectors picked from a universe of entities: the addresses each selector's entities
/// have, and those with a named port. Kept between runs by a long-running reconciler, it is
/// only used again for the same universe (`PolicyIndex::with_selections` checks a fingerprint
/// of every entity's labels, addresses and named ports).
#[derive(Clone, Default)]
pub struct Selections {
    universe: u64,
    sets: super::fxhash::FxHashMap<String, Arc<Vec<Net4>>>,
    named: super::fxhash::FxHashMap<(String, String), NamedPortNets>,
}

/// Per (protocol, port) a named port stands for, the addresses of the entities that have it.
type NamedPortNets = BTreeMap<(u8, u16), Vec<Net4>>;

/// A fingerprint of everything selectors can see of the entities, in order: one hash of
/// theirs, made when each was.
pub fn universe(entities: &[Arc<Entity>]) -> u64 {
    use std::hash::Hasher;
    let mut h = super::fxhash::FxHasher::default();
    h.write_usize(entities.len());
    for e in entities {
        h.write_u64(e.fingerprint);
    }
    h.finish()
}

fn v4_nets(cidrs: &[Cidr]) -> Vec<Net4> {
    cidrs
        .iter()
        .filter_map(|c| match c {
            Cidr::V4 { addr, len } => Some(Net4::new(u32::from(*addr), *len)),
            Cidr::V6 { .. } => None,
        })
        .collect()
}

impl<'c> PolicyIndex<'c> {
    pub fn new(config: &'c Config, entities: Vec<Entity>) -> Self {
        let entities: Vec<Arc<Entity>> = entities.into_iter().map(Arc::new).collect();
        let fingerprint = universe(&entities);
        Self::with_selections(
            config,
            Arc::new(entities),
            fingerprint,
            Selections::default(),
        )
    }

    /// As `new`, for entities of fingerprint `fingerprint` (`universe`), reusing what
    /// `selections` remembers if it was made for the same entities.
    pub fn with_selections(
        config: &'c Config,
        entities: Entities,
        fingerprint: u64,
        mut selections: Selections,
    ) -> Self {
        if selections.universe != fingerprint {
            selections = Selections {
                universe: fingerprint,
                ..Default::default()
            };
        }
        let tiers = config
            .tiers_in_order()
            .into_iter()
            .map(|t| {
                let pols = config.policies_in_tier(&t.name);
                (t.name, pols, t.default_action == Action::Pass)
            })
            .collect::<Vec<(String, Vec<&PolicyIr>, bool)>>();
        let tier_index = tiers.iter().map(|(_, p, _)| PolicyLabels::new(p)).collect();
        PolicyIndex {
            config,
            entities,
            tiers,
            tier_index,
            entity_index: std::cell::OnceCell::new(),
            selectors: std::cell::RefCell::new(selections),
        }
    }

    /// The address sets the rules compiled so far selected, by selector (Calico's IP sets):
    /// what `weft dump ipsets` shows.
    pub fn ip_sets(&self) -> BTreeMap<String, Vec<Net4>> {
        self.selectors
            .borrow()
            .sets
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect()
    }

    /// The fingerprint of the entities this index selects from.
    pub fn universe(&self) -> u64 {
        self.selectors.borrow().universe
    }

    /// What the selectors picked, for the next index over the same entities.
    pub fn into_selections(self) -> Selections {
        self.selectors.into_inner()
    }

    /// The addresses of every entity `sel` selects.
    fn selected(&self, sel: &Selector) -> Arc<Vec<Net4>> {
        let key = sel.to_string();
        if let Some(v) = self.selectors.borrow().sets.get(&key) {
            return v.clone();
        }
        let mut v: Vec<Net4> = self
            .entities_for(sel)
            .filter(|e| sel.matches(&e.labels))
            .flat_map(|e| e.nets.iter().copied())
            .collect();
        v.sort();
        v.dedup();
        let v = Arc::new(v);
        self.selectors.borrow_mut().sets.insert(key, v.clone());
        v
    }

    /// The entities that may match `sel`: those with the label it requires, if it requires one.
    fn entities_for<'s>(&'s self, sel: &Selector) -> Box<dyn Iterator<Item = &'s Entity> + 's> {
        let Some((k, v)) = sel.required_label() else {
            return Box::new(self.entities.iter().map(|e| &**e));
        };
        let index = self
            .entity_index
            .get_or_init(|| EntityLabels::new(&self.entities));
        let hit = index.0.get(k).and_then(|m| m.get(v));
        Box::new(
            hit.map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|&i| &*self.entities[i]),
        )
    }

    /// The addresses of entities `sel` selects that have named port `name` as (proto, port).
    fn selected_with_port(
        &self,
        sel: Option<&Selector>,
        name: &str,
    ) -> BTreeMap<(u8, u16), Vec<Net4>> {
        let key = (
            sel.map(|s| s.to_string()).unwrap_or_default(),
            name.to_string(),
        );
        if let Some(v) = self.selectors.borrow().named.get(&key) {
            return v.clone();
        }
        let mut out: BTreeMap<(u8, u16), Vec<Net4>> = BTreeMap::new();
        for e in self.entities.iter() {
            if sel.is_some_and(|s| !s.matches(&e.labels)) {
                continue;
            }
            for (n, proto, port) in &e.named_ports {
                if n == name {
                    out.entry((*proto, *port))
                        .or_default()
                        .extend(e.nets.iter().copied());
                }
            }
        }
        self.selectors.borrow_mut().named.insert(key, out.clone());
        out
    }

    /// The ordered rules that decide workload endpoint `ep`'s flows in `dir`, and what each
    /// rule id stands for.
    pub fn ruleset(&self, ep: &Endpoint, dir: Direction) -> (RulesetSpec, Vec<RuleInfo>) {
        self.stage_ruleset(ep, dir, Stage::Normal)
    }

    /// The ordered rules of `stage` that decide endpoint `ep`'s flows in `dir`, and what each
    /// rule id stands for. A stage no policy (or profile) takes part in has no groups.
    pub fn stage_ruleset(
        &self,
        ep: &Endpoint,
        dir: Direction,
        stage: Stage,
    ) -> (RulesetSpec, Vec<RuleInfo>) {
        let mut b = Builder {
            index: self,
            ep,
            dir,
            spec: RulesetSpec::default(),
            info: Vec::new(),
            set_ids: Default::default(),
            set_of_selection: Default::default(),
            selections_held: Vec::new(),
        };
        b.spec.locals = ep.addrs.clone();
        for ((tier, pols, pass), index) in self.tiers.iter().zip(&self.tier_index) {
            let selecting: Vec<&&PolicyIr> = index
                .candidates(&ep.labels)
                .into_iter()
                .map(|i| &pols[i])
                .filter(|p| match dir {
                    Direction::Ingress => p.ingress.is_some(),
                    Direction::Egress => p.egress.is_some(),
                })
                // doNotTrack and preDNAT policies are for host endpoints: Calico never applies
                // them to workloads (felix/calc/event_sequencer.go sorts them into host
                // endpoints' untracked and pre-DNAT tiers).
                .filter(|p| stage.takes(p))
                .filter(|p| p.selector.matches(&ep.labels))
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let group = b.spec.groups.len();
            for p in selecting {
                let rules = match dir {
                    Direction::Ingress => p.ingress.as_deref().unwrap_or_default(),
                    Direction::Egress => p.egress.as_deref().unwrap_or_default(),
                };
                let origin = policy_origin(&p.id);
                for r in rules {
                    b.rule(&origin, r, group, false);
                }
            }
            let end = if *pass || stage.open_end() {
                GroupEnd::Pass
            } else {
                let origin = tier_end_origin(tier);
                let id = rule_id(&origin, dir, None);
                b.info.push(RuleInfo {
                    id,
                    origin,
                    direction: dir,
                    index: None,
                    action: "Deny (end of tier)".into(),
                });
                GroupEnd::Deny(id)
            };
            b.spec.groups.push(end);
        }
        let profiles = if stage == Stage::Normal {
            &ep.profiles[..]
        } else {
            &[]
        };
        for profile in profiles {
            let Some((ingress, egress)) = self.config.profile_rules(profile) else {
                continue;
            };
            let rules = match dir {
                Direction::Ingress => ingress,
                Direction::Egress => egress,
            };
            let group = b.spec.groups.len();
            let origin = profile_origin(profile);
            for r in &rules {
                b.rule(&origin, r, group, true);
            }
            b.spec.groups.push(GroupEnd::Pass);
        }
        let (origin, action) = if stage.open_end() {
            (NO_MATCH_ORIGIN, "on to the next stage")
        } else {
            (DEFAULT_DENY_ORIGIN, "Deny (default)")
        };
        let id = rule_id(origin, dir, None);
        b.info.push(RuleInfo {
            id,
            origin: origin.to_string(),
            direction: dir,
            index: None,
            action: action.into(),
        });
        b.spec.default_rule = id;
        b.spec.open_end = stage.open_end();
        (b.spec, b.info)
    }
}

struct Builder<'a, 'c> {
    index: &'a PolicyIndex<'c>,
    ep: &'a Endpoint,
    dir: Direction,
    spec: RulesetSpec,
    info: Vec<RuleInfo>,
    set_ids: super::fxhash::FxHashMap<Vec<Net4>, usize>,
    /// Set index by the address of a selection (`PolicyIndex::selected`).
    set_of_selection: super::fxhash::FxHashMap<usize, usize>,
    selections_held: Vec<Arc<Vec<Net4>>>,
}

/// The (protocol, port) spans of one protocol's port range.
fn port_span(proto: u8, lo: u16, hi: u16) -> (u64, u64) {
    (proto_port(proto, lo), proto_port(proto, hi))
}

fn proto_span(proto: u8) -> SpanSet {
    SpanSet::from_spans([port_span(proto, 0, u16::MAX)])
}

/// Protocols a port number can belong to when the rule names none (validation requires one;
/// Kubernetes defaults to TCP before it reaches here).
const PORT_PROTOCOLS: [u8; 3] = [6, 17, 132];

impl Builder<'_, '_> {
    /// The set of a selector's addresses: the same selector's set is found by identity before
    /// its addresses are compared.
    fn selected_set(&mut self, sel: &Selector) -> usize {
        let nets = self.index.selected(sel);
        let at = Arc::as_ptr(&nets) as usize;
        if let Some(&i) = self.set_of_selection.get(&at) {
            return i;
        }
        let i = self.set((*nets).clone());
        self.set_of_selection.insert(at, i);
        // Held, so that the address stays this selection's while the builder lives.
        self.selections_held.push(nets);
        i
    }

    fn set(&mut self, mut nets: Vec<Net4>) -> usize {
        nets.sort();
        nets.dedup();
        if let Some(&i) = self.set_ids.get(&nets) {
            return i;
        }
        self.spec.sets.push(nets.clone());
        let i = self.spec.sets.len() - 1;
        self.set_ids.insert(nets, i);
        i
    }

    /// Numeric port spans of `ports` for the rule's protocol, and the named ones.
    fn split_ports(ports: &[PortMatch], protocol: Option<u8>) -> (Vec<(u64, u64)>, Vec<String>) {
        let protos: Vec<u8> = match protocol {
            Some(p) => vec![p],
            None => PORT_PROTOCOLS.to_vec(),
        };
        let mut spans = Vec::new();
        let mut named = Vec::new();
        for p in ports {
            match p {
                PortMatch::Range { lo, hi } => {
                    spans.extend(protos.iter().map(|&pr| port_span(pr, *lo, *hi)))
                }
                PortMatch::Named(n) => named.push(n.clone()),
            }
        }
        (spans, named)
    }

    /// The endpoint's own named port `name` as spans (restricted to `protocol` if given). As
    /// in Calico, named ports are those of the entities the side's positive selector picks.
    fn own_named(
        &self,
        name: &str,
        protocol: Option<u8>,
        positive: Option<&Selector>,
    ) -> Vec<(u64, u64)> {
        if positive.is_some_and(|s| !s.matches(&self.ep.labels)) {
            return Vec::new();
        }
        self.ep
            .named_ports
            .iter()
            .filter(|(n, p, _)| n == name && protocol.is_none_or(|pr| pr == *p))
            .map(|(_, p, port)| port_span(*p, *port, *port))
            .collect()
    }

    /// A port condition on the endpoint's own side (its named ports are known).
    fn own_ports(&self, e: &EntityIr, protocol: Option<u8>) -> SpanSet {
        let positive = positive_selector(e);
        let mut set = SpanSet::full();
        if !e.ports.is_empty() {
            let (mut spans, named) = Self::split_ports(&e.ports, protocol);
            for n in named {
                spans.extend(self.own_named(&n, protocol, positive.as_ref()));
            }
            set = SpanSet::from_spans(spans);
        }
        if !e.not_ports.is_empty() {
            let (mut spans, named) = Self::split_ports(&e.not_ports, protocol);
            for n in named {
                spans.extend(self.own_named(&n, protocol, positive.as_ref()));
            }
            set = set.subtract(&SpanSet::from_spans(spans));
        }
        set
    }

    /// Whether an entity that owns the endpoint's address `a` (the endpoint itself, or a
    /// network set around it) is one `sel` picks: Calico matches selectors through IP sets on
    /// the endpoint's side of a rule as on the peer's.
    fn owned_by(&self, sel: &Selector, a: u32) -> bool {
        sel.matches(&self.ep.labels) || self.index.selected(sel).iter().any(|n| n.contains_addr(a))
    }

    /// Whether the local side of the rule can match at each local address (then "other").
    fn local_cond(&self, e: &EntityIr) -> Vec<bool> {
        let nets = v4_nets(&e.nets);
        let not_nets = v4_nets(&e.not_nets);
        let positive = positive_selector(e);
        let mut out: Vec<bool> = self
            .ep
            .addrs
            .iter()
            .map(|&a| {
                (e.nets.is_empty() || nets.iter().any(|n| n.contains_addr(a)))
                    && !not_nets.iter().any(|n| n.contains_addr(a))
                    && match (&positive, &e.not_selector) {
                        (Some(s), _) => self.owned_by(s, a),
                        (None, Some(n)) => !self.owned_by(n, a),
                        (None, None) => true,
                    }
            })
            .collect();
        // An address that is not the endpoint's is in no net and selected by nothing.
        out.push(e.nets.is_empty() && e.selector.is_none());
        out
    }

    /// Terms on the peer address from nets and selectors.
    fn peer_terms(&mut self, e: &EntityIr) -> Vec<AddrTerm> {
        let mut terms = Vec::new();
        if !e.nets.is_empty() {
            let s = self.set(v4_nets(&e.nets));
            terms.push(AddrTerm {
                set: s,
                member: true,
            });
        }
        if !e.not_nets.is_empty() {
            let s = self.set(v4_nets(&e.not_nets));
            terms.push(AddrTerm {
                set: s,
                member: false,
            });
        }
        match (positive_selector(e), &e.not_selector) {
            (Some(sel), _) => {
                let s = self.selected_set(&sel);
                terms.push(AddrTerm {
                    set: s,
                    member: true,
                });
            }
            (None, Some(sel)) => {
                let s = self.selected_set(sel);
                terms.push(AddrTerm {
                    set: s,
                    member: false,
                });
            }
            (None, None) => {}
        }
        terms
    }

    /// Port alternatives on the peer's side: each is (extra peer terms, port spans); the rule
    /// matches if any alternative does.
    fn peer_ports(&mut self, e: &EntityIr, protocol: Option<u8>) -> Vec<(Vec<AddrTerm>, SpanSet)> {
        let positive = positive_selector(e);
        let mut alts: Vec<(Vec<AddrTerm>, SpanSet)> = Vec::new();
        if e.ports.is_empty() {
            alts.push((Vec::new(), SpanSet::full()));
        } else {
            let (spans, named) = Self::split_ports(&e.ports, protocol);
            if !spans.is_empty() {
                alts.push((Vec::new(), SpanSet::from_spans(spans)));
            }
            for n in named {
                for ((proto, port), nets) in self.index.selected_with_port(positive.as_ref(), &n) {
                    if protocol.is_some_and(|p| p != proto) {
                        continue;
                    }
                    let s = self.set(nets);
                    alts.push((
                        vec![AddrTerm {
                            set: s,
                            member: true,
                        }],
                        SpanSet::from_spans([port_span(proto, port, port)]),
                    ));
                }
            }
        }
        if !e.not_ports.is_empty() {
            let (spans, named) = Self::split_ports(&e.not_ports, protocol);
            let excluded = SpanSet::from_spans(spans);
            // Named notPorts: a port value v is excluded only for peers that have one of the
            // names with value v. Several names can share a value: their peers are one set.
            let mut by_value: BTreeMap<(u8, u16), Vec<Net4>> = BTreeMap::new();
            for n in &named {
                for (value, nets) in self.index.selected_with_port(positive.as_ref(), n) {
                    by_value.entry(value).or_default().extend(nets);
                }
            }
            let values: Vec<((u8, u16), usize)> = by_value
                .into_iter()
                .map(|(value, nets)| (value, self.set(nets)))
                .collect();
            let all_values = SpanSet::from_spans(
                values
                    .iter()
                    .map(|((p, port), _)| port_span(*p, *port, *port)),
            );
            let mut refined = Vec::new();
            for (terms, set) in alts {
                let base = set.subtract(&excluded);
                refined.push((terms.clone(), base.subtract(&all_values)));
                for &((proto, port), s) in &values {
                    let one = SpanSet::from_spans([port_span(proto, port, port)]).intersect(&base);
                    if !one.is_empty() {
                        let mut t = terms.clone();
                        t.push(AddrTerm {
                            set: s,
                            member: false,
                        });
                        refined.push((t, one));
                    }
                }
            }
            alts = refined;
        }
        alts
    }

    /// Adds rule `r` of `origin` to `group`. In a profile no tier follows, and a Pass denies,
    /// as in Calico's eBPF dataplane (felix/bpf/polprog: a profile's "pass" jumps to deny).
    fn rule(&mut self, origin: &str, r: &RuleIr, group: usize, in_profile: bool) {
        let id = rule_id(origin, self.dir, Some(r.index));
        let pass_denies = in_profile && r.action == Action::Pass;
        self.info.push(RuleInfo {
            id,
            origin: origin.to_string(),
            direction: self.dir,
            index: Some(r.index),
            action: if pass_denies {
                "Pass (in a profile: deny)".into()
            } else {
                format!("{:?}", r.action)
            },
        });
        // A rule is of one IP version (validation sees to it): ipVersion 6, or IPv6 networks,
        // make it an IPv6 rule, which Calico leaves out of IPv4 policy whole
        // (felix/rules/policy.go, FilterRuleToIPVersion). An IPv6 notNets must not become "any
        // IPv4 address".
        let v6_nets = [&r.source, &r.destination]
            .iter()
            .flat_map(|e| e.nets.iter().chain(&e.not_nets))
            .any(|c| !c.is_v4());
        if r.ip_version == Some(6) || v6_nets {
            return;
        }
        let action = match r.action {
            Action::Allow => FlatAction::Allow,
            Action::Deny => FlatAction::Deny,
            Action::Pass if pass_denies => FlatAction::Deny,
            Action::Pass => FlatAction::Pass,
            Action::Log => FlatAction::Log,
        };
        // The protocol and ICMP fields restrict the (protocol, dport) space.
        let mut proto = SpanSet::full();
        if let Some(p) = r.protocol {
            proto = proto.intersect(&proto_span(p));
        }
        if let Some(p) = r.not_protocol {
            proto = proto.subtract(&proto_span(p));
        }
        if r.protocol == Some(58) {
            return; // ICMPv6 never matches IPv4 traffic
        }
        let icmp = |m: &weft_model::IcmpMatch| match m.code {
            Some(c) => SpanSet::from_spans([port_span(
                1,
                u16::from(m.icmp_type) << 8 | u16::from(c),
                u16::from(m.icmp_type) << 8 | u16::from(c),
            )]),
            None => SpanSet::from_spans([port_span(
                1,
                u16::from(m.icmp_type) << 8,
                u16::from(m.icmp_type) << 8 | 0xff,
            )]),
        };
        if let Some(m) = &r.icmp {
            proto = proto.intersect(&icmp(m));
        }
        if let Some(m) = &r.not_icmp {
            proto = proto.subtract(&icmp(m));
        }

        // The responder's port is the destination's, the originator's the source's, in both
        // directions; which of source and destination is the peer depends on the direction.
        let (peer, local, peer_is_source) = match self.dir {
            Direction::Ingress => (&r.source, &r.destination, true),
            Direction::Egress => (&r.destination, &r.source, false),
        };
        let base_terms = self.peer_terms(peer);
        let local_ok = self.local_cond(local);
        let local_ports = self.own_ports(local, r.protocol);
        let peer_alts = self.peer_ports(peer, r.protocol);
        for (extra, peer_ports) in peer_alts {
            let (sport, dport) = if peer_is_source {
                (peer_ports, local_ports.clone())
            } else {
                (local_ports.clone(), peer_ports)
            };
            let dport = dport.intersect(&proto);
            if dport.is_empty() || sport.is_empty() {
                continue;
            }
            let mut terms = base_terms.clone();
            terms.extend(extra);
            self.spec.rules.push(FlatRule {
                id,
                action,
                group,
                peer: terms,
                local: local_ok.clone(),
                sport,
                dport,
            });
        }
    }
}

/// The selector one entity must match on a side of a rule. Calico folds the notSelector into
/// the selector when both are given (felix/calc/rule_scanner.go): `selector && !notSelector` of
/// one entity, which differs from "some entity matches selector and none matches notSelector"
/// where entities share addresses (a network set around an endpoint). Named ports, positive and
/// negated, are filtered by this selector too.
fn positive_selector(e: &EntityIr) -> Option<Selector> {
    e.selector.clone().map(|s| match &e.not_selector {
        Some(n) => s.and(n.clone().not()),
        None => s,
    })
}

/// The IPv4 addresses of an IR net list that are single hosts, for endpoints' own addresses.
pub fn host_addrs(cidrs: &[Cidr]) -> Vec<Ipv4Addr> {
    cidrs
        .iter()
        .filter_map(|c| match c {
            Cidr::V4 { addr, .. } => Some(*addr),
            Cidr::V6 { .. } => None,
        })
        .collect()
}

/// The local endpoints' rulesets of the last computation, and what they were computed from. A
/// change to policies alone (the entities, tiers and profiles the same) leaves the ruleset of
/// an endpoint that no changed policy selects, before or after, as it was: such an endpoint is
/// not resolved again. At 10,000 policies, resolving an endpoint's ruleset matches it against
/// every policy of its namespace's tiers; one policy's change touches the few it selects.
#[derive(Clone, Default)]
pub struct EndpointRulesets {
    /// What the rulesets in `last` were computed from; None before the first computation.
    basis: Option<Basis>,
    /// What this computation's are computed from, while it runs.
    pending: Option<Basis>,
    last: FxHashMap<(Direction, String), Resolved>,
    /// This computation's, while it runs; `last` once it is through.
    next: FxHashMap<(Direction, String), Resolved>,
    /// The policies this computation has that the last had not, and the other way round;
    /// None when anything else changed (every endpoint is resolved).
    changed: Option<Vec<Arc<PolicyIr>>>,
    /// Rulesets taken from `last` by this computation, for tests.
    reused: usize,
}

type Resolved = Arc<Resolution>;

/// One endpoint's ruleset in one direction, as resolved.
pub struct Resolution {
    pub endpoint: Endpoint,
    pub spec: RulesetSpec,
    /// The spec's `super::spec_key`, worked out once.
    pub key: u128,
    pub info: Vec<RuleInfo>,
}

#[derive(Clone)]
struct Basis {
    universe: u64,
    tiers: Vec<Arc<weft_model::Tier>>,
    profiles: Vec<Arc<weft_model::Profile>>,
    policies: Vec<Arc<PolicyIr>>,
}

impl Basis {
    fn of(config: &Config, universe: u64) -> Basis {
        Basis {
            universe,
            tiers: crate::desired::values(&config.tiers),
            profiles: crate::desired::values(&config.profiles),
            policies: config.policies.clone(),
        }
    }
}

/// Past this many changed policies, matching each endpoint against them costs about what
/// resolving it again does.
const MOST_CHANGED: usize = 64;

impl EndpointRulesets {
    /// Starts a computation of `config`'s rulesets over entities of fingerprint `universe`.
    pub fn begin(&mut self, config: &Config, universe: u64) {
        self.next.clear();
        self.reused = 0;
        let now = Basis::of(config, universe);
        self.changed = self.basis.as_ref().and_then(|was| {
            use crate::desired::same_allocations as same;
            if was.universe != now.universe
                || !same(&was.tiers, &now.tiers)
                || !same(&was.profiles, &now.profiles)
            {
                return None;
            }
            if was.policies.len() == now.policies.len() {
                // Policies are in load order, and a changed one stands where it stood: the
                // places where the lists differ hold every policy that is in one and not the
                // other (and any that only moved, resolved again for nothing). No sets of
                // 10,000 pointers to build for one policy's change.
                let mut changed = Vec::new();
                for (a, b) in was.policies.iter().zip(&now.policies) {
                    if !Arc::ptr_eq(a, b) {
                        changed.extend([a.clone(), b.clone()]);
                        if changed.len() > MOST_CHANGED {
                            return None;
                        }
                    }
                }
                return Some(changed);
            }
            let ptrs = |ps: &[Arc<PolicyIr>]| -> std::collections::HashSet<*const PolicyIr> {
                ps.iter().map(Arc::as_ptr).collect()
            };
            let (old, new) = (ptrs(&was.policies), ptrs(&now.policies));
            let changed: Vec<Arc<PolicyIr>> = was
                .policies
                .iter()
                .filter(|p| !new.contains(&Arc::as_ptr(p)))
                .chain(
                    now.policies
                        .iter()
                        .filter(|p| !old.contains(&Arc::as_ptr(p))),
                )
                .cloned()
                .collect();
            (changed.len() <= MOST_CHANGED).then_some(changed)
        });
        self.pending = Some(now);
    }

    /// Endpoint `name`'s ruleset in `dir`: the last computation's if it is still right (the
    /// same endpoint, and no changed policy selects it), else what `resolve` gives.
    pub fn ruleset(
        &mut self,
        name: &str,
        dir: Direction,
        ep: &Endpoint,
        resolve: impl FnOnce() -> (RulesetSpec, Vec<RuleInfo>),
    ) -> Resolved {
        let key = (dir, name.to_string());
        let kept = self.changed.as_ref().and_then(|changed| {
            let last = self.last.get(&key)?;
            (last.endpoint == *ep && !changed.iter().any(|p| p.selector.matches(&ep.labels)))
                .then(|| last.clone())
        });
        let resolved = match kept {
            Some(r) => {
                self.reused += 1;
                r
            }
            None => {
                let (spec, info) = resolve();
                Arc::new(Resolution {
                    endpoint: ep.clone(),
                    key: super::spec_key(&spec),
                    spec,
                    info,
                })
            }
        };
        self.next.insert(key, resolved.clone());
        resolved
    }

    /// Ends a computation that went through: its rulesets are the next one's last. One that
    /// failed partway never gets here, and the next compares itself with the one before it.
    pub fn finish(&mut self) {
        self.basis = self.pending.take();
        self.last = std::mem::take(&mut self.next);
        self.changed = None;
    }

    /// How many rulesets the running (or last) computation took from the one before.
    pub fn reused(&self) -> usize {
        self.reused
    }
}
