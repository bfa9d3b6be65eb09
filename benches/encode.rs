//! Encoder benches: the element-wise passes of a transformer layer at every instruction-set level
//! the CPU has (AVX-512, AVX2+FMA, scalar), and whole-model encoding with the tiny test BERT (a fixture, so
//! the bench needs no download). `cargo bench --features encoders --bench encode`.
//! Whole-model throughput against sentence-transformers: `benches/compare/compare_encode.py`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vellum::encode::vector_math;
use vellum::encode::{EncoderOptions, TextEncoder};

fn row(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect()
}

fn element_wise(c: &mut Criterion) {
    let mut g = c.benchmark_group("element_wise");
    let n = 1536; // MiniLM's feed-forward width
    g.throughput(Throughput::Elements(n as u64));
    let x = row(n);
    let (gamma, beta) = (vec![1.1f32; n], vec![0.1f32; n]);
    let mut buf = x.clone();
    // Every level this CPU has (AVX-512, AVX2+FMA, scalar), each against the same input.
    for level in vector_math::available_levels() {
        let name = format!("{level:?}").to_lowercase();
        g.bench_function(format!("gelu_erf/{name}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&x);
                vector_math::gelu_erf_at(level, black_box(&mut buf));
            })
        });
        g.bench_function(format!("softmax/{name}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&x);
                vector_math::softmax_at(level, black_box(&mut buf));
            })
        });
        g.bench_function(format!("layer_norm/{name}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&x);
                vector_math::layer_norm_at(level, black_box(&mut buf), &gamma, &beta, 1e-12);
            })
        });
    }
    g.finish();
}

fn tiny_model(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoders/tiny-a");
    let enc = TextEncoder::load(dir.to_str().unwrap(), &EncoderOptions::default()).unwrap();
    let corpus = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/debian/corpus.jsonl"),
    )
    .unwrap();
    let texts: Vec<String> = corpus
        .lines()
        .take(256)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("encode_tiny_bert");
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.sample_size(20);
    g.bench_function("256_passages", |b| {
        b.iter(|| enc.encode(black_box(&refs)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, element_wise, tiny_model);
criterion_main!(benches);
