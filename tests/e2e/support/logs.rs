//! What the gateway wrote: its stdout and stderr logs and the audit file (one JSON event a
//! line), and waiting for an audit event.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::gateway::Gateway;

impl Gateway {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_log).unwrap_or_default()).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_log).unwrap_or_default()).into_owned()
    }
    /// [`Gateway::stderr_text`] without terminal colour codes, as an operator's log viewer
    /// shows it.
    pub fn stderr_plain(&self) -> String {
        let text = self.stderr_text();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC '[' parameters, up to the final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
    /// Wait up to `within` for `needle` in [`Gateway::stderr_plain`] (a log line is written a
    /// moment after the answer it goes with); whether it came.
    pub async fn stderr_shows(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr_plain().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
