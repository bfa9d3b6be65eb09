//! ModernBERT (Warner et al., *Smarter, Better, Faster, Longer*, 2024; transformers
//! `models/modernbert/`) as a model file: its `config.json` as a serde [`ModernBertConfig`] and
//! the [`ModernBertShape`] the forward pass (`backend/native_modernbert.rs`) needs.
//!
//! What differs from BERT: no position or token-type embeddings (rotary positions, RoPE, on
//! queries and keys instead); pre-norm layers (the first layer's attention norm is the
//! identity) and a final norm; layer norms and linear layers without bias by default; a gated
//! feed-forward block (GeGLU: `Wi` gives `[input, gate]`, output `Wo(act(input) · gate)`);
//! attention alternating between global layers and local ones where a token attends only to
//! tokens at most `local_attention / 2` positions away, each kind with its own RoPE base.

use serde::Deserialize;
use serde_json::Value;

use super::bert::Activation;
use crate::encode::source::ModelDir;
use crate::error::Result;

/// The keys of a ModernBERT `config.json` that vellum reads (transformers' names; both the
/// older `global_attn_every_n_layers` / `*_rope_theta` keys and the newer `layer_types` /
/// `rope_parameters` are understood).
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size (each of GeGLU's two halves).
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest input.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Layer-norm epsilon (default 1e-5).
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Whether layer norms have a bias.
    #[serde(default)]
    pub norm_bias: bool,
    /// Whether the attention projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the feed-forward projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// GeGLU's activation (default `gelu`, the erf form).
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    /// Total width of the local attention window (a token sees `local_attention / 2` either side).
    #[serde(default = "default_local")]
    pub local_attention: usize,
    /// Every n-th layer (from layer 0) is global (older configs).
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    /// `full_attention` / `sliding_attention` per layer (newer configs).
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// RoPE base of global layers (older configs; default 160,000).
    #[serde(default)]
    pub global_rope_theta: Option<f64>,
    /// RoPE base of local layers (older configs; default 10,000).
    #[serde(default)]
    pub local_rope_theta: Option<f64>,
    /// RoPE parameters per layer type (newer configs).
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    /// The padding token.
    #[serde(default)]
    pub pad_token_id: Option<u64>,
    /// Legacy RoPE scaling (transformers merges it into `rope_parameters`); only absent or null
    /// is supported.
    #[serde(default)]
    pub rope_scaling: Option<Value>,
}

fn default_max_positions() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu".into()
}
fn default_local() -> usize {
    128
}
fn default_every() -> usize {
    3
}

/// The hyper-parameters the ModernBERT forward pass needs.
#[derive(Debug, Clone)]
pub struct ModernBertShape {
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward size.
    pub intermediate: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Longest input.
    pub max_positions: usize,
    /// Layer-norm epsilon.
    pub eps: f32,
    /// Layer norms have a bias.
    pub norm_bias: bool,
    /// Attention projections have biases.
    pub attention_bias: bool,
    /// Feed-forward projections have biases.
    pub mlp_bias: bool,
    /// GeGLU's activation.
    pub activation: Activation,
    /// Per layer: `None` for a global layer, `Some(w)` for a local one (keys at most `w` away).
    pub windows: Vec<Option<usize>>,
    /// RoPE base of global layers.
    pub global_theta: f64,
    /// RoPE base of local layers.
    pub local_theta: f64,
}

impl ModernBertConfig {
    /// Parses a `config.json` already read (its `model_type` is `modernbert`).
    pub fn from_json(dir: &ModelDir, json: Value) -> Result<Self> {
        serde_json::from_value(json).map_err(|e| dir.error(format!("config.json: {e}")))
    }

    /// The padding token id (0 when the config does not say).
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id.unwrap_or(0) as u32
    }

    fn theta(&self, kind: &str) -> Option<f64> {
        self.rope_parameters
            .as_ref()?
            .get(kind)?
            .get("rope_theta")?
            .as_f64()
    }

    /// The forward pass's hyper-parameters, or an error naming the unsupported setting.
    pub fn shape(&self, dir: &ModelDir) -> Result<ModernBertShape> {
        let activation = match self.hidden_activation.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(dir.error(format!(
                    "config.json: hidden_activation {other:?} is not supported (gelu, gelu_pytorch_tanh, relu)"
                )))
            }
        };
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(dir.error(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !(self.hidden_size / self.num_attention_heads).is_multiple_of(2) {
            return Err(dir.error("config.json: rotary positions need an even head size"));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(dir.error(
                "config.json: rope_scaling is not supported (ModernBERT with default rotary positions only)",
            ));
        }
        if let Some(p) = &self.rope_parameters {
            for kind in ["full_attention", "sliding_attention"] {
                let t = p
                    .get(kind)
                    .and_then(|k| k.get("rope_type"))
                    .and_then(Value::as_str);
                if t.is_some_and(|t| t != "default") {
                    return Err(dir.error(format!(
                        "config.json: rope_parameters.{kind}.rope_type {t:?} is not supported (default)"
                    )));
                }
            }
        }
        let half_window = self.local_attention / 2;
        let every = self.global_attn_every_n_layers.max(1);
        let windows = match &self.layer_types {
            Some(types) => {
                if types.len() != self.num_hidden_layers {
                    return Err(dir.error(format!(
                        "config.json: layer_types has {} entries for {} layers",
                        types.len(),
                        self.num_hidden_layers
                    )));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(None),
                        "sliding_attention" => Ok(Some(half_window)),
                        other => Err(dir.error(format!(
                            "config.json: layer type {other:?} is not supported (full_attention, sliding_attention)"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => (0..self.num_hidden_layers)
                .map(|i| (i % every != 0).then_some(half_window))
                .collect(),
        };
        Ok(ModernBertShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            vocab: self.vocab_size,
            max_positions: self.max_position_embeddings,
            eps: self.norm_eps as f32,
            norm_bias: self.norm_bias,
            attention_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            activation,
            windows,
            global_theta: self
                .theta("full_attention")
                .or(self.global_rope_theta)
                .unwrap_or(160_000.0),
            local_theta: self
                .theta("sliding_attention")
                .or(self.local_rope_theta)
                .unwrap_or(10_000.0),
        })
    }
}
