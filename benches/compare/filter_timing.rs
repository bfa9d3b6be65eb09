//! Filtered search timing (`compare_filters.py` drives it): builds (once) a database of the corpus
//! with metadata `{"bucket": (i · 7919) mod 1000}` and an HNSW index, then for each selectivity
//! (none, 50 %, 10 %, 1 %, 0.1 %: `{"bucket": {"$lt": b}}`) measures, one query per call on one
//! thread: HNSW search at `ef` (recall@k against filtered exact search, queries/s, hits returned)
//! and filtered exact search (queries/s). Also the one-off cost of the first filtered query (the
//! metadata column's build). Prints one markdown table.
//!
//! `cargo bench --bench compare_filter_timing -- --db DB --corpus X.npy --queries Q.npy
//!  [--metric l2] [--k 10] [--ef 64] [--reps 3]`

use std::collections::HashSet;
use std::time::Instant;

use vellum::filter::Filter;
use vellum::hnsw::HnswParams;
use vellum::ingest::array::Array;
use vellum::{DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest};

#[path = "args.rs"]
mod args;
use args::arg;

fn read(path: &str) -> (Vec<f32>, usize, usize) {
    let a = Array::open(std::path::Path::new(path), None).unwrap();
    let (n, d) = (a.shape()[0], a.shape()[1]);
    let mut v = vec![0f32; n * d];
    a.read_f32(0, &mut v).unwrap();
    (v, n, d)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db_path = std::path::PathBuf::from(arg(&args, "--db", None));
    let k: usize = arg(&args, "--k", Some("10")).parse().unwrap();
    let ef: usize = arg(&args, "--ef", Some("64")).parse().unwrap();
    let reps: usize = arg(&args, "--reps", Some("3")).parse().unwrap();
    let metric = Metric::parse(&arg(&args, "--metric", Some("l2"))).unwrap();
    let (queries, nq, dim) = read(&arg(&args, "--queries", None));
    if !db_path.exists() {
        let (x, n, d) = read(&arg(&args, "--corpus", None));
        let db = Database::create(&db_path).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::dense("emb", d as u32, DType::F32, metric)),
        )
        .unwrap();
        w.set_index("docs", "emb", Some(HnswParams::default()))
            .unwrap();
        for i in 0..n {
            w.add(
                "docs",
                Document::new(format!("{i}"))
                    .with_dense("emb", x[i * d..(i + 1) * d].to_vec())
                    .with_metadata(serde_json::json!({"bucket": (i * 7919) % 1000})),
            )
            .unwrap();
        }
        let t = Instant::now();
        w.commit().unwrap();
        eprintln!(
            "built {n} rows + HNSW in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let snap = Database::open(&db_path).unwrap().snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let rows: u64 = c.slots().iter().map(|s| s.segment.rows() as u64).sum();
    println!(
        "| filter | matching rows | HNSW path | HNSW recall@{k} | HNSW q/s | hits = min(k, matches) | exact q/s | HNSW / exact |"
    );
    println!("|---|---:|---|---:|---:|---|---:|---:|");
    for bucket in [None, Some(500), Some(100), Some(10), Some(1)] {
        let filter =
            bucket.map(|b| Filter::parse(&format!(r#"{{"bucket": {{"$lt": {b}}}}}"#)).unwrap());
        let with = |r: SearchRequest<'_>| -> Vec<Vec<String>> {
            let r = match &filter {
                Some(f) => r.with_filter(f),
                None => r,
            };
            c.search(&r)
                .unwrap()
                .into_iter()
                .map(|h| h.into_iter().map(|h| h.id).collect())
                .collect()
        };
        if bucket == Some(500) {
            let t = Instant::now();
            with(SearchRequest::dense("emb", &queries[..dim], k));
            eprintln!(
                "first filtered query (builds the 'bucket' column of {rows} rows): {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let truth = with(SearchRequest::dense_batch("emb", &queries, k).exact());
        let time = |exact: bool| -> (f64, Vec<Vec<String>>) {
            let mut best = f64::MAX;
            let mut out = Vec::new();
            for _ in 0..reps {
                out.clear();
                let t = Instant::now();
                pool.install(|| {
                    for q in queries.chunks_exact(dim) {
                        let r = SearchRequest::dense("emb", q, k).with_ef(ef);
                        out.push(with(if exact { r.exact() } else { r }).remove(0));
                    }
                });
                best = best.min(t.elapsed().as_secs_f64());
            }
            (nq as f64 / best, out)
        };
        let (hnsw_qps, approx) = time(false);
        let (exact_qps, _) = time(true);
        let matches = match bucket {
            None => rows,
            Some(b) => rows * b / 1000,
        };
        let mut hit = 0;
        let mut full = true;
        for (a, t) in approx.iter().zip(&truth) {
            let t: HashSet<&String> = t.iter().collect();
            hit += a.iter().filter(|id| t.contains(id)).count();
            full &= a.len() as u64 == (k as u64).min(matches);
        }
        let total: usize = truth.iter().map(Vec::len).sum();
        let path = match bucket {
            None => "graph",
            Some(_) if vellum::search::filtered_exact_rule(matches, rows, ef.max(k), 32) => {
                "exact over matching rows"
            }
            Some(_) => "filtered traversal",
        };
        println!(
            "| {} | {matches} | {path} | {:.4} | {:.0} | {} | {:.0} | {:.2}× |",
            bucket.map_or("none".to_string(), |b| format!(
                "bucket < {b} ({:.1} %)",
                b as f64 / 10.0
            )),
            hit as f64 / total as f64,
            hnsw_qps,
            if full { "yes" } else { "NO" },
            exact_qps,
            hnsw_qps / exact_qps
        );
    }
}
