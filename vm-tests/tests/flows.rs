//! `weft flows` and `weft trace` against a live dataplane: real connections between workloads,
//! then the records the programs wrote, read by the weft binary in the host namespace.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

/// b serves TCP 80 and 8080; only clients may reach 80, and nothing reaches 8080.
const WEB_POLICY: &str = r#"apiVersion: projectcalico.org/v3
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
"#;

/// a (client, calia) and b (web, calib) in namespace shop, b serving TCP 80 and 8080.
fn two(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(NAMESPACE, "wl", &[("app", "client"), ("app", "web")]);
    bed.write("policy.yaml", WEB_POLICY);
    tcp_server(&bed.w(1).ns, 80);
    tcp_server(&bed.w(1).ns, 8080);
    Some(bed)
}

/// `weft <cmd> <args> <config> --node .. --bpffs ..` in the host namespace.
fn command(bed: &Bed, cmd: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .arg(cmd)
        .args(args)
        .arg(&bed.config)
        .args(["--node", &bed.node, "--bpffs"])
        .arg(&bed.bpffs);
    c
}

fn run(bed: &Bed, cmd: &str, args: &[&str]) -> Output {
    command(bed, cmd, args)
        .output()
        .unwrap_or_else(|e| panic!("running weft {cmd}: {e}"))
}

/// The records `weft <cmd> --json` prints, asserting it succeeded.
fn records(bed: &Bed, cmd: &str, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = run(bed, cmd, &a);
    assert!(
        out.status.success(),
        "weft {cmd} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn find<'a>(rs: &'a [Value], what: &str, f: impl Fn(&Value) -> bool) -> &'a Value {
    rs.iter()
        .find(|r| f(r))
        .unwrap_or_else(|| panic!("no record of {what} in:\n{}", lines(rs)))
}

fn lines(rs: &[Value]) -> String {
    rs.iter().map(|r| format!("{r}\n")).collect()
}

fn is(r: &Value, iface: &str, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> bool {
    r["iface"] == iface
        && r["src"] == src.to_string()
        && r["dst"] == dst.to_string()
        && r["dport"] == dport
}

#[test]
fn weft_flows_shows_the_allowed_connection_and_the_denied_attempt_with_the_policy() {
    let Some(bed) = two("weft_flows_shows_the_allowed_connection_and_the_denied_attempt") else {
        return;
    };
    bed.apply();
    let (a, b) = (&bed.w(0).ns, &bed.w(1).ns);
    assert!(tcp_ok(a, B, 80), "a -> b:80 is allowed");
    assert!(!tcp_ok(a, B, 8080), "a -> b:8080 is denied");

    let rs = records(&bed, "flows", &[]);
    // a opened both: its egress (the namespace's profile) allowed them.
    let out = find(&rs, "a's egress allowing :80", |r| is(r, "calia", A, B, 80));
    assert_eq!(out["verdict"], "allow", "{out}");
    assert_eq!(out["direction"], "egress");
    assert_eq!(out["originated_by_endpoint"], true);
    assert!(
        out["rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("Profile kns.shop egress rule")),
        "{out}"
    );
    // b's ingress decided each: the policy's rule allowed :80 ...
    let allowed = find(&rs, "b's ingress allowing :80", |r| {
        is(r, "calib", A, B, 80)
    });
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    assert_eq!(allowed["policy"], "allow");
    assert_eq!(allowed["direction"], "ingress");
    assert_eq!(allowed["originated_by_endpoint"], false);
    assert_eq!(allowed["rule"], "NetworkPolicy shop/web ingress rule 0");
    assert!(allowed["rule_id"].is_u64());
    // ... and the end of its tier, after the policy, denied :8080.
    let denied = find(&rs, "b's ingress denying :8080", |r| {
        is(r, "calib", A, B, 8080)
    });
    assert_eq!(denied["verdict"], "deny", "{denied}");
    assert_eq!(denied["reason"], "drop-policy");
    assert_eq!(
        denied["rule"],
        "end of tier default ingress (after NetworkPolicy shop/web)"
    );
    // The connection's other packets, both ways, are established: no records of their own.
    let of_80 = rs
        .iter()
        .filter(|r| r["dport"] == 80 || r["sport"] == 80)
        .count();
    assert_eq!(
        of_80,
        2,
        "one record per endpoint for the :80 flow:\n{}",
        lines(&rs)
    );
    assert!(rs.iter().all(|r| r["kind"] == "flow"), "{}", lines(&rs));

    // What was read is gone; new flows come next, and people get a line each.
    assert!(records(&bed, "flows", &[]).is_empty());
    assert!(tcp_ok(a, B, 80));
    let out = run(&bed, "flows", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(" calib ingress tcp 10.65.0.2:")
                && l.ends_with("-> 10.65.0.3:80 allow by NetworkPolicy shop/web ingress rule 0")),
        "{text}"
    );
    let _ = b;
}

/// Reads a follower's output lines into a channel.
fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn one_reader_at_a_time_and_a_killed_reader_leaves_no_lock() {
    let Some(bed) = two("one_reader_at_a_time_and_a_killed_reader_leaves_no_lock") else {
        return;
    };
    bed.apply();
    let mut follower = command(&bed, "flows", &["--json", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft flows --follow");
    let got = lines_of(follower.stdout.take().expect("piped stdout"));
    let said = lines_of(follower.stderr.take().expect("piped stderr"));
    // It says so once it holds the ring.
    assert_eq!(
        said.recv_timeout(Duration::from_secs(10)).as_deref(),
        Ok("weft: reading weft_flows until interrupted")
    );
    // A second reader is refused meanwhile, and says why.
    let out = run(&bed, "flows", &[]);
    assert_eq!(out.status.code(), Some(2));
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        refused.contains("another `weft flows` is reading"),
        "{refused}"
    );
    // It prints new flows as they happen.
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    let line = got
        .recv_timeout(Duration::from_secs(5))
        .expect("the follower printed the new flow");
    let r: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(r["dst"], B.to_string(), "{r}");
    while got.recv_timeout(Duration::from_millis(300)).is_ok() {}
    // A bigger ring replaces the pinned one: the follower moves to it.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfExportBufferSizeMB: 2\n",
    );
    let (_, diff) = bed.diff();
    assert!(
        diff.contains("+map weft_flows ringbuf key 0 value 0 max 2097152"),
        "{diff}"
    );
    bed.apply();
    assert_eq!(
        said.recv_timeout(Duration::from_secs(5)).as_deref(),
        Ok("weft: weft_flows was replaced (resized, or weft applied anew); reading the new one")
    );
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    let line = got
        .recv_timeout(Duration::from_secs(5))
        .expect("the follower printed a flow of the new ring");
    let r: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(r["dst"], B.to_string(), "{r}");
    // kill -9: the kernel drops its lock with it.
    follower.kill().expect("kill -9");
    follower.wait().expect("reaped");
    let out = run(&bed, "flows", &[]);
    assert!(
        out.status.success(),
        "a reader after a killed one: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const FELIX_DEBUG: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfLogLevel: Debug\n  bpfLogFilters:\n    calib: \"tcp and port 80\"\n";

#[test]
fn weft_trace_shows_the_filtered_interface_only_and_diff_shows_the_filter() {
    let Some(bed) = two("weft_trace_shows_the_filtered_interface_only") else {
        return;
    };
    bed.write("felix.yaml", FELIX_DEBUG);
    let (code, diff) = bed.diff();
    assert_eq!(code, 1, "{diff}");
    assert!(diff.contains("traces tcp and port 80"), "{diff}");
    bed.apply();
    assert_eq!(bed.diff().0, 0, "apply converged the trace settings");
    let out = Command::new("nsenter")
        .arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .args(["dump", "endpoints", "--json", "--bpffs"])
        .arg(&bed.bpffs)
        .output()
        .expect("weft dump endpoints");
    let eps: Value = serde_json::from_slice(&out.stdout).expect("json");
    let flags = |iface: &str| {
        eps.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["iface"] == iface)
            .map(|r| r["flags"].clone())
    };
    assert_eq!(
        flags("calib"),
        Some(serde_json::json!(["workload", "trace"]))
    );
    assert_eq!(flags("calia"), Some(serde_json::json!(["workload"])));
    let (a, b) = (&bed.w(0).ns, &bed.w(1).ns);
    assert!(tcp_ok(a, B, 80));
    assert!(!tcp_ok(a, B, 8080), "not port 80: not traced");
    assert!(ping_ok(b, A), "b's ICMP: not traced");

    let rs = records(&bed, "trace", &[]);
    assert!(!rs.is_empty());
    for r in &rs {
        assert_eq!(r["iface"], "calib", "only calib is traced:\n{}", lines(&rs));
        assert_eq!(r["kind"], "trace");
        assert_eq!(
            r["proto"],
            "tcp",
            "the filter takes TCP only:\n{}",
            lines(&rs)
        );
        assert!(r["sport"] == 80 || r["dport"] == 80, "port 80 only: {r}");
    }
    // The connection's first packet into b: new to b's policy, allowed by the web rule.
    let syn = find(&rs, "the SYN to b:80", |r| {
        is(r, "calib", A, B, 80) && r["trace"]["tcp_flags"] == "SYN"
    });
    assert_eq!(syn["policy"], "allow", "{syn}");
    assert_eq!(syn["rule"], "NetworkPolicy shop/web ingress rule 0");
    assert_eq!(syn["trace"]["parse"], "ipv4");
    // b's answers leave through calib's other hook, on conntrack.
    let reply = find(&rs, "b's SYN-ACK", |r| {
        r["src"] == B.to_string() && r["sport"] == 80 && r["trace"]["tcp_flags"] == "SYN,ACK"
    });
    assert_eq!(reply["direction"], "egress");
    assert_eq!(reply["conntrack"], "established");
    assert_eq!(reply["verdict"], "allow");

    // --iface keeps one interface's records; an untraced one is said to be.
    assert!(tcp_ok(a, B, 80));
    let out = run(&bed, "trace", &["--json", "--iface", "calia"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "calia has no records");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("calia is not traced"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A changed filter shows in diff as the filter entry replaced, and converges.
    bed.write(
        "felix.yaml",
        &FELIX_DEBUG.replace("tcp and port 80", "icmp"),
    );
    let (code, diff) = bed.diff();
    assert_eq!(code, 1, "{diff}");
    assert!(
        diff.contains("-map weft_trace_flt ifindex") && diff.contains("traces icmp"),
        "{diff}"
    );
    bed.apply();
    assert!(ping_ok(b, A));
    let rs = records(&bed, "trace", &["--iface", "calib"]);
    assert!(rs.iter().any(|r| r["proto"] == "icmp"), "{}", lines(&rs));
    assert!(rs.iter().all(|r| r["proto"] == "icmp"), "{}", lines(&rs));

    // Debug off: nothing traced, the filters gone.
    bed.remove("felix.yaml");
    bed.apply();
    let (_, diff) = bed.diff();
    assert!(!diff.contains("weft_trace_flt ifindex"), "{diff}");
    run(&bed, "trace", &[]);
    assert!(ping_ok(b, A));
    assert!(records(&bed, "trace", &[]).is_empty());
}
