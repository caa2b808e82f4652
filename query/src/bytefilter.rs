//! Byte filters: a single-table filter checked against a row's stored bytes.
//!
//! The stored encoding is canonical (row identity is bitwise equality of it), so for a
//! type whose every value has one fixed-width encoding, `col = const` holds exactly when
//! the column's bytes equal the constant's encoding. When only fixed-width columns come
//! before `col`, those bytes sit at the same offset in every row. Such conjuncts become
//! byte comparisons, and neighbouring ones merge into one: `x = 0 AND z = 10000 AND
//! dimension = 0` over three adjacent 4-byte columns is one 12-byte comparison. Every
//! other conjunct is checked through column reads, as full evaluation does.
//!
//! Incremental evaluation of a single-table query runs its filter over every row a
//! commit changed in the table; this is that filter's fast form. Floats are left to the
//! column reads: `-0.0 = 0.0` holds although their bits differ.

use tidings_engine::codec::{self, StoredRow};
use tidings_engine::{AlgebraicType, TableSchema, Value};

use crate::check::{Pred, Side};
use crate::exec::{NO_LOOKUP, holds_on};
use crate::parse::ast::CmpOp;
use crate::plan::conjuncts;

/// A single-table filter compiled against its table's stored row layout.
#[derive(Clone, Debug, Default)]
pub struct ByteFilter {
    /// Byte ranges every passing row has, by offset, none touching another.
    spans: Vec<Span>,
    /// Conjuncts checked through column reads.
    rest: Vec<Pred>,
}

#[derive(Clone, Debug)]
struct Span {
    at: usize,
    bytes: Vec<u8>,
}

/// Whether every value of `ty` has exactly one encoding of one width: the fixed-width
/// types but floats, whose `-0.0` and `0.0` compare equal with different bits.
fn exact_bytes(ty: &AlgebraicType) -> bool {
    codec::fixed_width(ty).is_some() && !matches!(ty, AlgebraicType::F32 | AlgebraicType::F64)
}

impl ByteFilter {
    /// Compiles `filter`, a predicate on the rows of `table` alone.
    pub fn compile(filter: &Pred, table: &TableSchema) -> Self {
        let offsets = codec::fixed_offsets(table);
        let mut spans: Vec<Span> = Vec::new();
        let mut rest = Vec::new();
        for c in conjuncts(filter) {
            match c {
                Pred::Cmp {
                    side: Side::Returned,
                    col,
                    op: CmpOp::Eq,
                    value,
                } if offsets.get(col.idx()).is_some()
                    && exact_bytes(&table.column(*col).ty)
                    && !matches!(value, Value::Null)
                    && value.has_type(&table.column(*col).ty) =>
                {
                    let mut bytes = Vec::new();
                    codec::encode_value(value.into(), &mut bytes);
                    spans.push(Span {
                        at: offsets[col.idx()] as usize,
                        bytes,
                    });
                }
                other => rest.push(other.clone()),
            }
        }
        spans.sort_by_key(|s| s.at);
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(last) if last.at + last.bytes.len() == s.at => last.bytes.extend(s.bytes),
                // Two equalities on one column: keep both; rows fail one unless they agree.
                _ => merged.push(s),
            }
        }
        ByteFilter {
            spans: merged,
            rest,
        }
    }

    /// Whether the filter holds for `row`, a stored row of the compiled-for table.
    #[inline]
    pub fn holds(&self, row: &StoredRow<'_>) -> bool {
        let bytes = row.bytes();
        self.spans
            .iter()
            .all(|s| bytes.get(s.at..s.at + s.bytes.len()) == Some(&s.bytes[..]))
            && self.rest.iter().all(|p| holds_on(p, row, NO_LOOKUP))
    }

    /// Number of byte comparisons (merged) the filter makes before column reads.
    pub fn spans(&self) -> usize {
        self.spans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tidings_engine::{ColId, Row, codec::row_bytes};

    fn schema() -> TableSchema {
        TableSchema::builder("t")
            .column("a", AlgebraicType::U64)
            .column("b", AlgebraicType::I32)
            .column("c", AlgebraicType::I32)
            .column("f", AlgebraicType::F64)
            .column("s", AlgebraicType::String)
            .column("d", AlgebraicType::U32)
            .build()
            .expect("valid")
    }

    fn eq(col: u16, value: Value) -> Pred {
        Pred::Cmp {
            side: Side::Returned,
            col: ColId(col),
            op: CmpOp::Eq,
            value,
        }
    }

    #[test]
    fn adjacent_equalities_merge_and_the_rest_stays_a_predicate() {
        let filter = Pred::And(vec![
            eq(1, Value::I32(0)),
            eq(2, Value::I32(7)),
            eq(3, Value::F64(0.0)),
            eq(5, Value::U32(1)),
        ]);
        let f = ByteFilter::compile(&filter, &schema());
        // b and c merge; f is a float and d follows a string: both stay column reads.
        assert_eq!(f.spans(), 1);
        assert_eq!(f.rest.len(), 2);
    }

    fn row(a: u64, b: i32, c: i32, f: f64, s: &str, d: u32) -> Row {
        Row::new(vec![
            Value::U64(a),
            Value::I32(b),
            Value::I32(c),
            Value::F64(f),
            Value::String(s.into()),
            Value::U32(d),
        ])
    }

    proptest! {
        /// The byte filter agrees with the predicate evaluated on the decoded row.
        #[test]
        fn agrees_with_column_reads(
            a in 0u64..3, b in -1i32..2, c in -1i32..2, f in prop_oneof![Just(0.0), Just(-0.0), Just(1.5)],
            s in "[ab]{0,2}", d in 0u32..3,
            ka in 0u64..3, kb in -1i32..2, kc in -1i32..2, kd in 0u32..3,
            pick in proptest::collection::vec(any::<bool>(), 5),
        ) {
            let schema = schema();
            let mut conj = Vec::new();
            if pick[0] { conj.push(eq(0, Value::U64(ka))); }
            if pick[1] { conj.push(eq(1, Value::I32(kb))); }
            if pick[2] { conj.push(eq(2, Value::I32(kc))); }
            if pick[3] { conj.push(eq(3, Value::F64(0.0))); }
            if pick[4] { conj.push(eq(5, Value::U32(kd))); }
            let filter = match conj.len() {
                0 => Pred::Const(true),
                1 => conj.pop().expect("one"),
                _ => Pred::And(conj),
            };
            let r = row(a, b, c, f, &s, d);
            let bytes = row_bytes(&schema, &r);
            let stored = StoredRow::new(&schema, &bytes).expect("encodes");
            let compiled = ByteFilter::compile(&filter, &schema);
            prop_assert_eq!(compiled.holds(&stored), holds_on(&filter, &r, NO_LOOKUP));
        }
    }
}
