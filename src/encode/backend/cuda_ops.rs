//! The transformer pieces the GPU encoders share (feature `cuda`): weights on the device, and
//! the steps of a layer over packed f32 activations (a row per token, no padding) — linear
//! layers by cuBLAS (inputs rounded to the weights' type for f16 / bf16: tensor cores with f32
//! accumulation), and `kernels.cu`'s row kernels. [`super::cuda_bert`] (post-norm BERT layers)
//! and [`super::cuda_clip`] (pre-norm CLIP layers) are built from them.

use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};

use super::native_bert::{Linear, Mask, Norm};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuType};
use crate::meta::encoder::{ComputeType, Pooling};

/// Threads per block of the row kernels.
const ROW_THREADS: u32 = 128;

/// A linear layer on the device.
pub(super) struct DevLinear {
    /// `[out, in]` in the device type, as bytes.
    weight: CudaSlice<u8>,
    /// `[out]` (zeros for a layer without bias).
    pub(super) bias: CudaSlice<f32>,
    out: usize,
    inp: usize,
}

/// A layer norm's parameters on the device.
pub(super) struct DevNorm {
    gamma: CudaSlice<f32>,
    beta: CudaSlice<f32>,
}

/// Activation functions of `bias_act`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    None = 0,
    GeluErf = 1,
    GeluTanh = 2,
    Relu = 3,
    QuickGelu = 4,
}

impl From<crate::encode::models::bert::Activation> for Act {
    fn from(a: crate::encode::models::bert::Activation) -> Self {
        use crate::encode::models::bert::Activation;
        match a {
            Activation::GeluErf => Act::GeluErf,
            Activation::GeluTanh => Act::GeluTanh,
            Activation::Relu => Act::Relu,
        }
    }
}

struct Kernels {
    embed_ln: CudaFunction,
    layer_norm: CudaFunction,
    bias_residual_ln: CudaFunction,
    residual_add: CudaFunction,
    bias_act: CudaFunction,
    geglu: CudaFunction,
    rotary: CudaFunction,
    attention: CudaFunction,
    to_half: CudaFunction,
    pool_rows: CudaFunction,
}

/// A device, the type of its weights, and the kernels.
pub(super) struct Ops {
    pub(super) gpu: Arc<Gpu>,
    pub(super) dtype: GpuType,
    k: Kernels,
}

/// A transformer's pass on the device, as the GPU encoders run it: [`DevicePass::run`] queues
/// it, and the provided methods bring back every token's states or one pooled vector per text.
pub(super) trait DevicePass {
    /// The device and its kernels.
    fn ops(&self) -> &Ops;

    /// Values per token state.
    fn width(&self) -> usize;

    /// Queues the pass over packed `seqs` (text `i` attending to its first `keys[i]` tokens);
    /// returns the packed states (on the device), the packing, each text's first row and the
    /// row count. Each call has its own buffers (and cuBLAS is locked per product), so threads
    /// may call it at once: their passes queue on the one stream, and one thread's host work
    /// overlaps another's device work.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> Result<(CudaSlice<f32>, Packing, Vec<usize>, usize)>;

    /// Every token's states, packed, and each text's first row.
    fn states(&self, seqs: &[&[u32]], keys: Option<&[usize]>) -> Result<(Vec<f32>, Vec<usize>)> {
        let (states, _, starts, total) = self.run(seqs, keys)?;
        let out = (self.ops().gpu).download_staged(&states, total * self.width())?;
        Ok((out, starts))
    }

    /// One vector per text (`seqs.len() × width` values), pooled on the device, so only those
    /// leave it.
    fn pooled(&self, seqs: &[&[u32]], pooling: Pooling) -> Result<Vec<f32>> {
        let (states, packing, _, _) = self.run(seqs, None)?;
        self.ops()
            .pool_download(&states, &packing, self.width(), pooling)
    }
}

/// Packed texts or images as the attention kernel reads them.
pub(super) struct Packing {
    /// Text (sequence) of each row.
    tok_seq: CudaSlice<u32>,
    /// First row of each text.
    seq_start: CudaSlice<u32>,
    /// Rows of each text.
    seq_len: CudaSlice<u32>,
    /// Keys each text's rows attend to.
    seq_keys: CudaSlice<u32>,
    /// The largest key count.
    longest: usize,
    /// Texts packed.
    texts: usize,
    /// Rows in all.
    pub(super) rows: usize,
}

impl Packing {
    /// Texts (sequences) packed.
    pub(super) fn texts(&self) -> usize {
        self.texts
    }
}

impl Ops {
    /// The device type of `dtype`, or the error that `dtype` has no GPU path (int8).
    pub(super) fn device_type(dtype: ComputeType) -> Result<GpuType> {
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

    /// Opens GPU `ordinal` for weights of `dtype`.
    pub(super) fn new(ordinal: usize, dtype: ComputeType) -> Result<Ops> {
        let dtype = Self::device_type(dtype)?;
        let gpu = Gpu::open(ordinal)?;
        let f = |n: &str| gpu.function(n);
        Ok(Ops {
            k: Kernels {
                embed_ln: f("embed_ln")?,
                layer_norm: f("layer_norm")?,
                bias_residual_ln: f("bias_residual_ln")?,
                residual_add: f("residual_add")?,
                bias_act: f("bias_act")?,
                geglu: f("geglu")?,
                rotary: f("rotary")?,
                attention: f("attention")?,
                to_half: f("to_half")?,
                pool_rows: f("pool_rows")?,
            },
            dtype,
            gpu,
        })
    }

    /// Copies a linear layer (weights in the device type).
    pub(super) fn linear_weights(&self, l: &Linear) -> Result<DevLinear> {
        let mut bytes = Vec::with_capacity(l.weight.len() * self.dtype.size());
        match self.dtype {
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
            weight: self.gpu.upload(&bytes)?,
            bias: self.gpu.upload(&bias)?,
            out: l.out,
            inp: l.inp,
        })
    }

    /// Copies a layer norm.
    pub(super) fn norm(&self, n: &Norm) -> Result<DevNorm> {
        Ok(DevNorm {
            gamma: self.gpu.upload(&n.gamma)?,
            beta: self.gpu.upload(&n.beta)?,
        })
    }

    /// The attention layout of packed sequences: `lens[i]` rows each, attending to their first
    /// `keys[i]` rows (all when `None`).
    pub(super) fn packing(&self, lens: &[usize], keys: Option<&[usize]>) -> Result<Packing> {
        let g = &self.gpu;
        let mut tok_seq = Vec::new();
        let mut starts = Vec::with_capacity(lens.len());
        for (i, &n) in lens.iter().enumerate() {
            starts.push(tok_seq.len() as u32);
            tok_seq.extend(std::iter::repeat_n(i as u32, n));
        }
        let keys: Vec<u32> = match keys {
            Some(k) => k.iter().map(|&x| x as u32).collect(),
            None => lens.iter().map(|&x| x as u32).collect(),
        };
        let seq_len: Vec<u32> = lens.iter().map(|&n| n as u32).collect();
        Ok(Packing {
            rows: tok_seq.len(),
            seq_len: g.upload_staged(&seq_len)?,
            longest: keys.iter().copied().max().unwrap_or(1) as usize,
            texts: lens.len(),
            tok_seq: g.upload_staged(&tok_seq)?,
            seq_start: g.upload_staged(&starts)?,
            seq_keys: g.upload_staged(&keys)?,
        })
    }

    /// `x[t] = LN(word[ids[t]] + position[pos[t]] + type0)` for every row.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn embed_ln(
        &self,
        ids: &CudaSlice<u32>,
        pos: &CudaSlice<u32>,
        tables: (&CudaSlice<f32>, &CudaSlice<f32>, &CudaSlice<f32>),
        norm: &DevNorm,
        (h, eps): (usize, f32),
        rows: usize,
        x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let hi = h as i32;
        let mut l = self.gpu.stream().launch_builder(&self.k.embed_ln);
        l.arg(ids)
            .arg(pos)
            .arg(tables.0)
            .arg(tables.1)
            .arg(tables.2)
            .arg(&norm.gamma)
            .arg(&norm.beta)
            .arg(&hi)
            .arg(&eps)
            .arg(x);
        // SAFETY: arguments match `embed_ln`; ids and positions index their tables (the caller
        // checked them); x holds rows·h values.
        unsafe { l.launch(Self::rows(rows, h)) }
            .map(|_| ())
            .map_err(|e| self.gpu.error("kernel embed_ln", e))
    }

    fn rows(n: usize, h: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: (h * 4) as u32,
        }
    }

    /// `out = input · Wᵀ` (no bias) for `rows` rows; `half` is scratch for 16-bit inputs
    /// (at least `rows · in` values).
    pub(super) fn linear(
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
            let count = u32::try_from(n).map_err(|_| g.error("to_half", "above 2^32 values"))?;
            let kind = (self.dtype == GpuType::Bf16) as i32;
            let mut b = s.launch_builder(&self.k.to_half);
            b.arg(input).arg(&mut *half).arg(&n).arg(&kind);
            // SAFETY: arguments match `to_half`; input and half hold at least n values.
            unsafe { b.launch(LaunchConfig::for_num_elems(count)) }
                .map_err(|e| g.error("kernel to_half", e))?;
        }
        let (pa, _ga) = l.weight.device_ptr(s);
        let (pb, _gb) = match self.dtype {
            GpuType::F32 => input.device_ptr(s),
            _ => half.device_ptr(s),
        };
        let (pc, _gc) = out.device_ptr_mut(s);
        // SAFETY: the weight holds out·in values of the device type, the input rows·in, the
        // output rows·out f32 (the callers allocate them for the batch).
        unsafe { g.gemm_nt(pa, pb, pc, l.out, rows, l.inp, self.dtype, false) }
    }

    /// `x[i] = act(x[i] + bias[i % n])` over `total` values.
    pub(super) fn bias_act(
        &self,
        x: &mut CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        total: usize,
        n: usize,
        act: Act,
    ) -> Result<()> {
        let g = &self.gpu;
        let (total64, n32, act) = (total as i64, n as i32, act as i32);
        let count = u32::try_from(total).map_err(|_| g.error("bias_act", "above 2^32 values"))?;
        let mut b = g.stream().launch_builder(&self.k.bias_act);
        b.arg(x).arg(bias).arg(&total64).arg(&n32).arg(&act);
        // SAFETY: arguments match `bias_act`; x holds `total` values, bias `n`.
        unsafe { b.launch(LaunchConfig::for_num_elems(count)) }
            .map(|_| ())
            .map_err(|e| g.error("kernel bias_act", e))
    }

    /// `x[i] += input[i] + bias[i % n]` over `total` values.
    pub(super) fn residual_add(
        &self,
        x: &mut CudaSlice<f32>,
        input: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        total: usize,
        n: usize,
    ) -> Result<()> {
        let g = &self.gpu;
        let (total64, n32) = (total as i64, n as i32);
        let count =
            u32::try_from(total).map_err(|_| g.error("residual_add", "above 2^32 values"))?;
        let mut b = g.stream().launch_builder(&self.k.residual_add);
        b.arg(x).arg(input).arg(bias).arg(&total64).arg(&n32);
        // SAFETY: arguments match `residual_add`; x and input hold `total` values, bias `n`.
        unsafe { b.launch(LaunchConfig::for_num_elems(count)) }
            .map(|_| ())
            .map_err(|e| g.error("kernel residual_add", e))
    }

    /// `out = LN(input + bias + residual)` row by row (`h` values per row).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn residual_ln(
        &self,
        input: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        residual: &CudaSlice<f32>,
        norm: &DevNorm,
        (h, eps): (usize, f32),
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let hi = h as i32;
        let mut b = self.gpu.stream().launch_builder(&self.k.bias_residual_ln);
        b.arg(input)
            .arg(bias)
            .arg(residual)
            .arg(&norm.gamma)
            .arg(&norm.beta)
            .arg(&hi)
            .arg(&eps)
            .arg(out);
        // SAFETY: arguments match `bias_residual_ln`; every buffer holds rows·h values.
        unsafe { b.launch(Self::rows(rows, h)) }
            .map(|_| ())
            .map_err(|e| self.gpu.error("kernel bias_residual_ln", e))
    }

    /// `out = LN(input)` row by row.
    pub(super) fn layer_norm(
        &self,
        input: &CudaSlice<f32>,
        norm: &DevNorm,
        (h, eps): (usize, f32),
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let hi = h as i32;
        let mut b = self.gpu.stream().launch_builder(&self.k.layer_norm);
        b.arg(input)
            .arg(&norm.gamma)
            .arg(&norm.beta)
            .arg(&hi)
            .arg(&eps)
            .arg(out);
        // SAFETY: arguments match `layer_norm`; both buffers hold rows·h values.
        unsafe { b.launch(Self::rows(rows, h)) }
            .map(|_| ())
            .map_err(|e| self.gpu.error("kernel layer_norm", e))
    }

    /// `out[r, i] = act(a[i] + bias[i]) · (g[i] + bias[n + i])` for rows `[a | g]` of `wi`
    /// (`rows × 2n`; ModernBERT's GeGLU).
    pub(super) fn geglu(
        &self,
        wi: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        (rows, n): (usize, usize),
        act: Act,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let g = &self.gpu;
        let total = rows * n;
        let (total64, n32, act) = (total as i64, n as i32, act as i32);
        let count = u32::try_from(total).map_err(|_| g.error("geglu", "above 2^32 values"))?;
        let mut b = g.stream().launch_builder(&self.k.geglu);
        b.arg(wi)
            .arg(bias)
            .arg(&total64)
            .arg(&n32)
            .arg(&act)
            .arg(out);
        // SAFETY: arguments match `geglu`; wi holds rows·2n values, bias 2n, out rows·n.
        unsafe { b.launch(LaunchConfig::for_num_elems(count)) }
            .map(|_| ())
            .map_err(|e| g.error("kernel geglu", e))
    }

    /// Rotary positions on the queries and keys of `qkv` (`rows × 3h`, `[q | k | v]`): row `r`
    /// at position `pos[r]`, frequencies `inv_freq` (`head_dim / 2` values).
    pub(super) fn rotary(
        &self,
        qkv: &mut CudaSlice<f32>,
        pos: &CudaSlice<u32>,
        inv_freq: &CudaSlice<f32>,
        rows: usize,
        (h, heads): (usize, usize),
    ) -> Result<()> {
        let g = &self.gpu;
        let threads = rows * h; // rows · 2 parts · heads · head_dim / 2
        let count = u32::try_from(threads).map_err(|_| g.error("rotary", "above 2^32 values"))?;
        let (rows64, hi, heads_i) = (rows as i64, h as i32, heads as i32);
        let mut b = g.stream().launch_builder(&self.k.rotary);
        b.arg(qkv)
            .arg(pos)
            .arg(inv_freq)
            .arg(&rows64)
            .arg(&hi)
            .arg(&heads_i);
        // SAFETY: arguments match `rotary`; qkv holds rows·3h values, pos `rows`, inv_freq
        // head_dim / 2.
        unsafe { b.launch(LaunchConfig::for_num_elems(count)) }
            .map(|_| ())
            .map_err(|e| g.error("kernel rotary", e))
    }

    /// Multi-head attention: `ctx` from `qkv` (`[q | k | v]` rows, biases added) of `p`'s
    /// sequences; `mask` restricts each row's keys further (causal, or a window).
    pub(super) fn attention(
        &self,
        qkv: &CudaSlice<f32>,
        p: &Packing,
        (h, heads): (usize, usize),
        mask: Mask,
        ctx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (causal, window) = match mask {
            Mask::Full => (0i32, -1i32),
            Mask::Causal => (1, -1),
            // Clamped so that `row + window + 1` stays within i32 in the kernel.
            Mask::Window(w) => (0, w.min(i32::MAX as usize / 2) as i32),
        };
        let (hi, heads_i) = (h as i32, heads as i32);
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        let mut l = self.gpu.stream().launch_builder(&self.k.attention);
        l.arg(qkv)
            .arg(&p.tok_seq)
            .arg(&p.seq_start)
            .arg(&p.seq_keys)
            .arg(&hi)
            .arg(&heads_i)
            .arg(&scale)
            .arg(&causal)
            .arg(&window)
            .arg(ctx);
        let cfg = LaunchConfig {
            grid_dim: (p.rows as u32, heads as u32, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: (p.longest * 4) as u32,
        };
        // SAFETY: arguments match `attention`; every sequence's rows and key counts lie within
        // the packed batch (`packing`); the shared buffer holds the longest key count.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(|e| self.gpu.error("kernel attention", e))
    }

    /// One vector per text of `p` from the packed states `x` (`h` values per row), downloaded:
    /// `texts × h` values. `pooling` as [`crate::encode::pooling::pool`] (`Tokens` is not a
    /// pooling and takes the first row, as there).
    pub(super) fn pool_download(
        &self,
        x: &CudaSlice<f32>,
        p: &Packing,
        h: usize,
        pooling: Pooling,
    ) -> Result<Vec<f32>> {
        let g = &self.gpu;
        let texts = p.texts();
        let mut out = g.zeros::<f32>(texts * h)?;
        let mode: i32 = match pooling {
            Pooling::Cls | Pooling::Tokens => 0,
            Pooling::Last => 1,
            Pooling::Mean => 2,
        };
        let hi = h as i32;
        let mut b = g.stream().launch_builder(&self.k.pool_rows);
        b.arg(x)
            .arg(&p.seq_start)
            .arg(&p.seq_len)
            .arg(&hi)
            .arg(&mode)
            .arg(&mut out);
        let cfg = LaunchConfig {
            grid_dim: (texts as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match `pool_rows`; every text's rows lie within x (`packing`), and
        // out holds texts·h values.
        unsafe { b.launch(cfg) }.map_err(|e| g.error("kernel pool_rows", e))?;
        g.download_staged(&out, texts * h)
    }

    /// Scratch for 16-bit copies of up to `n` input values (one value for f32 weights).
    pub(super) fn half_scratch(&self, n: usize) -> Result<CudaSlice<u16>> {
        self.gpu.zeros(match self.dtype {
            GpuType::F32 => 1,
            _ => n,
        })
    }
}
