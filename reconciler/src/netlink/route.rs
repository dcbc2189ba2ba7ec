//! weft's routes: `ip route show proto 87`, `ip route replace ... proto 87`, `ip route del`.

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::RouteMessageBuilder;

use super::{errno, Netlink, NetlinkError, WEFT_PROTO};
use crate::policy::flat::Net4;

/// A route of weft's: to `dst` out of interface `oif`, directly (scope link) or through a
/// gateway on that interface (`via <gw>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route4 {
    pub dst: Net4,
    pub oif: u32,
    pub via: Option<Ipv4Addr>,
}

fn message(r: &Route4) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::from(r.dst.addr), r.dst.len)
        .output_interface(r.oif)
        .protocol(RouteProtocol::Other(WEFT_PROTO))
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN));
    match r.via {
        Some(gw) => b.gateway(gw).scope(RouteScope::Universe).build(),
        None => b.scope(RouteScope::Link).build(),
    }
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
            if let (Some(d), Some(oif)) = (dst, oif) {
                out.push(Route4 {
                    dst: Net4::new(u32::from(d), m.header.destination_prefix_length),
                    oif,
                    via,
                });
            }
        }
        Ok(out)
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
