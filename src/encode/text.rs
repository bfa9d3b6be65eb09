//! A loaded text encoder: tokenizer + BERT-family model (vellum's CPU forward pass) + pooling,
//! producing one `f32` vector per text exactly as sentence-transformers (or Tevatron, for `cls` /
//! `last` pooling) would.

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::native::{Activation, BertShape, NativeBert};
use super::source::ModelDir;
use crate::error::{Error, Result};
use crate::meta::encoder::{DeviceSpec, EncoderOptions, EncoderRecord, Pooling};

/// Default number of texts per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Architectures (config.json `model_type`) this build can run.
pub const SUPPORTED_MODEL_TYPES: [&str; 3] = ["bert", "roberta", "xlm-roberta"];

/// A text encoder ready to run.
pub struct TextEncoder {
    record: EncoderRecord,
    tokenizer: Tokenizer,
    model: NativeBert,
    pad_id: u32,
    lower_case: bool,
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
        let tokenizer = load_tokenizer(dir, r.record.max_length, r.shape.vocab)?;
        let weights_path = dir.dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let model = NativeBert::load(dir, &weights, r.shape, r.record.dtype)?;
        Ok(TextEncoder {
            record: r.record,
            tokenizer,
            model,
            pad_id: r.pad_id,
            lower_case: r.lower_case,
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
        let mut input = String::with_capacity(self.record.prefix.len() + text.len());
        input.push_str(&self.record.prefix);
        input.push_str(text);
        if self.lower_case {
            input = input.to_lowercase();
        }
        let enc = self
            .tokenizer
            .encode_fast(input.as_str(), true)
            .map_err(|e| Error::InvalidInput(format!("tokenizer failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
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
        let (states, starts) = self.model.forward(&batch);
        let hidden = self.model.hidden();
        let dims = self.record.dims;
        let mut out = vec![0f32; n * dims];
        for (i, toks) in batch.iter().enumerate() {
            let len = toks.len().max(1);
            let row = |t: usize| &states[(starts[i] + t) * hidden..(starts[i] + t + 1) * hidden];
            let dst = &mut out[i * dims..(i + 1) * dims];
            match self.record.pooling {
                Pooling::Cls => dst.copy_from_slice(&row(0)[..dims]),
                Pooling::Last => dst.copy_from_slice(&row(len - 1)[..dims]),
                Pooling::Mean => {
                    let mut acc = vec![0f32; hidden];
                    for t in 0..len {
                        for (a, v) in acc.iter_mut().zip(row(t)) {
                            *a += v;
                        }
                    }
                    let inv = 1.0 / len as f32;
                    for (d, a) in dst.iter_mut().zip(&acc) {
                        *d = a * inv;
                    }
                }
            }
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

/// A model folder read with options, before its weights and tokenizer are loaded.
struct Resolved {
    record: EncoderRecord,
    shape: BertShape,
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
    if let DeviceSpec::Cuda(n) = options.device.unwrap_or_default() {
        return Err(cuda_unavailable(n));
    }
    let config_json = dir
        .json("config.json")?
        .ok_or_else(|| dir.error("missing config.json"))?;
    let model_type = config_json
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !SUPPORTED_MODEL_TYPES.contains(&model_type) {
        return Err(dir.error(format!(
            "config.json: model_type {model_type:?} is not supported (this build encodes with: {})",
            SUPPORTED_MODEL_TYPES.join(", ")
        )));
    }
    let shape = native_shape(dir, &config_json)?;
    let defaults = dir.defaults()?;

    let max_length = options
        .max_length
        .or(defaults.max_length)
        .unwrap_or(shape.max_positions - shape.position_offset)
        .min(shape.max_positions - shape.position_offset);
    let dims = options.dims.unwrap_or(shape.hidden);
    if dims > shape.hidden {
        return Err(dir.error(format!(
            "dims={dims} is larger than the model's hidden size {}",
            shape.hidden
        )));
    }
    let dtype = options.dtype.unwrap_or_default();
    let record = EncoderRecord {
        source: dir.source.clone(),
        fingerprint: match fingerprint {
            Some(f) => f.to_string(),
            None => dir.fingerprint()?,
        },
        pooling: options.pooling.or(defaults.pooling).unwrap_or(Pooling::Cls),
        normalize: options.normalize.unwrap_or(defaults.normalize),
        max_length,
        prefix: options.prefix.clone().unwrap_or_default(),
        dims,
        dtype,
        embedded: false,
    };

    let pad_id = config_json
        .get("pad_token_id")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;

    Ok(Resolved {
        record,
        shape,
        pad_id,
        lower_case: defaults.do_lower_case,
    })
}

/// The forward pass's hyper-parameters from config.json.
fn native_shape(dir: &ModelDir, cfg: &Value) -> Result<BertShape> {
    let int = |key: &str| -> Result<usize> {
        cfg.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| dir.error(format!("config.json: missing integer {key:?}")))
    };
    let activation = match cfg.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu") {
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "geluapproximate" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => {
            return Err(dir.error(format!(
                "config.json: hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            )))
        }
    };
    if let Some(p) = cfg.get("position_embedding_type").and_then(Value::as_str) {
        if p != "absolute" {
            return Err(dir.error(format!(
                "config.json: position_embedding_type {p:?} is not supported (absolute)"
            )));
        }
    }
    // RoBERTa numbers positions from padding_idx + 1 (transformers'
    // `create_position_ids_from_input_ids`).
    let position_offset = match cfg.get("model_type").and_then(Value::as_str) {
        Some("roberta" | "xlm-roberta") => {
            cfg.get("pad_token_id").and_then(Value::as_u64).unwrap_or(1) as usize + 1
        }
        _ => 0,
    };
    if position_offset + 2 > int("max_position_embeddings")? {
        return Err(
            dir.error("config.json: max_position_embeddings is too small for the position offset")
        );
    }
    Ok(BertShape {
        position_offset,
        hidden: int("hidden_size")?,
        heads: int("num_attention_heads")?,
        intermediate: int("intermediate_size")?,
        layers: int("num_hidden_layers")?,
        vocab: int("vocab_size")?,
        max_positions: int("max_position_embeddings")?,
        eps: cfg
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12) as f32,
        activation,
    })
}

fn normalize(v: &mut [f32]) {
    // sentence-transformers divides by max(norm, 1e-12).
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

fn load_tokenizer(dir: &ModelDir, max_length: usize, vocab_size: usize) -> Result<Tokenizer> {
    let path = dir.dir.join("tokenizer.json");
    let mut tokenizer = Tokenizer::from_file(&path)
        .map_err(|e| dir.error(format!("tokenizer.json cannot be loaded: {e}")))?;
    let tokenizer_vocab = tokenizer.get_vocab_size(true);
    if tokenizer_vocab > vocab_size {
        return Err(dir.error(format!(
            "tokenizer.json has {tokenizer_vocab} tokens but config.json's vocab_size is {vocab_size}: the tokenizer does not belong to this model"
        )));
    }
    // tokenizer.json may carry fixed padding and truncation (all-MiniLM-L6-v2's pads to 128):
    // vellum pads per batch and truncates at the encoder's max_length, as sentence-transformers.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| dir.error(format!("tokenizer.json: cannot set truncation: {e}")))?;
    Ok(tokenizer)
}

#[cfg(feature = "cuda")]
fn cuda_unavailable(n: usize) -> Error {
    Error::InvalidInput(format!(
        "device cuda:{n}: CUDA encoders are not implemented in this version of vellum yet; use device=cpu"
    ))
}

#[cfg(not(feature = "cuda"))]
fn cuda_unavailable(n: usize) -> Error {
    Error::FeatureDisabled {
        what: format!("device cuda:{n}"),
        feature: "cuda",
    }
}
