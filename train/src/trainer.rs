//! The training loop of `vellum train`: a dense field's dual encoder fine-tuned with Tevatron's
//! contrastive loss (in-batch and hard negatives), AdamW with Hugging Face's conventions,
//! gradient accumulation, seeded sampling, held-out evaluation, and checkpoints from which a
//! killed run resumes where its last checkpoint left it.
//!
//! Output folder layout (Hugging Face `Trainer`'s, Tevatron's for untied encoders):
//! - `checkpoint-<step>/`: the model (tied: at its root; untied: `query_model/` +
//!   `passage_model/`), `optimizer.safetensors` (AdamW's moments and step), `trainer_state.json`
//!   (step, settings, loss log, evaluations). Each written atomically; the newest
//!   `save_total_limit` are kept.
//! - the final model in the same layout at the folder's root, then `training_report.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vellum::encode::Role;
use vellum::eval::{evaluate, parse_measures, Qrels, Run, RunEntry};
use vellum::ingest::text_input::TextQuery;
use vellum::{Collection, SearchRequest};

use crate::checkpoint::{write_atomically, write_model};
use crate::data::{Passage, TrainQuery};
use crate::error::{Result, TrainError};
use crate::loss::contrastive_loss;
use crate::optim::{AdamW, OptimConfig};
use crate::tower::Tower;

/// candle's device for `device`: the CPU, or a CUDA GPU in a build with the `cuda-train` feature.
pub fn candle_device(device: vellum::search::Device) -> Result<Device> {
    match device {
        vellum::search::Device::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda-train")]
        vellum::search::Device::Cuda(n) => Device::new_cuda(n).map_err(|e| {
            TrainError::Vellum(vellum::Error::Device(format!("cuda:{n}: {e}")))
        }),
        #[cfg(not(feature = "cuda-train"))]
        vellum::search::Device::Cuda(n) => Err(TrainError::Invalid(format!(
            "training on cuda:{n} needs vellum built with vellum-train's `cuda-train` feature (candle's CUDA kernels, compiled by nvcc): benches/gpu/build-train.sh; this build trains on the CPU (device=cpu)"
        ))),
    }
}

/// What to train and how. Defaults follow Tevatron's (group 8, query length 32 in its recipes
/// comes from the field's record here) and Hugging Face's (AdamW, clipping at 1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The dense field whose encoders train.
    pub field: String,
    /// Passes over the training queries.
    pub epochs: usize,
    /// Optimiser steps in total, overriding `epochs` (the data cycles), as Hugging Face's.
    pub max_steps: Option<usize>,
    /// Queries per micro-batch (each brings `group_size` passages).
    pub batch_size: usize,
    /// Passages per query: its positive, then `group_size − 1` hard negatives.
    pub group_size: usize,
    /// Micro-batches per optimiser step (in-batch negatives stay within a micro-batch).
    pub accumulation: usize,
    /// Softmax temperature τ; `None`: 0.02 when the vectors are scored normalised (an encoder
    /// that L2-normalises, or a cosine field; Tevatron's recipes), else 1.0 (Tevatron's default).
    pub temperature: Option<f64>,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (not on biases and layer norms).
    pub weight_decay: f64,
    /// Fraction of the optimiser steps spent warming up.
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping (0 = none).
    pub max_grad_norm: f64,
    /// Seed of the query order and of positive / negative sampling.
    pub seed: u64,
    /// Query tokens during training (`None`: the field's query encoder's `max_length`).
    pub query_max_len: Option<usize>,
    /// Passage tokens during training (`None`: the passage encoder's `max_length`).
    pub passage_max_len: Option<usize>,
    /// Train separate query and passage models even when the field uses one model for both.
    pub untie: bool,
    /// Sample hard negatives from the mined ones even where the file gives negatives.
    pub prefer_mined: bool,
    /// Write a checkpoint every this many optimiser steps (`None`: at the end of each epoch).
    pub save_every: Option<usize>,
    /// Checkpoints kept (the newest).
    pub save_total_limit: usize,
    /// Evaluate on the held-out set every this many steps (and before the first, and at the end).
    pub eval_every: Option<usize>,
    /// Where the towers train: the CPU, or `cuda:N` (the `cuda` feature of vellum-train).
    pub device: vellum::search::Device,
    /// The type of the products: f32, or bf16 for mixed precision (f32 master weights,
    /// optimiser state, layer norms, softmax and loss; products in bf16, as PyTorch's autocast).
    pub precision: Precision,
}

/// Training arithmetic ([`TrainConfig::precision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision: linear layers and attention products in bf16 (tensor cores on a GPU),
    /// the rest in f32. Stable where f16 is not: bf16 has f32's exponent range, so no loss
    /// scaling is needed.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(TrainError::Invalid(format!(
                "training setting precision: expected f32 or bf16, found {other:?}"
            ))),
        }
    }
}

impl Precision {
    /// candle's type for the products.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }
}

impl TrainConfig {
    /// Defaults for `field`.
    pub fn new(field: impl Into<String>) -> Self {
        TrainConfig {
            field: field.into(),
            epochs: 1,
            max_steps: None,
            batch_size: 8,
            group_size: 8,
            accumulation: 1,
            temperature: None,
            lr: 2e-5,
            weight_decay: 0.0,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            seed: 42,
            query_max_len: None,
            passage_max_len: None,
            untie: false,
            prefer_mined: false,
            save_every: None,
            save_total_limit: 2,
            eval_every: None,
            device: vellum::search::Device::Cpu,
            precision: Precision::F32,
        }
    }

    /// The names [`TrainConfig::set`] takes.
    pub const KEYS: &'static str = "epochs, max_steps, batch_size, group_size, accumulation, temperature, lr, weight_decay, warmup_ratio, max_grad_norm, seed, query_max_len, passage_max_len, untie, prefer_mined, save_every, save_total_limit, eval_every, device, precision";

    /// Sets one setting by its field name from text (`"3"`, `"2e-5"`, `"true"`; `"none"` unsets
    /// an optional one), as bindings pass keyword arguments. Values are checked when training
    /// starts.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str, what: &str) -> Result<T> {
            value.trim().parse().map_err(|_| {
                TrainError::Invalid(format!(
                    "training setting {key}: expected {what}, found {value:?}"
                ))
            })
        }
        fn optional<T: std::str::FromStr>(key: &str, value: &str, what: &str) -> Result<Option<T>> {
            match value.trim() {
                "none" | "None" | "" => Ok(None),
                v => parse(key, v, what).map(Some),
            }
        }
        let int = "a whole number";
        let num = "a number";
        let flag = "true or false";
        let to_bool = |v: &str| -> Result<bool> {
            match v.trim() {
                "true" | "True" | "1" => Ok(true),
                "false" | "False" | "0" => Ok(false),
                _ => parse::<bool>(key, v, flag),
            }
        };
        match key {
            "epochs" => self.epochs = parse(key, value, int)?,
            "max_steps" => self.max_steps = optional(key, value, int)?,
            "batch_size" => self.batch_size = parse(key, value, int)?,
            "group_size" => self.group_size = parse(key, value, int)?,
            "accumulation" => self.accumulation = parse(key, value, int)?,
            "temperature" => self.temperature = optional(key, value, num)?,
            "lr" => self.lr = parse(key, value, num)?,
            "weight_decay" => self.weight_decay = parse(key, value, num)?,
            "warmup_ratio" => self.warmup_ratio = parse(key, value, num)?,
            "max_grad_norm" => self.max_grad_norm = parse(key, value, num)?,
            "seed" => self.seed = parse(key, value, int)?,
            "query_max_len" => self.query_max_len = optional(key, value, int)?,
            "passage_max_len" => self.passage_max_len = optional(key, value, int)?,
            "untie" => self.untie = to_bool(value)?,
            "prefer_mined" => self.prefer_mined = to_bool(value)?,
            "save_every" => self.save_every = optional(key, value, int)?,
            "save_total_limit" => self.save_total_limit = parse(key, value, int)?,
            "eval_every" => self.eval_every = optional(key, value, int)?,
            "device" => {
                self.device = value
                    .parse()
                    .map_err(|e: vellum::Error| TrainError::Invalid(e.to_string()))?
            }
            "precision" => self.precision = value.parse()?,
            _ => {
                return Err(TrainError::Invalid(format!(
                    "unknown training setting {key:?} (settings: {})",
                    Self::KEYS
                )))
            }
        }
        Ok(())
    }

    pub(crate) fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(TrainError::Invalid(format!("training setting {what}")));
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("epochs: expected at least 1");
        }
        if self.batch_size == 0 || self.group_size == 0 || self.accumulation == 0 {
            return bad("batch_size, group_size and accumulation: expected at least 1");
        }
        if self
            .temperature
            .is_some_and(|t| !(t > 0.0 && t.is_finite()))
        {
            return bad("temperature: expected a positive number");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr: expected a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio: expected a number in [0, 1)");
        }
        if self.save_total_limit == 0 {
            return bad("save_total_limit: expected at least 1");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay: expected a number ≥ 0");
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad("max_grad_norm: expected a number ≥ 0 (0: no clipping)");
        }
        if [self.query_max_len, self.passage_max_len]
            .iter()
            .any(|l| l.is_some_and(|l| l < 2))
        {
            return bad("query_max_len / passage_max_len: expected at least 2 tokens");
        }
        Ok(())
    }
}

/// One optimiser step, as reported to [`Progress`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    /// Steps done (1-based).
    pub step: usize,
    /// Total steps of the run.
    pub total: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean loss of the step's micro-batches.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Steps per second since this process started training.
    pub steps_per_sec: f64,
}

/// A held-out evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    /// Steps done when it ran.
    pub step: usize,
    /// Measure → mean over the held-out queries.
    pub measures: BTreeMap<String, f64>,
}

/// Where training reports (the CLI draws a progress bar).
pub trait Progress {
    /// Training starts: `total` steps, `done` already done (a resumed run).
    fn start(&mut self, total: usize, done: usize) {
        let _ = (total, done);
    }
    /// An optimiser step finished.
    fn step(&mut self, report: &StepReport) {
        let _ = report;
    }
    /// A held-out evaluation finished.
    fn eval(&mut self, report: &EvalReport) {
        let _ = report;
    }
    /// A checkpoint was written.
    fn checkpoint(&mut self, path: &Path) {
        let _ = path;
    }
    /// Polled after each step: true stops training — full training after writing a checkpoint
    /// (resume from it), query-only training without writing anything.
    fn interrupted(&self) -> bool {
        false
    }
}

/// A progress sink that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl Progress for Silent {}

/// Held-out queries evaluated by re-ranking: each query's top `depth` documents, retrieved once
/// from the stored vectors before training, are re-scored by the current encoders, and MRR@10,
/// nDCG@10 and recall@depth computed against the qrels. (A full retrieval evaluation needs the
/// corpus re-encoded; re-ranking a fixed candidate pool measures the encoders alone, cheaply.)
#[derive(Debug, Clone)]
pub struct EvalSet {
    queries: Vec<TextQuery>,
    qrels: Qrels,
    candidates: Vec<Vec<Passage>>,
    depth: usize,
}

impl EvalSet {
    /// Retrieves the candidates of `queries` from `field` of `collection`.
    pub fn new(
        collection: &Collection,
        field: &str,
        queries: Vec<TextQuery>,
        qrels: Qrels,
        depth: usize,
    ) -> Result<Self> {
        let queries = crate::data::judged_queries(queries, &qrels)?;
        let mut candidates = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(256) {
            let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
            for hits in collection.search_texts(&texts, SearchRequest::text(field, depth))? {
                let ps = hits
                    .iter()
                    .map(|h| crate::data::passage_of(&collection.doc(h.address)?))
                    .collect::<Result<Vec<_>>>()?;
                candidates.push(ps);
            }
        }
        Ok(EvalSet {
            queries,
            qrels,
            candidates,
            depth,
        })
    }

    /// Number of evaluated queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Scores with `query` and `passage` (views at the records' lengths); `normalize` as the
    /// field's metric asks.
    fn run(
        &self,
        query: &Tower,
        passage: &Tower,
        normalize: bool,
        step: usize,
    ) -> Result<EvalReport> {
        let mut run = Run::default();
        for (q, cands) in self.queries.iter().zip(&self.candidates) {
            let qv = query.encode(&[query.tokenize(&q.text)?])?.detach();
            let mut entries = Vec::with_capacity(cands.len());
            for chunk in cands.chunks(32) {
                let seqs = chunk
                    .iter()
                    .map(|p| passage.tokenize(&p.text))
                    .collect::<Result<Vec<_>>>()?;
                let pv = passage.encode(&seqs)?.detach();
                let (qv, pv) = scored(qv.clone(), pv, normalize)?;
                let scores: Vec<f32> = qv.matmul(&pv.t()?)?.squeeze(0)?.to_vec1()?;
                for (p, s) in chunk.iter().zip(scores) {
                    entries.push(RunEntry {
                        docid: p.id.clone(),
                        score: s as f64,
                    });
                }
            }
            run.queries.insert(q.id.clone(), entries);
        }
        let names = format!("mrr@10,ndcg@10,recall@{}", self.depth);
        let measures = parse_measures(&names)?;
        let e = evaluate(&self.qrels, &run, &measures);
        Ok(EvalReport {
            step,
            measures: e.names.into_iter().zip(e.mean).collect(),
        })
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainReport {
    /// Optimiser steps in total.
    pub steps: usize,
    /// Steps this process ran (fewer when it resumed).
    pub steps_run: usize,
    /// Seconds this process trained.
    pub seconds: f64,
    /// Whether query and passage models were trained apart.
    pub untied: bool,
    /// Temperature used.
    pub temperature: f64,
    /// Loss per step.
    pub losses: Vec<f64>,
    /// Held-out evaluations (before training, every `eval_every` steps, at the end).
    pub evals: Vec<EvalReport>,
    /// Where the trained model is: the output folder (tied) or its `query_model/` and
    /// `passage_model/`.
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    total_steps: usize,
    settings: Value,
    losses: Vec<f64>,
    evals: Vec<EvalReport>,
}

/// The encoders being trained.
struct Towers {
    query: Tower,
    passage: Tower,
    tied: bool,
    /// L2-normalise both sides before scoring: a cosine field whose encoders do not normalise.
    normalize_scores: bool,
}

impl Towers {
    fn load(collection: &Collection, config: &TrainConfig, device: &Device) -> Result<Self> {
        let field = &config.field;
        let passage_record = collection.encoder_record(field, Role::Passage)?.clone();
        let query_record = collection.encoder_record(field, Role::Query)?.clone();
        let index = collection.field_index(field)?;
        let (dim, metric) = match collection.schema().fields[index].kind {
            vellum::FieldKind::Dense { dim, metric, .. } => (dim, metric),
            _ => {
                return Err(TrainError::Invalid(format!(
                    "field {field:?} of collection {:?} is not a dense field: only dense fields train in this version",
                    collection.name()
                )))
            }
        };
        for r in [&passage_record, &query_record] {
            if r.dims != dim as usize {
                return Err(TrainError::Invalid(format!(
                    "{}: outputs {} dims, field {field:?} stores {dim}",
                    r.source, r.dims
                )));
            }
        }
        let passage_dir = collection.encoder_dir(field, Role::Passage)?;
        let passage = Tower::load(
            &passage_dir,
            &passage_record,
            config.passage_max_len,
            device,
        )?;
        let same_model = passage_record.fingerprint == query_record.fingerprint;
        let tied = same_model && !config.untie;
        let query = if tied {
            passage.share(&query_record, config.query_max_len)?
        } else {
            let dir = collection.encoder_dir(field, Role::Query)?;
            Tower::load(&dir, &query_record, config.query_max_len, device)?
        };
        let normalize_scores = score_normalization(metric, &passage_record, field)?;
        let (mut query, mut passage) = (query, passage);
        query.set_compute(config.precision.dtype());
        passage.set_compute(config.precision.dtype());
        Ok(Towers {
            query,
            passage,
            tied,
            normalize_scores,
        })
    }

    fn parameters(&self) -> Vec<(String, candle_core::Var)> {
        let mut out = Vec::new();
        let sides: &[(&Tower, &str)] = if self.tied {
            &[(&self.passage, "")]
        } else {
            &[
                (&self.query, "query_model/"),
                (&self.passage, "passage_model/"),
            ]
        };
        for (t, prefix) in sides {
            for (name, var) in t.trainable_vars() {
                out.push((format!("{prefix}{name}"), var));
            }
        }
        out
    }

    fn save(&self, dir: &Path) -> Result<()> {
        if self.tied {
            write_model(&self.passage, dir)
        } else {
            write_model(&self.query, &dir.join("query_model"))?;
            write_model(&self.passage, &dir.join("passage_model"))
        }
    }

    /// Views of both sides at the records' own lengths (training may truncate shorter), sharing
    /// the parameters: what evaluation encodes with.
    fn eval_views(&self) -> Result<(Tower, Tower)> {
        Ok((
            self.query.share(&self.query.record, None)?,
            self.passage.share(&self.passage.record, None)?,
        ))
    }

    fn restore(&self, dir: &Path) -> Result<()> {
        if self.tied {
            self.passage.params.restore(&dir.join("model.safetensors"))
        } else {
            self.query
                .params
                .restore(&dir.join("query_model/model.safetensors"))?;
            self.passage
                .params
                .restore(&dir.join("passage_model/model.safetensors"))
        }
    }
}

/// Refuses an empty training set and queries without a positive (built by a caller).
pub(crate) fn check_data(data: &[TrainQuery]) -> Result<()> {
    if data.is_empty() {
        return Err(TrainError::Invalid("no training query".into()));
    }
    if let Some(q) = data.iter().find(|q| q.positives.is_empty()) {
        return Err(TrainError::Invalid(format!(
            "training query {:?} has no positive passage",
            q.id
        )));
    }
    Ok(())
}

pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64's finaliser over the three: a stable, well-spread seed per (epoch, query).
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The group of query `qi` in `epoch`: one positive, then `group − 1` negatives sampled from its
/// pool (without replacement when the pool is large enough, as Tevatron).
pub(crate) fn sample_group<'a>(
    q: &'a TrainQuery,
    qi: usize,
    epoch: usize,
    config: &TrainConfig,
) -> Result<Vec<&'a Passage>> {
    let mut rng = fastrand::Rng::with_seed(mix(config.seed, epoch as u64 + 1, qi as u64));
    let mut group = Vec::with_capacity(config.group_size);
    group.push(&q.positives[rng.usize(..q.positives.len())]);
    let need = config.group_size - 1;
    if need == 0 {
        return Ok(group);
    }
    let pool = q.negative_pool(config.prefer_mined);
    if pool.is_empty() {
        return Err(TrainError::Invalid(format!(
            "training query {:?} has no hard negative: give negatives in the training file, mine them from the collection (mine depth > 0), or train with group size 1 (in-batch negatives only)",
            q.id
        )));
    }
    if pool.len() >= need {
        let mut idx: Vec<usize> = (0..pool.len()).collect();
        rng.shuffle(&mut idx);
        group.extend(idx[..need].iter().map(|&i| &pool[i]));
    } else {
        group.extend((0..need).map(|_| &pool[rng.usize(..pool.len())]));
    }
    Ok(group)
}

/// Whether scoring must L2-normalise vectors the encoders leave unnormalised: training scores
/// as the field's search does — inner product as is, cosine on normalised vectors. An L2 field
/// is refused (Tevatron's loss scores by inner product).
pub(crate) fn score_normalization(
    metric: vellum::Metric,
    record: &vellum::encode::EncoderRecord,
    field: &str,
) -> Result<bool> {
    match metric {
        vellum::Metric::Cosine => Ok(!record.normalize),
        vellum::Metric::L2 => Err(TrainError::Invalid(format!(
            "field {field:?} ranks by L2 distance; training scores by inner product (Tevatron's loss): train ip or cosine fields"
        ))),
        _ => Ok(false),
    }
}

/// `(queries, passages)` scored as the field ranks (see [`score_normalization`]).
pub(crate) fn scored(q: Tensor, p: Tensor, normalize: bool) -> Result<(Tensor, Tensor)> {
    if normalize {
        Ok((crate::tower::normalize(&q)?, crate::tower::normalize(&p)?))
    } else {
        Ok((q, p))
    }
}

fn checkpoints(output: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    if !output.is_dir() {
        return Ok(out);
    }
    for e in std::fs::read_dir(output).map_err(|e| TrainError::io(output, e))? {
        let path = e.map_err(|e| TrainError::io(output, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(step) = step {
            if path.join("trainer_state.json").is_file() {
                out.push((step, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Trains `config.field`'s encoders of `collection` on `data` and writes the result to `output`.
/// With `resume`, continues from the newest checkpoint in `output` (the same settings and data
/// are required); without it, an `output` that holds checkpoints is refused.
pub fn train(
    collection: &Collection,
    data: &[TrainQuery],
    eval: Option<&EvalSet>,
    config: &TrainConfig,
    output: &Path,
    resume: bool,
    progress: &mut dyn Progress,
) -> Result<TrainReport> {
    config.check()?;
    check_data(data)?;
    let device = candle_device(config.device)?;
    let towers = Towers::load(collection, config, &device)?;
    let temperature = config
        .temperature
        .unwrap_or(if towers.passage.record.normalize {
            0.02
        } else {
            1.0
        });
    let micro_per_epoch = data.len().div_ceil(config.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(config.accumulation);
    // As Hugging Face: max_steps, when given, overrides the epochs (the data cycles).
    let total = config.max_steps.unwrap_or(steps_per_epoch * config.epochs);
    let warmup = (total as f64 * config.warmup_ratio).ceil() as usize;
    let mut opt = AdamW::new(
        towers.parameters(),
        OptimConfig {
            lr: config.lr,
            weight_decay: config.weight_decay,
            max_grad_norm: config.max_grad_norm,
            warmup_steps: warmup,
            total_steps: total,
            ..Default::default()
        },
    );
    let settings = settings_json(config, data, temperature, towers.tied, total);
    let mut state = TrainerState {
        step: 0,
        total_steps: total,
        settings: settings.clone(),
        losses: Vec::new(),
        evals: Vec::new(),
    };
    check_output(output, resume)?;
    let existing = checkpoints(output)?;
    if let Some((_, last)) = existing.last() {
        let text = std::fs::read_to_string(last.join("trainer_state.json"))
            .map_err(|e| TrainError::io(&last.join("trainer_state.json"), e))?;
        let saved: TrainerState = serde_json::from_str(&text)
            .map_err(|e| TrainError::model(&last.join("trainer_state.json"), e.to_string()))?;
        if saved.settings != settings {
            return Err(TrainError::Invalid(format!(
                "cannot resume {}: it was trained with other settings or data ({}); train into another folder",
                last.display(),
                settings_difference(&saved.settings, &settings)
            )));
        }
        towers.restore(last)?;
        opt.load(&last.join("optimizer.safetensors"))?;
        state = saved;
    }
    progress.start(total, state.step);
    let views = match eval {
        Some(_) => Some(towers.eval_views()?),
        None => None,
    };
    let evaluate_now = |step: usize| -> Result<Option<EvalReport>> {
        match (eval, &views) {
            (Some(e), Some((q, p))) => Ok(Some(e.run(q, p, towers.normalize_scores, step)?)),
            _ => Ok(None),
        }
    };
    // Before training (not on resume: the weights are trained already).
    if state.step == 0 && state.evals.is_empty() {
        if let Some(r) = evaluate_now(0)? {
            progress.eval(&r);
            state.evals.push(r);
        }
    }
    let started = Instant::now();
    let first_step = state.step;
    let save_every = config.save_every.unwrap_or(steps_per_epoch).max(1);
    while state.step < total {
        let epoch = state.step / steps_per_epoch;
        let in_epoch = state.step % steps_per_epoch;
        let mut order: Vec<usize> = (0..data.len()).collect();
        fastrand::Rng::with_seed(mix(config.seed, epoch as u64 + 1, u64::MAX)).shuffle(&mut order);
        let first_micro = in_epoch * config.accumulation;
        let micro_end = (first_micro + config.accumulation).min(micro_per_epoch);
        let micro_count = micro_end - first_micro;
        let mut loss_sum = 0.0;
        for m in first_micro..micro_end {
            let batch =
                &order[m * config.batch_size..((m + 1) * config.batch_size).min(data.len())];
            let mut qseqs = Vec::with_capacity(batch.len());
            let mut pseqs = Vec::with_capacity(batch.len() * config.group_size);
            for &qi in batch {
                let q = &data[qi];
                qseqs.push(towers.query.tokenize(&q.text)?);
                for p in sample_group(q, qi, epoch, config)? {
                    pseqs.push(towers.passage.tokenize(&p.text)?);
                }
            }
            let (qv, pv) = scored(
                towers.query.encode(&qseqs)?,
                towers.passage.encode(&pseqs)?,
                towers.normalize_scores,
            )?;
            let loss = contrastive_loss(&qv, &pv, config.group_size, temperature)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let scaled = (loss / micro_count as f64)?;
            opt.accumulate(&scaled.backward()?)?;
        }
        let info = opt.step()?;
        state.step += 1;
        let loss = loss_sum / micro_count as f64;
        state.losses.push(loss);
        let elapsed = started.elapsed().as_secs_f64();
        progress.step(&StepReport {
            step: state.step,
            total,
            epoch,
            loss,
            lr: info.lr,
            grad_norm: info.grad_norm,
            steps_per_sec: (state.step - first_step) as f64 / elapsed.max(1e-9),
        });
        if let Some(every) = config.eval_every {
            if state.step.is_multiple_of(every) && state.step < total {
                if let Some(r) = evaluate_now(state.step)? {
                    progress.eval(&r);
                    state.evals.push(r);
                }
            }
        }
        let stop = progress.interrupted();
        if state.step.is_multiple_of(save_every) || state.step == total || stop {
            let path = save_checkpoint(output, &towers, &opt, &state, config.save_total_limit)?;
            progress.checkpoint(&path);
            if stop && state.step < total {
                return Err(TrainError::Interrupted {
                    checkpoint: Some(path),
                });
            }
        }
    }
    if state.evals.last().is_none_or(|r| r.step != state.step) {
        if let Some(r) = evaluate_now(state.step)? {
            progress.eval(&r);
            state.evals.push(r);
        }
    }
    // The final model: written to a temporary folder, then each file renamed into place;
    // training_report.json, written last, marks a finished run.
    let staging = output.join(".final.tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    }
    towers.save(&staging)?;
    crate::checkpoint::move_files_into(&staging, output)?;
    let report = TrainReport {
        steps: state.step,
        steps_run: state.step - first_step,
        seconds: started.elapsed().as_secs_f64(),
        untied: !towers.tied,
        temperature,
        losses: state.losses,
        evals: state.evals,
        output: output.to_path_buf(),
    };
    let path = output.join("training_report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"settings": settings, "report": report}))
            .expect("serializable")
            + "\n",
    )
    .map_err(|e| TrainError::io(&path, e))?;
    Ok(report)
}

/// Refuses an `output` folder that holds checkpoints unless `resume` (training would otherwise
/// mix two runs' checkpoints). Cheap: callers check before mining negatives.
pub fn check_output(output: &Path, resume: bool) -> Result<()> {
    if resume {
        return Ok(());
    }
    if let Some((_, last)) = checkpoints(output)?.last() {
        return Err(TrainError::Invalid(format!(
            "{} already holds checkpoints (newest {}): resume from it, or train into another folder",
            output.display(),
            last.display()
        )));
    }
    Ok(())
}

fn save_checkpoint(
    output: &Path,
    towers: &Towers,
    opt: &AdamW,
    state: &TrainerState,
    keep: usize,
) -> Result<PathBuf> {
    let dest = output.join(format!("checkpoint-{}", state.step));
    write_atomically(&dest, |tmp| {
        towers.save(tmp)?;
        opt.save(&tmp.join("optimizer.safetensors"))?;
        let path = tmp.join("trainer_state.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(state).expect("serializable") + "\n",
        )
        .map_err(|e| TrainError::io(&path, e))
    })?;
    let all = checkpoints(output)?;
    if all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
        }
    }
    Ok(dest)
}

/// Everything a resumed run must share with the run that wrote the checkpoint.
fn settings_json(
    config: &TrainConfig,
    data: &[TrainQuery],
    temperature: f64,
    tied: bool,
    total: usize,
) -> Value {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for q in data {
        for s in [&q.id, &q.text] {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        for (tag, list) in [(1u8, &q.positives), (2, &q.negatives), (3, &q.mined)] {
            h.update(&[tag]);
            h.update(&(list.len() as u64).to_le_bytes());
            for p in list {
                for s in [&p.id, &p.text] {
                    h.update(&(s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
    }
    json!({
        "field": config.field,
        "queries": data.len(),
        "data_xxh3": format!("{:032x}", h.digest128()),
        "epochs": config.epochs,
        "total_steps": total,
        "batch_size": config.batch_size,
        "group_size": config.group_size,
        "accumulation": config.accumulation,
        "temperature": temperature,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "warmup_ratio": config.warmup_ratio,
        "max_grad_norm": config.max_grad_norm,
        "seed": config.seed,
        "query_max_len": config.query_max_len,
        "passage_max_len": config.passage_max_len,
        "tied": tied,
        "prefer_mined": config.prefer_mined,
    })
}

fn settings_difference(a: &Value, b: &Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "unreadable settings".into();
    };
    let diffs: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {} then, {v} now", a.get(k).unwrap_or(&Value::Null)))
        .collect();
    diffs.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_by_name_and_name_the_bad_ones() {
        let mut c = TrainConfig::new("emb");
        for (k, v) in [
            ("epochs", "3"),
            ("max_steps", "none"),
            ("lr", "3e-5"),
            ("temperature", "0.05"),
            ("untie", "True"),
            ("save_every", "100"),
        ] {
            c.set(k, v).unwrap();
        }
        assert_eq!(
            (
                c.epochs,
                c.max_steps,
                c.lr,
                c.temperature,
                c.untie,
                c.save_every
            ),
            (3, None, 3e-5, Some(0.05), true, Some(100))
        );
        let e = c.set("lr", "fast").unwrap_err().to_string();
        assert!(e.contains("lr") && e.contains("\"fast\""), "{e}");
        let e = c.set("learning_rate", "1").unwrap_err().to_string();
        assert!(
            e.contains("learning_rate") && e.contains("group_size"),
            "{e}"
        );
    }
}
