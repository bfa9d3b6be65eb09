//! Merging the results of databases that each hold a disjoint shard of one corpus.

use std::collections::HashMap;

use super::Hit;
use crate::error::{Error, Result};

/// Merges per-shard results (`per_shard[s][q]` is shard `s`'s hit list for query `q`) into the
/// best `k` hits per query, equal to what one database holding every shard returns (equal scores
/// rank by document id, [`super::rank_order`], in each shard and here). `names` label the
/// shards in errors; a document id returned by two shards means they overlap and is an error.
///
/// Hits keep the [`Hit::address`] of their own shard's snapshot.
pub fn merge_shard_hits(
    per_shard: Vec<Vec<Vec<Hit>>>,
    k: usize,
    names: &[impl AsRef<str>],
) -> Result<Vec<Vec<Hit>>> {
    let mut shards = per_shard.into_iter();
    let Some(mut merged) = shards.next() else {
        return Ok(Vec::new());
    };
    let mut origin: Vec<HashMap<String, usize>> = merged
        .iter()
        .map(|hits| hits.iter().map(|h| (h.id.clone(), 0)).collect())
        .collect();
    for (s, results) in shards.enumerate() {
        if results.len() != merged.len() {
            return Err(Error::MismatchedShards(format!(
                "shard {} answered {} queries, the first shard {}",
                names[s + 1].as_ref(),
                results.len(),
                merged.len()
            )));
        }
        for (q, hits) in results.into_iter().enumerate() {
            for h in hits {
                if let Some(other) = origin[q].insert(h.id.clone(), s + 1) {
                    return Err(Error::MismatchedShards(format!(
                        "document {:?} is in both {} and {}: the shards overlap",
                        h.id,
                        names[other].as_ref(),
                        names[s + 1].as_ref()
                    )));
                }
                merged[q].push(h);
            }
        }
    }
    for hits in &mut merged {
        hits.sort_by(super::rank_order);
        hits.truncate(k);
    }
    Ok(merged)
}
