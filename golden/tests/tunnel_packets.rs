//! The fleet's tunnel, by BPF_PROG_TEST_RUN: weft_from_tun notes which node forwarded a flow
//! from outside the fleet (by the inner frame's source MAC, that node's VTEP), the workload's
//! ingress hook gives the flow's conntrack entry that node, and the workload's replies are
//! redirected back through it; flows of the fleet's own addresses are left to routing.

use std::net::Ipv4Addr;

use weft::bpf::maps::{self, spec, DsrOptout4Key, TunFlow, VtepKey};
use weft::bpf::pinned::Pinned as _;
use weft::objects::{Object, ProgramSettings};
use weft_golden::harness::{allow_all, ct4_key, Harness, IFINDEX, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_SYN};

/// The node that forwarded the flow: its tunnel address, its VTEP the frames' source MAC.
const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
/// A workload on another node: one of the fleet's own addresses.
const REMOTE_WORKLOAD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const TC_ACT_REDIRECT: i32 = 7;
/// The tunnel device's index: where what other nodes forward comes in.
const TUNNEL: u32 = 77;

/// The tunnel's MSS (a 1450-byte VXLAN device less 40).
const MSS: u16 = 1410;

/// The frames' source MAC (packet::SRC_MAC) is node A's VTEP.
fn vtep_of_node_a(h: &Harness) {
    let k = VtepKey {
        mac: packet::SRC_MAC,
        pad: [0; 2],
    };
    spec::VTEP4
        .update(&h.map(spec::VTEP4.name), &k, &maps::addr_be(NODE_A))
        .expect("vtep entry");
}

fn fleet(test: &str) -> Option<Harness> {
    let mut h = Harness::load_with(
        test,
        ProgramSettings {
            tunnel: true,
            mss_clamp: MSS,
            ..Default::default()
        },
    )?;
    h.load_also(Object::Hep);
    let allow = h.ruleset(&allow_all());
    h.iface(IFINDEX, allow, allow);
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    h.route(REMOTE_WORKLOAD, 32, maps::RT_F_REMOTE_WORKLOAD, 0);
    h.iface_flags(TUNNEL, maps::IFACE_F_TUNNEL, 0, 0);
    vtep_of_node_a(&h);
    Some(h)
}

fn noted(h: &Harness, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Option<TunFlow> {
    let (k, _) = ct4_key(src, sport, dst, dport, 6);
    spec::TUN_FLOWS4
        .lookup(&h.map(spec::TUN_FLOWS4.name), &k)
        .expect("lookup")
}

#[test]
fn a_flow_forwarded_by_another_node_is_answered_back_through_it() {
    let Some(h) = fleet("tunnel-answer") else {
        return;
    };
    let syn = packet::tcp(CLIENT, 40000, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &syn).retval, PASS);
    let t = noted(&h, CLIENT, 40000, BACKEND, 8080).expect("the forwarding node noted");
    assert_eq!((t.tun_addr, t.ifindex), (maps::addr_be(NODE_A), IFINDEX));

    // The workload's ingress gives the new flow that came through the tunnel that node ...
    assert_eq!(h.run_forwarded("weft_to_wep", &syn, TUNNEL).retval, PASS);
    let (k, _) = ct4_key(CLIENT, 40000, BACKEND, 8080, 6);
    let ct = h.ct_get(&k).expect("conntrack entry");
    assert_eq!(
        (ct.tun_addr, ct.tun_ifindex),
        (maps::addr_be(NODE_A), IFINDEX)
    );

    // ... its replies go back through it; the client's own packets go on as routed.
    let reply = packet::tcp(BACKEND, 8080, CLIENT, 40000, TCP_SYN | TCP_ACK);
    assert_eq!(h.run("weft_from_wep", &reply).retval, TC_ACT_REDIRECT);
    let ack = packet::tcp(CLIENT, 40000, BACKEND, 8080, TCP_ACK);
    assert_eq!(h.run("weft_to_wep", &ack).retval, PASS);
}

#[test]
fn the_fleets_own_flows_and_unknown_senders_are_left_to_routing() {
    let Some(h) = fleet("tunnel-fleet") else {
        return;
    };
    // A remote workload's flow: its replies are routed to its node anyway.
    let syn = packet::tcp(REMOTE_WORKLOAD, 40001, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &syn).retval, PASS);
    assert!(noted(&h, REMOTE_WORKLOAD, 40001, BACKEND, 8080).is_none());
    assert_eq!(h.run_forwarded("weft_to_wep", &syn, TUNNEL).retval, PASS);
    let (k, _) = ct4_key(REMOTE_WORKLOAD, 40001, BACKEND, 8080, 6);
    assert_eq!(h.ct_get(&k).expect("conntrack entry").tun_addr, 0);
    let reply = packet::tcp(BACKEND, 8080, REMOTE_WORKLOAD, 40001, TCP_SYN | TCP_ACK);
    assert_eq!(h.run("weft_from_wep", &reply).retval, PASS);

    // A frame from a MAC that is no node's VTEP: nothing to note.
    let (key, _) = spec::VTEP4.entry(
        &VtepKey {
            mac: packet::SRC_MAC,
            pad: [0; 2],
        },
        &0,
    );
    libbpf_rs::MapCore::delete(&h.map(spec::VTEP4.name), &key).expect("delete vtep");
    let syn = packet::tcp(CLIENT, 40002, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &syn).retval, PASS);
    assert!(noted(&h, CLIENT, 40002, BACKEND, 8080).is_none());
}

#[test]
fn without_a_tunnel_new_flows_do_not_look_for_one() {
    // The same flow noted, on programs loaded without the tunnel setting: no node is taken.
    let Some(mut h) = Harness::load("tunnel-off") else {
        return;
    };
    h.load_also(Object::Hep);
    let allow = h.ruleset(&allow_all());
    h.iface(IFINDEX, allow, allow);
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    vtep_of_node_a(&h);
    let syn = packet::tcp(CLIENT, 40003, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &syn).retval, PASS);
    assert!(noted(&h, CLIENT, 40003, BACKEND, 8080).is_some());
    h.iface_flags(TUNNEL, maps::IFACE_F_TUNNEL, 0, 0);
    assert_eq!(h.run_forwarded("weft_to_wep", &syn, TUNNEL).retval, PASS);
    let (ck, _) = ct4_key(CLIENT, 40003, BACKEND, 8080, 6);
    assert_eq!(h.ct_get(&ck).expect("conntrack entry").tun_addr, 0);
    let reply = packet::tcp(BACKEND, 8080, CLIENT, 40003, TCP_SYN | TCP_ACK);
    assert_eq!(h.run("weft_from_wep", &reply).retval, PASS);
}

#[test]
fn a_workloads_handshake_is_clamped_to_the_tunnels_mss_and_smaller_ones_are_left() {
    let Some(h) = fleet("tunnel-mss") else {
        return;
    };
    // A SYN out of the workload, MSS 1460: leaves with 1410, checksum kept right (the
    // expected frame is built whole with its own checksum).
    let syn = packet::tcp_mss(BACKEND, 40100, REMOTE_WORKLOAD, 8080, TCP_SYN, 1460);
    let out = h.run("weft_from_wep", &syn);
    assert_eq!(out.retval, PASS);
    assert_eq!(
        out.data,
        packet::tcp_mss(BACKEND, 40100, REMOTE_WORKLOAD, 8080, TCP_SYN, MSS)
    );
    // The SYN-ACK of a flow coming in: clamped as well.
    let syn_in = packet::tcp_mss(REMOTE_WORKLOAD, 40101, BACKEND, 8080, TCP_SYN, 1460);
    assert_eq!(h.run_forwarded("weft_to_wep", &syn_in, TUNNEL).retval, PASS);
    let syn_ack = packet::tcp_mss(
        BACKEND,
        8080,
        REMOTE_WORKLOAD,
        40101,
        TCP_SYN | TCP_ACK,
        1460,
    );
    assert_eq!(
        h.run("weft_from_wep", &syn_ack).data,
        packet::tcp_mss(
            BACKEND,
            8080,
            REMOTE_WORKLOAD,
            40101,
            TCP_SYN | TCP_ACK,
            MSS
        )
    );
    // A smaller MSS, and segments after the handshake, are left as they are.
    let small = packet::tcp_mss(BACKEND, 40102, REMOTE_WORKLOAD, 8080, TCP_SYN, 1200);
    assert_eq!(h.run("weft_from_wep", &small).data, small);
    let ack = packet::tcp_mss(BACKEND, 40100, REMOTE_WORKLOAD, 8080, TCP_ACK, 1460);
    assert_eq!(h.run("weft_from_wep", &ack).data, ack);
}

#[test]
fn without_a_tunnel_the_mss_is_left_alone() {
    let Some(h) = Harness::load("tunnel-no-mss") else {
        return;
    };
    let allow = h.ruleset(&allow_all());
    h.iface(IFINDEX, allow, allow);
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let syn = packet::tcp_mss(BACKEND, 40200, REMOTE_WORKLOAD, 8080, TCP_SYN, 1460);
    let out = h.run("weft_from_wep", &syn);
    assert_eq!((out.retval, out.data), (PASS, syn));
}

#[test]
fn a_flow_noted_but_not_from_the_tunnel_takes_no_node() {
    // The node is taken only for what came in through the tunnel device.
    let Some(h) = fleet("tunnel-elsewhere") else {
        return;
    };
    let syn = packet::tcp(CLIENT, 40300, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &syn).retval, PASS);
    assert!(noted(&h, CLIENT, 40300, BACKEND, 8080).is_some());
    // In from a local workload's interface (IFINDEX): no node, and no reverse-path check.
    assert_eq!(h.run_forwarded("weft_to_wep", &syn, IFINDEX).retval, PASS);
    let (k, _) = ct4_key(CLIENT, 40300, BACKEND, 8080, 6);
    assert_eq!(h.ct_get(&k).expect("conntrack entry").tun_addr, 0);
}

/// The node the client reached (its address, a NodePort there), and the backend's node.
const NODE_A_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 0);
const NODE_PORT: u16 = 30080;

fn frontend(h: &Harness, addr: Ipv4Addr, local: u32) {
    h.service((addr, NODE_PORT, 6), 9, local, &[(BACKEND, 8080)]);
}

/// A harness loaded with DSR: both objects, the tunnel at TUNNEL.
fn dsr(test: &str) -> Option<Harness> {
    let settings = ProgramSettings {
        tunnel: true,
        dsr: true,
        ..Default::default()
    };
    let mut h = Harness::load_with(test, settings)?;
    h.load_also_with(Object::Hep, settings);
    Some(h)
}

#[test]
fn under_dsr_the_node_reached_sends_the_flow_on_unchanged_to_the_backends_node() {
    let Some(h) = dsr("dsr-ingress") else {
        return;
    };
    // Node A: a data interface; the NodePort's one backend is on node B, through the tunnel.
    h.iface_flags(IFINDEX, maps::IFACE_F_DATA, 0, 0);
    h.route(NODE_A_ADDR, 32, maps::RT_F_LOCAL_HOST, 0);
    frontend(&h, NODE_A_ADDR, 0);
    h.route_via(
        BACKEND,
        32,
        maps::RT_F_REMOTE_WORKLOAD | maps::RT_F_TUNNELED,
        TUNNEL,
        NODE_B,
    );
    let syn = packet::tcp(CLIENT, 41000, NODE_A_ADDR, NODE_PORT, TCP_SYN);
    let out = h.run("weft_from_hep", &syn);
    assert_eq!(out.retval, TC_ACT_REDIRECT, "sent on through the tunnel");
    assert_eq!(out.data, syn, "unchanged: node B translates it");
    let (ck, _) = ct4_key(CLIENT, 41000, NODE_A_ADDR, NODE_PORT, 6);
    let ct = h.ct_get(&ck).expect("the flow's entry on node A");
    assert_ne!(ct.flags & maps::CT_F_DSR, 0);
    assert_eq!(
        (ct.tun_addr, ct.tun_ifindex),
        (maps::addr_be(NODE_B), TUNNEL)
    );
    // The rest of the flow follows it.
    let ack = packet::tcp(CLIENT, 41000, NODE_A_ADDR, NODE_PORT, TCP_ACK);
    assert_eq!(h.run("weft_from_hep", &ack).retval, TC_ACT_REDIRECT);

    // A client in bpfDSROptoutCIDRs is translated here, as in Tunnel mode.
    let ok = DsrOptout4Key {
        prefixlen: 32,
        addr: maps::addr_be(CLIENT),
    };
    spec::DSR_OPTOUT4
        .update(&h.map(spec::DSR_OPTOUT4.name), &ok, &1)
        .expect("opt-out");
    let syn = packet::tcp(CLIENT, 41001, NODE_A_ADDR, NODE_PORT, TCP_SYN);
    let out = h.run("weft_from_hep", &syn);
    assert_eq!(out.retval, PASS);
    assert_eq!(
        out.data,
        packet::tcp(CLIENT, 41001, BACKEND, 8080, TCP_SYN),
        "translated here"
    );
}

#[test]
fn under_dsr_the_backends_node_translates_a_forwarded_node_port_and_answers_as_the_frontend() {
    let Some(h) = dsr("dsr-backend") else {
        return;
    };
    // Node B: the backend is its own workload; node A's NodePort is found by port alone.
    let allow = h.ruleset(&allow_all());
    h.iface(IFINDEX, allow, allow);
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    frontend(&h, Ipv4Addr::UNSPECIFIED, 1);
    let syn = packet::tcp(CLIENT, 42000, NODE_A_ADDR, NODE_PORT, TCP_SYN);
    let out = h.run("weft_from_tun", &syn);
    assert_eq!(out.retval, PASS);
    assert_eq!(
        out.data,
        packet::tcp(CLIENT, 42000, BACKEND, 8080, TCP_SYN),
        "translated here"
    );
    // Later segments are translated alike; the workload's reply gets node A's NodePort back
    // and goes straight to the client.
    let ack = packet::tcp(CLIENT, 42000, NODE_A_ADDR, NODE_PORT, TCP_ACK);
    assert_eq!(
        h.run("weft_from_tun", &ack).data,
        packet::tcp(CLIENT, 42000, BACKEND, 8080, TCP_ACK)
    );
    let in_syn = packet::tcp(CLIENT, 42000, BACKEND, 8080, TCP_SYN);
    assert_eq!(h.run_forwarded("weft_to_wep", &in_syn, TUNNEL).retval, PASS);
    let reply = packet::tcp(BACKEND, 8080, CLIENT, 42000, TCP_SYN | TCP_ACK);
    let out = h.run("weft_from_wep", &reply);
    assert_eq!(out.retval, PASS);
    assert_eq!(
        out.data,
        packet::tcp(NODE_A_ADDR, NODE_PORT, CLIENT, 42000, TCP_SYN | TCP_ACK)
    );
    // A workload's own port that happens to be a NodePort's number is not translated.
    let to_workload = packet::tcp(CLIENT, 42001, BACKEND, NODE_PORT, TCP_SYN);
    assert_eq!(h.run("weft_from_tun", &to_workload).data, to_workload);
}
