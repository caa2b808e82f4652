//! Random insert/delete/update sequences against a simple model.
//!
//! The model keeps committed state as a `BTreeSet<Row>` per table and, for the open
//! transaction, the rows it deleted and the ordered list of rows it made new. After every
//! operation the engine and the model must agree on success or failure; after every
//! commit, TxData (inserts in order, deletes as a set, offset, packed rows equal to the
//! decoded ones) and committed state must equal what the model predicts. Small value domains make constraint clashes, undeletes
//! and in-place updates common.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use tidings_engine::{Row, TableId, Value};

#[derive(Clone, Debug)]
enum Op {
    Insert(TableId, Row),
    Delete(TableId, Row),
    Update(TableId, Row),
    Commit,
    Rollback,
}

fn row_strategy() -> impl Strategy<Value = (u64, u64, u32)> {
    (1u64..5, 0u64..3, 0u32..3)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let table = prop_oneof![Just(PERSON), Just(DAMAGE)];
    prop_oneof![
        4 => (table.clone(), row_strategy()).prop_map(|(t, r)| Op::Insert(t, make(t, r))),
        2 => (table.clone(), row_strategy()).prop_map(|(t, r)| Op::Delete(t, make(t, r))),
        2 => (table, row_strategy()).prop_map(|(t, r)| Op::Update(t, make(t, r))),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
    ]
}

fn make(t: TableId, (id, key, n): (u64, u64, u32)) -> Row {
    if t == PERSON {
        person(id, ["a", "b", "c"][key as usize], n)
    } else {
        damage(id, key, n)
    }
}

/// The columns under a unique constraint: the primary key (0) and column 1.
const UNIQUE_COLS: [usize; 2] = [0, 1];

#[derive(Default, Clone)]
struct TableModel {
    committed: BTreeSet<Row>,
    deleted: BTreeSet<Row>,
    new_rows: Vec<Row>,
}

impl TableModel {
    fn visible(&self) -> impl Iterator<Item = &Row> {
        self.committed
            .iter()
            .filter(|r| !self.deleted.contains(*r))
            .chain(self.new_rows.iter())
    }

    fn clashes(&self, row: &Row, ignore: Option<&Row>) -> bool {
        self.visible()
            .filter(|v| Some(*v) != ignore && *v != row)
            .any(|v| UNIQUE_COLS.iter().any(|&c| v[c] == row[c]))
    }

    fn is_visible(&self, row: &Row) -> bool {
        self.visible().any(|v| v == row)
    }

    /// Insert after checks: undelete or append.
    fn add(&mut self, row: Row) {
        if self.committed.contains(&row) {
            self.deleted.remove(&row);
        } else {
            self.new_rows.push(row);
        }
    }

    fn insert(&mut self, row: Row) -> bool {
        if self.is_visible(&row) {
            return true;
        }
        if self.clashes(&row, None) {
            return false;
        }
        self.add(row);
        true
    }

    fn delete(&mut self, row: &Row) {
        if let Some(p) = self.new_rows.iter().position(|r| r == row) {
            self.new_rows.remove(p);
        } else if self.committed.contains(row) {
            self.deleted.insert(row.clone());
        }
    }

    fn update(&mut self, row: Row) -> bool {
        let Some(old) = self.visible().find(|v| v[0] == row[0]).cloned() else {
            return false;
        };
        if old == row {
            return true;
        }
        if self.clashes(&row, Some(&old)) {
            return false;
        }
        match self.new_rows.iter().position(|r| *r == old) {
            Some(p) if !self.committed.contains(&row) => self.new_rows[p] = row,
            Some(p) => {
                self.new_rows.remove(p);
                self.deleted.remove(&row);
            }
            None => {
                self.deleted.insert(old);
                self.add(row);
            }
        }
        true
    }
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn datastore_agrees_with_set_model(
        ops in proptest::collection::vec(op_strategy(), 1..60),
        pack_from in prop_oneof![Just(1usize), Just(tidings_engine::PACK_ROWS_FROM)],
    ) {
        let ds = ds();
        ds.set_pack_rows_from(pack_from);
        let mut model = [TableModel::default(), TableModel::default()];
        let mut tx = ds.begin_mut_tx();
        let mut offset = 0u64;
        for op in ops {
            match op {
                Op::Insert(t, row) => {
                    let ok = model[t.idx()].insert(row.clone());
                    prop_assert_eq!(tx.insert(t, row.clone()).is_ok(), ok, "insert {:?} into {:?}", row, t);
                }
                Op::Delete(t, row) => {
                    let was = model[t.idx()].is_visible(&row);
                    model[t.idx()].delete(&row);
                    prop_assert_eq!(tx.delete(t, row.clone()).expect("delete"), was);
                }
                Op::Update(t, row) => {
                    let ok = model[t.idx()].update(row.clone());
                    prop_assert_eq!(tx.update(t, row.clone()).is_ok(), ok, "update {:?} in {:?}", row, t);
                }
                Op::Rollback => {
                    tx.rollback();
                    for m in &mut model {
                        m.deleted.clear();
                        m.new_rows.clear();
                    }
                    tx = ds.begin_mut_tx();
                }
                Op::Commit => {
                    let commit = tx.commit().expect("commit");
                    let changed = model.iter().any(|m| !m.new_rows.is_empty() || !m.deleted.is_empty());
                    prop_assert_eq!(commit.tx_data.is_some(), changed);
                    if let Some(tx_data) = &commit.tx_data {
                        offset += 1;
                        prop_assert_eq!(tx_data.offset, offset);
                        for u in &tx_data.tables {
                            // Lists of `pack_from` rows or more come packed too: the same
                            // rows in the same order (a list may be packed below it when
                            // rows were replaced within the transaction).
                            for (packed, rows) in [(&u.stored_inserts, &u.inserts), (&u.stored_deletes, &u.deletes)] {
                                match packed {
                                    Some(p) => prop_assert_eq!(p.iter().map(|r| r.decode()).collect::<Vec<_>>(), rows.to_vec()),
                                    None => prop_assert!(rows.len() < pack_from, "{} rows, none packed", rows.len()),
                                }
                            }
                        }
                        for t in [PERSON, DAMAGE] {
                            let m = &model[t.idx()];
                            prop_assert_eq!(inserts(tx_data, t), m.new_rows.clone());
                            prop_assert_eq!(sorted(deletes(tx_data, t)), m.deleted.iter().cloned().collect::<Vec<_>>());
                        }
                    }
                    for (t, m) in model.iter_mut().enumerate() {
                        let is_event = t == DAMAGE.idx();
                        let next: BTreeSet<Row> = if is_event { BTreeSet::new() } else { m.visible().cloned().collect() };
                        *m = TableModel { committed: next, ..TableModel::default() };
                    }
                    let read = ds.read();
                    prop_assert_eq!(read.offset(), offset);
                    for t in [PERSON, DAMAGE] {
                        prop_assert_eq!(sorted(read.rows(t)), model[t.idx()].committed.iter().cloned().collect::<Vec<_>>());
                    }
                    drop(read);
                    tx = ds.begin_mut_tx();
                }
            }
            for t in [PERSON, DAMAGE] {
                let expect: Vec<Row> = sorted(model[t.idx()].visible().cloned().collect());
                prop_assert_eq!(sorted(tx.scan(t).expect("scan")), expect);
                let by_age = tx.index_id(t, &[if t == PERSON { "age" } else { "amount" }]).expect("index");
                for n in 0..3u32 {
                    let expect: Vec<Row> = model[t.idx()].visible().filter(|r| r[2] == Value::U32(n)).cloned().collect();
                    prop_assert_eq!(sorted(tx.seek(t, by_age, &[Value::U32(n)]).expect("seek")), sorted(expect));
                }
            }
        }
    }
}
