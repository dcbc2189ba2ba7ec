//! The weft binary as a shell sees it, without a kernel: commands that only print end quietly
//! when their reader has gone (`weft validate DIR | head`), as other Unix tools do.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A pipe whose reading end is closed already: every write to it fails (EPIPE, SIGPIPE).
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both are new descriptors that this process owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn a_printing_command_ends_quietly_when_its_reader_has_gone() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("validate")
        .arg(&examples)
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .expect("running weft validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "weft validate into a closed pipe: {} {stderr}",
        out.status
    );
    // It ends as `cat` would: by SIGPIPE, saying nothing.
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn the_state_directory_and_pin_root_default_from_the_environment() {
    let dir = std::env::temp_dir().join(format!("weft-cli-env-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("status")
        .env("WEFT_STATE_DIR", &dir)
        .env("WEFT_BPFFS", dir.join("pins"))
        .output()
        .expect("running weft status");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "no status in {}",
            dir.join("status.json").display()
        )),
        "weft status looked where $WEFT_STATE_DIR says: {said}"
    );
    assert_eq!(out.status.code(), Some(1), "no daemon: {said}");
}

#[test]
fn durations_are_written_as_felixconfiguration_writes_them() {
    // `--resync 1m30s` is accepted where a duration is asked for; `--resync 1 fortnight` not.
    let run = |d: &str| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", "/nonexistent", "--resync", d, "--help"])
            .output()
            .expect("running weft")
    };
    assert!(run("1m30s").status.success());
    assert!(run("1.5s").status.success());
    let bad = run("1 fortnight");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a duration"));
}

#[test]
fn validate_takes_one_file_as_well_as_a_directory() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/broken/policy.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("running weft validate FILE");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // That file's problems, and no other file's.
    assert!(
        said.contains("policy.yaml:31:3: GlobalNetworkPolicy allow-dns"),
        "{said}"
    );
    assert!(!said.contains("workloads.yaml"), "{said}");
}

#[test]
fn validate_o_json_gives_every_problem_as_an_object() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/broken");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("validate")
        .arg(&dir)
        .args(["-o", "json"])
        .output()
        .expect("running weft validate -o json");
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["valid"], false);
    let problems = doc["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 12, "{doc}");
    for p in problems {
        assert!(
            p["file"].is_string()
                && p["line"].as_u64().is_some_and(|l| l > 0)
                && p["column"].as_u64().is_some_and(|c| c > 0)
                && p["message"].is_string(),
            "{p}"
        );
    }
    assert_eq!(problems[0]["resource"]["kind"], "NetworkPolicy", "{doc}");
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .output()
            .expect("running weft");
        assert!(out.status.success(), "weft {args:?}");
        String::from_utf8(out.stdout).expect("text")
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_weft()") && bash.contains("validate"),
        "{bash}"
    );
    assert!(run(&["completions", "zsh"]).contains("#compdef weft"));
    let man = run(&["man"]);
    assert!(man.contains(".TH weft 1") && man.contains("apply"), "{man}");
}

/// The long options `weft <command> --help` offers, but --help and --version.
fn offered(command: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(command)
        .arg("--help")
        .output()
        .expect("running weft --help");
    assert!(
        out.status.success(),
        "weft {command:?} --help: {}",
        out.status
    );
    let mut flags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        // An option's line (`  -o, --output <OUTPUT>`, `      --node <NODE>`); descriptions
        // are indented further and may wrap onto a line that starts with a dash.
        .filter(|l| {
            let indent = l.len() - l.trim_start().len();
            indent <= 6 && l.trim_start().starts_with('-')
        })
        .filter_map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.starts_with("--"))
                .map(str::to_string)
        })
        .filter(|w| w != "--help" && w != "--version")
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// Every command offers the options that mean something to it, and no other: a node name to a
/// command that names nothing by the configuration, a cgroup to one that attaches nothing, or a
/// state directory to one that neither records nor reads the daemon's status would be taken
/// silently and mean nothing.
#[test]
fn every_command_offers_only_the_options_it_uses() {
    const LOAD: &str = "--follow-outside-links";
    const JSON: &[&str] = &["--json", "--output"];
    let host = ["--bpffs", "--cgroup", "--node", "--state-dir"];
    let table: &[(&[&str], &[&str], &[&str])] = &[
        // command, what it offers besides JSON output, whether -o/--json too (empty: no)
        (&["validate"], &[LOAD, "--node"], JSON),
        (
            &["diff"],
            &[LOAD, host[0], host[1], host[2], host[3], "--verbose"],
            &["--output"],
        ),
        (
            &["apply"],
            &[
                LOAD,
                host[0],
                host[1],
                host[2],
                host[3],
                "--allow-empty",
                "--confirm-within",
                "--take-over-routes",
            ],
            &[],
        ),
        (&["confirm"], &["--state-dir"], &[]),
        (
            &["run"],
            &[
                LOAD,
                host[0],
                host[1],
                host[2],
                host[3],
                "--allow-empty",
                "--conntrack-gc-interval",
                "--debounce",
                "--max-endpoint-removal",
                "--metrics-listen",
                "--resync",
                "--take-over-routes",
            ],
            &[],
        ),
        (&["status"], &["--bpffs", "--state-dir"], &["--output"]),
        (&["gc"], &[LOAD, "--bpffs", "--node"], &["--output"]),
        (&["verifier"], &[], &["--output"]),
        (&["teardown"], &["--bpffs", "--state-dir"], &[]),
        (&["schemas"], &[], &[]),
        (&["completions"], &[], &[]),
        (&["man"], &[], &[]),
        (
            &["dump", "policy"],
            &[LOAD, "--bpffs", "--direction", "--node", "--state-dir"],
            JSON,
        ),
        (&["dump", "ipsets"], &[LOAD, "--bpffs", "--node"], JSON),
        (&["dump", "nat"], &[LOAD, "--bpffs", "--node"], JSON),
        (&["dump", "endpoints"], &["--bpffs"], JSON),
        (&["dump", "host-endpoints"], &["--bpffs"], JSON),
        (&["dump", "conntrack"], &["--bpffs"], JSON),
        (&["dump", "counters"], &["--bpffs"], JSON),
        (&["dump", "routes"], &["--bpffs"], JSON),
        (
            &["flows"],
            &[LOAD, "--bpffs", "--follow", "--node", "--state-dir"],
            JSON,
        ),
        (
            &["trace"],
            &[
                LOAD,
                "--bpffs",
                "--follow",
                "--iface",
                "--node",
                "--state-dir",
            ],
            JSON,
        ),
    ];
    let mut wrong = Vec::new();
    for (command, flags, output) in table {
        let mut want: Vec<String> = flags.iter().chain(*output).map(|f| f.to_string()).collect();
        want.sort();
        let got = offered(command);
        if got != want {
            let extra: Vec<&String> = got.iter().filter(|f| !want.contains(f)).collect();
            let missing: Vec<&String> = want.iter().filter(|f| !got.contains(f)).collect();
            wrong.push(format!(
                "weft {}: offers {extra:?} it must not, lacks {missing:?}",
                command.join(" ")
            ));
        }
    }
    // Every subcommand is in the table.
    let help = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--help")
        .output()
        .expect("weft --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line; its description may wrap onto lines indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{help}");
    for c in commands {
        if !table.iter().any(|(cmd, _, _)| cmd[0] == c) {
            wrong.push(format!("weft {c} is not in the table"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
