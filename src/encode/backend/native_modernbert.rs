//! vellum's CPU forward pass for ModernBERT ([`crate::encode::models::modernbert`]), built from
//! the same parts as the BERT pass ([`super::native_bert`]): texts packed without padding, one
//! product for Q, K and V, products that accumulate into the residual stream, the vectorised
//! layer norm / softmax / GELU. Per layer (pre-norm):
//!
//! ```text
//! x += Wo · attention(rope(q), rope(k), v)      of LN_attn(x)  (layer 0: no norm)
//! x += Wo' · (act(a) ⊙ g)   where [a, g] = Wi · LN_mlp(x)
//! ```
//!
//! then a final layer norm. Rotary positions follow transformers' `rotate_half` convention
//! (`q·cos + rotate_half(q)·sin`, frequencies `θ^(−2i/d)`); local layers restrict each token's
//! keys to those at most `local_attention / 2` positions away.

use parking_lot::Mutex;
use rayon::prelude::*;
use safetensors::SafeTensors;

use super::native_bert::{
    activate, attention, fill_rows, layer_norm, linear_acc, pack, resize, Linear, Mask, Norm,
    QuantWeight, Tensors,
};
use crate::encode::models::modernbert::ModernBertShape;
use crate::encode::source::ModelDir;
use crate::error::Result;
use crate::meta::encoder::ComputeType;

pub(super) struct Layer {
    /// `None` in layer 0 (the embeddings' norm precedes it).
    pub(super) attn_norm: Option<Norm>,
    pub(super) qkv: Linear,
    pub(super) attn_out: Linear,
    pub(super) mlp_norm: Norm,
    /// `[2·intermediate, hidden]`: the input half, then the gate half.
    pub(super) wi: Linear,
    pub(super) wo: Linear,
    /// Local layers: keys at most this far away.
    pub(super) window: Option<usize>,
}

/// A ModernBERT encoder's weights, ready for [`NativeModernBert::forward_with_keys`].
pub struct NativeModernBert {
    pub(super) shape: ModernBertShape,
    pub(super) word: Vec<f32>,
    pub(super) emb_norm: Norm,
    pub(super) layers: Vec<Layer>,
    pub(super) final_norm: Norm,
    /// `inv_freq` of global and local layers (`head_dim / 2` each).
    pub(super) inv_freq: [Vec<f32>; 2],
    scratch: Mutex<Vec<Scratch>>,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    wi: Vec<f32>,
    ff: Vec<f32>,
}

impl NativeModernBert {
    /// Reads the weights of a ModernBERT checkpoint (`model.safetensors`, optionally under
    /// `model.`); `dtype` as for [`super::native_bert::NativeBert::load`].
    pub fn load(
        dir: &ModelDir,
        bytes: &[u8],
        shape: ModernBertShape,
        dtype: ComputeType,
    ) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| dir.error(format!("model.safetensors cannot be read: {e}")))?;
        let prefix = ["", "model.", "modernbert."]
            .into_iter()
            .find(|p| {
                st.tensor(&format!("{p}embeddings.tok_embeddings.weight"))
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
        let norm = |name: &str| -> Result<Norm> {
            let gamma = t.get(&format!("{name}.weight"), &[h])?;
            let beta = if shape.norm_bias {
                t.get(&format!("{name}.bias"), &[h])?
            } else {
                vec![0.0; h]
            };
            Ok(Norm { gamma, beta })
        };
        let linear = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            Ok(Linear {
                weight: t.get(&format!("{name}.weight"), &[out, inp])?,
                bias: if bias {
                    t.get(&format!("{name}.bias"), &[out])?
                } else {
                    Vec::new()
                },
                out,
                inp,
                quant: None,
            })
        };
        let word = t.get("embeddings.tok_embeddings.weight", &[shape.vocab, h])?;
        let emb_norm = norm("embeddings.norm")?;
        let mut layers = Vec::with_capacity(shape.windows.len());
        for (i, &window) in shape.windows.iter().enumerate() {
            let p = format!("layers.{i}");
            let (ab, mb) = (shape.attention_bias, shape.mlp_bias);
            let mut layer = Layer {
                attn_norm: if i == 0 {
                    None
                } else {
                    Some(norm(&format!("{p}.attn_norm"))?)
                },
                qkv: linear(&format!("{p}.attn.Wqkv"), 3 * h, h, ab)?,
                attn_out: linear(&format!("{p}.attn.Wo"), h, h, ab)?,
                mlp_norm: norm(&format!("{p}.mlp_norm"))?,
                wi: linear(&format!("{p}.mlp.Wi"), 2 * shape.intermediate, h, mb)?,
                wo: linear(&format!("{p}.mlp.Wo"), h, shape.intermediate, mb)?,
                window,
            };
            if dtype == ComputeType::Int8 {
                for l in [
                    &mut layer.qkv,
                    &mut layer.attn_out,
                    &mut layer.wi,
                    &mut layer.wo,
                ] {
                    l.quant = Some(QuantWeight::new(&l.weight, l.out, l.inp));
                    l.weight = Vec::new();
                }
            }
            layers.push(layer);
        }
        let final_norm = norm("final_norm")?;
        let d = h / shape.heads;
        // transformers: 1 / θ^(arange(0, d, 2) / d), in f32.
        let inv = |theta: f64| -> Vec<f32> {
            (0..d / 2)
                .map(|i| (1.0 / theta.powf((2 * i) as f64 / d as f64)) as f32)
                .collect()
        };
        let inv_freq = [inv(shape.global_theta), inv(shape.local_theta)];
        Ok(NativeModernBert {
            shape,
            word,
            emb_norm,
            layers,
            final_norm,
            inv_freq,
            scratch: Mutex::new(Vec::new()),
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

    /// Runs the encoder on `seqs` (as [`super::native_bert::NativeBert::forward_with_keys`]:
    /// packed states of all tokens; text `i` attends to its first `keys[i]` tokens only).
    pub fn forward_with_keys(
        &self,
        seqs: &[&[u32]],
        keys: Option<&[usize]>,
    ) -> (Vec<f32>, Vec<usize>) {
        let (keys, starts, total) = pack(seqs, keys, self.max_tokens(), self.shape.vocab);
        let h = self.shape.hidden;
        let mut sc = self.scratch.lock().pop().unwrap_or_default();
        resize(&mut sc.x, total * h);
        resize(&mut sc.h, total * h);
        resize(&mut sc.qkv, total * 3 * h);
        resize(&mut sc.ctx, total * h);
        resize(&mut sc.wi, total * 2 * self.shape.intermediate);
        resize(&mut sc.ff, total * self.shape.intermediate);

        let eps = self.shape.eps;
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        sc.x[..total * h]
            .par_chunks_mut(h)
            .zip(ids.par_iter())
            .for_each(|(row, &id)| {
                let id = id as usize;
                row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
                layer_norm(row, &self.emb_norm, eps);
            });
        for layer in &self.layers {
            self.layer(layer, seqs, &starts, &keys, total, &mut sc);
        }
        let mut out = sc.x[..total * h].to_vec();
        out.par_chunks_mut(h)
            .for_each(|row| layer_norm(row, &self.final_norm, eps));
        self.scratch.lock().push(sc);
        (out, starts)
    }

    fn layer(
        &self,
        l: &Layer,
        seqs: &[&[u32]],
        starts: &[usize],
        keys: &[usize],
        t: usize,
        sc: &mut Scratch,
    ) {
        let h = self.shape.hidden;
        let eps = self.shape.eps;
        let inter = self.shape.intermediate;
        let x = &mut sc.x[..t * h];
        let hn = &mut sc.h[..t * h];
        // hn = LN_attn(x) (layer 0: x)
        hn.copy_from_slice(x);
        if let Some(n) = &l.attn_norm {
            hn.par_chunks_mut(h).for_each(|row| layer_norm(row, n, eps));
        }
        let qkv = &mut sc.qkv[..t * 3 * h];
        if l.qkv.bias.is_empty() {
            qkv.fill(0.0);
        } else {
            fill_rows(qkv, &l.qkv.bias);
        }
        linear_acc(hn, t, &l.qkv, qkv);
        self.rotate(qkv, seqs, l.window.is_some());
        let ctx = &mut sc.ctx[..t * h];
        self.attention(qkv, seqs, starts, keys, l.window, ctx);
        // x += ctx·Woᵀ + b
        add_bias(x, &l.attn_out.bias);
        linear_acc(ctx, t, &l.attn_out, x);
        // x += Wo'·(act(a) ⊙ g), [a, g] = Wi·LN_mlp(x) + b
        hn.copy_from_slice(x);
        hn.par_chunks_mut(h)
            .for_each(|row| layer_norm(row, &l.mlp_norm, eps));
        let wi = &mut sc.wi[..t * 2 * inter];
        if l.wi.bias.is_empty() {
            wi.fill(0.0);
        } else {
            fill_rows(wi, &l.wi.bias);
        }
        linear_acc(hn, t, &l.wi, wi);
        let ff = &mut sc.ff[..t * inter];
        let act = self.shape.activation;
        ff.par_chunks_mut(inter)
            .zip(wi.par_chunks(2 * inter))
            .for_each(|(o, ag)| {
                o.copy_from_slice(&ag[..inter]);
                activate(o, act);
                o.iter_mut().zip(&ag[inter..]).for_each(|(v, g)| *v *= g);
            });
        add_bias(x, &l.wo.bias);
        linear_acc(ff, t, &l.wo, x);
    }

    /// Applies rotary positions to the queries and keys of every head, position = index in
    /// the text.
    fn rotate(&self, qkv: &mut [f32], seqs: &[&[u32]], local: bool) {
        let h = self.shape.hidden;
        let d = h / self.shape.heads;
        let half = d / 2;
        let inv = &self.inv_freq[usize::from(local)];
        let positions: Vec<usize> = seqs.iter().flat_map(|s| 0..s.len()).collect();
        qkv.par_chunks_mut(3 * h)
            .zip(positions.par_iter())
            .for_each(|(row, &p)| {
                // transformers: freqs = inv_freq · p in f32, then cos / sin in f32.
                let (cos, sin): (Vec<f32>, Vec<f32>) = inv
                    .iter()
                    .map(|&f| {
                        let a = f * p as f32;
                        (a.cos(), a.sin())
                    })
                    .unzip();
                for head in row[..2 * h].chunks_exact_mut(d) {
                    let (x1, x2) = head.split_at_mut(half);
                    for i in 0..half {
                        let (a, b) = (x1[i], x2[i]);
                        x1[i] = a * cos[i] - b * sin[i];
                        x2[i] = b * cos[i] + a * sin[i];
                    }
                }
            });
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        qkv: &[f32],
        seqs: &[&[u32]],
        starts: &[usize],
        keys: &[usize],
        window: Option<usize>,
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
            window.map_or(Mask::Full, Mask::Window),
            ctx,
        );
    }
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    x.par_chunks_mut(bias.len())
        .for_each(|r| r.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
}
