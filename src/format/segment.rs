//! `*.vseg`: an immutable segment file holding a batch of documents of one collection.
//!
//! A 64-byte header, a table of 48-byte section entries, then the sections, each starting at a
//! multiple of 64 bytes (zero padding between). The full byte layout, with every section kind, is in
//! `format-spec/segment.md`.
//!
//! Opening ([`Segment::open`]) checks the header, the section table and the schema section, and the
//! size of every section, but reads none of the bulk data: its cost does not grow with the segment.
//! Per-row accessors check the offsets they use; [`Segment::verify`] checks everything.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::graph::GraphView;
use super::{align_up, check_version, checksum, LeReader, FORMAT_VERSION};
use crate::dtype::VectorRef;
use crate::error::{Error, Result};
use crate::schema::{FieldKind, Schema};
use crate::storage::{self, Directory, MappedFile};

/// Magic bytes of a segment file.
pub const MAGIC: &[u8; 8] = b"VELLUMSG";
/// Header length.
pub const HEADER_LEN: u64 = 64;
/// Length of one section-table entry.
pub const ENTRY_LEN: u64 = 48;
/// `field` value of sections that do not belong to a vector field.
pub const NO_FIELD: u32 = u32::MAX;
/// Upper bound on the section count (8 document sections + 2 per field, 256 fields).
pub const MAX_SECTIONS: u32 = 8 + 2 * 256;

/// The kinds of section a segment holds. Codes are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// The collection schema as JSON (self-description; must equal the manifest's).
    Schema = 1,
    /// `u64[rows + 1]` byte offsets into `IdBytes`.
    IdOffsets = 2,
    /// Concatenated UTF-8 ids.
    IdBytes = 3,
    /// `u32[rows]`: row numbers sorted by id bytes (for lookup by id).
    IdOrder = 4,
    /// `u64[rows + 1]` byte offsets into `TextBytes`.
    TextOffsets = 5,
    /// Concatenated UTF-8 texts.
    TextBytes = 6,
    /// `u64[rows + 1]` byte offsets into `MetaBytes`.
    MetaOffsets = 7,
    /// Concatenated metadata, each a JSON object in UTF-8.
    MetaBytes = 8,
    /// Dense field: `rows × dim` elements, row-major.
    Dense = 16,
    /// Multi field: `u64[rows + 1]` token offsets (in tokens) into `MultiTokens`.
    MultiOffsets = 17,
    /// Multi field: `tokens × dim` elements, row-major.
    MultiTokens = 18,
    /// Tensor field: `rows × prod(shape)` elements, row-major (C order).
    Tensor = 19,
    /// Dense field, optional: an HNSW graph over the field's rows (`format-spec/hnsw.md`).
    HnswGraph = 20,
}

impl SectionKind {
    /// Parses a section kind code.
    pub fn from_code(code: u32) -> Option<Self> {
        use SectionKind::*;
        Some(match code {
            1 => Schema,
            2 => IdOffsets,
            3 => IdBytes,
            4 => IdOrder,
            5 => TextOffsets,
            6 => TextBytes,
            7 => MetaOffsets,
            8 => MetaBytes,
            16 => Dense,
            17 => MultiOffsets,
            18 => MultiTokens,
            19 => Tensor,
            20 => HnswGraph,
            _ => return None,
        })
    }

    /// Name used in error messages and the spec.
    pub fn name(self) -> &'static str {
        use SectionKind::*;
        match self {
            Schema => "schema",
            IdOffsets => "id offsets",
            IdBytes => "id bytes",
            IdOrder => "id order",
            TextOffsets => "text offsets",
            TextBytes => "text bytes",
            MetaOffsets => "metadata offsets",
            MetaBytes => "metadata bytes",
            Dense => "dense vectors",
            MultiOffsets => "multi-vector offsets",
            MultiTokens => "multi-vector tokens",
            Tensor => "tensor data",
            HnswGraph => "hnsw graph",
        }
    }
}

/// One decoded section-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the section holds.
    pub kind: SectionKind,
    /// Field index, or [`NO_FIELD`].
    pub field: u32,
    /// Start offset in the file (multiple of 64).
    pub offset: u64,
    /// Length in bytes (padding excluded).
    pub length: u64,
    /// Items: rows, tokens (for `MultiTokens`) or bytes (for byte sections).
    pub count: u64,
    /// Element type code for vector sections, 0 otherwise.
    pub dtype: u32,
    /// XXH3-64 of the section's bytes.
    pub checksum: u64,
}

impl SectionEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.kind as u32).to_le_bytes());
        out.extend_from_slice(&self.field.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.dtype.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
    }
}

/// Rows handed to [`write_segment`]: an in-memory batch or live rows of segments being merged.
/// Field values are raw little-endian bytes already in the field's element type; a multi-vector
/// value is all its token rows back to back.
pub trait SegmentSource {
    /// The schema every row follows.
    fn schema(&self) -> &Schema;
    /// Number of rows.
    fn row_count(&self) -> usize;
    /// The id of `row`.
    fn id(&self, row: usize) -> Result<&[u8]>;
    /// The text of `row`.
    fn text(&self, row: usize) -> Result<&[u8]>;
    /// The metadata JSON of `row`.
    fn metadata(&self, row: usize) -> Result<&[u8]>;
    /// The value of vector field `field` for `row`.
    fn field(&self, field: usize, row: usize) -> Result<&[u8]>;
}

struct Plan<'a> {
    kind: SectionKind,
    field: u32,
    length: u64,
    count: u64,
    dtype: u32,
    blob: Option<&'a [u8]>,
}

/// A prebuilt optional section (an index) written after the data sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSection {
    /// Its kind.
    pub kind: SectionKind,
    /// The vector field it belongs to.
    pub field: u32,
    /// Its `count` column (for a graph: the rows it covers).
    pub count: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Writes `source` as a new segment file `rel` of `dir` (which must not exist) and fsyncs it.
/// Returns the file size. Memory use is independent of the data size, apart from the id order.
pub fn write_segment(dir: &dyn Directory, rel: &Path, source: &dyn SegmentSource) -> Result<u64> {
    write_segment_with(dir, rel, source, &[])
}

/// [`write_segment`] with prebuilt optional sections (HNSW graphs).
pub fn write_segment_with(
    dir: &dyn Directory,
    rel: &Path,
    source: &dyn SegmentSource,
    extra: &[ExtraSection],
) -> Result<u64> {
    let path_buf = dir.path_of(rel);
    let path = path_buf.as_path();
    let schema = source.schema();
    let rows = source.row_count();
    if rows > u32::MAX as usize {
        return Err(Error::InvalidInput(format!(
            "a segment holds at most {} rows",
            u32::MAX
        )));
    }
    let schema_json = serde_json::to_vec(schema).expect("schema serializes");

    // First pass: sizes.
    let mut id_bytes = 0u64;
    let mut text_bytes = 0u64;
    let mut meta_bytes = 0u64;
    for r in 0..rows {
        id_bytes += source.id(r)?.len() as u64;
        text_bytes += source.text(r)?.len() as u64;
        meta_bytes += source.metadata(r)?.len() as u64;
    }
    let n = rows as u64;
    let offsets_len = (n + 1) * 8;
    let doc = |kind, length, count| Plan {
        kind,
        field: NO_FIELD,
        length,
        count,
        dtype: 0,
        blob: None,
    };
    let mut plans = vec![
        doc(
            SectionKind::Schema,
            schema_json.len() as u64,
            schema_json.len() as u64,
        ),
        doc(SectionKind::IdOffsets, offsets_len, n + 1),
        doc(SectionKind::IdBytes, id_bytes, id_bytes),
        doc(SectionKind::IdOrder, n * 4, n),
        doc(SectionKind::TextOffsets, offsets_len, n + 1),
        doc(SectionKind::TextBytes, text_bytes, text_bytes),
        doc(SectionKind::MetaOffsets, offsets_len, n + 1),
        doc(SectionKind::MetaBytes, meta_bytes, meta_bytes),
    ];
    for (fi, f) in schema.fields.iter().enumerate() {
        let elem = f.kind.dtype().size() as u64;
        let row_bytes = f.kind.row_elements() as u64 * elem;
        let dtype = f.kind.dtype().code();
        let field = fi as u32;
        match f.kind {
            FieldKind::Dense { .. } => plans.push(Plan {
                kind: SectionKind::Dense,
                field,
                length: n * row_bytes,
                count: n,
                dtype,
                blob: None,
            }),
            FieldKind::Tensor { .. } => plans.push(Plan {
                kind: SectionKind::Tensor,
                field,
                length: n * row_bytes,
                count: n,
                dtype,
                blob: None,
            }),
            FieldKind::Multi { .. } => {
                let mut tokens = 0u64;
                for r in 0..rows {
                    let len = source.field(fi, r)?.len() as u64;
                    if !len.is_multiple_of(row_bytes) {
                        return Err(Error::InvalidInput(format!(
                            "row {r}: field {:?} value of {len} bytes is not a whole number of {row_bytes}-byte tokens", f.name
                        )));
                    }
                    tokens += len / row_bytes;
                }
                plans.push(Plan {
                    kind: SectionKind::MultiOffsets,
                    field,
                    length: offsets_len,
                    count: n + 1,
                    dtype: 0,
                    blob: None,
                });
                plans.push(Plan {
                    kind: SectionKind::MultiTokens,
                    field,
                    length: tokens * row_bytes,
                    count: tokens,
                    dtype,
                    blob: None,
                });
            }
        }
    }
    for x in extra {
        plans.push(Plan {
            kind: x.kind,
            field: x.field,
            length: x.bytes.len() as u64,
            count: x.count,
            dtype: 0,
            blob: Some(&x.bytes),
        });
    }

    // Layout.
    let table_len = plans.len() as u64 * ENTRY_LEN;
    let mut offset = align_up(HEADER_LEN + table_len).expect("small");
    let mut entries = Vec::with_capacity(plans.len());
    for p in &plans {
        entries.push(SectionEntry {
            kind: p.kind,
            field: p.field,
            offset,
            length: p.length,
            count: p.count,
            dtype: p.dtype,
            checksum: 0,
        });
        offset = align_up(offset + p.length)
            .ok_or_else(|| Error::InvalidInput("segment too large".into()))?;
    }
    let file_len = entries.last().map_or(offset, |e| e.offset + e.length);

    let file = dir.create_new(rel)?;
    let io = |e| Error::io(path, e);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&vec![0u8; entries[0].offset as usize])
        .map_err(io)?;
    let mut pos = entries[0].offset;
    let order = id_order(source)?;
    for (e, plan) in entries.iter_mut().zip(&plans) {
        if pos < e.offset {
            out.write_all(&vec![0u8; (e.offset - pos) as usize])
                .map_err(io)?;
            pos = e.offset;
        }
        let mut sink = Sink {
            out: &mut out,
            hash: Xxh3::new(),
            written: 0,
            path,
        };
        let field = e.field as usize;
        match e.kind {
            _ if plan.blob.is_some() => sink.put(plan.blob.expect("checked"))?,
            SectionKind::HnswGraph => {
                return Err(Error::InvalidInput("graph section without bytes".into()))
            }
            SectionKind::Schema => sink.put(&schema_json)?,
            SectionKind::IdOffsets => {
                write_offsets(&mut sink, rows, |r| source.id(r).map(|b| b.len() as u64))?
            }
            SectionKind::IdBytes => (0..rows).try_for_each(|r| sink.put(source.id(r)?))?,
            SectionKind::IdOrder => order.iter().try_for_each(|r| sink.put(&r.to_le_bytes()))?,
            SectionKind::TextOffsets => {
                write_offsets(&mut sink, rows, |r| source.text(r).map(|b| b.len() as u64))?
            }
            SectionKind::TextBytes => (0..rows).try_for_each(|r| sink.put(source.text(r)?))?,
            SectionKind::MetaOffsets => write_offsets(&mut sink, rows, |r| {
                source.metadata(r).map(|b| b.len() as u64)
            })?,
            SectionKind::MetaBytes => (0..rows).try_for_each(|r| sink.put(source.metadata(r)?))?,
            SectionKind::MultiOffsets => {
                let token_bytes = schema.fields[field].kind.row_elements() as u64
                    * schema.fields[field].kind.dtype().size() as u64;
                write_offsets(&mut sink, rows, |r| {
                    source.field(field, r).map(|b| b.len() as u64 / token_bytes)
                })?
            }
            SectionKind::Dense | SectionKind::Tensor | SectionKind::MultiTokens => {
                let expected = if e.kind == SectionKind::MultiTokens {
                    None
                } else {
                    Some(e.length / n.max(1))
                };
                for r in 0..rows {
                    let v = source.field(field, r)?;
                    if let Some(exp) = expected {
                        if v.len() as u64 != exp {
                            return Err(Error::InvalidInput(format!(
                                "row {r}: field {:?} value has {} bytes, expected {exp}",
                                schema.fields[field].name,
                                v.len()
                            )));
                        }
                    }
                    sink.put(v)?;
                }
            }
        }
        if sink.written != e.length {
            return Err(Error::InvalidInput(format!(
                "section {} changed size while being written ({} of {} bytes); the source is not stable",
                e.kind.name(), sink.written, e.length
            )));
        }
        e.checksum = sink.hash.digest();
        pos += e.length;
    }
    debug_assert_eq!(pos, file_len);

    let mut table = Vec::with_capacity(table_len as usize);
    for e in &entries {
        e.encode(&mut table);
    }
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&n.to_le_bytes());
    header.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&HEADER_LEN.to_le_bytes());
    header.extend_from_slice(&file_len.to_le_bytes());
    header.extend_from_slice(&checksum(&table).to_le_bytes());
    let header_sum = checksum(&header);
    header.extend_from_slice(&header_sum.to_le_bytes());
    out.seek(SeekFrom::Start(0)).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    out.write_all(&table).map_err(io)?;
    let mut file = out
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync().map_err(io)?;
    Ok(file_len)
}

fn id_order(source: &dyn SegmentSource) -> Result<Vec<u32>> {
    let rows = source.row_count();
    let ids = (0..rows)
        .map(|r| source.id(r))
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.sort_unstable_by(|&a, &b| ids[a as usize].cmp(ids[b as usize]));
    if let Some(w) = order
        .windows(2)
        .find(|w| ids[w[0] as usize] == ids[w[1] as usize])
    {
        return Err(Error::InvalidInput(format!(
            "id {:?} appears twice in one segment (rows {} and {})",
            String::from_utf8_lossy(ids[w[0] as usize]),
            w[0],
            w[1]
        )));
    }
    Ok(order)
}

fn write_offsets(
    sink: &mut Sink<'_>,
    rows: usize,
    len: impl Fn(usize) -> Result<u64>,
) -> Result<()> {
    let mut at = 0u64;
    sink.put(&at.to_le_bytes())?;
    for r in 0..rows {
        at += len(r)?;
        sink.put(&at.to_le_bytes())?;
    }
    Ok(())
}

struct Sink<'a> {
    out: &'a mut BufWriter<Box<dyn storage::WriteFile>>,
    hash: Xxh3,
    written: u64,
    path: &'a Path,
}

impl Sink<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.path, e))
    }
}

/// A variable-length column: an offsets section and a bytes section.
#[derive(Debug, Clone)]
struct VarColumn {
    offsets: Range<usize>,
    bytes: Range<usize>,
    kind: SectionKind,
}

/// Where a vector field's data lives in the file.
#[derive(Debug, Clone)]
enum FieldColumn {
    Fixed {
        data: Range<usize>,
        row_elems: usize,
    },
    Multi {
        offsets: Range<usize>,
        tokens: Range<usize>,
        dim: usize,
        token_count: u64,
    },
}

/// An open, memory-mapped segment.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    map: MappedFile,
    id: u64,
    rows: u32,
    schema: Schema,
    sections: Vec<SectionEntry>,
    ids: VarColumn,
    texts: VarColumn,
    metas: VarColumn,
    order: Range<usize>,
    fields: Vec<FieldColumn>,
    /// Per field: the byte range of its HNSW graph section, if any (validated at open).
    graphs: Vec<Option<Range<usize>>>,
}

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
        check_version(path, r.u32(8)?)?;
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
            if !e.offset.is_multiple_of(super::SECTION_ALIGN)
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
                    let t = find(SectionKind::MultiTokens, fi32)?;
                    check_dtype(t)?;
                    expect_len(t, t.count.checked_mul(row_elems * elem))?;
                    let first = read_u64(bytes, o.offset as usize);
                    let last = read_u64(bytes, (o.offset + o.length - 8) as usize);
                    if first != 0 || last != t.count {
                        return Err(corrupt(
                            o.kind.name(),
                            o.offset,
                            format!("token offsets run {first}..{last}, expected 0..{}", t.count),
                        ));
                    }
                    FieldColumn::Multi {
                        offsets: range(o),
                        tokens: range(t),
                        dim: dim as usize,
                        token_count: t.count,
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
        })
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

    fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    fn var_item(&self, col: &VarColumn, row: u32) -> Result<&[u8]> {
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

    /// The id of `row`.
    pub fn doc_id(&self, row: u32) -> Result<&str> {
        let b = self.var_item(&self.ids, row)?;
        self.utf8(b, &self.ids, row)
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

    fn order_at(&self, i: u32) -> Result<u32> {
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

    /// All token vectors of a multi field (`tokens × dim`).
    pub fn multi_tokens(&self, field: usize) -> VectorRef<'_> {
        match &self.fields[field] {
            FieldColumn::Multi { tokens, .. } => self.vectors(field, tokens.clone()),
            FieldColumn::Fixed { .. } => panic!("field {field} is not a multi-vector field"),
        }
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

    /// The token vectors of `row` in a multi field (`n_tokens × dim`).
    pub fn multi_row(&self, field: usize, row: u32) -> Result<VectorRef<'_>> {
        let r = self.multi_range(field, row)?;
        match &self.fields[field] {
            FieldColumn::Multi { tokens, dim, .. } => {
                let size = self.schema.fields[field].kind.dtype().size() * dim;
                Ok(self.vectors(
                    field,
                    tokens.start + r.start * size..tokens.start + r.end * size,
                ))
            }
            FieldColumn::Fixed { .. } => unreachable!(),
        }
    }

    /// The raw bytes of a field value for `row` (what [`SegmentSource::field`] expects).
    pub fn raw_field(&self, field: usize, row: u32) -> Result<&[u8]> {
        match &self.fields[field] {
            FieldColumn::Fixed { .. } => Ok(self.fixed_row(field, row).as_bytes()),
            FieldColumn::Multi { .. } => Ok(self.multi_row(field, row)?.as_bytes()),
        }
    }

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
                FieldColumn::Fixed { .. } => self.fixed_matrix(fi),
                FieldColumn::Multi { .. } => {
                    let mut prev_end = 0;
                    for row in 0..self.rows {
                        let r = self.multi_range(fi, row)?;
                        if r.start != prev_end || r.is_empty() {
                            return Err(Error::corrupt(&self.path, "multi-vector offsets", 0, format!("field {fi} row {row}: token range {r:?} is empty or not contiguous")));
                        }
                        prev_end = r.end;
                    }
                    self.multi_tokens(fi)
                }
            };
            if let Some(pos) = values.first_non_finite() {
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

#[inline]
fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
