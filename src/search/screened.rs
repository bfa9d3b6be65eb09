//! Exact batch search by screening: every (query, row) pair is scored approximately by the bf16
//! kernel of [`crate::linalg::tile`], which yields a rigorous interval around the exact score; only the
//! rows that can still reach a query's top-k are scored exactly, by the same f32 kernel as the
//! streaming path, so results and scores equal those of streaming search.
//!
//! Per query, the pass over the data keeps the `k` best *lower* bounds among live rows seen so far
//! (the floor: `k` rows are known to score at least this) and a list of candidates whose *upper*
//! bound reached the floor when seen. A row whose upper bound is below the floor is beaten by `k`
//! other live rows and cannot be in the top-k. After the pass, candidates are rescored in order of
//! decreasing upper bound until the next upper bound is below the exact k-th score, which in
//! practice rescores little more than `k` rows per query.

use super::bounds::Screen;
use super::{prefetch_head, DenseBatch};

use rayon::prelude::*;

use super::dense::{prepare, prepare_queries, sq_norm, tasks};
use super::topk::TopK;
use crate::dtype::{DType, Metric};
use crate::format::screen::MIN_COSINE_SQ_NORM;
use crate::linalg::gemm::matmul_nt;
use crate::linalg::similarity::{similarity, PreparedQuery};
use crate::linalg::tile::{self, Affine, MR, NR};

/// Rows per parallel task: the packed block (`SCREEN_ROWS × dim` bf16 values) stays in the core's
/// L2 cache while every query tile passes over it.
const SCREEN_ROWS: usize = 256;

/// Per-row parts of the metric and of the error bound, padded to whole panels.
///
/// For query `i` and row `r`, the kernel's upper bound is
/// `ub = dot·scale[r] + bias[r] + q_bias[i] + q_weight[i]·weight[r]` and the half-width of the
/// interval is `q_weight[i]·weight[r] + err_bias[r] + q_err_bias[i]`.
#[derive(Default)]
struct RowMaps {
    scale: Vec<f32>,
    bias: Vec<f32>,
    weight: Vec<f32>,
    err_bias: Vec<f32>,
}

impl RowMaps {
    /// Fills the maps for `n` rows. `norms` are as [`prepare`] leaves them (inverse norms for
    /// cosine, squared norms for L2, nothing for inner product, where `x` gives the norms).
    /// Padding rows get a bound far below any score. Zero rows under cosine get an unbounded
    /// interval, so that the exact kernel decides their score.
    fn fill(&mut self, metric: Metric, x: &[f32], norms: &[f32], n: usize, dim: usize, err: f32) {
        self.scale.clear();
        self.bias.clear();
        self.weight.clear();
        self.err_bias.clear();
        for r in 0..n.div_ceil(NR) * NR {
            let (scale, bias, weight, err_bias) = if r >= n {
                (0.0, -f32::MAX, 0.0, 0.0)
            } else {
                match metric {
                    Metric::Ip => (1.0, 0.0, sq_norm(&x[r * dim..(r + 1) * dim]).sqrt(), 0.0),
                    // Zero rows, and rows so short that f32 arithmetic on them underflows
                    // (simsimd's Haswell reciprocal square root then reports 1): unbounded,
                    // the exact kernel decides.
                    Metric::Cosine if norms[r] == 0.0 || norms[r] > TINY_COSINE_INV_NORM => {
                        (0.0, f32::MAX, 0.0, f32::MAX)
                    }
                    Metric::Cosine => (norms[r], 0.0, 1.0, 0.0),
                    // score = 2·q·x − |q|² − |x|², interval 2c·(|q| + |x|)²: the |x| terms.
                    Metric::L2 => {
                        let sq = norms[r];
                        (2.0, (2.0 * err - 1.0) * sq, sq.sqrt(), 2.0 * err * sq)
                    }
                }
            };
            self.scale.push(scale);
            self.bias.push(bias);
            self.weight.push(weight);
            self.err_bias.push(err_bias);
        }
    }
}

/// Per-query parts of the metric and of the error bound (see [`RowMaps`]), padded to whole
/// query tiles.
struct QueryMaps {
    bias: Vec<f32>,
    weight: Vec<f32>,
    err_bias: Vec<f32>,
}

impl QueryMaps {
    /// `abs` adds `underflow(dim, ‖q‖)` to each half-width: products of values near the bottom of
    /// f32's range round by an absolute amount (gradual underflow, 2⁻¹⁴⁹ an operation) or are
    /// flushed to zero (16-bit kernels), which no relative budget covers.
    fn new(metric: Metric, q_sq: &[f32], padded: usize, err: f32, dim: usize) -> Self {
        let mut m = QueryMaps {
            bias: Vec::with_capacity(padded),
            weight: Vec::with_capacity(padded),
            err_bias: Vec::with_capacity(padded),
        };
        for &sq in q_sq {
            let (bias, weight, err_bias) = match metric {
                Metric::Ip => (0.0, err * sq.sqrt(), 0.0),
                Metric::Cosine => (0.0, err, 0.0),
                Metric::L2 => (
                    (2.0 * err - 1.0) * sq,
                    4.0 * err * sq.sqrt(),
                    2.0 * err * sq,
                ),
            };
            let abs = underflow(dim, sq.sqrt());
            m.bias.push(bias + abs);
            m.weight.push(weight);
            m.err_bias.push(err_bias + abs);
        }
        m.bias.resize(padded, 0.0);
        m.weight.resize(padded, 0.0);
        m.err_bias.resize(padded, 0.0);
        m
    }
}

/// The error factor of the screen for a field of element type `dtype`.
fn screen_error(dim: usize, dtype: DType) -> f32 {
    tile::screen_error(dim, query_rounding(dtype))
}

/// Relative rounding of a query to the field's element type in the exact kernel.
fn query_rounding(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => 2f32.powi(-11),
        DType::Bf16 => 2f32.powi(-8),
    }
}

/// The error factor of the f32 screen (CPUs without the bf16 tile). For f32 fields,
/// [`tile::screen_error`]'s terms without the rounding of both operands to bf16: f32 matrix
/// products round only in the accumulation (`γ_d`, counted there for the screen and the exact
/// kernel). 16-bit fields keep the bf16 budget: their exact kernels round more than the terms
/// say (simsimd's bf16 L2 rounds every difference to bf16), which its `2u` covers.
fn screen_error_f32(dim: usize, dtype: DType) -> f32 {
    match dtype {
        DType::F32 => {
            let gamma = dim as f32 * 2f32.powi(-24);
            1.25 * (4.0 * gamma + 2f32.powi(-12))
        }
        DType::F16 | DType::Bf16 => screen_error(dim, dtype),
    }
}

/// Inverse norms above this leave a cosine row unbounded: squared norms below the coded path's
/// [`MIN_COSINE_SQ_NORM`] (2⁻¹⁰⁰), far above f32's smallest normal value.
const TINY_COSINE_INV_NORM: f32 = 1_125_899_906_842_624.0; // 2⁵⁰ = MIN_COSINE_SQ_NORM^(-1/2)

/// Absolute error allowance for values near the bottom of f32's range: `dim` gradual underflows
/// (2⁻¹⁴⁹ each) in both kernels, and subnormal inputs flushed to zero by 16-bit kernels (at most
/// `‖q‖·√dim·2⁻¹²⁶`); both well inside `(‖q‖ + 1)·√dim·2⁻¹²⁰`. As `coded.rs`'s `tiny`.
fn underflow(dim: usize, q_norm: f32) -> f32 {
    let d = dim as f32;
    ((q_norm + 1.0) * d.sqrt() + d) * 2f32.powi(-120)
}

/// Whether a query is outside what the screen's relative budget covers, so that it is searched
/// by streaming instead: a squared norm near f32's smallest normal value (its
/// normalisation and simsimd's reciprocal square roots lose their relative precision), or, on
/// f16 fields, a norm so small that rounding its values to f16's subnormal steps (2⁻²⁴) is
/// larger than the budget's relative `2⁻¹¹`.
fn outside_screen(q: &[f32], dtype: DType) -> bool {
    let sq: f64 = q.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let floor = match dtype {
        DType::F16 => q.len() as f64 * 2f64.powi(-26),
        DType::F32 | DType::Bf16 => MIN_COSINE_SQ_NORM,
    };
    sq > 0.0 && sq < floor
}

/// A batch of queries by screened search: bf16 products (the AVX-512 BF16 tile) where the CPU has
/// them, else f32 matrix products with the (narrower) f32 error bound. Either way the rows that
/// can reach a query's top-k are rescored by the streaming path's kernel, so results and score
/// bits are the streaming path's on every CPU. Queries outside the screen's range
/// ([`outside_screen`]) are searched by streaming, each alone.
pub(super) fn search_batch(b: &DenseBatch<'_>) -> Vec<TopK> {
    let dtype = b.collection.schema().fields[b.field].kind.dtype();
    b.split(
        |q| !outside_screen(q, dtype),
        |inside| {
            if tile::available() {
                search_screened(inside)
            } else {
                search_screened_f32(inside)
            }
        },
        |q| super::dense::search_streaming(b.collection, b.field, b.metric, q, b.k),
    )
}

/// Rows per parallel task of the f32 screen.
const F32_ROWS: usize = 512;
/// Queries per matrix product of the f32 screen.
const F32_QUERIES: usize = 256;

/// [`search_screened`] with f32 products (`linalg::gemm`) in place of the bf16 tile: the same
/// row and query maps, with [`screen_error_f32`].
fn search_screened_f32(b: &DenseBatch<'_>) -> Vec<TopK> {
    let (c, field, metric, dim, k) = (b.collection, b.field, b.metric, b.dim, b.k);
    let dtype = c.schema().fields[field].kind.dtype();
    let err = screen_error_f32(dim, dtype);
    let nq = b.len();
    let (q, q_sq) = prepare_queries(metric, dim, b.queries);
    let qm = QueryMaps::new(metric, &q_sq, nq, err, dim);
    let empty = || vec![Screen::new(k); nq];
    let screens = tasks(c, F32_ROWS)
        .into_par_iter()
        .fold(
            || (empty(), Scratch::default(), Vec::new()),
            |(mut screens, mut s, mut scores), (si, start, end)| {
                let (slot, block) = (&c.slots()[si], b.block(si, start, end));
                let n = end - start;
                let x = prepare(&mut s.rows_f32, &mut s.norms, block, n, dim, metric);
                s.maps.fill(metric, x, &s.norms, n, dim, err);
                let rm = &s.maps;
                for q0 in (0..nq).step_by(F32_QUERIES) {
                    let m = F32_QUERIES.min(nq - q0);
                    scores.resize(m * n, 0.0);
                    matmul_nt(&q[q0 * dim..(q0 + m) * dim], m, x, n, dim, &mut scores);
                    for (i, ubs) in scores.chunks_exact_mut(n).enumerate() {
                        let qi = q0 + i;
                        let (qb, qw) = (qm.bias[qi], qm.weight[qi]);
                        // Upper bounds in place (vectorised), then chunks below the floor skipped.
                        for (((ub, &sc), &bi), &w) in
                            ubs.iter_mut().zip(&rm.scale).zip(&rm.bias).zip(&rm.weight)
                        {
                            *ub = *ub * sc + bi + qb + qw * w;
                        }
                        let screen = &mut screens[qi];
                        const CHUNK: usize = 32;
                        for (ci, chunk) in ubs.chunks(CHUNK).enumerate() {
                            let max = chunk.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                            if max < screen.floor {
                                continue;
                            }
                            for (j, &ub) in chunk.iter().enumerate() {
                                let r = ci * CHUNK + j;
                                let row = (start + r) as u32;
                                if ub >= screen.floor && !slot.is_deleted(row) {
                                    let half = qw * rm.weight[r] + rm.err_bias[r] + qm.err_bias[qi];
                                    screen.offer(ub, ub - 2.0 * half, si as u32, row);
                                }
                            }
                        }
                    }
                }
                (screens, s, scores)
            },
        )
        .map(|(screens, _, _)| screens)
        .reduce(empty, merge_screens);
    rescore(b, prepared(b, dtype), screens)
}

fn search_screened(b: &DenseBatch<'_>) -> Vec<TopK> {
    let (c, field, metric, dim, k) = (b.collection, b.field, b.metric, b.dim, b.k);
    let dtype = c.schema().fields[field].kind.dtype();
    let err = screen_error(dim, dtype);
    let nq = b.len();
    let (q, q_sq) = prepare_queries(metric, dim, b.queries);
    let (d2, padded) = (tile::pairs(dim), nq.div_ceil(MR) * MR);
    let mut q_packed = Vec::new();
    tile::pack_queries(&q, nq, dim, &mut q_packed);
    q_packed.resize(padded * d2, 0);
    let qm = QueryMaps::new(metric, &q_sq, padded, err, dim);

    let empty = || vec![Screen::new(k); nq];
    let screens = tasks(c, SCREEN_ROWS)
        .into_par_iter()
        .fold(
            || (empty(), Scratch::default()),
            |(mut screens, mut s), (si, start, end)| {
                let (slot, block) = (&c.slots()[si], b.block(si, start, end));
                let n = end - start;
                let x = prepare(&mut s.rows_f32, &mut s.norms, block, n, dim, metric);
                tile::pack_panels(x, n, dim, &mut s.packed);
                s.maps.fill(metric, x, &s.norms, n, dim, err);
                let rm = &s.maps;
                for (qt, qs) in q_packed.chunks_exact(MR * d2).enumerate() {
                    let group = qt * MR..(qt + 1) * MR;
                    let live = MR.min(nq - group.start);
                    let q_bias = qm.bias[group.clone()].try_into().expect("MR values");
                    let q_weight = qm.weight[group.clone()].try_into().expect("MR values");
                    for (p, panel) in s.packed.chunks_exact(d2 * NR).enumerate() {
                        let cols = p * NR..(p + 1) * NR;
                        let map = Affine {
                            scale: rm.scale[cols.clone()].try_into().expect("NR values"),
                            bias: rm.bias[cols.clone()].try_into().expect("NR values"),
                            weight: rm.weight[cols].try_into().expect("NR values"),
                            q_bias,
                            q_weight,
                        };
                        let floors: [f32; MR] = std::array::from_fn(|i| {
                            screens
                                .get(group.start + i)
                                .map_or(f32::INFINITY, |s| s.floor)
                        });
                        let masks = tile::tile(qs, d2, panel, map, &floors, &mut s.tile);
                        let first = p * NR;
                        let valid = if n - first >= NR {
                            u32::MAX
                        } else {
                            (1 << (n - first)) - 1
                        };
                        for (i, &mask) in masks.iter().enumerate().take(live) {
                            let qi = group.start + i;
                            let screen = &mut screens[qi];
                            let mut bits = mask & valid;
                            while bits != 0 {
                                let r = bits.trailing_zeros() as usize;
                                bits &= bits - 1;
                                let ub = s.tile[i * NR + r];
                                let row = (start + first + r) as u32;
                                if ub >= screen.floor && !slot.is_deleted(row) {
                                    let col = first + r;
                                    let half = qm.weight[qi] * rm.weight[col]
                                        + rm.err_bias[col]
                                        + qm.err_bias[qi];
                                    screen.offer(ub, ub - 2.0 * half, si as u32, row);
                                }
                            }
                        }
                    }
                }
                (screens, s)
            },
        )
        .map(|(screens, _)| screens)
        .reduce(empty, merge_screens);

    rescore(b, prepared(b, dtype), screens)
}

/// Two tasks' screens of the same queries, merged query by query.
pub(super) fn merge_screens(mut a: Vec<Screen>, b: Vec<Screen>) -> Vec<Screen> {
    for (x, y) in a.iter_mut().zip(b) {
        x.merge(y);
    }
    a
}

/// The queries of `b` as the streaming path's kernel takes them (rounded to `dtype`).
pub(super) fn prepared(b: &DenseBatch<'_>, dtype: DType) -> Vec<PreparedQuery> {
    b.queries
        .par_chunks_exact(b.dim)
        .map(|q| PreparedQuery::new(q, dtype))
        .collect()
}

/// Each query's top-k from its screen: candidates rescored by the streaming path's kernel with
/// the query as [`prepared`] for it (`exact`, in query order). Shared by every screened batch
/// path (bf16 tile, f32 screen, screening codes).
pub(super) fn rescore(
    b: &DenseBatch<'_>,
    exact: Vec<PreparedQuery>,
    screens: Vec<Screen>,
) -> Vec<TopK> {
    let (c, field, metric) = (b.collection, b.field, b.metric);
    screens
        .into_par_iter()
        .zip(exact)
        .map(|(screen, q)| {
            let row_of = |si: u32, row: u32| c.slots()[si as usize].segment.fixed_row(field, row);
            screen.finish_prefetching(
                b.k,
                |si, row| prefetch_head(row_of(si, row)),
                |si, row| similarity(metric, &q, row_of(si, row)),
            )
        })
        .collect()
}

struct Scratch {
    rows_f32: Vec<f32>,
    norms: Vec<f32>,
    packed: Vec<u32>,
    tile: [f32; MR * NR],
    maps: RowMaps,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            rows_f32: Vec::new(),
            norms: Vec::new(),
            packed: Vec::new(),
            tile: [0.0; MR * NR],
            maps: RowMaps::default(),
        }
    }
}
