//! Reads back from the kernel the state weft owns, in the same shape as desired state: pinned
//! maps (with the entries of the maps that are desired state), pinned programs and what they
//! were built from, attachments, weft's routes and neighbours, and the settings of the
//! interfaces weft configures.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

use libbpf_rs::{MapHandle, ProgramHandle};

use crate::bpf::link::{self, AttachMode, CgroupHook};
use crate::bpf::load;
use crate::bpf::maps::{self, Entries};
use crate::bpf::{BpfError, Hook, Pins};
use crate::facts::HostFacts;
use crate::netlink::{sysctl, Netlink, NetlinkError};
use crate::state::{
    managed_sysctl_keys, AttachmentState, CgroupAttachment, HostState, LinkState, MapState,
    NeighbourState, ProgramState, RouteState,
};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn dir_names(dir: &std::path::Path) -> Result<Vec<String>, ObserveError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ObserveError::Io {
            path: dir.display().to_string(),
            source,
        }),
    }
}

/// A pin removed between listing its directory and opening it (someone unpinning by hand
/// while weft looks) is as absent as one never there.
fn gone(e: &BpfError) -> bool {
    matches!(e, BpfError::Map { source, .. } if source.kind() == libbpf_rs::ErrorKind::NotFound)
}

/// Whether a pinned map or program is weft's: its name starts with `weft_`.
pub fn owned(name: &str) -> bool {
    name.starts_with("weft_")
}

/// Every entry of a pinned map (in batches where the map type allows).
pub fn read_entries(pins: &Pins, name: &str) -> Result<Entries, BpfError> {
    let m = MapHandle::from_pinned_path(pins.map(name)).map_err(|source| BpfError::Map {
        name: name.into(),
        source,
    })?;
    crate::bpf::batch::read_all(&m).map_err(|source| BpfError::Map {
        name: name.into(),
        source,
    })
}

/// Observes weft's state. `desired` says which interfaces and settings matter even where they
/// carry no weft mark yet.
pub async fn observe(
    pins: &Pins,
    nl: &Netlink,
    facts: &HostFacts,
    desired: &HostState,
) -> Result<HostState, ObserveError> {
    observe_rest(pins, nl, facts, desired, observe_maps(pins)?).await
}

/// The part of `observe` that needs nothing but the pins: weft's maps, their entries and the
/// rulesets. Most of an observation's time at scale, and it may be read while the desired
/// state is worked out (`run::plan`).
pub fn observe_maps(pins: &Pins) -> Result<HostState, ObserveError> {
    let mut st = HostState::default();

    // Only names with weft's prefix are weft's: a pin someone else put beside them is theirs.
    for name in dir_names(&pins.maps())?.into_iter().filter(|n| owned(n)) {
        let Some(def) = load::pinned_map_def(pins, &name)? else {
            continue;
        };
        let entries = if maps::RECONCILED.contains(&name.as_str()) {
            match read_entries(pins, &name) {
                Ok(e) => Some(e),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        st.maps.insert(
            name,
            MapState {
                def,
                entries: entries.map(std::sync::Arc::new),
            },
        );
    }
    if st.maps.contains_key(maps::POL_RS) {
        st.rulesets = crate::bpf::rulesets::read_all(pins)?;
    }
    Ok(st)
}

/// The rest of `observe`, onto `st` as `observe_maps` read it.
pub async fn observe_rest(
    pins: &Pins,
    nl: &Netlink,
    facts: &HostFacts,
    desired: &HostState,
    mut st: HostState,
) -> Result<HostState, ObserveError> {
    let mut prog_names: BTreeMap<u32, String> = BTreeMap::new();
    for name in dir_names(&pins.progs())?.into_iter().filter(|n| owned(n)) {
        let p = match ProgramHandle::from_pinned_path(pins.prog(&name)) {
            Ok(p) => p,
            Err(source) if source.kind() == libbpf_rs::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(BpfError::Program {
                    name: name.clone(),
                    source,
                }
                .into())
            }
        };
        prog_names.insert(p.id(), name.clone());
        if let Some(identity) = load::program_identity(p.as_fd())? {
            st.programs.insert(name, ProgramState { identity });
        }
    }
    let prog_name = |id: u32| {
        prog_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("prog id {id}"))
    };

    // Interfaces weft has marked (an entry in weft_iface, a pinned link, a device it created)
    // or wants something of.
    let mut ifaces: BTreeSet<String> = desired.links.keys().cloned().collect();
    ifaces.extend(desired.attachments.keys().map(|(i, _)| i.clone()));
    ifaces.extend(facts.owned_links.keys().cloned());
    if let Some(e) = st.maps.get(maps::IFACE).and_then(|m| m.entries.as_ref()) {
        for (ifindex, v) in maps::spec::IFACE.decode_all(e) {
            match facts.link_name(ifindex) {
                Some(n) => ifaces.insert(n.to_string()),
                None => ifaces.insert(maps::from_c_name(&v.name)),
            };
        }
    }
    for file in dir_names(&pins.links())? {
        let Some((iface, hook)) = Pins::parse_link_name(&file) else {
            continue;
        };
        let l = match link::read_tcx(&pins.links().join(&file)) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(BpfError::Query {
                    what: format!("link {file}"),
                    source,
                }
                .into())
            }
        };
        let program = if l.ifindex == 0 {
            crate::state::DEFUNCT.to_string()
        } else {
            prog_name(l.prog_id)
        };
        // Generic XDP is weft's choice on veths only; elsewhere the kernel's.
        let mode = if hook == Hook::Xdp
            && facts.veths.contains(&l.ifindex)
            && link::xdp_generic(l.ifindex).unwrap_or(false)
        {
            AttachMode::XdpGeneric
        } else {
            AttachMode::Tcx
        };
        st.attachments
            .insert((iface.clone(), hook), AttachmentState { program, mode });
        ifaces.insert(iface);
    }
    for file in dir_names(&pins.links())? {
        let Some(hook) = file.strip_prefix("cgroup:").and_then(CgroupHook::parse) else {
            continue;
        };
        let l = link::read_cgroup(&pins.links().join(&file)).map_err(|source| BpfError::Query {
            what: format!("link {file}"),
            source,
        })?;
        // The kernel names the cgroup by id: the directory desired state names, if it is that one.
        let cgroup = desired
            .cgroup_attachments
            .get(&hook)
            .filter(|want| {
                link::cgroup_id(std::path::Path::new(&want.cgroup)).ok() == Some(l.cgroup_id)
            })
            .map(|want| want.cgroup.clone())
            .unwrap_or_else(|| format!("cgroup id {}", l.cgroup_id));
        st.cgroup_attachments.insert(
            hook,
            CgroupAttachment {
                cgroup,
                program: prog_name(l.prog_id),
            },
        );
    }
    let clsact = nl.clsact_ifindexes().await?;
    for iface in &ifaces {
        let Some(&ifindex) = facts.links.get(iface) else {
            continue;
        };
        if clsact.contains(&ifindex) {
            for hook in [Hook::Ingress, Hook::Egress] {
                let id = link::query_tc(ifindex, hook).map_err(|source| BpfError::Query {
                    what: format!("tc filters of {iface}"),
                    source,
                })?;
                if let Some(id) = id {
                    st.attachments.insert(
                        (iface.clone(), hook),
                        AttachmentState {
                            program: prog_name(id),
                            mode: AttachMode::Tc,
                        },
                    );
                }
            }
        }
        // Settings: those weft wants here, as they are; elsewhere, those it may have set
        // that are not back at the namespace's default.
        let mut sysctls = BTreeMap::new();
        match desired.links.get(iface) {
            Some(want) => {
                for key in want.sysctls.keys() {
                    sysctls.insert(key.clone(), sysctl::read(key, iface)?);
                }
            }
            None => {
                for key in managed_sysctl_keys() {
                    let Ok(v) = sysctl::read(key, iface) else {
                        continue;
                    };
                    if sysctl::default_value(key).ok().as_deref() != Some(v.as_str()) {
                        sysctls.insert(key.to_string(), v);
                    }
                }
            }
        }
        let owned = facts.owned_links.get(iface).cloned();
        if !sysctls.is_empty() || owned.is_some() || desired.links.contains_key(iface) {
            st.links.insert(iface.clone(), LinkState { sysctls, owned });
        }
    }

    let name_of = |i: u32| {
        facts
            .link_name(i)
            .map(str::to_string)
            .unwrap_or_else(|| format!("if{i}"))
    };
    for r in nl.routes_v4().await? {
        st.routes.insert(
            r.dst,
            if r.oif == 0 {
                RouteState::blackhole()
            } else {
                RouteState {
                    dev: name_of(r.oif),
                    via: r.via,
                    onlink: r.onlink,
                }
            },
        );
    }
    // Addresses and forwarding entries: on weft's own devices, where all of them are weft's.
    let owned_ifindex: BTreeMap<u32, &str> = facts
        .owned_links
        .keys()
        .filter_map(|n| facts.links.get(n).map(|i| (*i, n.as_str())))
        .collect();
    if !owned_ifindex.is_empty() {
        for (index, a, len) in nl.addresses_v4().await? {
            if let Some(dev) = owned_ifindex.get(&index) {
                st.addresses.insert((dev.to_string(), a, len));
            }
        }
    }
    for (dev, o) in &facts.owned_links {
        let (Some(_), Some(&index)) = (&o.vxlan, facts.links.get(dev)) else {
            continue;
        };
        for (mac, dst) in nl.fdb_v4(index).await? {
            st.fdb.insert((dev.clone(), mac), dst);
        }
    }
    for (n, _) in nl.neighbours_v4().await? {
        st.neighbours.insert(
            (name_of(n.ifindex), n.ip),
            NeighbourState { lladdr: n.lladdr },
        );
    }
    Ok(st)
}
