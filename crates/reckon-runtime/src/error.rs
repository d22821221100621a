//! The one error type of `reckon-runtime`.

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the file, line or setting.
    #[error("configuration: {0}")]
    Config(String),
    /// The engine refused something (a spec, a snapshot).
    #[error(transparent)]
    Engine(#[from] reckon_core::Error),
    /// The store failed (I/O, a poisoned store after a failed fsync, a newer format).
    #[error(transparent)]
    Store(#[from] reckon_store::Error),
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
