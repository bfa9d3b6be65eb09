//! vellum's PLAID index against next-plaid 1.8.5 (LightOn's Rust PLAID crate, the named
//! peer) on the same token vectors, in one process, one query at a time:
//!
//! * exact MaxSim (vellum, `exact`) is the oracle;
//! * vellum: PLAID at the paper's k = 10 defaults (ncells 1, t_cs 0.5, ndocs 256) and with more
//!   cells, last stage on the stored vectors and on decompressed codes (next-plaid's mode);
//! * next-plaid: `n_ivf_probe` 1, 2, 4, 8 with `n_full_scores` 256 and 4096 (its default), its
//!   default t_cs 0.4;
//!
//! * vellum with a codes-only field (`store=codes`: no stored tokens, every read decompresses, as
//!   next-plaid stores them);
//!
//! both indexes with 2-bit residuals and their own default number of centroids. Reports build
//! time, bytes per token on disk (all files of the collection / index), top-10 agreement with
//! exact MaxSim, MRR@10 against the qrels, and mean latency per query.
//!
//! Usage: `compare-next-plaid DATA_DIR` where DATA_DIR holds `doc_tokens.npy` (f32 `[T, d]`),
//! `doc_lengths.npy` (i64 `[N]`), `query_tokens.npy`, `query_lengths.npy` and `relevant.json`
//! (per query, the index of its relevant document), as `make_data.py` writes them. Threads:
//! `RAYON_NUM_THREADS` (both libraries use rayon).

use std::path::Path;
use std::time::Instant;

use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use next_plaid::search::SearchParameters;
use next_plaid::{index::IndexConfig, MmapIndex};
use vellum::plaid::{PlaidParams, PlaidSearch};
use vellum::{Database, Document, FieldSpec, Schema, SearchRequest};

/// Rows of a `[T, d]` matrix cut by lengths.
fn split(tokens: &Array2<f32>, lengths: &Array1<i64>) -> Vec<Array2<f32>> {
    let mut at = 0usize;
    lengths
        .iter()
        .map(|&n| {
            let n = n as usize;
            let m = tokens.slice(ndarray::s![at..at + n, ..]).to_owned();
            at += n;
            m
        })
        .collect()
}

/// Bytes of every file under `path`.
fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Measure {
    agreement: f64,
    mrr: f64,
    ms_per_query: f64,
}

fn measure(
    results: &[Vec<usize>],
    exact: &[Vec<usize>],
    relevant: &[usize],
    seconds: f64,
) -> Measure {
    let n = results.len() as f64;
    let agreement = results
        .iter()
        .zip(exact)
        .map(|(r, e)| r.iter().filter(|d| e.contains(d)).count() as f64 / e.len().max(1) as f64)
        .sum::<f64>()
        / n;
    let mrr = results
        .iter()
        .zip(relevant)
        .map(|(r, rel)| {
            r.iter()
                .position(|d| d == rel)
                .map_or(0.0, |p| 1.0 / (p as f64 + 1.0))
        })
        .sum::<f64>()
        / n;
    Measure {
        agreement,
        mrr,
        ms_per_query: seconds * 1000.0 / n,
    }
}

fn report(engine: &str, setting: &str, m: &Measure) {
    println!(
        "{}",
        serde_json::json!({
            "engine": engine, "setting": setting,
            "top10_agreement": (m.agreement * 10000.0).round() / 10000.0,
            "mrr@10": (m.mrr * 10000.0).round() / 10000.0,
            "ms_per_query": (m.ms_per_query * 1000.0).round() / 1000.0,
        })
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: compare-next-plaid DATA_DIR")?;
    let dir = Path::new(&dir);
    let doc_tokens: Array2<f32> = read_npy(dir.join("doc_tokens.npy"))?;
    let doc_lengths: Array1<i64> = read_npy(dir.join("doc_lengths.npy"))?;
    let query_tokens: Array2<f32> = read_npy(dir.join("query_tokens.npy"))?;
    let query_lengths: Array1<i64> = read_npy(dir.join("query_lengths.npy"))?;
    let relevant: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("relevant.json"))?)?;
    let docs = split(&doc_tokens, &doc_lengths);
    let queries = split(&query_tokens, &query_lengths);
    let dim = doc_tokens.ncols();
    let k = 10;
    println!(
        "{}",
        serde_json::json!({"docs": docs.len(), "tokens": doc_tokens.nrows(), "dim": dim,
            "queries": queries.len(),
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())})
    );
    let tmp = tempfile::tempdir()?;

    // vellum: f16 token vectors (as ColBERT fields are usually stored), PLAID 2 bits.
    let db = Database::create(tmp.path().join("vellum"))?;
    let mut w = db.writer()?;
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{dim}:f16:ip"))?),
    )?;
    for (i, d) in docs.iter().enumerate() {
        w.add(
            "c",
            Document::new(i.to_string()).with_multi("tok", d.iter().copied().collect()),
        )?;
    }
    w.commit()?;
    let t0 = Instant::now();
    w.set_plaid(
        "c",
        "tok",
        Some(PlaidParams {
            nbits: 2,
            ..Default::default()
        }),
    )?;
    w.reindex("c")?;
    let vellum_build = t0.elapsed().as_secs_f64();
    let tokens = doc_tokens.nrows() as f64;
    let per_token = |bytes: u64| (bytes as f64 / tokens * 10.0).round() / 10.0;
    let plaid_bytes = |db: &Database, name: &str| -> Result<u64, vellum::Error> {
        let snap = db.snapshot()?;
        let stats = snap.collection(name)?.stats()?;
        Ok(stats
            .segments
            .iter()
            .filter_map(|s| s.plaid.get("tok"))
            .map(|p| p.bytes)
            .sum())
    };
    println!(
        "{}",
        serde_json::json!({"engine": "vellum", "store": "tokens (f16) and codes",
            "bytes_per_token_all_files": per_token(dir_bytes(&tmp.path().join("vellum").join("c"))),
            "bytes_per_token_plaid_section": per_token(plaid_bytes(&db, "c")?)})
    );
    // The same documents in a codes-only field: no stored tokens once the codec exists.
    w.create_collection(
        "codes",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{dim}:f16:ip"))?),
    )?;
    for (i, d) in docs.iter().enumerate() {
        w.add(
            "codes",
            Document::new(i.to_string()).with_multi("tok", d.iter().copied().collect()),
        )?;
    }
    w.commit()?;
    let t0 = Instant::now();
    w.set_plaid(
        "codes",
        "tok",
        Some(PlaidParams {
            nbits: 2,
            codes_only: true,
            ..Default::default()
        }),
    )?;
    w.reindex("codes")?;
    let codes_build = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"engine": "vellum", "store": "codes only",
            "build_s": (codes_build * 10.0).round() / 10.0,
            "bytes_per_token_all_files": per_token(dir_bytes(&tmp.path().join("vellum").join("codes"))),
            "bytes_per_token_plaid_section": per_token(plaid_bytes(&db, "codes")?)})
    );
    drop(w);
    let snap = db.snapshot()?;
    let c = snap.collection("c")?;
    let q_flat: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| q.iter().copied().collect())
        .collect();
    let codes = snap.collection("codes")?;
    let run_on = |c: &vellum::Collection,
                  plaid: Option<PlaidSearch>|
     -> Result<(Vec<Vec<usize>>, f64), vellum::Error> {
        let start = Instant::now();
        let mut out = Vec::with_capacity(q_flat.len());
        for q in &q_flat {
            let req = SearchRequest::multi("tok", q, k);
            let req = match plaid {
                Some(p) => req.with_plaid(p),
                None => req.exact(),
            };
            let hits = c.search(&req)?.pop().unwrap_or_default();
            out.push(
                hits.iter()
                    .map(|h| h.id.parse::<usize>().unwrap())
                    .collect(),
            );
        }
        Ok((out, start.elapsed().as_secs_f64()))
    };
    let run_vellum = |plaid: Option<PlaidSearch>| run_on(c, plaid);
    // VELLUM_ONLY_DEFAULTS: only vellum's PLAID at the defaults, repeated (for a profiler).
    if std::env::var_os("VELLUM_ONLY_DEFAULTS").is_some() {
        for _ in 0..5 {
            let (_, s) = run_vellum(Some(PlaidSearch::for_k(k)))?;
            println!(
                "defaults: {:.3} ms per query",
                s * 1000.0 / q_flat.len() as f64
            );
        }
        return Ok(());
    }
    let (exact, exact_s) = run_vellum(None)?;
    report(
        "vellum",
        "exact MaxSim",
        &measure(&exact, &exact, &relevant, exact_s),
    );
    println!(
        "{}",
        serde_json::json!({"engine": "vellum", "build_s": (vellum_build * 10.0).round() / 10.0})
    );
    // The paper's k = 10 defaults with more cells, then wider settings (t_cs 0.4 as
    // next-plaid's default; ndocs / 4 rows reach the last stage, as next-plaid's
    // n_full_scores), then more rows through the last stage (`full_scores`), each with the
    // last stage on stored and on decompressed vectors.
    let defaults = PlaidSearch::for_k(k);
    let mut settings: Vec<PlaidSearch> = [1usize, 2, 4, 8]
        .iter()
        .map(|&ncells| PlaidSearch { ncells, ..defaults })
        .collect();
    for (ncells, ndocs) in [(2usize, 1024usize), (4, 4096), (8, 16384)] {
        settings.push(PlaidSearch {
            ncells,
            centroid_threshold: 0.4,
            ndocs,
            full_scores: None,
            decompress: false,
        });
    }
    for (ncells, threshold, ndocs, full) in
        [(1, 0.5, 256, 128), (1, 0.5, 256, 256), (2, 0.4, 1024, 1024)]
    {
        settings.push(PlaidSearch {
            ncells,
            centroid_threshold: threshold,
            ndocs,
            full_scores: Some(full),
            decompress: false,
        });
    }
    for decompress in [false, true] {
        for base in &settings {
            let p = PlaidSearch {
                decompress,
                ..*base
            };
            let (r, s) = run_vellum(Some(p))?;
            let setting = format!(
                "ncells {}, t_cs {}, ndocs {}, full_scores {}, last stage {}",
                p.ncells,
                p.centroid_threshold,
                p.ndocs,
                p.full_scores_for(k),
                if decompress {
                    "decompressed"
                } else {
                    "stored vectors"
                }
            );
            report("vellum", &setting, &measure(&r, &exact, &relevant, s));
        }
    }
    for p in &settings {
        let (r, s) = run_on(codes, Some(*p))?;
        let setting = format!(
            "codes-only field: ncells {}, t_cs {}, ndocs {}, full_scores {}",
            p.ncells,
            p.centroid_threshold,
            p.ndocs,
            p.full_scores_for(k)
        );
        report("vellum", &setting, &measure(&r, &exact, &relevant, s));
    }

    // next-plaid: its defaults but 2 bits.
    let t0 = Instant::now();
    let config = IndexConfig {
        nbits: 2,
        ..Default::default()
    };
    let path = tmp.path().join("next-plaid");
    let index = MmapIndex::create_with_kmeans(&docs, path.to_str().unwrap(), &config)?;
    let next_build = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"engine": "next-plaid", "build_s": (next_build * 10.0).round() / 10.0,
            "bytes_per_token_all_files": per_token(dir_bytes(&path))})
    );
    for n_full_scores in [256usize, 4096] {
        for n_ivf_probe in [1usize, 2, 4, 8] {
            let params = SearchParameters {
                top_k: k,
                n_ivf_probe,
                n_full_scores,
                ..Default::default()
            };
            let start = Instant::now();
            let mut out = Vec::with_capacity(queries.len());
            for q in &queries {
                let r = index.search(q, &params, None)?;
                out.push(r.passage_ids.iter().map(|&d| d as usize).collect());
            }
            let s = start.elapsed().as_secs_f64();
            let setting = format!(
                "n_ivf_probe {n_ivf_probe}, n_full_scores {n_full_scores}, t_cs {:?}",
                params.centroid_score_threshold
            );
            report("next-plaid", &setting, &measure(&out, &exact, &relevant, s));
        }
    }
    Ok(())
}
