//! The one error type of `reckon-delta`.

use std::path::PathBuf;

/// Errors reading a Delta log or planning from it; each names the file or table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `path` has no `_delta_log` directory.
    #[error("{0} is not a Delta table (it has no _delta_log directory)")]
    NotATable(PathBuf),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A commit line (or checkpoint row) is not a valid action.
    #[error("{path} line {line}: {source}")]
    Json {
        /// The commit file.
        path: PathBuf,
        /// 1-based line (row of a checkpoint).
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A checkpoint could not be read as Parquet.
    #[error("checkpoint {path}: {message}")]
    Parquet {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The table needs something this reader does not support.
    #[error(
        "{table}: the table needs {what}, which this reader does not support; refusing to plan from a log it may misread"
    )]
    Unsupported {
        /// The table.
        table: PathBuf,
        /// What.
        what: String,
    },
    /// The log no longer holds commits the plan needs.
    #[error("{table}: {message}")]
    Gap {
        /// The table.
        table: PathBuf,
        /// What is missing and what to do.
        message: String,
    },
    /// The table is not partitioned by the column planning needs, or another misuse.
    #[error("{0}")]
    Plan(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
