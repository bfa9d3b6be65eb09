//! Run files: TREC (`qid Q0 docid rank score tag`) and Tevatron TSV (`qid<TAB>docid<TAB>score`):
//! reading, trec_eval's ranking, writing (also as JSON lines), and merging the runs of several
//! shards. [`write_ranked`] is the one writer of every run vellum produces (search results,
//! converted and merged runs).

use std::collections::HashMap;

use indexmap::IndexMap;
use std::io::Write;
use std::path::Path;

use super::{bad_line, read_text};
use crate::error::{Error, Result};

/// One retrieved document.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    /// Document id.
    pub docid: String,
    /// Retrieval score (higher is better).
    pub score: f64,
}

/// A run file's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFormat {
    /// `qid Q0 docid rank score tag`.
    Trec,
    /// `qid<TAB>docid<TAB>score` (Tevatron).
    Tsv,
    /// `{"qid": ..., "hits": [{"docid", "rank", "score"}, ...]}`, one line per query (written
    /// only).
    Json,
}

/// Writes one query's ranked documents (best first, `(docid, score)`) in `format`; ranks start at
/// 1. `tag` is the last TREC column.
pub fn write_ranked<'a, S>(
    out: &mut dyn Write,
    format: RunFormat,
    qid: &str,
    ranked: impl IntoIterator<Item = (&'a str, S)>,
    tag: &str,
) -> std::io::Result<()>
where
    S: std::fmt::Display + serde::Serialize,
{
    match format {
        RunFormat::Trec => {
            for (i, (docid, score)) in ranked.into_iter().enumerate() {
                writeln!(out, "{qid} Q0 {docid} {} {score} {tag}", i + 1)?;
            }
        }
        RunFormat::Tsv => {
            for (docid, score) in ranked {
                writeln!(out, "{qid}\t{docid}\t{score}")?;
            }
        }
        RunFormat::Json => {
            let hits: Vec<serde_json::Value> = ranked
                .into_iter()
                .enumerate()
                .map(|(i, (docid, score))| {
                    serde_json::json!({"docid": docid, "rank": i + 1, "score": score})
                })
                .collect();
            writeln!(out, "{}", serde_json::json!({"qid": qid, "hits": hits}))?;
        }
    }
    Ok(())
}

/// Retrieved documents per query. Queries and entries are kept in file order; [`Run::ranked`]
/// gives a query's entries in trec_eval's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    /// Per query id (in order of first appearance), its retrieved documents.
    pub queries: IndexMap<String, Vec<RunEntry>>,
}

/// trec_eval's order: score descending, then document id descending.
fn trec_order(a: &RunEntry, b: &RunEntry) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| b.docid.cmp(&a.docid))
}

impl Run {
    /// Reads a run file (TREC or TSV, detected from the first non-empty line).
    pub fn read(path: &Path) -> Result<Run> {
        Run::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Parses run text; `name` is used in error messages. A document listed twice for one query
    /// is an error.
    ///
    /// ```
    /// let run = vellum::eval::Run::parse("q1\td1\t0.5\nq1\td2\t0.9\n", "run.tsv").unwrap();
    /// let ranked: Vec<&str> = run.ranked("q1").iter().map(|e| e.docid.as_str()).collect();
    /// assert_eq!(ranked, ["d2", "d1"]);
    /// ```
    pub fn parse(text: &str, name: &str) -> Result<Run> {
        let mut run = Run::default();
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut format = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // trec_eval splits a line on any whitespace; a Tevatron TSV line is three
            // tab-separated fields. Tabs and spaces may be mixed in a TREC line.
            let tabs: Vec<&str> = line.split('\t').map(str::trim).collect();
            let words: Vec<&str> = line.split_whitespace().collect();
            let (this, fields) = if tabs.len() == 3 {
                (RunFormat::Tsv, tabs)
            } else if words.len() == 6 {
                (RunFormat::Trec, words)
            } else if words.len() == 3 {
                (RunFormat::Tsv, words)
            } else {
                return Err(bad_line(
                    name,
                    i + 1,
                    format!(
                        "expected 6 fields (qid Q0 docid rank score tag) or 3 (qid docid score), found {}: {line:?}",
                        words.len()
                    ),
                ));
            };
            let format = *format.get_or_insert(this);
            if this != format {
                return Err(bad_line(
                    name,
                    i + 1,
                    format!(
                        "found {} fields, but the file started as {format:?}",
                        fields.len()
                    ),
                ));
            }
            let (qid, docid, score) = match format {
                RunFormat::Trec => (fields[0], fields[2], fields[4]),
                _ => (fields[0], fields[1], fields[2]),
            };
            let score: f64 = score
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite())
                .ok_or_else(|| {
                    bad_line(
                        name,
                        i + 1,
                        format!("score {score:?} is not a finite number"),
                    )
                })?;
            if let Some(first) = seen.insert((qid.to_string(), docid.to_string()), i + 1) {
                return Err(bad_line(
                    name,
                    i + 1,
                    format!("document {docid:?} is listed twice for query {qid:?} (first at line {first})"),
                ));
            }
            run.queries
                .entry(qid.to_string())
                .or_default()
                .push(RunEntry {
                    docid: docid.to_string(),
                    score,
                });
        }
        Ok(run)
    }

    /// A query's documents in trec_eval's order (score descending, ties by docid descending);
    /// empty for an unknown query.
    pub fn ranked(&self, qid: &str) -> Vec<&RunEntry> {
        let mut v: Vec<&RunEntry> = self
            .queries
            .get(qid)
            .map_or(Vec::new(), |e| e.iter().collect());
        v.sort_by(|a, b| trec_order(a, b));
        v
    }

    /// Writes the run ranked, at most `k` documents per query (all when `None`). `tag` is the last
    /// TREC column.
    pub fn write(
        &self,
        out: &mut dyn Write,
        format: RunFormat,
        tag: &str,
        k: Option<usize>,
    ) -> std::io::Result<()> {
        for qid in self.queries.keys() {
            let ranked = self.ranked(qid);
            let top = ranked
                .iter()
                .take(k.unwrap_or(usize::MAX))
                .map(|e| (e.docid.as_str(), e.score));
            write_ranked(out, format, qid, top, tag)?;
        }
        Ok(())
    }

    /// Merges the runs of disjoint shards (the reducer of sharded search): per query, the union of
    /// the documents, cut to the best `k` (all when `None`). `runs` pairs each run with a name for
    /// errors; a document retrieved by two shards means the shards overlap and is an error.
    pub fn merge(runs: &[(String, Run)], k: Option<usize>) -> Result<Run> {
        let mut merged = Run::default();
        let mut origin: HashMap<(&str, &str), &str> = HashMap::new();
        for (name, run) in runs {
            for (qid, entries) in &run.queries {
                for e in entries {
                    if let Some(other) = origin.insert((qid, &e.docid), name) {
                        return Err(Error::MismatchedShards(format!(
                            "document {:?} of query {qid:?} is in both {other} and {name}: the shards overlap",
                            e.docid
                        )));
                    }
                }
                merged
                    .queries
                    .entry(qid.clone())
                    .or_default()
                    .extend(entries.iter().cloned());
            }
        }
        if let Some(k) = k {
            for entries in merged.queries.values_mut() {
                entries.sort_by(trec_order);
                entries.truncate(k);
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_come_from_scores_with_trec_eval_ties() {
        let run = Run::parse("q Q0 a 1 1.0 t\nq Q0 c 2 2.0 t\nq Q0 b 3 1.0 t\n", "r").unwrap();
        let ids: Vec<&str> = run.ranked("q").iter().map(|e| e.docid.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }

    #[test]
    fn trec_lines_split_on_any_whitespace_as_trec_eval_does() {
        // Tabs and spaces mixed (pyserini and hand-made runs), several spaces, trailing blanks.
        for text in [
            "q1\tQ0\td1\t1\t2.0 tag\nq1 Q0 d2 2 1.0\ttag\n",
            "q1  Q0 d1\t 1 2.0   tag \nq1 Q0\td2 2 1.0 tag\n",
        ] {
            let run = Run::parse(text, "r").unwrap();
            let e = &run.queries["q1"];
            assert_eq!((e[0].docid.as_str(), e[0].score), ("d1", 2.0), "{text:?}");
            assert_eq!((e[1].docid.as_str(), e[1].score), ("d2", 1.0), "{text:?}");
        }
        // A three-field TSV line stays Tevatron's layout, spaces around fields ignored.
        let run = Run::parse("q1\t d1 \t0.5\n", "r").unwrap();
        assert_eq!(run.queries["q1"][0].docid, "d1");
        // Every run vellum writes is readable by vellum (JSON is written only).
        let mut out = Vec::new();
        run.write(&mut out, RunFormat::Trec, "t", None).unwrap();
        assert_eq!(
            Run::parse(std::str::from_utf8(&out).unwrap(), "w").unwrap(),
            run
        );
    }

    #[test]
    fn write_then_parse_round_trips_both_formats() {
        let run = Run::parse("q1\td1\t0.25\nq1\td2\t1e-3\nq2\td9\t-4\n", "r").unwrap();
        for format in [RunFormat::Trec, RunFormat::Tsv] {
            let mut out = Vec::new();
            run.write(&mut out, format, "tag", None).unwrap();
            let back = Run::parse(std::str::from_utf8(&out).unwrap(), "w").unwrap();
            for q in run.queries.keys() {
                assert_eq!(run.ranked(q), back.ranked(q));
            }
        }
    }

    #[test]
    fn bad_runs_name_file_and_line() {
        let e = Run::parse("q Q0 a 1 1.0 t\nq Q0 a 2 0.5 t\n", "run.trec").unwrap_err();
        assert!(
            e.to_string().contains(
                "run.trec:line 2: document \"a\" is listed twice for query \"q\" (first at line 1)"
            ),
            "{e}"
        );
        let e = Run::parse("q Q0 a 1 high t\n", "run.trec").unwrap_err();
        assert!(e.to_string().contains("line 1: score \"high\""), "{e}");
        let e = Run::parse("q a 1.0\nq Q0 b 1 1.0 t\n", "run").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: found 6 fields, but the file started as Tsv"),
            "{e}"
        );
        let e = Run::parse("q a\n", "run").unwrap_err();
        assert!(e.to_string().contains("found 2"), "{e}");
    }

    #[test]
    fn merge_keeps_best_k_and_refuses_overlap() {
        let a = Run::parse("q\td1\t3\nq\td2\t1\n", "a").unwrap();
        let b = Run::parse("q\td3\t2\nr\td4\t1\n", "b").unwrap();
        let m = Run::merge(&[("a".into(), a.clone()), ("b".into(), b)], Some(2)).unwrap();
        let ids: Vec<&str> = m.ranked("q").iter().map(|e| e.docid.as_str()).collect();
        assert_eq!(ids, ["d1", "d3"]);
        assert_eq!(m.ranked("r").len(), 1);
        let e = Run::merge(&[("a".into(), a.clone()), ("a2".into(), a)], None).unwrap_err();
        assert!(e.to_string().contains("is in both a and a2"), "{e}");
    }
}
