//! The state of a screened search for one query: the `k` best lower bounds among live rows seen
//! (the floor: `k` rows are known to score at least this) and the candidates whose upper bound
//! reached the floor when seen. A row whose upper bound is below the floor is beaten by `k` other
//! live rows and cannot be in the top-k. [`Screen::finish`] rescores the candidates exactly, best
//! upper bound first, until no remaining one can enter the top-k. Shared by the bf16 batch screen
//! (`screened.rs`) and the single-query search over stored screening codes (`coded.rs`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::topk::{Candidate, TopK};

/// An f32 ordered by `total_cmp`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Total(f32);

impl Eq for Total {}

impl Ord for Total {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl PartialOrd for Total {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A floor shared by the parallel tasks of one query: each task's floor is valid for all (its `k`
/// rows are live rows of the collection), so every task may prune with the highest one published.
#[derive(Debug, Default)]
pub(super) struct SharedFloor(std::sync::atomic::AtomicU32);

impl SharedFloor {
    /// An f32 as a u32 key ordered like the floats (`total_cmp`).
    fn key(v: f32) -> u32 {
        let b = v.to_bits();
        if b >> 31 == 1 {
            !b
        } else {
            b | 0x8000_0000
        }
    }

    fn value(key: u32) -> f32 {
        f32::from_bits(if key >> 31 == 1 {
            key & 0x7fff_ffff
        } else {
            !key
        })
    }

    /// A floor of -inf.
    pub(super) fn new() -> Self {
        SharedFloor(std::sync::atomic::AtomicU32::new(Self::key(
            f32::NEG_INFINITY,
        )))
    }

    /// The highest floor published.
    #[inline]
    pub(super) fn get(&self) -> f32 {
        Self::value(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Publishes `floor` (keeps the higher one).
    #[inline]
    pub(super) fn publish(&self, floor: f32) {
        if !floor.is_nan() {
            self.0
                .fetch_max(Self::key(floor), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The `k` largest values pushed (a min-heap).
#[derive(Debug, Clone)]
struct LargestK {
    k: usize,
    heap: BinaryHeap<Reverse<Total>>,
}

impl LargestK {
    fn new(k: usize) -> Self {
        LargestK {
            k,
            // Grows as needed: a huge `k` over few rows must not reserve `k` slots.
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
        }
    }

    /// The k-th largest value, -inf while fewer than `k` were pushed (+inf when `k` is 0).
    fn kth(&self) -> f32 {
        match self.heap.peek() {
            _ if self.k == 0 => f32::INFINITY,
            Some(Reverse(Total(v))) if self.heap.len() == self.k => *v,
            _ => f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn push(&mut self, v: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(Total(v)));
        } else if let Some(mut min) = self.heap.peek_mut() {
            if v > min.0 .0 {
                *min = Reverse(Total(v));
            }
        }
    }
}

/// The screening state of one query.
#[derive(Clone)]
pub(super) struct Screen {
    /// The `k` best lower bounds among live rows seen.
    lower: LargestK,
    /// `lower`'s threshold: the score `k` live rows are known to reach.
    pub(super) floor: f32,
    /// Rows whose upper bound (the candidate's score) reached the floor when seen.
    candidates: Vec<Candidate>,
    /// Length at which `candidates` is next pruned against the floor.
    prune_at: usize,
}

impl Screen {
    pub(super) fn new(k: usize) -> Self {
        let lower = LargestK::new(k);
        Screen {
            floor: lower.kth(),
            lower,
            candidates: Vec::new(),
            prune_at: k.saturating_mul(4).saturating_add(64),
        }
    }

    #[inline]
    pub(super) fn offer(&mut self, upper: f32, lower: f32, segment: u32, row: u32) {
        self.candidates.push(Candidate {
            score: upper,
            segment_ord: segment,
            row,
        });
        self.lower.push(lower);
        self.floor = self.lower.kth();
        if self.candidates.len() >= self.prune_at {
            self.prune();
        }
    }

    fn prune(&mut self) {
        let floor = self.floor;
        self.candidates.retain(|c| c.score >= floor);
        self.prune_at = self.prune_at.max(2 * self.candidates.len());
    }

    pub(super) fn merge(&mut self, other: Screen) {
        for Reverse(Total(v)) in other.lower.heap {
            self.lower.push(v);
        }
        self.floor = self.lower.kth();
        self.candidates.extend(other.candidates);
        self.prune();
    }

    /// Rescores candidates, best upper bound first, until no remaining one can enter the top-k.
    pub(super) fn finish(self, k: usize, rescore: impl Fn(u32, u32) -> f32) -> TopK {
        self.finish_prefetching(k, |_, _| {}, rescore)
    }

    /// [`Screen::finish`], calling `prefetch(segment, row)` [`PREFETCH_AHEAD`] candidates ahead of
    /// the one rescored, so that the cold rows' misses overlap.
    pub(super) fn finish_prefetching(
        mut self,
        k: usize,
        prefetch: impl Fn(u32, u32),
        rescore: impl Fn(u32, u32) -> f32,
    ) -> TopK {
        self.candidates.sort_unstable();
        let mut top = TopK::new(k);
        for c in self.candidates.iter().take(PREFETCH_AHEAD) {
            prefetch(c.segment_ord, c.row);
        }
        for (i, c) in self.candidates.iter().enumerate() {
            if c.score < top.threshold() {
                break;
            }
            if let Some(ahead) = self.candidates.get(i + PREFETCH_AHEAD) {
                prefetch(ahead.segment_ord, ahead.row);
            }
            let score = rescore(c.segment_ord, c.row);
            if score >= top.threshold() {
                top.push(Candidate { score, ..*c });
            }
        }
        top
    }
}

/// How many candidates ahead [`Screen::finish_prefetching`] asks for rows: about as many misses
/// as a core keeps in flight for the rows' first lines.
const PREFETCH_AHEAD: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// A screen for the top `k` offered rows `0..n` with exact scores `n − row` and intervals
    /// `± half`, each row only while its upper bound reaches the floor (as the searches offer).
    fn offered(k: usize, n: u32, half: f32) -> Screen {
        let mut s = Screen::new(k);
        for r in 0..n {
            let exact = (n - r) as f32;
            if exact + half >= s.floor {
                s.offer(exact + half, exact - half, 0, r);
            }
        }
        s
    }

    #[test]
    fn screen_keeps_every_row_that_can_reach_the_top_k() {
        // Rows 0..6 with exact scores 6,5,..,1 and intervals ±0.5; k = 2.
        let mut s = offered(2, 6, 0.5);
        // Floor is the second-best lower bound (4.5): rows 0, 1 and 2 (upper 4.5) stay.
        assert_eq!(s.floor, 4.5);
        s.prune();
        let rows: Vec<u32> = s.candidates.iter().map(|c| c.row).collect();
        assert_eq!(rows, vec![0, 1, 2]);
        let rescored = std::cell::Cell::new(0);
        let top = s.finish(2, |_, row| {
            rescored.set(rescored.get() + 1);
            6.0 - row as f32
        });
        let got: Vec<u32> = top.into_sorted().iter().map(|c| c.row).collect();
        assert_eq!(got, vec![0, 1]);
        // Row 2's upper bound (4.5) is below the exact second score (5): not rescored.
        assert_eq!(rescored.get(), 2);
    }

    #[test]
    fn rescored_rows_were_asked_for_before_and_results_match_finish() {
        // 30 candidates with exact scores 30 − row and intervals ±8: 12 rows (scores 30 to 19)
        // can reach the top 4 and are rescored, more than `PREFETCH_AHEAD`.
        let s = offered(4, 30, 8.0);
        let asked = std::cell::RefCell::new(Vec::new());
        let rescored = std::cell::RefCell::new(Vec::new());
        let top = s.clone().finish_prefetching(
            4,
            |_, row| asked.borrow_mut().push(row),
            |_, row| {
                assert!(
                    asked.borrow().contains(&row),
                    "row {row} rescored before it was asked for"
                );
                rescored.borrow_mut().push(row);
                30.0 - row as f32
            },
        );
        assert!(rescored.borrow().len() > PREFETCH_AHEAD);
        let plain = s.finish(4, |_, row| 30.0 - row as f32);
        let rows = |t: TopK| t.into_sorted().iter().map(|c| c.row).collect::<Vec<_>>();
        assert_eq!(rows(top), vec![0, 1, 2, 3]);
        assert_eq!(rows(plain), vec![0, 1, 2, 3]);
    }

    #[test]
    fn shared_floor_keeps_the_highest_value_in_float_order() {
        let f = SharedFloor::new();
        assert_eq!(f.get(), f32::NEG_INFINITY);
        for v in [-3.5, -0.0, -7.0, 2.25, 1.0, f32::NAN] {
            f.publish(v);
        }
        assert_eq!(f.get(), 2.25);
        let g = SharedFloor::new();
        g.publish(-2.0);
        g.publish(-5.0);
        assert_eq!(g.get(), -2.0);
    }

    #[test]
    fn merged_screens_keep_the_union_of_candidates() {
        let (mut a, mut b) = (Screen::new(1), Screen::new(1));
        a.offer(3.0, 2.0, 0, 0);
        b.offer(10.0, 9.0, 1, 0);
        a.merge(b);
        assert_eq!(a.floor, 9.0);
        assert_eq!(a.candidates.len(), 1);
        let top = a.finish(1, |seg, _| if seg == 1 { 9.5 } else { 2.5 });
        assert_eq!(top.into_sorted()[0].segment_ord, 1);
    }
}
