//! One writer per host. Every command that changes what weft owns (`apply`, `run`,
//! `teardown`, `gc`) holds an exclusive flock(2) on the pin root directory for as long as it
//! runs, so that a second one (a daemon started twice, an apply while the daemon runs) is
//! refused at once, naming the holder, instead of converging the host to another directory
//! behind the first one's back. The kernel lets the lock go when the holder exits, however it
//! exits, so a crash leaves nothing stale. Commands that only read (`diff`, `dump`, `status`,
//! `flows`) take no lock; neither does `confirm`, which answers the apply that holds it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct Writer {
    _root: File,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("{} is in use: {} changes this host now, and one writer at a time may", root.display(), holder(*pid, argv))]
    Held {
        root: PathBuf,
        /// The holder, when /proc says.
        pid: Option<u32>,
        /// Its command line, when /proc says.
        argv: Vec<String>,
    },
    #[error("locking {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Takes the writer's lock on the pin root `root` (created if missing), or says who holds it.
pub fn acquire(root: &Path) -> Result<Writer, WriterError> {
    let io_err = |source| WriterError::Io {
        path: root.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io_err)?;
    let dir = File::open(root).map_err(io_err)?;
    // SAFETY: flock on a descriptor this process owns.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Writer { _root: dir });
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(io_err(e));
    }
    let holder = dir
        .metadata()
        .ok()
        .and_then(|m| holder_of(m.dev(), m.ino()));
    Err(WriterError::Held {
        root: root.to_path_buf(),
        pid: holder.as_ref().map(|h| h.0),
        argv: holder.map(|h| h.1).unwrap_or_default(),
    })
}

fn holder(pid: Option<u32>, argv: &[String]) -> String {
    match pid {
        Some(pid) if argv.is_empty() => format!("pid {pid}"),
        Some(pid) => format!("pid {pid} ({})", argv.join(" ")),
        None => "another process".into(),
    }
}

/// The pid and command line of the process holding a flock on the file `dev`:`ino`, from
/// /proc/locks ("1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF").
fn holder_of(dev: u64, ino: u64) -> Option<(u32, Vec<String>)> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid: u32 = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some((pid, argv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_told_who_holds_the_host() {
        let root = std::env::temp_dir().join(format!("weft-writer-{}", std::process::id()));
        let first = acquire(&root).expect("the first writer");
        let e = acquire(&root).expect_err("a second writer");
        let WriterError::Held { pid, argv, .. } = &e else {
            panic!("{e}");
        };
        assert_eq!(*pid, Some(std::process::id()), "{e}");
        assert!(!argv.is_empty(), "{e}");
        drop(first);
        let again = acquire(&root).expect("free once the first is gone");
        drop(again);
        let _ = std::fs::remove_dir_all(&root);
    }
}
