//! One configuration under test: a "host" network namespace with a client and a server
//! workload, each in a namespace of its own joined to the host by a veth, set up the way the
//! configuration (no rules, weft, iptables, nftables) wants and removed when dropped.
//!
//! Every configuration has the same devices, addresses, routes and per-device settings; they
//! differ only in what filters and translates between the workloads. The workloads reach
//! their gateway (169.254.1.1, Calico's scheme) by a permanent neighbour entry, so ARP takes no
//! part in any figure.
//!
//! Everything the bench creates is named with [`PREFIX`] and the bench's process id, so a run
//! can remove what a killed run left behind ([`sweep`]) and never touches the tests' beds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weft_vm_tests::Netns;

use super::load::EchoServer;
use super::rules::{self, Rule};

/// The prefix of every namespace, bpffs root and config directory the bench makes.
pub const PREFIX: &str = "weftbench-";

/// iptables' legacy (x_tables) backend: what kube-proxy and Calico's iptables mode ran on for
/// years; the nftables configuration covers the other family.
pub const IPTABLES_RESTORE: &str = "iptables-legacy-restore";

/// What sits between the workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Routes only: no programs, no rules. The limit of this machine.
    Plain,
    /// weft: policy on the server's endpoint, the ClusterIP translated by its programs.
    Weft,
    /// iptables (legacy): the rules in FORWARD after an established-accept, kube-proxy's DNAT.
    Iptables,
    /// nftables: the same, natively.
    Nftables,
}

impl Kind {
    pub fn label(self, rules: usize) -> String {
        let n = thousands(rules);
        match self {
            Kind::Plain => "(a) no programs, no rules".into(),
            Kind::Weft => format!("(b) weft, {n} rules, ClusterIP"),
            Kind::Iptables => format!("(c) iptables-legacy, {n} rules, kube-proxy DNAT"),
            Kind::Nftables => format!("(d) nftables, {n} rules, dnat"),
        }
    }

    /// Whether traffic goes to the ClusterIP (translated) rather than to the server itself.
    fn via_service(self) -> bool {
        self != Kind::Plain
    }
}

/// 10000 as "10,000".
pub fn thousands(n: usize) -> String {
    let digits: Vec<char> = n.to_string().chars().rev().collect();
    let groups: Vec<String> = digits
        .chunks(3)
        .map(|g| g.iter().rev().collect())
        .rev()
        .collect();
    groups.join(",")
}

/// weft's files for one rig.
struct WeftFiles {
    bin: PathBuf,
    config: PathBuf,
    bpffs: PathBuf,
}

pub struct Rig {
    pub kind: Kind,
    pub label: String,
    /// Where the client sends its echo and iperf3 traffic.
    pub echo_addr: SocketAddr,
    pub iperf_addr: SocketAddr,
    /// How long setting up the configuration took (weft apply, iptables-restore, nft -f).
    pub setup: Duration,
    echo: Vec<EchoServer>,
    iperf: Option<Child>,
    weft: Option<WeftFiles>,
    pub host: Netns,
    pub client: Netns,
    pub server: Netns,
}

/// Server threads of the echo server: enough for every connection thread of the client, the
/// request/response connection, and some to spare.
const ECHO_THREADS: usize = 16;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cmd` in namespace `ns` with `input` on its stdin, asserting success.
fn run_with_input(ns: &Netns, cmd: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write ruleset");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl(ns: &Netns, key: &str, value: &str) {
    run(Command::new("ip").args([
        "netns",
        "exec",
        &ns.name,
        "sysctl",
        "-q",
        "-w",
        &format!("{key}={value}"),
    ]));
}

fn mac(ns: &Netns, dev: &str) -> String {
    let out = ns.ip(&["-br", "link", "show", dev]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

impl Rig {
    /// Sets up configuration `kind` with `n` rules; `weft` is the weft binary.
    pub fn new(kind: Kind, n: usize, weft: &Path) -> Rig {
        let host = Netns::new(&format!("{PREFIX}h"));
        let client = Netns::new(&format!("{PREFIX}c"));
        let server = Netns::new(&format!("{PREFIX}s"));
        let (echo_addr, iperf_addr) = if kind.via_service() {
            (
                SocketAddr::from((rules::VIP, rules::ECHO_SERVICE_PORT)),
                SocketAddr::from((rules::VIP, rules::IPERF_PORT)),
            )
        } else {
            (
                SocketAddr::from((rules::SERVER, rules::ECHO_PORT)),
                SocketAddr::from((rules::SERVER, rules::IPERF_PORT)),
            )
        };
        let mut rig = Rig {
            kind,
            label: kind.label(n),
            echo_addr,
            iperf_addr,
            setup: Duration::ZERO,
            echo: Vec::new(),
            iperf: None,
            weft: None,
            host,
            client,
            server,
        };
        let client_mac = rig.workload(true);
        let server_mac = rig.workload(false);
        // The client opens tens of thousands of connections a second: the whole port range,
        // and TIME_WAIT ports reused once their timestamps allow it (the server closes first,
        // so the client rarely holds any).
        sysctl(&rig.client, "net.ipv4.ip_local_port_range", "1024 65535");
        sysctl(&rig.client, "net.ipv4.tcp_tw_reuse", "1");

        let rule_list = rules::rules(n);
        let start = Instant::now();
        match kind {
            Kind::Plain => rig.routes_by_hand(),
            Kind::Weft => rig.weft_apply(weft, &rule_list, &client_mac, &server_mac),
            Kind::Iptables => {
                rig.routes_by_hand();
                run_with_input(&rig.host, &[IPTABLES_RESTORE], &rules::iptables(&rule_list));
            }
            Kind::Nftables => {
                rig.routes_by_hand();
                run_with_input(&rig.host, &["nft", "-f", "-"], &rules::nftables(&rule_list));
            }
        }
        rig.setup = start.elapsed();

        for port in [rules::ECHO_PORT, rules::DIRECT_PORT] {
            rig.echo
                .push(EchoServer::start(&rig.server, port, ECHO_THREADS));
        }
        rig.iperf = Some(
            Command::new("nsenter")
                .arg(format!("--net={}", rig.server.path().display()))
                .args(["iperf3", "-s", "-p", &rules::IPERF_PORT.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("iperf3 -s"),
        );
        rig.wait_for_iperf();
        rig
    }

    /// A workload's namespace, veth, address and routes; returns its eth0's MAC.
    fn workload(&self, client: bool) -> String {
        let (ns, iface, ip) = if client {
            (&self.client, rules::CLIENT_IFACE, rules::CLIENT)
        } else {
            (&self.server, rules::SERVER_IFACE, rules::SERVER)
        };
        self.host.ip(&[
            "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.host.ip(&["link", "set", iface, "up"]);
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        let host_mac = mac(&self.host, iface);
        ns.ip(&[
            "neigh",
            "replace",
            "169.254.1.1",
            "lladdr",
            &host_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        mac(ns, "eth0")
    }

    /// What weft does for a workload's interface, done by hand for the configurations without
    /// weft: its per-device settings (weft's own list), a /32 route and a permanent neighbour.
    fn routes_by_hand(&self) {
        for (iface, ns, ip) in [
            (rules::CLIENT_IFACE, &self.client, rules::CLIENT),
            (rules::SERVER_IFACE, &self.server, rules::SERVER),
        ] {
            for (key, value) in weft::state::WORKLOAD_SYSCTLS {
                let key = key.replace("{dev}", iface).replace('/', ".");
                sysctl(&self.host, &format!("net.{key}"), value);
            }
            self.host.ip(&[
                "route",
                "add",
                &format!("{ip}/32"),
                "dev",
                iface,
                "scope",
                "link",
            ]);
            let mac = mac(ns, "eth0");
            self.host.ip(&[
                "neigh",
                "replace",
                &ip.to_string(),
                "lladdr",
                &mac,
                "dev",
                iface,
                "nud",
                "permanent",
            ]);
        }
    }

    fn weft_apply(&mut self, bin: &Path, rule_list: &[Rule], client_mac: &str, server_mac: &str) {
        let tag = self.host.name.trim_start_matches(PREFIX);
        let files = WeftFiles {
            bin: bin.to_path_buf(),
            config: std::env::temp_dir().join(format!("{PREFIX}{tag}")),
            bpffs: PathBuf::from("/sys/fs/bpf").join(format!("{PREFIX}{tag}")),
        };
        std::fs::create_dir_all(&files.config).expect("config dir");
        for (name, text) in rules::weft_yaml(rule_list, client_mac, server_mac) {
            std::fs::write(files.config.join(name), text).expect("write config");
        }
        self.weft = Some(files);
        let out = self.weft_cmd(&["apply", self.weft_config()]);
        assert!(
            out.status.success(),
            "weft apply failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn weft_config(&self) -> &str {
        self.weft
            .as_ref()
            .and_then(|w| w.config.to_str())
            .expect("a weft rig")
    }

    /// `weft <args> --node <node> --bpffs <root>` in the host namespace.
    pub fn weft_cmd(&self, args: &[&str]) -> Output {
        let w = self.weft.as_ref().expect("a weft rig");
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.path().display()))
            .arg(&w.bin)
            .args(args)
            .args(["--node", rules::NODE, "--bpffs"])
            .arg(&w.bpffs)
            .output()
            .unwrap_or_else(|e| panic!("running weft {args:?}: {e}"))
    }

    /// The iperf3 server's process id (nsenter execs it).
    pub fn iperf_pid(&self) -> u32 {
        self.iperf.as_ref().map_or(0, Child::id)
    }

    /// weft's bpffs root, for weft rigs.
    pub fn bpffs(&self) -> Option<&Path> {
        self.weft.as_ref().map(|w| w.bpffs.as_path())
    }

    /// Waits until iperf3's server listens (it takes a moment to start).
    fn wait_for_iperf(&self) {
        let port = format!(":{:04X} ", rules::IPERF_PORT);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = self.server.run({
                let port = port.clone();
                move || {
                    // iperf3 listens on :: (both families) unless told otherwise.
                    ["tcp", "tcp6"]
                        .iter()
                        .map(|f| {
                            std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
                                .unwrap_or_default()
                        })
                        .collect::<String>()
                        .lines()
                        .any(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            f.len() > 3 && f[1].ends_with(port.trim_end()) && f[3] == "0A"
                        })
                }
            });
            if listening {
                return;
            }
            assert!(Instant::now() < end, "iperf3 -s did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the configuration is what it claims: the echo service answers through its path,
    /// and (with rules) a port the rules do not admit gets no answer at all, where without
    /// rules the server's kernel refuses it.
    pub fn check(&self) -> Result<(), String> {
        let echo = self.echo_addr;
        let answered = self.client.run(move || super::load::one_exchange(echo));
        if let Err(e) = answered {
            return Err(format!("{}: no echo through {echo}: {e}", self.label));
        }
        let closed = SocketAddr::from((rules::SERVER, rules::ECHO_PORT + 1));
        let outcome = self.client.run(move || {
            std::net::TcpStream::connect_timeout(&closed, Duration::from_millis(300))
                .map(|_| ())
                .map_err(|e| e.kind())
        });
        let want = if self.kind == Kind::Plain {
            std::io::ErrorKind::ConnectionRefused
        } else {
            std::io::ErrorKind::TimedOut
        };
        match outcome {
            Err(kind) if kind == want => Ok(()),
            other => Err(format!(
                "{}: a connection to {closed} (no rule admits it) ended {other:?}, not {want:?}",
                self.label
            )),
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.iperf.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.echo.clear();
        if self.weft.is_some() {
            let _ = self.weft_cmd(&["teardown"]);
        }
        if let Some(w) = self.weft.take() {
            let _ = std::fs::remove_dir_all(&w.bpffs);
            let _ = std::fs::remove_dir_all(&w.config);
        }
        // The namespaces go with the fields.
    }
}

/// The process id in a name the bench gave (`weftbench-h1234-0`, `weftbench-1234-0`,
/// `weftbench-check-1234-...`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '-');
    rest.split('-').next()?.parse().ok()
}

/// Removes what earlier bench runs that are no longer running left behind: namespaces, bpffs
/// roots (pins keep programs and maps alive), config directories. Returns what it removed.
pub fn sweep() -> Vec<String> {
    let dead =
        |name: &str| owner(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    let mut removed = Vec::new();
    let entries = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| dead(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in entries(Path::new("/run/netns")) {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        removed.push(format!("/run/netns/{name}"));
    }
    for dir in [PathBuf::from("/sys/fs/bpf"), std::env::temp_dir()] {
        for name in entries(&dir) {
            let _ = std::fs::remove_dir_all(dir.join(&name));
            removed.push(dir.join(name).display().to_string());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_reads_every_name_the_bench_makes() {
        assert_eq!(owner("weftbench-h1234-0"), Some(1234));
        assert_eq!(owner("weftbench-1234-7"), Some(1234));
        assert_eq!(owner("weftbench-check-99-nft_accepts"), Some(99));
        assert_eq!(owner("wh1234-0"), None);
        assert_eq!(thousands(10000), "10,000");
        assert_eq!(thousands(999), "999");
    }
}
