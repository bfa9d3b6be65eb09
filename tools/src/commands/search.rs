//! `vellum search`: one database or a shard set, query vectors or texts, an optional metadata
//! filter and second (re-ranking) stage, a run file on stdout and optionally its evaluation on
//! stderr.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vellum::encode::Role;
use vellum::eval::{self, write_ranked, Qrels, Run, RunEntry, RunFormat};
use vellum::filter::Filter;
use vellum::{Combine, Hit, QuerySet, ShardSet, Strategy, VectorQueryFiles};

use super::encoder_runtime;
use super::progress::counter;
use crate::args::{SearchArgs, StrategyArg};

/// Where a field's queries come from.
struct QueryFiles<'a> {
    texts: Option<&'a PathBuf>,
    vectors: Option<&'a String>,
    lengths: Option<&'a String>,
    ids: Option<&'a PathBuf>,
    /// The flags' names, for messages.
    flags: (&'a str, &'a str),
}

/// The query set of `field`: texts encoded by its query encoder, or vectors.
fn query_set(
    shards: &ShardSet,
    a: &SearchArgs,
    field: &str,
    files: QueryFiles<'_>,
) -> Result<QuerySet> {
    let spec = shards.field(&a.collection, field)?;
    if let Some(path) = files.texts {
        let runtime = encoder_runtime(&a.encoder_options)?;
        let first = shards.collections(&a.collection)?[0];
        let encoder = first.load_encoder(field, Role::Query, &runtime)?;
        shards.check_query_encoder(&a.collection, field, &*encoder)?;
        return Ok(QuerySet::texts(&spec, path, encoder)?);
    }
    let Some(vectors) = files.vectors else {
        let (texts, vectors) = files.flags;
        bail!("no queries given for field {field:?}: pass {texts} FILE (text, encoded by the field's query encoder) or {vectors} FILE");
    };
    Ok(QuerySet::vectors(
        &spec,
        &VectorQueryFiles {
            vectors: vectors.clone(),
            lengths: files.lengths.cloned(),
            ids: files.ids.cloned(),
        },
    )?)
}

/// The --filter value: JSON text or @FILE.
fn parse_filter(arg: &str) -> Result<Filter> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--filter: cannot read {path}"))?,
        None => arg.to_string(),
    };
    Filter::parse(&text).with_context(|| format!("--filter {arg}"))
}

/// A search's queries failing names the query file; a database problem (a damaged file, an I/O
/// error) is reported as it is.
fn blame(label: String) -> impl Fn(vellum::Error) -> anyhow::Error {
    move |e| match e {
        vellum::Error::InvalidQuery(_) | vellum::Error::WrongFieldKind { .. } => {
            anyhow::anyhow!("{label}: {e}")
        }
        other => other.into(),
    }
}

/// Writes each query's hits and keeps them for --eval.
struct Output<'a> {
    out: &'a mut dyn Write,
    format: RunFormat,
    tag: &'a str,
    run: Option<Run>,
}

impl Output<'_> {
    fn emit(&mut self, qid: &str, hits: &[Hit]) -> Result<()> {
        let ranked = hits.iter().map(|h| (h.id.as_str(), h.score));
        write_ranked(self.out, self.format, qid, ranked, self.tag)?;
        if let Some(run) = &mut self.run {
            run.queries
                .entry(qid.to_string())
                .or_default()
                .extend(hits.iter().map(|h| RunEntry {
                    docid: h.id.clone(),
                    score: f64::from(h.score),
                }));
        }
        Ok(())
    }
}

/// The re-ranking stage: its queries, paired with stage-1 queries by id.
struct Second {
    field: String,
    queries: QuerySet,
    by_id: HashMap<String, usize>,
    combine: Combine,
}

impl Second {
    /// Positions of `qids` among the re-ranking queries.
    fn positions<'q>(&self, qids: impl Iterator<Item = &'q str>) -> Result<Vec<usize>> {
        qids.map(|q| {
            self.by_id.get(q).copied().with_context(|| {
                format!(
                    "query {q:?} has no re-ranking query in {} (re-ranking queries pair with stage-1 queries by id)",
                    self.queries.label()
                )
            })
        })
        .collect()
    }

    /// Re-ranks candidates (`(docid, stage-1 score)` per query, queries `qids`).
    fn rerank(
        &self,
        shards: &ShardSet,
        a: &SearchArgs,
        filter: Option<&Filter>,
        qids: &[&str],
        candidates: &[Vec<(&str, f32)>],
    ) -> Result<Vec<Vec<Hit>>> {
        let batch = self
            .queries
            .select(&self.positions(qids.iter().copied())?)?;
        let mut second = self
            .queries
            .rerank(&batch, a.k)
            .with_combine(self.combine)
            .on_device(a.device);
        second.filter = filter;
        shards
            .rerank(&a.collection, &second, candidates)
            .map_err(blame(self.queries.label()))
    }
}

pub fn run(a: SearchArgs, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<&Path> = a.db.iter().chain(&a.dbs).map(|p| p.as_path()).collect();
    if paths.is_empty() {
        bail!("no database given: pass DB or one or more --db DB");
    }
    let shards = ShardSet::open(&paths)?;
    let qrels = a.eval.as_deref().map(Qrels::read).transpose()?;
    let measures = eval::parse_measures(&a.metrics)?;
    let filter = a.filter.as_deref().map(parse_filter).transpose()?;
    let combine = Combine::parse(&a.combine)?;
    let second = match &a.rerank_field {
        Some(field) => {
            let queries = query_set(
                &shards,
                &a,
                field,
                QueryFiles {
                    texts: a.rerank_queries.as_ref(),
                    vectors: a.rerank_query_vectors.as_ref(),
                    lengths: a.rerank_query_lengths.as_ref(),
                    ids: a.rerank_query_ids.as_ref(),
                    flags: ("--rerank-queries", "--rerank-query-vectors"),
                },
            )?;
            let by_id = (0..queries.len())
                .map(|i| (queries.id(i).to_string(), i))
                .collect();
            Some(Second {
                field: field.clone(),
                queries,
                by_id,
                combine,
            })
        }
        None => None,
    };
    let mut output = Output {
        out,
        format: a.format.into(),
        tag: &a.tag,
        run: qrels.as_ref().map(|_| Run::default()),
    };
    let batch_size = a.batch.max(1);
    if let Some(path) = &a.candidates {
        let second = second.as_ref().expect("clap requires --rerank-field");
        let run = Run::read(path)?;
        let qids: Vec<&str> = run.queries.keys().map(String::as_str).collect();
        // Every query of the run needs its re-ranking query: fail before writing anything.
        second.positions(qids.iter().copied())?;
        let pb = counter(qids.len() as u64, "queries");
        for (b, chunk) in qids.chunks(batch_size).enumerate() {
            let ranked: Vec<Vec<&RunEntry>> = chunk.iter().map(|q| run.ranked(q)).collect();
            let mut candidates: Vec<Vec<(&str, f32)>> = Vec::with_capacity(chunk.len());
            for (qid, r) in chunk.iter().zip(&ranked) {
                let mut c = Vec::with_capacity(r.len());
                for e in r {
                    let s = e.score as f32;
                    if !s.is_finite() {
                        bail!(
                            "{}: query {qid:?}, document {:?}: score {} is outside f32's range",
                            path.display(),
                            e.docid,
                            e.score
                        );
                    }
                    c.push((e.docid.as_str(), s));
                }
                candidates.push(c);
            }
            let results = second.rerank(&shards, &a, filter.as_ref(), chunk, &candidates)?;
            for (qid, hits) in chunk.iter().zip(&results) {
                output.emit(qid, hits)?;
            }
            pb.set_position((b * batch_size + chunk.len()) as u64);
        }
        pb.finish_and_clear();
        eprintln!(
            "re-ranked the candidates of {} queries from {} with field {:?}",
            qids.len(),
            path.display(),
            second.field
        );
    } else {
        let Some(field) = a.field.as_deref() else {
            bail!("no field given: pass --field FIELD (or --candidates RUN with --rerank-field)");
        };
        let queries = query_set(
            &shards,
            &a,
            field,
            QueryFiles {
                texts: a.queries.as_ref(),
                vectors: a.query_vectors.as_ref(),
                lengths: a.query_lengths.as_ref(),
                ids: a.query_ids.as_ref(),
                flags: ("--queries", "--query-vectors"),
            },
        )?;
        if let Some(second) = &second {
            // Every stage-1 query needs its re-ranking query: fail before searching.
            second.positions((0..queries.len()).map(|i| queries.id(i)))?;
        }
        let mut saved = match &a.save_candidates {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("--save-candidates: cannot create {}", p.display()))?,
            )),
            None => None,
        };
        let strategy = match a.strategy {
            StrategyArg::Auto => Strategy::Auto,
            StrategyArg::Streaming => Strategy::Streaming,
            StrategyArg::Blocked => Strategy::Blocked,
            StrategyArg::Screened => Strategy::Screened,
            StrategyArg::Coded => Strategy::Coded,
        };
        // Stage 1 retrieves `depth` candidates when they are re-ranked or saved; the output
        // keeps the best k.
        let depth = if second.is_some() || a.save_candidates.is_some() {
            a.depth.max(a.k)
        } else {
            a.k
        };
        let nq = queries.len();
        let pb = counter(nq as u64, "queries");
        for b0 in (0..nq).step_by(batch_size) {
            let b1 = (b0 + batch_size).min(nq);
            let batch = queries.batch(b0, b1)?;
            let mut request = queries
                .request(&batch, depth)
                .with_strategy(strategy)
                .on_device(a.device)
                .with_gpu_precision(a.gpu_precision);
            request.ef = a.ef;
            request.exact = a.exact;
            request.filter = filter.as_ref();
            if a.ncells.is_some()
                || a.ndocs.is_some()
                || a.centroid_threshold.is_some()
                || a.full_scores.is_some()
                || a.decompress
            {
                let d = vellum::plaid::PlaidSearch::for_k(depth);
                request.plaid = Some(vellum::plaid::PlaidSearch {
                    ncells: a.ncells.unwrap_or(d.ncells),
                    ndocs: a.ndocs.unwrap_or(d.ndocs),
                    centroid_threshold: a.centroid_threshold.unwrap_or(d.centroid_threshold),
                    full_scores: a.full_scores,
                    decompress: a.decompress,
                });
            }
            let results = shards
                .search(&a.collection, &request)
                .map_err(blame(queries.label()))?;
            let qids: Vec<&str> = (b0..b1).map(|i| queries.id(i)).collect();
            if let Some(f) = &mut saved {
                for (qid, hits) in qids.iter().zip(&results) {
                    let ranked = hits.iter().map(|h| (h.id.as_str(), h.score));
                    write_ranked(f, RunFormat::Trec, qid, ranked, &a.tag)?;
                }
            }
            let results = match &second {
                Some(second) => second.rerank(
                    &shards,
                    &a,
                    None,
                    &qids,
                    &vellum::search::candidates(&results),
                )?,
                None => results
                    .into_iter()
                    .map(|mut hits| {
                        hits.truncate(a.k);
                        hits
                    })
                    .collect(),
            };
            for (qid, hits) in qids.iter().zip(&results) {
                output.emit(qid, hits)?;
            }
            pb.set_position(b1 as u64);
        }
        pb.finish_and_clear();
        if let Some(mut f) = saved {
            f.flush()?;
        }
    }
    if let (Some(qrels), Some(run)) = (&qrels, &output.run) {
        let e = eval::evaluate(qrels, run, &measures);
        e.write_table(&mut std::io::stderr(), false)?;
        for note in e.notes() {
            eprintln!("note: {note}");
        }
    }
    Ok(())
}
