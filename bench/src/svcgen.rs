//! The services benchmark's inputs: N Kubernetes services with an EndpointSlice of ten backends
//! each, written the way a GitOps repository holds them (one file per service, the Service and
//! its EndpointSlice as two documents), and the rulesets kube-proxy would write for the same
//! services in its iptables and nftables modes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Backends per service.
pub const BACKENDS: usize = 10;
/// Every NODEPORT_EVERY-th service is a NodePort service, while the default NodePort range
/// (30000-32767) has a port left: Kubernetes refuses a second Service on a taken one, and weft
/// programs neither (so past 27,680 services the rest are ClusterIPs).
pub const NODEPORT_EVERY: usize = 10;
const NODE_PORTS: usize = 2768;
/// This host's node name: the first backend of every service runs here.
pub const NODE: &str = "bench-node";
/// The pod network (kube-proxy's --cluster-cidr: traffic from outside it is masqueraded).
pub const CLUSTER_CIDR: &str = "10.128.0.0/9";

/// One service of the set, as the generator made it.
#[derive(Clone, Debug)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub target_port: u16,
    pub node_port: Option<u16>,
    pub backends: Vec<Ipv4Addr>,
}

impl Svc {
    pub fn new(i: usize) -> Svc {
        let vip = u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32;
        let backends = (0..BACKENDS)
            .map(|j| backend_addr(i * BACKENDS + j))
            .collect();
        Svc {
            namespace: format!("team-{:02}", i % 20),
            name: format!("svc-{i:05}"),
            cluster_ip: Ipv4Addr::from(vip),
            port: 80,
            target_port: 8080,
            node_port: (i.is_multiple_of(NODEPORT_EVERY) && i / NODEPORT_EVERY < NODE_PORTS)
                .then(|| 30000 + (i / NODEPORT_EVERY) as u16),
            backends,
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}/{}.yaml", self.namespace, self.name)
    }

    /// "namespace/name:http", kube-proxy's name for a service port.
    pub fn port_name(&self) -> String {
        format!("{}/{}:http", self.namespace, self.name)
    }

    /// The Service and its EndpointSlice, as `kubectl get -o yaml` would print them (less the
    /// fields the API server adds) for a Service without a selector, whose slice is managed by
    /// someone else: weft takes written slices only for such Services (with a selector, it
    /// makes them from the WorkloadEndpoints selected, and the backends here are no endpoints).
    pub fn yaml(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: {name}\n    app.kubernetes.io/part-of: bench\nspec:\n  type: {ty}\n  clusterIP: {ip}\n  clusterIPs:\n  - {ip}\n  internalTrafficPolicy: Cluster\n  ipFamilies:\n  - IPv4\n  ipFamilyPolicy: SingleStack\n  ports:\n  - name: http\n    port: {port}\n    protocol: TCP\n    targetPort: {target}\n",
            name = self.name,
            ns = self.namespace,
            ty = if self.node_port.is_some() { "NodePort" } else { "ClusterIP" },
            ip = self.cluster_ip,
            port = self.port,
            target = self.target_port,
        );
        if let Some(np) = self.node_port {
            let _ = writeln!(s, "    nodePort: {np}");
            s.push_str("  externalTrafficPolicy: Cluster\n");
        }
        let _ = write!(
            s,
            "  sessionAffinity: None\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abcde\n  namespace: {ns}\n  labels:\n    endpointslice.kubernetes.io/managed-by: weft-bench\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- name: http\n  port: {target}\n  protocol: TCP\nendpoints:\n",
            name = self.name,
            ns = self.namespace,
            target = self.target_port,
        );
        for (j, b) in self.backends.iter().enumerate() {
            let node = if j == 0 {
                NODE.to_string()
            } else {
                format!("node-{}", j % 3)
            };
            let _ = write!(
                s,
                "- addresses:\n  - {b}\n  conditions:\n    ready: true\n    serving: true\n    terminating: false\n  nodeName: {node}\n  targetRef:\n    kind: Pod\n    name: {name}-{j}\n    namespace: {ns}\n",
                name = self.name,
                ns = self.namespace,
            );
        }
        s
    }
}

/// Distinct pod addresses inside CLUSTER_CIDR, 100,000 of them per /15.
pub fn backend_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 2 + k as u32)
}

/// kube-proxy's chain suffix: 16 characters of base32 of a hash of the name (it uses SHA-256;
/// any stable hash gives names of the same shape and length).
fn chain_hash(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in s.bytes() {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    (0..16)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

fn svc_chain(s: &Svc) -> String {
    format!("KUBE-SVC-{}", chain_hash(&format!("{}tcp", s.port_name())))
}

fn ext_chain(s: &Svc) -> String {
    format!("KUBE-EXT-{}", chain_hash(&format!("{}tcp", s.port_name())))
}

fn sep_chain(s: &Svc, b: Ipv4Addr) -> String {
    format!(
        "KUBE-SEP-{}",
        chain_hash(&format!("{}tcp{b}:{}", s.port_name(), s.target_port))
    )
}

/// The nat table kube-proxy's iptables mode writes for `svcs` (iptables-restore input, as
/// kube-proxy feeds it with `--noflush`): KUBE-SERVICES matching each cluster IP and port,
/// a KUBE-SVC chain per service choosing an endpoint with `-m statistic --mode random`,
/// a KUBE-SEP chain per endpoint doing the DNAT, and KUBE-NODEPORTS. The jumps from the
/// built-in chains are part of it, so one restore sets everything up.
pub fn iptables_ruleset(svcs: &[Svc]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    chains.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    rules.push_str("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    for s in svcs {
        write_service_iptables(s, &mut chains, &mut rules);
    }
    rules.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    chains.push_str(&rules);
    chains.push_str("COMMIT\n");
    chains
}

fn write_service_iptables(s: &Svc, chains: &mut String, rules: &mut String) {
    let svc = svc_chain(s);
    let pn = s.port_name();
    let _ = writeln!(chains, ":{svc} - [0:0]");
    let _ = writeln!(
        rules,
        "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{pn} cluster IP\" -m tcp --dport {port} -j {svc}",
        ip = s.cluster_ip,
        port = s.port
    );
    let _ = writeln!(
        rules,
        "-A {svc} ! -s {CLUSTER_CIDR} -d {ip}/32 -p tcp -m comment --comment \"{pn} cluster IP\" -m tcp --dport {port} -j KUBE-MARK-MASQ",
        ip = s.cluster_ip,
        port = s.port
    );
    let n = s.backends.len();
    for (i, b) in s.backends.iter().enumerate() {
        let sep = sep_chain(s, *b);
        let _ = writeln!(chains, ":{sep} - [0:0]");
        if i + 1 < n {
            let _ = writeln!(
                rules,
                "-A {svc} -m comment --comment \"{pn} -> {b}:{t}\" -m statistic --mode random --probability {p:.11} -j {sep}",
                t = s.target_port,
                p = 1.0 / (n - i) as f64
            );
        } else {
            let _ = writeln!(
                rules,
                "-A {svc} -m comment --comment \"{pn} -> {b}:{t}\" -j {sep}",
                t = s.target_port
            );
        }
        let _ = writeln!(
            rules,
            "-A {sep} -s {b}/32 -m comment --comment {pn} -j KUBE-MARK-MASQ\n-A {sep} -p tcp -m comment --comment {pn} -m tcp -j DNAT --to-destination {b}:{t}",
            t = s.target_port
        );
    }
    if let Some(np) = s.node_port {
        let ext = ext_chain(s);
        let _ = writeln!(chains, ":{ext} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-NODEPORTS -p tcp -m comment --comment {pn} -m tcp --dport {np} -j {ext}\n-A {ext} -m comment --comment \"masquerade traffic for {pn} external destinations\" -j KUBE-MARK-MASQ\n-A {ext} -j {svc}"
        );
    }
}

fn nft_name(s: &Svc) -> String {
    format!("{}/{}/tcp/http", s.namespace, s.name)
}

fn nft_svc_chain(s: &Svc) -> String {
    format!("service-{}-{}", &chain_hash(&nft_name(s))[..8], nft_name(s))
}

fn nft_ep_chain(s: &Svc, b: Ipv4Addr) -> String {
    let name = format!("{}__{b}/{}", nft_name(s), s.target_port);
    format!("endpoint-{}-{name}", &chain_hash(&name)[..8])
}

/// kube-proxy's nftables mode for `svcs`, as one `nft -f` transaction: a table of its own, the
/// service-ips and service-nodeports verdict maps, a chain per service choosing an endpoint with
/// `numgen random mod N vmap`, and a chain per endpoint doing the DNAT.
pub fn nft_ruleset(svcs: &[Svc]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "add table ip kube-proxy\n\
add chain ip kube-proxy mark-for-masquerade\n\
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000\n\
add chain ip kube-proxy masquerading\n\
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return\n\
add rule ip kube-proxy masquerading mark set mark xor 0x4000\n\
add rule ip kube-proxy masquerading masquerade fully-random\n\
add chain ip kube-proxy services\n\
add chain ip kube-proxy nat-prerouting {{ type nat hook prerouting priority -100 ; }}\n\
add rule ip kube-proxy nat-prerouting jump services\n\
add chain ip kube-proxy nat-output {{ type nat hook output priority -100 ; }}\n\
add rule ip kube-proxy nat-output jump services\n\
add chain ip kube-proxy nat-postrouting {{ type nat hook postrouting priority 100 ; }}\n\
add rule ip kube-proxy nat-postrouting jump masquerading\n\
add map ip kube-proxy service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}\n\
add map ip kube-proxy service-nodeports {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}\n\
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n\
add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n"
    );
    for s in svcs {
        write_service_nft(s, &mut out, false);
    }
    out
}

/// One service's chains and map elements; `replace` flushes its chain first (a partial sync).
fn write_service_nft(s: &Svc, out: &mut String, replace: bool) {
    let svc = nft_svc_chain(s);
    let pn = nft_name(s);
    let _ = writeln!(out, "add chain ip kube-proxy {svc}");
    if replace {
        let _ = writeln!(out, "flush chain ip kube-proxy {svc}");
    }
    let _ = writeln!(
        out,
        "add rule ip kube-proxy {svc} ip daddr {ip} tcp dport {port} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade",
        ip = s.cluster_ip,
        port = s.port
    );
    let vmap: Vec<String> = s
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : goto {}", nft_ep_chain(s, *b)))
        .collect();
    for b in &s.backends {
        let ep = nft_ep_chain(s, *b);
        let _ = writeln!(out, "add chain ip kube-proxy {ep}");
        if replace {
            let _ = writeln!(out, "flush chain ip kube-proxy {ep}");
        }
        let _ = writeln!(
            out,
            "add rule ip kube-proxy {ep} ip saddr {b} jump mark-for-masquerade\nadd rule ip kube-proxy {ep} meta l4proto tcp dnat to {b}:{t}",
            t = s.target_port
        );
    }
    let _ = writeln!(
        out,
        "add rule ip kube-proxy {svc} numgen random mod {} vmap {{ {} }} comment \"{pn}\"",
        s.backends.len(),
        vmap.join(" , ")
    );
    if !replace {
        let _ = writeln!(
            out,
            "add element ip kube-proxy service-ips {{ {ip} . tcp . {port} : goto {svc} }}",
            ip = s.cluster_ip,
            port = s.port
        );
        if let Some(np) = s.node_port {
            let _ = writeln!(
                out,
                "add element ip kube-proxy service-nodeports {{ tcp . {np} : goto {svc} }}"
            );
        }
    }
}

/// The transaction kube-proxy's nftables mode sends when one service's endpoints change
/// from `before` to `after`: the service chain rewritten, new endpoint chains added, gone ones
/// deleted (after the chain that jumped to them was flushed).
pub fn nft_change(before: &Svc, after: &Svc) -> String {
    let mut out = String::new();
    write_service_nft(after, &mut out, true);
    let kept: Vec<String> = after
        .backends
        .iter()
        .map(|b| nft_ep_chain(after, *b))
        .collect();
    for b in &before.backends {
        let chain = nft_ep_chain(before, *b);
        if !kept.contains(&chain) {
            let _ = writeln!(out, "delete chain ip kube-proxy {chain}");
        }
    }
    out
}
