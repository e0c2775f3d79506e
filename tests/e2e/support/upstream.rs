//! The upstream process (`tests/upstream.py`): echoes every request as JSON and keeps a journal
//! of what reached it, so a test can prove that a refused request never did.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::gateway::Gateway;
use super::util::upstream_script;

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
