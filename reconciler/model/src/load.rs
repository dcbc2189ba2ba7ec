//! Reading a configuration directory into a `Config`.
//!
//! 1. Files: every `*.yaml`/`*.yml` under the directory, recursively, in byte order of the
//!    relative path; names starting with '.' are skipped (a GitOps checkout's `.git`, a
//!    ConfigMap mount's `..data`); symlinked files are followed while they stay inside the
//!    directory (`ReadOptions` may allow more), symlinked directories are not (a mount's
//!    `..data` link is skipped by name anyway, and not following them rules out loops). Only
//!    regular files are read, at most `MAX_FILE_BYTES` of each; anything else named like a
//!    YAML file (a FIFO, a device, a link out) is a problem of its own, with nothing read.
//! 2. Documents: a header pass reads apiVersion, kind and names and where each document starts;
//!    then each document is deserialized into the type of its kind (`kind: List` items each
//!    into their own type).
//! 3. Resources: each is checked on its own (`validate`, `ir`), then against the others
//!    (duplicates, references to profiles and tiers).
//!
//! Every problem of every step is collected; any problem means no `Config`. What a broken file
//! costs is bounded as well: the positions of its problems are found within a budget
//! (`yaml::Locator`), and past `MAX_PROBLEMS_PER_FILE` a file's problems are counted, not
//! listed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::aliases;
use crate::config::{Config, DEFAULT_ALLOW_PROFILE, NAMESPACE_PROFILE_PREFIX};
use crate::diag::{Diagnostic, Diagnostics, Item, Kind, ResourceId, Source};
use crate::fastyaml;
use crate::ir;
use crate::problems::Problems;
use crate::resources::calico::{
    Action, EntityRule, FelixConfiguration, GlobalNetworkPolicy, GlobalNetworkSet, HostEndpoint,
    IPPool, NetworkPolicy, NetworkSet, Node, Profile, ProfileSpec, Rule, Tier, WorkloadEndpoint,
};
use crate::resources::k8s::{EndpointSlice, KubernetesNetworkPolicy, Namespace, Service};
use crate::resources::meta::ObjectMeta;
use crate::selector::{NAMESPACE_LABEL_PREFIX, NAME_LABEL};
use crate::validate;
use crate::yaml::{self, DocHeader, Header, Locator, Path, Pos};

/// Lists every kind with its Rust type and its `Config` field, for the code below that has to
/// handle each kind alike.
macro_rules! with_kinds {
    ($m:ident) => {
        $m! {
            WorkloadEndpoint => WorkloadEndpoint, workload_endpoints;
            HostEndpoint => HostEndpoint, host_endpoints;
            NetworkPolicy => NetworkPolicy, network_policies;
            GlobalNetworkPolicy => GlobalNetworkPolicy, global_network_policies;
            Tier => Tier, tiers;
            Profile => Profile, profiles;
            NetworkSet => NetworkSet, network_sets;
            GlobalNetworkSet => GlobalNetworkSet, global_network_sets;
            FelixConfiguration => FelixConfiguration, felix_configurations;
            Node => Node, nodes;
            IPPool => IPPool, ip_pools;
            KubernetesNetworkPolicy => KubernetesNetworkPolicy, k8s_network_policies;
            Namespace => Namespace, namespaces;
            Service => Service, services;
            EndpointSlice => EndpointSlice, endpoint_slices;
        }
    };
}

macro_rules! any_resource {
    ($($kind:ident => $ty:ident, $field:ident;)*) => {
        /// A resource of any kind.
        #[derive(Debug, Clone)]
        pub(crate) enum AnyResource {
            $($kind(Arc<$ty>),)*
        }

        impl AnyResource {
            pub(crate) fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(AnyResource::$kind(r) => &r.metadata,)*
                }
            }

            /// apiVersion and kind as written.
            fn type_meta(&self) -> (&str, &str) {
                match self {
                    $(AnyResource::$kind(r) => (&r.api_version, &r.kind),)*
                }
            }

            /// The metadata to change: the resource is copied first if it is shared.
            pub(crate) fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(AnyResource::$kind(r) => &mut Arc::make_mut(r).metadata,)*
                }
            }
        }

        /// Deserializes a resource of a known kind.
        fn parse_kind<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Result<AnyResource, D::Error> {
            match kind {
                $(Kind::$kind => $ty::deserialize(d).map(|r| AnyResource::$kind(Arc::new(r))),)*
            }
        }

        /// Moves a resource into its list of the configuration.
        pub(crate) fn push(config: &mut Config, source: Source, value: AnyResource) {
            match value {
                $(AnyResource::$kind(value) => config.$field.push(Item { source, value }),)*
            }
        }
    };
}

with_kinds!(any_resource);

/// Reads and checks every resource under `dir`, refusing links that lead out of it.
pub fn load_dir(dir: &FsPath) -> Result<Config, Diagnostics> {
    load_dir_with(dir, ReadOptions::default())
}

/// `load_dir`, reading files as `opts` says.
pub fn load_dir_with(dir: &FsPath, opts: ReadOptions) -> Result<Config, Diagnostics> {
    // One file (`weft validate FILE`): read as the only file of its directory.
    let one = std::fs::metadata(dir).is_ok_and(|m| m.is_file());
    let reader = match dir.parent().filter(|_| one) {
        Some(parent) => Reader::new(parent, opts),
        None => Reader::new(dir, opts),
    };
    let mut out = Out::default();
    let paths = match if one {
        Ok(vec![dir.to_path_buf()])
    } else {
        reader.find_files()
    } {
        Ok(p) => p,
        Err(d) => return Err(Diagnostics(vec![d])),
    };
    let mut files = Vec::new();
    let mut digests = Vec::new();
    let parsed = read_and_parse(&reader, paths);
    // One list of every resource, made at its size: grown by doubling, the copies of 100,000
    // were a tenth of loading's peak.
    out.loaded.reserve(
        parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| p.out.loaded.len())
            .sum(),
    );
    for parsed in parsed {
        match parsed {
            Ok(mut p) => {
                for l in &mut p.out.loaded {
                    l.at.file = files.len();
                }
                out.merge([p.out]);
                files.push(p.file);
                digests.push(p.digest);
            }
            Err(d) => out.diags.push(d),
        }
    }
    let refs: Vec<&FileText> = files.iter().collect();
    finish(&Texts::shed(&refs, &reader, &digests), out)
}

/// A file read and parsed on its own (its resources judged, as file 0), with its text let go
/// unless it had to be recovered from a syntax error (`FileText::shed`).
pub(crate) struct Parsed {
    pub(crate) file: FileText,
    pub(crate) digest: Option<Digest>,
    pub(crate) out: Out,
}

/// Reads and parses `paths` on every core (at 20,000 files, opening and reading them is a third
/// of a load), each file's text let go as soon as it is parsed: a load holds one file's text
/// per thread, not the whole directory's (34 MB at 10,000 services), and the pages of one text
/// are taken again by the next.
pub(crate) fn read_and_parse(
    reader: &Reader,
    paths: Vec<PathBuf>,
) -> Vec<Result<Parsed, Diagnostic>> {
    let mut slots: Vec<Option<PathBuf>> = paths.into_iter().map(Some).collect();
    on_threads(&mut slots, |chunk| {
        chunk
            .iter_mut()
            .map(|p| {
                let mut file = reader.read_file(p.take().expect("each path is read once"))?;
                let mut out = Out::default();
                load_file(0, &file, &mut out);
                let digest = file.shed();
                Ok(Parsed { file, digest, out })
            })
            .collect()
    })
}

/// Loads a set of in-memory files as if they were in a directory, in the order given. For
/// tests and tools that hold YAML already.
pub fn load_texts<P: Into<PathBuf>, T: Into<String>>(
    texts: impl IntoIterator<Item = (P, T)>,
) -> Result<Config, Diagnostics> {
    let files: Vec<FileText> = texts
        .into_iter()
        .map(|(path, text)| FileText::new(path.into(), text.into()))
        .collect();
    let refs: Vec<&FileText> = files.iter().collect();
    let mut out = Out::default();
    out.merge(parse_files(&refs));
    finish(&Texts::whole(&refs), out)
}

/// Splits `items` into one run per core (fewer when there are few) and maps each run with `f`
/// on a thread of its own; the results in order.
pub(crate) fn on_threads<T: Send, R: Send>(
    items: &mut [T],
    f: impl Fn(&mut [T]) -> Vec<R> + Sync,
) -> Vec<R> {
    // Below this many items per thread, a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return f(items);
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks_mut(per);
        // The calling thread takes the first chunk itself: one thread fewer, and one malloc
        // arena fewer, whose freed temporaries would otherwise stay in the process's RSS.
        let first = chunks.next().expect("at least one chunk");
        let handles: Vec<_> = chunks.map(|chunk| scope.spawn(move || f(chunk))).collect();
        let mut out = f(first);
        for h in handles {
            out.extend(h.join().expect("a loading thread panicked"));
        }
        out
    })
}

/// Parses each file on its own (documents, then resources), on every core the machine has: a
/// file's documents do not depend on another file's, and YAML parsing is most of a load's
/// time. One `Out` per file, in the order given; file `i` is `files[i]`.
pub(crate) fn parse_files(files: &[&FileText]) -> Vec<Out> {
    let mut indexed: Vec<(usize, &FileText)> = files.iter().copied().enumerate().collect();
    on_threads(&mut indexed, |chunk| {
        chunk
            .iter()
            .map(|&(i, f)| {
                let mut out = Out::default();
                load_file(i, f, &mut out);
                out
            })
            .collect()
    })
}

/// The most problems listed for one file: a file with more is broken throughout (a generator
/// gone wrong, or a hostile commit), and thousands of lines help nobody while they fill the
/// log and the status.
pub(crate) const MAX_PROBLEMS_PER_FILE: usize = 100;

/// The most a configuration file may hold. A Kubernetes object is at most about 1.5 MiB (what
/// etcd stores), and a file of thousands of them is still a few MiB; the cap keeps a file that
/// is not configuration (a log, a disk image) from being read whole into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// How the loader treats what it finds in the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read files that symbolic links lead to outside the directory. Off by default: the
    /// directory is often a checkout that a commit writes, and a commit can hold a link to
    /// any file the reader (root, for the daemon) may read, whose content would then show in
    /// the diagnostics.
    pub follow_outside_links: bool,
}

/// Reads a configuration directory's files: only regular files (a FIFO would block the read
/// for ever, a device would never end), at most `MAX_FILE_BYTES` each, and through a symbolic
/// link only when it stays inside the directory (unless the options say otherwise). Whatever
/// is refused is a diagnostic naming the file, and nothing of its content is read.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    dir: PathBuf,
    /// The directory with every link resolved, that links must stay under; None if it
    /// cannot be resolved (then every link is refused).
    root: Option<PathBuf>,
    opts: ReadOptions,
    /// The patterns of `<dir>/.weftignore`: files (and directories) not read.
    ignore: Vec<String>,
}

/// The file in a configuration directory whose lines name what weft does not read, as
/// `.gitignore` lines do (`#` comments; a pattern without `/` matches a name at any depth,
/// one with `/` the path from the directory; `*` and `?` within a name, `**` across
/// directories; a trailing `/` matches directories only): for a repository that holds other
/// YAML too, such as CI files or a Kustomization.
pub const IGNORE_FILE: &str = ".weftignore";

fn ignore_patterns(dir: &FsPath) -> Vec<String> {
    std::fs::read_to_string(dir.join(IGNORE_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Whether the path `rel` (relative to the directory, '/'-separated) matches `.weftignore`
/// pattern `pat`; `is_dir` says whether `rel` is a directory.
fn ignored_by(pat: &str, rel: &str, is_dir: bool) -> bool {
    let (pat, dir_only) = match pat.strip_suffix('/') {
        Some(p) => (p, true),
        None => (pat, false),
    };
    if dir_only && !is_dir {
        return false;
    }
    // A slash anywhere but at the end anchors the pattern at the directory.
    let anchored = pat.contains('/');
    let pat = pat.strip_prefix('/').unwrap_or(pat);
    if anchored {
        glob(pat.as_bytes(), rel.as_bytes())
    } else {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        glob(pat.as_bytes(), name.as_bytes())
    }
}

#[cfg(test)]
pub(crate) fn ignored_by_for_tests(pat: &str, rel: &str, is_dir: bool) -> bool {
    ignored_by(pat, rel, is_dir)
}

/// Glob matching: `*` any run within a name, `**` any run across names, `?` one character.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some(b'*') => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => s.first().is_some_and(|&c| c != b'/') && glob(&p[1..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// What kind of file a non-regular one is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

fn file_diag(path: &FsPath, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        resource: None,
        message,
    }
}

impl Reader {
    /// A reader of `dir` as it resolves now (a directory swapped by a symlink flip is
    /// resolved again by a new reader).
    pub(crate) fn new(dir: &FsPath, opts: ReadOptions) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            root: dir.canonicalize().ok(),
            opts,
            ignore: ignore_patterns(dir),
        }
    }

    /// Whether `.weftignore` says `rel` is not read.
    fn ignored(&self, rel: &FsPath, is_dir: bool) -> bool {
        let rel = rel.to_string_lossy();
        self.ignore.iter().any(|p| ignored_by(p, &rel, is_dir))
    }

    /// Reads one file (a path `find_files` listed) as UTF-8 text, or says why not.
    pub(crate) fn read_file(&self, path: PathBuf) -> Result<FileText, Diagnostic> {
        let cannot = |e: std::io::Error| file_diag(&path, format!("cannot read the file: {e}"));
        let meta = std::fs::symlink_metadata(&path).map_err(cannot)?;
        let open_path = if meta.file_type().is_symlink() {
            let target = path
                .canonicalize()
                .map_err(|e| file_diag(&path, format!("cannot follow the symbolic link: {e}")))?;
            let inside = self.root.as_ref().is_some_and(|r| target.starts_with(r));
            if !inside && !self.opts.follow_outside_links {
                return Err(file_diag(
                    &path,
                    format!(
                        "a symbolic link to {}, outside {}: weft does not follow links out of the configuration directory; copy the file in, or run weft with --follow-outside-links",
                        target.display(),
                        self.dir.display()
                    ),
                ));
            }
            target
        } else {
            path.clone()
        };
        // Looked at before opening: opening a FIFO waits for a writer, opening a device can
        // do things.
        let meta = std::fs::metadata(&open_path).map_err(cannot)?;
        self.regular(&path, &meta)?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            // Should the file have been swapped since it was looked at: a FIFO does not block
            // the open, and a link is not followed.
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
                .open(&open_path)
                .map_err(cannot)?
        };
        self.regular(&path, &file.metadata().map_err(cannot)?)?;
        let mut bytes = Vec::new();
        {
            use std::io::Read;
            file.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(cannot)?;
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(&path));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(FileText::new(path, text)),
            Err(e) => Err(file_diag(
                &path,
                format!(
                    "the file is not UTF-8 text (byte {} is not); save it as UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            )),
        }
    }

    /// Refuses anything but a regular file of at most `MAX_FILE_BYTES`.
    fn regular(&self, path: &FsPath, meta: &std::fs::Metadata) -> Result<(), Diagnostic> {
        if !meta.file_type().is_file() {
            return Err(file_diag(
                path,
                format!(
                    "this is {}, not a regular file, and weft reads only regular files; remove it, or rename it so that it does not end in .yaml or .yml",
                    file_kind(meta.file_type())
                ),
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large(path));
        }
        Ok(())
    }

    /// The YAML files under the directory, as the directory joined with their relative path,
    /// in byte order of the relative path. Every name ending in .yaml or .yml is listed,
    /// whatever it is, so that `read_file` can refuse what is not a regular file by name;
    /// only links that lead to a directory or nowhere are left out.
    pub(crate) fn find_files(&self) -> Result<Vec<PathBuf>, Diagnostic> {
        use std::os::unix::ffi::OsStrExt;
        let dir = &self.dir;
        let mut found: Vec<PathBuf> = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let here = if rel.as_os_str().is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(&rel)
            };
            let entries = std::fs::read_dir(&here).map_err(|e| io_diag(&here, &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_diag(&here, &e))?;
                let name = entry.file_name();
                if name.as_bytes().first() == Some(&b'.') {
                    continue;
                }
                let rel_path = rel.join(&name);
                // The entry itself, not what a link leads to: directories that are links are
                // not walked.
                let file_type = entry
                    .file_type()
                    .map_err(|e| io_diag(&dir.join(&rel_path), &e))?;
                if file_type.is_dir() {
                    if !self.ignored(&rel_path, true) {
                        stack.push(rel_path);
                    }
                    continue;
                }
                if !is_yaml_name(name.as_bytes()) || self.ignored(&rel_path, false) {
                    continue;
                }
                if file_type.is_symlink() && !leads_to_a_file(&dir.join(&rel_path)) {
                    continue;
                }
                found.push(rel_path);
            }
        }
        found.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        Ok(found.into_iter().map(|rel| dir.join(rel)).collect())
    }

    /// Reads the file at `rel` (relative to the directory) if `find_files` would list it now;
    /// None if it would not (gone, not a YAML name, hidden, under a link to a directory).
    pub(crate) fn reread(&self, rel: &FsPath) -> Option<Result<FileText, Diagnostic>> {
        use std::os::unix::ffi::OsStrExt;
        let hidden = rel.iter().any(|c| c.as_bytes().first() == Some(&b'.'));
        let name = rel.file_name()?;
        if hidden || !is_yaml_name(name.as_bytes()) {
            return None;
        }
        // Ignored itself, or under an ignored directory.
        let mut under = PathBuf::new();
        for c in rel.parent().unwrap_or(FsPath::new("")).iter() {
            under.push(c);
            if self.ignored(&under, true) {
                return None;
            }
        }
        if self.ignored(rel, false) {
            return None;
        }
        let path = self.dir.join(rel);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.is_dir() || (meta.file_type().is_symlink() && !leads_to_a_file(&path)) {
            return None;
        }
        // Every directory on the way is a directory of its own, not a link (those the walk
        // does not enter).
        let parent = rel.parent().unwrap_or(FsPath::new(""));
        let mut on_the_way = self.dir.clone();
        for c in parent.iter() {
            on_the_way.push(c);
            if !std::fs::symlink_metadata(&on_the_way).is_ok_and(|m| m.is_dir()) {
                return None;
            }
        }
        Some(self.read_file(path))
    }
}

fn too_large(path: &FsPath) -> Diagnostic {
    file_diag(
        path,
        format!(
            "the file is larger than {} MiB, the most weft reads; split it into smaller files",
            MAX_FILE_BYTES >> 20
        ),
    )
}

fn is_yaml_name(name: &[u8]) -> bool {
    name.ends_with(b".yaml") || name.ends_with(b".yml")
}

/// A link counts as a file unless it leads to a directory (not walked, which rules out
/// loops) or nowhere. Whatever else it leads to is the reader's to judge.
fn leads_to_a_file(link: &FsPath) -> bool {
    std::fs::metadata(link).is_ok_and(|m| !m.is_dir())
}

fn io_diag(path: &FsPath, e: &std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        resource: None,
        message: format!("cannot read: {e}"),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FileText {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    /// Set when the file does not parse as a whole (`yaml::recover`): the file with the
    /// documents that do not parse emptied, which the others are read and placed in.
    recovered: std::sync::OnceLock<String>,
}

impl FileText {
    pub(crate) fn new(path: PathBuf, text: String) -> FileText {
        FileText {
            path,
            text,
            recovered: std::sync::OnceLock::new(),
        }
    }

    /// Lets go of the text, once parsed, keeping what tells it from another text. A text
    /// that had to be recovered from a syntax error is kept (None): a problem placed in it
    /// later needs the recovered documents, which a new read would have to make again.
    pub(crate) fn shed(&mut self) -> Option<Digest> {
        if self.recovered.get().is_some() {
            return None;
        }
        let digest = Digest::of(&self.text);
        self.text = String::new();
        Some(digest)
    }

    /// The text documents are read from: the file, or what `yaml::recover` made of it. Lines
    /// and columns are the same in both.
    pub(crate) fn documents_text(&self) -> &str {
        self.recovered.get().map_or(&self.text, String::as_str)
    }
}

/// What is kept of a file's text once it is parsed and let go (`Documents` holds thousands of
/// files, whose text is 34 MB at 10,000 services): its length and a keyed hash, enough to tell
/// a read of the same text from a read of another, and to know the text when it is read again
/// to place a problem in it. The key is random per process, so a file cannot be written to
/// hash as another does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    len: usize,
    hash: u64,
}

impl Digest {
    pub(crate) fn of(text: &str) -> Digest {
        static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        use std::hash::BuildHasher;
        Digest {
            len: text.len(),
            hash: KEYS
                .get_or_init(std::collections::hash_map::RandomState::new)
                .hash_one(text.as_bytes()),
        }
    }
}

/// The files `finish` reads problems' places from, by index: each as parsed, or, where the
/// holder let the text go (`FileText::shed`), read again when a problem is to be placed in it
/// and used if it is still the text that was parsed.
pub(crate) struct Texts<'a> {
    files: &'a [&'a FileText],
    /// How to read a file again, and the digest of each file whose text was let go.
    again: Option<(&'a Reader, &'a [Option<Digest>])>,
    read: Vec<std::sync::OnceLock<Option<FileText>>>,
}

impl<'a> Texts<'a> {
    /// Files that still hold their text.
    pub(crate) fn whole(files: &'a [&'a FileText]) -> Texts<'a> {
        Texts {
            files,
            again: None,
            read: Vec::new(),
        }
    }

    /// Files whose text was let go where `digests` has a digest, read again by `reader`.
    pub(crate) fn shed(
        files: &'a [&'a FileText],
        reader: &'a Reader,
        digests: &'a [Option<Digest>],
    ) -> Texts<'a> {
        Texts {
            files,
            again: Some((reader, digests)),
            read: files.iter().map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    fn path(&self, i: usize) -> &FsPath {
        &self.files[i].path
    }

    /// File `i` with its text, or None when it was let go and the file no longer holds it.
    fn get(&self, i: usize) -> Option<&FileText> {
        let file = self.files[i];
        let Some(digest) = self.again.and_then(|(_, d)| d[i]) else {
            return Some(file);
        };
        let (reader, _) = self.again?;
        self.read[i]
            .get_or_init(|| {
                reader
                    .read_file(file.path.clone())
                    .ok()
                    .filter(|f| Digest::of(&f.text) == digest)
            })
            .as_ref()
    }
}

/// Where a resource was read: file, document and, for `kind: List`, item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocRef {
    pub(crate) file: usize,
    doc: usize,
    item: Option<usize>,
}

impl DocRef {
    /// `path` inside the resource, as a path inside the document.
    fn doc_path(&self, path: &Path) -> Path {
        match self.item {
            Some(j) => Path::root().key("items").index(j).join(path),
            None => path.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) kind: Kind,
    pub(crate) source: Source,
    pub(crate) at: DocRef,
    pub(crate) value: AnyResource,
    /// What the resource's own checks found (`judge`), made where its file was parsed and
    /// kept with it: a configuration made again from kept files checks only what is new.
    pub(crate) verdict: Option<Verdict>,
}

/// What a resource's own checks made of it: for most resources, nothing (an endpoint with no
/// problems), which takes no allocation. Its id is not kept: `resource_id` makes it again
/// (kept, it and its box were about 130 bytes a resource, 13 MB at 100,000 endpoints).
#[derive(Debug, Clone)]
pub(crate) struct Verdict(Option<Arc<Found>>);

/// What a resource's own checks made of it, when anything.
#[derive(Debug, Default)]
struct Found {
    policy: Option<Arc<ir::PolicyIr>>,
    profile_rules: Option<(Vec<ir::RuleIr>, Vec<ir::RuleIr>)>,
    diags: Vec<Diagnostic>,
    /// What is taken as the user meant it but should be said (`Config::warnings`).
    warnings: Vec<Diagnostic>,
}

impl Verdict {
    fn found(&self) -> &Found {
        static NOTHING: Found = Found {
            policy: None,
            profile_rules: None,
            diags: Vec::new(),
            warnings: Vec::new(),
        };
        self.0.as_deref().unwrap_or(&NOTHING)
    }
}

/// Normalizes `l` and checks it on its own, once; `file` is the file it was read from, and
/// `locator` finds positions in it.
fn judge(file: &FileText, l: &mut Loaded, locator: &Locator<'_>) {
    if l.verdict.is_some() {
        return;
    }
    let defaulted = normalize(l);
    let id = resource_id(l);
    let mut p = Problems::default();
    let checked = check(l, &id, &mut p);
    let diags = problem_diags(file, locator, l, &id, &p);
    // A policy or network set without a namespace applies in "default", as calicoctl puts
    // it there; one meant for another namespace would silently select nothing there.
    let warnings = (defaulted
        && matches!(
            l.kind,
            Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy | Kind::NetworkSet
        ))
    .then(|| Diagnostic {
        file: file.path.clone(),
        line: l.source.line,
        column: l.source.column,
        resource: Some(id.clone()),
        message: "metadata.namespace is missing: it is taken to be namespace default, as calicoctl does; write the namespace it is meant for".into(),
    })
    .into_iter()
    .collect();
    let found = Found {
        policy: checked.policy.map(Arc::new),
        profile_rules: checked.profile_rules,
        diags,
        warnings,
    };
    let nothing = found.policy.is_none()
        && found.profile_rules.is_none()
        && found.diags.is_empty()
        && found.warnings.is_empty();
    l.verdict = Some(Verdict((!nothing).then(|| Arc::new(found))));
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Out {
    pub(crate) loaded: Vec<Loaded>,
    pub(crate) diags: Vec<Diagnostic>,
    /// Resources whose documents did not deserialize, by kind and name: references to them
    /// are not reported again as references to something missing.
    pub(crate) unreadable: Vec<(Kind, String)>,
}

impl Out {
    /// Appends other files' results, in order.
    pub(crate) fn merge(&mut self, outs: impl IntoIterator<Item = Out>) {
        for o in outs {
            self.loaded.extend(o.loaded);
            self.diags.extend(o.diags);
            self.unreadable.extend(o.unreadable);
        }
    }
}

/// What a header says a document (or list item) is.
enum Class {
    Resource(Kind),
    List(Vec<Header>),
}

fn supported_kinds() -> String {
    let mut by_api: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for k in Kind::ALL {
        by_api
            .entry(k.api_version())
            .or_default()
            .push(k.kind_name());
    }
    by_api.entry("v1").or_default().push("List");
    let order = [
        "projectcalico.org/v3",
        "networking.k8s.io/v1",
        "v1",
        "discovery.k8s.io/v1",
    ];
    order
        .iter()
        .map(|api| format!("{api}: {}", by_api[api].join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decides what a header is; the error says what is wrong and names the field at fault.
fn classify(h: &Header, in_list: bool) -> Result<Class, (&'static str, String)> {
    if !h.is_mapping {
        return Err((
            "",
            "a resource must be a mapping with apiVersion, kind, metadata and spec".to_string(),
        ));
    }
    let Some(kind) = h.kind.as_deref() else {
        return Err((
            "",
            format!(
                "kind is missing; write one of the kinds weft reads ({})",
                supported_kinds()
            ),
        ));
    };
    let Some(api) = h.api_version.as_deref() else {
        let hint = match Kind::ALL.iter().find(|k| k.kind_name() == kind) {
            Some(k) => format!(" such as apiVersion: {}", k.api_version()),
            None => String::new(),
        };
        return Err((
            "",
            format!("apiVersion is missing; write it next to kind{hint}"),
        ));
    };
    if kind == "List" {
        if in_list {
            return Err((
                "kind",
                "a List cannot be an item of a List; move its items up".into(),
            ));
        }
        if api != "v1" {
            return Err((
                "apiVersion",
                format!("a List has apiVersion v1, not {api:?}"),
            ));
        }
        return match &h.items {
            Some(items) => Ok(Class::List(items.clone())),
            None => Err(("", "a List needs items: a sequence of resources".into())),
        };
    }
    if let Some(k) = Kind::from_type(api, kind) {
        return Ok(Class::Resource(k));
    }
    let apis: Vec<&str> = Kind::ALL
        .iter()
        .filter(|k| k.kind_name() == kind)
        .map(|k| k.api_version())
        .collect();
    if apis.is_empty() {
        Err((
            "kind",
            format!(
                "kind {kind:?} is not one weft reads; the kinds are {}",
                supported_kinds()
            ),
        ))
    } else {
        Err((
            "apiVersion",
            format!("{kind} has apiVersion {}, not {api:?}", apis.join(" or ")),
        ))
    }
}

/// The id a header names, if it names one (for messages about resources that did not load).
fn header_id(kind: Kind, h: &Header) -> Option<ResourceId> {
    Some(ResourceId {
        kind,
        namespace: kind
            .is_namespaced()
            .then(|| h.namespace.clone().unwrap_or_else(|| "default".into())),
        name: h.name.clone()?,
    })
}

fn pos_diag(
    file: &FileText,
    pos: Option<Pos>,
    resource: Option<ResourceId>,
    message: String,
) -> Diagnostic {
    let pos = pos.unwrap_or(Pos { line: 1, column: 1 });
    Diagnostic {
        file: file.path.clone(),
        line: pos.line,
        column: pos.column,
        resource,
        message,
    }
}

fn source_of(file: &FileText, pos: Pos) -> Source {
    Source {
        file: Arc::from(file.path.as_path()),
        line: pos.line,
        column: pos.column,
    }
}

enum Pending {
    One(Kind, Pos, Header),
    List(Pos, Vec<Option<Kind>>, Vec<Header>),
}

/// Reads file `index`'s documents into resources and checks each on its own.
pub(crate) fn load_file(index: usize, file: &FileText, out: &mut Out) {
    read_documents(index, file, out);
    // One budget for every position the file's problems need.
    let locator = Locator::new(file.documents_text());
    for l in &mut out.loaded {
        judge(file, l, &locator);
    }
}

fn read_documents(index: usize, file: &FileText, out: &mut Out) {
    let text = file.text.as_str();
    let quick = quick_kinds(text);
    if let Some(loaded) = quick
        .as_ref()
        .and_then(|q| load_quick(index, file, q, Parser::Fast))
    {
        out.loaded.extend(loaded);
        return;
    }
    // serde_yaml reads the file from here on, and it expands aliases: how far is bounded
    // first, once for every pass below.
    if let Err(e) = aliases::check(text, aliases::Limit::for_file(text.len())) {
        out.diags.push(pos_diag(file, e.pos, None, e.message));
        return;
    }
    if let Some(loaded) = quick
        .as_ref()
        .and_then(|q| load_quick(index, file, q, Parser::Serde))
    {
        out.loaded.extend(loaded);
        return;
    }
    let (mut docs, mut syntax) = yaml::scan_headers(text);
    // A syntax error hides the documents after it from the parser: the documents are read
    // one at a time, each that does not parse is reported and left out, and the others are
    // read and checked from the file without them. The file stays invalid either way.
    if syntax.is_some() {
        let parts = yaml::parts(text);
        // Past the first error the aliases have not been counted yet: this walk counts them.
        let errors =
            match aliases::syntax_errors(text, &parts, aliases::Limit::for_file(text.len())) {
                Ok(errors) => errors,
                Err(e) => {
                    out.diags.push(pos_diag(file, e.pos, None, e.message));
                    return;
                }
            };
        let recovered = yaml::without_parts(text, &parts, |i| errors[i].is_some());
        let (recovered_docs, still) = yaml::scan_headers(&recovered);
        // A file whose parts all parse alone (a directive that fails among the others) has
        // nothing better to say than its first error.
        if recovered != text && still.is_none() {
            file.recovered.get_or_init(|| recovered);
            for (part, e) in parts.iter().zip(errors) {
                if let Some(e) = e {
                    let start = Pos {
                        line: part.lines_above + 1,
                        column: 1,
                    };
                    out.diags
                        .push(pos_diag(file, e.pos.or(Some(start)), None, e.message));
                }
            }
            (docs, syntax) = (recovered_docs, None);
        }
    }
    let text = file.documents_text();
    let locator = &Locator::new(text);
    let mut pending: BTreeMap<usize, Pending> = BTreeMap::new();
    for (d, doc) in docs.iter().enumerate() {
        let DocHeader::Node { start, header } = doc else {
            continue;
        };
        match classify(header, false) {
            Ok(Class::Resource(kind)) => {
                pending.insert(d, Pending::One(kind, *start, header.clone()));
            }
            Ok(Class::List(items)) => {
                let mut kinds = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    match classify(item, true) {
                        Ok(Class::Resource(kind)) => kinds.push(Some(kind)),
                        Ok(Class::List(_)) => unreachable!("lists are refused inside lists"),
                        Err((field, message)) => {
                            let mut path = Path::root().key("items").index(j);
                            if !field.is_empty() {
                                path = path.key(field);
                            }
                            let pos = locator.locate(d, &path).unwrap_or(*start);
                            out.diags.push(pos_diag(file, Some(pos), None, message));
                            kinds.push(None);
                        }
                    }
                }
                pending.insert(d, Pending::List(*start, kinds, items));
            }
            Err((field, message)) => {
                let pos = if field.is_empty() {
                    Some(*start)
                } else {
                    locator.locate(d, &Path::root().key(field)).or(Some(*start))
                };
                out.diags.push(pos_diag(file, pos, None, message));
            }
        }
    }
    if let Some(e) = syntax {
        out.diags.push(pos_diag(file, e.pos, None, e.message));
    }
    let Some(&last) = pending.keys().last() else {
        return;
    };
    for (d, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        if d > last {
            break;
        }
        match pending.remove(&d) {
            None => {}
            Some(Pending::One(kind, start, header)) => match parse_kind(kind, de) {
                Ok(value) => out.loaded.push(Loaded {
                    kind,
                    source: source_of(file, start),
                    at: DocRef {
                        file: index,
                        doc: d,
                        item: None,
                    },
                    value,
                    verdict: None,
                }),
                Err(e) => {
                    let e = yaml::yaml_error(text, &e);
                    if let Some(name) = &header.name {
                        out.unreadable.push((kind, name.clone()));
                    }
                    out.diags.push(pos_diag(
                        file,
                        e.pos.or(Some(start)),
                        header_id(kind, &header),
                        e.message,
                    ));
                }
            },
            Some(Pending::List(start, kinds, headers)) => {
                let list = List {
                    doc: d,
                    start,
                    kinds: &kinds,
                    headers: &headers,
                };
                load_list(index, file, locator, &list, out)
            }
        }
    }
}

/// The headers of a file of plain manifests (`yaml::quick_headers`) with the kind of each
/// document, if every document is a resource of a kind weft reads.
fn quick_kinds(text: &str) -> Option<Vec<(Pos, Header, Kind)>> {
    let headers = yaml::quick_headers(text)?;
    headers
        .into_iter()
        .map(|(start, header)| match classify(&header, false) {
            Ok(Class::Resource(kind)) => Some((start, header, kind)),
            _ => None,
        })
        .collect()
}

/// Which YAML parser `load_quick` uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parser {
    /// `fastyaml`, which declines anything unusual (anchors and aliases among it).
    Fast,
    /// serde_yaml: whatever fastyaml declined (once `aliases::check` has passed the file).
    Serde,
}

/// A file of plain manifests read with one pass of a YAML parser instead of two: the headers
/// come from `quick_kinds`, and each document must then deserialize and agree with its
/// header (apiVersion, kind, name, namespace). None, with nothing loaded, for anything else:
/// the two passes then read it and report what is wrong.
fn load_quick(
    index: usize,
    file: &FileText,
    headers: &[(Pos, Header, Kind)],
    parser: Parser,
) -> Option<Vec<Loaded>> {
    let text = file.text.as_str();
    let values = match parser {
        Parser::Fast => {
            let docs = fastyaml::documents(text).filter(|docs| docs.len() == headers.len())?;
            docs.iter()
                .zip(headers)
                .map(|(doc, &(_, _, kind))| parse_kind(kind, fastyaml::De(doc)).ok())
                .collect::<Option<Vec<AnyResource>>>()?
        }
        Parser::Serde => {
            let mut docs = serde_yaml::Deserializer::from_str(text);
            let values = headers
                .iter()
                .map(|&(_, _, kind)| parse_kind(kind, docs.next()?).ok())
                .collect::<Option<Vec<AnyResource>>>()?;
            // No document the scan missed.
            if docs.next().is_some() {
                return None;
            }
            values
        }
    };
    let mut loaded = Vec::with_capacity(headers.len());
    for (d, ((start, header, kind), value)) in headers.iter().zip(values).enumerate() {
        let kind = *kind;
        let meta = value.metadata();
        let agrees = value.type_meta() == (header.api_version.as_deref()?, header.kind.as_deref()?)
            && Some(&meta.name) == header.name.as_ref()
            && meta.namespace == header.namespace;
        if !agrees {
            return None;
        }
        loaded.push(Loaded {
            kind,
            source: source_of(file, *start),
            at: DocRef {
                file: index,
                doc: d,
                item: None,
            },
            value,
            verdict: None,
        });
    }
    Some(loaded)
}

/// A `kind: List` document: which one, where it starts, and its items' kinds and headers.
struct List<'a> {
    doc: usize,
    start: Pos,
    kinds: &'a [Option<Kind>],
    headers: &'a [Header],
}

/// Deserializes the items of a `kind: List` document. A bad item stops serde, so after an
/// error the document is read again from the item after it, until every item was tried or
/// the file's budget for reading it again is spent; the items left untried are then one
/// problem of their own.
fn load_list(index: usize, file: &FileText, locator: &Locator<'_>, list: &List<'_>, out: &mut Out) {
    let (doc, kinds, headers) = (list.doc, list.kinds, list.headers);
    let mut skip = 0;
    let mut positions: Option<Vec<Option<Pos>>> = None;
    while skip < kinds.len() {
        let Some(de) = locator.nth_document(doc) else {
            untried(file, list, skip, out);
            return;
        };
        let current = Cell::new(None);
        let items = RefCell::new(Vec::new());
        let result = ListSeed {
            kinds,
            skip,
            current: &current,
            items: &items,
        }
        .deserialize(de);
        let items = items.into_inner();
        if positions.is_none() && !items.is_empty() {
            positions =
                Some(locator.sequence_item_positions(doc, &Path::root().key("items"), kinds.len()));
        }
        for (j, kind, value) in items {
            let pos = positions
                .as_ref()
                .and_then(|p| p.get(j).copied().flatten())
                .unwrap_or(list.start);
            out.loaded.push(Loaded {
                kind,
                source: source_of(file, pos),
                at: DocRef {
                    file: index,
                    doc,
                    item: Some(j),
                },
                value,
                verdict: None,
            });
        }
        match (result, current.get()) {
            (Ok(()), _) => return,
            (Err(e), failed) => {
                let mut e = yaml::yaml_error(file.documents_text(), &e);
                let id = failed.and_then(|j| header_id(kinds[j]?, &headers[j]));
                if let Some(id) = &id {
                    out.unreadable.push((id.kind, id.name.clone()));
                }
                // Paths in messages are relative to the resource, as for other documents.
                if let Some(j) = failed {
                    let item = format!("items[{j}]");
                    if let Some(rest) = e.message.strip_prefix(&format!("{item}.")) {
                        e.message = rest.to_string();
                    } else if let Some(rest) = e.message.strip_prefix(&format!("{item}: ")) {
                        e.message = rest.to_string();
                    }
                }
                out.diags.push(pos_diag(file, e.pos, id, e.message));
                match failed {
                    Some(j) => skip = j + 1,
                    None => return,
                }
            }
        }
    }
}

/// Says that a List's items from `from` on were not read, and keeps their names from being
/// reported again as missing references.
fn untried(file: &FileText, list: &List<'_>, from: usize, out: &mut Out) {
    for (kind, header) in list.kinds.iter().zip(list.headers).skip(from) {
        if let (Some(kind), Some(name)) = (kind, &header.name) {
            out.unreadable.push((*kind, name.clone()));
        }
    }
    out.diags.push(pos_diag(
        file,
        Some(list.start),
        None,
        format!(
            "items[{from}] and the {} after it were not read: after a bad item weft reads the List again from the next one, and it has too many bad items to do that for each; fix those reported and validate again",
            list.kinds.len() - from - 1
        ),
    ));
}

/// Walks a List document and deserializes items `skip..` whose kind is known.
struct ListSeed<'a> {
    kinds: &'a [Option<Kind>],
    skip: usize,
    /// The item being deserialized, so that an error can be attributed to it.
    current: &'a Cell<Option<usize>>,
    items: &'a RefCell<Vec<(usize, Kind, AnyResource)>>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a List")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<yaml::Loose>()? {
            if key == yaml::Loose::Str("items".into()) {
                map.next_value_seed(ItemsSeed {
                    kinds: self.kinds,
                    skip: self.skip,
                    current: self.current,
                    items: self.items,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct ItemsSeed<'a> {
    kinds: &'a [Option<Kind>],
    skip: usize,
    current: &'a Cell<Option<usize>>,
    items: &'a RefCell<Vec<(usize, Kind, AnyResource)>>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of resources")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut j = 0;
        loop {
            let kind = self.kinds.get(j).copied().flatten();
            let more = match kind {
                Some(kind) if j >= self.skip => {
                    self.current.set(Some(j));
                    match seq.next_element_seed(KindSeed(kind))? {
                        Some(value) => {
                            self.items.borrow_mut().push((j, kind, value));
                            true
                        }
                        None => false,
                    }
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            j += 1;
        }
    }
}

struct KindSeed(Kind);

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = AnyResource;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnyResource, D::Error> {
        parse_kind(self.0, d)
    }
}

/// Turns the problems of resource `l` into diagnostics at the positions of the values at
/// fault, as far as `locator`'s budget goes; the problems past it are counted in one more
/// diagnostic where the resource starts.
fn problem_diags(
    file: &FileText,
    locator: &Locator<'_>,
    l: &Loaded,
    id: &ResourceId,
    problems: &Problems,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut unplaced = 0;
    for problem in &problems.0 {
        let Some(pos) = locator.locate(l.at.doc, &l.at.doc_path(&problem.path)) else {
            unplaced += 1;
            continue;
        };
        let column = match &problem.inner {
            Some((selector, col)) => column_in_scalar(&file.text, pos, selector, *col),
            None => pos.column,
        };
        diags.push(Diagnostic {
            file: file.path.clone(),
            line: pos.line,
            column,
            resource: Some(id.clone()),
            message: problem.message.clone(),
        });
    }
    if unplaced > 0 {
        diags.push(Diagnostic {
            file: file.path.clone(),
            line: l.source.line,
            column: l.source.column,
            resource: Some(id.clone()),
            message: format!(
                "{unplaced} more problem(s) in this resource, not listed: weft finds the place of only so many problems in one file; fix the ones listed and validate again"
            ),
        });
    }
    diags
}

/// When a scalar is written on one line exactly as its value (plain, or quoted without
/// escapes), the column of its `col`-th character; otherwise the scalar's own column.
fn column_in_scalar(text: &str, pos: Pos, value: &str, col: usize) -> usize {
    let Some(line) = text.lines().nth(pos.line.saturating_sub(1)) else {
        return pos.column;
    };
    let rest: String = line.chars().skip(pos.column.saturating_sub(1)).collect();
    if value.contains('\n') {
        return pos.column;
    }
    if rest.starts_with(value) && !value.is_empty() {
        return pos.column + col - 1;
    }
    for quote in ['\'', '"'] {
        if let Some(inner) = rest.strip_prefix(quote) {
            if inner.starts_with(value) && inner[value.len()..].starts_with(quote) {
                return pos.column + col;
            }
        }
    }
    pos.column
}

/// What checking one resource produced besides problems.
#[derive(Default)]
struct Checked {
    policy: Option<ir::PolicyIr>,
    profile_rules: Option<(Vec<ir::RuleIr>, Vec<ir::RuleIr>)>,
}

/// Checks one resource on its own, converting policies and profiles to IR on the way.
fn check(l: &Loaded, id: &ResourceId, p: &mut Problems) -> Checked {
    let meta = l.value.metadata();
    let meta_path = Path::root().key("metadata");
    validate::name(l.kind, &meta.name, p);
    validate::labels(&meta.labels, &meta_path.key("labels"), p);
    if let Some(ns) = &meta.namespace {
        if l.kind.is_namespaced() {
            validate::namespace_name(ns, &meta_path.key("namespace"), p);
        } else {
            p.at(
                &meta_path.key("namespace"),
                format!("a {} is not namespaced; remove metadata.namespace", l.kind),
            );
        }
    }
    let mut out = Checked::default();
    match &l.value {
        AnyResource::WorkloadEndpoint(w) => {
            validate::workload_endpoint(w, p);
        }
        AnyResource::HostEndpoint(h) => {
            validate::host_endpoint(h, p);
        }
        AnyResource::NetworkPolicy(np) => {
            out.policy = Some(ir::network_policy(np, id.clone(), l.source.clone(), p));
        }
        AnyResource::GlobalNetworkPolicy(gnp) => {
            out.policy = Some(ir::global_network_policy(
                gnp,
                id.clone(),
                l.source.clone(),
                p,
            ));
        }
        AnyResource::KubernetesNetworkPolicy(knp) => {
            out.policy = Some(ir::kubernetes_network_policy(
                knp,
                id.clone(),
                l.source.clone(),
                p,
            ));
        }
        AnyResource::Tier(t) => validate::tier(t, p),
        AnyResource::Profile(pr) => {
            let path = Path::root().key("spec");
            validate::labels(&pr.spec.labels_to_apply, &path.key("labelsToApply"), p);
            out.profile_rules = Some((
                ir::rules(&pr.spec.ingress, &path.key("ingress"), None, p),
                ir::rules(&pr.spec.egress, &path.key("egress"), None, p),
            ));
        }
        AnyResource::NetworkSet(s) => {
            validate::network_set_nets(&s.spec.nets, p);
        }
        AnyResource::GlobalNetworkSet(s) => {
            validate::network_set_nets(&s.spec.nets, p);
        }
        AnyResource::FelixConfiguration(fc) => validate::felix_configuration(fc, p),
        AnyResource::Node(n) => validate::node(n, p),
        AnyResource::IPPool(pool) => validate::ip_pool(pool, p),
        AnyResource::Namespace(_) => {}
        AnyResource::Service(s) => validate::service(s, p),
        AnyResource::EndpointSlice(es) => validate::endpoint_slice(es, p),
    }
    out
}

fn allow_all_profile(name: &str, labels: BTreeMap<String, String>) -> Profile {
    let allow = Rule {
        action: Action::Allow,
        ip_version: None,
        protocol: None,
        icmp: None,
        not_protocol: None,
        not_icmp: None,
        source: EntityRule::default(),
        destination: EntityRule::default(),
        http: None,
        metadata: None,
    };
    Profile {
        api_version: Kind::Profile.api_version().into(),
        kind: Kind::Profile.kind_name().into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        },
        spec: ProfileSpec {
            ingress: vec![allow.clone()],
            egress: vec![allow],
            labels_to_apply: labels.into(),
        },
    }
}

/// The label the API server gives every Namespace, with the namespace's name.
const K8S_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The profile Calico makes for a Kubernetes namespace: allow everything, and give the
/// namespace's labels (prefixed `pcns.`) and its name to everything in it. The labels are those
/// the API server would store: the namespace's own and `kubernetes.io/metadata.name`, which it
/// always sets to the name (policies select namespaces by name with it).
fn namespace_profile(ns: &Namespace) -> Profile {
    let mut labels: BTreeMap<String, String> = ns
        .metadata
        .labels
        .iter()
        .map(|(k, v)| (format!("{NAMESPACE_LABEL_PREFIX}{k}"), v.clone()))
        .collect();
    labels.insert(
        format!("{NAMESPACE_LABEL_PREFIX}{K8S_NAMESPACE_NAME_LABEL}"),
        ns.metadata.name.clone(),
    );
    labels.insert(
        format!("{NAMESPACE_LABEL_PREFIX}{NAME_LABEL}"),
        ns.metadata.name.clone(),
    );
    allow_all_profile(
        &format!("{NAMESPACE_PROFILE_PREFIX}{}", ns.metadata.name),
        labels,
    )
}

/// Namespaced kinds live in "default" unless they say otherwise. True when it was put there.
fn normalize(l: &mut Loaded) -> bool {
    // Asked first, so that a resource normalized already (and shared) is not copied.
    if l.kind.is_namespaced() && l.value.metadata().namespace.is_none() {
        l.value.metadata_mut().namespace = Some("default".into());
        return true;
    }
    false
}

/// A (normalized) resource's id.
pub(crate) fn resource_id(l: &Loaded) -> ResourceId {
    ResourceId {
        kind: l.kind,
        namespace: l
            .value
            .metadata()
            .namespace
            .clone()
            .filter(|_| l.kind.is_namespaced()),
        name: l.value.metadata().name.clone(),
    }
}

/// Whether a resource passes the checks that look at it alone (and is not one whose IR the
/// configuration holds apart: a policy or profile), from its verdict where it has one.
pub(crate) fn valid_alone(l: &Loaded) -> bool {
    match &l.verdict {
        Some(v) => {
            let f = v.found();
            f.diags.is_empty() && f.policy.is_none() && f.profile_rules.is_none()
        }
        None => {
            let mut p = Problems::default();
            let checked = check(l, &resource_id(l), &mut p);
            p.0.is_empty() && checked.policy.is_none() && checked.profile_rules.is_none()
        }
    }
}

/// A policy whose own checks passed where its file was parsed: its compiled form and its
/// warnings, for a configuration patched rather than built again (`Documents`).
pub(crate) fn valid_policy(l: &Loaded) -> Option<(&Arc<ir::PolicyIr>, &[Diagnostic])> {
    let v = l.verdict.as_ref()?.found();
    if !v.diags.is_empty() {
        return None;
    }
    Some((v.policy.as_ref()?, &v.warnings))
}

/// What a resource's own checks found to say, where they were made.
pub(crate) fn warnings_of(l: &Loaded) -> &[Diagnostic] {
    l.verdict.as_ref().map_or(&[], |v| &v.found().warnings)
}

/// The profiles an endpoint names.
pub(crate) fn profiles_named(l: &Loaded) -> &[String] {
    match &l.value {
        AnyResource::WorkloadEndpoint(w) => &w.spec.profiles,
        AnyResource::HostEndpoint(h) => &h.spec.profiles,
        _ => &[],
    }
}

/// The tier a Calico policy names, if it names one.
pub(crate) fn policy_tier(l: &Loaded) -> Option<&str> {
    match &l.value {
        AnyResource::NetworkPolicy(np) => np.spec.tier.as_deref(),
        AnyResource::GlobalNetworkPolicy(gnp) => gnp.spec.tier.as_deref(),
        _ => None,
    }
}

pub(crate) fn finish(files: &Texts<'_>, mut out: Out) -> Result<Config, Diagnostics> {
    let mut diags = std::mem::take(&mut out.diags);
    let loaded = out.loaded;
    let unreadable = out.unreadable;
    let unreadable_named = |kind: Kind| {
        unreadable
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, name)| name.clone())
    };

    // Every resource comes judged (normalized and checked on its own) by `load_file`, on the
    // thread that parsed its file.
    let mut ids = Vec::with_capacity(loaded.len());
    let mut warnings = Vec::new();
    let mut policies = Vec::new();
    let mut profile_rules = BTreeMap::new();
    for l in &loaded {
        let v = l.verdict.as_ref().expect("judged").found();
        let id = resource_id(l);
        diags.extend(v.diags.iter().cloned());
        warnings.extend(v.warnings.iter().cloned());
        if let Some(policy) = &v.policy {
            policies.push(policy.clone());
        }
        if let Some(rules) = &v.profile_rules {
            profile_rules.insert(id.name.clone(), rules.clone());
        }
        ids.push(id);
    }

    // Profiles weft makes: one per namespace, and the default-allow one.
    let mut synthesized: Vec<(Source, Profile)> = loaded
        .iter()
        .filter_map(|l| match &l.value {
            AnyResource::Namespace(ns) => Some((l.source.clone(), namespace_profile(ns))),
            _ => None,
        })
        .collect();
    synthesized.push((
        Source::builtin(),
        allow_all_profile(DEFAULT_ALLOW_PROFILE, BTreeMap::new()),
    ));

    // Duplicates: the first definition wins the report.
    let mut first: BTreeMap<&ResourceId, &Source> = BTreeMap::new();
    let synthesized_ids: Vec<ResourceId> = synthesized
        .iter()
        .map(|(_, p)| ResourceId {
            kind: Kind::Profile,
            namespace: None,
            name: p.metadata.name.clone(),
        })
        .collect();
    for (id, (source, _)) in synthesized_ids.iter().zip(&synthesized) {
        first.insert(id, source);
    }
    for (l, id) in loaded.iter().zip(&ids) {
        match first.get(id) {
            None => {
                first.insert(id, &l.source);
            }
            Some(prev) => {
                let message = if **prev == Source::builtin() {
                    format!("{id} is built in; choose another name")
                } else if synthesized_ids.contains(id) {
                    format!(
                        "duplicate {id} (first defined at {prev}, made for the Namespace there); remove this Profile or rename it"
                    )
                } else {
                    format!("duplicate {id} (first defined at {prev})")
                };
                diags.push(Diagnostic {
                    file: l.source.file.to_path_buf(),
                    line: l.source.line,
                    column: l.source.column,
                    resource: Some(id.clone()),
                    message,
                });
            }
        }
    }

    // Problems in references are placed within a budget per file, as in `load_file`; a file's
    // text is found only when one of its resources has such a problem.
    let mut locators: BTreeMap<usize, Option<(&FileText, Locator<'_>)>> = BTreeMap::new();
    // References to profiles and tiers.
    let profile_names: BTreeSet<String> = synthesized
        .iter()
        .map(|(_, p)| p.metadata.name.clone())
        .chain(loaded.iter().filter_map(|l| match &l.value {
            AnyResource::Profile(p) => Some(p.metadata.name.clone()),
            _ => None,
        }))
        .chain(unreadable_named(Kind::Profile))
        .chain(
            unreadable_named(Kind::Namespace).map(|ns| format!("{NAMESPACE_PROFILE_PREFIX}{ns}")),
        )
        .collect();
    let tier_names: BTreeSet<String> = std::iter::once("default".to_string())
        .chain(loaded.iter().filter_map(|l| match &l.value {
            AnyResource::Tier(t) => Some(t.metadata.name.clone()),
            _ => None,
        }))
        .chain(unreadable_named(Kind::Tier))
        .collect();
    for (l, id) in loaded.iter().zip(&ids) {
        let mut p = Problems::default();
        for (i, name) in profiles_named(l).iter().enumerate() {
            if !profile_names.contains(name) {
                let hint = match name.strip_prefix(NAMESPACE_PROFILE_PREFIX) {
                    Some(ns) => format!("define a Profile named {name} or a Namespace named {ns}"),
                    None => format!("define a Profile named {name}"),
                };
                p.at(
                    &Path::root().key("spec").key("profiles").index(i),
                    format!("profile {name:?} does not exist; {hint}"),
                );
            }
        }
        if let Some(tier) = policy_tier(l) {
            if !tier_names.contains(tier) {
                p.at(
                    &Path::root().key("spec").key("tier"),
                    format!("tier {tier:?} does not exist; define a Tier named {tier}"),
                );
            }
        }
        if p.0.is_empty() {
            continue;
        }
        let placed = locators.entry(l.at.file).or_insert_with(|| {
            files
                .get(l.at.file)
                .map(|f| (f, Locator::new(f.documents_text())))
        });
        match placed {
            Some((file, locator)) => diags.extend(problem_diags(file, locator, l, id, &p)),
            // Changed since it was parsed (a new read is on its way): at the resource.
            None => diags.extend(p.0.iter().map(|problem| Diagnostic {
                file: files.path(l.at.file).to_path_buf(),
                line: l.source.line,
                column: l.source.column,
                resource: Some(id.clone()),
                message: problem.message.clone(),
            })),
        }
    }

    if !diags.is_empty() {
        let mut d = Diagnostics(diags);
        d.sort();
        d.cap_per_file(MAX_PROBLEMS_PER_FILE);
        return Err(d);
    }

    let mut warnings = Diagnostics(warnings);
    warnings.sort();
    let mut config = Config {
        policies,
        warnings: warnings.0,
        ..Config::default()
    };
    for l in loaded {
        push(&mut config, l.source, l.value);
    }
    config.synthesized_profiles = synthesized.len();
    for (source, profile) in synthesized {
        profile_rules.insert(
            profile.metadata.name.clone(),
            (vec![ir::allow_all_rule()], vec![ir::allow_all_rule()]),
        );
        config.profiles.push(Item {
            source,
            value: Arc::new(profile),
        });
    }
    config.profile_rules = profile_rules;
    Ok(config)
}
