//! `weft-bench lookup`: what one lookup in a kernel LPM trie costs as it fills, and what
//! writing its entries costs one syscall at a time and in batches (BPF_MAP_UPDATE_BATCH).
//!
//! The probe (bpf-src/weft_probe.bpf.c) looks up a key built from the packet's addresses, as
//! weft's policy stages build theirs from a ruleset id and an address; its cost is reported
//! beside the same program without the lookup. Entries are random prefixes (/16 to /32) under
//! a handful of "ruleset" values, and the looked-up addresses fall inside entries.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::Instant;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramHandle};
use weft::bpf::skel::probe::WeftProbeSkelBuilder;
use weft::bpf::testrun::test_run;
use weft_golden::harness::IFINDEX;
use weft_golden::packet;

use crate::gen::Rng;
use crate::{median, print_machine};

const COMMAND: &str = "cargo run --release -p weft-bench -- lookup";
const SIZES: [usize; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
const RULESETS: u32 = 8;
const RUNS: usize = 5;
const REPEAT: u32 = 1_000_000;
/// Keys looked up per size (each its own measurement; the figure is their mean).
const PROBES: usize = 16;

fn key(prefixlen: u32, hi: u32, lo: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&prefixlen.to_ne_bytes());
    k[4..8].copy_from_slice(&hi.to_be_bytes());
    k[8..].copy_from_slice(&lo.to_be_bytes());
    k
}

struct Row {
    entries: usize,
    lookup_ns: f64,
    single_us: f64,
    batch_us: f64,
    delete_batch_us: f64,
}

pub fn run() -> std::process::ExitCode {
    if !weft_golden::kernel::available("weft-bench lookup") {
        return std::process::ExitCode::FAILURE;
    }
    weft::bpf::load::route_libbpf_log();
    let mut rows = Vec::new();
    for &n in &SIZES {
        let mut storage = MaybeUninit::uninit();
        let skel = WeftProbeSkelBuilder::default()
            .open(&mut storage)
            .and_then(|o| o.load())
            .expect("loading weft_probe");
        let map = &skel.maps.weft_probe_lpm;
        let none = ProgramHandle::try_from(&skel.progs.weft_probe_none).expect("probe");
        let lpm = ProgramHandle::try_from(&skel.progs.weft_probe_lpm_lookup).expect("probe");

        let mut rng = Rng::new(0x10_0c0b + n as u64);
        let mut entries: Vec<(u32, u32, u32)> = Vec::with_capacity(n);
        let mut seen = std::collections::HashSet::new();
        while entries.len() < n {
            let hi = 0x0a00_0000 + rng.below(u64::from(RULESETS)) as u32;
            let len = 16 + rng.below(17) as u32;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let lo = (rng.next() as u32) & mask;
            if seen.insert((hi, len, lo)) {
                entries.push((hi, len, lo));
            }
        }
        let keys: Vec<u8> = entries
            .iter()
            .flat_map(|&(hi, len, lo)| key(32 + len, hi, lo))
            .collect();
        let values: Vec<u8> = (0..n as u32).flat_map(|v| v.to_ne_bytes()).collect();

        // Writing: one syscall per entry into an empty map, then delete in one batch and
        // write again in batches of at most 64k.
        let t = Instant::now();
        for (k, v) in keys.chunks(12).zip(values.chunks(4)) {
            map.update(k, v, MapFlags::ANY).expect("update");
        }
        let single = t.elapsed();
        let t = Instant::now();
        for chunk in keys.chunks(12 * 65_536) {
            map.delete_batch(
                chunk,
                (chunk.len() / 12) as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .expect("BPF_MAP_DELETE_BATCH on an LPM trie");
        }
        let delete_batch = t.elapsed();
        assert_eq!(map.keys().count(), 0, "emptied");
        let t = Instant::now();
        for (kc, vc) in keys.chunks(12 * 65_536).zip(values.chunks(4 * 65_536)) {
            map.update_batch(kc, vc, (kc.len() / 12) as u32, MapFlags::ANY, MapFlags::ANY)
                .expect("BPF_MAP_UPDATE_BATCH on an LPM trie");
        }
        let batch = t.elapsed();

        // Lookups: addresses inside random entries (the longest match may be another entry).
        let mut per_probe = Vec::new();
        for _ in 0..PROBES {
            let (hi, len, lo) = entries[rng.below(n as u64) as usize];
            let host = if len == 32 {
                0
            } else {
                (rng.next() as u32) & ((1u32 << (32 - len)) - 1)
            };
            let pkt = packet::udp(Ipv4Addr::from(hi), 1, Ipv4Addr::from(lo | host), 2);
            let measure = |p: &ProgramHandle| {
                median(
                    (0..RUNS)
                        .map(|_| {
                            let r = test_run(p.as_fd(), &pkt, IFINDEX, REPEAT).expect("test run");
                            f64::from(r.duration_ns)
                        })
                        .collect(),
                )
            };
            let r = test_run(lpm.as_fd(), &pkt, IFINDEX, 1).expect("test run");
            assert_eq!(r.retval, -1, "the probe finds its entry");
            per_probe.push(measure(&lpm) - measure(&none));
        }
        let lookup_ns = per_probe.iter().sum::<f64>() / per_probe.len() as f64;
        let row = Row {
            entries: n,
            lookup_ns,
            single_us: single.as_secs_f64() * 1e6 / n as f64,
            batch_us: batch.as_secs_f64() * 1e6 / n as f64,
            delete_batch_us: delete_batch.as_secs_f64() * 1e6 / n as f64,
        };
        eprintln!("{n}: {:.1} ns per lookup", row.lookup_ns);
        rows.push(row);
    }
    println!("one lookup in a kernel LPM trie (key: 32-bit ruleset, 32-bit address), ns beyond the same program without it;");
    println!("mean over {PROBES} keys of the median of {RUNS} runs of repeat {REPEAT}; writes per entry into an empty trie");
    println!("$ {COMMAND}");
    print_machine();
    println!();
    println!(
        "{:>10} {:>12} {:>16} {:>16} {:>18}",
        "entries", "lookup ns", "update µs/entry", "batch µs/entry", "del batch µs/entry"
    );
    for r in &rows {
        println!(
            "{:>10} {:>12.1} {:>16.3} {:>16.3} {:>18.3}",
            r.entries, r.lookup_ns, r.single_us, r.batch_us, r.delete_batch_us
        );
    }
    std::process::ExitCode::SUCCESS
}
