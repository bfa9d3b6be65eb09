//! CLIP encoders (transformers' `CLIPModel` checkpoints): one model folder gives three encoders —
//! images to the projected, normalised image embedding (a dense field's passage side), images to
//! the vision tower's penultimate hidden states (`[1 + patches, hidden]`, a tensor field: the
//! visual features LLaVA and Ret-XKnow cache), and texts to the normalised text embedding (the
//! query side of text-to-image search). The side comes from the options: `role=query` is the text
//! tower; otherwise images, with `output=tensor` for the hidden states.

use std::sync::Arc;

use super::backend::native_clip::NativeClip;
use super::image::{load_image, ImageProcessor};
use super::models::clip::ClipConfig;
use super::source::ModelDir;
use super::tokenize::TextTokenizer;
use super::{Encoded, Encoder, EncoderInput, Modality, Prepared};
use crate::error::{Error, Result};
use crate::meta::encoder::{ComputeType, EncoderOptions, EncoderRecord, OutputKind, Pooling, Role};

/// Images per forward pass by default.
pub const DEFAULT_IMAGE_BATCH: usize = 32;

/// Which tower and output a [`ClipEncoder`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Text,
    ImageEmbedding,
    ImageHidden,
}

/// One side of a CLIP checkpoint (see the module docs).
pub struct ClipEncoder {
    record: EncoderRecord,
    side: Side,
    model: Arc<NativeClip>,
    tokenizer: Option<TextTokenizer>,
    processor: ImageProcessor,
    batch_size: usize,
}

impl std::fmt::Debug for ClipEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipEncoder")
            .field("source", &self.record.source)
            .field("side", &self.side)
            .finish()
    }
}

/// Whether `dir` holds a CLIP checkpoint (`config.json` `model_type` `clip`).
pub fn is_clip(dir: &ModelDir) -> Result<bool> {
    Ok(dir
        .json("config.json")?
        .and_then(|j| {
            j.get("model_type")
                .and_then(|v| v.as_str())
                .map(|t| t == "clip")
        })
        .unwrap_or(false))
}

struct Resolved {
    record: EncoderRecord,
    side: Side,
    config: ClipConfig,
}

fn resolve(
    dir: &ModelDir,
    options: &EncoderOptions,
    fingerprint: Option<&str>,
) -> Result<Resolved> {
    let config = ClipConfig::from_dir(dir)?
        .ok_or_else(|| dir.error("config.json: model_type is not clip"))?;
    let dtype = options.dtype.unwrap_or_default();
    if dtype != ComputeType::F32 {
        return Err(dir.error(format!(
            "dtype={dtype:?}: the CLIP encoder computes in f32 only"
        )));
    }
    let side = match (options.role.unwrap_or(Role::Passage), options.output) {
        (Role::Query, None | Some(OutputKind::Dense)) => Side::Text,
        (Role::Query, Some(o)) => {
            return Err(dir.error(format!(
                "output={}: CLIP's text side outputs the text embedding (dense)",
                o.field_kind_name()
            )))
        }
        (Role::Passage, None | Some(OutputKind::Dense)) => Side::ImageEmbedding,
        (Role::Passage, Some(OutputKind::Tensor)) => Side::ImageHidden,
        (Role::Passage, Some(OutputKind::Multi)) => {
            return Err(dir.error(
                "output=multi: CLIP's image side outputs the embedding (dense) or the penultimate hidden states (tensor)",
            ))
        }
    };
    let text_max = config.text_config.max_position_embeddings;
    let tokens = 1 + config.patches();
    let (pooling, normalize, max_length, dims, output, input) = match side {
        Side::Text => (
            Pooling::Last,
            true,
            options.max_length.unwrap_or(text_max).min(text_max),
            config.projection_dim,
            OutputKind::Dense,
            Modality::Text,
        ),
        Side::ImageEmbedding => (
            Pooling::Cls,
            true,
            tokens,
            config.projection_dim,
            OutputKind::Dense,
            Modality::Image,
        ),
        Side::ImageHidden => (
            Pooling::Tokens,
            false,
            tokens,
            config.vision_config.hidden_size,
            OutputKind::Tensor,
            Modality::Image,
        ),
    };
    // The outputs are fixed by the checkpoint: options may restate them (a record's own
    // options do), not change them.
    let refuse = |what: String| -> Result<()> {
        Err(dir.error(format!(
            "{what}: CLIP's outputs are fixed by the checkpoint (options: role, output, batch_size, device; max_length on the text side)"
        )))
    };
    if let Some(f) = options.pool_factor.filter(|f| *f > 1) {
        refuse(format!("pool_factor {f}"))?;
    }
    if let Some(p) = options.pooling.filter(|p| *p != pooling) {
        refuse(format!("pooling {p:?}"))?;
    }
    if let Some(p) = options.prefix.as_deref().filter(|p| !p.is_empty()) {
        refuse(format!("prefix {p:?}"))?;
    }
    if let Some(d) = options.dims.filter(|d| *d != dims) {
        refuse(format!("dims={d}"))?;
    }
    if let Some(n) = options.normalize.filter(|n| *n != normalize) {
        refuse(format!("normalize={n}"))?;
    }
    if side != Side::Text && options.max_length.is_some_and(|m| m != tokens) {
        refuse("max_length on the image side".into())?;
    }
    let record = EncoderRecord {
        source: dir.source.clone(),
        fingerprint: match fingerprint {
            Some(f) => f.to_string(),
            None => dir.fingerprint()?,
        },
        pooling,
        normalize,
        max_length,
        prefix: String::new(),
        dims,
        dtype,
        embedded: false,
        architecture: Some("clip".into()),
        output,
        late_interaction: None,
        input,
    };
    Ok(Resolved {
        record,
        side,
        config,
    })
}

impl ClipEncoder {
    /// Loads the side `options` select (see the module docs) from a CLIP folder: `config.json`,
    /// `model.safetensors`, `tokenizer.json` (text side), `preprocessor_config.json` (image
    /// side; CLIP's defaults when missing).
    pub fn from_dir(dir: &ModelDir, options: &EncoderOptions) -> Result<Self> {
        let r = resolve(dir, options, None)?;
        let path = dir.dir.join("model.safetensors");
        let weights = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let vocab = r.config.text_config.vocab_size;
        let device = options.device.unwrap_or_default();
        let model = NativeClip::load(dir, &weights, r.config, r.record.dtype, device)?;
        let tokenizer = match r.side {
            Side::Text => Some(TextTokenizer::load(
                dir,
                r.record.max_length,
                vocab,
                "",
                false,
            )?),
            _ => None,
        };
        let processor = ImageProcessor::from_file(&dir.dir.join("preprocessor_config.json"))?;
        if r.side != Side::Text {
            let s = model.config().vision_config.image_size;
            if processor.output_size() != Some((s, s)) {
                return Err(dir.error(format!(
                    "preprocessor_config.json gives images of {} pixels; the vision tower takes {s} × {s}",
                    processor.output_size().map_or("varying".to_string(), |(h, w)| format!("{h} × {w}"))
                )));
            }
        }
        Ok(ClipEncoder {
            record: r.record,
            side: r.side,
            model: Arc::new(model),
            tokenizer,
            processor,
            batch_size: options.batch_size.unwrap_or(match r.side {
                Side::Text => super::DEFAULT_BATCH_SIZE,
                _ => DEFAULT_IMAGE_BATCH,
            }),
        })
    }

    /// The record `options` give for the CLIP model in `dir` whose fingerprint is known.
    pub fn record_for(
        dir: &ModelDir,
        options: &EncoderOptions,
        fingerprint: &str,
    ) -> Result<EncoderRecord> {
        Ok(resolve(dir, options, Some(fingerprint))?.record)
    }

    /// Decodes and preprocesses an image file: `[3, S, S]` values.
    pub fn pixels(&self, path: &std::path::Path) -> Result<Vec<f32>> {
        self.processor.preprocess(&load_image(path)?, path)
    }
}

impl Encoder for ClipEncoder {
    fn record(&self) -> &EncoderRecord {
        &self.record
    }

    fn modality(&self) -> Modality {
        self.record.input
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn prepare(&self, input: &EncoderInput<'_>) -> Result<Prepared> {
        match (input, &self.tokenizer) {
            (EncoderInput::Text(t), Some(tok)) => Ok(Prepared::Tokens(tok.tokenize(t)?)),
            (EncoderInput::Image(path), None) => Ok(Prepared::Pixels(self.pixels(path)?)),
            (EncoderInput::Text(_), None) => Err(Error::InvalidInput(format!(
                "the image side of CLIP model {} takes images, not text",
                self.record.source
            ))),
            (EncoderInput::Image(path), Some(_)) => Err(Error::InvalidInput(format!(
                "{}: the text side of CLIP model {} takes text, not images",
                path.display(),
                self.record.source
            ))),
        }
    }

    fn encode_prepared(&self, batch: &[&Prepared]) -> Result<Encoded> {
        let dims = self.record.dims;
        if batch.is_empty() {
            return Ok(Encoded {
                dims,
                ..Default::default()
            });
        }
        match self.side {
            Side::Text => {
                let vocab = self.model.config().text_config.vocab_size;
                let seqs = batch
                    .iter()
                    .map(|p| match p {
                        Prepared::Tokens(t) if !t.is_empty() => {
                            if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab) {
                                return Err(Error::InvalidInput(format!(
                                    "token id {bad} is outside the model's vocabulary of {vocab}"
                                )));
                            }
                            Ok(t.as_slice())
                        }
                        _ => Err(Error::InvalidInput(
                            "CLIP's text side takes tokenized, non-empty texts".into(),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Encoded {
                    values: self.model.encode_texts(&seqs)?,
                    rows: vec![1; seqs.len()],
                    dims,
                })
            }
            Side::ImageEmbedding | Side::ImageHidden => {
                let s = self.model.config().vision_config.image_size;
                let mut pixels = Vec::with_capacity(batch.len() * 3 * s * s);
                for p in batch {
                    match p {
                        Prepared::Pixels(v) if v.len() == 3 * s * s => pixels.extend_from_slice(v),
                        _ => {
                            return Err(Error::InvalidInput(format!(
                                "CLIP's image side takes preprocessed {s} × {s} RGB images"
                            )))
                        }
                    }
                }
                let hidden = self.side == Side::ImageHidden;
                let out = self.model.encode_images(&pixels, hidden)?;
                let rows = if hidden { self.record.max_length } else { 1 };
                Ok(Encoded {
                    values: if hidden {
                        out.penultimate
                    } else {
                        out.embeddings
                    },
                    rows: vec![rows; batch.len()],
                    dims,
                })
            }
        }
    }
}
