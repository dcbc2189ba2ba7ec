//! XDP's NodePort acceleration (bpfExternalServiceAcceleration XDP), by BPF_PROG_TEST_RUN on
//! an interface of a private underlay (weft_golden::underlay): a known NodePort flow whose
//! backend is on another node leaves XDP translated and wrapped in the VXLAN headers
//! vxlan.calico would give it, byte for byte; what tc must see (a flow's first packet, state
//! changes, anything XDP cannot send whole) passes untouched.

use libbpf_rs::MapCore;
use weft::bpf::maps::{self, spec, HepValue};
use weft::bpf::pinned::Pinned as _;
use weft::bpf::reasons;
use weft::policy::flat::FlatAction;
use weft_golden::harness::{allow_all, ct4_key, Harness, PASS};
use weft_golden::packet::{self, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use weft_golden::underlay::{
    node_a, settings, BACKEND, CLIENT, NODE_A_UNDERLAY, NODE_A_VTEP_MAC, NODE_B_TUNNEL,
    NODE_B_UNDERLAY, NODE_B_UNDERLAY_MAC, NODE_B_VTEP_MAC, NODE_PORT, UP0_MAC, VNI, VXLAN_PORT,
};

const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const XDP_TX: i32 = 3;
const TC_ACT_REDIRECT: i32 = 7;

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `frame` as node B's tunnel device must receive it from node A, translated and routed, the
/// UDP source port (a hash of the flow) taken from what XDP sent.
fn wrapped(frame: &[u8], sent: &[u8]) -> Vec<u8> {
    wrapped_as(frame, sent, true)
}

/// `wrapped`, one hop older (`routed`, as translated packets are) or not (under DSR).
fn wrapped_as(frame: &[u8], sent: &[u8], routed: bool) -> Vec<u8> {
    // The inner frame: between the VTEPs.
    let mut inner = frame.to_vec();
    inner[0..6].copy_from_slice(&NODE_B_VTEP_MAC);
    inner[6..12].copy_from_slice(&NODE_A_VTEP_MAC);
    if routed {
        inner[14 + 8] -= 1;
        inner[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&inner[14..34]);
        inner[24..26].copy_from_slice(&c.to_be_bytes());
    }

    let mut o = Vec::new();
    o.extend_from_slice(&NODE_B_UNDERLAY_MAC);
    o.extend_from_slice(&UP0_MAC);
    o.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (20 + 8 + 8 + inner.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&ip_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&NODE_A_UNDERLAY.octets());
    ip.extend_from_slice(&NODE_B_UNDERLAY.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    o.extend_from_slice(&ip);
    o.extend_from_slice(&sent[34..36]);
    o.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    o.extend_from_slice(&(ip_len - 20).to_be_bytes());
    o.extend_from_slice(&[0, 0]);
    o.extend_from_slice(&[0x08, 0, 0, 0]);
    o.extend_from_slice(&(VNI << 8).to_be_bytes());
    o.extend_from_slice(&inner);
    o
}

fn forwarded(h: &Harness, up0: u32) -> u64 {
    h.counter(up0, maps::HOOK_XDP, reasons::ACCEPT_XDP_FWD)
}

#[test]
fn a_known_node_port_flow_to_a_remote_backend_leaves_xdp_translated_and_wrapped() {
    let Some((h, up0)) = node_a("xdp-accel-tunnel", settings(false, true)) else {
        return;
    };
    // The first packet is tc's: XDP passes it untouched, tc translates it.
    let syn = packet::tcp(CLIENT, 40000, NODE_A_UNDERLAY, NODE_PORT, TCP_SYN);
    let out = h.run_xdp_at("weft_xdp", &syn, up0, 1);
    assert_eq!((out.retval, &out.data), (XDP_PASS, &syn));
    let out = h.run("weft_from_hep", &syn);
    assert_eq!(out.retval, PASS);
    assert_eq!(out.data, packet::tcp(CLIENT, 40000, BACKEND, 8080, TCP_SYN));

    // The rest of the flow goes from XDP, as node B's tunnel device must receive it.
    let (rk, client_is_a) = ct4_key(CLIENT, 40000, BACKEND, 8080, 6);
    let seen = h.ct_get(&rk).expect("the flow's entry").last_seen_ns;
    let ack = packet::tcp(CLIENT, 40000, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
    let out = h.run_xdp_at("weft_xdp", &ack, up0, 1);
    assert_eq!(out.retval, XDP_TX);
    let inner = packet::tcp(CLIENT, 40000, BACKEND, 8080, TCP_ACK);
    assert_eq!(out.data, wrapped(&inner, &out.data));
    assert!(
        u16::from_be_bytes([out.data[34], out.data[35]]) >= 0xc000,
        "UDP source port from the dynamic range"
    );
    assert_eq!(forwarded(&h, up0), 1);
    // Conntrack stays the one tc keeps: the client's leg saw the ACK, the flow is fresh.
    let ct = h.ct_get(&rk).expect("the flow's entry");
    let leg = if client_is_a { ct.leg_a } else { ct.leg_b };
    assert_ne!(leg.tcp_flags & maps::CT_LEG_ACK, 0);
    assert!(ct.last_seen_ns >= seen);

    // UDP alike, its checksum following the translation.
    let dgram = packet::udp(CLIENT, 40001, NODE_A_UNDERLAY, NODE_PORT);
    assert_eq!(h.run("weft_from_hep", &dgram).retval, PASS);
    let out = h.run_xdp_at("weft_xdp", &dgram, up0, 1);
    assert_eq!(out.retval, XDP_TX);
    let inner = packet::udp(CLIENT, 40001, BACKEND, 8080);
    assert_eq!(out.data, wrapped(&inner, &out.data));
    assert_eq!(forwarded(&h, up0), 2);
}

#[test]
fn what_tc_must_see_or_xdp_cannot_send_whole_passes_untouched() {
    let Some((h, up0)) = node_a("xdp-accel-leaves", settings(false, true)) else {
        return;
    };
    let syn = packet::tcp(CLIENT, 40100, NODE_A_UNDERLAY, NODE_PORT, TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &syn).retval, PASS);
    let passes = |frame: &[u8], what: &str| {
        let out = h.run_xdp_at("weft_xdp", frame, up0, 1);
        assert_eq!(
            (out.retval, out.data.as_slice()),
            (XDP_PASS, frame),
            "{what}"
        );
    };
    // Segments that change the flow's state.
    for (flags, what) in [
        (TCP_FIN | TCP_ACK, "FIN"),
        (TCP_RST, "RST"),
        (TCP_SYN, "SYN"),
    ] {
        passes(
            &packet::tcp(CLIENT, 40100, NODE_A_UNDERLAY, NODE_PORT, flags),
            what,
        );
    }
    let ack = packet::tcp(CLIENT, 40100, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
    // A TTL that runs out here: the stack answers it.
    let mut last_hop = ack.clone();
    last_hop[14 + 8] = 1;
    passes(&last_hop, "TTL 1");
    // A packet the underlay's MTU (1500) cannot carry wrapped, while one 50 bytes shorter
    // (the tunnel's overhead) goes.
    let full = packet::ipv4(
        CLIENT,
        NODE_A_UNDERLAY,
        6,
        &[packet::tcp_hdr(40100, NODE_PORT, TCP_ACK), vec![0; 1460]].concat(),
    );
    passes(&full, "1500-byte packet");
    let fits = packet::ipv4(
        CLIENT,
        NODE_A_UNDERLAY,
        6,
        &[packet::tcp_hdr(40100, NODE_PORT, TCP_ACK), vec![0; 1410]].concat(),
    );
    assert_eq!(h.run_xdp_at("weft_xdp", &fits, up0, 1).retval, XDP_TX);
    // A fragment.
    passes(
        &packet::with_frag_off(ack.clone(), 0x2000),
        "first fragment",
    );
    // The other direction of the flow, and a flow nobody started.
    passes(
        &packet::tcp(BACKEND, 8080, CLIENT, 40100, TCP_ACK),
        "the backend's reply",
    );
    passes(
        &packet::tcp(CLIENT, 40199, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK),
        "an unknown flow",
    );
    assert_eq!(forwarded(&h, up0), 1);

    // A node whose underlay neighbour is no longer resolved (XDP asks the FIB again after
    // at most a second per CPU), a node XDP has no entry for, a backend that is local after
    // all: tc's way.
    let _ = std::process::Command::new("ip")
        .args(["neigh", "del", &NODE_B_UNDERLAY.to_string(), "dev", "up0"])
        .status();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    passes(&ack, "next hop unresolved");
    let node_key = maps::addr_be(NODE_B_TUNNEL);
    h.map(spec::NODE4.name)
        .delete(&node_key.to_ne_bytes())
        .expect("delete node");
    passes(&ack, "no such node");
    h.route(BACKEND, 32, maps::RT_F_LOCAL_WORKLOAD, 5);
    passes(&ack, "a local backend");
    assert_eq!(forwarded(&h, up0), 1);
}

#[test]
fn without_the_setting_xdp_forwards_nothing() {
    let Some((h, up0)) = node_a("xdp-accel-off", settings(false, false)) else {
        return;
    };
    let syn = packet::tcp(CLIENT, 40200, NODE_A_UNDERLAY, NODE_PORT, TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &syn).retval, PASS);
    let ack = packet::tcp(CLIENT, 40200, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
    let out = h.run_xdp_at("weft_xdp", &ack, up0, 1);
    assert_eq!((out.retval, out.data), (XDP_PASS, ack));
    assert_eq!(forwarded(&h, up0), 0);
}

#[test]
fn under_dsr_xdp_sends_the_flow_on_unchanged_to_the_backends_node() {
    let Some((h, up0)) = node_a("xdp-accel-dsr", settings(true, true)) else {
        return;
    };
    let syn = packet::tcp(CLIENT, 40300, NODE_A_UNDERLAY, NODE_PORT, TCP_SYN);
    assert_eq!(h.run("weft_from_hep", &syn).retval, TC_ACT_REDIRECT);
    let ack = packet::tcp(CLIENT, 40300, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
    let out = h.run_xdp_at("weft_xdp", &ack, up0, 1);
    assert_eq!(out.retval, XDP_TX);
    assert_eq!(
        out.data,
        wrapped_as(&ack, &out.data, false),
        "not translated (node B does), nor one hop older: redirected, as tc's way does"
    );
    assert_eq!(forwarded(&h, up0), 1);
}

/// xdpEnabled: the untracked ingress stage of a host endpoint on the underlay interface runs
/// in XDP beside the acceleration, or (false) is left to tc alone.
#[test]
fn xdp_enabled_decides_whether_xdp_also_runs_the_untracked_stage() {
    for untracked in [true, false] {
        let mut s = settings(false, true);
        if let Some(x) = s.xdp_accel.as_mut() {
            x.untracked = untracked;
        }
        let Some((h, up0)) = node_a("xdp-accel-untracked", s) else {
            return;
        };
        let allow = h.ruleset(&allow_all());
        let mut deny = allow_all();
        deny.rules[0].action = FlatAction::Deny;
        let v = HepValue {
            ruleset_in: allow,
            ruleset_out: allow,
            ruleset_untracked_in: h.ruleset(&deny),
            ..Default::default()
        };
        spec::HEP
            .update(&h.map(spec::HEP.name), &up0, &v)
            .expect("hep entry");
        let ack = packet::tcp(CLIENT, 40400, NODE_A_UNDERLAY, NODE_PORT, TCP_ACK);
        let want = if untracked { XDP_DROP } else { XDP_PASS };
        assert_eq!(
            h.run_xdp_at("weft_xdp", &ack, up0, 1).retval,
            want,
            "untracked stage in XDP: {untracked}"
        );
    }
}
