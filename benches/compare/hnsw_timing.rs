//! Timing harness used by `compare_hnsw.py`: opens a vellum database, then for each `ef` times
//! single queries on one thread and the whole batch on all threads, and prints one JSON object
//! with the timings (seconds) and the top-k ids of every query.
//!
//! `cargo bench --bench compare_hnsw_timing -- --db DB --queries Q.npy [--collection docs]
//!  [--field emb] [--k 10] [--efs 16,32,64,128,256] [--reps 5]` (medians over reps)

use std::time::Instant;

use vellum::ingest::array::Array;
use vellum::{Database, SearchRequest};

#[path = "args.rs"]
mod args;
use args::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = arg(&args, "--db", None);
    let collection = arg(&args, "--collection", Some("docs"));
    let field = arg(&args, "--field", Some("emb"));
    let k: usize = arg(&args, "--k", Some("10")).parse().unwrap();
    let efs: Vec<usize> = arg(&args, "--efs", Some("16,32,64,128,256"))
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let q = Array::open(std::path::Path::new(&arg(&args, "--queries", None)), None).unwrap();
    let (nq, dim) = (q.shape()[0], q.shape()[1]);
    let mut queries = vec![0f32; nq * dim];
    q.read_f32(0, &mut queries).unwrap();

    let t = Instant::now();
    let snap = Database::open(&db).unwrap().snapshot().unwrap();
    let coll = snap.collection(&collection).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let reps: usize = arg(&args, "--reps", Some("5")).parse().unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let single_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for &ef in &efs {
        // Warm-up: page in the mapped file.
        coll.search(&SearchRequest::dense_batch(&field, &queries, k).with_ef(ef))
            .unwrap();
        let mut top = Vec::with_capacity(nq);
        let mut singles = Vec::new();
        for _ in 0..reps {
            top.clear();
            let t = Instant::now();
            single_pool.install(|| {
                for row in queries.chunks_exact(dim) {
                    let hits = coll
                        .search(&SearchRequest::dense(&field, row, k).with_ef(ef))
                        .unwrap();
                    top.push(hits[0].iter().map(|h| h.id.clone()).collect::<Vec<_>>());
                }
            });
            singles.push(t.elapsed().as_secs_f64());
        }
        let single_s = median(singles);
        // The whole query set in one call on one thread (what the peers' 1-thread figures are).
        let single_batch_s = median(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    single_pool.install(|| {
                        std::hint::black_box(
                            coll.search(
                                &SearchRequest::dense_batch(&field, &queries, k).with_ef(ef),
                            )
                            .unwrap(),
                        )
                    });
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let batch_s = median(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(
                        coll.search(&SearchRequest::dense_batch(&field, &queries, k).with_ef(ef))
                            .unwrap(),
                    );
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        runs.push(
            serde_json::json!({"ef": ef, "single_s": single_s, "single_batch_s": single_batch_s, "batch_s": batch_s, "top": top}),
        );
    }
    println!(
        "{}",
        serde_json::json!({"open_s": open_s, "queries": nq, "runs": runs})
    );
}
