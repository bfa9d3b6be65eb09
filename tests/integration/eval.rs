//! Evaluation against fixtures computed by `pytrec_eval` and by a reimplementation of pyserini's
//! `has_answers` (`tests/fixtures/eval/generate.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vellum::eval::{
    answer_accuracy, evaluate, has_answers, parse_measures, read_answers, Qrels, Run,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

type PerQuery = BTreeMap<String, BTreeMap<String, f64>>;

#[test]
fn measures_equal_pytrec_eval_for_every_file_layout() {
    let expected: PerQuery =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let names: Vec<String> = expected.values().next().unwrap().keys().cloned().collect();
    let measures = parse_measures(&names.join(",")).unwrap();
    for qrels_file in ["qrels.trec", "qrels.beir.tsv"] {
        for run_file in ["run.trec", "run.tsv"] {
            let qrels = Qrels::read(&fixture(qrels_file)).unwrap();
            let run = Run::read(&fixture(run_file)).unwrap();
            let e = evaluate(&qrels, &run, &measures);
            assert_eq!(
                e.per_query.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "evaluated queries ({qrels_file}, {run_file})"
            );
            for (qid, values) in &e.per_query {
                for (name, got) in names.iter().zip(values) {
                    let want = expected[qid][name];
                    assert!(
                        (got - want).abs() <= 1e-6,
                        "{qrels_file} {run_file} {qid} {name}: {got} vs pytrec_eval {want}"
                    );
                }
            }
            for (i, name) in names.iter().enumerate() {
                let want: f64 =
                    expected.values().map(|v| v[name]).sum::<f64>() / expected.len() as f64;
                assert!((e.mean[i] - want).abs() <= 1e-6, "mean {name}");
            }
            assert_eq!(e.missing_from_run, ["q7"]);
            assert_eq!(e.unjudged, ["q13", "q23", "q3", "q33", "q999"]);
        }
    }
}

fn passages() -> BTreeMap<String, String> {
    std::fs::read_to_string(fixture("passages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn answer_accuracy_equals_pyserini_has_answers() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected_answers.json")).unwrap())
            .unwrap();
    let passages = passages();
    let questions = read_answers(&fixture("answers.jsonl")).unwrap();
    let answers: BTreeMap<&str, &Vec<String>> =
        questions.iter().map(|(q, a)| (q.as_str(), a)).collect();
    for (pair, want) in expected["has_answers"].as_object().unwrap() {
        let (pid, qid) = pair.split_once('|').unwrap();
        assert_eq!(
            has_answers(&passages[pid], answers[qid]),
            want.as_bool().unwrap(),
            "passage {pid} ({:?}), answers {:?}",
            passages[pid],
            answers[qid]
        );
    }
    let run = Run::read(&fixture("run.answers.trec")).unwrap();
    let acc = answer_accuracy(&questions, &run, &[1, 3, 5, 8], |id| {
        Ok(passages[id].clone())
    })
    .unwrap();
    assert_eq!(acc.to_json(true), expected_as_produced(&expected));
}

/// The expected file with per-query values in the layout `AnswerAccuracy::to_json` produces.
fn expected_as_produced(expected: &serde_json::Value) -> serde_json::Value {
    let mut out = expected["mean"].clone();
    out["per_query"] = expected["per_query"].clone();
    out
}
