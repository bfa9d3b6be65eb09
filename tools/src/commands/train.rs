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

/// Runs `vellum train`.
pub fn run(a: TrainArgs, out: &mut dyn Write) -> Result<()> {
    if let Err(e) = check_output(&a.output, a.resume) {
        bail!("{e} (pass --resume to continue that run)");
    }
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
    let eval = match (&a.eval_queries, &a.eval_qrels) {
        (Some(q), Some(r)) => {
            let queries = vellum::ingest::text_input::read_queries(q)?;
            let qrels = vellum::eval::Qrels::read(r)?;
            Some(EvalSet::new(c, &a.field, queries, qrels, a.eval_depth)?)
        }
        _ => None,
    };
    let config = TrainConfig {
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
        ..TrainConfig::new(&a.field)
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        let _ = ctrlc::try_set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: writing a checkpoint after this step ...");
        });
    }
    let mut bar = Bar {
        bar: None,
        interrupt,
    };
    let report = train(
        c,
        &data,
        eval.as_ref(),
        &config,
        &a.output,
        a.resume,
        &mut bar,
    )?;
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
    Ok(())
}
