//! tidings-actors: the actor system an application embeds.
//!
//! Data flows one way, through these modules:
//!
//! 1. [`module`]: the application's tables, reducers and visibility rules.
//! 2. [`transaction`]: the [`TransactionActor`] runs reducers one at a time on its own
//!    thread, commits, evaluates each distinct affected query once against exactly the
//!    commit's post-state ([`manager::evaluate_commit`], before the next merge, so no
//!    commit gate is needed), and sends the updates onward; client requests pass
//!    through its FIFO so they stay ordered against commits.
//! 3. [`manager`]: the [`SubscriptionManager`] compiles subscriptions, registers them in
//!    the registry it shares with the transaction actor, and sends one shared broadcast
//!    per hub.
//! 4. [`hub`]: one [`hub::Hub`] per pool arbiter fans a commit out to its sessions'
//!    queues ([`queue`]), enforcing each queue's bound at the sender. In-process
//!    connections made through an application thread's [`Inbox`] share one queue
//!    ([`inbox`]): a commit is one batch per inbox, not one message per connection.
//! 5. [`client`]: the SDK drains its queue (or its thread's inbox), applies whole
//!    transactions to its cache and runs callbacks on the application's thread; the
//!    connections of an inbox share the rows they cache from each update
//!    ([`client::pool`]). The same [`DbConnection`] also runs in another process, over a
//!    WebSocket ([`client::remote`]), decoding frames into the same messages before the
//!    same processing code.
//!
//! [`server`] serves WebSocket sessions and the HTTP API over [`session`]s, encoding
//! with [`wire`]. [`messages`] holds the protocol values (v1 and v2), [`system`] starts
//! everything ([`Tidings`]), [`metrics`] counts. Read [`Tidings`], [`DbConnection`] and
//! [`manager::SubscriptionManager`] first.
//!
//! Shutdown runs the same way down the flow ([`Tidings::shutdown_gracefully`]): refuse new
//! requests, answer queued calls, then end every session after what is queued for it.
//!
//! The engine below knows nothing of actors; the query crate knows nothing of sessions.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
pub mod hub;
pub mod inbox;
pub mod manager;
pub mod messages;
pub mod metrics;
pub mod module;
pub mod queue;
pub mod server;
pub mod session;
pub mod system;
pub mod transaction;
pub mod wire;

pub use client::{
    ConnectError, ConnectOptions, DbConnection, DbConnectionBuilder, Event, EventContext, Inbox,
    SubscriptionHandle, WireProtocol,
};
pub use manager::SubscriptionManager;
pub use messages::{Protocol, V1_EVENT_TABLE_ERROR};
pub use module::{Module, ReducerContext, ReducerError};
pub use system::{Tidings, TidingsBuilder, TidingsError};
pub use transaction::{CallResult, TransactionActor};
