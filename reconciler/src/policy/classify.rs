//! The classifier compiler: a `RulesetSpec` (ordered rules) becomes a few step functions that
//! the kernel evaluates in a fixed number of steps whatever the number of rules (see
//! `tables` for their encoding and bpf-src/include/policy.h for the lookup).
//!
//! 1. Address classes. Rules split in two: *background* rules, whose peer condition has no
//!    positive term (any peer, or any peer but some sets), and *specific* ones. Every prefix
//!    that a peer set mentions is a node of a prefix tree; all addresses whose longest
//!    matching node is the same hold the same specific rules and miss the same background
//!    rules, so they are treated alike by every rule. Walking the tree keeps, per rule, how
//!    many of its terms hold; the pair (specific rules that hold, background rules that do
//!    not) names the class.
//! 2. Context classes, only if a rule looks at the local address or the originator's port:
//!    per local address, the (protocol, sport) space is cut at every boundary those rules use,
//!    and the set of such rules that hold names the class.
//! 3. Verdict functions over (protocol, dport). Per context class, the background rules alone
//!    give the *background* function, shared by every address class. An address class's own
//!    function is evaluated only where its specific rules (and the background rules it
//!    misses) reach, and says `Defer` wherever it agrees with the background. Its size is
//!    therefore what the rules naming its addresses add, not the whole policy, and classes
//!    whose rules add nothing need no function at all. Identical functions are kept once.
//!
//! Evaluation follows Calico's order: tiers (groups) in order, the first Allow or Deny of a
//! group decides, Pass skips the rest of its group, Log marks the flow and goes on, a group
//! that decides nothing ends in its Deny (or passes on), profiles last, then the default deny.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::flat::{FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, Verdict, PROTO_PORT_MAX};
use super::fxhash::FxHashMap;

/// The bits of the (protocol, port) space.
pub const PROTO_PORT_BITS: u8 = 24;

/// The ruleset needs the context stage (`WEFT_RS_F_CTX`, generated from weft_maps.h).
pub use crate::abi::RS_F_CTX;

/// A step function over a space of values: `(start, value)` pairs sorted by start, the first
/// at 0, neighbours with different values. A value holds from its start to the next start.
pub type Steps<V> = Vec<(u64, V)>;

/// The value of the step function `steps` at `x`.
pub fn step_at<V: Copy>(steps: &[(u64, V)], x: u64) -> V {
    steps[steps.partition_point(|s| s.0 <= x) - 1].1
}

/// What an address class's function says at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The background function decides.
    Defer,
    Verdict(Verdict),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Compiled {
    /// `RS_F_*`.
    pub flags: u32,
    /// Peer address (32 bits, host order) -> address class.
    pub addr: Steps<u32>,
    /// With `RS_F_CTX`, the endpoint's own addresses: local index i is `locals[i]`,
    /// `locals.len()` any other.
    pub locals: Vec<u32>,
    /// Per local index: (protocol, sport) -> context class. Empty without `RS_F_CTX`.
    pub ctx: Vec<Steps<u16>>,
    /// How many context classes there are (1 without `RS_F_CTX`).
    pub contexts: u16,
    /// `rows[aclass * contexts + cclass]`: the address class's function in that context, or
    /// None when the background decides everywhere.
    pub rows: Vec<Option<u32>>,
    /// Per context class: the background function (never `Defer`).
    pub background: Vec<u32>,
    /// Functions over (protocol, dport or ICMP type and code).
    pub functions: Vec<Steps<Decision>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("the rules need {0} context classes; at most 65535 fit")]
    TooManyContextClasses(usize),
}

/// A rule with no positive peer term applies to every peer outside its negative sets.
fn is_background(r: &FlatRule) -> bool {
    r.peer.iter().all(|t| !t.member)
}

pub fn compile(spec: &RulesetSpec) -> Result<Compiled, CompileError> {
    compile_with(spec, &mut Memo::default())
}

/// Class functions painted before, by a key naming everything their painting reads: the
/// background (its rules' contents in order, the group ends), the class's own rules' contents
/// with their place among the background's, and which background rules it misses. A caller
/// that compiles again after a small change (a long-running reconciler) keeps one, so only
/// the classes the change touches are painted again. Entries not used by a compile since the
/// last `sweep` are dropped by it.
#[derive(Clone, Default)]
pub struct Memo {
    functions: FxHashMap<u128, (Painted, bool)>,
    /// Address classes by the peer conditions they were made from (every set's prefixes,
    /// every rule's peer terms): a change to ports or actions keeps them.
    addr: FxHashMap<u128, (Arc<AddrClasses>, bool)>,
}

impl Memo {
    /// Forgets what no compile used since the last sweep.
    pub fn sweep(&mut self) {
        self.functions.retain(|_, (_, used)| std::mem::take(used));
        self.addr.retain(|_, (_, used)| std::mem::take(used));
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// A painted class function with its content id, or None where it defers everywhere.
type Painted = Option<(u128, Steps<Decision>)>;

/// Two independent 64-bit FxHash-style streams: a 128-bit key whose collisions need not be
/// considered.
#[derive(Clone, Copy)]
struct Key(u64, u64);

impl Key {
    fn new() -> Key {
        Key(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344)
    }

    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.1 = (self.1.rotate_left(7) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn get(self) -> u128 {
        u128::from(self.0) << 64 | u128::from(self.1)
    }
}

/// What painting reads of a rule: its id, action, group and (protocol, dport) spans.
fn rule_content(r: &FlatRule) -> u64 {
    let mut k = Key::new();
    k.add(u64::from(r.id));
    k.add(r.action as u64);
    k.add(r.group as u64);
    for &(lo, hi) in r.dport.spans() {
        k.add(lo);
        k.add(hi);
    }
    k.0 ^ k.1.rotate_left(32)
}

/// What the address classes are made from.
fn peer_key(spec: &RulesetSpec) -> u128 {
    let mut k = Key::new();
    k.add(spec.sets.len() as u64);
    for set in &spec.sets {
        k.add(set.len() as u64);
        for n in set {
            k.add(u64::from(n.addr) << 8 | u64::from(n.len));
        }
    }
    k.add(spec.rules.len() as u64);
    for r in &spec.rules {
        k.add(r.peer.len() as u64);
        for t in &r.peer {
            k.add((t.set as u64) << 1 | u64::from(t.member));
        }
    }
    k.get()
}

pub fn compile_with(spec: &RulesetSpec, memo: &mut Memo) -> Result<Compiled, CompileError> {
    let entry = memo
        .addr
        .entry(peer_key(spec))
        .or_insert_with(|| (Arc::new(address_classes(spec)), true));
    entry.1 = true;
    let addr = entry.0.clone();
    let ctx = context_classes(spec)?;
    let contexts = ctx.classes.len();
    let mut out = Compiled {
        flags: if ctx.needed { RS_F_CTX } else { 0 },
        addr: addr.steps.clone(),
        // Only the context stage looks at the local address.
        locals: if ctx.needed {
            spec.locals.clone()
        } else {
            Vec::new()
        },
        ctx: ctx.steps,
        contexts: contexts as u16,
        ..Default::default()
    };
    let mut functions = Functions::default();
    // A rule takes part in context class c if it does not look at the context or holds there.
    let ctx_free: Vec<bool> = spec.rules.iter().map(FlatRule::ctx_free).collect();
    // As a table: the classes' keys below look it up for every rule of every class.
    let active: Vec<Vec<bool>> = ctx
        .classes
        .iter()
        .map(|holding| {
            (0..spec.rules.len())
                .map(|r| ctx_free[r] || holding.contains(&r))
                .collect()
        })
        .collect();
    let in_context = |r: usize, c: usize| active[c][r];
    let content: Vec<u64> = spec.rules.iter().map(rule_content).collect();
    // Per context class: the background, its fingerprint, and each rule's place among its
    // rules (how many come before it).
    let mut backgrounds = Vec::with_capacity(contexts);
    for c in 0..contexts {
        let rules: Vec<usize> = (0..spec.rules.len())
            .filter(|&r| is_background(&spec.rules[r]) && in_context(r, c))
            .collect();
        let mut fp = Key::new();
        for &r in &rules {
            fp.add(content[r]);
        }
        for end in &spec.groups {
            fp.add(match end {
                GroupEnd::Deny(id) => u64::from(*id),
                GroupEnd::Pass => u64::MAX,
            });
        }
        fp.add(u64::from(spec.default_rule));
        fp.add(u64::from(spec.open_end));
        let mut rank = vec![0u32; spec.rules.len()];
        let mut seen = 0u32;
        let mut next = rules.iter().peekable();
        for (r, slot) in rank.iter_mut().enumerate() {
            *slot = seen;
            if next.peek() == Some(&&r) {
                next.next();
                seen += 1;
            }
        }
        let bg = Background::new(spec, &rules);
        out.background.push(functions.intern(bg.steps()));
        backgrounds.push((bg, fp, rank));
    }
    // A class's key in a context: the background's fingerprint, then for each of its rules in
    // order a hash of (content, place among the background's rules), chained.
    let element = |salt: u64, a: u64, b: u64| {
        let mut k = Key::new();
        k.add(salt);
        k.add(a);
        k.add(b);
        k.get()
    };
    let holds: Vec<Vec<u128>> = backgrounds
        .iter()
        .map(|(_, _, rank)| {
            (0..spec.rules.len())
                .map(|r| element(1, content[r], u64::from(rank[r])))
                .collect()
        })
        .collect();
    let misses: Vec<Vec<u128>> = backgrounds
        .iter()
        .map(|(_, _, rank)| {
            (0..spec.rules.len())
                .map(|r| element(2, u64::from(rank[r]), 0))
                .collect()
        })
        .collect();
    let mut scratch = Scratch::default();
    let mut seen: FxHashMap<u128, Option<u32>> = FxHashMap::default();
    out.rows = Vec::with_capacity(addr.classes.len() * contexts);
    for class in &addr.classes {
        for (c, (bg, fp, _)) in backgrounds.iter().enumerate() {
            const M: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
            let mut key = fp.get();
            for &r in &class.specific {
                if in_context(r as usize, c) {
                    key = key.wrapping_mul(M).wrapping_add(holds[c][r as usize]);
                }
            }
            for &r in &class.missed {
                if in_context(r as usize, c) {
                    key = key.wrapping_mul(M).wrapping_add(misses[c][r as usize]);
                }
            }
            if let Some(&f) = seen.get(&key) {
                out.rows.push(f);
                continue;
            }
            let entry = memo.functions.entry(key).or_insert_with(|| {
                let keep = |r: &&u32| in_context(**r as usize, c);
                let specific: Vec<u32> = class.specific.iter().filter(keep).copied().collect();
                let missed: Vec<u32> = class.missed.iter().filter(keep).copied().collect();
                let steps = class_function(spec, bg, &specific, &missed, &mut scratch);
                let steps = if steps.len() == 1 && steps[0].1 == Decision::Defer {
                    None
                } else {
                    Some((steps_id(&steps), steps))
                };
                (steps, true)
            });
            entry.1 = true;
            let f = entry
                .0
                .as_ref()
                .map(|(id, steps)| functions.intern_known(*id, steps));
            seen.insert(key, f);
            out.rows.push(f);
        }
    }
    out.functions = functions.list;
    Ok(out)
}

/// A 128-bit name for a function's content, so that interning one a memo remembers does not
/// hash its steps again.
fn steps_id(steps: &Steps<Decision>) -> u128 {
    let mut k = Key::new();
    for (start, d) in steps {
        k.add(*start);
        match d {
            Decision::Defer => k.add(u64::MAX),
            Decision::Verdict(v) => k.add(
                u64::from(v.rule_id) << 3
                    | u64::from(v.no_match) << 2
                    | u64::from(v.allow) << 1
                    | u64::from(v.log),
            ),
        }
    }
    k.get()
}

/// The distinct functions of one compile, numbered in the order first met.
#[derive(Default)]
struct Functions {
    index: FxHashMap<u128, u32>,
    list: Vec<Steps<Decision>>,
}

impl Functions {
    fn intern_known(&mut self, id: u128, steps: &Steps<Decision>) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let i = self.list.len() as u32;
        self.index.insert(id, i);
        self.list.push(steps.clone());
        i
    }

    fn intern(&mut self, steps: Steps<Decision>) -> u32 {
        self.intern_known(steps_id(&steps), &steps)
    }
}

/// Splitmix64: a well-spread 64-bit value per rule, XORed together to name a set of rules.
fn rule_hash(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64 ^ salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Salts keeping "specific rule r holds" and "background rule r does not" apart in a hash.
const HOLDS: u64 = 0;
const MISSES: u64 = 0x5bd1_e995_0000_0000;

/// One address class: the specific rules that hold for its addresses and the background
/// rules that do not (their negative terms exclude it), both in rule order.
struct AddrClass {
    specific: Vec<u32>,
    missed: Vec<u32>,
}

struct AddrClasses {
    classes: Vec<AddrClass>,
    steps: Steps<u32>,
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
    let background: Vec<bool> = spec.rules.iter().map(is_background).collect();
    for (r, rule) in spec.rules.iter().enumerate() {
        for t in &rule.peer {
            refs[t.set].push((r, t.member));
            if t.member {
                need_pos[r] += 1;
            }
        }
    }
    let mut walk = Walk {
        refs: &refs,
        need_pos: &need_pos,
        background: &background,
        have_pos: vec![0; spec.rules.len()],
        have_neg: vec![0; spec.rules.len()],
        set_depth: vec![0; spec.sets.len()],
        specific: BTreeSet::new(),
        missed: BTreeSet::new(),
        hash: 0,
    };

    let mut class_of_hash: HashMap<u64, u32> = HashMap::new();
    let mut classes: Vec<AddrClass> = Vec::new();
    let mut entries: Vec<(Net4, u32)> = Vec::new();
    // The path from the root: (node, its class, the sets it made newly present).
    let mut stack: Vec<(Net4, u32, Vec<usize>)> = Vec::new();
    for node in nodes {
        while stack.last().is_some_and(|(top, _, _)| !top.contains(&node)) {
            let (_, _, sets) = stack.pop().expect("non-empty path");
            for s in sets {
                walk.leave(s);
            }
        }
        let mut entered = Vec::new();
        for &s in &node_sets[&node] {
            walk.enter(s);
            entered.push(s);
        }
        let class = *class_of_hash.entry(walk.hash).or_insert_with(|| {
            classes.push(AddrClass {
                specific: walk.specific.iter().map(|&r| r as u32).collect(),
                missed: walk.missed.iter().map(|&r| r as u32).collect(),
            });
            (classes.len() - 1) as u32
        });
        if stack.last().map(|(_, c, _)| *c) != Some(class) {
            entries.push((node, class));
        }
        stack.push((node, class, entered));
    }
    AddrClasses {
        classes,
        steps: prefixes_to_steps(&entries),
    }
}

/// The state of the walk down the prefix tree: which rules' peer conditions hold.
struct Walk<'a> {
    refs: &'a [Vec<(usize, bool)>],
    need_pos: &'a [u32],
    background: &'a [bool],
    have_pos: Vec<u32>,
    have_neg: Vec<u32>,
    /// How many nodes on the path are in each set.
    set_depth: Vec<u32>,
    specific: BTreeSet<usize>,
    missed: BTreeSet<usize>,
    hash: u64,
}

impl Walk<'_> {
    fn holds(&self, r: usize) -> bool {
        self.have_pos[r] == self.need_pos[r] && self.have_neg[r] == 0
    }

    fn count(&mut self, s: usize, delta: i32) {
        for &(r, member) in &self.refs[s] {
            let was = self.holds(r);
            let c = if member {
                &mut self.have_pos[r]
            } else {
                &mut self.have_neg[r]
            };
            *c = c.wrapping_add_signed(delta);
            let now = self.holds(r);
            if was == now {
                continue;
            }
            if self.background[r] {
                // Background rules hold unless excluded: track the exclusions.
                self.hash ^= rule_hash(r, MISSES);
                if now {
                    self.missed.remove(&r);
                } else {
                    self.missed.insert(r);
                }
            } else {
                self.hash ^= rule_hash(r, HOLDS);
                if now {
                    self.specific.insert(r);
                } else {
                    self.specific.remove(&r);
                }
            }
        }
    }

    fn enter(&mut self, s: usize) {
        if self.set_depth[s] == 0 {
            self.count(s, 1);
        }
        self.set_depth[s] += 1;
    }

    fn leave(&mut self, s: usize) {
        self.set_depth[s] -= 1;
        if self.set_depth[s] == 0 {
            self.count(s, -1);
        }
    }
}

/// Nested prefixes with values (pre-order, the whole space first) as a step function over
/// the 32-bit address space: each address gets its longest prefix's value.
pub fn prefixes_to_steps<V: Copy + Eq>(entries: &[(Net4, V)]) -> Steps<V> {
    fn set<V: Copy + Eq>(out: &mut Steps<V>, at: u64, v: V) {
        if out.last().is_some_and(|l| l.0 == at) {
            out.pop();
        }
        if out.last().map(|l| l.1) != Some(v) {
            out.push((at, v));
        }
    }
    let mut out: Steps<V> = Vec::new();
    // Open prefixes on the path: (end, exclusive; value).
    let mut stack: Vec<(u64, V)> = Vec::new();
    let close = |out: &mut Steps<V>, stack: &mut Vec<(u64, V)>, upto: u64| {
        while let Some(&(end, _)) = stack.last() {
            if end > upto {
                break;
            }
            stack.pop();
            if let Some(&(_, v)) = stack.last() {
                if end < 1 << 32 {
                    set(out, end, v);
                }
            }
        }
    };
    for (net, v) in entries {
        let start = u64::from(net.addr);
        close(&mut out, &mut stack, start);
        set(&mut out, start, *v);
        stack.push((start + (1u64 << (32 - u32::from(net.len))), *v));
    }
    close(&mut out, &mut stack, u64::MAX);
    assert!(
        out.first().is_some_and(|s| s.0 == 0),
        "the whole space has a value"
    );
    out
}

struct CtxClasses {
    needed: bool,
    /// Per class, the indexes of the context-sensitive rules whose context condition holds.
    classes: Vec<BTreeSet<usize>>,
    /// Per local index: (protocol, sport) -> class.
    steps: Vec<Steps<u16>>,
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
            steps: Vec::new(),
        });
    }
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
    let mut class_of: HashMap<BTreeSet<usize>, u16> = HashMap::new();
    let mut classes: Vec<BTreeSet<usize>> = Vec::new();
    let mut out = Vec::new();
    for local in 0..=spec.locals.len() {
        let mut steps: Steps<u16> = Vec::with_capacity(cuts.len());
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
        out.push(steps);
    }
    Ok(CtxClasses {
        needed: true,
        classes,
        steps: out,
    })
}

/// The background of one context class: the (protocol, dport) space cut at every boundary of
/// the background rules, with the rules matching each segment and the verdict they reach.
struct Background {
    cuts: Vec<u64>,
    /// Per segment, the background rules matching it, in rule order.
    rules: Vec<Vec<u32>>,
    verdicts: Vec<Verdict>,
}

impl Background {
    fn new(spec: &RulesetSpec, rules: &[usize]) -> Background {
        let mut cuts: Vec<u64> = vec![0];
        for &r in rules {
            for &(lo, hi) in spec.rules[r].dport.spans() {
                cuts.push(lo);
                if hi < PROTO_PORT_MAX {
                    cuts.push(hi + 1);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut per_segment: Vec<Vec<u32>> = vec![Vec::new(); cuts.len()];
        for &r in rules {
            for &(lo, hi) in spec.rules[r].dport.spans() {
                let (a, b) = segments(&cuts, lo, hi);
                for seg in &mut per_segment[a..b] {
                    seg.push(r as u32);
                }
            }
        }
        let verdicts = per_segment
            .iter()
            .map(|s| evaluate(spec, s, &[], &[]))
            .collect();
        Background {
            cuts,
            rules: per_segment,
            verdicts,
        }
    }

    fn segment(&self, x: u64) -> usize {
        self.cuts.partition_point(|&c| c <= x) - 1
    }

    fn steps(&self) -> Steps<Decision> {
        let mut out: Steps<Decision> = Vec::new();
        for (i, v) in self.verdicts.iter().enumerate() {
            let d = Decision::Verdict(*v);
            if out.last().map(|s| s.1) != Some(d) {
                out.push((self.cuts[i], d));
            }
        }
        out
    }
}

/// The segments `[a, b)` of `cuts` that the span `lo..=hi` covers; every span of the rules
/// that made `cuts` starts and ends on a cut.
fn segments(cuts: &[u64], lo: u64, hi: u64) -> (usize, usize) {
    (
        cuts.partition_point(|&c| c < lo),
        cuts.partition_point(|&c| c <= hi),
    )
}

/// Evaluates the rules of one point of the (protocol, dport) space: `background` and
/// `specific` are the indexes of the rules that match there (each in rule order), `missed`
/// those of `background` that do not apply (sorted). The meaning is `RulesetSpec::evaluate`.
fn evaluate(spec: &RulesetSpec, background: &[u32], specific: &[u32], missed: &[u32]) -> Verdict {
    let (mut i, mut j) = (0, 0);
    let mut log = false;
    for (g, end) in spec.groups.iter().enumerate() {
        let mut passed = false;
        loop {
            // The next matching rule of this group, from either list.
            let next = match (background.get(i), specific.get(j)) {
                (Some(&b), Some(&s)) if b < s => Some((b, true)),
                (_, Some(&s)) => Some((s, false)),
                (Some(&b), None) => Some((b, true)),
                (None, None) => None,
            };
            let Some((r, from_background)) = next else {
                break;
            };
            let rule = &spec.rules[r as usize];
            if rule.group != g {
                break;
            }
            if from_background {
                i += 1;
                if missed.binary_search(&r).is_ok() {
                    continue;
                }
            } else {
                j += 1;
            }
            if passed {
                continue;
            }
            match rule.action {
                FlatAction::Allow | FlatAction::Deny => {
                    return Verdict {
                        allow: rule.action == FlatAction::Allow,
                        no_match: false,
                        log,
                        rule_id: rule.id,
                    }
                }
                FlatAction::Pass => passed = true,
                FlatAction::Log => log = true,
            }
        }
        if !passed {
            if let GroupEnd::Deny(id) = end {
                return Verdict {
                    allow: false,
                    no_match: false,
                    log,
                    rule_id: *id,
                };
            }
        }
    }
    Verdict {
        allow: false,
        no_match: spec.open_end,
        log,
        rule_id: spec.default_rule,
    }
}

/// The verdict of every peer address when it depends on the address alone (no context stage,
/// every class's function one verdict for every protocol and port): the address step function
/// with each class's verdict, for a decision in one lookup (XDP's fast path). None when the
/// protocol, a port or the local address matters to some class.
pub fn by_address_only(c: &Compiled) -> Option<Steps<Verdict>> {
    if c.flags & RS_F_CTX != 0 {
        return None;
    }
    let constant = |f: u32| -> Option<Decision> {
        match c.functions.get(f as usize)?.as_slice() {
            [(_, d)] => Some(*d),
            _ => None,
        }
    };
    let background = match constant(*c.background.first()?)? {
        Decision::Verdict(v) => v,
        Decision::Defer => return None,
    };
    let mut out: Steps<Verdict> = Vec::with_capacity(c.addr.len());
    for &(at, class) in &c.addr {
        let v = match c.rows.get(class as usize)? {
            None => background,
            Some(f) => match constant(*f)? {
                Decision::Verdict(v) => v,
                Decision::Defer => background,
            },
        };
        if out.last().map(|l| l.1) != Some(v) {
            out.push((at, v));
        }
    }
    Some(out)
}

/// Buffers `class_function` reuses from one class to the next.
#[derive(Default)]
struct Scratch {
    reach: Vec<(u64, u64)>,
    cuts: Vec<u64>,
    /// Per cell, where its rules start in `rules` (one more entry than cells).
    start: Vec<u32>,
    rules: Vec<u32>,
}

/// An address class's function in one context: evaluated where its specific rules or the
/// background rules it misses reach, `Defer` wherever the result is the background's.
fn class_function(
    spec: &RulesetSpec,
    bg: &Background,
    specific: &[u32],
    missed: &[u32],
    sc: &mut Scratch,
) -> Steps<Decision> {
    let defer_everywhere = vec![(0, Decision::Defer)];
    if specific.is_empty() && missed.is_empty() {
        return defer_everywhere;
    }
    // Where the class can differ from the background (merged spans), and the cuts inside it:
    // its own rules' boundaries and the background's.
    sc.reach.clear();
    sc.cuts.clear();
    sc.cuts.push(0);
    for &r in specific.iter().chain(missed) {
        for &(lo, hi) in spec.rules[r as usize].dport.spans() {
            sc.reach.push((lo, hi));
            sc.cuts.push(lo);
            if hi < PROTO_PORT_MAX {
                sc.cuts.push(hi + 1);
            }
        }
    }
    sc.reach.sort_unstable();
    let mut merged = 0;
    for i in 0..sc.reach.len() {
        let (lo, hi) = sc.reach[i];
        if merged > 0 && lo <= sc.reach[merged - 1].1.saturating_add(1) {
            let last = &mut sc.reach[merged - 1].1;
            *last = (*last).max(hi);
        } else {
            sc.reach[merged] = (lo, hi);
            merged += 1;
        }
    }
    sc.reach.truncate(merged);
    for &(lo, hi) in &sc.reach {
        let a = bg.cuts.partition_point(|&c| c <= lo);
        let b = bg.cuts.partition_point(|&c| c <= hi);
        sc.cuts.extend_from_slice(&bg.cuts[a..b]);
    }
    sc.cuts.sort_unstable();
    sc.cuts.dedup();
    let n = sc.cuts.len();
    // The specific rules of each cell, in rule order, as one flat list: count, then fill.
    sc.start.clear();
    sc.start.resize(n + 1, 0);
    for &r in specific {
        for &(lo, hi) in spec.rules[r as usize].dport.spans() {
            let (a, b) = segments(&sc.cuts, lo, hi);
            sc.start[a] = sc.start[a].wrapping_add(1);
            sc.start[b] = sc.start[b].wrapping_sub(1);
        }
    }
    let mut running = 0u32;
    let mut total = 0u32;
    for k in 0..n {
        running = running.wrapping_add(sc.start[k]);
        sc.start[k] = total;
        total += running;
    }
    sc.start[n] = total;
    sc.rules.clear();
    sc.rules.resize(total as usize, 0);
    let mut fill: Vec<u32> = sc.start[..n].to_vec();
    for &r in specific {
        for &(lo, hi) in spec.rules[r as usize].dport.spans() {
            let (a, b) = segments(&sc.cuts, lo, hi);
            for slot in &mut fill[a..b] {
                sc.rules[*slot as usize] = r;
                *slot += 1;
            }
        }
    }
    let mut out: Steps<Decision> = Vec::new();
    let mut span = 0;
    for k in 0..n {
        let start = sc.cuts[k];
        while span < sc.reach.len() && sc.reach[span].1 < start {
            span += 1;
        }
        let inside = span < sc.reach.len() && sc.reach[span].0 <= start;
        let d = if !inside {
            Decision::Defer
        } else {
            let seg = bg.segment(start);
            let own = &sc.rules[sc.start[k] as usize..sc.start[k + 1] as usize];
            let v = evaluate(spec, &bg.rules[seg], own, missed);
            if v == bg.verdicts[seg] {
                Decision::Defer
            } else {
                Decision::Verdict(v)
            }
        };
        if out.last().map(|s| s.1) != Some(d) {
            out.push((start, d));
        }
    }
    out
}

/// Looks a flow up in the compiled functions the way the kernel does (for tests and tools).
pub fn lookup(c: &Compiled, flow: &super::flat::Flow) -> Verdict {
    let aclass = step_at(&c.addr, u64::from(flow.peer));
    let cclass = if c.flags & RS_F_CTX != 0 {
        step_at(&c.ctx[flow.local], flow.sport)
    } else {
        0
    };
    let row = c.rows[aclass as usize * usize::from(c.contexts) + usize::from(cclass)];
    let own = row.map_or(Decision::Defer, |f| {
        step_at(&c.functions[f as usize], flow.dport)
    });
    match own {
        Decision::Verdict(v) => v,
        Decision::Defer => {
            match step_at(
                &c.functions[c.background[usize::from(cclass)] as usize],
                flow.dport,
            ) {
                Decision::Verdict(v) => v,
                Decision::Defer => unreachable!("a background function never defers"),
            }
        }
    }
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

    /// Checks the compiled functions and their encoding as cells against the reference
    /// evaluator, and that the cells decode to the functions.
    fn check_all(spec: &RulesetSpec, flows: &[Flow]) -> Compiled {
        let c = compile(spec).expect("compiles");
        let cells = super::super::tables::encode(&c);
        assert_eq!(super::super::tables::decode(&cells).as_ref(), Ok(&c));
        for f in flows {
            let want = spec.evaluate(f);
            assert_eq!(lookup(&c, f), want, "flow {f:?} in {spec:#?}\n{c:#?}");
            // Any address that is none of the endpoint's stands for "other".
            let local_addr = spec.locals.get(f.local).copied().unwrap_or(0xdead_beef);
            assert_eq!(
                super::super::tables::lookup(&cells, local_addr, f),
                Ok(want),
                "flow {f:?} through the cells"
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
            open_end: false,
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
        // Outside 10/8, then 10/8, then after it.
        assert_eq!(c.addr.len(), 3, "{c:?}");
        assert_eq!(c.flags, 0);
        // The background (deny everything at the tier's end) and 10/8's exception.
        assert_eq!(c.functions.len(), 2, "{c:?}");
        assert_eq!(c.rows, vec![None, Some(1)]);
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
            open_end: false,
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
            open_end: false,
        };
        let c = check_all(
            &spec,
            &[
                flow(0x0a01_0001, 6, 1),
                flow(0x0a0a_0001, 6, 1),
                flow(0x0c00_0001, 1, 0x0800),
            ],
        );
        assert!(c.functions.iter().flatten().all(|(_, d)| matches!(
            d,
            Decision::Defer | Decision::Verdict(Verdict { log: true, .. })
        )));
    }

    #[test]
    fn a_peer_excluded_from_a_background_rule_gets_its_own_function() {
        // Deny SSH from anyone but 10/8; allow everything from anyone.
        let spec = RulesetSpec {
            sets: vec![vec![Net4::new(0x0a00_0000, 8)]],
            locals: vec![1],
            rules: vec![
                rule(
                    1,
                    FlatAction::Deny,
                    0,
                    vec![AddrTerm {
                        set: 0,
                        member: false,
                    }],
                    tcp(22, 22),
                ),
                rule(2, FlatAction::Allow, 0, vec![], SpanSet::full()),
            ],
            groups: vec![GroupEnd::Deny(100)],
            default_rule: 999,
            open_end: false,
        };
        let c = check_all(
            &spec,
            &[
                flow(0x0a01_0001, 6, 22),
                flow(0x0b01_0001, 6, 22),
                flow(0x0b01_0001, 6, 23),
                flow(0x0a01_0001, 6, 23),
            ],
        );
        assert_eq!(c.rows, vec![None, Some(1)], "{c:#?}");
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
            open_end: false,
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

    #[test]
    fn nested_prefixes_become_steps() {
        let steps = prefixes_to_steps(&[
            (Net4::ALL, 0),
            (Net4::new(0x0a00_0000, 8), 1),
            (Net4::new(0x0a01_0000, 16), 2),
            (Net4::new(0x0aff_ff00, 24), 3),
            (Net4::new(0xffff_ffff, 32), 4),
        ]);
        assert_eq!(
            steps,
            vec![
                (0, 0),
                (0x0a00_0000, 1),
                (0x0a01_0000, 2),
                (0x0a02_0000, 1),
                (0x0aff_ff00, 3),
                (0x0b00_0000, 0),
                (0xffff_ffff, 4),
            ]
        );
    }

    /// Random rulesets against the reference evaluator.
    #[test]
    fn compiled_functions_agree_with_the_ordered_rules() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let addrs: Vec<u32> = (0..8).map(|i| 0x0a00_0000 | (i << 20) | (i << 4)).collect();
        // One memo across all the rulesets, as a long-running reconciler keeps it: what it
        // remembers of earlier ones must never change what a compile says.
        let mut memo = Memo::default();
        // And one store of trie nodes: an encode through it lays out the cells a fresh one does.
        let mut nodes = super::super::tables::Nodes::default();
        let encode_both = |c: &Compiled, nodes: &mut super::super::tables::Nodes, round: usize| {
            assert_eq!(
                super::super::tables::encode_with(c, nodes),
                super::super::tables::encode(c),
                "round {round}: cells through a warm store"
            );
        };
        for round in 0..400 {
            let nsets = 1 + rnd(4) as usize;
            let sets: Vec<Vec<Net4>> = (0..nsets)
                .map(|_| {
                    (0..1 + rnd(3))
                        .map(|_| {
                            Net4::new(
                                addrs[rnd(8) as usize],
                                [0u8, 8, 12, 16, 24, 28, 32][rnd(7) as usize],
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
                for _ in 0..rnd(6) {
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
                // Untracked and pre-DNAT rulesets leave what they do not decide to the next
                // stage.
                open_end: rnd(3) == 0,
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
            let fresh = check_all(&spec, &flows);
            assert_eq!(compile_with(&spec, &mut memo), Ok(fresh.clone()));
            encode_both(&fresh, &mut nodes, round);
            // The same rules one step later in the list (the positions shift, the meaning not).
            let mut shifted = spec.clone();
            shifted.rules.insert(
                0,
                rule(
                    77,
                    FlatAction::Log,
                    0,
                    vec![],
                    SpanSet::from_spans([(0, 0)]),
                ),
            );
            let shifted_fresh = compile(&shifted);
            assert_eq!(
                compile_with(&shifted, &mut memo),
                shifted_fresh,
                "round {round}"
            );
            encode_both(&shifted_fresh.expect("compiles"), &mut nodes, round);
            // Two neighbours swapped: the same rules, another order, maybe another meaning.
            if spec.rules.len() >= 2 {
                let mut swapped = spec.clone();
                let i = rnd(spec.rules.len() as u64 - 1) as usize;
                if swapped.rules[i].group == swapped.rules[i + 1].group {
                    swapped.rules.swap(i, i + 1);
                    assert_eq!(compile_with(&swapped, &mut memo), compile(&swapped));
                }
            }
            if round % 10 == 0 {
                memo.sweep();
                nodes.sweep();
            }
        }
    }
}
