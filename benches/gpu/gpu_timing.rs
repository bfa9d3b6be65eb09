//! GPU timings of vellum for `benches/gpu/run.sh` (feature `cuda`; built by
//! `benches/gpu/build.sh`). Makes its data once under `--data DIR` (a vellum database and the
//! same vectors as `.npy` files for the PyTorch peer, `benches/gpu/peer.py`), times vellum on
//! `cuda:0`, checks its results against the CPU's exact search, and prints one JSON object per
//! measurement.
//!
//! `gpu_timing dense --data DIR [--rows 1000000] [--dim 768] [--queries 1000] [--k 10]
//!  [--dtype f32|f16|bf16] [--reps 5] [--check 20]`
//! `gpu_timing rerank --data DIR [--docs 100000] [--dim 128] [--queries 1000]
//!  [--candidates 1000] [--k 10] [--reps 5] [--check 20]`
//! `gpu_timing encode --data DIR --model MODEL --texts TEXTS.jsonl [--dtype f16] [--batch 256]
//!  [--reps 3]` (writes the first 64 vectors to DIR/encode_<dtype>.npy for the peer's check)

use std::path::{Path, PathBuf};
use std::time::Instant;

use vellum::ingest::array::write_npy_f32;
use vellum::search::{Device, GpuPrecision};
use vellum::{
    Database, Document, FieldSpec, Rerank, Schema, SearchRequest, Strategy, WriterOptions,
};

fn arg(args: &[String], name: &str, default: Option<&str>) -> String {
    match args.iter().position(|a| a == name) {
        Some(i) => args[i + 1].clone(),
        None => default
            .unwrap_or_else(|| panic!("{name} is required"))
            .to_string(),
    }
}

/// xorshift64* with Box–Muller normals.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// Embedding-like rows: one of 1,000 directions plus noise, L2-normalised (top-k gaps as in
/// real embeddings rather than the flat spectrum of standard normals).
fn embedding_like(rng: &mut Rng, centers: &[f32], dim: usize, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next() % (centers.len() / dim) as u64) as usize;
        let start = out.len();
        for j in 0..dim {
            out.push(centers[c * dim + j] + 0.7 * rng.normal());
        }
        let norm = out[start..].iter().map(|v| v * v).sum::<f32>().sqrt();
        out[start..].iter_mut().for_each(|v| *v /= norm);
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn options() -> WriterOptions {
    // No screening codes: the GPU reads the vectors only.
    WriterOptions {
        screen_min_rows: u64::MAX,
        ..WriterOptions::default()
    }
}

fn dense(args: &[String], data: &Path) {
    let rows: usize = arg(args, "--rows", Some("1000000")).parse().unwrap();
    let dim: usize = arg(args, "--dim", Some("768")).parse().unwrap();
    let nq: usize = arg(args, "--queries", Some("1000")).parse().unwrap();
    let k: usize = arg(args, "--k", Some("10")).parse().unwrap();
    let dtype = arg(args, "--dtype", Some("f32"));
    let reps: usize = arg(args, "--reps", Some("5")).parse().unwrap();
    let check: usize = arg(args, "--check", Some("20")).parse().unwrap();
    let dir = data.join(format!("dense_{rows}x{dim}_{dtype}"));
    let db_path = dir.join("db");
    let mut rng = Rng(0x5eed);
    let centers: Vec<f32> = (0..1000 * dim).map(|_| rng.normal()).collect();
    if !db_path.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let db = Database::create(&db_path).unwrap();
        let mut w = db.writer_with(options()).unwrap();
        let spec = format!("emb:dense:{dim}:{dtype}:ip");
        w.create_collection(
            "c",
            Schema::new().with_field(FieldSpec::parse(&spec).unwrap()),
        )
        .unwrap();
        let mut all = Vec::with_capacity(rows * dim);
        for start in (0..rows).step_by(50_000) {
            let n = 50_000.min(rows - start);
            let x = embedding_like(&mut rng, &centers, dim, n);
            let docs = x
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| {
                    Document::new(format!("d{}", start + i)).with_dense("emb", v.to_vec())
                })
                .collect();
            w.add_all("c", docs).unwrap();
            w.commit().unwrap();
            all.extend_from_slice(&x);
        }
        write_npy_f32(&dir.join("x.npy"), &[rows, dim], &all).unwrap();
        let q = embedding_like(&mut rng, &centers, dim, nq);
        write_npy_f32(&dir.join("q.npy"), &[nq, dim], &q).unwrap();
        eprintln!(
            "made {} in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let q = vellum::ingest::array::Array::open(&dir.join("q.npy"), None).unwrap();
    let mut queries = vec![0f32; nq * dim];
    q.read_f32(0, &mut queries).unwrap();
    let snap = Database::open(&db_path).unwrap().snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let precisions: &[(&str, GpuPrecision)] = match dtype.as_str() {
        "f32" => &[
            ("f32", GpuPrecision::Stored),
            ("tf32", GpuPrecision::Tf32),
            ("f16", GpuPrecision::F16),
            ("bf16", GpuPrecision::Bf16),
        ],
        _ => &[("stored", GpuPrecision::Stored)],
    };
    // The CPU's exact answer for the first `check` queries.
    let cpu = c
        .search(
            &SearchRequest::dense_batch("emb", &queries[..check * dim], k)
                .with_strategy(Strategy::Streaming),
        )
        .unwrap();
    for (name, p) in precisions {
        vellum::search::release_gpu_memory();
        let req = SearchRequest::dense_batch("emb", &queries, k)
            .on_device(Device::Cuda(0))
            .with_gpu_precision(*p);
        let t = Instant::now();
        let first = c.search(&req).unwrap();
        let first_s = t.elapsed().as_secs_f64();
        let times: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                c.search(&req).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect();
        let equal = first[..check].iter().zip(&cpu).all(|(g, c)| {
            g.iter()
                .map(|h| (&h.id, h.score))
                .eq(c.iter().map(|h| (&h.id, h.score)))
        });
        println!(
            "{}",
            serde_json::json!({
                "bench": "dense", "rows": rows, "dim": dim, "queries": nq, "k": k,
                "stored": dtype, "gpu_precision": name,
                "first_search_s": first_s, "batch_s": median(times),
                "equal_to_cpu": equal, "checked": check,
            })
        );
    }
}

fn rerank(args: &[String], data: &Path) {
    let docs: usize = arg(args, "--docs", Some("100000")).parse().unwrap();
    let dim: usize = arg(args, "--dim", Some("128")).parse().unwrap();
    let nq: usize = arg(args, "--queries", Some("1000")).parse().unwrap();
    let ncand: usize = arg(args, "--candidates", Some("1000")).parse().unwrap();
    let k: usize = arg(args, "--k", Some("10")).parse().unwrap();
    let reps: usize = arg(args, "--reps", Some("5")).parse().unwrap();
    let check: usize = arg(args, "--check", Some("20")).parse().unwrap();
    let q_tokens = 32;
    let dir = data.join(format!("multi_{docs}x{dim}"));
    let db_path = dir.join("db");
    let mut rng = Rng(0xc01be47);
    let centers: Vec<f32> = (0..1000 * dim).map(|_| rng.normal()).collect();
    if !db_path.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let db = Database::create(&db_path).unwrap();
        let mut w = db.writer_with(options()).unwrap();
        let spec = format!("tok:multi:{dim}:f16:ip");
        w.create_collection(
            "c",
            Schema::new().with_field(FieldSpec::parse(&spec).unwrap()),
        )
        .unwrap();
        let (mut all, mut lens) = (Vec::new(), Vec::new());
        for start in (0..docs).step_by(10_000) {
            let n = 10_000.min(docs - start);
            let mut batch = Vec::with_capacity(n);
            for i in 0..n {
                // ColBERT documents: 30 to 180 tokens.
                let t = 30 + (rng.next() % 151) as usize;
                let x = embedding_like(&mut rng, &centers, dim, t);
                let x: Vec<f32> = x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
                all.extend_from_slice(&x);
                lens.push(t as f32);
                batch.push(Document::new(format!("d{}", start + i)).with_multi("tok", x));
            }
            w.add_all("c", batch).unwrap();
            w.commit().unwrap();
        }
        write_npy_f32(&dir.join("tokens.npy"), &[all.len() / dim, dim], &all).unwrap();
        write_npy_f32(&dir.join("lengths.npy"), &[docs], &lens).unwrap();
        let q = embedding_like(&mut rng, &centers, dim, nq * q_tokens);
        write_npy_f32(&dir.join("q.npy"), &[nq, q_tokens, dim], &q).unwrap();
        // Candidates: per query, `ncand` distinct documents (as a first stage would give).
        let cands: Vec<f32> = (0..nq)
            .flat_map(|qi| (0..ncand).map(move |j| ((qi * 7919 + j * 97) % docs) as f32))
            .collect();
        write_npy_f32(&dir.join("candidates.npy"), &[nq, ncand], &cands).unwrap();
        eprintln!(
            "made {} in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let read = |name: &str| {
        let a = vellum::ingest::array::Array::open(&dir.join(name), None).unwrap();
        let mut v = vec![0f32; a.shape().iter().product()];
        a.read_f32(0, &mut v).unwrap();
        v
    };
    let queries = read("q.npy");
    let cand_rows = read("candidates.npy");
    let ncand = cand_rows.len() / nq;
    let ids: Vec<String> = (0..docs).map(|i| format!("d{i}")).collect();
    let candidates: Vec<Vec<(&str, f32)>> = cand_rows
        .chunks_exact(ncand)
        .map(|row| {
            row.iter()
                .map(|&d| (ids[d as usize].as_str(), 0.0))
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = queries.chunks_exact(q_tokens * dim).collect();
    let snap = Database::open(&db_path).unwrap().snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let cpu = c
        .rerank(
            &Rerank::multi("tok", refs[..check].to_vec(), k),
            &candidates[..check],
        )
        .unwrap();
    let r = Rerank::multi("tok", refs.clone(), k).on_device(Device::Cuda(0));
    let t = Instant::now();
    let first = c.rerank(&r, &candidates).unwrap();
    let first_s = t.elapsed().as_secs_f64();
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            c.rerank(&r, &candidates).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let equal = first[..check].iter().zip(&cpu).all(|(g, c)| {
        g.iter()
            .map(|h| (&h.id, h.score))
            .eq(c.iter().map(|h| (&h.id, h.score)))
    });
    // CPU re-ranking of the same batch, for scale (all cores).
    let t = Instant::now();
    c.rerank(&Rerank::multi("tok", refs.clone(), k), &candidates)
        .unwrap();
    let cpu_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "rerank", "docs": docs, "dim": dim, "queries": nq, "query_tokens": q_tokens,
            "candidates": ncand, "k": k, "stored": "f16",
            "first_search_s": first_s, "batch_s": median(times), "cpu_batch_s": cpu_s,
            "equal_to_cpu": equal, "checked": check,
        })
    );
}

fn encode(args: &[String], data: &Path) {
    use vellum::encode::{load, EncoderOptions, ModelDir};
    let model = arg(args, "--model", None);
    let dtype = arg(args, "--dtype", Some("f16"));
    let batch = arg(args, "--batch", Some("256"));
    let reps: usize = arg(args, "--reps", Some("3")).parse().unwrap();
    let texts: Vec<String> = std::fs::read_to_string(arg(args, "--texts", None))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dir = ModelDir::resolve(&model).unwrap();
    let options =
        EncoderOptions::parse(&format!("device=cuda:0,dtype={dtype},batch_size={batch}")).unwrap();
    let encoder = load(&dir, &options).unwrap();
    let first = encoder.encode_texts(&refs[..64.min(refs.len())]).unwrap();
    write_npy_f32(
        &data.join(format!("encode_{dtype}.npy")),
        &[first.rows.len(), first.dims],
        &first.values,
    )
    .unwrap();
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            encoder.encode_texts(&refs).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let s = median(times);
    println!(
        "{}",
        serde_json::json!({
            "bench": "encode", "dtype": dtype, "texts": texts.len(), "batch": batch,
            "encode_s": s, "texts_per_s": texts.len() as f64 / s,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = PathBuf::from(arg(&args, "--data", None));
    match args.get(1).map(String::as_str) {
        Some("dense") => dense(&args, &data),
        Some("rerank") => rerank(&args, &data),
        Some("encode") => encode(&args, &data),
        _ => panic!("usage: gpu_timing dense|rerank|encode --data DIR [options]"),
    }
}
