//! The daemon's conntrack collector on real traffic: closed connections leave the map after
//! their timeout, busy ones stay (and keep working), with the timeouts the files set.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_vm_tests::daemon::*;
use weft_vm_tests::streams::{tcp_echo_server, Streams, STALL};
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const ECHO: u16 = 7000;

const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: clients-to-b}
spec:
  selector: app == 'server'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'client'}
"#;

/// Short timeouts, so the test sees them pass; the grace period keeps a flow being set up.
const FELIX: &str = r#"apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  bpfConntrackTimeouts:
    creationGracePeriod: 1s
    tcpEstablished: 3s
    tcpFinsSeen: 2s
"#;

/// FELIX's tcpFinsSeen.
const FINS_SEEN: Duration = Duration::from_secs(2);

fn flows_to_b(bed: &Bed, port: u16) -> usize {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .args(["dump", "conntrack", "--json", "--bpffs"])
        .arg(&bed.bpffs)
        .output()
        .expect("running weft dump conntrack");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: Value = serde_json::from_slice(&out.stdout).expect("conntrack json");
    flows
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["responder"]["addr"] == B.to_string() && f["responder"]["port"] == port)
        .count()
}

#[test]
fn closed_flows_are_swept_and_busy_ones_stay() {
    let Some(mut bed) = Bed::new("closed_flows_are_swept_and_busy_ones_stay") else {
        return;
    };
    bed.workload("calia", A);
    bed.workload("calib", B);
    // The namespace's profile lets everything the policy does not judge through.
    bed.write(
        "00-namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
    );
    bed.write(
        "a.yaml",
        &bed.wep_yaml(0, "a", "shop", &[("app", "client")], &["kns.shop"]),
    );
    bed.write(
        "b.yaml",
        &bed.wep_yaml(1, "b", "shop", &[("app", "server")], &["kns.shop"]),
    );
    bed.write("policy.yaml", POLICY);
    bed.write("felix.yaml", FELIX);
    tcp_server(&bed.w(1).ns, 80);
    tcp_echo_server(&bed.w(1).ns, ECHO);

    let mut d = bed.daemon(&["--resync", "1h", "--conntrack-gc-interval", "300ms"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");

    let streams = Streams::open(&bed.w(0).ns, B, ECHO, 2);
    // Three short connections, each closed from both sides at once.
    let opened = Instant::now();
    for _ in 0..3 {
        assert!(tcp_ok(&bed.w(0).ns, B, 80));
    }
    let fresh = flows_to_b(&bed, 80);
    // Only while the first is younger than tcpFinsSeen must all three be there: under an
    // emulated CPU (the kernel matrix) the three connections alone can take longer than that.
    if opened.elapsed() < FINS_SEEN {
        assert_eq!(fresh, 3, "closed flows stay until tcpFinsSeen has passed");
    } else {
        eprintln!(
            "the connections took {:?}: too slow to see them all before tcpFinsSeen",
            opened.elapsed()
        );
    }

    wait_for(
        "the closed flows to be swept",
        Duration::from_secs(15),
        || (flows_to_b(&bed, 80) == 0).then_some(()),
    );
    let s = d.wait("the sweeps to be counted", |s| {
        s["conntrack_gc"]["deleted"]["tcp-fins-seen"].as_u64() >= Some(3)
    });
    assert!(s["conntrack_gc"]["sweeps"].as_u64() >= Some(1), "{s}");

    // Longer than tcpEstablished, while the streams keep talking: they stay.
    std::thread::sleep(Duration::from_secs(4));
    streams.wait_progress(3, STALL);
    assert_eq!(flows_to_b(&bed, ECHO), 2, "busy flows are kept");
    let r = streams.stop();
    assert!(r.lost.is_empty(), "lost: {:?}", r.lost);

    // Once idle (the streams closed: FINs), they go too.
    wait_for(
        "the streams' flows to be swept",
        Duration::from_secs(15),
        || (flows_to_b(&bed, ECHO) == 0).then_some(()),
    );
    let dir = d.state_dir.to_str().expect("utf-8 path").to_string();
    let bpffs = bed.bpffs.to_str().expect("utf-8 path").to_string();
    let status = bed.weft(&["status", "--state-dir", &dir, "--bpffs", &bpffs]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("conntrack gc:") && l.contains("tcp-fins-seen")),
        "{text}"
    );
}
