//! An underlay for tests of XDP's NodePort acceleration, whose FIB lookup needs a real
//! interface with a route and a neighbour: the calling thread moves to a network namespace of
//! its own (gone with the thread) holding a veth pair, `up0` with this node's underlay address
//! and a permanent neighbour entry for the backend node's.

use std::net::Ipv4Addr;
use std::process::Command;

/// This node's underlay address (its VTEP) on `up0`, and the backend node's.
pub const NODE_A_UNDERLAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const NODE_B_UNDERLAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// `up0`'s MAC, and the backend node's underlay MAC (its neighbour entry).
pub const UP0_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];
pub const NODE_B_UNDERLAY_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 2];

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into a new network namespace with the underlay (see the module's
/// doc) and returns `up0`'s ifindex. Only this thread, and the commands it starts, see it.
pub fn enter(mtu: u32) -> u32 {
    // SAFETY: unshare affects only the calling thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let mtu = mtu.to_string();
    ip(&[
        "link",
        "add",
        "up0",
        "address",
        &mac(&UP0_MAC),
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "mtu",
        &mtu,
    ]);
    ip(&[
        "addr",
        "add",
        &format!("{NODE_A_UNDERLAY}/24"),
        "dev",
        "up0",
    ]);
    ip(&["link", "set", "up0", "up"]);
    ip(&["link", "set", "up1", "up"]);
    ip(&[
        "neigh",
        "replace",
        &NODE_B_UNDERLAY.to_string(),
        "lladdr",
        &mac(&NODE_B_UNDERLAY_MAC),
        "dev",
        "up0",
        "nud",
        "permanent",
    ]);
    // The kernel's FIB lookup for XDP answers only where the interface forwards, as a data
    // interface under weft does. /proc/sys/net is the opening thread's namespace's.
    std::fs::write("/proc/sys/net/ipv4/conf/up0/forwarding", "1").expect("forwarding on up0");
    // SAFETY: a NUL-terminated name; the lookup runs in this thread's namespace.
    let index = unsafe { libc::if_nametoindex(c"up0".as_ptr()) };
    assert_ne!(index, 0, "up0 has no index");
    index
}
