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
    /// The stream's pipelines were finished (`reckon ingest --finish` closed every
    /// window for good): an event would only be dead-lettered, so ingest refuses.
    #[error(
        "stream `{stream}` is finished: pipeline `{pipeline}` was closed for good by `reckon ingest --finish` (its watermark is +inf, so every new event would be dead-lettered); run `reckon repair --config <file>` to reopen the store, or ingest into a fresh store"
    )]
    Finished {
        /// The stream written to.
        stream: String,
        /// A finished pipeline or reconciliation reading it.
        pipeline: String,
    },
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
