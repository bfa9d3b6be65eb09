//! Exact dense search.

use super::DenseBatch;
use rayon::prelude::*;

use super::topk::{Candidate, TopK};
use crate::collection::{Collection, SegmentSlot};
use crate::dtype::{Metric, VectorRef};
use crate::linalg::gemm::matmul_nt;
use crate::linalg::similarity::{similarity, PreparedQuery};

/// Rows per parallel task of the streaming path.
const STREAM_BLOCK: usize = 8192;
/// Rows per parallel task of the blocked path (one block of data is converted/read once and
/// multiplied with every query block).
const ROW_BLOCK: usize = 512;
/// Queries per matrix product.
const QUERY_BLOCK: usize = 512;

pub(super) fn tasks(c: &Collection, block: usize) -> Vec<(usize, usize, usize)> {
    let mut t = Vec::new();
    for (si, slot) in c.slots().iter().enumerate() {
        let rows = slot.segment.rows() as usize;
        t.extend(
            (0..rows)
                .step_by(block)
                .map(|start| (si, start, (start + block).min(rows))),
        );
    }
    t
}

#[inline]
pub(super) fn offer(top: &mut TopK, slot: &SegmentSlot, si: usize, row: usize, score: f32) {
    if score >= top.threshold() && !slot.is_deleted(row as u32) {
        top.push(Candidate {
            score,
            segment_ord: si as u32,
            row: row as u32,
        });
    }
}

/// One query, one SIMD call per stored vector, row blocks in parallel.
pub(super) fn search_streaming(
    c: &Collection,
    field: usize,
    metric: Metric,
    q: &[f32],
    k: usize,
) -> TopK {
    stream(c, field, metric, q, k, false)
}

/// [`search_streaming`] over the live rows only: a filtered search matching few rows never reads
/// the rows the filter excludes.
pub(super) fn search_live_rows(
    c: &Collection,
    field: usize,
    metric: Metric,
    q: &[f32],
    k: usize,
) -> TopK {
    stream(c, field, metric, q, k, true)
}

fn stream(c: &Collection, field: usize, metric: Metric, q: &[f32], k: usize, live: bool) -> TopK {
    let dtype = c.schema().fields[field].kind.dtype();
    let dim = q.len();
    let prepared = PreparedQuery::new(q, dtype);
    tasks(c, STREAM_BLOCK)
        .into_par_iter()
        .fold(
            || TopK::new(k),
            |mut top, (si, start, end)| {
                let slot = &c.slots()[si];
                let matrix = slot.segment.fixed_matrix(field);
                let mut score = |row: usize| {
                    let x = matrix.slice(row * dim..(row + 1) * dim);
                    offer(&mut top, slot, si, row, similarity(metric, &prepared, x));
                };
                if live {
                    slot.live_rows_in(start as u32, end as u32)
                        .for_each(|row| score(row as usize));
                } else {
                    (start..end).for_each(&mut score);
                }
                top
            },
        )
        .reduce(
            || TopK::new(k),
            |mut a, b| {
                a.merge(b);
                a
            },
        )
}

/// Offers a run of scores (rows `start..`) to `top`. Chunks whose maximum is below the current
/// threshold are skipped with one vectorised pass, which is the common case once `top` is full.
#[inline]
fn scan(top: &mut TopK, slot: &SegmentSlot, si: usize, start: usize, scores: &[f32]) {
    const CHUNK: usize = 32;
    let mut threshold = top.threshold();
    for (c, chunk) in scores.chunks(CHUNK).enumerate() {
        let max = chunk
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        if max < threshold {
            continue;
        }
        for (j, &score) in chunk.iter().enumerate() {
            let row = start + c * CHUNK + j;
            if score >= threshold && !slot.is_deleted(row as u32) {
                top.push(Candidate {
                    score,
                    segment_ord: si as u32,
                    row: row as u32,
                });
                threshold = top.threshold();
            }
        }
    }
}

#[derive(Default)]
struct Scratch {
    rows_f32: Vec<f32>,
    norms: Vec<f32>,
    scores: Vec<f32>,
}

/// Squared Euclidean norm (SIMD).
#[inline]
pub(super) fn sq_norm(v: &[f32]) -> f32 {
    <f32 as simsimd::SpatialSimilarity>::dot(v, v).expect("same length") as f32
}

/// The block's rows as f32 (borrowed when stored as f32, else converted into `rows_f32`) and, for
/// cosine and L2, their inverse norms / squared norms in `norms`.
pub(super) fn prepare<'a>(
    rows_f32: &'a mut Vec<f32>,
    norms: &mut Vec<f32>,
    block: VectorRef<'a>,
    n: usize,
    dim: usize,
    metric: Metric,
) -> &'a [f32] {
    let x: &[f32] = match block {
        VectorRef::F32(v) => v,
        other => {
            rows_f32.resize(n * dim, 0.0);
            other.write_f32(rows_f32);
            rows_f32
        }
    };
    if metric != Metric::Ip {
        norms.clear();
        norms.extend(x.chunks_exact(dim).map(|r| {
            let sq = sq_norm(r);
            match metric {
                Metric::Cosine if sq > 0.0 => 1.0 / sq.sqrt(),
                Metric::Cosine => 0.0,
                _ => sq,
            }
        }));
    }
    x
}

/// Turns raw dot products into metric scores: cosine multiplies by the row's inverse norm (the
/// query is normalised beforehand); L2 uses `-|q - x|² = 2 q·x - |q|² - |x|²`.
#[inline]
fn adjust(metric: Metric, scores: &mut [f32], norms: &[f32], q_sq: f32) {
    match metric {
        Metric::Ip => {}
        Metric::Cosine => scores.iter_mut().zip(norms).for_each(|(x, inv)| *x *= inv),
        Metric::L2 => scores
            .iter_mut()
            .zip(norms)
            .for_each(|(x, xs)| *x = 2.0 * *x - q_sq - xs),
    }
}

/// Normalises queries for cosine; returns the queries and their squared norms.
pub(super) fn prepare_queries(metric: Metric, dim: usize, queries: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut q = queries.to_vec();
    let mut q_sq = vec![0.0f32; queries.len() / dim];
    for (i, row) in q.chunks_exact_mut(dim).enumerate() {
        let sq = sq_norm(row);
        q_sq[i] = sq;
        if metric == Metric::Cosine {
            let inv = 1.0 / sq.sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
    (q, q_sq)
}

fn merge_all(mut a: Vec<TopK>, b: Vec<TopK>) -> Vec<TopK> {
    for (x, y) in a.iter_mut().zip(b) {
        x.merge(y);
    }
    a
}

/// A batch of queries by f32 matrix products (`gemm` crate) per (row block, query block): every
/// score is computed, in f32, in the product's summation order.
pub(super) fn search_gemm(b: &DenseBatch<'_>) -> Vec<TopK> {
    let (c, metric, dim, k) = (b.collection, b.metric, b.dim, b.k);
    let nq = b.len();
    let (q, q_sq) = prepare_queries(metric, dim, b.queries);
    let empty = || (0..nq).map(|_| TopK::new(k)).collect::<Vec<_>>();
    tasks(c, ROW_BLOCK)
        .into_par_iter()
        .fold(
            || (empty(), Scratch::default()),
            |(mut tops, mut s), (si, start, end)| {
                let (slot, block) = (&c.slots()[si], b.block(si, start, end));
                let n = end - start;
                let mut scores = std::mem::take(&mut s.scores);
                let x = prepare(&mut s.rows_f32, &mut s.norms, block, n, dim, metric);
                for q0 in (0..nq).step_by(QUERY_BLOCK) {
                    let m = QUERY_BLOCK.min(nq - q0);
                    scores.resize(m * n, 0.0);
                    matmul_nt(&q[q0 * dim..(q0 + m) * dim], m, x, n, dim, &mut scores);
                    for i in 0..m {
                        let row_scores = &mut scores[i * n..(i + 1) * n];
                        if metric != Metric::Ip {
                            adjust(metric, row_scores, &s.norms, q_sq[q0 + i]);
                        }
                        scan(&mut tops[q0 + i], slot, si, start, row_scores);
                    }
                }
                s.scores = scores;
                (tops, s)
            },
        )
        .map(|(tops, _)| tops)
        .reduce(empty, merge_all)
}
