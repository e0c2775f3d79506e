//! The `gateway.toml` the harness writes: a builder for the overridable pieces ([`GatewayConfig`],
//! [`Route`], [`StoreSpec`]), key overrides inside the harness's own tables, and
//! `sessiongate check-config` over a written file.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pki::Pki;
use super::users::users_toml;
use super::util::{bin, free_port, wait_output_within};

/// The host name of the gateway's public origin in tests: the test certificate's name, the SNI
/// every client sends, and the name the clients resolve to the gateway's bound address.
pub const PUBLIC_HOST: &str = "localhost";

/// `server.public_origin` unless a test sets another: `https://` + [`PUBLIC_HOST`], on the
/// default port. The gateway listens on a port the kernel chose (`127.0.0.1:0`), so this is a
/// deployment behind a port mapping (public 443, internal ephemeral port): the origin is known
/// before the gateway starts, and a gateway that took its own origin from its listen address
/// would be caught.
pub const DEFAULT_PUBLIC_ORIGIN: &str = "https://localhost";

/// `127.0.0.1:0`: a listen address for which the kernel picks a free port at bind time, so no
/// test races another process for a port it saw free.
pub const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

#[derive(Clone, Debug)]
pub struct Route {
    pub path_prefix: String,
    pub public: Option<bool>,
    pub upstream: Option<String>,
    /// Further `key = value` lines of the table (`allow_roles = ["admin"]`).
    pub keys: Vec<String>,
}

impl Route {
    pub fn public(prefix: &str) -> Route {
        Route {
            path_prefix: prefix.into(),
            public: Some(true),
            upstream: None,
            keys: vec![],
        }
    }
    pub fn protected(prefix: &str) -> Route {
        Route {
            path_prefix: prefix.into(),
            public: None,
            upstream: None,
            keys: vec![],
        }
    }
    pub fn to(mut self, upstream: &str) -> Route {
        self.upstream = Some(upstream.into());
        self
    }
    /// One more `key = value` line in the route's table.
    pub fn with(mut self, line: &str) -> Route {
        self.keys.push(line.into());
        self
    }
}

/// The overridable pieces of the `gateway.toml` the harness writes.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub access_ttl: String,
    pub refresh_ttl: String,
    pub idle_timeout: String,
    pub refresh_grace: String,
    pub same_site: String,
    pub url_tokens_action: String,
    pub routes: Vec<Route>,
    /// `(name, url)` upstreams after the `app` upstream.
    pub extra_upstreams: Vec<(String, String)>,
    /// `(name, TOML lines)` written into the table of that extra upstream, after its `url`.
    pub upstream_keys: Vec<(String, String)>,
    /// Overrides `server.public_origin` (default [`DEFAULT_PUBLIC_ORIGIN`]).
    pub public_origin: Option<String>,
    /// Appended verbatim at the end of the file.
    pub extra_toml: String,
    /// Extra environment for the gateway process.
    pub env: Vec<(String, String)>,
    /// `(table, key, raw TOML value)` set inside a table the harness writes (`server`,
    /// `keys`, `login`, ...), replacing the harness's own value of that key; see
    /// [`GatewayConfig::set`].
    pub table_keys: Vec<(String, String, String)>,
    /// `(table, key)` removed from a table the harness writes; see [`GatewayConfig::unset`].
    pub unset_keys: Vec<(String, String)>,
    /// The session store, rendered as `[store]` (default memory); see [`StoreSpec`].
    pub store: StoreSpec,
    /// `(access, refresh)` secrets instead of fresh random ones: instances that share them
    /// (and `server.public_origin`) accept each other's tokens.
    pub secrets: Option<(String, String)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            access_ttl: "15m".into(),
            refresh_ttl: "7d".into(),
            idle_timeout: "30m".into(),
            refresh_grace: "10s".into(),
            same_site: "lax".into(),
            url_tokens_action: "redirect".into(),
            routes: vec![Route::public("/public/")],
            extra_upstreams: vec![],
            upstream_keys: vec![],
            public_origin: None,
            extra_toml: String::new(),
            env: vec![],
            table_keys: vec![],
            unset_keys: vec![],
            store: StoreSpec::Memory,
            secrets: None,
        }
    }
}

impl GatewayConfig {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn access_ttl(mut self, v: &str) -> Self {
        self.access_ttl = v.into();
        self
    }
    pub fn refresh_ttl(mut self, v: &str) -> Self {
        self.refresh_ttl = v.into();
        self
    }
    pub fn idle_timeout(mut self, v: &str) -> Self {
        self.idle_timeout = v.into();
        self
    }
    pub fn refresh_grace(mut self, v: &str) -> Self {
        self.refresh_grace = v.into();
        self
    }
    pub fn url_tokens(mut self, action: &str) -> Self {
        self.url_tokens_action = action.into();
        self
    }
    pub fn route(mut self, r: Route) -> Self {
        self.routes.push(r);
        self
    }
    pub fn routes(mut self, rs: Vec<Route>) -> Self {
        self.routes = rs;
        self
    }
    pub fn upstream(mut self, name: &str, url: &str) -> Self {
        self.extra_upstreams.push((name.into(), url.into()));
        self
    }
    /// An upstream after `app` with more keys in its table (`ca_file = "…"` lines).
    pub fn upstream_with(mut self, name: &str, url: &str, keys: &str) -> Self {
        self.upstream_keys.push((name.into(), keys.into()));
        self.upstream(name, url)
    }
    pub fn public_origin(mut self, v: &str) -> Self {
        self.public_origin = Some(v.into());
        self
    }
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Render `gateway.toml`.
    pub fn render(&self, p: &RenderParams) -> String {
        let origin = self
            .public_origin
            .clone()
            .unwrap_or_else(|| DEFAULT_PUBLIC_ORIGIN.to_string());
        let mut s = String::new();
        writeln!(s, "[server]").unwrap();
        writeln!(s, "listen = \"{}\"", p.https).unwrap();
        writeln!(s, "redirect_listen = \"{}\"", p.http).unwrap();
        writeln!(s, "admin_listen = \"{}\"", p.admin).unwrap();
        writeln!(s, "public_origin = \"{origin}\"").unwrap();
        writeln!(s, "\n[tls]").unwrap();
        writeln!(s, "cert = \"{}\"", p.cert.display()).unwrap();
        writeln!(s, "key = \"{}\"", p.key.display()).unwrap();
        writeln!(
            s,
            "\n[[upstream]]\nname = \"app\"\nurl = \"{}\"",
            p.upstream_url
        )
        .unwrap();
        for (name, url) in &self.extra_upstreams {
            writeln!(s, "\n[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"").unwrap();
            for (_, keys) in self.upstream_keys.iter().filter(|(n, _)| n == name) {
                writeln!(s, "{}", keys.trim_end()).unwrap();
            }
        }
        for r in &self.routes {
            writeln!(s, "\n[[route]]\npath_prefix = \"{}\"", r.path_prefix).unwrap();
            if let Some(public) = r.public {
                writeln!(s, "public = {public}").unwrap();
            }
            if let Some(u) = &r.upstream {
                writeln!(s, "upstream = \"{u}\"").unwrap();
            }
            for line in &r.keys {
                writeln!(s, "{line}").unwrap();
            }
        }
        writeln!(s, "\n[session]").unwrap();
        writeln!(s, "access_ttl = \"{}\"", self.access_ttl).unwrap();
        writeln!(s, "refresh_ttl = \"{}\"", self.refresh_ttl).unwrap();
        writeln!(s, "idle_timeout = \"{}\"", self.idle_timeout).unwrap();
        writeln!(s, "refresh_grace = \"{}\"", self.refresh_grace).unwrap();
        writeln!(s, "same_site = \"{}\"", self.same_site).unwrap();
        writeln!(s, "\n[keys]\nalgorithm = \"HS256\"").unwrap();
        writeln!(s, "access_secret_env = \"SG_TEST_ACCESS_SECRET\"").unwrap();
        writeln!(s, "refresh_secret_env = \"SG_TEST_REFRESH_SECRET\"").unwrap();
        write!(s, "\n{}", self.store.render()).unwrap();
        writeln!(s, "\n[login]\nmode = \"users_file\"").unwrap();
        writeln!(s, "users_file = \"{}\"", p.users_file.display()).unwrap();
        writeln!(s, "\n[url_tokens]\naction = \"{}\"", self.url_tokens_action).unwrap();
        writeln!(s, "\n[audit]\nfile = \"{}\"", p.audit_file.display()).unwrap();
        s.push('\n');
        s.push_str(&self.extra_toml);
        unset_table_keys(&set_table_keys(&s, &self.table_keys), &self.unset_keys)
    }
}

/// What [`GatewayConfig::render`] fills in: paths of the files the harness wrote, the upstream,
/// and the listen addresses (normally [`LOOPBACK_ANY_PORT`]; a fixed port only where a test
/// needs one, such as a bind conflict).
pub struct RenderParams {
    /// `server.listen`
    pub https: SocketAddr,
    /// `server.redirect_listen`
    pub http: SocketAddr,
    /// `server.admin_listen`
    pub admin: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub upstream_url: String,
    pub users_file: PathBuf,
    pub audit_file: PathBuf,
}

/// The environment variable that carries the admin API token (`admin.token_env`).
pub const ADMIN_TOKEN_ENV: &str = "SG_TEST_ADMIN_TOKEN";

impl GatewayConfig {
    /// Set `key = <raw TOML value>` inside `[table]`: replaces the harness's own line for that
    /// key, or adds it to the table (appending the table when the file has none).
    pub fn set(mut self, table: &str, key: &str, raw_value: &str) -> Self {
        self.table_keys
            .push((table.into(), key.into(), raw_value.into()));
        self
    }

    /// Remove `key` from `[table]` (the harness's own line, or one [`GatewayConfig::set`] wrote),
    /// so that the gateway takes the key's default: `unset("login", "users_file")` in `oidc`
    /// mode leaves the login page without the password form.
    pub fn unset(mut self, table: &str, key: &str) -> Self {
        self.unset_keys.push((table.into(), key.into()));
        self
    }

    /// `server.trusted_proxies = ["127.0.0.1/32"]`: the test client counts as a trusted proxy,
    /// so the `X-Forwarded-For` it sends names the client (one per simulated network).
    pub fn trust_loopback_proxy(self) -> Self {
        self.set("server", "trusted_proxies", "[\"127.0.0.1/32\"]")
    }

    /// Turn the admin API on with this bearer token (`admin.token_env`).
    pub fn admin_api_token(self, token: &str) -> Self {
        self.set("admin", "token_env", &format!("\"{ADMIN_TOKEN_ENV}\""))
            .env(ADMIN_TOKEN_ENV, token)
    }
}

/// Apply [`GatewayConfig::set`] entries to a rendered `gateway.toml`.
fn set_table_keys(rendered: &str, keys: &[(String, String, String)]) -> String {
    let mut lines: Vec<String> = rendered.lines().map(str::to_string).collect();
    for (table, key, value) in keys {
        let line = format!("{key} = {value}");
        let header = format!("[{table}]");
        let Some(start) = lines.iter().position(|l| l.trim() == header) else {
            lines.push(String::new());
            lines.push(header);
            lines.push(line);
            continue;
        };
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |i| start + 1 + i);
        let existing = (start + 1..end).find(|&i| {
            lines[i]
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key.as_str())
        });
        match existing {
            Some(i) => lines[i] = line,
            None => lines.insert(start + 1, line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Apply [`GatewayConfig::unset`] entries to a rendered `gateway.toml`.
fn unset_table_keys(rendered: &str, keys: &[(String, String)]) -> String {
    let mut table = String::new();
    let mut out = String::with_capacity(rendered.len());
    for line in rendered.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        let drop = keys.iter().any(|(tb, k)| {
            *tb == table
                && line
                    .split_once('=')
                    .is_some_and(|(have, _)| have.trim() == k.as_str())
        });
        if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Which session store the gateway runs with, rendered as the `[store]` table.
#[derive(Clone, Debug, Default)]
pub enum StoreSpec {
    #[default]
    Memory,
    /// One Redis node: `store.url`.
    Redis { url: String },
    /// Redis Cluster seed nodes: `store.cluster_nodes`.
    Cluster { nodes: Vec<String> },
}

impl StoreSpec {
    pub fn render(&self) -> String {
        match self {
            StoreSpec::Memory => "[store]\nkind = \"memory\"\n".into(),
            StoreSpec::Redis { url } => format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\n"),
            StoreSpec::Cluster { nodes } => {
                let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
                format!(
                    "[store]\nkind = \"redis\"\ncluster_nodes = [{}]\n",
                    list.join(", ")
                )
            }
        }
    }
}

impl GatewayConfig {
    /// The session store (default: memory).
    pub fn store(mut self, store: StoreSpec) -> Self {
        self.store = store;
        self
    }

    /// Use these access and refresh secrets instead of fresh random ones.
    pub fn secrets(mut self, access: &str, refresh: &str) -> Self {
        self.secrets = Some((access.into(), refresh.into()));
        self
    }
}

/// A configuration file written for `check-config`, with the directory that holds it (and the
/// files it names) alive as long as this is.
pub struct Written {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Write a config rendered from `cfg`, optionally edited, with real cert and users files.
pub fn write_config(cfg: &GatewayConfig, edit: impl Fn(String) -> String) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let users = dir.path().join("users.toml");
    std::fs::write(&users, users_toml()).unwrap();
    let params = RenderParams {
        https: LOOPBACK_ANY_PORT,
        http: LOOPBACK_ANY_PORT,
        admin: LOOPBACK_ANY_PORT,
        cert: pki.cert_path.clone(),
        key: pki.key_path.clone(),
        upstream_url: format!("http://127.0.0.1:{}", free_port()),
        users_file: users,
        audit_file: dir.path().join("audit.log"),
    };
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, edit(cfg.render(&params))).unwrap();
    Written { _dir: dir, path }
}

/// Run `sessiongate check-config --config <file>` with these secrets.
pub fn check_config(config_path: &Path, access: &str, refresh: &str) -> (bool, String) {
    check_config_env(
        config_path,
        &[
            ("SG_TEST_ACCESS_SECRET", access),
            ("SG_TEST_REFRESH_SECRET", refresh),
        ],
    )
}

/// Run `sessiongate check-config --config <file>` with this environment (beside the
/// process's own, without `RUST_LOG`).
pub fn check_config_env(config_path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("check-config")
        .arg("--config")
        .arg(config_path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sessiongate check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Write `dir/gateway.toml` rendered from `cfg`, with a real certificate and users file beside
/// it and an upstream that nothing listens on (for configurations that must not start).
pub fn write_gateway_toml(dir: &Path, cfg: &GatewayConfig) -> PathBuf {
    let pki = super::pki::Pki::generate(dir);
    let users = dir.join("users.toml");
    std::fs::write(&users, super::users::users_toml()).unwrap();
    let params = RenderParams {
        https: LOOPBACK_ANY_PORT,
        http: LOOPBACK_ANY_PORT,
        admin: LOOPBACK_ANY_PORT,
        cert: pki.cert_path.clone(),
        key: pki.key_path.clone(),
        upstream_url: format!("http://127.0.0.1:{}", super::util::free_port()),
        users_file: users,
        audit_file: dir.join("audit.log"),
    };
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg.render(&params)).unwrap();
    path
}

/// Run `sessiongate run --config <file>` with these secrets and extra environment, expecting it
/// to refuse to start: whether it exited with an error (a start that does not end within 20 s
/// panics), and everything it printed.
pub fn run_refused(
    config_path: &Path,
    access: &str,
    refresh: &str,
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config_path)
        .env_remove("RUST_LOG")
        .env("SG_TEST_ACCESS_SECRET", access)
        .env("SG_TEST_REFRESH_SECRET", refresh)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("run sessiongate run");
    let out = wait_output_within(child, std::time::Duration::from_secs(20), "sessiongate run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success(), text)
}

#[cfg(test)]
mod tests {
    use super::{set_table_keys, unset_table_keys};

    #[test]
    fn unset_table_keys_drops_only_that_tables_key() {
        let toml = "[login]\nmode = \"oidc\"\nusers_file = \"u\"\n\n[other]\nusers_file = \"x\"\n";
        let keys = [("login".to_string(), "users_file".to_string())];
        assert_eq!(
            unset_table_keys(toml, &keys),
            "[login]\nmode = \"oidc\"\n\n[other]\nusers_file = \"x\"\n"
        );
    }

    #[test]
    fn set_table_keys_replaces_adds_and_appends() {
        let toml =
            "[server]\nlisten = \"a\"\n\n[login]\nmode = \"users_file\"\nusers_file = \"u\"\n";
        let keys = [
            (
                "login".to_string(),
                "mode".to_string(),
                "\"upstream\"".to_string(),
            ),
            (
                "server".to_string(),
                "trusted_proxies".to_string(),
                "[]".to_string(),
            ),
            (
                "csrf".to_string(),
                "mode".to_string(),
                "\"token\"".to_string(),
            ),
        ];
        let out = set_table_keys(toml, &keys);
        assert_eq!(
            out,
            "[server]\ntrusted_proxies = []\nlisten = \"a\"\n\n[login]\nmode = \"upstream\"\n\
             users_file = \"u\"\n\n[csrf]\nmode = \"token\"\n"
        );
    }
}
