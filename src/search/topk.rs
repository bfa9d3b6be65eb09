//! Bounded top-k selection. Equal scores at the cut-off are not decided by storage position: every
//! candidate that ties with the k-th score is kept aside ([`TopK::into_candidates`]) so that the
//! caller can break the tie by document id, as trec_eval ranks (score descending, then document id
//! descending), whatever the segment layout, shard order or upsert history.

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

/// Most candidates kept aside for a tie with the k-th score. Beyond it (thousands of rows with
/// exactly the k-th score: degenerate data) further ties are decided by storage position.
pub const MAX_TIES: usize = 4096;

/// Keeps the best `k` candidates seen, and the candidates that tie with the k-th (at most
/// [`MAX_TIES`] of them).
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
    /// Candidates outside the heap whose score equals the heap's worst (the threshold).
    ties: Vec<Candidate>,
}

impl TopK {
    /// An empty selection of capacity `k`.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            // Grows past this as needed: a huge `k` over few rows must not reserve `k` slots.
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
            ties: Vec::new(),
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
        // A zero score is +0: −0 (a sum of products that round to −0) equals it, and equal
        // scores rank by id, which `total_cmp` (−0 < +0) would not do.
        let c = Candidate {
            score: c.score + 0.0,
            ..c
        };
        if self.heap.len() < self.k {
            self.heap.push(c);
            return;
        }
        let Some(mut worst) = self.heap.peek_mut() else {
            return;
        };
        match c.score.total_cmp(&worst.score) {
            Ordering::Less => {}
            Ordering::Equal => {
                if self.ties.len() < MAX_TIES {
                    self.ties.push(c);
                }
            }
            Ordering::Greater => {
                let out = std::mem::replace(&mut *worst, c);
                drop(worst);
                let threshold = self.heap.peek().map_or(f32::INFINITY, |w| w.score);
                if out.score.total_cmp(&threshold) == Ordering::Equal {
                    if self.ties.len() < MAX_TIES {
                        self.ties.push(out);
                    }
                } else {
                    // The threshold rose: nothing kept aside ties with it any more.
                    self.ties.clear();
                }
            }
        }
    }

    /// Merges another selection into this one.
    pub fn merge(&mut self, other: TopK) {
        for c in other.heap.into_iter().chain(other.ties) {
            self.push(c);
        }
    }

    /// Every kept candidate, unordered: the best `k` by score and position, plus the candidates
    /// that tie with the k-th score. Rank them by score, then by document id, and keep `k`.
    pub fn into_candidates(self) -> Vec<Candidate> {
        let mut v = self.heap.into_vec();
        v.extend(self.ties);
        v
    }

    /// The best `k` candidates, best first, equal scores by storage position (ties at the cut-off
    /// decided by position too; [`TopK::into_candidates`] keeps them for a decision by id).
    pub fn into_sorted(self) -> Vec<Candidate> {
        let mut v = self.heap.into_vec();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_tied_with_the_kth_is_kept() {
        let mut t = TopK::new(2);
        for (i, s) in [1.0, 5.0, 3.0, 3.0, 3.0, 0.5].iter().enumerate() {
            t.push(c(*s, 0, i as u32));
        }
        let mut all: Vec<u32> = t.clone().into_candidates().iter().map(|c| c.row).collect();
        all.sort();
        assert_eq!(all, [1, 2, 3, 4], "5.0 and the three 3.0s");
        // A better candidate raises the threshold and drops the old ties.
        t.push(c(4.0, 1, 0));
        let mut all: Vec<(u32, u32)> = t
            .into_candidates()
            .iter()
            .map(|c| (c.segment_ord, c.row))
            .collect();
        all.sort();
        assert_eq!(all, [(0, 1), (1, 0)]);
        // Merging keeps the other side's ties.
        let mut a = TopK::new(1);
        a.push(c(2.0, 0, 0));
        let mut b = TopK::new(1);
        b.push(c(2.0, 1, 0));
        b.push(c(2.0, 1, 1));
        a.merge(b);
        assert_eq!(a.into_candidates().len(), 3);
    }

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
        // The kept set (the best k and everything tied with the k-th) does not depend on the
        // order in which candidates arrive.
        let set = |t: TopK| {
            let mut v: Vec<(u32, u32)> = t
                .into_candidates()
                .iter()
                .map(|c| (c.segment_ord, c.row))
                .collect();
            v.sort();
            v
        };
        assert_eq!(set(a), set(all));
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(c(1.0, 0, 0));
        assert!(t.into_sorted().is_empty());
    }
}
