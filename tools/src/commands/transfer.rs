//! `vellum export`, `import-tevatron` and `backup`: data in and out of a database.

use std::io::Write;

use anyhow::Result;
use vellum::ingest::Mode;
use vellum::Database;

use super::progress::spinner;
use crate::args::{BackupArgs, ExportArgs, ImportTevatronArgs};

pub fn export(a: ExportArgs, out: &mut dyn Write) -> Result<()> {
    let snap = Database::open(&a.db)?.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let spinner = spinner(&format!("exporting {}.{}", a.collection, a.field));
    let s = vellum::interop::export_dense(coll, &a.field, &a.vectors, &a.ids)?;
    spinner.finish_and_clear();
    writeln!(
        out,
        "exported {} rows of shape {:?} to {} (ids: {})",
        s.rows,
        &s.shape[1..],
        a.vectors.display(),
        a.ids.display()
    )?;
    Ok(())
}

pub fn import_tevatron(a: ImportTevatronArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut w = db.writer()?;
    let spinner = spinner(&format!("importing {} pickles", a.pickles.len()));
    let mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    let n = vellum::interop::import_tevatron(
        &mut w,
        &a.collection,
        &a.field,
        &a.pickles,
        mode,
        &mut |n| spinner.set_message(format!("{n} documents")),
    )?;
    spinner.set_message("committing");
    let c = w.commit()?;
    spinner.finish_and_clear();
    writeln!(
        out,
        "imported {n} documents from {} pickles into {} (generation {})",
        a.pickles.len(),
        a.collection,
        c.generation
    )?;
    Ok(())
}

/// Copies the last commit into a new directory while writers may run, and verifies the copy.
pub fn backup(a: BackupArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let spinner = spinner(&format!("backing up {}", a.db.display()));
    let info = db.backup_to(&a.dest)?;
    spinner.finish_and_clear();
    writeln!(
        out,
        "backed up generation {} of {} to {}: {} files, {} bytes, {} embedded models (verified)",
        info.generation,
        a.db.display(),
        a.dest.display(),
        info.files,
        info.bytes,
        info.models
    )?;
    Ok(())
}
