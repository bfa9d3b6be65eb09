//! The full check of a segment file ([`Segment::verify`]): every checksum, offset and value.

use super::read::{FieldColumn, Segment};
use super::{SectionEntry, ENTRY_LEN, HEADER_LEN, NO_FIELD};
use crate::error::{Error, Result};
use crate::format::checksum;

impl Segment {
    /// Full check: every section checksum, every offset, UTF-8 of ids and texts, metadata JSON,
    /// id order (sorted, unique), at least one token per multi-vector row, finite vector values.
    /// Returns the first problem found.
    pub fn verify(&self) -> Result<()> {
        let b = self.bytes();
        let mut sorted: Vec<&SectionEntry> = self.sections.iter().collect();
        sorted.sort_by_key(|s| s.offset);
        let mut at = HEADER_LEN + self.sections.len() as u64 * ENTRY_LEN;
        for s in &sorted {
            if s.offset < at {
                return Err(Error::corrupt(
                    &self.path,
                    s.kind.name(),
                    s.offset,
                    format!("section overlaps the previous one (which ends at {at})"),
                ));
            }
            if let Some(i) = b[at as usize..s.offset as usize]
                .iter()
                .position(|&x| x != 0)
            {
                return Err(Error::corrupt(
                    &self.path,
                    "padding",
                    at + i as u64,
                    "non-zero padding byte between sections",
                ));
            }
            at = s.offset + s.length;
        }
        if at != b.len() as u64 {
            return Err(Error::corrupt(
                &self.path,
                "padding",
                at,
                "trailing bytes after the last section",
            ));
        }
        for s in &self.sections {
            let data = &b[s.offset as usize..(s.offset + s.length) as usize];
            if checksum(data) != s.checksum {
                return Err(Error::corrupt(
                    &self.path,
                    s.kind.name(),
                    s.offset,
                    format!(
                        "checksum mismatch{}",
                        if s.field == NO_FIELD {
                            String::new()
                        } else {
                            format!(" (field {})", s.field)
                        }
                    ),
                ));
            }
        }
        for field in 0..self.graphs.len() {
            if let Some(g) = self.graph(field) {
                g?.verify()?;
            }
        }
        for field in 0..self.screens.len() {
            if let Some(view) = self.screen(field) {
                let base = self.screens[field].as_ref().map_or(0, |r| r.start as u64);
                view?.verify(&self.path, base, &|r| {
                    Ok(self.fixed_row(field, r as u32).to_f32_vec())
                })?;
            }
        }
        for field in 0..self.plaids.len() {
            // Every check, the codec's included (even when a search already opened it).
            if let Some(view) = self.plaid_with(field, true) {
                let base = self.plaids[field].as_ref().map_or(0, |r| r.start as u64);
                view?.verify(&self.path, base, self.rows as usize, &|r| {
                    self.multi_range(field, r as u32)
                })?;
            }
        }
        for row in 0..self.rows {
            self.doc_id(row)?;
            self.text(row)?;
            let meta = self.metadata(row)?;
            if !matches!(
                serde_json::from_str::<serde_json::Value>(meta),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err(Error::corrupt(
                    &self.path,
                    "metadata bytes",
                    self.metas.bytes.start as u64,
                    format!("row {row}: metadata is not a JSON object"),
                ));
            }
        }
        let mut seen = vec![false; self.rows as usize];
        let mut prev: Option<&[u8]> = None;
        for i in 0..self.rows {
            let row = self.order_at(i)?;
            let id = self.var_item(&self.ids, row)?;
            if std::mem::replace(&mut seen[row as usize], true) || prev.is_some_and(|p| p >= id) {
                return Err(Error::corrupt(
                    &self.path,
                    "id order",
                    (self.order.start + i as usize * 4) as u64,
                    format!("entry {i} (row {row}) breaks the sorted, unique id order"),
                ));
            }
            prev = Some(id);
        }
        for (fi, col) in self.fields.iter().enumerate() {
            let values = match col {
                FieldColumn::Fixed { .. } => Some(self.fixed_matrix(fi)),
                FieldColumn::Multi { .. } => {
                    let mut prev_end = 0;
                    for row in 0..self.rows {
                        let r = self.multi_range(fi, row)?;
                        if r.start != prev_end || r.is_empty() {
                            return Err(Error::corrupt(&self.path, "multi-vector offsets", 0, format!("field {fi} row {row}: token range {r:?} is empty or not contiguous")));
                        }
                        prev_end = r.end;
                    }
                    if !self.stores_tokens(fi) {
                        // A codes-only field: its decompressed tokens must be finite.
                        let (count, mut block) = (self.multi_token_count(fi), Vec::new());
                        for start in (0..count).step_by(4096) {
                            block.clear();
                            self.multi_tokens_f32(
                                fi,
                                start..(start + 4096).min(count),
                                &mut block,
                            )?;
                            if let Some(pos) = block.iter().position(|v| !v.is_finite()) {
                                return Err(Error::corrupt(
                                    &self.path,
                                    "plaid index",
                                    0,
                                    format!(
                                        "field {:?}: decompressed element {} is not finite",
                                        self.schema.fields[fi].name,
                                        start * self.schema.fields[fi].kind.row_elements() + pos
                                    ),
                                ));
                            }
                        }
                    }
                    self.multi_tokens(fi)
                }
            };
            if let Some(pos) = values.and_then(|v| v.first_non_finite()) {
                return Err(Error::corrupt(
                    &self.path,
                    "vector data",
                    0,
                    format!(
                        "field {:?}: element {pos} is not finite",
                        self.schema.fields[fi].name
                    ),
                ));
            }
        }
        Ok(())
    }
}
