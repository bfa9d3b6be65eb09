//! Writing a segment file: the section plan from a [`SegmentSource`], then one streaming pass
//! that writes every section with its checksum, and the header and section table last.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use super::{
    ExtraSection, SectionBody, SectionEntry, SectionKind, SegmentSource, ENTRY_LEN, HEADER_LEN,
    MAGIC, NO_FIELD,
};
use crate::error::{Error, Result};
use crate::format::{align_up, checksum, FORMAT_VERSION};
use crate::schema::FieldKind;
use crate::storage::{self, Directory};

struct Plan<'a> {
    kind: SectionKind,
    field: u32,
    length: u64,
    count: u64,
    dtype: u32,
    body: Option<&'a dyn SectionBody>,
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
        body: None,
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
                body: None,
            }),
            FieldKind::Tensor { .. } => plans.push(Plan {
                kind: SectionKind::Tensor,
                field,
                length: n * row_bytes,
                count: n,
                dtype,
                body: None,
            }),
            FieldKind::Multi { .. } => {
                // A codes-only field's PLAID section stands for its tokens.
                let codes_only = extra.iter().find_map(|x| match x.replaces_tokens {
                    Some(coded) if x.kind == SectionKind::Plaid && x.field == field => Some(coded),
                    _ => None,
                });
                let mut tokens = 0u64;
                for r in 0..rows {
                    if codes_only.is_some() {
                        tokens += source.token_count(fi, r)? as u64;
                        continue;
                    }
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
                    body: None,
                });
                if let Some(coded) = codes_only {
                    // The PLAID section stands for the tokens: it must hold exactly these.
                    if coded != tokens {
                        return Err(Error::InvalidInput(format!(
                            "field {:?}: the PLAID section codes {coded} tokens, the rows hold {tokens}",
                            f.name
                        )));
                    }
                } else {
                    plans.push(Plan {
                        kind: SectionKind::MultiTokens,
                        field,
                        length: tokens * row_bytes,
                        count: tokens,
                        dtype,
                        body: None,
                    });
                }
            }
        }
    }
    for x in extra {
        plans.push(Plan {
            kind: x.kind,
            field: x.field,
            length: x.body.len(),
            count: x.count,
            dtype: 0,
            body: Some(&*x.body),
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
            _ if plan.body.is_some() => plan.body.expect("checked").write(&mut |b| sink.put(b))?,
            SectionKind::HnswGraph | SectionKind::ScreenCodes | SectionKind::Plaid => {
                return Err(Error::InvalidInput(format!(
                    "{} section without bytes",
                    e.kind.name()
                )))
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
            SectionKind::MultiOffsets => write_offsets(&mut sink, rows, |r| {
                source.token_count(field, r).map(|t| t as u64)
            })?,
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
                    sink.put(&v)?;
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
