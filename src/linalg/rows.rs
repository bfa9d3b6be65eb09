//! f32 products of a few rows with many: `out[o·n + r] = Σ_i x[r·d + i] · w[o·d + i]` for `n`
//! rows of `x` (a query's tokens, a handful) against every row of `w` (a linear layer's weights,
//! `[out, in]` as PyTorch stores them). This is the shape of one query through an encoder: `gemm`
//! packs `w` on every call, which costs more than the arithmetic when `n` is small, and simsimd
//! takes one pair per call (accumulating f32 in f64, at half the vector rate). Here each row of `w`
//! is read once and multiplied with several rows of `x` at a time, in vector accumulators.
//!
//! AVX-512 and AVX2 + FMA kernels (eight, then four, then one row of `x` per load of a `w` row,
//! one accumulator register per row), and a portable body for other CPUs (four rows at a time)
//! with fixed-width inner loops that the compiler vectorises
//! (aarch64's baseline build does so on NEON's 128-bit lanes). Sums are taken in a different order
//! than `gemm`'s, so results agree with it to rounding, not bit for bit.

use super::simd::Level;

/// Lanes of one accumulator: a 512-bit vector, or two 256-bit ones.
const LANES: usize = 16;
/// Rows of `x` that share each load of a `w` row.
const ROWS: usize = 4;

/// `out[o·n + r] = Σ_i x[r·d + i] · w[o·d + i]` for the `n = x.len() / d` rows of `x` and the
/// `w.len() / d` rows of `w`, at the widest level this CPU has.
///
/// # Panics
/// If `d` is 0, the lengths are not whole rows, or `out.len()` is not `n · w.len() / d`.
pub fn dots(x: &[f32], w: &[f32], d: usize, out: &mut [f32]) {
    dots_at(super::simd::level(), x, w, d, out)
}

/// [`dots`] at `level` (a level the CPU lacks runs the portable code).
pub fn dots_at(level: Level, x: &[f32], w: &[f32], d: usize, out: &mut [f32]) {
    assert!(d > 0 && x.len().is_multiple_of(d) && w.len().is_multiple_of(d));
    assert_eq!(
        out.len(),
        x.len() / d * (w.len() / d),
        "out holds n × rows(w) products"
    );
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's CPU features were checked by `supported`; the kernels read `x` at
        // r·d + c and `w` at o·d + c with r < n, o < rows(w), c < d (lengths asserted above).
        Level::Avx512 if level.supported() => return unsafe { x86::dots_avx512(x, w, d, out) },
        Level::Avx2 if level.supported() => return unsafe { x86::dots_avx2(x, w, d, out) },
        _ => {}
    }
    let _ = level;
    dots_body::<false>(x, w, d, out)
}

/// `a · b + c`, fused when `FMA` (the caller's target has the instruction; otherwise `mul_add`
/// would be a library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `Σ_i a[i] · b[i]` over the dimensions past the last whole accumulator width.
#[inline(always)]
fn tail<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0, |s, (x, y)| madd::<FMA>(*x, *y, s))
}

#[inline(always)]
fn dots_body<const FMA: bool>(x: &[f32], w: &[f32], d: usize, out: &mut [f32]) {
    let n = x.len() / d;
    let whole = d / LANES * LANES;
    let row = |r: usize| &x[r * d..(r + 1) * d];
    for (o, wr) in out.chunks_exact_mut(n).zip(w.chunks_exact(d)) {
        let mut r = 0;
        while r + ROWS <= n {
            let xs: [&[f32]; ROWS] = std::array::from_fn(|a| row(r + a));
            let mut acc = [[0f32; LANES]; ROWS];
            for (c, wv) in wr[..whole].chunks_exact(LANES).enumerate() {
                for (acc, xr) in acc.iter_mut().zip(&xs) {
                    let xv = &xr[c * LANES..(c + 1) * LANES];
                    for l in 0..LANES {
                        acc[l] = madd::<FMA>(xv[l], wv[l], acc[l]);
                    }
                }
            }
            for (a, acc) in acc.iter().enumerate() {
                o[r + a] = acc.iter().sum::<f32>() + tail::<FMA>(&xs[a][whole..], &wr[whole..]);
            }
            r += ROWS;
        }
        for (r, o) in o.iter_mut().enumerate().skip(r) {
            let xr = row(r);
            let mut acc = [0f32; LANES];
            for (xv, wv) in xr[..whole]
                .chunks_exact(LANES)
                .zip(wr[..whole].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    acc[l] = madd::<FMA>(xv[l], wv[l], acc[l]);
                }
            }
            *o = acc.iter().sum::<f32>() + tail::<FMA>(&xr[whole..], &wr[whole..]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The x86 kernel: `$w`-lane vectors, eight (then four, then one) rows of `x` per load of a
    /// `w` row, the dimensions past the last whole vector in scalar code.
    macro_rules! kernel {
        ($name:ident, $feat:literal, $w:expr, $vec:ty, $zero:expr, $load:expr, $fma:expr,
         $hsum:expr) => {
            /// # Safety
            /// The CPU must have the target features; lengths as asserted by `dots_at`.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(x: &[f32], w: &[f32], d: usize, out: &mut [f32]) {
                let n = x.len() / d;
                let whole = d / $w * $w;
                let tail = |r: usize, wr: &[f32]| {
                    super::tail::<true>(&x[r * d + whole..(r + 1) * d], &wr[whole..])
                };
                for (o, wr) in out.chunks_exact_mut(n).zip(w.chunks_exact(d)) {
                    let wp = wr.as_ptr();
                    let mut r = 0;
                    while r + 8 <= n {
                        let xp = x.as_ptr().add(r * d);
                        let mut a: [$vec; 8] = [$zero; 8];
                        let mut c = 0;
                        while c < whole {
                            let wv: $vec = $load(wp.add(c));
                            for (i, a) in a.iter_mut().enumerate() {
                                *a = $fma($load(xp.add(i * d + c)), wv, *a);
                            }
                            c += $w;
                        }
                        for (i, a) in a.into_iter().enumerate() {
                            o[r + i] = $hsum(a) + tail(r + i, wr);
                        }
                        r += 8;
                    }
                    while r + 4 <= n {
                        let xp = x.as_ptr().add(r * d);
                        let (mut a0, mut a1, mut a2, mut a3): ($vec, $vec, $vec, $vec) =
                            ($zero, $zero, $zero, $zero);
                        let mut c = 0;
                        while c < whole {
                            let wv: $vec = $load(wp.add(c));
                            a0 = $fma($load(xp.add(c)), wv, a0);
                            a1 = $fma($load(xp.add(d + c)), wv, a1);
                            a2 = $fma($load(xp.add(2 * d + c)), wv, a2);
                            a3 = $fma($load(xp.add(3 * d + c)), wv, a3);
                            c += $w;
                        }
                        o[r] = $hsum(a0) + tail(r, wr);
                        o[r + 1] = $hsum(a1) + tail(r + 1, wr);
                        o[r + 2] = $hsum(a2) + tail(r + 2, wr);
                        o[r + 3] = $hsum(a3) + tail(r + 3, wr);
                        r += 4;
                    }
                    while r < n {
                        let xp = x.as_ptr().add(r * d);
                        let mut a: $vec = $zero;
                        let mut c = 0;
                        while c < whole {
                            a = $fma($load(xp.add(c)), $load(wp.add(c)), a);
                            c += $w;
                        }
                        o[r] = $hsum(a) + tail(r, wr);
                        r += 1;
                    }
                }
            }
        };
    }

    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    kernel!(
        dots_avx512,
        "avx512f,avx512bw,avx512vl,fma",
        16,
        __m512,
        _mm512_setzero_ps(),
        |p: *const f32| _mm512_loadu_ps(p),
        |a, b, c| _mm512_fmadd_ps(a, b, c),
        |v| _mm512_reduce_add_ps(v)
    );
    kernel!(
        dots_avx2,
        "avx2,fma",
        8,
        __m256,
        _mm256_setzero_ps(),
        |p: *const f32| _mm256_loadu_ps(p),
        |a, b, c| _mm256_fmadd_ps(a, b, c),
        |v| hsum256(v)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level this CPU has agrees with an f64 oracle to f32 rounding, on shapes with and
    /// without whole accumulators and row groups.
    #[test]
    fn every_level_matches_the_f64_products() {
        let val = |i: usize, m: usize| (((i * 2654435761) >> 7) % m) as f32 / m as f32 - 0.5;
        for (n, rows, d) in [(1, 3, 384), (5, 7, 45), (16, 9, 64), (4, 2, 15), (3, 1, 1)] {
            let x: Vec<f32> = (0..n * d).map(|i| val(i + 3, 997) * 3.0).collect();
            let w: Vec<f32> = (0..rows * d).map(|i| val(i, 1000) * 0.2).collect();
            for level in super::super::simd::available_levels() {
                let mut out = vec![f32::NAN; n * rows];
                dots_at(level, &x, &w, d, &mut out);
                for o in 0..rows {
                    for r in 0..n {
                        let want: f64 = (0..d)
                            .map(|i| f64::from(x[r * d + i]) * f64::from(w[o * d + i]))
                            .sum();
                        let got = f64::from(out[o * n + r]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (d as f64).sqrt().max(1.0),
                            "{level:?} n {n} d {d} ({o}, {r}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
