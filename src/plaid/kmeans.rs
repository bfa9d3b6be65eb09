//! Spherical k-means (Lloyd's iterations on the unit sphere, assignment by inner product,
//! centroids renormalised), the clustering ColBERT runs through FAISS before L2-normalising the
//! centroids. Written here: it is the core of the index, and assignment runs on vellum's own
//! matrix product.

use rayon::prelude::*;

use super::SplitMix64;
use crate::linalg::gemm::matmul_nt;
use crate::linalg::normalize;

/// Points assigned per parallel task, at most.
const BLOCK: usize = 1024;
/// Scores one task holds at most (16 MiB): with many centroids a task takes fewer points, so
/// that `2^20` centroids do not need 4 GiB per thread.
const SCRATCH_SCORES: usize = 1 << 22;

/// Index of the largest value (the first of equal ones).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The nearest centroid (largest inner product) of each of `points` (`n × dim`) among
/// `centroids` (`k × dim`), on all cores.
pub fn assign(points: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
    let k = centroids.len() / dim;
    let block = (SCRATCH_SCORES / k.max(1)).clamp(1, BLOCK);
    let mut out = vec![0u32; points.len() / dim];
    out.par_chunks_mut(block)
        .zip(points.par_chunks(block * dim))
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (out, pts)| {
            let n = pts.len() / dim;
            scores.resize(n * k, 0.0);
            matmul_nt(pts, n, centroids, k, dim, scores);
            for (o, row) in out.iter_mut().zip(scores.chunks_exact(k)) {
                *o = argmax(row) as u32;
            }
        });
    out
}

/// `k` unit-norm centroids of `points` (`n × dim`, `n ≥ k ≥ 1`) after `iters` iterations from
/// `k` distinct random points; an emptied cluster restarts at a random point.
pub fn kmeans(points: &[f32], dim: usize, k: usize, iters: u32, seed: u64) -> Vec<f32> {
    let n = points.len() / dim;
    assert!(n >= k && k >= 1, "k-means: {k} centroids from {n} points");
    let mut rng = SplitMix64::new(seed);
    // Partial Fisher–Yates: k distinct points.
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    let mut centroids: Vec<f32> = idx[..k]
        .iter()
        .flat_map(|&i| points[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    centroids.chunks_exact_mut(dim).for_each(normalize);
    for _ in 0..iters {
        let labels = assign(points, &centroids, dim);
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (p, &l) in points.chunks_exact(dim).zip(&labels) {
            let l = l as usize;
            counts[l] += 1;
            for (s, x) in sums[l * dim..(l + 1) * dim].iter_mut().zip(p) {
                *s += *x as f64;
            }
        }
        for c in 0..k {
            let dst = &mut centroids[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                let i = rng.below(n);
                dst.copy_from_slice(&points[i * dim..(i + 1) * dim]);
            } else {
                for (d, s) in dst.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *d = *s as f32;
                }
            }
            normalize(dst);
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_clusters_are_found() {
        // Three tight groups around orthogonal directions.
        let dim = 3;
        let mut rng = SplitMix64::new(1);
        let mut pts = Vec::new();
        for i in 0..300 {
            let mut v = [0.05f32; 3];
            v[i % 3] = 1.0;
            v.iter_mut()
                .for_each(|x| *x += (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.1);
            pts.extend_from_slice(&v);
        }
        let c = kmeans(&pts, dim, 3, 10, 7);
        let labels = assign(&pts, &c, dim);
        for g in 0..3 {
            let l = labels[g];
            assert!(
                (g..300).step_by(3).all(|i| labels[i] == l),
                "group {g} split"
            );
        }
        let mut distinct = labels[..3].to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
        for row in c.chunks_exact(dim) {
            let n: f32 = row.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }
}
