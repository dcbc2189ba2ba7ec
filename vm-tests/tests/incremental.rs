//! The incremental reconciler (weft::incremental) on a real host: a changed service reaches
//! real traffic, and a full `weft apply` afterwards finds nothing to do.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use weft::bpf::Pins;
use weft::incremental::{How, Reconciler};
use weft::run::{self, Host};
use weft_vm_tests::daemon::last_result;
use weft_vm_tests::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B1: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 11);
const B2: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

fn service(name: &str, vip: Ipv4Addr, backend: Ipv4Addr, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {vip}\n  ports:\n    - {{name: http, port: 80, targetPort: 8080}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n  - {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n  - {{addresses: [\"{backend}\"], nodeName: {node}}}\n"
    )
}

/// A client and two backends (b1 and b2, each answering its name on 8080) in the shop.
fn shop(name: &str) -> Option<Bed> {
    let mut bed = Bed::new(name)?;
    bed.workload("calic", CLIENT);
    bed.workload("calib1", B1);
    bed.workload("calib2", B2);
    bed.write(
        "00-ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
    );
    for (i, name) in ["client", "b1", "b2"].iter().enumerate() {
        let wep = bed.wep_yaml(i, name, "shop", &[("app", name)], &["kns.shop"]);
        bed.write(&format!("wl/{name}.yaml"), &wep);
    }
    named_server(&bed.w(1).ns, 8080, "b1");
    named_server(&bed.w(2).ns, 8080, "b2");
    Some(bed)
}

#[test]
fn changed_services_reach_traffic_and_leave_nothing_for_a_full_apply() {
    let Some(bed) = shop("changed_services_reach_traffic_and_leave_nothing_for_a_full_apply")
    else {
        return;
    };
    bed.write("svc/web.yaml", &service("web", VIP, B1, &bed.node));

    let bed = &bed;
    std::thread::scope(|s| {
        s.spawn(move || {
            // The reconciler's netlink socket must be made in the host namespace.
            let ns = std::fs::File::open(bed.host.path()).expect("namespace");
            // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this thread.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let open = || {
                    Host::open(
                        Pins::new(&bed.bpffs),
                        bed.state_dir(),
                        bed.node.clone(),
                        None,
                    )
                };
                let mut host = open().await.expect("host");
                let mut rec = Reconciler::open(&bed.config, Default::default());
                let step = rec.sync(&mut host).await.expect("sync");
                assert!(step.converged);
                assert_eq!(step.how, How::Observed);
                assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b1"));

                // The backend moves from b1 to b2: one service worked out again.
                bed.write("svc/web.yaml", &service("web", VIP, B2, &bed.node));
                rec.files_changed(&["svc/web.yaml"]);
                let step = rec.apply_changes(&mut host).await.expect("apply changes");
                assert_eq!(step.how, How::Services(1), "{:?}", step.ops);
                assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b2"));

                // A new service, found by a rescan: its frontend and its route come.
                bed.write("svc/api.yaml", &service("api", VIP2, B1, &bed.node));
                rec.rescan();
                let step = rec.apply_changes(&mut host).await.expect("apply changes");
                assert_eq!(step.how, How::Services(1), "{:?}", step.ops);
                assert!(
                    step.ops.iter().any(|o| matches!(o, weft::plan::Op::RouteReplace { .. })),
                    "the new cluster IP is routed for host processes: {:?}",
                    step.ops
                );
                assert_eq!(tcp_hello(&bed.w(0).ns, VIP2, 80).as_deref(), Some("b1"));

                // Something other than services: the desired state is computed anew.
                bed.write(
                    "00-ns.yaml",
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a}\n",
                );
                rec.files_changed(&["00-ns.yaml"]);
                let step = rec.apply_changes(&mut host).await.expect("apply changes");
                assert_eq!(step.how, How::Desired);

                // Nothing is left for `weft apply` to do.
                let cfg = run::load(&bed.config, Default::default()).expect("valid");
                let mut fresh = open().await.expect("host");
                let (planned, outcome) = run::apply_config(&mut fresh, &cfg, |_| {})
                    .await
                    .expect("apply");
                assert!(
                    planned.ops.is_empty(),
                    "weft apply after incremental steps: {:?}",
                    planned
                        .ops
                        .iter()
                        .map(weft::plan::Op::describe)
                        .collect::<Vec<_>>()
                );
                assert!(outcome.converged(&planned.desired.state));
            });
        });
    });
    assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b2"));
}

/// A change the documents patch in place (a Service's slice, valid on its own) that then
/// does not fit the NAT backend map: the daemon keeps the configuration from before the
/// change in force, which it no longer holds a copy of but has the documents undo.
#[test]
fn a_patched_change_that_does_not_fit_leaves_the_last_good_services_in_force() {
    let Some(bed) =
        shop("a_patched_change_that_does_not_fit_leaves_the_last_good_services_in_force")
    else {
        return;
    };
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfMapSizeNATBackend: 1\n",
    );
    bed.write("svc/web.yaml", &service("web", VIP, B1, &bed.node));
    // A resync every second: each converges to the configuration in force, repairing drift.
    let mut d = bed.daemon(&["--resync", "1s", "--debounce", "50ms"]);
    d.started();
    assert_eq!(tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(), Some("b1"));
    let since = d.status().expect("status")["config"]["in_force_since"].clone();
    assert!(since.is_u64(), "in force");

    // A second backend: two entries for a map of one.
    let two = service("web", VIP, B1, &bed.node).replace(
        "  - {addresses: [\"10.65.0.11\"]",
        "  - {addresses: [\"10.65.0.12\"], nodeName: n}\n  - {addresses: [\"10.65.0.11\"]",
    );
    assert_ne!(two, service("web", VIP, B1, &bed.node), "two backends");
    bed.write("svc/web.yaml", &two);
    let s = d.wait("the change refused", |s| {
        s["config"]["valid"] == false
            && s["config"]["problems"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p.to_string().contains("bpfMapSizeNATBackend"))
            })
    });
    assert_eq!(
        s["config"]["in_force_since"], since,
        "the last good configuration stays in force: {s}"
    );
    let s = d.wait("the last good configuration converged to", |s| {
        last_result(s) == "invalid"
    });
    assert_eq!(s["config"]["in_force_since"], since, "{s}");
    for _ in 0..5 {
        assert_eq!(
            tcp_hello(&bed.w(0).ns, VIP, 80).as_deref(),
            Some("b1"),
            "only the last good backend"
        );
    }
    // It is enforced, not merely left alone: the service's route, taken away, comes back.
    let route = |bed: &Bed| {
        String::from_utf8_lossy(&bed.host.ip(&["route", "show", &format!("{VIP}/32")]).stdout)
            .into_owned()
    };
    assert!(route(&bed).contains("bpfin.weft"), "{}", route(&bed));
    bed.host.ip(&["route", "del", &format!("{VIP}/32")]);
    assert_eq!(route(&bed), "");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while route(&bed).is_empty() {
        assert!(
            std::time::Instant::now() < end,
            "the route was not put back:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Room for both: the change is taken.
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfMapSizeNATBackend: 4\n",
    );
    d.wait("the change taken", |s| {
        s["config"]["valid"] == true && last_result(s) == "converged"
    });
    let seen: std::collections::BTreeSet<String> = (0..20)
        .filter_map(|_| tcp_hello(&bed.w(0).ns, VIP, 80))
        .collect();
    assert!(seen.contains("b2"), "the new backend serves: {seen:?}");
}
