//! Run-file output: TREC, Tevatron TSV and JSON lines.

use std::io::Write;

use clap::ValueEnum;
use vellum::Hit;

/// Output format of search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    /// `qid Q0 docid rank score tag` (rank from 1).
    Trec,
    /// `qid<TAB>docid<TAB>score` (Tevatron).
    Tsv,
    /// `{"qid": ..., "hits": [{"docid", "rank", "score"}, ...]}` per line.
    Json,
}

/// Writes the hits of one query.
pub fn write_hits(
    out: &mut dyn Write,
    format: RunFormat,
    qid: &str,
    hits: &[Hit],
    tag: &str,
) -> std::io::Result<()> {
    match format {
        RunFormat::Trec => {
            for (i, h) in hits.iter().enumerate() {
                writeln!(out, "{qid} Q0 {} {} {} {tag}", h.id, i + 1, h.score)?;
            }
        }
        RunFormat::Tsv => {
            for h in hits {
                writeln!(out, "{qid}\t{}\t{}", h.id, h.score)?;
            }
        }
        RunFormat::Json => {
            let hits: Vec<serde_json::Value> = hits
                .iter()
                .enumerate()
                .map(|(i, h)| serde_json::json!({"docid": h.id, "rank": i + 1, "score": h.score}))
                .collect();
            writeln!(out, "{}", serde_json::json!({"qid": qid, "hits": hits}))?;
        }
    }
    Ok(())
}

/// Writes a whole run, ranked as trec_eval ranks it, at most `k` documents per query.
pub fn write_run(
    out: &mut dyn Write,
    format: RunFormat,
    run: &vellum::eval::Run,
    tag: &str,
    k: Option<usize>,
) -> std::io::Result<()> {
    match format {
        RunFormat::Trec => run.write(out, vellum::eval::RunFormat::Trec, tag, k),
        RunFormat::Tsv => run.write(out, vellum::eval::RunFormat::Tsv, tag, k),
        RunFormat::Json => {
            for qid in run.queries.keys() {
                let hits: Vec<serde_json::Value> = run
                    .ranked(qid)
                    .iter()
                    .take(k.unwrap_or(usize::MAX))
                    .enumerate()
                    .map(|(i, e)| serde_json::json!({"docid": e.docid, "rank": i + 1, "score": e.score}))
                    .collect();
                writeln!(out, "{}", serde_json::json!({"qid": qid, "hits": hits}))?;
            }
            Ok(())
        }
    }
}
