//! Refresh-token rotation: verify, then one atomic store operation, single-flight per
//! `(sid, jti)` inside this instance.
//!
//! Threat: a stolen refresh token (RFC 9700 §4.14.2). Each use rotates it; the previous one is
//! accepted for `session.refresh_grace` (parallel tabs), anything older is reuse and revokes
//! the whole session. Nothing is lost on a store failure: a rotation either committed, or the
//! client keeps its old, still valid refresh token.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::{Issued, RefreshError, Sessions, Verdict};
use crate::audit::Event;
use crate::metrics::Metrics;
use crate::store::{RotateOutcome, RotatePolicy, StoreError};
use crate::util::random_token;

type FlightResult = Result<RotateOutcome, Arc<StoreError>>;

impl Sessions {
    /// Rotate a refresh token and issue the new pair.
    pub async fn refresh(&self, token: &str, ip: IpAddr, ua: &str) -> Result<Issued, RefreshError> {
        let now = self.clock.now();
        let claims = self.keys.verify_refresh(token, now)?;
        if self.revoked.is_revoked(&claims.sid) {
            return Err(RefreshError::Revoked);
        }
        // A refresh from somewhere else is checked before anything rotates: under `reauth` the
        // session must stay usable where it came from.
        let bound = claims.fingerprint();
        let checked = self.check_fingerprint(&bound, ip, ua, &claims.sub, &claims.sid);
        match checked.verdict {
            Verdict::Pass => {}
            Verdict::Reauth => return Err(RefreshError::Anomaly),
            Verdict::Revoke => {
                self.end_for_anomaly(&claims.sub, &claims.sid, ip)
                    .await
                    .map_err(Arc::new)?;
                return Err(RefreshError::Anomaly);
            }
        }
        // A request that matched every bound signal comes from the session's network and
        // browser: the new tokens carry them bound again under the signing key, so after a
        // key rotation a session needs the old key only until its next refresh. (A changed
        // signal that was let through keeps the fingerprint as bound at login.)
        let fp = if checked.clean {
            self.fingerprints.rebind(&bound, ip, ua)
        } else {
            bound
        };
        let policy = RotatePolicy {
            now,
            grace_secs: self.cfg.refresh_grace.as_secs(),
            idle_secs: self.cfg.idle_timeout.as_secs(),
            revocation_ttl: self.revocation_ttl(),
        };
        let key = (claims.sid.clone(), claims.jti.clone());
        let rotate = || self.rotate(&claims.sub, &claims.sid, &claims.jti, policy);
        match self.flights.run(key, rotate).await? {
            RotateOutcome::Rotated(rec) | RotateOutcome::Grace(rec) => {
                Ok(self.issue(&rec, now, &fp)?)
            }
            RotateOutcome::Reused(_) => Err(RefreshError::Reused),
            RotateOutcome::Idle(_) => Err(RefreshError::Idle),
            RotateOutcome::NotFound => Err(RefreshError::NotFound),
        }
    }

    /// The store operation of one flight, with its metrics and audit events.
    async fn rotate(&self, user: &str, sid: &str, jti: &str, policy: RotatePolicy) -> FlightResult {
        let new_jti = random_token(16);
        let started = std::time::Instant::now();
        let r = self.store.rotate(user, sid, jti, &new_jti, policy).await;
        self.metrics
            .store_op("rotate", started.elapsed().as_secs_f64());
        let label = match &r {
            Ok(RotateOutcome::Rotated(_)) => "rotated",
            Ok(RotateOutcome::Grace(_)) => "grace",
            Ok(RotateOutcome::Reused(_)) => "reused",
            Ok(RotateOutcome::Idle(_)) => "idle",
            Ok(RotateOutcome::NotFound) => "not_found",
            Err(_) => "unavailable",
        };
        Metrics::outcome(&self.metrics.refreshes, label);
        let (event, reason) = match &r {
            Ok(RotateOutcome::Reused(_)) => {
                self.metrics.reuse_detections.inc();
                (
                    "refresh_reuse",
                    "a rotated-out refresh token was presented; session revoked",
                )
            }
            Ok(RotateOutcome::Idle(_)) => ("session_expired", "idle timeout"),
            Ok(RotateOutcome::Rotated(_) | RotateOutcome::Grace(_) | RotateOutcome::NotFound) => {
                return r.map_err(Arc::new);
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh: session store unavailable");
                return r.map_err(Arc::new);
            }
        };
        // The store deleted the session: refuse its access tokens here at once.
        self.forget_locally([sid]);
        self.audit.emit(
            Event::new(event)
                .user(user)
                .session(&self.handle(sid))
                .reason(reason),
        );
        r.map_err(Arc::new)
    }
}

/// Single-flight for refreshes: concurrent presentations of the same refresh token inside
/// this instance share one store operation and its result. Bounded by the requests in flight
/// (themselves bounded by `server.max_connections` and the streams per connection): an entry
/// lives only while its flight runs, and its key comes from a refresh token that verified.
#[derive(Default)]
pub struct RefreshFlights {
    map: DashMap<(String, String), Arc<OnceCell<FlightResult>>>,
}

impl RefreshFlights {
    pub async fn run<F, Fut>(&self, key: (String, String), f: F) -> FlightResult
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = FlightResult>,
    {
        let cell = self.map.entry(key.clone()).or_default().clone();
        // Removed on the way out even if every caller is cancelled mid-flight.
        let _done = FlightDone {
            map: &self.map,
            key: &key,
            cell: &cell,
        };
        cell.get_or_init(f).await.clone()
    }
}

struct FlightDone<'a> {
    map: &'a DashMap<(String, String), Arc<OnceCell<FlightResult>>>,
    key: &'a (String, String),
    cell: &'a Arc<OnceCell<FlightResult>>,
}

impl Drop for FlightDone<'_> {
    fn drop(&mut self) {
        self.map
            .remove_if(self.key, |_, v| Arc::ptr_eq(v, self.cell));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn single_flight_runs_once_for_concurrent_callers() {
        let f = Arc::new(RefreshFlights::default());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let f = f.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                f.run(("s".into(), "j".into()), || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(RotateOutcome::NotFound)
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().ok(), Some(RotateOutcome::NotFound));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(f.map.is_empty());
    }
}
