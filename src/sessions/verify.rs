//! Access tokens verified locally, and which session a request belongs to.
//!
//! The valid-access-token path does no store round trip and no blocking work: signature and
//! claims (see `tokens`), then the local revocation set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Identity, Sessions, Verdict, VerifyError};
use crate::store::StoreError;
use crate::tokens::{Fingerprint, RefreshClaims};
use crate::util::ct_eq;
use crate::web::user_agent::UserAgent;

/// Verified access tokens, per serving thread: a browser sends the same cookie with every
/// request until it expires, so the signature and claims are checked once per token and
/// thread, not once per request. Only successes are cached; expiry and the revocation set are
/// checked on every hit. Keyed by the runtime too (tests run several in one process).
struct Verified {
    rt: u64,
    id: Arc<Identity>,
}

/// Bound: when full, expired entries go first, then everything (a cache, never the truth).
const VERIFIED_MAX: usize = 8192;

thread_local! {
    static VERIFIED: RefCell<HashMap<Box<str>, Verified, rustc_hash::FxBuildHasher>> =
        const { RefCell::new(HashMap::with_hasher(rustc_hash::FxBuildHasher)) };
}

/// A session a request presented a token for, not yet judged by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub user: String,
    pub sid: String,
    pub fp: Fingerprint,
}

impl Sessions {
    /// Verify an access token, including the revocation set.
    pub fn verify_access(&self, token: &str) -> Result<Arc<Identity>, VerifyError> {
        let now = self.clock.now();
        let hit = VERIFIED.with(|c| {
            c.borrow()
                .get(token)
                .filter(|v| v.rt == self.id && v.id.exp >= now)
                .map(|v| v.id.clone())
        });
        let id = match hit {
            Some(id) => id,
            None => {
                let id = self.verify_uncached(token, now)?;
                remember(token, self.id, &id, now);
                id
            }
        };
        if self.revoked.is_revoked(&id.sid) {
            return Err(VerifyError::Revoked);
        }
        Ok(id)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<Arc<Identity>, VerifyError> {
        let c = self.keys.verify_access(token, now)?;
        Ok(Arc::new(Identity {
            handle: crate::tokens::session_handle(&c.sid),
            fp: c.fingerprint(),
            sub: c.sub,
            roles: c.roles,
            sid: c.sid,
            exp: c.exp,
            // A token minted before `sxp` existed: its own expiry is the only end known, so
            // a tunnel opened with it lasts no longer (fail closed; the client reconnects).
            session_end: c.sxp.unwrap_or(c.exp),
            auth_time: c.auth_time.unwrap_or(0),
        }))
    }

    /// The session a request belongs to, from a valid access token or, failing that (an
    /// expired access token must not stop a logout), a refresh token the store confirms is
    /// current (a refresh token of a session that ended, or one rotated out, acts on nothing).
    /// The anomaly policy applies as on any request: a stolen cookie used from elsewhere must
    /// not be able to sign the user out (`reauth`: `None`, nothing is ended), and under
    /// `revoke` only that session ends. `Err` when the store cannot confirm.
    pub async fn presented(
        &self,
        access: Option<&str>,
        refresh: Option<&str>,
        ip: IpAddr,
        ua: &UserAgent<'_>,
    ) -> Result<Option<Presented>, StoreError> {
        let now = self.clock.now();
        let found = match access.and_then(|t| self.keys.verify_access(t, now).ok()) {
            Some(c) => Some(Presented {
                fp: c.fingerprint(),
                user: c.sub,
                sid: c.sid,
            }),
            None => match refresh.and_then(|t| self.keys.verify_refresh(t, now).ok()) {
                Some(c) => self.confirmed(c).await?,
                None => None,
            },
        };
        let Some(found) = found.filter(|p| !self.revoked.is_revoked(&p.sid)) else {
            return Ok(None);
        };
        Ok(
            match self.anomaly(&found.fp, ip, ua, &found.user, &found.sid) {
                Verdict::Pass => Some(found),
                Verdict::Reauth => None,
                Verdict::Revoke => {
                    // Revoked here at once; a store failure is logged by `end`.
                    let _ = self.end_for_anomaly(&found.user, &found.sid, ip).await;
                    None
                }
            },
        )
    }

    /// The refresh token's session, if the store has it and the token is its current one (or
    /// the previous one, within the grace window or reopened).
    async fn confirmed(&self, c: RefreshClaims) -> Result<Option<Presented>, StoreError> {
        let now_ms = self.clock.now_ms();
        let Some(rec) = self.store.get(&c.sub, &c.sid).await? else {
            return Ok(None);
        };
        let jti = c.jti.as_bytes();
        let grace_ms = u64::try_from(self.cfg.refresh_grace.as_millis()).unwrap_or(u64::MAX);
        let current = ct_eq(rec.cur_jti.as_bytes(), jti)
            || (rec
                .prev_jti
                .as_deref()
                .is_some_and(|p| ct_eq(p.as_bytes(), jti))
                && rec.accepts_previous(now_ms, grace_ms));
        Ok(current.then_some(Presented {
            fp: c.fingerprint(),
            user: c.sub,
            sid: c.sid,
        }))
    }
}

fn remember(token: &str, rt: u64, id: &Arc<Identity>, now: u64) {
    VERIFIED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= VERIFIED_MAX {
            c.retain(|_, v| v.id.exp >= now);
            if c.len() >= VERIFIED_MAX {
                c.clear();
            }
        }
        c.insert(token.into(), Verified { rt, id: id.clone() });
    });
}

impl Sessions {
    /// A future that completes when `sid` is revoked (here, or on any instance through the
    /// store's feed): for long-lived connections of that session.
    pub fn ended(&self, sid: &str) -> impl std::future::Future<Output = ()> + Send + 'static {
        let sid: Arc<str> = Arc::from(sid);
        let mut watch = self.revoked.watch();
        let revoked = self.revoked.clone();
        async move {
            use tokio::sync::broadcast::error::RecvError;
            // Revoked before the watch began (between the request's check and now).
            if revoked.is_revoked(&sid) {
                return;
            }
            loop {
                match watch.recv().await {
                    Ok(s) if s == sid => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        if revoked.is_revoked(&sid) {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        }
    }
}

impl Sessions {
    /// A future that completes when a long-lived connection opened with `id` (a WebSocket
    /// tunnel) must close: its session is revoked (here, or anywhere through the store's feed),
    /// or reaches its absolute end. Its output says which, for the log.
    pub fn tunnel_end(
        &self,
        id: &Identity,
    ) -> impl std::future::Future<Output = &'static str> + Send + 'static {
        let ended = self.ended(&id.sid);
        let left = self.clock.until(id.session_end);
        async move {
            tokio::select! {
                () = ended => "its session ended",
                () = tokio::time::sleep(left) => "its session reached its absolute end",
            }
        }
    }
}
