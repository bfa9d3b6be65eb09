//! Exact dense search.

use rayon::prelude::*;

use super::gemm::matmul_nt;
use super::kernels::{similarity, PreparedQuery};
use super::topk::{Candidate, TopK};
use crate::collection::{Collection, SegmentSlot};
use crate::dtype::{Metric, VectorRef};

/// Rows per parallel task of the streaming path.
const STREAM_BLOCK: usize = 8192;
/// Rows per parallel task of the blocked path (one block of data is converted/read once and
/// multiplied with every query block).
const ROW_BLOCK: usize = 512;
/// Queries per matrix product.
const QUERY_BLOCK: usize = 512;

fn tasks(c: &Collection, block: usize) -> Vec<(usize, usize, usize)> {
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
fn offer(top: &mut TopK, slot: &SegmentSlot, si: usize, row: usize, score: f32) {
    if score >= top.threshold() && !slot.is_deleted(row as u32) {
        top.push(Candidate {
            score,
            segment: si as u32,
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
                for row in start..end {
                    let x = matrix.slice(row * dim..(row + 1) * dim);
                    offer(&mut top, slot, si, row, similarity(metric, &prepared, x));
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
                    segment: si as u32,
                    row: row as u32,
                });
                threshold = top.threshold();
            }
        }
    }
}

struct Scratch {
    rows_f32: Vec<f32>,
    norms: Vec<f32>,
    scores: Vec<f32>,
}

/// A batch of queries: per row block, `scores = Q · Xᵀ` by a blocked matrix product, then a per-query
/// top-k pass over the block's scores.
pub(super) fn search_blocked(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[f32],
    k: usize,
) -> Vec<TopK> {
    let nq = queries.len() / dim;
    // Cosine: normalise the queries once; divide by the stored vector's norm per block.
    // L2: -|q - x|² = 2 q·x - |q|² - |x|².
    let mut q = queries.to_vec();
    let mut q_sq = vec![0.0f32; nq];
    for (i, row) in q.chunks_exact_mut(dim).enumerate() {
        let sq: f32 = row.iter().map(|v| v * v).sum();
        q_sq[i] = sq;
        if metric == Metric::Cosine {
            let inv = 1.0 / sq.sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
    let empty = || (0..nq).map(|_| TopK::new(k)).collect::<Vec<_>>();
    tasks(c, ROW_BLOCK)
        .into_par_iter()
        .fold(
            || {
                (
                    empty(),
                    Scratch {
                        rows_f32: Vec::new(),
                        norms: Vec::new(),
                        scores: Vec::new(),
                    },
                )
            },
            |(mut tops, mut s), (si, start, end)| {
                let slot = &c.slots()[si];
                let n = end - start;
                let block = slot
                    .segment
                    .fixed_matrix(field)
                    .slice(start * dim..end * dim);
                let x: &[f32] = match block {
                    VectorRef::F32(v) => v,
                    other => {
                        s.rows_f32.resize(n * dim, 0.0);
                        other.write_f32(&mut s.rows_f32);
                        &s.rows_f32
                    }
                };
                if metric != Metric::Ip {
                    s.norms.clear();
                    s.norms.extend(x.chunks_exact(dim).map(|r| {
                        let sq: f32 = r.iter().map(|v| v * v).sum();
                        match metric {
                            Metric::Cosine if sq > 0.0 => 1.0 / sq.sqrt(),
                            Metric::Cosine => 0.0,
                            _ => sq,
                        }
                    }));
                }
                for q0 in (0..nq).step_by(QUERY_BLOCK) {
                    let m = QUERY_BLOCK.min(nq - q0);
                    s.scores.resize(m * n, 0.0);
                    matmul_nt(&q[q0 * dim..(q0 + m) * dim], m, x, n, dim, &mut s.scores);
                    for i in 0..m {
                        let row_scores = &mut s.scores[i * n..(i + 1) * n];
                        match metric {
                            Metric::Ip => {}
                            Metric::Cosine => row_scores
                                .iter_mut()
                                .zip(&s.norms)
                                .for_each(|(x, inv)| *x *= inv),
                            Metric::L2 => {
                                let qs = q_sq[q0 + i];
                                row_scores
                                    .iter_mut()
                                    .zip(&s.norms)
                                    .for_each(|(x, xs)| *x = 2.0 * *x - qs - xs);
                            }
                        }
                        scan(&mut tops[q0 + i], slot, si, start, row_scores);
                    }
                }
                (tops, s)
            },
        )
        .map(|(tops, _)| tops)
        .reduce(empty, |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
            a
        })
}
