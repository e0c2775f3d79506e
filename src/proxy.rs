//! Forwarding to upstreams over pooled keep-alive connections, bodies streamed both ways.
//!
//! The request arrives here stripped, authenticated and with identity injected. This module
//! sets the forwarding headers, sends HTTP/1.1 upstream whatever the client spoke, passes
//! WebSocket upgrades through, and turns upstream failures into `502`/`504` pages that say
//! nothing about the upstream (its address stays in the log).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{self, Body};
use crate::config::UpstreamConfig;
use crate::pipeline::RequestCtx;
use crate::runtime::Runtime;
use crate::web::headers::{self as strip, client_host};
use crate::web::path as route;

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

fn failure(status: StatusCode) -> Response<Body> {
    match status {
        StatusCode::GATEWAY_TIMEOUT => body::text(
            status,
            "Gateway timeout: the application did not answer in time.\n",
        ),
        _ => body::text(
            StatusCode::BAD_GATEWAY,
            "Bad gateway: the application could not be reached.\n",
        ),
    }
}

/// What came back from an upstream.
pub struct Forwarded {
    pub response: Response<Body>,
    /// An upstream-login grant the app sent (already removed from the response).
    pub grant: Option<HeaderValue>,
}

impl From<Response<Body>> for Forwarded {
    fn from(response: Response<Body>) -> Self {
        Self {
            response,
            grant: None,
        }
    }
}

/// Send `req` to upstream `idx` and stream its answer back. `sid` is the session of the
/// request, if any: an upgraded connection is closed when that session is revoked.
pub async fn forward(
    rt: &Arc<Runtime>,
    idx: usize,
    ctx: &RequestCtx,
    sid: Option<&str>,
    mut req: Request<Incoming>,
) -> Forwarded {
    let Some(up) = rt.upstreams.get(idx) else {
        return failure(StatusCode::BAD_GATEWAY).into();
    };
    let websocket = ctx.websocket;
    let client_host = client_host(&req).map(str::to_owned);
    let encoded = route::encode(&ctx.path);
    let mut pq = String::with_capacity(
        up.cfg.base_path.len() + encoded.len() + ctx.query.as_ref().map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&up.cfg.base_path);
    pq.push_str(&encoded);
    if let Some(q) = &ctx.query {
        pq.push('?');
        pq.push_str(q);
    }
    let uri = match Uri::builder()
        .scheme(up.cfg.scheme.clone())
        .authority(up.cfg.authority.clone())
        .path_and_query(pq)
        .build()
    {
        Ok(u) => u,
        Err(_) => return body::bad_request("request target cannot be forwarded").into(),
    };
    {
        let h = req.headers_mut();
        if websocket {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        match (&client_host, up.cfg.preserve_host) {
            (Some(host), true) => {
                if let Ok(v) = HeaderValue::from_str(host) {
                    h.insert(header::HOST, v);
                }
            }
            _ => {
                h.remove(header::HOST);
            }
        }
        let ip = ctx.client_ip.to_string();
        // Present only when the peer is a trusted proxy (strip removed it otherwise); a proxy
        // may have sent several lines: keep the whole chain, then add the peer.
        let prev: Vec<&str> = h
            .get_all(strip::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xff = if prev.is_empty() {
            ip
        } else {
            format!("{}, {}", prev.join(", "), ctx.peer_ip)
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(strip::X_FORWARDED_FOR, v);
        }
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        if let Some(v) = client_host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
        {
            h.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let started = std::time::Instant::now();
    let res = tokio::time::timeout(up.cfg.timeout, up.client().request(req)).await;
    let mut resp = match res {
        Err(_) => {
            tracing::warn!(upstream = %up.cfg.name, timeout_ms = up.cfg.timeout.as_millis() as u64, "upstream timed out");
            return failure(StatusCode::GATEWAY_TIMEOUT).into();
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.cfg.name, error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
            return failure(StatusCode::BAD_GATEWAY).into();
        }
        Ok(Ok(r)) => r,
    };
    rt.metrics
        .upstream_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::trace!(upstream = %up.cfg.name, ms = started.elapsed().as_millis() as u64, "upstream answered");
    let grant = resp.headers_mut().remove(strip::GRANT_HEADER);
    if !rt.cookies.drop.is_empty() || resp.headers().contains_key(header::SET_COOKIE) {
        drop_app_cookies(rt, resp.headers_mut());
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // An upgrade nobody asked for cannot be relayed.
            return failure(StatusCode::BAD_GATEWAY).into();
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let revoked = sid.map(|s| (Arc::<str>::from(s), rt.revoked.watch(), rt.clone()));
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
            match revoked {
                None => {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
                Some((sid, mut watch, rt)) => {
                    // Closed when its session ends (logout, revocation on any instance).
                    let ended = async {
                        loop {
                            match watch.recv().await {
                                Ok(s) if s == sid => return,
                                Ok(_) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    if rt.revoked.is_revoked(&sid) {
                                        return;
                                    }
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    std::future::pending::<()>().await
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                        () = ended => tracing::info!("websocket closed: its session ended"),
                    }
                }
            }
        });
        return Forwarded {
            response: resp.map(|_| Body::Empty),
            grant,
        };
    }
    strip::remove_hop_by_hop(resp.headers_mut());
    Forwarded {
        response: resp.map(Body::Incoming),
        grant,
    }
}

/// Remove `Set-Cookie` values the client must not get from the app: the app's own session
/// cookies in upstream-login mode, and anything in the gateway's cookie namespace.
fn drop_app_cookies(rt: &Runtime, h: &mut HeaderMap) {
    if !h
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| rt.cookies.drops_set_cookie(v.as_bytes()))
    {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !rt.cookies.drops_set_cookie(v.as_bytes()))
        .cloned()
        .collect();
    h.remove(header::SET_COOKIE);
    for v in kept {
        h.append(header::SET_COOKIE, v);
    }
}
