//! Watches WebSocket sessions from outside their actors, and reclaims stuck ones.
//!
//! A session actor runs only when actix polls its connection, and actix stops polling a
//! connection whose peer stops reading (its write buffer is full). Such an actor can
//! neither notice that its hub dropped it for passing the queue bound, nor run its own
//! heartbeat. So this watchdog, on a thread of its own, checks every registered session
//! once per heartbeat interval:
//!
//! - a session its hub dropped (the queue holds the reason and has released its backlog)
//!   that is still registered one interval later, or
//! - a session silent for longer than the idle timeout plus two intervals (a polled actor
//!   closes itself by then, so only a stuck one is still here)
//!
//! has its socket shut down. That fails the connection's pending write, actix drops the
//! connection, the actor stops (its `stopped` runs on drop) and the manager forgets it.
//! The grace interval lets a session that is still polled close with its reason first.
//!
//! The socket handle is a duplicate of the connection's descriptor, taken when the
//! connection is accepted (`Server::bind` registers [`record_socket`]); shutting it down
//! acts on the shared socket. A peer that vanishes without a FIN is caught by TCP
//! keepalive and, on Linux, a TCP user timeout set on the same socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slotmap::{SlotMap, new_key_type};

use crate::metrics::Metrics;
use crate::queue::SessionQueue;

new_key_type! {
    /// A watched session.
    struct WatchKey;
}

/// A duplicate handle to an accepted connection's socket, kept in its connection data.
#[derive(Clone)]
pub struct ConnSocket(pub Arc<socket2::Socket>);

/// How long unacknowledged data may sit before the kernel gives up on a peer, and how
/// keepalive probes a silent one: a vanished peer is noticed within about a minute.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// `HttpServer::on_connect` hook: sets TCP_NODELAY, keepalive and (Linux) the TCP user
/// timeout on the accepted socket, and keeps a duplicate handle to it in its connection
/// data (for the watchdog).
pub fn record_socket(conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let fd = match tcp.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot duplicate a connection's socket; it will not be watched");
                return;
            }
        };
        let socket = socket2::Socket::from(fd);
        // Updates are small frames that must leave at once: Nagle's algorithm would hold
        // one back behind an unacknowledged ping until the peer's delayed ACK (measured
        // with `ws_fanout`: p99 at 1,000 clients 35 ms with it, 10.6 ms without).
        if let Err(e) = socket.set_tcp_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL);
        if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "TCP keepalive not set");
        }
        #[cfg(target_os = "linux")]
        if let Err(e) = socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
            tracing::debug!(error = %e, "TCP user timeout not set");
        }
        data.insert(ConnSocket(Arc::new(socket)));
    }
    #[cfg(not(unix))]
    {
        let _ = (
            conn,
            data,
            TCP_USER_TIMEOUT,
            KEEPALIVE_IDLE,
            KEEPALIVE_INTERVAL,
        );
    }
}

struct Watched {
    socket: Option<ConnSocket>,
    queue: Arc<SessionQueue>,
    last_heard: Arc<AtomicU64>,
    /// When this session was first seen needing to go.
    flagged: Option<Instant>,
    /// Already shut down (once is enough).
    shut: bool,
}

/// Bytes the watchdog holds per session: its slot (charged as after the slot map
/// doubled), the shared last-heard counter and the duplicate socket handle.
pub fn entry_bytes() -> usize {
    let arc = |inner: usize| 2 * std::mem::size_of::<usize>() + inner;
    // A slot is the value plus a version word.
    2 * (std::mem::size_of::<Watched>() + 8)
        + arc(std::mem::size_of::<AtomicU64>())
        + arc(std::mem::size_of::<socket2::Socket>())
}

struct Inner {
    sessions: Mutex<SlotMap<WatchKey, Watched>>,
    epoch: Instant,
    interval: Duration,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// The watchdog of one server. Cheap to clone; its thread ends with the last clone.
#[derive(Clone)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

/// A session's registration; dropping it (when the actor stops) unregisters.
pub struct Registration {
    key: WatchKey,
    inner: Weak<Inner>,
    last_heard: Arc<AtomicU64>,
    epoch: Instant,
}

impl Registration {
    /// Records that the peer was heard from just now (any frame, pongs included).
    pub fn heard(&self) {
        self.last_heard
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.sessions.lock().remove(self.key);
        }
    }
}

impl Watchdog {
    /// A watchdog checking every `interval` and reclaiming sessions silent past
    /// `idle_timeout`; starts its thread.
    pub fn start(interval: Duration, idle_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let inner = Arc::new(Inner {
            sessions: Mutex::new(SlotMap::with_key()),
            epoch: Instant::now(),
            interval,
            idle_timeout,
            metrics,
        });
        let weak = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("tidings-ws-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    inner.tick(Instant::now());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the WebSocket watchdog; stuck sessions will not be reclaimed");
        }
        Watchdog { inner }
    }

    /// Watches a session; keep the registration as long as the session lives.
    pub fn register(&self, socket: Option<ConnSocket>, queue: Arc<SessionQueue>) -> Registration {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        let last_heard = Arc::new(AtomicU64::new(now));
        let key = self.inner.sessions.lock().insert(Watched {
            socket,
            queue,
            last_heard: last_heard.clone(),
            flagged: None,
            shut: false,
        });
        Registration {
            key,
            inner: Arc::downgrade(&self.inner),
            last_heard,
            epoch: self.inner.epoch,
        }
    }

    /// Sessions watched now (a gauge).
    pub fn len(&self) -> usize {
        self.inner.sessions.lock().len()
    }

    /// Outbound queues of the watched sessions: (messages in all, bytes in all, longest
    /// queue in messages). For metrics scrapes: walks every session.
    pub fn queue_totals(&self) -> (usize, usize, usize) {
        let sessions = self.inner.sessions.lock();
        sessions.values().fold((0, 0, 0), |(m, b, max), w| {
            let len = w.queue.len();
            (m + len, b + w.queue.bytes(), max.max(len))
        })
    }

    /// Whether no session is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn tick(&self, now: Instant) {
        // A polled session's heartbeat starts within one interval of connecting and
        // checks once per interval, so it closes itself by idle + 2 intervals.
        let heard_limit = (self.idle_timeout + 2 * self.interval).as_millis() as u64;
        let now_ms = now.duration_since(self.epoch).as_millis() as u64;
        let mut sessions = self.sessions.lock();
        for (_, w) in sessions.iter_mut() {
            if w.shut {
                continue;
            }
            // Dropped by its hub, finished by shutdown, or closed: it should be gone.
            let dropped = w.queue.is_closed();
            let silent = now_ms.saturating_sub(w.last_heard.load(Ordering::Relaxed)) > heard_limit;
            if !dropped && !silent {
                w.flagged = None;
                continue;
            }
            let since = *w.flagged.get_or_insert(now);
            if now.duration_since(since) < self.interval {
                continue;
            }
            if silent && !dropped {
                // Its actor would have closed it at the idle timeout had it been polled.
                w.queue.close();
                self.metrics.count_drop("idle (no frames, no pongs)");
            }
            tracing::info!(
                dropped,
                silent,
                "reclaiming a WebSocket session whose actor is not being polled"
            );
            if let Some(ConnSocket(s)) = &w.socket
                && let Err(e) = s.shutdown(std::net::Shutdown::Both)
            {
                tracing::debug!(error = %e, "socket shutdown failed (already closed?)");
            }
            w.shut = true;
        }
    }
}
