//! The directories weft keeps files in, and how it writes them: the state directory (default
//! /run/weft: the daemon's status, pending confirmations, the routes weft took over) and the
//! pin root's directories on bpffs.
//!
//! Root writes here, so nobody else may: a directory another user can write lets them answer
//! `weft confirm` in root's place, or plant a symlink where root writes and have root overwrite
//! any file. So a directory is made 0700 whatever the umask (and an existing one of ours set
//! back to 0700), one of another user's is refused, and a file is written under a temporary
//! name nobody can have planted (`O_CREAT|O_EXCL|O_NOFOLLOW`, unique per write) and renamed
//! over its name, so a reader never sees half a file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every directory weft makes for itself.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file weft writes into one.
pub const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("{path} is not a directory (a symlink or a file is in its place); remove it and weft makes the directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} belongs to uid {owner}, not to uid {me} who runs weft; weft keeps its files only in a directory of its own user: remove it, or choose another with --state-dir")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateDirError + '_ {
    move |source| StateDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens the directory `dir` itself, not what a symlink in its place points at.
fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
}

/// Makes `dir` (and any missing parent) a directory only its owner can use, 0700, whatever
/// the umask. An existing one must be a directory of this process's user; its mode is set back
/// to 0700 if others could use it (as a weft before this one made it under a permissive umask).
pub fn ensure(dir: &Path) -> Result<(), StateDirError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            match DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(dir)(e)),
            }
        }
        Err(e) => return Err(io_err(dir)(e)),
    }
    let d = match open_dir(dir) {
        Ok(d) => d,
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Err(StateDirError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(dir)(e)),
    };
    // Checked and changed through the open directory, so what is checked is what is changed.
    let meta = d.metadata().map_err(io_err(dir))?;
    let me = euid();
    if meta.uid() != me {
        return Err(StateDirError::NotOwned {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        d.set_permissions(std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// Makes the directory `dir` inside a directory `ensure` made: 0700, not through a symlink in
/// its place. Already there is success.
pub fn make_dir(dir: &Path) -> Result<(), StateDirError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match open_dir(dir) {
            Ok(_) => Ok(()),
            Err(_) => Err(StateDirError::NotADirectory {
                path: dir.to_path_buf(),
            }),
        },
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Opens the directory `dir` (for a lock), refusing a symlink in its place.
pub fn open_lock_dir(dir: &Path) -> Result<File, StateDirError> {
    make_dir(dir)?;
    open_dir(dir).map_err(io_err(dir))
}

/// A temporary name no other write uses: this process's id and a count.
fn temporary(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `bytes` to `<dir>/<name>` atomically, 0600: into a new file of a temporary name
/// (created with `O_CREAT|O_EXCL|O_NOFOLLOW`, so a file or symlink planted under that name is
/// never written through), then renamed over `name` (a symlink planted at `name` is replaced,
/// not followed). Makes `dir` as `ensure` does.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateDirError> {
    ensure(dir)?;
    let tmp = temporary(dir, name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(&path)(e)
    })
}

/// Whether this process's user owns `dir`: None when `dir` cannot be looked at (it does not
/// exist), Some(Err(owner)) when another user does.
pub fn owner_check(dir: &Path) -> Option<Result<(), u32>> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    Some(if meta.uid() == euid() {
        Ok(())
    } else {
        Err(meta.uid())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-statedir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_and_its_files_are_the_owners_alone_whatever_the_umask() {
        let d = dir("umask").join("state");
        // SAFETY: umask only changes this process's file creation mask; put back below.
        let old = unsafe { libc::umask(0) };
        let r = write(&d, "status.json", b"{}");
        unsafe { libc::umask(old) };
        r.expect("write");
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("status.json")), 0o600);
        assert_eq!(std::fs::read(d.join("status.json")).unwrap(), b"{}");
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = std::fs::remove_dir_all(d.parent().unwrap());
    }

    #[test]
    fn an_open_directory_of_ours_is_closed_again() {
        let d = dir("open");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure(&d).expect("ensure");
        assert_eq!(mode(&d), 0o700);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_in_the_directorys_place_or_at_the_files_name_is_not_followed() {
        let base = dir("symlink");
        std::fs::create_dir_all(&base).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // In the directory's place.
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, base.join("state")).unwrap();
        assert!(matches!(
            write(&base.join("state"), "status.json", b"{}"),
            Err(StateDirError::NotADirectory { .. })
        ));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // At the file's own name: replaced, not written through.
        let state = base.join("real");
        ensure(&state).unwrap();
        symlink(&victim, state.join("status.json")).unwrap();
        write(&state, "status.json", b"{}").expect("write");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(state.join("status.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        let _ = std::fs::remove_dir_all(&base);
    }
}
