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
