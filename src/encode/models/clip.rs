//! CLIP's `config.json` (transformers' `CLIPConfig`: a text tower, a vision tower, their
//! projections) as serde structs with Hugging Face key names and defaults, and the shapes the
//! forward pass (`backend::native_clip`) runs. Radford et al. 2021, "Learning Transferable Visual
//! Models From Natural Language Supervision"; reference implementation: transformers'
//! `models/clip/modeling_clip.py`.

use serde::Deserialize;

use crate::encode::source::ModelDir;
use crate::error::Result;

/// The text tower's `text_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest input in tokens (77).
    pub max_position_embeddings: usize,
    /// `quick_gelu` (OpenAI's) or `gelu`.
    pub hidden_act: String,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// The end-of-text token id; 2 (configs written before transformers PR #24773) means "pool
    /// at the largest id", which is the end token in OpenAI's vocabulary.
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// The vision tower's `vision_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels (3).
    pub num_channels: usize,
    /// `quick_gelu` (OpenAI's) or `gelu`.
    pub hidden_act: String,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            num_channels: 3,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// `config.json` of a CLIP checkpoint (`model_type` `clip`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    #[serde(default)]
    pub text_config: ClipTextConfig,
    /// The vision tower.
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    /// Width of the shared embedding space.
    #[serde(default = "default_projection")]
    pub projection_dim: usize,
}

fn default_projection() -> usize {
    512
}

/// The feed-forward activation of a tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipActivation {
    /// `x · σ(1.702 x)`, OpenAI's CLIP.
    QuickGelu,
    /// `x · Φ(x)` (erf).
    Gelu,
}

/// A tower's shape.
#[derive(Debug, Clone, Copy)]
pub struct TowerShape {
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward size.
    pub intermediate: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Layer-norm epsilon.
    pub eps: f32,
    /// Feed-forward activation.
    pub activation: ClipActivation,
}

impl ClipConfig {
    /// Reads `config.json` of `dir`; `None` when its `model_type` is not `clip`.
    pub fn from_dir(dir: &ModelDir) -> Result<Option<Self>> {
        let Some(json) = dir.json("config.json")? else {
            return Ok(None);
        };
        if json.get("model_type").and_then(|v| v.as_str()) != Some("clip") {
            return Ok(None);
        }
        let config: ClipConfig = serde_json::from_value(json)
            .map_err(|e| dir.error(format!("config.json is not a CLIP configuration: {e}")))?;
        config.check(dir)?;
        Ok(Some(config))
    }

    fn check(&self, dir: &ModelDir) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        for (what, hidden, heads) in [
            ("text_config", t.hidden_size, t.num_attention_heads),
            ("vision_config", v.hidden_size, v.num_attention_heads),
        ] {
            if heads == 0 || hidden == 0 || hidden % heads != 0 {
                return Err(dir.error(format!(
                    "config.json: {what}.hidden_size {hidden} is not a positive multiple of num_attention_heads {heads}"
                )));
            }
        }
        if v.num_channels != 3 {
            return Err(dir.error(format!(
                "config.json: vision_config.num_channels is {}; vellum's image input is RGB (3)",
                v.num_channels
            )));
        }
        if v.patch_size == 0 || v.image_size == 0 || v.image_size % v.patch_size != 0 {
            return Err(dir.error(format!(
                "config.json: vision_config.image_size {} is not a positive multiple of patch_size {}",
                v.image_size, v.patch_size
            )));
        }
        if t.num_hidden_layers == 0 || v.num_hidden_layers < 2 || self.projection_dim == 0 {
            return Err(dir.error(
                "config.json: the towers need layers (the vision tower at least 2, for the penultimate hidden states) and projection_dim must be positive",
            ));
        }
        Ok(())
    }

    fn activation(dir: &ModelDir, name: &str) -> Result<ClipActivation> {
        match name {
            "quick_gelu" => Ok(ClipActivation::QuickGelu),
            "gelu" => Ok(ClipActivation::Gelu),
            other => Err(dir.error(format!(
                "config.json: hidden_act {other:?} is not supported for CLIP (quick_gelu, gelu)"
            ))),
        }
    }

    /// The text tower's shape.
    pub fn text_shape(&self, dir: &ModelDir) -> Result<TowerShape> {
        let t = &self.text_config;
        Ok(TowerShape {
            hidden: t.hidden_size,
            heads: t.num_attention_heads,
            intermediate: t.intermediate_size,
            layers: t.num_hidden_layers,
            eps: t.layer_norm_eps as f32,
            activation: Self::activation(dir, &t.hidden_act)?,
        })
    }

    /// The vision tower's shape.
    pub fn vision_shape(&self, dir: &ModelDir) -> Result<TowerShape> {
        let v = &self.vision_config;
        Ok(TowerShape {
            hidden: v.hidden_size,
            heads: v.num_attention_heads,
            intermediate: v.intermediate_size,
            layers: v.num_hidden_layers,
            eps: v.layer_norm_eps as f32,
            activation: Self::activation(dir, &v.hidden_act)?,
        })
    }

    /// Patches per image (`(image_size / patch_size)²`).
    pub fn patches(&self) -> usize {
        let g = self.vision_config.image_size / self.vision_config.patch_size;
        g * g
    }
}
