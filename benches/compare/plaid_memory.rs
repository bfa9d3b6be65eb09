//! Anonymous memory of a PLAID index build, with the packed residuals held in memory or spilled
//! to a temporary file (`WriterOptions::index_memory_bytes`).
//!
//! `cargo bench --bench compare_plaid_memory -- --db DIR [--docs 20000] [--tokens 50]
//!  [--op reindex|compact] [--budget-mib 256]`.
//!
//! When `DIR` does not exist (a first process): creates it with `--docs` documents of
//! `--tokens` clustered 128-d f16 token vectors; for `--op compact` also declares a 2-bit PLAID
//! index, reindexes, and adds 2 % more documents in a second segment (encoded with the same
//! codec). Otherwise runs the operation with the given budget: `reindex` declares the index and
//! trains a codec, encoding every token; `compact` merges the two segments, copying the big
//! one's codes and residuals (no re-clustering under 5 % added rows). Meanwhile it samples the
//! process's anonymous resident memory (`RssAnon`: the mapped segments' pages do not count) every
//! 5 ms; prints one JSON object with the baseline and peak (MiB), seconds, tokens and residual
//! bytes. Linux only (reads `/proc/self/status`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::meta::PlaidParams;
use vellum::plaid::SplitMix64;
use vellum::{Database, Document, FieldSpec, Schema, WriterOptions};

#[path = "args.rs"]
mod args;
use args::arg;

const DIM: usize = 128;

/// `RssAnon` of this process, in KiB.
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}

/// A unit vector near one of 256 fixed centres.
fn token(centres: &[Vec<f32>], rng: &mut SplitMix64) -> Vec<f32> {
    let c = &centres[rng.below(centres.len())];
    let mut v: Vec<f32> = c
        .iter()
        .map(|x| x + 0.3 * (rng.below(2001) as f32 / 1000.0 - 1.0) / (DIM as f32).sqrt())
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn create(dir: &std::path::Path, docs: usize, tokens: usize, op: &str) {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{DIM}:f16:ip")).unwrap()),
    )
    .unwrap();
    let mut rng = SplitMix64::new(7);
    let centres: Vec<Vec<f32>> = (0..256)
        .map(|_| token(&[vec![0.0; DIM]], &mut rng))
        .map(|c| c.iter().map(|x| x * 10.0).collect())
        .collect();
    let mut add = |w: &mut vellum::Writer, from: usize, to: usize| {
        for d in from..to {
            let mut v = Vec::with_capacity(tokens * DIM);
            for _ in 0..tokens {
                v.extend(token(&centres, &mut rng));
            }
            w.add("c", Document::new(format!("d{d}")).with_multi("tok", v))
                .unwrap();
        }
        w.commit().unwrap();
    };
    add(&mut w, 0, docs);
    if op == "compact" {
        w.set_plaid("c", "tok", Some(PlaidParams::default()))
            .unwrap();
        w.reindex("c").unwrap();
        add(&mut w, docs, docs + docs / 50);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(arg(&args, "--db", None));
    let op = arg(&args, "--op", Some("reindex"));
    if !dir.join("MANIFEST").exists() {
        let docs = arg(&args, "--docs", Some("20000")).parse().unwrap();
        let tokens = arg(&args, "--tokens", Some("50")).parse().unwrap();
        create(&dir, docs, tokens, &op);
        println!("{{\"created\": {docs}}}");
        return;
    }
    let budget: usize = arg(&args, "--budget-mib", Some("256")).parse().unwrap();
    let db = Database::open(&dir).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            index_memory_bytes: budget << 20,
            ..WriterOptions::default()
        })
        .unwrap();
    // Each run needs a fresh copy: compaction merges the two segments once, and a declared
    // index would not be trained again. The kept codec is checked after the compaction.
    let codec_before = {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        match op.as_str() {
            "compact" => assert!(
                c.slots().len() >= 2,
                "compact needs a fresh copy (2 segments)"
            ),
            _ => assert!(
                c.slots()[0].segment.plaid(0).is_none(),
                "reindex needs a fresh copy (no PLAID index yet)"
            ),
        }
        c.slots()[0].segment.plaid(0).map(|v| v.unwrap().codec_id)
    };
    let base = rss_anon_kib();
    let peak = AtomicU64::new(base);
    let done = AtomicBool::new(false);
    let spills = vellum::storage::spill_files_created();
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        match op.as_str() {
            "reindex" => {
                w.set_plaid("c", "tok", Some(PlaidParams::default()))
                    .unwrap();
                w.reindex("c").unwrap();
            }
            "compact" => {
                w.compact("c").unwrap();
            }
            other => panic!("--op {other}: expected reindex or compact"),
        }
        done.store(true, Ordering::Relaxed);
    });
    let seconds = t.elapsed().as_secs_f64();
    let snap = db.snapshot().unwrap();
    let seg = &snap.collection("c").unwrap().slots()[0].segment;
    let view = seg.plaid(0).unwrap().unwrap();
    if op == "compact" {
        assert_eq!(
            Some(view.codec_id),
            codec_before,
            "the compaction re-clustered: it did not copy codes"
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "op": op,
            "budget_mib": budget,
            "baseline_anon_mib": base as f64 / 1024.0,
            "peak_anon_mib": peak.load(Ordering::Relaxed) as f64 / 1024.0,
            "build_s": seconds,
            "tokens": seg.multi_token_count(0),
            "centroids": view.k(),
            "residual_mib": view.residuals.len() as f64 / 1048576.0,
            "spill_files": vellum::storage::spill_files_created() - spills,
        })
    );
}
