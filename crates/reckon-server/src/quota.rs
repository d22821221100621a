//! Per-tenant quotas on ingest: events per second and bytes per second (token buckets
//! holding one second's worth), series cardinality and stored raw bytes.
//!
//! A request is charged whole, after decoding and before anything is stored: if any
//! quota would be exceeded it is refused with 429 and `Retry-After`, and nothing of it is
//! stored (a client retries the same request). A request larger than one second's worth
//! can never pass and gets 413. A request the writer then refuses (overloaded, stopped)
//! is refunded. Operator streams (no tenant) have no quotas. Documented in
//! `docs/tenants.md`.

use crate::error::ApiError;
use axum::http::StatusCode;
use reckon_core::Event;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// A tenant's limits; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Events accepted per second (a token bucket of one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<u64>,
    /// Request body bytes accepted per second (likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// Distinct series (stream and key) the tenant may have in its raw log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_series: Option<u64>,
    /// Bytes the tenant's raw log may hold (raw blocks at startup plus the request bytes
    /// accepted since: an estimate that retention does not lower until a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_bytes: Option<u64>,
}

/// A token bucket holding at most `rate` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: i64,
}

impl Bucket {
    fn full(rate: u64, now: i64) -> Bucket {
        Bucket {
            tokens: rate as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: u64, now: i64) {
        let elapsed = (now - self.at).max(0) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * rate as f64).min(rate as f64);
        self.at = self.at.max(now);
    }

    /// Seconds until `need` tokens are there.
    fn wait(&self, rate: u64, need: u64) -> u32 {
        let missing = need as f64 - self.tokens;
        (missing / rate.max(1) as f64).ceil().clamp(1.0, 3600.0) as u32
    }
}

/// What a tenant has used.
#[derive(Debug)]
struct Usage {
    quotas: Quotas,
    events: Option<Bucket>,
    bytes: Option<Bucket>,
    series: HashSet<u64>,
    stored_bytes: u64,
    accepted_events: u64,
    accepted_bytes: u64,
    throttled: HashMap<&'static str, u64>,
}

/// The fingerprint of a series: its stream's stored name and its key.
fn series_id(stream: &str, key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    stream.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// A charged request: refund it if the write fails.
#[derive(Debug)]
#[must_use]
pub struct Charge {
    tenant: String,
    events: u64,
    bytes: u64,
    new_series: Vec<u64>,
}

/// A tenant's figures for `/metrics`.
#[derive(Debug)]
pub struct TenantFigures {
    /// The tenant.
    pub tenant: String,
    /// Its distinct series.
    pub series: u64,
    /// Its raw-log bytes (estimated).
    pub stored_bytes: u64,
    /// Requests refused, per quota.
    pub throttled: Vec<(&'static str, u64)>,
}

/// Every tenant's quotas and usage.
#[derive(Debug, Default)]
pub struct Limits {
    tenants: Mutex<HashMap<String, Usage>>,
}

impl Limits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `tenant`'s quotas; `series` and `stored_bytes` are what its raw log holds.
    pub fn set(&self, tenant: &str, quotas: Quotas, series: Option<(HashSet<u64>, u64)>) {
        let mut all = self.lock();
        let u = all.entry(tenant.to_string()).or_insert_with(|| Usage {
            quotas: Quotas::default(),
            events: None,
            bytes: None,
            series: HashSet::new(),
            stored_bytes: 0,
            accepted_events: 0,
            accepted_bytes: 0,
            throttled: HashMap::new(),
        });
        if let Some((s, b)) = series {
            u.series = s;
            u.stored_bytes = b;
        }
        // A changed rate starts with a full bucket of the new size.
        if u.quotas.events_per_second != quotas.events_per_second {
            u.events = None;
        }
        if u.quotas.bytes_per_second != quotas.bytes_per_second {
            u.bytes = None;
        }
        u.quotas = quotas;
    }

    /// The series fingerprints and raw bytes of a tenant's streams, from the store.
    pub fn scan(
        store: &reckon_store::Store,
        streams: &[&str],
    ) -> reckon_store::Result<(HashSet<u64>, u64)> {
        let mut series = HashSet::new();
        let mut bytes = 0;
        for s in streams {
            let (keys, b) = store.raw_usage(s)?;
            series.extend(keys.iter().map(|k| series_id(s, k.as_str())));
            bytes += b;
        }
        Ok((series, bytes))
    }

    /// Charges a request of `events` (`bytes` long) to stream `stream` (stored name) at
    /// processing time `now`, or refuses it whole: 429 with `Retry-After` over a quota,
    /// 413 if it could never fit in one second's worth.
    pub fn charge(
        &self,
        tenant: &str,
        stream: &str,
        events: &[Event],
        bytes: u64,
        now: i64,
    ) -> Result<Option<Charge>, ApiError> {
        let mut all = self.lock();
        let Some(u) = all.get_mut(tenant) else {
            return Ok(None);
        };
        let n = events.len() as u64;
        let q = u.quotas.clone();
        let too_big = |what: &str, need: u64, rate: u64| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request has {need} {what}, more than tenant `{tenant}`'s quota of \
                     {rate} {what} per second allows at once: send smaller requests"
                ),
            )
        };
        let refuse = |u: &mut Usage, quota: &'static str, message: String, wait: u32| {
            *u.throttled.entry(quota).or_default() += 1;
            tracing::info!(tenant, quota, "request refused over quota: {message}");
            ApiError {
                retry_after: Some(wait),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            }
        };
        for (what, quota, rate, need) in [
            ("events", "events_per_second", q.events_per_second, n),
            ("bytes", "bytes_per_second", q.bytes_per_second, bytes),
        ] {
            let Some(rate) = rate else { continue };
            if need > rate {
                return Err(too_big(what, need, rate));
            }
            let slot = if what == "events" {
                &mut u.events
            } else {
                &mut u.bytes
            };
            let b = slot.get_or_insert_with(|| Bucket::full(rate, now));
            b.refill(rate, now);
            if b.tokens < need as f64 {
                let wait = b.wait(rate, need);
                let m = format!(
                    "tenant `{tenant}` is over its quota of {rate} {what} per second; \
                     nothing of this request was stored, retry it in {wait} s"
                );
                return Err(refuse(u, quota, m, wait));
            }
        }
        let mut new_series: Vec<u64> = Vec::new();
        if let Some(max) = q.max_series {
            let mut seen = HashSet::new();
            for e in events {
                let id = series_id(stream, e.key.as_str());
                if !u.series.contains(&id) && seen.insert(id) {
                    new_series.push(id);
                }
            }
            let total = u.series.len() as u64 + new_series.len() as u64;
            if total > max {
                let m = format!(
                    "tenant `{tenant}` would have {total} series, over its quota of {max}; \
                     nothing of this request was stored (raise max_series, or write to \
                     existing series)"
                );
                return Err(refuse(u, "max_series", m, 60));
            }
        }
        if let Some(max) = q.max_stored_bytes
            && u.stored_bytes + bytes > max
        {
            let m = format!(
                "tenant `{tenant}` would store {} bytes, over its quota of {max}; nothing \
                 of this request was stored (raise max_stored_bytes, or shorten retention)",
                u.stored_bytes + bytes
            );
            return Err(refuse(u, "max_stored_bytes", m, 60));
        }
        // Everything fits: take it all.
        if let Some(b) = &mut u.events {
            b.tokens -= n as f64;
        }
        if let Some(b) = &mut u.bytes {
            b.tokens -= bytes as f64;
        }
        u.series.extend(new_series.iter().copied());
        u.stored_bytes += bytes;
        u.accepted_events += n;
        u.accepted_bytes += bytes;
        Ok(Some(Charge {
            tenant: tenant.to_string(),
            events: n,
            bytes,
            new_series,
        }))
    }

    /// Gives a charge back (the write was refused after all).
    pub fn refund(&self, charge: &Charge) {
        let mut all = self.lock();
        let Some(u) = all.get_mut(&charge.tenant) else {
            return;
        };
        if let (Some(b), Some(rate)) = (&mut u.events, u.quotas.events_per_second) {
            b.tokens = (b.tokens + charge.events as f64).min(rate as f64);
        }
        if let (Some(b), Some(rate)) = (&mut u.bytes, u.quotas.bytes_per_second) {
            b.tokens = (b.tokens + charge.bytes as f64).min(rate as f64);
        }
        for s in &charge.new_series {
            u.series.remove(s);
        }
        u.stored_bytes = u.stored_bytes.saturating_sub(charge.bytes);
        u.accepted_events = u.accepted_events.saturating_sub(charge.events);
        u.accepted_bytes = u.accepted_bytes.saturating_sub(charge.bytes);
    }

    /// `tenant`'s quotas and usage as JSON, at processing time `now`.
    pub fn usage(&self, tenant: &str, now: i64) -> Option<serde_json::Value> {
        let mut all = self.lock();
        let u = all.get_mut(tenant)?;
        let q = u.quotas.clone();
        let available = |b: &mut Option<Bucket>, rate: Option<u64>| {
            rate.map(|r| {
                let b = b.get_or_insert_with(|| Bucket::full(r, now));
                b.refill(r, now);
                b.tokens.floor() as u64
            })
        };
        let events_available = available(&mut u.events, q.events_per_second);
        let bytes_available = available(&mut u.bytes, q.bytes_per_second);
        let mut throttled: Vec<_> = u.throttled.iter().collect();
        throttled.sort();
        Some(serde_json::json!({
            "tenant": tenant,
            "quotas": q,
            "usage": {
                "events_available_now": events_available,
                "bytes_available_now": bytes_available,
                "series": u.series.len(),
                "stored_bytes": u.stored_bytes,
                "accepted_events": u.accepted_events,
                "accepted_bytes": u.accepted_bytes,
                "throttled_requests": throttled
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
            },
        }))
    }

    /// Per-tenant figures for `/metrics`.
    pub fn snapshot(&self) -> Vec<TenantFigures> {
        self.lock()
            .iter()
            .map(|(t, u)| {
                let mut th: Vec<_> = u.throttled.iter().map(|(k, v)| (*k, *v)).collect();
                th.sort();
                TenantFigures {
                    tenant: t.clone(),
                    series: u.series.len() as u64,
                    stored_bytes: u.stored_bytes,
                    throttled: th,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reckon_core::{EventTime, Key};

    fn events(n: usize, keys: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                stream: "s".into(),
                key: Key::from_tags([("k", (i % keys).to_string())]).unwrap(),
                time: EventTime(i as i64),
                id: None,
                fields: Vec::new(),
            })
            .collect()
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_the_rate() {
        let l = Limits::default();
        let q = Quotas {
            events_per_second: Some(100),
            ..Quotas::default()
        };
        l.set("t", q, None);
        let c = l.charge("t", "t/s", &events(60, 1), 10, 0).unwrap();
        assert!(c.is_some());
        // 40 left: 60 more are refused whole, retry after ceil(20/100) = 1 s.
        let e = l.charge("t", "t/s", &events(60, 1), 10, 0).unwrap_err();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(1)));
        // 0.2 s later 20 more tokens: 60 fit.
        assert!(l.charge("t", "t/s", &events(60, 1), 10, S / 5).is_ok());
        // Never more than a second's worth, however long the wait.
        let e = l
            .charge("t", "t/s", &events(101, 1), 10, 100 * S)
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
        let u = l.usage("t", 100 * S).unwrap();
        assert_eq!(u["usage"]["events_available_now"], 100);
        assert_eq!(u["usage"]["accepted_events"], 120);
        assert_eq!(u["usage"]["throttled_requests"]["events_per_second"], 1);
    }

    #[test]
    fn series_and_stored_bytes_are_capped_and_a_refund_gives_everything_back() {
        let l = Limits::default();
        let q = Quotas {
            max_series: Some(5),
            max_stored_bytes: Some(1_000),
            bytes_per_second: Some(600),
            ..Quotas::default()
        };
        l.set(
            "t",
            q,
            Some((HashSet::from([series_id("t/s", "k=0")]), 100)),
        );
        let c = l
            .charge("t", "t/s", &events(10, 4), 300, 0)
            .unwrap()
            .unwrap();
        assert_eq!(c.new_series.len(), 3, "k=0 was there already");
        let e = l.charge("t", "t/s", &events(10, 6), 100, 0).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.message.contains("would have 6 series"), "{}", e.message);
        // The same keys in another stream are other series.
        assert!(l.charge("t", "t/other", &events(1, 1), 1, 0).is_ok());
        l.refund(&c);
        let u = l.usage("t", 0).unwrap();
        assert_eq!(u["usage"]["series"], 2);
        assert_eq!(u["usage"]["stored_bytes"], 101);
        assert_eq!(u["usage"]["bytes_available_now"], 599);
        let e = l.charge("t", "t/s", &events(1, 1), 600, 0).unwrap_err();
        assert!(e.message.contains("600 bytes per second"), "{}", e.message);
        let e = l
            .charge("t", "t/s", &events(1, 1), 900, 10 * S)
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 413, "over a second's worth of bytes");
        assert!(l.charge("t", "t/s", &events(1, 1), 500, 10 * S).is_ok());
        let e = l
            .charge("t", "t/s", &events(1, 1), 500, 20 * S)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(60)));
        assert!(
            e.message.contains("would store 1101 bytes"),
            "{}",
            e.message
        );
        // An operator stream (no tenant with quotas) is never charged.
        assert!(
            l.charge("nobody", "s", &events(1_000, 1_000), 1 << 30, 0)
                .unwrap()
                .is_none()
        );
    }
}
