//! The seam between orchestration and the host: what the converge loop (`run::apply_desired`)
//! and the incremental reconciler need of a kernel, and nothing more. `run::Host` is the real
//! one (netlink, bpffs, the BPF syscalls); `MemKernel` is a host in memory, built on the pure
//! `HostState::apply`, so that the orchestration (trust, retries, device creation, the
//! incremental path) is tested without root.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply::Progress;
use crate::desired::Desired;
use crate::facts::{ForeignRoute, HostFacts};
use crate::plan::Op;
use crate::policy::flat::Net4;
use crate::run::RunError;
use crate::state::HostState;

/// A host as the orchestration sees it: facts, the live state, and operations.
///
/// The futures need not be `Send`: weft converges on one thread (the daemon's loop runs its
/// reconciles inline).
#[allow(async_fn_in_trait)]
pub trait Kernel {
    /// The host's facts as last gathered.
    fn facts(&self) -> &HostFacts;

    /// Interfaces that are administratively down.
    fn down(&self) -> &BTreeSet<String>;

    /// Gathers the facts again (interfaces come and go; devices weft created appear).
    async fn refresh_facts(&mut self) -> Result<(), RunError>;

    /// The live state of what weft owns, and of the interfaces and hooks `scope` names.
    async fn observe(&self, scope: &HostState) -> Result<HostState, RunError>;

    /// The routes of others at the destinations `at` that a route of weft's would replace
    /// (`plan::with_foreign_routes`).
    async fn foreign_routes(
        &self,
        _at: &BTreeSet<Net4>,
    ) -> Result<BTreeMap<Net4, ForeignRoute>, RunError> {
        Ok(BTreeMap::new())
    }

    /// What one converge may take away (`guard::check`): nothing is guarded unless the host
    /// says so.
    fn guard(&self) -> crate::guard::Guard {
        crate::guard::Guard::NONE
    }

    /// Refuses a plan this host must not run, before any of it runs: one that takes over
    /// routes of others without leave (`takeover`).
    fn may_run(&self, _ops: &[Op]) -> Result<(), RunError> {
        Ok(())
    }

    /// Runs `ops` in order, stopping at the first that fails; operations on an interface
    /// that has gone meanwhile are skipped, and it is named in the answer.
    async fn apply(
        &mut self,
        ops: &[Op],
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Applied, RunError>;

    /// `d` less the routes and neighbours of interfaces that are down: the kernel refuses
    /// them, and removes them when an interface goes down. Devices weft creates are brought
    /// up by the same plan, before their routes, so theirs stay.
    fn without_down(&self, mut d: Desired) -> Desired {
        let down: BTreeSet<&String> = self
            .down()
            .iter()
            .filter(|dev| {
                !d.state
                    .links
                    .get(*dev)
                    .and_then(|l| l.owned.as_ref())
                    .is_some_and(|o| o.up)
            })
            .collect();
        d.state.routes.retain(|_, r| !down.contains(&r.dev));
        d.state.neighbours.retain(|(dev, _), _| !down.contains(dev));
        d
    }
}

/// What an apply that did not fail did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Interfaces that went away during the apply: their operations were skipped, so the live
    /// state is not the one planned for, and a plan from the facts as they are now is due.
    pub vanished: BTreeSet<String>,
}

/// A host in memory: its facts, and the state `observe` would read, changed by operations as
/// `HostState::apply` says the kernel changes. Devices weft creates get the next free ifindex
/// when the facts are gathered again, and are down until a plan brings them up.
#[derive(Clone, Debug, Default)]
pub struct MemKernel {
    pub facts: HostFacts,
    pub down: BTreeSet<String>,
    pub state: HostState,
    /// Every batch of operations applied, in order.
    pub applied: Vec<Vec<Op>>,
    /// Observations made.
    observed: std::cell::Cell<usize>,
    /// Fail the next `apply` after running this many of its operations (a fault injected).
    pub fail_after: Option<usize>,
}

impl MemKernel {
    pub fn new(facts: HostFacts) -> MemKernel {
        MemKernel {
            facts,
            ..Default::default()
        }
    }

    /// How many times the state was observed.
    pub fn observed_count(&self) -> usize {
        self.observed.get()
    }
}

impl Kernel for MemKernel {
    fn facts(&self) -> &HostFacts {
        &self.facts
    }

    fn down(&self) -> &BTreeSet<String> {
        &self.down
    }

    async fn refresh_facts(&mut self) -> Result<(), RunError> {
        let owned: Vec<_> = self
            .state
            .links
            .iter()
            .filter_map(|(name, l)| l.owned.as_ref().map(|o| (name.clone(), o.clone())))
            .collect();
        // Devices weft owned and deleted are gone; new ones get the next index.
        let gone: Vec<String> = self
            .facts
            .owned_links
            .keys()
            .filter(|n| !owned.iter().any(|(m, _)| m == *n))
            .cloned()
            .collect();
        for n in gone {
            self.facts.links.remove(&n);
            self.facts.owned_links.remove(&n);
            self.down.remove(&n);
        }
        for (name, link) in owned {
            let next = self.facts.links.values().max().copied().unwrap_or(1) + 1;
            self.facts.links.entry(name.clone()).or_insert(next);
            if link.up {
                self.down.remove(&name);
            } else {
                self.down.insert(name.clone());
            }
            self.facts.owned_links.insert(name, link);
        }
        Ok(())
    }

    async fn observe(&self, scope: &HostState) -> Result<HostState, RunError> {
        self.observed.set(self.observed.get() + 1);
        // As observe.rs reads it: the settings of the interfaces in scope only (and of the
        // devices weft owns); everything else weft owns, whole.
        let mut s = self.state.clone();
        s.links
            .retain(|name, l| l.owned.is_some() || scope.links.contains_key(name));
        Ok(s)
    }

    async fn apply(
        &mut self,
        ops: &[Op],
        _progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Applied, RunError> {
        self.applied.push(ops.to_vec());
        let (run, fail) = match self.fail_after.take() {
            Some(n) => (&ops[..n.min(ops.len())], n < ops.len()),
            None => (ops, false),
        };
        self.state
            .apply(run)
            .map_err(|e| RunError::Mem(e.to_string()))?;
        if fail {
            return Err(RunError::Mem(format!(
                "{}: failed (injected)",
                ops[run.len()].describe()
            )));
        }
        Ok(Applied::default())
    }
}

/// The orchestration against the in-memory kernel: trust, the incremental path, device
/// creation, and what a failed apply leaves.
#[cfg(test)]
mod tests {

    use super::*;
    use crate::incremental::{How, Reconciler};
    use crate::testdir::TestDir;
    use weft_model::ReadOptions;

    fn facts() -> HostFacts {
        HostFacts::fixture("n1", &[("lo", 1), ("eth0", 2), ("calia", 5)])
    }

    const WEP: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: shop}\nspec:\n  node: n1\n  interfaceName: calia\n  ipNetworks: [10.65.0.2]\n  profiles: [projectcalico-default-allow]\n";

    fn service(ip: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  clusterIP: {ip}\n  ports:\n    - {{name: http, port: 80, targetPort: 8080}}\n")
    }

    fn slice(backends: &[&str]) -> String {
        let eps: String = backends
            .iter()
            .map(|a| format!("  - {{addresses: [{a}], nodeName: n1}}\n"))
            .collect();
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n  - {{name: http, port: 8080}}\nendpoints:\n{eps}")
    }

    /// A directory with a workload, a service and its slice.
    fn config_dir(name: &str) -> TestDir {
        let d = TestDir::new(name);
        d.write("wep.yaml", WEP);
        d.write("svc.yaml", &service("10.96.0.10"));
        d.write("slice.yaml", &slice(&["10.65.1.1"]));
        d
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// What a fresh reconciler converges a fresh copy of `k`'s host to: the reference every
    /// shortcut must agree with.
    fn fresh(dir: &TestDir, k: &MemKernel) -> HostState {
        let mut k = k.clone();
        let mut r = Reconciler::open(&dir.0, ReadOptions::default());
        let step = block_on(r.sync(&mut k)).expect("a full sync");
        assert!(step.converged);
        k.state
    }

    #[test]
    fn a_sync_creates_devices_first_converges_and_is_then_trusted() {
        let dir = config_dir("sync");
        let mut k = MemKernel::new(facts());
        let mut r = Reconciler::open(&dir.0, ReadOptions::default());
        let step = block_on(r.sync(&mut k)).expect("sync");
        assert_eq!(step.how, How::Observed);
        assert!(step.converged, "the live state is the desired one");
        let synced = step.sync.expect("a full sync says what it made");
        assert_eq!(k.state, synced.made);
        assert!(
            step.created > 0 && k.applied[0].iter().all(Op::creates_link),
            "the service's devices come first, alone: {:?}",
            k.applied
        );
        assert!(
            r.trusted(k.facts()),
            "trusted for the facts as they are now"
        );
        // Level-triggered: nothing to do the second time, and nothing is run.
        let batches = k.applied.len();
        let again = block_on(r.sync(&mut k)).expect("sync");
        assert_eq!((again.ops.len(), again.created), (0, 0));
        assert_eq!(k.applied.len(), batches);
    }

    #[test]
    fn a_changed_service_is_applied_alone_without_observing_and_matches_a_full_sync() {
        let dir = config_dir("service");
        let mut k = MemKernel::new(facts());
        let mut r = Reconciler::open(&dir.0, ReadOptions::default());
        block_on(r.sync(&mut k)).expect("sync");
        let observed = k.observed_count();
        dir.write("slice.yaml", &slice(&["10.65.1.1", "10.65.1.2"]));
        assert!(r.files_changed(&["slice.yaml"]));
        let step = block_on(r.try_apply_changes(&mut k))
            .expect("no error")
            .expect("no full sync needed");
        assert_eq!(step.how, How::Services(1));
        assert!(!step.ops.is_empty());
        assert_eq!(
            k.observed_count(),
            observed,
            "the trusted path does not observe"
        );
        assert_eq!(k.state, fresh(&dir, &MemKernel::new(facts())));
        // A policy-free, service-free change elsewhere: computed anew, still incremental.
        dir.write("svc.yaml", &service("10.96.0.11"));
        assert!(r.files_changed(&["svc.yaml"]));
        let step = block_on(r.try_apply_changes(&mut k)).unwrap().unwrap();
        assert!(matches!(step.how, How::Services(1) | How::Desired));
        assert_eq!(k.state, fresh(&dir, &MemKernel::new(facts())));
    }

    #[test]
    fn a_failed_apply_forgets_trust_and_the_next_change_takes_a_full_sync() {
        let dir = config_dir("fail");
        let mut k = MemKernel::new(facts());
        let mut r = Reconciler::open(&dir.0, ReadOptions::default());
        block_on(r.sync(&mut k)).expect("sync");
        dir.write("slice.yaml", &slice(&["10.65.1.3"]));
        r.files_changed(&["slice.yaml"]);
        k.fail_after = Some(0);
        assert!(block_on(r.try_apply_changes(&mut k)).is_err());
        assert!(!r.trusted(k.facts()), "what is live is not known");
        assert!(
            block_on(r.try_apply_changes(&mut k)).unwrap().is_none(),
            "the change is handed back for a full sync"
        );
        let step = block_on(r.apply_changes(&mut k)).expect("a full sync");
        assert_eq!(step.how, How::Observed);
        assert!(step.converged);
        assert_eq!(k.state, fresh(&dir, &MemKernel::new(facts())));
    }

    #[test]
    fn drift_is_left_by_the_trusted_path_and_repaired_by_the_next_sync() {
        let dir = config_dir("drift");
        let mut k = MemKernel::new(facts());
        let mut r = Reconciler::open(&dir.0, ReadOptions::default());
        block_on(r.sync(&mut k)).expect("sync");
        let want = k.state.clone();
        let (dst, _) = k.state.routes.pop_first().expect("a route to take away");
        dir.write("slice.yaml", &slice(&["10.65.1.4"]));
        r.files_changed(&["slice.yaml"]);
        block_on(r.try_apply_changes(&mut k)).unwrap().unwrap();
        assert!(
            !k.state.routes.contains_key(&dst),
            "the trusted path diffs against what it applied, not the kernel"
        );
        let step = block_on(r.sync(&mut k)).expect("the resync");
        assert!(step.converged);
        assert_eq!(k.state.routes, want.routes, "the route is back");
    }
}
