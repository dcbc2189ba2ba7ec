//! Reading and writing a pinned map through its typed spec (`maps::MapSpec`): the kernel
//! side of the specs, kept apart so that `maps` (names, sizes, encodings) stays pure.

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::maps::{MapSpec, Plain};

/// What a map spec can do with the map pinned by its name.
pub trait Pinned<K, V> {
    /// The map pinned under `pins` (`bpftool map show pinned ...`).
    fn open(&self, pins: &super::Pins) -> Result<MapHandle, super::BpfError>;
    /// `bpftool map lookup`.
    fn lookup(&self, m: &MapHandle, key: &K) -> Result<Option<V>, libbpf_rs::Error>;
    /// `bpftool map lookup` of a per-CPU map: each CPU's value.
    fn lookup_percpu(&self, m: &MapHandle, key: &K) -> Result<Option<Vec<V>>, libbpf_rs::Error>;
    /// `bpftool map update`.
    fn update(&self, m: &MapHandle, key: &K, value: &V) -> Result<(), libbpf_rs::Error>;
    /// The keys of `m` that decode (`bpftool map dump`, keys only).
    fn keys<'a>(&self, m: &'a MapHandle) -> impl Iterator<Item = K> + 'a
    where
        K: 'a;
}

impl<K: Plain, V: Plain> Pinned<K, V> for MapSpec<K, V> {
    fn open(&self, pins: &super::Pins) -> Result<MapHandle, super::BpfError> {
        MapHandle::from_pinned_path(pins.map(self.name)).map_err(|source| super::BpfError::Map {
            name: self.name.into(),
            source,
        })
    }

    fn lookup(&self, m: &MapHandle, key: &K) -> Result<Option<V>, libbpf_rs::Error> {
        Ok(m.lookup(key.as_bytes(), MapFlags::ANY)?
            .and_then(|v| V::from_bytes(&v)))
    }

    fn lookup_percpu(&self, m: &MapHandle, key: &K) -> Result<Option<Vec<V>>, libbpf_rs::Error> {
        Ok(m.lookup_percpu(key.as_bytes(), MapFlags::ANY)?
            .map(|cpus| cpus.iter().filter_map(|v| V::from_bytes(v)).collect()))
    }

    fn update(&self, m: &MapHandle, key: &K, value: &V) -> Result<(), libbpf_rs::Error> {
        m.update(key.as_bytes(), value.as_bytes(), MapFlags::ANY)
    }

    fn keys<'a>(&self, m: &'a MapHandle) -> impl Iterator<Item = K> + 'a
    where
        K: 'a,
    {
        m.keys().filter_map(|k| K::from_bytes(&k))
    }
}
