//! Back-pressure: when `[server] max_pending_requests` requests already wait for the
//! writer, the next one is answered at once with 503 and `Retry-After` (nothing is
//! stored), and the waiting ones still complete once the writer moves again.
//!
//! The writer is held still deterministically: it reads processing time from the clock
//! on every commit and tick, and this test's clock blocks while its gate is closed.
#![allow(clippy::unwrap_used)]

mod common;

use reckon_core::ProcessingTime;
use reckon_server::{AppOptions, Clock, SystemClock};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct GateClock {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl GateClock {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }
}

impl Clock for GateClock {
    fn now(&self) -> ProcessingTime {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
        SystemClock.now()
    }
}

fn line(t: i64, id: &str) -> String {
    format!("{{\"i\":\"1\",\"time\":{t},\"level\":1.5,\"id\":\"{id}\"}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_writer_queue_answers_503_with_retry_after_and_the_queued_requests_complete() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.server.max_pending_requests = 2;
    config.server.tick_interval = reckon_runtime::config::Duration(reckon_core::Span(20_000_000));
    let clock = Arc::new(GateClock::default());
    let options = AppOptions {
        clock: clock.clone(),
        ..AppOptions::default()
    };
    let server = common::serve(config, options).await;
    let url = server.url("/v1/streams/water_level/events");
    let client = reqwest::Client::new();

    // Hold the writer: its next tick blocks on the clock.
    clock.set(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Two requests fill the queue and wait for their answer.
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let (c, u) = (client.clone(), url.clone());
            tokio::spawn(async move { c.post(u).body(line(i, &format!("w{i}"))).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The third is refused at once, and says why and when to retry.
    let r = client
        .post(url.clone())
        .body(line(9, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_pending_requests"),
        "{body}"
    );
    assert!(
        !waiting.iter().any(|w| w.is_finished()),
        "the writer was held"
    );

    // Released, the writer answers the waiting requests; the refused one was not stored.
    clock.set(false);
    for w in waiting {
        let r = w.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
    }
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outcome=\"overloaded\"} 1"), "{metrics}");
    let stored = server.state.store().raw_scan("water_level").unwrap();
    assert_eq!(stored.len(), 2, "only the two queued requests were stored");
    server.shutdown().await;
}
