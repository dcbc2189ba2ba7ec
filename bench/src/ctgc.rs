//! `weft-bench ct-gc`: what one conntrack sweep of 1,000,000 entries costs, wall and CPU time,
//! for weft's collector (the weft_ctgc program walking the map in the kernel) beside two
//! userspace sweeps measured in the same run on the same entries:
//!  - one entry at a time (BPF_MAP_GET_NEXT_KEY, LOOKUP_ELEM, then DELETE_ELEM per expired
//!    entry): how Calico's userspace scan reads the map;
//!  - batched (BPF_MAP_LOOKUP_BATCH, 4096 entries per call, and DELETE_BATCH): the best a
//!    userspace sweep can do with today's syscalls.
//!
//! All three apply the same rules (the userspace ones mirror weft_ctgc.bpf.c) and must delete
//! the same number of entries; the command checks that.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use libbpf_rs::MapHandle;
use weft::bpf::ctgc::{Collector, CtTimeouts};
use weft::bpf::load::ProgramSettings;
use weft::bpf::maps::{self, Ct4Key, Ct4Value, MapSizes, Plain};
use weft::daemon::ctgc::thread_cpu;
use weft_golden::harness::Harness;

use crate::report::{self, Common, Report, Spread};
use std::process::ExitCode;

pub const COMMAND: &str = "weft-bench ct-gc";

const ENTRIES: u32 = 1_000_000;
const RUNS: usize = 3;
const BATCH: u32 = 4096;

/// One timeout for every state, shorter than Calico's hour for established flows so that
/// "expired" needs only a few minutes of uptime, and longer than filling the map takes, so
/// that fresh entries stay fresh until the sweep. A sweep costs the same whatever the
/// timeouts are: every entry is visited and judged.
fn timeouts() -> CtTimeouts {
    let s = Duration::from_secs(100);
    CtTimeouts {
        creation_grace: Duration::from_secs(1),
        tcp_syn_sent: s,
        tcp_established: s,
        tcp_fins_seen: s,
        tcp_reset_seen: s,
        udp: s,
        generic: s,
        icmp: s,
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The i-th entry: a mix of TCP (established, closing, opening), UDP and ICMP flows between
/// distinct address pairs; every `expire_every`-th entry idle for 200 s, the rest fresh.
fn entry(i: u32, now: u64, expire_every: u32) -> (Ct4Key, Ct4Value) {
    let a = 0x0a00_0000 | (i & 0x00ff_ffff);
    let b = 0x0b00_0000 | (i.rotate_left(7) & 0x00ff_ffff);
    let proto = match i % 10 {
        0..=5 => 6,
        6..=8 => 17,
        _ => 1,
    };
    let key = Ct4Key {
        addr_a: a.to_be(),
        addr_b: b.to_be(),
        port_a: (i % 50_000) as u16 + 1024,
        port_b: 443,
        proto,
        pad: [0; 3],
    };
    let idle = if expire_every > 0 && i.is_multiple_of(expire_every) {
        200_000_000_000
    } else {
        0
    };
    let mut v = Ct4Value {
        created_ns: now - 250_000_000_000,
        last_seen_ns: now - idle,
        ..Default::default()
    };
    if proto == 6 {
        let (fa, fb) = match i % 6 {
            0..=3 => (
                maps::CT_LEG_SYN | maps::CT_LEG_ACK,
                maps::CT_LEG_SYN | maps::CT_LEG_ACK,
            ),
            4 => (maps::CT_LEG_SYN, 0),
            _ => (
                maps::CT_LEG_ACK | maps::CT_LEG_FIN,
                maps::CT_LEG_ACK | maps::CT_LEG_FIN,
            ),
        };
        v.leg_a.tcp_flags = fa;
        v.leg_b.tcp_flags = fb;
    }
    v.leg_a.approved_by = 1;
    (key, v)
}

fn fill(map: &MapHandle, expire_every: u32) {
    let started = Instant::now();
    let now = now_ns();
    let mut keys = Vec::with_capacity(BATCH as usize * 16);
    let mut values = Vec::with_capacity(BATCH as usize * 80);
    let flush = |keys: &mut Vec<u8>, values: &mut Vec<u8>| {
        let mut count = (keys.len() / std::mem::size_of::<Ct4Key>()) as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: keys and values hold `count` entries of the map's key and value sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        assert_eq!(
            rc,
            0,
            "filling conntrack: {}",
            std::io::Error::last_os_error()
        );
        keys.clear();
        values.clear();
    };
    for i in 0..ENTRIES {
        let (k, v) = entry(i, now, expire_every);
        keys.extend_from_slice(k.as_bytes());
        values.extend_from_slice(v.as_bytes());
        if keys.len() / std::mem::size_of::<Ct4Key>() == BATCH as usize {
            flush(&mut keys, &mut values);
        }
    }
    if !keys.is_empty() {
        flush(&mut keys, &mut values);
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "filling took {:?}: fresh entries would not be fresh",
        started.elapsed()
    );
    let n = count(map);
    assert_eq!(
        n,
        u64::from(ENTRIES),
        "the map holds every entry (no LRU eviction)"
    );
}

fn count(map: &MapHandle) -> u64 {
    use libbpf_rs::MapCore;
    map.keys().count() as u64
}

/// weft_ctgc_expired() of weft_ctgc.bpf.c, in Rust, for the userspace sweeps.
fn expired(k: &Ct4Key, v: &Ct4Value, now: u64, t: &CtTimeouts) -> bool {
    let ns = |d: Duration| d.as_nanos() as u64;
    let age = now.saturating_sub(v.last_seen_ns);
    if now.saturating_sub(v.created_ns) < ns(t.creation_grace) {
        return false;
    }
    let (fa, fb) = (v.leg_a.tcp_flags, v.leg_b.tcp_flags);
    match k.proto {
        6 => {
            if (fa | fb) & maps::CT_LEG_RST != 0 && age > ns(t.tcp_reset_seen) {
                return true;
            }
            if fa & fb & maps::CT_LEG_FIN != 0 && age > ns(t.tcp_fins_seen) {
                return true;
            }
            if fa & fb & maps::CT_LEG_ACK != 0 {
                age > ns(t.tcp_established)
            } else {
                age > ns(t.tcp_syn_sent)
            }
        }
        17 => age > ns(t.udp),
        1 => age > ns(t.icmp),
        _ => age > ns(t.generic),
    }
}

/// One entry at a time: walk the keys, look each up, decide, then delete the expired ones
/// (deleting while walking would restart the walk).
fn sweep_one_by_one(map: &MapHandle, t: &CtTimeouts) -> u64 {
    use libbpf_rs::{MapCore, MapFlags};
    let now = now_ns();
    let mut doomed = Vec::new();
    for k in map.keys() {
        let Ok(Some(v)) = map.lookup(&k, MapFlags::ANY) else {
            continue;
        };
        let (Some(key), Some(val)) = (Ct4Key::from_bytes(&k), Ct4Value::from_bytes(&v)) else {
            continue;
        };
        if expired(&key, &val, now, t) {
            doomed.push(k);
        }
    }
    let mut n = 0;
    for k in &doomed {
        if map.delete(k).is_ok() {
            n += 1;
        }
    }
    n
}

/// Batched: read the map 4096 entries per system call, delete the expired ones in batches.
fn sweep_batched(map: &MapHandle, t: &CtTimeouts) -> u64 {
    let now = now_ns();
    let (ks, vs) = (
        std::mem::size_of::<Ct4Key>(),
        std::mem::size_of::<Ct4Value>(),
    );
    let mut keys = vec![0u8; BATCH as usize * ks];
    let mut values = vec![0u8; BATCH as usize * vs];
    let mut doomed: Vec<u8> = Vec::new();
    let fd = map.as_fd().as_raw_fd();
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut in_batch = 0u64;
    let mut out_batch = 0u64;
    let mut first = true;
    loop {
        let mut count = BATCH;
        // SAFETY: keys and values have room for BATCH entries; the batch tokens are u64s
        // (large enough for a hash map's bucket cursor).
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    (&mut in_batch as *mut u64).cast()
                },
                (&mut out_batch as *mut u64).cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = std::io::Error::last_os_error();
        let done = rc != 0;
        if done && err.raw_os_error() != Some(libc::ENOENT) {
            panic!("lookup batch: {err}");
        }
        for i in 0..count as usize {
            let k = Ct4Key::from_bytes(&keys[i * ks..(i + 1) * ks]).expect("key");
            let v = Ct4Value::from_bytes(&values[i * vs..(i + 1) * vs]).expect("value");
            if expired(&k, &v, now, t) {
                doomed.extend_from_slice(k.as_bytes());
            }
        }
        if done {
            break;
        }
        first = false;
        in_batch = out_batch;
    }
    let mut n = 0;
    for chunk in doomed.chunks(BATCH as usize * ks) {
        let mut count = (chunk.len() / ks) as u32;
        // SAFETY: chunk holds `count` keys of the map's key size.
        let rc = unsafe {
            libbpf_sys::bpf_map_delete_batch(fd, chunk.as_ptr().cast(), &mut count, &opts)
        };
        assert_eq!(rc, 0, "delete batch: {}", std::io::Error::last_os_error());
        n += u64::from(count);
    }
    n
}

#[derive(Clone, Copy)]
struct Figure {
    wall: Duration,
    cpu: Duration,
    deleted: u64,
}

fn measure(f: impl FnOnce() -> u64) -> Figure {
    let (w, c) = (Instant::now(), thread_cpu());
    let deleted = f();
    Figure {
        wall: w.elapsed(),
        cpu: thread_cpu().saturating_sub(c),
        deleted,
    }
}

pub fn run(common: Common, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("weft-bench ct-gc: takes no arguments but --json and --quick");
        return ExitCode::from(2);
    }
    let runs = if common.quick { 1 } else { RUNS };
    let sizes = MapSizes {
        conntrack: 1 << 21,
        ..MapSizes::default()
    };
    let Some(h) = Harness::load_sized("bench_ctgc", ProgramSettings::default(), &sizes) else {
        eprintln!("weft-bench: needs root and a bpffs at /sys/fs/bpf");
        return ExitCode::from(2);
    };
    if now_ns() < 260_000_000_000 {
        eprintln!("weft-bench ct-gc: the machine must be up for 260 s (the entries' ages)");
        return ExitCode::from(2);
    }
    let map = h.map(maps::CT4);
    let collector = Collector::load(&h.pins)
        .expect("loading weft_ctgc")
        .expect("a conntrack map");
    let t = timeouts();

    let mut rows = Vec::new();
    for (label, every) in [("none expired", 0), ("half expired", 2)] {
        type Sweeper<'a> = Box<dyn Fn() -> u64 + 'a>;
        let methods: [(&str, Sweeper); 3] = [
            (
                "weft_ctgc (BPF, in the kernel)",
                Box::new(|| {
                    collector
                        .sweep(&t)
                        .map(|s| s.deleted())
                        .expect("weft_ctgc sweep")
                }),
            ),
            (
                "userspace, one entry at a time",
                Box::new(|| sweep_one_by_one(&map, &t)),
            ),
            (
                "userspace, batched (4096)",
                Box::new(|| sweep_batched(&map, &t)),
            ),
        ];
        let mut measured: Vec<(&str, Spread, Spread, u64)> = Vec::new();
        for (name, f) in &methods {
            let (mut walls, mut cpus, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                fill(&map, every);
                let fig = measure(f);
                walls.push(fig.wall.as_secs_f64() * 1e3);
                cpus.push(fig.cpu.as_secs_f64() * 1e3);
                deleted.push(fig.deleted);
            }
            deleted.dedup();
            assert_eq!(deleted.len(), 1, "{name}: runs deleted {deleted:?}");
            let (w, c) = (Spread::of(&walls), Spread::of(&cpus));
            measured.push((name, w.expect("runs"), c.expect("runs"), deleted[0]));
        }
        let want = measured[0].3;
        for (name, _, _, d) in &measured {
            assert_eq!(*d, want, "{name} deleted {d}, weft_ctgc {want}");
        }
        // Each userspace sweep is the baseline of weft's: how much of its CPU weft needs.
        let weft = measured[0];
        for (name, wall, cpu, deleted) in &measured[1..] {
            rows.push(report::Row {
                name: format!("{ENTRIES} entries, {label}: weft_ctgc CPU vs {name}"),
                value: weft.2.median,
                unit: "ms CPU".into(),
                runs: Some(weft.2.runs),
                min: Some(weft.2.min),
                max: Some(weft.2.max),
                baseline: Some(cpu.median),
                baseline_name: Some(format!(
                    "{name}: {:.1} ms CPU, {:.1} ms wall",
                    cpu.median, wall.median
                )),
                ratio: Some(weft.2.median / cpu.median),
                detail: Some(format!(
                    "weft_ctgc {:.1} ms wall; {deleted} deleted",
                    weft.1.median
                )),
                command: COMMAND.into(),
                ..Default::default()
            });
        }
    }
    // Clear the map so the harness's cleanup has little to free.
    fill(&map, 1);
    let _ = collector.sweep(&t);

    let report = Report {
        subcommand: "ct-gc".into(),
        title: format!("conntrack garbage collection of {ENTRIES} entries"),
        rows,
        notes: vec![format!(
            "One sweep of a conntrack map (LRU hash, 2,097,152 slots) holding {ENTRIES} entries (TCP established, opening and closing, UDP, ICMP), none or half of them idle past their timeout, median of {runs} runs; each run refills the map. CPU time is the calling thread's (CLOCK_THREAD_CPUTIME_ID): the BPF program runs inside its system call. The three sweeps apply the same rules and must delete the same entries (checked). Calico's sweep reads the map one entry at a time from userspace, every 10 s."
        )],
    };
    if common.json {
        report.print_json();
    } else {
        println!("{}\n$ {COMMAND}\n", report.title);
        println!("{:<70} {:>10} {:>10}", "sweep", "weft ms", "x baseline");
        for r in &report.rows {
            println!(
                "{:<70} {:>10.1} {:>10.2}\n    baseline {}; {}",
                r.name,
                r.value,
                r.ratio.unwrap_or_default(),
                r.baseline_name.clone().unwrap_or_default(),
                r.detail.clone().unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}
