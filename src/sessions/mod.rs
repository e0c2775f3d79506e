//! The session domain: everything a session goes through, in one place, called by the
//! pipeline (verify, refresh, anomaly), the gateway's endpoints (start, end, list) and the
//! admin API (list, revoke-all).
//!
//! - [`verify`]: access tokens checked locally (signature, claims, revocation set), cached per
//!   serving thread; which session a request belongs to.
//! - [`lifecycle`]: start (a new id at every login), issue tokens and their cookies, end one
//!   session or all of a user's — through ONE revoke-locally path.
//! - [`refresh`]: rotation of the refresh token, single-flight per token inside an instance; a
//!   rotation whose answer never reached the client is reopened.
//! - [`confirm`]: while the revocation feed is out of sync, sessions are confirmed with the
//!   store (a revocation made elsewhere in the meantime is honoured).
//! - [`anomaly`]: the session's network and browser fingerprints against the request's.
//! - [`activity`]: batched `last_seen` updates, never awaited by a request.
//! - [`clock`]: the time all of the above is decided at.
//!
//! Threats: forged or replayed access tokens (see `tokens`), stolen refresh tokens (rotation at
//! every use; a rotated-out token presented after the grace window revokes the whole session,
//! RFC 9700 §4.14.2), session fixation (new id at login), hijacking (fingerprints), sessions
//! outliving their user's attention (idle and absolute timeouts, enforced at refresh).

pub(crate) mod activity;
pub(crate) mod anomaly;
pub(crate) mod clock;
pub(crate) mod confirm;
pub(crate) mod idp;
pub(crate) mod lifecycle;
pub(crate) mod refresh;
pub(crate) mod verify;

use std::sync::Arc;

use crate::assertion::Signer;
use crate::audit::Audit;
use crate::config::{Config, SessionConfig};
use crate::cookies::CookieNames;
use crate::metrics::Metrics;
use crate::store::{RevocationSet, SessionStore, StoreError};
use crate::tokens::{Fingerprint, KeyRing, MintError, TokenError};

/// For callers outside the crate that mint access tokens (benchmarks).
pub use crate::tokens::AccessLifetime;
pub use activity::Activity;
pub use anomaly::{Checked, Fingerprinter, Verdict};
pub use clock::Clock;
use confirm::Confirmations;
pub use lifecycle::{Ending, Issued};
pub use refresh::RefreshFlights;

/// A verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub roles: Vec<String>,
    pub sid: String,
    /// When the access token that proved it expires (Unix seconds).
    pub exp: u64,
    /// The session's absolute end (Unix seconds): no refresh after it, and no WebSocket
    /// tunnel of the session stays open past it.
    pub session_end: u64,
    /// When the user last authenticated (Unix seconds; `0`: unknown, a token from before the
    /// claim): what `[[route]] max_auth_age` is judged by.
    pub auth_time: u64,
    /// What the session was bound to at login.
    pub fp: Fingerprint,
    /// The session's non-secret handle (derived from `sid`, computed once per token).
    pub handle: String,
}

/// Why an access token did not prove a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the session was revoked")]
    Revoked,
}

/// Why a refresh issued no tokens.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token refused: {0}")]
    Token(#[from] TokenError),
    #[error("the session was revoked")]
    Revoked,
    #[error("the request does not match the session's fingerprint")]
    Anomaly,
    #[error("a rotated-out refresh token was presented; the session is revoked")]
    Reused,
    #[error("the session was idle for longer than session.idle_timeout")]
    Idle,
    #[error("no such session (ended, revoked or past its absolute end)")]
    NotFound,
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
    #[error(transparent)]
    Mint(#[from] MintError),
}

impl RefreshError {
    /// Whether the client should keep its cookies and retry (`503`), rather than sign in again.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RefreshError::Store(_) | RefreshError::Mint(_) => true,
            RefreshError::Token(_)
            | RefreshError::Revoked
            | RefreshError::Anomaly
            | RefreshError::Reused
            | RefreshError::Idle
            | RefreshError::NotFound => false,
        }
    }
}

/// Why no session was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mint(#[from] MintError),
}

/// Why the session domain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("keys.assertion_key_file: {0}")]
    Assertion(String),
    #[error("{0}")]
    Oidc(String),
}

/// The session domain for one runtime.
pub struct Sessions {
    /// Distinguishes runtimes in per-thread caches (tests run several in one process).
    pub(crate) id: u64,
    pub(crate) cfg: SessionConfig,
    pub(crate) keys: KeyRing,
    pub(crate) cookies: CookieNames,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) revoked: Arc<RevocationSet>,
    pub(crate) fingerprints: Fingerprinter,
    /// Signs `X-Auth-Assertion` when `keys.assertion_key_file` is set.
    pub(crate) signer: Option<Signer>,
    pub(crate) audit: Audit,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: Clock,
    flights: Arc<RefreshFlights>,
    activity: Arc<Activity>,
    /// Sessions the store confirmed while the revocation feed was out of sync.
    confirmations: Confirmations,
    /// The identity providers (`login.mode = "oidc"`).
    pub(crate) oidc: Option<Arc<crate::oidc::Oidc>>,
}

impl Sessions {
    pub fn new(
        cfg: &Config,
        store: Arc<dyn SessionStore>,
        audit: Audit,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let signer = match &cfg.keys.assertion {
            Some(a) => Some(
                Signer::new(a, &cfg.server.public_origin.origin).map_err(BuildError::Assertion)?,
            ),
            None => None,
        };
        let oidc = crate::oidc::Oidc::new(cfg).map_err(BuildError::Oidc)?;
        Ok(Self {
            oidc: oidc.map(Arc::new),
            id: rand::random(),
            cfg: cfg.session.clone(),
            keys: KeyRing::from_config(cfg),
            cookies: CookieNames::new(&cfg.session).with_drop(
                cfg.login
                    .upstream
                    .as_ref()
                    .map(|u| u.drop_cookies.clone())
                    .unwrap_or_default(),
            ),
            store,
            revoked: Arc::new(
                RevocationSet::new().reporting(metrics.revocation_feed_synced.clone()),
            ),
            confirmations: Confirmations::default(),
            fingerprints: Fingerprinter::new(&cfg.keys.access_secrets, &cfg.anomaly),
            signer,
            audit,
            metrics,
            activity: Arc::new(Activity::new(&cfg.session)),
            flights: Arc::default(),
            clock,
        })
    }

    /// The session domain for a reloaded configuration: new settings, keys and fingerprint
    /// keys; the same store, revocation set, refreshes in flight, activity batcher, audit,
    /// metrics and clock — a reload ends no session and forgets no revocation. A new `id`: the
    /// per-thread verification caches never serve the old runtime's answers to the new one.
    pub fn reconfigured(&self, cfg: &Config) -> Result<Self, BuildError> {
        let mut next = Self::new(
            cfg,
            self.store.clone(),
            self.audit.clone(),
            self.metrics.clone(),
            self.clock.clone(),
        )?;
        next.revoked = self.revoked.clone();
        next.flights = self.flights.clone();
        next.activity = self.activity.clone();
        Ok(next)
    }

    /// Seconds a revocation must be remembered: as long as an access token can live.
    pub fn revocation_ttl(&self) -> u64 {
        self.cfg.access_ttl.as_secs() + 1
    }

    /// The non-secret handle of a session id (the same through a key rotation).
    pub fn handle(&self, sid: &str) -> String {
        crate::tokens::session_handle(sid)
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn revoked(&self) -> &RevocationSet {
        &self.revoked
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn cookies(&self) -> &CookieNames {
        &self.cookies
    }

    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    pub(crate) fn oidc(&self) -> Option<&Arc<crate::oidc::Oidc>> {
        self.oidc.as_ref()
    }

    /// Note that a session was used now (batched, never awaited).
    pub fn seen(&self, user: &str, sid: &str) {
        self.activity.seen(user, sid, self.clock.now());
    }

    /// The batching task of `last_seen` updates; runs until the runtime goes away.
    pub async fn run_activity(&self) {
        self.activity.run(self.store.as_ref()).await;
    }
}
