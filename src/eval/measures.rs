//! trec_eval's measures under short names: `mrr[@k]`, `recall@k`, `p@k`, `ndcg[@k]`, `map[@k]`,
//! `success@k`.

use std::collections::BTreeMap;

use super::qrels::Qrels;
use super::run::Run;
use crate::error::{Error, Result};

/// One measure. A cutoff `k` looks at the top `k` documents of the ranking only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Reciprocal rank of the first relevant document (trec_eval `recip_rank`; with a cutoff, on
    /// the run cut to its top `k`, as ir-measures' `RR@k`).
    Mrr(Option<usize>),
    /// Relevant documents in the top `k`, divided by `k` (`P_k`).
    Precision(usize),
    /// Relevant documents in the top `k`, divided by all relevant documents (`recall_k`).
    Recall(usize),
    /// Normalised discounted cumulative gain with the grade as gain and `log2(rank + 1)` discount
    /// (`ndcg`, `ndcg_cut_k`).
    Ndcg(Option<usize>),
    /// Average precision (`map`, `map_cut_k`).
    Map(Option<usize>),
    /// 1 when a relevant document is in the top `k`, else 0 (`success_k`).
    Success(usize),
}

/// A measure and the name the user gave it (used as its key in reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureSpec {
    /// The name as written, e.g. `"mrr@10"`.
    pub name: String,
    /// The measure.
    pub measure: Measure,
}

const SUPPORTED: &str = "mrr[@k], recall@k, p@k (or precision@k), ndcg[@k], map[@k], success@k";

impl std::str::FromStr for MeasureSpec {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, cut) = match lower.split_once('@') {
            Some((b, k)) => match k.parse::<usize>() {
                Ok(k) if k > 0 => (b.to_string(), Some(k)),
                _ => {
                    return Err(Error::parameter(
                        "metric",
                        format!("{name:?}: cutoff {k:?} is not a positive integer"),
                    ))
                }
            },
            None => (lower.clone(), None),
        };
        let need_cut = |m: fn(usize) -> Measure| {
            cut.map(m).ok_or_else(|| {
                Error::parameter("metric", format!("{name:?} needs a cutoff, e.g. {base}@10"))
            })
        };
        let measure = match base.as_str() {
            "mrr" | "rr" | "recip_rank" => Measure::Mrr(cut),
            "p" | "precision" => need_cut(Measure::Precision)?,
            "recall" | "r" => need_cut(Measure::Recall)?,
            "ndcg" => Measure::Ndcg(cut),
            "map" | "ap" => Measure::Map(cut),
            "success" => need_cut(Measure::Success)?,
            _ => {
                return Err(Error::parameter(
                    "metric",
                    format!("unknown metric {name:?}; supported: {SUPPORTED}"),
                ))
            }
        };
        Ok(MeasureSpec {
            name: name.trim().to_string(),
            measure,
        })
    }
}

/// Parses a comma-separated list such as `mrr@10,recall@100,ndcg@10,map`.
pub fn parse_measures(list: &str) -> Result<Vec<MeasureSpec>> {
    let specs: Vec<MeasureSpec> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_>>()?;
    if specs.is_empty() {
        return Err(Error::parameter(
            "metric",
            format!("no metric given; supported: {SUPPORTED}"),
        ));
    }
    Ok(specs)
}

/// The value of `measure` for one query: `grades` are the judged documents' grades in ranked order
/// (0 for unjudged), `judged` all the query's judgements.
pub fn measure_query(measure: Measure, grades: &[i64], judged: &BTreeMap<String, i64>) -> f64 {
    let relevant = |g: &i64| *g >= 1;
    let num_rel = judged.values().filter(|g| relevant(g)).count();
    let top = |k: Option<usize>| &grades[..k.unwrap_or(usize::MAX).min(grades.len())];
    let hits = |k: usize| top(Some(k)).iter().filter(|g| relevant(g)).count();
    match measure {
        Measure::Mrr(k) => top(k)
            .iter()
            .position(relevant)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Measure::Precision(k) => hits(k) as f64 / k as f64,
        Measure::Recall(k) if num_rel > 0 => hits(k) as f64 / num_rel as f64,
        Measure::Recall(_) => 0.0,
        Measure::Success(k) => f64::from(u8::from(hits(k) > 0)),
        Measure::Map(_) if num_rel == 0 => 0.0,
        Measure::Map(k) => {
            let mut found = 0usize;
            let mut sum = 0.0;
            for (i, g) in top(k).iter().enumerate() {
                if relevant(g) {
                    found += 1;
                    sum += found as f64 / (i + 1) as f64;
                }
            }
            sum / num_rel as f64
        }
        Measure::Ndcg(k) => {
            let gain = |g: i64| g.max(0) as f64;
            let dcg: f64 = top(k)
                .iter()
                .enumerate()
                .map(|(i, &g)| gain(g) / ((i + 2) as f64).log2())
                .sum();
            let mut ideal: Vec<i64> = judged.values().copied().filter(|&g| g > 0).collect();
            ideal.sort_unstable_by(|a, b| b.cmp(a));
            ideal.truncate(k.unwrap_or(usize::MAX));
            let idcg: f64 = ideal
                .iter()
                .enumerate()
                .map(|(i, &g)| gain(g) / ((i + 2) as f64).log2())
                .sum();
            if idcg > 0.0 {
                dcg / idcg
            } else {
                0.0
            }
        }
    }
}

/// Measures per query and their means.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Measure names, in the order given.
    pub names: Vec<String>,
    /// Mean of each measure over the evaluated queries (0 when none).
    pub mean: Vec<f64>,
    /// Per evaluated query (judged and in the run), the value of each measure.
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// Judged queries that the run does not contain (not evaluated, as in `pytrec_eval`).
    pub missing_from_run: Vec<String>,
    /// Run queries without judgements (not evaluated).
    pub unjudged: Vec<String>,
}

impl Evaluation {
    /// Writes the measures as trec_eval prints them: `name<TAB>qid<TAB>value` (4 decimals), per
    /// query when asked, then `queries<TAB>all<TAB>n` and each mean with qid `all`.
    pub fn write_table(
        &self,
        out: &mut dyn std::io::Write,
        per_query: bool,
    ) -> std::io::Result<()> {
        if per_query {
            for (qid, values) in &self.per_query {
                for (name, v) in self.names.iter().zip(values) {
                    writeln!(out, "{name}\t{qid}\t{}", super::fixed4(*v))?;
                }
            }
        }
        writeln!(out, "queries\tall\t{}", self.per_query.len())?;
        for (name, v) in self.names.iter().zip(&self.mean) {
            writeln!(out, "{name}\tall\t{}", super::fixed4(*v))?;
        }
        Ok(())
    }

    /// Notes on the queries that were not evaluated (judged but absent from the run, or in the
    /// run without judgements), one line each; empty when every query was evaluated.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.missing_from_run.is_empty() {
            notes.push(format!(
                "{} judged queries are not in the run and were not evaluated (e.g. {:?})",
                self.missing_from_run.len(),
                self.missing_from_run[0]
            ));
        }
        if !self.unjudged.is_empty() {
            notes.push(format!(
                "{} queries of the run have no judgements and were not evaluated (e.g. {:?})",
                self.unjudged.len(),
                self.unjudged[0]
            ));
        }
        notes
    }

    /// `{"name": mean, ...}`, plus `"per_query": {qid: {"name": value}}` when asked.
    pub fn to_json(&self, per_query: bool) -> serde_json::Value {
        let obj = |values: &[f64]| {
            serde_json::Value::Object(
                self.names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (n.clone(), serde_json::json!(v)))
                    .collect(),
            )
        };
        let mut out = obj(&self.mean);
        if per_query {
            let pq: serde_json::Map<String, serde_json::Value> = self
                .per_query
                .iter()
                .map(|(q, v)| (q.clone(), obj(v)))
                .collect();
            out["per_query"] = serde_json::Value::Object(pq);
        }
        out
    }
}

/// Evaluates `run` against `qrels` on the queries present in both.
pub fn evaluate(qrels: &Qrels, run: &Run, measures: &[MeasureSpec]) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for (qid, judged) in &qrels.queries {
        if !run.queries.contains_key(qid) {
            continue;
        }
        let grades: Vec<i64> = run
            .ranked(qid)
            .iter()
            .map(|e| judged.get(&e.docid).copied().unwrap_or(0))
            .collect();
        let values = measures
            .iter()
            .map(|m| measure_query(m.measure, &grades, judged))
            .collect();
        per_query.insert(qid.clone(), values);
    }
    let n = per_query.len();
    let mean = (0..measures.len())
        .map(|i| {
            if n == 0 {
                0.0
            } else {
                per_query.values().map(|v: &Vec<f64>| v[i]).sum::<f64>() / n as f64
            }
        })
        .collect();
    Evaluation {
        names: measures.iter().map(|m| m.name.clone()).collect(),
        mean,
        per_query,
        missing_from_run: qrels
            .queries
            .keys()
            .filter(|q| !run.queries.contains_key(*q))
            .cloned()
            .collect(),
        unjudged: {
            let mut u: Vec<String> = run
                .queries
                .keys()
                .filter(|q| !qrels.queries.contains_key(*q))
                .cloned()
                .collect();
            u.sort();
            u
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_unknown() {
        let m = parse_measures("mrr@10, recall@100,NDCG@10,map,p@5,success@1,mrr").unwrap();
        assert_eq!(m[0].measure, Measure::Mrr(Some(10)));
        assert_eq!(m[2].name, "NDCG@10");
        assert_eq!(m[3].measure, Measure::Map(None));
        assert_eq!(m[6].measure, Measure::Mrr(None));
        let e = parse_measures("mrr@10,bleu").unwrap_err().to_string();
        assert!(
            e.contains("unknown metric \"bleu\"; supported: mrr[@k]"),
            "{e}"
        );
        let e = parse_measures("recall").unwrap_err().to_string();
        assert!(e.contains("needs a cutoff, e.g. recall@10"), "{e}");
        let e = parse_measures("ndcg@0").unwrap_err().to_string();
        assert!(e.contains("cutoff \"0\" is not a positive integer"), "{e}");
    }

    #[test]
    fn hand_computed_values() {
        let judged: BTreeMap<String, i64> = [("a", 2), ("b", 0), ("c", 1), ("z", 3)]
            .iter()
            .map(|(d, g)| (d.to_string(), *g))
            .collect();
        // Ranked: x (unjudged), a (2), b (0), c (1).
        let grades = [0, 2, 0, 1];
        let m = |m| measure_query(m, &grades, &judged);
        assert_eq!(m(Measure::Mrr(None)), 0.5);
        assert_eq!(m(Measure::Mrr(Some(1))), 0.0);
        assert_eq!(m(Measure::Precision(2)), 0.5);
        assert_eq!(m(Measure::Recall(4)), 2.0 / 3.0);
        assert_eq!(m(Measure::Map(None)), (1.0 / 2.0 + 2.0 / 4.0) / 3.0);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        assert!((m(Measure::Ndcg(None)) - dcg / idcg).abs() < 1e-12);
        assert_eq!(m(Measure::Success(1)), 0.0);
        assert_eq!(m(Measure::Success(2)), 1.0);
    }
}
