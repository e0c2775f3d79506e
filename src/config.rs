//! `gateway.toml`: the schema (serde, `deny_unknown_fields`), defaults, and validation.
//!
//! Loading is two steps: TOML → `Raw*` structs (a typo is an error that names the key), then
//! `validate` → an immutable [`Config`]. Every problem found is collected with the key path it
//! belongs to (`session.access_ttl`, `route[2].upstream`) so an operator fixes them all at once.
//! Secret values are read from the environment or files named by `*_env`/`*_file` keys and are
//! never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use serde::Deserialize;

/// One configuration problem, tied to the key that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems of one configuration, one line each.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------------------------
// Raw schema, as written in gateway.toml.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub upstream: Vec<RawUpstream>,
    pub route: Vec<RawRoute>,
    pub session: RawSession,
    pub keys: RawKeys,
    pub store: RawStore,
    pub login: RawLogin,
    pub url_tokens: RawUrlTokens,
    pub csrf: RawCsrf,
    pub anomaly: RawAnomaly,
    pub admin: RawAdmin,
    pub audit: RawAudit,
    pub log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    /// Plain-HTTP listener that only redirects to HTTPS; `""` turns it off.
    pub redirect_listen: String,
    /// Admin listener (health, readiness, metrics); `""` turns it off.
    pub admin_listen: String,
    pub public_origin: String,
    pub trusted_proxies: Vec<IpNet>,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Serving threads, each with its own runtime and listener (`SO_REUSEPORT`); 0 = one per
    /// CPU core.
    pub workers: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            redirect_listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            public_origin: "https://localhost:8443".into(),
            trusted_proxies: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections: 25_000,
            workers: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert: "certs/localhost.pem".into(),
            key: "certs/localhost-key.pem".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub url: String,
    #[serde(default = "yes")]
    pub preserve_host: bool,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path_prefix: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub upstream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_grace: Duration,
    pub same_site: SameSite,
    pub cookie_domain: Option<String>,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            refresh_grace: Duration::from_secs(10),
            same_site: SameSite::Lax,
            cookie_domain: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Lax,
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    HS256,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeys {
    pub algorithm: Algorithm,
    pub access_secret_env: Option<String>,
    pub access_secret_file: Option<PathBuf>,
    pub refresh_secret_env: Option<String>,
    pub refresh_secret_file: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM) that signs `X-Auth-Assertion`.
    pub assertion_key_file: Option<PathBuf>,
    /// The key it replaced, still published at `/.auth/jwks.json`.
    pub assertion_previous_key_file: Option<PathBuf>,
    pub assertion_audience: String,
    #[serde(with = "humantime_serde")]
    pub assertion_ttl: Duration,
}

impl Default for RawKeys {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            access_secret_env: Some("SESSIONGATE_ACCESS_SECRET".into()),
            access_secret_file: None,
            refresh_secret_env: Some("SESSIONGATE_REFRESH_SECRET".into()),
            refresh_secret_file: None,
            assertion_key_file: None,
            assertion_previous_key_file: None,
            assertion_audience: "upstream".into(),
            assertion_ttl: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub kind: StoreKind,
    /// `redis://host:port/db` or `rediss://…` (TLS); no password in it.
    pub url: Option<String>,
    /// Redis Cluster seed nodes (`redis://host:port`), instead of `url`.
    pub cluster_nodes: Vec<String>,
    /// Environment variable holding the Redis password (AUTH).
    pub password_env: Option<String>,
    pub pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prefix of every key and of the revocation channel.
    pub key_prefix: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            url: None,
            cluster_nodes: Vec::new(),
            password_env: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            key_prefix: "sg".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    #[default]
    UsersFile,
    Upstream,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogin {
    pub mode: LoginMode,
    pub users_file: PathBuf,
    /// `upstream` mode: the app's login path whose response may carry a grant.
    pub upstream_path: Option<String>,
    /// `upstream` mode: where navigations without a session are sent (default `upstream_path`).
    pub page_path: Option<String>,
    /// `upstream` mode: environment variable with the grant's HMAC secret.
    pub grant_secret_env: Option<String>,
    /// `upstream` mode: the app's own session cookies, removed from its responses and requests.
    pub drop_cookies: Vec<String>,
    /// `upstream` mode: app paths that also end the gateway session.
    pub logout_paths: Vec<String>,
    /// Failed logins per account within `failure_window` before `429`.
    pub max_failures_per_user: u32,
    /// Failed logins per client IP within `failure_window` before `429`.
    pub max_failures_per_ip: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            mode: LoginMode::UsersFile,
            users_file: "users.toml".into(),
            upstream_path: None,
            page_path: None,
            grant_secret_env: None,
            drop_cookies: Vec::new(),
            logout_paths: Vec::new(),
            max_failures_per_user: 5,
            max_failures_per_ip: 20,
            failure_window: Duration::from_secs(15 * 60),
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAnomaly {
    pub ip_change: AnomalyAction,
    pub user_agent_change: AnomalyAction,
    /// IPv4 changes within this prefix length are not anomalies.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for RawAnomaly {
    fn default() -> Self {
        Self {
            ip_change: AnomalyAction::Log,
            user_agent_change: AnomalyAction::Revoke,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Environment variable holding the admin API bearer token.
    pub token_env: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUrlTokens {
    pub action: UrlTokenAction,
    /// Extra parameter names, added to the built-in list.
    pub params: Vec<String>,
}

impl Default for RawUrlTokens {
    fn default() -> Self {
        Self {
            action: UrlTokenAction::Redirect,
            params: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CsrfMode {
    #[default]
    Origin,
    /// Origin checks plus a double-submit token bound to the session.
    Token,
    Off,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCsrf {
    pub mode: CsrfMode,
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// JSON-lines file for audit events; standard output when unset.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
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

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The gateway's public origin, e.g. `https://sso.example.com` or `https://localhost:8443`.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    /// `https://host[:port]`, exactly as browsers send it in `Origin`.
    pub origin: String,
    /// `host[:port]`, for building absolute URLs.
    pub authority: String,
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub redirect_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub public_origin: PublicOrigin,
    pub trusted_proxies: Vec<IpNet>,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Resolved: at least 1.
    pub workers: usize,
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
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path_prefix: String,
    pub public: bool,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
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
    pub algorithm: Algorithm,
    pub access_secret: Secret,
    pub refresh_secret: Secret,
}

#[derive(Debug, Clone)]
pub struct UrlTokensConfig {
    pub action: UrlTokenAction,
    /// Lower-case parameter names.
    pub params: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub mode: CsrfMode,
    /// Exact origins (`https://app.example.com`) besides the public origin.
    pub allowed_origins: Vec<String>,
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
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub key_prefix: String,
}

fn validate_store(
    s: &RawStore,
    errs: &mut Vec<ConfigError>,
    env: &dyn Fn(&str) -> Option<String>,
) -> StoreConfig {
    if s.kind == StoreKind::Memory {
        for (set, key) in [
            (s.url.is_some(), "store.url"),
            (!s.cluster_nodes.is_empty(), "store.cluster_nodes"),
            (s.password_env.is_some(), "store.password_env"),
        ] {
            if set {
                errs.push(ConfigError::new(
                    key,
                    "only applies to store.kind = \"redis\"",
                ));
            }
        }
        return StoreConfig::Memory;
    }
    let check_url = |errs: &mut Vec<ConfigError>, key: &str, u: &str| -> Option<url::Url> {
        match url::Url::parse(u) {
            Ok(p)
                if (p.scheme() == "redis" || p.scheme() == "rediss") && p.host_str().is_some() =>
            {
                if p.password().is_some() {
                    errs.push(ConfigError::new(key, "must not contain a password; name its environment variable in store.password_env"));
                    return None;
                }
                Some(p)
            }
            _ => {
                errs.push(ConfigError::new(key, "must be a redis:// or rediss:// URL with a host, like \"redis://127.0.0.1:6379/0\""));
                None
            }
        }
    };
    let password = match &s.password_env {
        None => None,
        Some(name) => match env(name) {
            Some(p) if !p.is_empty() => Some(p),
            _ => {
                errs.push(ConfigError::new(
                    "store.password_env",
                    format!("names environment variable {name}, which is not set"),
                ));
                None
            }
        },
    };
    let mut url = None;
    match (&s.url, s.cluster_nodes.is_empty()) {
        (Some(_), false) => errs.push(ConfigError::new(
            "store.cluster_nodes",
            "set either store.url (one node) or store.cluster_nodes, not both",
        )),
        (None, true) => errs.push(ConfigError::new(
            "store.url",
            "store.kind = \"redis\" needs store.url (or store.cluster_nodes)",
        )),
        (Some(u), true) => {
            if let Some(mut p) = check_url(errs, "store.url", u) {
                if let Some(pw) = &password {
                    let _ = p.set_password(Some(pw));
                }
                url = Some(Secret::new(p.to_string().into_bytes()));
            }
        }
        (None, false) => {
            for (i, n) in s.cluster_nodes.iter().enumerate() {
                check_url(errs, &format!("store.cluster_nodes[{i}]"), n);
            }
        }
    }
    if s.pool_size == 0 || s.pool_size > 1024 {
        errs.push(ConfigError::new(
            "store.pool_size",
            "must be between 1 and 1024",
        ));
    }
    if s.connect_timeout < Duration::from_millis(50) || s.connect_timeout > Duration::from_secs(30)
    {
        errs.push(ConfigError::new(
            "store.connect_timeout",
            "must be between 50ms and 30s",
        ));
    }
    if s.command_timeout < Duration::from_millis(50) || s.command_timeout > Duration::from_secs(30)
    {
        errs.push(ConfigError::new(
            "store.command_timeout",
            "must be between 50ms and 30s",
        ));
    }
    if s.key_prefix.is_empty()
        || !s
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
    {
        errs.push(ConfigError::new(
            "store.key_prefix",
            "must be non-empty letters, digits, '_', '-' or ':'",
        ));
    }
    StoreConfig::Redis(RedisConfig {
        url,
        cluster_nodes: s.cluster_nodes.clone(),
        password: password.map(|p| Secret::new(p.into_bytes())),
        pool_size: s.pool_size,
        connect_timeout: s.connect_timeout,
        command_timeout: s.command_timeout,
        key_prefix: s.key_prefix.clone(),
    })
}

/// Where the gateway's users come from.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub mode: LoginMode,
    /// `None` in `--dev` when the file does not exist: only the demo user can log in.
    pub users_file: Option<PathBuf>,
    /// `upstream` mode settings.
    pub upstream: Option<UpstreamLogin>,
    pub max_failures_per_user: u32,
    pub max_failures_per_ip: u32,
    pub failure_window: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub path: String,
    pub page_path: String,
    pub grant_secret: Secret,
    /// Lower-case cookie names.
    pub drop_cookies: Vec<String>,
    pub logout_paths: Vec<String>,
}

/// The identity assertion signing keys (PKCS#8 PEM, Ed25519).
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub key_pem: Secret,
    pub previous_pem: Option<Secret>,
    pub audience: String,
    pub ttl: Duration,
}

fn read_pem(path: &Path, key: &str, errs: &mut Vec<ConfigError>) -> Option<Secret> {
    match std::fs::read(path) {
        Ok(b) => {
            if crate::assertion::Signer::check_pem(&b).is_err() {
                errs.push(ConfigError::new(
                    key,
                    format!(
                        "{} is not an Ed25519 PKCS#8 PEM private key",
                        path.display()
                    ),
                ));
                None
            } else {
                Some(Secret::new(b))
            }
        }
        Err(e) => {
            errs.push(ConfigError::new(
                key,
                format!("cannot read {}: {e}", path.display()),
            ));
            None
        }
    }
}

fn validate_assertion(
    k: &RawKeys,
    opts: LoadOptions,
    errs: &mut Vec<ConfigError>,
    notes: &mut Vec<String>,
) -> Option<AssertionConfig> {
    if k.assertion_ttl < Duration::from_secs(10) || k.assertion_ttl > Duration::from_secs(300) {
        errs.push(ConfigError::new(
            "keys.assertion_ttl",
            "must be between 10s and 5m",
        ));
    }
    if k.assertion_audience.is_empty() {
        errs.push(ConfigError::new(
            "keys.assertion_audience",
            "must not be empty",
        ));
    }
    let path = k.assertion_key_file.as_ref()?;
    if opts.dev && !path.exists() && !opts.create_missing {
        return None;
    }
    if opts.dev && !path.exists() {
        match crate::dev::write_new_key(path) {
            Ok(()) => notes.push(format!(
                "keys.assertion_key_file: created a new Ed25519 key at {}",
                path.display()
            )),
            Err(e) => errs.push(ConfigError::new("keys.assertion_key_file", e.to_string())),
        }
    }
    let key_pem = read_pem(path, "keys.assertion_key_file", errs)?;
    let previous_pem = match &k.assertion_previous_key_file {
        Some(p) => Some(read_pem(p, "keys.assertion_previous_key_file", errs)?),
        None => None,
    };
    Some(AssertionConfig {
        key_pem,
        previous_pem,
        audience: k.assertion_audience.clone(),
        ttl: k.assertion_ttl,
    })
}

fn normal_path_key(errs: &mut Vec<ConfigError>, key: &str, p: &str) -> bool {
    let ok = p.starts_with('/')
        && crate::web::path::normalise(p).is_ok_and(|n| n == p)
        && !crate::web::path::is_gateway_path(p);
    if !ok {
        errs.push(ConfigError::new(
            key,
            format!("{p:?} must be a normalised path outside /.auth/"),
        ));
    }
    ok
}

fn validate_login(
    l: &RawLogin,
    users_file: Option<PathBuf>,
    errs: &mut Vec<ConfigError>,
    env: &dyn Fn(&str) -> Option<String>,
) -> LoginConfig {
    if l.max_failures_per_user == 0 {
        errs.push(ConfigError::new(
            "login.max_failures_per_user",
            "must be at least 1",
        ));
    }
    if l.max_failures_per_ip == 0 {
        errs.push(ConfigError::new(
            "login.max_failures_per_ip",
            "must be at least 1",
        ));
    }
    check_duration(errs, "login.failure_window", l.failure_window);
    let upstream = if l.mode == LoginMode::Upstream {
        let path = match &l.upstream_path {
            Some(p) => normal_path_key(errs, "login.upstream_path", p).then(|| p.clone()),
            None => {
                errs.push(ConfigError::new(
                    "login.upstream_path",
                    "login.mode = \"upstream\" needs the app's login path",
                ));
                None
            }
        };
        let page = match &l.page_path {
            Some(p) => normal_path_key(errs, "login.page_path", p).then(|| p.clone()),
            None => path.clone(),
        };
        for (i, p) in l.logout_paths.iter().enumerate() {
            normal_path_key(errs, &format!("login.logout_paths[{i}]"), p);
        }
        let secret = match &l.grant_secret_env {
            Some(name) => match env(name).map(String::into_bytes) {
                Some(b) => match secret_weakness(&b) {
                    None => Some(Secret::new(b)),
                    Some(why) => {
                        errs.push(ConfigError::new("login.grant_secret_env", why));
                        None
                    }
                },
                None => {
                    errs.push(ConfigError::new(
                        "login.grant_secret_env",
                        format!("names environment variable {name}, which is not set"),
                    ));
                    None
                }
            },
            None => {
                errs.push(ConfigError::new(
                    "login.grant_secret_env",
                    "login.mode = \"upstream\" needs the grant's secret",
                ));
                None
            }
        };
        match (path, page, secret) {
            (Some(path), Some(page_path), Some(grant_secret)) => Some(UpstreamLogin {
                path,
                page_path,
                grant_secret,
                drop_cookies: l
                    .drop_cookies
                    .iter()
                    .map(|c| c.to_ascii_lowercase())
                    .collect(),
                logout_paths: l.logout_paths.clone(),
            }),
            _ => None,
        }
    } else {
        for (set, key) in [
            (l.upstream_path.is_some(), "login.upstream_path"),
            (l.page_path.is_some(), "login.page_path"),
            (l.grant_secret_env.is_some(), "login.grant_secret_env"),
            (!l.drop_cookies.is_empty(), "login.drop_cookies"),
            (!l.logout_paths.is_empty(), "login.logout_paths"),
        ] {
            if set {
                errs.push(ConfigError::new(
                    key,
                    "only applies to login.mode = \"upstream\"",
                ));
            }
        }
        None
    };
    LoginConfig {
        mode: l.mode,
        users_file,
        upstream,
        max_failures_per_user: l.max_failures_per_user,
        max_failures_per_ip: l.max_failures_per_ip,
        failure_window: l.failure_window,
    }
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
    pub url_tokens: UrlTokensConfig,
    pub csrf: CsrfConfig,
    pub anomaly: RawAnomaly,
    /// Bearer token of the admin API; `None` disables it.
    pub admin_token: Option<Secret>,
    pub audit_file: Option<PathBuf>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `run --dev`: no upstream configured, so the built-in whoami page is upstream 0.
    pub builtin_whoami: bool,
    /// What `--dev` filled in on its own, to tell the operator at start.
    pub dev_notes: Vec<String>,
}

/// How `load` may fill gaps.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// `run --dev`: create a certificate, random secrets, built-in upstream where missing.
    pub dev: bool,
    /// Create missing development files (the assertion key); `check-config` only looks.
    pub create_missing: bool,
}

/// Name of the upstream that stands for the built-in whoami page in `--dev`.
pub const WHOAMI_UPSTREAM: &str = "whoami";

/// Parse a TOML text into the raw schema; errors name the key.
pub fn parse(text: &str) -> Result<RawConfig, ConfigErrors> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "gateway.toml",
            one_line(&e.to_string()),
        )])
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            "gateway.toml".to_string()
        } else {
            path
        };
        ConfigErrors(vec![ConfigError::new(
            key,
            one_line(&e.inner().to_string()),
        )])
    })
}

fn one_line(s: &str) -> String {
    // toml's messages carry a source excerpt over several lines; keep the message itself.
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let msg = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with('|') && !l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .copied()
        .unwrap_or(s);
    let at = lines
        .first()
        .filter(|l| l.starts_with("TOML parse error"))
        .copied();
    match at {
        Some(at) if *at != *msg => {
            format!("{msg} ({})", at.trim_start_matches("TOML parse error "))
        }
        _ => msg.to_string(),
    }
}

/// Read, parse and validate `path`. Relative paths inside are resolved against the current
/// directory, as operators expect from a file they run next to.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if opts.dev && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ConfigErrors(vec![ConfigError::new(
                "--config",
                format!("cannot read {}: {e}", path.display()),
            )]));
        }
    };
    let raw = parse(&text)?;
    validate(raw, opts, &|name| std::env::var(name).ok())
}

/// Placeholder fragments that mark a secret copied from documentation.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "placeholder",
    "your-secret",
    "your_secret",
    "yoursecret",
    "example",
    "insecure",
    "notsecret",
    "not-secret",
    "secretsecret",
    "password",
];

/// Why a secret is unacceptable, if it is.
pub fn secret_weakness(secret: &[u8]) -> Option<String> {
    if secret.len() < 32 {
        return Some(format!(
            "the secret is {} bytes; at least 32 are required (make one with `sessiongate gen-secret`)",
            secret.len()
        ));
    }
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(**p)) {
        return Some(format!(
            "the secret contains the placeholder text {p:?}; make a real one with `sessiongate gen-secret`"
        ));
    }
    let mut distinct = [false; 256];
    secret.iter().for_each(|b| distinct[*b as usize] = true);
    if distinct.iter().filter(|d| **d).count() < 8 {
        return Some(
            "the secret has fewer than 8 distinct characters; make one with `sessiongate gen-secret`"
                .into(),
        );
    }
    None
}

fn parse_addr(
    errs: &mut Vec<ConfigError>,
    key: &str,
    value: &str,
    optional: bool,
) -> Option<SocketAddr> {
    if optional && value.is_empty() {
        return None;
    }
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(ConfigError::new(
                key,
                format!("{value:?} is not an address like \"127.0.0.1:8443\""),
            ));
            None
        }
    }
}

fn parse_origin(errs: &mut Vec<ConfigError>, key: &str, value: &str) -> Option<String> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {
            if u.path() != "/"
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
            {
                errs.push(ConfigError::new(key, format!("{value:?} must be an origin only, like \"https://sso.example.com\" (no path, query or user)")));
                return None;
            }
            Some(u.origin().ascii_serialization())
        }
        Ok(_) => {
            errs.push(ConfigError::new(
                key,
                format!("{value:?} must be an https:// origin; sessiongate serves HTTPS only"),
            ));
            None
        }
        Err(e) => {
            errs.push(ConfigError::new(
                key,
                format!("{value:?} is not a URL: {e}"),
            ));
            None
        }
    }
}

fn check_duration(errs: &mut Vec<ConfigError>, key: &str, d: Duration) {
    if d < Duration::from_secs(1) {
        errs.push(ConfigError::new(key, "must be at least 1s"));
    }
}

/// Validate a raw configuration. `env` reads an environment variable (injected for tests).
pub fn validate(
    raw: RawConfig,
    opts: LoadOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Vec::new();
    let mut dev_notes = Vec::new();

    // [server]
    let s = &raw.server;
    let listen = parse_addr(&mut errs, "server.listen", &s.listen, false);
    let redirect_listen = parse_addr(
        &mut errs,
        "server.redirect_listen",
        &s.redirect_listen,
        true,
    );
    let admin_listen = parse_addr(&mut errs, "server.admin_listen", &s.admin_listen, true);
    let origin = parse_origin(&mut errs, "server.public_origin", &s.public_origin);
    for (key, d) in [
        ("server.handshake_timeout", s.handshake_timeout),
        ("server.header_read_timeout", s.header_read_timeout),
    ] {
        check_duration(&mut errs, key, d);
    }
    if s.max_header_bytes < 8192 || s.max_header_bytes > 1024 * 1024 {
        errs.push(ConfigError::new(
            "server.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    if s.workers > 1024 {
        errs.push(ConfigError::new(
            "server.workers",
            "must be at most 1024 (0: one per CPU core)",
        ));
    }
    if s.max_connections == 0 {
        errs.push(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }

    // [tls]
    let mut tls_ok = true;
    for (key, p) in [("tls.cert", &raw.tls.cert), ("tls.key", &raw.tls.key)] {
        if opts.dev && !p.exists() {
            continue; // `run --dev` creates a localhost certificate
        }
        if let Err(e) = std::fs::File::open(p) {
            tls_ok = false;
            errs.push(ConfigError::new(
                key,
                format!("cannot read {}: {e}", p.display()),
            ));
        }
    }
    if tls_ok && raw.tls.cert.exists() && raw.tls.key.exists() {
        if let Err(e) = crate::server::tls::load_server_config(&raw.tls.cert, &raw.tls.key) {
            errs.push(ConfigError::new(e.key(), e.to_string()));
        }
    }

    // [[upstream]]
    let mut upstreams = Vec::new();
    for (i, u) in raw.upstream.iter().enumerate() {
        let key = |k: &str| format!("upstream[{i}].{k}");
        if u.name.is_empty()
            || !u
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(ConfigError::new(
                key("name"),
                "must be non-empty letters, digits, '-' or '_'",
            ));
        }
        if raw.upstream[..i].iter().any(|o| o.name == u.name) {
            errs.push(ConfigError::new(
                key("name"),
                format!("{:?} is defined twice", u.name),
            ));
        }
        check_duration(&mut errs, &key("connect_timeout"), u.connect_timeout);
        check_duration(&mut errs, &key("timeout"), u.timeout);
        match u.url.parse::<Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                if uri.query().is_some() {
                    errs.push(ConfigError::new(key("url"), "must not have a query"));
                }
                let base = uri.path().trim_end_matches('/').to_string();
                upstreams.push(UpstreamConfig {
                    name: u.name.clone(),
                    scheme: http::uri::Scheme::HTTP,
                    authority: uri
                        .authority()
                        .cloned()
                        .unwrap_or_else(|| http::uri::Authority::from_static("invalid")),
                    base_path: base,
                    preserve_host: u.preserve_host,
                    connect_timeout: u.connect_timeout,
                    timeout: u.timeout,
                });
            }
            Ok(_) => errs.push(ConfigError::new(
                key("url"),
                format!(
                    "{:?} must be an http:// URL with a host, like \"http://127.0.0.1:3000\"",
                    u.url
                ),
            )),
            Err(e) => errs.push(ConfigError::new(
                key("url"),
                format!("{:?} is not a URL: {e}", u.url),
            )),
        }
    }
    let mut builtin_whoami = false;
    if raw.upstream.is_empty() {
        if opts.dev {
            builtin_whoami = true;
            dev_notes
                .push("no [[upstream]] configured: proxying to the built-in whoami page".into());
        } else {
            errs.push(ConfigError::new(
                "upstream",
                "at least one [[upstream]] is required (name, url); `run --dev` uses a built-in whoami page instead",
            ));
        }
    }

    // [[route]]
    let mut routes = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        let p = &r.path_prefix;
        if !p.starts_with('/')
            || p.contains(['?', '#', '%', '\\'])
            || p.contains("//")
            || p.split('/').any(|s| s == "." || s == "..")
        {
            errs.push(ConfigError::new(key("path_prefix"), format!("{p:?} must be a normalised path starting with '/' (no '?', '#', '%', '\\\\', '//' or dot segments)")));
        }
        if p.starts_with("/.auth/") || p == "/.auth" {
            errs.push(ConfigError::new(
                key("path_prefix"),
                "/.auth/ belongs to the gateway's own endpoints",
            ));
        }
        if raw.route[..i].iter().any(|o| o.path_prefix == *p) {
            errs.push(ConfigError::new(
                key("path_prefix"),
                format!("{p:?} is routed twice"),
            ));
        }
        let upstream = match &r.upstream {
            None => Some(0),
            Some(name) => {
                let found = if builtin_whoami && name == WHOAMI_UPSTREAM {
                    Some(0)
                } else {
                    raw.upstream.iter().position(|u| &u.name == name)
                };
                if found.is_none() {
                    let known: Vec<&str> = raw.upstream.iter().map(|u| u.name.as_str()).collect();
                    errs.push(ConfigError::new(
                        key("upstream"),
                        format!("names unknown upstream {name:?} (defined: {known:?})"),
                    ));
                }
                found
            }
        };
        if let Some(upstream) = upstream {
            routes.push(RouteConfig {
                path_prefix: p.clone(),
                public: r.public,
                upstream,
            });
        }
    }

    // [session]
    let ss = &raw.session;
    for (key, d) in [
        ("session.access_ttl", ss.access_ttl),
        ("session.refresh_ttl", ss.refresh_ttl),
        ("session.idle_timeout", ss.idle_timeout),
        ("session.refresh_grace", ss.refresh_grace),
    ] {
        check_duration(&mut errs, key, d);
    }
    if ss.access_ttl >= ss.refresh_ttl {
        errs.push(ConfigError::new(
            "session.access_ttl",
            format!(
                "({}) must be below session.refresh_ttl ({})",
                humantime::format_duration(ss.access_ttl),
                humantime::format_duration(ss.refresh_ttl)
            ),
        ));
    }
    if ss.refresh_grace > Duration::from_secs(120) {
        errs.push(ConfigError::new(
            "session.refresh_grace",
            "must be at most 2m: a longer window lets a stolen refresh token be replayed",
        ));
    }
    if let Some(d) = &ss.cookie_domain {
        if d.is_empty() || d.starts_with('.') || d.contains([';', ',', ' ', '/']) {
            errs.push(ConfigError::new(
                "session.cookie_domain",
                format!("{d:?} is not a host name browsers accept"),
            ));
        }
    }

    // [keys]
    let mut read_secret = |env_key: &str,
                           env_name: &Option<String>,
                           file_key: &str,
                           file: &Option<PathBuf>|
     -> Option<Secret> {
        let value = match (env_name, file) {
            (Some(_), Some(_)) => {
                errs.push(ConfigError::new(
                    file_key,
                    format!("set either {env_key} or {file_key}, not both"),
                ));
                return None;
            }
            (_, Some(path)) => match std::fs::read(path) {
                Ok(mut b) => {
                    while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
                        b.pop();
                    }
                    Some((file_key, b))
                }
                Err(e) => {
                    errs.push(ConfigError::new(
                        file_key,
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    return None;
                }
            },
            (Some(name), None) => env(name).map(|v| (env_key, v.into_bytes())),
            (None, None) => None,
        };
        match value {
            Some((key, bytes)) => {
                if let Some(why) = secret_weakness(&bytes) {
                    errs.push(ConfigError::new(key, why));
                    None
                } else {
                    Some(Secret::new(bytes))
                }
            }
            None if opts.dev => {
                dev_notes.push(format!("{env_key}: not set, using a random per-process secret (sessions end at restart)"));
                Some(Secret::random())
            }
            None => {
                let what = env_name.as_deref().map_or_else(
                    || "is not set".to_string(),
                    |n| format!("names environment variable {n}, which is not set (make a secret with `sessiongate gen-secret`)"),
                );
                errs.push(ConfigError::new(env_key, what));
                None
            }
        }
    };
    let k = &raw.keys;
    let access = read_secret(
        "keys.access_secret_env",
        &k.access_secret_env,
        "keys.access_secret_file",
        &k.access_secret_file,
    );
    let refresh = read_secret(
        "keys.refresh_secret_env",
        &k.refresh_secret_env,
        "keys.refresh_secret_file",
        &k.refresh_secret_file,
    );
    if let (Some(a), Some(r)) = (&access, &refresh) {
        if subtle::ConstantTimeEq::ct_eq(a.expose(), r.expose()).into() {
            errs.push(ConfigError::new("keys.refresh_secret_env", "must differ from the access secret: a refresh token must never verify as an access token"));
        }
    }
    let assertion = validate_assertion(k, opts, &mut errs, &mut dev_notes);

    // [store]
    let store = validate_store(&raw.store, &mut errs, env);

    // [login]
    let users_file = match raw.login.mode {
        LoginMode::UsersFile => {
            let p = &raw.login.users_file;
            if p.exists() {
                if let Err(e) = crate::auth::users::Users::load(p) {
                    errs.push(ConfigError::new("login.users_file", e));
                }
                Some(p.clone())
            } else if opts.dev {
                dev_notes.push(format!(
                    "login.users_file: {} not found, only the demo user can log in",
                    p.display()
                ));
                None
            } else {
                errs.push(ConfigError::new(
                    "login.users_file",
                    format!(
                        "cannot read {}: not found (create users with `sessiongate hash-password`)",
                        p.display()
                    ),
                ));
                None
            }
        }
        LoginMode::Upstream => None,
    };

    let login = validate_login(&raw.login, users_file, &mut errs, env);

    // [anomaly]
    let an = &raw.anomaly;
    if an.ipv4_prefix == 0 || an.ipv4_prefix > 32 {
        errs.push(ConfigError::new(
            "anomaly.ipv4_prefix",
            "must be between 1 and 32",
        ));
    }
    if an.ipv6_prefix == 0 || an.ipv6_prefix > 128 {
        errs.push(ConfigError::new(
            "anomaly.ipv6_prefix",
            "must be between 1 and 128",
        ));
    }

    // [admin]
    let admin_token = match &raw.admin.token_env {
        None => None,
        Some(name) => match env(name) {
            Some(t) if t.len() >= 32 => Some(Secret::new(t.into_bytes())),
            Some(_) => {
                errs.push(ConfigError::new("admin.token_env", format!("{name} must hold at least 32 bytes (make one with `sessiongate gen-secret`)")));
                None
            }
            None => {
                errs.push(ConfigError::new(
                    "admin.token_env",
                    format!("names environment variable {name}, which is not set"),
                ));
                None
            }
        },
    };

    // [url_tokens]
    let mut params: Vec<String> = DEFAULT_CREDENTIAL_PARAMS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (i, p) in raw.url_tokens.params.iter().enumerate() {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            errs.push(ConfigError::new(
                format!("url_tokens.params[{i}]"),
                format!("{p:?} is not a parameter name"),
            ));
        } else if !params.contains(&p.to_ascii_lowercase()) {
            params.push(p.to_ascii_lowercase());
        }
    }

    // [csrf]
    let mut allowed_origins = Vec::new();
    for (i, o) in raw.csrf.allowed_origins.iter().enumerate() {
        if let Some(o) = parse_origin(&mut errs, &format!("csrf.allowed_origins[{i}]"), o) {
            allowed_origins.push(o);
        }
    }

    // [log]
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        errs.push(ConfigError::new(
            "log.level",
            format!("{:?} is not a level or filter like \"info\"", raw.log.level),
        ));
    }

    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let (Some(listen), Some(origin), Some(access_secret), Some(refresh_secret)) =
        (listen, origin, access, refresh)
    else {
        return Err(ConfigErrors(vec![ConfigError::new(
            "gateway.toml",
            "invalid",
        )]));
    };
    let authority = origin.trim_start_matches("https://").to_string();
    let host = url::Url::parse(&origin)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if builtin_whoami {
        // Filled in by the server once the built-in page listens; a placeholder until then.
        upstreams.push(UpstreamConfig {
            name: WHOAMI_UPSTREAM.into(),
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("127.0.0.1:1"),
            base_path: String::new(),
            preserve_host: true,
            connect_timeout: default_connect_timeout(),
            timeout: default_upstream_timeout(),
        });
    }
    Ok(Config {
        server: ServerConfig {
            listen,
            redirect_listen,
            admin_listen,
            public_origin: PublicOrigin {
                origin,
                authority,
                host,
            },
            trusted_proxies: raw.server.trusted_proxies.clone(),
            handshake_timeout: s.handshake_timeout,
            header_read_timeout: s.header_read_timeout,
            shutdown_grace: s.shutdown_grace,
            max_header_bytes: s.max_header_bytes,
            max_connections: s.max_connections,
            workers: if s.workers == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                s.workers
            },
        },
        tls_cert: raw.tls.cert,
        tls_key: raw.tls.key,
        upstreams,
        routes,
        session: SessionConfig {
            access_ttl: ss.access_ttl,
            refresh_ttl: ss.refresh_ttl,
            idle_timeout: ss.idle_timeout,
            refresh_grace: ss.refresh_grace,
            same_site: ss.same_site,
            cookie_domain: ss.cookie_domain.clone(),
        },
        keys: KeysConfig {
            assertion,
            algorithm: k.algorithm,
            access_secret,
            refresh_secret,
        },
        store,
        login,
        anomaly: raw.anomaly.clone(),
        admin_token,
        url_tokens: UrlTokensConfig {
            action: raw.url_tokens.action,
            params,
        },
        csrf: CsrfConfig {
            mode: raw.csrf.mode,
            allowed_origins,
        },
        audit_file: raw.audit.file,
        log_level: raw.log.level,
        log_format: raw.log.format,
        builtin_whoami,
        dev_notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
    const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

    fn env_with(access: &'static str, refresh: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| match name {
            "SESSIONGATE_ACCESS_SECRET" => Some(access.to_string()),
            "SESSIONGATE_REFRESH_SECRET" => Some(refresh.to_string()),
            _ => None,
        }
    }

    const BASE: &str = r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:3000"
[login]
mode = "users_file"
users_file = "/nonexistent/users.toml"
"#;

    /// Problems of `extra` appended to a base config, as key names (cert/users noise removed).
    fn keys_of(extra: &str, access: &'static str, refresh: &'static str) -> Vec<String> {
        let raw = match parse(&format!("{BASE}\n{extra}")) {
            Ok(r) => r,
            Err(e) => return e.0.into_iter().map(|e| e.key).collect(),
        };
        match validate(raw, LoadOptions::default(), &env_with(access, refresh)) {
            Ok(_) => vec![],
            Err(e) => {
                e.0.into_iter()
                    .map(|e| e.key)
                    .filter(|k| k != "tls.cert" && k != "tls.key" && k != "login.users_file")
                    .collect()
            }
        }
    }

    #[test]
    fn a_good_config_has_no_problems_besides_files() {
        assert_eq!(keys_of("", A, R), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_named_with_their_table() {
        let k = keys_of("[session]\nacess_ttl = \"1m\"\n", A, R);
        assert_eq!(k.len(), 1);
        assert!(k[0].starts_with("session"), "{k:?}");
    }

    #[test]
    fn weak_placeholder_and_equal_secrets_are_refused() {
        assert_eq!(keys_of("", "short", R), vec!["keys.access_secret_env"]);
        assert_eq!(
            keys_of("", "changeme-changeme-changeme-changeme-00", R),
            vec!["keys.access_secret_env"]
        );
        assert_eq!(
            keys_of("", A, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            vec!["keys.refresh_secret_env"]
        );
        assert_eq!(keys_of("", A, A), vec!["keys.refresh_secret_env"]);
    }

    #[test]
    fn bad_values_name_their_keys() {
        assert_eq!(
            keys_of(
                "[server]\npublic_origin = \"http://localhost:8443\"\n",
                A,
                R
            ),
            vec!["server.public_origin"]
        );
        assert_eq!(
            keys_of("[session]\naccess_ttl = \"7d\"\n", A, R),
            vec!["session.access_ttl"]
        );
        assert_eq!(
            keys_of(
                "[[route]]\npath_prefix = \"/x/\"\nupstream = \"nope\"\n",
                A,
                R
            ),
            vec!["route[0].upstream"]
        );
        assert_eq!(
            keys_of("[[route]]\npath_prefix = \"x/../\"\n", A, R),
            vec!["route[0].path_prefix"]
        );
        assert_eq!(
            keys_of("[server]\nlisten = \"nowhere\"\n", A, R),
            vec!["server.listen"]
        );
        let k = keys_of("[session]\naccess_ttl = \"soon\"\n", A, R);
        assert_eq!(k, vec!["session.access_ttl"]);
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let k = keys_of(
            "[server]\npublic_origin = \"http://x\"\n[[route]]\npath_prefix = \"/a/\"\nupstream = \"b\"\n",
            "short",
            "short",
        );
        assert_eq!(k.len(), 4, "{k:?}");
    }

    #[test]
    fn missing_upstream_is_required_outside_dev_only() {
        let raw = parse("").unwrap();
        let e = validate(raw, LoadOptions::default(), &env_with(A, R)).unwrap_err();
        assert!(e.0.iter().any(|e| e.key == "upstream"));
        let raw = parse("").unwrap();
        let c = validate(
            raw,
            LoadOptions {
                dev: true,
                create_missing: false,
            },
            &|_| None,
        )
        .unwrap();
        assert!(c.builtin_whoami);
        assert_eq!(c.upstreams.len(), 1);
    }
}
