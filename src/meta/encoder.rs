//! What an encoder is, as the manifest records it: the model's fingerprint plus every option that
//! changes its output. Compiled in every build (a storage-only build still reads manifests that
//! name encoders).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::FieldKind;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token (`[CLS]`), as DPR and Tevatron's BERT encoders.
    Cls,
    /// The mean of the non-padding tokens, as sentence-transformers' default.
    Mean,
    /// The last non-padding token (the EOS token), as Tevatron's DSE / decoder encoders.
    Last,
    /// No pooling: one vector per token (late-interaction encoders filling multi-vector fields).
    /// Set by those encoders; not an option of dense ones.
    Tokens,
}

impl std::str::FromStr for Pooling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            "last" | "lasttoken" | "eos" => Ok(Pooling::Last),
            "tokens" => Err(Error::parameter(
                "pooling",
                "tokens: late-interaction (ColBERT) checkpoints pool nothing by themselves; a dense encoder takes cls, mean or last",
            )),
            other => Err(Error::parameter(
                "pooling",
                format!("{other:?}: expected cls, mean or last"),
            )),
        }
    }
}

/// The precision of the model's weights: `f16` / `bf16` round every weight to that type (the
/// model then behaves as one stored in half precision; arithmetic stays f32 on CPU); `int8`
/// quantizes the linear layers dynamically, as ONNX Runtime's quantized BERT models do (weights
/// per output channel, activations per token, integer products). Output vectors are always `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeType {
    /// 32-bit float (the reference precision).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// Linear layers in 8-bit integers: each weight row (output channel) scaled to ±127, each
    /// token's activations scaled to ±64 at run time, products summed exactly in i32 (AVX2
    /// `vpmaddubsw`, AVX-512 VNNI `vpdpbusd`) and scaled back; embeddings, layer norms, attention
    /// and activation functions stay f32.
    Int8,
}

impl std::str::FromStr for ComputeType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(ComputeType::F32),
            "f16" | "float16" => Ok(ComputeType::F16),
            "bf16" | "bfloat16" => Ok(ComputeType::Bf16),
            "int8" | "qint8" => Ok(ComputeType::Int8),
            other => Err(Error::parameter(
                "dtype",
                format!("{other:?}: expected f32, f16, bf16 or int8"),
            )),
        }
    }
}

/// Which of a field's two encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Encodes documents at ingest.
    #[serde(alias = "document")]
    Passage,
    /// Encodes queries.
    Query,
}

impl Role {
    /// "passage" or "query", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Passage => "passage",
            Role::Query => "query",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "passage" | "document" | "doc" => Ok(Role::Passage),
            "query" => Ok(Role::Query),
            other => Err(Error::parameter(
                "role",
                format!("{other:?}: expected query or passage (document)"),
            )),
        }
    }
}

/// Where the model runs. Not part of an encoder's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (all cores).
    #[default]
    Cpu,
    /// CUDA device `N` (needs the `cuda` feature and the GPU issue's kernels).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "cuda" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            return Ok(DeviceSpec::Cuda(n));
        }
        Err(Error::parameter(
            "device",
            format!("{s:?}: expected cpu or cuda:N"),
        ))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Options a user sets on an encoder; `None` means "the model folder's default" (from
/// sentence-transformers' config files when present).
///
/// Written as a `key=value` list separated by commas (see [`EncoderOptions::parse`]):
///
/// | key | values | default |
/// |---|---|---|
/// | `pooling` | `cls`, `mean`, `last` | `1_Pooling/config.json`, else `cls` |
/// | `normalize` | `true`, `false` | `true` when `modules.json` has a Normalize module, else `false` |
/// | `max_length` | tokens, including special tokens | `sentence_bert_config.json`'s `max_seq_length`, else the model's `max_position_embeddings` |
/// | `prefix` | text put before every input (e5's `query: `) | none |
/// | `dims` | keep the first `dims` components (Matryoshka), then normalize if `normalize` | the hidden size |
/// | `dtype` | `f32`, `f16`, `bf16` | `f32` |
/// | `device` | `cpu`, `cuda:N` | `cpu` |
/// | `batch_size` | texts per forward pass | 32 |
/// | `role` | `query`, `passage` (`document`): which side a late-interaction (ColBERT) encoder encodes; dense encoders ignore it | set by the field binding |
/// | `truncate` | `true`: a late-interaction query longer than the query length is truncated (as PyLate does) instead of refused | `false` |
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncoderOptions {
    /// Pooling of token states.
    pub pooling: Option<Pooling>,
    /// L2-normalize the output.
    pub normalize: Option<bool>,
    /// Maximum tokens per text (longer texts are truncated).
    pub max_length: Option<usize>,
    /// Text prepended to every input.
    pub prefix: Option<String>,
    /// Output dimensions kept (Matryoshka truncation).
    pub dims: Option<usize>,
    /// Compute type.
    pub dtype: Option<ComputeType>,
    /// Device.
    pub device: Option<DeviceSpec>,
    /// Texts per forward pass.
    pub batch_size: Option<usize>,
    /// The side a late-interaction encoder encodes (queries or documents); dense encoders encode
    /// both alike and ignore it.
    pub role: Option<Role>,
    /// Truncate late-interaction queries longer than the query length instead of refusing them.
    /// Changes where it runs, not the vectors of queries that fit: not part of the identity.
    pub truncate: Option<bool>,
    /// What an image encoder outputs: `dense` (CLIP's projected, normalised image embedding) or
    /// `tensor` (the vision tower's penultimate hidden states, `[1 + patches, hidden]`, for a
    /// tensor field). Text encoders output what they output; setting another kind is an error.
    pub output: Option<OutputKind>,
    /// Token pooling of a late-interaction document encoder (Clavié et al. 2024): each
    /// document's token vectors are clustered and replaced by the clusters' means, about
    /// `1 / pool_factor` of them kept ([`crate::encode::colbert::token_pooling`]). 1 (the
    /// default) keeps every vector.
    pub pool_factor: Option<usize>,
}

impl EncoderOptions {
    /// True when any option that changes the encoder's output is set (everything but `device`
    /// and `batch_size`, which only change where and how fast it runs).
    pub fn shapes_output(&self) -> bool {
        self.pooling.is_some()
            || self.normalize.is_some()
            || self.max_length.is_some()
            || self.prefix.is_some()
            || self.dims.is_some()
            || self.dtype.is_some()
            || self.role.is_some()
            || self.output.is_some()
            || self.pool_factor.is_some()
    }

    /// Parses `key=value,key=value`. A `prefix` value runs to the end of the list when it is
    /// the last key (so it may contain commas); otherwise up to the next comma.
    ///
    /// ```
    /// use vellum::encode::{EncoderOptions, Pooling};
    /// let o = EncoderOptions::parse("pooling=cls,dims=128,prefix=query: ").unwrap();
    /// assert_eq!(o.pooling, Some(Pooling::Cls));
    /// assert_eq!(o.dims, Some(128));
    /// assert_eq!(o.prefix.as_deref(), Some("query: "));
    /// assert!(EncoderOptions::parse("poolin=cls").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self> {
        let mut options = EncoderOptions::default();
        let mut rest = list;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').ok_or_else(|| {
                Error::parameter(
                    "encoder options",
                    format!("{list:?}: expected key=value pairs separated by commas"),
                )
            })?;
            let key = key.trim();
            let (value, next) = if key == "prefix" {
                (after, "")
            } else {
                match after.split_once(',') {
                    Some((v, n)) => (v, n),
                    None => (after, ""),
                }
            };
            options.set(key, value)?;
            rest = next;
        }
        Ok(options)
    }

    /// Sets one option from its text form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |what: &str| {
            Error::parameter(
                format!("encoder option {key}"),
                format!("{value:?}: expected {what}"),
            )
        };
        let v = value.trim();
        match key {
            "pooling" => self.pooling = Some(v.parse()?),
            "normalize" => {
                self.normalize = Some(match v {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad("true or false")),
                })
            }
            "max_length" | "max_len" => {
                self.max_length = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n >= 2)
                        .ok_or_else(|| bad("an integer >= 2"))?,
                )
            }
            "prefix" => self.prefix = Some(value.to_string()),
            "dims" | "dim" => {
                self.dims = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("a positive integer"))?,
                )
            }
            "dtype" => self.dtype = Some(v.parse()?),
            "device" => self.device = Some(v.parse()?),
            "role" => self.role = Some(v.parse()?),
            "truncate" => {
                self.truncate = Some(match v {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad("true or false")),
                })
            }
            "output" => {
                self.output = Some(match v {
                    "dense" | "embedding" => OutputKind::Dense,
                    "multi" => OutputKind::Multi,
                    "tensor" | "hidden_states" => OutputKind::Tensor,
                    _ => return Err(bad("dense, multi or tensor")),
                })
            }
            "pool_factor" => {
                self.pool_factor = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("a positive integer"))?,
                )
            }
            "batch_size" | "batch" => {
                self.batch_size = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("a positive integer"))?,
                )
            }
            other => {
                return Err(Error::parameter(
                    "encoder options",
                    format!("unknown option {other:?}: expected pooling, normalize, max_length, prefix, dims, dtype, device, batch_size, role, truncate, output or pool_factor"),
                ))
            }
        }
        Ok(())
    }

    /// `self` with every option that `over` sets replaced by `over`'s.
    pub fn overridden_by(&self, over: &EncoderOptions) -> EncoderOptions {
        EncoderOptions {
            pooling: over.pooling.or(self.pooling),
            normalize: over.normalize.or(self.normalize),
            max_length: over.max_length.or(self.max_length),
            prefix: over.prefix.clone().or_else(|| self.prefix.clone()),
            dims: over.dims.or(self.dims),
            dtype: over.dtype.or(self.dtype),
            device: over.device.or(self.device),
            batch_size: over.batch_size.or(self.batch_size),
            role: over.role.or(self.role),
            truncate: over.truncate.or(self.truncate),
            output: over.output.or(self.output),
            pool_factor: over.pool_factor.or(self.pool_factor),
        }
    }
}

/// What an encoder outputs per input: one vector, or one vector per token (ColBERT-style late
/// interaction). It must match the kind of the field the encoder is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// One `[dims]` vector per input, for a dense field.
    #[default]
    Dense,
    /// A `[tokens, dims]` matrix per input, for a multi-vector field.
    Multi,
    /// A `[rows, dims]` array of a fixed shape per input, for a tensor field of that shape
    /// (CLIP's penultimate hidden states).
    Tensor,
}

impl OutputKind {
    /// The vector dimension of a field of `kind` when this output fills it (a dense output a
    /// dense field, a multi-vector output a multi-vector field's tokens); `None` when it does not.
    pub fn fills(self, kind: &FieldKind) -> Option<usize> {
        match (self, kind) {
            (OutputKind::Dense, FieldKind::Dense { dim, .. })
            | (OutputKind::Multi, FieldKind::Multi { dim, .. }) => Some(*dim as usize),
            (OutputKind::Tensor, FieldKind::Tensor { shape, .. }) if shape.len() == 2 => {
                Some(shape[1] as usize)
            }
            _ => None,
        }
    }

    /// The field kind this output fills (`dense` or `multi`).
    pub fn field_kind_name(self) -> &'static str {
        match self {
            OutputKind::Dense => "dense",
            OutputKind::Multi => "multi",
            OutputKind::Tensor => "tensor",
        }
    }
}

/// What an encoder takes as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Text (documents' text at ingest, query texts at search).
    #[default]
    Text,
    /// Images (image files at ingest).
    Image,
}

impl Modality {
    /// "text" or "image".
    pub fn name(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
        }
    }

    fn is_text(&self) -> bool {
        *self == Modality::Text
    }
}

/// An encoder's identity as the manifest stores it: the model (by fingerprint, and where it was
/// loaded from) and the resolved options that shape its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderRecord {
    /// What the user named: a folder path or a Hugging Face model id. Used to find the model
    /// again when it is not embedded.
    pub source: String,
    /// `xxh3-128:<32 hex digits>` over the model's weights, config and tokenizer files.
    pub fingerprint: String,
    /// Pooling.
    pub pooling: Pooling,
    /// Whether outputs are L2-normalized.
    pub normalize: bool,
    /// Maximum tokens per text.
    pub max_length: usize,
    /// Text prepended to every input.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Output dimensions (after Matryoshka truncation).
    pub dims: usize,
    /// Compute type.
    pub dtype: ComputeType,
    /// Whether the model files are stored in the database (`.models/<fingerprint hex>/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedded: bool,
    /// The model architecture (`config.json`'s `model_type`: `bert`, `roberta`, `xlm-roberta`).
    /// Absent in records written before vellum recorded it (read from the model then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// What the encoder outputs; `dense` in records written before vellum recorded it.
    #[serde(default)]
    pub output: OutputKind,
    /// How a late-interaction (ColBERT) encoder prepares its side's inputs and which token
    /// vectors it keeps; absent for dense encoders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_interaction: Option<LateInteraction>,
    /// What the encoder takes; `text` (absent) for text encoders.
    #[serde(default, skip_serializing_if = "Modality::is_text")]
    pub input: Modality,
}

/// What a late-interaction encoder does around the transformer, for one side (queries or
/// documents): everything besides the model files that changes its vectors. The conventions of
/// Stanford ColBERT (`modeling/tokenization/`), PyLate (`models/colbert.py`) and
/// sentence-transformers' `MultiVectorEncoder` all map onto it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LateInteraction {
    /// The side this encoder encodes.
    pub role: Role,
    /// The checkpoint layout it was read from: `stanford`, `pylate` or `sentence-transformers`
    /// (informational).
    pub format: String,
    /// Marker token id inserted right after the first token (`[CLS]`): Stanford's `[unused0]` /
    /// `[unused1]`, PyLate's `[Q] ` / `[D] `; `None` when the checkpoint marks inputs with a text
    /// prefix (the record's `prefix`) or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<u32>,
    /// Query expansion (queries only): inputs shorter than `length` tokens are padded with
    /// `token` (`[MASK]`) up to it; their vectors are kept and scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<QueryExpansion>,
    /// Token ids whose vectors are dropped (a punctuation skiplist, on the document side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skiplist: Vec<u32>,
    /// When set, only the vectors of these token ids are kept (sentence-transformers'
    /// `keep_only_token_ids`, documents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_only: Option<Vec<u32>>,
    /// Token pooling (documents only): each document's kept vectors are clustered (Ward) and
    /// replaced by the clusters' means, `max((n − 1) / pool_factor, 1)` of them plus the first
    /// (`[CLS]`) vector, as PyLate's `pool_factor`. Absent: no pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_factor: Option<usize>,
}

/// ColBERT's query expansion ("query augmentation" in the ColBERT paper, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryExpansion {
    /// Queries are padded to this many tokens, marker and special tokens included.
    pub length: usize,
    /// The padding token id (`[MASK]`).
    pub token: u32,
    /// Whether the other tokens attend to the expansion tokens (`attend_to_mask_tokens` /
    /// `attend_to_expansion_tokens`; false in ColBERTv2, which computes them but masks them as
    /// attention keys).
    pub attend: bool,
    /// `true`: queries are also cut to `length` (ColBERT, PyLate, sentence-transformers'
    /// `fixed`); `false`: `length` is only the floor (`min`), `max_length` the ceiling.
    pub fixed: bool,
}
impl EncoderRecord {
    /// The differences that make `other` produce different vectors than `self`, as
    /// `what: expected X, found Y` items (empty when the two encode identically).
    pub fn differences(&self, other: &EncoderRecord) -> Vec<String> {
        let mut d = Vec::new();
        if self.fingerprint != other.fingerprint {
            d.push(format!(
                "model: expected {} ({}), found {} ({})",
                self.fingerprint, self.source, other.fingerprint, other.source
            ));
        }
        let mut cmp = |what: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{what}: expected {a}, found {b}"));
            }
        };
        cmp(
            "pooling",
            format!("{:?}", self.pooling),
            format!("{:?}", other.pooling),
        );
        cmp(
            "normalize",
            self.normalize.to_string(),
            other.normalize.to_string(),
        );
        cmp(
            "max_length",
            self.max_length.to_string(),
            other.max_length.to_string(),
        );
        cmp(
            "prefix",
            format!("{:?}", self.prefix),
            format!("{:?}", other.prefix),
        );
        cmp("dims", self.dims.to_string(), other.dims.to_string());
        cmp(
            "dtype",
            format!("{:?}", self.dtype),
            format!("{:?}", other.dtype),
        );
        cmp(
            "output",
            format!("{:?}", self.output),
            format!("{:?}", other.output),
        );
        cmp("input", self.input.name().into(), other.input.name().into());
        if let (Some(a), Some(b)) = (&self.architecture, &other.architecture) {
            cmp("architecture", a.clone(), b.clone());
        }
        match (&self.late_interaction, &other.late_interaction) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                cmp("role", a.role.name().into(), b.role.name().into());
                cmp(
                    "marker token",
                    format!("{:?}", a.marker),
                    format!("{:?}", b.marker),
                );
                cmp(
                    "query expansion",
                    format!("{:?}", a.expansion),
                    format!("{:?}", b.expansion),
                );
                cmp(
                    "pool factor",
                    format!("{:?}", a.pool_factor),
                    format!("{:?}", b.pool_factor),
                );
                cmp(
                    "skiplist",
                    format!("{:?}", a.skiplist),
                    format!("{:?}", b.skiplist),
                );
                cmp(
                    "keep_only",
                    format!("{:?}", a.keep_only),
                    format!("{:?}", b.keep_only),
                );
            }
            (a, b) => cmp(
                "late interaction",
                if a.is_some() {
                    "ColBERT settings"
                } else {
                    "none"
                }
                .into(),
                if b.is_some() {
                    "ColBERT settings"
                } else {
                    "none"
                }
                .into(),
            ),
        }
        d
    }

    /// The options that reproduce this record exactly (device and batch size left to defaults).
    pub fn options(&self) -> EncoderOptions {
        EncoderOptions {
            pooling: Some(self.pooling),
            normalize: Some(self.normalize),
            max_length: Some(self.max_length),
            prefix: Some(self.prefix.clone()),
            dims: Some(self.dims),
            dtype: Some(self.dtype),
            device: None,
            batch_size: None,
            // The side: a late-interaction record says it; a CLIP record's input says it (images
            // are the passage side, texts the query side).
            role: match (
                &self.late_interaction,
                self.architecture.as_deref(),
                self.input,
            ) {
                (Some(l), _, _) => Some(l.role),
                (None, Some("clip"), Modality::Image) => Some(Role::Passage),
                (None, Some("clip"), Modality::Text) => Some(Role::Query),
                _ => None,
            },
            truncate: None,
            output: Some(self.output),
            pool_factor: self.late_interaction.as_ref().and_then(|l| l.pool_factor),
        }
    }

    /// Hex digits of the fingerprint (the embedded model's directory name).
    pub fn fingerprint_hex(&self) -> &str {
        self.fingerprint
            .strip_prefix("xxh3-128:")
            .unwrap_or(&self.fingerprint)
    }

    /// Checks that this encoder's output fills a field of `kind`: a dense encoder a dense field of
    /// its dimension, a multi-vector encoder a multi-vector field of its token dimension.
    pub fn fits(&self, kind: &FieldKind) -> std::result::Result<(), String> {
        let Some(dim) = self.output.fills(kind) else {
            return Err(format!(
                "the encoder ({}) outputs {} vectors but the field is a {} field",
                self.source,
                self.output.field_kind_name(),
                kind.kind_name()
            ));
        };
        if self.dims != dim {
            return Err(format!(
                "the encoder ({}) outputs {} dimensions but the field has {dim}",
                self.source, self.dims
            ));
        }
        Ok(())
    }

    /// Checks what a reader must not trust blindly in a manifest.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let hex = self.fingerprint.strip_prefix("xxh3-128:").unwrap_or("");
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "encoder fingerprint {:?}: expected xxh3-128:<32 hex digits>",
                self.fingerprint
            ));
        }
        if self.dims == 0 || self.max_length < 2 {
            return Err("encoder dims must be >= 1 and max_length >= 2".into());
        }
        match (&self.late_interaction, self.output) {
            (None, OutputKind::Dense) if self.pooling != Pooling::Tokens => {}
            (None, OutputKind::Multi | OutputKind::Tensor) => {}
            (Some(li), OutputKind::Multi) => {
                if self.pooling != Pooling::Tokens {
                    return Err("late_interaction: a late-interaction encoder pools nothing (pooling tokens)".into());
                }
                if li
                    .expansion
                    .is_some_and(|e| e.fixed && e.length != self.max_length)
                {
                    return Err(
                        "late_interaction: a fixed expansion's length must equal max_length".into(),
                    );
                }
                if li.expansion.is_some() && li.role != Role::Query {
                    return Err("late_interaction: only a query encoder expands its inputs".into());
                }
                if li
                    .pool_factor
                    .is_some_and(|f| f < 2 || li.role != Role::Passage)
                {
                    return Err(
                        "late_interaction: pool_factor is at least 2, on a passage encoder".into(),
                    );
                }
                if li.expansion.is_some_and(|e| e.length < 2) {
                    return Err("late_interaction: expansion length must be >= 2".into());
                }
                if !li.skiplist.windows(2).all(|w| w[0] < w[1]) {
                    return Err("late_interaction: skiplist must be sorted and unique".into());
                }
            }
            _ => return Err(
                "late_interaction settings and pooling tokens belong to multi-vector encoders only"
                    .into(),
            ),
        }
        Ok(())
    }
}

/// The encoders bound to one dense field: the passage encoder used at ingest and the query
/// encoder used by text search (equal records when the two are tied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEncoders {
    /// Encodes documents at ingest.
    pub passage: EncoderRecord,
    /// Encodes queries.
    pub query: EncoderRecord,
}

impl FieldEncoders {
    /// Whether query and passage use the same model (their options, e.g. prefixes, may differ).
    pub fn tied(&self) -> bool {
        self.passage.fingerprint == self.query.fingerprint
    }

    /// Checks both records ([`EncoderRecord::validate`]) and that late-interaction records sit
    /// in the slot of their role.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (record, role) in [(&self.passage, Role::Passage), (&self.query, Role::Query)] {
            record.validate()?;
            if let Some(li) = &record.late_interaction {
                if li.role != role {
                    return Err(format!(
                        "the {} encoder's record encodes the {} side",
                        role.name(),
                        li.role.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EncoderRecord {
        EncoderRecord {
            source: "m".into(),
            fingerprint: format!("xxh3-128:{}", "ab".repeat(16)),
            pooling: Pooling::Mean,
            normalize: true,
            max_length: 256,
            prefix: String::new(),
            dims: 384,
            dtype: ComputeType::F32,
            embedded: false,
            architecture: Some("bert".into()),
            output: OutputKind::Dense,
            late_interaction: None,
            input: Modality::Text,
        }
    }

    #[test]
    fn records_fit_fields_of_their_output_kind_and_dimension() {
        use crate::dtype::{DType, Metric};
        let dense = FieldKind::Dense {
            dim: 384,
            dtype: DType::F32,
            metric: Metric::Cosine,
        };
        let multi = FieldKind::Multi {
            dim: 384,
            dtype: DType::F16,
            metric: Metric::Ip,
        };
        let mut r = record();
        assert!(r.fits(&dense).is_ok());
        assert!(r.fits(&multi).unwrap_err().contains("dense vectors"));
        r.output = OutputKind::Multi;
        assert!(r.fits(&multi).is_ok());
        assert!(r.fits(&dense).is_err());
        r.dims = 128;
        assert!(r.fits(&multi).unwrap_err().contains("128 dimensions"));
        // Records differing only in output kind do not encode alike.
        let mut other = record();
        other.output = OutputKind::Multi;
        assert!(record().differences(&other)[0].starts_with("output"));
    }

    #[test]
    fn options_parse_and_override() {
        let o = EncoderOptions::parse(
            "pooling=last,normalize=false,max_length=64,dtype=bf16,device=cuda:1,batch_size=8",
        )
        .unwrap();
        assert_eq!(o.pooling, Some(Pooling::Last));
        assert_eq!(o.normalize, Some(false));
        assert_eq!(o.max_length, Some(64));
        assert_eq!(o.dtype, Some(ComputeType::Bf16));
        assert_eq!(o.device, Some(DeviceSpec::Cuda(1)));
        assert_eq!(o.batch_size, Some(8));
        let p = EncoderOptions::parse("prefix=a, b").unwrap();
        assert_eq!(p.prefix.as_deref(), Some("a, b"));
        let merged = o.overridden_by(&EncoderOptions::parse("pooling=cls").unwrap());
        assert_eq!(merged.pooling, Some(Pooling::Cls));
        assert_eq!(merged.max_length, Some(64));
        for bad in [
            "pooling=max",
            "max_length=1",
            "dims=0",
            "dtype=f64",
            "device=tpu",
            "x",
            "normalize=maybe",
        ] {
            let e = EncoderOptions::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn differences_name_each_option() {
        let a = record();
        assert!(a.differences(&a).is_empty());
        let mut b = a.clone();
        b.prefix = "query: ".into();
        b.dims = 128;
        let d = a.differences(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("prefix") && d[1].starts_with("dims"));
        assert_eq!(a.options().dims, Some(384));
        assert!(a.validate().is_ok());
        b.fingerprint = "xxh3-128:zz".into();
        assert!(b.validate().is_err());
    }

    #[test]
    fn record_serializes_compactly() {
        let json = serde_json::to_string(&record()).unwrap();
        assert!(
            !json.contains("prefix") && !json.contains("embedded"),
            "{json}"
        );
        let back: EncoderRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record());
    }
}
