//! Runs a plan's operations against the kernel, in order, stopping at the first failure: the
//! plan's order keeps endpoints protected at every step, so stopping early leaves a state that
//! is incomplete but never open. "Already there" and "already gone" are success.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use libbpf_rs::{MapCore, MapFlags, MapHandle, ProgramHandle};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::AddressFamily;

use crate::bpf::link::{self, AttachMode};
use crate::bpf::load;
use crate::bpf::rulesets;
use crate::bpf::{BpfError, Hook, Pins};
use crate::facts::HostFacts;
use crate::netlink::neigh::Neigh4;
use crate::netlink::route::Route4;
use crate::netlink::{sysctl, Netlink, NetlinkError};
use crate::plan::Op;
use crate::policy::flat::Net4;
use crate::state::{RouteState, OWNED_ALIAS};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{op}: {source}")]
    Bpf { op: String, source: BpfError },
    #[error("{op}: {source}")]
    Netlink { op: String, source: NetlinkError },
    #[error("{op}: interface {iface} does not exist")]
    NoSuchLink { op: String, iface: String },
}

/// How many entries pass between two progress reports within one operation.
const TICK: usize = 1024;

/// How many kernel objects an operation touches: each entry of an entry operation, else one.
pub fn objects(op: &Op) -> usize {
    match op {
        Op::WriteEntries { entries, .. } => entries.len(),
        Op::DeleteEntries { keys, .. } => keys.len(),
        _ => 1,
    }
}

/// Where an apply is: `index` of `ops` operations, `objects_done` of `objects` objects (an
/// operation on map entries counts each entry).
pub struct Progress<'a> {
    pub op: &'a Op,
    pub index: usize,
    pub ops: usize,
    pub objects_done: usize,
    pub objects: usize,
    /// True when `op` is about to start, false for reports from within it.
    pub starting: bool,
}

/// Route requests sent before their answers are awaited.
const ROUTES_IN_FLIGHT: usize = 512;
/// Operations run at once on threads of their own (see `threaded`).
const THREADS_IN_FLIGHT: usize = 64;

/// Operations that may run on threads of their own beside others of their kind: they wait
/// for an RCU grace period each, touch one kernel object each, and a run of them in the plan
/// never depends on its own members. (TCX attachments wait for a grace period too, but under
/// the RTNL lock, so threads do not make them overlap: measured, no gain.)
fn threaded(op: &Op) -> Option<u8> {
    match op {
        Op::LoadRuleset { .. } => Some(0),
        Op::DropRuleset { .. } => Some(1),
        _ => None,
    }
}

pub struct Applier<'a> {
    pub pins: &'a Pins,
    pub nl: &'a Netlink,
    pub facts: &'a HostFacts,
    /// Replaced maps, whose entries go into their successors once loaded.
    migrating: BTreeMap<String, Migration>,
    /// Programs loaded but not yet put in place of the ones they replace.
    unswitched: BTreeMap<String, ProgramHandle>,
    /// Interfaces gone since the facts were gathered (an operation on one failed, and it no
    /// longer exists with the index the plan used): the rest of their operations are skipped.
    /// The kernel took their routes, neighbours and attachments with them.
    vanished: RefCell<BTreeSet<String>>,
}

fn map_err(name: &str) -> impl Fn(libbpf_rs::Error) -> BpfError + '_ {
    move |source| BpfError::Map {
        name: name.to_string(),
        source,
    }
}

impl<'a> Applier<'a> {
    pub fn new(pins: &'a Pins, nl: &'a Netlink, facts: &'a HostFacts) -> Self {
        Applier {
            pins,
            nl,
            facts,
            migrating: BTreeMap::new(),
            unswitched: BTreeMap::new(),
            vanished: RefCell::default(),
        }
    }

    /// Runs `ops` in order; `progress` hears about each before it runs, and about every
    /// thousand entries written or deleted within one. Stops at the first operation that
    /// fails, except where it fails because its interface has gone meanwhile: that one, and
    /// the interface's operations after it, are skipped, and the interface is among those
    /// returned (a plan made now would leave it out, with a warning).
    pub async fn run(
        &mut self,
        ops: &[Op],
        mut progress: impl FnMut(&Progress<'_>),
    ) -> Result<BTreeSet<String>, ApplyError> {
        let total = ops.iter().map(objects).sum();
        let mut done = 0;
        let mut i = 0;
        while i < ops.len() {
            let op = &ops[i];
            if !op.runs_before_switch() {
                self.switch_loaded().map_err(|source| ApplyError::Bpf {
                    op: op.describe(),
                    source,
                })?;
            }
            // A run of routes of one kind (direct, or through a gateway) goes to the kernel
            // together: a netlink request per route, but not a wait for each answer before
            // the next is sent. They do not depend on one another; the plan puts the direct
            // routes a gateway needs in a run before the gatewayed ones.
            let run = ops[i..]
                .iter()
                .take_while(|o| match (o, op) {
                    (Op::RouteReplace { route: a, .. }, Op::RouteReplace { route: b, .. }) => {
                        a.via.is_some() == b.via.is_some()
                    }
                    _ => false,
                })
                .count();
            // Rulesets on threads of their own: each insert into or delete from weft_pol_rs
            // (a map of maps) returns only after an RCU grace period (the kernel waits for
            // programs that may still read the inner map replaced), some 10 to 20 ms. Waits
            // that overlap share a grace period, so a run of them costs about one.
            let together = threaded(op).map_or(0, |k| {
                ops[i..]
                    .iter()
                    .take_while(|o| threaded(o) == Some(k))
                    .count()
            });
            if together > 1 {
                for (j, op) in ops[i..i + together].iter().enumerate() {
                    progress(&Progress {
                        op,
                        index: i + j + 1,
                        ops: ops.len(),
                        objects_done: done + j,
                        objects: total,
                        starting: true,
                    });
                }
                for chunk in ops[i..i + together].chunks(THREADS_IN_FLIGHT) {
                    self.threaded(chunk)?;
                }
                done += together;
                i += together;
                continue;
            }
            if run > 1 {
                for (j, op) in ops[i..i + run].iter().enumerate() {
                    progress(&Progress {
                        op,
                        index: i + j + 1,
                        ops: ops.len(),
                        objects_done: done + j,
                        objects: total,
                        starting: true,
                    });
                }
                let this = &*self;
                for chunk in ops[i..i + run].chunks(ROUTES_IN_FLIGHT) {
                    futures_util::future::try_join_all(
                        chunk
                            .iter()
                            .filter(|op| !this.skipped(op))
                            .map(|op| async move {
                                let r = this.route(op).await;
                                this.excuse(op, r)
                            }),
                    )
                    .await?;
                }
                done += run;
                i += run;
                continue;
            }
            let mut at = Progress {
                op,
                index: i + 1,
                ops: ops.len(),
                objects_done: done,
                objects: total,
                starting: true,
            };
            progress(&at);
            at.starting = false;
            if !self.skipped(op) {
                let r = self
                    .one(op, &mut |n| {
                        at.objects_done = done + n;
                        progress(&at);
                    })
                    .await;
                self.excuse(op, r)?;
            }
            done += objects(op);
            i += 1;
        }
        self.switch_loaded().map_err(|source| ApplyError::Bpf {
            op: "switching to the programs loaded".into(),
            source,
        })?;
        Ok(self.vanished.take())
    }

    /// Whether `op` is skipped: its interface has gone.
    fn skipped(&self, op: &Op) -> bool {
        op.iface()
            .is_some_and(|i| self.vanished.borrow().contains(i))
    }

    /// `r`, the result of `op`, unless it failed because its interface has gone since the
    /// facts were gathered: then the interface is remembered as vanished and `op` counts as
    /// done. Whatever the error says (ENODEV from netlink, ENOENT from a sysctl file), the
    /// interface's absence now is what decides.
    fn excuse(&self, op: &Op, r: Result<(), ApplyError>) -> Result<(), ApplyError> {
        let Err(e) = r else {
            return Ok(());
        };
        let Some(iface) = op.iface() else {
            return Err(e);
        };
        let planned = self.facts.links.get(iface).copied();
        if planned.is_none() || crate::netlink::link::index_now(iface) == planned {
            return Err(e);
        }
        tracing::warn!(
            "{iface} has gone since this apply began ({}: {e}); skipping its operations",
            op.describe()
        );
        self.vanished.borrow_mut().insert(iface.to_string());
        Ok(())
    }

    /// Puts the programs loaded so far in place of the ones they replace (every hook that ran
    /// an old one runs the new one from now on) and pins them; then copies once more what the
    /// old programs wrote into replaced maps meanwhile (entries the new programs have written
    /// since are newer and stay).
    fn switch_loaded(&mut self) -> Result<(), BpfError> {
        if self.unswitched.is_empty() {
            return Ok(());
        }
        for (name, new) in std::mem::take(&mut self.unswitched) {
            self.switch_program(&name, &new)?;
        }
        for (name, m) in std::mem::take(&mut self.migrating) {
            // Carried maps are the dataplane's own (conntrack, affinity): the old programs
            // went on writing into the old one until now.
            let late = m.copy(self.pins, &name, MapFlags::NO_EXIST)?;
            tracing::info!(
                map = %name,
                entries = m.first.kept + late.kept,
                dropped = m.first.dropped + late.dropped,
                "migrated the entries of a replaced map"
            );
        }
        Ok(())
    }

    /// After a change to XDP's fast path (`map`): what XDP cached of it before is void.
    fn void_xdp_cache(&self, map: &str) -> Result<(), ApplyError> {
        if map != crate::bpf::maps::XDP_HOST4 && map != crate::bpf::maps::XDP_SRC4 {
            return Ok(());
        }
        crate::bpf::xdp::void_pinned_cache(self.pins).map_err(|source| ApplyError::Bpf {
            op: format!("void XDP's cache after writing {map}"),
            source,
        })
    }

    /// Attaches a program (an Attach operation).
    fn attach(&self, op: &Op) -> Result<(), ApplyError> {
        let Op::Attach {
            iface,
            hook,
            program,
            mode,
        } = op
        else {
            unreachable!("only Attach operations");
        };
        let bpf = |source: BpfError| ApplyError::Bpf {
            op: op.describe(),
            source,
        };
        let ifindex = self.ifindex(op, iface)?;
        let prog = ProgramHandle::from_pinned_path(self.pins.prog(program))
            .map_err(|source| BpfError::Program {
                name: program.clone(),
                source,
            })
            .map_err(bpf)?;
        let attach_err = |source| BpfError::Attach {
            program: program.clone(),
            iface: iface.clone(),
            hook: *hook,
            source,
        };
        match mode {
            AttachMode::Tcx | AttachMode::XdpGeneric => {
                let generic = *mode == AttachMode::XdpGeneric;
                let pin = self.pins.link(iface, *hook);
                if pin.exists() {
                    // An XDP link keeps the mode it was made in: one in the other mode is
                    // made again (generic is asked for on veths only, where the driver's
                    // mode is always there to be had).
                    let same_mode = *hook != Hook::Xdp
                        || !self.facts.veths.contains(&ifindex)
                        || link::xdp_generic(ifindex).ok() == Some(generic);
                    match link::read_tcx(&pin) {
                        Ok(l) if l.ifindex == ifindex && l.hook == Some(*hook) && same_mode => {
                            return link::update_tcx(&pin, prog.as_fd())
                                .map_err(attach_err)
                                .map_err(bpf);
                        }
                        // Defunct (the interface was recreated), not ours to reuse, or in
                        // the other XDP mode.
                        _ => link::detach_tcx(&pin).map_err(attach_err).map_err(bpf)?,
                    }
                }
                link::attach_tcx(prog.as_fd(), ifindex, *hook, &pin, generic)
                    .map_err(attach_err)
                    .map_err(bpf)
            }
            AttachMode::Tc => link::attach_tc(prog.as_fd(), ifindex, *hook)
                .map_err(attach_err)
                .map_err(bpf),
        }
    }

    /// Runs `ops` (all of one `threaded` kind) each on a thread of its own.
    fn threaded(&self, ops: &[Op]) -> Result<(), ApplyError> {
        let pins = self.pins;
        std::thread::scope(|s| {
            let running: Vec<_> = ops
                .iter()
                .map(|op| {
                    s.spawn(move || {
                        let bpf = |source| ApplyError::Bpf {
                            op: op.describe(),
                            source,
                        };
                        match op {
                            Op::LoadRuleset { id, cells } => {
                                rulesets::load(pins, *id, cells).map_err(bpf)
                            }
                            Op::DropRuleset { id } => rulesets::drop(pins, *id).map_err(bpf),
                            _ => unreachable!("only threaded kinds run together"),
                        }
                    })
                })
                .collect();
            running
                .into_iter()
                .try_for_each(|t| t.join().expect("an operation's thread"))
        })
    }

    /// `ip route replace` for a RouteReplace operation.
    async fn route(&self, op: &Op) -> Result<(), ApplyError> {
        let Op::RouteReplace { dst, route, .. } = op else {
            unreachable!("only routes are sent together");
        };
        let r = self.route4(op, *dst, route)?;
        self.nl
            .route_replace(&r)
            .await
            .map_err(|source| ApplyError::Netlink {
                op: op.describe(),
                source,
            })
    }

    /// The kernel's form of weft's route to `dst`: its device by index.
    fn route4(&self, op: &Op, dst: Net4, r: &RouteState) -> Result<Route4, ApplyError> {
        Ok(Route4 {
            dst,
            oif: if r.is_blackhole() {
                0
            } else {
                self.ifindex(op, &r.dev)?
            },
            via: r.via,
            onlink: r.onlink,
        })
    }

    fn ifindex(&self, op: &Op, iface: &str) -> Result<u32, ApplyError> {
        if let Some(&i) = self.facts.links.get(iface) {
            return Ok(i);
        }
        // Names observed for interfaces that are gone read "if<N>".
        iface
            .strip_prefix("if")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApplyError::NoSuchLink {
                op: op.describe(),
                iface: iface.to_string(),
            })
    }

    /// Runs one operation; `tick` hears how many of its entries are done, now and then.
    async fn one(&mut self, op: &Op, tick: &mut dyn FnMut(usize)) -> Result<(), ApplyError> {
        let bpf = |source: BpfError| ApplyError::Bpf {
            op: op.describe(),
            source,
        };
        let net = |source: NetlinkError| ApplyError::Netlink {
            op: op.describe(),
            source,
        };
        match op {
            Op::SetSysctl { dev, key, value } => sysctl::write(key, dev, value).map_err(net),
            Op::ResetSysctl { dev, key } => {
                if !self.facts.links.contains_key(dev) {
                    return Ok(());
                }
                let v = sysctl::default_value(key).map_err(net)?;
                sysctl::write(key, dev, &v).map_err(net)
            }
            Op::ReplaceMap { name, old, new } => {
                // Rulesets are not entries to copy (their values are maps): the plan loads
                // every desired ruleset into the new weft_pol_rs.
                if crate::plan::carries_entries(name, old, new) {
                    // Held open, so its entries can be read after its pin is gone.
                    let old = MapHandle::from_pinned_path(self.pins.map(name))
                        .map_err(map_err(name))
                        .map_err(bpf)?;
                    self.migrating.insert(
                        name.clone(),
                        Migration {
                            old,
                            first: Copied::default(),
                        },
                    );
                }
                remove_pin(&self.pins.map(name)).map_err(bpf)
            }
            Op::CreateVeth {
                name,
                mac,
                peer,
                peer_mac,
            } => self
                .nl
                .create_veth(name, *mac, peer, *peer_mac, OWNED_ALIAS)
                .await
                .map_err(net),
            Op::CreateVxlan { name, mac, vxlan } => self
                .nl
                .create_vxlan(name, *mac, vxlan, OWNED_ALIAS)
                .await
                .map_err(net),
            Op::AddressAdd { dev, addr, len } => {
                let index = self.ifindex(op, dev)?;
                self.nl.address_add(index, *addr, *len).await.map_err(net)
            }
            Op::AddressDelete { dev, addr, len } => {
                let Ok(index) = self.ifindex(op, dev) else {
                    return Ok(());
                };
                self.nl
                    .address_delete(index, *addr, *len)
                    .await
                    .map_err(net)
            }
            Op::FdbReplace { dev, mac, dst } => {
                let index = self.ifindex(op, dev)?;
                self.nl.fdb_replace(index, *mac, *dst).await.map_err(net)
            }
            Op::FdbDelete { dev, mac } => {
                let Ok(index) = self.ifindex(op, dev) else {
                    return Ok(());
                };
                self.nl.fdb_delete(index, *mac).await.map_err(net)
            }
            Op::SetLinkUp { name } => {
                let index = self.ifindex(op, name)?;
                self.nl.set_up(index).await.map_err(net)
            }
            Op::DeleteLink { name } => match self.facts.links.get(name) {
                Some(&index) => self.nl.delete_link(index).await.map_err(net),
                None => Ok(()),
            },
            Op::LoadPrograms {
                object,
                identity,
                sizes,
            } => {
                let loaded =
                    load::load(*object, self.pins, sizes, identity.settings).map_err(bpf)?;
                // Entries of replaced maps go into their successors before the new programs
                // run, so established flows find their conntrack entries at once ...
                for (name, m) in &mut self.migrating {
                    m.first = m.copy(self.pins, name, MapFlags::ANY).map_err(bpf)?;
                }
                // ... and the switch waits until the plan's entry writes that follow are done:
                // a map the new programs bring (created empty by this load) must be filled
                // before they run on live traffic.
                self.unswitched.extend(loaded.programs);
                Ok(())
            }
            Op::WriteEntries { map, entries } => {
                let m = MapHandle::from_pinned_path(self.pins.map(map))
                    .map_err(map_err(map))
                    .map_err(bpf)?;
                // In batches (one system call per BATCH entries where the map type has
                // batch operations), TICK entries between two progress reports.
                for (i, chunk) in entries.chunks(TICK).enumerate() {
                    if i > 0 {
                        tick(i * TICK);
                    }
                    crate::bpf::batch::write(
                        &m,
                        chunk.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    )
                    .map_err(map_err(map))
                    .map_err(bpf)?;
                }
                self.void_xdp_cache(map)
            }
            Op::LoadRuleset { id, cells } => rulesets::load(self.pins, *id, cells).map_err(bpf),
            Op::DropRuleset { id } => rulesets::drop(self.pins, *id).map_err(bpf),
            Op::DeleteEntries { map, keys } => {
                let m = MapHandle::from_pinned_path(self.pins.map(map))
                    .map_err(map_err(map))
                    .map_err(bpf)?;
                for (i, chunk) in keys.chunks(TICK).enumerate() {
                    if i > 0 {
                        tick(i * TICK);
                    }
                    crate::bpf::batch::delete(&m, chunk)
                        .map_err(map_err(map))
                        .map_err(bpf)?;
                }
                self.void_xdp_cache(map)
            }
            Op::Attach { .. } => self.attach(op),
            Op::Detach { iface, hook, mode } => {
                let detach_err = |source| BpfError::Detach {
                    iface: iface.clone(),
                    hook: *hook,
                    source,
                };
                match mode {
                    AttachMode::Tcx | AttachMode::XdpGeneric => {
                        link::detach_tcx(&self.pins.link(iface, *hook))
                            .map_err(detach_err)
                            .map_err(bpf)
                    }
                    AttachMode::Tc => match self.facts.links.get(iface) {
                        Some(&i) => link::detach_tc(i, *hook).map_err(detach_err).map_err(bpf),
                        None => Ok(()),
                    },
                }
            }
            Op::AttachCgroup {
                hook,
                cgroup,
                program,
            } => {
                let prog = ProgramHandle::from_pinned_path(self.pins.prog(program))
                    .map_err(|source| BpfError::Program {
                        name: program.clone(),
                        source,
                    })
                    .map_err(bpf)?;
                let pin = self.pins.cgroup_link(*hook);
                let path = std::path::Path::new(cgroup);
                let attach_err = |source| BpfError::Attach {
                    program: program.clone(),
                    iface: format!("cgroup {cgroup}"),
                    hook: Hook::Egress,
                    source,
                };
                if pin.exists() {
                    let same = link::read_cgroup(&pin).ok().is_some_and(|l| {
                        l.hook == Some(*hook) && link::cgroup_id(path).ok() == Some(l.cgroup_id)
                    });
                    if same {
                        return link::update_link(&pin, prog.as_fd())
                            .map_err(attach_err)
                            .map_err(bpf);
                    }
                    link::detach_link(&pin).map_err(attach_err).map_err(bpf)?;
                }
                link::attach_cgroup(prog.as_fd(), path, *hook, &pin)
                    .map_err(attach_err)
                    .map_err(bpf)
            }
            Op::DetachCgroup { hook } => link::detach_link(&self.pins.cgroup_link(*hook))
                .map_err(|source| BpfError::Detach {
                    iface: "cgroup".into(),
                    hook: Hook::Egress,
                    source,
                })
                .map_err(bpf),
            Op::RouteReplace { .. } => self.route(op).await,
            Op::RouteDelete { dst, route } => {
                let Ok(r) = self.route4(op, *dst, route) else {
                    return Ok(());
                };
                self.nl.route_delete(&r).await.map_err(net)
            }
            Op::RouteRestore { route } => self.nl.route_restore(route).await.map_err(net),
            Op::NeighReplace { dev, ip, lladdr } => {
                let ifindex = self.ifindex(op, dev)?;
                self.nl
                    .neigh_replace(&Neigh4 {
                        ifindex,
                        ip: *ip,
                        lladdr: *lladdr,
                    })
                    .await
                    .map_err(net)
            }
            Op::NeighDelete { dev, ip } => {
                let Ok(ifindex) = self.ifindex(op, dev) else {
                    return Ok(());
                };
                self.nl
                    .neigh_delete(neigh_message(ifindex, *ip))
                    .await
                    .map_err(net)
            }
            Op::UnpinProgram { name } => remove_pin(&self.pins.prog(name)).map_err(bpf),
            Op::UnpinMap { name } => remove_pin(&self.pins.map(name)).map_err(bpf),
        }
    }

    /// Moves every attachment of the pinned program `name` to `new`, in place, then pins `new`
    /// under that name. Hooks never run without a program.
    fn switch_program(&self, name: &str, new: &ProgramHandle) -> Result<(), BpfError> {
        let path = self.pins.prog(name);
        if let Ok(old) = ProgramHandle::from_pinned_path(&path) {
            let old_id = old.id();
            if let Ok(rd) = std::fs::read_dir(self.pins.links()) {
                for e in rd.flatten() {
                    let pin = e.path();
                    if link::link_prog_id(&pin).ok() == Some(old_id) {
                        link::update_link(&pin, new.as_fd()).map_err(|source| {
                            BpfError::Attach {
                                program: name.to_string(),
                                iface: e.file_name().to_string_lossy().into_owned(),
                                hook: Hook::Ingress,
                                source,
                            }
                        })?;
                    }
                }
            }
            for (iface, &ifindex) in &self.facts.links {
                for hook in [Hook::Ingress, Hook::Egress] {
                    if link::query_tc(ifindex, hook).ok().flatten() == Some(old_id) {
                        link::attach_tc(new.as_fd(), ifindex, hook).map_err(|source| {
                            BpfError::Attach {
                                program: name.to_string(),
                                iface: iface.clone(),
                                hook,
                                source,
                            }
                        })?;
                    }
                }
            }
            remove_pin(&path)?;
        }
        new.pin(&path).map_err(|source| BpfError::Program {
            name: name.to_string(),
            source,
        })
    }
}

/// A map being replaced by one of the same layout (a resize): the old map, held open after its
/// pin is gone, so its entries can be copied into the new one.
pub struct Migration {
    old: MapHandle,
    /// What the copy before the switch achieved.
    first: Copied,
}

/// What a copy achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub kept: usize,
    /// Entries a smaller map had no room for (conntrack is an LRU and never refuses).
    pub dropped: usize,
}

impl Migration {
    /// Copies every entry of the old map into the map pinned as `name` now. With
    /// `MapFlags::NO_EXIST`, entries the new map already has are left as they are.
    fn copy(&self, pins: &Pins, name: &str, flags: MapFlags) -> Result<Copied, BpfError> {
        let new = MapHandle::from_pinned_path(pins.map(name)).map_err(map_err(name))?;
        let percpu = self.old.map_type().is_percpu();
        let mut c = Copied::default();
        for k in self.old.keys() {
            let r = if percpu {
                match self.old.lookup_percpu(&k, MapFlags::ANY) {
                    Ok(Some(v)) => new.update_percpu(&k, &v, flags),
                    _ => continue,
                }
            } else {
                match self.old.lookup(&k, MapFlags::ANY) {
                    Ok(Some(v)) => new.update(&k, &v, flags),
                    _ => continue,
                }
            };
            match r {
                Ok(()) => c.kept += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {}
                Err(_) => c.dropped += 1,
            }
        }
        Ok(c)
    }
}

fn remove_pin(path: &std::path::Path) -> Result<(), BpfError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BpfError::Pin {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn neigh_message(ifindex: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    m
}
