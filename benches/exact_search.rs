//! Exact search benches on a 50,000 × 384 collection: one query (streaming), a batch of 1,000
//! (blocked), each element type; MaxSim over 5,000 documents × 32 tokens × 128.
//!
//! The database is built once under `target/bench-data/`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use vellum::{
    DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest, Strategy, WriterOptions,
};

const N: usize = 50_000;
const DIM: usize = 384;

fn rng_vec(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn database() -> Database {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/exact_search_v1");
    if let Ok(db) = Database::open(&dir) {
        return db;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::create(&dir).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            flush_bytes: 64 << 20,
            ..Default::default()
        })
        .unwrap();
    let mut seed = 42u64;
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        let name = format!("dense_{dtype}");
        w.create_collection(
            &name,
            Schema::new().with_field(FieldSpec::dense("emb", DIM as u32, dtype, Metric::Ip)),
        )
        .unwrap();
        for i in 0..N {
            w.add(
                &name,
                Document::new(format!("d{i}")).with_dense("emb", rng_vec(&mut seed, DIM)),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }
    w.create_collection(
        "colbert",
        Schema::new().with_field(FieldSpec::multi("tok", 128, DType::F16, Metric::Ip)),
    )
    .unwrap();
    for i in 0..5_000 {
        w.add(
            "colbert",
            Document::new(format!("d{i}")).with_multi("tok", rng_vec(&mut seed, 32 * 128)),
        )
        .unwrap();
    }
    w.commit().unwrap();
    db
}

fn bench(c: &mut Criterion) {
    let db = database();
    let snap = db.snapshot().unwrap();
    let mut seed = 7u64;
    let queries = rng_vec(&mut seed, 1000 * DIM);
    let mut g = c.benchmark_group("exact_search");
    g.sample_size(10);
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        let coll = snap.collection(&format!("dense_{dtype}")).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("single_query/{dtype}/50k"), |b| {
            b.iter(|| {
                coll.search(&SearchRequest::dense("emb", &queries[..DIM], 10))
                    .unwrap()
            })
        });
        g.throughput(Throughput::Elements(1000));
        for (name, strategy) in [
            ("blocked", Strategy::Blocked),
            ("screened", Strategy::Screened),
        ] {
            g.bench_function(format!("batch_1000/{name}/{dtype}/50k"), |b| {
                b.iter(|| {
                    coll.search(
                        &SearchRequest::dense_batch("emb", &queries, 10).with_strategy(strategy),
                    )
                    .unwrap()
                })
            });
        }
    }
    let colbert = snap.collection("colbert").unwrap();
    let qtok = rng_vec(&mut seed, 32 * 128);
    g.throughput(Throughput::Elements(1));
    g.bench_function("maxsim/5k_docs_x32_tokens/f16", |b| {
        b.iter(|| {
            colbert
                .search(&SearchRequest::multi("tok", &qtok, 10))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
