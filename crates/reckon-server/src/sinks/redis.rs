//! The Redis sink: the latest version of every window, and the latest window of every
//! key, for real-time reads (seed 003's counts).
//!
//! - `{prefix}{pipeline}:{key}:{window start, RFC 3339}`: a hash with `version` and
//!   `json` (the window as the HTTP API shows it);
//! - `{prefix}{pipeline}:{key}:latest`: the same for the key's newest window, plus
//!   its `start` (Unix milliseconds).
//!
//! Each window is written by one Lua script that compares versions inside Redis, so a
//! write applies only a newer version, atomically, and writing a batch again is
//! harmless. A batch is one pipeline of commands: one round trip. The client is a small
//! RESP2 codec over TCP (the few commands it needs do not justify a dependency).

use super::{Sink, newest};
use reckon_core::Emission;
use reckon_runtime::SinkConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Takes `ARGV[1]` (version), `ARGV[2]` (window start, ms) and `ARGV[3]` (JSON) for
/// the window `KEYS[1]` if newer, and for the key's latest `KEYS[2]` if the window is
/// at least as new as the one held.
const SCRIPT: &str = r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'version'))
if v and v >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'json', ARGV[3])
local s = tonumber(redis.call('HGET', KEYS[2], 'start'))
local lv = tonumber(redis.call('HGET', KEYS[2], 'version')) or 0
if (not s) or s < tonumber(ARGV[2])
   or (s == tonumber(ARGV[2]) and lv < tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[2], 'start', ARGV[2], 'version', ARGV[1], 'json', ARGV[3])
end
return 1
"#;

pub(crate) struct Redis {
    addr: String,
    db: Option<String>,
    prefix: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Redis {
    pub(crate) fn new(cfg: &SinkConfig) -> Result<Redis, String> {
        // redis://host[:port][/db]
        let rest = cfg.url.trim_start_matches("redis://");
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, Some(d.to_string())),
            Some((h, _)) => (h, None),
            None => (rest, None),
        };
        if hostport.contains('@') {
            return Err(format!(
                "url `{}`: credentials are not supported (use a local, trusted Redis)",
                cfg.url
            ));
        }
        if let Some(d) = &db
            && d.parse::<u32>().is_err()
        {
            return Err(format!("url `{}`: `{d}` is not a database number", cfg.url));
        }
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        Ok(Redis {
            addr,
            db,
            prefix: cfg.redis_prefix().to_string(),
            conn: None,
        })
    }
}

/// One command in RESP.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply; an error reply is an `Err` with Redis's message.
async fn reply(conn: &mut BufReader<TcpStream>) -> Result<(), String> {
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let mut line = String::new();
        if conn
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading from Redis: {e}"))?
            == 0
        {
            return Err("Redis closed the connection".into());
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at(line.len().min(1));
        match kind {
            "+" | ":" => {}
            "-" => return Err(format!("Redis: {rest}")),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| format!("bad reply `{line}`"))?;
                if n >= 0 {
                    let mut buf = vec![0; n as usize + 2];
                    conn.read_exact(&mut buf)
                        .await
                        .map_err(|e| format!("reading from Redis: {e}"))?;
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| format!("bad reply `{line}`"))?;
                pending += n.max(0) as usize;
            }
            _ => return Err(format!("bad reply from Redis `{line}`")),
        }
    }
    Ok(())
}

impl Sink for Redis {
    async fn connect(&mut self) -> Result<(), String> {
        self.conn = None;
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            TcpStream::connect(&self.addr),
        )
        .await
        .map_err(|_| format!("connecting to Redis at {}: timed out", self.addr))?
        .map_err(|e| format!("connecting to Redis at {}: {e}", self.addr))?;
        let mut conn = BufReader::new(stream);
        let mut out = Vec::new();
        command(&mut out, &[b"PING"]);
        if let Some(db) = &self.db {
            command(&mut out, &[b"SELECT", db.as_bytes()]);
        }
        conn.get_mut()
            .write_all(&out)
            .await
            .map_err(|e| format!("writing to Redis: {e}"))?;
        reply(&mut conn).await?;
        if self.db.is_some() {
            reply(&mut conn).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    async fn write(&mut self, changes: &[&(u64, Emission)]) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let rows = newest(changes);
        let mut out = Vec::with_capacity(rows.len() * 512);
        for (n, e) in &rows {
            let json = crate::wire::emission_json(e, Some(*n)).to_string();
            // The full name: a tenant's `acme/level_1h` is `acme:level_1h`, apart from
            // another tenant's `level_1h`.
            let base = format!(
                "{}{}:{}",
                self.prefix,
                e.pipeline.replace('/', ":"),
                e.key.as_str()
            );
            let window = format!("{base}:{}", crate::wire::rfc3339(e.window.start.0));
            let latest = format!("{base}:latest");
            let version = e.version.0.to_string();
            let start_ms = e.window.start.0.div_euclid(1_000_000).to_string();
            command(
                &mut out,
                &[
                    b"EVAL",
                    SCRIPT.as_bytes(),
                    b"2",
                    window.as_bytes(),
                    latest.as_bytes(),
                    version.as_bytes(),
                    start_ms.as_bytes(),
                    json.as_bytes(),
                ],
            );
        }
        conn.get_mut()
            .write_all(&out)
            .await
            .map_err(|e| format!("writing to Redis: {e}"))?;
        for _ in &rows {
            reply(conn).await?;
        }
        Ok(())
    }
}
