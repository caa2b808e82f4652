//! Tidings: an embeddable reactive subscription engine with event tables.
//!
//! An application declares tables (`#[table]` structs), changes them only through
//! reducers, and every subscribed client receives each commit's net change to its
//! queries the moment it commits. This facade re-exports the layers, in the order data
//! flows through them:
//!
//! - [`engine`]: the datastore: schema, transactions, TxData, event tables, commitlog.
//! - [`query`]: subscription SQL compiled to plans, evaluated in full and incrementally.
//! - [`actors`]: the transaction actor, subscription manager, hubs and the client SDK.
//! - [`demo`]: a small chat module, used by the examples.
//!
//! The common types are re-exported at the root: start with [`Module`], [`Tidings`] and
//! [`DbConnection`].
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod demo;

pub use tidings_actors as actors;
pub use tidings_engine as engine;
pub use tidings_query as query;

pub use tidings_actors::{
    ConnectOptions, DbConnection, Event, EventContext, Inbox, Module, Protocol, ReducerContext,
    ReducerError, SubscriptionHandle, Tidings, TidingsError, V1_EVENT_TABLE_ERROR,
};
pub use tidings_engine::{Identity, SqlEnum as SqlEnumTrait, Timestamp};
pub use tidings_macros::{SqlEnum, table};
