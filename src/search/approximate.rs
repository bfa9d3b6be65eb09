//! Dense search through HNSW graphs: per query, every segment with a graph for the field is
//! searched through it, every other segment (below the index's `min_rows`, or written before the
//! index was declared) exactly; the per-segment results are merged into one top-k. Queries run in
//! parallel.

use super::DenseBatch;
use rayon::prelude::*;

use super::dense::offer;
use super::topk::TopK;
use crate::dtype::{DType, Metric, VectorRef};
use crate::error::Result;
use crate::hnsw::search_graph_prefetching;
use crate::hnsw::NavView;
use crate::linalg::nav::Kernel;
use crate::linalg::similarity::{prefetch, similarity, PreparedQuery};

use super::prefetch_head;

/// Approximate top-`k` for each of the `queries` (row-major, `dim` wide) with candidate list `ef`.
pub(super) fn search_hnsw(b: &DenseBatch<'_>, ef: usize) -> Result<Vec<TopK>> {
    let (c, field, metric, dim, k) = (b.collection, b.field, b.metric, b.dim, b.k);
    let dtype = c.schema().fields[field].kind.dtype();
    b.queries
        .par_chunks_exact(dim)
        .map(|q| {
            let prepared = PreparedQuery::new(q, dtype);
            let mut top = TopK::new(k);
            for (si, slot) in c.slots().iter().enumerate() {
                let matrix = slot.segment.fixed_matrix(field);
                let row_of = |row: u32| {
                    let r = row as usize;
                    matrix.slice(r * dim..(r + 1) * dim)
                };
                let score = |row: u32| similarity(metric, &prepared, row_of(row));
                let graph = slot.segment.graph(field).transpose()?;
                // A filtered search: a segment with no matching row is skipped; one with few
                // scores them exactly (`filtered_exact_rule`).
                let live = slot.live_rows();
                if c.is_filtered() && live == 0 {
                    continue;
                }
                let graph = graph.filter(|g| {
                    !c.is_filtered()
                        || !super::filtered_exact_rule(
                            live,
                            slot.segment.rows() as u64,
                            ef,
                            g.m0 as usize,
                        )
                });
                match graph {
                    Some(graph) => {
                        let live = |r: u32| !slot.is_deleted(r);
                        let hits = match graph.nav() {
                            // Traverse with the compact copy, keep `ef` candidates, rescore exactly.
                            Some((nav, nd)) if nd == dim => {
                                let nav_score = NavScorer::new(nav, metric, q, dim);
                                let approx = search_graph_prefetching(
                                    &graph,
                                    ef,
                                    ef,
                                    |row| nav_score.score(row),
                                    live,
                                    |row| prefetch(nav_score.row_bytes(row)),
                                )?;
                                // The exact vectors of the candidates are cold: ask for the
                                // head of each before scoring any, so that their page walks and
                                // first misses overlap; the hardware's stream prefetcher follows
                                // each row once its scoring starts. Asking for every line
                                // stalled on the core's miss buffers instead (588 lines at ef 12
                                // on 784-d f32; heads: +4 % to +16 % q/s there, level on 384-d;
                                // benches/RESULTS.md, stop 37).
                                for &(_, row) in &approx {
                                    prefetch_head(row_of(row));
                                }
                                approx
                                    .into_iter()
                                    .map(|(_, row)| (score(row), row))
                                    .collect()
                            }
                            // All `ef` candidates (not just `k`): ties at the cut-off are
                            // decided by document id, not by the graph's row order.
                            _ => search_graph_prefetching(&graph, ef, ef, score, live, |row| {
                                prefetch(row_of(row).as_bytes())
                            })?,
                        };
                        for (score, row) in hits {
                            offer(&mut top, slot, si, row as usize, score);
                        }
                    }
                    None => {
                        for row in slot.live_rows_in(0, slot.segment.rows()) {
                            offer(&mut top, slot, si, row as usize, score(row));
                        }
                    }
                }
            }
            Ok(top)
        })
        .collect()
}

/// Scores of a query against a graph's navigation vectors (higher is better; only their order
/// matters, the candidates are rescored exactly).
enum NavScorer<'a> {
    Bf16 {
        nav: &'a [half::bf16],
        query: PreparedQuery,
        metric: Metric,
        dim: usize,
    },
    /// 8-bit codes: L2 compares codes with the query mapped through the same affine map; inner
    /// product and cosine rank by `q·code` (the `mid` term is constant per query) with the query
    /// (normalised for cosine) scaled to the i8 range.
    I8 {
        codes: &'a [i8],
        query: Vec<i8>,
        l2: bool,
        dim: usize,
        kernel: Kernel,
    },
}

impl<'a> NavScorer<'a> {
    fn new(nav: NavView<'a>, metric: Metric, q: &[f32], dim: usize) -> Self {
        match nav {
            NavView::Bf16(nav) => NavScorer::Bf16 {
                nav,
                query: PreparedQuery::new(q, DType::Bf16),
                metric,
                dim,
            },
            NavView::I8 { codes, mid, scale } => {
                // Round to nearest (ties to even) by the 1.5·2²³ trick: `f32::round` is a libm
                // call per value on baseline x86-64 (1.4 % of a query at ef 10, 784-d). The
                // stored codes round ties away from zero (`f32::round` in `hnsw/build.rs`): a
                // value exactly on a half step may code one apart, which only steers the
                // traversal (candidates are rescored exactly).
                const MAGIC: f32 = 12_582_912.0;
                let quantise =
                    |v: f32, s: f32| (((v / s).clamp(-127.0, 127.0) + MAGIC) - MAGIC) as i8;
                let query = match metric {
                    Metric::L2 => q.iter().map(|v| quantise(v - mid, scale)).collect(),
                    _ => {
                        let norm = if metric == Metric::Cosine {
                            q.iter().map(|v| v * v).sum::<f32>().sqrt()
                        } else {
                            1.0
                        };
                        let max = q.iter().fold(0.0f32, |m, v| m.max(v.abs()))
                            / norm.max(f32::MIN_POSITIVE);
                        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
                        q.iter()
                            .map(|v| quantise(v / norm.max(f32::MIN_POSITIVE), s))
                            .collect()
                    }
                };
                NavScorer::I8 {
                    codes,
                    query,
                    l2: metric == Metric::L2,
                    dim,
                    kernel: Kernel::detect(),
                }
            }
        }
    }

    #[inline]
    fn score(&self, row: u32) -> f32 {
        let r = row as usize;
        match self {
            NavScorer::Bf16 {
                nav,
                query,
                metric,
                dim,
            } => similarity(
                *metric,
                query,
                VectorRef::Bf16(&nav[r * dim..(r + 1) * dim]),
            ),
            NavScorer::I8 {
                codes,
                query,
                l2,
                dim,
                kernel,
            } => {
                let x = &codes[r * dim..(r + 1) * dim];
                if *l2 {
                    -(kernel.l2sq(query, x) as f32)
                } else {
                    kernel.dot(query, x) as f32
                }
            }
        }
    }

    fn row_bytes(&self, row: u32) -> &[u8] {
        let r = row as usize;
        match self {
            NavScorer::Bf16 { nav, dim, .. } => bytemuck::cast_slice(&nav[r * dim..(r + 1) * dim]),
            NavScorer::I8 { codes, dim, .. } => {
                bytemuck::cast_slice(&codes[r * dim..(r + 1) * dim])
            }
        }
    }
}
