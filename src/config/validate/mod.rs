//! Validation: one function per section of `gateway.toml`, each recording every problem it
//! finds under its key; [`validate`] calls them in the file's order and fails with all of them
//! at once.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, ConfigError, ConfigErrors, LoadOptions, RawConfig, Source};

mod input;
mod keys;
mod login;
mod oidc;
mod policy;
mod rate_limit;
mod routes;
mod server;
mod session;
mod store;
mod tls_files;
mod upstreams;

pub use keys::secret_weakness;

/// The problems found so far (`.0`), in the order found, and the warnings (`.1`): what the
/// configuration allows but an operator must hear about (`csrf.mode = "off"`).
#[derive(Debug, Default)]
struct Errors(Vec<ConfigError>, Vec<ConfigError>);

impl Errors {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(key, message));
    }
    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.1.push(ConfigError::new(key, message));
    }
}

/// Validate a raw configuration. `source` supplies the environment variables and secret files
/// that `*_env`/`*_file` keys name; nothing else is read and nothing is written.
pub fn validate(
    raw: RawConfig,
    opts: LoadOptions,
    source: &dyn Source,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::default();
    let mut notes = Vec::new();
    let server = server::validate(&raw.server, &mut errs);
    let (upstreams, builtin_whoami) =
        upstreams::validate(&raw.upstream, opts.dev, source, &mut errs, &mut notes);
    let routes = routes::validate(&raw.route, &raw.upstream, builtin_whoami, &mut errs);
    let session = session::validate(&raw.session, &mut errs);
    let keys = keys::validate(&raw.keys, opts.dev, source, &mut errs, &mut notes);
    let store = store::validate(&raw.store, source, &mut errs);
    let login = login::validate(&raw.login, source, &mut errs);
    let (oidc, client_secrets) = oidc::validate(&raw.oidc, raw.login.mode, source, &mut errs);
    let anomaly = policy::anomaly(&raw.anomaly, &mut errs);
    let admin_token = policy::admin_token(&raw.admin, source, &mut errs);
    let url_tokens = policy::url_tokens(&raw.url_tokens, &mut errs);
    let identity = input::identity(&raw.identity, &mut errs);
    let paths = input::paths(&raw.paths);
    let csrf = policy::csrf(&raw.csrf, &mut errs);
    let rate_limit = rate_limit::validate(&raw.rate_limit, &raw.route, &mut errs);
    policy::log_level(&raw.log, &mut errs);
    let ui = ui(&raw.ui, &mut errs);
    if let Some(server) = &server {
        policy::admin_exposure(server, &raw.admin, &mut errs);
        passkeys_possible(server, &login, &mut errs);
    }
    if let Some(keys) = &keys {
        login::grant_secret_differs(&login, keys, &mut errs);
        oidc::client_secrets_differ(client_secrets, keys, &mut errs);
    }

    if !errs.0.is_empty() {
        return Err(ConfigErrors(errs.0));
    }
    // Each section yields its part whenever it found no problem.
    let (Some(server), Some(keys)) = (server, keys) else {
        return Err(ConfigErrors::one("gateway.toml", "invalid"));
    };
    Ok(Config {
        server,
        tls_cert: raw.tls.cert,
        tls_key: raw.tls.key,
        upstreams,
        routes,
        session,
        keys,
        store,
        login,
        oidc,
        url_tokens,
        identity,
        paths,
        csrf,
        anomaly,
        admin_token,
        audit_file: raw.audit.file,
        access_log: super::AccessLogConfig {
            enabled: raw.access_log.enabled,
            file: raw.access_log.file,
        },
        ui,
        log_level: raw.log.level,
        log_format: raw.log.format,
        builtin_whoami,
        dev_notes: notes,
        warnings: errs.1,
        rate_limit,
    })
}

/// Passkeys are bound to the public origin's host, which must be a domain name: with a users
/// file and an IP address there, the pages' passkey buttons could only fail.
fn passkeys_possible(server: &super::ServerConfig, login: &super::LoginConfig, errs: &mut Errors) {
    let ip_host = url::Url::parse(&server.public_origin.origin)
        .ok()
        .and_then(|u| u.host().map(|h| !matches!(h, url::Host::Domain(_))))
        .unwrap_or(false);
    if login.users_file.is_some() && ip_host {
        errs.warn(
            "server.public_origin",
            "passkeys need a domain name here (WebAuthn binds them to it, never to an IP address); users can sign in with passwords and codes only",
        );
    }
}

/// `[ui]`: the product name is shown on every page (escaped there), so it is plain text of a
/// reasonable length.
fn ui(raw: &super::raw::RawUi, errs: &mut Errors) -> super::UiConfig {
    let name = raw.product_name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        errs.add(
            "ui.product_name",
            "must be 1 to 64 characters of plain text, without control characters",
        );
    }
    super::UiConfig {
        product_name: name.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by several sections.

fn check_duration(errs: &mut Errors, key: &str, d: Duration) {
    if d < Duration::from_secs(1) {
        errs.add(key, "must be at least 1s");
    }
}

/// A listen address; `""` is "off" where `optional`.
fn parse_addr(errs: &mut Errors, key: &str, value: &str, optional: bool) -> Option<SocketAddr> {
    if optional && value.is_empty() {
        return None;
    }
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.add(
                key,
                format!("{value:?} is not an address like \"127.0.0.1:8443\""),
            );
            None
        }
    }
}

/// An `https://` origin, serialised as browsers send it in `Origin`.
fn parse_origin(errs: &mut Errors, key: &str, value: &str) -> Option<String> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {
            if u.path() != "/"
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
            {
                errs.add(key, format!("{value:?} must be an origin only, like \"https://sso.example.com\" (no path, query or user)"));
                return None;
            }
            Some(u.origin().ascii_serialization())
        }
        Ok(_) => {
            errs.add(
                key,
                format!("{value:?} must be an https:// origin; sessiongate serves HTTPS only"),
            );
            None
        }
        Err(e) => {
            errs.add(key, format!("{value:?} is not a URL: {e}"));
            None
        }
    }
}
