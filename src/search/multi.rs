//! Exact late-interaction (MaxSim) search over multi-vector fields.

use rayon::prelude::*;

use super::bounds::Screen;
use super::topk::TopK;
use crate::collection::Collection;
use crate::dtype::Metric;
use crate::error::{Error, Result};
use crate::linalg::gemm::matmul_nt;

/// Document tokens per parallel task (a task holds at least one document).
const TOKEN_BLOCK: usize = 4096;
/// Stacked query tokens per matrix product.
const QUERY_TOKEN_BLOCK: usize = 512;

/// Prepares stacked query tokens for MaxSim in place (normalised for cosine; a zero token stays
/// zero and scores 0 against every document token, as a zero document token does) and returns
/// their squared norms (used by L2).
pub(super) fn prepare_tokens(metric: Metric, dim: usize, q: &mut [f32]) -> Vec<f32> {
    q.chunks_exact_mut(dim)
        .map(|row| {
            let sq: f32 = row.iter().map(|v| v * v).sum();
            if metric == Metric::Cosine {
                let inv = if sq > 0.0 { 1.0 / sq.sqrt() } else { 0.0 };
                row.iter_mut().for_each(|v| *v *= inv);
            }
            sq
        })
        .collect()
}

/// MaxSim of one document's tokens `x` (`n × dim`) against query tokens `q` prepared by
/// [`prepare_tokens`] (squared norms `q_sq`), with [`search_maxsim`]'s arithmetic: `X·Qᵀ`, the
/// metric's adjustment per document token, a running maximum per query token, the maxima summed
/// in token order. `scores` is scratch space.
pub(super) fn maxsim_one(
    metric: Metric,
    dim: usize,
    q: &[f32],
    q_sq: &[f32],
    x: &[f32],
    scores: &mut Vec<f32>,
) -> f32 {
    let (n, m) = (x.len() / dim, q.len() / dim);
    if n == 0 {
        return 0.0;
    }
    scores.resize(n * m, 0.0);
    matmul_nt(x, n, q, m, dim, &mut scores[..n * m]);
    let mut maxes = vec![f32::NEG_INFINITY; m];
    for (j, row) in scores[..n * m].chunks_exact(m).enumerate() {
        let t = &x[j * dim..(j + 1) * dim];
        let sq: f32 = t.iter().map(|v| v * v).sum();
        match metric {
            Metric::Ip => maxes.iter_mut().zip(row).for_each(|(b, &s)| *b = b.max(s)),
            Metric::Cosine => {
                let nj = if sq > 0.0 { 1.0 / sq.sqrt() } else { 0.0 };
                maxes
                    .iter_mut()
                    .zip(row)
                    .for_each(|(b, &s)| *b = b.max(s * nj))
            }
            Metric::L2 => maxes
                .iter_mut()
                .zip(row)
                .zip(q_sq)
                .for_each(|((b, &s), &qq)| *b = b.max(2.0 * s - qq - sq)),
        }
    }
    maxes.iter().fold(0.0f32, |acc, v| acc + v)
}

/// [`maxsim_one`] of row `row` of `seg`'s multi-vector field `field` (read in place for f32,
/// converted into `doc` for 16-bit types; `scratch` as `maxsim_one`'s). The one per-document
/// MaxSim of re-ranking, whole-field search's finalists and GPU rescoring.
#[allow(clippy::too_many_arguments)]
pub(super) fn maxsim_row(
    seg: &crate::format::segment::Segment,
    field: usize,
    row: u32,
    metric: Metric,
    dim: usize,
    (q, q_sq): (&[f32], &[f32]),
    doc: &mut Vec<f32>,
    scratch: &mut Vec<f32>,
) -> Result<f32> {
    let tokens = seg.multi_row(field, row)?;
    let x: &[f32] = match &tokens {
        crate::dtype::VectorCow::Borrowed(crate::dtype::VectorRef::F32(v)) => v,
        crate::dtype::VectorCow::Owned(v) => v,
        crate::dtype::VectorCow::Borrowed(other) => {
            doc.clear();
            doc.extend(other.to_f32_vec());
            doc
        }
    };
    Ok(maxsim_one(metric, dim, q, q_sq, x, scratch))
}

/// Scores every live document by `Σ_{query token} max_{doc token} sim(q, d)` and keeps the top k.
///
/// The blocked products (`X·Qᵀ` over many documents and queries at once) are rounded in an order
/// that depends on the block shapes (the `gemm` crate's kernels), so a document's blocked score
/// can differ in its last bits from [`maxsim_one`]'s, the arithmetic of re-ranking, PLAID's last
/// stage and GPU rescoring. The blocked scores therefore screen ([`super::bounds::Screen`], an
/// interval of [`blocked_slack`] around each), and the documents that can reach the top-k are
/// rescored by [`maxsim_one`]: every path reports the same score for a document.
pub(super) fn search_maxsim(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[&[f32]],
    k: usize,
) -> Result<Vec<TopK>> {
    // Stack all query tokens; remember each query's token range.
    let mut q: Vec<f32> = Vec::with_capacity(queries.iter().map(|x| x.len()).sum());
    let mut ranges = Vec::with_capacity(queries.len());
    for query in queries {
        let start = q.len() / dim;
        q.extend_from_slice(query);
        ranges.push(start..q.len() / dim);
    }
    let total = q.len() / dim;
    let q_sq = prepare_tokens(metric, dim, &mut q);
    let q_norms: Vec<Vec<f64>> = ranges
        .iter()
        .map(|r| {
            q[r.start * dim..r.end * dim]
                .chunks_exact(dim)
                .map(crate::dtype::norm_f64)
                .collect()
        })
        .collect();
    // Blocks of whole documents.
    let mut tasks = Vec::new();
    for (si, slot) in c.slots().iter().enumerate() {
        let (mut start, mut tokens) = (0u32, 0usize);
        for row in 0..slot.segment.rows() {
            tokens += slot.segment.multi_range(field, row)?.len();
            if tokens >= TOKEN_BLOCK {
                tasks.push((si, start, row + 1));
                start = row + 1;
                tokens = 0;
            }
        }
        if start < slot.segment.rows() {
            tasks.push((si, start, slot.segment.rows()));
        }
    }
    let nq = queries.len();
    let empty = || (0..nq).map(|_| Screen::new(k)).collect::<Vec<_>>();
    let per_task = |(si, start, end): (usize, u32, u32)| -> Result<Vec<Screen>> {
        let mut tops = empty();
        let slot = &c.slots()[si];
        // A filtered search skips blocks without a matching row.
        if c.is_filtered() && slot.live_rows_in(start, end).next().is_none() {
            return Ok(tops);
        }
        let seg = &slot.segment;
        let t0 = seg.multi_range(field, start)?.start;
        let t1 = seg.multi_range(field, end - 1)?.end;
        if t1 < t0 {
            return Err(Error::corrupt(
                seg.path(),
                "multi-vector offsets",
                0,
                format!("rows {start}..{end}: token offsets decrease ({t0} > {t1})"),
            ));
        }
        let n = t1 - t0;
        // f32 fields are read in place; f16 / bf16 ones converted, codes-only ones
        // decompressed, once per block.
        let mut converted = Vec::new();
        let x: &[f32] = match seg.multi_tokens(field) {
            Some(crate::dtype::VectorRef::F32(v)) => &v[t0 * dim..t1 * dim],
            _ => {
                seg.multi_tokens_f32(field, t0..t1, &mut converted)?;
                &converted
            }
        };
        let norms: Vec<f32> = match metric {
            Metric::Ip => Vec::new(),
            _ => x
                .chunks_exact(dim)
                .map(|r| {
                    let sq: f32 = r.iter().map(|v| v * v).sum();
                    match metric {
                        Metric::Cosine if sq > 0.0 => 1.0 / sq.sqrt(),
                        Metric::Cosine => 0.0,
                        _ => sq,
                    }
                })
                .collect(),
        };
        let doc_ranges = (start..end)
            .map(|r| seg.multi_range(field, r))
            .collect::<Result<Vec<_>>>()?;
        if let Some((d, r)) = doc_ranges
            .iter()
            .enumerate()
            .find(|(_, r)| r.start < t0 || r.end > t1)
        {
            return Err(Error::corrupt(seg.path(), "multi-vector offsets", 0, format!(
                "row {}: token range {r:?} lies outside its block {t0}..{t1} (offsets not monotonic)", start as usize + d
            )));
        }
        // scores = X·Qᵀ (n × m, a row per document token): the long dimension goes to the
        // product's rows, and each document's maxima are a running max over its rows.
        let mut scores = vec![0.0f32; QUERY_TOKEN_BLOCK.min(total) * n];
        let mut doc_scores = vec![0.0f32; nq * (end - start) as usize];
        let mut maxes = vec![0.0f32; QUERY_TOKEN_BLOCK.min(total)];
        let nd = (end - start) as usize;
        for q0 in (0..total).step_by(QUERY_TOKEN_BLOCK) {
            let m = QUERY_TOKEN_BLOCK.min(total - q0);
            matmul_nt(
                x,
                n,
                &q[q0 * dim..(q0 + m) * dim],
                m,
                dim,
                &mut scores[..n * m],
            );
            let qsq = &q_sq[q0..q0 + m];
            for (d, dr) in doc_ranges.iter().enumerate() {
                let maxes = &mut maxes[..m];
                maxes.fill(f32::NEG_INFINITY);
                for j in dr.start - t0..dr.end - t0 {
                    let row = &scores[j * m..(j + 1) * m];
                    // One loop per metric, so that the max runs vectorise.
                    match metric {
                        Metric::Ip => maxes.iter_mut().zip(row).for_each(|(b, &s)| *b = b.max(s)),
                        Metric::Cosine => {
                            let nj = norms[j];
                            maxes
                                .iter_mut()
                                .zip(row)
                                .for_each(|(b, &s)| *b = b.max(s * nj))
                        }
                        Metric::L2 => {
                            let nj = norms[j];
                            maxes
                                .iter_mut()
                                .zip(row)
                                .zip(qsq)
                                .for_each(|((b, &s), &qq)| *b = b.max(2.0 * s - qq - nj))
                        }
                    }
                }
                for (qi, qr) in ranges.iter().enumerate() {
                    for t in qr.start.max(q0)..qr.end.min(q0 + m) {
                        doc_scores[qi * nd + d] += maxes[t - q0];
                    }
                }
            }
        }
        // The largest token norm of the segment bounds every product's rounding (cosine's
        // products are of unit vectors).
        let x_max = match metric {
            Metric::Cosine => 1.0,
            _ => segment_max_norm(seg, field, dim)?,
        };
        for (qi, top) in tops.iter_mut().enumerate() {
            let slack = blocked_slack(metric, dim, &q_norms[qi], x_max);
            for (d, row) in (start..end).enumerate() {
                let score = doc_scores[qi * (end - start) as usize + d];
                if !score.is_finite() {
                    // Each token's similarity is finite within the norm limit, but an L2 sum over
                    // many tokens can leave f32: an error, never an infinite score in a run.
                    return Err(Error::InvalidQuery(format!(
                        "query {qi}: its MaxSim score against row {row} of {} is {score} (the token vectors are too far apart for f32 sums; scale the vectors down)",
                        seg.path().display()
                    )));
                }
                if !slot.is_deleted(row) {
                    let (upper, lower) =
                        ((score as f64 + slack) as f32, (score as f64 - slack) as f32);
                    if upper >= top.floor {
                        top.offer(upper.next_up(), lower.next_down(), si as u32, row);
                    }
                }
            }
        }
        Ok(tops)
    };
    let screens = tasks
        .into_par_iter()
        .map(per_task)
        .try_reduce(empty, |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
            Ok(a)
        })?;
    // Rescore what can reach each top-k with the per-document arithmetic.
    screens
        .into_par_iter()
        .zip(ranges.par_iter())
        .map(|(screen, r)| {
            let (qt, qs) = (&q[r.start * dim..r.end * dim], &q_sq[r.clone()]);
            let scratch = std::cell::RefCell::new((Vec::new(), Vec::new()));
            let failed = std::cell::RefCell::new(None);
            let top = screen.finish(k, |si, row| {
                let seg = &c.slots()[si as usize].segment;
                let mut s = scratch.borrow_mut();
                let (doc, tmp) = &mut *s;
                let score = match maxsim_row(seg, field, row, metric, dim, (qt, qs), doc, tmp) {
                    Ok(score) => score,
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e);
                        return f32::NAN;
                    }
                };
                if !score.is_finite() {
                    failed.borrow_mut().get_or_insert(Error::InvalidQuery(format!(
                        "a query's MaxSim score against row {row} of {} is {score} (the token vectors are too far apart for f32 sums; scale the vectors down)",
                        seg.path().display()
                    )));
                }
                score
            });
            match failed.into_inner() {
                Some(e) => Err(e),
                None => Ok(top),
            }
        })
        .collect()
}

/// `Σ v²` of one token in f32, eight lanes (so that it vectorises; the order does not matter to
/// [`max_norm`]'s bound).
fn sum_of_squares(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|x| x * x).sum::<f32>()
}

/// An upper bound on the largest token norm of `field` in segment `seg`, computed at the first
/// search and kept with the segment.
fn segment_max_norm(
    seg: &crate::format::segment::Segment,
    field: usize,
    dim: usize,
) -> Result<f64> {
    seg.derived(&format!("max-token-norm/{field}"), |s| {
        let count = s.multi_token_count(field);
        let step = 4096;
        let mut max = 0f32;
        let mut values = Vec::new();
        for start in (0..count).step_by(step) {
            values.clear();
            s.multi_tokens_f32(field, start..(start + step).min(count), &mut values)?;
            max = values
                .chunks_exact(dim)
                .map(sum_of_squares)
                .fold(max, f32::max);
        }
        Ok(max_norm(std::iter::once(max), dim))
    })
    .map(|m| *m)
}

/// An upper bound on the largest norm of tokens whose squared norms (each summed in f32 over
/// `dim` values, so within `dim·2⁻²⁴` relative of exact) are `squares`.
fn max_norm(squares: impl Iterator<Item = f32>, dim: usize) -> f64 {
    let max = squares.fold(0f32, f32::max) as f64;
    (max * (1.0 + (dim as f64 + 2.0) * 2f64.powi(-23))).sqrt()
}

/// How far a document's blocked MaxSim score (as [`search_maxsim`] computes it) may lie from
/// [`maxsim_one`]'s, for a query whose prepared tokens have norms `q_norms` and a block whose
/// largest token norm is `x_max`: each dot product of `dim` terms is within `dim·2⁻²⁴·|q||x|` of
/// exact on either side (any summation order), the metric's adjustment adds a rounding, and the
/// sums of the per-token maxima add one rounding per term. A factor of 2 to spare.
///
/// For cosine, `x_max` is 1 (unit tokens on both sides).
fn blocked_slack(metric: Metric, dim: usize, q_norms: &[f64], x_max: f64) -> f64 {
    let (d, lq) = (dim as f64, q_norms.len() as f64);
    let dot = (d + 2.0) * 2f64.powi(-21);
    q_norms
        .iter()
        .map(|&n| {
            let (per, size) = match metric {
                Metric::Ip => (dot * n * x_max, n * x_max),
                Metric::Cosine => (dot * n + 2f64.powi(-21), 1.0),
                Metric::L2 => {
                    let s = (n + x_max).powi(2);
                    (2.0 * dot * n * x_max + 2f64.powi(-20) * s, s)
                }
            };
            // Products in the subnormal range round absolutely (2⁻¹⁴⁹ each).
            per + (lq + 2.0) * 2f64.powi(-21) * size + d * 2f64.powi(-147)
        })
        .sum()
}
