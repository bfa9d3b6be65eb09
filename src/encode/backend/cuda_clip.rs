//! CLIP's transformer layers on an NVIDIA GPU (feature `cuda`): the pre-norm layers of both
//! towers (`x += attn(LN₁ x)`, `x += MLP(LN₂ x)`, quick-GELU or GELU, full attention for images,
//! causal for texts) from [`super::cuda_ops`]. Everything around them — patches, embeddings,
//! pre- and post-layer norms, pooling and projections, a few percent of the work — stays in
//! [`super::native_clip`] on the CPU, which hands the packed hidden states over and takes them
//! back, so both paths share one implementation of CLIP's logic.

use parking_lot::Mutex;

use super::cuda_ops::{Act, DevLinear, DevNorm, Ops};
use super::native_bert::Mask;
use super::native_clip::Tower;
use crate::encode::models::clip::ClipActivation;
use crate::error::Result;
use crate::meta::encoder::ComputeType;

struct DevLayer {
    norm1: DevNorm,
    qkv: DevLinear,
    out: DevLinear,
    norm2: DevNorm,
    fc1: DevLinear,
    fc2: DevLinear,
}

/// One tower's layers on the device.
pub(super) struct DevTower {
    layers: Vec<DevLayer>,
}

/// CLIP's layers on a GPU: each tower is copied at its first pass (an encoder uses one side).
pub struct CudaClip {
    ops: Ops,
    /// The text and vision towers once copied; the lock also makes passes one at a time (the
    /// device's single stream).
    towers: Mutex<(Option<DevTower>, Option<DevTower>)>,
}

/// Which tower a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Text,
    Vision,
}

impl CudaClip {
    /// Refuses a `dtype` without a GPU path (int8) before any weight is read.
    pub fn check_dtype(dtype: ComputeType) -> Result<()> {
        Ops::device_type(dtype).map(|_| ())
    }

    /// Opens GPU `ordinal` for CLIP layers of `dtype` (their weights are copied at first use).
    pub(super) fn new(ordinal: usize, dtype: ComputeType) -> Result<Self> {
        Ok(CudaClip {
            ops: Ops::new(ordinal, dtype)?,
            towers: Mutex::new((None, None)),
        })
    }

    fn upload(&self, t: &Tower) -> Result<DevTower> {
        let ops = &self.ops;
        let layers = t
            .layers
            .iter()
            .map(|l| {
                Ok(DevLayer {
                    norm1: ops.norm(&l.norm1)?,
                    qkv: ops.linear_weights(&l.qkv)?,
                    out: ops.linear_weights(&l.out)?,
                    norm2: ops.norm(&l.norm2)?,
                    fc1: ops.linear_weights(&l.fc1)?,
                    fc2: ops.linear_weights(&l.fc2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DevTower { layers })
    }

    /// [`Tower::forward`] on the GPU: layers `layers` of tower `which` (shape `t.shape`) over
    /// packed sequences of `lens[i]` rows in `x`, in place.
    pub(super) fn forward(
        &self,
        which: Which,
        t: &Tower,
        layers: std::ops::Range<usize>,
        x: &mut [f32],
        lens: &[usize],
    ) -> Result<()> {
        let (o, shape) = (&self.ops, &t.shape);
        let (h, inter) = (shape.hidden, shape.intermediate);
        let rows = x.len() / h;
        if rows == 0 || layers.is_empty() {
            return Ok(());
        }
        let mut towers = self.towers.lock();
        let slot = match which {
            Which::Text => &mut towers.0,
            Which::Vision => &mut towers.1,
        };
        if slot.is_none() {
            *slot = Some(self.upload(t)?);
        }
        let tower = slot.as_ref().expect("uploaded");
        let g = &o.gpu;
        let packing = o.packing(lens, None)?;
        let mut xd = g.upload(x)?;
        let mut y = g.zeros::<f32>(rows * h)?;
        let mut qkv = g.zeros::<f32>(rows * 3 * h)?;
        let mut ctx = g.zeros::<f32>(rows * h)?;
        let mut tmp = g.zeros::<f32>(rows * h)?;
        let mut ff = g.zeros::<f32>(rows * inter)?;
        let mut half = o.half_scratch(rows * inter.max(h))?;
        let norm = (h, shape.eps);
        let act = match shape.activation {
            ClipActivation::QuickGelu => Act::QuickGelu,
            ClipActivation::Gelu => Act::GeluErf,
        };
        for l in &tower.layers[layers] {
            o.layer_norm(&xd, &l.norm1, norm, rows, &mut y)?;
            o.linear(&l.qkv, &y, rows, &mut half, &mut qkv)?;
            o.bias_act(&mut qkv, &l.qkv.bias, rows * 3 * h, 3 * h, Act::None)?;
            o.attention(
                &qkv,
                &packing,
                (h, shape.heads),
                if which == Which::Text {
                    Mask::Causal
                } else {
                    Mask::Full
                },
                &mut ctx,
            )?;
            o.linear(&l.out, &ctx, rows, &mut half, &mut tmp)?;
            o.residual_add(&mut xd, &tmp, &l.out.bias, rows * h, h)?;
            o.layer_norm(&xd, &l.norm2, norm, rows, &mut y)?;
            o.linear(&l.fc1, &y, rows, &mut half, &mut ff)?;
            o.bias_act(&mut ff, &l.fc1.bias, rows * inter, inter, act)?;
            o.linear(&l.fc2, &ff, rows, &mut half, &mut tmp)?;
            o.residual_add(&mut xd, &tmp, &l.fc2.bias, rows * h, h)?;
        }
        let out = g.download(&xd)?;
        x.copy_from_slice(&out[..rows * h]);
        Ok(())
    }
}
