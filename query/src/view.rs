//! Views: named queries that subscriptions read like tables (`SELECT * FROM my_view`).
//!
//! A view is declared either with the typed builder, through a [`ViewCtx`] that only
//! hands out tables able to back a view, or from SQL for a server that learns its views
//! at run time ([`ViewDef::from_sql`]). Either way a view is compiled per caller, so a
//! view using [`Sender`](crate::builder::Sender) or `:sender` shows each caller their
//! own rows, and a view reads with the caller's rights: a private table behind a view is
//! still private.
//!
//! Views cannot read event tables: event rows exist only inside the transaction that
//! inserted them, so a view over them would hold nothing anyone could read. The typed
//! path rejects that when compiling the program; the SQL path in [`validate_views`] (and
//! again when a view is compiled) with exactly [`VIEW_EVENT_ERROR`].
//!
//! [`compile_with_views`] compiles a subscription whose `FROM` names a view by
//! substituting the view's query. A `WHERE` on top of a view is AND-ed onto the view's
//! predicate: it can only name columns of the rows the view returns, and filtering
//! those rows commutes with the view's semijoin, if it has one. A view cannot be joined,
//! and a `FROM *` view returning several tables cannot be filtered; both are rejected
//! with their own error.

use std::sync::Arc;

use thiserror::Error;
use tidings_engine::typed::{CanBeLookupTable, HasCols};
use tidings_engine::{Identity, Schema};

use crate::builder::{BuildError, Joined, Query, Single, UntypedQuery};
use crate::check::{self, Caller, CheckError, CheckErrorKind, Pred, TypedQuery};
use crate::parse::ast::{self, Projection, Select, TableRef};
use crate::plan::{self, Plan};
use crate::{CompileError, parse};

/// Exactly the text users see when a view reads an event table.
pub const VIEW_EVENT_ERROR: &str = "Views cannot read event tables";

/// Hands out the tables a typed view may read: every table but event tables.
#[derive(Debug)]
pub struct ViewCtx {
    // Only `ViewDef::new` makes one, so a view's tables come from here.
    _private: (),
}

impl ViewCtx {
    /// Every row of `T`, to narrow and join like any builder query.
    pub fn from<T: HasCols + CanBeLookupTable>(&self) -> Query<T> {
        Query::new()
    }
}

mod sealed {
    use crate::builder::UntypedQuery;

    /// Keeps the conversion out of users' reach, so [`super::ViewSource`] stays a promise
    /// about types rather than something anyone can implement.
    pub trait Sealed {
        fn into_untyped(self) -> UntypedQuery;
    }
}

/// A builder query every table of which may back a view.
///
/// [`ViewCtx::from`] already refuses event tables; this catches one joined in from
/// elsewhere (`ctx.from::<A>().right_semijoin(Event::query(), ..)`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot define a view",
    note = "a view's query must start from `ViewCtx::from` and read no event table"
)]
pub trait ViewSource: sealed::Sealed {}

impl<T: CanBeLookupTable> sealed::Sealed for Query<T, Single> {
    fn into_untyped(self) -> UntypedQuery {
        self.untyped().clone()
    }
}

impl<T: CanBeLookupTable> ViewSource for Query<T, Single> {}

impl<T: CanBeLookupTable, R: CanBeLookupTable> sealed::Sealed for Query<T, Joined<R>> {
    fn into_untyped(self) -> UntypedQuery {
        self.untyped().clone()
    }
}

impl<T: CanBeLookupTable, R: CanBeLookupTable> ViewSource for Query<T, Joined<R>> {}

/// How a view's rows are defined.
#[derive(Clone, Debug)]
pub enum ViewQuery {
    /// A typed builder query.
    Builder(UntypedQuery),
    /// A subscription SQL statement, which may use `:sender`.
    Sql(Arc<str>),
}

/// A named view.
#[derive(Clone, Debug)]
pub struct ViewDef {
    name: Arc<str>,
    query: ViewQuery,
}

impl ViewDef {
    /// A view defined with the typed builder: `ViewDef::new("mine", |ctx| ctx.from::<T>()...)`.
    pub fn new<Q: ViewSource>(
        name: impl Into<Arc<str>>,
        define: impl FnOnce(&ViewCtx) -> Q,
    ) -> Self {
        let query = define(&ViewCtx { _private: () }).into_untyped();
        ViewDef {
            name: name.into(),
            query: ViewQuery::Builder(query),
        }
    }

    /// A view defined by a SQL statement; checked by [`validate_views`], not here.
    pub fn from_sql(name: impl Into<Arc<str>>, sql: impl Into<Arc<str>>) -> Self {
        ViewDef {
            name: name.into(),
            query: ViewQuery::Sql(sql.into()),
        }
    }

    /// The view's name, as subscriptions write it after `FROM`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The view's definition.
    pub fn query(&self) -> &ViewQuery {
        &self.query
    }

    /// Compiles the view for `caller`: one plan, or one per table for a `FROM *` view.
    pub fn compile(
        &self,
        schema: &Schema,
        schema_version: u64,
        caller: Caller,
    ) -> Result<Vec<Plan>, ViewError> {
        self.typed(schema, caller)?
            .into_iter()
            .map(|q| self.plan(q, schema, schema_version))
            .collect()
    }

    /// The view's checked queries for `caller`, event tables refused first so that the
    /// error is the same whatever else is wrong with the view.
    fn typed(&self, schema: &Schema, caller: Caller) -> Result<Vec<TypedQuery>, ViewError> {
        match &self.query {
            ViewQuery::Builder(q) => {
                self.refuse_event_tables(schema, q.tables())?;
                let typed = q
                    .to_typed(schema, caller)
                    .map_err(|e| self.build_error(e))?;
                Ok(vec![typed])
            }
            ViewQuery::Sql(sql) => {
                let select = parse::parse(sql).map_err(|e| self.sql_error(e))?;
                self.refuse_event_tables(schema, from_tables(&select))?;
                check::check(&select, schema, caller).map_err(|e| self.sql_error(e))
            }
        }
    }

    /// Plans one of the view's queries, with errors named after the view.
    fn plan(&self, q: TypedQuery, schema: &Schema, schema_version: u64) -> Result<Plan, ViewError> {
        let plan = plan::plan(q, schema, schema_version).map_err(|e| match &self.query {
            ViewQuery::Builder(_) => self.build_error(e),
            ViewQuery::Sql(_) => self.sql_error(e),
        })?;
        // The up-front check goes by name; this one goes by what was actually planned,
        // so no path can slip an event table past it.
        if plan.reads_from_event_table() {
            return Err(self.event_error(plan.returned_table_name().clone()));
        }
        Ok(plan)
    }

    fn refuse_event_tables<'a>(
        &self,
        schema: &Schema,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ViewError> {
        for name in tables {
            if let Some(ts) = schema.table_id(name).and_then(|id| schema.table(id))
                && ts.is_event
            {
                return Err(self.event_error(ts.name.clone()));
            }
        }
        Ok(())
    }

    fn event_error(&self, table: Arc<str>) -> ViewError {
        ViewError::ReadsEventTable {
            view: self.name.clone(),
            table,
        }
    }

    fn build_error(&self, e: impl Into<BuildError>) -> ViewError {
        ViewError::Builder {
            view: self.name.clone(),
            error: e.into(),
        }
    }

    fn sql_error(&self, e: impl Into<CompileError>) -> ViewError {
        ViewError::Sql {
            view: self.name.clone(),
            error: e.into(),
        }
    }
}

/// The tables a statement names in `FROM` (none for `FROM *`, which skips event tables).
fn from_tables(select: &Select) -> Vec<&str> {
    match &select.from {
        ast::From::AllTables(_) => Vec::new(),
        ast::From::Table(r) => vec![&r.table.name],
        ast::From::Join { left, right, .. } => vec![&left.table.name, &right.table.name],
    }
}

/// A view that cannot be declared or compiled.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ViewError {
    /// The view reads an event table; the text is exactly [`VIEW_EVENT_ERROR`].
    #[error("Views cannot read event tables")]
    ReadsEventTable {
        /// The view.
        view: Arc<str>,
        /// The event table it reads.
        table: Arc<str>,
    },
    /// Two views share a name.
    #[error("view `{view}` is declared twice")]
    Duplicate {
        /// The view.
        view: Arc<str>,
    },
    /// A view has a table's name, so `FROM` could not tell them apart.
    #[error("view `{view}` has the name of a table")]
    ShadowsTable {
        /// The view.
        view: Arc<str>,
    },
    /// The view's SQL does not compile.
    #[error("view `{view}` does not compile: {error}")]
    Sql {
        /// The view.
        view: Arc<str>,
        /// Why.
        error: CompileError,
    },
    /// The view's builder query does not compile against this schema.
    #[error("view `{view}` does not compile: {error}")]
    Builder {
        /// The view.
        view: Arc<str>,
        /// Why.
        error: BuildError,
    },
}

/// Checks declared views against `schema`: unique names that are not table names, no
/// event table read, and each view compiles (for the owner, who may read every table).
pub fn validate_views(views: &[ViewDef], schema: &Schema) -> Result<(), ViewError> {
    let owner = Caller {
        identity: Identity::ZERO,
        is_owner: true,
    };
    for (i, view) in views.iter().enumerate() {
        if views[..i].iter().any(|v| v.name == view.name) {
            return Err(ViewError::Duplicate {
                view: view.name.clone(),
            });
        }
        if schema.table_id(&view.name).is_some() {
            return Err(ViewError::ShadowsTable {
                view: view.name.clone(),
            });
        }
        // The version only labels the plans, which are thrown away.
        view.compile(schema, 0, owner)?;
    }
    Ok(())
}

/// The view named `name`, if one is declared.
pub fn resolve_view<'v>(name: &str, views: &'v [ViewDef]) -> Option<&'v ViewDef> {
    views.iter().find(|v| *v.name == *name)
}

/// A subscription over tables and views that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ViewCompileError {
    /// The statement itself does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The view it reads does not compile for this caller.
    #[error(transparent)]
    View(#[from] ViewError),
    /// A join names a view.
    #[error("view `{view}` cannot be joined: subscribe to the view alone, or join its tables")]
    JoinOnView {
        /// The view.
        view: Arc<str>,
    },
    /// A `WHERE` on a view that returns several tables.
    #[error("view `{view}` returns several tables, so a WHERE cannot be applied to it")]
    FilterOnMultiTableView {
        /// The view.
        view: Arc<str>,
    },
}

/// [`crate::compile`], where `FROM` may also name one of `views`.
///
/// A table of the same name wins over a view ([`validate_views`] forbids the clash). A
/// view is compiled for `caller`, and a `WHERE` on it is AND-ed onto its predicate.
pub fn compile_with_views(
    sql: &str,
    schema: &Schema,
    views: &[ViewDef],
    schema_version: u64,
    caller: Caller,
) -> Result<Vec<Plan>, ViewCompileError> {
    let select = parse::parse(sql).map_err(CompileError::from)?;
    let view_named = |r: &TableRef| {
        if schema.table_id(&r.table.name).is_some() {
            None
        } else {
            resolve_view(&r.table.name, views)
        }
    };
    match &select.from {
        ast::From::Table(r) => {
            if let Some(view) = view_named(r) {
                return compile_view_select(&select, r, view, schema, schema_version, caller);
            }
        }
        ast::From::Join { left, right, .. } => {
            if let Some(view) = view_named(left).or_else(|| view_named(right)) {
                return Err(ViewCompileError::JoinOnView {
                    view: view.name.clone(),
                });
            }
        }
        ast::From::AllTables(_) => {}
    }
    let typed = check::check(&select, schema, caller).map_err(CompileError::from)?;
    typed
        .into_iter()
        .map(|q| {
            plan::plan(q, schema, schema_version).map_err(|e| ViewCompileError::Compile(e.into()))
        })
        .collect()
}

/// Compiles `select`, whose `FROM` is `r`, naming `view`.
fn compile_view_select(
    select: &Select,
    r: &TableRef,
    view: &ViewDef,
    schema: &Schema,
    schema_version: u64,
    caller: Caller,
) -> Result<Vec<Plan>, ViewCompileError> {
    let queries = view.typed(schema, caller)?;
    let visible = r.visible_name();
    let [query] = match <[TypedQuery; 1]>::try_from(queries) {
        Ok(one) => one,
        Err(several) => {
            // A `FROM *` view: several tables, so only the projection can be checked.
            if select.filter.is_some() {
                return Err(ViewCompileError::FilterOnMultiTableView {
                    view: view.name.clone(),
                });
            }
            if let Projection::TableStar(i) = &select.projection
                && i.name != visible.name
            {
                let err = CheckError {
                    kind: Box::new(CheckErrorKind::UnknownQualifier(i.name.clone())),
                    pos: i.pos,
                };
                return Err(CompileError::from(err).into());
            }
            return several
                .into_iter()
                .map(|q| Ok(view.plan(q, schema, schema_version)?))
                .collect();
        }
    };
    // The view's rows are rows of its returned table, so the outer statement is checked
    // as a statement over that table under the name it used for the view: projection,
    // columns and literals are then checked exactly as SQL over a table would be.
    // `typed` resolved the table in this schema, so the name is always found.
    let returned = schema
        .table(query.source.returned())
        .map(|ts| ts.name.to_string())
        .unwrap_or_default();
    let over_table = Select {
        projection: select.projection.clone(),
        from: ast::From::Table(TableRef {
            table: ast::Ident {
                name: returned,
                pos: r.table.pos,
            },
            alias: Some(visible.clone()),
        }),
        filter: select.filter.clone(),
    };
    // A single-table statement checks to exactly one query.
    let outer = check::check(&over_table, schema, caller).map_err(CompileError::from)?;
    let outer_filter = outer
        .into_iter()
        .next()
        .map_or(Pred::Const(true), |q| q.filter);
    // The outer filter's comparisons are all on the returned side, which is the side of
    // the view's rows whether or not the view is a semijoin; planning folds the `true`
    // of a statement without WHERE away.
    let query = TypedQuery {
        source: query.source,
        filter: Pred::And(vec![query.filter, outer_filter]),
    };
    Ok(vec![view.plan(query, schema, schema_version)?])
}
