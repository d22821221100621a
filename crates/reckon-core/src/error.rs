//! The one error type of `reckon-core`.
//!
//! Late data is not an error: it is an [`crate::Outcome`]. Errors here are bad
//! configuration, bad input that slipped past a parser, or a snapshot the engine cannot
//! read. A broken invariant is a bug and says so in an [`Error::Internal`].

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pipeline or window specification is inconsistent; the message names the setting.
    #[error("invalid pipeline spec: {0}")]
    InvalidSpec(String),
    /// An event is malformed (a duplicate tag, a non-finite number...).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A time zone name is not in the IANA database reckon carries.
    #[error("unknown time zone `{name}`: {source}")]
    UnknownTimeZone {
        /// The name asked for.
        name: String,
        /// What jiff said.
        source: jiff::Error,
    },
    /// Calendar arithmetic left the representable range (before 1678 or after 2262).
    #[error("time {nanos}ns is outside the calendar range reckon supports: {reason}")]
    TimeOutOfRange {
        /// The event time in nanoseconds.
        nanos: i64,
        /// What went wrong.
        reason: String,
    },
    /// A snapshot cannot be restored.
    #[error("cannot restore snapshot: {0}")]
    Snapshot(String),
    /// A broken invariant: this is a bug in reckon, please report it.
    #[error("internal error (this is a bug in reckon): {0}")]
    Internal(String),
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
