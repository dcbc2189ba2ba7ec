//! Files, documents and kinds: what is read, in which order, and where each resource starts.

use super::*;
use crate::Kind;

fn ns(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn names(c: &Config) -> Vec<String> {
    c.namespaces
        .iter()
        .map(|n| n.value.metadata.name.clone())
        .collect()
}

#[test]
fn reads_yaml_files_recursively_in_byte_order_of_the_relative_path() {
    let c = load_ok(&[
        ("b.yaml", &ns("b")),
        ("a/z.yaml", &ns("az")),
        ("a.yaml", &ns("a")),
        ("c.yml", &ns("c")),
        ("B.yaml", &ns("upper-b")),
        ("deep/er/x.yaml", &ns("deeper")),
        ("notes.txt", "this is not YAML: ["),
        ("yaml", "neither is this: ["),
    ]);
    // '.' (0x2e) sorts before '/' (0x2f), and upper case before lower case.
    assert_eq!(names(&c), ["upper-b", "a", "az", "b", "c", "deeper"]);
    assert_eq!(c.resource_count(), 6);
}

#[test]
fn skips_names_starting_with_a_dot() {
    let c = load_ok(&[
        ("a.yaml", &ns("a")),
        (".hidden.yaml", "not: [valid"),
        (".git/config.yaml", "not: [valid"),
        ("sub/.cache/x.yaml", "not: [valid"),
    ]);
    assert_eq!(names(&c), ["a"]);
}

#[test]
fn follows_symlinked_files_inside_the_directory_but_skips_configmap_internals() {
    let dir = TempDir::new(&[
        ("..2024_01_01/a.yaml", &ns("mounted")),
        (".kept/b.yaml", &ns("kept")),
        ("sub/c.yaml", &ns("walked")),
    ]);
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
    };
    // A ConfigMap mount: ..data -> ..<timestamp>, a.yaml -> ..data/a.yaml.
    link(Path::new("..2024_01_01"), "..data");
    link(Path::new("..data/a.yaml"), "a.yaml");
    // A link to a file the walk skips, but inside the directory.
    link(Path::new(".kept/b.yaml"), "b.yaml");
    // A link to a directory is not walked (sub/c.yaml would be read twice).
    link(Path::new("sub"), "linked-dir");
    // A dangling link is not a file and is ignored.
    link(Path::new("missing.yaml"), "dangling.yaml");
    let c = crate::load_dir(dir.path()).unwrap();
    assert_eq!(names(&c), ["mounted", "kept", "walked"]);
    assert_eq!(*c.namespaces[1].source.file, *dir.path().join("b.yaml"));
}

#[test]
fn reads_every_document_and_records_where_each_starts() {
    let text = "\
# a comment before anything
---
---
# an empty document above, a commented one here
---
apiVersion: v1
kind: Namespace
metadata: {name: one}
---

  apiVersion: v1
  kind: Namespace
  metadata:
    name: two
...
---
null
--- {apiVersion: v1, kind: Namespace, metadata: {name: three}}
";
    let c = load_ok(&[("multi.yaml", text)]);
    assert_eq!(names(&c), ["one", "two", "three"]);
    let at: Vec<(usize, usize)> = c
        .namespaces
        .iter()
        .map(|n| (n.source.line, n.source.column))
        .collect();
    assert_eq!(at, [(6, 1), (11, 3), (18, 5)]);
    assert!(c.namespaces[0].source.file.ends_with("multi.yaml"));
}

#[test]
fn reads_kubernetes_lists_item_by_item() {
    let text = "\
apiVersion: v1
kind: List
metadata: {resourceVersion: \"\"}
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: shop}
  spec:
    podSelector: {}
-   apiVersion: projectcalico.org/v3
    kind: GlobalNetworkSet
    metadata: {name: outside}
    spec: {nets: [1.2.3.0/24]}
";
    let c = load_ok(&[("list.yaml", text)]);
    assert_eq!(names(&c), ["shop"]);
    assert_eq!(
        (c.namespaces[0].source.line, c.namespaces[0].source.column),
        (5, 3)
    );
    let np = &c.k8s_network_policies[0];
    assert_eq!(np.value.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!((np.source.line, np.source.column), (9, 3));
    let gns = &c.global_network_sets[0];
    assert_eq!((gns.source.line, gns.source.column), (14, 5));
    assert_eq!(c.policies[0].id.kind, Kind::KubernetesNetworkPolicy);
}

#[test]
fn reports_every_bad_item_of_a_list() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a, colour: red}
- apiVersion: v1
  kind: Namespace
  metadata: {name: b}
- apiVersion: v1
  kind: Gadget
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: c}
  spec: {nets: [999.0.0.0/8]}
- apiVersion: v1
  kind: Namespace
  metadata: {name: d, size: 3}
- 7
";
    let errs = load_err(&[("list.yaml", text)]);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert_eq!(
        errs[0],
        "list.yaml:6:23: Namespace a: metadata: unknown field `colour`; see the schema for the fields this resource has"
    );
    assert!(errs[1].starts_with("list.yaml:11:9: kind \"Gadget\" is not one weft reads; the kinds are projectcalico.org/v3: WorkloadEndpoint, HostEndpoint,"), "{}", errs[1]);
    assert_eq!(
        errs[2],
        "list.yaml:15:17: GlobalNetworkSet c: spec.nets[0]: \"999.0.0.0/8\" is not a CIDR; write an address and prefix length such as 10.0.0.0/8"
    );
    assert!(
        errs[3].starts_with("list.yaml:18:23: Namespace d: metadata: unknown field `size`"),
        "{}",
        errs[3]
    );
    assert_eq!(
        errs[4],
        "list.yaml:19:3: a resource must be a mapping with apiVersion, kind, metadata and spec"
    );
}

#[test]
fn unknown_kinds_list_the_supported_ones() {
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    )]);
    assert_eq!(
        e,
        "a.yaml:2:7: kind \"Deployment\" is not one weft reads; the kinds are \
         projectcalico.org/v3: WorkloadEndpoint, HostEndpoint, NetworkPolicy, GlobalNetworkPolicy, Tier, Profile, NetworkSet, GlobalNetworkSet, FelixConfiguration, Node, IPPool; \
         networking.k8s.io/v1: NetworkPolicy; v1: Namespace, Service, List; discovery.k8s.io/v1: EndpointSlice"
    );
}

#[test]
fn a_known_kind_with_the_wrong_api_version_says_which_one_to_write() {
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: crd.projectcalico.org/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n",
    )]);
    assert_eq!(
        e,
        "a.yaml:1:13: NetworkPolicy has apiVersion projectcalico.org/v3 or networking.k8s.io/v1, not \"crd.projectcalico.org/v1\""
    );
    let e = one_err(&[("a.yaml", "kind: Tier\nmetadata: {name: x}\n")]);
    assert_eq!(
        e,
        "a.yaml:1:1: apiVersion is missing; write it next to kind such as apiVersion: projectcalico.org/v3"
    );
    let e = one_err(&[("a.yaml", "apiVersion: v1\nmetadata: {name: x}\n")]);
    assert!(e.starts_with("a.yaml:1:1: kind is missing; write one of the kinds weft reads (projectcalico.org/v3: "), "{e}");
    let e = one_err(&[("a.yaml", "- just\n- a list\n")]);
    assert_eq!(
        e,
        "a.yaml:1:1: a resource must be a mapping with apiVersion, kind, metadata and spec"
    );
}

#[test]
fn serde_errors_carry_positions_and_name_the_resource() {
    // Unknown field, with a suggestion.
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  selectr: all()\n",
    )]);
    assert_eq!(
        e,
        "a.yaml:5:3: GlobalNetworkPolicy p: spec: unknown field `selectr`; did you mean `selector`?"
    );
    // Wrong type.
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  order: first\n",
    )]);
    assert_eq!(
        e,
        "a.yaml:5:10: GlobalNetworkPolicy p: spec.order: text \"first\" is not what goes here; write a number"
    );
    // Bad enum value.
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress:\n  - action: allow\n",
    )]);
    assert_eq!(
        e,
        "a.yaml:6:13: GlobalNetworkPolicy p: spec.ingress[0].action: unknown variant `allow`, expected one of `Allow`, `Deny`, `Pass`, `Log`"
    );
    // Missing required field.
    let e = one_err(&[(
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n",
    )]);
    assert_eq!(e, "a.yaml:3:11: metadata: missing field `name`");
}

#[test]
fn syntax_errors_are_reported_with_the_rest() {
    let errs = load_err(&[
        (
            "a.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n   bad: indent\n",
        ),
        (
            "b.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: B}\n",
        ),
        ("c.yaml", &ns("c")),
    ]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("a.yaml:5:7: mapping values are not allowed in this context"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with(
            "b.yaml:3:18: Namespace B: metadata.name: \"B\" is not a valid Namespace name"
        ),
        "{}",
        errs[1]
    );
}

#[test]
fn documents_before_a_syntax_error_are_still_checked() {
    let errs = load_err(&[(
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n---\nkey: [unclosed\n",
    )]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("a.yaml:3:18: Namespace Bad:"),
        "{}",
        errs[0]
    );
    assert!(errs[1].starts_with("a.yaml:6:1: "), "{}", errs[1]);
}

/// A syntax error hides nothing: each document is read on its own, every problem of every
/// document is reported at its place in the file, and the file is still invalid.
#[test]
fn documents_after_a_syntax_error_are_still_checked() {
    let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: Bad}
---
apiVersion: v1
kind: Namespace
metadata: {name: [unclosed}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  tier: missing
  selector: all()
--- # an indentation mistake
apiVersion: v1
kind: Namespace
metadata:
  name: a
   bad: indent
---
apiVersion: v1
kind: Namespace
metadata: {name: Also-Bad}
";
    let errs = load_err(&[("a.yaml", text), ("b.yaml", &ns("B"))]);
    assert_eq!(
        errs,
        [
            "a.yaml:3:18: Namespace Bad: metadata.name: \"Bad\" is not a valid Namespace name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            "a.yaml:7:27: did not find expected ',' or ']', while parsing a flow sequence at line 7 column 18",
            "a.yaml:13:9: GlobalNetworkPolicy p: spec.tier: tier \"missing\" does not exist; define a Tier named missing",
            "a.yaml:20:7: mapping values are not allowed in this context",
            "a.yaml:24:18: Namespace Also-Bad: metadata.name: \"Also-Bad\" is not a valid Namespace name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            "b.yaml:4:9: Namespace B: metadata.name: \"B\" is not a valid Namespace name; use up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        ]
    );
    // A syntax error in the first document hides nothing either, and the daemon's reader says
    // the same as a load.
    let text = "kind: [\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n";
    let errs = load_err(&[("a.yaml", text)]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with("a.yaml:2:1: "), "{}", errs[0]);
    assert!(
        errs[1].starts_with("a.yaml:5:18: Namespace Bad:"),
        "{}",
        errs[1]
    );
    let dir = TempDir::new(&[("a.yaml", text)]);
    let docs = crate::Documents::read_dir(dir.path());
    let d = docs.config().unwrap_err();
    assert_eq!(d.0.len(), 2, "{d}");
    assert_eq!((d.0[1].line, d.0[1].column), (5, 18), "{d}");
}

/// The documents after a syntax error are read with the aliases counted, as a whole file is.
#[test]
fn aliases_after_a_syntax_error_are_bounded() {
    let mut laughs = String::from("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {a0: &a0 [x, x, x, x, x, x, x, x, x, x]");
    for i in 1..9 {
        let prev = i - 1;
        laughs.push_str(&format!(
            ", a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]"
        ));
    }
    laughs.push_str("}\n");
    let errs = load_err(&[("a.yaml", &format!("kind: [\n{laughs}"))]);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("the aliases in this file expand it to more than"),
        "{}",
        errs[0]
    );
}

#[test]
fn files_that_are_not_utf8_are_reported() {
    let e = one_err(&[("a.yaml", "name: caf\u{e9}")]);
    assert!(e.starts_with("a.yaml:1:1: "), "{e}");
    let dir = TempDir::new(&[]);
    std::fs::write(dir.path().join("b.yaml"), b"kind: \xff\n").unwrap();
    let d = crate::load_dir(dir.path()).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(
        d.0[0].message,
        "the file is not UTF-8 text (byte 6 is not); save it as UTF-8"
    );
}

#[test]
fn a_missing_directory_is_one_diagnostic() {
    let d = crate::load_dir(Path::new("/nonexistent/weft-model-test")).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert!(
        d.to_string()
            .starts_with("/nonexistent/weft-model-test:0:0: cannot read: "),
        "{d}"
    );
}

#[test]
fn an_empty_directory_is_an_empty_configuration() {
    let c = load_ok(&[]);
    assert_eq!(c.resource_count(), 0);
    // The built-in profile is always there.
    assert!(c.profile(crate::DEFAULT_ALLOW_PROFILE).is_some());
    assert!(c.policies.is_empty());
}

#[test]
fn namespaced_kinds_default_to_the_default_namespace() {
    let c = load_ok(&[(
        "a.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s, namespace: other}\n",
    )]);
    let namespaces: Vec<Option<&str>> = c
        .network_sets
        .iter()
        .map(|s| s.value.metadata.namespace.as_deref())
        .collect();
    assert_eq!(namespaces, [Some("default"), Some("other")]);
}

#[test]
fn load_texts_reads_in_memory_files() {
    let c = crate::load_texts([("x.yaml", ns("x")), ("y.yaml", ns("y"))]).unwrap();
    assert_eq!(names(&c), ["x", "y"]);
    let d = crate::load_texts([("x.yaml", ns("x")), ("y.yaml", ns("x"))]).unwrap_err();
    assert_eq!(
        d.to_string(),
        "y.yaml:1:1: Namespace x: duplicate Namespace x (first defined at x.yaml:1:1)"
    );
}

#[test]
fn accepts_what_kubectl_get_writes() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {\"apiVersion\":\"networking.k8s.io/v1\"}
  creationTimestamp: \"2024-05-01T10:00:00Z\"
  generation: 1
  managedFields:
  - apiVersion: networking.k8s.io/v1
    fieldsType: FieldsV1
    manager: kubectl
  name: web
  namespace: shop
  resourceVersion: \"1234\"
  uid: 5f0e8e52-3b6e-4c2e-9a57-8d4b3a1c2d3e
  finalizers: []
  ownerReferences: []
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: Namespace
metadata:
  creationTimestamp: null
  name: shop
spec:
  finalizers: [kubernetes]
status:
  phase: Active
";
    let c = load_ok(&[("k.yaml", text)]);
    assert_eq!(c.k8s_network_policies.len(), 1);
    assert_eq!(c.namespaces.len(), 1);
}

/// Labels are kept as a sorted list of their pairs, not a map: they must still read back in
/// key order and be found by key, whatever order the file wrote them in.
#[test]
fn labels_read_back_in_key_order_and_are_found_by_key() {
    let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {zone: b, app: web, 'kubernetes.io/x': '1', m: ''}
";
    let c = load_ok(&[("n.yaml", text)]);
    let labels = &c.namespaces[0].value.metadata.labels;
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(keys, ["app", "kubernetes.io/x", "m", "zone"]);
    assert_eq!(labels.get("zone").map(String::as_str), Some("b"));
    assert_eq!(labels.get("m").map(String::as_str), Some(""));
    assert_eq!(labels.get("zon"), None);
    let mut more = labels.clone();
    assert_eq!(more.insert("app".into(), "api".into()), Some("web".into()));
    assert_eq!(more.insert("b".into(), "2".into()), None);
    assert_eq!(more.remove("m"), Some(String::new()));
    let pairs: Vec<(&str, &str)> = more.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("app", "api"),
            ("b", "2"),
            ("kubernetes.io/x", "1"),
            ("zone", "b")
        ]
    );
    // Collected pairs: a later one wins over an earlier one of the same key, as in a map.
    let collected: crate::Labels = [("k", "1"), ("a", "x"), ("k", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(collected.get("k").map(String::as_str), Some("2"));
    assert_eq!(collected.len(), 2);
}

/// The fields an API server writes are dropped once read, but a value of the wrong shape is
/// still an error, as it was when they were kept.
#[test]
fn server_written_fields_are_dropped_but_their_shape_is_checked() {
    let wrong = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  uid: {a: b}
";
    let d = crate::load_texts([("n.yaml", wrong)]).unwrap_err();
    assert!(
        d.to_string().starts_with("n.yaml:5:8: "),
        "the error is at the uid's value: {d}"
    );
    let slice = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  hostname: web-0
  zone: z1
  hints: {forZones: [{name: z1}]}
  targetRef: {kind: Pod, name: web-0, namespace: shop, uid: abc}
ports: [{port: 80}]
";
    let c = load_ok(&[("s.yaml", slice)]);
    assert_eq!(
        c.endpoint_slices[0].value.endpoints()[0].addresses,
        ["10.0.0.1"]
    );
    let bad_ref = slice.replace("targetRef: {kind: Pod,", "targetRef: {kind: [Pod],");
    let d = crate::load_texts([("s.yaml", bad_ref)]).unwrap_err();
    assert!(d.to_string().contains("s.yaml:13:"), "{d}");
}

/// A load lets each file's text go once parsed, and reads it again to place a problem found
/// across resources: the problem is at the value's own line and column, in a file whose other
/// document has a syntax error too.
#[test]
fn problems_across_resources_are_placed_in_files_read_once() {
    let wep = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: shop}\nspec:\n  node: n1\n  interfaceName: cali1\n  ipNetworks: [10.0.0.1/32]\n  profiles: [kns.shop]\n";
    let broken = format!("{wep}---\nkind: [unclosed\n");
    let errs = load_err(&[("a.yaml", wep), ("b.yaml", &broken)]);
    let missing = "WorkloadEndpoint shop/w: spec.profiles[0]: profile \"kns.shop\" does not exist";
    assert!(
        errs.iter()
            .any(|e| e.starts_with("a.yaml:8:14: ") && e.contains(missing)),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("b.yaml:8:14: ") && e.contains(missing)),
        "{errs:#?}"
    );
}
