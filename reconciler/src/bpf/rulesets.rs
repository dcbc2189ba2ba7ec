//! weft_pol_rs: compiled rulesets, each an array map of its own cells found under the
//! ruleset's id (`bpftool map create ... type array`, `map update`, `map freeze`, then `map
//! update` of the outer map with the new map). A ruleset is written once and frozen: a changed
//! policy is a new ruleset under a new id, so nothing a program may be reading ever changes
//! under it, and deleting a ruleset from weft_pol_rs lets the kernel free its cells once no
//! program holds them.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::maps::POL_RS;
use super::{BpfError, Pins};
use crate::policy::tables::{Cells, CELL_WORDS};

const CELL_BYTES: u32 = (4 * CELL_WORDS) as u32;
/// Cells per BPF_MAP_UPDATE_BATCH / LOOKUP_BATCH call.
const BATCH: usize = 65_536;

fn err(name: &str) -> impl Fn(libbpf_rs::Error) -> BpfError + '_ {
    move |source| BpfError::Map {
        name: name.to_string(),
        source,
    }
}

fn outer(pins: &Pins) -> Result<MapHandle, BpfError> {
    MapHandle::from_pinned_path(pins.map(POL_RS)).map_err(err(POL_RS))
}

/// Writes `cells` into a new frozen array and adds it to weft_pol_rs under `id`, replacing
/// whatever was there.
pub fn load(pins: &Pins, id: u32, cells: &Cells) -> Result<(), BpfError> {
    let name = format!("wrs_{id:08x}");
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        // As the template in weft_defs_maps.h: the kernel refuses others in weft_pol_rs.
        map_flags: libbpf_sys::BPF_F_INNER_MAP | libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    let n = cells.len() as u32;
    let inner = MapHandle::create(MapType::Array, Some(&name), 4, CELL_BYTES, n, &opts)
        .map_err(err(&name))?;
    // Written through a shared mapping: one copy of the cells, no syscall per cell.
    let len = cells.len() * CELL_BYTES as usize;
    let mapped = Mapping::new(inner.as_fd().as_raw_fd(), len).map_err(|e| BpfError::Map {
        name: name.clone(),
        source: libbpf_rs::Error::from(e),
    })?;
    mapped.write(&cells.as_bytes());
    std::mem::drop(mapped);
    inner.freeze().map_err(err(&name))?;
    let fd = inner.as_fd().as_raw_fd() as u32;
    outer(pins)?
        .update(&id.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
        .map_err(err(POL_RS))
}

/// A writable shared mapping of an mmapable array map; unmapped on drop (the kernel refuses to
/// freeze a map while a writable mapping exists).
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(fd: i32, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the map's pages; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn write(&self, bytes: &[u8]) {
        assert!(bytes.len() <= self.len);
        // SAFETY: the mapping is `len` writable bytes and nothing else aliases it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.cast::<u8>(), bytes.len())
        };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are the mapping made in new.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Removes ruleset `id` from weft_pol_rs; one that is not there is already gone.
pub fn drop(pins: &Pins, id: u32) -> Result<(), BpfError> {
    match outer(pins)?.delete(&id.to_ne_bytes()) {
        Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => Err(err(POL_RS)(e)),
        _ => Ok(()),
    }
}

/// The cells of one ruleset, read back from its array.
pub fn read_one(inner: &MapHandle) -> Result<Cells, BpfError> {
    let name = inner.name().to_string_lossy().into_owned();
    let n = inner.max_entries() as usize;
    let mut bytes = vec![0u8; n * CELL_BYTES as usize];
    for (k, v) in inner
        .lookup_batch(BATCH as u32, MapFlags::ANY, MapFlags::ANY)
        .map_err(err(&name))?
    {
        let i = u32::from_ne_bytes(k[..4].try_into().expect("4-byte key")) as usize;
        if i < n && v.len() == CELL_BYTES as usize {
            bytes[i * CELL_BYTES as usize..(i + 1) * CELL_BYTES as usize].copy_from_slice(&v);
        }
    }
    Ok(Cells::from_bytes(&bytes).expect("whole cells"))
}

/// Every ruleset in weft_pol_rs, by id.
pub fn read_all(pins: &Pins) -> Result<BTreeMap<u32, Arc<Cells>>, BpfError> {
    let outer = outer(pins)?;
    let mut out = BTreeMap::new();
    for k in outer.keys() {
        let Some(v) = outer.lookup(&k, MapFlags::ANY).map_err(err(POL_RS))? else {
            continue;
        };
        let (Ok(id), Ok(map_id)) = (
            <[u8; 4]>::try_from(&k[..]).map(u32::from_ne_bytes),
            <[u8; 4]>::try_from(&v[..]).map(u32::from_ne_bytes),
        ) else {
            continue;
        };
        let inner = MapHandle::from_map_id(map_id).map_err(err(POL_RS))?;
        out.insert(id, Arc::new(read_one(&inner)?));
    }
    Ok(out)
}

/// The array map of ruleset `id`, for tools and tests that look inside.
pub fn open(pins: &Pins, id: u32) -> Result<Option<MapHandle>, BpfError> {
    let Some(v) = outer(pins)?
        .lookup(&id.to_ne_bytes(), MapFlags::ANY)
        .map_err(err(POL_RS))?
    else {
        return Ok(None);
    };
    let map_id = u32::from_ne_bytes(v[..4].try_into().expect("a map id"));
    MapHandle::from_map_id(map_id)
        .map(Some)
        .map_err(err(POL_RS))
}
