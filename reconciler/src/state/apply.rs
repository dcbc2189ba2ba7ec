//! What a plan does to the state weft observes, without a kernel: `HostState::apply` runs
//! operations on a `HostState` the way `apply::Applier` runs them on the host, and leaves the
//! state `observe` would read back afterwards. The in-memory kernel is built on it, and the
//! plan is checked against it (applying `plan(d, o)` to `o` gives `d`).
//!
//! Pure: no kernel, no IO. It sits beside `plan` among the pure stages and mirrors
//! `apply.rs` operation by operation; where the two differ it is because `observe` cannot
//! tell, and the doc comment of `HostState::apply` says so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::bpf::maps::{self, Entries};
use crate::objects::AttachMode;
use crate::objects::Hook;
use crate::objects::ProgramIdentity;
use crate::plan::Op;
use crate::state::{
    AttachmentState, CgroupAttachment, HostState, LinkState, MapState, NeighbourState, OwnedLink,
    ProgramState, DEFUNCT,
};

/// An operation the host would refuse, as `apply::ApplyError` would report it; the state is
/// left as the operations before it made it (the applier stops at the first failure too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{op}: map {map} is not pinned")]
    NoMap { op: String, map: String },
    #[error("{op}: program {program} is not pinned")]
    NoProgram { op: String, program: String },
    #[error("{op}: map {map} is pinned as {pinned}, the load wants {wanted}")]
    MapIncompatible {
        op: String,
        map: String,
        pinned: String,
        wanted: String,
    },
    #[error("{op}: device {name} exists")]
    LinkExists { op: String, name: String },
}

/// What one run of operations keeps between them, as `apply::Applier` does: the entries of
/// replaced maps until their successors exist, programs loaded until they are switched to,
/// and TCX attachments hidden behind a tc one on the same hook.
#[derive(Default)]
struct Run {
    /// Replaced maps whose entries go into their successors: the old entries (None where
    /// `observe` does not read them).
    migrating: BTreeMap<String, Option<Arc<Entries>>>,
    /// Programs loaded but not yet pinned in place of the old ones.
    unswitched: BTreeMap<String, ProgramIdentity>,
    /// A TCX program on a hook that also has a tc one: `observe` shows the tc one only (it
    /// reads tc after TCX), but detaching tc brings the TCX one back into view.
    hidden_tcx: BTreeMap<(String, Hook), String>,
}

impl HostState {
    /// Runs `ops` on this state as `apply::Applier::run` runs them on the host, stopping at the
    /// first one the host would refuse. The result is what `observe` would read afterwards:
    ///
    /// - Links: `CreateVeth` makes both ends, down and with every sysctl at its default (which
    ///   `observe` shows as absent: the model does not know the namespace's defaults), and is
    ///   refused when either name is a device the state knows. `DeleteLink` takes the device
    ///   and its veth peer with everything on them: their sysctls, routes and neighbours, tc
    ///   attachments; a TCX link stays pinned but defunct. Deleting a device the state does
    ///   not know still removes what is on it.
    /// - `ResetSysctl` drops the key (back at the default, so unread); a link left with no
    ///   sysctls and not weft's own is no longer shown.
    /// - `ReplaceMap` unpins the map (weft_pol_rs with its rulesets); when
    ///   `plan::carries_entries` says so (the dataplane's own maps, resized), its entries are
    ///   kept and go into the successor the next `LoadPrograms` creates, and once more, without
    ///   overwriting, when the loaded programs are switched to. Entries are assumed to fit: a
    ///   smaller map drops what it has no room for, and which ones depends on the kernel's
    ///   iteration order. A reconciled map's successor starts empty.
    /// - `LoadPrograms` creates every missing map the object defines (every object defines
    ///   every map, `weft_defs_maps.h`), sized by the operation's `sizes`, empty; a pinned map
    ///   of another shape refuses it. The programs are pinned with the identity of this
    ///   build's object and the operation's settings when the applier switches to them: before
    ///   the next operation that does not `Op::runs_before_switch`, or at the end.
    ///   Attachments name programs, so they follow the switch unchanged.
    /// - Entry writes and deletes need the map pinned; maps whose entries `observe` does not
    ///   read (conntrack, counters) stay without entries.
    /// - `UnpinProgram` leaves attachments of that program running it, which `observe` names
    ///   by id (`prog id N`); the model cannot know the id and writes `prog id ?` instead.
    /// - Attachments: one per hook is visible; a TCX program under a tc one is kept for the
    ///   rest of the run (see `Run::hidden_tcx`) but not beyond, as the state cannot hold it.
    /// - `CreateVxlan` makes the device down, refused when the name is taken. Addresses and
    ///   FDB entries are keyed as the state keys them, and go with their device.
    /// - Routes and neighbours are keyed as the state keys them; deleting a route that names
    ///   another device or gateway than the one there is a no-op, as in the kernel.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), Refused> {
        let mut run = Run::default();
        for op in ops {
            if !op.runs_before_switch() {
                self.switch_loaded(&mut run);
            }
            self.one(op, &mut run)?;
        }
        self.switch_loaded(&mut run);
        Ok(())
    }

    /// `apply::Applier::switch_loaded`: pins the loaded programs, then copies the replaced
    /// maps' entries once more without overwriting.
    fn switch_loaded(&mut self, run: &mut Run) {
        if run.unswitched.is_empty() {
            return;
        }
        for (name, identity) in std::mem::take(&mut run.unswitched) {
            self.programs.insert(name, ProgramState { identity });
        }
        for (name, old) in std::mem::take(&mut run.migrating) {
            if let (Some(old), Some(new)) = (
                old,
                self.maps
                    .get_mut(&name)
                    .and_then(|m| m.entries.as_mut())
                    .map(Arc::make_mut),
            ) {
                for (k, v) in old.iter() {
                    new.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }

    fn one(&mut self, op: &Op, run: &mut Run) -> Result<(), Refused> {
        let no_map = |map: &str| Refused::NoMap {
            op: op.describe(),
            map: map.to_string(),
        };
        let no_program = |program: &str| Refused::NoProgram {
            op: op.describe(),
            program: program.to_string(),
        };
        match op {
            Op::CreateVeth {
                name,
                mac,
                peer,
                peer_mac,
            } => {
                for n in [name, peer] {
                    if self.links.contains_key(n) {
                        return Err(Refused::LinkExists {
                            op: op.describe(),
                            name: n.clone(),
                        });
                    }
                }
                for (n, mac, other) in [(name, mac, peer), (peer, peer_mac, name)] {
                    self.links.insert(
                        n.clone(),
                        LinkState {
                            sysctls: BTreeMap::new(),
                            owned: Some(OwnedLink {
                                kind: "veth".into(),
                                peer: Some(other.clone()),
                                mac: *mac,
                                up: false,
                                vxlan: None,
                            }),
                        },
                    );
                }
            }
            Op::CreateVxlan { name, mac, vxlan } => {
                if self.links.contains_key(name) {
                    return Err(Refused::LinkExists {
                        op: op.describe(),
                        name: name.clone(),
                    });
                }
                self.links.insert(
                    name.clone(),
                    LinkState {
                        sysctls: BTreeMap::new(),
                        owned: Some(OwnedLink {
                            kind: "vxlan".into(),
                            peer: None,
                            mac: *mac,
                            up: false,
                            vxlan: Some(*vxlan),
                        }),
                    },
                );
            }
            Op::AddressAdd { dev, addr, len } => {
                self.addresses.insert((dev.clone(), *addr, *len));
            }
            Op::AddressDelete { dev, addr, len } => {
                self.addresses.remove(&(dev.clone(), *addr, *len));
            }
            Op::FdbReplace { dev, mac, dst } => {
                self.fdb.insert((dev.clone(), *mac), *dst);
            }
            Op::FdbDelete { dev, mac } => {
                self.fdb.remove(&(dev.clone(), *mac));
            }
            Op::SetLinkUp { name } => {
                if let Some(o) = self.links.get_mut(name).and_then(|l| l.owned.as_mut()) {
                    o.up = true;
                }
            }
            Op::DeleteLink { name } => {
                let peer = self
                    .links
                    .get(name)
                    .and_then(|l| l.owned.as_ref())
                    .and_then(|o| o.peer.clone());
                self.forget_device(name, run);
                if let Some(p) = peer {
                    self.forget_device(&p, run);
                }
            }
            Op::SetSysctl { dev, key, value } => {
                self.links
                    .entry(dev.clone())
                    .or_default()
                    .sysctls
                    .insert(key.clone(), value.clone());
            }
            Op::ResetSysctl { dev, key } => {
                if let Some(l) = self.links.get_mut(dev) {
                    l.sysctls.remove(key);
                    if l.sysctls.is_empty() && l.owned.is_none() {
                        self.links.remove(dev);
                    }
                }
            }
            Op::ReplaceMap { name, old, new } => {
                let carried = crate::plan::carries_entries(name, old, new);
                let pinned = self.maps.remove(name);
                if carried {
                    let Some(pinned) = pinned else {
                        return Err(no_map(name));
                    };
                    run.migrating.insert(name.clone(), pinned.entries);
                }
                if name == maps::POL_RS {
                    self.rulesets.clear();
                }
            }
            Op::LoadPrograms {
                object,
                identity,
                sizes,
            } => {
                let defs = maps::defs(sizes);
                for def in &defs {
                    if let Some(pinned) = self.maps.get(&def.name) {
                        if pinned.def != *def {
                            return Err(Refused::MapIncompatible {
                                op: op.describe(),
                                map: def.name.clone(),
                                pinned: pinned.def.shape(),
                                wanted: def.shape(),
                            });
                        }
                    }
                }
                for def in defs {
                    if !self.maps.contains_key(&def.name) {
                        let entries = maps::RECONCILED
                            .contains(&def.name.as_str())
                            .then(|| Arc::new(Entries::new()));
                        if def.name == maps::POL_RS {
                            self.rulesets.clear();
                        }
                        self.maps
                            .insert(def.name.clone(), MapState { def, entries });
                    }
                }
                for (name, old) in &run.migrating {
                    if let (Some(old), Some(new)) = (
                        old,
                        self.maps
                            .get_mut(name)
                            .and_then(|m| m.entries.as_mut())
                            .map(Arc::make_mut),
                    ) {
                        new.extend(old.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                let built = ProgramIdentity::current(*object, identity.settings);
                for p in object.programs() {
                    run.unswitched.insert(p.to_string(), built);
                }
            }
            Op::WriteEntries { map, entries } => {
                let m = self.maps.get_mut(map).ok_or_else(|| no_map(map))?;
                if let Some(have) = m.entries.as_mut().map(Arc::make_mut) {
                    have.extend(entries.iter().cloned());
                }
            }
            Op::DeleteEntries { map, keys } => {
                let m = self.maps.get_mut(map).ok_or_else(|| no_map(map))?;
                if let Some(have) = m.entries.as_mut().map(Arc::make_mut) {
                    for k in keys {
                        have.remove(k.as_slice());
                    }
                }
            }
            Op::LoadRuleset { id, cells } => {
                if !self.maps.contains_key(maps::POL_RS) {
                    return Err(no_map(maps::POL_RS));
                }
                self.rulesets.insert(*id, cells.clone());
            }
            Op::DropRuleset { id } => {
                if !self.maps.contains_key(maps::POL_RS) {
                    return Err(no_map(maps::POL_RS));
                }
                self.rulesets.remove(id);
            }
            Op::Attach {
                iface,
                hook,
                program,
                mode,
            } => {
                if !self.programs.contains_key(program) {
                    return Err(no_program(program));
                }
                let key = (iface.clone(), *hook);
                let now = AttachmentState {
                    program: program.clone(),
                    mode: *mode,
                };
                match (self.attachments.get(&key).map(|a| a.mode), mode) {
                    // A tc program goes in front of a TCX one.
                    (Some(m), AttachMode::Tc) if m.is_link() => {
                        let tcx = self.attachments.insert(key.clone(), now).expect("there");
                        run.hidden_tcx.insert(key, tcx.program);
                    }
                    // A TCX one goes behind a tc one (or replaces the TCX one behind it).
                    (Some(AttachMode::Tc), m) if m.is_link() => {
                        run.hidden_tcx.insert(key, program.clone());
                    }
                    _ => {
                        self.attachments.insert(key, now);
                    }
                }
            }
            Op::Detach { iface, hook, mode } => {
                let key = (iface.clone(), *hook);
                match (self.attachments.get(&key).map(|a| a.mode), mode) {
                    (Some(AttachMode::Tc), AttachMode::Tc) => {
                        self.attachments.remove(&key);
                        if let Some(program) = run.hidden_tcx.remove(&key) {
                            self.attachments.insert(
                                key,
                                AttachmentState {
                                    program,
                                    mode: AttachMode::Tcx,
                                },
                            );
                        }
                    }
                    (Some(a), b) if a.is_link() && b.is_link() => {
                        self.attachments.remove(&key);
                    }
                    (_, m) if m.is_link() => {
                        run.hidden_tcx.remove(&key);
                    }
                    (_, _) => {}
                }
            }
            Op::AttachCgroup {
                hook,
                cgroup,
                program,
            } => {
                if !self.programs.contains_key(program) {
                    return Err(no_program(program));
                }
                self.cgroup_attachments.insert(
                    *hook,
                    CgroupAttachment {
                        cgroup: cgroup.clone(),
                        program: program.clone(),
                    },
                );
            }
            Op::DetachCgroup { hook } => {
                self.cgroup_attachments.remove(hook);
            }
            Op::RouteReplace { dst, route, .. } => {
                self.routes.insert(*dst, route.clone());
            }
            Op::RouteDelete { dst, route } => {
                if self
                    .routes
                    .get(dst)
                    .is_some_and(|r| r.dev == route.dev && r.via == route.via)
                {
                    self.routes.remove(dst);
                }
            }
            // The route put back is someone else's: not in weft's state.
            Op::RouteRestore { .. } => {}
            Op::NeighReplace { dev, ip, lladdr } => {
                self.neighbours
                    .insert((dev.clone(), *ip), NeighbourState { lladdr: *lladdr });
            }
            Op::NeighDelete { dev, ip } => {
                self.neighbours.remove(&(dev.clone(), *ip));
            }
            Op::UnpinProgram { name } => {
                self.programs.remove(name);
                let unknown = "prog id ?".to_string();
                for a in self.attachments.values_mut() {
                    if &a.program == name {
                        a.program = unknown.clone();
                    }
                }
                for p in run.hidden_tcx.values_mut() {
                    if p == name {
                        *p = unknown.clone();
                    }
                }
                for a in self.cgroup_attachments.values_mut() {
                    if &a.program == name {
                        a.program = unknown.clone();
                    }
                }
            }
            Op::UnpinMap { name } => {
                self.maps.remove(name);
                if name == maps::POL_RS {
                    self.rulesets.clear();
                }
            }
        }
        Ok(())
    }

    /// This state as it is once the devices `gone` are deleted (see `DeleteLink`): what the
    /// plan compares desired state with for devices it makes again.
    pub(crate) fn without_devices(&self, gone: &BTreeSet<String>) -> HostState {
        let mut s = self.clone();
        for dev in gone {
            s.forget_device(dev, &mut Run::default());
        }
        s
    }

    /// A device gone: its settings, routes and neighbours with it, its tc programs detached,
    /// its TCX and XDP links defunct (still pinned).
    fn forget_device(&mut self, dev: &str, run: &mut Run) {
        self.links.remove(dev);
        self.routes.retain(|_, r| r.dev != dev);
        self.neighbours.retain(|(d, _), _| d != dev);
        self.fdb.retain(|(d, _), _| d != dev);
        self.addresses.retain(|(d, _, _)| d != dev);
        for hook in [Hook::Ingress, Hook::Egress, Hook::Xdp] {
            let key = (dev.to_string(), hook);
            let tcx = match self.attachments.remove(&key) {
                Some(a) if a.mode.is_link() => Some(a),
                _ => run.hidden_tcx.remove(&key).map(|_| AttachmentState {
                    program: String::new(),
                    mode: AttachMode::Tcx,
                }),
            };
            if let Some(mut a) = tcx {
                a.program = DEFUNCT.to_string();
                self.attachments.insert(key, a);
            }
        }
    }
}

#[cfg(test)]
mod tests;
