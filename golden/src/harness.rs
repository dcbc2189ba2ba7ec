//! Loads weft's real BPF objects under a private bpffs root (so tests never touch a running
//! weft's pins), fills their maps and runs their programs with BPF_PROG_TEST_RUN.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, ProgramHandle};
use weft::bpf::load::{self, Object, ProgramSettings};
use weft::bpf::maps::{
    self, spec, Ct4Key, Ct4Value, Entries, Event, IfaceValue, MapSizes, NatBackend, NatBackendKey,
    NatFrontend, NatFrontendKey, Route4Key, RouteValue,
};
use weft::bpf::pinned::Pinned as _;
use weft::bpf::reasons::REASONS;
use weft::bpf::rulesets;
use weft::bpf::skel::floor::WeftFloorSkelBuilder;
use weft::bpf::testrun::{test_run, test_run_xdp, TestRun};
use weft::bpf::Pins;
use weft::events::ring::{Reader, Ring};
use weft::policy::flat::{proto_port, Flow, RulesetSpec, Verdict};
use weft::policy::{classify, tables};
use weft::state::HostState;

/// The interface test packets arrive on: `lo`, which exists in every network namespace.
pub const IFINDEX: u32 = 1;

/// tc verdicts as the programs return them.
pub const PASS: i32 = -1;
pub const DROP: i32 = 2;

pub struct Harness {
    pub pins: Pins,
    progs: BTreeMap<String, ProgramHandle>,
    sizes: MapSizes,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Harness {
    /// Loads the workload object, or returns None (after saying why) where the kernel cannot.
    pub fn load(test: &str) -> Option<Harness> {
        Self::load_with(test, ProgramSettings::default())
    }

    pub fn load_with(test: &str, settings: ProgramSettings) -> Option<Harness> {
        // Small maps: tests create many harnesses.
        let sizes = MapSizes {
            conntrack: 4096,
            if_state: 64,
            route: 1024,
            nat_frontend: 1024,
            nat_backend: 4096,
            nat_affinity: 1024,
            maglev: 2 * 503,
            events: 1 << 16,
        };
        Self::load_sized(test, settings, &sizes)
    }

    /// Loads with map sizes of the caller's choosing (benchmarks want production sizes, so
    /// that conntrack inserts do not evict).
    pub fn load_sized(test: &str, settings: ProgramSettings, sizes: &MapSizes) -> Option<Harness> {
        if !crate::kernel::available(test) {
            return None;
        }
        let root = PathBuf::from(format!(
            "/sys/fs/bpf/weft-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let pins = Pins::new(root);
        let loaded = load::load_wep(&pins, sizes, settings)
            .unwrap_or_else(|e| panic!("{test}: loading weft_wep: {e}"));
        Some(Harness {
            pins,
            progs: loaded.programs,
            sizes: *sizes,
        })
    }

    /// Loads another object into the same maps (the host object, say), adding its programs.
    pub fn load_also(&mut self, object: Object) {
        self.load_also_with(object, ProgramSettings::default());
    }

    /// `load_also` with the object's settings.
    pub fn load_also_with(&mut self, object: Object, settings: ProgramSettings) {
        let loaded = load::load(object, &self.pins, &self.sizes, settings)
            .unwrap_or_else(|e| panic!("loading {}: {e}", object.name()));
        self.progs.extend(loaded.programs);
    }

    /// The flow records the programs wrote since the last call (`weft flows` reads the same).
    pub fn flows(&self) -> Vec<Event> {
        self.events(Ring::Flows)
    }

    /// The trace records the programs wrote since the last call (`weft trace` reads the same).
    pub fn traces(&self) -> Vec<Event> {
        self.events(Ring::Trace)
    }

    fn events(&self, ring: Ring) -> Vec<Event> {
        Reader::open(&self.pins, ring)
            .and_then(|mut r| r.drain())
            .unwrap_or_else(|e| panic!("reading {}: {e}", ring.map()))
    }

    /// Records lost since the last call because the ring was full.
    pub fn lost(&self, ring: Ring) -> u64 {
        Reader::open(&self.pins, ring)
            .and_then(|mut r| r.lost())
            .unwrap_or_else(|e| panic!("lost records of {}: {e}", ring.map()))
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

    /// Loads the rulesets and writes the entries of every reconciled map of `state` (a desired
    /// state: what `weft apply` would write), so that packets meet the policy a configuration
    /// compiles to.
    pub fn install(&self, state: &HostState) {
        // Rulesets first, as `weft apply` loads them: the interface entries name them.
        for (id, cells) in &state.rulesets {
            rulesets::load(&self.pins, *id, cells).expect("loading the ruleset");
        }
        for (name, m) in &state.maps {
            if let Some(entries) = &m.entries {
                self.write(name, entries);
            }
        }
    }

    /// Makes `ifindex` a workload interface with the given rulesets.
    pub fn iface(&self, ifindex: u32, ruleset_in: u32, ruleset_out: u32) {
        self.iface_flags(ifindex, maps::IFACE_F_WORKLOAD, ruleset_in, ruleset_out);
    }

    /// Writes `ifindex`'s weft_iface entry with `flags` (WEFT_IFACE_F_*).
    pub fn iface_flags(&self, ifindex: u32, flags: u32, ruleset_in: u32, ruleset_out: u32) {
        let v = IfaceValue {
            flags,
            ruleset_in,
            ruleset_out,
            pad: 0,
            name: maps::c_name("test0"),
        };
        spec::IFACE
            .update(&self.map(spec::IFACE.name), &ifindex, &v)
            .expect("iface entry");
    }

    /// Adds a weft_rt4 entry; a local workload's address also goes into weft_wladdr4, as
    /// `weft apply` writes it, so that the workload's packets pass the anti-spoofing check.
    pub fn route(&self, addr: Ipv4Addr, len: u8, flags: u32, ifindex: u32) {
        self.route_via(addr, len, flags, ifindex, Ipv4Addr::UNSPECIFIED);
    }

    /// `route` with a next hop: a remote workload's node (its tunnel address where the
    /// route is the tunnel, `RT_F_TUNNELED` and the tunnel's index).
    pub fn route_via(&self, addr: Ipv4Addr, len: u8, flags: u32, ifindex: u32, next_hop: Ipv4Addr) {
        if len == 32 && flags & maps::RT_F_LOCAL_WORKLOAD != 0 {
            spec::WLADDR4
                .update(
                    &self.map(spec::WLADDR4.name),
                    &maps::addr_be(addr),
                    &ifindex,
                )
                .expect("workload address entry");
        }
        let k = Route4Key {
            prefixlen: u32::from(len),
            addr: maps::addr_be(addr),
        };
        let v = RouteValue {
            flags,
            ifindex,
            next_hop: maps::addr_be(next_hop),
            pad: 0,
        };
        spec::RT4
            .update(&self.map(spec::RT4.name), &k, &v)
            .expect("route entry");
    }

    /// A service port as `weft apply` writes it: frontend (`addr`, `port`, `proto`) of id
    /// `svc_id` in weft_nat_fe4, its `backends` in weft_nat_be4, the first `local` of them
    /// this node's.
    pub fn service(
        &self,
        (addr, port, proto): (Ipv4Addr, u16, u8),
        svc_id: u32,
        local: u32,
        backends: &[(Ipv4Addr, u16)],
    ) {
        let fk = NatFrontendKey {
            addr: maps::addr_be(addr),
            port,
            proto,
            pad: 0,
        };
        let fe = NatFrontend {
            svc_id,
            count: backends.len() as u32,
            local_count: local,
            affinity_timeout_s: 0,
            flags: 0,
            maglev_size: 0,
        };
        spec::NAT_FE4
            .update(&self.map(spec::NAT_FE4.name), &fk, &fe)
            .expect("frontend");
        for (ordinal, &(addr, port)) in backends.iter().enumerate() {
            let bk = NatBackendKey {
                svc_id,
                ordinal: ordinal as u32,
            };
            let be = NatBackend {
                addr: maps::addr_be(addr),
                port,
                pad: 0,
            };
            spec::NAT_BE4
                .update(&self.map(spec::NAT_BE4.name), &bk, &be)
                .expect("backend");
        }
    }

    /// Compiles and installs a ruleset; returns its id.
    pub fn ruleset(&self, spec: &RulesetSpec) -> u32 {
        let c = classify::compile(spec).expect("ruleset compiles");
        let cells = tables::encode(&c);
        rulesets::load(&self.pins, cells.id(), &cells).expect("loading the ruleset");
        cells.id()
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

    /// Runs program `prog` once on `packet`, going out of IFINDEX after the host forwarded it
    /// from `ingress_ifindex`.
    pub fn run_forwarded(&self, prog: &str, packet: &[u8], ingress_ifindex: u32) -> TestRun {
        weft::bpf::testrun::test_run_forwarded(
            self.prog(prog).as_fd(),
            packet,
            IFINDEX,
            ingress_ifindex,
        )
        .unwrap_or_else(|e| panic!("test run of {prog}: {e}"))
    }

    /// Runs XDP program `prog` once on `packet`, received on IFINDEX.
    pub fn run_xdp(&self, prog: &str, packet: &[u8]) -> TestRun {
        self.run_xdp_repeat(prog, packet, 1)
    }

    pub fn run_xdp_repeat(&self, prog: &str, packet: &[u8], repeat: u32) -> TestRun {
        self.run_xdp_at(prog, packet, IFINDEX, repeat)
    }

    /// Runs XDP program `prog` `repeat` times on `packet`, received on `ifindex` (which must
    /// exist in the calling thread's network namespace).
    pub fn run_xdp_at(&self, prog: &str, packet: &[u8], ifindex: u32, repeat: u32) -> TestRun {
        test_run_xdp(self.prog(prog).as_fd(), packet, ifindex, repeat)
            .unwrap_or_else(|e| panic!("test run of {prog}: {e}"))
    }

    /// Conntrack entries.
    pub fn ct(&self) -> Vec<(Ct4Key, Ct4Value)> {
        let m = self.map(spec::CT4.name);
        spec::CT4
            .keys(&m)
            .filter_map(|k| Some((k, spec::CT4.lookup(&m, &k).ok()??)))
            .collect()
    }

    /// The conntrack entry under `key`, if any.
    pub fn ct_get(&self, key: &Ct4Key) -> Option<Ct4Value> {
        spec::CT4
            .lookup(&self.map(spec::CT4.name), key)
            .expect("conntrack lookup")
    }

    /// Every non-zero reason counter of a hook, by name (`weft dump counters`), so a test can
    /// say both what was counted and that nothing else was.
    pub fn reasons(&self, ifindex: u32, hook: u32) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, self.counter(ifindex, hook, i)))
            .filter(|(_, n)| *n != 0)
            .collect()
    }

    /// The verdict ruleset `ruleset` gives a flow, found in the cells the kernel holds by the
    /// same walk as weft_policy4 (bpf-src/include/policy.h): what the program saw, including
    /// the Log flag that no counter records. None when the ruleset is not loaded.
    pub fn verdict(&self, ruleset: u32, flow: &Flow4) -> Option<Verdict> {
        let inner = rulesets::open(&self.pins, ruleset).expect("weft_pol_rs")?;
        let cells = rulesets::read_one(&inner).expect("reading the ruleset's cells");
        let (sport, dport) = if flow.proto == 1 {
            (0, flow.dport)
        } else {
            (flow.sport, flow.dport)
        };
        let f = Flow {
            peer: u32::from(flow.peer),
            local: 0,
            sport: proto_port(flow.proto, sport),
            dport: proto_port(flow.proto, dport),
        };
        Some(tables::lookup(&cells, u32::from(flow.local), &f).expect("well-formed cells"))
    }

    /// XDP's drops by (ifindex, rule id), as the readers of the counters fold them in.
    fn xdp_drops(&self) -> weft::bpf::stats::XdpDrops {
        weft::bpf::stats::xdp_drops_of(&self.map(spec::XDP_CTRS.name)).expect("weft_xdp_ctrs")
    }

    /// A reason counter of a hook, summed over CPUs (XDP's drops included).
    pub fn counter(&self, ifindex: u32, hook: u32, reason: usize) -> u64 {
        let k = maps::CountersKey { ifindex, hook };
        let xdp: u64 = if hook == maps::HOOK_XDP && reason == weft::bpf::reasons::DROP_UNTRACKED {
            let drops = self.xdp_drops();
            drops
                .iter()
                .filter(|((i, _), _)| *i == ifindex)
                .map(|(_, n)| n)
                .sum()
        } else {
            0
        };
        let Ok(Some(per_cpu)) = spec::COUNTERS.lookup_percpu(&self.map(spec::COUNTERS.name), &k)
        else {
            return xdp;
        };
        xdp + per_cpu.iter().map(|c| c.packets[reason]).sum::<u64>()
    }

    /// How many packets rule `id` decided, summed over CPUs (XDP's drops included).
    pub fn rule_hits(&self, id: u32) -> u64 {
        let xdp: u64 = self
            .xdp_drops()
            .iter()
            .filter(|((_, r), _)| *r == id)
            .map(|(_, n)| n)
            .sum();
        let Ok(Some(per_cpu)) =
            spec::RULE_COUNTERS.lookup_percpu(&self.map(spec::RULE_COUNTERS.name), &id)
        else {
            return xdp;
        };
        xdp + per_cpu.iter().sum::<u64>()
    }
}

/// A flow as a ruleset sees it (struct weft_flow4): from the endpoint, in the flow's direction.
#[derive(Clone, Copy, Debug)]
pub struct Flow4 {
    pub peer: Ipv4Addr,
    pub local: Ipv4Addr,
    pub proto: u8,
    /// The originator's port (0 for ICMP).
    pub sport: u16,
    /// The responder's port; ICMP: type << 8 | code.
    pub dport: u16,
}

/// The conntrack key of a packet's tuple, normalised as weft_maps.h defines it ((addr_a,
/// port_a) <= (addr_b, port_b), each address compared as the map stores it), and whether the
/// packet's source is side a. Written from that definition, not from conntrack.h, so a test
/// that compares the two checks the program.
pub fn ct4_key(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> (Ct4Key, bool) {
    let (s, d) = (maps::addr_be(src), maps::addr_be(dst));
    let src_is_a = (s, sport) <= (d, dport);
    let ((addr_a, port_a), (addr_b, port_b)) = if src_is_a {
        ((s, sport), (d, dport))
    } else {
        ((d, dport), (s, sport))
    };
    let key = Ct4Key {
        addr_a,
        addr_b,
        port_a,
        port_b,
        proto,
        pad: [0; 3],
    };
    (key, src_is_a)
}

/// The benchmark floor, bpf-src/weft_floor.bpf.c: weft's parsing and nothing else. It has no
/// maps, so nothing is pinned.
pub struct Floor {
    prog: ProgramHandle,
    xdp: ProgramHandle,
}

impl Floor {
    /// Loads the floor, or returns None (after saying why) where the kernel cannot.
    pub fn load(test: &str) -> Option<Floor> {
        if !crate::kernel::available(test) {
            return None;
        }
        load::route_libbpf_log();
        let mut storage = MaybeUninit::uninit();
        let open = WeftFloorSkelBuilder::default()
            .open(&mut storage)
            .unwrap_or_else(|e| panic!("{test}: opening weft_floor: {e}"));
        let skel = open
            .load()
            .unwrap_or_else(|e| panic!("{test}: loading weft_floor: {e}"));
        // The handle holds its own file descriptor: the program outlives the skeleton.
        let prog = ProgramHandle::try_from(&skel.progs.weft_floor)
            .unwrap_or_else(|e| panic!("{test}: weft_floor handle: {e}"));
        let xdp = ProgramHandle::try_from(&skel.progs.weft_xdp_floor)
            .unwrap_or_else(|e| panic!("{test}: weft_xdp_floor handle: {e}"));
        Some(Floor { prog, xdp })
    }

    pub fn run_repeat(&self, packet: &[u8], repeat: u32) -> TestRun {
        test_run(self.prog.as_fd(), packet, IFINDEX, repeat)
            .unwrap_or_else(|e| panic!("test run of weft_floor: {e}"))
    }

    /// The XDP floor: a program that drops whatever it is given, looking at nothing.
    pub fn run_xdp_repeat(&self, packet: &[u8], repeat: u32) -> TestRun {
        test_run_xdp(self.xdp.as_fd(), packet, IFINDEX, repeat)
            .unwrap_or_else(|e| panic!("test run of weft_xdp_floor: {e}"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins.root);
    }
}

/// A ruleset that allows every flow (rule 1), for tests about something other than policy.
pub fn allow_all() -> weft::policy::flat::RulesetSpec {
    use weft::policy::flat::{FlatAction, FlatRule, GroupEnd, RulesetSpec, SpanSet};
    RulesetSpec {
        sets: vec![],
        locals: vec![],
        rules: vec![FlatRule {
            id: 1,
            action: FlatAction::Allow,
            group: 0,
            peer: vec![],
            local: vec![true, true],
            sport: SpanSet::full(),
            dport: SpanSet::full(),
        }],
        groups: vec![GroupEnd::Deny(2)],
        default_rule: 3,
        open_end: false,
    }
}
