//! Tevatron's contrastive loss (`tevatron/retriever/modeling/encoder.py`, `EncoderModel.forward`):
//! every query scored against every passage of the batch, `S = q · pᵀ` (`[Q, Q·G]`), divided by
//! the temperature, cross-entropy against each query's own positive, which is passage `i · G`
//! (each query's group holds its positive first, then `G − 1` hard negatives). Every other
//! passage of the batch — the other queries' positives and negatives — is an in-batch negative
//! (Karpukhin et al. 2020, DPR §3.2).

use candle_core::{Tensor, D};

use crate::error::{Result, TrainError};

/// The loss, a scalar: `mean_i −log softmax(S_i / τ)[i · group]`.
///
/// `queries` `[Q, d]`, `passages` `[Q · group, d]` (already normalised when the encoder
/// normalises); `temperature` τ > 0.
pub fn contrastive_loss(
    queries: &Tensor,
    passages: &Tensor,
    group: usize,
    temperature: f64,
) -> Result<Tensor> {
    let (q, d) = queries.dims2()?;
    let (p, d2) = passages.dims2()?;
    if d != d2 || p != q * group || group == 0 {
        return Err(TrainError::Invalid(format!(
            "contrastive loss: {q} queries of {d} dims need {q}×{group} passages of {d} dims; found {p} of {d2}"
        )));
    }
    let scores = (queries.matmul(&passages.t()?)? / temperature)?;
    let log_probs = candle_nn::ops::log_softmax(&scores, D::Minus1)?;
    // One-hot targets as a mask (composed ops all have a backward pass).
    let mut target = vec![0f32; q * p];
    for i in 0..q {
        target[i * p + i * group] = 1.0;
    }
    let target = Tensor::from_vec(target, (q, p), queries.device())?;
    Ok((log_probs.mul(&target)?.sum_all()?.neg()? / q as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The formula computed by hand in f64.
    fn oracle(q: &[Vec<f64>], p: &[Vec<f64>], group: usize, t: f64) -> f64 {
        let mut total = 0.0;
        for (i, qi) in q.iter().enumerate() {
            let s: Vec<f64> = p
                .iter()
                .map(|pj| qi.iter().zip(pj).map(|(a, b)| a * b).sum::<f64>() / t)
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + s.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - s[i * group];
        }
        total / q.len() as f64
    }

    #[test]
    fn equals_tevatrons_formula() {
        let dev = Device::Cpu;
        let (nq, group, d) = (3, 4, 5);
        let val = |i: usize| ((i * 7919 % 113) as f64 / 113.0 - 0.5) * 2.0;
        let q: Vec<Vec<f64>> = (0..nq)
            .map(|i| (0..d).map(|j| val(i * d + j)).collect())
            .collect();
        let p: Vec<Vec<f64>> = (0..nq * group)
            .map(|i| (0..d).map(|j| val(1000 + i * d + j)).collect())
            .collect();
        let flat = |m: &[Vec<f64>]| -> Vec<f32> { m.iter().flatten().map(|&v| v as f32).collect() };
        let qt = Tensor::from_vec(flat(&q), (nq, d), &dev).unwrap();
        let pt = Tensor::from_vec(flat(&p), (nq * group, d), &dev).unwrap();
        for t in [1.0, 0.05, 0.01] {
            let qf: Vec<Vec<f64>> = q
                .iter()
                .map(|r| r.iter().map(|&v| v as f32 as f64).collect())
                .collect();
            let pf: Vec<Vec<f64>> = p
                .iter()
                .map(|r| r.iter().map(|&v| v as f32 as f64).collect())
                .collect();
            let want = oracle(&qf, &pf, group, t);
            let got = contrastive_loss(&qt, &pt, group, t)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "τ {t}: {got} vs {want}"
            );
        }
        assert!(contrastive_loss(&qt, &pt, 3, 1.0).is_err());
    }
}
