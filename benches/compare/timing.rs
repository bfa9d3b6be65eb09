//! Timing harness used by `compare_flat.py`: searches a vellum database with the queries of an
//! `.npy` file and prints one JSON object of timings (seconds) and the top-k ids of the first
//! queries (for the agreement check against the peer).
//!
//! `cargo bench --bench compare_timing -- --db DB --collection C --field F --queries Q.npy
//!  [--k 10] [--reps 5] [--single 200]`

use std::time::Instant;

use vellum::ingest::array::Array;
use vellum::{Database, SearchRequest, Strategy};

#[path = "args.rs"]
mod args;
use args::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = arg(&args, "--db", None);
    let collection = arg(&args, "--collection", Some("docs"));
    let field = arg(&args, "--field", Some("emb"));
    let k: usize = arg(&args, "--k", Some("10")).parse().unwrap();
    let reps: usize = arg(&args, "--reps", Some("5")).parse().unwrap();
    let single: usize = arg(&args, "--single", Some("200")).parse().unwrap();
    let q = Array::open(std::path::Path::new(&arg(&args, "--queries", None)), None).unwrap();
    let (nq, dim) = (q.shape()[0], q.shape()[1]);
    let mut queries = vec![0f32; nq * dim];
    q.read_f32(0, &mut queries).unwrap();

    let t = Instant::now();
    let snap = Database::open(&db).unwrap().snapshot().unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let coll = snap.collection(&collection).unwrap();
    let batch = SearchRequest::dense_batch(&field, &queries, k).with_strategy(Strategy::Auto);
    let warm = coll.search(&batch).unwrap(); // warm-up: page in the mapped file
                                             // Batches: the default, and each exact batch path (interleaved).
    let (mut batch_s, mut paths) = (Vec::new(), serde_json::Map::new());
    let strategies = [
        ("coded", Strategy::Coded),
        ("screened", Strategy::Screened),
        ("blocked", Strategy::Blocked),
    ];
    let mut path_s = vec![Vec::new(); strategies.len()];
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(coll.search(&batch).unwrap());
        batch_s.push(t.elapsed().as_secs_f64());
        for ((_, strategy), out) in strategies.iter().zip(&mut path_s) {
            let req = SearchRequest::dense_batch(&field, &queries, k).with_strategy(*strategy);
            let t = Instant::now();
            std::hint::black_box(coll.search(&req).unwrap());
            out.push(t.elapsed().as_secs_f64());
        }
    }
    for ((name, _), times) in strategies.iter().zip(path_s) {
        paths.insert(format!("batch_{name}_s"), times.into());
    }
    let single = single.min(nq);
    // Single queries: the default (coded, where segments have screening codes) and the full
    // streaming scan, interleaved.
    let (mut single_s, mut streaming_s) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        for (strategy, out) in [
            (Strategy::Auto, &mut single_s),
            (Strategy::Streaming, &mut streaming_s),
        ] {
            let t = Instant::now();
            for row in queries.chunks_exact(dim).take(single) {
                let req = SearchRequest::dense(&field, row, k).with_strategy(strategy);
                std::hint::black_box(coll.search(&req).unwrap());
            }
            out.push(t.elapsed().as_secs_f64() / single as f64);
        }
    }
    let top: Vec<Vec<&str>> = warm
        .iter()
        .take(100)
        .map(|h| h.iter().map(|h| h.id.as_str()).collect())
        .collect();
    println!(
        "{}",
        serde_json::json!({"open_s": open_s, "batch_s": batch_s, "single_query_s": single_s, "single_streaming_s": streaming_s, "simd": vellum::linalg::simd::level().name(), "queries": nq, "top": top, "paths": paths})
    );
}
