//! tidings-engine: the datastore.
//!
//! A commit passes through these modules in order:
//!
//! - [`value`], [`row`], [`schema`]: column types, rows and table schemas.
//! - [`codec`]: the canonical binary encoding of a row (storage, identity, log), and
//!   [`codec::StoredRow`], which reads a stored row column by column as [`ValueRef`]s.
//! - [`table`]: one table's encoded rows in a slotmap plus its btree indexes (native,
//!   packed or value keys).
//! - [`tx`]: a mutable transaction: per table an insert table and a delete set over the
//!   committed state; constraint checks; event tables behave as ordinary tables here.
//! - [`tx_data`]: what a commit produced, per table inserts and deletes, with its offset;
//!   [`packed`]: the same rows in their stored encoding, back to back.
//! - [`datastore`]: committed state behind one lock, the commit path (gate, log, merge),
//!   sequences, read guards, open and replay of a data directory.
//! - [`commitlog`]: segment files of checksummed records, the fsync writer thread, replay.
//! - [`record`]: how a commit or a schema change is laid out inside a log record.
//! - [`migrate`]: checks a new schema against the one in force.
//! - [`typed`]: the traits `#[table]` structs and `#[derive(SqlEnum)]` enums implement.
//!
//! Read [`Datastore`], [`MutTx`] and [`TxData`] first.
//!
//! The engine knows nothing of actors, SQL or the wire format: it hands [`TxData`] to
//! whoever commits and lets them decide what to do with it.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod codec;
pub mod commitlog;
pub mod datastore;
pub mod error;
pub mod migrate;
pub mod packed;
pub mod record;
pub mod row;
pub mod schema;
mod sequence;
pub mod table;
pub mod tx;
pub mod tx_data;
pub mod typed;
pub mod value;

pub use datastore::{
    Commit, CommitError, CommittedState, Datastore, OpenError, OpenOptions, PACK_ROWS_FROM,
    ReadGuard,
};
pub use error::{DecodeError, RowError, SchemaError, TxError};
pub use packed::PackedRows;
pub use row::Row;
pub use schema::{Access, ColId, ColumnDef, IndexDef, Schema, TableId, TableSchema};
pub use tx::MutTx;
pub use tx_data::{TableUpdate, TxData, TxMeta, TxOffset};
pub use typed::{CanBeLookupTable, FromRowError, SqlEnum, SqlType, TableType, ValueError};
pub use value::{AlgebraicType, EnumType, Identity, Timestamp, Value, ValueRef};
