//! Crash consistency: a child process ingests, commits and compacts in a loop and is killed with
//! SIGKILL at random moments; every reopen must show exactly one committed state, at least as new
//! as the last commit the child saw return.
//!
//! Iterations: 50 by default, `VELLUM_CRASH_ITERS` for more.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use vellum::{DType, Database, Document, FieldSpec, Metric, Schema, WriterOptions};

use crate::common::{kill_child_after, Rng};

const PER_ROUND: usize = 20;
const ENV_DIR: &str = "VELLUM_CRASH_CHILD_DIR";

fn vector(round: u64, j: usize) -> Vec<f32> {
    vec![round as f32, j as f32, 1.0, -(j as f32)]
}

/// The exact live state after `round` rounds: id -> vector.
fn expected(round: u64) -> BTreeMap<String, Vec<f32>> {
    let mut m = BTreeMap::new();
    for s in 1..=round {
        for j in 0..PER_ROUND {
            // Round s+1 deletes the first five documents of round s.
            if s < round && j < 5 {
                continue;
            }
            m.insert(format!("r{s}-{j}"), vector(s, j));
        }
    }
    if round > 0 {
        m.insert("round".into(), vec![round as f32, 0.0, 0.0, 0.0]);
    }
    m
}

fn observed(db: &Database) -> (u64, BTreeMap<String, Vec<f32>>) {
    let snap = db.snapshot().expect("reopen after a crash must succeed");
    let Ok(c) = snap.collection("c") else {
        return (0, BTreeMap::new());
    };
    let mut m = BTreeMap::new();
    c.for_each_live(|d| {
        m.insert(d.id()?.to_string(), d.dense("e")?.to_f32_vec());
        Ok(())
    })
    .unwrap();
    let round = m.get("round").map_or(0, |v| v[0] as u64);
    (round, m)
}

/// The child's workload; runs until killed.
fn child(dir: &Path) {
    let db = if dir.join("MANIFEST").exists() {
        Database::open(dir).unwrap()
    } else {
        Database::create(dir).unwrap()
    };
    let mut w = db
        .writer_with(WriterOptions {
            flush_bytes: 2048,
            screen_min_rows: 1,
            ..WriterOptions::default()
        })
        .unwrap();
    if w.committed().collection("c").is_err() {
        w.create_collection(
            "c",
            Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip)),
        )
        .unwrap();
        w.commit().unwrap();
    }
    let (mut round, _) = observed(&db);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("../committed.log"))
        .unwrap();
    // The state found at start is committed too: a predecessor may have been killed between its
    // commit and its log line, and this child would otherwise never log that round.
    writeln!(log, "{round}").unwrap();
    log.sync_all().unwrap();
    loop {
        round += 1;
        for j in 0..PER_ROUND {
            w.add(
                "c",
                Document::new(format!("r{round}-{j}"))
                    .with_text("t")
                    .with_dense("e", vector(round, j)),
            )
            .unwrap();
        }
        if round > 1 {
            for j in 0..5 {
                assert!(w.delete("c", &format!("r{}-{j}", round - 1)).unwrap());
            }
        }
        w.upsert(
            "c",
            Document::new("round").with_dense("e", vec![round as f32, 0.0, 0.0, 0.0]),
        )
        .unwrap();
        w.commit().unwrap();
        writeln!(log, "{round}").unwrap();
        log.sync_all().unwrap();
        if round % 4 == 0 {
            w.compact("c").unwrap();
        }
    }
}

#[test]
fn child_process_entry() {
    if let Ok(dir) = std::env::var(ENV_DIR) {
        child(Path::new(&dir));
    }
}

#[test]
fn killed_writer_leaves_a_committed_state() {
    let iters: u64 = std::env::var("VELLUM_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("db");
    let mut rng = Rng(0x5eed);
    let mut last_round = 0;
    for i in 0..iters {
        kill_child_after(
            "crash::child_process_entry",
            ENV_DIR,
            &dir,
            Duration::from_millis(5 + rng.below(60)),
            &format!("iteration {i}"),
        );
        if !dir.join("MANIFEST").exists() {
            continue; // killed before the database was created
        }
        let logged: u64 = std::fs::read_to_string(top.path().join("committed.log"))
            .unwrap_or_default()
            .lines()
            .last()
            .map_or(0, |l| l.parse().unwrap());
        let db = Database::open(&dir).unwrap();
        let (round, state) = observed(&db);
        assert!(round == logged || round == logged + 1, "iteration {i}: state of round {round}, but the child logged round {logged} as committed");
        assert!(
            round >= last_round,
            "iteration {i}: went back from round {last_round} to {round}"
        );
        assert_eq!(
            state,
            expected(round),
            "iteration {i}: state is not exactly that of round {round}"
        );
        let report = vellum::verify::verify_database(&dir).unwrap();
        assert!(report.is_ok(), "iteration {i}: {:?}", report.problems);
        last_round = round;
    }
    assert!(
        last_round >= 3,
        "the workload made too little progress ({last_round} rounds) to test anything"
    );
    // A new writer removes what the crashed ones left behind.
    drop(Database::open(&dir).unwrap().writer().unwrap());
    assert!(vellum::verify::verify_database(&dir)
        .unwrap()
        .unreferenced_files
        .is_empty());
}
