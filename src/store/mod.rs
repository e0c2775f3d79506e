//! The session store: one trait, one implementation per backend.
//!
//! The store is the single source of truth for sessions (who, until when, which refresh token
//! is current). Access tokens are verified without it; only login, refresh, logout and the
//! sessions page touch it. Records hold identifiers and metadata only — never a raw token
//! (a session signed in through an identity provider holds the provider's tokens sealed by the
//! gateway, opaque to the store: [`IdpLink`]).

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod gcra;
pub mod instrumented;
pub mod memory;
pub mod redis;
pub(crate) mod revocations;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use revocations::RevocationSet;

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    pub user: String,
    pub roles: Vec<String>,
    /// Unix seconds.
    pub created: u64,
    pub last_seen: u64,
    /// The absolute end: no refresh after this, whatever the activity.
    pub abs_end: u64,
    /// `jti` of the refresh token that is current.
    pub cur_jti: String,
    /// `jti` it replaced, accepted within the grace window after `rotated_at_ms` (or, when
    /// `prev_open`, until `cur_jti` is presented).
    pub prev_jti: Option<String>,
    /// When `cur_jti` replaced `prev_jti`, in Unix milliseconds.
    pub rotated_at_ms: u64,
    /// The rotation to `cur_jti` never reached its client (see [`SessionStore::reopen`]):
    /// `prev_jti` is accepted past the grace window until `cur_jti` is presented.
    pub prev_open: bool,
    pub ip: String,
    pub user_agent: String,
    pub device: String,
    /// The identity provider the session was signed in through; absent for other logins and
    /// in records written before it existed.
    #[serde(default)]
    pub idp: Option<IdpLink>,
    /// When the user last proved who they are (the login, or a later step-up through login
    /// again: `crate::policy`), Unix seconds. Records written before it: their `created`.
    #[serde(default)]
    pub auth_time: u64,
    /// Rotations in a row each within [`RotatePolicy::window_secs`] of the one before (the
    /// refresh-rate anomaly; `rotated_at_ms` is when the last one was).
    #[serde(default)]
    pub refreshes: u32,
}

/// The identity provider a session was signed in through (OpenID Connect).
///
/// Every field is secrets-adjacent (the provider's subject and session id name the user at the
/// provider; the sealed tokens are the provider's credentials, encrypted): the store keeps them
/// and hands them back unchanged, and never logs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdpLink {
    /// `[[oidc.provider]] name`.
    pub provider: String,
    /// The provider's `sub` for the user.
    pub sub: String,
    /// The provider's session id (the ID token's `sid`), for back-channel logout.
    #[serde(default)]
    pub sid: Option<String>,
    /// The ID token, sealed (encrypted) by the gateway: opaque to the store.
    #[serde(default)]
    pub id_token_sealed: Option<String>,
    /// The provider's refresh token, sealed: opaque to the store.
    #[serde(default)]
    pub refresh_token_sealed: Option<String>,
    /// When the provider last confirmed the user (Unix seconds).
    #[serde(default)]
    pub checked_at: u64,
}

impl IdpLink {
    /// Whether this link is the one `key` names at `provider`.
    pub fn matches(&self, provider: &str, key: IdpKey<'_>) -> bool {
        self.provider == provider
            && match key {
                IdpKey::Sid(sid) => self.sid.as_deref() == Some(sid),
                IdpKey::Sub(sub) => self.sub == sub,
            }
    }

    /// The keys a back-channel logout may name this link by: its `sid` (when the provider
    /// gave one) and its `sub`.
    pub fn keys(&self) -> impl Iterator<Item = IdpKey<'_>> {
        self.sid
            .as_deref()
            .map(IdpKey::Sid)
            .into_iter()
            .chain(std::iter::once(IdpKey::Sub(&self.sub)))
    }
}

/// Which sessions of a provider a back-channel logout names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKey<'a> {
    Sid(&'a str),
    Sub(&'a str),
}

/// At most this many sessions are indexed under one [`IdpKey`] of a provider; a new one drops
/// the one that ends first. Back-channel logout reaches these.
pub const IDP_INDEX_MAX: usize = 64;

impl SessionRecord {
    /// Whether `prev_jti`, presented at `now_ms`, is still the client's own token: within the
    /// grace window of the rotation (parallel requests), or reopened because the rotation's
    /// answer never reached the client.
    pub fn accepts_previous(&self, now_ms: u64, grace_ms: u64) -> bool {
        self.prev_open || now_ms.saturating_sub(self.rotated_at_ms) <= grace_ms
    }
}

/// A user's confirmed second factor (TOTP), as the store keeps it. The used time steps and the
/// recovery codes are kept beside it, each changed by one atomic operation
/// ([`SessionStore::use_factor_step`], [`SessionStore::use_recovery_code`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorRecord {
    /// The TOTP secret, sealed (encrypted) by the gateway: opaque to the store, never logged.
    pub secret_sealed: String,
    /// When it was confirmed, Unix seconds.
    pub enrolled_at: u64,
}

/// The result of presenting a refresh token's `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The current `jti` was presented; `record.cur_jti` is now the new one.
    Rotated(SessionRecord),
    /// The previous `jti` was presented within the grace window (the client raced another
    /// request of its own), or after a rotation that never reached the client: `record.cur_jti`
    /// is the token already issued.
    Grace(SessionRecord),
    /// An older `jti`, or the previous one after the grace: a stolen token. The session is gone.
    Reused(SessionRecord),
    /// Idle for longer than the idle timeout: the session is gone.
    Idle(SessionRecord),
    /// No such session (ended, revoked or past its absolute end).
    NotFound,
}

/// A revoked session id, kept in every instance's local set until `until` (by then every
/// access token minted for it has expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub sid: String,
    pub until: u64,
}

/// What the revocation feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A session was revoked (by any instance).
    Revoked(Revocation),
    /// The feed (re)connected and these revocations are in force: the local set may be
    /// trusted again once they are in it.
    Resynced(Vec<Revocation>),
    /// The feed is down: revocations by other instances may be missed until `Resynced`.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store (or a connection to it) failed; the source says how.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer within `store.connect_timeout` / `store.command_timeout`.
    #[error("session store timed out")]
    Timeout,
    /// The store answered something this version does not understand: treated as unavailable
    /// (`503`, the client keeps its cookies), never as "no such session" (a logout).
    #[error("unexpected answer from the session store: {0}")]
    UnexpectedReply(String),
}

/// Parameters of a rotation, from the session configuration.
#[derive(Debug, Clone, Copy)]
pub struct RotatePolicy {
    /// Unix seconds (idle and absolute timeouts).
    pub now: u64,
    /// Unix milliseconds (the grace window, and the time of a rotation).
    pub now_ms: u64,
    /// `session.refresh_grace` in milliseconds: the previous `jti` is accepted while
    /// `now_ms - rotated_at_ms <= grace_ms`.
    pub grace_ms: u64,
    pub idle_secs: u64,
    /// How long a revocation must be remembered (the access token lifetime).
    pub revocation_ttl: u64,
    /// The refresh-rate window: a rotation within this of the one before adds one to
    /// `refreshes`, a later one starts again at 1 (`session.access_ttl`: a client that keeps its
    /// cookies rotates about once per access token).
    pub window_secs: u64,
}

/// How [`SessionStore::put_passkey`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyWrite {
    /// A new passkey, while the user has fewer than `max`.
    Add { max: usize },
    /// A passkey's new state (counter, last use), only while it exists.
    Update,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Store a new session.
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError>;

    /// Atomically check `presented_jti` against the session and rotate to `new_jti`.
    /// Reuse and idle timeout delete the session and record its revocation.
    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        policy: RotatePolicy,
    ) -> Result<RotateOutcome, StoreError>;

    /// Take back what a rotation from `prev_jti` to `new_jti` did to the client, when its
    /// answer (the new cookies) never reached it: `prev_jti` is accepted again, past the grace
    /// window, until `new_jti` is presented (which rotates as usual and closes it again).
    /// Applies only while the session exists and `new_jti` is its current `jti` with
    /// `prev_jti` before it: a session that ended stays ended, and a later rotation (by anyone)
    /// is never undone. `new_jti` stays valid, so a copy of the answer that did arrive (a
    /// parallel request within the grace) still works. Returns whether it applied.
    async fn reopen(
        &self,
        user: &str,
        sid: &str,
        prev_jti: &str,
        new_jti: &str,
    ) -> Result<bool, StoreError>;

    /// One session, if it exists.
    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// End one session. Returns whether it existed.
    async fn revoke(&self, user: &str, sid: &str, revocation_ttl: u64) -> Result<bool, StoreError>;

    /// End every session of a user; returns their ids.
    async fn revoke_all(&self, user: &str, revocation_ttl: u64) -> Result<Vec<String>, StoreError>;

    /// The user's live sessions, newest first.
    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError>;

    /// Record activity (`last_seen`) for many sessions at once; best effort.
    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError>;

    /// Revocations still within their `until`, for an instance that (re)starts.
    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError>;

    /// A feed of revocations as they happen (from any instance sharing the store). A store
    /// that needs a connection for it starts it at the first call, so subscribe before
    /// trusting the local set.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedEvent>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Sessions signed in through `provider` whose IdP session id (`IdpKey::Sid`) or IdP subject
    /// (`IdpKey::Sub`) is the one given, as `(user, sid)`; only sessions that still exist (and
    /// still carry that link), in no particular order. Index entries of sessions that ended
    /// are dropped as they are found. At most [`IDP_INDEX_MAX`] sessions per key: a user with
    /// more sessions through one provider is reached by the newest.
    async fn idp_sessions(
        &self,
        provider: &str,
        key: IdpKey<'_>,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Record `key` as used until `until` (Unix seconds); `true` when it was not already
    /// recorded. Atomic across instances (Redis `SET NX EXAT`): a replay check (a logout token's
    /// `jti`) and a lease (one instance re-checks a session with the provider at a time).
    /// Whenever the store cannot remember the key (an `until` not in the future, or the memory
    /// store's table full of unexpired keys) the answer is `false`: "cannot remember" is
    /// treated as "already used", the safe answer for a replay check.
    async fn first_use(&self, key: &str, until: u64) -> Result<bool, StoreError>;

    /// Replace a session's roles and IdP link (after the provider was asked again): `false`
    /// when the session no longer exists. Never revives an ended session, never changes its jti
    /// state.
    async fn update_identity(
        &self,
        user: &str,
        sid: &str,
        roles: &[String],
        idp: Option<&IdpLink>,
    ) -> Result<bool, StoreError>;

    /// Take up to `want` tokens from the rate-limit bucket `key` ([`gcra::Gcra::take`]),
    /// atomically for every instance sharing the store, on the store's clock. Keys are the
    /// rate limiter's own (`crate::ratelimit`): never a session id or a token.
    async fn rate_take(
        &self,
        key: &str,
        gcra: gcra::Gcra,
        want: u64,
    ) -> Result<gcra::Take, StoreError>;

    /// The user's confirmed second factor, if any.
    async fn factor(&self, user: &str) -> Result<Option<FactorRecord>, StoreError>;

    /// Make `rec` the user's second factor (replacing any), with `step` as its last used time
    /// step (the code that confirmed it) and `recovery` (hashes) as its recovery codes; the
    /// pending enrolment is gone. One atomic change.
    async fn set_factor(
        &self,
        user: &str,
        rec: &FactorRecord,
        step: u64,
        recovery: &[String],
    ) -> Result<(), StoreError>;

    /// Remove the user's second factor, its recovery codes, its used steps and any pending
    /// enrolment (an operator's reset). Returns whether there was a confirmed one.
    async fn remove_factor(&self, user: &str) -> Result<bool, StoreError>;

    /// Keep `sealed` (a new, unconfirmed secret) as the user's pending enrolment until `until`
    /// (Unix seconds), replacing any earlier one.
    async fn put_pending_factor(
        &self,
        user: &str,
        sealed: &str,
        until: u64,
    ) -> Result<(), StoreError>;

    /// The user's pending enrolment, while it has not expired.
    async fn pending_factor(&self, user: &str) -> Result<Option<String>, StoreError>;

    /// Record that the user's code of time step `step` was accepted: `true` only when `step`
    /// is later than every step accepted before (atomically for every instance), so a code is
    /// used once, and no code of an earlier step after it (replay).
    async fn use_factor_step(&self, user: &str, step: u64) -> Result<bool, StoreError>;

    /// Consume one recovery code by its hash: `true` when it was one of the user's and is now
    /// gone (atomically: two instances never both accept it).
    async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError>;

    /// How many recovery codes the user has left.
    async fn recovery_codes_left(&self, user: &str) -> Result<usize, StoreError>;

    /// When the user's grace period to enrol a second factor began: `now` the first time it is
    /// asked for (kept from then on, atomically), the first answer after that.
    async fn factor_grace_start(&self, user: &str, now: u64) -> Result<u64, StoreError>;

    /// The user's passkeys (WebAuthn credentials) as `(id, record)`, each record as the
    /// gateway wrote it (`login::passkeys`), in no particular order.
    async fn passkeys(&self, user: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Write the user's passkey `id`: [`PasskeyWrite::Add`] while the user has fewer than
    /// `max` (or to replace one with this id), [`PasskeyWrite::Update`] only while it is still
    /// there (a sign-in's new counter never revives a revoked passkey). Atomic; returns
    /// whether it was written.
    async fn put_passkey(
        &self,
        user: &str,
        id: &str,
        record: &str,
        write: PasskeyWrite,
    ) -> Result<bool, StoreError>;

    /// Remove the user's passkey `id`; whether it was there.
    async fn remove_passkey(&self, user: &str, id: &str) -> Result<bool, StoreError>;

    /// Whether [`SessionStore::rate_take`] buckets are shared with other instances (Redis):
    /// then the gateway spends local leases of them; otherwise (memory) its own table is the
    /// authority and `rate_take` is not on the request path.
    fn shares_rate_limits(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the previous version serialised it (no `idp`) still loads, without a link;
    /// a link with only the required fields loads with the rest empty.
    #[test]
    fn records_and_links_from_before_load() {
        let old = r#"{"sid":"s","user":"u","roles":["a"],"created":1,"last_seen":2,"abs_end":3,
            "cur_jti":"j","prev_jti":null,"rotated_at_ms":1000,"prev_open":false,"ip":"127.0.0.1",
            "user_agent":"ua","device":"d"}"#;
        let r: SessionRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.sid.as_str(), r.idp), ("s", None));
        let l: IdpLink = serde_json::from_str(r#"{"provider":"kc","sub":"x"}"#).unwrap();
        assert_eq!(
            l,
            IdpLink {
                provider: "kc".into(),
                sub: "x".into(),
                ..IdpLink::default()
            }
        );
        assert!(serde_json::from_str::<IdpLink>(r#"{"provider":"kc"}"#).is_err());
    }

    #[test]
    fn a_link_matches_its_own_keys_only() {
        let l = IdpLink {
            provider: "kc".into(),
            sub: "x".into(),
            sid: Some("s1".into()),
            ..IdpLink::default()
        };
        assert_eq!(
            l.keys().collect::<Vec<_>>(),
            vec![IdpKey::Sid("s1"), IdpKey::Sub("x")]
        );
        assert!(l.matches("kc", IdpKey::Sid("s1")) && l.matches("kc", IdpKey::Sub("x")));
        for (p, k) in [
            ("kc", IdpKey::Sid("x")),
            ("kc", IdpKey::Sub("s1")),
            ("KC", IdpKey::Sub("x")),
            ("kc", IdpKey::Sub("X")),
            ("kc", IdpKey::Sid("")),
        ] {
            assert!(!l.matches(p, k), "{p} {k:?}");
        }
        let no_sid = IdpLink { sid: None, ..l };
        assert_eq!(no_sid.keys().collect::<Vec<_>>(), vec![IdpKey::Sub("x")]);
        assert!(!no_sid.matches("kc", IdpKey::Sid("")));
    }
}
