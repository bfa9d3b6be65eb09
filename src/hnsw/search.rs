//! Search over a mapped graph: greedy descent through the upper layers, then best-first search
//! with a candidate list of `ef` on layer 0.
//!
//! Deleted rows are traversed like any other node (they keep the graph connected) but never enter
//! the result list, and the search only stops once `ef` *live* results are found or candidates run
//! out, so deletes do not cut recall. Termination: every node is scored at most once (visited set)
//! and the greedy descent moves only to strictly better nodes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::format::graph::GraphView;
use crate::linalg::similarity::prefetch as prefetch_bytes;

/// A scored row, ordered by score then (for determinism) by lower row first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored {
    score: f32,
    row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Searches `graph` for the best `k` live rows (best first, as `(score, row)`). `score(row)` is the
/// similarity of the query to a row (higher is better); `live(row)` is false for deleted rows.
pub fn search_graph(
    graph: &GraphView<'_>,
    k: usize,
    ef: usize,
    score: impl Fn(u32) -> f32,
    live: impl Fn(u32) -> bool,
) -> Result<Vec<(f32, u32)>> {
    search_graph_prefetching(graph, k, ef, score, live, |_| {})
}

/// Rows prefetched ahead of the one scored: enough to cover memory latency, little enough to
/// stay in L1 for the rows measured (8 rows of 784 i8 codes are 6 KiB; bf16 navigation rows of
/// inner-product graphs, and wide rows, were not measured). Alternating A/B at recall 0.95 on
/// i8 codes of 384-d and 784-d graphs (benches/RESULTS.md, stop 35): 4 and 6 ahead +13 % to
/// +20 % queries/s over 2 in the same sweep; 8 about level with 6 and 12 in the next (12 was
/// 6 % faster on 384-d, 3 % slower on 784-d).
const AHEAD: usize = 8;

/// [`search_graph`] that calls `prefetch(row)` for every row 8 rows (`AHEAD`) before scoring it,
/// on every layer, so that the rows' vectors are on their way to the cache before they are needed
/// (graph search is bound by memory latency, not arithmetic). The layer-0 adjacency is
/// prefetched too: a row's offsets when it becomes a candidate, and the next candidate's
/// neighbour list while the current one is expanded (as hnswlib prefetches the next candidate's
/// block).
pub fn search_graph_prefetching(
    graph: &GraphView<'_>,
    k: usize,
    ef: usize,
    score: impl Fn(u32) -> f32,
    live: impl Fn(u32) -> bool,
    prefetch: impl Fn(u32),
) -> Result<Vec<(f32, u32)>> {
    let ef = ef.max(k);
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut cur = Scored {
        score: score(graph.entry),
        row: graph.entry,
    };
    for layer in (1..graph.layers()).rev() {
        loop {
            let pos = graph.position(layer, cur.row)?;
            let mut best = cur;
            let list = graph.neighbours(layer, pos)?;
            for &nb in list {
                graph.check_row(layer, nb)?;
            }
            // The upper layers' rows are as cold as layer 0's: the same prefetch AHEAD rows ahead
            // (at 2 ahead against none, benches/RESULTS.md stop 34: +14 % to +30 % queries/s at
            // ef 10).
            for &nb in list.iter().take(AHEAD) {
                prefetch(nb);
            }
            for (i, &nb) in list.iter().enumerate() {
                if let Some(&next) = list.get(i + AHEAD) {
                    prefetch(next);
                }
                let s = Scored {
                    score: score(nb),
                    row: nb,
                };
                if s > best {
                    best = s;
                }
            }
            // By row, not by `Scored`'s equality: a NaN score is not equal to itself, and the
            // descent would never stop.
            if best.row == cur.row {
                break;
            }
            cur = best;
        }
    }
    let mut visited = vec![0u64; (graph.rows as usize).div_ceil(64)];
    let mut visit = |r: u32| {
        let (w, b) = (r as usize / 64, r % 64);
        let fresh = visited[w] & (1 << b) == 0;
        visited[w] |= 1 << b;
        fresh
    };
    visit(cur.row);
    // Candidates: best first. Results: worst first (a min-heap via Reverse), live rows only.
    let mut candidates = BinaryHeap::from([cur]);
    // Grows as needed: a huge `ef` over a small graph must not reserve `ef` slots.
    let mut results: BinaryHeap<std::cmp::Reverse<Scored>> =
        BinaryHeap::with_capacity(ef.saturating_add(1).min(1 << 16));
    if live(cur.row) {
        results.push(std::cmp::Reverse(cur));
    }
    let mut fresh: Vec<u32> = Vec::with_capacity(graph.m0 as usize);
    while let Some(c) = candidates.pop() {
        // As hnswlib: stop only at a candidate strictly worse than the worst result, so that a
        // plateau of equal scores (duplicate vectors) is explored rather than cut by row order.
        if results.len() >= ef && results.peek().is_some_and(|w| c.score < w.0.score) {
            break;
        }
        if let Some(next) = candidates.peek() {
            prefetch_bytes(graph.neighbour_bytes0(next.row));
        }
        fresh.clear();
        for &nb in graph.neighbours(0, c.row as usize)? {
            graph.check_row(0, nb)?;
            if visit(nb) {
                fresh.push(nb);
            }
        }
        for &nb in fresh.iter().take(AHEAD) {
            prefetch(nb);
        }
        for (i, &nb) in fresh.iter().enumerate() {
            if let Some(&next) = fresh.get(i + AHEAD) {
                prefetch(next);
            }
            let s = Scored {
                score: score(nb),
                row: nb,
            };
            if results.len() < ef || results.peek().is_some_and(|w| s.score > w.0.score) {
                prefetch_bytes(graph.offset_bytes0(nb));
                candidates.push(s);
                if live(nb) {
                    results.push(std::cmp::Reverse(s));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
    }
    let mut out: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
    out.sort_by(|a, b| b.cmp(a));
    out.truncate(k);
    Ok(out.into_iter().map(|s| (s.score, s.row)).collect())
}

#[cfg(test)]
mod tests {
    use super::super::build::build_graph;
    use super::*;
    use crate::dtype::Metric;
    use crate::format::graph::{encode_graph, GraphView};
    use crate::linalg::similarity::scalar;
    use crate::meta::HnswParams;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n * d)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn recall_against_brute_force_with_and_without_deletes() {
        let (n, d, k) = (2000, 16, 10);
        let x = data(n, d, 1);
        let queries = data(50, d, 2);
        for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
            let params = HnswParams {
                m: 12,
                ef_construction: 100,
                ..HnswParams::default()
            };
            let g = build_graph(&x, d, metric, &params).unwrap();
            let bytes = encode_graph(&g);
            let mut buf = vec![0u64; bytes.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..bytes.len()].copy_from_slice(&bytes);
            let b = &bytemuck::cast_slice::<u64, u8>(&buf)[..bytes.len()];
            let view = GraphView::open(b, std::path::Path::new("t"), 0, n as u64, metric).unwrap();
            view.verify().unwrap();
            for deleted_every in [0usize, 3] {
                let live =
                    |r: u32| deleted_every == 0 || !(r as usize).is_multiple_of(deleted_every);
                let mut hit = 0;
                for q in queries.chunks_exact(d) {
                    let score = |r: u32| {
                        scalar::similarity(metric, q, &x[r as usize * d..(r as usize + 1) * d])
                            as f32
                    };
                    let got = search_graph(&view, k, 64, score, live).unwrap();
                    assert!(got.iter().all(|(_, r)| live(*r)));
                    let mut all: Vec<(f32, u32)> = (0..n as u32)
                        .filter(|r| live(*r))
                        .map(|r| (score(r), r))
                        .collect();
                    all.sort_by(|a, b| b.0.total_cmp(&a.0));
                    let truth: Vec<u32> = all[..k].iter().map(|p| p.1).collect();
                    hit += got.iter().filter(|(_, r)| truth.contains(r)).count();
                }
                let recall = hit as f64 / (k * (queries.len() / d)) as f64;
                assert!(
                    recall >= 0.9,
                    "{metric:?}, deleted every {deleted_every}: recall {recall}"
                );
            }
        }
    }
}
