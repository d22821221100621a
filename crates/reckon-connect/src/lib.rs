//! `reckon-connect`: wire formats and the systems events come from and results go to.
//! Each system gets its own module (`nats`, `mqtt`, `postgres`, `webhook`, `delta`,
//! `file`) as the connectors arrive; today the JSON event format.

pub mod json;

pub use json::{DecodeError, JsonDecoder};
