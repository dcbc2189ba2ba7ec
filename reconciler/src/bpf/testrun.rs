//! BPF_PROG_TEST_RUN: running a loaded program on a packet without a network, for packet tests
//! and per-packet benchmarks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::libbpf_sys;

use super::skel::wep::types::__sk_buff;

/// What a test run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return code (tc: -1 pass on, 2 drop).
    pub retval: i32,
    /// The kernel's average time per run, in nanoseconds.
    pub duration_ns: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
}

/// Runs a tc program `repeat` times on `packet` (Ethernet first), as if on interface `ifindex`
/// (which must exist in the caller's network namespace).
pub fn test_run(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ifindex: u32,
    repeat: u32,
) -> io::Result<TestRun> {
    // SAFETY: __sk_buff is plain C data; all-zero is the "nothing set" context.
    let mut ctx: __sk_buff = unsafe { std::mem::zeroed() };
    ctx.ifindex = ifindex;
    run(prog, packet, &ctx, repeat)
}

/// `test_run` of a packet the host forwards: it came in on `ingress_ifindex` (which need not
/// exist: the kernel only records it, as skb->skb_iif).
pub fn test_run_forwarded(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ifindex: u32,
    ingress_ifindex: u32,
) -> io::Result<TestRun> {
    // SAFETY: as above.
    let mut ctx: __sk_buff = unsafe { std::mem::zeroed() };
    ctx.ifindex = ifindex;
    ctx.ingress_ifindex = ingress_ifindex;
    run(prog, packet, &ctx, 1)
}

/// BPF_PROG_TEST_RUN of `prog` on `packet` with context `ctx` (the program type's own).
fn run<C>(prog: BorrowedFd<'_>, packet: &[u8], ctx: &C, repeat: u32) -> io::Result<TestRun> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: packet.as_ptr().cast(),
        data_size_in: packet.len() as u32,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: out.len() as u32,
        ctx_in: (ctx as *const C).cast(),
        ctx_size_in: std::mem::size_of::<C>() as u32,
        repeat: repeat as i32,
        ..Default::default()
    };
    // SAFETY: every pointer in opts is valid for the sizes given.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    out.truncate(opts.data_size_out as usize);
    Ok(TestRun {
        retval: opts.retval as i32,
        duration_ns: opts.duration,
        data: out,
    })
}

/// struct xdp_md as BPF_PROG_TEST_RUN takes it: the packet's bounds as offsets (meta data
/// length, packet length) and the interface it arrives on.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs an XDP program `repeat` times on `packet`, as if received on interface `ifindex`
/// (which must exist in the caller's network namespace). The return code is XDP's: 1 drop,
/// 2 pass.
pub fn test_run_xdp(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ifindex: u32,
    repeat: u32,
) -> io::Result<TestRun> {
    let ctx = XdpMd {
        data_end: packet.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    run(prog, packet, &ctx, repeat)
}
