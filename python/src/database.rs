//! `_vellum.NativeDatabase`: one database, its single writer (opened on the first write) and a
//! snapshot of the last commit for reads (retaken when the manifest changes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use vellum::encode::{Encoder, EncoderChoice, EncoderOptions, OutputKind, Role};
use vellum::{Collection, Database, Document, FieldKind, Hit, Schema, SearchRequest, Snapshot};

use crate::arrays::{f32_array, F32Input};
use crate::errors::{invalid, to_py, IntoPy};

/// Identity of the MANIFEST file: a commit replaces it by rename, so the inode changes.
type Stamp = (u64, i128, u64);

fn stamp(dir: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join(vellum::format::manifest::FILE_NAME)).ok()?;
    Some((
        m.ino(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.len(),
    ))
}

type EncoderKey = (String, String, String);

/// Wraps one document's row of a fixed-size field (dense or tensor) as its field value.
type MakeValue = fn(Vec<f32>) -> vellum::FieldValue;

/// The native database handle (wrapped by `vellum.Database`).
#[pyclass(module = "vellum._vellum", frozen)]
pub struct NativeDatabase {
    db: Database,
    read_only: bool,
    writer: Mutex<Option<vellum::Writer>>,
    snapshot: Mutex<Option<(Option<Stamp>, Snapshot)>>,
    /// Encoders by (collection, field/role, record), loaded on first use.
    encoders: Mutex<HashMap<EncoderKey, Arc<dyn Encoder>>>,
}

/// Queries read from Python for one field.
pub(crate) enum QueryInput<'py> {
    Dense(F32Input<'py>),
    /// The arrays read, and each query as (array, start, end) of its values.
    Multi(Vec<F32Input<'py>>, Vec<(usize, usize, usize)>),
}

impl<'py> QueryInput<'py> {
    /// Number of queries.
    pub(crate) fn len(&self) -> usize {
        match self {
            QueryInput::Dense(q) => match q.shape() {
                [_] => 1,
                s => s[0],
            },
            QueryInput::Multi(_, ranges) => ranges.len(),
        }
    }

    /// The search request over these queries (borrowing the arrays in place).
    pub(crate) fn request<'a>(
        &'a self,
        field: &'a str,
        k: usize,
        ef: Option<usize>,
        exact: bool,
    ) -> SearchRequest<'a> {
        let req = match self {
            QueryInput::Dense(q) => SearchRequest::dense_batch(field, q.values(), k),
            QueryInput::Multi(arrays, ranges) => SearchRequest::multi_batch(
                field,
                ranges
                    .iter()
                    .map(|&(i, s, e)| &arrays[i].values()[s..e])
                    .collect(),
                k,
            ),
        };
        with_options(req, ef, exact)
    }
}

/// PLAID stage parameters from a Python dict (`ncells`, `ndocs`, `full_scores`,
/// `centroid_threshold`, `decompress`), over the defaults for `k`.
pub(crate) fn plaid_search(
    options: Option<HashMap<String, f64>>,
    k: usize,
) -> vellum::Result<Option<vellum::plaid::PlaidSearch>> {
    let Some(options) = options else {
        return Ok(None);
    };
    let mut p = vellum::plaid::PlaidSearch::for_k(k);
    for (key, v) in options {
        let count = || -> vellum::Result<usize> {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(vellum::Error::parameter(
                    format!("plaid {key}"),
                    format!("{v}: expected a non-negative integer"),
                ))
            }
        };
        match key.as_str() {
            "ncells" => p.ncells = count()?,
            "ndocs" => p.ndocs = count()?,
            "full_scores" => p.full_scores = Some(count()?),
            "centroid_threshold" => p.centroid_threshold = v as f32,
            "decompress" => p.decompress = v != 0.0,
            other => {
                return Err(vellum::Error::parameter(
                    "plaid",
                    format!(
                    "unknown key {other:?}; known: ncells, ndocs, full_scores, centroid_threshold, decompress"
                ),
                ))
            }
        }
    }
    p.validate()?;
    Ok(Some(p))
}

/// A request with the Python call's `ef` and `exact` options.
/// `device=` and `gpu_precision=` of a search call.
pub(crate) fn on_device<'a>(
    req: SearchRequest<'a>,
    device: Option<&str>,
    precision: Option<&str>,
) -> PyResult<SearchRequest<'a>> {
    let device = match device {
        Some(d) => d.parse::<vellum::search::Device>().py()?,
        None => vellum::search::Device::Cpu,
    };
    let precision = match precision {
        Some(p) => p.parse::<vellum::search::GpuPrecision>().py()?,
        None => vellum::search::GpuPrecision::Stored,
    };
    Ok(req.on_device(device).with_gpu_precision(precision))
}

pub(crate) fn with_options(
    req: SearchRequest<'_>,
    ef: Option<usize>,
    exact: bool,
) -> SearchRequest<'_> {
    let req = match ef {
        Some(ef) => req.with_ef(ef),
        None => req,
    };
    if exact {
        req.exact()
    } else {
        req
    }
}

/// Version operations commit: refuse while the handle has uncommitted changes (they would be
/// committed with it).
fn no_pending(w: &vellum::Writer, what: &str) -> vellum::Result<()> {
    if w.has_changes() {
        return Err(vellum::Error::InvalidInput(format!(
            "{what} commits, and this database has uncommitted changes: commit or roll them back first"
        )));
    }
    Ok(())
}

/// Encoder options from Python's `{name: text}` mapping.
fn parse_encoder_options(m: &HashMap<String, String>) -> vellum::Result<EncoderOptions> {
    let mut o = EncoderOptions::default();
    for (k, v) in m {
        o.set(k, v)?;
    }
    Ok(o)
}

/// A finished re-encode: `(generation, from_version, to_version, documents encoded)`.
type Switched = (u64, u64, u64, u64);

impl NativeDatabase {
    fn new(db: Database, read_only: bool) -> Self {
        NativeDatabase {
            db,
            read_only,
            writer: Mutex::new(None),
            snapshot: Mutex::new(None),
            encoders: Mutex::new(HashMap::new()),
        }
    }

    /// Prepares `choice`'s encoders (when given) and runs a re-encode through the writer;
    /// returns `(generation, from_version, to_version, encoded)`.
    #[allow(clippy::too_many_arguments)]
    fn reencode_with(
        &self,
        py: Python<'_>,
        collection: &str,
        field: &str,
        choice: Option<EncoderChoice>,
        piece_rows: u64,
        keep_previous: bool,
        new_field: Option<&str>,
    ) -> PyResult<Switched> {
        let dir = self.db.path().to_path_buf();
        py.detach(|| {
            self.with_writer(|w| {
                no_pending(w, "reencode")?;
                let encoders = match &choice {
                    Some(c) => Some(vellum::encode::prepare_encoders(&dir, c)?),
                    None => None,
                };
                let new_field = match (new_field, &encoders) {
                    (Some(spec), Some(e)) => {
                        let c = w.committed().collection(collection)?;
                        Some(vellum::ingest::reencode::new_field_spec(c, field, spec, e)?)
                    }
                    (Some(_), None) => {
                        return Err(vellum::Error::InvalidInput(
                            "new_field needs the new encoder; continue an interrupted re-encode into a new field with field=<the new field's name>".into(),
                        ))
                    }
                    (None, _) => None,
                };
                let job = vellum::ingest::reencode::Reencode {
                    new_field,
                    piece_rows: piece_rows.max(1),
                    keep_previous,
                    ..vellum::ingest::reencode::Reencode::new(collection, field, encoders)
                };
                let s = vellum::ingest::reencode::reencode(w, &job, &mut |_| {})?;
                Ok((
                    s.switch.generation,
                    s.switch.from_version,
                    s.switch.to_version,
                    s.encoded,
                ))
            })
        })
    }

    /// The last commit (the cached snapshot unless the manifest changed since it was taken).
    fn snapshot(&self) -> PyResult<Snapshot> {
        let now = stamp(self.db.path());
        let mut cache = self.snapshot.lock();
        if let Some((s, snap)) = &*cache {
            if *s == now && now.is_some() {
                return Ok(snap.clone());
            }
        }
        let snap = self.db.snapshot().py()?;
        *cache = Some((now, snap.clone()));
        Ok(snap)
    }

    fn collection(&self, name: &str) -> PyResult<Arc<Collection>> {
        Ok(self.snapshot()?.collection(name).py()?.clone())
    }

    /// Refuses `what` (a call that commits) on a read-only handle or while the writer holds
    /// uncommitted changes, before any long work starts. The writer lock is taken with the GIL
    /// released (a long ingest holds the lock and takes the GIL between windows).
    fn refuse_pending(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        self.check_writable()?;
        let pending = py.detach(|| self.writer.lock().as_ref().is_some_and(|w| w.has_changes()));
        if pending {
            return Err(invalid(format!(
                "{what} commits, and this database has uncommitted changes: commit or roll them back first"
            )));
        }
        Ok(())
    }

    /// A handle opened read-only refuses every write.
    fn check_writable(&self) -> PyResult<()> {
        if self.read_only {
            return Err(invalid(format!(
                "database {} was opened read-only; open it with read_only=False to write",
                self.db.path().display()
            )));
        }
        Ok(())
    }

    /// Runs `f` with the writer, opening it on first use. Call it with the GIL released: the
    /// writer lock may be held by a long call (compaction, ingest) of another thread. Errors are
    /// converted to Python exceptions only after the lock is released.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut vellum::Writer) -> vellum::Result<T>,
    ) -> PyResult<T> {
        self.check_writable()?;
        let result = {
            let mut guard = self.writer.lock();
            match guard.as_mut() {
                Some(w) => f(w),
                None => match self.db.writer() {
                    Ok(w) => f(guard.insert(w)),
                    Err(e) => Err(e),
                },
            }
        };
        result.py()
    }

    /// Deletes ids (GIL released by the caller); returns how many were live.
    fn delete_ids(&self, collection: &str, ids: &[String]) -> PyResult<usize> {
        self.with_writer(|w| {
            let mut n = 0;
            for id in ids {
                n += usize::from(w.delete(collection, id)?);
            }
            Ok(n)
        })
    }

    /// The passage or query encoder of a field, cached across snapshots by its record (loaded
    /// again only when the field's encoder changes). Call it with the GIL released.
    fn encoder(&self, c: &Collection, field: &str, role: Role) -> vellum::Result<Arc<dyn Encoder>> {
        let record = c.encoder_record(field, role)?;
        let key = (
            c.name().to_string(),
            format!("{field}/{}", role.name()),
            serde_json::to_string(record).expect("records serialize"),
        );
        if let Some(e) = self.encoders.lock().get(&key) {
            return Ok(e.clone());
        }
        let e: Arc<dyn Encoder> = c
            .load_encoder(field, role, &EncoderOptions::default())?
            .into();
        self.encoders.lock().insert(key, e.clone());
        Ok(e)
    }

    pub(crate) fn read_queries<'py>(
        c: &Collection,
        field: &str,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<QueryInput<'py>> {
        let fi = c.field_index(field).py()?;
        let spec = &c.schema().fields[fi];
        match &spec.kind {
            FieldKind::Dense { dim, .. } => {
                let q = F32Input::new(queries)?;
                let ok = match q.shape() {
                    [d] => *d == *dim as usize,
                    [_, d] => *d == *dim as usize,
                    _ => false,
                };
                if !ok {
                    return Err(invalid(format!(
                        "queries for dense field {field:?} ({spec}) must have shape [{dim}] or [n, {dim}]; got {:?}",
                        q.shape()
                    )));
                }
                Ok(QueryInput::Dense(q))
            }
            FieldKind::Multi { dim, .. } => {
                let dim = *dim as usize;
                let shape_error = |s: &[usize]| {
                    invalid(format!(
                        "queries for multi-vector field {field:?} ({spec}) are one [tokens, {dim}] array, a [n, tokens, {dim}] array or a list of [tokens_i, {dim}] arrays; got shape {s:?}"
                    ))
                };
                if queries.is_instance_of::<PyList>() || queries.is_instance_of::<PyTuple>() {
                    let (mut arrays, mut ranges) = (Vec::new(), Vec::new());
                    for item in queries.try_iter()? {
                        let a = F32Input::new(&item?)?;
                        match *a.shape() {
                            [t, d] if d == dim && t > 0 => {
                                ranges.push((arrays.len(), 0, t * d));
                                arrays.push(a);
                            }
                            _ => return Err(shape_error(a.shape())),
                        }
                    }
                    return Ok(QueryInput::Multi(arrays, ranges));
                }
                let a = F32Input::new(queries)?;
                match *a.shape() {
                    [t, d] if d == dim && t > 0 => {
                        Ok(QueryInput::Multi(vec![a], vec![(0, 0, t * d)]))
                    }
                    [n, t, d] if d == dim && t > 0 => {
                        // One array read once, n views into it.
                        let ranges = (0..n).map(|i| (0, i * t * d, (i + 1) * t * d)).collect();
                        Ok(QueryInput::Multi(vec![a], ranges))
                    }
                    _ => Err(shape_error(a.shape())),
                }
            }
            FieldKind::Tensor { .. } => Err(to_py(vellum::Error::wrong_kind(
                c.name(),
                field,
                "tensor",
                "search needs a dense or multi field",
            ))),
        }
    }

    /// One stage's queries: exactly one of `queries` (arrays) and `texts`.
    fn stage_queries<'py>(
        &self,
        py: Python<'py>,
        c: &Collection,
        field: &str,
        queries: Option<&Bound<'py, PyAny>>,
        texts: Option<Vec<String>>,
    ) -> PyResult<StageQueries<'py>> {
        match (queries, texts) {
            (Some(q), None) => Ok(StageQueries::Vectors(Self::read_queries(c, field, q)?)),
            (None, Some(texts)) => {
                let (encoded, kind) = py
                    .detach(|| -> vellum::Result<_> {
                        let e = self.encoder(c, field, Role::Query)?;
                        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                        Ok((e.encode_texts(&refs)?, e.output()))
                    })
                    .py()?;
                Ok(StageQueries::Encoded(encoded, kind))
            }
            _ => Err(invalid(format!(
                "field {field:?}: give its queries either as vectors or as texts, not both or neither"
            ))),
        }
    }

    /// Converts hits: ragged ids, padded scores `[n, k]` (`-inf` where a query has fewer than `k`
    /// hits), and, when asked, each hit's text and metadata JSON.
    pub(crate) fn hits_to_py<'py>(
        py: Python<'py>,
        c: &Collection,
        hits: Vec<Vec<Hit>>,
        k: usize,
        with_docs: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut scores = vec![f32::NEG_INFINITY; hits.len() * k];
        for (q, row) in hits.iter().enumerate() {
            for (j, h) in row.iter().take(k).enumerate() {
                scores[q * k + j] = h.score;
            }
        }
        let ids = PyList::empty(py);
        for row in &hits {
            let r: Vec<&str> = row.iter().map(|h| h.id.as_str()).collect();
            ids.append(PyList::new(py, r)?)?;
        }
        let docs = if with_docs {
            let all = PyList::empty(py);
            for row in &hits {
                let r = PyList::empty(py);
                for h in row {
                    let d = c.doc(h.address).py()?;
                    r.append((d.text().py()?, d.metadata().py()?))?;
                }
                all.append(r)?;
            }
            all.into_any()
        } else {
            py.None().into_bound(py)
        };
        let scores = f32_array(py, scores, &[hits.len(), k])?;
        PyTuple::new(py, [ids.into_any(), scores.into_any(), docs])
    }

    /// Builds documents from Python columns and, for fields with a passage encoder and no given
    /// vectors, encodes their text.
    fn build_documents(
        &self,
        py: Python<'_>,
        c: &Collection,
        ids: Vec<String>,
        vectors: &Bound<'_, PyDict>,
        texts: Option<Vec<String>>,
        metadata: Option<Vec<String>>,
    ) -> PyResult<Vec<Document>> {
        let n = ids.len();
        let column_len = |what: &str, len: usize| {
            if len != n {
                Err(invalid(format!("{what} has {len} entries for {n} ids")))
            } else {
                Ok(())
            }
        };
        let mut docs: Vec<Document> = ids.into_iter().map(Document::new).collect();
        let has_texts = texts.is_some();
        if let Some(texts) = texts {
            column_len("texts", texts.len())?;
            for (d, t) in docs.iter_mut().zip(texts) {
                d.text = t;
            }
        }
        if let Some(meta) = metadata {
            column_len("metadata", meta.len())?;
            for (i, (d, m)) in docs.iter_mut().zip(meta).enumerate() {
                let v: serde_json::Value = serde_json::from_str(&m)
                    .map_err(|e| invalid(format!("metadata of document {i}: {e}")))?;
                *d = std::mem::replace(d, Document::new("")).with_metadata(v);
            }
        }
        for (key, value) in vectors.iter() {
            let field: String = key.extract()?;
            let fi = c.field_index(&field).py()?;
            let spec = &c.schema().fields[fi];
            match &spec.kind {
                FieldKind::Dense { .. } | FieldKind::Tensor { .. } => {
                    // One fixed-size row per document: [n, dim], or [n, *shape] (or flattened
                    // [n, elements]) for a tensor.
                    let a = F32Input::new(&value)?;
                    let (row_shape, make): (Vec<usize>, MakeValue) = match &spec.kind {
                        FieldKind::Dense { dim, .. } => {
                            (vec![*dim as usize], vellum::FieldValue::Dense)
                        }
                        FieldKind::Tensor { shape, .. } => (
                            shape.iter().map(|&s| s as usize).collect(),
                            vellum::FieldValue::Tensor,
                        ),
                        FieldKind::Multi { .. } => unreachable!("matched above"),
                    };
                    let per: usize = row_shape.iter().product();
                    let want: Vec<usize> = std::iter::once(n).chain(row_shape).collect();
                    if a.shape() != want.as_slice() && a.shape() != [n, per] {
                        return Err(invalid(format!(
                            "vectors[{field:?}] ({spec}) must have shape {want:?} (one row per id); got {:?}",
                            a.shape()
                        )));
                    }
                    for (d, row) in docs.iter_mut().zip(a.values().chunks_exact(per.max(1))) {
                        d.values.push((field.clone(), make(row.to_vec())));
                    }
                }
                FieldKind::Multi { dim, .. } => {
                    let dim = *dim as usize;
                    let rows = multi_rows(&value, n, dim, &field, &spec.to_string())?;
                    for (d, row) in docs.iter_mut().zip(rows) {
                        d.values
                            .push((field.clone(), vellum::FieldValue::Multi(row)));
                    }
                }
            }
        }
        // Fields with a passage encoder and no vectors given: encode the documents' text.
        let to_encode: Vec<String> = c
            .all_encoders()
            .keys()
            .filter(|f| {
                !docs
                    .first()
                    .is_some_and(|d| d.values.iter().any(|(n, _)| n == *f))
            })
            .cloned()
            .collect();
        if !to_encode.is_empty() && !docs.is_empty() {
            if !has_texts {
                return Err(invalid(format!(
                    "field {:?} has a passage encoder and no vectors were given: give texts=[...] to encode, or vectors={{{:?}: ...}}",
                    to_encode[0], to_encode[0]
                )));
            }
            docs = py
                .detach(move || -> vellum::Result<Vec<Document>> {
                    let encoders = to_encode
                        .iter()
                        .map(|f| self.encoder(c, f, Role::Passage).map(|e| (f.clone(), e)))
                        .collect::<vellum::Result<Vec<_>>>()?;
                    let texts: Vec<String> = docs
                        .iter()
                        .map(|d| vellum::ingest::text_input::text_to_encode(d).into_owned())
                        .collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    for (field, e) in &encoders {
                        let out = e.encode_texts(&refs)?;
                        for ((d, v), _) in docs.iter_mut().zip(out.per_input()).zip(&out.rows) {
                            let value = match e.output() {
                                OutputKind::Dense => vellum::FieldValue::Dense(v.to_vec()),
                                _ => vellum::FieldValue::Multi(v.to_vec()),
                            };
                            d.values.push((field.clone(), value));
                        }
                    }
                    Ok(docs)
                })
                .py()?;
        }
        Ok(docs)
    }
}

/// `k` must be at least 1, and the `[n, k]` result arrays must fit in memory.
/// A filter from its JSON text (`None`: no filter).
pub(crate) fn parse_filter(text: Option<&str>) -> PyResult<Option<vellum::filter::Filter>> {
    text.map(vellum::filter::Filter::parse).transpose().py()
}

/// `None`: the second stage's score; `(w1, w2)`: `w1·first + w2·second`.
fn combine_of(weights: Option<(f32, f32)>) -> vellum::Combine {
    match weights {
        None => vellum::Combine::Second,
        Some((first, second)) => vellum::Combine::Weighted { first, second },
    }
}

/// One stage's queries: read from Python arrays, or texts encoded by the field's query encoder.
pub(crate) enum StageQueries<'py> {
    Vectors(QueryInput<'py>),
    Encoded(vellum::encode::Encoded, OutputKind),
}

impl StageQueries<'_> {
    fn len(&self) -> usize {
        match self {
            StageQueries::Vectors(q) => q.len(),
            StageQueries::Encoded(e, _) => e.rows.len(),
        }
    }

    fn queries<'a>(&'a self, field: &'a str) -> vellum::Queries<'a> {
        match self {
            StageQueries::Vectors(q) => q.request(field, 1, None, false).queries,
            StageQueries::Encoded(e, kind) => vellum::Queries::from_encoded(e, *kind),
        }
    }
}

pub(crate) fn check_k(k: usize, n: usize) -> PyResult<()> {
    const MAX_RESULTS: usize = 1 << 26;
    if k == 0 {
        return Err(to_py(vellum::Error::parameter("k", "k = 0: at least 1")));
    }
    if n.saturating_mul(k) > MAX_RESULTS {
        return Err(to_py(vellum::Error::parameter(
            "k",
            format!("{n} queries x k = {k} results exceed {MAX_RESULTS}: search in smaller batches or with a smaller k"),
        )));
    }
    Ok(())
}

/// Multi-vector values: a list of `[t_i, dim]` arrays, or `(tokens [T, dim], lengths [n])`.
fn multi_rows(
    value: &Bound<'_, PyAny>,
    n: usize,
    dim: usize,
    field: &str,
    spec: &str,
) -> PyResult<Vec<Vec<f32>>> {
    let usage = || {
        format!("vectors[{field:?}] ({spec}) is a list of {n} [tokens_i, {dim}] arrays, or a tuple (tokens [total, {dim}], lengths [{n}])")
    };
    if let Ok(t) = value.cast::<PyTuple>() {
        if t.len() != 2 {
            return Err(invalid(usage()));
        }
        let tokens = F32Input::new(&t.get_item(0)?)?;
        let lengths: Vec<i64> = t
            .get_item(1)?
            .call_method0("tolist")
            .or_else(|_| t.get_item(1).map(|x| x.into_any()))?
            .extract()
            .map_err(|_| invalid(usage()))?;
        let total: i64 = lengths.iter().sum();
        if lengths.len() != n
            || lengths.iter().any(|&l| l < 1)
            || tokens.shape() != [total.max(0) as usize, dim]
        {
            return Err(invalid(format!(
                "{}; got tokens {:?} and {} lengths summing to {total} (each must be >= 1)",
                usage(),
                tokens.shape(),
                lengths.len()
            )));
        }
        let mut out = Vec::with_capacity(n);
        let mut at = 0usize;
        for l in lengths {
            let e = at + l as usize * dim;
            out.push(tokens.values()[at..e].to_vec());
            at = e;
        }
        return Ok(out);
    }
    let items: Vec<Bound<'_, PyAny>> = value
        .try_iter()
        .map_err(|_| invalid(usage()))?
        .collect::<PyResult<_>>()?;
    if items.len() != n {
        return Err(invalid(format!("{}; got {} arrays", usage(), items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let a = F32Input::new(item)?;
            match *a.shape() {
                [t, d] if d == dim && t > 0 => Ok(a.values().to_vec()),
                _ => Err(invalid(format!(
                    "{}; array {i} has shape {:?}",
                    usage(),
                    a.shape()
                ))),
            }
        })
        .collect()
}

#[pymethods]
impl NativeDatabase {
    /// Creates a new database at `path`.
    #[staticmethod]
    fn create(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let db = py.detach(|| Database::create(&path)).py()?;
        Ok(Self::new(db, false))
    }

    /// Opens an existing database.
    #[staticmethod]
    #[pyo3(signature = (path, read_only = false))]
    fn open(py: Python<'_>, path: PathBuf, read_only: bool) -> PyResult<Self> {
        let db = py.detach(|| Database::open(&path)).py()?;
        Ok(Self::new(db, read_only))
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.db.path().to_path_buf()
    }

    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    /// Closes the writer (uncommitted changes are discarded) and releases the writer lock.
    fn close(&self, py: Python<'_>) {
        // Dropped with the GIL released: the lock may be held by another thread's long call,
        // and dropping the writer removes its spilled files.
        py.detach(|| drop(self.writer.lock().take()));
    }

    /// Whether this handle holds the writer.
    fn holds_writer(&self, py: Python<'_>) -> bool {
        py.detach(|| self.writer.lock().is_some())
    }

    fn collections(&self) -> PyResult<Vec<String>> {
        Ok(self
            .snapshot()?
            .collections()
            .iter()
            .map(|c| c.name().to_string())
            .collect())
    }

    /// `[(name, spec, kind)]` of a collection's fields.
    fn schema(&self, collection: &str) -> PyResult<Vec<(String, String, String)>> {
        let c = self.collection(collection)?;
        Ok(c.schema()
            .fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.to_string(),
                    f.kind.kind_name().to_string(),
                )
            })
            .collect())
    }

    /// `{field: {"passage": record, "query": record}}` as JSON.
    fn encoders_json(&self, collection: &str) -> PyResult<String> {
        let c = self.collection(collection)?;
        let all: serde_json::Map<String, serde_json::Value> = c
            .all_encoders()
            .iter()
            .map(|(f, e)| {
                (
                    f.clone(),
                    serde_json::json!({"passage": e.passage, "query": e.query}),
                )
            })
            .collect();
        Ok(serde_json::Value::Object(all).to_string())
    }

    /// Creates a collection (and commits it); returns the generation.
    #[pyo3(signature = (name, fields, hnsw, encoders, query_encoders, encoder_options, query_encoder_options, embed_model))]
    #[allow(clippy::too_many_arguments)]
    fn create_collection(
        &self,
        py: Python<'_>,
        name: String,
        fields: Vec<String>,
        hnsw: HashMap<String, String>,
        encoders: HashMap<String, String>,
        query_encoders: HashMap<String, String>,
        encoder_options: HashMap<String, HashMap<String, String>>,
        query_encoder_options: HashMap<String, HashMap<String, String>>,
        embed_model: bool,
    ) -> PyResult<u64> {
        let mut schema = Schema::new();
        for f in &fields {
            schema = schema.with_field(vellum::FieldSpec::parse(f).py()?);
        }
        schema.validate().py()?;
        let named: [(&str, Vec<&String>); 3] = [
            ("query_encoders", query_encoders.keys().collect()),
            ("encoder_options", encoder_options.keys().collect()),
            (
                "query_encoder_options",
                query_encoder_options.keys().collect(),
            ),
        ];
        for (what, map) in named {
            for f in map {
                if !encoders.contains_key(f) {
                    return Err(invalid(format!(
                        "{what}[{f:?}] is given but encoders[{f:?}] is not"
                    )));
                }
            }
        }
        let options = |m: Option<&HashMap<String, String>>| -> vellum::Result<EncoderOptions> {
            let mut o = EncoderOptions::default();
            for (k, v) in m.into_iter().flatten() {
                o.set(k, v)?;
            }
            Ok(o)
        };
        let mut choices = Vec::new();
        for (field, model) in &encoders {
            let mut passage_options = options(encoder_options.get(field)).py()?;
            // An image encoder bound to a tensor field stores its hidden states (CLIP's
            // penultimate layer) unless told otherwise, as the CLI does.
            let tensor = schema
                .field_index(field)
                .is_some_and(|i| matches!(schema.fields[i].kind, FieldKind::Tensor { .. }));
            if tensor && passage_options.output.is_none() {
                passage_options.output = Some(OutputKind::Tensor);
            }
            choices.push((
                field.clone(),
                EncoderChoice {
                    passage: model.clone(),
                    passage_options,
                    query: query_encoders.get(field).cloned(),
                    query_options: options(query_encoder_options.get(field)).py()?,
                    embed: embed_model,
                },
            ));
        }
        let dir = self.db.path().to_path_buf();
        let generation = py.detach(|| {
            self.with_writer(|w| {
                if w.has_changes() {
                    return Err(vellum::Error::InvalidInput(format!(
                        "create_collection({name:?}) commits, and this database has uncommitted changes: commit or roll them back first"
                    )));
                }
                let made = (|| -> vellum::Result<u64> {
                    w.create_collection(&name, schema)?;
                    for (field, params) in &hnsw {
                        w.set_index(&name, field, Some(vellum::hnsw::HnswParams::parse(params)?))?;
                    }
                    for (field, choice) in &choices {
                        let records = vellum::encode::prepare_encoders(&dir, choice)?;
                        w.set_encoders(&name, field, records)?;
                    }
                    Ok(w.commit()?.generation)
                })();
                if made.is_err() {
                    // Only the new collection is buffered (checked above): nothing else is lost.
                    let _ = w.rollback();
                }
                made
            })
        });
        generation
    }

    /// Adds (or upserts) documents, all or nothing; returns how many were buffered.
    #[pyo3(signature = (collection, ids, vectors, texts, metadata, upsert))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        py: Python<'_>,
        collection: &str,
        ids: Vec<String>,
        vectors: &Bound<'_, PyDict>,
        texts: Option<Vec<String>>,
        metadata: Option<Vec<String>>,
        upsert: bool,
    ) -> PyResult<usize> {
        self.check_writable()?; // before any encoding
        let c = self.collection(collection)?;
        let docs = self.build_documents(py, &c, ids, vectors, texts, metadata)?;
        let n = docs.len();
        py.detach(|| {
            self.with_writer(|w| {
                if upsert {
                    w.upsert_all(collection, docs)
                } else {
                    w.add_all(collection, docs)
                }
            })
        })?;
        Ok(n)
    }

    /// Deletes documents by id; returns how many existed.
    fn delete(&self, py: Python<'_>, collection: &str, ids: Vec<String>) -> PyResult<usize> {
        py.detach(|| self.delete_ids(collection, &ids))
    }

    /// Whether a live document (committed, or buffered by this handle) has this id.
    fn contains(&self, py: Python<'_>, collection: &str, id: &str) -> PyResult<bool> {
        let buffered = py.detach(|| {
            let mut guard = self.writer.lock();
            guard.as_mut().map(|w| w.contains(collection, id))
        });
        match buffered {
            Some(r) => r.py(),
            None => Ok(self.collection(collection)?.get(id).py()?.is_some()),
        }
    }

    /// Commits; returns `(generation, added, deleted)`.
    fn commit(&self, py: Python<'_>) -> PyResult<(u64, u64, u64)> {
        py.detach(|| {
            self.with_writer(|w| {
                let c = w.commit()?;
                Ok((c.generation, c.added, c.deleted))
            })
        })
    }

    /// Discards the uncommitted changes.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.writer.lock().as_mut() {
            Some(w) => w.rollback(),
            None => Ok(()),
        })
        .py()
    }

    /// Whether there are uncommitted changes.
    fn has_changes(&self, py: Python<'_>) -> bool {
        py.detach(|| self.writer.lock().as_ref().is_some_and(|w| w.has_changes()))
    }

    /// Live documents of a collection (last commit).
    fn count(&self, collection: &str) -> PyResult<u64> {
        Ok(self.collection(collection)?.len())
    }

    /// Searches with vectors: `(ids, scores [n, k], docs | None)`.
    #[pyo3(signature = (collection, field, queries, k, ef, exact, with_docs, plaid=None, filter=None, device=None, gpu_precision=None))]
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
        with_docs: bool,
        plaid: Option<HashMap<String, f64>>,
        filter: Option<String>,
        device: Option<String>,
        gpu_precision: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let plaid = plaid_search(plaid, k).py()?;
        let filter = parse_filter(filter.as_deref())?;
        let c = self.collection(collection)?;
        let input = Self::read_queries(&c, field, queries)?;
        let n = input.len();
        check_k(k, n)?;
        if n == 0 {
            return Self::hits_to_py(py, &c, Vec::new(), k, with_docs);
        }
        let mut req = on_device(
            input.request(field, k, ef, exact),
            device.as_deref(),
            gpu_precision.as_deref(),
        )?;
        req.plaid = plaid;
        req.filter = filter.as_ref();
        let coll = &*c;
        let hits = py.detach(move || coll.search(&req)).py()?;
        Self::hits_to_py(py, &c, hits, k, with_docs)
    }

    /// Searches with texts encoded by the field's query encoder.
    #[pyo3(signature = (collection, field, texts, k, ef, exact, with_docs, plaid=None, filter=None, device=None, gpu_precision=None))]
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
        with_docs: bool,
        plaid: Option<HashMap<String, f64>>,
        filter: Option<String>,
        device: Option<String>,
        gpu_precision: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let c = self.collection(collection)?;
        check_k(k, texts.len())?;
        let filter = parse_filter(filter.as_deref())?;
        let mut req = on_device(
            with_options(SearchRequest::text(field, k), ef, exact),
            device.as_deref(),
            gpu_precision.as_deref(),
        )?;
        req.plaid = plaid_search(plaid, k).py()?;
        req.filter = filter.as_ref();
        let coll = &*c;
        let hits = py
            .detach(move || {
                let e = self.encoder(coll, field, Role::Query)?;
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                coll.search_text(&*e, &refs, req)
            })
            .py()?;
        Self::hits_to_py(py, &c, hits, k, with_docs)
    }

    /// Two-stage search: stage 1 (`depth` candidates by `field`, with `filter`) re-ranked by
    /// `rerank_field`; each stage's queries as vectors or texts. `(ids, scores [n, k])`.
    #[pyo3(signature = (collection, field, queries, texts, rerank_field, rerank_queries, rerank_texts, k, depth, combine, filter, ef, exact, device=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_two_stage<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        field: &str,
        queries: Option<Bound<'py, PyAny>>,
        texts: Option<Vec<String>>,
        rerank_field: &str,
        rerank_queries: Option<Bound<'py, PyAny>>,
        rerank_texts: Option<Vec<String>>,
        k: usize,
        depth: usize,
        combine: Option<(f32, f32)>,
        filter: Option<String>,
        ef: Option<usize>,
        exact: bool,
        device: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let c = self.collection(collection)?;
        check_k(depth, 1)?;
        let filter = parse_filter(filter.as_deref())?;
        let first = self.stage_queries(py, &c, field, queries.as_ref(), texts)?;
        let second =
            self.stage_queries(py, &c, rerank_field, rerank_queries.as_ref(), rerank_texts)?;
        check_k(k, first.len())?;
        let mut req = on_device(
            with_options(
                SearchRequest {
                    queries: first.queries(field),
                    ..SearchRequest::text(field, depth)
                },
                ef,
                exact,
            ),
            device.as_deref(),
            None,
        )?;
        req.filter = filter.as_ref();
        let rerank = vellum::Rerank {
            queries: second.queries(rerank_field),
            ..vellum::Rerank::dense(rerank_field, &[], k)
        }
        .with_combine(combine_of(combine))
        .on_device(req.device);
        let coll = &*c;
        let hits = py
            .detach(move || coll.search_two_stage(&req, &rerank))
            .py()?;
        Self::hits_to_py(py, &c, hits, k, false)
    }

    /// Stage 2 alone: re-ranks `candidates` (per query, `(id, stage-1 score)` pairs) with
    /// `field`. `(ids, scores [n, k])`.
    #[pyo3(signature = (collection, field, candidates, queries, texts, k, combine, filter, device=None))]
    #[allow(clippy::too_many_arguments)]
    fn rerank<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        field: &str,
        candidates: Vec<Vec<(String, f32)>>,
        queries: Option<Bound<'py, PyAny>>,
        texts: Option<Vec<String>>,
        k: usize,
        combine: Option<(f32, f32)>,
        filter: Option<String>,
        device: Option<String>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let c = self.collection(collection)?;
        check_k(k, candidates.len())?;
        let device = on_device(SearchRequest::text(field, k), device.as_deref(), None)?.device;
        let filter = parse_filter(filter.as_deref())?;
        let q = self.stage_queries(py, &c, field, queries.as_ref(), texts)?;
        let mut rerank = vellum::Rerank {
            queries: q.queries(field),
            ..vellum::Rerank::dense(field, &[], k)
        }
        .with_combine(combine_of(combine))
        .on_device(device);
        rerank.filter = filter.as_ref();
        let coll = &*c;
        let hits = py
            .detach(move || {
                let cands: Vec<Vec<(&str, f32)>> = candidates
                    .iter()
                    .map(|c| c.iter().map(|(id, s)| (id.as_str(), *s)).collect())
                    .collect();
                coll.rerank(&rerank, &cands)
            })
            .py()?;
        Self::hits_to_py(py, &c, hits, k, false)
    }

    /// Encodes query texts with the field's own query encoder: `[n, dims]` (dense) or a list of
    /// `[tokens_i, dims]` arrays (multi).
    fn encode_queries<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        field: &str,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.collection(collection)?;
        let (e, out) = py
            .detach(|| -> vellum::Result<_> {
                let e = self.encoder(&c, field, Role::Query)?;
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let out = e.encode_texts(&refs)?;
                Ok((e, out))
            })
            .py()?;
        crate::encoder::encoded_to_py(py, e.output(), out)
    }

    /// A document by id: `{"id", "text", "metadata" (JSON text), "vectors": {field: array}}`.
    fn get<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let c = self.collection(collection)?;
        let Some(doc) = c.get(id).py()? else {
            return Ok(None);
        };
        let out = PyDict::new(py);
        out.set_item("id", doc.id().py()?)?;
        out.set_item("text", doc.text().py()?)?;
        out.set_item("metadata", doc.metadata().py()?)?;
        let vectors = PyDict::new(py);
        for f in &c.schema().fields {
            let (shape, values) = doc.field_value(f).py()?;
            vectors.set_item(&f.name, f32_array(py, values.to_f32_vec(), &shape)?)?;
        }
        out.set_item("vectors", vectors)?;
        Ok(Some(out))
    }

    /// Statistics of the last commit, as JSON.
    fn stats(&self) -> PyResult<String> {
        let s = self.snapshot()?.stats().py()?;
        Ok(serde_json::to_string(&s).expect("stats serialize"))
    }

    /// Merges a collection's segments; returns `(generation, segments_before, segments_after,
    /// rows_dropped)`.
    fn compact(&self, py: Python<'_>, collection: &str) -> PyResult<(u64, usize, usize, u64)> {
        py.detach(|| {
            self.with_writer(|w| {
                let c = w.compact(collection)?;
                Ok((
                    c.generation,
                    c.segments_before,
                    c.segments_after,
                    c.rows_dropped,
                ))
            })
        })
    }

    /// Re-encodes a field with a new encoder as a new encoder version (`vellum reencode`):
    /// `encoder` `None` continues an interrupted re-encode. Returns `(generation, from_version,
    /// to_version, documents_encoded)`.
    #[pyo3(signature = (collection, field, encoder, query_encoder, encoder_options, query_encoder_options, embed_model, piece_rows, keep_previous, new_field=None))]
    #[allow(clippy::too_many_arguments)]
    fn reencode(
        &self,
        py: Python<'_>,
        collection: &str,
        field: &str,
        encoder: Option<String>,
        query_encoder: Option<String>,
        encoder_options: HashMap<String, String>,
        query_encoder_options: HashMap<String, String>,
        embed_model: bool,
        piece_rows: u64,
        keep_previous: bool,
        new_field: Option<String>,
    ) -> PyResult<(u64, u64, u64, u64)> {
        let options = |m: &HashMap<String, String>| -> vellum::Result<EncoderOptions> {
            let mut o = EncoderOptions::default();
            for (k, v) in m {
                o.set(k, v)?;
            }
            Ok(o)
        };
        let choice = match encoder {
            Some(passage) => Some(EncoderChoice {
                passage,
                passage_options: options(&encoder_options).py()?,
                query: query_encoder,
                query_options: options(&query_encoder_options).py()?,
                embed: embed_model,
            }),
            None => None,
        };
        self.reencode_with(
            py,
            collection,
            field,
            choice,
            piece_rows,
            keep_previous,
            new_field.as_deref(),
        )
    }

    /// Fine-tunes a field's encoders (`vellum train`): Tevatron's loss on `train` (Tevatron
    /// JSONL) or `queries` + `qrels`, hard negatives mined `mine_depth` deep, `settings` by
    /// `TrainConfig` field name; with `reencode`, then re-encodes the field with the trained
    /// model (the field's options carried over). Returns the training report (JSON) and the
    /// re-encode's `(generation, from_version, to_version, encoded)`.
    #[pyo3(signature = (collection, field, output, train, queries, qrels, mine_depth, mine_skip, eval_queries, eval_qrels, eval_depth, resume, settings, reencode, piece_rows))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        py: Python<'_>,
        collection: String,
        field: String,
        output: PathBuf,
        train: Option<PathBuf>,
        queries: Option<PathBuf>,
        qrels: Option<PathBuf>,
        mine_depth: usize,
        mine_skip: usize,
        eval_queries: Option<PathBuf>,
        eval_qrels: Option<PathBuf>,
        eval_depth: usize,
        resume: bool,
        settings: HashMap<String, String>,
        reencode: bool,
        piece_rows: u64,
    ) -> PyResult<(String, Option<Switched>)> {
        if reencode {
            // Refuse before hours of training, not after.
            self.refuse_pending(py, "train(reencode=True)")?;
        }
        let snap = self.snapshot()?;
        let job = crate::train::TrainJob {
            collection: collection.clone(),
            field: field.clone(),
            output,
            train,
            queries,
            qrels,
            mine_depth,
            mine_skip,
            eval_queries,
            eval_qrels,
            eval_depth,
            resume,
            settings,
        };
        let (report, text) = crate::train::run(py, &snap, &job)?;
        if !reencode {
            return Ok((text, None));
        }
        let current = snap
            .collection(&collection)
            .py()?
            .encoders(&field)
            .cloned()
            .ok_or_else(|| invalid(format!("reencode: field {field:?} has no encoders")))?;
        drop(snap);
        let choice = vellum_train::trained_encoders(&report.output, report.untied, &current, false)
            .map_err(crate::train::train_to_py)?;
        let done = self.reencode_with(
            py,
            &collection,
            &field,
            Some(choice),
            piece_rows,
            true,
            None,
        )?;
        Ok((text, Some(done)))
    }

    /// Query-encoder-only training (`Collection.train_query_encoder`); returns the report's JSON
    /// text and, with `bind`, the generation of the commit that made the trained model the
    /// field's query encoder.
    #[pyo3(signature = (collection, field, output, train, queries, qrels, mine_depth, mine_skip, eval_queries, eval_qrels, student_layers, student, align_steps, align_loss, align_lr, align_texts, train_embeddings, settings, bind, bind_options, embed_model))]
    #[allow(clippy::too_many_arguments)]
    fn train_query_encoder(
        &self,
        py: Python<'_>,
        collection: String,
        field: String,
        output: PathBuf,
        train: Option<PathBuf>,
        queries: Option<PathBuf>,
        qrels: Option<PathBuf>,
        mine_depth: usize,
        mine_skip: usize,
        eval_queries: Option<PathBuf>,
        eval_qrels: Option<PathBuf>,
        student_layers: Option<usize>,
        student: Option<PathBuf>,
        align_steps: usize,
        align_loss: String,
        align_lr: f64,
        align_texts: Vec<String>,
        train_embeddings: bool,
        settings: HashMap<String, String>,
        bind: bool,
        bind_options: HashMap<String, String>,
        embed_model: bool,
    ) -> PyResult<(String, Option<u64>)> {
        if !bind && (!bind_options.is_empty() || embed_model) {
            return Err(invalid(
                "bind_options and embed_model apply to the bound query encoder: pass bind=True",
            ));
        }
        let bind_options = parse_encoder_options(&bind_options)
            .map_err(|e| invalid(format!("bind_options: {e}")))?;
        if bind {
            // Refuse before the training, not after.
            self.refuse_pending(py, "train_query_encoder(bind=True)")?;
        }
        let snap = self.snapshot()?;
        let job = crate::train::QueryOnlyJob {
            data: crate::train::TrainJob {
                collection: collection.clone(),
                field: field.clone(),
                output: output.clone(),
                train,
                queries,
                qrels,
                mine_depth,
                mine_skip,
                eval_queries,
                eval_qrels,
                eval_depth: 100,
                resume: false,
                settings,
            },
            student_layers,
            student,
            align_steps,
            align_loss,
            align_lr,
            align_texts,
            train_embeddings,
        };
        let text = crate::train::run_query_only(py, &snap, &job)?;
        if !bind {
            return Ok((text, None));
        }
        let generation = py.detach(|| {
            self.with_writer(|w| {
                no_pending(w, "train_query_encoder(bind=True)")?;
                // The field's encoders as committed now: refused if its passage encoder changed
                // during training (the student learned the vectors stored before).
                let now = self.db.snapshot()?;
                let current = now.collection(&collection)?.encoders(&field).ok_or_else(|| {
                    vellum::Error::InvalidInput(format!("field {field:?} has no encoder"))
                })?;
                let before = snap.collection(&collection)?.encoders(&field);
                if Some(&current.passage) != before.map(|e| &e.passage) {
                    return Err(vellum::Error::InvalidInput(format!(
                        "field {field:?}'s passage encoder changed while the student trained: not bound (the model is in {})",
                        output.display()
                    )));
                }
                let records = vellum::encode::replace_query_encoder(
                    &**self.db.directory(),
                    current,
                    &output.display().to_string(),
                    &bind_options,
                    embed_model,
                )?;
                w.set_encoders(&collection, &field, records)?;
                Ok(w.commit()?.generation)
            })
        })?;
        Ok((text, Some(generation)))
    }

    /// Switches a collection back to the encoder version its last re-encode replaced; returns
    /// `(generation, field, from_version, to_version)`.
    fn rollback_version(
        &self,
        py: Python<'_>,
        collection: &str,
    ) -> PyResult<(u64, String, u64, u64)> {
        py.detach(|| {
            self.with_writer(|w| {
                no_pending(w, "rollback_version")?;
                let s = w.rollback_version(collection)?;
                Ok((s.generation, s.field, s.from_version, s.to_version))
            })
        })
    }

    /// Drops the kept previous version (`"previous"`) or an unfinished re-encode (`"staged"`);
    /// returns whether there was one.
    fn drop_version(&self, py: Python<'_>, collection: &str, which: &str) -> PyResult<bool> {
        py.detach(|| {
            self.with_writer(|w| {
                no_pending(w, "drop_version")?;
                match which {
                    "previous" => w.drop_previous(collection),
                    "staged" => w.abort_staged(collection),
                    other => Err(vellum::Error::InvalidInput(format!(
                        "drop_version: {other:?} is neither \"previous\" nor \"staged\""
                    ))),
                }
            })
        })
    }

    /// Sets (or with `None` drops) a field's HNSW index and rebuilds; returns the generation.
    #[pyo3(signature = (collection, field, params))]
    fn index(
        &self,
        py: Python<'_>,
        collection: &str,
        field: &str,
        params: Option<String>,
    ) -> PyResult<u64> {
        let params = params
            .map(|p| vellum::hnsw::HnswParams::parse(&p))
            .transpose()
            .py()?;
        py.detach(|| {
            self.with_writer(|w| {
                w.set_index(collection, field, params)?;
                Ok(w.reindex(collection)?.generation)
            })
        })
    }

    /// Sets (`params`: `"nbits=2,centroids=..."`) or drops (`None`) the PLAID index of a
    /// multi-vector field and rewrites the collection so every segment has it; returns the
    /// generation.
    fn plaid_index(
        &self,
        py: Python<'_>,
        collection: &str,
        field: &str,
        params: Option<String>,
    ) -> PyResult<u64> {
        let params = params
            .map(|p| vellum::meta::PlaidParams::parse(&p))
            .transpose()
            .py()?;
        py.detach(|| {
            self.with_writer(|w| {
                w.set_plaid(collection, field, params)?;
                Ok(w.reindex(collection)?.generation)
            })
        })
    }

    /// Ingests a JSONL/TSV file: text encoded by the fields' encoders (resumable), or with
    /// precomputed vectors (`vectors = {field: "file.npy" | "file.safetensors:tensor"}`).
    /// Returns the stats as JSON.
    #[pyo3(signature = (collection, docs, vectors, lengths, upsert, shard, commit_every, skip_bad_images=false))]
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &self,
        py: Python<'_>,
        collection: &str,
        docs: PathBuf,
        vectors: HashMap<String, String>,
        lengths: HashMap<String, String>,
        upsert: bool,
        shard: Option<(usize, usize)>,
        commit_every: usize,
        skip_bad_images: bool,
    ) -> PyResult<String> {
        use vellum::ingest::{self, Mode, VectorInput};
        let mode = if upsert { Mode::Upsert } else { Mode::Add };
        let shard = match shard {
            Some((index, count)) => format!("{index}/{count}").parse::<ingest::Shard>().py()?,
            None => ingest::Shard::ALL,
        };
        let mut inputs = Vec::new();
        for (field, spec) in &vectors {
            let mut v = VectorInput::parse(&format!("{field}={spec}")).py()?;
            if let Some(l) = lengths.get(field) {
                v.lengths = Some(ingest::split_tensor(l, &format!("{field}_lengths")));
            }
            inputs.push(v);
        }
        if let Some(f) = lengths.keys().find(|f| !vectors.contains_key(*f)) {
            return Err(invalid(format!(
                "lengths[{f:?}] is given but vectors[{f:?}] is not"
            )));
        }
        let interrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let signal: Mutex<Option<PyErr>> = Mutex::new(None);
        let result = py.detach(|| {
            self.with_writer(|w| {
                if inputs.is_empty() {
                    let mut job = ingest::pipeline::TextIngest::new(collection, &docs);
                    job.mode = mode;
                    job.shard = shard;
                    job.commit_every = commit_every.max(1);
                    job.interrupt = Some(interrupt.clone());
                    job.skip_bad_images = skip_bad_images;
                    // Ctrl-C (or any pending signal) while the GIL is released: checked after
                    // every window; the pipeline then commits what it encoded and stops.
                    let s = ingest::pipeline::ingest_text(w, &job, &mut |_| {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            *signal.lock() = Some(e);
                            interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    })?;
                    Ok(serde_json::json!({
                        "documents": s.documents, "skipped": s.skipped, "commits": s.commits,
                        "tokens": s.tokens, "encode_seconds": s.encode_seconds,
                        "bad_images": s.bad_images,
                        "generation": w.committed().generation(),
                    })
                    .to_string())
                } else {
                    let s = ingest::ingest_shard(
                        w,
                        collection,
                        &docs,
                        &inputs,
                        mode,
                        shard,
                        &mut |_| {},
                    )?;
                    let c = w.commit()?;
                    Ok(serde_json::json!({
                        "documents": s.documents, "skipped": 0, "commits": 1,
                        "generation": c.generation,
                    })
                    .to_string())
                }
            })
        });
        // Interrupted by a signal: what was encoded is committed; raise the signal's exception
        // (KeyboardInterrupt for Ctrl-C) rather than vellum's Interrupted.
        match (result, signal.into_inner()) {
            (Err(_), Some(e)) => Err(e),
            (result, _) => result,
        }
    }

    /// Copies the last commit into a new database at `dest`; returns the JSON info.
    fn backup(&self, py: Python<'_>, dest: PathBuf) -> PyResult<String> {
        let b = py.detach(|| self.db.backup_to(&dest)).py()?;
        Ok(serde_json::json!({
            "generation": b.generation, "files": b.files, "bytes": b.bytes, "models": b.models,
        })
        .to_string())
    }

    fn __repr__(&self) -> String {
        format!(
            "Database({:?}{})",
            self.db.path(),
            if self.read_only {
                ", read_only=True"
            } else {
                ""
            }
        )
    }
}

/// Verifies every checksum and structure of the database at `path`; returns the JSON report.
#[pyfunction]
pub fn verify(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let r = py.detach(|| vellum::verify::verify_database(&path)).py()?;
    Ok(serde_json::json!({
        "ok": r.is_ok(), "generation": r.generation, "collections": r.collections,
        "segments": r.segments, "live_documents": r.live_documents, "bytes": r.bytes,
        "problems": r.problems, "unreferenced_files": r.unreferenced_files,
    })
    .to_string())
}

/// Parses field specs (`"emb:dense:384:f32:cosine"`); returns `[(name, canonical spec, kind)]`.
#[pyfunction]
pub fn field_specs(specs: Vec<String>) -> PyResult<Vec<(String, String, String)>> {
    specs
        .iter()
        .map(|s| {
            let f = vellum::FieldSpec::parse(s).py()?;
            Ok((
                f.name.clone(),
                f.to_string(),
                f.kind.kind_name().to_string(),
            ))
        })
        .collect()
}

/// What makes encoder record `b` encode differently from record `a` (both JSON), as
/// `what: expected X, found Y` items; empty when they encode identically.
#[pyfunction]
pub fn encoder_differences(a: &str, b: &str) -> PyResult<Vec<String>> {
    let parse = |s: &str| {
        serde_json::from_str::<vellum::encode::EncoderRecord>(s)
            .map_err(|e| invalid(format!("not an encoder record: {e}")))
    };
    Ok(parse(a)?.differences(&parse(b)?))
}
