//! Long-lived TCP streams kept busy while a test disturbs weft (kill -9, program replacement,
//! a map resize): each stream sends numbered messages to an echo server and checks every echo.
//! A stream that is reset, closed, or stalls for longer than `STALL` is lost.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::daemon::wait_for;
use crate::Netns;

/// How long a stream may go without an echo before it counts as lost. TCP retransmits a lost
/// segment within about a second here; a stream that waits this long is broken.
pub const STALL: Duration = Duration::from_secs(10);

/// A TCP echo server in `ns` on `port`, one thread per connection.
pub fn tcp_echo_server(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind echo");
        tx.send(()).expect("ready");
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv().expect("echo server ready");
}

#[derive(Default)]
struct Stat {
    rounds: AtomicU64,
    error: Mutex<Option<String>>,
}

/// `n` streams from `client` to an echo server at `to:port`.
pub struct Streams {
    stop: Arc<AtomicBool>,
    stats: Vec<Arc<Stat>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// What became of the streams.
#[derive(Debug)]
pub struct Report {
    pub streams: usize,
    /// Streams that were reset, closed, got a wrong echo or stalled.
    pub lost: Vec<String>,
    /// Messages echoed, over all streams.
    pub rounds: u64,
}

impl Streams {
    /// Opens the streams (each must connect and echo once, or this panics) and keeps them
    /// busy on threads of their own.
    pub fn open(client: &Netns, to: Ipv4Addr, port: u16, n: usize) -> Streams {
        let stop = Arc::new(AtomicBool::new(false));
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let stat = Arc::new(Stat::default());
            let (st, stop) = (stat.clone(), stop.clone());
            let (ready_tx, ready_rx) = mpsc::channel();
            threads.push(client.spawn(move || {
                let mut s = match TcpStream::connect_timeout(&SocketAddr::from((to, port)), STALL) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("stream {i}: connect: {e}")));
                        return;
                    }
                };
                let _ = s.set_read_timeout(Some(STALL));
                let _ = s.set_nodelay(true);
                let mut seq: u64 = 0;
                let mut ready = Some(ready_tx);
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!("stream {i:04} message {seq:012}\n");
                    let mut back = vec![0u8; msg.len()];
                    let r = s
                        .write_all(msg.as_bytes())
                        .and_then(|()| s.read_exact(&mut back));
                    match r {
                        Ok(()) if back == msg.as_bytes() => {}
                        Ok(()) => {
                            *st.error.lock().unwrap() = Some(format!("stream {i}: wrong echo"));
                            return;
                        }
                        Err(e) => {
                            *st.error.lock().unwrap() = Some(format!(
                                "stream {i}: after {seq} messages: {e} ({:?})",
                                e.kind()
                            ));
                            if let Some(r) = ready.take() {
                                let _ = r.send(Err(format!("stream {i}: {e}")));
                            }
                            return;
                        }
                    }
                    seq += 1;
                    st.rounds.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    // Paced, so twenty streams do not eat the machine's two cores.
                    thread::sleep(Duration::from_millis(5));
                }
            }));
            match ready_rx.recv_timeout(STALL) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{e}"),
                Err(e) => panic!("stream {i} did not start: {e}"),
            }
            stats.push(stat);
        }
        Streams {
            stop,
            stats,
            threads,
        }
    }

    fn rounds(&self) -> Vec<u64> {
        self.stats
            .iter()
            .map(|s| s.rounds.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every stream has echoed `k` more messages than now (or has failed).
    pub fn wait_progress(&self, k: u64, within: Duration) {
        let base = self.rounds();
        wait_for("every stream to make progress", within, || {
            let now = self.rounds();
            let all = now
                .iter()
                .zip(&base)
                .zip(&self.stats)
                .all(|((n, b), st)| *n >= b + k || st.error.lock().unwrap().is_some());
            all.then_some(())
        });
    }

    /// Stops the streams and says how they fared.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let started = Instant::now();
        for t in self.threads {
            let _ = t.join();
        }
        debug_assert!(started.elapsed() < STALL * 2);
        Report {
            streams: self.stats.len(),
            lost: self
                .stats
                .iter()
                .filter_map(|s| s.error.lock().unwrap().clone())
                .collect(),
            rounds: self
                .stats
                .iter()
                .map(|s| s.rounds.load(Ordering::Relaxed))
                .sum(),
        }
    }
}
