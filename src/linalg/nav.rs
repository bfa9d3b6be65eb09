//! Distances between two i8 vectors: an HNSW graph's navigation codes (`format-spec/graph.md`)
//! against a query coded the same way, one row per call, on the graph traversal's hot path (and
//! the graph builder's).
//!
//! Integer arithmetic makes every variant return the same number: AVX-512 (`vpmovsxbw` +
//! `vpsubw` + `vpmaddwd`, 32 dimensions a step, the tail by a masked load), AVX2 (the same on 16
//! dimensions, the tail in scalar code), NEON (8 dimensions a step: `vsubl_s8` + `vabsq_s16` +
//! `vmlal_u16` for L2, `vmovl_s8` + `vmlal_s16` for dot) and the scalar twin agree bit for bit,
//! so a graph search visits the same rows on every CPU.
//!
//! Written by hand rather than called through simsimd's i8 kernels (which compute the same
//! integers) because a traversal scores one short row per call, hundreds of times per query:
//! simsimd's i8 L2 took 18.4 ns per 384-d row against 6.1 ns here (AVX-512; 10.7 ns AVX2;
//! criterion `nav_l2sq_i8`), and its per-call dispatch stub and `Option<f64>` wrapper another
//! 3.9 % of a query's time at ef 24 (`perf`); a level chosen once per query is a direct call
//! (benches/RESULTS.md, stop 35).
//!
//! Ranges: `l2sq` is at most `dim · 255² < 2³²` for `dim ≤` [`MAX_LEN`], so it is returned as
//! `u32`; `dot` is at most `dim · 128² ≤ 2³⁰` in magnitude, an `i32`. Per-lane partial sums stay
//! far inside `i32`.

use super::simd::Level;

/// The longest vectors the kernels take: 65536, the schema's largest dimension (`hnsw::build`
/// asserts that they agree).
pub const MAX_LEN: usize = 1 << 16;

/// A level resolved against this CPU: the kernels [`Kernel::l2sq`] and [`Kernel::dot`] run.
/// Chosen once (per query), so that the per-row calls do not test CPU features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel(Level);

impl Kernel {
    /// The kernels of `level`, or the scalar twins where this CPU lacks it.
    pub fn at(level: Level) -> Self {
        Kernel(if level.supported() {
            level
        } else {
            Level::Scalar
        })
    }

    /// The kernels of the level vellum's kernels use on this CPU ([`super::simd::level`]).
    pub fn detect() -> Self {
        Self::at(super::simd::level())
    }

    /// `Σ (a[i] − b[i])²`.
    ///
    /// # Panics
    /// If the lengths differ or exceed [`MAX_LEN`].
    #[inline]
    pub fn l2sq(self, a: &[i8], b: &[i8]) -> u32 {
        check(a, b);
        #[cfg(target_arch = "x86_64")]
        match self.0 {
            // SAFETY: `at` keeps a level only where `supported()` confirmed its CPU features;
            // the lengths are equal (checked), and the kernels read inside them.
            Level::Avx512 => return unsafe { x86::l2sq_avx512(a, b) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { x86::l2sq_avx2(a, b) },
            _ => {}
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        if self.0 == Level::Neon {
            // SAFETY: NEON is part of this target's baseline; the lengths are equal (checked).
            return unsafe { neon::l2sq(a, b) };
        }
        scalar::l2sq(a, b)
    }

    /// `Σ a[i] · b[i]`.
    ///
    /// # Panics
    /// If the lengths differ or exceed [`MAX_LEN`].
    #[inline]
    pub fn dot(self, a: &[i8], b: &[i8]) -> i32 {
        check(a, b);
        #[cfg(target_arch = "x86_64")]
        match self.0 {
            // SAFETY: as in `l2sq`.
            Level::Avx512 => return unsafe { x86::dot_avx512(a, b) },
            // SAFETY: as in `l2sq`.
            Level::Avx2 => return unsafe { x86::dot_avx2(a, b) },
            _ => {}
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        if self.0 == Level::Neon {
            // SAFETY: NEON is part of this target's baseline; the lengths are equal (checked).
            return unsafe { neon::dot(a, b) };
        }
        scalar::dot(a, b)
    }
}

#[inline(always)]
fn check(a: &[i8], b: &[i8]) {
    assert!(
        a.len() == b.len() && a.len() <= MAX_LEN,
        "i8 vectors of equal length, at most MAX_LEN"
    );
}

/// The portable twins, and the test oracle.
pub mod scalar {
    /// `Σ (a[i] − b[i])²` (equal lengths).
    pub fn l2sq(a: &[i8], b: &[i8]) -> u32 {
        a.iter().zip(b).fold(0u32, |s, (&x, &y)| {
            let d = x as i32 - y as i32;
            s.wrapping_add((d * d) as u32)
        })
    }

    /// `Σ a[i] · b[i]` (equal lengths).
    pub fn dot(a: &[i8], b: &[i8]) -> i32 {
        a.iter()
            .zip(b)
            .fold(0i32, |s, (&x, &y)| s.wrapping_add(x as i32 * y as i32))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The AVX-512 loop both kernels share: `step` adds 32 dimensions' terms (two vectors of 32
    /// i8, widened) to an accumulator of 16 i32 lanes. Two accumulators, so that consecutive
    /// steps do not wait on each other; the tail by a masked load, which reads only the lanes
    /// inside the slices (and never faults on the others): lanes past the end are zero in both
    /// inputs and add nothing to either kernel's sum. Returns the lanes' wrapping sum.
    #[inline(always)]
    unsafe fn drive512(
        a: &[i8],
        b: &[i8],
        step: impl Fn(__m512i, __m512i, __m512i) -> __m512i,
    ) -> i32 {
        let (pa, pb, n) = (a.as_ptr(), b.as_ptr(), a.len());
        let widen = |p: *const i8| _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.cast()));
        let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 64 <= n {
            s0 = step(s0, widen(pa.add(i)), widen(pb.add(i)));
            s1 = step(s1, widen(pa.add(i + 32)), widen(pb.add(i + 32)));
            i += 64;
        }
        while i < n {
            let mask: __mmask32 = if n - i >= 32 {
                u32::MAX
            } else {
                (1u32 << (n - i)) - 1
            };
            let x = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, pa.add(i)));
            let y = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, pb.add(i)));
            s0 = step(s0, x, y);
            i += 32;
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1))
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL; `a.len() == b.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn l2sq_avx512(a: &[i8], b: &[i8]) -> u32 {
        // Each lane is at most 2 · 255² · ⌈65536 / 64⌉ < 2³¹; the total below 2³², read as u32.
        drive512(a, b, |s, x, y| {
            let d = _mm512_sub_epi16(x, y);
            _mm512_add_epi32(s, _mm512_madd_epi16(d, d))
        }) as u32
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL; `a.len() == b.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn dot_avx512(a: &[i8], b: &[i8]) -> i32 {
        drive512(a, b, |s, x, y| _mm512_add_epi32(s, _mm512_madd_epi16(x, y)))
    }

    /// The AVX2 loop both kernels share: as [`drive512`] on 16 dimensions a step, the dimensions
    /// past the last whole step left to the caller. Returns the lanes' wrapping sum and the
    /// number of dimensions summed.
    #[inline(always)]
    unsafe fn drive256(
        a: &[i8],
        b: &[i8],
        step: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    ) -> (i32, usize) {
        let (pa, pb, n) = (a.as_ptr(), b.as_ptr(), a.len());
        let widen = |p: *const i8| _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast()));
        let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 32 <= n {
            s0 = step(s0, widen(pa.add(i)), widen(pb.add(i)));
            s1 = step(s1, widen(pa.add(i + 16)), widen(pb.add(i + 16)));
            i += 32;
        }
        if i + 16 <= n {
            s0 = step(s0, widen(pa.add(i)), widen(pb.add(i)));
            i += 16;
        }
        let v = _mm256_add_epi32(s0, s1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        (_mm_cvtsi128_si32(s), i)
    }

    /// # Safety
    /// The CPU must have AVX2; `a.len() == b.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn l2sq_avx2(a: &[i8], b: &[i8]) -> u32 {
        // Each lane is at most 2 · 255² · ⌈65536 / 32⌉ < 2³¹; the total below 2³², read as u32.
        let (head, i) = drive256(a, b, |s, x, y| {
            let d = _mm256_sub_epi16(x, y);
            _mm256_add_epi32(s, _mm256_madd_epi16(d, d))
        });
        (head as u32).wrapping_add(super::scalar::l2sq(&a[i..], &b[i..]))
    }

    /// # Safety
    /// The CPU must have AVX2; `a.len() == b.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
        let (head, i) = drive256(a, b, |s, x, y| _mm256_add_epi32(s, _mm256_madd_epi16(x, y)));
        head.wrapping_add(super::scalar::dot(&a[i..], &b[i..]))
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use std::arch::aarch64::*;

    /// # Safety
    /// `a.len() == b.len()` (NEON is always present on this target).
    pub unsafe fn l2sq(a: &[i8], b: &[i8]) -> u32 {
        let (pa, pb, n) = (a.as_ptr(), b.as_ptr(), a.len());
        let mut s = [vdupq_n_u32(0); 2];
        let mut i = 0;
        while i + 8 <= n {
            let d = vsubl_s8(vld1_s8(pa.add(i)), vld1_s8(pb.add(i)));
            // d² ≤ 255² fits u32; the products are non-negative, summed as unsigned.
            let d = vreinterpretq_u16_s16(vabsq_s16(d));
            s[0] = vmlal_u16(s[0], vget_low_u16(d), vget_low_u16(d));
            s[1] = vmlal_high_u16(s[1], d, d);
            i += 8;
        }
        let head = vaddvq_u32(vaddq_u32(s[0], s[1]));
        head.wrapping_add(super::scalar::l2sq(&a[i..], &b[i..]))
    }

    /// # Safety
    /// `a.len() == b.len()` (NEON is always present on this target).
    pub unsafe fn dot(a: &[i8], b: &[i8]) -> i32 {
        let (pa, pb, n) = (a.as_ptr(), b.as_ptr(), a.len());
        let mut s = [vdupq_n_s32(0); 2];
        let mut i = 0;
        while i + 8 <= n {
            let (x, y) = (vmovl_s8(vld1_s8(pa.add(i))), vmovl_s8(vld1_s8(pb.add(i))));
            s[0] = vmlal_s16(s[0], vget_low_s16(x), vget_low_s16(y));
            s[1] = vmlal_high_s16(s[1], x, y);
            i += 8;
        }
        let head = vaddvq_s32(vaddq_s32(s[0], s[1]));
        head.wrapping_add(super::scalar::dot(&a[i..], &b[i..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::simd::available_levels;
    use proptest::prelude::*;

    fn check_all(a: &[i8], b: &[i8]) {
        let (l2, dot) = (scalar::l2sq(a, b), scalar::dot(a, b));
        for level in available_levels() {
            let k = Kernel::at(level);
            assert_eq!(k.l2sq(a, b), l2, "{level:?} l2sq, dim {}", a.len());
            assert_eq!(k.dot(a, b), dot, "{level:?} dot, dim {}", a.len());
        }
    }

    #[test]
    fn extremes_at_every_length_and_the_largest_dimension() {
        for dim in [
            0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 384, 385, 784,
        ] {
            let a: Vec<i8> = (0..dim)
                .map(|i| if i % 2 == 0 { -128 } else { 127 })
                .collect();
            let b: Vec<i8> = a.iter().map(|&v| if v < 0 { 127 } else { -128 }).collect();
            check_all(&a, &b);
            check_all(&a, &a);
        }
        // The bounds the ranges promise, at MAX_LEN: every difference 255, every product 128².
        let n = MAX_LEN;
        let (lo, hi) = (vec![-128i8; n], vec![127i8; n]);
        check_all(&lo, &hi);
        assert_eq!(scalar::l2sq(&lo, &hi) as u64, n as u64 * 255 * 255);
        check_all(&lo, &lo);
        assert_eq!(scalar::dot(&lo, &lo) as i64, n as i64 * 128 * 128);
    }

    #[test]
    fn a_level_the_cpu_lacks_runs_the_scalar_twin() {
        for level in [Level::Avx512, Level::Avx2, Level::Neon, Level::Scalar] {
            let k = Kernel::at(level);
            assert!(k.0 == level || k.0 == Level::Scalar);
            assert!(k.0.supported());
        }
    }

    proptest! {
        #[test]
        fn every_level_equals_the_scalar_twin(
            pairs in prop::collection::vec((any::<i8>(), any::<i8>()), 0..300),
            skip in 0usize..3,
        ) {
            // Unaligned starts too.
            let s = skip.min(pairs.len());
            let (a, b): (Vec<i8>, Vec<i8>) = pairs.into_iter().unzip();
            check_all(&a[s..], &b[s..]);
            let exact: i64 = a[s..]
                .iter()
                .zip(&b[s..])
                .map(|(&x, &y)| (x as i64 - y as i64).pow(2))
                .sum();
            prop_assert_eq!(scalar::l2sq(&a[s..], &b[s..]) as i64, exact);
        }
    }
}
