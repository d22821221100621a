//! What the source and sink tasks share: their status registries (shown by
//! `GET /v1/sources` and `GET /v1/sinks`), and waiting with backoff that a shutdown cuts
//! short.

use crate::AppState;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The status of each connector of one kind, by name.
#[derive(Debug)]
pub struct Statuses<T>(Mutex<BTreeMap<String, T>>);

impl<T> Default for Statuses<T> {
    fn default() -> Self {
        Statuses(Mutex::new(BTreeMap::new()))
    }
}

impl<T: Clone> Statuses<T> {
    pub(crate) fn insert(&self, name: &str, status: T) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_string(), status);
        }
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut T)) {
        if let Ok(mut m) = self.0.lock()
            && let Some(s) = m.get_mut(name)
        {
            f(s);
        }
    }

    /// A snapshot of every connector's status, by name.
    pub fn list(&self) -> Vec<T> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Waits `d`, or less if the server shuts down; `false` on shutdown.
pub(crate) async fn pause(state: &AppState, d: Duration) -> bool {
    let mut shutdown = state.shutdown();
    let slept = tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|s| *s) => false,
    };
    slept && !*shutdown.borrow()
}

/// Exponential backoff: 0.2 s, doubled after each wait, at most 30 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(200))
    }
}

impl Backoff {
    /// The next wait.
    pub(crate) fn next(&self) -> Duration {
        self.0
    }

    /// Back to the first wait (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Waits the next wait and doubles it; `false` on shutdown.
    pub(crate) async fn wait(&mut self, state: &AppState) -> bool {
        let go_on = pause(state, self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
        go_on
    }
}

/// Why a Kafka source or sink does not start in a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub(crate) const NO_KAFKA: &str = "this reckon was built without Kafka (the `kafka` cargo feature); rebuild with `--features kafka`";

/// `url` without the password of its user-info (`nats://user:secret@host` →
/// `nats://user:***@host`), for logs and statuses.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_only_the_password() {
        use super::redact;
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://u:pw@h:4222/x"), "nats://u:***@h:4222/x");
        assert_eq!(redact("mqtt://token@h"), "mqtt://token:***@h");
        assert_eq!(redact("host=x user=y"), "host=x user=y");
    }
}
