//! A configuration directory for unit tests, removed when dropped.

use std::path::PathBuf;

/// A configuration from YAML texts (files f0.yaml, f1.yaml, ...), which must be valid.
pub(crate) fn config(texts: &[&str]) -> weft_model::Config {
    weft_model::load_texts(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("f{i}.yaml"), t.to_string())),
    )
    .expect("valid")
}

pub(crate) struct TestDir(pub PathBuf);

impl TestDir {
    /// An empty directory under the temporary directory, named for the test and the process.
    pub(crate) fn new(name: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("weft-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }

    /// Writes `file`, or removes it for None.
    pub(crate) fn set(&self, file: &str, text: Option<String>) {
        match text {
            Some(t) => self.write(file, &t),
            None => std::fs::remove_file(self.0.join(file)).unwrap(),
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
