//! One side of a dual encoder as training sees it: a field's encoder (its model folder and
//! record: pooling, normalisation, Matryoshka dims, max length, prefix) over a differentiable
//! [`TrainableBert`]. Tokenisation is vellum's own ([`TextEncoder::tokenize`]), so training sees
//! exactly the token ids ingest and search see.

use candle_core::{Device, Tensor, D};
use vellum::encode::{
    ComputeType, EncoderOptions, EncoderRecord, ModelDir, OutputKind, Pooling, TextEncoder,
};

use crate::bert::{Params, TrainableBert};
use crate::error::{Result, TrainError};

/// A trainable encoder: model, its parameters, tokenizer and pooling.
pub struct Tower {
    /// The model folder it was loaded from (non-weight files are copied from it when saving).
    pub dir: ModelDir,
    /// The record the field binds (pooling, normalize, dims, max_length, prefix).
    pub record: EncoderRecord,
    /// The parameters (shared with `model`).
    pub params: Params,
    model: TrainableBert,
    tokenizer: TextEncoder,
    device: Device,
}

impl std::fmt::Debug for Tower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tower")
            .field("source", &self.record.source)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Tower {
    /// Loads the dense text encoder of `dir` with the options of `record` (the field's record for
    /// that side), on `device`; `train_max_len` truncates training inputs at another length
    /// than the record's (the saved model keeps the record's). Only BERT-family dense encoders in
    /// f32 train.
    pub fn load(
        dir: &ModelDir,
        record: &EncoderRecord,
        train_max_len: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        if record.output != OutputKind::Dense || record.late_interaction.is_some() {
            return Err(TrainError::Invalid(format!(
                "{}: only dense text encoders train in this version (this one outputs {})",
                record.source,
                record.output.field_kind_name()
            )));
        }
        if record.dtype != ComputeType::F32 {
            return Err(TrainError::Invalid(format!(
                "{}: the field encodes with dtype {:?}; training computes in f32 (bind the field with dtype=f32)",
                record.source, record.dtype
            )));
        }
        let architecture = record.architecture.as_deref().unwrap_or("bert");
        if !vellum::encode::models::bert::MODEL_TYPES.contains(&architecture) {
            return Err(TrainError::Invalid(format!(
                "{}: a {architecture} model; training supports the BERT family ({}) in this version",
                record.source,
                vellum::encode::models::bert::MODEL_TYPES.join(", ")
            )));
        }
        let tokenizer = TextEncoder::from_dir(dir, &tokenizer_options(record, train_max_len))?;
        let found = &tokenizer.record().fingerprint;
        if *found != record.fingerprint {
            return Err(TrainError::Invalid(format!(
                "{}: the model files hash to {found}, the field's encoder is {}: this is not the model that encoded the stored vectors",
                dir.dir.display(),
                record.fingerprint
            )));
        }
        let weights = dir.dir.join("model.safetensors");
        let params = Params::load(&weights, device)?;
        let model = TrainableBert::new(dir, &params)?;
        Ok(Tower {
            dir: dir.clone(),
            record: record.clone(),
            params,
            model,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The same parameters (shared: an update reaches both) behind the options of another
    /// record of the same model — a tied dual encoder's other side (a query prefix or length).
    pub fn share(&self, record: &EncoderRecord, train_max_len: Option<usize>) -> Result<Tower> {
        let options = tokenizer_options(record, train_max_len);
        Ok(Tower {
            dir: self.dir.clone(),
            record: record.clone(),
            params: self.params.clone(),
            model: TrainableBert::new(&self.dir, &self.params)?,
            tokenizer: TextEncoder::from_dir(&self.dir, &options)?,
            device: self.device.clone(),
        })
    }

    /// The differentiable model.
    pub fn model(&self) -> &TrainableBert {
        &self.model
    }

    /// vellum's native encoder of the same folder and options (the inference path), as loaded
    /// for tokenisation.
    pub fn native(&self) -> &TextEncoder {
        &self.tokenizer
    }

    /// Computes the model's products in `compute` (f32, or bf16 for mixed precision).
    pub fn set_compute(&mut self, compute: candle_core::DType) {
        self.model.set_compute(compute);
    }

    /// The variables training updates, by name (those the forward pass reads).
    pub fn trainable_vars(&self) -> Vec<(String, candle_core::Var)> {
        self.params
            .iter()
            .filter(|(n, _)| self.model.trainable().contains(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// Output dimensions.
    pub fn dims(&self) -> usize {
        self.record.dims
    }

    /// Token ids of `text` as the field's encoder tokenises it.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.tokenize(text)?)
    }

    /// Embeddings `[B, dims]` of tokenised texts, with the graph for backpropagation.
    pub fn encode(&self, seqs: &[Vec<u32>]) -> Result<Tensor> {
        let (ids, mask) = self.model.batch(seqs, &self.device)?;
        let states = self.model.forward(&ids, &mask)?;
        let pooled = pool(&states, &mask, self.record.pooling)?;
        let pooled = if self.record.dims < pooled.dim(1)? {
            pooled.narrow(1, 0, self.record.dims)?
        } else {
            pooled
        };
        if self.record.normalize {
            normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

fn tokenizer_options(record: &EncoderRecord, train_max_len: Option<usize>) -> EncoderOptions {
    let mut options = EncoderOptions {
        device: None,
        batch_size: None,
        ..record.options()
    };
    if let Some(n) = train_max_len {
        options.max_length = Some(n);
    }
    options
}

/// Pools states `[B, L, H]` under `mask` `[B, L]` into `[B, H]`.
pub fn pool(states: &Tensor, mask: &Tensor, pooling: Pooling) -> Result<Tensor> {
    let (b, l, _) = states.dims3()?;
    match pooling {
        Pooling::Cls | Pooling::Tokens => Ok(states.narrow(1, 0, 1)?.squeeze(1)?),
        Pooling::Mean => {
            let m = mask.unsqueeze(2)?;
            let sum = states.broadcast_mul(&m)?.sum(1)?;
            let count = mask.sum_keepdim(1)?;
            Ok(sum.broadcast_div(&count)?)
        }
        Pooling::Last => {
            // A one-hot weight on each text's last token.
            let lens: Vec<f32> = mask.sum(1)?.to_vec1()?;
            let mut w = vec![0f32; b * l];
            for (i, n) in lens.iter().enumerate() {
                w[i * l + (*n as usize).max(1) - 1] = 1.0;
            }
            let w = Tensor::from_vec(w, (b, l, 1), states.device())?;
            Ok(states.broadcast_mul(&w)?.sum(1)?)
        }
    }
}

/// Each row divided by its L2 norm.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}
