//! Errors of the server, and how an HTTP client sees them.
//!
//! Every error response is JSON `{"error": "..."}` with a message that names what is
//! wrong and where, and never internal detail beyond what helps the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime (configuration, store, engine) failed.
    #[error(transparent)]
    Runtime(#[from] reckon_runtime::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] reckon_store::Error),
    /// A webhook could not be set up.
    #[error("{0}")]
    Webhook(String),
    /// A stored tenant or token cannot be read.
    #[error("the store's catalog: {0}")]
    Catalog(String),
    /// Binding or serving the socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A request body that did not arrive within `[server] body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0:?} ([server] body_read_timeout)")]
pub struct BodyTimeout(pub std::time::Duration);

/// Result of the server crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An error answered to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The message (sent as `{"error": message}`).
    pub message: String,
    /// Seconds after which to retry (503/429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
    /// 500 for a failure of the store or the runtime: the message says what failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<reckon_store::Error> for ApiError {
    fn from(e: reckon_store::Error) -> ApiError {
        ApiError::internal(format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"reckon\""),
            );
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// Longest request target (path and query) accepted, in bytes; longer ones get 414.
/// (Beyond 64 KiB the HTTP parser refuses the request before reckon sees it, with a
/// bare 414.)
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// At most this much of a plain-text error body is kept when it is wrapped as JSON.
const MAX_WRAPPED_BYTES: usize = 4 * 1024;

/// Middleware: every 4xx/5xx answer has a JSON body. Responses that are already JSON
/// pass unchanged; an empty body (405 from routing, 415 from decompression) gets a
/// message naming what was refused; a plain-text body (an extractor's rejection) is
/// wrapped as `{"error": text}`. Headers such as `Allow` and `Accept-Encoding` are kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "request target is {target_len} bytes, longer than the limit of \
                 {MAX_URI_BYTES} bytes"
            ),
        )
        .into_response();
    }
    let path = clip(req.uri().path(), 200);
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| clip(&String::from_utf8_lossy(v.as_bytes()), 100));
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_WRAPPED_BYTES).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if !text.is_empty() {
        text
    } else {
        match status {
            // (The router adds `Allow` with the methods that are.)
            StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => match encoding {
                Some(e) => format!("unsupported Content-Encoding `{e}` (supported: gzip, or none)"),
                None => "unsupported media type".to_string(),
            },
            other => other
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string(),
        }
    };
    let mut r = ApiError::new(status, message).into_response();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    r.headers_mut().extend(parts.headers);
    r
}

/// Whether a response says it is JSON.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

/// `s` cut to at most `max` bytes (at a character boundary), marked when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
