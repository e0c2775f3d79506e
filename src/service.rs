//! One request from accept to answer: the pipeline decides, then the gateway answers itself
//! (a refusal, or one of its `/.auth/` endpoints) or forwards to the upstream. Every response
//! carries HSTS. This is the only place that knows all three (`pipeline`, `auth`, `proxy`),
//! so none of them imports another's caller.
//!
//! A response that carries a refresh-token rotation this request committed leaves here with
//! its body wrapped (`Body::delivering`): the rotation counts as delivered once hyper has taken
//! the whole response. If this future is dropped first (the client closed its HTTP/1
//! connection, reset its HTTP/2 stream, or went away while the upstream was slow), or hyper
//! drops the body unfinished, the rotation is reopened in the store (`crate::delivery`,
//! `Sessions::refresh`): the client's previous refresh token keeps working.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::access_log::Entry;
use crate::body::Body;
use crate::metrics::RequestOutcome;
use crate::pipeline::{self, Decision, Forward, forwarding, upstream_login};
use crate::refusal::{Label, Refusal};
use crate::request_id::{self, Scope};
use crate::runtime::{ConnCtx, Runtime};
use crate::trace_context;

/// What the answer came to, for the metrics and the access log.
struct Noted {
    outcome: RequestOutcome,
    /// The upstream the request was sent to.
    upstream: Option<usize>,
    reason: Option<&'static str>,
}

impl Noted {
    fn gateway() -> Self {
        Self {
            outcome: RequestOutcome::Gateway,
            upstream: None,
            reason: None,
        }
    }
}

pub async fn handle(
    rt: Arc<Runtime>,
    conn: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let (started, time) = (Instant::now(), SystemTime::now());
    // The request's id first: every log line, audit event and the access log carry it.
    let id = request_id::assign(req.headers_mut(), conn.peer_trusted);
    let (parent, trace_id) = trace_context::incoming(req.headers(), &id);
    let span = tracing::info_span!("request", request_id = %id);
    let span_id = trace_context::new_span_id();
    // With spans exported (feature `otel`), the upstream's parent is the exported span.
    #[cfg(feature = "otel")]
    let (trace_id, span_id, sampled) = crate::otel::link(&span, parent.as_ref(), trace_id, span_id);
    #[cfg(not(feature = "otel"))]
    let sampled = false;
    trace_context::forward(
        req.headers_mut(),
        parent.as_ref(),
        trace_id,
        span_id,
        sampled,
    );
    let logged = rt.access_log.enabled().then(|| {
        let ip = pipeline::client_ip(&rt, &conn, req.headers());
        (req.method().clone(), req.uri().clone(), ip)
    });
    let scope = Scope::new(id);
    let (mut resp, noted) = request_id::within(scope.clone(), answer(&rt, &conn, req))
        .instrument(span)
        .await;
    rt.requests
        .count(noted.outcome, resp.status().as_u16(), noted.upstream);
    let h = resp.headers_mut();
    h.insert(header::STRICT_TRANSPORT_SECURITY, rt.hsts.clone());
    if let Ok(mut v) = HeaderValue::from_str(&scope.id) {
        // Unique to this response: over HTTP/2, "never indexed", so HPACK does not add it to
        // the connection's table (where it would only evict the values that do repeat).
        v.set_sensitive(true);
        h.insert(request_id::X_REQUEST_ID, v);
    }
    let deliveries = crate::delivery::take(&mut resp);
    let mut resp = if deliveries.is_empty() {
        resp
    } else {
        resp.map(|b| Body::delivering(b, deliveries))
    };
    if let Some((method, uri, client_ip)) = logged {
        let entry = Entry {
            time,
            request_id: scope.id.clone(),
            client_ip,
            method,
            path: logged_path(&rt, uri.path()),
            status: resp.status().as_u16(),
            bytes: 0,
            duration: started.elapsed(),
            upstream: noted
                .upstream
                .and_then(|i| rt.upstreams.get(i))
                .map(|u| u.cfg.name.clone()),
            session: scope.session().map(str::to_owned),
            reason: noted.reason,
        };
        resp = resp.map(|b| Body::logged(b, entry, rt.access_log.clone(), started));
    }
    resp
}

/// The normalised path as the upstream would get it (percent-encoded again), or the path as
/// it came when it cannot be normalised (a refused one); never the query.
fn logged_path(rt: &Runtime, raw: &str) -> String {
    match crate::web::path::normalise_with(raw, rt.cfg.paths.allow_double_encoding) {
        Ok(p) => crate::web::path::encode(&p).into_owned(),
        Err(_) => raw.to_string(),
    }
}

async fn answer(
    rt: &Arc<Runtime>,
    conn: &ConnCtx,
    mut req: Request<Incoming>,
) -> (Response<Body>, Noted) {
    match pipeline::decide(rt, conn, &mut req).await {
        Decision::Refuse(r) => refuse(rt, r),
        Decision::Gateway(ctx) => {
            // Boxed: the gateway's own pages and endpoints (login, passkeys, OIDC) make a future
            // of many kilobytes, which every proxied request would otherwise carry and copy.
            let (resp, reason) = Box::pin(crate::auth::handle(rt, req, &ctx)).await;
            let noted = Noted {
                reason,
                ..Noted::gateway()
            };
            (resp, noted)
        }
        Decision::Forward(f) => forward(rt, f, req).await,
    }
}

/// Answer a refusal, with what it counts as.
fn refuse(rt: &Runtime, r: Refusal) -> (Response<Body>, Noted) {
    let outcome = match r.label() {
        Label::Refused => RequestOutcome::Refused,
        Label::Unauthenticated => RequestOutcome::Unauthenticated,
        Label::Unavailable => RequestOutcome::Unavailable,
        Label::UpstreamError => RequestOutcome::UpstreamError,
    };
    let noted = Noted {
        outcome,
        upstream: None,
        reason: Some(r.code()),
    };
    (r.into_response(&rt.sessions), noted)
}

async fn forward(
    rt: &Arc<Runtime>,
    f: Forward,
    mut req: Request<Incoming>,
) -> (Response<Body>, Noted) {
    let Forward {
        upstream,
        ctx,
        set_cookies,
        identity,
    } = f;
    if let Some(id) = &identity {
        request_id::note_session(&id.handle);
    }
    // A failure from here on still delivers a rotation this request committed.
    let Some(up) = rt.upstreams.get(upstream) else {
        let r = Refusal::from(crate::proxy::ProxyError::NoUpstream(upstream));
        return refuse(rt, r.keeping(&set_cookies));
    };
    if let Err(r) = forwarding::prepare(&up.cfg, &ctx, &mut req) {
        return refuse(rt, r.keeping(&set_cookies));
    }
    // A tunnel of a session is closed when the session ends (logout, revocation anywhere) or
    // reaches its absolute end, and when nothing has moved through it for the idle timeout.
    // Traffic in it is not activity of the session: a tunnel cannot keep a session alive.
    let limits = match identity.as_ref().filter(|_| ctx.websocket) {
        Some(id) => crate::proxy::Limits {
            idle: Some(rt.cfg.session.idle_timeout),
            close_when: Some(Box::pin(rt.sessions.tunnel_end(id))),
        },
        None => crate::proxy::Limits::default(),
    };
    let ua = upstream_login::keep_for_response(rt, &ctx, &req);
    let started = std::time::Instant::now();
    let mut resp = match crate::proxy::forward(up, req, limits).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(kind) = e.kind() {
                rt.metrics.upstream_error(&up.cfg.name, kind);
            }
            let (resp, mut noted) = refuse(rt, Refusal::from(e).keeping(&set_cookies));
            noted.upstream = Some(upstream);
            return (resp, noted);
        }
    };
    rt.requests
        .upstream_latency(upstream, started.elapsed().as_secs_f64());
    upstream_login::on_response(rt, &ctx, ua.as_ref(), &mut resp, set_cookies).await;
    let noted = Noted {
        outcome: RequestOutcome::Forwarded,
        upstream: Some(upstream),
        reason: None,
    };
    (resp, noted)
}

#[cfg(test)]
mod tests {
    fn future_size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper keeps each request's future by value and moves it more than once, so every byte
    /// of it is copied per request. The gateway's own endpoints, a refresh and a grant are
    /// boxed for that reason, and so is a new upstream connection (`proxy::pool`); this
    /// catches a large future put back on the proxied path. Sizes as `cargo test` builds it:
    /// 15,272 bytes with the upstream connect inline, 8,664 with it boxed, 4,768 once
    /// `request_id::within` stopped keeping a second copy of the request's future (HTTP/2:
    /// 87,086 instructions per request before, 77,903 after, `PROTO=h2
    /// benches/instructions.py`). The upstream send itself (about 0.9 KB) stays inline:
    /// boxing it cost 719 more instructions per request than moving it does.
    #[test]
    fn a_proxied_request_carries_no_cold_future_inline() {
        let size = future_size(super::handle);
        assert!(size <= 5120, "service::handle's future is {size} bytes");
    }
}
