//! The pure stages (desired, services, plan, state, facts, policy, and the vocabulary they share:
//! `objects`, `bpf::maps`) import nothing that touches the kernel, so that they can be read,
//! tested and reasoned about without one. This test reads their sources and fails on an import
//! of the kernel side: libbpf, netlink, observe, apply, the BPF loading, attaching and map I/O
//! modules, or the filesystem.

use std::path::{Path, PathBuf};

/// What a pure stage must not name.
const KERNEL_SIDE: &[&str] = &[
    "libbpf",
    "rtnetlink",
    "netlink_packet",
    "crate::netlink",
    "crate::observe",
    "crate::apply::",
    "crate::run::",
    "crate::daemon",
    "crate::bpf::link",
    "crate::bpf::load",
    "crate::bpf::ctgc",
    "crate::bpf::batch",
    "crate::bpf::stats",
    "crate::bpf::pinned",
    "crate::bpf::rulesets",
    "crate::bpf::Pins",
    "crate::bpf::{",
    "std::fs",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("a source directory") {
        let p = e.expect("an entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_pure_stages_import_nothing_of_the_kernel_side() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for d in ["desired", "policy", "state"] {
        sources(&src.join(d), &mut files);
    }
    for f in [
        "plan.rs",
        "state.rs",
        "services.rs",
        "objects.rs",
        "validate.rs",
        "bpf/maps.rs",
    ] {
        files.push(src.join(f));
    }
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("a source file");
        // A file's own tests may build what they check with the kernel side.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for k in KERNEL_SIDE {
                if line.contains(k) {
                    found.push(format!("{}:{}: {k}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "pure stages naming the kernel side:\n{}",
        found.join("\n")
    );
}
