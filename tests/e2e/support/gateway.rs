//! The gateway under test ([`Gateway`]): its own directory, certificates, users, secrets,
//! upstream and clients; start, stop, restart, and `/readyz` on the admin listener. Dropping it
//! kills both child processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{GatewayConfig, RenderParams};
use super::launch::{Launch, LaunchError};
use super::pki::Pki;
use super::upstream::Upstream;
use super::users::users_toml;
use super::util::{free_port, install_crypto_provider, random_secret};

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
    pub(super) raw_tls: Arc<rustls::ClientConfig>,
    pub(super) child: Option<Child>,
    pub(super) stdout_thread: Option<std::thread::JoinHandle<()>>,
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
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
    /// A URL on the admin listener (plain HTTP).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

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
