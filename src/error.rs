//! The one error type of the library.
//!
//! Errors are split by who can fix them: the caller (bad input, wrong use of the API), the operator
//! (a locked database, a full disk, a missing file) or nobody but a restore from backup (a corrupt
//! file). Every message names the file, field, line or offset involved and, where it helps, what was
//! expected and what was found.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in vellum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed (operator: check the path, permissions, free space).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file on disk is damaged or was not written by vellum (restore it from a copy).
    #[error("corrupt file {path}: {section} at byte offset {offset}: {detail}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The header, section or structure that failed validation.
        section: String,
        /// Byte offset within the file where the problem was found.
        offset: u64,
        /// What was expected and what was found.
        detail: String,
    },

    /// The file was written by a format version this build cannot read.
    #[error("{path}: format version {found} is not supported (this build reads versions {min}..={max}); the file was written by a newer vellum: upgrade vellum")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Oldest version readable.
        min: u32,
        /// Newest version readable.
        max: u32,
    },

    /// Another process holds the writer lock (operator: wait, or stop the other writer).
    #[error("database {path} is locked by another writer ({holder}); only one writer may be open at a time")]
    Locked {
        /// The database directory.
        path: PathBuf,
        /// What the lock file says about its holder (pid, host), if readable.
        holder: String,
    },

    /// No database exists at the path.
    #[error("no vellum database at {path} (missing MANIFEST)")]
    NotADatabase {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// A database already exists where one was to be created.
    #[error("a vellum database already exists at {path}")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },

    /// A collection name that the database does not hold.
    #[error("no collection named {name:?} (the database has: {available})")]
    NoSuchCollection {
        /// The name asked for.
        name: String,
        /// The collections that exist, comma separated.
        available: String,
    },

    /// A field name that the collection's schema does not declare.
    #[error("collection {collection:?} has no field {field:?} (fields: {available})")]
    NoSuchField {
        /// The collection.
        collection: String,
        /// The field asked for.
        field: String,
        /// The fields that exist, comma separated.
        available: String,
    },

    /// A schema or field specification is invalid (caller).
    #[error("invalid schema: {0}")]
    Schema(String),

    /// A document or query does not fit the schema (caller): wrong dimension, NaN, empty id, ...
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A document id already exists in the collection (use upsert to replace it).
    #[error("duplicate id {id:?} in collection {collection:?}: {detail}")]
    DuplicateId {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// Where the earlier copy is (committed, or earlier in this batch / input file).
        detail: String,
    },

    /// An input file (JSONL, .npy, safetensors, id list) is malformed (caller).
    #[error("{path}:{location}: {detail}")]
    BadInputFile {
        /// The input file.
        path: PathBuf,
        /// Line, row or tensor name.
        location: String,
        /// What was expected and what was found.
        detail: String,
    },

    /// A model folder or Hugging Face model cannot be used as an encoder (caller: check the
    /// folder, or pick a supported BERT-family checkpoint).
    #[error("model {path}: {detail}")]
    Model {
        /// The model folder (or the model id when it could not be resolved to a folder).
        path: PathBuf,
        /// What is missing or wrong, and what was expected.
        detail: String,
    },

    /// A field's encoder is missing, or a query encoder does not match the one the field was
    /// built with (caller: use the collection's own encoder).
    #[error("field {field:?} of collection {collection:?}: {detail}")]
    Encoder {
        /// The collection.
        collection: String,
        /// The dense field.
        field: String,
        /// What does not match or is missing.
        detail: String,
    },

    /// The operation needs a cargo feature this build was compiled without.
    #[error(
        "{what} needs vellum built with the `{feature}` feature (the `vellum` CLI enables it)"
    )]
    FeatureDisabled {
        /// The operation.
        what: String,
        /// The cargo feature.
        feature: &'static str,
    },

    /// The operation was interrupted (Ctrl-C); everything committed before is kept.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A GPU could not be used: no CUDA driver, cuBLAS or NVRTC on this machine, no such
    /// device, or a CUDA call that failed (feature `cuda`).
    #[error("GPU: {0}")]
    Device(String),

    /// A field is of another kind than the operation needs (caller): an HNSW index or encoders on
    /// a non-dense field, a multi-vector accessor on a dense field, tensor queries, ...
    #[error("field {field:?} of collection {collection:?} is a {found} field; {needed}")]
    WrongFieldKind {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The field's kind (`dense`, `multi` or `tensor`).
        found: &'static str,
        /// What the operation needs, and why.
        needed: String,
    },

    /// A search request or its queries are invalid (caller): wrong dimension, non-finite values,
    /// a zero vector under cosine, ...
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// A parameter or option is invalid (caller): an HNSW or encoder option, `k`, a measure name.
    #[error("invalid parameter {name}: {detail}")]
    InvalidParameter {
        /// The parameter, as the caller spelled it.
        name: String,
        /// What was given and what is accepted.
        detail: String,
    },

    /// The databases of a shard set do not hold shards of one collection (caller): different
    /// field specifications or encoders, or overlapping documents.
    #[error("mismatched shards: {0}")]
    MismatchedShards(String),

    /// A field has no encoder where one is needed (caller: give the field's values as vectors, or
    /// bind an encoder to it).
    #[error("field {field:?} of collection {collection:?}: no encoder is bound to this field (fields with encoders: {available}); give its values as vectors, or bind an encoder to it")]
    NoEncoder {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The fields that have encoders, comma separated (`none` when none).
        available: String,
    },

    /// An ingest gives no input for a field (caller).
    #[error("field {field:?} ({spec}) of collection {collection:?} has no input: {needed}")]
    MissingInput {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The field's specification.
        spec: String,
        /// What input the field needs.
        needed: MissingInput,
    },

    /// A commit was published but the writer could not load it afterwards (operator: the commit
    /// is durable; open a new writer).
    #[error("the writer cannot continue: {0}; open a new writer")]
    WriterFailed(String),

    /// An error about one database of a shard set.
    #[error("database {database}: {source}")]
    Shard {
        /// The database.
        database: PathBuf,
        /// The error.
        #[source]
        source: Box<Error>,
    },
}

/// The input an ingest lacks for a field ([`Error::MissingInput`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingInput {
    /// The field's vectors (a dense field could instead be encoded by a bound encoder).
    Vectors {
        /// Whether binding an encoder would also do (dense fields).
        encodable: bool,
    },
    /// Per-document token counts of a multi-vector field.
    Lengths,
}

impl std::fmt::Display for MissingInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissingInput::Vectors { encodable: true } => f.write_str(
                "give its vectors, or bind an encoder to it to encode the documents' text",
            ),
            MissingInput::Vectors { encodable: false } => f.write_str("give its vectors"),
            MissingInput::Lengths => {
                f.write_str("a multi-vector field needs per-document token counts")
            }
        }
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`Error::Corrupt`].
    pub fn corrupt(
        path: impl Into<PathBuf>,
        section: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            section: section.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// Builds a [`Error::BadInputFile`].
    pub fn bad_input(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Error::BadInputFile {
            path: path.into(),
            location: location.into(),
            detail: detail.into(),
        }
    }

    /// Builds a [`Error::InvalidParameter`].
    pub fn parameter(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// Builds a [`Error::WrongFieldKind`].
    pub fn wrong_kind(
        collection: impl Into<String>,
        field: impl Into<String>,
        found: &'static str,
        needed: impl Into<String>,
    ) -> Self {
        Error::WrongFieldKind {
            collection: collection.into(),
            field: field.into(),
            found,
            needed: needed.into(),
        }
    }

    /// True when the error means a file on disk is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. }
        )
    }
}
