//! `vellum search`: one database or a shard set, query vectors or texts, a run file on stdout and
//! optionally its evaluation on stderr.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use vellum::encode::Role;
use vellum::eval::{self, write_ranked, Qrels, Run, RunEntry};
use vellum::{QuerySet, ShardSet, Strategy, VectorQueryFiles};

use super::encoder_runtime;
use super::progress::counter;
use crate::args::{SearchArgs, StrategyArg};

pub fn run(a: SearchArgs, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<&Path> = a.db.iter().chain(&a.dbs).map(|p| p.as_path()).collect();
    if paths.is_empty() {
        bail!("no database given: pass DB or one or more --db DB");
    }
    let shards = ShardSet::open(&paths)?;
    let field = shards.field(&a.collection, &a.field)?;
    let qrels = a.eval.as_deref().map(Qrels::read).transpose()?;
    let measures = eval::parse_measures(&a.metrics)?;
    let queries = if let Some(path) = &a.queries {
        let runtime = encoder_runtime(&a.encoder_options)?;
        let first = shards.collections(&a.collection)?[0];
        let encoder = first.load_encoder(&a.field, Role::Query, &runtime)?;
        shards.check_query_encoder(&a.collection, &a.field, &*encoder)?;
        QuerySet::texts(&field, path, encoder)?
    } else {
        let Some(vectors) = &a.query_vectors else {
            bail!("no queries given: pass --queries FILE (text, encoded by the field's query encoder) or --query-vectors FILE");
        };
        let files = VectorQueryFiles {
            vectors: vectors.clone(),
            lengths: a.query_lengths.clone(),
            ids: a.query_ids.clone(),
        };
        QuerySet::vectors(&field, &files)?
    };
    let strategy = match a.strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Streaming => Strategy::Streaming,
        StrategyArg::Blocked => Strategy::Blocked,
        StrategyArg::Screened => Strategy::Screened,
        StrategyArg::Coded => Strategy::Coded,
    };
    let nq = queries.len();
    let pb = counter(nq as u64, "queries");
    let mut run = Run::default();
    for b0 in (0..nq).step_by(a.batch.max(1)) {
        let b1 = (b0 + a.batch.max(1)).min(nq);
        let batch = queries.batch(b0, b1)?;
        let mut request = queries.request(&batch, a.k).with_strategy(strategy);
        request.ef = a.ef;
        request.exact = a.exact;
        if a.ncells.is_some() || a.ndocs.is_some() || a.centroid_threshold.is_some() || a.decompress
        {
            let d = vellum::plaid::PlaidSearch::for_k(a.k);
            request.plaid = Some(vellum::plaid::PlaidSearch {
                ncells: a.ncells.unwrap_or(d.ncells),
                ndocs: a.ndocs.unwrap_or(d.ndocs),
                centroid_threshold: a.centroid_threshold.unwrap_or(d.centroid_threshold),
                decompress: a.decompress,
            });
        }
        // A problem with the queries names the query file; one with the database (a damaged
        // file, an I/O error) is the database's and is reported as it is.
        let results = shards
            .search(&a.collection, &request)
            .map_err(|e| match e {
                vellum::Error::InvalidQuery(_) | vellum::Error::WrongFieldKind { .. } => {
                    anyhow::anyhow!("{}: {e}", queries.label())
                }
                other => other.into(),
            })?;
        for (i, hits) in results.iter().enumerate() {
            let qid = queries.id(b0 + i);
            let ranked = hits.iter().map(|h| (h.id.as_str(), h.score));
            write_ranked(out, a.format.into(), qid, ranked, &a.tag)?;
            if qrels.is_some() {
                let entries = hits.iter().map(|h| RunEntry {
                    docid: h.id.clone(),
                    score: f64::from(h.score),
                });
                run.queries
                    .entry(qid.to_string())
                    .or_default()
                    .extend(entries);
            }
        }
        pb.set_position(b1 as u64);
    }
    pb.finish_and_clear();
    if let Some(qrels) = &qrels {
        let e = eval::evaluate(qrels, &run, &measures);
        e.write_table(&mut std::io::stderr(), false)?;
        for note in e.notes() {
            eprintln!("note: {note}");
        }
    }
    Ok(())
}
