//! The schema of `gateway.toml` as written: serde structs with `deny_unknown_fields` (a typo in
//! a security setting is an error, never a silently kept default) and the default of every key.
//! Nothing here is checked; [`super::validate`] turns a [`RawConfig`] into a [`super::Config`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{AnomalyAction, CsrfMode, LogFormat, LoginMode, SameSite, UrlTokenAction};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a TOML document")]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub upstream: Vec<RawUpstream>,
    pub route: Vec<RawRoute>,
    pub session: RawSession,
    pub keys: RawKeys,
    pub store: RawStore,
    pub login: RawLogin,
    pub oidc: RawOidc,
    pub url_tokens: RawUrlTokens,
    pub identity: RawIdentity,
    pub paths: RawPaths,
    pub csrf: RawCsrf,
    pub anomaly: RawAnomaly,
    pub admin: RawAdmin,
    pub audit: RawAudit,
    pub access_log: RawAccessLog,
    pub log: RawLog,
    pub rate_limit: RawRateLimit,
    pub ui: RawUi,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [server] table")]
pub struct RawServer {
    pub listen: String,
    /// Plain-HTTP listener that only redirects to HTTPS; `""` turns it off.
    pub redirect_listen: String,
    /// Admin listener (health, readiness, metrics); `""` turns it off.
    pub admin_listen: String,
    pub public_origin: String,
    /// IP addresses or CIDR blocks, as written (validation reads them).
    pub trusted_proxies: Vec<String>,
    /// Read a PROXY protocol (v1 or v2) header first on HTTPS connections from
    /// `trusted_proxies` (L4 load balancers); its source address is the client's.
    pub proxy_protocol: bool,
    /// Where the running gateway writes its process id (`sessiongate reload` signals it);
    /// `""`: none.
    pub pid_file: String,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no open stream is closed after this long.
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Open HTTPS connections per client address (IPv6: per /64); trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// Open connections on each plain-HTTP listener (redirect, admin).
    pub max_plain_connections: usize,
    /// Serving threads, each with its own runtime and listener (`SO_REUSEPORT`); 0 = one per
    /// CPU core.
    pub workers: usize,
    /// `Strict-Transport-Security: max-age`; `0` tells browsers to forget the host's HSTS.
    #[serde(with = "humantime_serde")]
    pub hsts_max_age: Duration,
    /// `includeSubDomains`: every subdomain of the public host must be on HTTPS too.
    pub hsts_include_subdomains: bool,
    /// `preload`: ask browsers to ship the host as HTTPS-only (hstspreload.org's terms: at
    /// least a year, with `includeSubDomains`).
    pub hsts_preload: bool,
}

impl RawConfig {
    /// Resolve every relative path key against `base`, the configuration file's directory.
    /// Every `PathBuf` of the schema is listed here (a test sets each one relative).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if self.login.mode == LoginMode::UsersFile {
            // The default is a file beside the configuration too.
            self.login
                .users_file
                .get_or_insert_with(|| DEFAULT_USERS_FILE.into());
        }
        let providers = self.oidc.provider.iter_mut().flat_map(|p| {
            [p.client_secret_file.as_mut(), p.ca_file.as_mut()]
                .into_iter()
                .flatten()
        });
        let k = &mut self.keys;
        let rings = [
            k.access_secret_file.as_mut(),
            k.refresh_secret_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        .flat_map(|ring| ring.items_mut().iter_mut());
        let paths = [
            Some(&mut self.tls.cert),
            Some(&mut self.tls.key),
            k.assertion_key_file.as_mut(),
            k.assertion_previous_key_file.as_mut(),
            self.login.users_file.as_mut(),
            self.audit.file.as_mut(),
            self.access_log.file.as_mut(),
        ];
        for p in paths.into_iter().flatten().chain(rings).chain(providers) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            redirect_listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            public_origin: "https://localhost:8443".into(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            pid_file: String::new(),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            http2_idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections: 25_000,
            max_connections_per_ip: 256,
            max_plain_connections: 1024,
            workers: 0,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
            hsts_include_subdomains: true,
            hsts_preload: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [tls] table")]
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
#[serde(deny_unknown_fields, expecting = "an [[upstream]] table")]
pub struct RawUpstream {
    pub name: String,
    pub url: String,
    #[serde(default = "yes")]
    pub preserve_host: bool,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `https://` only: PEM file of the CA certificates the app's certificate must chain to
    /// (instead of the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `https://` only: PEM certificate chain the gateway presents to the app (mTLS).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// `https://` only: PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `https://` only: the name sent as SNI and verified in the app's certificate, instead of
    /// the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
pub(super) fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[route]] table")]
pub struct RawRoute {
    pub path_prefix: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub upstream: Option<String>,
    /// Only users with one of these roles (or named in `allow_users`) pass.
    #[serde(default)]
    pub allow_roles: Option<Vec<String>>,
    /// Only these users (or users with a role of `allow_roles`) pass.
    #[serde(default)]
    pub allow_users: Option<Vec<String>>,
    /// Users with any of these roles are refused, whatever else allows them.
    #[serde(default)]
    pub deny_roles: Vec<String>,
    /// Only these methods pass (`GET` lets `HEAD` through too).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// A login older than this is sent back through login (step-up).
    #[serde(default, with = "humantime_serde")]
    pub max_auth_age: Option<Duration>,
    /// This route's own rate limits (`{ per_session = "10/1m", burst = 5 }`); keys left out
    /// are `[rate_limit]`'s.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [session] table")]
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

/// `keys.algorithm`: accepted so that a config may state it, but only `HS256` parses; the
/// session tokens are HS256 (`tokens`), so the validated config has no such field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    HS256,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [keys] table")]
pub struct RawKeys {
    /// Read only to refuse anything but `HS256`.
    pub algorithm: Algorithm,
    /// As written (one name or a key ring, the first signs); when neither it nor
    /// `access_secret_file` is, validation reads [`DEFAULT_ACCESS_SECRET_ENV`].
    pub access_secret_env: Option<OneOrList<String>>,
    pub access_secret_file: Option<OneOrList<PathBuf>>,
    /// As written; when neither it nor `refresh_secret_file` is, validation reads
    /// [`DEFAULT_REFRESH_SECRET_ENV`].
    pub refresh_secret_env: Option<OneOrList<String>>,
    pub refresh_secret_file: Option<OneOrList<PathBuf>>,
    /// Ed25519 private key (PKCS#8 PEM) that signs `X-Auth-Assertion`.
    pub assertion_key_file: Option<PathBuf>,
    /// The key it replaced, still published at `/.auth/jwks.json`.
    pub assertion_previous_key_file: Option<PathBuf>,
    pub assertion_audience: String,
    #[serde(with = "humantime_serde")]
    pub assertion_ttl: Duration,
}

/// A key that takes one value or a list of them: `access_secret_env = "A"` or
/// `access_secret_env = ["NEW", "OLD"]` (a key ring during a rotation: the first signs, every
/// one verifies). Written by hand rather than as an untagged enum, so that a wrong type is
/// reported as "expected a string or a list of strings", not "did not match any variant".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrList<T> {
    One(T),
    List(Vec<T>),
}

impl<T> OneOrList<T> {
    /// The values, in the order written.
    pub fn items(&self) -> &[T] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::List(v) => v,
        }
    }

    /// The values, to change in place (a path resolved against the config file's directory).
    pub fn items_mut(&mut self) -> &mut [T] {
        match self {
            Self::One(v) => std::slice::from_mut(v),
            Self::List(v) => v,
        }
    }

    /// The key path of item `i` for an error: `key[i]` when written as a list, else `key`.
    pub fn item_key(&self, key: &str, i: usize) -> String {
        match self {
            Self::One(_) => key.to_string(),
            Self::List(_) => format!("{key}[{i}]"),
        }
    }
}

impl<'de, T> Deserialize<'de> for OneOrList<T>
where
    T: Deserialize<'de> + From<String>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + From<String>> serde::de::Visitor<'de> for Visit<T> {
            type Value = OneOrList<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrList::One(T::from(v.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<T>()? {
                    items.push(v);
                }
                Ok(OneOrList::List(items))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// The variables that hold the secrets when `[keys]` names neither a variable nor a file.
pub const DEFAULT_ACCESS_SECRET_ENV: &str = "SESSIONGATE_ACCESS_SECRET";
pub const DEFAULT_REFRESH_SECRET_ENV: &str = "SESSIONGATE_REFRESH_SECRET";

impl Default for RawKeys {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            access_secret_env: None,
            access_secret_file: None,
            refresh_secret_env: None,
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
#[serde(deny_unknown_fields, default, expecting = "a [store] table")]
pub struct RawStore {
    pub kind: StoreKind,
    /// `redis://host:port/db` or `rediss://…` (TLS); no password in it.
    pub url: Option<String>,
    /// Redis Cluster seed nodes (`redis://host:port`), instead of `url`.
    pub cluster_nodes: Vec<String>,
    /// Environment variable holding the Redis password (AUTH).
    pub password_env: Option<String>,
    /// Redis ACL user to authenticate as (with `password_env`'s password).
    pub username: Option<String>,
    /// `rediss://` only: PEM file of the CA certificates Redis's certificate must chain to
    /// (instead of the roots built into the binary).
    pub ca_file: Option<PathBuf>,
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
            username: None,
            ca_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            key_prefix: "sg".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [login] table")]
pub struct RawLogin {
    pub mode: LoginMode,
    /// As written; see [`RawLogin::users_file_in_use`] for the file each mode reads.
    pub users_file: Option<PathBuf>,
    /// `upstream` mode: the app's login path whose response may carry a grant.
    pub upstream_path: Option<String>,
    /// `upstream` mode: where navigations without a session are sent (default `upstream_path`).
    pub page_path: Option<String>,
    /// `upstream` mode: environment variable(s) with the grant's HMAC secret (a list during a
    /// rotation: each one verifies).
    pub grant_secret_env: Option<OneOrList<String>>,
    /// `upstream` mode: the app's own session cookies, removed from its responses and requests.
    pub drop_cookies: Vec<String>,
    /// `upstream` mode: app paths that also end the gateway session.
    pub logout_paths: Vec<String>,
    /// Failed logins per account from one client network (/24, /64) within `failure_window`
    /// before `429` (for that account, from that network).
    pub max_failures_per_user: u32,
    /// Failed logins per account from every network within `failure_window` before `429` (for
    /// that account, from anywhere): the backstop. Unset: 50, and never below
    /// `max_failures_per_user`.
    pub max_failures_per_user_total: Option<u32>,
    /// Failed logins per client IP within `failure_window` before `429`.
    pub max_failures_per_ip: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Users of the users file must sign in with a second factor (TOTP).
    pub require_second_factor: bool,
    /// With `require_second_factor`: how long a user without a second factor may still sign in
    /// with the password alone (and is sent to enrol), from their first such sign-in.
    #[serde(with = "humantime_serde")]
    pub second_factor_grace: Duration,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            mode: LoginMode::UsersFile,
            users_file: None,
            upstream_path: None,
            page_path: None,
            grant_secret_env: None,
            drop_cookies: Vec::new(),
            logout_paths: Vec::new(),
            max_failures_per_user: 5,
            max_failures_per_user_total: None,
            max_failures_per_ip: 20,
            failure_window: Duration::from_secs(15 * 60),
            require_second_factor: false,
            second_factor_grace: Duration::ZERO,
        }
    }
}

/// `login.users_file` when it is not written, in `users_file` mode.
pub const DEFAULT_USERS_FILE: &str = "users.toml";

impl RawLogin {
    /// The users file the mode reads: in `users_file` mode the one written, else
    /// [`DEFAULT_USERS_FILE`]; in `oidc` mode the one written, if any (the login page then
    /// offers both); none in `upstream` mode (the app checks passwords).
    pub fn users_file_in_use(&self) -> Option<PathBuf> {
        match self.mode {
            LoginMode::UsersFile => Some(
                self.users_file
                    .clone()
                    .unwrap_or_else(|| DEFAULT_USERS_FILE.into()),
            ),
            LoginMode::Oidc => self.users_file.clone(),
            LoginMode::Upstream => None,
        }
    }
}

/// `[oidc]`: the OpenID Connect providers of `login.mode = "oidc"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [oidc] table")]
pub struct RawOidc {
    /// How often a session's provider is asked again (with its refresh token, kept in the
    /// session) whether the user is still there; unset: the refresh token is not kept.
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Option<Duration>,
    pub provider: Vec<RawOidcProvider>,
}

/// One `[[oidc.provider]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[oidc.provider]] table")]
pub struct RawOidcProvider {
    /// `/.auth/oidc/start?provider=NAME`.
    pub name: String,
    /// The login button's text; `name` when unset.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Environment variable holding the client secret (or `client_secret_file`).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File holding the client secret (one trailing newline is not part of it).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The claim that becomes the gateway's user id.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// A claim holding the user's roles (a string or a list of strings).
    #[serde(default)]
    pub roles_claim: Option<String>,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// PEM file of the CA certificates the provider's certificate must chain to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_user_claim() -> String {
    "sub".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [anomaly] table")]
pub struct RawAnomaly {
    pub ip_change: AnomalyAction,
    pub user_agent_change: AnomalyAction,
    /// IPv4 changes within this prefix length are not anomalies.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// A session refreshed more than `refresh_rate_max` times within one access TTL.
    pub refresh_rate: AnomalyAction,
    pub refresh_rate_max: u32,
}

impl Default for RawAnomaly {
    fn default() -> Self {
        Self {
            ip_change: AnomalyAction::Log,
            user_agent_change: AnomalyAction::Revoke,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            refresh_rate: AnomalyAction::Log,
            refresh_rate_max: 10,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [admin] table")]
pub struct RawAdmin {
    /// Environment variable holding the admin API bearer token.
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [url_tokens] table")]
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

/// `[identity]`: the identity the app receives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [identity] table")]
pub struct RawIdentity {
    /// Request headers removed beside the built-in families (any letter case; a trailing `*`
    /// makes a prefix: `"X-Tenant-*"`).
    pub strip_headers: Vec<String>,
}

/// `[paths]`: how request paths are read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [paths] table")]
pub struct RawPaths {
    /// Forward a path whose escapes survive one decoding (`%252F`) as it came, instead of
    /// refusing it.
    pub allow_double_encoding: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [csrf] table")]
pub struct RawCsrf {
    pub mode: CsrfMode,
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [audit] table")]
pub struct RawAudit {
    /// JSON-lines file for audit events; standard output when unset.
    pub file: Option<PathBuf>,
}

/// `[ui]`: what the gateway's own pages show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [ui] table")]
pub struct RawUi {
    /// The product's name, in every page's title and heading.
    pub product_name: String,
}

impl Default for RawUi {
    fn default() -> Self {
        Self {
            product_name: "sessiongate".into(),
        }
    }
}

/// `[access_log]`: one line per request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "an [access_log] table")]
pub struct RawAccessLog {
    pub enabled: bool,
    /// Where the lines go (appended); standard error, among the log's lines, when unset.
    pub file: Option<PathBuf>,
}

impl Default for RawAccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [log] table")]
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

/// `[rate_limit]`, and the same keys in a route's `rate_limit` table. Rates are strings
/// (`"100/15m"`), parsed by validation so that a mistake names its key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a rate_limit table")]
pub struct RawRateLimit {
    pub per_session: Option<String>,
    pub burst: Option<u64>,
    pub anonymous_per_ip: Option<String>,
}
