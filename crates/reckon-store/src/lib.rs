//! `reckon-store`: reckon's durable store.
//!
//! It owns everything that must survive a crash: the raw log of events (indexed by
//! stream, series key and event time, so one window's events are one range scan), the
//! journal that says what to replay after restoring a checkpoint, every version of every
//! result (the revision history), the pipelines' checkpoints, dead letters, and the ids
//! seen for de-duplication.
//!
//! A [`CommitBatch`] (events, the results they produced, a checkpoint...) is written in
//! one atomic storage-engine batch and fsync'd before [`Store::commit`] returns, so a
//! result is never durable without the events it was computed from (seed 000's first
//! failure mode). Concurrent commits share one fsync (group commit). A failed write or
//! fsync poisons the store: it refuses every later commit until reopened.
//!
//! The engine underneath is [fjall](https://docs.rs/fjall) 3, a pure-Rust LSM tree. The
//! on-disk format (keyspaces, key and value encodings, format version, what is pruned
//! when) is specified in `docs/storage.md`.
//!
//! ```
//! use reckon_core::{Event, EventTime, Key, PartitionId, ProcessingTime, Value};
//! use reckon_store::{CommitBatch, RawRecord, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let key = Key::from_tags([("i", "7")])?;
//! let event = Event {
//!     stream: "water_level".into(),
//!     key: key.clone(),
//!     time: EventTime::from_secs(60),
//!     id: None,
//!     fields: vec![("level".into(), Value::F64(4.2))],
//! };
//! let committed = store.commit(CommitBatch {
//!     events: vec![RawRecord { partition: PartitionId(0), ingested_at: ProcessingTime::from_secs(61), event }],
//!     ..CommitBatch::default()
//! })?;
//! assert_eq!((committed.first_seq, committed.last_seq), (1, 1));
//! let window = store.raw_range("water_level", &key, EventTime::from_secs(0), EventTime::from_secs(3600))?;
//! assert_eq!(window.len(), 1);
//! # Ok(())
//! # }
//! ```

mod block;
mod colsets;
mod commit;
pub mod error;
mod keys;
mod raw;
mod store;
mod values;

pub use error::{Error, Result};
pub use store::{DELIVERIES_KEPT, RETENTION_ROWS_PER_COMMIT, Staged, Store};

use reckon_core::{DeadLetterReason, Event, EventTime, PartitionId, ProcessingTime};
use std::sync::Arc;

/// The on-disk format version this build writes and reads. A store written with a newer
/// version is refused with [`Error::FormatTooNew`]; see `docs/storage.md`.
/// Version 2 added the change feed (`changes`) and the sinks' cursors and delivery log;
/// version 3 stores the raw log as columnar blocks (one per stream, key and commit
/// batch) whose keys the journal names; version 4 stores each pipeline's column names
/// once (`meta/colset/...`) and names them by id in its result rows. Older stores are
/// migrated on open.
pub const FORMAT_VERSION: u32 = 4;

/// Everything one atomic, durable commit writes. Each part may be empty.
#[derive(Clone, Debug, Default)]
pub struct CommitBatch {
    /// Appended to the raw log and the journal in this order (one sequence number
    /// each); their ids are recorded for de-duplication.
    pub events: Vec<RawRecord>,
    /// Journaled processing-time advances with no event, `(pipeline, now)`: replaying
    /// the journal must advance the pipeline at the same points as the first run. Each
    /// gets a sequence number after the batch's events.
    pub ticks: Vec<(Arc<str>, ProcessingTime)>,
    /// Results, upserted on `(pipeline, key, window start)`. An emission is stored only
    /// if its version is newer than the newest stored version of its window; an older
    /// or equal version is ignored, so replays are harmless.
    pub emissions: Vec<reckon_core::Emission>,
    /// Events kept out of every result, with the reason.
    pub dead_letters: Vec<DeadLetter>,
    /// Replaces each named pipeline's checkpoint. Journal entries no checkpoint still
    /// needs are pruned by this commit (see [`Store::commit`]).
    pub checkpoints: Vec<Checkpoint>,
    /// Deletes each named pipeline's checkpoint (an operator that stopped: its
    /// checkpoint would hold the journal back for good). A checkpoint of the same
    /// name in [`CommitBatch::checkpoints`] wins.
    pub dropped_checkpoints: Vec<Arc<str>>,
    /// Sink deliveries (a webhook's messages): each moves its sink's cursor and records
    /// the delivery, pruning the sink's deliveries beyond [`DELIVERIES_KEPT`]. Several
    /// for one sink in a group are applied in order (the last cursor wins).
    pub deliveries: Vec<Delivery>,
    /// Definitions (tenants, tokens, pipelines created by API): `(key, Some(value))`
    /// puts, `(key, None)` removes, in the `catalog` keyspace; the caller owns the
    /// encoding. Applied in order (the last write of a key in a group wins).
    pub catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Retention, `(stream, before)`: the stream's raw events with event time
    /// `< before` are deleted, with their ids (unless a newer event with the id is
    /// kept). The committer deletes at most [`RETENTION_ROWS_PER_COMMIT`] rows per
    /// commit group and carries the rest over to later commits
    /// ([`Committed::retention_pending`]); see [`Store::apply_retention`].
    pub retention: Vec<(Arc<str>, EventTime)>,
    /// The caller checked every event id against [`Store::ids_seen`] as the store's
    /// only writer and none was stored: the committer records the ids without reading
    /// them again (one index lookup per id saved). Ids repeated within a commit group
    /// are still resolved by the committer. Leave `false` unless that holds: a stored id
    /// would then get this event's time even if the stored one is newer.
    pub ids_checked: bool,
}

impl CommitBatch {
    /// Whether the batch writes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.ticks.is_empty()
            && self.emissions.is_empty()
            && self.dead_letters.is_empty()
            && self.checkpoints.is_empty()
            && self.dropped_checkpoints.is_empty()
            && self.deliveries.is_empty()
            && self.catalog.is_empty()
            && self.retention.is_empty()
    }
}

/// One delivery of a sink (a webhook message), committed with [`CommitBatch::deliveries`]:
/// the sink's cursor moves to `cursor` and the delivery record is stored, atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The sink's name.
    pub sink: Arc<str>,
    /// The delivery number (the sink's last delivery becomes this).
    pub id: u64,
    /// Every change up to this number has been handled by the sink.
    pub cursor: u64,
    /// The delivery record as the sink encodes it (the webhook sink: JSON).
    pub record: Vec<u8>,
}

/// One event as it was ingested: where from and when.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRecord {
    /// The source partition it came from (watermarks are per partition).
    pub partition: PartitionId,
    /// Processing time of its arrival.
    pub ingested_at: ProcessingTime,
    /// The event.
    pub event: Event,
}

/// One journal entry: what a pipeline must be fed again, in sequence order, after
/// restoring a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalEntry {
    /// An event was ingested.
    Event(RawRecord),
    /// Processing time advanced with no event.
    Tick {
        /// The pipeline that was advanced.
        pipeline: Arc<str>,
        /// The processing time it was advanced to.
        at: ProcessingTime,
    },
}

/// A pipeline's checkpoint: an engine snapshot and how much of the journal it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The pipeline.
    pub pipeline: Arc<str>,
    /// The snapshot includes the effect of every journal entry with a sequence number
    /// `<= seq`; recovery replays [`Store::journal_after`]`(seq)`.
    pub seq: u64,
    /// The engine snapshot (`reckon_core::Pipeline::snapshot`), stored as is.
    pub snapshot: Vec<u8>,
}

/// An event kept out of every result, with the reason (nothing is dropped silently).
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The pipeline that refused it.
    pub pipeline: Arc<str>,
    /// The stream it came from (dead letters are listed per stream).
    pub stream: Arc<str>,
    /// The event.
    pub event: Event,
    /// A short machine-readable kind, e.g. `beyond_retention` or `unwindowable`.
    pub kind: String,
    /// The reason in words.
    pub reason: String,
    /// Processing time when it was dead-lettered.
    pub at: ProcessingTime,
}

impl DeadLetter {
    /// A dead letter for an engine outcome, with the reason's kind and message.
    pub fn from_reason(
        pipeline: Arc<str>,
        event: Event,
        reason: &DeadLetterReason,
        at: ProcessingTime,
    ) -> DeadLetter {
        DeadLetter {
            pipeline,
            stream: event.stream.clone(),
            kind: reason_kind(reason).to_string(),
            reason: reason.to_string(),
            event,
            at,
        }
    }
}

/// The short kind string stored for a dead-letter reason.
pub fn reason_kind(reason: &DeadLetterReason) -> &'static str {
    match reason {
        DeadLetterReason::BeyondRetention { .. } => "beyond_retention",
        DeadLetterReason::Unwindowable { .. } => "unwindowable",
    }
}

/// What a commit was assigned: the journal sequence numbers of its events and ticks,
/// `first_seq..=last_seq` (events first, then ticks, in batch order). A commit with no
/// events and no ticks gets the empty range `first_seq == last_seq + 1`, with
/// `last_seq` the store's last sequence number at that commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The sequence number of the commit's first journal entry.
    pub first_seq: u64,
    /// The sequence number of its last journal entry.
    pub last_seq: u64,
    /// The change-feed number of the last result it stored (the store's newest change
    /// if it stored none).
    pub last_change: u64,
    /// Raw rows deleted by retention of the streams this batch names in
    /// [`CommitBatch::retention`]: in this commit, plus what later commits deleted for
    /// carried-over retention of those streams since the last batch naming them was
    /// answered. 0 for a batch with no retention.
    pub retention_deleted: u64,
    /// Whether retention of a stream this batch names is not finished yet (more rows
    /// than one commit deletes): later commits carry on with it. Committing the same
    /// entry again drives it on.
    pub retention_pending: bool,
}

/// One read of the change feed (see [`Store::changes_page`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangesPage {
    /// The matching changes, in order, each with its number.
    pub changes: Vec<(u64, reckon_core::Emission)>,
    /// The last change number examined; resume after it.
    pub scanned_to: u64,
}

/// Where a sink (a webhook) is in the change feed, durably.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkState {
    /// Every change up to this number has been handled (delivered or given up on).
    pub cursor: u64,
    /// The number of the sink's last recorded delivery (0 if none).
    pub last_delivery: u64,
}

/// Counters of the store since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Commit batches made durable.
    pub commits: u64,
    /// fsyncs done for them (fewer than `commits` when group commit shared them).
    pub fsyncs: u64,
    /// Raw rows deleted by retention.
    pub retention_deleted: u64,
}
