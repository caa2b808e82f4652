//! Protocol messages between clients and the server, as Rust values.
//!
//! In process these values travel as they are; the WebSocket transport encodes the same
//! values. Rows of one query in one commit are built once and shared (`Arc`) by every
//! client subscribed to that query; a client's message only wraps them.
//!
//! v2 is the default: every request carries a `request_id` that its response echoes,
//! subscriptions are additive query sets with client-chosen ids, and a reducer's caller
//! gets its own result as a [`ServerMessage::ReducerResult`] with its update folded in, while everyone
//! else gets a bare [`TransactionUpdate`]. v1 is kept for old clients (see
//! [`ClientMessage::V1Subscribe`]).

use std::sync::Arc;

use tidings_engine::commitlog::Durable;
use tidings_engine::{Identity, Row, Timestamp, TxOffset};

/// Echoed by the response to a request.
pub type RequestId = u32;
/// A client-chosen id of a query set.
pub type QuerySetId = u32;

/// The query set id that v1's legacy `Subscribe` (atomic replace) uses.
pub const V1_LEGACY_QUERY_SET: QuerySetId = u32::MAX;

/// A connection, unique for the server's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// The protocol version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Legacy: reducer events in transaction updates, no event tables.
    V1,
    /// Current: request ids everywhere, reducer results only to the caller.
    #[default]
    V2,
}

/// Exactly what a v1 client is told when a subscription would return an event table.
pub const V1_EVENT_TABLE_ERROR: &str = "Subscribing to event tables requires WebSocket v2. Please upgrade your client SDK and regenerate your module bindings.";

/// A one-off query's rows per table, or why it failed.
pub type OneOffRows = Result<Vec<(Arc<str>, Vec<Row>)>, String>;

/// What the caller of a v1 reducer call is told (v1 `CallReducer.flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CallReducerFlags {
    /// `0`: the caller always gets a `TransactionUpdate` with its full reducer event.
    #[default]
    FullUpdate,
    /// `1`: on success the caller is treated like any other client (an update, with the
    /// reducer event emptied, only when its subscriptions changed); a failure is still
    /// reported to it in full.
    NoSuccessNotify,
}

/// A request from a client.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// v2: adds a query set.
    Subscribe {
        /// Echoed.
        request_id: RequestId,
        /// The new set's id; must not be in use.
        query_set_id: QuerySetId,
        /// Subscription SQL, one query per entry.
        queries: Vec<String>,
    },
    /// v2: removes a query set.
    Unsubscribe {
        /// Echoed.
        request_id: RequestId,
        /// The set to end.
        query_set_id: QuerySetId,
        /// Whether to send the rows the set held (so the client can drop them).
        send_dropped_rows: bool,
    },
    /// Runs a reducer.
    CallReducer {
        /// Echoed by the reducer result.
        request_id: RequestId,
        /// Reducer name.
        reducer: String,
        /// Arguments as a MessagePack array (positional).
        args: Vec<u8>,
    },
    /// v1: runs a reducer; `flags` may spare the caller its success notice.
    V1CallReducer {
        /// Echoed in the caller's reducer event.
        request_id: RequestId,
        /// Reducer name.
        reducer: String,
        /// Arguments as a MessagePack array (positional).
        args: Vec<u8>,
        /// Whether the caller hears of a success.
        flags: CallReducerFlags,
    },
    /// Evaluates a query once against committed state.
    OneOffQuery {
        /// Echoed.
        request_id: RequestId,
        /// The SELECT.
        query: String,
    },
    /// v1 legacy: atomically replaces every subscription with `queries`.
    V1Subscribe {
        /// Echoed.
        request_id: RequestId,
        /// The queries.
        queries: Vec<String>,
    },
    /// v1: adds one query under `query_id`.
    V1SubscribeSingle {
        /// Echoed.
        request_id: RequestId,
        /// Client-chosen id.
        query_id: QuerySetId,
        /// The query.
        query: String,
    },
    /// v1: adds several queries atomically under `query_id`.
    V1SubscribeMulti {
        /// Echoed.
        request_id: RequestId,
        /// Client-chosen id.
        query_id: QuerySetId,
        /// The queries.
        queries: Vec<String>,
    },
    /// v1: removes the queries under `query_id`.
    V1Unsubscribe {
        /// Echoed.
        request_id: RequestId,
        /// The id.
        query_id: QuerySetId,
    },
}

impl ClientMessage {
    /// The request id of the message.
    pub fn request_id(&self) -> RequestId {
        match self {
            ClientMessage::Subscribe { request_id, .. }
            | ClientMessage::Unsubscribe { request_id, .. }
            | ClientMessage::CallReducer { request_id, .. }
            | ClientMessage::V1CallReducer { request_id, .. }
            | ClientMessage::OneOffQuery { request_id, .. }
            | ClientMessage::V1Subscribe { request_id, .. }
            | ClientMessage::V1SubscribeSingle { request_id, .. }
            | ClientMessage::V1SubscribeMulti { request_id, .. }
            | ClientMessage::V1Unsubscribe { request_id, .. } => *request_id,
        }
    }

    /// The request id of the message, to change (a re-sent request takes a fresh one).
    pub fn request_id_mut(&mut self) -> &mut RequestId {
        match self {
            ClientMessage::Subscribe { request_id, .. }
            | ClientMessage::Unsubscribe { request_id, .. }
            | ClientMessage::CallReducer { request_id, .. }
            | ClientMessage::V1CallReducer { request_id, .. }
            | ClientMessage::OneOffQuery { request_id, .. }
            | ClientMessage::V1Subscribe { request_id, .. }
            | ClientMessage::V1SubscribeSingle { request_id, .. }
            | ClientMessage::V1SubscribeMulti { request_id, .. }
            | ClientMessage::V1Unsubscribe { request_id, .. } => request_id,
        }
    }
}

/// One table's rows in an update.
#[derive(Clone, Debug, PartialEq)]
pub enum TableRows {
    /// A persistent table's net change (or initial rows as inserts).
    Persistent {
        /// Rows entering, with multiplicity.
        inserts: Vec<Row>,
        /// Rows leaving, with multiplicity.
        deletes: Vec<Row>,
    },
    /// An event table's rows of one commit.
    Event {
        /// The events, in commit order.
        events: Vec<Row>,
    },
}

impl TableRows {
    /// Rows carried, all kinds together.
    pub fn len(&self) -> usize {
        match self {
            TableRows::Persistent { inserts, deletes } => inserts.len() + deletes.len(),
            TableRows::Event { events } => events.len(),
        }
    }

    /// Whether no row is carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A rough byte size, for queue meters.
    pub fn approx_bytes(&self) -> usize {
        let rows = |v: &[Row]| v.iter().map(|r| 16 + r.len() * 24).sum::<usize>();
        match self {
            TableRows::Persistent { inserts, deletes } => rows(inserts) + rows(deletes),
            TableRows::Event { events } => rows(events),
        }
    }
}

/// One table's shared rows, named.
#[derive(Clone, Debug)]
pub struct TableUpdate {
    /// The table.
    pub table: Arc<str>,
    /// Its rows, shared by every client of the same query.
    pub rows: Arc<TableRows>,
    /// The rows' wire encodings, made on first use and shared like the rows.
    pub wire: Arc<WireCache>,
    /// The rows' approximate size, computed once: queue meters charge it to every
    /// session the update goes to, and must not walk the rows per session.
    pub bytes: usize,
}

impl TableUpdate {
    /// Named rows with an empty encoding cache.
    pub fn new(table: Arc<str>, rows: TableRows) -> Self {
        TableUpdate {
            table,
            bytes: rows.approx_bytes(),
            rows: Arc::new(rows),
            wire: Arc::default(),
        }
    }
}

impl PartialEq for TableUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table && self.rows == other.rows
    }
}

/// A pair of encoded row lists: (inserts or events, deletes).
pub type EncodedLists = (Arc<[u8]>, Arc<[u8]>);

/// A pair of JSON row lists: (inserts or events, deletes).
pub type JsonLists = (
    Box<serde_json::value::RawValue>,
    Box<serde_json::value::RawValue>,
);

/// Encoded row lists of one [`TableUpdate`], per encoding and compression, each made at
/// most once however many clients receive them.
#[derive(Debug, Default)]
pub struct WireCache {
    plain: std::sync::OnceLock<EncodedLists>,
    gzip: std::sync::OnceLock<EncodedLists>,
    json: std::sync::OnceLock<JsonLists>,
}

impl WireCache {
    /// The encoded (inserts or events, deletes) row lists of `rows`.
    pub fn persistent(
        &self,
        rows: &TableRows,
        compression: crate::wire::v2::Compression,
    ) -> &EncodedLists {
        use crate::wire::v2::{Compression, row_list_bytes};
        let cell = match compression {
            Compression::None => &self.plain,
            Compression::Gzip => &self.gzip,
        };
        cell.get_or_init(|| match rows {
            TableRows::Persistent { inserts, deletes } => (
                row_list_bytes(inserts, compression).into(),
                row_list_bytes(deletes, compression).into(),
            ),
            TableRows::Event { events } => (
                row_list_bytes(events, compression).into(),
                Arc::from(&[0u8][..]),
            ),
        })
    }

    /// The (inserts or events, deletes) row lists of `rows` in v1 JSON.
    pub fn json(&self, rows: &TableRows) -> &JsonLists {
        use crate::wire::json::rows_json;
        self.json.get_or_init(|| match rows {
            TableRows::Persistent { inserts, deletes } => (rows_json(inserts), rows_json(deletes)),
            TableRows::Event { events } => (rows_json(events), rows_json(&[])),
        })
    }
}

/// The updates of one query set in one commit.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySetUpdate {
    /// The set.
    pub query_set_id: QuerySetId,
    /// Per query of the set that changed: its table's rows.
    pub tables: Vec<TableUpdate>,
}

/// The reducer event a v1 caller sees in its transaction update.
#[derive(Clone, Debug, PartialEq)]
pub struct ReducerEvent {
    /// The call's request id (0 for other clients).
    pub request_id: RequestId,
    /// Reducer name (empty for other clients).
    pub reducer: String,
    /// Arguments (empty for other clients).
    pub args: Vec<u8>,
    /// The caller (zero for other clients).
    pub caller: Identity,
    /// The outcome (for other clients a success carries no return value).
    pub status: ReducerStatus,
}

/// What a reducer did, without its update.
#[derive(Clone, Debug, PartialEq)]
pub enum ReducerStatus {
    /// Committed; the MessagePack-encoded return value.
    Committed(Vec<u8>),
    /// The reducer returned an error; nothing changed.
    Failed(String),
    /// The reducer panicked or the engine failed; nothing changed.
    InternalError(String),
}

/// A commit's changes for one client.
#[derive(Clone, Debug, PartialEq)]
pub struct TransactionUpdate {
    /// The commit offset.
    pub tx_offset: TxOffset,
    /// Commit time.
    pub timestamp: Timestamp,
    /// Per query set.
    pub query_sets: Vec<QuerySetUpdate>,
    /// v1 only: the reducer event (full for the caller, emptied for others).
    pub reducer_event: Option<ReducerEvent>,
}

/// A reducer call's outcome, sent to its caller only.
#[derive(Clone, Debug, PartialEq)]
pub enum ReducerOutcome {
    /// Committed (or changed nothing); the value and the caller's own update.
    Ok {
        /// MessagePack-encoded return value.
        value: Vec<u8>,
        /// The caller's share of the commit (empty when nothing it watches changed).
        update: TransactionUpdate,
    },
    /// The reducer returned an error; nothing changed.
    Err(String),
    /// The reducer panicked, the engine refused the commit, or the call was malformed.
    InternalError(String),
}

/// A message from the server to one client.
#[derive(Clone, Debug)]
pub enum ServerMessage {
    /// First message of a connection.
    InitialConnection {
        /// The client's identity.
        identity: Identity,
        /// The connection's id.
        connection_id: ConnectionId,
        /// A token that restores the identity on reconnect (WebSocket only).
        token: Option<String>,
    },
    /// A query set is in force from `tx_offset` on; its initial rows.
    SubscribeApplied {
        /// Echoed.
        request_id: RequestId,
        /// The set.
        query_set_id: QuerySetId,
        /// The snapshot's offset: updates follow for every commit after it.
        tx_offset: TxOffset,
        /// Initial rows per query.
        tables: Vec<TableUpdate>,
    },
    /// A query set ended at the client's request.
    UnsubscribeApplied {
        /// Echoed.
        request_id: RequestId,
        /// The set.
        query_set_id: QuerySetId,
        /// The offset at which it ended.
        tx_offset: TxOffset,
        /// The rows the set held, when asked for.
        tables: Option<Vec<TableUpdate>>,
    },
    /// A request failed or a query set was ended by the server; other sets are unaffected.
    SubscriptionError {
        /// The request, when the error answers one.
        request_id: Option<RequestId>,
        /// The query set, when one is concerned.
        query_set_id: Option<QuerySetId>,
        /// What went wrong.
        error: String,
    },
    /// A commit's changes.
    TransactionUpdate(TransactionUpdate),
    /// A one-off query's rows or error.
    OneOffQueryResult {
        /// Echoed.
        request_id: RequestId,
        /// Rows per table, or the error.
        result: OneOffRows,
    },
    /// The caller's reducer result.
    ReducerResult {
        /// Echoed.
        request_id: RequestId,
        /// The commit's offset (`None` when nothing was committed).
        tx_offset: Option<TxOffset>,
        /// When the reducer ran.
        timestamp: Timestamp,
        /// What happened.
        outcome: ReducerOutcome,
    },
    /// The server closed the connection.
    Disconnected {
        /// Why.
        reason: String,
        /// The server is shutting down (a WebSocket closes with 1001, "going away"),
        /// rather than dropping this client (1008, policy).
        going_away: bool,
    },
}

/// Answered once every message sent to an actor before it has been handled; graceful
/// shutdown uses it to wait for each queue on the way to the clients to drain.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Barrier;

/// A server message with what the receiver must wait for before acting on it.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The message.
    pub message: Arc<ServerMessage>,
    /// The commit it reports must be durable first (reducer results; every update with
    /// confirmed reads).
    pub durable: Option<Durable>,
}

impl Envelope {
    /// A message with nothing to wait for.
    pub fn now(message: ServerMessage) -> Self {
        Envelope {
            message: Arc::new(message),
            durable: None,
        }
    }

    /// The last message of a session: `Disconnected` with `reason`; `going_away` when the
    /// server is shutting down rather than dropping this client.
    pub fn disconnected(reason: String, going_away: bool) -> Self {
        Envelope::now(ServerMessage::Disconnected { reason, going_away })
    }

    /// A rough byte size, for queue meters.
    pub fn approx_bytes(&self) -> usize {
        let tables = |t: &[TableUpdate]| t.iter().map(|u| 32 + u.bytes).sum::<usize>();
        64 + match &*self.message {
            ServerMessage::SubscribeApplied { tables: t, .. } => tables(t),
            ServerMessage::TransactionUpdate(u) => {
                u.query_sets.iter().map(|q| tables(&q.tables)).sum()
            }
            ServerMessage::ReducerResult {
                outcome: ReducerOutcome::Ok { update, .. },
                ..
            } => update.query_sets.iter().map(|q| tables(&q.tables)).sum(),
            _ => 0,
        }
    }
}
