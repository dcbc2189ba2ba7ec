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

use std::collections::BTreeMap;

use crate::bpf::maps::{self, Event};
use crate::bpf::reasons::REASONS;
use crate::desired::Desired;
use crate::policy::resolve::Direction;

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
        let ns = (i128::from(monotonic_ns) + self.offset_ns).max(0);
        let secs = (ns / 1_000_000_000) as u64;
        let micros = (ns % 1_000_000_000) / 1000;
        let whole = crate::daemon::status::rfc3339(secs);
        format!("{}.{micros:06}Z", whole.trim_end_matches('Z'))
    }
}

/// What rule ids stand for, from the configuration weft applied (as `weft dump policy` says).
/// A tier's end is shared by every endpoint the tier selects; for one endpoint it also says
/// which policies of the tier it went through, as Calico's flow logs name the policy a tier's
/// end-of-tier deny belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleNames {
    by_id: BTreeMap<u32, String>,
    /// (ifindex, policy direction, rule id) -> name, for tier ends.
    tier_ends: BTreeMap<(u32, Direction, u32), String>,
}

impl RuleNames {
    pub fn new(desired: &Desired) -> RuleNames {
        let mut tier_ends = BTreeMap::new();
        for ep in &desired.endpoints {
            for dir in [Direction::Ingress, Direction::Egress] {
                let mut origins: Vec<&str> = Vec::new();
                for r in desired
                    .rules
                    .get(&(ep.name.clone(), dir))
                    .into_iter()
                    .flatten()
                {
                    if r.index.is_some() {
                        if !origins.contains(&r.origin.as_str()) {
                            origins.push(&r.origin);
                        }
                        continue;
                    }
                    if r.origin.starts_with("end of tier") && !origins.is_empty() {
                        tier_ends.insert(
                            (ep.ifindex, dir, r.id),
                            format!("{} (after {})", r.describe(), origins.join(", ")),
                        );
                    }
                    origins.clear();
                }
            }
        }
        RuleNames {
            by_id: desired.names().rules,
            tier_ends,
        }
    }

    /// The name of rule `id` as it decided for the endpoint behind `ifindex` in `dir`.
    pub fn get(&self, ifindex: u32, dir: Direction, id: u32) -> Option<String> {
        self.tier_ends
            .get(&(ifindex, dir, id))
            .or_else(|| self.by_id.get(&id))
            .cloned()
    }
}

/// Decodes one record. `iface_name` names interfaces by index; `names` names rules.
pub fn decode(
    e: &Event,
    clock: &Clock,
    iface_name: impl Fn(u32) -> Option<String>,
    rules: &RuleNames,
) -> Record {
    let policy_ran = e.flags & maps::EV_F_POLICY != 0;
    let originated = e.flags & maps::EV_F_EP_ORIGINATED != 0;
    // The endpoint's egress policy judges the flows it opens, its ingress policy the others.
    let policy_dir = if originated {
        Direction::Egress
    } else {
        Direction::Ingress
    };
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
            .then(|| rules.get(e.ifindex, policy_dir, e.rule_id))
            .flatten(),
        logged: e.flags & maps::EV_F_LOG != 0,
        originated_by_endpoint: originated,
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
    // A flow's verdict speaks for itself when it is an allow; drops and traces say why.
    if r.trace.is_some() || r.verdict != "allow" {
        let _ = write!(s, " ({})", r.reason);
    }
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
    }

    #[test]
    fn a_denied_flow_names_its_rule() {
        let names = RuleNames {
            by_id: [(0x1234, "end of tier default".to_string())].into(),
            tier_ends: Default::default(),
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
    fn a_tier_end_is_named_after_the_policies_the_endpoint_went_through() {
        let texts = [
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: b, namespace: shop, labels: {app: web}}\nspec:\n  node: n1\n  interfaceName: calib\n  ipNetworks: [10.65.0.3]\n  profiles: [projectcalico-default-allow]\n",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: app == 'web'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {ports: [80]}\n",
        ];
        let cfg = weft_model::load_texts(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("f{i}.yaml"), t.to_string())),
        )
        .expect("valid");
        let facts = crate::facts::HostFacts::fixture("n1", &[("calib", 6)]);
        let d = crate::desired::desired(&cfg, &facts).expect("desired");
        let names = RuleNames::new(&d);
        let rules = &d.rules[&("shop/b".to_string(), Direction::Ingress)];
        let allow = rules.iter().find(|r| r.index == Some(0)).expect("rule 0");
        let end = rules
            .iter()
            .find(|r| r.origin == "end of tier default")
            .expect("tier end");
        assert_eq!(
            names.get(6, Direction::Ingress, allow.id).as_deref(),
            Some("NetworkPolicy shop/web ingress rule 0")
        );
        assert_eq!(
            names.get(6, Direction::Ingress, end.id).as_deref(),
            Some("end of tier default ingress (after NetworkPolicy shop/web)")
        );
        // Another interface's view of the same tier end: no endpoint, the plain name.
        assert_eq!(
            names.get(9, Direction::Ingress, end.id).as_deref(),
            Some("end of tier default ingress")
        );
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
        let r = decode(&e, &Clock::with_offset(0), |_| None, &RuleNames::default());
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
            render(&r).ends_with(" (service, backend 10.65.0.9:8443) allow by rule 0x00001234"),
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
            &RuleNames::default(),
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
        let r = decode(&e, &Clock::with_offset(0), |_| None, &RuleNames::default());
        assert_eq!(r.trace.unwrap().parse, "arp");
    }
}
