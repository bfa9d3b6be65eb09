//! Training as a maintenance operation for a vellum collection: fine-tune a dense field's
//! encoders on the collection's own data with Tevatron's contrastive loss and hard negatives
//! mined from the collection, and write Hugging Face checkpoints that vellum, `transformers` and
//! `sentence-transformers` load.
//!
//! - [`bert`]: a BERT-family encoder on candle whose every parameter receives a gradient.
//! - [`tower`]: one side of the dual encoder (model + the field's pooling, normalisation, dims).
//! - [`loss`]: Tevatron's contrastive loss.
//! - [`optim`]: AdamW with Hugging Face's conventions.
//! - [`fused`]: the attention softmax and layer norm as fused kernels with their backward.

pub mod bert;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod fused;
pub mod loss;
pub mod optim;
pub mod query_only;
pub mod tower;
pub mod trainer;

pub use checkpoint::trained_encoders;
pub use data::{
    mine_negatives, read_queries_qrels, read_tevatron, MiningConfig, Passage, TrainQuery,
};
pub use error::{Result, TrainError};
pub use trainer::{
    check_output, train, EvalReport, EvalSet, Precision, Progress, Silent, StepReport, TrainConfig,
    TrainReport,
};
