//! Relevance judgements: TREC qrels (`qid iter docid rel`) and BEIR's TSV (header
//! `query-id<TAB>corpus-id<TAB>score`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{bad_line, read_text};
use crate::error::Result;

/// Judgements: query id → document id → relevance grade (≥ 1 is relevant).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qrels {
    /// Per query, the judged documents and their grades.
    pub queries: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Qrels {
    /// Reads a qrels file (TREC or BEIR TSV, detected from the first line).
    pub fn read(path: &Path) -> Result<Qrels> {
        Qrels::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Parses qrels text; `name` is used in error messages.
    ///
    /// ```
    /// let q = vellum::eval::Qrels::parse("query-id\tcorpus-id\tscore\nq1\td7\t2\n", "qrels.tsv").unwrap();
    /// assert_eq!(q.queries["q1"]["d7"], 2);
    /// ```
    pub fn parse(text: &str, name: &str) -> Result<Qrels> {
        let mut lines = text.lines().enumerate().peekable();
        let beir = lines
            .peek()
            .is_some_and(|(_, l)| l.split('\t').next().map(str::trim) == Some("query-id"));
        if beir {
            lines.next();
        }
        let mut qrels = Qrels::default();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = if beir {
                line.split('\t').map(str::trim).collect()
            } else {
                line.split_whitespace().collect()
            };
            let (qid, docid, rel) = match (beir, fields.as_slice()) {
                (true, [q, d, r]) => (*q, *d, *r),
                (false, [q, _, d, r]) => (*q, *d, *r),
                _ => {
                    let want = if beir {
                        "3 tab-separated fields (query-id, corpus-id, score)"
                    } else {
                        "4 fields (qid iter docid rel)"
                    };
                    return Err(bad_line(
                        name,
                        i + 1,
                        format!("expected {want}, found {}: {line:?}", fields.len()),
                    ));
                }
            };
            let rel: i64 = rel.parse().map_err(|_| {
                bad_line(name, i + 1, format!("relevance {rel:?} is not an integer"))
            })?;
            let docs = qrels.queries.entry(qid.to_string()).or_default();
            if docs.insert(docid.to_string(), rel).is_some() {
                return Err(bad_line(
                    name,
                    i + 1,
                    format!("document {docid:?} is judged twice for query {qid:?}"),
                ));
            }
        }
        Ok(qrels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trec_and_beir_layouts() {
        let t = Qrels::parse("q1 0 d1 1\n\nq1 0 d2 0\nq2 Q0 d1 3\n", "x").unwrap();
        assert_eq!(t.queries["q1"].len(), 2);
        assert_eq!(t.queries["q2"]["d1"], 3);
        let b = Qrels::parse(
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td1\t3\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            b.queries,
            Qrels::parse("q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 3\n", "x")
                .unwrap()
                .queries
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = Qrels::parse("q1 0 d1 1\nq1 d2 1\n", "qrels.txt").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("qrels.txt:line 2: expected 4 fields"),
            "{e}"
        );
        let e = Qrels::parse("q1 0 d1 yes\n", "qrels.txt").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: relevance \"yes\" is not an integer"),
            "{e}"
        );
        let e = Qrels::parse("q1 0 d1 1\nq1 0 d1 2\n", "qrels.txt").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: document \"d1\" is judged twice"),
            "{e}"
        );
    }
}
