//! The optimiser as Hugging Face's `Trainer` runs it: AdamW (Loshchilov & Hutter 2019) exactly as
//! `torch.optim.AdamW` computes it, no weight decay on biases and layer-norm weights, a linear
//! warm-up then linear decay to zero (`get_linear_schedule_with_warmup`), and clipping of the
//! global gradient norm (`clip_grad_norm_`). candle-nn's `AdamW` decays every parameter and has
//! neither schedule nor clipping, so the update is written here (a few element-wise loops).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Optimiser settings (Hugging Face `TrainingArguments` names and defaults, except the learning
/// rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (not applied to biases and layer norms).
    pub weight_decay: f64,
    /// Adam's β₁.
    pub beta1: f64,
    /// Adam's β₂.
    pub beta2: f64,
    /// Adam's ε.
    pub eps: f64,
    /// Largest global gradient L2 norm; larger gradients are scaled down to it (`0` = no clipping).
    pub max_grad_norm: f64,
    /// Optimiser steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// Total optimiser steps (the learning rate reaches 0 there).
    pub total_steps: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 2e-5,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            total_steps: 1,
        }
    }
}

impl OptimConfig {
    /// The learning rate of optimiser step `step` (0-based), as
    /// `get_linear_schedule_with_warmup`: `lr · step / warmup` during warm-up (so the first step
    /// of a warm-up has rate 0, as in Hugging Face), then `lr · (total − step) / (total − warmup)`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let left = self.total_steps.saturating_sub(step) as f64;
        self.lr * (left / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64).max(0.0)
    }
}

/// True for parameters Hugging Face exempts from weight decay: biases and layer-norm weights.
pub fn exempt_from_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm")
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Vec<f32>,
    v: Vec<f32>,
    grad: Vec<f32>,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// AdamW over named variables, with gradient accumulation buffers.
pub struct AdamW {
    config: OptimConfig,
    slots: Vec<Slot>,
    /// Optimiser steps taken.
    step: usize,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("parameters", &self.slots.len())
            .field("step", &self.step)
            .finish()
    }
}

impl AdamW {
    /// An optimiser over `params` (name, variable).
    pub fn new(params: Vec<(String, Var)>, config: OptimConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Slot {
                    decay: !exempt_from_decay(&name),
                    name,
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    grad: vec![0.0; n],
                }
            })
            .collect();
        AdamW {
            config,
            slots,
            step: 0,
        }
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The settings.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Adds the gradients of `loss`'s backward pass to the accumulation buffers. A variable
    /// without a gradient (unused by the loss) accumulates nothing.
    pub fn accumulate(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        self.slots.par_iter_mut().try_for_each(|s| -> Result<()> {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
                for (a, b) in s.grad.iter_mut().zip(&g) {
                    *a += b;
                }
            }
            Ok(())
        })
    }

    /// The accumulated gradient of each variable (name, values).
    pub fn gradients(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.grad[..]))
    }

    /// One update from the accumulated gradients (clipped to `max_grad_norm`), then clears them.
    pub fn step(&mut self) -> Result<StepInfo> {
        let c = self.config;
        let lr = c.lr_at(self.step);
        let norm = self
            .slots
            .iter()
            .flat_map(|s| s.grad.iter())
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the gradient norm is {norm} at step {}: training diverged (lower the learning rate or raise the temperature)",
                self.step + 1
            )));
        }
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1.
        let clip = if c.max_grad_norm > 0.0 {
            (c.max_grad_norm / (norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let decay = (1.0 - lr * c.weight_decay) as f32;
        // Parameters update independently: one task per parameter tensor.
        self.slots.par_iter_mut().try_for_each(|s| -> Result<()> {
            let p = s.var.as_tensor();
            let mut values: Vec<f32> = p.flatten_all()?.to_vec1()?;
            for (((p, g), m), v) in values
                .iter_mut()
                .zip(&s.grad)
                .zip(s.m.iter_mut())
                .zip(s.v.iter_mut())
            {
                let g = g * clip as f32;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                if s.decay {
                    *p *= decay;
                }
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p -= step_size * *m / denom;
            }
            s.var
                .set(&Tensor::from_vec(values, p.shape(), p.device())?)?;
            s.grad.iter_mut().for_each(|g| *g = 0.0);
            Ok(())
        })?;
        Ok(StepInfo {
            lr,
            grad_norm: norm,
        })
    }

    /// Writes the moments and the step count (`optimizer.safetensors`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for s in &self.slots {
            let n = s.m.len();
            map.insert(
                format!("exp_avg.{}", s.name),
                Tensor::from_vec(s.m.clone(), n, &Device::Cpu)?,
            );
            map.insert(
                format!("exp_avg_sq.{}", s.name),
                Tensor::from_vec(s.v.clone(), n, &Device::Cpu)?,
            );
        }
        map.insert(
            "step".to_string(),
            Tensor::from_vec(vec![self.step as u32], 1, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)
            .map_err(|e| TrainError::io(path, std::io::Error::other(e.to_string())))
    }

    /// Restores what [`AdamW::save`] wrote.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| TrainError::model(path, format!("cannot be read: {e}")))?;
        let get = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = map.get(name).ok_or_else(|| {
                TrainError::model(
                    path,
                    format!("has no tensor {name:?}: it belongs to another model"),
                )
            })?;
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            if v.len() != n {
                return Err(TrainError::model(
                    path,
                    format!("tensor {name:?} has {} values, the parameter {n}", v.len()),
                ));
            }
            Ok(v)
        };
        for s in &mut self.slots {
            let n = s.m.len();
            s.m = get(&format!("exp_avg.{}", s.name), n)?;
            s.v = get(&format!("exp_avg_sq.{}", s.name), n)?;
        }
        let step = map
            .get("step")
            .ok_or_else(|| TrainError::model(path, "has no step count"))?
            .to_vec1::<u32>()?;
        self.step = step[0] as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_hugging_faces_linear_warmup() {
        let c = OptimConfig {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 12,
            ..Default::default()
        };
        let lrs: Vec<f64> = (0..13).map(|s| c.lr_at(s)).collect();
        assert_eq!(&lrs[..5], &[0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(lrs[8], 0.5);
        assert_eq!(lrs[12], 0.0);
    }

    #[test]
    fn one_step_equals_torch_adamw() {
        // torch.optim.AdamW(lr=0.1, weight_decay=0.5) on p = [1, -2], grad g = [0.5, 4] (clipped
        // to norm 1 first): p ← p·(1 − lr·wd) − lr · m̂ / (√v̂ + ε) with m̂ = g, v̂ = g².
        let var = Var::from_vec(vec![1f32, -2.0], 2, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            vec![("w".into(), var.clone())],
            OptimConfig {
                lr: 0.1,
                weight_decay: 0.5,
                max_grad_norm: 1.0,
                total_steps: 10,
                ..Default::default()
            },
        );
        let loss = var
            .as_tensor()
            .mul(&Tensor::new(&[0.5f32, 4.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.accumulate(&loss.backward().unwrap()).unwrap();
        let info = opt.step().unwrap();
        let norm = (0.25f64 + 16.0).sqrt();
        assert!((info.grad_norm - norm).abs() < 1e-9);
        let got: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        for (i, (p, g)) in [(1.0f64, 0.5f64), (-2.0, 4.0)].into_iter().enumerate() {
            let g = g / (norm + 1e-6);
            let want = p * (1.0 - 0.1 * 0.5) - 0.1 * g / (g.abs() + 1e-8);
            assert!(
                (got[i] as f64 - want).abs() < 1e-6,
                "{i}: {} vs {want}",
                got[i]
            );
        }
        assert!(exempt_from_decay(
            "encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(exempt_from_decay("pooler.dense.bias"));
        assert!(!exempt_from_decay(
            "encoder.layer.0.attention.self.query.weight"
        ));
    }
}
