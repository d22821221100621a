//! `reckon-connect`: wire formats and the systems events come from and results go to.
//! Each system gets its own module (`nats`, `mqtt`, `postgres`, `webhook`, `delta`,
//! `file`) as the connectors arrive; today the JSON, CSV and InfluxDB line protocol
//! event formats and the webhook sink.

mod common;
pub mod csv;
pub mod json;
mod json_fast;
pub mod lineproto;
pub mod webhook;

pub use json::{DecodeError, JsonDecoder};
