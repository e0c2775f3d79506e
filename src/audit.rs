//! Audit events: one JSON object per line, for logins, logouts, refresh-token reuse and
//! revocations, with the `request_id` of the request that caused each (when one did). Events carry identifiers (user, session handle, client IP) and never a secret:
//! no token, password, cookie value or query string. Written by a background thread so that a
//! request never waits on the disk; the queue to it is bounded ([`QUEUE`]), and what a full
//! queue drops is counted and reported in the trail.

use std::io::Write;
use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

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
        // The request that caused it, when a request did (`crate::request_id`).
        if let Some(id) = crate::request_id::current() {
            m.insert("request_id".into(), id.into());
        }
        Self(m)
    }
    pub fn user(mut self, u: &str) -> Self {
        self.0.insert("user".into(), u.into());
        self
    }
    /// The session *handle* (never the session id).
    pub fn session(mut self, handle: &str) -> Self {
        // The request's access-log line names the session too.
        crate::request_id::note_session(handle);
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
    /// The identity provider (`[[oidc.provider]] name`) a sign-in or logout came through.
    pub fn provider(mut self, p: &str) -> Self {
        self.0.insert("provider".into(), p.into());
        self
    }
}

/// Lines waiting for the writer, at most. A request never waits for the disk, so when the
/// writer falls this far behind (a slow disk, a flood of failed logins) further events are
/// dropped and counted rather than queued without end: at a few hundred bytes a line the
/// queue holds a few MiB at most.
pub const QUEUE: usize = 8192;

/// Where audit events go.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<String>,
    /// Events dropped because the queue was full (`sessiongate_audit_events_dropped_total`).
    dropped: Counter,
}

impl Audit {
    /// Start the writer: to `file` (appended, created if missing), or standard output.
    pub fn start(file: Option<PathBuf>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match &file {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        Self::spawn(out, QUEUE)
    }

    /// The writer thread over `out`, behind a queue of `capacity` lines.
    fn spawn(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<String>(capacity);
        let dropped = Counter::default();
        let seen = dropped.clone();
        std::thread::Builder::new()
            .name("sessiongate-audit".into())
            .spawn(move || write_lines(rx, out, &seen))?;
        Ok(Self { tx, dropped })
    }

    /// An audit sink that discards everything (benchmarks, unit tests).
    pub fn discard() -> Self {
        let (tx, rx) = mpsc::channel::<String>(1);
        drop(rx);
        Self {
            tx,
            dropped: Counter::default(),
        }
    }

    pub fn emit(&self, e: Event) {
        match self.tx.try_send(Value::Object(e.0).to_string()) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// The count of events dropped on a full queue, for the metrics registry.
    pub fn dropped(&self) -> &Counter {
        &self.dropped
    }
}

/// The writer thread: lines as they come, flushed per batch; after a batch, an
/// `audit_dropped` event says how many were lost since the last one, so the trail itself shows
/// its gaps.
fn write_lines(mut rx: mpsc::Receiver<String>, mut out: Box<dyn Write + Send>, dropped: &Counter) {
    let mut reported = 0;
    while let Some(line) = rx.blocking_recv() {
        let _ = writeln!(out, "{line}");
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let now = dropped.get();
        if now > reported {
            let gap = Event::new("audit_dropped")
                .count(usize::try_from(now - reported).unwrap_or(usize::MAX))
                .reason("audit queue full");
            let _ = writeln!(out, "{}", Value::Object(gap.0));
            reported = now;
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that holds every write until the test opens its gate.
    #[derive(Clone, Default)]
    struct Gated {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_bounds_the_queue_and_counts_what_is_dropped() {
        let sink = Gated::default();
        let audit = Audit::spawn(Box::new(sink.clone()), 64).unwrap();
        let total = 100_000;
        for i in 0..total {
            audit.emit(Event::new("login_failed").user(&format!("user-{i}")));
        }
        let queued = audit.tx.max_capacity() - audit.tx.capacity();
        assert!(queued <= 64, "{queued} lines queued");
        let dropped = audit.dropped().get();
        // The writer holds at most one line while it waits.
        assert!(
            (total - 65..=total - 64).contains(&dropped),
            "{dropped} dropped of {total}"
        );
        // The writer catches up and says how many it lost.
        *sink.open.0.lock().unwrap() = true;
        sink.open.1.notify_all();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let gap = loop {
            let text = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("audit_dropped")) {
                break serde_json::from_str::<Value>(line).unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no audit_dropped: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(gap["count"], dropped);
    }
}
