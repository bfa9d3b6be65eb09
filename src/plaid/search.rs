//! PLAID's candidate stages on one segment (PLAID paper §4, ColBERT `search/`): from the query
//! tokens' centroid scores `S = Q·Cᵀ`,
//!
//! 1. **candidate generation** — the rows in the inverted lists of each query token's `ncells`
//!    best centroids;
//! 2. **centroid pruning** — an approximate MaxSim `Σ_q max_{t ∈ d} S[q, code(t)]` over only the
//!    tokens whose centroid scores at least `centroid_threshold` for some query token (a query
//!    token none of a row's surviving centroids scores counts −9999, as ColBERT's
//!    `filter_pids.cpp`); the best `ndocs` rows go on;
//! 3. **centroid interaction** — the same sum over every token; the best `full_scores` (default
//!    `ndocs / 4`, at least `k`) go on to exact MaxSim (the caller's stage 4, with stored or
//!    decompressed vectors). Stage 3 is skipped when stage 2 kept no more rows than that.

use super::PlaidView;
use crate::error::{Error, Result};
use crate::format::plaid::Codes;
use crate::linalg::gemm::matmul_nt;

/// The search-time parameters of PLAID.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaidSearch {
    /// Centroids probed per query token.
    pub ncells: usize,
    /// Centroids scoring below this for every query token are left out of stage 2. Scores are
    /// inner products of a query token with a unit-norm centroid: for a cosine field (query
    /// tokens normalised) a cosine, as the paper's defaults assume; for an inner-product field
    /// the query tokens as given, so the defaults suit queries of unit-norm tokens (as ColBERT
    /// encoders produce).
    pub centroid_threshold: f32,
    /// Rows kept after stage 2.
    pub ndocs: usize,
    /// Rows per segment kept after stage 3, which stage 4 scores by full MaxSim; `None`:
    /// `ndocs / 4`, as PLAID and ColBERT do (next-plaid calls it `n_full_scores`). At least `k`;
    /// values above `ndocs` act as `ndocs` (stage 3 is then skipped). Stage 3 ranks by centroid
    /// scores only, so raising this toward `ndocs` trades stage-4 time for agreement with exact
    /// MaxSim (benches/RESULTS.md, "Where PLAID's stages lose exact MaxSim's top-10").
    pub full_scores: Option<usize>,
    /// Stage 4 scores decompressed vectors instead of the stored full-precision ones.
    pub decompress: bool,
}

impl PlaidSearch {
    /// The PLAID paper's defaults for `k` hits: `k ≤ 10`: (1, 0.5, 256); `k ≤ 100`:
    /// (2, 0.45, 1024); larger: (4, 0.4, max(4k, 4096)).
    pub fn for_k(k: usize) -> Self {
        let (ncells, centroid_threshold, ndocs) = if k <= 10 {
            (1, 0.5, 256)
        } else if k <= 100 {
            (2, 0.45, 1024)
        } else {
            (4, 0.4, k.saturating_mul(4).max(4096))
        };
        PlaidSearch {
            ncells,
            centroid_threshold,
            ndocs,
            full_scores: None,
            decompress: false,
        }
    }

    /// Rows stage 3 keeps for stage 4: `full_scores` (default `ndocs / 4`), at least `k`.
    pub fn full_scores_for(&self, k: usize) -> usize {
        self.full_scores.unwrap_or(self.ndocs / 4).max(k)
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.ncells == 0 || self.ndocs == 0 {
            return Err(Error::parameter(
                "plaid",
                format!(
                    "ncells = {} and ndocs = {}: both must be at least 1",
                    self.ncells, self.ndocs
                ),
            ));
        }
        if self.full_scores == Some(0) {
            return Err(Error::parameter(
                "plaid full_scores",
                "0: expected at least 1 (rows scored by full MaxSim)",
            ));
        }
        if self.centroid_threshold.is_nan() || self.centroid_threshold == f32::INFINITY {
            return Err(Error::parameter(
                "plaid centroid_threshold",
                format!(
                    "{}: expected a number (−∞ prunes nothing)",
                    self.centroid_threshold
                ),
            ));
        }
        Ok(())
    }
}

/// The approximate score of a query token for which a row has no surviving centroid (ColBERT's
/// `filter_pids.cpp` starts each maximum at −9999).
const MISSING_SCORE: f32 = -9999.0;

/// The best `n` of `(score, row)` pairs, higher score first — and every pair tied with the
/// `n`-th, so that the final top-k (which breaks ties by document id, not row) sees all of them.
fn best(mut scored: Vec<(f32, u32)>, n: usize) -> Vec<(f32, u32)> {
    let cmp = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if n == 0 {
        return Vec::new();
    }
    if scored.len() > n {
        scored.select_nth_unstable_by(n - 1, cmp);
        let cut = scored[n - 1].0;
        let (head, tail) = scored.split_at_mut(n);
        let mut keep = head.to_vec();
        keep.extend(tail.iter().filter(|x| x.0.total_cmp(&cut).is_eq()));
        scored = keep;
    }
    scored.sort_unstable_by(cmp);
    scored
}

/// Stages 1–3 for one query (`nq × dim` tokens, as the field scores them) on one segment's
/// section (of the file `path`, for errors): the rows that go on to exact MaxSim.
/// `tokens_of(row)` gives a row's token range; `live(row)` says whether it is not deleted. A
/// code naming no centroid, or a row whose tokens lie outside the codes, is [`Error::Corrupt`].
#[allow(clippy::too_many_arguments)]
pub fn candidates(
    view: &PlaidView<'_>,
    path: &std::path::Path,
    query: &[f32],
    p: &PlaidSearch,
    k: usize,
    tokens_of: &dyn Fn(u32) -> Result<std::ops::Range<usize>>,
    live: &dyn Fn(u32) -> bool,
) -> Result<Vec<u32>> {
    let dim = view.dim;
    let nq = query.len() / dim;
    let kc = view.k();
    // St[c][q] = centroid c · query token q.
    let mut st = vec![0f32; kc * nq];
    matmul_nt(&view.centroids, kc, query, nq, dim, &mut st);

    // Stage 1: the inverted lists of each query token's ncells best centroids.
    let ncells = p.ncells.min(kc);
    let mut cells = Vec::with_capacity(nq * ncells);
    for q in 0..nq {
        let col: Vec<(f32, u32)> = (0..kc).map(|c| (st[c * nq + q], c as u32)).collect();
        cells.extend(best(col, ncells).into_iter().map(|(_, c)| c));
    }
    cells.sort_unstable();
    cells.dedup();
    let mut rows: Vec<u32> = cells
        .iter()
        .flat_map(|&c| view.list(c as usize).iter().copied())
        .collect();
    rows.sort_unstable();
    rows.dedup();
    if let Some(&r) = rows.last().filter(|&&r| u64::from(r) >= view.rows) {
        return Err(Error::corrupt(
            path,
            "plaid index",
            view.base,
            format!(
                "an inverted list names row {r} of a segment of {} rows",
                view.rows
            ),
        ));
    }
    rows.retain(|&r| live(r));

    // Stages 2 and 3: centroid interaction, with and without pruning.
    let alive: Vec<bool> = (0..kc)
        .map(|c| {
            st[c * nq..(c + 1) * nq]
                .iter()
                .any(|&s| s >= p.centroid_threshold)
        })
        .collect();
    let mut maxes = vec![f32::NEG_INFINITY; nq];
    let mut interaction = |row: u32, pruned: bool| -> Result<f32> {
        let range = tokens_of(row)?;
        let codes = view.codes.slice(range.clone()).ok_or_else(|| {
            Error::corrupt(
                path,
                "plaid index",
                view.base,
                format!("row {row}'s tokens {range:?} lie outside the index's codes"),
            )
        })?;
        maxes.fill(f32::NEG_INFINITY);
        let bad = match codes {
            Codes::U16(c) => fold_maxes(c, &st, nq, &alive, pruned, &mut maxes),
            Codes::U32(c) => fold_maxes(c, &st, nq, &alive, pruned, &mut maxes),
        };
        if let Some(c) = bad {
            return Err(Error::corrupt(
                path,
                "plaid index",
                view.base,
                format!("a token of row {row} names centroid {c} of {kc}"),
            ));
        }
        // As ColBERT's `filter_pids.cpp`: a query token no surviving centroid of the row scores
        // counts −9999 (a row without any ranks below every row with one).
        Ok(maxes
            .iter()
            .map(|&m| if m.is_finite() { m } else { MISSING_SCORE })
            .sum())
    };
    let mut scored = Vec::with_capacity(rows.len());
    for &r in &rows {
        scored.push((interaction(r, true)?, r));
    }
    let stage2 = best(scored, p.ndocs.max(k));
    let keep = p.full_scores_for(k);
    if stage2.len() <= keep {
        return Ok(stage2.into_iter().map(|(_, r)| r).collect());
    }
    let mut scored = Vec::with_capacity(stage2.len());
    for &(_, r) in &stage2 {
        scored.push((interaction(r, false)?, r));
    }
    Ok(best(scored, keep).into_iter().map(|(_, r)| r).collect())
}

/// Folds the centroid scores of `codes` (one document's tokens) into the per-query-token maxima
/// (`st[c·nq..][..nq]`: centroid `c`'s scores), skipping centroids not `alive` when `pruned`.
/// Returns the first code naming no centroid, if any.
fn fold_maxes<C: Copy + Into<u32>>(
    codes: &[C],
    st: &[f32],
    nq: usize,
    alive: &[bool],
    pruned: bool,
    maxes: &mut [f32],
) -> Option<u32> {
    for &c in codes {
        let c: u32 = c.into();
        match alive.get(c as usize) {
            None => return Some(c),
            Some(false) if pruned => continue,
            Some(_) => {}
        }
        for (m, s) in maxes
            .iter_mut()
            .zip(&st[c as usize * nq..(c as usize + 1) * nq])
        {
            *m = m.max(*s);
        }
    }
    None
}
