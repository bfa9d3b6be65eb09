//! Two-stage search against a brute-force reference: the top `depth` documents by field A (ties by
//! id, descending), re-scored by field B and ranked again (ties by id). Vectors of small integers
//! make every score exact in f32, so ties are real and results must be equal, not close.

use proptest::prelude::*;
use vellum::filter::Filter;
use vellum::{
    Combine, DType, Database, Document, FieldSpec, Metric, Rerank, Schema, SearchRequest, ShardSet,
};

use crate::common::Rng;

const DIM: usize = 4;

fn small_ints(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.below(5) as f32 - 2.0).collect()
}

/// Dense queries of small integers, no row all zero (a zero query is refused under ip).
fn queries(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut q = small_ints(rng, n * DIM);
    for row in q.chunks_exact_mut(DIM) {
        if row.iter().all(|v| *v == 0.0) {
            row[0] = 1.0;
        }
    }
    q
}

/// Documents `d0..` with dense "a", dense "b" and multi "m" (ip), metadata `{"g": i % 3}`.
struct Corpus {
    a: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
}

fn corpus(n: usize, seed: u64) -> Corpus {
    let mut rng = Rng(seed | 1);
    let mut c = Corpus {
        a: Vec::new(),
        b: Vec::new(),
        m: Vec::new(),
    };
    for _ in 0..n {
        c.a.push(small_ints(&mut rng, DIM));
        c.b.push(small_ints(&mut rng, DIM));
        let t = 1 + rng.below(3) as usize;
        c.m.push(small_ints(&mut rng, DIM * t));
    }
    c
}

fn write(
    path: &std::path::Path,
    corpus: &Corpus,
    range: std::ops::Range<usize>,
    per_commit: usize,
) {
    let db = Database::create(path).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::dense("a", DIM as u32, DType::F32, Metric::Ip))
        .with_field(FieldSpec::dense("b", DIM as u32, DType::F32, Metric::Ip))
        .with_field(FieldSpec::multi("m", DIM as u32, DType::F32, Metric::Ip));
    w.create_collection("c", schema).unwrap();
    for i in range {
        w.add(
            "c",
            Document::new(format!("d{i:03}"))
                .with_dense("a", corpus.a[i].clone())
                .with_dense("b", corpus.b[i].clone())
                .with_multi("m", corpus.m[i].clone())
                .with_metadata(serde_json::json!({"g": i % 3})),
        )
        .unwrap();
        if (i + 1) % per_commit == 0 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
}

/// Scores as vellum reports them: a zero is +0 (Rust's float `sum` starts at −0).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() + 0.0
}

fn maxsim(q: &[f32], d: &[f32]) -> f32 {
    q.chunks(DIM)
        .map(|qt| {
            d.chunks(DIM)
                .map(|dt| dot(qt, dt))
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .sum::<f32>()
        + 0.0
}

/// Best first, ties by id descending (trec_eval's order).
fn rank(mut v: Vec<(String, f32)>) -> Vec<(String, f32)> {
    v.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| y.0.cmp(&x.0)));
    v
}

/// The reference: top `depth` by A among documents passing `keep`, re-scored by `second`.
fn reference(
    corpus: &Corpus,
    qa: &[f32],
    depth: usize,
    second: impl Fn(usize) -> f32,
    combine: Combine,
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(String, f32)> {
    let stage1 = rank(
        (0..corpus.a.len())
            .filter(|&i| keep(i))
            .map(|i| (format!("d{i:03}"), dot(qa, &corpus.a[i])))
            .collect(),
    );
    let mut out: Vec<(String, f32)> = stage1
        .into_iter()
        .take(depth)
        .map(|(id, s1)| {
            let i: usize = id[1..].parse().unwrap();
            let s2 = second(i);
            let s = match combine {
                Combine::Second => s2,
                Combine::Weighted { first, second } => first * s1 + second * s2 + 0.0,
            };
            (id, s)
        })
        .collect();
    out = rank(out);
    out.truncate(k);
    out
}

fn pairs(hits: &[vellum::Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|h| (h.id.clone(), h.score)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn two_stage_equals_the_brute_force_reference(
        seed in 1u64..u64::MAX,
        n in 5usize..120,
        depth in 1usize..40,
        k in 1usize..15,
        weighted in any::<bool>(),
        filtered in any::<bool>(),
    ) {
        let corpus = corpus(n, seed);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &corpus, 0..n, 37);
        let db = Database::open(dir.path()).unwrap();
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed ^ 77);
        let qa = queries(&mut rng, 1);
        let qb = queries(&mut rng, 1);
        let qm = small_ints(&mut rng, DIM * 2);
        let combine = if weighted { Combine::Weighted { first: 0.5, second: 2.0 } } else { Combine::Second };
        let f = Filter::parse(r#"{"g": {"$in": [0, 2]}}"#).unwrap();
        let keep = |i: usize| !filtered || i % 3 != 1;
        let mut first = SearchRequest::dense("a", &qa, depth);
        if filtered {
            first = first.with_filter(&f);
        }
        // Dense second stage.
        let got = c.search_two_stage(&first, &Rerank::dense("b", &qb, k).with_combine(combine)).unwrap();
        let want = reference(&corpus, &qa, depth, |i| dot(&qb, &corpus.b[i]), combine, k, keep);
        prop_assert_eq!(pairs(&got[0]), want);
        // Multi-vector second stage (exact MaxSim).
        let got = c.search_two_stage(&first, &Rerank::multi("m", vec![&qm], k).with_combine(combine)).unwrap();
        let want = reference(&corpus, &qa, depth, |i| maxsim(&qm, &corpus.m[i]), combine, k, keep);
        prop_assert_eq!(pairs(&got[0]), want);
    }
}

#[test]
fn saved_candidates_rerank_to_the_same_run_and_shards_merge() {
    let n = 90;
    let corpus = corpus(n, 5);
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    write(&whole, &corpus, 0..n, 1000);
    let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
    write(&s0, &corpus, 0..40, 1000);
    write(&s1, &corpus, 40..n, 1000);
    let mut rng = Rng(9);
    let qa = queries(&mut rng, 3);
    let qb = queries(&mut rng, 3);
    let first = SearchRequest::dense_batch("a", &qa, 20);
    let second = Rerank::dense("b", &qb, 7).with_combine(Combine::Weighted {
        first: 1.0,
        second: 0.25,
    });
    let db = Database::open(&whole).unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let direct = c.search_two_stage(&first, &second).unwrap();
    // Stage 1 written as a run file, read back, re-ranked later.
    let mut text = Vec::new();
    for (q, hits) in c.search(&first).unwrap().iter().enumerate() {
        let ranked = hits.iter().map(|h| (h.id.as_str(), h.score));
        vellum::eval::write_ranked(
            &mut text,
            vellum::eval::RunFormat::Trec,
            &q.to_string(),
            ranked,
            "t",
        )
        .unwrap();
    }
    let run = vellum::eval::Run::parse(std::str::from_utf8(&text).unwrap(), "run").unwrap();
    let candidates: Vec<Vec<(&str, f32)>> = (0..3)
        .map(|q| {
            run.ranked(&q.to_string())
                .iter()
                .map(|e| (e.docid.as_str(), e.score as f32))
                .collect()
        })
        .collect();
    let later = c.rerank(&second, &candidates).unwrap();
    assert_eq!(
        direct.iter().map(|h| pairs(h)).collect::<Vec<_>>(),
        later.iter().map(|h| pairs(h)).collect::<Vec<_>>()
    );
    // Two shards give what one database gives.
    let shards = ShardSet::open(&[s0.as_path(), s1.as_path()]).unwrap();
    let sharded = shards.search_two_stage("c", &first, &second).unwrap();
    assert_eq!(
        direct.iter().map(|h| pairs(h)).collect::<Vec<_>>(),
        sharded.iter().map(|h| pairs(h)).collect::<Vec<_>>()
    );
    // Candidates deleted since stage 1 are skipped; a duplicate is an error; counts must match.
    let gone = &direct[0][0].id;
    let mut w = db.writer().unwrap();
    w.delete("c", gone).unwrap();
    w.commit().unwrap();
    let snap2 = db.snapshot().unwrap();
    let c2 = snap2.collection("c").unwrap();
    let after = c2.rerank(&second, &candidates).unwrap();
    assert!(after[0].iter().all(|h| &h.id != gone));
    assert_eq!(after[0].len(), 7);
    let dup = vec![vec![("d001", 1.0), ("d001", 0.5)], vec![], vec![]];
    let err = c2.rerank(&second, &dup).unwrap_err().to_string();
    assert!(err.contains("\"d001\" is a candidate twice"), "{err}");
    let err = c2
        .rerank(&second, &candidates[..2])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 re-ranking queries for 2 first-stage queries"),
        "{err}"
    );
    let err = c2
        .rerank(&Rerank::dense("m", &qb, 3), &candidates)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multi"), "{err}");
}

/// Whole-field MaxSim search and re-ranking of every document give the same scores, bit for
/// bit, on float data (the blocked products round differently from one document's; the search
/// rescores its finalists with the per-document arithmetic).
#[test]
fn maxsim_search_scores_equal_per_document_rescoring() {
    let dim = 24;
    for metric in ["ip", "cosine", "l2"] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "c",
            Schema::new()
                .with_field(FieldSpec::parse(&format!("m:multi:{dim}:f32:{metric}")).unwrap()),
        )
        .unwrap();
        let mut rng = Rng(99);
        for i in 0..400 {
            let t = 1 + rng.below(20) as usize;
            w.add(
                "c",
                Document::new(format!("d{i}")).with_multi("m", rng.vec(t * dim)),
            )
            .unwrap();
            if i == 150 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        // Queries of 1 to 9 tokens in one batch (1-token queries take gemm's other route).
        let queries: Vec<Vec<f32>> = (0..12).map(|i| rng.vec((1 + i % 9) * dim)).collect();
        let refs: Vec<&[f32]> = queries.iter().map(|q| q.as_slice()).collect();
        let searched = c
            .search(&SearchRequest::multi_batch("m", refs.clone(), 10))
            .unwrap();
        let ids: Vec<String> = (0..400).map(|i| format!("d{i}")).collect();
        let all: Vec<Vec<(&str, f32)>> = (0..refs.len())
            .map(|_| ids.iter().map(|id| (id.as_str(), 0.0)).collect())
            .collect();
        let reranked = c.rerank(&Rerank::multi("m", refs, 10), &all).unwrap();
        for (q, (s, r)) in searched.iter().zip(&reranked).enumerate() {
            let s: Vec<(&str, u32)> = s
                .iter()
                .map(|h| (h.id.as_str(), h.score.to_bits()))
                .collect();
            let r: Vec<(&str, u32)> = r
                .iter()
                .map(|h| (h.id.as_str(), h.score.to_bits()))
                .collect();
            assert_eq!(s, r, "{metric} query {q}");
        }
    }
}
