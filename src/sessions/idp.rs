//! Staying in step with the identity provider (`oidc.recheck_interval`): at a refresh, at most
//! once per interval per session, the provider is asked again with the refresh token it gave
//! us. `invalid_grant` (the user or their grant is gone), or claims that no longer pass
//! `allowed_domains`/`allowed_groups`, end the session; otherwise its roles follow the
//! provider's current claims and the (rotated) provider token is kept.
//!
//! Across instances one re-check runs at a time per session and interval: a lease taken in the
//! store (`first_use`). Providers rotate refresh tokens and treat a reused one as theft (the
//! refresh races that log oauth2-proxy users out); two instances sending the same token at
//! once would be exactly that. A provider that cannot be reached ends nothing: the session
//! goes on and the next refresh after the lease tries again.

use std::time::Duration;

use super::{Ending, Sessions};
use crate::oidc::{Rechecked, claims};
use crate::store::{RotateOutcome, SessionRecord};

/// Longest a refresh waits for the provider before going on without its answer.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one instance's lease on a re-check lasts.
const LEASE_SECS: u64 = 60;

enum Verdict {
    Keep,
    Update(Box<SessionRecord>),
    End(&'static str),
}

impl Sessions {
    /// The outcome of a rotation once the provider, if due, was asked again: the record with
    /// the provider's current roles, or `NotFound` when the session ended because of it.
    pub(super) async fn rechecked(&self, rec: SessionRecord, now: u64) -> RotateOutcome {
        let verdict = match tokio::time::timeout(RECHECK_TIMEOUT, self.recheck(&rec, now)).await {
            Ok(v) => v,
            Err(_) => {
                tracing::warn!(session = %self.handle(&rec.sid), "oidc: the provider did not answer the re-check in time; the session goes on");
                Verdict::Keep
            }
        };
        match verdict {
            Verdict::Keep => RotateOutcome::Rotated(rec),
            Verdict::Update(next) => RotateOutcome::Rotated(*next),
            Verdict::End(reason) => {
                let why = Ending {
                    event: "session_revoked",
                    ip: rec
                        .ip
                        .parse()
                        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                    reason: Some(reason),
                };
                if let Err(e) = self.end(&rec.user, &rec.sid, why).await {
                    tracing::warn!(error = %e, "oidc: could not end a session the provider no longer knows");
                }
                RotateOutcome::NotFound
            }
        }
    }

    async fn recheck(&self, rec: &SessionRecord, now: u64) -> Verdict {
        let (Some(oidc), Some(link)) = (self.oidc.as_ref(), rec.idp.as_ref()) else {
            return Verdict::Keep;
        };
        let (Some(every), Some(sealed)) = (oidc.recheck_interval(), &link.refresh_token_sealed)
        else {
            return Verdict::Keep;
        };
        if now.saturating_sub(link.checked_at) < every.as_secs() {
            return Verdict::Keep;
        }
        let Some(p) = oidc.provider(&link.provider) else {
            // The provider was removed from the configuration: its sessions end.
            return Verdict::End("identity provider removed");
        };
        let lease = format!("oidc-recheck:{}:{}", rec.sid, link.checked_at);
        match self.store.first_use(&lease, now + LEASE_SECS).await {
            Ok(true) => {}
            Ok(false) => return Verdict::Keep, // another request or instance is on it
            Err(e) => {
                tracing::warn!(error = %e, "oidc: no re-check lease (store unavailable)");
                return Verdict::Keep;
            }
        }
        let Some(refresh) = oidc.open_token("refresh", &link.provider, &link.sub, sealed) else {
            tracing::warn!(session = %self.handle(&rec.sid), "oidc: the kept provider token no longer opens (its key left the ring); no more re-checks for this session");
            return Verdict::Keep;
        };
        let answer = match p.recheck(&refresh, &link.sub, now).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(provider = %p.name(), error = %e, "oidc: re-check failed; the session goes on");
                return Verdict::Keep;
            }
        };
        let (claims, refresh, id_token) = match answer {
            Rechecked::Gone(why) => {
                tracing::info!(provider = %p.name(), session = %self.handle(&rec.sid), reason = %why, "oidc: the provider no longer knows the session's grant");
                return Verdict::End("identity provider ended the grant");
            }
            Rechecked::Current {
                claims,
                refresh_token,
                id_token,
            } => (claims, refresh_token, id_token),
        };
        // The user id cannot change within a session: a refreshed answer without the claim
        // (no ID token on refresh, no userinfo) keeps it; a different one ends the session.
        let mut claims = claims;
        if claims::lookup(&claims, &p.cfg.user_claim).is_none() {
            claims.insert(p.cfg.user_claim.clone(), rec.user.clone().into());
        }
        let mapped = match claims::map(&p.cfg, &claims) {
            Ok(m) => m,
            Err(d) => {
                tracing::info!(provider = %p.name(), reason = %d, "oidc: the user no longer passes the provider's rules");
                return Verdict::End("identity provider claims no longer allowed");
            }
        };
        if mapped.user != rec.user {
            return Verdict::End("identity provider changed the user id");
        }
        let mut next = rec.clone();
        let mut l = link.clone();
        l.checked_at = now;
        l.refresh_token_sealed = oidc.seal_token("refresh", &l.provider, &l.sub, &refresh);
        if let Some(t) = id_token {
            l.id_token_sealed = oidc.seal_token("id", &l.provider, &l.sub, &t);
        }
        next.roles = mapped.roles;
        next.idp = Some(l);
        match self
            .store
            .update_identity(&next.user, &next.sid, &next.roles, next.idp.as_ref())
            .await
        {
            Ok(true) => Verdict::Update(Box::new(next)),
            Ok(false) => Verdict::End("session ended during the re-check"),
            Err(e) => {
                // The provider rotated its token and we could not keep the new one: the next
                // re-check would present a rotated-out token. Keep the session; say so.
                tracing::warn!(error = %e, "oidc: could not keep the re-checked identity");
                Verdict::Update(Box::new(next))
            }
        }
    }
}
