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

use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use parking_lot::Mutex;

use super::native_bert::{pack, Linear, NativeBert, Norm};
use crate::encode::models::bert::{Activation, BertShape};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuType};
use crate::meta::encoder::ComputeType;

/// Threads per block of the row kernels.
const ROW_THREADS: u32 = 128;

struct DevLinear {
    /// `[out, in]` in the device type, as bytes.
    weight: CudaSlice<u8>,
    bias: CudaSlice<f32>,
    out: usize,
    inp: usize,
}

struct DevNorm {
    gamma: CudaSlice<f32>,
    beta: CudaSlice<f32>,
}

struct DevLayer {
    qkv: DevLinear,
    attn_out: DevLinear,
    norm1: DevNorm,
    up: DevLinear,
    down: DevLinear,
    norm2: DevNorm,
}

struct Kernels {
    embed_ln: CudaFunction,
    bias_residual_ln: CudaFunction,
    bias_act: CudaFunction,
    attention: CudaFunction,
    to_half: CudaFunction,
}

/// A BERT encoder's weights on a GPU, ready for [`CudaBert::forward_with_keys`].
pub struct CudaBert {
    gpu: Arc<Gpu>,
    dtype: GpuType,
    shape: BertShape,
    word: CudaSlice<f32>,
    position: CudaSlice<f32>,
    type0: CudaSlice<f32>,
    emb_norm: DevNorm,
    layers: Vec<DevLayer>,
    k: Kernels,
    /// One pass at a time: the device's single stream and its buffers.
    busy: Mutex<()>,
}

impl CudaBert {
    /// The device type of `dtype`, or the error that `dtype` has no GPU path (int8).
    pub fn check_dtype(dtype: ComputeType) -> Result<GpuType> {
        match dtype {
            ComputeType::F32 => Ok(GpuType::F32),
            ComputeType::F16 => Ok(GpuType::F16),
            ComputeType::Bf16 => Ok(GpuType::Bf16),
            ComputeType::Int8 => Err(Error::parameter(
                "dtype",
                "int8 is a CPU path (AVX2 / AVX-512 VNNI integer products); on a GPU use f16 or bf16",
            )),
        }
    }

    /// Copies `native`'s weights (loaded with the same `dtype`, so every tensor is rounded as
    /// the CPU rounds it) to GPU `ordinal`; linear weights are stored in `dtype`.
    pub fn new(native: &NativeBert, ordinal: usize, dtype: ComputeType) -> Result<Self> {
        let t = Self::check_dtype(dtype)?;
        let gpu = Gpu::open(ordinal)?;
        let linear = |l: &Linear| -> Result<DevLinear> {
            let mut bytes = Vec::new();
            match t {
                GpuType::F32 => bytes.extend_from_slice(bytemuck::cast_slice(&l.weight)),
                GpuType::F16 => bytes.extend(
                    l.weight
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()),
                ),
                GpuType::Bf16 => bytes.extend(
                    l.weight
                        .iter()
                        .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes()),
                ),
            }
            let bias = if l.bias.is_empty() {
                vec![0.0; l.out]
            } else {
                l.bias.clone()
            };
            Ok(DevLinear {
                weight: gpu.upload(&bytes)?,
                bias: gpu.upload(&bias)?,
                out: l.out,
                inp: l.inp,
            })
        };
        let norm = |n: &Norm| -> Result<DevNorm> {
            Ok(DevNorm {
                gamma: gpu.upload(&n.gamma)?,
                beta: gpu.upload(&n.beta)?,
            })
        };
        let layers = native
            .layers
            .iter()
            .map(|l| {
                Ok(DevLayer {
                    qkv: linear(&l.qkv)?,
                    attn_out: linear(&l.attn_out)?,
                    norm1: norm(&l.norm1)?,
                    up: linear(&l.up)?,
                    down: linear(&l.down)?,
                    norm2: norm(&l.norm2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CudaBert {
            dtype: t,
            shape: native.shape,
            word: gpu.upload(&native.word)?,
            position: gpu.upload(&native.position)?,
            type0: gpu.upload(&native.token_type0)?,
            emb_norm: norm(&native.emb_norm)?,
            layers,
            k: Kernels {
                embed_ln: gpu.function("embed_ln")?,
                bias_residual_ln: gpu.function("bias_residual_ln")?,
                bias_act: gpu.function("bias_act")?,
                attention: gpu.function("attention")?,
                to_half: gpu.function("to_half")?,
            },
            gpu,
            busy: Mutex::new(()),
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
        let (keys, starts, total) = pack(seqs, keys, self.max_tokens(), self.shape.vocab);
        let _busy = self.busy.lock();
        let (g, h, inter) = (&self.gpu, self.shape.hidden, self.shape.intermediate);
        let mut ids = Vec::with_capacity(total);
        let mut pos = Vec::with_capacity(total);
        let mut tok_seq = Vec::with_capacity(total);
        for (i, s) in seqs.iter().enumerate() {
            ids.extend_from_slice(s);
            pos.extend((0..s.len()).map(|p| (p + self.shape.position_offset) as u32));
            tok_seq.extend(std::iter::repeat_n(i as u32, s.len()));
        }
        let to_u32 = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
        let longest = keys.iter().copied().max().unwrap_or(1);
        let (ids, pos, tok_seq) = (g.upload(&ids)?, g.upload(&pos)?, g.upload(&tok_seq)?);
        let (seq_start, seq_keys) = (g.upload(&to_u32(&starts))?, g.upload(&to_u32(&keys))?);
        let mut x = g.zeros::<f32>(total * h)?;
        let mut qkv = g.zeros::<f32>(total * 3 * h)?;
        let mut ctx = g.zeros::<f32>(total * h)?;
        let mut y = g.zeros::<f32>(total * h)?;
        let mut tmp = g.zeros::<f32>(total * h)?;
        let mut ff = g.zeros::<f32>(total * inter)?;
        let mut half = g.zeros::<u16>(match self.dtype {
            GpuType::F32 => 1,
            _ => total * inter.max(3 * h).max(h),
        })?;
        let rows = |n: usize, shared: usize| LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let (hi, eps) = (h as i32, self.shape.eps);
        {
            let mut l = g.stream().launch_builder(&self.k.embed_ln);
            l.arg(&ids)
                .arg(&pos)
                .arg(&self.word)
                .arg(&self.position)
                .arg(&self.type0)
                .arg(&self.emb_norm.gamma)
                .arg(&self.emb_norm.beta)
                .arg(&hi)
                .arg(&eps)
                .arg(&mut x);
            // SAFETY: arguments match `embed_ln`; ids are below the vocabulary and positions
            // below the table's rows (`pack` checked them); x holds total·h values.
            unsafe { l.launch(rows(total, h * 4)) }.map_err(|e| g.error("kernel embed_ln", e))?;
        }
        let act = match self.shape.activation {
            Activation::GeluErf => 1i32,
            Activation::GeluTanh => 2,
            Activation::Relu => 3,
        };
        let heads = self.shape.heads as i32;
        let scale = 1.0 / ((h / self.shape.heads) as f32).sqrt();
        for layer in &self.layers {
            self.linear(&layer.qkv, &x, total, &mut half, &mut qkv)?;
            self.bias_act(&mut qkv, &layer.qkv.bias, total * 3 * h, 3 * h, 0)?;
            {
                let mut l = g.stream().launch_builder(&self.k.attention);
                l.arg(&qkv)
                    .arg(&tok_seq)
                    .arg(&seq_start)
                    .arg(&seq_keys)
                    .arg(&hi)
                    .arg(&heads)
                    .arg(&scale)
                    .arg(&mut ctx);
                let cfg = LaunchConfig {
                    grid_dim: (total as u32, self.shape.heads as u32, 1),
                    block_dim: (ROW_THREADS, 1, 1),
                    shared_mem_bytes: (longest * 4) as u32,
                };
                // SAFETY: arguments match `attention`; every text's rows and key counts lie
                // within the packed batch (`pack`); the shared buffer holds the longest text's
                // key count.
                unsafe { l.launch(cfg) }.map_err(|e| g.error("kernel attention", e))?;
            }
            self.linear(&layer.attn_out, &ctx, total, &mut half, &mut tmp)?;
            self.residual_ln(&tmp, &layer.attn_out.bias, &x, &layer.norm1, total, &mut y)?;
            self.linear(&layer.up, &y, total, &mut half, &mut ff)?;
            self.bias_act(&mut ff, &layer.up.bias, total * inter, inter, act)?;
            self.linear(&layer.down, &ff, total, &mut half, &mut tmp)?;
            self.residual_ln(&tmp, &layer.down.bias, &y, &layer.norm2, total, &mut x)?;
        }
        let mut out = g.download(&x)?;
        out.truncate(total * h);
        Ok((out, starts))
    }

    /// `out = input · Wᵀ` (no bias) for `rows` rows.
    fn linear(
        &self,
        l: &DevLinear,
        input: &CudaSlice<f32>,
        rows: usize,
        half: &mut CudaSlice<u16>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let g = &self.gpu;
        let s = g.stream();
        if self.dtype != GpuType::F32 {
            let n = (rows * l.inp) as i64;
            let kind = (self.dtype == GpuType::Bf16) as i32;
            let mut b = s.launch_builder(&self.k.to_half);
            b.arg(input).arg(&mut *half).arg(&n).arg(&kind);
            // SAFETY: arguments match `to_half`; input and half hold at least n values.
            unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }
                .map_err(|e| g.error("kernel to_half", e))?;
        }
        let (pa, _ga) = l.weight.device_ptr(s);
        let (pb, _gb) = match self.dtype {
            GpuType::F32 => input.device_ptr(s),
            _ => half.device_ptr(s),
        };
        let (pc, _gc) = out.device_ptr_mut(s);
        // SAFETY: the weight holds out·in values of the device type, the input rows·in, the
        // output rows·out f32 (allocated by `forward_with_keys` for the batch).
        unsafe { g.gemm_nt(pa, pb, pc, l.out, rows, l.inp, self.dtype, false) }
    }

    fn bias_act(
        &self,
        x: &mut CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        total: usize,
        n: usize,
        act: i32,
    ) -> Result<()> {
        let g = &self.gpu;
        let (total64, n32) = (total as i64, n as i32);
        let mut b = g.stream().launch_builder(&self.k.bias_act);
        b.arg(x).arg(bias).arg(&total64).arg(&n32).arg(&act);
        // SAFETY: arguments match `bias_act`; x holds `total` values, bias `n`.
        unsafe { b.launch(LaunchConfig::for_num_elems(total as u32)) }
            .map(|_| ())
            .map_err(|e| g.error("kernel bias_act", e))
    }

    fn residual_ln(
        &self,
        input: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        residual: &CudaSlice<f32>,
        norm: &DevNorm,
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let g = &self.gpu;
        let (h, eps) = (self.shape.hidden as i32, self.shape.eps);
        let mut b = g.stream().launch_builder(&self.k.bias_residual_ln);
        b.arg(input)
            .arg(bias)
            .arg(residual)
            .arg(&norm.gamma)
            .arg(&norm.beta)
            .arg(&h)
            .arg(&eps)
            .arg(out);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: (self.shape.hidden * 4) as u32,
        };
        // SAFETY: arguments match `bias_residual_ln`; every buffer holds rows·h values.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| g.error("kernel bias_residual_ln", e))
    }
}
