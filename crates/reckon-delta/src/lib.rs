//! `reckon-delta`: which partitions of a Delta Lake table need a backfill, from its
//! transaction log alone (seed 002).
//!
//! - [`log`]: the log reader (JSON commits, `_last_checkpoint`, classic and multi-part
//!   Parquet checkpoints, the protocol).
//! - [`plan`]: every change since a cursor version, classified per partition (late
//!   append, rewrite, overwrite, delete, compaction), and the partitions to backfill.

mod checkpoint;
pub mod error;
pub mod log;
pub mod plan;

pub use error::{Error, Result};
pub use log::DeltaLog;
pub use plan::{Change, ChangeKind, Plan, PlanOptions, plan};
