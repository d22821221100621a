//! Column sets: a pipeline's column names, stored once and named by a small id.
//!
//! Every result row used to carry its pipeline's column names (`["mean_level",
//! "count"]`), the same strings in every version of every window. A column set is now
//! written once, as `meta/colset/<pipeline>/<id>`, by the committer, in the same storage
//! batch as the first result row that names it: a crash can never leave a durable row
//! whose set is not durable. Rows carry the id (see `values.rs`).
//!
//! Ids are per pipeline, assigned in order from 0. A pipeline whose columns change (a new
//! aggregate, a renamed one, another order) gets the next id; a set is never rewritten,
//! so an id always means the names it was first stored with. The committer is the only
//! writer: it knows every durable set (all are loaded on open, and it adds its own once
//! their group is durable), so the next id never collides with a stored one.

use crate::error::{Error, Result};
use crate::keys::{self, KeyReader};
use fjall::{Keyspace, OwnedWriteBatch};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The prefix of every column-set entry in `meta`.
pub(crate) const META_COLSET_PREFIX: &[u8] = b"colset/";

/// A column list as results carry it.
pub(crate) type Columns = Arc<[Arc<str>]>;

/// `colset/` ‖ pipeline (string encoding) ‖ id (`u32` BE).
fn entry_key(pipeline: &str, id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_COLSET_PREFIX.len() + pipeline.len() + 6);
    k.extend_from_slice(META_COLSET_PREFIX);
    keys::put_str(&mut k, pipeline);
    keys::put_u32(&mut k, id);
    k
}

fn decode_names(pipeline: &str, id: u32, v: &[u8]) -> Result<Columns> {
    let names: Vec<&str> = postcard::from_bytes(v)
        .map_err(|e| Error::corrupt(format!("column set {id} of pipeline `{pipeline}`"), e))?;
    Ok(names.into_iter().map(Arc::from).collect())
}

/// The column sets of one pipeline.
#[derive(Debug, Default)]
struct PipelineSets {
    by_id: HashMap<u32, Columns>,
    by_names: HashMap<Columns, u32>,
    /// The next id to assign: one more than the largest known.
    next: u32,
}

impl PipelineSets {
    fn add(&mut self, id: u32, names: Columns) {
        self.next = self.next.max(id.saturating_add(1));
        self.by_names.entry(names.clone()).or_insert(id);
        self.by_id.insert(id, names);
    }
}

/// Every durable column set, by pipeline; shared by the committer and the readers.
#[derive(Debug, Default)]
pub(crate) struct ColumnSets {
    sets: RwLock<HashMap<Arc<str>, PipelineSets>>,
}

/// Column sets a commit group adds: in its storage batch, published to
/// [`ColumnSets`] only once the group is durable.
#[derive(Debug, Default)]
pub(crate) struct NewSets(Vec<(Arc<str>, u32, Columns)>);

impl ColumnSets {
    /// Reads every column set stored in `meta`.
    pub(crate) fn load(meta: &Keyspace) -> Result<ColumnSets> {
        let mut sets: HashMap<Arc<str>, PipelineSets> = HashMap::new();
        for kv in meta.prefix(META_COLSET_PREFIX) {
            let (k, v) = kv.into_inner()?;
            let mut r = KeyReader::new(
                k.get(META_COLSET_PREFIX.len()..).unwrap_or_default(),
                "meta colset",
            );
            let pipeline = r.str()?;
            let id = r.u32()?;
            r.end()?;
            let names = decode_names(&pipeline, id, &v)?;
            sets.entry(Arc::from(pipeline)).or_default().add(id, names);
        }
        Ok(ColumnSets {
            sets: RwLock::new(sets),
        })
    }

    /// The id of `columns` for `pipeline`. A set not stored yet gets the pipeline's
    /// next id; its entry is added to `wb` (the storage batch of the row that names it)
    /// and to `new`, which [`ColumnSets::publish`] makes known once `wb` is durable.
    /// Only the committer calls this.
    pub(crate) fn id_for(
        &self,
        meta: &Keyspace,
        wb: &mut OwnedWriteBatch,
        new: &mut NewSets,
        pipeline: &Arc<str>,
        columns: &Columns,
    ) -> Result<u32> {
        if let Some((_, id, _)) = new.0.iter().find(|(p, _, c)| p == pipeline && c == columns) {
            return Ok(*id);
        }
        let next = {
            let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
            let ps = sets.get(pipeline);
            if let Some(id) = ps.and_then(|ps| ps.by_names.get(columns)) {
                return Ok(*id);
            }
            ps.map_or(0, |ps| ps.next)
        };
        // The group's own new sets of this pipeline come after the durable ones.
        let mut id = next;
        for (p, n, _) in &new.0 {
            if p == pipeline {
                id = id.max(n.saturating_add(1));
            }
        }
        if id == u32::MAX {
            return Err(Error::Encode {
                what: "column set",
                reason: format!("pipeline `{pipeline}` has used up its 2^32 - 1 column set ids"),
            });
        }
        let names: Vec<&str> = columns.iter().map(|c| &**c).collect();
        let value = postcard::to_allocvec(&names).map_err(|e| Error::Encode {
            what: "column set",
            reason: e.to_string(),
        })?;
        wb.insert(meta, entry_key(pipeline, id), value);
        new.0.push((pipeline.clone(), id, columns.clone()));
        Ok(id)
    }

    /// Makes a durable group's new sets known to readers and to the next groups.
    pub(crate) fn publish(&self, new: NewSets) {
        if new.0.is_empty() {
            return;
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        for (pipeline, id, names) in new.0 {
            sets.entry(pipeline).or_default().add(id, names);
        }
    }

    /// The names of set `id` of `pipeline`: from memory, else from `meta` (a row of a
    /// group written but not yet published), else [`Error::Corrupt`] naming both.
    pub(crate) fn resolve(&self, meta: &Keyspace, pipeline: &str, id: u32) -> Result<Columns> {
        {
            let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = sets.get(pipeline).and_then(|ps| ps.by_id.get(&id)) {
                return Ok(c.clone());
            }
        }
        match meta.get(entry_key(pipeline, id))? {
            Some(v) => decode_names(pipeline, id, &v),
            None => Err(Error::corrupt(
                format!("result of pipeline `{pipeline}`"),
                format!("names column set {id}, which is not stored"),
            )),
        }
    }
}
