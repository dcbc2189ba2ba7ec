//! Hand-built Ethernet frames for packet tests: IPv4 with TCP, UDP, ICMP (echo and errors),
//! IPv4 options, truncated headers, and frames that are not IP at all.

use std::net::Ipv4Addr;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The source MAC of every frame built here.
pub const SRC_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x01];
const DST_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x02];

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet (no Ethernet) with `options` (padded to 4 bytes) and `l4` as payload.
pub fn ipv4_raw(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    opts.resize(opts.len().div_ceil(4) * 4, 0);
    let ihl = 5 + opts.len() / 4;
    let total = ihl * 4 + l4.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = l4.to_vec();
    // TCP and UDP checksums over the pseudo-header, so tests can check that a rewrite keeps
    // them right. A header cut short (truncation tests) keeps what it has.
    let csum_at = match proto {
        6 if l4.len() >= 20 => Some(16),
        17 if l4.len() >= 8 => Some(6),
        _ => None,
    };
    if let Some(at) = csum_at {
        l4[at..at + 2].copy_from_slice(&[0, 0]);
        let mut pseudo = Vec::with_capacity(12 + l4.len());
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&l4);
        let c = checksum(&pseudo);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    h.extend_from_slice(&l4);
    h
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x0800, &ipv4_raw(src, dst, proto, &[], l4))
}

pub fn tcp_hdr(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    ipv4(src, dst, 6, &tcp_hdr(sport, dport, flags))
}

/// A TCP segment whose only option is MSS `mss` (as a SYN or SYN-ACK carries it first).
pub fn tcp_mss(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    mss: u16,
) -> Vec<u8> {
    let mut t = tcp_hdr(sport, dport, flags);
    t[12] = 0x60;
    t.extend_from_slice(&[2, 4]);
    t.extend_from_slice(&mss.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

pub fn udp_hdr(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    ipv4(src, dst, 17, &udp_hdr(sport, dport, b"weft"))
}

/// An ICMP query with identifier `id`: echo request (type 8) or reply (0), timestamp request
/// (13) or reply (14)...
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, id: u16) -> Vec<u8> {
    let mut m = vec![icmp_type, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(b"ping");
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, &m)
}

/// An ICMP error (e.g. type 3 code 3, port unreachable) quoting `inner` (an IPv4 packet
/// without Ethernet, of which the IP header and 8 bytes are kept).
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, code: u8, inner: &[u8]) -> Vec<u8> {
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    let quoted = &inner[..(ihl + 8).min(inner.len())];
    let mut m = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, &m)
}

/// A TCP packet whose IPv4 header carries options (a record-route option, 12 bytes).
pub fn tcp_with_ip_options(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let rr = [7u8, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    eth(
        0x0800,
        &ipv4_raw(src, dst, 6, &rr, &tcp_hdr(sport, dport, flags)),
    )
}

/// A TCP packet cut inside its TCP header (the IP header says so too).
pub fn tcp_truncated(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let t = tcp_hdr(sport, dport, TCP_SYN);
    ipv4(src, dst, 6, &t[..10])
}

/// A non-first IPv4 fragment (offset 1480 bytes) of a UDP datagram.
pub fn udp_fragment(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut ip = ipv4_raw(src, dst, 17, &[], &[0u8; 64]);
    ip[6..8].copy_from_slice(&(185u16).to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    eth(0x0800, &ip)
}

/// An ARP request: not IP at all.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    a.extend_from_slice(&SRC_MAC);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    let mut f = eth(0x0806, &a);
    f[..6].copy_from_slice(&[0xff; 6]);
    f
}

/// A frame of an ethertype weft does not handle (LLDP), padded to the minimum size.
pub fn lldp() -> Vec<u8> {
    eth(0x88cc, &[0u8; 46])
}

/// An IPv6 frame (UDP), which weft does not program yet.
pub fn ipv6_udp() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&udp_hdr(1, 2, &[]));
    eth(0x86dd, &p)
}

/// `frame` (Ethernet, IPv4) with its fragment field set to `frag_off` (flags and offset in
/// 8-byte units, as on the wire) and the header checksum recomputed.
pub fn with_frag_off(mut frame: Vec<u8>, frag_off: u16) -> Vec<u8> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[20..22].copy_from_slice(&frag_off.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    frame
}

/// The IP fragment field's more-fragments flag.
pub const IP_MF: u16 = 0x2000;
