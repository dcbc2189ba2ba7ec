//! Drift: someone changes what weft made behind its back; the daemon's resync puts it back,
//! logs and counts each repair, and leaves alone what is not weft's.

use std::net::Ipv4Addr;

use weft::bpf::maps::{self, IfaceValue, Plain};
use weft::bpf::Pins;
use weft_vm_tests::daemon::*;
use weft_vm_tests::*;

const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);

/// Only a may reach b, on port 80.
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

fn three(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(
        SHOP_NAMESPACE,
        "",
        &[("app", "client"), ("app", "web"), ("app", "other")],
    );
    bed.write("policy.yaml", WEB_POLICY);
    tcp_server(&bed.w(1).ns, 80);
    Some(bed)
}

fn hex(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bpftool map <verb> pinned <map> key hex .. [value hex ..]`.
fn bpftool_map(bed: &Bed, verb: &str, map: &str, key: &[u8], value: Option<&[u8]>) {
    let path = bed.bpffs.join("maps").join(map);
    let mut args: Vec<String> = vec![
        "bpftool".into(),
        "map".into(),
        verb.into(),
        "pinned".into(),
        path.display().to_string(),
        "key".into(),
        "hex".into(),
    ];
    args.extend(hex(key));
    if let Some(v) = value {
        args.push("value".into());
        args.push("hex".into());
        args.extend(hex(v));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sh(&refs);
}

fn host_sh(bed: &Bed, cmd: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", &bed.host.name];
    v.extend_from_slice(cmd);
    String::from_utf8_lossy(&sh(&v).stdout).into_owned()
}

/// Waits until the daemon has repaired `n` more objects of `kind` than `before` says, and
/// `weft diff` agrees nothing is left to do.
fn repaired(d: &mut Daemon, bed: &Bed, kind: &str, before: &serde_json::Value, n: u64) {
    let base = repairs(before, kind);
    let s = d.wait(&format!("{n} {kind} repair(s)"), |s| {
        repairs(s, kind) >= base + n
    });
    assert_eq!(
        repairs(&s, kind),
        base + n,
        "exactly {n} {kind} repair(s): {s}"
    );
    wait_for("no difference left", DEADLINE, || {
        (bed.diff().0 == 0).then_some(())
    });
}

#[test]
fn every_kind_of_drift_is_repaired_logged_and_counted() {
    let Some(bed) = three("every_kind_of_drift_is_repaired_logged_and_counted") else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "300ms"]);
    d.started();
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));
    let pins = Pins::new(&bed.bpffs);

    // A route deleted.
    let s = d.status().unwrap();
    bed.host
        .ip(&["route", "del", "10.65.0.3/32", "dev", "calib"]);
    repaired(&mut d, &bed, "route", &s, 1);
    let routes = host_sh(&bed, &["ip", "route", "show", "proto", "87"]);
    assert!(routes.contains("10.65.0.3 dev calib"), "{routes}");

    // A neighbour deleted.
    let s = d.status().unwrap();
    bed.host.ip(&["neigh", "del", "10.65.0.3", "dev", "calib"]);
    repaired(&mut d, &bed, "neighbour", &s, 1);
    let neigh = host_sh(&bed, &["ip", "neigh", "show", "proto", "87"]);
    assert!(neigh.contains("10.65.0.3 dev calib"), "{neigh}");

    // b's ingress program detached with bpftool: c could reach b meanwhile.
    let s = d.status().unwrap();
    let pin = bed.bpffs.join("links/calib:egress");
    sh(&["bpftool", "link", "detach", "pinned", pin.to_str().unwrap()]);
    repaired(&mut d, &bed, "attachment", &s, 1);
    assert!(
        !tcp_ok(&bed.w(2).ns, B, 80),
        "b's ingress policy enforced again"
    );
    // ... and its other program detached by unpinning and detaching its link.
    let s = d.status().unwrap();
    weft::bpf::link::detach_tcx(&bed.bpffs.join("links/calib:ingress")).expect("detach");
    repaired(&mut d, &bed, "attachment", &s, 1);
    assert!(bed.bpffs.join("links/calib:ingress").exists());

    // b's interface entry deleted with bpftool.
    let s = d.status().unwrap();
    let iface = weft::observe::read_entries(&pins, maps::IFACE).expect("weft_iface");
    let (key, value) = iface
        .iter()
        .find(|(_, v)| {
            IfaceValue::from_bytes(v).is_some_and(|v| maps::from_c_name(&v.name) == "calib")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("calib's entry");
    bpftool_map(&bed, "delete", maps::IFACE, &key, None);
    repaired(&mut d, &bed, "map-entry", &s, 1);
    let back = weft::observe::read_entries(&pins, maps::IFACE).expect("weft_iface");
    assert_eq!(
        back.get(&key),
        Some(&value),
        "calib's entry is back as it was"
    );

    // b's ingress ruleset removed from weft_pol_rs with bpftool: b's ingress fails closed
    // (even a, which policy allows, is refused new connections) until the repair loads it.
    let s = d.status().unwrap();
    let ruleset_in = IfaceValue::from_bytes(&value).unwrap().ruleset_in;
    bpftool_map(
        &bed,
        "delete",
        maps::POL_RS,
        &ruleset_in.to_ne_bytes(),
        None,
    );
    repaired(&mut d, &bed, "map-entry", &s, 1);
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a reaches b again");
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c still does not");

    // A per-device setting weft made, undone.
    let s = d.status().unwrap();
    host_sh(&bed, &["sysctl", "-qw", "net.ipv4.conf.calib.proxy_arp=0"]);
    repaired(&mut d, &bed, "sysctl", &s, 1);
    assert_eq!(
        host_sh(&bed, &["cat", "/proc/sys/net/ipv4/conf/calib/proxy_arp"]).trim(),
        "1"
    );

    // A pinned program removed: reloaded, and the hooks switched to it in place.
    let s = d.status().unwrap();
    std::fs::remove_file(bed.bpffs.join("progs/weft_to_wep")).expect("unpin");
    repaired(&mut d, &bed, "program", &s, 1);
    assert!(bed.bpffs.join("progs/weft_to_wep").exists());

    // A pinned map removed: recreated, refilled, and the programs reloaded to use it.
    let s = d.status().unwrap();
    std::fs::remove_file(bed.bpffs.join("maps/weft_rt4")).expect("unpin");
    repaired(&mut d, &bed, "map", &s, 1);
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "a still reaches b");
    assert!(!tcp_ok(&bed.w(2).ns, B, 80), "c still does not");

    let s = d.status().unwrap();
    assert_eq!(s["apply_errors"], 0, "{s}");
    let total: u64 = s["drift_repaired"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 9, "{s}");
    let log = d.log_text();
    for line in [
        "repairing drift: route 10.65.0.3/32 is missing",
        "repairing drift: neighbour 10.65.0.3 dev calib is missing",
        "repairing drift: attachment calib egress is changed",
        "repairing drift: attachment calib ingress is missing",
        "repairing drift: map-entry weft_iface key",
        "repairing drift: map-entry weft_pol_rs key",
        "repairing drift: sysctl net.ipv4.conf.calib.proxy_arp is changed",
        "repairing drift: program weft_to_wep is missing",
        "repairing drift: map weft_rt4 is missing",
    ] {
        assert!(log.contains(line), "the log says {line:?}:\n{log}");
    }
    let out = bed.weft(&[
        "status",
        "--state-dir",
        d.state_dir.to_str().unwrap(),
        "--bpffs",
        bed.bpffs.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("drift repaired: 9 ("), "{text}");
}

/// A workload interface is the CNI's or the operator's, not weft's: downed by its owner, it is
/// left down: weft withdraws the route the kernel removed with it (no repair, no
/// error), keeps its programs attached, and restores the route when the interface is up again.
#[test]
fn a_downed_workload_interface_is_not_weft_s_to_raise() {
    let Some(bed) = three("a_downed_workload_interface_is_not_weft_s_to_raise") else {
        return;
    };
    // No timer: the daemon is idle when the interface goes down, and its reconciles are the
    // ones the test asks for (a reconcile racing the change would fail once and be retried).
    let mut d = bed.daemon(&["--resync", "1h"]);
    let s = d.started();
    let l0 = reconciles(&s, "links");
    bed.host.ip(&["link", "set", "calib", "down"]);
    let mut s = d.wait("the interface change", |s| reconciles(s, "links") > l0);
    // ... and three resyncs later (SIGHUP asks for one):
    for _ in 0..3 {
        let r0 = reconciles(&s, "resync");
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
        s = d.wait("a resync", |s| reconciles(s, "resync") > r0);
    }
    let link = host_sh(&bed, &["ip", "-br", "link", "show", "calib"]);
    assert!(link.contains("DOWN"), "left down: {link}");
    assert_eq!(s["apply_errors"], 0, "{s}");
    assert_eq!(repairs(&s, "route"), 0, "not drift: {s}");
    let routes = host_sh(&bed, &["ip", "route", "show", "proto", "87"]);
    assert!(!routes.contains("10.65.0.3"), "{routes}");
    assert!(
        bed.bpffs.join("links/calib:egress").exists(),
        "programs stay"
    );
    bed.host.ip(&["link", "set", "calib", "up"]);
    wait_for("b's route back", DEADLINE, || {
        host_sh(&bed, &["ip", "route", "show", "proto", "87"])
            .contains("10.65.0.3 dev calib")
            .then_some(())
    });
    assert!(tcp_ok(&bed.w(0).ns, B, 80));
    assert!(!tcp_ok(&bed.w(2).ns, B, 80));
}

/// The bpfin.weft/bpfout.weft pair is weft's own (services bring it, for host processes'
/// traffic to service addresses): downed, it is raised again; deleted, it is made again, with
/// its routes, and host processes reach the service through it once more.
#[test]
fn devices_weft_owns_are_raised_and_recreated() {
    let Some(bed) = three("devices_weft_owns_are_raised_and_recreated") else {
        return;
    };
    // b's web server as a ClusterIP service; no connect-time balancing, so host sockets take
    // the route through the pair.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfConnectTimeLoadBalancing: Disabled\n",
    );
    bed.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{port: 8080, targetPort: 80}]\n",
    );
    bed.write(
        "slice.yaml",
        &format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{port: 80, protocol: TCP}}]\nendpoints:\n  - addresses: [\"{B}\"]\n    nodeName: {}\n", bed.node),
    );
    // b admits the host too.
    bed.write(
        "host-in.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: host-in}\nspec:\n  selector: app == 'web'\n  types: [Ingress]\n  ingress:\n    - {action: Allow, protocol: TCP, source: {nets: [0.0.0.0/0]}, destination: {ports: [80]}}\n",
    );
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let mut d = bed.daemon(&["--resync", "300ms"]);
    let s = d.started();
    assert_eq!(
        last_result(&s),
        "converged",
        "the pair is made in the first reconcile: {s}"
    );
    assert!(tcp_ok(&bed.host, vip, 8080), "the host reaches the service");
    let via_pair = |bed: &Bed| {
        host_sh(bed, &["ip", "route", "show", "proto", "87"])
            .contains("10.96.0.10 via 169.254.77.1 dev bpfin.weft")
    };
    assert!(
        via_pair(&bed),
        "the service address is routed into the pair"
    );

    // Downed.
    let s = d.status().unwrap();
    bed.host.ip(&["link", "set", "bpfout.weft", "down"]);
    repaired(&mut d, &bed, "device", &s, 1);
    let link = host_sh(&bed, &["ip", "-br", "link", "show", "bpfout.weft"]);
    assert!(!link.contains("DOWN"), "raised again: {link}");
    assert!(tcp_ok(&bed.host, vip, 8080), "through the pair again");

    // Deleted (a veth pair goes as a whole).
    let s = d.status().unwrap();
    bed.host.ip(&["link", "del", "bpfin.weft"]);
    let s = d.wait("both ends repaired", |now| {
        repairs(now, "device") >= repairs(&s, "device") + 2
    });
    wait_for("no difference left", DEADLINE, || {
        (bed.diff().0 == 0).then_some(())
    });
    assert!(via_pair(&bed), "the route into the pair is back");
    assert!(tcp_ok(&bed.host, vip, 8080), "through the new pair");
    let log = d.log_text();
    for line in [
        "repairing drift: device bpfout.weft is changed",
        "repairing drift: device bpfin.weft is missing",
        "repairing drift: device bpfout.weft is missing",
    ] {
        assert!(log.contains(line), "the log says {line:?}:\n{log}");
    }
    assert_eq!(s["apply_errors"], 0, "{s}");
}
