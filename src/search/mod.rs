//! Exact search: dense top-k (streaming SIMD for single queries, blocked matrix products for
//! batches) and late-interaction MaxSim over multi-vector fields; HNSW for fields with graphs. All
//! run segments and row blocks in parallel on all cores and skip deleted rows. Equal scores rank
//! by document id, descending ([`rank_order`], trec_eval's rule), at the top-k cut-off too.

mod approximate;
mod bounds;
mod coded;
mod dense;
#[cfg(feature = "gpu")]
mod gpu;
mod multi;
mod multi_plaid;
pub(crate) mod rerank;
mod screened;
mod shards;
pub mod topk;

pub use rerank::{candidates, Combine, Rerank};
pub use shards::merge_shard_hits;

#[cfg(feature = "gpu")]
pub use gpu::release_gpu_memory;

/// Where a search runs.
pub use crate::meta::encoder::DeviceSpec as Device;

use crate::collection::{Collection, DocAddress};
use crate::dtype::{DType, Metric};
use crate::error::{Error, Result};
use crate::schema::FieldKind;
use topk::TopK;

/// Bytes at the start of each candidate's exact vector prefetched before it is rescored (two
/// cache lines): the hardware's stream prefetcher follows each row once its scoring starts, while
/// asking for every line stalled on the core's miss buffers (benches/RESULTS.md, stop 37).
const RESCORE_PREFETCH_BYTES: usize = 128;

/// Asks for the head ([`RESCORE_PREFETCH_BYTES`]) of a cold stored vector about to be rescored.
#[inline]
fn prefetch_head(row: crate::dtype::VectorRef<'_>) {
    let bytes = row.as_bytes();
    crate::linalg::similarity::prefetch(&bytes[..bytes.len().min(RESCORE_PREFETCH_BYTES)]);
}

/// Queries of a request, all for one field.
#[derive(Debug, Clone)]
pub enum Queries<'a> {
    /// Dense queries: `n × dim` values, row-major.
    Dense(&'a [f32]),
    /// Multi-vector queries: each `n_tokens × dim` values, row-major.
    Multi(Vec<&'a [f32]>),
}

#[cfg(feature = "encoders")]
impl<'a> Queries<'a> {
    /// An encoder's outputs as queries: its rows for a dense encoder, one token matrix per input
    /// for a multi-vector one.
    pub fn from_encoded(
        encoded: &'a crate::encode::Encoded,
        output: crate::encode::OutputKind,
    ) -> Self {
        match output {
            crate::encode::OutputKind::Dense | crate::encode::OutputKind::Tensor => {
                Queries::Dense(&encoded.values)
            }
            crate::encode::OutputKind::Multi => Queries::Multi(encoded.per_input().collect()),
        }
    }
}

/// Which dense search routine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Coded for a single query; for batches, coded when segments with codes hold ≥ 90 % of the
    /// rows, else screened.
    #[default]
    Auto,
    /// One SIMD similarity call per stored vector.
    Streaming,
    /// Blocked f32 matrix products (`Q · Xᵀ`) with per-query top-k.
    Blocked,
    /// Blocked matrix products that bound every score, and exact rescoring of the rows whose
    /// bound reaches the query's top-k; same results as streaming. The products are bf16 on
    /// AVX-512 BF16 (x86-64), f32 (with a narrower bound) on other CPUs.
    Screened,
    /// Per query: scan the segments' stored 8-bit screening codes (a quarter of f32's bytes) with
    /// a rigorous bound per row, and rescore exactly the rows that can reach the top-k; same
    /// results as streaming (`format-spec/screen.md`). Segments without codes (fewer rows than
    /// [`crate::WriterOptions::screen_min_rows`], or written before codes existed) are streamed.
    /// Batches multiply blocks of queries (rounded to 7 bits) with blocks of codes (AVX2
    /// `vpmaddubsw`, AVX-512 VNNI `vpdpbusd`); if codes cover less than 90 % of the rows, a batch
    /// runs as [`Strategy::Screened`].
    Coded,
}

/// The element type of a dense field's copy on a GPU (`SearchRequest::gpu_precision`). Results
/// are exact whatever the choice (the GPU proposes candidates, the CPU rescores them); lower
/// precision halves the copy and uses tensor cores, at the cost of a few more rows rescored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GpuPrecision {
    /// The field's own type (f32 products without TF32 for f32 fields).
    #[default]
    Stored,
    /// f32 values, products on tensor cores with inputs rounded to TF32 (10-bit mantissas).
    Tf32,
    /// IEEE half precision (f32 fields converted; values beyond ±65504 refused).
    F16,
    /// bfloat16.
    Bf16,
}

impl std::str::FromStr for GpuPrecision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "stored" => GpuPrecision::Stored,
            "tf32" => GpuPrecision::Tf32,
            "f16" => GpuPrecision::F16,
            "bf16" => GpuPrecision::Bf16,
            other => {
                return Err(Error::parameter(
                    "gpu precision",
                    format!("{other:?}: expected stored, tf32, f16 or bf16"),
                ))
            }
        })
    }
}

/// A search over one field of a collection.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The field to search.
    pub field: &'a str,
    /// The queries.
    pub queries: Queries<'a>,
    /// Hits per query.
    pub k: usize,
    /// Exact dense routine (ignored for multi-vector fields, and for fields whose segments have
    /// HNSW graphs unless `exact` is set).
    pub strategy: Strategy,
    /// Dense fields with HNSW graphs: candidate list size (`None`: the index's default `ef`).
    pub ef: Option<usize>,
    /// Search exactly even where segments have HNSW graphs (dense fields) or PLAID sections
    /// (multi-vector fields).
    pub exact: bool,
    /// Multi-vector fields with PLAID sections: the stage parameters (`None`: the PLAID paper's
    /// defaults for `k`, [`crate::plaid::PlaidSearch::for_k`]).
    pub plaid: Option<crate::plaid::PlaidSearch>,
    /// Only documents whose metadata matches this filter are returned (`None`: every document).
    /// Exact search returns the top `k` of the matching documents; HNSW traverses the whole graph
    /// but returns matching rows only, and scores a segment's matching rows exactly when they are
    /// too few for the traversal to pay ([`filtered_exact_rule`]); PLAID scores a segment's
    /// matching rows exactly when they are no more than `ndocs`.
    pub filter: Option<&'a crate::filter::Filter>,
    /// Where the search runs. `Device::Cuda(n)` (feature `cuda`) searches exactly on GPU `n`
    /// whatever indexes the field has (HNSW graphs and PLAID sections are CPU indexes), with
    /// results equal to the CPU's exact search; the field's copy on the GPU is made at the first
    /// search and reused while the collection's segments stay the same. `k` above 1,024 runs on
    /// the CPU.
    pub device: Device,
    /// Dense fields on a GPU: the element type of the field's copy there.
    pub gpu_precision: GpuPrecision,
}

impl<'a> SearchRequest<'a> {
    /// One dense query.
    pub fn dense(field: &'a str, query: &'a [f32], k: usize) -> Self {
        SearchRequest {
            field,
            queries: Queries::Dense(query),
            k,
            strategy: Strategy::Auto,
            ef: None,
            exact: false,
            plaid: None,
            filter: None,
            device: Device::Cpu,
            gpu_precision: GpuPrecision::Stored,
        }
    }

    /// A batch of dense queries, `n × dim` row-major.
    pub fn dense_batch(field: &'a str, queries: &'a [f32], k: usize) -> Self {
        Self::dense(field, queries, k)
    }

    /// A request for text search (`Collection::search_text`, feature `encoders`): the queries
    /// are filled in from the encoded texts.
    pub fn text(field: &'a str, k: usize) -> Self {
        Self::dense(field, &[], k)
    }

    /// One multi-vector query (`n_tokens × dim`, row-major).
    pub fn multi(field: &'a str, tokens: &'a [f32], k: usize) -> Self {
        SearchRequest {
            field,
            queries: Queries::Multi(vec![tokens]),
            k,
            strategy: Strategy::Auto,
            ef: None,
            exact: false,
            plaid: None,
            filter: None,
            device: Device::Cpu,
            gpu_precision: GpuPrecision::Stored,
        }
    }

    /// A batch of multi-vector queries.
    pub fn multi_batch(field: &'a str, queries: Vec<&'a [f32]>, k: usize) -> Self {
        SearchRequest {
            field,
            queries: Queries::Multi(queries),
            k,
            strategy: Strategy::Auto,
            ef: None,
            exact: false,
            plaid: None,
            filter: None,
            device: Device::Cpu,
            gpu_precision: GpuPrecision::Stored,
        }
    }

    /// Sets the HNSW candidate list size (dense fields with graphs).
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Searches exactly even where HNSW graphs exist.
    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// Sets the PLAID stage parameters (multi-vector fields with PLAID sections).
    pub fn with_plaid(mut self, plaid: crate::plaid::PlaidSearch) -> Self {
        self.plaid = Some(plaid);
        self
    }

    /// Returns only documents whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: &'a crate::filter::Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Runs the search on `device` (see [`SearchRequest::device`]).
    pub fn on_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets the element type of a dense field's copy on the GPU.
    pub fn with_gpu_precision(mut self, precision: GpuPrecision) -> Self {
        self.gpu_precision = precision;
        self
    }

    /// Forces a dense routine.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document id.
    pub id: String,
    /// Similarity (higher is better; for L2, the negated squared distance).
    pub score: f32,
    /// Where the document lives in the snapshot (for [`Collection::doc`]).
    pub address: DocAddress,
}

/// The one ranking rule of every search path and of shard merging: score descending, equal scores
/// by document id descending — trec_eval's order, so a run file vellum writes ranks the same when
/// trec_eval reads it, and equal scores never depend on storage layout, segment or shard order.
pub fn rank_order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| b.id.cmp(&a.id))
}

/// A batch of dense queries against one field of a collection: what every batch routine
/// (blocked, screened, HNSW) takes.
#[derive(Clone, Copy)]
pub(crate) struct DenseBatch<'a> {
    /// The collection searched.
    pub collection: &'a Collection,
    /// Index of the dense field.
    pub field: usize,
    /// The field's metric.
    pub metric: Metric,
    /// The field's dimension.
    pub dim: usize,
    /// `nq × dim` query values, row-major.
    pub queries: &'a [f32],
    /// Hits per query.
    pub k: usize,
}

impl<'a> DenseBatch<'a> {
    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len() / self.dim
    }

    /// The batch split by `admit`: the admitted queries go to `inside` as one batch (the same
    /// batch, uncopied, when every query is admitted), every other query to `outside` alone;
    /// results in query order. One query a fast batch routine cannot bound (a near-zero vector)
    /// must not send the whole batch to a slower routine.
    pub fn split(
        &self,
        admit: impl Fn(&[f32]) -> bool,
        inside: impl FnOnce(&DenseBatch<'_>) -> Vec<TopK>,
        outside: impl Fn(&[f32]) -> TopK,
    ) -> Vec<TopK> {
        let admitted: Vec<bool> = self.queries.chunks_exact(self.dim).map(admit).collect();
        if admitted.iter().all(|&a| a) {
            return inside(self);
        }
        let kept: Vec<f32> = self
            .queries
            .chunks_exact(self.dim)
            .zip(&admitted)
            .filter(|(_, &a)| a)
            .flat_map(|(q, _)| q.iter().copied())
            .collect();
        let mut inner = if kept.is_empty() {
            Vec::new()
        } else {
            inside(&DenseBatch {
                queries: &kept,
                ..*self
            })
        }
        .into_iter();
        self.queries
            .chunks_exact(self.dim)
            .zip(admitted)
            .map(|(q, a)| match a {
                true => inner.next().expect("one result per admitted query"),
                false => outside(q),
            })
            .collect()
    }

    /// Rows `start..end` of segment `slot`'s vectors of the field.
    pub fn block(&self, slot: usize, start: usize, end: usize) -> crate::dtype::VectorRef<'a> {
        self.collection.slots()[slot]
            .segment
            .fixed_matrix(self.field)
            .slice(start * self.dim..end * self.dim)
    }
}

/// Checks one query vector (`token`: one token of a multi-vector query, which may be zero, as
/// padding is).
fn check_query(
    field: &str,
    (metric, dtype): (Metric, DType),
    q: &[f32],
    what: &str,
    token: bool,
) -> Result<()> {
    // One integer pass without an early exit, so that it vectorises (a query's checks took 2.8 %
    // of an HNSW search at ef 12, 784-d, when each was its own scalar loop): the bits of |v| order
    // like |v|, and from 0x7f80_0000 up they are infinity or NaN. The scans that name the
    // offending element run only on failure.
    let max_bits = q
        .iter()
        .fold(0u32, |max, v| max.max(v.to_bits() & 0x7fff_ffff));
    if max_bits >= 0x7f80_0000 {
        let i = q.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::InvalidQuery(format!(
            "{what}: element {i} is {} (queries must be finite)",
            q[i]
        )));
    }
    // Searches multiply in the field's element type: a value it cannot hold would be infinity
    // (for f32 fields, the finiteness check above is that check).
    if let Some((i, v)) = (dtype != DType::F32)
        .then(|| dtype.first_overflow(q))
        .flatten()
    {
        return Err(Error::InvalidQuery(format!(
            "{what}: element {i} = {v:e} is out of the range of field {field:?}'s element type {} (it would be searched as infinity)",
            dtype.name()
        )));
    }
    // ‖q‖ ≤ max|qᵢ|·√dim: the f64 norm is summed only when that bound (with a margin for its
    // own rounding) does not already keep it under the limit.
    let max_abs = f32::from_bits(max_bits);
    let bound = f64::from(max_abs) * (q.len() as f64).sqrt();
    let norm = if bound <= crate::dtype::MAX_VECTOR_NORM * (1.0 - 1e-9) {
        bound
    } else {
        crate::dtype::norm_f64(q)
    };
    if norm > crate::dtype::MAX_VECTOR_NORM {
        return Err(Error::InvalidQuery(format!(
            "{what}: norm {norm:e} is above the limit {:e} within which every score is a finite f32",
            crate::dtype::MAX_VECTOR_NORM
        )));
    }
    if !token && metric != Metric::L2 && max_abs == 0.0 {
        return Err(Error::InvalidQuery(format!(
            "{what}: a zero vector scores the same against every row by {} on field {field:?} (cosine is not even defined)",
            metric.name()
        )));
    }
    Ok(())
}

/// Checks a batch of dense queries (`n × dim` values) for a field of `dim`, `metric` and
/// element type `dtype`.
fn check_dense_queries(
    field: &str,
    (dim, metric, dtype): (usize, Metric, DType),
    q: &[f32],
) -> Result<()> {
    if q.is_empty() || !q.len().is_multiple_of(dim) {
        return Err(Error::InvalidQuery(format!(
            "field {field:?} has dimension {dim}; the query data has {} values, not a positive multiple of {dim}",
            q.len()
        )));
    }
    for (i, row) in q.chunks_exact(dim).enumerate() {
        check_query(field, (metric, dtype), row, &format!("query {i}"), false)?;
    }
    Ok(())
}

/// Checks multi-vector queries (each `n_tokens × dim` values) for a field of `dim`, `metric` and
/// element type `dtype`.
fn check_multi_queries(
    field: &str,
    (dim, metric, dtype): (usize, Metric, DType),
    qs: &[&[f32]],
) -> Result<()> {
    for (i, q) in qs.iter().enumerate() {
        if q.is_empty() || !q.len().is_multiple_of(dim) {
            return Err(Error::InvalidQuery(format!(
                "query {i}: field {field:?} takes {dim}-dimensional token vectors; the query has {} values, not a positive multiple of {dim}",
                q.len()
            )));
        }
        for (t, tok) in q.chunks_exact(dim).enumerate() {
            check_query(
                field,
                (metric, dtype),
                tok,
                &format!("query {i} token {t}"),
                true,
            )?;
        }
        // MaxSim adds one similarity per query token: bound the sum of their norms.
        let total: f64 = q.chunks_exact(dim).map(crate::dtype::norm_f64).sum();
        if total > crate::dtype::MAX_VECTOR_NORM {
            return Err(Error::InvalidQuery(format!(
                "query {i}: its token vectors' norms sum to {total:e}, above the limit {:e} within which every MaxSim score is a finite f32",
                crate::dtype::MAX_VECTOR_NORM
            )));
        }
    }
    Ok(())
}

/// Runs `req` on collection `c`: one top-k per query, in query order. The entry point of every
/// search routine; [`Collection::search`] turns its candidates into [`Hit`]s. A filtered request
/// runs on a view of `c` whose delete bitmaps also exclude the rows the filter does not match
/// (same segments, same ordinals, so candidates address `c` unchanged).
pub(crate) fn execute(c: &Collection, req: &SearchRequest<'_>) -> Result<Vec<TopK>> {
    let Some(f) = req.filter.filter(|f| **f != crate::filter::Filter::All) else {
        return execute_on(c, req);
    };
    // A request that cannot run fails before the filter is evaluated.
    let fi = c.field_index(req.field)?;
    let kind = &c.schema().fields[fi].kind;
    match (kind, &req.queries) {
        (FieldKind::Dense { dim, metric, .. }, Queries::Dense(q)) => {
            check_dense_queries(req.field, (*dim as usize, *metric, kind.dtype()), q)?
        }
        (FieldKind::Multi { dim, metric, .. }, Queries::Multi(qs)) => {
            check_multi_queries(req.field, (*dim as usize, *metric, kind.dtype()), qs)?
        }
        _ => return execute_on(c, req),
    }
    execute_on(&filtered_view(c, f)?, req)
}

/// `c` with each segment's rows that do not match `filter` marked deleted (segments evaluated in
/// parallel).
pub(crate) fn filtered_view(c: &Collection, filter: &crate::filter::Filter) -> Result<Collection> {
    use rayon::prelude::*;
    let slots = c
        .slots()
        .par_iter()
        .map(|slot| {
            let mut excluded = crate::filter::matching_rows(&slot.segment, filter)?;
            excluded.complement();
            let mut words = excluded.into_words();
            if let Some(d) = &slot.deletes {
                words.iter_mut().zip(d.words()).for_each(|(a, b)| *a |= b);
            }
            Ok(crate::collection::SegmentSlot {
                entry: slot.entry.clone(),
                segment: slot.segment.clone(),
                deletes: Some(std::sync::Arc::new(
                    crate::format::deletes::DeleteBitmap::from_words(words, slot.segment.rows()),
                )),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(c.restricted(slots))
}

/// The rule that picks, per segment of a filtered search, between traversing its HNSW graph and
/// scoring its matching rows exactly: exactly when `4 · matching² ≤ ef · m0 · rows`. A traversal
/// that collects `ef` matching rows, when a fraction `s` of the rows match, expands about
/// `ef / s` nodes of `m0` neighbours, each scored on the compact navigation copy; the exact scan
/// scores `s · rows` full vectors. The factor 4 is measured (benches/RESULTS.md, stop 14: on
/// 60,000 Fashion-MNIST rows at ef 64 the two meet near `s` = 8 %, traversal 1.6× faster at
/// 10 %, the exact scan 76× faster at 1 %). Qdrant and Weaviate switch on an absolute count
/// instead; this rule scales with the segment and with `ef`.
pub fn filtered_exact_rule(matching: u64, rows: u64, ef: usize, m0: usize) -> bool {
    4 * (matching as u128).pow(2) <= ef as u128 * m0 as u128 * rows as u128
}

/// Runs a GPU search (`None`: the request runs on the CPU), or reports that this build has no
/// GPU support.
#[cfg(feature = "gpu")]
fn on_gpu(search: impl FnOnce() -> Result<Option<Vec<TopK>>>) -> Result<Option<Vec<TopK>>> {
    search()
}

#[cfg(not(feature = "gpu"))]
fn on_gpu(_: impl FnOnce() -> Result<Option<Vec<TopK>>>) -> Result<Option<Vec<TopK>>> {
    Err(Error::FeatureDisabled {
        what: "search on a CUDA device".into(),
        feature: "cuda",
    })
}

#[cfg(not(feature = "gpu"))]
mod gpu {
    //! Stand-ins with the signatures of the `cuda` feature's GPU search; never called.
    use super::*;

    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_dense(
        _: &Collection,
        _: usize,
        _: Metric,
        _: usize,
        _: &[f32],
        _: usize,
        _: usize,
        _: GpuPrecision,
    ) -> Result<Option<Vec<TopK>>> {
        Ok(None)
    }

    pub(super) fn search_maxsim(
        _: &Collection,
        _: usize,
        _: Metric,
        _: usize,
        _: &[&[f32]],
        _: usize,
        _: usize,
    ) -> Result<Option<Vec<TopK>>> {
        Ok(None)
    }
}

fn execute_on(c: &Collection, req: &SearchRequest<'_>) -> Result<Vec<TopK>> {
    let fi = c.field_index(req.field)?;
    let kind = &c.schema().fields[fi].kind;
    let tops = match (kind, &req.queries) {
        (FieldKind::Dense { dim, metric, .. }, Queries::Dense(q)) => {
            let dim = *dim as usize;
            check_dense_queries(req.field, (dim, *metric, kind.dtype()), q)?;
            let nq = q.len() / dim;
            let batch = DenseBatch {
                collection: c,
                field: fi,
                metric: *metric,
                dim,
                queries: q,
                k: req.k,
            };
            if req.ef == Some(0) {
                return Err(Error::parameter(
                    "ef",
                    "0: the HNSW candidate list holds at least one row",
                ));
            }
            if let Device::Cuda(n) = req.device {
                if let Some(tops) = on_gpu(|| {
                    gpu::search_dense(c, fi, *metric, dim, q, req.k, n, req.gpu_precision)
                })? {
                    return Ok(tops);
                }
            }
            let graphs = !req.exact && c.slots().iter().any(|s| s.segment.has_graph(fi));
            if graphs {
                let ef = req
                    .ef
                    .or_else(|| c.index(req.field).map(|p| p.ef as usize))
                    .unwrap_or(crate::hnsw::HnswParams::default().ef as usize);
                // As hnswlib and FAISS: the candidate list is never shorter than k, so a search
                // returns k hits (or every live row) whatever ef is.
                let tops = approximate::search_hnsw(&batch, ef.max(req.k))?;
                return Ok(tops);
            }
            let strategy = match req.strategy {
                // The stored codes (integer products) when they cover the field, else the bf16
                // tile (AVX-512 BF16) or f32 products (benches/RESULTS.md, stop 12).
                Strategy::Auto if nq > 1 && coded::covers(c, fi) => Strategy::Coded,
                Strategy::Auto if nq > 1 => Strategy::Screened,
                Strategy::Auto => Strategy::Coded,
                other => other,
            };
            // A selective filter: score the matching rows only (no strategy reads fewer bytes).
            let (live, rows) = c.slots().iter().fold((0, 0), |(l, r), s| {
                (l + s.live_rows(), r + s.segment.rows() as u64)
            });
            if c.is_filtered() && live * 8 <= rows {
                return Ok(q
                    .chunks_exact(dim)
                    .map(|row| dense::search_live_rows(c, fi, *metric, row, req.k))
                    .collect());
            }
            match strategy {
                Strategy::Blocked => dense::search_gemm(&batch),
                Strategy::Screened => screened::search_batch(&batch),
                Strategy::Coded if nq > 1 => {
                    coded::search_batch(&batch).unwrap_or_else(|| screened::search_batch(&batch))
                }
                Strategy::Coded => vec![coded::search_one(c, fi, *metric, q, req.k)
                    .unwrap_or_else(|| dense::search_streaming(c, fi, *metric, q, req.k))],
                _ => q
                    .chunks_exact(dim)
                    .map(|row| dense::search_streaming(c, fi, *metric, row, req.k))
                    .collect(),
            }
        }
        (FieldKind::Multi { dim, metric, .. }, Queries::Multi(qs)) => {
            let dim = *dim as usize;
            check_multi_queries(req.field, (dim, *metric, kind.dtype()), qs)?;
            if let Some(p) = &req.plaid {
                p.validate()?;
            }
            if let Device::Cuda(n) = req.device {
                if let Some(tops) =
                    on_gpu(|| gpu::search_maxsim(c, fi, *metric, dim, qs, req.k, n))?
                {
                    return Ok(tops);
                }
            }
            // Only a declared index is used (a dropped one's sections stay until a rewrite).
            let declared = c.plaid_params().contains_key(req.field);
            if !req.exact && declared && c.slots().iter().any(|s| s.segment.has_plaid(fi)) {
                let p = req
                    .plaid
                    .unwrap_or_else(|| crate::plaid::PlaidSearch::for_k(req.k));
                multi_plaid::search(c, fi, *metric, dim, qs, req.k, &p)?
            } else {
                multi::search_maxsim(c, fi, *metric, dim, qs, req.k)?
            }
        }
        (FieldKind::Tensor { .. }, _) => {
            return Err(Error::wrong_kind(
                c.name(),
                req.field,
                "tensor",
                "tensors are stored, not searched",
            ))
        }
        (kind, _) => {
            return Err(Error::wrong_kind(
                c.name(),
                req.field,
                kind.kind_name(),
                format!("give {} queries", kind.kind_name()),
            ))
        }
    };
    Ok(tops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::{Cell, RefCell};

    proptest! {
        /// The norm check's shortcut (`max|qᵢ|·√dim` under the limit) never changes the verdict
        /// of the f64 norm, near the limit and far from it.
        #[test]
        fn the_norm_check_agrees_with_the_f64_norm(
            unit in prop::collection::vec(-1.0f32..1.0, 1..40),
            scale in 0.2f64..3.0,
        ) {
            let s = (crate::dtype::MAX_VECTOR_NORM * scale) as f32;
            let q: Vec<f32> = unit.iter().map(|v| v * s).collect();
            let within = crate::dtype::norm_f64(&q) <= crate::dtype::MAX_VECTOR_NORM;
            let got = check_query("f", (Metric::L2, DType::F32), &q, "query 0", false);
            prop_assert_eq!(got.is_ok(), within, "{:?}", got);
        }
    }

    /// `split` gives `inside` the admitted queries, in order, as one batch (the original one,
    /// uncopied, when all are admitted; never an empty one), `outside` each other query alone,
    /// and returns one result per query in query order.
    #[test]
    fn split_keeps_query_order_and_sends_only_admitted_queries_inside() {
        let db =
            crate::Database::create_in(std::sync::Arc::new(crate::storage::MemDirectory::new()))
                .unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "c",
            crate::Schema::new().with_field(crate::FieldSpec::dense(
                "f",
                2,
                DType::F32,
                Metric::Ip,
            )),
        )
        .unwrap();
        w.commit().unwrap();
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        // Query i is (i, 1); a result names its query by its row.
        let n = 6;
        let queries: Vec<f32> = (0..n).flat_map(|i| [i as f32, 1.0]).collect();
        let tagged = |q: &[f32]| {
            let mut t = TopK::new(1);
            t.push(topk::Candidate {
                score: 0.0,
                segment_ord: 0,
                row: q[0] as u32,
            });
            t
        };
        for mask in [0u32, 0b111111, 0b101001, 0b010110, 0b000001, 0b100000] {
            let b = DenseBatch {
                collection: c,
                field: 0,
                metric: Metric::Ip,
                dim: 2,
                queries: &queries,
                k: 1,
            };
            let (inside_calls, outside_seen) = (Cell::new(0), RefCell::new(Vec::new()));
            let admitted = |q: &[f32]| mask & (1 << q[0] as u32) != 0;
            let out = b.split(
                admitted,
                |inner| {
                    inside_calls.set(inside_calls.get() + 1);
                    let rows: Vec<u32> =
                        inner.queries.chunks_exact(2).map(|q| q[0] as u32).collect();
                    let want: Vec<u32> = (0..n).filter(|&i| mask & (1 << i) != 0).collect();
                    assert_eq!(rows, want, "mask {mask:#b}");
                    if mask == 0b111111 {
                        assert!(std::ptr::eq(inner.queries, &queries[..]));
                    }
                    inner.queries.chunks_exact(2).map(tagged).collect()
                },
                |q| {
                    outside_seen.borrow_mut().push(q[0] as u32);
                    tagged(q)
                },
            );
            let order: Vec<u32> = out.into_iter().map(|t| t.into_sorted()[0].row).collect();
            assert_eq!(order, (0..n).collect::<Vec<_>>(), "mask {mask:#b}");
            assert_eq!(inside_calls.get(), usize::from(mask != 0), "mask {mask:#b}");
            let outside_want: Vec<u32> = (0..n).filter(|&i| mask & (1 << i) == 0).collect();
            assert_eq!(*outside_seen.borrow(), outside_want, "mask {mask:#b}");
        }
    }
}
