//! The two plain-HTTP listeners.
//!
//! - **Redirect**: answers every request with `308` to the same path on the public HTTPS
//!   origin, credential query parameters removed (a token typed into an `http://` URL has
//!   already crossed the network in clear; at least it goes no further). The target host is
//!   always the configured public origin, never the client's `Host`, so this is no open
//!   redirect.
//! - **Admin** (loopback by default): `/healthz` (the process answers), `/readyz` (the store
//!   answers and the revocation set is synchronised), `/metrics`, and the admin API
//!   (`crate::admin`).
//!
//! Each listener has its own connection cap (`server.max_plain_connections`), so a flood of
//! idle connections to the public redirect listener cannot take the admin listener's health
//! checks with it; a request head must arrive within `server.header_read_timeout`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::drain::Drain;
use super::limits::RefusalLog;

use crate::body::{self, Body};
use crate::runtime::Runtime;
use crate::web::query as url_tokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redirect,
    Admin,
}

pub async fn serve(
    listener: TcpListener,
    kind: Kind,
    live: Arc<super::reload::Live>,
    mut stop: watch::Receiver<bool>,
) {
    let (name, key) = match kind {
        Kind::Redirect => (
            "redirect",
            "server.max_plain_connections (redirect listener)",
        ),
        Kind::Admin => ("admin", "server.max_plain_connections (admin listener)"),
    };
    let slots = Arc::new(Semaphore::new(
        live.runtime().cfg.server.max_plain_connections,
    ));
    let refusals = RefusalLog::new(key);
    let drain = Drain::new();
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.refused();
            drop(tcp);
            continue;
        };
        let live = live.clone();
        let watch = drain.watcher();
        tokio::spawn(async move {
            let listener = match kind {
                Kind::Redirect => "plain",
                Kind::Admin => "admin",
            };
            let _open = live.runtime().metrics.connection(listener, "h1");
            let timeout = live.runtime().cfg.server.header_read_timeout;
            let svc = service_fn(move |req| {
                // Each request on the runtime live when it arrives.
                let rt = live.runtime();
                async move {
                    Ok::<_, Infallible>(match kind {
                        Kind::Redirect => redirect(&rt, &req),
                        Kind::Admin => admin(&rt, &req).await,
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(tcp), svc);
            super::conn::drive(conn, watch, super::conn::Close::AtOnce).await;
            drop(slot);
        });
    }
    // Closed, not only no longer accepted from: a connection that arrives while the open ones
    // drain is refused at once (its client goes elsewhere) instead of waiting in the kernel's
    // accept queue until the process exits.
    drop(listener);
    drain
        .run(live.runtime().cfg.server.shutdown_grace, name)
        .await;
}

/// `308` to the HTTPS URL, credential parameters removed.
pub fn redirect<B>(rt: &Runtime, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let path = if path.starts_with('/') { path } else { "/" };
    let q = url_tokens::scan(req.uri().query(), &rt.cfg.url_tokens.params);
    let target = format!(
        "{}{}",
        rt.cfg.server.public_origin.origin,
        url_tokens::with_query(path, q.clean.as_deref())
    );
    body::redirect(StatusCode::PERMANENT_REDIRECT, &target)
}

async fn admin(rt: &Runtime, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/admin/users/") {
        return crate::admin::handle(rt, req, rest).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/healthz" => body::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let store_ok = tokio::time::timeout(Duration::from_secs(2), rt.sessions.store().ping())
                .await
                .is_ok_and(|r| r.is_ok());
            if store_ok && rt.sessions.revoked().is_synced() {
                body::text(StatusCode::OK, "ready\n")
            } else if !store_ok {
                body::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: session store unreachable\n",
                )
            } else {
                body::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: revocations not synchronised\n",
                )
            }
        }
        "/metrics" => {
            let mut r = Response::new(Body::full(rt.metrics.render()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => body::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
