//! Bounded top-k selection with deterministic tie-breaking.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scored row. Ordered so that the *worse* candidate is the greater one: lower score, then later
/// position (segment, row). A max-heap of candidates therefore has the worst one on top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Similarity, higher is better.
    pub score: f32,
    /// Position of the segment in the snapshot's collection (`segment_ord`).
    pub segment_ord: u32,
    /// Row in the segment.
    pub row: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| (self.segment_ord, self.row).cmp(&(other.segment_ord, other.row)))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` candidates seen.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    /// An empty selection of capacity `k`.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score a candidate must reach to enter, or -inf while not full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |c| c.score)
        }
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, c: Candidate) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// Merges another selection into this one.
    pub fn merge(&mut self, other: TopK) {
        for c in other.heap {
            self.push(c);
        }
    }

    /// The kept candidates, best first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        let mut v = self.heap.into_vec();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(score: f32, segment: u32, row: u32) -> Candidate {
        Candidate {
            score,
            segment_ord: segment,
            row,
        }
    }

    #[test]
    fn keeps_best_k_with_position_tiebreak() {
        let mut t = TopK::new(3);
        for (i, s) in [0.5, 0.9, 0.5, 0.1, 0.9, 0.5].iter().enumerate() {
            t.push(c(*s, 0, i as u32));
        }
        let got: Vec<(f32, u32)> = t.into_sorted().iter().map(|c| (c.score, c.row)).collect();
        assert_eq!(got, vec![(0.9, 1), (0.9, 4), (0.5, 0)]);
    }

    #[test]
    fn merge_equals_single_pass() {
        let scores: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32).collect();
        let mut all = TopK::new(7);
        let (mut a, mut b) = (TopK::new(7), TopK::new(7));
        for (i, s) in scores.iter().enumerate() {
            all.push(c(*s, 0, i as u32));
            if i % 2 == 0 {
                a.push(c(*s, 0, i as u32))
            } else {
                b.push(c(*s, 0, i as u32))
            }
        }
        a.merge(b);
        assert_eq!(a.into_sorted(), all.into_sorted());
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(c(1.0, 0, 0));
        assert!(t.into_sorted().is_empty());
    }
}
