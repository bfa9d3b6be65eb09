//! Ingest with encoding: documents given as text are encoded by each dense field's passage
//! encoder on their way into the database.
//!
//! Stages, connected by bounded channels (so memory stays bounded whatever the input size):
//!
//! ```text
//! read (1 thread) ─▶ tokenize (workers) ─▶ batch + encode (1 thread; the model uses all cores) ─▶ write (caller's thread)
//! ```
//!
//! The reader cuts the input into windows of consecutive documents; each window is tokenized by
//! one worker, then sorted by token count and cut into batches, so that texts of similar length
//! are padded together. A GPU encoder runs two of a window's batches at once
//! ([`crate::encode::encode_batches`]): the device computes one while the host prepares the next
//! or copies results out. The writer adds each window's documents in input order and commits every
//! `commit_every` documents, so a crash or Ctrl-C loses at most the documents since the last
//! commit; re-running the same ingest skips ids already committed (in add mode).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::text_input::{text_to_encode, DocReader};
use super::{Mode, Shard};
use crate::collection::Collection;
use crate::document::{Document, FieldValue};
use crate::encode::{
    encode_batches, Encoder, EncoderInput, EncoderOptions, Modality, OutputKind, Prepared, Role,
};
use crate::error::{Error, Result};
use crate::writer::Writer;

/// An ingest of text documents that encodes them.
#[derive(Debug, Clone)]
pub struct TextIngest<'a> {
    /// The collection.
    pub collection: &'a str,
    /// JSONL (`id`/`text`/`metadata`, or Tevatron's `docid`/`title`/`text`) or TSV
    /// (`id<TAB>text[<TAB>title]`).
    pub docs: &'a Path,
    /// Add (skipping ids already committed, so a re-run resumes) or upsert (re-encodes all).
    pub mode: Mode,
    /// The part of the input to ingest.
    pub shard: Shard,
    /// Commit after at least this many new documents (and at the end).
    pub commit_every: usize,
    /// Also commit when this much time has passed since the last commit.
    pub commit_interval: Duration,
    /// Documents sorted by length together (larger: less padding, more memory); capped at
    /// `commit_every`, so that commits come at the requested interval.
    pub window: usize,
    /// Device and batch size for the encoders (other options come from the manifest).
    pub runtime: EncoderOptions,
    /// Tokenizer threads.
    pub tokenizer_threads: usize,
    /// Set (by a Ctrl-C handler, say) to stop: what is encoded is committed, then
    /// [`Error::Interrupted`] is returned.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Documents whose image is missing, unreadable or damaged are skipped and reported
    /// ([`TextIngestStats::bad_images`]) instead of stopping the ingest.
    pub skip_bad_images: bool,
}

impl<'a> TextIngest<'a> {
    /// Defaults: add mode, whole input, commits every 10,000 documents or 60 s, windows of
    /// 1,024 documents, 2 tokenizer threads.
    pub fn new(collection: &'a str, docs: &'a Path) -> Self {
        TextIngest {
            collection,
            docs,
            mode: Mode::Add,
            shard: Shard::ALL,
            commit_every: 10_000,
            commit_interval: Duration::from_secs(60),
            window: 1024,
            runtime: EncoderOptions::default(),
            tokenizer_threads: 2,
            interrupt: None,
            skip_bad_images: false,
        }
    }
}

impl TextIngest<'_> {
    /// Whether the interrupt flag is set.
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// Where an ingest stands (passed to the progress callback after every window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextIngestProgress {
    /// Documents in the input (this shard's share).
    pub total: u64,
    /// Documents encoded and written (not necessarily committed yet).
    pub written: u64,
    /// Documents skipped because their id was already committed.
    pub skipped: u64,
    /// Documents committed by this ingest so far.
    pub committed: u64,
    /// Documents skipped for a bad image ([`TextIngest::skip_bad_images`]).
    pub bad_images: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextIngestStats {
    /// With [`TextIngest::skip_bad_images`]: the documents skipped for their image, as
    /// `(document id, what was wrong)`.
    pub bad_images: Vec<(String, String)>,
    /// Documents encoded and committed.
    pub documents: u64,
    /// Documents skipped because their id was already committed (resumption).
    pub skipped: u64,
    /// Commits made.
    pub commits: u64,
    /// Tokens encoded (all fields, special tokens included).
    pub tokens: u64,
    /// Seconds spent in model forward passes.
    pub encode_seconds: f64,
}

struct Window {
    index: u64,
    docs: Vec<Document>,
}

struct Tokenized {
    index: u64,
    docs: Vec<Document>,
    /// Documents dropped for a bad image: (id, error).
    bad: Vec<(String, String)>,
    /// inputs[field][doc], prepared by the field's encoder
    inputs: Vec<Vec<Prepared>>,
}

struct Encoded {
    docs: Vec<Document>,
    bad: Vec<(String, String)>,
    tokens: u64,
    seconds: f64,
}

/// The fields that have encoders, with their passage encoders.
struct EncodedFields {
    names: Vec<String>,
    encoders: Vec<Box<dyn Encoder>>,
}

impl EncodedFields {
    /// Whether any field's encoder takes text (documents then need text).
    fn needs_text(&self) -> bool {
        self.encoders.iter().any(|e| e.modality() == Modality::Text)
    }
}

fn encoded_fields(collection: &Collection, runtime: &EncoderOptions) -> Result<EncodedFields> {
    let mut names = Vec::new();
    let mut encoders = Vec::new();
    for f in &collection.schema().fields {
        if collection.encoders(&f.name).is_none() {
            return Err(Error::Encoder {
                collection: collection.name().to_string(),
                field: f.name.clone(),
                detail: format!(
                    "the documents are given as text, but this {} field has no encoder: give its values as vectors, or bind an encoder to it",
                    f.kind.kind_name()
                ),
            });
        }
        let encoder = collection.load_encoder(&f.name, Role::Passage, runtime)?;
        // Text encoders read the documents' text, image encoders their "image" path; the
        // output must suit the field.
        if encoder.output().fills(&f.kind).is_none() {
            return Err(Error::wrong_kind(
                collection.name(),
                &f.name,
                f.kind.kind_name(),
                format!(
                    "its passage encoder outputs {} vectors",
                    encoder.output().field_kind_name()
                ),
            ));
        }
        encoders.push(encoder);
        names.push(f.name.clone());
    }
    if names.is_empty() {
        return Err(Error::InvalidInput(format!(
            "collection {:?} has no fields to encode",
            collection.name()
        )));
    }
    Ok(EncodedFields { names, encoders })
}

/// Runs the pipeline: reads `job.docs`, encodes every document with each dense field's passage
/// encoder, and adds the documents through `writer`, committing periodically and at the end.
/// Every field of the collection must have an encoder (dense or late-interaction).
///
/// On bad input the error names the file and line; documents committed before it stay
/// committed, documents since the last commit are discarded.
pub fn ingest_text(
    writer: &mut Writer,
    job: &TextIngest<'_>,
    progress: &mut dyn FnMut(TextIngestProgress),
) -> Result<TextIngestStats> {
    if writer.has_changes() {
        return Err(Error::InvalidInput(
            "ingest_text commits as it goes: commit or roll back the writer's pending changes first".into(),
        ));
    }
    let committed = writer.committed().collection(job.collection)?.clone();
    let fields = encoded_fields(&committed, &job.runtime)?;
    let total_lines = DocReader::count(job.docs)?;
    let total = (0..total_lines)
        .filter(|&i| job.shard.contains(i as usize))
        .count() as u64;
    let interrupted = || job.interrupted();
    // A window is encoded as a whole before any of its documents is written, so a window never
    // spans more than one commit interval: at most `commit_every` documents, and (sized from the
    // measured encoding rate) about half of `commit_interval` of encoding; the first windows are
    // small until the rate is known. A crash loses at most about one interval of work.
    let window = job.window.min(job.commit_every).max(1);
    let target = Arc::new(std::sync::atomic::AtomicUsize::new(
        window.min(FIRST_WINDOW),
    ));
    let mut stats = TextIngestStats::default();
    let mut state = TextIngestProgress {
        total,
        ..Default::default()
    };

    std::thread::scope(|scope| -> Result<TextIngestStats> {
        let (window_tx, window_rx) = bounded::<Result<Window>>(2);
        let (tok_tx, tok_rx) = bounded::<Result<Tokenized>>(2);
        let (enc_tx, enc_rx) = bounded::<Result<Encoded>>(2);
        let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));

        {
            let skipped = skipped.clone();
            let committed = committed.clone();
            let (fields, target) = (&fields, target.clone());
            scope.spawn(move || {
                read_windows(job, &committed, fields, &target, &window_tx, &skipped)
            });
        }
        for _ in 0..job.tokenizer_threads.max(1) {
            let (rx, tx, fields) = (window_rx.clone(), tok_tx.clone(), &fields);
            scope.spawn(move || tokenize_windows(job, fields, &rx, &tx));
        }
        drop((window_rx, tok_tx));
        {
            let fields = &fields;
            let target = target.clone();
            scope.spawn(move || encode_windows(job, fields, window, &target, &tok_rx, &enc_tx));
        }

        let mut since_commit = 0usize;
        let mut last_commit = Instant::now();
        let commit = |writer: &mut Writer,
                      state: &mut TextIngestProgress,
                      stats: &mut TextIngestStats,
                      since: &mut usize|
         -> Result<()> {
            if *since > 0 {
                writer.commit()?;
                stats.commits += 1;
                stats.documents += *since as u64;
                state.committed += *since as u64;
                *since = 0;
            }
            Ok(())
        };
        for encoded in enc_rx.iter() {
            let encoded = match encoded {
                Err(Error::Interrupted(_)) if interrupted() => break,
                other => other?,
            };
            stats.tokens += encoded.tokens;
            stats.encode_seconds += encoded.seconds;
            state.bad_images += encoded.bad.len() as u64;
            stats.bad_images.extend(encoded.bad);
            for doc in encoded.docs {
                match job.mode {
                    Mode::Add => writer.add(job.collection, doc)?,
                    Mode::Upsert => writer.upsert(job.collection, doc)?,
                }
                since_commit += 1;
                state.written += 1;
                if since_commit >= job.commit_every {
                    commit(writer, &mut state, &mut stats, &mut since_commit)?;
                    last_commit = Instant::now();
                }
            }
            state.skipped = skipped.load(Ordering::Relaxed);
            if last_commit.elapsed() >= job.commit_interval {
                commit(writer, &mut state, &mut stats, &mut since_commit)?;
                last_commit = Instant::now();
            }
            progress(state);
            if interrupted() {
                break;
            }
        }
        // Dropping the receiver stops the upstream stages (their sends fail) before the scope
        // joins them.
        drop(enc_rx);
        commit(writer, &mut state, &mut stats, &mut since_commit)?;
        stats.skipped = skipped.load(Ordering::Relaxed);
        state.skipped = stats.skipped;
        progress(state);
        if interrupted() {
            return Err(Error::Interrupted(format!(
                "{} documents committed; run the same ingest again to continue",
                state.committed
            )));
        }
        Ok(stats)
    })
}

/// Documents in the first windows, before the encoding rate is known.
const FIRST_WINDOW: usize = 64;

fn read_windows(
    job: &TextIngest<'_>,
    committed: &Collection,
    fields: &EncodedFields,
    target: &std::sync::atomic::AtomicUsize,
    tx: &Sender<Result<Window>>,
    skipped: &std::sync::atomic::AtomicU64,
) {
    let run = || -> Result<()> {
        let mut reader = DocReader::open(job.docs)?;
        let mut docs = Vec::with_capacity(target.load(Ordering::Relaxed));
        let mut index = 0u64;
        let mut row = 0usize;
        while let Some(doc) = reader.next() {
            let doc = doc?;
            row += 1;
            if !job.shard.contains(row - 1) {
                continue;
            }
            if fields.needs_text() && text_to_encode(&doc).trim().is_empty() {
                return Err(Error::bad_input(
                    job.docs,
                    format!("line {}", reader.line()),
                    format!(
                        "document {:?} has no text to encode (field {} has an encoder and no vectors were given)",
                        doc.id,
                        fields
                            .names
                            .iter()
                            .zip(&fields.encoders)
                            .find(|(_, e)| e.modality() == Modality::Text)
                            .map_or("?", |(n, _)| n.as_str())
                    ),
                ));
            }
            if job.mode == Mode::Add && committed.get(&doc.id)?.is_some() {
                skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            docs.push(doc);
            let window = target.load(Ordering::Relaxed);
            if docs.len() >= window {
                let w = Window {
                    index,
                    docs: std::mem::replace(&mut docs, Vec::with_capacity(window)),
                };
                index += 1;
                if tx.send(Ok(w)).is_err() {
                    return Ok(());
                }
            }
            if job.interrupted() {
                return Ok(());
            }
        }
        if !docs.is_empty() {
            let _ = tx.send(Ok(Window { index, docs }));
        }
        Ok(())
    };
    if let Err(e) = run() {
        let _ = tx.send(Err(e));
    }
}

/// The image file of document `d` for field `field`: its metadata's `image` path, relative to the
/// input file's folder (or the input folder).
fn image_input(job: &TextIngest<'_>, d: &Document, field: &str) -> Result<std::path::PathBuf> {
    let rel = d
        .metadata
        .get("image")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "no \"image\" path (field {field:?} is encoded from images)"
            ))
        })?;
    let base = if job.docs.is_dir() {
        job.docs
    } else {
        job.docs.parent().unwrap_or(Path::new(""))
    };
    Ok(base.join(rel))
}

fn tokenize_windows(
    job: &TextIngest<'_>,
    fields: &EncodedFields,
    rx: &Receiver<Result<Window>>,
    tx: &Sender<Result<Tokenized>>,
) {
    for w in rx.iter() {
        let out = w.and_then(|w| {
            let mut inputs: Vec<Vec<Prepared>> = vec![Vec::new(); fields.encoders.len()];
            let (mut docs, mut bad) = (Vec::with_capacity(w.docs.len()), Vec::new());
            'doc: for d in w.docs {
                let mut prepared = Vec::with_capacity(fields.encoders.len());
                for (enc, name) in fields.encoders.iter().zip(&fields.names) {
                    let p = match enc.modality() {
                        Modality::Text => enc.prepare(&EncoderInput::Text(&text_to_encode(&d)))?,
                        Modality::Image => {
                            match image_input(job, &d, name)
                                .and_then(|path| enc.prepare(&EncoderInput::Image(&path)))
                            {
                                Ok(p) => p,
                                Err(e) => {
                                    let e = Error::bad_input(
                                        job.docs,
                                        format!("document {:?}", d.id),
                                        e.to_string(),
                                    );
                                    if job.skip_bad_images {
                                        bad.push((d.id.clone(), e.to_string()));
                                        continue 'doc;
                                    }
                                    return Err(e);
                                }
                            }
                        }
                    };
                    prepared.push(p);
                }
                for (f, p) in prepared.into_iter().enumerate() {
                    inputs[f].push(p);
                }
                docs.push(d);
            }
            Ok(Tokenized {
                index: w.index,
                docs,
                bad,
                inputs,
            })
        });
        let failed = out.is_err();
        if tx.send(out).is_err() || failed {
            return;
        }
    }
}

fn encode_windows(
    job: &TextIngest<'_>,
    fields: &EncodedFields,
    max_window: usize,
    target: &std::sync::atomic::AtomicUsize,
    rx: &Receiver<Result<Tokenized>>,
    tx: &Sender<Result<Encoded>>,
) {
    // Windows arrive out of order from several tokenizer workers: restore input order.
    let mut waiting: BTreeMap<u64, Tokenized> = BTreeMap::new();
    let mut next = 0u64;
    for t in rx.iter() {
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        waiting.insert(t.index, t);
        while let Some(t) = waiting.remove(&next) {
            next += 1;
            let out = encode_window(job, fields, t);
            if let Ok(e) = &out {
                // Size later windows to about half a commit interval of encoding.
                if e.seconds > 0.0 && !e.docs.is_empty() {
                    let rate = e.docs.len() as f64 / e.seconds;
                    let want = (rate * job.commit_interval.as_secs_f64() / 2.0) as usize;
                    target.store(want.clamp(1, max_window), Ordering::Relaxed);
                }
            }
            let failed = out.is_err();
            if tx.send(out).is_err() || failed {
                return;
            }
        }
    }
}

fn encode_window(
    job: &TextIngest<'_>,
    fields: &EncodedFields,
    mut t: Tokenized,
) -> Result<Encoded> {
    let start = Instant::now();
    let mut tokens = 0u64;
    let n = t.docs.len();
    let mut values: Vec<Vec<Option<Vec<f32>>>> = vec![vec![None; fields.names.len()]; n];
    for (f, enc) in fields.encoders.iter().enumerate() {
        let inputs = &t.inputs[f];
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].cost()));
        let chunks: Vec<&[usize]> = order.chunks(enc.batch_size().max(1)).collect();
        let batches: Vec<Vec<&Prepared>> = chunks
            .iter()
            .map(|c| c.iter().map(|&i| &inputs[i]).collect())
            .collect();
        tokens += inputs.iter().map(|b| b.cost() as u64).sum::<u64>();
        let check = || match job.interrupted() {
            true => Err(Error::Interrupted("encoding stopped".into())),
            false => Ok(()),
        };
        let outputs = encode_batches(enc, &batches, &check)?;
        for (chunk, out) in chunks.iter().zip(outputs) {
            for (&i, v) in chunk.iter().zip(out.per_input()) {
                values[i][f] = Some(v.to_vec());
            }
        }
    }
    for (doc, vals) in t.docs.iter_mut().zip(values) {
        for ((name, enc), v) in fields.names.iter().zip(&fields.encoders).zip(vals) {
            let v = v.expect("every doc encoded");
            let value = match enc.output() {
                OutputKind::Dense => FieldValue::Dense(v),
                OutputKind::Multi => FieldValue::Multi(v),
                OutputKind::Tensor => FieldValue::Tensor(v),
            };
            doc.values.push((name.clone(), value));
        }
    }
    Ok(Encoded {
        docs: t.docs,
        bad: t.bad,
        tokens,
        seconds: start.elapsed().as_secs_f64(),
    })
}
