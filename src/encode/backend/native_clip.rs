//! vellum's CPU forward pass for CLIP's two towers (transformers' `CLIPModel`): pre-norm
//! transformer layers (`x += attn(LN₁ x)`, `x += MLP(LN₂ x)`) with quick-GELU, fused QKV
//! products and the packed attention of the BERT pass (`native_bert::attention`: images as
//! sequences of `1 + patches` tokens with full attention; texts packed without padding, causal).
//!
//! * Vision: the patch embedding (a stride-`p` convolution) as one matrix product of the
//!   flattened patches, the class token, position embeddings, `pre_layrnorm`, the layers; the
//!   image embedding is `visual_projection(post_layernorm(CLS))`, L2-normalised. The
//!   penultimate hidden states (`hidden_states[-2]` in transformers: the input of the last
//!   layer, `[1 + patches, hidden]`, CLS first) are what LLaVA and Ret-XKnow cache.
//! * Text: token and position embeddings, causal layers, `final_layer_norm`; the text embedding
//!   is `text_projection` of the end-of-text token's state (its first occurrence; the largest id
//!   for configs with the legacy `eos_token_id` 2), L2-normalised.

use safetensors::SafeTensors;

use super::native_bert::{
    attention, fill_rows, layer_norm, linear_acc, Linear, Mask, Norm, Tensors,
};
use super::vector_math;
use crate::encode::models::clip::{ClipActivation, ClipConfig, TowerShape};
use crate::encode::source::ModelDir;
use crate::error::Result;
use crate::linalg::normalize;
use crate::meta::encoder::{ComputeType, DeviceSpec};

pub(super) struct Layer {
    pub(super) norm1: Norm,
    pub(super) qkv: Linear,
    pub(super) out: Linear,
    pub(super) norm2: Norm,
    pub(super) fc1: Linear,
    pub(super) fc2: Linear,
}

pub(super) struct Tower {
    pub(super) shape: TowerShape,
    pub(super) layers: Vec<Layer>,
}

/// The output of the vision tower for a batch of images.
#[derive(Debug, Clone, Default)]
pub struct VisionOutput {
    /// `images × projection_dim`, each row L2-normalised.
    pub embeddings: Vec<f32>,
    /// With `penultimate`: `images × (1 + patches) × hidden`.
    pub penultimate: Vec<f32>,
}

/// A CLIP checkpoint's weights in f32.
pub struct NativeClip {
    config: ClipConfig,
    text: Tower,
    vision: Tower,
    token: Vec<f32>,
    text_position: Vec<f32>,
    final_norm: Norm,
    text_projection: Linear,
    class: Vec<f32>,
    patch: Linear,
    vision_position: Vec<f32>,
    pre_norm: Norm,
    post_norm: Norm,
    visual_projection: Linear,
    /// Both towers' layers on a GPU (`device=cuda:N`).
    #[cfg(feature = "gpu")]
    gpu: Option<super::cuda_clip::CudaClip>,
}

impl std::fmt::Debug for NativeClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeClip")
            .field("projection_dim", &self.config.projection_dim)
            .finish()
    }
}

fn no_bias(t: &Tensors<'_>, name: &str, out: usize, inp: usize) -> Result<Linear> {
    Ok(Linear {
        weight: t.get(&format!("{name}.weight"), &[out, inp])?,
        bias: Vec::new(),
        out,
        inp,
        quant: None,
    })
}

fn tower(t: &Tensors<'_>, prefix: &str, shape: TowerShape) -> Result<Tower> {
    let h = shape.hidden;
    let layers = (0..shape.layers)
        .map(|i| {
            let p = format!("{prefix}.encoder.layers.{i}");
            let q = t.linear(&format!("{p}.self_attn.q_proj"), h, h)?;
            let k = t.linear(&format!("{p}.self_attn.k_proj"), h, h)?;
            let v = t.linear(&format!("{p}.self_attn.v_proj"), h, h)?;
            Ok(Layer {
                norm1: t.norm(&format!("{p}.layer_norm1"), h)?,
                qkv: Linear {
                    weight: [q.weight, k.weight, v.weight].concat(),
                    bias: [q.bias, k.bias, v.bias].concat(),
                    out: 3 * h,
                    inp: h,
                    quant: None,
                },
                out: t.linear(&format!("{p}.self_attn.out_proj"), h, h)?,
                norm2: t.norm(&format!("{p}.layer_norm2"), h)?,
                fc1: t.linear(&format!("{p}.mlp.fc1"), shape.intermediate, h)?,
                fc2: t.linear(&format!("{p}.mlp.fc2"), h, shape.intermediate)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tower { shape, layers })
}

/// `dst (rows × out) = src · Wᵀ + b`.
fn linear(src: &[f32], rows: usize, l: &Linear, dst: &mut Vec<f32>) {
    dst.clear();
    dst.resize(rows * l.out, 0.0);
    if !l.bias.is_empty() {
        fill_rows(dst, &l.bias);
    }
    linear_acc(src, rows, l, dst);
}

/// `x += src · Wᵀ + b`.
fn residual(x: &mut [f32], src: &[f32], rows: usize, l: &Linear) {
    for row in x.chunks_exact_mut(l.out) {
        row.iter_mut().zip(&l.bias).for_each(|(a, b)| *a += b);
    }
    linear_acc(src, rows, l, x);
}

fn activate(xs: &mut [f32], act: ClipActivation) {
    match act {
        ClipActivation::Gelu => vector_math::gelu_erf(xs),
        ClipActivation::QuickGelu => vector_math::quick_gelu(xs),
    }
}

impl Tower {
    /// Runs layers `layers` of the tower over packed sequences (`lens[i]` rows each) in `x`.
    fn forward(&self, layers: std::ops::Range<usize>, x: &mut [f32], lens: &[usize], mask: Mask) {
        let (h, rows) = (self.shape.hidden, x.len() / self.shape.hidden);
        let starts: Vec<usize> = lens
            .iter()
            .scan(0, |at, &n| {
                let s = *at;
                *at += n;
                Some(s)
            })
            .collect();
        let (mut y, mut qkv, mut ff) = (Vec::new(), Vec::new(), Vec::new());
        let mut ctx = vec![0f32; rows * h];
        for layer in &self.layers[layers] {
            y.clear();
            y.extend_from_slice(x);
            y.chunks_exact_mut(h)
                .for_each(|r| layer_norm(r, &layer.norm1, self.shape.eps));
            linear(&y, rows, &layer.qkv, &mut qkv);
            attention(
                &qkv,
                h,
                self.shape.heads,
                lens,
                &starts,
                lens,
                mask,
                &mut ctx,
            );
            residual(x, &ctx, rows, &layer.out);
            y.clear();
            y.extend_from_slice(x);
            y.chunks_exact_mut(h)
                .for_each(|r| layer_norm(r, &layer.norm2, self.shape.eps));
            linear(&y, rows, &layer.fc1, &mut ff);
            activate(&mut ff, self.shape.activation);
            residual(x, &ff, rows, &layer.fc2);
        }
    }
}

/// Which tower a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Text,
    Vision,
}

impl NativeClip {
    /// Runs layers `layers` of a tower over packed sequences in `x`: on the GPU when the model
    /// was loaded for one, else on the CPU (images attend fully, texts causally).
    fn run(
        &self,
        which: Which,
        layers: std::ops::Range<usize>,
        x: &mut [f32],
        lens: &[usize],
    ) -> Result<()> {
        let tower = match which {
            Which::Text => &self.text,
            Which::Vision => &self.vision,
        };
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            let w = match which {
                Which::Text => super::cuda_clip::Which::Text,
                Which::Vision => super::cuda_clip::Which::Vision,
            };
            return g.forward(w, tower, layers, x, lens);
        }
        let mask = match which {
            Which::Text => Mask::Causal,
            Which::Vision => Mask::Full,
        };
        tower.forward(layers, x, lens, mask);
        Ok(())
    }

    /// Reads the weights of a CLIP checkpoint (`model.safetensors` of a `CLIPModel`), for
    /// `device` (the CPU, or a CUDA GPU with the `cuda` feature: the towers' layers run there).
    pub fn load(
        dir: &ModelDir,
        bytes: &[u8],
        config: ClipConfig,
        dtype: ComputeType,
        device: DeviceSpec,
    ) -> Result<Self> {
        match device {
            DeviceSpec::Cpu => {}
            #[cfg(feature = "gpu")]
            DeviceSpec::Cuda(_) => super::cuda_clip::CudaClip::check_dtype(dtype)?,
            #[cfg(not(feature = "gpu"))]
            DeviceSpec::Cuda(n) => {
                return Err(crate::error::Error::FeatureDisabled {
                    what: format!("device cuda:{n}"),
                    feature: "cuda",
                })
            }
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| dir.error(format!("model.safetensors cannot be read: {e}")))?;
        let t = Tensors {
            st,
            prefix: String::new(),
            dir,
            dtype,
        };
        let ts = config.text_shape(dir)?;
        let vs = config.vision_shape(dir)?;
        let (ht, hv, proj) = (ts.hidden, vs.hidden, config.projection_dim);
        let tc = &config.text_config;
        let p = config.vision_config.patch_size;
        let (text, vision) = (tower(&t, "text_model", ts)?, tower(&t, "vision_model", vs)?);
        #[cfg(feature = "gpu")]
        let gpu = match device {
            DeviceSpec::Cuda(n) => Some(super::cuda_clip::CudaClip::new(n, dtype)?),
            DeviceSpec::Cpu => None,
        };
        Ok(NativeClip {
            text,
            vision,
            #[cfg(feature = "gpu")]
            gpu,
            token: t.get(
                "text_model.embeddings.token_embedding.weight",
                &[tc.vocab_size, ht],
            )?,
            text_position: t.get(
                "text_model.embeddings.position_embedding.weight",
                &[tc.max_position_embeddings, ht],
            )?,
            final_norm: t.norm("text_model.final_layer_norm", ht)?,
            text_projection: no_bias(&t, "text_projection", proj, ht)?,
            class: t.get("vision_model.embeddings.class_embedding", &[hv])?,
            patch: Linear {
                weight: t.get(
                    "vision_model.embeddings.patch_embedding.weight",
                    &[hv, 3, p, p],
                )?,
                bias: Vec::new(),
                out: hv,
                inp: 3 * p * p,
                quant: None,
            },
            vision_position: t.get(
                "vision_model.embeddings.position_embedding.weight",
                &[1 + config.patches(), hv],
            )?,
            pre_norm: t.norm("vision_model.pre_layrnorm", hv)?,
            post_norm: t.norm("vision_model.post_layernorm", hv)?,
            visual_projection: no_bias(&t, "visual_projection", proj, hv)?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Encodes preprocessed images (`images × [3, S, S]` values, `S` the configured image size):
    /// normalised embeddings and, with `penultimate`, the penultimate hidden states.
    pub fn encode_images(&self, pixels: &[f32], penultimate: bool) -> Result<VisionOutput> {
        let v = &self.config.vision_config;
        let (s, p, h) = (v.image_size, v.patch_size, self.vision.shape.hidden);
        let (g, plane) = (s / p, s * s);
        let n = g * g;
        let images = pixels.len() / (3 * plane);
        assert_eq!(pixels.len(), images * 3 * plane, "pixel values per image");
        // Flattened patches in the convolution weight's order (channel, row, column).
        let k = 3 * p * p;
        let mut patches = vec![0f32; images * n * k];
        for b in 0..images {
            let img = &pixels[b * 3 * plane..(b + 1) * 3 * plane];
            for gy in 0..g {
                for gx in 0..g {
                    let dst = &mut patches[((b * n) + gy * g + gx) * k..][..k];
                    for c in 0..3 {
                        for ky in 0..p {
                            let src = &img[c * plane + (gy * p + ky) * s + gx * p..][..p];
                            dst[(c * p + ky) * p..][..p].copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let mut emb = Vec::new();
        linear(&patches, images * n, &self.patch, &mut emb);
        let seq = n + 1;
        let mut x = vec![0f32; images * seq * h];
        for b in 0..images {
            for t in 0..seq {
                let row = &mut x[(b * seq + t) * h..][..h];
                let src = if t == 0 {
                    &self.class[..]
                } else {
                    &emb[(b * n + t - 1) * h..][..h]
                };
                let pos = &self.vision_position[t * h..][..h];
                row.iter_mut()
                    .zip(src.iter().zip(pos))
                    .for_each(|(r, (a, b))| *r = a + b);
                layer_norm(row, &self.pre_norm, self.vision.shape.eps);
            }
        }
        let lens = vec![seq; images];
        let last = self.vision.layers.len() - 1;
        let mut out = VisionOutput::default();
        self.run(Which::Vision, 0..last, &mut x, &lens)?;
        if penultimate {
            out.penultimate = x.clone();
        }
        self.run(Which::Vision, last..last + 1, &mut x, &lens)?;
        let mut pooled = Vec::with_capacity(images * h);
        for b in 0..images {
            let mut cls = x[b * seq * h..][..h].to_vec();
            layer_norm(&mut cls, &self.post_norm, self.vision.shape.eps);
            pooled.extend(cls);
        }
        linear(
            &pooled,
            images,
            &self.visual_projection,
            &mut out.embeddings,
        );
        out.embeddings
            .chunks_exact_mut(self.config.projection_dim)
            .for_each(normalize);
        Ok(out)
    }

    /// Encodes token sequences (special tokens included): `texts × projection_dim`, normalised.
    pub fn encode_texts(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.text.shape.hidden;
        let rows: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = Vec::with_capacity(rows * h);
        for s in seqs {
            for (i, &id) in s.iter().enumerate() {
                let tok = &self.token[id as usize * h..][..h];
                let pos = &self.text_position[i * h..][..h];
                x.extend(tok.iter().zip(pos).map(|(a, b)| a + b));
            }
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        self.run(Which::Text, 0..self.text.layers.len(), &mut x, &lens)?;
        let eos = self.config.text_config.eos_token_id;
        let mut pooled = Vec::with_capacity(seqs.len() * h);
        let mut at = 0;
        for s in seqs {
            let pos = if eos == 2 {
                // Legacy configs: the largest id (the first one on ties, as torch's argmax).
                let max = s.iter().copied().max().unwrap_or(0);
                s.iter().position(|&t| t == max).unwrap_or(0)
            } else {
                s.iter().position(|&t| t == eos).unwrap_or(s.len() - 1)
            };
            let mut row = x[(at + pos) * h..][..h].to_vec();
            layer_norm(&mut row, &self.final_norm, self.text.shape.eps);
            pooled.extend(row);
            at += s.len();
        }
        let mut out = Vec::new();
        linear(&pooled, seqs.len(), &self.text_projection, &mut out);
        out.chunks_exact_mut(self.config.projection_dim)
            .for_each(normalize);
        Ok(out)
    }
}
