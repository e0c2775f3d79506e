//! A [`SessionStore`] that measures the one it wraps: every operation's latency
//! (`sessiongate_store_duration_seconds{op}`) and its failures
//! (`sessiongate_store_errors_total{op}`), in one place rather than at each call site.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    FactorRecord, FeedEvent, IdpKey, IdpLink, Revocation, RotateOutcome, RotatePolicy,
    SessionRecord, SessionStore, StoreError,
};
use crate::metrics::{Metrics, Op};

/// The operations measured, in the order of [`Instrumented::ops`].
pub const OPS: [&str; 16] = [
    "create",
    "rotate",
    "reopen",
    "get",
    "revoke",
    "revoke_all",
    "list",
    "touch",
    "recent_revocations",
    "ping",
    "idp_sessions",
    "first_use",
    "update_identity",
    "rate_limit",
    "second_factor",
    "passkeys",
];

pub struct Instrumented {
    inner: Arc<dyn SessionStore>,
    /// Each operation's histogram and error counter, resolved once.
    ops: Vec<(Histogram, Counter)>,
}

impl Instrumented {
    pub fn wrap(inner: Arc<dyn SessionStore>, metrics: &Metrics) -> Arc<dyn SessionStore> {
        let ops = OPS
            .iter()
            .map(|op| {
                let l = Op { op: (*op).into() };
                (
                    metrics.store_seconds.get_or_create(&l).clone(),
                    metrics.store_errors.get_or_create(&l).clone(),
                )
            })
            .collect();
        Arc::new(Self { inner, ops })
    }

    async fn timed<T>(
        &self,
        op: usize,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let r = f.await;
        if let Some((h, errors)) = self.ops.get(op) {
            h.observe(started.elapsed().as_secs_f64());
            if r.is_err() {
                errors.inc();
            }
        }
        r
    }
}

#[async_trait]
impl SessionStore for Instrumented {
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError> {
        self.timed(0, self.inner.create(rec)).await
    }
    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        policy: RotatePolicy,
    ) -> Result<RotateOutcome, StoreError> {
        let f = self.inner.rotate(user, sid, presented_jti, new_jti, policy);
        self.timed(1, f).await
    }
    async fn reopen(
        &self,
        user: &str,
        sid: &str,
        prev_jti: &str,
        new_jti: &str,
    ) -> Result<bool, StoreError> {
        self.timed(2, self.inner.reopen(user, sid, prev_jti, new_jti))
            .await
    }
    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.timed(3, self.inner.get(user, sid)).await
    }
    async fn revoke(&self, user: &str, sid: &str, ttl: u64) -> Result<bool, StoreError> {
        self.timed(4, self.inner.revoke(user, sid, ttl)).await
    }
    async fn revoke_all(&self, user: &str, ttl: u64) -> Result<Vec<String>, StoreError> {
        self.timed(5, self.inner.revoke_all(user, ttl)).await
    }
    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.timed(6, self.inner.list(user)).await
    }
    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError> {
        self.timed(7, self.inner.touch(seen)).await
    }
    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        self.timed(8, self.inner.recent_revocations(now)).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedEvent> {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(9, self.inner.ping()).await
    }
    async fn idp_sessions(
        &self,
        provider: &str,
        key: IdpKey<'_>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(10, self.inner.idp_sessions(provider, key)).await
    }
    async fn first_use(&self, key: &str, until: u64) -> Result<bool, StoreError> {
        self.timed(11, self.inner.first_use(key, until)).await
    }
    async fn update_identity(
        &self,
        user: &str,
        sid: &str,
        roles: &[String],
        idp: Option<&IdpLink>,
    ) -> Result<bool, StoreError> {
        self.timed(12, self.inner.update_identity(user, sid, roles, idp))
            .await
    }
    async fn rate_take(
        &self,
        key: &str,
        gcra: super::gcra::Gcra,
        want: u64,
    ) -> Result<super::gcra::Take, StoreError> {
        self.timed(13, self.inner.rate_take(key, gcra, want)).await
    }
    async fn factor(&self, user: &str) -> Result<Option<FactorRecord>, StoreError> {
        self.timed(14, self.inner.factor(user)).await
    }
    async fn set_factor(
        &self,
        user: &str,
        rec: &FactorRecord,
        step: u64,
        recovery: &[String],
    ) -> Result<(), StoreError> {
        self.timed(14, self.inner.set_factor(user, rec, step, recovery))
            .await
    }
    async fn remove_factor(&self, user: &str) -> Result<bool, StoreError> {
        self.timed(14, self.inner.remove_factor(user)).await
    }
    async fn put_pending_factor(
        &self,
        user: &str,
        sealed: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        self.timed(14, self.inner.put_pending_factor(user, sealed, until))
            .await
    }
    async fn pending_factor(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.timed(14, self.inner.pending_factor(user)).await
    }
    async fn use_factor_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        self.timed(14, self.inner.use_factor_step(user, step)).await
    }
    async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        self.timed(14, self.inner.use_recovery_code(user, hash))
            .await
    }
    async fn recovery_codes_left(&self, user: &str) -> Result<usize, StoreError> {
        self.timed(14, self.inner.recovery_codes_left(user)).await
    }
    async fn factor_grace_start(&self, user: &str, now: u64) -> Result<u64, StoreError> {
        self.timed(14, self.inner.factor_grace_start(user, now))
            .await
    }
    async fn passkeys(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(15, self.inner.passkeys(user)).await
    }
    async fn put_passkey(
        &self,
        user: &str,
        id: &str,
        record: &str,
        write: super::PasskeyWrite,
    ) -> Result<bool, StoreError> {
        self.timed(15, self.inner.put_passkey(user, id, record, write))
            .await
    }
    async fn remove_passkey(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        self.timed(15, self.inner.remove_passkey(user, id)).await
    }
    fn shares_rate_limits(&self) -> bool {
        self.inner.shares_rate_limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn operations_are_timed_and_counted() {
        let m = Metrics::new(&[std::time::Duration::from_secs(30)]);
        let s = Instrumented::wrap(Arc::new(MemoryStore::new()), &m);
        assert!(s.get("u", "nope").await.unwrap().is_none());
        s.ping().await.unwrap();
        let text = m.render();
        assert!(
            text.contains("sessiongate_store_duration_seconds_count{op=\"get\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sessiongate_store_errors_total{op=\"get\"} 0"),
            "{text}"
        );
    }
}
