//! Running `weft run` in a bed's host namespace, reading what it reports, and waiting for
//! conditions with a deadline instead of sleeping: a test counts reconciles and repairs in the
//! status file rather than timing them.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Bed;

/// How long any awaited condition may take before the test fails. Generous: the machine is
/// shared, and a condition that holds is seen at once anyway.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns Some, or panics after `within` saying what was awaited.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running `weft run`, killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub bin: PathBuf,
}

impl Bed {
    /// The state directory `weft run` and `weft apply --confirm-within` use in this bed.
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }

    /// Starts `weft run <config>` with the bed's node and bpffs, a state directory of the
    /// bed's, and `args` (e.g. `--resync 1s`), using the weft binary `bin`.
    pub fn daemon_with(&self, bin: &Path, args: &[&str]) -> Daemon {
        self.daemon_on(bin, &self.config, args)
    }

    /// `weft run <dir>`, for a directory other than the bed's config (a symlink to it, say).
    pub fn daemon_on(&self, bin: &Path, dir: &Path, args: &[&str]) -> Daemon {
        self.spawn_daemon(bin, dir, args, None)
    }

    /// `weft run` with this build's binary, started under file creation mask `umask` (0: what
    /// it creates is open to all unless it says otherwise).
    pub fn daemon_umask(&self, umask: libc::mode_t, args: &[&str]) -> Daemon {
        self.spawn_daemon(&Bed::weft_bin(), &self.config, args, Some(umask))
    }

    fn spawn_daemon(
        &self,
        bin: &Path,
        dir: &Path,
        args: &[&str],
        umask: Option<libc::mode_t>,
    ) -> Daemon {
        let state_dir = self.state_dir();
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let _ = std::fs::remove_file(state_dir.join("status.json"));
        let log = state_dir.join(format!(
            "weft-run-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let logf = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = Command::new("nsenter");
        if let Some(mask) = umask {
            with_umask(&mut cmd, mask);
        }
        let child = cmd
            .arg(format!("--net={}", self.host.path().display()))
            .arg(bin)
            .arg("run")
            .arg(dir)
            .args(["--node", &self.node, "--bpffs"])
            .arg(&self.bpffs)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .env("WEFT_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("starting weft run: {e}"));
        Daemon {
            child: Some(child),
            state_dir,
            log,
            bin: bin.to_path_buf(),
        }
    }

    /// `weft run` with this build's binary.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        self.daemon_with(&Bed::weft_bin(), args)
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The status file, if written yet.
    pub fn status(&self) -> Option<Value> {
        let bytes = std::fs::read(self.state_dir.join("status.json")).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        // A file left by an earlier daemon of this bed is not this one's.
        (v["pid"].as_u64() == Some(u64::from(self.pid()))).then_some(v)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the status satisfies `cond`, failing with the daemon's log if it does not
    /// within DEADLINE (or if the daemon exits).
    pub fn wait(&mut self, what: &str, mut cond: impl FnMut(&Value) -> bool) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.status() {
                if cond(&s) {
                    return s;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "weft run exited ({st}) while waiting for {what}; its log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {what}; status: {}\nlog:\n{}",
                    self.status().map(|s| s.to_string()).unwrap_or_default(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the first reconcile after start, and returns the status.
    pub fn started(&mut self) -> Value {
        self.wait("the first reconcile", |s| reconciles(s, "start") >= 1)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        c.wait().expect("reaping weft run")
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn term(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().expect("reaping weft run");
        assert!(
            st.success() || st.signal().is_none(),
            "weft run died of a signal: {st}"
        );
        st
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes `cmd` run under file creation mask `mask`.
pub fn with_umask(cmd: &mut Command, mask: libc::mode_t) {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches only the child's own mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
}

/// Reconciles woken by `trigger` (start, files, links, resync, retry).
pub fn reconciles(status: &Value, trigger: &str) -> u64 {
    status["reconciles"][trigger].as_u64().unwrap_or(0)
}

/// Drift repairs of `kind` (route, neighbour, attachment, map-entry, ...).
pub fn repairs(status: &Value, kind: &str) -> u64 {
    status["drift_repaired"][kind].as_u64().unwrap_or(0)
}

/// The result of the last reconcile (converged, differs, failed, invalid).
pub fn last_result(status: &Value) -> String {
    status["last_reconcile"]["result"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
