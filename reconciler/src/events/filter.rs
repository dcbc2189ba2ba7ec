//! Which interfaces are traced and which of their packets: FelixConfiguration `bpfLogLevel`
//! and `bpfLogFilters`, turned into the WEFT_IFACE_F_TRACE bit of each interface's weft_iface
//! entry and its weft_trace_flt entry. Pure: desired state calls it.
//!
//! As in Calico: tracing is on only at bpfLogLevel Debug. Without filters every interface weft
//! programs is traced, every packet. With filters, an interface is traced when a key names it,
//! else when `weps` (workload interfaces) or `heps` (data interfaces) covers it, else when
//! there is an `all`; the first of those keys decides which of its packets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weft_model::pcap::{self, PacketFilter, Side};
use weft_model::BpfLogLevel;

use crate::bpf::maps::{self, IfaceValue, Plain, TraceFilter, TraceHost, TracePort};

/// What FelixConfiguration asks to trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// bpfLogLevel is Debug.
    pub debug: bool,
    /// bpfLogFilters, parsed (validation has refused what does not parse).
    pub filters: BTreeMap<String, PacketFilter>,
}

impl TraceSettings {
    pub fn new(level: BpfLogLevel, filters: &BTreeMap<String, String>) -> TraceSettings {
        TraceSettings {
            debug: level == BpfLogLevel::Debug,
            filters: filters
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), pcap::parse_filter(v).ok()?)))
                .collect(),
        }
    }

    /// The filter for interface `name` (a workload interface when `workload`, else a host
    /// one), or None when it is not traced.
    pub fn filter_for(&self, name: &str, flags: u32) -> Option<&PacketFilter> {
        static EVERYTHING: PacketFilter = PacketFilter {
            ipv4: false,
            proto: None,
            hosts: Vec::new(),
            ports: Vec::new(),
        };
        if !self.debug {
            return None;
        }
        if self.filters.is_empty() {
            return Some(&EVERYTHING);
        }
        let class = if flags & maps::IFACE_F_WORKLOAD != 0 {
            Some("weps")
        } else if flags & maps::IFACE_F_DATA != 0 {
            Some("heps")
        } else {
            None
        };
        self.filters
            .get(name)
            .or_else(|| class.and_then(|c| self.filters.get(c)))
            .or_else(|| self.filters.get("all"))
    }
}

fn sides(s: Side) -> u8 {
    match s {
        Side::Src => maps::TF_SIDE_SRC,
        Side::Dst => maps::TF_SIDE_DST,
        Side::Either => maps::TF_SIDE_SRC | maps::TF_SIDE_DST,
    }
}

/// The fixed match a filter compiles to (struct weft_trace_filter). The model's parser keeps
/// filters within the match's slots.
pub fn compile(f: &PacketFilter) -> TraceFilter {
    let mut t = TraceFilter {
        flags: if f.ipv4 { maps::TF_F_IPV4 } else { 0 },
        proto: f.proto.unwrap_or(0),
        ..Default::default()
    };
    for (slot, h) in t.hosts.iter_mut().zip(&f.hosts) {
        let mask = u32::MAX.checked_shl(32 - u32::from(h.len)).unwrap_or(0);
        *slot = TraceHost {
            addr: maps::addr_be(h.addr),
            mask: maps::addr_be(Ipv4Addr::from(mask)),
            sides: sides(h.side),
            pad: [0; 3],
        };
    }
    for (slot, p) in t.ports.iter_mut().zip(&f.ports) {
        *slot = TracePort {
            port: p.port,
            sides: sides(p.side),
            pad: 0,
        };
    }
    t
}

/// The filter a weft_trace_flt entry holds, back in the subset's words (for `weft diff`).
pub fn describe(t: &TraceFilter) -> PacketFilter {
    t.describe()
}

/// Marks the traced interfaces among weft_iface's entries (`ifaces`: ifindex -> value) and
/// returns their weft_trace_flt entries.
pub fn apply(
    settings: &TraceSettings,
    ifaces: &mut maps::Entries,
    name_of: impl Fn(u32) -> Option<String>,
) -> maps::Entries {
    let mut out = maps::Entries::new();
    for (k, v) in ifaces.iter_mut() {
        let (Some(ifindex), Some(mut iv)) = (u32::from_bytes(k), IfaceValue::from_bytes(v)) else {
            continue;
        };
        let name = name_of(ifindex).unwrap_or_else(|| maps::from_c_name(&iv.name));
        let Some(f) = settings.filter_for(&name, iv.flags) else {
            continue;
        };
        iv.flags |= maps::IFACE_F_TRACE;
        *v = maps::Bytes::from_slice(iv.as_bytes());
        out.insert(k.clone(), maps::Bytes::from_slice(compile(f).as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(debug: bool, filters: &[(&str, &str)]) -> TraceSettings {
        TraceSettings::new(
            if debug {
                BpfLogLevel::Debug
            } else {
                BpfLogLevel::Info
            },
            &filters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn debug_without_filters_traces_everything_and_other_levels_nothing() {
        let s = settings(true, &[]);
        assert!(s
            .filter_for("cali1", maps::IFACE_F_WORKLOAD)
            .is_some_and(PacketFilter::is_everything));
        assert!(s.filter_for("eth0", maps::IFACE_F_DATA).is_some());
        assert!(settings(false, &[]).filter_for("cali1", 1).is_none());
        assert!(settings(false, &[("all", "")])
            .filter_for("cali1", 1)
            .is_none());
    }

    #[test]
    fn a_name_beats_its_class_and_a_class_beats_all() {
        let s = settings(
            true,
            &[("calib", "port 80"), ("weps", "tcp"), ("all", "udp")],
        );
        let w = maps::IFACE_F_WORKLOAD;
        assert_eq!(
            s.filter_for("calib", w).map(|f| f.to_string()).as_deref(),
            Some("port 80")
        );
        assert_eq!(
            s.filter_for("calia", w).map(|f| f.to_string()).as_deref(),
            Some("tcp")
        );
        assert_eq!(
            s.filter_for("eth0", maps::IFACE_F_DATA)
                .map(|f| f.to_string())
                .as_deref(),
            Some("udp")
        );
        let only = settings(true, &[("calib", "")]);
        assert!(only.filter_for("calia", w).is_none(), "no key covers calia");
        assert!(only.filter_for("calib", w).is_some());
        let heps = settings(true, &[("heps", "icmp")]);
        assert!(heps.filter_for("eth0", maps::IFACE_F_DATA).is_some());
        assert!(heps.filter_for("cali1", w).is_none());
        assert!(heps.filter_for("bpfout.weft", maps::IFACE_F_NAT).is_none());
    }

    #[test]
    fn filters_compile_to_the_fixed_match_and_back() {
        for text in [
            "all",
            "ip",
            "tcp and src host 10.65.0.2 and dst net 10.0.0.0/8 and dst port 80",
            "udp and port 53 and src port 1024",
            "host 10.0.0.1 and host 10.0.0.2",
        ] {
            let f = pcap::parse_filter(text).expect("parses");
            let t = compile(&f);
            assert_eq!(describe(&t), f, "{text}");
            assert_eq!(describe(&t).to_string(), f.to_string());
        }
        let t = compile(&pcap::parse_filter("src net 10.65.0.0/16 and dst port 80").unwrap());
        assert_eq!(t.flags, maps::TF_F_IPV4);
        assert_eq!(t.hosts[0].addr.to_ne_bytes(), [10, 65, 0, 0]);
        assert_eq!(t.hosts[0].mask.to_ne_bytes(), [255, 255, 0, 0]);
        assert_eq!(t.hosts[0].sides, maps::TF_SIDE_SRC);
        assert_eq!(t.hosts[1].sides, 0, "an unused slot");
        assert_eq!((t.ports[0].port, t.ports[0].sides), (80, maps::TF_SIDE_DST));
        assert_eq!(
            compile(&PacketFilter::default()).as_bytes(),
            TraceFilter::default().as_bytes()
        );
    }

    /// Desired state carries the bit and the filter, `weft diff` shows them, and the plan
    /// writes the filter before the entry that turns tracing on.
    #[test]
    fn desired_state_traces_the_interfaces_felix_configuration_names() {
        let wep = |name: &str, iface: &str, ip: &str| {
            format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  node: n1\n  interfaceName: {iface}\n  ipNetworks: [{ip}]\n  profiles: [projectcalico-default-allow]\n")
        };
        let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfLogLevel: Debug\n  bpfLogFilters: {calib: \"tcp and port 80\"}\n";
        let texts = [
            wep("a", "calia", "10.0.0.1"),
            wep("b", "calib", "10.0.0.2"),
            felix.to_string(),
        ];
        let cfg = weft_model::load_texts(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("f{i}.yaml"), t.clone())),
        )
        .expect("valid");
        let facts = crate::facts::HostFacts::fixture("n1", &[("calia", 5), ("calib", 6)]);
        let d = crate::desired::desired(&cfg, &facts).expect("desired");
        let text = d.state.render(&d.names());
        assert!(
            text.contains("map weft_trace_flt ifindex 6 traces tcp and port 80\n"),
            "{text}"
        );
        assert!(
            text.contains("ifindex 6 (calib) flags workload,trace "),
            "{text}"
        );
        assert!(text.contains("ifindex 5 (calia) flags workload "), "{text}");
        let ops = crate::plan::plan(&d.state, &Default::default(), d.settings.sizes);
        let at = |map: &str| {
            ops.iter()
                .position(|o| matches!(o, crate::plan::Op::WriteEntries { map: m, .. } if m == map))
                .unwrap_or_else(|| panic!("no write to {map}"))
        };
        assert!(at(maps::TRACE_FILTER) < at(maps::IFACE));
    }

    #[test]
    fn only_traced_interfaces_get_the_bit_and_an_entry() {
        let iv = |name: &str, flags| IfaceValue {
            flags,
            ruleset_in: 7,
            ruleset_out: 8,
            pad: 0,
            name: maps::c_name(name),
        };
        let mut ifaces = maps::Entries::from([
            maps::entry(&5u32, &iv("calia", maps::IFACE_F_WORKLOAD)),
            maps::entry(&6u32, &iv("calib", maps::IFACE_F_WORKLOAD)),
        ]);
        let flt = apply(&settings(true, &[("calib", "tcp")]), &mut ifaces, |_| None);
        assert_eq!(
            flt.keys().cloned().collect::<Vec<_>>(),
            [maps::Bytes::from_slice(6u32.as_bytes())]
        );
        let flags = |i: u32| IfaceValue::from_bytes(&ifaces[i.as_bytes()]).unwrap().flags;
        assert_eq!(flags(5), maps::IFACE_F_WORKLOAD);
        assert_eq!(flags(6), maps::IFACE_F_WORKLOAD | maps::IFACE_F_TRACE);
        let t = TraceFilter::from_bytes(&flt[6u32.as_bytes()]).unwrap();
        assert_eq!(t.proto, 6);
    }
}
