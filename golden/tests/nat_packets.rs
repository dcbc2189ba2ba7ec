//! Service NAT through BPF_PROG_TEST_RUN: translation and its checksums, the conntrack pair,
//! replies given the frontend back, rejects, Maglev, affinity and source ranges.

use std::net::Ipv4Addr;

use weft::bpf::maps::{
    self, NatBackend, NatBackendKey, NatFrontend, NatFrontendKey, NatSrcKey, Plain,
};
use weft_golden::harness::*;
use weft_golden::packet::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const B1: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 1);
const B2: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 2);
const SVC: u32 = 77;
const FROM: &str = "weft_from_wep";
/// tc's TC_ACT_REDIRECT: the packet went back where it came from (a reject).
const REDIRECT: i32 = 7;

/// A client workload on IFINDEX (its backends are reachable the same way, so the harness can
/// play both sides) and a service VIP:80/tcp with the given backends on port 8080.
fn setup(test: &str, backends: &[Ipv4Addr], flags: u32, maglev: u32) -> Option<Harness> {
    let h = Harness::load(test)?;
    for a in [CLIENT].iter().chain(backends) {
        h.route(*a, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    }
    let rs = h.ruleset(&allow_all());
    h.iface(IFINDEX, rs, rs);
    let fe = NatFrontend {
        svc_id: SVC,
        count: backends.len() as u32,
        local_count: backends.len() as u32,
        affinity_timeout_s: 0,
        flags,
        maglev_size: maglev,
    };
    let fk = NatFrontendKey {
        addr: maps::addr_be(VIP),
        port: 80,
        proto: 6,
        pad: 0,
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("frontend");
    for (i, b) in backends.iter().enumerate() {
        let k = NatBackendKey {
            svc_id: SVC,
            ordinal: i as u32,
        };
        let v = NatBackend {
            addr: maps::addr_be(*b),
            port: 8080,
            pad: 0,
        };
        h.map(maps::NAT_BE4)
            .update(k.as_bytes(), v.as_bytes(), libbpf_rs::MapFlags::ANY)
            .expect("backend");
    }
    Some(h)
}

use libbpf_rs::MapCore;

fn csum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The addresses and ports of an IPv4 TCP/UDP frame, asserting its checksums are right.
fn parse_checked(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(csum(&ip[..ihl]), 0, "IPv4 header checksum");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[ihl..total];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    assert_eq!(csum(&pseudo), 0, "L4 checksum over the pseudo-header");
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    (
        src,
        u16::from_be_bytes([l4[0], l4[1]]),
        dst,
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

#[test]
fn a_new_flow_to_a_frontend_is_translated_with_valid_checksums_and_a_conntrack_pair() {
    let Some(h) = setup("nat_new_flow", &[B1], 0, 0) else {
        return;
    };
    let out = h.run(FROM, &tcp(CLIENT, 40000, VIP, 80, TCP_SYN));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        parse_checked(&out.data),
        (CLIENT, 40000, B1, 8080),
        "destination rewritten to the backend"
    );
    let ct = h.ct();
    assert_eq!(ct.len(), 2, "NAT_FWD and NAT_REV: {ct:?}");
    let fwd = ct
        .iter()
        .find(|(_, v)| v.r#type == maps::CT_NAT_FWD)
        .expect("forward entry");
    let rev = ct
        .iter()
        .find(|(_, v)| v.r#type == maps::CT_NAT_REV)
        .expect("reverse entry");
    assert_eq!(
        fwd.1.nat_rev_key.addr_a, rev.0.addr_a,
        "the forward entry points at the reverse one"
    );
    assert_eq!(fwd.1.nat_rev_key.addr_b, rev.0.addr_b);
    assert_eq!(
        (
            Ipv4Addr::from(rev.1.nat_orig_daddr.to_ne_bytes()),
            rev.1.nat_orig_dport
        ),
        (VIP, 80)
    );
    assert_eq!(
        h.reasons(IFINDEX, maps::HOOK_FROM_WEP),
        vec![("accept-nat", 1)]
    );

    // The next packet of the flow takes the same backend through the forward entry.
    let out = h.run(FROM, &tcp(CLIENT, 40000, VIP, 80, TCP_ACK));
    assert_eq!(parse_checked(&out.data), (CLIENT, 40000, B1, 8080));
    // The backend's answer gets the frontend back as its source.
    let out = h.run(FROM, &tcp(B1, 8080, CLIENT, 40000, TCP_SYN | TCP_ACK));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        parse_checked(&out.data),
        (VIP, 80, CLIENT, 40000),
        "the reply reads as from the service"
    );
    // ... and at the client's own hook, the un-NATed reply is a known flow.
    let out = h.run("weft_to_wep", &tcp(VIP, 80, CLIENT, 40000, TCP_ACK));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        parse_checked(&out.data),
        (VIP, 80, CLIENT, 40000),
        "nothing to translate twice"
    );
}

/// VIP:53/udp as a frontend of the same service (its backends on 8080).
fn udp_frontend(h: &Harness) {
    let fk = NatFrontendKey {
        addr: maps::addr_be(VIP),
        port: 53,
        proto: 17,
        pad: 0,
    };
    let fe = NatFrontend {
        svc_id: SVC,
        count: 1,
        local_count: 1,
        affinity_timeout_s: 0,
        flags: 0,
        maglev_size: 0,
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("frontend");
}

#[test]
fn udp_is_translated_too() {
    let Some(h) = setup("nat_udp", &[B1], 0, 0) else {
        return;
    };
    udp_frontend(&h);
    let out = h.run(FROM, &udp(CLIENT, 5000, VIP, 53));
    assert_eq!(parse_checked(&out.data), (CLIENT, 5000, B1, 8080));
}

/// An ICMP error (Ethernet frame) from `src` to `dst` quoting the packet `quoted` (a frame).
fn icmp_about(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    icmp_error(src, dst, 3, 4, &quoted[14..])
}

/// (outer source, outer destination, quoted source, quoted port, quoted destination, quoted
/// port) of an ICMP error frame, asserting its ICMP and both IPv4 checksums are right.
fn icmp_checked(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = &frame[14..];
    assert_eq!(csum(&ip[..20]), 0, "outer IPv4 checksum");
    let icmp = &ip[20..];
    assert_eq!(csum(icmp), 0, "ICMP checksum");
    let inner = &icmp[8..];
    assert_eq!(csum(&inner[..20]), 0, "quoted IPv4 checksum");
    let a = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    (
        a(&ip[12..16]),
        a(&ip[16..20]),
        a(&inner[12..16]),
        port(&inner[20..22]),
        a(&inner[16..20]),
        port(&inner[22..24]),
    )
}

#[test]
fn an_icmp_error_about_a_translated_packet_reads_as_about_the_clients_own() {
    let Some(h) = setup("nat_icmp_error", &[B1], 0, 0) else {
        return;
    };
    let syn = tcp(CLIENT, 40000, VIP, 80, TCP_SYN);
    assert_eq!(h.run(FROM, &syn).retval, PASS);
    // The backend says "fragmentation needed" about client -> backend: the client reads it as
    // about client -> frontend, from the service.
    let router = Ipv4Addr::new(10, 65, 9, 1);
    let translated = tcp(CLIENT, 40000, B1, 8080, TCP_SYN);
    let out = h.run(FROM, &icmp_about(B1, CLIENT, &translated));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        icmp_checked(&out.data),
        (VIP, CLIENT, CLIENT, 40000, VIP, 80)
    );
    // From a router on the way, only the quoted packet changes (here on its way into the
    // client's interface).
    let out = h.run("weft_to_wep", &icmp_about(router, CLIENT, &translated));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        icmp_checked(&out.data),
        (router, CLIENT, CLIENT, 40000, VIP, 80)
    );
    // The client's own error about the service's reply (frontend -> client) goes to the
    // backend, about backend -> client.
    let reply = tcp(VIP, 80, CLIENT, 40000, TCP_SYN | TCP_ACK);
    let out = h.run(FROM, &icmp_about(CLIENT, VIP, &reply));
    assert_eq!(out.retval, PASS);
    assert_eq!(
        icmp_checked(&out.data),
        (CLIENT, B1, B1, 8080, CLIENT, 40000)
    );
    assert_eq!(
        h.reasons(IFINDEX, maps::HOOK_FROM_WEP),
        vec![("accept-related-icmp", 2), ("accept-nat", 1)]
    );
}

#[test]
fn a_fragmented_datagram_to_a_frontend_is_translated_fragment_by_fragment() {
    let Some(h) = setup("nat_fragments", &[B1], 0, 0) else {
        return;
    };
    udp_frontend(&h);
    // The first fragment: ports, and the UDP checksum of the whole datagram.
    let first = with_frag_off(udp(CLIENT, 5000, VIP, 53), IP_MF);
    let out = h.run(FROM, &first);
    assert_eq!(out.retval, PASS);
    assert_eq!(parse_checked(&out.data), (CLIENT, 5000, B1, 8080));
    // A later fragment: no UDP header, only its destination address to rewrite.
    let later = udp_fragment(CLIENT, VIP);
    let out = h.run(FROM, &later);
    assert_eq!(out.retval, PASS);
    let ip = &out.data[14..34];
    assert_eq!(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), B1);
    assert_eq!(csum(ip), 0, "the IPv4 header checksum is right");
    assert_eq!(
        &out.data[34..],
        &later[34..],
        "the payload (no L4 header here) is left alone"
    );
    assert_eq!(
        h.reasons(IFINDEX, maps::HOOK_FROM_WEP),
        vec![("accept-conntrack", 1), ("accept-nat", 1)]
    );
}

#[test]
fn a_frontend_without_backends_answers_icmp_port_unreachable() {
    let Some(h) = setup("nat_reject", &[], 0, 0) else {
        return;
    };
    let syn = tcp(CLIENT, 40000, VIP, 80, TCP_SYN);
    let out = h.run(FROM, &syn);
    assert_eq!(out.retval, REDIRECT, "sent back into the workload");
    let f = &out.data;
    assert_eq!(&f[0..6], &syn[6..12], "to the sender's MAC");
    let ip = &f[14..];
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(csum(&ip[..20]), 0, "IPv4 header checksum");
    assert_eq!(
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        VIP,
        "from the address it was sent to"
    );
    assert_eq!(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), CLIENT);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let icmp = &ip[20..total];
    assert_eq!(
        (icmp[0], icmp[1]),
        (3, 3),
        "destination unreachable, port unreachable"
    );
    assert_eq!(csum(icmp), 0, "ICMP checksum");
    assert_eq!(
        &icmp[8..8 + 28],
        &syn[14..14 + 28],
        "quotes the original IPv4 header and 8 bytes of TCP"
    );
    assert!(h.ct().is_empty(), "a rejected flow leaves no conntrack");
    assert_eq!(
        h.reasons(IFINDEX, maps::HOOK_FROM_WEP),
        vec![("reject-no-backend", 1)]
    );
}

#[test]
fn maglev_gives_a_flow_the_same_backend_from_fresh_state() {
    let backends: Vec<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(10, 65, 1, i)).collect();
    let Some(h) = setup("nat_maglev", &backends, maps::NAT_F_MAGLEV, 503) else {
        return;
    };
    let names: Vec<String> = backends.iter().map(|b| format!("{b}:8080")).collect();
    for (slot, bi) in weft::services::maglev_table(&names, 503)
        .into_iter()
        .enumerate()
    {
        let k = NatBackendKey {
            svc_id: SVC,
            ordinal: slot as u32,
        };
        let v = NatBackend {
            addr: maps::addr_be(backends[bi]),
            port: 8080,
            pad: 0,
        };
        h.map(maps::MAGLEV4)
            .update(k.as_bytes(), v.as_bytes(), libbpf_rs::MapFlags::ANY)
            .expect("maglev slot");
    }
    let ct = h.map(maps::CT4);
    let clear = || {
        for k in ct.keys().collect::<Vec<_>>() {
            let _ = ct.delete(&k);
        }
    };
    let mut chosen = std::collections::BTreeSet::new();
    for port in 40000..40040u16 {
        let first = parse_checked(&h.run(FROM, &tcp(CLIENT, port, VIP, 80, TCP_SYN)).data).2;
        clear();
        let again = parse_checked(&h.run(FROM, &tcp(CLIENT, port, VIP, 80, TCP_SYN)).data).2;
        clear();
        assert_eq!(
            first, again,
            "flow from port {port} keeps its backend after conntrack is gone"
        );
        chosen.insert(first);
    }
    assert!(
        chosen.len() >= 4,
        "different flows spread over the backends: {chosen:?}"
    );
}

#[test]
fn affinity_keeps_a_client_on_its_backend_until_it_leaves() {
    let Some(h) = setup("nat_affinity", &[B1, B2], 0, 0) else {
        return;
    };
    let fk = NatFrontendKey {
        addr: maps::addr_be(VIP),
        port: 80,
        proto: 6,
        pad: 0,
    };
    let fe = NatFrontend {
        svc_id: SVC,
        count: 2,
        local_count: 2,
        affinity_timeout_s: 600,
        flags: 0,
        maglev_size: 0,
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("frontend");
    let first = parse_checked(&h.run(FROM, &tcp(CLIENT, 40000, VIP, 80, TCP_SYN)).data).2;
    for port in 40001..40030u16 {
        assert_eq!(
            parse_checked(&h.run(FROM, &tcp(CLIENT, port, VIP, 80, TCP_SYN)).data).2,
            first
        );
    }
    // Its backend leaves (the list is rewritten without it): the client moves on.
    let remaining = if first == B1 { B2 } else { B1 };
    let k = NatBackendKey {
        svc_id: SVC,
        ordinal: 0,
    };
    let v = NatBackend {
        addr: maps::addr_be(remaining),
        port: 8080,
        pad: 0,
    };
    h.map(maps::NAT_BE4)
        .update(k.as_bytes(), v.as_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("backend");
    let fe = NatFrontend {
        count: 1,
        local_count: 1,
        ..fe
    };
    h.map(maps::NAT_FE4)
        .update(fk.as_bytes(), fe.as_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("frontend");
    assert_eq!(
        parse_checked(&h.run(FROM, &tcp(CLIENT, 41000, VIP, 80, TCP_SYN)).data).2,
        remaining
    );
}

#[test]
fn source_ranges_drop_clients_outside_them() {
    let Some(h) = setup("nat_source_ranges", &[B1], maps::NAT_F_SRC_RANGES, 0) else {
        return;
    };
    let k = NatSrcKey {
        prefixlen: 32 + 24,
        svc_id: SVC,
        addr: maps::addr_be(Ipv4Addr::new(10, 65, 0, 0)),
    };
    h.map(maps::NAT_SRC4)
        .update(k.as_bytes(), &1u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .expect("range");
    let inside = h.run(FROM, &tcp(CLIENT, 40000, VIP, 80, TCP_SYN));
    assert_eq!(inside.retval, PASS);
    let other = Ipv4Addr::new(10, 66, 0, 2);
    h.route(other, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let outside = h.run(FROM, &tcp(other, 40000, VIP, 80, TCP_SYN));
    assert_eq!(outside.retval, DROP);
    assert!(h
        .reasons(IFINDEX, maps::HOOK_FROM_WEP)
        .contains(&("drop-source-range", 1)));
}
