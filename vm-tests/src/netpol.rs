//! The Kubernetes network-policy e2e model on a weft test bed: pods a, b and c in namespaces x,
//! y and z, each serving TCP and UDP on ports 80 and 81, and a reachability matrix probed with
//! real TCP, UDP and ICMP between every pair of pods.
//!
//! A probe that is denied costs its whole timeout, so every probe of a check runs at once, each
//! on its own thread in the client pod's namespace: a check costs one timeout, not 81. Probes
//! the expectation says must connect get a longer timeout than those that must not; an allowed
//! path answers in microseconds, so the short timeout only bounds how long a denial takes to
//! show, and a slow machine cannot turn an allowed path into a false "denied".
//!
//! On a mismatch the expected and observed matrices are printed as the Kubernetes e2e suite
//! prints them: a grid with `.` where the row's pod reaches the column's and `X` where it does
//! not, then a grid marking the cells that differ.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{Bed, Netns};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const POD_NAMES: [&str; 3] = ["a", "b", "c"];
/// The ports every pod serves, on TCP and on UDP.
pub const PORTS: [u16; 2] = [80, 81];
const N: usize = 9;

/// How long a probe that must fail waits before calling the path closed
/// (WEFT_PROBE_TIMEOUT_MS overrides it).
fn deny_timeout() -> Duration {
    let ms = std::env::var("WEFT_PROBE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    Duration::from_millis(ms)
}

/// How long a probe that must succeed may take. Costs nothing unless the path is broken.
const ALLOW_TIMEOUT: Duration = Duration::from_secs(3);

/// How often server threads look at their stop flag.
const SERVER_POLL_MS: i32 = 100;

/// One of the nine pods: `x/a` ... `z/c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pod {
    pub ns: &'static str,
    pub name: &'static str,
    /// Row and column in a matrix: namespace-major.
    pub index: usize,
}

impl Pod {
    pub fn all() -> [Pod; N] {
        std::array::from_fn(|i| Pod {
            ns: NAMESPACES[i / 3],
            name: POD_NAMES[i % 3],
            index: i,
        })
    }

    /// The pod called `id` ("x/a").
    pub fn get(id: &str) -> Pod {
        Pod::all()
            .into_iter()
            .find(|p| p.id() == id)
            .unwrap_or_else(|| panic!("no pod {id}; pods are x/a ... z/c"))
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    pub fn is(&self, id: &str) -> bool {
        self.id() == id
    }

    /// 10.66.<namespace 1..3>.<pod 10..12>: each namespace is one /24, for ipBlock and nets.
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            66,
            (self.index / 3 + 1) as u8,
            (self.index % 3 + 10) as u8,
        )
    }

    /// The host side of its veth.
    pub fn iface(&self) -> String {
        format!("cali{}{}", self.ns, self.name)
    }
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ns, self.name)
    }
}

/// The /24 of a namespace's pods, e.g. "10.66.2.0/24" for y.
pub fn ns_cidr(ns: &str) -> String {
    let i = NAMESPACES
        .iter()
        .position(|n| *n == ns)
        .unwrap_or_else(|| panic!("no namespace {ns}"));
    format!("10.66.{}.0/24", i + 1)
}

/// What a probe sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection that must deliver the server's greeting.
    Tcp(u16),
    /// A UDP datagram that must be echoed.
    Udp(u16),
    /// An ICMP request of this type and code that must be answered: echo (8) or timestamp (13).
    Icmp { icmp_type: u8, code: u8 },
}

/// An ICMP echo request (ping).
pub const PING: Probe = Probe::Icmp {
    icmp_type: 8,
    code: 0,
};

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(p) => write!(f, "TCP/{p}"),
            Probe::Udp(p) => write!(f, "UDP/{p}"),
            Probe::Icmp { icmp_type, code } => write!(f, "ICMP type {icmp_type} code {code}"),
        }
    }
}

/// Which pod reaches which: `cells[from][to]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Reachability {
    cells: [[bool; N]; N],
}

impl Reachability {
    /// The matrix `f(from, to)` describes. A pod always reaches itself: that traffic never
    /// leaves its namespace, so no policy sees it (the e2e suite's AllowLoopback).
    pub fn new(f: impl Fn(Pod, Pod) -> bool) -> Reachability {
        let pods = Pod::all();
        let mut cells = [[false; N]; N];
        for from in pods {
            for to in pods {
                cells[from.index][to.index] = from == to || f(from, to);
            }
        }
        Reachability { cells }
    }

    /// Every pod reaches every pod.
    pub fn all() -> Reachability {
        Reachability::new(|_, _| true)
    }

    /// No pod reaches another.
    pub fn none() -> Reachability {
        Reachability::new(|_, _| false)
    }

    pub fn get(&self, from: Pod, to: Pod) -> bool {
        self.cells[from.index][to.index]
    }

    fn grid(&self, mark: impl Fn(usize, usize) -> &'static str) -> String {
        let pods = Pod::all();
        let mut s = String::from("-\t");
        for p in pods {
            let _ = write!(s, "{p}\t");
        }
        s.push('\n');
        for from in pods {
            let _ = write!(s, "{from}\t");
            for to in pods {
                let _ = write!(s, "{}\t", mark(from.index, to.index));
            }
            s.push('\n');
        }
        s
    }
}

impl fmt::Debug for Reachability {
    /// The e2e suite's truth table: rows are clients, columns servers; `.` connects, `X` not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.grid(|a, b| if self.cells[a][b] { "." } else { "X" }))
    }
}

/// A namespace's labels.
type Labels = BTreeMap<String, String>;

/// What the cluster's WorkloadEndpoint for a pod says, so that a test can change one thing and
/// rewrite it.
#[derive(Clone, Debug)]
struct PodSpec {
    labels: Labels,
    profiles: Vec<String>,
    /// (name, protocol, port)
    ports: Vec<(String, String, u16)>,
}

/// The default named ports, named as the e2e suite names its containers' ports.
fn default_ports() -> Vec<(String, String, u16)> {
    let mut v = Vec::new();
    for proto in ["TCP", "UDP"] {
        for port in PORTS {
            v.push((
                format!("serve-{port}-{}", proto.to_lowercase()),
                proto.to_string(),
                port,
            ));
        }
    }
    v
}

/// The nine pods on one bed, with their servers running. Dropping it stops the servers and
/// removes the bed.
pub struct Cluster {
    // Field order is drop order: the servers stop before their namespaces go.
    _servers: Servers,
    pub bed: Bed,
    pods: Vec<PodSpec>,
    namespaces: BTreeMap<&'static str, Option<Labels>>,
}

impl Cluster {
    /// A bed with namespaces x, y, z (label `ns: <name>`), pods a, b, c in each (label
    /// `pod: <name>`, profile `kns.<namespace>`, named ports `serve-80-tcp` ...), and every
    /// server running. Nothing is applied yet. None where the kernel is unavailable.
    pub fn new(test: &str) -> Option<Cluster> {
        let mut bed = Bed::new(test)?;
        let pods = Pod::all();
        for p in pods {
            bed.workload(&p.iface(), p.ip());
        }
        let servers = Servers::default();
        for p in pods {
            let ns = &bed.w(p.index).ns;
            for port in PORTS {
                servers.tcp(ns, port);
                servers.udp(ns, port);
            }
        }
        let c = Cluster {
            _servers: servers,
            bed,
            pods: pods
                .iter()
                .map(|p| PodSpec {
                    labels: [("pod".to_string(), p.name.to_string())].into(),
                    profiles: vec![format!("kns.{}", p.ns)],
                    ports: default_ports(),
                })
                .collect(),
            namespaces: NAMESPACES
                .iter()
                .map(|n| (*n, Some([("ns".to_string(), n.to_string())].into())))
                .collect(),
        };
        for ns in NAMESPACES {
            c.write_namespace(ns);
        }
        for p in pods {
            c.write_pod(p);
        }
        Some(c)
    }

    /// The network namespace pod `p` runs in.
    pub fn netns(&self, p: Pod) -> &Netns {
        &self.bed.w(p.index).ns
    }

    fn write_namespace(&self, ns: &'static str) {
        let file = format!("00-namespace-{ns}.yaml");
        match &self.namespaces[ns] {
            None => {
                let _ = std::fs::remove_file(self.bed.config.join(&file));
            }
            Some(labels) => {
                let labels: String = labels
                    .iter()
                    .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
                    .collect();
                self.bed.write(
                    &file,
                    &format!(
                        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n{labels}"
                    ),
                );
            }
        }
    }

    fn write_pod(&self, p: Pod) {
        let spec = &self.pods[p.index];
        let w = self.bed.w(p.index);
        let labels: String = spec
            .labels
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        let profiles = if spec.profiles.is_empty() {
            String::new()
        } else {
            format!("  profiles: [{}]\n", spec.profiles.join(", "))
        };
        let ports: String = spec
            .ports
            .iter()
            .map(|(name, proto, port)| {
                format!("    - {{name: {name}, protocol: {proto}, port: {port}}}\n")
            })
            .collect();
        let ports = if ports.is_empty() {
            String::new()
        } else {
            format!("  ports:\n{ports}")
        };
        self.bed.write(
            &format!("10-pod-{}-{}.yaml", p.ns, p.name),
            &format!(
                "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{labels}spec:\n  orchestrator: k8s\n  node: {node}\n  pod: {name}\n  endpoint: eth0\n  interfaceName: {iface}\n  mac: \"{mac}\"\n  ipNetworks: [{ip}/32]\n{profiles}{ports}",
                name = p.name,
                ns = p.ns,
                node = self.bed.node,
                iface = w.iface,
                mac = w.mac,
                ip = w.ip,
            ),
        );
    }

    /// Sets (or replaces) a label on pod `id`'s WorkloadEndpoint.
    pub fn label_pod(&mut self, id: &str, key: &str, value: &str) {
        let p = Pod::get(id);
        self.pods[p.index]
            .labels
            .insert(key.to_string(), value.to_string());
        self.write_pod(p);
    }

    /// Replaces the profiles pod `id`'s WorkloadEndpoint lists.
    pub fn set_profiles(&mut self, id: &str, profiles: &[&str]) {
        let p = Pod::get(id);
        self.pods[p.index].profiles = profiles.iter().map(|s| s.to_string()).collect();
        self.write_pod(p);
    }

    /// Adds a named port to pod `id`'s WorkloadEndpoint.
    pub fn add_named_port(&mut self, id: &str, name: &str, protocol: &str, port: u16) {
        let p = Pod::get(id);
        self.pods[p.index]
            .ports
            .push((name.to_string(), protocol.to_string(), port));
        self.write_pod(p);
    }

    /// Sets (or replaces) a label on Namespace `ns`.
    pub fn label_namespace(&mut self, ns: &str, key: &str, value: &str) {
        let ns = NAMESPACES
            .into_iter()
            .find(|n| *n == ns)
            .unwrap_or_else(|| panic!("no namespace {ns}"));
        self.namespaces
            .get_mut(ns)
            .and_then(Option::as_mut)
            .unwrap_or_else(|| panic!("Namespace {ns} was removed"))
            .insert(key.to_string(), value.to_string());
        self.write_namespace(ns);
    }

    /// Removes the Namespace resource of `ns` (its pods stay), e.g. to define its profile by
    /// hand as Calico without Kubernetes has it.
    pub fn remove_namespace(&mut self, ns: &str) {
        let ns = NAMESPACES
            .into_iter()
            .find(|n| *n == ns)
            .unwrap_or_else(|| panic!("no namespace {ns}"));
        self.namespaces.insert(ns, None);
        self.write_namespace(ns);
    }

    /// Writes a config file (policies and the like).
    pub fn write(&self, name: &str, text: &str) {
        self.bed.write(name, text);
    }

    pub fn remove(&self, name: &str) {
        self.bed.remove(name);
    }

    /// `weft apply`, asserting success.
    pub fn apply(&self) {
        self.bed.apply();
    }

    /// Probes every (client, server) pair for every probe at once and compares with the
    /// expectations; panics with the matrices of every probe that differs.
    pub fn check(&self, cases: &[(Probe, &Reachability)]) {
        let observed = self.probe_all(cases);
        let mut report = String::new();
        for ((probe, want), got) in cases.iter().zip(&observed) {
            if *want == got {
                continue;
            }
            let _ = write!(
                report,
                "\n{probe}: expected\n{want:?}observed\n{got:?}comparison (X: differs)\n{}",
                want.grid(|a, b| if want.cells[a][b] == got.cells[a][b] {
                    "."
                } else {
                    "X"
                })
            );
        }
        assert!(report.is_empty(), "reachability differs:{report}");
    }

    /// Every pod pair for every probe, in parallel.
    fn probe_all(&self, cases: &[(Probe, &Reachability)]) -> Vec<Reachability> {
        let pods = Pod::all();
        let mut handles = Vec::new();
        for (i, (probe, want)) in cases.iter().enumerate() {
            for from in pods {
                for to in pods {
                    let timeout = if want.get(from, to) {
                        ALLOW_TIMEOUT
                    } else {
                        deny_timeout()
                    };
                    let probe = *probe;
                    let h = self
                        .netns(from)
                        .spawn(move || run_probe(probe, to.ip(), timeout));
                    handles.push((i, from, to, h));
                }
            }
        }
        let mut out = vec![Reachability::none(); cases.len()];
        for (i, from, to, h) in handles {
            out[i].cells[from.index][to.index] = h.join().expect("probe thread panicked");
        }
        out
    }

    /// Opens a TCP connection from `from` to `to:port` and reads the greeting; panics if the
    /// path is closed.
    pub fn connect(&self, from: &str, to: &str, port: u16) -> Conn {
        let (f, t) = (Pod::get(from), Pod::get(to));
        let ip = t.ip();
        let stream = self
            .netns(f)
            .run(move || {
                let mut s =
                    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), ALLOW_TIMEOUT)
                        .ok()?;
                s.set_read_timeout(Some(ALLOW_TIMEOUT)).ok()?;
                let mut buf = [0u8; 3];
                s.read_exact(&mut buf).ok()?;
                (&buf == b"ok\n").then_some(s)
            })
            .unwrap_or_else(|| panic!("{from} -> {to}:{port}/TCP did not connect"));
        Conn {
            stream,
            what: format!("{from} -> {to}:{port}/TCP"),
            sent: 0,
        }
    }
}

/// Runs one probe from the calling thread's namespace.
fn run_probe(probe: Probe, to: Ipv4Addr, timeout: Duration) -> bool {
    match probe {
        Probe::Tcp(port) => tcp_probe(to, port, timeout),
        Probe::Udp(port) => udp_probe(to, port, timeout),
        Probe::Icmp { icmp_type, code } => icmp_probe(to, icmp_type, code, timeout),
    }
}

fn tcp_probe(to: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), timeout) else {
        return false;
    };
    // The handshake got through both ways; the greeting must too.
    let _ = s.set_read_timeout(Some(ALLOW_TIMEOUT));
    let mut buf = [0u8; 3];
    matches!(s.read_exact(&mut buf), Ok(()) if &buf == b"ok\n")
}

static NEXT_TOKEN: AtomicU16 = AtomicU16::new(1);

fn token() -> u16 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16).rotate_left(8)
}

fn udp_probe(to: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind udp probe");
    let msg = format!("weft-{}", token());
    if s.send_to(msg.as_bytes(), (to, port)).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.recv_from(&mut buf) {
            Ok((n, from))
                if from == SocketAddr::from((to, port)) && buf[..n] == *msg.as_bytes() =>
            {
                return true
            }
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Waits until `fd` is readable or `ms` pass.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Sends an ICMP request (echo or timestamp, with any code) through a raw socket and waits
/// for the matching reply: raw, so that the type and code are ours to choose.
fn icmp_probe(to: Ipv4Addr, icmp_type: u8, code: u8, timeout: Duration) -> bool {
    let reply_type = match icmp_type {
        8 => 0,
        13 => 14,
        t => panic!("no reply to wait for after ICMP type {t}"),
    };
    // SAFETY: plain socket call; the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let id = token();
    // Echo: 8 bytes of header and 8 of payload; timestamp: header and three timestamps.
    let mut pkt = vec![0u8; if icmp_type == 13 { 20 } else { 16 }];
    pkt[0] = icmp_type;
    pkt[1] = code;
    pkt[4..6].copy_from_slice(&id.to_be_bytes());
    pkt[6..8].copy_from_slice(&1u16.to_be_bytes());
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(to).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: pkt and sa outlive the call; the length is sa's.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable(fd.as_raw_fd(), left.as_millis().max(1) as i32) {
            return false;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        // A raw socket gets every ICMP packet of the namespace, IP header first.
        let pkt = &buf[..n as usize];
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        if pkt.len() < ihl + 8 || pkt[12..16] != to.octets() {
            continue;
        }
        let icmp = &pkt[ihl..];
        if icmp[0] == reply_type && icmp[4..6] == id.to_be_bytes() {
            return true;
        }
    }
}

/// An established TCP connection to a pod's greeting-and-echo server.
pub struct Conn {
    stream: TcpStream,
    what: String,
    sent: u32,
}

impl Conn {
    /// Sends a message and waits up to `timeout` for its echo: whether the connection still
    /// carries data both ways. Once this fails the connection is not used again.
    pub fn echo(&mut self, timeout: Duration) -> bool {
        self.sent += 1;
        let msg = format!("msg {:06}\n", self.sent);
        if self.stream.set_read_timeout(Some(timeout)).is_err()
            || self.stream.write_all(msg.as_bytes()).is_err()
        {
            return false;
        }
        let mut buf = vec![0u8; msg.len()];
        matches!(self.stream.read_exact(&mut buf), Ok(()) if buf == msg.as_bytes())
    }

    /// The path, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }
}

/// The servers of a cluster: threads that stop when this is dropped.
#[derive(Default)]
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Servers {
    /// TCP `port` in `ns`: greets each connection with "ok\n", then echoes what it reads.
    fn tcp(&self, ns: &Netns, port: u16) {
        let (stop, threads) = (self.stop.clone(), self.threads.clone());
        let l = ns.run(move || TcpListener::bind(("0.0.0.0", port)).expect("bind tcp server"));
        let h = thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !readable(l.as_raw_fd(), SERVER_POLL_MS) {
                    continue;
                }
                let Ok((mut s, _)) = l.accept() else { continue };
                if s.write_all(b"ok\n").is_err() {
                    continue;
                }
                let stop = stop.clone();
                let h = thread::spawn(move || echo_tcp(s, &stop));
                threads.lock().expect("server threads").push(h);
            }
        });
        self.threads.lock().expect("server threads").push(h);
    }

    /// UDP `port` in `ns`: echoes every datagram.
    fn udp(&self, ns: &Netns, port: u16) {
        let stop = self.stop.clone();
        let s = ns.run(move || UdpSocket::bind(("0.0.0.0", port)).expect("bind udp server"));
        big_receive_buffer(&s);
        let h = thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if !readable(s.as_raw_fd(), SERVER_POLL_MS) {
                    continue;
                }
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
        self.threads.lock().expect("server threads").push(h);
    }
}

/// Gives a socket a receive buffer large enough that a burst of datagrams waiting for a busy
/// thread is not dropped by the socket itself, which would pass for a policy drop.
pub fn big_receive_buffer(s: &impl AsRawFd) {
    let bytes: libc::c_int = 4 << 20;
    // SAFETY: a valid socket and an int option of the right size; SO_RCVBUFFORCE needs root,
    // which these tests have.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

fn echo_tcp(mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(SERVER_POLL_MS as u64)));
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Connection threads are pushed while the accept loops run: take until none are left.
        loop {
            let taken: Vec<JoinHandle<()>> =
                std::mem::take(&mut *self.threads.lock().expect("server threads"));
            if taken.is_empty() {
                break;
            }
            for h in taken {
                let _ = h.join();
            }
        }
    }
}
