//! Rows: a product of values in column order.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// One row: its values in column order.
///
/// Rows leave the store as owned values (in TxData they sit behind an `Arc<[Row]>`);
/// committed state keeps them in the compact encoding of [`crate::codec`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Row(Box<[Value]>);

impl Row {
    /// A row of the given values.
    pub fn new(values: impl Into<Box<[Value]>>) -> Self {
        Row(values.into())
    }

    /// The values, by column position.
    pub fn values(&self) -> &[Value] {
        &self.0
    }

    /// Mutable access, used to assign sequence values and normalize floats.
    pub fn values_mut(&mut self) -> &mut [Value] {
        &mut self.0
    }

    /// The row's values projected onto `columns` (an index key).
    pub fn project(&self, columns: &[crate::ColId]) -> Box<[Value]> {
        columns
            .iter()
            .map(|c| self.0[c.idx()].clone())
            .collect::<Vec<_>>()
            .into_boxed_slice()
    }

    /// Consumes the row, returning its values.
    pub fn into_values(self) -> Box<[Value]> {
        self.0
    }
}

impl Deref for Row {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

impl From<Vec<Value>> for Row {
    fn from(v: Vec<Value>) -> Self {
        Row(v.into_boxed_slice())
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str(")")
    }
}

/// Builds a [`Row`] from expressions convertible into [`Value`]: `row![1u64, "hi"]`.
#[macro_export]
macro_rules! row {
    ($($v:expr),* $(,)?) => {
        $crate::Row::new(vec![$($crate::Value::from($v)),*])
    };
}
