//! Errors of training: vellum's own (database, encoders, input files), candle's (tensor
//! arithmetic), and training-specific ones that name the file, line and field at fault.

use std::path::{Path, PathBuf};

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

/// What went wrong while training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// From the database or its encoders (opening, search, tokenisation).
    #[error(transparent)]
    Vellum(#[from] vellum::Error),
    /// A tensor operation failed (a shape bug or out of memory); the message is candle's.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A training-data file is malformed at `line` (1-based; 0 for the whole file).
    #[error("{}:{line}: {detail}", file.display())]
    Data {
        /// The file.
        file: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong and what was expected.
        detail: String,
    },
    /// A setting or a model does not fit the field being trained.
    #[error("{0}")]
    Invalid(String),
    /// A model or checkpoint file cannot be used.
    #[error("{}: {detail}", path.display())]
    Model {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Training was interrupted (Ctrl-C): after writing a checkpoint (full training, which
    /// resumes from it), or before writing anything (query-only training, which is short).
    #[error("interrupted; {}", match .checkpoint {
        Some(p) => format!("the last checkpoint is {}", p.display()),
        None => "nothing was written".to_string(),
    })]
    Interrupted {
        /// The checkpoint written, if any.
        checkpoint: Option<PathBuf>,
    },
}

impl TrainError {
    pub(crate) fn data(file: &Path, line: usize, detail: impl Into<String>) -> Self {
        TrainError::Data {
            file: file.to_path_buf(),
            line,
            detail: detail.into(),
        }
    }

    pub(crate) fn model(path: &Path, detail: impl Into<String>) -> Self {
        TrainError::Model {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
