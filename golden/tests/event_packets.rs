//! Flow logs and packet traces through BPF_PROG_TEST_RUN: which packets write a record into
//! weft_flows and weft_trace, and what the record says (bpf-src/include/events.h). Records are
//! read back through the same reader `weft flows` and `weft trace` use.
//!
//! The workload WL is on IFINDEX; its egress policy allows TCP 80 (rule 11) and denies the
//! rest at the end of its tier (rule 12); its ingress policy allows TCP 80 (rule 21) and denies
//! the rest (rule 22).

use std::net::Ipv4Addr;

use libbpf_rs::{MapCore, MapFlags};
use weft::bpf::load::Object;
use weft::bpf::maps::{self, Event, NatBackend, NatBackendKey, NatFrontend, NatFrontendKey, Plain};
use weft::bpf::reasons;
use weft::events::filter;
use weft::events::ring::Ring;
use weft::policy::flat::{proto_port, FlatAction, FlatRule, GroupEnd, RulesetSpec, SpanSet};
use weft_golden::harness::{Harness, DROP, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_SYN};

const WL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
/// Another workload on the same interface (so one test interface can play both ends).
const WL2: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 5);
const FROM: &str = "weft_from_wep";
const TO: &str = "weft_to_wep";

fn tcp80(allow: u32, deny: u32) -> RulesetSpec {
    let v = proto_port(6, 80);
    RulesetSpec {
        sets: vec![],
        locals: vec![],
        rules: vec![FlatRule {
            id: allow,
            action: FlatAction::Allow,
            group: 0,
            peer: vec![],
            local: vec![true, true],
            sport: SpanSet::full(),
            dport: SpanSet::from_spans([(v, v)]),
        }],
        groups: vec![GroupEnd::Deny(deny)],
        default_rule: deny + 1,
        open_end: false,
    }
}

fn setup(test: &str) -> Option<Harness> {
    let h = Harness::load(test)?;
    for a in [WL, WL2] {
        h.route(a, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    }
    let rs_in = h.ruleset(&tcp80(21, 22));
    let rs_out = h.ruleset(&tcp80(11, 12));
    h.iface(IFINDEX, rs_in, rs_out);
    Some(h)
}

/// Traces IFINDEX's packets that `expr` (the pcap subset) matches.
fn trace(h: &Harness, flags: u32, expr: &str) {
    let f = filter::compile(&weft_model::pcap::parse_filter(expr).expect("a filter of the subset"));
    h.map(maps::TRACE_FILTER)
        .update(IFINDEX.as_bytes(), f.as_bytes(), MapFlags::ANY)
        .expect("trace filter");
    let live = h
        .map(maps::IFACE)
        .lookup(IFINDEX.as_bytes(), MapFlags::ANY)
        .expect("lookup");
    let mut v = maps::IfaceValue::from_bytes(&live.expect("iface entry")).expect("value");
    v.flags = flags;
    h.map(maps::IFACE)
        .update(IFINDEX.as_bytes(), v.as_bytes(), MapFlags::ANY)
        .expect("iface entry");
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a.to_ne_bytes())
}

/// (src, sport, dst, dport) of a record.
fn tuple(e: &Event) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    (ip(e.saddr), e.sport, ip(e.daddr), e.dport)
}

#[test]
fn a_denied_packet_writes_a_flow_record_with_its_tuple_rule_and_reason() {
    let Some(h) = setup("a_denied_packet_writes_a_flow_record") else {
        return;
    };
    let syn = packet::tcp(WL, 40000, PEER, 8080, TCP_SYN);
    assert_eq!(h.run(FROM, &syn).retval, DROP);
    let f = h.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    let e = &f[0];
    assert_eq!(e.kind, maps::EVENT_FLOW);
    assert_eq!(
        (e.ifindex, u32::from(e.hook)),
        (IFINDEX, maps::HOOK_FROM_WEP)
    );
    assert_eq!(tuple(e), (WL, 40000, PEER, 8080));
    assert_eq!(e.proto, 6);
    assert_eq!(usize::from(e.reason), reasons::DROP_POLICY);
    assert_eq!(e.rule_id, 12, "the end of the egress tier decided");
    assert_eq!(e.flags, maps::EV_F_POLICY | maps::EV_F_EP_ORIGINATED);
    assert_eq!(e.verdict, DROP);
    assert_eq!(e.ct, maps::CTR_NEW);
    assert_eq!(e.nat, maps::EV_NAT_NONE);
    assert!(e.time_ns > 0);
    assert!(h.traces().is_empty(), "the interface is not traced");

    // Inbound, the workload's ingress policy decides; the peer opened the flow.
    assert_eq!(
        h.run(TO, &packet::tcp(PEER, 50000, WL, 22, TCP_SYN)).retval,
        DROP
    );
    let f = h.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(tuple(&f[0]), (PEER, 50000, WL, 22));
    assert_eq!(
        (u32::from(f[0].hook), f[0].rule_id),
        (maps::HOOK_TO_WEP, 22)
    );
    assert_eq!(f[0].flags, maps::EV_F_POLICY);
}

#[test]
fn an_allowed_new_flow_writes_one_record_and_its_established_packets_none() {
    let Some(h) = setup("an_allowed_new_flow_writes_one_record") else {
        return;
    };
    assert_eq!(
        h.run(FROM, &packet::tcp(WL, 40001, PEER, 80, TCP_SYN))
            .retval,
        PASS
    );
    let f = h.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    let e = &f[0];
    assert_eq!(tuple(e), (WL, 40001, PEER, 80));
    assert_eq!(usize::from(e.reason), reasons::ACCEPT_POLICY);
    assert_eq!(e.rule_id, 11);
    assert_eq!(
        e.flags,
        maps::EV_F_POLICY | maps::EV_F_ALLOW | maps::EV_F_EP_ORIGINATED
    );
    assert_eq!((e.verdict, e.ct), (PASS, maps::CTR_NEW));

    // The flow's packets both ways, many times over: established, never recorded.
    let ack = packet::tcp(WL, 40001, PEER, 80, TCP_ACK);
    let reply = packet::tcp(PEER, 80, WL, 40001, TCP_SYN | TCP_ACK);
    assert_eq!(h.run(TO, &reply).retval, PASS);
    assert_eq!(h.run_repeat(FROM, &ack, 1000).retval, PASS);
    assert_eq!(
        h.reasons(IFINDEX, maps::HOOK_FROM_WEP),
        [("accept-policy", 1), ("accept-conntrack", 1000)]
    );
    assert!(
        h.flows().is_empty(),
        "established packets write no flow record"
    );
    assert_eq!(h.lost(Ring::Flows), 0);
}

#[test]
fn an_endpoint_judging_a_known_flow_for_the_first_time_writes_its_own_record() {
    let Some(h) = setup("an_endpoint_judging_a_known_flow") else {
        return;
    };
    // WL2 -> WL:80 on one host: WL2's egress policy opens the flow (rule 11) ...
    assert_eq!(
        h.run(FROM, &packet::tcp(WL2, 40002, WL, 80, TCP_SYN))
            .retval,
        PASS
    );
    // ... and WL's ingress policy, meeting it in conntrack, allows it too (rule 21).
    assert_eq!(
        h.run(TO, &packet::tcp(WL2, 40002, WL, 80, TCP_SYN)).retval,
        PASS
    );
    let f = h.flows();
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(
        (u32::from(f[0].hook), f[0].rule_id),
        (maps::HOOK_FROM_WEP, 11)
    );
    assert_eq!(
        (u32::from(f[1].hook), f[1].rule_id),
        (maps::HOOK_TO_WEP, 21)
    );
    assert_eq!(usize::from(f[1].reason), reasons::ACCEPT_CT);
    assert_eq!(f[1].ct, maps::CTR_ESTABLISHED);
    assert_eq!(f[1].flags, maps::EV_F_POLICY | maps::EV_F_ALLOW);
    // Judged once: the next packet passes on the approved leg.
    assert_eq!(
        h.run(TO, &packet::tcp(WL2, 40002, WL, 80, TCP_ACK)).retval,
        PASS
    );
    assert!(h.flows().is_empty());
}

#[test]
fn a_traced_interface_writes_a_trace_record_per_packet_and_an_untraced_one_none() {
    let Some(h) = setup("a_traced_interface_writes_a_trace_record") else {
        return;
    };
    let syn = packet::tcp(WL, 40003, PEER, 80, TCP_SYN);
    let ack = packet::tcp(WL, 40003, PEER, 80, TCP_ACK);
    assert_eq!(h.run(FROM, &syn).retval, PASS);
    assert!(h.traces().is_empty(), "untraced: nothing");
    h.flows();

    trace(&h, maps::IFACE_F_WORKLOAD | maps::IFACE_F_TRACE, "");
    assert_eq!(h.run(FROM, &ack).retval, PASS);
    assert_eq!(
        h.run(FROM, &packet::tcp(WL, 40004, PEER, 8080, TCP_SYN))
            .retval,
        DROP
    );
    assert_eq!(h.run(FROM, &packet::arp_request(WL, PEER)).retval, PASS);
    let t = h.traces();
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t
        .iter()
        .all(|e| e.kind == maps::EVENT_TRACE && e.ifindex == IFINDEX));
    // The established packet: conntrack decided, policy did not run.
    assert_eq!(tuple(&t[0]), (WL, 40003, PEER, 80));
    assert_eq!(
        (t[0].parse, t[0].ct, t[0].flags),
        (0, maps::CTR_ESTABLISHED, 0)
    );
    assert_eq!(usize::from(t[0].reason), reasons::ACCEPT_CT);
    assert_eq!(t[0].tcp_flags, TCP_ACK);
    assert_eq!(usize::from(t[0].len), ack.len());
    // The denied one: policy's verdict and rule.
    assert_eq!(
        (t[1].ct, t[1].rule_id, t[1].verdict),
        (maps::CTR_NEW, 12, DROP)
    );
    assert_eq!(t[1].flags, maps::EV_F_POLICY | maps::EV_F_EP_ORIGINATED);
    // ARP: parsed as such, no tuple.
    assert_eq!((t[2].parse, t[2].saddr, t[2].ct), (1, 0, maps::CTR_NONE));
    assert_eq!(usize::from(t[2].reason), reasons::ACCEPT_ARP);
    // Only the denial is a flow record.
    assert_eq!(h.flows().len(), 1);

    trace(&h, maps::IFACE_F_WORKLOAD, "");
    assert_eq!(h.run(FROM, &ack).retval, PASS);
    assert!(h.traces().is_empty(), "the bit is off again: nothing");
}

#[test]
fn trace_filters_take_the_packets_their_terms_match() {
    let Some(h) = setup("trace_filters_take_the_packets_their_terms_match") else {
        return;
    };
    let on = maps::IFACE_F_WORKLOAD | maps::IFACE_F_TRACE;
    let to80 = packet::tcp(WL, 40005, PEER, 80, TCP_SYN);
    let to8080 = packet::tcp(WL, 40006, PEER, 8080, TCP_SYN);
    let from80 = packet::tcp(PEER, 80, WL, 40005, TCP_SYN | TCP_ACK);
    let udp = packet::udp(WL, 40007, PEER, 80);
    let arp = packet::arp_request(WL, PEER);
    let cases: &[(&str, &[bool; 5])] = &[
        ("all", &[true, true, true, true, true]),
        ("ip", &[true, true, true, true, false]),
        ("tcp", &[true, true, true, false, false]),
        ("port 80", &[true, false, true, true, false]),
        ("tcp and dst port 80", &[true, false, false, false, false]),
        ("src port 80", &[false, false, true, false, false]),
        ("udp and port 80", &[false, false, false, true, false]),
        ("src host 10.65.0.2", &[true, true, false, true, false]),
        (
            "host 10.65.0.2 and host 10.65.1.5",
            &[true, true, true, true, false],
        ),
        ("host 10.65.0.9", &[false, false, false, false, false]),
        (
            "dst net 10.65.1.0/24 and tcp",
            &[true, true, false, false, false],
        ),
        (
            "net 10.65.0.0/16 and port 8080",
            &[false, true, false, false, false],
        ),
        ("icmp", &[false, false, false, false, false]),
    ];
    for (expr, want) in cases {
        trace(&h, on, expr);
        let mut got = [false; 5];
        for (i, (prog, p)) in [
            (FROM, &to80),
            (FROM, &to8080),
            (TO, &from80),
            (FROM, &udp),
            (FROM, &arp),
        ]
        .into_iter()
        .enumerate()
        {
            h.run(prog, p);
            got[i] = match h.traces().as_slice() {
                [] => false,
                [_] => true,
                more => panic!("{expr}: one packet, {} records", more.len()),
            };
        }
        assert_eq!(&got, *want, "{expr}: to80, to8080, from80, udp, arp");
    }
}

#[test]
fn a_full_ring_drops_records_and_counts_them() {
    let Some(h) = setup("a_full_ring_drops_records_and_counts_them") else {
        return;
    };
    // The harness's rings hold 64 KiB; a record takes 64 bytes (56 and an 8-byte header), and
    // the kernel keeps the producer less than the ring's size ahead: 1023 fit.
    let syn = packet::tcp(WL, 40008, PEER, 8080, TCP_SYN);
    assert_eq!(h.run_repeat(FROM, &syn, 3000).retval, DROP);
    let kept = h.flows().len() as u64;
    assert_eq!(kept, (65536 - 1) / 64);
    assert_eq!(h.lost(Ring::Flows), 3000 - kept);
    assert_eq!(h.lost(Ring::Flows), 0, "a loss is told once");
    assert_eq!(h.run(FROM, &syn).retval, DROP);
    assert_eq!(h.flows().len(), 1, "drained, the ring takes records again");
}

#[test]
fn a_second_reader_of_a_ring_is_refused_while_the_first_reads() {
    let Some(h) = setup("a_second_reader_of_a_ring_is_refused") else {
        return;
    };
    let first = weft::events::ring::Reader::open(&h.pins, Ring::Flows).expect("first reader");
    let second = weft::events::ring::Reader::open(&h.pins, Ring::Flows)
        .err()
        .expect("a second reader is refused");
    assert!(
        second
            .to_string()
            .starts_with("another `weft flows` is reading"),
        "{second}"
    );
    // The other ring has a reader of its own.
    weft::events::ring::Reader::open(&h.pins, Ring::Trace).expect("trace reader");
    drop(first);
    weft::events::ring::Reader::open(&h.pins, Ring::Flows).expect("free again");
}

#[test]
fn the_host_object_records_service_flows_and_traces_what_it_passes() {
    let Some(mut h) = Harness::load("the_host_object_records_service_flows") else {
        return;
    };
    h.load_also(Object::Hep);
    let node = Ipv4Addr::new(192, 0, 2, 1);
    let backend = Ipv4Addr::new(10, 65, 0, 9);
    let client = Ipv4Addr::new(198, 51, 100, 7);
    h.iface_flags(IFINDEX, maps::IFACE_F_DATA, 0, 0);
    let fk = NatFrontendKey {
        addr: maps::addr_be(node),
        port: 30080,
        proto: 6,
        pad: 0,
    };
    let fe = NatFrontend {
        svc_id: 5,
        count: 1,
        local_count: 1,
        affinity_timeout_s: 0,
        flags: 0,
        maglev_size: 0,
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), MapFlags::ANY)
        .expect("frontend");
    let bk = NatBackendKey {
        svc_id: 5,
        ordinal: 0,
    };
    let be = NatBackend {
        addr: maps::addr_be(backend),
        port: 8080,
        pad: 0,
    };
    h.map(maps::NAT_BE4)
        .update(bk.as_bytes(), be.as_bytes(), MapFlags::ANY)
        .expect("backend");

    // A NodePort flow: translated on the host interface, no policy there.
    let syn = packet::tcp(client, 33000, node, 30080, TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &syn).retval, PASS);
    // Host traffic that is not a service's: none of weft's business, no record.
    assert_eq!(
        h.run(
            "weft_from_hep",
            &packet::tcp(client, 33001, node, 22, TCP_SYN)
        )
        .retval,
        PASS
    );
    let f = h.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(u32::from(f[0].hook), maps::HOOK_FROM_HEP);
    assert_eq!(tuple(&f[0]), (client, 33000, node, 30080));
    assert_eq!(usize::from(f[0].reason), reasons::ACCEPT_NAT);
    assert_eq!(
        (f[0].nat, ip(f[0].nat_addr), f[0].nat_port),
        (maps::EV_NAT_DNAT, backend, 8080)
    );
    assert_eq!(f[0].flags, 0, "no policy on host interfaces yet");

    trace(&h, maps::IFACE_F_DATA | maps::IFACE_F_TRACE, "dst port 22");
    assert_eq!(
        h.run(
            "weft_from_hep",
            &packet::tcp(client, 33002, node, 22, TCP_SYN)
        )
        .retval,
        PASS
    );
    assert_eq!(
        h.run(
            "weft_to_hep",
            &packet::tcp(node, 22, client, 33002, TCP_ACK)
        )
        .retval,
        PASS
    );
    let t = h.traces();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(usize::from(t[0].reason), reasons::ACCEPT_HOST);
    assert_eq!(u32::from(t[0].hook), maps::HOOK_FROM_HEP);
}
