//! Evaluation (trec_eval's measures, equal to `pytrec_eval`) and run files from Python.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use pyo3::prelude::*;
use vellum::eval::{Qrels, Run, RunEntry, RunFormat};

use crate::errors::{invalid, IntoPy};

/// Qrels from a path (TREC or BEIR TSV) or `{qid: {docid: grade}}`.
fn qrels_from(obj: &Bound<'_, PyAny>) -> PyResult<Qrels> {
    if let Ok(path) = obj.extract::<PathBuf>() {
        return Qrels::read(&path).py();
    }
    let queries: BTreeMap<String, BTreeMap<String, i64>> = obj.extract().map_err(|_| {
        invalid("qrels must be a file path or a dict {query_id: {doc_id: grade (int)}}")
    })?;
    Ok(Qrels { queries })
}

/// A run from a path (TREC or TSV) or `{qid: {docid: score}}`.
fn run_from(obj: &Bound<'_, PyAny>) -> PyResult<Run> {
    if let Ok(path) = obj.extract::<PathBuf>() {
        return Run::read(&path).py();
    }
    let queries: BTreeMap<String, HashMap<String, f64>> = obj
        .extract()
        .map_err(|_| invalid("run must be a file path or a dict {query_id: {doc_id: score}}"))?;
    let mut run = Run::default();
    for (qid, docs) in queries {
        let entries = docs
            .into_iter()
            .map(|(docid, score)| RunEntry { docid, score })
            .collect();
        run.queries.insert(qid, entries);
    }
    Ok(run)
}

/// Evaluates `run` against `qrels` with trec_eval's measures (`"mrr@10,recall@100"`); returns
/// `(means JSON, notes)`.
#[pyfunction]
#[pyo3(signature = (qrels, run, measures, per_query))]
pub fn evaluate(
    qrels: &Bound<'_, PyAny>,
    run: &Bound<'_, PyAny>,
    measures: &str,
    per_query: bool,
) -> PyResult<(String, Vec<String>)> {
    let measures = vellum::eval::parse_measures(measures).py()?;
    let qrels = qrels_from(qrels)?;
    let run = run_from(run)?;
    let e = vellum::eval::evaluate(&qrels, &run, &measures);
    Ok((e.to_json(per_query).to_string(), e.notes()))
}

/// Writes ranked results as a run file (`"trec"`, `"tsv"` or `"json"`): query `i` is
/// `query_ids[i]`, its documents `ids[i]` with `scores[i]` (best first).
#[pyfunction]
#[pyo3(signature = (path, query_ids, ids, scores, format, tag))]
pub fn write_run(
    path: PathBuf,
    query_ids: Vec<String>,
    ids: Vec<Vec<Option<String>>>,
    scores: Vec<Vec<f32>>,
    format: &str,
    tag: &str,
) -> PyResult<()> {
    let format = match format {
        "trec" => RunFormat::Trec,
        "tsv" => RunFormat::Tsv,
        "json" => RunFormat::Json,
        other => {
            return Err(invalid(format!(
                "run format {other:?}: expected \"trec\", \"tsv\" or \"json\""
            )))
        }
    };
    if ids.len() != query_ids.len() || scores.len() != query_ids.len() {
        return Err(invalid(format!(
            "{} query ids, {} id rows and {} score rows: one row per query expected",
            query_ids.len(),
            ids.len(),
            scores.len()
        )));
    }
    let io = |e: std::io::Error| crate::errors::to_py(vellum::Error::io(&path, e));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
    for ((qid, row), srow) in query_ids.iter().zip(&ids).zip(&scores) {
        let ranked = row
            .iter()
            .zip(srow)
            .filter_map(|(id, s)| id.as_deref().map(|id| (id, *s)));
        vellum::eval::write_ranked(&mut out, format, qid, ranked, tag).map_err(io)?;
    }
    out.flush().map_err(io)
}
