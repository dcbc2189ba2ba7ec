//! `weft gc [DIR]`: one sweep of the conntrack map, now.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use weft::bpf::ctgc::{Collector, CtTimeouts};
use weft::bpf::Pins;
use weft::daemon::ctgc::thread_cpu;
use weft::run;

use super::{report, say, HostArgs, LoadArgs, Output};

pub fn run(dir: Option<&Path>, load: LoadArgs, host: &HostArgs, output: Output) -> ExitCode {
    let _writer = match super::writer(host) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let timeouts = match dir {
        Some(dir) => match run::load(dir, load.options()) {
            Ok(cfg) => {
                let node = weft::facts::node_name(host.node.as_deref());
                CtTimeouts::from_config(&cfg.felix_for_node(&node).bpf_conntrack_timeouts())
            }
            Err(e) => return report(&e),
        },
        None => CtTimeouts::default(),
    };
    let pins = Pins::new(&host.bpffs);
    if !weft::bpf::features::syscall_programs() {
        say(format_args!(
            "weft gc: this kernel has no BPF syscall programs with bpf_for_each_map_elem \
             (Linux 5.14+): the conntrack collector cannot run; entries leave by LRU eviction \
             only"
        ));
        return ExitCode::from(2);
    }
    let collector = match Collector::load(&pins) {
        Ok(Some(c)) => c,
        Ok(None) => {
            say(format_args!(
                "no conntrack map under {}: nothing to sweep",
                pins.root.display()
            ));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(format_args!("weft: {e}"));
            return ExitCode::from(2);
        }
    };
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let sweep = match collector.sweep(&timeouts) {
        Ok(s) => s,
        Err(e) => {
            say(format_args!("weft: sweeping conntrack: {e}"));
            return ExitCode::from(2);
        }
    };
    let (wall, cpu) = (wall.elapsed(), thread_cpu().saturating_sub(cpu));
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "scanned": sweep.scanned,
                "deleted": sweep.deleted(),
                "expired": sweep.expired,
                "nat_fwd_deleted": sweep.nat_fwd_deleted,
                "wall_us": wall.as_micros() as u64,
                "cpu_us": cpu.as_micros() as u64,
                "timeouts": timeouts,
            });
            println!("{doc:#}");
        }
        Output::Text => {
            let why: Vec<String> = sweep
                .expired
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .chain((sweep.nat_fwd_deleted > 0).then(|| {
                    format!(
                        "{} NAT forward entries with their flows",
                        sweep.nat_fwd_deleted
                    )
                }))
                .collect();
            println!(
                "swept {} conntrack entries in {:.1} ms ({:.1} ms CPU): deleted {}{}",
                sweep.scanned,
                wall.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3,
                sweep.deleted(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join(", "))
                }
            );
        }
    }
    ExitCode::SUCCESS
}
