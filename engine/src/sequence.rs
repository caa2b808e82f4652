//! `auto_inc` sequences.
//!
//! Sequences live outside committed state on purpose: a value drawn by a transaction that
//! later fails is gone for good (gaps are allowed, reuse is not). Every advance is marked
//! dirty until the next logged commit carries the high-water mark, so a failed
//! transaction's draws are persisted by whichever commit comes next. Values drawn after
//! the last logged commit, by transactions that failed or changed nothing, are not
//! durable: after a crash they may be drawn again (no row ever held them).
//!
//! An explicit non-zero value in an `auto_inc` column is stored as given and does not
//! move the sequence; a later drawn value may then collide with it and fail the unique
//! check, as in PostgreSQL.

use crate::error::TxError;
use crate::schema::{ColId, Schema, TableId};
use crate::value::Value;

#[derive(Clone, Debug)]
struct Sequence {
    column: ColId,
    /// The next value to hand out (starts at 1).
    next: u64,
    dirty: bool,
}

/// Every sequence of every table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sequences {
    by_table: Vec<Vec<Sequence>>,
}

impl Sequences {
    /// Fresh sequences for `schema`, keeping the positions of `old` where the column stays.
    pub(crate) fn for_schema(schema: &Schema, old: Option<(&Schema, &Sequences)>) -> Self {
        let by_table = schema
            .tables()
            .iter()
            .map(|t| {
                t.sequences
                    .iter()
                    .map(|&column| {
                        let prior = old.and_then(|(old_schema, old_seqs)| {
                            let tid = old_schema.table_id(&t.name)?;
                            let name = &t.column(column).name;
                            let ocol = old_schema.table(tid)?.column_id(name)?;
                            old_seqs
                                .by_table
                                .get(tid.idx())?
                                .iter()
                                .find(|s| s.column == ocol)
                        });
                        Sequence {
                            column,
                            next: prior.map_or(1, |s| s.next),
                            dirty: prior.is_some_and(|s| s.dirty),
                        }
                    })
                    .collect()
            })
            .collect();
        Sequences { by_table }
    }

    /// Draws the next value of `table.column`, typed like the column.
    pub(crate) fn draw(
        &mut self,
        schema: &Schema,
        table: TableId,
        column: ColId,
    ) -> Result<Value, TxError> {
        let ts = schema
            .table(table)
            .ok_or_else(|| crate::tx::unknown(table))?;
        let exhausted = || TxError::SequenceExhausted {
            table: ts.name.clone(),
            column: ts.column(column).name.clone(),
        };
        let seq = self
            .by_table
            .get_mut(table.idx())
            .and_then(|v| v.iter_mut().find(|s| s.column == column))
            .ok_or_else(exhausted)?;
        let value =
            Value::integer_of_type(&ts.column(column).ty, seq.next).ok_or_else(exhausted)?;
        seq.next = seq.next.checked_add(1).ok_or_else(exhausted)?;
        seq.dirty = true;
        Ok(value)
    }

    /// High-water marks advanced since the last call, clearing the dirty marks.
    pub(crate) fn take_dirty(&mut self) -> Vec<(TableId, ColId, u64)> {
        let mut out = Vec::new();
        for (t, seqs) in self.by_table.iter_mut().enumerate() {
            for s in seqs.iter_mut().filter(|s| s.dirty) {
                s.dirty = false;
                out.push((TableId(t as u32), s.column, s.next));
            }
        }
        out
    }

    /// Raises a sequence to at least `next` (replay).
    pub(crate) fn restore(&mut self, table: TableId, column: ColId, next: u64) {
        if let Some(s) = self
            .by_table
            .get_mut(table.idx())
            .and_then(|v| v.iter_mut().find(|s| s.column == column))
        {
            s.next = s.next.max(next);
        }
    }
}
