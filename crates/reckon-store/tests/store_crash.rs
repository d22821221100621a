//! kill -9 during commits: after every kill the store reopens, every commit that was
//! acknowledged is there in full, no commit is there in part, and writing works again
//! (fjall issue #257 reported writes halting after a kill and reload).
//!
//! The writer is this test binary itself, started as a child process that runs only
//! `crash_child_entry_point` with the store directory in an environment variable. It
//! commits from three threads (so kills land in group commits) and prints one line per
//! acknowledged commit.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::{EventId, EventTime, ProcessingTime};
use reckon_store::{Checkpoint, CommitBatch, JournalEntry, Store};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DIR_ENV: &str = "RECKON_STORE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "RECKON_STORE_CRASH_ROUND";
const THREADS: i64 = 3;
const PER_BATCH: i64 = 20;
const KILLS: u32 = 6;

/// Batch `b` holds events `b * 1000 + j` (j < PER_BATCH) of key `b % 7`, with ids.
fn batch_events(b: i64) -> Vec<reckon_store::RawRecord> {
    (0..PER_BATCH)
        .map(|j| {
            let id = format!("{b}-{j}");
            rec(event(
                STREAM,
                &key((b % 7) as u32),
                b * 1000 + j,
                j as f64,
                Some(&id),
            ))
        })
        .collect()
}

/// Runs only in the child process (the parent sets the environment variable).
#[test]
fn crash_child_entry_point() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let round: i64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let store = Store::open(std::path::Path::new(&dir)).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0.. {
                    let b = round * 1_000_000 + t * 100_000 + n;
                    let mut batch = CommitBatch {
                        events: batch_events(b),
                        ticks: vec![(Arc::from(PIPELINE), ProcessingTime(b))],
                        emissions: vec![emission(&key(t as u32), round, n as u32 + 1, b, 1.0)],
                        ..CommitBatch::default()
                    };
                    if n % 5 == 4 {
                        batch.checkpoints.push(Checkpoint {
                            pipeline: Arc::from(format!("p{t}")),
                            seq: store.last_seq(),
                            snapshot: vec![7; 100],
                        });
                    }
                    let c = store.commit(batch).unwrap();
                    println!("ack {b} {} {}", c.first_seq, c.last_seq);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Starts a writer child, waits for `acks` acknowledgements, kills it with SIGKILL and
/// returns every batch it acknowledged with its last sequence number.
fn run_and_kill(dir: &std::path::Path, round: u32, acks: usize) -> BTreeMap<i64, u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                if tx.send((v[0] as i64, v[2])).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < acks {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((b, seq)) => {
                acked.insert(b, seq);
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "round {round}: only {} of {acks} commits acknowledged in 20 s: \
                     writes halted after kill and reload?",
                    acked.len()
                );
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines the child printed before it died are acknowledged commits too.
    while let Ok((b, seq)) = rx.try_recv() {
        acked.insert(b, seq);
    }
    acked
}

#[test]
fn every_acknowledged_commit_survives_kill_9() {
    let dir = tempdir();
    let mut all_acked: BTreeMap<i64, u64> = BTreeMap::new();
    for round in 0..KILLS {
        let acks = 10 + (round as usize * 17) % 40;
        let acked = run_and_kill(dir.path(), round, acks);
        assert!(acked.len() >= acks);
        all_acked.extend(acked);

        let store = Store::open(dir.path()).unwrap();
        // Every acknowledged batch is there in full.
        for (&b, &seq) in &all_acked {
            let got = store
                .raw_range(
                    STREAM,
                    &key((b % 7) as u32),
                    EventTime(b * 1000),
                    EventTime(b * 1000 + PER_BATCH),
                )
                .unwrap();
            assert_eq!(
                got.len() as i64,
                PER_BATCH,
                "round {round}: batch {b} lost events"
            );
            assert!(store.last_seq() >= seq);
        }
        // No batch is there in part (the one being written at the kill is all or nothing).
        let mut per_batch: BTreeMap<i64, i64> = BTreeMap::new();
        for e in store.raw_scan(STREAM).unwrap() {
            *per_batch.entry(e.time.0 / 1000).or_default() += 1;
        }
        for (b, n) in &per_batch {
            assert_eq!(*n, PER_BATCH, "round {round}: batch {b} is partial");
        }
        assert!(per_batch.len() >= all_acked.len());
        // Ids of acknowledged batches are remembered.
        let ids: Vec<EventId> = all_acked
            .keys()
            .map(|b| EventId(Arc::from(format!("{b}-0"))))
            .collect();
        let refs: Vec<&EventId> = ids.iter().collect();
        assert!(store.ids_seen(STREAM, &refs).unwrap().iter().all(|s| *s));
        // The journal after the oldest checkpoint is gap-free up to the last seq.
        let from = (0..THREADS)
            .filter_map(|t| store.checkpoint(&format!("p{t}")).unwrap())
            .map(|c| c.seq)
            .min()
            .unwrap_or(0);
        let journal = store.journal_after(from).unwrap();
        let seqs: Vec<u64> = journal.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            ((from + 1)..=store.last_seq()).collect::<Vec<_>>(),
            "round {round}"
        );
        let ticks = journal
            .iter()
            .filter(|(_, e)| matches!(e, JournalEntry::Tick { .. }))
            .count();
        assert!(ticks * PER_BATCH as usize <= journal.len());
        // Results: each writer thread's window of this round has its acknowledged version.
        for t in 0..THREADS {
            let newest = all_acked
                .keys()
                .filter(|b| *b / 1_000_000 == i64::from(round) && (*b / 100_000) % 10 == t)
                .map(|b| b % 100_000 + 1)
                .max();
            if let Some(v) = newest {
                let stored = store
                    .latest(PIPELINE, &key(t as u32), EventTime(i64::from(round) * HOUR))
                    .unwrap()
                    .unwrap();
                assert!(i64::from(stored.version.0) >= v, "round {round} thread {t}");
            }
        }
        drop(store);
    }
    eprintln!(
        "{KILLS} kills, {} acknowledged commits, all present",
        all_acked.len()
    );
}
