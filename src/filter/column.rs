//! A metadata key's column in one segment: which rows hold the key, the rows of each scalar value
//! (a posting list per value) and the numbers sorted by value (for ranges). Built by one pass over
//! the segment's metadata the first time a filter reads the key, then kept with the segment
//! ([`Segment::derived`]): a filtered search touches the postings it needs, never the metadata.

use std::collections::HashMap;
use std::ops::Bound;

use super::expr::{lookup, parse_metadata, Scalar};
use super::rows::RowSet;
use crate::error::{Error, Result};
use crate::format::segment::Segment;
use serde_json::Value;

/// A scalar as a hash key: numbers by their `f64` bits (`-0` as `0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Term {
    Null,
    Bool(bool),
    Number(u64),
    String(Box<str>),
}

impl Term {
    fn of(s: &Scalar) -> Term {
        match s {
            Scalar::Null => Term::Null,
            Scalar::Bool(b) => Term::Bool(*b),
            Scalar::Number(x) => Term::Number(number_bits(*x)),
            Scalar::String(s) => Term::String(s.as_str().into()),
        }
    }

    fn of_json(v: &Value) -> Option<Term> {
        Some(match v {
            Value::Null => Term::Null,
            Value::Bool(b) => Term::Bool(*b),
            Value::Number(n) => Term::Number(number_bits(n.as_f64()?)),
            Value::String(s) => Term::String(s.as_str().into()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

fn number_bits(x: f64) -> u64 {
    if x == 0.0 {
        0.0f64.to_bits()
    } else {
        x.to_bits()
    }
}

/// One key of one segment.
#[derive(Debug)]
pub(super) struct Column {
    rows: u32,
    /// Rows where the key is present (any value); `None` when no row has it (a key that never
    /// occurs costs no bitmap).
    present: Option<RowSet>,
    /// Rows per scalar value (ascending, each row once).
    postings: HashMap<Term, Vec<u32>>,
    /// `(value, row)` of every number, sorted by value then row.
    numbers: Vec<(f64, u32)>,
}

impl Column {
    /// Reads `key` from every row's metadata (deleted rows included: the column belongs to the
    /// immutable segment, deletes are applied per search).
    pub(super) fn build(seg: &Segment, key: &str) -> Result<Column> {
        let rows = seg.rows();
        let mut present = RowSet::empty(rows);
        let mut postings: HashMap<Term, Vec<u32>> = HashMap::new();
        let mut numbers = Vec::new();
        let mut add = |row: u32, v: &Value, numbers: &mut Vec<(f64, u32)>| {
            if let Some(t) = Term::of_json(v) {
                if let Value::Number(n) = v {
                    numbers.push((n.as_f64().unwrap_or(f64::NAN), row));
                }
                let list = postings.entry(t).or_default();
                if list.last() != Some(&row) {
                    list.push(row);
                }
            }
        };
        // Fast skip: stored metadata (serde_json's text) without the key's first part, written
        // as is when it needs no escaping, cannot hold the key.
        let first = key.split('.').next().unwrap_or(key);
        let plain = !first.contains(['"', '\\']) && !first.chars().any(char::is_control);
        for row in 0..rows {
            let text = seg.metadata(row)?;
            // Text with a backslash may spell the key with escapes (`"l\u0061ng"`): parsed.
            if plain && !text.contains(first) && !text.contains('\\') {
                continue;
            }
            let meta = parse_metadata(text).map_err(|e| {
                Error::corrupt(
                    seg.path(),
                    "metadata",
                    0,
                    format!("row {row}: stored metadata is not JSON ({e})"),
                )
            })?;
            let Some(v) = lookup(&meta, key) else {
                continue;
            };
            present.insert(row);
            match v {
                Value::Array(items) => items.iter().for_each(|x| add(row, x, &mut numbers)),
                other => add(row, other, &mut numbers),
            }
        }
        numbers.retain(|(x, _)| !x.is_nan());
        let present = (present.count() > 0).then_some(present);
        numbers.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(Column {
            rows,
            present,
            postings,
            numbers,
        })
    }

    /// Rows holding the key.
    pub(super) fn present(&self) -> RowSet {
        self.present
            .clone()
            .unwrap_or_else(|| RowSet::empty(self.rows))
    }

    /// Rows holding one of `values`.
    pub(super) fn equal_to_any(&self, values: &[Scalar]) -> RowSet {
        let mut out = RowSet::empty(self.rows);
        for v in values {
            if let Some(rows) = self.postings.get(&Term::of(v)) {
                rows.iter().for_each(|&r| out.insert(r));
            }
        }
        out
    }

    /// Rows holding a number within the bounds.
    pub(super) fn in_range(&self, lower: &Bound<f64>, upper: &Bound<f64>) -> RowSet {
        let start = match lower {
            Bound::Included(l) => self.numbers.partition_point(|(x, _)| x < l),
            Bound::Excluded(l) => self.numbers.partition_point(|(x, _)| x <= l),
            Bound::Unbounded => 0,
        };
        let end = match upper {
            Bound::Included(u) => self.numbers.partition_point(|(x, _)| x <= u),
            Bound::Excluded(u) => self.numbers.partition_point(|(x, _)| x < u),
            Bound::Unbounded => self.numbers.len(),
        };
        let mut out = RowSet::empty(self.rows);
        for &(_, r) in self.numbers.get(start..end.max(start)).unwrap_or(&[]) {
            out.insert(r);
        }
        out
    }
}
