//! Rules reduced to the dimensions of a flow, the classifier compiler's input.
//!
//! A flow is seen from the endpoint, in the flow's own direction: the peer address, the local
//! address, the protocol with the originator's port (`sport`) and with the responder's port
//! (`dport`; for ICMP the type and code). Each rule becomes a condition on each of them; how
//! Calico's and Kubernetes' rule fields map onto them is `policy::resolve`'s business.

use std::fmt;

/// An inclusive range of values in one of the classifier's spaces.
pub type Span = (u64, u64);

/// The (protocol, port) space: `protocol << 16 | port`; for ICMP `1 << 16 | type << 8 | code`.
pub const PROTO_PORT_MAX: u64 = (1 << 24) - 1;

pub fn proto_port(proto: u8, port: u16) -> u64 {
    (u64::from(proto) << 16) | u64::from(port)
}

/// A set of values: sorted, disjoint, non-adjacent inclusive spans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpanSet(Vec<Span>);

impl SpanSet {
    pub fn empty() -> Self {
        SpanSet(Vec::new())
    }

    pub fn full() -> Self {
        SpanSet(vec![(0, PROTO_PORT_MAX)])
    }

    pub fn from_spans(spans: impl IntoIterator<Item = Span>) -> Self {
        let mut v: Vec<Span> = spans.into_iter().filter(|s| s.0 <= s.1).collect();
        v.sort_unstable();
        let mut out: Vec<Span> = Vec::with_capacity(v.len());
        for s in v {
            match out.last_mut() {
                Some(last) if s.0 <= last.1.saturating_add(1) => last.1 = last.1.max(s.1),
                _ => out.push(s),
            }
        }
        SpanSet(out)
    }

    pub fn spans(&self) -> &[Span] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.0 == [(0, PROTO_PORT_MAX)]
    }

    pub fn contains(&self, x: u64) -> bool {
        let i = self.0.partition_point(|s| s.1 < x);
        i < self.0.len() && self.0[i].0 <= x
    }

    pub fn union(&self, other: &SpanSet) -> SpanSet {
        SpanSet::from_spans(self.0.iter().chain(other.0.iter()).copied())
    }

    pub fn complement(&self) -> SpanSet {
        let mut out = Vec::new();
        let mut next = 0u64;
        for &(lo, hi) in &self.0 {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi + 1;
        }
        if next <= PROTO_PORT_MAX {
            out.push((next, PROTO_PORT_MAX));
        }
        SpanSet(out)
    }

    pub fn intersect(&self, other: &SpanSet) -> SpanSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        SpanSet(out)
    }

    pub fn subtract(&self, other: &SpanSet) -> SpanSet {
        self.intersect(&other.complement())
    }
}

/// An IPv4 prefix; the address in host byte order with the host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net4 {
    pub addr: u32,
    pub len: u8,
}

impl Net4 {
    pub fn new(addr: u32, len: u8) -> Self {
        Net4 {
            addr: addr & Self::mask(len),
            len,
        }
    }

    pub fn host(addr: u32) -> Self {
        Net4 { addr, len: 32 }
    }

    pub const ALL: Net4 = Net4 { addr: 0, len: 0 };

    pub fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    pub fn contains_addr(&self, a: u32) -> bool {
        a & Self::mask(self.len) == self.addr
    }

    pub fn contains(&self, other: &Net4) -> bool {
        other.len >= self.len && self.contains_addr(other.addr)
    }
}

impl fmt::Display for Net4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.len)
    }
}

/// One term of a peer condition: the peer must (or must not) be in `sets[set]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrTerm {
    pub set: usize,
    pub member: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlatAction {
    Allow,
    Deny,
    /// Skip the rest of the group (Calico's Pass: on to the next tier).
    Pass,
    /// Note the match and go on (Calico's Log).
    Log,
}

/// One rule, as conditions on the dimensions of a flow. All of them must hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlatRule {
    /// Names the rule in counters and dumps.
    pub id: u32,
    pub action: FlatAction,
    /// Index into `RulesetSpec::groups`; rules of a group are contiguous, groups ascending.
    pub group: usize,
    /// Conditions on the peer address.
    pub peer: Vec<AddrTerm>,
    /// Whether the rule can match at each local address: the endpoint's addresses in
    /// `RulesetSpec::locals` order, then "any other address".
    pub local: Vec<bool>,
    /// (protocol, originator's port) values the rule matches.
    pub sport: SpanSet,
    /// (protocol, responder's port or ICMP type/code) values the rule matches.
    pub dport: SpanSet,
}

impl FlatRule {
    /// True when the rule does not look at the local address or the originator's port.
    pub fn ctx_free(&self) -> bool {
        self.sport.is_full() && self.local.iter().all(|&l| l)
    }
}

/// What happens to a flow that no rule of a group decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupEnd {
    /// Denied, counted against this pseudo-rule (a tier's or the profiles' end).
    Deny(u32),
    /// On to the next group (a tier with defaultAction Pass; one profile of several).
    Pass,
}

/// Everything that decides one endpoint's flows in one direction, in evaluation order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RulesetSpec {
    /// Address sets the peer terms refer to.
    pub sets: Vec<Vec<Net4>>,
    /// The endpoint's own addresses (local index i is locals[i]; locals.len() is any other).
    pub locals: Vec<u32>,
    pub rules: Vec<FlatRule>,
    pub groups: Vec<GroupEnd>,
    /// Counts the flows that every group passed on and nothing allowed.
    pub default_rule: u32,
    /// What no rule decided goes on to the next stage rather than being denied: untracked
    /// and pre-DNAT policy, whose tiers all end in Pass.
    pub open_end: bool,
}

/// The decision for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub allow: bool,
    /// No rule decided and the ruleset has no implicit deny (`RulesetSpec::open_end`): the
    /// flow goes on to the next stage. `allow` is false.
    pub no_match: bool,
    /// A Log rule matched before the deciding rule.
    pub log: bool,
    pub rule_id: u32,
}

/// A concrete flow, for the reference evaluator and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub peer: u32,
    /// Index into `RulesetSpec::locals`, or `locals.len()` for any other address.
    pub local: usize,
    pub sport: u64,
    pub dport: u64,
}

impl RulesetSpec {
    /// The straightforward meaning of the rules: walk them in order. The compiled classifier
    /// must agree with this on every flow.
    pub fn evaluate(&self, flow: &Flow) -> Verdict {
        let mut log = false;
        let mut group = 0;
        let mut i = 0;
        while group < self.groups.len() {
            let mut decided = None;
            let mut passed = false;
            while i < self.rules.len() && self.rules[i].group == group {
                let r = &self.rules[i];
                i += 1;
                if passed || decided.is_some() || !self.matches(r, flow) {
                    continue;
                }
                match r.action {
                    FlatAction::Allow | FlatAction::Deny => {
                        decided = Some(Verdict {
                            allow: r.action == FlatAction::Allow,
                            no_match: false,
                            log,
                            rule_id: r.id,
                        })
                    }
                    FlatAction::Pass => passed = true,
                    FlatAction::Log => log = true,
                }
            }
            if let Some(v) = decided {
                return v;
            }
            if !passed {
                if let GroupEnd::Deny(id) = self.groups[group] {
                    return Verdict {
                        allow: false,
                        no_match: false,
                        log,
                        rule_id: id,
                    };
                }
            }
            group += 1;
        }
        Verdict {
            allow: false,
            no_match: self.open_end,
            log,
            rule_id: self.default_rule,
        }
    }

    pub fn matches(&self, r: &FlatRule, flow: &Flow) -> bool {
        r.peer
            .iter()
            .all(|t| self.sets[t.set].iter().any(|n| n.contains_addr(flow.peer)) == t.member)
            && r.local[flow.local]
            && r.sport.contains(flow.sport)
            && r.dport.contains(flow.dport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_set_algebra() {
        let a = SpanSet::from_spans([(10, 20), (15, 30), (31, 40), (50, 60)]);
        assert_eq!(a.spans(), &[(10, 40), (50, 60)]);
        assert!(a.contains(10) && a.contains(40) && !a.contains(45) && a.contains(55));
        let c = a.complement();
        assert_eq!(c.spans(), &[(0, 9), (41, 49), (61, PROTO_PORT_MAX)]);
        assert_eq!(c.complement(), a);
        let b = SpanSet::from_spans([(35, 55)]);
        assert_eq!(a.intersect(&b).spans(), &[(35, 40), (50, 55)]);
        assert_eq!(a.subtract(&b).spans(), &[(10, 34), (56, 60)]);
        assert!(SpanSet::full().is_full() && SpanSet::full().complement().is_empty());
    }

    #[test]
    fn net4_containment() {
        let n = Net4::new(0x0a00_0001, 8);
        assert_eq!(n.addr, 0x0a00_0000);
        assert!(n.contains_addr(0x0aff_ffff) && !n.contains_addr(0x0b00_0000));
        assert!(Net4::ALL.contains(&n) && !n.contains(&Net4::ALL));
        assert_eq!(n.to_string(), "10.0.0.0/8");
    }
}
