//! Applies that must not half-apply: a map too small is refused before anything is touched, a
//! map shrunk while endpoints go keeps exactly the live ones, an interface that goes away in
//! the middle of an apply is skipped while the rest converges, and any other failure partway
//! puts back what was live before.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{ExitStatus, Stdio};

use weft::bpf::maps::{from_c_name, IfaceValue, Plain};
use weft_vm_tests::*;

const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 4);

fn felix(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n{spec}")
}

/// Port 80 of the web workload (b) is open to every workload of the shop; nothing else of b is.
const WEB_80: &str = r#"apiVersion: projectcalico.org/v3
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
      destination:
        ports: [80]
"#;

/// Workloads a (client), b (web, serving 80 and 8080) and c (other).
fn three(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(
        SHOP_NAMESPACE,
        "wl",
        &[("app", "client"), ("app", "web"), ("app", "other")],
    );
    tcp_server(&bed.w(1).ns, 80);
    tcp_server(&bed.w(1).ns, 8080);
    Some(bed)
}

/// The interfaces weft_iface has entries for.
fn iface_entries(bed: &Bed) -> Vec<String> {
    let pins = weft::bpf::Pins::new(&bed.bpffs);
    let mut names: Vec<String> = weft::observe::read_entries(&pins, "weft_iface")
        .expect("weft_iface")
        .values()
        .filter_map(|v| IfaceValue::from_bytes(v))
        .map(|v| from_c_name(&v.name))
        .collect();
    names.sort();
    names
}

fn max_entries(bed: &Bed, map: &str) -> u32 {
    weft::bpf::stats::map_fill(&weft::bpf::Pins::new(&bed.bpffs))
        .expect("map fill")
        .into_iter()
        .find(|m| m.name == map)
        .unwrap_or_else(|| panic!("{map} is pinned"))
        .max_entries
}

fn weft_routes(bed: &Bed) -> String {
    String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout).into_owned()
}

/// Runs `weft apply` on the bed's files, stops it (SIGSTOP) when its log has a line with
/// `at`, runs `meanwhile`, and lets it go on. Its exit status and whole log.
fn apply_pausing(bed: &Bed, at: &str, meanwhile: impl FnOnce()) -> (ExitStatus, String) {
    let mut child = bed
        .weft_command(&["apply", bed.config.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft apply");
    let pid = child.id() as libc::pid_t;
    let mut log = String::new();
    let mut meanwhile = Some(meanwhile);
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("weft's log");
        log.push_str(&line);
        log.push('\n');
        if line.contains(at) {
            if let Some(f) = meanwhile.take() {
                // SAFETY: pid is our child's (nsenter execs weft), not yet waited for.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
                f();
                assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
            }
        }
    }
    let status = child.wait().expect("weft apply");
    assert!(
        meanwhile.is_none(),
        "no line with {at:?} in weft's log:\n{log}"
    );
    (status, log)
}

#[test]
fn a_map_too_small_is_refused_before_anything_is_touched() {
    let Some(bed) = three("a_map_too_small_is_refused_before_anything_is_touched") else {
        return;
    };
    bed.write("policy.yaml", WEB_80);
    bed.apply();
    let routes = weft_routes(&bed);
    let default_size = max_entries(&bed, "weft_iface");
    assert!(tcp_ok(&bed.w(2).ns, B, 80) && !tcp_ok(&bed.w(2).ns, B, 8080));

    // Three endpoints, room for two.
    bed.write("felix.yaml", &felix("  bpfMapSizeIfState: 2\n"));
    let dir = bed.config.to_str().expect("utf-8 path");
    let v = bed.weft(&["validate", dir]);
    let out = output_text(&v);
    assert_eq!(v.status.code(), Some(1), "validate refuses it:\n{out}");
    assert!(
        out.contains("felix.yaml:1:1: FelixConfiguration default:")
            && out.contains("weft_iface would hold 3 entries and holds at most 2")
            && out.contains("bpfMapSizeIfState"),
        "validate names the file, the map and the setting to raise:\n{out}"
    );

    let a = bed.weft(&["apply", dir]);
    let out = output_text(&a);
    assert!(!a.status.success(), "apply refuses it:\n{out}");
    assert!(
        out.contains("bpfMapSizeIfState") && !out.contains("E2BIG") && !out.contains("too long"),
        "apply names the setting, not the errno:\n{out}"
    );
    assert!(
        !out.contains("] write ") && !out.contains("] replace map"),
        "nothing ran:\n{out}"
    );
    // The live state is the last good one.
    assert_eq!(max_entries(&bed, "weft_iface"), default_size);
    assert_eq!(iface_entries(&bed), ["calia", "calib", "calic"]);
    assert_eq!(weft_routes(&bed), routes);
    assert!(tcp_ok(&bed.w(2).ns, B, 80) && !tcp_ok(&bed.w(2).ns, B, 8080));
}

#[test]
fn shrinking_a_map_while_endpoints_go_keeps_exactly_the_live_ones() {
    let Some(mut bed) = Bed::new("shrinking_a_map_while_endpoints_go_keeps_exactly_the_live_ones")
    else {
        return;
    };
    let labels: Vec<(&str, &str)> = ["client", "web", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|v| ("app", *v))
        .collect();
    bed.shop(SHOP_NAMESPACE, "wl", &labels);
    tcp_server(&bed.w(1).ns, 80);
    tcp_server(&bed.w(1).ns, 8080);
    bed.write("felix.yaml", &felix("  bpfMapSizeIfState: 10\n"));
    bed.write("policy.yaml", WEB_80);
    bed.apply();
    assert_eq!(iface_entries(&bed).len(), 8);

    // Six endpoints go and the map shrinks to 3 in the same change: a copy of the old
    // entries would fill the new map with departed ones and leave no room for a or b.
    for n in ["c", "d", "e", "f", "g", "h"] {
        bed.remove(&format!("wl/{n}.yaml"));
    }
    bed.write("felix.yaml", &felix("  bpfMapSizeIfState: 3\n"));
    let out = bed.apply();
    assert_eq!(max_entries(&bed, "weft_iface"), 3, "{}", output_text(&out));
    assert_eq!(iface_entries(&bed), ["calia", "calib"]);
    let (code, diff) = bed.diff();
    assert_eq!(code, 0, "converged, and stays so:\n{diff}");
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a reaches b's open port");
    assert!(!tcp_ok(&bed.w(0).ns, B, 8080), "and not the closed one");
}

#[test]
fn an_interface_that_goes_away_during_apply_is_skipped_and_the_rest_converge() {
    let Some(bed) =
        three("an_interface_that_goes_away_during_apply_is_skipped_and_the_rest_converge")
    else {
        return;
    };
    bed.write("policy.yaml", WEB_80);
    // Stop weft after a's settings, while it loads rulesets (milliseconds before its
    // attachments: stopped at the line just before them, weft could be past them before the
    // signal lands), and take a's interface away, as a workload deleted at that moment would.
    let (status, log) = apply_pausing(&bed, "load ruleset", || {
        bed.host.ip(&["link", "del", "calia"]);
    });
    assert!(status.success(), "the rest converged ({status}):\n{log}");
    assert!(
        log.contains("calia went away during the apply"),
        "a warning names the interface:\n{log}"
    );
    assert!(
        bed.bpffs.join("links/calib:ingress").exists()
            && bed.bpffs.join("links/calic:ingress").exists(),
        "b and c are attached:\n{log}"
    );
    assert_eq!(iface_entries(&bed), ["calib", "calic"], "a's entry is gone");
    assert!(tcp_ok(&bed.w(2).ns, B, 80), "c reaches b's open port");
    assert!(!tcp_ok(&bed.w(2).ns, B, 8080), "policy is enforced on b");
    let (code, diff) = bed.diff();
    assert_eq!(code, 0, "nothing left to do:\n{diff}");
}

#[test]
fn an_apply_that_fails_partway_puts_back_what_was_live() {
    let Some(bed) = three("an_apply_that_fails_partway_puts_back_what_was_live") else {
        return;
    };
    // Live: a and b, with b's port 80 open.
    let c_yaml = std::fs::read_to_string(bed.config.join("wl/c.yaml")).expect("c.yaml");
    bed.remove("wl/c.yaml");
    bed.write("policy.yaml", WEB_80);
    bed.apply();
    let routes = weft_routes(&bed);
    assert!(tcp_ok(&bed.w(0).ns, B, 80));

    // The next apply adds c and opens b's port 8080 instead of 80. Stopped at its first
    // operation (c's settings), it loses a pinned program (as if another tool unpinned it), so
    // c's attachment fails after c's settings, entries and the new rulesets went in. (Stopped
    // later, at the line before the attachment, weft could be past it before the signal
    // lands: a log line is written before its operation runs, and a map write takes
    // microseconds.)
    bed.write("wl/c.yaml", &c_yaml);
    bed.write(
        "policy.yaml",
        &WEB_80.replace("ports: [80]", "ports: [8080]"),
    );
    let (status, log) = apply_pausing(&bed, "sysctl net.ipv4.conf.calic.", || {
        std::fs::remove_file(bed.bpffs.join("progs/weft_from_wep")).expect("unpin");
    });
    assert_eq!(status.code(), Some(2), "the apply fails:\n{log}");
    assert!(
        log.contains("weft_from_wep to calic")
            && log.contains("rolled back: the live state is as it was"),
        "it says what failed, and that it rolled back:\n{log}"
    );
    // What was live before is live again: no route or entry of c, b's port 80 still open.
    assert_eq!(weft_routes(&bed), routes);
    assert!(!weft_routes(&bed).contains(&C.to_string()));
    assert_eq!(iface_entries(&bed), ["calia", "calib"]);
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "the old policy is in force");
    assert!(!tcp_ok(&bed.w(0).ns, B, 8080), "and the new one is not");

    // The same files apply on a second try.
    bed.apply();
    assert!(tcp_ok(&bed.w(0).ns, B, 8080) && !tcp_ok(&bed.w(0).ns, B, 80));
}
