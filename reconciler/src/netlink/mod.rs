//! Links, addresses, routes and neighbours through rtnetlink, and per-device sysctls.
//!
//! weft's routes and neighbours carry routing protocol 87 (`proto 87` in iproute2); that is how
//! it finds its own and leaves everyone else's alone.

pub mod addr;
pub mod facts;
pub mod link;
pub mod monitor;
pub mod neigh;
pub mod route;
pub mod sysctl;

use std::io;

use rtnetlink::Handle;

/// The routing protocol number that marks weft's routes and neighbour entries.
pub const WEFT_PROTO: u8 = 87;

/// A netlink connection in the caller's network namespace. Create it on the thread (and in
/// the namespace) where it will be used: a netlink socket stays in the namespace it was made in.
pub struct Netlink {
    pub handle: Handle,
}

impl Netlink {
    /// Connects; must be called inside a tokio runtime.
    pub fn connect() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{op}: {source}")]
    Request {
        op: String,
        source: rtnetlink::Error,
    },
    #[error("interface {name} does not exist")]
    NoSuchLink { name: String },
    #[error("sysctl {path}: {source}")]
    Sysctl { path: String, source: io::Error },
    #[error("{op}: the route recorded is not one the kernel can read back ({reason}); add it again by hand")]
    Restore { op: String, reason: String },
}

impl NetlinkError {
    pub(crate) fn request(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
        let op = op.into();
        move |source| NetlinkError::Request { op, source }
    }
}

/// The errno of a netlink error reply, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}
