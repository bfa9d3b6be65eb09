//! The BERT family (BERT, RoBERTa, XLM-RoBERTa) on an NVIDIA GPU (feature `cuda`): the same pass
//! as [`super::native_bert`] — packed texts, no padding — with cuBLAS for the linear layers and
//! `kernels.cu` for the rest (embeddings + layer norm, bias + residual + layer norm, bias +
//! activation, multi-head attention over each text's keys). Activations stay f32; with `dtype`
//! f16 or bf16 the weights are stored in that type and each linear layer's input is rounded to
//! it, so the products run on tensor cores with f32 accumulation. Weights are read by
//! [`NativeBert::load`] with the same `dtype` (the same checks, every tensor rounded as on the
//! CPU) and copied to the device once. f16 activations above ±65,504 become infinite, as in any
//! f16 inference; bf16 has f32's range.
//!
//! Source of the architecture: Devlin et al. 2019 (BERT) and Hugging Face `transformers`'
//! `BertModel`, whose outputs the CPU pass matches; the GPU pass is checked against the CPU pass
//! (`tests/integration/gpu.rs`).

use cudarc::driver::CudaSlice;

use super::cuda_ops::{Act, DevLinear, DevNorm, DevicePass, Ops, Packing};
use super::native_bert::{pack, Mask, NativeBert};
use crate::encode::models::bert::BertShape;
use crate::error::Result;
use crate::meta::encoder::{ComputeType, Pooling};

struct DevLayer {
    qkv: DevLinear,
    attn_out: DevLinear,
    norm1: DevNorm,
    up: DevLinear,
    down: DevLinear,
    norm2: DevNorm,
}

/// A BERT encoder's weights on a GPU, ready for [`CudaBert::forward_with_keys`].
pub struct CudaBert {
    ops: Ops,
    shape: BertShape,
    word: CudaSlice<f32>,
    position: CudaSlice<f32>,
    type0: CudaSlice<f32>,
    emb_norm: DevNorm,
    layers: Vec<DevLayer>,
}

impl CudaBert {
    /// Refuses a `dtype` without a GPU path (int8) before any weight is read.
    pub fn check_dtype(dtype: ComputeType) -> Result<()> {
        Ops::device_type(dtype).map(|_| ())
    }

    /// Copies `native`'s weights (loaded with the same `dtype`, so every tensor is rounded as
    /// the CPU rounds it) to GPU `ordinal`; linear weights are stored in `dtype`.
    pub fn new(native: &NativeBert, ordinal: usize, dtype: ComputeType) -> Result<Self> {
        let ops = Ops::new(ordinal, dtype)?;
        let layers = native
            .layers
            .iter()
            .map(|l| {
                Ok(DevLayer {
                    qkv: ops.linear_weights(&l.qkv)?,
                    attn_out: ops.linear_weights(&l.attn_out)?,
                    norm1: ops.norm(&l.norm1)?,
                    up: ops.linear_weights(&l.up)?,
                    down: ops.linear_weights(&l.down)?,
                    norm2: ops.norm(&l.norm2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let g = &ops.gpu;
        Ok(CudaBert {
            shape: native.shape,
            word: g.upload(&native.word)?,
            position: g.upload(&native.position)?,
            type0: g.upload(&native.token_type0)?,
            emb_norm: ops.norm(&native.emb_norm)?,
            layers,
            ops,
        })
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.shape.hidden
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.shape.vocab
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        self.shape.max_positions - self.shape.position_offset
    }

    /// [`NativeBert::forward_with_keys`] on the GPU: the last hidden states of every token,
    /// packed, and each text's first row.
    pub fn forward_with_keys(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        self.states(seqs, keys)
    }

    /// One vector per text (`seqs.len() × hidden` values), pooled on the device, so only those
    /// leave it.
    pub fn forward_pooled(&self, seqs: &[&[u32]], pooling: Pooling) -> Result<Vec<f32>> {
        self.pooled(seqs, pooling)
    }
}

impl DevicePass for CudaBert {
    fn ops(&self) -> &Ops {
        &self.ops
    }

    fn width(&self) -> usize {
        self.shape.hidden
    }

    fn run(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> Result<(CudaSlice<f32>, Packing, Vec<usize>, usize)> {
        let (keys, starts, total) = pack(seqs, keys, self.max_tokens(), self.shape.vocab);
        let (o, h, inter) = (&self.ops, self.shape.hidden, self.shape.intermediate);
        let g = &o.gpu;
        let mut ids = Vec::with_capacity(total);
        let mut pos = Vec::with_capacity(total);
        for s in seqs {
            ids.extend_from_slice(s);
            pos.extend((0..s.len()).map(|p| (p + self.shape.position_offset) as u32));
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let packing = o.packing(&lens, Some(&keys))?;
        let (ids, pos) = (g.upload_staged(&ids)?, g.upload_staged(&pos)?);
        let mut x = g.zeros::<f32>(total * h)?;
        let mut qkv = g.zeros::<f32>(total * 3 * h)?;
        let mut ctx = g.zeros::<f32>(total * h)?;
        let mut y = g.zeros::<f32>(total * h)?;
        let mut tmp = g.zeros::<f32>(total * h)?;
        let mut ff = g.zeros::<f32>(total * inter)?;
        let mut half = o.half_scratch(total * inter.max(h))?;
        let norm = (h, self.shape.eps);
        o.embed_ln(
            &ids,
            &pos,
            (&self.word, &self.position, &self.type0),
            &self.emb_norm,
            norm,
            total,
            &mut x,
        )?;
        let act = Act::from(self.shape.activation);
        for l in &self.layers {
            o.linear(&l.qkv, &x, total, &mut half, &mut qkv)?;
            o.bias_act(&mut qkv, &l.qkv.bias, total * 3 * h, 3 * h, Act::None)?;
            o.attention(&qkv, &packing, (h, self.shape.heads), Mask::Full, &mut ctx)?;
            o.linear(&l.attn_out, &ctx, total, &mut half, &mut tmp)?;
            o.residual_ln(&tmp, &l.attn_out.bias, &x, &l.norm1, norm, total, &mut y)?;
            o.linear(&l.up, &y, total, &mut half, &mut ff)?;
            o.bias_act(&mut ff, &l.up.bias, total * inter, inter, act)?;
            o.linear(&l.down, &ff, total, &mut half, &mut tmp)?;
            o.residual_ln(&tmp, &l.down.bias, &y, &l.norm2, norm, total, &mut x)?;
        }
        Ok((x, packing, starts, total))
    }
}
