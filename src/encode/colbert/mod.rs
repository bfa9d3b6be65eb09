//! Late-interaction (ColBERT) text encoders: one L2-normalised vector per token, for
//! multi-vector fields. A [`ColbertEncoder`] encodes one side — queries or documents — exactly as
//! the checkpoint's reference implementation does (Khattab & Zaharia, *ColBERT*, SIGIR 2020, §3;
//! Santhanam et al., *ColBERTv2*, NAACL 2022; conventions of Stanford ColBERT, PyLate and
//! sentence-transformers' `MultiVectorEncoder`, read by [`layout`]):
//!
//! * the side's **marker** token is inserted right after `[CLS]` (or its text prompt put before
//!   the text), the input truncated to the side's length;
//! * **queries** are padded with `[MASK]` to the query length (query expansion); unless the
//!   checkpoint attends to them, the expansion tokens are computed but masked as attention keys
//!   ([`Backbone::forward_with_keys`]) — and kept as query vectors;
//! * **documents** drop the vectors of skiplist tokens (punctuation);
//! * every kept token state goes through the linear head (no bias) and is L2-normalised.
//!
//! A query longer than the query length is refused (PyLate and Stanford ColBERT cut it silently)
//! unless the encoder was loaded with `truncate=true`.

pub mod layout;
pub mod token_pooling;

use rayon::prelude::*;

use self::layout::{Format, HeadLayer, Layout, Side, SkipRule};
use super::backend::Backbone;
use super::models::Architecture;
use super::pooling::normalize;
use super::source::ModelDir;
use super::tokenize::TextTokenizer;
use super::{Encoded, Encoder, EncoderInput, Modality, Prepared};
use crate::error::{Error, Result};
use crate::meta::encoder::{
    EncoderOptions, EncoderRecord, LateInteraction, OutputKind, Pooling, QueryExpansion, Role,
};

/// A late-interaction encoder for one side (queries or documents) of a ColBERT checkpoint.
pub struct ColbertEncoder {
    record: EncoderRecord,
    tokenizer: TextTokenizer,
    model: Backbone,
    head: Vec<HeadLayer>,
    truncate: bool,
    batch_size: usize,
}

impl std::fmt::Debug for ColbertEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColbertEncoder")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Everything resolved from a folder and options before weights are read.
struct Resolved {
    record: EncoderRecord,
    tokenizer: TextTokenizer,
    architecture: Architecture,
    layout: Layout,
}

impl ColbertEncoder {
    /// Loads the side `options.role` (documents when unset) of the ColBERT checkpoint in `dir`,
    /// whose layout [`layout::detect`] found to be `format`.
    pub fn from_dir(dir: &ModelDir, format: Format, options: &EncoderOptions) -> Result<Self> {
        let r = resolve(dir, format, options, None)?;
        let model = Backbone::load(
            dir,
            &r.architecture,
            r.record.dtype,
            options.device.unwrap_or_default(),
        )?;
        let mut head = r.layout.head;
        round_head(&mut head, r.record.dtype);
        Ok(ColbertEncoder {
            record: r.record,
            tokenizer: r.tokenizer,
            model,
            head,
            truncate: options.truncate.unwrap_or(false),
            batch_size: options.batch_size.unwrap_or(super::DEFAULT_BATCH_SIZE),
        })
    }

    /// The record `options` give for the checkpoint in `dir` whose fingerprint is already known,
    /// without reading the transformer's weights.
    pub fn record_for(
        dir: &ModelDir,
        format: Format,
        options: &EncoderOptions,
        fingerprint: &str,
    ) -> Result<EncoderRecord> {
        Ok(resolve(dir, format, options, Some(fingerprint))?.record)
    }

    fn settings(&self) -> &LateInteraction {
        self.record
            .late_interaction
            .as_ref()
            .expect("a ColBERT record has late-interaction settings")
    }

    /// Token ids of one input as the forward pass takes them: marker inserted, truncated, query
    /// expansion appended.
    pub fn tokenize(&self, text: &str) -> Result<Prepared> {
        let li = self.settings();
        let (mut ids, truncated) = self.tokenizer.tokenize_checked(text)?;
        if truncated && li.role == Role::Query && !self.truncate {
            return Err(Error::InvalidInput(format!(
                "the query {:?} is longer than this encoder's query length of {} tokens ({}); shorten it, or set the encoder option truncate=true (CLI: --encoder-options truncate=true) to cut it as PyLate and Stanford ColBERT do",
                abbreviate(text),
                self.record.max_length,
                self.record.source
            )));
        }
        if let Some(marker) = li.marker {
            ids.insert(ids.len().min(1), marker);
        }
        let attended = ids.len();
        if let Some(e) = li.expansion {
            if ids.len() < e.length {
                ids.resize(e.length, e.token);
            }
            if !e.attend && attended >= 1 && attended < ids.len() {
                return Ok(Prepared::Expanded {
                    tokens: ids,
                    attended,
                });
            }
        }
        Ok(Prepared::Tokens(ids))
    }

    /// Whether the vector of token `id` is kept.
    fn keeps(&self, id: u32) -> bool {
        let li = self.settings();
        li.skiplist.binary_search(&id).is_err()
            && li.keep_only.as_ref().is_none_or(|k| k.contains(&id))
    }

    /// Projects the token states `states` (`rows × hidden`) through the head and normalises
    /// each row; returns `rows × dims` values.
    fn project(&self, states: &[f32], rows: usize) -> Vec<f32> {
        let mut x = states.to_vec();
        for layer in &self.head {
            let mut y = vec![0f32; rows * layer.out];
            crate::linalg::gemm::matmul_nt(&x, rows, &layer.weight, layer.out, layer.inp, &mut y);
            if !layer.bias.is_empty() {
                for row in y.chunks_exact_mut(layer.out) {
                    row.iter_mut().zip(&layer.bias).for_each(|(v, b)| *v += b);
                }
            }
            x = y;
        }
        if self.record.normalize {
            x.chunks_exact_mut(self.record.dims).for_each(normalize);
        }
        x
    }
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn round_head(head: &mut [HeadLayer], dtype: crate::meta::encoder::ComputeType) {
    use crate::meta::encoder::ComputeType;
    let round: fn(f32) -> f32 = match dtype {
        ComputeType::F32 | ComputeType::Int8 => return,
        ComputeType::F16 => |v| half::f16::from_f32(v).to_f32(),
        ComputeType::Bf16 => |v| half::bf16::from_f32(v).to_f32(),
    };
    for l in head {
        l.weight.iter_mut().for_each(|v| *v = round(*v));
        l.bias.iter_mut().for_each(|v| *v = round(*v));
    }
}

impl Encoder for ColbertEncoder {
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
            EncoderInput::Text(t) => self.tokenize(t),
            EncoderInput::Image(path) => Err(crate::error::Error::InvalidInput(format!(
                "{}: this encoder takes text, not images",
                path.display()
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
        let max = self.model.max_tokens();
        for (i, p) in batch.iter().enumerate() {
            let toks = p.tokens();
            if toks.is_empty() || toks.len() > max {
                return Err(Error::InvalidInput(format!(
                    "sequence {i} has {} tokens; this model takes 1 to {max}",
                    toks.len()
                )));
            }
            if let Some(bad) = toks.iter().find(|&&t| t as usize >= self.model.vocab()) {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: token id {bad} is outside the model's vocabulary of {}",
                    self.model.vocab()
                )));
            }
            if let Prepared::Expanded { tokens, attended } = p {
                if *attended == 0 || *attended > tokens.len() {
                    return Err(Error::InvalidInput(format!(
                        "sequence {i}: {attended} attended tokens of {}",
                        tokens.len()
                    )));
                }
            }
        }
        let seqs: Vec<&[u32]> = batch.iter().map(|p| p.tokens()).collect();
        let keys: Vec<usize> = batch
            .iter()
            .map(|p| match p {
                Prepared::Tokens(t) => t.len(),
                Prepared::Expanded { attended, .. } => *attended,
                Prepared::Pixels(_) => 0,
            })
            .collect();
        let (states, starts) = self.model.forward_with_keys(&seqs, Some(&keys))?;
        let hidden = self.model.hidden();
        let outputs: Vec<(Vec<f32>, usize)> = seqs
            .par_iter()
            .zip(starts.par_iter())
            .map(|(toks, &s0)| {
                let mut kept = Vec::with_capacity(toks.len() * hidden);
                let mut rows = 0;
                for (t, &id) in toks.iter().enumerate() {
                    if self.keeps(id) {
                        kept.extend_from_slice(&states[(s0 + t) * hidden..(s0 + t + 1) * hidden]);
                        rows += 1;
                    }
                }
                let vectors = self.project(&kept, rows);
                match self.settings().pool_factor {
                    // PyLate's token pooling, the first ([CLS]) vector protected.
                    Some(f) if rows > 0 => {
                        let pooled = token_pooling::pool_tokens(&vectors, dims, f, 1);
                        let n = pooled.len() / dims;
                        (pooled, n)
                    }
                    _ => (vectors, rows),
                }
            })
            .collect();
        if let Some(i) = outputs.iter().position(|o| o.1 == 0) {
            return Err(Error::InvalidInput(format!(
                "input {i}: every token was dropped by the encoder's skiplist / keep_only tokens, leaving no vector to store"
            )));
        }
        let mut out = Encoded {
            values: Vec::with_capacity(outputs.iter().map(|o| o.0.len()).sum()),
            rows: Vec::with_capacity(outputs.len()),
            dims,
        };
        for (v, r) in outputs {
            out.values.extend_from_slice(&v);
            out.rows.push(r);
        }
        Ok(out)
    }
}

/// The tokenizer's mask token: `tokenizer_config.json`'s `mask_token`, else `[MASK]` / `<mask>`.
fn mask_token(dir: &ModelDir, tokenizer: &TextTokenizer) -> Result<u32> {
    let configured = dir
        .json("tokenizer_config.json")?
        .and_then(|c| match c.get("mask_token") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => o
                .get("content")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            _ => None,
        });
    let candidates: Vec<String> = match configured {
        Some(c) => vec![c],
        None => vec!["[MASK]".into(), "<mask>".into()],
    };
    candidates
        .iter()
        .find_map(|c| tokenizer.token_id(c))
        .ok_or_else(|| {
            dir.error(format!(
                "the tokenizer has no mask token ({}) for ColBERT's query expansion",
                candidates.join(" or ")
            ))
        })
}

fn resolve(
    dir: &ModelDir,
    format: Format,
    options: &EncoderOptions,
    fingerprint: Option<&str>,
) -> Result<Resolved> {
    if let Some(o) = options.output.filter(|o| *o != OutputKind::Multi) {
        return Err(dir.error(format!(
            "output={}: a late-interaction encoder outputs token vectors (multi)",
            o.field_kind_name()
        )));
    }
    if let Some(p) = options.pooling.filter(|&p| p != Pooling::Tokens) {
        return Err(Error::parameter(
            "pooling",
            format!("{p:?}: a ColBERT checkpoint outputs one vector per token; pooling does not apply (bind it to a multi-vector field)"),
        ));
    }
    let architecture = Architecture::from_dir(dir)?;
    let hidden = architecture.hidden();
    let layout = layout::read(dir, format, hidden)?;
    let role = options.role.unwrap_or(Role::Passage);
    let side: &Side = match role {
        Role::Query => &layout.query,
        Role::Passage => &layout.document,
    };
    let model_max = architecture.max_tokens();
    // The side's length: an explicit max_length, else a fixed expansion's length, else the
    // checkpoint's, else the model's.
    let mut length = options
        .max_length
        .or(match &side.expansion {
            Some(e) if e.fixed => Some(e.length),
            _ => side.length,
        })
        .unwrap_or(model_max);
    if let Some(e) = side
        .expansion
        .as_ref()
        .filter(|e| !e.fixed && role == Role::Query)
    {
        // `min`: the expansion length is a floor the ceiling is raised to.
        length = length.max(e.length);
    }
    if length > model_max {
        return Err(dir.error(format!(
            "the {} length is {length} tokens but the model takes at most {model_max}",
            role.name()
        )));
    }
    let prefix = options
        .prefix
        .clone()
        .unwrap_or_else(|| side.prompt.clone());
    let marker_len = usize::from(side.marker.is_some());
    // Tokenizer with the truncation the side needs (the marker is inserted afterwards).
    let lower_case = layout.lower_case;
    let limit = length - marker_len;
    // [CLS], one text token and [SEP] at least (below that the tokenizer cannot truncate).
    if limit < 3 {
        return Err(dir.error(format!(
            "the {} length of {length} tokens leaves no room for text after the special tokens{} (at least {} is needed)",
            role.name(),
            if marker_len > 0 { " and the marker" } else { "" },
            3 + marker_len
        )));
    }
    let tokenizer = TextTokenizer::load(dir, limit, architecture.vocab(), &prefix, lower_case)?;
    let token = |t: &str, what: &str| {
        tokenizer.token_id(t).ok_or_else(|| {
            dir.error(format!(
                "the {what} {t:?} is not a token of tokenizer.json (a marker must be one vocabulary token)"
            ))
        })
    };
    let marker = side
        .marker
        .as_deref()
        .map(|m| token(m, &format!("{} marker", role.name())))
        .transpose()?;
    let expansion = match (&side.expansion, role) {
        (Some(e), Role::Query) => {
            let token = match &e.token {
                Some(t) => token(t, "query expansion token")?,
                None => mask_token(dir, &tokenizer)?,
            };
            let exp_length = if e.fixed { length } else { e.length };
            Some(QueryExpansion {
                length: exp_length,
                token,
                attend: e.attend,
                fixed: e.fixed,
            })
        }
        _ => None,
    };
    let unk = ["[UNK]", "<unk>"]
        .iter()
        .find_map(|u| tokenizer.token_id(u));
    let mut skiplist: Vec<u32> = side
        .skiplist
        .iter()
        .filter_map(|w| match (side.skip_rule, tokenizer.token_id(w)) {
            (SkipRule::FirstPiece, _) => tokenizer.first_piece(w),
            (_, Some(id)) => Some(id),
            (SkipRule::VocabularyOrUnknown, None) => unk,
            (_, None) => None,
        })
        .collect();
    skiplist.sort_unstable();
    skiplist.dedup();
    // Token pooling applies to documents; factor 1 is no pooling (recorded as absent).
    let pool_factor = match (options.pool_factor, role) {
        (Some(f), Role::Passage) if f > 1 => Some(f),
        (Some(f), Role::Query) if f > 1 => {
            return Err(Error::parameter(
                "encoder option pool_factor",
                format!(
                "{f}: token pooling applies to documents (role=passage); queries keep every vector"
            ),
            ))
        }
        _ => None,
    };
    let head_out = layout.head.last().map_or(hidden, |h| h.out);
    let dims = options.dims.unwrap_or(head_out);
    if dims != head_out {
        return Err(dir.error(format!(
            "dims={dims}: the ColBERT head outputs {head_out} dimensions (token vectors cannot be truncated)"
        )));
    }
    let record = EncoderRecord {
        input: crate::meta::encoder::Modality::Text,
        source: dir.source.clone(),
        fingerprint: match fingerprint {
            Some(f) => f.to_string(),
            None => dir.fingerprint()?,
        },
        pooling: Pooling::Tokens,
        normalize: options.normalize.unwrap_or(layout.normalize),
        max_length: length,
        prefix,
        dims,
        dtype: options.dtype.unwrap_or_default(),
        embedded: false,
        architecture: Some(architecture.model_type().to_string()),
        output: OutputKind::Multi,
        late_interaction: Some(LateInteraction {
            role,
            format: layout.format.name().to_string(),
            marker,
            expansion,
            skiplist,
            keep_only: side.keep_only.clone(),
            pool_factor,
        }),
    };
    Ok(Resolved {
        record,
        tokenizer,
        architecture,
        layout,
    })
}
