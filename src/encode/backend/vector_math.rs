//! The element-wise parts of a transformer layer — GELU (erf and CLIP's quick GELU), softmax,
//! layer norm — with AVX-512 and AVX2+FMA versions (detected at run time, the widest available
//! used), NEON versions on aarch64, and portable scalar twins that tests compare every variant
//! the CPU has with. Hand-written because these passes sit between the matrix products of every
//! layer and no crate offers them fused with our polynomials (simsimd has no exp or erf).
//!
//! `exp` and `erf` are polynomial approximations accurate to ~2e-7 (relative for `exp`,
//! absolute for `erf`), well inside the 1e-4 tolerance of parity with PyTorch.

pub use crate::linalg::simd::{available_levels, level, Level};

/// `x·Φ(x)` with the exact normal CDF (BERT's `gelu`), in place.
pub fn gelu_erf(xs: &mut [f32]) {
    gelu_erf_at(level(), xs)
}

/// `x·σ(1.702·x)` (OpenAI CLIP's `quick_gelu`), in place.
pub fn quick_gelu(xs: &mut [f32]) {
    quick_gelu_at(level(), xs)
}

/// [`quick_gelu`] at `level` (see [`gelu_erf_at`]).
pub fn quick_gelu_at(level: Level, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: as in `gelu_erf_at`.
        Level::Avx512 if supported(level) => return unsafe { x86::quick_gelu(xs) },
        Level::Avx2 if supported(level) => return unsafe { avx2::quick_gelu(xs) },
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        return neon::quick_gelu(xs);
    }
    let _ = level;
    scalar::quick_gelu(xs);
}

/// Softmax of one row, in place.
pub fn softmax(row: &mut [f32]) {
    softmax_at(level(), row)
}

/// `(x − mean) / sqrt(var + eps) · gamma + beta` over one row, in place.
pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    layer_norm_at(level(), row, gamma, beta, eps)
}

/// [`gelu_erf`] at `level`, which must be one of [`available_levels`] (others fall back to the
/// scalar code).
pub fn gelu_erf_at(level: Level, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: these levels are only reported by `available_levels` when the CPU has the
        // features; `supported` re-checks for callers that pass a level themselves.
        Level::Avx512 if supported(level) => return unsafe { x86::gelu_erf(xs) },
        Level::Avx2 if supported(level) => return unsafe { avx2::gelu_erf(xs) },
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        return neon::gelu_erf(xs);
    }
    let _ = level;
    scalar::gelu_erf(xs);
}

/// [`softmax`] at `level` (see [`gelu_erf_at`]).
pub fn softmax_at(level: Level, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: as in `gelu_erf_at`.
        Level::Avx512 if supported(level) => return unsafe { x86::softmax(row) },
        Level::Avx2 if supported(level) => return unsafe { avx2::softmax(row) },
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        return neon::softmax(row);
    }
    let _ = level;
    scalar::softmax(row);
}

/// [`layer_norm`] at `level` (see [`gelu_erf_at`]).
pub fn layer_norm_at(level: Level, row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    assert!(gamma.len() == row.len() && beta.len() == row.len());
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: as in `gelu_erf_at`; lengths are asserted equal.
        Level::Avx512 if supported(level) => {
            return unsafe { x86::layer_norm(row, gamma, beta, eps) }
        }
        Level::Avx2 if supported(level) => {
            return unsafe { avx2::layer_norm(row, gamma, beta, eps) }
        }
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        return neon::layer_norm(row, gamma, beta, eps);
    }
    let _ = level;
    scalar::layer_norm(row, gamma, beta, eps);
}

#[cfg(target_arch = "x86_64")]
fn supported(level: Level) -> bool {
    level.supported()
}

/// Portable versions (also the reference for the SIMD ones).
pub mod scalar {
    /// `e^x`, branch-free; inputs are clamped to [-87, 88].
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        let x = x.clamp(-87.0, 88.0);
        let shifter = 12_582_912.0f32; // 1.5 · 2^23: adding it rounds to an integer
        let k = x * std::f32::consts::LOG2_E + shifter;
        let n = k - shifter;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = poly_exp(r);
        // k's low mantissa bits hold n: build 2^n's exponent from them.
        let e = (k.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23;
        p * f32::from_bits(e)
    }

    pub(super) const LN2_HI: f32 = 0.693_145_75;
    pub(super) const LN2_LO: f32 = 1.428_606_8e-6;
    pub(super) const EXP_POLY: [f32; 7] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
    ];
    /// Numerical Recipes' erfc fit: erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2).
    pub(super) const ERFC_POLY: [f32; 10] = [
        -1.265_512_2,
        1.000_023_7,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_204,
        1.488_515_9,
        -0.822_152_23,
        0.170_872_77,
    ];

    #[inline(always)]
    fn poly_exp(r: f32) -> f32 {
        let c = EXP_POLY;
        c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * c[6])))))
    }

    /// erf, to ~1.2e-7 absolute error.
    #[inline(always)]
    pub fn erf(x: f32) -> f32 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let mut p = ERFC_POLY[9];
        for c in ERFC_POLY[..9].iter().rev() {
            p = p * t + c;
        }
        (1.0 - t * exp(p - z * z)).copysign(x)
    }

    /// See [`super::quick_gelu`].
    pub fn quick_gelu(xs: &mut [f32]) {
        for x in xs {
            *x /= 1.0 + exp(-1.702 * *x);
        }
    }

    /// See [`super::gelu_erf`].
    pub fn gelu_erf(xs: &mut [f32]) {
        for x in xs {
            *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }

    /// See [`super::softmax`].
    pub fn softmax(row: &mut [f32]) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }

    /// See [`super::layer_norm`].
    pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let len = row.len() as f32;
        let mean = row.iter().sum::<f32>() / len;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::scalar::{ERFC_POLY, EXP_POLY, LN2_HI, LN2_LO};

    /// Mask of the first `n` (< 16) lanes.
    #[inline(always)]
    fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(EXP_POLY[6]);
        for c in EXP_POLY[..6].iter().rev() {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        _mm512_scalef_ps(p, n)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn gelu16(x: __m512) -> __m512 {
        let sign = _mm512_set1_epi32(i32::MIN);
        let u = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let z = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(u)));
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(z, _mm512_set1_ps(0.5), one));
        let mut p = _mm512_set1_ps(ERFC_POLY[9]);
        for c in ERFC_POLY[..9].iter().rev() {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(*c));
        }
        let e = exp16(_mm512_fnmadd_ps(z, z, p));
        let erf_abs = _mm512_fnmadd_ps(t, e, one);
        // erf(u) carries u's sign.
        let erf = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_castps_si512(erf_abs),
            _mm512_and_si512(sign, _mm512_castps_si512(u)),
        ));
        _mm512_mul_ps(
            _mm512_mul_ps(_mm512_set1_ps(0.5), x),
            _mm512_add_ps(one, erf),
        )
    }

    #[target_feature(enable = "avx512f")]
    pub fn quick_gelu(xs: &mut [f32]) {
        let f = |x: __m512| {
            let e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702)));
            _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
        };
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: c has exactly 16 elements.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), f(_mm512_loadu_ps(c.as_ptr()))) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let m = tail_mask(rest.len());
            // SAFETY: the mask covers only the rest.len() valid elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
                _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, f(v));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub fn gelu_erf(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: c has exactly 16 elements.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), gelu16(_mm512_loadu_ps(c.as_ptr()))) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let m = tail_mask(rest.len());
            // SAFETY: the mask covers only the rest.len() valid elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
                _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, gelu16(v));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub fn softmax(row: &mut [f32]) {
        let n = row.len();
        let full = n / 16 * 16;
        let m = tail_mask(n - full);
        let ptr = row.as_mut_ptr();
        // SAFETY (all blocks below): full lanes address i..i+16 ≤ full ≤ n; the tail is masked
        // to the n − full valid elements.
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(16) {
            vmax = _mm512_max_ps(vmax, unsafe { _mm512_loadu_ps(ptr.add(i)) });
        }
        if full < n {
            let v = unsafe {
                _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), m, ptr.add(full))
            };
            vmax = _mm512_max_ps(vmax, v);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        let mut vsum = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            let e = exp16(_mm512_sub_ps(unsafe { _mm512_loadu_ps(ptr.add(i)) }, max));
            unsafe { _mm512_storeu_ps(ptr.add(i), e) };
            vsum = _mm512_add_ps(vsum, e);
        }
        if full < n {
            let v = unsafe { _mm512_maskz_loadu_ps(m, ptr.add(full)) };
            let e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(v, max)));
            unsafe { _mm512_mask_storeu_ps(ptr.add(full), m, e) };
            vsum = _mm512_add_ps(vsum, e);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(vsum));
        for i in (0..full).step_by(16) {
            unsafe {
                _mm512_storeu_ps(ptr.add(i), _mm512_mul_ps(_mm512_loadu_ps(ptr.add(i)), inv))
            };
        }
        if full < n {
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, ptr.add(full));
                _mm512_mask_storeu_ps(ptr.add(full), m, _mm512_mul_ps(v, inv));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = row.len();
        let full = n / 16 * 16;
        let m = tail_mask(n - full);
        let (p, g, b) = (row.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr());
        // SAFETY (all blocks below): gamma and beta have row's length (asserted by the caller);
        // full lanes stay below `full`, the tail is masked to the valid elements.
        let mut vsum = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            vsum = _mm512_add_ps(vsum, unsafe { _mm512_loadu_ps(p.add(i)) });
        }
        if full < n {
            vsum = _mm512_add_ps(vsum, unsafe { _mm512_maskz_loadu_ps(m, p.add(full)) });
        }
        let mean = _mm512_reduce_add_ps(vsum) / n as f32;
        let vmean = _mm512_set1_ps(mean);
        let mut vvar = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            let d = _mm512_sub_ps(unsafe { _mm512_loadu_ps(p.add(i)) }, vmean);
            vvar = _mm512_fmadd_ps(d, d, vvar);
        }
        if full < n {
            let d = _mm512_maskz_sub_ps(m, unsafe { _mm512_maskz_loadu_ps(m, p.add(full)) }, vmean);
            vvar = _mm512_fmadd_ps(d, d, vvar);
        }
        let var = _mm512_reduce_add_ps(vvar) / n as f32;
        let inv = _mm512_set1_ps(1.0 / (var + eps).sqrt());
        for i in (0..n).step_by(16) {
            unsafe {
                if i < full {
                    let x = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vmean), inv);
                    let y =
                        _mm512_fmadd_ps(x, _mm512_loadu_ps(g.add(i)), _mm512_loadu_ps(b.add(i)));
                    _mm512_storeu_ps(p.add(i), y);
                } else {
                    let x = _mm512_mul_ps(
                        _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), vmean),
                        inv,
                    );
                    let y = _mm512_fmadd_ps(
                        x,
                        _mm512_maskz_loadu_ps(m, g.add(i)),
                        _mm512_maskz_loadu_ps(m, b.add(i)),
                    );
                    _mm512_mask_storeu_ps(p.add(i), m, y);
                }
            }
        }
    }
}

/// AVX2 + FMA versions: 8 lanes, tails through the scalar twins.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::scalar::{self, ERFC_POLY, EXP_POLY, LN2_HI, LN2_LO};

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(EXP_POLY[6]);
        for c in EXP_POLY[..6].iter().rev() {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        // 2^n from its exponent bits (n is within [-126, 127] after the clamp).
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        _mm256_mul_ps(p, two_n)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn gelu8(x: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let u = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let z = _mm256_andnot_ps(sign, u);
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(z, _mm256_set1_ps(0.5), one));
        let mut p = _mm256_set1_ps(ERFC_POLY[9]);
        for c in ERFC_POLY[..9].iter().rev() {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(*c));
        }
        let e = exp8(_mm256_fnmadd_ps(z, z, p));
        let erf_abs = _mm256_fnmadd_ps(t, e, one);
        // erf(u) carries u's sign.
        let erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, u));
        _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.5), x),
            _mm256_add_ps(one, erf),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn max8(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn quick_gelu(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c has exactly 8 elements.
            unsafe {
                let x = _mm256_loadu_ps(c.as_ptr());
                let e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702)));
                let y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                _mm256_storeu_ps(c.as_mut_ptr(), y);
            }
        }
        scalar::quick_gelu(chunks.into_remainder());
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn gelu_erf(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c has exactly 8 elements.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), gelu8(_mm256_loadu_ps(c.as_ptr()))) };
        }
        scalar::gelu_erf(chunks.into_remainder());
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn softmax(row: &mut [f32]) {
        let full = row.len() / 8 * 8;
        let (head, tail) = row.split_at_mut(full);
        let ptr = head.as_mut_ptr();
        // SAFETY (all blocks below): vector lanes address i..i+8 ≤ full = head.len().
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(8) {
            vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(ptr.add(i)) });
        }
        let max = tail.iter().fold(max8(vmax), |m, &v| m.max(v));
        let vm = _mm256_set1_ps(max);
        let mut vsum = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            let e = exp8(_mm256_sub_ps(unsafe { _mm256_loadu_ps(ptr.add(i)) }, vm));
            unsafe { _mm256_storeu_ps(ptr.add(i), e) };
            vsum = _mm256_add_ps(vsum, e);
        }
        let mut sum = sum8(vsum);
        for v in tail.iter_mut() {
            *v = scalar::exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        let vinv = _mm256_set1_ps(inv);
        for i in (0..full).step_by(8) {
            unsafe {
                _mm256_storeu_ps(ptr.add(i), _mm256_mul_ps(_mm256_loadu_ps(ptr.add(i)), vinv))
            };
        }
        for v in tail.iter_mut() {
            *v *= inv;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = row.len();
        let full = n / 8 * 8;
        let (p, g, b) = (row.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr());
        // SAFETY (all blocks below): gamma and beta have row's length (asserted by the caller);
        // vector lanes stay below `full`.
        let mut vsum = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            vsum = _mm256_add_ps(vsum, unsafe { _mm256_loadu_ps(p.add(i)) });
        }
        let mean = (sum8(vsum) + row[full..].iter().sum::<f32>()) / n as f32;
        let vmean = _mm256_set1_ps(mean);
        let mut vvar = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(p.add(i)) }, vmean);
            vvar = _mm256_fmadd_ps(d, d, vvar);
        }
        let tail_var: f32 = row[full..].iter().map(|v| (v - mean) * (v - mean)).sum();
        let var = (sum8(vvar) + tail_var) / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        let vinv = _mm256_set1_ps(inv);
        for i in (0..full).step_by(8) {
            unsafe {
                let x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vmean), vinv);
                let y = _mm256_fmadd_ps(x, _mm256_loadu_ps(g.add(i)), _mm256_loadu_ps(b.add(i)));
                _mm256_storeu_ps(p.add(i), y);
            }
        }
        for i in full..n {
            row[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}

/// NEON versions (aarch64, where NEON is always present): 4 lanes, tails through the scalar
/// twins. The same polynomials and order of operations as the AVX2 versions.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use std::arch::aarch64::*;

    use super::scalar::{self, ERFC_POLY, EXP_POLY, LN2_HI, LN2_LO};

    #[inline(always)]
    fn exp4(x: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline; these intrinsics only compute on
        // registers.
        unsafe {
            let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0)), vdupq_n_f32(88.0));
            let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
            let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
            let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
            let mut p = vdupq_n_f32(EXP_POLY[6]);
            for c in EXP_POLY[..6].iter().rev() {
                p = vfmaq_f32(vdupq_n_f32(*c), p, r);
            }
            // 2^n from its exponent bits (n is within [-126, 127] after the clamp).
            let two_n = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
                vcvtnq_s32_f32(n),
                vdupq_n_s32(127),
            )));
            vmulq_f32(p, two_n)
        }
    }

    #[inline(always)]
    fn gelu4(x: float32x4_t) -> float32x4_t {
        // SAFETY: as in `exp4`.
        unsafe {
            let u = vmulq_n_f32(x, std::f32::consts::FRAC_1_SQRT_2);
            let z = vabsq_f32(u);
            let one = vdupq_n_f32(1.0);
            let t = vdivq_f32(one, vfmaq_n_f32(one, z, 0.5));
            let mut p = vdupq_n_f32(ERFC_POLY[9]);
            for c in ERFC_POLY[..9].iter().rev() {
                p = vfmaq_f32(vdupq_n_f32(*c), p, t);
            }
            let e = exp4(vfmsq_f32(p, z, z));
            let erf_abs = vfmsq_f32(one, t, e);
            // erf(u) carries u's sign.
            let sign = vdupq_n_u32(0x8000_0000);
            let erf = vreinterpretq_f32_u32(vorrq_u32(
                vreinterpretq_u32_f32(erf_abs),
                vandq_u32(sign, vreinterpretq_u32_f32(u)),
            ));
            vmulq_f32(vmulq_n_f32(x, 0.5), vaddq_f32(one, erf))
        }
    }

    pub fn quick_gelu(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: c has exactly 4 elements.
            unsafe {
                let x = vld1q_f32(c.as_ptr());
                let e = exp4(vmulq_n_f32(x, -1.702));
                vst1q_f32(c.as_mut_ptr(), vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e)));
            }
        }
        scalar::quick_gelu(chunks.into_remainder());
    }

    pub fn gelu_erf(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: c has exactly 4 elements.
            unsafe { vst1q_f32(c.as_mut_ptr(), gelu4(vld1q_f32(c.as_ptr()))) };
        }
        scalar::gelu_erf(chunks.into_remainder());
    }

    pub fn softmax(row: &mut [f32]) {
        let full = row.len() / 4 * 4;
        let (head, tail) = row.split_at_mut(full);
        let ptr = head.as_mut_ptr();
        // SAFETY (all blocks below): vector lanes address i..i+4 ≤ full = head.len().
        unsafe {
            let mut vmax = vdupq_n_f32(f32::NEG_INFINITY);
            for i in (0..full).step_by(4) {
                vmax = vmaxq_f32(vmax, vld1q_f32(ptr.add(i)));
            }
            let max = tail.iter().fold(vmaxvq_f32(vmax), |m, &v| m.max(v));
            let vm = vdupq_n_f32(max);
            let mut vsum = vdupq_n_f32(0.0);
            for i in (0..full).step_by(4) {
                let e = exp4(vsubq_f32(vld1q_f32(ptr.add(i)), vm));
                vst1q_f32(ptr.add(i), e);
                vsum = vaddq_f32(vsum, e);
            }
            let mut sum = vaddvq_f32(vsum);
            for v in tail.iter_mut() {
                *v = scalar::exp(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            for i in (0..full).step_by(4) {
                vst1q_f32(ptr.add(i), vmulq_n_f32(vld1q_f32(ptr.add(i)), inv));
            }
            for v in tail.iter_mut() {
                *v *= inv;
            }
        }
    }

    pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        assert!(gamma.len() == row.len() && beta.len() == row.len());
        let n = row.len();
        let full = n / 4 * 4;
        let (p, g, b) = (row.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr());
        // SAFETY (all blocks below): gamma and beta have row's length (asserted above); vector
        // lanes stay below `full`; the scalar tail indexes the slices, not the pointers.
        unsafe {
            let mut vsum = vdupq_n_f32(0.0);
            for i in (0..full).step_by(4) {
                vsum = vaddq_f32(vsum, vld1q_f32(p.add(i)));
            }
            let mean = (vaddvq_f32(vsum) + row[full..].iter().sum::<f32>()) / n as f32;
            let vmean = vdupq_n_f32(mean);
            let mut vvar = vdupq_n_f32(0.0);
            for i in (0..full).step_by(4) {
                let d = vsubq_f32(vld1q_f32(p.add(i)), vmean);
                vvar = vfmaq_f32(vvar, d, d);
            }
            let tail_var: f32 = row[full..].iter().map(|v| (v - mean) * (v - mean)).sum();
            let var = (vaddvq_f32(vvar) + tail_var) / n as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for i in (0..full).step_by(4) {
                let x = vmulq_n_f32(vsubq_f32(vld1q_f32(p.add(i)), vmean), inv);
                let y = vfmaq_f32(vld1q_f32(b.add(i)), x, vld1q_f32(g.add(i)));
                vst1q_f32(p.add(i), y);
            }
            for i in full..n {
                row[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series (|x| < 3) or continued fraction, in f64.
    fn erf_f64(x: f64) -> f64 {
        let z = x.abs();
        let r = if z < 3.0 {
            let (mut sum, mut term, mut n) = (0.0, z, 0.0);
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -z * z / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = z;
            for k in (1..60).rev() {
                f = z + (k as f64 / 2.0) / f;
            }
            1.0 - (-z * z).exp() / (f * std::f64::consts::PI.sqrt())
        };
        r.copysign(x)
    }

    #[test]
    fn scalar_exp_and_erf_are_accurate() {
        let (mut e_worst, mut erf_worst) = (0f64, 0f64);
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            e_worst = e_worst.max(((scalar::exp(x) as f64 - want) / want).abs());
            erf_worst = erf_worst.max((scalar::erf(x) as f64 - erf_f64(x as f64)).abs());
        }
        assert!(e_worst < 3e-7 && erf_worst < 3e-7, "{e_worst} {erf_worst}");
        assert!(scalar::exp(-200.0) < 1e-37);
    }

    /// Every variant this CPU has (AVX-512, AVX2+FMA, NEON, scalar) agrees with the scalar twins on
    /// every length from 1 to 70 (full blocks and tails).
    #[test]
    fn simd_matches_scalar() {
        let levels = available_levels();
        eprintln!("vector_math levels on this CPU: {levels:?}");
        for level in levels {
            simd_matches_scalar_at(level);
        }
    }

    fn simd_matches_scalar_at(level: Level) {
        let gelu_erf = |xs: &mut [f32]| gelu_erf_at(level, xs);
        let quick_gelu = |xs: &mut [f32]| quick_gelu_at(level, xs);
        let softmax = |xs: &mut [f32]| softmax_at(level, xs);
        let layer_norm =
            |xs: &mut [f32], g: &[f32], b: &[f32], e: f32| layer_norm_at(level, xs, g, b, e);
        for (n, spread) in (1..70).map(|n| (n, 9.0)).chain([(67, 0.5), (300, 0.25)]) {
            // spread 9: values in ±5.6; 0.5 and 0.25: ±100 and ±200 (erf saturated, exp clamped).
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / spread)
                .collect();
            let (mut a, mut b) = (xs.clone(), xs.clone());
            gelu_erf(&mut a);
            scalar::gelu_erf(&mut b);
            for (u, v) in a.iter().zip(&b) {
                assert!(
                    (u - v).abs() <= 1e-6 * (1.0 + v.abs()),
                    "{level:?} gelu n={n}: {u} {v}"
                );
            }
            let (mut a, mut b) = (xs.clone(), xs.clone());
            quick_gelu(&mut a);
            scalar::quick_gelu(&mut b);
            for ((u, v), x) in a.iter().zip(&b).zip(&xs) {
                let exact = (*x as f64) / (1.0 + (-1.702 * *x as f64).exp());
                assert!(
                    (u - v).abs() <= 1e-6 * (1.0 + v.abs())
                        && (*v as f64 - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
                    "{level:?} quick_gelu n={n}: {u} {v} {exact}"
                );
            }
            let (mut a, mut b) = (xs.clone(), xs.clone());
            softmax(&mut a);
            scalar::softmax(&mut b);
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() <= 1e-6, "{level:?} softmax n={n}: {u} {v}");
            }
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let g: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 / 100.0).collect();
            let bt: Vec<f32> = (0..n).map(|i| i as f32 / 50.0 - 0.3).collect();
            let (mut a, mut b) = (xs.clone(), xs);
            layer_norm(&mut a, &g, &bt, 1e-12);
            scalar::layer_norm(&mut b, &g, &bt, 1e-12);
            for (u, v) in a.iter().zip(&b) {
                assert!(
                    (u - v).abs() <= 1e-5 * (1.0 + v.abs()),
                    "{level:?} layer_norm n={n}: {u} {v}"
                );
            }
        }
    }
}
