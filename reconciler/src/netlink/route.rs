//! weft's routes: `ip route show proto 87`, `ip route replace ... proto 87`, `ip route del`;
//! and the routes of others that a route of weft's would replace (`ip route show exact <dst>`),
//! kept as the kernel describes them so that they can be put back as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::RouteMessageBuilder;

use super::{errno, Netlink, NetlinkError, WEFT_PROTO};
use crate::facts::ForeignRoute;
use crate::policy::flat::Net4;

/// A route of weft's: to `dst` out of interface `oif`, directly (scope link) or through a
/// gateway on that interface (`via <gw>`); with `oif` 0, a blackhole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route4 {
    pub dst: Net4,
    pub oif: u32,
    pub via: Option<Ipv4Addr>,
    /// The gateway is on the link though no address of the device covers it.
    pub onlink: bool,
}

fn message(r: &Route4) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::from(r.dst.addr), r.dst.len)
        .protocol(RouteProtocol::Other(WEFT_PROTO))
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN));
    if r.oif == 0 {
        return b
            .kind(RouteType::BlackHole)
            .scope(RouteScope::Universe)
            .build();
    }
    let b = b.output_interface(r.oif);
    let mut m = match r.via {
        Some(gw) => b.gateway(gw).scope(RouteScope::Universe).build(),
        None => b.scope(RouteScope::Link).build(),
    };
    if r.onlink {
        m.header.flags |= RouteFlags::Onlink;
    }
    m
}

impl Netlink {
    /// weft's IPv4 routes in the main table.
    pub async fn routes_v4(&self) -> Result<Vec<Route4>, NetlinkError> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut s = self.handle.route().get(filter).execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing routes"))?
        {
            if m.header.protocol != RouteProtocol::Other(WEFT_PROTO)
                || m.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let dst = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            });
            let oif = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let via = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            });
            let oif = match m.header.kind {
                RouteType::BlackHole => Some(0),
                _ => oif,
            };
            if let (Some(d), Some(oif)) = (dst, oif) {
                out.push(Route4 {
                    dst: Net4::new(u32::from(d), m.header.destination_prefix_length),
                    oif,
                    via,
                    onlink: m.header.flags.contains(RouteFlags::Onlink),
                });
            }
        }
        Ok(out)
    }

    /// The main table's IPv4 routes at the destinations `at` that are not weft's and that
    /// a route of weft's to the same destination would replace (tos 0, metric 0), by
    /// destination; `name_of` names interfaces by index. Asks nothing when `at` is empty: a
    /// host's table may be large, and most reconciles add no route.
    pub async fn foreign_routes_v4(
        &self,
        at: &BTreeSet<Net4>,
        name_of: &BTreeMap<u32, String>,
    ) -> Result<BTreeMap<Net4, ForeignRoute>, NetlinkError> {
        if at.is_empty() {
            return Ok(BTreeMap::new());
        }
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut s = self.handle.route().get(filter).execute();
        let mut out = BTreeMap::new();
        while let Some(mut m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing routes"))?
        {
            let h = &m.header;
            if h.protocol == RouteProtocol::Other(WEFT_PROTO)
                || h.table != RouteHeader::RT_TABLE_MAIN
                || h.tos != 0
                || m.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Priority(p) if *p != 0))
            {
                continue;
            }
            let Some(dst) = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            }) else {
                continue;
            };
            let dst = Net4::new(u32::from(dst), m.header.destination_prefix_length);
            if !at.contains(&dst) {
                continue;
            }
            let shown = show(&m, dst, name_of);
            // As a request, not a report: the kernel refuses routes said to be dead or down.
            m.header.flags &= RouteFlags::Onlink | RouteFlags::Pervasive;
            let mut message = vec![0; m.buffer_len()];
            m.emit(&mut message);
            out.insert(
                dst,
                ForeignRoute {
                    dst,
                    shown,
                    message,
                },
            );
        }
        Ok(out)
    }

    /// Puts back a route of someone else's as it was (`ip route add`, from the kernel's own
    /// message for it). A route there already is success: its owner put it back first.
    pub async fn route_restore(&self, r: &ForeignRoute) -> Result<(), NetlinkError> {
        let op = || format!("ip route add {}", r.shown);
        let m = RouteMessage::parse(r.message.as_slice()).map_err(|e| NetlinkError::Restore {
            op: op(),
            reason: e.to_string(),
        })?;
        match self.handle.route().add(m).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(NetlinkError::request(op())),
        }
    }

    /// `ip route replace <dst> dev <oif> scope link proto 87`.
    pub async fn route_replace(&self, r: &Route4) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(message(r))
            .replace()
            .execute()
            .await
            .map_err(NetlinkError::request(format!("ip route replace {}", r.dst)))
    }

    /// `ip route del <dst> dev <oif> proto 87`; a route already gone is success.
    pub async fn route_delete(&self, r: &Route4) -> Result<(), NetlinkError> {
        match self.handle.route().del(message(r)).execute().await {
            Err(e) if errno(&e) == Some(libc::ESRCH) || errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(NetlinkError::request(format!("ip route del {}", r.dst))),
        }
    }
}

/// A route as `ip route` shows it: `[type] <dst> [via <gw>] [dev <dev>] [proto <p>] [scope
/// link] [src <addr>]`.
fn show(m: &RouteMessage, dst: Net4, name_of: &BTreeMap<u32, String>) -> String {
    let mut out = match m.header.kind {
        RouteType::Unicast => String::new(),
        k => format!("{} ", format!("{k:?}").to_lowercase()),
    };
    out.push_str(&dst.to_string());
    for a in &m.attributes {
        match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => out.push_str(&format!(" via {g}")),
            RouteAttribute::MultiPath(hops) => out.push_str(&format!(" ({} nexthops)", hops.len())),
            _ => {}
        }
    }
    for a in &m.attributes {
        if let RouteAttribute::Oif(i) = a {
            match name_of.get(i) {
                Some(n) => out.push_str(&format!(" dev {n}")),
                None => out.push_str(&format!(" dev if{i}")),
            }
        }
    }
    let proto = match m.header.protocol {
        RouteProtocol::Other(n) => n.to_string(),
        p => format!("{p:?}").to_lowercase(),
    };
    out.push_str(&format!(" proto {proto}"));
    if m.header.scope == RouteScope::Link {
        out.push_str(" scope link");
    }
    for a in &m.attributes {
        if let RouteAttribute::PrefSource(RouteAddress::Inet(src)) = a {
            out.push_str(&format!(" src {src}"));
        }
    }
    out
}
