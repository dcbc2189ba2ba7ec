//! Test flows for a compiled policy: new flows whose verdicts come from deep in the rule list,
//! found with the reference evaluator (`RulesetSpec::evaluate`), which also says what the
//! kernel must answer.

use std::net::Ipv4Addr;

use weft::policy::flat::{proto_port, FlatRule, Flow, RulesetSpec, Verdict};
use weft::policy::resolve::Direction;

/// A flow the benchmark sends, with what the reference evaluator says of it.
#[derive(Clone, Debug)]
pub struct TestFlow {
    pub peer: Ipv4Addr,
    pub proto: u8,
    /// The responder's port; ICMP: type << 8 | code.
    pub dport: u16,
    pub verdict: Verdict,
    /// Where in the evaluation order the verdict was reached: the deciding rule's position
    /// among the flat rules (a group's end counts as after its last rule).
    pub depth: usize,
}

impl TestFlow {
    pub fn flow(&self, sport: u16) -> Flow {
        let (sport, dport) = if self.proto == 1 {
            (proto_port(1, 0), proto_port(1, self.dport))
        } else {
            (
                proto_port(self.proto, sport),
                proto_port(self.proto, self.dport),
            )
        };
        Flow {
            peer: u32::from(self.peer),
            local: 0,
            sport,
            dport,
        }
    }

    /// The first packet of the flow with originator's port `sport`, as the hook sees it.
    pub fn packet(&self, dir: Direction, local: Ipv4Addr, sport: u16) -> Vec<u8> {
        use weft_golden::packet;
        let (src, dst) = match dir {
            Direction::Ingress => (self.peer, local),
            Direction::Egress => (local, self.peer),
        };
        match self.proto {
            6 => packet::tcp(src, sport, dst, self.dport, packet::TCP_SYN),
            17 => packet::udp(src, sport, dst, self.dport),
            1 => packet::icmp_echo(src, dst, (self.dport >> 8) as u8, sport),
            p => unreachable!("no packets of protocol {p}"),
        }
    }

    pub fn describe(&self) -> String {
        let what = match self.proto {
            6 => format!("tcp {}", self.dport),
            17 => format!("udp {}", self.dport),
            _ => format!("icmp {}/{}", self.dport >> 8, self.dport & 0xff),
        };
        format!("{} {what}", self.peer)
    }
}

/// A value of `set` inside one of the protocols packets can be built for.
fn sendable(spans: &[(u64, u64)]) -> Option<(u8, u16)> {
    for &(lo, hi) in spans {
        for proto in [6u8, 17, 1] {
            let (a, b) = (proto_port(proto, 0), proto_port(proto, u16::MAX));
            let (lo, hi) = (lo.max(a), hi.min(b));
            if lo > hi {
                continue;
            }
            if proto == 1 {
                // Only echo requests: other ICMP types are errors or replies to a flow.
                let echo = proto_port(1, 8 << 8);
                if lo <= echo && echo <= hi {
                    return Some((1, 8 << 8));
                }
                continue;
            }
            // Prefer a port a little inside the span, not its edge.
            let v = if hi - lo > 2 { lo + 1 } else { lo };
            return Some((proto, (v & 0xffff) as u16));
        }
    }
    None
}

/// Candidate peer addresses for a rule: addresses inside its positive sets, then a few that
/// are in nothing in particular.
fn peers(spec: &RulesetSpec, r: &FlatRule) -> Vec<u32> {
    let mut out = Vec::new();
    for t in r.peer.iter().filter(|t| t.member) {
        for n in spec.sets[t.set].iter().take(4) {
            let host_bits = 32 - u32::from(n.len);
            out.push(n.addr | if host_bits > 1 { 1 } else { 0 });
            if host_bits > 4 {
                out.push(n.addr | (1 << (host_bits - 1)) | 3);
            }
        }
    }
    for a in [
        Ipv4Addr::new(198, 51, 100, 77),
        Ipv4Addr::new(10, 64, 9, 150),
        Ipv4Addr::new(45, 77, 1, 2),
    ] {
        out.push(u32::from(a));
    }
    out
}

/// The position at which `v` was decided: its rule's first flat rule, or its group's end.
fn depth_of(spec: &RulesetSpec, v: &Verdict) -> usize {
    if let Some(i) = spec.rules.iter().position(|r| r.id == v.rule_id) {
        return i;
    }
    for (g, end) in spec.groups.iter().enumerate() {
        if *end == weft::policy::flat::GroupEnd::Deny(v.rule_id) {
            return spec
                .rules
                .iter()
                .rposition(|r| r.group <= g)
                .map_or(0, |i| i + 1);
        }
    }
    spec.rules.len()
}

/// Flows aimed at rules spread over the order, the deepest first; each candidate is judged by
/// the reference evaluator. `sport` is the originator's port to judge with.
pub fn candidates(spec: &RulesetSpec, sport: u16, limit: usize) -> Vec<TestFlow> {
    let mut out: Vec<TestFlow> = Vec::new();
    let n = spec.rules.len();
    let step = (n / (4 * limit)).max(1);
    let mut i = n;
    while i > 0 && out.len() < limit {
        i = i.saturating_sub(step);
        let r = &spec.rules[i];
        if !r.local.first().copied().unwrap_or(false) {
            continue;
        }
        let Some((proto, dport)) = sendable(r.dport.spans()) else {
            continue;
        };
        if proto != 1 && !r.sport.contains(proto_port(proto, sport)) {
            continue;
        }
        for peer in peers(spec, r) {
            let mut f = TestFlow {
                peer: Ipv4Addr::from(peer),
                proto,
                dport,
                verdict: Verdict {
                    allow: false,
                    no_match: false,
                    log: false,
                    rule_id: 0,
                },
                depth: 0,
            };
            let flow = f.flow(sport);
            if !spec.matches(r, &flow) {
                continue;
            }
            f.verdict = spec.evaluate(&flow);
            f.depth = depth_of(spec, &f.verdict);
            out.push(f);
            break;
        }
    }
    // And a peer no rule names, on a port few rules name.
    let mut f = TestFlow {
        peer: Ipv4Addr::new(198, 51, 100, 200),
        proto: 6,
        dport: 7,
        verdict: Verdict {
            allow: false,
            no_match: false,
            log: false,
            rule_id: 0,
        },
        depth: 0,
    };
    f.verdict = spec.evaluate(&f.flow(sport));
    f.depth = depth_of(spec, &f.verdict);
    out.push(f);
    out
}

/// Flows aimed at the rule with id `rule_id` (each of its flat parts), judged by `spec`.
pub fn aimed_at(spec: &RulesetSpec, rule_id: u32, sport: u16) -> Vec<TestFlow> {
    let mut out = Vec::new();
    for r in spec.rules.iter().filter(|r| r.id == rule_id) {
        let Some((proto, dport)) = sendable(r.dport.spans()) else {
            continue;
        };
        for peer in peers(spec, r) {
            let mut f = TestFlow {
                peer: Ipv4Addr::from(peer),
                proto,
                dport,
                verdict: Verdict {
                    allow: false,
                    no_match: false,
                    log: false,
                    rule_id: 0,
                },
                depth: 0,
            };
            let flow = f.flow(sport);
            if !spec.matches(r, &flow) {
                continue;
            }
            f.verdict = spec.evaluate(&flow);
            f.depth = depth_of(spec, &f.verdict);
            out.push(f);
        }
    }
    out
}

/// Up to `per_kind` allowed and `per_kind` denied flows with distinct deciding rules, deepest
/// first.
pub fn pick(mut c: Vec<TestFlow>, per_kind: usize) -> (Vec<TestFlow>, Vec<TestFlow>) {
    c.sort_by_key(|f| std::cmp::Reverse(f.depth));
    let mut allowed: Vec<TestFlow> = Vec::new();
    let mut denied: Vec<TestFlow> = Vec::new();
    for f in c {
        let list = if f.verdict.allow {
            &mut allowed
        } else {
            &mut denied
        };
        if list.len() < per_kind && !list.iter().any(|g| g.verdict.rule_id == f.verdict.rule_id) {
            list.push(f);
        }
    }
    (allowed, denied)
}

/// Checks that every originator's port in `sports` gets the same verdict from the reference
/// evaluator (the benchmark sends one flow per port and counts them against one rule).
pub fn same_verdict_for(spec: &RulesetSpec, f: &TestFlow, sports: &[u16]) -> bool {
    sports
        .iter()
        .all(|&s| spec.evaluate(&f.flow(s)) == f.verdict)
}
