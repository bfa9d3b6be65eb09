//! vellum's own CPU forward pass for the BERT family (BERT, RoBERTa, XLM-RoBERTa). It replaces candle-transformers' BERT, which
//! ran at 0.44× sentence-transformers' speed here and returns NaN in f16 and bf16 (its attention
//! mask constant `f32::MIN` overflows to −∞ and is multiplied by 0):
//!
//! * **No padding.** The texts of a batch are packed into one `tokens × hidden` matrix: the
//!   linear layers run on real tokens only, and attention runs per text (so no mask is needed
//!   and no work is spent on padding).
//! * **Few, large matrix products.** Q, K and V come from one product with the concatenated
//!   weights; biases and residuals are pre-loaded into the destination so the product adds
//!   into them (`gemm`'s accumulate mode).
//! * **Fused, vectorizable element-wise work**: bias + GELU (erf), softmax and layer norm are
//!   single passes with polynomial `exp` / `erf` accurate to ~1e-7.
//! * **No allocation per op**: buffers are reused across layers and calls.
//!
//! Results equal candle's and PyTorch's to ~1e-6 (tests compare against sentence-transformers
//! and transformers' outputs).

use parking_lot::Mutex;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use super::vector_math;
use crate::encode::models::bert::{Activation, BertShape};
use crate::encode::source::ModelDir;
use crate::error::Result;
use crate::linalg::{codes, packed_codes};
use crate::meta::encoder::ComputeType;

pub(super) struct Linear {
    /// `[out, in]` row-major, as PyTorch stores it.
    pub(super) weight: Vec<f32>,
    /// `[out]`; empty for a layer without bias.
    pub(super) bias: Vec<f32>,
    pub(super) out: usize,
    pub(super) inp: usize,
    /// The weights in 8 bits (`dtype` int8), used instead of `weight`.
    pub(super) quant: Option<QuantWeight>,
}

/// A linear layer's weights quantized per output channel: `weight[o][i] ≈ scale[o] · codes[o][i]`,
/// `codes` in −127..=127.
pub(super) struct QuantWeight {
    /// Row-major `out × inp`, or packed in panels where the CPU has the packed kernel
    /// ([`crate::linalg::packed_codes`]: no horizontal sums; packed once, at load).
    codes: Vec<i8>,
    packed: bool,
    scale: Vec<f32>,
    /// `ACT_OFFSET · Σ_i codes[o][i]`: what the offset of the u8 activations adds to each product.
    offset_sum: Vec<i32>,
}

/// Activations are quantized per token to `−ACT_LIMIT..=ACT_LIMIT` and passed to the kernel as
/// `u + ACT_LIMIT` (u8, at most [`crate::linalg::codes::MAX_U8_QUERY`]).
const ACT_LIMIT: i32 = 64;

impl QuantWeight {
    pub(super) fn new(weight: &[f32], out: usize, inp: usize) -> Self {
        let mut q = QuantWeight {
            codes: Vec::with_capacity(out * inp),
            packed: false,
            scale: Vec::with_capacity(out),
            offset_sum: Vec::with_capacity(out),
        };
        for row in weight.chunks_exact(inp) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let mut sum = 0i32;
            q.codes.extend(row.iter().map(|v| {
                let c = (v / scale).round().clamp(-127.0, 127.0) as i8;
                sum += c as i32;
                c
            }));
            q.scale.push(scale);
            q.offset_sum.push(ACT_LIMIT * sum);
        }
        if packed_codes::has_packed_kernel() {
            let mut packed = Vec::new();
            packed_codes::pack_panels(&q.codes, inp, &mut packed);
            q.codes = packed;
            q.packed = true;
        }
        q
    }
}

pub(super) struct Norm {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
}

pub(super) struct Layer {
    pub(super) qkv: Linear,
    pub(super) attn_out: Linear,
    pub(super) norm1: Norm,
    pub(super) up: Linear,
    pub(super) down: Linear,
    pub(super) norm2: Norm,
}

/// A BERT encoder's weights in f32, ready for [`NativeBert::forward`].
pub struct NativeBert {
    pub(super) shape: BertShape,
    pub(super) word: Vec<f32>,
    pub(super) position: Vec<f32>,
    pub(super) token_type0: Vec<f32>,
    pub(super) emb_norm: Norm,
    pub(super) layers: Vec<Layer>,
    scratch: Mutex<Vec<Scratch>>,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    y: Vec<f32>,
    ff: Vec<f32>,
}

pub(super) struct Tensors<'a> {
    pub(super) st: SafeTensors<'a>,
    pub(super) prefix: String,
    pub(super) dir: &'a ModelDir,
    pub(super) dtype: ComputeType,
}

impl Tensors<'_> {
    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let view = self.st.tensor(&full).map_err(|_| {
            self.dir.error(format!(
                "model.safetensors has no tensor {full:?} (the weights do not match config.json's model_type)"
            ))
        })?;
        if view.shape() != shape {
            return Err(self.dir.error(format!(
                "model.safetensors: tensor {full:?} has shape {:?}, config.json implies {shape:?}",
                view.shape()
            )));
        }
        let element = match view.dtype() {
            Dtype::F32 => crate::DType::F32,
            Dtype::F16 => crate::DType::F16,
            Dtype::BF16 => crate::DType::Bf16,
            other => {
                return Err(self.dir.error(format!(
                    "model.safetensors: tensor {full:?} has element type {other:?}; expected F32, F16 or BF16"
                )))
            }
        };
        let mut out = Vec::with_capacity(shape.iter().product());
        element.decode_into(view.data(), &mut out);
        match self.dtype {
            // int8 quantizes the linear layers' weights when the model is assembled.
            ComputeType::F32 | ComputeType::Int8 => {}
            ComputeType::F16 => out
                .iter_mut()
                .for_each(|v| *v = half::f16::from_f32(*v).to_f32()),
            ComputeType::Bf16 => out
                .iter_mut()
                .for_each(|v| *v = half::bf16::from_f32(*v).to_f32()),
        }
        Ok(out)
    }

    /// The first of `names` that exists (checkpoints name layer-norm parameters gamma/beta or
    /// weight/bias).
    pub(super) fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>> {
        for n in &names[..names.len() - 1] {
            if self.st.tensor(&format!("{}{n}", self.prefix)).is_ok() {
                return self.get(n, shape);
            }
        }
        self.get(names[names.len() - 1], shape)
    }

    pub(super) fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{name}.weight"), &[out, inp])?,
            bias: self.get(&format!("{name}.bias"), &[out])?,
            out,
            inp,
            quant: None,
        })
    }

    pub(super) fn norm(&self, name: &str, h: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.get_any(&[&format!("{name}.gamma"), &format!("{name}.weight")], &[h])?,
            beta: self.get_any(&[&format!("{name}.beta"), &format!("{name}.bias")], &[h])?,
        })
    }
}

impl NativeBert {
    /// Reads the weights of a BERT checkpoint (`model.safetensors`, f32/f16/bf16 tensors,
    /// optionally under a `bert.` prefix). With `dtype` f16 or bf16, every weight is rounded to
    /// the nearest value of that type: the model computes as one stored in half precision, with
    /// f32 arithmetic (CPUs have no faster half-precision products).
    pub fn load(
        dir: &ModelDir,
        bytes: &[u8],
        shape: BertShape,
        dtype: ComputeType,
    ) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| dir.error(format!("model.safetensors cannot be read: {e}")))?;
        let prefix = crate::encode::models::bert::WEIGHT_PREFIXES
            .into_iter()
            .find(|p| {
                st.tensor(&format!("{p}embeddings.word_embeddings.weight"))
                    .is_ok()
            })
            .unwrap_or("")
            .to_string();
        let t = Tensors {
            st,
            prefix,
            dir,
            dtype,
        };
        let h = shape.hidden;
        if shape.heads == 0 || !h.is_multiple_of(shape.heads) {
            return Err(dir.error(format!(
                "config.json: hidden_size {h} is not a multiple of num_attention_heads {}",
                shape.heads
            )));
        }
        let word = t.get("embeddings.word_embeddings.weight", &[shape.vocab, h])?;
        let position = t.get(
            "embeddings.position_embeddings.weight",
            &[shape.max_positions, h],
        )?;
        let types = t.st.tensor(&format!(
            "{}embeddings.token_type_embeddings.weight",
            t.prefix
        ));
        let token_type0 = match types {
            Ok(v) if v.shape().len() == 2 && v.shape()[1] == h => {
                let rows = v.shape()[0];
                t.get("embeddings.token_type_embeddings.weight", &[rows, h])?[..h].to_vec()
            }
            _ => vec![0.0; h],
        };
        let emb_norm = t.norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let p = format!("encoder.layer.{i}");
            let q = t.linear(&format!("{p}.attention.self.query"), h, h)?;
            let k = t.linear(&format!("{p}.attention.self.key"), h, h)?;
            let v = t.linear(&format!("{p}.attention.self.value"), h, h)?;
            let qkv = Linear {
                weight: [q.weight, k.weight, v.weight].concat(),
                bias: [q.bias, k.bias, v.bias].concat(),
                out: 3 * h,
                inp: h,
                quant: None,
            };
            let mut layer = Layer {
                qkv,
                attn_out: t.linear(&format!("{p}.attention.output.dense"), h, h)?,
                norm1: t.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                up: t.linear(&format!("{p}.intermediate.dense"), shape.intermediate, h)?,
                down: t.linear(&format!("{p}.output.dense"), h, shape.intermediate)?,
                norm2: t.norm(&format!("{p}.output.LayerNorm"), h)?,
            };
            if dtype == ComputeType::Int8 {
                for l in [
                    &mut layer.qkv,
                    &mut layer.attn_out,
                    &mut layer.up,
                    &mut layer.down,
                ] {
                    l.quant = Some(QuantWeight::new(&l.weight, l.out, l.inp));
                    l.weight = Vec::new();
                }
            }
            layers.push(layer);
        }
        Ok(NativeBert {
            shape,
            word,
            position,
            token_type0,
            emb_norm,
            layers,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.shape.hidden
    }

    /// Vocabulary size (token ids are below it).
    pub fn vocab(&self) -> usize {
        self.shape.vocab
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        self.shape.max_positions - self.shape.position_offset
    }

    /// Runs the encoder on `seqs` (token ids; each at most [`NativeBert::max_tokens`] long, none
    /// empty)
    /// and returns the last hidden states of all tokens, packed: text `i`'s tokens are rows
    /// `starts[i] .. starts[i] + seqs[i].len()` of a `Σ len × hidden` row-major matrix.
    pub fn forward(&self, seqs: &[&[u32]]) -> (Vec<f32>, Vec<usize>) {
        self.forward_with_keys(seqs, None)
    }

    /// [`NativeBert::forward`] where text `i`'s tokens attend only to its first `keys[i]` tokens
    /// (`1 ≤ keys[i] ≤ len`): the later tokens are computed (they attend to those keys) but no
    /// token attends to them. This is a padded model's attention mask with zeros at the end,
    /// which ColBERT's query expansion uses (`attend_to_mask_tokens = false`).
    pub fn forward_with_keys(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> (Vec<f32>, Vec<usize>) {
        let (keys, starts, total) = pack(seqs, keys, self.max_tokens(), self.shape.vocab);
        let h = self.shape.hidden;
        let mut sc = self.scratch.lock().pop().unwrap_or_default();
        resize(&mut sc.x, total * h);
        resize(&mut sc.qkv, total * 3 * h);
        resize(&mut sc.ctx, total * h);
        resize(&mut sc.y, total * h);
        resize(&mut sc.ff, total * self.shape.intermediate);

        self.embed(seqs, &mut sc.x);
        for layer in &self.layers {
            self.layer(layer, seqs, &starts, &keys, &mut sc);
        }
        let out = sc.x[..total * h].to_vec();
        self.scratch.lock().push(sc);
        (out, starts)
    }

    fn embed(&self, seqs: &[&[u32]], x: &mut [f32]) {
        let h = self.shape.hidden;
        let rows: Vec<(u32, usize)> = seqs
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(p, &id)| (id, p)))
            .collect();
        x.par_chunks_mut(h)
            .zip(rows.par_iter())
            .for_each(|(row, &(id, pos))| {
                let id = id as usize;
                let w = &self.word[id * h..(id + 1) * h];
                let pos = pos + self.shape.position_offset;
                let p = &self.position[pos * h..(pos + 1) * h];
                for (((o, a), b), c) in row.iter_mut().zip(w).zip(p).zip(&self.token_type0) {
                    *o = a + b + c;
                }
                layer_norm(row, &self.emb_norm, self.shape.eps);
            });
    }

    fn layer(
        &self,
        l: &Layer,
        seqs: &[&[u32]],
        starts: &[usize],
        keys: &[usize],
        sc: &mut Scratch,
    ) {
        let h = self.shape.hidden;
        let t = seqs.iter().map(|s| s.len()).sum::<usize>();
        let x = &mut sc.x[..t * h];
        let qkv = &mut sc.qkv[..t * 3 * h];
        let ctx = &mut sc.ctx[..t * h];
        let y = &mut sc.y[..t * h];
        let ff = &mut sc.ff[..t * self.shape.intermediate];

        // qkv = x·Wqkvᵀ + b
        fill_rows(qkv, &l.qkv.bias);
        linear_acc(x, t, &l.qkv, qkv);
        // ctx = attention per text and head
        self.attention(qkv, seqs, starts, keys, ctx);
        // y = LN(ctx·Woᵀ + b + x)
        y.par_chunks_mut(h).zip(x.par_chunks(h)).for_each(|(o, r)| {
            for ((o, r), b) in o.iter_mut().zip(r).zip(&l.attn_out.bias) {
                *o = r + b;
            }
        });
        linear_acc(ctx, t, &l.attn_out, y);
        let eps = self.shape.eps;
        y.par_chunks_mut(h)
            .for_each(|row| layer_norm(row, &l.norm1, eps));
        // ff = act(y·W1ᵀ + b1)
        fill_rows(ff, &l.up.bias);
        linear_acc(y, t, &l.up, ff);
        let act = self.shape.activation;
        ff.par_chunks_mut(4096).for_each(|c| activate(c, act));
        // x = LN(ff·W2ᵀ + b2 + y)
        x.par_chunks_mut(h).zip(y.par_chunks(h)).for_each(|(o, r)| {
            for ((o, r), b) in o.iter_mut().zip(r).zip(&l.down.bias) {
                *o = r + b;
            }
        });
        linear_acc(ff, t, &l.down, x);
        x.par_chunks_mut(h)
            .for_each(|row| layer_norm(row, &l.norm2, eps));
    }

    fn attention(
        &self,
        qkv: &[f32],
        seqs: &[&[u32]],
        starts: &[usize],
        keys: &[usize],
        ctx: &mut [f32],
    ) {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        attention(
            qkv,
            self.shape.hidden,
            self.shape.heads,
            &lens,
            starts,
            keys,
            Mask::Full,
            ctx,
        );
    }
}

/// Which keys a query row attends to, beyond the sequence's key count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mask {
    /// Every key (BERT).
    Full,
    /// Keys at most `w` positions away (ModernBERT's local layers: |i − j| ≤ w).
    Window(usize),
    /// Keys at or before the row (CLIP's text tower).
    Causal,
}

/// Multi-head attention of packed sequences (the BERT, ModernBERT and CLIP passes): `qkv` holds
/// each token's `[q | k | v]` (`3·hidden`), `ctx` receives each token's attended values.
/// Sequence `i` (`lens[i]` tokens from row `starts[i]`) attends to its first `keys[i]` tokens,
/// restricted further by `mask`. Sequences run in parallel.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    qkv: &[f32],
    h: usize,
    heads: usize,
    lens: &[usize],
    starts: &[usize],
    keys: &[usize],
    mask: Mask,
    ctx: &mut [f32],
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    // Split ctx into one chunk per text so texts run in parallel without sharing.
    let mut chunks = Vec::with_capacity(lens.len());
    let mut rest = ctx;
    for &n in lens {
        let (a, b) = rest.split_at_mut(n * h);
        chunks.push(a);
        rest = b;
    }
    chunks
        .into_par_iter()
        .zip(starts.par_iter().zip(lens.par_iter().zip(keys.par_iter())))
        .for_each(|(out, (&s0, (&n, &m)))| {
            let rows = &qkv[s0 * 3 * h..(s0 + n) * 3 * h];
            // The n × m score matrix lives in a per-thread buffer: allocating it per text
            // and layer (up to 256 KiB, above malloc's mmap threshold) costs page faults.
            ATTENTION_SCORES.with_borrow_mut(|buf| {
                if buf.len() < n * m {
                    buf.resize(n * m, 0.0);
                }
                let scores = &mut buf[..n * m];
                for head in 0..heads {
                    let q = &rows[head * d..];
                    let k = &rows[h + head * d..];
                    let v = &rows[2 * h + head * d..];
                    // scores = scale · Q·Kᵀ  (n × m: every token, the first m keys)
                    strided_gemm(
                        n,
                        m,
                        d,
                        Out {
                            data: scores,
                            rs: m,
                        },
                        In {
                            data: q,
                            rs: 3 * h,
                            cs: 1,
                        },
                        In {
                            data: k,
                            rs: 1,
                            cs: 3 * h,
                        },
                        false,
                        scale,
                    );
                    for (r, row) in scores.chunks_exact_mut(m).enumerate() {
                        // A local layer: keys at most `w` positions away (transformers'
                        // bidirectional sliding window, |i − j| ≤ w).
                        let (lo, hi) = match mask {
                            Mask::Window(w) => (r.saturating_sub(w), (r + w + 1).min(m)),
                            Mask::Causal => (0, (r + 1).min(m)),
                            Mask::Full => (0, m),
                        };
                        if lo >= hi {
                            row.fill(0.0);
                            continue;
                        }
                        row[..lo].fill(0.0);
                        row[hi..].fill(0.0);
                        vector_math::softmax(&mut row[lo..hi]);
                    }
                    // out[:, head] = scores · V[..m]  (n × d)
                    strided_gemm(
                        n,
                        d,
                        m,
                        Out {
                            data: &mut out[head * d..],
                            rs: h,
                        },
                        In {
                            data: scores,
                            rs: m,
                            cs: 1,
                        },
                        In {
                            data: v,
                            rs: 3 * h,
                            cs: 1,
                        },
                        false,
                        1.0,
                    );
                }
            });
        });
}

/// Checks packed `seqs` (each 1..=`max_tokens` ids below `vocab`) and their key counts
/// (`1..=len`, all of them when `None`); returns the key counts, each text's first row and the
/// total row count.
pub(super) fn pack(
    seqs: &[&[u32]],
    keys: Option<&[usize]>,
    max_tokens: usize,
    vocab: usize,
) -> (Vec<usize>, Vec<usize>, usize) {
    let keys: Vec<usize> = match keys {
        Some(k) => {
            assert_eq!(k.len(), seqs.len(), "one key count per sequence");
            for (&m, s) in k.iter().zip(seqs) {
                assert!(m >= 1 && m <= s.len(), "key count out of range");
            }
            k.to_vec()
        }
        None => seqs.iter().map(|s| s.len()).collect(),
    };
    let mut starts = Vec::with_capacity(seqs.len());
    let mut total = 0;
    for s in seqs {
        assert!(
            !s.is_empty() && s.len() <= max_tokens,
            "sequence length out of range"
        );
        assert!(
            s.iter().all(|&t| (t as usize) < vocab),
            "token id out of range"
        );
        starts.push(total);
        total += s.len();
    }
    (keys, starts, total)
}

thread_local! {
    /// Attention scores of one text and head (see [`NativeBert::forward`]).
    pub(super) static ATTENTION_SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(super) fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub(super) fn fill_rows(dst: &mut [f32], row: &[f32]) {
    dst.par_chunks_mut(row.len())
        .for_each(|r| r.copy_from_slice(row));
}

/// Tokens per parallel task of the int8 product.
const QUANT_ROWS: usize = 32;

/// `dst (rows × out) += src (rows × in) · Wᵀ` with int8 weights: each row of `src` is quantized
/// to `±ACT_LIMIT` with its own scale, multiplied exactly in integers
/// ([`crate::linalg::packed_codes::dot_block_packed`] on x86-64, else
/// [`crate::linalg::codes::dot_block`]) and scaled back. On all cores.
fn linear_acc_int8(src: &[f32], rows: usize, l: &Linear, q: &QuantWeight, dst: &mut [f32]) {
    let (inp, out) = (l.inp, l.out);
    dst[..rows * out]
        .par_chunks_mut(QUANT_ROWS * out)
        .zip(src[..rows * inp].par_chunks(QUANT_ROWS * inp))
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(act, scales, dots): &mut (Vec<u8>, Vec<f32>, Vec<i32>), (dst, src)| {
                let n = src.len() / inp;
                act.clear();
                scales.clear();
                codes::quantize_rows_u8(src, inp, ACT_LIMIT, act, scales);
                dots.resize(n * out, 0);
                if q.packed {
                    packed_codes::dot_block_packed(act, &q.codes, inp, out, dots);
                } else {
                    codes::dot_block(act, &q.codes, inp, dots);
                }
                codes::accumulate_scaled(dst, dots, scales, &q.scale, &q.offset_sum);
            },
        );
}

/// Rows up to which an f32 linear layer multiplies each weight row with the source rows directly
/// ([`linear_acc_dots`]) instead of `gemm`'s packed product: for a query of a few tokens, packing
/// the weights costs more than the arithmetic.
const DOT_ROWS: usize = 16;

/// [`DOT_ROWS`], or `VELLUM_ENCODER_DOT_ROWS` when set (0 turns the path off: for benchmarks
/// that compare the two paths in one run).
fn dot_rows() -> usize {
    static ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("VELLUM_ENCODER_DOT_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DOT_ROWS)
    })
}

/// Outputs per parallel task of [`linear_acc_dots`].
const DOT_OUTPUTS: usize = 64;

/// `dst (rows × out) += src (rows × in) · Wᵀ` for few rows: each weight row read once and
/// multiplied with every source row ([`crate::linalg::rows::dots`], runtime dispatch: AVX-512,
/// AVX2 + FMA, portable); tasks over blocks of outputs on all cores.
fn linear_acc_dots(src: &[f32], rows: usize, l: &Linear, dst: &mut [f32]) {
    if rows == 0 {
        return; // nothing to add (and chunks of 0 would panic)
    }
    let (inp, out) = (l.inp, l.out);
    let mut by_output = vec![0f32; out * rows];
    by_output
        .par_chunks_mut(DOT_OUTPUTS * rows)
        .zip(l.weight[..out * inp].par_chunks(DOT_OUTPUTS * inp))
        .for_each(|(o, w)| crate::linalg::rows::dots(&src[..rows * inp], w, inp, o));
    for (r, d) in dst[..rows * out].chunks_exact_mut(out).enumerate() {
        for (o, d) in d.iter_mut().enumerate() {
            *d += by_output[o * rows + r];
        }
    }
}

/// `dst (rows × out) += src (rows × in) · Wᵀ`, on all cores.
pub(super) fn linear_acc(src: &[f32], rows: usize, l: &Linear, dst: &mut [f32]) {
    if let Some(q) = &l.quant {
        return linear_acc_int8(src, rows, l, q, dst);
    }
    assert!(src.len() >= rows * l.inp && dst.len() >= rows * l.out);
    if rows <= dot_rows() {
        return linear_acc_dots(src, rows, l, dst);
    }
    // SAFETY: the assert bounds every index: src is read at r*inp + c (r < rows, c < inp), the
    // weight at o*inp + c (o < out, c < inp; its length is out*inp by construction), dst is
    // written at r*out + o. dst is exclusively borrowed, so it aliases neither input.
    unsafe {
        gemm::gemm(
            rows,
            l.out,
            l.inp,
            dst.as_mut_ptr(),
            1,
            l.out as isize,
            true,
            src.as_ptr(),
            1,
            l.inp as isize,
            l.weight.as_ptr(),
            l.inp as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// A matrix operand: element `(r, c)` is `data[r * rs + c * cs]`.
pub(super) struct In<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// A row-major destination with row stride `rs` (column stride 1).
pub(super) struct Out<'a> {
    pub(super) data: &'a mut [f32],
    pub(super) rs: usize,
}

/// `out (m × n) = [out +] beta · a (m × k) · b (k × n)`, single-threaded, with strides.
#[allow(clippy::too_many_arguments)]
pub(super) fn strided_gemm(
    m: usize,
    n: usize,
    k: usize,
    out: Out<'_>,
    a: In<'_>,
    b: In<'_>,
    acc: bool,
    beta: f32,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(m > 0 && n > 0 && k > 0);
    assert!(last(m, k, a.rs, a.cs) < a.data.len());
    assert!(last(k, n, b.rs, b.cs) < b.data.len());
    assert!(last(m, n, out.rs, 1) < out.data.len());
    // SAFETY: the asserts bound the largest index each operand is addressed at through its
    // strides; out is exclusively borrowed and so aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.data.as_mut_ptr(),
            1,
            out.rs as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

pub(super) fn layer_norm(row: &mut [f32], n: &Norm, eps: f32) {
    vector_math::layer_norm(row, &n.gamma, &n.beta, eps);
}

pub(super) fn activate(xs: &mut [f32], act: Activation) {
    match act {
        Activation::GeluErf => vector_math::gelu_erf(xs),
        Activation::GeluTanh => {
            for x in xs {
                let u = 0.797_884_6 * (*x + 0.044715 * *x * *x * *x);
                *x = 0.5 * *x * (1.0 + u.tanh());
            }
        }
        Activation::Relu => {
            for x in xs {
                *x = x.max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few-rows path equals the exact (f64) product to f32 rounding, and adds into `dst`.
    #[test]
    fn dot_path_matches_the_f64_product() {
        let val = |i: usize, m: usize| (((i * 2654435761) >> 7) % m) as f32 / m as f32 - 0.5;
        for (rows, inp, out) in [(0, 8, 8), (1, 384, 1536), (7, 45, 130), (DOT_ROWS, 64, 65)] {
            let l = Linear {
                weight: (0..out * inp).map(|i| val(i, 1000) * 0.2).collect(),
                bias: Vec::new(),
                out,
                inp,
                quant: None,
            };
            let src: Vec<f32> = (0..rows * inp).map(|i| val(i + 17, 997) * 3.0).collect();
            let start: Vec<f32> = (0..rows * out).map(|i| i as f32 * 0.01).collect();
            let mut got = start.clone();
            linear_acc_dots(&src, rows, &l, &mut got);
            let mut want = start.clone();
            for r in 0..rows {
                for o in 0..out {
                    want[r * out + o] += (0..inp)
                        .map(|i| f64::from(src[r * inp + i]) * f64::from(l.weight[o * inp + i]))
                        .sum::<f64>() as f32;
                }
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
            }
        }
    }

    /// The int8 product is within its rigorous quantization bound of the f32 one: per output,
    /// `Σ_i |a_i − â_i|·|w_i| + |â_i|·|w_i − ŵ_i|` with steps of `s_a / 2` and `s_w / 2`.
    #[test]
    fn int8_linear_is_within_its_quantization_bound() {
        let (rows, inp, out) = (70, 45, 13);
        let val = |i: usize, m: usize| (((i * 2654435761) >> 7) % m) as f32 / m as f32 - 0.5;
        let weight: Vec<f32> = (0..out * inp).map(|i| val(i, 1000) * 0.2).collect();
        let src: Vec<f32> = (0..rows * inp).map(|i| val(i + 17, 997) * 3.0).collect();
        let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.01).collect();
        let mut l = Linear {
            weight: weight.clone(),
            bias,
            out,
            inp,
            quant: None,
        };
        let mut want = vec![0.25f32; rows * out];
        linear_acc(&src, rows, &l, &mut want);
        l.quant = Some(QuantWeight::new(&l.weight, out, inp));
        l.weight = Vec::new();
        let mut got = vec![0.25f32; rows * out];
        linear_acc(&src, rows, &l, &mut got);
        let q = l.quant.as_ref().unwrap();
        for r in 0..rows {
            let a = &src[r * inp..(r + 1) * inp];
            let sa = a.iter().fold(0f32, |m, v| m.max(v.abs())) / ACT_LIMIT as f32;
            for o in 0..out {
                let w = &weight[o * inp..(o + 1) * inp];
                let sw = q.scale[o];
                let bound: f32 = a
                    .iter()
                    .zip(w)
                    .map(|(x, y)| sa / 2.0 * y.abs() + (x.abs() + sa / 2.0) * sw / 2.0)
                    .sum::<f32>()
                    * 1.001
                    + 1e-5;
                let (g, e) = (got[r * out + o], want[r * out + o]);
                assert!(
                    (g - e).abs() <= bound,
                    "row {r} out {o}: {g} vs {e}, bound {bound}"
                );
            }
        }
        assert!(got != want, "the int8 path ran");
    }

    #[test]
    fn strided_gemm_matches_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k * 2).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n * 3).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut out = vec![1.0f32; m * 9];
        // a with row stride 2k (every other row block), b transposed (rs 1, cs 3k).
        strided_gemm(
            m,
            n,
            k,
            Out {
                data: &mut out,
                rs: 9,
            },
            In {
                data: &a,
                rs: 2 * k,
                cs: 1,
            },
            In {
                data: &b,
                rs: 1,
                cs: 3 * k,
            },
            true,
            0.5,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0
                    + 0.5
                        * (0..k)
                            .map(|t| a[i * 2 * k + t] * b[t + j * 3 * k])
                            .sum::<f32>();
                assert!((out[i * 9 + j] - want).abs() < 1e-5);
            }
        }
    }
}
