//! End-to-end harness: the real `sessiongate` binary over real TLS in front of a real upstream
//! process (`tests/upstream.py`), all on free loopback ports.
//!
//! Each test builds its own [`Gateway`] (certificates generated at test time with rcgen, fresh
//! secrets, fresh users file, fresh audit log); dropping it kills both child processes. Nothing
//! here keeps a cookie store: tests carry cookies by hand so they can assert on them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ALICE_PASSWORD: &str = "alice-Correct-Horse-Battery-71";
pub const BOB_PASSWORD: &str = "bob-Tr0ub4dor-and-three-33";

pub const ACCESS_COOKIE: &str = "__Host-sg-access";
pub const REFRESH_COOKIE: &str = "__Host-sg-refresh";

/// The credential query parameters the gateway must never accept nor forward.
pub const CREDENTIAL_PARAMS: [&str; 7] = [
    "access_token",
    "refresh_token",
    "token",
    "id_token",
    "jwt",
    "session",
    "sid",
];

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The gateway binary: the one cargo built for this test, unless `SG_E2E_BIN` names another
/// (a release build, or a deliberately broken build to check that the suite notices).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SG_E2E_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sessiongate").into())
    })
}

pub fn upstream_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream.py")
}

/// A free loopback port: bind `127.0.0.1:0`, note the port, drop the listener.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A random 43-character base64url string (32 random bytes).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A test CA and a leaf for `localhost` + `127.0.0.1`, written as PEM files into `dir`.
pub struct Pki {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sessiongate e2e test CA");
        ca_params.distinguished_name = dn;
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "localhost");
        leaf_params.distinguished_name = dn;
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        // Leaf first, then the chain.
        std::fs::write(&cert_path, format!("{}{}", leaf_cert.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        Pki {
            ca_der: ca_cert.der().clone(),
            cert_path,
            key_path,
        }
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add test CA");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

// ---------------------------------------------------------------------------------------------
// Users and password hashes
// ---------------------------------------------------------------------------------------------

/// `sessiongate hash-password`, password on stdin, PHC string on stdout.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sessiongate hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let phc = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("hash-password printed no argon2id PHC string: {stdout:?}"))
        .to_string();
    assert!(
        !phc.contains(password),
        "the PHC string must not contain the password"
    );
    phc
}

pub struct Hashes {
    pub alice: String,
    pub bob: String,
}

pub fn hashes() -> &'static Hashes {
    static HASHES: OnceLock<Hashes> = OnceLock::new();
    HASHES.get_or_init(|| Hashes {
        alice: hash_password(ALICE_PASSWORD),
        bob: hash_password(BOB_PASSWORD),
    })
}

pub fn users_toml() -> String {
    let h = hashes();
    format!(
        "[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\nroles = [\"admin\", \"dev\"]\n\n\
         [[user]]\nname = \"bob\"\npassword_hash = \"{}\"\nroles = [\"dev\"]\n",
        h.alice, h.bob
    )
}

// ---------------------------------------------------------------------------------------------
// gateway.toml builder
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Route {
    pub path_prefix: String,
    pub public: Option<bool>,
    pub upstream: Option<String>,
}

impl Route {
    pub fn public(prefix: &str) -> Route {
        Route {
            path_prefix: prefix.into(),
            public: Some(true),
            upstream: None,
        }
    }
    pub fn protected(prefix: &str) -> Route {
        Route {
            path_prefix: prefix.into(),
            public: None,
            upstream: None,
        }
    }
    pub fn to(mut self, upstream: &str) -> Route {
        self.upstream = Some(upstream.into());
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
    /// Overrides `server.public_origin` (default `https://localhost:<https port>`).
    pub public_origin: Option<String>,
    /// Appended verbatim at the end of the file.
    pub extra_toml: String,
    /// Extra environment for the gateway process.
    pub env: Vec<(String, String)>,
    /// `(table, key, raw TOML value)` set inside a table the harness writes (`server`,
    /// `keys`, `login`, ...), replacing the harness's own value of that key; see
    /// [`GatewayConfig::set`].
    pub table_keys: Vec<(String, String, String)>,
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
            public_origin: None,
            extra_toml: String::new(),
            env: vec![],
            table_keys: vec![],
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
            .unwrap_or_else(|| format!("https://localhost:{}", p.https.port()));
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
        }
        for r in &self.routes {
            writeln!(s, "\n[[route]]\npath_prefix = \"{}\"", r.path_prefix).unwrap();
            if let Some(public) = r.public {
                writeln!(s, "public = {public}").unwrap();
            }
            if let Some(u) = &r.upstream {
                writeln!(s, "upstream = \"{u}\"").unwrap();
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
        set_table_keys(&s, &self.table_keys)
    }
}

pub struct RenderParams {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub upstream_url: String,
    pub users_file: PathBuf,
    pub audit_file: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// The upstream process
// ---------------------------------------------------------------------------------------------

pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
}

impl Upstream {
    pub fn start() -> Upstream {
        let mut child = Command::new("python3")
            .arg(upstream_script())
            .args(["--port", "0", "--journal-stdout"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 tests/upstream.py (is python3 installed?)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("upstream listening ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("upstream address"),
            Err(e) => {
                let _ = child.kill();
                panic!("upstream did not print its listening line: {e}");
            }
        };
        Upstream { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct JournalEntry {
    pub method: String,
    pub path: String,
    pub query: String,
}

// ---------------------------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------------------------

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub upstream: Upstream,
    pub access_secret: String,
    pub refresh_secret: String,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    pub audit_log: PathBuf,
    /// HTTPS client: ALPN h2 + http/1.1, test CA trusted, redirects off, no cookie store,
    /// `localhost` resolved to the gateway.
    pub client: reqwest::Client,
    /// Same, HTTP/1.1 only.
    pub client_h1: reqwest::Client,
    /// Plain-HTTP client for the redirect and admin listeners and the upstream journal.
    pub plain: reqwest::Client,
    raw_tls: Arc<rustls::ClientConfig>,
    child: Option<Child>,
    stdout_thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Gateway {
        tokio::task::spawn_blocking(move || Gateway::start_blocking(config))
            .await
            .expect("gateway start task")
    }

    fn start_blocking(config: GatewayConfig) -> Gateway {
        install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-e2e-")
            .tempdir()
            .expect("tempdir");
        let pki = Pki::generate(dir.path());
        let upstream = Upstream::start();
        let users_file = dir.path().join("users.toml");
        std::fs::write(&users_file, users_toml()).unwrap();
        let audit_log = dir.path().join("audit.log");
        let config_path = dir.path().join("gateway.toml");
        let (access_secret, refresh_secret) = config
            .secrets
            .clone()
            .unwrap_or_else(|| (random_secret(), random_secret()));
        let stdout_log = dir.path().join("gateway.stdout.log");
        let stderr_log = dir.path().join("gateway.stderr.log");

        // A port that `free_port` saw free can be taken by another process before the gateway
        // binds it: on that (rare) race, try again with fresh ports.
        let mut attempt = 0;
        let (https, http, admin, child, stdout_thread) = loop {
            attempt += 1;
            let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let params = RenderParams {
                https,
                http,
                admin,
                cert: pki.cert_path.clone(),
                key: pki.key_path.clone(),
                upstream_url: upstream.url(),
                users_file: users_file.clone(),
                audit_file: audit_log.clone(),
            };
            std::fs::write(&config_path, config.render(&params)).unwrap();
            let launch = Launch {
                config_path: &config_path,
                dir: dir.path(),
                access_secret: &access_secret,
                refresh_secret: &refresh_secret,
                env: &config.env,
                stdout_log: &stdout_log,
                stderr_log: &stderr_log,
                addrs: (https, http, admin),
                append_logs: false,
            };
            match launch.run() {
                Ok((child, thread)) => break (https, http, admin, child, thread),
                Err(LaunchError::PortTaken(report)) if attempt < 3 => {
                    eprintln!(
                        "harness: the gateway lost a port race (attempt {attempt}); fresh ports\n{report}"
                    );
                }
                Err(LaunchError::PortTaken(report) | LaunchError::Failed(report)) => {
                    panic!("{report}")
                }
            }
        };
        let GatewayClients {
            client,
            client_h1,
            plain,
            raw_tls,
        } = GatewayClients::build(&pki, https);

        Gateway {
            dir,
            pki,
            config,
            config_path,
            https,
            http,
            admin,
            upstream,
            access_secret,
            refresh_secret,
            stdout_log,
            stderr_log,
            audit_log,
            client,
            client_h1,
            plain,
            raw_tls,
            child: Some(child),
            stdout_thread: Some(stdout_thread),
        }
    }

    pub async fn start_default() -> Gateway {
        Gateway::start(GatewayConfig::default()).await
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.https.port())
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.origin(), path_and_query)
    }

    pub fn host_header(&self) -> String {
        format!("localhost:{}", self.https.port())
    }

    /// Stop the gateway with SIGTERM (graceful: logs flushed), then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let stdout_thread = self.stdout_thread.take();
        tokio::task::spawn_blocking(move || {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(t) = stdout_thread {
                let _ = t.join();
            }
        })
        .await
        .unwrap();
    }

    // --- logs ------------------------------------------------------------------------------

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_log).unwrap_or_default()).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_log).unwrap_or_default()).into_owned()
    }
    pub fn audit_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.audit_log).unwrap_or_default()).into_owned()
    }
    pub fn audit_events(&self) -> Vec<Value> {
        self.audit_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait (up to 10 s) until the audit file holds a line with `"event":"<event>"`.
    pub async fn wait_for_audit(&self, event: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self
                .audit_events()
                .into_iter()
                .find(|v| v.get("event").and_then(Value::as_str) == Some(event))
            {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "no audit line with \"event\":\"{event}\" within 10 s; audit file:\n{}",
                    self.audit_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- upstream journal -------------------------------------------------------------------

    pub async fn journal(&self) -> Vec<JournalEntry> {
        self.plain
            .get(format!("{}/__journal", self.upstream.url()))
            .send()
            .await
            .expect("upstream journal")
            .json()
            .await
            .expect("journal json")
    }

    /// Assert that the upstream never received a request whose path contains `needle`.
    pub async fn assert_upstream_never_saw(&self, needle: &str) {
        let j = self.journal().await;
        assert!(
            j.iter()
                .all(|e| !e.path.contains(needle) && !e.query.contains(needle)),
            "upstream saw {needle:?}: {j:?}"
        );
    }

    pub async fn journal_len(&self) -> usize {
        self.journal().await.len()
    }

    // --- requests ---------------------------------------------------------------------------

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("origin", self.origin())
            .header("sec-fetch-site", "same-origin")
    }

    /// Form login through `POST /.auth/login`; asserts the `303` and both cookies.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        let resp = self.login_form(user, password, "/").await;
        assert_eq!(
            resp.status(),
            303,
            "form login of {user} should answer 303; body: {:?}",
            resp.text().await
        );
        Session::from_response_headers(resp.headers())
            .unwrap_or_else(|| panic!("login response lacks the session cookies"))
    }

    pub async fn login_alice(&self) -> Session {
        self.login("alice", ALICE_PASSWORD).await
    }

    pub async fn login_form(
        &self,
        user: &str,
        password: &str,
        return_to: &str,
    ) -> reqwest::Response {
        let body = form_urlencode(&[
            ("username", user),
            ("password", password),
            ("return_to", return_to),
        ]);
        self.post("/.auth/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(body)
            .send()
            .await
            .expect("POST /.auth/login")
    }

    pub async fn login_json(&self, user: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/.auth/login"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("POST /.auth/login (json)")
    }

    /// A protected-route request carrying `session`'s cookies.
    pub async fn get_with(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.get(path)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request")
    }

    // --- raw TLS ----------------------------------------------------------------------------

    /// A TLS connection (ALPN http/1.1, SNI `localhost`) to the gateway's HTTPS listener.
    pub async fn raw_connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.https).await.expect("tcp connect");
        let connector = tokio_rustls::TlsConnector::from(self.raw_tls.clone());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.expect("tls handshake")
    }

    /// Write these exact bytes over a fresh TLS connection and read one response.
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        let mut s = self.raw_connect().await;
        s.write_all(request).await.expect("write raw request");
        s.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_secs(15), read_response(&mut s, true)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!(
                "no well-formed response to raw request {:?}: {e}",
                String::from_utf8_lossy(request)
            ),
            Err(_) => panic!(
                "timed out waiting for a response to raw request {:?}",
                String::from_utf8_lossy(request)
            ),
        }
    }

    /// `GET <target> HTTP/1.1` with the right Host, `Connection: close`, and extra header lines.
    pub async fn raw_get(&self, target: &str, extra_headers: &[(&str, &str)]) -> RawResponse {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", self.host_header());
        for (k, v) in extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        self.raw(req.as_bytes()).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 response parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body_text()))
    }
}

/// Read one HTTP/1.1 response head (and, when `with_body`, its body) from `s`.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    with_body: bool,
) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so that nothing after the head is consumed (upgrades reuse the stream).
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed after {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if !with_body || status == 101 || status == 204 || status == 304 || (100..200).contains(&status)
    {
        return Ok(resp);
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length".to_string())?;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        resp.body = body;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        resp.body = dechunk(&rest);
    } else {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        resp.body = rest;
    }
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[pos + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attributes in order, names as sent.
    pub attrs: Vec<(String, Option<String>)>,
    pub raw: String,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let attrs = parts
            .map(|a| {
                let a = a.trim();
                match a.split_once('=') {
                    Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                    None => (a.to_string(), None),
                }
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Some(SetCookie {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
            attrs,
            raw: raw.to_string(),
        })
    }
    /// `Some(value)` for `Name=value`, `Some("")` for a flag, `None` when absent.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    pub fn max_age(&self) -> Option<i64> {
        self.attr("max-age").and_then(|v| v.parse().ok())
    }
}

pub fn set_cookies(headers: &HeaderMap) -> Vec<SetCookie> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(SetCookie::parse)
        .collect()
}

pub fn set_cookie_named(headers: &HeaderMap, name: &str) -> Option<SetCookie> {
    set_cookies(headers).into_iter().find(|c| c.name == name)
}

/// The gateway's two session cookies, as a client holds them.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

impl Session {
    /// Both cookies from a response, if it sets both (with a non-empty value).
    pub fn from_response_headers(headers: &HeaderMap) -> Option<Session> {
        let a = set_cookie_named(headers, ACCESS_COOKIE)?;
        let r = set_cookie_named(headers, REFRESH_COOKIE)?;
        if a.value.is_empty() || r.value.is_empty() {
            return None;
        }
        Some(Session {
            access: a.value,
            refresh: r.value,
        })
    }
    /// Take new token values from a response's `Set-Cookie`s. A cookie being cleared (empty
    /// value or `Max-Age=0`) is ignored: the client keeps the old token, as an attacker who
    /// copied it would, so later requests prove the server refuses it.
    pub fn update(&mut self, headers: &HeaderMap) {
        let fresh = |c: &SetCookie| !c.value.is_empty() && c.max_age() != Some(0);
        if let Some(c) = set_cookie_named(headers, ACCESS_COOKIE).filter(fresh) {
            self.access = c.value;
        }
        if let Some(c) = set_cookie_named(headers, REFRESH_COOKIE).filter(fresh) {
            self.refresh = c.value;
        }
    }
    pub fn cookie_header(&self) -> String {
        format!(
            "{ACCESS_COOKIE}={}; {REFRESH_COOKIE}={}",
            self.access, self.refresh
        )
    }
    pub fn access_only(&self) -> String {
        format!("{ACCESS_COOKIE}={}", self.access)
    }
    pub fn refresh_only(&self) -> String {
        format!("{REFRESH_COOKIE}={}", self.refresh)
    }
}

// ---------------------------------------------------------------------------------------------
// The upstream's echo
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Echo {
    pub async fn from(resp: reqwest::Response) -> Echo {
        let status = resp.status();
        let text = resp.text().await.expect("response body");
        assert_eq!(
            status, 200,
            "expected the upstream's echo, got {status}: {text}"
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {text}"))
    }
    pub fn from_raw(resp: &RawResponse) -> Echo {
        assert_eq!(
            resp.status,
            200,
            "expected the upstream's echo, got {}: {}",
            resp.status,
            resp.body_text()
        );
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {}", resp.body_text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions and small helpers
// ---------------------------------------------------------------------------------------------

/// `strict-transport-security` with `max-age` ≥ one year.
pub fn assert_hsts_value(value: Option<&str>, what: &str) {
    let v = value.unwrap_or_else(|| panic!("{what}: no strict-transport-security header"));
    let max_age = v
        .split(';')
        .map(str::trim)
        .find_map(|d| {
            d.strip_prefix("max-age=")
                .or_else(|| d.strip_prefix("Max-Age="))
        })
        .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS without max-age: {v:?}"));
    assert!(
        max_age >= 31_536_000,
        "{what}: HSTS max-age {max_age} < 31536000"
    );
}

pub fn assert_hsts(headers: &HeaderMap, what: &str) {
    assert_hsts_value(
        headers
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        what,
    );
}

pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The JSON payload of a JWT, without verifying anything.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token:?}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON payload")
}

pub fn jwt_header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("base64url header"))
        .expect("JSON header")
}

/// Sleep until the wall clock is past the token's `exp` by `margin`.
pub async fn sleep_past_exp(token: &str, margin: Duration) {
    let exp = jwt_claims(token)["exp"]
        .as_u64()
        .expect("token has a numeric exp");
    let target = UNIX_EPOCH + Duration::from_secs(exp) + margin;
    if let Ok(d) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

/// The HMAC key bytes the gateway uses for a secret given as a string: either the string's
/// bytes or its base64url decoding. Decided by checking a real token's signature.
pub fn hmac_key_for(secret: &str, real_token: &str) -> Vec<u8> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let mut candidates = vec![secret.as_bytes().to_vec()];
    if let Ok(b) = URL_SAFE_NO_PAD.decode(secret) {
        candidates.push(b);
    }
    for key in candidates {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        if decode::<Value>(real_token, &DecodingKey::from_secret(&key), &v).is_ok() {
            return key;
        }
    }
    panic!("the token is not HS256-signed with the configured secret (as text or base64url)");
}

/// Sign `claims` with HS256 and `key`, copying `kid` from `like`.
pub fn forge_hs256(like: &str, claims: &Value, key: &[u8]) -> String {
    let real = jsonwebtoken::decode_header(like).expect("real token header");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = real.kid;
    header.typ = real.typ;
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("encode forged token")
}

/// An unsigned (`alg: none`) token with these claims and the real token's `kid`.
pub fn forge_alg_none(like: &str, claims: &Value) -> String {
    let mut header = jwt_header(like);
    header["alg"] = Value::String("none".into());
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

/// Lines of every log the gateway wrote (stdout, stderr, audit).
pub fn all_logs(gw: &Gateway) -> String {
    format!(
        "{}\n{}\n{}",
        gw.stdout_text(),
        gw.stderr_text(),
        gw.audit_text()
    )
}

/// Run `sessiongate check-config --config <file>` with these secrets.
pub fn check_config(config_path: &Path, access: &str, refresh: &str) -> (bool, String) {
    let out = Command::new(bin())
        .arg("check-config")
        .arg("--config")
        .arg(config_path)
        .env_remove("RUST_LOG")
        .env("SG_TEST_ACCESS_SECRET", access)
        .env("SG_TEST_REFRESH_SECRET", refresh)
        .stdin(Stdio::null())
        .output()
        .expect("run sessiongate check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Session security stages: config keys inside the harness's tables, clients on other networks,
// the admin listener
// ---------------------------------------------------------------------------------------------

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

impl Gateway {
    /// A URL on the admin listener (plain HTTP).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Form login with extra request headers (`User-Agent`, `X-Forwarded-For`, ...); asserts
    /// the `303` and both cookies.
    pub async fn login_with(
        &self,
        user: &str,
        password: &str,
        headers: &[(&str, &str)],
    ) -> Session {
        let body = form_urlencode(&[("username", user), ("password", password)]);
        let mut req = self
            .post("/.auth/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST /.auth/login");
        let status = resp.status();
        let session = Session::from_response_headers(resp.headers());
        assert_eq!(
            status,
            303,
            "login of {user} with {headers:?}: {:?}",
            resp.text().await
        );
        session.unwrap_or_else(|| panic!("login of {user} set no session cookies"))
    }
}

#[test]
fn set_table_keys_replaces_adds_and_appends() {
    let toml = "[server]\nlisten = \"a\"\n\n[login]\nmode = \"users_file\"\nusers_file = \"u\"\n";
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

/// The session store a stage test runs on: memory, or a fresh `redis-server` that lives as
/// long as this value. See [`for_both_stores!`](crate::for_both_stores).
pub struct StoreUnderTest {
    pub spec: StoreSpec,
    pub redis: Option<RedisServer>,
}

impl StoreUnderTest {
    pub async fn memory() -> StoreUnderTest {
        StoreUnderTest {
            spec: StoreSpec::Memory,
            redis: None,
        }
    }

    pub async fn redis() -> StoreUnderTest {
        let redis = RedisServer::start().await;
        StoreUnderTest {
            spec: StoreSpec::Redis { url: redis.url() },
            redis: Some(redis),
        }
    }

    /// Start a gateway with `cfg` on this store; with Redis, once `/readyz` says the store
    /// answers and the revocation set is synchronised.
    pub async fn start(&self, cfg: GatewayConfig) -> Gateway {
        let gw = Gateway::start(cfg.store(self.spec.clone())).await;
        if self.redis.is_some() {
            gw.wait_readyz(200, Duration::from_secs(10)).await;
        }
        gw
    }
}

/// `for_both_stores!(a, b);` turns each `async fn a(store: StoreUnderTest)` of the calling
/// module into two tests, `a::memory` and `a::redis`: the behaviour must not depend on the
/// store.
#[macro_export]
macro_rules! for_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn memory() {
                    super::$name($crate::harness::StoreUnderTest::memory().await).await
                }

                #[tokio::test]
                async fn redis() {
                    super::$name($crate::harness::StoreUnderTest::redis().await).await
                }
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------
// Gateway processes across restarts, and the Redis store: `[store]`, redis-server and a
// three-master Redis Cluster on free loopback ports (issue 4)
// ---------------------------------------------------------------------------------------------

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

/// How to start one `sessiongate run` process and know it is ready.
struct Launch<'a> {
    config_path: &'a Path,
    dir: &'a Path,
    access_secret: &'a str,
    refresh_secret: &'a str,
    env: &'a [(String, String)],
    stdout_log: &'a Path,
    stderr_log: &'a Path,
    /// `(https, http, admin)` the ready line must name.
    addrs: (SocketAddr, SocketAddr, SocketAddr),
    /// Keep what earlier runs logged (a restart) instead of starting the logs afresh.
    append_logs: bool,
}

enum LaunchError {
    /// The process exited before it was ready because a listener address was taken.
    PortTaken(String),
    /// Anything else; the report holds the config and both logs.
    Failed(String),
}

fn log_file(path: &Path, append: bool) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl Launch<'_> {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}.\n--- config ---\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(self.config_path).unwrap_or_default(),
            std::fs::read_to_string(self.stdout_log).unwrap_or_default(),
            std::fs::read_to_string(self.stderr_log).unwrap_or_default()
        )
    }

    /// Spawn the gateway and wait for `sessiongate ready ...` naming the configured addresses.
    fn run(&self) -> Result<(Child, std::thread::JoinHandle<()>), LaunchError> {
        let stderr_file = log_file(self.stderr_log, self.append_logs);
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path)
            .current_dir(self.dir)
            .env_remove("RUST_LOG")
            .env("SG_TEST_ACCESS_SECRET", self.access_secret)
            .env("SG_TEST_REFRESH_SECRET", self.refresh_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sessiongate run");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let mut out_file = log_file(self.stdout_log, self.append_logs);
        let stdout_thread = std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = out_file.write_all(&line);
                        let _ = out_file.flush();
                        let text = String::from_utf8_lossy(&line);
                        if text.starts_with("sessiongate ready ")
                            && let Some(tx) = tx.take()
                        {
                            let _ = tx.send(text.trim_end().to_string());
                        }
                    }
                }
            }
        });

        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Standard output closed before the ready line: the process is exiting.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                let stderr = std::fs::read_to_string(self.stderr_log).unwrap_or_default();
                let report = self.report("gateway exited before printing `sessiongate ready `");
                return Err(if stderr.contains("cannot listen") {
                    LaunchError::PortTaken(report)
                } else {
                    LaunchError::Failed(report)
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                return Err(LaunchError::Failed(self.report(&format!(
                    "gateway never printed `sessiongate ready ` ({e})"
                ))));
            }
        };
        // `sessiongate ready https=127.0.0.1:P1 http=127.0.0.1:P2 admin=127.0.0.1:P3`
        let mut fields = BTreeMap::new();
        for part in ready
            .trim_start_matches("sessiongate ready ")
            .split_whitespace()
        {
            if let Some((k, v)) = part.split_once('=') {
                fields.insert(k.to_string(), v.to_string());
            }
        }
        let parse = |k: &str| -> SocketAddr {
            fields
                .get(k)
                .unwrap_or_else(|| panic!("ready line lacks {k}=: {ready:?}"))
                .parse()
                .unwrap_or_else(|e| panic!("ready line {k}= is not an address ({e}): {ready:?}"))
        };
        let (https, http, admin) = self.addrs;
        assert_eq!(
            parse("https"),
            https,
            "ready line https= differs from server.listen"
        );
        assert_eq!(
            parse("http"),
            http,
            "ready line http= differs from server.redirect_listen"
        );
        assert_eq!(
            parse("admin"),
            admin,
            "ready line admin= differs from server.admin_listen"
        );
        Ok((child, stdout_thread))
    }
}

/// The clients a [`Gateway`] hands to tests.
struct GatewayClients {
    client: reqwest::Client,
    client_h1: reqwest::Client,
    plain: reqwest::Client,
    raw_tls: Arc<rustls::ClientConfig>,
}

impl GatewayClients {
    fn build(pki: &Pki, https: SocketAddr) -> GatewayClients {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(pki.client_config(&[b"h2", b"http/1.1"]))
            .redirect(reqwest::redirect::Policy::none())
            .resolve("localhost", https)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        let client_h1 = reqwest::Client::builder()
            .tls_backend_preconfigured(pki.client_config(&[b"http/1.1"]))
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .resolve("localhost", https)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("plain client");
        GatewayClients {
            client,
            client_h1,
            plain,
            raw_tls: Arc::new(pki.client_config(&[b"http/1.1"])),
        }
    }
}

impl Gateway {
    /// The configured `server.public_origin` (what tokens carry as `iss` and what a
    /// cookie-authenticated unsafe request must name in `Origin`).
    pub fn public_origin(&self) -> String {
        self.config
            .public_origin
            .clone()
            .unwrap_or_else(|| self.origin())
    }

    /// Stop the gateway (graceful) and start it again with the same config file, ports,
    /// secrets, directory and upstream; returns once the ready line is back.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.relaunch().await;
    }

    /// Start the gateway again after [`Gateway::stop`], as [`Gateway::restart`] does. Logs
    /// are appended to, so they hold every run.
    pub async fn relaunch(&mut self) {
        assert!(
            self.child.is_none(),
            "relaunch: the gateway is still running"
        );
        let config_path = self.config_path.clone();
        let dir = self.dir.path().to_path_buf();
        let secrets = (self.access_secret.clone(), self.refresh_secret.clone());
        let env = self.config.env.clone();
        let logs = (self.stdout_log.clone(), self.stderr_log.clone());
        let addrs = (self.https, self.http, self.admin);
        let (child, thread) = tokio::task::spawn_blocking(move || {
            let launch = Launch {
                config_path: &config_path,
                dir: &dir,
                access_secret: &secrets.0,
                refresh_secret: &secrets.1,
                env: &env,
                stdout_log: &logs.0,
                stderr_log: &logs.1,
                addrs,
                append_logs: true,
            };
            // The ports are fixed now; one the old process just released may be held a moment.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match launch.run() {
                    Ok(x) => return x,
                    Err(LaunchError::PortTaken(_)) if attempt < 3 => {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    Err(LaunchError::PortTaken(r) | LaunchError::Failed(r)) => {
                        panic!("restart: {r}")
                    }
                }
            }
        })
        .await
        .expect("gateway relaunch task");
        self.child = Some(child);
        self.stdout_thread = Some(thread);
        let c = GatewayClients::build(&self.pki, self.https);
        self.client = c.client;
        self.client_h1 = c.client_h1;
        self.plain = c.plain;
        self.raw_tls = c.raw_tls;
    }

    /// `GET /readyz` on the admin listener: its status, or `None` when it does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        self.plain
            .get(self.admin_url("/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Poll `/readyz` until it answers `want`; panics after `within`.
    pub async fn wait_readyz(&self, want: u16, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.readyz().await;
            if last == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "/readyz did not answer {want} within {within:?} (last: {last:?}); stderr:\n{}",
            self.stderr_text()
        );
    }
}

const REDIS_MISSING: &str = "redis-server is not installed: install redis-server \
     (`apt-get install redis-server`, or run scripts/test, which installs it)";
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Run `redis-cli --raw` against a loopback port; its standard output. Quick, but blocking.
pub fn redis_cli(port: u16, args: &[&str]) -> Vec<u8> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {REDIS_MISSING}"));
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One inline command over a fresh connection, without redis-cli; the reply's text (a status,
/// an error with its `-`, an integer, or a bulk string).
fn redis_inline(port: u16, command: &str) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).map_err(|e| e.to_string())?;
    let first = first.trim_end();
    match first.split_at_checked(1) {
        Some(("$", n)) => {
            let n: usize = n.parse().map_err(|_| format!("bad reply {first:?}"))?;
            let mut body = vec![0u8; n];
            r.read_exact(&mut body).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        Some(("+" | ":", rest)) => Ok(rest.to_string()),
        Some(("-", _)) => Ok(first.to_string()),
        _ => Err(format!("unexpected reply {first:?}")),
    }
}

enum RedisStartError {
    PortTaken(String),
    Failed(String),
}

/// Spawn `redis-server` with `args` and wait until *it* (not another process that may hold
/// the port) answers `PING`: `INFO server` must name its pid.
fn start_redis_process(args: &[String], port: u16, log: &Path) -> Result<Child, RedisStartError> {
    let mut child = match Command::new("redis-server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = Instant::now() + REDIS_READY_TIMEOUT;
    let pid = format!("process_id:{}", child.id());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let report = format!("redis-server on port {port} exited ({status}); log:\n{text}");
            return Err(if text.contains("Address already in use") {
                RedisStartError::PortTaken(report)
            } else {
                RedisStartError::Failed(report)
            });
        }
        if redis_inline(port, "PING").as_deref() == Ok("PONG")
            && redis_inline(port, "INFO server").is_ok_and(|i| i.lines().any(|l| l == pid))
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RedisStartError::Failed(format!(
                "redis-server on port {port} did not answer PING within {REDIS_READY_TIMEOUT:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a free loopback port, appending every write to its own directory
/// (`appendfsync always`), so that a kill and restart on the same port keeps the data.
/// Killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        tokio::task::spawn_blocking(RedisServer::start_blocking)
            .await
            .expect("redis start task")
    }

    pub fn start_blocking() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-")
            .tempdir()
            .expect("tempdir");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            match Self::launch(port, dir.path()) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    };
                }
                Err(RedisStartError::PortTaken(_)) if attempt < 3 => continue,
                Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => panic!("{r}"),
            }
        }
    }

    fn args(port: u16, dir: &Path) -> Vec<String> {
        let mut a: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push("--dir".into());
        a.push(dir.display().to_string());
        a.push("--logfile".into());
        a.push(dir.join("redis.log").display().to_string());
        a
    }

    fn launch(port: u16, dir: &Path) -> Result<Child, RedisStartError> {
        start_redis_process(&Self::args(port, dir), port, &dir.join("redis.log"))
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: no shutdown, no final save; what was appended stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and directory (after [`RedisServer::kill`]); returns once
    /// the append-only file is loaded and `PING` answers.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let dir = self.dir.path().to_path_buf();
        let child = tokio::task::spawn_blocking(move || {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match Self::launch(port, &dir) {
                    Ok(c) => return c,
                    Err(RedisStartError::PortTaken(_)) if attempt < 5 => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => {
                        panic!("redis restart: {r}")
                    }
                }
            }
        })
        .await
        .expect("redis restart task");
        self.child = Some(child);
    }

    /// `redis-cli --raw <args>` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&redis_cli(self.port, args)).into_owned()
    }

    /// Every key (`redis-cli --scan`).
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .cli(&["--scan"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        k.sort();
        k
    }

    /// Every file under the server's directory (append-only files, log), with its bytes.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Ok(b) = std::fs::read(&path) {
                    out.push((path, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server --cluster-enabled yes` masters (no replicas) on free loopback ports,
/// each with its own directory, joined with `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Child>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        tokio::task::spawn_blocking(RedisCluster::start_blocking)
            .await
            .expect("redis cluster start task")
    }

    pub fn start_blocking() -> RedisCluster {
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            dirs: Vec::new(),
            children: Vec::new(),
        };
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("sessiongate-redis-cluster-")
                .tempdir()
                .expect("tempdir");
            let mut attempt = 0;
            let (port, child) = loop {
                attempt += 1;
                // The cluster bus gets its own free port (`cluster-port`), so a data port near
                // the top of the range is fine.
                let (port, bus) = (free_port(), free_port());
                let d = dir.path().display().to_string();
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &format!("{d}/nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &d,
                    "--logfile",
                    &format!("{d}/redis.log"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                match start_redis_process(&args, port, &dir.path().join("redis.log")) {
                    Ok(c) => break (port, c),
                    Err(RedisStartError::PortTaken(_)) if attempt < 3 => continue,
                    Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => {
                        panic!("redis cluster node: {r}")
                    }
                }
            };
            cluster.ports.push(port);
            cluster.dirs.push(dir);
            cluster.children.push(child);
        }

        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for p in &cluster.ports {
            cmd.arg(format!("127.0.0.1:{p}"));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {REDIS_MISSING}"));
        let out = wait_output_within(child, Duration::from_secs(60), "redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states: Vec<String> = cluster
                .ports
                .iter()
                .map(|p| redis_inline(*p, "CLUSTER INFO").unwrap_or_else(|e| e))
                .collect();
            if states.iter().all(|s| s.contains("cluster_state:ok")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster never reported cluster_state:ok: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `["redis://127.0.0.1:P1", ...]`, for `store.cluster_nodes`.
    pub fn nodes(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Every key of every node, as `(port, key)`.
    pub fn keys(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for p in &self.ports {
            let text = String::from_utf8_lossy(&redis_cli(*p, &["--scan"])).into_owned();
            out.extend(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|k| (*p, k.to_string())),
            );
        }
        out
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for a child's output, killing it after `within`.
fn wait_output_within(mut child: Child, within: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + within;
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!(
                "{what} did not finish within {within:?}: {:?}",
                out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("child output")
}

/// The free-port race is recognised: a gateway whose listen address is taken exits before it
/// is ready, and the launch calls that a port race (on which `Gateway::start` takes new ports).
#[test]
fn launch_reports_a_taken_listen_port_as_a_port_race() {
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path());
    let users_file = dir.path().join("users.toml");
    std::fs::write(&users_file, users_toml()).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let https = taken.local_addr().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let params = RenderParams {
        https,
        http,
        admin,
        cert: pki.cert_path.clone(),
        key: pki.key_path.clone(),
        upstream_url: "http://127.0.0.1:9".into(),
        users_file,
        audit_file: dir.path().join("audit.log"),
    };
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, GatewayConfig::new().render(&params)).unwrap();
    let (access, refresh) = (random_secret(), random_secret());
    let launch = Launch {
        config_path: &config_path,
        dir: dir.path(),
        access_secret: &access,
        refresh_secret: &refresh,
        env: &[],
        stdout_log: &dir.path().join("stdout.log"),
        stderr_log: &dir.path().join("stderr.log"),
        addrs: (https, http, admin),
        append_logs: false,
    };
    match launch.run() {
        Err(LaunchError::PortTaken(report)) => {
            assert!(report.contains("cannot listen"), "{report}")
        }
        Err(LaunchError::Failed(report)) => panic!("not recognised as a port race:\n{report}"),
        Ok((mut child, _)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started although {https} was taken");
        }
    }
    drop(taken);
}
