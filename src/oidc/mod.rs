//! Sign-in with the organisation's identity providers (OpenID Connect 1.0): the
//! authorization-code flow with PKCE, back-channel logout, RP-initiated logout, and re-checks
//! with the provider at refresh time. The session that follows is the gateway's own: a new
//! session id, the gateway's tokens; the provider's tokens never leave the gateway (the ID token
//! and, with `oidc.recheck_interval`, the refresh token are kept sealed in the session record).
//!
//! - [`provider`]: discovery, keys, the code exchange and ID-token verification, userinfo, the
//!   refresh grant (`openidconnect` does the protocol and the cryptography).
//! - [`flow`]: the sealed, per-tab flow cookie.
//! - [`claims`]: provider claims → user id and roles; `allowed_domains`, `allowed_groups`.
//! - [`logout_token`]: Back-Channel Logout 1.0 token validation.
//! - [`http`]: the HTTP client to the providers.
//!
//! The endpoints are in `crate::auth::oidc`; the re-check in `crate::sessions`.

pub mod claims;
pub mod flow;
mod http;
pub mod logout_token;
pub mod provider;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, LoginMode};
use crate::seal::Sealer;

pub use provider::{Provider, Rechecked};

/// Why a sign-in through a provider did not happen. Each says what the user can do; none
/// carries a token or a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider's discovery document is not usable: {0}")]
    Discovery(String),
    #[error("the identity provider refused the code exchange: {0}")]
    ProviderRefused(String),
    #[error("the sign-in response is not valid: {0}")]
    Callback(&'static str),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
}

/// The providers of one runtime, and the sealer for what they hand us.
pub struct Oidc {
    providers: Vec<Arc<Provider>>,
    sealer: Sealer,
    recheck_interval: Option<Duration>,
    post_logout: String,
}

impl Oidc {
    /// `None` unless `login.mode = "oidc"`.
    pub fn new(cfg: &Config) -> Result<Option<Self>, String> {
        if cfg.login.mode != LoginMode::Oidc {
            return Ok(None);
        }
        let uris = cfg.server.public_origin.oidc_client_uris();
        let providers = cfg
            .oidc
            .providers
            .iter()
            .map(|p| Provider::new(p.clone(), &uris.redirect).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            providers,
            sealer: Sealer::new(&cfg.keys.refresh_secrets),
            recheck_interval: cfg.oidc.recheck_interval,
            post_logout: uris.post_logout_redirect,
        }))
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    pub fn by_issuer(&self, iss: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.cfg.issuer == iss)
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn recheck_interval(&self) -> Option<Duration> {
        self.recheck_interval
    }

    pub fn post_logout_uri(&self) -> &str {
        &self.post_logout
    }

    /// A provider token sealed for the session record, bound to the provider and subject.
    pub fn seal_token(&self, kind: &str, provider: &str, sub: &str, token: &str) -> Option<String> {
        self.sealer
            .seal(&format!("idp {kind}\0{provider}\0{sub}"), token.as_bytes())
    }

    pub fn open_token(
        &self,
        kind: &str,
        provider: &str,
        sub: &str,
        sealed: &str,
    ) -> Option<String> {
        let raw = self
            .sealer
            .open(&format!("idp {kind}\0{provider}\0{sub}"), sealed)?;
        String::from_utf8(raw).ok()
    }
}
