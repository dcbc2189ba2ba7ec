//! Restarting and upgrading without losing a connection: kill -9 and a restart; the programs
//! replaced under traffic (a settings change in .rodata, and a rebuilt object); conntrack
//! resized under traffic. Each test keeps 24 TCP streams busy throughout and counts the ones
//! reset, closed or stalled: zero.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use weft::bpf::maps::{Ct4Key, Ct4Value, Plain};
use weft_vm_tests::daemon::*;
use weft_vm_tests::streams::{tcp_echo_server, Streams, STALL};
use weft_vm_tests::*;

const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const PORT: u16 = 7000;
const STREAMS: usize = 24;

/// a may open connections to b:7000 and nothing else; b may be reached only from a and may
/// open nothing: b's answers pass on conntrack alone, so a flow whose conntrack entry is lost
/// stops.
const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-out, namespace: shop}
spec:
  selector: app == 'client'
  types: [Ingress, Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {selector: app == 'echo', ports: [7000]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-in, namespace: shop}
spec:
  selector: app == 'echo'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'client'}
"#;

fn bed(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(
        SHOP_NAMESPACE,
        "",
        &[("app", "client"), ("app", "echo"), ("app", "other")],
    );
    bed.write("policy.yaml", POLICY);
    tcp_echo_server(&bed.w(1).ns, PORT);
    tcp_server(&bed.w(1).ns, 80);
    Some(bed)
}

/// What runs on a hook: a pinned TCX link as bpftool shows it, (link id, program id); or, where
/// weft attached with legacy tc because the kernel has no TCX (before 6.6: no link to pin), the
/// program in weft's clsact filter, (0, program id).
fn link(bed: &Bed, pin: &str) -> (u64, u64) {
    let path = bed.bpffs.join("links").join(pin);
    if !path.exists() {
        let (iface, hook) = pin.split_once(':').expect("<iface>:<hook>");
        let hook = match hook {
            "ingress" => weft::bpf::Hook::Ingress,
            _ => weft::bpf::Hook::Egress,
        };
        let name = std::ffi::CString::new(iface).expect("interface name");
        let prog = bed.host.run(move || {
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "{name:?}: {}", std::io::Error::last_os_error());
            weft::bpf::link::query_tc(ifindex, hook).expect("tc filter query")
        });
        let prog = prog.unwrap_or_else(|| panic!("{pin}: neither a TCX link nor a tc filter"));
        return (0, u64::from(prog));
    }
    let out = sh(&[
        "bpftool",
        "-j",
        "link",
        "show",
        "pinned",
        path.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    (
        v["id"].as_u64().expect("link id"),
        v["prog_id"].as_u64().expect("prog id"),
    )
}

const PINS: [&str; 4] = [
    "calia:ingress",
    "calia:egress",
    "calib:ingress",
    "calib:egress",
];

fn links(bed: &Bed) -> Vec<(u64, u64)> {
    PINS.iter().map(|p| link(bed, p)).collect()
}

/// The object id a pinned program was built from (weft_object_id in its .rodata).
fn object_id(bed: &Bed, prog: &str) -> u64 {
    use std::os::fd::AsFd;
    let p = libbpf_rs_handle(&bed.bpffs.join("progs").join(prog));
    weft::bpf::load::program_identity(p.as_fd())
        .expect("identity")
        .expect("a weft program")
        .object_id
}

fn libbpf_rs_handle(path: &Path) -> libbpf_rs::ProgramHandle {
    libbpf_rs::ProgramHandle::from_pinned_path(path).expect("pinned program")
}

/// Packets the programs dropped for reasons other than policy: during an upgrade, none may be
/// (a program switched in before its maps are filled drops its endpoints' traffic as
/// spoofed or unknown; TCP would hide that behind retransmissions).
fn assert_no_stray_drops(bed: &Bed) {
    let out = bed.weft(&[
        "dump",
        "counters",
        "--json",
        "--bpffs",
        bed.bpffs.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("counters json");
    for row in rows.as_array().expect("rows") {
        for (reason, n) in row["reasons"].as_object().expect("reasons") {
            // The workloads' own IPv6 (router solicitations) is dropped by design.
            assert!(
                !reason.starts_with("drop") || reason == "drop-policy" || reason == "drop-ipv6",
                "{} {}: {n} packet(s) dropped as {reason}",
                row["iface"],
                row["hook"]
            );
        }
    }
}

/// A steady trickle of UDP datagrams from a to b (one every 100 us, denied by b's policy)
/// while the test disturbs weft: the streams pause between messages, a trickle does not, so a
/// moment in which the programs drop a's packets for another reason than policy is seen in
/// the counters. Stops when the returned flag is set.
fn trickle(
    bed: &Bed,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let t = bed.w(0).ns.spawn(move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        let mut sent = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if s.send_to(b"x", (B, 9)).is_ok() {
                sent += 1;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        sent
    });
    (stop, t)
}

fn assert_none_lost(streams: Streams) {
    let r = streams.stop();
    eprintln!(
        "{} streams, {} messages echoed, {} lost",
        r.streams,
        r.rounds,
        r.lost.len()
    );
    assert_eq!(r.streams, STREAMS);
    assert!(
        r.lost.is_empty(),
        "{} of {} streams lost: {:#?}",
        r.lost.len(),
        r.streams,
        r.lost
    );
    assert!(r.rounds > 0);
}

#[test]
fn kill_9_and_a_restart_lose_no_connection_and_detach_nothing() {
    let Some(bed) = bed("kill_9_and_a_restart_lose_no_connection_and_detach_nothing") else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "1h"]);
    d.started();
    let streams = Streams::open(&bed.w(0).ns, B, PORT, STREAMS);
    streams.wait_progress(3, STALL);
    let before = links(&bed);

    d.kill9();
    // Nobody runs weft now: the dataplane still carries and still enforces.
    streams.wait_progress(3, STALL);
    assert!(!tcp_ok(&bed.w(2).ns, B, PORT), "c is still kept out");

    let mut d = bed.daemon(&["--resync", "1h"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");
    assert_eq!(
        s["last_reconcile"]["operations"], 0,
        "the restart adopts everything and changes nothing: {s}"
    );
    assert_eq!(
        links(&bed),
        before,
        "the same links, running the same programs"
    );
    streams.wait_progress(3, STALL);
    assert_no_stray_drops(&bed);
    assert_none_lost(streams);
}

#[test]
fn a_settings_change_replaces_the_programs_in_place_under_traffic() {
    let Some(bed) = bed("a_settings_change_replaces_the_programs_in_place_under_traffic") else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "1h"]);
    d.started();
    let streams = Streams::open(&bed.w(0).ns, B, PORT, STREAMS);
    streams.wait_progress(3, STALL);
    let before = links(&bed);

    // defaultEndpointToHostAction lives in the programs' .rodata: new programs.
    let applies = d.status().unwrap()["applies"].as_u64().unwrap();
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  defaultEndpointToHostAction: Accept\n",
    );
    let s = d.wait("the programs' replacement", |s| {
        s["applies"].as_u64().unwrap() > applies
    });
    assert_eq!(last_result(&s), "converged", "{s}");
    let after = links(&bed);
    for ((l0, p0), (l1, p1)) in before.iter().zip(&after) {
        assert_eq!(l0, l1, "the same link, updated in place");
        assert_ne!(p0, p1, "running a new program");
    }
    streams.wait_progress(3, STALL);
    assert_no_stray_drops(&bed);
    assert_none_lost(streams);
}

/// The weft binary of this build with its BPF object compiled for the BPF ISA v3 (32-bit
/// subregisters and jumps): the same source, different instructions throughout. Built by
/// scripts/test.sh as `weft-rebuilt` beside `weft`, or named by $WEFT_BIN_REBUILT.
fn rebuilt_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WEFT_BIN_REBUILT") {
        return p.into();
    }
    let bin = Bed::weft_bin().with_file_name("weft-rebuilt");
    assert!(
        bin.exists(),
        "{} is missing: build it as scripts/test.sh does (WEFT_BPF_CFLAGS=-mcpu=v3 cargo build -p weft, copied to weft-rebuilt)",
        bin.display()
    );
    bin
}

#[test]
fn a_rebuilt_object_replaces_the_programs_in_place_under_traffic() {
    let Some(bed) = bed("a_rebuilt_object_replaces_the_programs_in_place_under_traffic") else {
        return;
    };
    let rebuilt = rebuilt_bin();
    let mut d = bed.daemon(&["--resync", "1h"]);
    d.started();
    let old_object = object_id(&bed, "weft_from_wep");
    let streams = Streams::open(&bed.w(0).ns, B, PORT, STREAMS);
    streams.wait_progress(3, STALL);
    let before = links(&bed);

    // The upgrade: stop this weft, start the rebuilt one on the same pins.
    let (stop, sender) = trickle(&bed);
    d.term();
    let mut d = bed.daemon_with(&rebuilt, &["--resync", "1h"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}\n{}", d.log_text());
    assert!(
        d.log_text().contains("load weft_wep programs"),
        "the rebuilt weft loaded its own programs:\n{}",
        d.log_text()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(sender.join().expect("sender") > 0);
    let new_object = object_id(&bed, "weft_from_wep");
    assert_ne!(old_object, new_object, "a different object runs now");
    let after = links(&bed);
    for ((l0, p0), (l1, p1)) in before.iter().zip(&after) {
        assert_eq!(l0, l1, "the same link, updated in place");
        assert_ne!(p0, p1, "running a program of the new object");
    }
    streams.wait_progress(3, STALL);
    assert!(!tcp_ok(&bed.w(2).ns, B, PORT), "the new programs enforce");
    assert_no_stray_drops(&bed);
    assert_none_lost(streams);
}

#[test]
fn resizing_conntrack_under_traffic_keeps_established_connections() {
    let Some(bed) = bed("resizing_conntrack_under_traffic_keeps_established_connections") else {
        return;
    };
    let mut d = bed.daemon(&["--resync", "1h"]);
    d.started();
    let streams = Streams::open(&bed.w(0).ns, B, PORT, STREAMS);
    streams.wait_progress(3, STALL);
    let pins = weft::bpf::Pins::new(&bed.bpffs);
    let fill = |name: &str| {
        weft::bpf::stats::map_fill(&pins)
            .expect("map fill")
            .into_iter()
            .find(|m| m.name == name)
            .expect("map")
    };
    assert_eq!(fill("weft_ct4").max_entries, 512_000);
    // The streams' conntrack entries (to b's port) and when each was created.
    let flows = || -> std::collections::BTreeMap<weft::bpf::maps::Bytes, u64> {
        weft::observe::read_entries(&pins, "weft_ct4")
            .expect("weft_ct4")
            .into_iter()
            .filter_map(|(k, v)| {
                let key = Ct4Key::from_bytes(&k)?;
                // Ports in conntrack keys are in host byte order.
                let to_b = key.port_a == PORT || key.port_b == PORT;
                to_b.then_some((k, Ct4Value::from_bytes(&v)?.created_ns))
            })
            .collect()
    };
    let before = flows();
    assert_eq!(before.len(), STREAMS, "one entry per stream");

    let applies = d.status().unwrap()["applies"].as_u64().unwrap();
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfMapSizeConntrack: 4096\n",
    );
    let s = d.wait("the resize", |s| s["applies"].as_u64().unwrap() > applies);
    assert_eq!(last_result(&s), "converged", "{s}");
    let ct = fill("weft_ct4");
    assert_eq!(ct.max_entries, 4096);
    assert!(
        ct.entries >= STREAMS as u64,
        "the streams' entries came along: {ct:?}"
    );
    // Copied, not recreated by the streams' next packets: each was created when it was.
    let after = flows();
    for (k, created) in &before {
        assert_eq!(
            after.get(k),
            Some(created),
            "an established flow's entry was migrated"
        );
    }
    assert!(
        d.log_text()
            .contains("migrated the entries of a replaced map"),
        "{}",
        d.log_text()
    );
    streams.wait_progress(3, STALL);
    assert!(!tcp_ok(&bed.w(2).ns, B, PORT), "policy still enforced");
    assert_no_stray_drops(&bed);
    assert_none_lost(streams);
}
