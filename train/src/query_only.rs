//! Query-encoder-only training: the stored passage vectors stay as they are (no re-encode) and a
//! small query encoder learns to produce queries for them — the recipe of Cohen et al.,
//! "Extremely efficient online query encoding for dense retrieval" (Findings of NAACL 2024; code
//! `amzn/extremely-efficient-query-encoder`):
//!
//! 1. **Alignment**: the student (the field's query model truncated to its first layers, or any
//!    BERT-family checkpoint with the field's output dimensions) learns to reproduce the current
//!    query encoder's vectors of the training queries and of any unlabelled alignment texts
//!    (`QueryOnlyConfig::align_texts`; loss `1 − cos` or MSE). Heterogeneous dual
//!    encoders trained contrastively from scratch collapse; aligning first avoids it (DAFT,
//!    arXiv 2211.04942).
//! 2. **Contrastive**: Tevatron's loss with the student's query vectors against the *stored*
//!    vectors of each query's positive and hard negatives (constants: only the student learns).
//!
//! Evaluation is full retrieval over the stored vectors (nothing else changes), so held-out
//! MRR@10 of the student and of the current query encoder compare directly, with their query
//! encoding speeds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};
use vellum::encode::{EncoderOptions, ModelDir, Role, TextEncoder};
use vellum::eval::{evaluate, parse_measures, Qrels, Run, RunEntry};
use vellum::ingest::text_input::TextQuery;
use vellum::{Collection, SearchRequest};

use crate::bert::Params;
use crate::checkpoint::{write_atomically, write_model, COPIED_FILES};
use crate::data::TrainQuery;
use crate::error::{Result, TrainError};
use crate::loss::contrastive_loss;
use crate::optim::{AdamW, OptimConfig};
use crate::tower::Tower;
use crate::trainer::{mix, sample_group, EvalReport, Progress, StepReport, TrainConfig};

/// Where the student comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Student {
    /// The field's current query model, keeping its first `n` transformer layers (embeddings
    /// and everything else kept).
    Layers(usize),
    /// Another BERT-family checkpoint (a folder) with the field's output dimensions.
    Model(PathBuf),
}

/// The alignment loss of stage 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlignLoss {
    /// `mean(1 − cos(student, teacher))`, as Cohen et al.
    Cosine,
    /// Mean squared error between the vectors.
    Mse,
}

/// Settings of query-encoder-only training.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOnlyConfig {
    /// The student.
    pub student: Student,
    /// Optimiser steps of alignment (stage 1).
    pub align_steps: usize,
    /// Alignment loss.
    pub align_loss: AlignLoss,
    /// Learning rate of alignment (stage 2 uses `train.lr`).
    pub align_lr: f64,
    /// Unlabelled texts aligned in stage 1 besides the training queries (Cohen et al. align on
    /// a large query log; a few thousand labelled queries are too few for a student to learn
    /// the teacher's function). Best when they read like queries: for example other queries of
    /// the same kind that have no judgement. Held-out evaluation queries do not belong here.
    pub align_texts: Vec<String>,
    /// Keep the word embeddings as the student started (Cohen et al. tie and freeze them): a
    /// third of MiniLM's parameters, and the bulk of each optimiser step, left out.
    pub freeze_embeddings: bool,
    /// Stage 2 settings: field, batch and group size, epochs or max_steps, temperature, lr,
    /// weight decay, warm-up ratio (both stages), clipping (both stages), seed, query_max_len,
    /// prefer_mined. Accumulation, untie, passage_max_len and the checkpoint settings do not
    /// apply: both stages are short (no passage is encoded) and write no checkpoint.
    pub train: TrainConfig,
}

/// What a query-encoder-only run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryOnlyReport {
    /// The student model folder.
    pub output: PathBuf,
    /// Transformer layers of the student and of the current query model.
    pub layers: (usize, usize),
    /// Alignment loss per step.
    pub align_losses: Vec<f64>,
    /// Contrastive loss per step.
    pub losses: Vec<f64>,
    /// Seconds of both stages.
    pub seconds: f64,
    /// Held-out retrieval with the current query encoder (`teacher`) and the student.
    pub teacher: Option<EvalReport>,
    /// Held-out retrieval with the student, before stage 2 (after alignment) and at the end.
    pub student: Vec<EvalReport>,
    /// Held-out queries encoded per second by the current query encoder and by the student
    /// (vellum's native CPU encoders, one batch of all held-out queries).
    pub queries_per_sec: Option<(f64, f64)>,
}

/// Held-out queries for full retrieval over the stored vectors.
#[derive(Debug, Clone)]
pub struct RetrievalEval {
    /// Queries with a judgement.
    pub queries: Vec<TextQuery>,
    /// Judgements.
    pub qrels: Qrels,
}

impl RetrievalEval {
    /// Keeps the queries `qrels` judges.
    pub fn new(queries: Vec<TextQuery>, qrels: Qrels) -> Result<Self> {
        let queries = crate::data::judged_queries(queries, &qrels)?;
        Ok(RetrievalEval { queries, qrels })
    }

    /// MRR@10, nDCG@10 and recall@100 of `vectors` (`queries × dims`) searched in `field`, and
    /// nothing else changes.
    fn run(&self, c: &Collection, field: &str, vectors: &[f32], step: usize) -> Result<EvalReport> {
        let hits = c.search(&SearchRequest::dense_batch(field, vectors, 100))?;
        let mut run = Run::default();
        for (q, hits) in self.queries.iter().zip(hits) {
            run.queries.insert(
                q.id.clone(),
                hits.into_iter()
                    .map(|h| RunEntry {
                        docid: h.id,
                        score: h.score as f64,
                    })
                    .collect(),
            );
        }
        let measures = parse_measures("mrr@10,ndcg@10,recall@100")?;
        let e = evaluate(&self.qrels, &run, &measures);
        Ok(EvalReport {
            step,
            measures: e.names.into_iter().zip(e.mean).collect::<BTreeMap<_, _>>(),
        })
    }
}

/// Removes a folder when dropped (the truncated student's starting point, on success or error).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Refuses an output folder whose replacement would lose something: the database, a model
/// folder the field's encoders use, or any non-empty folder that is not an earlier query-only
/// output (one with its `training_report.json`).
fn check_output(output: &Path, collection: &Collection, field: &str) -> Result<()> {
    if !output.exists() {
        return Ok(());
    }
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let out = canon(output);
    let db = canon(collection.database_dir());
    if db.starts_with(&out) {
        return Err(TrainError::Invalid(format!(
            "output {} holds the database: choose another folder",
            output.display()
        )));
    }
    for role in [Role::Query, Role::Passage] {
        if let Ok(dir) = collection.encoder_dir(field, role) {
            if canon(&dir.dir) == out {
                return Err(TrainError::Invalid(format!(
                    "output {} is the field's {} encoder model: choose another folder",
                    output.display(),
                    role.name()
                )));
            }
        }
    }
    let empty = std::fs::read_dir(output)
        .map_err(|e| TrainError::io(output, e))?
        .next()
        .is_none();
    let earlier = std::fs::read_to_string(output.join("training_report.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("align_losses").is_some());
    if !empty && !earlier {
        return Err(TrainError::Invalid(format!(
            "output {} exists and is not an earlier query-only training output: choose a new folder",
            output.display()
        )));
    }
    Ok(())
}

/// Writes the teacher's model truncated to its first `layers` layers into `dest`.
fn truncated_model(teacher: &ModelDir, layers: usize, dest: &Path) -> Result<usize> {
    let config_path = teacher.dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::model(&config_path, e.to_string()))?;
    let total = config["num_hidden_layers"].as_u64().unwrap_or(0) as usize;
    if layers == 0 || layers > total {
        return Err(TrainError::Invalid(format!(
            "student layers: expected 1 to {total} (the query model's layers), found {layers}"
        )));
    }
    config["num_hidden_layers"] = layers.into();
    let params = Params::load(&teacher.dir.join("model.safetensors"), &Device::Cpu)?;
    write_atomically(dest, |tmp| {
        for name in COPIED_FILES {
            let from = teacher.dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, tmp.join(name)).map_err(|e| TrainError::io(&from, e))?;
            }
        }
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_string_pretty(&config).expect("JSON") + "\n",
        )
        .map_err(|e| TrainError::io(&tmp.join("config.json"), e))?;
        params.save_filtered(&tmp.join("model.safetensors"), |name| {
            layer_of(name).is_none_or(|l| l < layers)
        })
    })?;
    Ok(total)
}

/// The transformer layer a parameter belongs to (`…encoder.layer.<i>.…`).
fn layer_of(name: &str) -> Option<usize> {
    let rest = name.split("encoder.layer.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}

fn layer_count(dir: &ModelDir) -> usize {
    dir.json("config.json")
        .ok()
        .flatten()
        .and_then(|c| c["num_hidden_layers"].as_u64())
        .unwrap_or(0) as usize
}

/// Trains a query encoder for `config.train.field` of `collection` against its stored passage
/// vectors and writes it to `output` (a Hugging Face / sentence-transformers folder that
/// [`vellum::encode::replace_query_encoder`] binds to the field).
pub fn train_query_encoder(
    collection: &Collection,
    data: &[TrainQuery],
    eval: Option<&RetrievalEval>,
    config: &QueryOnlyConfig,
    output: &Path,
    progress: &mut dyn Progress,
) -> Result<QueryOnlyReport> {
    let tc = &config.train;
    let field = tc.field.as_str();
    tc.check()?;
    crate::trainer::check_data(data)?;
    if !(config.align_lr > 0.0 && config.align_lr.is_finite()) {
        return Err(TrainError::Invalid(
            "training setting align_lr: expected a positive number".into(),
        ));
    }
    if let Some(i) = config.align_texts.iter().position(|t| t.trim().is_empty()) {
        return Err(TrainError::Invalid(format!(
            "alignment text {}: empty (expected one text per line)",
            i + 1
        )));
    }
    let teacher_record = collection.encoder_record(field, Role::Query)?.clone();
    let teacher_dir = collection.encoder_dir(field, Role::Query)?;
    check_output(output, collection, field)?;
    let metric = match collection.schema().fields[collection.field_index(field)?].kind {
        vellum::FieldKind::Dense { metric, .. } => metric,
        _ => {
            return Err(TrainError::Invalid(format!(
                "field {field:?} is not a dense field: only dense fields train in this version"
            )))
        }
    };
    let normalize_scores = crate::trainer::score_normalization(metric, &teacher_record, field)?;
    let teacher = collection.load_encoder(field, Role::Query, &EncoderOptions::default())?;
    let dims = teacher_record.dims;
    let device = crate::trainer::candle_device(tc.device)?;
    let started = Instant::now();

    // The student's starting point.
    let mut _init_guard = None;
    let student_dir = match &config.student {
        Student::Layers(n) => {
            let name = output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let init = output.with_file_name(format!(".{name}.student-init"));
            _init_guard = Some(RemoveOnDrop(init.clone()));
            truncated_model(&teacher_dir, *n, &init)?;
            ModelDir::at(init, "student")?
        }
        Student::Model(p) => ModelDir::at(p.clone(), &p.display().to_string())?,
    };
    let options = EncoderOptions {
        device: None,
        batch_size: None,
        ..teacher_record.options()
    };
    let student_record = TextEncoder::from_dir(&student_dir, &options)
        .map_err(|e| TrainError::Invalid(format!("student {}: {e}", student_dir.dir.display())))?
        .record()
        .clone();
    if student_record.dims != dims {
        return Err(TrainError::Invalid(format!(
            "the student {} outputs {} dims; field {field:?} stores {dims}-dim passage vectors",
            student_dir.dir.display(),
            student_record.dims
        )));
    }
    let mut student = Tower::load(&student_dir, &student_record, tc.query_max_len, &device)?;
    student.set_compute(tc.precision.dtype());

    // Teacher vectors of the alignment texts (the training queries, then the unlabelled
    // ones), and the stored vectors of every passage used.
    let texts: Vec<&str> = data
        .iter()
        .map(|q| q.text.as_str())
        .chain(config.align_texts.iter().map(String::as_str))
        .collect();
    let teacher_vectors = teacher.encode(&texts)?;
    let mut stored: HashMap<String, Vec<f32>> = HashMap::new();
    for q in data {
        for p in q.positives.iter().chain(q.negative_pool(tc.prefer_mined)) {
            if stored.contains_key(&p.id) {
                continue;
            }
            let doc = collection.get(&p.id)?.ok_or_else(|| {
                TrainError::Invalid(format!(
                    "training query {:?}: passage {:?} is not in collection {:?} (query-encoder-only training scores against the stored vectors)",
                    q.id,
                    p.id,
                    collection.name()
                ))
            })?;
            stored.insert(p.id.clone(), doc.dense(field)?.to_f32_vec());
        }
    }

    let params: Vec<(String, candle_core::Var)> = student
        .trainable_vars()
        .into_iter()
        .filter(|(n, _)| {
            !(config.freeze_embeddings && n.ends_with("embeddings.word_embeddings.weight"))
        })
        .collect();
    let mut report = QueryOnlyReport {
        output: output.to_path_buf(),
        layers: (layer_count(&student_dir), layer_count(&teacher_dir)),
        align_losses: Vec::new(),
        losses: Vec::new(),
        seconds: 0.0,
        teacher: None,
        student: Vec::new(),
        queries_per_sec: None,
    };
    // Evaluation encodes at the record's own length (training may truncate queries shorter).
    let eval_view = match eval {
        Some(_) => Some(student.share(&student_record, None)?),
        None => None,
    };
    let student_eval = |step: usize| -> Result<Option<EvalReport>> {
        let (Some(e), Some(student)) = (eval, &eval_view) else {
            return Ok(None);
        };
        let mut vectors = Vec::with_capacity(e.queries.len() * dims);
        for chunk in e.queries.chunks(64) {
            let seqs = chunk
                .iter()
                .map(|q| student.tokenize(&q.text))
                .collect::<Result<Vec<_>>>()?;
            let v: Vec<f32> = student.encode(&seqs)?.detach().flatten_all()?.to_vec1()?;
            vectors.extend(v);
        }
        Ok(Some(e.run(collection, field, &vectors, step)?))
    };
    if let Some(e) = eval {
        let texts: Vec<&str> = e.queries.iter().map(|q| q.text.as_str()).collect();
        let v = teacher.encode(&texts)?;
        let r = e.run(collection, field, &v, 0)?;
        progress.eval(&r);
        report.teacher = Some(r);
    }

    // Stage 1: alignment.
    let batches_per_epoch = data.len().div_ceil(tc.batch_size);
    let mut opt = AdamW::new(
        params.clone(),
        OptimConfig {
            lr: config.align_lr,
            warmup_steps: (config.align_steps as f64 * tc.warmup_ratio).ceil() as usize,
            total_steps: config.align_steps,
            max_grad_norm: tc.max_grad_norm,
            ..Default::default()
        },
    );
    // Seeded shuffles of `0..n`, a fresh order every epoch, cut into batches.
    let batch_in = |n: usize, step: usize, stream: u64| -> Vec<usize> {
        let per_epoch = n.div_ceil(tc.batch_size);
        let epoch = step / per_epoch;
        let mut order: Vec<usize> = (0..n).collect();
        fastrand::Rng::with_seed(mix(tc.seed, epoch as u64 + 1, stream)).shuffle(&mut order);
        let b = step % per_epoch;
        order[b * tc.batch_size..((b + 1) * tc.batch_size).min(n)].to_vec()
    };
    let batch_of = |step: usize| batch_in(data.len(), step, u64::MAX);
    let total = config.align_steps + tc.max_steps.unwrap_or(batches_per_epoch * tc.epochs);
    progress.start(total, 0);
    let stage_start = Instant::now();
    for step in 0..config.align_steps {
        let batch = if config.align_texts.is_empty() {
            batch_of(step)
        } else {
            batch_in(texts.len(), step, u64::MAX - 1)
        };
        let seqs = batch
            .iter()
            .map(|&i| student.tokenize(texts[i]))
            .collect::<Result<Vec<_>>>()?;
        let s = student.encode(&seqs)?;
        let mut t = Vec::with_capacity(batch.len() * dims);
        for &i in &batch {
            t.extend_from_slice(&teacher_vectors[i * dims..(i + 1) * dims]);
        }
        let t = Tensor::from_vec(t, (batch.len(), dims), &device)?;
        let loss = match config.align_loss {
            AlignLoss::Cosine => {
                let cos = crate::tower::normalize(&s)?
                    .mul(&crate::tower::normalize(&t)?)?
                    .sum(D::Minus1)?;
                (1.0 - cos.mean_all()?)?
            }
            AlignLoss::Mse => (s - t)?.sqr()?.mean_all()?,
        };
        let value = loss.to_scalar::<f32>()? as f64;
        opt.accumulate(&loss.backward()?)?;
        let info = opt.step()?;
        report.align_losses.push(value);
        progress.step(&StepReport {
            step: step + 1,
            total,
            epoch: 0,
            loss: value,
            lr: info.lr,
            grad_norm: info.grad_norm,
            steps_per_sec: (step + 1) as f64 / stage_start.elapsed().as_secs_f64().max(1e-9),
        });
        if progress.interrupted() {
            return Err(TrainError::Interrupted { checkpoint: None });
        }
    }
    if let Some(r) = student_eval(config.align_steps)? {
        progress.eval(&r);
        report.student.push(r);
    }

    // Stage 2: contrastive against the stored passage vectors.
    let steps = total - config.align_steps;
    let temperature = tc
        .temperature
        .unwrap_or(if teacher_record.normalize || normalize_scores {
            0.02
        } else {
            1.0
        });
    let mut opt = AdamW::new(
        params,
        OptimConfig {
            lr: tc.lr,
            weight_decay: tc.weight_decay,
            warmup_steps: (steps as f64 * tc.warmup_ratio).ceil() as usize,
            total_steps: steps,
            max_grad_norm: tc.max_grad_norm,
            ..Default::default()
        },
    );
    for step in 0..steps {
        let batch = batch_of(step);
        let epoch = step / batches_per_epoch;
        let mut seqs = Vec::with_capacity(batch.len());
        let mut passages = Vec::with_capacity(batch.len() * tc.group_size * dims);
        for &qi in &batch {
            seqs.push(student.tokenize(&data[qi].text)?);
            for p in sample_group(&data[qi], qi, epoch, tc)? {
                passages.extend_from_slice(&stored[&p.id]);
            }
        }
        let p = Tensor::from_vec(passages, (batch.len() * tc.group_size, dims), &device)?;
        let (q, p) = crate::trainer::scored(student.encode(&seqs)?, p, normalize_scores)?;
        let loss = contrastive_loss(&q, &p, tc.group_size, temperature)?;
        let value = loss.to_scalar::<f32>()? as f64;
        opt.accumulate(&loss.backward()?)?;
        let info = opt.step()?;
        report.losses.push(value);
        progress.step(&StepReport {
            step: config.align_steps + step + 1,
            total,
            epoch,
            loss: value,
            lr: info.lr,
            grad_norm: info.grad_norm,
            steps_per_sec: (config.align_steps + step + 1) as f64
                / stage_start.elapsed().as_secs_f64().max(1e-9),
        });
        if progress.interrupted() {
            return Err(TrainError::Interrupted { checkpoint: None });
        }
    }
    let end = config.align_steps + report.losses.len();
    if steps > 0 {
        if let Some(r) = student_eval(end)? {
            progress.eval(&r);
            report.student.push(r);
        }
    }
    write_atomically(output, |tmp| {
        write_model(&student, tmp)?;
        Ok(())
    })?;

    // Query encoding speed, both with vellum's native encoders.
    if let Some(e) = eval {
        let texts: Vec<&str> = e.queries.iter().map(|q| q.text.as_str()).collect();
        let trained =
            TextEncoder::from_dir(&ModelDir::at(output.to_path_buf(), "student")?, &options)?;
        let time = |f: &dyn Fn() -> vellum::Result<Vec<f32>>| -> Result<f64> {
            f()?; // warm
            let t = Instant::now();
            f()?;
            Ok(texts.len() as f64 / t.elapsed().as_secs_f64().max(1e-9))
        };
        let teacher_qps = time(&|| teacher.encode(&texts))?;
        let student_qps = time(&|| trained.encode(&texts))?;
        report.queries_per_sec = Some((teacher_qps, student_qps));
    }
    report.seconds = started.elapsed().as_secs_f64();
    let path = output.join("training_report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).expect("serializable") + "\n",
    )
    .map_err(|e| TrainError::io(&path, e))?;
    Ok(report)
}
