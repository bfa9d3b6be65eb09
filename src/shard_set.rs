//! Shard sets: several databases that each hold a disjoint shard of one corpus, searched as one.
//!
//! [`ShardSet::open`] opens a snapshot of each; [`ShardSet::field`] checks that a collection's
//! field has the same specification (and, for encoded fields, the same passage encoder) in every
//! shard; [`ShardSet::search`] runs a request on every shard and merges the per-shard top-k
//! ([`crate::search::merge_shard_hits`]), so that the result equals what one database holding every
//! shard returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::collection::Collection;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::schema::FieldSpec;
use crate::search::{merge_shard_hits, Hit, SearchRequest};
use crate::snapshot::Snapshot;

/// Snapshots of the databases of a sharded corpus.
///
/// ```
/// use vellum::{Database, Document, FieldSpec, Schema, SearchRequest, ShardSet};
/// let dir = tempfile::tempdir().unwrap();
/// for (shard, ids) in [("s0", ["a", "b"]), ("s1", ["c", "d"])] {
///     let db = Database::create(dir.path().join(shard)).unwrap();
///     let mut w = db.writer().unwrap();
///     w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:ip").unwrap())).unwrap();
///     for (i, id) in ids.iter().enumerate() {
///         w.add("c", Document::new(*id).with_dense("e", vec![i as f32, 1.0])).unwrap();
///     }
///     w.commit().unwrap();
/// }
/// let shards = ShardSet::open(&[dir.path().join("s0"), dir.path().join("s1")]).unwrap();
/// shards.field("c", "e").unwrap();
/// let hits = shards.search("c", &SearchRequest::dense("e", &[1.0, 0.0], 2)).unwrap();
/// let ids: Vec<&str> = hits[0].iter().map(|h| h.id.as_str()).collect();
/// assert_eq!(ids, ["d", "b"]); // equal scores: document id descending
/// ```
#[derive(Debug, Clone)]
pub struct ShardSet {
    paths: Vec<PathBuf>,
    names: Vec<String>,
    snapshots: Vec<Snapshot>,
}

impl ShardSet {
    /// Opens the last commit of each database (at least one).
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::parameter(
                "databases",
                "no database given: a shard set needs at least one",
            ));
        }
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let snapshots = paths
            .iter()
            .map(|p| Database::open(p)?.snapshot())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_snapshots(paths, snapshots))
    }

    /// A shard set of snapshots already taken; `paths` name them in messages.
    pub fn from_snapshots(paths: Vec<PathBuf>, snapshots: Vec<Snapshot>) -> Self {
        let names = paths.iter().map(|p| p.display().to_string()).collect();
        ShardSet {
            paths,
            names,
            snapshots,
        }
    }

    /// The databases, in the order given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The snapshots, in the order given.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// Collection `name` of every shard (an error names the database that lacks it).
    pub fn collections(&self, name: &str) -> Result<Vec<&Arc<Collection>>> {
        self.snapshots
            .iter()
            .zip(&self.paths)
            .map(|(s, p)| {
                s.collection(name).map_err(|e| Error::Shard {
                    database: p.clone(),
                    source: Box::new(e),
                })
            })
            .collect()
    }

    /// The specification of `field` of `collection`, after checking that every shard declares it
    /// identically and encodes it with the same passage encoder.
    pub fn field(&self, collection: &str, field: &str) -> Result<FieldSpec> {
        let colls = self.collections(collection)?;
        let first = colls[0];
        let spec = first.schema().fields[first.field_index(field)?].clone();
        for (c, p) in colls.iter().zip(&self.paths).skip(1) {
            let other = c
                .field_index(field)
                .map(|i| c.schema().fields[i].clone())
                .map_err(|e| Error::Shard {
                    database: p.clone(),
                    source: Box::new(e),
                })?;
            if other != spec {
                return Err(Error::MismatchedShards(format!(
                    "field {field:?} is {spec} in {} but {other} in {}",
                    self.names[0],
                    p.display()
                )));
            }
            if let (Some(e0), Some(e)) = (first.encoders(field), c.encoders(field)) {
                let diff = e0.passage.differences(&e.passage);
                if !diff.is_empty() {
                    return Err(Error::MismatchedShards(format!(
                        "field {field:?} was encoded differently in {} and {}: {}",
                        self.names[0],
                        p.display(),
                        diff.join("; ")
                    )));
                }
            }
        }
        Ok(spec)
    }

    /// Runs `request` on `collection` of every shard (after checking the field as
    /// [`ShardSet::field`] does) and merges the results: per query, the best `request.k` hits of
    /// all shards. Hits keep the address of their own shard's snapshot.
    pub fn search(&self, collection: &str, request: &SearchRequest<'_>) -> Result<Vec<Vec<Hit>>> {
        // Scores of fields with another metric or element type do not compare.
        self.field(collection, request.field)?;
        let per_shard = self
            .collections(collection)?
            .iter()
            .map(|c| c.search(request))
            .collect::<Result<Vec<_>>>()?;
        merge_shard_hits(per_shard, request.k, &self.names)
    }

    /// Two-stage search over every shard: stage 1 merged across shards (`first.k` candidates per
    /// query, the global depth), then [`ShardSet::rerank`].
    pub fn search_two_stage(
        &self,
        collection: &str,
        first: &SearchRequest<'_>,
        second: &crate::search::Rerank<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let stage1 = self.search(collection, first)?;
        self.rerank(collection, second, &crate::search::candidates(&stage1))
    }

    /// Re-ranks candidates ([`Collection::rerank`]) in every shard, each scoring the candidates it
    /// holds, and merges: per query, the best `second.k`.
    pub fn rerank(
        &self,
        collection: &str,
        second: &crate::search::Rerank<'_>,
        candidates: &[Vec<(&str, f32)>],
    ) -> Result<Vec<Vec<Hit>>> {
        self.field(collection, second.field)?;
        let per_shard = self
            .collections(collection)?
            .iter()
            .map(|c| c.rerank(second, candidates))
            .collect::<Result<Vec<_>>>()?;
        merge_shard_hits(per_shard, second.k, &self.names)
    }

    /// Text search over every shard: `texts` encoded once by `encoder` (which every shard's
    /// field must accept as its query encoder), then searched as [`ShardSet::search`] does.
    /// `request` gives the field, `k` and options (its queries are replaced).
    #[cfg(feature = "encoders")]
    pub fn search_text(
        &self,
        collection: &str,
        encoder: &dyn crate::encode::Encoder,
        texts: &[&str],
        request: SearchRequest<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        self.check_query_encoder(collection, request.field, encoder)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = encoder.encode_texts(texts)?;
        let queries = crate::search::Queries::from_encoded(&encoded, encoder.output());
        self.search(collection, &SearchRequest { queries, ..request })
    }

    /// Checks that every shard's `field` would accept `encoder` as its query encoder.
    #[cfg(feature = "encoders")]
    pub fn check_query_encoder(
        &self,
        collection: &str,
        field: &str,
        encoder: &dyn crate::encode::Encoder,
    ) -> Result<()> {
        for (c, p) in self.collections(collection)?.iter().zip(&self.paths) {
            c.check_encoder(field, crate::encode::Role::Query, encoder)
                .map_err(|e| Error::MismatchedShards(format!("database {}: {e}", p.display())))?;
        }
        Ok(())
    }
}
