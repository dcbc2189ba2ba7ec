//! Loads weft's real BPF objects under a private bpffs root (so tests never touch a running
//! weft's pins), fills their maps and runs their programs with BPF_PROG_TEST_RUN.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use libbpf_rs::{MapCore, MapFlags, MapHandle, ProgramHandle};
use weft::bpf::load::{self, WepSettings};
use weft::bpf::maps::{
    self, Ct4Key, Ct4Value, Entries, IfaceValue, MapSizes, Plain, Route4Key, RouteValue,
};
use weft::bpf::testrun::{test_run, TestRun};
use weft::bpf::Pins;
use weft::policy::flat::RulesetSpec;
use weft::policy::{classify, tables};

/// The interface test packets arrive on: `lo`, which exists in every network namespace.
pub const IFINDEX: u32 = 1;

/// tc verdicts as the programs return them.
pub const PASS: i32 = -1;
pub const DROP: i32 = 2;

pub struct Harness {
    pub pins: Pins,
    progs: BTreeMap<String, ProgramHandle>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Harness {
    /// Loads the workload object, or returns None (after saying why) where the kernel cannot.
    pub fn load(test: &str) -> Option<Harness> {
        Self::load_with(test, WepSettings::default())
    }

    pub fn load_with(test: &str, settings: WepSettings) -> Option<Harness> {
        if !crate::kernel::available(test) {
            return None;
        }
        let root = PathBuf::from(format!(
            "/sys/fs/bpf/weft-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let pins = Pins::new(root);
        // Small maps: tests create many harnesses.
        let sizes = MapSizes {
            conntrack: 4096,
            if_state: 64,
            route: 1024,
            ip_sets: 65536,
        };
        let loaded = load::load_wep(&pins, &sizes, settings)
            .unwrap_or_else(|e| panic!("{test}: loading weft_wep: {e}"));
        Some(Harness {
            pins,
            progs: loaded.programs,
        })
    }

    pub fn map(&self, name: &str) -> MapHandle {
        MapHandle::from_pinned_path(self.pins.map(name))
            .unwrap_or_else(|e| panic!("map {name}: {e}"))
    }

    pub fn write(&self, map: &str, entries: &Entries) {
        let m = self.map(map);
        for (k, v) in entries {
            m.update(k, v, MapFlags::ANY)
                .unwrap_or_else(|e| panic!("writing {map}: {e}"));
        }
    }

    /// Makes `ifindex` a workload interface with the given rulesets.
    pub fn iface(&self, ifindex: u32, ruleset_in: u32, ruleset_out: u32) {
        let v = IfaceValue {
            flags: maps::IFACE_F_WORKLOAD,
            ruleset_in,
            ruleset_out,
            pad: 0,
            name: maps::c_name("test0"),
        };
        self.map(maps::IFACE)
            .update(ifindex.as_bytes(), v.as_bytes(), MapFlags::ANY)
            .expect("iface entry");
    }

    /// Adds a weft_rt4 entry.
    pub fn route(&self, addr: Ipv4Addr, len: u8, flags: u32, ifindex: u32) {
        let k = Route4Key {
            prefixlen: u32::from(len),
            addr: maps::addr_be(addr),
        };
        let v = RouteValue {
            flags,
            ifindex,
            next_hop: 0,
            pad: 0,
        };
        self.map(maps::RT4)
            .update(k.as_bytes(), v.as_bytes(), MapFlags::ANY)
            .expect("route entry");
    }

    /// Compiles and installs a ruleset; returns its id.
    pub fn ruleset(&self, spec: &RulesetSpec) -> u32 {
        let c = classify::compile(spec).expect("ruleset compiles");
        let id = tables::ruleset_id(&c);
        let e = tables::entries(id, &c);
        self.write(maps::POL4_ADDR, &e.addr);
        self.write(maps::POL4_CTX, &e.ctx);
        self.write(maps::POL_VERDICT, &e.verdict);
        id
    }

    pub fn prog(&self, name: &str) -> &ProgramHandle {
        self.progs
            .get(name)
            .unwrap_or_else(|| panic!("no program {name}"))
    }

    /// Runs program `prog` once on `packet`, arriving on IFINDEX.
    pub fn run(&self, prog: &str, packet: &[u8]) -> TestRun {
        self.run_repeat(prog, packet, 1)
    }

    pub fn run_repeat(&self, prog: &str, packet: &[u8], repeat: u32) -> TestRun {
        test_run(self.prog(prog).as_fd(), packet, IFINDEX, repeat)
            .unwrap_or_else(|e| panic!("test run of {prog}: {e}"))
    }

    /// Conntrack entries.
    pub fn ct(&self) -> Vec<(Ct4Key, Ct4Value)> {
        let m = self.map(maps::CT4);
        m.keys()
            .filter_map(|k| {
                let v = m.lookup(&k, MapFlags::ANY).ok()??;
                Some((Ct4Key::from_bytes(&k)?, Ct4Value::from_bytes(&v)?))
            })
            .collect()
    }

    /// A reason counter of a hook, summed over CPUs.
    pub fn counter(&self, ifindex: u32, hook: u32, reason: usize) -> u64 {
        let k = maps::CountersKey { ifindex, hook };
        let Ok(Some(per_cpu)) = self
            .map(maps::COUNTERS)
            .lookup_percpu(k.as_bytes(), MapFlags::ANY)
        else {
            return 0;
        };
        per_cpu
            .iter()
            .filter_map(|v| maps::Counters::from_bytes(v))
            .map(|c| c.packets[reason])
            .sum()
    }

    /// How many packets rule `id` decided, summed over CPUs.
    pub fn rule_hits(&self, id: u32) -> u64 {
        let Ok(Some(per_cpu)) = self
            .map(maps::RULE_COUNTERS)
            .lookup_percpu(id.as_bytes(), MapFlags::ANY)
        else {
            return 0;
        };
        per_cpu.iter().filter_map(|v| u64::from_bytes(v)).sum()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins.root);
    }
}
