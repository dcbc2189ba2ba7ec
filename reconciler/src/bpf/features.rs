//! What this kernel offers of what weft uses, found by asking it (libbpf's probes load a
//! trivial program or create a tiny map), and what weft does where something is missing: fail
//! with the feature's name, fall back to another way, or leave one part off and say which
//! setting does the same on purpose. `weft apply`, `weft run` and `weft status` report it, so
//! that nobody meets a raw libbpf error for a kernel that is simply too old.

use std::path::Path;

use libbpf_rs::libbpf_sys;

/// What weft does without a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "without", content = "then")]
pub enum Without {
    /// Nothing works without it: apply and run refuse, naming it and what to do.
    Required(&'static str),
    /// weft does the same another way.
    Instead(&'static str),
    /// One part of weft is off; the string says which, and the setting that turns it off on
    /// purpose.
    Off(&'static str),
    /// Nothing changes for weft.
    NotNeeded(&'static str),
}

/// One thing weft uses, and whether this kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// The first Linux release that has it.
    pub since: &'static str,
    pub present: bool,
    /// What weft needs it for.
    pub used_for: &'static str,
    #[serde(flatten)]
    pub without: Without,
}

impl Feature {
    /// One line for people: what is missing, and what weft does about it.
    pub fn describe(&self) -> String {
        let then = match self.without {
            Without::Required(fix) => format!("weft cannot run without it: {fix}"),
            Without::Instead(s) => format!("weft uses {s} instead"),
            Without::Off(s) => format!("off: {s}"),
            Without::NotNeeded(s) => s.to_string(),
        };
        format!(
            "{} (Linux {}+, for {}) is missing: {then}",
            self.name, self.since, self.used_for
        )
    }
}

/// What the kernel has, feature by feature.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Features {
    pub release: String,
    pub features: Vec<Feature>,
}

impl Features {
    /// The features this kernel lacks.
    pub fn missing(&self) -> impl Iterator<Item = &Feature> {
        self.features.iter().filter(|f| !f.present)
    }

    /// The missing features weft cannot do without.
    pub fn missing_required(&self) -> Vec<&Feature> {
        self.missing()
            .filter(|f| matches!(f.without, Without::Required(_)))
            .collect()
    }

    /// Whether the named feature is present (false for a name not probed).
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.present)
    }
}

pub const BPFFS: &str = "BPF filesystem";
pub const TC_PROGRAMS: &str = "BPF tc programs";
pub const RINGBUF: &str = "BPF ring buffers";
pub const TCX: &str = "TCX";
pub const SYSCALL_PROGRAMS: &str = "BPF syscall programs with bpf_for_each_map_elem";
pub const CGROUP_SOCK_ADDR: &str = "cgroup socket-address programs";
pub const KERNEL_BTF: &str = "kernel BTF";
pub const JIT: &str = "BPF JIT";

/// The facts a probe found, before weft's judgement of them (a pure function makes that).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probed {
    pub bpffs: bool,
    pub tc_programs: bool,
    pub ringbuf: bool,
    pub tcx: bool,
    pub syscall_programs: bool,
    pub cgroup_sock_addr: bool,
    pub kernel_btf: bool,
    pub jit: bool,
}

/// The kernel runs cgroup socket-address programs (connect-time load balancing). Asked once
/// per process: each probe loads a program, and host facts are gathered at every reconcile.
pub fn cgroup_sock_addr_programs() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: a plain probe; null options are allowed.
    *HAS.get_or_init(|| unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(
            libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            std::ptr::null(),
        ) == 1
    })
}

/// The kernel runs the conntrack collector: syscall programs calling bpf_for_each_map_elem.
/// Asked once per process.
pub fn syscall_programs() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: plain probes; null options are allowed.
    *HAS.get_or_init(|| unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(libbpf_sys::BPF_PROG_TYPE_SYSCALL, std::ptr::null())
            == 1
            && libbpf_sys::libbpf_probe_bpf_helper(
                libbpf_sys::BPF_PROG_TYPE_SYSCALL,
                libbpf_sys::BPF_FUNC_for_each_map_elem,
                std::ptr::null(),
            ) == 1
    })
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether programs are JIT-compiled: a trivial program loaded and asked for its machine code
/// (net.core.bpf_jit_enable exists only in the initial network namespace, where weft may not
/// run).
pub fn jit() -> bool {
    // r0 = 0; exit
    let insns = [
        libbpf_sys::bpf_insn {
            code: (libbpf_sys::BPF_ALU64 | libbpf_sys::BPF_MOV | libbpf_sys::BPF_K) as u8,
            ..Default::default()
        },
        libbpf_sys::bpf_insn {
            code: (libbpf_sys::BPF_JMP | libbpf_sys::BPF_EXIT) as u8,
            ..Default::default()
        },
    ];
    // SAFETY: insns holds the number of instructions passed; null options are allowed.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
            std::ptr::null(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    if fd < 0 {
        return false;
    }
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: fd is ours; info is a zeroed bpf_prog_info of the size passed.
    let rc = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd,
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    rc == 0 && info.jited_prog_len > 0
}

impl Probed {
    /// Asks the running kernel; `bpffs` is where weft pins (its parent must be a bpffs).
    pub fn probe(bpffs: &Path) -> Probed {
        let prog = |t| {
            // SAFETY: a plain probe; null options are allowed.
            unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(t, std::ptr::null()) == 1 }
        };
        let map = |t| {
            // SAFETY: as above.
            unsafe { libbpf_sys::libbpf_probe_bpf_map_type(t, std::ptr::null()) == 1 }
        };
        let root = if bpffs.exists() {
            bpffs
        } else {
            bpffs.parent().unwrap_or(bpffs)
        };
        Probed {
            bpffs: super::is_bpffs(root),
            tc_programs: prog(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS),
            ringbuf: map(libbpf_sys::BPF_MAP_TYPE_RINGBUF),
            tcx: super::link::tcx_supported(),
            syscall_programs: syscall_programs(),
            cgroup_sock_addr: cgroup_sock_addr_programs() && super::link::cgroup2_root().is_some(),
            kernel_btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            jit: jit(),
        }
    }

    /// weft's judgement: each feature with what weft does without it.
    pub fn judge(&self) -> Vec<Feature> {
        let f = |name, since, present, used_for, without| Feature {
            name,
            since,
            present,
            used_for,
            without,
        };
        vec![
            f(
                BPFFS,
                "4.4",
                self.bpffs,
                "pinning maps and links so that the dataplane outlives weft",
                Without::Required("mount one with `mount -t bpf bpf /sys/fs/bpf`, or give --bpffs a directory on one"),
            ),
            f(
                TC_PROGRAMS,
                "4.1",
                self.tc_programs,
                "policy, conntrack and NAT on every interface",
                Without::Required("run as root (or with CAP_BPF and CAP_NET_ADMIN) on a kernel built with CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF"),
            ),
            f(
                RINGBUF,
                "5.8",
                self.ringbuf,
                "flow logs and packet traces, built into every tc program",
                Without::Required("weft needs Linux 5.8 or later; see the README's kernel table"),
            ),
            f(
                TCX,
                "6.6",
                self.tcx,
                "attaching tc programs as links that are switched in place",
                Without::Instead(
                    "legacy tc (a clsact qdisc and a cls_bpf direct-action filter, handle 0x3ef7 \
                     priority 1; bpfAttachType: TC asks for it anywhere)",
                ),
            ),
            f(
                SYSCALL_PROGRAMS,
                "5.14",
                self.syscall_programs,
                "the conntrack collector",
                Without::Off(
                    "conntrack entries leave by LRU eviction only (the daemon's \
                     --conntrack-gc-interval 0 does the same on purpose)",
                ),
            ),
            f(
                CGROUP_SOCK_ADDR,
                "4.17 (with cgroup2 mounted)",
                self.cgroup_sock_addr,
                "connect-time load balancing",
                Without::Off(
                    "host processes reach services through the bpfin/bpfout pair \
                     (bpfConnectTimeLoadBalancing: Disabled does the same on purpose)",
                ),
            ),
            f(
                KERNEL_BTF,
                "5.4 (CONFIG_DEBUG_INFO_BTF)",
                self.kernel_btf,
                "nothing: weft's objects carry their own BTF and need no CO-RE",
                Without::NotNeeded("weft works the same"),
            ),
            f(
                JIT,
                "3.18",
                self.jit,
                "running programs as machine code",
                Without::NotNeeded(
                    "programs run in the interpreter, several times slower \
                     (sysctl net.core.bpf_jit_enable=1)",
                ),
            ),
        ]
    }
}

/// Probes the running kernel.
pub fn probe(bpffs: &Path) -> Features {
    Features {
        release: kernel_release(),
        features: Probed::probe(bpffs).judge(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Probed {
        Probed {
            bpffs: true,
            tc_programs: true,
            ringbuf: true,
            tcx: true,
            syscall_programs: true,
            cgroup_sock_addr: true,
            kernel_btf: true,
            jit: true,
        }
    }

    #[test]
    fn a_kernel_with_everything_misses_nothing() {
        assert_eq!(all().judge().iter().filter(|f| !f.present).count(), 0);
    }

    #[test]
    fn a_6_1_kernel_attaches_with_tc_and_needs_nothing_else() {
        let k = Features {
            release: "6.1.0".into(),
            features: Probed {
                tcx: false,
                ..all()
            }
            .judge(),
        };
        assert!(k.missing_required().is_empty());
        let missing: Vec<String> = k.missing().map(Feature::describe).collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with("TCX (Linux 6.6+"), "{}", missing[0]);
        assert!(missing[0].contains("legacy tc"), "{}", missing[0]);
    }

    #[test]
    fn without_bpffs_or_ring_buffers_weft_cannot_run_and_says_which() {
        let k = Features {
            release: "5.4.0".into(),
            features: Probed {
                bpffs: false,
                ringbuf: false,
                syscall_programs: false,
                kernel_btf: false,
                ..all()
            }
            .judge(),
        };
        let required: Vec<&str> = k.missing_required().iter().map(|f| f.name).collect();
        assert_eq!(required, [BPFFS, RINGBUF]);
        let gc = k.missing().find(|f| f.name == SYSCALL_PROGRAMS).unwrap();
        assert!(gc.describe().contains("LRU eviction only"));
        let btf = k.missing().find(|f| f.name == KERNEL_BTF).unwrap();
        assert_eq!(btf.without, Without::NotNeeded("weft works the same"));
    }
}
