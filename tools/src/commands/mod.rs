//! One file per command: parse what the library does not, call the library, print. Shared output
//! helpers live here and in `progress.rs`.

mod create;
mod eval;
mod ingest;
mod inspect;
mod maintain;
mod progress;
mod reencode;
mod search;
mod train;
mod transfer;

use std::io::Write;

use anyhow::{bail, Result};
use vellum::encode::EncoderOptions;

use crate::args::{Cli, Command};

/// Runs a parsed command.
pub fn execute(cli: Cli, out: &mut dyn Write) -> Result<()> {
    match cli.command {
        Command::Create(a) => create::run(a, out),
        Command::Ingest(a) => ingest::run(a, out),
        Command::Search(a) => search::run(*a, out),
        Command::Info(a) => inspect::info(a, out),
        Command::Verify(a) => inspect::verify(&a.db, out),
        Command::Get(a) => inspect::get(a, out),
        Command::Delete(a) => maintain::delete(a, out),
        Command::Compact(a) => maintain::compact(a, out),
        Command::Index(a) => maintain::index(a, out),
        Command::Eval(a) => eval::run(a, out),
        Command::MergeRuns(a) => eval::merge_runs(a, out),
        Command::ConvertRun(a) => eval::convert_run(a, out),
        Command::Export(a) => transfer::export(a, out),
        Command::ImportTevatron(a) => transfer::import_tevatron(a, out),
        Command::Backup(a) => transfer::backup(a, out),
        Command::Train(a) => train::run(*a, out),
        Command::Reencode(a) => reencode::run(a, out),
    }
}

/// Prints a field's encoder records, one line per role.
fn write_encoders(
    out: &mut dyn Write,
    field: &str,
    e: &vellum::encode::FieldEncoders,
) -> Result<()> {
    for (role, r) in [("passage", &e.passage), ("query", &e.query)] {
        writeln!(
            out,
            "  encoder {field} ({role}): {} [{}]{} pooling={:?} normalize={} max_length={} dims={} dtype={:?}{}{}",
            r.source,
            r.fingerprint,
            match (&r.architecture, r.input, r.output) {
                (Some(a), vellum::encode::Modality::Text, vellum::encode::OutputKind::Dense) => format!(" {a}"),
                (Some(a), i, o) => format!(" {a} {}→{}", i.name(), o.field_kind_name()),
                (None, ..) => String::new(),
            },
            r.pooling,
            r.normalize,
            r.max_length,
            r.dims,
            r.dtype,
            if r.prefix.is_empty() { String::new() } else { format!(" prefix={:?}", r.prefix) },
            if r.embedded { " (embedded)" } else { "" },
        )?;
        if let Some(li) = &r.late_interaction {
            writeln!(
                out,
                "    late interaction ({} checkpoint): marker={} expansion={} skiplist={} tokens{}{}",
                li.format,
                li.marker.map_or("none".into(), |m| format!("token {m}")),
                li.expansion.map_or("none".into(), |e| format!(
                    "{} tokens of {}{}",
                    e.length,
                    e.token,
                    if e.attend {
                        ", attended"
                    } else {
                        ", not attended"
                    }
                )),
                li.skiplist.len(),
                li.keep_only
                    .as_ref()
                    .map_or(String::new(), |k| format!(" keep_only={} tokens", k.len())),
                li.pool_factor
                    .map_or(String::new(), |f| format!(" pool_factor={f}")),
            )?;
        }
    }
    Ok(())
}

/// Device, batch size and `truncate` (ColBERT queries) for loading a bound encoder
/// (`--encoder-options device=cpu,batch_size=64`).
fn encoder_runtime(list: &str) -> Result<EncoderOptions> {
    let o = EncoderOptions::parse(list)?;
    if o.shapes_output() {
        bail!("--encoder-options here takes only device, batch_size and truncate: the other options are fixed by the collection's encoder");
    }
    Ok(o)
}
