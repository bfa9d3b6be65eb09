//! Screening kernel for batch search: bf16 dot products with a rigorous error bound, AVX-512 BF16
//! on x86-64, with a scalar twin.
//!
//! Exact batch search spends almost all of its time in `Q · Xᵀ`. This kernel computes that product
//! from bf16-rounded operands with `vdpbf16ps` (two products per f32 lane and instruction, so twice
//! the arithmetic rate of f32 FMA) and turns each approximate score into an **upper bound** of the
//! exact f32 score (see [`screen_error`]). The caller rescores exactly only the rows whose bound
//! reaches a query's current top-k threshold, so results are those of f32 exact search.
//!
//! Layout: the data block is packed into panels of [`NR`] rows; element pairs `(x[r][2s],
//! x[r][2s+1])` become one 32-bit word, panels are transposed by pair (`panel[s][r]`), so a tile of
//! [`MR`] queries × [`NR`] rows is `⌈d/2⌉` steps of two vector loads, [`MR`] broadcasts of a query
//! pair and `2·MR` `vdpbf16ps` into 16 accumulators that stay in registers. The per-row and
//! per-query parts of the metric and of the bound are applied in registers as
//! `ub = dot·scale[r] + bias[r] + q_bias[i] + q_weight[i]·weight[r]`, and the kernel returns, per
//! query, the bit mask of rows whose bound reaches the query's current floor, so that the caller
//! looks at no row that cannot matter.

pub use crate::dtype::{from_bf16_bits, to_bf16_bits};

/// Queries per tile.
pub const MR: usize = 8;
/// Rows per tile (two 16-lane vectors).
pub const NR: usize = 32;

/// Number of element pairs of a `d`-dimensional vector.
#[inline]
pub fn pairs(d: usize) -> usize {
    d.div_ceil(2)
}

#[inline]
fn pair(row: &[f32], s: usize) -> u32 {
    let lo = to_bf16_bits(row[2 * s]);
    let hi = row.get(2 * s + 1).map_or(0, |&v| to_bf16_bits(v));
    u32::from(lo) | (u32::from(hi) << 16)
}

/// Packs the row-major `n × d` matrix `x` into `⌈n / NR⌉` panels of `pairs(d) × NR` bf16 pairs
/// (`out[(p·pairs(d) + s)·NR + r]` holds elements `2s` and `2s+1` of row `p·NR + r`), zero-padding
/// the last panel and an odd last element.
pub fn pack_panels(x: &[f32], n: usize, d: usize, out: &mut Vec<u32>) {
    let d2 = pairs(d);
    out.clear();
    out.resize(n.div_ceil(NR) * d2 * NR, 0);
    let mut halves = vec![0u16; 2 * d2];
    for (p, rows) in x[..n * d].chunks(NR * d).enumerate() {
        let panel = &mut out[p * d2 * NR..(p + 1) * d2 * NR];
        for (r, row) in rows.chunks_exact(d).enumerate() {
            for (h, &v) in halves.iter_mut().zip(row) {
                *h = to_bf16_bits(v);
            }
            for (s, two) in halves.chunks_exact(2).enumerate() {
                panel[s * NR + r] = u32::from(two[0]) | (u32::from(two[1]) << 16);
            }
        }
    }
}

/// Packs `m` row-major queries of dimension `d` as bf16 pairs, `pairs(d)` words per query.
pub fn pack_queries(q: &[f32], m: usize, d: usize, out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        q[..m * d]
            .chunks_exact(d)
            .flat_map(|row| (0..pairs(d)).map(move |s| pair(row, s))),
    );
}

/// Relative error budget of the screen: for every query `q` and row `x` of dimension `d`,
/// `|exact(q, x) − screen(q, x)| ≤ screen_error(d, query_rounding) · |q|·|x|`, where `exact` is
/// the f32 similarity the search reports and `screen` the bf16 dot product.
///
/// Terms: rounding both operands to bf16 (`2u + u²`, `u = 2⁻⁸`); rounding of the query to the data's
/// element type in the exact kernel (`query_rounding`: 0 for f32, 2⁻¹¹ for f16, 2⁻⁸ for bf16);
/// f32 accumulation of `d` products in both the screen and the exact kernel (`2·γ_d`, doubled
/// again for norms computed in f32); approximate reciprocal square roots in cosine kernels
/// (2⁻¹²). A safety factor of 1.25 covers the second-order terms left out.
pub fn screen_error(d: usize, query_rounding: f32) -> f32 {
    let u = 2f32.powi(-8);
    let gamma = d as f32 * 2f32.powi(-24);
    1.25 * (2.0 * u + u * u + query_rounding + 4.0 * gamma + 2f32.powi(-12))
}

/// The per-tile affine map from approximate dot products to score upper bounds:
/// `ub[i][r] = dot[i][r]·scale[r] + bias[r] + q_bias[i] + q_weight[i]·weight[r]`.
#[derive(Debug, Clone, Copy)]
pub struct Affine<'a> {
    /// Per-row factor (`NR` values).
    pub scale: &'a [f32; NR],
    /// Per-row offset (`NR` values).
    pub bias: &'a [f32; NR],
    /// Per-row factor of the error term (`NR` values).
    pub weight: &'a [f32; NR],
    /// Per-query offset (`MR` values).
    pub q_bias: &'a [f32; MR],
    /// Per-query factor of the error term (`MR` values).
    pub q_weight: &'a [f32; MR],
}

impl Affine<'_> {
    #[inline]
    fn apply(&self, dot: f32, i: usize, r: usize) -> f32 {
        dot * self.scale[r] + self.bias[r] + self.q_bias[i] + self.q_weight[i] * self.weight[r]
    }
}

/// Scalar twin of [`tile`]: the same bounds computed one product at a time (exact bf16 products,
/// f32 sums in order), and the same masks.
pub fn tile_scalar(
    q: &[u32],
    d2: usize,
    panel: &[u32],
    map: Affine<'_>,
    floors: &[f32; MR],
    out: &mut [f32; MR * NR],
) -> [u32; MR] {
    let mut masks = [0u32; MR];
    let half = |w: u32, hi: bool| from_bf16_bits(if hi { (w >> 16) as u16 } else { w as u16 });
    for i in 0..MR {
        for r in 0..NR {
            let mut dot = 0.0f32;
            for s in 0..d2 {
                let (a, b) = (q[i * d2 + s], panel[s * NR + r]);
                dot += half(a, false) * half(b, false) + half(a, true) * half(b, true);
            }
            let v = map.apply(dot, i, r);
            out[i * NR + r] = v;
            if v >= floors[i] {
                masks[i] |= 1 << r;
            }
        }
    }
    masks
}

/// Whether [`tile`] can run on this CPU (AVX-512F and AVX-512 BF16) and is wanted (`VELLUM_SIMD`
/// does not name a narrower level; see [`super::simd::level`]).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bf16")
            && super::simd::level() == super::simd::Level::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One tile: `MR` packed queries (`q`, `d2` words each) against one packed panel; writes the score
/// bounds mapped by `map` into `out` and returns, per query `i`, the mask of rows `r` (bit `r`)
/// whose bound reaches `floors[i]`.
///
/// Panics if the slices are shorter than `MR·d2` and `d2·NR` words, or if [`available`] is false.
pub fn tile(
    q: &[u32],
    d2: usize,
    panel: &[u32],
    map: Affine<'_>,
    floors: &[f32; MR],
    out: &mut [f32; MR * NR],
) -> [u32; MR] {
    assert!(
        q.len() >= MR * d2 && panel.len() >= d2 * NR,
        "tile: slices too short"
    );
    #[cfg(target_arch = "x86_64")]
    {
        assert!(available(), "tile: AVX-512 BF16 not available");
        // SAFETY: the CPU features were just checked; the assert above guarantees that every
        // address the kernel reads (q[i·d2 + s] for i < MR, s < d2; panel[s·NR .. s·NR + NR])
        // lies inside the slices, and `out` holds exactly MR·NR values.
        unsafe { avx512::tile(q.as_ptr(), d2, panel.as_ptr(), map, floors, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, d2, panel, map, floors, out);
        unreachable!("tile: AVX-512 BF16 not available");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Affine, MR, NR};

    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn as_bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 512-bit vector types; every bit pattern is a valid bf16 vector.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(
        q: *const u32,
        d2: usize,
        panel: *const u32,
        map: Affine<'_>,
        floors: &[f32; MR],
        out: &mut [f32; MR * NR],
    ) -> [u32; MR] {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for s in 0..d2 {
            // SAFETY (whole block): the caller guarantees s·NR + NR ≤ d2·NR panel words and
            // i·d2 + s < MR·d2 query words.
            unsafe {
                let b0 = as_bh(_mm512_loadu_si512(panel.add(s * NR).cast()));
                let b1 = as_bh(_mm512_loadu_si512(panel.add(s * NR + 16).cast()));
                for (i, a) in acc.iter_mut().enumerate() {
                    let qv = as_bh(_mm512_set1_epi32(*q.add(i * d2 + s) as i32));
                    a[0] = _mm512_dpbf16_ps(a[0], qv, b0);
                    a[1] = _mm512_dpbf16_ps(a[1], qv, b1);
                }
            }
        }
        let mut masks = [0u32; MR];
        // SAFETY: the per-row arrays hold NR = 32 values; out has MR·NR values and row i
        // occupies i·NR .. i·NR + 32.
        unsafe {
            let load2 = |p: &[f32; NR]| {
                (
                    _mm512_loadu_ps(p.as_ptr()),
                    _mm512_loadu_ps(p.as_ptr().add(16)),
                )
            };
            let (s0, s1) = load2(map.scale);
            let (b0, b1) = load2(map.bias);
            let (w0, w1) = load2(map.weight);
            for (i, a) in acc.iter().enumerate() {
                let qb = _mm512_set1_ps(map.q_bias[i]);
                let qw = _mm512_set1_ps(map.q_weight[i]);
                let v0 = _mm512_fmadd_ps(qw, w0, _mm512_add_ps(_mm512_fmadd_ps(a[0], s0, b0), qb));
                let v1 = _mm512_fmadd_ps(qw, w1, _mm512_add_ps(_mm512_fmadd_ps(a[1], s1, b1), qb));
                _mm512_storeu_ps(out.as_mut_ptr().add(i * NR), v0);
                _mm512_storeu_ps(out.as_mut_ptr().add(i * NR + 16), v1);
                let floor = _mm512_set1_ps(floors[i]);
                let m0 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v0, floor);
                let m1 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v1, floor);
                masks[i] = u32::from(m0) | (u32::from(m1) << 16);
            }
        }
        masks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_tile_matches_scalar_twin_and_bounds_exact_products() {
        let scale: [f32; NR] = std::array::from_fn(|r| 1.0 + r as f32 / 64.0);
        let bias: [f32; NR] = std::array::from_fn(|r| -(r as f32) / 8.0);
        let weight: [f32; NR] = std::array::from_fn(|r| r as f32 / 16.0);
        let q_bias: [f32; MR] = std::array::from_fn(|i| i as f32);
        let q_weight: [f32; MR] = std::array::from_fn(|i| 0.5 + i as f32);
        let map = Affine {
            scale: &scale,
            bias: &bias,
            weight: &weight,
            q_bias: &q_bias,
            q_weight: &q_weight,
        };
        let plain = Affine {
            scale: &[1.0; NR],
            bias: &[0.0; NR],
            weight: &[0.0; NR],
            q_bias: &[0.0; MR],
            q_weight: &[0.0; MR],
        };
        for (n, d) in [(1, 1), (5, 3), (32, 384), (45, 17), (64, 100)] {
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 7 % 23) as f32 - 11.3) / 11.0)
                .collect();
            let q: Vec<f32> = (0..MR * d)
                .map(|i| ((i * 5 % 19) as f32 - 9.1) / 9.0)
                .collect();
            let (d2, mut packed, mut qp) = (pairs(d), Vec::new(), Vec::new());
            pack_panels(&x, n, d, &mut packed);
            pack_queries(&q, MR, d, &mut qp);
            assert_eq!(packed.len(), n.div_ceil(NR) * d2 * NR);
            for p in 0..n.div_ceil(NR) {
                let panel = &packed[p * d2 * NR..(p + 1) * d2 * NR];
                // The screen is within the documented bound of the exact dot product.
                let mut approx = [0.0; MR * NR];
                tile_scalar(&qp, d2, panel, plain, &[0.0; MR], &mut approx);
                for i in 0..MR {
                    for r in 0..NR.min(n - p * NR) {
                        let row = &x[(p * NR + r) * d..(p * NR + r + 1) * d];
                        let qi = &q[i * d..(i + 1) * d];
                        let dot: f32 = qi.iter().zip(row).map(|(a, b)| a * b).sum();
                        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
                        let bound = screen_error(d, 0.0) * norm(qi) * norm(row);
                        let got = approx[i * NR + r];
                        assert!((got - dot).abs() <= bound, "{got} vs {dot} (bound {bound})");
                    }
                }
                let (mut want, mut got) = ([0.0; MR * NR], [0.0; MR * NR]);
                let floors: [f32; MR] = std::array::from_fn(|i| i as f32 - 2.0);
                let want_masks = tile_scalar(&qp, d2, panel, map, &floors, &mut want);
                for i in 0..MR {
                    for r in 0..NR {
                        let bit = want_masks[i] >> r & 1 == 1;
                        assert_eq!(bit, want[i * NR + r] >= floors[i]);
                    }
                }
                if available() {
                    let got_masks = tile(&qp, d2, panel, map, &floors, &mut got);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "n {n} d {d}: {g} vs {w}"
                        );
                        // Masks agree except where the two summation orders straddle the floor.
                        let (qi, r) = (i / NR, i % NR);
                        if (w - floors[qi]).abs() > 1e-3 {
                            assert_eq!(got_masks[qi] >> r & 1, want_masks[qi] >> r & 1);
                        }
                    }
                }
            }
        }
    }
}
