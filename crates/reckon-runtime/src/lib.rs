//! `reckon-runtime`: pipelines from configuration, driven from sources through the
//! engine into the store.
//!
//! Today: the configuration file (`reckon.toml`). The driver around the store comes
//! with the store crate.

pub mod config;
pub mod error;

pub use config::{Config, PipelineConfig, StreamConfig, TimeFormat};
pub use error::{Error, Result};
