//! Retrieval evaluation: TREC qrels and runs, trec_eval's measures, DPR answer accuracy, and run
//! files (read, write, convert, merge).
//!
//! Numbers equal `pytrec_eval` / `ir-measures` on the same files (tested against fixtures produced by
//! `tests/fixtures/eval/generate.py`): ranks within a query come from the scores as trec_eval derives
//! them (score descending, ties by docid descending), whatever order the run file lists; a document
//! is relevant when its judgement is ≥ 1; unjudged documents are not relevant; the mean is over the
//! queries that are both judged and in the run, as `pytrec_eval` reports them.
//!
//! ```
//! use vellum::eval::{evaluate, parse_measures, Qrels, Run};
//! let qrels = Qrels::parse("q1 0 d1 1\nq1 0 d2 0\n", "qrels.txt").unwrap();
//! let run = Run::parse("q1 Q0 d2 1 2.0 x\nq1 Q0 d1 2 1.0 x\n", "run.trec").unwrap();
//! let measures = parse_measures("mrr@10,recall@100").unwrap();
//! let e = evaluate(&qrels, &run, &measures);
//! assert_eq!(e.mean, vec![0.5, 1.0]);
//! ```

pub mod answers;
pub mod measures;
pub mod qrels;
pub mod run;

pub use answers::{answer_accuracy, has_answers, read_answers, AnswerAccuracy};
pub use measures::{evaluate, parse_measures, Evaluation, Measure, MeasureSpec};
pub use qrels::Qrels;
pub use run::{write_ranked, Run, RunEntry, RunFormat};

use std::path::Path;

use crate::error::{Error, Result};

/// A measure value with 4 decimals, as trec_eval prints it; never `-0.0000`.
pub fn fixed4(v: f64) -> String {
    let s = format!("{v:.4}");
    if s == "-0.0000" {
        "0.0000".into()
    } else {
        s
    }
}

/// Reads a whole text file, naming it in errors.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // A UTF-8 byte-order mark (Windows editors) is not part of the first line.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| Error::BadInputFile {
        path: path.to_path_buf(),
        location: format!("byte {}", e.utf8_error().valid_up_to()),
        detail: "not valid UTF-8".into(),
    })
}

/// A [`Error::BadInputFile`] at a 1-based line.
pub(crate) fn bad_line(path: &str, line: usize, detail: impl Into<String>) -> Error {
    Error::BadInputFile {
        path: path.into(),
        location: format!("line {line}"),
        detail: detail.into(),
    }
}
