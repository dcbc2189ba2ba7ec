//! Interface notifications: `ip monitor link`. The daemon converges when interfaces appear or
//! go, so a workload endpoint whose interface is created after its file is programmed at once,
//! not at the next resync.

use std::io;

use futures_util::StreamExt;

/// Calls `wake` for every link notification of the caller's network namespace until the
/// connection closes. Must be called inside a tokio runtime; the socket stays in the namespace
/// of the calling thread.
pub fn watch_links(mut wake: impl FnMut() + Send + 'static) -> io::Result<()> {
    let (conn, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        // The connection ends when its last handle goes: keep it, though it sends nothing.
        let _handle = handle;
        // Each message wakes the reconcile; what it says does not matter (level-triggered).
        while let Some((m, _)) = messages.next().await {
            tracing::trace!("link event: {m:?}");
            wake();
        }
        tracing::warn!("interface notifications ended");
    });
    Ok(())
}
