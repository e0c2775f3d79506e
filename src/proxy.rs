//! Forwarding to upstreams over pooled keep-alive connections, bodies streamed both ways.
//!
//! The request arrives here prepared: stripped, authenticated, identity injected, its target
//! and forwarding headers set (`pipeline::forwarding`). This module sends it, passes WebSocket
//! upgrades through (closing the tunnel when the caller's `close_when` completes), and reports
//! upstream failures as a typed [`ProxyError`] whose `502`/`504` page says nothing about the
//! upstream (its address stays in the log). It knows nothing of sessions or tokens.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{self, Body};
use crate::config::UpstreamConfig;
use crate::web::headers;

pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// One pooled client per serving thread (index 0: the control runtime), so a request
    /// reuses connections owned by its own thread and never wakes another.
    clients: Vec<Client<HttpConnector, Incoming>>,
}

impl Upstream {
    fn client(&self) -> &Client<HttpConnector, Incoming> {
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

fn client(cfg: &UpstreamConfig) -> Client<HttpConnector, Incoming> {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    conn.set_nodelay(true);
    conn.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(conn)
}

impl Upstreams {
    /// Clients for `workers` serving threads plus the control runtime.
    pub fn new(cfgs: &[UpstreamConfig], workers: usize) -> Self {
        let list = cfgs
            .iter()
            .map(|cfg| Upstream {
                cfg: cfg.clone(),
                clients: (0..=workers).map(|_| client(cfg)).collect(),
            })
            .collect();
        Self { list }
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
    let mut words = vec![if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request or its response broke off".to_string()
    }];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        words.push(c.to_string());
        cause = c.source();
    }
    words.join(": ")
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

/// A future that completes when an upgraded connection must be closed (its session ended).
pub type CloseWhen = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Send a prepared request to `up` and stream its answer back. A WebSocket upgrade (the
/// request says so) is relayed both ways until either side closes or `close_when` completes.
pub async fn forward(
    up: &Upstream,
    mut req: Request<Incoming>,
    close_when: Option<CloseWhen>,
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
            tracing::warn!(upstream = %up.cfg.name, error = %failure(&source), "upstream request failed");
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
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut u = TokioIo::new(u);
        let close_when = close_when.unwrap_or_else(|| Box::pin(std::future::pending()));
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
            () = close_when => tracing::info!("websocket closed: its session ended"),
        }
    });
    Ok(resp.map(|_| Body::Empty))
}
