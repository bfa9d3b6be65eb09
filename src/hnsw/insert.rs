//! HNSW construction: parallel insertion of every node into a layered graph.
//!
//! The algorithm is the paper's (Malkov & Yashunin, "Efficient and robust approximate nearest
//! neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018): INSERT
//! (Algorithm 1) with a greedy descent through the layers above the node's own, SEARCH-LAYER
//! (Algorithm 2) with `ef_construction` candidates on the node's layers, and the neighbour
//! selection heuristic (Algorithm 4, without `extendCandidates` and `keepPrunedConnections`, as
//! hnswlib builds), which also prunes a neighbour's list when a new reverse edge overflows it.
//! Layer 0 keeps up to `2·m` neighbours, the layers above `m`.
//!
//! Why vellum builds its own graphs rather than calling a crate: construction is one layer search
//! per node and layer, and a layer search is bound by memory latency — which of a node's
//! neighbours are new, then their vectors. Here every node's layer-0 list is a fixed block of one
//! array (as in hnswlib), visited marks are a per-thread generation array, and each list's
//! unvisited neighbours have their vectors prefetched before any is scored; `hnsw_rs` kept each
//! point, and each point's lists, as separate heap objects (benches/RESULTS.md, "Build and open at
//! scale").
//!
//! Concurrency: threads take nodes from a shared counter (interleaved, as hnswlib's
//! `add_items`). A list is rewritten only under its node's lock; readers do not lock. Lists are
//! arrays of atomics — a count stored with release after the ids it covers — so a reader sees a
//! count and ids that are each some valid node, possibly a mix of an older and a newer list,
//! which can only steer one search step slightly differently. No thread holds two locks.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};

use parking_lot::Mutex;
use rayon::prelude::*;

/// Node distances for construction: smaller is closer; any finite value (negative for inner
/// product). Nodes are `0..nodes`.
pub trait Space: Sync {
    /// Distance between nodes `a` and `b`.
    fn distance(&self, a: u32, b: u32) -> f32;
    /// Starts loading `node`'s vector into the cache (a hint).
    fn prefetch(&self, node: u32);
}

/// The built graph: each node's level, and its neighbour lists on layers `0..=level`.
pub struct Built {
    /// Level of each node (the top layer it belongs to).
    pub levels: Vec<u8>,
    /// Per node, per layer `0..=level`: neighbour nodes, closest first as selected.
    pub lists: Vec<Vec<Vec<u32>>>,
    /// The entry node (a node of the top level).
    pub entry: u32,
}

/// Highest level a node may get (16 layers; at `m = 2`, level 15 has probability 2⁻¹⁵).
const MAX_LEVEL: u8 = 15;

/// Builds a graph over `nodes` nodes of `space` with `m` neighbours per node on the upper layers,
/// `2·m` on layer 0, and `ef_construction` candidates per layer search. Levels are drawn from
/// `seed` (the same seed gives the same levels; edges depend on thread timing).
///
/// Nodes with `upper(node)` false stay on layer 0 (unless no node may go higher). vellum keeps a
/// node with `m` or more exact copies there: a search that descends onto it explores its
/// equal-score copies first, fills its `ef` results with them and stops. The entry node is the
/// first node of the top level.
///
/// # Panics
///
/// If `m < 2` (`HnswParams::validate` refuses it), or if `nodes` or the lists' size exceed the
/// address space.
pub fn build(
    space: &impl Space,
    nodes: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    upper: impl Fn(u32) -> bool,
) -> Built {
    assert!(m >= 2, "HNSW m must be at least 2, got {m}");
    assert!(
        nodes <= u32::MAX as usize,
        "a segment holds fewer than 2^32 rows"
    );
    let mut levels = draw_levels(nodes, m, seed);
    if (0..nodes as u32).any(&upper) {
        for (node, level) in levels.iter_mut().enumerate() {
            if !upper(node as u32) {
                *level = 0;
            }
        }
    }
    let top = levels.iter().copied().max().unwrap_or(0);
    let Some(entry) = levels.iter().position(|&l| l == top) else {
        return Built {
            levels,
            lists: Vec::new(),
            entry: 0,
        };
    };
    let links = Links::new(&levels, m);
    let builder = Builder {
        space,
        links: &links,
        levels: &levels,
        entry: entry as u32,
        top,
        ef: ef_construction.max(m),
    };
    // The entry node is not inserted (it starts with no neighbours; the others link to it), so
    // every other node can start from it at the top level; the rest are taken in a shuffled
    // order (`insertion_order`) by whichever thread is free.
    let order = insertion_order(nodes, seed);
    let next = AtomicUsize::new(0);
    let threads = rayon::current_num_threads().max(1);
    (0..threads).into_par_iter().for_each(|_| {
        let mut scratch = Scratch::new(nodes);
        loop {
            let i = next.fetch_add(1, AtomicOrdering::Relaxed);
            let Some(&node) = order.get(i) else {
                break;
            };
            if node as usize != entry {
                builder.insert(node, &mut scratch);
            }
        }
    });
    let mut lists = Vec::with_capacity(nodes);
    let mut buf = Vec::new();
    for (node, &level) in levels.iter().enumerate() {
        lists.push(
            (0..=level)
                .map(|layer| {
                    links.read(node as u32, layer, &mut buf);
                    buf.clone()
                })
                .collect(),
        );
    }
    Built {
        levels,
        lists,
        entry: entry as u32,
    }
}

/// A splitmix64 stream (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): the level draw and the insertion order must be reproducible from the seed on
/// every platform, which is all they need; a one-screen generator beats a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Levels `⌊−ln(u) / ln(m)⌋` (the paper's `mL = 1 / ln(M)`), `u` uniform in (0, 1] from a
/// splitmix64 stream of `seed`, capped at [`MAX_LEVEL`].
fn draw_levels(nodes: usize, m: usize, seed: u64) -> Vec<u8> {
    let ml = 1.0 / (m as f64).ln();
    let mut stream = SplitMix64(seed);
    (0..nodes)
        .map(|_| {
            let u = ((stream.next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            ((-u.ln() * ml).floor() as u64).min(u64::from(MAX_LEVEL)) as u8
        })
        .collect()
}

/// The order nodes are inserted in: a permutation of `0..nodes` drawn from `seed` (Fisher–Yates).
///
/// Row order is often sorted (by id, source, name) and so correlated with topic. Inserting a
/// sorted run fills each region of the graph in one burst, before the rest of the data exists,
/// and its nodes link mostly among themselves. FAISS inserts in a random order within each level
/// for the same reason; hnswlib takes the caller's order. On real MiniLM embeddings of Debian
/// package descriptions, sorted by package name (benches/RESULTS.md, stop 36), recall@10 at ef 32
/// went from 0.950 to 0.956 with a shuffled order, at the same build time.
fn insertion_order(nodes: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..nodes as u32).collect();
    let mut stream = SplitMix64(seed ^ 0x6f_7264_6572);
    for i in (1..order.len()).rev() {
        // The modulo bias is below 2^-32 for any segment size, and only reorders the insertion.
        let j = (stream.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Every node's neighbour lists: layer 0 in one array of fixed blocks (`1 + 2·m` words: the count,
/// then the ids), the upper layers of each node with a level above 0 in a second array
/// (`level` blocks of `1 + m` words), and one lock per node for writers.
struct Links {
    m: usize,
    layer0: Vec<AtomicU32>,
    /// Per node: the start of its first upper block in `upper` (unused for level-0 nodes).
    upper_start: Vec<usize>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
}

impl Links {
    fn new(levels: &[u8], m: usize) -> Self {
        let too_many = "HNSW neighbour lists exceed the address space";
        let mut upper_start = Vec::with_capacity(levels.len());
        let mut total = 0usize;
        for &l in levels {
            upper_start.push(total);
            total = usize::from(l)
                .checked_mul(m + 1)
                .and_then(|words| total.checked_add(words))
                .expect(too_many);
        }
        let zeroed = |n: usize| (0..n).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Links {
            m,
            layer0: zeroed(levels.len().checked_mul(2 * m + 1).expect(too_many)),
            upper_start,
            upper: zeroed(total),
            locks: (0..levels.len()).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Most neighbours a list on `layer` keeps.
    fn capacity(&self, layer: u8) -> usize {
        if layer == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    /// The block of `node` on `layer` (count word first). `layer` is at most the node's level.
    fn block(&self, node: u32, layer: u8) -> &[AtomicU32] {
        let n = node as usize;
        if layer == 0 {
            let w = 2 * self.m + 1;
            &self.layer0[n * w..(n + 1) * w]
        } else {
            let w = self.m + 1;
            let start = self.upper_start[n] + (usize::from(layer) - 1) * w;
            &self.upper[start..start + w]
        }
    }

    /// Reads `node`'s list on `layer` into `out`.
    fn read(&self, node: u32, layer: u8, out: &mut Vec<u32>) {
        let block = self.block(node, layer);
        let count = (block[0].load(AtomicOrdering::Acquire) as usize).min(block.len() - 1);
        out.clear();
        out.extend(
            block[1..=count]
                .iter()
                .map(|id| id.load(AtomicOrdering::Relaxed)),
        );
    }

    /// Replaces `node`'s list on `layer` by `ids` (at most the layer's capacity). The caller holds
    /// the node's lock.
    fn write(&self, node: u32, layer: u8, ids: impl ExactSizeIterator<Item = u32>) {
        let block = self.block(node, layer);
        let count = ids.len();
        debug_assert!(count < block.len());
        for (slot, id) in block[1..].iter().zip(ids) {
            slot.store(id, AtomicOrdering::Relaxed);
        }
        block[0].store(count as u32, AtomicOrdering::Release);
    }

    /// Starts loading the first cache line of `node`'s layer-0 block (its count and first ids).
    fn prefetch0(&self, node: u32) {
        crate::linalg::similarity::prefetch_line(self.block(node, 0).as_ptr().cast());
    }
}

/// A node at a distance, ordered by distance (`total_cmp`, so NaN too), then by node (for
/// determinism of ties).
#[derive(Debug, Clone, Copy)]
struct Near {
    dist: f32,
    node: u32,
}

impl PartialEq for Near {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then_with(|| self.node.cmp(&other.node))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One thread's reusable buffers: visited marks by generation (cleared only when the generation
/// counter wraps), the two heaps of a layer search, and list buffers.
struct Scratch {
    marks: Vec<u16>,
    generation: u16,
    candidates: BinaryHeap<std::cmp::Reverse<Near>>,
    results: BinaryHeap<Near>,
    list: Vec<u32>,
    fresh: Vec<u32>,
    pool: Vec<Near>,
}

impl Scratch {
    fn new(nodes: usize) -> Self {
        Scratch {
            marks: vec![0; nodes],
            generation: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            list: Vec::new(),
            fresh: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// Starts a new visited set.
    fn next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `node` visited; true when it was not yet.
    fn visit(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.generation;
        *mark = self.generation;
        fresh
    }
}

struct Builder<'a, S: Space> {
    space: &'a S,
    links: &'a Links,
    levels: &'a [u8],
    entry: u32,
    top: u8,
    ef: usize,
}

impl<S: Space> Builder<'_, S> {
    /// INSERT (Algorithm 1) of node `q`. Every layer is searched before any edge is written, and
    /// the edges are then written from layer 0 up, each layer's own list before its reverse edges:
    /// so when another thread can first reach `q` on a layer, `q` already has its lists on that
    /// layer and every layer below (hnswlib gets the same by holding the new node's lock for its
    /// whole insertion and locking every list it reads).
    fn insert(&self, q: u32, scratch: &mut Scratch) {
        let level = self.levels[q as usize];
        let mut ep = Near {
            dist: self.space.distance(q, self.entry),
            node: self.entry,
        };
        for layer in (level.saturating_add(1)..=self.top).rev() {
            ep = self.greedy(q, ep, layer, scratch);
        }
        let mut chosen: Vec<(u8, Vec<Near>)> = Vec::with_capacity(usize::from(level) + 1);
        for layer in (0..=level.min(self.top)).rev() {
            self.search_layer(q, ep, layer, scratch);
            // Closest first: the selection heuristic and the next layer's entry need the order.
            scratch.pool.clear();
            scratch.pool.extend(scratch.results.drain());
            scratch.pool.sort_unstable();
            // Never empty: `ep` is not `q` (the descent skips `q`), so it is a result.
            let Some(&closest) = scratch.pool.first() else {
                continue;
            };
            ep = closest;
            chosen.push((layer, self.select(&scratch.pool, self.links.m)));
        }
        for (layer, selected) in chosen.into_iter().rev() {
            self.link_own(q, layer, &selected);
            for near in &selected {
                self.link_reverse(
                    near.node,
                    layer,
                    Near {
                        dist: near.dist,
                        node: q,
                    },
                    &mut scratch.list,
                );
            }
        }
    }

    /// Greedy descent on `layer`: moves to the closest neighbour while it is closer.
    fn greedy(&self, q: u32, mut ep: Near, layer: u8, scratch: &mut Scratch) -> Near {
        loop {
            self.links.read(ep.node, layer, &mut scratch.list);
            let mut best = ep;
            for &nb in scratch.list.iter().filter(|&&nb| nb != q) {
                let near = Near {
                    dist: self.space.distance(q, nb),
                    node: nb,
                };
                if near < best {
                    best = near;
                }
            }
            if best.node == ep.node {
                return ep;
            }
            ep = best;
        }
    }

    /// SEARCH-LAYER (Algorithm 2) from `ep` with `ef` candidates; leaves the nearest found in
    /// `scratch.results` (a max-heap by distance). `q` itself is never a result.
    fn search_layer(&self, q: u32, ep: Near, layer: u8, scratch: &mut Scratch) {
        scratch.next_generation();
        scratch.candidates.clear();
        scratch.results.clear();
        scratch.visit(q);
        scratch.visit(ep.node);
        scratch.candidates.push(std::cmp::Reverse(ep));
        if ep.node != q {
            scratch.results.push(ep);
        }
        while let Some(std::cmp::Reverse(c)) = scratch.candidates.pop() {
            if scratch.results.len() >= self.ef
                && scratch.results.peek().is_some_and(|w| c.dist > w.dist)
            {
                break;
            }
            if layer == 0 {
                if let Some(std::cmp::Reverse(next)) = scratch.candidates.peek() {
                    self.links.prefetch0(next.node);
                }
            }
            self.links.read(c.node, layer, &mut scratch.list);
            scratch.fresh.clear();
            for i in 0..scratch.list.len() {
                let nb = scratch.list[i];
                if scratch.visit(nb) {
                    self.space.prefetch(nb);
                    scratch.fresh.push(nb);
                }
            }
            for i in 0..scratch.fresh.len() {
                let nb = scratch.fresh[i];
                let dist = self.space.distance(q, nb);
                let worst = scratch.results.peek().map_or(f32::INFINITY, |w| w.dist);
                if scratch.results.len() < self.ef || dist < worst {
                    let near = Near { dist, node: nb };
                    scratch.candidates.push(std::cmp::Reverse(near));
                    scratch.results.push(near);
                    if scratch.results.len() > self.ef {
                        scratch.results.pop();
                    }
                }
            }
        }
    }

    /// The selection heuristic (Algorithm 4): from `pool` (closest first), keeps a candidate only
    /// when it is closer to the base node than to every candidate already kept, up to `max`.
    fn select(&self, pool: &[Near], max: usize) -> Vec<Near> {
        if pool.len() <= max {
            return pool.to_vec();
        }
        let mut kept: Vec<Near> = Vec::with_capacity(max);
        for &c in pool {
            if kept.len() >= max {
                break;
            }
            if kept
                .iter()
                .all(|k| self.space.distance(c.node, k.node) >= c.dist)
            {
                kept.push(c);
            }
        }
        kept
    }

    /// Writes `q`'s own list on `layer`. Nothing else has written it: other threads reach `q` on
    /// a layer only through the reverse edges written after this (see [`Builder::insert`]).
    fn link_own(&self, q: u32, layer: u8, selected: &[Near]) {
        let _lock = self.links.locks[q as usize].lock();
        debug_assert_eq!(
            self.links.block(q, layer)[0].load(AtomicOrdering::Relaxed),
            0,
            "node {q} was linked to on layer {layer} before its own list was written"
        );
        self.links.write(q, layer, selected.iter().map(|n| n.node));
    }

    /// Adds the edge `node → new` on `layer`; when the list is full, the heuristic chooses among
    /// the old neighbours and `new` which to keep. `list` is a buffer.
    fn link_reverse(&self, node: u32, layer: u8, new: Near, list: &mut Vec<u32>) {
        let _lock = self.links.locks[node as usize].lock();
        self.links.read(node, layer, list);
        if list.contains(&new.node) {
            return;
        }
        if list.len() < self.links.capacity(layer) {
            list.push(new.node);
            self.links.write(node, layer, list.iter().copied());
            return;
        }
        let mut pool: Vec<Near> = list
            .iter()
            .map(|&nb| Near {
                dist: self.space.distance(node, nb),
                node: nb,
            })
            .collect();
        pool.push(new);
        pool.sort_unstable();
        let kept = self.select(&pool, self.links.capacity(layer));
        self.links.write(node, layer, kept.iter().map(|n| n.node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line: node `i` at `i` (with `gap` between two halves), distance `|a − b|`.
    struct Line(Vec<f32>);

    impl Space for Line {
        fn distance(&self, a: u32, b: u32) -> f32 {
            (self.0[a as usize] - self.0[b as usize]).abs()
        }
        fn prefetch(&self, _: u32) {}
    }

    /// Points in 8 dimensions (xorshift), squared L2.
    struct Cloud(Vec<f32>);

    impl Cloud {
        fn new(n: usize, seed: u64) -> Self {
            let mut x = seed | 1;
            Cloud(
                (0..n * 8)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 40) as f32 / (1u64 << 24) as f32
                    })
                    .collect(),
            )
        }
    }

    impl Space for Cloud {
        fn distance(&self, a: u32, b: u32) -> f32 {
            let row = |n: u32| &self.0[n as usize * 8..n as usize * 8 + 8];
            row(a)
                .iter()
                .zip(row(b))
                .map(|(x, y)| (x - y) * (x - y))
                .sum()
        }
        fn prefetch(&self, _: u32) {}
    }

    fn reachable(built: &Built) -> usize {
        let mut seen = vec![false; built.levels.len()];
        let mut stack = vec![built.entry];
        seen[built.entry as usize] = true;
        while let Some(n) = stack.pop() {
            for &nb in built.lists[n as usize].iter().flatten() {
                if !std::mem::replace(&mut seen[nb as usize], true) {
                    stack.push(nb);
                }
            }
        }
        seen.iter().filter(|&&s| s).count()
    }

    fn check_lists(built: &Built, m: usize) {
        assert_eq!(
            built.levels[built.entry as usize],
            *built.levels.iter().max().unwrap()
        );
        for (node, lists) in built.lists.iter().enumerate() {
            assert_eq!(lists.len(), usize::from(built.levels[node]) + 1);
            for (layer, list) in lists.iter().enumerate() {
                assert!(list.len() <= if layer == 0 { 2 * m } else { m });
                assert!(!list.contains(&(node as u32)), "self edge at {node}");
                let mut sorted = list.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), list.len(), "repeated edge at {node}");
                for &nb in list {
                    assert!(usize::from(built.levels[nb as usize]) >= layer);
                }
            }
        }
    }

    #[test]
    fn parallel_builds_keep_lists_within_capacity_without_self_or_repeated_edges() {
        let n = 3000;
        let space = Cloud::new(n, 3);
        let line = Line((0..n).map(|i| i as f32 * 0.37 % 1000.0).collect());
        // More threads than this machine's cores: insertions interleave at every step.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        for m in [2, 5, 16] {
            let built = pool.install(|| build(&space, n, m, 40, 7, |_| true));
            assert_eq!(built.lists.len(), n);
            check_lists(&built, m);
            check_lists(&pool.install(|| build(&line, n, m, 40, 7, |_| true)), m);
        }
    }

    #[test]
    fn a_sequential_build_reaches_every_node() {
        // One thread inserts in the seeded order, so the graph is deterministic and this cannot
        // be flaky. HNSW itself does not guarantee reachability (pruning may drop a last
        // in-edge; at m = 4 a node of these 3,000 can be lost).
        let n = 3000;
        let space = Cloud::new(n, 5);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for m in [8, 16] {
            let built = pool.install(|| build(&space, n, m, 40, 7, |_| true));
            check_lists(&built, m);
            assert_eq!(reachable(&built), n, "m = {m}");
        }
    }

    #[test]
    fn visited_marks_survive_the_generation_counter_wrapping() {
        let mut s = Scratch::new(3);
        for round in 0..70_000u32 {
            s.next_generation();
            assert!(
                s.visit(round % 3),
                "round {round}: fresh after a new generation"
            );
            assert!(!s.visit(round % 3), "round {round}: visited twice");
            assert!(
                s.visit((round + 1) % 3),
                "round {round}: another node is fresh"
            );
        }
    }

    #[test]
    fn levels_follow_the_papers_distribution_and_the_seed() {
        let levels = draw_levels(100_000, 16, 3);
        assert_eq!(levels, draw_levels(100_000, 16, 3));
        assert_ne!(levels, draw_levels(100_000, 16, 4));
        // P(level ≥ 1) = 1/m, P(level ≥ 2) = 1/m².
        let above0 = levels.iter().filter(|&&l| l >= 1).count() as f64 / 1e5;
        let above1 = levels.iter().filter(|&&l| l >= 2).count() as f64 / 1e5;
        assert!((above0 - 1.0 / 16.0).abs() < 0.005, "{above0}");
        assert!((above1 - 1.0 / 256.0).abs() < 0.001, "{above1}");
        assert!(draw_levels(10_000, 2, 1).iter().all(|&l| l <= MAX_LEVEL));
    }

    #[test]
    fn the_insertion_order_is_a_seeded_shuffle_of_every_node() {
        let order = insertion_order(10_000, 5);
        assert_eq!(order, insertion_order(10_000, 5));
        assert_ne!(order, insertion_order(10_000, 6));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..10_000), "a permutation");
        // Shuffled, not sorted runs: the first hundred insertions come from all over the rows.
        let early: Vec<u32> = order[..100].to_vec();
        assert!(early.iter().filter(|&&n| n < 5_000).count() > 25);
        assert!(early.iter().filter(|&&n| n >= 5_000).count() > 25);
        assert!(insertion_order(0, 1).is_empty());
        assert_eq!(insertion_order(1, 1), [0]);
    }

    #[test]
    fn nodes_kept_off_the_upper_layers_are_level_0_unless_none_may_rise() {
        let n = 2000;
        let space = Line((0..n).map(|i| i as f32).collect());
        let levels = draw_levels(n, 4, 9);
        let upper = |node: u32| node > 1000 && node % 2 == 1;
        let built = build(&space, n, 4, 20, 9, upper);
        for node in 0..n as u32 {
            let want = if upper(node) {
                levels[node as usize]
            } else {
                0
            };
            assert_eq!(built.levels[node as usize], want);
        }
        let top = *built.levels.iter().max().unwrap();
        assert!(top > 0);
        assert_eq!(built.levels[built.entry as usize], top);
        // None may rise: the drawn levels stand.
        let built = build(&space, n, 4, 20, 9, |_| false);
        assert_eq!(built.levels, levels);
    }

    #[test]
    fn empty_and_single_node_inputs() {
        let built = build(&Line(Vec::new()), 0, 16, 100, 1, |_| true);
        assert!(built.lists.is_empty());
        let built = build(&Line(vec![1.0]), 1, 16, 100, 1, |_| true);
        assert_eq!(built.entry, 0);
        assert!(built.lists[0].iter().all(Vec::is_empty));
    }

    #[test]
    fn the_heuristic_keeps_a_candidate_only_when_no_kept_one_is_closer_to_it() {
        // Base at 0; candidates at 1, 1.5 (closer to 1 than to the base), -2.
        let space = Line(vec![0.0, 1.0, 1.5, -2.0]);
        let links = Links::new(&[0, 0, 0, 0], 2);
        let levels = [0u8; 4];
        let b = Builder {
            space: &space,
            links: &links,
            levels: &levels,
            entry: 0,
            top: 0,
            ef: 4,
        };
        let pool = [
            Near { dist: 1.0, node: 1 },
            Near { dist: 1.5, node: 2 },
            Near { dist: 2.0, node: 3 },
        ];
        let kept: Vec<u32> = b.select(&pool, 2).iter().map(|n| n.node).collect();
        assert_eq!(kept, vec![1, 3]);
    }
}
