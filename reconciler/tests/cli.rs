//! The weft binary as a shell sees it, without a kernel: commands that only print end quietly
//! when their reader has gone (`weft validate DIR | head`), as other Unix tools do.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A pipe whose reading end is closed already: every write to it fails (EPIPE, SIGPIPE).
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both are new descriptors that this process owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn a_printing_command_ends_quietly_when_its_reader_has_gone() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("validate")
        .arg(&examples)
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .expect("running weft validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "weft validate into a closed pipe: {} {stderr}",
        out.status
    );
    // It ends as `cat` would: by SIGPIPE, saying nothing.
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}
