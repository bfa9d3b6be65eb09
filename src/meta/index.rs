//! HNSW index parameters.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Parameters of a field's HNSW index, recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    /// Neighbours per node on layers ≥ 1 (layer 0 keeps up to `2·m`).
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Segments with fewer rows are searched exactly instead of getting a graph.
    pub min_rows: u64,
    /// Default candidate list size while searching (a request may override it).
    pub ef: u32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            min_rows: 4096,
            ef: 64,
        }
    }
}

impl HnswParams {
    /// Parses `key=value` pairs separated by commas (`m=16,ef_construction=200,min_rows=4096,ef=64`);
    /// keys left out keep their defaults.
    ///
    /// ```
    /// let p = vellum::hnsw::HnswParams::parse("m=32,ef_construction=100").unwrap();
    /// assert_eq!((p.m, p.ef_construction, p.ef), (32, 100, 64));
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let mut p = HnswParams::default();
        for pair in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Error::parameter("hnsw", format!("{pair:?}: expected KEY=VALUE")))?;
            let bad = || {
                Error::parameter(
                    format!("hnsw {key}"),
                    format!("{value:?} is not a positive integer"),
                )
            };
            let v: u64 = value.trim().parse().map_err(|_| bad())?;
            if v == 0 {
                return Err(bad());
            }
            let small = |v: u64| u32::try_from(v).map_err(|_| bad());
            match key.trim() {
                "m" => p.m = small(v)?,
                "ef_construction" | "efc" => p.ef_construction = small(v)?,
                "min_rows" => p.min_rows = v,
                "ef" | "ef_search" => p.ef = small(v)?,
                other => {
                    return Err(Error::parameter(
                        "hnsw",
                        format!("unknown key {other:?}; known: m, ef_construction, min_rows, ef"),
                    ))
                }
            }
        }
        p.validate()?;
        Ok(p)
    }

    /// Checks ranges: `2 ≤ m ≤ 128` (layer 0 keeps `2·m` neighbours; the format allows up to 512),
    /// `ef_construction ≥ m`.
    pub fn validate(&self) -> Result<()> {
        if !(2..=128).contains(&self.m) {
            return Err(Error::parameter(
                "hnsw",
                format!("m = {} is out of range 2..=128", self.m),
            ));
        }
        if self.ef_construction < self.m {
            return Err(Error::parameter(
                "hnsw",
                format!(
                    "ef_construction = {} must be at least m = {}",
                    self.ef_construction, self.m
                ),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for HnswParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hnsw m={},ef_construction={},min_rows={},ef={}",
            self.m, self.ef_construction, self.min_rows, self.ef
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_errors() {
        assert_eq!(HnswParams::parse("").unwrap(), HnswParams::default());
        let p = HnswParams::parse("m=8, min_rows=10, ef=32").unwrap();
        assert_eq!((p.m, p.min_rows, p.ef), (8, 10, 32));
        for (spec, msg) in [
            ("m=1", "out of range"),
            ("m=16,ef_construction=8", "at least m"),
            ("m=x", "not a positive integer"),
            ("mm=3", "hnsw: unknown key \"mm\""),
            ("m", "expected KEY=VALUE"),
        ] {
            let e = HnswParams::parse(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }
}
