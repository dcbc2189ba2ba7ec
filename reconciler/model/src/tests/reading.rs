//! What the loader reads and what it refuses: only regular files, at most `MAX_FILE_BYTES`,
//! through links only inside the directory; a refused file is a problem naming it, and
//! nothing of it is read. A configuration directory is often a checkout that any commit
//! writes, so none of this may hang, exhaust memory, or show another file's content.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::{load_dir_with, Diagnostics, ReadOptions, MAX_FILE_BYTES};

fn ns(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// Loads `dir` on a thread of its own and fails the test if that takes more than a few
/// seconds (a read that blocks would otherwise hang the test run).
fn load_within(dir: &Path, opts: ReadOptions) -> Result<Config, Diagnostics> {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load_dir_with(&dir, opts));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("loading the directory did not finish: a read blocked or never ended")
}

/// The diagnostics as printed, with paths relative to `dir`.
fn printed(dir: &TempDir, d: &Diagnostics) -> Vec<String> {
    let prefix = format!("{}/", dir.path().display());
    d.to_string()
        .lines()
        .map(|l| l.replace(&prefix, ""))
        .collect()
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_named_like_yaml_is_a_problem_and_no_one_waits_for_a_writer() {
    let dir = TempDir::new(&[("a.yaml", &ns("a"))]);
    mkfifo(&dir.path().join("b.yaml"));
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    mkfifo(&dir.path().join("sub/pipe.yml"));
    // A FIFO not named like YAML is none of the loader's business.
    mkfifo(&dir.path().join("pipe"));
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let why = "not a regular file, and weft reads only regular files; remove it, or rename it so that it does not end in .yaml or .yml";
    assert_eq!(
        printed(&dir, &d),
        [
            format!("b.yaml:1:1: this is a FIFO, {why}"),
            format!("sub/pipe.yml:1:1: this is a FIFO, {why}"),
        ]
    );
}

#[test]
fn a_device_is_a_problem_and_nothing_of_it_is_read() {
    // A link, since making a device needs privileges; the device is what it leads to.
    let dir = TempDir::new(&[("a.yaml", &ns("a"))]);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    let follow = ReadOptions {
        follow_outside_links: true,
    };
    let d = load_within(dir.path(), follow).unwrap_err();
    assert_eq!(
        printed(&dir, &d),
        ["zero.yaml:1:1: this is a character device, not a regular file, and weft reads only regular files; remove it, or rename it so that it does not end in .yaml or .yml"]
    );
}

#[test]
fn a_file_larger_than_the_cap_is_a_problem_and_is_not_read() {
    let dir = TempDir::new(&[("a.yaml", &ns("a"))]);
    // Sparse: nothing is written, and a read of it would take 16 MiB of zeros.
    let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();
    let at_cap = std::fs::File::create(dir.path().join("cap.yaml")).unwrap();
    at_cap.set_len(MAX_FILE_BYTES).unwrap();
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let p = printed(&dir, &d);
    assert_eq!(
        p[0],
        "big.yaml:1:1: the file is larger than 16 MiB, the most weft reads; split it into smaller files"
    );
    // The file at the cap is read (and found to be no YAML text).
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[1].starts_with("cap.yaml:"), "{p:#?}");
}

#[test]
fn links_out_of_the_directory_are_refused_and_nothing_of_the_target_shows() {
    // A file the daemon could read and its users could not: were it read, its content
    // would be quoted back in the problem (an unknown kind is named).
    let secret = "apiVersion: v1\nkind: TOP-SECRET-7f3a\n";
    let outside = TempDir::new(&[("secret.yaml", secret), ("d/x.yaml", &ns("x"))]);
    let dir = TempDir::new(&[("a.yaml", &ns("a"))]);
    let target = outside.path().join("secret.yaml");
    std::os::unix::fs::symlink(&target, dir.path().join("abs.yaml")).unwrap();
    // Relative, and a link inside that leads to one out.
    let rel = Path::new("../..")
        .join(outside.path().file_name().unwrap())
        .join("secret.yaml");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(rel, dir.path().join("sub/rel.yaml")).unwrap();
    std::os::unix::fs::symlink("sub/rel.yaml", dir.path().join("chain.yaml")).unwrap();
    // A link to a directory out is not walked, as no directory link is.
    std::os::unix::fs::symlink(outside.path().join("d"), dir.path().join("d")).unwrap();

    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let out = format!(
        "a symbolic link to {}, outside {}: weft does not follow links out of the configuration directory; copy the file in, or run weft with --follow-outside-links",
        target.canonicalize().unwrap().display(),
        dir.path().display()
    );
    assert_eq!(
        printed(&dir, &d),
        [
            format!("abs.yaml:1:1: {out}"),
            format!("chain.yaml:1:1: {out}"),
            format!("sub/rel.yaml:1:1: {out}"),
        ]
    );
    assert!(!d.to_string().contains("TOP-SECRET"), "{d}");

    // Allowed, each is read: the content shows, which is what the default keeps out.
    let follow = ReadOptions {
        follow_outside_links: true,
    };
    let d = load_within(dir.path(), follow).unwrap_err();
    let p = printed(&dir, &d);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p.iter().all(|l| l.contains("TOP-SECRET-7f3a")), "{p:#?}");
}

/// A `kind: List` of `items` policies that all share one spec of `rules` rules, each of
/// which aliases one list of `nets` networks: `items * rules * nets` networks in all.
fn shared_spec_list(nets: usize, rules: usize, items: usize) -> String {
    let nets: Vec<String> = (0..nets)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let mut t = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkSet\n  metadata: {{name: nets}}\n  spec:\n    nets: &n [{}]\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata: {{name: p0}}\n  spec: &s\n    selector: all()\n    ingress:\n",
        nets.join(", ")
    );
    for _ in 0..rules {
        t.push_str("    - {action: Allow, source: {nets: *n}}\n");
    }
    for i in 1..items {
        t.push_str(&format!("- {{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {{name: p{i}}}, spec: *s}}\n"));
    }
    t
}

#[test]
fn aliases_that_multiply_a_file_are_refused_where_the_limit_is_reached() {
    // 1.6 million networks out of 20 KiB; the same shape at 600 KiB took minutes and
    // gigabytes until the allocator failed.
    let text = shared_spec_list(400, 40, 100);
    let dir = TempDir::new(&[("a.yaml", &ns("a")), ("shared.yaml", &text)]);
    let started = std::time::Instant::now();
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let p = printed(&dir, &d);
    let limit = crate::aliases::Limit::for_file(text.len()).values;
    assert_eq!(
        p,
        [format!(
            "shared.yaml:8:3917: the aliases in this file expand it to more than {limit} values, the most weft reads from a file of its size (the limit was reached at items[3].spec.ingress[1].source.nets[269]); an alias re-reads its anchor's whole node each time, so write the values out or alias fewer of them"
        )]
    );
}

#[test]
fn anchors_reused_as_people_write_them_still_load() {
    // Forty policies sharing one spec of five rules with twenty networks each: 4,000
    // networks, from a file of 4 KiB.
    let c = load_ok(&[("shared.yaml", &shared_spec_list(20, 5, 40))]);
    assert_eq!(c.policies.len(), 40);
    assert_eq!(c.global_network_policies[39].value.spec.ingress.len(), 5);
    // An anchor in a plain manifest, which fastyaml declines for serde_yaml to read.
    let c = load_ok(&[(
        "web.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: web\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: &web {ports: [80, 443]}\n  - action: Log\n    protocol: TCP\n    destination: *web\n",
    )]);
    let rules = &c.global_network_policies[0].value.spec.ingress;
    assert_eq!(rules[1].destination, rules[0].destination);
    assert_eq!(rules[1].destination.ports.len(), 2);
}

/// `n` GlobalNetworkSets, each in a document of its own (`docs`) or all in one `kind: List`,
/// every one with a network that is not a CIDR.
fn bad_sets(n: usize, list: bool) -> String {
    let set = |i: usize| {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: s{i}}}\nspec: {{nets: [1.2.3.4/33]}}")
    };
    if list {
        let items: Vec<String> = (0..n)
            .map(|i| format!("- {}", set(i).replace('\n', "\n  ")))
            .collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{}\n", items.join("\n"))
    } else {
        (0..n).map(set).collect::<Vec<_>>().join("\n---\n") + "\n"
    }
}

#[test]
fn a_file_with_thousands_of_problems_is_not_parsed_again_for_each() {
    // Twenty thousand bad networks in one set, 400 KiB: each problem's position was a parse
    // of the whole file, and the load took longer than five minutes.
    let nets: String = (0..20_000)
        .map(|i| format!("    - 10.0.{}.300/8\n", i % 250))
        .collect();
    let text = format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: s\nspec:\n  nets:\n{nets}");
    let dir = TempDir::new(&[("s.yaml", &text)]);
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let p = printed(&dir, &d);
    // The first ones where they are; the rest counted where the set starts.
    assert_eq!(
        p[1],
        "s.yaml:7:7: GlobalNetworkSet s: spec.nets[0]: \"10.0.0.300/8\" is not a CIDR; write an address and prefix length such as 10.0.0.0/8"
    );
    let placed = p.len() - 1;
    assert!(placed >= crate::yaml::MIN_LOCATES, "{p:#?}");
    assert_eq!(
        p[0],
        format!("s.yaml:1:1: GlobalNetworkSet s: {} more problem(s) in this resource, not listed: weft finds the place of only so many problems in one file; fix the ones listed and validate again", 20_000 - placed)
    );
}

#[test]
fn a_list_with_thousands_of_bad_items_is_not_read_again_for_each() {
    // After each bad item the List was read again from the next: 3,000 bad items took
    // longer than five minutes.
    let text = bad_sets(3_000, true).replace("[1.2.3.4/33]}", "[1.2.3.4/33], bogus: 1}");
    let dir = TempDir::new(&[("l.yaml", &text)]);
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let p = printed(&dir, &d);
    assert_eq!(
        p[1],
        "l.yaml:7:30: GlobalNetworkSet s0: spec: unknown field `bogus`; write one of `nets`"
    );
    let tried = p.len() - 1;
    assert!(tried >= crate::yaml::MIN_LOCATES, "{p:#?}");
    assert_eq!(
        p[0],
        format!("l.yaml:1:1: items[{tried}] and the {} after it were not read: after a bad item weft reads the List again from the next one, and it has too many bad items to do that for each; fix those reported and validate again", 3_000 - tried - 1)
    );
}

#[test]
fn past_a_hundred_problems_a_file_lists_only_how_many_more() {
    let dir = TempDir::new(&[
        ("d.yaml", &bad_sets(3_000, false)),
        ("e.yaml", &bad_sets(2, false).replace("name: s", "name: e")),
    ]);
    let d = load_within(dir.path(), ReadOptions::default()).unwrap_err();
    let p = printed(&dir, &d);
    let in_d: Vec<&String> = p.iter().filter(|l| l.starts_with("d.yaml:")).collect();
    assert_eq!(in_d.len(), crate::load::MAX_PROBLEMS_PER_FILE + 1, "{p:#?}");
    assert_eq!(
        in_d[0],
        "d.yaml:4:15: GlobalNetworkSet s0: spec.nets[0]: \"1.2.3.4/33\" is not a CIDR; write an address and prefix length such as 10.0.0.0/8"
    );
    let more = in_d[100];
    assert!(
        more.ends_with("more problems in this file from here on, not listed; fix the ones listed and validate again"),
        "{more}"
    );
    // Each file has its own hundred.
    assert_eq!(p.iter().filter(|l| l.starts_with("e.yaml:")).count(), 2);
}

#[test]
fn weftignore_keeps_other_yaml_of_a_repository_out() {
    let dir = TempDir::new(&[
        ("ns.yaml", &ns("shop")),
        (
            ".weftignore",
            "# CI and kustomize files are not weft's\nci/\nkustomization.yaml\n**/*.draft.yaml\n",
        ),
        ("ci/pipeline.yaml", "stages: [build]\n"),
        ("kustomization.yaml", "resources: [ns.yaml]\n"),
        ("deep/er/x.draft.yaml", "not: weft\n"),
        ("deep/er/y.yaml", &ns("kept")),
    ]);
    let cfg = load_within(dir.path(), ReadOptions::default()).expect("only weft's files are read");
    let names: Vec<&str> = cfg
        .namespaces
        .iter()
        .map(|n| n.value.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["kept", "shop"]);
}

#[test]
fn weftignore_patterns_match_as_gitignore_lines_do() {
    use crate::load::ignored_by_for_tests as m;
    assert!(m("ci/", "ci", true) && !m("ci/", "ci", false));
    assert!(m("*.draft.yaml", "a/b/c.draft.yaml", false));
    assert!(m("/top.yaml", "top.yaml", false) && !m("/top.yaml", "a/top.yaml", false));
    assert!(m("a/*.yaml", "a/x.yaml", false) && !m("a/*.yaml", "a/b/x.yaml", false));
    assert!(m("a/**/x.yaml", "a/b/c/x.yaml", false) && m("a/**/x.yaml", "a/x.yaml", false));
    assert!(m("x?.yaml", "x1.yaml", false) && !m("x?.yaml", "x12.yaml", false));
}
