//! Token pooling (Clavié et al. 2024, *Reducing the Footprint of Multi-Vector Retrieval with
//! Minimal Performance Impact via Token Pooling*, arXiv 2409.14683): a document's token vectors
//! are clustered hierarchically and each cluster replaced by its mean, so `pool_factor` 2 stores
//! about half the vectors.
//!
//! This follows the reference implementation, PyLate's `pool_embeddings_hierarchical`, step by
//! step, so that a field pooled by vellum holds what PyLate would index:
//!
//! 1. the first `protected` vectors (`[CLS]`) are kept as they are and appended last;
//! 2. `D = 1 − E·Eᵀ` over the other `m` vectors (cosine distances of normalised vectors, in f32);
//! 3. Ward linkage (`scipy.cluster.hierarchy.linkage(D, method="ward")`) — which, given a square
//!    matrix, treats its rows as `m` observations in `m` dimensions (Euclidean distances between
//!    rows of `D`), computed here in f64 as scipy does;
//! 4. `fcluster(..., t = max(m / pool_factor, 1), criterion="maxclust")`: the partition left
//!    after the `m − t` lowest merges;
//! 5. each cluster's mean (not re-normalised).
//!
//! Clusters are emitted in the order of their first member (PyLate numbers them in scipy's
//! order; MaxSim does not depend on the order). The linkage is built by the nearest-neighbour
//! chain algorithm (Murtagh 1983; Müllner 2011, *Modern hierarchical, agglomerative clustering
//! algorithms*, §3.2), which finds the same merges as the naive algorithm for Ward's method in
//! O(m²) steps after the O(m³) distance computation; written by hand because it is a few dozen
//! lines and the crates that offer it (`kodama`) take condensed distances, not PyLate's rows.

/// Pools the token vectors of one document (`rows × dim`, row-major) with `pool_factor` (1
/// returns them unchanged), keeping the first `protected` rows as they are (appended after the
/// pooled ones, as PyLate does). Returns the pooled rows (`≤ rows`, row-major). Non-finite
/// values (an overflowing model) are returned unchanged, unpooled, for the caller's checks of
/// stored values to refuse them.
pub fn pool_tokens(tokens: &[f32], dim: usize, pool_factor: usize, protected: usize) -> Vec<f32> {
    let rows = tokens.len().checked_div(dim).unwrap_or(0);
    let protected = protected.min(rows);
    let m = rows - protected;
    if pool_factor <= 1 || m < 2 || tokens.iter().any(|v| !v.is_finite()) {
        return tokens.to_vec();
    }
    let (kept, rest) = tokens.split_at(protected * dim);
    let clusters = (m / pool_factor).max(1);
    let labels = ward_maxclust(&observations(rest, m, dim), m, clusters);
    // Means in the order of each cluster's first member.
    let mut out = Vec::with_capacity((clusters + protected) * dim);
    let mut seen = vec![usize::MAX; m];
    for first in 0..m {
        let root = labels[first];
        if seen[root] != usize::MAX {
            continue;
        }
        seen[root] = first;
        let members: Vec<usize> = (first..m).filter(|&i| labels[i] == root).collect();
        let mut mean = vec![0f32; dim];
        for &i in &members {
            mean.iter_mut()
                .zip(&rest[i * dim..(i + 1) * dim])
                .for_each(|(a, v)| *a += v);
        }
        let inv = 1.0 / members.len() as f32;
        out.extend(mean.iter().map(|a| a * inv));
    }
    out.extend_from_slice(kept);
    out
}

/// The rows of `D = 1 − E·Eᵀ` (f32, as PyLate computes it), widened to f64: `m × m`.
fn observations(e: &[f32], m: usize, dim: usize) -> Vec<f64> {
    let mut d = vec![0f64; m * m];
    for i in 0..m {
        let a = &e[i * dim..(i + 1) * dim];
        for j in 0..m {
            let b = &e[j * dim..(j + 1) * dim];
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            d[i * m + j] = f64::from(1.0f32 - dot);
        }
    }
    d
}

/// Ward clustering of the `m` observations (rows of `obs`, `m` values each) cut into at most
/// `clusters` clusters; returns each observation's cluster as a representative index.
fn ward_maxclust(obs: &[f64], m: usize, clusters: usize) -> Vec<usize> {
    // Squared Euclidean distances between observations; Lance–Williams updates keep them
    // squared (Ward's criterion), which orders merges as scipy's (non-squared) heights do.
    let mut d2 = vec![0f64; m * m];
    for i in 0..m {
        for j in (i + 1)..m {
            let s: f64 = obs[i * m..(i + 1) * m]
                .iter()
                .zip(&obs[j * m..(j + 1) * m])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            d2[i * m + j] = s;
            d2[j * m + i] = s;
        }
    }
    let mut size = vec![1usize; m];
    let mut active = vec![true; m];
    // Merges as (height², one member of each side).
    let mut merges: Vec<(f64, usize, usize)> = Vec::with_capacity(m - 1);
    let mut chain: Vec<usize> = Vec::with_capacity(m);
    let mut left = m;
    while left > 1 {
        if chain.is_empty() {
            chain.push((0..m).find(|&i| active[i]).expect("two clusters are left"));
        }
        let a = *chain.last().expect("not empty");
        let previous = chain.len().checked_sub(2).map(|i| chain[i]);
        // The nearest active cluster to `a`; the previous chain element wins ties, which
        // guarantees the chain ends in a reciprocal pair.
        let mut best = previous.unwrap_or(usize::MAX);
        let mut best_d = previous.map_or(f64::INFINITY, |p| d2[a * m + p]);
        for k in 0..m {
            if k != a && active[k] && d2[a * m + k] < best_d {
                best = k;
                best_d = d2[a * m + k];
            }
        }
        if best == usize::MAX {
            // Only non-finite distances (excluded by the caller): leave the rest unmerged.
            break;
        }
        if Some(best) != previous {
            chain.push(best);
            continue;
        }
        // `a` and `best` are reciprocal nearest neighbours: merge them into slot `a`.
        chain.truncate(chain.len() - 2);
        let b = best;
        merges.push((best_d, a, b));
        let (na, nb) = (size[a] as f64, size[b] as f64);
        for k in 0..m {
            if !active[k] || k == a || k == b {
                continue;
            }
            let nk = size[k] as f64;
            let v = ((na + nk) * d2[a * m + k] + (nb + nk) * d2[b * m + k] - nk * best_d)
                / (na + nb + nk);
            d2[a * m + k] = v;
            d2[k * m + a] = v;
        }
        size[a] += size[b];
        active[b] = false;
        left -= 1;
    }
    // fcluster's maxclust: the partition after the m − clusters lowest merges (Ward's heights
    // never decrease along the tree, so the lowest merges form a valid cut).
    merges.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut parent: Vec<usize> = (0..m).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &(_, a, b) in merges.iter().take(m.saturating_sub(clusters)) {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        parent[ra.max(rb)] = ra.min(rb);
    }
    (0..m).map(|i| root(&mut parent, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive algorithm: merge the closest pair (Ward's criterion on the observations'
    /// centroids) until `clusters` remain.
    fn naive(obs: &[f64], m: usize, clusters: usize) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = (0..m).map(|i| vec![i]).collect();
        let centroid = |g: &[usize]| -> Vec<f64> {
            let mut c = vec![0f64; m];
            for &i in g {
                c.iter_mut()
                    .zip(&obs[i * m..(i + 1) * m])
                    .for_each(|(a, v)| *a += v);
            }
            c.iter_mut().for_each(|a| *a /= g.len() as f64);
            c
        };
        while groups.len() > clusters {
            let mut best = (f64::INFINITY, 0, 0);
            for x in 0..groups.len() {
                for y in (x + 1)..groups.len() {
                    let (cx, cy) = (centroid(&groups[x]), centroid(&groups[y]));
                    let (nx, ny) = (groups[x].len() as f64, groups[y].len() as f64);
                    let dist: f64 = cx.iter().zip(&cy).map(|(a, b)| (a - b) * (a - b)).sum();
                    let ward = 2.0 * nx * ny / (nx + ny) * dist;
                    if ward < best.0 {
                        best = (ward, x, y);
                    }
                }
            }
            let moved = groups.remove(best.2);
            groups[best.1].extend(moved);
        }
        groups.iter_mut().for_each(|g| g.sort_unstable());
        groups.sort();
        groups
    }

    fn unit_rows(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut v: Vec<f32> = (0..rows * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        for r in v.chunks_exact_mut(dim) {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= n);
        }
        v
    }

    #[test]
    fn the_chain_finds_the_naive_algorithms_partition() {
        for (rows, seed) in [(2, 1), (3, 2), (7, 3), (20, 4), (41, 5)] {
            let dim = 8;
            let e = unit_rows(rows, dim, seed);
            let obs = observations(&e, rows, dim);
            for clusters in [1, 2, rows / 2, rows - 1] {
                let clusters = clusters.max(1);
                let labels = ward_maxclust(&obs, rows, clusters);
                let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
                for (i, l) in labels.iter().enumerate() {
                    groups.entry(*l).or_default().push(i);
                }
                let mut got: Vec<Vec<usize>> = groups.into_values().collect();
                got.sort();
                assert_eq!(got, naive(&obs, rows, clusters), "{rows} rows, {clusters}");
            }
        }
    }

    #[test]
    fn pooling_keeps_protected_rows_and_averages_clusters() {
        let dim = 4;
        let e = unit_rows(11, dim, 9);
        // Factor 1, or fewer than two rows to pool: unchanged.
        assert_eq!(pool_tokens(&e, dim, 1, 1), e);
        assert_eq!(pool_tokens(&e[..2 * dim], dim, 2, 1), e[..2 * dim].to_vec());
        let pooled = pool_tokens(&e, dim, 2, 1);
        assert_eq!(pooled.len(), (10 / 2 + 1) * dim);
        // The protected [CLS] row comes last, unchanged.
        assert_eq!(&pooled[5 * dim..], &e[..dim]);
        // Factor ≥ rows: one mean of all pooled rows.
        let one = pool_tokens(&e, dim, 100, 1);
        let mean: Vec<f32> = (0..dim)
            .map(|k| (1..11).map(|r| e[r * dim + k]).sum::<f32>() / 10.0)
            .collect();
        for (a, b) in one[..dim].iter().zip(&mean) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(one.len(), 2 * dim);
    }
}
