//! The dashboard (`docs/dashboard.md`): one page served by the binary, with no build
//! step. `GET /` is the page, `GET /ui/{file}` its script, styles and the vendored
//! uPlot chart library (npm `uplot` 1.6.32, MIT, `assets/uPlot.LICENSE`).
//!
//! The page reads the same API as everyone (`/v1/pipelines`, `/metrics`, the windows
//! query with `as_of`, a window's history, and the change feed, read with `fetch` so a
//! token goes in the `Authorization` header). Serving it needs no token: the files
//! hold no data.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page's files: name, content type, body, whether it may be cached for a day.
const FILES: &[(&str, &str, &str, bool)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
        false,
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
        false,
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/uPlot.iife.min.js"),
        true,
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../assets/uPlot.min.css"),
        true,
    ),
];

fn file(content_type: &'static str, body: &'static str, cached: bool) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if cached {
            "public, max-age=86400"
        } else {
            "no-cache"
        }),
    );
    r
}

/// `GET /`: the dashboard.
pub(crate) async fn index() -> Response {
    file(
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
        false,
    )
}

/// `GET /ui/{file}`: one of the page's files.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|f| f.0 == name) {
        Some((_, ty, body, cached)) => file(ty, body, *cached),
        None => crate::ApiError::not_found(format!(
            "the dashboard has no file `{name}` (it has {})",
            FILES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
        ))
        .into_response(),
    }
}

/// Whether `path` is one of the dashboard's files (served without a token).
pub(crate) fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// The bytes of JavaScript the page loads (for the page-weight figure and its test).
pub fn script_bytes() -> usize {
    FILES
        .iter()
        .filter(|f| f.0.ends_with(".js"))
        .map(|f| f.2.len())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_at_most_60_kb_of_javascript() {
        let n = super::script_bytes();
        assert!(
            n <= 60 * 1024,
            "{n} bytes of JavaScript (the limit: 60 KiB)"
        );
    }
}
