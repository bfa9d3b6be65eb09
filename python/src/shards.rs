//! `_vellum.NativeShardSet`: several databases holding disjoint shards of one collection,
//! searched in this process as one (`vellum::ShardSet`, the CLI's `--db A --db B`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use vellum::encode::{EncoderOptions, Role};
use vellum::{SearchRequest, ShardSet};

use crate::database::{check_k, NativeDatabase};
use crate::errors::IntoPy;

/// A shard set (wrapped by `vellum.ShardSet`).
#[pyclass(module = "vellum._vellum", frozen)]
pub struct NativeShardSet {
    shards: ShardSet,
}

#[pymethods]
impl NativeShardSet {
    /// Opens the databases (read-only snapshots of their last commits).
    #[new]
    fn new(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Self> {
        let shards = py.detach(|| ShardSet::open(&paths)).py()?;
        Ok(NativeShardSet { shards })
    }

    /// Searches every shard with vectors and merges: `(ids, scores [n, k], None)`.
    #[pyo3(signature = (collection, field, queries, k, ef, exact))]
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
    ) -> PyResult<Bound<'py, PyTuple>> {
        let spec_of = self.shards.collections(collection).py()?;
        let input = NativeDatabase::read_queries(spec_of[0], field, queries)?;
        check_k(k, input.len())?;
        let first = spec_of[0].clone();
        let hits = if input.len() == 0 {
            Vec::new()
        } else {
            let req = input.request(field, k, ef, exact);
            py.detach(|| self.shards.search(collection, &req)).py()?
        };
        NativeDatabase::hits_to_py(py, &first, hits, k, false)
    }

    /// Searches every shard with texts, encoded once by the field's query encoder (checked
    /// against every shard).
    #[pyo3(signature = (collection, field, texts, k, ef, exact))]
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
    ) -> PyResult<Bound<'py, PyTuple>> {
        check_k(k, texts.len())?;
        let first = self.shards.collections(collection).py()?[0].clone();
        let hits = py
            .detach(|| -> vellum::Result<_> {
                let e = first.load_encoder(field, Role::Query, &EncoderOptions::default())?;
                self.shards.check_query_encoder(collection, field, &*e)?;
                if texts.is_empty() {
                    return Ok(Vec::new());
                }
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let encoded = e.encode_texts(&refs)?;
                let queries = match e.output() {
                    vellum::encode::OutputKind::Dense => vellum::Queries::Dense(&encoded.values),
                    _ => vellum::Queries::Multi(encoded.per_input().collect()),
                };
                let mut req = SearchRequest::text(field, k);
                req.queries = queries;
                if let Some(ef) = ef {
                    req = req.with_ef(ef);
                }
                if exact {
                    req = req.exact();
                }
                self.shards.search(collection, &req)
            })
            .py()?;
        NativeDatabase::hits_to_py(py, &first, hits, k, false)
    }

    /// The databases, in the order given.
    fn paths(&self) -> Vec<PathBuf> {
        self.shards.paths().to_vec()
    }
}
