//! Conntrack garbage collection: the weft_ctgc program run over a conntrack map holding flows
//! in every state, some made by the datapath itself (a service flow's entry pair), aged by
//! moving their timestamps back.

use std::net::Ipv4Addr;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags};
use weft::bpf::ctgc::{Collector, CtTimeouts};
use weft::bpf::maps::{
    self, Ct4Key, Ct4Value, NatBackend, NatBackendKey, NatFrontend, NatFrontendKey, Plain,
};
use weft_golden::harness::*;
use weft_golden::packet::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 1);

const SYN: u8 = maps::CT_LEG_SYN;
const ACK: u8 = maps::CT_LEG_ACK;
const FIN: u8 = maps::CT_LEG_FIN;
const RST: u8 = maps::CT_LEG_RST;

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns().
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn secs(s: u64) -> u64 {
    s * 1_000_000_000
}

/// Writes a flow from A:sport to B:dport with the given legs' TCP flags (a = A's), created
/// `created_ago` and last seen `idle` ago.
fn put(h: &Harness, sport: u16, proto: u8, flags: (u8, u8), created_ago: u64, idle: u64) -> Ct4Key {
    let (key, a_is_a) = ct4_key(A, sport, B, 80, proto);
    let now = now_ns();
    let back = |by: u64| {
        now.checked_sub(by).unwrap_or_else(|| {
            panic!(
                "this test ages entries {} s back on CLOCK_MONOTONIC: the machine must be up that long",
                by / secs(1)
            )
        })
    };
    let mut v = Ct4Value {
        created_ns: back(created_ago),
        last_seen_ns: back(idle),
        ..Default::default()
    };
    let (fa, fb) = if a_is_a { flags } else { (flags.1, flags.0) };
    v.leg_a.tcp_flags = fa;
    v.leg_b.tcp_flags = fb;
    v.leg_a.approved_by = 1;
    h.map(maps::CT4)
        .update(key.as_bytes(), v.as_bytes(), MapFlags::ANY)
        .expect("conntrack entry");
    key
}

/// Moves every timestamp of the entry under `key` back by `by`.
fn age(h: &Harness, key: &Ct4Key, by: u64) {
    let mut v = h.ct_get(key).expect("entry to age");
    v.created_ns -= by;
    v.last_seen_ns -= by;
    h.map(maps::CT4)
        .update(key.as_bytes(), v.as_bytes(), MapFlags::ANY)
        .expect("aged entry");
}

fn collector(h: &Harness) -> Collector {
    Collector::load(&h.pins)
        .expect("loading weft_ctgc")
        .expect("a pinned conntrack map")
}

#[test]
fn each_state_expires_after_its_own_timeout() {
    let Some(h) = Harness::load("ctgc_states") else {
        return;
    };
    // Timeouts of their own, shorter than Calico's hour for established flows, so that every
    // timestamp stays after boot (CLOCK_MONOTONIC starts there) on a machine just started.
    let old = secs(70);
    let t = CtTimeouts {
        creation_grace: Duration::from_secs(10),
        tcp_syn_sent: Duration::from_secs(20),
        tcp_established: Duration::from_secs(50),
        tcp_fins_seen: Duration::from_secs(30),
        tcp_reset_seen: Duration::from_secs(40),
        udp: Duration::from_secs(45),
        generic: Duration::from_secs(60),
        icmp: Duration::from_secs(5),
    };
    // (sport, proto, legs, idle, expected to go)
    type Case = (u16, u8, (u8, u8), u64, bool);
    let cases: &[Case] = &[
        (1, 6, (SYN, 0), secs(21), true), // SYN sent
        (2, 6, (SYN, 0), secs(19), false),
        (3, 6, (SYN | ACK, SYN | ACK), secs(21), false), // established
        (4, 6, (SYN | ACK, SYN | ACK), secs(51), true),
        (5, 6, (ACK, ACK), secs(49), false), // picked up mid-flow: established
        (6, 6, (ACK | FIN, ACK | FIN), secs(31), true), // FINs seen
        (7, 6, (ACK | FIN, ACK), secs(31), false), // one FIN: still established
        (8, 6, (ACK | RST, ACK), secs(41), true), // RST seen
        (9, 6, (ACK | RST, ACK), secs(39), false),
        (10, 17, (0, 0), secs(46), true), // UDP
        (11, 17, (0, 0), secs(44), false),
        (12, 1, (0, 0), secs(6), true), // ICMP
        (13, 1, (0, 0), secs(4), false),
        (14, 47, (0, 0), secs(61), true), // generic (GRE)
        (15, 47, (0, 0), secs(59), false),
    ];
    assert!(
        now_ns() > old,
        "this test needs the machine up for {} s",
        old / secs(1)
    );
    let keys: Vec<_> = cases
        .iter()
        .map(|&(sport, proto, legs, idle, _)| put(&h, sport, proto, legs, old, idle))
        .collect();

    let sweep = collector(&h).sweep(&t).expect("sweep");
    assert_eq!(sweep.scanned, cases.len() as u64);
    for (k, &(sport, proto, _, idle, goes)) in keys.iter().zip(cases) {
        assert_eq!(
            h.ct_get(k).is_none(),
            goes,
            "flow {sport} (protocol {proto}) idle {} s",
            idle / secs(1)
        );
    }
    let expired: Vec<_> = sweep.expired.iter().map(|(r, n)| (*r, *n)).collect();
    assert_eq!(
        expired,
        vec![
            ("generic", 1),
            ("icmp", 1),
            ("tcp-established", 1),
            ("tcp-fins-seen", 1),
            ("tcp-reset-seen", 1),
            ("tcp-syn-sent", 1),
            ("udp", 1),
        ]
    );
    assert_eq!(sweep.deleted(), 7);

    // A second pass finds nothing more to do.
    let again = collector(&h).sweep(&t).expect("second sweep");
    assert_eq!(again.scanned, 8);
    assert_eq!(again.deleted(), 0);
}

#[test]
fn configured_timeouts_and_the_creation_grace_period_apply() {
    let Some(h) = Harness::load("ctgc_config") else {
        return;
    };
    let t = CtTimeouts {
        creation_grace: Duration::from_secs(10),
        udp: Duration::from_secs(2),
        ..CtTimeouts::default()
    };
    // Idle past the UDP timeout, but one is younger than the grace period.
    let young = put(&h, 1, 17, (0, 0), secs(5), secs(3));
    let grown = put(&h, 2, 17, (0, 0), secs(11), secs(3));
    let fresh = put(&h, 3, 17, (0, 0), secs(11), secs(1));
    let sweep = collector(&h).sweep(&t).expect("sweep");
    assert!(h.ct_get(&young).is_some(), "inside the grace period");
    assert!(h.ct_get(&grown).is_none(), "past grace and idle 3 s > 2 s");
    assert!(h.ct_get(&fresh).is_some(), "idle 1 s < 2 s");
    assert_eq!(sweep.expired.get("udp"), Some(&1));
}

/// A client on IFINDEX and a service VIP:80/tcp with one backend on 8080; returns the harness
/// after the client's SYN made the service flow's entry pair.
fn service_flow(test: &str, sport: u16) -> Option<Harness> {
    let h = Harness::load(test)?;
    h.route(A, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let rs = h.ruleset(&allow_all());
    h.iface(IFINDEX, rs, rs);
    let fk = NatFrontendKey {
        addr: maps::addr_be(VIP),
        port: 80,
        proto: 6,
        pad: 0,
    };
    let fe = NatFrontend {
        svc_id: 9,
        count: 1,
        local_count: 1,
        ..Default::default()
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), MapFlags::ANY)
        .expect("frontend");
    let bk = NatBackendKey {
        svc_id: 9,
        ordinal: 0,
    };
    let be = NatBackend {
        addr: maps::addr_be(BACKEND),
        port: 8080,
        pad: 0,
    };
    h.map(maps::NAT_BE4)
        .update(bk.as_bytes(), be.as_bytes(), MapFlags::ANY)
        .expect("backend");
    let out = h.run("weft_from_wep", &tcp(A, sport, VIP, 80, TCP_SYN));
    assert_eq!(out.retval, PASS);
    Some(h)
}

fn of_type(h: &Harness, t: u8) -> Vec<Ct4Key> {
    h.ct()
        .into_iter()
        .filter(|(_, v)| v.r#type == t)
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn a_service_flows_entries_go_together() {
    let Some(h) = service_flow("ctgc_nat_pair", 40000) else {
        return;
    };
    // A plain flow beside it, just as old, keeps the sweep honest about what it counts.
    let plain = put(&h, 2, 6, (SYN, 0), secs(100), secs(100));
    let rev = of_type(&h, maps::CT_NAT_REV);
    let fwd = of_type(&h, maps::CT_NAT_FWD);
    assert_eq!((rev.len(), fwd.len()), (1, 1), "{:?}", h.ct());
    let t = CtTimeouts::default();

    // Young: nothing goes.
    let sweep = collector(&h).sweep(&t).expect("sweep");
    assert_eq!(
        sweep.expired.get("tcp-syn-sent"),
        Some(&1),
        "only the plain flow"
    );
    assert!(h.ct_get(&plain).is_none());
    assert_eq!(h.ct().len(), 2);

    // The forward entry never sees traffic of its own: ageing it alone changes nothing, its
    // reverse entry decides.
    age(&h, &fwd[0], secs(100));
    assert_eq!(collector(&h).sweep(&t).expect("sweep").deleted(), 0);
    assert_eq!(h.ct().len(), 2);

    // The reverse entry idle past the SYN-sent timeout: both go in one pass.
    age(&h, &rev[0], secs(21));
    let sweep = collector(&h).sweep(&t).expect("sweep");
    assert_eq!(sweep.expired.get("tcp-syn-sent"), Some(&1));
    assert_eq!(sweep.nat_fwd_deleted, 1, "{sweep:?}");
    assert!(h.ct().is_empty(), "left: {:?}", h.ct());
}

#[test]
fn a_forward_entry_without_its_reverse_entry_is_deleted() {
    let Some(h) = service_flow("ctgc_nat_orphan", 40001) else {
        return;
    };
    let rev = of_type(&h, maps::CT_NAT_REV);
    let fwd = of_type(&h, maps::CT_NAT_FWD);
    // As if the LRU had evicted the reverse entry.
    h.map(maps::CT4)
        .delete(rev[0].as_bytes())
        .expect("deleting the reverse entry");
    let t = CtTimeouts::default();
    assert_eq!(
        collector(&h).sweep(&t).expect("sweep").deleted(),
        0,
        "inside the grace period a pair may be half made"
    );
    age(&h, &fwd[0], secs(11));
    let sweep = collector(&h).sweep(&t).expect("sweep");
    assert_eq!(sweep.expired.get("nat-orphan"), Some(&1));
    assert!(h.ct().is_empty());
}

#[test]
fn a_sweep_after_the_datapath_made_a_flow_keeps_it_while_it_is_used() {
    let Some(h) = service_flow("ctgc_live", 40002) else {
        return;
    };
    let rev = of_type(&h, maps::CT_NAT_REV);
    age(&h, &rev[0], secs(15));
    // The backend answers: the datapath stamps the reverse entry as seen now.
    let out = h.run(
        "weft_from_wep",
        &tcp(BACKEND, 8080, A, 40002, TCP_SYN | TCP_ACK),
    );
    assert_eq!(out.retval, PASS);
    let sweep = collector(&h).sweep(&CtTimeouts::default()).expect("sweep");
    assert_eq!(sweep.deleted(), 0, "{sweep:?}");
    assert_eq!(h.ct().len(), 2);
}
