//! A configuration directory kept in memory, file by file, for a process that runs on and is
//! told (or finds) which files changed: only those are read and parsed again.
//!
//! The `Config` is the one `load_dir` would give for the files as they are now. When a change
//! touches only Services and EndpointSlices (the common case for a directory of many
//! services), the `Config` is patched in place: those kinds are checked on their own and refer
//! to nothing, so the only check across resources they need is for duplicates, which a count
//! per id answers. A change to policies alone is patched too: besides duplicates, a policy
//! refers only to its tier, which must be in the configuration already. So is a change to
//! endpoints, nodes and network sets alone: they refer only to the profiles that label them,
//! which must be there already (a fleet's node added with its workloads). Any other change
//! builds the `Config` again from the parsed files, with every check `load_dir` makes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics, Item, Kind};
use crate::load::{self, AnyResource, Digest, FileText, Out, ReadOptions, Reader, Texts};
use crate::resources::k8s::{EndpointSlice, Service};

/// One file as last read.
#[derive(Debug, Clone)]
struct Cached {
    /// Its path; the text is let go once parsed (`FileText::shed`), and is empty when the
    /// file was refused.
    file: FileText,
    /// What tells the text as parsed from another; None when the file was refused, or its
    /// text is kept (`FileText::shed`).
    digest: Option<Digest>,
    /// Its documents, parsed on their own (resources normalized, file index 0); or the
    /// refusal, as the one diagnostic.
    out: Out,
    /// Why the file was not read (not a regular file, too large, a link out...), if it was
    /// not: a refused file stays in the directory's problems until it changes or goes.
    refused: Option<Diagnostic>,
}

/// A file as read: its text, or why it was not read.
type Read = Result<FileText, Diagnostic>;

impl Cached {
    fn new(read: Read) -> Cached {
        match read {
            Ok(file) => Cached::parse(file),
            Err(d) => Cached {
                file: FileText::new(d.file.clone(), String::new()),
                digest: None,
                out: Out {
                    diags: vec![d.clone()],
                    ..Out::default()
                },
                refused: Some(d),
            },
        }
    }

    fn parse(mut file: FileText) -> Cached {
        let mut out = Out::default();
        // Judged (normalized and checked) as it is read.
        load::load_file(0, &file, &mut out);
        let digest = file.shed();
        Cached::parsed(load::Parsed { file, digest, out })
    }

    fn parsed(p: load::Parsed) -> Cached {
        Cached {
            file: p.file,
            digest: p.digest,
            out: p.out,
            refused: None,
        }
    }

    /// Whether `read` is what this file held when last read.
    fn same(&self, read: &Read) -> bool {
        match (&self.refused, read) {
            (None, Ok(f)) => match self.digest {
                Some(d) => d == Digest::of(&f.text),
                None => self.file.text == f.text,
            },
            (Some(d), Err(e)) => d == e,
            _ => false,
        }
    }

    /// Whether every resource of the file deserialized and is of one of `kinds`.
    fn only(&self, kinds: &[Kind]) -> bool {
        self.out.diags.is_empty()
            && self.out.unreadable.is_empty()
            && self.out.loaded.iter().all(|l| kinds.contains(&l.kind))
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
    /// How files are read (the same at every read).
    opts: ReadOptions,
    /// By path relative to `dir`, as bytes: the order `load_dir` reads files in.
    files: BTreeMap<Vec<u8>, Cached>,
    /// Shared with whoever keeps it (a daemon's last good configuration): a change copies it
    /// only then, and the copy shares every resource.
    config: Result<Arc<Config>, Diagnostics>,
    /// How many resources have each id (by a hash of it: `id_key`), while the
    /// configuration is valid.
    ids: BTreeMap<u64, u32>,
    /// The valid configuration the last change replaced, or what undoes that change: for a
    /// daemon whose last good configuration was the files' own, which it does not hold (a
    /// second holder would make every patch copy the configuration whole).
    previous: Option<Previous>,
}

/// How to have the configuration as it was before the last change.
#[derive(Debug)]
enum Previous {
    /// It was built again: the configuration it replaced.
    Kept(Arc<Config>),
    /// It was patched: the files it touched, and what they held before.
    Undo {
        touched: BTreeSet<PathBuf>,
        before: Vec<load::Loaded>,
        kind: Patched,
    },
}

/// What a patch changed: the kinds a change can be patched in for, each group on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Patched {
    /// Services and EndpointSlices, which refer to nothing.
    Services,
    /// Policies, which refer only to their tier.
    Policies,
    /// Endpoints, nodes and network sets, which refer only to the profiles that label them.
    Endpoints,
}

impl Patched {
    const ALL: [Patched; 3] = [Patched::Services, Patched::Policies, Patched::Endpoints];

    fn kinds(self) -> &'static [Kind] {
        match self {
            Patched::Services => &[Kind::Service, Kind::EndpointSlice],
            Patched::Policies => &[
                Kind::NetworkPolicy,
                Kind::GlobalNetworkPolicy,
                Kind::KubernetesNetworkPolicy,
            ],
            Patched::Endpoints => &[
                Kind::WorkloadEndpoint,
                Kind::HostEndpoint,
                Kind::Node,
                Kind::NetworkSet,
                Kind::GlobalNetworkSet,
            ],
        }
    }

    /// Takes this kind's resources of the `touched` files out of `cfg` and puts `items` in.
    fn splice(self, cfg: &mut Config, touched: &BTreeSet<PathBuf>, items: &[load::Loaded]) {
        match self {
            Patched::Services => splice_services(cfg, touched, items),
            Patched::Policies => splice_policies(cfg, touched, items),
            Patched::Endpoints => splice_endpoints(cfg, touched, items),
        }
    }
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .finish()
    }
}

impl Documents {
    /// Reads every YAML file under `dir` (as `load_dir` does).
    pub fn read_dir(dir: &Path) -> Documents {
        Documents::read_dir_with(dir, ReadOptions::default())
    }

    /// Reads every YAML file under `dir` as `opts` say (as `load_dir_with` does), and every
    /// file again later the same way.
    pub fn read_dir_with(dir: &Path, opts: ReadOptions) -> Documents {
        let mut d = Documents {
            dir: dir.to_path_buf(),
            opts,
            files: BTreeMap::new(),
            config: Ok(Arc::default()),
            ids: BTreeMap::new(),
            previous: None,
        };
        let reader = Reader::new(dir, opts);
        let paths = match reader.find_files() {
            Ok(p) => p,
            Err(diag) => {
                d.config = Err(Diagnostics(vec![diag]));
                return d;
            }
        };
        for parsed in load::read_and_parse(&reader, paths) {
            match parsed {
                // Judged (normalized and checked) where it was parsed, as file 0.
                Ok(p) => {
                    let rel = d.relative(&p.file.path);
                    d.files.insert(rel, Cached::parsed(p));
                }
                Err(diag) => {
                    let rel = d.relative(&diag.file);
                    d.files.insert(rel, Cached::new(Err(diag)));
                }
            }
        }
        d.rebuild(&reader);
        d
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the files make now, or every problem in them.
    pub fn config(&self) -> Result<&Arc<Config>, &Diagnostics> {
        self.config.as_ref()
    }

    /// The configuration as it was before the last change of text, if it was valid (until
    /// `forget_previous`): what a daemon whose last good configuration was the files' own
    /// falls back on when the change does not validate or compile.
    pub fn previous(&self) -> Option<Arc<Config>> {
        match self.previous.as_ref()? {
            Previous::Kept(c) => Some(c.clone()),
            Previous::Undo {
                touched,
                before,
                kind,
            } => {
                let mut c = Config::clone(self.config.as_ref().ok()?);
                kind.splice(&mut c, touched, before);
                Some(Arc::new(c))
            }
        }
    }

    /// Lets go of what `previous` needs: the change is taken. A configuration kept whole is
    /// handed back, for the caller to free when it suits (tens of milliseconds at 10,000
    /// resources).
    pub fn forget_previous(&mut self) -> Option<Arc<Config>> {
        match self.previous.take()? {
            Previous::Kept(c) => Some(c),
            Previous::Undo { .. } => None,
        }
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
        let reader = Reader::new(&self.dir, self.opts);
        self.reread_with(&reader, paths)
    }

    /// `reread`, through `reader`: one per change, for listing, reading and placing problems
    /// alike (making one reads `.weftignore` and resolves the directory).
    fn reread_with<P: AsRef<Path>>(&mut self, reader: &Reader, paths: &[P]) -> Delta {
        // A file whose text is what it was is let go as soon as it is compared: a rescan
        // reads every file, and holding them all (34 MB at 10,000 endpoints, policies and
        // services) raised the daemon's peak RSS by as much.
        let changes = paths
            .iter()
            .filter_map(|p| {
                let p = p.as_ref();
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.dir.join(p)
                };
                let rel = self.relative(&abs);
                let read = reader.reread(Path::new(std::ffi::OsStr::from_bytes(&rel)));
                (!self.unchanged(&rel, read.as_ref())).then_some((rel, read))
            })
            .collect();
        self.update(reader, changes)
    }

    /// Lists the directory again and reads every file, parsing those whose text changed:
    /// for when nobody said what changed.
    pub fn rescan(&mut self) -> Delta {
        let reader = Reader::new(&self.dir, self.opts);
        let paths = match reader.find_files() {
            Ok(p) => p,
            Err(_) => return self.update(&reader, Vec::new()),
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
        self.reread_with(&reader, &all)
    }

    /// Whether `read` (None: no file to read) is what the file `rel` was when last read.
    fn unchanged(&self, rel: &[u8], read: Option<&Read>) -> bool {
        match (self.files.get(rel), read) {
            (None, None) => true,
            (Some(c), Some(r)) => c.same(r),
            _ => false,
        }
    }

    /// Sets files as read (None: the file is gone), each one that is not as it was
    /// (`reread_with` passes no other). Paths are relative to the directory.
    fn update(&mut self, reader: &Reader, changes: Vec<(Vec<u8>, Option<Read>)>) -> Delta {
        let mut before = Vec::new();
        let mut after = Vec::new();
        // Which kind of patch the change fits, if any: every file it touches, before and after,
        // holds only that kind's resources.
        let mut fits: Vec<Patched> = if self.config.is_ok() {
            Patched::ALL.to_vec()
        } else {
            Vec::new()
        };
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        for (rel, read) in changes {
            let old = self.files.get(&rel);
            let path = self.dir.join(std::ffi::OsStr::from_bytes(&rel));
            touched.insert(path);
            let new = read.map(Cached::new);
            for c in old.iter().copied().chain(new.as_ref()) {
                fits.retain(|k| c.only(k.kinds()));
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
        let patched = fits
            .first()
            .copied()
            .filter(|k| self.patch(*k, &touched, &before, &after));
        let Some(kind) = patched else {
            self.previous = self.config.as_ref().ok().cloned().map(Previous::Kept);
            self.rebuild(reader);
            return Delta::Other;
        };
        if kind != Patched::Services {
            self.previous = Some(Previous::Undo {
                touched,
                before,
                kind,
            });
            return Delta::Other;
        }
        self.previous = Some(Previous::Undo {
            touched,
            before: before.clone(),
            kind,
        });
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

    /// Patches the configuration for the resources of `kind` that went (`before`) and came
    /// (`after`) in the `touched` files, if those that came are valid on their own, duplicate
    /// nothing and refer only to what the configuration has (policies to their tier,
    /// endpoints to their profiles; Services and EndpointSlices refer to nothing); false
    /// (nothing patched) otherwise.
    fn patch(
        &mut self,
        kind: Patched,
        touched: &BTreeSet<PathBuf>,
        before: &[load::Loaded],
        after: &[load::Loaded],
    ) -> bool {
        let Ok(cfg) = &self.config else {
            return false;
        };
        let accepted = match kind {
            Patched::Services => after.iter().all(load::valid_alone),
            Patched::Policies => {
                let tier_known = |l: &load::Loaded| match load::policy_tier(l) {
                    None | Some("default") => true,
                    Some(t) => cfg.tiers.iter().any(|i| i.value.metadata.name == t),
                };
                after
                    .iter()
                    .all(|l| load::valid_policy(l).is_some() && tier_known(l))
            }
            Patched::Endpoints => {
                let profiles: BTreeSet<&str> = cfg
                    .profiles
                    .iter()
                    .map(|p| p.value.metadata.name.as_str())
                    .collect();
                let known = |l: &load::Loaded| {
                    load::profiles_named(l)
                        .iter()
                        .all(|p| profiles.contains(p.as_str()))
                };
                after.iter().all(|l| load::valid_alone(l) && known(l))
            }
        };
        if !accepted || !self.recount(before, after) {
            return false;
        }
        let Ok(cfg) = self.config.as_mut().map(Arc::make_mut) else {
            return false;
        };
        kind.splice(cfg, touched, after);
        true
    }

    /// Counts the ids of resources that went (`before`) and came (`after`) into the book, if
    /// no id is then held twice (a duplicate, which only a full build reports as `load_dir`
    /// does) and the configuration is valid; false, and the book untouched, otherwise.
    fn recount(&mut self, before: &[load::Loaded], after: &[load::Loaded]) -> bool {
        // Counted without copying the book: what stays, less what went, plus what came.
        let mut change: BTreeMap<u64, i64> = BTreeMap::new();
        for l in before {
            *change.entry(id_key(l)).or_default() -= 1;
        }
        for l in after {
            *change.entry(id_key(l)).or_default() += 1;
        }
        let duplicate = change
            .iter()
            .any(|(id, d)| self.ids.get(id).copied().unwrap_or(0) as i64 + d > 1);
        if duplicate || self.config.is_err() {
            return false;
        }
        for (id, d) in change {
            let n = self.ids.entry(id).or_default();
            *n = (*n as i64 + d) as u32;
            if *n == 0 {
                self.ids.remove(&id);
            }
        }
        true
    }

    /// Builds the configuration from every parsed file, with all of `load_dir`'s checks.
    fn rebuild(&mut self, reader: &Reader) {
        let files: Vec<&FileText> = self.files.values().map(|c| &c.file).collect();
        let mut out = Out::default();
        out.loaded
            .reserve(self.files.values().map(|c| c.out.loaded.len()).sum());
        for (i, c) in self.files.values().enumerate() {
            let mut o = c.out.clone();
            for l in &mut o.loaded {
                l.at.file = i;
            }
            out.merge([o]);
        }
        let mut ids: BTreeMap<u64, u32> = BTreeMap::new();
        for l in &out.loaded {
            *ids.entry(id_key(l)).or_default() += 1;
        }
        let digests: Vec<Option<Digest>> = self.files.values().map(|c| c.digest).collect();
        self.config = load::finish(&Texts::shed(&files, reader, &digests), out).map(Arc::new);
        self.ids = if self.config.is_ok() {
            ids
        } else {
            BTreeMap::new()
        };
    }
}

/// A resource's id as the book of ids counts it: a hash, not the id's strings (a copy of
/// every resource's name was 10 MB at 100,000 endpoints). Two ids with one hash would look
/// like a duplicate, and a duplicate only sends a change to the full build, which finds
/// duplicates by the ids themselves: a collision costs time, never a wrong configuration.
fn id_key(l: &load::Loaded) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    load::resource_id(l).hash(&mut h);
    h.finish()
}

/// Takes the Services and EndpointSlices of the `touched` files out of `cfg` and puts
/// `items` (what those files hold now, or held before) in, in load order.
fn splice_services(cfg: &mut Config, touched: &BTreeSet<PathBuf>, items: &[load::Loaded]) {
    remove_files(&mut cfg.services, touched, |i| &i.source.file);
    remove_files(&mut cfg.endpoint_slices, touched, |i| &i.source.file);
    for l in items {
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
}

/// Takes the policies of the `touched` files out of `cfg` (with their compiled forms and
/// warnings) and puts `items` in, in load order; `items` passed their own checks.
fn splice_policies(cfg: &mut Config, touched: &BTreeSet<PathBuf>, items: &[load::Loaded]) {
    remove_files(&mut cfg.network_policies, touched, |i| &i.source.file);
    remove_files(&mut cfg.global_network_policies, touched, |i| {
        &i.source.file
    });
    remove_files(&mut cfg.k8s_network_policies, touched, |i| &i.source.file);
    remove_files(&mut cfg.policies, touched, |p| &p.source.file);
    remove_files(&mut cfg.warnings, touched, |d| &d.file);
    for l in items {
        let Some((policy, warnings)) = load::valid_policy(l) else {
            continue;
        };
        let source = l.source.clone();
        match &l.value {
            AnyResource::NetworkPolicy(p) => insert_ordered(
                &mut cfg.network_policies,
                Item {
                    source,
                    value: p.clone(),
                },
            ),
            AnyResource::GlobalNetworkPolicy(p) => insert_ordered(
                &mut cfg.global_network_policies,
                Item {
                    source,
                    value: p.clone(),
                },
            ),
            AnyResource::KubernetesNetworkPolicy(p) => insert_ordered(
                &mut cfg.k8s_network_policies,
                Item {
                    source,
                    value: p.clone(),
                },
            ),
            _ => unreachable!("checked: policies only"),
        }
        let at = cfg
            .policies
            .partition_point(|p| p.source.load_order() < l.source.load_order());
        cfg.policies.insert(at, policy.clone());
        cfg.warnings.extend(warnings.iter().cloned());
    }
    let mut w = Diagnostics(std::mem::take(&mut cfg.warnings));
    w.sort();
    cfg.warnings = w.0;
}

/// Takes the endpoints, nodes and network sets of the `touched` files out of `cfg` (with
/// their warnings) and puts `items` in, in load order; `items` passed their own checks.
fn splice_endpoints(cfg: &mut Config, touched: &BTreeSet<PathBuf>, items: &[load::Loaded]) {
    remove_files(&mut cfg.workload_endpoints, touched, |i| &i.source.file);
    remove_files(&mut cfg.host_endpoints, touched, |i| &i.source.file);
    remove_files(&mut cfg.nodes, touched, |i| &i.source.file);
    remove_files(&mut cfg.network_sets, touched, |i| &i.source.file);
    remove_files(&mut cfg.global_network_sets, touched, |i| &i.source.file);
    remove_files(&mut cfg.warnings, touched, |d| &d.file);
    // Sorted into lists of their kinds as a build does, then merged into the configuration's.
    let mut came = Config::default();
    for l in items {
        debug_assert!(Patched::Endpoints.kinds().contains(&l.kind), "{:?}", l.kind);
        load::push(&mut came, l.source.clone(), l.value.clone());
        cfg.warnings.extend(load::warnings_of(l).iter().cloned());
    }
    merge_ordered(&mut cfg.workload_endpoints, came.workload_endpoints);
    merge_ordered(&mut cfg.host_endpoints, came.host_endpoints);
    merge_ordered(&mut cfg.nodes, came.nodes);
    merge_ordered(&mut cfg.network_sets, came.network_sets);
    merge_ordered(&mut cfg.global_network_sets, came.global_network_sets);
    let mut w = Diagnostics(std::mem::take(&mut cfg.warnings));
    w.sort();
    cfg.warnings = w.0;
}

/// Puts `items` into `v`, both in load order or `items` in any order, in one pass over `v`
/// (tens of thousands of endpoints, a hundred new ones: one insert each would move them all
/// a hundred times).
fn merge_ordered<T>(v: &mut Vec<Item<T>>, mut items: Vec<Item<T>>) {
    if items.is_empty() {
        return;
    }
    items.sort_by(|a, b| a.source.load_order().cmp(&b.source.load_order()));
    let old = std::mem::take(v);
    v.reserve(old.len() + items.len());
    let mut new = items.into_iter().peekable();
    for item in old {
        while let Some(n) = new.next_if(|n| n.source.load_order() < item.source.load_order()) {
            v.push(n);
        }
        v.push(item);
    }
    v.extend(new);
}

/// Removes from `v`, which is in load order (by the bytes of each element's `file`), the
/// elements of the `touched` files: a search for each file's run rather than a look at every
/// element, of which there are tens of thousands.
fn remove_files<T>(v: &mut Vec<T>, touched: &BTreeSet<PathBuf>, file: impl Fn(&T) -> &Path) {
    for t in touched {
        let t = t.as_os_str().as_bytes();
        let lo = v.partition_point(|e| file(e).as_os_str().as_bytes() < t);
        let n = v[lo..].partition_point(|e| file(e).as_os_str().as_bytes() == t);
        v.drain(lo..lo + n);
    }
}

fn insert_ordered<T>(v: &mut Vec<Item<T>>, item: Item<T>) {
    let at = v.partition_point(|i| i.source.load_order() < item.source.load_order());
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
    fn a_refused_file_stays_a_problem_until_it_changes_or_goes() {
        let dir = temp("refused");
        let d0 = &dir.0;
        let outside = temp("refused-outside");
        std::fs::write(outside.0.join("secret.yaml"), service("s", "10.96.0.9")).unwrap();
        std::fs::write(d0.join("a.yaml"), service("a", "10.96.0.1")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(d0.join("b.yaml"))
            .status()
            .expect("mkfifo");
        assert!(fifo.success());
        let mut docs = Documents::read_dir(d0);
        let e = docs.config().expect_err("a FIFO is refused");
        assert!(e.to_string().contains("b.yaml:1:1: this is a FIFO"), "{e}");
        assert_eq!(current(&docs), fresh(d0));

        // Another file changes: the refusal is still one of the directory's problems.
        std::fs::write(d0.join("c.yaml"), service("c", "10.96.0.3")).unwrap();
        assert_eq!(docs.reread(&["c.yaml"]), Delta::Other);
        assert_eq!(current(&docs), fresh(d0));
        assert!(docs.config().is_err());
        assert_eq!(docs.rescan(), Delta::Unchanged);

        // It goes; a link out comes, and a file under a link to a directory (not walked).
        std::fs::remove_file(d0.join("b.yaml")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("secret.yaml"), d0.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink(&outside.0, d0.join("linked")).unwrap();
        docs.reread(&["b.yaml", "out.yaml", "linked/secret.yaml"]);
        let e = docs.config().expect_err("a link out is refused");
        assert!(
            e.to_string().contains("out.yaml:1:1: a symbolic link to"),
            "{e}"
        );
        assert!(!e.to_string().contains("b.yaml"), "{e}");
        assert_eq!(current(&docs), fresh(d0));
        assert_eq!(docs.rescan(), Delta::Unchanged);

        // Followed when the options allow it, at every read.
        let follow = ReadOptions {
            follow_outside_links: true,
        };
        let mut docs = Documents::read_dir_with(d0, follow);
        assert_eq!(docs.config().map(|c| c.services.len()), Ok(3));
        std::fs::write(outside.0.join("secret.yaml"), service("t", "10.96.0.8")).unwrap();
        assert!(matches!(docs.reread(&["out.yaml"]), Delta::Services { .. }));
        assert!(docs
            .config()
            .unwrap()
            .services
            .iter()
            .any(|s| s.value.metadata.name == "t"));
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

    fn k8s_policy(name: &str, port: u16) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - ports: [{{protocol: TCP, port: {port}}}]\n")
    }

    /// A Calico policy in `tier` (named `tier.name`, as Calico wants), without a namespace
    /// (which is a warning: it is taken to be in "default").
    fn calico_policy(tier: &str, name: &str, port: u16) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: {tier}.{name}}}\nspec:\n  tier: {tier}\n  order: 10\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {{ports: [{port}]}}\n")
    }

    /// What a policy change touches, as text, for comparing with a fresh load.
    fn policies(c: Result<&Config, String>) -> String {
        match c {
            Ok(c) => format!(
                "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
                c.k8s_network_policies,
                c.network_policies,
                c.global_network_policies,
                c.policies,
                c.warnings
            ),
            Err(e) => e,
        }
    }

    fn fresh_policies(dir: &Path) -> String {
        let c = crate::load_dir(dir).map_err(|e| e.to_string());
        policies(c.as_ref().map_err(|e| e.clone()))
    }

    fn current_policies(d: &Documents) -> String {
        policies(d.config().map(|c| &**c).map_err(|e| e.to_string()))
    }

    #[test]
    fn policy_changes_patch_the_config_as_a_fresh_load_would_read_it() {
        let dir = temp("policies");
        let d0 = &dir.0;
        std::fs::write(d0.join("a.yaml"), k8s_policy("a", 80)).unwrap();
        std::fs::write(
            d0.join("c.yaml"),
            k8s_policy("c", 82) + "---\n" + &calico_policy("default", "c", 83),
        )
        .unwrap();
        std::fs::write(
            d0.join("t.yaml"),
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: ops}\nspec: {order: 50}\n",
        )
        .unwrap();
        let mut docs = Documents::read_dir(d0);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        let before = Arc::as_ptr(docs.config().unwrap());

        // A new file between two others (a policy in a tier the files define), an edit, a
        // removal: each patched, in load order, with its warnings.
        std::fs::write(
            d0.join("b.yaml"),
            calico_policy("ops", "b", 81) + "---\n" + &k8s_policy("b", 81),
        )
        .unwrap();
        assert_eq!(docs.reread(&["b.yaml"]), Delta::Other);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        assert_eq!(
            docs.config().unwrap().warnings.len(),
            2,
            "the two Calico policies without a namespace"
        );
        std::fs::write(d0.join("a.yaml"), k8s_policy("a", 8080)).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        std::fs::remove_file(d0.join("c.yaml")).unwrap();
        assert_eq!(docs.reread(&["c.yaml"]), Delta::Other);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        assert_eq!(
            Arc::as_ptr(docs.config().unwrap()),
            before,
            "patched in place, not built again"
        );

        // A tier the files lack is a problem only a full build places: built again, and
        // reported as load_dir reports it.
        std::fs::write(d0.join("a.yaml"), calico_policy("nowhere", "a", 80)).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert!(docs.config().is_err());
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        // So is a duplicate.
        std::fs::write(d0.join("a.yaml"), k8s_policy("b", 80)).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert!(docs.config().is_err());
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        std::fs::write(d0.join("a.yaml"), k8s_policy("a", 80)).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        // And after those full builds, patches again.
        let before = Arc::as_ptr(docs.config().unwrap());
        std::fs::write(d0.join("a.yaml"), k8s_policy("a", 81)).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_policies(&docs), fresh_policies(d0));
        assert_eq!(Arc::as_ptr(docs.config().unwrap()), before);
    }

    /// Everything a patch or a build can change, as text.
    fn whole(c: &Config) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            c.services,
            c.endpoint_slices,
            c.profiles,
            c.k8s_network_policies,
            c.network_policies,
            c.policies,
            c.warnings,
            c.workload_endpoints,
            c.host_endpoints,
            c.nodes,
            c.network_sets,
            c.global_network_sets,
        )
    }

    fn wep(name: &str, profile: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{node: n1, interfaceName: cali-{name}, ipNetworks: [10.0.0.1/32], profiles: [{profile}]}}\n")
    }

    fn node(name: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{bgp: {{ipv4Address: 192.168.0.1/24}}}}\n")
    }

    /// The configuration as `load_dir` makes it of the files, or its problems.
    fn fresh_whole(dir: &Path) -> String {
        crate::load_dir(dir).map_or_else(|e| e.to_string(), |c| whole(&c))
    }

    fn current_whole(d: &Documents) -> String {
        d.config().map_or_else(|e| e.to_string(), |c| whole(c))
    }

    #[test]
    fn endpoint_changes_patch_the_config_as_a_fresh_load_would_read_it() {
        let dir = temp("endpoints");
        let d0 = &dir.0;
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .unwrap();
        std::fs::write(
            d0.join("a.yaml"),
            wep("a", "kns.shop") + "---\n" + &node("n1"),
        )
        .unwrap();
        std::fs::write(d0.join("c.yaml"), wep("c", "kns.shop")).unwrap();
        let mut docs = Documents::read_dir(d0);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        let before = Arc::as_ptr(docs.config().unwrap());

        // A new file between two others (endpoints and a node), an edit, a removal: each
        // patched in place, in load order.
        std::fs::write(
            d0.join("b.yaml"),
            node("n2") + "---\n" + &wep("b2", "kns.shop") + "---\n" + &wep("b1", "kns.shop"),
        )
        .unwrap();
        assert_eq!(docs.reread(&["b.yaml"]), Delta::Other);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        // A network set without a namespace comes with its warning, and goes with it.
        let set = "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s}\nspec: {nets: [10.9.0.0/16]}\n";
        std::fs::write(d0.join("bb.yaml"), set).unwrap();
        assert_eq!(docs.reread(&["bb.yaml"]), Delta::Other);
        assert_eq!(docs.config().unwrap().warnings.len(), 1);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        std::fs::remove_file(d0.join("bb.yaml")).unwrap();
        assert_eq!(docs.reread(&["bb.yaml"]), Delta::Other);
        assert!(docs.config().unwrap().warnings.is_empty());
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        std::fs::write(d0.join("a.yaml"), wep("a", "projectcalico-default-allow")).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        std::fs::remove_file(d0.join("c.yaml")).unwrap();
        assert_eq!(docs.reread(&["c.yaml"]), Delta::Other);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        assert_eq!(
            Arc::as_ptr(docs.config().unwrap()),
            before,
            "patched in place, not built again"
        );

        // A profile the files lack, and a duplicate, are problems only a full build places:
        // built again, and reported as load_dir reports them.
        std::fs::write(d0.join("a.yaml"), wep("a", "kns.elsewhere")).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert!(docs.config().is_err());
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        std::fs::write(d0.join("a.yaml"), wep("b1", "kns.shop")).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert!(docs.config().is_err());
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        std::fs::write(d0.join("a.yaml"), wep("a", "kns.shop")).unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        // And after those full builds, patches again.
        let before = Arc::as_ptr(docs.config().unwrap());
        std::fs::write(
            d0.join("a.yaml"),
            wep("a", "kns.shop") + "---\n" + &node("n3"),
        )
        .unwrap();
        assert_eq!(docs.reread(&["a.yaml"]), Delta::Other);
        assert_eq!(current_whole(&docs), fresh_whole(d0));
        assert_eq!(Arc::as_ptr(docs.config().unwrap()), before);
    }

    #[test]
    fn the_configuration_before_the_last_change_is_had_back_until_forgotten() {
        let dir = temp("previous");
        let d0 = &dir.0;
        std::fs::write(d0.join("a.yaml"), service("a", "10.96.0.1")).unwrap();
        std::fs::write(d0.join("p.yaml"), calico_policy("default", "p", 80)).unwrap();
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .unwrap();
        let mut docs = Documents::read_dir(d0);
        assert!(docs.previous().is_none(), "nothing changed yet");

        // A patched service, a patched policy, a patched (new) endpoint file, a built-again
        // namespace, and a change to files that do not validate: each time the configuration
        // before it comes back.
        let changes: [(&str, String); 5] = [
            (
                "a.yaml",
                service("a", "10.96.0.9") + "---\n" + &slice("a", "10.0.0.1"),
            ),
            ("p.yaml", calico_policy("default", "p", 81)),
            ("w.yaml", wep("w", "kns.shop") + "---\n" + &node("n1")),
            (
                "ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {a: b}}\n"
                    .to_string(),
            ),
            ("p.yaml", calico_policy("nowhere", "p", 81)),
        ];
        for (file, text) in changes {
            let was = whole(docs.config().unwrap());
            std::fs::write(d0.join(file), text).unwrap();
            assert_ne!(docs.reread(&[file]), Delta::Unchanged);
            assert_eq!(whole(&docs.previous().expect("kept")), was, "{file}");
            if docs.config().is_ok() {
                assert_ne!(whole(docs.config().unwrap()), was, "{file} changed it");
            }
        }
        assert!(docs.forget_previous().is_some(), "the last was built again");
        assert!(docs.previous().is_none());
    }

    /// Parsed files let their text go. A problem found across resources later (a profile
    /// whose namespace went) is placed by reading the file again, exactly where `load_dir`
    /// places it; if the file changed meanwhile (its new read not yet seen), at the resource.
    #[test]
    fn problems_in_files_whose_text_was_let_go_are_placed_as_load_dir_places_them() {
        let dir = temp("shed");
        let d0 = &dir.0;
        let wep = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: shop}\nspec:\n  node: n1\n  interfaceName: cali1\n  ipNetworks: [10.0.0.1/32]\n  profiles: [kns.shop]\n";
        std::fs::write(d0.join("w.yaml"), format!("# a comment\n{wep}")).unwrap();
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .unwrap();
        let mut docs = Documents::read_dir(d0);
        assert!(docs.config().is_ok());
        assert!(
            docs.files.values().all(|c| c.file.text.is_empty()),
            "the texts were let go"
        );

        std::fs::remove_file(d0.join("ns.yaml")).unwrap();
        assert_eq!(docs.reread(&["ns.yaml"]), Delta::Other);
        let placed = docs.config().unwrap_err().to_string();
        assert_eq!(placed, crate::load_dir(d0).unwrap_err().to_string());
        assert!(placed.contains("/w.yaml:9:14: "), "{placed}");

        // The file changes, and the namespace comes and goes again before its read is seen.
        std::fs::write(d0.join("w.yaml"), format!("# a comment\n\n\n{wep}")).unwrap();
        std::fs::write(
            d0.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .unwrap();
        assert_eq!(docs.reread(&["ns.yaml"]), Delta::Other);
        assert!(docs.config().is_ok());
        std::fs::remove_file(d0.join("ns.yaml")).unwrap();
        assert_eq!(docs.reread(&["ns.yaml"]), Delta::Other);
        let at_resource = docs.config().unwrap_err().to_string();
        assert!(
            at_resource.contains("/w.yaml:2:1: WorkloadEndpoint shop/w: spec.profiles[0]: profile \"kns.shop\" does not exist"),
            "{at_resource}"
        );
        // Once the new read is seen, the place is the file's again.
        assert_eq!(docs.reread(&["w.yaml"]), Delta::Other);
        assert_eq!(
            docs.config().unwrap_err().to_string(),
            crate::load_dir(d0).unwrap_err().to_string()
        );
    }
}
