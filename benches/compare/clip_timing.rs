//! vellum's side of `compare_clip.py`: encodes images with a CLIP folder's image side and prints
//! one JSON line with the timings.
//!
//! `cargo bench --features encoders --bench compare_clip_timing -- --model DIR --images LIST
//!  [--batch 32] [--reps 3]` (LIST: one image path per line)
//!
//! Times, separately: decoding + preprocessing every image (`Encoder::prepare`, on one thread
//! per image in parallel, as the ingest pipeline's workers do) and the forward passes over the
//! prepared batches (`Encoder::encode_prepared`, best of `reps`). Model loading is excluded.

#[path = "args.rs"]
mod args;

use std::time::Instant;

use rayon::prelude::*;
use vellum::encode::{EncoderInput, EncoderOptions, Prepared};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.iter().any(|a| a == "--bench") && !argv.iter().any(|a| a == "--model") {
        return; // `cargo bench` without arguments: nothing to compare.
    }
    let model = args::arg(&argv, "--model", None);
    let list = args::arg(&argv, "--images", None);
    let batch: usize = args::arg(&argv, "--batch", Some("32")).parse().unwrap();
    let reps: usize = args::arg(&argv, "--reps", Some("3")).parse().unwrap();
    let paths: Vec<std::path::PathBuf> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .map(Into::into)
        .collect();
    let dir = vellum::encode::ModelDir::resolve(&model).unwrap();
    let options = EncoderOptions::parse(&format!("batch_size={batch}")).unwrap();
    let t0 = Instant::now();
    let encoder = vellum::encode::load(&dir, &options).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let prepared: Vec<Prepared> = paths
        .par_iter()
        .map(|p| encoder.prepare(&EncoderInput::Image(p)).unwrap())
        .collect();
    let prepare_s = t1.elapsed().as_secs_f64();
    let refs: Vec<&Prepared> = prepared.iter().collect();
    encoder
        .encode_prepared(&refs[..batch.min(refs.len())])
        .unwrap(); // warm-up
    let mut best = f64::MAX;
    let mut first = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let mut values = Vec::new();
        for chunk in refs.chunks(batch) {
            values.extend(encoder.encode_prepared(chunk).unwrap().values);
        }
        best = best.min(t.elapsed().as_secs_f64());
        first = values;
    }
    println!(
        "{}",
        serde_json::json!({
            "images": paths.len(), "batch": batch, "load_s": load_s, "prepare_s": prepare_s,
            "encode_s": best, "dims": encoder.dims(),
            "first": &first[..encoder.dims()],
        })
    );
}
