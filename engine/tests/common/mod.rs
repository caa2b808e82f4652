//! Schemas shared by the engine's integration tests.
#![allow(dead_code, missing_docs)]

use tidings_engine::{AlgebraicType as T, Datastore, Row, Schema, TableId, TableSchema, TxData};

/// `person(id u64 pk auto_inc, name string unique, age u32 indexed)` and the event table
/// `damage(id u64 pk auto_inc, target u64 unique, amount u32 indexed)`.
pub fn schema() -> Schema {
    Schema::new([
        TableSchema::builder("person")
            .column("id", T::U64)
            .column("name", T::String)
            .column("age", T::U32)
            .primary_key("id")
            .auto_inc("id")
            .unique(&["name"])
            .index(&["age"])
            .public()
            .build()
            .expect("person schema"),
        TableSchema::builder("damage")
            .column("id", T::U64)
            .column("target", T::U64)
            .column("amount", T::U32)
            .primary_key("id")
            .auto_inc("id")
            .unique(&["target"])
            .index(&["amount"])
            .public()
            .event()
            .build()
            .expect("damage schema"),
    ])
    .expect("schema")
}

pub const PERSON: TableId = TableId(0);
pub const DAMAGE: TableId = TableId(1);

pub fn ds() -> Datastore {
    Datastore::in_memory(schema())
}

pub fn person(id: u64, name: &str, age: u32) -> Row {
    tidings_engine::row![id, name, age]
}

pub fn damage(id: u64, target: u64, amount: u32) -> Row {
    tidings_engine::row![id, target, amount]
}

/// The inserts TxData recorded for `table` (empty when the table is absent).
pub fn inserts(tx: &TxData, table: TableId) -> Vec<Row> {
    tx.table(table)
        .map(|t| t.inserts.to_vec())
        .unwrap_or_default()
}

/// The deletes TxData recorded for `table` (empty when the table is absent).
pub fn deletes(tx: &TxData, table: TableId) -> Vec<Row> {
    tx.table(table)
        .map(|t| t.deletes.to_vec())
        .unwrap_or_default()
}
