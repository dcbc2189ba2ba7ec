//! An underlay for tests and benchmarks of XDP's NodePort acceleration, whose FIB lookup needs
//! a real interface with a route and a neighbour: the calling thread moves to a network
//! namespace of its own (gone with the thread) holding a veth pair, `up0` with this node's
//! underlay address and a permanent neighbour entry for the backend node's. And node A's maps
//! as `weft apply` would fill them: a NodePort whose backend lives on node B.

use std::net::Ipv4Addr;
use std::process::Command;

use weft::bpf::maps::{self, spec, Node4Value};
use weft::bpf::pinned::Pinned as _;
use weft::objects::{Object, ProgramSettings, XdpAccel};

use crate::harness::{Harness, IFINDEX};

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

/// A client outside the fleet, and the NodePort's one backend, a workload on node B.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
/// The backend node's tunnel address, and both nodes' VTEP MACs on vxlan.calico.
pub const NODE_B_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 0);
pub const NODE_A_VTEP_MAC: [u8; 6] = [0x66, 0x0a, 0, 0, 0, 1];
pub const NODE_B_VTEP_MAC: [u8; 6] = [0x66, 0x0b, 0, 0, 0, 2];
/// vxlan.calico's index (never looked up: XDP writes the tunnel's headers itself).
pub const TUNNEL: u32 = 77;
/// The NodePort (TCP and UDP), and the tunnel's VNI and port.
pub const NODE_PORT: u16 = 30080;
pub const VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;

/// Node A's program settings: the tunnel, DSR or not, the acceleration on or not.
pub fn settings(dsr: bool, accel: bool) -> ProgramSettings {
    ProgramSettings {
        tunnel: true,
        dsr,
        xdp_accel: accel.then_some(XdpAccel {
            vni: VNI,
            port: VXLAN_PORT,
            mtu: 1450,
            untracked: true,
            vtep: NODE_A_UNDERLAY,
            vtep_mac: NODE_A_VTEP_MAC,
        }),
        ..Default::default()
    }
}

/// Node A as `weft apply` would fill its maps: a NodePort (TCP and UDP) on its underlay
/// address whose one backend lives on node B, reached through the tunnel. Returns the harness
/// and the underlay interface's index, the calling thread moved into the underlay's namespace.
pub fn node_a(test: &str, settings: ProgramSettings) -> Option<(Harness, u32)> {
    let mut h = Harness::load_with(test, settings)?;
    h.load_also_with(Object::Hep, settings);
    let up0 = enter(1500);
    for ifindex in [IFINDEX, up0] {
        h.iface_flags(ifindex, maps::IFACE_F_DATA, 0, 0);
    }
    h.route(NODE_A_UNDERLAY, 32, maps::RT_F_LOCAL_HOST, 0);
    for (svc_id, proto) in [(9, 6), (10, 17)] {
        frontend(&h, svc_id, proto);
    }
    remote_backend(&h);
    let node = Node4Value {
        underlay: maps::addr_be(NODE_B_UNDERLAY),
        mac: NODE_B_VTEP_MAC,
        pad: [0; 2],
    };
    spec::NODE4
        .update(
            &h.map(spec::NODE4.name),
            &maps::addr_be(NODE_B_TUNNEL),
            &node,
        )
        .expect("node entry");
    Some((h, up0))
}

/// The NodePort, for `proto`, on node A's underlay address: its one backend on node B.
pub fn frontend(h: &Harness, svc_id: u32, proto: u8) {
    h.service(
        (NODE_A_UNDERLAY, NODE_PORT, proto),
        svc_id,
        0,
        &[(BACKEND, 8080)],
    );
}

/// Node B's workload, the backend, routed through the tunnel to node B.
pub fn remote_backend(h: &Harness) {
    h.route_via(
        BACKEND,
        32,
        maps::RT_F_REMOTE_WORKLOAD | maps::RT_F_TUNNELED,
        TUNNEL,
        NODE_B_TUNNEL,
    );
}
