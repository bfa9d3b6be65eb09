//! `vellum index`, `create --hnsw`, `search --ef / --exact`, and `info` / `verify` with graphs.

mod common;

use std::collections::HashSet;

use common::{fail, noise, ok};
use vellum::ingest::array::write_npy_f32;

fn ids(run: &str) -> Vec<HashSet<String>> {
    let mut per_query: Vec<HashSet<String>> = Vec::new();
    for line in run.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let q: usize = f[0].parse().unwrap();
        if per_query.len() <= q {
            per_query.resize(q + 1, HashSet::new());
        }
        per_query[q].insert(f[1].to_string());
    }
    per_query
}

#[test]
fn index_search_info_verify() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let n = 3000;
    let docs: String = (0..n).map(|i| format!("{{\"id\":\"d{i}\"}}\n")).collect();
    std::fs::write(d.join("docs.jsonl"), docs).unwrap();
    write_npy_f32(&d.join("x.npy"), &[n, 16], &noise(1, n * 16)).unwrap();
    write_npy_f32(&d.join("q.npy"), &[30, 16], &noise(2, 30 * 16)).unwrap();
    let out = ok(
        d,
        &[
            "create",
            "db",
            "-c",
            "docs",
            "-f",
            "e:dense:16:f32:l2",
            "--hnsw",
            "e=min_rows=1000,m=12",
        ],
    );
    assert!(
        out.contains("index e: hnsw m=12,ef_construction=200,min_rows=1000,ef=64"),
        "{out}"
    );
    ok(
        d,
        &[
            "ingest",
            "db",
            "-c",
            "docs",
            "--docs",
            "docs.jsonl",
            "--vectors",
            "e=x.npy",
        ],
    );
    let info = ok(d, &["info", "db"]);
    assert!(
        info.contains("hnsw graph on e: m=12 ef_construction=200"),
        "{info}"
    );
    let search = |extra: &[&str]| {
        let mut args = vec![
            "search",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            "--query-vectors",
            "q.npy",
            "-k",
            "10",
            "--format",
            "tsv",
        ];
        args.extend_from_slice(extra);
        ids(&ok(d, &args))
    };
    let exact = search(&["--exact"]);
    let approx = search(&[]);
    let wide = search(&["--ef", "300"]);
    let recall = |got: &[HashSet<String>]| {
        got.iter()
            .zip(&exact)
            .map(|(a, b)| a.intersection(b).count())
            .sum::<usize>() as f64
            / 300.0
    };
    assert!(recall(&approx) >= 0.95, "recall {}", recall(&approx));
    // A wide candidate list is close to exact (the flag reaches the search).
    eprintln!(
        "recall@10: default ef {}, ef 300 {}",
        recall(&approx),
        recall(&wide)
    );
    assert!(recall(&wide) >= 0.99, "recall at ef 300: {}", recall(&wide));
    assert!(ok(d, &["verify", "db"]).contains("ok"));
    // Drop the index: no graph left, search is exact.
    let out = ok(d, &["index", "db", "-c", "docs", "-f", "e", "--drop"]);
    assert!(out.contains("dropped the index of docs.e"), "{out}");
    assert!(!ok(d, &["info", "db"]).contains("hnsw graph"));
    assert_eq!(search(&[]), exact);
    // Index again with other parameters.
    let out = ok(
        d,
        &[
            "index",
            "db",
            "-c",
            "docs",
            "-f",
            "e",
            "--hnsw",
            "m=8,ef_construction=64,min_rows=100",
        ],
    );
    assert!(out.contains("1 of 1 segments have a graph"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(d, &["info", "db", "--json"])).unwrap();
    assert_eq!(json["collections"][0]["indexes"]["e"]["m"], 8);
    assert_eq!(json["collections"][0]["segments"][0]["hnsw"]["e"]["m"], 8);
    // Bad input.
    let e = fail(
        d,
        &["index", "db", "-c", "docs", "-f", "e", "--hnsw", "m=1"],
    );
    assert!(
        e.contains("invalid parameter hnsw: m = 1 is out of range"),
        "{e}"
    );
    let e = fail(
        d,
        &["index", "db", "-c", "docs", "-f", "nope", "--hnsw", "m=8"],
    );
    assert!(e.contains("no field \"nope\""), "{e}");
}
