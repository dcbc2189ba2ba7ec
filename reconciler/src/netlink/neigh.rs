//! weft's neighbour entries: permanent, protocol 87 (`ip neigh replace ... nud permanent proto 87`);
//! and the forwarding entries of the VXLAN device weft owns (`bridge fdb ... self permanent`),
//! all of which are weft's.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::AddressFamily;

use super::{errno, Netlink, NetlinkError, WEFT_PROTO};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh4 {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub lladdr: [u8; 6],
}

impl Netlink {
    /// weft's IPv4 neighbour entries.
    pub async fn neighbours_v4(&self) -> Result<Vec<(Neigh4, NeighbourMessage)>, NetlinkError> {
        let mut s = self
            .handle
            .neighbours()
            .get()
            .set_address_family(rtnetlink::packet_route::AddressFamily::Inet)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing neighbours"))?
        {
            let ours = m.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Protocol(RouteProtocol::Other(p)) if p == &WEFT_PROTO));
            if !ours {
                continue;
            }
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    Some(Ipv4Addr::from(ip.octets()))
                }
                _ => None,
            });
            let ll = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(b);
                    Some(mac)
                }
                _ => None,
            });
            if let (Some(ip), Some(lladdr)) = (ip, ll) {
                out.push((
                    Neigh4 {
                        ifindex: m.header.ifindex,
                        ip,
                        lladdr,
                    },
                    m,
                ));
            }
        }
        Ok(out)
    }

    /// `ip neigh replace <ip> lladdr <mac> dev <if> nud permanent proto 87`.
    pub async fn neigh_replace(&self, n: &Neigh4) -> Result<(), NetlinkError> {
        let mut req = self
            .handle
            .neighbours()
            .add(n.ifindex, IpAddr::V4(n.ip))
            .link_layer_address(&n.lladdr)
            .state(NeighbourState::Permanent)
            .replace();
        req.message_mut()
            .attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::Other(
                WEFT_PROTO,
            )));
        req.execute()
            .await
            .map_err(NetlinkError::request(format!("ip neigh replace {}", n.ip)))
    }

    /// `ip neigh del <ip> dev <if>`; gone already is success.
    pub async fn neigh_delete(&self, m: NeighbourMessage) -> Result<(), NetlinkError> {
        match self.handle.neighbours().del(m).execute().await {
            Err(e) if errno(&e) == Some(libc::ENOENT) || errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(NetlinkError::request("ip neigh del")),
        }
    }

    /// The permanent forwarding entries with a remote address on device `ifindex`
    /// (`bridge fdb show dev <dev>`): (MAC, remote VTEP).
    pub async fn fdb_v4(&self, ifindex: u32) -> Result<Vec<([u8; 6], Ipv4Addr)>, NetlinkError> {
        let mut s = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::request("listing fdb entries"))?
        {
            if m.header.ifindex != ifindex || m.header.state != NeighbourState::Permanent {
                continue;
            }
            // The bridge family's destination is not parsed as an address: four bytes are an
            // IPv4 one.
            let dst = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                }
                _ => None,
            });
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(b);
                    Some(mac)
                }
                _ => None,
            });
            if let (Some(mac), Some(dst)) = (mac, dst) {
                out.push((mac, dst));
            }
        }
        Ok(out)
    }

    /// `bridge fdb replace <mac> dev <ifindex> dst <dst> self permanent`.
    pub async fn fdb_replace(
        &self,
        ifindex: u32,
        mac: [u8; 6],
        dst: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add_bridge(ifindex, &mac)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .destination(IpAddr::V4(dst))
            .replace()
            .execute()
            .await
            .map_err(NetlinkError::request(format!(
                "bridge fdb replace {} dst {dst}",
                crate::state::mac_string(&mac)
            )))
    }

    /// `bridge fdb del <mac> dev <ifindex> self`; gone already is success.
    pub async fn fdb_delete(&self, ifindex: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = ifindex;
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        match self.handle.neighbours().del(m).execute().await {
            Err(e) if errno(&e) == Some(libc::ENOENT) || errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(NetlinkError::request(format!(
                "bridge fdb del {}",
                crate::state::mac_string(&mac)
            ))),
        }
    }
}
