//! Built-in encoders: a field can name a passage encoder (used at ingest) and a query encoder
//! (used by text search), recorded in the manifest by fingerprint, architecture, output kind and
//! options.
//!
//! * [`Encoder`] — the seam every encoder implements: an input [`Modality`] (text now; images
//!   next), an output kind ([`OutputKind`]: one dense vector, or token vectors for a multi-vector
//!   field), CPU-side preparation of one input ([`Encoder::prepare`], run on worker threads) and
//!   the batched forward pass ([`Encoder::encode_prepared`]).
//! * Plain data in [`crate::meta::encoder`]: options ([`EncoderOptions`]) and the manifest record
//!   ([`EncoderRecord`], [`FieldEncoders`]); compiled in every build.
//! * [`source`] — finding a model folder (local, or the Hugging Face cache), its
//!   sentence-transformers defaults, its fingerprint.
//! * Behind feature `encoders`: `models/` (one model file per architecture family with a serde
//!   `Config`; the BERT family), `backend/` (vellum's native CPU pass; candle and CUDA later),
//!   `tokenize` (Hugging Face tokenizers), `pooling`, [`TextEncoder`] (the BERT-family text
//!   encoder: tokenizer + model + pooling), [`load`] (picks the implementation for a model
//!   folder) and binding encoders to fields ([`prepare_encoders`]). Loading a field's encoders back
//!   with an identity check and text search are `Collection::load_encoder` and
//!   `Collection::search_text`.

#[cfg(feature = "encoders")]
pub mod backend;
#[cfg(feature = "encoders")]
mod bind;
#[cfg(feature = "encoders")]
pub mod clip;
#[cfg(feature = "encoders")]
pub mod colbert;
#[cfg(feature = "encoders")]
pub mod image;
#[cfg(feature = "encoders")]
pub mod models;
#[cfg(feature = "encoders")]
pub mod pooling;
pub mod source;
#[cfg(feature = "encoders")]
mod text;
#[cfg(feature = "encoders")]
pub mod tokenize;

pub use crate::meta::encoder::{
    ComputeType, DeviceSpec, EncoderOptions, EncoderRecord, FieldEncoders, LateInteraction,
    Modality, OutputKind, Pooling, QueryExpansion, Role,
};
#[cfg(feature = "encoders")]
pub use backend::vector_math;
#[cfg(feature = "encoders")]
pub use bind::{
    embedded_dir, prepare_encoders, prepare_encoders_in, replace_query_encoder, EncoderChoice,
};
#[cfg(feature = "encoders")]
pub use colbert::ColbertEncoder;
pub use source::{
    fingerprint_files, ModelDefaults, ModelDir, IMAGE_FILES, LATE_INTERACTION_FILES, MODEL_FILES,
    SETTINGS_FILES,
};
#[cfg(feature = "encoders")]
pub use text::{TextEncoder, DEFAULT_BATCH_SIZE, SUPPORTED_MODEL_TYPES};

#[cfg(feature = "encoders")]
use crate::error::{Error, Result};

/// Directory, relative to the database, that holds embedded model copies (one sub-directory per
/// fingerprint's hex digits).
pub const EMBEDDED_MODELS_DIR: &str = ".models";

/// Whether `name` is one vellum gives an entry of [`EMBEDDED_MODELS_DIR`]: a fingerprint's 32
/// lowercase hex digits, or that plus `.tmp` for a copy in progress. Garbage collection and
/// `verify` consider no other entry.
pub fn is_model_dir_name(name: &str) -> bool {
    let hex = name.strip_suffix(".tmp").unwrap_or(name);
    hex.len() == 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One input of an encoder.
#[derive(Debug, Clone, Copy)]
pub enum EncoderInput<'a> {
    /// A text.
    Text(&'a str),
    /// An image file (PNG, JPEG, WebP, ...), decoded and preprocessed by [`Encoder::prepare`].
    Image(&'a std::path::Path),
}

/// One input after the CPU-side preparation of [`Encoder::prepare`] (tokenization; image decoding
/// later), ready to join a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Token ids, special tokens included.
    Tokens(Vec<u32>),
    /// Token ids of which only the first `attended` are attention keys: the later ones (ColBERT's
    /// query expansion tokens) are computed but no token attends to them.
    Expanded {
        /// Token ids, special and expansion tokens included.
        tokens: Vec<u32>,
        /// How many leading tokens are attention keys (`1..=tokens.len()`).
        attended: usize,
    },
    /// An image's preprocessed pixel values (`[3, H, W]`, channels first).
    Pixels(Vec<f32>),
}

impl Prepared {
    /// The input's size for batching (tokens; 1 for an image): inputs of similar cost are
    /// batched together.
    pub fn cost(&self) -> usize {
        match self {
            Prepared::Pixels(_) => 1,
            _ => self.tokens().len(),
        }
    }

    /// The token ids (none for an image).
    pub fn tokens(&self) -> &[u32] {
        match self {
            Prepared::Tokens(t) | Prepared::Expanded { tokens: t, .. } => t,
            Prepared::Pixels(_) => &[],
        }
    }
}

/// The outputs of a batch, in input order: input `i` has `rows[i]` vectors of `dims` values
/// (one for a dense encoder), concatenated in `values`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    /// All vectors, row-major.
    pub values: Vec<f32>,
    /// Vectors per input.
    pub rows: Vec<usize>,
    /// Values per vector.
    pub dims: usize,
}

impl Encoded {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is no input.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The vectors of each input, in order (`rows[i] × dims` values each).
    pub fn per_input(&self) -> impl Iterator<Item = &[f32]> {
        let mut at = 0;
        self.rows.iter().map(move |&r| {
            let s = &self.values[at..at + r * self.dims];
            at += r * self.dims;
            s
        })
    }
}

/// An encoder: turns inputs of one [`Modality`] into dense vectors or token vectors.
///
/// Implementations: [`TextEncoder`] (the BERT family on vellum's CPU pass). [`load`] picks the
/// implementation for a model folder. Encoders are shared across threads: [`Encoder::prepare`]
/// runs on worker threads, [`Encoder::encode_prepared`] uses all cores itself.
#[cfg(feature = "encoders")]
pub trait Encoder: Send + Sync + std::fmt::Debug {
    /// The encoder's identity and resolved options, as the manifest records them.
    fn record(&self) -> &EncoderRecord;

    /// What the encoder takes.
    fn modality(&self) -> Modality;

    /// Inputs per forward pass.
    fn batch_size(&self) -> usize;

    /// Forward passes worth running at once from separate threads: 2 for a model on a GPU
    /// (each pass is queued on the device while another thread prepares its batch or handles
    /// its results, so the device does not wait for the host), 1 on the CPU (one pass already
    /// uses every core).
    fn concurrent_batches(&self) -> usize {
        1
    }

    /// CPU-side preparation of one input (tokenization). An input of another modality is an
    /// error.
    fn prepare(&self, input: &EncoderInput<'_>) -> Result<Prepared>;

    /// One forward pass over prepared inputs.
    fn encode_prepared(&self, batch: &[&Prepared]) -> Result<Encoded>;

    /// What the encoder outputs (the field kind it fills).
    fn output(&self) -> OutputKind {
        self.record().output
    }

    /// Values per output vector.
    fn dims(&self) -> usize {
        self.record().dims
    }

    /// Encodes texts (any number): prepares them, batches inputs of similar length together
    /// ([`Encoder::batch_size`] each) and returns the outputs in input order.
    fn encode_texts(&self, texts: &[&str]) -> Result<Encoded> {
        let prepared: Vec<Prepared> = texts
            .iter()
            .map(|t| self.prepare(&EncoderInput::Text(t)))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prepared[i].cost()));
        let mut parts: Vec<Option<Vec<f32>>> = vec![None; prepared.len()];
        let mut rows = vec![0usize; prepared.len()];
        let chunks: Vec<&[usize]> = order.chunks(self.batch_size().max(1)).collect();
        let batches: Vec<Vec<&Prepared>> = chunks
            .iter()
            .map(|c| c.iter().map(|&i| &prepared[i]).collect())
            .collect();
        let outputs = encode_batches(self, &batches, &|| Ok(()))?;
        for (chunk, out) in chunks.iter().zip(outputs) {
            for ((&i, v), &r) in chunk.iter().zip(out.per_input()).zip(&out.rows) {
                parts[i] = Some(v.to_vec());
                rows[i] = r;
            }
        }
        Ok(Encoded {
            values: parts.into_iter().flatten().flatten().collect(),
            rows,
            dims: self.dims(),
        })
    }

    /// Encodes texts with a dense encoder: `texts.len() × dims` values, row-major, in input order.
    fn encode(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if self.output() != OutputKind::Dense {
            return Err(Error::InvalidQuery(format!(
                "encoder {} outputs token vectors; use encode_texts",
                self.record().source
            )));
        }
        Ok(self.encode_texts(texts)?.values)
    }
}

/// Runs [`Encoder::encode_prepared`] over `batches`, [`Encoder::concurrent_batches`] of them at
/// a time (on scoped threads when that is above 1), and returns the outputs in batch order.
/// `check` runs before each batch (an interruption check, say); its error or a batch's error
/// ends the run, and the first such error in batch order is returned.
#[cfg(feature = "encoders")]
pub fn encode_batches<E: Encoder + ?Sized>(
    enc: &E,
    batches: &[Vec<&Prepared>],
    check: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Vec<Encoded>> {
    let run = |b: &Vec<&Prepared>| -> Result<Encoded> {
        check()?;
        enc.encode_prepared(b)
    };
    let threads = enc.concurrent_batches().clamp(1, batches.len().max(1));
    if threads == 1 {
        return batches.iter().map(run).collect();
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<parking_lot::Mutex<Option<Result<Encoded>>>> =
        batches.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() || failed.load(Ordering::Relaxed) {
                    break;
                }
                let out = run(&batches[i]);
                if out.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *slots[i].lock() = Some(out);
            });
        }
    });
    // Without an error every batch ran (workers stop early only after one).
    let mut outputs = Vec::with_capacity(batches.len());
    for slot in slots {
        match slot.into_inner() {
            Some(Ok(out)) => outputs.push(out),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(outputs)
}

/// A boxed encoder is an encoder (so `&Box<dyn Encoder>` can be passed where `&dyn Encoder` is
/// taken).
#[cfg(feature = "encoders")]
impl<E: Encoder + ?Sized> Encoder for Box<E> {
    fn record(&self) -> &EncoderRecord {
        (**self).record()
    }
    fn modality(&self) -> Modality {
        (**self).modality()
    }
    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }
    fn concurrent_batches(&self) -> usize {
        (**self).concurrent_batches()
    }
    fn prepare(&self, input: &EncoderInput<'_>) -> Result<Prepared> {
        (**self).prepare(input)
    }
    fn encode_prepared(&self, batch: &[&Prepared]) -> Result<Encoded> {
        (**self).encode_prepared(batch)
    }
    fn encode_texts(&self, texts: &[&str]) -> Result<Encoded> {
        (**self).encode_texts(texts)
    }
    fn encode(&self, texts: &[&str]) -> Result<Vec<f32>> {
        (**self).encode(texts)
    }
}

/// Loads the encoder for the model folder `dir` with `options` over the folder's defaults,
/// choosing the implementation from its files: a CLIP checkpoint gets a [`clip::ClipEncoder`]
/// for the side `options` select (images by default, texts with `role=query`), a late-interaction checkpoint (Stanford ColBERT,
/// PyLate, sentence-transformers' multi-vector layout) gets a [`ColbertEncoder`] for
/// `options.role` (documents when unset), any other BERT-family model a [`TextEncoder`].
#[cfg(feature = "encoders")]
pub fn load(dir: &ModelDir, options: &EncoderOptions) -> Result<Box<dyn Encoder>> {
    if clip::is_clip(dir)? {
        return Ok(Box::new(clip::ClipEncoder::from_dir(dir, options)?));
    }
    if let Some(format) = colbert::layout::detect(dir)? {
        return Ok(Box::new(ColbertEncoder::from_dir(dir, format, options)?));
    }
    Ok(Box::new(TextEncoder::from_dir(dir, options)?))
}

/// The record `options` give for the model in `dir` whose fingerprint is already known (another
/// encoder was loaded from the same folder), without reading weights or tokenizer.
#[cfg(feature = "encoders")]
pub fn record_for(
    dir: &ModelDir,
    options: &EncoderOptions,
    fingerprint: &str,
) -> Result<EncoderRecord> {
    if clip::is_clip(dir)? {
        return clip::ClipEncoder::record_for(dir, options, fingerprint);
    }
    if let Some(format) = colbert::layout::detect(dir)? {
        return ColbertEncoder::record_for(dir, format, options, fingerprint);
    }
    TextEncoder::record_for(dir, options, fingerprint)
}
