//! A compiled ruleset as the kernel holds it: one array of 64-byte cells, written once into
//! an array map of its own and found through weft_pol_rs under the ruleset's id (see
//! bpf-src/include/weft_maps.h for the layout, policy.h for the lookup).
//!
//! Every step function becomes a trie of 16-way nodes, one node per cell: a lookup reads at
//! most one node per 4 bits of its key (8 for an address, 6 for a protocol and port), however
//! many rules, prefixes or port boundaries the ruleset has. Identical nodes are stored once,
//! so a range of ports with one verdict, or the same function in two classes, costs nothing
//! twice. Cell 0 is the header; the row, background and verdict tables follow the nodes.
//!
//! `decode` reads the cells back into the compiled form, and `lookup` walks them as the
//! kernel does, so tests and `weft` tooling see what the kernel sees.

use std::collections::HashMap;

use super::classify::{self, Compiled, Decision, Steps, PROTO_PORT_BITS, RS_F_CTX};
use super::flat::{Flow, Verdict};
use super::fxhash::FxHashMap;

/// One cell: a trie node (16 entries) or 16 words of a table.
pub type Cell = [u32; CELL_WORDS];
// The layout's numbers, generated from weft_maps.h (`crate::abi`, WEFT_POL_*):
// - CELL_WORDS: words in a cell; STRIDE: the bits a node consumes, 16 entries, one cell.
//   (Wider nodes, 256 entries in 16 cells for the first 8 or 16 bits, measured no faster: a
//   walk's cost is mostly its fixed steps.)
// - LEAF: an entry with this bit is a leaf with the other 31 bits as its value; otherwise it is
//   the index of the node's cell.
// - H_*: header cell words. H_LOCALS: how many addresses the endpoint has; up to INLINE_LOCALS
//   of them follow from H_LOCAL0 on (then no local trie: a context lookup compares a few words
//   instead of walking 8 cells).
// - MAGIC: "wpl1", the layout this code writes and reads.
// - a verdict's two words: action (ACT_ALLOW) | flags (VERDICT_F_LOG, VERDICT_F_NO_MATCH) << 8,
//   then the rule id.
pub use crate::abi::{
    ACT_ALLOW, POL_CELL_WORDS as CELL_WORDS, POL_H_ADDR_ROOT as H_ADDR_ROOT,
    POL_H_BACKGROUND as H_BACKGROUND, POL_H_CELLS as H_CELLS, POL_H_CONTEXTS as H_CONTEXTS,
    POL_H_CTX_ROOTS as H_CTX_ROOTS, POL_H_FLAGS as H_FLAGS, POL_H_ID as H_ID,
    POL_H_LOCAL0 as H_LOCAL0, POL_H_LOCALS as H_LOCALS, POL_H_LOCAL_ROOT as H_LOCAL_ROOT,
    POL_H_MAGIC as H_MAGIC, POL_H_ROWS as H_ROWS, POL_H_VERDICTS as H_VERDICTS,
    POL_INLINE_LOCALS as INLINE_LOCALS, POL_LEAF as LEAF, POL_MAGIC as MAGIC, POL_STRIDE as STRIDE,
    VERDICT_F_LOG, VERDICT_F_NO_MATCH,
};

/// The cells of one ruleset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cells(pub Vec<Cell>);

impl Cells {
    pub fn id(&self) -> u32 {
        self.0[0][H_ID]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The cells' words in order: the kernel array's contents in native byte order.
    pub fn words(&self) -> &[u32] {
        self.0.as_flattened()
    }

    /// The bytes of the cells, as the kernel array holds them.
    pub fn as_bytes(&self) -> Vec<u8> {
        self.0
            .iter()
            .flat_map(|c| c.iter().flat_map(|w| w.to_ne_bytes()))
            .collect()
    }

    pub fn from_bytes(b: &[u8]) -> Option<Cells> {
        if b.len() % (4 * CELL_WORDS) != 0 {
            return None;
        }
        Some(Cells(
            b.chunks(4 * CELL_WORDS)
                .map(|c| {
                    let mut cell = [0u32; CELL_WORDS];
                    for (w, bytes) in cell.iter_mut().zip(c.chunks(4)) {
                        *w = u32::from_ne_bytes(bytes.try_into().expect("4 bytes"));
                    }
                    cell
                })
                .collect(),
        ))
    }

    fn word(&self, i: u32) -> Option<u32> {
        let i = i as usize;
        self.0.get(i / CELL_WORDS).map(|c| c[i % CELL_WORDS])
    }
}

/// Trie nodes by content, kept from one encode to the next (in `policy::Cache`), with the
/// tries and overlays built from them by what they were built from: after a small change,
/// only the functions it touched are built again. A node's children are named by their place
/// in this store, not in any ruleset's cells; `Layout` gives each ruleset its own cells. As
/// node content here and in the cells correspond one to one (children are distinct exactly
/// when their contents are), laying out what the store holds gives the very cells a fresh
/// encode would, whatever the store remembers.
#[derive(Clone, Default)]
pub struct Nodes {
    store: Vec<Cell>,
    index: FxHashMap<Cell, u32>,
    /// (bits, steps) -> root entry.
    tries: FxHashMap<u128, (u32, bool)>,
    /// (class function's payload steps, background entry) -> root entry.
    overlays: FxHashMap<(u128, u32), (u32, bool)>,
    /// The store's length after the last collection: it is collected again when it doubles.
    collected: usize,
}

/// A 128-bit name for steps (two independent 64-bit streams: collisions need not be
/// considered), as classify names functions.
fn steps_key<V: Copy>(bits: u32, steps: &[(u64, V)], value: impl Fn(V) -> u64) -> u128 {
    let (mut a, mut b) = (0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344u64);
    let mut add = |w: u64| {
        a = (a.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        b = (b.rotate_left(7) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    };
    add(u64::from(bits));
    add(steps.len() as u64);
    for (start, v) in steps {
        add(*start);
        add(value(*v));
    }
    u128::from(a) << 64 | u128::from(b)
}

impl Nodes {
    /// The trie of `steps` over a `bits`-bit space: its root entry.
    fn trie(&mut self, steps: &[(u64, u32)], bits: u32) -> u32 {
        let key = steps_key(bits, steps, u64::from);
        if let Some((e, used)) = self.tries.get_mut(&key) {
            *used = true;
            return *e;
        }
        let e = self.node(steps, 0, bits);
        self.tries.insert(key, (e, true));
        e
    }

    /// The trie of class function `f` laid over the background entry `bg` (see `overlay_at`).
    fn overlay(&mut self, f: &[(u64, Option<u32>)], bg: u32, bits: u32) -> u32 {
        let key = (
            steps_key(bits, f, |v: Option<u32>| v.map_or(u64::MAX, u64::from)),
            bg,
        );
        if let Some((e, used)) = self.overlays.get_mut(&key) {
            *used = true;
            return *e;
        }
        let e = self.overlay_at(f, bg, 0, bits);
        self.overlays.insert(key, (e, true));
        e
    }

    /// The entry for `[base, base + 2^bits)`, where `w` holds the steps that reach into it
    /// (the first holds at `base`).
    fn node(&mut self, w: &[(u64, u32)], base: u64, bits: u32) -> u32 {
        if w.len() == 1 {
            debug_assert!(w[0].1 & LEAF == 0);
            return LEAF | w[0].1;
        }
        let child = bits - STRIDE;
        let mut cell = [0u32; CELL_WORDS];
        let mut j = 0;
        for (i, e) in cell.iter_mut().enumerate() {
            let (cw, cb) = window(w, &mut j, base + ((i as u64) << child), child);
            *e = self.node(cw, cb, child);
        }
        self.intern(cell)
    }

    /// The trie of a class function `f` (values, or None where it defers) laid over the
    /// background trie whose entry for the same range is `bg`: where `f` defers on a whole
    /// node, the entry is the background's own (shared, not copied), so a lookup needs one
    /// walk and the class costs only its own nodes. `f` is a window as in `node`.
    fn overlay_at(&mut self, f: &[(u64, Option<u32>)], bg: u32, base: u64, bits: u32) -> u32 {
        if f.len() == 1 {
            return match f[0].1 {
                Some(v) => LEAF | v,
                None => bg,
            };
        }
        let child = bits - STRIDE;
        let mut cell = [0u32; CELL_WORDS];
        let mut j = 0;
        for (i, e) in cell.iter_mut().enumerate() {
            let cb = base + ((i as u64) << child);
            let (fw, _) = window(f, &mut j, cb, child);
            let bg_child = if bg & LEAF != 0 {
                bg
            } else {
                self.store[bg as usize][i]
            };
            *e = self.overlay_at(fw, bg_child, cb, child);
        }
        self.intern(cell)
    }

    /// The store index of the node `cell`, stored once.
    fn intern(&mut self, cell: Cell) -> u32 {
        if let Some(&i) = self.index.get(&cell) {
            return i;
        }
        let i = self.store.len() as u32;
        self.store.push(cell);
        self.index.insert(cell, i);
        i
    }

    /// Forgets the tries and overlays no encode used since the last sweep, and, when the
    /// store has doubled since it was last collected, the nodes none of the rest reaches.
    pub fn sweep(&mut self) {
        self.tries.retain(|_, (_, used)| std::mem::take(used));
        self.overlays.retain(|_, (_, used)| std::mem::take(used));
        if self.store.len() <= 2 * self.collected.max(1024) {
            return;
        }
        // Children before parents, as stored: new places keep that order.
        let mut live = vec![false; self.store.len()];
        let mut stack: Vec<u32> = self
            .tries
            .values()
            .chain(self.overlays.values())
            .map(|(e, _)| *e)
            .filter(|e| e & LEAF == 0)
            .collect();
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut live[e as usize], true) {
                continue;
            }
            stack.extend(
                self.store[e as usize]
                    .iter()
                    .copied()
                    .filter(|c| c & LEAF == 0),
            );
        }
        let mut place = vec![u32::MAX; self.store.len()];
        let mut store = Vec::new();
        for (i, cell) in self.store.iter().enumerate() {
            if live[i] {
                place[i] = store.len() as u32;
                store.push(cell.map(|c| if c & LEAF != 0 { c } else { place[c as usize] }));
            }
        }
        let moved = |e: u32| if e & LEAF != 0 { e } else { place[e as usize] };
        for (e, _) in self.tries.values_mut().chain(self.overlays.values_mut()) {
            *e = moved(*e);
        }
        self.index = store
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, i as u32))
            .collect();
        self.store = store;
        self.collected = self.store.len();
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// One ruleset's cells, laid out from the store: nodes in the order a walk of the tries meets
/// them (children first, then their parent), each once.
struct Layout<'a> {
    store: &'a [Cell],
    cells: Vec<Cell>,
    /// Store index -> cell index.
    at: FxHashMap<u32, u32>,
}

impl Layout<'_> {
    /// The cells' entry for the store's entry `e`.
    fn emit(&mut self, e: u32) -> u32 {
        if e & LEAF != 0 {
            return e;
        }
        if let Some(&i) = self.at.get(&e) {
            return i;
        }
        let mut cell = self.store[e as usize];
        for c in &mut cell {
            *c = self.emit(*c);
        }
        let i = self.cells.len() as u32;
        self.cells.push(cell);
        self.at.insert(e, i);
        i
    }

    /// Appends `words` from a fresh cell on; returns the word index of the first.
    fn table(&mut self, words: &[u32]) -> u32 {
        let at = (self.cells.len() * CELL_WORDS) as u32;
        for chunk in words.chunks(CELL_WORDS) {
            let mut cell = [0u32; CELL_WORDS];
            cell[..chunk.len()].copy_from_slice(chunk);
            self.cells.push(cell);
        }
        at
    }
}

/// The steps of `w` that reach into `[base, base + 2^bits)`, moving `j` (the index of the step
/// holding at the previous child's base) forward; returns them with `base`.
fn window<'a, V>(w: &'a [(u64, V)], j: &mut usize, base: u64, bits: u32) -> (&'a [(u64, V)], u64) {
    while *j + 1 < w.len() && w[*j + 1].0 <= base {
        *j += 1;
    }
    let end = base + (1u64 << bits);
    let mut k = *j + 1;
    while k < w.len() && w[k].0 < end {
        k += 1;
    }
    (&w[*j..k], base)
}

fn verdict_words(v: &Verdict) -> [u32; 2] {
    [
        (u32::from(v.allow) * ACT_ALLOW)
            | ((if v.log { VERDICT_F_LOG } else { 0 }) << 8)
            | ((if v.no_match { VERDICT_F_NO_MATCH } else { 0 }) << 8),
        v.rule_id,
    ]
}

/// The local addresses as a step function: each of `locals` to its index, others to
/// `locals.len()`.
fn local_steps(locals: &[u32]) -> Steps<u32> {
    let other = locals.len() as u32;
    let mut sorted: Vec<(u32, u32)> = locals
        .iter()
        .enumerate()
        .map(|(i, &a)| (a, i as u32))
        .collect();
    sorted.sort_unstable();
    sorted.dedup_by_key(|(a, _)| *a);
    let mut out: Steps<u32> = vec![(0, other)];
    for (a, i) in sorted {
        let a = u64::from(a);
        if out.last().is_some_and(|l| l.0 == a) {
            out.pop();
        }
        out.push((a, i));
        if a < u64::from(u32::MAX) {
            out.push((a + 1, other));
        }
    }
    out.dedup_by(|b, a| a.1 == b.1);
    out
}

/// Encodes a compiled ruleset; the id in its header is a hash of everything else.
pub fn encode(c: &Compiled) -> Cells {
    encode_with(c, &mut Nodes::default())
}

/// As `encode`, building only the tries `nodes` does not hold yet (the cells are the same).
pub fn encode_with(c: &Compiled, nodes: &mut Nodes) -> Cells {
    let b = nodes;
    let mut verdict_index: HashMap<Verdict, u32> = HashMap::new();
    let mut verdicts: Vec<u32> = Vec::new();
    let mut payload = |v: &Verdict| {
        *verdict_index.entry(*v).or_insert_with(|| {
            verdicts.extend(verdict_words(v));
            (verdicts.len() / 2 - 1) as u32
        })
    };
    let addr = b.trie(&c.addr, 32);
    let bits = u32::from(PROTO_PORT_BITS);
    // Backgrounds first: class functions are laid over their context's background.
    let mut payloads: Vec<Steps<Option<u32>>> = c
        .functions
        .iter()
        .map(|f| {
            f.iter()
                .map(|(s, d)| {
                    (
                        *s,
                        match d {
                            Decision::Defer => None,
                            Decision::Verdict(v) => Some(payload(v)),
                        },
                    )
                })
                .collect()
        })
        .collect();
    for f in &mut payloads {
        f.dedup_by(|b, a| a.1 == b.1);
    }
    let solid = |f: &Steps<Option<u32>>| -> Steps<u32> {
        f.iter()
            .map(|(s, v)| (*s, v.expect("a background never defers")))
            .collect()
    };
    let bg_roots: Vec<u32> = c
        .background
        .iter()
        .map(|&f| b.trie(&solid(&payloads[f as usize]), bits))
        .collect();
    let contexts = usize::from(c.contexts.max(1));
    let mut laid: FxHashMap<(u32, usize), u32> = FxHashMap::default();
    let rows: Vec<u32> = c
        .rows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let cc = i % contexts;
            match f {
                None => bg_roots[cc],
                Some(f) => *laid
                    .entry((*f, cc))
                    .or_insert_with(|| b.overlay(&payloads[*f as usize], bg_roots[cc], bits)),
            }
        })
        .collect();
    let (local_root, ctx_roots) = if c.flags & RS_F_CTX != 0 {
        let local = if c.locals.len() <= INLINE_LOCALS {
            LEAF | c.locals.len() as u32
        } else {
            b.trie(&local_steps(&c.locals), 32)
        };
        let ctx: Vec<u32> = c
            .ctx
            .iter()
            .map(|s| {
                let steps: Steps<u32> = s.iter().map(|(x, v)| (*x, u32::from(*v))).collect();
                b.trie(&steps, u32::from(PROTO_PORT_BITS))
            })
            .collect();
        (local, ctx)
    } else {
        (LEAF, Vec::new())
    };
    // The cells, in the order a fresh builder would have made them: the address trie, the
    // backgrounds, the rows' overlays, the local and context tries, then the tables.
    let mut b = Layout {
        store: &b.store,
        cells: vec![[0; CELL_WORDS]],
        at: FxHashMap::default(),
    };
    let addr = b.emit(addr);
    let background: Vec<u32> = bg_roots.iter().map(|&e| b.emit(e)).collect();
    let rows: Vec<u32> = rows.iter().map(|&e| b.emit(e)).collect();
    let local_root = b.emit(local_root);
    let ctx_roots: Vec<u32> = ctx_roots.iter().map(|&e| b.emit(e)).collect();
    let ctx_at = b.table(&ctx_roots);
    let rows_at = b.table(&rows);
    let bg_at = b.table(&background);
    // Verdicts go in pairs of words that never straddle a cell (the table starts a cell).
    let verdicts_at = b.table(&verdicts);
    let n = b.cells.len() as u32;
    let h = &mut b.cells[0];
    h[H_MAGIC] = MAGIC;
    h[H_FLAGS] = c.flags;
    h[H_CONTEXTS] = u32::from(c.contexts);
    h[H_ADDR_ROOT] = addr;
    h[H_LOCAL_ROOT] = local_root;
    h[H_LOCALS] = c.locals.len() as u32;
    if c.locals.len() <= INLINE_LOCALS {
        h[H_LOCAL0..H_LOCAL0 + c.locals.len()].copy_from_slice(&c.locals);
    }
    h[H_CTX_ROOTS] = ctx_at;
    h[H_ROWS] = rows_at;
    h[H_BACKGROUND] = bg_at;
    h[H_VERDICTS] = verdicts_at;
    h[H_CELLS] = n;
    let mut cells = Cells(b.cells);
    cells.0[0][H_ID] = content_id(&cells);
    cells
}

/// A ruleset's id: a hash of its cells (the id word itself aside), so equal policy gets the
/// same id and is shared, a changed one a new id. Never 0 (the programs read 0 as "no
/// ruleset").
fn content_id(cells: &Cells) -> u32 {
    // FNV-1a.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, cell) in cells.0.iter().enumerate() {
        for (j, w) in cell.iter().enumerate() {
            let w = if i == 0 && j == H_ID { 0 } else { *w };
            for byte in w.to_le_bytes() {
                h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    match (h ^ (h >> 32)) as u32 {
        0 => 1,
        id => id,
    }
}

pub fn ruleset_id(c: &Compiled) -> u32 {
    encode(c).id()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ruleset cells: {0}")]
    Malformed(&'static str),
}

use DecodeError::Malformed;

/// The value of the trie at `entry` for `key` (a `bits`-bit value), as the kernel finds it.
pub fn walk(cells: &Cells, mut entry: u32, key: u64, bits: u32) -> Result<u32, DecodeError> {
    let mut left = bits;
    loop {
        if entry & LEAF != 0 {
            return Ok(entry & !LEAF);
        }
        if left < STRIDE {
            return Err(Malformed("a trie deeper than its key"));
        }
        left -= STRIDE;
        let i = ((key >> left) & 0xf) as u32;
        entry = cells
            .word(entry * CELL_WORDS as u32 + i)
            .ok_or(Malformed("a node beyond the cells"))?;
    }
}

/// Every leaf of the trie at `entry` in order, as a step function over `bits` bits.
fn trie_steps(cells: &Cells, entry: u32, bits: u32) -> Result<Steps<u32>, DecodeError> {
    fn rec(
        cells: &Cells,
        entry: u32,
        base: u64,
        bits: u32,
        out: &mut Steps<u32>,
    ) -> Result<(), DecodeError> {
        if entry & LEAF != 0 {
            let v = entry & !LEAF;
            if out.last().map(|l| l.1) != Some(v) {
                out.push((base, v));
            }
            return Ok(());
        }
        if bits < STRIDE {
            return Err(Malformed("a trie deeper than its key"));
        }
        let child = bits - STRIDE;
        for i in 0..1u32 << STRIDE {
            let e = cells
                .word(entry * CELL_WORDS as u32 + i)
                .ok_or(Malformed("a node beyond the cells"))?;
            rec(cells, e, base + (u64::from(i) << child), child, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    rec(cells, entry, 0, bits, &mut out)?;
    Ok(out)
}

struct Header {
    flags: u32,
    locals: u32,
    inline: [u32; INLINE_LOCALS],
    contexts: u32,
    addr: u32,
    local: u32,
    ctx_at: u32,
    rows_at: u32,
    bg_at: u32,
    verdicts_at: u32,
}

fn header(cells: &Cells) -> Result<Header, DecodeError> {
    let h = cells.0.first().ok_or(Malformed("no header"))?;
    if h[H_MAGIC] != MAGIC {
        return Err(Malformed("not a weft ruleset (bad magic)"));
    }
    if h[H_CELLS] as usize != cells.len() {
        return Err(Malformed("the header's cell count is not the map's"));
    }
    let mut inline = [0; INLINE_LOCALS];
    inline.copy_from_slice(&h[H_LOCAL0..H_LOCAL0 + INLINE_LOCALS]);
    Ok(Header {
        flags: h[H_FLAGS],
        locals: h[H_LOCALS],
        inline,
        contexts: h[H_CONTEXTS].max(1),
        addr: h[H_ADDR_ROOT],
        local: h[H_LOCAL_ROOT],
        ctx_at: h[H_CTX_ROOTS],
        rows_at: h[H_ROWS],
        bg_at: h[H_BACKGROUND],
        verdicts_at: h[H_VERDICTS],
    })
}

fn verdict(cells: &Cells, h: &Header, i: u32) -> Result<Verdict, DecodeError> {
    let at = h.verdicts_at + 2 * i;
    let (a, id) = (cells.word(at), cells.word(at + 1));
    match (a, id) {
        (Some(a), Some(rule_id)) => Ok(Verdict {
            allow: a & 0xff == ACT_ALLOW,
            no_match: (a >> 8) & VERDICT_F_NO_MATCH != 0,
            log: (a >> 8) & VERDICT_F_LOG != 0,
            rule_id,
        }),
        _ => Err(Malformed("a verdict beyond the cells")),
    }
}

/// Decides `flow` with the cells, step by step as bpf-src/include/policy.h does.
pub fn lookup(cells: &Cells, local_addr: u32, flow: &Flow) -> Result<Verdict, DecodeError> {
    let h = header(cells)?;
    let word = |i: u32| cells.word(i).ok_or(Malformed("a table beyond the cells"));
    let aclass = walk(cells, h.addr, u64::from(flow.peer), 32)?;
    let mut cclass = 0;
    if h.flags & RS_F_CTX != 0 {
        let local = if h.locals as usize <= INLINE_LOCALS {
            (0..h.locals)
                .find(|&i| h.inline[i as usize] == local_addr)
                .unwrap_or(h.locals)
        } else {
            walk(cells, h.local, u64::from(local_addr), 32)?
        };
        cclass = walk(
            cells,
            word(h.ctx_at + local)?,
            flow.sport,
            u32::from(PROTO_PORT_BITS),
        )?;
    }
    let row = word(h.rows_at + aclass * h.contexts + cclass)?;
    let v = walk(cells, row, flow.dport, u32::from(PROTO_PORT_BITS))?;
    verdict(cells, &h, v)
}

/// Reads cells back into the compiled form `encode` was given.
pub fn decode(cells: &Cells) -> Result<Compiled, DecodeError> {
    let h = header(cells)?;
    let word = |i: u32| cells.word(i).ok_or(Malformed("a table beyond the cells"));
    let bits = u32::from(PROTO_PORT_BITS);
    let addr = trie_steps(cells, h.addr, 32)?;
    let classes = addr.iter().map(|s| s.1).max().map_or(0, |m| m + 1);
    let mut out = Compiled {
        flags: h.flags,
        addr: addr.iter().map(|(s, v)| (*s, *v)).collect(),
        contexts: h.contexts as u16,
        ..Default::default()
    };
    if h.flags & RS_F_CTX != 0 {
        if h.locals as usize <= INLINE_LOCALS {
            out.locals = h.inline[..h.locals as usize].to_vec();
        } else {
            let locals = trie_steps(cells, h.local, 32)?;
            let other = locals[0].1;
            let mut by_index: Vec<(u32, u32)> = locals
                .iter()
                .filter(|(_, i)| *i != other)
                .map(|(a, i)| (*i, *a as u32))
                .collect();
            by_index.sort_unstable();
            out.locals = by_index.into_iter().map(|(_, a)| a).collect();
        }
        for l in 0..=out.locals.len() as u32 {
            let steps = trie_steps(cells, word(h.ctx_at + l)?, bits)?;
            out.ctx
                .push(steps.into_iter().map(|(s, v)| (s, v as u16)).collect());
        }
    }
    // Functions numbered as `compile` numbers them: backgrounds first, then rows in order. A
    // row laid over its background defers exactly where it agrees with it.
    let decided = |root: u32| -> Result<Steps<Verdict>, DecodeError> {
        trie_steps(cells, root, bits)?
            .into_iter()
            .map(|(s, v)| Ok((s, verdict(cells, &h, v)?)))
            .collect()
    };
    let mut index: HashMap<Steps<Decision>, u32> = HashMap::new();
    let mut intern = |steps: Steps<Decision>, out: &mut Compiled| -> u32 {
        *index.entry(steps.clone()).or_insert_with(|| {
            out.functions.push(steps);
            (out.functions.len() - 1) as u32
        })
    };
    let mut bg_roots = Vec::new();
    let mut bg_steps = Vec::new();
    for c in 0..h.contexts {
        let root = word(h.bg_at + c)?;
        let steps = decided(root)?;
        let f = intern(
            steps
                .iter()
                .map(|(s, v)| (*s, Decision::Verdict(*v)))
                .collect(),
            &mut out,
        );
        out.background.push(f);
        bg_roots.push(root);
        bg_steps.push(steps);
    }
    for i in 0..classes * h.contexts {
        let cc = (i % h.contexts) as usize;
        let root = word(h.rows_at + i)?;
        if root == bg_roots[cc] {
            out.rows.push(None);
            continue;
        }
        let own = decided(root)?;
        let bg = &bg_steps[cc];
        // Cut at both functions' boundaries; defer where they agree.
        let mut cuts: Vec<u64> = own.iter().chain(bg.iter()).map(|s| s.0).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut steps: Steps<Decision> = Vec::new();
        for x in cuts {
            let v = classify::step_at(&own, x);
            let d = if v == classify::step_at(bg, x) {
                Decision::Defer
            } else {
                Decision::Verdict(v)
            };
            if steps.last().map(|l| l.1) != Some(d) {
                steps.push((x, d));
            }
        }
        let f = intern(steps, &mut out);
        out.rows.push(Some(f));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::classify::{self, Decision};
    use super::super::flat::{
        proto_port, AddrTerm, FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, SpanSet,
    };
    use super::*;

    #[test]
    fn a_trie_answers_like_its_step_function() {
        let mut b = Nodes::default();
        let steps: Steps<u32> = vec![(0, 1), (80, 2), (81, 1), (30000, 3), (32768, 1)];
        let root = b.trie(&steps, 24);
        // The store is cells whose children are its own indexes.
        let cells = Cells(b.store.clone());
        for x in [0u64, 79, 80, 81, 29999, 30000, 32767, 32768, (1 << 24) - 1] {
            assert_eq!(
                walk(&cells, root, x, 24),
                Ok(classify::step_at(&steps, x)),
                "{x}"
            );
        }
        assert_eq!(trie_steps(&cells, root, 24), Ok(steps));
        // A constant needs no node at all.
        assert_eq!(b_constant(), LEAF | 7);
    }

    fn b_constant() -> u32 {
        let mut b = Nodes::default();
        b.trie(&[(0, 7)], 32)
    }

    #[test]
    fn identical_nodes_are_stored_once() {
        let mut b = Nodes::default();
        // The same single port in two functions, and in two protocols of one function.
        let one = |p: u64| vec![(0, 0), (p, 1), (p + 1, 0)];
        let r1 = b.trie(&one(80), 24);
        let r2 = b.trie(&one(80), 24);
        assert_eq!(r1, r2);
        let before = b.store.len();
        b.trie(
            &[
                (0, 0),
                (proto_port(6, 80), 1),
                (proto_port(6, 81), 0),
                (proto_port(17, 80), 1),
                (proto_port(17, 81), 0),
            ],
            24,
        );
        // Only the nodes above the ports are new (the root, and one per protocol's high
        // nibble: 6 is 0x06, 17 is 0x11); below them the port's path is shared.
        assert_eq!(b.store.len() - before, 3, "{:?}", &b.store[before..]);
    }

    #[test]
    fn local_addresses_as_steps() {
        assert_eq!(
            local_steps(&[10, 5]),
            vec![(0, 2), (5, 1), (6, 2), (10, 0), (11, 2)]
        );
        assert_eq!(local_steps(&[]), vec![(0, 0)]);
        assert_eq!(
            local_steps(&[0, u32::MAX]),
            vec![(0, 0), (1, 2), (u64::from(u32::MAX), 1)]
        );
    }

    fn spec() -> RulesetSpec {
        let tcp = |lo: u16, hi: u16| SpanSet::from_spans([(proto_port(6, lo), proto_port(6, hi))]);
        let mut sport_rule = FlatRule {
            id: 3,
            action: FlatAction::Allow,
            group: 0,
            peer: vec![],
            local: vec![true, false],
            sport: tcp(1024, 65535),
            dport: tcp(22, 22),
        };
        sport_rule.local = vec![true, false];
        RulesetSpec {
            sets: vec![vec![Net4::new(0x0a00_0000, 8)]],
            locals: vec![0x0a41_0002],
            rules: vec![
                FlatRule {
                    id: 1,
                    action: FlatAction::Allow,
                    group: 0,
                    peer: vec![AddrTerm {
                        set: 0,
                        member: true,
                    }],
                    local: vec![true, true],
                    sport: SpanSet::full(),
                    dport: tcp(80, 80).union(&tcp(8000, 8099)),
                },
                FlatRule {
                    id: 2,
                    action: FlatAction::Log,
                    group: 0,
                    peer: vec![],
                    local: vec![true, true],
                    sport: SpanSet::full(),
                    dport: SpanSet::full(),
                },
                sport_rule,
            ],
            groups: vec![GroupEnd::Deny(100)],
            default_rule: 999,
            open_end: false,
        }
    }

    #[test]
    fn cells_decode_to_what_was_encoded_and_answer_like_it() {
        let spec = spec();
        let c = classify::compile(&spec).expect("compiles");
        assert_eq!(c.flags, RS_F_CTX);
        let cells = encode(&c);
        assert_eq!(decode(&cells), Ok(c.clone()));
        assert_eq!(Cells::from_bytes(&cells.as_bytes()), Some(cells.clone()));
        for peer in [0x0a00_0001u32, 0x0b00_0001] {
            for (local, local_addr) in [(0usize, 0x0a41_0002u32), (1, 0x0a41_0003)] {
                for sport in [80u16, 1024] {
                    for dport in [22u16, 80, 81, 8050] {
                        let flow = Flow {
                            peer,
                            local,
                            sport: proto_port(6, sport),
                            dport: proto_port(6, dport),
                        };
                        let want = spec.evaluate(&flow);
                        assert_eq!(classify::lookup(&c, &flow), want, "{flow:?}");
                        assert_eq!(lookup(&cells, local_addr, &flow), Ok(want), "{flow:?}");
                    }
                }
            }
        }
        assert!(c
            .functions
            .iter()
            .flatten()
            .any(|(_, d)| *d == Decision::Defer));
    }

    #[test]
    fn many_local_addresses_take_the_local_trie() {
        let mut spec = spec();
        spec.locals = (0..6).map(|i| 0x0a41_0010 + i).collect();
        for r in &mut spec.rules {
            let other = r.local[1];
            let own = r.local[0];
            r.local = (0..6).map(|i| own && i % 2 == 0).collect();
            r.local.push(other);
        }
        let c = classify::compile(&spec).expect("compiles");
        let cells = encode(&c);
        assert_eq!(cells.0[0][H_LOCALS], 6);
        assert_ne!(cells.0[0][H_LOCAL_ROOT] & LEAF, LEAF, "a trie, not inline");
        assert_eq!(decode(&cells), Ok(c.clone()));
        for local in 0..=6usize {
            let addr = spec.locals.get(local).copied().unwrap_or(0x0a41_00ff);
            for sport in [80u16, 1024] {
                let flow = Flow {
                    peer: 0x0b00_0001,
                    local,
                    sport: proto_port(6, sport),
                    dport: proto_port(6, 22),
                };
                assert_eq!(
                    lookup(&cells, addr, &flow),
                    Ok(spec.evaluate(&flow)),
                    "{flow:?}"
                );
            }
        }
    }

    #[test]
    fn a_warm_store_lays_out_the_cells_of_a_fresh_encode() {
        // Rulesets that differ in one rule's ports, one after another through one store, as a
        // running reconciler encodes them; sweeping after each, as it does, so that the store
        // is collected (and its nodes renumbered) now and then.
        let mut nodes = Nodes::default();
        let mut biggest = 0;
        for round in 0..400u16 {
            let mut s = spec();
            let p = 100 + round * 37;
            s.rules[0].dport =
                SpanSet::from_spans([(proto_port(6, p), proto_port(6, p + round % 5))]);
            s.sets[0].push(Net4::new(0x0b00_0000 | u32::from(round) << 8, 24));
            let c = classify::compile(&s).expect("compiles");
            assert_eq!(encode_with(&c, &mut nodes), encode(&c), "round {round}");
            // The same again hits the remembered tries.
            assert_eq!(
                encode_with(&c, &mut nodes),
                encode(&c),
                "round {round}, again"
            );
            nodes.sweep();
            biggest = biggest.max(nodes.len());
        }
        assert!(
            nodes.collected > 0 && biggest < 4 * 1024,
            "collected: {}, the store peaked at {biggest}",
            nodes.collected
        );
    }

    #[test]
    fn the_id_names_the_content() {
        let c = classify::compile(&spec()).expect("compiles");
        let a = encode(&c);
        assert_eq!(encode(&c), a, "deterministic");
        let mut other = spec();
        other.rules[0].dport = SpanSet::from_spans([(proto_port(6, 81), proto_port(6, 81))]);
        let b = encode(&classify::compile(&other).expect("compiles"));
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), 0);
    }

    #[test]
    fn malformed_cells_are_refused() {
        let c = classify::compile(&spec()).expect("compiles");
        let mut cells = encode(&c);
        cells.0[0][H_MAGIC] = 0;
        assert!(decode(&cells).is_err());
        let mut cells = encode(&c);
        cells.0.pop();
        assert!(decode(&cells).is_err());
    }
}
