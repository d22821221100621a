//! A torn journal tail (the process died mid-write) is dropped on open; every earlier
//! durable commit is kept.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::EventTime;
use reckon_store::{CommitBatch, Store};
use std::path::{Path, PathBuf};

/// fjall's journal files (`<n>.jnl`), oldest first.
fn journals(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jnl") {
                let n = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                out.push((n, p));
            }
        }
    }
    out.sort();
    out
}

fn newest_journal(dir: &Path) -> PathBuf {
    journals(dir).pop().unwrap().1
}

/// Commits batches 1..=n, one event each (event time = batch number), then closes.
fn write_batches(dir: &Path, n: i64) {
    let store = Store::open(dir).unwrap();
    for t in 1..=n {
        store
            .commit(CommitBatch {
                events: vec![rec(event(
                    STREAM,
                    &key(1),
                    t,
                    t as f64,
                    Some(&t.to_string()),
                ))],
                emissions: vec![emission(&key(1), 0, t as u32, t, t as f64)],
                ..CommitBatch::default()
            })
            .unwrap();
    }
}

fn times(store: &Store) -> Vec<i64> {
    store
        .raw_range(STREAM, &key(1), EventTime::MIN, EventTime::MAX)
        .unwrap()
        .iter()
        .map(|e| e.time.0)
        .collect()
}

/// The end of the written part of a journal file: fjall preallocates journals (64 MiB
/// of zeros) and every batch ends with non-zero trailer bytes.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn latest_version(store: &Store) -> u32 {
    store
        .latest(PIPELINE, &key(1), EventTime(0))
        .unwrap()
        .unwrap()
        .version
        .0
}

/// Reopens after a tear, checks batches 1..=9 survived and 10 is gone, then checks that
/// writing works again and survives another reopen.
fn check_recovers_without_the_torn_batch(dir: &Path) {
    let store = Store::open(dir).unwrap();
    assert_eq!(times(&store), (1..=9).collect::<Vec<_>>());
    assert_eq!(latest_version(&store), 9);
    assert_eq!(store.last_seq(), 9);
    let c = store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &key(1), 11, 11.0, None))],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(c.first_seq, 10, "the torn batch's seq is free again");
    drop(store);
    let store = Store::open(dir).unwrap();
    assert_eq!(times(&store), [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    assert_eq!(store.last_seq(), 10);
}

#[test]
fn a_journal_cut_short_mid_batch_drops_only_that_batch() {
    let dir = tempdir();
    write_batches(dir.path(), 10);
    let path = newest_journal(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let end = data_end(&bytes);
    assert!(end > 0, "the journal holds the commits");
    // The file ends 5 bytes into the last batch's trailer (a torn append).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((end - 5) as u64).unwrap();
    drop(f);
    check_recovers_without_the_torn_batch(dir.path());
}

#[test]
fn a_journal_whose_last_bytes_never_reached_the_disk_drops_only_that_batch() {
    let dir = tempdir();
    write_batches(dir.path(), 10);
    let path = newest_journal(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let end = data_end(&bytes);
    // In a preallocated file a torn write leaves zeros where the tail should be.
    bytes[end - 12..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    check_recovers_without_the_torn_batch(dir.path());
}

#[test]
fn garbage_after_the_last_batch_is_ignored() {
    let dir = tempdir();
    write_batches(dir.path(), 10);
    let path = newest_journal(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let end = data_end(&bytes);
    // The start of a batch that was never finished: a start tag and half a header.
    bytes[end..end + 6].copy_from_slice(&[1, 3, 0, 0, 0, 9]);
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(times(&store), (1..=10).collect::<Vec<_>>());
    assert_eq!(latest_version(&store), 10);
}

#[test]
fn a_damaged_batch_inside_the_journal_refuses_to_open() {
    let dir = tempdir();
    write_batches(dir.path(), 10);
    let path = newest_journal(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte inside the 5th raw event's value (its field name `level`): batch 5 is
    // complete, so its checksum fails.
    let at = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| *w == b"level")
        .map(|(i, _)| i)
        .nth(4)
        .unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    // fjall does not skip a damaged batch in the middle (later batches may depend on
    // it): it refuses to open rather than silently drop acknowledged data.
    let e = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            reckon_store::Error::Fjall(fjall::Error::JournalRecovery(
                fjall::JournalRecoveryError::ChecksumMismatch
            ))
        ),
        "{e:?}"
    );
}

#[test]
fn a_damaged_length_field_is_an_error_or_a_clean_prefix_never_a_panic() {
    let dir = tempdir();
    write_batches(dir.path(), 10);
    let path = newest_journal(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let end = data_end(&bytes);
    // This offset lands in an item header (a length field) for this data.
    bytes[end / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(dir.path()) {
        // Debug builds: fjall's assertion, turned into `Corrupt`; release builds: a
        // checksum mismatch, or (length grown past the end) the tail is treated as torn.
        Err(e) => eprintln!("damaged length: {e}"),
        Ok(store) => {
            let t = times(&store);
            assert_eq!(
                t,
                (1..=t.len() as i64).collect::<Vec<_>>(),
                "a prefix of the commits"
            );
        }
    }
}
