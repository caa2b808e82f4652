//! `#[table]` and `#[derive(SqlEnum)]` against the engine: generated schemas equal the
//! hand-built ones, rows round-trip, and bad rows are reported by table and column.

use std::error::Error as _;

use tidings_engine::typed::{CanBeLookupTable, FromRowError, SqlEnum, SqlType, TableType};
use tidings_engine::{AlgebraicType, EnumType, Identity, Row, TableSchema, Timestamp, Value};
use tidings_macros::{SqlEnum, table};

#[table(name = "message", public)]
#[derive(Clone, Debug, PartialEq)]
struct Message {
    #[primary_key]
    #[auto_inc]
    id: u64,
    #[index(btree)]
    sender: Identity,
    text: String,
    sent: Timestamp,
    reply_to: Option<u64>,
}

#[derive(SqlEnum, Clone, Copy, Debug, PartialEq)]
enum DamageKind {
    Fire,
    Ice,
}

#[table(name = "damage", public, event)]
#[derive(Clone, Debug, PartialEq)]
struct Damage {
    #[auto_inc]
    #[primary_key]
    id: u64,
    #[index(btree)]
    target: u64,
    amount: u32,
    kind: DamageKind,
}

#[table(name = "location", index(name = "coords", btree(columns = [x, z, dimension])))]
#[derive(Clone, Debug, PartialEq)]
struct Location {
    #[unique]
    entity: u64,
    x: i32,
    z: i32,
    dimension: u8,
    r#type: Option<String>,
    blob: Vec<u8>,
    scale: f64,
}

/// Every other column type, so each `SqlType` is exercised through a table too.
#[table(name = "every_type", private, index(btree(columns = [b, big])))]
#[derive(Clone, Debug, PartialEq)]
struct EveryType {
    b: bool,
    #[auto_inc]
    small: u8,
    u16: u16,
    big: u128,
    i8: i8,
    i16: i16,
    i32: i32,
    i64: i64,
    i128: i128,
    f32: f32,
    kind: Option<DamageKind>,
    who: Option<Identity>,
}

fn assert_lookup<T: CanBeLookupTable>() {}

#[test]
fn non_event_tables_can_be_lookup_tables() {
    assert_lookup::<Message>();
    assert_lookup::<Location>();
    assert_lookup::<EveryType>();
}

#[test]
fn constants_name_the_table() {
    assert_eq!(Message::TABLE_NAME, "message");
    assert_eq!(<Message as TableType>::NAME, "message");
    assert_eq!(Damage::TABLE_NAME, "damage");
}

// The event flag is a constant, so check it when compiling.
const _: () = assert!(!<Message as TableType>::IS_EVENT);
const _: () = assert!(<Damage as TableType>::IS_EVENT);

#[test]
fn message_schema_matches_builder() {
    let expected = TableSchema::builder("message")
        .column("id", AlgebraicType::U64)
        .column("sender", AlgebraicType::Identity)
        .column("text", AlgebraicType::String)
        .column("sent", AlgebraicType::Timestamp)
        .column(
            "reply_to",
            AlgebraicType::Option(Box::new(AlgebraicType::U64)),
        )
        .primary_key("id")
        .index(&["sender"])
        .auto_inc("id")
        .public()
        .build()
        .expect("hand-built message schema");
    let schema = Message::schema();
    assert_eq!(schema, expected);
    // Spot-check the parts the equality covers, so a regression names what changed.
    assert_eq!(schema.access, tidings_engine::Access::Public);
    assert!(!schema.is_event);
    assert_eq!(schema.primary_key, schema.column_id("id"));
    assert_eq!(schema.sequences, vec![tidings_engine::ColId(0)]);
    let index_names: Vec<&str> = schema.indexes.iter().map(|i| &*i.name).collect();
    assert_eq!(index_names, ["message_id_pkey", "message_sender_idx"]);
}

#[test]
fn event_schema_matches_builder() {
    let kind = AlgebraicType::Enum(EnumType {
        name: "DamageKind".into(),
        variants: vec!["Fire".into(), "Ice".into()].into(),
    });
    let expected = TableSchema::builder("damage")
        .column("id", AlgebraicType::U64)
        .column("target", AlgebraicType::U64)
        .column("amount", AlgebraicType::U32)
        .column("kind", kind)
        .primary_key("id")
        .index(&["target"])
        .auto_inc("id")
        .public()
        .event()
        .build()
        .expect("hand-built damage schema");
    assert_eq!(Damage::schema(), expected);
    assert!(Damage::schema().is_event);
}

#[test]
fn multi_column_index_schema_matches_builder() {
    let expected = TableSchema::builder("location")
        .column("entity", AlgebraicType::U64)
        .column("x", AlgebraicType::I32)
        .column("z", AlgebraicType::I32)
        .column("dimension", AlgebraicType::U8)
        .column(
            "type",
            AlgebraicType::Option(Box::new(AlgebraicType::String)),
        )
        .column("blob", AlgebraicType::Bytes)
        .column("scale", AlgebraicType::F64)
        .unique(&["entity"])
        .index(&["x", "z", "dimension"])
        .build()
        .expect("hand-built location schema");
    let schema = Location::schema();
    assert_eq!(schema, expected);
    assert_eq!(schema.access, tidings_engine::Access::Private);
    let index_names: Vec<&str> = schema.indexes.iter().map(|i| &*i.name).collect();
    assert_eq!(
        index_names,
        ["location_entity_key", "location_x_z_dimension_idx"]
    );
}

#[test]
fn every_type_schema_matches_builder() {
    let expected = TableSchema::builder("every_type")
        .column("b", AlgebraicType::Bool)
        .column("small", AlgebraicType::U8)
        .column("u16", AlgebraicType::U16)
        .column("big", AlgebraicType::U128)
        .column("i8", AlgebraicType::I8)
        .column("i16", AlgebraicType::I16)
        .column("i32", AlgebraicType::I32)
        .column("i64", AlgebraicType::I64)
        .column("i128", AlgebraicType::I128)
        .column("f32", AlgebraicType::F32)
        .column(
            "kind",
            AlgebraicType::Option(Box::new(DamageKind::sql_type())),
        )
        .column(
            "who",
            AlgebraicType::Option(Box::new(AlgebraicType::Identity)),
        )
        .index(&["b", "big"])
        .auto_inc("small")
        .build()
        .expect("hand-built every_type schema");
    assert_eq!(EveryType::schema(), expected);
}

#[test]
fn rows_round_trip() {
    let message = Message {
        id: 7,
        sender: Identity::from_u64(3),
        text: "hello".into(),
        sent: Timestamp(1_700_000_000_000_000),
        reply_to: None,
    };
    let row = message.clone().into_row();
    assert_eq!(
        row,
        Row::new(vec![
            Value::U64(7),
            Value::Identity(Box::new(Identity::from_u64(3))),
            Value::String("hello".into()),
            Value::Timestamp(Timestamp(1_700_000_000_000_000)),
            Value::Null,
        ])
    );
    let mut checked = row.clone();
    Message::schema()
        .check_row(&mut checked)
        .expect("the row fits the generated schema");
    assert_eq!(Message::from_row(row), Ok(message));

    let damage = Damage {
        id: 1,
        target: 9,
        amount: 40,
        kind: DamageKind::Ice,
    };
    let row = damage.clone().into_row();
    assert_eq!(row[3], Value::Enum(1));
    assert_eq!(Damage::from_row(row), Ok(damage));

    let location = Location {
        entity: 2,
        x: -4,
        z: 12,
        dimension: 1,
        r#type: Some("spawn".into()),
        blob: vec![1, 2, 3],
        scale: 0.5,
    };
    let row = location.clone().into_row();
    let mut checked = row.clone();
    Location::schema()
        .check_row(&mut checked)
        .expect("the row fits the generated schema");
    assert_eq!(Location::from_row(row), Ok(location));

    let every = EveryType {
        b: true,
        small: 0,
        u16: u16::MAX,
        big: u128::MAX,
        i8: i8::MIN,
        i16: -2,
        i32: -3,
        i64: i64::MIN,
        i128: i128::MIN,
        f32: 1.25,
        kind: Some(DamageKind::Fire),
        who: None,
    };
    let row = every.clone().into_row();
    let mut checked = row.clone();
    EveryType::schema()
        .check_row(&mut checked)
        .expect("the row fits the generated schema");
    assert_eq!(EveryType::from_row(row), Ok(every));
}

#[test]
fn wrong_row_names_table_and_column() {
    let row = Row::new(vec![
        Value::U64(7),
        Value::Identity(Box::new(Identity::ZERO)),
        Value::U32(5),
        Value::Timestamp(Timestamp(0)),
        Value::Null,
    ]);
    let err = Message::from_row(row).expect_err("u32 is not a string");
    match &err {
        FromRowError::Column { table, column, .. } => {
            assert_eq!((*table, *column), ("message", "text"));
        }
        other => panic!("expected a column error, got {other:?}"),
    }
    assert_eq!(err.to_string(), "cannot read column `message.text`");
    let source = err.source().map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("expected a value of type string, found u32")
    );

    let short = Row::new(vec![Value::U64(7)]);
    assert_eq!(
        Message::from_row(short),
        Err(FromRowError::Arity {
            table: "message",
            expected: 5,
            got: 1
        })
    );

    let bad_tag = Row::new(vec![
        Value::U64(1),
        Value::U64(2),
        Value::U32(3),
        Value::Enum(9),
    ]);
    let err = Damage::from_row(bad_tag).expect_err("tag 9 is no DamageKind");
    assert!(
        matches!(
            err,
            FromRowError::Column {
                table: "damage",
                column: "kind",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sql_enum_derive() {
    assert_eq!(
        DamageKind::enum_type(),
        EnumType {
            name: "DamageKind".into(),
            variants: vec!["Fire".into(), "Ice".into()].into(),
        }
    );
    assert_eq!(DamageKind::Fire.tag(), 0);
    assert_eq!(DamageKind::Ice.tag(), 1);
    assert_eq!(DamageKind::from_tag(1), Some(DamageKind::Ice));
    assert_eq!(DamageKind::from_tag(2), None);
    assert_eq!(DamageKind::Ice.into_value(), Value::Enum(1));
    assert_eq!(DamageKind::from_value(Value::Enum(0)), Ok(DamageKind::Fire));
    assert!(DamageKind::from_value(Value::U8(0)).is_err());
}
