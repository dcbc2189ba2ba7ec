//! A real-kernel test bed: a "host" that is itself a network namespace with no link to the
//! real network, workloads in namespaces of their own joined to it by veth pairs, weft run in
//! the host namespace through `nsenter --net`, and real TCP, UDP and ICMP between them.
//!
//! Everything a test creates (namespaces, a private bpffs root, a config directory) is removed
//! when its `Bed` is dropped, whatever the test's outcome.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

pub use weft_golden::kernel;

pub mod daemon;
pub mod fleet;
pub mod netpol;
pub mod streams;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How long a probe waits before calling a path closed. Namespaces on one machine answer in
/// microseconds; a dropped packet never answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The Namespace most tests put their workloads in ("shop", labelled team=shop).
pub const SHOP_NAMESPACE: &str =
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: shop\n";

/// A command's standard output, then its standard error, as text.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
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

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Packets interface `dev` of this namespace has received (`ip -s -j link show`).
    pub fn rx_packets(&self, dev: &str) -> u64 {
        let out = output_text(&self.ip(&["-s", "-j", "link", "show", dev]));
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .expect("rx packets")
    }

    /// Runs `f` on a thread that has joined this namespace (setns affects one thread only, and
    /// a socket stays in the namespace it was created in).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = self.path();
        thread::spawn(move || {
            let f_ns =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this thread.
            let rc = unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        })
    }

    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A workload: a namespace with `eth0` whose peer `iface` is in the host namespace.
pub struct Workload {
    pub ns: Netns,
    pub iface: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// The test bed: host namespace, an "outside" namespace behind the host's uplink (which gives
/// the host a default route, as real hosts have, so proxy ARP answers for the workloads'
/// gateway), workloads, a config directory and a private bpffs root.
pub struct Bed {
    pub host: Netns,
    /// Behind the uplink: the bed's own, or the underlay a fleet's hosts share.
    pub outside: Arc<Netns>,
    pub workloads: Vec<Workload>,
    pub config: PathBuf,
    pub bpffs: PathBuf,
    pub node: String,
    /// The state directory `weft run` and `weft apply --confirm-within` use in this bed.
    pub state: PathBuf,
}

/// The host's address on its uplink.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

impl Bed {
    /// A host with an uplink; None (after saying why) where the kernel or privileges are
    /// missing and the test may be skipped.
    pub fn new(test: &str) -> Option<Bed> {
        if !kernel::available(test) {
            return None;
        }
        let host = Netns::new("wh");
        let outside = Netns::new("wo");
        host.ip(&[
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "up1",
            "netns",
            &outside.name,
        ]);
        host.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "up0"]);
        host.ip(&["link", "set", "up0", "up"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "up1"]);
        outside.ip(&["link", "set", "up1", "up"]);
        host.ip(&["route", "add", "default", "via", &OUTSIDE_IP.to_string()]);
        let config = std::env::temp_dir().join(unique("weft-vm-config-"));
        std::fs::create_dir_all(&config).expect("config dir");
        let bpffs = PathBuf::from("/sys/fs/bpf").join(unique("weft-vm-"));
        Some(Bed {
            host,
            outside: Arc::new(outside),
            workloads: Vec::new(),
            state: config.with_extension("state"),
            config,
            bpffs,
            node: "node-a".into(),
        })
    }

    /// A host of a fleet: node `node`, its uplink `eth0` on the bridge `br0` of `underlay`
    /// with address `addr/len`, its default route via `gateway`; the fleet's shared `config`
    /// directory, and a bpffs root and state directory of its own.
    pub fn on_underlay(
        node: &str,
        underlay: &Arc<Netns>,
        addr: Ipv4Addr,
        len: u8,
        gateway: Ipv4Addr,
        config: &Path,
    ) -> Bed {
        let host = Netns::new("wf");
        let port = unique("up");
        host.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &underlay.name,
        ]);
        underlay.ip(&["link", "set", &port, "master", "br0", "up"]);
        host.ip(&["addr", "add", &format!("{addr}/{len}"), "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["route", "add", "default", "via", &gateway.to_string()]);
        let bpffs = PathBuf::from("/sys/fs/bpf").join(unique("weft-vm-"));
        Bed {
            host,
            outside: underlay.clone(),
            workloads: Vec::new(),
            config: config.to_path_buf(),
            bpffs,
            node: node.into(),
            state: std::env::temp_dir().join(unique(&format!("weft-vm-state-{node}-"))),
        }
    }

    /// Adds a workload with address `ip`, its host-side interface named `iface`.
    pub fn workload(&mut self, iface: &str, ip: Ipv4Addr) -> usize {
        self.workloads.push(Workload::new(&self.host, iface, ip));
        self.workloads.len() - 1
    }
}

impl Workload {
    /// A workload namespace with address `ip` on `eth0`, its peer `iface` in `host` and up,
    /// and a default route via Calico's 169.254.1.1 gateway.
    pub fn new(host: &Netns, iface: &str, ip: Ipv4Addr) -> Workload {
        let ns = Netns::new("ww");
        host.ip(&[
            "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        host.ip(&["link", "set", iface, "up"]);
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
        let out = ns.ip(&["-br", "link", "show", "eth0"]);
        let mac = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        Workload {
            ns,
            iface: iface.into(),
            ip,
            mac,
        }
    }
}

impl Bed {
    /// The shop most tests start from: the Namespace `namespace` (YAML) as
    /// `00-namespace.yaml`, and one workload per label (a, b, c... on calia, calib, calic...,
    /// addresses 10.65.0.2 and up) in namespace "shop" with that one label and the namespace's
    /// profile, each written to `<dir>/<name>.yaml` (`dir` may be empty).
    pub fn shop(&mut self, namespace: &str, dir: &str, labels: &[(&str, &str)]) {
        self.write("00-namespace.yaml", namespace);
        for (i, label) in labels.iter().enumerate() {
            let name = char::from(b'a' + i as u8).to_string();
            let ip = Ipv4Addr::new(10, 65, 0, 2 + i as u8);
            let w = self.workload(&format!("cali{name}"), ip);
            let yaml = self.wep_yaml(w, &name, "shop", &[*label], &["kns.shop"]);
            let path = if dir.is_empty() {
                format!("{name}.yaml")
            } else {
                format!("{dir}/{name}.yaml")
            };
            self.write(&path, &yaml);
        }
    }

    pub fn w(&self, i: usize) -> &Workload {
        &self.workloads[i]
    }

    /// Writes `text` to `<config>/<name>` (creating directories), replacing it atomically as
    /// editors and git do.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.config.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("config subdir");
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &path).expect("rename config");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.config.join(name)).expect("remove config file");
    }

    /// A WorkloadEndpoint resource for workload `i`.
    pub fn wep_yaml(
        &self,
        i: usize,
        name: &str,
        namespace: &str,
        labels: &[(&str, &str)],
        profiles: &[&str],
    ) -> String {
        let w = self.w(i);
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        let profiles: String = profiles.iter().map(|p| format!("    - {p}\n")).collect();
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n{labels}spec:\n  node: {node}\n  interfaceName: {iface}\n  mac: \"{mac}\"\n  ipNetworks:\n    - {ip}/32\n  profiles:\n{profiles}",
            node = self.node,
            iface = w.iface,
            mac = w.mac,
            ip = w.ip,
        )
    }

    /// The weft binary built beside this test (`cargo build -p weft` first), or $WEFT_BIN.
    pub fn weft_bin() -> PathBuf {
        if let Ok(p) = std::env::var("WEFT_BIN") {
            return p.into();
        }
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>/weft
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("weft"))
            .expect("target dir");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p weft` (or set WEFT_BIN)",
            bin.display()
        );
        bin
    }

    /// Packets counted for `reason` at `hook` (as `weft dump counters` names them), over
    /// every interface.
    pub fn counted(&self, hook: &str, reason: &str) -> u64 {
        let bpffs = self.bpffs.to_str().expect("utf-8 path").to_string();
        let out = self.weft(&["dump", "counters", "--bpffs", &bpffs, "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
        rows.as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["hook"] == hook)
            .map(|r| r["reasons"][reason].as_u64().unwrap_or(0))
            .sum()
    }

    /// Runs `weft <args>` in the host namespace with this bed's node name and bpffs root.
    pub fn weft(&self, args: &[&str]) -> Output {
        self.weft_command(args)
            .output()
            .unwrap_or_else(|e| panic!("running weft {args:?}: {e}"))
    }

    /// `weft <args>` in the host namespace, as `weft` runs it, not yet started: for a test
    /// that watches it run (its log as it comes, signals) or sets its environment.
    pub fn weft_command(&self, args: &[&str]) -> Command {
        let bin = Self::weft_bin();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.path().display()))
            .arg(&bin)
            .args(args);
        if matches!(args.first(), Some(&"apply") | Some(&"diff")) {
            cmd.args(["--node", &self.node]);
        }
        // Teardown programs nothing, so it takes no node.
        if matches!(
            args.first(),
            Some(&"apply") | Some(&"diff") | Some(&"teardown")
        ) {
            cmd.arg("--bpffs")
                .arg(&self.bpffs)
                .arg("--state-dir")
                .arg(self.state_dir());
        }
        cmd
    }

    /// `weft apply <config>`, asserting success.
    pub fn apply(&self) -> Output {
        let out = self.weft(&["apply", self.config.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "weft apply failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `weft diff <config>`'s exit code and output.
    pub fn diff(&self) -> (i32, String) {
        let out = self.weft(&["diff", self.config.to_str().expect("utf-8 path")]);
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.weft(&["teardown"]);
        let _ = std::fs::remove_dir_all(&self.bpffs);
        let _ = std::fs::remove_dir_all(&self.config);
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

/// A TCP server in `ns` on `port` that answers each connection with "ok\n" and closes.
pub fn tcp_server(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind tcp");
        tx.send(()).expect("ready");
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"ok\n");
        }
    });
    rx.recv().expect("server ready");
}

/// A TCP server in `ns` on `port` that answers each connection with `answer(peer)` and closes
/// it.
pub fn answer_server(
    ns: &Netns,
    port: u16,
    answer: impl Fn(SocketAddr) -> String + Send + 'static,
) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind tcp");
        tx.send(()).expect("ready");
        for mut s in l.incoming().flatten() {
            let peer = s.peer_addr().expect("a connected peer");
            let _ = s.write_all(answer(peer).as_bytes());
        }
    });
    rx.recv().expect("server ready");
}

/// A TCP server that answers each connection with its own name (which backend answered).
pub fn named_server(ns: &Netns, port: u16, name: &str) {
    let name = name.to_string();
    answer_server(ns, port, move |_| name.clone());
}

/// What the server at `to:port` says to a connection from `ns` until it closes (None if the
/// connection fails).
pub fn tcp_hello(ns: &Netns, to: Ipv4Addr, port: u16) -> Option<String> {
    ns.run(move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT).ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
}

/// A UDP server in `ns` on `port` that echoes every datagram.
pub fn udp_server(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        tx.send(()).expect("ready");
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    rx.recv().expect("server ready");
}

/// Whether a TCP connection from `ns` to `to:port` opens and delivers the server's greeting.
pub fn tcp_ok(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    ns.run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT)
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 3];
        matches!(s.read_exact(&mut buf), Ok(()) if &buf == b"ok\n")
    })
}

/// Whether a UDP datagram from `ns` to `to:port` is echoed back.
pub fn udp_ok(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    ns.run(move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        s.set_read_timeout(Some(PROBE_TIMEOUT)).expect("timeout");
        if s.send_to(b"weft", (to, port)).is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.recv_from(&mut buf), Ok((4, _)))
    })
}

/// Whether `ping -c1` from `ns` to `to` gets an answer.
pub fn ping_ok(ns: &Netns, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "ping",
            "-c1",
            "-W1",
            &to.to_string(),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
