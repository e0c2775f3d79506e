//! Audit events: one JSON object per line, for logins, logouts, refresh-token reuse and
//! revocations. Events carry identifiers (user, session handle, client IP) and never a secret:
//! no token, password, cookie value or query string. Written by a background task so that a
//! request never waits on the disk.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// One audit event under construction.
#[derive(Debug)]
pub struct Event(Map<String, Value>);

impl Event {
    pub fn new(kind: &'static str) -> Self {
        let mut m = Map::new();
        m.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        m.insert("event".into(), kind.into());
        Self(m)
    }
    pub fn user(mut self, u: &str) -> Self {
        self.0.insert("user".into(), u.into());
        self
    }
    /// The session *handle* (never the session id).
    pub fn session(mut self, handle: &str) -> Self {
        self.0.insert("session".into(), handle.into());
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        self.0.insert("ip".into(), ip.into());
        self
    }
    pub fn reason(mut self, r: &str) -> Self {
        self.0.insert("reason".into(), r.into());
        self
    }
    pub fn count(mut self, n: usize) -> Self {
        self.0.insert("count".into(), n.into());
        self
    }
}

/// Where audit events go.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::UnboundedSender<String>,
}

impl Audit {
    /// Start the writer: to `file` (appended, created if missing), or standard output.
    pub fn start(file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match &file {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        std::thread::Builder::new()
            .name("sessiongate-audit".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    let _ = writeln!(out, "{line}");
                    while let Ok(line) = rx.try_recv() {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Self { tx })
    }

    /// An audit sink that discards everything (benchmarks, unit tests).
    pub fn discard() -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        drop(rx);
        Self { tx }
    }

    pub fn emit(&self, e: Event) {
        let _ = self.tx.send(Value::Object(e.0).to_string());
    }
}
