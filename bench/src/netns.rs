//! Throwaway network namespaces for benchmark runs: each run starts from a namespace nobody
//! has touched, removed (with whatever was programmed in it) when the run is over.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`ip netns add`) with `lo` up and a veth pair whose `eth0` end
/// has 192.0.2.1/24: a host with one data interface and one address for NodePorts.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "weft-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        for cmd in [
            "link set lo up",
            "link add eth0 type veth peer name eth1",
            "addr add 192.0.2.1/24 dev eth0",
            "link set eth0 up",
            "link set eth1 up",
        ] {
            let mut args = vec!["ip", "-n", &ns.name];
            args.extend(cmd.split(' '));
            sh(&args);
        }
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread of its own that has joined the namespace (setns moves one thread
    /// only, and a netlink socket stays in the namespace it was made in).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// Runs `program args < input` inside the namespace and returns its wall time (process
    /// start included, as for any tool run that way). The child joins the namespace between
    /// fork and exec, so no helper process (ip netns exec, nsenter) is timed with it.
    /// None when it ran past `limit` (it is killed then).
    pub fn time_command(
        &self,
        program: &str,
        args: &[&str],
        input: &str,
        limit: Duration,
    ) -> Option<Duration> {
        let ns = std::fs::File::open(self.path()).expect("namespace file");
        let fd = ns.as_raw_fd();
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
        let file = std::env::temp_dir().join(format!("{}.input", self.name));
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
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
