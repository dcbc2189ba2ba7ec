//! Routes of others that a route of weft's would replace. `ip route replace` matches a route by
//! destination, tos and metric, not by protocol, so weft's route to a workload replaces a route
//! someone else keeps there (proto static through an uplink, say), and teardown would then
//! delete it as weft's. Such routes are looked for where weft routes anew
//! (`plan::new_route_destinations`; most reconciles add no route and ask the kernel nothing),
//! and the plan marks the replacements (`plan::with_foreign_routes`); here, on the way to the kernel, a plan
//! that takes one over is refused unless the operator allowed it (`--take-over-routes`), and
//! with leave each route taken over is recorded in the state directory before it is replaced,
//! so that it is put back as it was when weft's route there goes (a plan's RouteDelete, or
//! `weft teardown`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::facts::ForeignRoute;
use crate::plan::{self, Op};
use crate::policy::flat::Net4;
use crate::statedir::{self, StateDirError};

/// The record's file in the state directory.
pub const RECORD: &str = "routes-taken-over.json";

#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("weft's routes would replace {} route(s) that are not weft's:\n  {}\nnothing was changed: remove those routes or the workloads and services that want their destinations, or let weft take them over with --take-over-routes (it puts them back when its own routes there go)", routes.len(), routes.join("\n  "))]
    Refused { routes: Vec<String> },
    #[error("recording the routes weft takes over: {0}")]
    Record(#[from] StateDirError),
}

/// One route in the record.
#[derive(Serialize, Deserialize)]
struct Recorded {
    dst: String,
    shown: String,
    /// The kernel's message for the route, in hex.
    message: String,
}

fn parse_net(s: &str) -> Option<Net4> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some(Net4::new(u32::from(addr), len))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (s.len() % 2 == 0)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

/// The routes the record in `state_dir` says weft took over. A record that is missing is
/// empty; one that cannot be read is reported and taken as empty (the routes in it cannot be
/// put back by weft then).
pub fn read(state_dir: &Path) -> BTreeMap<Net4, ForeignRoute> {
    let path = state_dir.join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!("{}: {e}", path.display());
            return BTreeMap::new();
        }
    };
    let list: Vec<Recorded> = match serde_json::from_slice(&bytes) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("{}: {e}", path.display());
            return BTreeMap::new();
        }
    };
    list.into_iter()
        .filter_map(|r| {
            let route = ForeignRoute {
                dst: parse_net(&r.dst)?,
                shown: r.shown,
                message: unhex(&r.message)?,
            };
            Some((route.dst, route))
        })
        .collect()
}

/// Writes the record (removes it when empty).
pub fn write(state_dir: &Path, routes: &BTreeMap<Net4, ForeignRoute>) -> Result<(), StateDirError> {
    if routes.is_empty() {
        return match std::fs::remove_file(state_dir.join(RECORD)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateDirError::Io {
                path: state_dir.join(RECORD),
                source: e,
            }),
            _ => Ok(()),
        };
    }
    let list: Vec<Recorded> = routes
        .values()
        .map(|r| Recorded {
            dst: r.dst.to_string(),
            shown: r.shown.clone(),
            message: hex(&r.message),
        })
        .collect();
    let json = serde_json::to_vec_pretty(&list).expect("the record serializes");
    statedir::write(state_dir, RECORD, &json)
}

/// The routes of `record` that weft still holds: one whose destination has a route of
/// someone else's again (`foreign`) was put back, by weft or by its owner, and is weft's no
/// more.
pub fn recorded(
    mut record: BTreeMap<Net4, ForeignRoute>,
    foreign: &BTreeMap<Net4, ForeignRoute>,
) -> BTreeMap<Net4, ForeignRoute> {
    record.retain(|dst, _| !foreign.contains_key(dst));
    record
}

/// `ops` marked for the routes of others on this host (`plan::with_foreign_routes`); not
/// copied when it touches none of them, as most plans do.
pub fn mark<'a>(
    ops: &'a [Op],
    foreign: &BTreeMap<Net4, ForeignRoute>,
    taken_over: &BTreeMap<Net4, ForeignRoute>,
) -> Cow<'a, [Op]> {
    let touches = ops.iter().any(|o| match o {
        Op::RouteReplace { dst, .. } => foreign.contains_key(dst),
        Op::RouteDelete { dst, .. } => taken_over.contains_key(dst),
        _ => false,
    });
    if touches {
        Cow::Owned(plan::with_foreign_routes(ops.to_vec(), foreign, taken_over))
    } else {
        Cow::Borrowed(ops)
    }
}

/// Refuses `ops` (marked) when it takes over routes of others and `allowed` is false, naming
/// each route.
pub fn check(ops: &[Op], allowed: bool) -> Result<(), TakeoverError> {
    let theirs = plan::takeovers(ops);
    if theirs.is_empty() || allowed {
        return Ok(());
    }
    Err(TakeoverError::Refused {
        routes: theirs.iter().map(|r| r.to_string()).collect(),
    })
}

/// Where a host keeps the record, and whether it may take routes over.
pub struct Takeovers<'a> {
    pub allowed: bool,
    pub state_dir: &'a PathBuf,
}

impl Takeovers<'_> {
    /// Before `ops` (marked) run: refuses them without leave; with it, records the routes
    /// they take over beside those `taken_over` already, so that a crash after the replace
    /// still knows what to put back.
    pub fn before(
        &self,
        ops: &[Op],
        taken_over: &BTreeMap<Net4, ForeignRoute>,
    ) -> Result<(), TakeoverError> {
        check(ops, self.allowed)?;
        let theirs = plan::takeovers(ops);
        if theirs.is_empty() {
            return Ok(());
        }
        let mut all = taken_over.clone();
        for r in theirs {
            tracing::warn!("taking over the route {r} (put back when weft's route goes)");
            all.insert(r.dst, r.clone());
        }
        Ok(write(self.state_dir, &all)?)
    }

    /// After `ops` (marked) ran: the routes they put back are weft's to hold no more.
    pub fn after(&self, ops: &[Op]) -> Result<(), TakeoverError> {
        let mut restored = ops.iter().filter_map(|o| match o {
            Op::RouteRestore { route } => Some(route.dst),
            _ => None,
        });
        let Some(first) = restored.next() else {
            return Ok(());
        };
        let mut all = read(self.state_dir);
        for dst in std::iter::once(first).chain(restored) {
            all.remove(&dst);
        }
        Ok(write(self.state_dir, &all)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RouteState;

    fn route(dst: &str) -> ForeignRoute {
        ForeignRoute {
            dst: parse_net(dst).unwrap(),
            shown: format!("{dst} via 192.0.2.2 dev up0 proto static"),
            message: vec![2, 32, 0, 0, 254, 4, 0, 1],
        }
    }

    #[test]
    fn a_takeover_is_refused_without_leave_naming_the_route() {
        let ops = vec![Op::RouteReplace {
            dst: parse_net("10.65.0.2/32").unwrap(),
            route: RouteState::direct("calia"),
            takes_over: Some(route("10.65.0.2/32")),
        }];
        let e = check(&ops, false).expect_err("refused");
        assert!(
            e.to_string()
                .contains("10.65.0.2/32 via 192.0.2.2 dev up0 proto static"),
            "{e}"
        );
        assert!(check(&ops, true).is_ok());
        let mut mine = ops;
        if let Op::RouteReplace { takes_over, .. } = &mut mine[0] {
            *takes_over = None;
        }
        assert!(
            check(&mine, false).is_ok(),
            "weft's own route needs no leave"
        );
    }

    #[test]
    fn the_record_round_trips_and_an_empty_one_is_no_file() {
        let d = std::env::temp_dir().join(format!("weft-takeover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let r = route("10.65.0.2/32");
        let all = BTreeMap::from([(r.dst, r.clone())]);
        write(&d, &all).expect("write");
        assert_eq!(read(&d), all);
        assert!(
            recorded(read(&d), &all).is_empty(),
            "a route that is someone else's again is not weft's to put back"
        );
        write(&d, &BTreeMap::new()).expect("write");
        assert!(!d.join(RECORD).exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
