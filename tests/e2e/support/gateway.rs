//! The gateway under test ([`Gateway`]): its own directory, certificates, users, secrets,
//! upstream and clients; start, stop, restart, and `/readyz` on the admin listener. Dropping it
//! kills both child processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{
    DEFAULT_PUBLIC_ORIGIN, GatewayConfig, LOOPBACK_ANY_PORT, PUBLIC_HOST, RenderParams,
};
use super::launch::{Bound, Launch, Launched};
use super::pki::Pki;
use super::upstream::Upstream;
use super::users::users_toml;
use super::util::{install_crypto_provider, random_secret};

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    /// The address the HTTPS listener bound (`127.0.0.1:<port the kernel chose>`), from the
    /// ready line. Clients reach it as [`Gateway::origin`]; raw connections go here.
    pub https: SocketAddr,
    /// The plain-HTTP redirect listener's bound address.
    pub http: SocketAddr,
    /// The admin listener's bound address.
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

        // Every listener on `127.0.0.1:0`: the kernel picks the ports as the gateway binds
        // them, and the ready line names them. No port is chosen before, so none can be lost.
        let listen = (LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT);
        let params = RenderParams {
            https: listen.0,
            http: listen.1,
            admin: listen.2,
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
            listen,
            append_logs: false,
        };
        let Launched {
            child,
            stdout_thread,
            bound: Bound { https, http, admin },
        } = launch.run().unwrap_or_else(|e| e.panic("start"));
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

    /// The origin the test clients address, [`DEFAULT_PUBLIC_ORIGIN`] (no port: the clients
    /// resolve [`PUBLIC_HOST`] to the bound address, port included). The gateway's configured
    /// origin unless the test set another; see [`Gateway::public_origin`].
    pub fn origin(&self) -> String {
        DEFAULT_PUBLIC_ORIGIN.to_string()
    }

    /// An absolute URL on [`Gateway::origin`], for the HTTPS clients.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.origin(), path_and_query)
    }

    /// The `Host` the clients send (and a raw request must send): [`PUBLIC_HOST`].
    pub fn host_header(&self) -> String {
        PUBLIC_HOST.to_string()
    }

    /// Stop the gateway with SIGTERM (graceful: logs flushed), then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        self.stop_within(Duration::from_secs(10)).await;
    }

    /// SIGTERM, then wait for the process to exit, SIGKILL after `kill_after`: how long it
    /// took, and how it ended (`None`: already stopped).
    pub async fn stop_within(&mut self, kill_after: Duration) -> Option<Stopped> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let stdout_thread = self.stdout_thread.take();
        let stopped = tokio::task::spawn_blocking(move || {
            let sent = Instant::now();
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = sent + kill_after;
            let stopped = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    break Stopped {
                        after: sent.elapsed(),
                        exited: Some(status),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Stopped {
                        after: sent.elapsed(),
                        exited: None,
                    };
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if let Some(t) = stdout_thread {
                let _ = t.join();
            }
            stopped
        })
        .await
        .unwrap();
        Some(stopped)
    }
}

/// How a [`Gateway::stop_within`] went.
#[derive(Debug)]
pub struct Stopped {
    /// From SIGTERM to the process's exit (or to its SIGKILL).
    pub after: Duration,
    /// Its exit status when it exited by itself; `None` when it had to be killed.
    pub exited: Option<std::process::ExitStatus>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what its gateway logged last (libtest prints it with the panic).
        if std::thread::panicking() {
            let text = self.stderr_plain();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- the gateway's last log lines ---\n{}", tail.join("\n"));
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
            .resolve(PUBLIC_HOST, https)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        let client_h1 = reqwest::Client::builder()
            .tls_backend_preconfigured(pki.client_config(&[b"http/1.1"]))
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(PUBLIC_HOST, https)
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
    /// An HTTPS client like [`Gateway::client`] whose connections leave from `local`, a
    /// loopback address such as `127.0.1.2` (Linux loopback answers all of 127/8): to the
    /// gateway, a client on another address or network.
    pub fn client_from(&self, local: std::net::IpAddr) -> reqwest::Client {
        self.client_at(self.https, local)
    }

    /// An HTTPS client for the gateway's name that connects to `at` (the gateway, or something
    /// in front of it) from `local`.
    pub fn client_at(&self, at: SocketAddr, local: std::net::IpAddr) -> reqwest::Client {
        self.client_builder_at(at, local, &[b"h2", b"http/1.1"])
            .build()
            .expect("reqwest client")
    }

    /// Like [`Gateway::client_from`], HTTP/1.1 only.
    pub fn client_h1_from(&self, local: std::net::IpAddr) -> reqwest::Client {
        self.client_builder_at(self.https, local, &[b"http/1.1"])
            .http1_only()
            .build()
            .expect("reqwest client")
    }

    fn client_builder_at(
        &self,
        at: SocketAddr,
        local: std::net::IpAddr,
        alpn: &[&[u8]],
    ) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.pki.client_config(alpn))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(PUBLIC_HOST, at)
            .local_address(local)
            .no_proxy()
            .timeout(Duration::from_secs(60))
    }

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

    /// Stop the gateway (graceful) and start it again with the same config file, secrets,
    /// directory and upstream; returns once the ready line is back.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.relaunch().await;
    }

    /// Start the gateway again after [`Gateway::stop`], as [`Gateway::restart`] does. Logs
    /// are appended to, so they hold every run.
    ///
    /// The config still says port 0, so the new process binds fresh ports: [`Gateway::https`]
    /// and the others change, and the clients are rebuilt to reach them. The public origin
    /// does not change, so to a client (and to its tokens) it is the same deployment.
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
        let launched = tokio::task::spawn_blocking(move || {
            Launch {
                config_path: &config_path,
                dir: &dir,
                access_secret: &secrets.0,
                refresh_secret: &secrets.1,
                env: &env,
                stdout_log: &logs.0,
                stderr_log: &logs.1,
                listen: (LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT),
                append_logs: true,
            }
            .run()
            .unwrap_or_else(|e| e.panic("restart"))
        })
        .await
        .expect("gateway relaunch task");
        self.child = Some(launched.child);
        self.stdout_thread = Some(launched.stdout_thread);
        Bound {
            https: self.https,
            http: self.http,
            admin: self.admin,
        } = launched.bound;
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
