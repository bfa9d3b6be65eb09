//! Training from Python: `Collection.train` (vellum-train's loop with the CLI's data readers,
//! mining and held-out evaluation) and `Collection.train_query_encoder` (query-encoder-only
//! training against the stored vectors). Ctrl-C is polled after every optimiser step: training
//! stops (after writing a checkpoint, for `train`) and raises `Interrupted`; `resume=True`
//! continues a `train` run.

use std::collections::HashMap;
use std::path::PathBuf;

use pyo3::prelude::*;
use vellum::Snapshot;
use vellum_train::{
    mine_negatives, read_queries_qrels, read_tevatron, train, EvalSet, MiningConfig, Progress,
    TrainConfig, TrainError,
};

use crate::errors::{invalid, raise};

/// What `Collection.train` asks for.
pub struct TrainJob {
    pub collection: String,
    pub field: String,
    pub output: PathBuf,
    pub train: Option<PathBuf>,
    pub queries: Option<PathBuf>,
    pub qrels: Option<PathBuf>,
    pub mine_depth: usize,
    pub mine_skip: usize,
    pub eval_queries: Option<PathBuf>,
    pub eval_qrels: Option<PathBuf>,
    pub eval_depth: usize,
    pub resume: bool,
    pub settings: HashMap<String, String>,
}

/// What `Collection.train_query_encoder` asks for besides the data and evaluation of a
/// [`TrainJob`] (whose `resume` and `eval_depth` do not apply).
pub struct QueryOnlyJob {
    pub data: TrainJob,
    pub student_layers: Option<usize>,
    pub student: Option<PathBuf>,
    pub align_steps: usize,
    pub align_loss: String,
    pub align_lr: f64,
    pub align_texts: Vec<String>,
    pub train_embeddings: bool,
}

/// Converts a training error into the Python exception of `vellum.errors`.
pub fn train_to_py(e: TrainError) -> PyErr {
    let message = e.to_string();
    match e {
        TrainError::Vellum(e) => crate::errors::to_py(e),
        TrainError::Data { .. } => raise("InvalidInputError", "BadInputFile", message),
        TrainError::Invalid(_) => raise("InvalidInputError", "InvalidInput", message),
        TrainError::Model { .. } => raise("EncoderError", "Model", message),
        TrainError::Io { .. } => raise("VellumIOError", "Io", message),
        TrainError::Interrupted { .. } => raise("Interrupted", "Interrupted", message),
        _ => raise("VellumError", "Other", message),
    }
}

/// Polls Python's signal handlers after every step (Ctrl-C raises KeyboardInterrupt there).
struct Signals {
    stop: bool,
}

impl Progress for Signals {
    fn step(&mut self, _: &vellum_train::StepReport) {
        self.stop |= Python::attach(|py| py.check_signals()).is_err();
    }
    fn interrupted(&self) -> bool {
        self.stop
    }
}

/// The training data of `job`, with hard negatives mined when asked.
fn read_data(c: &vellum::Collection, job: &TrainJob) -> PyResult<Vec<vellum_train::TrainQuery>> {
    let mut data = match (&job.train, &job.queries, &job.qrels) {
        (Some(path), None, None) => read_tevatron(path, c),
        (None, Some(q), Some(r)) => read_queries_qrels(q, r, c).map(|(d, _)| d),
        (Some(_), _, _) => {
            return Err(invalid(
                "train=FILE (Tevatron JSONL) and queries= / qrels= are two forms of the training data: give one",
            ))
        }
        _ => {
            return Err(invalid(
                "give the training data: train=FILE (Tevatron JSONL), or queries=FILE and qrels=FILE",
            ))
        }
    }
    .map_err(train_to_py)?;
    if job.mine_depth > 0 {
        let mining = MiningConfig {
            depth: job.mine_depth,
            skip: job.mine_skip,
        };
        mine_negatives(c, &job.field, &mut data, mining).map_err(train_to_py)?;
    }
    Ok(data)
}

/// Runs query-encoder-only training; returns the report's JSON text (`training_report.json`).
pub fn run_query_only(py: Python<'_>, snapshot: &Snapshot, job: &QueryOnlyJob) -> PyResult<String> {
    use vellum_train::query_only::{
        train_query_encoder, AlignLoss, QueryOnlyConfig, RetrievalEval, Student,
    };
    let d = &job.data;
    let mut train = TrainConfig::new(&d.field);
    for (k, v) in &d.settings {
        train.set(k, v).map_err(train_to_py)?;
    }
    let student = match (&job.student, job.student_layers) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "student= (a model folder) and student_layers= (the current query model's first layers) are two students: give one",
            ))
        }
        (Some(p), None) => Student::Model(p.clone()),
        (None, n) => Student::Layers(n.unwrap_or(2)),
    };
    let align_loss = match job.align_loss.as_str() {
        "cosine" | "cos" => AlignLoss::Cosine,
        "mse" => AlignLoss::Mse,
        other => {
            return Err(invalid(format!(
                "align_loss {other:?}: expected cosine or mse"
            )))
        }
    };
    let config = QueryOnlyConfig {
        student,
        align_steps: job.align_steps,
        align_loss,
        align_lr: job.align_lr,
        align_texts: job.align_texts.clone(),
        freeze_embeddings: !job.train_embeddings,
        train,
    };
    let c = snapshot
        .collection(&d.collection)
        .map_err(crate::errors::to_py)?;
    py.detach(|| -> PyResult<String> {
        let data = read_data(c, d)?;
        let eval = match (&d.eval_queries, &d.eval_qrels) {
            (Some(q), Some(r)) => {
                let queries =
                    vellum::ingest::text_input::read_queries(q).map_err(crate::errors::to_py)?;
                let qrels = vellum::eval::Qrels::read(r).map_err(crate::errors::to_py)?;
                Some(RetrievalEval::new(queries, qrels).map_err(train_to_py)?)
            }
            (None, None) => None,
            _ => return Err(invalid("eval_queries and eval_qrels go together")),
        };
        let mut signals = Signals { stop: false };
        let report = train_query_encoder(c, &data, eval.as_ref(), &config, &d.output, &mut signals)
            .map_err(train_to_py)?;
        let path = report.output.join("training_report.json");
        std::fs::read_to_string(&path)
            .map_err(|e| crate::errors::to_py(vellum::Error::io(&path, e)))
    })
}

/// Runs the training; returns the report and its JSON text (`training_report.json`).
pub fn run(
    py: Python<'_>,
    snapshot: &Snapshot,
    job: &TrainJob,
) -> PyResult<(vellum_train::TrainReport, String)> {
    let mut config = TrainConfig::new(&job.field);
    for (k, v) in &job.settings {
        config.set(k, v).map_err(train_to_py)?;
    }
    if !job.resume {
        vellum_train::check_output(&job.output, false)
            .map_err(|e| invalid(format!("{e} (pass resume=True to continue that run)")))?;
    }
    let c = snapshot
        .collection(&job.collection)
        .map_err(crate::errors::to_py)?;
    py.detach(|| -> PyResult<(vellum_train::TrainReport, String)> {
        let data = read_data(c, job)?;
        let eval = match (&job.eval_queries, &job.eval_qrels) {
            (Some(q), Some(r)) => {
                let queries =
                    vellum::ingest::text_input::read_queries(q).map_err(crate::errors::to_py)?;
                let qrels = vellum::eval::Qrels::read(r).map_err(crate::errors::to_py)?;
                Some(
                    EvalSet::new(c, &job.field, queries, qrels, job.eval_depth)
                        .map_err(train_to_py)?,
                )
            }
            (None, None) => None,
            _ => return Err(invalid("eval_queries and eval_qrels go together")),
        };
        let mut signals = Signals { stop: false };
        let report = train(
            c,
            &data,
            eval.as_ref(),
            &config,
            &job.output,
            job.resume,
            &mut signals,
        )
        .map_err(train_to_py)?;
        let path = report.output.join("training_report.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| crate::errors::to_py(vellum::Error::io(&path, e)))?;
        Ok((report, text))
    })
}
