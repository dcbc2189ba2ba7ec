//! `weft apply --confirm-within`: without `weft confirm` in time the previous state comes back,
//! and a connection the bad policy cut works again; with it, the new state stays.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use weft_vm_tests::daemon::{wait_for, DEADLINE};
use weft_vm_tests::streams::{tcp_echo_server, Streams, STALL};
use weft_vm_tests::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const PORT: u16 = 7000;

/// b lets in nobody at all: a policy that would cut the operator (a) off.
const LOCKOUT: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: lockout}
spec:
  selector: app == 'b'
  types: [Ingress]
"#;

fn bed(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.workload("calia", A);
    bed.workload("calib", B);
    bed.write(
        "a.yaml",
        &bed.wep_yaml(
            0,
            "a",
            "default",
            &[("app", "a")],
            &["projectcalico-default-allow"],
        ),
    );
    bed.write(
        "b.yaml",
        &bed.wep_yaml(
            1,
            "b",
            "default",
            &[("app", "b")],
            &["projectcalico-default-allow"],
        ),
    );
    tcp_echo_server(&bed.w(1).ns, PORT);
    tcp_server(&bed.w(1).ns, 80);
    Some(bed)
}

/// Starts `weft apply <config> --confirm-within <within>` in the background.
fn apply_confirm_within(bed: &Bed, within: &str) -> Child {
    Command::new("nsenter")
        .arg(format!("--net={}", bed.host.path().display()))
        .arg(Bed::weft_bin())
        .arg("apply")
        .arg(&bed.config)
        .args(["--node", &bed.node, "--bpffs"])
        .arg(&bed.bpffs)
        .arg("--state-dir")
        .arg(bed.state_dir())
        .args(["--confirm-within", within])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft apply --confirm-within")
}

/// Waits until the apply waits for its confirmation.
fn pending(bed: &Bed) {
    let path = bed.state_dir().join("confirm.pending");
    wait_for("the apply to wait for confirmation", DEADLINE, || {
        path.exists().then_some(())
    });
}

#[test]
fn an_unconfirmed_apply_rolls_back_and_the_cut_connection_works_again() {
    let Some(bed) = bed("an_unconfirmed_apply_rolls_back_and_the_cut_connection_works_again")
    else {
        return;
    };
    bed.apply();
    let stream = Streams::open(&bed.w(0).ns, B, PORT, 1);
    stream.wait_progress(3, STALL);

    bed.write("lockout.yaml", LOCKOUT);
    let child = apply_confirm_within(&bed, "3s");
    pending(&bed);
    // The policy is live: nothing reaches b, not even the established connection.
    assert!(!tcp_ok(&bed.w(0).ns, B, 80), "the lockout is enforced");
    assert!(
        (bed.diff().0) == 0,
        "the files' state (with the lockout) is live while the apply waits"
    );

    let out = child.wait_with_output().expect("apply exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not confirmed: rolled back\n{err}"
    );
    assert!(
        err.contains("rolled back: the previous state is live again"),
        "{err}"
    );
    // The lockout file is still there: the state is the one from before the apply.
    let (code, diff) = bed.diff();
    assert_eq!(code, 1, "live differs from the files again:\n{diff}");
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "new connections get in again");
    // The connection the lockout cut carries on: its echo arrives, nothing was reset.
    stream.wait_progress(3, STALL);
    let r = stream.stop();
    assert!(r.lost.is_empty(), "{:?}", r.lost);
    assert!(!bed.state_dir().join("confirm.pending").exists());
}

#[test]
fn a_confirmed_apply_stays() {
    let Some(bed) = bed("a_confirmed_apply_stays") else {
        return;
    };
    bed.apply();
    bed.write("lockout.yaml", LOCKOUT);
    let child = apply_confirm_within(&bed, "60s");
    pending(&bed);
    let state_dir = bed.state_dir();
    let out = bed.weft(&["confirm", "--state-dir", state_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = child.wait_with_output().expect("apply exits");
    assert!(
        out.status.success(),
        "confirmed: exit 0\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(bed.diff().0, 0, "the new state stays");
    assert!(!tcp_ok(&bed.w(0).ns, B, 80), "the lockout stays");
    let again = bed.weft(&["confirm", "--state-dir", state_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "nothing is left to confirm");
}

#[test]
fn ctrl_c_rolls_back_at_once_and_a_hangup_does_not() {
    let Some(bed) = bed("ctrl_c_rolls_back_at_once_and_a_hangup_does_not") else {
        return;
    };
    bed.apply();
    bed.write("lockout.yaml", LOCKOUT);
    let child = apply_confirm_within(&bed, "1h");
    pending(&bed);
    let pid = child.id() as i32;
    // The operator's terminal goes away: the apply waits on.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(
        !tcp_ok(&bed.w(0).ns, B, 80),
        "still locked out after the hangup"
    );
    assert!(
        bed.state_dir().join("confirm.pending").exists(),
        "still waiting"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().expect("apply exits");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tcp_ok(&bed.w(0).ns, B, 80), "rolled back");
}
