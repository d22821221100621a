//! The PostgreSQL sink: one row per window, upserted on `(pipeline, key,
//! window_start)`, taking a version only if it is newer than the row's.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS reckon_results (
//!     pipeline text NOT NULL, key text NOT NULL,
//!     window_start timestamptz NOT NULL, window_end timestamptz NOT NULL,
//!     version bigint NOT NULL, kind text NOT NULL, count bigint NOT NULL,
//!     result jsonb NOT NULL, checksum text NOT NULL, change bigint NOT NULL,
//!     emitted_at timestamptz NOT NULL,
//!     PRIMARY KEY (pipeline, key, window_start));
//! ```
//!
//! A batch is one statement over arrays (`unnest`), in one transaction, whatever its
//! size: one round trip. Times are sent as integer microseconds and turned into
//! `timestamptz` by integer arithmetic, so nothing is rounded.

use super::{Sink, newest};
use reckon_core::Emission;
use reckon_runtime::SinkConfig;

pub(crate) struct Postgres {
    url: String,
    table: String,
    client: Option<tokio_postgres::Client>,
    upsert: Option<tokio_postgres::Statement>,
}

impl Postgres {
    pub(crate) fn new(cfg: &SinkConfig) -> Postgres {
        Postgres {
            url: cfg.url.clone(),
            // Checked by the configuration: letters, digits, `_`, one optional `.`.
            table: cfg.table_name().to_string(),
            client: None,
            upsert: None,
        }
    }
}

/// A batch as one array per column (the upsert's parameters, in order).
#[derive(Default)]
struct Columns<'a> {
    pipeline: Vec<&'a str>,
    key: Vec<&'a str>,
    start: Vec<i64>,
    end: Vec<i64>,
    version: Vec<i64>,
    kind: Vec<&'a str>,
    count: Vec<i64>,
    result: Vec<String>,
    checksum: Vec<String>,
    change: Vec<i64>,
    emitted_at: Vec<i64>,
}

/// Where a connection string points, `host:port/dbname` (no password), for messages.
fn where_is(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = match c.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "{host}:{port}/{}",
                c.get_dbname().unwrap_or("(default database)")
            )
        }
        Err(_) => crate::connector::redact(url),
    }
}

/// Microseconds since the epoch (PostgreSQL's resolution), rounded down.
fn micros(ns: i64) -> i64 {
    ns.div_euclid(1_000)
}

impl Sink for Postgres {
    async fn connect(&mut self) -> Result<(), String> {
        self.client = None;
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to PostgreSQL at {}: {e}", where_is(&self.url)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("PostgreSQL sink connection closed: {e}");
            }
        });
        let t = &self.table;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    pipeline text NOT NULL,
                    key text NOT NULL,
                    window_start timestamptz NOT NULL,
                    window_end timestamptz NOT NULL,
                    version bigint NOT NULL,
                    kind text NOT NULL,
                    count bigint NOT NULL,
                    result jsonb NOT NULL,
                    checksum text NOT NULL,
                    change bigint NOT NULL,
                    emitted_at timestamptz NOT NULL,
                    PRIMARY KEY (pipeline, key, window_start))"
            ))
            .await
            .map_err(|e| format!("creating table {t}: {e}"))?;
        let at = |c: &str| format!("'epoch'::timestamptz + {c} * interval '1 microsecond'");
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {t} AS r (pipeline, key, window_start, window_end, version, kind, count, result, checksum, change, emitted_at)
                 SELECT p, k, {s}, {e}, v, kd, c, res::jsonb, cs, ch, {a}
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[], $11::int8[])
                   AS u(p, k, s, e, v, kd, c, res, cs, ch, a)
                 ON CONFLICT (pipeline, key, window_start) DO UPDATE SET
                   window_end = EXCLUDED.window_end, version = EXCLUDED.version,
                   kind = EXCLUDED.kind, count = EXCLUDED.count, result = EXCLUDED.result,
                   checksum = EXCLUDED.checksum, change = EXCLUDED.change,
                   emitted_at = EXCLUDED.emitted_at
                 WHERE r.version < EXCLUDED.version",
                s = at("s"),
                e = at("e"),
                a = at("a"),
            ))
            .await
            .map_err(|e| format!("preparing the upsert into {t}: {e}"))?;
        self.client = Some(client);
        self.upsert = Some(upsert);
        Ok(())
    }

    async fn write(&mut self, changes: &[&(u64, Emission)]) -> Result<(), String> {
        let (Some(client), Some(upsert)) = (&self.client, &self.upsert) else {
            return Err("not connected".into());
        };
        let rows = newest(changes);
        let mut c = Columns::default();
        for (n, e) in &rows {
            let json = crate::wire::emission_json(e, Some(*n));
            c.pipeline.push(&e.pipeline);
            c.key.push(e.key.as_str());
            c.start.push(micros(e.window.start.0));
            c.end.push(micros(e.window.end.0));
            c.version.push(i64::from(e.version.0));
            c.kind.push(crate::writer::kind_name(e.kind));
            c.count.push(e.count as i64);
            c.result.push(json["values"].to_string());
            c.checksum
                .push(format!("{}:{:016x}", e.checksum.count, e.checksum.hash));
            c.change.push(*n as i64);
            c.emitted_at.push(micros(e.emitted_at.0));
        }
        client
            .execute(
                upsert,
                &[
                    &c.pipeline,
                    &c.key,
                    &c.start,
                    &c.end,
                    &c.version,
                    &c.kind,
                    &c.count,
                    &c.result,
                    &c.checksum,
                    &c.change,
                    &c.emitted_at,
                ],
            )
            .await
            .map_err(|e| format!("writing {} rows to {}: {e}", rows.len(), self.table))?;
        Ok(())
    }
}
