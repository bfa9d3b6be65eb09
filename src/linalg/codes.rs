//! Exact integer dot products with rows of i8 codes: one i16 query at a time ([`dot_rows`], the
//! inner loop of exact single-query search over a dense field's screening codes,
//! `format-spec/screen.md`), or a block of u8 queries against a block of rows ([`dot_block`],
//! batches: `vpmaddubsw`, 32 products an instruction on AVX2, 64 on AVX-512).
//!
//! Integer arithmetic makes every variant return the same numbers: the AVX-512 (`vpmovsxbw` +
//! `vpmaddwd`, 32 dimensions a step), AVX2 (the same on 16 dimensions), NEON (`smlal`, 8
//! dimensions a step) and scalar versions agree bit for bit, so a search's candidates never depend on the CPU. The caller keeps the sums inside
//! `i32`: with codes in `[-128, 127]`, query values bounded by [`max_query_value`] cannot overflow.
//! Written by hand rather than through simsimd because simsimd has no i16 × i8 product, and i8 × i8
//! would quantise the query to 8 bits, which loosens the error bound the search relies on.

use super::simd::Level;

/// Rows scored together by the SIMD variants (they share each query load).
const ROWS: usize = 4;

/// The largest query magnitude for which a `dim`-dimensional product with i8 codes stays within
/// `i32` in every partial sum: `min(32767, (2³¹ − 1) / (128 · dim))`.
pub fn max_query_value(dim: usize) -> i32 {
    let cap = (i32::MAX as i64 / (128 * dim.max(1) as i64)).min(i16::MAX as i64);
    cap as i32
}

/// `out[r] = Σ_d q[d] · codes[r·dim + d]` for the `out.len()` rows of `codes` (row-major,
/// `dim = q.len()`), at the widest level this CPU has.
pub fn dot_rows(q: &[i16], codes: &[i8], out: &mut [i32]) {
    dot_rows_at(super::simd::level(), q, codes, out)
}

/// [`dot_rows`] at `level` (a level the CPU lacks runs the scalar code).
///
/// # Panics
/// If `codes.len() != out.len() · q.len()`.
pub fn dot_rows_at(level: Level, q: &[i16], codes: &[i8], out: &mut [i32]) {
    assert_eq!(
        codes.len(),
        out.len() * q.len(),
        "codes hold out.len() rows of q.len() values"
    );
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's CPU features were checked by `supported`; lengths are asserted
        // above, and the kernels read `codes` and `q` only inside those lengths.
        Level::Avx512 if level.supported() => {
            return unsafe { x86::dot_rows_avx512(q, codes, out) }
        }
        Level::Avx2 if level.supported() => return unsafe { x86::dot_rows_avx2(q, codes, out) },
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        // SAFETY: NEON is part of the aarch64 baseline; lengths are asserted above.
        return unsafe { neon::dot_rows(q, codes, out) };
    }
    let _ = level;
    scalar::dot_rows(q, codes, out)
}

/// Largest u8 query value of [`dot_block`]: with codes in `[-128, 127]`, `vpmaddubsw`'s pairs of
/// products stay within i16 (2 · 128 · 128 = 32768 would not; 2 · 128 · 127 does).
pub const MAX_U8_QUERY: u8 = 128;

/// `out[i·n + r] = Σ_d queries[i·dim + d] · codes[r·dim + d]` for `m = queries.len() / dim` u8
/// queries (each value at most [`MAX_U8_QUERY`]) and `n = out.len() / m` rows of i8 codes, at the
/// widest level this CPU has. Sums must fit in i32 (`dim · 128 · 128 < 2³¹`). On x86-64, large
/// exact-search batches and the int8 encoder pack their rows and use [`super::packed_codes`]
/// instead (a 1.1–2.9× faster kernel, packing excluded); this row-major kernel serves small
/// batches there, and everything on NEON and scalar CPUs.
///
/// # Panics
/// If the lengths disagree or a query value exceeds [`MAX_U8_QUERY`] (checked in debug builds).
pub fn dot_block(queries: &[u8], codes: &[i8], dim: usize, out: &mut [i32]) {
    dot_block_at(super::simd::level(), queries, codes, dim, out)
}

/// [`dot_block`] at `level` (a level the CPU lacks runs the scalar code).
pub fn dot_block_at(level: Level, queries: &[u8], codes: &[i8], dim: usize, out: &mut [i32]) {
    assert!(dim > 0 && queries.len().is_multiple_of(dim) && codes.len().is_multiple_of(dim));
    let (m, n) = (queries.len() / dim, codes.len() / dim);
    assert_eq!(out.len(), m * n, "out holds m × n products");
    debug_assert!(queries.iter().all(|&v| v <= MAX_U8_QUERY));
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's CPU features were checked by `supported`; lengths are asserted
        // above, and the kernels read inside them.
        Level::Avx512 if level.supported() && vnni() => {
            return unsafe { x86::dot_block_avx512_vnni(queries, codes, dim, out) }
        }
        Level::Avx512 if level.supported() => {
            return unsafe { x86::dot_block_avx512(queries, codes, dim, out) }
        }
        Level::Avx2 if level.supported() => {
            return unsafe { x86::dot_block_avx2(queries, codes, dim, out) }
        }
        _ => {}
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level == Level::Neon {
        // SAFETY: NEON is part of the aarch64 baseline; lengths are asserted above.
        return unsafe { neon::dot_block(queries, codes, dim, out) };
    }
    let _ = level;
    scalar::dot_block(queries, codes, dim, out)
}

/// Rounds to the nearest integer, ties to even, for `|x| ≤ 2²²`: adding and subtracting 1.5·2²³
/// leaves the integer part (one add and one subtract, which vectorise on every x86-64 level, where
/// `f32::round` is a libm call without SSE4.1).
#[inline(always)]
fn round_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// Quantizes each `dim`-value row of `src` to `u8` values `round(x / scale) + limit` with its own
/// `scale = max|x| / limit` (1 for a zero row), appending the codes to `out` and the scales to
/// `scales`. `limit` ≤ 64 keeps the codes within [`MAX_U8_QUERY`]. Non-finite values are the
/// caller's to exclude.
pub fn quantize_rows_u8(
    src: &[f32],
    dim: usize,
    limit: i32,
    out: &mut Vec<u8>,
    scales: &mut Vec<f32>,
) {
    assert!(limit > 0 && 2 * limit <= MAX_U8_QUERY as i32);
    let start = out.len();
    out.resize(start + src.len(), 0);
    let level = super::simd::level();
    for (row, codes) in src
        .chunks_exact(dim)
        .zip(out[start..].chunks_exact_mut(dim))
    {
        scales.push(quantize_row(level, row, limit as f32, codes));
    }
}

#[inline(always)]
fn quantize_row_body(row: &[f32], limit: f32, codes: &mut [u8]) -> f32 {
    // A select-based maximum (NaN-blind, unlike `f32::max`) vectorises as a reduction.
    let max = row
        .iter()
        .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let scale = if max > 0.0 { max / limit } else { 1.0 };
    let inv = 1.0 / scale;
    for (c, &v) in codes.iter_mut().zip(row) {
        *c = (round_small((v * inv).clamp(-limit, limit)) + limit) as u8;
    }
    scale
}

fn quantize_row(level: Level, row: &[f32], limit: f32, codes: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's features were checked by `supported`; the body is safe code.
        Level::Avx512 if level.supported() => {
            return unsafe { x86::quantize_row_avx512(row, limit, codes) }
        }
        Level::Avx2 if level.supported() => {
            return unsafe { x86::quantize_row_avx2(row, limit, codes) }
        }
        _ => {}
    }
    let _ = level;
    quantize_row_body(row, limit, codes)
}

/// `dst[r][o] += row_scale[r] · col_scale[o] · (dots[r][o] − col_offset[o])` for the
/// `dots.len() / col_scale.len()` rows: scales integer products back to f32 and accumulates them.
pub fn accumulate_scaled(
    dst: &mut [f32],
    dots: &[i32],
    row_scale: &[f32],
    col_scale: &[f32],
    col_offset: &[i32],
) {
    let n = col_scale.len();
    assert!(col_offset.len() == n && dots.len() == row_scale.len() * n && dst.len() >= dots.len());
    let level = super::simd::level();
    for ((d, p), &s) in dst
        .chunks_exact_mut(n)
        .zip(dots.chunks_exact(n))
        .zip(row_scale)
    {
        accumulate_row(level, d, p, s, col_scale, col_offset);
    }
}

#[inline(always)]
fn accumulate_row_body(d: &mut [f32], p: &[i32], s: f32, col_scale: &[f32], col_offset: &[i32]) {
    let n = d
        .len()
        .min(p.len())
        .min(col_scale.len())
        .min(col_offset.len());
    let (d, p, cs, co) = (&mut d[..n], &p[..n], &col_scale[..n], &col_offset[..n]);
    for o in 0..n {
        d[o] += s * cs[o] * (p[o] - co[o]) as f32;
    }
}

fn accumulate_row(level: Level, d: &mut [f32], p: &[i32], s: f32, cs: &[f32], co: &[i32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: the level's features were checked by `supported`; the body is safe code.
        Level::Avx512 if level.supported() => {
            return unsafe { x86::accumulate_row_avx512(d, p, s, cs, co) }
        }
        Level::Avx2 if level.supported() => {
            return unsafe { x86::accumulate_row_avx2(d, p, s, cs, co) }
        }
        _ => {}
    }
    let _ = level;
    accumulate_row_body(d, p, s, cs, co)
}

/// Whether the CPU has AVX-512 VNNI (`vpdpbusd`: 64 u8 × i8 products and their sums in one
/// instruction), used within [`Level::Avx512`] unless `VELLUM_SIMD=avx512-novnni`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn vnni() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VNNI.get_or_init(|| {
        std::is_x86_feature_detected!("avx512vnni")
            && std::env::var("VELLUM_SIMD").ok().as_deref() != Some("avx512-novnni")
    })
}

/// Whether the CPU has AVX-VNNI (the VEX form of `vpdpbusd` on 256-bit vectors: Alder Lake and
/// later Intel cores, Zen 5), used within [`Level::Avx2`] unless `VELLUM_SIMD=avx2-novnni`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx_vnni() -> bool {
    static AVX_VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX_VNNI.get_or_init(|| {
        std::is_x86_feature_detected!("avxvnni")
            && std::env::var("VELLUM_SIMD").ok().as_deref() != Some("avx2-novnni")
    })
}

/// The portable version and test oracle.
pub mod scalar {
    /// See [`super::dot_block`].
    pub fn dot_block(queries: &[u8], codes: &[i8], dim: usize, out: &mut [i32]) {
        let n = codes.len() / dim;
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            for (r, row) in codes.chunks_exact(dim).enumerate() {
                out[i * n + r] = q
                    .iter()
                    .zip(row)
                    .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32));
            }
        }
    }

    /// See [`super::dot_rows`]. Sums wrap like the SIMD lanes (the caller's bound rules it out).
    pub fn dot_rows(q: &[i16], codes: &[i8], out: &mut [i32]) {
        let dim = q.len();
        if dim == 0 {
            out.fill(0);
            return;
        }
        for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim)) {
            *o = q
                .iter()
                .zip(row)
                .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32));
        }
    }
}

/// NEON versions (aarch64 baseline): widening multiply-accumulates (`smlal`) of 8 dimensions a
/// step. Integer arithmetic, so they equal the scalar twins bit for bit.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::ROWS;
    use std::arch::aarch64::*;

    /// Adds the products of 8 i16 queries and 8 i16-widened codes to `acc`'s two halves.
    #[inline(always)]
    unsafe fn mlal8(acc: &mut [int32x4_t; 2], q: int16x8_t, x: int16x8_t) {
        acc[0] = vmlal_s16(acc[0], vget_low_s16(q), vget_low_s16(x));
        acc[1] = vmlal_high_s16(acc[1], q, x);
    }

    #[inline(always)]
    unsafe fn hsum(acc: &[int32x4_t; 2]) -> i32 {
        vaddvq_s32(vaddq_s32(acc[0], acc[1]))
    }

    fn tail(q: impl Iterator<Item = i32>, row: &[i8]) -> i32 {
        q.zip(row)
            .fold(0i32, |a, (x, &y)| a.wrapping_add(x * y as i32))
    }

    /// # Safety
    /// `codes.len() == out.len() * q.len()` (NEON is always present on aarch64).
    pub unsafe fn dot_rows(q: &[i16], codes: &[i8], out: &mut [i32]) {
        let dim = q.len();
        let whole = dim / 8 * 8;
        let zero = [vdupq_n_s32(0); 2];
        let mut r = 0;
        while r < out.len() {
            let rows = ROWS.min(out.len() - r);
            let base = codes.as_ptr().add(r * dim);
            let mut acc = [zero; ROWS];
            let mut d = 0;
            while d < whole {
                let qv = vld1q_s16(q.as_ptr().add(d));
                for (i, a) in acc.iter_mut().take(rows).enumerate() {
                    mlal8(a, qv, vmovl_s8(vld1_s8(base.add(i * dim + d))));
                }
                d += 8;
            }
            for (i, a) in acc.iter().take(rows).enumerate() {
                let row = &codes[(r + i) * dim + whole..(r + i + 1) * dim];
                let t = tail(q[whole..].iter().map(|&v| v as i32), row);
                out[r + i] = hsum(a).wrapping_add(t);
            }
            r += rows;
        }
    }

    /// # Safety
    /// Lengths as asserted by `dot_block_at` (NEON is always present on aarch64).
    pub unsafe fn dot_block(queries: &[u8], codes: &[i8], dim: usize, out: &mut [i32]) {
        const MR: usize = 2;
        let (m, n) = (queries.len() / dim, codes.len() / dim);
        let whole = dim / 8 * 8;
        let zero = [vdupq_n_s32(0); 2];
        let mut i = 0;
        while i < m {
            let qs = MR.min(m - i);
            let mut r = 0;
            while r < n {
                let rows = ROWS.min(n - r);
                let mut acc = [[zero; ROWS]; MR];
                let mut d = 0;
                while d < whole {
                    let xs: [int16x8_t; ROWS] = std::array::from_fn(|j| {
                        let j = j.min(rows - 1);
                        vmovl_s8(vld1_s8(codes.as_ptr().add((r + j) * dim + d)))
                    });
                    for (a, acc_a) in acc.iter_mut().take(qs).enumerate() {
                        // u8 values ≤ 128 are the same numbers as i16.
                        let qv = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(
                            queries.as_ptr().add((i + a) * dim + d),
                        )));
                        for (acc_j, x) in acc_a.iter_mut().zip(&xs).take(rows) {
                            mlal8(acc_j, qv, *x);
                        }
                    }
                    d += 8;
                }
                for (a, acc_a) in acc.iter().take(qs).enumerate() {
                    let q = &queries[(i + a) * dim + whole..(i + a + 1) * dim];
                    for (j, acc_j) in acc_a.iter().take(rows).enumerate() {
                        let row = &codes[(r + j) * dim + whole..(r + j + 1) * dim];
                        let t = tail(q.iter().map(|&v| v as i32), row);
                        out[(i + a) * n + r + j] = hsum(acc_j).wrapping_add(t);
                    }
                }
                r += rows;
            }
            i += qs;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ROWS;
    use std::arch::x86_64::*;

    /// The block kernel: full `MR × NR` tiles with the accumulators in registers (constant loop
    /// bounds), edge tiles and the dimensions past the last whole vector in scalar code. `$dot`
    /// adds the products of one vector of u8 queries and one of i8 codes to an i32 accumulator.
    macro_rules! block_kernel {
        ($name:ident, $feat:literal, $mr:expr, $nr:expr, $vec:ty, $w:expr, $zero:expr, $load:expr,
         $dot:expr, $hsum:expr) => {
            /// # Safety
            /// The CPU must have the target features; lengths as asserted by `dot_block_at`.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(queries: &[u8], codes: &[i8], dim: usize, out: &mut [i32]) {
                const MR: usize = $mr;
                const NR: usize = $nr;
                let (m, n) = (queries.len() / dim, codes.len() / dim);
                let whole = dim / $w * $w;
                let scalar = |i: usize, r: usize, from: usize| -> i32 {
                    queries[i * dim + from..(i + 1) * dim]
                        .iter()
                        .zip(&codes[r * dim + from..(r + 1) * dim])
                        .fold(0i32, |a, (&x, &y)| a.wrapping_add(x as i32 * y as i32))
                };
                let (m_full, n_full) = (m / MR * MR, n / NR * NR);
                for i in (0..m_full).step_by(MR) {
                    for r in (0..n_full).step_by(NR) {
                        let mut acc: [[$vec; NR]; MR] = [[$zero; NR]; MR];
                        let q = queries.as_ptr().add(i * dim);
                        let x = codes.as_ptr().add(r * dim);
                        let mut d = 0;
                        while d < whole {
                            let xs: [$vec; NR] =
                                std::array::from_fn(|j| $load(x.add(j * dim + d).cast()));
                            for a in 0..MR {
                                let qv: $vec = $load(q.add(a * dim + d).cast());
                                for j in 0..NR {
                                    acc[a][j] = $dot(acc[a][j], qv, xs[j]);
                                }
                            }
                            d += $w;
                        }
                        for a in 0..MR {
                            for j in 0..NR {
                                let v: i32 = $hsum(acc[a][j]);
                                out[(i + a) * n + r + j] =
                                    v.wrapping_add(scalar(i + a, r + j, whole));
                            }
                        }
                    }
                    for r in n_full..n {
                        for a in 0..MR {
                            out[(i + a) * n + r] = scalar(i + a, r, 0);
                        }
                    }
                }
                for i in m_full..m {
                    for r in 0..n {
                        out[i * n + r] = scalar(i, r, 0);
                    }
                }
            }
        };
    }

    /// The portable bodies compiled for wider vectors (the compiler vectorises them).
    macro_rules! multiversion {
        ($feat:literal, $q:ident, $a:ident) => {
            /// # Safety
            /// The CPU must have the target features.
            #[target_feature(enable = $feat)]
            pub unsafe fn $q(row: &[f32], limit: f32, codes: &mut [u8]) -> f32 {
                super::quantize_row_body(row, limit, codes)
            }

            /// # Safety
            /// The CPU must have the target features.
            #[target_feature(enable = $feat)]
            pub unsafe fn $a(d: &mut [f32], p: &[i32], s: f32, cs: &[f32], co: &[i32]) {
                super::accumulate_row_body(d, p, s, cs, co)
            }
        };
    }
    multiversion!("avx2,fma", quantize_row_avx2, accumulate_row_avx2);
    multiversion!(
        "avx512f,avx512bw,avx512vl",
        quantize_row_avx512,
        accumulate_row_avx512
    );

    #[inline(always)]
    unsafe fn hsum256(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    block_kernel!(
        dot_block_avx2,
        "avx2",
        4,
        2,
        __m256i,
        32,
        _mm256_setzero_si256(),
        |p: *const __m256i| _mm256_loadu_si256(p),
        |acc, q, x| _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1))
        ),
        |v| hsum256(v)
    );

    block_kernel!(
        dot_block_avx512,
        "avx512f,avx512bw,avx512vl",
        4,
        2,
        __m512i,
        64,
        _mm512_setzero_si512(),
        |p: *const __m512i| _mm512_loadu_si512(p),
        |acc, q, x| _mm512_add_epi32(
            acc,
            _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), _mm512_set1_epi16(1))
        ),
        |v| _mm512_reduce_add_epi32(v)
    );

    block_kernel!(
        dot_block_avx512_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni",
        4,
        2,
        __m512i,
        64,
        _mm512_setzero_si512(),
        |p: *const __m512i| _mm512_loadu_si512(p),
        |acc, q, x| _mm512_dpbusd_epi32(acc, q, x),
        |v| _mm512_reduce_add_epi32(v)
    );

    #[inline(always)]
    fn tail(q: &[i16], row: &[i8], from: usize) -> i32 {
        q[from..]
            .iter()
            .zip(&row[from..])
            .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32))
    }

    /// # Safety
    /// The CPU must have AVX2; `codes.len() == out.len() * q.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_rows_avx2(q: &[i16], codes: &[i8], out: &mut [i32]) {
        let dim = q.len();
        let whole = dim / 16 * 16;
        #[inline(always)]
        unsafe fn hsum(v: __m256i) -> i32 {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }
        let mut r = 0;
        while r + ROWS <= out.len() {
            let base = codes.as_ptr().add(r * dim);
            let mut acc = [_mm256_setzero_si256(); ROWS];
            let mut d = 0;
            while d < whole {
                // A step reads 64 bytes of the group: ask for one line of the group two groups
                // ahead, so that a single query's scan of codes from memory overlaps its misses
                // (−15 % time, benches/RESULTS.md, stop 38). A prefetch never faults, and
                // `wrapping_add` keeps an address past the codes a plain integer.
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(2 * ROWS * dim + 4 * d).cast());
                let qv = _mm256_loadu_si256(q.as_ptr().add(d).cast());
                for (i, a) in acc.iter_mut().enumerate() {
                    let x = _mm_loadu_si128(base.add(i * dim + d).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(qv, _mm256_cvtepi8_epi16(x)));
                }
                d += 16;
            }
            for (i, a) in acc.iter().enumerate() {
                let row = &codes[(r + i) * dim..(r + i + 1) * dim];
                out[r + i] = hsum(*a).wrapping_add(tail(q, row, whole));
            }
            r += ROWS;
        }
        while r < out.len() {
            let base = codes.as_ptr().add(r * dim);
            let mut acc = _mm256_setzero_si256();
            let mut d = 0;
            while d < whole {
                let qv = _mm256_loadu_si256(q.as_ptr().add(d).cast());
                let x = _mm_loadu_si128(base.add(d).cast());
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(qv, _mm256_cvtepi8_epi16(x)));
                d += 16;
            }
            let row = &codes[r * dim..(r + 1) * dim];
            out[r] = hsum(acc).wrapping_add(tail(q, row, whole));
            r += 1;
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VL; `codes.len() == out.len() * q.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn dot_rows_avx512(q: &[i16], codes: &[i8], out: &mut [i32]) {
        let dim = q.len();
        let whole = dim / 32 * 32;
        let rest = dim - whole;
        // Lanes of the last, partial step (masked loads read nothing beyond the row).
        let mask: __mmask32 = if rest == 0 { 0 } else { (1u32 << rest) - 1 };
        let q_tail = _mm512_maskz_loadu_epi16(mask, q.as_ptr().add(whole).cast());
        let mut r = 0;
        while r + ROWS <= out.len() {
            let base = codes.as_ptr().add(r * dim);
            let mut acc = [_mm512_setzero_si512(); ROWS];
            let mut d = 0;
            while d < whole {
                // Two lines of the group two groups ahead per 128-byte step, as in the AVX2 kernel.
                let ahead = base.wrapping_add(2 * ROWS * dim + 4 * d);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                let qv = _mm512_loadu_si512(q.as_ptr().add(d).cast());
                for (i, a) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_si256(base.add(i * dim + d).cast());
                    *a = _mm512_add_epi32(*a, _mm512_madd_epi16(qv, _mm512_cvtepi8_epi16(x)));
                }
                d += 32;
            }
            if rest != 0 {
                for (i, a) in acc.iter_mut().enumerate() {
                    let x = _mm256_maskz_loadu_epi8(mask, base.add(i * dim + whole).cast());
                    *a = _mm512_add_epi32(*a, _mm512_madd_epi16(q_tail, _mm512_cvtepi8_epi16(x)));
                }
            }
            for (i, a) in acc.iter().enumerate() {
                out[r + i] = _mm512_reduce_add_epi32(*a);
            }
            r += ROWS;
        }
        while r < out.len() {
            let base = codes.as_ptr().add(r * dim);
            let mut acc = _mm512_setzero_si512();
            let mut d = 0;
            while d < whole {
                let qv = _mm512_loadu_si512(q.as_ptr().add(d).cast());
                let x = _mm256_loadu_si256(base.add(d).cast());
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(qv, _mm512_cvtepi8_epi16(x)));
                d += 32;
            }
            if rest != 0 {
                let x = _mm256_maskz_loadu_epi8(mask, base.add(whole).cast());
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(q_tail, _mm512_cvtepi8_epi16(x)));
            }
            out[r] = _mm512_reduce_add_epi32(acc);
            r += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::simd::available_levels;
    use proptest::prelude::*;

    fn check(q: &[i16], codes: &[i8], rows: usize) {
        let mut want = vec![0; rows];
        scalar::dot_rows(q, codes, &mut want);
        for level in available_levels() {
            let mut got = vec![7; rows];
            dot_rows_at(level, q, codes, &mut got);
            assert_eq!(got, want, "{level:?}, dim {}, rows {rows}", q.len());
        }
    }

    #[test]
    fn extreme_values_at_the_overflow_bound() {
        for dim in [1, 15, 16, 17, 31, 32, 33, 384, 385, 1000] {
            let m = max_query_value(dim) as i16;
            let q: Vec<i16> = (0..dim).map(|i| if i % 3 == 0 { -m } else { m }).collect();
            let codes: Vec<i8> = (0..dim * 6)
                .map(|i| if i % 3 == 0 { -128 } else { 127 })
                .collect();
            check(&q, &codes, 6);
            let mut out = [0];
            scalar::dot_rows(&q, &codes[..dim], &mut out);
            let exact: i64 = q
                .iter()
                .zip(&codes)
                .map(|(a, b)| *a as i64 * *b as i64)
                .sum();
            assert_eq!(out[0] as i64, exact, "no overflow at dim {dim}");
        }
    }

    fn check_block(queries: &[u8], codes: &[i8], dim: usize) {
        let (m, n) = (queries.len() / dim, codes.len() / dim);
        let mut want = vec![0; m * n];
        scalar::dot_block(queries, codes, dim, &mut want);
        for level in available_levels() {
            let mut got = vec![7; m * n];
            dot_block_at(level, queries, codes, dim, &mut got);
            assert_eq!(got, want, "{level:?}, dim {dim}, {m} × {n}");
        }
        // The AVX-512 kernel without VNNI, which `dot_block_at` skips on a VNNI CPU.
        #[cfg(target_arch = "x86_64")]
        if Level::Avx512.supported() {
            let mut got = vec![7; m * n];
            // SAFETY: the CPU has AVX-512 F/BW/VL (checked); lengths are consistent.
            unsafe { x86::dot_block_avx512(queries, codes, dim, &mut got) };
            assert_eq!(got, want, "avx512 without vnni, dim {dim}, {m} × {n}");
        }
    }

    #[test]
    fn quantization_and_scaling_agree_on_every_level() {
        let src: Vec<f32> = (0..7 * 45)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        quantize_rows_u8(&src, 45, 64, &mut codes, &mut scales);
        for (r, row) in src.chunks_exact(45).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let want = (v / scales[r]).round_ties_even().clamp(-64.0, 64.0) + 64.0;
                assert_eq!(codes[r * 45 + j] as f32, want);
            }
        }
        for level in available_levels() {
            let mut c = vec![0u8; 45];
            let s = quantize_row(level, &src[..45], 64.0, &mut c);
            assert_eq!((s, &c[..]), (scales[0], &codes[..45]), "{level:?}");
            let (dots, cs, co) = ([5, -7, 100], [0.5f32, 2.0, 0.25], [1, 2, 3]);
            let mut d = [1.0f32; 3];
            accumulate_row(level, &mut d, &dots, 2.0, &cs, &co);
            assert_eq!(
                d,
                [
                    1.0 + 2.0 * 0.5 * 4.0,
                    1.0 - 2.0 * 2.0 * 9.0,
                    1.0 + 2.0 * 0.25 * 97.0
                ]
            );
        }
    }

    #[test]
    fn block_extremes_do_not_saturate() {
        for dim in [1, 31, 32, 33, 64, 65, 384, 1000] {
            let q = vec![MAX_U8_QUERY; dim * 5];
            let codes: Vec<i8> = (0..dim * 3)
                .map(|i| if i % 2 == 0 { 127 } else { -128 })
                .collect();
            check_block(&q, &codes, dim);
            let mut out = vec![0; 15];
            dot_block(&q, &codes, dim, &mut out);
            let want: i64 = codes[..dim].iter().map(|&c| 128 * c as i64).sum();
            assert_eq!(out[0] as i64, want);
        }
    }

    proptest! {
        #[test]
        fn block_levels_equal_the_scalar_twin(
            dim in 1usize..140, m in 1usize..10, n in 1usize..7, seed in any::<u64>(),
        ) {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 33) as u32
            };
            let q: Vec<u8> = (0..dim * m).map(|_| (next() % (MAX_U8_QUERY as u32 + 1)) as u8).collect();
            let codes: Vec<i8> = (0..dim * n).map(|_| next() as u8 as i8).collect();
            check_block(&q, &codes, dim);
        }

        #[test]
        fn every_level_equals_the_scalar_twin(
            dim in 1usize..80,
            rows in 0usize..11,
            seed in any::<u64>(),
        ) {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 33) as u32
            };
            let m = max_query_value(dim);
            let q: Vec<i16> = (0..dim).map(|_| ((next() % (2 * m as u32 + 1)) as i32 - m) as i16).collect();
            let codes: Vec<i8> = (0..dim * rows).map(|_| next() as u8 as i8).collect();
            check(&q, &codes, rows);
        }
    }
}
