//! The incremental reconciler (weft::incremental) on a real host: a changed service reaches
//! real traffic, and a full `weft apply` afterwards finds nothing to do.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use weft::bpf::Pins;
use weft::incremental::{How, Reconciler};
use weft::run::{self, Host};
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

#[test]
fn changed_services_reach_traffic_and_leave_nothing_for_a_full_apply() {
    let Some(mut bed) =
        Bed::new("changed_services_reach_traffic_and_leave_nothing_for_a_full_apply")
    else {
        return;
    };
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
