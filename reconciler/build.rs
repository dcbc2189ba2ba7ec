//! Compiles the BPF programs in bpf-src/ with clang and generates their Rust skeletons, and
//! generates `abi.rs` (the module `weft::abi`): every `#define WEFT_*` and enum member of the
//! headers bpf-src and Rust share, as Rust constants.
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
    std::fs::write(out.join("abi.rs"), abi(&root.join("include")))
        .expect("writing the generated constants");
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

/// The headers whose constants Rust uses: map layouts and flags, drop reasons, settings, parse
/// results. Every integer `#define WEFT_*` and every `WEFT_*` enum member in them is generated.
const SHARED_HEADERS: &[&str] = &["weft_maps.h", "weft_reasons.h", "weft_bpf.h", "parse.h"];

/// The Rust type of each generated constant, by the longest prefix of its name (without
/// `WEFT_`): the type of the field or index it is used with. A constant no prefix covers fails
/// the build, so a new C constant gets a Rust type chosen for it rather than drifting.
const TYPES: &[(&str, &str)] = &[
    // weft_ct4_value.type (enum weft_ct_type) and .flags, weft_ct_leg.tcp_flags
    ("CT_", "u8"),
    // struct weft_ctgc_args slots: array indexes
    ("CTGC_", "usize"),
    // weft_iface_value.flags, weft_route_value.flags, weft_nat_fe_value.flags
    ("IFACE_F_", "u32"),
    ("RT_F_", "u32"),
    ("NAT_F_", "u32"),
    // weft_failsafe4_key.dir
    ("FS_", "u8"),
    // weft_fs_ports' size, weft_xdp_ctrs' size
    ("FS_WORDS", "u32"),
    ("XDP_CTR_SLOTS", "u32"),
    ("XDP_CACHE_SLOTS", "u32"),
    ("XDP_GEN_OFF", "u64"),
    ("XDP_FIB_SLOTS", "u32"),
    ("XDP_FIB_TTL_NS", "u64"),
    // struct weft_pkt4.frag (BPF-side only)
    ("FRAG_", "u8"),
    // the policy classifier's cells (reconciler/src/policy/tables.rs)
    ("POL_CELL_WORDS", "usize"),
    ("POL_STRIDE", "u32"),
    ("POL_LEAF", "u32"),
    ("POL_MAGIC", "u32"),
    ("POL_H_", "usize"),
    ("POL_INLINE_LOCALS", "usize"),
    ("RS_F_", "u32"),
    ("ACT_", "u32"),
    ("VERDICT_F_", "u32"),
    // weft_counters_key.hook, weft_counters.packets
    ("HOOK_", "u32"),
    ("COUNTERS_MAX", "usize"),
    // struct weft_event
    ("EVENT_", "u8"),
    ("CTR_", "u8"),
    ("EV_F_", "u8"),
    ("EV_NAT_", "u8"),
    ("EV_PARSE_NONE", "u8"),
    // weft_ring_lost's keys
    ("LOST_", "u32"),
    // struct weft_trace_filter
    ("TF_SIDE_", "u8"),
    ("TF_F_", "u8"),
    ("TF_MAX_", "usize"),
    // enum weft_reason: indexes of weft_counters.packets
    ("REASON_", "usize"),
    // weft_ep_to_host_action (weft_settings.h)
    ("EP_TO_HOST_", "u8"),
    ("RPF_", "u8"),
    // enum weft_parse_result (weft_event.parse); the wire's TCP flags and IPv4 fragment bits
    ("PARSE_", "u8"),
    ("TCP_FLAGS_OFF", "usize"),
    ("TCP_", "u8"),
    ("IP_", "u16"),
];

/// `#define WEFT_*`s of the shared headers that are not integers, and so have no constant.
const NOT_INTEGERS: &[&str] = &["WEFT_INLINE", "WEFT_PASS", "WEFT_DROP"];

/// One constant read from a header.
struct Const {
    name: String,
    value: u64,
    hex: bool,
    header: &'static str,
    doc: String,
}

/// The Rust source of the generated constants.
fn abi(include: &Path) -> String {
    let mut consts: Vec<Const> = Vec::new();
    for header in SHARED_HEADERS {
        let path = include.join(header);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        read_header(header, &text, &mut consts);
    }
    let mut s =
        String::from("// Generated by reconciler/build.rs from bpf-src/include/: do not edit.\n");
    for c in &consts {
        let short = c.name.strip_prefix("WEFT_").expect("WEFT_ names only");
        let ty = TYPES
            .iter()
            .filter(|(p, _)| short.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, t)| *t)
            .unwrap_or_else(|| {
                panic!(
                    "{} ({}) has no Rust type: add its prefix to TYPES in reconciler/build.rs",
                    c.name, c.header
                )
            });
        let value = if c.hex {
            format!("{:#x}", c.value)
        } else {
            c.value.to_string()
        };
        s += &format!("/// `{}` ({}){}\n", c.name, c.header, c.doc);
        s += &format!("pub const {short}: {ty} = {value};\n");
    }
    s
}

/// Appends the integer `#define WEFT_*`s and `WEFT_*` enum members of one header.
fn read_header(header: &'static str, text: &str, out: &mut Vec<Const>) {
    let mut in_comment = false;
    // Inside an enum: the next implicit value.
    let mut in_enum: Option<u64> = None;
    for raw in text.lines() {
        let (code, doc) = strip_comments(raw, &mut in_comment);
        let code = code.trim();
        if code.is_empty() {
            continue;
        }
        if let Some(rest) = code.strip_prefix("#define") {
            let mut it = rest.split_whitespace();
            let Some(name) = it.next() else { continue };
            let value: Vec<&str> = it.collect();
            if !name.starts_with("WEFT_") || value.is_empty() || NOT_INTEGERS.contains(&name) {
                continue;
            }
            let (value, hex) = integer(&value.join(" "), out).unwrap_or_else(|| {
                panic!(
                    "{header}: {name} is not an integer: list it in NOT_INTEGERS in \
                     reconciler/build.rs if Rust needs no constant for it"
                )
            });
            push(out, name, value, hex, header, &doc);
            continue;
        }
        if code.starts_with("enum ") && code.ends_with('{') {
            in_enum = Some(0);
            continue;
        }
        let Some(next) = in_enum else { continue };
        if code.starts_with('}') {
            in_enum = None;
            continue;
        }
        for member in code.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let (name, value, hex) = match member.split_once('=') {
                Some((n, v)) => {
                    let (v, hex) = integer(v.trim(), out)
                        .unwrap_or_else(|| panic!("{header}: enum member {member}"));
                    (n.trim(), v, hex)
                }
                None => (member, in_enum.unwrap_or(next), false),
            };
            in_enum = Some(value + 1);
            if name.starts_with("WEFT_") {
                push(out, name, value, hex, header, &doc);
            }
        }
    }
}

fn push(out: &mut Vec<Const>, name: &str, value: u64, hex: bool, header: &'static str, doc: &str) {
    if out.iter().any(|c| c.name == name) {
        panic!("{header}: {name} is defined twice");
    }
    out.push(Const {
        name: name.into(),
        value,
        hex,
        header,
        doc: doc.into(),
    });
}

/// `v` as a C integer literal (decimal or hex, with or without a `u`/`l` suffix), or the name
/// of a constant read before it.
fn integer(v: &str, known: &[Const]) -> Option<(u64, bool)> {
    let t = v.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| (n, true));
    }
    if let Ok(n) = t.parse() {
        return Some((n, false));
    }
    known.iter().find(|c| c.name == v).map(|c| (c.value, c.hex))
}

/// The code of a line without its comments, and the text of a comment on it (for the doc),
/// keeping track of comments that span lines.
fn strip_comments(line: &str, in_comment: &mut bool) -> (String, String) {
    let mut code = String::new();
    let mut doc = String::new();
    let mut rest = line;
    loop {
        if *in_comment {
            match rest.find("*/") {
                Some(i) => {
                    *in_comment = false;
                    rest = &rest[i + 2..];
                }
                None => break,
            }
        }
        let block = rest.find("/*");
        let line_comment = rest.find("//");
        match (block, line_comment) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                code += &rest[..b];
                let after = &rest[b + 2..];
                match after.find("*/") {
                    Some(e) => {
                        doc += after[..e].trim();
                        rest = &after[e + 2..];
                    }
                    None => {
                        *in_comment = true;
                        break;
                    }
                }
            }
            (_, Some(l)) => {
                code += &rest[..l];
                doc += rest[l + 2..].trim();
                break;
            }
            _ => {
                code += rest;
                break;
            }
        }
    }
    let doc = if doc.is_empty() {
        String::new()
    } else {
        format!(": {doc}")
    };
    (code, doc)
}
