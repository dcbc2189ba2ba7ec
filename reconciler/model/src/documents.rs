//! A configuration directory kept in memory, file by file, for a process that runs on and is
//! told (or finds) which files changed: only those are read and parsed again.
//!
//! The `Config` is the one `load_dir` would give for the files as they are now. When a change
//! touches only Services and EndpointSlices (the common case for a directory of many
//! services), the `Config` is patched in place: those kinds are checked on their own and refer
//! to nothing, so the only check across resources they need is for duplicates, which a count
//! per id answers. Any other change builds the `Config` again from the parsed files, with every
//! check `load_dir` makes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::diag::{Diagnostics, Item, Kind, ResourceId, Source};
use crate::load::{self, AnyResource, FileText, Out};
use crate::resources::k8s::{EndpointSlice, Service};

/// One file as last read.
#[derive(Debug, Clone)]
struct Cached {
    file: FileText,
    /// Its documents, parsed on their own (resources normalized, file index 0).
    out: Out,
}

impl Cached {
    fn parse(file: FileText) -> Cached {
        let mut out = Out::default();
        load::load_file(0, &file, &mut out);
        for l in &mut out.loaded {
            load::judge(&file, l);
        }
        Cached { file, out }
    }

    /// Only Services and EndpointSlices, all of which deserialized.
    fn services_only(&self) -> bool {
        self.out.diags.is_empty()
            && self.out.unreadable.is_empty()
            && self
                .out
                .loaded
                .iter()
                .all(|l| matches!(l.kind, Kind::Service | Kind::EndpointSlice))
    }
}

/// What an update changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// No file's text changed.
    Unchanged,
    /// Only Services and EndpointSlices changed, and the configuration is valid: the
    /// resources that went (`before`) and came (`after`). A resource whose file changed is in
    /// both, even if it is the same.
    Services {
        before: ServicesPart,
        after: ServicesPart,
    },
    /// Anything else; the configuration was built again (and may now be invalid).
    Other,
}

/// Services and EndpointSlices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServicesPart {
    pub services: Vec<Item<Service>>,
    pub endpoint_slices: Vec<Item<EndpointSlice>>,
}

/// A directory's files, parsed, and the configuration they make.
pub struct Documents {
    dir: PathBuf,
    /// By path relative to `dir`, as bytes: the order `load_dir` reads files in.
    files: BTreeMap<Vec<u8>, Cached>,
    /// Shared with whoever keeps it (a daemon's last good configuration): a change copies it
    /// only then, and the copy shares every resource.
    config: Result<Arc<Config>, Diagnostics>,
    /// How many resources have each id, while the configuration is valid.
    ids: BTreeMap<ResourceId, u32>,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .finish()
    }
}

/// Load order: file (bytes of the path), then position in it.
fn order_key(s: &Source) -> (&[u8], usize, usize) {
    (s.file.as_os_str().as_bytes(), s.line, s.column)
}

impl Documents {
    /// Reads every YAML file under `dir` (as `load_dir` does).
    pub fn read_dir(dir: &Path) -> Documents {
        let mut d = Documents {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            config: Ok(Arc::default()),
            ids: BTreeMap::new(),
        };
        let paths = match load::find_files(dir) {
            Ok(p) => p,
            Err(diag) => {
                d.config = Err(Diagnostics(vec![diag]));
                return d;
            }
        };
        let mut unread = Vec::new();
        let mut texts = Vec::new();
        for read in load::read_files(paths) {
            match read {
                Ok(f) => texts.push(f),
                Err(diag) => unread.push(diag),
            }
        }
        let refs: Vec<&FileText> = texts.iter().collect();
        let outs = load::parse_files(&refs);
        for (file, mut out) in texts.into_iter().zip(outs) {
            // Judged (normalized and checked) where it was parsed.
            for l in &mut out.loaded {
                l.at.file = 0;
            }
            let rel = d.relative(&file.path);
            d.files.insert(rel, Cached { file, out });
        }
        d.rebuild();
        if !unread.is_empty() {
            let mut all = match std::mem::replace(&mut d.config, Ok(Arc::default())) {
                Ok(_) => Vec::new(),
                Err(e) => e.0,
            };
            all.extend(unread);
            let mut diags = Diagnostics(all);
            diags.sort();
            d.config = Err(diags);
        }
        d
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the files make now, or every problem in them.
    pub fn config(&self) -> Result<&Arc<Config>, &Diagnostics> {
        self.config.as_ref()
    }

    fn relative(&self, path: &Path) -> Vec<u8> {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .as_os_str()
            .as_bytes()
            .to_vec()
    }

    /// Reads the named files again (paths under the directory, relative or not; a file that is
    /// gone, or is no longer a YAML file, is dropped).
    pub fn reread<P: AsRef<Path>>(&mut self, paths: &[P]) -> Delta {
        let changes = paths
            .iter()
            .map(|p| {
                let p = p.as_ref();
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.dir.join(p)
                };
                let rel = self.relative(&abs);
                let name = abs.file_name().map(|n| n.as_bytes()).unwrap_or_default();
                let wanted = (name.ends_with(b".yaml") || name.ends_with(b".yml"))
                    && !rel.split(|b| *b == b'/').any(|c| c.first() == Some(&b'.'))
                    && abs.is_file();
                let text = if wanted {
                    std::fs::read(&abs)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                } else {
                    None
                };
                (rel, text)
            })
            .collect();
        self.update(changes)
    }

    /// Lists the directory again and reads every file, parsing those whose text changed:
    /// for when nobody said what changed.
    pub fn rescan(&mut self) -> Delta {
        let paths = match load::find_files(&self.dir) {
            Ok(p) => p,
            Err(_) => return self.update(Vec::new()),
        };
        let mut listed: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut all: Vec<PathBuf> = Vec::new();
        for p in paths {
            listed.insert(self.relative(&p));
            all.push(p);
        }
        for rel in self.files.keys() {
            if !listed.contains(rel) {
                all.push(self.dir.join(std::ffi::OsStr::from_bytes(rel)));
            }
        }
        self.reread(&all)
    }

    /// Sets files' texts (None: the file is gone). Paths are relative to the directory.
    pub fn update(&mut self, changes: Vec<(Vec<u8>, Option<String>)>) -> Delta {
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut fast = self.config.is_ok();
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        for (rel, text) in changes {
            let old = self.files.get(&rel);
            if old.map(|c| &c.file.text) == text.as_ref() {
                continue;
            }
            let path = self.dir.join(std::ffi::OsStr::from_bytes(&rel));
            touched.insert(path.clone());
            let new = text.map(|text| Cached::parse(FileText { path, text }));
            for c in old.iter().copied().chain(new.as_ref()) {
                fast &= c.services_only();
            }
            if let Some(old) = self.files.remove(&rel) {
                before.extend(old.out.loaded);
            }
            if let Some(new) = new {
                after.extend(new.out.loaded.iter().cloned());
                self.files.insert(rel, new);
            }
        }
        if touched.is_empty() {
            return Delta::Unchanged;
        }
        if fast {
            fast = self.patch(&touched, &before, &after);
        }
        if !fast {
            self.rebuild();
            return Delta::Other;
        }
        let part = |loaded: Vec<load::Loaded>| {
            let mut p = ServicesPart::default();
            for l in loaded {
                match l.value {
                    AnyResource::Service(s) => p.services.push(Item {
                        source: l.source,
                        value: s,
                    }),
                    AnyResource::EndpointSlice(s) => p.endpoint_slices.push(Item {
                        source: l.source,
                        value: s,
                    }),
                    _ => unreachable!("checked: services only"),
                }
            }
            p
        };
        Delta::Services {
            before: part(before),
            after: part(after),
        }
    }

    /// Patches the configuration for Services and EndpointSlices that went and came, if they
    /// are valid on their own and duplicate nothing; false (nothing patched) otherwise.
    fn patch(
        &mut self,
        touched: &BTreeSet<PathBuf>,
        before: &[load::Loaded],
        after: &[load::Loaded],
    ) -> bool {
        if !after.iter().all(load::valid_alone) {
            return false;
        }
        let after_ids: Vec<ResourceId> = after.iter().map(load::id_of).collect();
        // Duplicates, counted without copying the book: what stays, less what went, plus
        // what came.
        let before_ids: Vec<ResourceId> = before.iter().map(load::id_of).collect();
        let mut change: BTreeMap<&ResourceId, i64> = BTreeMap::new();
        for id in &before_ids {
            *change.entry(id).or_default() -= 1;
        }
        for id in &after_ids {
            *change.entry(id).or_default() += 1;
        }
        let duplicate = change
            .iter()
            .any(|(id, d)| self.ids.get(*id).copied().unwrap_or(0) as i64 + d > 1);
        if duplicate || self.config.is_err() {
            return false;
        }
        for (id, d) in change {
            let n = self.ids.entry(id.clone()).or_default();
            *n = (*n as i64 + d) as u32;
            if *n == 0 {
                self.ids.remove(id);
            }
        }
        let Ok(cfg) = self.config.as_mut().map(Arc::make_mut) else {
            return false;
        };
        cfg.services.retain(|i| !touched.contains(&*i.source.file));
        cfg.endpoint_slices
            .retain(|i| !touched.contains(&*i.source.file));
        for l in after {
            match &l.value {
                AnyResource::Service(s) => insert_ordered(
                    &mut cfg.services,
                    Item {
                        source: l.source.clone(),
                        value: s.clone(),
                    },
                ),
                AnyResource::EndpointSlice(s) => insert_ordered(
                    &mut cfg.endpoint_slices,
                    Item {
                        source: l.source.clone(),
                        value: s.clone(),
                    },
                ),
                _ => unreachable!("checked: services only"),
            }
        }
        true
    }

    /// Builds the configuration from every parsed file, with all of `load_dir`'s checks.
    fn rebuild(&mut self) {
        let files: Vec<&FileText> = self.files.values().map(|c| &c.file).collect();
        let mut out = Out::default();
        for (i, c) in self.files.values().enumerate() {
            let mut o = c.out.clone();
            for l in &mut o.loaded {
                l.at.file = i;
            }
            out.merge([o]);
        }
        let mut ids: BTreeMap<ResourceId, u32> = BTreeMap::new();
        for l in &out.loaded {
            *ids.entry(load::id_of(l)).or_default() += 1;
        }
        self.config = load::finish(&files, out).map(Arc::new);
        self.ids = if self.config.is_ok() {
            ids
        } else {
            BTreeMap::new()
        };
    }
}

fn insert_ordered<T>(v: &mut Vec<Item<T>>, item: Item<T>) {
    let at = v.partition_point(|i| order_key(&i.source) < order_key(&item.source));
    v.insert(at, item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ip: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {ip}\n  ports:\n    - {{name: http, port: 80}}\n")
    }

    fn slice(service: &str, addr: &str) -> String {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n  - {{name: http, port: 8080}}\nendpoints:\n  - addresses: [{addr}]\n")
    }

    /// The configuration `load_dir` makes of the same files, for comparison.
    fn fresh(dir: &Path) -> String {
        format!(
            "{:?}",
            crate::load_dir(dir).map(|c| c.services.len() + c.endpoint_slices.len())
        ) + &match crate::load_dir(dir) {
            Ok(c) => format!("{:?}{:?}{:?}", c.services, c.endpoint_slices, c.profiles),
            Err(e) => e.to_string(),
        }
    }

    fn current(d: &Documents) -> String {
        format!(
            "{:?}",
            d.config()
                .map(|c| c.services.len() + c.endpoint_slices.len())
        ) + &match d.config() {
            Ok(c) => format!("{:?}{:?}{:?}", c.services, c.endpoint_slices, c.profiles),
            Err(e) => e.to_string(),
        }
    }

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("weft-docs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    #[test]
    fn service_changes_patch_the_config_as_a_fresh_load_would_read_it() {
        let dir = temp("patch");
        let d0 = &dir.0;
        std::fs::write(
            d0.join("a.yaml"),
            service("a", "10.96.0.1") + "---\n" + &slice("a", "10.0.0.1"),
        )
        .unwrap();
        std::fs::write(d0.join("c.yaml"), service("c", "10.96.0.3")).unwrap();
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .unwrap();
        let mut docs = Documents::read_dir(d0);
        assert_eq!(current(&docs), fresh(d0));

        // A new file between two others, an edit, a removal: each patched in place.
        std::fs::write(
            d0.join("b.yaml"),
            service("b", "10.96.0.2") + "---\n" + &slice("b", "10.0.0.2"),
        )
        .unwrap();
        let delta = docs.reread(&["b.yaml"]);
        assert!(
            matches!(&delta, Delta::Services { before, after } if before.services.is_empty() && after.services.len() == 1 && after.endpoint_slices.len() == 1),
            "{delta:?}"
        );
        assert_eq!(current(&docs), fresh(d0));
        std::fs::write(
            d0.join("a.yaml"),
            service("a", "10.96.0.1") + "---\n" + &slice("a", "10.0.0.9"),
        )
        .unwrap();
        assert!(matches!(
            docs.reread(&[d0.join("a.yaml")]),
            Delta::Services { .. }
        ));
        assert_eq!(current(&docs), fresh(d0));
        std::fs::remove_file(d0.join("c.yaml")).unwrap();
        assert!(matches!(docs.reread(&["c.yaml"]), Delta::Services { .. }));
        assert_eq!(current(&docs), fresh(d0));
        assert_eq!(docs.reread(&["c.yaml"]), Delta::Unchanged);

        // A duplicate is a problem for the whole configuration, as load_dir reports it.
        std::fs::write(d0.join("dup.yaml"), service("a", "10.96.0.7")).unwrap();
        assert_eq!(docs.rescan(), Delta::Other);
        assert!(docs.config().is_err());
        assert_eq!(current(&docs), fresh(d0));
        std::fs::remove_file(d0.join("dup.yaml")).unwrap();
        assert_eq!(
            docs.rescan(),
            Delta::Other,
            "from invalid to valid is built again"
        );
        assert_eq!(current(&docs), fresh(d0));

        // Other kinds build the configuration again.
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {a: b}}\n",
        )
        .unwrap();
        assert_eq!(docs.rescan(), Delta::Other);
        assert_eq!(current(&docs), fresh(d0));
    }

    #[test]
    fn an_invalid_service_is_reported_as_a_fresh_load_reports_it() {
        let dir = temp("invalid");
        let d0 = &dir.0;
        std::fs::write(d0.join("a.yaml"), service("a", "10.96.0.1")).unwrap();
        let mut docs = Documents::read_dir(d0);
        std::fs::write(
            d0.join("a.yaml"),
            service("a", "10.96.0.1").replace("port: 80", "port: 80000"),
        )
        .unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        let e = docs.config().expect_err("out of range");
        assert_eq!(e.to_string(), crate::load_dir(d0).unwrap_err().to_string());
    }
}
