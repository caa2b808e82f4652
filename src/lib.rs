//! Tidings: an embeddable reactive subscription engine with event tables.
//!
//! This facade re-exports the crates an application uses:
//! - [`engine`]: the datastore (schema, transactions, TxData, commitlog).
//! - the `#[table]` attribute from `tidings-macros`, to declare tables from structs.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub use tidings_engine as engine;
pub use tidings_macros::{SqlEnum, table};
