//! vellum's side of `compare_encode.py`: encodes the passages of a JSONL file with a model
//! folder and prints one JSON line with the timing.
//!
//! `cargo bench --features encoders --bench compare_encode_timing -- --model DIR --docs FILE [--batch 32] [--dtype f32]`
//!
//! Measures `TextEncoder::encode` (tokenize, sort by length, batches, forward, pooling), the
//! same work as sentence-transformers' `encode`; model loading is timed separately.

#[path = "args.rs"]
mod args;

use std::time::Instant;

use vellum::encode::{EncoderOptions, TextEncoder};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.iter().any(|a| a == "--bench") && !argv.iter().any(|a| a == "--model") {
        return; // `cargo bench` without arguments: nothing to compare.
    }
    let model = args::arg(&argv, "--model", None);
    let docs = args::arg(&argv, "--docs", None);
    let batch = args::arg(&argv, "--batch", Some("32"));
    let dtype = args::arg(&argv, "--dtype", Some("f32"));
    let texts: Vec<String> = std::fs::read_to_string(&docs)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let options = EncoderOptions::parse(&format!("batch_size={batch},dtype={dtype}")).unwrap();
    let encoder = TextEncoder::load(&model, &options).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    encoder.encode(&refs[..64.min(refs.len())]).unwrap(); // warm-up
    let t1 = Instant::now();
    let out = encoder.encode(&refs).unwrap();
    let secs = t1.elapsed().as_secs_f64();
    let tokens: usize = refs
        .iter()
        .map(|t| encoder.tokenize(t).unwrap().len())
        .sum();
    assert_eq!(out.len(), refs.len() * encoder.dims());
    println!(
        "{}",
        serde_json::json!({
            "impl": "vellum",
            "docs": refs.len(), "tokens": tokens, "seconds": secs, "load_seconds": load_s,
            "docs_per_s": refs.len() as f64 / secs, "threads": rayon::current_num_threads(),
        })
    );
}
