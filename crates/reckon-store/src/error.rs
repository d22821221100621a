//! The one error type of `reckon-store`.
//!
//! Reading or writing the store fails for three kinds of reasons: the files on disk
//! belong to a newer reckon or are damaged (`FormatTooNew`, `Corrupt`), the disk failed
//! (`Fjall`, `Io`, and then `Poisoned` for every later write), or the store was closed.

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store was written by a newer reckon whose on-disk format this build cannot
    /// read. Nothing was changed on disk.
    #[error(
        "store format {found} is newer than this reckon supports ({supported}); upgrade reckon"
    )]
    FormatTooNew {
        /// The format version recorded in the store.
        found: u32,
        /// The newest format version this build reads and writes.
        supported: u32,
    },
    /// A write or fsync failed earlier: the store refuses every later commit, because
    /// what is on disk after a failed fsync is unknown. Reopen the store to recover from
    /// the last durable state. The message is the original failure.
    #[error(
        "store is poisoned by an earlier failed write and refuses further writes; reopen it: {0}"
    )]
    Poisoned(String),
    /// A stored key or value cannot be decoded: the files are damaged or were written by
    /// something other than reckon.
    #[error("corrupt store: {what}: {reason}")]
    Corrupt {
        /// What was being read (keyspace and item).
        what: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// Another process (another `reckon serve`, `ingest`, `verify`...) has the store
    /// open: fjall allows one process at a time.
    #[error(
        "another reckon process holds the store at {path}; stop it first (or use another [store] path)"
    )]
    Locked {
        /// The store's directory.
        path: std::path::PathBuf,
    },
    /// The storage engine (fjall) failed.
    #[error("storage engine error: {0}")]
    Fjall(#[from] fjall::Error),
    /// A file system operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A value could not be encoded (postcard); should not happen for reckon's types.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The store is shutting down, or a commit group ended without answering (a bug
    /// in reckon).
    #[error("store is closed: {0}")]
    Closed(String),
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
