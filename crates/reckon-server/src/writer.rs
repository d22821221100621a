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
//! Webhooks hand their delivery records (delivery log entry and cursor move) to the
//! writer too ([`WriterHandle::record`]): the writer stages them with the store, so they
//! ride in its next commit with the ingest requests waiting (one fsync for all), and
//! answers once they are durable. Nothing else in the server writes to the store.
//!
//! After each commit the writer publishes the newest change number on a `watch`
//! channel, which wakes the change-feed follower (`follow.rs`).

use crate::clock::Clock;
use crate::metrics::Metrics;
use reckon_core::{Emission, EmissionKind, EventTime, ProcessingTime};
use reckon_runtime::{IngestReport, IngestRequest, Reconfigured, Runtime};
use reckon_store::{CommitBatch, Delivery};
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
    /// Commit a sink's delivery record with the next commit and answer once durable.
    Record(Delivery, DeliveryReply),
    /// Read the engines' state (an as-of value) between commits.
    Read(ReadJob),
    /// Change the dataflow (definitions made over the API) between commits.
    Reconfigure(Box<ReconfigureJob>),
    /// Stop after what was queued before.
    Stop,
}

/// One ingest request waiting for the writer: one batch of events, or several (a
/// source's batch over several partitions) that commit together.
struct IngestJob {
    requests: Vec<IngestRequest>,
    /// Catalog rows committed with the events (a source's position).
    catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    received: Instant,
    reply: oneshot::Sender<Result<IngestReport, SubmitError>>,
}

/// A change of the dataflow: the configuration to run, the catalog rows committed with
/// it, the streams whose raw events go once it is durable (deleted streams), and where
/// the answer goes.
struct ReconfigureJob {
    config: reckon_runtime::Config,
    catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    purge: Vec<Arc<str>>,
    reply: oneshot::Sender<Result<Reconfigured, ReconfigureError>>,
}

/// Why a change of the dataflow did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigureError {
    /// The new operators could not start (the message says why); nothing changed.
    Refused(String),
    /// The writer is not taking work.
    Submit(SubmitError),
}

/// A read of the runtime, run on the writer thread between two commits.
type ReadJob = Box<dyn FnOnce(&Runtime) + Send>;

/// Where a delivery's answer goes.
type DeliveryReply = oneshot::Sender<Result<(), SubmitError>>;

/// Staged delivery records and their webhooks' replies.
type StagedRecords = (reckon_store::Staged, Vec<DeliveryReply>);

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
        self.ingest_with(vec![request], Vec::new()).await
    }

    /// Queues requests that commit together, with `catalog` rows (a source's position
    /// after their events) in the same commit, and waits until all is durable. The
    /// answer adds up the requests' reports. A full queue is refused at once
    /// ([`SubmitError::Overloaded`]): the caller waits and tries again, which pauses a
    /// source instead of buffering without bound.
    pub async fn ingest_with(
        &self,
        requests: Vec<IngestRequest>,
        catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<IngestReport, SubmitError> {
        if let Some(f) = self.failure() {
            return Err(SubmitError::Stopped(f));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Ingest(IngestJob {
            catalog,
            requests,
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

    /// Has `delivery` (a webhook's delivery record and cursor move) committed with the
    /// writer's next commit, and waits until it is durable. Unlike ingest it waits for
    /// room in a full queue instead of being refused. An error means it is not known to
    /// be durable: the writer has stopped (shutdown or a failed commit).
    pub async fn record(&self, delivery: Delivery) -> Result<(), SubmitError> {
        let stopped = |h: &WriterHandle| {
            SubmitError::Stopped(
                h.failure()
                    .unwrap_or_else(|| "the writer has stopped".into()),
            )
        };
        if let Some(f) = self.failure() {
            return Err(SubmitError::Stopped(f));
        }
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.clone();
        let queued = tokio::task::spawn_blocking(move || tx.send(Job::Record(delivery, reply)))
            .await
            .is_ok_and(|sent| sent.is_ok());
        if !queued {
            return Err(stopped(self));
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => Err(stopped(self)),
        }
    }

    /// Runs `f` on the writer thread with the runtime, between two commits (after the
    /// requests queued before it), and returns its answer: what the engines hold in
    /// memory, such as a running total's value at an event time. Refused with
    /// `Overloaded` when the queue is full.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> T + Send + 'static,
    ) -> Result<T, SubmitError> {
        if let Some(f) = self.failure() {
            return Err(SubmitError::Stopped(f));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Read(Box::new(move |rt: &Runtime| {
            let _ = reply.send(f(rt));
        }));
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
        answer.await.map_err(|_| {
            SubmitError::Stopped(
                self.failure()
                    .unwrap_or_else(|| "the writer has stopped".into()),
            )
        })
    }

    /// Has the writer run `config` from now on ([`Runtime::reconfigure`]), committing
    /// `catalog` with the change, and waits until it is durable; then deletes the raw
    /// events of the `purge` streams. Waits for room in a full queue.
    pub async fn reconfigure(
        &self,
        config: reckon_runtime::Config,
        catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        purge: Vec<Arc<str>>,
    ) -> Result<Reconfigured, ReconfigureError> {
        let stopped = |h: &WriterHandle| {
            ReconfigureError::Submit(SubmitError::Stopped(
                h.failure()
                    .unwrap_or_else(|| "the writer has stopped".into()),
            ))
        };
        if self.failure().is_some() {
            return Err(stopped(self));
        }
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.clone();
        let job = Job::Reconfigure(Box::new(ReconfigureJob {
            config,
            catalog,
            purge,
            reply,
        }));
        let queued = tokio::task::spawn_blocking(move || tx.send(job))
            .await
            .is_ok_and(|sent| sent.is_ok());
        if !queued {
            return Err(stopped(self));
        }
        answer.await.unwrap_or_else(|_| Err(stopped(self)))
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
            let (mut group, mut records) = (Vec::new(), Vec::new());
            let mut events = 0;
            match rx.recv_timeout(tick_interval) {
                Ok(Job::Ingest(job)) => {
                    events += job.requests.iter().map(|r| r.events.len()).sum::<usize>();
                    group.push(job);
                }
                Ok(Job::Record(d, reply)) => records.push((d, reply)),
                Ok(Job::Read(f)) => {
                    f(&self.runtime);
                    continue;
                }
                Ok(Job::Reconfigure(job)) => {
                    self.reconfigure(*job);
                    continue;
                }
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    self.tick();
                    last_tick = Instant::now();
                    continue;
                }
            }
            let mut stop = false;
            let mut reads: Vec<ReadJob> = Vec::new();
            let mut change: Option<Box<ReconfigureJob>> = None;
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(Job::Ingest(job)) => {
                        events += job.requests.iter().map(|r| r.events.len()).sum::<usize>();
                        group.push(job);
                    }
                    Ok(Job::Record(d, reply)) => records.push((d, reply)),
                    // A read waits for the requests queued before it, then runs.
                    Ok(Job::Read(f)) => {
                        reads.push(f);
                        break;
                    }
                    // So does a change of the dataflow.
                    Ok(Job::Reconfigure(job)) => {
                        change = Some(job);
                        break;
                    }
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Deliveries are staged first, so the ingest commit carries them.
            let staged = self.stage(records);
            self.commit(group);
            self.answer(staged);
            for f in reads {
                f(&self.runtime);
            }
            if let Some(job) = change {
                self.reconfigure(*job);
            }
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

    fn reconfigure(&mut self, job: ReconfigureJob) {
        let ReconfigureJob {
            config,
            catalog,
            purge,
            reply,
        } = job;
        if let Some(f) = self.stopped() {
            let _ = reply.send(Err(ReconfigureError::Submit(SubmitError::Stopped(f))));
            return;
        }
        let now = self.now();
        let mut kinds = Vec::new();
        let result = self
            .runtime
            .reconfigure(&config, catalog, &mut |e| kinds.push(emission_labels(e)));
        let answer = match result {
            Ok(done) => {
                self.published(now, &kinds);
                for s in &purge {
                    match self.runtime.store().remove_raw_after(s, EventTime::MIN) {
                        Ok(n) => tracing::info!(
                            stream = &**s,
                            events = n,
                            "deleted stream's raw events removed"
                        ),
                        Err(e) => tracing::warn!(
                            stream = &**s,
                            "removing a deleted stream's raw events failed: {e}"
                        ),
                    }
                }
                Ok(done)
            }
            Err(e) if self.runtime.store().is_poisoned() => {
                let message =
                    format!("a commit failed ({e}); restart reckon to recover from the store");
                self.fail(message.clone());
                Err(ReconfigureError::Submit(SubmitError::Stopped(message)))
            }
            Err(e) => Err(ReconfigureError::Refused(e.to_string())),
        };
        let _ = reply.send(answer);
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

    /// Stages the webhooks' delivery records with the store: they go into the next
    /// commit group (this round's ingest commit, if any).
    fn stage(&self, records: Vec<(Delivery, DeliveryReply)>) -> Option<StagedRecords> {
        if records.is_empty() {
            return None;
        }
        let (deliveries, replies): (Vec<_>, Vec<_>) = records.into_iter().unzip();
        if let Some(f) = self.stopped() {
            for r in replies {
                let _ = r.send(Err(SubmitError::Stopped(f.clone())));
            }
            return None;
        }
        let staged = self.runtime.store().stage(CommitBatch {
            deliveries,
            ..CommitBatch::default()
        });
        Some((staged, replies))
    }

    /// Waits until the staged records are durable (committing them now if no ingest
    /// commit carried them) and answers the webhooks.
    fn answer(&self, staged: Option<StagedRecords>) {
        let Some((staged, replies)) = staged else {
            return;
        };
        let answer = match staged.wait() {
            Ok(_) => Ok(()),
            Err(e) => {
                let message =
                    format!("a commit failed ({e}); restart reckon to recover from the store");
                self.fail(message.clone());
                Err(SubmitError::Stopped(message))
            }
        };
        for r in replies {
            let _ = r.send(answer.clone());
        }
    }

    fn commit(&mut self, group: Vec<IngestJob>) {
        if group.is_empty() {
            return;
        }
        if let Some(f) = self.stopped() {
            for job in group {
                let _ = job.reply.send(Err(SubmitError::Stopped(f.clone())));
            }
            return;
        }
        let now = self.now();
        let (mut requests, mut waiting, mut catalog) = (Vec::new(), Vec::new(), Vec::new());
        for job in group {
            // A finished stream would dead-letter every event: refuse the request
            // instead of the whole group failing.
            let finished = job
                .requests
                .iter()
                .find_map(|r| Some((r.stream.clone(), self.runtime.finished_reader(&r.stream)?)));
            if let Some((stream, pipeline)) = finished {
                let e = reckon_runtime::Error::Finished {
                    stream: stream.to_string(),
                    pipeline: pipeline.to_string(),
                };
                let _ = job.reply.send(Err(SubmitError::Finished(e.to_string())));
                continue;
            }
            let streams: Vec<Arc<str>> = job.requests.iter().map(|r| r.stream.clone()).collect();
            catalog.extend(job.catalog);
            requests.extend(job.requests);
            waiting.push((job.received, job.reply, streams));
        }
        if requests.is_empty() {
            return;
        }
        let mut kinds = Vec::new();
        let result = self
            .runtime
            .ingest_many_with(now, requests, catalog, &mut |e| {
                kinds.push(emission_labels(e))
            });
        match result {
            Ok(reports) => {
                self.metrics.inc("reckon_commits_total", &[], 1);
                self.published(now, &kinds);
                let done = Instant::now();
                let mut reports = reports.into_iter();
                for (received, reply, streams) in waiting {
                    let secs = done.duration_since(received).as_secs_f64();
                    self.metrics
                        .observe("reckon_ingest_latency_seconds", &[], secs);
                    let mut total = IngestReport::default();
                    for (stream, report) in streams.iter().zip(reports.by_ref()) {
                        if report.late > 0 {
                            self.metrics
                                .observe("reckon_correction_latency_seconds", &[], secs);
                        }
                        self.count(&report);
                        if report.dead_lettered > 0 {
                            self.dead_letter_log.note(stream, &report, done);
                        }
                        total.accepted += report.accepted;
                        total.duplicates += report.duplicates;
                        total.late += report.late;
                        total.dead_lettered += report.dead_lettered;
                        total.last_seq = total.last_seq.max(report.last_seq);
                        total.pipelines.extend(report.pipelines);
                    }
                    let _ = reply.send(Ok(total));
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
            for (p, wm) in op.partition_watermarks() {
                let p = p.0.to_string();
                self.metrics.set(
                    "reckon_partition_watermark_seconds",
                    &[("pipeline", &**op.name()), ("partition", &p)],
                    wm.0.0 as f64 / 1e9,
                );
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

    /// A writer over a fresh store with one stream and pipeline, not started.
    fn writer(dir: &std::path::Path) -> (Writer, reckon_store::Store) {
        let config = reckon_runtime::Config::from_toml(&format!(
            r#"
            [store]
            path = "{}"
            [[stream]]
            name = "s"
            key_fields = ["i"]
            max_future = "off"
            [[pipeline]]
            name = "p"
            stream = "s"
            window = {{ type = "tumbling", size = "1h" }}
            aggregates = [{{ fn = "count" }}]
            "#,
            dir.display()
        ))
        .unwrap();
        let runtime = Runtime::open(&config, reckon_runtime::RuntimeOptions::default()).unwrap();
        let store = runtime.store().clone();
        let w = Writer {
            runtime,
            clock: Arc::new(crate::clock::SystemClock),
            metrics: Arc::new(Metrics::default()),
            progress: watch::channel(Progress::default()).0,
            failure: Arc::new(Mutex::new(None)),
            last_now: ProcessingTime(i64::MIN),
            dead_letter_log: DeadLetterLog::default(),
        };
        (w, store)
    }

    fn delivery(id: u64, cursor: u64) -> Delivery {
        Delivery {
            sink: Arc::from("slack"),
            id,
            cursor,
            record: b"{}".to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_rides_with_the_ingest_commit_and_fails_once_the_writer_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, store) = writer(dir.path());
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let handle = WriterHandle {
            tx,
            failure: w.failure.clone(),
        };
        // A delivery and an ingest request waiting together: one commit, one fsync.
        let (reply, delivered) = oneshot::channel();
        handle.tx.send(Job::Record(delivery(1, 0), reply)).unwrap();
        let (reply, ingested) = oneshot::channel();
        let event = reckon_core::Event {
            stream: Arc::from("s"),
            key: reckon_core::Key::from_tags([("i", "1")]).unwrap(),
            time: reckon_core::EventTime::from_secs(60),
            id: None,
            fields: vec![],
        };
        handle
            .tx
            .send(Job::Ingest(IngestJob {
                requests: vec![IngestRequest {
                    stream: Arc::from("s"),
                    partition: reckon_core::PartitionId(0),
                    events: vec![event],
                }],
                catalog: Vec::new(),
                received: Instant::now(),
                reply,
            }))
            .unwrap();
        handle.tx.send(Job::Stop).unwrap();
        let before = store.stats();
        let thread = std::thread::spawn(move || w.run(&rx, Duration::from_secs(3600)));
        assert_eq!(delivered.await.unwrap(), Ok(()));
        assert_eq!(ingested.await.unwrap().unwrap().accepted, 1);
        thread.join().unwrap();
        let after = store.stats();
        assert_eq!(
            after.fsyncs - before.fsyncs,
            1,
            "the delivery shared the fsync"
        );
        assert_eq!(after.commits - before.commits, 2);
        assert_eq!(store.sink_state("slack").unwrap().last_delivery, 1);
        assert_eq!(store.raw_scan("s").unwrap().len(), 1);

        // The writer has stopped: a delivery is refused, not lost in a queue.
        assert!(matches!(
            handle.record(delivery(2, 1)).await,
            Err(SubmitError::Stopped(_))
        ));
        assert_eq!(store.sink_state("slack").unwrap().last_delivery, 1);
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
