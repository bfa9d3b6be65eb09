//! `vellum info`, `verify` and `get`: reading a database.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use vellum::Database;

use super::progress::spinner;
use super::write_encoders;
use crate::args::{GetArgs, InfoArgs};

/// Prints the statistics of every collection (`--json`: one JSON object).
pub fn info(a: InfoArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let stats = snap.stats()?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&stats)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "database {} (generation {}, format v{})",
        a.db.display(),
        stats.generation,
        stats.format_version
    )?;
    for (c, coll) in stats.collections.iter().zip(snap.collections()) {
        writeln!(
            out,
            "collection {}: {} documents, {} deleted rows, {} segments, {} bytes",
            c.name,
            c.documents,
            c.deleted_rows,
            c.segments.len(),
            c.bytes
        )?;
        for f in &coll.schema().fields {
            writeln!(out, "  field {f}")?;
        }
        for (field, p) in &c.indexes {
            writeln!(out, "  index {field}: {p}")?;
        }
        for (field, p) in &c.plaid {
            writeln!(out, "  index {field}: {p}")?;
        }
        for (field, e) in &c.encoders {
            write_encoders(out, field, e)?;
        }
        if let Some(entry) = snap.manifest().collection(&c.name) {
            write_versions(out, entry)?;
        }
        for s in &c.segments {
            writeln!(
                out,
                "  segment {:016x}: {} rows, {} deleted, {} bytes",
                s.id, s.rows, s.deleted, s.bytes
            )?;
            for f in &coll.schema().fields {
                if let Some(g) = s.hnsw.get(&f.name) {
                    writeln!(
                        out,
                        "    hnsw graph on {}: m={} ef_construction={}, {} layers, {} edges, {} bytes",
                        f.name, g.m, g.ef_construction, g.layers, g.edges, g.bytes
                    )?;
                }
                if let Some(p) = s.plaid.get(&f.name) {
                    writeln!(
                        out,
                        "    plaid index on {}: {} centroids, {}-bit residuals, {} tokens, {:.1} bytes per token ({:.1} all-in, {}), codec {:016x} (accounts for {} documents), {} bytes",
                        f.name,
                        p.centroids,
                        p.nbits,
                        p.tokens,
                        p.bytes as f64 / p.tokens.max(1) as f64,
                        (p.bytes + p.field_bytes) as f64 / p.tokens.max(1) as f64,
                        if p.codes_only { "codes only" } else { "tokens stored too" },
                        p.codec_id,
                        p.trained_rows,
                        p.bytes
                    )?;
                }
                if let Some(bytes) = s.screening_codes.get(&f.name) {
                    writeln!(
                        out,
                        "    screening codes on {}: 8-bit, {bytes} bytes",
                        f.name
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub fn verify(db: &Path, out: &mut dyn Write) -> Result<()> {
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

/// Prints one document as JSON.
pub fn get(a: GetArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let doc = coll
        .get(&a.id)?
        .with_context(|| format!("no document {:?} in collection {}", a.id, a.collection))?;
    writeln!(out, "{}", doc.to_json(a.vectors)?)?;
    Ok(())
}

/// The encoder versions a collection records: current numbers, a re-encode in progress, the
/// version kept for rollback.
fn write_versions(out: &mut dyn Write, entry: &vellum::meta::CollectionEntry) -> Result<()> {
    let v = &entry.versions;
    for (field, n) in &v.current {
        writeln!(out, "  encoder version {field}: {n}")?;
    }
    if let Some(s) = &v.staged {
        let total: u64 = entry.segments.iter().map(|s| s.rows).sum();
        let left: u64 = vellum::writer::pending_pieces(entry, u64::MAX)
            .iter()
            .map(|p| p.rows)
            .sum();
        writeln!(
            out,
            "  unfinished re-encode of {} to version {} ({}): {} of {total} rows written; run reencode again to finish it, or --abort",
            s.field,
            s.version,
            s.encoders.passage.source,
            total - left
        )?;
    }
    if let Some(p) = &v.previous {
        let bytes: u64 = p.segments.iter().map(|s| s.bytes).sum();
        writeln!(
            out,
            "  kept for rollback: {} version {} ({}), {} segments, {bytes} bytes (reencode --rollback, or --drop-previous)",
            p.field,
            p.version,
            p.encoders.passage.source,
            p.segments.len()
        )?;
    }
    Ok(())
}
