//! Attaching programs to an interface's tc hooks: TCX links (kernel 6.6+, pinned so they
//! outlive weft and can be switched to a new program in place) or, where TCX is missing or
//! FelixConfiguration asks for it, a legacy clsact filter with weft's handle and priority.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use libbpf_rs::libbpf_sys;

use super::Hook;

pub use crate::objects::{AttachMode, CgroupHook};

/// weft's legacy tc filter: handle 0x3ef7 ("weft" on a phone keypad, near enough), priority 1.
pub const TC_HANDLE: u32 = 0x3ef7;
pub const TC_PRIORITY: u32 = 1;

/// The kernel's attach type of a hook's link.
fn tcx_type(hook: Hook) -> libbpf_sys::bpf_attach_type {
    match hook {
        Hook::Ingress => libbpf_sys::BPF_TCX_INGRESS,
        Hook::Egress => libbpf_sys::BPF_TCX_EGRESS,
        Hook::Xdp => libbpf_sys::BPF_XDP,
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        // libbpf returns -errno and sets errno.
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(rc)
    }
}

/// Whether this kernel has TCX: a query of the TCX hook of `lo` succeeds where it exists.
pub fn tcx_supported() -> bool {
    query_tcx(1, Hook::Ingress).is_ok()
}

/// Attaches `prog` to the hook with a link pinned at `pin`: TCX for the tc hooks (`bpftool
/// net` shows it as tcx), an XDP link for XDP (in the driver where it has XDP, as veth does,
/// else generic; `generic` asks for generic mode whatever the driver has).
pub fn attach_tcx(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    hook: Hook,
    pin: &Path,
    generic: bool,
) -> io::Result<()> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        // For an XDP link, the flags are XDP's attach flags.
        flags: if hook == Hook::Xdp && generic {
            libbpf_sys::XDP_FLAGS_SKB_MODE
        } else {
            0
        },
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is valid for the call.
    let fd = check(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, tcx_type(hook), &opts)
    })?;
    // SAFETY: fd is a new link fd we own.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = cpath(pin)?;
    // SAFETY: valid fd and NUL-terminated path.
    if let Err(e) = check(unsafe { libbpf_sys::bpf_obj_pin(link.as_raw_fd(), path.as_ptr()) }) {
        // Dropping the unpinned link detaches it again: nothing is left half-done.
        drop(link);
        return Err(e);
    }
    Ok(())
}

fn open_pinned(pin: &Path) -> io::Result<OwnedFd> {
    let path = cpath(pin)?;
    // SAFETY: NUL-terminated path.
    let fd = check(unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) })?;
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Switches a pinned TCX link to `prog` in place: the hook never runs without a program.
pub fn update_tcx(pin: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
    let link = open_pinned(pin)?;
    // SAFETY: valid fds; null opts means no expectations about the old program.
    check(unsafe {
        libbpf_sys::bpf_link_update(link.as_raw_fd(), prog.as_raw_fd(), std::ptr::null())
    })?;
    Ok(())
}

/// Detaches a pinned TCX link and removes its pin. A missing pin is success.
pub fn detach_tcx(pin: &Path) -> io::Result<()> {
    let link = match open_pinned(pin) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: valid link fd. A link whose interface is gone is already detached (ENOLINK).
    match check(unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) }) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the XDP program on interface `ifindex` runs in the kernel's generic (skb) mode.
pub fn xdp_generic(ifindex: u32) -> io::Result<bool> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is valid for the call.
    check(unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) })?;
    Ok(u32::from(opts.attach_mode) == libbpf_sys::XDP_ATTACHED_SKB)
}

/// A pinned TCX link, as the kernel describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcxLink {
    /// 0 once the interface is gone (the link is then defunct).
    pub ifindex: u32,
    pub hook: Option<Hook>,
    pub prog_id: u32,
}

/// Reads a pinned TCX or XDP link. A link of another kind is reported as having no hook.
pub fn read_tcx(pin: &Path) -> io::Result<TcxLink> {
    let (info, _) = link_info(pin)?;
    if info.type_ == libbpf_sys::BPF_LINK_TYPE_XDP {
        // SAFETY: type_ says the kernel filled in the xdp member of the union.
        let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
        return Ok(TcxLink {
            ifindex,
            hook: Some(Hook::Xdp),
            prog_id: info.prog_id,
        });
    }
    if info.type_ != libbpf_sys::BPF_LINK_TYPE_TCX {
        return Ok(TcxLink {
            ifindex: 0,
            hook: None,
            prog_id: info.prog_id,
        });
    }
    // SAFETY: type_ says the kernel filled in the tcx member of the union.
    let (ifindex, attach_type) = unsafe {
        (
            info.__bindgen_anon_1.tcx.ifindex,
            info.__bindgen_anon_1.tcx.attach_type,
        )
    };
    let hook = match attach_type {
        libbpf_sys::BPF_TCX_INGRESS => Some(Hook::Ingress),
        libbpf_sys::BPF_TCX_EGRESS => Some(Hook::Egress),
        _ => None,
    };
    Ok(TcxLink {
        ifindex,
        hook,
        prog_id: info.prog_id,
    })
}

fn link_info(pin: &Path) -> io::Result<(libbpf_sys::bpf_link_info, OwnedFd)> {
    let link = open_pinned(pin)?;
    let mut info = libbpf_sys::bpf_link_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
    // SAFETY: info is a zeroed bpf_link_info of the size passed.
    check(unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            link.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_link_info).cast(),
            &mut len,
        )
    })?;
    Ok((info, link))
}

/// The program of any pinned link, to find links still using an old program.
pub fn link_prog_id(pin: &Path) -> io::Result<u32> {
    Ok(link_info(pin)?.0.prog_id)
}

/// Switches any pinned link to `prog` in place.
pub fn update_link(pin: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
    update_tcx(pin, prog)
}

/// The kernel's attach type of a cgroup hook.
fn cgroup_attach_type(hook: CgroupHook) -> libbpf_sys::bpf_attach_type {
    match hook {
        CgroupHook::Connect4 => libbpf_sys::BPF_CGROUP_INET4_CONNECT,
        CgroupHook::Sendmsg4 => libbpf_sys::BPF_CGROUP_UDP4_SENDMSG,
        CgroupHook::Recvmsg4 => libbpf_sys::BPF_CGROUP_UDP4_RECVMSG,
    }
}

/// Attaches `prog` to a cgroup's hook with a link pinned at `pin` (`bpftool cgroup attach`).
pub fn attach_cgroup(
    prog: BorrowedFd<'_>,
    cgroup: &Path,
    hook: CgroupHook,
    pin: &Path,
) -> io::Result<()> {
    let dir = std::fs::File::open(cgroup)?;
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is valid for the call.
    let fd = check(unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            dir.as_raw_fd(),
            cgroup_attach_type(hook),
            &opts,
        )
    })?;
    // SAFETY: fd is a new link fd we own.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = cpath(pin)?;
    // SAFETY: valid fd and NUL-terminated path.
    check(unsafe { libbpf_sys::bpf_obj_pin(link.as_raw_fd(), path.as_ptr()) })?;
    Ok(())
}

/// A pinned cgroup link: which cgroup (by id, the inode number of its directory), which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupLink {
    pub cgroup_id: u64,
    pub hook: Option<CgroupHook>,
    pub prog_id: u32,
}

pub fn read_cgroup(pin: &Path) -> io::Result<CgroupLink> {
    let (info, _) = link_info(pin)?;
    if info.type_ != libbpf_sys::BPF_LINK_TYPE_CGROUP {
        return Ok(CgroupLink {
            cgroup_id: 0,
            hook: None,
            prog_id: info.prog_id,
        });
    }
    // SAFETY: type_ says the kernel filled in the cgroup member of the union.
    let (cgroup_id, attach_type) = unsafe {
        (
            info.__bindgen_anon_1.cgroup.cgroup_id,
            info.__bindgen_anon_1.cgroup.attach_type,
        )
    };
    let hook = CgroupHook::ALL
        .into_iter()
        .find(|h| cgroup_attach_type(*h) == attach_type);
    Ok(CgroupLink {
        cgroup_id,
        hook,
        prog_id: info.prog_id,
    })
}

/// The id the kernel gives a cgroup directory (its inode number).
pub fn cgroup_id(cgroup: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(cgroup)?.ino())
}

/// Detaches any pinned link and removes its pin; missing is success.
pub fn detach_link(pin: &Path) -> io::Result<()> {
    detach_tcx(pin)
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid systems).
pub fn cgroup2_root() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fs) = (f.next()?, f.next()?, f.next()?);
        (fs == "cgroup2").then(|| dir.into())
    })
}

/// This process's network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+); 0 if unknown.
pub fn netns_cookie() -> u64 {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket/getsockopt/close calls with valid buffers.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return 0;
        }
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        libc::close(fd);
        if rc == 0 {
            cookie
        } else {
            0
        }
    }
}

/// The programs attached to an interface's TCX hook, in order (`bpftool net show dev`).
pub fn query_tcx(ifindex: u32, hook: Hook) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _,
        prog_ids: ids.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.count = ids.len() as u32;
    // SAFETY: prog_ids points at `count` writable u32s.
    check(unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, tcx_type(hook), &mut opts) })?;
    // SAFETY: count and prog_cnt share the union; the kernel wrote the number of programs.
    let n = unsafe { opts.__bindgen_anon_1.count } as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

fn tc_hook(ifindex: u32, hook: Hook) -> (libbpf_sys::bpf_tc_hook, libbpf_sys::bpf_tc_opts) {
    let h = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: match hook {
            Hook::Ingress => libbpf_sys::BPF_TC_INGRESS,
            // XDP is always a link; legacy tc is never asked for it.
            Hook::Egress | Hook::Xdp => libbpf_sys::BPF_TC_EGRESS,
        },
        ..Default::default()
    };
    let o = libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        handle: TC_HANDLE,
        priority: TC_PRIORITY,
        ..Default::default()
    };
    (h, o)
}

/// Attaches (or replaces) weft's clsact filter on the hook (`tc filter replace ... handle 0x3ef7
/// prio 1 bpf da`), creating the clsact qdisc if needed. Other filters are left alone.
pub fn attach_tc(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> io::Result<()> {
    let (mut h, mut o) = tc_hook(ifindex, hook);
    // SAFETY: valid hook struct; EEXIST means the qdisc is there already.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut h) };
    if rc < 0 && rc != -libc::EEXIST {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    o.prog_fd = prog.as_raw_fd();
    o.flags = libbpf_sys::BPF_TC_F_REPLACE;
    // SAFETY: valid hook and opts.
    check(unsafe { libbpf_sys::bpf_tc_attach(&h, &mut o) })?;
    Ok(())
}

/// Removes weft's clsact filter from the hook; missing is success. The qdisc stays (others may
/// use it).
pub fn detach_tc(ifindex: u32, hook: Hook) -> io::Result<()> {
    let (h, o) = tc_hook(ifindex, hook);
    // SAFETY: valid hook and opts with prog fields zero, as bpf_tc_detach requires.
    match check(unsafe { libbpf_sys::bpf_tc_detach(&h, &o) }) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The program in weft's clsact filter on the hook, if any.
pub fn query_tc(ifindex: u32, hook: Hook) -> io::Result<Option<u32>> {
    let (h, mut o) = tc_hook(ifindex, hook);
    // SAFETY: valid hook and opts.
    match check(unsafe { libbpf_sys::bpf_tc_query(&h, &mut o) }) {
        Ok(_) => Ok(Some(o.prog_id)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(None),
        Err(e) => Err(e),
    }
}
