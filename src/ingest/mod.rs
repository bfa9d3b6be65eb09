//! Ingest of precomputed data: documents from JSONL aligned row by row with vectors from `.npy`
//! files or safetensors tensors.
//!
//! | field kind | input |
//! |---|---|
//! | dense `d` | `[N, d]` |
//! | multi `d` | one `[T, d]` token matrix plus a 1-D integer array of `N` per-document token counts summing to `T` |
//! | tensor `shape` | `[N, *shape]` (or `[N, prod(shape)]`) |
//!
//! Everything that can be checked before writing (shapes, dtypes, row counts) is checked first;
//! values (NaN, infinities), ids and JSON are checked as rows stream in. Errors name the file, the
//! row or line, and the field. Nothing is committed here: the caller commits, so a failed ingest
//! leaves the database at its previous commit.
//!
//! Documents given as text (JSONL or TSV, [`text_input`]) are encoded by the fields' passage
//! encoders in `pipeline` (feature `encoders`), which commits as it goes and resumes.

pub mod array;
pub mod jsonl;
#[cfg(feature = "encoders")]
pub mod pipeline;
#[cfg(feature = "encoders")]
pub mod reencode;
pub mod text_input;

use std::path::{Path, PathBuf};

use crate::document::{Document, FieldValue};
use crate::error::{Error, MissingInput, Result};
use crate::schema::FieldKind;
use crate::writer::Writer;
use array::Array;
use jsonl::JsonlDocs;

/// Where one field's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorInput {
    /// The field.
    pub field: String,
    /// `.npy` or `.safetensors` file.
    pub path: PathBuf,
    /// Tensor name inside a safetensors file.
    pub tensor: Option<String>,
    /// Multi fields: the per-document token counts (`.npy`, or safetensors with a tensor name).
    pub lengths: Option<(PathBuf, Option<String>)>,
}

impl VectorInput {
    /// Parses `FIELD=PATH` or `FIELD=PATH.safetensors:TENSOR` (the tensor defaults to FIELD).
    ///
    /// ```
    /// use vellum::ingest::VectorInput;
    /// let v = VectorInput::parse("emb=corpus.npy").unwrap();
    /// assert_eq!((v.field.as_str(), v.tensor), ("emb", None));
    /// let v = VectorInput::parse("tok=x.safetensors").unwrap();
    /// assert_eq!(v.tensor.as_deref(), Some("tok"));
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let (field, rest) = spec
            .split_once('=')
            .ok_or_else(|| Error::InvalidInput(format!("{spec:?}: expected FIELD=FILE")))?;
        let (path, tensor) = split_tensor(rest, field);
        Ok(VectorInput {
            field: field.to_string(),
            path,
            tensor,
            lengths: None,
        })
    }
}

/// Splits `PATH[:TENSOR]` for safetensors files; the tensor defaults to `default`.
pub fn split_tensor(spec: &str, default: &str) -> (PathBuf, Option<String>) {
    if let Some(i) = spec.find(".safetensors") {
        let path = &spec[..i + ".safetensors".len()];
        let rest = &spec[i + ".safetensors".len()..];
        let tensor = rest
            .strip_prefix(':')
            .filter(|t| !t.is_empty())
            .unwrap_or(default);
        return (PathBuf::from(path), Some(tensor.to_string()));
    }
    (PathBuf::from(spec), None)
}

/// Whether ingest adds (failing on an existing id) or upserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Existing ids are an error.
    #[default]
    Add,
    /// Existing ids are replaced.
    Upsert,
}

/// A deterministic slice of an input: document `i` (0-based, in file order) belongs to shard
/// `i mod count`. Written `INDEX/COUNT` with `0 ≤ INDEX < COUNT`, e.g. `--shard 2/4`.
///
/// ```
/// let s: vellum::ingest::Shard = "1/3".parse().unwrap();
/// assert!(s.contains(4) && !s.contains(3));
/// assert!("3/3".parse::<vellum::ingest::Shard>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard (0-based).
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole input.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether document `row` belongs to this shard.
    pub fn contains(&self, row: usize) -> bool {
        row % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "shard {s:?}: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestStats {
    /// Documents written to the writer.
    pub documents: u64,
}

enum Source {
    Fixed {
        array: Array,
        row: usize,
    },
    Multi {
        array: Array,
        offsets: Vec<u64>,
        dim: usize,
        lengths_label: String,
    },
}

/// Ingests `docs` (JSONL) with the given vector files into `collection` through `writer`, calling
/// `progress` with the number of documents done. Does not commit.
pub fn ingest(
    writer: &mut Writer,
    collection: &str,
    docs: &Path,
    vectors: &[VectorInput],
    mode: Mode,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestStats> {
    ingest_shard(
        writer,
        collection,
        docs,
        vectors,
        mode,
        Shard::ALL,
        progress,
    )
}

/// [`ingest`] restricted to one [`Shard`] of the input: the documents of other shards (and their
/// vector rows) are skipped, so `n` runs with shards `0/n .. n-1/n` ingest every document once.
pub fn ingest_shard(
    writer: &mut Writer,
    collection: &str,
    docs: &Path,
    vectors: &[VectorInput],
    mode: Mode,
    shard: Shard,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestStats> {
    let schema = writer
        .committed()
        .collection(collection)
        .map(|c| c.schema().clone())?;
    for (i, v) in vectors.iter().enumerate() {
        if vectors[..i].iter().any(|o| o.field == v.field) {
            return Err(Error::parameter(
                "vectors",
                format!("field {:?} is given vectors twice", v.field),
            ));
        }
        if schema.field_index(&v.field).is_none() {
            return Err(Error::NoSuchField {
                collection: collection.into(),
                field: v.field.clone(),
                available: schema.field_names(),
            });
        }
    }
    let n_docs = JsonlDocs::count(docs)? as usize;
    let mut sources = Vec::with_capacity(schema.fields.len());
    for f in &schema.fields {
        let input =
            vectors
                .iter()
                .find(|v| v.field == f.name)
                .ok_or_else(|| Error::MissingInput {
                    collection: collection.into(),
                    field: f.name.clone(),
                    spec: f.to_string(),
                    needed: MissingInput::Vectors {
                        encodable: matches!(f.kind, FieldKind::Dense { .. }),
                    },
                })?;
        let array = Array::open(&input.path, input.tensor.as_deref())?;
        let shape = array.shape().to_vec();
        let mismatch = |expected: String| {
            Error::bad_input(
                &input.path,
                "shape",
                format!(
                    "field {:?} ({f}) expects {expected}, found {shape:?}",
                    f.name
                ),
            )
        };
        let source = match &f.kind {
            FieldKind::Dense { dim, .. } => {
                if shape.len() != 2 || shape[1] != *dim as usize {
                    return Err(mismatch(format!("[N, {dim}]")));
                }
                Source::Fixed {
                    array,
                    row: *dim as usize,
                }
            }
            FieldKind::Tensor { shape: want, .. } => {
                let per: usize = want.iter().map(|&d| d as usize).product();
                let exact = shape.len() == want.len() + 1
                    && shape[1..].iter().zip(want).all(|(a, b)| *a == *b as usize);
                let flat = shape.len() == 2 && shape[1] == per;
                if !(exact || flat) {
                    return Err(mismatch(format!(
                        "[N, {}] (or [N, {per}])",
                        want.iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Source::Fixed { array, row: per }
            }
            FieldKind::Multi { dim, .. } => {
                if shape.len() != 2 || shape[1] != *dim as usize {
                    return Err(mismatch(format!("a token matrix [T, {dim}]")));
                }
                let (lpath, ltensor) =
                    input.lengths.clone().ok_or_else(|| Error::MissingInput {
                        collection: collection.into(),
                        field: f.name.clone(),
                        spec: f.to_string(),
                        needed: MissingInput::Lengths,
                    })?;
                let lengths_arr = Array::open(&lpath, ltensor.as_deref())?;
                let lengths = lengths_arr.read_u64s()?;
                if lengths.len() != n_docs {
                    return Err(Error::bad_input(
                        &lpath,
                        "shape",
                        format!(
                            "{} token counts for {n_docs} documents in {}",
                            lengths.len(),
                            docs.display()
                        ),
                    ));
                }
                let mut offsets = Vec::with_capacity(n_docs + 1);
                offsets.push(0u64);
                for (i, l) in lengths.iter().enumerate() {
                    if *l == 0 {
                        return Err(Error::bad_input(
                            &lpath,
                            format!("row {i}"),
                            "a document needs at least one token vector, found 0",
                        ));
                    }
                    offsets.push(offsets[i] + l);
                }
                let total = *offsets.last().expect("non-empty");
                if total != shape[0] as u64 {
                    return Err(Error::bad_input(
                        &lpath,
                        "sum",
                        format!(
                            "token counts sum to {total}, but {} has {} token rows",
                            array.label(),
                            shape[0]
                        ),
                    ));
                }
                Source::Multi {
                    array,
                    offsets,
                    dim: *dim as usize,
                    lengths_label: lengths_arr.label().to_string(),
                }
            }
        };
        if let Source::Fixed { array, .. } = &source {
            if array.shape()[0] != n_docs {
                return Err(Error::bad_input(
                    array.path(),
                    "rows",
                    format!(
                        "{} has {} rows but {} has {n_docs} documents",
                        array.label(),
                        array.shape()[0],
                        docs.display()
                    ),
                ));
            }
        }
        sources.push((f.name.clone(), source));
    }

    let mut reader = JsonlDocs::open(docs)?;
    let mut done = 0u64;
    let mut row = 0usize;
    while let Some(doc) = reader.next() {
        let mut doc: Document = doc?;
        let line = reader.line();
        if !shard.contains(row) {
            row += 1;
            continue;
        }
        for (name, source) in &sources {
            let (values, label, what) = match source {
                Source::Fixed { array, row: per } => {
                    let mut v = vec![0.0f32; *per];
                    array.read_f32(row * per, &mut v)?;
                    (v, array.label(), format!("row {row}"))
                }
                Source::Multi {
                    array,
                    offsets,
                    dim,
                    lengths_label,
                } => {
                    let (s, e) = (offsets[row] as usize, offsets[row + 1] as usize);
                    let mut v = vec![0.0f32; (e - s) * dim];
                    array.read_f32(s * dim, &mut v)?;
                    (
                        v,
                        array.label(),
                        format!("token rows {s}..{e} (document {row} per {lengths_label})"),
                    )
                }
            };
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                return Err(Error::bad_input(
                    PathBuf::from(label),
                    what,
                    format!(
                        "document {:?}, field {name:?}: element {i} is {} (vectors must be finite)",
                        doc.id, values[i]
                    ),
                ));
            }
            let value = match source {
                Source::Fixed { .. }
                    if matches!(
                        schema
                            .fields
                            .iter()
                            .find(|f| &f.name == name)
                            .map(|f| &f.kind),
                        Some(FieldKind::Tensor { .. })
                    ) =>
                {
                    FieldValue::Tensor(values)
                }
                Source::Fixed { .. } => FieldValue::Dense(values),
                Source::Multi { .. } => FieldValue::Multi(values),
            };
            doc.values.push((name.clone(), value));
        }
        let result = match mode {
            Mode::Add => writer.add(collection, doc),
            Mode::Upsert => writer.upsert(collection, doc),
        };
        result.map_err(|e| match e {
            Error::DuplicateId { .. } | Error::InvalidInput(_) => {
                Error::bad_input(docs, format!("line {line}"), e.to_string())
            }
            other => other,
        })?;
        row += 1;
        done += 1;
        if done.is_multiple_of(1024) {
            progress(done);
        }
    }
    progress(done);
    Ok(IngestStats { documents: done })
}
