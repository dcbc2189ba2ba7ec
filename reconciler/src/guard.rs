//! What one converge may take away. A directory that a failed git checkout left empty, or
//! half-written, or a `--node` that matches no WorkloadEndpoint, gives a desired state with
//! few or no endpoints; converging to it would detach every workload's policy and remove its
//! routes. So before anything runs, the plan's desired state is held against the live one:
//! a state with no endpoints while some are live is refused unless the operator says it is
//! meant (`--allow-empty`), and the daemon refuses a change that removes more than a share of
//! the live endpoints at once (`--max-endpoint-removal`). A refusal names what would have
//! gone. Pure: states in, a verdict out.

use std::collections::BTreeSet;

use crate::state::HostState;

/// What one converge may take away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Converging to no endpoints while some are live is allowed.
    pub allow_empty: bool,
    /// The largest share of the live endpoints, in percent, that one converge may remove
    /// (the daemon's); None: no limit (an apply is one deliberate change).
    pub max_removal_percent: Option<u8>,
}

impl Default for Guard {
    /// An apply's: nothing-while-live refused, no share limit.
    fn default() -> Guard {
        Guard {
            allow_empty: false,
            max_removal_percent: None,
        }
    }
}

impl Guard {
    /// No guard: for callers that decide for themselves (tests, the in-memory kernel).
    pub const NONE: Guard = Guard {
        allow_empty: true,
        max_removal_percent: None,
    };
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refusing to remove every endpoint live on this host: the files give node {node} none, and converging would remove {what}. An empty or half-written directory (a failed checkout), or a --node that matches no WorkloadEndpoint, looks like this; if it is meant, run again with --allow-empty")]
    Empty { node: String, what: String },
    #[error("refusing to remove {removed} of the {live} endpoints live on this host in one change (the limit is {limit}%): {names}. A half-written directory looks like this; if it is meant, remove them in smaller steps or raise --max-endpoint-removal")]
    TooMany {
        removed: usize,
        live: usize,
        limit: u8,
        names: String,
    },
}

/// The endpoints of a state: the interfaces with programs attached that are not weft's own
/// devices.
fn endpoints(s: &HostState) -> BTreeSet<&str> {
    s.attachments
        .keys()
        .map(|(iface, _)| iface.as_str())
        .filter(|i| s.links.get(*i).is_none_or(|l| l.owned.is_none()))
        .collect()
}

/// At most this many names in a refusal; the rest are counted.
const NAMES: usize = 10;

fn names(set: &BTreeSet<&str>) -> String {
    let shown: Vec<&str> = set.iter().take(NAMES).copied().collect();
    let more = set.len().saturating_sub(NAMES);
    let mut s = shown.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// Whether converging from `live` to `desired` on node `node` is within `guard`.
pub fn check(
    desired: &HostState,
    live: &HostState,
    node: &str,
    guard: Guard,
) -> Result<(), Refusal> {
    let have = endpoints(live);
    if have.is_empty() {
        return Ok(());
    }
    let want = endpoints(desired);
    let gone: BTreeSet<&str> = have.difference(&want).copied().collect();
    if want.is_empty() {
        // Everything goes: what --allow-empty is for, whatever the share limit.
        if guard.allow_empty {
            return Ok(());
        }
        let routes = live.routes.len();
        return Err(Refusal::Empty {
            node: node.to_string(),
            what: format!(
                "{} endpoint(s) ({}) with their policy, {routes} route(s) and {} program(s)",
                have.len(),
                names(&have),
                live.programs.len()
            ),
        });
    }
    if let Some(limit) = guard.max_removal_percent {
        if gone.len() > 1 && gone.len() * 100 > usize::from(limit) * have.len() {
            return Err(Refusal::TooMany {
                removed: gone.len(),
                live: have.len(),
                limit,
                names: names(&gone),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{AttachMode, Hook};
    use crate::state::AttachmentState;

    fn with(ifaces: &[&str]) -> HostState {
        let mut s = HostState::default();
        for i in ifaces {
            s.attachments.insert(
                (i.to_string(), Hook::Ingress),
                AttachmentState {
                    program: "weft_from_wep".into(),
                    mode: AttachMode::Tcx,
                },
            );
        }
        s
    }

    const DAEMON: Guard = Guard {
        allow_empty: false,
        max_removal_percent: Some(50),
    };

    #[test]
    fn nothing_while_endpoints_are_live_is_refused_unless_allowed() {
        let live = with(&["calia", "calib"]);
        let e = check(&HostState::default(), &live, "n1", DAEMON).expect_err("refused");
        assert!(
            e.to_string().contains("2 endpoint(s) (calia, calib)"),
            "{e}"
        );
        assert!(e.to_string().contains("--allow-empty"), "{e}");
        let allowed = Guard {
            allow_empty: true,
            ..DAEMON
        };
        assert_eq!(
            check(&HostState::default(), &live, "n1", allowed),
            Ok(()),
            "--allow-empty"
        );
        // Nothing live, nothing to lose: a first apply of an empty directory is fine.
        assert_eq!(
            check(&HostState::default(), &HostState::default(), "n1", DAEMON),
            Ok(())
        );
    }

    #[test]
    fn the_daemon_refuses_to_remove_more_than_its_share_at_once() {
        let live = with(&["a", "b", "c", "d"]);
        // Two of four is the limit, not past it; three is.
        assert_eq!(check(&with(&["a", "b"]), &live, "n1", DAEMON), Ok(()));
        let e = check(&with(&["a"]), &live, "n1", DAEMON).expect_err("refused");
        assert_eq!(
            e,
            Refusal::TooMany {
                removed: 3,
                live: 4,
                limit: 50,
                names: "b, c, d".into()
            }
        );
        // One endpoint going is always allowed; an apply has no share limit.
        assert_eq!(
            check(&with(&["a"]), &with(&["a", "b"]), "n1", DAEMON),
            Ok(())
        );
        let apply = Guard {
            allow_empty: false,
            max_removal_percent: None,
        };
        assert_eq!(check(&with(&["a"]), &live, "n1", apply), Ok(()));
    }
}
