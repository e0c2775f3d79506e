//! Spans over OTLP/HTTP (cargo feature `otel`, off by default): each request's `request`
//! span (with its `request_id`) is exported to the collector that `OTEL_EXPORTER_OTLP_ENDPOINT`
//! names (`/v1/traces` under it; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` for the full URL), as the
//! OpenTelemetry SDK reads them; nothing is exported when neither is set. The span is a child
//! of the client's `traceparent` when one came, and the upstream's `traceparent` names it.
//!
//! Export runs on the SDK's batch thread through [`PlainHttp`], a small blocking HTTP/1.1
//! client for `http://` collectors (a sidecar or node agent): the OTLP crate's own clients are
//! reqwest's (a second TLS stack and HTTP client in the binary) or need a Tokio runtime on the
//! SDK's thread.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::trace_context::TraceContext;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn endpoint_set() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// The tracing layer that exports spans, when an endpoint is set.
pub fn layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !endpoint_set() {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(PlainHttp {
            timeout: Duration::from_secs(10),
        })
        .build()
        .map_err(|e| eprintln!("OTLP exporter: {e}; spans are not exported"))
        .ok()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("sessiongate")
                .build(),
        )
        .build();
    let tracer = provider.tracer("sessiongate");
    let _ = PROVIDER.set(provider);
    // Only the request spans: the gateway's events stay in its log.
    let filter = tracing_subscriber::filter::filter_fn(|m| m.is_span() && m.name() == "request");
    Some(tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer().with_tracer(tracer),
        filter,
    ))
}

/// Export what is still queued (at exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// Make `span` a child of `parent` (the client's trace context) and return the trace id and
/// span id the upstream should see: the exported span's, when spans are exported.
pub fn link(
    span: &tracing::Span,
    parent: Option<&TraceContext>,
    trace_id: String,
    span_id: String,
) -> (String, String, bool) {
    if PROVIDER.get().is_none() {
        return (trace_id, span_id, false);
    }
    if let Some(p) = parent {
        let remote = SpanContext::new(
            TraceId::from_hex(&p.trace_id).unwrap_or(TraceId::INVALID),
            SpanId::from_hex(&p.span_id).unwrap_or(SpanId::INVALID),
            TraceFlags::new(p.flags),
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        let _ = span.set_parent(cx);
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return (trace_id, span_id, false);
    }
    (sc.trace_id().to_string(), sc.span_id().to_string(), true)
}

/// A blocking HTTP/1.1 client for a plain-HTTP collector: one connection per export.
#[derive(Debug)]
struct PlainHttp {
    timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for PlainHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        if uri.scheme_str() != Some("http") {
            return Err("only http:// collectors are supported".into());
        }
        let host = uri.host().ok_or("no host in the OTLP endpoint")?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or("the OTLP endpoint's host has no address")?;
        let mut tcp = TcpStream::connect_timeout(&addr, self.timeout)?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
            request.method(),
            request.body().len()
        );
        for (k, v) in request.headers() {
            if let Ok(v) = v.to_str() {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes())?;
        tcp.write_all(request.body())?;
        let mut raw = Vec::new();
        tcp.take(1 << 20).read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no HTTP status from the collector")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| Bytes::from(b.to_string()))
            .unwrap_or_default();
        Ok(Response::builder().status(status).body(body)?)
    }
}
