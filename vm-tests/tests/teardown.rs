//! `weft teardown` removes everything weft created and nothing else: a tc filter, a route, a
//! neighbour and pinned objects that belong to someone else stay.

use std::net::Ipv4Addr;

use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);

fn host_sh(bed: &Bed, cmd: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", &bed.host.name];
    v.extend_from_slice(cmd);
    String::from_utf8_lossy(&sh(&v).stdout).into_owned()
}

/// Pins a small hash map of someone else's at `path` (`bpftool map create`).
fn foreign_map(path: &std::path::Path) {
    sh(&[
        "bpftool",
        "map",
        "create",
        path.to_str().unwrap(),
        "type",
        "hash",
        "key",
        "4",
        "value",
        "4",
        "entries",
        "8",
        "name",
        "theirs",
    ]);
}

fn teardown_leaves_foreign_objects(test: &str, attach: Option<&str>) {
    let Some(mut bed) = Bed::new(test) else {
        return;
    };
    bed.workload("calia", A);
    bed.workload("calib", B);
    bed.write(
        "a.yaml",
        &bed.wep_yaml(
            0,
            "a",
            "default",
            &[("app", "a")],
            &["projectcalico-default-allow"],
        ),
    );
    bed.write(
        "b.yaml",
        &bed.wep_yaml(
            1,
            "b",
            "default",
            &[("app", "b")],
            &["projectcalico-default-allow"],
        ),
    );
    if let Some(mode) = attach {
        bed.write(
            "felix.yaml",
            &format!("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  bpfAttachType: {mode}\n"),
        );
    }
    // Someone else's objects, beside weft's and on the same interfaces.
    bed.host
        .ip(&["route", "add", "10.99.0.0/24", "dev", "calib"]);
    bed.host.ip(&[
        "route",
        "add",
        "10.98.0.0/24",
        "dev",
        "calib",
        "proto",
        "static",
    ]);
    bed.host.ip(&[
        "neigh",
        "add",
        "10.65.0.200",
        "lladdr",
        "02:00:00:00:00:c8",
        "dev",
        "calib",
        "nud",
        "permanent",
    ]);
    host_sh(&bed, &["tc", "qdisc", "add", "dev", "calib", "clsact"]);
    host_sh(
        &bed,
        &[
            "tc", "filter", "add", "dev", "calib", "ingress", "prio", "200", "handle", "800::7",
            "u32", "match", "u32", "0", "0", "flowid", "1:1",
        ],
    );
    bed.apply();
    assert!(
        tcp_ok_after_server(&bed),
        "the dataplane works with the foreign filter in place"
    );
    if attach == Some("TC") {
        let f = host_sh(&bed, &["tc", "filter", "show", "dev", "calib", "ingress"]);
        assert!(
            f.contains("weft_from_wep") && f.contains("fh 800::7"),
            "weft's filter and the foreign one share the hook: {f}"
        );
    }
    std::fs::create_dir_all(&bed.bpffs).unwrap();
    let beside = bed.bpffs.with_file_name(format!(
        "{}-theirs",
        bed.bpffs.file_name().unwrap().to_string_lossy()
    ));
    foreign_map(&beside);
    let inside_maps = bed.bpffs.join("maps/theirs");
    foreign_map(&inside_maps);
    let inside_root = bed.bpffs.join("theirs");
    foreign_map(&inside_root);

    let out = bed.weft(&["teardown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // weft's are gone ...
    assert_eq!(
        host_sh(&bed, &["ip", "route", "show", "proto", "87"]).trim(),
        ""
    );
    assert_eq!(
        host_sh(&bed, &["ip", "neigh", "show", "proto", "87"]).trim(),
        ""
    );
    let filters = host_sh(&bed, &["tc", "filter", "show", "dev", "calib", "ingress"]);
    assert!(!filters.contains("weft_"), "{filters}");
    let net = host_sh(&bed, &["bpftool", "net", "show", "dev", "calib"]);
    assert!(!net.contains("weft_"), "{net}");
    for d in ["progs", "links"] {
        assert!(!bed.bpffs.join(d).exists(), "{d}/ removed");
    }
    let maps: Vec<String> = std::fs::read_dir(bed.bpffs.join("maps"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        maps,
        vec!["theirs".to_string()],
        "only the foreign pin is left in maps/"
    );
    assert_eq!(
        host_sh(&bed, &["cat", "/proc/sys/net/ipv4/conf/calib/proxy_arp"]).trim(),
        "0",
        "weft's interface settings are back to the defaults"
    );

    // ... and the others' are all there.
    let routes = host_sh(&bed, &["ip", "route", "show", "dev", "calib"]);
    assert!(routes.contains("10.99.0.0/24"), "{routes}");
    assert!(
        routes.contains("10.98.0.0/24") && routes.contains("proto static"),
        "{routes}"
    );
    let neigh = host_sh(&bed, &["ip", "neigh", "show", "dev", "calib"]);
    assert!(
        neigh.contains("10.65.0.200 lladdr 02:00:00:00:00:c8 PERMANENT"),
        "{neigh}"
    );
    let qdisc = host_sh(&bed, &["tc", "qdisc", "show", "dev", "calib"]);
    assert!(qdisc.contains("clsact"), "{qdisc}");
    assert!(
        filters.contains("u32") && filters.contains("fh 800::7") && filters.contains("pref 200"),
        "the foreign filter stays: {filters}"
    );
    for p in [&beside, &inside_maps, &inside_root] {
        assert!(p.exists(), "{} stays", p.display());
    }
    let _ = std::fs::remove_file(&beside);
    let _ = std::fs::remove_file(&inside_maps);
    let _ = std::fs::remove_file(&inside_root);
}

fn tcp_ok_after_server(bed: &Bed) -> bool {
    tcp_server(&bed.w(1).ns, 80);
    tcp_ok(&bed.w(0).ns, B, 80)
}

#[test]
fn teardown_leaves_foreign_objects_alone_with_tcx() {
    teardown_leaves_foreign_objects("teardown_leaves_foreign_objects_alone_with_tcx", None);
}

/// With legacy tc attachment weft's filter shares the clsact qdisc with the foreign one.
#[test]
fn teardown_leaves_foreign_objects_alone_with_tc() {
    teardown_leaves_foreign_objects("teardown_leaves_foreign_objects_alone_with_tc", Some("TC"));
}
