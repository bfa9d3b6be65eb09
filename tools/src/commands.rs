//! Command implementations.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use vellum::ingest::array::Array;
use vellum::ingest::jsonl::read_id_list;
use vellum::ingest::{self, split_tensor, Mode, VectorInput};
use vellum::{Database, FieldKind, FieldSpec, Schema, SearchRequest, Strategy};

use crate::args::{
    Cli, Command, CreateArgs, DeleteArgs, GetArgs, InfoArgs, IngestArgs, SearchArgs, StrategyArg,
};
use crate::runfile::write_hits;

/// Runs a parsed command.
pub fn execute(cli: Cli, out: &mut dyn Write) -> Result<()> {
    match cli.command {
        Command::Create(a) => create(a, out),
        Command::Ingest(a) => ingest_cmd(a, out),
        Command::Search(a) => search(a, out),
        Command::Info(a) => info(a, out),
        Command::Verify(a) => verify(&a.db, out),
        Command::Delete(a) => delete(a, out),
        Command::Compact(a) => {
            let db = Database::open(&a.db)?;
            let spinner = spinner(&format!("compacting {}", a.collection));
            let c = db.writer()?.compact(&a.collection)?;
            spinner.finish_and_clear();
            writeln!(
                out,
                "compacted {}: {} segments -> {}, {} deleted rows dropped (generation {})",
                a.collection, c.segments_before, c.segments_after, c.rows_dropped, c.generation
            )?;
            Ok(())
        }
        Command::Get(a) => get(a, out),
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

fn counter(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    pb
}

fn create(a: CreateArgs, out: &mut dyn Write) -> Result<()> {
    let mut schema = Schema::new();
    for f in &a.fields {
        schema = schema.with_field(FieldSpec::parse(f)?);
    }
    schema.validate()?;
    let db = if a.db.join("MANIFEST").exists() {
        Database::open(&a.db)?
    } else {
        Database::create(&a.db)?
    };
    let mut w = db.writer()?;
    w.create_collection(&a.collection, schema.clone())?;
    let c = w.commit()?;
    writeln!(
        out,
        "created collection {} in {} (generation {})",
        a.collection,
        a.db.display(),
        c.generation
    )?;
    for f in &schema.fields {
        writeln!(out, "  field {f}")?;
    }
    Ok(())
}

fn ingest_cmd(a: IngestArgs, out: &mut dyn Write) -> Result<()> {
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
    let total = vellum::ingest::jsonl::JsonlDocs::count(&a.docs)?;
    let pb = counter(total, "docs");
    let mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    let stats = ingest::ingest(&mut w, &a.collection, &a.docs, &inputs, mode, &mut |n| {
        pb.set_position(n)
    })?;
    pb.set_message("committing");
    let c = w.commit()?;
    pb.finish_and_clear();
    writeln!(
        out,
        "ingested {} documents into {} (generation {})",
        stats.documents, a.collection, c.generation
    )?;
    Ok(())
}

fn search(a: SearchArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let fi = coll.field_index(&a.field)?;
    let kind = coll.schema().fields[fi].kind.clone();
    let (qpath, qtensor) = split_tensor(&a.query_vectors, "queries");
    let arr = Array::open(&qpath, qtensor.as_deref())?;
    let dim = match &kind {
        FieldKind::Dense { dim, .. } | FieldKind::Multi { dim, .. } => *dim as usize,
        FieldKind::Tensor { .. } => bail!(
            "field {:?} is a tensor field; tensors are stored, not searched",
            a.field
        ),
    };
    if arr.shape().len() != 2 || arr.shape()[1] != dim {
        bail!(
            "{}: query vectors must have shape [Q, {dim}] for field {:?}, found {:?}",
            arr.label(),
            a.field,
            arr.shape()
        );
    }
    // Per-query token ranges (dense: one row each).
    let ranges: Vec<(usize, usize)> = match (&kind, &a.query_lengths) {
        (FieldKind::Dense { .. }, None) => (0..arr.shape()[0]).map(|i| (i, i + 1)).collect(),
        (FieldKind::Dense { .. }, Some(_)) => {
            bail!("--query-lengths is only for multi-vector fields")
        }
        (FieldKind::Multi { .. }, None) => bail!(
            "field {:?} is a multi-vector field: pass --query-lengths with per-query token counts",
            a.field
        ),
        (FieldKind::Multi { .. }, Some(l)) => {
            let (lp, lt) = split_tensor(l, "query_lengths");
            let lens = Array::open(&lp, lt.as_deref())?.read_u64s()?;
            let mut at = 0usize;
            let mut r = Vec::with_capacity(lens.len());
            for (i, n) in lens.iter().enumerate() {
                if *n == 0 {
                    bail!("{}: query {i} has 0 tokens", lp.display());
                }
                r.push((at, at + *n as usize));
                at += *n as usize;
            }
            if at != arr.shape()[0] {
                bail!(
                    "{}: token counts sum to {at}, but {} has {} rows",
                    lp.display(),
                    arr.label(),
                    arr.shape()[0]
                );
            }
            r
        }
        (FieldKind::Tensor { .. }, _) => unreachable!(),
    };
    let nq = ranges.len();
    let qids: Vec<String> = match &a.query_ids {
        Some(p) => {
            let ids = read_id_list(p)?;
            if ids.len() != nq {
                bail!(
                    "{}: {} query ids for {nq} queries in {}",
                    p.display(),
                    ids.len(),
                    arr.label()
                );
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = ids.iter().find(|i| !seen.insert(i.as_str())) {
                bail!("{}: query id {d:?} appears more than once", p.display());
            }
            ids
        }
        None => (0..nq).map(|i| i.to_string()).collect(),
    };
    let strategy = match a.strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Streaming => Strategy::Streaming,
        StrategyArg::Blocked => Strategy::Blocked,
        StrategyArg::Screened => Strategy::Screened,
    };
    let pb = counter(nq as u64, "queries");
    let batch = a.batch.max(1);
    for b0 in (0..nq).step_by(batch) {
        let b1 = (b0 + batch).min(nq);
        let (t0, t1) = (ranges[b0].0, ranges[b1 - 1].1);
        let mut values = vec![0f32; (t1 - t0) * dim];
        arr.read_f32(t0 * dim, &mut values)?;
        let results = match &kind {
            FieldKind::Dense { .. } => coll.search(
                &SearchRequest::dense_batch(&a.field, &values, a.k).with_strategy(strategy),
            ),
            _ => {
                let qs: Vec<&[f32]> = ranges[b0..b1]
                    .iter()
                    .map(|(s, e)| &values[(s - t0) * dim..(e - t0) * dim])
                    .collect();
                coll.search(&SearchRequest::multi_batch(&a.field, qs, a.k))
            }
        }
        .map_err(|e| anyhow::anyhow!("{}: {e}", arr.label()))?;
        for (i, hits) in results.iter().enumerate() {
            write_hits(out, a.format, &qids[b0 + i], hits, &a.tag)?;
        }
        pb.set_position(b1 as u64);
    }
    pb.finish_and_clear();
    Ok(())
}

fn info(a: InfoArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let mut json_colls = Vec::new();
    if !a.json {
        writeln!(
            out,
            "database {} (generation {}, format v{})",
            a.db.display(),
            snap.generation(),
            vellum::format::FORMAT_VERSION
        )?;
    }
    for c in snap.collections() {
        let bytes: u64 = c.slots().iter().map(|s| s.entry.bytes).sum();
        let deleted: u64 = c
            .slots()
            .iter()
            .map(|s| s.entry.deletes.map_or(0, |d| d.count))
            .sum();
        if a.json {
            json_colls.push(serde_json::json!({
                "name": c.name(),
                "fields": c.schema().fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "documents": c.len(),
                "deleted_rows": deleted,
                "segments": c.slots().iter().map(|s| serde_json::json!({"id": s.entry.id, "rows": s.entry.rows, "bytes": s.entry.bytes, "deleted": s.entry.deletes.map_or(0, |d| d.count)})).collect::<Vec<_>>(),
                "bytes": bytes,
            }));
            continue;
        }
        writeln!(
            out,
            "collection {}: {} documents, {} deleted rows, {} segments, {} bytes",
            c.name(),
            c.len(),
            deleted,
            c.slots().len(),
            bytes
        )?;
        for f in &c.schema().fields {
            writeln!(out, "  field {f}")?;
        }
        for s in c.slots() {
            writeln!(
                out,
                "  segment {:016x}: {} rows, {} deleted, {} bytes",
                s.entry.id,
                s.entry.rows,
                s.entry.deletes.map_or(0, |d| d.count),
                s.entry.bytes
            )?;
        }
    }
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"generation": snap.generation(), "format_version": vellum::format::FORMAT_VERSION, "collections": json_colls})
        )?;
    }
    Ok(())
}

fn verify(db: &Path, out: &mut dyn Write) -> Result<()> {
    let spinner = spinner("verifying");
    let r = vellum::verify::verify_database(db)?;
    spinner.finish_and_clear();
    for f in &r.unreferenced_files {
        writeln!(out, "note: unreferenced file {f} (left by an interrupted writer; removed by the next writer)")?;
    }
    for p in &r.problems {
        writeln!(out, "problem: {p}")?;
    }
    writeln!(
        out,
        "checked generation {}: {} collections, {} segments, {} live documents, {} bytes",
        r.generation, r.collections, r.segments, r.live_documents, r.bytes
    )?;
    if !r.is_ok() {
        bail!("{} problem(s) found in {}", r.problems.len(), db.display());
    }
    writeln!(out, "ok")?;
    Ok(())
}

fn delete(a: DeleteArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let ids = read_id_list(&a.ids)?;
    let mut w = db.writer()?;
    let mut missing = 0u64;
    for id in &ids {
        if !w.delete(&a.collection, id)? {
            missing += 1;
        }
    }
    let c = w.commit()?;
    writeln!(
        out,
        "deleted {} documents from {} ({missing} ids not found; generation {})",
        ids.len() as u64 - missing,
        a.collection,
        c.generation
    )?;
    Ok(())
}

fn get(a: GetArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let doc = coll
        .get(&a.id)?
        .with_context(|| format!("no document {:?} in collection {}", a.id, a.collection))?;
    let mut fields = serde_json::Map::new();
    for f in &coll.schema().fields {
        let (shape, values) = match &f.kind {
            FieldKind::Dense { dim, .. } => (vec![*dim as usize], doc.dense(&f.name)?),
            FieldKind::Multi { dim, .. } => {
                let m = doc.multi(&f.name)?;
                (vec![m.n_tokens(), *dim as usize], m.tokens)
            }
            FieldKind::Tensor { shape, .. } => (
                shape.iter().map(|&s| s as usize).collect(),
                doc.tensor(&f.name)?.data,
            ),
        };
        let mut v = serde_json::json!({"shape": shape, "dtype": f.kind.dtype().name()});
        if a.vectors {
            v["values"] = serde_json::json!(values.to_f32_vec());
        }
        fields.insert(f.name.clone(), v);
    }
    let meta: serde_json::Value = doc.metadata_json()?;
    writeln!(
        out,
        "{}",
        serde_json::json!({"id": doc.id()?, "text": doc.text()?, "metadata": meta, "fields": fields})
    )?;
    Ok(())
}
