//! The packet parser under random frames: the real weft_from_wep and weft_to_wep, run with
//! BPF_PROG_TEST_RUN on thousands of frames made to break a parser (headers cut anywhere, IHL
//! and lengths that lie, fragments, options, unknown protocols and ethertypes, bytes flipped
//! in valid packets, and plain noise). The verifier already keeps the programs from reading
//! out of bounds; what this holds them to is the policy: with conntrack empty before every
//! frame, whatever passes must be ARP or a flow the ruleset allows, however the frame is built.
//!
//! Runs are seeded and bounded (`WEFT_FUZZ_RUNS=N` multiplies them); the test prints how many
//! frames it ran. Skipped only where root or bpffs is missing, and failing there under
//! WEFT_REQUIRE_KERNEL=1.

use std::net::Ipv4Addr;

use std::os::fd::AsFd;

use libbpf_rs::MapCore;
use weft::bpf::load::{EpToHost, ProgramSettings};
use weft::bpf::maps;
use weft::bpf::testrun::test_run;
use weft::policy::flat::{proto_port, FlatAction, FlatRule, GroupEnd, RulesetSpec, SpanSet};
use weft_golden::harness::{Harness, DROP, IFINDEX, PASS};
use weft_golden::packet;
use weft_model::rng::Rng;

const WL: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 65, 1, 5);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
/// The one port the ingress ruleset opens (TCP), and the egress one (UDP).
const OPEN_IN: u16 = 80;
const OPEN_OUT: u16 = 53;

/// tc verdicts a program may give: pass on (-1), OK (0), drop (2), redirect (7).
const VERDICTS: [i32; 4] = [PASS, 0, DROP, 7];

fn scale() -> usize {
    std::env::var("WEFT_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Allows `proto` to `port` (rule 1); the group's end denies (rule 2).
fn opening(proto: u8, port: u16) -> RulesetSpec {
    let v = proto_port(proto, port);
    RulesetSpec {
        sets: Vec::new(),
        locals: vec![u32::from(WL)],
        rules: vec![FlatRule {
            id: 1,
            action: FlatAction::Allow,
            group: 0,
            peer: Vec::new(),
            local: vec![true, true],
            sport: SpanSet::full(),
            dport: SpanSet::from_spans([(v, v)]),
        }],
        groups: vec![GroupEnd::Deny(2)],
        default_rule: 3,
        open_end: false,
    }
}

fn addr(r: &mut Rng, usual: Ipv4Addr) -> Ipv4Addr {
    match r.below(6) {
        0 => PEER,
        1 => HOST,
        2 => Ipv4Addr::from(r.next_u64() as u32),
        _ => usual,
    }
}

fn port(r: &mut Rng) -> u16 {
    match r.below(4) {
        0 => OPEN_IN,
        1 => OPEN_OUT,
        _ => r.next_u64() as u16,
    }
}

fn bytes(r: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| r.next_u64() as u8).collect()
}

/// A frame that `from` sends to `to`, built to break a parser.
fn frame(r: &mut Rng, from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let mut f = match r.below(10) {
        // Noise after a plausible Ethernet header.
        0 => {
            let mut f = packet::eth(0x0800, &[]);
            let n = r.below(120);
            f.extend(bytes(r, n));
            f
        }
        // A valid packet with bytes flipped.
        1 | 2 => {
            let (s, d) = (addr(r, from), addr(r, to));
            let mut f = match r.below(5) {
                0 => packet::tcp(s, port(r), d, port(r), r.next_u64() as u8),
                1 => packet::udp(s, port(r), d, port(r)),
                2 => packet::icmp_echo(s, d, 8, r.next_u64() as u16),
                3 => packet::arp_request(s, d),
                _ => {
                    let inner =
                        packet::ipv4_raw(d, s, UDP, &[], &packet::udp_hdr(port(r), 53, b"x"));
                    packet::icmp_error(s, d, 3, r.below(16) as u8, &inner)
                }
            };
            for _ in 0..1 + r.below(4) {
                let i = r.below(f.len());
                f[i] = r.next_u64() as u8;
            }
            f
        }
        // IPv4 with every field chosen to lie now and then.
        _ => {
            let proto = match r.below(8) {
                0..=2 => TCP,
                3..=4 => UDP,
                5 => ICMP,
                6 => *r.pick(&[47u8, 132, 0, 255]),
                _ => r.next_u64() as u8,
            };
            let l4 = match proto {
                TCP => {
                    // Mostly a SYN: a new flow, which policy judges.
                    let flags = if r.chance(60) {
                        packet::TCP_SYN
                    } else {
                        r.next_u64() as u8
                    };
                    packet::tcp_hdr(port(r), port(r), flags)
                }
                UDP => {
                    let n = r.below(16);
                    packet::udp_hdr(port(r), port(r), &bytes(r, n))
                }
                ICMP => {
                    let n = r.below(40);
                    let mut h = vec![r.below(20) as u8, r.below(16) as u8, 0, 0];
                    h.extend(bytes(r, n));
                    h
                }
                _ => {
                    let n = r.below(40);
                    bytes(r, n)
                }
            };
            let options = if r.chance(15) {
                let n = r.below(40);
                bytes(r, n)
            } else {
                Vec::new()
            };
            let mut ip = packet::ipv4_raw(addr(r, from), addr(r, to), proto, &options, &l4);
            if r.chance(10) {
                ip[0] = (ip[0] & 0x0f) | ((r.below(16) as u8) << 4);
            }
            if r.chance(15) {
                ip[0] = (ip[0] & 0xf0) | r.below(16) as u8;
            }
            if r.chance(15) {
                let len = r.next_u64() as u16;
                ip[2..4].copy_from_slice(&len.to_be_bytes());
            }
            if r.chance(15) {
                // Fragments: more-fragments, an offset, or both.
                let frag = (r.next_u64() as u16) & 0x3fff;
                ip[6..8].copy_from_slice(&frag.to_be_bytes());
            }
            if r.chance(10) {
                ip[10] ^= r.next_u64() as u8 | 1;
            }
            let ethertype = match r.below(20) {
                0 => 0x86dd,
                1 => 0x8100,
                2 => r.next_u64() as u16,
                _ => 0x0800,
            };
            packet::eth(ethertype, &ip)
        }
    };
    // Cut short anywhere past the Ethernet header (a test run needs one).
    if r.chance(25) && f.len() > 14 {
        let keep = 14 + r.below(f.len() - 14);
        f.truncate(keep);
    }
    f
}

/// What a frame is, read the way the policy must read it: ARP; or an IPv4 packet whose
/// (protocol, destination port) is known (a first fragment with its whole transport header);
/// or something else.
#[derive(Debug, PartialEq)]
enum Seen {
    Arp,
    Flow(u8, u16),
    Other,
}

fn seen(f: &[u8]) -> Seen {
    if f.len() < 14 {
        return Seen::Other;
    }
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0806 => Seen::Arp,
        0x0800 => {
            let ip = &f[14..];
            if ip.len() < 20 || ip[0] >> 4 != 4 || (ip[0] & 0x0f) < 5 {
                return Seen::Other;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            let l4 = ip.get(ihl..).unwrap_or_default();
            if offset != 0 || l4.len() < 4 {
                return Seen::Other;
            }
            Seen::Flow(ip[9], u16::from_be_bytes([l4[2], l4[3]]))
        }
        _ => Seen::Other,
    }
}

/// An IPv4 or IPv6 frame shorter than its Ethernet and IP headers.
fn short_ip(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => f.len() < 14 + 20,
        Some([0x86, 0xdd]) => f.len() < 14 + 40,
        _ => false,
    }
}

fn empty_conntrack(h: &Harness) {
    let m = h.map(maps::CT4);
    let keys: Vec<Vec<u8>> = m.keys().collect();
    for k in keys {
        let _ = m.delete(&k);
    }
}

#[test]
fn random_frames_get_a_verdict_and_only_what_policy_allows_passes() {
    let settings = ProgramSettings {
        ep_to_host: EpToHost::Drop,
        ..ProgramSettings::default()
    };
    let Some(h) = Harness::load_with("random_frames", settings) else {
        return;
    };
    h.route(WL, 32, maps::RT_F_LOCAL_WORKLOAD, IFINDEX);
    let ingress = h.ruleset(&opening(TCP, OPEN_IN));
    let egress = h.ruleset(&opening(UDP, OPEN_OUT));
    h.iface(IFINDEX, ingress, egress);

    let runs = 10_000 * scale();
    let mut failures = Vec::new();
    let mut passed = [0usize; 2];
    let mut refused = 0;
    for seed in 0..runs as u64 {
        let mut r = Rng(seed ^ 0xf00d);
        // Even seeds: to the workload (its ingress policy); odd: from it (egress).
        let (prog, open, f) = if seed % 2 == 0 {
            ("weft_to_wep", (TCP, OPEN_IN), frame(&mut r, PEER, WL))
        } else {
            ("weft_from_wep", (UDP, OPEN_OUT), frame(&mut r, WL, PEER))
        };
        let verdict = match test_run(h.prog(prog).as_fd(), &f, IFINDEX, 1) {
            Ok(run) => run.retval,
            // The kernel runs no IPv4 or IPv6 frame shorter than its IP header (EINVAL):
            // such a frame cannot be tried here.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && short_ip(&f) => {
                refused += 1;
                empty_conntrack(&h);
                continue;
            }
            Err(e) => {
                failures.push(format!(
                    "seed {seed}: {prog}: {e}: {} bytes {f:02x?}",
                    f.len()
                ));
                continue;
            }
        };
        if !VERDICTS.contains(&verdict) {
            failures.push(format!(
                "seed {seed}: {prog} answered {verdict} to {f:02x?}"
            ));
        } else if verdict != DROP {
            passed[(seed % 2) as usize] += 1;
            let what = seen(&f);
            if what != Seen::Arp && what != Seen::Flow(open.0, open.1) {
                failures.push(format!(
                    "seed {seed}: {prog} let {what:?} through (verdict {verdict}): {f:02x?}"
                ));
            }
        }
        empty_conntrack(&h);
        if failures.len() >= 10 {
            break;
        }
    }
    eprintln!(
        "fuzz packets: {runs} frames ({refused} too short for the kernel to run), {} passed in, {} passed out, {} failures",
        passed[0],
        passed[1],
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The frames reach the policy's allowing side too, not only its drops.
    assert!(passed[0] > 0 && passed[1] > 0, "{passed:?}");
}
