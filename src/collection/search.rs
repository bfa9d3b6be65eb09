//! Searching a collection: [`Collection::search`] runs a request through `crate::search` and
//! resolves the candidates' ids.

use crate::error::Result;
use crate::linalg::similarity::prefetch_line;
use crate::search::topk::{Candidate, TopK};
use crate::search::{Hit, Rerank, SearchRequest};

use super::{Collection, DocAddress};

impl Collection {
    /// Runs an exact search. Returns one list of up to `k` hits per query, best first.
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// # let mut w = db.writer().unwrap();
    /// # w.create_collection("c", Schema::new().with_field(FieldSpec::multi("tok", 2, DType::F16, Metric::Ip))).unwrap();
    /// # w.add("c", Document::new("x").with_multi("tok", vec![1.0, 0.0, 0.0, 1.0])).unwrap();
    /// # w.add("c", Document::new("y").with_multi("tok", vec![1.0, 0.0])).unwrap();
    /// # w.commit().unwrap();
    /// let snap = db.snapshot().unwrap();
    /// let q = [1.0, 0.0, 0.0, 1.0]; // two query tokens
    /// let hits = snap.collection("c").unwrap().search(&SearchRequest::multi("tok", &q, 2)).unwrap();
    /// assert_eq!((hits[0][0].id.as_str(), hits[0][0].score), ("x", 2.0));
    /// ```
    pub fn search(&self, req: &SearchRequest<'_>) -> Result<Vec<Vec<Hit>>> {
        crate::search::execute(self, req)?
            .into_iter()
            .map(|t| self.hits(t, req.k))
            .collect()
    }

    /// Runs a request holding one query and returns its hits, best first.
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// # let mut w = db.writer().unwrap();
    /// # w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:ip").unwrap())).unwrap();
    /// # w.add("c", Document::new("a").with_dense("e", vec![1.0, 0.0])).unwrap();
    /// # w.commit().unwrap();
    /// let snap = db.snapshot().unwrap();
    /// let request = SearchRequest::dense("e", &[1.0, 0.0], 10).with_ef(32);
    /// let hits = snap.collection("c").unwrap().search_one(&request).unwrap();
    /// assert_eq!(hits[0].id, "a");
    /// ```
    pub fn search_one(&self, req: &SearchRequest<'_>) -> Result<Vec<Hit>> {
        let mut all = self.search(req)?;
        if all.len() != 1 {
            return Err(crate::Error::InvalidQuery(format!(
                "search_one takes one query; the request holds {}",
                all.len()
            )));
        }
        Ok(all.pop().expect("one list"))
    }

    /// Two-stage search in one request: `first` retrieves `first.k` candidates per query (its
    /// depth: dense exact or HNSW, multi-vector exact or PLAID, with its filter), then `second`
    /// re-scores only those with another field and another query per query, keeping the best
    /// `second.k` ([`Collection::rerank`]).
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// # let mut w = db.writer().unwrap();
    /// # let schema = Schema::new()
    /// #     .with_field(FieldSpec::parse("entity:dense:2:f32:ip").unwrap())
    /// #     .with_field(FieldSpec::parse("summary:dense:2:f32:ip").unwrap());
    /// # w.create_collection("c", schema).unwrap();
    /// # for (id, e, s) in [("a", [1.0, 0.0], [0.0, 1.0]), ("b", [0.9, 0.1], [1.0, 0.0]), ("c", [0.0, 1.0], [1.0, 0.0])] {
    /// #     w.add("c", Document::new(id).with_dense("entity", e.to_vec()).with_dense("summary", s.to_vec())).unwrap();
    /// # }
    /// # w.commit().unwrap();
    /// let snap = db.snapshot().unwrap();
    /// let c = snap.collection("c").unwrap();
    /// // Two candidates by the entity field, re-ranked by the summary field.
    /// let first = SearchRequest::dense("entity", &[1.0, 0.0], 2);
    /// let second = Rerank::dense("summary", &[1.0, 0.0], 2);
    /// let hits = c.search_two_stage(&first, &second).unwrap();
    /// assert_eq!(hits[0].iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn search_two_stage(
        &self,
        first: &SearchRequest<'_>,
        second: &Rerank<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let stage1 = self.search(first)?;
        self.rerank(second, &crate::search::candidates(&stage1))
    }

    /// Stage 2 on its own: re-scores `candidates[i]` (`(document id, first-stage score)`, for
    /// example read back from a run file saved after stage 1) with query `i` of `second`, and
    /// returns the best `second.k` per query, ranked by score then document id (descending).
    /// Candidates this collection does not hold alive (deleted since, or in another shard) or
    /// that do not match `second.filter` are skipped; a document listed twice for one query is an
    /// [`crate::Error::InvalidQuery`]. Dense fields score exactly as exact search does; multi-vector
    /// fields by exact MaxSim.
    pub fn rerank(
        &self,
        second: &Rerank<'_>,
        candidates: &[Vec<(&str, f32)>],
    ) -> Result<Vec<Vec<Hit>>> {
        crate::search::rerank::rerank(self, second, candidates)
    }

    /// The hits of a selection, ranked as trec_eval ranks: score descending, equal scores by
    /// document id descending (so ties, at the cut-off too, do not depend on storage layout).
    fn hits(&self, top: TopK, k: usize) -> Result<Vec<Hit>> {
        let candidates = top.into_candidates();
        // Each id is two dependent cache misses (offsets, then bytes): ask for every
        // candidate's offsets, then for every id's bytes, before reading any (overlapped
        // misses; the ids took 5.8 % of an HNSW search at ef 12 when read one by one).
        let slots = self.slots();
        let segment = |c: &Candidate| slots.get(c.segment_ord as usize).map(|s| &s.segment);
        for c in &candidates {
            if let Some(s) = segment(c) {
                prefetch_ends(s.doc_id_offset_bytes(c.row));
            }
        }
        for c in &candidates {
            if let Some(Ok(bytes)) = segment(c).map(|s| s.doc_id_bytes(c.row)) {
                prefetch_ends(bytes);
            }
        }
        let mut hits = candidates
            .into_iter()
            .map(|c| {
                let address = DocAddress {
                    segment_ord: c.segment_ord,
                    row: c.row,
                };
                Ok(Hit {
                    id: self.doc(address)?.id()?.to_string(),
                    score: c.score,
                    address,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        hits.sort_by(crate::search::rank_order);
        hits.truncate(k);
        Ok(hits)
    }
}

/// Prefetches the cache lines of the first and the last byte of a short span (an id, an offset
/// pair): one line, or the two it straddles.
fn prefetch_ends(bytes: &[u8]) {
    if let (Some(first), Some(last)) = (bytes.first(), bytes.last()) {
        prefetch_line(first);
        prefetch_line(last);
    }
}
