//! Model files: one per architecture family, each a serde `Config` with Hugging Face key names and
//! the checks that turn it into what a backend runs: the BERT family ([`bert`]) and ModernBERT
//! ([`modernbert`]); [`Architecture`] picks by `config.json`'s `model_type`.

pub mod bert;
pub mod clip;
pub mod modernbert;

use self::bert::{BertConfig, BertShape};
use self::modernbert::{ModernBertConfig, ModernBertShape};
use crate::encode::source::ModelDir;
use crate::error::Result;

/// `config.json` `model_type`s this build can run.
pub const MODEL_TYPES: [&str; 4] = ["bert", "roberta", "xlm-roberta", "modernbert"];

/// A model folder's architecture with its checked hyper-parameters.
#[derive(Debug, Clone)]
pub enum Architecture {
    /// BERT, RoBERTa, XLM-RoBERTa.
    Bert {
        /// `config.json`.
        config: BertConfig,
        /// Its forward-pass shape.
        shape: BertShape,
    },
    /// ModernBERT.
    ModernBert {
        /// `config.json`.
        config: ModernBertConfig,
        /// Its forward-pass shape.
        shape: ModernBertShape,
    },
}

impl Architecture {
    /// Reads and checks `config.json` of `dir`.
    pub fn from_dir(dir: &ModelDir) -> Result<Self> {
        let json = dir
            .json("config.json")?
            .ok_or_else(|| dir.error("missing config.json"))?;
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if model_type == "modernbert" {
            let config = ModernBertConfig::from_json(dir, json)?;
            let shape = config.shape(dir)?;
            return Ok(Architecture::ModernBert { config, shape });
        }
        if !bert::MODEL_TYPES.contains(&model_type) {
            return Err(dir.error(format!(
                "config.json: model_type {model_type:?} is not supported (this build encodes with: {})",
                MODEL_TYPES.join(", ")
            )));
        }
        let config = BertConfig::from_dir(dir)?;
        let shape = config.shape(dir)?;
        Ok(Architecture::Bert { config, shape })
    }

    /// `config.json`'s `model_type`.
    pub fn model_type(&self) -> &str {
        match self {
            Architecture::Bert { config, .. } => &config.model_type,
            Architecture::ModernBert { .. } => "modernbert",
        }
    }

    /// Hidden size (the token states' width).
    pub fn hidden(&self) -> usize {
        match self {
            Architecture::Bert { shape, .. } => shape.hidden,
            Architecture::ModernBert { shape, .. } => shape.hidden,
        }
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        match self {
            Architecture::Bert { shape, .. } => shape.vocab,
            Architecture::ModernBert { shape, .. } => shape.vocab,
        }
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        match self {
            Architecture::Bert { shape, .. } => shape.max_positions - shape.position_offset,
            Architecture::ModernBert { shape, .. } => shape.max_positions,
        }
    }

    /// The padding token id.
    pub fn pad_id(&self) -> u32 {
        match self {
            Architecture::Bert { config, .. } => config.pad_id(),
            Architecture::ModernBert { config, .. } => config.pad_id(),
        }
    }
}
