//! A module: the tables, reducers and visibility rules an application declares.
//!
//! Reducers are plain Rust functions `fn(&mut ReducerContext, Args) -> Result<R, String>`.
//! Arguments travel as a MessagePack array (positional), so the same reducer serves
//! typed in-process calls and remote callers; `Args` is any `Deserialize` tuple or struct
//! and `R` any `Serialize` value.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tidings_engine::{
    Identity, MutTx, Row, Schema, SchemaError, SqlType, TableId, TableSchema, TableType, Timestamp,
    TxError,
};

use crate::messages::ConnectionId;

/// What a reducer sees: who called, when, and the database.
pub struct ReducerContext<'a> {
    /// The caller's identity ([`Identity::ZERO`] for the embedding application).
    pub sender: Identity,
    /// The caller's connection, when it came through one.
    pub connection_id: Option<ConnectionId>,
    /// When the reducer started.
    pub timestamp: Timestamp,
    /// The database, inside this reducer's transaction.
    pub db: Db<'a>,
}

/// The database as a reducer sees it.
pub struct Db<'a> {
    tx: &'a mut MutTx,
}

impl<'a> Db<'a> {
    pub(crate) fn new(tx: &'a mut MutTx) -> Self {
        Db { tx }
    }

    /// A typed handle on the table of `T`.
    pub fn table<T: TableType>(&mut self) -> Result<TableHandle<'_, T>, TxError> {
        let id = self.tx.table_id(T::NAME)?;
        Ok(TableHandle {
            tx: self.tx,
            id,
            _t: PhantomData,
        })
    }

    /// The transaction itself, for the dynamic (schema-as-data) API.
    pub fn tx(&mut self) -> &mut MutTx {
        self.tx
    }
}

/// A typed table inside a reducer's transaction.
pub struct TableHandle<'a, T> {
    tx: &'a mut MutTx,
    id: TableId,
    _t: PhantomData<T>,
}

impl<T: TableType> TableHandle<'_, T> {
    fn typed(row: Row) -> Result<T, TxError> {
        T::from_row(row).map_err(|e| TxError::UnknownTable(format!("{}: {e}", T::NAME)))
    }

    /// Inserts `row` (zero `auto_inc` columns draw the next value); returns it as stored.
    pub fn insert(&mut self, row: T) -> Result<T, TxError> {
        Self::typed(self.tx.insert(self.id, row.into_row())?)
    }

    /// Deletes `row`; returns whether it was there.
    pub fn delete(&mut self, row: T) -> Result<bool, TxError> {
        self.tx.delete(self.id, row.into_row())
    }

    /// Replaces the row with the same primary key.
    pub fn update(&mut self, row: T) -> Result<T, TxError> {
        Self::typed(self.tx.update(self.id, row.into_row())?)
    }

    /// Every visible row.
    pub fn iter(&self) -> Result<Vec<T>, TxError> {
        self.tx
            .scan(self.id)?
            .into_iter()
            .map(Self::typed)
            .collect()
    }

    /// Number of visible rows.
    pub fn count(&self) -> Result<usize, TxError> {
        self.tx.count(self.id)
    }

    /// The row whose unique (or primary-key) column `column` equals `value`.
    pub fn find<V: SqlType>(&self, column: &str, value: V) -> Result<Option<T>, TxError> {
        let index = self.tx.index_id(self.id, &[column])?;
        self.tx
            .find(self.id, index, &[value.into_value()])?
            .map(Self::typed)
            .transpose()
    }

    /// Rows whose indexed column `column` equals `value`.
    pub fn filter<V: SqlType>(&self, column: &str, value: V) -> Result<Vec<T>, TxError> {
        let index = self.tx.index_id(self.id, &[column])?;
        self.tx
            .seek(self.id, index, &[value.into_value()])?
            .into_iter()
            .map(Self::typed)
            .collect()
    }
}

/// Why a reducer call did not commit.
#[derive(Debug, Clone, PartialEq)]
pub enum ReducerError {
    /// The reducer returned an error.
    User(String),
    /// The arguments do not decode as the reducer's argument type.
    Args(String),
    /// The call could not run (unknown reducer), the reducer panicked, or the engine
    /// failed.
    Internal(String),
}

pub(crate) type ReducerFn =
    Arc<dyn Fn(&mut ReducerContext<'_>, &[u8]) -> Result<Vec<u8>, ReducerError> + Send + Sync>;

/// A declared reducer.
#[derive(Clone)]
pub struct ReducerDef {
    /// Its name.
    pub name: Arc<str>,
    /// The Rust type name of its arguments (for schema listings).
    pub args_type: &'static str,
    /// The Rust type name of its return value.
    pub return_type: &'static str,
    /// Argument names, when declared ([`Module::arg_names`]); they let remote callers
    /// pass arguments by name.
    pub arg_names: Option<Vec<Arc<str>>>,
    pub(crate) run: ReducerFn,
}

/// Tables, reducers and visibility rules.
#[derive(Clone, Default)]
pub struct Module {
    tables: Vec<TableSchema>,
    reducers: BTreeMap<String, ReducerDef>,
    rules: Vec<(String, String)>,
}

impl Module {
    /// An empty module.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the table of `T`.
    pub fn table<T: TableType>(mut self) -> Self {
        self.tables.push(T::schema());
        self
    }

    /// Declares a table from a dynamic schema.
    pub fn table_schema(mut self, schema: TableSchema) -> Self {
        self.tables.push(schema);
        self
    }

    /// Declares a visibility rule for `table` (SQL with `:sender`; rules of a table are
    /// OR-ed).
    pub fn rule(mut self, table: &str, sql: &str) -> Self {
        self.rules.push((table.into(), sql.into()));
        self
    }

    /// Declares a reducer taking `A` (decoded from a MessagePack array) and returning `R`.
    pub fn reducer<A, R, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(&mut ReducerContext<'_>, A) -> Result<R, String> + Send + Sync + 'static,
    {
        let owned: Arc<str> = name.into();
        let reducer_name = owned.clone();
        let run: ReducerFn = Arc::new(move |ctx, args| {
            // Remote callers send "no arguments" as an empty array (what `[]` in JSON
            // becomes), while serde reads `()` only from nil.
            let decoded = rmp_serde::from_slice(args).or_else(|e| match args {
                [0x90] => rmp_serde::from_slice(&[0xc0]).map_err(|_| e),
                _ => Err(e),
            });
            let args: A = decoded.map_err(|e| {
                ReducerError::Args(format!(
                    "arguments of reducer `{reducer_name}` do not decode as {}: {e}",
                    std::any::type_name::<A>()
                ))
            })?;
            let value = f(ctx, args).map_err(ReducerError::User)?;
            rmp_serde::to_vec(&value).map_err(|e| {
                ReducerError::Internal(format!(
                    "return value of reducer `{reducer_name}` does not encode: {e}"
                ))
            })
        });
        self.reducers.insert(
            name.into(),
            ReducerDef {
                name: owned,
                args_type: std::any::type_name::<A>(),
                return_type: std::any::type_name::<R>(),
                arg_names: None,
                run,
            },
        );
        self
    }

    /// Names the arguments of the reducer `reducer`, in order, so that remote callers may
    /// pass them by name (`POST /call/{reducer}` with a JSON object). Rust closures do
    /// not carry their parameter names, hence the declaration. Unknown reducers are
    /// ignored here and show up as missing when called.
    pub fn arg_names(mut self, reducer: &str, names: &[&str]) -> Self {
        if let Some(def) = self.reducers.get_mut(reducer) {
            def.arg_names = Some(names.iter().map(|n| Arc::from(*n)).collect());
        }
        self
    }

    /// The database schema of the declared tables.
    pub fn schema(&self) -> Result<Schema, SchemaError> {
        Schema::new(self.tables.iter().cloned())
    }

    /// The reducer named `name`.
    pub fn reducer_def(&self, name: &str) -> Option<&ReducerDef> {
        self.reducers.get(name)
    }

    /// Every reducer, by name.
    pub fn reducers(&self) -> impl Iterator<Item = &ReducerDef> {
        self.reducers.values()
    }

    /// The visibility rules, as (table, SQL).
    pub fn rules(&self) -> &[(String, String)] {
        &self.rules
    }
}

/// Encodes reducer arguments the way remote callers send them (a MessagePack array).
pub fn encode_args<A: Serialize>(args: &A) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec(args)
}

/// Decodes a reducer's MessagePack return value.
pub fn decode_value<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
