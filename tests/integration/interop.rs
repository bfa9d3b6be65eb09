//! Sharded search merges equal one database; Tevatron pickles and export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vellum::eval::{Run, RunEntry};
use vellum::interop::{export_dense, import_tevatron, read_tevatron_pickle};
use vellum::search::merge_shard_hits;
use vellum::{DType, Database, Document, FieldSpec, Hit, Metric, Schema, SearchRequest};

use crate::common::Rng;

fn database(
    dir: &Path,
    field: &FieldSpec,
    docs: &[(String, Vec<f32>)],
    delete: &[&String],
) -> Database {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection("c", Schema::new().with_field(field.clone()))
        .unwrap();
    for (id, v) in docs {
        w.add(
            "c",
            Document::new(id.clone()).with_dense(&field.name, v.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    for id in delete {
        w.delete("c", id).unwrap();
    }
    w.commit().unwrap();
    db
}

fn key(hits: &[Hit]) -> Vec<(String, u32)> {
    hits.iter()
        .map(|h| (h.id.clone(), h.score.to_bits()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn shards_merged_equal_one_database(
        n_docs in 1usize..200, shards in 1usize..5, dim in 1usize..24, mt in 0u8..3,
        k in 1usize..20, nq in 1usize..6, delete_every in 0usize..6, seed in any::<u64>(),
    ) {
        let metric = [Metric::Ip, Metric::Cosine, Metric::L2][mt as usize];
        let field = FieldSpec::dense("e", dim as u32, DType::F32, metric);
        let mut rng = Rng(seed | 1);
        let docs: Vec<(String, Vec<f32>)> = (0..n_docs).map(|i| (format!("d{i}"), rng.vec(dim))).collect();
        let deleted: Vec<&String> = docs.iter().map(|d| &d.0).enumerate()
            .filter(|(i, _)| delete_every > 0 && i % delete_every == 0).map(|(_, id)| id).collect();
        let queries = rng.vec(nq * dim);
        let top = tempfile::tempdir().unwrap();
        let full = database(&top.path().join("full"), &field, &docs, &deleted);
        let want = full.snapshot().unwrap().collection("c").unwrap()
            .search(&SearchRequest::dense_batch("e", &queries, k)).unwrap();
        // Shard i holds documents i, i + n, i + 2n, ... (as `ingest --shard i/n`).
        let mut per_shard = Vec::new();
        let mut runs = Vec::new();
        for s in 0..shards {
            let part: Vec<_> = docs.iter().enumerate().filter(|(i, _)| i % shards == s).map(|(_, d)| d.clone()).collect();
            let gone: Vec<&String> = deleted.iter().copied().filter(|id| part.iter().any(|d| &d.0 == *id)).collect();
            let db = database(&top.path().join(format!("s{s}")), &field, &part, &gone);
            let hits = db.snapshot().unwrap().collection("c").unwrap()
                .search(&SearchRequest::dense_batch("e", &queries, k)).unwrap();
            let mut run = Run::default();
            for (q, h) in hits.iter().enumerate() {
                run.queries.insert(q.to_string(), h.iter().map(|h| RunEntry { docid: h.id.clone(), score: f64::from(h.score) }).collect());
            }
            runs.push((format!("s{s}"), run));
            per_shard.push(hits);
        }
        let names: Vec<String> = (0..shards).map(|s| format!("s{s}")).collect();
        let merged = merge_shard_hits(per_shard, k, &names).unwrap();
        let reduced = Run::merge(&runs, Some(k)).unwrap();
        for (q, w) in want.iter().enumerate() {
            // Scores are computed by the same kernel on the same vectors: equal bit for bit.
            // Ids may differ only among equal scores.
            let scores = |h: &[(String, u32)]| h.iter().map(|x| x.1).collect::<Vec<_>>();
            prop_assert_eq!(scores(&key(&merged[q])), scores(&key(w)));
            let ranked = reduced.ranked(&q.to_string());
            let run_scores: Vec<f64> = ranked.iter().map(|e| e.score).collect();
            let want_scores: Vec<f64> = w.iter().map(|h| f64::from(h.score)).collect();
            prop_assert_eq!(run_scores, want_scores);
            let unique = |s: u32| w.iter().filter(|h| h.score.to_bits() == s).count() == 1;
            for (a, b) in key(&merged[q]).iter().zip(key(w)) {
                if unique(b.1) {
                    prop_assert_eq!(&a.0, &b.0);
                }
            }
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tevatron")
        .join(name)
}

#[derive(serde::Deserialize)]
struct Expected {
    ids: Vec<String>,
    vectors: Vec<Vec<f64>>,
}

#[test]
fn tevatron_pickles_read_back_exactly_and_import() {
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    for (name, want) in &expected {
        let got = read_tevatron_pickle(&fixture(name)).unwrap();
        assert_eq!(got.ids, want.ids, "{name}");
        assert_eq!(got.dim, want.vectors[0].len());
        let flat: Vec<f32> = want.vectors.iter().flatten().map(|v| *v as f32).collect();
        assert_eq!(got.vectors, flat, "{name}");
    }
    // Import all shards, then export: the same ids and vectors come back.
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip)),
    )
    .unwrap();
    let files: Vec<PathBuf> = expected.keys().map(|n| fixture(n)).collect();
    let n = import_tevatron(
        &mut w,
        "c",
        "e",
        &files,
        vellum::ingest::Mode::Add,
        &mut |_| {},
    )
    .unwrap();
    w.commit().unwrap();
    drop(w);
    assert_eq!(n, 10);
    let snap = db.snapshot().unwrap();
    let (npy, ids) = (dir.path().join("e.npy"), dir.path().join("ids.txt"));
    export_dense(snap.collection("c").unwrap(), "e", &npy, &ids).unwrap();
    let ids: Vec<String> = std::fs::read_to_string(&ids)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let all_ids: Vec<String> = expected.values().flat_map(|e| e.ids.clone()).collect();
    assert_eq!(ids, all_ids);
    let arr = vellum::ingest::array::Array::open(&npy, None).unwrap();
    let mut back = vec![0f32; 40];
    arr.read_f32(0, &mut back).unwrap();
    let flat: Vec<f32> = expected
        .values()
        .flat_map(|e| e.vectors.iter().flatten().map(|v| *v as f32))
        .collect();
    assert_eq!(back, flat);
    // Importing the same shard twice collides on ids and names the file and row.
    let mut w = db.writer().unwrap();
    let e = import_tevatron(
        &mut w,
        "c",
        "e",
        &files[..1],
        vellum::ingest::Mode::Add,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("corpus.0.pkl:row 0") && e.contains("duplicate id"),
        "{e}"
    );
}

#[test]
fn damaged_or_foreign_pickles_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("corpus.0.pkl")).unwrap();
    let cut = dir.path().join("cut.pkl");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_tevatron_pickle(&cut).unwrap_err().to_string();
    assert!(
        e.contains("cut.pkl") && e.contains("not a readable pickle"),
        "{e}"
    );
    // A pickled dict (protocol 2: PROTO 2, EMPTY_DICT, STOP).
    let dict = dir.path().join("dict.pkl");
    std::fs::write(&dict, b"\x80\x02}q\x00.").unwrap();
    let e = read_tevatron_pickle(&dict).unwrap_err().to_string();
    assert!(
        e.contains("dict.pkl") && e.contains("expected a tuple (reps, lookup_indices)"),
        "{e}"
    );
    let e = read_tevatron_pickle(&dir.path().join("missing.pkl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pkl"), "{e}");
}
