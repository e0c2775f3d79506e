//! A session's life: started at login with a new id, its tokens issued and set as cookies,
//! ended alone or with every other session of its user.
//!
//! Ending always goes through [`Sessions::forget_locally`] first: this instance refuses the
//! session's access tokens from the next request on (and drops its cached identity
//! assertion) even when the store cannot be reached; then the store, with an audit event.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;

use super::{Identity, Sessions, StartError};
use crate::audit::Event;
use crate::cookies::{Outgoing, set_cookie};
use crate::delivery::Delivery;
use crate::store::{IdpLink, SessionRecord, StoreError};
use crate::tokens::{AccessLifetime, Fingerprint, MintError};
use crate::util::random_token;
use crate::web::user_agent::UserAgent;

/// Tokens issued by a login or refresh.
#[derive(Debug)]
pub struct Issued {
    pub identity: Arc<Identity>,
    pub access: String,
    pub refresh: String,
    pub access_max_age: u64,
    pub refresh_max_age: u64,
    /// When a refresh rotated the token here: taken back unless the answer carrying these
    /// tokens reaches the client (see `crate::delivery`).
    pub delivery: Option<Delivery>,
}

/// Why and where a session ends, for its audit event.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    pub event: &'static str,
    pub ip: IpAddr,
    pub reason: Option<&'a str>,
}

impl Sessions {
    /// Start a new session (a new id at every login: nothing from before it is trusted after
    /// it) and issue its tokens.
    pub async fn start(
        &self,
        user: &str,
        roles: &[String],
        ip: IpAddr,
        ua: &UserAgent<'_>,
        idp: Option<IdpLink>,
    ) -> Result<Issued, StartError> {
        let rec = SessionRecord {
            idp,
            ..self.fresh_record(user, roles, ip, ua)
        };
        let now = rec.created;
        let fp = self.fingerprints.bind(ip, ua);
        let issued = self.issue(&rec, now, &fp)?;
        let r = self.store.create(rec.clone()).await;
        r?;
        self.metrics.sessions_created.inc();
        let mut e = Event::new("login_ok")
            .user(&rec.user)
            .session(&self.handle(&rec.sid))
            .ip(&rec.ip);
        if let Some(l) = &rec.idp {
            e = e.provider(&l.provider);
        }
        self.audit.emit(e);
        Ok(issued)
    }

    /// The session of a user who just proved who they are. When the request's tokens
    /// (`held`: access, refresh) name a session of this same user, the login is a step-up and
    /// that session goes on renewed ([`Sessions::renew`]); otherwise (none, or someone else's,
    /// which is left as it is) a new session starts.
    pub async fn sign_in(
        &self,
        held: (Option<&str>, Option<&str>),
        user: &str,
        roles: &[String],
        ip: IpAddr,
        ua: &UserAgent<'_>,
        idp: Option<IdpLink>,
    ) -> Result<Issued, StartError> {
        // A store that cannot say which session this is cannot start one either; the start
        // below reports it.
        if let Ok(Some(p)) = self.presented(held.0, held.1, ip, ua).await
            && p.user == user
            && let Some(old) = self.store.get(user, &p.sid).await?
        {
            return self.renew(old, roles, ip, ua, idp).await;
        }
        self.start(user, roles, ip, ua, idp).await
    }

    /// A step-up (`[[route]] max_auth_age`): the session goes on — its start, its absolute
    /// end, one row on the sessions page — under a new id with a new refresh token,
    /// authenticated now, with this login's roles and bound to this request's network and
    /// browser. The old id ends everywhere at once (OWASP: a new session id at every
    /// re-authentication): a copy of the old tokens, however old, never gains the new
    /// authentication time.
    async fn renew(
        &self,
        old: SessionRecord,
        roles: &[String],
        ip: IpAddr,
        ua: &UserAgent<'_>,
        idp: Option<IdpLink>,
    ) -> Result<Issued, StartError> {
        let rec = SessionRecord {
            created: old.created,
            abs_end: old.abs_end,
            idp: idp.or(old.idp),
            ..self.fresh_record(&old.user, roles, ip, ua)
        };
        let now = rec.auth_time;
        let fp = self.fingerprints.bind(ip, ua);
        let issued = self.issue(&rec, now, &fp)?;
        self.store.create(rec.clone()).await?;
        self.forget_locally([old.sid.as_str()]);
        if let Err(e) = self
            .store
            .revoke(&rec.user, &old.sid, self.revocation_ttl())
            .await
        {
            // The new session must not stand beside an old one that could not be ended.
            let _ = self.store.revoke(&rec.user, &rec.sid, 0).await;
            return Err(e.into());
        }
        let mut e = Event::new("login_ok")
            .user(&rec.user)
            .session(&self.handle(&rec.sid))
            .ip(&rec.ip)
            .reason(&format!(
                "step-up: renews session {}",
                self.handle(&old.sid)
            ));
        if let Some(l) = &rec.idp {
            e = e.provider(&l.provider);
        }
        self.audit.emit(e);
        Ok(issued)
    }

    /// A session of `user` signed in now from this request: a new id and refresh jti, no
    /// provider link. Ids of 128 random bits, refresh jtis of 96 (a jti only has to be unique
    /// among its session's; the signature is what makes a refresh token unforgeable): short,
    /// since each is stored, and Redis keeps a record compact only while it is small.
    fn fresh_record(
        &self,
        user: &str,
        roles: &[String],
        ip: IpAddr,
        ua: &UserAgent<'_>,
    ) -> SessionRecord {
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1000;
        SessionRecord {
            sid: random_token(16),
            user: user.to_string(),
            roles: roles.to_vec(),
            created: now,
            last_seen: now,
            abs_end: now + self.cfg.refresh_ttl.as_secs(),
            cur_jti: random_token(12),
            prev_jti: None,
            rotated_at_ms: now_ms,
            prev_open: false,
            ip: ip.to_string(),
            device: ua.device().label(),
            user_agent: ua.as_str().to_string(),
            idp: None,
            auth_time: now,
            refreshes: 0,
        }
    }

    /// Mint the token pair for a session record (its current refresh `jti`), bound to `fp`.
    pub fn issue(
        &self,
        rec: &SessionRecord,
        now: u64,
        fp: &Fingerprint,
    ) -> Result<Issued, MintError> {
        let access_exp = (now + self.cfg.access_ttl.as_secs()).min(rec.abs_end);
        let life = AccessLifetime {
            now,
            exp: access_exp,
            session_end: rec.abs_end,
            auth_time: rec.auth_time,
        };
        let access = self
            .keys
            .mint_access(&rec.user, &rec.sid, &rec.roles, life, fp)?;
        let refresh =
            self.keys
                .mint_refresh(&rec.user, &rec.sid, &rec.cur_jti, now, rec.abs_end, fp)?;
        Ok(Issued {
            identity: Arc::new(Identity {
                handle: self.handle(&rec.sid),
                sub: rec.user.clone(),
                roles: rec.roles.clone(),
                sid: rec.sid.clone(),
                exp: access_exp,
                session_end: rec.abs_end,
                auth_time: rec.auth_time,
                fp: fp.clone(),
            }),
            access,
            refresh,
            access_max_age: access_exp.saturating_sub(now),
            refresh_max_age: rec.abs_end.saturating_sub(now),
            delivery: None,
        })
    }

    /// `Set-Cookie` values carrying a token pair, with the rotation they deliver.
    pub fn set_cookies(&self, t: &Issued) -> Outgoing {
        let c = &self.cookies;
        Outgoing {
            values: vec![
                set_cookie(&c.access, &t.access, t.access_max_age, &self.cfg, true),
                set_cookie(&c.refresh, &t.refresh, t.refresh_max_age, &self.cfg, true),
            ],
            delivery: t.delivery.clone(),
        }
    }

    /// `Set-Cookie` values that remove the gateway's session cookies.
    pub fn clear_cookies(&self) -> Vec<HeaderValue> {
        let c = &self.cookies;
        vec![
            set_cookie(&c.access, "", 0, &self.cfg, true),
            set_cookie(&c.refresh, "", 0, &self.cfg, true),
        ]
    }

    /// The one revoke-locally path: these sessions' access tokens are refused here from now
    /// on, and their cached identity assertions are dropped.
    pub(crate) fn forget_locally<'a>(&self, sids: impl IntoIterator<Item = &'a str>) {
        let until = self.clock.now() + self.revocation_ttl();
        for sid in sids {
            self.revoked.insert(sid, until);
            if let Some(s) = &self.signer {
                s.forget(sid);
            }
        }
    }

    /// End one session: at once in this instance, then in the store, with an audit event.
    /// `Err` when the store could not be reached: the caller answers `503`.
    pub async fn end(&self, user: &str, sid: &str, why: Ending<'_>) -> Result<(), StoreError> {
        self.forget_locally([sid]);
        self.metrics.session_ended(ending_reason(why.event), 1);
        let mut e = Event::new(why.event)
            .user(user)
            .session(&self.handle(sid))
            .ip(&why.ip.to_string());
        if let Some(r) = why.reason {
            e = e.reason(r);
        }
        self.audit.emit(e);
        self.store
            .revoke(user, sid, self.revocation_ttl())
            .await
            .map(|_| ())
            .inspect_err(|e| tracing::warn!(error = %e, "could not end a session in the store"))
    }

    /// End a session because of what a request showed (anomaly under `revoke`).
    pub async fn end_for_anomaly(
        &self,
        user: &str,
        sid: &str,
        ip: IpAddr,
    ) -> Result<(), StoreError> {
        let why = Ending {
            event: "session_revoked",
            ip,
            reason: Some("anomaly"),
        };
        self.end(user, sid, why).await
    }

    /// End every session of the user, as at logout-all or after a password change.
    pub async fn revoke_all(&self, user: &str, event: &'static str) -> Result<usize, StoreError> {
        let sids = self.store.revoke_all(user, self.revocation_ttl()).await?;
        self.forget_locally(sids.iter().map(String::as_str));
        self.metrics
            .session_ended(ending_reason(event), sids.len() as u64);
        self.audit
            .emit(Event::new(event).user(user).count(sids.len()));
        Ok(sids.len())
    }

    /// The user's live sessions, newest first.
    pub async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.store.list(user).await
    }
}

/// One session as its user (or an operator) sees it.
#[derive(Debug, serde::Serialize)]
pub struct SessionView<'a> {
    pub handle: String,
    pub device: &'a str,
    /// The user agent the session signed in with, as kept (see `web::user_agent`).
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub created: u64,
    /// When the user last proved who they are in this session (the login, or a step-up).
    pub last_authenticated: u64,
    pub last_active: u64,
    pub expires: u64,
    pub current: bool,
}

impl Sessions {
    /// The view of `r`; `current_sid` marks the session of the request (`""` for none).
    pub fn view<'a>(&self, r: &'a SessionRecord, current_sid: &str) -> SessionView<'a> {
        SessionView {
            handle: self.handle(&r.sid),
            device: &r.device,
            user_agent: &r.user_agent,
            ip: &r.ip,
            created: r.created,
            last_authenticated: r.auth_time,
            last_active: r.last_seen,
            expires: r.abs_end,
            current: r.sid == current_sid,
        }
    }
}

/// `sessiongate_sessions_ended_total{reason}` for an ending's audit event.
pub(crate) fn ending_reason(event: &str) -> &'static str {
    match event {
        "logout" | "logout_all" => "logout",
        "admin_revoke_all" => "admin",
        "refresh_reuse" => "reuse",
        "session_expired" => "idle",
        _ => "revoked",
    }
}
