//! `weft verifier`: what the kernel's verifier costs for every program weft loads, in every
//! variant that changes what it walks: each object, each setting compiled into .rodata that
//! turns code on or off, and the object built for each BPF instruction set. The verifier's cost
//! depends on the kernel build as much as on the source, so this runs on the host itself (and
//! in every kernel of vm-tests' matrix), and a test holds every program to a quarter of the
//! limit: a program near the limit passes here and fails on the next kernel update.
//!
//! Each variant is loaded into the kernel with fresh maps of the sizes weft uses, nothing
//! pinned and nothing attached, and dropped again. The kernel reports instructions processed
//! (`verified_insns`) and the translated and JIT-compiled sizes; the verifier's statistics log
//! (BPF_LOG_STATS) adds states and time.
//!
//! Settings that live in maps rather than .rodata (bpfLogLevel, the trace and flow-log filters)
//! do not change the program, so one variant covers them.

use std::os::fd::AsFd;
use std::time::Instant;

use libbpf_rs::{AsRawLibbpf, ObjectBuilder};

use super::load::{route_libbpf_log, EpToHost, ProgramSettings, Rpf};
use super::maps::MapSizes;

/// The verifier's limit on instructions processed for one program (BPF_COMPLEXITY_LIMIT_INSNS,
/// the same in every kernel since 5.2).
pub const INSN_LIMIT: u32 = 1_000_000;

/// What weft allows itself: a quarter of the limit, so that another kernel build can cost
/// several times more and still load.
pub const BUDGET: u32 = INSN_LIMIT / 4;

/// How an object was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// As weft ships it: clang's default instruction set (v1 for clang 16).
    Shipped,
    /// `-mcpu=v2`: more conditional jumps.
    V2,
    /// `-mcpu=v3`: 32-bit subregisters and jumps.
    V3,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Shipped, Isa::V2, Isa::V3];

    pub fn as_str(self) -> &'static str {
        match self {
            Isa::Shipped => "shipped",
            Isa::V2 => "v2",
            Isa::V3 => "v3",
        }
    }
}

/// The objects as built into this weft, for each instruction set.
struct Built {
    name: &'static str,
    shipped: &'static [u8],
    v2: &'static [u8],
    v3: &'static [u8],
    /// Which settings change this object's code.
    settings: &'static [ProgramSettings],
}

macro_rules! built {
    ($name:literal, $settings:expr) => {
        Built {
            name: $name,
            shipped: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")),
            v2: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".v2.bpf.o")),
            v3: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".v3.bpf.o")),
            settings: $settings,
        }
    };
}

const fn ep_to_host(ep_to_host: EpToHost) -> ProgramSettings {
    ProgramSettings {
        ep_to_host,
        ctlb_udp: false,
        netns_cookie: 0,
        tunnel: false,
        rpf: Rpf::Loose,
        mss_clamp: 0,
        dsr: false,
        xdp_accel: None,
    }
}

/// DefaultEndpointToHostAction is a constant to the tc programs: each value prunes other code;
/// so does a fleet's tunnel, which adds the path of flows other nodes forward.
const TC_SETTINGS: &[ProgramSettings] = &[
    ep_to_host(EpToHost::Drop),
    ep_to_host(EpToHost::Return),
    ep_to_host(EpToHost::Accept),
    ProgramSettings {
        tunnel: true,
        rpf: Rpf::Strict,
        mss_clamp: 1410,
        dsr: true,
        xdp_accel: Some(crate::objects::XdpAccel {
            vni: 4096,
            port: 4789,
            mtu: 1450,
            untracked: true,
            vtep: std::net::Ipv4Addr::new(192, 0, 2, 1),
            vtep_mac: [0x66, 0, 0, 0, 0, 1],
        }),
        ..ep_to_host(EpToHost::Drop)
    },
    ProgramSettings {
        rpf: Rpf::Disabled,
        ..ep_to_host(EpToHost::Drop)
    },
];

/// BPFConnectTimeLoadBalancing TCP or Enabled (UDP too); a netns cookie to compare against.
const CTLB_SETTINGS: &[ProgramSettings] = &[
    ProgramSettings {
        ep_to_host: EpToHost::Drop,
        ctlb_udp: false,
        netns_cookie: 0,
        tunnel: false,
        rpf: Rpf::Loose,
        mss_clamp: 0,
        dsr: false,
        xdp_accel: None,
    },
    ProgramSettings {
        ep_to_host: EpToHost::Drop,
        ctlb_udp: true,
        netns_cookie: 1,
        tunnel: false,
        rpf: Rpf::Loose,
        mss_clamp: 0,
        dsr: false,
        xdp_accel: None,
    },
];

/// The collector has no settings in .rodata (its timeouts come in with each run).
const NO_SETTINGS: &[ProgramSettings] = &[ep_to_host(EpToHost::Drop)];

fn objects() -> [Built; 4] {
    [
        built!("weft_wep", TC_SETTINGS),
        built!("weft_hep", TC_SETTINGS),
        built!("weft_ctlb", CTLB_SETTINGS),
        built!("weft_ctgc", NO_SETTINGS),
    ]
}

/// One program in one variant, as the verifier saw it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProgramCost {
    pub object: &'static str,
    pub program: String,
    pub isa: Isa,
    /// The settings this variant was loaded with, as `weft diff` writes them.
    pub settings: String,
    /// Loaded: the verifier accepted it.
    pub loaded: bool,
    /// Why not, in the verifier's words (the end of its log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Instructions the verifier processed (what the limit counts).
    pub insns_processed: Option<u32>,
    /// States the verifier held at once at most, and in all.
    pub peak_states: Option<u32>,
    pub total_states: Option<u32>,
    /// The verifier's own time for this program.
    pub verification_us: Option<u64>,
    /// The program's size in instructions as loaded (after the kernel's rewrites).
    pub xlated_insns: Option<u32>,
    /// Bytes of machine code the JIT made.
    pub jited_bytes: Option<u32>,
}

impl ProgramCost {
    /// The share of the verifier's limit this program used.
    pub fn share_of_limit(&self) -> Option<f64> {
        self.insns_processed
            .map(|n| f64::from(n) / f64::from(INSN_LIMIT))
    }

    /// Loaded, and within weft's budget.
    pub fn within_budget(&self) -> bool {
        self.loaded && self.insns_processed.is_some_and(|n| n <= BUDGET)
    }
}

/// Every program weft loads, in every variant, on the running kernel.
pub fn measure() -> Vec<ProgramCost> {
    route_libbpf_log();
    let sizes = MapSizes::default();
    let mut out = Vec::new();
    for obj in objects() {
        for isa in Isa::ALL {
            let bytes = match isa {
                Isa::Shipped => obj.shipped,
                Isa::V2 => obj.v2,
                Isa::V3 => obj.v3,
            };
            for settings in obj.settings {
                out.extend(measure_object(obj.name, bytes, isa, *settings, &sizes));
            }
        }
    }
    out
}

fn describe(object: &str, s: &ProgramSettings) -> String {
    match object {
        "weft_wep" | "weft_hep" => format!(
            "ep-to-host={:?}{}{}",
            s.ep_to_host,
            if s.tunnel {
                format!(
                    " tunnel mss-clamp={}{}{}",
                    s.mss_clamp,
                    if s.dsr { " dsr" } else { "" },
                    if s.xdp_accel.is_some() {
                        " xdp-accel"
                    } else {
                        ""
                    }
                )
            } else {
                String::new()
            },
            if s.rpf == Rpf::Loose {
                String::new()
            } else {
                format!(" rpf={:?}", s.rpf)
            }
        )
        .to_lowercase(),
        "weft_ctlb" => format!("udp={} netns-cookie={}", s.ctlb_udp, s.netns_cookie != 0),
        _ => "-".into(),
    }
}

/// Loads every program of one object variant. Where the object does not load as a whole, each
/// program is loaded alone to tell which the verifier rejects, with a full log for its reason.
fn measure_object(
    object: &'static str,
    bytes: &[u8],
    isa: Isa,
    settings: ProgramSettings,
    sizes: &MapSizes,
) -> Vec<ProgramCost> {
    if let Ok(costs) = load(object, bytes, settings, sizes, None, STATS) {
        return costs
            .into_iter()
            .map(|(program, stats)| cost(object, program, isa, &settings, stats))
            .collect();
    }
    let programs = match program_names(object, bytes) {
        Ok(p) => p,
        Err(e) => return vec![failed(object, "*".into(), isa, &settings, e)],
    };
    programs
        .into_iter()
        .map(
            |p| match load(object, bytes, settings, sizes, Some(&p), STATS | LEVEL1) {
                Ok(mut c) if !c.is_empty() => {
                    let (program, stats) = c.remove(0);
                    cost(object, program, isa, &settings, stats)
                }
                Ok(_) => failed(object, p, isa, &settings, "not in the object".into()),
                Err(e) => failed(object, p, isa, &settings, e),
            },
        )
        .collect()
}

fn cost(
    object: &'static str,
    program: String,
    isa: Isa,
    settings: &ProgramSettings,
    s: Stats,
) -> ProgramCost {
    ProgramCost {
        object,
        program,
        isa,
        settings: describe(object, settings),
        loaded: true,
        error: None,
        insns_processed: s.verified_insns.or(s.log.processed),
        peak_states: s.log.peak_states,
        total_states: s.log.total_states,
        verification_us: s.log.verification_us,
        xlated_insns: s.xlated_insns,
        jited_bytes: s.jited_bytes,
    }
}

fn failed(
    object: &'static str,
    program: String,
    isa: Isa,
    settings: &ProgramSettings,
    error: String,
) -> ProgramCost {
    let log = LogStats::parse(&error);
    ProgramCost {
        object,
        program,
        isa,
        settings: describe(object, settings),
        loaded: false,
        error: Some(error),
        insns_processed: log.processed,
        peak_states: log.peak_states,
        total_states: log.total_states,
        verification_us: log.verification_us,
        xlated_insns: None,
        jited_bytes: None,
    }
}

/// BPF_LOG_STATS: the verifier's totals only.
const STATS: u32 = 4;
/// BPF_LOG_LEVEL1: every instruction walked, for the reason of a rejection.
const LEVEL1: u32 = 1;

/// What the kernel says of one loaded program.
#[derive(Clone, Debug, Default)]
struct Stats {
    verified_insns: Option<u32>,
    xlated_insns: Option<u32>,
    jited_bytes: Option<u32>,
    log: LogStats,
}

/// The totals in a verifier log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub processed: Option<u32>,
    pub peak_states: Option<u32>,
    pub total_states: Option<u32>,
    pub verification_us: Option<u64>,
}

impl LogStats {
    /// Reads "processed N insns (limit L) max_states_per_insn M total_states T peak_states P
    /// mark_read R" and "verification time N usec", as every kernel since 5.2 writes them.
    pub fn parse(log: &str) -> LogStats {
        let mut s = LogStats::default();
        for line in log.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |w: &str| {
                words
                    .iter()
                    .position(|x| *x == w)
                    .and_then(|i| words.get(i + 1))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if line.starts_with("processed ") {
                s.processed = after("processed").map(|v| v as u32);
                s.peak_states = after("peak_states").map(|v| v as u32);
                s.total_states = after("total_states").map(|v| v as u32);
            } else if line.starts_with("verification time ") {
                s.verification_us = after("time");
            }
        }
        s
    }
}

fn program_names(object: &'static str, bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut b = ObjectBuilder::default();
    b.name(object).map_err(|e| e.to_string())?;
    let open = b.open_memory(bytes).map_err(|e| format!("{e:#}"))?;
    Ok(open
        .progs()
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect())
}

/// Opens `bytes`, fills in .rodata and map sizes as weft's loader does, loads `only` (or every
/// program), and reads back what the verifier and the kernel say of each.
fn load(
    object: &'static str,
    bytes: &[u8],
    settings: ProgramSettings,
    sizes: &MapSizes,
    only: Option<&str>,
    log_level: u32,
) -> Result<Vec<(String, Stats)>, String> {
    let mut b = ObjectBuilder::default();
    b.name(object).map_err(|e| e.to_string())?;
    let mut open = b.open_memory(bytes).map_err(|e| format!("{e:#}"))?;
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        if name.ends_with(".rodata") {
            if let Some(data) = m.initial_value_mut() {
                write_settings(data, settings);
            }
            continue;
        }
        if name.contains('.') {
            continue;
        }
        if object == "weft_ctgc" && name != super::maps::CT4 {
            // As the collector is loaded: over the conntrack map alone.
            m.set_autocreate(false)
                .map_err(|e| format!("map {name}: {e}"))?;
            continue;
        }
        if let Some(n) = sizes.max_entries(&name) {
            m.set_max_entries(n)
                .map_err(|e| format!("map {name}: {e}"))?;
        }
    }
    // One log buffer per program: the kernel writes each program's verifier log into its own.
    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    for mut p in open.progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        let wanted = only.is_none_or(|o| o == name);
        p.set_autoload(wanted);
        if wanted {
            p.set_log_level(log_level);
            let size = if log_level & LEVEL1 != 0 {
                16 << 20
            } else {
                64 << 10
            };
            logs.push((name, vec![0u8; size]));
        }
    }
    for p in open.progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        if let Some((_, buf)) = logs.iter_mut().find(|(n, _)| *n == name) {
            // SAFETY: the buffer outlives the load below (it is dropped at the end of this
            // function, after the object), and its size is passed with it.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_program__set_log_buf(
                    p.as_libbpf_object().as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len() as _,
                )
            };
            if rc != 0 {
                return Err(format!("program {name}: setting its log buffer: {rc}"));
            }
        }
    }
    let started = Instant::now();
    let loaded = open.load();
    let elapsed = started.elapsed();
    let text = |buf: &[u8]| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    };
    let obj = match loaded {
        Ok(o) => o,
        Err(e) => {
            // The log of the program that failed, its last lines: the reason and the totals.
            let log = logs
                .iter()
                .map(|(_, b)| text(b))
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(if tail.is_empty() {
                format!("{e:#}")
            } else {
                format!("{e:#}\n{}", tail.join("\n"))
            });
        }
    };
    let mut out = Vec::new();
    for p in obj.progs() {
        let name = p.name().to_string_lossy().into_owned();
        let Some((_, buf)) = logs.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let mut log = LogStats::parse(&text(buf));
        if log.verification_us.is_none() && logs.len() == 1 {
            log.verification_us = Some(elapsed.as_micros() as u64);
        }
        let info = super::load::prog_info(p.as_fd()).ok();
        out.push((
            name,
            Stats {
                verified_insns: info.map(|i| i.verified_insns).filter(|n| *n > 0),
                xlated_insns: info.map(|i| i.xlated_prog_len / 8),
                jited_bytes: info.map(|i| i.jited_prog_len),
                log,
            },
        ));
    }
    Ok(out)
}

/// Writes the settings into an object's .rodata as the loader does (`load::write_rodata`),
/// through the generated skeleton's layout. Every object includes weft_settings.h the same way
/// and an instruction set does not move data, so one layout serves them all; an object id of
/// 0 marks the variant as not weft's.
fn write_settings(data: &mut [u8], s: ProgramSettings) {
    use super::skel::wep::types::rodata;
    if data.len() < std::mem::size_of::<u64>() {
        return;
    }
    // The section as compiled may be shorter than the generated struct (no tail padding).
    let n = data.len().min(std::mem::size_of::<rodata>());
    let mut r = std::mem::MaybeUninit::<rodata>::zeroed();
    // SAFETY: rodata is repr(C) of integers, for which zero and any bytes are valid; n is
    // within both buffers.
    let mut r = unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), r.as_mut_ptr().cast::<u8>(), n);
        r.assume_init()
    };
    super::load::write_rodata!(&mut r, 0, s);
    // SAFETY: as above, the other way.
    unsafe {
        std::ptr::copy_nonoverlapping((&r as *const rodata).cast::<u8>(), data.as_mut_ptr(), n)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals_of_a_verifier_log() {
        let log = "func#0 @0\nverification time 2150 usec\nstack depth 0+48\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 35 \
                   total_states 30188 peak_states 113377 mark_read 0\n";
        assert_eq!(
            LogStats::parse(log),
            LogStats {
                processed: Some(1_000_001),
                peak_states: Some(113_377),
                total_states: Some(30_188),
                verification_us: Some(2150),
            }
        );
        assert_eq!(
            LogStats::parse("R1 invalid mem access"),
            LogStats::default()
        );
    }

    #[test]
    fn a_program_over_a_quarter_of_the_limit_is_over_budget() {
        let mut c = failed(
            "weft_wep",
            "weft_from_wep".into(),
            Isa::V3,
            &ep_to_host(EpToHost::Drop),
            String::new(),
        );
        c.loaded = true;
        c.insns_processed = Some(BUDGET);
        assert!(c.within_budget());
        c.insns_processed = Some(BUDGET + 1);
        assert!(!c.within_budget());
        assert_eq!(c.settings, "ep-to-host=drop");
    }
}
