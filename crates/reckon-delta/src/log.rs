//! The Delta Lake transaction log: `_delta_log/NNNNNNNNNNNNNNNNNNNN.json` commits (one
//! action per line), `_last_checkpoint`, and classic single-file or multi-part Parquet
//! checkpoints (`N.checkpoint.parquet`, `N.checkpoint.K.P.parquet`), read without Spark
//! or a JVM.
//!
//! Only what planning needs is decoded: `protocol` (an unknown reader feature is
//! refused), `metaData` (partition columns), `add` and `remove` (path, partition values,
//! `dataChange`, `stats.numRecords`, deletion vectors) and `commitInfo` (timestamp,
//! operation and its parameters). Other actions (`txn`, `domainMetadata`, `cdc`, ...)
//! are read past.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Reader versions this reader reads.
pub const MAX_READER_VERSION: u32 = 3;

/// Table features (reader version 3) this reader understands: deletion vectors are read
/// as metadata (their cardinality), and the others do not change what the log says.
pub const READER_FEATURES: &[&str] = &["deletionVectors", "timestampNtz", "vacuumProtocolCheck"];

/// A file added to the table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table root (URL-encoded).
    pub path: String,
    /// Partition column → value (`None`: null).
    #[serde(default)]
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Bytes.
    #[serde(default)]
    pub size: i64,
    /// False for a rearrangement that changed no data (OPTIMIZE, Z-order).
    #[serde(default = "yes")]
    pub data_change: bool,
    /// File statistics as a JSON string (`numRecords`, min/max values).
    #[serde(default)]
    pub stats: Option<String>,
    /// Rows of the file marked deleted, if it has a deletion vector.
    #[serde(default)]
    pub deletion_vector: Option<DeletionVector>,
}

fn yes() -> bool {
    true
}

impl Add {
    /// `stats.numRecords`, if the writer recorded it.
    pub fn num_records(&self) -> Option<u64> {
        let stats: serde_json::Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        stats.get("numRecords")?.as_u64()
    }

    /// The rows this file contributes: its records less those its deletion vector drops.
    pub fn live_rows(&self) -> Option<u64> {
        let n = self.num_records()?;
        Some(n.saturating_sub(self.deletion_vector.as_ref().map_or(0, |d| d.cardinality)))
    }
}

/// A deletion vector: which rows of a file are deleted (only its size is read here).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionVector {
    /// `u` (a file beside the table), `i` (inline) or `p` (an absolute path).
    pub storage_type: String,
    /// Where it is, or its bytes.
    pub path_or_inline_dv: String,
    /// How many rows it deletes.
    pub cardinality: u64,
}

/// A file removed from the table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    /// Relative to the table root.
    pub path: String,
    /// Partition values (written with `extendedFileMetadata`).
    #[serde(default)]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    /// False for a rearrangement that changed no data.
    #[serde(default = "yes")]
    pub data_change: bool,
    /// Statistics of the removed file, when written.
    #[serde(default)]
    pub stats: Option<String>,
    /// The deletion vector the removed file had.
    #[serde(default)]
    pub deletion_vector: Option<DeletionVector>,
}

/// What readers and writers of the table must support.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// 1, 2 or 3 (3: `reader_features` lists the features).
    pub min_reader_version: u32,
    /// Writer version.
    #[serde(default)]
    pub min_writer_version: u32,
    /// Reader features (reader version 3).
    #[serde(default)]
    pub reader_features: Option<Vec<String>>,
}

impl Protocol {
    /// An error naming what this reader cannot read, if anything.
    pub fn check(&self, table: &Path) -> Result<()> {
        if self.min_reader_version > MAX_READER_VERSION {
            return Err(Error::Unsupported {
                table: table.to_path_buf(),
                what: format!(
                    "reader version {} (this reader reads up to {MAX_READER_VERSION})",
                    self.min_reader_version
                ),
            });
        }
        let unknown: Vec<&str> = self
            .reader_features
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| !READER_FEATURES.contains(f))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Unsupported {
                table: table.to_path_buf(),
                what: format!(
                    "reader feature{} {} (supported: {})",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join(", "),
                    READER_FEATURES.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// The table's metadata (only what planning reads).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaData {
    /// The partition columns, in order.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// Table properties (`delta.logRetentionDuration`...).
    #[serde(default)]
    pub configuration: BTreeMap<String, Option<String>>,
}

/// Provenance of a commit.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// `WRITE`, `DELETE`, `MERGE`, `OPTIMIZE`, `CREATE TABLE`...
    #[serde(default)]
    pub operation: Option<String>,
    /// The operation's parameters (`mode`, `predicate`...), as the writer gave them.
    #[serde(default)]
    pub operation_parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One action of a commit or checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A file added.
    Add(Add),
    /// A file removed.
    Remove(Remove),
    /// The protocol.
    Protocol(Protocol),
    /// The table's metadata.
    MetaData(MetaData),
    /// The commit's provenance.
    CommitInfo(CommitInfo),
}

/// A line of a commit (or a row of a checkpoint): one action, under its name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineValue {
    add: Option<Add>,
    remove: Option<Remove>,
    protocol: Option<Protocol>,
    meta_data: Option<MetaData>,
    commit_info: Option<CommitInfo>,
}

impl LineValue {
    pub(crate) fn into_action(self) -> Option<Action> {
        if let Some(a) = self.add {
            return Some(Action::Add(a));
        }
        if let Some(r) = self.remove {
            return Some(Action::Remove(r));
        }
        if let Some(p) = self.protocol {
            return Some(Action::Protocol(p));
        }
        if let Some(m) = self.meta_data {
            return Some(Action::MetaData(m));
        }
        self.commit_info.map(Action::CommitInfo)
    }
}

/// One commit: its version and actions, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// The table version it made.
    pub version: u64,
    /// Its actions.
    pub actions: Vec<Action>,
}

impl Commit {
    /// Its `commitInfo`, if it has one.
    pub fn info(&self) -> Option<&CommitInfo> {
        self.actions.iter().find_map(|a| match a {
            Action::CommitInfo(c) => Some(c),
            _ => None,
        })
    }
}

/// What `_delta_log` holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// Versions with a JSON commit, ascending.
    pub commits: Vec<u64>,
    /// Checkpoints: version → its files (one, or the parts in order), complete ones only.
    pub checkpoints: BTreeMap<u64, Vec<PathBuf>>,
    /// `_last_checkpoint`'s version, if the file is there.
    pub last_checkpoint: Option<u64>,
}

impl Listing {
    /// The newest version the log reaches.
    pub fn latest(&self) -> Option<u64> {
        let c = self.commits.last().copied();
        let k = self.checkpoints.keys().next_back().copied();
        c.max(k)
    }
}

/// `_last_checkpoint`.
#[derive(Deserialize)]
struct LastCheckpoint {
    version: u64,
}

/// A Delta table's log.
#[derive(Clone, Debug)]
pub struct DeltaLog {
    table: PathBuf,
    log: PathBuf,
}

impl DeltaLog {
    /// The log of the table at `table` (a directory with `_delta_log`).
    pub fn open(table: &Path) -> Result<DeltaLog> {
        let log = table.join("_delta_log");
        if !log.is_dir() {
            return Err(Error::NotATable(table.to_path_buf()));
        }
        Ok(DeltaLog {
            table: table.to_path_buf(),
            log,
        })
    }

    /// The table's directory.
    pub fn table(&self) -> &Path {
        &self.table
    }

    /// The commits and checkpoints in `_delta_log`.
    pub fn listing(&self) -> Result<Listing> {
        let io = |e: std::io::Error| Error::Io {
            path: self.log.clone(),
            source: e,
        };
        let mut out = Listing::default();
        let mut parts: BTreeMap<(u64, u32), BTreeSet<(u32, PathBuf)>> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.log).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == "_last_checkpoint" {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
                    path: path.clone(),
                    source: e,
                })?;
                let lc: LastCheckpoint =
                    serde_json::from_str(text.trim()).map_err(|e| Error::Json {
                        path,
                        line: 1,
                        source: e,
                    })?;
                out.last_checkpoint = Some(lc.version);
                continue;
            }
            let Some((stem, rest)) = name.split_once('.') else {
                continue;
            };
            if stem.len() != 20 {
                continue;
            }
            let Ok(version) = stem.parse::<u64>() else {
                continue;
            };
            match rest.split('.').collect::<Vec<_>>()[..] {
                ["json"] => out.commits.push(version),
                ["checkpoint", "parquet"] => {
                    parts
                        .entry((version, 1))
                        .or_default()
                        .insert((1, entry.path()));
                }
                ["checkpoint", part, total, "parquet"] => {
                    if let (Ok(p), Ok(t)) = (part.parse::<u32>(), total.parse::<u32>()) {
                        parts
                            .entry((version, t))
                            .or_default()
                            .insert((p, entry.path()));
                    }
                }
                _ => {}
            }
        }
        out.commits.sort_unstable();
        for ((version, total), files) in parts {
            // A multi-part checkpoint counts only with every part (a writer that died
            // half-way leaves some).
            if files.len() == total as usize && files.iter().map(|(p, _)| *p).eq(1..=total) {
                out.checkpoints
                    .insert(version, files.into_iter().map(|(_, p)| p).collect());
            }
        }
        Ok(out)
    }

    /// The file of commit `version`.
    pub fn commit_path(&self, version: u64) -> PathBuf {
        self.log.join(format!("{version:020}.json"))
    }

    /// Reads commit `version`.
    pub fn commit(&self, version: u64) -> Result<Commit> {
        let path = self.commit_path(version);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let mut actions = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: LineValue = serde_json::from_str(line).map_err(|e| Error::Json {
                path: path.clone(),
                line: i + 1,
                source: e,
            })?;
            actions.extend(l.into_action());
        }
        Ok(Commit { version, actions })
    }

    /// The actions of a checkpoint (its files, in order).
    pub fn checkpoint(&self, files: &[PathBuf]) -> Result<Vec<Action>> {
        let mut out = Vec::new();
        for f in files {
            out.extend(crate::checkpoint::read(f)?);
        }
        Ok(out)
    }
}
