//! Screening codes (`format-spec/screen.md`) end to end: which segments get them, compaction adds
//! them to older segments, `stats` reports them, and exact search over them equals the full scan.

use vellum::{
    DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest, Strategy, WriterOptions,
};

use crate::common::Rng;

fn fill(db: &Database, options: WriterOptions, rows: usize, seed: u64) {
    let mut w = db.writer_with(options).unwrap();
    if db.snapshot().unwrap().collection("c").is_err() {
        let schema = Schema::new()
            .with_field(FieldSpec::dense("e", 48, DType::F16, Metric::Cosine))
            .with_field(FieldSpec::dense("l", 5, DType::F32, Metric::L2));
        w.create_collection("c", schema).unwrap();
    }
    let mut rng = Rng(seed);
    for i in 0..rows {
        let doc = Document::new(format!("s{seed}-{i}"))
            .with_dense("e", rng.vec(48))
            .with_dense("l", rng.vec(5));
        w.add("c", doc).unwrap();
    }
    w.commit().unwrap();
}

fn coded_fields(db: &Database) -> Vec<Vec<String>> {
    let snap = db.snapshot().unwrap();
    let stats = snap.collection("c").unwrap().stats().unwrap();
    stats
        .segments
        .iter()
        .map(|s| s.screening_codes.keys().cloned().collect())
        .collect()
}

#[test]
fn segments_at_the_threshold_get_codes_and_compaction_adds_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let options = |min| WriterOptions {
        screen_min_rows: min,
        ..WriterOptions::default()
    };
    fill(&db, options(1024), 1023, 1);
    fill(&db, options(1024), 1024, 2);
    fill(&db, options(u64::MAX), 1500, 3);
    let both = vec!["e".to_string(), "l".to_string()];
    assert_eq!(coded_fields(&db), vec![vec![], both.clone(), vec![]]);
    let report = vellum::verify::verify_database(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");

    // Every single query gives the full scan's hits, scores bit for bit, on both fields.
    let check = |db: &Database| {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(99);
        for (field, dim) in [("e", 48), ("l", 5)] {
            for _ in 0..20 {
                let q = rng.vec(dim);
                let run = |s| {
                    key(&c
                        .search_one(&SearchRequest::dense(field, &q, 7).with_strategy(s))
                        .unwrap())
                };
                assert_eq!(run(Strategy::Coded), run(Strategy::Streaming), "{field}");
                assert_eq!(run(Strategy::Auto), run(Strategy::Streaming), "{field}");
            }
        }
    };
    check(&db);

    let mut w = db.writer().unwrap();
    w.compact("c").unwrap();
    drop(w);
    assert_eq!(coded_fields(&db), vec![both]);
    check(&db);
}

/// A database with one collection `c` whose field `f` holds `segments` (one segment per slice,
/// screening codes on every segment); rows are `d0`, `d1`, … in order.
fn database_of(
    metric: Metric,
    dtype: DType,
    segments: &[Vec<Vec<f32>>],
    dim: usize,
) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            screen_min_rows: 1,
            ..WriterOptions::default()
        })
        .unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("f", dim as u32, dtype, metric)),
    )
    .unwrap();
    let mut n = 0;
    for rows in segments {
        for v in rows {
            w.add(
                "c",
                Document::new(format!("d{n}")).with_dense("f", v.clone()),
            )
            .unwrap();
            n += 1;
        }
        w.commit().unwrap();
    }
    drop(w);
    (dir, db)
}

/// Ids and score bits of a result list (what "bit for bit" compares).
fn key(h: &[vellum::Hit]) -> Vec<(String, u32)> {
    h.iter()
        .map(|h| (h.id.clone(), h.score.to_bits()))
        .collect()
}

/// Builds one collection `c` with field `f` from `rows` (one segment per slice, codes on every
/// segment) and checks that coded single and batch searches equal streaming bit for bit.
fn coded_equals_streaming(
    metric: Metric,
    dtype: DType,
    segments: &[Vec<Vec<f32>>],
    queries: &[Vec<f32>],
    k: usize,
) {
    let (_dir, db) = database_of(metric, dtype, segments, queries[0].len());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let flat: Vec<f32> = queries.concat();
    // One thread: blocks in order, so a floor set by one block prunes the next deterministically.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| {
            let run = |s| {
                c.search(&SearchRequest::dense_batch("f", &flat, k).with_strategy(s))
                    .unwrap()
            };
            let (coded, streamed) = (run(Strategy::Coded), run(Strategy::Streaming));
            for (i, (a, b)) in coded.iter().zip(&streamed).enumerate() {
                assert_eq!(key(a), key(b), "{metric:?} {dtype:?} query {i}");
            }
            for (i, q) in queries.iter().enumerate() {
                let one = |s| {
                    c.search_one(&SearchRequest::dense("f", q, k).with_strategy(s))
                        .unwrap()
                };
                assert_eq!(
                    key(&one(Strategy::Coded)),
                    key(&one(Strategy::Streaming)),
                    "single {i}"
                );
            }
        });
}

/// Review finding: a zero L2 query over rows of very different norms made the batch threshold
/// overflow i64 and skip whole blocks.
#[test]
fn zero_l2_query_over_rows_of_very_different_norms() {
    let dim = 8;
    let mut rng = Rng(5);
    let big: Vec<Vec<f32>> = (0..300)
        .map(|_| rng.vec(dim).iter().map(|v| v * 1e10).collect())
        .collect();
    let small: Vec<Vec<f32>> = (0..300)
        .map(|_| rng.vec(dim).iter().map(|v| v * 4e9).collect())
        .collect();
    let mixed: Vec<Vec<f32>> = big.iter().chain(&small).cloned().collect();
    let queries = vec![vec![0.0; dim], rng.vec(dim), vec![0.0; dim]];
    for k in [1, 3] {
        coded_equals_streaming(
            Metric::L2,
            DType::F32,
            std::slice::from_ref(&mixed),
            &queries,
            k,
        );
        coded_equals_streaming(
            Metric::L2,
            DType::F32,
            &[big.clone(), small.clone()],
            &queries,
            k,
        );
    }
}

/// Degenerate maps: parallel rows under cosine (every coded value equal: scale falls back to 1),
/// a constant dimension of large magnitude, and rows of tiny and huge norm, in every dtype.
#[test]
fn degenerate_segments_equal_streaming() {
    let dim = 6;
    let mut rng = Rng(11);
    let direction = rng.vec(dim);
    let parallel: Vec<Vec<f32>> = (1..400)
        .map(|i| direction.iter().map(|v| v * i as f32 * 0.01).collect())
        .collect();
    let constant: Vec<Vec<f32>> = (0..400)
        .map(|_| {
            let mut v = rng.vec(dim);
            v[2] = 3.0e4;
            v
        })
        .collect();
    let spread: Vec<Vec<f32>> = (0..400)
        .map(|i| {
            let s = 10f32.powi(i % 9 - 4);
            rng.vec(dim).iter().map(|v| v * s).collect()
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(dim)).collect();
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
            let segs = [parallel.clone(), constant.clone(), spread.clone()];
            coded_equals_streaming(metric, dtype, &segs, &queries, 5);
        }
    }
}

/// Batches of several queries over clustered rows of an embedding-like width, whose block kernel
/// runs whole vectors (the tests above use 6 or 8 dimensions, a scalar tail): results bit for bit
/// the streaming path's. CI runs this file again with `VELLUM_SIMD=avx2`.
#[test]
fn batches_of_embedding_width_equal_streaming() {
    let dim = 128;
    let mut rng = Rng(23);
    let centers: Vec<Vec<f32>> = (0..8).map(|_| rng.vec(dim)).collect();
    let near = |rng: &mut Rng, spread: f32| -> Vec<f32> {
        let c = &centers[rng.below(8) as usize];
        c.iter()
            .zip(rng.vec(dim))
            .map(|(a, b)| a + spread * b)
            .collect()
    };
    let segs: Vec<Vec<Vec<f32>>> = (0..2)
        .map(|_| (0..700).map(|_| near(&mut rng, 0.3)).collect())
        .collect();
    let queries: Vec<Vec<f32>> = (0..9).map(|_| near(&mut rng, 0.5)).collect();
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        for k in [1, 10] {
            coded_equals_streaming(metric, DType::F32, &segs, &queries, k);
        }
    }
    coded_equals_streaming(Metric::Ip, DType::Bf16, &segs, &queries, 10);
}

/// Review findings on the screened batch path (f32 products on CPUs without AVX-512 BF16, and the
/// bf16 tile): values near the bottom of f32's range, which no relative error budget covers.
/// Results must equal streaming bit for bit: an Ip query of ~1e-24 values (its squared norm
/// underflows to 0), an L2 pair whose distance underflows, a cosine row of norm 1e-20 (simsimd's
/// Haswell kernel reports 1 for it), and an f16 query whose values are f16 subnormals. Such a
/// query goes to streaming alone; the rest of its batch (in any order around it) is screened.
#[test]
fn screened_batches_near_underflow_equal_streaming() {
    let check = |metric: Metric, dtype: DType, rows: Vec<Vec<f32>>, queries: Vec<Vec<f32>>| {
        let (_dir, db) = database_of(metric, dtype, &[rows], queries[0].len());
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let flat: Vec<f32> = queries.concat();
        for k in [1, 3] {
            let run = |s| {
                c.search(&SearchRequest::dense_batch("f", &flat, k).with_strategy(s))
                    .unwrap()
            };
            let streamed = run(Strategy::Streaming);
            for s in [Strategy::Screened, Strategy::Coded, Strategy::Auto] {
                let hits = run(s);
                assert_eq!(hits.len(), streamed.len());
                for (i, (a, b)) in hits.iter().zip(&streamed).enumerate() {
                    assert_eq!(key(a), key(b), "{s:?} {metric:?} {dtype:?} k {k} query {i}");
                }
            }
        }
    };
    let mut rng = Rng(29);
    let normal: Vec<Vec<f32>> = (0..40).map(|_| rng.vec(4)).collect();
    let tiny_q: Vec<Vec<f32>> = (0..3)
        .map(|_| rng.vec(4).iter().map(|v| v * 1e-24).collect())
        .collect();
    check(Metric::Ip, DType::F32, normal.clone(), tiny_q);
    check(
        Metric::L2,
        DType::F32,
        vec![vec![-2e-23], vec![3e-23], vec![1e-22]],
        vec![vec![2e-23], vec![0.0]],
    );
    let mut with_tiny_row = normal.clone();
    with_tiny_row.push(vec![-1e-20, 0.0, 0.0, 0.0]);
    check(
        Metric::Cosine,
        DType::F32,
        with_tiny_row,
        vec![
            vec![1.0, 0.0, 0.0, 0.0],
            vec![1e-20, 0.0, 0.0, 0.0],
            vec![0.5, -1.0, 0.25, 0.0],
            vec![0.0, 1e-30, 0.0, 0.0],
        ],
    );
    let f16_q: Vec<Vec<f32>> = (0..3)
        .map(|_| rng.vec(4).iter().map(|v| v * 1e-7).collect())
        .collect();
    check(Metric::Ip, DType::F16, normal, f16_q);
}
