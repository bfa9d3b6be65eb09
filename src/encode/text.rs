//! The BERT-family text encoder: tokenizer ([`super::tokenize`]) + model ([`super::models::bert`]
//! on vellum's CPU pass, [`super::backend::native_bert`]) + pooling ([`super::pooling`]),
//! producing one `f32` vector per text exactly as sentence-transformers (or Tevatron, for `cls` /
//! `last` pooling) would.

use super::backend::Backbone;
use super::models::{Architecture, MODEL_TYPES};
use super::pooling::normalize;
use super::source::ModelDir;
use super::tokenize::TextTokenizer;
use super::{Encoded, Encoder, EncoderInput, Modality, Prepared};
use crate::error::{Error, Result};
use crate::meta::encoder::{EncoderOptions, EncoderRecord, OutputKind, Pooling};

/// Default number of texts per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Architectures (config.json `model_type`) this build can run.
pub const SUPPORTED_MODEL_TYPES: [&str; 4] = MODEL_TYPES;

/// A text encoder ready to run.
pub struct TextEncoder {
    record: EncoderRecord,
    tokenizer: TextTokenizer,
    model: Backbone,
    pad_id: u32,
    batch_size: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Loads the model named by `source` (a folder or a cached Hugging Face model id) with
    /// `options` over the folder's own defaults.
    pub fn load(source: &str, options: &EncoderOptions) -> Result<Self> {
        Self::from_dir(&ModelDir::resolve(source)?, options)
    }

    /// Loads a model from a resolved folder.
    pub fn from_dir(dir: &ModelDir, options: &EncoderOptions) -> Result<Self> {
        let r = resolve(dir, options, None)?;
        let tokenizer = TextTokenizer::load(
            dir,
            r.record.max_length,
            r.architecture.vocab(),
            &r.record.prefix,
            r.lower_case,
        )?;
        let model = Backbone::load(
            dir,
            &r.architecture,
            r.record.dtype,
            options.device.unwrap_or_default(),
        )?;
        Ok(TextEncoder {
            record: r.record,
            tokenizer,
            model,
            pad_id: r.pad_id,
            batch_size: options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        })
    }

    /// The record `options` give for the model in `dir` whose fingerprint is already known
    /// (another encoder loaded from the same folder), without reading weights or tokenizer.
    pub fn record_for(
        dir: &ModelDir,
        options: &EncoderOptions,
        fingerprint: &str,
    ) -> Result<EncoderRecord> {
        Ok(resolve(dir, options, Some(fingerprint))?.record)
    }

    /// The encoder's identity and resolved options.
    pub fn record(&self) -> &EncoderRecord {
        &self.record
    }

    /// Output dimensions.
    pub fn dims(&self) -> usize {
        self.record.dims
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Token ids of one text (prefix applied, special tokens added, truncated to `max_length`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.tokenize(text)
    }

    /// Encodes already tokenized texts in one forward pass; returns `batch.len() × dims` values,
    /// row-major. The texts are packed without padding; sorting by length before batching
    /// still helps (attention cost per text is quadratic, and similar lengths balance threads).
    pub fn encode_tokens(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        for (i, toks) in batch.iter().enumerate() {
            if toks.len() > self.model.max_tokens() {
                return Err(Error::InvalidInput(format!(
                    "sequence {i} has {} tokens; this model takes at most {}",
                    toks.len(),
                    self.model.max_tokens()
                )));
            }
            if let Some(bad) = toks.iter().find(|&&t| t as usize >= self.model.vocab()) {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: token id {bad} is outside the model's vocabulary of {}",
                    self.model.vocab()
                )));
            }
        }
        // An empty token list (a tokenizer without special tokens given an empty text) is
        // encoded as one padding token, so every text has a state to pool.
        let pad = [self.pad_id];
        let batch: Vec<&[u32]> = batch
            .iter()
            .map(|t| if t.is_empty() { &pad[..] } else { *t })
            .collect();
        let pooled = self.model.forward_pooled(&batch, self.record.pooling)?;
        let hidden = self.model.hidden();
        let dims = self.record.dims;
        let mut out = vec![0f32; n * dims];
        for (dst, v) in out.chunks_exact_mut(dims).zip(pooled.chunks_exact(hidden)) {
            // Matryoshka truncation: the first `dims` values.
            dst.copy_from_slice(&v[..dims]);
            if self.record.normalize {
                normalize(dst);
            }
        }
        Ok(out)
    }

    /// Encodes texts (any number): tokenizes, sorts by length, runs batches of
    /// [`TextEncoder::batch_size`], and returns `texts.len() × dims` values in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let tokens: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].len()));
        let dims = self.record.dims;
        let mut out = vec![0f32; texts.len() * dims];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            let vecs = self.encode_tokens(&batch)?;
            for (j, &i) in chunk.iter().enumerate() {
                out[i * dims..(i + 1) * dims].copy_from_slice(&vecs[j * dims..(j + 1) * dims]);
            }
        }
        Ok(out)
    }
}

impl Encoder for TextEncoder {
    fn record(&self) -> &EncoderRecord {
        &self.record
    }

    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn concurrent_batches(&self) -> usize {
        if self.model.on_gpu() {
            2
        } else {
            1
        }
    }

    fn prepare(&self, input: &EncoderInput<'_>) -> Result<Prepared> {
        match input {
            EncoderInput::Text(t) => Ok(Prepared::Tokens(self.tokenize(t)?)),
            EncoderInput::Image(path) => Err(Error::InvalidInput(format!(
                "{}: this encoder takes text, not images",
                path.display()
            ))),
        }
    }

    fn encode_prepared(&self, batch: &[&Prepared]) -> Result<Encoded> {
        let tokens: Vec<&[u32]> = batch
            .iter()
            .map(|p| match p {
                Prepared::Tokens(t) => Ok(t.as_slice()),
                Prepared::Expanded { .. } => Err(Error::InvalidInput(
                    "a dense encoder was given a query prepared with ColBERT's query expansion"
                        .into(),
                )),
                Prepared::Pixels(_) => Err(Error::InvalidInput(
                    "a text encoder was given an image".into(),
                )),
            })
            .collect::<Result<_>>()?;
        Ok(Encoded {
            values: self.encode_tokens(&tokens)?,
            rows: vec![1; batch.len()],
            dims: self.record.dims,
        })
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<f32>> {
        TextEncoder::encode(self, texts)
    }
}

/// A model folder read with options, before its weights and tokenizer are loaded.
struct Resolved {
    record: EncoderRecord,
    architecture: Architecture,
    pad_id: u32,
    lower_case: bool,
}

/// Checks the device and config.json and resolves `options` over the folder's defaults; the
/// fingerprint is computed unless given.
fn resolve(
    dir: &ModelDir,
    options: &EncoderOptions,
    fingerprint: Option<&str>,
) -> Result<Resolved> {
    if let Some(o) = options
        .output
        .filter(|o| *o != crate::encode::OutputKind::Dense)
    {
        return Err(dir.error(format!(
            "output={}: a text encoder outputs one dense vector per text",
            o.field_kind_name()
        )));
    }
    let architecture = Architecture::from_dir(dir)?;
    let hidden = architecture.hidden();
    let model_max = architecture.max_tokens();
    let defaults = dir.defaults()?;

    let max_length = options
        .max_length
        .or(defaults.max_length)
        .unwrap_or(model_max)
        .min(model_max);
    let dims = options.dims.unwrap_or(hidden);
    if dims > hidden {
        return Err(dir.error(format!(
            "dims={dims} is larger than the model's hidden size {}",
            hidden
        )));
    }
    let dtype = options.dtype.unwrap_or_default();
    let pooling = options.pooling.or(defaults.pooling).unwrap_or(Pooling::Cls);
    if pooling == Pooling::Tokens {
        return Err(dir.error(
            "pooling tokens is the late-interaction (ColBERT) encoders' output; this folder holds a dense model (no ColBERT head, artifact.metadata or multi-vector modules)",
        ));
    }
    if options.pool_factor.is_some_and(|f| f > 1) {
        return Err(dir.error(
            "pool_factor is token pooling, for late-interaction (ColBERT) document encoders; this folder holds a dense model, which outputs one vector per text",
        ));
    }
    let record = EncoderRecord {
        input: crate::meta::encoder::Modality::Text,
        source: dir.source.clone(),
        fingerprint: match fingerprint {
            Some(f) => f.to_string(),
            None => dir.fingerprint()?,
        },
        pooling,
        normalize: options.normalize.unwrap_or(defaults.normalize),
        max_length,
        prefix: options.prefix.clone().unwrap_or_default(),
        dims,
        dtype,
        embedded: false,
        architecture: Some(architecture.model_type().to_string()),
        output: OutputKind::Dense,
        late_interaction: None,
    };
    let pad_id = architecture.pad_id();

    Ok(Resolved {
        record,
        architecture,
        pad_id,
        lower_case: defaults.do_lower_case,
    })
}
