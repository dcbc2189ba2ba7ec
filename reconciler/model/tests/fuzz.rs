//! Generated-input tests of the parsers that read what users and git write: the YAML loader
//! (with its positions), the selector parser and the pcap-filter subset. Each feeds thousands
//! of inputs, some made from a grammar and some by mutating a corpus of valid and hostile
//! files, and holds each parser to properties that any input must keep: it answers (no panic),
//! an error points inside the file, a selector prints to a form that parses back to the same
//! meaning, and a filter parses the same way twice.
//!
//! Runs are bounded and seeded, so CI runs the same inputs every time and a failure names the
//! seed that reproduces it. `WEFT_FUZZ_RUNS=N` multiplies the runs (for a longer search by
//! hand); each test prints how many inputs it ran.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use weft_model::rng::Rng;
use weft_model::Selector;

/// How many times the default runs to make (`WEFT_FUZZ_RUNS`, default 1).
fn scale() -> usize {
    std::env::var("WEFT_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Runs `f` on every seed of `0..runs`, catching panics; fails with every seed that panicked
/// or broke a property, and the input it made.
fn fuzz(name: &str, runs: usize, mut f: impl FnMut(&mut Rng) -> Result<(), String>) {
    let mut failures = Vec::new();
    for seed in 0..runs as u64 {
        let mut r = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        match catch_unwind(AssertUnwindSafe(|| f(&mut r))) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("seed {seed}: {why}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("seed {seed}: panicked: {msg}"));
            }
        }
        if failures.len() >= 10 {
            break;
        }
    }
    eprintln!("fuzz {name}: {runs} inputs, {} failures", failures.len());
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

// ---- YAML ----------------------------------------------------------------------------------

/// Every YAML file of the repository's examples, and hand-picked hostile ones.
fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "examples/quickstart",
        "examples/services",
        "examples/broken",
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("an example directory")
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        for p in paths {
            files.push(std::fs::read_to_string(&p).expect("an example file"));
        }
    }
    files.extend(
        [
            "a: &x [1, 2]\nb: *x\n",
            "apiVersion: v1\nkind: List\nitems:\n  - kind: Namespace\n    apiVersion: v1\n    metadata: {name: x}\n",
            "---\n---\n...\n",
            "\u{feff}apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: tab\n",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector: \"((((a == 'b'))))\"\n",
            "key: |\n  block\n  scalar\nother: >-\n  folded\n",
            "? complex\n: key\n",
            "!!map {a: !!str 1}\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\rb: [\u{2028}c\n",
        ]
        .map(String::from),
    );
    // The hostile inputs of the hardening issue, small: aliases that multiply, a selector
    // nested past the limit, a long chain.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 8].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    files.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: bomb}}\nspec:\n  selector: all()\n  ingress:\n    - action: Allow\n      source:\n        nets: &n [{}]\n{bomb}",
        ["10.0.0.0/8"; 8].join(", ")
    ));
    files.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: deep}}\nspec:\n  selector: \"{}a == 'b'{}\"\n",
        "(".repeat(200),
        ")".repeat(200)
    ));
    files.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: long}}\nspec:\n  selector: \"{}\"\n",
        vec!["a == 'b'"; 2000].join(" || ")
    ));
    files
}

/// Pieces of YAML syntax a mutation inserts.
const YAML_BITS: &[&str] = &[
    "\r",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "&b [*a, *a, *a]",
    "((((",
    "))))",
    ":",
    ": ",
    "- ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "#",
    "'",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!t ",
    "---\n",
    "...\n",
    "? ",
    "|\n",
    ">-\n",
    "%",
    "@",
    "`",
    "\\",
    "\u{0}",
    "\u{feff}",
    "é",
    "0x1F",
    "1e9",
    "-0",
    ".inf",
    "~",
    "null",
    "true",
    "yes",
    "0o17",
    "1_000",
    "9223372036854775808",
    "kind: ",
    "apiVersion: v1\n",
    "metadata:\n  name: x\n",
    "spec:\n",
];

fn mutate(r: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + r.below(4) {
        let at = r.below(bytes.len() + 1);
        match r.below(5) {
            0 if !bytes.is_empty() => {
                let end = (at + 1 + r.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 if !bytes.is_empty() => {
                let i = r.below(bytes.len());
                bytes[i] = r.next_u64() as u8;
            }
            2 => {
                let end = (at + r.below(64)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                let to = r.below(bytes.len() + 1);
                bytes.splice(to..to, piece);
            }
            _ => {
                let bit = r.pick(YAML_BITS).as_bytes();
                bytes.splice(at..at, bit.iter().copied());
            }
        }
    }
    // The loader takes text: invalid UTF-8 is refused before it (by read_file), so keep the
    // mutation's valid part.
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_loader_answers_every_mutated_file_with_positions_inside_it() {
    let corpus = corpus();
    let mut loaded = 0;
    fuzz("yaml loader", 3_000 * scale(), |r| {
        let base = r.pick(&corpus).clone();
        let text = mutate(r, &base);
        // As an editor counts: lines end at line feeds.
        let lines = text.matches('\n').count() + 1;
        let r = weft_model::load_texts([("f.yaml", text.clone())]);
        if r.is_ok() {
            loaded += 1;
        }
        if let Err(d) = r {
            for diag in &d.0 {
                // The last line may be empty: a document cut short is reported where the text
                // ends.
                if diag.line == 0 || diag.line > lines || diag.column == 0 {
                    return Err(format!(
                        "position {}:{} outside a {lines}-line file: {diag}\n--- input ---\n{text}",
                        diag.line, diag.column
                    ));
                }
                if diag.message.is_empty() {
                    return Err(format!("an empty message at {diag}\n--- input ---\n{text}"));
                }
            }
        }
        Ok(())
    });
    // Some mutations keep the files valid: the loader's accepting paths are exercised too.
    eprintln!("fuzz yaml loader: {loaded} inputs loaded");
    assert!(loaded > 0);
}

// ---- Selectors -----------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "app",
    "tier",
    "projectcalico.org/namespace",
    "a.b/c-d_e",
    "x",
];
const VALUES: &[&str] = &["web", "db", "", "a b", "it's", "x"];

fn quoted(r: &mut Rng, v: &str) -> String {
    if v.contains('\'') || r.chance(30) {
        format!("\"{v}\"")
    } else {
        format!("'{v}'")
    }
}

/// A selector from the grammar, nested at most `depth` deep.
fn selector(r: &mut Rng, depth: usize) -> String {
    let leaf = |r: &mut Rng| -> String {
        let k = r.pick_copied(KEYS);
        let v = r.pick_copied(VALUES);
        let vq = quoted(r, v);
        let w = r.pick_copied(VALUES);
        let wq = quoted(r, w);
        match r.below(12) {
            0 => format!("{k} == {vq}"),
            1 => format!("{k} != {vq}"),
            2 => format!("has({k})"),
            3 => format!("!has({k})"),
            4 => format!("{k} in {{{vq}, {wq}}}"),
            5 => format!("{k} not in {{{vq}}}"),
            6 => "all()".into(),
            7 => "global()".into(),
            8 => format!("{k} contains {vq}"),
            9 => format!("{k} starts with {vq}"),
            10 => format!("{k} ends with {vq}"),
            _ => format!("{k}=={vq}"),
        }
    };
    if depth == 0 || r.chance(40) {
        return leaf(r);
    }
    match r.below(4) {
        0 => {
            let (a, b) = (selector(r, depth - 1), selector(r, depth - 1));
            format!("{a} && {b}")
        }
        1 => {
            let (a, b) = (selector(r, depth - 1), selector(r, depth - 1));
            format!("{a} || {b}")
        }
        2 => format!("!({})", selector(r, depth - 1)),
        _ => format!("({})", selector(r, depth - 1)),
    }
}

const SELECTOR_BITS: &[&str] = &[
    "(",
    ")",
    "!",
    "&&",
    "||",
    "==",
    "!=",
    "'",
    "\"",
    "{",
    "}",
    ",",
    " in ",
    " not in ",
    "has(",
    "all()",
    "global()",
    " ",
    "\\",
    "é",
    "\u{0}",
    "contains",
    "starts with",
];

fn labels(r: &mut Rng) -> BTreeMap<String, String> {
    (0..r.below(4))
        .map(|_| {
            (
                r.pick_copied(KEYS).to_string(),
                r.pick_copied(VALUES).to_string(),
            )
        })
        .collect()
}

#[test]
fn selectors_parse_or_refuse_and_print_back_to_the_same_meaning() {
    let mut accepted = 0;
    let runs = 20_000 * scale();
    fuzz("selector parser", runs, |r| {
        let depth = 1 + r.below(6);
        let mut text = match r.below(50) {
            // Nested past the limit: refused, not a stack overflow.
            0 => format!(
                "{}a == 'b'{}",
                "(".repeat(60 + r.below(40)),
                ")".repeat(100)
            ),
            1 => vec!["has(a)"; 1 + r.below(500)].join(" && "),
            _ => selector(r, depth),
        };
        if r.chance(50) {
            // Mutate: the parser must refuse what is not a selector without panicking.
            let mut chars: Vec<char> = text.chars().collect();
            for _ in 0..1 + r.below(3) {
                let at = r.below(chars.len() + 1);
                match r.below(3) {
                    0 if !chars.is_empty() => {
                        chars.remove(at.min(chars.len() - 1));
                    }
                    _ => {
                        let bit: Vec<char> = r.pick(SELECTOR_BITS).chars().collect();
                        chars.splice(at..at, bit);
                    }
                }
            }
            text = chars.into_iter().collect();
        }
        let Ok(s) = Selector::parse(&text) else {
            return Ok(());
        };
        accepted += 1;
        let printed = s.to_string();
        let again = Selector::parse(&printed)
            .map_err(|e| format!("{text:?} printed as {printed:?}, which does not parse: {e}"))?;
        if again.to_string() != printed {
            return Err(format!(
                "{text:?} printed as {printed:?}, then as {:?}",
                again.to_string()
            ));
        }
        for _ in 0..8 {
            let l = labels(r);
            if s.matches(&l) != again.matches(&l) {
                return Err(format!(
                    "{text:?} and its printed form {printed:?} disagree on {l:?}"
                ));
            }
            if let Some((k, v)) = s.required_label() {
                if s.matches(&l) && l.get(k).map(String::as_str) != Some(v) {
                    return Err(format!("{text:?} requires {k} == {v:?} but matches {l:?}"));
                }
            }
        }
        Ok(())
    });
    // The grammar's selectors, and some mutated ones, get past the parser to the properties.
    eprintln!("fuzz selector parser: {accepted} inputs accepted");
    assert!(accepted > runs / 2, "{accepted} of {runs} accepted");
}

// ---- pcap filters --------------------------------------------------------------------------

const FILTER_WORDS: &[&str] = &[
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "tcp",
    "udp",
    "icmp",
    "ip",
    "and",
    "or",
    "not",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "10.65.0.2",
    "10.0.0.0/8",
    "192.168.1",
    "300.1.1.1",
    "80",
    "65536",
    "1-1024",
    "0",
    "all",
    "",
    "/",
    "-",
    "x",
];

#[test]
fn filters_parse_or_refuse_and_the_same_way_twice() {
    fuzz("pcap filter parser", 20_000 * scale(), |r| {
        let words: Vec<&str> = (0..r.below(10))
            .map(|_| r.pick_copied(FILTER_WORDS))
            .collect();
        let sep = if r.chance(10) { "" } else { " " };
        let text = words.join(sep);
        let a = weft_model::pcap::parse_filter(&text);
        let b = weft_model::pcap::parse_filter(&text);
        match (&a, &b) {
            (Ok(x), Ok(y)) if x == y => Ok(()),
            (Err(x), Err(y)) if x.to_string() == y.to_string() => {
                if x.to_string().is_empty() {
                    Err(format!("{text:?}: an empty error"))
                } else {
                    Ok(())
                }
            }
            _ => Err(format!("{text:?} parsed two ways: {a:?} and {b:?}")),
        }
    });
}
