//! Late-interaction search through PLAID sections: per query and segment, the PLAID stages
//! ([`crate::plaid::search::candidates`]) choose the rows to score, then stage 4 scores them by
//! exact MaxSim over the stored token vectors (or, with `decompress`, over the vectors the
//! residual codec restores). Segments without a section (fewer rows than the index's
//! `min_rows`) are scored exactly. Deleted rows are filtered in every stage.

use rayon::prelude::*;

use super::topk::{Candidate, TopK};
use crate::collection::Collection;
use crate::dtype::Metric;
use crate::error::{Error, Result};
use crate::plaid::codec::lookup_table;
use crate::plaid::PlaidSearch;

/// Top `k` rows of each query (`queries[i]`: `tokens × dim`).
pub(super) fn search(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    queries: &[&[f32]],
    k: usize,
    p: &PlaidSearch,
) -> Result<Vec<TopK>> {
    queries
        .par_iter()
        .enumerate()
        .map(|(qi, q)| one(c, field, metric, dim, qi, q, k, p))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn one(
    c: &Collection,
    field: usize,
    metric: Metric,
    dim: usize,
    qi: usize,
    query: &[f32],
    k: usize,
    p: &PlaidSearch,
) -> Result<TopK> {
    // Prepared as exact search prepares them, and scored in stage 4 with its per-document
    // MaxSim (`multi::maxsim_one`: a matrix product, then the running maxima), so that a row
    // gets the same score here as from exact search or re-ranking.
    let mut q = query.to_vec();
    let q_sq = super::multi::prepare_tokens(metric, dim, &mut q);
    let mut top = TopK::new(k);
    let mut doc = Vec::new();
    let mut scratch = Vec::new();
    for (si, slot) in c.slots().iter().enumerate() {
        let seg = &slot.segment;
        let view = seg.plaid(field).transpose()?;
        let live = slot.live_rows();
        if live == 0 {
            continue;
        }
        let all_live = || slot.live_rows_in(0, seg.rows()).collect::<Vec<u32>>();
        let rows: Vec<u32> = match &view {
            // A filter leaving no more rows than stage 2 keeps: score them all.
            Some(_) if c.is_filtered() && live <= p.ndocs as u64 => all_live(),
            Some(v) => {
                let want = (k as u64).min(live);
                let mut p = *p;
                let mut rows = Vec::new();
                // The probed cells may hold fewer than k live rows (a filter correlated with the
                // query's topic, many deletes): probe 4× more cells, twice, before scoring every
                // live row; every search returns min(k, live rows) hits.
                for attempt in 0..3 {
                    rows = crate::plaid::search::candidates(
                        v,
                        seg.path(),
                        &q,
                        &p,
                        k,
                        &|r| seg.multi_range(field, r),
                        &|r| !slot.is_deleted(r),
                    )?;
                    if rows.len() as u64 >= want || p.ncells >= v.k() || attempt == 2 {
                        break;
                    }
                    p.ncells = (p.ncells * 4).min(v.k());
                    p.centroid_threshold = f32::NEG_INFINITY;
                }
                if (rows.len() as u64) < want {
                    all_live()
                } else {
                    rows
                }
            }
            None => all_live(),
        };
        // A codes-only segment is always scored on its decompressed tokens: decoded here with
        // the view and table of this query, not reopened per row.
        let table = match &view {
            Some(v) if p.decompress || !seg.stores_tokens(field) => {
                Some(lookup_table(v.weights, v.nbits))
            }
            _ => None,
        };
        for row in rows {
            let score = match (&view, &table) {
                (Some(v), Some(table)) => {
                    let range = seg.multi_range(field, row)?;
                    doc.clear();
                    v.decompress_tokens(
                        table,
                        range,
                        metric == Metric::Cosine,
                        &mut doc,
                        (seg.path(), v.base),
                    )?;
                    super::multi::maxsim_one(metric, dim, &q, &q_sq, &doc, &mut scratch)
                }
                _ => super::multi::maxsim_row(
                    seg,
                    field,
                    row,
                    metric,
                    dim,
                    (&q, &q_sq),
                    &mut doc,
                    &mut scratch,
                )?,
            };
            if !score.is_finite() {
                return Err(Error::InvalidQuery(format!(
                    "query {qi}: its MaxSim score against row {row} of {} is {score} (scale the vectors down)",
                    seg.path().display()
                )));
            }
            if score >= top.threshold() {
                top.push(Candidate {
                    score,
                    segment_ord: si as u32,
                    row,
                });
            }
        }
    }
    Ok(top)
}
