//! Session validation and transparent refresh.
//!
//! Threats: forged or replayed access tokens (verified locally: pinned algorithm, claims, the
//! local revocation set — see `tokens`), stolen refresh tokens (rotation at every use; a
//! rotated-out token presented again after the grace window revokes the whole session, per
//! OAuth 2.0 Security BCP RFC 9700 §4.14.2), sessions that outlive their user's attention (idle
//! and absolute timeouts, enforced at refresh).
//!
//! The valid-access-token path does no store round trip and no blocking work.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::sync::{OnceCell, mpsc};

use super::anomaly::{self, Verdict};
use crate::audit::Event;
use crate::body::{self, Body};
use crate::config::SessionConfig;
use crate::cookies::{GatewayCookies, set_cookie};
use crate::runtime::Runtime;
use crate::store::{RotateOutcome, RotatePolicy, SessionRecord};
use crate::tokens::Fingerprint;
use crate::util::{now_unix, random_token};
use std::net::IpAddr;

/// A verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub roles: Vec<String>,
    pub sid: String,
    /// When the access token that proved it expires (Unix seconds).
    pub exp: u64,
    /// What the session was bound to at login.
    pub fp: Fingerprint,
    /// The session's non-secret handle (derived from `sid`, computed once per token).
    pub handle: String,
}

/// What the session stage concluded.
#[derive(Debug)]
pub enum SessionOutcome {
    /// A valid access token.
    Valid(Arc<Identity>),
    /// The access token was missing or expired and the refresh token was rotated: these
    /// `Set-Cookie` values go on the response.
    Refreshed(Arc<Identity>, Vec<HeaderValue>),
    /// No usable credential. `presented`: one was sent (for `WWW-Authenticate`); `clear`: the
    /// client's gateway cookies are dead and should be removed.
    Anonymous { presented: bool, clear: bool },
    /// A refresh was needed but the store is unreachable: the client keeps its cookies.
    Unavailable,
}

/// Verified access tokens, per serving thread: a browser sends the same cookie with every
/// request until it expires, so the signature and claims are checked once per token and
/// thread, not once per request. Only successes are cached; expiry and the revocation set are
/// checked on every hit. Keyed by the runtime too (tests run several in one process).
struct Verified {
    rt: u64,
    id: Arc<Identity>,
}

const VERIFIED_MAX: usize = 8192;

thread_local! {
    static VERIFIED: RefCell<HashMap<Box<str>, Verified>> = RefCell::new(HashMap::new());
}

/// Verify an access token, including the revocation set.
pub fn verify_access(rt: &Runtime, token: &str) -> Option<Arc<Identity>> {
    let now = now_unix();
    let hit = VERIFIED.with(|c| {
        c.borrow()
            .get(token)
            .filter(|v| v.rt == rt.id && v.id.exp >= now)
            .map(|v| v.id.clone())
    });
    let id = match hit {
        Some(id) => id,
        None => {
            let c = rt.keys.verify_access(token).ok()?;
            let id = Arc::new(Identity {
                handle: rt.keys.session_handle(&c.sid),
                sub: c.sub,
                roles: c.roles,
                sid: c.sid,
                exp: c.exp,
                fp: Fingerprint {
                    ipn: c.ipn,
                    uah: c.uah,
                },
            });
            VERIFIED.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= VERIFIED_MAX {
                    c.retain(|_, v| v.id.exp >= now);
                    if c.len() >= VERIFIED_MAX {
                        c.clear();
                    }
                }
                c.insert(
                    token.into(),
                    Verified {
                        rt: rt.id,
                        id: id.clone(),
                    },
                );
            });
            id
        }
    };
    if rt.revoked.is_revoked(&id.sid) {
        return None;
    }
    Some(id)
}

/// End one session: at once in this instance (its access tokens are refused from the next
/// request on, even if the store cannot be reached), then in the store, with an audit event.
/// `Err` when the store could not be reached: the caller answers `503`.
pub async fn end_session(
    rt: &Runtime,
    user: &str,
    sid: &str,
    event: &'static str,
    ip: IpAddr,
    reason: Option<&str>,
) -> Result<(), crate::store::StoreError> {
    rt.revoked.insert(sid, now_unix() + rt.revocation_ttl());
    if let Some(s) = &rt.signer {
        s.forget(sid);
    }
    let mut e = Event::new(event)
        .user(user)
        .session(&rt.keys.session_handle(sid))
        .ip(&ip.to_string());
    if let Some(r) = reason {
        e = e.reason(r);
    }
    rt.audit.emit(e);
    rt.store
        .revoke(user, sid, rt.revocation_ttl())
        .await
        .map(|_| ())
        .inspect_err(|e| {
            tracing::warn!(error = %e, "could not end a session in the store");
        })
}

/// End a session because of what a request showed (anomaly under `revoke`). Returns false when
/// the store could not be reached (the session is still revoked here).
pub async fn revoke_session(rt: &Runtime, user: &str, sid: &str, ip: IpAddr) -> bool {
    end_session(rt, user, sid, "session_revoked", ip, Some("anomaly"))
        .await
        .is_ok()
}

/// The session stage. `allow_refresh` is false on public routes (identity is passed on when a
/// valid access token is there, but nothing is rotated for a page that needs no session).
pub async fn check(
    rt: &Runtime,
    bearer: Option<&str>,
    cookies: &GatewayCookies,
    ip: IpAddr,
    ua: &str,
    allow_refresh: bool,
) -> SessionOutcome {
    let access = bearer.or(cookies.access.as_deref());
    if let Some(token) = access {
        if let Some(id) = verify_access(rt, token) {
            // Anomaly: only a detected one does any work beyond two keyed hashes.
            match anomaly::evaluate(rt, &id.fp, ip, ua, &id.sub, &id.sid) {
                Verdict::Pass => {
                    rt.activity.seen(&id.sub, &id.sid);
                    return SessionOutcome::Valid(id);
                }
                Verdict::Reauth => {
                    return SessionOutcome::Anonymous {
                        presented: true,
                        clear: true,
                    };
                }
                Verdict::Revoke => {
                    revoke_session(rt, &id.sub, &id.sid, ip).await;
                    return SessionOutcome::Anonymous {
                        presented: true,
                        clear: true,
                    };
                }
            }
        }
    }
    // API clients holding a bearer token refresh explicitly through /.auth/refresh.
    let refresh = if bearer.is_none() {
        cookies.refresh.as_deref()
    } else {
        None
    };
    let presented = access.is_some() || refresh.is_some();
    let Some(refresh) = refresh.filter(|_| allow_refresh) else {
        return SessionOutcome::Anonymous {
            presented,
            clear: false,
        };
    };
    match refresh_session(rt, refresh, ip, ua).await {
        RefreshResult::Issued(t) => {
            let cookies = session_cookies(rt, &t);
            SessionOutcome::Refreshed(t.identity, cookies)
        }
        RefreshResult::Refused => SessionOutcome::Anonymous {
            presented: true,
            clear: true,
        },
        RefreshResult::Unavailable => SessionOutcome::Unavailable,
    }
}

/// Tokens issued by a login or refresh.
#[derive(Debug)]
pub struct Issued {
    pub identity: Arc<Identity>,
    pub access: String,
    pub refresh: String,
    pub access_max_age: u64,
    pub refresh_max_age: u64,
}

#[derive(Debug)]
pub enum RefreshResult {
    Issued(Issued),
    Refused,
    Unavailable,
}

/// Mint the token pair for a session record (its current refresh `jti`), bound to `fp`.
pub fn issue(rt: &Runtime, rec: &SessionRecord, now: u64, fp: &Fingerprint) -> Issued {
    let access_exp = (now + rt.cfg.session.access_ttl.as_secs()).min(rec.abs_end);
    let access = rt
        .keys
        .mint_access(&rec.user, &rec.sid, &rec.roles, now, access_exp, fp);
    let refresh = rt
        .keys
        .mint_refresh(&rec.user, &rec.sid, &rec.cur_jti, now, rec.abs_end, fp);
    Issued {
        identity: Arc::new(Identity {
            handle: rt.keys.session_handle(&rec.sid),
            sub: rec.user.clone(),
            roles: rec.roles.clone(),
            sid: rec.sid.clone(),
            exp: access_exp,
            fp: fp.clone(),
        }),
        access,
        refresh,
        access_max_age: access_exp.saturating_sub(now),
        refresh_max_age: rec.abs_end.saturating_sub(now),
    }
}

/// `Set-Cookie` values carrying a token pair.
pub fn session_cookies(rt: &Runtime, t: &Issued) -> Vec<HeaderValue> {
    let s = &rt.cfg.session;
    vec![
        set_cookie(&rt.cookies.access, &t.access, t.access_max_age, s, true),
        set_cookie(&rt.cookies.refresh, &t.refresh, t.refresh_max_age, s, true),
    ]
}

/// `Set-Cookie` values that remove the gateway's session cookies.
pub fn clear_cookies(rt: &Runtime) -> Vec<HeaderValue> {
    let s = &rt.cfg.session;
    vec![
        set_cookie(&rt.cookies.access, "", 0, s, true),
        set_cookie(&rt.cookies.refresh, "", 0, s, true),
    ]
}

/// Rotate a refresh token: verify it, then one atomic store operation, single-flight per
/// `(sid, jti)` inside this instance.
pub async fn refresh_session(rt: &Runtime, token: &str, ip: IpAddr, ua: &str) -> RefreshResult {
    let Ok(claims) = rt.keys.verify_refresh(token) else {
        return RefreshResult::Refused;
    };
    if rt.revoked.is_revoked(&claims.sid) {
        return RefreshResult::Refused;
    }
    // A refresh from somewhere else is checked before anything rotates: under `reauth` the
    // session must stay usable where it came from.
    let fp = Fingerprint {
        ipn: claims.ipn.clone(),
        uah: claims.uah.clone(),
    };
    match anomaly::evaluate(rt, &fp, ip, ua, &claims.sub, &claims.sid) {
        Verdict::Pass => {}
        Verdict::Reauth => return RefreshResult::Refused,
        Verdict::Revoke => {
            return if revoke_session(rt, &claims.sub, &claims.sid, ip).await {
                RefreshResult::Refused
            } else {
                RefreshResult::Unavailable
            };
        }
    }
    let now = now_unix();
    let policy = RotatePolicy {
        now,
        grace_secs: rt.cfg.session.refresh_grace.as_secs(),
        idle_secs: rt.cfg.session.idle_timeout.as_secs(),
        revocation_ttl: rt.revocation_ttl(),
    };
    let key = (claims.sid.clone(), claims.jti.clone());
    let outcome = rt
        .flights
        .run(key, || async {
            let new_jti = random_token(16);
            let started = std::time::Instant::now();
            let r = rt
                .store
                .rotate(&claims.sub, &claims.sid, &claims.jti, &new_jti, policy)
                .await;
            rt.metrics
                .store_op("rotate", started.elapsed().as_secs_f64());
            let label = match &r {
                Ok(RotateOutcome::Rotated(_)) => "rotated",
                Ok(RotateOutcome::Grace(_)) => "grace",
                Ok(RotateOutcome::Reused(_)) => "reused",
                Ok(RotateOutcome::Idle(_)) => "idle",
                Ok(RotateOutcome::NotFound) => "not_found",
                Err(_) => "unavailable",
            };
            crate::metrics::Metrics::outcome(&rt.metrics.refreshes, label);
            match &r {
                Ok(RotateOutcome::Reused(rec)) => {
                    rt.metrics.reuse_detections.inc();
                    rt.revoked.insert(&rec.sid, now + rt.revocation_ttl());
                    rt.audit.emit(
                        Event::new("refresh_reuse")
                            .user(&rec.user)
                            .session(&rt.keys.session_handle(&rec.sid))
                            .reason("a rotated-out refresh token was presented; session revoked"),
                    );
                }
                Ok(RotateOutcome::Idle(rec)) => {
                    rt.revoked.insert(&rec.sid, now + rt.revocation_ttl());
                    rt.audit.emit(
                        Event::new("session_expired")
                            .user(&rec.user)
                            .session(&rt.keys.session_handle(&rec.sid))
                            .reason("idle timeout"),
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "refresh: session store unavailable"),
            }
            r.map_err(|e| e.to_string())
        })
        .await;
    match outcome {
        Ok(RotateOutcome::Rotated(rec)) | Ok(RotateOutcome::Grace(rec)) => {
            RefreshResult::Issued(issue(rt, &rec, now, &fp))
        }
        Ok(RotateOutcome::Reused(_)) | Ok(RotateOutcome::Idle(_)) | Ok(RotateOutcome::NotFound) => {
            RefreshResult::Refused
        }
        Err(_) => RefreshResult::Unavailable,
    }
}

type FlightResult = Result<RotateOutcome, String>;

/// Single-flight for refreshes: concurrent presentations of the same refresh token inside
/// this instance share one store operation and its result.
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

/// Batched `last_seen` updates: at most one per session per interval, sent to a background
/// task; never awaited by a request.
pub struct Activity {
    last: DashMap<String, u64>,
    tx: mpsc::Sender<(String, String, u64)>,
    rx: parking_lot::Mutex<Option<mpsc::Receiver<(String, String, u64)>>>,
    interval: u64,
}

impl Activity {
    pub fn new(s: &SessionConfig) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let interval = (s.idle_timeout.as_secs() / 2).clamp(1, 60);
        Self {
            last: DashMap::new(),
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
            interval,
        }
    }

    /// Note that a session was used now.
    pub fn seen(&self, user: &str, sid: &str) {
        let now = now_unix();
        if let Some(t) = self.last.get(sid) {
            if now.saturating_sub(*t) < self.interval {
                return;
            }
        }
        self.last.insert(sid.to_string(), now);
        // A full queue drops the update: the next interval will carry it.
        let _ = self.tx.try_send((user.to_string(), sid.to_string(), now));
    }

    /// The batching task: writes what `seen` queued, once a second.
    pub async fn run(&self, rt: Arc<Runtime>) {
        let Some(mut rx) = self.rx.lock().take() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => { if n == 0 { return; } }
                _ = tick.tick() => {}
            }
            if !batch.is_empty() {
                if let Err(e) = rt.store.touch(&batch).await {
                    tracing::debug!(error = %e, "activity update skipped");
                }
                batch.clear();
            }
            let now = now_unix();
            let horizon = self.interval * 4;
            if self.last.len() > 10_000 {
                self.last.retain(|_, t| now.saturating_sub(*t) < horizon);
            }
        }
    }
}

/// The answer to a request that needs a session and has none.
pub fn unauthenticated(
    rt: &Runtime,
    navigation: bool,
    return_to: &str,
    presented: bool,
    clear: bool,
) -> Response<Body> {
    let mut r = if navigation {
        let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        body::redirect(StatusCode::FOUND, &format!("/.auth/login?return_to={enc}"))
    } else {
        let mut r = body::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "unauthenticated"}),
        );
        let challenge = if presented {
            "Bearer realm=\"sessiongate\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"sessiongate\""
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        r
    };
    if clear {
        for c in clear_cookies(rt) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    r
}

/// `503` while the store cannot be reached: the user keeps their cookies and retries.
pub fn unavailable(navigation: bool) -> Response<Body> {
    let mut r = if navigation {
        body::html(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::pages::message_page(
                "Temporarily unavailable",
                "Sign-in is briefly unavailable. You are still signed in; please try again in a few seconds.",
            ),
        )
    } else {
        body::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "session_store_unavailable", "retry_after": 5}),
        )
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
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
                    Ok(RotateOutcome::NotFound)
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(RotateOutcome::NotFound));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(f.map.is_empty());
    }
}
