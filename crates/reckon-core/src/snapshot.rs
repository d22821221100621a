//! Snapshots of a pipeline's state, for checkpoints.
//!
//! Format (little-endian), documented in `docs/snapshot.md`:
//!
//! ```text
//! magic    8 bytes  "RKNSNAP\0"
//! version  u16      SNAPSHOT_FORMAT (1)
//! payload  postcard encoding of the state: spec fingerprint, watermark tracker, processing time,
//!          hot windows per key (in key index order), timers (sorted), next early
//!          emission, counters
//! ```
//!
//! A snapshot is only restored into the same spec: state aggregated under other
//! aggregates or windows would be silently wrong, so a different spec is refused, as
//! is a newer format version.

use crate::error::{Error, Result};
use crate::pipeline::{Counters, Pipeline, SeriesState, TimerState};
use crate::spec::PipelineSpec;
use crate::time::ProcessingTime;
use crate::watermark::WatermarkTracker;
use serde::{Deserialize, Serialize};

/// The magic bytes that start every snapshot.
pub const MAGIC: &[u8; 8] = b"RKNSNAP\0";
/// The snapshot format this build writes and the newest it reads.
pub const SNAPSHOT_FORMAT: u16 = 1;

#[derive(Serialize)]
pub(crate) struct StateRef<'a> {
    pub(crate) spec: u64,
    pub(crate) watermark: &'a WatermarkTracker,
    pub(crate) now: ProcessingTime,
    pub(crate) series: &'a [SeriesState],
    pub(crate) timers: Vec<TimerState>,
    pub(crate) next_early: Option<ProcessingTime>,
    pub(crate) counters: Counters,
}

#[derive(Deserialize)]
pub(crate) struct StateOwned {
    pub(crate) spec: u64,
    pub(crate) watermark: WatermarkTracker,
    pub(crate) now: ProcessingTime,
    pub(crate) series: Vec<SeriesState>,
    pub(crate) timers: Vec<TimerState>,
    pub(crate) next_early: Option<ProcessingTime>,
    pub(crate) counters: Counters,
}

impl Pipeline {
    /// Serialises the whole state. Equal states give equal bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        let body = postcard::to_stdvec(&self.snapshot_parts()?)
            .map_err(|e| Error::Internal(format!("snapshot encoding failed: {e}")))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a pipeline from a snapshot taken with the same spec.
    pub fn restore(spec: PipelineSpec, bytes: &[u8]) -> Result<Pipeline> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| Error::Snapshot("not a reckon snapshot (bad magic bytes)".into()))?;
        let (ver, body) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| Error::Snapshot("truncated header".into()))?;
        let ver = u16::from_le_bytes(*ver);
        if ver > SNAPSHOT_FORMAT {
            return Err(Error::Snapshot(format!(
                "format version {ver} is newer than this build of reckon reads ({SNAPSHOT_FORMAT}); upgrade reckon"
            )));
        }
        if ver == 0 {
            return Err(Error::Snapshot("format version 0 does not exist".into()));
        }
        let state: StateOwned = postcard::from_bytes(body)
            .map_err(|e| Error::Snapshot(format!("corrupt payload: {e}")))?;
        if state.spec != spec_fingerprint(&spec)? {
            return Err(Error::Snapshot(format!(
                "the snapshot was taken with a different spec of pipeline `{}`; state cannot be carried over to changed windows or aggregates",
                spec.name
            )));
        }
        Pipeline::from_parts(spec, state)
    }
}

/// A 64-bit fingerprint of a spec (xxh3 of its postcard encoding): the snapshot keeps
/// it to refuse being restored under a different spec.
pub(crate) fn spec_fingerprint(spec: &PipelineSpec) -> Result<u64> {
    let bytes = postcard::to_stdvec(spec)
        .map_err(|e| Error::Internal(format!("spec encoding failed: {e}")))?;
    Ok(xxhash_rust::xxh3::xxh3_64(&bytes))
}
