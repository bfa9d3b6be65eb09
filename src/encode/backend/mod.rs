//! Where encoders compute. Today: vellum's native CPU passes for the BERT family
//! ([`native_bert`]) and ModernBERT ([`native_modernbert`]), chosen by [`Backbone::load`], with
//! their vectorised element-wise kernels ([`vector_math`]); candle (training) and CUDA backends
//! arrive beside them and are chosen by the encoder options' `device`.

#[cfg(feature = "gpu")]
pub mod cuda_bert;
#[cfg(feature = "gpu")]
pub mod cuda_clip;
#[cfg(feature = "gpu")]
pub mod cuda_modernbert;
#[cfg(feature = "gpu")]
pub mod cuda_ops;
pub mod native_bert;
pub mod native_clip;
pub mod native_modernbert;
pub mod vector_math;

use self::native_bert::NativeBert;
use self::native_modernbert::NativeModernBert;
use crate::encode::models::Architecture;
use crate::encode::pooling::pool;
use crate::encode::source::ModelDir;
use crate::error::{Error, Result};
use crate::meta::encoder::{ComputeType, DeviceSpec, Pooling};

/// A transformer that turns token ids into token states on the CPU.
pub enum Backbone {
    /// BERT, RoBERTa, XLM-RoBERTa.
    Bert(NativeBert),
    /// ModernBERT.
    ModernBert(NativeModernBert),
    /// BERT, RoBERTa, XLM-RoBERTa on an NVIDIA GPU.
    #[cfg(feature = "gpu")]
    CudaBert(cuda_bert::CudaBert),
    /// ModernBERT on an NVIDIA GPU.
    #[cfg(feature = "gpu")]
    CudaModernBert(cuda_modernbert::CudaModernBert),
}

impl Backbone {
    /// Reads `dir`'s `model.safetensors` for `architecture`, weights rounded to `dtype`, for
    /// `device` (the CPU, or a CUDA GPU with the `cuda` feature).
    pub fn load(
        dir: &ModelDir,
        architecture: &Architecture,
        dtype: ComputeType,
        device: DeviceSpec,
    ) -> Result<Self> {
        let path = dir.dir.join("model.safetensors");
        let weights = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok(match (architecture, device) {
            (Architecture::Bert { shape, .. }, DeviceSpec::Cpu) => {
                Backbone::Bert(NativeBert::load(dir, &weights, *shape, dtype)?)
            }
            (Architecture::ModernBert { shape, .. }, DeviceSpec::Cpu) => {
                Backbone::ModernBert(NativeModernBert::load(dir, &weights, shape.clone(), dtype)?)
            }
            #[cfg(feature = "gpu")]
            (Architecture::Bert { shape, .. }, DeviceSpec::Cuda(n)) => {
                // Read, checked and rounded to `dtype` as for the CPU, then copied.
                cuda_bert::CudaBert::check_dtype(dtype)?;
                let native = NativeBert::load(dir, &weights, *shape, dtype)?;
                Backbone::CudaBert(cuda_bert::CudaBert::new(&native, n, dtype)?)
            }
            #[cfg(feature = "gpu")]
            (Architecture::ModernBert { shape, .. }, DeviceSpec::Cuda(n)) => {
                cuda_bert::CudaBert::check_dtype(dtype)?;
                let native = NativeModernBert::load(dir, &weights, shape.clone(), dtype)?;
                Backbone::CudaModernBert(cuda_modernbert::CudaModernBert::new(&native, n, dtype)?)
            }
            #[cfg(not(feature = "gpu"))]
            (_, DeviceSpec::Cuda(n)) => {
                return Err(Error::FeatureDisabled {
                    what: format!("device cuda:{n}"),
                    feature: "cuda",
                })
            }
        })
    }

    /// Token states of packed `seqs`; text `i` attends to its first `keys[i]` tokens (all when
    /// `None`). See [`NativeBert::forward_with_keys`].
    pub fn forward_with_keys(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        Ok(match self {
            Backbone::Bert(m) => m.forward_with_keys(seqs, keys),
            Backbone::ModernBert(m) => m.forward_with_keys(seqs, keys),
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(m) => m.forward_with_keys(seqs, keys)?,
            #[cfg(feature = "gpu")]
            Backbone::CudaModernBert(m) => m.forward_with_keys(seqs, keys)?,
        })
    }

    /// One pooled vector per text of `seqs` (`seqs.len() × hidden` values, row-major; every
    /// token attends to every token of its text). On a GPU the pooling runs there, so only these
    /// values leave the device; on the CPU it is [`crate::encode::pooling::pool`] over
    /// [`Backbone::forward_with_keys`]'s states.
    pub fn forward_pooled(&self, seqs: &[&[u32]], pooling: Pooling) -> Result<Vec<f32>> {
        match self {
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(m) => m.forward_pooled(seqs, pooling),
            #[cfg(feature = "gpu")]
            Backbone::CudaModernBert(m) => m.forward_pooled(seqs, pooling),
            _ => {
                let (states, starts) = self.forward_with_keys(seqs, None)?;
                let h = self.hidden();
                let mut out = vec![0f32; seqs.len() * h];
                for ((s, &s0), dst) in seqs.iter().zip(&starts).zip(out.chunks_exact_mut(h)) {
                    let rows = &states[s0 * h..(s0 + s.len()) * h];
                    pool(rows, s.len(), h, pooling, dst);
                }
                Ok(out)
            }
        }
    }

    /// Whether the model runs on a GPU (where several threads may queue passes at once, so one
    /// thread's host work overlaps another's device work).
    pub fn on_gpu(&self) -> bool {
        match self {
            Backbone::Bert(_) | Backbone::ModernBert(_) => false,
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(_) | Backbone::CudaModernBert(_) => true,
        }
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.hidden(),
            Backbone::ModernBert(m) => m.hidden(),
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(m) => m.hidden(),
            #[cfg(feature = "gpu")]
            Backbone::CudaModernBert(m) => m.hidden(),
        }
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.vocab(),
            Backbone::ModernBert(m) => m.vocab(),
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(m) => m.vocab(),
            #[cfg(feature = "gpu")]
            Backbone::CudaModernBert(m) => m.vocab(),
        }
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        match self {
            Backbone::Bert(m) => m.max_tokens(),
            Backbone::ModernBert(m) => m.max_tokens(),
            #[cfg(feature = "gpu")]
            Backbone::CudaBert(m) => m.max_tokens(),
            #[cfg(feature = "gpu")]
            Backbone::CudaModernBert(m) => m.max_tokens(),
        }
    }
}
