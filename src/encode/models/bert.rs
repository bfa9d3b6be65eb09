//! The BERT family (BERT, RoBERTa, XLM-RoBERTa) as a model file: its Hugging Face `config.json`
//! as a serde [`BertConfig`] (transformers' key names), checked and turned into the [`BertShape`]
//! the forward pass needs. The forward pass itself is a backend's (`backend/native_bert.rs`, the
//! CPU pass).
//!
//! Source: transformers' `BertConfig` / `RobertaConfig` (`modeling_bert.py`,
//! `modeling_roberta.py`); RoBERTa numbers positions from `pad_token_id + 1`
//! (`create_position_ids_from_input_ids`).

use serde::Deserialize;

use crate::encode::source::ModelDir;
use crate::error::Result;

/// `config.json` `model_type`s of the BERT family.
pub const MODEL_TYPES: [&str; 3] = ["bert", "roberta", "xlm-roberta"];

/// Prefixes under which BERT-family checkpoints store the encoder's tensors (none, or the
/// task model's base-model attribute), tried in this order.
pub const WEIGHT_PREFIXES: [&str; 4] = ["", "bert.", "roberta.", "model."];

/// The keys of a BERT-family `config.json` that vellum reads (others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// `bert`, `roberta` or `xlm-roberta`.
    #[serde(default)]
    pub model_type: String,
    /// Hidden size.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Layer-norm epsilon (default 1e-12).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Feed-forward activation (default `gelu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// The padding token.
    #[serde(default)]
    pub pad_token_id: Option<u64>,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x·Φ(x)` with the exact (erf) normal CDF, BERT's `gelu`.
    GeluErf,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

/// The hyper-parameters the forward pass needs (from `config.json`).
#[derive(Debug, Clone, Copy)]
pub struct BertShape {
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward size.
    pub intermediate: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Rows of the position-embedding table.
    pub max_positions: usize,
    /// Position of a text's first token in that table: 0 for BERT; `pad_token_id + 1` for
    /// RoBERTa-style models, which number positions after the padding index.
    pub position_offset: usize,
    /// Layer-norm epsilon.
    pub eps: f32,
    /// Feed-forward activation.
    pub activation: Activation,
}

impl BertConfig {
    /// Reads and checks `config.json` of the model folder `dir`.
    pub fn from_dir(dir: &ModelDir) -> Result<Self> {
        let json = dir
            .json("config.json")?
            .ok_or_else(|| dir.error("missing config.json"))?;
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if !MODEL_TYPES.contains(&model_type) {
            return Err(dir.error(format!(
                "config.json: model_type {model_type:?} is not supported (this build encodes with: {})",
                super::MODEL_TYPES.join(", ")
            )));
        }
        serde_json::from_value(json).map_err(|e| dir.error(format!("config.json: {e}")))
    }

    /// The padding token id (0 when the config does not say).
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id.unwrap_or(0) as u32
    }

    /// The forward pass's hyper-parameters, or an error naming the unsupported setting.
    pub fn shape(&self, dir: &ModelDir) -> Result<BertShape> {
        let activation = match self.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "geluapproximate" => {
                Activation::GeluTanh
            }
            "relu" => Activation::Relu,
            other => {
                return Err(dir.error(format!(
                    "config.json: hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                )))
            }
        };
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                return Err(dir.error(format!(
                    "config.json: position_embedding_type {p:?} is not supported (absolute)"
                )));
            }
        }
        let position_offset = match self.model_type.as_str() {
            "roberta" | "xlm-roberta" => self.pad_token_id.unwrap_or(1) as usize + 1,
            _ => 0,
        };
        if position_offset + 2 > self.max_position_embeddings {
            return Err(dir.error(
                "config.json: max_position_embeddings is too small for the position offset",
            ));
        }
        Ok(BertShape {
            position_offset,
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            vocab: self.vocab_size,
            max_positions: self.max_position_embeddings,
            eps: self.layer_norm_eps as f32,
            activation,
        })
    }
}
