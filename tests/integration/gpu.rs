//! GPU search (feature `cuda`) against the CPU's exact search: the same ids and the same scores,
//! ties by the same rule, for every metric, stored type and GPU precision, with deletes, filters,
//! several segments, exact ties, a `k` above the GPU's limit, and a collection that changes
//! between searches. On a machine without a CUDA driver the parity tests skip (saying so) and
//! the error test checks the message; `benches/gpu/run.sh` runs them on a GPU machine.

use vellum::filter::Filter;
use vellum::search::{Device, GpuPrecision};
use vellum::{Database, Document, Error, FieldSpec, Schema, SearchRequest, Strategy};

use crate::common::Rng;

/// Whether a GPU can be used here; prints why not.
fn gpu() -> bool {
    if !vellum::gpu::driver_present() {
        eprintln!("skipped: no CUDA driver on this machine");
        return false;
    }
    match vellum::gpu::Gpu::open(0) {
        Ok(g) => {
            eprintln!("GPU: {}", g.name());
            true
        }
        Err(e) => panic!("a CUDA driver is present but cuda:0 cannot be used: {e}"),
    }
}

/// A collection `c` with dense field `e` (`spec`), `rows` rows over three segments, every 7th
/// row deleted, metadata `{"g": i % 4}`. `ints`: small-integer values (exact ties).
fn dense_db(dir: &std::path::Path, spec: &str, dim: usize, rows: usize, ints: bool) -> Database {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(spec).unwrap()),
    )
    .unwrap();
    let mut rng = Rng(0x9e3779b97f4a7c15 ^ rows as u64);
    for i in 0..rows {
        let v: Vec<f32> = if ints {
            (0..dim).map(|_| rng.below(5) as f32 - 2.0).collect()
        } else {
            rng.vec(dim)
        };
        let v = if v.iter().all(|x| *x == 0.0) {
            vec![1.0; dim]
        } else {
            v
        };
        w.add(
            "c",
            Document::new(format!("d{i}"))
                .with_dense("e", v)
                .with_metadata(serde_json::json!({ "g": i % 4 })),
        )
        .unwrap();
        if i % (rows / 3 + 1) == rows / 3 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    for i in (0..rows).step_by(7) {
        w.delete("c", &format!("d{i}")).unwrap();
    }
    w.commit().unwrap();
    db
}

fn same_hits(gpu: &[Vec<vellum::Hit>], cpu: &[Vec<vellum::Hit>], what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}");
    for (q, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let g: Vec<(&str, f32)> = g.iter().map(|h| (h.id.as_str(), h.score)).collect();
        let c: Vec<(&str, f32)> = c.iter().map(|h| (h.id.as_str(), h.score)).collect();
        assert_eq!(g, c, "{what}: query {q}");
    }
}

#[test]
fn dense_search_on_the_gpu_equals_the_cpu() {
    if !gpu() {
        return;
    }
    let dim = 48;
    for metric in ["ip", "cosine", "l2"] {
        for dtype in ["f32", "f16", "bf16"] {
            for ints in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let spec = format!("e:dense:{dim}:{dtype}:{metric}");
                let db = dense_db(dir.path(), &spec, dim, 3000, ints);
                let snap = db.snapshot().unwrap();
                let c = snap.collection("c").unwrap();
                let mut rng = Rng(7);
                let queries: Vec<f32> = (0..40 * dim)
                    .map(|_| {
                        if ints {
                            rng.below(5) as f32 - 2.0
                        } else {
                            rng.unit()
                        }
                    })
                    .map(|v| if v == 0.0 { 0.5 } else { v })
                    .collect();
                let filter = Filter::parse(r#"{"g": {"$in": [1, 2]}}"#).unwrap();
                for k in [1, 10, 100, 1500] {
                    let cpu_req = SearchRequest::dense_batch("e", &queries, k)
                        .with_strategy(Strategy::Streaming);
                    let cpu = c.search(&cpu_req).unwrap();
                    let filtered_cpu = c.search(&cpu_req.clone().with_filter(&filter)).unwrap();
                    for p in [
                        GpuPrecision::Stored,
                        GpuPrecision::Tf32,
                        GpuPrecision::F16,
                        GpuPrecision::Bf16,
                    ] {
                        let req = SearchRequest::dense_batch("e", &queries, k)
                            .on_device(Device::Cuda(0))
                            .with_gpu_precision(p);
                        let what = format!("{spec} ints {ints} k {k} {p:?}");
                        same_hits(&c.search(&req).unwrap(), &cpu, &what);
                        same_hits(
                            &c.search(&req.clone().with_filter(&filter)).unwrap(),
                            &filtered_cpu,
                            &format!("{what} filtered"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gpu_copies_follow_the_collection() {
    if !gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dense_db(dir.path(), "e:dense:16:f32:ip", 16, 500, false);
    let q = vec![1.0f32; 16];
    let search = |db: &Database| {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let gpu = c
            .search(&SearchRequest::dense("e", &q, 5).on_device(Device::Cuda(0)))
            .unwrap();
        let cpu = c.search(&SearchRequest::dense("e", &q, 5)).unwrap();
        same_hits(&gpu, &cpu, "after a change");
        gpu
    };
    search(&db);
    // A new best document and a deleted one: the next search sees both.
    let mut w = db.writer().unwrap();
    w.add("c", Document::new("best").with_dense("e", vec![10.0; 16]))
        .unwrap();
    w.commit().unwrap();
    let hits = search(&db);
    assert_eq!(hits[0][0].id, "best");
    w.delete("c", "best").unwrap();
    w.commit().unwrap();
    let hits = search(&db);
    assert_ne!(hits[0][0].id, "best");
    vellum::search::release_gpu_memory();
    search(&db);
}

#[test]
fn maxsim_on_the_gpu_equals_the_cpu() {
    if !gpu() {
        return;
    }
    let dim = 32;
    for metric in ["ip", "cosine", "l2"] {
        for dtype in ["f32", "f16", "bf16"] {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path()).unwrap();
            let mut w = db.writer().unwrap();
            let spec = format!("m:multi:{dim}:{dtype}:{metric}");
            w.create_collection(
                "c",
                Schema::new().with_field(FieldSpec::parse(&spec).unwrap()),
            )
            .unwrap();
            // Small integers (exact ties) for ip and L2, floats for cosine.
            let ints = metric != "cosine";
            let mut rng = Rng(11);
            let values = |n: usize, rng: &mut Rng| -> Vec<f32> {
                if ints {
                    (0..n).map(|_| rng.below(5) as f32 - 2.0).collect()
                } else {
                    rng.vec(n)
                }
            };
            for i in 0..1500 {
                let tokens = 1 + rng.below(40) as usize;
                let v = values(tokens * dim, &mut rng);
                w.add("c", Document::new(format!("d{i}")).with_multi("m", v))
                    .unwrap();
                if i == 700 {
                    w.commit().unwrap();
                }
            }
            w.commit().unwrap();
            for i in (0..1500).step_by(9) {
                w.delete("c", &format!("d{i}")).unwrap();
            }
            w.commit().unwrap();
            let snap = db.snapshot().unwrap();
            let c = snap.collection("c").unwrap();
            let queries: Vec<Vec<f32>> = (0..30)
                .map(|i| {
                    let mut q = values((1 + i % 32) * dim, &mut rng);
                    q[0] = 1.0; // no zero token under cosine
                    q.chunks_exact_mut(dim).for_each(|t| t[0] = 1.0);
                    q
                })
                .collect();
            let refs: Vec<&[f32]> = queries.iter().map(|q| q.as_slice()).collect();
            for k in [1, 10, 100] {
                let cpu = c
                    .search(&SearchRequest::multi_batch("m", refs.clone(), k))
                    .unwrap();
                let gpu = c
                    .search(
                        &SearchRequest::multi_batch("m", refs.clone(), k)
                            .on_device(Device::Cuda(0)),
                    )
                    .unwrap();
                same_hits(&gpu, &cpu, &format!("{spec} k {k}"));
            }
        }
    }
}

#[test]
fn maxsim_re_ranking_on_the_gpu_equals_the_cpu() {
    if !gpu() {
        return;
    }
    let dim = 16;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("m:multi:{dim}:f16:cosine")).unwrap()),
    )
    .unwrap();
    let mut rng = Rng(5);
    for i in 0..2000 {
        let tokens = 1 + rng.below(30) as usize;
        // Small integers: exact ties between documents.
        let v: Vec<f32> = (0..tokens * dim)
            .map(|_| rng.below(3) as f32 - 1.0)
            .collect();
        w.add("c", Document::new(format!("d{i}")).with_multi("m", v))
            .unwrap();
    }
    w.commit().unwrap();
    w.delete("c", "d3").unwrap();
    w.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let queries: Vec<Vec<f32>> = (0..20).map(|i| rng.vec((4 + i) * dim)).collect();
    let refs: Vec<&[f32]> = queries.iter().map(|q| q.as_slice()).collect();
    let ids: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
    // 1,000 candidates per query (one deleted, one unknown), first-stage scores descending.
    let candidates: Vec<Vec<(&str, f32)>> = (0..20)
        .map(|q| {
            let mut v: Vec<(&str, f32)> = (0..1000)
                .map(|j| (ids[(q * 37 + j * 2) % 2000].as_str(), 1000.0 - j as f32))
                .collect();
            v.push(("d3", 0.0));
            v.push(("nowhere", 0.0));
            v
        })
        .collect();
    for combine in [
        vellum::Combine::Second,
        vellum::Combine::Weighted {
            first: 0.01,
            second: 1.0,
        },
    ] {
        for k in [1, 10, 100] {
            let r = vellum::Rerank::multi("m", refs.clone(), k).with_combine(combine);
            let cpu = c.rerank(&r, &candidates).unwrap();
            let gpu = c
                .rerank(&r.clone().on_device(Device::Cuda(0)), &candidates)
                .unwrap();
            same_hits(&gpu, &cpu, &format!("{combine:?} k {k}"));
        }
    }
}

#[test]
fn a_machine_without_a_driver_gets_a_clear_error() {
    if vellum::gpu::driver_present() {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dense_db(dir.path(), "e:dense:4:f32:ip", 4, 20, true);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let e = c
        .search(&SearchRequest::dense("e", &[1.0, 0.0, 0.0, 0.0], 3).on_device(Device::Cuda(0)))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Device(m) if m.contains("cuda:0: no CUDA driver found")),
        "{e}"
    );
    let e = c
        .rerank(
            &vellum::Rerank::multi("e", vec![&[1.0, 0.0, 0.0, 0.0][..]], 3)
                .on_device(Device::Cuda(0)),
            &[vec![("d1", 1.0)]],
        )
        .unwrap_err();
    assert!(matches!(&e, Error::WrongFieldKind { .. }), "{e}");
    // The CPU still answers.
    assert_eq!(
        c.search(&SearchRequest::dense("e", &[1.0, 0.0, 0.0, 0.0], 3))
            .unwrap()[0]
            .len(),
        3
    );
}

/// A fixture folder, found from the repository root when the build's absolute path is not
/// there (the GPU machine runs binaries built elsewhere, from its own checkout's root).
#[cfg(feature = "encoders")]
fn fixture(rel: &str) -> String {
    let built = crate::common::fixture_path(rel);
    let path = if built.exists() {
        built
    } else {
        std::path::Path::new("tests/fixtures").join(rel)
    };
    path.to_str().unwrap().to_string()
}

#[cfg(feature = "encoders")]
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The BERT family and ModernBERT on the GPU give the CPU pass's vectors: cosine ≥ 0.99999 in f32, and within
/// the rounding of 16-bit activations in f16 / bf16; ColBERT token vectors likewise.
#[cfg(feature = "encoders")]
#[test]
fn encoders_on_the_gpu_equal_the_cpu() {
    use vellum::encode::{load, EncoderOptions, ModelDir};
    if !gpu() {
        return;
    }
    let texts: Vec<String> = std::fs::read_to_string(fixture("encoders/sentences.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (model, extra) in [
        ("encoders/tiny-a", ""),
        ("encoders/tiny-roberta", ""),
        ("colbert/stanford", ",role=passage"),
        ("colbert/stanford", ",role=query,truncate=true"),
        ("encoders/tiny-a", ",pooling=last"),
        ("encoders/tiny-a", ",pooling=cls"),
        ("colbert/modernbert", ""),
        ("colbert/modernbert", ",pooling=mean"),
        ("colbert/pylate-modernbert", ",role=passage"),
        ("colbert/pylate-modernbert", ",role=query,truncate=true"),
    ] {
        let dir = ModelDir::resolve(&fixture(model)).unwrap();
        for (dtype, floor) in [("f32", 0.99999), ("f16", 0.999), ("bf16", 0.99)] {
            let cpu_opts = EncoderOptions::parse(&format!("dtype={dtype}{extra}")).unwrap();
            // Small batches: several passes, two in flight at once (`encode_batches`).
            let gpu_opts =
                EncoderOptions::parse(&format!("dtype={dtype},device=cuda:0,batch_size=3{extra}"))
                    .unwrap();
            let cpu = load(&dir, &cpu_opts).unwrap().encode_texts(&texts).unwrap();
            let gpu = load(&dir, &gpu_opts).unwrap().encode_texts(&texts).unwrap();
            assert_eq!(cpu.rows, gpu.rows, "{model} {dtype}: token counts");
            let d = cpu.dims;
            let worst = cpu
                .values
                .chunks_exact(d)
                .zip(gpu.values.chunks_exact(d))
                .map(|(a, b)| cosine(a, b))
                .fold(1.0f64, f64::min);
            eprintln!("{model}{extra} {dtype}: worst cosine {worst}");
            assert!(
                worst >= floor,
                "{model}{extra} {dtype}: worst cosine {worst} < {floor}"
            );
        }
    }
}

/// CLIP's towers on the GPU give the CPU pass's image embeddings, penultimate hidden states and
/// text embeddings (f32).
#[cfg(feature = "encoders")]
#[test]
fn clip_on_the_gpu_equals_the_cpu() {
    use vellum::encode::backend::native_clip::NativeClip;
    use vellum::encode::models::clip::ClipConfig;
    use vellum::encode::{ComputeType, ModelDir};
    if !gpu() {
        return;
    }
    let dir = ModelDir::at(fixture("clip/tiny").into(), "tiny").unwrap();
    let bytes = std::fs::read(format!("{}/model.safetensors", fixture("clip/tiny"))).unwrap();
    let load = |device| {
        let config = ClipConfig::from_dir(&dir).unwrap().unwrap();
        NativeClip::load(&dir, &bytes, config, ComputeType::F32, device).unwrap()
    };
    let (cpu, gpu) = (load(Device::Cpu), load(Device::Cuda(0)));
    let s = cpu.config().vision_config.image_size;
    let mut rng = Rng(3);
    let pixels: Vec<f32> = (0..3 * 3 * s * s).map(|_| rng.unit()).collect();
    let (a, b) = (
        cpu.encode_images(&pixels, true).unwrap(),
        gpu.encode_images(&pixels, true).unwrap(),
    );
    let p = cpu.config().projection_dim;
    for (x, y) in a
        .embeddings
        .chunks_exact(p)
        .zip(b.embeddings.chunks_exact(p))
    {
        assert!(
            cosine(x, y) >= 0.99999,
            "image embedding cosine {}",
            cosine(x, y)
        );
    }
    let max = a
        .penultimate
        .iter()
        .zip(&b.penultimate)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-3, "penultimate max difference {max}");
    let texts: Vec<Vec<u32>> = vec![vec![1, 5, 9, 2], vec![1, 7, 7, 7, 3, 2], vec![1, 2]];
    let refs: Vec<&[u32]> = texts.iter().map(|t| t.as_slice()).collect();
    let (a, b) = (
        cpu.encode_texts(&refs).unwrap(),
        gpu.encode_texts(&refs).unwrap(),
    );
    for (x, y) in a.chunks_exact(p).zip(b.chunks_exact(p)) {
        assert!(
            cosine(x, y) >= 0.99999,
            "text embedding cosine {}",
            cosine(x, y)
        );
    }
}

/// Without a driver, a GPU encoder is a clear error; a CPU-only encoder on a GPU says so.
#[cfg(feature = "encoders")]
#[test]
fn gpu_encoders_without_a_driver_are_a_clear_error() {
    use vellum::encode::{load, EncoderOptions, ModelDir};
    if vellum::gpu::driver_present() {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let dir = ModelDir::resolve(&fixture("encoders/tiny-a")).unwrap();
    let e = load(&dir, &EncoderOptions::parse("device=cuda:0").unwrap()).unwrap_err();
    assert!(e.to_string().contains("no CUDA driver found"), "{e}");
    let e = load(
        &dir,
        &EncoderOptions::parse("device=cuda:0,dtype=int8").unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("int8 is a CPU path"), "{e}");
}
