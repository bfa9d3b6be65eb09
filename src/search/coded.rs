//! Exact single-query dense search over the stored screening codes (`format-spec/screen.md`).
//!
//! A single query is bound by memory bandwidth: every stored vector is read once. Segments with
//! screening codes are scanned as i8 codes instead (a quarter of f32's bytes): the query is
//! mapped through the segment's per-dimension affine map, rounded to i16, and multiplied with the
//! codes in exact integer arithmetic ([`crate::linalg::codes`]). Per row, the stored norm bounds
//! turn that integer into a rigorous interval around the score the streaming path computes (its
//! f32 rounding included); the rows whose interval can reach the top-k are rescored by that same
//! streaming kernel ([`super::bounds::Screen`]), so results and scores equal the streaming
//! path's bit for bit. Segments without codes are scanned exactly.
//!
//! The bound, for a coded value `v = mid + scale∘c + e` and query `q` (normalised for cosine):
//! with `w = q∘scale = t·u + f` (`u` the i16 query, `f` its rounding),
//! `q·v = q·mid + t·(u·c) + f·c + q·e`, so `|q·v − (q·mid + t·(u·c))| ≤ ‖f‖·‖c‖ + ‖q‖·‖e‖`
//! (Cauchy–Schwarz), with `‖c‖` and `‖e‖` bounded per row by the section. The difference between
//! the real score and the f32 score the streaming kernel computes (simsimd: f32 accumulation, an
//! approximate reciprocal square root with one Newton step for cosine, the query rounded to the
//! field's element type) is bounded by the `slop` terms below.

use rayon::prelude::*;

use super::bounds::{Screen, SharedFloor};
use super::dense::tasks;
use super::topk::TopK;
use crate::collection::Collection;
use crate::dtype::{DType, Metric};
use crate::format::screen::ScreenView;
use crate::linalg::codes::{dot_block, dot_rows, max_query_value, MAX_U8_QUERY};
use crate::linalg::packed_codes::{dot_block_packed, pack_panels, packing_pays};
use crate::linalg::select::rows_at_least;
use crate::linalg::similarity::{similarity, PreparedQuery};

/// Rows per parallel task (4096 × 384 codes: 1.5 MiB).
const BLOCK: usize = 4096;

/// Whether queries on a field of `dtype` can use the codes on this CPU: not where simsimd's f16
/// kernels accumulate in f16, whose error the bound does not cover.
fn usable(dtype: DType) -> bool {
    use simsimd::capabilities::{uses_sapphire, uses_sve};
    // simsimd's f16 kernels for AVX-512 FP16 (Sapphire Rapids) and Arm SVE accumulate in f16.
    dtype != DType::F16 || !(uses_sapphire() || uses_sve())
}

/// The query, as far as every segment is concerned.
struct Query {
    metric: Metric,
    /// The query as scored against the codes: normalised for cosine, in f64.
    v: Vec<f64>,
    /// `‖v‖`.
    norm: f64,
    /// Half-width terms independent of the codes: `a + b·‖x‖ + c·‖x‖²` (for L2 a bound over
    /// every row, used for block thresholds; rows use [`L2Slop`]).
    slop: (f64, f64, f64),
    /// L2 only: the terms of the per-row bound.
    l2: L2Slop,
}

/// For L2, the difference between the real score `−‖q − x‖²` and the streaming kernel's f32
/// score `−fl(‖q′ − x‖²)` is at most `dq·(2D + dq) + eps·(D + dq)²` for any `D ≥ ‖q − x‖`; each
/// row takes `D` from its own interval, far tighter than `‖q‖ + ‖x‖` near the query.
#[derive(Debug, Clone, Copy, Default)]
struct L2Slop {
    /// `‖q′ − q‖`: the query rounded to the field's element type.
    dq: f64,
    /// Relative rounding of the kernel's squared distance.
    eps: f64,
    /// Absolute underflow allowance.
    tiny: f64,
}

impl Query {
    /// `None` when the codes cannot bound this query's scores (the caller scans exactly).
    fn new(metric: Metric, q: &[f32], prepared: &PreparedQuery) -> Option<Self> {
        let dim = q.len();
        let q_sq: f64 = q.iter().map(|&x| x as f64 * x as f64).sum();
        if metric == Metric::Cosine && q_sq < crate::format::screen::MIN_COSINE_SQ_NORM {
            return None;
        }
        // The distance between the query and the query the streaming kernel multiplies with.
        let rounded: Vec<f32> = match prepared {
            PreparedQuery::F32(_) => q.to_vec(),
            PreparedQuery::F16(v) => v
                .iter()
                .map(|x| half::f16::from_bits(x.0).to_f32())
                .collect(),
            PreparedQuery::Bf16(v) => v
                .iter()
                .map(|x| half::bf16::from_bits(x.0).to_f32())
                .collect(),
        };
        let dq = q
            .iter()
            .zip(&rounded)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let q_norm = q_sq.sqrt();
        let scale = if metric == Metric::Cosine {
            1.0 / q_norm
        } else {
            1.0
        };
        let v: Vec<f64> = q.iter().map(|&x| x as f64 * scale).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        // f32 accumulation of `dim` products (each exact or rounded once), the f64 → f32 cast of
        // the result, and subnormal products: generous multiples of the textbook γ_dim. For
        // 16-bit data, simsimd's kernels may round intermediate values to the element type
        // (its AVX-512 BF16 L2 kernel subtracts in bf16, truncating): a relative error of one
        // unit of the type per difference, doubled by the square.
        let rounding = match (prepared, metric) {
            (PreparedQuery::F32(_), _) => 0.0,
            (PreparedQuery::Bf16(_), Metric::L2) => 2f64.powi(-6),
            (PreparedQuery::F16(_), Metric::L2) => 2f64.powi(-9),
            _ => 2f64.powi(-12),
        };
        let eps = (dim as f64 + 16.0) * 2f64.powi(-23) + rounding;
        // Underflow: gradual (2⁻¹⁴⁹ per operation) for f32; 16-bit kernels may flush subnormal
        // inputs and results to zero (AVX-512 BF16 `vdpbf16ps`, Arm BFDOT).
        let tiny = match prepared {
            PreparedQuery::F32(_) => dim as f64 * 2f64.powi(-140),
            _ => (dim as f64 + (q_sq.sqrt() + 1.0) * (dim as f64).sqrt()) * 2f64.powi(-120),
        };
        let slop = match metric {
            // |q'·x − q·x| ≤ ‖q' − q‖‖x‖; rounding ≤ eps·‖q'‖‖x‖.
            Metric::Ip => (tiny, dq + eps * (q_norm + dq), 0.0),
            // cos(q', x) moves by at most 2‖q' − q‖/‖q‖; rounding of the dot product and both
            // squared norms, and the reciprocal square roots after one Newton step (relative
            // error below 2⁻¹⁹ each).
            Metric::Cosine => (
                2.0 * dq / q_norm + 3.0 * eps + 2f64.powi(-16) + tiny,
                0.0,
                0.0,
            ),
            // −‖q' − x‖² vs −‖q − x‖²: at most dq·(2‖q − x‖ + dq); rounding ≤ eps·‖q' − x‖²;
            // ‖x‖² from the stored f32 norm: relative 2⁻²².
            Metric::L2 => {
                let qq = q_norm + dq;
                (
                    dq * dq + 2.0 * dq * q_norm + 2.0 * eps * qq * qq + tiny,
                    2.0 * dq + 4.0 * eps * qq,
                    2.0 * eps + 2f64.powi(-21),
                )
            }
        };
        if !(slop.0.is_finite() && slop.1.is_finite()) {
            return None;
        }
        Some(Query {
            metric,
            v,
            norm,
            slop,
            l2: L2Slop { dq, eps, tiny },
        })
    }
}

/// The query through one segment's map: `score ≈ base + step·(u·c)` for integer `u`.
#[derive(Debug, Clone, Copy, Default)]
struct Mapped {
    base: f64,
    step: f64,
    /// `‖f‖`, the rounding of `w` to `step·u`.
    rounding: f64,
    /// Absolute margin for the f64 arithmetic of the bound.
    margin: f64,
}

impl Mapped {
    /// Maps `q` through the segment's map and rounds it to integers in `-limit..=limit`, pushed
    /// onto `u` as `u + offset` (the batch kernel takes u8).
    fn new<T: TryFrom<i32>>(
        q: &Query,
        view: &ScreenView<'_>,
        limit: i32,
        offset: i32,
        u: &mut Vec<T>,
    ) -> Self {
        let dim = view.dim;
        let w: Vec<f64> = (0..dim).map(|j| q.v[j] * view.scale[j] as f64).collect();
        let base: f64 = (0..dim).map(|j| q.v[j] * view.mid[j] as f64).sum();
        let max = w.iter().fold(0f64, |m, x| m.max(x.abs()));
        let limit = limit as f64;
        let step = if max > 0.0 { max / limit } else { 1.0 };
        let mut rounding = 0f64;
        u.extend(w.iter().map(|&x| {
            let v = (x / step).round().clamp(-limit, limit);
            rounding += (x - step * v).powi(2);
            T::try_from(v as i32 + offset).unwrap_or_else(|_| unreachable!("clamped"))
        }));
        // Largest magnitude a coded value can have under this map, for the f64 rounding margin.
        let span: f64 = (0..dim)
            .map(|j| (view.mid[j].abs() as f64 + 127.0 * view.scale[j] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        Mapped {
            base,
            step,
            rounding: rounding.sqrt() * (1.0 + 1e-12),
            margin: (dim as f64 + 16.0) * 2f64.powi(-50) * q.norm * span,
        }
    }
}

/// f32 bounds enclosing `[lo, hi]`.
#[inline]
fn outward(lo: f64, hi: f64) -> (f32, f32) {
    let (l, h) = (lo as f32, hi as f32);
    let l = if (l as f64) > lo { l.next_down() } else { l };
    let h = if (h as f64) < hi { h.next_up() } else { h };
    (l, h)
}

/// One query by the codes where segments have them (see the module docs); `None` when the codes
/// cannot be used for this field or query (the caller scans exactly).
pub(super) fn search_one(
    c: &Collection,
    field: usize,
    metric: Metric,
    q: &[f32],
    k: usize,
) -> Option<TopK> {
    let dtype = c.schema().fields[field].kind.dtype();
    if !usable(dtype) || !c.slots().iter().any(|s| s.segment.screen(field).is_some()) {
        return None;
    }
    let prepared = PreparedQuery::new(q, dtype);
    let query = Query::new(metric, q, &prepared)?;
    let dim = q.len();
    // The map of each segment with codes (validated when the segment was opened).
    let mapped: Vec<Option<(Mapped, Vec<i16>, ScreenView<'_>)>> = c
        .slots()
        .iter()
        .map(|s| match s.segment.screen(field) {
            Some(Ok(view)) => {
                let mut u = Vec::with_capacity(dim);
                let m = Mapped::new(&query, &view, max_query_value(dim), 0, &mut u);
                Some((m, u, view))
            }
            _ => None,
        })
        .collect();
    let shared = SharedFloor::new();
    let screen = tasks(c, BLOCK)
        .into_par_iter()
        .fold(
            || (Screen::new(k), OneScratch::default()),
            |(mut screen, mut scratch), (si, start, end)| {
                let slot = &c.slots()[si];
                let OneScratch { dots, passing } = &mut scratch;
                match &mapped[si] {
                    Some((m, u, view)) => {
                        let codes = &view.codes[start * dim..end * dim];
                        dots.resize(end - start, 0);
                        dot_rows(u, codes, dots);
                        let published = shared.get();
                        let mut floor = screen.floor.max(published);
                        // Per sub-block, an integer threshold from its largest error terms
                        // selects the rows worth an exact bound.
                        for sub in (start..end).step_by(BATCH_ROWS) {
                            let sub_end = (sub + BATCH_ROWS).min(end);
                            let terms = BlockTerms::new(view, sub, sub_end);
                            let Some(threshold) = terms.threshold(&query, m, floor) else {
                                continue;
                            };
                            let rows = Rows {
                                dots: &dots[sub - start..sub_end - start],
                                corrections: &NO_CORRECTION,
                                first: sub,
                            };
                            offer_passing(
                                (&mut screen, &mut floor),
                                (&query, m, view, threshold),
                                (slot, si),
                                rows,
                                passing,
                            );
                        }
                        if screen.floor > published {
                            shared.publish(screen.floor);
                        }
                    }
                    _ => {
                        let matrix = slot.segment.fixed_matrix(field);
                        for row in start..end {
                            let x = matrix.slice(row * dim..(row + 1) * dim);
                            let s = similarity(metric, &prepared, x);
                            if s >= screen.floor && !slot.is_deleted(row as u32) {
                                screen.offer(s, s, si as u32, row as u32);
                            }
                        }
                    }
                }
                (screen, scratch)
            },
        )
        .map(|(screen, _)| screen)
        .reduce(
            || Screen::new(k),
            |mut a, b| {
                a.merge(b);
                a
            },
        );
    let row_of = |si: u32, row: u32| c.slots()[si as usize].segment.fixed_row(field, row);
    Some(screen.finish_prefetching(
        k,
        |si, row| super::prefetch_head(row_of(si, row)),
        |si, row| similarity(metric, &prepared, row_of(si, row)),
    ))
}

/// A single-query task's buffers: the products of its rows, and the rows of a sub-block that
/// pass its threshold.
#[derive(Default)]
struct OneScratch {
    dots: Vec<i32>,
    passing: Vec<u32>,
}

/// The corrections of a single query's products (none: its codes have no offset).
static NO_CORRECTION: [i32; BATCH_ROWS] = [0; BATCH_ROWS];

/// The f32 interval around row `row`'s score whose integer product with the mapped query is
/// `dot`, or `None` when its upper bound is below `floor`. Unbounded rows (residual +∞; NaN for a
/// zero L2 query) get an infinite interval.
#[inline]
fn bounds(
    q: &Query,
    m: &Mapped,
    view: &ScreenView<'_>,
    row: usize,
    dot: i64,
    floor: f32,
) -> Option<(f32, f32)> {
    let approx = m.base + m.step * dot as f64;
    let (cn, rn, vn) = (
        view.code_norm[row] as f64,
        view.residual_norm[row] as f64,
        view.value_norm[row] as f64,
    );
    let (a, b) = (q.slop.0, q.slop.1);
    let coding = m.rounding * cn + q.norm * rn;
    let (center, half) = match q.metric {
        Metric::Ip => (approx, coding + a + b * vn),
        Metric::Cosine => (approx, coding + a),
        Metric::L2 => {
            let center = 2.0 * approx - q.norm * q.norm - vn * vn;
            // First the bound over all rows (D ≤ ‖q‖ + ‖x‖): most rows stop here.
            let loose = 2.0 * coding + a + b * vn + q.slop.2 * vn * vn;
            if center + loose * (1.0 + 2f64.powi(-20)) + m.margin < floor as f64
                && loose.is_finite()
            {
                return None;
            }
            // The real score is within `known` of `center`, so D = √(known − center) ≥ ‖q − x‖.
            let known = 2.0 * coding + 2f64.powi(-21) * vn * vn + q.l2.tiny;
            let d = (known - center).max(0.0).sqrt() * (1.0 + 1e-12);
            let L2Slop { dq, eps, tiny } = q.l2;
            let kernel = dq * (2.0 * d + dq) + eps * (d + dq) * (d + dq) + tiny;
            // Both are valid half-widths (NaN, from an unbounded row, stays NaN).
            let tight = known + kernel;
            (center, if tight < loose { tight } else { loose })
        }
    };
    let half = half * (1.0 + 2f64.powi(-20)) + m.margin;
    let upper = center + half;
    if upper < floor as f64 && upper.is_finite() {
        return None;
    }
    Some(if half.is_finite() {
        outward(center - half, upper)
    } else {
        (f32::NEG_INFINITY, f32::INFINITY)
    })
}

/// Rows per parallel task of the batch path (256 × 384 codes: 96 KiB, in L2 while every query
/// group passes over them), and per integer threshold of the single-query path.
const BATCH_ROWS: usize = 256;
/// Queries per call of the block kernel (the products of a group and a task: 64 KiB of i32).
const QUERY_GROUP: usize = 64;
/// Magnitude of the batch path's integer queries (`u + 64` fits [`MAX_U8_QUERY`]).
const U8_LIMIT: i32 = 64;

/// Whether the batch path should read the codes: segments with codes hold at least 90 % of the
/// rows (the others are scored exactly, pair by pair).
pub(super) fn covers(c: &Collection, field: usize) -> bool {
    let (mut coded, mut all) = (0u64, 0u64);
    for s in c.slots() {
        let rows = u64::from(s.segment.rows());
        all += rows;
        if s.segment.screen(field).is_some() {
            coded += rows;
        }
    }
    coded > 0 && coded * 10 >= all * 9
}

/// A batch of queries by the codes: per block of rows and group of queries, all u8 × i8 products
/// at once ([`dot_block_packed`] over the block packed once where [`packing_pays`], else
/// [`dot_block`]), each query's integer threshold from its floor and the block's largest
/// error terms, then the exact per-row bound for the products that pass. `None` when the codes
/// cannot be used for this field; queries the codes cannot bound (no [`Query`]) are searched by
/// streaming, each alone.
pub(super) fn search_batch(b: &super::DenseBatch<'_>) -> Option<Vec<TopK>> {
    let (c, field, metric) = (b.collection, b.field, b.metric);
    let dtype = c.schema().fields[field].kind.dtype();
    if !usable(dtype) || !covers(c, field) {
        return None;
    }
    // Each query prepared and bounded once, in parallel; only a batch with queries the codes
    // cannot bound (a cosine query of near-zero norm) goes through `split` and prepares its admitted
    // queries again.
    let prepare = |b: &super::DenseBatch<'_>| {
        let prepared = super::screened::prepared(b, dtype);
        let queries: Option<Vec<Query>> = b
            .queries
            .par_chunks_exact(b.dim)
            .zip(&prepared)
            .map(|(q, p)| Query::new(metric, q, p))
            .collect();
        (prepared, queries)
    };
    if let (prepared, Some(queries)) = prepare(b) {
        return Some(search_admitted(b, prepared, queries));
    }
    Some(b.split(
        |q| Query::new(metric, q, &PreparedQuery::new(q, dtype)).is_some(),
        |inside| match prepare(inside) {
            (prepared, Some(queries)) => search_admitted(inside, prepared, queries),
            _ => unreachable!("split admits only queries with a Query"),
        },
        |q| super::dense::search_streaming(c, field, metric, q, b.k),
    ))
}

/// [`search_batch`] for queries that all have a [`Query`] (`queries`, with `prepared` for their
/// rescoring).
fn search_admitted(
    b: &super::DenseBatch<'_>,
    prepared: Vec<PreparedQuery>,
    queries: Vec<Query>,
) -> Vec<TopK> {
    let (c, field, metric, dim, k) = (b.collection, b.field, b.metric, b.dim, b.k);
    let nq = queries.len();
    // Per segment with codes: every query mapped (u8 codes, nq × dim) and its parameters.
    let mapped: Vec<Option<MappedBatch<'_>>> = c
        .slots()
        .iter()
        .map(|s| match s.segment.screen(field) {
            Some(Ok(view)) => {
                // Each query's map and u8 codes, in parallel.
                let (maps, codes): (Vec<Mapped>, Vec<Vec<u8>>) = queries
                    .par_iter()
                    .map(|q| {
                        let mut u = Vec::with_capacity(dim);
                        (Mapped::new(q, &view, U8_LIMIT, U8_LIMIT, &mut u), u)
                    })
                    .unzip();
                Some((maps, codes.concat(), view))
            }
            _ => None,
        })
        .collect();
    debug_assert!(U8_LIMIT * 2 <= MAX_U8_QUERY as i32);
    let shared: Vec<SharedFloor> = (0..nq).map(|_| SharedFloor::new()).collect();
    let empty = || vec![Screen::new(k); nq];
    // Few folds (at least `per_fold` tasks each, about 8 folds per thread): every fold starts `nq`
    // screens at a floor of −∞ and ends in a merge.
    let tasks = tasks(c, BATCH_ROWS);
    let per_fold = tasks
        .len()
        .div_ceil(8 * rayon::current_num_threads())
        .max(1);
    let screens = tasks
        .into_par_iter()
        .with_min_len(per_fold)
        .fold(
            || (empty(), Scratch::default()),
            |(mut screens, mut scratch), (si, start, end)| {
                let slot = &c.slots()[si];
                match &mapped[si] {
                    Some((maps, u, view)) => screen_block(
                        (&mut screens, &shared),
                        &mut scratch,
                        (&queries, maps, u),
                        view,
                        (slot, si, start, end),
                    ),
                    _ => {
                        let matrix = slot.segment.fixed_matrix(field);
                        for row in start..end {
                            if slot.is_deleted(row as u32) {
                                continue;
                            }
                            let x = matrix.slice(row * dim..(row + 1) * dim);
                            for (screen, p) in screens.iter_mut().zip(&prepared) {
                                let s = similarity(metric, p, x);
                                if s >= screen.floor {
                                    screen.offer(s, s, si as u32, row as u32);
                                }
                            }
                        }
                    }
                }
                (screens, scratch)
            },
        )
        .map(|(screens, _)| screens)
        .reduce(empty, super::screened::merge_screens);
    super::screened::rescore(b, prepared, screens)
}

/// Every query of a batch through one segment's map (parameters, u8 codes `nq × dim`), and the
/// segment's codes.
type MappedBatch<'a> = (Vec<Mapped>, Vec<u8>, ScreenView<'a>);

/// A batch task's buffers, reused from block to block: the products of a query group and the
/// block's rows, the rows' `64·Σc` corrections, the block's codes packed in panels (where the
/// CPU has the packed kernel), and the rows of one query that pass its threshold.
#[derive(Default)]
struct Scratch {
    dots: Vec<i32>,
    sums: Vec<i32>,
    packed: Vec<i8>,
    passing: Vec<u32>,
}

/// A block of rows' largest error terms (and smallest value norm), for one integer threshold per
/// query: a row whose product is below it has an upper bound below the query's floor.
struct BlockTerms {
    max_code_norm: f64,
    max_residual_norm: f64,
    max_value_norm: f64,
    min_value_norm: f64,
}

impl BlockTerms {
    fn new(view: &ScreenView<'_>, start: usize, end: usize) -> Self {
        // A NaN term (a damaged file; `verify` reports it) is unbounded, as in [`bounds`]:
        // `f64::max` alone would drop it.
        let max = |v: &[f32]| {
            v[start..end].iter().fold(0f64, |m, &x| {
                if x.is_nan() {
                    f64::INFINITY
                } else {
                    m.max(x as f64)
                }
            })
        };
        BlockTerms {
            max_code_norm: max(view.code_norm),
            max_residual_norm: max(view.residual_norm),
            max_value_norm: max(view.value_norm),
            min_value_norm: view.value_norm[start..end]
                .iter()
                .fold(f64::INFINITY, |m, &x| m.min(x as f64)),
        }
    }

    /// An integer product (of `q` mapped by `map`) below which no row of the block has an upper
    /// bound reaching `floor` — a lower bound on the smallest product that can, not that product
    /// itself — or `None` when no row of the block can reach it. The bound of [`bounds`] with the
    /// block's largest terms, lowered by its f64 rounding and two integers; `i32::MIN` (every row
    /// through to the exact bound) when it is below the products' range or NaN.
    fn threshold(&self, q: &Query, map: &Mapped, floor: f32) -> Option<i32> {
        let (a, b, cc) = q.slop;
        let (max_vn, floor) = (self.max_value_norm, floor as f64);
        let coding = map.rounding * self.max_code_norm + q.norm * self.max_residual_norm;
        // `need` and the magnitude of the terms it was computed from (for its f64 rounding).
        let (need, terms) = match q.metric {
            Metric::Ip | Metric::Cosine => {
                let half = coding + a + b * max_vn;
                let half = half * (1.0 + 2f64.powi(-20)) + map.margin;
                (
                    (floor - map.base - half) / map.step,
                    (floor.abs() + map.base.abs() + half) / map.step,
                )
            }
            Metric::L2 => {
                let half = 2.0 * coding + a + b * max_vn + cc * max_vn * max_vn;
                let half = half * (1.0 + 2f64.powi(-20)) + map.margin;
                let (q_sq, v_sq) = (q.norm * q.norm, self.min_value_norm * self.min_value_norm);
                (
                    (floor + q_sq + v_sq - half) / (2.0 * map.step) - map.base / map.step,
                    (floor.abs() + q_sq + v_sq + half) / (2.0 * map.step)
                        + map.base.abs() / map.step,
                )
            }
        };
        // Lowered by the f64 rounding of `need` (relative 2⁻⁵⁰ of its terms) and two more
        // integers; clamped to the i32 range the products live in.
        let need = need - terms * 2f64.powi(-50) - 2.0;
        if need > i32::MAX as f64 {
            None
        } else if need > i32::MIN as f64 {
            Some(need.floor() as i32)
        } else {
            Some(i32::MIN)
        }
    }
}

/// Integer products of consecutive rows of a segment: `dots[j] − corrections[j]` is row
/// `first + j`'s product with the mapped query.
struct Rows<'a> {
    dots: &'a [i32],
    corrections: &'a [i32],
    first: usize,
}

/// Offers to `screen` every live row of `rows` whose product reaches `threshold` (selected in one
/// vectorised pass: about 1 row in 80 on real embeddings once the floor has risen) and whose
/// exact bound reaches the floor, raising `floor` as the screen's rises. `passing` is scratch.
#[inline]
fn offer_passing(
    (screen, floor): (&mut Screen, &mut f32),
    (q, map, view, threshold): (&Query, &Mapped, &ScreenView<'_>, i32),
    (slot, si): (&crate::collection::SegmentSlot, usize),
    rows: Rows<'_>,
    passing: &mut Vec<u32>,
) {
    passing.clear();
    rows_at_least(rows.dots, rows.corrections, threshold, passing);
    for &j in passing.iter() {
        let j = j as usize;
        let dot = rows.dots[j].wrapping_sub(rows.corrections[j]) as i64;
        let row = rows.first + j;
        if let Some((lo, hi)) = bounds(q, map, view, row, dot, *floor) {
            if !slot.is_deleted(row as u32) {
                screen.offer(hi, lo, si as u32, row as u32);
                *floor = floor.max(screen.floor);
            }
        }
    }
}

/// Screens one block of rows of a segment with codes for every query.
fn screen_block(
    (screens, shared): (&mut [Screen], &[SharedFloor]),
    Scratch {
        dots,
        sums,
        packed,
        passing,
    }: &mut Scratch,
    (queries, maps, u): (&[Query], &[Mapped], &[u8]),
    view: &ScreenView<'_>,
    (slot, si, start, end): (&crate::collection::SegmentSlot, usize, usize, usize),
) {
    let (dim, n, nq) = (view.dim, end - start, queries.len());
    let codes = &view.codes[start * dim..end * dim];
    // u8 queries are `u + 64`: subtract 64·Σc per row (in i32, as every product: |u·c| ≤
    // 64·128·dim < 2³¹ for the dimensions a field may have).
    sums.clear();
    sums.extend(
        codes
            .chunks_exact(dim)
            .map(|r| U8_LIMIT * r.iter().map(|&c| c as i32).sum::<i32>()),
    );
    let terms = BlockTerms::new(view, start, end);
    // Packed once per block, read by every query group (benches/RESULTS.md, stop 37).
    let packed_kernel = packing_pays(nq);
    if packed_kernel {
        pack_panels(codes, dim, packed);
    }
    for g in (0..nq).step_by(QUERY_GROUP) {
        let m = QUERY_GROUP.min(nq - g);
        dots.resize(m * n, 0);
        let group = &u[g * dim..(g + m) * dim];
        if packed_kernel {
            dot_block_packed(group, packed, dim, n, dots);
        } else {
            dot_block(group, codes, dim, dots);
        }
        for i in 0..m {
            let (qi, q, map) = (g + i, &queries[g + i], &maps[g + i]);
            let screen = &mut screens[qi];
            let published = shared[qi].get();
            let mut floor32 = screen.floor.max(published);
            let Some(threshold) = terms.threshold(q, map, floor32) else {
                continue;
            };
            // Every product becomes `u·c` once its row's `64·Σc` is subtracted.
            let rows = Rows {
                dots: &dots[i * n..(i + 1) * n],
                corrections: sums,
                first: start,
            };
            offer_passing(
                (screen, &mut floor32),
                (q, map, view, threshold),
                (slot, si),
                rows,
                passing,
            );
            // A read-modify-write only when this task raised the floor past the published one
            // (the floors of 16 queries share a cache line that every task reads).
            if screen.floor > published {
                shared[qi].publish(screen.floor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::VectorRef;
    use crate::format::screen::ScreenCodes;
    use proptest::prelude::*;

    proptest! {
        /// A block's integer threshold never drops a row whose own bound reaches the floor, for
        /// the batch map (u8 queries with an offset) and the single-query map (i16).
        #[test]
        fn rows_below_the_threshold_have_no_bound_reaching_the_floor(
            dim in 1usize..24, n in 1usize..40, mt in 0u8..3, seed in any::<u64>(),
            scale_exp in -3i32..4, quantile in 0.0f64..1.0, single in any::<bool>(),
        ) {
            let metric = [Metric::Ip, Metric::Cosine, Metric::L2][mt as usize];
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            };
            let scale = 10f32.powi(scale_exp);
            let rows: Vec<f32> = (0..n * dim).map(|_| next() * scale).collect();
            let q: Vec<f32> = (0..dim).map(|_| next()).collect();
            let codes = ScreenCodes::build(
                metric,
                dim,
                &|r| Ok(rows[r * dim..(r + 1) * dim].to_vec()),
                n,
            )
            .unwrap();
            let view = ScreenView {
                metric,
                dim,
                mid: &codes.mid,
                scale: &codes.scale,
                code_norm: &codes.code_norm,
                residual_norm: &codes.residual_norm,
                value_norm: &codes.value_norm,
                codes: &codes.codes,
            };
            let prepared = PreparedQuery::new(&q, DType::F32);
            let Some(query) = Query::new(metric, &q, &prepared) else {
                return Ok(());
            };
            let (limit, offset) = if single {
                (max_query_value(dim), 0)
            } else {
                (U8_LIMIT, U8_LIMIT)
            };
            let mut u: Vec<i32> = Vec::new();
            let map = Mapped::new(&query, &view, limit, offset, &mut u);
            let dots: Vec<i64> = codes
                .codes
                .chunks_exact(dim)
                .map(|c| c.iter().zip(&u).map(|(&c, &u)| (u - offset) as i64 * c as i64).sum())
                .collect();
            // A floor among the exact scores (the k-th best for some k).
            let mut exact: Vec<f32> = rows
                .chunks_exact(dim)
                .map(|x| similarity(metric, &prepared, VectorRef::F32(x)))
                .collect();
            exact.sort_by(|a, b| a.total_cmp(b));
            let floor = exact[((n - 1) as f64 * quantile) as usize];
            let threshold = BlockTerms::new(&view, 0, n).threshold(&query, &map, floor);
            for (row, &dot) in dots.iter().enumerate() {
                if threshold.is_none_or(|t| dot < t as i64) {
                    prop_assert!(
                        bounds(&query, &map, &view, row, dot, floor).is_none(),
                        "row {} (product {}, threshold {:?}) has a bound reaching {}",
                        row, dot, threshold, floor
                    );
                }
            }
        }
    }
}
