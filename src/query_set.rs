//! Query sets: the queries of a batch search, read once and served in batches.
//!
//! * vectors from a `.npy` / safetensors array (`[Q, dim]` for a dense field; for a multi-vector
//!   field `[T, dim]` token rows with per-query token counts), with query ids from an id list or
//!   numbered from 0 ([`QuerySet::vectors`]);
//! * texts from a query file (TSV or JSONL), encoded batch by batch with the field's query encoder
//!   ([`QuerySet::texts`], feature `encoders`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ingest::array::Array;
use crate::ingest::jsonl::read_id_list;
use crate::ingest::split_tensor;
use crate::schema::{FieldKind, FieldSpec};
use crate::search::{Queries, SearchRequest};

/// Where the vectors of a vector query set come from (each array as `PATH[:TENSOR]`).
#[derive(Debug, Clone, Default)]
pub struct VectorQueryFiles {
    /// The query vectors: `[Q, dim]`, or `[T, dim]` token rows for a multi-vector field.
    pub vectors: String,
    /// Multi-vector fields: per-query token counts (`Q` integers summing to `T`).
    pub lengths: Option<String>,
    /// Query ids, one per line (default: `0`, `1`, ...).
    pub ids: Option<PathBuf>,
}

enum Source {
    Vectors {
        array: Array,
    },
    #[cfg(feature = "encoders")]
    Texts {
        path: PathBuf,
        texts: Vec<String>,
        encoder: Box<dyn crate::encode::Encoder>,
    },
}

/// The queries of a search, for one field: ids, and values served batch by batch.
pub struct QuerySet {
    field: FieldSpec,
    source: Source,
    ids: Vec<String>,
    /// Per query, its rows of the array (dense: one row each).
    ranges: Vec<(usize, usize)>,
    dim: usize,
}

impl std::fmt::Debug for QuerySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySet")
            .field("field", &self.field.name)
            .field("queries", &self.ids.len())
            .field("source", &self.label())
            .finish()
    }
}

/// A batch of queries: their values and, per query, its rows of `values` (`dim` values each).
#[derive(Debug, Clone, Default)]
pub struct QueryBatch {
    /// The values, row-major.
    pub values: Vec<f32>,
    /// Per query, `(first row, end row)` within `values`.
    pub ranges: Vec<(usize, usize)>,
}

impl QuerySet {
    /// Vector queries for `field` (dense or multi-vector) read from `files`.
    pub fn vectors(field: &FieldSpec, files: &VectorQueryFiles) -> Result<Self> {
        let (qpath, qtensor) = split_tensor(&files.vectors, "queries");
        let array = Array::open(&qpath, qtensor.as_deref())?;
        let name = &field.name;
        let dim = match &field.kind {
            FieldKind::Dense { dim, .. } | FieldKind::Multi { dim, .. } => *dim as usize,
            FieldKind::Tensor { .. } => {
                return Err(Error::InvalidQuery(format!(
                    "field {name:?} is a tensor field; tensors are stored, not searched"
                )))
            }
        };
        if array.shape().len() != 2 || array.shape()[1] != dim {
            return Err(Error::InvalidQuery(format!(
                "{}: query vectors must have shape [Q, {dim}] for field {name:?}, found {:?}",
                array.label(),
                array.shape()
            )));
        }
        let rows = array.shape()[0];
        let ranges: Vec<(usize, usize)> = match (&field.kind, &files.lengths) {
            (FieldKind::Dense { .. }, None) => (0..rows).map(|i| (i, i + 1)).collect(),
            (FieldKind::Dense { .. }, Some(_)) => {
                return Err(Error::InvalidQuery(format!(
                    "query lengths are only for multi-vector fields; field {name:?} is dense"
                )))
            }
            (FieldKind::Multi { .. }, None) => {
                return Err(Error::InvalidQuery(format!(
                    "field {name:?} is a multi-vector field: give the per-query token counts (query lengths)"
                )))
            }
            (FieldKind::Multi { .. }, Some(l)) => token_ranges(l, &array)?,
            (FieldKind::Tensor { .. }, _) => unreachable!("refused above"),
        };
        let ids = match &files.ids {
            Some(p) => query_ids(p, ranges.len(), array.label())?,
            None => (0..ranges.len()).map(|i| i.to_string()).collect(),
        };
        Ok(QuerySet {
            field: field.clone(),
            source: Source::Vectors { array },
            ids,
            ranges,
            dim,
        })
    }

    /// Text queries read from `path` (TSV `qid<TAB>text` or JSONL), encoded by `encoder`, which
    /// must be the query encoder of `field` (see
    /// [`crate::Collection::load_encoder`]).
    #[cfg(feature = "encoders")]
    pub fn texts(
        field: &FieldSpec,
        path: &Path,
        encoder: Box<dyn crate::encode::Encoder>,
    ) -> Result<Self> {
        if encoder.output().fills(&field.kind).is_none() {
            return Err(Error::InvalidQuery(format!(
                "field {:?} is a {} field; its query encoder outputs {} vectors",
                field.name,
                field.kind.kind_name(),
                encoder.output().field_kind_name()
            )));
        }
        let queries = crate::ingest::text_input::read_queries(path)?;
        let (ids, texts) = queries.into_iter().map(|q| (q.id, q.text)).unzip();
        Ok(QuerySet {
            field: field.clone(),
            dim: encoder.dims(),
            ranges: Vec::new(),
            ids,
            source: Source::Texts {
                path: path.to_path_buf(),
                texts,
                encoder,
            },
        })
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no query.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Values per query row (the field's dimension).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The id of query `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The file the queries come from, for messages.
    pub fn label(&self) -> String {
        match &self.source {
            Source::Vectors { array } => array.label().to_string(),
            #[cfg(feature = "encoders")]
            Source::Texts { path, .. } => path.display().to_string(),
        }
    }

    /// The values of queries `start..end` (text queries are encoded here).
    pub fn batch(&self, start: usize, end: usize) -> Result<QueryBatch> {
        match &self.source {
            Source::Vectors { array } => {
                let (t0, t1) = (self.ranges[start].0, self.ranges[end - 1].1);
                let mut values = vec![0f32; (t1 - t0) * self.dim];
                array.read_f32(t0 * self.dim, &mut values)?;
                let ranges = self.ranges[start..end]
                    .iter()
                    .map(|(s, e)| (s - t0, e - t0))
                    .collect();
                Ok(QueryBatch { values, ranges })
            }
            #[cfg(feature = "encoders")]
            Source::Texts { texts, encoder, .. } => {
                let texts: Vec<&str> = texts[start..end].iter().map(String::as_str).collect();
                let encoded = encoder.encode_texts(&texts)?;
                let mut at = 0;
                let ranges = encoded
                    .rows
                    .iter()
                    .map(|&r| {
                        at += r;
                        (at - r, at)
                    })
                    .collect();
                Ok(QueryBatch {
                    values: encoded.values,
                    ranges,
                })
            }
        }
    }

    /// The values of the queries at `indices` (in that order; text queries are encoded here):
    /// for a second stage whose queries pair with the first stage's by id. The distinct indices
    /// are read (or encoded) in ascending runs, whatever their requested order.
    pub fn select(&self, indices: &[usize]) -> Result<QueryBatch> {
        let mut uniq = indices.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        // Each distinct query's values, read run by run.
        let mut values: std::collections::HashMap<usize, (usize, usize)> = Default::default();
        let mut read = QueryBatch::default();
        let mut i = 0;
        while i < uniq.len() {
            let mut j = i + 1;
            while j < uniq.len() && uniq[j] == uniq[j - 1] + 1 {
                j += 1;
            }
            let part = self.batch(uniq[i], uniq[j - 1] + 1)?;
            let base = read.values.len() / self.dim.max(1);
            read.values.extend_from_slice(&part.values);
            for (q, (s, e)) in uniq[i..j].iter().zip(&part.ranges) {
                values.insert(*q, (s + base, e + base));
            }
            i = j;
        }
        let mut out = QueryBatch::default();
        for q in indices {
            let (s, e) = values[q];
            let at = out.values.len() / self.dim.max(1);
            out.values
                .extend_from_slice(&read.values[s * self.dim..e * self.dim]);
            out.ranges.push((at, at + e - s));
        }
        Ok(out)
    }

    /// A batch's queries for the field: dense rows or one token matrix per query.
    pub fn queries<'a>(&self, batch: &'a QueryBatch) -> Queries<'a> {
        match self.field.kind {
            FieldKind::Multi { .. } => Queries::Multi(
                batch
                    .ranges
                    .iter()
                    .map(|(s, e)| &batch.values[s * self.dim..e * self.dim])
                    .collect(),
            ),
            _ => Queries::Dense(&batch.values),
        }
    }

    /// The search request of a batch: a dense batch or multi-vector queries on the field.
    pub fn request<'a>(&'a self, batch: &'a QueryBatch, k: usize) -> SearchRequest<'a> {
        SearchRequest {
            queries: self.queries(batch),
            ..SearchRequest::text(&self.field.name, k)
        }
    }

    /// The second stage of a batch: its queries re-rank with the field (see [`crate::Rerank`]).
    pub fn rerank<'a>(&'a self, batch: &'a QueryBatch, k: usize) -> crate::search::Rerank<'a> {
        crate::search::Rerank {
            queries: self.queries(batch),
            ..crate::search::Rerank::dense(&self.field.name, &[], k)
        }
    }
}

/// Per-query token row ranges from a token-count array `spec` (`PATH[:TENSOR]`).
fn token_ranges(spec: &str, tokens: &Array) -> Result<Vec<(usize, usize)>> {
    let (lp, lt) = split_tensor(spec, "query_lengths");
    let lens = Array::open(&lp, lt.as_deref())?.read_u64s()?;
    let mut at = 0usize;
    let mut ranges = Vec::with_capacity(lens.len());
    for (i, n) in lens.iter().enumerate() {
        if *n == 0 {
            return Err(Error::bad_input(
                &lp,
                format!("query {i}"),
                "the query has 0 tokens",
            ));
        }
        ranges.push((at, at + *n as usize));
        at += *n as usize;
    }
    if at != tokens.shape()[0] {
        return Err(Error::bad_input(
            &lp,
            "token counts",
            format!(
                "they sum to {at}, but {} has {} rows",
                tokens.label(),
                tokens.shape()[0]
            ),
        ));
    }
    Ok(ranges)
}

/// `n` distinct query ids from an id list.
fn query_ids(path: &Path, n: usize, label: &str) -> Result<Vec<String>> {
    let ids = read_id_list(path)?;
    if ids.len() != n {
        return Err(Error::bad_input(
            path,
            "ids",
            format!("{} query ids for {n} queries in {label}", ids.len()),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(d) = ids.iter().find(|i| !seen.insert(i.as_str())) {
        return Err(Error::bad_input(
            path,
            "ids",
            format!("query id {d:?} appears more than once"),
        ));
    }
    Ok(ids)
}
