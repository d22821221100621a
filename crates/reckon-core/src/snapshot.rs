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
        encode(MAGIC, SNAPSHOT_FORMAT, &self.snapshot_parts()?)
    }

    /// Restores a pipeline from a snapshot taken with the same spec.
    pub fn restore(spec: PipelineSpec, bytes: &[u8]) -> Result<Pipeline> {
        let state: StateOwned = decode(bytes, MAGIC, SNAPSHOT_FORMAT, "snapshot")?;
        if state.spec != spec_fingerprint(&spec)? {
            return Err(Error::Snapshot(format!(
                "the snapshot was taken with a different spec of pipeline `{}`; state cannot be carried over to changed windows or aggregates",
                spec.name
            )));
        }
        Pipeline::from_parts(spec, state)
    }
}

/// `magic`, the format version (u16 LE) and the postcard encoding of `state`: the
/// layout of every snapshot (pipelines' and reconciliations').
pub(crate) fn encode<T: Serialize>(magic: &[u8; 8], format: u16, state: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(magic);
    out.extend_from_slice(&format.to_le_bytes());
    let body = postcard::to_stdvec(state)
        .map_err(|e| Error::Internal(format!("snapshot encoding failed: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The state of a snapshot written by [`encode`]: refuses other magic bytes (`what`
/// names the kind of snapshot), versions 0 and newer than `newest`, and a corrupt body.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    magic: &[u8; 8],
    newest: u16,
    what: &str,
) -> Result<T> {
    let rest = bytes
        .strip_prefix(magic.as_slice())
        .ok_or_else(|| Error::Snapshot(format!("not a reckon {what} (bad magic bytes)")))?;
    let (ver, body) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| Error::Snapshot("truncated header".into()))?;
    let ver = u16::from_le_bytes(*ver);
    if ver > newest {
        return Err(Error::Snapshot(format!(
            "{what} format version {ver} is newer than this build of reckon reads ({newest}); upgrade reckon"
        )));
    }
    if ver == 0 {
        return Err(Error::Snapshot("format version 0 does not exist".into()));
    }
    postcard::from_bytes(body).map_err(|e| Error::Snapshot(format!("corrupt payload: {e}")))
}

/// A 64-bit fingerprint of a spec (xxh3 of its postcard encoding): the snapshot keeps
/// it to refuse being restored under a different spec.
pub(crate) fn spec_fingerprint<T: Serialize>(spec: &T) -> Result<u64> {
    let bytes = postcard::to_stdvec(spec)
        .map_err(|e| Error::Internal(format!("spec encoding failed: {e}")))?;
    Ok(xxhash_rust::xxh3::xxh3_64(&bytes))
}
