//! Parquet checkpoints: each row holds one action in its column (`add`, `remove`,
//! `metaData`, `protocol`, ...), the others null. A row is turned into the JSON a
//! commit line would hold, and decoded like one.

use crate::error::{Error, Result};
use crate::log::Action;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde_json::{Map, Value};
use std::path::Path;

/// The actions of one checkpoint file.
pub(crate) fn read(path: &Path) -> Result<Vec<Action>> {
    let bad = |e: parquet::errors::ParquetError| Error::Parquet {
        path: path.to_path_buf(),
        message: match e {
            // Built with snappy and lz4 only (what Spark and delta-rs write).
            parquet::errors::ParquetError::General(m) if m.contains("Disabled feature") => {
                format!(
                    "{m}: the checkpoint is compressed with a codec this build does not read (snappy, lz4 and none are read); rewrite it with snappy"
                )
            }
            e => e.to_string(),
        },
    };
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let mut out = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let row = row.map_err(bad)?;
        let mut line = Map::new();
        for (name, field) in row.get_column_iter() {
            if !matches!(field, Field::Null) {
                line.insert(name.clone(), field_json(field));
            }
        }
        let action =
            serde_json::from_value::<crate::log::LineValue>(Value::Object(line)).map_err(|e| {
                Error::Json {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source: e,
                }
            })?;
        out.extend(action.into_action());
    }
    Ok(out)
}

fn row_json(row: &Row) -> Value {
    Value::Object(
        row.get_column_iter()
            .map(|(name, field)| (name.clone(), field_json(field)))
            .collect(),
    )
}

/// A Parquet value as the JSON of a commit line: groups as objects, maps as objects
/// keyed by their (string) keys, lists as arrays.
fn field_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(x) => Value::from(*x),
        Field::Short(x) => Value::from(*x),
        Field::Int(x) => Value::from(*x),
        Field::Long(x) => Value::from(*x),
        Field::UByte(x) => Value::from(*x),
        Field::UShort(x) => Value::from(*x),
        Field::UInt(x) => Value::from(*x),
        Field::ULong(x) => Value::from(*x),
        Field::Float(x) => Value::from(f64::from(*x)),
        Field::Double(x) => Value::from(*x),
        Field::Str(s) => Value::String(s.clone()),
        Field::Group(row) => row_json(row),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_json).collect()),
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match field_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, field_json(v))
                })
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}
