//! The state directory is root's alone, whatever the umask: another user cannot answer
//! `weft confirm`, cannot have root write through a symlink they planted, and their
//! `weft status` says it cannot tell rather than that a running daemon is not running. The
//! other user is a real one (nobody, through setpriv), and root runs under umask 000, where
//! what it creates is open to all unless it says otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use weft_vm_tests::daemon::{wait_for, with_umask, DEADLINE};
use weft_vm_tests::*;

const NOBODY: &str = "65534";

/// Runs `cmd` as nobody (uid and gid 65534, no supplementary groups).
fn as_nobody(cmd: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("setpriv {cmd:?}: {e}"))
}

/// Whether setpriv can run things as nobody here; says why not otherwise (a failure under
/// WEFT_REQUIRE_KERNEL=1).
fn nobody_available(test: &str) -> bool {
    let ok = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !kernel::required(),
            "{test}: WEFT_REQUIRE_KERNEL=1 but setpriv cannot run a command as nobody"
        );
        eprintln!("SKIPPED {test}: setpriv cannot run a command as nobody");
    }
    ok
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// A bed with one workload, and its state directory as a weft before this one left it under
/// umask 000: open to all, with nobody's symlink at `planted` pointing at a file of root's.
/// Returns the bed and that file.
fn open_state_dir(test: &str, planted: &str) -> Option<(Bed, PathBuf)> {
    let mut bed = Bed::new(test)?;
    if !nobody_available(test) {
        return None;
    }
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a")]);
    let state = bed.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = bed.config.join("victim");
    std::fs::write(&victim, "root's file\n").unwrap();
    let link = state.join(planted);
    let out = as_nobody(&["ln", "-s", victim.to_str().unwrap(), link.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "planting the symlink: {}",
        output_text(&out)
    );
    Some((bed, victim))
}

#[test]
fn a_daemon_under_umask_000_keeps_its_state_private_and_nobodys_status_cannot_tell() {
    let test = "a_daemon_under_umask_000_keeps_its_state_private_and_nobodys_status_cannot_tell";
    let Some((bed, victim)) = open_state_dir(test, ".status.json.tmp") else {
        return;
    };
    let mut d = bed.daemon_umask(0, &[]);
    d.started();
    let state = bed.state_dir();
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's file\n",
        "root wrote the status through nobody's symlink"
    );
    assert_eq!(mode(&state), 0o700, "the open state directory is closed");
    assert_eq!(mode(&state.join("status.json")), 0o600);

    let bin = Bed::weft_bin();
    let status = |dir: &Path| {
        as_nobody(&[
            bin.to_str().unwrap(),
            "status",
            "--state-dir",
            dir.to_str().unwrap(),
            "--bpffs",
            bed.bpffs.to_str().unwrap(),
        ])
    };
    let out = status(&state);
    let said = output_text(&out);
    assert!(
        said.contains("daemon: cannot tell: permission denied"),
        "{said}"
    );
    assert!(!said.contains("NOT running"), "{said}");
    assert_eq!(out.status.code(), Some(2), "cannot tell: exit 2\n{said}");

    // Where nobody may read the status (a copy), a daemon of root's is running: kill(pid, 0)
    // answers EPERM for it, not ESRCH.
    let open = bed.config.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(state.join("status.json"), open.join("status.json")).unwrap();
    std::fs::set_permissions(
        open.join("status.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = status(&open);
    let said = output_text(&out);
    let _ = std::fs::remove_dir_all(&open);
    let _ = std::fs::remove_file(&victim);
    assert!(
        said.contains(&format!("daemon: running (pid {})", d.pid())),
        "{said}"
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
}

#[test]
fn only_root_may_confirm_and_a_planted_symlink_is_not_written_through() {
    let test = "only_root_may_confirm_and_a_planted_symlink_is_not_written_through";
    let Some((bed, victim)) = open_state_dir(test, ".confirm.pending.tmp") else {
        return;
    };
    bed.apply();
    bed.write(
        "deny.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny}\nspec:\n  selector: app == 'a'\n  types: [Ingress]\n",
    );
    let state = bed.state_dir();
    let mut cmd = Command::new("nsenter");
    with_umask(&mut cmd, 0);
    let child = cmd
        .arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .arg("apply")
        .arg(&bed.config)
        .args(["--node", &bed.node, "--bpffs"])
        .arg(&bed.bpffs)
        .arg("--state-dir")
        .arg(&state)
        .args(["--confirm-within", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft apply --confirm-within");
    let pending = state.join("confirm.pending");
    wait_for("the apply to wait for confirmation", DEADLINE, || {
        pending.exists().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's file\n",
        "root wrote the pending confirmation through nobody's symlink"
    );
    assert_eq!(mode(&state), 0o700, "the open state directory is closed");
    assert_eq!(mode(&pending), 0o600);

    let bin = Bed::weft_bin();
    let confirm = |run: &dyn Fn(&[&str]) -> Output| {
        run(&[
            bin.to_str().unwrap(),
            "confirm",
            "--state-dir",
            state.to_str().unwrap(),
        ])
    };
    let out = confirm(&as_nobody);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "nobody may not confirm\n{said}");
    assert!(said.contains("only the user who runs"), "{said}");
    assert!(pending.exists(), "the apply still waits");

    let out = confirm(&|args: &[&str]| sh(args));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = child.wait_with_output().expect("apply exits");
    let _ = std::fs::remove_file(&victim);
    assert!(
        out.status.success(),
        "confirmed: exit 0\n{}",
        output_text(&out)
    );
}
