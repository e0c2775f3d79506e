//! Forwarding to upstreams over pooled keep-alive connections, bodies streamed both ways.
//!
//! The request arrives here prepared: stripped, authenticated, identity injected, its target
//! and forwarding headers set (`pipeline::forwarding`). This module sends it — over TLS to an
//! `https://` upstream ([`tls`]) — passes WebSocket upgrades through ([`tunnel`]: closed when
//! idle or when the caller's `close_when` completes), and reports upstream failures as a typed
//! [`ProxyError`] whose `502`/`504` page says nothing about the upstream (its name and the
//! cause stay in the log). It knows nothing of sessions or tokens.

mod pool;
mod tls;
mod tunnel;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{self, Body};
use crate::config::UpstreamConfig;
use crate::web::headers;

pub use pool::SendError;
pub use tls::{chain as error_chain, system_roots};
pub use tunnel::Limits;

pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// One pool per serving thread (index 0: the control runtime), so a request reuses
    /// connections owned by its own thread and never wakes another.
    pools: Vec<Arc<pool::Pool>>,
}

impl Upstream {
    fn pool(&self) -> &Arc<pool::Pool> {
        &self.pools[crate::worker::index().min(self.pools.len() - 1)]
    }
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

fn tcp(cfg: &UpstreamConfig) -> HttpConnector {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    conn.set_nodelay(true);
    // Plain: only http:// targets. TLS: the https connector below decides the scheme.
    conn.enforce_http(cfg.tls.is_none());
    conn
}

fn connector(cfg: &UpstreamConfig, tls: Option<&Arc<rustls::ClientConfig>>) -> pool::Connector {
    let Some(tls) = tls else {
        return pool::Connector::Plain(tcp(cfg));
    };
    // `tls::client_config` sets no ALPN list, which `with_tls_config` requires (it asserts).
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_only();
    let builder = match cfg.tls.as_ref().and_then(|t| t.server_name.clone()) {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    pool::Connector::Tls(builder.enable_http1().wrap_connector(tcp(cfg)))
}

fn pools(
    cfg: &UpstreamConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    n: usize,
) -> Vec<Arc<pool::Pool>> {
    let target = http::Uri::builder()
        .scheme(cfg.scheme.clone())
        .authority(cfg.authority.clone())
        .path_and_query("/")
        .build()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let host = pool::host_value(&cfg.scheme, &cfg.authority);
    let connector = connector(cfg, tls);
    (0..n)
        .map(|_| pool::Pool::new(connector.clone(), target.clone(), host.clone()))
        .collect()
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
                pools: pools(cfg, tls.as_ref(), workers + 1),
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
        source: SendError,
    },
    #[error("upstream {upstream} switched protocols without being asked")]
    UnrequestedUpgrade { upstream: String },
}

/// What went wrong with an upstream request, for the log: the client's own words
/// (`client error (Connect)`) are its Rust names, so the causes below it are told instead
/// (`cannot connect: tcp connect error: Connection refused (os error 111)`).
fn failure(e: &SendError) -> String {
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
    let pool = up.pool();
    let res = tokio::time::timeout(up.cfg.timeout, pool.send(req)).await;
    let resp = match res {
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
    let (mut resp, conn) = resp;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::remove_hop_by_hop(resp.headers_mut());
        return Ok(resp.map(|b| pool.body(b, conn)));
    }
    // The connection now belongs to the upgrade.
    drop(conn);
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
fn log_failure(upstream: &str, e: &SendError) {
    let error = failure(e);
    match tls::tls_cause(e) {
        Some(t) => {
            tracing::warn!(upstream = %upstream, tls_error = %t, error, "upstream TLS failed")
        }
        None => tracing::warn!(upstream = %upstream, error, "upstream request failed"),
    }
}
