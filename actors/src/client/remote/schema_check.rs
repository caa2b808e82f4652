//! The connect-time check that the server's tables are the ones the client was compiled
//! against.
//!
//! Row lists carry no column names or types: a client decoding them with a different
//! schema would read wrong values or fail mid-stream. So before opening the socket the
//! client reads `GET /schema` and compares, for every table of its own schema: that the
//! server has it, its event flag, and its columns in order (names and types, as
//! `GET /schema` spells types). Every difference is reported at once. Tables the server
//! has and the client does not are allowed (a newer server); subscribing to them is what
//! fails, with a decode error naming the table.

use serde::Deserialize;
use thiserror::Error;
use tidings_engine::Schema;

use crate::server::type_name;

/// One way the server's schema differs from the client's.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchemaDifference {
    /// The client has a table the server does not.
    #[error("table `{table}` does not exist on the server")]
    MissingTable {
        /// The table.
        table: String,
    },
    /// One side has an event table, the other a persistent one.
    #[error("table `{table}` is {} on the server and {} in the client", kind(*server_event), kind(!server_event))]
    EventFlag {
        /// The table.
        table: String,
        /// Whether the server's is an event table.
        server_event: bool,
    },
    /// Different numbers of columns.
    #[error("table `{table}` has {server} columns on the server and {client} in the client")]
    ColumnCount {
        /// The table.
        table: String,
        /// Columns on the server.
        server: usize,
        /// Columns in the client.
        client: usize,
    },
    /// A column with another name or type at the same position.
    #[error("table `{table}`, column {index}: `{server}` on the server, `{client}` in the client")]
    Column {
        /// The table.
        table: String,
        /// The column's position.
        index: usize,
        /// `name: type` on the server.
        server: String,
        /// `name: type` in the client.
        client: String,
    },
}

fn kind(event: bool) -> &'static str {
    if event {
        "an event table"
    } else {
        "persistent"
    }
}

#[derive(Deserialize)]
struct SchemaJson {
    tables: Vec<TableJson>,
}

#[derive(Deserialize)]
struct TableJson {
    name: String,
    event: bool,
    columns: Vec<ColumnJson>,
}

#[derive(Deserialize)]
struct ColumnJson {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

/// Compares `client` with the `GET /schema` body `server`: every difference, or a JSON
/// error when the body is not a schema.
pub(crate) fn differences(
    client: &Schema,
    server: &[u8],
) -> Result<Vec<SchemaDifference>, serde_json::Error> {
    let server: SchemaJson = serde_json::from_slice(server)?;
    let mut out = Vec::new();
    for t in client.tables() {
        let table = t.name.to_string();
        let Some(s) = server.tables.iter().find(|s| s.name == table) else {
            out.push(SchemaDifference::MissingTable { table });
            continue;
        };
        if s.event != t.is_event {
            out.push(SchemaDifference::EventFlag {
                table: table.clone(),
                server_event: s.event,
            });
        }
        if s.columns.len() != t.columns.len() {
            out.push(SchemaDifference::ColumnCount {
                table: table.clone(),
                server: s.columns.len(),
                client: t.columns.len(),
            });
        }
        for (index, (sc, cc)) in s.columns.iter().zip(&t.columns).enumerate() {
            let client_ty = type_name(&cc.ty);
            if sc.name != *cc.name || sc.ty != client_ty {
                out.push(SchemaDifference::Column {
                    table: table.clone(),
                    index,
                    server: format!("{}: {}", sc.name, sc.ty),
                    client: format!("{}: {}", cc.name, client_ty),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_engine::{AlgebraicType as T, TableSchema};

    fn client() -> Schema {
        Schema::new([
            TableSchema::builder("a")
                .column("id", T::U64)
                .column("s", T::String)
                .build()
                .expect("a"),
            TableSchema::builder("b")
                .column("x", T::U32)
                .event()
                .build()
                .expect("b"),
            TableSchema::builder("c")
                .column("x", T::U32)
                .build()
                .expect("c"),
        ])
        .expect("schema")
    }

    #[test]
    fn every_difference_is_reported_and_extra_server_tables_are_allowed() {
        let server = br#"{"tables": [
            {"name": "a", "event": false, "columns": [{"name": "id", "type": "u64"}, {"name": "s", "type": "u32"}]},
            {"name": "b", "event": false, "columns": [{"name": "x", "type": "u32"}, {"name": "y", "type": "u32"}]},
            {"name": "z", "event": false, "columns": []}
        ], "reducers": []}"#;
        let d = differences(&client(), server).expect("a schema");
        assert_eq!(
            d,
            vec![
                SchemaDifference::Column {
                    table: "a".into(),
                    index: 1,
                    server: "s: u32".into(),
                    client: "s: string".into()
                },
                SchemaDifference::EventFlag {
                    table: "b".into(),
                    server_event: false
                },
                SchemaDifference::ColumnCount {
                    table: "b".into(),
                    server: 2,
                    client: 1
                },
                SchemaDifference::MissingTable { table: "c".into() },
            ]
        );
        assert_eq!(
            d[1].to_string(),
            "table `b` is persistent on the server and an event table in the client"
        );
        assert!(differences(&client(), b"<html>").is_err());
    }
}
