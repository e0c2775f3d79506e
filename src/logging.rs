//! The gateway's log, on standard error. Two formats (`log.format`):
//!
//! - `json`: one flat JSON object per line, with stable keys: `time` (RFC 3339, UTC, ms),
//!   `level` (`error` … `trace`), `target`, `msg`, then the fields of the event and of every
//!   span it happened in (a request's `request_id`) at the top level — no nested `fields` or
//!   `span` objects, so a log shipper can index them as they are.
//! - `text`: one readable line per event, coloured only when standard error is a terminal.
//!
//! Lifecycle events (`ready`, `shutting down`, `stopped`: target [`LIFECYCLE`]) are logged at
//! `info` whatever `log.level` says, so an operator and a supervisor always see them.
//! Audit events have their own stream ([`crate::audit`]), and so has the access log
//! ([`crate::access_log`]).

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// The target of the events that say where the process is in its life (ready, stopping).
pub const LIFECYCLE: &str = "sessiongate::lifecycle";

/// Changes the level of a running gateway (on reload).
pub type LogFilter = reload::Handle<EnvFilter, Registry>;

/// The filter for `level` (a `log.level` value), lifecycle events always on.
pub fn filter(level: &str) -> EnvFilter {
    let f = EnvFilter::new(level);
    match format!("{LIFECYCLE}=info").parse() {
        Ok(d) => f.add_directive(d),
        Err(_) => f,
    }
}

/// Log to standard error at `level` (or `RUST_LOG`, which then wins over reloads too) in
/// `format`. The handle changes the level on reload; `None` when `RUST_LOG` fixed it.
pub fn init(level: &str, format: LogFormat) -> Option<LogFilter> {
    use tracing_subscriber::prelude::*;
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| filter(level)));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Json => layer
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .boxed(),
        LogFormat::Text => layer
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(layer);
    #[cfg(feature = "otel")]
    let registry = registry.with(crate::otel::layer());
    registry.init();
    (!fixed).then_some(handle)
}

/// The `json` format: every field at the top level of one object.
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        writeln!(writer, "{}", Value::Object(flat_fields(ctx, event)))
    }
}

fn flat_fields<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut m = Map::new();
    // The spans' fields, outermost first (JsonFields kept each span's as a JSON object).
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let ext = span.extensions();
            if let Some(f) = ext.get::<FormattedFields<N>>()
                && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&f.fields)
            {
                m.extend(fields);
            }
        }
    }
    event.record(&mut Flat(&mut m));
    let meta = event.metadata();
    m.insert("time".into(), now().into());
    m.insert("level".into(), level(meta.level()).into());
    m.insert("target".into(), meta.target().into());
    m
}

/// `2026-12-01T21:00:00.123Z`
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn level(l: &tracing::Level) -> &'static str {
    match *l {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

/// An event's fields as JSON values: strings, numbers and booleans as such, anything else in
/// its `Display` (`%x`) or `Debug` (`?x`) form; the message as `msg`.
struct Flat<'a>(&'a mut Map<String, Value>);

impl Flat<'_> {
    fn put(&mut self, field: &Field, v: Value) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.0.insert(name.to_string(), v);
    }
}

impl Visit for Flat<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, crate::proxy::error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_lines(f: impl FnOnce()) -> Vec<Map<String, Value>> {
        let out = Captured::default();
        let w = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || w.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => m,
                other => panic!("not a JSON object: {l} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn json_lines_are_flat_with_the_spans_fields_at_the_top() {
        let lines = json_lines(|| {
            let outer = tracing::info_span!("request", request_id = "abc123");
            let _o = outer.enter();
            let inner = tracing::info_span!("inner", upstream = "app");
            let _i = inner.enter();
            tracing::warn!(status = 502u64, ok = false, peer = %"127.0.0.1:1", "upstream failed");
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["msg"], "upstream failed");
        assert_eq!(l["level"], "warn");
        assert_eq!(l["target"], "sessiongate::logging::tests");
        assert_eq!(l["request_id"], "abc123");
        assert_eq!(l["upstream"], "app");
        assert_eq!(l["status"], 502);
        assert_eq!(l["ok"], false);
        assert_eq!(l["peer"], "127.0.0.1:1");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l:?}");
        for nested in ["fields", "span", "spans", "message"] {
            assert!(!l.contains_key(nested), "{nested} in {l:?}");
        }
    }

    #[test]
    fn lifecycle_events_pass_a_quiet_level() {
        let f = filter("error");
        let out = Captured::default();
        let w = out.clone();
        let sub = tracing_subscriber::registry().with(f).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || w.clone())
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson),
        );
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not shown");
            tracing::info!(target: LIFECYCLE, "ready");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("\"msg\":\"ready\""), "{text}");
        assert!(!text.contains("not shown"), "{text}");
    }
}
