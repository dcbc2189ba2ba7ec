//! What an operator can do by accident, and weft must not let happen: two writers on one host
//! (a daemon started twice, an apply while the daemon keeps the host).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_vm_tests::daemon::last_result;
use weft_vm_tests::*;

#[test]
fn one_writer_per_host_and_the_second_is_told_who_holds_it() {
    let Some(mut bed) = Bed::new("one_writer_per_host_and_the_second_is_told_who_holds_it") else {
        return;
    };
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a"), ("app", "b")]);
    let mut d = bed.daemon(&["--resync", "1h"]);
    let s = d.started();
    assert_eq!(last_result(&s), "converged", "{s}");
    let config = bed.config.to_str().expect("utf-8 path").to_string();
    let state_dir = bed.state_dir();
    let state = state_dir.to_str().expect("utf-8 path");
    let bpffs = bed.bpffs.to_str().expect("utf-8 path").to_string();

    // An apply is refused, naming the daemon and the directory it converges to.
    let out = bed.weft(&["apply", &config]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("pid {} (", d.pid()))
            && said.contains(&format!("converged to {config}"))
            && said.contains("change the files there"),
        "{said}"
    );
    assert!(!said.contains("] "), "nothing ran: {said}");

    // A second daemon on the same pin root and state directory stops at once.
    let started = Instant::now();
    let mut second = bed
        .weft_command(&["run", &config, "--node", &bed.node, "--bpffs", &bpffs])
        .args(["--state-dir", state])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a second weft run");
    let status = loop {
        if let Some(st) = second.try_wait().expect("waiting") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("a second weft run kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = output_text(&second.wait_with_output().expect("its output"));
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("pid {}", d.pid())), "{said}");

    // Teardown and a conntrack sweep by hand are writers too; reading needs no lock.
    let out = bed.weft(&["teardown"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let out = bed.weft(&["gc", "--bpffs", &bpffs]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let (code, diff) = bed.diff();
    assert_eq!(code, 0, "{diff}");

    // The first daemon is still the one the status names, running and converged.
    let out = bed.weft(&["status", "--state-dir", state, "--bpffs", &bpffs]);
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&d.pid().to_string()), "{said}");
    assert_eq!(
        d.status().map(|s| last_result(&s)).as_deref(),
        Some("converged")
    );

    // Once it has stopped, the host is free.
    d.term();
    bed.apply();
}

fn weft_routes(bed: &Bed) -> String {
    String::from_utf8_lossy(&bed.host.ip(&["route", "show", "proto", "87"]).stdout).into_owned()
}

#[test]
fn an_empty_directory_removes_nothing_unless_it_is_meant() {
    let Some(mut bed) = Bed::new("an_empty_directory_removes_nothing_unless_it_is_meant") else {
        return;
    };
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a"), ("app", "b")]);
    bed.apply();
    let routes = weft_routes(&bed);
    assert!(
        routes.contains("10.65.0.2") && routes.contains("10.65.0.3"),
        "{routes}"
    );

    // A checkout that failed: the directory is there, its files are not.
    let empty = bed.config.with_extension("empty");
    std::fs::create_dir_all(&empty).expect("an empty directory");
    let empty_dir = empty.to_str().expect("utf-8 path");
    let (code, said) = {
        let out = bed.weft(&["diff", empty_dir]);
        (out.status.code(), output_text(&out))
    };
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("weft apply would refuse this"), "{said}");
    let out = bed.weft(&["apply", empty_dir]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("refusing to remove every endpoint")
            && said.contains("2 endpoint(s) (calia, calib)")
            && said.contains("--allow-empty"),
        "it says what would have gone: {said}"
    );
    assert_eq!(weft_routes(&bed), routes, "nothing was removed");

    // Said so, it is done.
    let out = bed.weft(&["apply", empty_dir, "--allow-empty"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(weft_routes(&bed).trim(), "", "everything of weft's is gone");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn the_daemon_keeps_its_endpoints_when_most_of_them_vanish_from_the_files() {
    let Some(mut bed) =
        Bed::new("the_daemon_keeps_its_endpoints_when_most_of_them_vanish_from_the_files")
    else {
        return;
    };
    bed.shop(
        SHOP_NAMESPACE,
        "",
        &[("app", "a"), ("app", "b"), ("app", "c"), ("app", "d")],
    );
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "50ms"]);
    d.started();
    let routes = weft_routes(&bed);

    // Three of four files go (a half-written checkout): more than half the endpoints.
    for n in ["b", "c", "d"] {
        bed.remove(&format!("{n}.yaml"));
    }
    let s = d.wait("the change refused", |s| last_result(s) == "failed");
    let error = s["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("refusing to remove 3 of the 4 endpoints")
            && error.contains("calib, calic, calid")
            && error.contains("--max-endpoint-removal"),
        "{s}"
    );
    assert_eq!(weft_routes(&bed), routes, "the live state stays");

    // Every file gone: still nothing removed.
    bed.remove("a.yaml");
    let s = d.wait("the empty directory refused", |s| {
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refusing to remove every endpoint"))
    });
    assert_eq!(last_result(&s), "failed", "{s}");
    assert_eq!(weft_routes(&bed), routes, "the live state stays");

    // One endpoint going is an ordinary change.
    for n in ["a", "b", "c"] {
        let i = (n.as_bytes()[0] - b'a') as usize;
        let yaml = bed.wep_yaml(i, n, "shop", &[("app", n)], &["kns.shop"]);
        bed.write(&format!("{n}.yaml"), &yaml);
    }
    let s = d.wait("converged without d", |s| last_result(s) == "converged");
    let now = weft_routes(&bed);
    assert!(
        !now.contains("10.65.0.5") && now.contains("10.65.0.4"),
        "{s}\n{now}"
    );
    d.term();
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_once_the_first_reconcile_is_done() {
    let Some(mut bed) =
        Bed::new("the_daemon_tells_systemd_it_is_ready_once_the_first_reconcile_is_done")
    else {
        return;
    };
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a")]);
    let socket_path = bed.config.with_extension("notify");
    let _ = std::fs::remove_file(&socket_path);
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let state_dir = bed.state_dir();
    let mut daemon = bed
        .weft_command(&["run", bed.config.to_str().expect("utf-8 path")])
        .args(["--node", &bed.node, "--bpffs"])
        .arg(&bed.bpffs)
        .arg("--state-dir")
        .arg(&state_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft run");
    let mut buf = [0u8; 256];
    let got = socket.recv(&mut buf);
    // The first reconcile is done by then: its record is in the status.
    let status = std::fs::read(state_dir.join("status.json")).unwrap_or_default();
    // SAFETY: our child, not yet waited for.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let _ = daemon.wait();
    let n = got.expect("READY=1 within 30 s");
    let said = String::from_utf8_lossy(&buf[..n]);
    assert!(
        said.starts_with("READY=1\n") && said.contains("STATUS=converged"),
        "{said}"
    );
    let status: serde_json::Value = serde_json::from_slice(&status).expect("status.json");
    assert_eq!(last_result(&status), "converged", "{status}");
    let _ = std::fs::remove_file(&socket_path);
}

#[test]
fn status_names_the_commit_and_fails_while_the_files_do_not_validate() {
    let Some(mut bed) =
        Bed::new("status_names_the_commit_and_fails_while_the_files_do_not_validate")
    else {
        return;
    };
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a")]);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&bed.config)
            .args(["-c", "user.name=weft", "-c", "user.email=weft@localhost"])
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "shop"]);
    let sha = git(&["rev-parse", "HEAD"]);
    let mut d = bed.daemon(&["--resync", "1h", "--debounce", "50ms"]);
    d.started();
    let state = bed.state_dir();
    let status = || {
        bed.weft(&[
            "status",
            "--state-dir",
            state.to_str().unwrap(),
            "--bpffs",
            bed.bpffs.to_str().unwrap(),
        ])
    };
    let out = status();
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("configuration: valid (git {} (main))", &sha[..12])),
        "{said}"
    );
    // Without DIR, `weft dump policy` reads the daemon's directory.
    let out = bed.weft(&[
        "dump",
        "policy",
        "shop/a",
        "--node",
        &bed.node,
        "--state-dir",
        state.to_str().unwrap(),
        "--bpffs",
        bed.bpffs.to_str().unwrap(),
    ]);
    let table = output_text(&out);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("Profile kns.shop"),
        "the daemon's files named the rules: {table}"
    );

    // A broken file: the last good configuration stays in force, and status says so by its
    // exit code too.
    bed.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: [}\n",
    );
    d.wait("the broken file read", |s| s["config"]["valid"] == false);
    let out = status();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("configuration: INVALID"));
    d.term();
}
