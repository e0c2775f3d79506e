//! The upstream process (`tests/upstream.py`): echoes every request as JSON and keeps a journal
//! of what reached it, so a test can prove that a refused request never did.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::gateway::Gateway;
use super::util::upstream_script;

pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
    /// The arguments it was started with beyond the port, for [`Upstream::restart`].
    extra: Vec<String>,
}

/// How a TLS upstream serves: its certificate and key, and the CA whose client certificates
/// it requires (mutual TLS), if any.
pub struct UpstreamTlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::spawn(&[])
    }

    /// An upstream that serves HTTPS only (`tests/upstream.py --tls-cert …`); its echo names
    /// the SNI it received and the client certificate's CN.
    pub fn start_tls(tls: &UpstreamTlsFiles) -> Upstream {
        let mut args = vec![
            "--tls-cert".to_string(),
            tls.cert.display().to_string(),
            "--tls-key".to_string(),
            tls.key.display().to_string(),
        ];
        if let Some(ca) = tls.client_ca {
            args.push("--tls-client-ca".to_string());
            args.push(ca.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Upstream::spawn(&args)
    }

    fn spawn(extra: &[&str]) -> Upstream {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = Upstream::spawn_on(0, &extra);
        Upstream { child, addr, extra }
    }

    /// SIGKILL: the connections to it break, its port refuses connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After [`Upstream::kill`]: start it again on the same port with the same arguments;
    /// returns once it listens (blocking: a fraction of a second). Its journal starts empty.
    pub fn start_again(&mut self) {
        self.kill();
        let (child, addr) = Upstream::spawn_on(self.addr.port(), &self.extra);
        assert_eq!(addr, self.addr, "the upstream came back on another address");
        self.child = child;
    }

    /// Start `tests/upstream.py` on `port` (0: any) and wait for its listening line.
    fn spawn_on(port: u16, extra: &[String]) -> (Child, SocketAddr) {
        let mut child = Command::new("python3")
            .arg(upstream_script())
            .args(["--port", &port.to_string(), "--journal-stdout"])
            .args(extra)
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
        (child, addr)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://<host>:<port>` of a TLS upstream (`host` resolved by the gateway: `localhost`
    /// or `127.0.0.1`).
    pub fn https_url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
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

impl Gateway {
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

    /// Wait until the upstream's end of the WebSocket at `path` has closed; how it saw the
    /// close (`"eof"`, `"close-frame"`, `"error"`), or `None` if it still had not after
    /// `within`.
    pub async fn upstream_ws_closed(&self, path: &str, within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let closed = self
                .journal()
                .await
                .into_iter()
                .find(|e| e.method == "WS-CLOSED" && e.path == path);
            if let Some(e) = closed {
                return Some(e.query);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn journal_len(&self) -> usize {
        self.journal().await.len()
    }
}
