//! The dashboard (`docs/dashboard.md`): one page served by the binary, with no build
//! step. `GET /` is the page, `GET /ui/{file}` its script, styles and the vendored
//! uPlot chart library (npm `uplot` 1.6.32, MIT, `assets/uPlot.LICENSE`).
//!
//! The page reads the same API as everyone (`/v1/pipelines`, `/metrics`, the windows
//! query with `as_of`, a window's history, and the change feed, read with `fetch` so a
//! token goes in the `Authorization` header). Serving it needs no token: the files
//! hold no data.
//!
//! The files are gzipped once, together, at the first request that takes gzip, and
//! sent so to every browser that accepts it (all do): the JavaScript goes over the
//! wire in 43% of its size.

use std::io::Write;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
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

const INDEX: &str = include_str!("../assets/index.html");

/// `body` gzipped: every file (`name`, the page's is "") is compressed at the first call.
fn gzipped(name: &str, body: &'static str) -> &'static [u8] {
    static ZIPPED: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    let all = ZIPPED.get_or_init(|| {
        let files = FILES.iter().map(|f| (f.0, f.2));
        files
            .chain([("", INDEX)])
            .map(|(name, body)| (name, gzip(body.as_bytes())))
            .collect()
    });
    all.iter()
        .find(|z| z.0 == name)
        .map_or(body.as_bytes(), |z| z.1.as_slice())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    match z.write_all(bytes).and_then(|()| z.finish()) {
        Ok(v) => v,
        Err(_) => bytes.to_vec(),
    }
}

/// Whether the request's `Accept-Encoding` takes gzip (RFC 9110 §12.5.3): `gzip` (or
/// `x-gzip`) with a weight above 0 or, when gzip is not named, `*` so.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    let items = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok());
        let takes = weight.is_some_and(|q| q > 0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(takes);
        } else if name == "*" {
            any = Some(takes);
        }
    }
    gzip.or(any).unwrap_or(false)
}

fn file(
    headers: &HeaderMap,
    name: &str,
    content_type: &'static str,
    body: &'static str,
    cached: bool,
) -> Response {
    let zip = accepts_gzip(headers);
    let mut r = if zip {
        gzipped(name, body).into_response()
    } else {
        body.into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if zip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
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
pub(crate) async fn index(headers: HeaderMap) -> Response {
    file(&headers, "", "text/html; charset=utf-8", INDEX, false)
}

/// `GET /ui/{file}`: one of the page's files.
pub(crate) async fn asset(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match FILES.iter().find(|f| f.0 == name) {
        Some((n, ty, body, cached)) => file(&headers, n, ty, body, *cached),
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

/// The bytes of JavaScript the page loads: as the files are, and as they are sent
/// gzipped (for the page-weight figure and its test).
pub fn script_bytes() -> (usize, usize) {
    let js = FILES.iter().filter(|f| f.0.ends_with(".js"));
    let raw = js.clone().map(|f| f.2.len()).sum();
    let sent = js.map(|f| gzipped(f.0, f.2).len()).sum();
    (raw, sent)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn the_page_sends_at_most_60_kb_of_javascript() {
        let (raw, sent) = super::script_bytes();
        assert!(
            sent <= 60_000,
            "{sent} bytes of JavaScript sent (the limit: 60,000)"
        );
        // The page's own script stays small too (uPlot is 51,081 bytes, as published).
        let own = super::FILES
            .iter()
            .find(|f| f.0 == "app.js")
            .map_or(0, |f| f.2.len());
        assert!(own <= 16 * 1024, "app.js is {own} bytes (of {raw} in all)");
    }

    #[test]
    fn gzip_only_when_the_browser_accepts_it() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            super::accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; Q=0.000"));
        assert!(!with("gzip;q=0, *"));
        assert!(with("x-gzip"));
        assert!(!with("*;q=0"));
        assert!(!with("br, deflate"));
        assert!(!super::accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn a_gzipped_file_unzips_to_the_file() {
        use std::io::Read;
        let files = super::FILES.iter().map(|f| (f.0, f.2));
        for (name, body) in files.chain([("", super::INDEX)]) {
            let mut out = String::new();
            flate2::read::GzDecoder::new(super::gzipped(name, body))
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(&out, body, "{name}");
        }
    }
}
