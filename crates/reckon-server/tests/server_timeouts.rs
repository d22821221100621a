//! Slow clients on a real socket: one that never finishes its headers is disconnected
//! after `[server] header_read_timeout`, one that never finishes its body gets 408 (and
//! is disconnected) after `[server] body_read_timeout`, and meanwhile `/healthz` keeps
//! answering. Also the defaults (10s and 30s).
#![allow(clippy::unwrap_used)]

mod common;

use reckon_runtime::config::{Duration, parse_duration};
use reckon_server::AppOptions;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn secs(s: &str) -> Duration {
    Duration(parse_duration(s).unwrap())
}

/// Reads until the server closes the connection (or resets it); what it sent.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s).await
}

#[test]
fn defaults_are_10s_and_30s() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::config(dir.path(), "");
    assert_eq!(
        c.server.header_read_timeout.to_std(),
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        c.server.body_read_timeout.to_std(),
        std::time::Duration::from_secs(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_off_while_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.server.header_read_timeout = secs("1s");
    config.server.body_read_timeout = secs("1s");
    let app = common::serve(config, AppOptions::default()).await;
    let limit = std::time::Duration::from_secs(10);

    // Half the headers, then nothing.
    let started = Instant::now();
    let mut slow_headers = TcpStream::connect(app.addr).await.unwrap();
    slow_headers
        .write_all(b"POST /v1/streams/water_level/events HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();
    // The headers and half the body, then nothing.
    let mut slow_body = TcpStream::connect(app.addr).await.unwrap();
    let line = "{\"i\":\"1\",\"time\":10,\"level\":1,\"id\":\"a\"}\n";
    slow_body
        .write_all(
            format!(
                "POST /v1/streams/water_level/events HTTP/1.1\r\nHost: x\r\n\
                 Content-Length: {}\r\n\r\n{line}",
                2 * line.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    // Both stall; the server still answers others at once.
    let h = tokio::time::timeout(std::time::Duration::from_millis(800), healthz(app.addr))
        .await
        .expect("healthz answers while slow clients stall");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(h.contains("\"status\":\"ok\""), "{h}");

    let headers_out = tokio::time::timeout(limit, read_until_closed(&mut slow_headers))
        .await
        .expect("a client stalling in its headers is disconnected");
    let headers_took = started.elapsed();
    assert!(!headers_out.starts_with("HTTP/1.1 200"), "{headers_out}");
    assert!(
        headers_took >= std::time::Duration::from_millis(900),
        "{headers_took:?}"
    );

    let body_out = tokio::time::timeout(limit, read_until_closed(&mut slow_body))
        .await
        .expect("a client stalling in its body is disconnected");
    let body_took = started.elapsed();
    assert!(body_out.starts_with("HTTP/1.1 408"), "{body_out}");
    assert!(
        body_out.to_ascii_lowercase().contains("connection: close"),
        "{body_out}"
    );
    assert!(body_out.contains("application/json"), "{body_out}");
    assert!(
        body_out.contains(
            "{\"error\":\"the request body did not arrive within 1s ([server] \
             body_read_timeout); the connection is closed\"}"
        ),
        "{body_out}"
    );
    assert!(
        body_took >= std::time::Duration::from_millis(900),
        "{body_took:?}"
    );

    // Nothing of the cut-off request was stored, and the server is healthy.
    let h = healthz(app.addr).await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(app.state.store().last_change(), 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_timeouts_off_and_a_complete_request_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.server.header_read_timeout = secs("0s");
    config.server.body_read_timeout = secs("0s");
    let app = common::serve(config, AppOptions::default()).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /v1/streams/water_level/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Well past the 1s of the other test: still connected, and finishing works.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let line = "{\"i\":\"1\",\"time\":10,\"level\":1,\"id\":\"a\"}\n";
    s.write_all(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{line}",
            line.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let out = read_until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"accepted\":1"), "{out}");
    app.shutdown().await;
}
