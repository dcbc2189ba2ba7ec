//! `weft-bench control`: the control plane at 1,000, 10,000 and 50,000 endpoints, policies and
//! services, through the real `weft` binary in a network namespace of its own.
//!
//! For each scale N the configuration directory holds N WorkloadEndpoints, N Kubernetes
//! NetworkPolicies and N Services with an EndpointSlice of ten backends each (bench/src/svcgen.rs),
//! in twenty namespaces. Endpoints spread over nodes as a cluster's do: LOCAL of them are on this
//! node (each with a real veth in the namespace), the rest on others, where they still count as
//! members of the policies' selectors. Measured:
//!
//! - cold converge: `weft apply DIR` from nothing, wall and CPU time, and its peak RSS (wait4);
//! - `weft diff DIR` on the converged host (it must find nothing);
//! - one change under `weft run`: a file written (renamed into place, as git does) until the
//!   kernel holds it, checked from this process by looking up the pinned map entry the change
//!   must alter: a policy's port (a local endpoint's interface entry gets a new ruleset id) and
//!   a service's backends (its frontend entry's backend count);
//! - the daemon's bookkeeping after the policy change: from the kernel change until it wrote
//!   its status;
//! - the daemon's peak RSS (VmHWM) after all that.
//!
//! Targets are set at 10,000; every figure at another scale also gives its ratio to the same
//! figure at 1,000, so that the growth shows.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use weft::bpf::maps::{self, IfaceValue, NatFrontend, NatFrontendKey, Plain};
use weft::bpf::Pins;

use crate::netns;
use crate::report::{Common, Report, Row, Spread};
use crate::svcgen::{self, Svc};

/// Endpoints on this node, at every scale: a node holds a few hundred pods at most.
const LOCAL: usize = 100;
const NODE: &str = svcgen::NODE;
/// App labels the endpoints and policies cycle through.
const APPS: usize = 50;
const NAMESPACES: usize = 20;
/// One-change trials per kind under the daemon.
const CHANGES: usize = 5;
/// The daemon's debounce in this benchmark (its default, 300 ms, waits for a sync to finish
/// writing; the latency measured here is weft's own).
const DEBOUNCE: &str = "10ms";
const TIMEOUT: Duration = Duration::from_secs(300);

fn namespace(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

fn wep_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 1 + i as u32)
}

fn iface(i: usize) -> String {
    format!("wb{i}")
}

fn wep_yaml(i: usize) -> String {
    let node = if i < LOCAL {
        NODE.to_string()
    } else {
        format!("node-{}", i / LOCAL)
    };
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: wl-{i:05}\n  namespace: {ns}\n  labels:\n    app: app{app}\n    role: r{role}\nspec:\n  node: {node}\n  interfaceName: {ifc}\n  ipNetworks: [{addr}/32]\n  profiles: [kns.{ns}]\n  ports:\n  - {{name: http, protocol: TCP, port: 8080}}\n",
        ns = namespace(i),
        app = i % APPS,
        role = i % 7,
        ifc = iface(i),
        addr = wep_addr(i),
    )
}

/// Policy i: endpoints with label app{i % APPS} in its namespace take, from role r{i % 7} pods
/// and from a /24, a port of its own, a port range and the named port.
fn policy_yaml(i: usize, port_shift: u16) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np-{i:05}\n  namespace: {ns}\nspec:\n  podSelector:\n    matchLabels: {{app: app{app}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {{role: r{role}}}\n    - ipBlock: {{cidr: 172.16.{net}.0/24}}\n    ports:\n    - {{protocol: TCP, port: {port}}}\n    - {{protocol: TCP, port: 9000, endPort: {end}}}\n    - {{protocol: TCP, port: http}}\n",
        ns = namespace(i),
        app = i % APPS,
        role = i % 7,
        net = i % 256,
        port = 10_000 + (i % 1000) as u16 + port_shift,
        end = 9000 + (i % 100),
    )
}

fn write_atomic(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("mkdir");
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("writing a file");
    std::fs::rename(&tmp, path).expect("renaming a file");
}

fn policy_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("policies").join(format!("np-{i:05}.yaml"))
}

/// Writes the configuration of scale `n`; returns its services.
fn write_config(dir: &Path, n: usize) -> Vec<Svc> {
    let _ = std::fs::remove_dir_all(dir);
    let mut ns = String::new();
    for k in 0..NAMESPACES {
        let _ = write!(
            ns,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {{team: t{k}}}\n",
            namespace(k)
        );
    }
    write_atomic(&dir.join("namespaces.yaml"), &ns);
    // Endpoints a hundred to a file, as an inventory export would hold them.
    for chunk in 0..n.div_ceil(100) {
        let text: String = (chunk * 100..((chunk + 1) * 100).min(n))
            .map(|i| format!("---\n{}", wep_yaml(i)))
            .collect();
        write_atomic(
            &dir.join("endpoints").join(format!("wl-{chunk:03}.yaml")),
            &text,
        );
    }
    for i in 0..n {
        write_atomic(&policy_path(dir, i), &policy_yaml(i, 0));
    }
    // Past Calico's default map sizes (262,144 backends), the maps are sized as an operator
    // would size them for this many services.
    if n * svcgen::BACKENDS > 200_000 {
        write_atomic(
            &dir.join("felix.yaml"),
            &format!(
                "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfMapSizeNATBackend: {}\n  bpfMapSizeNATFrontend: {}\n  bpfMapSizeRoute: {}\n",
                2 * n * svcgen::BACKENDS,
                4 * n,
                4 * n
            ),
        );
    }
    crate::services::write_dir(&dir.join("services"), n)
}

/// A child's wall time, CPU time and peak RSS (wait4: nsenter execs weft, so the child is weft).
pub(crate) struct Ran {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) rss_mib: f64,
    pub(crate) code: i32,
}

pub(crate) fn run_timed(cmd: &mut Command) -> Ran {
    // Its log goes to a file: a pipe nobody reads until it exits would fill and stop it.
    let log = std::env::temp_dir().join(format!("weftbench-control-{}.log", std::process::id()));
    let t = Instant::now();
    // Reaped below by wait4, which std's Child cannot do (it has no rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("running weft");
    let mut status = 0;
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the child is ours and not yet waited for; wait4 fills status and ru.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, ru.as_mut_ptr()) };
    let wall = t.elapsed();
    assert!(pid > 0, "wait4: {}", std::io::Error::last_os_error());
    // SAFETY: filled by a successful wait4.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(code <= 1, "weft failed ({code}): {err}");
    Ran {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        rss_mib: ru.ru_maxrss as f64 / 1024.0,
        code,
    }
}

/// A host weft runs on in a benchmark: a namespace, the node weft runs as, a bpffs root and
/// a state directory, all removed (weft torn down first) when it is dropped.
pub(crate) struct Host {
    pub(crate) ns: netns::Netns,
    bin: PathBuf,
    node: &'static str,
    pub(crate) bpffs: PathBuf,
    pub(crate) state: PathBuf,
}

impl Host {
    /// Namespace `ns` as node `node`'s host, with pins under a bpffs root named after `tag`.
    pub(crate) fn in_ns(ns: netns::Netns, bin: &Path, node: &'static str, tag: &str) -> Host {
        Host {
            bpffs: PathBuf::from("/sys/fs/bpf").join(format!("weftbench-{tag}")),
            state: std::env::temp_dir().join(format!("{}.state", ns.name)),
            ns,
            bin: bin.to_path_buf(),
            node,
        }
    }

    /// One scale's host: a namespace with LOCAL veths.
    fn new(bin: &Path, tag: &str) -> Host {
        let ns = netns::host();
        let mut batch = String::new();
        for i in 0..LOCAL {
            let _ = writeln!(
                batch,
                "link add {} type veth peer name {}p\nlink set {} up\nlink set {}p up",
                iface(i),
                iface(i),
                iface(i),
                iface(i)
            );
        }
        let file = std::env::temp_dir().join(format!("{}.links", ns.name));
        std::fs::write(&file, batch).expect("writing the link batch");
        let out = Command::new("ip")
            .args(["-n", &ns.name, "-batch"])
            .arg(&file)
            .output()
            .expect("ip -batch");
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "creating veths: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Host::in_ns(ns, bin, NODE, &format!("control-{tag}"))
    }

    pub(crate) fn weft(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns.path().display()))
            .arg(&self.bin)
            .args(args);
        // Teardown programs nothing, so it takes no node.
        if args.first() != Some(&"teardown") {
            c.args(["--node", self.node]);
        }
        c.arg("--bpffs").arg(&self.bpffs);
        c
    }

    /// An interface's index, asked inside the namespace (it is the namespace's own).
    fn ifindex(&self, name: &str) -> u32 {
        let c = std::ffi::CString::new(name).expect("no NUL");
        // SAFETY: a NUL-terminated name that outlives the call.
        self.ns
            .run(move || unsafe { libc::if_nametoindex(c.as_ptr()) })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.weft(&["teardown"]).output();
        let _ = std::fs::remove_dir_all(&self.bpffs);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A `weft run`, killed when dropped.
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The daemon's bookkeeping after an apply (status, metrics, the state kept for drift) runs
/// on past the kernel change: let it finish, so each trial starts from an idle daemon.
fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

pub(crate) fn vm_hwm_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Figures {
    n: usize,
    cold: Ran,
    diff: Ran,
    policy_change: Vec<f64>,
    service_change: Vec<f64>,
    /// From the policy change in the kernel until the daemon wrote its status, the last of
    /// its bookkeeping.
    bookkeeping: Vec<f64>,
    daemon_rss_mib: f64,
}

fn measure(bin: &Path, n: usize) -> Figures {
    let dir = std::env::temp_dir().join(format!("weftbench-control-{}-{n}", std::process::id()));
    let t = Instant::now();
    let svcs = write_config(&dir, n);
    eprintln!(
        "{n}: configuration written in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let host = Host::new(bin, &format!("{}-{n}", std::process::id()));
    let d = dir.to_str().expect("a UTF-8 path");

    let cold = run_timed(&mut host.weft(&["apply", d]));
    assert_eq!(cold.code, 0, "weft apply converged");
    eprintln!("{n}: cold apply {:.0} ms", cold.wall.as_secs_f64() * 1e3);
    let diff = run_timed(&mut host.weft(&["diff", d]));
    assert_eq!(diff.code, 0, "weft diff finds nothing after apply");

    let state = host.state.to_str().expect("a UTF-8 path").to_string();
    let daemon = Daemon(
        host.weft(&[
            "run",
            d,
            "--state-dir",
            &state,
            "--resync",
            "1h",
            "--debounce",
            DEBOUNCE,
            "--conntrack-gc-interval",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting weft run"),
    );
    let status = host.state.join("status.json");
    wait_for("the daemon's first converge", || {
        let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).ok()?).ok()?;
        (s["last_reconcile"]["result"] == "converged").then_some(())
    });

    let pins = Pins::new(&host.bpffs);
    let iface_map = MapHandle::from_pinned_path(pins.map(maps::IFACE)).expect("weft_iface");
    let fe_map = MapHandle::from_pinned_path(pins.map(maps::NAT_FE4)).expect("weft_nat_fe4");
    // Policy 0 selects app0, which local endpoint 0 carries.
    let ifindex = host.ifindex(&iface(0));
    let ruleset_in = || {
        iface_map
            .lookup(ifindex.as_bytes(), MapFlags::ANY)
            .expect("iface lookup")
            .and_then(|v| IfaceValue::from_bytes(&v))
            .map(|v| v.ruleset_in)
    };
    let svc = svcs[n / 2].clone();
    let fe_key = NatFrontendKey {
        addr: maps::addr_be(svc.cluster_ip),
        port: svc.port,
        proto: 6,
        pad: 0,
    };
    let backends = || {
        fe_map
            .lookup(fe_key.as_bytes(), MapFlags::ANY)
            .expect("frontend lookup")
            .and_then(|v| NatFrontend::from_bytes(&v))
            .map(|v| v.count)
    };

    let mut policy_change = Vec::new();
    let mut service_change = Vec::new();
    let mut bookkeeping = Vec::new();
    let written = || std::fs::metadata(&status).and_then(|m| m.modified()).ok();
    for k in 0..CHANGES {
        let before = ruleset_in();
        let status_before = written();
        let t = Instant::now();
        write_atomic(&policy_path(&dir, 0), &policy_yaml(0, 1 + k as u16));
        wait_for("the changed policy in the kernel", || {
            (ruleset_in() != before).then_some(())
        });
        let in_kernel = Instant::now();
        policy_change.push((in_kernel - t).as_secs_f64() * 1e3);
        wait_for("the daemon's status after the change", || {
            (written() != status_before).then_some(())
        });
        bookkeeping.push(in_kernel.elapsed().as_secs_f64() * 1e3);
        settle();

        let mut changed = svc.clone();
        changed
            .backends
            .push(svcgen::backend_addr(n * svcgen::BACKENDS + k));
        let want = changed.backends.len() as u32;
        let t = Instant::now();
        write_atomic(
            &dir.join("services").join(changed.file_name()),
            &changed.yaml(),
        );
        wait_for("the changed service in the kernel", || {
            (backends() == Some(want)).then_some(())
        });
        service_change.push(t.elapsed().as_secs_f64() * 1e3);
        settle();
        // Back as it was, and settled, before the next trial.
        write_atomic(&dir.join("services").join(svc.file_name()), &svc.yaml());
        wait_for("the service back", || {
            (backends() == Some(svc.backends.len() as u32)).then_some(())
        });
        settle();
    }
    let daemon_rss_mib = vm_hwm_mib(daemon.0.id());
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap_or_default()).unwrap_or_default();
    eprintln!("{n}: the daemon's last apply: {}", last["last_apply"]);
    drop(daemon);
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{n}: one change: policy {:?} ms, service {:?} ms",
        policy_change, service_change
    );
    Figures {
        n,
        cold,
        diff,
        policy_change,
        service_change,
        bookkeeping,
        daemon_rss_mib,
    }
}

/// `--sizes 1000,10000`: the scales to measure (default 1,000, 10,000 and 50,000; --quick
/// 1,000). `--write DIR N`: write the configuration of scale N to DIR and stop, for profiling
/// weft by hand on the same input.
pub fn run(common: Common, args: &[String]) -> ExitCode {
    let mut sizes: Vec<usize> = if common.quick {
        vec![1_000]
    } else {
        vec![1_000, 10_000, 50_000]
    };
    match args {
        [] => {}
        [flag, list] if flag == "--sizes" => {
            match list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()
            {
                Ok(v) if !v.is_empty() => sizes = v,
                _ => {
                    eprintln!("weft-bench control: --sizes takes numbers, e.g. 1000,10000");
                    return ExitCode::from(2);
                }
            }
        }
        [flag, dir, n] if flag == "--write" => {
            let Ok(n) = n.parse() else {
                eprintln!("weft-bench control: --write DIR N");
                return ExitCode::from(2);
            };
            write_config(Path::new(dir), n);
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("weft-bench control: [--sizes N,N...] | --write DIR N (and --json, --quick)");
            return ExitCode::from(2);
        }
    }
    let Some(bin) = crate::traffic::ready("weft-bench control") else {
        return ExitCode::FAILURE;
    };
    let all: Vec<Figures> = sizes.iter().map(|&n| measure(&bin, n)).collect();
    report(&all).print(common, "weft-bench control");
    ExitCode::SUCCESS
}

fn report(all: &[Figures]) -> Report {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Each figure by name, for the ratio of a scale's figure to the same figure at 1,000.
    type Figure = (&'static str, &'static str, fn(&Figures) -> f64, Option<f64>);
    let figures: [Figure; 8] = [
        (
            "cold converge (`weft apply`, from nothing)",
            "ms",
            |f| f.cold.wall.as_secs_f64() * 1e3,
            Some(2000.0),
        ),
        (
            "`weft diff` on the converged host",
            "ms",
            |f| f.diff.wall.as_secs_f64() * 1e3,
            Some(500.0),
        ),
        (
            "one change (a policy's port) under `weft run`, file written to kernel",
            "ms",
            |f| Spread::of(&f.policy_change).expect("trials").median,
            Some(50.0),
        ),
        (
            "bookkeeping after that change (kernel changed to status written)",
            "ms",
            |f| Spread::of(&f.bookkeeping).expect("trials").median,
            Some(20.0),
        ),
        (
            "one change (a service's backends) under `weft run`, file written to kernel",
            "ms",
            |f| Spread::of(&f.service_change).expect("trials").median,
            Some(50.0),
        ),
        (
            "peak RSS of `weft run`",
            "MiB",
            |f| f.daemon_rss_mib,
            Some(150.0),
        ),
        (
            "peak RSS of `weft apply`",
            "MiB",
            |f| f.cold.rss_mib,
            Some(100.0),
        ),
        ("peak RSS of `weft diff`", "MiB", |f| f.diff.rss_mib, None),
    ];
    let base = all.iter().find(|f| f.n == 1_000);
    let mut rows = Vec::new();
    for f in all {
        let n = f.n;
        let what = format!("{n} endpoints, policies and services");
        for (i, (name, unit, get, target)) in figures.iter().enumerate() {
            let value = get(f);
            // The targets are set at 10,000; other scales show the growth.
            let target = target.filter(|_| n == 10_000);
            let mut row = Row {
                name: format!("{what}: {name}"),
                value,
                unit: unit.to_string(),
                target: target.map(|t| format!("<= {t} {unit}")),
                met: target.map(|t| value <= t),
                command: "weft-bench control".into(),
                ..Default::default()
            };
            if let Some(b) = base.filter(|b| b.n != n) {
                let b = get(b);
                row.baseline = Some(b);
                row.baseline_name = Some("the same at 1,000".into());
                row.ratio = (b > 0.0).then(|| value / b);
            }
            let trials = match i {
                2 => Some(&f.policy_change),
                3 => Some(&f.bookkeeping),
                4 => Some(&f.service_change),
                _ => None,
            };
            if let Some(v) = trials {
                let s = Spread::of(v).expect("trials");
                row.runs = Some(s.runs);
                row.min = Some(s.min);
                row.max = Some(s.max);
            }
            if i == 0 {
                row.detail = Some(format!("CPU {:.0} ms", ms(f.cold.cpu)));
            }
            rows.push(row);
        }
    }
    Report {
        subcommand: "control".into(),
        title: "the control plane at 1,000, 10,000 and 50,000 endpoints, policies and services (the weft binary)".into(),
        rows,
        notes: vec![format!(
            "N WorkloadEndpoints (a hundred to a file; {LOCAL} on this node with a veth each, the rest on other nodes, where they are members of the policies' selectors), N Kubernetes NetworkPolicies (one per file: a pod selector, a peer selector, a /24, a port, a port range and a named port) and N Services with 10 backends each (one per file with its EndpointSlice), in {NAMESPACES} namespaces; at 50,000 a FelixConfiguration sizes the NAT and route maps past Calico's defaults (262,144 backends). weft runs in a network namespace of its own with a private bpffs root. One change: a file renamed into place until this process sees the pinned map entry change (a local endpoint's ruleset id; a frontend's backend count), {CHANGES} trials each, with `weft run --debounce {DEBOUNCE}` (the default 300 ms waits for a sync to finish writing). Peak RSS from wait4 (apply, diff) and VmHWM (the daemon)."
        )],
    }
}
