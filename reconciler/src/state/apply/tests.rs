//! The plan against the model: for random desired and observed states, applying
//! `plan(d, o)` to `o` gives `d`, and the host would refuse none of its operations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::bpf::maps::{MapDef, MapSizes};
use crate::objects::CgroupHook;
use crate::objects::{EpToHost, Object, ProgramSettings, Rpf};
use crate::plan::plan;
use crate::policy::flat::Net4;
use crate::policy::tables::{Cells, CELL_WORDS, H_ID};
use crate::state::{managed_sysctl_keys, RouteState, VxlanLink};

use weft_model::rng::Rng;

/// Interfaces weft does not create (facts).
const DEVICES: &[&str] = &["calia", "calib", "calic", "eth0"];
/// Veth pairs weft may create.
const PAIRS: &[(&str, &str)] = &[("bpfin.weft", "bpfout.weft"), ("wa0", "wb0")];
/// Devices of weft's that only an observed state has, paired with the ends above.
const STRAYS: &[&str] = &["stray0", "stray1"];
const MACS: &[[u8; 6]] = &[[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

fn sizes(rng: &mut Rng) -> MapSizes {
    let mut s = MapSizes::default();
    match rng.below(4) {
        0 => s.route = 1024,
        1 => s.if_state = 64,
        2 => s.conntrack = 4096,
        _ => {}
    }
    s
}

fn settings(rng: &mut Rng) -> ProgramSettings {
    ProgramSettings {
        ep_to_host: *rng.pick(&[EpToHost::Drop, EpToHost::Accept]),
        ctlb_udp: rng.chance(50),
        netns_cookie: 0,
        tunnel: rng.chance(20),
        rpf: *rng.pick(&[Rpf::Loose, Rpf::Strict]),
        mss_clamp: *rng.pick(&[0, 1410]),
        dsr: rng.chance(20),
        xdp_accel: None,
    }
}

fn sysctls(rng: &mut Rng, at_least_one: bool) -> BTreeMap<String, String> {
    loop {
        let mut s = BTreeMap::new();
        for k in managed_sysctl_keys() {
            if rng.chance(40) {
                s.insert(k.to_string(), rng.pick(&["0", "1"]).to_string());
            }
        }
        if !at_least_one || !s.is_empty() {
            return s;
        }
    }
}

fn entries(rng: &mut Rng) -> Entries {
    let mut e = Entries::new();
    for k in 0u8..6 {
        if rng.chance(50) {
            e.insert(
                [k, 0, 0, 0].as_slice().into(),
                [rng.below(3) as u8; 4].as_slice().into(),
            );
        }
    }
    e
}

fn cells(id: u32, variant: u32) -> Arc<Cells> {
    let mut cell = [0u32; CELL_WORDS];
    cell[H_ID] = id;
    cell[0] = variant;
    Arc::new(Cells(vec![cell, [variant + id; CELL_WORDS]]))
}

fn dsts() -> Vec<Net4> {
    let mut v: Vec<Net4> = (1..6)
        .map(|i| Net4::host(u32::from(Ipv4Addr::new(10, 0, 0, i))))
        .collect();
    v.push(Net4::new(u32::from(Ipv4Addr::new(10, 1, 0, 0)), 16));
    v.push(Net4::host(u32::from(GATEWAY)));
    v
}

fn maps_for(rng: &mut Rng, sizes: &MapSizes, observed: bool) -> BTreeMap<String, MapState> {
    let mut out = BTreeMap::new();
    for def in maps::defs(sizes) {
        let entries = maps::RECONCILED
            .contains(&def.name.as_str())
            .then(|| entries(rng));
        out.insert(
            def.name.clone(),
            MapState {
                def,
                entries: entries.map(std::sync::Arc::new),
            },
        );
    }
    if observed {
        let names: Vec<String> = out.keys().cloned().collect();
        if rng.chance(15) {
            out.remove(rng.pick(&names));
        }
        if rng.chance(15) {
            // Another layout: replaced without its entries.
            if let Some(m) = out.get_mut(rng.pick(&names)) {
                m.def.key_size += 4;
            }
        }
        if rng.chance(15) {
            out.insert(
                "weft_old".into(),
                MapState {
                    def: MapDef {
                        name: "weft_old".into(),
                        map_type: "hash".into(),
                        key_size: 4,
                        value_size: 4,
                        max_entries: 16,
                        flags: 0,
                    },
                    entries: None,
                },
            );
        }
    }
    out
}

fn owned(peer: &str, mac: [u8; 6], up: bool, sysctls: BTreeMap<String, String>) -> LinkState {
    LinkState {
        sysctls,
        owned: Some(OwnedLink {
            kind: "veth".into(),
            peer: Some(peer.into()),
            mac,
            up,
            vxlan: None,
        }),
    }
}

/// The VXLAN device of a test state.
const VXLAN: &str = "vx0";

fn vxlan(rng: &mut Rng, up: bool) -> LinkState {
    LinkState {
        sysctls: sysctls(rng, false),
        owned: Some(OwnedLink {
            kind: "vxlan".into(),
            peer: None,
            mac: *rng.pick(MACS),
            up,
            vxlan: Some(VxlanLink {
                vni: *rng.pick(&[4096, 7]),
                port: 4789,
                local: Ipv4Addr::new(172, 16, 0, 1),
                mtu: *rng.pick(&[1450, 1400]),
                learning: rng.chance(10),
            }),
        }),
    }
}

/// Addresses and FDB entries on the VXLAN device, when the state has it.
fn on_vxlan(rng: &mut Rng, s: &mut HostState) {
    if !s.links.contains_key(VXLAN) {
        return;
    }
    for a in [1, 2] {
        if rng.chance(50) {
            s.addresses
                .insert((VXLAN.into(), Ipv4Addr::new(10, 244, a, 0), 32));
        }
    }
    for mac in MACS {
        if rng.chance(50) {
            s.fdb.insert(
                (VXLAN.into(), *mac),
                *rng.pick(&[Ipv4Addr::new(172, 16, 0, 2), Ipv4Addr::new(172, 16, 0, 3)]),
            );
        }
    }
}

/// A desired state as `desired` makes them: every map of the objects when any program is
/// wanted, all of an object's programs with this build's identity, attachments of wanted
/// programs on interfaces that exist once the plan has run.
fn desired(rng: &mut Rng, sizes: &MapSizes) -> HostState {
    let mut d = HostState::default();
    for (a, b) in PAIRS {
        if rng.chance(50) {
            // Desired devices are up: no operation takes one down.
            let up = true;
            let (ma, mb) = (*rng.pick(MACS), *rng.pick(MACS));
            d.links
                .insert(a.to_string(), owned(b, ma, up, sysctls(rng, false)));
            d.links
                .insert(b.to_string(), owned(a, mb, up, sysctls(rng, false)));
        }
    }
    for dev in DEVICES {
        if rng.chance(50) {
            d.links.insert(
                dev.to_string(),
                LinkState {
                    sysctls: sysctls(rng, true),
                    owned: None,
                },
            );
        }
    }
    if rng.chance(50) {
        let mut l = vxlan(rng, true);
        if let Some(v) = l.owned.as_mut().and_then(|o| o.vxlan.as_mut()) {
            v.learning = false;
        }
        d.links.insert(VXLAN.into(), l);
    }
    on_vxlan(rng, &mut d);
    let devices: Vec<String> = DEVICES
        .iter()
        .map(|d| d.to_string())
        .chain(
            d.links
                .iter()
                .filter(|(_, l)| l.owned.is_some())
                .map(|(n, _)| n.clone()),
        )
        .collect();

    let objects: Vec<Object> = Object::ALL.into_iter().filter(|_| rng.chance(50)).collect();
    let settings = settings(rng);
    for o in &objects {
        for p in o.programs() {
            d.programs.insert(
                p.to_string(),
                ProgramState {
                    identity: ProgramIdentity::current(*o, settings),
                },
            );
        }
    }
    if !objects.is_empty() {
        d.maps = maps_for(rng, sizes, false);
        for id in 1..5 {
            if rng.chance(50) {
                d.rulesets.insert(id, cells(id, 0));
            }
        }
    }
    let tc_programs: Vec<&str> = objects
        .iter()
        .filter(|o| **o != Object::Ctlb)
        .flat_map(|o| o.programs().iter().copied())
        .collect();
    if !tc_programs.is_empty() {
        for dev in &devices {
            for hook in [Hook::Ingress, Hook::Egress] {
                if rng.chance(40) {
                    d.attachments.insert(
                        (dev.clone(), hook),
                        AttachmentState {
                            program: rng.pick(&tc_programs).to_string(),
                            mode: *rng.pick(&[AttachMode::Tcx, AttachMode::Tc]),
                        },
                    );
                }
            }
        }
    }
    if objects.contains(&Object::Ctlb) {
        for hook in CgroupHook::ALL {
            if rng.chance(60) {
                d.cgroup_attachments.insert(
                    hook,
                    CgroupAttachment {
                        cgroup: "/sys/fs/cgroup".into(),
                        program: format!("weft_{}", hook.as_str()),
                    },
                );
            }
        }
    }
    routes_and_neighbours(rng, &mut d, &devices);
    d
}

fn routes_and_neighbours(rng: &mut Rng, s: &mut HostState, devices: &[String]) {
    for dst in dsts() {
        if rng.chance(50) {
            let dev = rng.pick(devices).clone();
            let via = rng.chance(30).then_some(GATEWAY);
            s.routes.insert(
                dst,
                RouteState {
                    onlink: via.is_some() && dev == VXLAN && rng.chance(70),
                    dev,
                    via,
                },
            );
        }
    }
    for ip in [
        GATEWAY,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    ] {
        for _ in 0..2 {
            if rng.chance(30) {
                s.neighbours.insert(
                    (rng.pick(devices).clone(), ip),
                    NeighbourState {
                        lladdr: *rng.pick(MACS),
                    },
                );
            }
        }
    }
}

/// An observed state as `observe` could read it: anything of weft's, related to `d` or
/// not (veth pairs whole, rulesets only with weft_pol_rs pinned).
fn observed(rng: &mut Rng, d: &HostState, sizes: &MapSizes) -> HostState {
    let mut o = HostState::default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, (a, b)) in PAIRS.iter().enumerate() {
        match rng.below(4) {
            0 => {}
            1 => pairs.push((a.to_string(), b.to_string())),
            2 => {
                pairs.push((a.to_string(), STRAYS[i].to_string()));
            }
            _ => {
                // As desired, or as close as it comes.
                if let (Some(la), Some(lb)) = (d.links.get(*a), d.links.get(*b)) {
                    o.links.insert(a.to_string(), la.clone());
                    o.links.insert(b.to_string(), lb.clone());
                    for (n, l) in [(a, la), (b, lb)] {
                        if rng.chance(30) {
                            let mut l = l.clone();
                            l.owned.as_mut().expect("owned").up = rng.chance(50);
                            o.links.insert(n.to_string(), l);
                        }
                    }
                } else {
                    pairs.push((a.to_string(), b.to_string()));
                }
            }
        }
    }
    for (a, b) in pairs {
        let up = rng.chance(70);
        o.links.insert(
            a.clone(),
            owned(&b, *rng.pick(MACS), up, sysctls(rng, false)),
        );
        o.links.insert(
            b.clone(),
            owned(&a, *rng.pick(MACS), up, sysctls(rng, false)),
        );
    }
    for dev in DEVICES {
        if rng.chance(50) {
            o.links.insert(
                dev.to_string(),
                LinkState {
                    sysctls: sysctls(rng, true),
                    owned: None,
                },
            );
        } else if rng.chance(50) {
            if let Some(l) = d.links.get(*dev) {
                o.links.insert(dev.to_string(), l.clone());
            }
        }
    }
    match (rng.below(3), d.links.get(VXLAN)) {
        (0, _) => {}
        (1, Some(want)) => {
            o.links.insert(VXLAN.into(), want.clone());
        }
        _ => {
            let up = rng.chance(70);
            o.links.insert(VXLAN.into(), vxlan(rng, up));
        }
    }
    on_vxlan(rng, &mut o);
    if rng.chance(50) {
        o.addresses.extend(
            d.addresses
                .iter()
                .filter(|(dev, ..)| o.links.contains_key(dev))
                .cloned(),
        );
        o.fdb.extend(
            d.fdb
                .iter()
                .filter(|((dev, _), _)| o.links.contains_key(dev))
                .map(|(k, v)| (k.clone(), *v)),
        );
    }
    let devices: Vec<String> = DEVICES
        .iter()
        .copied()
        .chain(PAIRS.iter().flat_map(|(a, b)| [*a, *b]))
        .chain(STRAYS.iter().copied())
        .chain([VXLAN])
        .map(str::to_string)
        .collect();

    let other = settings(rng);
    let mut all_programs: Vec<&str> = vec![];
    for object in Object::ALL {
        for p in object.programs() {
            all_programs.push(p);
            let identity = match (d.programs.get(*p), rng.below(6)) {
                (_, 0 | 1) => continue,
                (Some(want), 2 | 3) => want.identity,
                (_, 4) => ProgramIdentity::current(object, other),
                (_, _) => ProgramIdentity {
                    object_id: object.id() ^ 1,
                    settings: other,
                },
            };
            o.programs.insert(p.to_string(), ProgramState { identity });
        }
    }
    if rng.chance(15) {
        o.programs.insert(
            "weft_old_prog".into(),
            ProgramState {
                identity: ProgramIdentity {
                    object_id: 7,
                    settings: other,
                },
            },
        );
    }

    if rng.chance(80) {
        let sizes = if rng.chance(60) {
            *sizes
        } else {
            self::sizes(rng)
        };
        o.maps = maps_for(rng, &sizes, true);
        if rng.chance(40) {
            // Close to desired: the same entries, give or take.
            for (name, m) in &mut o.maps {
                if let (Some(have), Some(want)) = (
                    m.entries.as_mut(),
                    d.maps.get(name).and_then(|m| m.entries.as_ref()),
                ) {
                    if rng.chance(70) {
                        *have = want.clone();
                    }
                }
            }
        }
    }
    if o.maps.contains_key(maps::POL_RS) {
        for id in 1..6 {
            match rng.below(4) {
                0 | 1 => {}
                2 => {
                    o.rulesets.insert(id, cells(id, 0));
                }
                _ => {
                    o.rulesets.insert(id, cells(id, 1));
                }
            }
        }
    }

    let mut programs: Vec<&str> = all_programs.clone();
    programs.extend(["prog id 42", DEFUNCT]);
    for dev in &devices {
        for hook in [Hook::Ingress, Hook::Egress] {
            if let (true, Some(want)) = (rng.chance(50), d.attachments.get(&(dev.clone(), hook))) {
                o.attachments.insert((dev.clone(), hook), want.clone());
            } else if rng.chance(30) {
                o.attachments.insert(
                    (dev.clone(), hook),
                    AttachmentState {
                        program: rng.pick(&programs).to_string(),
                        mode: *rng.pick(&[AttachMode::Tcx, AttachMode::Tc]),
                    },
                );
            }
        }
    }
    for hook in CgroupHook::ALL {
        if let (true, Some(want)) = (rng.chance(50), d.cgroup_attachments.get(&hook)) {
            o.cgroup_attachments.insert(hook, want.clone());
        } else if rng.chance(30) {
            o.cgroup_attachments.insert(
                hook,
                CgroupAttachment {
                    cgroup: rng.pick(&["/sys/fs/cgroup", "cgroup id 7"]).to_string(),
                    program: rng.pick(&all_programs).to_string(),
                },
            );
        }
    }
    routes_and_neighbours(rng, &mut o, &devices);
    if rng.chance(50) {
        // Mostly as desired: what a reconcile after a small change sees.
        for (k, v) in &d.routes {
            if rng.chance(70) {
                o.routes.insert(*k, v.clone());
            }
        }
        for (k, v) in &d.neighbours {
            if rng.chance(70) {
                o.neighbours.insert(k.clone(), v.clone());
            }
        }
    }
    o
}

fn kind(op: &Op) -> String {
    let s = format!("{op:?}");
    s.split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

const SITUATIONS: &[&str] = &[
    "a resized map keeps its entries",
    "a map of another layout",
    "a program of another build or settings",
    "attach mode switched",
    "a device made again",
    "a defunct TCX link",
];

/// Which of `SITUATIONS` a case is in.
fn situations(d: &HostState, o: &HostState, ops: &[Op]) -> [(&'static str, bool); 6] {
    let replaced = |carried: bool| {
        ops.iter().any(|op| {
            matches!(op, Op::ReplaceMap { name, old, new }
                if crate::plan::carries_entries(name, old, new) == carried)
        })
    };
    let switched = ops.iter().any(|a| {
        matches!(a, Op::Attach { iface, hook, mode, .. }
            if ops.iter().any(|b| matches!(b, Op::Detach { iface: i, hook: h, mode: m }
                if i == iface && h == hook && m != mode)))
    });
    let remade = ops.iter().any(|a| {
        matches!(a, Op::DeleteLink { name }
            if ops.iter().any(|b| matches!(b, Op::CreateVeth { name: n, peer, .. }
                if n == name || peer == name)
                || matches!(b, Op::CreateVxlan { name: n, .. } if n == name)))
    });
    [
        (SITUATIONS[0], replaced(true)),
        (SITUATIONS[1], replaced(false)),
        (
            SITUATIONS[2],
            d.programs
                .iter()
                .any(|(n, p)| o.programs.get(n).is_some_and(|q| q != p)),
        ),
        (SITUATIONS[3], switched),
        (SITUATIONS[4], remade),
        (
            SITUATIONS[5],
            o.attachments.values().any(|a| a.program == DEFUNCT),
        ),
    ]
}

fn case(seed: u64) -> (HostState, HostState, MapSizes) {
    let mut rng = Rng(seed);
    let sizes = sizes(&mut rng);
    let d = desired(&mut rng, &sizes);
    let o = observed(&mut rng, &d, &sizes);
    (d, o, sizes)
}

const CASES: u64 = 2000;

#[test]
fn applying_the_plan_to_the_observed_state_gives_the_desired_one() {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for seed in 0..CASES {
        let (d, o, sizes) = case(seed);
        let ops = plan(&d, &o, sizes);
        for op in &ops {
            *kinds.entry(kind(op)).or_default() += 1;
        }
        for (what, seen) in situations(&d, &o, &ops) {
            *kinds.entry(what.to_string()).or_default() += usize::from(seen);
        }
        let mut after = o.clone();
        let result = after.apply(&ops);
        if result.is_err() || after != d {
            failed.push((seed, result, ops.len()));
        }
    }
    if let Some((seed, result, _)) = failed.first() {
        let (d, o, sizes) = case(*seed);
        let ops = plan(&d, &o, sizes);
        let mut after = o.clone();
        let _ = after.apply(&ops);
        let names = Default::default();
        panic!(
            "{} of {CASES} cases fail, the first seed {seed}: {result:?}\nops:\n{}\nafter vs desired:\n{}",
            failed.len(),
            ops.iter().map(|o| format!("  {}\n", o.describe())).collect::<String>(),
            crate::plan::render_diff(&after, &d, "desired", &names),
        );
    }
    let every: BTreeSet<&str> = [
        "CreateVeth",
        "CreateVxlan",
        "AddressAdd",
        "AddressDelete",
        "FdbReplace",
        "FdbDelete",
        "SetLinkUp",
        "DeleteLink",
        "SetSysctl",
        "ResetSysctl",
        "ReplaceMap",
        "LoadPrograms",
        "WriteEntries",
        "LoadRuleset",
        "DropRuleset",
        "DeleteEntries",
        "Attach",
        "Detach",
        "AttachCgroup",
        "DetachCgroup",
        "RouteReplace",
        "RouteDelete",
        "NeighReplace",
        "NeighDelete",
        "UnpinProgram",
        "UnpinMap",
    ]
    .into();
    let missing: Vec<_> = every
        .iter()
        .chain(SITUATIONS)
        .filter(|k| kinds.get(**k).is_none_or(|n| *n == 0))
        .collect();
    assert!(missing.is_empty(), "never planned: {missing:?} ({kinds:?})");
}

#[test]
fn nothing_to_do_when_observed_is_desired() {
    for seed in 0..CASES {
        let (d, _, sizes) = case(seed);
        let ops = plan(&d, &d, sizes);
        assert!(ops.is_empty(), "seed {seed}: {ops:#?}");
    }
}
