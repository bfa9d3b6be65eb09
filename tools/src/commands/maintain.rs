//! `vellum delete`, `compact` and `index`: maintenance of a collection.

use std::io::Write;

use anyhow::Result;
use vellum::ingest::jsonl::read_id_list;
use vellum::Database;

use super::progress::spinner;
use crate::args::{CollectionArgs, DeleteArgs, IndexArgs};

pub fn delete(a: DeleteArgs, out: &mut dyn Write) -> Result<()> {
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

pub fn compact(a: CollectionArgs, out: &mut dyn Write) -> Result<()> {
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

pub fn index(a: IndexArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut w = db.writer()?;
    let is_multi = {
        let snap = db.snapshot()?;
        let coll = snap.collection(&a.collection)?;
        let fi = coll.field_index(&a.field)?;
        matches!(
            coll.schema().fields[fi].kind,
            vellum::FieldKind::Multi { .. }
        )
    };
    if a.plaid.is_some() || (a.drop && is_multi) {
        return plaid_index(a, &db, w, out);
    }
    let params = if a.drop {
        None
    } else {
        Some(vellum::hnsw::HnswParams::parse(&a.hnsw)?)
    };
    w.set_index(&a.collection, &a.field, params)?;
    let spinner = spinner(&format!("building {}.{}", a.collection, a.field));
    let started = std::time::Instant::now();
    let c = w.reindex(&a.collection)?;
    spinner.finish_and_clear();
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let fi = coll.field_index(&a.field)?;
    let graphs = coll
        .slots()
        .iter()
        .filter_map(|s| s.segment.graph(fi))
        .collect::<vellum::Result<Vec<_>>>()?;
    match params {
        None => writeln!(out, "dropped the index of {}.{}", a.collection, a.field)?,
        Some(p) => writeln!(
            out,
            "indexed {}.{} ({p}): {} of {} segments have a graph, {} edges, in {:.1} s (generation {})",
            a.collection,
            a.field,
            graphs.len(),
            c.segments_after,
            graphs.iter().map(|g| g.edges()).sum::<u64>(),
            started.elapsed().as_secs_f64(),
            c.generation
        )?,
    }
    Ok(())
}

/// `vellum index --plaid`: declares (or drops) a PLAID index and rewrites the collection so that
/// every segment has its section and the codec is trained on all documents.
fn plaid_index(
    a: IndexArgs,
    db: &Database,
    mut w: vellum::Writer,
    out: &mut dyn Write,
) -> Result<()> {
    let params = if a.drop {
        None
    } else {
        Some(vellum::meta::PlaidParams::parse(
            a.plaid.as_deref().unwrap_or(""),
        )?)
    };
    w.set_plaid(&a.collection, &a.field, params)?;
    let spinner = spinner(&format!("building {}.{}", a.collection, a.field));
    let started = std::time::Instant::now();
    let c = w.reindex(&a.collection)?;
    spinner.finish_and_clear();
    let Some(p) = params else {
        writeln!(
            out,
            "dropped the PLAID index of {}.{}",
            a.collection, a.field
        )?;
        return Ok(());
    };
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let fi = coll.field_index(&a.field)?;
    let views = coll
        .slots()
        .iter()
        .filter_map(|s| s.segment.plaid(fi))
        .collect::<vellum::Result<Vec<_>>>()?;
    let tokens: usize = views.iter().map(|v| v.codes.len()).sum();
    writeln!(
        out,
        "indexed {}.{} ({p}): {} of {} segments have a PLAID section, {} centroids, {} tokens, in {:.1} s (generation {})",
        a.collection,
        a.field,
        views.len(),
        c.segments_after,
        views.first().map_or(0, |v| v.k()),
        tokens,
        started.elapsed().as_secs_f64(),
        c.generation
    )?;
    Ok(())
}
