//! The writer: the one thread that owns the [`Runtime`] (the store's only writer).
//!
//! HTTP handlers decode their request, hand the events to the writer through a bounded
//! queue and wait for the answer. The writer takes **every** request waiting, runs them
//! through the engines in arrival order and commits them in one durable commit (one
//! fsync for all), then answers each request with its own report. A full queue is
//! answered at once with 503 and `Retry-After` (back-pressure, not unbounded memory).
//! When no request arrives for `tick_interval`, the writer advances processing time
//! (idle partitions, stalled watermarks, early results).
//!
//! After each commit the writer publishes the newest change number on a `watch`
//! channel, which wakes the change feeds and the webhooks.

use crate::clock::Clock;
use crate::metrics::Metrics;
use reckon_core::{Emission, EmissionKind, ProcessingTime};
use reckon_runtime::{IngestReport, IngestRequest, Runtime};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// At most this many events go into one commit (bounds the writer's memory and the
/// latency of the requests in a group).
const MAX_GROUP_EVENTS: usize = 1 << 20;

/// What the writer is asked to do.
enum Job {
    /// Ingest a request and answer.
    Ingest(IngestJob),
    /// Stop after what was queued before.
    Stop,
}

/// One ingest request waiting for the writer.
struct IngestJob {
    request: IngestRequest,
    received: Instant,
    reply: oneshot::Sender<Result<IngestReport, SubmitError>>,
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: retry later.
    Overloaded,
    /// The writer stopped (a failed commit or shutdown); the message says why.
    Stopped(String),
    /// The stream's pipelines were finished by `reckon ingest --finish`: every event
    /// would be dead-lettered, so the request is refused; the message says what to do.
    Finished(String),
}

/// The handlers' side of the writer.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: SyncSender<Job>,
    failure: Arc<Mutex<Option<String>>>,
}

impl WriterHandle {
    /// Queues a request and waits until it is durable.
    pub async fn ingest(&self, request: IngestRequest) -> Result<IngestReport, SubmitError> {
        if let Some(f) = self.failure() {
            return Err(SubmitError::Stopped(f));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Ingest(IngestJob {
            request,
            received: Instant::now(),
            reply,
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(SubmitError::Stopped(
                    self.failure()
                        .unwrap_or_else(|| "the writer has stopped".into()),
                ));
            }
        }
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::Stopped(
                self.failure()
                    .unwrap_or_else(|| "the writer has stopped".into()),
            )),
        }
    }

    /// Stops the writer once the requests queued before are done (blocks until queued;
    /// call from a blocking context).
    pub fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
    }

    /// Why the writer stopped taking requests, if it has.
    pub fn failure(&self) -> Option<String> {
        read_failure(&self.failure)
    }
}

fn read_failure(f: &Mutex<Option<String>>) -> Option<String> {
    f.lock()
        .map(|f| f.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

/// What the writer publishes after each commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The newest durable change number.
    pub last_change: u64,
}

/// Starts the writer thread; it runs until every [`WriterHandle`] is dropped, then
/// drops the runtime (closing the store) and ends.
pub(crate) fn spawn(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    queue: usize,
    tick_interval: Duration,
) -> std::io::Result<(
    WriterHandle,
    watch::Receiver<Progress>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
    let failure = Arc::new(Mutex::new(None));
    // A finished store dead-letters everything; say so once at startup (ingest into it
    // is refused with the same message).
    for name in runtime.finished() {
        tracing::warn!(
            pipeline = &*name,
            "pipeline `{name}` was finished by `reckon ingest --finish` (its watermark is +inf): \
             ingest into its stream is refused; run `reckon repair --config <file>` to reopen it"
        );
    }
    let (progress_tx, progress_rx) = watch::channel(Progress {
        last_change: runtime.store().last_change(),
    });
    let mut w = Writer {
        runtime,
        clock,
        metrics,
        progress: progress_tx,
        failure: failure.clone(),
        last_now: ProcessingTime(i64::MIN),
        dead_letter_log: DeadLetterLog::default(),
    };
    let thread = std::thread::Builder::new()
        .name("reckon-writer".into())
        .spawn(move || w.run(&rx, tick_interval))?;
    Ok((WriterHandle { tx, failure }, progress_rx, thread))
}

struct Writer {
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    progress: watch::Sender<Progress>,
    failure: Arc<Mutex<Option<String>>>,
    last_now: ProcessingTime,
    dead_letter_log: DeadLetterLog,
}

/// How often at most one warning per stream and dead-letter kind is logged.
const DEAD_LETTER_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited warnings about dead letters: at most one line per stream and kind per
/// [`DEAD_LETTER_LOG_EVERY`], which counts the ones it stood for since the last.
#[derive(Default)]
struct DeadLetterLog {
    /// (stream, kind) → when last logged, and dead letters not logged since.
    last: std::collections::HashMap<(Arc<str>, String), (Instant, u64)>,
}

impl DeadLetterLog {
    fn note(&mut self, stream: &Arc<str>, report: &IngestReport, at: Instant) {
        for p in &report.pipelines {
            for (kind, c) in &p.dead_letter_kinds {
                let entry = self.last.entry((stream.clone(), kind.clone()));
                let slot = match entry {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let slot = o.into_mut();
                        if at.duration_since(slot.0) < DEAD_LETTER_LOG_EVERY {
                            slot.1 += c.count;
                            continue;
                        }
                        slot
                    }
                    std::collections::hash_map::Entry::Vacant(v) => v.insert((at, 0)),
                };
                let suppressed = std::mem::take(&mut slot.1);
                slot.0 = at;
                tracing::warn!(
                    stream = &**stream,
                    pipeline = &*p.pipeline,
                    kind = kind.as_str(),
                    count = c.count,
                    suppressed,
                    reason = c.reason.as_str(),
                    "events dead-lettered"
                );
            }
        }
    }
}

impl Writer {
    /// Processing time never goes back, even if the wall clock does.
    fn now(&mut self) -> ProcessingTime {
        self.last_now = self.last_now.max(self.clock.now());
        self.last_now
    }

    fn run(&mut self, rx: &Receiver<Job>, tick_interval: Duration) {
        let mut last_tick = Instant::now();
        loop {
            let first = match rx.recv_timeout(tick_interval) {
                Ok(Job::Ingest(job)) => job,
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    self.tick();
                    last_tick = Instant::now();
                    continue;
                }
            };
            let mut events = first.request.events.len();
            let mut group = vec![first];
            let mut stop = false;
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(Job::Ingest(job)) => {
                        events += job.request.events.len();
                        group.push(job);
                    }
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
            if stop {
                return;
            }
            if last_tick.elapsed() >= tick_interval {
                // Busy: ingest advances processing time anyway; a tick keeps idle
                // pipelines (of other streams) moving.
                self.tick();
                last_tick = Instant::now();
            }
        }
    }

    fn fail(&self, message: String) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(message);
        }
    }

    fn stopped(&self) -> Option<String> {
        read_failure(&self.failure)
    }

    fn tick(&mut self) {
        if self.stopped().is_some() {
            return;
        }
        let now = self.now();
        let mut kinds = Vec::new();
        match self
            .runtime
            .tick(now, &mut |e| kinds.push(emission_labels(e)))
        {
            Ok(_) => self.published(now, &kinds),
            Err(e) => self.fail(format!(
                "a commit failed ({e}); restart reckon to recover from the store"
            )),
        }
    }

    fn commit(&mut self, group: Vec<IngestJob>) {
        if let Some(f) = self.stopped() {
            for job in group {
                let _ = job.reply.send(Err(SubmitError::Stopped(f.clone())));
            }
            return;
        }
        let now = self.now();
        let (mut requests, mut waiting) = (Vec::new(), Vec::new());
        for job in group {
            // A finished stream would dead-letter every event: refuse the request
            // instead of the whole group failing.
            if let Some(pipeline) = self.runtime.finished_reader(&job.request.stream) {
                let e = reckon_runtime::Error::Finished {
                    stream: job.request.stream.to_string(),
                    pipeline: pipeline.to_string(),
                };
                let _ = job.reply.send(Err(SubmitError::Finished(e.to_string())));
                continue;
            }
            let stream = job.request.stream.clone();
            requests.push(job.request);
            waiting.push((job.received, job.reply, stream));
        }
        if requests.is_empty() {
            return;
        }
        let mut kinds = Vec::new();
        let result = self
            .runtime
            .ingest_many(now, requests, &mut |e| kinds.push(emission_labels(e)));
        match result {
            Ok(reports) => {
                self.metrics.inc("reckon_commits_total", &[], 1);
                self.published(now, &kinds);
                let done = Instant::now();
                for ((received, reply, stream), report) in waiting.into_iter().zip(reports) {
                    let secs = done.duration_since(received).as_secs_f64();
                    self.metrics
                        .observe("reckon_ingest_latency_seconds", &[], secs);
                    if report.late > 0 {
                        self.metrics
                            .observe("reckon_correction_latency_seconds", &[], secs);
                    }
                    self.count(&report);
                    if report.dead_lettered > 0 {
                        self.dead_letter_log.note(&stream, &report, done);
                    }
                    let _ = reply.send(Ok(report));
                }
            }
            Err(e) => {
                let message =
                    format!("a commit failed ({e}); restart reckon to recover from the store");
                self.fail(message.clone());
                for (_, reply, _) in waiting {
                    let _ = reply.send(Err(SubmitError::Stopped(message.clone())));
                }
            }
        }
    }

    fn count(&self, r: &IngestReport) {
        for p in &r.pipelines {
            let l = [("pipeline", &*p.pipeline)];
            self.metrics
                .inc("reckon_events_late_applied_total", &l, p.late_applied);
            self.metrics
                .inc("reckon_events_recomputed_total", &l, p.recomputed);
            for (kind, c) in &p.dead_letter_kinds {
                self.metrics.inc(
                    "reckon_events_dead_lettered_total",
                    &[("pipeline", &*p.pipeline), ("kind", kind)],
                    c.count,
                );
            }
        }
    }

    /// After a commit: emissions by kind, watermarks, and the change feed's wake-up.
    fn published(&self, now: ProcessingTime, kinds: &[(Arc<str>, &'static str)]) {
        for (pipeline, kind) in kinds {
            self.metrics.inc(
                "reckon_emissions_total",
                &[("pipeline", pipeline), ("kind", kind)],
                1,
            );
        }
        for op in self.runtime.operators() {
            let l = [("pipeline", &**op.name())];
            let wm = op.watermark().0;
            if wm > reckon_core::EventTime::MIN {
                self.metrics
                    .set("reckon_watermark_seconds", &l, wm.0 as f64 / 1e9);
                self.metrics.set(
                    "reckon_watermark_lag_seconds",
                    &l,
                    (now.0.saturating_sub(wm.0)) as f64 / 1e9,
                );
            }
            for (gauge, value) in op.gauges() {
                self.metrics.set(gauge, &l, value);
            }
        }
        let last_change = self.runtime.store().last_change();
        self.progress.send_if_modified(|p| {
            let changed = p.last_change != last_change;
            p.last_change = last_change;
            changed
        });
    }
}

fn emission_labels(e: &Emission) -> (Arc<str>, &'static str) {
    (e.pipeline.clone(), kind_name(e.kind))
}

/// The wire name of an emission kind.
pub fn kind_name(k: EmissionKind) -> &'static str {
    k.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_runtime::{DeadLetterCount, PipelineReport};

    fn report(kind: &str, n: u64) -> IngestReport {
        let mut p = PipelineReport {
            pipeline: Arc::from("p"),
            dead_lettered: n,
            ..PipelineReport::default()
        };
        p.dead_letter_kinds.insert(
            kind.into(),
            DeadLetterCount {
                count: n,
                reason: "why".into(),
            },
        );
        IngestReport {
            dead_lettered: n,
            pipelines: vec![p],
            ..IngestReport::default()
        }
    }

    #[test]
    fn dead_letter_warnings_are_rate_limited_per_stream_and_kind() {
        let mut log = DeadLetterLog::default();
        let s: Arc<str> = Arc::from("s");
        let t0 = Instant::now();
        log.note(&s, &report("future", 2), t0);
        // Within 10 s: counted, not logged.
        log.note(&s, &report("future", 3), t0 + Duration::from_secs(1));
        let key = (s.clone(), "future".to_string());
        assert_eq!(log.last[&key], (t0, 3));
        // Another kind has its own budget.
        log.note(&s, &report("invalid", 1), t0 + Duration::from_secs(2));
        assert_eq!(log.last[&(s.clone(), "invalid".to_string())].1, 0);
        // After 10 s the next one is logged with the suppressed count, which resets.
        let later = t0 + DEAD_LETTER_LOG_EVERY;
        log.note(&s, &report("future", 1), later);
        assert_eq!(log.last[&key], (later, 0));
    }
}
