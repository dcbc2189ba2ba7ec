//! Many map entries per system call: BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH and
//! BPF_MAP_DELETE_BATCH (what `bpftool map dump` would be with batches). A map of 100,000
//! service backends is read or written in a few dozen calls instead of 200,000.
//!
//! Hash maps have all three; map types without them (LPM tries) answer EINVAL or EOPNOTSUPP,
//! and then each entry gets a call of its own, as before.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{libbpf_sys, MapCore, MapFlags, MapHandle};

use super::maps::{Bytes, Entries};

/// Entries per call.
const BATCH: usize = 4096;

fn opts() -> libbpf_sys::bpf_map_batch_opts {
    libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    }
}

/// The error of a libbpf call that returned `rc` (libbpf returns -errno).
fn errno(rc: i32) -> Option<i32> {
    (rc < 0).then_some(-rc)
}

/// The kernel's own "not supported" (not in libc: it never leaves the kernel, except here).
const ENOTSUPP: i32 = 524;

fn unsupported(e: i32) -> bool {
    e == libc::EINVAL || e == libc::EOPNOTSUPP || e == ENOTSUPP
}

/// Whether `m` is an array: every index has a value, and a zero value stands for no entry
/// (read_all leaves it out, delete writes it).
fn is_array(m: &MapHandle) -> bool {
    m.map_type() == libbpf_rs::MapType::Array
}

/// Every entry of `m` (of an array, those that are not zero).
pub fn read_all(m: &MapHandle) -> Result<Entries, libbpf_rs::Error> {
    let mut out = match read_batched(m)? {
        Some(e) => e,
        None => {
            let mut out = Entries::new();
            for k in m.keys() {
                if let Some(v) = m.lookup(&k, MapFlags::ANY)? {
                    out.insert(Bytes::from_vec(k), Bytes::from_vec(v));
                }
            }
            out
        }
    };
    if is_array(m) {
        out.retain(|_, v| v.iter().any(|b| *b != 0));
    }
    Ok(out)
}

/// Every entry through BPF_MAP_LOOKUP_BATCH, or None where the map type has no batches.
fn read_batched(m: &MapHandle) -> Result<Option<Entries>, libbpf_rs::Error> {
    let (ks, vs) = (m.key_size() as usize, m.value_size() as usize);
    let mut out = Entries::new();
    let supported = each_batch(m, |keys, values, n| {
        for i in 0..n {
            out.insert(
                Bytes::from_slice(&keys[i * ks..(i + 1) * ks]),
                Bytes::from_slice(&values[i * vs..(i + 1) * vs]),
            );
        }
    })?;
    Ok(supported.then_some(out))
}

/// How many entries `m` holds, in a call per few thousand entries where the map type has
/// batches (one per entry otherwise, and for per-CPU maps, whose values are wider).
pub fn count(m: &MapHandle) -> Result<u64, libbpf_rs::Error> {
    use libbpf_rs::MapType;
    let per_cpu = matches!(
        m.map_type(),
        MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
    );
    if !per_cpu {
        let mut n = 0u64;
        if each_batch(m, |_, _, got| n += got as u64)? {
            return Ok(n);
        }
    }
    Ok(m.keys().count() as u64)
}

/// Calls `f` with each batch of `m`'s keys and values (and how many there are); false, with
/// `f` never called, where the map type has no batches. Not for per-CPU maps.
fn each_batch(
    m: &MapHandle,
    mut f: impl FnMut(&[u8], &[u8], usize),
) -> Result<bool, libbpf_rs::Error> {
    let (ks, vs) = (m.key_size() as usize, m.value_size() as usize);
    let fd = m.as_fd().as_raw_fd();
    let mut count = BATCH;
    let mut keys = vec![0u8; count * ks];
    let mut values = vec![0u8; count * vs];
    // The position token: a bucket number for hash maps, a key for others.
    let token = ks.max(8);
    let mut in_batch: Option<Vec<u8>> = None;
    let mut out_batch = vec![0u8; token];
    let mut any = false;
    let o = opts();
    loop {
        let mut n = count as u32;
        let in_ptr = in_batch
            .as_mut()
            .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr().cast());
        // SAFETY: the buffers hold `count` keys and values and a token of at least a key.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                in_ptr,
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut n,
                &o,
            )
        };
        let err = errno(rc);
        match err {
            Some(e) if in_batch.is_none() && !any && unsupported(e) => return Ok(false),
            // A bucket with more entries than fit: again from the same place, with room.
            Some(libc::ENOSPC) => {
                count *= 2;
                keys.resize(count * ks, 0);
                values.resize(count * vs, 0);
                continue;
            }
            Some(e) if e != libc::ENOENT => {
                return Err(libbpf_rs::Error::from(io::Error::from_raw_os_error(e)))
            }
            _ => {}
        }
        if n > 0 {
            any = true;
            f(&keys, &values, n as usize);
        }
        if err == Some(libc::ENOENT) {
            return Ok(true);
        }
        in_batch = Some(out_batch.clone());
    }
}

/// Writes `entries` (`bpftool map update` each).
pub fn write<'a>(
    m: &MapHandle,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), libbpf_rs::Error> {
    let entries: Vec<(&[u8], &[u8])> = entries.into_iter().collect();
    let fd = m.as_fd().as_raw_fd();
    let o = opts();
    let mut done = 0;
    for chunk in entries.chunks(BATCH) {
        let keys: Vec<u8> = chunk.iter().flat_map(|(k, _)| k.iter().copied()).collect();
        let values: Vec<u8> = chunk.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let mut n = chunk.len() as u32;
        // SAFETY: keys and values hold n entries of the map's sizes (checked by the kernel).
        let rc = unsafe {
            libbpf_sys::bpf_map_update_batch(
                fd,
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut n,
                &o,
            )
        };
        match errno(rc) {
            None => done += chunk.len(),
            Some(e) if done == 0 && n == 0 && unsupported(e) => break,
            Some(e) => return Err(libbpf_rs::Error::from(io::Error::from_raw_os_error(e))),
        }
    }
    for (k, v) in &entries[done..] {
        m.update(k, v, MapFlags::ANY)?;
    }
    Ok(())
}

/// Deletes `keys`; keys already gone are no error. An array's are zeroed.
pub fn delete(m: &MapHandle, keys: &[Bytes]) -> Result<(), libbpf_rs::Error> {
    if is_array(m) {
        let zero = vec![0u8; m.value_size() as usize];
        return write(m, keys.iter().map(|k| (k.as_slice(), zero.as_slice())));
    }
    let fd = m.as_fd().as_raw_fd();
    let o = opts();
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        let flat: Vec<u8> = chunk.iter().flat_map(|k| k.iter().copied()).collect();
        let mut n = chunk.len() as u32;
        // SAFETY: flat holds n keys of the map's key size (checked by the kernel).
        let rc = unsafe { libbpf_sys::bpf_map_delete_batch(fd, flat.as_ptr().cast(), &mut n, &o) };
        match errno(rc) {
            None => rest = &rest[chunk.len()..],
            // The kernel stopped at a key that is not there: skip it, go on after it.
            Some(libc::ENOENT) => rest = &rest[(n as usize + 1).min(rest.len())..],
            Some(e) if n == 0 && unsupported(e) => {
                for k in rest {
                    match m.delete(k) {
                        Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                return Ok(());
            }
            Some(e) => return Err(libbpf_rs::Error::from(io::Error::from_raw_os_error(e))),
        }
    }
    Ok(())
}
