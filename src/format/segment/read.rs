//! Reading a segment file: [`Segment`] validates the header, the section table and the schema at
//! open (O(1) in the data size) and gives bounds-checked, zero-copy access to rows.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{
    read_u32, read_u64, SectionEntry, SectionKind, ENTRY_LEN, HEADER_LEN, MAGIC, MAX_SECTIONS,
    NO_FIELD,
};
use crate::dtype::{VectorCow, VectorRef};
use crate::error::{Error, Result};
use crate::format::graph::GraphView;
use crate::format::plaid::PlaidView;
use crate::format::screen::ScreenView;
use crate::format::{check_header_version, checksum, LeReader};
use crate::schema::{FieldKind, Schema};
use crate::storage::{self, MappedFile};

/// A variable-length column: an offsets section and a bytes section.
#[derive(Debug, Clone)]
pub(super) struct VarColumn {
    pub(super) offsets: Range<usize>,
    pub(super) bytes: Range<usize>,
    pub(super) kind: SectionKind,
}

/// Where a vector field's data lives in the file.
#[derive(Debug, Clone)]
pub(super) enum FieldColumn {
    Fixed {
        data: Range<usize>,
        row_elems: usize,
    },
    Multi {
        offsets: Range<usize>,
        /// The stored tokens; `None` for a codes-only field (its PLAID section holds them).
        tokens: Option<Range<usize>>,
        dim: usize,
        token_count: u64,
    },
}

/// An open, memory-mapped segment.
#[derive(Debug)]
pub struct Segment {
    pub(super) path: PathBuf,
    pub(super) map: MappedFile,
    pub(super) id: u64,
    pub(super) rows: u32,
    pub(super) schema: Schema,
    pub(super) sections: Vec<SectionEntry>,
    pub(super) ids: VarColumn,
    pub(super) texts: VarColumn,
    pub(super) metas: VarColumn,
    pub(super) order: Range<usize>,
    pub(super) fields: Vec<FieldColumn>,
    /// Per field: the byte range of its HNSW graph section, if any (validated at open).
    pub(super) graphs: Vec<Option<Range<usize>>>,
    /// Per field: the byte range of its screening-codes section, if any (validated at open).
    pub(super) screens: Vec<Option<Range<usize>>>,
    /// Per field: the byte range of its PLAID section, if any (validated at open).
    pub(super) plaids: Vec<Option<Range<usize>>>,
    /// Per field: set once [`Segment::plaid`] has checked the section's codec (its `O(K·d)`
    /// values and hash), so later searches open it in `O(1)`; holds binary16 centroids widened
    /// to f32 (empty for f32 centroids, which are read in place), shared between segments of
    /// one codec ([`crate::format::plaid::shared_centroids`]).
    pub(super) plaid_checked: Vec<std::sync::OnceLock<std::sync::Arc<[f32]>>>,
    /// Structures derived from the segment's bytes by higher layers (for example the metadata
    /// columns of `crate::filter`), built on first use and kept as long as the segment is open.
    pub(super) derived: parking_lot::Mutex<DerivedMap>,
}

/// What [`Segment::derived`] keeps: built structures by key.
type DerivedMap =
    std::collections::HashMap<String, std::sync::Arc<dyn std::any::Any + Send + Sync>>;

impl Segment {
    /// Opens and validates the structure of the segment file at `path` (its id is `id`).
    pub fn open(path: &Path, id: u64) -> Result<Self> {
        let map = storage::map_file(path)?;
        Self::from_map(path, id, map)
    }

    /// Validates an in-memory copy of a segment file (`path` is used in messages only).
    pub fn from_bytes(path: &Path, id: u64, bytes: &[u8]) -> Result<Self> {
        Self::from_map(path, id, MappedFile::from_bytes(bytes))
    }

    /// Validates an already mapped file (see [`Segment::open`]).
    pub fn from_map(path: &Path, id: u64, map: MappedFile) -> Result<Self> {
        let bytes = map.bytes();
        let corrupt = |section: &str, offset: u64, detail: String| {
            Error::corrupt(path, section, offset, detail)
        };
        let r = LeReader {
            bytes,
            path,
            what: "segment header",
        };
        let magic = r.slice(0, 8)?;
        if magic != MAGIC {
            return Err(corrupt(
                "segment header",
                0,
                "bad magic: not a vellum segment file".into(),
            ));
        }
        check_header_version(path, "segment header", bytes)?;
        let header_sum = r.u64(56)?;
        if checksum(&bytes[..56]) != header_sum {
            return Err(corrupt(
                "segment header",
                56,
                "header checksum mismatch".into(),
            ));
        }
        let flags = r.u32(12)?;
        if flags != 0 || r.u32(28)? != 0 {
            return Err(corrupt(
                "segment header",
                12,
                format!("unknown flags {flags:#x} or non-zero reserved field"),
            ));
        }
        let rows64 = r.u64(16)?;
        let rows = u32::try_from(rows64).map_err(|_| {
            corrupt(
                "segment header",
                16,
                format!("row count {rows64} exceeds {}", u32::MAX),
            )
        })?;
        let count = r.u32(24)?;
        if count > MAX_SECTIONS {
            return Err(corrupt(
                "segment header",
                24,
                format!("section count {count} exceeds {MAX_SECTIONS}"),
            ));
        }
        let table_off = r.u64(32)?;
        if table_off != HEADER_LEN {
            return Err(corrupt(
                "segment header",
                32,
                format!("section table offset {table_off}, expected {HEADER_LEN}"),
            ));
        }
        let file_len = r.u64(40)?;
        if file_len != bytes.len() as u64 {
            return Err(corrupt("segment header", 40, format!("file length field {file_len} but the file has {} bytes (truncated or extended)", bytes.len())));
        }
        let table = LeReader {
            bytes,
            path,
            what: "section table",
        }
        .slice(table_off, count as u64 * ENTRY_LEN)?;
        if checksum(table) != r.u64(48)? {
            return Err(corrupt(
                "section table",
                table_off,
                "section table checksum mismatch".into(),
            ));
        }
        let table_end = table_off + count as u64 * ENTRY_LEN;
        let t = LeReader {
            bytes: table,
            path,
            what: "section table",
        };
        let mut sections = Vec::with_capacity(count as usize);
        for i in 0..count as u64 {
            let at = i * ENTRY_LEN;
            let file_at = table_off + at;
            let code = t.u32(at)?;
            let kind = SectionKind::from_code(code).ok_or_else(|| {
                corrupt(
                    "section table",
                    file_at,
                    format!("unknown section kind {code}"),
                )
            })?;
            let e = SectionEntry {
                kind,
                field: t.u32(at + 4)?,
                offset: t.u64(at + 8)?,
                length: t.u64(at + 16)?,
                count: t.u64(at + 24)?,
                dtype: t.u32(at + 32)?,
                checksum: t.u64(at + 40)?,
            };
            let end = e.offset.checked_add(e.length);
            if !e.offset.is_multiple_of(crate::format::SECTION_ALIGN)
                || e.offset < table_end
                || end.is_none_or(|end| end > file_len)
                || t.u32(at + 36)? != 0
            {
                return Err(corrupt(kind.name(), file_at, format!(
                    "section at offset {} with length {} is misaligned, overlaps the table or runs past the end ({file_len} bytes)",
                    e.offset, e.length
                )));
            }
            if sections
                .iter()
                .any(|s: &SectionEntry| s.kind == e.kind && s.field == e.field)
            {
                return Err(corrupt(kind.name(), file_at, "section listed twice".into()));
            }
            sections.push(e);
        }
        let find = |kind: SectionKind, field: u32| -> Result<&SectionEntry> {
            sections
                .iter()
                .find(|s| s.kind == kind && s.field == field)
                .ok_or_else(|| {
                    corrupt(
                        "section table",
                        table_off,
                        format!(
                            "missing {} section{}",
                            kind.name(),
                            if field == NO_FIELD {
                                String::new()
                            } else {
                                format!(" for field {field}")
                            }
                        ),
                    )
                })
        };
        let range = |e: &SectionEntry| e.offset as usize..(e.offset + e.length) as usize;
        let expect_len = |e: &SectionEntry, expected: Option<u64>| -> Result<()> {
            match expected {
                Some(x) if x == e.length => Ok(()),
                _ => Err(corrupt(
                    e.kind.name(),
                    e.offset,
                    format!(
                        "length {} but {expected:?} expected for {rows} rows",
                        e.length
                    ),
                )),
            }
        };

        // Schema: small, so it is checksummed and parsed at open.
        let s = find(SectionKind::Schema, NO_FIELD)?;
        let schema_bytes = &bytes[range(s)];
        if checksum(schema_bytes) != s.checksum {
            return Err(corrupt("schema", s.offset, "checksum mismatch".into()));
        }
        let schema: Schema = serde_json::from_slice(schema_bytes)
            .map_err(|e| corrupt("schema", s.offset, format!("invalid schema JSON: {e}")))?;
        schema
            .validate()
            .map_err(|e| corrupt("schema", s.offset, e.to_string()))?;

        let n = rows as u64;
        let offsets_len = (n + 1) * 8;
        let var = |off_kind, bytes_kind| -> Result<VarColumn> {
            let o = find(off_kind, NO_FIELD)?;
            expect_len(o, Some(offsets_len))?;
            let b = find(bytes_kind, NO_FIELD)?;
            let col = VarColumn {
                offsets: range(o),
                bytes: range(b),
                kind: bytes_kind,
            };
            // O(1) sanity: first offset 0, last offset = bytes length.
            let first = read_u64(bytes, col.offsets.start);
            let last = read_u64(bytes, col.offsets.end - 8);
            if first != 0 || last != b.length {
                return Err(corrupt(
                    o.kind.name(),
                    o.offset,
                    format!("offsets run {first}..{last}, expected 0..{}", b.length),
                ));
            }
            Ok(col)
        };
        let ids = var(SectionKind::IdOffsets, SectionKind::IdBytes)?;
        let texts = var(SectionKind::TextOffsets, SectionKind::TextBytes)?;
        let metas = var(SectionKind::MetaOffsets, SectionKind::MetaBytes)?;
        let o = find(SectionKind::IdOrder, NO_FIELD)?;
        expect_len(o, Some(n * 4))?;
        let order = range(o);

        let mut fields = Vec::with_capacity(schema.fields.len());
        for (fi, f) in schema.fields.iter().enumerate() {
            let fi32 = fi as u32;
            let dtype = f.kind.dtype();
            let elem = dtype.size() as u64;
            let row_elems = f.kind.row_elements() as u64;
            let check_dtype = |e: &SectionEntry| -> Result<()> {
                if e.dtype != dtype.code() {
                    return Err(corrupt(
                        e.kind.name(),
                        e.offset,
                        format!(
                            "field {:?}: element type code {} but the schema says {dtype}",
                            f.name, e.dtype
                        ),
                    ));
                }
                Ok(())
            };
            let col = match f.kind {
                FieldKind::Dense { .. } | FieldKind::Tensor { .. } => {
                    let kind = if matches!(f.kind, FieldKind::Dense { .. }) {
                        SectionKind::Dense
                    } else {
                        SectionKind::Tensor
                    };
                    let e = find(kind, fi32)?;
                    check_dtype(e)?;
                    expect_len(e, n.checked_mul(row_elems * elem))?;
                    FieldColumn::Fixed {
                        data: range(e),
                        row_elems: row_elems as usize,
                    }
                }
                FieldKind::Multi { dim, .. } => {
                    let o = find(SectionKind::MultiOffsets, fi32)?;
                    expect_len(o, Some(offsets_len))?;
                    let first = read_u64(bytes, o.offset as usize);
                    let last = read_u64(bytes, (o.offset + o.length - 8) as usize);
                    // A codes-only field has no token section: its PLAID section (checked
                    // below to exist and to hold exactly `last` tokens) stands for it.
                    let t = sections
                        .iter()
                        .find(|s| s.kind == SectionKind::MultiTokens && s.field == fi32);
                    let count = match t {
                        Some(t) => {
                            check_dtype(t)?;
                            expect_len(t, t.count.checked_mul(row_elems * elem))?;
                            t.count
                        }
                        None => last,
                    };
                    if first != 0 || last != count {
                        return Err(corrupt(
                            o.kind.name(),
                            o.offset,
                            format!("token offsets run {first}..{last}, expected 0..{count}"),
                        ));
                    }
                    FieldColumn::Multi {
                        offsets: range(o),
                        tokens: t.map(range),
                        dim: dim as usize,
                        token_count: count,
                    }
                }
            };
            fields.push(col);
        }
        let mut graphs = vec![None; schema.fields.len()];
        for e in sections.iter().filter(|e| e.kind == SectionKind::HnswGraph) {
            let (metric, dim) = match schema.fields.get(e.field as usize).map(|f| &f.kind) {
                Some(FieldKind::Dense { metric, dim, .. }) => (*metric, *dim as usize),
                _ => {
                    return Err(corrupt(
                        e.kind.name(),
                        e.offset,
                        format!(
                            "graph section for field {}, which is not a dense field",
                            e.field
                        ),
                    ))
                }
            };
            let g = GraphView::open(&bytes[range(e)], path, e.offset, n, metric)?;
            if let Some((_, nav_dim)) = g.nav() {
                if nav_dim != dim {
                    return Err(corrupt(
                        e.kind.name(),
                        e.offset + 36,
                        format!("navigation vectors of dimension {nav_dim} for a field of dimension {dim}"),
                    ));
                }
            }
            graphs[e.field as usize] = Some(range(e));
        }
        let mut screens = vec![None; schema.fields.len()];
        for e in sections
            .iter()
            .filter(|e| e.kind == SectionKind::ScreenCodes)
        {
            let Some(FieldKind::Dense { metric, dim, .. }) =
                schema.fields.get(e.field as usize).map(|f| &f.kind)
            else {
                return Err(corrupt(
                    e.kind.name(),
                    e.offset,
                    format!(
                        "screening codes for field {}, which is not a dense field",
                        e.field
                    ),
                ));
            };
            if e.count != n || e.dtype != 0 {
                return Err(corrupt(
                    e.kind.name(),
                    e.offset,
                    format!(
                        "section table: count {} and dtype {} (expected {n} and 0)",
                        e.count, e.dtype
                    ),
                ));
            }
            ScreenView::open(&bytes[range(e)], path, e.offset, n, *dim as usize, *metric)?;
            screens[e.field as usize] = Some(range(e));
        }
        let mut plaids = vec![None; schema.fields.len()];
        let mut plaid_centroids: Vec<std::sync::Arc<[f32]>> =
            vec![std::sync::Arc::from(Vec::new()); schema.fields.len()];
        for e in sections.iter().filter(|e| e.kind == SectionKind::Plaid) {
            let f = e.field as usize;
            let (
                Some(FieldKind::Multi {
                    dim,
                    metric: crate::dtype::Metric::Ip | crate::dtype::Metric::Cosine,
                    ..
                }),
                Some(FieldColumn::Multi { token_count, .. }),
            ) = (schema.fields.get(f).map(|f| &f.kind), fields.get(f))
            else {
                return Err(corrupt(
                    e.kind.name(),
                    e.offset,
                    format!(
                        "plaid index for field {}, which is not a multi-vector field of metric ip or cosine",
                        e.field
                    ),
                ));
            };
            if e.count != n || e.dtype != 0 {
                return Err(corrupt(
                    e.kind.name(),
                    e.offset,
                    format!(
                        "section table: count {} and dtype {} (expected {n} and 0)",
                        e.count, e.dtype
                    ),
                ));
            }
            let view = PlaidView::open(
                &bytes[range(e)],
                path,
                e.offset,
                n,
                *token_count,
                *dim as usize,
            )?;
            let id = view.codec_id;
            if let std::borrow::Cow::Owned(widened) = view.centroids {
                plaid_centroids[f] = crate::format::plaid::shared_centroids(id, widened);
            }
            plaids[f] = Some(range(e));
        }
        for (fi, col) in fields.iter().enumerate() {
            if let FieldColumn::Multi { tokens: None, .. } = col {
                if plaids[fi].is_none() {
                    return Err(corrupt(
                        "section table",
                        table_off,
                        format!(
                            "missing multi-vector tokens section for field {fi} (only a codes-only field with a PLAID section may omit it)"
                        ),
                    ));
                }
            }
        }
        Ok(Segment {
            path: path.to_path_buf(),
            map,
            id,
            rows,
            schema,
            sections,
            ids,
            texts,
            metas,
            order,
            fields,
            graphs,
            screens,
            // Every section's codec was checked by the full open above.
            plaid_checked: plaid_centroids
                .into_iter()
                .map(std::sync::OnceLock::from)
                .collect(),
            plaids,
            derived: Default::default(),
        })
    }

    /// The screening codes of dense field `field`, if the segment has them (validated at open;
    /// this re-reads the header and the field's map, `O(dim)`).
    pub fn screen(&self, field: usize) -> Option<Result<ScreenView<'_>>> {
        let r = self.screens.get(field)?.as_ref()?;
        let (metric, dim) = match &self.schema.fields[field].kind {
            FieldKind::Dense { metric, dim, .. } => (*metric, *dim as usize),
            _ => return None,
        };
        Some(ScreenView::open(
            &self.bytes()[r.clone()],
            &self.path,
            r.start as u64,
            u64::from(self.rows),
            dim,
            metric,
        ))
    }

    /// Whether dense field `field` has an HNSW graph section (validated at open).
    pub fn has_graph(&self, field: usize) -> bool {
        self.graphs.get(field).is_some_and(Option::is_some)
    }

    /// The HNSW graph of dense field `field`, if the segment has one.
    pub fn graph(&self, field: usize) -> Option<Result<GraphView<'_>>> {
        let r = self.graphs.get(field)?.as_ref()?;
        let metric = match &self.schema.fields[field].kind {
            FieldKind::Dense { metric, .. } => *metric,
            _ => return None,
        };
        Some(GraphView::open(
            &self.bytes()[r.clone()],
            &self.path,
            r.start as u64,
            u64::from(self.rows),
            metric,
        ))
    }

    /// Whether multi-vector field `field` has a PLAID section here.
    pub fn has_plaid(&self, field: usize) -> bool {
        self.plaids.get(field).is_some_and(Option::is_some)
    }

    /// The PLAID section of multi-vector field `field`, if the segment has one (validated at
    /// open; the first call also checks its codec, `O(K·d)`, and later calls only re-read the
    /// header, `O(1)`).
    pub fn plaid(&self, field: usize) -> Option<Result<PlaidView<'_>>> {
        self.plaid_with(field, false)
    }

    /// [`Segment::plaid`], checking the codec again when `recheck` (`verify`).
    pub(super) fn plaid_with(&self, field: usize, recheck: bool) -> Option<Result<PlaidView<'_>>> {
        let r = self.plaids.get(field)?.as_ref()?;
        let (dim, tokens) = match (&self.schema.fields[field].kind, &self.fields[field]) {
            (FieldKind::Multi { dim, .. }, FieldColumn::Multi { token_count, .. }) => {
                (*dim as usize, *token_count)
            }
            _ => return None,
        };
        // The codec's values are checked (and hashed) on the first open only: the mapped bytes
        // of an open segment do not change.
        let checked = match recheck {
            true => None,
            false => self.plaid_checked[field].get().map(|c| &**c),
        };
        Some(PlaidView::open_checked(
            &self.bytes()[r.clone()],
            &self.path,
            r.start as u64,
            (u64::from(self.rows), tokens, dim),
            checked,
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's file id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of rows (deleted ones included).
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The schema stored in the segment.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    /// The section table.
    pub fn sections(&self) -> &[SectionEntry] {
        &self.sections
    }

    /// The whole file's bytes (what a backup copies).
    pub fn file_bytes(&self) -> &[u8] {
        self.bytes()
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    pub(super) fn var_item(&self, col: &VarColumn, row: u32) -> Result<&[u8]> {
        let b = self.bytes();
        let at = col.offsets.start + row as usize * 8;
        if row >= self.rows {
            return Err(Error::InvalidInput(format!(
                "row {row} out of range for segment {} ({} rows)",
                self.path.display(),
                self.rows
            )));
        }
        let (start, end) = (read_u64(b, at), read_u64(b, at + 8));
        let len = (col.bytes.end - col.bytes.start) as u64;
        if start > end || end > len {
            return Err(Error::corrupt(
                &self.path,
                col.kind.name(),
                at as u64,
                format!("row {row}: offsets {start}..{end} invalid for {len} bytes"),
            ));
        }
        Ok(&b[col.bytes.start + start as usize..col.bytes.start + end as usize])
    }

    fn utf8<'a>(&self, bytes: &'a [u8], col: &VarColumn, row: u32) -> Result<&'a str> {
        std::str::from_utf8(bytes).map_err(|e| {
            Error::corrupt(
                &self.path,
                col.kind.name(),
                col.bytes.start as u64,
                format!("row {row}: invalid UTF-8: {e}"),
            )
        })
    }

    /// The bytes of row `row`'s id offsets (empty past the last row): what a caller about to
    /// read several rows' ids prefetches first, so that their cache misses overlap.
    pub fn doc_id_offset_bytes(&self, row: u32) -> &[u8] {
        let at = self.ids.offsets.start + row as usize * 8;
        if row < self.rows {
            self.bytes().get(at..at + 16).unwrap_or(&[])
        } else {
            &[]
        }
    }

    /// Row `row`'s id bytes, not checked as UTF-8: what a caller about to read several rows' ids
    /// prefetches after their offsets ([`Segment::doc_id_offset_bytes`]).
    pub fn doc_id_bytes(&self, row: u32) -> Result<&[u8]> {
        self.var_item(&self.ids, row)
    }

    /// The id of `row`.
    pub fn doc_id(&self, row: u32) -> Result<&str> {
        let b = self.var_item(&self.ids, row)?;
        self.utf8(b, &self.ids, row)
    }

    /// A structure derived from this (immutable) segment, built by `build` on first use under
    /// `key` and kept while the segment is open, so that later snapshots reusing the segment
    /// reuse it too. `key` names what was built; a key holding another type is rebuilt.
    pub fn derived<T: std::any::Any + Send + Sync>(
        &self,
        key: &str,
        build: impl FnOnce(&Self) -> Result<T>,
    ) -> Result<std::sync::Arc<T>> {
        if let Some(found) = self.derived.lock().get(key) {
            if let Ok(t) = found.clone().downcast::<T>() {
                return Ok(t);
            }
        }
        // Built outside the lock: parallel searches may build the same structure twice, but
        // never wait on each other's builds of other keys.
        let built = std::sync::Arc::new(build(self)?);
        self.derived
            .lock()
            .insert(key.to_string(), built.clone() as std::sync::Arc<_>);
        Ok(built)
    }

    /// The stored text of `row`.
    pub fn text(&self, row: u32) -> Result<&str> {
        let b = self.var_item(&self.texts, row)?;
        self.utf8(b, &self.texts, row)
    }

    /// The stored metadata (a JSON object, as text) of `row`.
    pub fn metadata(&self, row: u32) -> Result<&str> {
        let b = self.var_item(&self.metas, row)?;
        self.utf8(b, &self.metas, row)
    }

    pub(super) fn order_at(&self, i: u32) -> Result<u32> {
        let row = read_u32(self.bytes(), self.order.start + i as usize * 4);
        if row >= self.rows {
            return Err(Error::corrupt(
                &self.path,
                "id order",
                (self.order.start + i as usize * 4) as u64,
                format!("row {row} out of range ({} rows)", self.rows),
            ));
        }
        Ok(row)
    }

    /// Finds the row holding `id` (deleted or not) by binary search over the id order section.
    pub fn find(&self, id: &str) -> Result<Option<u32>> {
        let (mut lo, mut hi) = (0u32, self.rows);
        // A corrupt order section could make the search wander; it still ends after log2(rows) steps.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let row = self.order_at(mid)?;
            match self.var_item(&self.ids, row)?.cmp(id.as_bytes()) {
                std::cmp::Ordering::Equal => return Ok(Some(row)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    fn vectors(&self, field: usize, range: Range<usize>) -> VectorRef<'_> {
        let dtype = self.schema.fields[field].kind.dtype();
        VectorRef::from_bytes(dtype, &self.bytes()[range])
            .expect("sections are 64-byte aligned and sized in whole elements")
    }

    /// All rows of a dense or tensor field as one row-major matrix (`rows × row_elements`).
    pub fn fixed_matrix(&self, field: usize) -> VectorRef<'_> {
        match &self.fields[field] {
            FieldColumn::Fixed { data, .. } => self.vectors(field, data.clone()),
            FieldColumn::Multi { .. } => panic!("field {field} is a multi-vector field"),
        }
    }

    /// The value of a dense or tensor field for `row`.
    pub fn fixed_row(&self, field: usize, row: u32) -> VectorRef<'_> {
        match &self.fields[field] {
            FieldColumn::Fixed { data, row_elems } => {
                let size = self.schema.fields[field].kind.dtype().size();
                let start = data.start + row as usize * row_elems * size;
                self.vectors(field, start..start + row_elems * size)
            }
            FieldColumn::Multi { .. } => panic!("field {field} is a multi-vector field"),
        }
    }

    /// All stored token vectors of a multi field (`tokens × dim`); `None` for a codes-only field,
    /// whose tokens [`Segment::multi_tokens_f32`] decompresses.
    pub fn multi_tokens(&self, field: usize) -> Option<VectorRef<'_>> {
        match &self.fields[field] {
            FieldColumn::Multi { tokens, .. } => {
                tokens.as_ref().map(|t| self.vectors(field, t.clone()))
            }
            FieldColumn::Fixed { .. } => panic!("field {field} is not a multi-vector field"),
        }
    }

    /// Whether multi field `field` keeps its full-precision tokens (false: codes only).
    pub fn stores_tokens(&self, field: usize) -> bool {
        matches!(
            &self.fields[field],
            FieldColumn::Multi {
                tokens: Some(_),
                ..
            }
        )
    }

    /// Number of tokens of multi field `field` in this segment.
    pub fn multi_token_count(&self, field: usize) -> usize {
        match &self.fields[field] {
            FieldColumn::Multi { token_count, .. } => *token_count as usize,
            FieldColumn::Fixed { .. } => panic!("field {field} is not a multi-vector field"),
        }
    }

    /// Appends tokens `range` (token numbers, as [`Segment::multi_range`] gives them) of multi
    /// field `field` to `out` as f32 (`dim` values each): the stored vectors converted, or for a
    /// codes-only field the PLAID section's decompression (centroid plus residual buckets,
    /// normalised for cosine; ColBERTv2 §3), `O(len · d)`.
    pub fn multi_tokens_f32(
        &self,
        field: usize,
        range: Range<usize>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let dim = match &self.fields[field] {
            FieldColumn::Multi { dim, .. } => *dim,
            FieldColumn::Fixed { .. } => panic!("field {field} is not a multi-vector field"),
        };
        if range.end > self.multi_token_count(field) || range.start > range.end {
            return Err(Error::corrupt(
                &self.path,
                "multi-vector offsets",
                0,
                format!(
                    "tokens {range:?} of field {field} outside its {} tokens",
                    self.multi_token_count(field)
                ),
            ));
        }
        if let Some(stored) = self.multi_tokens(field) {
            let at = out.len();
            out.resize(at + range.len() * dim, 0.0);
            stored
                .slice(range.start * dim..range.end * dim)
                .write_f32(&mut out[at..]);
            return Ok(());
        }
        let view = self
            .plaid(field)
            .expect("a codes-only field has a PLAID section (checked at open)")?;
        let table = self.derived(&format!("plaid-lookup/{field}"), |_| {
            Ok(crate::format::plaid::lookup_table(view.weights, view.nbits))
        })?;
        let cosine = matches!(
            self.schema.fields[field].kind,
            FieldKind::Multi {
                metric: crate::dtype::Metric::Cosine,
                ..
            }
        );
        view.decompress_tokens(&table, range, cosine, out, (&self.path, view.base))
    }

    /// The token range (in tokens) of `row` in a multi field, checked against the token count.
    pub fn multi_range(&self, field: usize, row: u32) -> Result<Range<usize>> {
        match &self.fields[field] {
            FieldColumn::Multi {
                offsets,
                token_count,
                ..
            } => {
                if row >= self.rows {
                    return Err(Error::InvalidInput(format!(
                        "row {row} out of range for segment {} ({} rows)",
                        self.path.display(),
                        self.rows
                    )));
                }
                let at = offsets.start + row as usize * 8;
                let (s, e) = (read_u64(self.bytes(), at), read_u64(self.bytes(), at + 8));
                if s > e || e > *token_count {
                    return Err(Error::corrupt(
                        &self.path,
                        "multi-vector offsets",
                        at as u64,
                        format!(
                            "row {row}: token offsets {s}..{e} invalid for {token_count} tokens"
                        ),
                    ));
                }
                Ok(s as usize..e as usize)
            }
            FieldColumn::Fixed { .. } => panic!("field {field} is not a multi-vector field"),
        }
    }

    /// The token vectors of `row` in a multi field (`n_tokens × dim`): stored, or decompressed
    /// (as f32) for a codes-only field.
    pub fn multi_row(&self, field: usize, row: u32) -> Result<VectorCow<'_>> {
        let r = self.multi_range(field, row)?;
        match &self.fields[field] {
            FieldColumn::Multi {
                tokens: Some(tokens),
                dim,
                ..
            } => {
                let size = self.schema.fields[field].kind.dtype().size() * dim;
                Ok(VectorCow::Borrowed(self.vectors(
                    field,
                    tokens.start + r.start * size..tokens.start + r.end * size,
                )))
            }
            FieldColumn::Multi { tokens: None, .. } => {
                let mut out = Vec::new();
                self.multi_tokens_f32(field, r, &mut out)?;
                Ok(VectorCow::Owned(out))
            }
            FieldColumn::Fixed { .. } => unreachable!(),
        }
    }

    /// The raw bytes of a field value for `row` in the field's element type (what
    /// [`super::SegmentSource::field`] expects): borrowed, or encoded from the decompressed
    /// tokens of a codes-only field.
    pub fn raw_field(&self, field: usize, row: u32) -> Result<std::borrow::Cow<'_, [u8]>> {
        match &self.fields[field] {
            FieldColumn::Fixed { .. } => Ok(self.fixed_row(field, row).as_bytes().into()),
            FieldColumn::Multi { .. } => Ok(match self.multi_row(field, row)? {
                VectorCow::Borrowed(v) => v.as_bytes().into(),
                VectorCow::Owned(v) => {
                    let mut bytes = Vec::new();
                    self.schema.fields[field]
                        .kind
                        .dtype()
                        .encode_into(&v, &mut bytes);
                    bytes.into()
                }
            }),
        }
    }
}
