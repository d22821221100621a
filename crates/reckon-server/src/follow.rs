//! The change-feed follower: one task reads each commit's new changes from the store
//! once and fans them out to every subscriber (the SSE change feeds, the webhooks, and
//! later sinks and alerts).
//!
//! Why: each feed and webhook used to read the store's change feed itself on every
//! commit, so N followers meant N reads of the same rows. Now the follower task, woken
//! by the writer's [`Progress`] after each commit, reads the new changes (off the async
//! workers) and broadcasts them as chunks, each holding **every** change numbered in
//! `(after, to]`. A subscriber that starts behind (an SSE client with `since`, a
//! webhook resuming from its durable cursor) or falls behind (more than the broadcast's
//! capacity of chunks behind: `Lagged`) reads pages from the store itself until it has
//! caught up, and then takes the broadcast chunks again. The change numbers make the
//! hand-over checkable: a chunk that starts after the subscriber's position is a gap
//! (read the store), one that ends at or before it is already seen (skipped), so a
//! subscriber sees every change after its start exactly once, in order.
//!
//! ```no_run
//! # async fn f(state: reckon_server::AppState) {
//! let mut sub = state.follower().subscribe(0); // the whole history, then live
//! while let Ok(Some(page)) = sub.next_page().await {
//!     for (n, emission) in page.changes() {
//!         println!("{n}: {}", emission.pipeline);
//!     }
//! }
//! # }
//! ```

use crate::writer::Progress;
use reckon_core::Emission;
use reckon_store::Store;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// How the follower reads and buffers.
#[derive(Debug, Clone, Copy)]
pub struct FollowerOptions {
    /// Changes read from the store at a time (one broadcast chunk, one catch-up page).
    pub page: usize,
    /// Chunks the broadcast holds for a slow subscriber before it lags (and reads the
    /// store instead).
    pub capacity: usize,
}

impl Default for FollowerOptions {
    fn default() -> Self {
        FollowerOptions {
            page: 1_000,
            capacity: 64,
        }
    }
}

/// Every change numbered in `(after, to]`, in order.
#[derive(Debug)]
struct Chunk {
    after: u64,
    to: u64,
    changes: Arc<[(u64, Emission)]>,
}

/// The handle to the follower task: subscribe to the change feed from here.
#[derive(Debug, Clone)]
pub struct Follower {
    store: Store,
    tx: broadcast::Sender<Arc<Chunk>>,
    head: watch::Receiver<u64>,
    page: usize,
}

impl Follower {
    /// Starts the follower task (inside a tokio runtime). It runs until `shutdown`
    /// becomes `true` or `progress`'s sender is gone; then every subscription ends.
    pub fn start(
        store: Store,
        progress: watch::Receiver<Progress>,
        shutdown: watch::Receiver<bool>,
        options: FollowerOptions,
    ) -> (Follower, tokio::task::JoinHandle<()>) {
        let (tx, _) = broadcast::channel(options.capacity.max(1));
        let (head_tx, head) = watch::channel(store.last_change());
        let follower = Follower {
            store: store.clone(),
            tx: tx.clone(),
            head,
            page: options.page.max(1),
        };
        let task = tokio::spawn(run(store, progress, shutdown, tx, head_tx, follower.page));
        (follower, task)
    }

    /// A subscription to every change numbered after `after`, in order: first what is
    /// stored already (read from the store), then live.
    pub fn subscribe(&self, after: u64) -> Subscription {
        Subscription {
            store: self.store.clone(),
            rx: self.tx.subscribe(),
            head: self.head.clone(),
            seen: after,
            gap: false,
            pipeline: None,
            page: self.page,
        }
    }

    /// The last change number the follower has published (read and broadcast, or
    /// skipped while nobody was subscribed).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }
}

/// The follower task: after each commit, read the new changes once and broadcast them.
async fn run(
    store: Store,
    mut progress: watch::Receiver<Progress>,
    mut shutdown: watch::Receiver<bool>,
    tx: broadcast::Sender<Arc<Chunk>>,
    head_tx: watch::Sender<u64>,
    page: usize,
) {
    let mut head = *head_tx.borrow();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Mark the progress seen *before* reading, so a commit landing during the read
        // still wakes us.
        progress.borrow_and_update();
        while store.last_change() > head && !*shutdown.borrow() {
            if tx.receiver_count() == 0 {
                // Nobody listens: skip the read; a later subscriber reads the store.
                head = store.last_change();
                head_tx.send_replace(head);
                break;
            }
            let s = store.clone();
            let read = tokio::task::spawn_blocking(move || s.changes_page(head, None, page)).await;
            match read {
                Ok(Ok(p)) if p.scanned_to > head => {
                    let chunk = Chunk {
                        after: head,
                        to: p.scanned_to,
                        changes: p.changes.into(),
                    };
                    head = chunk.to;
                    // Broadcast first, then move the head: a subscriber that sees the
                    // new head finds the chunk already queued.
                    let _ = tx.send(Arc::new(chunk));
                    head_tx.send_replace(head);
                }
                Ok(Ok(_)) => {
                    // Changes rows removed (repair): nothing between, move on.
                    head = store.last_change();
                    head_tx.send_replace(head);
                }
                Ok(Err(e)) => {
                    tracing::error!(
                        "the change-feed follower cannot read the store ({e}); retrying in 1 s"
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(
                        "the change-feed follower's read failed ({e}); retrying in 1 s"
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One subscriber's position in the change feed (see the module docs).
#[derive(Debug)]
pub struct Subscription {
    store: Store,
    rx: broadcast::Receiver<Arc<Chunk>>,
    head: watch::Receiver<u64>,
    /// Every change up to this number was returned (or filtered out).
    seen: u64,
    /// A broadcast chunk started after `seen`: read the store.
    gap: bool,
    pipeline: Option<Arc<str>>,
    page: usize,
}

impl Subscription {
    /// Only the changes of `pipeline` (the others are skipped, and catch-up reads skip
    /// them in the store).
    pub fn only(mut self, pipeline: Arc<str>) -> Subscription {
        self.pipeline = Some(pipeline);
        self
    }

    /// Every change up to this number has been returned (or filtered out).
    pub fn position(&self) -> u64 {
        self.seen
    }

    /// The next changes after the subscription's position, in order, never empty:
    /// waits until there are some. `Ok(None)` once the follower has stopped (server
    /// shutdown). Cancel-safe: dropping the future loses nothing (the position moves
    /// only when a page is returned).
    pub async fn next_page(&mut self) -> Result<Option<Page>, reckon_store::Error> {
        loop {
            // Chunks already queued.
            loop {
                match self.rx.try_recv() {
                    Ok(chunk) => {
                        if let Some(p) = self.take(&chunk) {
                            return Ok(Some(p));
                        }
                    }
                    // Missed chunks show up as a gap, or as the head being ahead.
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return Ok(None),
                }
            }
            // Behind the follower, or a gap: read the store.
            let head = *self.head.borrow_and_update();
            if self.gap || self.seen < head {
                self.gap = false;
                let (store, after, pipeline, page) = (
                    self.store.clone(),
                    self.seen,
                    self.pipeline.clone(),
                    self.page,
                );
                let read = tokio::task::spawn_blocking(move || {
                    let durable = store.last_change();
                    store
                        .changes_page(after, pipeline.as_deref(), page)
                        .map(|p| (durable, p))
                })
                .await
                .map_err(|e| {
                    reckon_store::Error::Closed(format!("reading the change feed failed: {e}"))
                })?;
                let (durable, p) = read?;
                // An empty read saw nothing up to the durable change (rows a repair
                // removed): nothing lies between.
                let to = if p.scanned_to > after {
                    p.scanned_to
                } else {
                    durable.max(after)
                };
                self.seen = to;
                if !p.changes.is_empty() {
                    return Ok(Some(Page {
                        changes: p.changes.into(),
                        start: 0,
                        to,
                    }));
                }
                continue;
            }
            tokio::select! {
                biased;
                r = self.rx.recv() => match r {
                    Ok(chunk) => {
                        if let Some(p) = self.take(&chunk) {
                            return Ok(Some(p));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(None),
                },
                changed = self.head.changed() => {
                    if changed.is_err() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The part of a broadcast chunk after the position (`None` if nothing of it is
    /// new, or it leaves a gap).
    fn take(&mut self, chunk: &Chunk) -> Option<Page> {
        if chunk.to <= self.seen {
            return None;
        }
        if chunk.after > self.seen {
            self.gap = true;
            return None;
        }
        let start = chunk.changes.partition_point(|(n, _)| *n <= self.seen);
        self.seen = chunk.to;
        let page = match &self.pipeline {
            None => Page {
                changes: chunk.changes.clone(),
                start,
                to: chunk.to,
            },
            Some(p) => Page {
                changes: chunk.changes[start..]
                    .iter()
                    .filter(|(_, e)| e.pipeline == *p)
                    .cloned()
                    .collect(),
                start: 0,
                to: chunk.to,
            },
        };
        (!page.changes().is_empty()).then_some(page)
    }
}

/// Changes for one subscriber, in order (shared, not copied, between subscribers).
#[derive(Debug, Clone)]
pub struct Page {
    changes: Arc<[(u64, Emission)]>,
    start: usize,
    to: u64,
}

impl Page {
    /// The changes, each with its number.
    pub fn changes(&self) -> &[(u64, Emission)] {
        self.changes.get(self.start..).unwrap_or_default()
    }

    /// Every change up to this number was looked at for this page (matching or not).
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The page without its first `n` changes, or `None` if nothing is left.
    pub fn skip(&self, n: usize) -> Option<Page> {
        let page = Page {
            changes: self.changes.clone(),
            start: self.start.saturating_add(n).min(self.changes.len()),
            to: self.to,
        };
        (!page.changes().is_empty()).then_some(page)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reckon_core::{
        Checksum, EmissionKind, EventTime, Key, ProcessingTime, Version, Watermark, Window,
    };
    use reckon_store::CommitBatch;

    fn emission(pipeline: &str, i: u32, version: u32) -> Emission {
        Emission {
            pipeline: Arc::from(pipeline),
            key: Key::from_tags([("i", i.to_string())]).unwrap(),
            window: Window {
                start: EventTime(0),
                end: EventTime(60),
            },
            version: Version(version),
            kind: EmissionKind::OnTime,
            columns: Arc::from(vec![Arc::<str>::from("n")]),
            values: vec![None],
            count: 1,
            checksum: Checksum { count: 1, hash: 1 },
            emitted_at: ProcessingTime(i64::from(version)),
            watermark: Watermark(EventTime(60)),
            states: None,
        }
    }

    /// Commits `n` changes (half of pipeline `a`, half of `b`) and publishes the
    /// progress, like the writer.
    fn commit(store: &Store, progress: &watch::Sender<Progress>, version: u32, n: u32) {
        let emissions = (0..n)
            .map(|i| emission(if i % 2 == 0 { "a" } else { "b" }, i, version))
            .collect();
        store
            .commit(CommitBatch {
                emissions,
                ..CommitBatch::default()
            })
            .unwrap();
        progress.send_replace(Progress {
            last_change: store.last_change(),
        });
    }

    async fn collect(sub: &mut Subscription, upto: u64) -> Vec<u64> {
        let mut got = Vec::new();
        while got.last().is_none_or(|n| *n < upto) {
            let page = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next_page())
                .await
                .expect("a page in time")
                .unwrap()
                .expect("the follower runs");
            assert!(!page.changes().is_empty());
            got.extend(page.changes().iter().map(|(n, _)| *n));
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_subscriber_sees_every_change_once_in_order_even_when_it_lags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (progress, progress_rx) = watch::channel(Progress::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Small pages and a tiny broadcast, so the lagging subscriber overflows it.
        let options = FollowerOptions {
            page: 7,
            capacity: 2,
        };
        // History before the follower starts.
        for v in 1..=3 {
            commit(&store, &progress, v, 10);
        }
        let (follower, task) = Follower::start(store.clone(), progress_rx, shutdown_rx, options);
        let mut from_zero = follower.subscribe(0);
        let mut live = follower.subscribe(store.last_change());
        let mut only_a = follower.subscribe(0).only(Arc::from("a"));
        let mut lagging = follower.subscribe(5);
        let start_live = store.last_change();

        // A reader that keeps up, concurrently with the commits.
        let reader = tokio::spawn(async move {
            let got = collect(&mut live, 30 + 200 * 9).await;
            (live, got)
        });
        let writer = {
            let (store, progress) = (store.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                for v in 4..=203 {
                    commit(&store, &progress, v, 9);
                }
            })
        };
        writer.await.unwrap();
        let last = store.last_change();
        assert_eq!(last, 30 + 200 * 9);

        let (_, got_live) = reader.await.unwrap();
        assert_eq!(got_live, ((start_live + 1)..=last).collect::<Vec<_>>());
        // The lagging one read nothing during 200 commits (100 times the capacity).
        let got_lagging = collect(&mut lagging, last).await;
        assert_eq!(got_lagging, (6..=last).collect::<Vec<_>>());
        let got_all = collect(&mut from_zero, last).await;
        assert_eq!(got_all, (1..=last).collect::<Vec<_>>());
        // Pipeline "a" is every even index of each commit.
        let mut want_a = Vec::new();
        for (c, per) in (0..203u64).map(|c| (c, if c < 3 { 10 } else { 9 })) {
            let base = if c < 3 { c * 10 } else { 30 + (c - 3) * 9 };
            want_a.extend((0..per).filter(|i| i % 2 == 0).map(|i| base + i + 1));
        }
        let got_a = collect(&mut only_a, *want_a.last().unwrap()).await;
        assert_eq!(got_a, want_a);

        // Live again after catching up: one more commit reaches the lagging one.
        commit(&store, &progress, 204, 3);
        assert_eq!(
            collect(&mut lagging, last + 3).await,
            vec![last + 1, last + 2, last + 3]
        );
        assert_eq!(collect(&mut from_zero, last + 3).await.len(), 3);

        // Shutdown ends every subscription.
        shutdown.send_replace(true);
        task.await.unwrap();
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), from_zero.next_page())
                .await
                .unwrap()
                .unwrap()
                .is_none()
        );
    }
}
