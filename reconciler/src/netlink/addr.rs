//! Addresses: `ip -4 address show`.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;

use super::{Netlink, NetlinkError};

impl Netlink {
    /// Every IPv4 address of the namespace, with its interface index and prefix length.
    pub async fn addresses_v4(&self) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
        let mut s = self.handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing addresses"))?
        {
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(a)) => Some(*a),
                _ => None,
            });
            let addr = local.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
                    _ => None,
                })
            });
            if let Some(a) = addr {
                out.push((m.header.index, a, m.header.prefix_len));
            }
        }
        Ok(out)
    }
}
