//! Property tests: exact search equals a brute-force scalar oracle for random data, metrics,
//! element types, deletes and several segments.

use proptest::prelude::*;
use vellum::linalg::similarity::scalar;
use vellum::{
    DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest, Strategy, WriterOptions,
};

use crate::common::Rng;

fn dtype_of(i: u8) -> DType {
    [DType::F32, DType::F16, DType::Bf16][i as usize % 3]
}

fn metric_of(i: u8) -> Metric {
    [Metric::Ip, Metric::Cosine, Metric::L2][i as usize % 3]
}

/// Relative precision of a query rounded to `dtype` (the streaming path compares in the data type).
fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        DType::Bf16 => 1.6e-2,
    }
}

struct Case {
    db: Database,
    _dir: tempfile::TempDir,
    /// Live documents: id -> stored vector(s) as f32 (after the element-type rounding).
    live: Vec<(String, Vec<f32>)>,
}

fn build(
    dense: bool,
    dim: usize,
    dtype: DType,
    metric: Metric,
    segments: &[usize],
    delete_every: usize,
    seed: u64,
) -> Case {
    build_scaled(dense, dim, dtype, metric, segments, delete_every, seed, 0)
}

/// [`build`] with row `i` multiplied by `10^((i % 5 − 2) · spread / 2)`: norms spread over
/// `2·spread` decades when `spread > 0`.
#[allow(clippy::too_many_arguments)]
fn build_scaled(
    dense: bool,
    dim: usize,
    dtype: DType,
    metric: Metric,
    segments: &[usize],
    delete_every: usize,
    seed: u64,
    spread: i32,
) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    // Segments of two rows or more get screening codes; single rows are scanned exactly.
    let mut w = db
        .writer_with(WriterOptions {
            screen_min_rows: 2,
            ..WriterOptions::default()
        })
        .unwrap();
    let field = if dense {
        FieldSpec::dense("f", dim as u32, dtype, metric)
    } else {
        FieldSpec::multi("f", dim as u32, dtype, metric)
    };
    w.create_collection("c", Schema::new().with_field(field))
        .unwrap();
    let mut rng = Rng(seed | 1);
    let mut n = 0;
    for &size in segments {
        for _ in 0..size {
            let tokens = if dense { 1 } else { 1 + rng.below(4) as usize };
            let mut v = rng.vec(dim * tokens);
            if rng.below(10) == 0 && n > 0 {
                // Exact duplicates of an earlier vector make ties.
                v = vec![0.5; dim * tokens];
            }
            if spread > 0 {
                let s = 10f32.powf((n % 5) as f32 - 2.0).powf(spread as f32 / 2.0);
                v.iter_mut().for_each(|x| *x *= s);
            }
            let doc = Document::new(format!("d{n}"));
            let doc = if dense {
                doc.with_dense("f", v)
            } else {
                doc.with_multi("f", v)
            };
            w.add("c", doc).unwrap();
            n += 1;
        }
        w.commit().unwrap();
    }
    if delete_every > 0 {
        for i in (0..n).step_by(delete_every) {
            w.delete("c", &format!("d{i}")).unwrap();
        }
        w.commit().unwrap();
    }
    drop(w);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let mut live = Vec::new();
    c.for_each_live(|d| {
        let v = if dense {
            d.dense("f")?.to_f32_vec()
        } else {
            d.multi("f")?.tokens.to_f32_vec()
        };
        live.push((d.id()?.to_string(), v));
        Ok(())
    })
    .unwrap();
    Case {
        db,
        _dir: dir,
        live,
    }
}

/// Checks one query's hits against the oracle scores: right length, scores close to the oracle,
/// sorted, and nothing clearly better left out.
fn check(
    hits: &[vellum::Hit],
    oracle: &[(String, f64)],
    k: usize,
    tol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(hits.len(), k.min(oracle.len()));
    let score_of = |id: &str| oracle.iter().find(|(i, _)| i == id).map(|(_, s)| *s);
    let mut worst_returned = f64::INFINITY;
    for w in hits.windows(2) {
        prop_assert!(w[0].score >= w[1].score, "hits not sorted: {:?}", hits);
    }
    let mut seen = std::collections::HashSet::new();
    for h in hits {
        prop_assert!(seen.insert(h.id.clone()), "{} returned twice", h.id);
        let want = score_of(&h.id);
        prop_assert!(want.is_some(), "hit {} is not a live document", h.id);
        let want = want.unwrap();
        prop_assert!(
            (h.score as f64 - want).abs() <= tol,
            "score of {}: got {} oracle {} (tol {})",
            h.id,
            h.score,
            want,
            tol
        );
        worst_returned = worst_returned.min(want);
    }
    for (id, s) in oracle {
        if !seen.contains(id) {
            prop_assert!(
                *s <= worst_returned + 2.0 * tol,
                "{} (oracle {}) missing; worst returned {}",
                id,
                s,
                worst_returned
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn dense_search_matches_oracle(
        dim in 1usize..40, dt in 0u8..3, mt in 0u8..3,
        segments in prop::collection::vec(0usize..40, 1..4),
        delete_every in 0usize..5, k in 1usize..15, nq in 1usize..5, seed in any::<u64>(),
    ) {
        let (dtype, metric) = (dtype_of(dt), metric_of(mt));
        let case = build(true, dim, dtype, metric, &segments, delete_every, seed);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed.rotate_left(7) | 1);
        let queries = rng.vec(nq * dim);
        for strategy in [Strategy::Streaming, Strategy::Blocked, Strategy::Screened, Strategy::Coded] {
            let got = c.search(&SearchRequest::dense_batch("f", &queries, k).with_strategy(strategy)).unwrap();
            prop_assert_eq!(got.len(), nq);
            for (qi, q) in queries.chunks_exact(dim).enumerate() {
                let oracle: Vec<(String, f64)> = case.live.iter().map(|(id, v)| (id.clone(), scalar::similarity(metric, q, v))).collect();
                let scale = match metric {
                    Metric::Cosine => 1.0,
                    Metric::Ip => scalar::dot(q, q).sqrt() * dim as f64,
                    Metric::L2 => scalar::dot(q, q) + 2.0 * dim as f64,
                };
                let tol = 4.0 * eps(dtype) * scale + 1e-4 * (1.0 + scale);
                check(&got[qi], &oracle, k, tol)?;
            }
        }
    }

    #[test]
    fn screened_batch_equals_streaming_exactly(
        dim in 1usize..70, dt in 0u8..3, mt in 0u8..3,
        segments in prop::collection::vec(0usize..300, 1..3),
        delete_every in 0usize..5, k in 1usize..20, nq in 1usize..20, seed in any::<u64>(),
        magnitude in -3i32..4,
    ) {
        // The screen only decides which rows are scored exactly; scores and ties must come out
        // bit for bit as in the streaming path, whatever the data's magnitude.
        let (dtype, metric) = (dtype_of(dt), metric_of(mt));
        let case = build(true, dim, dtype, metric, &segments, delete_every, seed);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed.rotate_left(11) | 1);
        let queries: Vec<f32> = rng.vec(nq * dim).iter().map(|v| v * 10f32.powi(magnitude)).collect();
        let run = |strategy| c.search(&SearchRequest::dense_batch("f", &queries, k).with_strategy(strategy)).unwrap();
        let (screened, streamed) = (run(Strategy::Screened), run(Strategy::Streaming));
        for (a, b) in screened.iter().zip(&streamed) {
            let key = |h: &[vellum::Hit]| h.iter().map(|h| (h.id.clone(), h.score.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(key(a), key(b));
        }
    }

    #[test]
    fn coded_single_queries_equal_streaming_exactly(
        dim in 1usize..70, dt in 0u8..3, mt in 0u8..3,
        segments in prop::collection::vec(0usize..300, 1..4),
        delete_every in 0usize..5, k in 1usize..20, nq in 1usize..6, seed in any::<u64>(),
        magnitude in -3i32..4, spread in 0u8..3, norms in 0i32..3, zero_query in any::<bool>(),
    ) {
        // The codes only decide which rows are scored exactly: ids, order and score bits must
        // equal the streaming path's, whatever the magnitude of the queries, including queries
        // close to many rows (spread 0: rows and queries near one point, most rows tie closely).
        let (dtype, metric) = (dtype_of(dt), metric_of(mt));
        // Stored norms spread over up to 4 decades (not for f16, whose range is too narrow).
        let norms = if dtype == DType::F16 { 0 } else { norms };
        let case = build_scaled(true, dim, dtype, metric, &segments, delete_every, seed, norms);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed.rotate_left(17) | 1);
        let mut queries: Vec<f32> = rng.vec(nq * dim).iter().map(|v| {
            let v = if spread == 0 { 0.5 + v * 1e-3 } else { *v };
            v * 10f32.powi(magnitude)
        }).collect();
        if zero_query && metric == Metric::L2 {
            // The zero query is valid under L2 (the nearest rows are the smallest).
            queries[..dim].iter_mut().for_each(|v| *v = 0.0);
        }
        let run = |strategy| c.search(&SearchRequest::dense_batch("f", &queries, k).with_strategy(strategy)).unwrap();
        let (coded, streamed) = (run(Strategy::Coded), run(Strategy::Streaming));
        for (a, b) in coded.iter().zip(&streamed) {
            let key = |h: &[vellum::Hit]| h.iter().map(|h| (h.id.clone(), h.score.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(key(a), key(b));
        }
    }

    #[test]
    fn maxsim_matches_oracle(
        dim in 1usize..24, dt in 0u8..3, mt in 0u8..3,
        segments in prop::collection::vec(0usize..30, 1..4),
        delete_every in 0usize..5, k in 1usize..12, seed in any::<u64>(),
        qtokens in prop::collection::vec(1usize..6, 1..4),
    ) {
        let (dtype, metric) = (dtype_of(dt), metric_of(mt));
        let case = build(false, dim, dtype, metric, &segments, delete_every, seed);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed.rotate_left(13) | 1);
        let queries: Vec<Vec<f32>> = qtokens.iter().map(|t| rng.vec(t * dim)).collect();
        let got = c.search(&SearchRequest::multi_batch("f", queries.iter().map(Vec::as_slice).collect(), k)).unwrap();
        for (qi, q) in queries.iter().enumerate() {
            let oracle: Vec<(String, f64)> = case.live.iter().map(|(id, v)| (id.clone(), scalar::maxsim(metric, q, v, dim))).collect();
            let per_token = match metric { Metric::Cosine => 1.0, _ => 3.0 * dim as f64 };
            let tol = 1e-4 * per_token * qtokens[qi] as f64 + 1e-4;
            check(&got[qi], &oracle, k, tol)?;
        }
    }
}

/// A segment larger than one single-query task (4096 rows): the second task's products start at
/// its own first row, and every 256-row sub-block's threshold lets through what the bound needs.
#[test]
fn coded_single_queries_over_several_tasks_equal_streaming() {
    for (mt, seed) in [(0u8, 3u64), (1, 5), (2, 7)] {
        let metric = metric_of(mt);
        let case = build_scaled(true, 8, DType::F32, metric, &[5000, 700], 3, seed, 1);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(seed | 1);
        for _ in 0..4 {
            let q = rng.vec(8);
            let run = |strategy| {
                c.search(&SearchRequest::dense("f", &q, 15).with_strategy(strategy))
                    .unwrap()
            };
            let key = |h: &[vellum::Hit]| {
                h.iter()
                    .map(|h| (h.id.clone(), h.score.to_bits()))
                    .collect::<Vec<_>>()
            };
            let (coded, streamed) = (run(Strategy::Coded), run(Strategy::Streaming));
            assert_eq!(key(&coded[0]), key(&streamed[0]), "{metric:?}");
        }
    }
}

/// Equal scores rank by document id, descending (trec_eval's rule), whatever the storage order.
#[test]
fn ties_break_by_document_id_and_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("f", 2, DType::F32, Metric::Ip)),
    )
    .unwrap();
    for i in 0..5 {
        w.add(
            "c",
            Document::new(format!("a{i}")).with_dense("f", vec![1.0, 0.0]),
        )
        .unwrap();
    }
    w.commit().unwrap();
    for i in 0..5 {
        w.add(
            "c",
            Document::new(format!("b{i}")).with_dense("f", vec![1.0, 0.0]),
        )
        .unwrap();
    }
    w.commit().unwrap();
    w.delete("c", "a1").unwrap();
    w.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    for strategy in [
        Strategy::Streaming,
        Strategy::Blocked,
        Strategy::Screened,
        Strategy::Coded,
    ] {
        let q = [1.0, 0.0, 1.0, 0.0];
        let hits = c
            .search(&SearchRequest::dense_batch("f", &q, 6).with_strategy(strategy))
            .unwrap();
        for h in &hits {
            let ids: Vec<&str> = h.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(ids, ["b4", "b3", "b2", "b1", "b0", "a4"], "{strategy:?}");
        }
    }
}

#[test]
fn large_batch_uses_all_blocks() {
    // More rows than one block and more queries than one query block (and than the packing
    // thresholds of `linalg::packed_codes::packing_pays`).
    let case = build(true, 16, DType::F16, Metric::L2, &[3000, 1500], 7, 42);
    let snap = case.db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let mut rng = Rng(5);
    let q = rng.vec(300 * 16);
    let blocked = c
        .search(&SearchRequest::dense_batch("f", &q, 5).with_strategy(Strategy::Blocked))
        .unwrap();
    let streamed = c
        .search(&SearchRequest::dense_batch("f", &q, 5).with_strategy(Strategy::Streaming))
        .unwrap();
    let screened = c
        .search(&SearchRequest::dense_batch("f", &q, 5).with_strategy(Strategy::Screened))
        .unwrap();
    assert_eq!(screened, streamed);
    // 300 queries: the codes' batch path packs its blocks where the CPU has the packed kernels
    // (blocks of 256 rows; 3000 and 1500 rows end in partial panels).
    let coded = c
        .search(&SearchRequest::dense_batch("f", &q, 5).with_strategy(Strategy::Coded))
        .unwrap();
    assert_eq!(coded, streamed);
    let mut agree = 0;
    for (a, b) in blocked.iter().zip(&streamed) {
        agree += a.iter().filter(|h| b.iter().any(|g| g.id == h.id)).count();
    }
    // Both are exact up to rounding of the query to f16 in the streaming path.
    assert!(
        agree as f64 >= 0.97 * 1500.0,
        "only {agree} of 1500 hits agree"
    );
}
