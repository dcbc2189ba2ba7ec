//! A route of someone else's at a workload's address (proto static, through the uplink, added
//! before weft applies): `weft diff` shows that weft's route would take it over, `weft apply`
//! and `weft run` refuse without `--take-over-routes` and leave it alone, and with leave weft
//! replaces it, records it, and puts it back as it was when its own route goes (a plan that
//! drops the workload, or `weft teardown`).

use weft_vm_tests::daemon::{last_result, wait_for, DEADLINE};
use weft_vm_tests::*;

/// Workload a's address.
const A: &str = "10.65.0.2";
/// Theirs, as `ip route` shows it.
const THEIRS: &str = "10.65.0.2 via 192.0.2.2 dev up0 proto static";
/// Theirs, as weft names it.
const THEIRS_NAMED: &str = "10.65.0.2/32 via 192.0.2.2 dev up0 proto static";

/// A bed with workload a, and someone else's route to a's address through the uplink.
fn bed(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a")]);
    bed.host.ip(&[
        "route",
        "add",
        &format!("{A}/32"),
        "via",
        &OUTSIDE_IP.to_string(),
        "dev",
        "up0",
        "proto",
        "static",
    ]);
    Some(bed)
}

/// The host's routes to a's address, as `ip route` shows them.
fn routes_to_a(bed: &Bed) -> String {
    let out = bed.host.ip(&["route", "show", &format!("{A}/32")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn apply(bed: &Bed, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", bed.config.to_str().unwrap()];
    args.extend_from_slice(extra);
    bed.weft(&args)
}

#[test]
fn a_foreign_route_at_a_workloads_address_is_shown_refused_and_left_alone() {
    let Some(bed) = bed("a_foreign_route_at_a_workloads_address_is_shown_refused_and_left_alone")
    else {
        return;
    };
    let (code, diff) = bed.diff();
    assert_eq!(code, 1, "{diff}");
    assert!(
        diff.contains(&format!("take over foreign route {THEIRS_NAMED}")),
        "weft diff shows the takeover:\n{diff}"
    );

    let out = apply(&bed, &[]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "refused:\n{said}");
    assert!(
        said.contains(THEIRS_NAMED) && said.contains("--take-over-routes"),
        "the refusal names the route and the way to allow it:\n{said}"
    );
    assert_eq!(routes_to_a(&bed), THEIRS, "their route is untouched");
    let ours = bed.host.ip(&["route", "show", "proto", "87"]);
    assert!(
        ours.stdout.is_empty(),
        "nothing was applied: {}",
        String::from_utf8_lossy(&ours.stdout)
    );
    assert!(
        !bed.bpffs.join("progs").exists()
            || std::fs::read_dir(bed.bpffs.join("progs")).unwrap().count() == 0,
        "no program was loaded"
    );

    let out = bed.weft(&["teardown"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(routes_to_a(&bed), THEIRS, "teardown leaves it alone");
}

#[test]
fn with_leave_weft_takes_a_foreign_route_over_and_puts_it_back_when_its_own_goes() {
    let Some(bed) =
        bed("with_leave_weft_takes_a_foreign_route_over_and_puts_it_back_when_its_own_goes")
    else {
        return;
    };
    let record = bed.state_dir().join("routes-taken-over.json");
    let out = apply(&bed, &["--take-over-routes"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        routes_to_a(&bed),
        format!("{A} dev calia proto 87 scope link"),
        "weft's route replaced theirs"
    );
    let recorded = std::fs::read_to_string(&record).expect("the takeover is recorded");
    assert!(recorded.contains(THEIRS_NAMED), "{recorded}");
    assert_eq!(bed.diff().0, 0, "converged");

    // The workload goes (the last one: said to be meant): weft's route goes, and theirs
    // comes back.
    bed.remove("a.yaml");
    let out = apply(&bed, &["--allow-empty"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(routes_to_a(&bed), THEIRS, "put back by the plan");
    assert!(!record.exists(), "nothing is held any more");

    // And again, let go of by teardown this time.
    bed.write(
        "a.yaml",
        &bed.wep_yaml(0, "a", "shop", &[("app", "a")], &["kns.shop"]),
    );
    let out = apply(&bed, &["--take-over-routes"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        routes_to_a(&bed),
        format!("{A} dev calia proto 87 scope link")
    );
    let out = bed.weft(&["teardown"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(routes_to_a(&bed), THEIRS, "put back by teardown");
    assert!(!record.exists());
}

#[test]
fn the_daemon_refuses_a_takeover_without_leave_and_says_why() {
    let Some(bed) = bed("the_daemon_refuses_a_takeover_without_leave_and_says_why") else {
        return;
    };
    let mut d = bed.daemon(&[]);
    let s = d.wait("a failed reconcile", |s| last_result(s) == "failed");
    let error = s["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains(THEIRS_NAMED) && error.contains("--take-over-routes"),
        "{s}"
    );
    assert_eq!(routes_to_a(&bed), THEIRS, "their route is untouched");
    d.term();

    let mut d = bed.daemon(&["--take-over-routes"]);
    d.started();
    wait_for("weft's route to replace theirs", DEADLINE, || {
        (routes_to_a(&bed) == format!("{A} dev calia proto 87 scope link")).then_some(())
    });
    d.term();
}
