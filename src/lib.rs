//! # vellum
//!
//! An embedded search-index database for neural retrieval. A database is a directory of named
//! collections; each document has an id, stored text and JSON metadata, and a value for each of the
//! collection's vector fields: `dense` (one vector), `multi` (ColBERT-style token vectors) or
//! `tensor` (a fixed-shape array such as image patch features).
//!
//! * **Write path** — starts at [`Database::writer`]: a [`Writer`] buffers adds, upserts and
//!   deletes; [`Writer::commit`] publishes them atomically (new immutable segment files, then an
//!   atomic manifest swap). [`Writer::compact`] merges segments.
//! * **Read path** — starts at [`Database::snapshot`]: a [`Snapshot`] maps the segments of the last
//!   commit (validating headers only, so opening is instant whatever the size) and offers
//!   [`Collection::search`] and zero-copy document access ([`Collection::get`]).
//! * **Ingest of precomputed data** — [`ingest`] reads JSONL documents and `.npy` / safetensors
//!   vectors with errors that name the file, row and field.
//! * **Encoders** — [`encode`] (feature `encoders`): a dense field names its passage and query
//!   encoders (BERT-family checkpoints); `ingest::pipeline` encodes documents given as text,
//!   `Collection::search_text` encodes queries with the field's own query encoder.
//! * **Evaluation** — [`eval`] computes trec_eval's measures (equal to `pytrec_eval`) and DPR
//!   answer accuracy, and reads, writes, converts and merges run files.
//! * **Integrity** — [`verify::verify_database`] checks every checksum and structure.
//! * **Storage** — every durable file operation goes through a [`storage::Directory`]: the file
//!   system, or [`storage::MemDirectory`] (in memory, with simulated power cuts).
//!
//! The modules are layered (see `ARCHITECTURE.md`): [`meta`] (what the manifest records),
//! [`storage`] and [`format`](mod@format) (bytes) at the bottom; [`linalg`], [`hnsw`] and [`encode`] above;
//! the engine ([`Database`], [`Snapshot`], [`Collection`], [`Writer`]) and [`search`] on top.
//!
//! The on-disk format is specified in `format-spec/` (see [`mod@format`]).
//!
//! ```
//! use vellum::*;
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::create(dir.path()).unwrap();
//! let mut w = db.writer().unwrap();
//! let schema = Schema::new().with_field(FieldSpec::parse("emb:dense:3:f32:cosine").unwrap());
//! w.create_collection("docs", schema).unwrap();
//! w.add("docs", Document::new("d1").with_text("first").with_dense("emb", vec![1.0, 0.0, 0.0])).unwrap();
//! w.add("docs", Document::new("d2").with_text("second").with_dense("emb", vec![0.0, 1.0, 0.0])).unwrap();
//! w.commit().unwrap();
//!
//! let snap = db.snapshot().unwrap();
//! let docs = snap.collection("docs").unwrap();
//! let hits = docs.search(&SearchRequest::dense("emb", &[0.1, 0.9, 0.0], 1)).unwrap();
//! assert_eq!(hits[0][0].id, "d2");
//! assert_eq!(docs.doc(hits[0][0].address).unwrap().text().unwrap(), "second");
//! ```

#![deny(missing_docs)]

pub mod backup;
pub mod collection;
pub mod db;
pub mod document;
pub mod dtype;
pub mod encode;
pub mod error;
pub mod eval;
pub mod filter;
pub mod format;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod hnsw;
pub mod ingest;
pub mod interop;
pub mod linalg;
pub mod meta;
pub mod plaid;
pub mod query_set;
pub mod schema;
pub mod search;
pub mod shard_set;
pub mod snapshot;
pub mod storage;
pub mod verify;
pub mod writer;

pub use backup::BackupInfo;
pub use collection::{
    Collection, CollectionStats, DatabaseStats, DocAddress, DocRef, MultiRef, TensorRef,
};
pub use db::Database;
pub use document::{Document, FieldValue};
pub use dtype::{DType, Metric, VectorCow, VectorRef};
pub use error::{Error, MissingInput, Result};
pub use query_set::{QueryBatch, QuerySet, VectorQueryFiles};
pub use schema::{FieldKind, FieldSpec, Schema};
pub use search::{Combine, Hit, Queries, Rerank, SearchRequest, Strategy};
pub use shard_set::ShardSet;
pub use snapshot::Snapshot;
pub use writer::{CommitInfo, CompactInfo, Writer, WriterOptions};
