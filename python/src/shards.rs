//! `_vellum.NativeShardSet`: several databases holding disjoint shards of one collection,
//! searched in this process as one (`vellum::ShardSet`, the CLI's `--db A --db B`).

use std::path::PathBuf;

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use vellum::encode::{Encoder, EncoderOptions, Role};
use vellum::{Collection, SearchRequest, ShardSet};

use crate::database::{check_k, parse_filter, with_options, NativeDatabase};
use crate::errors::IntoPy;

/// A shard set (wrapped by `vellum.ShardSet`).
#[pyclass(module = "vellum._vellum", frozen)]
pub struct NativeShardSet {
    shards: ShardSet,
    /// The last query encoder loaded, by (collection, field): loaded from the first shard.
    query_encoder: Mutex<Option<CachedEncoder>>,
}

/// A loaded query encoder and the (collection, field) it belongs to.
type CachedEncoder = ((String, String), Arc<dyn Encoder>);

impl NativeShardSet {
    /// The query encoder of `field` in `first` (the first shard's collection), kept for the next
    /// call on the same field. Call it with the GIL released.
    fn query_encoder(&self, first: &Collection, field: &str) -> vellum::Result<Arc<dyn Encoder>> {
        let key = (first.name().to_string(), field.to_string());
        let mut cached = self.query_encoder.lock();
        if let Some((k, e)) = &*cached {
            if *k == key {
                return Ok(e.clone());
            }
        }
        let e: Arc<dyn Encoder> = first
            .load_encoder(field, Role::Query, &EncoderOptions::default())?
            .into();
        *cached = Some((key, e.clone()));
        Ok(e)
    }
}

#[pymethods]
impl NativeShardSet {
    /// Opens the databases (read-only snapshots of their last commits).
    #[new]
    fn new(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Self> {
        let shards = py.detach(|| ShardSet::open(&paths)).py()?;
        Ok(NativeShardSet {
            shards,
            query_encoder: Mutex::new(None),
        })
    }

    /// Searches every shard with vectors and merges: `(ids, scores [n, k], None)`.
    #[pyo3(signature = (collection, field, queries, k, ef, exact, filter=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        field: &str,
        queries: &Bound<'py, PyAny>,
        k: usize,
        ef: Option<usize>,
        exact: bool,
        filter: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let filter = parse_filter(filter.as_deref())?;
        let spec_of = self.shards.collections(collection).py()?;
        let input = NativeDatabase::read_queries(spec_of[0], field, queries)?;
        check_k(k, input.len())?;
        let first = spec_of[0].clone();
        let hits = if input.len() == 0 {
            Vec::new()
        } else {
            let mut req = input.request(field, k, ef, exact);
            req.filter = filter.as_ref();
            py.detach(|| self.shards.search(collection, &req)).py()?
        };
        NativeDatabase::hits_to_py(py, &first, hits, k, false)
    }

    /// Searches every shard with texts, encoded once by the field's query encoder (checked
    /// against every shard).
    #[pyo3(signature = (collection, field, texts, k, ef, exact, filter=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_text<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        field: &str,
        texts: Vec<String>,
        k: usize,
        ef: Option<usize>,
        exact: bool,
        filter: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        check_k(k, texts.len())?;
        let filter = parse_filter(filter.as_deref())?;
        let first = self.shards.collections(collection).py()?[0].clone();
        let mut req = with_options(SearchRequest::text(field, k), ef, exact);
        req.filter = filter.as_ref();
        let hits = py
            .detach(|| -> vellum::Result<_> {
                let e = self.query_encoder(&first, field)?;
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.shards.search_text(collection, &*e, &refs, req)
            })
            .py()?;
        NativeDatabase::hits_to_py(py, &first, hits, k, false)
    }

    /// The databases, in the order given.
    fn paths(&self) -> Vec<PathBuf> {
        self.shards.paths().to_vec()
    }
}
