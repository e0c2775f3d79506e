//! `gateway.toml` → an immutable, validated [`Config`].
//!
//! Loading is two steps: TOML → the raw schema ([`raw`]: serde, `deny_unknown_fields`, the
//! defaults), then [`validate`] → [`Config`]. Every problem found is collected with the key path
//! it belongs to (`session.access_ttl`, `route[2].upstream`) so an operator fixes them all at
//! once.
//!
//! Validation is a function of the raw config and a [`Source`]: the environment variables and
//! secret files named by `*_env`/`*_file` keys, injected so that tests stay pure. It writes
//! nothing and looks at no other file: the checks that need the rest of the gateway (the TLS
//! pair, the users file, the assertion key) are `preflight`'s, and `run --dev` creates the
//! development files before it validates. Secret values are never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub mod oidc;
pub mod parse;
pub mod rate_limit;
pub mod raw;
mod validate;

pub use oidc::{OidcClientUris, OidcConfig, OidcProviderConfig};
pub use parse::Parsed;
pub use raw::RawConfig;
pub use validate::{secret_weakness, validate};

// ---------------------------------------------------------------------------------------------
// Errors.

/// One configuration problem, tied to the key that causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// A problem of `key`; control characters in either (a path or value quoted from the
    /// file, which a TOML string lets hold any) are escaped, so that it prints on one line.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: one_line(key.into()),
            message: one_line(message.into()),
        }
    }
}

/// `s` with its control characters escaped (`\u{1b}`, `\n`): a key, path or value quoted from
/// the file can neither break the `config error:` line in two nor send the terminal an escape
/// sequence.
fn one_line(s: String) -> String {
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// All problems of one configuration, one line each (`config error: <key>: <message>`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single problem.
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(key, message)])
    }
}

fn lines(errs: &[ConfigError]) -> String {
    errs.iter()
        .map(|e| format!("config error: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// The vocabulary shared by `gateway.toml` and the validated configuration.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Lax,
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    #[default]
    UsersFile,
    Upstream,
    /// OpenID Connect providers (`[[oidc.provider]]`), and the users file too when
    /// `login.users_file` is written.
    Oidc,
}

/// What to do when a session's request differs from the session's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyAction {
    /// Nothing.
    Ignore,
    /// An audit event; the request goes on.
    Log,
    /// This request must sign in again (the session stays valid where it came from).
    Reauth,
    /// The session is ended everywhere.
    Revoke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UrlTokenAction {
    #[default]
    Redirect,
    Strip,
    Reject,
}

/// Query parameters that carry credentials and are never accepted in a URL.
pub const DEFAULT_CREDENTIAL_PARAMS: &[&str] = &[
    "access_token",
    "refresh_token",
    "token",
    "id_token",
    "jwt",
    "session",
    "sid",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CsrfMode {
    #[default]
    Origin,
    /// Origin checks plus a double-submit token bound to the session.
    Token,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

/// A secret byte string; never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// A fresh random secret (32 bytes, base64url-encoded as its textual form).
    pub fn random() -> Self {
        Self(crate::util::random_token(32).into_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The gateway's public origin, e.g. `https://sso.example.com` or `https://localhost:8443`.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    /// `https://host[:port]`, exactly as browsers send it in `Origin`.
    pub origin: String,
}

/// `Strict-Transport-Security` on every HTTPS response (RFC 6797).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header's value: `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub redirect_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub public_origin: PublicOrigin,
    pub trusted_proxies: Vec<IpNet>,
    /// HTTPS connections from `trusted_proxies` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// `server.pid_file`: the running process's id, for `sessiongate reload`.
    pub pid_file: Option<std::path::PathBuf>,
    pub handshake_timeout: Duration,
    /// Also the deadline of the first request on a connection (HTTP/1.1 and HTTP/2), and the
    /// idle close of an HTTP/1.1 keep-alive connection.
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed (GOAWAY).
    pub http2_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Per client address (IPv6: per /64); trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// On each plain-HTTP listener.
    pub max_plain_connections: usize,
    /// Resolved: at least 1.
    pub workers: usize,
    pub hsts: Hsts,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// `scheme://authority`, no path.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without a trailing `/` (`""` for none).
    pub base_path: String,
    pub preserve_host: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// `https://` upstreams: how the gateway's TLS client trusts and authenticates to it.
    pub tls: Option<UpstreamTls>,
}

/// TLS to an `https://` upstream, its files read and checked by validation. Verification is
/// always on; SNI is sent whenever the name is a DNS name.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The certificates of `ca_file`; `None`: the system's store, loaded at start.
    pub roots: Option<Arc<rustls::RootCertStore>>,
    /// `client_cert` with `client_key`, checked to be a pair.
    pub client_auth: Option<Arc<rustls::sign::CertifiedKey>>,
    /// `server_name`: sent as SNI and verified, instead of the URL's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path_prefix: String,
    pub public: bool,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Who may use the route (`crate::policy`).
    pub policy: crate::policy::RoutePolicy,
}

/// Whether a route's `path_prefix` matches a normalised path: on segment boundaries (`/api`
/// matches `/api` and `/api/x`, not `/apiary`; `/static/` matches `/static` too).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if let Some(dir) = prefix.strip_suffix('/') {
        path.starts_with(prefix) || path == dir
    } else {
        path == prefix
            || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub idle_timeout: Duration,
    pub refresh_grace: Duration,
    pub same_site: SameSite,
    pub cookie_domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub assertion: Option<AssertionConfig>,
    /// Signs and verifies access tokens (and the keys derived from it: CSRF binding, session
    /// fingerprints).
    pub access_secrets: SecretRing,
    pub refresh_secrets: SecretRing,
}

/// One secret of a [`SecretRing`], with the key it was configured under
/// (`keys.access_secret_env[1]`), for messages that must say which one without showing it.
#[derive(Debug, Clone)]
pub struct RingSecret {
    pub key: String,
    pub secret: Secret,
}

/// A key ring: the first secret signs, every one verifies. Never empty (validation refuses an
/// empty list), by construction.
#[derive(Debug, Clone)]
pub struct SecretRing {
    signing: RingSecret,
    others: Vec<RingSecret>,
}

impl SecretRing {
    /// `None` for no secret at all.
    pub fn new(secrets: Vec<RingSecret>) -> Option<Self> {
        let mut it = secrets.into_iter();
        let signing = it.next()?;
        Some(Self {
            signing,
            others: it.collect(),
        })
    }

    /// A ring of one.
    pub fn single(key: &str, secret: Secret) -> Self {
        Self {
            signing: RingSecret {
                key: key.to_string(),
                secret,
            },
            others: Vec::new(),
        }
    }

    /// The secret that signs.
    pub fn signing(&self) -> &Secret {
        &self.signing.secret
    }

    /// Every secret, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = &RingSecret> {
        std::iter::once(&self.signing).chain(&self.others)
    }

    pub fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Never: a ring holds at least one secret.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The identity assertion signing keys (PKCS#8 PEM, Ed25519), read from their files; that they
/// are Ed25519 keys is checked by `preflight`.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub key_pem: Secret,
    pub previous_pem: Option<Secret>,
    pub audience: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct UrlTokensConfig {
    pub action: UrlTokenAction,
    /// Lower-case parameter names.
    pub params: Vec<String>,
}

/// `[identity]`.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Extra request headers to remove, lower-case; a trailing `*` makes a prefix.
    pub strip_headers: Vec<String>,
}

/// `[paths]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathsConfig {
    /// Forward double-encoded paths literally instead of refusing them.
    pub allow_double_encoding: bool,
}

#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub mode: CsrfMode,
    /// Exact origins (`https://app.example.com`) besides the public origin.
    pub allowed_origins: Vec<String>,
}

/// `[anomaly]`: what a change of network or user agent within a session does.
#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    pub ip_change: AnomalyAction,
    pub user_agent_change: AnomalyAction,
    /// IPv4 changes within this prefix length are not anomalies (1..=32).
    pub ipv4_prefix: u8,
    /// IPv6 changes within this prefix length are not anomalies (1..=128).
    pub ipv6_prefix: u8,
    /// More rotations of one session than `refresh_rate_max` within one `session.access_ttl`.
    pub refresh_rate: AnomalyAction,
    pub refresh_rate_max: u32,
}

impl Default for AnomalyConfig {
    /// The defaults of `[anomaly]` (valid by construction).
    fn default() -> Self {
        Self::from_raw(&raw::RawAnomaly::default())
    }
}

impl AnomalyConfig {
    /// The values of `raw`, unchecked: validation checks the prefixes first.
    fn from_raw(raw: &raw::RawAnomaly) -> Self {
        Self {
            ip_change: raw.ip_change,
            user_agent_change: raw.user_agent_change,
            ipv4_prefix: raw.ipv4_prefix,
            ipv6_prefix: raw.ipv6_prefix,
            refresh_rate: raw.refresh_rate,
            refresh_rate_max: raw.refresh_rate_max,
        }
    }
}

/// The session store.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Memory,
    Redis(RedisConfig),
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Single-node URL (password inserted from `password_env`); never logged.
    pub url: Option<Secret>,
    /// Cluster seed nodes.
    pub cluster_nodes: Vec<String>,
    pub password: Option<Secret>,
    /// ACL user name (`store.username`), in `url` already for one node.
    pub username: Option<String>,
    /// `store.ca_file`'s PEM text (checked to hold CA certificates), for `rediss://`.
    pub ca_pem: Option<Vec<u8>>,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub key_prefix: String,
}

/// Where the gateway's users come from.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub mode: LoginMode,
    /// `login.users_file` in `users_file` mode (default `users.toml`), `None` in `upstream`
    /// mode; in `oidc` mode `Some` only when `login.users_file` is written (the login page then
    /// offers both). Whether the file exists and parses is `preflight`'s question (in `--dev` a
    /// missing one leaves only the demo user).
    pub users_file: Option<PathBuf>,
    /// `upstream` mode settings.
    pub upstream: Option<UpstreamLogin>,
    /// Failures per account from one client network (/24, /64).
    pub max_failures_per_user: u32,
    /// Failures per account from every network: the backstop, at least `max_failures_per_user`.
    pub max_failures_per_user_total: u32,
    pub max_failures_per_ip: u32,
    pub failure_window: Duration,
    /// `login.require_second_factor`: users of the users file need a second factor.
    pub require_second_factor: bool,
    /// `login.second_factor_grace`: how long a user without one may still sign in with the
    /// password alone, from their first such sign-in (zero: not at all).
    pub second_factor_grace: Duration,
}

/// `[ui]`: what the gateway's pages show.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// `ui.product_name`: in every page's title and heading.
    pub product_name: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub path: String,
    pub page_path: String,
    /// Each one verifies a grant (the app signs them; the order does not matter).
    pub grant_secrets: SecretRing,
    /// Lower-case cookie names.
    pub drop_cookies: Vec<String>,
    pub logout_paths: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub session: SessionConfig,
    pub keys: KeysConfig,
    pub store: StoreConfig,
    pub login: LoginConfig,
    /// `[oidc]`: the providers of `login.mode = "oidc"` (none in another mode).
    pub oidc: OidcConfig,
    pub url_tokens: UrlTokensConfig,
    pub identity: IdentityConfig,
    pub paths: PathsConfig,
    pub csrf: CsrfConfig,
    pub anomaly: AnomalyConfig,
    /// Bearer token of the admin API; `None` disables it.
    pub admin_token: Option<Secret>,
    pub audit_file: Option<PathBuf>,
    /// `[access_log]`: one line per request, when on.
    pub access_log: AccessLogConfig,
    /// `[ui]`.
    pub ui: UiConfig,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `run --dev`: no upstream configured, so the built-in whoami page is upstream 0.
    pub builtin_whoami: bool,
    /// What `--dev` filled in on its own, to tell the operator at start.
    pub dev_notes: Vec<String>,
    /// What the configuration allows but an operator must hear about, said at every start and
    /// by `check-config` (`csrf.mode = "off"`).
    pub warnings: Vec<ConfigError>,
    /// `[rate_limit]` and the routes' own limits.
    pub rate_limit: rate_limit::RateLimitConfig,
}

/// `[access_log]`: whether each request is logged, and where (`None`: standard error, in the
/// log's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    pub file: Option<PathBuf>,
}

/// Name of the upstream that stands for the built-in whoami page in `--dev`.
pub const WHOAMI_UPSTREAM: &str = "whoami";

// ---------------------------------------------------------------------------------------------
// Loading.

/// How `load` may fill gaps.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// `--dev`: a missing config file, secrets or upstream are filled in (random per-process
    /// secrets, the built-in whoami page); a missing assertion key is left out.
    pub dev: bool,
}

/// What validation may read besides `gateway.toml`: environment variables (`*_env` keys) and
/// secret files (`*_file` keys). Injected, so that tests need no environment or files.
pub trait Source {
    /// The value of an environment variable, if set.
    fn env(&self, name: &str) -> Option<String>;
    /// The contents of a file named by a `*_file` key.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// The process environment and the file system (read only).
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Source for System {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// An environment alone, e.g. `|name| map.get(name).cloned()` in tests: every file is missing.
impl<F: Fn(&str) -> Option<String>> Source for F {
    fn env(&self, name: &str) -> Option<String> {
        self(name)
    }
    fn read(&self, _: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

/// Parse a TOML text into the raw schema: every problem, each naming its key.
pub fn parse(text: &str) -> Result<RawConfig, ConfigErrors> {
    parse::parse(text, "gateway.toml")?.into_result()
}

/// Read and parse `path` (in `--dev` a missing file is an empty one: every default). Relative
/// paths inside are resolved against the file's directory, not the current one: the same file
/// means the same files however the gateway is started (a service manager starts it in `/`).
/// The problems of keys that do not fit the schema are in [`Parsed::problems`], for
/// validation to report beside its own; a file that cannot be read or is not TOML is an error.
pub fn read(path: &Path, opts: LoadOptions) -> Result<Parsed, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if opts.dev && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (name the file with -c/--config FILE or SESSIONGATE_CONFIG)"
            } else {
                ""
            };
            return Err(ConfigErrors::one(
                "--config",
                format!("cannot read {}: {e}{hint}", path.display()),
            ));
        }
    };
    let mut parsed = parse::parse(&text, &path.display().to_string())?;
    parsed.raw.resolve_paths(base_dir(path));
    Ok(parsed)
}

/// The directory relative paths in the configuration file `path` are read from (`""` for a
/// file named without one: the current directory, and paths stay as written).
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Read, parse and validate `path` against the process environment (relative paths resolved
/// as [`read`] does). The files the configuration names are not opened:
/// `preflight::validate_and_check` does both.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    validate(read(path, opts)?.into_result()?, opts, &System)
}

#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
