//! A real OpenID provider for the e2e tests: panva's certified `oidc-provider` (pinned in
//! `tests/oidc-provider/package-lock.json`, installed by `scripts/test`), run by node on
//! loopback over HTTPS with a certificate from a CA made here ([`OidcProvider`]); and a
//! browser-like client that walks a login across the gateway and the provider ([`browser`],
//! [`follow`]).
//!
//! The provider starts in two phases, because the gateway's URL and CA exist only once the
//! issuer is known: [`OidcProvider::launch`] (the issuer URL and its CA), then
//! [`OidcProvider::configure`] (clients, users, the CA of the gateway it posts back-channel
//! logout tokens to). Test-only control endpoints (`tests/oidc-provider/provider.mjs`) alter its
//! ID tokens ([`OidcProvider::tamper`]), mint logout tokens, rotate its keys, change users and
//! end their sessions; the protocol itself is the real provider's.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::config::{DEFAULT_PUBLIC_ORIGIN, GatewayConfig, PUBLIC_HOST};
use super::gateway::Gateway;
use super::pki::TestCa;
use super::util::{form_urlencode, install_crypto_provider, random_secret};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The gateway's redirect URI, to register with the provider: `/.auth/oidc/callback` on the
/// e2e public origin.
pub const OIDC_CALLBACK_URI: &str = "https://localhost/.auth/oidc/callback";

/// `tests/oidc-provider`: the node package with `provider.mjs`.
pub fn oidc_provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// One `node tests/oidc-provider/provider.mjs` process. Dropping it kills node.
pub struct OidcProvider {
    issuer: String,
    control: String,
    ca_file: PathBuf,
    ca_der: CertificateDer<'static>,
    stderr_log: PathBuf,
    /// Plain HTTP, for the control listener.
    plain: reqwest::Client,
    /// Held open: node stops by itself when it closes (or when its parent dies).
    stdin: Option<ChildStdin>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OidcProvider {
    /// A fresh CA and a certificate for `127.0.0.1`, node started, its ready line read. The
    /// issuer answers 503 until [`OidcProvider::configure`].
    pub async fn launch() -> OidcProvider {
        tokio::task::spawn_blocking(OidcProvider::launch_blocking)
            .await
            .expect("oidc provider launch task")
    }

    fn launch_blocking() -> OidcProvider {
        install_crypto_provider();
        let pkg = oidc_provider_dir();
        assert!(
            pkg.join("node_modules/oidc-provider/package.json").exists(),
            "{}/node_modules is missing: run scripts/test, or `npm ci` in that directory",
            pkg.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-idp-")
            .tempdir()
            .expect("tempdir");
        let ca = TestCa::new(dir.path(), "idp");
        let cert = ca.server("idp", &["127.0.0.1"]);
        let ca_der = CertificateDer::from_pem_file(&ca.path).expect("read the idp CA");
        let stderr_log = dir.path().join("idp.stderr.log");
        let stdout_log = dir.path().join("idp.stdout.log");
        let mut child = Command::new("node")
            .arg(pkg.join("provider.mjs"))
            .arg(&cert.cert)
            .arg(&cert.key)
            .current_dir(&pkg)
            .env_remove("DEBUG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&stderr_log).expect("idp stderr log"),
            ))
            .spawn()
            .expect("spawn node tests/oidc-provider/provider.mjs (is node installed?)");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(&stdout_log).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(out) = out.as_mut() {
                    let _ = writeln!(out, "{line}");
                }
                if line.starts_with("ready ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OpenID provider printed no ready line ({e}); stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        let (issuer, control) = parse_ready_line(&ready)
            .unwrap_or_else(|| panic!("unexpected ready line from the provider: {ready:?}"));
        OidcProvider {
            issuer,
            control,
            ca_file: ca.path.clone(),
            ca_der,
            stderr_log,
            plain: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("plain client"),
            stdin,
            child: Some(child),
            dir,
        }
    }

    /// `https://127.0.0.1:PORT`, exactly as the provider's `iss` claims say it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The CA PEM that signed the provider's certificate (the gateway's `ca_file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The provider's own directory (its logs, its certificate).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What node wrote on standard error so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// A URL on the control listener (plain HTTP).
    pub fn control_url(&self, path: &str) -> String {
        format!("{}{path}", self.control)
    }

    /// A control request: its status and JSON answer, or `None` when nothing answers.
    pub async fn try_control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let mut req = self.plain.request(method, self.control_url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        match self.try_control(method.clone(), path, body).await {
            Some((200, v)) => v,
            other => panic!(
                "OpenID provider control {method} {path} failed: {other:?}; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Clients, users, the CA to trust for back-channel logout POSTs and TTLs: builds the
    /// provider and starts serving it at [`OidcProvider::issuer`]. May be called again.
    pub async fn configure(&self, c: &IdpSetup) {
        self.control(reqwest::Method::POST, "/configure", Some(&c.to_json()))
            .await;
    }

    /// From now on the `id_token` of every token-endpoint response is altered: `none` (off),
    /// `bad_signature`, `wrong_aud`, `wrong_iss`, `wrong_nonce`, `expired`, `future_iat` (these
    /// four re-signed with the provider's real key), `hs256` (HMAC with the client secret),
    /// `foreign_key` (RS256 by a key and kid the JWKS does not have).
    pub async fn tamper(&self, mode: &str) {
        self.tamper_with(&json!({ "mode": mode })).await;
    }

    /// [`OidcProvider::tamper`] with the whole request: `{"mode": M, "value": wrong value}` for
    /// `wrong_aud`/`wrong_iss`/`wrong_nonce`, or `{"mode": "claims", "claims": {...}}` to
    /// re-sign with these claims changed (`null` removes one).
    pub async fn tamper_with(&self, request: &Value) {
        self.control(reqwest::Method::POST, "/tamper", Some(request))
            .await;
    }

    /// A logout token signed by the provider's current key: `iss`, `aud` (the first client),
    /// `iat`, `exp`, `jti` and `events` by default, header `typ: logout+jwt`. `claims` overrides
    /// them (`null` removes one) and may hold `"alg"` (`RS256`, `HS256` with the client secret,
    /// `none`), `"typ"`, `"kid"` and `"foreign_key": true` (signed by a key not in the JWKS).
    pub async fn logout_token(&self, claims: Value) -> String {
        let v = self
            .control(reqwest::Method::POST, "/logout-token", Some(&claims))
            .await;
        v["logout_token"]
            .as_str()
            .expect("logout_token in the answer")
            .to_string()
    }

    /// A new signing key (new kid) first in the JWKS; the old ones stay listed when
    /// `keep_old`. Sessions and tokens survive it.
    pub async fn rotate_keys(&self, keep_old: bool) {
        self.control(
            reqwest::Method::POST,
            "/rotate-keys",
            Some(&json!({ "keep_old": keep_old })),
        )
        .await;
    }

    /// Add or replace a user (new groups show in the next userinfo or refresh).
    pub async fn put_user(&self, u: &IdpUser) {
        let path = format!("/users/{}", super::util::pct(&u.sub));
        self.control(reqwest::Method::POST, &path, Some(&u.to_json()))
            .await;
    }

    /// The user is gone: its refresh tokens fail with `invalid_grant` from now on.
    pub async fn delete_user(&self, sub: &str) {
        let path = format!("/users/{}", super::util::pct(sub));
        self.control(reqwest::Method::DELETE, &path, None).await;
    }

    /// End every provider session of `sub`, sending a back-channel logout token to each client
    /// of the session that registered a `backchannel_logout_uri`; returns once every POST has
    /// been answered (or failed). The answer: `{"sessions": N, "deliveries": [...]}`.
    pub async fn end_sessions(&self, sub: &str) -> Value {
        self.control(
            reqwest::Method::POST,
            "/end-sessions",
            Some(&json!({ "sub": sub })),
        )
        .await
    }

    /// Every back-channel logout POST the provider made so far: `uri`, `status` (`null` when the
    /// connection failed), `error`, `outcome` (`"success"` / `"error"`, from the provider's
    /// `backchannel.*` events), `logout_token`, `client_id`, `sub`, `sid`.
    pub async fn deliveries(&self) -> Vec<Value> {
        let v = self
            .control(reqwest::Method::GET, "/backchannel-deliveries", None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// The provider goes down (the next connection to the issuer is refused).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
    }

    /// Close node's standard input and wait up to `within` for it to exit by itself; whether
    /// it did.
    pub fn close_stdin_and_wait(&mut self, within: Duration) -> bool {
        self.stdin = None;
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id of node, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An HTTPS client that trusts the provider's CA (no cookie store, redirects off): for the
    /// token, userinfo and JWKS endpoints, as a relying party's back end calls them.
    pub fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_config(std::slice::from_ref(&self.ca_der)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("idp https client")
    }

    /// A browser-like client for the provider alone (a cookie jar, redirects not followed,
    /// the provider's CA trusted); see [`browser`] for one that also reaches the gateway.
    pub fn browser(&self) -> reqwest::Client {
        browser_with(std::slice::from_ref(&self.ca_der), None)
    }

    /// `GET /.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// The provider's JWKS, from the `jwks_uri` its discovery names.
    pub async fn jwks(&self) -> Value {
        let d = self.discovery().await;
        let uri = d["jwks_uri"].as_str().expect("jwks_uri").to_string();
        let resp = self.https_client().get(uri).send().await.expect("jwks");
        resp.json().await.expect("jwks json")
    }

    async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .https_client()
            .get(format!("{}{path}", self.issuer))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} at the provider: {e}"));
        assert_eq!(
            resp.status().as_u16(),
            200,
            "GET {path} at the provider; stderr:\n{}",
            self.stderr_text()
        );
        resp.json().await.expect("provider json")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ready issuer=https://127.0.0.1:P control=http://127.0.0.1:P2`
fn parse_ready_line(line: &str) -> Option<(String, String)> {
    let mut issuer = None;
    let mut control = None;
    for part in line.strip_prefix("ready ")?.split_whitespace() {
        match part.split_once('=') {
            Some(("issuer", v)) if v.starts_with("https://127.0.0.1:") => issuer = Some(v),
            Some(("control", v)) if v.starts_with("http://127.0.0.1:") => control = Some(v),
            _ => {}
        }
    }
    Some((issuer?.to_string(), control?.to_string()))
}

// ---------------------------------------------------------------- configuration

/// What [`OidcProvider::configure`] sends.
#[derive(Clone, Debug, Default)]
pub struct IdpSetup {
    pub clients: Vec<IdpClient>,
    pub users: Vec<IdpUser>,
    /// The CA the provider trusts when it POSTs back-channel logout tokens (the gateway's
    /// `ca.pem`, see [`Gateway::ca_file`]); `localhost` resolves to 127.0.0.1 for those.
    pub trust_ca: Option<PathBuf>,
    pub ttl: IdpTtl,
}

/// Lifetimes at the provider, in seconds (`None`: oidc-provider's default).
#[derive(Clone, Debug, Default)]
pub struct IdpTtl {
    pub access_token: Option<u64>,
    pub id_token: Option<u64>,
    pub refresh_token: Option<u64>,
    pub session: Option<u64>,
    pub grant: Option<u64>,
}

/// A registered client: `grant_types = [authorization_code, refresh_token]`,
/// `client_secret_basic`, `backchannel_logout_session_required` when it has a back-channel URI.
#[derive(Clone, Debug)]
pub struct IdpClient {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

/// A user at the provider. `claims` is what the provider may release (`email`,
/// `email_verified`, `name`, `preferred_username`, `groups`), per scope.
#[derive(Clone, Debug)]
pub struct IdpUser {
    pub sub: String,
    pub login: String,
    pub password: String,
    pub claims: Value,
}

impl IdpSetup {
    pub fn new(clients: Vec<IdpClient>, users: Vec<IdpUser>) -> IdpSetup {
        IdpSetup {
            clients,
            users,
            ..IdpSetup::default()
        }
    }

    fn to_json(&self) -> Value {
        let mut ttl = serde_json::Map::new();
        for (k, v) in [
            ("AccessToken", self.ttl.access_token),
            ("IdToken", self.ttl.id_token),
            ("RefreshToken", self.ttl.refresh_token),
            ("Session", self.ttl.session),
            ("Grant", self.ttl.grant),
        ] {
            if let Some(v) = v {
                ttl.insert(k.into(), v.into());
            }
        }
        let trust_ca_pem = self.trust_ca.as_ref().map(|p| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        });
        json!({
            "clients": self.clients.iter().map(IdpClient::to_json).collect::<Vec<_>>(),
            "users": self.users.iter().map(IdpUser::to_json).collect::<Vec<_>>(),
            "trust_ca_pem": trust_ca_pem,
            "ttl": ttl,
        })
    }
}

impl IdpClient {
    pub fn new(id: &str, secret: &str, redirect_uri: &str) -> IdpClient {
        IdpClient {
            id: id.into(),
            secret: secret.into(),
            redirect_uris: vec![redirect_uri.into()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
        }
    }

    /// The gateway as a client: redirect URI [`OIDC_CALLBACK_URI`], post-logout redirect to
    /// the public origin's `/`, back-channel logout to [`Gateway::oidc_backchannel_uri`].
    pub fn for_gateway(gw: &Gateway, id: &str, secret: &str) -> IdpClient {
        IdpClient {
            post_logout_redirect_uris: vec![format!("{DEFAULT_PUBLIC_ORIGIN}/")],
            backchannel_logout_uri: Some(gw.oidc_backchannel_uri()),
            ..IdpClient::new(id, secret, OIDC_CALLBACK_URI)
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            v["backchannel_logout_uri"] = uri.clone().into();
        }
        v
    }
}

impl IdpUser {
    /// A user with `email` `<login>@example.test` (verified), `name`, `preferred_username`
    /// and no groups.
    pub fn new(sub: &str, login: &str, password: &str) -> IdpUser {
        IdpUser {
            sub: sub.into(),
            login: login.into(),
            password: password.into(),
            claims: json!({
                "email": format!("{login}@example.test"),
                "email_verified": true,
                "name": format!("User {login}"),
                "preferred_username": login,
                "groups": [],
            }),
        }
    }

    pub fn groups(mut self, groups: &[&str]) -> IdpUser {
        self.claims["groups"] = json!(groups);
        self
    }

    /// Set (or, with `null`, remove) one claim.
    pub fn claim(mut self, name: &str, value: Value) -> IdpUser {
        match value {
            Value::Null => {
                if let Some(m) = self.claims.as_object_mut() {
                    m.remove(name);
                }
            }
            v => self.claims[name] = v,
        }
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "sub": self.sub,
            "login": self.login,
            "password": self.password,
            "claims": self.claims,
        })
    }
}

impl Gateway {
    /// `https://localhost:<https port>/.auth/oidc/backchannel-logout`: where the provider
    /// (which resolves `localhost` to 127.0.0.1) POSTs logout tokens to this gateway.
    pub fn oidc_backchannel_uri(&self) -> String {
        format!(
            "https://{PUBLIC_HOST}:{}/.auth/oidc/backchannel-logout",
            self.https.port()
        )
    }

    /// The CA of the gateway's certificate (for [`IdpSetup::trust_ca`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// The environment variable [`GatewayConfig::oidc_provider`] passes a provider's client secret
/// in: `SG_OIDC_<NAME>_SECRET`, the name upper-cased with anything but letters and digits as `_`.
pub fn oidc_secret_env(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("SG_OIDC_{upper}_SECRET")
}

impl GatewayConfig {
    /// `login.mode = "oidc"` and one `[[oidc.provider]]` for `idp` (issuer, client id, the
    /// secret through [`oidc_secret_env`], the provider's CA as `ca_file`). The harness's
    /// `login.users_file` stays set.
    pub fn oidc_provider(
        self,
        idp: &OidcProvider,
        name: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        self.oidc_provider_with(idp, name, client_id, client_secret, "")
    }

    /// [`GatewayConfig::oidc_provider`] with more keys (TOML lines) in the provider's table.
    pub fn oidc_provider_with(
        self,
        idp: &OidcProvider,
        name: &str,
        client_id: &str,
        client_secret: &str,
        keys: &str,
    ) -> Self {
        let env = oidc_secret_env(name);
        let table = oidc_provider_toml(name, idp.issuer(), client_id, &env, idp.ca_file(), keys);
        self.set("login", "mode", "\"oidc\"")
            .extra(&table)
            .env(&env, client_secret)
    }
}

/// One `[[oidc.provider]]` table.
pub fn oidc_provider_toml(
    name: &str,
    issuer: &str,
    client_id: &str,
    secret_env: &str,
    ca_file: &Path,
    keys: &str,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = format!(
        "\n[[oidc.provider]]\nname = {}\nissuer = {}\nclient_id = {}\nclient_secret_env = {}\nca_file = {}\n",
        q(name),
        q(issuer),
        q(client_id),
        q(secret_env),
        q(&ca_file.display().to_string()),
    );
    if !keys.trim().is_empty() {
        t.push_str(keys.trim_end());
        t.push('\n');
    }
    t
}

// ---------------------------------------------------------------- tokens

/// A PKCE pair (RFC 7636, S256).
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        use sha2::Digest as _;
        let verifier = random_secret();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// Verify `token`'s RS256 signature with the key its `kid` names in `jwks`; its claims, or why
/// not. Checks nothing else (the caller checks the claims).
pub fn verify_with_jwks(token: &str, jwks: &Value) -> Result<Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let header = decode_header(token).map_err(|e| format!("header: {e}"))?;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("jwks: {e}"))?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwk: {e}"))?;
    decode::<Value>(token, &key, &signature_only(Algorithm::RS256))
        .map(|d| d.claims)
        .map_err(|e| format!("signature: {e}"))
}

/// Verify an HS256 signature made with `secret`; the claims, or why not.
pub fn verify_hs256(token: &str, secret: &[u8]) -> Result<Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, decode};
    decode::<Value>(
        token,
        &DecodingKey::from_secret(secret),
        &signature_only(Algorithm::HS256),
    )
    .map(|d| d.claims)
    .map_err(|e| e.to_string())
}

fn signature_only(alg: jsonwebtoken::Algorithm) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

// ---------------------------------------------------------------- the browser

fn client_config(roots_der: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for der in roots_der {
        roots.add(der.clone()).expect("add a test CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

fn browser_with(
    roots: &[CertificateDer<'static>],
    gateway: Option<std::net::SocketAddr>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(roots))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30));
    if let Some(at) = gateway {
        b = b.resolve(PUBLIC_HOST, at);
    }
    b.build().expect("browser client")
}

/// A browser-like client: a cookie jar, redirects NOT followed automatically, trusting the
/// gateway's test CA and the provider's CA, `localhost` resolved to the gateway.
pub fn browser(gw: &Gateway, idp: &OidcProvider) -> reqwest::Client {
    browser_with(&[gw.pki.ca_der.clone(), idp.ca_der.clone()], Some(gw.https))
}

/// One response on the way.
#[derive(Clone, Debug)]
pub struct Hop {
    pub method: String,
    pub url: String,
    pub status: u16,
    /// The `Location`, resolved against `url`.
    pub location: Option<String>,
}

/// What [`follow`] saw: every hop, and the last response (read whole).
#[derive(Debug)]
pub struct Hops {
    pub hops: Vec<Hop>,
    /// The URL, status, headers and body of the last response.
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// The redirect target that matched `stop_at` (not requested).
    pub stopped_at: Option<String>,
}

impl Hops {
    /// The `stop_at` URL, else the last response's `Location`.
    pub fn location(&self) -> Option<&str> {
        self.stopped_at
            .as_deref()
            .or_else(|| self.hops.last().and_then(|h| h.location.as_deref()))
    }

    /// A query parameter of [`Hops::location`] (`code`, `state`, `iss`, `error`).
    pub fn param(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(self.location()?).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether some hop requested a URL that starts with `prefix`.
    pub fn visited(&self, prefix: &str) -> bool {
        self.hops.iter().any(|h| h.url.starts_with(prefix))
    }

    /// Whether the last page is the provider's login form.
    pub fn is_login_form(&self) -> bool {
        html_forms(&self.body).iter().any(Form::is_login)
    }
}

/// The next request on the way.
#[derive(Clone, Debug)]
enum Step {
    Get(String),
    Post(String, Vec<(String, String)>),
}

impl Step {
    fn url(&self) -> &str {
        match self {
            Step::Get(u) | Step::Post(u, _) => u,
        }
    }
    fn with_url(&self, url: String) -> Step {
        match self {
            Step::Get(_) => Step::Get(url),
            Step::Post(_, form) => Step::Post(url, form.clone()),
        }
    }
}

const MAX_HOPS: usize = 30;

/// Follow a chain like a browser from `url` across the gateway and the provider: redirects
/// (303/302/301 as GET, 307/308 keeping the method and body), the provider's login form
/// filled with `login` (once: a second login form, as after a wrong password, ends the walk),
/// and pages that submit a form by script as they load (`form_post`, the provider's logout
/// without a session). Stops at the first other response, or at a redirect whose target
/// matches `stop_at` (not requested, so a test can alter the callback URL). Panics after
/// 30 hops (a redirect loop).
pub async fn follow(
    browser: &reqwest::Client,
    url: &str,
    login: Option<(&str, &str)>,
    stop_at: Option<&dyn Fn(&str) -> bool>,
) -> Hops {
    walk(browser, Step::Get(url.to_string()), login, stop_at).await
}

/// On the provider's logout confirmation page (`page`, from [`follow`]): press "Yes, sign me
/// out" (`yes`) or "No, stay signed in", and follow on as [`follow`] does.
pub async fn confirm_logout(
    browser: &reqwest::Client,
    page: &Hops,
    yes: bool,
    stop_at: Option<&dyn Fn(&str) -> bool>,
) -> Hops {
    let forms = html_forms(&page.body);
    let form = forms
        .iter()
        .find(|f| f.id.as_deref() == Some("op.logoutForm"))
        .unwrap_or_else(|| panic!("no logout form on {}: {}", page.url, page.body));
    let mut fields = form.fields.clone();
    if yes {
        fields.push(("logout".into(), "yes".into()));
    }
    let action = resolve(&page.url, &form.action);
    walk(browser, Step::Post(action, fields), None, stop_at).await
}

async fn walk(
    browser: &reqwest::Client,
    mut step: Step,
    login: Option<(&str, &str)>,
    stop_at: Option<&dyn Fn(&str) -> bool>,
) -> Hops {
    let mut hops = Vec::new();
    let mut login_left = login;
    loop {
        assert!(
            hops.len() < MAX_HOPS,
            "more than {MAX_HOPS} hops: {hops:#?}"
        );
        let url = step.url().to_string();
        let (method, req) = match &step {
            Step::Get(u) => ("GET", browser.get(u)),
            Step::Post(u, form) => ("POST", post_form(browser, u, form)),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}; hops so far: {hops:#?}"));
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| resolve(&url, l));
        hops.push(Hop {
            method: method.into(),
            url: url.clone(),
            status,
            location: location.clone(),
        });
        let headers = resp.headers().clone();
        let done = |body: String, stopped_at: Option<String>, hops: Vec<Hop>| Hops {
            hops,
            url: url.clone(),
            status,
            headers: headers.clone(),
            body,
            stopped_at,
        };
        if (300..400).contains(&status)
            && let Some(to) = location
        {
            if stop_at.is_some_and(|f| f(&to)) {
                return done(String::new(), Some(to), hops);
            }
            step = match status {
                307 | 308 => step.with_url(to),
                _ => Step::Get(to),
            };
            continue;
        }
        let body = resp.text().await.unwrap_or_default();
        match next_form_step(&url, &body, &mut login_left) {
            Some(next) => step = next,
            None => return done(body, None, hops),
        }
    }
}

/// The form a browser (with the user typing the login once) submits on this page, if any.
fn next_form_step(url: &str, body: &str, login: &mut Option<(&str, &str)>) -> Option<Step> {
    let forms = html_forms(body);
    if let Some(form) = forms.iter().find(|f| f.is_login()) {
        let (user, password) = login.take()?;
        let fields = vec![
            ("login".to_string(), user.to_string()),
            ("password".to_string(), password.to_string()),
        ];
        return Some(Step::Post(resolve(url, &form.action), fields));
    }
    if body.contains("document.forms[0].submit()") {
        let form = forms.first()?;
        if form.method.eq_ignore_ascii_case("post") {
            return Some(Step::Post(resolve(url, &form.action), form.fields.clone()));
        }
    }
    None
}

/// A form POST (`application/x-www-form-urlencoded`), as a browser submits one.
pub fn post_form(
    client: &reqwest::Client,
    url: &str,
    fields: &[(String, String)],
) -> reqwest::RequestBuilder {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form_urlencode(&pairs))
}

fn resolve(base: &str, reference: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(reference))
        .map(String::from)
        .unwrap_or_else(|_| reference.to_string())
}

// ---------------------------------------------------------------- HTML forms

/// A `<form>` of a page, as far as the provider's and the gateway's simple pages need.
#[derive(Clone, Debug)]
pub struct Form {
    pub id: Option<String>,
    pub method: String,
    pub action: String,
    /// Its `<input>`s with a name, with their values (empty when none).
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The provider's login form (`/interaction/UID/login` with `login` and `password`).
    fn is_login(&self) -> bool {
        self.action.contains("/interaction/")
            && self.action.ends_with("/login")
            && self.fields.iter().any(|(n, _)| n == "login")
            && self.fields.iter().any(|(n, _)| n == "password")
    }
}

/// Every `<form>` in `html` with its inputs.
pub fn html_forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<form").map(|i| at + i) {
        let Some(tag_end) = lower[start..].find('>').map(|i| start + i) else {
            break;
        };
        let end = lower[tag_end..]
            .find("</form")
            .map_or(html.len(), |i| tag_end + i);
        let attrs = tag_attrs(&html[start + 5..tag_end]);
        let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut fields = Vec::new();
        let inner = &html[tag_end..end];
        let inner_lower = &lower[tag_end..end];
        let mut i = 0;
        while let Some(s) = inner_lower[i..].find("<input").map(|j| i + j) {
            let e = inner_lower[s..].find('>').map_or(inner.len(), |j| s + j);
            let a = tag_attrs(&inner[s + 6..e]);
            let ga = |n: &str| a.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            if let Some(name) = ga("name") {
                fields.push((name, ga("value").unwrap_or_default()));
            }
            i = e;
        }
        forms.push(Form {
            id: get("id"),
            method: get("method").unwrap_or_else(|| "get".into()),
            action: get("action").unwrap_or_default(),
            fields,
        });
        at = end;
    }
    forms
}

/// The attributes of a tag (the text between its name and `>`), names lower-cased, values
/// unescaped.
fn tag_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'/') {
            i += 1;
        }
        if ns == i {
            i += 1;
            continue;
        }
        let name = s[ns..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && matches!(b[i], b'"' | b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = html_unescape(&s[vs..i.min(b.len())]);
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = html_unescape(&s[vs..i]);
            }
        }
        out.push((name, value));
    }
    out
}

/// `&amp; &lt; &gt; &quot; &apos; &#NN; &#xNN;` decoded; anything else left as it is.
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{html_forms, html_unescape, oidc_provider_toml, oidc_secret_env, parse_ready_line};

    #[test]
    fn forms_are_read_with_their_inputs_and_entities() {
        let page = r#"<p>x</p><FORM id="op.logoutForm" method="post" action="/session/end/confirm?a=1&amp;b=2"><input type="hidden" name="xsrf" value="a&#34;b&#x27;c"/></form>
            <form method=post action='/interaction/u1/login'><input name="login" autocomplete="username"><input type="password" name="password"><button>go</button></form>"#;
        let forms = html_forms(page);
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[0].id.as_deref(), Some("op.logoutForm"));
        assert_eq!(forms[0].action, "/session/end/confirm?a=1&b=2");
        assert_eq!(forms[0].fields, vec![("xsrf".into(), "a\"b'c".into())]);
        assert!(forms[1].is_login());
        assert!(!forms[0].is_login());
        assert_eq!(forms[1].method, "post");
        assert_eq!(
            html_unescape("a&b &amp;&unknown; &#9999999999; &#60;&lt;"),
            "a&b &&unknown; &#9999999999; <<"
        );
    }

    #[test]
    fn ready_line_and_gateway_table() {
        assert_eq!(
            parse_ready_line("ready issuer=https://127.0.0.1:1 control=http://127.0.0.1:2"),
            Some(("https://127.0.0.1:1".into(), "http://127.0.0.1:2".into()))
        );
        assert_eq!(parse_ready_line("ready issuer=https://127.0.0.1:1"), None);
        assert_eq!(oidc_secret_env("corp-idp.1"), "SG_OIDC_CORP_IDP_1_SECRET");
        let t = oidc_provider_toml(
            "corp",
            "https://127.0.0.1:9",
            "gateway",
            "SG_OIDC_CORP_SECRET",
            std::path::Path::new("/tmp/a \"b\".pem"),
            "scopes = [\"openid\"]",
        );
        let v: toml::Value = toml::from_str(&t).unwrap();
        let p = &v["oidc"]["provider"][0];
        assert_eq!(p["name"].as_str(), Some("corp"));
        assert_eq!(p["issuer"].as_str(), Some("https://127.0.0.1:9"));
        assert_eq!(p["client_secret_env"].as_str(), Some("SG_OIDC_CORP_SECRET"));
        assert_eq!(p["ca_file"].as_str(), Some("/tmp/a \"b\".pem"));
        assert_eq!(p["scopes"][0].as_str(), Some("openid"));
    }
}
