//! Built-in text encoders: a dense field can name a passage encoder (used at ingest) and a query
//! encoder (used by text search), recorded in the manifest by fingerprint and options.
//!
//! * options ([`EncoderOptions`]) and the manifest record ([`EncoderRecord`], [`FieldEncoders`])
//!   are plain data in [`crate::meta::encoder`], compiled in every build.
//! * [`source`] — finding a model folder (local, or the Hugging Face cache), its
//!   sentence-transformers defaults, its fingerprint.
//! * `text` (feature `encoders`) — [`TextEncoder`]: tokenizer + BERT-family model (vellum's CPU forward pass) +
//!   pooling; binding encoders to fields ([`prepare_encoders`]), loading them back with an
//!   identity check (`Collection::load_encoder`) and text search (`Collection::search_text`).

#[cfg(feature = "encoders")]
mod bind;
#[cfg(feature = "encoders")]
mod native;
pub mod source;
#[cfg(feature = "encoders")]
mod text;
#[cfg(feature = "encoders")]
pub mod vector_math;

pub use crate::meta::encoder::{
    ComputeType, DeviceSpec, EncoderOptions, EncoderRecord, FieldEncoders, Pooling,
};
#[cfg(feature = "encoders")]
pub use bind::{embedded_dir, prepare_encoders, EncoderChoice, Role};
pub use source::{ModelDefaults, ModelDir};
#[cfg(feature = "encoders")]
pub use text::{TextEncoder, DEFAULT_BATCH_SIZE, SUPPORTED_MODEL_TYPES};

/// Directory, relative to the database, that holds embedded model copies (one sub-directory per
/// fingerprint's hex digits).
pub const EMBEDDED_MODELS_DIR: &str = ".models";
