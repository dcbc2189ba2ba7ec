//! `weft flows`: the flow records in weft_flows, one line each (or one JSON object per line
//! with --json): how policy decided each new flow for each endpoint, and the drops worth
//! seeing. Without --follow, prints what the ring holds and exits; with it, keeps printing
//! until interrupted. Records the ring had no room for are reported on stderr.
//!
//! Also the loop `weft trace` uses for weft_trace: the rings differ, the reading does not.
//! Exit 0, or 1 when the configuration given does not validate, 2 on other errors (another
//! reader holds the ring, weft has not applied anything here).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weft::bpf::maps::{self, Event};
use weft::events::ring::{Reader, Ring, RingError};
use weft::events::{self, Clock, Record, RuleNames};
use weft::run::{self, Host, RunError};

use super::{report, say, HostArgs, LoadArgs};

/// How to read one ring.
pub struct Options<'a> {
    pub dir: Option<&'a Path>,
    pub load: LoadArgs,
    pub host: &'a HostArgs,
    pub json: bool,
    pub follow: bool,
    /// Only records of this interface.
    pub iface: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Ring(#[from] RingError),
}

pub async fn run(
    dir: Option<&Path>,
    load: LoadArgs,
    host: &HostArgs,
    json: bool,
    follow: bool,
) -> ExitCode {
    read(
        Ring::Flows,
        &Options {
            dir,
            load,
            host,
            json,
            follow,
            iface: None,
        },
    )
    .await
}

/// Reads `ring` as `opts` say and prints its records.
pub async fn read(ring: Ring, opts: &Options<'_>) -> ExitCode {
    match read_ring(ring, opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Run(e)) => report(&e),
        Err(Error::Ring(e)) => {
            say(format_args!("weft: {e}"));
            ExitCode::from(2)
        }
    }
}

/// Set by SIGINT and SIGTERM: a follow ends at its next wake-up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Interface names by index: those the host had when the reader started, then the kernel's
/// (an interface that appeared since), remembered.
struct IfaceNames {
    known: BTreeMap<u32, Option<String>>,
}

impl IfaceNames {
    fn new(h: &Host) -> IfaceNames {
        IfaceNames {
            known: h
                .facts
                .links
                .iter()
                .map(|(n, i)| (*i, Some(n.clone())))
                .collect(),
        }
    }

    fn get(&mut self, ifindex: u32) -> Option<String> {
        self.known
            .entry(ifindex)
            .or_insert_with(|| {
                let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
                // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
                let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
                (!p.is_null()).then(|| {
                    // SAFETY: on success buf holds a NUL-terminated name.
                    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                        .to_string_lossy()
                        .into_owned()
                })
            })
            .clone()
    }
}

async fn read_ring(ring: Ring, opts: &Options<'_>) -> Result<(), Error> {
    // Without DIR, the daemon's directory names the rules.
    let cfg = super::dir_or_daemons(opts.dir, opts.host)
        .map(|d| run::load(&d, opts.load.options()))
        .transpose()?;
    let h = opts.host.open().await?;
    let names = match &cfg {
        Some(cfg) => RuleNames::new(&h.desired(cfg)?),
        None => RuleNames::default(),
    };
    let mut reader = Reader::open(&h.pins, ring)?;
    if ring == Ring::Trace {
        warn_untraced(&h, opts.iface);
    }
    let mut ifaces = IfaceNames::new(&h);
    let clock = Clock::now();
    let mut out = std::io::stdout().lock();
    let mut print = |events: Vec<Event>| -> bool {
        for e in events {
            let name = ifaces.get(e.ifindex);
            let r = events::decode(&e, &clock, |_| name.clone(), &names);
            if opts.iface.is_some_and(|want| want != r.iface) {
                continue;
            }
            if writeln!(out, "{}", line(&r, opts.json)).is_err() {
                // The reader of our output has gone (a closed pipe): so can we.
                return false;
            }
        }
        out.flush().is_ok()
    };
    let report_lost = |reader: &mut Reader| -> Result<(), RingError> {
        let n = reader.lost()?;
        if n > 0 {
            say(format_args!(
                "weft: {n} record(s) lost: {} was full (read it more often, or raise bpfExportBufferSizeMB)",
                ring.map()
            ));
        }
        Ok(())
    };

    if !opts.follow {
        let events = reader.drain()?;
        print(events);
        return Ok(report_lost(&mut reader)?);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    say(format_args!(
        "weft: reading {} until interrupted",
        ring.map()
    ));
    let mut last_lost = Instant::now();
    report_lost(&mut reader)?;
    while !STOP.load(Ordering::Relaxed) {
        let events = reader.wait(Duration::from_millis(250))?;
        if !print(events) {
            break;
        }
        if last_lost.elapsed() >= Duration::from_secs(1) {
            report_lost(&mut reader)?;
            if reader.follow_pin()? {
                say(format_args!(
                    "weft: {} was replaced (resized, or weft applied anew); reading the new one",
                    ring.map()
                ));
                if !print(reader.drain()?) {
                    break;
                }
            }
            last_lost = Instant::now();
        }
    }
    report_lost(&mut reader)?;
    Ok(())
}

fn line(r: &Record, json: bool) -> String {
    if json {
        serde_json::to_string(r).expect("records serialize")
    } else {
        events::render(r)
    }
}

/// Says so when nothing (or not the interface asked for) is traced: an empty trace should not
/// leave anyone guessing.
fn warn_untraced(h: &Host, iface: Option<&str>) {
    let Ok(entries) = weft::dump::read_map(&h.pins, maps::IFACE) else {
        return;
    };
    let traced: Vec<String> = maps::spec::IFACE
        .decode_all(&entries)
        .filter(|(_, v)| v.flags & maps::IFACE_F_TRACE != 0)
        .map(|(i, v)| {
            h.facts
                .link_name(i)
                .map_or_else(|| maps::from_c_name(&v.name), str::to_string)
        })
        .collect();
    let advice = "set bpfLogLevel: Debug in a FelixConfiguration (with a bpfLogFilters key that covers it, if it has filters) and apply";
    match iface {
        Some(want) if !traced.iter().any(|t| t == want) => {
            say(format_args!("weft: {want} is not traced: {advice}"))
        }
        None if traced.is_empty() => say(format_args!("weft: no interface is traced: {advice}")),
        _ => {}
    }
}
