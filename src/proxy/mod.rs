//! Forwarding to upstreams over pooled keep-alive connections, bodies streamed both ways.
//!
//! The request arrives here prepared: stripped, authenticated, identity injected, its target
//! and forwarding headers set (`pipeline::forwarding`). This module sends it — over TLS to an
//! `https://` upstream ([`tls`]) — passes WebSocket upgrades through ([`tunnel`]: closed when
//! idle or when the caller's `close_when` completes), and reports upstream failures as a typed
//! [`ProxyError`] whose `502`/`504` page says nothing about the upstream (its name and the
//! cause stay in the log). It knows nothing of sessions or tokens.

mod tls;
mod tunnel;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, Body};
use crate::config::UpstreamConfig;
use crate::web::headers;

pub use tls::{chain as error_chain, system_roots};
pub use tunnel::Limits;

/// A pooled client to one upstream: plain HTTP, or TLS for an `https://` upstream (whose
/// connector refuses to connect without TLS).
enum UpstreamClient {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector<HttpConnector>, Incoming>),
}

impl UpstreamClient {
    fn request(&self, req: Request<Incoming>) -> ResponseFuture {
        match self {
            UpstreamClient::Plain(c) => c.request(req),
            UpstreamClient::Tls(c) => c.request(req),
        }
    }
}

pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// One pooled client per serving thread (index 0: the control runtime), so a request
    /// reuses connections owned by its own thread and never wakes another.
    clients: Vec<UpstreamClient>,
}

impl Upstream {
    fn client(&self) -> &UpstreamClient {
        let i = WORKER.with(Cell::get);
        &self.clients[i.min(self.clients.len() - 1)]
    }
}

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Mark the current thread as serving worker `i` (1-based; 0 is the control runtime).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

pub struct Upstreams {
    list: Vec<Upstream>,
}

/// An upstream's TLS settings could not be turned into a client (at start).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct UpstreamError {
    /// The configuration key to fix (`upstream[0].ca_file`).
    pub key: String,
    pub message: String,
}

fn connector(cfg: &UpstreamConfig) -> HttpConnector {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    conn.set_nodelay(true);
    // Plain: only http:// targets. TLS: the https connector below decides the scheme.
    conn.enforce_http(cfg.tls.is_none());
    conn
}

fn pooled<C>(conn: C) -> Client<C, Incoming>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(conn)
}

fn client(cfg: &UpstreamConfig, tls: Option<&Arc<rustls::ClientConfig>>) -> UpstreamClient {
    let Some(tls) = tls else {
        return UpstreamClient::Plain(pooled(connector(cfg)));
    };
    // `tls::client_config` sets no ALPN list, which `with_tls_config` requires (it asserts).
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_only();
    let builder = match cfg.tls.as_ref().and_then(|t| t.server_name.clone()) {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    UpstreamClient::Tls(pooled(
        builder.enable_http1().wrap_connector(connector(cfg)),
    ))
}

impl Upstreams {
    /// Clients for `workers` serving threads plus the control runtime. Fails when an `https://`
    /// upstream relies on the system's CA certificates and none can be loaded.
    pub fn new(cfgs: &[UpstreamConfig], workers: usize) -> Result<Self, UpstreamError> {
        let mut system = None;
        let mut roots = || match &system {
            Some(r) => Ok(Arc::clone(r)),
            None => {
                let r = tls::system_roots()?;
                system = Some(r.clone());
                Ok(r)
            }
        };
        let mut list = Vec::with_capacity(cfgs.len());
        for (i, cfg) in cfgs.iter().enumerate() {
            let tls = match &cfg.tls {
                None => None,
                Some(t) => Some(Arc::new(tls::client_config(t, &mut roots).map_err(
                    |message| UpstreamError {
                        key: format!("upstream[{i}].ca_file"),
                        message,
                    },
                )?)),
            };
            list.push(Upstream {
                cfg: cfg.clone(),
                clients: (0..=workers).map(|_| client(cfg, tls.as_ref())).collect(),
            });
        }
        Ok(Self { list })
    }

    pub fn get(&self, i: usize) -> Option<&Upstream> {
        self.list.get(i)
    }
}

/// Why an upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no upstream with index {0}")]
    NoUpstream(usize),
    #[error("upstream {upstream} timed out after {ms} ms")]
    Timeout { upstream: String, ms: u64 },
    #[error("upstream {upstream} request failed")]
    Request {
        upstream: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {upstream} switched protocols without being asked")]
    UnrequestedUpgrade { upstream: String },
}

/// What went wrong with an upstream request, for the log: the client's own words
/// (`client error (Connect)`) are its Rust names, so the causes below it are told instead
/// (`cannot connect: tcp connect error: Connection refused (os error 111)`).
fn failure(e: &hyper_util::client::legacy::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "the request or its response broke off"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{what}: {}", tls::chain(cause)),
        None => what.to_string(),
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoUpstream(_)
            | ProxyError::Request { .. }
            | ProxyError::UnrequestedUpgrade { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// What went wrong, for `sessiongate_upstream_errors_total{kind}`: `connect` (no
    /// connection), `tls` (its handshake failed), `timeout` (no answer within
    /// `upstream.timeout`), `reset` (the request or its answer broke off), `protocol` (an
    /// answer that cannot be relayed); `None` when no upstream was involved.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::NoUpstream(_) => None,
            ProxyError::Timeout { .. } => Some("timeout"),
            ProxyError::Request { source, .. } if tls::tls_cause(source).is_some() => Some("tls"),
            ProxyError::Request { source, .. } if source.is_connect() => Some("connect"),
            ProxyError::Request { .. } => Some("reset"),
            ProxyError::UnrequestedUpgrade { .. } => Some("protocol"),
        }
    }

    /// The access log's `reason`: `upstream_<kind>`.
    pub fn code(&self) -> &'static str {
        match self.kind() {
            None => "no_upstream",
            Some("timeout") => "upstream_timeout",
            Some("tls") => "upstream_tls",
            Some("connect") => "upstream_connect",
            Some("protocol") => "upstream_protocol",
            Some(_) => "upstream_reset",
        }
    }

    /// The client's page: which failure, never which upstream.
    pub fn response(&self) -> Response<Body> {
        match self.status() {
            StatusCode::GATEWAY_TIMEOUT => body::text(
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway timeout: the application did not answer in time.\n",
            ),
            _ => body::text(
                StatusCode::BAD_GATEWAY,
                "Bad gateway: the application could not be reached.\n",
            ),
        }
    }
}

/// Send a prepared request to `up` and stream its answer back. A WebSocket upgrade (the
/// request says so) is relayed both ways until either side closes or `limits` end it.
pub async fn forward(
    up: &Upstream,
    mut req: Request<Incoming>,
    limits: Limits,
) -> Result<Response<Body>, ProxyError> {
    let client_upgrade = headers::is_websocket(&req).then(|| hyper::upgrade::on(&mut req));
    let res = tokio::time::timeout(up.cfg.timeout, up.client().request(req)).await;
    let mut resp = match res {
        Err(_) => {
            let e = ProxyError::Timeout {
                upstream: up.cfg.name.clone(),
                ms: u64::try_from(up.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
            };
            tracing::warn!(error = %e, "upstream timed out");
            return Err(e);
        }
        Ok(Err(source)) => {
            log_failure(&up.cfg.name, &source);
            return Err(ProxyError::Request {
                upstream: up.cfg.name.clone(),
                source,
            });
        }
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::remove_hop_by_hop(resp.headers_mut());
        return Ok(resp.map(Body::Incoming));
    }
    let Some(client_upgrade) = client_upgrade else {
        // An upgrade nobody asked for cannot be relayed.
        return Err(ProxyError::UnrequestedUpgrade {
            upstream: up.cfg.name.clone(),
        });
    };
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let name = up.cfg.name.clone();
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((c, u)) => tunnel::relay(c, u, limits, &name).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    Ok(resp.map(|_| Body::Empty))
}

/// The log line of a failed upstream request: the upstream, and the cause in full — a TLS
/// failure (verification, a refused client certificate) named as such. Never sent to clients.
fn log_failure(upstream: &str, e: &hyper_util::client::legacy::Error) {
    let error = failure(e);
    match tls::tls_cause(e) {
        Some(t) => {
            tracing::warn!(upstream = %upstream, tls_error = %t, error, "upstream TLS failed")
        }
        None => tracing::warn!(upstream = %upstream, error, "upstream request failed"),
    }
}
