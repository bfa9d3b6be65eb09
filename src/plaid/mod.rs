//! PLAID: late-interaction search over a multi-vector field through ColBERTv2's residual
//! compression (Santhanam et al., *ColBERTv2*, NAACL 2022, §3; *PLAID*, CIKM 2022, §4; reference
//! implementation `stanford-futuredata/ColBERT`: `indexing/collection_indexer.py`,
//! `indexing/codecs/residual.py`, `search/index_storage.py`).
//!
//! * [`kmeans`] — spherical k-means for the centroids.
//! * [`codec`] — training a codec (centroids + quantile buckets of the residuals), compressing
//!   tokens to a centroid and packed residual buckets, decompressing by byte lookup.
//! * [`build`] — the PLAID section a new segment gets (codes, residuals, inverted lists
//!   centroid → rows), reusing the collection's codec or training one.
//! * [`search`] — the four stages: candidate generation from the query tokens' nearest cells,
//!   pruned and full centroid interaction, exact MaxSim of the survivors.
//!
//! The bytes are `crate::format::plaid`'s; the parameters `crate::meta::PlaidParams`.

pub mod build;
pub mod codec;
pub mod kmeans;
pub mod search;

pub use crate::format::plaid::{PlaidCodec, PlaidView};
pub use crate::meta::plaid::PlaidParams;
pub use search::PlaidSearch;

/// SplitMix64 (Steele et al., 2014): the seeded generator of the k-means sample and
/// initialisation. Written here (eight lines) rather than taken from `rand` so that an index
/// built from the same rows and seed is the same in every vellum version.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}
