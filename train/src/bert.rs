//! A BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa) on candle whose every parameter receives a
//! gradient.
//!
//! candle-transformers' BERT is built on candle's fused `layer_norm` and `softmax_last_dim`,
//! which record no backward pass: gradients stop there without an error (candle issues #2168,
//! #3752). This module uses vellum's own fused layer norm and attention softmax with hand-written
//! backward passes (`crate::fused`) and candle's differentiable GELU instead — the architecture of Devlin et al. 2019 as Hugging Face `transformers`'
//! `BertModel` / `RobertaModel` compute it (post-norm layers, absolute positions, token type 0).
//! Its forward pass equals vellum's native CPU pass (the inference path) to 1e-5.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use vellum::encode::models::bert::{Activation, BertConfig, BertShape};
use vellum::encode::ModelDir;

use crate::error::{Result, TrainError};

/// Every tensor of a checkpoint as a trainable `f32` variable, by its name in `model.safetensors`.
/// Tensors the forward pass does not use (a pooler, an MLM head) are kept and saved unchanged, so
/// a saved checkpoint is the original file with new values.
#[derive(Debug, Clone)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

impl Params {
    /// Reads `model.safetensors` (f32, f16 or bf16 tensors; all become f32 variables).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| TrainError::model(path, format!("cannot be read: {e}")))?;
        let mut vars = BTreeMap::new();
        for (name, t) in tensors {
            vars.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        Ok(Params { vars })
    }

    /// The variable named `name`, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&Var> {
        let v = self.vars.get(name).ok_or_else(|| {
            TrainError::Invalid(format!(
                "model.safetensors has no tensor {name:?} (the weights do not match config.json's model_type)"
            ))
        })?;
        if v.dims() != shape {
            return Err(TrainError::Invalid(format!(
                "model.safetensors: tensor {name:?} has shape {:?}, config.json implies {shape:?}",
                v.dims()
            )));
        }
        Ok(v)
    }

    /// All variables by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Replaces every variable's value by the tensor of the same name in `path` (a checkpoint
    /// of the same model), keeping the variables (and so the models built on them).
    pub fn restore(&self, path: &Path) -> Result<()> {
        let other = Params::load(path, &self.device()?)?;
        for (name, var) in &self.vars {
            let t = other.vars.get(name).ok_or_else(|| {
                TrainError::model(
                    path,
                    format!("has no tensor {name:?}: it is not a checkpoint of this model"),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(TrainError::model(
                    path,
                    format!(
                        "tensor {name:?} has shape {:?}, the model {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(t.as_tensor())?;
        }
        Ok(())
    }

    fn device(&self) -> Result<Device> {
        Ok(self
            .vars
            .values()
            .next()
            .map(|v| v.device().clone())
            .unwrap_or(Device::Cpu))
    }

    /// Writes every variable to `path` as `model.safetensors` (f32).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_filtered(path, |_| true)
    }

    /// Writes the variables whose names `keep` accepts to `path` (f32).
    pub fn save_filtered(&self, path: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> = self
            .vars
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path)
            .map_err(|e| TrainError::io(path, std::io::Error::other(e.to_string())))
    }
}

struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// `x·Wᵀ + b`, the product computed in `compute` (see [`product`]).
    fn forward(&self, x: &Tensor, compute: DType) -> Result<Tensor> {
        // x: [.., in]; weight [out, in].
        let w = self.weight.as_tensor().t()?;
        Ok(product(x, &w, compute)?.broadcast_add(self.bias.as_tensor())?)
    }
}

/// `a·b` (broadcast batch dimensions) with both inputs rounded to `compute` and the result
/// returned in f32: mixed precision as PyTorch's autocast does it (products in bf16 with f32
/// accumulation on tensor cores; layer norms, softmax, the loss and the master weights in f32).
/// The rounding records its backward, so gradients reach the f32 variables.
fn product(a: &Tensor, b: &Tensor, compute: DType) -> Result<Tensor> {
    if compute == DType::F32 {
        return Ok(a.broadcast_matmul(b)?);
    }
    Ok(a.to_dtype(compute)?
        .broadcast_matmul(&b.to_dtype(compute)?)?
        .to_dtype(DType::F32)?)
}

struct Norm {
    weight: Var,
    bias: Var,
    eps: f64,
}

impl Norm {
    /// Layer norm over the last dimension, with its backward (candle's fused `layer_norm`
    /// records none): [`crate::fused::layer_norm`].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crate::fused::layer_norm(
            x,
            self.weight.as_tensor(),
            self.bias.as_tensor(),
            self.eps,
        )?)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

/// The differentiable encoder: token ids and an attention mask in, last hidden states out.
pub struct TrainableBert {
    shape: BertShape,
    pad_id: u32,
    word: Var,
    position: Var,
    token_type0: Option<Tensor>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    /// Names of the variables the forward pass uses (what the optimiser updates).
    used: Vec<String>,
    /// The type the products compute in (f32, or bf16 for mixed precision).
    compute: DType,
}

impl std::fmt::Debug for TrainableBert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainableBert")
            .field("shape", &self.shape)
            .field("parameters", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl TrainableBert {
    /// Builds the model of folder `dir` over `params` (its `model.safetensors`, loaded with
    /// [`Params::load`]); the variables are shared, so updating `params` updates the model.
    pub fn new(dir: &ModelDir, params: &Params) -> Result<Self> {
        let config = BertConfig::from_dir(dir)?;
        let shape = config.shape(dir)?;
        let h = shape.hidden;
        if shape.heads == 0 || !h.is_multiple_of(shape.heads) {
            return Err(TrainError::Invalid(format!(
                "{}: hidden_size {h} is not a multiple of num_attention_heads {}",
                dir.dir.display(),
                shape.heads
            )));
        }
        let prefix = vellum::encode::models::bert::WEIGHT_PREFIXES
            .into_iter()
            .find(|p| {
                params
                    .vars
                    .contains_key(&format!("{p}embeddings.word_embeddings.weight"))
            })
            .unwrap_or("");
        let used = std::cell::RefCell::new(Vec::new());
        let var = |name: &str, shape: &[usize]| -> Result<Var> {
            let full = format!("{prefix}{name}");
            let v = params.get(&full, shape)?.clone();
            used.borrow_mut().push(full);
            Ok(v)
        };
        let word = var("embeddings.word_embeddings.weight", &[shape.vocab, h])?;
        let position = var(
            "embeddings.position_embeddings.weight",
            &[shape.max_positions, h],
        )?;
        let types_name = format!("{prefix}embeddings.token_type_embeddings.weight");
        let token_type0 = match params.vars.get(&types_name) {
            Some(v) if v.rank() == 2 && v.dims()[1] == h => {
                used.borrow_mut().push(types_name);
                Some(v.as_tensor().narrow(0, 0, 1)?.squeeze(0)?)
            }
            _ => None,
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                weight: var(&format!("{name}.weight"), &[h])?,
                bias: var(&format!("{name}.bias"), &[h])?,
                eps: shape.eps as f64,
            })
        };
        let emb_norm = norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let p = format!("encoder.layer.{i}");
            let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
                Ok(Linear {
                    weight: var(&format!("{p}.{name}.weight"), &[out, inp])?,
                    bias: var(&format!("{p}.{name}.bias"), &[out])?,
                })
            };
            let query = linear("attention.self.query", h, h)?;
            let key = linear("attention.self.key", h, h)?;
            let value = linear("attention.self.value", h, h)?;
            let attn_out = linear("attention.output.dense", h, h)?;
            let up = linear("intermediate.dense", shape.intermediate, h)?;
            let down = linear("output.dense", h, shape.intermediate)?;
            let norm = |name: &str| -> Result<Norm> {
                Ok(Norm {
                    weight: var(&format!("{p}.{name}.weight"), &[h])?,
                    bias: var(&format!("{p}.{name}.bias"), &[h])?,
                    eps: shape.eps as f64,
                })
            };
            layers.push(Layer {
                query,
                key,
                value,
                attn_out,
                norm1: norm("attention.output.LayerNorm")?,
                up,
                down,
                norm2: norm("output.LayerNorm")?,
            });
        }
        Ok(TrainableBert {
            pad_id: config.pad_id(),
            shape,
            word,
            position,
            token_type0,
            emb_norm,
            layers,
            used: used.into_inner(),
            compute: DType::F32,
        })
    }

    /// Computes the products (linear layers, attention) in `compute`: f32 (the default), or
    /// bf16 for mixed precision (bf16 inputs, f32 accumulation and output; the rest stays f32).
    pub fn set_compute(&mut self, compute: DType) {
        self.compute = compute;
    }

    /// The names of the variables the forward pass reads (what training updates).
    pub fn trainable(&self) -> &[String] {
        &self.used
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.shape.hidden
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        self.shape.max_positions - self.shape.position_offset
    }

    /// Pads `seqs` on the right to the longest (with the model's padding id) and returns
    /// `(input_ids [B, L] u32, attention_mask [B, L] f32)`.
    pub fn batch(&self, seqs: &[Vec<u32>], device: &Device) -> Result<(Tensor, Tensor)> {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if len > self.max_tokens() {
            return Err(TrainError::Invalid(format!(
                "a sequence has {len} tokens; this model takes at most {}",
                self.max_tokens()
            )));
        }
        let mut ids = Vec::with_capacity(seqs.len() * len);
        let mut mask = Vec::with_capacity(seqs.len() * len);
        for s in seqs {
            let n = s.len().max(1);
            ids.extend_from_slice(s);
            if s.is_empty() {
                ids.push(self.pad_id);
            }
            ids.extend(std::iter::repeat_n(self.pad_id, len - n));
            mask.extend(std::iter::repeat_n(1f32, n));
            mask.extend(std::iter::repeat_n(0f32, len - n));
        }
        Ok((
            Tensor::from_vec(ids, (seqs.len(), len), device)?,
            Tensor::from_vec(mask, (seqs.len(), len), device)?,
        ))
    }

    /// Last hidden states `[B, L, hidden]` of `input_ids` `[B, L]` (u32) under `mask` `[B, L]`
    /// (f32, 1 for tokens, 0 for padding on the right).
    pub fn forward(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        let h = self.shape.hidden;
        let heads = self.shape.heads;
        let dh = h / heads;
        let words = self
            .word
            .as_tensor()
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, l, h))?;
        let positions = self
            .position
            .as_tensor()
            .narrow(0, self.shape.position_offset, l)?;
        let mut x = words.broadcast_add(&positions)?;
        if let Some(t) = &self.token_type0 {
            x = x.broadcast_add(t)?;
        }
        let mut x = self.emb_norm.forward(&x)?;
        // Additive key mask [B, 1, 1, L]: 0 for tokens, a large negative for padding, so that
        // padding gets exactly zero attention weight after the softmax.
        let key_mask = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in &self.layers {
            let split = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((b, l, heads, dh))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let c = self.compute;
            let q = split(layer.query.forward(&x, c)?)?;
            let k = split(layer.key.forward(&x, c)?)?;
            let v = split(layer.value.forward(&x, c)?)?;
            let scores = product(&q, &k.t()?.contiguous()?, c)?;
            let weights = crate::fused::masked_softmax(&scores, &key_mask, scale)?;
            let context = product(&weights, &v, c)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, l, h))?;
            let attn = layer.attn_out.forward(&context, c)?;
            x = layer.norm1.forward(&(attn + &x)?)?;
            let up = layer.up.forward(&x, c)?;
            let act = match self.shape.activation {
                Activation::GeluErf => up.gelu_erf()?,
                Activation::GeluTanh => up.gelu()?,
                Activation::Relu => up.relu()?,
            };
            let down = layer.down.forward(&act, c)?;
            x = layer.norm2.forward(&(down + &x)?)?;
        }
        Ok(x)
    }
}
