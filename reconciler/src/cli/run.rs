//! `weft run DIR`: apply, then watch DIR and converge on every change, repair drift at every
//! resync, until SIGTERM. See weft::daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use weft::daemon::{self, Options};

use super::{report, HostArgs};

/// The daemon's options from the command line, beside the directory and host.
pub struct Timing {
    /// How DIR's files are read.
    pub read: weft_model::ReadOptions,
    pub state_dir: PathBuf,
    pub resync: Duration,
    pub debounce: Duration,
    pub metrics: Option<SocketAddr>,
    pub ct_gc: Option<Duration>,
}

pub async fn run(dir: &Path, host: &HostArgs, t: Timing) -> ExitCode {
    // Before anything is read or written: a second daemon stops here, and the first one's
    // status stays its own.
    let _writer = match super::writer(host) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let h = match host.open().await {
        Ok(h) => h,
        Err(e) => return report(&e),
    };
    h.say_kernel();
    let opts = Options {
        dir: dir.to_path_buf(),
        read: t.read,
        state_dir: t.state_dir,
        resync: t.resync,
        debounce: t.debounce,
        metrics: t.metrics,
        ct_gc: t.ct_gc,
    };
    match daemon::run(h, opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}
