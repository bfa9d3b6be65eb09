//! Command implementations.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use vellum::encode::{EncoderOptions, Role};
use vellum::eval::{self, Qrels, Run, RunEntry};
use vellum::ingest::array::Array;
use vellum::ingest::jsonl::read_id_list;
use vellum::ingest::{self, split_tensor, Mode, VectorInput};
use vellum::{Database, FieldKind, FieldSpec, Schema, SearchRequest, Strategy};

use crate::args::{
    Cli, Command, CreateArgs, DeleteArgs, EvalArgs, ExportArgs, GetArgs, ImportTevatronArgs,
    IndexArgs, InfoArgs, IngestArgs, MergeRunsArgs, SearchArgs, StrategyArg,
};
use crate::runfile::{write_hits, write_run};

/// Runs a parsed command.
pub fn execute(cli: Cli, out: &mut dyn Write) -> Result<()> {
    match cli.command {
        Command::Create(a) => create(a, out),
        Command::Ingest(a) => ingest_cmd(a, out),
        Command::Search(a) => search(a, out),
        Command::Info(a) => info(a, out),
        Command::Verify(a) => verify(&a.db, out),
        Command::Delete(a) => delete(a, out),
        Command::Compact(a) => {
            let db = Database::open(&a.db)?;
            let spinner = spinner(&format!("compacting {}", a.collection));
            let c = db.writer()?.compact(&a.collection)?;
            spinner.finish_and_clear();
            writeln!(
                out,
                "compacted {}: {} segments -> {}, {} deleted rows dropped (generation {})",
                a.collection, c.segments_before, c.segments_after, c.rows_dropped, c.generation
            )?;
            Ok(())
        }
        Command::Get(a) => get(a, out),
        Command::Eval(a) => eval_cmd(a, out),
        Command::MergeRuns(a) => merge_runs(a, out),
        Command::ConvertRun(a) => {
            let run = Run::read(&a.input)?;
            write_run(out, a.to, &run, &a.tag, a.k)?;
            Ok(())
        }
        Command::Export(a) => export(a, out),
        Command::ImportTevatron(a) => import_tevatron(a, out),
        Command::Index(a) => index(a, out),
    }
}

fn index(a: IndexArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut w = db.writer()?;
    let params = if a.drop {
        None
    } else {
        Some(vellum::hnsw::HnswParams::parse(&a.hnsw)?)
    };
    w.set_index(&a.collection, &a.field, params)?;
    let spinner = spinner(&format!("building {}.{}", a.collection, a.field));
    let started = std::time::Instant::now();
    let c = w.reindex(&a.collection)?;
    spinner.finish_and_clear();
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let fi = coll.field_index(&a.field)?;
    let graphs = coll
        .slots()
        .iter()
        .filter_map(|s| s.segment.graph(fi))
        .collect::<vellum::Result<Vec<_>>>()?;
    match params {
        None => writeln!(out, "dropped the index of {}.{}", a.collection, a.field)?,
        Some(p) => writeln!(
            out,
            "indexed {}.{} ({p}): {} of {} segments have a graph, {} edges, in {:.1} s (generation {})",
            a.collection,
            a.field,
            graphs.len(),
            c.segments_after,
            graphs.iter().map(|g| g.edges()).sum::<u64>(),
            started.elapsed().as_secs_f64(),
            c.generation
        )?,
    }
    Ok(())
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

fn counter(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    pb
}

fn create(a: CreateArgs, out: &mut dyn Write) -> Result<()> {
    let mut schema = Schema::new();
    for f in &a.fields {
        schema = schema.with_field(FieldSpec::parse(f)?);
    }
    schema.validate()?;
    let db = if a.db.join("MANIFEST").exists() {
        Database::open(&a.db)?
    } else {
        Database::create(&a.db)?
    };
    let mut w = db.writer()?;
    w.create_collection(&a.collection, schema.clone())?;
    for spec in &a.hnsw {
        let (field, params) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        w.set_index(
            &a.collection,
            field,
            Some(vellum::hnsw::HnswParams::parse(params)?),
        )?;
    }
    bind_encoders(&a, &db, &mut w)?;
    let c = w.commit()?;
    writeln!(
        out,
        "created collection {} in {} (generation {})",
        a.collection,
        a.db.display(),
        c.generation
    )?;
    for f in &schema.fields {
        writeln!(out, "  field {f}")?;
    }
    for (field, p) in w.committed().collection(&a.collection)?.indexes() {
        writeln!(out, "  index {field}: {p}")?;
    }
    for (field, e) in w.committed().collection(&a.collection)?.all_encoders() {
        write_encoders(out, field, e)?;
    }
    Ok(())
}

fn write_encoders(
    out: &mut dyn Write,
    field: &str,
    e: &vellum::encode::FieldEncoders,
) -> Result<()> {
    for (role, r) in [("passage", &e.passage), ("query", &e.query)] {
        writeln!(
            out,
            "  encoder {field} ({role}): {} [{}] pooling={:?} normalize={} max_length={} dims={} dtype={:?}{}{}",
            r.source,
            r.fingerprint,
            r.pooling,
            r.normalize,
            r.max_length,
            r.dims,
            r.dtype,
            if r.prefix.is_empty() { String::new() } else { format!(" prefix={:?}", r.prefix) },
            if r.embedded { " (embedded)" } else { "" },
        )?;
    }
    Ok(())
}

/// Parses the `FIELD=VALUE` lists of `create`'s encoder flags and binds encoders.
fn bind_encoders(a: &CreateArgs, db: &Database, w: &mut vellum::Writer) -> Result<()> {
    let split = |flag: &str, v: &String| -> Result<(String, String)> {
        let (f, rest) = v
            .split_once('=')
            .with_context(|| format!("{flag} {v:?}: expected FIELD=VALUE"))?;
        Ok((f.to_string(), rest.to_string()))
    };
    let mut choices: std::collections::BTreeMap<String, vellum::encode::EncoderChoice> =
        Default::default();
    for v in &a.encoders {
        let (field, model) = split("--encoder", v)?;
        let c = choices.entry(field).or_default();
        c.passage = model;
        c.embed = a.embed_model;
    }
    let known = |flag: &str, field: &str, choices: &std::collections::BTreeMap<String, _>| {
        if choices.contains_key(field) {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "{flag} {field}=...: field {field:?} has no --encoder {field}=MODEL"
            ))
        }
    };
    for v in &a.query_encoders {
        let (field, model) = split("--query-encoder", v)?;
        known("--query-encoder", &field, &choices)?;
        choices.get_mut(&field).expect("known").query = Some(model);
    }
    for v in &a.encoder_options {
        let (field, list) = split("--encoder-options", v)?;
        known("--encoder-options", &field, &choices)?;
        choices.get_mut(&field).expect("known").passage_options = EncoderOptions::parse(&list)?;
    }
    for v in &a.query_encoder_options {
        let (field, list) = split("--query-encoder-options", v)?;
        known("--query-encoder-options", &field, &choices)?;
        choices.get_mut(&field).expect("known").query_options = EncoderOptions::parse(&list)?;
    }
    if a.embed_model && choices.is_empty() {
        bail!("--embed-model: no --encoder given, so there is no model to embed");
    }
    for (field, choice) in &choices {
        let spinner = spinner(&format!("loading the encoders of {field}"));
        let records = vellum::encode::prepare_encoders(db.path(), choice)
            .with_context(|| format!("--encoder {field}={}", choice.passage))?;
        spinner.finish_and_clear();
        w.set_encoders(&a.collection, field, records)?;
    }
    Ok(())
}

fn ingest_cmd(a: IngestArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut inputs = a
        .vectors
        .iter()
        .map(|s| VectorInput::parse(s))
        .collect::<vellum::Result<Vec<_>>>()?;
    for l in &a.lengths {
        let (field, spec) = l
            .split_once('=')
            .with_context(|| format!("--lengths {l:?}: expected FIELD=FILE"))?;
        let input = inputs
            .iter_mut()
            .find(|v| v.field == field)
            .with_context(|| format!("--lengths {field}=...: no --vectors {field}=... given"))?;
        input.lengths = Some(split_tensor(spec, &format!("{field}_lengths")));
    }
    let mut w = db.writer()?;
    if inputs.is_empty()
        && !w
            .committed()
            .collection(&a.collection)?
            .all_encoders()
            .is_empty()
    {
        return ingest_text_cmd(&a, &mut w, out);
    }
    let total = vellum::ingest::jsonl::JsonlDocs::count(&a.docs)?;
    let pb = counter(total, "docs");
    let mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    let shard = a.shard.unwrap_or(ingest::Shard::ALL);
    if shard.count > 1 {
        pb.set_length(total.div_ceil(shard.count as u64));
    }
    let stats = ingest::ingest_shard(
        &mut w,
        &a.collection,
        &a.docs,
        &inputs,
        mode,
        shard,
        &mut |n| pb.set_position(n),
    )?;
    pb.set_message("committing");
    let c = w.commit()?;
    pb.finish_and_clear();
    let of_shard = match a.shard {
        Some(s) => format!(" (shard {}/{})", s.index, s.count),
        None => String::new(),
    };
    writeln!(
        out,
        "ingested {} documents{of_shard} into {} (generation {})",
        stats.documents, a.collection, c.generation
    )?;
    Ok(())
}

/// `ingest` without vectors: encode the documents' text with the fields' passage encoders.
fn ingest_text_cmd(a: &IngestArgs, w: &mut vellum::Writer, out: &mut dyn Write) -> Result<()> {
    use vellum::ingest::pipeline::{ingest_text, TextIngest};
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C while the first is being handled kills the process as usual.
        let _ = ctrlc::try_set_handler(move || {
            if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: committing the documents encoded so far ...");
        });
    }
    let mut job = TextIngest::new(&a.collection, &a.docs);
    job.mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    job.shard = a.shard.unwrap_or(ingest::Shard::ALL);
    job.commit_every = a.commit_every.max(1);
    job.runtime = encoder_runtime(&a.encoder_options)?;
    job.interrupt = Some(interrupt);
    let spinner = spinner("loading encoders");
    let mut pb: Option<ProgressBar> = None;
    let started = std::time::Instant::now();
    let stats = ingest_text(w, &job, &mut |p| {
        let bar = pb.get_or_insert_with(|| {
            spinner.finish_and_clear();
            counter(p.total, "docs")
        });
        bar.set_position(p.written + p.skipped);
    });
    spinner.finish_and_clear();
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let stats = stats?;
    let secs = started.elapsed().as_secs_f64();
    let skipped = if stats.skipped > 0 {
        format!(", skipped {} already committed", stats.skipped)
    } else {
        String::new()
    };
    writeln!(
        out,
        "encoded and ingested {} documents into {} in {:.1} s ({:.1} docs/s, {} commits{skipped}; generation {})",
        stats.documents,
        a.collection,
        secs,
        stats.documents as f64 / secs.max(1e-9),
        stats.commits,
        w.committed().generation()
    )?;
    Ok(())
}

fn search(a: SearchArgs, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<&Path> = a.db.iter().chain(&a.dbs).map(|p| p.as_path()).collect();
    if paths.is_empty() {
        bail!("no database given: pass DB or one or more --db DB");
    }
    let snaps = paths
        .iter()
        .map(|p| Database::open(p)?.snapshot())
        .collect::<vellum::Result<Vec<_>>>()?;
    let colls = snaps
        .iter()
        .zip(&paths)
        .map(|(s, p)| {
            s.collection(&a.collection)
                .with_context(|| format!("database {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let coll = colls[0];
    let fi = coll.field_index(&a.field)?;
    let kind = coll.schema().fields[fi].kind.clone();
    let spec = coll.schema().fields[fi].to_string();
    for (c, p) in colls.iter().zip(&paths).skip(1) {
        let other = c
            .field_index(&a.field)
            .map(|i| c.schema().fields[i].to_string())
            .with_context(|| format!("database {}", p.display()))?;
        if other != spec {
            bail!(
                "mismatched shards: field {:?} is {spec} in {} but {other} in {}",
                a.field,
                paths[0].display(),
                p.display()
            );
        }
        if let (Some(e0), Some(e)) = (coll.encoders(&a.field), c.encoders(&a.field)) {
            let diff = e0.passage.differences(&e.passage);
            if !diff.is_empty() {
                bail!(
                    "mismatched shards: field {:?} was encoded differently in {} and {}: {}",
                    a.field,
                    paths[0].display(),
                    p.display(),
                    diff.join("; ")
                );
            }
        }
    }
    let qrels = a.eval.as_deref().map(Qrels::read).transpose()?;
    let measures = eval::parse_measures(&a.metrics)?;
    let mut run = Run::default();
    let queries = if let Some(path) = &a.queries {
        text_queries(&a, path, &colls, &paths, &kind)?
    } else {
        let Some(spec) = &a.query_vectors else {
            bail!("no queries given: pass --queries FILE (text, encoded by the field's query encoder) or --query-vectors FILE");
        };
        vector_queries(&a, spec, &kind)?
    };
    let (nq, dim) = (queries.len(), queries.dim());
    let strategy = match a.strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Streaming => Strategy::Streaming,
        StrategyArg::Blocked => Strategy::Blocked,
        StrategyArg::Screened => Strategy::Screened,
    };
    let pb = counter(nq as u64, "queries");
    let batch = a.batch.max(1);
    for b0 in (0..nq).step_by(batch) {
        let b1 = (b0 + batch).min(nq);
        let (values, ranges) = queries.batch(b0, b1)?;
        let request = match &kind {
            FieldKind::Dense { .. } => {
                let mut r =
                    SearchRequest::dense_batch(&a.field, &values, a.k).with_strategy(strategy);
                r.ef = a.ef;
                r.exact = a.exact;
                r
            }
            _ => {
                let qs: Vec<&[f32]> = ranges
                    .iter()
                    .map(|(s, e)| &values[s * dim..e * dim])
                    .collect();
                SearchRequest::multi_batch(&a.field, qs, a.k)
            }
        };
        let per_db = colls
            .iter()
            .map(|c| c.search(&request))
            .collect::<vellum::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", queries.label()))?;
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let results = vellum::search::merge_shard_hits(per_db, a.k, &names)?;
        for (i, hits) in results.iter().enumerate() {
            let qid = queries.id(b0 + i);
            write_hits(out, a.format, qid, hits, &a.tag)?;
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
        let mut err = std::io::stderr();
        write_evaluation(&mut err, &e, false)?;
        warn_unevaluated(&e);
    }
    Ok(())
}

/// Rows `start..end` of a query batch's values (one row per dense query, one per token of a
/// multi-vector query).
type TokenRange = (usize, usize);

/// The queries of a search: vectors from a file, or texts with the field's query encoder.
enum QuerySet {
    Vectors {
        array: Array,
        /// Per-query token row ranges (dense: one row each).
        ranges: Vec<(usize, usize)>,
        ids: Vec<String>,
        dim: usize,
    },
    Texts {
        path: std::path::PathBuf,
        queries: Vec<vellum::ingest::text_input::TextQuery>,
        encoder: Box<vellum::encode::TextEncoder>,
    },
}

impl QuerySet {
    fn len(&self) -> usize {
        match self {
            QuerySet::Vectors { ranges, .. } => ranges.len(),
            QuerySet::Texts { queries, .. } => queries.len(),
        }
    }

    fn dim(&self) -> usize {
        match self {
            QuerySet::Vectors { dim, .. } => *dim,
            QuerySet::Texts { encoder, .. } => encoder.dims(),
        }
    }

    fn id(&self, i: usize) -> &str {
        match self {
            QuerySet::Vectors { ids, .. } => &ids[i],
            QuerySet::Texts { queries, .. } => &queries[i].id,
        }
    }

    fn label(&self) -> String {
        match self {
            QuerySet::Vectors { array, .. } => array.label().to_string(),
            QuerySet::Texts { path, .. } => path.display().to_string(),
        }
    }

    /// Values of queries `b0..b1` and their token ranges relative to the returned values.
    fn batch(&self, b0: usize, b1: usize) -> Result<(Vec<f32>, Vec<TokenRange>)> {
        match self {
            QuerySet::Vectors {
                array, ranges, dim, ..
            } => {
                let (t0, t1) = (ranges[b0].0, ranges[b1 - 1].1);
                let mut values = vec![0f32; (t1 - t0) * dim];
                array.read_f32(t0 * dim, &mut values)?;
                let rel = ranges[b0..b1]
                    .iter()
                    .map(|(s, e)| (s - t0, e - t0))
                    .collect();
                Ok((values, rel))
            }
            QuerySet::Texts {
                queries, encoder, ..
            } => {
                let texts: Vec<&str> = queries[b0..b1].iter().map(|q| q.text.as_str()).collect();
                let values = encoder.encode(&texts)?;
                Ok((values, (0..b1 - b0).map(|i| (i, i + 1)).collect()))
            }
        }
    }
}

fn text_queries(
    a: &SearchArgs,
    path: &Path,
    colls: &[&std::sync::Arc<vellum::Collection>],
    paths: &[&Path],
    kind: &FieldKind,
) -> Result<QuerySet> {
    if !matches!(kind, FieldKind::Dense { .. }) {
        bail!(
            "--queries: field {:?} is a {} field; text queries are encoded for dense fields (give --query-vectors)",
            a.field,
            kind.kind_name()
        );
    }
    let queries = vellum::ingest::text_input::read_queries(path)?;
    let runtime = encoder_runtime(&a.encoder_options)?;
    let encoder = colls[0].load_encoder(&a.field, Role::Query, &runtime)?;
    for (c, p) in colls.iter().zip(paths).skip(1) {
        c.check_encoder(&a.field, Role::Query, &encoder)
            .with_context(|| format!("mismatched shards: database {}", p.display()))?;
    }
    Ok(QuerySet::Texts {
        path: path.to_path_buf(),
        queries,
        encoder: Box::new(encoder),
    })
}

fn vector_queries(a: &SearchArgs, spec: &str, kind: &FieldKind) -> Result<QuerySet> {
    let (qpath, qtensor) = split_tensor(spec, "queries");
    let arr = Array::open(&qpath, qtensor.as_deref())?;
    let dim = match kind {
        FieldKind::Dense { dim, .. } | FieldKind::Multi { dim, .. } => *dim as usize,
        FieldKind::Tensor { .. } => bail!(
            "field {:?} is a tensor field; tensors are stored, not searched",
            a.field
        ),
    };
    if arr.shape().len() != 2 || arr.shape()[1] != dim {
        bail!(
            "{}: query vectors must have shape [Q, {dim}] for field {:?}, found {:?}",
            arr.label(),
            a.field,
            arr.shape()
        );
    }
    // Per-query token ranges (dense: one row each).
    let ranges: Vec<(usize, usize)> = match (kind, &a.query_lengths) {
        (FieldKind::Dense { .. }, None) => (0..arr.shape()[0]).map(|i| (i, i + 1)).collect(),
        (FieldKind::Dense { .. }, Some(_)) => {
            bail!("--query-lengths is only for multi-vector fields")
        }
        (FieldKind::Multi { .. }, None) => bail!(
            "field {:?} is a multi-vector field: pass --query-lengths with per-query token counts",
            a.field
        ),
        (FieldKind::Multi { .. }, Some(l)) => {
            let (lp, lt) = split_tensor(l, "query_lengths");
            let lens = Array::open(&lp, lt.as_deref())?.read_u64s()?;
            let mut at = 0usize;
            let mut r = Vec::with_capacity(lens.len());
            for (i, n) in lens.iter().enumerate() {
                if *n == 0 {
                    bail!("{}: query {i} has 0 tokens", lp.display());
                }
                r.push((at, at + *n as usize));
                at += *n as usize;
            }
            if at != arr.shape()[0] {
                bail!(
                    "{}: token counts sum to {at}, but {} has {} rows",
                    lp.display(),
                    arr.label(),
                    arr.shape()[0]
                );
            }
            r
        }
        (FieldKind::Tensor { .. }, _) => unreachable!(),
    };
    let nq = ranges.len();
    let ids: Vec<String> = match &a.query_ids {
        Some(p) => {
            let ids = read_id_list(p)?;
            if ids.len() != nq {
                bail!(
                    "{}: {} query ids for {nq} queries in {}",
                    p.display(),
                    ids.len(),
                    arr.label()
                );
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = ids.iter().find(|i| !seen.insert(i.as_str())) {
                bail!("{}: query id {d:?} appears more than once", p.display());
            }
            ids
        }
        None => (0..nq).map(|i| i.to_string()).collect(),
    };
    Ok(QuerySet::Vectors {
        array: arr,
        ranges,
        ids,
        dim,
    })
}

/// Device and batch size for loading a bound encoder (`--encoder-options device=cpu,batch_size=64`).
fn encoder_runtime(list: &str) -> Result<EncoderOptions> {
    let o = EncoderOptions::parse(list)?;
    let shaping = o.pooling.is_some()
        || o.normalize.is_some()
        || o.max_length.is_some()
        || o.prefix.is_some()
        || o.dims.is_some()
        || o.dtype.is_some();
    if shaping {
        bail!("--encoder-options here takes only device and batch_size: the other options are fixed by the collection's encoder");
    }
    Ok(o)
}

/// Prints measures as trec_eval does (`name<TAB>qid<TAB>value`, qid `all` for the mean).
fn write_evaluation(out: &mut dyn Write, e: &eval::Evaluation, per_query: bool) -> Result<()> {
    if per_query {
        for (qid, values) in &e.per_query {
            for (name, v) in e.names.iter().zip(values) {
                writeln!(out, "{name}\t{qid}\t{v:.4}")?;
            }
        }
    }
    writeln!(out, "queries\tall\t{}", e.per_query.len())?;
    for (name, v) in e.names.iter().zip(&e.mean) {
        writeln!(out, "{name}\tall\t{v:.4}")?;
    }
    Ok(())
}

fn warn_unevaluated(e: &eval::Evaluation) {
    if !e.missing_from_run.is_empty() {
        eprintln!(
            "note: {} judged queries are not in the run and were not evaluated (e.g. {:?})",
            e.missing_from_run.len(),
            e.missing_from_run[0]
        );
    }
    if !e.unjudged.is_empty() {
        eprintln!(
            "note: {} queries of the run have no judgements and were not evaluated (e.g. {:?})",
            e.unjudged.len(),
            e.unjudged[0]
        );
    }
}

fn eval_cmd(a: EvalArgs, out: &mut dyn Write) -> Result<()> {
    if a.qrels.is_none() && a.answers.is_none() {
        bail!("nothing to evaluate: pass --qrels and/or --answers");
    }
    let run = Run::read(&a.run)?;
    let mut json = serde_json::Map::new();
    if let Some(q) = &a.qrels {
        let measures = eval::parse_measures(&a.metrics)?;
        let e = eval::evaluate(&Qrels::read(q)?, &run, &measures);
        warn_unevaluated(&e);
        if a.json {
            if let serde_json::Value::Object(m) = e.to_json(a.per_query) {
                json.extend(m);
            }
        } else {
            write_evaluation(out, &e, a.per_query)?;
        }
    }
    if let Some(answers) = &a.answers {
        let (Some(db), Some(collection)) = (&a.db, &a.collection) else {
            bail!("--answers needs --db and --collection: the passages' stored text is matched");
        };
        let snap = Database::open(db)?.snapshot()?;
        let coll = snap.collection(collection)?;
        let questions = eval::read_answers(answers)?;
        let acc = eval::answer_accuracy(&questions, &run, &a.topk, |id| {
            let doc = coll.get(id)?.ok_or_else(|| {
                vellum::Error::InvalidInput(format!(
                    "{}: document {id:?} is not in collection {collection} of {}",
                    a.run.display(),
                    db.display()
                ))
            })?;
            Ok(doc.text()?.to_string())
        })?;
        if a.json {
            let per_query = a.per_query && a.qrels.is_none();
            if let serde_json::Value::Object(m) = acc.to_json(per_query) {
                json.extend(m);
            }
            if a.per_query && a.qrels.is_some() {
                // Merge answer hits into the per-query objects of the measures.
                if let (Some(serde_json::Value::Object(pq)), serde_json::Value::Object(acc_pq)) = (
                    json.get_mut("per_query"),
                    acc.to_json(true)["per_query"].take(),
                ) {
                    for (q, v) in acc_pq {
                        match (pq.get_mut(&q), v) {
                            (
                                Some(serde_json::Value::Object(dst)),
                                serde_json::Value::Object(src),
                            ) => dst.extend(src),
                            (_, v) => {
                                pq.insert(q, v);
                            }
                        }
                    }
                }
            }
        } else {
            if a.per_query {
                for (qid, hits) in &acc.per_query {
                    for (k, h) in acc.ks.iter().zip(hits) {
                        writeln!(out, "top{k}\t{qid}\t{}", u8::from(*h))?;
                    }
                }
            }
            writeln!(out, "questions\tall\t{}", questions.len())?;
            for (k, m) in acc.ks.iter().zip(&acc.mean) {
                writeln!(out, "top{k}\tall\t{m:.4}")?;
            }
        }
    }
    if a.json {
        writeln!(out, "{}", serde_json::Value::Object(json))?;
    }
    Ok(())
}

fn merge_runs(a: MergeRunsArgs, out: &mut dyn Write) -> Result<()> {
    let runs = a
        .runs
        .iter()
        .map(|p| Ok((p.display().to_string(), Run::read(p)?)))
        .collect::<vellum::Result<Vec<_>>>()?;
    let merged = Run::merge(&runs, a.k)?;
    write_run(out, a.format, &merged, &a.tag, a.k)?;
    Ok(())
}

fn export(a: ExportArgs, out: &mut dyn Write) -> Result<()> {
    let snap = Database::open(&a.db)?.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let spinner = spinner(&format!("exporting {}.{}", a.collection, a.field));
    let s = vellum::interop::export_dense(coll, &a.field, &a.vectors, &a.ids)?;
    spinner.finish_and_clear();
    writeln!(
        out,
        "exported {} vectors of dimension {} to {} (ids: {})",
        s.rows,
        s.dim,
        a.vectors.display(),
        a.ids.display()
    )?;
    Ok(())
}

fn import_tevatron(a: ImportTevatronArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let mut w = db.writer()?;
    let spinner = spinner(&format!("importing {} pickles", a.pickles.len()));
    let mode = if a.upsert { Mode::Upsert } else { Mode::Add };
    let n = vellum::interop::import_tevatron(
        &mut w,
        &a.collection,
        &a.field,
        &a.pickles,
        mode,
        &mut |n| spinner.set_message(format!("{n} documents")),
    )?;
    spinner.set_message("committing");
    let c = w.commit()?;
    spinner.finish_and_clear();
    writeln!(
        out,
        "imported {n} documents from {} pickles into {} (generation {})",
        a.pickles.len(),
        a.collection,
        c.generation
    )?;
    Ok(())
}

fn info(a: InfoArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let mut json_colls = Vec::new();
    if !a.json {
        writeln!(
            out,
            "database {} (generation {}, format v{})",
            a.db.display(),
            snap.generation(),
            vellum::format::FORMAT_VERSION
        )?;
    }
    for c in snap.collections() {
        let bytes: u64 = c.slots().iter().map(|s| s.entry.bytes).sum();
        let deleted: u64 = c
            .slots()
            .iter()
            .map(|s| s.entry.deletes.map_or(0, |d| d.count))
            .sum();
        if a.json {
            json_colls.push(serde_json::json!({
                "name": c.name(),
                "fields": c.schema().fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "documents": c.len(),
                "deleted_rows": deleted,
                "indexes": c.indexes(),
                "encoders": c.all_encoders(),
                "segments": c.slots().iter().map(|s| {
                    let graphs: serde_json::Map<String, serde_json::Value> = c.schema().fields.iter().enumerate()
                        .filter_map(|(fi, f)| s.segment.graph(fi).and_then(|g| g.ok()).map(|g| (f.name.clone(), serde_json::json!({"layers": g.layers(), "edges": g.edges(), "m": g.m, "ef_construction": g.ef_construction}))))
                        .collect();
                    serde_json::json!({"id": s.entry.id, "rows": s.entry.rows, "bytes": s.entry.bytes, "deleted": s.entry.deletes.map_or(0, |d| d.count), "hnsw": graphs})
                }).collect::<Vec<_>>(),
                "bytes": bytes,
            }));
            continue;
        }
        writeln!(
            out,
            "collection {}: {} documents, {} deleted rows, {} segments, {} bytes",
            c.name(),
            c.len(),
            deleted,
            c.slots().len(),
            bytes
        )?;
        for f in &c.schema().fields {
            writeln!(out, "  field {f}")?;
        }
        for (field, p) in c.indexes() {
            writeln!(out, "  index {field}: {p}")?;
        }
        for (field, e) in c.all_encoders() {
            write_encoders(out, field, e)?;
        }
        for s in c.slots() {
            writeln!(
                out,
                "  segment {:016x}: {} rows, {} deleted, {} bytes",
                s.entry.id,
                s.entry.rows,
                s.entry.deletes.map_or(0, |d| d.count),
                s.entry.bytes
            )?;
            for (fi, f) in c.schema().fields.iter().enumerate() {
                if let Some(g) = s.segment.graph(fi) {
                    let g = g?;
                    let bytes = s
                        .segment
                        .sections()
                        .iter()
                        .find(|e| e.field == fi as u32 && e.kind.name() == "hnsw graph")
                        .map_or(0, |e| e.length);
                    writeln!(
                        out,
                        "    hnsw graph on {}: m={} ef_construction={}, {} layers, {} edges, {bytes} bytes",
                        f.name,
                        g.m,
                        g.ef_construction,
                        g.layers(),
                        g.edges()
                    )?;
                }
            }
        }
    }
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"generation": snap.generation(), "format_version": vellum::format::FORMAT_VERSION, "collections": json_colls})
        )?;
    }
    Ok(())
}

fn verify(db: &Path, out: &mut dyn Write) -> Result<()> {
    let spinner = spinner("verifying");
    let r = vellum::verify::verify_database(db)?;
    spinner.finish_and_clear();
    for f in &r.unreferenced_files {
        writeln!(out, "note: unreferenced file {f} (left by an interrupted writer; removed by the next writer)")?;
    }
    for p in &r.problems {
        writeln!(out, "problem: {p}")?;
    }
    writeln!(
        out,
        "checked generation {}: {} collections, {} segments, {} live documents, {} bytes",
        r.generation, r.collections, r.segments, r.live_documents, r.bytes
    )?;
    if !r.is_ok() {
        bail!("{} problem(s) found in {}", r.problems.len(), db.display());
    }
    writeln!(out, "ok")?;
    Ok(())
}

fn delete(a: DeleteArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let ids = read_id_list(&a.ids)?;
    let mut w = db.writer()?;
    let mut missing = 0u64;
    for id in &ids {
        if !w.delete(&a.collection, id)? {
            missing += 1;
        }
    }
    let c = w.commit()?;
    writeln!(
        out,
        "deleted {} documents from {} ({missing} ids not found; generation {})",
        ids.len() as u64 - missing,
        a.collection,
        c.generation
    )?;
    Ok(())
}

fn get(a: GetArgs, out: &mut dyn Write) -> Result<()> {
    let db = Database::open(&a.db)?;
    let snap = db.snapshot()?;
    let coll = snap.collection(&a.collection)?;
    let doc = coll
        .get(&a.id)?
        .with_context(|| format!("no document {:?} in collection {}", a.id, a.collection))?;
    let mut fields = serde_json::Map::new();
    for f in &coll.schema().fields {
        let (shape, values) = match &f.kind {
            FieldKind::Dense { dim, .. } => (vec![*dim as usize], doc.dense(&f.name)?),
            FieldKind::Multi { dim, .. } => {
                let m = doc.multi(&f.name)?;
                (vec![m.n_tokens(), *dim as usize], m.tokens)
            }
            FieldKind::Tensor { shape, .. } => (
                shape.iter().map(|&s| s as usize).collect(),
                doc.tensor(&f.name)?.data,
            ),
        };
        let mut v = serde_json::json!({"shape": shape, "dtype": f.kind.dtype().name()});
        if a.vectors {
            v["values"] = serde_json::json!(values.to_f32_vec());
        }
        fields.insert(f.name.clone(), v);
    }
    let meta: serde_json::Value = doc.metadata_json()?;
    writeln!(
        out,
        "{}",
        serde_json::json!({"id": doc.id()?, "text": doc.text()?, "metadata": meta, "fields": fields})
    )?;
    Ok(())
}
