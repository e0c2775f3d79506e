//! Revocations while the revocation feed is out of sync.
//!
//! Access tokens are verified locally against the revocation set, which the store's feed keeps
//! current. After the feed loses its connection (a Redis restart, a network cut, a pub/sub
//! client killed) and until it has resubscribed and reloaded the revocations in force, a
//! revocation made on another instance would not be seen here: the set cannot be trusted.
//!
//! What a request sees then (`revoked.is_synced()` false):
//! - the store answers: its session is confirmed with the store, one round trip, and a session
//!   the store no longer holds (logged out, revoked, ended for reuse) is refused here at once and
//!   from then on. A confirmation is reused for [`CONFIRMED_FOR`], so a busy session costs one
//!   round trip a second, and a revocation is honoured within that second — the delay the feed
//!   itself aims at.
//! - the store does not answer: the access token is honoured until it expires (the damage is
//!   bounded by `session.access_ttl`), nobody is signed out, and refreshes answer `503`. After a
//!   failure no confirmation is tried for [`STORE_DOWN_FOR`], so an outage slows one request a
//!   second, not every one.
//!
//! In sync (the normal case) this costs one atomic load per request.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::{Identity, Sessions, VerifyError};

/// How long a session the store confirmed is taken as live without asking again (ms).
pub(crate) const CONFIRMED_FOR: u64 = 1_000;
/// How long after a store failure requests are honoured without asking (ms).
pub(crate) const STORE_DOWN_FOR: u64 = 1_000;
/// Bound on remembered confirmations: a cache, never the truth (when full, expired entries go
/// first, then all of them).
const CONFIRMED_MAX: usize = 65_536;

/// Sessions confirmed with the store while out of sync, and when the store last failed.
#[derive(Default)]
pub(crate) struct Confirmations {
    /// sid → when the store confirmed it (Unix ms, session clock).
    confirmed: DashMap<Box<str>, u64>,
    /// Unix ms until which the store is taken as unreachable.
    store_down_until: AtomicU64,
}

impl Confirmations {
    fn fresh(&self, sid: &str, now_ms: u64) -> bool {
        self.confirmed
            .get(sid)
            .is_some_and(|at| now_ms.saturating_sub(*at) < CONFIRMED_FOR)
    }

    fn remember(&self, sid: &str, now_ms: u64) {
        if self.confirmed.len() >= CONFIRMED_MAX {
            self.confirmed
                .retain(|_, at| now_ms.saturating_sub(*at) < CONFIRMED_FOR);
            if self.confirmed.len() >= CONFIRMED_MAX {
                self.confirmed.clear();
            }
        }
        self.confirmed.insert(sid.into(), now_ms);
    }
}

impl Sessions {
    /// A locally verified identity, confirmed with the store while the revocation feed is out
    /// of sync (see the module's documentation). `Err(Revoked)`: the store no longer holds the
    /// session.
    pub async fn confirm(&self, id: &Identity) -> Result<(), VerifyError> {
        if self.revoked.is_synced() {
            return Ok(());
        }
        let c = &self.confirmations;
        let now_ms = self.clock.now_ms();
        if c.fresh(&id.sid, now_ms) || now_ms < c.store_down_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        let found = self.store.get(&id.sub, &id.sid).await;
        match found {
            Ok(Some(_)) => {
                c.remember(&id.sid, now_ms);
                Ok(())
            }
            Ok(None) => {
                // Ended elsewhere while the feed was away: refused here from now on.
                self.forget_locally([id.sid.as_str()]);
                Err(VerifyError::Revoked)
            }
            Err(e) => {
                c.store_down_until
                    .store(now_ms + STORE_DOWN_FOR, Ordering::Relaxed);
                tracing::warn!(error = %e, "revocations out of sync and the store unreachable: access tokens are honoured until they expire");
                Ok(())
            }
        }
    }
}
