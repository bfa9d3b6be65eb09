//! ModernBERT on an NVIDIA GPU (feature `cuda`): the pass of [`super::native_modernbert`] —
//! packed texts, pre-norm layers, rotary positions, GeGLU, alternating global and windowed
//! (local) attention, a final layer norm — with cuBLAS for the linear layers and `kernels.cu`
//! for the rest (`embed_ln` with a zero position table, `layer_norm`, `rotary`, `attention`
//! with a window, `geglu`, `residual_add`). Activations stay f32; f16 / bf16 weights and
//! rounded linear inputs as in [`super::cuda_bert`]. Weights are read by
//! [`NativeModernBert::load`] with the same `dtype` and copied to the device once.
//!
//! Source of the architecture: Warner et al. 2024 ("Smarter, Better, Faster, Longer", the
//! ModernBERT paper) and Hugging Face `transformers`' `ModernBertModel`, whose outputs the CPU
//! pass matches; the GPU pass is checked against the CPU pass (`tests/integration/gpu.rs`).

use super::cuda_ops::{Act, DevLinear, DevNorm, DevicePass, Ops, Packing};
use super::native_bert::{pack, Mask};
use super::native_modernbert::NativeModernBert;
use crate::encode::models::modernbert::ModernBertShape;
use crate::error::Result;
use crate::meta::encoder::{ComputeType, Pooling};
use cudarc::driver::CudaSlice;

struct DevLayer {
    /// `None` in layer 0.
    attn_norm: Option<DevNorm>,
    qkv: DevLinear,
    attn_out: DevLinear,
    mlp_norm: DevNorm,
    wi: DevLinear,
    wo: DevLinear,
    window: Option<usize>,
}

/// A ModernBERT encoder's weights on a GPU, ready for [`CudaModernBert::forward_with_keys`].
pub struct CudaModernBert {
    ops: Ops,
    shape: ModernBertShape,
    word: CudaSlice<f32>,
    /// One zero row: the embeddings have no position or token-type table.
    zeros: CudaSlice<f32>,
    emb_norm: DevNorm,
    layers: Vec<DevLayer>,
    final_norm: DevNorm,
    /// Rotary frequencies of global and local layers.
    inv_freq: [CudaSlice<f32>; 2],
}

impl CudaModernBert {
    /// Copies `native`'s weights (loaded with the same `dtype`) to GPU `ordinal`; linear
    /// weights are stored in `dtype`.
    pub fn new(native: &NativeModernBert, ordinal: usize, dtype: ComputeType) -> Result<Self> {
        let ops = Ops::new(ordinal, dtype)?;
        let layers = native
            .layers
            .iter()
            .map(|l| {
                Ok(DevLayer {
                    attn_norm: l.attn_norm.as_ref().map(|n| ops.norm(n)).transpose()?,
                    qkv: ops.linear_weights(&l.qkv)?,
                    attn_out: ops.linear_weights(&l.attn_out)?,
                    mlp_norm: ops.norm(&l.mlp_norm)?,
                    wi: ops.linear_weights(&l.wi)?,
                    wo: ops.linear_weights(&l.wo)?,
                    window: l.window,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let g = &ops.gpu;
        Ok(CudaModernBert {
            shape: native.shape.clone(),
            word: g.upload(&native.word)?,
            zeros: g.upload(&vec![0f32; native.shape.hidden])?,
            emb_norm: ops.norm(&native.emb_norm)?,
            final_norm: ops.norm(&native.final_norm)?,
            inv_freq: [
                g.upload(&native.inv_freq[0])?,
                g.upload(&native.inv_freq[1])?,
            ],
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
        self.shape.max_positions
    }

    /// [`NativeModernBert::forward_with_keys`] on the GPU: the final-normed states of every
    /// token, packed, and each text's first row.
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

impl DevicePass for CudaModernBert {
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
        let heads = self.shape.heads;
        let g = &o.gpu;
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let pos: Vec<u32> = seqs.iter().flat_map(|s| 0..s.len() as u32).collect();
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let packing = o.packing(&lens, Some(&keys))?;
        let (ids, pos) = (g.upload_staged(&ids)?, g.upload_staged(&pos)?);
        let zero_pos = g.zeros::<u32>(total)?;
        let mut x = g.zeros::<f32>(total * h)?;
        let mut y = g.zeros::<f32>(total * h)?;
        let mut qkv = g.zeros::<f32>(total * 3 * h)?;
        let mut ctx = g.zeros::<f32>(total * h)?;
        let mut tmp = g.zeros::<f32>(total * h)?;
        let mut wi = g.zeros::<f32>(total * 2 * inter)?;
        let mut ff = g.zeros::<f32>(total * inter)?;
        let mut half = o.half_scratch(total * inter.max(h))?;
        let norm = (h, self.shape.eps);
        o.embed_ln(
            &ids,
            &zero_pos,
            (&self.word, &self.zeros, &self.zeros),
            &self.emb_norm,
            norm,
            total,
            &mut x,
        )?;
        let act = Act::from(self.shape.activation);
        for l in &self.layers {
            // qkv = LN_attn(x)·Wqkvᵀ + b (layer 0: x itself), rotated.
            let input = match &l.attn_norm {
                Some(n) => {
                    o.layer_norm(&x, n, norm, total, &mut y)?;
                    &y
                }
                None => &x,
            };
            o.linear(&l.qkv, input, total, &mut half, &mut qkv)?;
            o.bias_act(&mut qkv, &l.qkv.bias, total * 3 * h, 3 * h, Act::None)?;
            let freq = &self.inv_freq[usize::from(l.window.is_some())];
            o.rotary(&mut qkv, &pos, freq, total, (h, heads))?;
            let mask = l.window.map_or(Mask::Full, Mask::Window);
            o.attention(&qkv, &packing, (h, heads), mask, &mut ctx)?;
            // x += ctx·Woᵀ + b
            o.linear(&l.attn_out, &ctx, total, &mut half, &mut tmp)?;
            o.residual_add(&mut x, &tmp, &l.attn_out.bias, total * h, h)?;
            // x += (act(a) ⊙ g)·Wo'ᵀ + b, [a, g] = LN_mlp(x)·Wiᵀ + b
            o.layer_norm(&x, &l.mlp_norm, norm, total, &mut y)?;
            o.linear(&l.wi, &y, total, &mut half, &mut wi)?;
            o.geglu(&wi, &l.wi.bias, (total, inter), act, &mut ff)?;
            o.linear(&l.wo, &ff, total, &mut half, &mut tmp)?;
            o.residual_add(&mut x, &tmp, &l.wo.bias, total * h, h)?;
        }
        o.layer_norm(&x, &self.final_norm, norm, total, &mut y)?;
        Ok((y, packing, starts, total))
    }
}
