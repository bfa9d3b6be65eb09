//! Where encoders compute. Today: vellum's native CPU passes for the BERT family
//! ([`native_bert`]) and ModernBERT ([`native_modernbert`]), chosen by [`Backbone::load`], with
//! their vectorised element-wise kernels ([`vector_math`]); candle (training) and CUDA backends
//! arrive beside them and are chosen by the encoder options' `device`.

pub mod native_bert;
pub mod native_clip;
pub mod native_modernbert;
pub mod vector_math;

use self::native_bert::NativeBert;
use self::native_modernbert::NativeModernBert;
use crate::encode::models::Architecture;
use crate::encode::source::ModelDir;
use crate::error::{Error, Result};
use crate::meta::encoder::ComputeType;

/// A transformer that turns token ids into token states on the CPU.
pub enum Backbone {
    /// BERT, RoBERTa, XLM-RoBERTa.
    Bert(NativeBert),
    /// ModernBERT.
    ModernBert(NativeModernBert),
}

impl Backbone {
    /// Reads `dir`'s `model.safetensors` for `architecture`, weights rounded to `dtype`.
    pub fn load(dir: &ModelDir, architecture: &Architecture, dtype: ComputeType) -> Result<Self> {
        let path = dir.dir.join("model.safetensors");
        let weights = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok(match architecture {
            Architecture::Bert { shape, .. } => {
                Backbone::Bert(NativeBert::load(dir, &weights, *shape, dtype)?)
            }
            Architecture::ModernBert { shape, .. } => {
                Backbone::ModernBert(NativeModernBert::load(dir, &weights, shape.clone(), dtype)?)
            }
        })
    }

    /// Token states of packed `seqs`; text `i` attends to its first `keys[i]` tokens (all when
    /// `None`). See [`NativeBert::forward_with_keys`].
    pub fn forward_with_keys(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> (Vec<f32>, Vec<usize>) {
        match self {
            Backbone::Bert(m) => m.forward_with_keys(seqs, keys),
            Backbone::ModernBert(m) => m.forward_with_keys(seqs, keys),
        }
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.hidden(),
            Backbone::ModernBert(m) => m.hidden(),
        }
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.vocab(),
            Backbone::ModernBert(m) => m.vocab(),
        }
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.max_tokens(),
            Backbone::ModernBert(m) => m.max_tokens(),
        }
    }
}
