//! The webhook sink: tells an HTTP endpoint (a Slack channel, or a program) which
//! windows late data changed, and by how much.
//!
//! Seed 000 posted one Slack message per recomputed window with the measurement, the
//! window time and the old and new counts, and nothing else: no values, no versions,
//! no signature, no retry, and a message per window however many windows changed. This
//! module does the same job properly, in four independent pieces:
//!
//! - [`Digest`] collects [`Correction`]s and decides when a message is due: at most
//!   one per `digest_interval`, with each window once (its oldest previous result
//!   against its newest), and the change-feed range it covers so the caller can move
//!   its durable cursor after delivery. It is pure: time is handed in.
//! - [`payload`] renders the message: Slack mrkdwn for people or structured JSON for
//!   programs.
//! - [`signature`] / [`verify_signature`] sign the body Stripe-style
//!   (`X-Reckon-Signature: t=<unix s>,v1=<hex hmac-sha256>`), so a receiver can check
//!   that reckon sent it and reject replays of old messages.
//! - [`WebhookSender`] POSTs a body with retries (exponential backoff, `Retry-After`)
//!   and reports a [`DeliveryResult`] that can be stored and served as JSON.
//!
//! A caller (the server's notifier) reads the change feed, keeps what
//! [`WebhookSender::wants`], pushes it into a [`Digest`], and when
//! [`Digest::poll`] hands out a batch, renders it with [`WebhookSender::body`],
//! [`WebhookSender::deliver`]s it and persists the batch's `last_change` as its cursor.

mod digest;
mod payload;
mod sign;
mod sink;

pub use digest::{Digest, DigestBatch};
pub use payload::{AlertMeta, SLACK_MAX_WINDOWS, payload};
pub use sign::{DELIVERY_HEADER, SIGNATURE_HEADER, signature, verify_signature};
pub use sink::{DeliveryOutcome, DeliveryResult, WebhookSender};

use reckon_core::{Emission, EmissionKind};
use std::sync::Arc;

/// One emission a webhook is told about, with the version it replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    /// The emission's number in the change feed (increasing with every stored result).
    pub change: u64,
    /// The stream the pipeline reads (InfluxDB's measurement in seed 000).
    pub stream: Arc<str>,
    /// The new result of the window.
    pub emission: Emission,
    /// The result it replaced; `None` for a window's first result.
    pub previous: Option<Emission>,
}

impl Correction {
    /// Whether it is news under `notify = corrections`: late data changed a window (a
    /// `late` correction or a recompute) or a completeness period (its version 2 or
    /// later), or a reconciliation reported an id `missing` or `found`. Early previews,
    /// on-time results and first completeness counts are not.
    pub fn is_late(&self) -> bool {
        match self.emission.kind {
            EmissionKind::Late
            | EmissionKind::Recomputed
            | EmissionKind::Missing
            | EmissionKind::Found
            // An alert's firing, resolution or retraction is always news.
            | EmissionKind::Firing
            | EmissionKind::Resolved
            | EmissionKind::Retracted => true,
            EmissionKind::Completeness => self.emission.version.0 > 1,
            EmissionKind::Early | EmissionKind::OnTime => false,
        }
    }

    /// Whether it reports an id of a reconciliation (`missing` or `found`).
    pub fn is_id_report(&self) -> bool {
        matches!(
            self.emission.kind,
            EmissionKind::Missing | EmissionKind::Found
        )
    }
}

/// Why a webhook could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured URL is not an absolute `http` or `https` URL. The URL itself is
    /// not repeated: webhook URLs (Slack's among them) carry their credential.
    #[error("webhook `{name}`: invalid url: {reason}")]
    InvalidUrl {
        /// The webhook's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("webhook `{name}`: cannot build the HTTP client: {source}")]
    Client {
        /// The webhook's name.
        name: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, Error>;
