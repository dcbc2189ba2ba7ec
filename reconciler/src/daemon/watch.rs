//! What wakes the daemon: changes under the configuration directory (inotify through notify),
//! interfaces appearing or going (netlink), the resync timer. Every source sends a `Trigger`
//! down one channel; `next_batch` waits for the first and then for a quiet spell, so a GitOps
//! sync that rewrites many files at once wakes one reconcile, not one per file.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Why the daemon reconciles. The reconcile itself never depends on it (level-triggered); it
/// is counted and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    Start,
    Files,
    Links,
    Resync,
    /// After a failed reconcile.
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Files => "files",
            Trigger::Links => "links",
            Trigger::Resync => "resync",
            Trigger::Retry => "retry",
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Whether a change at `path` can matter to `load_dir(dir)`: a YAML file, or something that
/// may be a directory (a name without an extension), outside hidden directories (`.git`).
fn relevant(dir: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    if rel.as_os_str().is_empty() {
        // The directory itself: replaced, removed, or its symlink flipped.
        return true;
    }
    let hidden = rel.components().any(|c| match c {
        Component::Normal(n) => n.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if hidden {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => ext == "yaml" || ext == "yml",
        None => true,
    }
}

/// Watches `dir` recursively; every relevant change sends `Trigger::Files`. The directory is
/// watched through its canonical path, and its parent too, so that a directory swapped in by
/// a rename or a symlink flip (git-sync's way) is noticed; the caller re-watches on every
/// batch with `rewatch`.
pub struct FileWatch {
    dir: PathBuf,
    /// What the directory resolved to when last watched; the event handler reads it too.
    watched: Arc<Mutex<Option<PathBuf>>>,
    /// The files events named since the reconciler last took them (relative to the
    /// directory).
    changed: Arc<Mutex<Changed>>,
    watcher: notify::RecommendedWatcher,
}

/// What changed under the directory, as the events tell it: YAML files by path relative to
/// it, or
/// `everything` when an event cannot be narrowed to files (a directory renamed, the directory
/// swapped, a lost event), and the whole directory must be read again.
#[derive(Debug, Default)]
pub struct Changed {
    pub files: std::collections::BTreeSet<PathBuf>,
    pub everything: bool,
}

impl Changed {
    /// Takes what was recorded: Some(files) or None for everything.
    pub fn take(&mut self) -> Option<Vec<PathBuf>> {
        let c = std::mem::take(self);
        (!c.everything).then(|| c.files.into_iter().collect())
    }
}

impl FileWatch {
    pub fn new(dir: &Path, tx: UnboundedSender<Trigger>) -> notify::Result<FileWatch> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let watched: Arc<Mutex<Option<PathBuf>>> = Arc::default();
        let changed: Arc<Mutex<Changed>> = Arc::new(Mutex::new(Changed {
            files: Default::default(),
            everything: true,
        }));
        let (root, target, record) = (dir.clone(), watched.clone(), changed.clone());
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let wake = match &ev {
                // Reading the files (the daemon's own reads above all) and metadata changes
                // (atime) are no change of content.
                Ok(ev)
                    if matches!(
                        ev.kind,
                        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
                    ) =>
                {
                    false
                }
                Ok(ev) => {
                    let target = target.lock().expect("watch lock").clone();
                    let roots = std::iter::once(&root).chain(target.as_ref());
                    let roots: Vec<&PathBuf> = roots.collect();
                    let hits: Vec<&PathBuf> = ev
                        .paths
                        .iter()
                        .filter(|p| roots.iter().any(|r| p.starts_with(r) && relevant(r, p)))
                        .collect();
                    let mut c = record.lock().expect("watch lock");
                    for p in &hits {
                        // A YAML file named under the directory as configured can be read
                        // again alone; anything else (a directory, a path through the
                        // resolved target) means reading the directory again.
                        match p.strip_prefix(&root) {
                            Ok(rel) if is_yaml(p) => {
                                c.files.insert(rel.to_path_buf());
                            }
                            _ => c.everything = true,
                        }
                    }
                    if ev.need_rescan() {
                        c.everything = true;
                    }
                    ev.need_rescan() || !hits.is_empty()
                }
                // A lost event (queue overflow) means we do not know: look.
                Err(_) => {
                    record.lock().expect("watch lock").everything = true;
                    true
                }
            };
            tracing::trace!(wake, "file event: {ev:?}");
            if wake {
                let _ = tx.send(Trigger::Files);
            }
        })?;
        let mut w = FileWatch {
            dir,
            watched,
            changed,
            watcher,
        };
        if let Some(parent) = w.dir.parent() {
            w.watcher.watch(parent, RecursiveMode::NonRecursive)?;
        }
        w.rewatch();
        Ok(w)
    }

    /// What changed, as the events named it: shared with the reconciler, which takes it.
    pub fn changed(&self) -> Arc<Mutex<Changed>> {
        self.changed.clone()
    }

    /// Watches what the directory is now, if that changed (it was replaced, or appeared).
    pub fn rewatch(&mut self) {
        let now = self.dir.canonicalize().ok();
        // The lock is never held across a call into the watcher: its event thread takes the
        // lock too, and the watcher waits for that thread.
        let old = self.watched.lock().expect("watch lock").clone();
        if now == old {
            return;
        }
        if let Some(old) = old {
            let _ = self.watcher.unwatch(&old);
        }
        let mut watching = None;
        if let Some(new) = now {
            match self.watcher.watch(&new, RecursiveMode::Recursive) {
                Ok(()) => {
                    tracing::debug!(dir = %new.display(), "watching");
                    watching = Some(new);
                }
                Err(e) => tracing::warn!(dir = %new.display(), "cannot watch: {e}"),
            }
        }
        *self.watched.lock().expect("watch lock") = watching;
    }
}

/// Waits for the next trigger. A change (files, links) is then given `quiet` without another
/// change before it is acted on (`max_wait` at most), and whatever else arrives meanwhile joins
/// the batch; the timer's and the start's triggers act at once. Returns the batch in order of
/// precedence, the first naming it; None when every sender is gone.
pub async fn next_batch(
    rx: &mut UnboundedReceiver<Trigger>,
    quiet: Duration,
    max_wait: Duration,
) -> Option<Vec<Trigger>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    let change = |t: Trigger| matches!(t, Trigger::Files | Trigger::Links);
    let now = tokio::time::Instant::now();
    let deadline = now + max_wait;
    let mut until = if change(first) { now + quiet } else { now };
    while let Ok(Some(t)) = tokio::time::timeout_at(until.min(deadline), rx.recv()).await {
        batch.push(t);
        if change(t) {
            until = tokio::time::Instant::now() + quiet;
        }
    }
    batch.sort();
    batch.dedup();
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_directories_matter_hidden_and_other_files_do_not() {
        let d = Path::new("/etc/weft");
        assert!(relevant(d, Path::new("/etc/weft/a.yaml")));
        assert!(relevant(d, Path::new("/etc/weft/sub/b.yml")));
        assert!(relevant(d, Path::new("/etc/weft/sub")));
        assert!(relevant(
            Path::new("/srv/weft.live"),
            Path::new("/srv/weft.live")
        ));
        assert!(!relevant(d, Path::new("/etc/weft/.git/FETCH_HEAD")));
        assert!(!relevant(d, Path::new("/etc/weft/.a.yaml.swp")));
        assert!(!relevant(d, Path::new("/etc/weft/a.yaml.tmp~")));
        assert!(!relevant(d, Path::new("/etc/weft/README.md")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch_and_a_later_change_another() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..20 {
            tx.send(Trigger::Files).expect("send");
        }
        tx.send(Trigger::Links).expect("send");
        let quiet = Duration::from_millis(200);
        let b = next_batch(&mut rx, quiet, Duration::from_secs(5)).await;
        assert_eq!(b, Some(vec![Trigger::Files, Trigger::Links]));
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(Trigger::Resync).expect("send");
        let b = next_batch(&mut rx, quiet, Duration::from_secs(5)).await;
        assert_eq!(b, Some(vec![Trigger::Resync]));
        // Timer ticks do not hold a batch open: a tick every 100 ms (faster than `quiet`)
        // is one batch per tick, at once.
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            tx.send(Trigger::Resync).expect("send");
            assert_eq!(
                next_batch(&mut rx, quiet, Duration::from_secs(5)).await,
                Some(vec![Trigger::Resync])
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() < Duration::from_millis(400));
        drop(tx);
        assert_eq!(
            next_batch(&mut rx, quiet, Duration::from_secs(5)).await,
            None
        );
    }
}
