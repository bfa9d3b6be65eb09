//! Merging per-shard results exactly as vellum's shard merge does (for `vellum.ray`).

use pyo3::prelude::*;
use vellum::{DocAddress, Hit};

use crate::arrays::f32_array;
use crate::errors::IntoPy;

/// One shard's answer: ids per query (ragged, `None` past the last hit) and their scores.
type ShardResult = (Vec<Vec<Option<String>>>, Vec<Vec<f32>>);

/// The merged answer: ids per query and scores `[n, k]`.
type Merged<'py> = (Vec<Vec<String>>, Bound<'py, numpy::PyArrayDyn<f32>>);

/// Merges per-shard `(ids, scores)` results of the same queries into the best `k` per query:
/// score descending, equal scores by id descending (`vellum::search::rank_order`), so `n`
/// shards give what one database holding them all gives. An id in two shards is an error.
/// Returns `(ids as ragged lists, scores [n, k] padded with -inf)`.
#[pyfunction]
#[pyo3(signature = (results, k, names))]
pub fn merge_shard_results<'py>(
    py: Python<'py>,
    results: Vec<ShardResult>,
    k: usize,
    names: Vec<String>,
) -> PyResult<Merged<'py>> {
    if names.len() != results.len() {
        return Err(crate::errors::invalid(format!(
            "{} shard results but {} shard names",
            results.len(),
            names.len()
        )));
    }
    let none = DocAddress {
        segment_ord: 0,
        row: 0,
    };
    let per_shard: Vec<Vec<Vec<Hit>>> = results
        .into_iter()
        .map(|(ids, scores)| {
            ids.into_iter()
                .zip(scores)
                .map(|(row, srow)| {
                    row.into_iter()
                        .zip(srow)
                        .filter_map(|(id, score)| {
                            id.map(|id| Hit {
                                id,
                                score,
                                address: none,
                            })
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let merged = vellum::search::merge_shard_hits(per_shard, k, &names).py()?;
    let mut scores = vec![f32::NEG_INFINITY; merged.len() * k];
    for (q, row) in merged.iter().enumerate() {
        for (j, h) in row.iter().enumerate() {
            scores[q * k + j] = h.score;
        }
    }
    let n = merged.len();
    let ids = merged
        .into_iter()
        .map(|row| row.into_iter().map(|h| h.id).collect())
        .collect();
    Ok((ids, f32_array(py, scores, &[n, k])?))
}
