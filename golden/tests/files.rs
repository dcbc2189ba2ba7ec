//! Golden files: what `weft diff` shows for each example directory on a fresh host, and what
//! `weft validate` says about the broken example. `UPDATE_GOLDEN=1 cargo test -p weft-golden
//! --test files` rewrites them; review the change like code.

use std::path::{Path, PathBuf};

use weft::facts::HostFacts;
use weft::state::HostState;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `actual` with the golden file, or rewrites it under UPDATE_GOLDEN=1.
fn check_golden(file: &str, actual: &str) {
    let path = root().join("golden").join(file);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        let diff = similar_lines(&expected, actual);
        panic!(
            "{} differs from what weft produces now (UPDATE_GOLDEN=1 rewrites it):\n{diff}",
            path.display()
        );
    }
}

fn similar_lines(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let mut out = String::new();
    for l in &a {
        if !b.contains(l) {
            out += &format!("-{l}\n");
        }
    }
    for l in &b {
        if !a.contains(l) {
            out += &format!("+{l}\n");
        }
    }
    out
}

/// A fixed host: node "demo-node", the examples' interfaces at fixed indexes, one address.
/// weft's own bpfin/bpfout pair is there too, as after the first phase of an apply that
/// creates it (the plan of the second phase refers to its indexes).
/// demo-node, its uplink up0 holding its address 192.0.2.1 (the fleet's underlay).
fn facts() -> HostFacts {
    let mut f = HostFacts::fixture(
        "demo-node",
        &[
            ("lo", 1),
            ("up0", 2),
            ("califrontend", 10),
            ("calibackend", 11),
            ("calidb", 12),
            ("caliclient", 20),
            ("caliweb1", 21),
            ("caliweb2", 22),
            ("bpfin.weft", 30),
            ("bpfout.weft", 31),
        ],
    );
    f.link_addrs
        .insert(2, [std::net::Ipv4Addr::new(192, 0, 2, 1)].into());
    f.link_mtus.insert(2, 1500);
    f
}

/// The object id changes with every change to bpf-src/; the golden files should not.
fn without_object_id(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            if w.starts_with("0x")
                && w.len() == 18
                && w.chars().skip(2).all(|c| c.is_ascii_hexdigit())
            {
                "0x<object>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
        .replace(
            &format!("{:#018x}", weft::bpf::skel::wep::OBJECT_ID),
            "0x<object>",
        )
}

#[test]
fn every_example_plans_as_its_golden_file() {
    let examples = root().join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut checked = 0;
    for dir in dirs {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "broken" {
            continue;
        }
        let cfg = weft_model::load_dir(&dir)
            .unwrap_or_else(|d| panic!("examples/{name} must be valid:\n{d}"));
        let desired = weft::desired::desired(&cfg, &facts()).expect("desired state");
        let empty = HostState::default();
        let ops = weft::plan::plan(&desired.state, &empty, desired.settings.sizes);
        let mut out = weft::plan::render_diff(
            &empty,
            &desired.state,
            &format!("examples/{name}"),
            &desired.names(),
        );
        out += "\n# operations, in order\n";
        for (i, op) in ops.iter().enumerate() {
            out += &format!("{:>3}. {}\n", i + 1, op.describe());
        }
        for w in &desired.warnings {
            out += &format!("# warning: {w}\n");
        }
        check_golden(&format!("plans/{name}.diff"), &without_object_id(&out));
        checked += 1;
    }
    assert!(checked > 0, "no example directories found");
}

#[test]
fn the_broken_example_reports_every_mistake() {
    let dir = root().join("examples/broken");
    let Err(d) = weft_model::load_dir(&dir) else {
        panic!("examples/broken must be invalid")
    };
    let text = d.to_string().replace(&format!("{}/", root().display()), "");
    assert!(
        d.0.len() >= 8,
        "several mistakes are reported together, not the first only:\n{text}"
    );
    check_golden("validate/broken.txt", &format!("{text}\n"));
}

/// What validate finds in each node's desired state, with no host asked: every map too small
/// (at the FelixConfiguration that sizes it), and endpoints that share an interface or an
/// address (at the second of them), on each node an endpoint names.
#[test]
fn validate_reports_what_each_nodes_desired_state_would_break() {
    let wep = |name: &str, node: &str, iface: &str, ip: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  node: {node}\n  interfaceName: {iface}\n  ipNetworks: [{ip}/32]\n  profiles: [projectcalico-default-allow]\n")
    };
    let files = [
        ("cfg/a.yaml", wep("a", "node-a", "calia", "10.65.0.2")),
        ("cfg/b.yaml", wep("b", "node-a", "calib", "10.65.0.3")),
        ("cfg/c.yaml", wep("c", "node-a", "calic", "10.65.0.4")),
        // node-b: two endpoints on one interface.
        ("cfg/d.yaml", wep("d", "node-b", "calid", "10.65.1.2")),
        ("cfg/e.yaml", wep("e", "node-b", "calid", "10.65.1.3")),
        (
            "cfg/felix.yaml",
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: node.node-a\nspec:\n  bpfMapSizeIfState: 2\n  bpfMapSizeRoute: 3\n".into(),
        ),
    ];
    let cfg = weft_model::load_texts(files).expect("each file is valid on its own");
    let all = weft_model::Diagnostics(weft::validate::node_problems(Path::new("cfg"), &cfg, None));
    let text = all.to_string();
    assert_eq!(all.0.len(), 3, "{text}");
    check_golden("validate/nodes.txt", &format!("{text}\n"));
    // --node limits the check to one node.
    let b = weft::validate::node_problems(Path::new("cfg"), &cfg, Some("node-b"));
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].message.contains("calid"), "{b:?}");
}

/// Every warning for what the files leave silently undone, as `weft diff` and the daemon's
/// status give them: a policy without a namespace, a node name no endpoint names, a
/// HostEndpoint (not programmed), a Service without a clusterIP, service and slice ports
/// named apart, and a slice whose Service is missing.
#[test]
fn what_the_files_leave_undone_is_said() {
    let files = [
        (
            "cfg/policy.yaml",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: no-ns}\nspec:\n  selector: all()\n  ingress: [{action: Allow}]\n",
        ),
        (
            "cfg/wep.yaml",
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: shop}\nspec:\n  node: node-a\n  interfaceName: calia\n  ipNetworks: [10.65.0.2/32]\n  profiles: [projectcalico-default-allow]\n",
        ),
        (
            "cfg/hep.yaml",
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: eth0}\nspec:\n  node: node-b\n  interfaceName: eth0\n  expectedIPs: [192.0.2.1]\n",
        ),
        (
            "cfg/svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{name: http, port: 80, protocol: TCP}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports: [{name: web, port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.65.0.2]}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: gone-1\n  namespace: shop\n  labels: {kubernetes.io/service-name: gone}\naddressType: IPv4\nports: [{port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.65.0.2]}]\n",
        ),
    ];
    let cfg = weft_model::load_texts(files).expect("valid: warnings are not problems");
    // The node name matches no endpoint (a --node typo).
    let d =
        weft::desired::desired(&cfg, &HostFacts::fixture("node-b", &[("lo", 1)])).expect("desired");
    let text: String = d.warnings.iter().map(|w| format!("{w}\n")).collect();
    assert_eq!(d.warnings.len(), 6, "{text}");
    check_golden("validate/warnings.txt", &text);
}

#[test]
fn examples_carry_a_schema_modeline_that_exists() {
    for dir in [
        "examples/quickstart",
        "examples/services",
        "examples/broken",
    ] {
        for e in std::fs::read_dir(root().join(dir))
            .expect("example dir")
            .flatten()
        {
            let path = e.path();
            let text = std::fs::read_to_string(&path).expect("read example");
            let line = text
                .lines()
                .find(|l| l.starts_with("# yaml-language-server: $schema="))
                .unwrap_or_else(|| {
                    panic!("{} has no yaml-language-server modeline", path.display())
                });
            let schema = line.trim_start_matches("# yaml-language-server: $schema=");
            let target = path.parent().expect("parent").join(schema);
            assert!(
                target.exists(),
                "{}: schema {} does not exist",
                path.display(),
                target.display()
            );
        }
    }
}
