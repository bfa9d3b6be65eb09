//! Two-stage search, stage 2: re-scoring given candidates (the first stage's hits, or a saved run)
//! with another field and another query, as CFIR re-ranks entity-query candidates by summary
//! queries, Qdrant's `prefetch` and Vespa's rank phases do. Dense fields score as exact streaming
//! search does; multi-vector fields by exact MaxSim with `search_maxsim`'s arithmetic.

use rayon::prelude::*;

use super::{check_dense_queries, check_multi_queries, multi, Hit, Queries};
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::linalg::similarity::{similarity, PreparedQuery};
use crate::schema::FieldKind;

/// How a re-ranked candidate's final score is formed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Combine {
    /// The second stage's score alone.
    #[default]
    Second,
    /// `first · s₁ + second · s₂` (`s₁`: the candidate's first-stage score; `s₂`: the second's),
    /// in f32.
    Weighted {
        /// Weight of the first-stage score.
        first: f32,
        /// Weight of the second-stage score.
        second: f32,
    },
}

impl Combine {
    /// Parses `second` or `sum:W1,W2` (the CLI's `--combine`).
    ///
    /// ```
    /// use vellum::Combine;
    /// assert_eq!(Combine::parse("second").unwrap(), Combine::Second);
    /// assert_eq!(Combine::parse("sum:0.3,0.7").unwrap(), Combine::Weighted { first: 0.3, second: 0.7 });
    /// assert!(Combine::parse("sum:1").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Combine> {
        let bad = || {
            Error::parameter(
                "combine",
                format!("{s:?}: expected \"second\" (the second stage's score) or \"sum:W1,W2\" (W1·first + W2·second, finite weights)"),
            )
        };
        if s == "second" {
            return Ok(Combine::Second);
        }
        let weights = s.strip_prefix("sum:").ok_or_else(bad)?;
        let (a, b) = weights.split_once(',').ok_or_else(bad)?;
        let parse = |w: &str| w.trim().parse::<f32>().ok().filter(|x| x.is_finite());
        match (parse(a), parse(b)) {
            (Some(first), Some(second)) => Ok(Combine::Weighted { first, second }),
            _ => Err(bad()),
        }
    }

    /// How far `apply(first, s)` may lie from `apply(first, s')` when `|s − s'| ≤ h` (f32
    /// rounding of both evaluations included).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    fn bound(&self, first: f32, second: f32, h: f64) -> f64 {
        match self {
            Combine::Second => h,
            Combine::Weighted {
                first: a,
                second: b,
            } => {
                let (a, b) = (*a as f64, (*b as f64).abs());
                b * h + 2f64.powi(-21) * ((a * first as f64).abs() + b * (second.abs() as f64 + h))
            }
        }
    }

    fn apply(&self, first: f32, second: f32) -> f32 {
        match self {
            Combine::Second => second,
            Combine::Weighted {
                first: a,
                second: b,
            } => a * first + b * second,
        }
    }
}

/// The second stage of a two-stage search: the field and queries that re-score the candidates.
#[derive(Debug, Clone)]
pub struct Rerank<'a> {
    /// The field that re-scores (dense or multi-vector).
    pub field: &'a str,
    /// One query per first-stage query, in the same order.
    pub queries: Queries<'a>,
    /// Hits kept per query after re-ranking.
    pub k: usize,
    /// How the final score is formed.
    pub combine: Combine,
    /// Only candidates whose metadata matches are kept (the first stage's filter is usually
    /// enough; this one serves candidates read from a run file).
    pub filter: Option<&'a crate::filter::Filter>,
    /// Where multi-vector candidates are scored: `Device::Cuda(n)` (feature `cuda`) computes
    /// every candidate's MaxSim on GPU `n` and rescores exactly, on the CPU, only the candidates
    /// whose GPU score can reach the top `k`: results equal the CPU's. Dense fields re-rank on
    /// the CPU.
    pub device: super::Device,
}

impl<'a> Rerank<'a> {
    /// Re-scoring with a dense field: `n × dim` query values, one row per first-stage query.
    pub fn dense(field: &'a str, queries: &'a [f32], k: usize) -> Self {
        Rerank {
            field,
            queries: Queries::Dense(queries),
            k,
            combine: Combine::Second,
            filter: None,
            device: super::Device::Cpu,
        }
    }

    /// Re-scoring with a multi-vector field (exact MaxSim): one token matrix per query.
    pub fn multi(field: &'a str, queries: Vec<&'a [f32]>, k: usize) -> Self {
        Rerank {
            field,
            queries: Queries::Multi(queries),
            k,
            combine: Combine::Second,
            filter: None,
            device: super::Device::Cpu,
        }
    }

    /// Sets how the final score is formed.
    pub fn with_combine(mut self, combine: Combine) -> Self {
        self.combine = combine;
        self
    }

    /// Keeps only candidates whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: &'a crate::filter::Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Scores multi-vector candidates on `device` (see [`Rerank::device`]).
    pub fn on_device(mut self, device: super::Device) -> Self {
        self.device = device;
        self
    }
}

/// Stage-1 hits as re-ranking candidates: `(document id, score)` per query.
pub fn candidates(stage1: &[Vec<Hit>]) -> Vec<Vec<(&str, f32)>> {
    stage1
        .iter()
        .map(|hits| hits.iter().map(|h| (h.id.as_str(), h.score)).collect())
        .collect()
}

/// Re-scores `candidates[i]` (`(document id, first-stage score)`) with query `i` of `r`; returns
/// per query the best `r.k` of the candidates this collection holds alive (and that match the
/// filter), ranked by [`super::rank_order`].
pub(crate) fn rerank(
    c: &Collection,
    r: &Rerank<'_>,
    candidates: &[Vec<(&str, f32)>],
) -> Result<Vec<Vec<Hit>>> {
    let fi = c.field_index(r.field)?;
    let kind = c.schema().fields[fi].kind.clone();
    let queries: Vec<&[f32]> = match (&kind, &r.queries) {
        (FieldKind::Dense { dim, metric, .. }, Queries::Dense(q)) => {
            check_dense_queries(r.field, (*dim as usize, *metric, kind.dtype()), q)?;
            q.chunks_exact(*dim as usize).collect()
        }
        (FieldKind::Multi { dim, metric, .. }, Queries::Multi(qs)) => {
            check_multi_queries(r.field, (*dim as usize, *metric, kind.dtype()), qs)?;
            qs.clone()
        }
        (FieldKind::Tensor { .. }, _) => {
            return Err(Error::wrong_kind(
                c.name(),
                r.field,
                "tensor",
                "re-rank with a dense or multi-vector field; tensors are stored, not searched",
            ))
        }
        (kind, _) => {
            return Err(Error::wrong_kind(
                c.name(),
                r.field,
                kind.kind_name(),
                format!("give {} re-ranking queries", kind.kind_name()),
            ))
        }
    };
    if queries.len() != candidates.len() {
        return Err(Error::InvalidQuery(format!(
            "{} re-ranking queries for {} first-stage queries (one each, in the same order)",
            queries.len(),
            candidates.len()
        )));
    }
    let view;
    let c = match r.filter {
        Some(f) => {
            view = super::filtered_view(c, f)?;
            &view
        }
        None => c,
    };
    if r.k == 0 {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    if let (super::Device::Cuda(n), FieldKind::Multi { dim, metric, .. }) = (r.device, &kind) {
        let on = (*dim as usize, *metric);
        if let Some(hits) = rerank_on_gpu(c, r, fi, &kind, on, &queries, candidates, n)? {
            return Ok(hits);
        }
    }
    queries
        .par_iter()
        .zip(candidates)
        .enumerate()
        .map(|(qi, (q, cands))| {
            let mut seen = std::collections::HashSet::with_capacity(cands.len());
            let mut hits = Vec::with_capacity(cands.len());
            let mut prepared = PreparedTokens::new(&kind, q);
            for &(id, first) in cands {
                if !seen.insert(id) {
                    return Err(Error::InvalidQuery(format!(
                        "query {qi}: document {id:?} is a candidate twice"
                    )));
                }
                let Some(doc) = c.get(id)? else {
                    continue;
                };
                hits.push(rescored(
                    &mut prepared,
                    r,
                    qi,
                    (id, first),
                    c,
                    fi,
                    doc.address(),
                )?);
            }
            hits.sort_by(super::rank_order);
            hits.truncate(r.k);
            Ok(hits)
        })
        .collect()
}

/// [`rerank`] of a multi-vector field with GPU `ordinal`: the GPU scores every candidate, the CPU
/// rescores candidates in order of their highest possible final score until the next cannot
/// reach the k-th exact one; the rest are not in the top `k`. Same hits as the CPU path; `None`
/// when the queries must run on the CPU (see `gpu::maxsim_pairs`).
#[allow(clippy::too_many_arguments)]
fn rerank_on_gpu(
    c: &Collection,
    r: &Rerank<'_>,
    fi: usize,
    kind: &FieldKind,
    (dim, metric): (usize, crate::dtype::Metric),
    queries: &[&[f32]],
    candidates: &[Vec<(&str, f32)>],
    ordinal: usize,
) -> Result<Option<Vec<Vec<Hit>>>> {
    // Resolve every candidate (duplicates refused, absent or deleted ones skipped, as on the CPU).
    let mut pairs = Vec::new();
    let mut found: Vec<Vec<(&str, f32, crate::collection::DocAddress)>> = Vec::new();
    for (qi, cands) in candidates.iter().enumerate() {
        let mut seen = std::collections::HashSet::with_capacity(cands.len());
        let mut mine = Vec::with_capacity(cands.len());
        for &(id, first) in cands {
            if !seen.insert(id) {
                return Err(Error::InvalidQuery(format!(
                    "query {qi}: document {id:?} is a candidate twice"
                )));
            }
            if let Some(doc) = c.get(id)? {
                let a = doc.address();
                pairs.push((qi as u32, a.segment_ord, a.row));
                mine.push((id, first, a));
            }
        }
        found.push(mine);
    }
    let Some((approx, bounds)) = on_gpu_pairs(c, fi, metric, dim, queries, &pairs, ordinal)? else {
        return Ok(None);
    };
    let mut next = 0;
    let per_query: Vec<(usize, usize)> = found
        .iter()
        .map(|f| {
            next += f.len();
            (next - f.len(), next)
        })
        .collect();
    queries
        .par_iter()
        .zip(found.par_iter())
        .zip(per_query.par_iter())
        .enumerate()
        .map(|(qi, ((q, cands), &(start, end)))| {
            // Highest possible final score of each candidate.
            let mut order: Vec<(f64, usize)> = (start..end)
                .map(|i| {
                    let (first, s) = (cands[i - start].1, approx[i]);
                    let upper =
                        r.combine.apply(first, s) as f64 + r.combine.bound(first, s, bounds[qi]);
                    (
                        if upper.is_nan() { f64::INFINITY } else { upper },
                        i - start,
                    )
                })
                .collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut prepared = PreparedTokens::new(kind, q);
            let mut hits: Vec<Hit> = Vec::new();
            // The best k exact scores so far, descending.
            let mut best: Vec<f32> = Vec::with_capacity(r.k + 1);
            for (upper, j) in order {
                // Strictly below: a tie with the k-th could still rank above it by id.
                if best.len() >= r.k && upper < best[r.k - 1] as f64 {
                    break;
                }
                let (id, first, address) = cands[j];
                let hit = rescored(&mut prepared, r, qi, (id, first), c, fi, address)?;
                let at = best.partition_point(|b| b.total_cmp(&hit.score).is_ge());
                best.insert(at, hit.score);
                best.truncate(r.k);
                hits.push(hit);
            }
            hits.sort_by(super::rank_order);
            hits.truncate(r.k);
            Ok(hits)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Candidate `id` (first-stage score `first`, at `address` in `c`) re-scored: its second-stage
/// score combined with its first, both finite.
fn rescored(
    prepared: &mut PreparedTokens,
    r: &Rerank<'_>,
    qi: usize,
    (id, first): (&str, f32),
    c: &Collection,
    fi: usize,
    address: crate::collection::DocAddress,
) -> Result<Hit> {
    let seg = &c.slots()[address.segment_ord as usize].segment;
    let second = prepared.score(seg, fi, address.row)?;
    if !second.is_finite() {
        return Err(Error::InvalidQuery(format!(
            "query {qi}: its score against document {id:?} is {second} (scale the vectors down)"
        )));
    }
    // + 0.0: a zero score is +0, as in every search path (`TopK::push`).
    let score = r.combine.apply(first, second) + 0.0;
    if !score.is_finite() {
        return Err(Error::InvalidQuery(format!(
            "query {qi}: document {id:?} scores {score} (first stage {first}, second {second}, {:?}): scores must be finite",
            r.combine
        )));
    }
    Ok(Hit {
        id: id.to_string(),
        score,
        address,
    })
}

#[cfg(feature = "gpu")]
fn on_gpu_pairs(
    c: &Collection,
    fi: usize,
    metric: crate::dtype::Metric,
    dim: usize,
    queries: &[&[f32]],
    pairs: &[(u32, u32, u32)],
    ordinal: usize,
) -> Result<Option<(Vec<f32>, Vec<f64>)>> {
    super::gpu::maxsim_pairs(c, fi, metric, dim, queries, pairs, ordinal)
}

#[cfg(not(feature = "gpu"))]
fn on_gpu_pairs(
    _: &Collection,
    _: usize,
    _: crate::dtype::Metric,
    _: usize,
    _: &[&[f32]],
    _: &[(u32, u32, u32)],
    _: usize,
) -> Result<Option<(Vec<f32>, Vec<f64>)>> {
    Err(Error::FeatureDisabled {
        what: "re-ranking on a CUDA device".into(),
        feature: "cuda",
    })
}

/// One re-ranking query, prepared for its field.
enum PreparedTokens {
    Dense(PreparedQuery, crate::dtype::Metric),
    Multi {
        metric: crate::dtype::Metric,
        dim: usize,
        q: Vec<f32>,
        q_sq: Vec<f32>,
        doc: Vec<f32>,
        scratch: Vec<f32>,
    },
}

impl PreparedTokens {
    fn new(kind: &FieldKind, q: &[f32]) -> Self {
        match kind {
            FieldKind::Multi { dim, metric, .. } => {
                let mut q = q.to_vec();
                let q_sq = multi::prepare_tokens(*metric, *dim as usize, &mut q);
                PreparedTokens::Multi {
                    metric: *metric,
                    dim: *dim as usize,
                    q,
                    q_sq,
                    doc: Vec::new(),
                    scratch: Vec::new(),
                }
            }
            FieldKind::Dense { metric, dtype, .. } => {
                PreparedTokens::Dense(PreparedQuery::new(q, *dtype), *metric)
            }
            FieldKind::Tensor { .. } => unreachable!("refused by rerank"),
        }
    }

    fn score(&mut self, seg: &crate::format::segment::Segment, fi: usize, row: u32) -> Result<f32> {
        Ok(match self {
            PreparedTokens::Dense(q, metric) => similarity(*metric, q, seg.fixed_row(fi, row)),
            PreparedTokens::Multi {
                metric,
                dim,
                q,
                q_sq,
                doc,
                scratch,
            } => multi::maxsim_row(seg, fi, row, *metric, *dim, (q, q_sq), doc, scratch)?,
        })
    }
}
