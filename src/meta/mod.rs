//! What the manifest records, as plain serde data shared by every layer: the manifest body
//! ([`manifest`]), index parameters ([`index`]) and encoder records and options ([`encoder`]).
//!
//! This module holds no algorithm and touches no file: `format` turns these types into bytes and
//! back, the writer edits them, and `hnsw`, `encode` and `search` read them. It never imports those
//! layers (checked by `tools/check_layers.py`).

pub mod encoder;
pub mod index;
pub mod manifest;
pub mod plaid;

pub use encoder::{
    ComputeType, DeviceSpec, EncoderOptions, EncoderRecord, FieldEncoders, LateInteraction,
    OutputKind, Pooling, QueryExpansion, Role,
};
pub use index::HnswParams;
pub use manifest::{
    CollectionEntry, DeletesEntry, EncoderVersion, Manifest, Piece, SegmentEntry, Versions,
};
pub use plaid::PlaidParams;
