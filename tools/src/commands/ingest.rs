//! `vellum ingest`: documents with precomputed vectors, or text encoded by the fields' passage
//! encoders (committing as it goes, resumable).

use std::io::Write;

use super::progress::Progress;
use anyhow::{Context, Result};
use vellum::ingest::{self, split_tensor, Mode, VectorInput};
use vellum::Database;

use super::encoder_runtime;
use super::progress::{counter, spinner};
use crate::args::IngestArgs;

pub fn run(a: IngestArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut inputs = a
        .vectors
        .iter()
        .map(|s| VectorInput::parse(s))
        .collect::<vellum::Result<Vec<_>>>()?;
    for l in &a.lengths {
        let (field, spec) = l
            .split_once('=')
            .with_context(|| format!("--lengths {l:?}: expected FIELD=FILE"))?;
        let input = inputs
            .iter_mut()
            .find(|v| v.field == field)
            .with_context(|| format!("--lengths {field}=...: no --vectors {field}=... given"))?;
        input.lengths = Some(split_tensor(spec, &format!("{field}_lengths")));
    }
    let mut w = db.writer()?;
    if inputs.is_empty()
        && !w
            .committed()
            .collection(&a.collection)?
            .all_encoders()
            .is_empty()
    {
        return encode_text(&a, &mut w, out);
    }
    let total = vellum::ingest::jsonl::JsonlDocs::count(&a.docs)?;
    let pb = counter(total, "docs");
    let mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    let shard = a.shard.unwrap_or(ingest::Shard::ALL);
    if shard.count > 1 {
        pb.set_length(total.div_ceil(shard.count as u64));
    }
    let stats = ingest::ingest_shard(
        &mut w,
        &a.collection,
        &a.docs,
        &inputs,
        mode,
        shard,
        &mut |n| pb.set_position(n),
    )?;
    pb.set_message("committing");
    let c = w.commit()?;
    pb.finish_and_clear();
    let of_shard = match a.shard {
        Some(s) => format!(" (shard {}/{})", s.index, s.count),
        None => String::new(),
    };
    writeln!(
        out,
        "ingested {} documents{of_shard} into {} (generation {})",
        stats.documents, a.collection, c.generation
    )?;
    Ok(())
}

/// `ingest` without vectors: encode the documents' text with the fields' passage encoders.
fn encode_text(a: &IngestArgs, w: &mut vellum::Writer, out: &mut dyn Write) -> Result<()> {
    use vellum::ingest::pipeline::{ingest_text, TextIngest};
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C while the first is being handled kills the process as usual.
        let _ = ctrlc::try_set_handler(move || {
            if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: committing the documents encoded so far ...");
        });
    }
    let mut job = TextIngest::new(&a.collection, &a.docs);
    job.mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    job.shard = a.shard.unwrap_or(ingest::Shard::ALL);
    job.commit_every = a.commit_every.max(1);
    job.runtime = encoder_runtime(&a.encoder_options)?;
    job.interrupt = Some(interrupt);
    job.skip_bad_images = a.skip_bad_images;
    let spinner = spinner("loading encoders");
    let mut pb: Option<Progress> = None;
    let started = std::time::Instant::now();
    let stats = ingest_text(w, &job, &mut |p| {
        let bar = pb.get_or_insert_with(|| {
            spinner.finish_and_clear();
            counter(p.total, "docs")
        });
        bar.set_position(p.written + p.skipped + p.bad_images);
    });
    spinner.finish_and_clear();
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let stats = stats?;
    let secs = started.elapsed().as_secs_f64();
    for (id, why) in &stats.bad_images {
        eprintln!("skipped document {id:?}: {why}");
    }
    let skipped = if stats.skipped > 0 {
        format!(", skipped {} already committed", stats.skipped)
    } else {
        String::new()
    };
    let skipped = if stats.bad_images.is_empty() {
        skipped
    } else {
        format!(
            "{skipped}, skipped {} with bad images",
            stats.bad_images.len()
        )
    };
    writeln!(
        out,
        "encoded and ingested {} documents into {} in {:.1} s ({:.1} docs/s, {} commits{skipped}; generation {})",
        stats.documents,
        a.collection,
        secs,
        stats.documents as f64 / secs.max(1e-9),
        stats.commits,
        w.committed().generation()
    )?;
    Ok(())
}
