//! Row storage for one table: encoded rows in a slotmap, plus btree indexes.
//!
//! The same structure holds a table's committed rows and a transaction's insert table, so
//! the reducer can use indexes on the rows it just inserted.
//!
//! Row identity (set semantics) is bitwise equality of the encoding in [`crate::codec`].
//! It is found through the first unique index when the table has one (equal rows have
//! equal keys), otherwise through a hash table keyed by the encoded bytes; a table with a
//! unique index therefore pays nothing extra for set semantics.
//!
//! Storage is not constraint checking: callers (the transaction) check uniqueness across
//! committed state and the insert table before calling [`Table::insert_unchecked`].

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;

use hashbrown::HashTable;
use slotmap::{KeyData, SlotMap, new_key_type};

use crate::codec;
use crate::error::TxError;
use crate::row::Row;
use crate::schema::{ColId, IndexDef, TableSchema};
use crate::value::Value;

new_key_type! {
    /// A stored row's address within its table (committed or insert table).
    pub struct RowId;
}

// Sentinels bracketing every real key in `(key, RowId)` tuples. slotmap orders keys by
// (index, version) and a real version is odd and nonzero, so these are strict bounds.
fn row_id_min() -> RowId {
    RowId::from(KeyData::from_ffi(0))
}
fn row_id_max() -> RowId {
    RowId::from(KeyData::from_ffi(u64::MAX))
}

/// A btree index of one table.
#[derive(Debug, Clone)]
pub struct Index {
    def: IndexDef,
    map: IndexMap,
}

/// Integer-like single columns key on the native `u64` (order-preserving); everything else
/// keys on the values themselves.
#[derive(Debug, Clone)]
enum IndexMap {
    NativeUnique(BTreeMap<u64, RowId>),
    NativeMulti(BTreeSet<(u64, RowId)>),
    GeneralUnique(BTreeMap<Box<[Value]>, RowId>),
    GeneralMulti(BTreeSet<(Box<[Value]>, RowId)>),
}

type RowIds<'a> = Box<dyn Iterator<Item = RowId> + 'a>;

impl Index {
    fn new(def: &IndexDef, schema: &TableSchema) -> Self {
        let native = def.columns.len() == 1 && {
            let ty = &schema.column(def.columns[0]).ty;
            !matches!(ty, crate::AlgebraicType::Option(_)) && native_type(ty)
        };
        let map = match (native, def.unique) {
            (true, true) => IndexMap::NativeUnique(BTreeMap::new()),
            (true, false) => IndexMap::NativeMulti(BTreeSet::new()),
            (false, true) => IndexMap::GeneralUnique(BTreeMap::new()),
            (false, false) => IndexMap::GeneralMulti(BTreeSet::new()),
        };
        Index {
            def: def.clone(),
            map,
        }
    }

    /// The index definition.
    pub fn def(&self) -> &IndexDef {
        &self.def
    }

    fn insert(&mut self, row: &Row, id: RowId) {
        match &mut self.map {
            IndexMap::NativeUnique(m) => {
                m.insert(native(row, self.def.columns[0]), id);
            }
            IndexMap::NativeMulti(s) => {
                s.insert((native(row, self.def.columns[0]), id));
            }
            IndexMap::GeneralUnique(m) => {
                m.insert(row.project(&self.def.columns), id);
            }
            IndexMap::GeneralMulti(s) => {
                s.insert((row.project(&self.def.columns), id));
            }
        }
    }

    fn remove(&mut self, row: &Row, id: RowId) {
        match &mut self.map {
            IndexMap::NativeUnique(m) => {
                m.remove(&native(row, self.def.columns[0]));
            }
            IndexMap::NativeMulti(s) => {
                s.remove(&(native(row, self.def.columns[0]), id));
            }
            IndexMap::GeneralUnique(m) => {
                m.remove(&row.project(&self.def.columns));
            }
            IndexMap::GeneralMulti(s) => {
                s.remove(&(row.project(&self.def.columns), id));
            }
        }
    }

    /// Rows whose key starts with `prefix` (all of the key for a full-key lookup).
    fn seek<'a>(&'a self, prefix: &[Value]) -> RowIds<'a> {
        self.range(prefix, Bound::Unbounded, Bound::Unbounded)
    }

    /// Rows whose key starts with `prefix` and whose next key column lies in the bounds.
    fn range<'a>(
        &'a self,
        prefix: &[Value],
        lower: Bound<&Value>,
        upper: Bound<&Value>,
    ) -> RowIds<'a> {
        let plen = prefix.len();
        match &self.map {
            IndexMap::NativeUnique(m) => {
                let (lo, hi) = native_bounds(prefix, lower, upper);
                if is_empty_range(&lo, &hi) {
                    return Box::new(std::iter::empty());
                }
                Box::new(m.range((lo, hi)).map(|(_, id)| *id))
            }
            IndexMap::NativeMulti(s) => {
                let (lo, hi) = native_bounds(prefix, lower, upper);
                if is_empty_range(&lo, &hi) {
                    return Box::new(std::iter::empty());
                }
                let lo = match lo {
                    Bound::Included(k) => Bound::Included((k, row_id_min())),
                    Bound::Excluded(k) => Bound::Excluded((k, row_id_max())),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let hi = match hi {
                    Bound::Included(k) => Bound::Included((k, row_id_max())),
                    Bound::Excluded(k) => Bound::Excluded((k, row_id_min())),
                    Bound::Unbounded => Bound::Unbounded,
                };
                Box::new(s.range((lo, hi)).map(|(_, id)| *id))
            }
            IndexMap::GeneralUnique(m) => {
                let start = general_start(prefix, lower);
                let prefix: Box<[Value]> = prefix.into();
                let upper = upper.cloned();
                let lower = lower.cloned();
                Box::new(
                    m.range::<[Value], _>((Bound::Included(&*start), Bound::Unbounded))
                        .skip_while(move |(k, _)| excluded_lower(k, plen, &lower))
                        .take_while(move |(k, _)| in_prefix_upper(k, &prefix, &upper))
                        .map(|(_, id)| *id),
                )
            }
            IndexMap::GeneralMulti(s) => {
                let start = (general_start(prefix, lower), row_id_min());
                let prefix: Box<[Value]> = prefix.into();
                let upper = upper.cloned();
                let lower = lower.cloned();
                Box::new(
                    s.range((Bound::Included(start), Bound::Unbounded))
                        .skip_while(move |(k, _)| excluded_lower(k, plen, &lower))
                        .take_while(move |(k, _)| in_prefix_upper(k, &prefix, &upper))
                        .map(|(_, id)| *id),
                )
            }
        }
    }

    /// Rebuilds the btree from its own sorted contents. Appending keys in order leaves
    /// std's btree nodes about half full; a bulk build packs them (measured: ~34 to ~18
    /// bytes per entry for a `(u64, RowId)` set).
    fn compact(&mut self) {
        match &mut self.map {
            IndexMap::NativeUnique(m) => *m = std::mem::take(m).into_iter().collect(),
            IndexMap::NativeMulti(s) => *s = std::mem::take(s).into_iter().collect(),
            IndexMap::GeneralUnique(m) => *m = std::mem::take(m).into_iter().collect(),
            IndexMap::GeneralMulti(s) => *s = std::mem::take(s).into_iter().collect(),
        }
    }

    fn clear(&mut self) {
        match &mut self.map {
            IndexMap::NativeUnique(m) => m.clear(),
            IndexMap::NativeMulti(s) => s.clear(),
            IndexMap::GeneralUnique(m) => m.clear(),
            IndexMap::GeneralMulti(s) => s.clear(),
        }
    }
}

fn native_type(ty: &crate::AlgebraicType) -> bool {
    use crate::AlgebraicType as T;
    matches!(
        ty,
        T::Bool
            | T::U8
            | T::U16
            | T::U32
            | T::U64
            | T::I8
            | T::I16
            | T::I32
            | T::I64
            | T::Timestamp
            | T::Enum(_)
    )
}

fn native(row: &Row, col: ColId) -> u64 {
    // Only built for columns whose type has a native key, and rows are schema-checked.
    row[col.idx()].native_key().unwrap_or_default()
}

fn native_bounds(
    prefix: &[Value],
    lower: Bound<&Value>,
    upper: Bound<&Value>,
) -> (Bound<u64>, Bound<u64>) {
    let key = |v: &Value| v.native_key().unwrap_or_default();
    if let Some(p) = prefix.first() {
        let k = key(p);
        return (Bound::Included(k), Bound::Included(k));
    }
    (lower.map(key), upper.map(key))
}

/// Whether no key lies between the bounds. `BTreeMap::range` panics on crossed bounds,
/// and a caller's bounds (`x > 5 AND x < 3`) may well be crossed.
fn is_empty_range(lo: &Bound<u64>, hi: &Bound<u64>) -> bool {
    match (lo, hi) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
        _ => false,
    }
}

fn general_start(prefix: &[Value], lower: Bound<&Value>) -> Box<[Value]> {
    let mut start: Vec<Value> = prefix.to_vec();
    if let Bound::Included(v) | Bound::Excluded(v) = lower {
        start.push(v.clone());
    }
    start.into_boxed_slice()
}

fn excluded_lower(key: &[Value], plen: usize, lower: &Bound<Value>) -> bool {
    matches!(lower, Bound::Excluded(v) if key.get(plen) == Some(v))
}

fn in_prefix_upper(key: &[Value], prefix: &[Value], upper: &Bound<Value>) -> bool {
    if !key.starts_with(prefix) {
        return false;
    }
    match (upper, key.get(prefix.len())) {
        (Bound::Unbounded, _) | (_, None) => true,
        (Bound::Included(u), Some(k)) => k <= u,
        (Bound::Excluded(u), Some(k)) => k < u,
    }
}

/// One table's rows and indexes.
#[derive(Debug, Clone)]
pub struct Table {
    schema: Arc<TableSchema>,
    rows: SlotMap<RowId, Box<[u8]>>,
    indexes: Vec<Index>,
    /// Identity lookup for tables without a unique index (see the module doc).
    by_bytes: Option<HashTable<RowId>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Table {
    /// An empty table of `schema`.
    pub fn new(schema: Arc<TableSchema>) -> Self {
        let indexes = schema
            .indexes
            .iter()
            .map(|d| Index::new(d, &schema))
            .collect();
        let by_bytes = (!schema.indexes.iter().any(|i| i.unique)).then(HashTable::new);
        Table {
            schema,
            rows: SlotMap::with_key(),
            indexes,
            by_bytes,
            hasher: Default::default(),
        }
    }

    /// The table's schema.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row at `id`, decoded.
    pub fn get(&self, id: RowId) -> Option<Row> {
        self.rows.get(id).map(|b| self.decode(b))
    }

    /// The stored bytes of the row at `id`.
    pub fn get_bytes(&self, id: RowId) -> Option<&[u8]> {
        self.rows.get(id).map(|b| &**b)
    }

    /// Whether `id` is a live row.
    pub fn contains(&self, id: RowId) -> bool {
        self.rows.contains_key(id)
    }

    fn decode(&self, bytes: &[u8]) -> Row {
        // Stored bytes were written by `codec::encode_row` from a checked row of this very
        // schema, so decoding cannot fail; a failure would mean memory corruption.
        match codec::decode_row(&self.schema, bytes) {
            Ok((row, _)) => row,
            Err(e) => panic!("stored row of `{}` does not decode: {e}", self.schema.name),
        }
    }

    /// All rows with their ids, in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (RowId, Row)> + '_ {
        self.rows.iter().map(|(id, b)| (id, self.decode(b)))
    }

    /// All row ids, in storage order.
    pub fn ids(&self) -> impl Iterator<Item = RowId> + '_ {
        self.rows.keys()
    }

    /// The indexes, in schema order.
    pub fn indexes(&self) -> &[Index] {
        &self.indexes
    }

    /// The id of a row whose encoding is exactly `bytes` (`row` is its decoded form).
    pub fn find_identical(&self, row: &Row, bytes: &[u8]) -> Option<RowId> {
        match &self.by_bytes {
            Some(set) => {
                let hash = self.hasher.hash_one(bytes);
                set.find(hash, |id| self.rows.get(*id).is_some_and(|b| **b == *bytes))
                    .copied()
            }
            None => {
                let (pos, idx) = self
                    .indexes
                    .iter()
                    .enumerate()
                    .find(|(_, i)| i.def.unique)?;
                let key = row.project(&idx.def.columns);
                let id = self.indexes[pos].seek(&key).next()?;
                (self.rows.get(id).is_some_and(|b| **b == *bytes)).then_some(id)
            }
        }
    }

    /// The row holding `key` in unique index `index`, if any.
    pub fn unique_lookup(&self, index: usize, key: &[Value]) -> Option<RowId> {
        self.indexes[index].seek(key).next()
    }

    /// Stores a row whose constraints the caller has checked. `bytes` is its encoding.
    pub fn insert_unchecked(&mut self, row: &Row, bytes: Box<[u8]>) -> RowId {
        let id = self.rows.insert(bytes);
        for idx in &mut self.indexes {
            idx.insert(row, id);
        }
        if let Some(set) = &mut self.by_bytes {
            let rows = &self.rows;
            let hasher = &self.hasher;
            let hash = hasher.hash_one(&*rows[id]);
            set.insert_unique(hash, id, |id| hasher.hash_one(&*rows[*id]));
        }
        id
    }

    /// Removes the row at `id`, returning it.
    pub fn delete(&mut self, id: RowId) -> Option<Row> {
        let bytes = self.rows.get(id)?;
        let row = self.decode(bytes);
        if let Some(set) = &mut self.by_bytes {
            let hash = self.hasher.hash_one(&**bytes);
            if let Ok(entry) = set.find_entry(hash, |x| *x == id) {
                entry.remove();
            }
        }
        for idx in &mut self.indexes {
            idx.remove(&row, id);
        }
        self.rows.remove(id);
        Some(row)
    }

    /// Repacks the indexes (after a bulk load built them by appends).
    pub fn compact_indexes(&mut self) {
        for idx in &mut self.indexes {
            idx.compact();
        }
    }

    /// Removes every row.
    pub fn clear(&mut self) {
        self.rows.clear();
        for idx in &mut self.indexes {
            idx.clear();
        }
        if let Some(set) = &mut self.by_bytes {
            set.clear();
        }
    }

    /// Checks that `key` fits index `index` as a prefix of its columns.
    pub fn check_key(&self, index: usize, key: &[Value], with_bound: bool) -> Result<(), TxError> {
        let idx = self
            .indexes
            .get(index)
            .ok_or_else(|| TxError::UnknownIndex {
                table: self.schema.name.clone(),
                index,
            })?;
        let cols = &idx.def.columns;
        let fits = key.len() + usize::from(with_bound) <= cols.len()
            && key
                .iter()
                .zip(cols)
                .all(|(v, c)| v.has_type(&self.schema.column(*c).ty));
        if fits {
            Ok(())
        } else {
            Err(TxError::KeyMismatch {
                table: self.schema.name.clone(),
                index: idx.def.name.clone(),
                expected: cols
                    .iter()
                    .map(|c| self.schema.column(*c).ty.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Rows whose key in index `index` starts with `prefix` (key checked by the caller).
    pub fn seek<'a>(
        &'a self,
        index: usize,
        prefix: &[Value],
    ) -> impl Iterator<Item = RowId> + use<'a> {
        self.indexes[index].seek(prefix)
    }

    /// Rows of index `index` matching `prefix`, with the next key column within bounds.
    pub fn range<'a>(
        &'a self,
        index: usize,
        prefix: &[Value],
        lower: Bound<&Value>,
        upper: Bound<&Value>,
    ) -> impl Iterator<Item = RowId> + use<'a> {
        self.indexes[index].range(prefix, lower, upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlgebraicType as T;

    fn table() -> Table {
        let schema = TableSchema::builder("t")
            .column("a", T::I32)
            .column("b", T::String)
            .index(&["a"])
            .index(&["a", "b"])
            .build()
            .expect("valid");
        Table::new(Arc::new(schema))
    }

    fn put(t: &mut Table, a: i32, b: &str) -> RowId {
        let row = crate::row![a, b];
        let bytes = codec::row_bytes(t.schema(), &row);
        t.insert_unchecked(&row, bytes)
    }

    #[test]
    fn native_range_respects_signed_bounds() {
        let mut t = table();
        for a in -3..=3 {
            put(&mut t, a, "x");
        }
        let got: Vec<i32> = t
            .range(
                0,
                &[],
                Bound::Excluded(&Value::I32(-2)),
                Bound::Included(&Value::I32(1)),
            )
            .map(|id| match t.get(id).expect("live")[0] {
                Value::I32(a) => a,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, vec![-1, 0, 1]);
    }

    #[test]
    fn crossed_bounds_give_no_rows_instead_of_panicking() {
        let mut t = table();
        put(&mut t, 4, "x");
        let (five, three) = (Value::I32(5), Value::I32(3));
        assert_eq!(
            t.range(0, &[], Bound::Excluded(&five), Bound::Excluded(&three))
                .count(),
            0
        );
        assert_eq!(
            t.range(0, &[], Bound::Excluded(&five), Bound::Excluded(&five))
                .count(),
            0
        );
        assert_eq!(
            t.range(0, &[], Bound::Included(&five), Bound::Included(&five))
                .count(),
            0
        );
        let four = Value::I32(4);
        assert_eq!(
            t.range(0, &[], Bound::Included(&four), Bound::Included(&four))
                .count(),
            1
        );
    }

    #[test]
    fn multi_column_prefix_and_range() {
        let mut t = table();
        for (a, b) in [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (0, "z")] {
            put(&mut t, a, b);
        }
        assert_eq!(t.seek(1, &[Value::I32(1)]).count(), 3);
        let excl: Vec<Row> = t
            .range(
                1,
                &[Value::I32(1)],
                Bound::Excluded(&Value::from("a")),
                Bound::Unbounded,
            )
            .filter_map(|id| t.get(id))
            .collect();
        assert_eq!(excl, vec![crate::row![1, "b"], crate::row![1, "c"]]);
    }

    #[test]
    fn identical_rows_found_by_bytes_and_removed_on_delete() {
        let mut t = table();
        let id = put(&mut t, 5, "x");
        let row = crate::row![5, "x"];
        let bytes = codec::row_bytes(t.schema(), &row);
        assert_eq!(t.find_identical(&row, &bytes), Some(id));
        t.delete(id);
        assert_eq!(t.find_identical(&row, &bytes), None);
        assert_eq!(t.seek(0, &[Value::I32(5)]).count(), 0);
    }
}
