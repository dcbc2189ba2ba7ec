//! Loading the BPF objects: open the embedded object, fill in its settings (.rodata) and map
//! sizes, reuse the maps already pinned (so every load shares one conntrack and one set of
//! policy tables), let the verifier check it, and pin what is new.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, ProgramHandle};

use super::maps::{MapDef, MapSizes};
use super::skel::ctlb::WeftCtlbSkelBuilder;
use super::skel::hep::WeftHepSkelBuilder;
use super::skel::wep::{self, WeftWepSkelBuilder};
use super::{BpfError, Pins};

pub use crate::objects::{EpToHost, Object, ProgramIdentity, ProgramSettings, Rpf, XdpAccel};

/// The map definitions of the embedded objects, without loading anything into the kernel.
pub fn object_map_defs() -> Result<Vec<MapDef>, BpfError> {
    let mut storage = MaybeUninit::uninit();
    let open = WeftWepSkelBuilder::default()
        .open(&mut storage)
        .map_err(|source| BpfError::Open {
            object: "weft_wep",
            source,
        })?;
    Ok(open
        .open_object()
        .maps()
        .filter(|m| !m.name().to_string_lossy().contains('.'))
        .map(|m| MapDef {
            name: m.name().to_string_lossy().into_owned(),
            map_type: format!("{:?}", m.map_type()).to_lowercase(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            flags: m.map_flags(),
        })
        .collect())
}

/// The definition of a pinned map, read from the kernel.
pub fn pinned_map_def(pins: &Pins, name: &str) -> Result<Option<MapDef>, BpfError> {
    let path = pins.map(name);
    if !path.exists() {
        return Ok(None);
    }
    let m = match MapHandle::from_pinned_path(&path) {
        Ok(m) => m,
        // Unpinned since the check above.
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(BpfError::Map {
                name: name.into(),
                source,
            })
        }
    };
    let info = m.info().map_err(|source| BpfError::Map {
        name: name.into(),
        source,
    })?;
    Ok(Some(MapDef {
        name: name.into(),
        map_type: format!("{:?}", m.map_type()).to_lowercase(),
        key_size: m.key_size(),
        value_size: m.value_size(),
        max_entries: m.max_entries(),
        flags: info.info.map_flags,
    }))
}

/// Programs just loaded, by name; their file descriptors keep them alive until pinned or
/// attached.
pub struct Loaded {
    pub programs: BTreeMap<String, ProgramHandle>,
}

/// Writes `settings`, and `object_id`, into a skeleton's .rodata (weft_settings.h): the one
/// list of them, for the loader and for `weft verifier`'s variants. The skeleton types differ
/// per object but have these fields alike.
macro_rules! write_rodata {
    ($rodata:expr, $object_id:expr, $settings:expr) => {{
        let (rodata, settings): (_, ProgramSettings) = ($rodata, $settings);
        rodata.weft_object_id = $object_id;
        rodata.weft_ep_to_host_action = settings.ep_to_host.code();
        rodata.weft_ctlb_udp = u8::from(settings.ctlb_udp);
        rodata.weft_netns_cookie = settings.netns_cookie;
        rodata.weft_tunnel = u8::from(settings.tunnel);
        rodata.weft_rpf = settings.rpf.code();
        rodata.weft_mss_clamp = settings.mss_clamp;
        rodata.weft_dsr = u8::from(settings.dsr);
        rodata.weft_xdp_accel = u8::from(settings.xdp_accel.is_some());
        if let Some(x) = settings.xdp_accel {
            rodata.weft_vxlan_vni = x.vni;
            rodata.weft_vxlan_port = x.port;
            rodata.weft_vxlan_mtu = x.mtu;
            rodata.weft_xdp_untracked_on = u8::from(x.untracked);
            rodata.weft_vtep_addr = $crate::bpf::maps::addr_be(x.vtep);
            rodata.weft_vtep_mac = x.vtep_mac;
        }
    }};
}
pub(crate) use write_rodata;

/// The skeleton types differ per object but are used identically: one body for all of them.
macro_rules! load_skel {
    ($builder:ty, $object:expr, $pins:expr, $sizes:expr, $settings:expr) => {{
        let (object, pins, sizes, settings): (Object, &Pins, &MapSizes, ProgramSettings) =
            ($object, $pins, $sizes, $settings);
        let oname = object.name();
        pins.ensure()?;
        route_libbpf_log();
        let mut storage = MaybeUninit::uninit();
        let mut open =
            <$builder>::default()
                .open(&mut storage)
                .map_err(|source| BpfError::Open {
                    object: oname,
                    source,
                })?;
        {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("weft objects have .rodata");
            write_rodata!(rodata, object.id(), settings);
        }
        let mut fresh = Vec::new();
        for mut m in open.open_object_mut().maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if name.contains('.') {
                continue;
            }
            let want = sizes.max_entries(&name).unwrap_or(m.max_entries());
            let err = |source| BpfError::Map {
                name: name.clone(),
                source,
            };
            m.set_max_entries(want).map_err(err)?;
            match pinned_map_def(pins, &name)? {
                Some(pinned) => {
                    let wanted = MapDef {
                        name: name.clone(),
                        map_type: format!("{:?}", m.map_type()).to_lowercase(),
                        key_size: m.key_size(),
                        value_size: m.value_size(),
                        max_entries: want,
                        flags: m.map_flags(),
                    };
                    if pinned != wanted {
                        return Err(BpfError::MapIncompatible {
                            name,
                            pinned: pinned.shape(),
                            wanted: wanted.shape(),
                        });
                    }
                    m.reuse_pinned_map(pins.map(&name)).map_err(err)?;
                }
                None => fresh.push(name),
            }
        }
        let mut skel = open.load().map_err(|source| BpfError::Load {
            object: oname,
            source,
        })?;
        for name in &fresh {
            let path = pins.map(name);
            for mut m in libbpf_rs::skel::Skel::object_mut(&mut skel).maps_mut() {
                if m.name().to_string_lossy() == name.as_str() {
                    m.pin(&path).map_err(|source| BpfError::Map {
                        name: name.clone(),
                        source,
                    })?;
                }
            }
        }
        let mut programs = BTreeMap::new();
        for p in libbpf_rs::skel::Skel::object(&skel).progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            let handle = ProgramHandle::try_from(&p).map_err(|source| BpfError::Program {
                name: name.clone(),
                source,
            })?;
            programs.insert(name, handle);
        }
        Ok(Loaded { programs })
    }};
}

/// Loads one object. Maps already pinned are reused (they must have the shape `sizes` asks
/// for: the plan replaces any that do not); new ones are pinned.
pub fn load(
    object: Object,
    pins: &Pins,
    sizes: &MapSizes,
    settings: ProgramSettings,
) -> Result<Loaded, BpfError> {
    match object {
        Object::Wep => load_skel!(WeftWepSkelBuilder, Object::Wep, pins, sizes, settings),
        Object::Hep => load_skel!(WeftHepSkelBuilder, Object::Hep, pins, sizes, settings),
        Object::Ctlb => load_skel!(WeftCtlbSkelBuilder, Object::Ctlb, pins, sizes, settings),
    }
}

/// The workload object (tests and benchmarks load it on its own).
pub fn load_wep(
    pins: &Pins,
    sizes: &MapSizes,
    settings: ProgramSettings,
) -> Result<Loaded, BpfError> {
    load(Object::Wep, pins, sizes, settings)
}

/// Reads back which object and settings a loaded program was built from, through its .rodata.
pub fn program_identity(prog: BorrowedFd<'_>) -> Result<Option<ProgramIdentity>, BpfError> {
    for id in prog_map_ids(prog).map_err(|source| BpfError::Query {
        what: "program maps".into(),
        source,
    })? {
        let Ok(m) = MapHandle::from_map_id(id) else {
            continue;
        };
        if !m.name().to_string_lossy().ends_with(".rodata") {
            continue;
        }
        let value = m
            .lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .map_err(|source| BpfError::Map {
                name: m.name().to_string_lossy().into_owned(),
                source,
            })?;
        let Some(bytes) = value else { continue };
        // The map holds the section as compiled (no tail padding); the generated struct may be
        // padded: copy what there is into a zeroed struct.
        let mut rodata = std::mem::MaybeUninit::<wep::types::rodata>::zeroed();
        let n = bytes.len().min(std::mem::size_of::<wep::types::rodata>());
        // SAFETY: rodata is repr(C) of integers, for which zero and any bytes are valid; n is
        // within both buffers.
        let rodata = unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), rodata.as_mut_ptr().cast::<u8>(), n);
            rodata.assume_init()
        };
        let (Some(ep_to_host), Some(rpf)) = (
            EpToHost::from_code(rodata.weft_ep_to_host_action),
            Rpf::from_code(rodata.weft_rpf),
        ) else {
            continue;
        };
        return Ok(Some(ProgramIdentity {
            object_id: rodata.weft_object_id,
            settings: ProgramSettings {
                ep_to_host,
                ctlb_udp: rodata.weft_ctlb_udp != 0,
                netns_cookie: rodata.weft_netns_cookie,
                tunnel: rodata.weft_tunnel != 0,
                rpf,
                mss_clamp: rodata.weft_mss_clamp,
                dsr: rodata.weft_dsr != 0,
                xdp_accel: (rodata.weft_xdp_accel != 0).then(|| XdpAccel {
                    vni: rodata.weft_vxlan_vni,
                    port: rodata.weft_vxlan_port,
                    mtu: rodata.weft_vxlan_mtu,
                    untracked: rodata.weft_xdp_untracked_on != 0,
                    vtep: super::maps::ip(rodata.weft_vtep_addr),
                    vtep_mac: rodata.weft_vtep_mac,
                }),
            },
        }));
    }
    Ok(None)
}

/// What the kernel says of a loaded program (`bpftool prog show`).
pub(crate) fn prog_info(
    prog: BorrowedFd<'_>,
) -> std::io::Result<libbpf_rs::libbpf_sys::bpf_prog_info> {
    prog_info_into(prog, libbpf_rs::libbpf_sys::bpf_prog_info::default())
}

/// `bpf_obj_get_info_by_fd` into `info`, whose pointers (if any) say what else to fill in.
fn prog_info_into(
    prog: BorrowedFd<'_>,
    mut info: libbpf_rs::libbpf_sys::bpf_prog_info,
) -> std::io::Result<libbpf_rs::libbpf_sys::bpf_prog_info> {
    let mut len = std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a bpf_prog_info of the size passed; an array it points at has the
    // length it gives.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
            prog.as_raw_fd(),
            (&mut info as *mut libbpf_rs::libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

/// The ids of the maps a program uses (`bpftool prog show` lists them as map_ids).
fn prog_map_ids(prog: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let n = prog_info(prog)?.nr_map_ids;
    let mut ids = vec![0u32; n as usize];
    let info = prog_info_into(
        prog,
        libbpf_rs::libbpf_sys::bpf_prog_info {
            nr_map_ids: n,
            map_ids: ids.as_mut_ptr() as u64,
            ..Default::default()
        },
    )?;
    ids.truncate(info.nr_map_ids.min(n) as usize);
    Ok(ids)
}

/// Routes libbpf's messages (the verifier's log above all: a rejection reaches Rust only as
/// "Permission denied") into the log, once.
pub fn route_libbpf_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, |level, msg: String| {
            let msg = msg.trim_end();
            // Asking an interface without a clsact qdisc which tc filter weft has there is
            // how weft learns it has none; the kernel's complaint about it is no news.
            // Likewise a clsact qdisc without weft's filter on a hook, and creating the
            // qdisc for an interface's second hook when the first made it already.
            if msg.contains("Parent Qdisc doesn't exists")
                || msg.contains("Cannot find specified filter chain")
                || msg.contains("Exclusivity flag on, cannot modify")
            {
                return;
            }
            // Without a subscriber (a test harness, say) tracing would drop the verifier's
            // log: say it plainly then.
            if !tracing::dispatcher::has_been_set() {
                eprintln!("libbpf: {msg}");
                return;
            }
            match level {
                libbpf_rs::PrintLevel::Warn => tracing::warn!("libbpf: {msg}"),
                libbpf_rs::PrintLevel::Info => tracing::info!("libbpf: {msg}"),
                libbpf_rs::PrintLevel::Debug => tracing::debug!("libbpf: {msg}"),
            }
        })));
    });
}
