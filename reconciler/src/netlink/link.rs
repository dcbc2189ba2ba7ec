//! Interfaces: `ip link show`.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::{Netlink, NetlinkError};

/// An interface as weft needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`ip link set X up`). The kernel deletes the routes through a
    /// device that goes down and refuses new ones until it is up again.
    pub up: bool,
}

fn from_message(m: &LinkMessage) -> Option<Link> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(Link {
        index: m.header.index,
        name,
        up: m.header.flags.contains(LinkFlags::Up),
    })
}

impl Netlink {
    /// Every interface in the namespace (`ip link show`).
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing links"))?
        {
            if let Some(l) = from_message(&m) {
                out.push(l);
            }
        }
        Ok(out)
    }
}

impl Netlink {
    /// The interfaces that have a clsact qdisc (`tc qdisc show`), the only ones a legacy tc
    /// filter of weft's can be on.
    pub async fn clsact_ifindexes(&self) -> Result<std::collections::BTreeSet<u32>, NetlinkError> {
        use rtnetlink::packet_route::tc::TcAttribute;
        let mut s = self.handle.qdisc().get().execute();
        let mut out = std::collections::BTreeSet::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing qdiscs"))?
        {
            if m.attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
            {
                out.insert(m.header.index as u32);
            }
        }
        Ok(out)
    }
}
