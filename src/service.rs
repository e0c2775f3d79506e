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

use http::{Request, Response, header};
use hyper::body::Incoming;

use crate::body::Body;
use crate::pipeline::{self, Decision, Forward, forwarding, upstream_login};
use crate::refusal::{Label, Refusal};
use crate::runtime::{ConnCtx, Runtime};

pub async fn handle(
    rt: Arc<Runtime>,
    conn: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let mut resp = match pipeline::decide(&rt, &conn, &mut req).await {
        Decision::Refuse(r) => refuse(&rt, r),
        Decision::Gateway(ctx) => {
            rt.metrics.req_gateway.inc();
            crate::auth::handle(&rt, req, &ctx).await
        }
        Decision::Forward(f) => forward(&rt, f, req).await,
    };
    resp.headers_mut()
        .insert(header::STRICT_TRANSPORT_SECURITY, rt.hsts.clone());
    let deliveries = crate::delivery::take(&mut resp);
    if deliveries.is_empty() {
        return resp;
    }
    resp.map(|b| Body::delivering(b, deliveries))
}

/// Count a refusal by its label and answer it.
pub fn refuse(rt: &Runtime, r: Refusal) -> Response<Body> {
    let m = &rt.metrics;
    match r.label() {
        Label::Refused => m.req_refused.inc(),
        Label::Unauthenticated => m.req_unauthenticated.inc(),
        Label::Unavailable => m.req_unavailable.inc(),
        Label::UpstreamError => m.req_upstream_error.inc(),
    };
    r.into_response(&rt.sessions)
}

async fn forward(rt: &Arc<Runtime>, f: Forward, mut req: Request<Incoming>) -> Response<Body> {
    let Forward {
        upstream,
        ctx,
        set_cookies,
        identity,
    } = f;
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
        Err(e) => return refuse(rt, Refusal::from(e).keeping(&set_cookies)),
    };
    rt.metrics.req_forwarded.inc();
    rt.metrics
        .upstream_seconds
        .observe(started.elapsed().as_secs_f64());
    upstream_login::on_response(rt, &ctx, ua.as_ref(), &mut resp, set_cookies).await;
    resp
}
