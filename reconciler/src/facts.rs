//! Facts about the host that desired state depends on but weft does not own: its node name,
//! its interfaces and their indexes, its own addresses, what the kernel supports. Gathering
//! them is the kernel side's (`netlink::facts::gather`); here they are values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::policy::flat::Net4;
use crate::state::OwnedLink;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The node name endpoints' spec.node is matched against.
    pub node: String,
    /// Every interface of the namespace: name -> ifindex.
    pub links: BTreeMap<String, u32>,
    /// The devices weft created (alias `weft`), as they are.
    pub owned_links: BTreeMap<String, OwnedLink>,
    /// The host's own IPv4 addresses (every interface's).
    pub host_addrs: BTreeSet<Ipv4Addr>,
    /// The same addresses by interface index (host endpoints with expectedIPs find their
    /// interface by them).
    pub link_addrs: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
    /// Each interface's MTU, by index (the VXLAN device's follows its underlay's).
    pub link_mtus: BTreeMap<u32, u32>,
    /// The interfaces that are veths, by index (XDP that sends frames back out of one runs
    /// in generic mode: see `AttachMode::XdpGeneric`).
    pub veths: BTreeSet<u32>,
    /// The kernel has TCX (6.6+).
    pub tcx: bool,
    /// The cgroup connect-time load balancing attaches to (the cgroup2 root by default).
    pub cgroup: Option<String>,
    /// This network namespace's cookie: connect-time load balancing serves its sockets only.
    pub netns_cookie: u64,
    /// Routes of others that weft replaced with leave (`--take-over-routes`), as they were,
    /// from the record in the state directory: put back when weft's route there goes.
    pub taken_over: BTreeMap<Net4, ForeignRoute>,
}

/// A route in the main table that is not weft's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForeignRoute {
    #[serde(serialize_with = "ser_display")]
    pub dst: Net4,
    /// As `ip route` shows it, e.g. `10.65.0.2/32 via 192.0.2.2 dev up0 proto static`.
    pub shown: String,
    /// The kernel's own message for it (rtnetlink RTM_NEWROUTE), so that it is put back as it
    /// was, nexthops, source address and all.
    #[serde(skip)]
    pub message: Vec<u8>,
}

fn ser_display<S: serde::Serializer>(v: &Net4, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl std::fmt::Display for ForeignRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl HostFacts {
    /// A host for tests and benchmarks, without asking a kernel: node `node`, the interfaces
    /// `links` (name, ifindex), 192.0.2.1 (TEST-NET-1) as its one address, TCX, no cgroup.
    pub fn fixture(node: &str, links: &[(&str, u32)]) -> HostFacts {
        HostFacts {
            node: node.into(),
            links: links.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            host_addrs: BTreeSet::from([Ipv4Addr::new(192, 0, 2, 1)]),
            tcx: true,
            ..Default::default()
        }
    }

    /// The name of interface `index`, if it exists.
    pub fn link_name(&self, index: u32) -> Option<&str> {
        self.links
            .iter()
            .find(|(_, &i)| i == index)
            .map(|(n, _)| n.as_str())
    }
}

/// The node name: the flag if given, else $WEFT_NODENAME, else $NODENAME (Calico's), else the
/// hostname.
pub fn node_name(flag: Option<&str>) -> String {
    if let Some(n) = flag {
        return n.to_string();
    }
    for var in ["WEFT_NODENAME", "NODENAME"] {
        if let Ok(n) = std::env::var(var) {
            if !n.is_empty() {
                return n;
            }
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
