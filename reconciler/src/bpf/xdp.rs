//! XDP's cache of its fast path (weft_xdp_cache, bpf-src/include/xdp.h): each CPU keeps the
//! verdicts it looked up last, stamped with weft_xdp_gen as it read it before the lookup. A
//! change to weft_xdp_host4 or weft_xdp_src4 is followed by `void_cache`, so that nothing
//! cached before it is used after it.

use std::time::Duration;

use libbpf_rs::MapHandle;

use super::maps::spec;
use super::pinned::Pinned as _;
use super::{BpfError, Pins};

/// Bumps the generation twice, a millisecond apart. The first voids what was cached before the
/// change; the second what a CPU cached while the change was landing, had it read the new
/// generation before the map's new entry (a weakly ordered CPU may).
pub fn void_cache(m: &MapHandle) -> Result<(), libbpf_rs::Error> {
    bump(m)?;
    std::thread::sleep(Duration::from_millis(1));
    bump(m)
}

fn bump(m: &MapHandle) -> Result<(), libbpf_rs::Error> {
    let gen = spec::XDP_GEN.lookup(m, &0)?.unwrap_or(0);
    if gen == crate::abi::XDP_GEN_OFF {
        return Ok(());
    }
    spec::XDP_GEN.update(m, &0, &(gen + 1))
}

/// Turns the cache on or off: off, every packet is looked up in the maps. On, at a generation
/// no entry cached before can carry: the clock's nanoseconds.
pub fn set_cache(m: &MapHandle, on: bool) -> Result<(), libbpf_rs::Error> {
    let gen = if on {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now.as_nanos() as u64).min(crate::abi::XDP_GEN_OFF - 1)
    } else {
        crate::abi::XDP_GEN_OFF
    };
    spec::XDP_GEN.update(m, &0, &gen)
}

/// `void_cache` on the pinned weft_xdp_gen; nothing where it is not pinned (no XDP program of
/// this build has run there, so nothing is cached).
pub fn void_pinned_cache(pins: &Pins) -> Result<(), BpfError> {
    if !pins.map(spec::XDP_GEN.name).exists() {
        return Ok(());
    }
    let m = spec::XDP_GEN.open(pins)?;
    void_cache(&m).map_err(|source| BpfError::Map {
        name: spec::XDP_GEN.name.into(),
        source,
    })
}
