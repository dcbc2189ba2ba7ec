//! Throwaway network namespaces for benchmark runs: each run starts from a namespace nobody
//! has touched, removed (with whatever was programmed in it) when the run is over. The
//! namespace itself is vm-tests' `Netns`; what is the benchmarks' own is the host they make in
//! it and how they time a tool run there.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use weft_vm_tests::Netns;

/// A namespace with `lo` up and a veth pair whose `eth0` end has 192.0.2.1/24: a host with
/// one data interface and one address for NodePorts.
pub fn host() -> Netns {
    let ns = Netns::new("weft-bench-");
    for cmd in [
        "link add eth0 type veth peer name eth1",
        "addr add 192.0.2.1/24 dev eth0",
        "link set eth0 up",
        "link set eth1 up",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        ns.ip(&args);
    }
    ns
}

/// Runs `program args < input` inside the namespace and returns its wall time (process
/// start included, as for any tool run that way). The child joins the namespace between
/// fork and exec, so no helper process (ip netns exec, nsenter) is timed with it.
/// None when it ran past `limit` (it is killed then).
pub fn time_command(
    ns: &Netns,
    program: &str,
    args: &[&str],
    input: &str,
    limit: Duration,
) -> Option<Duration> {
    let ns_file = std::fs::File::open(ns.path()).expect("namespace file");
    let fd = ns_file.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setns is async-signal-safe; fd stays open until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The input is written to a file first so that only the tool's own work is timed, not
    // how fast this process fills a pipe.
    let file = std::env::temp_dir().join(format!("{}.input", ns.name));
    std::fs::write(&file, input).expect("writing the tool's input");
    cmd.stdin(std::fs::File::open(&file).expect("input file"));
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the tool") {
            break Some(status);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let took = t.elapsed();
    let _ = std::fs::remove_file(&file);
    let status = status?;
    assert!(status.success(), "{program} {args:?} failed: {status}");
    Some(took)
}
