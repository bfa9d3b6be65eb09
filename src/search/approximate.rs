//! Dense search through HNSW graphs: per query, every segment with a graph for the field is
//! searched through it, every other segment (below the index's `min_rows`, or written before the
//! index was declared) exactly; the per-segment results are merged into one top-k. Queries run in
//! parallel.

use rayon::prelude::*;

use super::kernels::{prefetch, similarity, PreparedQuery};
use super::topk::{Candidate, TopK};
use crate::collection::Collection;
use crate::dtype::Metric;
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
            let mut top = TopK::new(k);
            for (si, slot) in c.slots().iter().enumerate() {
                let matrix = slot.segment.fixed_matrix(field);
                let score = |row: u32| {
                    let r = row as usize;
                    similarity(metric, &prepared, matrix.slice(r * dim..(r + 1) * dim))
                };
                match slot.segment.graph(field) {
                    Some(graph) => {
                        let prefetch = |row: u32| {
                            let r = row as usize;
                            prefetch(matrix.slice(r * dim..(r + 1) * dim).as_bytes())
                        };
                        let hits = search_graph_prefetching(
                            &graph?,
                            k,
                            ef,
                            score,
                            |r| !slot.is_deleted(r),
                            prefetch,
                        )?;
                        for (score, row) in hits {
                            top.push(Candidate {
                                score,
                                segment: si as u32,
                                row,
                            });
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
