//! Reading weft_flows and weft_trace: `weft flows` and `weft trace` are their consumers.
//!
//! A BPF ring buffer has one consumer position, which its reader advances as it goes: two
//! readers at once would each skip what the other took, and race on the position. So a reader
//! first takes an exclusive lock, flock(2) on `<bpffs root>/readers/<ring>` (a directory:
//! bpffs holds no regular files). The kernel drops the lock when the reader exits, however it
//! exits (`kill -9` included), so a lock is never stale, and the second reader is told who
//! holds the ring rather than waiting.
//!
//! Records the ring had no room for are counted per CPU in weft_ring_lost by the programs; a
//! reader reports what was lost since the last report and keeps that in the map's upper slots,
//! which the programs never write, so nothing races and no loss is told twice.
//!
//! A ring can be replaced while someone follows it (`weft apply` with another
//! bpfExportBufferSizeMB, or a teardown and a new apply): the old ring, held open by the reader
//! only, would never see another record, so a follower checks the pin and moves to the new
//! ring (`follow_pin`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBuffer, RingBufferBuilder};

use crate::bpf::maps::{self, Event, Plain};
use crate::bpf::Pins;

/// Which ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    Flows,
    Trace,
}

impl Ring {
    pub fn map(self) -> &'static str {
        match self {
            Ring::Flows => maps::FLOWS,
            Ring::Trace => maps::TRACE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ring::Flows => "flows",
            Ring::Trace => "trace",
        }
    }

    /// weft_ring_lost slots: what the programs count, what readers have reported.
    fn lost_slots(self) -> (u32, u32) {
        match self {
            Ring::Flows => (maps::LOST_FLOWS, maps::LOST_FLOWS_SEEN),
            Ring::Trace => (maps::LOST_TRACE, maps::LOST_TRACE_SEEN),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("map {name} is not pinned under {root}; has `weft apply` run with this --bpffs?")]
    NotPinned { name: &'static str, root: PathBuf },
    #[error("another `weft {ring}` is reading {path} (a ring buffer has a single reader); stop it first")]
    Busy { ring: &'static str, path: PathBuf },
    #[error("the readers' lock directory: {0}")]
    LockDir(crate::statedir::StateDirError),
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: libbpf_rs::Error,
    },
}

fn map_id(m: &MapHandle) -> Option<u32> {
    m.info().ok().map(|i| i.info.id)
}

/// Opens the pinned ring and loss counter and a ring buffer manager on the ring whose
/// callback queues decoded records into `got`.
fn attach(
    pins: &Pins,
    ring: Ring,
    got: &Rc<RefCell<VecDeque<Event>>>,
) -> Result<(MapHandle, u32, RingBuffer<'static>, MapHandle), RingError> {
    let map_err = |name: &'static str| move |source| RingError::Map { name, source };
    let map = MapHandle::from_pinned_path(pins.map(ring.map())).map_err(map_err(ring.map()))?;
    let lost =
        MapHandle::from_pinned_path(pins.map(maps::RING_LOST)).map_err(map_err(maps::RING_LOST))?;
    let sink = got.clone();
    let mut b = RingBufferBuilder::new();
    b.add(&map, move |data: &[u8]| {
        // A record of another size would be another layout: skip it rather than guess.
        if let Some(e) = Event::from_bytes(data) {
            sink.borrow_mut().push_back(e);
        }
        0
    })
    .map_err(map_err(ring.map()))?;
    let rb = b.build().map_err(map_err(ring.map()))?;
    let id = map_id(&map).unwrap_or(0);
    Ok((map, id, rb, lost))
}

/// The lock a reader of `ring` holds: `<root>/readers/<ring>`.
pub fn lock_path(pins: &Pins, ring: Ring) -> PathBuf {
    pins.root.join("readers").join(ring.name())
}

/// The one reader of a ring.
pub struct Reader {
    ring: Ring,
    pins: Pins,
    /// The id of the ring being read.
    id: u32,
    rb: RingBuffer<'static>,
    /// What the callback has decoded and the caller not yet taken.
    got: Rc<RefCell<VecDeque<Event>>>,
    /// The ring's own fd, kept open while the manager above polls it.
    _map: MapHandle,
    lost: MapHandle,
    /// Held for the reader's lifetime.
    _lock: File,
}

impl Reader {
    /// Takes the ring's lock and attaches to it.
    pub fn open(pins: &Pins, ring: Ring) -> Result<Reader, RingError> {
        for name in [ring.map(), maps::RING_LOST] {
            if !pins.map(name).exists() {
                return Err(RingError::NotPinned {
                    name,
                    root: pins.root.clone(),
                });
            }
        }
        let path = lock_path(pins, ring);
        let lock_err = |source| RingError::Lock {
            path: path.clone(),
            source,
        };
        // The readers' directory is root's alone, as the rest of the pin root: a lock another
        // user could take (or plant in its place) would keep root's reader out.
        crate::statedir::ensure(&pins.root.join("readers")).map_err(RingError::LockDir)?;
        let lock = crate::statedir::open_lock_dir(&path).map_err(RingError::LockDir)?;
        // SAFETY: a valid fd of a file we hold open.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(RingError::Busy {
                    ring: ring.name(),
                    path: pins.map(ring.map()),
                });
            }
            return Err(lock_err(e));
        }
        let got: Rc<RefCell<VecDeque<Event>>> = Rc::default();
        let (map, id, rb, lost) = attach(pins, ring, &got)?;
        Ok(Reader {
            ring,
            pins: pins.clone(),
            id,
            rb,
            got,
            _map: map,
            lost,
            _lock: lock,
        })
    }

    /// Moves to the ring pinned now if it is not the one being read (the records left in the
    /// old one are taken first). Returns whether it moved; a ring not pinned at all (between a
    /// teardown and the next apply) is waited for.
    pub fn follow_pin(&mut self) -> Result<bool, RingError> {
        let Ok(pinned) = MapHandle::from_pinned_path(self.pins.map(self.ring.map())) else {
            return Ok(false);
        };
        if map_id(&pinned) == Some(self.id) || !self.pins.map(maps::RING_LOST).exists() {
            return Ok(false);
        }
        let _ = self.rb.consume();
        let (map, id, rb, lost) = attach(&self.pins, self.ring, &self.got)?;
        (self._map, self.id, self.rb, self.lost) = (map, id, rb, lost);
        Ok(true)
    }

    /// Every record the ring holds now, oldest first.
    pub fn drain(&mut self) -> Result<Vec<Event>, RingError> {
        self.rb.consume().map_err(|source| RingError::Map {
            name: self.ring.map(),
            source,
        })?;
        Ok(self.got.borrow_mut().drain(..).collect())
    }

    /// Waits up to `timeout` for records; returns those that came (maybe none). A signal
    /// ends the wait early.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Event>, RingError> {
        let rc = self.rb.poll_raw(timeout);
        if rc < 0 && rc != -libc::EINTR {
            return Err(RingError::Map {
                name: self.ring.map(),
                source: libbpf_rs::Error::from_raw_os_error(-rc),
            });
        }
        Ok(self.got.borrow_mut().drain(..).collect())
    }

    /// Records lost (the ring was full) since the last report, by any reader.
    pub fn lost(&mut self) -> Result<u64, RingError> {
        let (count, seen) = self.ring.lost_slots();
        let err = |source| RingError::Map {
            name: maps::RING_LOST,
            source,
        };
        let per_cpu = |slot: u32| -> Result<Vec<u64>, RingError> {
            Ok(self
                .lost
                .lookup_percpu(slot.as_bytes(), MapFlags::ANY)
                .map_err(err)?
                .unwrap_or_default()
                .iter()
                .map(|v| u64::from_bytes(v).unwrap_or(0))
                .collect())
        };
        let now = per_cpu(count)?;
        let before = per_cpu(seen)?;
        let new: u64 = now
            .iter()
            .zip(before.iter().chain(std::iter::repeat(&0)))
            .map(|(n, b)| n.wrapping_sub(*b))
            .sum();
        if new != 0 {
            let values: Vec<Vec<u8>> = now.iter().map(|n| n.to_ne_bytes().to_vec()).collect();
            self.lost
                .update_percpu(seen.as_bytes(), &values, MapFlags::ANY)
                .map_err(err)?;
        }
        Ok(new)
    }
}
