//! A fleet of hosts on one kernel: an underlay namespace with a bridge, host namespaces on it
//! (each a `Bed` of its own node, bpffs root and state directory, all sharing one config
//! directory), workloads in each, and the underlay itself as the outside client.
//!
//! Hosts 0 and 1 share the subnet 172.16.0.0/24; host 2 and beyond are on 172.16.1.0/24,
//! which the underlay routes to: VXLAN crosses a router, and CrossSubnet has both kinds of
//! neighbour to tell apart.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{kernel, Bed, Netns};

/// The pool every fleet workload's address is in.
pub const POOL: &str = "10.244.0.0/16";
/// The outside client's address (the underlay namespace's own, on both subnets).
pub const OUTSIDE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 100);
pub const OUTSIDE_B: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 100);

/// The outside client's address on host `i`'s subnet: what it connects to that host from.
pub fn outside_for(i: usize) -> Ipv4Addr {
    if i < 2 {
        OUTSIDE
    } else {
        OUTSIDE_B
    }
}

pub struct Fleet {
    /// The hosts; dropped first (each tears its weft down), then the underlay.
    pub hosts: Vec<Bed>,
    pub underlay: Arc<Netns>,
    pub config: PathBuf,
}

/// Host `i`'s node name.
pub fn node(i: usize) -> String {
    format!("node-{i}")
}

/// Host `i`'s underlay address and its prefix length.
pub fn underlay(i: usize) -> (Ipv4Addr, u8) {
    if i < 2 {
        (Ipv4Addr::new(172, 16, 0, 11 + i as u8), 24)
    } else {
        (Ipv4Addr::new(172, 16, 1, 11 + i as u8), 24)
    }
}

/// Host `i`'s address on vxlan.calico: the first of its block, 10.244.<i+1>.0.
pub fn tunnel(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8 + 1, 0)
}

/// Workload `j` of host `i`: 10.244.<i+1>.<j+2>.
pub fn workload_ip(i: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8 + 1, j as u8 + 2)
}

/// Workload `j` of host `i`'s name and `app` label.
pub fn workload_name(i: usize, j: usize) -> String {
    format!("h{i}w{j}")
}

/// A Service of type NodePort `node_port` in namespace fleet (ClusterIP 10.96.0.<node_port -
/// 30000>) whose one backend is node-1's first workload on `port`, with its EndpointSlice.
pub fn node_port_service(name: &str, node_port: u16, port: u16, proto: &str, etp: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: fleet}}\nspec:\n  type: NodePort\n  externalTrafficPolicy: {etp}\n  clusterIP: 10.96.0.{}\n  ports:\n    - {{name: p, port: 80, targetPort: {port}, nodePort: {node_port}, protocol: {proto}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: fleet\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n  - {{name: p, port: {port}, protocol: {proto}}}\nendpoints:\n  - {{addresses: [{}], nodeName: {}}}\n",
        node_port - 30000,
        workload_ip(1, 0),
        node(1),
    )
}

impl Fleet {
    /// `hosts` hosts with `per_host` workloads each, their Node resources and the workloads'
    /// endpoints written (namespace "fleet", labelled app=<name> and host=<node>, profile
    /// kns.fleet, which allows); no pool yet (`pool`). None where the test may be skipped.
    pub fn new(test: &str, hosts: usize, per_host: usize) -> Option<Fleet> {
        if !kernel::available(test) {
            return None;
        }
        let net = Arc::new(Netns::new("wu"));
        net.ip(&["link", "add", "br0", "type", "bridge"]);
        net.ip(&["link", "set", "br0", "up"]);
        net.ip(&["addr", "add", &format!("{OUTSIDE}/24"), "dev", "br0"]);
        net.ip(&["addr", "add", &format!("{OUTSIDE_B}/24"), "dev", "br0"]);
        // The underlay routes between the two subnets (/proc/sys/net is the opening thread's
        // namespace's).
        net.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .expect("ip_forward in the underlay");
        let config =
            std::env::temp_dir().join(format!("weft-vm-fleet-{}-{}", std::process::id(), net.name));
        std::fs::create_dir_all(&config).expect("config dir");
        let mut fleet = Fleet {
            hosts: Vec::new(),
            underlay: net,
            config,
        };
        let mut nodes = String::new();
        for i in 0..hosts {
            let (addr, len) = underlay(i);
            let gw = outside_for(i);
            let mut bed = Bed::on_underlay(&node(i), &fleet.underlay, addr, len, gw, &fleet.config);
            nodes += &format!(
                "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\nspec:\n  bgp:\n    ipv4Address: {addr}/{len}\n  ipv4VXLANTunnelAddr: {}\n",
                node(i),
                tunnel(i)
            );
            for j in 0..per_host {
                let w = bed.workload(&format!("cali{j}"), workload_ip(i, j));
                let name = workload_name(i, j);
                let yaml = bed.wep_yaml(
                    w,
                    &name,
                    "fleet",
                    &[("app", &name), ("host", &node(i))],
                    &["kns.fleet"],
                );
                bed.write(&format!("workloads/{name}.yaml"), &yaml);
            }
            fleet.hosts.push(bed);
        }
        fleet.write("00-nodes.yaml", &nodes);
        fleet.write(
            "00-namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet\n",
        );
        Some(fleet)
    }

    /// The IPPool of every workload, with `vxlanMode` `mode`.
    pub fn pool(&self, mode: &str) {
        self.write(
            "01-pool.yaml",
            &format!("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: fleet\nspec:\n  cidr: {POOL}\n  vxlanMode: {mode}\n"),
        );
    }

    pub fn write(&self, name: &str, text: &str) {
        self.hosts[0].write(name, text);
    }

    pub fn remove(&self, name: &str) {
        self.hosts[0].remove(name);
    }

    /// The FelixConfiguration named `default` with `spec` (its fields as YAML lines, indented
    /// by two), then `weft apply` on every host.
    pub fn felix(&self, spec: &str) {
        self.write(
            "05-felix.yaml",
            &format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n{spec}"),
        );
        self.apply_all();
    }

    /// `weft apply` on every host.
    pub fn apply_all(&self) {
        for h in &self.hosts {
            h.apply();
        }
    }

    /// Workload `j` of host `i`.
    pub fn w(&self, i: usize, j: usize) -> &crate::Workload {
        self.hosts[i].w(j)
    }

    /// `ip route get <to>` in host `i`'s namespace.
    pub fn route_get(&self, i: usize, to: Ipv4Addr) -> String {
        crate::output_text(&self.hosts[i].host.ip(&["route", "get", &to.to_string()]))
    }
}
