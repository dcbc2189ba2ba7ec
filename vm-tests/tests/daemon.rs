//! `weft run`: converging on file changes (once per burst), keeping the last good state when
//! an edit is broken, programming an endpoint whose interface appears later, status and
//! metrics.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};

use weft_vm_tests::daemon::*;
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const D: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 5);

/// Only clients may reach the web server b, on port 80.
const WEB_POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web
  namespace: shop
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'client'
      destination:
        ports: [80]
"#;

/// a (client), b (web server), c (not a client yet).
fn three(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(
        SHOP_NAMESPACE,
        "wl",
        &[("role", "client"), ("app", "web"), ("role", "other")],
    );
    bed.write("policy.yaml", WEB_POLICY);
    tcp_server(&bed.w(1).ns, 80);
    Some(bed)
}

/// Waits until `weft diff` finds nothing to do.
fn wait_converged(bed: &Bed) {
    wait_for("the live state to match the files", DEADLINE, || {
        (bed.diff().0 == 0).then_some(())
    });
}

fn wait_tcp(bed: &Bed, from: usize, to: Ipv4Addr, port: u16, want: bool) {
    let ns = &bed.w(from).ns;
    wait_for(
        &format!(
            "{} -> {to}:{port} to be {}",
            bed.w(from).iface,
            if want { "open" } else { "closed" }
        ),
        DEADLINE,
        || (tcp_ok(ns, to, port) == want).then_some(()),
    );
}

#[test]
fn a_multi_file_rewrite_converges_once() {
    let Some(bed) = three("a_multi_file_rewrite_converges_once") else {
        return;
    };
    // No resync during the test: only file events may wake the daemon.
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "300ms"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c is not a client yet");
    let (files0, applies0) = (reconciles(&s, "files"), s["applies"].as_u64().unwrap());

    // A sync that rewrites every file at once, each by rename (as git and editors write):
    // c becomes a client, and twelve network sets arrive.
    bed.write(
        "wl/a.yaml",
        &bed.wep_yaml(
            0,
            "a",
            "shop",
            &[("role", "client"), ("v", "2")],
            &["kns.shop"],
        ),
    );
    bed.write(
        "wl/b.yaml",
        &bed.wep_yaml(1, "b", "shop", &[("app", "web"), ("v", "2")], &["kns.shop"]),
    );
    bed.write(
        "wl/c.yaml",
        &bed.wep_yaml(
            2,
            "c",
            "shop",
            &[("role", "client"), ("v", "2")],
            &["kns.shop"],
        ),
    );
    for i in 0..12 {
        bed.write(
            &format!("sets/set-{i:02}.yaml"),
            &format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: set-{i}\n  labels: {{blocked: \"true\"}}\nspec:\n  nets: [198.51.100.{i}/32]\n"),
        );
    }
    wait_converged(&bed);
    let s = d.wait("the rewrite's reconcile", |s| {
        reconciles(s, "files") > files0
    });
    assert_eq!(
        reconciles(&s, "files"),
        files0 + 1,
        "fifteen files rewritten at once: one reconcile\n{}",
        d.log_text()
    );
    assert_eq!(s["applies"].as_u64().unwrap(), applies0 + 1, "{s}");
    assert_eq!(
        s["last_apply"]["how"], "incremental",
        "files changed after a converge: applied against the state converged to, not observed\n{s}"
    );
    assert!(tcp_ok(&bed.w(2).ns, B, 80), "c is a client now");

    // A marker change afterwards is its own reconcile: nothing of the burst was left over.
    bed.remove("sets/set-00.yaml");
    let s = d.wait("the marker's reconcile", |s| {
        reconciles(s, "files") > files0 + 1
    });
    wait_converged(&bed);
    let s2 = d.status().expect("status");
    assert_eq!(reconciles(&s, "files"), files0 + 2, "{s}");
    assert_eq!(reconciles(&s2, "files"), files0 + 2, "{s2}");
}

#[test]
fn a_bad_edit_is_reported_with_its_position_and_the_last_good_state_stays() {
    let Some(bed) = three("a_bad_edit_is_reported_with_its_position_and_the_last_good_state_stays")
    else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "200ms"]);
    d.started();
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));

    // A value that does not validate, in the one policy: were the policy dropped, c could
    // reach b.
    bed.write(
        "policy.yaml",
        &WEB_POLICY.replace("selector: role == 'client'", "nets: [10.0.0.300/8]"),
    );
    // And a file that is not even YAML.
    bed.write(
        "broken.yaml",
        "kind: NetworkPolicy\nmetadata: {name: x\n  spec: [\n",
    );
    let s = d.wait("the problems to be reported", |s| {
        s["config"]["valid"] == false
            && s["config"]["problems"]
                .as_array()
                .is_some_and(|p| p.len() >= 2)
    });
    let problems: Vec<String> = s["config"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    let at = |file: &str| {
        problems
            .iter()
            .find(|p| p.contains(file))
            .unwrap_or_else(|| panic!("no problem in {file}: {problems:?}"))
            .clone()
    };
    let policy = at("policy.yaml");
    assert!(
        policy.contains("policy.yaml:13:") && policy.contains("10.0.0.300"),
        "the bad value's file, line and column: {policy}"
    );
    let position = policy.split("policy.yaml:13:").nth(1).unwrap_or_default();
    assert!(
        position
            .split(':')
            .next()
            .unwrap_or_default()
            .parse::<u32>()
            .is_ok(),
        "a column follows the line: {policy}"
    );
    assert!(at("broken.yaml").contains("broken.yaml:"), "{problems:?}");
    assert!(
        d.log_text().contains("policy.yaml:13:"),
        "the log says where too:\n{}",
        d.log_text()
    );
    assert_eq!(last_result(&s), "invalid");
    assert!(
        s["config"]["in_force_since"].is_u64(),
        "the last good one is in force: {s}"
    );
    // The last good state is still enforced.
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c still kept out");
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a still let in");
    let status = bed.weft(&[
        "status",
        "--state-dir",
        d.state_dir.to_str().unwrap(),
        "--bpffs",
        bed.bpffs.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("configuration: INVALID") && text.contains("policy.yaml:13:"),
        "weft status shows the problems:\n{text}"
    );

    // Fixed: c is let in this time, and the daemon converges.
    bed.remove("broken.yaml");
    bed.write(
        "policy.yaml",
        &WEB_POLICY.replace("role == 'client'", "role in {'client', 'other'}"),
    );
    d.wait("the fix to be read", |s| s["config"]["valid"] == true);
    wait_tcp(&bed, 2, B, 80, true);
    wait_converged(&bed);
}

#[test]
fn an_endpoint_whose_interface_appears_later_is_programmed_and_unprogrammed_when_it_goes() {
    let Some(mut bed) = Bed::new(
        "an_endpoint_whose_interface_appears_later_is_programmed_and_unprogrammed_when_it_goes",
    ) else {
        return;
    };
    bed.workload("calia", A);
    // d's veth is made under another name: the file names calid, which does not exist yet.
    bed.workload("tmpd", D);
    bed.write("00-namespace.yaml", SHOP_NAMESPACE);
    bed.write(
        "a.yaml",
        &bed.wep_yaml(0, "a", "shop", &[("app", "a")], &["kns.shop"]),
    );
    bed.write(
        "d.yaml",
        &bed.wep_yaml(1, "d", "shop", &[("app", "d")], &["kns.shop"])
            .replace("interfaceName: tmpd", "interfaceName: calid"),
    );
    tcp_server(&bed.w(1).ns, 80);
    // No resync: only the interface's appearance can wake the daemon.
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "200ms"]);
    d.started();
    let routes = || {
        String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout).into_owned()
    };
    assert!(!routes().contains("10.65.0.5"), "{}", routes());

    bed.host.ip(&["link", "set", "tmpd", "down"]);
    bed.host.ip(&["link", "set", "tmpd", "name", "calid"]);
    bed.host.ip(&["link", "set", "calid", "up"]);
    d.wait("d's route", |_| routes().contains("10.65.0.5 dev calid"));
    wait_tcp(&bed, 0, D, 80, true);
    // The status is written once the reconcile that added the route is done: wait for it
    // rather than race it.
    let s = d.wait("the interface's reconcile recorded", |s| {
        reconciles(s, "links") >= 1
    });
    assert_eq!(reconciles(&s, "resync"), 0, "{s}");
    assert!(bed.bpffs.join("links/calid:ingress").exists());

    // And gone: its entries and links go too.
    bed.host.ip(&["link", "del", "calid"]);
    wait_for("d's link pins to go", DEADLINE, || {
        (!bed.bpffs.join("links/calid:ingress").exists()).then_some(())
    });
    wait_converged(&bed);
    assert!(!routes().contains("10.65.0.5"), "{}", routes());
    let pins = weft::bpf::Pins::new(&bed.bpffs);
    let names: Vec<String> = weft::observe::read_entries(&pins, "weft_iface")
        .expect("weft_iface")
        .values()
        .filter_map(|v| <weft::bpf::maps::IfaceValue as weft::bpf::maps::Plain>::from_bytes(v))
        .map(|v| weft::bpf::maps::from_c_name(&v.name))
        .collect();
    assert_eq!(names, vec!["calia".to_string()]);
}

/// One HTTP GET in the host namespace.
fn http_get(bed: &Bed, port: u16, path: &str) -> String {
    let path = path.to_string();
    bed.host.run(move || {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect metrics");
        write!(s, "GET {path} HTTP/1.1\r\nHost: weft\r\n\r\n").expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    })
}

#[test]
fn metrics_and_status_report_what_the_daemon_and_the_dataplane_did() {
    let Some(bed) = three("metrics_and_status_report_what_the_daemon_and_the_dataplane_did") else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "1h", "--metrics-listen", "127.0.0.1:9771"]);
    d.started();
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));
    let m = wait_for("the metrics endpoint", DEADLINE, || {
        let m = http_get(&bed, 9771, "/metrics");
        m.starts_with("HTTP/1.1 200").then_some(m)
    });
    let value = |m: &str, prefix: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{m}")) as u64
    };
    assert_eq!(value(&m, "weft_reconciles_total{trigger=\"start\"}"), 1);
    assert_eq!(
        value(&m, "weft_reconcile_duration_seconds_count"),
        value(&m, "weft_reconcile_duration_seconds_bucket{le=\"+Inf\"}")
    );
    assert_eq!(value(&m, "weft_apply_errors_total"), 0);
    assert_eq!(value(&m, "weft_map_entries{map=\"weft_iface\"}"), 3);
    assert_eq!(value(&m, "weft_map_max_entries{map=\"weft_ct4\"}"), 512_000);
    assert!(
        value(&m, "weft_packets_total{iface=\"calib\",hook=\"to-wep\",verdict=\"drop\",reason=\"drop-policy\"}") >= 1,
        "c's connection attempt was dropped by b's ingress policy"
    );
    assert!(
        value(&m, "weft_packets_total{iface=\"calia\",hook=\"from-wep\",verdict=\"accept\",reason=\"accept-policy\"}") >= 1,
        "a's connection was allowed by a's egress policy (its profile)"
    );
    assert!(
        m.lines().any(|l| l.starts_with("weft_rule_hits_total{")
            && l.contains("NetworkPolicy shop/web ingress rule 0")),
        "a's connection was allowed by web's rule 0:\n{m}"
    );
    let st = http_get(&bed, 9771, "/status");
    assert!(st.contains("\"applies\": 1"), "{st}");

    let out = bed.weft(&[
        "status",
        "--state-dir",
        d.state_dir.to_str().unwrap(),
        "--bpffs",
        bed.bpffs.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "daemon: running",
        "last apply: ",
        "(start): converged",
        "last error: none",
        "configuration: valid",
        "drift repaired: 0",
        "weft_iface",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    d.term();
    let out = bed.weft(&[
        "status",
        "--state-dir",
        d.state_dir.to_str().unwrap(),
        "--bpffs",
        bed.bpffs.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stopped daemon is not healthy"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT running"));
    assert!(
        tcp_ok(&bed.w(0).ns, B, 80),
        "the dataplane outlives the daemon"
    );
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "and still enforces");
}

/// git-sync's way: the directory weft watches is a symlink, flipped atomically to a new
/// checkout. weft follows it.
#[test]
fn a_directory_swapped_by_a_symlink_flip_is_followed() {
    let Some(bed) = three("a_directory_swapped_by_a_symlink_flip_is_followed") else {
        return;
    };
    let copy = |to: &std::path::Path| {
        sh(&[
            "cp",
            "-a",
            bed.config.to_str().unwrap(),
            to.to_str().unwrap(),
        ]);
    };
    // Under the bed's state directory, which goes with the bed.
    std::fs::create_dir_all(bed.state_dir()).unwrap();
    let rev1 = bed.state_dir().join("rev1");
    let rev2 = bed.state_dir().join("rev2");
    let live = bed.state_dir().join("live");
    copy(&rev1);
    copy(&rev2);
    // rev2: c is a client too.
    std::fs::write(
        rev2.join("wl/c.yaml"),
        bed.wep_yaml(2, "c", "shop", &[("role", "client")], &["kns.shop"]),
    )
    .unwrap();
    std::os::unix::fs::symlink(&rev1, &live).unwrap();
    let mut d = bed.daemon_on(&Bed::weft_bin(), &live, &["--resync", "1h"]);
    d.started();
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));
    // Flip: a new symlink renamed over the old one.
    let tmp = bed.state_dir().join("live-tmp");
    std::os::unix::fs::symlink(&rev2, &tmp).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    wait_tcp(&bed, 2, B, 80, true);
    // And the new target is watched: an edit in rev2 is seen.
    std::fs::remove_file(rev2.join("policy.yaml")).unwrap();
    std::fs::write(
        rev2.join("policy.yaml"),
        WEB_POLICY.replace("ports: [80]", "ports: [81]"),
    )
    .unwrap();
    wait_tcp(&bed, 0, B, 80, false);
    drop(d);
}

/// A `kind: List` of `items` policies that share one spec of `rules` rules, each aliasing one
/// list of `nets` networks: `items * rules * nets` networks out of a few hundred KiB.
fn alias_bomb(nets: usize, rules: usize, items: usize) -> String {
    let nets: Vec<String> = (0..nets)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let mut t = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkSet\n  metadata: {{name: nets}}\n  spec:\n    nets: &n [{}]\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata: {{name: p0}}\n  spec: &s\n    ingress:\n",
        nets.join(", ")
    );
    for _ in 0..rules {
        t.push_str("    - {action: Allow, source: {nets: *n}}\n");
    }
    for i in 1..items {
        t.push_str(&format!("- {{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {{name: p{i}}}, spec: *s}}\n"));
    }
    t
}

/// The line and column of the problem `problems` report for `file` (a path under `dir`).
fn position_of(problems: &[String], dir: &std::path::Path, file: &str) -> (u32, u32) {
    let prefix = format!("{}/{file}:", dir.display());
    let p = problems
        .iter()
        .find_map(|p| p.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no problem names {file}: {problems:#?}"));
    let mut at = p.splitn(3, ':').map(|n| n.parse::<u32>());
    match (at.next(), at.next()) {
        (Some(Ok(line)), Some(Ok(column))) => (line, column),
        _ => panic!("{file}'s problem has no line and column: {p}"),
    }
}

/// SIGTERM, and the daemon must be gone within 2 s.
fn term_within_2s(d: &mut Daemon) {
    let started = std::time::Instant::now();
    d.term();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "weft run took {took:?} to stop after SIGTERM; its log:\n{}",
        d.log_text()
    );
}

/// What a hostile or broken commit can put in the directory: aliases that expand to
/// billions of values, a selector nested 5,000 deep, a FIFO and a device named like YAML, a
/// file past the size cap, and a link to a file only root may read. Each used to kill,
/// hang, exhaust or leak through the daemon; now each is a problem naming its file, the last
/// good state stays live, nothing of the secret shows, and SIGTERM stops the daemon at once,
/// even when it starts on these files.
#[test]
fn hostile_files_are_problems_the_last_good_state_stays_and_sigterm_stops_the_daemon() {
    let Some(bed) =
        three("hostile_files_are_problems_the_last_good_state_stays_and_sigterm_stops_the_daemon")
    else {
        return;
    };
    let mut d = bed.daemon(&[
        "--resync",
        "1h",
        "--debounce",
        "200ms",
        "--metrics-listen",
        "127.0.0.1:9771",
    ]);
    d.started();
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));

    // A file only root may read, outside the directory, that a link in it points at.
    let secret = bed.state_dir().join("secret.yaml");
    std::fs::write(&secret, "apiVersion: v1\nkind: TOP-SECRET-c0ffee\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let at = |name: &str| bed.config.join(name);
    let bomb = alias_bomb(2000, 100, 6000);
    assert!(bomb.len() > 600_000, "{}", bomb.len());
    bed.write("bomb.yaml", &bomb);
    let deep = format!("{}a == 'b'{}", "(".repeat(5_000), ")".repeat(5_000));
    bed.write(
        "deep.yaml",
        &format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: deep\nspec:\n  selector: \"{deep}\"\n"),
    );
    sh(&["mkfifo", at("pipe.yaml").to_str().unwrap()]);
    // The kernel's /dev/zero: a read of it never ends.
    sh(&["mknod", at("zero.yaml").to_str().unwrap(), "c", "1", "5"]);
    std::fs::File::create(at("huge.yaml"))
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    std::os::unix::fs::symlink(&secret, at("leak.yaml")).unwrap();
    let files = [
        "bomb.yaml",
        "deep.yaml",
        "pipe.yaml",
        "zero.yaml",
        "huge.yaml",
        "leak.yaml",
    ];

    let s = d.wait("every hostile file to be reported", |s| {
        let problems = s["config"]["problems"].as_array();
        s["config"]["valid"] == false
            && files.iter().all(|f| {
                problems.is_some_and(|p| {
                    p.iter()
                        .any(|p| p.as_str().is_some_and(|p| p.contains(&format!("/{f}:"))))
                })
            })
    });
    let problems: Vec<String> = s["config"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(problems.len(), files.len(), "{problems:#?}");
    for f in files {
        let (line, column) = position_of(&problems, &bed.config, f);
        assert!(line >= 1 && column >= 1, "{f}: {problems:#?}");
    }
    assert!(position_of(&problems, &bed.config, "bomb.yaml").0 > 1);
    assert_eq!(position_of(&problems, &bed.config, "deep.yaml"), (6, 78));
    assert_eq!(last_result(&s), "invalid");
    assert!(s["config"]["in_force_since"].is_u64(), "{s}");
    // The last good state is live: a still let in, c still kept out.
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a still let in");
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c still kept out");
    // Nothing of the secret anywhere the daemon reports.
    let status_file = std::fs::read_to_string(d.state_dir.join("status.json")).unwrap();
    let served = http_get(&bed, 9771, "/status");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    for (what, text) in [
        ("status.json", &status_file),
        ("/status", &served),
        ("the log", &d.log_text()),
    ] {
        assert!(
            text.contains("leak.yaml") && !text.contains("TOP-SECRET"),
            "{what} must name the link and nothing of its target:\n{text}"
        );
    }
    term_within_2s(&mut d);

    // Started on them (a deep selector used to kill every start while it was there): the
    // dataplane it left is untouched, the files are reported, and SIGTERM still works.
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "200ms"]);
    let s = d.started();
    assert_eq!(last_result(&s), "invalid", "{s}");
    assert_eq!(
        s["config"]["problems"].as_array().map(Vec::len),
        Some(files.len()),
        "{s}"
    );
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a still let in");
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c still kept out");

    // Gone again: the files validate, and the daemon converges on them.
    for f in files {
        std::fs::remove_file(at(f)).unwrap();
    }
    d.wait("the files to validate again", |s| {
        s["config"]["valid"] == true
    });
    wait_converged(&bed);
    term_within_2s(&mut d);
}
