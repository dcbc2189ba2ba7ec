//! Drift: what changed in the kernel behind weft's back. The daemon remembers the state it last
//! converged to; an object whose desired value is still that one but whose live value differs
//! was changed by someone else (a detached program, an edited map entry, a deleted route), and
//! the plan's operation on it is a repair. Objects whose desired value changed (an edited file,
//! an interface that came or went) are ordinary changes, not drift.
//!
//! Pure: it compares three `HostState`s object by object.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{mac_string, HostState};

/// A kind of object weft owns, as drift metrics and logs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Device,
    Sysctl,
    Address,
    Route,
    Neighbour,
    Fdb,
    Program,
    Attachment,
    Map,
    MapEntry,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Device,
        Kind::Sysctl,
        Kind::Address,
        Kind::Route,
        Kind::Neighbour,
        Kind::Fdb,
        Kind::Program,
        Kind::Attachment,
        Kind::Map,
        Kind::MapEntry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::Sysctl => "sysctl",
            Kind::Address => "address",
            Kind::Route => "route",
            Kind::Neighbour => "neighbour",
            Kind::Fdb => "fdb",
            Kind::Program => "program",
            Kind::Attachment => "attachment",
            Kind::Map => "map",
            Kind::MapEntry => "map-entry",
        }
    }
}

/// How the live object differs from the one weft made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Gone from the kernel.
    Missing,
    /// There, with another value.
    Changed,
    /// Carries weft's mark, but weft did not make it.
    Unexpected,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Missing => "missing",
            Change::Changed => "changed",
            Change::Unexpected => "unexpected",
        }
    }
}

/// One object that drifted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub kind: Kind,
    /// The object, in the words of `weft diff`.
    pub object: String,
    pub change: Change,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.kind.as_str(),
            self.object,
            self.change.as_str()
        )
    }
}

/// Every object of a state but the maps' entries and the rulesets (`entries_drifted`):
/// (kind, identity) -> value, both rendered.
fn objects(s: &HostState) -> BTreeMap<(Kind, String), String> {
    let mut out = BTreeMap::new();
    for (dev, l) in &s.links {
        if let Some(o) = &l.owned {
            out.insert((Kind::Device, dev.clone()), o.describe());
        }
        for (k, v) in &l.sysctls {
            let name = format!("net.{}", k.replace("{dev}", dev).replace('/', "."));
            out.insert((Kind::Sysctl, name), v.clone());
        }
    }
    for (dev, a, len) in &s.addresses {
        out.insert(
            (Kind::Address, format!("{a}/{len} dev {dev}")),
            String::new(),
        );
    }
    for (dst, r) in &s.routes {
        out.insert((Kind::Route, dst.to_string()), r.show());
    }
    for ((dev, mac), dst) in &s.fdb {
        out.insert(
            (Kind::Fdb, format!("{} dev {dev}", mac_string(mac))),
            format!("dst {dst}"),
        );
    }
    for ((dev, ip), n) in &s.neighbours {
        out.insert(
            (Kind::Neighbour, format!("{ip} dev {dev}")),
            mac_string(&n.lladdr),
        );
    }
    for (name, p) in &s.programs {
        out.insert((Kind::Program, name.clone()), p.identity.describe());
    }
    for ((iface, hook), a) in &s.attachments {
        out.insert(
            (Kind::Attachment, format!("{iface} {}", hook.as_str())),
            format!("{} ({})", a.program, a.mode.as_str()),
        );
    }
    for (name, m) in &s.maps {
        out.insert((Kind::Map, name.clone()), m.def.shape());
    }
    out
}

/// How an object's live value `h` differs from its desired value `w`, where weft last made it
/// `m`; None where it does not, or where the desired value is not the one weft made.
fn judge<V: PartialEq + ?Sized>(w: Option<&V>, h: Option<&V>, m: Option<&V>) -> Option<Change> {
    if w == h || w != m {
        return None;
    }
    Some(match (w, h) {
        (Some(_), None) => Change::Missing,
        (Some(_), Some(_)) => Change::Changed,
        (None, _) => Change::Unexpected,
    })
}

/// `judge` for every key of `w` or `h`, calling `f` with those that drifted.
fn get<'a, K: Ord, V: ?Sized, B: std::ops::Deref<Target = V>>(
    map: &'a BTreeMap<K, B>,
    k: &K,
) -> Option<&'a V> {
    map.get(k).map(|v| &**v)
}

fn each_drifted<K: Ord, V: PartialEq + ?Sized, B: std::ops::Deref<Target = V>>(
    w: &BTreeMap<K, B>,
    h: &BTreeMap<K, B>,
    m: &BTreeMap<K, B>,
    mut f: impl FnMut(&K, Change),
) {
    for (k, wv) in w {
        if let Some(c) = judge(Some(&**wv), get(h, k), get(m, k)) {
            f(k, c);
        }
    }
    for (k, hv) in h {
        if !w.contains_key(k) {
            if let Some(c) = judge(None, Some(&**hv), get(m, k)) {
                f(k, c);
            }
        }
    }
}

/// The drifted entries of the maps and rulesets, compared as they are held, not rendered: at
/// 10,000 endpoints, policies and services there are over a hundred thousand, and rendering
/// three states' worth of them took tens of megabytes on every resync. `maps_as_desired` are
/// the maps whose desired and live definitions agree (an entry of a missing or replaced map is
/// the map's drift, not its own).
fn entries_drifted(
    desired: &HostState,
    observed: &HostState,
    last: &HostState,
    maps_as_desired: &BTreeSet<&str>,
    out: &mut Vec<Drift>,
) {
    // A ruleset is an entry of weft_pol_rs whose value is a frozen map of its own: it is told
    // apart by its cells, which nobody can edit, so a ruleset drifts only by going missing
    // or by another map put under its id.
    each_drifted(
        &desired.rulesets,
        &observed.rulesets,
        &last.rulesets,
        |id, change| {
            out.push(Drift {
                kind: Kind::MapEntry,
                object: format!("{} key {id:08x}", crate::bpf::maps::POL_RS),
                change,
            })
        },
    );
    let no_entries = crate::bpf::maps::Entries::new();
    let entries =
        |s: &HostState, name: &str| -> Option<std::sync::Arc<crate::bpf::maps::Entries>> {
            s.maps.get(name).and_then(|m| m.entries.clone())
        };
    for name in maps_as_desired {
        let (w, h) = (entries(desired, name), entries(observed, name));
        // The same entries, as an unchanged map's are (one allocation): nothing drifted.
        if w == h {
            continue;
        }
        let m = entries(last, name);
        each_drifted(
            w.as_deref().unwrap_or(&no_entries),
            h.as_deref().unwrap_or(&no_entries),
            m.as_deref().unwrap_or(&no_entries),
            |k, change| {
                let key: String = k.iter().map(|b| format!("{b:02x}")).collect();
                out.push(Drift {
                    kind: Kind::MapEntry,
                    object: format!("{name} key {key}"),
                    change,
                })
            },
        );
    }
}

/// The objects whose live value differs from the one weft last converged to, where that is
/// still the desired value: what a plan from `observed` to `desired` repairs rather than
/// changes. With no previous convergence (a daemon just started) nothing counts as drift.
pub fn find(desired: &HostState, observed: &HostState, last: Option<&HostState>) -> Vec<Drift> {
    let Some(last) = last else {
        return Vec::new();
    };
    let (want, have, made) = (objects(desired), objects(observed), objects(last));
    let keys: BTreeSet<&(Kind, String)> = want.keys().chain(have.keys()).collect();
    // Programs that are not as weft made them: the hooks that run them follow, and are their
    // drift, not drift of their own.
    let programs: BTreeSet<&str> = keys
        .iter()
        .filter(|(k, _)| *k == Kind::Program)
        .filter(|key| want.get(*key) != have.get(*key))
        .map(|(_, name)| name.as_str())
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let (w, h, m) = (want.get(key), have.get(key), made.get(key));
        let Some(change) = judge(w, h, m) else {
            continue;
        };
        if key.0 == Kind::Attachment
            && w.is_some_and(|w| programs.iter().any(|p| w.starts_with(&format!("{p} ("))))
        {
            continue;
        }
        out.push(Drift {
            kind: key.0,
            object: key.1.clone(),
            change,
        });
    }
    let maps_as_desired: BTreeSet<&str> = desired
        .maps
        .keys()
        .chain(observed.maps.keys())
        .map(String::as_str)
        .filter(|name| {
            let map_key = (Kind::Map, name.to_string());
            want.get(&map_key) == have.get(&map_key)
        })
        .collect();
    entries_drifted(desired, observed, last, &maps_as_desired, &mut out);
    out.sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    out
}

#[cfg(test)]
mod tests {

    use std::net::Ipv4Addr;

    use super::*;
    use crate::bpf::Hook;
    use crate::desired::desired;
    use crate::facts::HostFacts;
    use crate::policy::flat::Net4;

    fn facts() -> HostFacts {
        HostFacts::fixture("n1", &[("lo", 1), ("calia", 5), ("calib", 6)])
    }

    fn wep(name: &str, iface: &str, ip: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  node: n1\n  interfaceName: {iface}\n  mac: \"02:00:00:00:00:01\"\n  ipNetworks: [{ip}]\n  profiles: [projectcalico-default-allow]\n"
        )
    }

    fn state(files: &[String]) -> HostState {
        let cfg = weft_model::load_texts(
            files
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("f{i}.yaml"), t.clone())),
        )
        .expect("valid");
        desired(&cfg, &facts()).expect("desired").state
    }

    #[test]
    fn nothing_drifts_before_the_first_convergence_or_while_live_matches() {
        let s = state(&[wep("a", "calia", "10.0.0.1")]);
        assert!(find(&s, &HostState::default(), None).is_empty());
        assert!(find(&s, &s, Some(&s)).is_empty());
    }

    #[test]
    fn a_deleted_route_and_a_detached_program_are_drift() {
        let s = state(&[wep("a", "calia", "10.0.0.1")]);
        let mut live = s.clone();
        live.routes
            .remove(&Net4::host(u32::from(Ipv4Addr::new(10, 0, 0, 1))));
        live.attachments
            .remove(&("calia".to_string(), Hook::Ingress));
        live.neighbours.clear();
        let d = find(&s, &live, Some(&s));
        let kinds: Vec<(Kind, Change)> = d.iter().map(|d| (d.kind, d.change)).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Route, Change::Missing),
                (Kind::Neighbour, Change::Missing),
                (Kind::Attachment, Change::Missing)
            ],
            "{d:#?}"
        );
        assert_eq!(d[0].to_string(), "route 10.0.0.1/32: missing");
        assert_eq!(d[2].object, "calia ingress");
    }

    #[test]
    fn an_edited_entry_is_changed_and_a_foreign_one_in_weft_maps_unexpected() {
        let s = state(&[wep("a", "calia", "10.0.0.1")]);
        let mut live = s.clone();
        let iface = live
            .maps
            .get_mut(crate::bpf::maps::IFACE)
            .and_then(|m| m.entries.as_mut())
            .map(std::sync::Arc::make_mut)
            .expect("weft_iface entries");
        let (k, v) = iface
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .expect("one");
        let mut edited = v.clone();
        edited[0] ^= 1;
        iface.insert(k, edited);
        iface.insert(crate::bpf::maps::Bytes::from_slice(&[9, 0, 0, 0]), v);
        let d = find(&s, &live, Some(&s));
        assert_eq!(
            d.iter().map(|d| (d.kind, d.change)).collect::<Vec<_>>(),
            vec![
                (Kind::MapEntry, Change::Changed),
                (Kind::MapEntry, Change::Unexpected)
            ],
            "{d:#?}"
        );
    }

    #[test]
    fn a_configuration_change_is_not_drift() {
        let before = state(&[wep("a", "calia", "10.0.0.1")]);
        let after = state(&[wep("a", "calia", "10.0.0.1"), wep("b", "calib", "10.0.0.2")]);
        assert!(find(&after, &before, Some(&before)).is_empty());
        // ... even where live also drifted from the old state in the same objects.
        let mut live = before.clone();
        live.routes.clear();
        let d = find(&after, &live, Some(&before));
        assert_eq!(
            d.iter().map(|d| d.object.as_str()).collect::<Vec<_>>(),
            vec!["10.0.0.1/32"],
            "only a's route drifted; b's is new: {d:#?}"
        );
    }

    #[test]
    fn a_removed_program_is_one_drift_not_one_per_hook_running_it() {
        let s = state(&[wep("a", "calia", "10.0.0.1"), wep("b", "calib", "10.0.0.2")]);
        let mut live = s.clone();
        live.programs.remove("weft_to_wep");
        for ((_, hook), a) in live.attachments.iter_mut() {
            if *hook == Hook::Egress {
                a.program = "prog id 42".into();
            }
        }
        let d = find(&s, &live, Some(&s));
        assert_eq!(
            d.iter().map(|d| (d.kind, d.change)).collect::<Vec<_>>(),
            vec![(Kind::Program, Change::Missing)],
            "{d:#?}"
        );
    }

    #[test]
    fn a_deleted_map_is_one_drift_not_one_per_entry() {
        let s = state(&[wep("a", "calia", "10.0.0.1")]);
        let mut live = s.clone();
        live.maps.remove(crate::bpf::maps::RT4);
        let d = find(&s, &live, Some(&s));
        assert_eq!(
            d.iter().map(|d| (d.kind, d.change)).collect::<Vec<_>>(),
            vec![(Kind::Map, Change::Missing)],
            "{d:#?}"
        );
    }
}
