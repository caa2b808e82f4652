//! [`Inbox`]: many in-process connections driven by one application thread.
//!
//! Each connection made with [`Inbox::connect`] is delivered through the inbox's single
//! queue ([`crate::inbox::InboxQueue`]): its hub appends one item per commit for all of
//! them, instead of one message per connection, and the thread wakes once. Processing
//! an item applies it to each named connection's cache and runs that connection's
//! callbacks, connection by connection, in the order the hub listed them; each
//! connection still sees its own messages in order, and each message is applied whole
//! before its callbacks run.
//!
//! The inbox knows its connections weakly: dropping every handle of a connection stops
//! its processing, as it does for a connection with its own queue.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Mutex, ReentrantMutex};

use super::link::Link;
use super::pool::RowPool;
use super::{ConnInner, ConnectOptions, DbConnection};
use crate::inbox::{InboxQueue, Item};
use crate::messages::{ConnectionId, ServerMessage};
use crate::system::Tidings;

struct Shared {
    tidings: Tidings,
    queue: Arc<InboxQueue>,
    conns: Mutex<HashMap<ConnectionId, Weak<ConnInner>>>,
    /// Held while items are processed: two threads draining one inbox at once would
    /// reorder a connection's messages. Reentrant, so a callback may drive the inbox.
    turn: ReentrantMutex<()>,
    /// The rows the inbox's connections share, kept across items: the snapshot of a
    /// query comes to each of its subscribers as an item of its own.
    pool: Mutex<RowPool>,
}

/// An application thread's inbox: connections made through it share one queue and are
/// processed together by [`Inbox::frame_tick`] and friends. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("id", &self.shared.queue.id())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    pub(crate) fn new(tidings: Tidings, queue: Arc<InboxQueue>) -> Self {
        Inbox {
            shared: Arc::new(Shared {
                tidings,
                queue,
                conns: Mutex::new(HashMap::new()),
                turn: ReentrantMutex::new(()),
                pool: Mutex::new(RowPool::default()),
            }),
        }
    }

    /// Connects an in-process client delivered through this inbox (a fresh identity, v2).
    pub fn connect(&self) -> DbConnection {
        self.connect_with(ConnectOptions::default())
    }

    /// Connects an in-process client delivered through this inbox. The inbox's bound
    /// applies, not `opts.queue_limits`.
    pub fn connect_with(&self, opts: ConnectOptions) -> DbConnection {
        let session = self
            .shared
            .tidings
            .open_session_on(opts, Some(self.shared.queue.clone()));
        let id = session.id();
        let conn = DbConnection::with_link_on(Link::InProcess(session), Some(self.clone()));
        // Only the connection's `InitialConnection` (which changes nothing) can reach the
        // inbox before this line.
        self.shared
            .conns
            .lock()
            .insert(id, Arc::downgrade(&conn.inner));
        conn
    }

    /// Connections delivered through this inbox and not disconnected.
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Items queued and not processed yet (a gauge).
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// When the server last appended to this inbox, if it ever did: with
    /// [`Instant::now`] at processing, how long the application thread let it wait.
    pub fn last_append(&self) -> Option<Instant> {
        self.shared.queue.last_append()
    }

    /// Processes every item already queued; returns how many connection messages that
    /// was (a commit item counts once per connection it reached).
    pub fn frame_tick(&self) -> usize {
        let _turn = self.shared.turn.lock();
        let mut n = 0;
        while let Some(item) = self.shared.queue.try_pop() {
            n += self.process(item);
        }
        n
    }

    /// Processes at most one item, waiting up to `timeout`; whether one was processed.
    pub fn advance_one_message(&self, timeout: Duration) -> bool {
        let _turn = self.shared.turn.lock();
        match self.shared.queue.pop_timeout(timeout) {
            Some(item) => {
                self.process(item);
                true
            }
            None => false,
        }
    }

    /// Processes items until `done(self)` holds or `timeout` passes; whether it held.
    pub fn run_until(&self, timeout: Duration, mut done: impl FnMut(&Inbox) -> bool) -> bool {
        super::drive_until(
            timeout,
            || done(self),
            |left| {
                self.advance_one_message(left);
                true
            },
        )
    }

    /// Stops delivering to `connection` (it disconnected).
    pub(crate) fn forget(&self, connection: ConnectionId) {
        self.shared.conns.lock().remove(&connection);
    }

    fn conn(&self, connection: ConnectionId) -> Option<DbConnection> {
        let inner = self.shared.conns.lock().get(&connection)?.upgrade()?;
        Some(DbConnection { inner })
    }

    fn process(&self, item: Item) -> usize {
        // Taken out for the item, so that a callback driving the inbox (the turn is
        // reentrant) finds an empty pool rather than a held lock; what that nested turn
        // shared is then dropped, which costs sharing, never correctness.
        let mut pool = std::mem::take(&mut *self.shared.pool.lock());
        let n = self.process_pooled(item, &mut pool);
        pool.trim();
        *self.shared.pool.lock() = pool;
        n
    }

    fn process_pooled(&self, item: Item, pool: &mut RowPool) -> usize {
        match item {
            Item::One(connection, envelope) => {
                let ends = matches!(&*envelope.message, ServerMessage::Disconnected { .. });
                if let Some(conn) = self.conn(connection) {
                    conn.process(envelope, &conn.inner.link.queue(), pool);
                }
                if ends {
                    self.forget(connection);
                }
                1
            }
            Item::Commit(batch) => {
                super::process::wait_durable(batch.durable.as_ref());
                // Upgraded under the lock, processed without it: a callback may connect
                // another client through this inbox.
                let conns: Vec<(DbConnection, u32)> = {
                    let map = self.shared.conns.lock();
                    batch
                        .targets
                        .iter()
                        .filter_map(|(c, m)| {
                            let inner = map.get(c)?.upgrade()?;
                            Some((DbConnection { inner }, *m))
                        })
                        .collect()
                };
                for (conn, m) in &conns {
                    if let Some(message) = batch.messages.get(*m as usize) {
                        conn.process_message(message, &conn.inner.link.queue(), pool);
                    }
                }
                conns.len()
            }
            Item::Dropped(reason) => {
                let conns: Vec<_> = self.shared.conns.lock().drain().collect();
                let message = ServerMessage::Disconnected {
                    reason,
                    going_away: false,
                };
                let mut n = 0;
                for (_, weak) in conns {
                    if let Some(inner) = weak.upgrade() {
                        let conn = DbConnection { inner };
                        conn.process_message(&message, &conn.inner.link.queue(), pool);
                        n += 1;
                    }
                }
                n
            }
        }
    }
}
