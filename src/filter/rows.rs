//! A set of rows of one segment as a bitmap (bit `r % 64` of word `r / 64` is row `r`).

/// A set of rows of a segment of `rows` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    words: Vec<u64>,
    rows: u32,
}

impl RowSet {
    /// No rows.
    pub fn empty(rows: u32) -> Self {
        RowSet {
            words: vec![0; (rows as usize).div_ceil(64)],
            rows,
        }
    }

    /// Every row.
    pub fn full(rows: u32) -> Self {
        let mut s = RowSet {
            words: vec![u64::MAX; (rows as usize).div_ceil(64)],
            rows,
        };
        s.clear_tail();
        s
    }

    fn clear_tail(&mut self) {
        if !self.rows.is_multiple_of(64) {
            if let Some(w) = self.words.last_mut() {
                *w &= (1u64 << (self.rows % 64)) - 1;
            }
        }
    }

    /// Rows of the segment.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Adds `row` (`row < rows`).
    #[inline]
    pub fn insert(&mut self, row: u32) {
        self.words[row as usize / 64] |= 1 << (row % 64);
    }

    /// Whether `row` is in the set.
    #[inline]
    pub fn contains(&self, row: u32) -> bool {
        row < self.rows && self.words[row as usize / 64] >> (row % 64) & 1 == 1
    }

    /// Number of rows in the set.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Keeps the rows also in `other`.
    pub fn intersect(&mut self, other: &RowSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a &= b);
    }

    /// Adds the rows of `other`.
    pub fn union(&mut self, other: &RowSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a |= b);
    }

    /// The complement within the segment's rows.
    pub fn complement(&mut self) {
        self.words.iter_mut().for_each(|w| *w = !*w);
        self.clear_tail();
    }

    /// The rows, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }

    /// Consumes the set into its words.
    pub fn into_words(self) -> Vec<u64> {
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_stay_within_the_rows() {
        for rows in [0u32, 1, 63, 64, 65, 130] {
            let mut a = RowSet::empty(rows);
            (0..rows).step_by(3).for_each(|r| a.insert(r));
            let mut b = a.clone();
            b.complement();
            assert_eq!(a.count() + b.count(), rows as u64);
            assert!(b.iter().all(|r| r < rows && r % 3 != 0));
            let mut u = a.clone();
            u.union(&b);
            assert_eq!(u, RowSet::full(rows));
            a.intersect(&b);
            assert_eq!(a.count(), 0);
            assert_eq!(RowSet::full(rows).iter().count(), rows as usize);
        }
    }
}
