//! Interfaces: `ip link show`, and the devices weft creates (`ip link add ... type veth`).

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::tc::TcAttribute;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};

use crate::state::VxlanLink;

use super::{errno, Netlink, NetlinkError};

/// An interface as weft needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    pub mac: Option<[u8; 6]>,
    /// Administratively up (`ip link set X up`). The kernel deletes the routes through a
    /// device that goes down and refuses new ones until it is up again.
    pub up: bool,
    /// `veth`, `vxlan`, ... (IFLA_INFO_KIND); None for physical devices and loopback.
    pub kind: Option<String>,
    /// A veth's peer, as an ifindex in this namespace.
    pub peer: Option<u32>,
    pub mtu: u32,
    /// A VXLAN device's settings (the MTU is the device's).
    pub vxlan: Option<VxlanLink>,
}

fn from_message(m: &LinkMessage) -> Option<Link> {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        alias: None,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        peer: None,
        mtu: 0,
        vxlan: None,
    };
    let mut vxlan: Option<&[InfoVxlan]> = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(mtu) => l.mtu = *mtu,
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::IfAlias(n) => l.alias = Some(n.clone()),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(b);
                l.mac = Some(mac);
            }
            LinkAttribute::Link(i) => l.peer = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => vxlan = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l.vxlan = vxlan.map(|infos| {
        let mut v = VxlanLink {
            vni: 0,
            port: 0,
            local: std::net::Ipv4Addr::UNSPECIFIED,
            mtu: l.mtu,
            learning: false,
        };
        for i in infos {
            match i {
                InfoVxlan::Id(id) => v.vni = *id,
                InfoVxlan::Port(p) => v.port = *p,
                InfoVxlan::Local(a) => v.local = *a,
                InfoVxlan::Learning(on) => v.learning = *on,
                _ => {}
            }
        }
        v
    });
    (!l.name.is_empty()).then_some(l)
}

impl Netlink {
    /// Every interface in the namespace (`ip link show`).
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        // Without the statistics, which weft does not read: a third of each message, and most
        // of what there is to parse (every reconcile dumps every link).
        let mut s = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
            .execute();
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

    /// The interfaces that have a clsact qdisc (`tc qdisc show`), the only ones a legacy tc
    /// filter of weft's can be on.
    pub async fn clsact_ifindexes(&self) -> Result<BTreeSet<u32>, NetlinkError> {
        let mut s = self.handle.qdisc().get().execute();
        let mut out = BTreeSet::new();
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

    /// `ip link add <name> address <mac> type veth peer name <peer> address <peer_mac>`, then
    /// `ip link set ... alias <alias>` on both ends (the kernel ignores an alias given at
    /// creation), left down (`set_up` brings them up).
    pub async fn create_veth(
        &self,
        name: &str,
        mac: [u8; 6],
        peer: &str,
        peer_mac: [u8; 6],
        alias: &str,
    ) -> Result<(), NetlinkError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .address(peer_mac.to_vec())
            .build();
        let msg = LinkVeth::new(name, peer)
            .address(mac.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.add_link(
            msg,
            format!("ip link add {name} type veth peer name {peer}"),
        )
        .await?;
        for n in [name, peer] {
            self.set_alias(n, alias).await?;
        }
        Ok(())
    }

    /// `ip link set <name> alias <alias>` (the kernel ignores an alias given at creation).
    async fn set_alias(&self, name: &str, alias: &str) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_name(name).alias(alias).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(NetlinkError::request(format!(
                "ip link set {name} alias {alias}"
            )))
    }

    /// `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> local <local> dstport
    /// <port> nolearning`, then `ip link set <name> alias <alias>`, left down. No remote and
    /// no group: every remote VTEP is a static FDB entry.
    pub async fn create_vxlan(
        &self,
        name: &str,
        mac: [u8; 6],
        v: &VxlanLink,
        alias: &str,
    ) -> Result<(), NetlinkError> {
        let msg = LinkVxlan::new(name, v.vni)
            .local(v.local)
            .port(v.port)
            .learning(v.learning)
            .address(mac.to_vec())
            .mtu(v.mtu)
            .build();
        self.add_link(msg, format!("ip link add {name} type vxlan {v}"))
            .await?;
        self.set_alias(name, alias).await
    }

    /// `ip link add` of the device `msg` describes; `op` says which, for errors.
    async fn add_link(&self, msg: LinkMessage, op: String) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(NetlinkError::request(op))
    }

    /// `ip link set <index> up`.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(NetlinkError::request(format!("ip link set {index} up")))
    }

    /// `ip link del <index>`; gone already is success.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(NetlinkError::request(format!("ip link del {index}"))),
        }
    }
}

/// The index interface `name` has now in this network namespace, if it exists
/// (`if_nametoindex(3)`: asks the kernel, not a cache).
pub fn index_now(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}
