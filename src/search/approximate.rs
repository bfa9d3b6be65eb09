//! Dense search through HNSW graphs: per query, every segment with a graph for the field is
//! searched through it, every other segment (below the index's `min_rows`, or written before the
//! index was declared) exactly; the per-segment results are merged into one top-k. Queries run in
//! parallel.

use rayon::prelude::*;

use super::kernels::{prefetch, similarity, PreparedQuery};
use super::topk::{Candidate, TopK};
use crate::collection::Collection;
use crate::dtype::{DType, Metric, VectorRef};
use crate::error::Result;
use crate::hnsw::search_graph_prefetching;

/// Approximate top-`k` for each of the `queries` (row-major, `dim` wide) with candidate list `ef`.
pub(super) fn search_hnsw(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[f32],
    k: usize,
    ef: usize,
) -> Result<Vec<TopK>> {
    let dtype = c.schema().fields[field].kind.dtype();
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            let prepared = PreparedQuery::new(q, dtype);
            let nav_query = (dtype == DType::F32).then(|| PreparedQuery::new(q, DType::Bf16));
            let mut top = TopK::new(k);
            for (si, slot) in c.slots().iter().enumerate() {
                let matrix = slot.segment.fixed_matrix(field);
                let score = |row: u32| {
                    let r = row as usize;
                    similarity(metric, &prepared, matrix.slice(r * dim..(r + 1) * dim))
                };
                match slot.segment.graph(field) {
                    Some(graph) => {
                        let graph = graph?;
                        let live = |r: u32| !slot.is_deleted(r);
                        let hits = match (graph.nav(), &nav_query) {
                            // Traverse with the compact copy, keep `ef` candidates, rescore exactly.
                            (Some((nav, nd)), Some(nq)) if nd == dim => {
                                let row_of = |row: u32| {
                                    let r = row as usize;
                                    VectorRef::Bf16(&nav[r * dim..(r + 1) * dim])
                                };
                                let approx = search_graph_prefetching(
                                    &graph,
                                    ef,
                                    ef,
                                    |row| similarity(metric, nq, row_of(row)),
                                    live,
                                    |row| prefetch(row_of(row).as_bytes()),
                                )?;
                                // The exact vectors of the candidates are cold: ask for all of
                                // them before scoring any (memory-level parallelism).
                                for &(_, row) in &approx {
                                    let r = row as usize;
                                    prefetch(matrix.slice(r * dim..(r + 1) * dim).as_bytes());
                                }
                                approx
                                    .into_iter()
                                    .map(|(_, row)| (score(row), row))
                                    .collect()
                            }
                            _ => search_graph_prefetching(&graph, k, ef, score, live, |row| {
                                let r = row as usize;
                                prefetch(matrix.slice(r * dim..(r + 1) * dim).as_bytes())
                            })?,
                        };
                        for (score, row) in hits {
                            if score >= top.threshold() {
                                top.push(Candidate {
                                    score,
                                    segment: si as u32,
                                    row,
                                });
                            }
                        }
                    }
                    None => {
                        for row in 0..slot.segment.rows() {
                            if !slot.is_deleted(row) {
                                let s = score(row);
                                if s >= top.threshold() {
                                    top.push(Candidate {
                                        score: s,
                                        segment: si as u32,
                                        row,
                                    });
                                }
                            }
                        }
                    }
                }
            }
            Ok(top)
        })
        .collect()
}
