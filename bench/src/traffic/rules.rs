//! The same policy and service, written three ways: as weft's YAML (Calico NetworkPolicy,
//! Kubernetes Service and EndpointSlice), as iptables-restore input (kube-proxy's and Calico's
//! shape: established flows accepted first, then the rules; KUBE-SERVICES -> KUBE-SVC ->
//! KUBE-SEP for the ClusterIP) and as an nftables ruleset.
//!
//! The policy admits the server's traffic from the client by its last rule only, so a new flow
//! walks every rule before it in an evaluator that takes them in order. The rules before it
//! each match half of the benchmark's flow: the even ones the port (from addresses that are not
//! the client's), the odd ones the client's address (on ports nobody uses), so no evaluator can
//! dismiss them all by one field.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The client workload, its host-side interface, and the server workload.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
pub const CLIENT_IFACE: &str = "calicl";
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
pub const SERVER_IFACE: &str = "calisv";
/// The workloads' pool: the odd rules' peer, and kube-proxy's cluster CIDR.
pub const POOL: &str = "10.65.0.0/16";
/// The ClusterIP the weft, iptables and nftables configurations send their traffic to.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The server's echo port (request/response and new connections), and the service port for it.
pub const ECHO_PORT: u16 = 8080;
pub const ECHO_SERVICE_PORT: u16 = 80;
/// A second echo port that only the client's address reaches, never through the service: the
/// statistics pass measures weft without translation there. Its own port keeps its flows'
/// tuples apart from the service's: a server still holding a tuple in TIME_WAIT from a
/// connection made through the ClusterIP refuses a SYN on it whose timestamps were derived for
/// another destination address (PAWS), and the client waits a second to try again.
pub const DIRECT_PORT: u16 = 8090;
/// iperf3's port, the same on the service.
pub const IPERF_PORT: u16 = 5201;
/// The Kubernetes namespace of both workloads, and weft's node name for the bench host.
pub const NAMESPACE: &str = "bench";
pub const NODE: &str = "bench-node";

/// One allow rule of the policy: TCP from `source` to one of `ports` on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub source: (Ipv4Addr, u8),
    pub ports: Vec<u16>,
}

impl Rule {
    /// Whether this rule admits a TCP flow from `from` to port `port`.
    #[cfg(test)]
    pub fn admits(&self, from: Ipv4Addr, port: u16) -> bool {
        let (net, len) = self.source;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (u32::from(from) & mask) == (u32::from(net) & mask) && self.ports.contains(&port)
    }

    fn source_cidr(&self) -> String {
        format!("{}/{}", self.source.0, self.source.1)
    }
}

/// `n` rules (at least one), of which only the last admits the benchmark's traffic.
pub fn rules(n: usize) -> Vec<Rule> {
    assert!((1..=40_000).contains(&n), "rule count {n}");
    let mut out: Vec<Rule> = (0..n - 1)
        .map(|i| {
            if i % 2 == 0 {
                // 172.16/12 holds a million addresses: one each, none the client's.
                let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i as u32);
                Rule {
                    source: (addr, 32),
                    ports: vec![ECHO_PORT],
                }
            } else {
                Rule {
                    source: (Ipv4Addr::new(10, 65, 0, 0), 16),
                    ports: vec![20_000 + i as u16],
                }
            }
        })
        .collect();
    out.push(Rule {
        source: (CLIENT, 32),
        ports: vec![ECHO_PORT, DIRECT_PORT, IPERF_PORT],
    });
    out
}

/// Rules per NetworkPolicy in the YAML, as a user would split a long list.
const RULES_PER_POLICY: usize = 100;

/// weft's configuration directory as (file name, text): the namespace, both workload endpoints
/// (`client_mac`, `server_mac`: the workloads' eth0), the policy and the service.
pub fn weft_yaml(rules: &[Rule], client_mac: &str, server_mac: &str) -> Vec<(String, String)> {
    let mut files = vec![(
        "00-namespace.yaml".to_string(),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    )];
    let wep = |name: &str, iface: &str, mac: &str, ip: Ipv4Addr| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n    app: {name}\nspec:\n  node: {NODE}\n  interfaceName: {iface}\n  mac: \"{mac}\"\n  ipNetworks: [{ip}/32]\n  profiles: [kns.{NAMESPACE}]\n"
        )
    };
    files.push((
        "10-workloads.yaml".into(),
        format!(
            "{}---\n{}",
            wep("client", CLIENT_IFACE, client_mac, CLIENT),
            wep("server", SERVER_IFACE, server_mac, SERVER)
        ),
    ));
    for (k, chunk) in rules.chunks(RULES_PER_POLICY).enumerate() {
        let mut y = format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: server-{k:04}\n  namespace: {NAMESPACE}\nspec:\n  order: {k}\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n"
        );
        for r in chunk {
            let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
            let _ = write!(
                y,
                "    - action: Allow\n      protocol: TCP\n      source:\n        nets: [{}]\n      destination:\n        ports: [{}]\n",
                r.source_cidr(),
                ports.join(", ")
            );
        }
        files.push((format!("20-policy-{k:04}.yaml"), y));
    }
    files.push((
        "30-service.yaml".into(),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: server\n  namespace: {NAMESPACE}\nspec:\n  clusterIP: {VIP}\n  ports:\n    - {{name: echo, port: {ECHO_SERVICE_PORT}, targetPort: {ECHO_PORT}, protocol: TCP}}\n    - {{name: iperf, port: {IPERF_PORT}, targetPort: {IPERF_PORT}, protocol: TCP}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: server-1\n  namespace: {NAMESPACE}\n  labels:\n    kubernetes.io/service-name: server\naddressType: IPv4\nports:\n  - {{name: echo, port: {ECHO_PORT}, protocol: TCP}}\n  - {{name: iperf, port: {IPERF_PORT}, protocol: TCP}}\nendpoints:\n  - addresses: [\"{SERVER}\"]\n    nodeName: {NODE}\n    conditions: {{ready: true}}\n"
        ),
    ));
    files
}

/// The policy chain's name in iptables.
const IPT_POLICY: &str = "WEFT-BENCH-TO-SERVER";

/// iptables-restore input: the filter table's FORWARD chain accepts established flows first
/// and sends new ones towards the server through the rules; the nat table is kube-proxy's
/// iptables mode for one ClusterIP with one endpoint (service chains, the masquerade mark for
/// traffic from outside the cluster CIDR or hairpinned through the service).
pub fn iptables(rules: &[Rule]) -> String {
    let mut s = String::new();
    s.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let _ = writeln!(s, ":{IPT_POLICY} - [0:0]");
    s.push_str("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    let _ = writeln!(s, "-A FORWARD -o {SERVER_IFACE} -j {IPT_POLICY}");
    for r in rules {
        let src = r.source_cidr();
        if let [port] = r.ports[..] {
            let _ = writeln!(
                s,
                "-A {IPT_POLICY} -s {src} -p tcp -m tcp --dport {port} -j ACCEPT"
            );
        } else {
            let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                s,
                "-A {IPT_POLICY} -s {src} -p tcp -m multiport --dports {} -j ACCEPT",
                ports.join(",")
            );
        }
    }
    let _ = writeln!(s, "-A {IPT_POLICY} -j DROP");
    s.push_str("COMMIT\n");

    s.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    s.push_str(":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let services = [
        ("ECHO", ECHO_SERVICE_PORT, ECHO_PORT),
        ("IPERF", IPERF_PORT, IPERF_PORT),
    ];
    for (name, _, _) in services {
        let _ = writeln!(s, ":KUBE-SVC-{name} - [0:0]\n:KUBE-SEP-{name} - [0:0]");
    }
    s.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    s.push_str("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    s.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    s.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    s.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    s.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    s.push_str("-A KUBE-POSTROUTING -j MASQUERADE\n");
    for (name, port, target) in services {
        let _ = writeln!(
            s,
            "-A KUBE-SERVICES -d {VIP}/32 -p tcp -m tcp --dport {port} -j KUBE-SVC-{name}"
        );
        let _ = writeln!(
            s,
            "-A KUBE-SVC-{name} ! -s {POOL} -d {VIP}/32 -p tcp -m tcp --dport {port} -j KUBE-MARK-MASQ"
        );
        let _ = writeln!(s, "-A KUBE-SVC-{name} -j KUBE-SEP-{name}");
        let _ = writeln!(s, "-A KUBE-SEP-{name} -s {SERVER}/32 -j KUBE-MARK-MASQ");
        let _ = writeln!(
            s,
            "-A KUBE-SEP-{name} -p tcp -m tcp -j DNAT --to-destination {SERVER}:{target}"
        );
    }
    s.push_str("COMMIT\n");
    s
}

/// The nftables table's name.
pub const NFT_TABLE: &str = "weft_bench";

/// An nftables ruleset (`nft -f`) equivalent to [`iptables`]: one rule per policy rule, in
/// order, after `ct state established,related accept`; dnat for the service.
pub fn nftables(rules: &[Rule]) -> String {
    let mut s = format!("table ip {NFT_TABLE} {{\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n");
    let _ = writeln!(s, "    oifname \"{SERVER_IFACE}\" jump to_server\n  }}");
    s.push_str("  chain to_server {\n");
    for r in rules {
        let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
        let ports = if ports.len() == 1 {
            ports[0].clone()
        } else {
            format!("{{ {} }}", ports.join(", "))
        };
        let _ = writeln!(
            s,
            "    ip saddr {} tcp dport {ports} accept",
            r.source_cidr()
        );
    }
    s.push_str("    drop\n  }\n");
    s.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    for (port, target) in [(ECHO_SERVICE_PORT, ECHO_PORT), (IPERF_PORT, IPERF_PORT)] {
        let _ = writeln!(
            s,
            "    ip daddr {VIP} tcp dport {port} dnat to {SERVER}:{target}"
        );
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn only_the_last_rule_admits_the_benchmark_flows() {
        for n in [1, 2, 1000] {
            let rs = rules(n);
            assert_eq!(rs.len(), n);
            for port in [ECHO_PORT, DIRECT_PORT, IPERF_PORT] {
                let admitting: Vec<usize> =
                    (0..n).filter(|&i| rs[i].admits(CLIENT, port)).collect();
                assert_eq!(admitting, vec![n - 1], "{n} rules, port {port}");
            }
            // Every rule before the last matches half of the flow.
            for r in &rs[..n - 1] {
                let by_port = r.ports.contains(&ECHO_PORT);
                let by_source = r.admits(CLIENT, r.ports[0]);
                assert!(by_port != by_source, "{r:?}");
            }
        }
        assert!(!rules(1000)
            .iter()
            .any(|r| r.admits(Ipv4Addr::new(10, 65, 0, 9), ECHO_PORT)));
    }

    #[test]
    fn the_yaml_is_a_valid_weft_configuration() {
        let dir = std::env::temp_dir().join(format!("weft-bench-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = 250;
        for (name, text) in weft_yaml(&rules(n), "02:00:00:00:00:01", "02:00:00:00:00:02") {
            std::fs::write(dir.join(name), text).unwrap();
        }
        // What `weft validate` runs.
        let loaded = weft_model::load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = loaded.unwrap_or_else(|d| panic!("{d}"));
        // A namespace, two endpoints, three policies, a service and its slice.
        assert_eq!(
            cfg.resource_count(),
            1 + 2 + n.div_ceil(RULES_PER_POLICY) + 2
        );
    }

    /// A scratch network namespace for the kernel's own checks of the rulesets; None where
    /// the kernel or privileges are missing (said by `kernel::available`).
    struct Scratch(String);

    impl Scratch {
        fn new(test: &str) -> Option<Scratch> {
            if !weft_golden::kernel::available(test) {
                return None;
            }
            let name = format!(
                "{}check-{}-{test}",
                super::super::rig::PREFIX,
                std::process::id()
            );
            let name: String = name.chars().take(60).collect();
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap();
            assert!(ok.success());
            Some(Scratch(name))
        }

        /// Runs `cmd` in the namespace with `input` on stdin; its success and output.
        fn run(&self, cmd: &[&str], input: &str) -> (bool, String) {
            use std::io::Write;
            let mut child = Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(cmd)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    fn iptables_restore_accepts_the_ruleset() {
        let Some(ns) = Scratch::new("iptables_restore_accepts_the_ruleset") else {
            return;
        };
        let text = iptables(&rules(1000));
        for tool in [super::super::rig::IPTABLES_RESTORE, "iptables-nft-restore"] {
            let (ok, out) = ns.run(&[tool, "--test"], &text);
            assert!(ok, "{tool} --test: {out}");
        }
        // And a broken line is refused, so the check above can fail.
        let (ok, _) = ns.run(
            &[super::super::rig::IPTABLES_RESTORE, "--test"],
            &text.replace("-j DROP", "-j NO-SUCH-CHAIN"),
        );
        assert!(!ok);
    }

    #[test]
    fn nft_accepts_the_ruleset() {
        let Some(ns) = Scratch::new("nft_accepts_the_ruleset") else {
            return;
        };
        let text = nftables(&rules(1000));
        let (ok, out) = ns.run(&["nft", "-c", "-f", "-"], &text);
        assert!(ok, "nft -c: {out}");
        let (ok, _) = ns.run(&["nft", "-c", "-f", "-"], &text.replace("drop\n", "dorp\n"));
        assert!(!ok);
    }
}
