//! `weft dump` against a live dataplane: apply a configuration, make real connections, and read
//! back from the pinned maps which rules decided them and which flows conntrack holds.

use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::Value;
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 4);

const CONFIG: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'client'}
      destination: {ports: [80]}
    - action: Allow
      protocol: UDP
      source: {selector: app == 'client'}
      destination: {ports: [53]}
"#;

/// `weft dump <args>` in the bed's host namespace, with its bpffs (and its node, for the
/// dumps that name what they show by the configuration); its stdout.
fn dump(bed: &Bed, args: &[&str]) -> String {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .arg("dump")
        .args(args);
    if matches!(args.first(), Some(&"policy" | &"ipsets" | &"nat")) {
        cmd.args(["--node", &bed.node]);
    }
    let out = cmd
        .arg("--bpffs")
        .arg(&bed.bpffs)
        .output()
        .expect("running weft dump");
    assert!(
        out.status.success(),
        "weft dump {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(bed: &Bed, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let text = dump(bed, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("weft dump {args:?}: {e}\n{text}"))
}

/// The hits of rule `index` of `origin` (None: a tier end or the default deny) in `dir`.
fn hits(policy: &Value, dir: &str, origin: &str, index: Option<u64>) -> u64 {
    let d = policy["directions"]
        .as_array()
        .expect("directions")
        .iter()
        .find(|d| d["direction"] == dir)
        .unwrap_or_else(|| panic!("no {dir} in {policy:#}"));
    let r = d["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["origin"] == origin && r["index"].as_u64() == index)
        .unwrap_or_else(|| panic!("no rule {origin} {index:?} in {d:#}"));
    r["hits"].as_u64().expect("hits")
}

#[test]
fn dump_shows_the_rules_that_decided_real_connections_and_the_flows() {
    let Some(mut bed) = Bed::new("dump_shows_the_rules_that_decided_real_connections") else {
        return;
    };
    bed.workload("calia", A);
    bed.workload("calib", B);
    bed.workload("calic", C);
    bed.write("00-config.yaml", CONFIG);
    for (i, name, app) in [(0, "a", "client"), (1, "b", "web"), (2, "c", "other")] {
        bed.write(
            &format!("wl/{name}.yaml"),
            &bed.wep_yaml(i, name, "shop", &[("app", app)], &["kns.shop"]),
        );
    }
    tcp_server(&bed.w(1).ns, 80);
    tcp_server(&bed.w(1).ns, 8080);
    udp_server(&bed.w(1).ns, 53);
    bed.apply();

    let (a, c) = (&bed.w(0).ns, &bed.w(2).ns);
    assert!(tcp_ok(a, B, 80) && tcp_ok(a, B, 80), "a -> b:80 twice");
    assert!(udp_ok(a, B, 53), "a -> b:53/udp");
    assert!(!tcp_ok(a, B, 8080), "a -> b:8080: no rule allows it");
    assert!(!tcp_ok(c, B, 80), "c is not a client");

    let dir = bed.config.to_str().expect("utf-8 path").to_string();
    let policy = json(&bed, &["policy", "shop/b", &dir]);
    let web = "NetworkPolicy shop/web";
    // Each connection's first packet meets b's ingress policy once; the rest pass on conntrack.
    assert_eq!(hits(&policy, "ingress", web, Some(0)), 2, "{policy:#}");
    assert_eq!(hits(&policy, "ingress", web, Some(1)), 1, "{policy:#}");
    // Denied SYNs: at least one each for a -> 8080 and c -> 80 (TCP may retry within the probe).
    assert!(
        hits(&policy, "ingress", "end of tier default", None) >= 2,
        "{policy:#}"
    );
    let ingress = &policy["directions"][0];
    assert_eq!(
        ingress["ruleset"], ingress["live_ruleset"],
        "the kernel runs this configuration's policy"
    );
    // b's egress: no policy selects it, its profile decides (nothing b sent opened a flow).
    let egress = &policy["directions"][1];
    assert_eq!(egress["direction"], "egress");
    assert_eq!(egress["rules"][0]["origin"], "Profile kns.shop");

    // The same as a table, by interface name.
    let table = dump(&bed, &["policy", "calib", &dir, "--direction", "ingress"]);
    let line = table
        .lines()
        .find(|l| l.ends_with("NetworkPolicy shop/web rule 0"))
        .unwrap_or_else(|| panic!("no line for rule 0:\n{table}"));
    assert!(
        line.split_whitespace().any(|w| w == "2"),
        "rule 0 shows 2 hits: {line}\n{table}"
    );
    assert!(!table.contains("egress"), "one direction only:\n{table}");

    // The flows: a's two connections to b:80 and its UDP flow, each side approved by the
    // ruleset of its own endpoint that allowed it.
    let endpoints = json(&bed, &["endpoints"]);
    let ruleset = |iface: &str, key: &str| {
        endpoints
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["iface"] == iface)
            .unwrap_or_else(|| panic!("no {iface} in {endpoints:#}"))[key]
            .clone()
    };
    let flows = json(&bed, &["conntrack"]);
    let flows = flows.as_array().expect("flows");
    let to_b = |proto: &str, port: u64| -> Vec<&Value> {
        flows
            .iter()
            .filter(|f| {
                f["protocol"] == proto
                    && f["originator"]["addr"] == A.to_string()
                    && f["responder"]["addr"] == B.to_string()
                    && f["responder"]["port"] == port
            })
            .collect()
    };
    let web_flows = to_b("tcp", 80);
    assert_eq!(web_flows.len(), 2, "{flows:#?}");
    for f in &web_flows {
        assert_eq!(
            f["originator"]["approved_by"],
            ruleset("calia", "ruleset_egress")
        );
        assert_eq!(
            f["responder"]["approved_by"],
            ruleset("calib", "ruleset_ingress")
        );
        let sent = |side: &str| f[side]["tcp_flags"].as_array().expect("flags").clone();
        assert!(sent("originator").contains(&"syn".into()), "{f:#}");
        assert!(sent("responder").contains(&"ack".into()), "{f:#}");
        assert!(f["age_ns"].as_u64() >= f["idle_ns"].as_u64(), "{f:#}");
    }
    assert_eq!(to_b("udp", 53).len(), 1, "{flows:#?}");
    // a's egress allowed the SYN to b:8080 (conntrack remembers that), b's ingress did not.
    let denied = to_b("tcp", 8080);
    assert!(!denied.is_empty(), "{flows:#?}");
    for f in denied {
        assert_eq!(
            f["originator"]["approved_by"],
            ruleset("calia", "ruleset_egress")
        );
        assert!(f["responder"]["approved_by"].is_null(), "{f:#}");
    }
    let table = dump(&bed, &["conntrack"]);
    assert!(
        table.contains(&format!("{B}:80")),
        "the table lists the flow:\n{table}"
    );

    // Counters and routes read back too.
    let counters = json(&bed, &["counters"]);
    let counted = |iface: &str, hook: &str| {
        counters
            .as_array()
            .expect("counters")
            .iter()
            .find(|c| c["iface"] == iface && c["hook"] == hook)
            .unwrap_or_else(|| panic!("no {iface} {hook} counters: {counters:#}"))["reasons"]
            .clone()
    };
    // a opened four flows, each allowed by its egress (its profile) on the first packet.
    assert_eq!(
        counted("calia", "from-wep")["accept-policy"],
        4,
        "{counters:#}"
    );
    // At b the flows a opened already have entries: b's ingress judges them there, and drops
    // at least the two it denies.
    let b_in = counted("calib", "to-wep");
    assert!(b_in["drop-policy"].as_u64() >= Some(2), "{b_in:#}");
    assert!(b_in["accept-conntrack"].as_u64() >= Some(3), "{b_in:#}");
    // The IP set the web policy's source selector stands for holds a's address, and b's
    // ingress classifier in the kernel tells that address apart.
    let sets = json(&bed, &["ipsets", &dir]);
    let client = sets["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|s| {
            s["selector"]
                .as_str()
                .is_some_and(|x| x.contains("app == \"client\"") || x.contains("app == 'client'"))
        })
        .unwrap_or_else(|| panic!("no set for the client selector: {sets:#}"));
    assert_eq!(
        client["members"],
        serde_json::json!([format!("{A}/32")]),
        "{sets:#}"
    );
    let b_rs = &policy["directions"][0]["ruleset"];
    let b_in = sets["rulesets"]
        .as_array()
        .expect("rulesets")
        .iter()
        .find(|r| &r["ruleset"] == b_rs)
        .unwrap_or_else(|| panic!("b's ingress ruleset is not in the kernel: {sets:#}"));
    assert!(
        b_in["used_by"]
            .as_array()
            .expect("used_by")
            .iter()
            .any(|u| u == "shop/b (calib) ingress"),
        "{b_in:#}"
    );
    assert!(
        b_in["prefixes"]
            .as_array()
            .expect("prefixes")
            .iter()
            .any(|p| p[0] == format!("{A}/32")),
        "a's address has a class of its own in b's ingress: {b_in:#}"
    );
    let table = dump(&bed, &["ipsets", &dir]);
    assert!(table.contains(&format!("{A}/32")), "{table}");

    let routes = json(&bed, &["routes"]);
    assert!(
        routes
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["prefix"] == format!("{B}/32")
                && r["iface"] == "calib"
                && r["flags"][0] == "local-workload"),
        "{routes:#}"
    );
}
