//! Row-level security: per-table visibility rules and the rewriting of client queries.
//!
//! # Semantics
//!
//! A table may carry *visibility rules*, each a subscription statement that returns rows of
//! that table: `SELECT * FROM t WHERE G` or `SELECT t.* FROM t JOIN u ON t.x = u.y WHERE G`,
//! where `G` may use `:sender`. Rules may read private tables. For a non-owner client:
//!
//! - a table with rules shows exactly the rows some rule admits for the client's identity
//!   (the rules of one table are OR-ed), whether the table is public or private;
//! - a join rule only counts lookup rows the client could see itself: when `u` has rules,
//!   they apply to the lookup side (a `u` without rules is read in full, even if private);
//! - a public table without rules is fully visible; a private table without rules is
//!   invisible (subscribing to it is the usual "table is private" error).
//!
//! The owner bypasses all of this: its queries compile exactly as [`crate::compile`] does.
//!
//! # Rewriting
//!
//! A client's query becomes a [`ClientQuery`]: a union of *fragments*, each an ordinary
//! [`Plan`]. Every table the query reads contributes one choice per rule (or the single
//! choice "no restriction" when it has none) and there is one fragment per combination,
//! so the OR of rules becomes a union of fragments:
//!
//! - a single-table rule's predicate (with `:sender` bound) is AND-ed onto the side of the
//!   query where its table sits, re-sided to [`Side::Lookup`] when that is the lookup side;
//! - a join rule of `t`, applied to a single-table query on `t`, turns the fragment into the
//!   rule's semijoin `t ⋉ u` with the rule's and the client's predicates AND-ed; `u`'s
//!   single-table rules are then AND-ed onto the lookup side.
//!
//! Each fragment's [`crate::QueryKey`] holds the expanded predicate with `:sender` bound, so
//! the registry shares a fragment exactly between clients for which it is the same query.
//!
//! A client's result is the *set* union of its fragments' results: a row is shown while
//! at least one fragment holds it. Multiplicities are not meaningful across fragments
//! (one row may be admitted by several rules, and a join rule's semijoin repeats a row per
//! matching lookup row), so the layer delivering rows keeps a per-row count over the
//! fragments of one [`ClientQuery`]. For event tables, every fragment yields the events it
//! admits once, and the union per commit is [`union_events`].
//!
//! # Limits
//!
//! Plans join at most two tables (`returned ⋉ lookup`), hence:
//!
//! - a join rule whose lookup table has a join rule of its own would need a second join and
//!   is rejected when the rules are loaded ([`RlsError::JoinLimit`]);
//! - a client's join query may only meet single-table rules, on either side; a join rule
//!   there is rejected at subscribe time with the same error naming the rule;
//! - rules may not form a cycle (a rule of `t` reading `u` whose rules read `t`, including
//!   a rule of `t` joining `t` itself), and an event table may not be a rule's lookup side.

use std::fmt;
use std::sync::Arc;

use hashbrown::HashSet;
use thiserror::Error;
use tidings_engine::{Access, Identity, Row, Schema, TableId};

use crate::check::{self, Caller, CheckError, CheckErrorKind, Pred, Side, Source, TypedQuery};
use crate::delta::QueryDelta;
use crate::parse::ast::{self, Select};
use crate::parse::error::ParseError;
use crate::plan::{self, Plan, PlanError};
use crate::{CompileError, parse};

/// One visibility rule as declared: the table it guards and its statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The table whose rows the rule admits.
    pub table: Arc<str>,
    /// `SELECT t.* FROM t [JOIN u ON ..] [WHERE ..]`, possibly using `:sender`.
    pub sql: Arc<str>,
}

impl Rule {
    /// A rule admitting the rows of `table` that `sql` returns.
    pub fn new(table: &str, sql: &str) -> Self {
        Rule {
            table: table.into(),
            sql: sql.into(),
        }
    }
}

/// Names a rule in errors: its table, its position among that table's rules (from 0, in
/// declaration order) and its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The table the rule is declared for.
    pub table: Arc<str>,
    /// Position among the rules declared for `table`.
    pub index: usize,
    /// The rule's text.
    pub sql: Arc<str>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} of `{}` (`{}`)",
            self.index, self.table, self.sql
        )
    }
}

/// Why expanding a rule would need more than one join.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoinLimitCause {
    /// The client's query already joins two tables, and the rule is a join itself.
    #[error(
        "the query already joins `{returned}` with `{lookup}`, and a join rule would need a second join"
    )]
    ClientJoin {
        /// The returned table of the client's join.
        returned: Arc<str>,
        /// The lookup table of the client's join.
        lookup: Arc<str>,
    },
    /// A rule of the rule's lookup table is a join, which would be the second join.
    #[error("its lookup table's {0} is itself a join, which would be a second join")]
    LookupRule(RuleRef),
}

/// A set of visibility rules that does not fit the schema, or a rule that cannot be
/// applied to a query; every variant names the rule.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RlsError {
    /// The rule is declared for a table the schema does not have.
    #[error("{rule}: no table `{}` in the schema", .rule.table)]
    UnknownTable {
        /// The rule.
        rule: RuleRef,
    },
    /// The rule does not parse.
    #[error("{rule}: {source}")]
    Parse {
        /// The rule.
        rule: RuleRef,
        /// The parse error.
        source: ParseError,
    },
    /// The rule does not fit the schema.
    #[error("{rule}: {source}")]
    Check {
        /// The rule.
        rule: RuleRef,
        /// The check error.
        source: CheckError,
    },
    /// The rule reads `FROM *` instead of one table or one join.
    #[error("{rule}: a rule must select from its table, not from every table")]
    AllTables {
        /// The rule.
        rule: RuleRef,
    },
    /// The rule returns rows of another table than the one it is declared for.
    #[error("{rule}: it returns rows of `{returned}`, not of `{}`", .rule.table)]
    WrongTable {
        /// The rule.
        rule: RuleRef,
        /// The table the rule's statement returns.
        returned: Arc<str>,
    },
    /// The rule's join looks up an event table.
    #[error("{rule}: event table `{lookup}` cannot be the lookup side of a rule")]
    EventLookup {
        /// The rule.
        rule: RuleRef,
        /// The event table.
        lookup: Arc<str>,
    },
    /// The rule's join cannot be planned (typically a join column without an index).
    #[error("{rule}: {source}")]
    Plan {
        /// The rule.
        rule: RuleRef,
        /// The planning error.
        source: PlanError,
    },
    /// The rule closes a cycle of tables whose rules read each other.
    #[error("{rule}: rules form a cycle ({path})")]
    Cycle {
        /// The rule whose join closes the cycle.
        rule: RuleRef,
        /// The tables around the cycle, as `` `a` -> `b` -> `a` ``.
        path: String,
    },
    /// Applying the rule would need more than the one join a plan supports.
    #[error("{rule} exceeds the limit of one join per query: {cause}")]
    JoinLimit {
        /// The rule.
        rule: RuleRef,
        /// Where the second join would come from.
        cause: JoinLimitCause,
    },
}

/// A client query that cannot be compiled under visibility rules.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RlsCompileError {
    /// The query itself does not parse, check or plan (including "table is private").
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A rule cannot be applied to this query.
    #[error(transparent)]
    Rule(#[from] RlsError),
    /// The rules were validated against another schema than the one passed in.
    #[error(
        "the visibility rules were validated against another schema: rebuild them for the schema in force"
    )]
    StaleRules,
}

/// A validated rule, kept as syntax so that `:sender` can be bound per client.
#[derive(Clone, Debug)]
struct CompiledRule {
    name: RuleRef,
    select: Select,
    /// The lookup table of a join rule.
    lookup: Option<TableId>,
}

/// The visibility rules of a schema, validated against it.
#[derive(Clone, Debug)]
pub struct RlsRules {
    schema: Schema,
    /// Rules per table, indexed by [`TableId`], in declaration order.
    by_table: Vec<Vec<CompiledRule>>,
}

impl RlsRules {
    /// Validates `rules` against `schema`.
    ///
    /// Rejects, naming the rule: an unknown table, a statement that does not parse or
    /// check, one returning another table, an event table on its lookup side, an
    /// unplannable join, a cycle, and a join whose lookup table has a join rule.
    pub fn new(schema: &Schema, rules: impl IntoIterator<Item = Rule>) -> Result<Self, RlsError> {
        let rules: Vec<Rule> = rules.into_iter().collect();
        let mut by_table: Vec<Vec<CompiledRule>> =
            (0..schema.tables().len()).map(|_| Vec::new()).collect();
        // `:sender` only fills values in, so any identity checks a rule's shape.
        let probe = Caller {
            identity: Identity::ZERO,
            is_owner: true,
        };
        for (i, rule) in rules.iter().enumerate() {
            let index = rules[..i].iter().filter(|r| r.table == rule.table).count();
            let name = RuleRef {
                table: rule.table.clone(),
                index,
                sql: rule.sql.clone(),
            };
            let Some(table) = schema.table_id(&rule.table) else {
                return Err(RlsError::UnknownTable { rule: name });
            };
            let select = match parse::parse(&rule.sql) {
                Ok(s) => s,
                Err(source) => return Err(RlsError::Parse { rule: name, source }),
            };
            if matches!(select.from, ast::From::AllTables(_)) {
                return Err(RlsError::AllTables { rule: name });
            }
            let query = match check::check(&select, schema, probe) {
                Ok(mut q) if q.len() == 1 => q.remove(0),
                Ok(_) => return Err(RlsError::AllTables { rule: name }),
                Err(source) => return Err(RlsError::Check { rule: name, source }),
            };
            let returned = query.source.returned();
            if returned != table {
                return Err(RlsError::WrongTable {
                    rule: name,
                    returned: table_name(schema, returned),
                });
            }
            let lookup = query.source.lookup();
            if let Some(u) = lookup
                && schema.tables()[u.idx()].is_event
            {
                return Err(RlsError::EventLookup {
                    rule: name,
                    lookup: table_name(schema, u),
                });
            }
            if let Err(source) = plan::plan(query, schema, 0) {
                return Err(RlsError::Plan { rule: name, source });
            }
            by_table[table.idx()].push(CompiledRule {
                name,
                select,
                lookup,
            });
        }
        let rules = RlsRules {
            schema: schema.clone(),
            by_table,
        };
        rules.reject_cycles()?;
        rules.reject_double_joins()?;
        Ok(rules)
    }

    /// Whether any rule guards `table`.
    pub fn has_rules(&self, table: TableId) -> bool {
        self.by_table
            .get(table.idx())
            .is_some_and(|r| !r.is_empty())
    }

    /// Whether `caller` may subscribe to `table` at all (through its rules or because it
    /// is public or the caller is the owner).
    pub fn can_read(&self, table: TableId, caller: Caller) -> bool {
        caller.is_owner
            || self.has_rules(table)
            || self
                .schema
                .table(table)
                .is_some_and(|t| t.access == Access::Public)
    }

    /// The schema the rules were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Rejects a join rule that is part of a cycle of tables reading each other's rules.
    fn reject_cycles(&self) -> Result<(), RlsError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.by_table.len()];
        // Iterative depth-first search over join-rule edges `t -> lookup`, so a long
        // chain of rules cannot overflow the stack; each frame is (table, next rule).
        for root in 0..self.by_table.len() {
            if mark[root] != Mark::New {
                continue;
            }
            mark[root] = Mark::OnPath;
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some((t, next)) = path.last_mut() {
                let t = *t;
                let Some(rule) = self.by_table[t].get(*next) else {
                    mark[t] = Mark::Done;
                    path.pop();
                    continue;
                };
                *next += 1;
                let Some(u) = rule.lookup.map(TableId::idx) else {
                    continue;
                };
                match mark[u] {
                    Mark::OnPath => {
                        // Told from the rule's own table: t -> u -> ... -> t.
                        let start = path.iter().position(|(p, _)| *p == u).unwrap_or(0);
                        let cycle = std::iter::once(t)
                            .chain(path[start..].iter().map(|(p, _)| *p))
                            .map(|p| format!("`{}`", self.schema.tables()[p].name))
                            .collect::<Vec<_>>()
                            .join(" -> ");
                        return Err(RlsError::Cycle {
                            rule: rule.name.clone(),
                            path: cycle,
                        });
                    }
                    Mark::New => {
                        mark[u] = Mark::OnPath;
                        path.push((u, 0));
                    }
                    Mark::Done => {}
                }
            }
        }
        Ok(())
    }

    /// Rejects a join rule whose lookup table has a join rule: applying that one to the
    /// lookup side would be a second join.
    fn reject_double_joins(&self) -> Result<(), RlsError> {
        for rule in self.by_table.iter().flatten() {
            let Some(u) = rule.lookup else { continue };
            if let Some(inner) = self.by_table[u.idx()].iter().find(|r| r.lookup.is_some()) {
                return Err(RlsError::JoinLimit {
                    rule: rule.name.clone(),
                    cause: JoinLimitCause::LookupRule(inner.name.clone()),
                });
            }
        }
        Ok(())
    }

    /// The rule's query with `:sender` bound to `identity`.
    fn bind(&self, rule: &CompiledRule, identity: Identity) -> Result<TypedQuery, RlsError> {
        // As owner: rules may read private tables.
        let caller = Caller {
            identity,
            is_owner: true,
        };
        match check::check(&rule.select, &self.schema, caller) {
            Ok(mut q) if q.len() == 1 => Ok(q.remove(0)),
            Ok(_) => Err(RlsError::AllTables {
                rule: rule.name.clone(),
            }),
            Err(source) => Err(RlsError::Check {
                rule: rule.name.clone(),
                source,
            }),
        }
    }

    /// The alternative guards `table`'s rules put on `side` of a query, one per rule, or
    /// the single guard `TRUE` when it has none. A join rule cannot become a guard: the
    /// query already has its one join, so `join_limit` names the error.
    fn guards(
        &self,
        table: TableId,
        side: Side,
        identity: Identity,
        join_limit: impl Fn(&RuleRef) -> RlsError,
    ) -> Result<Vec<Pred>, RlsError> {
        let rules = &self.by_table[table.idx()];
        if rules.is_empty() {
            return Ok(vec![Pred::Const(true)]);
        }
        rules
            .iter()
            .map(|rule| {
                if rule.lookup.is_some() {
                    return Err(join_limit(&rule.name));
                }
                let filter = self.bind(rule, identity)?.filter;
                Ok(match side {
                    Side::Returned => filter,
                    Side::Lookup => onto_lookup(filter),
                })
            })
            .collect()
    }

    /// The fragments whose union is what a client with `identity` may see of `query`.
    /// Never empty: every table contributes at least one alternative.
    fn expand(&self, query: TypedQuery, identity: Identity) -> Result<Vec<TypedQuery>, RlsError> {
        let mut out = Vec::new();
        match query.source {
            Source::Table(t) => {
                let rules = &self.by_table[t.idx()];
                if rules.is_empty() {
                    return Ok(vec![query]);
                }
                for rule in rules {
                    let bound = self.bind(rule, identity)?;
                    let Some(lookup) = bound.source.lookup() else {
                        out.push(TypedQuery {
                            source: query.source.clone(),
                            filter: Pred::And(vec![query.filter.clone(), bound.filter]),
                        });
                        continue;
                    };
                    let guards = self.guards(lookup, Side::Lookup, identity, |inner| {
                        RlsError::JoinLimit {
                            rule: rule.name.clone(),
                            cause: JoinLimitCause::LookupRule(inner.clone()),
                        }
                    })?;
                    for guard in guards {
                        out.push(TypedQuery {
                            source: bound.source.clone(),
                            filter: Pred::And(vec![
                                query.filter.clone(),
                                bound.filter.clone(),
                                guard,
                            ]),
                        });
                    }
                }
            }
            Source::Semijoin {
                returned, lookup, ..
            } => {
                let join_limit = |rule: &RuleRef| RlsError::JoinLimit {
                    rule: rule.clone(),
                    cause: JoinLimitCause::ClientJoin {
                        returned: table_name(&self.schema, returned),
                        lookup: table_name(&self.schema, lookup),
                    },
                };
                let on_returned = self.guards(returned, Side::Returned, identity, join_limit)?;
                let on_lookup = self.guards(lookup, Side::Lookup, identity, join_limit)?;
                for r in &on_returned {
                    for l in &on_lookup {
                        out.push(TypedQuery {
                            source: query.source.clone(),
                            filter: Pred::And(vec![query.filter.clone(), r.clone(), l.clone()]),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Refuses, as the plain checker would, a table the client may not read; stops at the
    /// first unknown table so the checker reports it in its usual order.
    fn check_readable(&self, select: &Select, caller: Caller) -> Result<(), CheckError> {
        let refs = match &select.from {
            ast::From::AllTables(_) => return Ok(()),
            ast::From::Table(r) => vec![r],
            ast::From::Join { left, right, .. } => vec![left, right],
        };
        for r in refs {
            let Some(id) = self.schema.table_id(&r.table.name) else {
                break;
            };
            if !self.can_read(id, caller) {
                return Err(CheckError {
                    kind: Box::new(CheckErrorKind::Private(r.table.name.clone())),
                    pos: r.table.pos,
                });
            }
        }
        Ok(())
    }
}

/// What one client query compiles to: the fragments whose results' union the client sees.
#[derive(Clone, Debug)]
pub struct ClientQuery {
    /// The fragments, distinct by [`crate::QueryKey`]; never empty. For the owner, or a
    /// query no rule touches, exactly the plan [`crate::compile`] makes.
    pub fragments: Vec<Plan>,
    /// The table whose rows the query returns.
    pub returned_table: TableId,
    /// That table's name.
    pub returned_table_name: Arc<str>,
    /// Whether the rows are events (deduplicate per commit with [`union_events`]).
    pub returns_event_table: bool,
}

impl ClientQuery {
    /// The rows the client sees now: the union of its fragments, each row once when
    /// several rules admit it (one-off queries and initial reads over HTTP).
    pub fn evaluate(&self, state: &tidings_engine::CommittedState) -> Vec<tidings_engine::Row> {
        let mut rows: Vec<_> = self
            .fragments
            .iter()
            .flat_map(|p| crate::exec::evaluate_rows(p, state))
            .collect();
        if self.fragments.len() > 1 {
            rows.sort();
            rows.dedup();
        }
        rows
    }

    /// A client query of `fragments`, all returning `table`.
    fn new(schema: &Schema, table: TableId, fragments: Vec<Plan>) -> Self {
        let ts = &schema.tables()[table.idx()];
        ClientQuery {
            fragments,
            returned_table: table,
            returned_table_name: ts.name.clone(),
            returns_event_table: ts.is_event,
        }
    }
}

/// Compiles `sql` for `caller` under the visibility `rules` of `schema`.
///
/// Returns one [`ClientQuery`] per query: `SELECT * FROM *` expands to every non-event
/// table the caller may read (for non-owners: public tables and tables with rules). The
/// owner gets exactly the plans of [`crate::compile`], one fragment each.
///
/// Fails like [`crate::compile`] for the query itself (a private table without rules is
/// "table is private"), with [`RlsError::JoinLimit`] naming the rule when a join query
/// meets a join rule, and with [`RlsCompileError::StaleRules`] when `rules` were built
/// for another schema.
pub fn compile_for(
    sql: &str,
    schema: &Schema,
    rules: &RlsRules,
    schema_version: u64,
    caller: Caller,
) -> Result<Vec<ClientQuery>, RlsCompileError> {
    // Rules hold table ids of the schema they were validated against.
    if *schema != rules.schema {
        return Err(RlsCompileError::StaleRules);
    }
    if caller.is_owner {
        return Ok(crate::compile(sql, schema, schema_version, caller)?
            .into_iter()
            .map(|p| ClientQuery::new(schema, p.returned_table(), vec![p]))
            .collect());
    }
    let select = parse::parse(sql).map_err(CompileError::from)?;
    rules
        .check_readable(&select, caller)
        .map_err(CompileError::from)?;
    // Readability is settled above, so check as owner to let rule-guarded private
    // tables through; `:sender` still binds to the client.
    let as_owner = Caller {
        identity: caller.identity,
        is_owner: true,
    };
    let typed = check::check(&select, schema, as_owner).map_err(CompileError::from)?;
    let mut out = Vec::with_capacity(typed.len());
    for query in typed {
        let table = query.source.returned();
        // Only `FROM *` can reach here with an unreadable table; it skips it silently.
        if !rules.can_read(table, caller) {
            continue;
        }
        let mut fragments: Vec<Plan> = Vec::new();
        for fragment in rules.expand(query, caller.identity)? {
            let p = plan::plan(fragment, schema, schema_version).map_err(CompileError::from)?;
            if !fragments.iter().any(|f| f.key() == p.key()) {
                fragments.push(p);
            }
        }
        out.push(ClientQuery::new(schema, table, fragments));
    }
    Ok(out)
}

/// The events an event-returning [`ClientQuery`] delivers for one commit, given its
/// fragments' deltas: every fragment's inserts, each row once, in order of first
/// appearance.
///
/// Deduplicating by value is exact: a table never holds two identical rows, so two equal
/// event rows of one commit are the same event.
pub fn union_events<'a>(deltas: impl IntoIterator<Item = &'a QueryDelta>) -> Vec<Row> {
    let mut seen: HashSet<&Row> = HashSet::new();
    let mut out = Vec::new();
    for delta in deltas {
        for row in &delta.inserts {
            if seen.insert(row) {
                out.push(row.clone());
            }
        }
    }
    out
}

/// `pred` moved to the lookup side: a single-table rule guarding a query's lookup table.
fn onto_lookup(pred: Pred) -> Pred {
    match pred {
        Pred::And(v) => Pred::And(v.into_iter().map(onto_lookup).collect()),
        Pred::Or(v) => Pred::Or(v.into_iter().map(onto_lookup).collect()),
        Pred::Cmp { col, op, value, .. } => Pred::Cmp {
            side: Side::Lookup,
            col,
            op,
            value,
        },
        c @ Pred::Const(_) => c,
    }
}

/// The name of a table of `schema` (ids come from the checker, so they exist).
fn table_name(schema: &Schema, table: TableId) -> Arc<str> {
    schema.tables()[table.idx()].name.clone()
}
