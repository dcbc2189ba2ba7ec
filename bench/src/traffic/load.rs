//! The loads: iperf3 for throughput, and a small echo server with two clients of our own for
//! request/response and new connections, plus the CPU accounting around each measurement.
//!
//! The echo protocol is one byte each way: 'p' asks for an answer and keeps the connection;
//! 'c' asks for an answer and a close from the server's side (as an HTTP/1.0 server does), so
//! the TIME_WAIT state lands on the server, keyed by the full 4-tuple, and the client's ports
//! are free again as soon as the close completes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weft_vm_tests::Netns;

/// A threaded echo server in a namespace; its threads end when it is dropped.
pub struct EchoServer {
    listener: RawFd,
    _keep: TcpListener,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &Netns, port: u16, threads: usize) -> EchoServer {
        // The socket belongs to the namespace it is made in; the threads serving it need not
        // be in that namespace themselves.
        let l = ns.run(move || TcpListener::bind(("0.0.0.0", port)).expect("bind echo server"));
        let threads = (0..threads)
            .map(|_| {
                let l = l.try_clone().expect("clone listener");
                std::thread::spawn(move || {
                    while let Ok((s, _)) = l.accept() {
                        serve(s);
                    }
                })
            })
            .collect();
        EchoServer {
            listener: l.as_raw_fd(),
            _keep: l,
            threads,
        }
    }
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut b = [0u8; 1];
    while let Ok(1) = s.read(&mut b) {
        if s.write_all(&b).is_err() || b[0] == b'c' {
            return;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // shutdown() on a listening socket wakes every accept() with an error.
        // SAFETY: the fd is open for as long as `_keep` is.
        unsafe { libc::shutdown(self.listener, libc::SHUT_RDWR) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection, one exchange, the server's close: what a new-connection client does once.
pub fn one_exchange(to: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"c").map_err(|e| format!("write: {e}"))?;
    let mut b = [0u8; 2];
    match s.read(&mut b) {
        Ok(1) if b[0] == b'c' => {}
        other => return Err(format!("answer: {other:?}")),
    }
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        other => Err(format!("close: {other:?}")),
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// CPU time (user and system) from getrusage: RUSAGE_THREAD, RUSAGE_SELF or RUSAGE_CHILDREN
/// (the children waited for).
fn rusage(who: libc::c_int) -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(who, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// The CPU time another process has used (utime and stime from /proc/PID/stat).
fn process_cpu(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis, where
    // field 3 (the state) comes first, so utime and stime (fields 14 and 15) are 11 and 12.
    let after = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// The per-CPU softirq threads. Network work raised in the benchmark's own threads runs there
/// when those threads are preempted (as they are on a busy machine), so it counts as the
/// benchmark's; other work on the machine that lands there is small beside it.
fn ksoftirqd() -> &'static [u32] {
    static PIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    PIDS.get_or_init(|| {
        std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.starts_with("ksoftirqd/"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// What one measurement saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// The figure: bits/s, transactions/s or connections/s.
    pub value: f64,
    /// The whole machine's busy CPU, in cores, and the softirq part of it (/proc/stat).
    pub cpu: f64,
    pub softirq: f64,
    /// The benchmark's own processes' CPU in cores: client and server, and the kernel's work
    /// on their behalf (softirq run in their context is charged to them; what is deferred to
    /// ksoftirqd is counted from those threads).
    pub own: f64,
    /// The load generator's own CPU in cores (the client's threads; for iperf3, its client
    /// process).
    pub client: f64,
    /// Requests that failed (connections refused, reset or timed out).
    pub errors: u64,
}

/// CPU counters at one moment: the machine's (first line of /proc/stat, in clock ticks) and
/// the benchmark's own processes'.
pub struct Stat {
    busy: u64,
    softirq: u64,
    own: Duration,
    server: Option<u32>,
    at: Instant,
}

/// CPU used over an interval, in cores.
pub struct Cpu {
    pub busy: f64,
    pub softirq: f64,
    pub own: f64,
}

impl Stat {
    /// `server`: a server process of the measurement's (iperf3 -s) to count as our own.
    pub fn now(server: Option<u32>) -> Stat {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let get = |i: usize| f.get(i).copied().unwrap_or(0);
        Stat {
            busy: get(0) + get(1) + get(2) + get(5) + get(6) + get(7),
            softirq: get(6),
            own: rusage(libc::RUSAGE_SELF)
                + rusage(libc::RUSAGE_CHILDREN)
                + server.map_or(Duration::ZERO, process_cpu)
                + ksoftirqd()
                    .iter()
                    .copied()
                    .map(process_cpu)
                    .sum::<Duration>(),
            server,
            at: Instant::now(),
        }
    }

    pub fn since(&self) -> Cpu {
        let now = Stat::now(self.server);
        let hz = clock_ticks();
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        Cpu {
            busy: (now.busy - self.busy) as f64 / hz / secs,
            softirq: (now.softirq - self.softirq) as f64 / hz / secs,
            own: now.own.saturating_sub(self.own).as_secs_f64() / secs,
        }
    }
}

/// Request/response: one connection, one byte each way, as fast as it goes for `secs`.
pub fn request_response(client: &Netns, to: SocketAddr, secs: f64) -> Result<Sample, String> {
    let stat = Stat::now(None);
    let (n, cpu, elapsed) = client.run(move || -> Result<(u64, Duration, Duration), String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut n = 0u64;
        let mut b = [0u8; 1];
        // The clock is read once per 64 exchanges.
        while Instant::now() < end {
            for _ in 0..64 {
                s.write_all(b"p").map_err(|e| format!("write: {e}"))?;
                s.read_exact(&mut b).map_err(|e| format!("read: {e}"))?;
            }
            n += 64;
        }
        Ok((n, thread_cpu() - cpu0, start.elapsed()))
    })?;
    let used = stat.since();
    let secs = elapsed.as_secs_f64();
    Ok(Sample {
        value: n as f64 / secs,
        cpu: used.busy,
        softirq: used.softirq,
        own: used.own,
        client: cpu.as_secs_f64() / secs,
        errors: 0,
    })
}

/// New connections: `threads` threads each connecting, exchanging one byte and closing in a
/// loop for `secs`.
pub fn new_connections(
    client: &Netns,
    to: SocketAddr,
    secs: f64,
    threads: usize,
) -> Result<Sample, String> {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            client.spawn(move || {
                barrier.wait();
                let cpu0 = thread_cpu();
                let start = Instant::now();
                let end = start + Duration::from_secs_f64(secs);
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut first_error = None;
                while Instant::now() < end {
                    match one_exchange(to) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (
                    ok,
                    errors,
                    first_error,
                    thread_cpu() - cpu0,
                    start.elapsed(),
                )
            })
        })
        .collect();
    barrier.wait();
    let stat = Stat::now(None);
    let mut total = 0u64;
    let mut errors = 0u64;
    let mut first_error = None;
    let mut cpu = Duration::ZERO;
    let mut longest = Duration::ZERO;
    for h in handles {
        let (ok, err, first, c, elapsed) = h.join().map_err(|_| "client thread panicked")?;
        total += ok;
        errors += err;
        if first_error.is_none() {
            first_error = first;
        }
        cpu += c;
        longest = longest.max(elapsed);
    }
    let used = stat.since();
    // A run where most connections fail measures the failure, not the path.
    if errors * 10 > total {
        return Err(format!(
            "{errors} of {} connections failed: {}",
            total + errors,
            first_error.unwrap_or_default()
        ));
    }
    let secs = longest.as_secs_f64();
    Ok(Sample {
        value: total as f64 / secs,
        cpu: used.busy,
        softirq: used.softirq,
        own: used.own,
        client: cpu.as_secs_f64() / secs,
        errors,
    })
}

/// TCP throughput with iperf3 (`streams` parallel streams for `secs` whole seconds), as the
/// receiver counted it; `server` is the iperf3 server's process id.
pub fn iperf(
    client: &Netns,
    to: SocketAddr,
    server: u32,
    streams: u32,
    secs: u32,
) -> Result<Sample, String> {
    let stat = Stat::now(Some(server));
    let children = rusage(libc::RUSAGE_CHILDREN);
    let out = Command::new("nsenter")
        .arg(format!("--net={}", client.path().display()))
        .args(["iperf3", "-J", "-c", &to.ip().to_string()])
        .args(["-p", &to.port().to_string()])
        .args(["-P", &streams.to_string(), "-t", &secs.to_string()])
        .output()
        .map_err(|e| format!("iperf3: {e}"))?;
    let used = stat.since();
    let client_cpu = rusage(libc::RUSAGE_CHILDREN).saturating_sub(children);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "iperf3 said no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = j.get("error") {
        return Err(format!("iperf3: {err}"));
    }
    let end = &j["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or("iperf3: no end.sum_received.bits_per_second")?;
    let secs = end["sum_received"]["seconds"]
        .as_f64()
        .unwrap_or(f64::from(secs));
    Ok(Sample {
        value: bps,
        cpu: used.busy,
        softirq: used.softirq,
        own: used.own,
        client: client_cpu.as_secs_f64() / secs.max(1e-9),
        errors: 0,
    })
}
