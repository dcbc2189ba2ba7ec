//! The host's facts (`facts::HostFacts`) as the kernel tells them: interfaces, weft's own
//! devices, addresses, and what the kernel supports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{Netlink, NetlinkError};
use crate::facts::HostFacts;
use crate::state::{OwnedLink, OWNED_ALIAS};

/// Gathers the facts of the host `nl` talks to; `node` and `cgroup` are the caller's. Also
/// the names of the interfaces that are down, from the same dump of links (a dump of a few
/// hundred links costs milliseconds, every reconcile).
pub async fn gather(
    nl: &Netlink,
    node: String,
    cgroup: Option<String>,
) -> Result<(HostFacts, BTreeSet<String>), NetlinkError> {
    let all = nl.links().await?;
    let down = all
        .iter()
        .filter(|l| !l.up)
        .map(|l| l.name.clone())
        .collect();
    let name_of: BTreeMap<u32, String> = all.iter().map(|l| (l.index, l.name.clone())).collect();
    let owned_links = all
        .iter()
        .filter(|l| l.alias.as_deref() == Some(OWNED_ALIAS))
        .map(|l| {
            (
                l.name.clone(),
                OwnedLink {
                    kind: l.kind.clone().unwrap_or_default(),
                    peer: l.peer.and_then(|p| name_of.get(&p).cloned()),
                    mac: l.mac.unwrap_or_default(),
                    up: l.up,
                    vxlan: l.vxlan,
                },
            )
        })
        .collect();
    let link_mtus = all.iter().map(|l| (l.index, l.mtu)).collect();
    let veths = all
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth"))
        .map(|l| l.index)
        .collect();
    let links = all.into_iter().map(|l| (l.name, l.index)).collect();
    let mut link_addrs: BTreeMap<u32, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for (index, a, _) in nl.addresses_v4().await? {
        link_addrs.entry(index).or_default().insert(a);
    }
    let host_addrs = link_addrs.values().flatten().copied().collect();
    // A kernel without cgroup socket-address programs has no connect-time load balancing,
    // as a host without cgroup2 has none (desired state says so).
    let cgroup = cgroup
        .or_else(|| crate::bpf::link::cgroup2_root().map(|p| p.display().to_string()))
        .filter(|_| crate::bpf::features::cgroup_sock_addr_programs());
    let facts = HostFacts {
        node,
        links,
        owned_links,
        host_addrs,
        link_addrs,
        link_mtus,
        veths,
        tcx: crate::bpf::link::tcx_supported(),
        cgroup,
        netns_cookie: crate::bpf::link::netns_cookie(),
        // The record is the state directory's: `run::Host` reads it.
        taken_over: Default::default(),
    };
    Ok((facts, down))
}
