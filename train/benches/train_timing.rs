//! Training steps per second of vellum-train on fixed batches, for
//! `benches/compare/compare_train.py` (which runs the PyTorch peer on the same batches).
//!
//! Usage: cargo bench -p vellum-train --bench train_timing -- MODEL_DIR BATCHES.json STEPS [DEVICE]
//! (DEVICE: cpu, or cuda:N in a build with the `cuda-train` feature).
//! BATCHES.json: {"query_max_len", "passage_max_len", "group", "temperature", "lr",
//! "batches": [{"queries": [...], "passages": [...]}]}. Prints one JSON line.

use std::time::Instant;

// The allocator of the `vellum` CLI, which runs `vellum train`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use vellum::encode::{EncoderOptions, ModelDir, TextEncoder};
use vellum_train::loss::contrastive_loss;
use vellum_train::optim::{AdamW, OptimConfig};
use vellum_train::tower::Tower;

/// Token ids of one batch: queries, then passages (groups in order).
type Batch = (Vec<Vec<u32>>, Vec<Vec<u32>>);

fn main() {
    // As `vellum train` (tools/src/commands/train.rs): freed memory stays in the process
    // (`mi_option_purge_delay`, 15, set to −1) unless VELLUM_PURGE is set.
    if std::env::var_os("VELLUM_PURGE").is_none() {
        // SAFETY: stores an integer option of mimalloc; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(15, -1) }
    }
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() < 4 {
        eprintln!("usage: train_timing MODEL_DIR BATCHES.json STEPS [DEVICE]");
        std::process::exit(2);
    }
    let dir = ModelDir::at(args[1].clone().into(), &args[1]).unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[2]).unwrap()).unwrap();
    let steps: usize = args[3].parse().unwrap();
    let device = vellum_train::trainer::candle_device(
        args.get(4).map_or("cpu", String::as_str).parse().unwrap(),
    )
    .unwrap();
    let int = |k: &str| spec[k].as_u64().unwrap() as usize;
    let record = TextEncoder::from_dir(&dir, &EncoderOptions::default())
        .unwrap()
        .record()
        .clone();
    let passage = Tower::load(&dir, &record, Some(int("passage_max_len")), &device).unwrap();
    let query = passage.share(&record, Some(int("query_max_len"))).unwrap();
    let params = passage.trainable_vars();
    let mut opt = AdamW::new(
        params,
        OptimConfig {
            lr: spec["lr"].as_f64().unwrap(),
            total_steps: steps,
            ..Default::default()
        },
    );
    let batches: Vec<Batch> = spec["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let tok = |t: &Tower, k: &str| -> Vec<Vec<u32>> {
                b[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|s| t.tokenize(s.as_str().unwrap()).unwrap())
                    .collect()
            };
            (tok(&query, "queries"), tok(&passage, "passages"))
        })
        .collect();
    let group = int("group");
    let temperature = spec["temperature"].as_f64().unwrap();
    let mut losses = Vec::new();
    // One warm-up step (allocations, page faults), not timed.
    let mut run = |i: usize, losses: &mut Vec<f64>| {
        let (q, p) = &batches[i % batches.len()];
        let loss = contrastive_loss(
            &query.encode(q).unwrap(),
            &passage.encode(p).unwrap(),
            group,
            temperature,
        )
        .unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap() as f64);
        opt.accumulate(&loss.backward().unwrap()).unwrap();
        opt.step().unwrap();
    };
    run(0, &mut Vec::new());
    let t = Instant::now();
    for i in 0..steps {
        run(i + 1, &mut losses);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"steps": steps, "seconds": secs, "steps_per_sec": steps as f64 / secs, "losses": losses})
    );
}
