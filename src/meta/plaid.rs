//! PLAID index parameters (a multi-vector field's late-interaction index), recorded in the
//! manifest. The algorithm is in `crate::plaid`; the section layout in `format-spec/plaid.md`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Parameters of a multi-vector field's PLAID index (Santhanam et al., *PLAID: An Efficient
/// Engine for Late Interaction Retrieval*, CIKM 2022; ColBERTv2's residual compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaidParams {
    /// Bits per dimension of the residual codes: 1, 2 or 4.
    pub nbits: u32,
    /// Number of centroids; `None`: `2^⌊log2(16·√tokens)⌋` of the tokens the codec is trained
    /// on (ColBERT's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centroids: Option<u32>,
    /// k-means iterations (default 4, as ColBERT through FAISS).
    pub kmeans_iters: u32,
    /// Segments with fewer documents are searched exactly (no PLAID section).
    pub min_rows: u64,
    /// Compaction trains a new codec when the collection has grown by more than this percentage
    /// of the documents the current codec was trained on (ColBERT's guidance: 5 %).
    pub recluster_percent: u32,
    /// Seed of the k-means sample and initialisation.
    pub seed: u64,
    /// Keep only the compressed tokens (`store=codes`): segments written with a codec omit the
    /// field's full-precision token section, and reads decompress the codes (PLAID's size: about
    /// 40 bytes per token at 2 bits, 128-d, all-in). Default: keep the stored tokens too (`store=tokens`),
    /// which PLAID's last stage and exact search read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub codes_only: bool,
}

impl Default for PlaidParams {
    fn default() -> Self {
        PlaidParams {
            nbits: 2,
            centroids: None,
            kmeans_iters: 4,
            min_rows: 256,
            recluster_percent: 5,
            seed: 0x5eed,
            codes_only: false,
        }
    }
}

impl PlaidParams {
    /// Parses `key=value` pairs separated by commas (`nbits=2,centroids=4096,min_rows=256,
    /// kmeans_iters=8,recluster_percent=5,seed=1,store=codes`; `k` is a synonym of `centroids`;
    /// `store` is `tokens` or `codes`); keys left out keep their defaults.
    ///
    /// ```
    /// let p = vellum::meta::PlaidParams::parse("nbits=4,k=1024").unwrap();
    /// assert_eq!((p.nbits, p.centroids), (4, Some(1024)));
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let mut p = PlaidParams::default();
        for pair in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                Error::parameter("plaid", format!("{pair:?}: expected KEY=VALUE"))
            })?;
            if key.trim() == "store" {
                p.codes_only = match value.trim() {
                    "codes" => true,
                    "tokens" => false,
                    other => {
                        return Err(Error::parameter(
                            "plaid store",
                            format!("{other:?}: expected tokens (keep the full-precision tokens too) or codes (only the compressed codes)"),
                        ))
                    }
                };
                continue;
            }
            let v: u64 = value.trim().parse().map_err(|_| {
                Error::parameter(
                    format!("plaid {}", key.trim()),
                    format!("{value:?} is not a non-negative integer"),
                )
            })?;
            let small = |v: u64| {
                u32::try_from(v).map_err(|_| {
                    Error::parameter(format!("plaid {}", key.trim()), format!("{v} is too large"))
                })
            };
            match key.trim() {
                "nbits" | "bits" => p.nbits = small(v)?,
                "centroids" | "k" => p.centroids = Some(small(v)?),
                "kmeans_iters" | "iters" => p.kmeans_iters = small(v)?,
                "min_rows" => p.min_rows = v,
                "recluster_percent" | "recluster" => p.recluster_percent = small(v)?,
                "seed" => p.seed = v,
                other => {
                    return Err(Error::parameter(
                        "plaid",
                        format!("unknown key {other:?}; known: nbits, centroids (k), kmeans_iters, min_rows, recluster_percent, seed, store"),
                    ))
                }
            }
        }
        p.validate()?;
        Ok(p)
    }

    /// Checks ranges: `nbits` ∈ {1, 2, 4}; `2 ≤ centroids ≤ 2^20`; `1 ≤ kmeans_iters ≤ 100`.
    pub fn validate(&self) -> Result<()> {
        if ![1, 2, 4].contains(&self.nbits) {
            return Err(Error::parameter(
                "plaid nbits",
                format!(
                    "{}: residuals take 1, 2 or 4 bits per dimension",
                    self.nbits
                ),
            ));
        }
        if let Some(k) = self.centroids {
            if !(2..=1 << 20).contains(&k) {
                return Err(Error::parameter(
                    "plaid centroids",
                    format!("{k} is out of range 2..=1048576"),
                ));
            }
        }
        if !(1..=100).contains(&self.kmeans_iters) {
            return Err(Error::parameter(
                "plaid kmeans_iters",
                format!("{} is out of range 1..=100", self.kmeans_iters),
            ));
        }
        Ok(())
    }

    /// Whether a codec trained under `self` is the one `other` would train: the parameters that
    /// shape it (`nbits`, `centroids`, `kmeans_iters`, `seed`) are equal. The others (`min_rows`,
    /// `recluster_percent`, `codes_only`) change which segments get a section or when compaction
    /// re-clusters, not the codec, so a declaration changing only those keeps it.
    pub fn same_codec(&self, other: &PlaidParams) -> bool {
        (self.nbits, self.centroids, self.kmeans_iters, self.seed)
            == (other.nbits, other.centroids, other.kmeans_iters, other.seed)
    }

    /// The number of centroids for a codec trained on `tokens` token vectors: the parameter, or
    /// `2^⌊log2(16·√tokens)⌋` (ColBERT `collection_indexer.py`), at most `tokens` and at least 2.
    pub fn centroids_for(&self, tokens: usize) -> usize {
        let k = match self.centroids {
            Some(k) => k as usize,
            None => {
                let x = 16.0 * (tokens as f64).sqrt();
                1usize << (x.log2().floor().max(1.0) as u32)
            }
        };
        k.min(tokens.max(2)).max(2)
    }
}

impl std::fmt::Display for PlaidParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plaid nbits={}", self.nbits)?;
        if let Some(k) = self.centroids {
            write!(f, ",centroids={k}")?;
        }
        write!(
            f,
            ",kmeans_iters={},min_rows={},recluster_percent={},seed={}",
            self.kmeans_iters, self.min_rows, self.recluster_percent, self.seed
        )?;
        if self.codes_only {
            write!(f, ",store=codes")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_defaults_rule_and_errors() {
        assert_eq!(PlaidParams::parse("").unwrap(), PlaidParams::default());
        let p = PlaidParams::parse("nbits=1, k=64, min_rows=10").unwrap();
        assert_eq!((p.nbits, p.centroids, p.min_rows), (1, Some(64), 10));
        assert!(!p.codes_only);
        let p = PlaidParams::parse("store=codes").unwrap();
        assert!(p.codes_only);
        assert_eq!(PlaidParams::parse(&p.to_string()[6..]).unwrap(), p);
        // ColBERT's rule: 2^floor(log2(16·√tokens)).
        let d = PlaidParams::default();
        assert_eq!(d.centroids_for(10_000), 1024); // 16·100 = 1600 → 1024
        assert_eq!(d.centroids_for(1_000_000), 8192); // 16,000 → 8192
        assert_eq!(d.centroids_for(3), 3);
        for (spec, msg) in [
            ("nbits=3", "1, 2 or 4"),
            ("k=1", "out of range"),
            ("iters=0", "out of range"),
            ("x=1", "unknown key"),
            ("nbits", "expected KEY=VALUE"),
            ("store=bits", "expected tokens"),
        ] {
            let e = PlaidParams::parse(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }
}
