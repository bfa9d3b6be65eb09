//! DPR's top-k retrieval accuracy: a query is answered at `k` when one of its top-`k` passages
//! contains one of its answer strings, compared as pyserini's `has_answers` does: Unicode NFD,
//! DrQA's `SimpleTokenizer` (runs of letters, digits and marks; every other non-space character is
//! a token of its own), lowercase, and a contiguous token-sequence match.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::run::Run;
use super::{bad_line, read_text};
use crate::error::{Error, Result};

fn tokenizer() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]").expect("the tokenizer pattern is valid")
    })
}

/// `text` as pyserini's `has_answers` sees it: NFD, SimpleTokenizer tokens, lowercased.
pub fn answer_tokens(text: &str) -> Vec<String> {
    let nfd: String = text.nfd().collect();
    tokenizer()
        .find_iter(&nfd)
        .map(|m| m.as_str().to_lowercase())
        .collect()
}

fn contains_sequence(words: &[String], answer: &[String]) -> bool {
    answer.is_empty() || words.windows(answer.len()).any(|w| w == answer)
}

/// Whether `text` contains one of `answers` (pyserini's `has_answers`, string mode).
///
/// ```
/// use vellum::eval::has_answers;
/// assert!(has_answers("The café in Zürich.", &["zurich".into(), "Zürich".into()]));
/// assert!(!has_answers("Paris Hilton", &["Paris, France".into()]));
/// ```
pub fn has_answers(text: &str, answers: &[String]) -> bool {
    let words = answer_tokens(text);
    answers
        .iter()
        .any(|a| contains_sequence(&words, &answer_tokens(a)))
}

/// Reads questions' answers from JSONL: one `{"qid": ..., "answers": ["...", ...]}` per line (`id`
/// is accepted for `qid`; a numeric id is used as its decimal string).
pub fn read_answers(path: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let name = path.display().to_string();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in read_text(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| bad_line(&name, i + 1, format!("not valid JSON: {e}")))?;
        let qid = match v.get("qid").or_else(|| v.get("id")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad_line(&name, i + 1, "missing \"qid\" (string or number)")),
        };
        let answers = v
            .get("answers")
            .and_then(|a| a.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|s| s.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad_line(&name, i + 1, "\"answers\" must be an array of strings"))?;
        if !seen.insert(qid.clone()) {
            return Err(bad_line(
                &name,
                i + 1,
                format!("query {qid:?} appears twice"),
            ));
        }
        out.push((qid, answers));
    }
    Ok(out)
}

/// Top-k answer accuracy per cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerAccuracy {
    /// The cutoffs.
    pub ks: Vec<usize>,
    /// Fraction of questions answered within each cutoff (all questions count; one absent from the
    /// run is a miss).
    pub mean: Vec<f64>,
    /// Per question, answered within each cutoff.
    pub per_query: BTreeMap<String, Vec<bool>>,
}

impl AnswerAccuracy {
    /// Writes the accuracies as a trec_eval-style table: `topK<TAB>qid<TAB>0|1` per question when
    /// asked, then `questions<TAB>all<TAB>n` and `topK<TAB>all<TAB>accuracy` (4 decimals).
    pub fn write_table(
        &self,
        out: &mut dyn std::io::Write,
        questions: usize,
        per_query: bool,
    ) -> std::io::Result<()> {
        if per_query {
            for (qid, hits) in &self.per_query {
                for (k, h) in self.ks.iter().zip(hits) {
                    writeln!(out, "top{k}\t{qid}\t{}", u8::from(*h))?;
                }
            }
        }
        writeln!(out, "questions\tall\t{questions}")?;
        for (k, m) in self.ks.iter().zip(&self.mean) {
            writeln!(out, "top{k}\tall\t{}", super::fixed4(*m))?;
        }
        Ok(())
    }

    /// `{"top20": 0.79, ...}`, plus `"per_query"` when asked.
    pub fn to_json(&self, per_query: bool) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (k, m) in self.ks.iter().zip(&self.mean) {
            out.insert(format!("top{k}"), serde_json::json!(m));
        }
        if per_query {
            let pq = self
                .per_query
                .iter()
                .map(|(q, hits)| {
                    let v: serde_json::Map<_, _> = self
                        .ks
                        .iter()
                        .zip(hits)
                        .map(|(k, h)| {
                            (
                                format!("top{k}"),
                                serde_json::json!(f64::from(u8::from(*h))),
                            )
                        })
                        .collect();
                    (q.clone(), serde_json::Value::Object(v))
                })
                .collect();
            out.insert("per_query".into(), serde_json::Value::Object(pq));
        }
        serde_json::Value::Object(out)
    }
}

/// Computes top-k accuracy of `run` for `questions`; `text_of` returns a retrieved passage's text
/// (an error, e.g. for an id the collection does not hold, stops the evaluation).
pub fn answer_accuracy(
    questions: &[(String, Vec<String>)],
    run: &Run,
    ks: &[usize],
    mut text_of: impl FnMut(&str) -> Result<String>,
) -> Result<AnswerAccuracy> {
    if ks.is_empty() || ks.contains(&0) {
        return Err(Error::InvalidInput(format!(
            "top-k cutoffs must be positive integers, got {ks:?}"
        )));
    }
    let max_k = *ks.iter().max().expect("not empty");
    let mut per_query = BTreeMap::new();
    let mut answered = vec![0usize; ks.len()];
    for (qid, answers) in questions {
        let answers: Vec<Vec<String>> = answers.iter().map(|a| answer_tokens(a)).collect();
        // Rank of the first passage holding an answer, if any within max_k.
        let mut first = None;
        for (rank, e) in run.ranked(qid).iter().take(max_k).enumerate() {
            let words = answer_tokens(&text_of(&e.docid)?);
            if answers.iter().any(|a| contains_sequence(&words, a)) {
                first = Some(rank);
                break;
            }
        }
        let hits: Vec<bool> = ks.iter().map(|&k| first.is_some_and(|r| r < k)).collect();
        for (n, h) in answered.iter_mut().zip(&hits) {
            *n += usize::from(*h);
        }
        per_query.insert(qid.clone(), hits);
    }
    let n = questions.len().max(1) as f64;
    Ok(AnswerAccuracy {
        ks: ks.to_vec(),
        mean: answered.iter().map(|&a| a as f64 / n).collect(),
        per_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_simple_tokenizer() {
        assert_eq!(
            answer_tokens("U.S. Army, 1775!"),
            ["u", ".", "s", ".", "army", ",", "1775", "!"]
        );
        // NFD splits é into e + combining accent, which stays inside the word (a mark).
        assert_eq!(answer_tokens("Café"), ["cafe\u{301}"]);
        assert!(answer_tokens("   \t").is_empty());
    }

    #[test]
    fn sequence_match_is_token_level() {
        assert!(has_answers("the Mona Lisa", &["mona lisa".into()]));
        assert!(!has_answers("the Mona Lisa", &["Lisa Mona".into()]));
        assert!(!has_answers(
            "forty-two",
            &["forty two".into(), "two-forty".into()]
        ));
        assert!(has_answers("forty-two", &["forty - two".into()]));
        assert!(!has_answers("Parisian", &["Paris".into()]));
    }
}
