//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), without libsystemd: one
//! datagram to the socket `$NOTIFY_SOCKET` names, sent once the first reconcile is done, so
//! that units ordered after weft start on a host whose policy is in force.

use std::os::unix::net::UnixDatagram;

/// Tells the service manager that the daemon is ready, with `status` for `systemctl status`.
/// Nothing when not started by one (no `$NOTIFY_SOCKET`); a failure to tell is logged, not
/// fatal.
pub fn ready(status: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, &format!("READY=1\nSTATUS={status}\n")) {
        tracing::warn!("telling the service manager weft is ready: {e}");
    }
}

fn send(path: &std::ffi::OsStr, message: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A name starting with '@' is in the abstract namespace.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        sock.send_to(message.as_bytes(), std::path::Path::new(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_socket_notify_socket_names() {
        let dir = std::env::temp_dir().join(format!("weft-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), "READY=1\nSTATUS=converged\n").expect("send");
        let mut buf = [0u8; 128];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=converged\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
