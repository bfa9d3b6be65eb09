//! The evaluation / sharding / interop workflow through the `vellum` binary: eval against
//! pytrec_eval fixtures, DPR answer accuracy, sharded ingest + multi-database search equal to one
//! database, merge-runs, convert-run, export, import-tevatron.

mod common;

use std::path::{Path, PathBuf};

use common::{fail, noise, ok, vellum};

use vellum::ingest::array::{write_npy_f32, Array};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/eval")
        .join(name)
        .display()
        .to_string()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap()
}

#[test]
fn eval_prints_pytrec_eval_means() {
    let t = tempfile::tempdir().unwrap();
    let expected = json(&std::fs::read_to_string(fixture("expected.json")).unwrap());
    let queries = expected.as_object().unwrap();
    let mean = |m: &str| {
        queries
            .values()
            .map(|v| v[m].as_f64().unwrap())
            .sum::<f64>()
            / queries.len() as f64
    };
    for (qrels, run) in [("qrels.trec", "run.trec"), ("qrels.beir.tsv", "run.tsv")] {
        let out = ok(
            t.path(),
            &[
                "eval",
                "--qrels",
                &fixture(qrels),
                "--run",
                &fixture(run),
                "--metrics",
                "mrr@10,recall@100,ndcg@10,map",
                "--json",
            ],
        );
        let got = json(&out);
        for m in ["mrr@10", "recall@100", "ndcg@10", "map"] {
            assert!(
                (got[m].as_f64().unwrap() - mean(m)).abs() < 1e-6,
                "{m}: {got}"
            );
        }
        assert_eq!(got.as_object().unwrap().len(), 4, "only the means: {got}");
    }
    let out = ok(
        t.path(),
        &[
            "eval",
            "--qrels",
            &fixture("qrels.trec"),
            "--run",
            &fixture("run.trec"),
            "--metrics",
            "ndcg@10",
            "--json",
            "--per-query",
        ],
    );
    let got = json(&out);
    assert!(
        (got["per_query"]["q6"]["ndcg@10"].as_f64().unwrap()
            - expected["q6"]["ndcg@10"].as_f64().unwrap())
        .abs()
            < 1e-6
    );
    // Text output, trec_eval style.
    let out = ok(
        t.path(),
        &[
            "eval",
            "--qrels",
            &fixture("qrels.trec"),
            "--run",
            &fixture("run.trec"),
            "--metrics",
            "map",
        ],
    );
    assert!(
        out.contains(&format!("map\tall\t{:.4}", mean("map"))),
        "{out}"
    );
    // Bad input: unknown metric, malformed run line.
    let e = fail(
        t.path(),
        &[
            "eval",
            "--qrels",
            &fixture("qrels.trec"),
            "--run",
            &fixture("run.trec"),
            "--metrics",
            "mrr@10,bleu",
        ],
    );
    assert!(e.contains("unknown metric \"bleu\""), "{e}");
    std::fs::write(
        t.path().join("bad.trec"),
        "q1 Q0 d1 1 0.5 x\nq1 Q0 d2 2 x\n",
    )
    .unwrap();
    let e = fail(
        t.path(),
        &[
            "eval",
            "--qrels",
            &fixture("qrels.trec"),
            "--run",
            "bad.trec",
        ],
    );
    assert!(e.contains("bad.trec:line 2: expected 6 fields"), "{e}");
    std::fs::write(
        t.path().join("dup.trec"),
        "q1 Q0 d1 1 0.5 x\nq1 Q0 d1 2 0.4 x\n",
    )
    .unwrap();
    let e = fail(
        t.path(),
        &[
            "eval",
            "--qrels",
            &fixture("qrels.trec"),
            "--run",
            "dup.trec",
        ],
    );
    assert!(
        e.contains("dup.trec:line 2: document \"d1\" is listed twice"),
        "{e}"
    );
}

#[test]
fn answer_accuracy_reads_passage_text_from_the_database() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let n = std::fs::read_to_string(fixture("passages.jsonl"))
        .unwrap()
        .lines()
        .count();
    write_npy_f32(&d.join("p.npy"), &[n, 2], &vec![0.5; n * 2]).unwrap();
    ok(d, &["create", "db", "-c", "wiki", "-f", "e:dense:2"]);
    ok(
        d,
        &[
            "ingest",
            "db",
            "-c",
            "wiki",
            "--docs",
            &fixture("passages.jsonl"),
            "--vectors",
            "e=p.npy",
        ],
    );
    let out = ok(
        d,
        &[
            "eval",
            "--run",
            &fixture("run.answers.trec"),
            "--answers",
            &fixture("answers.jsonl"),
            "--topk",
            "1,3,5,8",
            "--db",
            "db",
            "-c",
            "wiki",
            "--json",
        ],
    );
    let expected = json(&std::fs::read_to_string(fixture("expected_answers.json")).unwrap());
    assert_eq!(json(&out), expected["mean"]);
    let e = fail(
        d,
        &[
            "eval",
            "--run",
            &fixture("run.answers.trec"),
            "--answers",
            &fixture("answers.jsonl"),
        ],
    );
    assert!(e.contains("--answers needs --db and --collection"), "{e}");
}

/// A corpus of `n` docs with 8-d vectors and 20 queries.
fn corpus(d: &Path, n: usize) {
    let mut docs = String::new();
    for i in 0..n {
        docs.push_str(&format!("{{\"id\":\"d{i}\",\"text\":\"t{i}\"}}\n"));
    }
    std::fs::write(d.join("corpus.jsonl"), docs).unwrap();
    write_npy_f32(&d.join("corpus.npy"), &[n, 8], &noise(1, n * 8)).unwrap();
    let q = noise(2, 20 * 8);
    write_npy_f32(&d.join("q.npy"), &[20, 8], &q).unwrap();
}

#[test]
fn sharded_ingest_and_search_equal_one_database() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    corpus(d, 300);
    for db in ["full", "s0", "s1", "s2"] {
        ok(d, &["create", db, "-c", "docs", "-f", "e:dense:8:f32:ip"]);
    }
    ok(
        d,
        &[
            "ingest",
            "full",
            "-c",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--vectors",
            "e=corpus.npy",
        ],
    );
    for (i, db) in ["s0", "s1", "s2"].iter().enumerate() {
        let shard = format!("{i}/3");
        let out = ok(
            d,
            &[
                "ingest",
                db,
                "-c",
                "docs",
                "--docs",
                "corpus.jsonl",
                "--vectors",
                "e=corpus.npy",
                "--shard",
                &shard,
            ],
        );
        assert!(
            out.contains(&format!("ingested 100 documents (shard {i}/3)")),
            "{out}"
        );
    }
    let search = |dbs: &[&str], k: &str| {
        let mut args = vec!["search"];
        for db in dbs {
            args.extend(["--db", db]);
        }
        args.extend([
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
            "-k",
            k,
            "--format",
            "tsv",
        ]);
        ok(d, &args)
    };
    let full = search(&["full"], "10");
    assert_eq!(search(&["s0", "s1", "s2"], "10"), full);
    // The reducer: per-shard run files merged equal the single database's run.
    for (i, db) in ["s0", "s1", "s2"].iter().enumerate() {
        std::fs::write(d.join(format!("run.{i}.tsv")), search(&[db], "10")).unwrap();
    }
    let merged = ok(
        d,
        &[
            "merge-runs",
            "run.0.tsv",
            "run.1.tsv",
            "run.2.tsv",
            "-k",
            "10",
            "--format",
            "tsv",
        ],
    );
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(sorted(&merged), sorted(&full));
    // Overlapping or mismatched shards are refused.
    let e = fail(
        d,
        &[
            "search",
            "--db",
            "full",
            "--db",
            "s0",
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
        ],
    );
    assert!(e.contains("the shards overlap"), "{e}");
    let e = fail(d, &["merge-runs", "run.0.tsv", "run.0.tsv"]);
    assert!(e.contains("the shards overlap"), "{e}");
    ok(
        d,
        &[
            "create",
            "other",
            "-c",
            "docs",
            "-f",
            "e:dense:8:f32:cosine",
        ],
    );
    let e = fail(
        d,
        &[
            "search",
            "--db",
            "full",
            "--db",
            "other",
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
        ],
    );
    assert!(e.contains("mismatched shards: field \"e\" is e:dense:8:f32:ip in full but e:dense:8:f32:cosine in other"), "{e}");
    let args = [
        "ingest",
        "s0",
        "-c",
        "docs",
        "--docs",
        "corpus.jsonl",
        "--shard",
        "3/3",
    ];
    let out = vellum(d, &args);
    assert_eq!(out.status.code(), Some(2), "bad usage");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("0 <= INDEX < COUNT"), "{e}");
}

#[test]
fn search_eval_convert_and_export() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    corpus(d, 120);
    ok(d, &["create", "db", "-c", "docs", "-f", "e:dense:8:f16:ip"]);
    ok(
        d,
        &[
            "ingest",
            "db",
            "-c",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--vectors",
            "e=corpus.npy",
        ],
    );
    let trec = ok(
        d,
        &[
            "search",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
            "-k",
            "5",
        ],
    );
    std::fs::write(d.join("run.trec"), &trec).unwrap();
    // Qrels: the top hit of each query is relevant → mrr@10 = 1.
    let qrels: String = trec
        .lines()
        .filter(|l| l.split(' ').nth(3) == Some("1"))
        .map(|l| {
            format!(
                "{} 0 {} 1\n",
                l.split(' ').next().unwrap(),
                l.split(' ').nth(2).unwrap()
            )
        })
        .collect();
    std::fs::write(d.join("qrels.txt"), qrels).unwrap();
    let out = vellum(
        d,
        &[
            "search",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
            "-k",
            "5",
            "--eval",
            "qrels.txt",
            "--metrics",
            "mrr@10,success@1",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        trec,
        "the run still goes to stdout"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("mrr@10\tall\t1.0000") && err.contains("success@1\tall\t1.0000"),
        "{err}"
    );
    // `search --eval` prints exactly what `vellum eval` prints for the run it writes, also when
    // a judged query gets no relevant hit (measures of 0 print as 0.0000, never -0.0000).
    let mut qrels2 = std::fs::read_to_string(d.join("qrels.txt")).unwrap();
    qrels2.push_str("0 0 no-such-doc 1\n");
    std::fs::write(d.join("qrels2.txt"), &qrels2).unwrap();
    let search_eval = |metrics: &str| {
        let out = vellum(
            d,
            &[
                "search",
                "db",
                "-c",
                "docs",
                "-f",
                "e",
                "--query-vectors",
                "q.npy",
                "-k",
                "5",
                "--eval",
                "qrels2.txt",
                "--metrics",
                metrics,
            ],
        );
        assert!(out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        let table: String = stderr
            .lines()
            .filter(|l| !l.starts_with("note:"))
            .map(|l| format!("{l}\n"))
            .collect();
        (table, String::from_utf8(out.stdout).unwrap())
    };
    for metrics in ["mrr@10,success@1,ndcg@5,map,recall@5,p@1", "ndcg@3"] {
        let (table, run) = search_eval(metrics);
        std::fs::write(d.join("run2.trec"), run).unwrap();
        let eval = ok(
            d,
            &[
                "eval",
                "--qrels",
                "qrels2.txt",
                "--run",
                "run2.trec",
                "--metrics",
                metrics,
            ],
        );
        assert_eq!(table, eval, "{metrics}");
        assert!(!table.contains("-0.0000"), "{table}");
    }
    // convert-run round trip.
    let tsv = ok(d, &["convert-run", "run.trec", "--to", "tsv"]);
    std::fs::write(d.join("run.tsv"), &tsv).unwrap();
    let back = ok(
        d,
        &["convert-run", "run.tsv", "--to", "trec", "--tag", "vellum"],
    );
    assert_eq!(back, trec);
    // export: f16 field → <f2 npy, ids in storage order.
    let out = ok(
        d,
        &[
            "export",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            "--vectors",
            "e.npy",
            "--ids",
            "ids.txt",
        ],
    );
    assert!(out.contains("exported 120 rows of shape [8]"), "{out}");
    let a = Array::open(&d.join("e.npy"), None).unwrap();
    assert_eq!(a.shape(), &[120, 8]);
    let (mut got, orig) = (
        vec![0f32; 8],
        Array::open(&d.join("corpus.npy"), None).unwrap(),
    );
    let mut want = vec![0f32; 8];
    a.read_f32(5 * 8, &mut got).unwrap();
    orig.read_f32(5 * 8, &mut want).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-3, "{g} vs {w}");
    }
    let ids = std::fs::read_to_string(d.join("ids.txt")).unwrap();
    assert_eq!(ids.lines().nth(5), Some("d5"));
}

#[test]
fn import_tevatron_pickles() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let pkl = |n: &str| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tevatron")
            .join(n)
            .display()
            .to_string()
    };
    ok(d, &["create", "db", "-c", "docs", "-f", "e:dense:4:f32:ip"]);
    let out = ok(
        d,
        &[
            "import-tevatron",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            &pkl("corpus.0.pkl"),
            &pkl("corpus.1.pkl"),
        ],
    );
    assert!(out.contains("imported 8 documents from 2 pickles"), "{out}");
    let doc = json(&ok(d, &["get", "db", "-c", "docs", "--id", "101"]));
    assert_eq!(doc["fields"]["e"]["shape"], serde_json::json!([4]));
    ok(d, &["create", "db", "-c", "wide", "-f", "e:dense:8:f32:ip"]);
    let e = fail(
        d,
        &[
            "import-tevatron",
            "db",
            "-c",
            "wide",
            "-f",
            "e",
            &pkl("corpus.0.pkl"),
        ],
    );
    assert!(
        e.contains("corpus.0.pkl:pickle: vectors have dimension 4, but field \"e\" (e:dense:8:f32:ip) has dimension 8"),
        "{e}"
    );
    // Nothing of the failed import was committed.
    let info = ok(d, &["info", "db"]);
    assert!(info.contains("collection wide: 0 documents"), "{info}");
}
