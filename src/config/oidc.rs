//! The validated `[oidc]` section: the OpenID Connect providers users may sign in with
//! (`login.mode = "oidc"`), and the URIs of the gateway that a provider's client registration
//! names. Validation is `validate::oidc`'s; the flows that use these are `crate::oidc`'s.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, PublicOrigin, Secret};

/// The redirect URI's path (the authorization response comes back here).
pub const OIDC_CALLBACK_PATH: &str = "/.auth/oidc/callback";
/// OpenID Connect Back-Channel Logout 1.0: where a provider posts its logout tokens.
pub const OIDC_BACKCHANNEL_LOGOUT_PATH: &str = "/.auth/oidc/backchannel-logout";
/// Where a provider sends the browser after RP-initiated logout (path and query).
pub const OIDC_POST_LOGOUT_PATH: &str = "/.auth/login?signed_out=1";

/// `[oidc]`. Empty (no provider, no re-check) unless `login.mode = "oidc"`.
#[derive(Debug, Clone, Default)]
pub struct OidcConfig {
    /// `oidc.recheck_interval`; `None`: the provider's refresh token is not kept.
    pub recheck_interval: Option<Duration>,
    pub providers: Vec<OidcProviderConfig>,
}

/// One `[[oidc.provider]]`, checked.
#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    /// `[a-z0-9][a-z0-9_-]{0,31}`, unique: `/.auth/oidc/start?provider=NAME`.
    pub name: String,
    /// The login button's text (`name` when not written).
    pub display_name: String,
    /// An `https://` URL without query, fragment or user, exactly as written: the discovery
    /// document's `issuer` and every ID token's `iss` must equal it.
    pub issuer: String,
    pub client_id: String,
    /// From `client_secret_env` or `client_secret_file` (one trailing newline removed); UTF-8,
    /// never empty.
    pub client_secret: Secret,
    /// Contains `openid`, each scope once.
    pub scopes: Vec<String>,
    /// The claim that becomes the gateway's user id (`sub` by default).
    pub user_claim: String,
    /// A claim holding a string or a list of strings: the user's roles.
    pub roles_claim: Option<String>,
    /// Lower-case domains; when not empty, the email's domain must be one of them.
    pub allowed_domains: Vec<String>,
    /// When not empty, one of the user's `roles_claim` values must be one of them.
    pub allowed_groups: Vec<String>,
    /// The CA certificates (PEM, checked to parse) that the provider's certificate must chain
    /// to, instead of the system's; resolved against the configuration file's directory.
    pub ca_file: Option<PathBuf>,
}

/// The gateway's URIs that a provider's client registration names, on the public origin
/// (always `https://`: validation refuses any other origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClientUris {
    /// `{public_origin}/.auth/oidc/callback`: the exact `redirect_uri`.
    pub redirect: String,
    /// `{public_origin}/.auth/oidc/backchannel-logout`.
    pub backchannel_logout: String,
    /// `{public_origin}/.auth/login?signed_out=1`: the `post_logout_redirect_uri`.
    pub post_logout_redirect: String,
}

impl PublicOrigin {
    /// The URIs to register at every OpenID provider.
    pub fn oidc_client_uris(&self) -> OidcClientUris {
        let at = |path: &str| format!("{}{path}", self.origin);
        OidcClientUris {
            redirect: at(OIDC_CALLBACK_PATH),
            backchannel_logout: at(OIDC_BACKCHANNEL_LOGOUT_PATH),
            post_logout_redirect: at(OIDC_POST_LOGOUT_PATH),
        }
    }
}

impl OidcConfig {
    /// What `check-config` tells the operator to register at each provider, one line per URI,
    /// under the provider's key (`oidc.provider[0]`). Not warnings: nothing is wrong.
    pub fn registration(&self, origin: &PublicOrigin) -> Vec<ConfigError> {
        let uris = origin.oidc_client_uris();
        let mut out = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = format!("oidc.provider[{i}]");
            let name = &p.name;
            for (what, uri) in [
                ("redirect URI (register it)", &uris.redirect),
                ("back-channel logout URI", &uris.backchannel_logout),
                ("post-logout redirect URI", &uris.post_logout_redirect),
            ] {
                out.push(ConfigError::new(&key, format!("{name:?} {what}: {uri}")));
            }
        }
        out
    }
}
