//! Metadata filters: a small JSON expression over the documents' metadata objects ([`Filter`],
//! its syntax documented there), evaluated per segment into the set of matching rows
//! ([`matching_rows`]).
//!
//! Evaluation never parses metadata per query: the first filter that reads a key in a segment
//! builds that key's column (presence bitmap, a posting list per scalar value, numbers sorted for
//! ranges) in one pass over the segment's metadata, and the segment keeps it in memory
//! ([`crate::format::segment::Segment::derived`]) for every later query, in this and later
//! snapshots that share the segment. Columns are not stored in the segment file (nothing in
//! `format-spec/` changes); the cost is one metadata pass per key and segment after open.
//!
//! An algorithm layer like `hnsw` and `plaid`: it reads `format` segments and never imports
//! `search` or the engine; `crate::search` turns the row sets into what each search path skips.

mod column;
mod expr;
mod rows;

pub use expr::{Filter, Scalar};
pub use rows::RowSet;

use crate::error::Result;
use crate::format::segment::Segment;
use column::Column;

/// The key under which a segment keeps the column of metadata key `key`.
fn column_key(key: &str) -> String {
    format!("filter.column/{key}")
}

/// The rows of `seg` (deleted ones included) whose metadata matches `filter`.
pub fn matching_rows(seg: &Segment, filter: &Filter) -> Result<RowSet> {
    let column = |key: &str| seg.derived(&column_key(key), |s| Column::build(s, key));
    Ok(match filter {
        Filter::All => RowSet::full(seg.rows()),
        Filter::Eq { key, value } => column(key)?.equal_to_any(std::slice::from_ref(value)),
        Filter::In { key, values } => column(key)?.equal_to_any(values),
        Filter::Range { key, lower, upper } => column(key)?.in_range(lower, upper),
        Filter::Exists { key } => column(key)?.present(),
        Filter::And(fs) => {
            let mut out = RowSet::full(seg.rows());
            for f in fs {
                out.intersect(&matching_rows(seg, f)?);
            }
            out
        }
        Filter::Or(fs) => {
            let mut out = RowSet::empty(seg.rows());
            for f in fs {
                out.union(&matching_rows(seg, f)?);
            }
            out
        }
        Filter::Not(f) => {
            let mut out = matching_rows(seg, f)?;
            out.complement();
            out
        }
    })
}
