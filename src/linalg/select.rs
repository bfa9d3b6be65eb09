//! Selection of the rows whose integer product, less a per-row correction, reaches a threshold:
//! the pass after a block product ([`super::packed_codes`], [`super::codes`]) in exact search over
//! screening codes, where about 1 row in 80 passes (real MiniLM vectors, k = 10).
//!
//! Written by hand because it is one fused pass over every product of a batch (46 M for 1,000
//! queries × 46 k rows): a subtract, a compare and a mask test per vector, the set bits of the
//! rare non-zero masks walked in scalar code. The portable loop it replaced (a subtraction pass,
//! then a maximum per chunk of 32) compiled to SSE2 at the x86-64 baseline and took a quarter of a
//! coded batch's time on AVX-512 (`perf`, benches/RESULTS.md, stop 38).
//!
//! Integer arithmetic (`wrapping_sub`, as the scalar twin): every level selects the same rows.

use super::simd::Level;

/// Appends to `out`, in increasing order, every `r` with
/// `dots[r].wrapping_sub(bias[r]) >= threshold`, at the widest level this CPU has.
///
/// # Panics
/// If `bias` is shorter than `dots`, or `dots` has more than `u32::MAX` entries.
pub fn rows_at_least(dots: &[i32], bias: &[i32], threshold: i32, out: &mut Vec<u32>) {
    rows_at_least_at(super::simd::level(), dots, bias, threshold, out)
}

/// [`rows_at_least`] at `level` (a level this CPU lacks runs the scalar code).
///
/// # Panics
/// As [`rows_at_least`].
pub fn rows_at_least_at(
    level: Level,
    dots: &[i32],
    bias: &[i32],
    threshold: i32,
    out: &mut Vec<u32>,
) {
    assert!(bias.len() >= dots.len(), "one bias per product");
    assert!(u32::try_from(dots.len()).is_ok(), "row indices fit in u32");
    let bias = &bias[..dots.len()];
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: `supported` checked the level's CPU features; `bias` and `dots` have the same
        // length, and the kernels read inside it.
        Level::Avx512 if level.supported() => {
            return unsafe { x86::rows_at_least_avx512(dots, bias, threshold, out) }
        }
        // SAFETY: as above.
        Level::Avx2 if level.supported() => {
            return unsafe { x86::rows_at_least_avx2(dots, bias, threshold, out) }
        }
        _ => {}
    }
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon && level.supported() {
        // SAFETY: NEON is supported (checked); lengths as above.
        return unsafe { neon::rows_at_least(dots, bias, threshold, out) };
    }
    let _ = level;
    scalar::rows_at_least(dots, bias, threshold, 0, out)
}

/// The portable version and test oracle.
pub mod scalar {
    /// See [`super::rows_at_least`]; `first` is added to every index appended (the kernels' tails).
    pub fn rows_at_least(
        dots: &[i32],
        bias: &[i32],
        threshold: i32,
        first: usize,
        out: &mut Vec<u32>,
    ) {
        for (r, (&d, &b)) in dots.iter().zip(bias).enumerate() {
            if d.wrapping_sub(b) >= threshold {
                out.push((first + r) as u32);
            }
        }
    }
}

/// Appends `base + bit` for every set bit of `mask`, lowest first.
#[inline(always)]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn push_bits(mut mask: u64, base: usize, out: &mut Vec<u32>) {
    while mask != 0 {
        out.push((base + mask.trailing_zeros() as usize) as u32);
        mask &= mask - 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::push_bits;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512 F; `dots.len() == bias.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_at_least_avx512(
        dots: &[i32],
        bias: &[i32],
        threshold: i32,
        out: &mut Vec<u32>,
    ) {
        let t = _mm512_set1_epi32(threshold);
        let whole = dots.len() / 16 * 16;
        for r in (0..whole).step_by(16) {
            // SAFETY: `r + 16 <= whole <= len` for both slices.
            let d = _mm512_loadu_si512(dots.as_ptr().add(r).cast());
            let b = _mm512_loadu_si512(bias.as_ptr().add(r).cast());
            let mask = _mm512_cmpge_epi32_mask(_mm512_sub_epi32(d, b), t);
            if mask != 0 {
                push_bits(u64::from(mask), r, out);
            }
        }
        super::scalar::rows_at_least(&dots[whole..], &bias[whole..], threshold, whole, out);
    }

    /// # Safety
    /// The CPU has AVX2; `dots.len() == bias.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_at_least_avx2(
        dots: &[i32],
        bias: &[i32],
        threshold: i32,
        out: &mut Vec<u32>,
    ) {
        let t = _mm256_set1_epi32(threshold);
        let whole = dots.len() / 8 * 8;
        for r in (0..whole).step_by(8) {
            // SAFETY: `r + 8 <= whole <= len` for both slices.
            let d = _mm256_loadu_si256(dots.as_ptr().add(r).cast());
            let b = _mm256_loadu_si256(bias.as_ptr().add(r).cast());
            // `d − b ≥ t` is `!(t > d − b)`: the lanes below the threshold are the set bits.
            let below = _mm256_cmpgt_epi32(t, _mm256_sub_epi32(d, b));
            let mask = !_mm256_movemask_ps(_mm256_castsi256_ps(below)) & 0xff;
            if mask != 0 {
                push_bits(mask as u64, r, out);
            }
        }
        super::scalar::rows_at_least(&dots[whole..], &bias[whole..], threshold, whole, out);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::push_bits;
    use std::arch::aarch64::*;

    /// # Safety
    /// NEON is available; `dots.len() == bias.len()`.
    #[target_feature(enable = "neon")]
    pub unsafe fn rows_at_least(dots: &[i32], bias: &[i32], threshold: i32, out: &mut Vec<u32>) {
        let t = vdupq_n_s32(threshold);
        // Lane `i` contributes bit `i` where it passes.
        let bits: [u32; 4] = [1, 2, 4, 8];
        let bits = vld1q_u32(bits.as_ptr());
        let whole = dots.len() / 4 * 4;
        for r in (0..whole).step_by(4) {
            // SAFETY: `r + 4 <= whole <= len` for both slices.
            let d = vld1q_s32(dots.as_ptr().add(r));
            let b = vld1q_s32(bias.as_ptr().add(r));
            let pass = vcgeq_s32(vsubq_s32(d, b), t);
            let mask = vaddvq_u32(vandq_u32(pass, bits));
            if mask != 0 {
                push_bits(u64::from(mask), r, out);
            }
        }
        super::scalar::rows_at_least(&dots[whole..], &bias[whole..], threshold, whole, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::simd::available_levels;
    use proptest::prelude::*;

    fn check(dots: &[i32], bias: &[i32], threshold: i32) {
        let mut want = Vec::new();
        scalar::rows_at_least(dots, bias, threshold, 0, &mut want);
        for level in available_levels() {
            let mut got = vec![7];
            rows_at_least_at(level, dots, bias, threshold, &mut got);
            assert_eq!(got[0], 7, "{level:?} appends");
            assert_eq!(&got[1..], &want[..], "{level:?}");
        }
    }

    #[test]
    fn every_row_at_or_above_the_threshold_in_order() {
        let dots: Vec<i32> = (0..53).map(|i| (i * 37 % 19) - 9).collect();
        let bias: Vec<i32> = (0..53).map(|i| i % 3).collect();
        let mut want = Vec::new();
        scalar::rows_at_least(&dots, &bias, 4, 0, &mut want);
        let expect: Vec<u32> = (0..53u32)
            .filter(|&i| dots[i as usize] - bias[i as usize] >= 4)
            .collect();
        assert_eq!(want, expect);
        assert!(!want.is_empty() && want.len() < 53);
        check(&dots, &bias, 4);
    }

    #[test]
    fn extremes_wrap_as_the_scalar_twin() {
        let dots = vec![
            i32::MIN,
            i32::MAX,
            0,
            -1,
            i32::MIN + 1,
            5,
            i32::MAX,
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
        ];
        let bias = vec![
            1,
            -1,
            i32::MIN,
            i32::MAX,
            0,
            5,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        for t in [i32::MIN, -1, 0, 1, i32::MAX] {
            check(&dots, &bias, t);
        }
    }

    proptest! {
        #[test]
        fn every_level_selects_as_the_scalar_twin(
            rows in proptest::collection::vec((any::<i32>(), -300i32..300), 0..80),
            threshold in -200i32..200,
        ) {
            let dots: Vec<i32> = rows.iter().map(|r| r.0 % 400).collect();
            let bias: Vec<i32> = rows.iter().map(|r| r.1).collect();
            check(&dots, &bias, threshold);
        }
    }
}
