//! Compiles the BPF programs in bpf-src/ with clang and generates their Rust skeletons.
//! The clang binary is `$WEFT_CLANG`, else `clang-16`, else `clang`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

/// Entry programs, one per hook family: `bpf-src/<name>.bpf.c` becomes the skeleton `<name>.skel.rs`.
const PROGRAMS: &[&str] = &[
    "weft_wep",
    "weft_hep",
    "weft_ctlb",
    "weft_ctgc",
    "weft_floor",
    "weft_probe",
];

/// The objects weft loads in production (the others are the benchmarks').
const SHIPPED: &[&str] = &["weft_wep", "weft_hep", "weft_ctlb", "weft_ctgc"];

/// The BPF instruction sets `weft verifier` checks besides clang's default.
const ISAS: &[&str] = &["v2", "v3"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpf-src");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = clang();
    println!("cargo:rerun-if-env-changed=WEFT_CLANG");
    println!("cargo:rerun-if-env-changed=WEFT_BPF_CFLAGS");
    // Extra clang flags, e.g. the kernel headers' include directory where they are not in
    // /usr/include (the Nix build sets it).
    let extra: Vec<std::ffi::OsString> = env::var("WEFT_BPF_CFLAGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(Into::into)
        .collect();
    println!("cargo:rerun-if-changed={}", root.display());
    let args: Vec<std::ffi::OsString> = [
        // Debian keeps asm/types.h under the multiarch directory.
        format!(
            "-I/usr/include/{}-linux-gnu",
            env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default()
        )
        .into(),
        format!("-I{}", root.join("include").display()).into(),
        "-O2".into(),
        "-g".into(),
        "-Wall".into(),
        "-Werror".into(),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .collect();
    for name in PROGRAMS {
        let src = root.join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang(&clang)
            .clang_args(args.iter().cloned())
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        // `weft verifier` also loads what weft ships built for other BPF instruction sets: the
        // verifier walks other instructions, and what it accepts can differ.
        if SHIPPED.contains(name) {
            for isa in ISAS {
                SkeletonBuilder::new()
                    .source(&src)
                    .obj(out.join(format!("{name}.{isa}.bpf.o")))
                    .clang(&clang)
                    .clang_args(args.iter().cloned().chain([format!("-mcpu={isa}").into()]))
                    .build()
                    .unwrap_or_else(|e| panic!("building {} for {isa}: {e:#}", src.display()));
            }
        }
        // The object's identity: a loaded program carries it in .rodata, so `weft diff` can
        // tell a program built from other sources.
        let bytes = std::fs::read(&obj).expect("reading the BPF object");
        let id = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        std::fs::write(
            out.join(format!("{name}.id.rs")),
            format!(
                "/// FNV-1a of the BPF object's bytes.\npub const OBJECT_ID: u64 = {id:#018x};\n"
            ),
        )
        .expect("writing the object id");
    }
}

fn clang() -> PathBuf {
    if let Some(c) = env::var_os("WEFT_CLANG") {
        return c.into();
    }
    for c in ["clang-16", "clang"] {
        if Command::new(c).arg("--version").output().is_ok() {
            return c.into();
        }
    }
    panic!("no clang found: install clang-16 (apt-get install clang-16) or set WEFT_CLANG");
}
