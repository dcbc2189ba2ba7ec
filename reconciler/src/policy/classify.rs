//! The classifier compiler: a `RulesetSpec` (ordered rules) becomes the entries of three LPM
//! tables that the kernel consults in a fixed number of lookups (see bpf-src/include/weft_maps.h).
//!
//! 1. Address classes. Every prefix that a peer set mentions is a node of a prefix tree. All
//!    addresses whose longest matching node is the same are in exactly the same sets, so they
//!    are treated alike by every rule; walking the tree keeps, per rule, how many of its
//!    terms hold, and the set of rules whose peer condition holds names the class. Nodes whose
//!    class equals their parent's need no entry.
//! 2. Context classes, only if a rule looks at the local address or the originator's port:
//!    per local address, the (protocol, sport) space is cut at every boundary those rules use,
//!    and the set of such rules that hold names the class.
//! 3. Verdicts. For each (address class, context class) the rules that can match are painted in
//!    order over the (protocol, dport) space: the first Allow or Deny of a group decides a
//!    value, Pass closes it for the rest of the group, Log marks it; what a group leaves open
//!    gets the group's end. The resulting step function becomes LPM prefixes.
//!
//! The work is proportional to the number of classes times the rules that can match in each,
//! not to the product of all rules and all values.

use std::collections::{BTreeSet, HashMap};

use super::flat::{FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, Verdict, PROTO_PORT_MAX};
use super::lpm::{self, Prefix};

/// The bits of the (protocol, port) space.
pub const PROTO_PORT_BITS: u8 = 24;

/// The ruleset needs the context stage (`WEFT_RS_F_CTX`).
pub const RS_F_CTX: u32 = 0x01;

/// The local address that stands for "not one of the endpoint's" in context entries.
pub const OTHER_LOCAL: u32 = 0;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Compiled {
    /// `RS_F_*`, carried on every address entry.
    pub flags: u32,
    /// Peer prefix -> address class.
    pub addr: Vec<(Net4, u32)>,
    /// (local address or OTHER_LOCAL, (protocol, sport) prefix) -> context class.
    pub ctx: Vec<(u32, Prefix<u16>)>,
    /// (address class, context class, (protocol, dport) prefix) -> verdict.
    pub verdicts: Vec<(u32, u16, Prefix<Verdict>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("the rules need {0} context classes; at most 65535 fit")]
    TooManyContextClasses(usize),
}

pub fn compile(spec: &RulesetSpec) -> Result<Compiled, CompileError> {
    let addr = address_classes(spec);
    let ctx = context_classes(spec)?;
    let mut out = Compiled {
        flags: if ctx.needed { RS_F_CTX } else { 0 },
        ..Default::default()
    };
    out.addr = addr.entries;
    out.ctx = ctx.entries;
    for (aclass, rules) in addr.classes.iter().enumerate() {
        for (cclass, sensitive) in ctx.classes.iter().enumerate() {
            let relevant: Vec<&FlatRule> = rules
                .iter()
                .filter(|&&r| spec.rules[r].ctx_free() || sensitive.contains(&r))
                .map(|&r| &spec.rules[r])
                .collect();
            for p in paint(spec, &relevant) {
                out.verdicts.push((aclass as u32, cclass as u16, p));
            }
        }
    }
    Ok(out)
}

/// Splitmix64: a well-spread 64-bit value per rule, XORed together to name a set of rules.
fn rule_hash(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct AddrClasses {
    /// Per class, the indexes of the rules whose peer condition holds, in order.
    classes: Vec<Vec<usize>>,
    entries: Vec<(Net4, u32)>,
}

fn address_classes(spec: &RulesetSpec) -> AddrClasses {
    // The nodes: every prefix of every set, plus the whole space, each with the sets it is in.
    let mut node_sets: HashMap<Net4, Vec<usize>> = HashMap::new();
    node_sets.insert(Net4::ALL, Vec::new());
    for (s, nets) in spec.sets.iter().enumerate() {
        for n in nets {
            node_sets.entry(*n).or_default().push(s);
        }
    }
    let mut nodes: Vec<Net4> = node_sets.keys().copied().collect();
    // Pre-order: an ancestor sorts before its descendants.
    nodes.sort_unstable_by_key(|n| (n.addr, n.len));

    // Per set, the rules that refer to it and how.
    let mut refs: Vec<Vec<(usize, bool)>> = vec![Vec::new(); spec.sets.len()];
    let mut need_pos = vec![0u32; spec.rules.len()];
    for (r, rule) in spec.rules.iter().enumerate() {
        for t in &rule.peer {
            refs[t.set].push((r, t.member));
            if t.member {
                need_pos[r] += 1;
            }
        }
    }
    let mut have_pos = vec![0u32; spec.rules.len()];
    let mut have_neg = vec![0u32; spec.rules.len()];
    let mut set_depth = vec![0u32; spec.sets.len()];
    let active_of = |r: usize, hp: &[u32], hn: &[u32]| hp[r] == need_pos[r] && hn[r] == 0;
    let mut active: BTreeSet<usize> = (0..spec.rules.len())
        .filter(|&r| need_pos[r] == 0)
        .collect();
    let mut hash: u64 = active.iter().fold(0, |h, &r| h ^ rule_hash(r));

    let mut class_of_hash: HashMap<u64, u32> = HashMap::new();
    let mut classes: Vec<Vec<usize>> = Vec::new();
    let mut entries = Vec::new();
    // The path from the root: (node, its class, the sets it made newly active).
    let mut stack: Vec<(Net4, u32, Vec<usize>)> = Vec::new();

    let leave = |stack: &mut Vec<(Net4, u32, Vec<usize>)>,
                 active: &mut BTreeSet<usize>,
                 hash: &mut u64,
                 have_pos: &mut Vec<u32>,
                 have_neg: &mut Vec<u32>,
                 set_depth: &mut Vec<u32>| {
        let (_, _, sets) = stack.pop().expect("non-empty path");
        for s in sets {
            set_depth[s] -= 1;
            if set_depth[s] == 0 {
                for &(r, member) in &refs[s] {
                    let was = active_of(r, have_pos, have_neg);
                    if member {
                        have_pos[r] -= 1;
                    } else {
                        have_neg[r] -= 1;
                    }
                    let now = active_of(r, have_pos, have_neg);
                    if was != now {
                        *hash ^= rule_hash(r);
                        if now {
                            active.insert(r);
                        } else {
                            active.remove(&r);
                        }
                    }
                }
            }
        }
    };

    for node in nodes {
        while stack.last().is_some_and(|(top, _, _)| !top.contains(&node)) {
            leave(
                &mut stack,
                &mut active,
                &mut hash,
                &mut have_pos,
                &mut have_neg,
                &mut set_depth,
            );
        }
        let mut entered = Vec::new();
        for &s in &node_sets[&node] {
            if set_depth[s] == 0 {
                for &(r, member) in &refs[s] {
                    let was = active_of(r, &have_pos, &have_neg);
                    if member {
                        have_pos[r] += 1;
                    } else {
                        have_neg[r] += 1;
                    }
                    let now = active_of(r, &have_pos, &have_neg);
                    if was != now {
                        hash ^= rule_hash(r);
                        if now {
                            active.insert(r);
                        } else {
                            active.remove(&r);
                        }
                    }
                }
            }
            set_depth[s] += 1;
            entered.push(s);
        }
        let class = *class_of_hash.entry(hash).or_insert_with(|| {
            classes.push(active.iter().copied().collect());
            (classes.len() - 1) as u32
        });
        let parent_class = stack.last().map(|(_, c, _)| *c);
        if parent_class != Some(class) {
            entries.push((node, class));
        }
        stack.push((node, class, entered));
    }
    AddrClasses { classes, entries }
}

struct CtxClasses {
    needed: bool,
    /// Per class, the indexes of the context-sensitive rules whose context condition holds.
    classes: Vec<BTreeSet<usize>>,
    entries: Vec<(u32, Prefix<u16>)>,
}

fn context_classes(spec: &RulesetSpec) -> Result<CtxClasses, CompileError> {
    let sensitive: Vec<(usize, &FlatRule)> = spec
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.ctx_free())
        .collect();
    if sensitive.is_empty() {
        return Ok(CtxClasses {
            needed: false,
            classes: vec![BTreeSet::new()],
            entries: Vec::new(),
        });
    }
    let mut class_of: HashMap<BTreeSet<usize>, u16> = HashMap::new();
    let mut classes: Vec<BTreeSet<usize>> = Vec::new();
    let mut entries = Vec::new();
    for local in 0..=spec.locals.len() {
        let mut cuts: Vec<u64> = vec![0];
        for (_, r) in &sensitive {
            for &(lo, hi) in r.sport.spans() {
                cuts.push(lo);
                if hi < PROTO_PORT_MAX {
                    cuts.push(hi + 1);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut steps: Vec<(u64, u16)> = Vec::with_capacity(cuts.len());
        for &start in &cuts {
            let holding: BTreeSet<usize> = sensitive
                .iter()
                .filter(|(_, r)| r.local[local] && r.sport.contains(start))
                .map(|(i, _)| *i)
                .collect();
            let next = classes.len();
            let c = match class_of.get(&holding) {
                Some(&c) => c,
                None => {
                    if next > usize::from(u16::MAX) {
                        return Err(CompileError::TooManyContextClasses(next + 1));
                    }
                    class_of.insert(holding.clone(), next as u16);
                    classes.push(holding);
                    next as u16
                }
            };
            if steps.last().map(|s| s.1) != Some(c) {
                steps.push((start, c));
            }
        }
        let addr = spec.locals.get(local).copied().unwrap_or(OTHER_LOCAL);
        for p in lpm::encode(PROTO_PORT_BITS, &steps) {
            entries.push((addr, p));
        }
    }
    Ok(CtxClasses {
        needed: true,
        classes,
        entries,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Open { log: bool },
    Decided(Verdict),
}

/// Paints `rules` (already filtered to those that can match) over the (protocol, dport) space.
fn paint(spec: &RulesetSpec, rules: &[&FlatRule]) -> Vec<Prefix<Verdict>> {
    let mut cuts: Vec<u64> = vec![0];
    for r in rules {
        for &(lo, hi) in r.dport.spans() {
            cuts.push(lo);
            if hi < PROTO_PORT_MAX {
                cuts.push(hi + 1);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let n = cuts.len();
    let mut cells = vec![Cell::Open { log: false }; n];
    let seg_range = |lo: u64, hi: u64| -> (usize, usize) {
        // Every span starts and ends on a cut, so these are exact.
        let a = cuts.partition_point(|&c| c < lo);
        let b = cuts.partition_point(|&c| c <= hi);
        (a, b)
    };

    let mut i = 0;
    for (g, end) in spec.groups.iter().enumerate() {
        // Cells matched by this group's Pass rules: closed for the rest of the group.
        let mut passed = vec![false; n];
        while i < rules.len() && rules[i].group < g {
            i += 1;
        }
        while i < rules.len() && rules[i].group == g {
            let r = rules[i];
            i += 1;
            for &(lo, hi) in r.dport.spans() {
                let (a, b) = seg_range(lo, hi);
                for k in a..b {
                    let Cell::Open { log } = cells[k] else {
                        continue;
                    };
                    if passed[k] {
                        continue;
                    }
                    match r.action {
                        FlatAction::Allow | FlatAction::Deny => {
                            cells[k] = Cell::Decided(Verdict {
                                allow: r.action == FlatAction::Allow,
                                log,
                                rule_id: r.id,
                            })
                        }
                        FlatAction::Pass => passed[k] = true,
                        FlatAction::Log => cells[k] = Cell::Open { log: true },
                    }
                }
            }
        }
        if let GroupEnd::Deny(id) = end {
            for k in 0..n {
                if let Cell::Open { log } = cells[k] {
                    if !passed[k] {
                        cells[k] = Cell::Decided(Verdict {
                            allow: false,
                            log,
                            rule_id: *id,
                        });
                    }
                }
            }
        }
    }
    let mut steps: Vec<(u64, Verdict)> = Vec::with_capacity(n);
    for (k, cell) in cells.into_iter().enumerate() {
        let v = match cell {
            Cell::Decided(v) => v,
            Cell::Open { log } => Verdict {
                allow: false,
                log,
                rule_id: spec.default_rule,
            },
        };
        if steps.last().map(|s| s.1) != Some(v) {
            steps.push((cuts[k], v));
        }
    }
    lpm::encode(PROTO_PORT_BITS, &steps)
}

/// Looks a flow up in compiled tables the way the kernel does (for tests and `weft` tooling).
pub fn lookup(c: &Compiled, spec_locals: &[u32], flow: &super::flat::Flow) -> Option<Verdict> {
    let aclass = c
        .addr
        .iter()
        .filter(|(n, _)| n.contains_addr(flow.peer))
        .max_by_key(|(n, _)| n.len)
        .map(|(_, cl)| *cl)?;
    let mut cclass = 0u16;
    if c.flags & RS_F_CTX != 0 {
        let local = spec_locals.get(flow.local).copied().unwrap_or(OTHER_LOCAL);
        let find = |addr: u32| {
            let in_addr: Vec<Prefix<u16>> = c
                .ctx
                .iter()
                .filter(|(a, _)| *a == addr)
                .map(|(_, p)| *p)
                .collect();
            lpm::lookup(PROTO_PORT_BITS, &in_addr, flow.sport)
        };
        cclass = find(local).or_else(|| find(OTHER_LOCAL)).unwrap_or(0);
    }
    let prefixes: Vec<Prefix<Verdict>> = c
        .verdicts
        .iter()
        .filter(|(a, cc, _)| *a == aclass && *cc == cclass)
        .map(|(_, _, p)| *p)
        .collect();
    lpm::lookup(PROTO_PORT_BITS, &prefixes, flow.dport)
}

#[cfg(test)]
mod tests {
    use super::super::flat::{proto_port, AddrTerm, Flow, SpanSet};
    use super::*;

    fn rule(
        id: u32,
        action: FlatAction,
        group: usize,
        peer: Vec<AddrTerm>,
        dport: SpanSet,
    ) -> FlatRule {
        FlatRule {
            id,
            action,
            group,
            peer,
            local: vec![true; 3],
            sport: SpanSet::full(),
            dport,
        }
    }

    fn tcp(lo: u16, hi: u16) -> SpanSet {
        SpanSet::from_spans([(proto_port(6, lo), proto_port(6, hi))])
    }

    fn check_all(spec: &RulesetSpec, flows: &[Flow]) -> Compiled {
        let c = compile(spec).expect("compiles");
        for f in flows {
            assert_eq!(
                lookup(&c, &spec.locals, f),
                Some(spec.evaluate(f)),
                "flow {f:?} in {spec:#?}\n{c:#?}"
            );
        }
        c
    }

    fn flow(peer: u32, proto: u8, dport: u16) -> Flow {
        Flow {
            peer,
            local: 0,
            sport: proto_port(proto, 40000),
            dport: proto_port(proto, dport),
        }
    }

    #[test]
    fn allow_a_cidr_on_one_port_then_default_deny() {
        let spec = RulesetSpec {
            sets: vec![vec![Net4::new(0x0a00_0000, 8)]],
            locals: vec![0x0a41_0002],
            rules: vec![rule(
                1,
                FlatAction::Allow,
                0,
                vec![AddrTerm {
                    set: 0,
                    member: true,
                }],
                tcp(80, 80),
            )],
            groups: vec![GroupEnd::Deny(100)],
            default_rule: 999,
        };
        let c = check_all(
            &spec,
            &[
                flow(0x0a01_0203, 6, 80),
                flow(0x0a01_0203, 6, 81),
                flow(0x0b01_0203, 6, 80),
                flow(0x0a01_0203, 17, 80),
            ],
        );
        assert_eq!(c.addr.len(), 2, "{c:?}");
        assert_eq!(c.flags, 0);
    }

    #[test]
    fn pass_skips_to_the_next_group_and_profiles_decide() {
        let spec = RulesetSpec {
            sets: vec![
                vec![Net4::new(0x0a00_0000, 8)],
                vec![Net4::new(0x0a01_0000, 16)],
            ],
            locals: vec![1],
            rules: vec![
                rule(
                    1,
                    FlatAction::Pass,
                    0,
                    vec![AddrTerm {
                        set: 1,
                        member: true,
                    }],
                    SpanSet::full(),
                ),
                rule(
                    2,
                    FlatAction::Deny,
                    0,
                    vec![AddrTerm {
                        set: 0,
                        member: true,
                    }],
                    SpanSet::full(),
                ),
                rule(3, FlatAction::Allow, 1, vec![], tcp(1, 65535)),
            ],
            groups: vec![GroupEnd::Deny(100), GroupEnd::Pass],
            default_rule: 999,
        };
        check_all(
            &spec,
            &[
                flow(0x0a01_0001, 6, 443), // passed, then profile allows
                flow(0x0a02_0001, 6, 443), // denied in tier
                flow(0x0b00_0001, 6, 443), // tier end deny
                flow(0x0a01_0001, 6, 0),   // passed, profile does not match port 0: default
                flow(0x0a01_0001, 17, 53), // passed, profile does not match udp
            ],
        );
    }

    #[test]
    fn not_nets_and_log_flags() {
        let spec = RulesetSpec {
            sets: vec![
                vec![Net4::new(0x0a00_0000, 8)],
                vec![Net4::new(0x0a0a_0000, 16)],
            ],
            locals: vec![1],
            rules: vec![
                rule(1, FlatAction::Log, 0, vec![], SpanSet::full()),
                rule(
                    2,
                    FlatAction::Allow,
                    0,
                    vec![
                        AddrTerm {
                            set: 0,
                            member: true,
                        },
                        AddrTerm {
                            set: 1,
                            member: false,
                        },
                    ],
                    SpanSet::full(),
                ),
            ],
            groups: vec![GroupEnd::Deny(100)],
            default_rule: 999,
        };
        let c = check_all(
            &spec,
            &[
                flow(0x0a01_0001, 6, 1),
                flow(0x0a0a_0001, 6, 1),
                flow(0x0c00_0001, 1, 0x0800),
            ],
        );
        assert!(c.verdicts.iter().all(|(_, _, p)| p.value.log));
    }

    #[test]
    fn source_ports_and_local_addresses_use_the_context_stage() {
        let mut r1 = rule(1, FlatAction::Allow, 0, vec![], tcp(22, 22));
        r1.sport = tcp(1024, 65535);
        let mut r2 = rule(2, FlatAction::Allow, 0, vec![], tcp(80, 80));
        r2.local = vec![false, true, false];
        let spec = RulesetSpec {
            sets: vec![],
            locals: vec![0x0a00_0001, 0x0a00_0002],
            rules: vec![r1, r2],
            groups: vec![GroupEnd::Deny(100)],
            default_rule: 999,
        };
        let mut flows = Vec::new();
        for local in 0..3 {
            for sport in [80u16, 1023, 1024, 5000] {
                for dport in [22u16, 80] {
                    flows.push(Flow {
                        peer: 5,
                        local,
                        sport: proto_port(6, sport),
                        dport: proto_port(6, dport),
                    });
                }
            }
        }
        let c = check_all(&spec, &flows);
        assert_eq!(c.flags, RS_F_CTX);
    }

    /// Random rulesets against the reference evaluator.
    #[test]
    fn compiled_tables_agree_with_the_ordered_rules() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let addrs: Vec<u32> = (0..8).map(|i| 0x0a00_0000 | (i << 20) | (i << 4)).collect();
        for _ in 0..300 {
            let nsets = 1 + rnd(4) as usize;
            let sets: Vec<Vec<Net4>> = (0..nsets)
                .map(|_| {
                    (0..1 + rnd(3))
                        .map(|_| {
                            Net4::new(
                                addrs[rnd(8) as usize],
                                [8u8, 12, 16, 24, 28, 32][rnd(6) as usize],
                            )
                        })
                        .collect()
                })
                .collect();
            let ngroups = 1 + rnd(3) as usize;
            let groups: Vec<GroupEnd> = (0..ngroups)
                .map(|g| {
                    if rnd(3) == 0 {
                        GroupEnd::Pass
                    } else {
                        GroupEnd::Deny(100 + g as u32)
                    }
                })
                .collect();
            let mut rules = Vec::new();
            for g in 0..ngroups {
                for _ in 0..rnd(5) {
                    let action = [
                        FlatAction::Allow,
                        FlatAction::Deny,
                        FlatAction::Pass,
                        FlatAction::Log,
                    ][rnd(4) as usize];
                    let peer = (0..rnd(3))
                        .map(|_| AddrTerm {
                            set: rnd(nsets as u64) as usize,
                            member: rnd(3) != 0,
                        })
                        .collect();
                    let proto = [6u8, 17, 1][rnd(3) as usize];
                    let lo = rnd(100) as u16;
                    let hi = lo + rnd(50) as u16;
                    let dport = match rnd(4) {
                        0 => SpanSet::full(),
                        1 => tcp(lo, hi),
                        2 => {
                            SpanSet::from_spans([(proto_port(proto, 0), proto_port(proto, 65535))])
                        }
                        _ => SpanSet::from_spans([(proto_port(proto, lo), proto_port(proto, hi))])
                            .complement(),
                    };
                    let mut r = rule(rules.len() as u32 + 1, action, g, peer, dport);
                    if rnd(5) == 0 {
                        r.sport = tcp(lo, hi + 1000);
                    }
                    if rnd(6) == 0 {
                        r.local = vec![rnd(2) == 0, true, rnd(2) == 0];
                    }
                    rules.push(r);
                }
            }
            let spec = RulesetSpec {
                sets,
                locals: vec![7, 9],
                rules,
                groups,
                default_rule: 999,
            };
            let mut flows = Vec::new();
            for _ in 0..60 {
                let base = addrs[rnd(8) as usize];
                let peer = base ^ (rnd(4) as u32) << [0, 4, 8, 20, 28][rnd(5) as usize];
                let proto = [6u8, 17, 1, 50][rnd(4) as usize];
                flows.push(Flow {
                    peer,
                    local: rnd(3) as usize,
                    sport: proto_port(proto, [0u16, 5, 60, 120, 1100, 40000][rnd(6) as usize]),
                    dport: proto_port(proto, rnd(160) as u16),
                });
            }
            check_all(&spec, &flows);
        }
    }
}
