//! `vellum train`: fine-tune a dense field's encoders on the collection's own data.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use vellum::Database;
use vellum_train::{
    check_output, mine_negatives, read_queries_qrels, read_tevatron, train, EvalReport, EvalSet,
    MiningConfig, StepReport, TrainConfig,
};

use super::progress::{counter, Progress};
use crate::args::TrainArgs;

struct Bar {
    bar: Option<Progress>,
    interrupt: Arc<AtomicBool>,
}

fn measures(r: &EvalReport) -> String {
    r.measures
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl vellum_train::Progress for Bar {
    fn start(&mut self, total: usize, done: usize) {
        let bar = counter(total as u64, "steps");
        bar.set_position(done as u64);
        if done > 0 {
            eprintln!("resuming at step {done} of {total}");
        }
        self.bar = Some(bar);
    }
    fn step(&mut self, r: &StepReport) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "epoch {} loss {:.4} lr {:.2e} |g| {:.2}",
                r.epoch + 1,
                r.loss,
                r.lr,
                r.grad_norm
            ));
            b.set_position(r.step as u64);
        }
    }
    fn eval(&mut self, r: &EvalReport) {
        eprintln!("held-out at step {}: {}", r.step, measures(r));
    }
    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }
}

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A training step allocates and frees the same large tensors every time; mimalloc by default
/// returns freed memory to the OS after a short delay (v3: 1 s), and the next step faults it back in zeroed (30 %
/// of a step under `perf`, benches/RESULTS.md). Training keeps it in the process instead.
pub(crate) fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an integer option (−1: never purge); mimalloc reads it at
    // its next purge. No memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Runs `vellum train`.
pub fn run(a: TrainArgs, out: &mut dyn Write) -> Result<()> {
    keep_freed_memory();
    if a.embed_model && !a.bind && !a.reencode {
        bail!("--embed-model copies the trained model into the database: it needs --bind (query-only) or --reencode");
    }
    if a.rounds > 1 {
        return rounds(&a, interrupt_flag(), out);
    }
    if let Err(e) = check_output(&a.output, a.resume) {
        bail!("{e} (pass --resume to continue that run)");
    }
    one_round(&a, &a.output, a.resume, interrupt_flag(), out)
}

/// `--rounds N`: mine, train into `OUT/round-K/`, re-encode, N times; each round starts from the
/// field's encoders as the last re-encode left them and mines with its vectors. With `--resume`,
/// finished rounds are skipped, a trained but not re-encoded round is re-encoded, and a round
/// cut short resumes from its newest checkpoint.
fn rounds(a: &TrainArgs, interrupt: Arc<AtomicBool>, out: &mut dyn Write) -> Result<()> {
    if !a.reencode || a.mine_depth == 0 {
        bail!("--rounds re-mines hard negatives with each round's re-encoded vectors: it needs --reencode and --mine-depth");
    }
    let started = a
        .output
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if started && !a.resume {
        bail!(
            "{} is not empty: pass --resume to continue those rounds, or train into another folder",
            a.output.display()
        );
    }
    // Round k+1 starts only once round k is re-encoded: rounds before the last one with a
    // report are done; that one is done when the field holds its model.
    let trained = |k: usize| {
        a.output
            .join(format!("round-{k}/training_report.json"))
            .is_file()
    };
    let last = (1..=a.rounds).rev().find(|&k| trained(k)).unwrap_or(0);
    for k in 1..=a.rounds {
        let dir = a.output.join(format!("round-{k}"));
        if k < last {
            writeln!(out, "round {k}: trained and re-encoded already")?;
            continue;
        }
        if k == last {
            let report = dir.join("training_report.json");
            let untied =
                serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&report)?)?
                    ["report"]["untied"]
                    .as_bool()
                    .unwrap_or(false);
            let model =
                vellum_train::trained_encoders(&dir, untied, &current_encoders(a)?, false)?.passage;
            let fingerprint = vellum::encode::ModelDir::resolve(&model)?.fingerprint()?;
            let db = Database::open(&a.db)?;
            let current = db
                .snapshot()?
                .collection(&a.collection)?
                .encoders(&a.field)
                .map(|e| e.passage.fingerprint.clone());
            if current.as_deref() == Some(fingerprint.as_str()) {
                writeln!(out, "round {k}: trained and re-encoded already")?;
            } else {
                writeln!(out, "round {k}: trained already; re-encoding")?;
                reencode_with(a, &db, &dir, untied, Some(interrupt.clone()), out)?;
            }
            continue;
        }
        writeln!(out, "round {k} of {}", a.rounds)?;
        one_round(a, &dir, a.resume, interrupt.clone(), out)?;
    }
    Ok(())
}

/// The field's encoders as committed.
fn current_encoders(a: &TrainArgs) -> Result<vellum::encode::FieldEncoders> {
    Database::open(&a.db)?
        .snapshot()?
        .collection(&a.collection)?
        .encoders(&a.field)
        .cloned()
        .context("--reencode: the field has no encoders")
}

/// Re-encodes the field with the model trained into `dir`, the field's current options carried
/// over (the trained model is the current one fine-tuned).
fn reencode_with(
    a: &TrainArgs,
    db: &Database,
    dir: &std::path::Path,
    untied: bool,
    interrupt: Option<Arc<AtomicBool>>,
    out: &mut dyn Write,
) -> Result<()> {
    let current = current_encoders(a)?;
    let choice = vellum_train::trained_encoders(dir, untied, &current, a.embed_model)?;
    let mut w = db.writer()?;
    let encoders = vellum::encode::prepare_encoders(db.path(), &choice)
        .context("--reencode: loading the trained model")?;
    let job = vellum::ingest::reencode::Reencode {
        piece_rows: a.piece_rows.max(1),
        interrupt,
        ..vellum::ingest::reencode::Reencode::new(&a.collection, &a.field, Some(encoders))
    };
    super::reencode::execute(&mut w, job, out)
}

/// One training run into `output` (then the re-encode, with `--reencode`); `interrupt` is the
/// process's one Ctrl-C flag (ctrlc takes one handler per process).
fn one_round(
    a: &TrainArgs,
    output: &std::path::Path,
    resume: bool,
    interrupt: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let c = snap.collection(&a.collection)?;
    let mut data = match (&a.train, &a.queries, &a.qrels) {
        (Some(path), _, _) => read_tevatron(path, c)?,
        (None, Some(q), Some(r)) => {
            let (data, skipped) = read_queries_qrels(q, r, c)?;
            if skipped > 0 {
                eprintln!(
                    "{skipped} training queries have no relevant document in the qrels; skipped"
                );
            }
            data
        }
        _ => bail!(
            "give the training data: --train FILE (Tevatron JSONL), or --queries FILE --qrels FILE"
        ),
    };
    // Read before mining and training, so that bad input fails at once.
    let bind_options =
        vellum::encode::EncoderOptions::parse(&a.bind_options).context("--bind-options")?;
    let align_texts = match &a.align_texts {
        Some(p) => read_align_texts(p)?,
        None => Vec::new(),
    };
    if a.mine_depth > 0 {
        let pb = super::progress::spinner("mining hard negatives from the collection");
        let n = mine_negatives(
            c,
            &a.field,
            &mut data,
            MiningConfig {
                depth: a.mine_depth,
                skip: a.mine_skip,
            },
        )
        .context("mining hard negatives")?;
        pb.finish_and_clear();
        eprintln!("mined {n} hard negatives for {} queries", data.len());
    }
    if a.query_only {
        return query_only(
            a,
            &db,
            c,
            &data,
            (align_texts, bind_options),
            interrupt,
            out,
        );
    }
    let eval = match (&a.eval_queries, &a.eval_qrels) {
        (Some(q), Some(r)) => {
            let queries = vellum::ingest::text_input::read_queries(q)?;
            let qrels = vellum::eval::Qrels::read(r)?;
            Some(EvalSet::new(c, &a.field, queries, qrels, a.eval_depth)?)
        }
        _ => None,
    };
    let config = config_of(a);
    let mut bar = Bar {
        bar: None,
        interrupt,
    };
    let report = train(c, &data, eval.as_ref(), &config, output, resume, &mut bar)?;
    if let Some(b) = &bar.bar {
        b.finish_and_clear();
    }
    let where_ = if report.untied {
        format!(
            "{0}/query_model and {0}/passage_model",
            report.output.display()
        )
    } else {
        report.output.display().to_string()
    };
    writeln!(
        out,
        "trained {} steps ({} in this run, {:.1} s, {:.2} steps/s) on {} queries; final loss {:.4}; model in {where_}",
        report.steps,
        report.steps_run,
        report.seconds,
        report.steps_run as f64 / report.seconds.max(1e-9),
        data.len(),
        report.losses.last().copied().unwrap_or(f64::NAN),
    )?;
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        writeln!(out, "held-out before: {}", measures(first))?;
        writeln!(out, "held-out after:  {}", measures(last))?;
    }
    if a.reencode {
        drop(snap);
        // Ctrl-C's handler is training's: its flag stops the re-encode too.
        let interrupt = Some(bar.interrupt.clone());
        reencode_with(a, &db, &report.output, report.untied, interrupt, out)?;
    }
    Ok(())
}

fn config_of(a: &TrainArgs) -> TrainConfig {
    TrainConfig {
        epochs: a.epochs,
        max_steps: a.max_steps,
        batch_size: a.batch_size,
        group_size: a.group_size,
        accumulation: a.accumulation,
        temperature: a.temperature,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_ratio: a.warmup_ratio,
        max_grad_norm: a.max_grad_norm,
        seed: a.seed,
        query_max_len: a.query_max_len,
        passage_max_len: a.passage_max_len,
        untie: a.untie,
        prefer_mined: a.prefer_mined,
        save_every: a.save_every,
        save_total_limit: a.save_total_limit,
        eval_every: a.eval_every,
        device: a.device,
        precision: a.precision,
        ..TrainConfig::new(&a.field)
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let _ = ctrlc::try_set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after this step ...");
    });
    interrupt
}

/// Reads `--align-texts`: one text per line, or `id<TAB>text`; blank lines skipped.
fn read_align_texts(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--align-texts {}", path.display()))?;
    let texts: Vec<String> = text
        .lines()
        .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if texts.is_empty() {
        bail!(
            "--align-texts {}: no texts (expected one per line)",
            path.display()
        );
    }
    Ok(texts)
}

/// `vellum train --query-only`.
fn query_only(
    a: &TrainArgs,
    db: &Database,
    c: &vellum::Collection,
    data: &[vellum_train::TrainQuery],
    (align_texts, bind_options): (Vec<String>, vellum::encode::EncoderOptions),
    interrupt: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<()> {
    use vellum_train::query_only::{
        train_query_encoder, AlignLoss, QueryOnlyConfig, RetrievalEval, Student,
    };
    let student = match (&a.student, a.student_layers) {
        (Some(p), _) => Student::Model(p.clone()),
        (None, Some(n)) => Student::Layers(n),
        (None, None) => Student::Layers(2),
    };
    let align_loss = match a.align_loss.as_str() {
        "cosine" | "cos" => AlignLoss::Cosine,
        "mse" => AlignLoss::Mse,
        other => bail!("--align-loss {other:?}: expected cosine or mse"),
    };
    let eval = match (&a.eval_queries, &a.eval_qrels) {
        (Some(q), Some(r)) => Some(RetrievalEval::new(
            vellum::ingest::text_input::read_queries(q)?,
            vellum::eval::Qrels::read(r)?,
        )?),
        _ => None,
    };
    let config = QueryOnlyConfig {
        student,
        align_steps: a.align_steps,
        align_loss,
        align_lr: a.align_lr,
        align_texts,
        freeze_embeddings: !a.train_embeddings,
        train: config_of(a),
    };
    let mut bar = Bar {
        bar: None,
        interrupt,
    };
    if !config.align_texts.is_empty() {
        eprintln!(
            "aligning on {} texts ({} training queries, {} from --align-texts): encoding them with the current query encoder first",
            data.len() + config.align_texts.len(),
            data.len(),
            config.align_texts.len()
        );
    }
    let report = train_query_encoder(c, data, eval.as_ref(), &config, &a.output, &mut bar)?;
    if let Some(b) = &bar.bar {
        b.finish_and_clear();
    }
    writeln!(
        out,
        "trained a {}-layer query encoder ({} alignment + {} contrastive steps, {:.1} s); model in {}",
        report.layers.0,
        report.align_losses.len(),
        report.losses.len(),
        report.seconds,
        report.output.display()
    )?;
    if let (Some(t), Some(s)) = (&report.teacher, report.student.last()) {
        writeln!(
            out,
            "held-out, current query encoder ({} layers): {}",
            report.layers.1,
            measures(t)
        )?;
        writeln!(
            out,
            "held-out, trained query encoder ({} layers): {}",
            report.layers.0,
            measures(s)
        )?;
    }
    if let Some((t, s)) = report.queries_per_sec {
        writeln!(
            out,
            "query encoding: {t:.0} → {s:.0} queries/s ({:.2}×)",
            s / t
        )?;
    }
    if a.bind {
        // The writer opens first: it collects, when it opens, model copies no commit references.
        let mut w = db.writer()?;
        // The field's encoders as committed now: refused if its passage encoder changed during
        // training (the student learned the vectors stored before).
        let now = db.snapshot()?;
        let current = now
            .collection(&a.collection)?
            .encoders(&a.field)
            .ok_or_else(|| anyhow::anyhow!("field {:?} has no encoder", a.field))?;
        if Some(&current.passage) != c.encoders(&a.field).map(|e| &e.passage) {
            bail!(
                "field {:?}'s passage encoder changed while the student trained: not bound (the model is in {})",
                a.field,
                a.output.display()
            );
        }
        let records = vellum::encode::replace_query_encoder(
            &**db.directory(),
            current,
            &a.output.display().to_string(),
            &bind_options,
            a.embed_model,
        )?;
        w.set_encoders(&a.collection, &a.field, records)?;
        let commit = w.commit()?;
        writeln!(
            out,
            "bound as the query encoder of {}.{} (generation {}); stored vectors unchanged",
            a.collection, a.field, commit.generation
        )?;
    }
    Ok(())
}
