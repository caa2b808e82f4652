//! Generators and helpers shared by the query crate's property tests.
//!
//! A test case is a random schema of two or three tables, a handful of random
//! subscription queries over it, a seeding transaction and a sequence of random
//! transactions. Queries and operations are generated as schema-independent *seeds*
//! (small integers) and interpreted against the schema, which keeps the strategies flat
//! and lets proptest shrink them freely.
//!
//! Every table has `id u64` as primary key, a join key `k` (its type is shared by the
//! whole schema, optionally nullable per table, always indexed, with a tiny value domain
//! so joins match often) and one to three more columns `c1..c3` of any column type.
//! Values and literals come from small per-type domains that include the extremes, so
//! sign handling and encodings are exercised.
//!
//! Queries are rendered as SQL text twice: once for Tidings and once for SQLite, where
//! every value is encoded ([`encode`]) so that SQLite's comparisons agree with Tidings'.
//! [`model_holds`] and [`model_rows`] evaluate a query naively, independently of the
//! crate under test.
#![allow(dead_code, missing_docs)]

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rusqlite::Connection;
use tidings_engine::{
    AlgebraicType as T, CommittedState, Datastore, EnumType, Identity, MutTx, Row, Schema, TableId,
    TableSchema, Timestamp, TxData, Value,
};
use tidings_query::{Caller, Plan, compile};

/// The identity queries are compiled for (bound to `:sender`).
pub fn caller_identity() -> Identity {
    Identity::from_u64(7)
}

/// The caller every test compiles for.
pub fn caller() -> Caller {
    Caller {
        identity: caller_identity(),
        is_owner: true,
    }
}

// ---------------------------------------------------------------------------------------
// Column types and their domains
// ---------------------------------------------------------------------------------------

/// The column types an extra column can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColTy {
    Bool,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
    Str,
    Bytes,
    Ident,
    Ts,
    Enum,
    OptU32,
}

pub const ALL_TYPES: [ColTy; 19] = [
    ColTy::Bool,
    ColTy::U8,
    ColTy::U16,
    ColTy::U32,
    ColTy::U64,
    ColTy::U128,
    ColTy::I8,
    ColTy::I16,
    ColTy::I32,
    ColTy::I64,
    ColTy::I128,
    ColTy::F32,
    ColTy::F64,
    ColTy::Str,
    ColTy::Bytes,
    ColTy::Ident,
    ColTy::Ts,
    ColTy::Enum,
    ColTy::OptU32,
];

/// Variant names of the one enum type, in tag order.
pub const COLOR_VARIANTS: [&str; 3] = ["red", "green", "blue"];

pub fn color_type() -> EnumType {
    EnumType {
        name: "color".into(),
        variants: COLOR_VARIANTS
            .iter()
            .map(|v| Arc::<str>::from(*v))
            .collect(),
    }
}

fn ident_of(byte: u8) -> Identity {
    Identity([byte; 32])
}

impl ColTy {
    pub fn algebraic(self) -> T {
        match self {
            ColTy::Bool => T::Bool,
            ColTy::U8 => T::U8,
            ColTy::U16 => T::U16,
            ColTy::U32 => T::U32,
            ColTy::U64 => T::U64,
            ColTy::U128 => T::U128,
            ColTy::I8 => T::I8,
            ColTy::I16 => T::I16,
            ColTy::I32 => T::I32,
            ColTy::I64 => T::I64,
            ColTy::I128 => T::I128,
            ColTy::F32 => T::F32,
            ColTy::F64 => T::F64,
            ColTy::Str => T::String,
            ColTy::Bytes => T::Bytes,
            ColTy::Ident => T::Identity,
            ColTy::Ts => T::Timestamp,
            ColTy::Enum => T::Enum(color_type()),
            ColTy::OptU32 => T::Option(Box::new(T::U32)),
        }
    }

    /// The values rows hold in a column of this type.
    pub fn values(self) -> Vec<Value> {
        match self {
            ColTy::Bool => vec![false.into(), true.into()],
            ColTy::U8 => vals([0u8, 1, 200, u8::MAX]),
            ColTy::U16 => vals([0u16, 1, 300, u16::MAX]),
            ColTy::U32 => vals([0u32, 5, 70_000, u32::MAX]),
            ColTy::U64 => vals([0u64, 1, 1 << 40, 1 << 63, u64::MAX]),
            ColTy::U128 => vals([0u128, 1, 1 << 64, u128::MAX]),
            ColTy::I8 => vals([i8::MIN, -1, 0, 5, i8::MAX]),
            ColTy::I16 => vals([i16::MIN, -1, 0, 300]),
            ColTy::I32 => vals([i32::MIN, -7, 0, i32::MAX]),
            ColTy::I64 => vals([i64::MIN, -1, 0, 1 << 40, i64::MAX]),
            ColTy::I128 => vals([i128::MIN, -1, 0, 1 << 70, i128::MAX]),
            // 7.038531e-26 is one of the two f32 values whose shortest decimal text, read as an
            // f64 and then narrowed, lands on a neighbouring f32.
            ColTy::F32 => vals([-1.5f32, 0.0, 0.1, 3.0, 1e10, 7.038531e-26]),
            ColTy::F64 => vals([-1.5f64, 0.0, 0.1, 3.0, 1e300, 1e-7]),
            ColTy::Str => vec!["".into(), "a".into(), "B".into(), "it's".into(), "é".into()],
            ColTy::Bytes => vec![
                Vec::<u8>::new().into(),
                vec![0u8].into(),
                vec![0u8, 1].into(),
                vec![255u8].into(),
            ],
            ColTy::Ident => vec![
                Identity::ZERO.into(),
                Identity::from_u64(1).into(),
                caller_identity().into(),
                ident_of(0xff).into(),
            ],
            ColTy::Ts => vals([
                Timestamp(i64::MIN),
                Timestamp(-1),
                Timestamp(0),
                Timestamp(1_700_000_000_000_000),
            ]),
            ColTy::Enum => vec![Value::Enum(0), Value::Enum(1), Value::Enum(2)],
            ColTy::OptU32 => vec![Value::Null, 0u32.into(), 5u32.into(), u32::MAX.into()],
        }
    }

    /// Literals a query may compare a column of this type with: the stored values (NULL
    /// aside, it has its own literal) and a few that no row holds.
    pub fn literals(self) -> Vec<Value> {
        let extra: Vec<Value> = match self {
            ColTy::Bool | ColTy::Enum => vec![],
            ColTy::U8 => vals([2u8]),
            ColTy::U16 => vals([2u16]),
            ColTy::U32 | ColTy::OptU32 => vals([6u32]),
            ColTy::U64 => vals([2u64]),
            ColTy::U128 => vals([1u128 << 127]),
            ColTy::I8 => vals([-2i8]),
            ColTy::I16 => vals([1i16]),
            ColTy::I32 => vals([1i32]),
            ColTy::I64 => vals([2i64]),
            ColTy::I128 => vals([-(1i128 << 70)]),
            ColTy::F32 => vals([2.5f32, -0.0]),
            ColTy::F64 => vals([0.5f64, -0.0]),
            ColTy::Str => vec!["aa".into(), "b".into()],
            ColTy::Bytes => vec![vec![1u8].into()],
            ColTy::Ident => vec![Identity::from_u64(2).into()],
            ColTy::Ts => vals([Timestamp(5)]),
        };
        let mut out: Vec<Value> = self.values().into_iter().filter(|v| !v.is_null()).collect();
        out.extend(extra);
        out
    }
}

fn vals<V: Into<Value>, const N: usize>(v: [V; N]) -> Vec<Value> {
    v.into_iter().map(Into::into).collect()
}

/// The type of every join key `k` of a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBase {
    U64,
    I32,
    Str,
    U128,
}

impl KeyBase {
    fn algebraic(self) -> T {
        match self {
            KeyBase::U64 => T::U64,
            KeyBase::I32 => T::I32,
            KeyBase::Str => T::String,
            KeyBase::U128 => T::U128,
        }
    }

    /// Tiny domains so that joins match often; `U64` overlaps the ids 0..=2 so that a
    /// join of `k` with a primary key matches too.
    fn values(self) -> Vec<Value> {
        match self {
            KeyBase::U64 => vals([0u64, 1, 2, u64::MAX]),
            KeyBase::I32 => vals([i32::MIN, -1, 0]),
            KeyBase::Str => vec!["a".into(), "b".into(), "a'".into()],
            KeyBase::U128 => vals([0u128, 1, u128::MAX]),
        }
    }
}

/// Primary keys are drawn from `0..ID_DOMAIN`.
pub const ID_DOMAIN: u64 = 8;

// ---------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------

/// One generated table.
#[derive(Clone, Debug)]
pub struct TableSpec {
    pub is_event: bool,
    /// `k` is `Option<key>` rather than `key`.
    pub key_optional: bool,
    /// Types of `c1..`.
    pub extras: Vec<ColTy>,
    /// The join-key index is `(k, c1)` rather than `(k)`.
    pub key_composite: bool,
    /// An index on one extra column (`(c_i)`, or `(c_i, k)` when the flag is set).
    pub extra_index: Option<(u8, bool)>,
}

/// One generated schema.
#[derive(Clone, Debug)]
pub struct SchemaSpec {
    pub key: KeyBase,
    pub tables: Vec<TableSpec>,
}

/// A column as the tests see it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: T,
    /// Values rows hold.
    pub values: Vec<Value>,
    /// Non-null literals queries compare it with.
    pub literals: Vec<Value>,
}

/// A table as the tests see it.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub name: String,
    pub id: TableId,
    pub is_event: bool,
    pub columns: Vec<Column>,
    pub schema: TableSchema,
}

/// The interpreted schema.
#[derive(Clone, Debug)]
pub struct Db {
    pub key: KeyBase,
    pub tables: Vec<TableInfo>,
}

impl SchemaSpec {
    pub fn build(&self) -> Db {
        let tables = self
            .tables
            .iter()
            .enumerate()
            .map(|(i, spec)| table_info(i, spec, self.key))
            .collect();
        Db {
            key: self.key,
            tables,
        }
    }
}

fn table_info(i: usize, spec: &TableSpec, key: KeyBase) -> TableInfo {
    let name = format!("t{i}");
    let mut key_values = key.values();
    let mut key_ty = key.algebraic();
    if spec.key_optional {
        key_values.push(Value::Null);
        key_ty = T::Option(Box::new(key_ty));
    }
    let mut columns = vec![
        Column {
            name: "id".into(),
            ty: T::U64,
            values: (0..ID_DOMAIN).map(Value::U64).collect(),
            literals: (0..=ID_DOMAIN).map(Value::U64).collect(),
        },
        Column {
            name: "k".into(),
            ty: key_ty,
            literals: key_values
                .iter()
                .filter(|v| !v.is_null())
                .cloned()
                .collect(),
            values: key_values,
        },
    ];
    for (j, ty) in spec.extras.iter().enumerate() {
        columns.push(Column {
            name: format!("c{}", j + 1),
            ty: ty.algebraic(),
            values: ty.values(),
            literals: ty.literals(),
        });
    }
    let mut b = TableSchema::builder(&name);
    for c in &columns {
        b = b.column(&c.name, c.ty.clone());
    }
    b = b.primary_key("id").public();
    b = if spec.key_composite {
        b.index(&["k", "c1"])
    } else {
        b.index(&["k"])
    };
    if let Some((col, with_key)) = spec.extra_index {
        let c = format!("c{}", 1 + col as usize % spec.extras.len());
        b = if with_key {
            b.index(&[&c, "k"])
        } else {
            b.index(&[&c])
        };
    }
    if spec.is_event {
        b = b.event().auto_inc("id");
    }
    let schema = b.build().expect("generated table schema is valid");
    TableInfo {
        name,
        id: TableId(i as u32),
        is_event: spec.is_event,
        columns,
        schema,
    }
}

impl Db {
    pub fn schema(&self) -> Schema {
        Schema::new(self.tables.iter().map(|t| t.schema.clone())).expect("schema")
    }

    pub fn persistent(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.iter().filter(|t| !t.is_event)
    }
}

fn table_spec(allow_events: bool) -> impl Strategy<Value = TableSpec> {
    (
        prop::bool::weighted(if allow_events { 0.4 } else { 0.0 }),
        prop::bool::weighted(0.25),
        prop::collection::vec(prop::sample::select(&ALL_TYPES[..]), 1..=3),
        prop::bool::weighted(0.25),
        prop::option::weighted(0.6, (any::<u8>(), any::<bool>())),
    )
        .prop_map(
            |(is_event, key_optional, extras, key_composite, extra_index)| TableSpec {
                is_event,
                key_optional,
                extras,
                key_composite,
                extra_index,
            },
        )
}

/// Two or three tables sharing a join-key type; the first is never an event table.
pub fn schema_strategy(allow_events: bool) -> impl Strategy<Value = SchemaSpec> {
    (
        prop::sample::select(&[KeyBase::U64, KeyBase::I32, KeyBase::Str, KeyBase::U128][..]),
        prop::collection::vec(table_spec(allow_events), 2..=3),
    )
        .prop_map(|(key, mut tables)| {
            tables[0].is_event = false;
            SchemaSpec { key, tables }
        })
}

// ---------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

const OPS: [Op; 6] = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];

impl Op {
    fn sql(self, alt: bool) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne if alt => "<>",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn test(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    }
}

/// The constant side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Val(Value),
    Null,
    /// `:sender` (an identity column only).
    Sender,
}

/// Which table of a query a column is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QSide {
    Returned,
    Lookup,
}

/// A WHERE tree exactly as rendered.
#[derive(Clone, Debug)]
pub enum Expr {
    And(Vec<Expr>, bool),
    Or(Vec<Expr>, bool),
    Cmp {
        side: QSide,
        col: usize,
        op: Op,
        lit: Lit,
        /// Written `literal op column`.
        flipped: bool,
        /// Spell `!=` as `<>`; write an enum literal as its tag.
        alt: bool,
        /// Write the literal in the other spelling its type accepts.
        alt_literal: bool,
        /// Wrap the comparison in parentheses.
        paren: bool,
    },
    Const(bool),
}

/// `returned ⋉ lookup` on `returned.returned_col = lookup.lookup_col`.
#[derive(Clone, Debug)]
pub struct Join {
    pub lookup: usize,
    pub returned_col: usize,
    pub lookup_col: usize,
    /// `FROM returned JOIN lookup` rather than `FROM lookup JOIN returned`.
    pub returned_first: bool,
    /// `ON returned.c = lookup.c` rather than `ON lookup.c = returned.c`.
    pub on_returned_first: bool,
}

/// An interpreted query.
#[derive(Clone, Debug)]
pub struct Query {
    pub returned: usize,
    pub join: Option<Join>,
    pub filter: Option<Expr>,
    /// Tables are aliased `x` (returned) and `y` (lookup).
    pub alias: bool,
    /// Qualify columns of a single-table query.
    pub qualify: bool,
    pub style: Style,
}

/// Spellings that must not change what a query means.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// Keywords in lower case.
    pub lower: bool,
    /// Identifiers in double quotes.
    pub quoted: bool,
    /// `INNER JOIN` rather than `JOIN`.
    pub inner: bool,
    /// `t x` rather than `t AS x`.
    pub bare_alias: bool,
}

/// A query seed; see [`interpret`].
#[derive(Clone, Debug)]
pub struct QuerySeed {
    pub kind: u8,
    pub a: u8,
    pub b: u8,
    pub join_cols: u8,
    pub flags: u8,
    pub filter: Option<ExprSeed>,
}

#[derive(Clone, Debug)]
pub enum ExprSeed {
    Leaf(LeafSeed),
    And(Vec<ExprSeed>, bool),
    Or(Vec<ExprSeed>, bool),
}

#[derive(Clone, Debug)]
pub struct LeafSeed {
    pub lookup_side: bool,
    pub col: u8,
    pub op: u8,
    pub lit: u8,
    pub flags: u8,
}

fn leaf_seed() -> impl Strategy<Value = ExprSeed> {
    (
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(lookup_side, col, op, lit, flags)| {
            ExprSeed::Leaf(LeafSeed {
                lookup_side,
                col,
                op,
                lit,
                flags,
            })
        })
}

fn expr_seed() -> impl Strategy<Value = ExprSeed> {
    leaf_seed().prop_recursive(3, 6, 2, |inner| {
        // ORs outnumber ANDs so that results are rarely empty.
        prop_oneof![
            2 => (prop::collection::vec(inner.clone(), 2..=3), any::<bool>())
                .prop_map(|(v, p)| ExprSeed::And(v, p)),
            3 => (prop::collection::vec(inner, 2..=3), any::<bool>())
                .prop_map(|(v, p)| ExprSeed::Or(v, p)),
        ]
    })
}

pub fn query_seed() -> impl Strategy<Value = QuerySeed> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::option::weighted(0.8, expr_seed()),
    )
        .prop_map(|(kind, a, b, join_cols, flags, filter)| QuerySeed {
            kind,
            a,
            b,
            join_cols,
            flags,
            filter,
        })
}

/// Interprets `seed` against `db`: a single-table query or a semijoin (whose lookup side
/// is never an event table), with a WHERE tree over the tables in scope.
pub fn interpret(seed: &QuerySeed, db: &Db) -> Query {
    let n = db.tables.len();
    let returned = seed.a as usize % n;
    let lookups: Vec<usize> = (0..n).filter(|&i| !db.tables[i].is_event).collect();
    let join = (!seed.kind.is_multiple_of(3)).then(|| {
        let lookup = lookups[seed.b as usize % lookups.len()];
        // Join on `k`, or on the primary key `id` when the keys are u64.
        let col = |bit: u8| {
            if db.key == KeyBase::U64 && seed.join_cols & bit != 0 {
                0
            } else {
                1
            }
        };
        Join {
            lookup,
            returned_col: col(1),
            lookup_col: col(2),
            returned_first: seed.join_cols & 4 == 0,
            on_returned_first: seed.join_cols & 8 == 0,
        }
    });
    let alias = seed.flags & 1 != 0 || join.as_ref().is_some_and(|j| j.lookup == returned);
    let q = Query {
        returned,
        join,
        filter: None,
        alias,
        qualify: seed.flags & 2 != 0,
        style: Style {
            lower: seed.flags & 4 != 0,
            quoted: seed.flags & 8 != 0,
            inner: seed.flags & 16 != 0,
            bare_alias: seed.flags & 32 != 0,
        },
    };
    let filter = seed.filter.as_ref().map(|f| interpret_expr(f, db, &q));
    Query { filter, ..q }
}

fn interpret_expr(seed: &ExprSeed, db: &Db, q: &Query) -> Expr {
    match seed {
        ExprSeed::And(v, p) => Expr::And(v.iter().map(|e| interpret_expr(e, db, q)).collect(), *p),
        ExprSeed::Or(v, p) => Expr::Or(v.iter().map(|e| interpret_expr(e, db, q)).collect(), *p),
        ExprSeed::Leaf(l) => {
            let side = match &q.join {
                Some(_) if l.lookup_side => QSide::Lookup,
                _ => QSide::Returned,
            };
            let table = &db.tables[q.table_of(side)];
            let col = l.col as usize % table.columns.len();
            let column = &table.columns[col];
            let lit = match l.flags % 16 {
                0 => Lit::Null,
                1 => return Expr::Const(l.lit % 2 == 0),
                2 | 3 if column.ty == T::Identity => Lit::Sender,
                _ => Lit::Val(column.literals[l.lit as usize % column.literals.len()].clone()),
            };
            Expr::Cmp {
                side,
                col,
                op: OPS[l.op as usize % OPS.len()],
                lit,
                flipped: l.flags & 16 != 0,
                alt: l.flags & 32 != 0,
                alt_literal: l.flags & 64 != 0,
                paren: l.flags & 128 != 0,
            }
        }
    }
}

impl Query {
    pub fn table_of(&self, side: QSide) -> usize {
        match (side, &self.join) {
            (QSide::Lookup, Some(j)) => j.lookup,
            _ => self.returned,
        }
    }

    pub fn returns_event(&self, db: &Db) -> bool {
        db.tables[self.returned].is_event
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Whom a query is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Tidings,
    Sqlite,
}

/// The query as SQL text for `dialect`.
pub fn render(q: &Query, db: &Db, dialect: Dialect) -> String {
    let st = q.style;
    let kw = |k: &str| {
        if st.lower {
            k.to_ascii_lowercase()
        } else {
            k.to_string()
        }
    };
    let ident = |name: &str| {
        if st.quoted {
            format!("\"{name}\"")
        } else {
            name.to_string()
        }
    };
    let alias_of = |side: QSide| match (q.alias, side) {
        (false, _) => None,
        (true, QSide::Returned) => Some("x"),
        (true, QSide::Lookup) => Some("y"),
    };
    let visible = |side: QSide| match alias_of(side) {
        Some(a) => ident(a),
        None => ident(&db.tables[q.table_of(side)].name),
    };
    let table_ref = |side: QSide| {
        let t = ident(&db.tables[q.table_of(side)].name);
        match alias_of(side) {
            Some(a) if st.bare_alias => format!("{t} {}", ident(a)),
            Some(a) => format!("{t} {} {}", kw("AS"), ident(a)),
            None => t,
        }
    };
    let mut sql = String::new();
    match &q.join {
        None => {
            let proj = if q.qualify {
                format!("{}.*", visible(QSide::Returned))
            } else {
                "*".into()
            };
            let _ = write!(
                sql,
                "{} {proj} {} {}",
                kw("SELECT"),
                kw("FROM"),
                table_ref(QSide::Returned)
            );
        }
        Some(j) => {
            let (first, second) = if j.returned_first {
                (QSide::Returned, QSide::Lookup)
            } else {
                (QSide::Lookup, QSide::Returned)
            };
            let col = |side: QSide| {
                let (t, c) = match side {
                    QSide::Returned => (q.returned, j.returned_col),
                    QSide::Lookup => (j.lookup, j.lookup_col),
                };
                format!("{}.{}", visible(side), ident(&db.tables[t].columns[c].name))
            };
            let (l, r) = if j.on_returned_first {
                (col(QSide::Returned), col(QSide::Lookup))
            } else {
                (col(QSide::Lookup), col(QSide::Returned))
            };
            let join = if st.inner {
                format!("{} {}", kw("INNER"), kw("JOIN"))
            } else {
                kw("JOIN")
            };
            let _ = write!(
                sql,
                "{} {}.* {} {} {join} {} {} {l} = {r}",
                kw("SELECT"),
                visible(QSide::Returned),
                kw("FROM"),
                table_ref(first),
                table_ref(second),
                kw("ON"),
            );
        }
    }
    if let Some(f) = &q.filter {
        let _ = write!(sql, " {} ", kw("WHERE"));
        let ctx = RenderCtx {
            q,
            db,
            dialect,
            kw: &kw,
            ident: &ident,
            visible: &visible,
        };
        render_expr(f, &ctx, false, &mut sql);
    }
    sql
}

struct RenderCtx<'a> {
    q: &'a Query,
    db: &'a Db,
    dialect: Dialect,
    kw: &'a dyn Fn(&str) -> String,
    ident: &'a dyn Fn(&str) -> String,
    visible: &'a dyn Fn(QSide) -> String,
}

fn render_expr(e: &Expr, cx: &RenderCtx<'_>, inside_and: bool, out: &mut String) {
    match e {
        Expr::And(v, paren) | Expr::Or(v, paren) => {
            let and = matches!(e, Expr::And(..));
            // An OR inside an AND needs parentheses; anything else only when the seed says.
            let paren = *paren || (inside_and && !and);
            if paren {
                out.push('(');
            }
            let sep = format!(" {} ", (cx.kw)(if and { "AND" } else { "OR" }));
            for (i, c) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(&sep);
                }
                render_expr(c, cx, and, out);
            }
            if paren {
                out.push(')');
            }
        }
        Expr::Const(b) => out.push_str(&(cx.kw)(if *b { "TRUE" } else { "FALSE" })),
        Expr::Cmp {
            side,
            col,
            op,
            lit,
            flipped,
            alt,
            alt_literal,
            paren,
        } => {
            let table = &cx.db.tables[cx.q.table_of(*side)];
            let column = &table.columns[*col];
            let name = (cx.ident)(&column.name);
            let col_sql = if cx.q.join.is_some() || cx.q.qualify {
                format!("{}.{name}", (cx.visible)(*side))
            } else {
                name
            };
            let lit_sql = match (cx.dialect, lit) {
                (_, Lit::Null) => (cx.kw)("NULL"),
                (Dialect::Tidings, lit) => tidings_literal(lit, &column.ty, *alt, *alt_literal),
                (Dialect::Sqlite, lit) => sqlite_literal(lit),
            };
            // `lit op col` keeps the operator as written: `5 < c` means 5 < c.
            let (l, r) = if *flipped {
                (lit_sql, col_sql)
            } else {
                (col_sql, lit_sql)
            };
            if *paren {
                let _ = write!(out, "({l} {} {r})", op.sql(*alt));
            } else {
                let _ = write!(out, "{l} {} {r}", op.sql(*alt));
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A float as decimal text that parses back to exactly `f`.
fn float_text(f: f64) -> String {
    // `{:?}` is the shortest text that round-trips, always with a `.` or an exponent.
    format!("{f:?}")
}

/// A literal as Tidings reads it. `alt` writes an enum as its tag; `alt_literal` uses the
/// other spelling a type accepts: an integral float as an integer, bytes as `0x..`, an
/// identity as a `'0x..'` string, `TRUE`/`FALSE` in lower case.
pub fn tidings_literal(lit: &Lit, ty: &T, alt: bool, alt_literal: bool) -> String {
    let v = match lit {
        Lit::Null => return "NULL".into(),
        Lit::Sender => return ":sender".into(),
        Lit::Val(v) => v,
    };
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => match (b, alt_literal) {
            (true, false) => "TRUE".into(),
            (false, false) => "FALSE".into(),
            (true, true) => "true".into(),
            (false, true) => "false".into(),
        },
        Value::U8(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::U128(n) => n.to_string(),
        Value::I8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::I128(n) => n.to_string(),
        // The shortest text that reads back as this f32, as a user would write it.
        Value::F32(f) if !alt_literal => format!("{f:?}"),
        Value::F32(f) => float_literal(f64::from(*f), alt_literal),
        Value::F64(f) => float_literal(*f, alt_literal),
        Value::String(s) => quote(s),
        Value::Bytes(b) if alt_literal => format!("0x{}", hex(b)),
        Value::Bytes(b) => format!("X'{}'", hex(b)),
        Value::Identity(i) if alt_literal => format!("'0x{}'", hex(&i.0).to_lowercase()),
        Value::Identity(i) => format!("X'{}'", hex(&i.0)),
        Value::Timestamp(t) => t.0.to_string(),
        Value::Enum(tag) => match ty.non_null() {
            T::Enum(e) if !alt => quote(&e.variants[*tag as usize]),
            _ => tag.to_string(),
        },
    }
}

fn float_literal(f: f64, as_integer: bool) -> String {
    if as_integer && f.fract() == 0.0 && f.abs() < 1e15 {
        // An integer literal compared with a float column.
        format!("{}", f as i64)
    } else {
        float_text(f)
    }
}

// ---------------------------------------------------------------------------------------
// SQLite encoding
// ---------------------------------------------------------------------------------------

/// A value as SQLite stores it, ordered so that SQLite's comparisons agree with Tidings'.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Enc {
    Null,
    Int(i64),
    /// The bits of an `f64` (never NaN, never `-0.0`).
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

/// Encodes `v` for SQLite: integers wider than 63 bits, identities and bytes as
/// big-endian BLOBs (signed ones with the sign bit flipped, so that byte order is numeric
/// order), the rest as INTEGER, REAL or TEXT.
pub fn encode(v: &Value) -> Enc {
    match v {
        Value::Null => Enc::Null,
        Value::Bool(b) => Enc::Int(i64::from(*b)),
        Value::U8(n) => Enc::Int((*n).into()),
        Value::U16(n) => Enc::Int((*n).into()),
        Value::U32(n) => Enc::Int((*n).into()),
        Value::U64(n) => Enc::Blob(n.to_be_bytes().to_vec()),
        Value::U128(n) => Enc::Blob(n.to_be_bytes().to_vec()),
        Value::I8(n) => Enc::Int((*n).into()),
        Value::I16(n) => Enc::Int((*n).into()),
        Value::I32(n) => Enc::Int((*n).into()),
        Value::I64(n) => Enc::Int(*n),
        Value::I128(n) => Enc::Blob(((*n as u128) ^ (1 << 127)).to_be_bytes().to_vec()),
        Value::F32(f) => Enc::Real(f64::from(*f).to_bits()),
        Value::F64(f) => Enc::Real(f.to_bits()),
        Value::String(s) => Enc::Text(s.to_string()),
        Value::Bytes(b) => Enc::Blob(b.to_vec()),
        Value::Identity(i) => Enc::Blob(i.0.to_vec()),
        Value::Timestamp(t) => Enc::Int(t.0),
        Value::Enum(tag) => Enc::Int((*tag).into()),
    }
}

pub fn encode_row(row: &[Value]) -> Vec<Enc> {
    row.iter().map(encode).collect()
}

/// An encoded value as an SQLite literal.
pub fn enc_literal(e: &Enc) -> String {
    match e {
        Enc::Null => "NULL".into(),
        Enc::Int(n) => n.to_string(),
        Enc::Real(bits) => float_text(f64::from_bits(*bits)),
        Enc::Text(s) => quote(s),
        Enc::Blob(b) => format!("X'{}'", hex(b)),
    }
}

/// A literal as SQLite reads it (encoded like the column it is compared with).
pub fn sqlite_literal(lit: &Lit) -> String {
    match lit {
        Lit::Null => "NULL".into(),
        Lit::Sender => enc_literal(&encode(&caller_identity().into())),
        Lit::Val(v) => enc_literal(&encode(v)),
    }
}

impl From<&Enc> for rusqlite::types::Value {
    fn from(e: &Enc) -> Self {
        use rusqlite::types::Value as S;
        match e {
            Enc::Null => S::Null,
            Enc::Int(n) => S::Integer(*n),
            Enc::Real(bits) => S::Real(f64::from_bits(*bits)),
            Enc::Text(s) => S::Text(s.clone()),
            Enc::Blob(b) => S::Blob(b.clone()),
        }
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Enc {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef as S;
        match v {
            S::Null => Enc::Null,
            S::Integer(n) => Enc::Int(n),
            S::Real(f) => Enc::Real(f.to_bits()),
            S::Text(t) => Enc::Text(String::from_utf8(t.to_vec()).expect("utf-8 text")),
            S::Blob(b) => Enc::Blob(b.to_vec()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model: naive evaluation, independent of the crate under test
// ---------------------------------------------------------------------------------------

/// SQL comparison of two values of one column type; `None` when either is NULL.
pub fn model_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    use Value as V;
    Some(match (a, b) {
        (V::Null, _) | (_, V::Null) => return None,
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::U8(x), V::U8(y)) => x.cmp(y),
        (V::U16(x), V::U16(y)) => x.cmp(y),
        (V::U32(x), V::U32(y)) => x.cmp(y),
        (V::U64(x), V::U64(y)) => x.cmp(y),
        (V::U128(x), V::U128(y)) => x.cmp(y),
        (V::I8(x), V::I8(y)) => x.cmp(y),
        (V::I16(x), V::I16(y)) => x.cmp(y),
        (V::I32(x), V::I32(y)) => x.cmp(y),
        (V::I64(x), V::I64(y)) => x.cmp(y),
        (V::I128(x), V::I128(y)) => x.cmp(y),
        (V::F32(x), V::F32(y)) => x.partial_cmp(y)?,
        (V::F64(x), V::F64(y)) => x.partial_cmp(y)?,
        (V::String(x), V::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        (V::Identity(x), V::Identity(y)) => x.0.cmp(&y.0),
        (V::Timestamp(x), V::Timestamp(y)) => x.0.cmp(&y.0),
        (V::Enum(x), V::Enum(y)) => x.cmp(y),
        (x, y) => panic!("the generator compared {x:?} with {y:?}"),
    })
}

/// Whether `e` holds for returned row `r` and, in a join, lookup row `s`.
pub fn model_holds(e: &Expr, r: &[Value], s: Option<&[Value]>) -> bool {
    match e {
        Expr::And(v, _) => v.iter().all(|c| model_holds(c, r, s)),
        Expr::Or(v, _) => v.iter().any(|c| model_holds(c, r, s)),
        Expr::Const(b) => *b,
        Expr::Cmp {
            side,
            col,
            op,
            lit,
            flipped,
            ..
        } => {
            let row = match side {
                QSide::Returned => r,
                QSide::Lookup => s.expect("a lookup column outside a join"),
            };
            let lit = match lit {
                Lit::Null => Value::Null,
                Lit::Sender => caller_identity().into(),
                Lit::Val(v) => v.clone(),
            };
            let ord = if *flipped {
                model_cmp(&lit, &row[*col])
            } else {
                model_cmp(&row[*col], &lit)
            };
            ord.is_some_and(|o| op.test(o))
        }
    }
}

/// Whether returned row `r` and lookup row `s` join.
pub fn model_joins(q: &Query, r: &[Value], s: &[Value]) -> bool {
    let j = q.join.as_ref().expect("a join");
    model_cmp(&r[j.returned_col], &s[j.lookup_col]) == Some(Ordering::Equal)
}

/// Whether returned row `r` belongs to the result given the lookup rows `lookup` (with
/// the multiplicity a semijoin gives it).
pub fn model_multiplicity(q: &Query, r: &[Value], lookup: &[Row]) -> usize {
    match &q.join {
        None => usize::from(q.filter.as_ref().is_none_or(|f| model_holds(f, r, None))),
        Some(_) => lookup
            .iter()
            .filter(|s| {
                model_joins(q, r, s) && q.filter.as_ref().is_none_or(|f| model_holds(f, r, Some(s)))
            })
            .count(),
    }
}

/// The full result of a query over persistent tables, naively, as a multiset.
pub fn model_rows(q: &Query, state: &CommittedState, db: &Db) -> BTreeMap<Row, usize> {
    let returned = state.rows(db.tables[q.returned].id);
    let lookup = q
        .join
        .as_ref()
        .map(|j| state.rows(db.tables[j.lookup].id))
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for r in returned {
        let n = model_multiplicity(q, &r, &lookup);
        if n > 0 {
            *out.entry(r).or_insert(0) += n;
        }
    }
    out
}

/// The events of one commit an event-returning query delivers: the commit's inserts into
/// the returned event table, in TxData order, that pass the filter (and, in a join, have
/// at least one partner in the post-state).
pub fn model_events(q: &Query, state: &CommittedState, tx: &TxData, db: &Db) -> Vec<Row> {
    let Some(update) = tx.table(db.tables[q.returned].id) else {
        return Vec::new();
    };
    let lookup = q
        .join
        .as_ref()
        .map(|j| state.rows(db.tables[j.lookup].id))
        .unwrap_or_default();
    update
        .inserts
        .iter()
        .filter(|e| model_multiplicity(q, e, &lookup) > 0)
        .cloned()
        .collect()
}

/// A multiset of rows.
pub fn bag<R: Ord>(rows: impl IntoIterator<Item = R>) -> BTreeMap<R, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r).or_insert(0) += 1;
    }
    out
}

/// Compiles `sql`, which must yield exactly one plan.
pub fn compile_one(sql: &str, schema: &Schema) -> Result<Plan, String> {
    let mut plans = compile(sql, schema, 1, caller()).map_err(|e| format!("{sql}: {e}"))?;
    if plans.len() != 1 {
        return Err(format!("{sql}: {} plans", plans.len()));
    }
    Ok(plans.remove(0))
}

// ---------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------

/// Number of value choices an operation carries (one per non-id column at most).
pub const VALUE_SEEDS: usize = 4;

/// An operation seed; see [`apply_op`].
#[derive(Clone, Debug)]
pub enum OpSeed {
    Insert {
        table: u8,
        id: u8,
        vals: [u8; VALUE_SEEDS],
    },
    Update {
        table: u8,
        id: u8,
        vals: [u8; VALUE_SEEDS],
    },
    Delete {
        table: u8,
        id: u8,
    },
}

pub fn op_seed() -> impl Strategy<Value = OpSeed> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), any::<[u8; VALUE_SEEDS]>())
            .prop_map(|(table, id, vals)| OpSeed::Insert { table, id, vals }),
        2 => (any::<u8>(), any::<u8>(), any::<[u8; VALUE_SEEDS]>())
            .prop_map(|(table, id, vals)| OpSeed::Update { table, id, vals }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(table, id)| OpSeed::Delete { table, id }),
    ]
}

/// One transaction's operations: mostly a few on any table, sometimes a bulk of them on
/// one table, so that commits with many rows of one table (which incremental evaluation
/// reads in packed form) are common too.
pub fn tx_seed() -> impl Strategy<Value = Vec<OpSeed>> {
    prop_oneof![
        3 => prop::collection::vec(op_seed(), 0..=6),
        1 => (any::<u8>(), prop::collection::vec(op_seed(), 30..=60)).prop_map(|(t, ops)| {
            ops.into_iter()
                .map(|op| match op {
                    OpSeed::Insert { id, vals, .. } => OpSeed::Insert { table: t, id, vals },
                    OpSeed::Update { id, vals, .. } => OpSeed::Update { table: t, id, vals },
                    OpSeed::Delete { id, .. } => OpSeed::Delete { table: t, id },
                })
                .collect()
        }),
    ]
}

/// The row of `table` with primary key `id` and column values chosen by `vals`.
pub fn make_row(table: &TableInfo, id: u64, vals: &[u8; VALUE_SEEDS]) -> Row {
    let mut values = vec![Value::U64(id)];
    for (c, seed) in table.columns[1..].iter().zip(vals) {
        values.push(c.values[*seed as usize % c.values.len()].clone());
    }
    Row::new(values)
}

/// What one transaction made of the event tables: per table, the live event rows in
/// first-insertion order (what TxData must list).
#[derive(Default, Debug)]
pub struct EventLog {
    pub rows: BTreeMap<usize, Vec<Row>>,
}

/// Applies `op` to `tx`. Persistent tables: insert, update or delete by primary key,
/// ignoring constraint errors (small domains make them common, and a failed operation
/// must change nothing). Event tables: insert with a fresh `auto_inc` id, update or
/// delete one of this transaction's events.
pub fn apply_op(tx: &mut MutTx, db: &Db, op: &OpSeed, events: &mut EventLog) {
    let (table, id) = match op {
        OpSeed::Insert { table, id, .. }
        | OpSeed::Update { table, id, .. }
        | OpSeed::Delete { table, id } => (*table as usize % db.tables.len(), *id),
    };
    let info = &db.tables[table];
    if info.is_event {
        let log = events.rows.entry(table).or_default();
        match op {
            OpSeed::Insert { vals, .. } => {
                let row = tx
                    .insert(info.id, make_row(info, 0, vals))
                    .expect("an event insert with a fresh id succeeds");
                log.push(row);
            }
            OpSeed::Update { vals, .. } if !log.is_empty() => {
                let at = id as usize % log.len();
                let Value::U64(eid) = log[at][0] else {
                    unreachable!("ids are u64")
                };
                let row = tx
                    .update(info.id, make_row(info, eid, vals))
                    .expect("updating an event of this transaction succeeds");
                log[at] = row;
            }
            OpSeed::Delete { .. } if !log.is_empty() => {
                let row = log.remove(id as usize % log.len());
                assert!(
                    tx.delete(info.id, row).expect("delete"),
                    "the event was visible"
                );
            }
            _ => {}
        }
        return;
    }
    let id = u64::from(id) % ID_DOMAIN;
    match op {
        OpSeed::Insert { vals, .. } => {
            let _ = tx.insert(info.id, make_row(info, id, vals));
        }
        OpSeed::Update { vals, .. } => {
            let _ = tx.update(info.id, make_row(info, id, vals));
        }
        OpSeed::Delete { .. } => {
            if let Some(row) = tx.find(info.id, 0, &[Value::U64(id)]).expect("pk lookup") {
                assert!(
                    tx.delete(info.id, row).expect("delete"),
                    "the row was visible"
                );
            }
        }
    }
}

/// Runs `ops` in one transaction and commits it; `None` when it changed nothing.
pub fn run_tx(ds: &Datastore, db: &Db, ops: &[OpSeed]) -> (Option<Arc<TxData>>, EventLog) {
    let mut tx = ds.begin_mut_tx();
    let mut events = EventLog::default();
    for op in ops {
        apply_op(&mut tx, db, op, &mut events);
    }
    let commit = tx.commit().expect("an in-memory commit succeeds");
    (commit.tx_data, events)
}

/// A whole test case.
#[derive(Clone, Debug)]
pub struct Case {
    pub schema: SchemaSpec,
    pub queries: Vec<QuerySeed>,
    /// The first transaction, committed before the queries are compiled.
    pub seed: Vec<OpSeed>,
    pub txs: Vec<Vec<OpSeed>>,
}

pub fn case_strategy(allow_events: bool) -> impl Strategy<Value = Case> {
    (
        schema_strategy(allow_events),
        prop::collection::vec(query_seed(), 4..=10),
        prop::collection::vec(op_seed(), 6..=20),
        prop::collection::vec(tx_seed(), 3..=16),
    )
        .prop_map(|(schema, queries, seed, txs)| Case {
            schema,
            queries,
            seed,
            txs,
        })
}

// ---------------------------------------------------------------------------------------
// SQLite mirror
// ---------------------------------------------------------------------------------------

pub fn create_tables(conn: &Connection, db: &Db) {
    for t in &db.tables {
        // `id` is the primary key on both sides, so both refuse a duplicate id. Columns
        // carry no type, so SQLite applies no affinity conversions.
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| match c.name.as_str() {
                "id" => "id PRIMARY KEY".to_string(),
                other => other.to_string(),
            })
            .collect();
        conn.execute(
            &format!("CREATE TABLE {} ({})", t.name, cols.join(", ")),
            [],
        )
        .expect("create table");
    }
}

/// Applies one commit's TxData to SQLite: deletes by primary key, then inserts.
pub fn mirror(conn: &Connection, db: &Db, tx: &TxData) -> Result<(), TestCaseError> {
    for update in &tx.tables {
        let t = &db.tables[update.table_id.idx()];
        for row in update.deletes.iter() {
            let id = rusqlite::types::Value::from(&encode(&row[0]));
            let n = conn
                .execute(&format!("DELETE FROM {} WHERE id = ?1", t.name), [id])
                .expect("delete");
            prop_assert_eq!(
                n,
                1,
                "TxData deletes {:?} from {}, which SQLite lacks",
                row,
                t.name
            );
        }
        let marks = vec!["?"; t.columns.len()].join(", ");
        let sql = format!("INSERT INTO {} VALUES ({marks})", t.name);
        for row in update.inserts.iter() {
            let values: Vec<rusqlite::types::Value> =
                row.iter().map(|v| (&encode(v)).into()).collect();
            conn.execute(&sql, rusqlite::params_from_iter(values))
                .expect("insert");
        }
    }
    Ok(())
}

/// What SQLite returns for `sql`, as a multiset of encoded rows.
pub fn sqlite_rows(
    conn: &Connection,
    sql: &str,
) -> Result<BTreeMap<Vec<Enc>, usize>, TestCaseError> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| TestCaseError::fail(format!("SQLite rejects {sql}: {e}")))?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n).map(|i| r.get_ref(i).map(Enc::from)).collect()
        })
        .and_then(|rows| rows.collect::<Result<Vec<Vec<Enc>>, _>>())
        .map_err(|e| TestCaseError::fail(format!("SQLite fails on {sql}: {e}")))?;
    Ok(bag(rows))
}
