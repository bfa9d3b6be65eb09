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

#[test]
fn plaid_index_search_info_verify() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let n = 400;
    let lengths: Vec<i64> = (0..n).map(|i| 3 + (i % 5) as i64).collect();
    let tokens: usize = lengths.iter().sum::<i64>() as usize;
    let docs: String = (0..n).map(|i| format!("{{\"id\":\"d{i}\"}}\n")).collect();
    std::fs::write(d.join("docs.jsonl"), docs).unwrap();
    write_npy_f32(&d.join("t.npy"), &[tokens, 16], &noise(3, tokens * 16)).unwrap();
    vellum::ingest::array::write_npy(
        &d.join("len.npy"),
        "<i8",
        &[n],
        bytemuck::cast_slice(&lengths),
    )
    .unwrap();
    write_npy_f32(&d.join("q.npy"), &[40, 16], &noise(4, 40 * 16)).unwrap();
    let qlen: Vec<i64> = vec![4; 10];
    vellum::ingest::array::write_npy(
        &d.join("qlen.npy"),
        "<i8",
        &[10],
        bytemuck::cast_slice(&qlen),
    )
    .unwrap();
    ok(
        d,
        &["create", "db", "-c", "docs", "-f", "tok:multi:16:f16:ip"],
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
            "tok=t.npy",
            "--lengths",
            "tok=len.npy",
        ],
    );
    let out = ok(
        d,
        &[
            "index",
            "db",
            "-c",
            "docs",
            "-f",
            "tok",
            "--plaid",
            "nbits=2,k=32,min_rows=10",
        ],
    );
    assert!(
        out.contains("1 of 1 segments have a PLAID section, 32 centroids"),
        "{out}"
    );
    let info = ok(d, &["info", "db"]);
    assert!(
        info.contains("index tok: plaid nbits=2,centroids=32")
            && info.contains("plaid index on tok: 32 centroids, 2-bit residuals"),
        "{info}"
    );
    let query = [
        "search",
        "db",
        "-c",
        "docs",
        "-f",
        "tok",
        "--query-vectors",
        "q.npy",
        "--query-lengths",
        "qlen.npy",
    ];
    let search = |extra: &[&str]| {
        let args = [&query[..], &["-k", "5", "--format", "tsv"], extra].concat();
        ids(&ok(d, &args))
    };
    let exact = search(&["--exact"]);
    assert_eq!(exact.len(), 10);
    let _ = search(&[]);
    // Without pruning PLAID scores every row exactly.
    let wide = search(&[
        "--ncells",
        "32",
        "--ndocs",
        "100000",
        "--centroid-threshold",
        "-100",
    ]);
    assert_eq!(wide, exact);
    // Every candidate kept by stage 2 (all 400 rows) through stage 4: exact. With only k = 5
    // of them ranked by centroid scores alone, not.
    let full = |n: &str| {
        search(&[
            "--ncells",
            "32",
            "--ndocs",
            "400",
            "--full-scores",
            n,
            "--centroid-threshold",
            "-100",
        ])
    };
    assert_eq!(full("400"), exact);
    assert_ne!(full("5"), exact);
    let decompressed = search(&["--ncells", "4", "--decompress"]);
    assert!(ok(d, &["verify", "db"]).contains("ok"));
    // Codes only: the tokens go, reads decompress them (the same ranking as --decompress).
    ok(
        d,
        &[
            "index",
            "db",
            "-c",
            "docs",
            "-f",
            "tok",
            "--plaid",
            "nbits=2,k=32,min_rows=10,store=codes",
        ],
    );
    let info = ok(d, &["info", "db"]);
    assert!(
        info.contains("store=codes") && info.contains("codes only"),
        "{info}"
    );
    assert_eq!(search(&["--ncells", "4"]), decompressed);
    assert_eq!(search(&["--exact"]).len(), 10);
    assert!(ok(d, &["verify", "db"]).contains("ok"));
    let out = ok(d, &["index", "db", "-c", "docs", "-f", "tok", "--drop"]);
    assert!(out.contains("dropped the PLAID index of docs.tok"), "{out}");
    assert!(!ok(d, &["info", "db"]).contains("plaid index"));
    let e = fail(
        d,
        &[
            "index", "db", "-c", "docs", "-f", "tok", "--plaid", "nbits=3",
        ],
    );
    assert!(e.contains("1, 2 or 4"), "{e}");
    // Bad stage parameters: the error names the parameter.
    for (flag, name) in [("--ncells", "ncells"), ("--full-scores", "full_scores")] {
        let e = fail(d, &[&query[..], &[flag, "0"]].concat());
        assert!(e.contains(name), "{flag}: {e}");
    }
}
