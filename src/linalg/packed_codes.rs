//! Block products of u8 queries with rows of i8 codes packed in panels ([`pack_panels`],
//! [`dot_block_packed`]): the same sums as [`super::codes::dot_block`], for the batch path of exact
//! search over screening codes.
//!
//! Why a second layout: with row-major codes, each SIMD accumulator holds the partial sums of one
//! (query, row) pair across lanes, and every output needs a horizontal sum (about as many
//! instructions as its 6 `vpdpbusd` at 384 dimensions). In a panel, one 64-byte step holds 4
//! consecutive dimensions of 16 rows, so a broadcast of 4 query bytes against it
//! (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`) leaves each lane with one row's sum: 16 outputs per
//! accumulator, no horizontal sums, and each code load shared by several queries. This is the
//! usual layout of int8 matrix-product kernels (e.g. oneDNN's VNNI "packed B"). Packing costs one
//! pass over a block's codes, once per block of a batch, against the horizontal sums of every
//! query group that reads the block.
//!
//! Integer arithmetic: every level returns the same numbers as the scalar twin, bit for bit.

use super::simd::Level;

/// Rows per panel: a 64-byte step holds 4 dimensions of 16 rows.
pub const PANEL_ROWS: usize = 16;
/// Bytes of one step of a panel (4 dimensions × [`PANEL_ROWS`] rows).
const STEP: usize = 64;

/// Bytes of the packed form of `rows` rows of `dim` codes.
pub fn packed_len(rows: usize, dim: usize) -> usize {
    rows.div_ceil(PANEL_ROWS) * dim.div_ceil(4) * STEP
}

/// Packs row-major i8 codes (`codes.len() / dim` rows of `dim`) into panels of [`PANEL_ROWS`]
/// rows: panel `p`, step `s` (dimensions `4s..4s+4`) is 64 bytes, the 4 codes of row `16p + j`
/// at bytes `4j..4j+4`. Rows past the last and dimensions past `dim` are zeros. `packed` is
/// overwritten and resized to [`packed_len`].
pub fn pack_panels(codes: &[i8], dim: usize, packed: &mut Vec<i8>) {
    assert!(dim > 0 && codes.len().is_multiple_of(dim));
    let rows = codes.len() / dim;
    let steps = dim.div_ceil(4);
    packed.clear();
    packed.resize(packed_len(rows, dim), 0);
    for (r, row) in codes.chunks_exact(dim).enumerate() {
        let base = (r / PANEL_ROWS) * steps * STEP + (r % PANEL_ROWS) * 4;
        // Whole groups of 4 as fixed-size copies (4-byte moves, not a `memcpy` call each).
        let fours = row.chunks_exact(4);
        let tail = fours.remainder();
        for (s, four) in fours.enumerate() {
            let at = base + s * STEP;
            packed[at..at + 4].copy_from_slice(four);
        }
        if !tail.is_empty() {
            let at = base + (dim / 4) * STEP;
            packed[at..at + tail.len()].copy_from_slice(tail);
        }
    }
}

/// Whether packing a block of rows pays for a batch of `queries` queries that all read it: true
/// where [`dot_block_packed`] has a SIMD kernel at this CPU's level (x86-64 AVX2 or AVX-512) and
/// the batch saves more kernel time than the packing costs. Measured on Zen 5 (criterion,
/// 256 rows × 384): packing 10.2 µs; the products of 64 queries 39.6 → 14.4 µs with VNNI (break-even
/// ≈ 26 queries), 41 → 29 µs on AVX-512 without VNNI (≈ 51), 66.5 → 54.6 µs with AVX2 (≈ 55) and
/// 60 → 31.6 µs with AVX2 and AVX-VNNI (≈ 23; stop 38).
/// Elsewhere the row-major [`super::codes::dot_block`] (NEON there) is the faster choice.
pub fn packing_pays(queries: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let with_vnni = match super::simd::level() {
        Level::Avx512 => super::codes::vnni(),
        Level::Avx2 => super::codes::avx_vnni(),
        _ => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let with_vnni = false;
    has_packed_kernel() && queries >= if with_vnni { 32 } else { 64 }
}

/// Whether [`dot_block_packed`] has a SIMD kernel at this CPU's level (x86-64 AVX2 or AVX-512),
/// for codes packed once and read many times (an int8 encoder's weights).
pub fn has_packed_kernel() -> bool {
    matches!(super::simd::level(), Level::Avx512 | Level::Avx2)
}

/// `out[i·n + r] = Σ_d queries[i·dim + d] · code(r, d)` for the `m = queries.len() / dim` u8
/// queries (each value at most [`super::codes::MAX_U8_QUERY`]) and the first `n` rows of
/// `packed` ([`pack_panels`] of at least `n` rows), at the widest level this CPU has. Sums must
/// fit in i32 (`dim · 128 · 128 < 2³¹`).
///
/// # Panics
/// If `dim` is 0 or does not divide `queries.len()`, `packed` holds fewer than `n` rows, or
/// `out.len() != m · n`; in debug builds, if a query value exceeds `MAX_U8_QUERY`.
pub fn dot_block_packed(queries: &[u8], packed: &[i8], dim: usize, n: usize, out: &mut [i32]) {
    dot_block_packed_at(super::simd::level(), queries, packed, dim, n, out)
}

/// [`dot_block_packed`] at `level` (a level without a packed kernel runs the scalar code).
///
/// # Panics
/// As [`dot_block_packed`].
pub fn dot_block_packed_at(
    level: Level,
    queries: &[u8],
    packed: &[i8],
    dim: usize,
    n: usize,
    out: &mut [i32],
) {
    assert!(dim > 0 && queries.len().is_multiple_of(dim));
    let m = queries.len() / dim;
    assert!(packed.len() >= packed_len(n, dim), "packed holds n rows");
    assert_eq!(out.len(), m * n, "out holds m × n products");
    debug_assert!(queries.iter().all(|&v| v <= super::codes::MAX_U8_QUERY));
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's CPU features were checked by `supported` (and VNNI by `vnni` or
        // `avx_vnni`);
        // lengths are asserted above, and the kernels read and write inside them.
        Level::Avx512 if level.supported() && super::codes::vnni() => {
            return unsafe { x86::packed_avx512_vnni(queries, packed, dim, n, out) }
        }
        Level::Avx512 if level.supported() => {
            return unsafe { x86::packed_avx512(queries, packed, dim, n, out) }
        }
        Level::Avx2 if level.supported() && super::codes::avx_vnni() => {
            return unsafe { x86::packed_avx2_vnni(queries, packed, dim, n, out) }
        }
        Level::Avx2 if level.supported() => {
            return unsafe { x86::packed_avx2(queries, packed, dim, n, out) }
        }
        _ => {}
    }
    let _ = level;
    scalar::dot_block_packed(queries, packed, dim, n, out)
}

/// The 4 query bytes of step `s` (dimensions `4s..4s+4`, zeros past `dim`) as one little-endian
/// word, the operand a kernel broadcasts.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn query_word(q: &[u8], s: usize) -> i32 {
    let mut w = [0u8; 4];
    let from = 4 * s;
    let to = q.len().min(from + 4);
    w[..to - from].copy_from_slice(&q[from..to]);
    i32::from_le_bytes(w)
}

/// The portable version and test oracle of the packed layout.
pub mod scalar {
    use super::{PANEL_ROWS, STEP};

    /// See [`super::dot_block_packed`].
    pub fn dot_block_packed(queries: &[u8], packed: &[i8], dim: usize, n: usize, out: &mut [i32]) {
        let steps = dim.div_ceil(4);
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            for r in 0..n {
                let base = (r / PANEL_ROWS) * steps * STEP + (r % PANEL_ROWS) * 4;
                out[i * n + r] = (0..dim).fold(0i32, |acc, d| {
                    let code = packed[base + (d / 4) * STEP + d % 4];
                    acc.wrapping_add(q[d] as i32 * code as i32)
                });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{query_word, PANEL_ROWS, STEP};
    use std::arch::x86_64::*;

    /// AVX-VNNI tile: 4 queries × 1 panel (8 accumulators; 3 × 2 spilled: 101 Gelem/s, 2 × 2
    /// 194, 4 × 1 199, 6 × 1 178; criterion, Zen 5 at `VELLUM_SIMD=avx2`, stop 38).
    const MR_AVX_VNNI: usize = 4;
    const NR_AVX_VNNI: usize = 1;

    /// A packed kernel: tiles of `MR` queries × `NR` panels with the accumulators in registers,
    /// one vector (`$vecs = 1`, 512-bit) or two (`$vecs = 2`, 256-bit) per panel. Panels past the
    /// last whole tile go through `MR × 1` tiles, queries past it through `1 × 1` tiles. The last
    /// panel's rows past `n` are computed (zeros in the packing) but not stored. Tile shapes:
    /// benches/RESULTS.md, stops 37 and 38 (VNNI 8 × 2; `vpmaddubsw` 8 × 2 on AVX-512, 2 × 2 on AVX2;
    /// AVX-VNNI 4 × 1).
    macro_rules! packed_kernel {
        ($name:ident, $feat:literal, $mr:expr, $nr:expr, $vec:ty, $vecs:expr, $zero:expr,
         $set1:expr, $store:expr, $dot:expr) => {
            /// # Safety
            /// The CPU must have the target features; lengths as asserted by
            /// `dot_block_packed_at`.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(
                queries: &[u8],
                packed: &[i8],
                dim: usize,
                n: usize,
                out: &mut [i32],
            ) {
                const LANES: usize = PANEL_ROWS / $vecs;

                /// One step (4 dimensions) of a tile: `x` points at the step in its first panel,
                /// the next panels are `panel_bytes` apart; `words` are the queries' 4 bytes.
                ///
                /// # Safety
                /// The CPU has the target features, and the 64 bytes at `x + j · panel_bytes` are
                /// readable for every `j < NR`.
                #[target_feature(enable = $feat)]
                #[inline]
                unsafe fn step<const MR: usize, const NR: usize>(
                    acc: &mut [[[$vec; $vecs]; NR]; MR],
                    x: *const i8,
                    panel_bytes: usize,
                    words: [i32; MR],
                ) {
                    let mut xs: [[$vec; $vecs]; NR] = [[$zero; $vecs]; NR];
                    for (j, xj) in xs.iter_mut().enumerate() {
                        for (v, xv) in xj.iter_mut().enumerate() {
                            let at = j * panel_bytes + v * (STEP / $vecs);
                            // SAFETY: `at + STEP / $vecs <= j · panel_bytes + 64`, readable by the
                            // contract above.
                            *xv = std::ptr::read_unaligned(x.add(at).cast());
                        }
                    }
                    for (acc_a, &word) in acc.iter_mut().zip(&words) {
                        let qv = $set1(word);
                        for (acc_j, xj) in acc_a.iter_mut().zip(&xs) {
                            for (acc_v, xv) in acc_j.iter_mut().zip(xj) {
                                *acc_v = $dot(*acc_v, qv, *xv);
                            }
                        }
                    }
                }

                /// Sums of queries `i..i+MR` and panels `p..p+NR`, stored into `out`.
                #[target_feature(enable = $feat)]
                unsafe fn tile<const MR: usize, const NR: usize>(
                    (queries, packed, dim, n): (&[u8], &[i8], usize, usize),
                    out: &mut [i32],
                    i: usize,
                    p: usize,
                ) {
                    let steps = dim.div_ceil(4);
                    let whole = dim / 4;
                    let panel_bytes = steps * STEP;
                    let mut acc: [[[$vec; $vecs]; NR]; MR] = [[[$zero; $vecs]; NR]; MR];
                    // SAFETY (every raw read below): panels `p..p+NR` and queries `i..i+MR`
                    // exist (the caller's loops stop at `panels` and `m`), so the steps read are
                    // inside `packed` (`packed_len(n, dim)` bytes, asserted by the dispatcher)
                    // and the query words inside `queries`.
                    let first = packed.as_ptr().add(p * panel_bytes);
                    let qs: [*const u8; MR] =
                        std::array::from_fn(|a| queries.as_ptr().add((i + a) * dim));
                    for s in 0..whole {
                        // Dimensions `4s..4s+4` are inside each query (s < dim / 4).
                        let words: [i32; MR] = std::array::from_fn(|a| {
                            std::ptr::read_unaligned(qs[a].add(4 * s).cast::<i32>())
                        });
                        step(&mut acc, first.add(s * STEP), panel_bytes, words);
                    }
                    if whole < steps {
                        let words: [i32; MR] = std::array::from_fn(|a| {
                            query_word(&queries[(i + a) * dim..(i + a + 1) * dim], whole)
                        });
                        step(&mut acc, first.add(whole * STEP), panel_bytes, words);
                    }
                    for (a, acc_a) in acc.iter().enumerate() {
                        for (j, acc_j) in acc_a.iter().enumerate() {
                            let first = (p + j) * PANEL_ROWS;
                            let at = (i + a) * n + first;
                            let rows = PANEL_ROWS.min(n - first);
                            let mut sums = [0i32; PANEL_ROWS];
                            for (v, part) in acc_j.iter().enumerate() {
                                // SAFETY: `sums` holds `PANEL_ROWS = $vecs · LANES` i32, so lanes
                                // `v · LANES..(v + 1) · LANES` are inside it.
                                let to = sums.as_mut_ptr().add(v * LANES);
                                $store(to, *part);
                            }
                            if rows == PANEL_ROWS {
                                // A constant length: vector moves, not a call to `memmove`.
                                out[at..at + PANEL_ROWS].copy_from_slice(&sums);
                            } else {
                                out[at..at + rows].copy_from_slice(&sums[..rows]);
                            }
                        }
                    }
                }

                let m = queries.len() / dim;
                let panels = n.div_ceil(PANEL_ROWS);
                let args = (queries, packed, dim, n);
                let (m_full, p_full) = (m / $mr * $mr, panels / $nr * $nr);
                for i in (0..m_full).step_by($mr) {
                    for p in (0..p_full).step_by($nr) {
                        tile::<$mr, $nr>(args, out, i, p);
                    }
                    for p in p_full..panels {
                        tile::<$mr, 1>(args, out, i, p);
                    }
                }
                for i in m_full..m {
                    for p in 0..panels {
                        tile::<1, 1>(args, out, i, p);
                    }
                }
            }
        };
    }

    packed_kernel!(
        packed_avx512_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni",
        8,
        2,
        __m512i,
        1,
        _mm512_setzero_si512(),
        |w| _mm512_set1_epi32(w),
        |to: *mut i32, v| _mm512_storeu_si512(to.cast(), v),
        |acc, q, x| _mm512_dpbusd_epi32(acc, q, x)
    );

    packed_kernel!(
        packed_avx512,
        "avx512f,avx512bw,avx512vl",
        8,
        2,
        __m512i,
        1,
        _mm512_setzero_si512(),
        |w| _mm512_set1_epi32(w),
        |to: *mut i32, v| _mm512_storeu_si512(to.cast(), v),
        |acc, q, x| _mm512_add_epi32(
            acc,
            _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), _mm512_set1_epi16(1))
        )
    );

    packed_kernel!(
        packed_avx2_vnni,
        "avx2,avxvnni",
        MR_AVX_VNNI,
        NR_AVX_VNNI,
        __m256i,
        2,
        _mm256_setzero_si256(),
        |w| _mm256_set1_epi32(w),
        |to: *mut i32, v| _mm256_storeu_si256(to.cast(), v),
        |acc, q, x| _mm256_dpbusd_avx_epi32(acc, q, x)
    );

    packed_kernel!(
        packed_avx2,
        "avx2",
        2,
        2,
        __m256i,
        2,
        _mm256_setzero_si256(),
        |w| _mm256_set1_epi32(w),
        |to: *mut i32, v| _mm256_storeu_si256(to.cast(), v),
        |acc, q, x| _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1))
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::codes::{scalar::dot_block as row_major, MAX_U8_QUERY};
    use crate::linalg::simd::available_levels;
    use proptest::prelude::*;

    fn check(queries: &[u8], codes: &[i8], dim: usize) {
        let (m, n) = (queries.len() / dim, codes.len() / dim);
        let mut want = vec![0; m * n];
        row_major(queries, codes, dim, &mut want);
        let mut packed = vec![5; 3];
        pack_panels(codes, dim, &mut packed);
        assert_eq!(packed.len(), packed_len(n, dim));
        for level in available_levels() {
            let mut got = vec![7; m * n];
            dot_block_packed_at(level, queries, &packed, dim, n, &mut got);
            assert_eq!(got, want, "{level:?}, dim {dim}, {m} × {n}");
        }
        // The kernels without VNNI, which the dispatch skips on a VNNI CPU, and AVX-VNNI, which
        // it reaches only at `Level::Avx2`.
        #[cfg(target_arch = "x86_64")]
        {
            if Level::Avx512.supported() {
                let mut got = vec![7; m * n];
                // SAFETY: the CPU has AVX-512 F/BW/VL (checked); lengths are consistent.
                unsafe { x86::packed_avx512(queries, &packed, dim, n, &mut got) };
                assert_eq!(got, want, "avx512 without vnni, dim {dim}, {m} × {n}");
            }
            if Level::Avx2.supported() {
                let mut got = vec![7; m * n];
                // SAFETY: the CPU has AVX2 (checked); lengths are consistent.
                unsafe { x86::packed_avx2(queries, &packed, dim, n, &mut got) };
                assert_eq!(got, want, "avx2 without vnni, dim {dim}, {m} × {n}");
            }
            if Level::Avx2.supported() && std::is_x86_feature_detected!("avxvnni") {
                let mut got = vec![7; m * n];
                // SAFETY: the CPU has AVX2 and AVX-VNNI (checked); lengths are consistent.
                unsafe { x86::packed_avx2_vnni(queries, &packed, dim, n, &mut got) };
                assert_eq!(got, want, "avx2 with avx-vnni, dim {dim}, {m} × {n}");
            }
        }
    }

    #[test]
    fn the_layout_is_four_dimensions_of_sixteen_rows_a_step() {
        let dim = 6;
        let codes: Vec<i8> = (0..17 * dim).map(|i| (i % 100) as i8).collect();
        let mut packed = Vec::new();
        pack_panels(&codes, dim, &mut packed);
        // 2 panels × 2 steps × 64 bytes; row 1, dimensions 4..6 at step 1, bytes 4..6 (then zeros).
        assert_eq!(packed.len(), 2 * 2 * 64);
        assert_eq!(&packed[64 + 4..64 + 8], &[10, 11, 0, 0]);
        // Row 16 opens the second panel; rows 17.. of it are zeros.
        assert_eq!(&packed[128..132], &[96, 97, 98, 99]);
        assert!(packed[132..192].iter().all(|&c| c == 0));
    }

    #[test]
    fn extremes_do_not_saturate_on_any_level() {
        for dim in [1, 3, 4, 5, 63, 64, 65, 384, 385, 1000] {
            let q = vec![MAX_U8_QUERY; dim * 9];
            let codes: Vec<i8> = (0..dim * 37)
                .map(|i| if i % 2 == 0 { 127 } else { -128 })
                .collect();
            check(&q, &codes, dim);
            let neg = vec![-128i8; dim * 5];
            check(&q, &neg, dim);
        }
    }

    /// A block: `dim`, u8 queries (`m × dim`, each at most `MAX_U8_QUERY`) and i8 codes (`n × dim`).
    fn block() -> impl Strategy<Value = (usize, Vec<u8>, Vec<i8>)> {
        (1usize..140, 1usize..11, 1usize..70).prop_flat_map(|(dim, m, n)| {
            (
                Just(dim),
                prop::collection::vec(0..=MAX_U8_QUERY, dim * m),
                prop::collection::vec(any::<i8>(), dim * n),
            )
        })
    }

    proptest! {
        #[test]
        fn every_level_equals_the_row_major_scalar_twin((dim, q, codes) in block()) {
            check(&q, &codes, dim);
        }
    }
}
