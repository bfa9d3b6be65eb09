//! Fused CPU kernels with hand-written backward passes for the two hottest composed ops of a
//! training step: the attention softmax (with its scale and key mask) and layer norm.
//!
//! Why by hand: candle's own fused `softmax_last_dim` and `layer_norm` record no backward (a
//! model built on them silently trains nothing), and the differentiable compositions make a
//! full-size temporary per elementary op — for the attention scores, `[B, heads, L, L]` tensors
//! of tens of MB each, forward and backward — so a step spends much of its time allocating and
//! zeroing memory. Each op here reads its inputs once and writes one output. Both are checked
//! against the compositions they replace (values and gradients, tests below) and, through the
//! model, against PyTorch's gradients (`tests/gradients.rs`).
//!
//! Sources: softmax's Jacobian-vector product `dx = y ⊙ (g − ⟨g, y⟩)`; layer norm's backward
//! `dx = (γ ⊙ g − mean(γ ⊙ g) − x̂ · mean(γ ⊙ g ⊙ x̂)) / σ` (Ba et al., 2016; as PyTorch's
//! `native_layer_norm_backward`).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Rows per parallel task: enough work to amortise scheduling.
const MIN_ROWS_PER_TASK: usize = 16;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let all = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&all[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous f32 tensor"),
    }
}

/// `softmax(scale · scores + mask)` over the last dimension. `scores`: `[B, H, Lq, Lk]`;
/// `mask`: `[B, 1, 1, Lk]` (additive: 0 or a large negative), constant (no gradient).
///
/// On other devices than the CPU (GPUs), the differentiable composition of candle's ops.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    if !scores.device().is_cpu() {
        return candle_nn::ops::softmax(
            &(scores * scale)?.broadcast_add(mask)?,
            candle_core::D::Minus1,
        );
    }
    scores.apply_op2(
        mask,
        MaskedSoftmax {
            scale: scale as f32,
        },
    )
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "vellum-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, lq, lk) = l1.shape().dims4()?;
        if l2.shape().dims4()? != (b, 1, 1, lk) {
            candle_core::bail!(
                "masked softmax: mask {:?} for scores {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let x = slice(s1, l1, "masked softmax scores")?;
        let mask = slice(s2, l2, "masked softmax mask")?;
        let mut out = vec![0f32; x.len()];
        let per_batch = h * lq;
        out.par_chunks_mut(lk)
            .zip(x.par_chunks(lk))
            .enumerate()
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(row, (y, x))| {
                let m = &mask[(row / per_batch) * lk..][..lk];
                let mut max = f32::NEG_INFINITY;
                for (yi, (&xi, &mi)) in y.iter_mut().zip(x.iter().zip(m)) {
                    *yi = xi * self.scale + mi;
                    max = max.max(*yi);
                }
                let mut sum = 0f32;
                for yi in y.iter_mut() {
                    *yi = (*yi - max).exp();
                    sum += *yi;
                }
                let inv = 1.0 / sum;
                for yi in y.iter_mut() {
                    *yi *= inv;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = res.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &SoftmaxBackward { scale: self.scale },
        )?;
        Ok((Some(grad), None))
    }
}

/// `scale · y ⊙ (g − ⟨g, y⟩)` per row of the last dimension.
struct SoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "vellum-masked-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, "softmax output")?;
        let g = slice(s2, l2, "softmax gradient")?;
        let n = *l1.shape().dims().last().expect("rank 4");
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(n)
            .zip(y.par_chunks(n).zip(g.par_chunks(n)))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(d, (y, g))| {
                let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                for (di, (&yi, &gi)) in d.iter_mut().zip(y.iter().zip(g)) {
                    *di = self.scale * yi * (gi - dot);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Layer norm over the last dimension: `(x − mean) / sqrt(var + eps) · γ + β`, `var` biased
/// (as BERT's `LayerNorm`). `x`: `[.., H]`; `gamma`, `beta`: `[H]`. On other devices than the
/// CPU (GPUs), the differentiable composition of candle's ops.
pub fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() {
        // The differentiable composition (GPUs).
        let d = candle_core::D::Minus1;
        let centered = x.broadcast_sub(&x.mean_keepdim(d)?)?;
        let var = centered.sqr()?.mean_keepdim(d)?;
        return centered
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .broadcast_mul(gamma)?
            .broadcast_add(beta);
    }
    x.contiguous()?
        .apply_op3(gamma, beta, LayerNorm { eps: eps as f32 })
}

struct LayerNorm {
    eps: f32,
}

/// Mean and 1/σ of one row.
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "vellum-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer norm input")?;
        let gamma = slice(s2, l2, "layer norm weight")?;
        let beta = slice(s3, l3, "layer norm bias")?;
        let h = gamma.len();
        if beta.len() != h || *l1.shape().dims().last().unwrap_or(&0) != h {
            candle_core::bail!(
                "layer norm: input {:?}, weight {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(y, x)| {
                let (mean, inv) = moments(x, self.eps);
                for (i, yi) in y.iter_mut().enumerate() {
                    *yi = (x[i] - mean) * inv * gamma[i] + beta[i];
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.dim(0)?;
        let rows = x.elem_count() / h;
        // One tensor [rows + 2, H]: dx, then dγ and dβ.
        let packed = x.apply_op3_no_bwd(
            gamma,
            &grad_res.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, rows, 1)?.reshape(h)?;
        let dbeta = packed.narrow(0, rows + 1, 1)?.reshape(h)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "vellum-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer norm input")?;
        let gamma = slice(s2, l2, "layer norm weight")?;
        let g = slice(s3, l3, "layer norm gradient")?;
        let h = gamma.len();
        let rows = x.len() / h;
        let mut out = vec![0f32; (rows + 2) * h];
        let (dx, sums) = out.split_at_mut(rows * h);
        // dx row by row; dγ = Σ g ⊙ x̂ and dβ = Σ g over rows, summed per fixed block of rows
        // and the blocks then in order (in f32, as PyTorch's CPU kernel): the same bits
        // whatever the thread count or scheduling, so a resumed run repeats an uninterrupted one.
        const BLOCK: usize = 64;
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(h * BLOCK)
            .zip(x.par_chunks(h * BLOCK).zip(g.par_chunks(h * BLOCK)))
            .map(|(dx, (x, g))| {
                let mut acc = vec![0f32; 2 * h];
                for (dx, (x, g)) in dx.chunks_mut(h).zip(x.chunks(h).zip(g.chunks(h))) {
                    let (mean, inv) = moments(x, self.eps);
                    let n = h as f32;
                    let (mut a, mut b) = (0f32, 0f32);
                    for i in 0..h {
                        let xhat = (x[i] - mean) * inv;
                        let gg = g[i] * gamma[i];
                        a += gg;
                        b += gg * xhat;
                        acc[i] += g[i] * xhat;
                        acc[h + i] += g[i];
                    }
                    let (a, b) = (a / n, b / n);
                    for i in 0..h {
                        let xhat = (x[i] - mean) * inv;
                        dx[i] = (g[i] * gamma[i] - a - xhat * b) * inv;
                    }
                }
                acc
            })
            .collect();
        let mut partial = vec![0f32; 2 * h];
        for p in partials {
            for (s, v) in partial.iter_mut().zip(p) {
                *s += v;
            }
        }
        sums.copy_from_slice(&partial);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, h))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.f32() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Gradients of `Σ out ⊙ up` (an arbitrary upstream gradient `up`).
    fn grads(out: &Tensor, up: &Tensor) -> candle_core::backprop::GradStore {
        (out * up).unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn masked_softmax_equals_the_composition_with_gradients() {
        let (b, h, l) = (2, 3, 5);
        let scores = Var::from_tensor(&random(&[b, h, l, l], 1)).unwrap();
        let mut m = vec![0f32; b * l];
        m[l - 1] = -1e9; // the first sequence's last key is padding
        m[l + 3] = -1e9;
        let mask = Tensor::from_vec(m, (b, 1, 1, l), &Device::Cpu).unwrap();
        let up = random(&[b, h, l, l], 2);
        let scale = 0.35;
        let fused = masked_softmax(scores.as_tensor(), &mask, scale).unwrap();
        let composed = candle_nn::ops::softmax(
            &(scores.as_tensor() * scale)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap(),
            D::Minus1,
        )
        .unwrap();
        close(&fused, &composed, 1e-6, "softmax");
        let (gf, gc) = (grads(&fused, &up), grads(&composed, &up));
        close(
            gf.get(scores.as_tensor()).unwrap(),
            gc.get(scores.as_tensor()).unwrap(),
            1e-5,
            "softmax gradient",
        );
    }

    #[test]
    fn layer_norm_equals_the_composition_with_gradients() {
        let (rows, h) = (150, 24); // more than two blocks of the backward's reduction
        let x = Var::from_tensor(&random(&[rows, h], 3)).unwrap();
        let gamma = Var::from_tensor(&random(&[h], 4)).unwrap();
        let beta = Var::from_tensor(&random(&[h], 5)).unwrap();
        let up = random(&[rows, h], 6);
        let eps = 1e-12;
        let fused = layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), eps).unwrap();
        let xt = x.as_tensor();
        let mean = xt.mean_keepdim(D::Minus1).unwrap();
        let centered = xt.broadcast_sub(&mean).unwrap();
        let var = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let composed = centered
            .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(gamma.as_tensor())
            .unwrap()
            .broadcast_add(beta.as_tensor())
            .unwrap();
        close(&fused, &composed, 1e-5, "layer norm");
        let (gf, gc) = (grads(&fused, &up), grads(&composed, &up));
        for (v, what) in [(&x, "dx"), (&gamma, "dgamma"), (&beta, "dbeta")] {
            close(
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
                1e-4,
                what,
            );
        }
    }
}
