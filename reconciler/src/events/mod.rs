//! Flow logs and packet traces: what the programs write into the weft_flows and weft_trace
//! ring buffers (struct weft_event, bpf-src/include/weft_maps.h), and how `weft flows` and
//! `weft trace` show it.
//!
//! A flow record says how policy decided a flow for one endpoint (or why a packet was dropped
//! before or after policy); a trace record says what happened to one packet on an interface
//! that bpfLogLevel Debug and bpfLogFilters trace. Decoding and rendering here are pure;
//! reading the rings is `ring`; which interfaces are traced is `filter`.

pub mod filter;
pub mod ring;

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::bpf::maps::{self, Event, Names};
use crate::bpf::reasons::REASONS;

/// The tc verdicts the programs return.
const TC_PASS: i32 = -1;
const TC_DROP: i32 = 2;
const TC_REDIRECT: i32 = 7;

/// A record decoded for people and programs (`--json` prints it as one object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// When the program wrote it, as RFC 3339 UTC with microseconds.
    pub time: String,
    /// `flow` or `trace`.
    pub kind: &'static str,
    pub iface: String,
    pub ifindex: u32,
    /// The hook: from-wep, to-wep, from-hep, to-hep or from-nat.
    pub hook: &'static str,
    /// Into the endpoint (a workload, or the host through a host interface) or out of it:
    /// `ingress` or `egress`, as the endpoint's policy calls it.
    pub direction: &'static str,
    pub proto: String,
    /// The packet as it arrived.
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// A new flow to a service: the frontend it asked for (`dst:dport`) and the backend chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// `allow` (passed on), `deny` (dropped) or `reject` (answered with ICMP unreachable).
    pub verdict: &'static str,
    /// Why, as `weft dump counters` names it.
    pub reason: &'static str,
    /// Policy's own verdict when it ran (a flow it allows may still be dropped after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<u32>,
    /// The deciding rule, when the configuration is known (`weft flows DIR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A Log rule matched before the deciding rule.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logged: bool,
    /// The endpoint on this interface opened the flow (it is the client).
    pub originated_by_endpoint: bool,
    /// What conntrack said: new, established, nat-forward, nat-reverse, related, reused.
    pub conntrack: &'static str,
    /// Trace records only: the parse result, the packet's length, TCP flags, ICMP type and
    /// code, and a translation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceDetail>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub frontend: Ipv4Addr,
    pub frontend_port: u16,
    pub backend: Ipv4Addr,
    pub backend_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceDetail {
    pub parse: &'static str,
    pub len: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<(u8, u8)>,
    /// `dnat` (destination rewritten) or `unnat` (a reply's source given the frontend back),
    /// with the new address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<(&'static str, Ipv4Addr, u16)>,
}

fn ip(a: u32) -> Ipv4Addr {
    // Addresses are network-order bytes stored as a native u32.
    Ipv4Addr::from(a.to_ne_bytes())
}

pub fn hook_name(hook: u8) -> &'static str {
    match u32::from(hook) {
        maps::HOOK_FROM_WEP => "from-wep",
        maps::HOOK_TO_WEP => "to-wep",
        maps::HOOK_FROM_HEP => "from-hep",
        maps::HOOK_TO_HEP => "to-hep",
        maps::HOOK_FROM_NAT => "from-nat",
        _ => "unknown",
    }
}

fn direction(hook: u8) -> &'static str {
    match u32::from(hook) {
        maps::HOOK_TO_WEP | maps::HOOK_FROM_HEP | maps::HOOK_FROM_NAT => "ingress",
        _ => "egress",
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

fn conntrack(ct: u8) -> &'static str {
    match ct {
        maps::CTR_NEW => "new",
        maps::CTR_ESTABLISHED => "established",
        maps::CTR_NAT_FWD => "nat-forward",
        maps::CTR_NAT_REV => "nat-reverse",
        maps::CTR_RELATED => "related",
        maps::CTR_REUSED => "reused",
        _ => "none",
    }
}

fn tcp_flags(f: u8) -> String {
    let names = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// Converts the programs' clock (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i128,
}

impl Clock {
    /// The offset as it is now.
    pub fn now() -> Clock {
        let read = |id| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: ts is a valid, writable timespec.
            unsafe { libc::clock_gettime(id, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        Clock {
            offset_ns: read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC),
        }
    }

    /// A clock whose wall time equals the monotonic time plus `offset_ns` (tests).
    pub fn with_offset(offset_ns: i128) -> Clock {
        Clock { offset_ns }
    }

    /// `monotonic_ns` as RFC 3339 UTC with microseconds.
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        let ns = i128::from(monotonic_ns) + self.offset_ns;
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Decodes one record. `iface_name` names interfaces by index; `names` names rules.
pub fn decode(
    e: &Event,
    clock: &Clock,
    iface_name: impl Fn(u32) -> Option<String>,
    names: &Names,
) -> Record {
    let policy_ran = e.flags & maps::EV_F_POLICY != 0;
    let trace = e.kind == maps::EVENT_TRACE;
    let nat = match e.nat {
        maps::EV_NAT_DNAT => Some(("dnat", ip(e.nat_addr), e.nat_port)),
        maps::EV_NAT_UNNAT => Some(("unnat", ip(e.nat_addr), e.nat_port)),
        _ => None,
    };
    // Only a new flow's translation is a choice of backend: a known flow's is its own.
    let service = (e.nat == maps::EV_NAT_DNAT && matches!(e.ct, maps::CTR_NEW | maps::CTR_REUSED))
        .then(|| Service {
            frontend: ip(e.daddr),
            frontend_port: e.dport,
            backend: ip(e.nat_addr),
            backend_port: e.nat_port,
        });
    Record {
        time: clock.rfc3339(e.time_ns),
        kind: if trace { "trace" } else { "flow" },
        iface: iface_name(e.ifindex).unwrap_or_else(|| format!("if{}", e.ifindex)),
        ifindex: e.ifindex,
        hook: hook_name(e.hook),
        direction: direction(e.hook),
        proto: proto_name(e.proto),
        src: ip(e.saddr),
        sport: e.sport,
        dst: ip(e.daddr),
        dport: e.dport,
        service,
        verdict: match e.verdict {
            TC_DROP => "deny",
            TC_REDIRECT => "reject",
            TC_PASS => "allow",
            _ => "other",
        },
        reason: REASONS
            .get(usize::from(e.reason))
            .copied()
            .unwrap_or("not-counted"),
        policy: policy_ran.then_some(if e.flags & maps::EV_F_ALLOW != 0 {
            "allow"
        } else {
            "deny"
        }),
        rule_id: policy_ran.then_some(e.rule_id),
        rule: policy_ran
            .then(|| names.rules.get(&e.rule_id).cloned())
            .flatten(),
        logged: e.flags & maps::EV_F_LOG != 0,
        originated_by_endpoint: e.flags & maps::EV_F_EP_ORIGINATED != 0,
        conntrack: conntrack(e.ct),
        trace: trace.then(|| TraceDetail {
            parse: maps::PARSE_RESULTS
                .get(usize::from(e.parse))
                .copied()
                .unwrap_or("not-parsed"),
            len: e.len,
            tcp_flags: (e.proto == 6 && e.parse == 0).then(|| tcp_flags(e.tcp_flags)),
            icmp: (e.proto == 1 && e.parse == 0).then_some((e.icmp_type, e.icmp_code)),
            nat,
        }),
    }
}

/// One line for people.
pub fn render(r: &Record) -> String {
    let mut s = format!(
        "{} {} {} {} {}:{} -> {}:{}",
        r.time, r.iface, r.direction, r.proto, r.src, r.sport, r.dst, r.dport
    );
    if let Some(svc) = &r.service {
        let _ = write!(
            s,
            " (service, backend {}:{})",
            svc.backend, svc.backend_port
        );
    }
    if let Some(t) = &r.trace {
        if let Some(f) = &t.tcp_flags {
            let _ = write!(s, " [{f}]");
        }
        if let Some((ty, code)) = t.icmp {
            let _ = write!(s, " [icmp type {ty} code {code}]");
        }
        let _ = write!(s, " len {}", t.len);
        if t.parse != "ipv4" {
            let _ = write!(s, " parse {}", t.parse);
        }
        let _ = write!(s, " ct {}", r.conntrack);
    }
    let _ = write!(s, " {}", r.verdict);
    match (&r.rule, r.rule_id) {
        (Some(name), _) => {
            let _ = write!(s, " by {name}");
        }
        (None, Some(id)) => {
            let _ = write!(s, " by rule {id:#010x}");
        }
        (None, None) => {}
    }
    if let (Some(p), true) = (r.policy, r.verdict == "deny") {
        if p == "allow" {
            let _ = write!(s, " (policy allowed)");
        }
    }
    if r.logged {
        s.push_str(" [log]");
    }
    let _ = write!(s, " ({})", r.reason);
    if let Some(t) = &r.trace {
        if let (Some((what, a, p)), None) = (t.nat, &r.service) {
            let _ = write!(s, " {what} {a}:{p}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            time_ns: 5_000_000_123_456,
            ifindex: 7,
            kind: maps::EVENT_FLOW,
            hook: maps::HOOK_TO_WEP as u8,
            reason: 4,
            flags: maps::EV_F_POLICY,
            saddr: maps::addr_be(Ipv4Addr::new(10, 65, 0, 2)),
            daddr: maps::addr_be(Ipv4Addr::new(10, 65, 0, 3)),
            sport: 40000,
            dport: 8080,
            proto: 6,
            parse: 0,
            ct: maps::CTR_NEW,
            nat: 0,
            nat_addr: 0,
            nat_port: 0,
            len: 60,
            rule_id: 0x1234,
            verdict: 2,
            tcp_flags: 0x02,
            icmp_type: 0,
            icmp_code: 0,
            pad: [0; 5],
        }
    }

    #[test]
    fn times_are_utc_with_microseconds() {
        // 2024-02-29T23:59:59.999999Z is 1709251199.999999 s after the epoch.
        let c = Clock::with_offset(1_709_251_199_999_999_000 - 1_000);
        assert_eq!(c.rfc3339(1_000), "2024-02-29T23:59:59.999999Z");
        assert_eq!(
            Clock::with_offset(0).rfc3339(0),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn a_denied_flow_names_its_rule() {
        let names = Names {
            rules: [(0x1234, "end of tier default".to_string())].into(),
            services: Default::default(),
        };
        let r = decode(
            &event(),
            &Clock::with_offset(0),
            |i| (i == 7).then(|| "calib".into()),
            &names,
        );
        assert_eq!(r.verdict, "deny");
        assert_eq!(r.policy, Some("deny"));
        assert_eq!(r.direction, "ingress");
        assert_eq!(r.reason, "drop-policy");
        assert_eq!(r.rule.as_deref(), Some("end of tier default"));
        assert!(r.trace.is_none(), "flow records carry no trace detail");
        assert_eq!(
            render(&r),
            "1970-01-01T01:23:20.000123Z calib ingress tcp 10.65.0.2:40000 -> 10.65.0.3:8080 deny by end of tier default (drop-policy)"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["rule_id"], 0x1234);
        assert_eq!(json["src"], "10.65.0.2");
        assert!(json.get("service").is_none());
    }

    #[test]
    fn an_allowed_service_flow_shows_frontend_and_backend() {
        let mut e = event();
        e.hook = maps::HOOK_FROM_WEP as u8;
        e.flags = maps::EV_F_POLICY | maps::EV_F_ALLOW | maps::EV_F_EP_ORIGINATED;
        e.reason = 14;
        e.verdict = -1;
        e.nat = maps::EV_NAT_DNAT;
        e.nat_addr = maps::addr_be(Ipv4Addr::new(10, 65, 0, 9));
        e.nat_port = 8443;
        let r = decode(&e, &Clock::with_offset(0), |_| None, &Names::default());
        assert_eq!(r.iface, "if7");
        assert_eq!(r.verdict, "allow");
        assert!(r.originated_by_endpoint);
        assert_eq!(
            r.service,
            Some(Service {
                frontend: Ipv4Addr::new(10, 65, 0, 3),
                frontend_port: 8080,
                backend: Ipv4Addr::new(10, 65, 0, 9),
                backend_port: 8443
            })
        );
        assert!(
            render(&r).contains(
                " (service, backend 10.65.0.9:8443) allow by rule 0x00001234 (accept-nat)"
            ),
            "{}",
            render(&r)
        );
    }

    #[test]
    fn a_trace_record_says_what_each_stage_decided() {
        let mut e = event();
        e.kind = maps::EVENT_TRACE;
        e.flags = 0;
        e.reason = 1;
        e.verdict = -1;
        e.ct = maps::CTR_ESTABLISHED;
        e.tcp_flags = 0x10;
        let r = decode(
            &e,
            &Clock::with_offset(0),
            |_| Some("calib".into()),
            &Names::default(),
        );
        assert_eq!(r.policy, None);
        assert_eq!(r.conntrack, "established");
        let t = r.trace.as_ref().expect("trace detail");
        assert_eq!(t.tcp_flags.as_deref(), Some("ACK"));
        assert!(
            render(&r).ends_with("[ACK] len 60 ct established allow (accept-conntrack)"),
            "{}",
            render(&r)
        );
        e.parse = 1; // ARP
        e.proto = 0;
        let r = decode(&e, &Clock::with_offset(0), |_| None, &Names::default());
        assert_eq!(r.trace.unwrap().parse, "arp");
    }
}
