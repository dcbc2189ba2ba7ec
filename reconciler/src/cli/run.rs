//! `weft run DIR`: apply, then watch DIR and converge on every change, repair drift at every
//! resync, until SIGTERM. See weft::daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use weft::daemon::{self, Options};

use super::{report, HostArgs};

pub async fn run(
    dir: &Path,
    host: &HostArgs,
    state_dir: PathBuf,
    resync: Duration,
    debounce: Duration,
    metrics: Option<SocketAddr>,
) -> ExitCode {
    let h = match host.open().await {
        Ok(h) => h,
        Err(e) => return report(&e),
    };
    let opts = Options {
        dir: dir.to_path_buf(),
        state_dir,
        resync,
        debounce,
        metrics,
    };
    match daemon::run(h, opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}
