//! Similarity kernels. The SIMD versions call simsimd; every one has a scalar twin in [`scalar`]
//! that the tests use as the oracle.

use half::{bf16, f16};
use simsimd::SpatialSimilarity;

use crate::dtype::{DType, Metric, VectorRef};

/// A query vector converted once to the element type of the data it is compared with.
#[derive(Debug, Clone)]
pub enum PreparedQuery {
    /// f32 data.
    F32(Vec<f32>),
    /// f16 data.
    F16(Vec<simsimd::f16>),
    /// bf16 data.
    Bf16(Vec<simsimd::bf16>),
}

impl PreparedQuery {
    /// Converts `q` for data of type `dtype`.
    pub fn new(q: &[f32], dtype: DType) -> Self {
        match dtype {
            DType::F32 => PreparedQuery::F32(q.to_vec()),
            DType::F16 => PreparedQuery::F16(
                q.iter()
                    .map(|&v| simsimd::f16(f16::from_f32(v).to_bits()))
                    .collect(),
            ),
            DType::Bf16 => PreparedQuery::Bf16(
                q.iter()
                    .map(|&v| simsimd::bf16(bf16::from_f32(v).to_bits()))
                    .collect(),
            ),
        }
    }
}

fn as_simsimd_f16(v: &[f16]) -> &[simsimd::f16] {
    // SAFETY: `half::f16` and `simsimd::f16` are both `#[repr(transparent)]` wrappers of `u16`
    // holding IEEE binary16 bits, so the slices have identical layout, length and alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

fn as_simsimd_bf16(v: &[bf16]) -> &[simsimd::bf16] {
    // SAFETY: `half::bf16` and `simsimd::bf16` are both `#[repr(transparent)]` wrappers of `u16`
    // holding bfloat16 bits, so the slices have identical layout, length and alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

/// Similarity (higher is better) of a prepared query and one stored vector of the same length.
#[inline]
pub fn similarity(metric: Metric, q: &PreparedQuery, x: VectorRef<'_>) -> f32 {
    macro_rules! run {
        ($q:expr, $x:expr) => {
            match metric {
                Metric::Ip => SpatialSimilarity::dot($q, $x),
                Metric::Cosine => SpatialSimilarity::cos($q, $x).map(|d| 1.0 - d),
                Metric::L2 => SpatialSimilarity::l2sq($q, $x).map(|d| -d),
            }
        };
    }
    let s = match (q, x) {
        (PreparedQuery::F32(q), VectorRef::F32(x)) => run!(q.as_slice(), x),
        (PreparedQuery::F16(q), VectorRef::F16(x)) => run!(q.as_slice(), as_simsimd_f16(x)),
        (PreparedQuery::Bf16(q), VectorRef::Bf16(x)) => run!(q.as_slice(), as_simsimd_bf16(x)),
        _ => panic!("query prepared for another element type"),
    };
    s.expect("query and vector lengths match") as f32
}

/// Asks the CPU to bring `bytes` into the cache (a hint: no effect on results, never faults).
#[inline]
pub fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        prefetch_line(line.as_ptr());
    }
}

/// Asks the CPU to bring the cache line at `ptr` into the cache. Takes a raw pointer so that memory
/// other threads may be writing (atomics) can be prefetched without forming a reference to it.
#[inline]
pub fn prefetch_line(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot fault, for
    // any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast())
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint as well: it never faults and changes no architectural state
    // (no flags, no memory, no stack), whatever the address.
    unsafe {
        std::arch::asm!(
            "prfm pldl1keep, [{0}]",
            in(reg) ptr,
            options(nostack, preserves_flags, readonly)
        )
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = ptr;
}

/// Scalar reference implementations (f64 accumulation), used as test oracles.
pub mod scalar {
    use crate::dtype::Metric;

    /// Inner product.
    pub fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// Squared Euclidean distance.
    pub fn l2sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum()
    }

    /// Cosine similarity, 0 when either vector is zero.
    pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
        if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            dot(a, b) / (na * nb)
        }
    }

    /// Similarity under `metric` (higher is better).
    pub fn similarity(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
        match metric {
            Metric::Ip => dot(a, b),
            Metric::Cosine => cosine(a, b),
            Metric::L2 => -l2sq(a, b),
        }
    }

    /// MaxSim: for each query token the best similarity over the document tokens, summed.
    pub fn maxsim(metric: Metric, query: &[f32], doc: &[f32], dim: usize) -> f64 {
        query
            .chunks_exact(dim)
            .map(|q| {
                doc.chunks_exact(dim)
                    .map(|d| similarity(metric, q, d))
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 200) as f32
                    / 100.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn simd_matches_scalar_for_every_dtype_and_metric() {
        for dim in [1, 3, 16, 97, 384] {
            let q = data(dim, 1);
            let x = data(dim, 2);
            for dtype in [DType::F32, DType::F16, DType::Bf16] {
                let mut bytes = Vec::new();
                dtype.encode_into(&x, &mut bytes);
                let mut aligned = vec![0u32; bytes.len().div_ceil(4)];
                bytemuck::cast_slice_mut::<u32, u8>(&mut aligned)[..bytes.len()]
                    .copy_from_slice(&bytes);
                let view =
                    VectorRef::from_bytes(dtype, &bytemuck::cast_slice(&aligned)[..bytes.len()])
                        .unwrap();
                // The oracle sees the same rounding of both operands as the kernel.
                let xr = view.to_f32_vec();
                let qp = PreparedQuery::new(&q, dtype);
                let qr: Vec<f32> = match &qp {
                    PreparedQuery::F32(v) => v.clone(),
                    PreparedQuery::F16(v) => {
                        v.iter().map(|h| f16::from_bits(h.0).to_f32()).collect()
                    }
                    PreparedQuery::Bf16(v) => {
                        v.iter().map(|h| bf16::from_bits(h.0).to_f32()).collect()
                    }
                };
                for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
                    let got = similarity(metric, &qp, view) as f64;
                    let want = scalar::similarity(metric, &qr, &xr);
                    let tol = 1e-3 * (1.0 + want.abs());
                    assert!(
                        (got - want).abs() <= tol,
                        "{dtype} {metric} dim {dim}: simd {got} scalar {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn scalar_maxsim_by_hand() {
        // Query tokens (1,0) and (0,1); doc tokens (2,0), (0,3), (1,1): max 2 + max 3 = 5.
        let s = scalar::maxsim(
            Metric::Ip,
            &[1.0, 0.0, 0.0, 1.0],
            &[2.0, 0.0, 0.0, 3.0, 1.0, 1.0],
            2,
        );
        assert_eq!(s, 5.0);
    }
}
