//! Where PLAID's stages lose exact MaxSim's top-10, on the token vectors `make_data.py` writes.
//!
//! For each query, exact MaxSim's top-10 (vellum, `exact`) is the reference; the tool counts how
//! much of it survives each stage of PLAID (`vellum::plaid::search`, PLAID paper §4):
//!
//! 1. candidate generation (the inverted lists of each query token's `ncells` best centroids);
//! 2. centroid pruning (centroid-score MaxSim over tokens whose centroid scores ≥ t_cs for some
//!    query token; the best `ndocs` go on);
//! 3. centroid interaction (over every token; the best `ndocs / 4` go on);
//! 4. exact MaxSim over the stored vectors (the final top-10).
//!
//! Stage 1 bounds every later stage. Two counterfactuals show what the centroid approximations
//! cost: stage 2 ranked by MaxSim over the decompressed residual codes instead of centroid
//! scores, and stage 3 ranked that way. The stages are recomputed here from the section's
//! centroids, codes and inverted lists; the tool checks that its stage 4 equals vellum's own
//! PLAID search (`mismatched queries` must be 0).
//!
//! Usage: `plaid-stages DATA_DIR DB_DIR` (DB_DIR is built on the first run: the documents in a
//! `tok:multi:128:f16:ip` field, PLAID 2 bits, default centroids; later runs reopen it).
//! Output: one JSON line per `ncells` (1, 2, 4, 8) at the k = 10 defaults otherwise.

use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use vellum::format::plaid::{lookup_table, Codes};
use vellum::plaid::{PlaidParams, PlaidSearch};
use vellum::{Database, Document, FieldSpec, Schema, SearchRequest};

/// Rows of a `[T, d]` matrix cut by lengths.
fn split(tokens: &Array2<f32>, lengths: &Array1<i64>) -> Vec<Array2<f32>> {
    let mut at = 0usize;
    lengths
        .iter()
        .map(|&l| {
            let part = tokens
                .slice(ndarray::s![at..at + l as usize, ..])
                .to_owned();
            at += l as usize;
            part
        })
        .collect()
}

/// Σ over query tokens of the best document token's inner product.
fn maxsim(q: &Array2<f32>, d: &Array2<f32>) -> f32 {
    q.dot(&d.t())
        .rows()
        .into_iter()
        .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .sum()
}

/// The best `n` rows by score (ties: lower row first; unlike the library, rows tied with the
/// `n`-th are not kept, one more source of differences at the cut-offs).
fn best(mut v: Vec<(f32, u32)>, n: usize) -> Vec<u32> {
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v.truncate(n);
    v.into_iter().map(|x| x.1).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(db_dir)) = (args.next(), args.next()) else {
        return Err("usage: plaid-stages DATA_DIR DB_DIR".into());
    };
    let dir = Path::new(&dir);
    let doc_tokens: Array2<f32> = read_npy(dir.join("doc_tokens.npy"))?;
    let doc_lengths: Array1<i64> = read_npy(dir.join("doc_lengths.npy"))?;
    let query_tokens: Array2<f32> = read_npy(dir.join("query_tokens.npy"))?;
    let query_lengths: Array1<i64> = read_npy(dir.join("query_lengths.npy"))?;
    let docs = split(&doc_tokens, &doc_lengths);
    let queries = split(&query_tokens, &query_lengths);
    let dim = doc_tokens.ncols();
    let k = 10;
    let db = if Path::new(&db_dir).exists() {
        Database::open(&db_dir)?
    } else {
        let db = Database::create(&db_dir)?;
        let mut w = db.writer()?;
        let spec = FieldSpec::parse(&format!("tok:multi:{dim}:f16:ip"))?;
        w.create_collection("c", Schema::new().with_field(spec))?;
        for (i, d) in docs.iter().enumerate() {
            let doc = Document::new(i.to_string()).with_multi("tok", d.iter().copied().collect());
            w.add("c", doc)?;
        }
        w.commit()?;
        let params = PlaidParams {
            nbits: 2,
            ..Default::default()
        };
        w.set_plaid("c", "tok", Some(params))?;
        w.reindex("c")?;
        drop(w);
        db
    };
    let snap = db.snapshot()?;
    let c = snap.collection("c")?;
    let [slot] = c.slots() else {
        return Err("expected one segment (rows = document order)".into());
    };
    let seg = &slot.segment;
    if seg.rows() as usize != docs.len() {
        return Err(format!(
            "{db_dir} holds {} rows but {} has {} documents: remove DB_DIR to rebuild it",
            seg.rows(),
            dir.display(),
            docs.len()
        )
        .into());
    }
    let view = seg.plaid(0).ok_or("no PLAID section")??;
    let kc = view.k();
    let table = lookup_table(view.weights, view.nbits);
    let centroids = Array2::from_shape_vec((kc, dim), view.centroids.to_vec())?;
    let codes_of = |r: u32| -> Result<Vec<u32>, vellum::Error> {
        let range = seg.multi_range(0, r)?;
        Ok(match view.codes.slice(range).expect("codes in range") {
            Codes::U16(c) => c.iter().map(|&x| x as u32).collect(),
            Codes::U32(c) => c.to_vec(),
        })
    };
    let decompressed = |r: u32| -> Result<Array2<f32>, Box<dyn std::error::Error>> {
        let range = seg.multi_range(0, r)?;
        let n = range.len();
        let mut out = Vec::new();
        view.decompress_tokens(&table, range, false, &mut out, (seg.path(), 0))?;
        Ok(Array2::from_shape_vec((n, dim), out)?)
    };
    // The stored (f16) vectors, widened: what vellum's exact MaxSim and stage 4 score.
    let stored = |r: u32| -> Result<Array2<f32>, Box<dyn std::error::Error>> {
        let range = seg.multi_range(0, r)?;
        let n = range.len();
        let mut out = Vec::new();
        seg.multi_tokens_f32(0, range, &mut out)?;
        Ok(Array2::from_shape_vec((n, dim), out)?)
    };
    let exact: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            let qf: Vec<f32> = q.iter().copied().collect();
            let hits = c.search(&SearchRequest::multi("tok", &qf, k).exact())?;
            Ok(hits[0].iter().map(|h| h.id.parse().unwrap()).collect())
        })
        .collect::<Result<_, vellum::Error>>()?;
    println!(
        "{}",
        serde_json::json!({"docs": docs.len(), "tokens": doc_tokens.nrows(), "centroids": kc,
            "queries": queries.len()})
    );
    for ncells in [1usize, 2, 4, 8] {
        let p = PlaidSearch {
            ncells,
            ..PlaidSearch::for_k(k)
        };
        // Reference top-10 entries found after each stage, summed over queries.
        let (mut s1, mut s2, mut s3, mut s4) = (0, 0, 0, 0);
        let (mut s2_resid, mut s3_resid, mut candidates, mut mismatched) = (0, 0, 0, 0);
        for (q, reference) in queries.iter().zip(&exact) {
            let found = |set: &[u32]| reference.iter().filter(|r| set.contains(r)).count();
            let nq = q.nrows();
            let st = centroids.dot(&q.t()); // [K, nq]
            let mut rows = Vec::new();
            for qi in 0..nq {
                let col: Vec<(f32, u32)> = (0..kc).map(|ci| (st[[ci, qi]], ci as u32)).collect();
                for cell in best(col, ncells) {
                    rows.extend_from_slice(view.list(cell as usize));
                }
            }
            rows.sort_unstable();
            rows.dedup();
            candidates += rows.len();
            let alive: Vec<bool> = (0..kc)
                .map(|ci| (0..nq).any(|qi| st[[ci, qi]] >= p.centroid_threshold))
                .collect();
            let centroid_maxsim = |r: u32, pruned: bool| -> Result<f32, vellum::Error> {
                let mut m = vec![f32::NEG_INFINITY; nq];
                for code in codes_of(r)? {
                    if pruned && !alive[code as usize] {
                        continue;
                    }
                    for (qi, m) in m.iter_mut().enumerate() {
                        *m = m.max(st[[code as usize, qi]]);
                    }
                }
                // A query token no surviving centroid scores: −9999, as vellum and ColBERT's
                // filter_pids.cpp.
                Ok(m.iter()
                    .map(|&x| if x.is_finite() { x } else { -9999.0 })
                    .sum())
            };
            let score =
                |set: &[u32], f: &dyn Fn(u32) -> Result<f32, Box<dyn std::error::Error>>| {
                    set.iter()
                        .map(|&r| Ok((f(r)?, r)))
                        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()
                };
            let stage2 = best(score(&rows, &|r| Ok(centroid_maxsim(r, true)?))?, p.ndocs);
            let stage3 = best(
                score(&stage2, &|r| Ok(centroid_maxsim(r, false)?))?,
                p.ndocs / 4,
            );
            let stage4 = best(score(&stage3, &|r| Ok(maxsim(q, &stored(r)?)))?, k);
            let resid = |r: u32| Ok(maxsim(q, &decompressed(r)?));
            let stage2_resid = best(score(&rows, &resid)?, p.ndocs);
            let stage3_resid = best(score(&stage2, &resid)?, p.ndocs / 4);
            let qf: Vec<f32> = q.iter().copied().collect();
            let vellum = c.search(&SearchRequest::multi("tok", &qf, k).with_plaid(p))?;
            let vellum: Vec<u32> = vellum[0].iter().map(|h| h.id.parse().unwrap()).collect();
            let mut sorted = (stage4.clone(), vellum);
            sorted.0.sort_unstable();
            sorted.1.sort_unstable();
            mismatched += usize::from(sorted.0 != sorted.1);
            s1 += found(&rows);
            s2 += found(&stage2);
            s3 += found(&stage3);
            s4 += found(&stage4);
            s2_resid += found(&stage2_resid);
            s3_resid += found(&stage3_resid);
        }
        let total = exact.iter().map(Vec::len).sum::<usize>() as f64;
        let r = |x: usize| (x as f64 / total * 1000.0).round() / 1000.0;
        println!(
            "{}",
            serde_json::json!({"ncells": ncells, "t_cs": p.centroid_threshold, "ndocs": p.ndocs,
                "stage1_candidates_per_query": candidates / queries.len(),
                "kept_after_stage1": r(s1), "kept_after_stage2": r(s2),
                "kept_after_stage3": r(s3), "final_top10_agreement": r(s4),
                "kept_after_stage2_if_ranked_by_residuals": r(s2_resid),
                "kept_after_stage3_if_ranked_by_residuals": r(s3_resid),
                "mismatched_queries": mismatched})
        );
    }
    Ok(())
}
