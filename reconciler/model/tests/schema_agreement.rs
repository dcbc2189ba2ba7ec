//! The JSON Schemas an editor checks files with and `weft validate` agree on which documents
//! are valid: every document of the examples and of `tests/agreement/` is checked both ways.
//! Where they cannot agree (a schema cannot parse a selector, check a CIDR or look up a
//! reference), validate is the authority, and each such document is pinned below with why.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directories checked: each is loaded as `weft validate` would load it.
const DIRS: &[&str] = &[
    "examples/quickstart",
    "examples/services",
    "examples/broken",
    "reconciler/model/tests/agreement",
];

/// The documents on which the schema and validate differ, as "file#document: verdicts", with
/// why they cannot agree.
const PINNED: &[(&str, &str)] = &[
    (
        "examples/broken/policy.yaml#1: schema accepts, validate refuses",
        "a missing tier (a reference), a selector that does not parse, a CIDR that is not one, \
         a port range that ends before it starts, ports with ICMP: none is a shape",
    ),
    (
        "examples/broken/services.yaml#3: schema accepts, validate refuses",
        "a clusterIP that is not an address",
    ),
    (
        "examples/broken/workloads.yaml#1: schema accepts, validate refuses",
        "a profile that does not exist (a reference) and a MAC address that is not one",
    ),
    (
        "examples/broken/workloads.yaml#2: schema accepts, validate refuses",
        "a duplicate of the document before it: a schema sees one document at a time",
    ),
    (
        "reconciler/model/tests/agreement/cases.yaml#9: schema accepts, validate refuses",
        "a selector is text to a schema; only validate parses it",
    ),
    (
        "reconciler/model/tests/agreement/cases.yaml#11: schema refuses, validate accepts",
        "validate reads any scalar's text where it wants text, as serde_yaml gives it; only maps \
         of text (labels, annotations, label selectors) refuse numbers, where 1.10 and 1.1 would \
         differ",
    ),
];

/// Each document of `text` with the line it starts on (1-based) and the line after its end
/// (where the parser reports an error that runs to the next marker).
/// The files here are plain: documents are split at `---` lines, also where one does not
/// parse.
fn documents(text: &str) -> Vec<(usize, usize, &str)> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut docs = Vec::new();
    let (mut start, mut offset, mut doc_offset) = (0, 0, 0);
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end() == "---" {
            docs.push((start + 1, i + 1, &text[doc_offset..offset]));
            start = i + 1;
            doc_offset = offset + line.len();
        }
        offset += line.len();
    }
    docs.push((start + 1, lines.len() + 1, &text[doc_offset..]));
    docs
}

#[test]
fn schemas_and_validate_agree_but_for_the_pinned_documents() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/weft.json")).expect("schemas/weft.json"),
    )
    .expect("weft.json is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("file:///weft.json", schema)
        .expect("add weft.json");
    let weft = compiler
        .compile("file:///weft.json", &mut schemas)
        .expect("weft.json compiles");

    let mut differ = Vec::new();
    let mut checked = 0;
    for dir in DIRS {
        let dir = root().join(dir);
        let diags = match weft_model::load_dir(&dir) {
            Ok(_) => Vec::new(),
            Err(d) => d.0,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let rel = file.strip_prefix(root()).unwrap().display().to_string();
            let mut n = 0;
            for (start, end, doc) in documents(&text) {
                // A document that does not parse is refused by an editor before any schema.
                let value: Option<Value> = serde_yaml::from_str(doc).ok();
                if value.as_ref().is_some_and(Value::is_null) {
                    continue;
                }
                n += 1;
                checked += 1;
                let schema_ok = value.is_some_and(|v| schemas.validate(&v, weft).is_ok());
                let validate_ok = !diags
                    .iter()
                    .any(|d| d.file == file && (start..=end).contains(&d.line));
                if schema_ok != validate_ok {
                    let verdict = |ok: bool| if ok { "accepts" } else { "refuses" };
                    differ.push(format!(
                        "{rel}#{n}: schema {}, validate {}",
                        verdict(schema_ok),
                        verdict(validate_ok)
                    ));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} documents checked");
    let pinned: Vec<&str> = PINNED.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        differ, pinned,
        "the schema and validate differ on other documents than the pinned ones: make them agree, or pin the document with why they cannot"
    );
}

/// The schema refuses what validate refuses on the cases written for it, so the agreement
/// above is not two checks that accept everything.
#[test]
fn the_cases_are_refused_by_both_where_they_say_so() {
    let dir = root().join("reconciler/model/tests/agreement");
    let d = weft_model::load_dir(&dir).expect_err("the cases hold mistakes");
    let text = d.to_string().replace(&format!("{}/", root().display()), "");
    for expected in [
        "cases.yaml:29:15: GlobalNetworkPolicy lower-case-protocol: spec.ingress[0].protocol: protocol \"tcp\" is not known; protocol names are case-sensitive: write TCP",
        "cases.yaml:40:18: NetworkPolicy demo/lower-case-not-protocol: spec.egress[0].notProtocol: protocol \"udp\" is not known; protocol names are case-sensitive: write UDP",
        "cases.yaml:69:14: WorkloadEndpoint demo/unquoted-version: metadata.labels.version: YAML reads this unquoted value as the number 1.1",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}
