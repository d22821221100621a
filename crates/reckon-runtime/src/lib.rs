//! `reckon-runtime`: pipelines from configuration, driven from sources through the
//! engine into the store.
//!
//! - [`config`]: the configuration file (`reckon.toml`).
//! - [`runtime`]: the driver: batches through the engines into the store, the cold
//!   path, checkpoints, restore and replay.

pub mod config;
pub mod connectors;
pub mod error;
pub mod repair;
pub mod runtime;

pub use config::{
    AlertConfig, BackfillConfig, Config, Detail, EventFormat, FutureLimit, OperatorConfig,
    PipelineConfig, ReconcileConfig, ReconcileSide, ServerConfig, StreamConfig, TimeFormat,
    WebhookConfig, WebhookFormat, WebhookNotify, check_tenant_name,
};
pub use connectors::{PartitionBy, SinkConfig, SinkKind, SourceConfig, SourceFormat, SourceKind};
pub use error::{Error, Result};
pub use repair::{RepairReport, StreamRepair, repair};
pub use runtime::{
    DeadLetterCount, IngestReport, IngestRequest, PipelineReport, Reconfigured, Runtime,
    RuntimeOptions,
};
