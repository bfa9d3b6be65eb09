//! `vellum reencode`: re-encode a field as a new encoder version, roll back, abort, drop the
//! kept version.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use vellum::encode::{EncoderChoice, EncoderOptions};
use vellum::ingest::reencode::{new_field_spec, reencode, Reencode, ReencodeEvent};
use vellum::Database;

use super::progress::{counter, spinner, Progress};
use crate::args::ReencodeArgs;

pub fn run(a: ReencodeArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut w = db.writer()?;
    if a.abort {
        let done = w.abort_staged(&a.collection)?;
        return Ok(writeln!(
            out,
            "{}",
            if done {
                format!("aborted the unfinished re-encode of {}", a.collection)
            } else {
                format!("{} has no unfinished re-encode", a.collection)
            }
        )?);
    }
    if a.drop_previous {
        let done = w.drop_previous(&a.collection)?;
        return Ok(writeln!(
            out,
            "{}",
            if done {
                format!(
                    "dropped the encoder version of {} kept for rollback",
                    a.collection
                )
            } else {
                format!("{} keeps no previous encoder version", a.collection)
            }
        )?);
    }
    let field = a.field.clone().expect("clap requires --field here");
    if a.rollback {
        let kept = w
            .committed()
            .manifest()
            .collection(&a.collection)
            .and_then(|c| c.versions.previous.as_ref())
            .map(|p| p.field.clone());
        if let Some(kept) = kept.filter(|k| *k != field) {
            anyhow::bail!(
                "the version kept for rollback in {} is of field {kept:?}, not {field:?}; nothing was changed",
                a.collection
            );
        }
        let s = w.rollback_version(&a.collection)?;
        writeln!(
            out,
            "rolled back {}.{}: version {} -> {} ({} segments; version {} kept, --rollback again to return to it; generation {})",
            a.collection, s.field, s.from_version, s.to_version, s.segments, s.from_version, s.generation
        )?;
        return Ok(());
    }
    let encoders = match &a.encoder {
        None => None,
        Some(model) => {
            let choice = EncoderChoice {
                passage: model.clone(),
                passage_options: parse_options(a.encoder_options.as_deref())?,
                query: a.query_encoder.clone(),
                query_options: parse_options(a.query_encoder_options.as_deref())?,
                embed: a.embed_model,
            };
            let spinner = spinner("loading the new encoder");
            let records = vellum::encode::prepare_encoders(db.path(), &choice)
                .with_context(|| format!("--encoder {model}"))?;
            spinner.finish_and_clear();
            Some(records)
        }
    };
    let new_field = match (&a.new_field, &encoders) {
        (Some(spec), Some(records)) => {
            let snap = db.snapshot()?;
            let c = snap.collection(&a.collection)?;
            Some(
                new_field_spec(c, &field, spec, records)
                    .with_context(|| format!("--new-field {spec}"))?,
            )
        }
        _ => None,
    };
    let job = Reencode {
        new_field,
        piece_rows: a.piece_rows.max(1),
        keep_previous: !a.no_keep_previous,
        runtime: match &a.runtime {
            Some(r) => super::encoder_runtime(r)?,
            None => EncoderOptions::default(),
        },
        ..Reencode::new(&a.collection, &field, encoders)
    };
    execute(&mut w, job, out)
}

/// Runs a re-encode with a progress bar and Ctrl-C handling, and reports the switch.
pub(super) fn execute(
    w: &mut vellum::Writer,
    mut job: Reencode<'_>,
    out: &mut dyn Write,
) -> Result<()> {
    if job.interrupt.is_none() {
        let interrupt = Arc::new(AtomicBool::new(false));
        let flag = interrupt.clone();
        let _ = ctrlc::try_set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: stopping; the pieces written are kept");
        });
        job.interrupt = Some(interrupt);
    }
    let collection = job.collection;
    // The field written: the new one with --new-field (an interrupted run continues by its name).
    let field = job
        .new_field
        .as_ref()
        .map_or(job.field.to_string(), |f| f.name.clone());
    let mut bar: Option<Progress> = None;
    let stats = reencode(w, &job, &mut |e| match e {
        ReencodeEvent::Plan(p) => {
            let free = p
                .bytes_available
                .map_or("unknown".into(), |b| format!("{} MiB", b >> 20));
            eprintln!(
                "re-encoding {collection}.{field} to version {} with {}: {} rows ({} already written by an earlier run); about {} MiB of new segments, {free} free",
                p.version,
                p.source,
                p.rows_total,
                p.rows_done,
                p.bytes_needed.div_ceil(1 << 20)
            );
            let b = counter(p.rows_total, "rows");
            b.set_position(p.rows_done);
            bar = Some(b);
        }
        ReencodeEvent::Staged { rows_done, .. } => {
            if let Some(b) = &bar {
                b.set_position(*rows_done);
            }
        }
    })
    .map_err(|e| match e {
        vellum::Error::Interrupted(_) => anyhow::anyhow!(
            "interrupted: the pieces written are committed; `vellum reencode DB -c {collection} -f {field}` (no --encoder) continues, --abort discards them"
        ),
        e => e.into(),
    })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let s = &stats.switch;
    writeln!(
        out,
        "re-encoded {collection}.{}: version {} -> {} ({} documents encoded in {:.1} s, {} new segments; {}generation {})",
        s.field,
        s.from_version,
        s.to_version,
        stats.encoded,
        stats.encode_seconds,
        s.segments,
        if s.kept_previous {
            format!("version {} kept for --rollback; ", s.from_version)
        } else {
            String::new()
        },
        s.generation
    )?;
    Ok(())
}

fn parse_options(list: Option<&str>) -> Result<EncoderOptions> {
    Ok(match list {
        Some(l) => EncoderOptions::parse(l)?,
        None => EncoderOptions::default(),
    })
}
