//! The blocked matrix product behind batch search: `scores = Q · Xᵀ`, with a scalar twin.

/// Computes `out[i * n + j] = Σ_t q[i * d + t] · x[j * d + t]` for an `m × d` matrix `q` and an
/// `n × d` matrix `x` (both row-major). Single-threaded: callers parallelise over blocks.
pub fn matmul_nt(q: &[f32], m: usize, x: &[f32], n: usize, d: usize, out: &mut [f32]) {
    assert!(
        q.len() >= m * d && x.len() >= n * d && out.len() >= m * n,
        "matmul_nt: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if d == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assert above guarantees every element addressed through the strides lies inside
    // the three slices: q is read at i*d + t (i < m, t < d), x at j*d + t (j < n), out written at
    // i*n + j. `out` is exclusively borrowed, so it does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            q.as_ptr(),
            1,
            d as isize,
            x.as_ptr(),
            d as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Scalar twin of [`matmul_nt`].
pub fn matmul_nt_scalar(q: &[f32], m: usize, x: &[f32], n: usize, d: usize, out: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..d).map(|t| q[i * d + t] * x[j * d + t]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scalar_on_odd_shapes() {
        for (m, n, d) in [
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 384),
            (64, 1, 5),
            (2, 300, 16),
        ] {
            let q: Vec<f32> = (0..m * d)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let (mut a, mut b) = (vec![0.0; m * n], vec![0.0; m * n]);
            matmul_nt(&q, m, &x, n, d, &mut a);
            matmul_nt_scalar(&q, m, &x, n, d, &mut b);
            for (u, v) in a.iter().zip(&b) {
                assert!(
                    (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                    "{m}x{n}x{d}: {u} vs {v}"
                );
            }
        }
    }
}
