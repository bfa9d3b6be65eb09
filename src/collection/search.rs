//! Searching a collection: [`Collection::search`] runs a request through `crate::search` and
//! resolves the candidates' ids.

use crate::error::Result;
use crate::search::topk::TopK;
use crate::search::{Hit, SearchRequest};

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

    /// The hits of a selection, ranked as trec_eval ranks: score descending, equal scores by
    /// document id descending (so ties, at the cut-off too, do not depend on storage layout).
    fn hits(&self, top: TopK, k: usize) -> Result<Vec<Hit>> {
        let mut hits = top
            .into_candidates()
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
