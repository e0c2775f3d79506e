//! Refresh-token rotation: verify, then one atomic store operation, single-flight per
//! `(sid, jti)` inside this instance.
//!
//! Threat: a stolen refresh token (RFC 9700 §4.14.2). Each use rotates it; the previous one is
//! accepted for `session.refresh_grace` (parallel tabs; counted in milliseconds), anything
//! older is reuse and revokes the whole session. Nothing is lost on a store failure: a rotation
//! either committed, or the client keeps its old, still valid refresh token.
//!
//! Nor is anything lost when the client never gets the answer: a committed rotation comes with
//! a [`Delivery`] that travels with the response carrying the new cookies. When that response
//! is not handed over whole (the client went away while the upstream was slow, reset its
//! HTTP/2 stream), the rotation is *reopened* in the store rather than rolled back: the
//! previous token is accepted again, past the grace, until the new one is presented, and the
//! new one stays valid. A rollback (the previous token current again) would turn a copy of the
//! answer that did arrive — a parallel request answered within the grace — into a rotated-out
//! token, the very logout this prevents; reopening harms no one when the answer did arrive.
//! The store applies it only while the session exists and is still at that rotation (compare
//! and set), so it cannot bring back a revoked session nor undo a later rotation. Its price:
//! a thief who replays the previous token of a reopened rotation is caught at the victim's
//! next rotation instead of this one.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::{Issued, RefreshError, Sessions, Verdict};
use crate::audit::Event;
use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::store::{RotateOutcome, RotatePolicy, StoreError};
use crate::util::random_token;
use crate::web::user_agent::UserAgent;

type FlightResult = Result<Rotation, Arc<StoreError>>;

/// What one flight's store operation gave, shared by every request of the flight.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub outcome: RotateOutcome,
    /// Set when this flight rotated the token: its delivery, shared by every request that
    /// answers with the new token (one delivered answer is enough).
    pub delivery: Option<Delivery>,
    /// The refresh-rate anomaly's verdict on this rotation (`Pass` for any other outcome).
    pub rate: Verdict,
}

/// How often, and how far apart, reopening a lost rotation is tried when the store fails.
const REOPEN_ATTEMPTS: u32 = 3;
const REOPEN_RETRY: Duration = Duration::from_millis(500);

impl Sessions {
    /// Rotate a refresh token and issue the new pair.
    pub async fn refresh(
        &self,
        token: &str,
        ip: IpAddr,
        ua: &UserAgent<'_>,
    ) -> Result<Issued, RefreshError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
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
            now_ms,
            grace_ms: u64::try_from(self.cfg.refresh_grace.as_millis()).unwrap_or(u64::MAX),
            idle_secs: self.cfg.idle_timeout.as_secs(),
            revocation_ttl: self.revocation_ttl(),
            window_secs: self.cfg.access_ttl.as_secs(),
        };
        let key = (claims.sid.clone(), claims.jti.clone());
        let rotate = || self.rotate(&claims.sub, &claims.sid, &claims.jti, policy, ip);
        let Rotation {
            outcome,
            delivery,
            rate,
        } = self.flights.run(key, rotate).await?;
        if rate != Verdict::Pass {
            // Refused: under `reauth` the delivery is dropped undelivered, so the rotation is
            // reopened and the session stays usable where it came from; under `revoke` the
            // session has ended.
            return Err(RefreshError::Anomaly);
        }
        match outcome {
            RotateOutcome::Rotated(rec) | RotateOutcome::Grace(rec) => {
                let mut issued = self.issue(&rec, now, &fp)?;
                issued.delivery = delivery;
                Ok(issued)
            }
            RotateOutcome::Reused(_) => Err(RefreshError::Reused),
            RotateOutcome::Idle(_) => Err(RefreshError::Idle),
            RotateOutcome::NotFound => Err(RefreshError::NotFound),
        }
    }

    /// The store operation of one flight, with its metrics and audit events.
    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        jti: &str,
        policy: RotatePolicy,
        ip: IpAddr,
    ) -> FlightResult {
        let (r, delivery) = self.rotate_in_task(user, sid, jti, policy).await;
        let r = match r {
            Ok(RotateOutcome::Rotated(rec)) if rec.idp.is_some() => {
                Ok(self.rechecked(rec, policy.now).await)
            }
            other => other,
        };
        let label = match &r {
            Ok(RotateOutcome::Rotated(_)) => "rotated",
            Ok(RotateOutcome::Grace(_)) => "grace",
            Ok(RotateOutcome::Reused(_)) => "reused",
            Ok(RotateOutcome::Idle(_)) => "idle",
            Ok(RotateOutcome::NotFound) => "not_found",
            Err(_) => "unavailable",
        };
        Metrics::outcome(&self.metrics.refreshes, label);
        let ended = match &r {
            Ok(RotateOutcome::Reused(_)) => {
                self.metrics.reuse_detections.inc();
                Some((
                    "refresh_reuse",
                    "a rotated-out refresh token was presented; session revoked",
                ))
            }
            Ok(RotateOutcome::Idle(_)) => Some(("session_expired", "idle timeout")),
            Ok(RotateOutcome::Rotated(_) | RotateOutcome::Grace(_) | RotateOutcome::NotFound) => {
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh: session store unavailable");
                None
            }
        };
        if let Some((event, reason)) = ended {
            // The store deleted the session: refuse its access tokens here at once.
            self.forget_locally([sid]);
            self.metrics
                .session_ended(super::lifecycle::ending_reason(event), 1);
            self.audit.emit(
                Event::new(event)
                    .user(user)
                    .session(&self.handle(sid))
                    .reason(reason),
            );
        }
        // Judged on a rotation, and on a grace answer too (a client retrying the token a
        // refused rotation left behind), while the window that went over the limit lasts.
        let rate = match &r {
            Ok(RotateOutcome::Rotated(rec) | RotateOutcome::Grace(rec))
                if policy.now_ms.saturating_sub(rec.rotated_at_ms)
                    < policy.window_secs.saturating_mul(1000) =>
            {
                self.refresh_rate(rec.refreshes, user, sid, ip)
            }
            _ => Verdict::Pass,
        };
        if rate == Verdict::Revoke {
            let why = super::Ending {
                event: "session_revoked",
                ip,
                reason: Some("refresh_rate"),
            };
            // A store failure is logged by `end`; the refresh is refused either way.
            let _ = self.end(user, sid, why).await;
        }
        r.map(|outcome| Rotation {
            outcome,
            delivery,
            rate,
        })
        .map_err(Arc::new)
    }

    /// The store's rotation, in a task of its own that creates the delivery as soon as the
    /// store answers: a client that goes away while the store works (this future dropped) must
    /// not leave a committed rotation that nobody delivers nor reopens.
    async fn rotate_in_task(
        &self,
        user: &str,
        sid: &str,
        jti: &str,
        policy: RotatePolicy,
    ) -> (Result<RotateOutcome, StoreError>, Option<Delivery>) {
        let new_jti = random_token(12);
        let undo = self.reopen_when_lost(user, sid, jti, &new_jti);
        let store = self.store.clone();
        let (user, sid, jti) = (user.to_owned(), sid.to_owned(), jti.to_owned());
        let task = tokio::spawn(async move {
            let r = store.rotate(&user, &sid, &jti, &new_jti, policy).await;
            let delivery = matches!(r, Ok(RotateOutcome::Rotated(_))).then(|| Delivery::new(undo));
            (r, delivery)
        });
        task.await
            .unwrap_or_else(|e| (Err(StoreError::Unavailable(Box::new(e))), None))
    }

    /// What a lost rotation from `prev` to `new` does: reopen it in the store, in a task of its
    /// own (it runs inside a `Drop`), tried a few times if the store fails.
    fn reopen_when_lost(
        &self,
        user: &str,
        sid: &str,
        prev: &str,
        new: &str,
    ) -> impl FnOnce() + Send + 'static {
        let store = self.store.clone();
        let counter = self.metrics.refreshes_undelivered.clone();
        let handle = self.handle(sid);
        let (user, sid, prev, new) = (
            user.to_owned(),
            sid.to_owned(),
            prev.to_owned(),
            new.to_owned(),
        );
        move || {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(session = %handle, "refresh: a lost rotation cannot be reopened outside a runtime");
                return;
            };
            rt.spawn(async move {
                for attempt in 1..=REOPEN_ATTEMPTS {
                    match store.reopen(&user, &sid, &prev, &new).await {
                        Ok(applied) => {
                            if applied {
                                counter.inc();
                                tracing::info!(session = %handle, "refresh: the new cookies never reached the client; its previous refresh token stays valid until the new one is used");
                            }
                            return;
                        }
                        Err(e) if attempt < REOPEN_ATTEMPTS => {
                            tracing::debug!(error = %e, session = %handle, "refresh: reopening a lost rotation failed; retrying");
                            tokio::time::sleep(REOPEN_RETRY).await;
                        }
                        Err(e) => tracing::warn!(error = %e, session = %handle, "refresh: could not reopen a rotation whose answer was lost"),
                    }
                }
            });
        }
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
                    Ok(Rotation {
                        outcome: RotateOutcome::NotFound,
                        delivery: None,
                        rate: Verdict::Pass,
                    })
                })
                .await
            }));
        }
        for t in tasks {
            let r = t.await.unwrap().ok().map(|r| r.outcome);
            assert_eq!(r, Some(RotateOutcome::NotFound));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(f.map.is_empty());
    }
}
