//! Addresses: `ip -4 address show`.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;

use super::{errno, Netlink, NetlinkError};

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

    /// `ip addr add <addr>/<len> dev <index>`; there already is success.
    pub async fn address_add(
        &self,
        index: u32,
        addr: Ipv4Addr,
        len: u8,
    ) -> Result<(), NetlinkError> {
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(addr), len)
            .execute()
            .await
        {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(NetlinkError::request(format!("ip addr add {addr}/{len}"))),
        }
    }

    /// `ip addr del <addr>/<len> dev <index>`; gone already is success.
    pub async fn address_delete(
        &self,
        index: u32,
        addr: Ipv4Addr,
        len: u8,
    ) -> Result<(), NetlinkError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing addresses"))?
        {
            let this = m.header.prefix_len == len
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(a)) if *a == addr));
            if this {
                return match self.handle.address().del(m).execute().await {
                    Err(e)
                        if errno(&e) == Some(libc::EADDRNOTAVAIL)
                            || errno(&e) == Some(libc::ENODEV) =>
                    {
                        Ok(())
                    }
                    other => {
                        other.map_err(NetlinkError::request(format!("ip addr del {addr}/{len}")))
                    }
                };
            }
        }
        Ok(())
    }
}
