//! vellum's errors as Python exceptions.
//!
//! The exception classes live in `vellum/errors.py` (so they can inherit from both `VellumError`
//! and the matching built-in: `ValueError`, `LookupError`, `OSError`); each [`vellum::Error`]
//! variant maps to one class, and the exception's `kind` attribute names the variant.

use pyo3::prelude::*;

/// The Python class for an error, and the variant's name.
fn class_of(e: &vellum::Error) -> (&'static str, &'static str) {
    use vellum::Error as E;
    match e {
        E::Io { .. } => ("VellumIOError", "Io"),
        E::Corrupt { .. } => ("CorruptError", "Corrupt"),
        E::UnsupportedVersion { .. } => ("CorruptError", "UnsupportedVersion"),
        E::Locked { .. } => ("LockedError", "Locked"),
        E::NotADatabase { .. } => ("NotFoundError", "NotADatabase"),
        E::AlreadyExists { .. } => ("AlreadyExistsError", "AlreadyExists"),
        E::NoSuchCollection { .. } => ("NotFoundError", "NoSuchCollection"),
        E::NoSuchField { .. } => ("NotFoundError", "NoSuchField"),
        E::Schema(_) => ("InvalidInputError", "Schema"),
        E::InvalidInput(_) => ("InvalidInputError", "InvalidInput"),
        E::DuplicateId { .. } => ("InvalidInputError", "DuplicateId"),
        E::BadInputFile { .. } => ("InvalidInputError", "BadInputFile"),
        E::Model { .. } => ("EncoderError", "Model"),
        E::Encoder { .. } => ("EncoderError", "Encoder"),
        E::NoEncoder { .. } => ("EncoderError", "NoEncoder"),
        E::FeatureDisabled { .. } => ("VellumError", "FeatureDisabled"),
        E::Interrupted(_) => ("Interrupted", "Interrupted"),
        E::Device(_) => ("VellumError", "Device"),
        E::WrongFieldKind { .. } => ("InvalidInputError", "WrongFieldKind"),
        E::InvalidQuery(_) => ("InvalidInputError", "InvalidQuery"),
        E::InvalidParameter { .. } => ("InvalidInputError", "InvalidParameter"),
        E::MismatchedShards(_) => ("ShardError", "MismatchedShards"),
        E::MissingInput { .. } => ("InvalidInputError", "MissingInput"),
        E::WriterFailed(_) => ("VellumError", "WriterFailed"),
        E::Shard { .. } => ("ShardError", "Shard"),
        _ => ("VellumError", "Other"),
    }
}

/// Converts a library error into the Python exception of `vellum.errors`.
pub fn to_py(e: vellum::Error) -> PyErr {
    let (class, kind) = class_of(&e);
    raise(class, kind, e.to_string())
}

/// The exception `class` of `vellum.errors` with `message` and `kind`.
pub fn raise(class: &str, kind: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let made = (|| -> PyResult<PyErr> {
            let cls = py.import("vellum.errors")?.getattr(class)?;
            let exc = cls.call1((message.clone(),))?;
            exc.setattr("kind", kind)?;
            Ok(PyErr::from_value(exc))
        })();
        made.unwrap_or_else(|_| pyo3::exceptions::PyRuntimeError::new_err(message))
    })
}

/// An input error raised by the binding itself (a wrong shape, a missing argument).
pub fn invalid(message: impl Into<String>) -> PyErr {
    to_py(vellum::Error::InvalidInput(message.into()))
}

/// `?`-friendly conversion of library results.
pub trait IntoPy<T> {
    /// The result with its error converted.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for vellum::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
