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

use super::bounds::Screen;
use super::dense::tasks;
use super::topk::TopK;
use crate::collection::{Collection, SegmentSlot};
use crate::dtype::{DType, Metric};
use crate::format::screen::ScreenView;
use crate::linalg::codes::{dot_rows, max_query_value};
use crate::linalg::similarity::{similarity, PreparedQuery};

/// Rows per parallel task (4096 × 384 codes: 1.5 MiB).
const BLOCK: usize = 4096;

/// Whether single queries on a field of `dtype` can use the codes on this CPU. simsimd's f16
/// kernels for AVX-512 FP16 accumulate in f16, whose error the bound does not cover.
fn usable(dtype: DType) -> bool {
    #[cfg(target_arch = "x86_64")]
    if dtype == DType::F16 && std::is_x86_feature_detected!("avx512fp16") {
        return false;
    }
    let _ = dtype;
    true
}

/// The query, as far as every segment is concerned.
struct Query {
    metric: Metric,
    /// The query as scored against the codes: normalised for cosine, in f64.
    v: Vec<f64>,
    /// `‖v‖`.
    norm: f64,
    /// Half-width terms independent of the codes: `a + b·‖x‖ + c·‖x‖²`.
    slop: (f64, f64, f64),
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
        let tiny = dim as f64 * 2f64.powi(-140);
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
        })
    }
}

/// The query through one segment's map: `score ≈ base + step·(u·c)`.
struct Mapped {
    u: Vec<i16>,
    base: f64,
    step: f64,
    /// `‖f‖`, the rounding of `w` to `step·u`.
    rounding: f64,
    /// Absolute margin for the f64 arithmetic of the bound.
    margin: f64,
}

impl Mapped {
    fn new(q: &Query, view: &ScreenView<'_>) -> Self {
        let dim = view.dim;
        let w: Vec<f64> = (0..dim).map(|j| q.v[j] * view.scale[j] as f64).collect();
        let base: f64 = (0..dim).map(|j| q.v[j] * view.mid[j] as f64).sum();
        let max = w.iter().fold(0f64, |m, x| m.max(x.abs()));
        let limit = max_query_value(dim) as f64;
        let step = if max > 0.0 { max / limit } else { 1.0 };
        let mut rounding = 0f64;
        let u = w
            .iter()
            .map(|&x| {
                let u = (x / step).round().clamp(-limit, limit);
                rounding += (x - step * u).powi(2);
                u as i16
            })
            .collect();
        // Largest magnitude a coded value can have under this map, for the f64 rounding margin.
        let span: f64 = (0..dim)
            .map(|j| (view.mid[j].abs() as f64 + 127.0 * view.scale[j] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        Mapped {
            u,
            base,
            step,
            rounding: rounding.sqrt() * (1.0 + 1e-12),
            margin: 2f64.powi(-40) * q.norm * span,
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
    // The map of each segment with codes (a damaged section is scanned exactly instead; verify
    // reports it).
    let mapped: Vec<Option<Mapped>> = c
        .slots()
        .iter()
        .map(|s| match s.segment.screen(field) {
            Some(Ok(view)) => Some(Mapped::new(&query, &view)),
            _ => None,
        })
        .collect();
    let screen = tasks(c, BLOCK)
        .into_par_iter()
        .fold(
            || (Screen::new(k), Vec::new()),
            |(mut screen, mut dots), (si, start, end)| {
                let slot = &c.slots()[si];
                match (&mapped[si], slot.segment.screen(field)) {
                    (Some(m), Some(Ok(view))) => scan_codes(
                        &mut screen,
                        &mut dots,
                        &query,
                        m,
                        &view,
                        slot,
                        si,
                        start,
                        end,
                    ),
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
                (screen, dots)
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
    Some(screen.finish(k, |si, row| {
        let x = c.slots()[si as usize].segment.fixed_row(field, row);
        similarity(metric, &prepared, x)
    }))
}

/// Screens rows `start..end` of one segment by its codes.
#[allow(clippy::too_many_arguments)]
fn scan_codes(
    screen: &mut Screen,
    dots: &mut Vec<i32>,
    q: &Query,
    m: &Mapped,
    view: &ScreenView<'_>,
    slot: &SegmentSlot,
    si: usize,
    start: usize,
    end: usize,
) {
    let dim = view.dim;
    dots.resize(end - start, 0);
    dot_rows(&m.u, &view.codes[start * dim..end * dim], dots);
    let (a, b, cc) = q.slop;
    let q_sq = q.norm * q.norm;
    for (i, &dot) in dots.iter().enumerate() {
        let row = start + i;
        let approx = m.base + m.step * dot as f64;
        let (cn, rn, vn) = (
            view.code_norm[row] as f64,
            view.residual_norm[row] as f64,
            view.value_norm[row] as f64,
        );
        let coding = m.rounding * cn + q.norm * rn;
        let (center, half) = match q.metric {
            Metric::Ip => (approx, coding + a + b * vn),
            Metric::Cosine => (approx, coding + a),
            Metric::L2 => (
                2.0 * approx - q_sq - vn * vn,
                2.0 * coding + a + b * vn + cc * vn * vn,
            ),
        };
        let half = half * (1.0 + 2f64.powi(-20)) + m.margin;
        // An unbounded row (residual +∞; NaN for a zero L2 query) is always a candidate.
        let upper = center + half;
        if upper < screen.floor as f64 && upper.is_finite() {
            continue;
        }
        if slot.is_deleted(row as u32) {
            continue;
        }
        let (lo, hi) = if half.is_finite() {
            outward(center - half, upper)
        } else {
            (f32::NEG_INFINITY, f32::INFINITY)
        };
        screen.offer(hi, lo, si as u32, row as u32);
    }
}
