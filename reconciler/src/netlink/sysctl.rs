//! Per-device sysctls under /proc/sys/net. They apply to the network namespace of the process
//! that opens them, which is weft's own.

use std::path::PathBuf;

use super::NetlinkError;

/// `/proc/sys/net/<key with {dev} replaced>`.
pub fn path(key: &str, dev: &str) -> PathBuf {
    PathBuf::from("/proc/sys/net").join(key.replace("{dev}", dev))
}

pub fn read(key: &str, dev: &str) -> Result<String, NetlinkError> {
    let p = path(key, dev);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|source| NetlinkError::Sysctl {
            path: p.display().to_string(),
            source,
        })
}

pub fn write(key: &str, dev: &str, value: &str) -> Result<(), NetlinkError> {
    let p = path(key, dev);
    std::fs::write(&p, value).map_err(|source| NetlinkError::Sysctl {
        path: p.display().to_string(),
        source,
    })
}

/// The value a new interface would get: the namespace's `default` entry. Network namespaces
/// other than the first have no `neigh/default`; there the loopback device's value stands for
/// the namespace's defaults (nothing sets neighbour parameters on lo).
pub fn default_value(key: &str) -> Result<String, NetlinkError> {
    match read(key, "default") {
        Err(NetlinkError::Sysctl { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && key.starts_with("ipv4/neigh/") =>
        {
            read(key, "lo")
        }
        other => other,
    }
}
