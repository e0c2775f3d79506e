//! The access log: one line per request, written when its response has been sent (or the
//! client went away): time, request id, client IP, method, normalised path, status, bytes,
//! duration, upstream, session handle, refusal reason. In the log's format (`log.format`):
//! a flat JSON object (`msg = "request"`, `target = "sessiongate::access"`) or a text line.
//!
//! Never a secret: no query string (credential parameters live there), no header, no cookie,
//! no token — the session is named by its non-secret handle. The path is the normalised one,
//! percent-encoded again, so it cannot break a line.
//!
//! A request never waits on the disk: lines go through a bounded queue ([`QUEUE`]) to a writer
//! thread, and what a full queue drops is counted (`sessiongate_access_log_dropped_total`).

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

use crate::config::{AccessLogConfig, LogFormat};

/// Lines waiting for the writer, at most (a few MiB).
pub const QUEUE: usize = 8192;

/// Where access-log lines go; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    format: LogFormat,
    dropped: Counter,
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub upstream: Option<String>,
    pub session: Option<String>,
    pub reason: Option<&'static str>,
}

impl AccessLog {
    /// Start the writer per `cfg`: to `file` (appended, created if missing) or standard error;
    /// [`AccessLog::off`] when disabled.
    pub fn start(cfg: &AccessLogConfig, format: LogFormat) -> std::io::Result<Self> {
        if !cfg.enabled {
            return Ok(Self::off());
        }
        let out: Box<dyn Write + Send> = match &cfg.file {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            // Unbuffered: each line one write, never split among the log's own lines.
            None => Box::new(std::io::stderr()),
        };
        Self::spawn(out, format, QUEUE)
    }

    fn spawn(out: Box<dyn Write + Send>, format: LogFormat, cap: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<String>(cap);
        std::thread::Builder::new()
            .name("sessiongate-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(Self {
            tx: Some(tx),
            format,
            dropped: Counter::default(),
        })
    }

    /// No access log.
    pub fn off() -> Self {
        Self {
            tx: None,
            format: LogFormat::Text,
            dropped: Counter::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped on a full queue.
    pub fn dropped(&self) -> &Counter {
        &self.dropped
    }

    pub fn write(&self, e: &Entry) {
        let Some(tx) = &self.tx else { return };
        let line = match self.format {
            LogFormat::Json => json_line(e),
            LogFormat::Text => text_line(e),
        };
        match tx.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
        }
    }
}

fn write_lines(rx: Receiver<String>, mut out: Box<dyn Write + Send>) {
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One JSON line, serialised from a struct (no map to build: a third of the cost).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    level: &'static str,
    target: &'static str,
    msg: &'static str,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    upstream: &'a str,
    session: &'a str,
    reason: &'a str,
}

/// `{"time":…,"level":"info","target":"sessiongate::access","msg":"request",…}` and a newline.
pub fn json_line(e: &Entry) -> String {
    let time = humantime::format_rfc3339_millis(e.time).to_string();
    let line = JsonLine {
        time: &time,
        level: "info",
        target: "sessiongate::access",
        msg: "request",
        request_id: &e.request_id,
        client_ip: e.client_ip,
        method: e.method.as_str(),
        path: &e.path,
        status: e.status,
        bytes: e.bytes,
        duration_ms: millis(e.duration),
        upstream: e.upstream.as_deref().unwrap_or("-"),
        session: e.session.as_deref().unwrap_or("-"),
        reason: e.reason.unwrap_or("-"),
    };
    let mut s = serde_json::to_string(&line).unwrap_or_default();
    s.push('\n');
    s
}

/// `TIME  INFO request request_id=… client_ip=… method=GET path=/x status=200 …` and a
/// newline: every value is a token without spaces (the method is an HTTP token, the path is
/// percent-encoded).
pub fn text_line(e: &Entry) -> String {
    format!(
        "{}  INFO request request_id={} client_ip={} method={} path={} status={} bytes={} \
         duration_ms={} upstream={} session={} reason={}\n",
        humantime::format_rfc3339_micros(e.time),
        e.request_id,
        e.client_ip,
        e.method,
        e.path,
        e.status,
        e.bytes,
        millis(e.duration),
        e.upstream.as_deref().unwrap_or("-"),
        e.session.as_deref().unwrap_or("-"),
        e.reason.unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_600_000_123),
            request_id: "0123456789abcdef0123456789abcdef".into(),
            client_ip: "192.0.2.7".parse().unwrap(),
            method: http::Method::GET,
            path: "/app/a%20b".into(),
            status: 502,
            bytes: 57,
            duration: Duration::from_micros(1500),
            upstream: Some("app".into()),
            session: None,
            reason: Some("upstream_connect"),
        }
    }

    #[test]
    fn a_json_line_is_one_flat_object() {
        let line = json_line(&entry());
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "request");
        assert_eq!(v["time"], "2025-12-01T14:40:00.123Z");
        assert_eq!(v["status"], 502);
        assert_eq!(v["bytes"], 57);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream"], "app");
        assert_eq!(v["session"], "-");
        assert_eq!(v["reason"], "upstream_connect");
        assert_eq!(v["path"], "/app/a%20b");
        assert!(v.as_object().unwrap().values().all(|v| !v.is_object()));
    }

    #[test]
    fn a_text_line_has_one_word_per_field() {
        let line = text_line(&entry());
        assert!(line.contains(" INFO request request_id=0123456789abcdef0123456789abcdef "));
        assert!(line.contains(" path=/app/a%20b status=502 bytes=57 duration_ms=1.5 "));
        assert!(line.ends_with(" upstream=app session=- reason=upstream_connect\n"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = AccessLog::spawn(Box::new(Stuck), LogFormat::Json, 4).unwrap();
        for _ in 0..100 {
            log.write(&entry());
        }
        // At most the queue and the line the writer holds were kept.
        assert!(
            (95..=96).contains(&log.dropped().get()),
            "{}",
            log.dropped().get()
        );
    }
}
