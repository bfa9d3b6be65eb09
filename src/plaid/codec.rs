//! ColBERTv2's residual codec (`indexing/codecs/residual.py`): a token is stored as its nearest
//! centroid and, per dimension, the bucket of its residual `v − c` among `2^b` quantile buckets
//! (cutoffs at the `i/2^b` quantiles of held-out residual values, bucket values at the
//! `(i + ½)/2^b` quantiles). Decompression looks each residual byte up in a 256-entry table of
//! bucket values, adds the centroid and L2-normalises.

use super::kmeans::{assign, kmeans};
use super::{PlaidCodec, PlaidParams, SplitMix64};

/// Residual values sampled for the bucket quantiles (ColBERT holds out 5 % of its sample, at most
/// 50,000 tokens; 2^20 values, 8,192 tokens at 128 dimensions, bound the sort here).
pub const MAX_HELDOUT_VALUES: usize = 1 << 20;

/// The `q`-quantile of ascending `sorted` with linear interpolation (`torch.quantile`).
fn quantile(sorted: &[f32], q: f64) -> f32 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let f = (pos - lo as f64) as f32;
    sorted[lo] + (sorted[hi] - sorted[lo]) * f
}

/// Trains a codec with `k` centroids (at most the sample's tokens) on `sample` (`n × dim` token
/// vectors, unit norm, `n ≥ 1`), and its residual buckets on `heldout` (tokens k-means did not
/// see, as ColBERT's `_compute_avg_residual`; when empty, on the sample itself, which measures
/// residuals too small when `k` is close to `n`); `trained_rows` is recorded with it.
///
/// # Panics
/// If `sample` holds no whole token.
pub fn train(
    sample: &[f32],
    heldout: &[f32],
    dim: usize,
    k: usize,
    params: &PlaidParams,
    trained_rows: u64,
) -> PlaidCodec {
    let n = sample.len() / dim;
    assert!(n > 0, "a codec needs at least one token to train on");
    let k = k.clamp(1, n);
    // Stored as binary16 (half the codec's bytes); the residuals are taken against the rounded
    // values, so decompression adds back exactly what was subtracted.
    let centroids: Vec<f32> = kmeans(sample, dim, k, params.kmeans_iters, params.seed)
        .into_iter()
        .map(|v| half::f16::from_f32(v).to_f32())
        .collect();
    // Residual values of (up to MAX_HELDOUT_VALUES / dim) held-out tokens: only those are
    // assigned here (assigning the whole sample would cost another k-means iteration).
    let pool = if heldout.len() >= dim {
        heldout
    } else {
        sample
    };
    let n = pool.len() / dim;
    let take = (MAX_HELDOUT_VALUES / dim).clamp(1, n);
    let mut rng = SplitMix64::new(params.seed ^ 0xa5a5);
    let mut heldout = Vec::with_capacity(take * dim);
    for i in 0..take {
        let t = if take == n { i } else { rng.below(n) };
        heldout.extend_from_slice(&pool[t * dim..(t + 1) * dim]);
    }
    let labels = assign(&heldout, &centroids, dim);
    let mut values = Vec::with_capacity(take * dim);
    for (v, &c) in heldout.chunks_exact(dim).zip(&labels) {
        let c = c as usize;
        values.extend(
            v.iter()
                .zip(&centroids[c * dim..(c + 1) * dim])
                .map(|(x, y)| x - y),
        );
    }
    values.sort_unstable_by(f32::total_cmp);
    let nb = 1usize << params.nbits;
    let cutoffs = (1..nb)
        .map(|i| quantile(&values, i as f64 / nb as f64))
        .collect();
    let weights = (0..nb)
        .map(|i| quantile(&values, (i as f64 + 0.5) / nb as f64))
        .collect();
    PlaidCodec {
        dim,
        nbits: params.nbits,
        centroids,
        cutoffs,
        weights,
        trained_rows,
        half_centroids: true,
    }
}

/// Packs the residual of `v` against centroid `c` into `out` (`d·b/8` bytes): per dimension the
/// bucket `#{cutoffs < r}` (`torch.bucketize`), first dimension in the high bits.
pub fn pack_residual(codec: &PlaidCodec, v: &[f32], c: &[f32], out: &mut [u8]) {
    let b = codec.nbits as usize;
    out.fill(0);
    for (j, (x, y)) in v.iter().zip(c).enumerate() {
        let r = x - y;
        let q = codec.cutoffs.partition_point(|&cut| cut < r) as u8;
        let bit = j * b;
        out[bit / 8] |= q << (8 - b - bit % 8);
    }
}

pub use crate::format::plaid::{decompress, lookup_table};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residuals_pack_and_decompress_within_a_bucket() {
        for nbits in [1u32, 2, 4] {
            let dim = 16;
            let mut rng = SplitMix64::new(nbits as u64);
            let mut pts: Vec<f32> = (0..2000 * dim)
                .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
                .collect();
            pts.chunks_exact_mut(dim).for_each(|r| {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter_mut().for_each(|x| *x /= n);
            });
            let params = PlaidParams {
                nbits,
                ..Default::default()
            };
            let codec = train(
                &pts[..1800 * dim],
                &pts[1800 * dim..],
                dim,
                32,
                &params,
                2000,
            );
            assert_eq!(codec.cutoffs.len(), (1 << nbits) - 1);
            assert!(codec.cutoffs.windows(2).all(|w| w[0] <= w[1]));
            let table = lookup_table(&codec.weights, nbits);
            let labels = assign(&pts, &codec.centroids, dim);
            let mut packed = vec![0u8; codec.residual_bytes()];
            let mut out = vec![0f32; dim];
            let mut cos_sum = 0.0;
            for (t, v) in pts.chunks_exact(dim).enumerate() {
                let c = &codec.centroids[labels[t] as usize * dim..][..dim];
                pack_residual(&codec, v, c, &mut packed);
                // Each dimension's bucket is the one its residual falls in.
                for j in 0..dim {
                    let bit = j * nbits as usize;
                    let q =
                        (packed[bit / 8] >> (8 - nbits as usize - bit % 8)) & ((1 << nbits) - 1);
                    let r = v[j] - c[j];
                    let q = q as usize;
                    assert!(q == 0 || codec.cutoffs[q - 1] < r);
                    assert!(q == codec.cutoffs.len() || r <= codec.cutoffs[q]);
                }
                decompress(&table, nbits, c, &packed, true, &mut out);
                cos_sum += out.iter().zip(v).map(|(a, b)| a * b).sum::<f32>();
            }
            let mean = cos_sum / 2000.0;
            // More bits, closer reconstructions (random 16-d data is hard to cluster).
            let floor = [0.0, 0.75, 0.85, 0.0, 0.95][nbits as usize];
            assert!(mean > floor, "nbits {nbits}: mean cosine {mean}");
        }
    }
}
