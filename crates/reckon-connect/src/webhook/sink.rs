//! Delivery: POST a body to the webhook's URL, retrying what is worth retrying.
//!
//! Seed 000 fired its Slack request once and forgot it; a Slack outage or a network
//! blip lost the alert. Here a delivery is retried on network errors, timeouts, `5xx`,
//! `408` and `429`, with exponential backoff (`backoff`, doubled per retry, capped at
//! `max_backoff`) that also honours the receiver's `Retry-After`, up to `max_attempts`.
//! Other `4xx` answers mean the request itself is wrong (a revoked Slack hook answers
//! `404`/`410`), so retrying cannot help and the delivery fails at once. Redirects are
//! not followed: a redirected POST silently becomes a GET in most clients, so the
//! delivery fails with a message asking for the final URL instead.
//!
//! Whatever the receiver does (garbage headers, endless bodies, hanging) a delivery
//! ends, within `max_attempts × (timeout + max_backoff)`, with a [`DeliveryResult`].
//! Error texts never contain the URL: a Slack webhook URL is its own credential.

use super::digest::Digest;
use super::payload::payload;
use super::sign::{DELIVERY_HEADER, SIGNATURE_HEADER, signature};
use super::{Correction, Error, Result};
use reckon_runtime::{WebhookConfig, WebhookFormat, WebhookNotify};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Bytes of a failed response's body quoted in the error (Slack explains its `4xx`
/// answers in the body, e.g. `invalid_payload`).
const SNIPPET_BYTES: usize = 256;

/// Sends one webhook's messages. Built once per `[[webhook]]`; cheap to share (the
/// HTTP client pools connections).
#[derive(Clone)]
pub struct WebhookSender {
    name: String,
    target: Target,
    client: reqwest::Client,
    tenant: Option<String>,
    secret: Option<Vec<u8>>,
    format: WebhookFormat,
    notify: WebhookNotify,
    pipelines: Vec<String>,
    digest_interval: Duration,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    alerts: super::payload::AlertMeta,
}

/// Where messages go.
#[derive(Clone, Debug)]
enum Target {
    /// POSTed to a URL.
    Url(reqwest::Url),
    /// Written to a program's standard input (`command`: program and arguments).
    Command(Vec<String>),
}

/// How one delivery ended, after all its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryResult {
    /// The delivery's number (sent as [`DELIVERY_HEADER`]).
    pub id: u64,
    /// HTTP requests made (1 when the first one settled it).
    pub attempts: u32,
    /// Delivered or failed, with the last status and error.
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Time from the first request to the outcome, backoff waits included; whole
    /// milliseconds in JSON (`elapsed_ms`).
    #[serde(rename = "elapsed_ms", with = "millis")]
    pub elapsed: Duration,
}

/// The end of a delivery. In JSON it is flattened into the [`DeliveryResult`]:
/// `{"outcome": "delivered", "status": 200}` or `{"outcome": "failed", "status": 503,
/// "error": "…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver answered `2xx`.
    Delivered {
        /// The status it answered.
        status: u16,
    },
    /// Given up: a non-retryable answer, or `max_attempts` used up.
    Failed {
        /// The last HTTP status, if the last attempt got an answer at all.
        status: Option<u16>,
        /// What went wrong last, readable by people.
        error: String,
    },
}

impl DeliveryResult {
    /// Whether the receiver accepted the message.
    pub fn is_delivered(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered { .. })
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What one HTTP attempt says about the delivery.
enum Attempt {
    Delivered(u16),
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    Fail {
        status: Option<u16>,
        error: String,
    },
}

/// reqwest built with `rustls-no-provider` panics when it builds a TLS client and no
/// rustls crypto provider is installed. Install ring once per process; if the
/// application installed a provider of its own first, that one is kept.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

impl WebhookSender {
    /// A sender for `config`: checks the URL and builds an HTTP client whose requests
    /// time out after `config.timeout` (zero: no time limit).
    pub fn new(config: &WebhookConfig) -> Result<WebhookSender> {
        let invalid = |reason: String| Error::InvalidUrl {
            name: config.name.clone(),
            reason,
        };
        let target = if config.command.is_empty() {
            let url = reqwest::Url::parse(&config.url).map_err(|e| invalid(e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!(
                    "scheme `{}` is not http or https",
                    url.scheme()
                )));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("it has no host".into()));
            }
            Target::Url(url)
        } else {
            Target::Command(config.command.clone())
        };
        install_crypto_provider();
        let timeout = config.timeout.to_std();
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("reckon/", env!("CARGO_PKG_VERSION")));
        if !timeout.is_zero() {
            builder = builder.timeout(timeout);
        }
        let client = builder.build().map_err(|source| Error::Client {
            name: config.name.clone(),
            source,
        })?;
        Ok(WebhookSender {
            name: config.name.clone(),
            target,
            client,
            tenant: config.tenant.clone(),
            secret: config.secret.as_ref().map(|s| s.as_bytes().to_vec()),
            format: config.format,
            notify: config.notify,
            pipelines: config.pipelines.clone(),
            digest_interval: config.digest_interval.to_std(),
            max_attempts: config.max_attempts.max(1),
            backoff: config.backoff.to_std(),
            max_backoff: config.max_backoff.to_std(),
            timeout,
            alerts: super::payload::AlertMeta::default(),
        })
    }

    /// The webhook's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL without path, query or credentials (`https://hooks.slack.com/…`), for
    /// logs and status pages.
    pub fn redacted_url(&self) -> String {
        match &self.target {
            Target::Url(url) => {
                let host = url.host_str().unwrap_or("?");
                match url.port() {
                    Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
                    None => format!("{}://{host}/…", url.scheme()),
                }
            }
            Target::Command(c) => format!("command `{}`", c.first().map_or("", String::as_str)),
        }
    }

    /// How many windows one message holds at most: one for a `trigger` (one batch run
    /// per episode), else `configured`.
    pub fn max_windows(&self, configured: usize) -> usize {
        if self.format == WebhookFormat::Trigger {
            1
        } else {
            configured
        }
    }

    /// After [`WebhookSender::wants`] and the lookup of the version it replaced: whether
    /// `correction` is sent. A `trigger` runs for alert episodes that begin
    /// ([`super::payload::begins_episode`]); the other formats take everything wanted.
    pub fn takes(&self, correction: &Correction) -> bool {
        self.format != WebhookFormat::Trigger || super::payload::begins_episode(correction)
    }

    /// Gives the labels and annotations of the alert rules it reports (by the pipeline
    /// name its corrections carry), for the Alertmanager format.
    pub fn with_alerts(mut self, alerts: super::payload::AlertMeta) -> WebhookSender {
        self.alerts = alerts;
        self
    }

    /// Whether this webhook is told about `correction`: its pipeline is one of the
    /// configured `pipelines` (or none are configured), and with `notify =
    /// "corrections"` late data changed the window ([`Correction::is_late`]).
    pub fn wants(&self, correction: &Correction) -> bool {
        let pipeline = &*correction.emission.pipeline;
        let pipeline_ok = self.pipelines.is_empty() || self.pipelines.iter().any(|p| p == pipeline);
        pipeline_ok
            && match (self.format, self.notify) {
                // A trigger looks at every episode version (`takes` decides).
                (WebhookFormat::Trigger, _) => correction.emission.value("state").is_some(),
                (_, WebhookNotify::Corrections) => correction.is_late(),
                (_, WebhookNotify::All) => true,
            }
    }

    /// An empty [`Digest`] paced by this webhook's `digest_interval`.
    pub fn digest(&self) -> Digest {
        Digest::new(self.digest_interval)
    }

    /// The request body for `corrections` in this webhook's format (see [`payload`]).
    pub fn body(&self, corrections: &[Correction]) -> Vec<u8> {
        let value = match self.format {
            WebhookFormat::Alertmanager => {
                super::payload::alertmanager(&self.name, corrections, &self.alerts)
            }
            WebhookFormat::Trigger => super::payload::trigger(
                &self.name,
                self.tenant.as_deref(),
                corrections,
                &self.alerts,
            ),
            format => payload(format, &self.name, corrections),
        };
        // Serialising a `serde_json::Value` cannot fail (its keys are strings).
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// POSTs `body` as delivery `delivery_id`, retrying as the module docs say, and
    /// reports how it ended. Never panics and never returns early on an odd answer.
    ///
    /// `now_unix_s` is the wall-clock time of the call in Unix seconds; each attempt is
    /// signed with it plus the time elapsed since (so a late retry is not rejected as
    /// a replay). Waits use tokio's clock, so tests may pause time.
    pub async fn deliver(&self, delivery_id: u64, body: &[u8], now_unix_s: i64) -> DeliveryResult {
        let started = tokio::time::Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let elapsed_s = i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
            let now = now_unix_s.saturating_add(elapsed_s);
            let outcome = match self.attempt(delivery_id, body, now).await {
                Attempt::Delivered(status) => DeliveryOutcome::Delivered { status },
                Attempt::Fail { status, error } => {
                    tracing::warn!(
                        webhook = %self.name,
                        delivery = delivery_id,
                        attempt = attempts,
                        "webhook delivery failed, not retried: {error}"
                    );
                    DeliveryOutcome::Failed { status, error }
                }
                Attempt::Retry {
                    status,
                    error,
                    retry_after,
                } => {
                    if attempts >= self.max_attempts {
                        tracing::warn!(
                            webhook = %self.name,
                            delivery = delivery_id,
                            attempt = attempts,
                            "webhook delivery failed, giving up after {attempts} attempts: {error}"
                        );
                        DeliveryOutcome::Failed {
                            status,
                            error: format!("{error} (gave up after {attempts} attempts)"),
                        }
                    } else {
                        let wait =
                            retry_delay(attempts, self.backoff, self.max_backoff, retry_after);
                        tracing::warn!(
                            webhook = %self.name,
                            delivery = delivery_id,
                            attempt = attempts,
                            "webhook delivery attempt failed, retrying in {wait:?}: {error}"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            };
            return DeliveryResult {
                id: delivery_id,
                attempts,
                outcome,
                elapsed: started.elapsed(),
            };
        }
    }

    async fn attempt(&self, delivery_id: u64, body: &[u8], now_unix_s: i64) -> Attempt {
        let url = match &self.target {
            Target::Url(url) => url,
            Target::Command(command) => return self.run(command, delivery_id, body).await,
        };
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery_id.to_string())
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, now_unix_s, body));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Attempt::Fail {
                    status: None,
                    error: error_text(e, self.timeout),
                };
            }
            Err(e) => {
                return Attempt::Retry {
                    status: None,
                    error: error_text(e, self.timeout),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Attempt::Delivered(code);
        }
        let retry_after = retry_after(response.headers(), now_unix_s);
        let mut error = format!("HTTP {status}{}", snippet(response).await);
        if is_retryable(code) {
            Attempt::Retry {
                status: Some(code),
                error,
                retry_after,
            }
        } else {
            if status.is_redirection() {
                error.push_str(" (redirects are not followed; configure the final URL)");
            }
            Attempt::Fail {
                status: Some(code),
                error,
            }
        }
    }
}

impl WebhookSender {
    /// One attempt of a `command`: the program with the body on its standard input and,
    /// for a trigger's body, its fields as `RECKON_*` variables; within `timeout`.
    async fn run(&self, command: &[String], delivery_id: u64, body: &[u8]) -> Attempt {
        use tokio::io::AsyncWriteExt;
        let Some((program, args)) = command.split_first() else {
            return Attempt::Fail {
                status: None,
                error: "the command is empty".into(),
            };
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("RECKON_WEBHOOK", &self.name)
            .env("RECKON_DELIVERY", delivery_id.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(body) {
            let text = |k: &str| match o.get(k) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Null) | None => None,
                Some(v) => Some(v.to_string()),
            };
            for (var, field) in [
                ("RECKON_TENANT", "tenant"),
                ("RECKON_RULE", "rule"),
                ("RECKON_KEY", "key"),
                ("RECKON_STATE", "state"),
                ("RECKON_LATE", "late"),
                ("RECKON_DETECTED_AT", "detected_at"),
            ] {
                if let Some(v) = text(field) {
                    cmd.env(var, v);
                }
            }
            if let Some(w) = o.get("window") {
                for (var, field) in [
                    ("RECKON_WINDOW_START", "start"),
                    ("RECKON_WINDOW_END", "end"),
                ] {
                    if let Some(v) = w.get(field).and_then(|v| v.as_str()) {
                        cmd.env(var, v);
                    }
                }
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Attempt::Fail {
                    status: None,
                    error: format!("cannot run `{program}`: {e}"),
                };
            }
        };
        let feed = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A program that does not read its input is fine.
                let _ = stdin.write_all(body).await;
            }
            child.wait_with_output().await
        };
        let output = if self.timeout.is_zero() {
            feed.await
        } else {
            match tokio::time::timeout(self.timeout, feed).await {
                Ok(o) => o,
                Err(_) => {
                    return Attempt::Retry {
                        status: None,
                        error: format!("`{program}` did not finish within {:?}", self.timeout),
                        retry_after: None,
                    };
                }
            }
        };
        match output {
            Ok(o) if o.status.success() => Attempt::Delivered(0),
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                let tail: String = stderr
                    .trim()
                    .chars()
                    .rev()
                    .take(SNIPPET_BYTES)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                Attempt::Retry {
                    status: o.status.code().and_then(|c| u16::try_from(c).ok()),
                    error: format!(
                        "`{program}` exited with {}{}",
                        o.status,
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {tail}")
                        }
                    ),
                    retry_after: None,
                }
            }
            Err(e) => Attempt::Retry {
                status: None,
                error: format!("waiting for `{program}`: {e}"),
                retry_after: None,
            },
        }
    }
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("name", &self.name)
            .field("url", &self.redacted_url())
            .field("signed", &self.secret.is_some())
            .field("format", &self.format)
            .field("notify", &self.notify)
            .field("pipelines", &self.pipelines)
            .field("digest_interval", &self.digest_interval)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Statuses that say "try again later": server errors, request timeout, rate limit.
fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The wait after failed attempt number `attempt` (1-based): `backoff × 2^(attempt-1)`,
/// or the receiver's `Retry-After` if that is longer, never more than `max_backoff`.
fn retry_delay(
    attempt: u32,
    backoff: Duration,
    max_backoff: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let exponential = backoff.checked_mul(factor).unwrap_or(Duration::MAX);
    exponential
        .max(retry_after.unwrap_or(Duration::ZERO))
        .min(max_backoff)
}

/// `Retry-After` as delay-seconds or as an HTTP date (relative to `now_unix_s`).
fn retry_after(headers: &HeaderMap, now_unix_s: i64) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let secs = at.as_second().saturating_sub(now_unix_s);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The start of a failed response's body as `": <text>"` (empty if there is none),
/// on one line.
async fn snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(SNIPPET_BYTES);
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A transport error as text with its causes, without the URL.
fn error_text(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<_> = (1..=6)
            .map(|a| retry_delay(a, ms(500), ms(5_000), None))
            .collect();
        assert_eq!(
            delays,
            [
                ms(500),
                ms(1_000),
                ms(2_000),
                ms(4_000),
                ms(5_000),
                ms(5_000)
            ]
        );
        assert_eq!(retry_delay(100, ms(500), ms(60_000), None), ms(60_000));
        assert_eq!(
            retry_delay(u32::MAX, Duration::MAX, Duration::MAX, None),
            Duration::MAX
        );
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        assert_eq!(
            retry_delay(1, ms(10), ms(5_000), Some(ms(2_000))),
            ms(2_000)
        );
        assert_eq!(retry_delay(3, ms(1_000), ms(5_000), Some(ms(1))), ms(4_000));
        assert_eq!(
            retry_delay(1, ms(10), ms(100), Some(ms(3_600_000))),
            ms(100)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, 0), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h, 0), Some(Duration::from_secs(7)));
        // 2015-10-21T07:28:00Z is 1445412480.
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h, 1_445_412_470),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after(&h, 1_445_412_490), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, 0), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h, 0), None);
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn result_json_is_flat_and_round_trips() {
        let failed = DeliveryResult {
            id: 9,
            attempts: 6,
            outcome: DeliveryOutcome::Failed {
                status: None,
                error: "connection refused".into(),
            },
            elapsed: ms(1_234),
        };
        let v = serde_json::to_value(&failed).expect("serialisable");
        assert_eq!(
            v,
            serde_json::json!({"id": 9, "attempts": 6, "outcome": "failed", "status": null,
                "error": "connection refused", "elapsed_ms": 1234})
        );
        let back: DeliveryResult = serde_json::from_value(v).expect("deserialisable");
        assert_eq!(back, failed);

        let ok = DeliveryResult {
            id: 1,
            attempts: 1,
            outcome: DeliveryOutcome::Delivered { status: 204 },
            elapsed: ms(3),
        };
        let text = serde_json::to_string(&ok).expect("serialisable");
        let back: DeliveryResult = serde_json::from_str(&text).expect("deserialisable");
        assert_eq!(back, ok);
        assert!(back.is_delivered());
    }
}
