//! Conntrack garbage collection: the weft_ctgc program (bpf-src/weft_ctgc.bpf.c) sweeps the
//! pinned conntrack map inside the kernel, one pass per run, with Calico's timeouts
//! (BPFConntrackTimeouts). Userspace only hands it the timeouts and reads back what it deleted.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, ProgramHandle};

use super::load::{pinned_map_def, route_libbpf_log};
use super::maps::CT4;
use super::skel::ctgc::WeftCtgcSkelBuilder;
use super::{BpfError, Pins};

pub use crate::objects::CtTimeouts;

/// The timeouts in the order of the WEFT_CTGC_* indexes (weft_maps.h).
fn slots(t: &CtTimeouts) -> [Duration; SLOTS] {
    [
        t.creation_grace,
        t.tcp_syn_sent,
        t.tcp_established,
        t.tcp_fins_seen,
        t.tcp_reset_seen,
        t.udp,
        t.generic,
        t.icmp,
        Duration::ZERO,
    ]
}

/// WEFT_CTGC_SLOTS (generated, and checked against the generated context type below), and the
/// names of the slots as tallies.
use crate::abi::CTGC_SLOTS as SLOTS;
const _: () = assert!(std::mem::size_of::<Args>() == 8 * (2 * SLOTS + 3));
pub const EXPIRY_REASONS: [&str; SLOTS] = [
    "grace",
    "tcp-syn-sent",
    "tcp-established",
    "tcp-fins-seen",
    "tcp-reset-seen",
    "udp",
    "generic",
    "icmp",
    "nat-orphan",
];

/// struct weft_ctgc_args (weft_maps.h), generated from the object's BTF: the program's
/// context, in and out.
type Args = super::skel::ctgc::types::weft_ctgc_args;

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sweep {
    /// Entries visited.
    pub scanned: u64,
    /// Entries deleted, by the timeout that expired them ("nat-orphan": a service flow's
    /// forward entry whose reverse entry was gone).
    pub expired: std::collections::BTreeMap<&'static str, u64>,
    /// Forward entries of service flows deleted with their reverse entry.
    pub nat_fwd_deleted: u64,
}

impl Sweep {
    /// All entries deleted.
    pub fn deleted(&self) -> u64 {
        self.expired.values().sum::<u64>() + self.nat_fwd_deleted
    }
}

/// The loaded collector, bound to the pinned conntrack map. Loading costs a verification;
/// keep one and sweep with it as often as needed.
pub struct Collector {
    prog: ProgramHandle,
    /// The kernel's id of the conntrack map it sweeps.
    map_id: u32,
}

impl Collector {
    /// Loads the collector over the conntrack map pinned under `pins`; None when there is none
    /// (nothing has been applied: nothing to collect).
    pub fn load(pins: &Pins) -> Result<Option<Collector>, BpfError> {
        let Some(pinned) = pinned_map_def(pins, CT4)? else {
            return Ok(None);
        };
        let Some(map_id) = pinned_map_id(pins) else {
            return Ok(None);
        };
        route_libbpf_log();
        let mut storage = MaybeUninit::uninit();
        let mut open = WeftCtgcSkelBuilder::default()
            .open(&mut storage)
            .map_err(|source| BpfError::Open {
                object: "weft_ctgc",
                source,
            })?;
        for mut m in open.open_object_mut().maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            let err = |source| BpfError::Map {
                name: name.clone(),
                source,
            };
            if name.contains('.') {
                // The object's own globals (.bss: the pass's timeouts and tallies).
                continue;
            }
            if name == CT4 {
                // Whatever size the map has now: the collector follows it through resizes.
                m.set_max_entries(pinned.max_entries).map_err(err)?;
                m.reuse_pinned_map(pins.map(CT4)).map_err(err)?;
            } else {
                // The shared map definitions come along with the header; the collector uses
                // none of the others, and must not create (or pin) them.
                m.set_autocreate(false).map_err(err)?;
            }
        }
        let skel = open.load().map_err(|source| BpfError::Load {
            object: "weft_ctgc",
            source,
        })?;
        let prog =
            ProgramHandle::try_from(&skel.progs.weft_ctgc).map_err(|source| BpfError::Program {
                name: "weft_ctgc".into(),
                source,
            })?;
        Ok(Some(Collector { prog, map_id }))
    }

    /// False once the conntrack map pinned under `pins` is another map (a resize migrated it,
    /// or a teardown removed it): load a new collector.
    pub fn is_current(&self, pins: &Pins) -> bool {
        pinned_map_id(pins) == Some(self.map_id)
    }

    /// One pass over the conntrack map.
    pub fn sweep(&self, timeouts: &CtTimeouts) -> std::io::Result<Sweep> {
        let mut args = Args::default();
        for (slot, t) in args.timeout_ns.iter_mut().zip(slots(timeouts)) {
            *slot = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        }
        let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
            ctx_in: (&mut args as *mut Args).cast(),
            ctx_size_in: std::mem::size_of::<Args>() as u32,
            ..Default::default()
        };
        // SAFETY: ctx_in points at an Args of the size given; the kernel writes the program's
        // context back into it (syscall programs' contexts are in-out).
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(self.prog.as_fd().as_raw_fd(), &mut opts)
        };
        if rc < 0 {
            return Err(std::io::Error::from_raw_os_error(-rc));
        }
        Ok(Sweep {
            scanned: args.scanned,
            expired: EXPIRY_REASONS
                .iter()
                .zip(args.expired)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (*r, n))
                .collect(),
            nat_fwd_deleted: args.nat_fwd_deleted,
        })
    }
}

/// The kernel's id of the pinned conntrack map, if there is one.
fn pinned_map_id(pins: &Pins) -> Option<u32> {
    let m = MapHandle::from_pinned_path(pins.map(CT4)).ok()?;
    m.info().ok().map(|i| i.info.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_calicos_default_and_durations_win() {
        let t = weft_model::ConntrackTimeouts {
            creation_grace_period: weft_model::ConntrackTimeout::Auto,
            tcp_syn_sent: weft_model::ConntrackTimeout::After(Duration::from_secs(5)),
            tcp_established: weft_model::ConntrackTimeout::Auto,
            tcp_fins_seen: weft_model::ConntrackTimeout::Auto,
            tcp_reset_seen: weft_model::ConntrackTimeout::Auto,
            udp: weft_model::ConntrackTimeout::After(Duration::from_millis(1500)),
            generic: weft_model::ConntrackTimeout::Auto,
            icmp: weft_model::ConntrackTimeout::Auto,
        };
        let c = CtTimeouts::from_config(&t);
        assert_eq!(c.tcp_syn_sent, Duration::from_secs(5));
        assert_eq!(c.udp, Duration::from_millis(1500));
        assert_eq!(c.tcp_fins_seen, Duration::from_secs(30));
        assert_eq!(c.tcp_established, Duration::from_secs(3600));
        assert_eq!(slots(&c)[5], c.udp);
    }
}
