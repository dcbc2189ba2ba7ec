//! Packet tests: the real weft_wep object, its maps filled the way `weft apply` would, run on
//! hand-built packets with BPF_PROG_TEST_RUN. Each test asserts the verdict and what the
//! packet left behind: conntrack entries, reason counters and rule hit counters.
//!
//! The workload sits behind IFINDEX (`lo`: BPF_PROG_TEST_RUN needs a device that exists) and
//! owns WL. `weft_from_wep` sees what it sends (its egress ruleset), `weft_to_wep` what it
//! receives (its ingress ruleset). Tests skip only where root or bpffs is missing, and fail
//! there instead under WEFT_REQUIRE_KERNEL=1.

use std::net::Ipv4Addr;

use weft::bpf::load::{EpToHost, ProgramSettings};
use weft::bpf::maps::{self, Ct4Key, Ct4Value, Plain};
use weft::policy::flat::{proto_port, FlatAction, FlatRule, GroupEnd, RulesetSpec, SpanSet};
use weft_golden::harness::{ct4_key, Flow4, Harness, DROP, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

const FROM: &str = "weft_from_wep";
const TO: &str = "weft_to_wep";
const FROM_HOOK: u32 = maps::HOOK_FROM_WEP;
const TO_HOOK: u32 = maps::HOOK_TO_WEP;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// The workload's own address.
const WL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
/// A remote peer that sorts after WL in conntrack keys.
const PEER: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 5);
/// A remote peer that sorts before WL in conntrack keys.
const PEER_LO: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 1);
/// A router on the path, the source of ICMP errors.
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 65, 9, 1);
/// An address of this host.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

/// The rule id a deny-all ruleset's group end is counted against, unless a test says otherwise.
const DENY_ALL: u32 = 900;

// ---- Rulesets --------------------------------------------------------------------------------

/// The (protocol, port) values of one port.
fn port(proto: u8, port: u16) -> SpanSet {
    let v = proto_port(proto, port);
    SpanSet::from_spans([(v, v)])
}

/// Every (protocol, port) value of a protocol.
fn any_port(proto: u8) -> SpanSet {
    SpanSet::from_spans([(proto_port(proto, 0), proto_port(proto, u16::MAX))])
}

/// An ICMP type, any code.
fn icmp_type(t: u8) -> SpanSet {
    let base = u16::from(t) << 8;
    SpanSet::from_spans([(proto_port(ICMP, base), proto_port(ICMP, base | 0xff))])
}

/// A rule on the responder's port only: any peer, any local address, any originator's port.
fn rule(id: u32, action: FlatAction, group: usize, dport: SpanSet) -> FlatRule {
    FlatRule {
        id,
        action,
        group,
        peer: Vec::new(),
        // The endpoint's one address, then "any other".
        local: vec![true, true],
        sport: SpanSet::full(),
        dport,
    }
}

fn spec(rules: Vec<FlatRule>, groups: Vec<GroupEnd>) -> RulesetSpec {
    RulesetSpec {
        sets: Vec::new(),
        locals: vec![u32::from(WL)],
        rules,
        groups,
        default_rule: 999,
        open_end: false,
    }
}

/// One group: rule `id` allows `dport`, the group's end denies as rule `id + 1`.
fn allowing(id: u32, dport: SpanSet) -> RulesetSpec {
    spec(
        vec![rule(id, FlatAction::Allow, 0, dport)],
        vec![GroupEnd::Deny(id + 1)],
    )
}

/// Nothing is allowed; the group's end counts as rule `id`.
fn deny_all(id: u32) -> RulesetSpec {
    spec(Vec::new(), vec![GroupEnd::Deny(id)])
}

/// Everything is allowed, by rule `id`.
fn allow_all(id: u32) -> RulesetSpec {
    allowing(id, SpanSet::full())
}

// ---- Set-up ----------------------------------------------------------------------------------

/// A loaded object with the workload's interface and route in place.
struct Wep {
    h: Harness,
    ingress: u32,
    egress: u32,
}

fn workload(test: &str, ingress: &RulesetSpec, egress: &RulesetSpec) -> Option<Wep> {
    workload_with(test, ProgramSettings::default(), ingress, egress)
}

fn workload_with(
    test: &str,
    settings: ProgramSettings,
    ingress: &RulesetSpec,
    egress: &RulesetSpec,
) -> Option<Wep> {
    let h = Harness::load_with(test, settings)?;
    h.route(WL, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let ingress = h.ruleset(ingress);
    let egress = h.ruleset(egress);
    h.iface(IFINDEX, ingress, egress);
    Some(Wep { h, ingress, egress })
}

impl Wep {
    /// The workload sends `packet`: weft_from_wep runs (its egress policy).
    fn sends(&self, packet: &[u8]) -> i32 {
        self.h.run(FROM, packet).retval
    }

    /// `packet` is on its way to the workload: weft_to_wep runs (its ingress policy).
    fn receives(&self, packet: &[u8]) -> i32 {
        self.h.run(TO, packet).retval
    }

    /// The one conntrack entry there must be.
    fn only_flow(&self) -> (Ct4Key, Ct4Value) {
        let ct = self.h.ct();
        assert_eq!(ct.len(), 1, "conntrack: {ct:?}");
        ct[0]
    }
}

fn same_key(a: &Ct4Key, b: &Ct4Key) -> bool {
    a.as_bytes() == b.as_bytes()
}

// ---- New flows and conntrack -----------------------------------------------------------------

#[test]
fn tcp_syn_allowed_creates_a_flow_approved_by_the_egress_ruleset() {
    let Some(w) = workload(
        "tcp_syn_allowed",
        &deny_all(DENY_ALL),
        &allowing(11, port(TCP, 80)),
    ) else {
        return;
    };
    let (want, wl_is_a) = ct4_key(WL, 40000, PEER, 80, TCP);
    assert!(wl_is_a, "PEER must sort after WL for this test");

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);

    let (k, v) = w.only_flow();
    assert!(same_key(&k, &want), "key {k:?}, want {want:?}");
    assert_eq!(v.r#type, maps::CT_NORMAL);
    assert_eq!(v.flags, 0, "side a originated, with a SYN");
    assert_eq!(v.leg_a.approved_by, w.egress);
    assert_eq!(v.leg_a.tcp_flags, maps::CT_LEG_SYN);
    assert_eq!((v.leg_b.approved_by, v.leg_b.tcp_flags), (0, 0));
    assert!(v.created_ns != 0 && v.last_seen_ns == v.created_ns);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-policy", 1)]);
    assert_eq!(w.h.rule_hits(11), 1);
}

#[test]
fn a_flow_originated_by_side_b_is_marked_so() {
    let Some(w) = workload("side_b", &deny_all(DENY_ALL), &allowing(11, port(TCP, 80))) else {
        return;
    };
    let (want, wl_is_a) = ct4_key(WL, 40000, PEER_LO, 80, TCP);
    assert!(!wl_is_a, "PEER_LO must sort before WL for this test");

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER_LO, 80, TCP_SYN)), PASS);

    let (k, v) = w.only_flow();
    assert!(same_key(&k, &want), "key {k:?}, want {want:?}");
    assert_eq!(v.flags, maps::CT_F_B_ORIGINATED);
    assert_eq!(v.leg_b.approved_by, w.egress);
    assert_eq!(v.leg_b.tcp_flags, maps::CT_LEG_SYN);
    assert_eq!((v.leg_a.approved_by, v.leg_a.tcp_flags), (0, 0));
}

#[test]
fn an_incoming_flow_approves_the_workloads_leg_with_its_ingress_ruleset() {
    let Some(w) = workload(
        "incoming",
        &allowing(71, port(TCP, 8080)),
        &deny_all(DENY_ALL),
    ) else {
        return;
    };
    let (want, peer_is_a) = ct4_key(PEER, 50000, WL, 8080, TCP);
    assert!(!peer_is_a, "PEER must sort after WL for this test");

    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, WL, 8080, TCP_SYN)),
        PASS
    );

    let (k, v) = w.only_flow();
    assert!(same_key(&k, &want), "key {k:?}, want {want:?}");
    assert_eq!(
        v.flags,
        maps::CT_F_B_ORIGINATED,
        "the peer, side b, sent the SYN"
    );
    // The workload (side a) answers: its leg is approved, by its ingress ruleset; the peer's
    // leg carries the SYN it sent and no approval (the peer is not weft's).
    assert_eq!((v.leg_a.approved_by, v.leg_a.tcp_flags), (w.ingress, 0));
    assert_eq!(
        (v.leg_b.approved_by, v.leg_b.tcp_flags),
        (0, maps::CT_LEG_SYN)
    );
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-policy", 1)]);
    assert_eq!(w.h.rule_hits(71), 1);

    // The workload's SYN-ACK passes on conntrack, although its egress denies everything.
    assert_eq!(
        w.sends(&packet::tcp(WL, 8080, PEER, 50000, TCP_SYN | TCP_ACK)),
        PASS
    );
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-conntrack", 1)]);
    assert_eq!(w.h.rule_hits(DENY_ALL), 0);
}

#[test]
fn the_reply_passes_on_conntrack_whatever_the_ingress_ruleset_says() {
    let Some(w) = workload("reply", &deny_all(DENY_ALL), &allowing(11, port(TCP, 80))) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);

    let syn_ack = packet::tcp(PEER, 80, WL, 40000, TCP_SYN | TCP_ACK);
    assert_eq!(w.receives(&syn_ack), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-conntrack", 1)]);
    assert_eq!(w.h.rule_hits(DENY_ALL), 0, "policy was not consulted");
    let (_, v) = w.only_flow();
    assert_eq!(v.leg_b.tcp_flags, maps::CT_LEG_SYN | maps::CT_LEG_ACK);
    assert_eq!(v.leg_b.approved_by, 0, "a reply approves nothing");
    assert!(v.last_seen_ns >= v.created_ns);

    // The same ingress ruleset does deny a flow of its own.
    assert_eq!(w.receives(&packet::tcp(PEER, 80, WL, 40001, TCP_SYN)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, TO_HOOK),
        [("accept-conntrack", 1), ("drop-policy", 1)]
    );
    assert_eq!(w.h.rule_hits(DENY_ALL), 1);
}

#[test]
fn tcp_syn_denied_by_policy_leaves_no_flow() {
    let Some(w) = workload(
        "tcp_denied",
        &deny_all(DENY_ALL),
        &allowing(11, port(TCP, 80)),
    ) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 81, TCP_SYN)), DROP);
    assert!(w.h.ct().is_empty());
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-policy", 1)]);
    assert_eq!((w.h.rule_hits(11), w.h.rule_hits(12)), (0, 1));

    // And its reply, should one come, is a new flow that the ingress ruleset denies.
    assert_eq!(
        w.receives(&packet::tcp(PEER, 81, WL, 40000, TCP_SYN | TCP_ACK)),
        DROP
    );
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("drop-policy", 1)]);
}

#[test]
fn a_tcp_packet_without_a_flow_is_judged_and_marked_midflow() {
    // After a restart that lost conntrack, established connections reappear mid-flow.
    let Some(w) = workload("midflow", &deny_all(DENY_ALL), &allowing(11, port(TCP, 80))) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_ACK)), PASS);
    let (_, v) = w.only_flow();
    assert_eq!(v.flags, maps::CT_F_MIDFLOW);
    assert_eq!(v.leg_a.tcp_flags, maps::CT_LEG_ACK);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-policy", 1)]);

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 81, TCP_ACK)), DROP);
    assert_eq!(w.h.ct().len(), 1);
}

#[test]
fn udp_allowed_passes_both_ways_and_udp_denied_does_not() {
    let Some(w) = workload("udp", &deny_all(DENY_ALL), &allowing(21, port(UDP, 53))) else {
        return;
    };
    assert_eq!(w.sends(&packet::udp(WL, 5353, PEER, 53)), PASS);
    let (k, v) = w.only_flow();
    assert!(
        same_key(&k, &ct4_key(WL, 5353, PEER, 53, UDP).0),
        "key {k:?}"
    );
    assert_eq!(v.leg_a.approved_by, w.egress);
    assert_eq!(v.leg_a.tcp_flags, 0, "UDP has no flags");
    assert_eq!(w.receives(&packet::udp(PEER, 53, WL, 5353)), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-conntrack", 1)]);

    assert_eq!(w.sends(&packet::udp(WL, 5353, PEER, 54)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("accept-policy", 1), ("drop-policy", 1)]
    );
    assert_eq!((w.h.rule_hits(21), w.h.rule_hits(22)), (1, 1));
    assert_eq!(w.h.ct().len(), 1);
}

#[test]
fn icmp_echo_allowed_and_its_reply_passes_on_conntrack() {
    let Some(w) = workload(
        "icmp_echo",
        &deny_all(DENY_ALL),
        &allowing(31, icmp_type(8)),
    ) else {
        return;
    };
    assert_eq!(w.sends(&packet::icmp_echo(WL, PEER, 8, 77)), PASS);
    let (k, v) = w.only_flow();
    // The identifier is the requester's port, the identifier plus one the responder's.
    assert!(
        same_key(&k, &ct4_key(WL, 77, PEER, 78, ICMP).0),
        "key {k:?}"
    );
    assert_eq!(v.leg_a.approved_by, w.egress);
    assert_eq!(w.h.rule_hits(31), 1);

    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 0, 77)), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-conntrack", 1)]);

    // A reply to a request never sent (another identifier) has no flow: the ingress ruleset
    // judges it, and denies it.
    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 0, 78)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, TO_HOOK),
        [("accept-conntrack", 1), ("drop-policy", 1)]
    );
    // An echo request the egress ruleset does not allow (to another type: timestamp).
    assert_eq!(w.sends(&packet::icmp_echo(WL, PEER, 13, 79)), DROP);
    assert_eq!(w.h.rule_hits(32), 1);
}

#[test]
fn an_echo_reply_is_judged_as_its_request_after_a_policy_change() {
    let Some(w) = workload(
        "icmp_rejudged",
        &deny_all(DENY_ALL),
        &allowing(31, icmp_type(8)),
    ) else {
        return;
    };
    let reply = packet::icmp_echo(PEER, WL, 0, 77);
    assert_eq!(w.sends(&packet::icmp_echo(WL, PEER, 8, 77)), PASS);

    // A new egress ruleset that still allows echo requests (type 8), not replies (type 0).
    let pings =
        w.h.ruleset(&allowing(33, icmp_type(8).union(&icmp_type(13))));
    w.h.iface(IFINDEX, w.ingress, pings);
    assert_eq!(w.receives(&reply), PASS);
    assert_eq!(w.h.rule_hits(33), 1);
    let (_, v) = w.only_flow();
    assert_eq!(v.leg_a.approved_by, pings);

    // One that allows replies but not requests: the flow, a request's, is denied.
    let replies = w.h.ruleset(&allowing(35, icmp_type(0)));
    w.h.iface(IFINDEX, w.ingress, replies);
    assert_eq!(w.receives(&reply), DROP);
    assert_eq!((w.h.rule_hits(35), w.h.rule_hits(36)), (0, 1));
}

/// A request the other way is no reply, whatever its identifier: timestamp requests, whose
/// identifier is often 0 in both directions, and echo requests that mirror the workload's own.
#[test]
fn an_icmp_request_the_other_way_is_a_flow_of_its_own() {
    let Some(w) = workload(
        "icmp_mirrored",
        &allowing(41, icmp_type(8)),
        &allowing(31, icmp_type(8).union(&icmp_type(13))),
    ) else {
        return;
    };
    assert_eq!(w.sends(&packet::icmp_echo(WL, PEER, 13, 0)), PASS);
    assert_eq!(w.sends(&packet::icmp_echo(WL, PEER, 8, 77)), PASS);
    assert_eq!(w.h.ct().len(), 2);
    // The replies pass on their flows.
    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 14, 0)), PASS);
    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 0, 77)), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-conntrack", 2)]);
    // The peer's own timestamp request is judged by the ingress ruleset, which allows only
    // echo requests; its echo request with the workload's identifier is allowed, as a flow of
    // its own.
    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 13, 0)), DROP);
    assert_eq!(w.h.rule_hits(42), 1);
    assert_eq!(w.receives(&packet::icmp_echo(PEER, WL, 8, 77)), PASS);
    assert_eq!(w.h.rule_hits(41), 1);
    assert_eq!(w.h.ct().len(), 3);
}

/// A UDP packet from the workload as an ICMP error quotes it: IP header and 8 bytes.
fn quoted_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    packet::ipv4_raw(src, dst, UDP, &[], &packet::udp_hdr(sport, dport, b"weft"))
}

#[test]
fn an_icmp_error_about_a_known_flow_passes_as_related() {
    let Some(w) = workload(
        "icmp_related",
        &deny_all(DENY_ALL),
        &allowing(21, port(UDP, 53)),
    ) else {
        return;
    };
    assert_eq!(w.sends(&packet::udp(WL, 5353, PEER, 53)), PASS);

    // Port unreachable, from a router on the way: only the quoted tuple ties it to the flow.
    let error = packet::icmp_error(ROUTER, WL, 3, 3, &quoted_udp(WL, 5353, PEER, 53));
    assert_eq!(w.receives(&error), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-related-icmp", 1)]);
    assert_eq!(w.h.rule_hits(DENY_ALL), 0);
    assert_eq!(w.h.ct().len(), 1, "an error is not a flow of its own");

    // The same error about another port of the same peer is not related.
    let other = packet::icmp_error(ROUTER, WL, 3, 3, &quoted_udp(WL, 5354, PEER, 53));
    assert_eq!(w.receives(&other), DROP);
    assert_eq!(w.h.rule_hits(DENY_ALL), 1);
}

#[test]
fn an_icmp_error_about_an_unknown_flow_is_judged_by_policy() {
    let Some(w) = workload("icmp_unrelated", &deny_all(DENY_ALL), &allow_all(11)) else {
        return;
    };
    let error = packet::icmp_error(ROUTER, WL, 3, 3, &quoted_udp(WL, 5353, PEER, 53));

    assert_eq!(w.receives(&error), DROP);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("drop-policy", 1)]);
    assert_eq!(w.h.rule_hits(DENY_ALL), 1);

    // An ingress ruleset that allows port unreachable (type 3 code 3) from anyone lets it in,
    // by policy, without making a flow of it.
    let unreachable = proto_port(ICMP, 3 << 8 | 3);
    let accepting = w.h.ruleset(&allowing(
        41,
        SpanSet::from_spans([(unreachable, unreachable)]),
    ));
    w.h.iface(IFINDEX, accepting, w.egress);
    assert_eq!(w.receives(&error), PASS);
    assert_eq!(
        w.h.reasons(IFINDEX, TO_HOOK),
        [("accept-policy", 1), ("drop-policy", 1)]
    );
    assert_eq!(w.h.rule_hits(41), 1);
    assert!(w.h.ct().is_empty());

    // Code 1 (host unreachable) is another value of the ICMP "port": denied.
    let host_unreachable = packet::icmp_error(ROUTER, WL, 3, 1, &quoted_udp(WL, 5353, PEER, 53));
    assert_eq!(w.receives(&host_unreachable), DROP);
    assert_eq!(w.h.rule_hits(42), 1);
}

// ---- Parsing ---------------------------------------------------------------------------------

#[test]
fn a_truncated_tcp_header_is_dropped_as_short() {
    let Some(w) = workload("tcp_short", &allow_all(11), &allow_all(11)) else {
        return;
    };
    // The IP header says the TCP header is 10 bytes.
    assert_eq!(w.sends(&packet::tcp_truncated(WL, 40000, PEER, 80)), DROP);
    // The IP header promises 20 bytes of TCP; the frame ends 10 bytes short of them.
    let mut cut = packet::tcp(WL, 40000, PEER, 80, TCP_SYN);
    cut.truncate(cut.len() - 10);
    assert_eq!(w.sends(&cut), DROP);
    // Padded to the minimum Ethernet frame: the bytes are there, but the IP header says they
    // are not TCP.
    let mut padded = packet::tcp_truncated(WL, 40000, PEER, 80);
    padded.resize(60, 0);
    assert_eq!(w.sends(&padded), DROP);

    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-short-packet", 3)]);
    assert!(w.h.ct().is_empty());
    assert_eq!(w.h.rule_hits(11), 0);
}

#[test]
fn ip_options_move_the_l4_header_and_the_ports_are_read_after_them() {
    let Some(w) = workload(
        "ip_options",
        &deny_all(DENY_ALL),
        &allowing(11, port(TCP, 80)),
    ) else {
        return;
    };
    let allowed = packet::tcp_with_ip_options(WL, 40000, PEER, 80, TCP_SYN);
    assert_eq!(allowed[14] & 0x0f, 8, "IHL 8: 12 bytes of options");
    // Read at a fixed 20-byte offset, the "ports" would be option bytes (0x070b, 0x0400).
    assert_eq!(allowed[34..38], [7, 11, 4, 0]);

    assert_eq!(w.sends(&allowed), PASS);
    let (k, _) = w.only_flow();
    assert!(
        same_key(&k, &ct4_key(WL, 40000, PEER, 80, TCP).0),
        "key {k:?}"
    );

    let denied = packet::tcp_with_ip_options(WL, 40000, PEER, 81, TCP_SYN);
    assert_eq!(w.sends(&denied), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("accept-policy", 1), ("drop-policy", 1)]
    );
    assert_eq!((w.h.rule_hits(11), w.h.rule_hits(12)), (1, 1));
}

#[test]
fn a_later_fragment_goes_with_its_first_fragments_flow_and_alone_is_dropped() {
    let Some(w) = workload(
        "fragment",
        &deny_all(DENY_ALL),
        &allowing(11, port(UDP, 53)),
    ) else {
        return;
    };
    // Before its first fragment, a later one has no ports: dropped.
    assert_eq!(w.sends(&packet::udp_fragment(WL, PEER)), DROP);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-fragment", 1)]);
    assert!(w.h.ct().is_empty());

    // The first fragment carries the ports: an ordinary new flow, allowed.
    let first = packet::with_frag_off(packet::udp(WL, 5353, PEER, 53), packet::IP_MF);
    assert_eq!(w.sends(&first), PASS);
    let (k, _) = w.only_flow();
    assert!(
        same_key(&k, &ct4_key(WL, 5353, PEER, 53, UDP).0),
        "key {k:?}"
    );
    // Now the later fragment (same source, destination, protocol and identification) is a
    // packet of that flow.
    assert_eq!(w.sends(&packet::udp_fragment(WL, PEER)), PASS);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [
            ("accept-policy", 1),
            ("accept-conntrack", 1),
            ("drop-fragment", 1)
        ]
    );
}

#[test]
fn a_datagram_policy_denies_stays_denied_fragment_by_fragment() {
    let Some(w) = workload(
        "fragment_denied",
        &deny_all(DENY_ALL),
        &allowing(11, port(UDP, 53)),
    ) else {
        return;
    };
    let first = packet::with_frag_off(packet::udp(WL, 5353, PEER, 54), packet::IP_MF);
    assert_eq!(w.sends(&first), DROP);
    assert_eq!(w.sends(&packet::udp_fragment(WL, PEER)), DROP);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-policy", 2)]);
    assert!(w.h.ct().is_empty());
}

#[test]
fn arp_passes_both_ways_without_policy() {
    // Deny-all both ways and no route for the sender: ARP is answered by the host anyway.
    let Some(w) = workload("arp", &deny_all(DENY_ALL), &deny_all(DENY_ALL)) else {
        return;
    };
    let arp = packet::arp_request(Ipv4Addr::new(10, 65, 0, 200), Ipv4Addr::new(169, 254, 1, 1));
    assert_eq!(w.sends(&arp), PASS);
    assert_eq!(w.receives(&arp), PASS);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-arp", 1)]);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-arp", 1)]);
    assert_eq!(w.h.rule_hits(DENY_ALL), 0);
}

#[test]
fn lldp_is_dropped_as_an_unknown_ethertype() {
    let Some(w) = workload("lldp", &allow_all(11), &allow_all(11)) else {
        return;
    };
    assert_eq!(w.sends(&packet::lldp()), DROP);
    assert_eq!(w.receives(&packet::lldp()), DROP);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-ethertype", 1)]);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("drop-ethertype", 1)]);
}

#[test]
fn ipv6_is_dropped() {
    let Some(w) = workload("ipv6", &allow_all(11), &allow_all(11)) else {
        return;
    };
    assert_eq!(w.sends(&packet::ipv6_udp()), DROP);
    assert_eq!(w.receives(&packet::ipv6_udp()), DROP);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-ipv6", 1)]);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("drop-ipv6", 1)]);
}

// ---- Interfaces and addresses ----------------------------------------------------------------

#[test]
fn a_workload_sending_from_an_address_not_its_own_is_dropped() {
    let Some(w) = workload("spoofed", &allow_all(11), &allow_all(11)) else {
        return;
    };
    // A workload behind another interface, and an address of the host on this one.
    let other_wl = Ipv4Addr::new(10, 65, 0, 3);
    w.h.route(other_wl, 32, maps::RT_F_LOCAL_WORKLOAD, 7);
    w.h.route(HOST, 32, maps::RT_F_LOCAL_HOST, IFINDEX);
    for src in [Ipv4Addr::new(10, 65, 0, 99), other_wl, HOST] {
        assert_eq!(
            w.sends(&packet::tcp(src, 40000, PEER, 80, TCP_SYN)),
            DROP,
            "from {src}"
        );
    }
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("drop-spoofed-source", 3)]
    );
    assert!(w.h.ct().is_empty());
    assert_eq!(w.h.rule_hits(11), 0);

    // Its own address passes; on the way in, sources are policy's business, not spoofing.
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    let from_elsewhere = packet::tcp(Ipv4Addr::new(10, 65, 0, 99), 1, WL, 2, TCP_SYN);
    assert_eq!(w.receives(&from_elsewhere), PASS);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("accept-policy", 1)]);
}

#[test]
fn an_interface_without_an_entry_drops_everything() {
    let Some(h) = Harness::load("no_iface") else {
        return;
    };
    h.route(WL, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    h.ruleset(&allow_all(11));
    let syn = packet::tcp(WL, 40000, PEER, 80, TCP_SYN);
    let arp = packet::arp_request(WL, PEER);
    for p in [&syn, &arp] {
        assert_eq!(h.run(FROM, p).retval, DROP);
        assert_eq!(h.run(TO, p).retval, DROP);
    }
    assert_eq!(
        h.reasons(IFINDEX, FROM_HOOK),
        [("drop-no-interface-entry", 2)]
    );
    assert_eq!(
        h.reasons(IFINDEX, TO_HOOK),
        [("drop-no-interface-entry", 2)]
    );
    assert!(h.ct().is_empty());
}

#[test]
fn an_interface_whose_rulesets_are_not_loaded_fails_closed() {
    let Some(w) = workload("ruleset_0", &allow_all(11), &allow_all(11)) else {
        return;
    };
    w.h.iface(IFINDEX, 0, 0);
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), DROP);
    assert_eq!(w.receives(&packet::tcp(PEER, 40000, WL, 80, TCP_SYN)), DROP);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("drop-policy", 1)]);
    assert_eq!(w.h.reasons(IFINDEX, TO_HOOK), [("drop-policy", 1)]);
    assert!(w.h.ct().is_empty());
}

// ---- DefaultEndpointToHostAction -------------------------------------------------------------

fn to_host(test: &str, ep_to_host: EpToHost) -> Option<Wep> {
    let w = workload_with(
        test,
        ProgramSettings {
            ep_to_host,
            ..Default::default()
        },
        &deny_all(DENY_ALL),
        &allow_all(11),
    )?;
    w.h.route(HOST, 32, maps::RT_F_LOCAL_HOST, 0);
    Some(w)
}

#[test]
fn a_new_flow_to_the_host_is_dropped_by_default() {
    let Some(w) = to_host("ep_to_host_drop", EpToHost::default()) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, HOST, 10250, TCP_SYN)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("drop-endpoint-to-host", 1)]
    );
    assert!(w.h.ct().is_empty());
    // Elsewhere the same egress ruleset lets it out.
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 10250, TCP_SYN)), PASS);
}

#[test]
fn a_new_flow_to_the_host_passes_when_the_setting_says_accept() {
    for (test, setting) in [
        ("ep_to_host_accept", EpToHost::Accept),
        // Return means "on to host endpoint policy", of which there is none yet.
        ("ep_to_host_return", EpToHost::Return),
    ] {
        let Some(w) = to_host(test, setting) else {
            return;
        };
        assert_eq!(
            w.sends(&packet::tcp(WL, 40000, HOST, 10250, TCP_SYN)),
            PASS,
            "{setting:?}"
        );
        assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-policy", 1)]);
        let (k, _) = w.only_flow();
        assert!(same_key(&k, &ct4_key(WL, 40000, HOST, 10250, TCP).0));
    }
}

#[test]
fn the_host_reaching_the_workload_is_ingress_policy_and_its_replies_pass() {
    // The setting is about flows the workload opens, not the host's (kubelet probes).
    let Some(w) = workload(
        "host_to_wep",
        &allowing(71, port(TCP, 8080)),
        &deny_all(DENY_ALL),
    ) else {
        return;
    };
    w.h.route(HOST, 32, maps::RT_F_LOCAL_HOST, 0);
    assert_eq!(
        w.receives(&packet::tcp(HOST, 50000, WL, 8080, TCP_SYN)),
        PASS
    );
    assert_eq!(
        w.sends(&packet::tcp(WL, 8080, HOST, 50000, TCP_SYN | TCP_ACK)),
        PASS
    );
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-conntrack", 1)]);
}

// ---- Policy changes --------------------------------------------------------------------------

/// A SYN and SYN-ACK of WL:40000 -> PEER:80, the egress ruleset allowing port 80 as rule 11.
fn established(test: &str) -> Option<Wep> {
    let w = workload(test, &deny_all(DENY_ALL), &allowing(11, port(TCP, 80)))?;
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    assert_eq!(
        w.receives(&packet::tcp(PEER, 80, WL, 40000, TCP_SYN | TCP_ACK)),
        PASS
    );
    Some(w)
}

#[test]
fn a_policy_change_that_denies_an_established_flow_stops_it() {
    let Some(w) = established("policy_change_deny") else {
        return;
    };
    let https_only = w.h.ruleset(&allowing(21, port(TCP, 443)));
    assert_ne!(https_only, w.egress);
    w.h.iface(IFINDEX, w.ingress, https_only);

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_ACK)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("accept-policy", 1), ("drop-policy", 1)]
    );
    assert_eq!(w.h.rule_hits(22), 1, "the new ruleset's end decided");
    // Replies stop too: they are judged by the originator's (new) egress ruleset.
    assert_eq!(w.receives(&packet::tcp(PEER, 80, WL, 40000, TCP_ACK)), DROP);
    assert_eq!(
        w.h.reasons(IFINDEX, TO_HOOK),
        [("accept-conntrack", 1), ("drop-policy", 1)]
    );
    assert_eq!(w.h.rule_hits(22), 2);
    let (_, v) = w.only_flow();
    assert_eq!(v.leg_a.approved_by, w.egress, "a denial approves nothing");
}

#[test]
fn a_policy_change_that_still_allows_a_flow_moves_its_approval() {
    let Some(w) = established("policy_change_allow") else {
        return;
    };
    let web =
        w.h.ruleset(&allowing(31, port(TCP, 80).union(&port(TCP, 443))));
    assert_ne!(web, w.egress);
    w.h.iface(IFINDEX, w.ingress, web);

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_ACK)), PASS);
    let (_, v) = w.only_flow();
    assert_eq!(v.leg_a.approved_by, web);
    assert_eq!(w.h.rule_hits(31), 1);
    assert_eq!(
        w.h.reasons(IFINDEX, FROM_HOOK),
        [("accept-policy", 1), ("accept-conntrack", 1)]
    );

    // Judged once: the next packets, either way, pass on the new approval alone.
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_ACK)), PASS);
    assert_eq!(w.receives(&packet::tcp(PEER, 80, WL, 40000, TCP_ACK)), PASS);
    assert_eq!(w.h.rule_hits(31), 1);
}

#[test]
fn a_policy_change_on_the_responders_ingress_stops_its_replies() {
    let Some(w) = workload(
        "policy_change_ingress",
        &allowing(71, port(TCP, 8080)),
        &deny_all(DENY_ALL),
    ) else {
        return;
    };
    let syn = packet::tcp(PEER, 50000, WL, 8080, TCP_SYN);
    let reply = packet::tcp(WL, 8080, PEER, 50000, TCP_ACK);
    assert_eq!(w.receives(&syn), PASS);
    assert_eq!(w.sends(&reply), PASS);

    let closed = w.h.ruleset(&deny_all(990));
    w.h.iface(IFINDEX, closed, w.egress);
    assert_eq!(w.sends(&reply), DROP);
    assert_eq!(w.h.rule_hits(990), 1);
    assert_eq!(
        w.h.rule_hits(DENY_ALL),
        0,
        "the egress ruleset is not the judge"
    );
}

#[test]
fn each_workload_on_a_host_judges_a_flow_between_them_with_its_own_ruleset() {
    // Two workloads share IFINDEX here (tests have one device): the interface entry is
    // switched between A's rulesets and B's as the packet crosses from one to the other.
    let Some(w) = workload(
        "wep_to_wep",
        &deny_all(DENY_ALL),
        &allowing(11, port(TCP, 80)),
    ) else {
        return;
    };
    let b = Ipv4Addr::new(10, 65, 0, 3);
    w.h.route(b, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let b_in_open = w.h.ruleset(&allowing(81, port(TCP, 80)));
    let b_in_closed = w.h.ruleset(&deny_all(890));
    let b_out = w.h.ruleset(&deny_all(891));
    let syn = packet::tcp(WL, 40000, b, 80, TCP_SYN);

    // A sends: its egress allows and approves its own leg.
    assert_eq!(w.sends(&syn), PASS);
    // B receives: the flow is known, but B never approved it; B's ingress denies it.
    w.h.iface(IFINDEX, b_in_closed, b_out);
    assert_eq!(w.receives(&syn), DROP);
    assert_eq!(w.h.rule_hits(890), 1);
    // With an ingress that allows it, B approves its leg; A's approval is untouched.
    w.h.iface(IFINDEX, b_in_open, b_out);
    assert_eq!(w.receives(&syn), PASS);
    assert_eq!(w.h.rule_hits(81), 1);
    let (_, v) = w.only_flow();
    assert_eq!(
        (v.leg_a.approved_by, v.leg_b.approved_by),
        (w.egress, b_in_open)
    );
    // B's reply passes on that approval, whatever B's egress says.
    let reply = packet::tcp(b, 80, WL, 40000, TCP_SYN | TCP_ACK);
    assert_eq!(w.sends(&reply), PASS);
    assert_eq!(w.h.rule_hits(891), 0);
}

// ---- Connection reuse ------------------------------------------------------------------------

#[test]
fn a_syn_after_rst_on_the_same_tuple_is_a_new_flow() {
    let Some(w) = established("syn_after_rst") else {
        return;
    };
    let (_, before) = w.only_flow();
    // While the connection lives, a SYN from the peer on its tuple is part of it.
    let peer_syn = packet::tcp(PEER, 80, WL, 40000, TCP_SYN);
    assert_eq!(w.receives(&peer_syn), PASS);
    assert_eq!(w.h.rule_hits(DENY_ALL), 0);

    assert_eq!(w.receives(&packet::tcp(PEER, 80, WL, 40000, TCP_RST)), PASS);
    let (_, reset) = w.only_flow();
    assert_ne!(reset.leg_b.tcp_flags & maps::CT_LEG_RST, 0);

    // After the reset the same SYN opens a new flow, which the ingress ruleset denies...
    assert_eq!(w.receives(&peer_syn), DROP);
    assert_eq!(w.h.rule_hits(DENY_ALL), 1);
    // ...while the workload's own SYN is judged by its egress ruleset and starts afresh.
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    assert_eq!(w.h.rule_hits(11), 2);
    assert_eq!(w.h.reasons(IFINDEX, FROM_HOOK), [("accept-policy", 2)]);
    let (_, after) = w.only_flow();
    assert_eq!(after.leg_a.tcp_flags, maps::CT_LEG_SYN);
    assert_eq!((after.leg_b.tcp_flags, after.leg_b.approved_by), (0, 0));
    // Conntrack's clock ticks coarsely: the new entry is no older, and its legs (above) show
    // it is new.
    assert!(after.created_ns >= before.created_ns);
}

#[test]
fn a_syn_after_fins_from_both_sides_is_a_new_flow() {
    let Some(w) = established("syn_after_fin") else {
        return;
    };
    let peer_syn = packet::tcp(PEER, 80, WL, 40000, TCP_SYN);
    assert_eq!(
        w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_FIN | TCP_ACK)),
        PASS
    );
    // Half closed: still the same connection.
    assert_eq!(w.receives(&peer_syn), PASS);
    assert_eq!(
        w.receives(&packet::tcp(PEER, 80, WL, 40000, TCP_FIN | TCP_ACK)),
        PASS
    );
    assert_eq!(w.receives(&peer_syn), DROP);
    assert_eq!(w.h.rule_hits(DENY_ALL), 1);
}

// ---- The context stage -----------------------------------------------------------------------

#[test]
fn rules_on_the_originators_port_and_the_local_address_use_the_context_stage() {
    let unprivileged = SpanSet::from_spans([(proto_port(TCP, 1024), proto_port(TCP, u16::MAX))]);
    let rules = vec![
        // Port 8080, from unprivileged client ports only.
        FlatRule {
            sport: unprivileged,
            ..rule(91, FlatAction::Allow, 0, port(TCP, 8080))
        },
        // Port 9090, to any address but the endpoint's own (local index 0).
        FlatRule {
            local: vec![false, true],
            ..rule(93, FlatAction::Allow, 0, port(TCP, 9090))
        },
        // Port 7070, to the endpoint's own address only.
        FlatRule {
            local: vec![true, false],
            ..rule(95, FlatAction::Allow, 0, port(TCP, 7070))
        },
    ];
    let ingress = spec(rules, vec![GroupEnd::Deny(99)]);
    let Some(w) = workload("context", &ingress, &deny_all(DENY_ALL)) else {
        return;
    };
    let other = Ipv4Addr::new(10, 65, 0, 7);

    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, WL, 8080, TCP_SYN)),
        PASS
    );
    assert_eq!(w.receives(&packet::tcp(PEER, 999, WL, 8080, TCP_SYN)), DROP);
    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, WL, 9090, TCP_SYN)),
        DROP
    );
    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, other, 9090, TCP_SYN)),
        PASS
    );
    // A destination that is not the endpoint's own has context entries of its own ("any
    // other address"): it must not be taken for the endpoint's address.
    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, WL, 7070, TCP_SYN)),
        PASS
    );
    assert_eq!(
        w.receives(&packet::tcp(PEER, 50000, other, 7070, TCP_SYN)),
        DROP
    );
    let hits: Vec<u64> = [91, 93, 95, 99].map(|id| w.h.rule_hits(id)).to_vec();
    assert_eq!(hits, [1, 1, 1, 3]);

    // The lookups the program made, repeated from here, agree.
    let flow = |sport, local, dport| Flow4 {
        peer: PEER,
        local,
        proto: TCP,
        sport,
        dport,
    };
    let rule_of = |f: Flow4| w.h.verdict(w.ingress, &f).map(|v| v.rule_id);
    assert_eq!(rule_of(flow(50000, WL, 8080)), Some(91));
    assert_eq!(rule_of(flow(999, WL, 8080)), Some(99));
    assert_eq!(rule_of(flow(50000, other, 9090)), Some(93));
    assert_eq!(rule_of(flow(50000, other, 7070)), Some(99));
}

// ---- Rule counters ---------------------------------------------------------------------------

#[test]
fn the_deciding_rule_is_counted_and_no_other() {
    let rules = vec![
        rule(51, FlatAction::Deny, 0, port(TCP, 22)),
        rule(
            52,
            FlatAction::Allow,
            0,
            SpanSet::from_spans([(proto_port(TCP, 1), proto_port(TCP, 1024))]),
        ),
        rule(53, FlatAction::Allow, 0, any_port(UDP)),
        rule(54, FlatAction::Allow, 0, SpanSet::full()),
    ];
    let egress = spec(rules, vec![GroupEnd::Deny(59)]);
    let Some(w) = workload("rule_hits", &deny_all(DENY_ALL), &egress) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 22, TCP_SYN)), DROP);
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    assert_eq!(w.sends(&packet::tcp(WL, 40001, PEER, 443, TCP_SYN)), PASS);
    assert_eq!(w.sends(&packet::udp(WL, 5353, PEER, 53)), PASS);
    assert_eq!(w.sends(&packet::tcp(WL, 40002, PEER, 8080, TCP_SYN)), PASS);
    let hits: Vec<u64> = [51, 52, 53, 54, 59].map(|id| w.h.rule_hits(id)).to_vec();
    assert_eq!(hits, [1, 2, 1, 1, 0]);
    // Packets of known flows decide nothing.
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_ACK)), PASS);
    assert_eq!(w.h.rule_hits(52), 2);
}

#[test]
fn pass_skips_to_the_next_group_and_each_group_end_counts_as_its_rule() {
    // Tier 1: TCP goes on to tier 2, anything else ends at tier 1's deny (109).
    // Tier 2: port 80 is allowed (102), other TCP ends at tier 2's deny (209).
    let rules = vec![
        rule(101, FlatAction::Pass, 0, any_port(TCP)),
        rule(102, FlatAction::Allow, 1, port(TCP, 80)),
    ];
    let egress = spec(rules, vec![GroupEnd::Deny(109), GroupEnd::Deny(209)]);
    let Some(w) = workload("pass", &deny_all(DENY_ALL), &egress) else {
        return;
    };
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 81, TCP_SYN)), DROP);
    assert_eq!(w.sends(&packet::udp(WL, 5353, PEER, 53)), DROP);
    let hits: Vec<u64> = [101, 102, 109, 209].map(|id| w.h.rule_hits(id)).to_vec();
    assert_eq!(hits, [0, 1, 1, 1], "Pass decides nothing; group ends do");
}

#[test]
fn a_log_rule_before_an_allow_flags_the_verdict_and_the_allow_is_counted() {
    let rules = vec![
        rule(61, FlatAction::Log, 0, port(TCP, 80)),
        rule(62, FlatAction::Allow, 0, any_port(TCP)),
    ];
    let egress = spec(rules, vec![GroupEnd::Deny(69)]);
    let Some(w) = workload("log", &deny_all(DENY_ALL), &egress) else {
        return;
    };
    let flow = |dport| Flow4 {
        peer: PEER,
        local: WL,
        proto: TCP,
        sport: 40000,
        dport,
    };

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 80, TCP_SYN)), PASS);
    let v =
        w.h.verdict(w.egress, &flow(80))
            .expect("a verdict for port 80");
    assert_eq!((v.allow, v.rule_id), (true, 62));
    assert!(v.log, "the Log rule matched first");
    assert_eq!((w.h.rule_hits(61), w.h.rule_hits(62)), (0, 1));

    assert_eq!(w.sends(&packet::tcp(WL, 40000, PEER, 81, TCP_SYN)), PASS);
    let v =
        w.h.verdict(w.egress, &flow(81))
            .expect("a verdict for port 81");
    assert_eq!((v.allow, v.rule_id, v.log), (true, 62, false));
    assert_eq!(w.h.rule_hits(62), 2);
}
