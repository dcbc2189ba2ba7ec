//! What the pinned maps say about the dataplane, for `weft status` and the metrics endpoint:
//! how full each map is, packets by reason per interface and hook (weft_ctrs), and hits per
//! policy rule (weft_rule_ctrs). Read-only; nothing here needs the daemon.

use std::collections::BTreeMap;

use libbpf_rs::{MapCore, MapHandle};

use super::maps::{self, spec};
use super::pinned::Pinned as _;
use super::{BpfError, Pins};

/// How full one pinned map is (`bpftool map show` gives max_entries; the count is taken in
/// batches, or known from the state weft made).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapFill {
    pub name: String,
    pub entries: u64,
    pub max_entries: u32,
}

impl MapFill {
    pub fn percent(&self) -> f64 {
        if self.max_entries == 0 {
            0.0
        } else {
            100.0 * self.entries as f64 / f64::from(self.max_entries)
        }
    }
}

fn open(pins: &Pins, name: &str) -> Result<MapHandle, BpfError> {
    MapHandle::from_pinned_path(pins.map(name)).map_err(|source| BpfError::Map {
        name: name.into(),
        source,
    })
}

/// The fill level of every map pinned under `<root>/maps`, by name. Counted in batches of a few
/// thousand entries a call (a walk of the keys, one call each, took 100 ms a reconcile at
/// 10,000 services, and a third of a second for a full default conntrack).
pub fn map_fill(pins: &Pins) -> Result<Vec<MapFill>, BpfError> {
    map_fill_knowing(pins, |_| None)
}

/// `map_fill`, taking the count of a map from `known` where it answers: the maps whose
/// entries weft sets whole hold what it last applied, and only the others (conntrack, the
/// kernel's own) need counting.
pub fn map_fill_knowing(
    pins: &Pins,
    known: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<MapFill>, BpfError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(pins.maps()) else {
        return Ok(out);
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::observe::owned(n))
        .collect();
    names.sort();
    for name in names {
        let m = open(pins, &name)?;
        // Arrays have every slot from the start (scratch space, the rings' loss counters) and
        // rings have no entries: full, or empty, by design, so their fill says nothing.
        if matches!(
            m.map_type(),
            libbpf_rs::MapType::Array
                | libbpf_rs::MapType::PercpuArray
                | libbpf_rs::MapType::RingBuf
        ) {
            continue;
        }
        out.push(MapFill {
            entries: match known(&name) {
                Some(n) => n,
                None => super::batch::count(&m).map_err(|source| BpfError::Map {
                    name: name.clone(),
                    source,
                })?,
            },
            max_entries: m.max_entries(),
            name,
        });
    }
    Ok(out)
}

/// Packets one hook of one interface counted, by reason index (bpf::reasons::REASONS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookCounters {
    pub ifindex: u32,
    /// The interface's name as weft_iface records it, if it has an entry.
    pub iface: Option<String>,
    /// `maps::HOOK_FROM_WEP` or `maps::HOOK_TO_WEP`.
    pub hook: u32,
    pub packets: Vec<u64>,
}

/// weft_ctrs, summed over CPUs. An absent map is no counters.
pub fn packet_counters(pins: &Pins) -> Result<Vec<HookCounters>, BpfError> {
    if !pins.map(spec::COUNTERS.name).exists() {
        return Ok(Vec::new());
    }
    let names: BTreeMap<u32, String> = if pins.map(spec::IFACE.name).exists() {
        let m = spec::IFACE.open(pins)?;
        spec::IFACE
            .keys(&m)
            .filter_map(|ifindex| {
                let v = spec::IFACE.lookup(&m, &ifindex).ok().flatten()?;
                Some((ifindex, maps::from_c_name(&v.name)))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let m = spec::COUNTERS.open(pins)?;
    let mut out = Vec::new();
    for key in spec::COUNTERS.keys(&m) {
        let Some(values) =
            spec::COUNTERS
                .lookup_percpu(&m, &key)
                .map_err(|source| BpfError::Map {
                    name: spec::COUNTERS.name.into(),
                    source,
                })?
        else {
            continue;
        };
        let mut packets = vec![0u64; super::reasons::REASONS.len()];
        for c in &values {
            for (sum, n) in packets.iter_mut().zip(c.packets.iter()) {
                *sum += n;
            }
        }
        out.push(HookCounters {
            ifindex: key.ifindex,
            iface: names.get(&key.ifindex).cloned(),
            hook: key.hook,
            packets,
        });
    }
    for ((ifindex, _), n) in xdp_drops(pins)? {
        let at = out
            .iter()
            .position(|c| c.ifindex == ifindex && c.hook == maps::HOOK_XDP);
        let c = match at {
            Some(i) => &mut out[i],
            None => {
                out.push(HookCounters {
                    ifindex,
                    iface: names.get(&ifindex).cloned(),
                    hook: maps::HOOK_XDP,
                    packets: vec![0u64; super::reasons::REASONS.len()],
                });
                out.last_mut().expect("just pushed")
            }
        };
        c.packets[super::reasons::DROP_UNTRACKED] += n;
    }
    out.sort_by_key(|c| (c.ifindex, c.hook));
    Ok(out)
}

/// XDP's drops (weft_xdp_ctrs): packets by (ifindex, rule id), summed over slots and CPUs.
/// They count both as the interface's XDP drop-untracked packets and as the rule's hits.
pub type XdpDrops = BTreeMap<(u32, u32), u64>;

/// weft_xdp_ctrs of an open map, summed.
pub fn xdp_drops_of(m: &MapHandle) -> Result<XdpDrops, BpfError> {
    let mut out = XdpDrops::new();
    for slot in 0..crate::abi::XDP_CTR_SLOTS {
        let cpus = spec::XDP_CTRS
            .lookup_percpu(m, &slot)
            .map_err(|source| BpfError::Map {
                name: spec::XDP_CTRS.name.into(),
                source,
            })?;
        for c in cpus.iter().flatten().filter(|c| c.ifindex != 0) {
            *out.entry((c.ifindex, c.rule_id)).or_default() += c.packets;
        }
    }
    Ok(out)
}

/// weft_xdp_ctrs, summed; none where it is not pinned.
pub fn xdp_drops(pins: &Pins) -> Result<XdpDrops, BpfError> {
    if !pins.map(spec::XDP_CTRS.name).exists() {
        return Ok(XdpDrops::new());
    }
    xdp_drops_of(&spec::XDP_CTRS.open(pins)?)
}

/// weft_rule_ctrs, summed over CPUs, with XDP's drops: packets each rule decided, by rule id.
pub fn rule_hits(pins: &Pins) -> Result<BTreeMap<u32, u64>, BpfError> {
    let mut out = BTreeMap::new();
    for ((_, rule), n) in xdp_drops(pins)? {
        *out.entry(rule).or_default() += n;
    }
    if !pins.map(spec::RULE_COUNTERS.name).exists() {
        return Ok(out);
    }
    let m = spec::RULE_COUNTERS.open(pins)?;
    for id in spec::RULE_COUNTERS.keys(&m) {
        if let Some(values) = spec::RULE_COUNTERS
            .lookup_percpu(&m, &id)
            .map_err(|source| BpfError::Map {
                name: spec::RULE_COUNTERS.name.into(),
                source,
            })?
        {
            *out.entry(id).or_default() += values.iter().sum::<u64>();
        }
    }
    Ok(out)
}
