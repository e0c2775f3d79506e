//! The local revocation set: session ids that were revoked while access tokens minted for them
//! may still be unexpired. Checked on every request without a store round trip; fed by this
//! instance's own revocations (synchronously, before the response) and by the store's feed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::DashMap;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;

/// Bounded by the revocations of the last access-token lifetime: an entry is a session that
/// existed (a login succeeded) and ended, it lives until its last access token expires
/// (`until`), and `sweep` (every 15 s, `server::spawn_background`) removes it then. No cap
/// beyond that: forgetting a revocation early would let a revoked token through.
#[derive(Debug)]
pub struct RevocationSet {
    map: DashMap<String, u64>,
    len: AtomicUsize,
    synced: AtomicBool,
    /// `sessiongate_revocation_feed_synced`, when reported.
    synced_gauge: Option<Gauge>,
    /// Newly revoked sids, for long-lived connections (WebSockets) of those sessions. Bounded
    /// (1024): a watcher that falls behind gets `Lagged` and checks the set itself.
    notify: broadcast::Sender<std::sync::Arc<str>>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            synced: AtomicBool::new(false),
            synced_gauge: None,
            notify: broadcast::channel(1024).0,
        }
    }
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Report the sync state on `gauge` (1 in sync, 0 not).
    pub fn reporting(mut self, gauge: Gauge) -> Self {
        gauge.set(i64::from(self.is_synced()));
        self.synced_gauge = Some(gauge);
        self
    }

    /// Revocations as they are inserted.
    pub fn watch(&self) -> broadcast::Receiver<std::sync::Arc<str>> {
        self.notify.subscribe()
    }

    /// Whether `sid` is revoked. The common case (nothing revoked) costs one atomic load.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.len.load(Ordering::Relaxed) != 0 && self.map.contains_key(sid)
    }

    pub fn insert(&self, sid: &str, until: u64) {
        let prev = self.map.insert(sid.to_string(), until);
        if prev.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
            let _ = self.notify.send(sid.into());
        }
    }

    /// Drop entries whose access tokens have all expired.
    pub fn sweep(&self, now: u64) {
        let before = self.map.len();
        self.map.retain(|_, until| *until > now);
        let after = self.map.len();
        self.len
            .fetch_sub(before.saturating_sub(after), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether the set has caught up with the store since start or the last reconnect.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn set_synced(&self, v: bool) {
        self.synced.store(v, Ordering::Release);
        if let Some(g) = &self.synced_gauge {
            g.set(i64::from(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_swept() {
        let s = RevocationSet::new();
        assert!(!s.is_revoked("a"));
        s.insert("a", 100);
        s.insert("a", 100);
        assert!(s.is_revoked("a"));
        s.sweep(99);
        assert!(s.is_revoked("a"));
        s.sweep(100);
        assert!(!s.is_revoked("a"));
        assert!(s.is_empty());
    }
}
