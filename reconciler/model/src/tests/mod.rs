//! Tests of the whole first stage: files in a temporary directory in, `Config` or diagnostics
//! out. Messages are pinned whole, with file, line and column, because they are the interface
//! users see.

mod conversion;
mod loading;
mod reading;
mod validation;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{load_dir, Config};

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(files: &[(&str, &str)]) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-model-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads files that must be valid.
pub(crate) fn load_ok(files: &[(&str, &str)]) -> Config {
    let dir = TempDir::new(files);
    match load_dir(dir.path()) {
        Ok(c) => c,
        Err(d) => panic!("expected a valid configuration, got:\n{d}"),
    }
}

/// Loads files that must be invalid and returns the diagnostics as printed, with paths relative
/// to the directory.
pub(crate) fn load_err(files: &[(&str, &str)]) -> Vec<String> {
    let dir = TempDir::new(files);
    match load_dir(dir.path()) {
        Ok(_) => panic!("expected problems, the configuration loaded"),
        Err(d) => {
            let prefix = format!("{}/", dir.path().display());
            d.to_string()
                .lines()
                .map(|l| l.replace(&prefix, ""))
                .collect()
        }
    }
}

/// The one diagnostic of an invalid configuration.
pub(crate) fn one_err(files: &[(&str, &str)]) -> String {
    let errs = load_err(files);
    assert_eq!(errs.len(), 1, "expected one problem, got {errs:#?}");
    errs.into_iter().next().unwrap()
}
