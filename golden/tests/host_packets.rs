//! Packets through a host endpoint, by BPF_PROG_TEST_RUN: the XDP program's verdicts and
//! counters (what it drops, and everything it leaves to tc), and tc's host endpoint stages.

use std::net::Ipv4Addr;

use weft::bpf::maps::{self, spec, Failsafe4Key, HepValue};
use weft::bpf::pinned::Pinned as _;
use weft::bpf::reasons;
use weft::objects::Object;
use weft::policy::flat::{AddrTerm, FlatAction, FlatRule, GroupEnd, Net4, RulesetSpec, SpanSet};
use weft_golden::harness::{Harness, DROP, IFINDEX, PASS};
use weft_golden::packet;

const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;

/// The host's address on the interface.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A source the untracked policy denies.
const BAD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

const DENY_BAD: u32 = 41;
const ALLOW_GOOD_443: u32 = 42;

/// Untracked ingress: deny everything from BAD (rule 41), allow TCP 443 from GOOD (rule 42);
/// anything else goes on.
fn untracked() -> RulesetSpec {
    let from = |set: usize| vec![AddrTerm { set, member: true }];
    RulesetSpec {
        sets: vec![
            vec![Net4::host(u32::from(BAD))],
            vec![Net4::host(u32::from(GOOD))],
        ],
        locals: vec![],
        rules: vec![
            FlatRule {
                id: DENY_BAD,
                action: FlatAction::Deny,
                group: 0,
                peer: from(0),
                local: vec![true],
                sport: SpanSet::full(),
                dport: SpanSet::full(),
            },
            FlatRule {
                id: ALLOW_GOOD_443,
                action: FlatAction::Allow,
                group: 0,
                peer: from(1),
                local: vec![true],
                sport: SpanSet::full(),
                dport: SpanSet::from_spans([(
                    weft::policy::flat::proto_port(6, 443),
                    weft::policy::flat::proto_port(6, 443),
                )]),
            },
        ],
        groups: vec![GroupEnd::Pass],
        default_rule: 99,
        open_end: true,
    }
}

/// The host object loaded, IFINDEX a host endpoint whose normal stage allows everything and
/// whose untracked ingress stage is `untracked()`; HOST is a host address; TCP 22 inbound is a
/// failsafe port.
fn host_endpoint(test: &str) -> Option<Harness> {
    let mut h = Harness::load(test)?;
    h.load_also(Object::Hep);
    let allow = h.ruleset(&weft_golden::harness::allow_all());
    let v = HepValue {
        ruleset_in: allow,
        ruleset_out: allow,
        ruleset_untracked_in: h.ruleset(&untracked()),
        ..Default::default()
    };
    set_hep(&h, &v);
    h.iface_flags(IFINDEX, maps::IFACE_F_HEP, 0, 0);
    h.route(HOST, 32, maps::RT_F_LOCAL_HOST, 0);
    let ssh = Failsafe4Key {
        prefixlen: 32,
        dir: maps::FS_IN,
        proto: 6,
        port: 22,
        addr: 0,
    };
    spec::FAILSAFE4
        .update(&h.map(spec::FAILSAFE4.name), &ssh, &1)
        .expect("failsafe entry");
    let (word, bit) = maps::fs_word(ssh.dir, ssh.proto, ssh.port);
    spec::FS_PORTS
        .update(&h.map(spec::FS_PORTS.name), &word, &bit)
        .expect("failsafe port bit");
    Some(h)
}

/// IFINDEX's weft_hep entry.
fn set_hep(h: &Harness, v: &HepValue) {
    spec::HEP
        .update(&h.map(spec::HEP.name), &IFINDEX, v)
        .expect("hep entry");
}

fn xdp_drops(h: &Harness) -> u64 {
    h.counter(IFINDEX, maps::HOOK_XDP, reasons::DROP_UNTRACKED)
}

#[test]
fn xdp_drops_what_untracked_policy_denies_and_passes_the_rest_to_tc() {
    let Some(h) = host_endpoint("xdp_verdicts") else {
        return;
    };
    let cases: &[(&str, Vec<u8>, i32)] = &[
        (
            "TCP from the denied source",
            packet::tcp(BAD, 4000, HOST, 80, packet::TCP_SYN),
            XDP_DROP,
        ),
        (
            "UDP from the denied source",
            packet::udp(BAD, 4000, HOST, 53),
            XDP_DROP,
        ),
        (
            "ICMP from the denied source",
            packet::icmp_echo(BAD, HOST, 8, 1),
            XDP_DROP,
        ),
        (
            "allowed: tc decides it again, in full",
            packet::tcp(GOOD, 4000, HOST, 443, packet::TCP_SYN),
            XDP_PASS,
        ),
        (
            "no rule matches: on to tc",
            packet::tcp(GOOD, 4000, HOST, 80, packet::TCP_SYN),
            XDP_PASS,
        ),
        (
            "a failsafe port, whatever the source",
            packet::tcp(BAD, 4000, HOST, 22, packet::TCP_SYN),
            XDP_PASS,
        ),
        ("ARP", packet::arp_request(BAD, HOST), XDP_PASS),
        (
            "broadcast from the denied source",
            packet::udp(BAD, 68, Ipv4Addr::BROADCAST, 67),
            XDP_PASS,
        ),
        (
            "multicast from the denied source",
            packet::udp(BAD, 5353, Ipv4Addr::new(224, 0, 0, 251), 5353),
            XDP_PASS,
        ),
        ("IPv6", packet::ipv6_udp(), XDP_PASS),
        ("another ethertype", packet::lldp(), XDP_PASS),
        (
            "a truncated TCP header still has its ports",
            packet::tcp_truncated(BAD, 4000, HOST, 80),
            XDP_DROP,
        ),
        (
            "a non-first fragment: its ports are in the first",
            packet::udp_fragment(BAD, HOST),
            XDP_PASS,
        ),
    ];
    for (what, frame, want) in cases {
        let before = xdp_drops(&h);
        let got = h.run_xdp("weft_xdp", frame).retval;
        assert_eq!(got, *want, "{what}");
        assert_eq!(
            xdp_drops(&h) - before,
            u64::from(*want == XDP_DROP),
            "{what}: counted once if dropped"
        );
    }
    assert_eq!(h.rule_hits(DENY_BAD), 4, "the deny rule counts its drops");
}

#[test]
fn xdp_passes_vlan_tagged_malformed_and_cut_frames_untouched() {
    let Some(h) = host_endpoint("xdp_malformed") else {
        return;
    };
    let denied = packet::tcp(BAD, 4000, HOST, 80, packet::TCP_SYN);
    // The same packet behind an 802.1Q tag: tc (and the stack) decide VLANs.
    let mut tagged = denied[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&denied[12..]);
    let mut bad_version = denied.clone();
    bad_version[14] = 0x65;
    let mut bad_ihl = denied.clone();
    bad_ihl[14] = 0x44;
    let cases: &[(&str, Vec<u8>)] = &[
        ("VLAN-tagged", tagged),
        ("IP version 6 in an IPv4 frame", bad_version),
        ("IHL below 5", bad_ihl),
        ("cut inside the IPv4 header", denied[..24].to_vec()),
        ("cut before its ports", denied[..14 + 20 + 2].to_vec()),
        // (BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header.)
        ("only an Ethernet header", denied[..14].to_vec()),
    ];
    for (what, frame) in cases {
        let r = h.run_xdp("weft_xdp", frame);
        assert_eq!(r.retval, XDP_PASS, "{what}");
        assert_eq!(&r.data, frame, "{what}: the frame is left as it was");
    }
    assert_eq!(xdp_drops(&h), 0);
}

#[test]
fn without_untracked_policy_xdp_has_nothing_to_drop() {
    let Some(h) = host_endpoint("xdp_no_untracked") else {
        return;
    };
    let v = HepValue {
        ruleset_in: 1,
        ruleset_out: 1,
        ..Default::default()
    };
    set_hep(&h, &v);
    let frame = packet::tcp(BAD, 4000, HOST, 80, packet::TCP_SYN);
    assert_eq!(h.run_xdp("weft_xdp", &frame).retval, XDP_PASS);
}

#[test]
fn tc_untracked_stage_drops_passes_untracked_and_leaves_failsafes_to_conntrack() {
    let Some(h) = host_endpoint("tc_untracked") else {
        return;
    };
    let count = |reason| h.counter(IFINDEX, maps::HOOK_FROM_HEP, reason);
    let denied = packet::tcp(BAD, 4000, HOST, 80, packet::TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &denied).retval, DROP);
    assert_eq!(
        count(reasons::DROP_UNTRACKED),
        1,
        "{:?}",
        h.reasons(IFINDEX, maps::HOOK_FROM_HEP)
    );

    let allowed = packet::tcp(GOOD, 4000, HOST, 443, packet::TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &allowed).retval, PASS);
    assert_eq!(count(reasons::ACCEPT_UNTRACKED), 1);
    assert!(h.ct().is_empty(), "untracked: no conntrack entry");

    // A failsafe port from the denied source: allowed before untracked policy, and tracked so
    // that the host's replies pass.
    let ssh = packet::tcp(BAD, 4000, HOST, 22, packet::TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &ssh).retval, PASS);
    assert_eq!(count(reasons::ACCEPT_FAILSAFE), 1);
    assert_eq!(h.ct().len(), 1);
    let reply = packet::tcp(HOST, 22, BAD, 4000, packet::TCP_SYN | packet::TCP_ACK);
    assert_eq!(h.run("weft_to_hep", &reply).retval, PASS);
    assert_eq!(
        h.counter(IFINDEX, maps::HOOK_TO_HEP, reasons::ACCEPT_CT),
        1,
        "the reply is the failsafe flow's"
    );

    // The host's answer on a failsafe connection it has no entry for (one open before the
    // host endpoint) passes too, whatever the policy.
    let old_session = packet::tcp(HOST, 22, BAD, 4555, packet::TCP_ACK);
    assert_eq!(h.run("weft_to_hep", &old_session).retval, PASS);
    assert_eq!(
        h.counter(IFINDEX, maps::HOOK_TO_HEP, reasons::ACCEPT_FAILSAFE),
        1
    );

    // No rule decides: on to conntrack and normal policy (which allows everything here).
    let other = packet::tcp(GOOD, 4001, HOST, 80, packet::TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &other).retval, PASS);
    assert_eq!(count(reasons::ACCEPT_POLICY), 1);
}

/// Untracked ingress by source alone: deny 203.0.113.0/24 (rule 51) but 203.0.113.8 (allowed,
/// rule 52); anything else goes on.
fn by_source() -> RulesetSpec {
    let from = |set: usize| vec![AddrTerm { set, member: true }];
    let rule = |id, action, set| FlatRule {
        id,
        action,
        group: 0,
        peer: from(set),
        local: vec![true],
        sport: SpanSet::full(),
        dport: SpanSet::full(),
    };
    RulesetSpec {
        sets: vec![
            vec![Net4::host(u32::from(Ipv4Addr::new(203, 0, 113, 8)))],
            vec![Net4::new(u32::from(Ipv4Addr::new(203, 0, 113, 0)), 24)],
            vec![Net4::host(u32::from(Ipv4Addr::new(198, 51, 100, 9)))],
        ],
        locals: vec![],
        rules: vec![
            rule(52, FlatAction::Allow, 0),
            rule(51, FlatAction::Deny, 1),
            // Its drops' counter slot is rule 51's ((ifindex ^ rule) % 1024): whichever
            // claims it on a CPU, the other counts where tc counts, and both add up.
            rule(51 + 1024, FlatAction::Deny, 2),
        ],
        groups: vec![GroupEnd::Pass],
        default_rule: 99,
        open_end: true,
    }
}

#[test]
fn a_policy_by_source_alone_is_decided_in_one_lookup() {
    let Some(h) = host_endpoint("xdp_fast_path") else {
        return;
    };
    let c = weft::policy::classify::compile(&by_source()).expect("compiles");
    let cells = weft::policy::tables::encode(&c);
    let entries = weft::desired::hosts::xdp_fast_path(IFINDEX, &cells);
    assert!(
        !entries.is_empty(),
        "a ruleset by source alone has a fast path"
    );
    assert!(
        weft::desired::hosts::xdp_fast_path(
            IFINDEX,
            &weft::policy::tables::encode(
                &weft::policy::classify::compile(&untracked()).expect("compiles")
            )
        )
        .is_empty(),
        "one that looks at a port has none"
    );
    assert!(
        entries.iter().any(|(m, _)| *m == maps::XDP_HOST4)
            && entries.iter().any(|(m, _)| *m == maps::XDP_SRC4),
        "whole addresses by exact match, prefixes in the trie"
    );
    for (map, (k, v)) in &entries {
        libbpf_rs::MapCore::update(&h.map(map), k, v, libbpf_rs::MapFlags::ANY)
            .expect("fast path entry");
    }
    // The host endpoint's own untracked ruleset would let everything on: what drops here is
    // the fast path's doing.
    let v = HepValue {
        ruleset_in: 1,
        ruleset_out: 1,
        ..Default::default()
    };
    set_hep(&h, &v);
    let cases = [
        (Ipv4Addr::new(203, 0, 113, 7), 80, XDP_DROP),
        (Ipv4Addr::new(203, 0, 113, 200), 80, XDP_DROP),
        (Ipv4Addr::new(203, 0, 113, 8), 80, XDP_PASS),
        (Ipv4Addr::new(198, 51, 100, 1), 80, XDP_PASS),
        (Ipv4Addr::new(203, 0, 113, 7), 22, XDP_PASS),
        (Ipv4Addr::new(198, 51, 100, 9), 80, XDP_DROP),
        (Ipv4Addr::new(198, 51, 100, 9), 80, XDP_DROP),
    ];
    for (src, port, want) in cases {
        let frame = packet::tcp(src, 4000, HOST, port, packet::TCP_SYN);
        assert_eq!(h.run_xdp("weft_xdp", &frame).retval, want, "{src}:{port}");
    }
    assert_eq!(xdp_drops(&h), 4);
    assert_eq!(h.rule_hits(51), 2, "the deny rule counts its drops");
    assert_eq!(
        h.rule_hits(51 + 1024),
        2,
        "and so does one whose slot was taken"
    );

    // A verdict that changes is not answered from the cache once weft voids it.
    let denied = packet::tcp(
        Ipv4Addr::new(198, 51, 100, 9),
        4000,
        HOST,
        80,
        packet::TCP_SYN,
    );
    let (map, (k, v)) = entries
        .iter()
        .find(|(m, (k, _))| *m == maps::XDP_HOST4 && k[4..] == [198, 51, 100, 9])
        .expect("the /32's entry");
    let mut allowed: maps::XdpSrcValue = maps::Plain::from_bytes(v).expect("value");
    allowed.drop = 0;
    libbpf_rs::MapCore::update(
        &h.map(map),
        k,
        maps::Plain::as_bytes(&allowed),
        libbpf_rs::MapFlags::ANY,
    )
    .expect("entry");
    weft::bpf::xdp::void_cache(&h.map(maps::XDP_GEN)).expect("void");
    assert_eq!(
        h.run_xdp("weft_xdp", &denied).retval,
        XDP_PASS,
        "allowed now"
    );
    libbpf_rs::MapCore::update(&h.map(map), k, v, libbpf_rs::MapFlags::ANY).expect("entry");
    weft::bpf::xdp::void_cache(&h.map(maps::XDP_GEN)).expect("void");
    assert_eq!(
        h.run_xdp("weft_xdp", &denied).retval,
        XDP_DROP,
        "denied again"
    );

    // With the cache off, a change counts from the next packet, voided or not.
    weft::bpf::xdp::set_cache(&h.map(maps::XDP_GEN), false).expect("cache off");
    let set = |value: &[u8]| {
        libbpf_rs::MapCore::update(&h.map(map), k, value, libbpf_rs::MapFlags::ANY).expect("entry")
    };
    set(maps::Plain::as_bytes(&allowed));
    assert_eq!(h.run_xdp("weft_xdp", &denied).retval, XDP_PASS);
    set(v);
    assert_eq!(h.run_xdp("weft_xdp", &denied).retval, XDP_DROP);
    // Back on, at a generation nothing cached while it was off carries.
    weft::bpf::xdp::set_cache(&h.map(maps::XDP_GEN), true).expect("cache on");
    assert_eq!(h.run_xdp("weft_xdp", &denied).retval, XDP_DROP);
}
