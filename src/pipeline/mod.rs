//! The request pipeline: small named stages, called in one place, in order.
//!
//! ```text
//! client ─TLS─▶ framing ─▶ path ─▶ url tokens ─▶ cookies ─▶ /.auth/? ─▶ route ─▶ strip
//!        ─▶ session (validate | refresh) ─▶ csrf ─▶ inject ─▶ forward
//! ```

pub mod anomaly;
pub mod csrf;
pub mod framing;
pub mod inject;
pub mod session;
pub mod strip;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::UrlTokenAction;
use crate::cookies::CookieScan;
use crate::routing as route_table;
use crate::runtime::{ConnCtx, Runtime};
use crate::web::headers;
use crate::web::path as route;
use crate::web::query as url_tokens;
use session::SessionOutcome;

/// Per-request facts computed once by the early stages.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The normalised path: what the policy saw and what the upstream receives.
    pub path: String,
    /// The query without credential parameters.
    pub query: Option<String>,
    pub client_ip: IpAddr,
    /// The TCP peer (a trusted proxy, or the client itself).
    pub peer_ip: IpAddr,
    pub navigation: bool,
    /// A WebSocket upgrade request (HTTP/1.1).
    pub websocket: bool,
}

/// What the stages before forwarding decided.
#[derive(Debug)]
pub enum Decision {
    /// Answer the client now (refusal, redirect, login needed).
    Respond(Response<Body>),
    /// A request for the gateway's own endpoints.
    Gateway(RequestCtx, CookieScan),
    /// Forward to upstream `upstream`, adding `set_cookies` to its response, for the verified
    /// `identity`, if any.
    Forward {
        upstream: usize,
        ctx: RequestCtx,
        set_cookies: Vec<HeaderValue>,
        identity: Option<Arc<session::Identity>>,
    },
}

/// Handle one request from a client; every response carries HSTS.
pub async fn handle(
    rt: Arc<Runtime>,
    conn: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let mut resp = match decide(&rt, &conn, &mut req).await {
        Decision::Respond(r) => {
            match r.status() {
                StatusCode::UNAUTHORIZED | StatusCode::FOUND => {
                    rt.metrics.req_unauthenticated.inc()
                }
                _ => rt.metrics.req_refused.inc(),
            };
            r
        }
        Decision::Gateway(ctx, cookies) => crate::auth::handle(&rt, req, &ctx, &cookies).await,
        Decision::Forward {
            upstream,
            ctx,
            set_cookies,
            identity,
        } => {
            rt.metrics.req_forwarded.inc();
            let ua = headers::user_agent(req.headers()).to_string();
            let fwd = crate::proxy::forward(
                &rt,
                upstream,
                &ctx,
                identity.as_ref().map(|i| i.sid.as_str()),
                req,
            )
            .await;
            let mut r = fwd.response;
            append_cookies(&mut r, set_cookies);
            if let Some(grant) = fwd.grant {
                // Upstream login: only the app's answer on its login path may start a session.
                append_cookies(
                    &mut r,
                    crate::auth::upstream_grant(&rt, &ctx, &grant, &ua).await,
                );
            }
            r
        }
    };
    resp.headers_mut()
        .insert(header::STRICT_TRANSPORT_SECURITY, rt.hsts.clone());
    resp
}

/// Every stage up to forwarding, in order, on a request of any body type (so tests and
/// benchmarks can drive it without sockets). Mutates the request into what goes upstream.
pub async fn decide<B>(rt: &Runtime, conn: &ConnCtx, req: &mut Request<B>) -> Decision {
    use Decision::Respond;
    // Framing first: nothing below may interpret a request that two parties would read
    // differently.
    // (The guard counts every request of the connection: ask it first, exactly once.)
    let guard_saw_conflict = conn
        .framing
        .as_ref()
        .is_some_and(|f| f.next_request_is_ambiguous());
    let framing = if guard_saw_conflict {
        Err("both Content-Length and Transfer-Encoding")
    } else {
        framing::check(req, &rt.identity_names)
    };
    if let Err(why) = framing {
        tracing::debug!(reason = why, "refused ambiguous request");
        // The connection's framing is in doubt: close it after this answer.
        let mut r = body::bad_request(why);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Respond(r);
    }
    // One normalised path, used by the policy and sent upstream.
    let path = match route::normalise(req.uri().path()) {
        Ok(p) => p.into_owned(),
        Err(e) => return Respond(body::bad_request(e.reason())),
    };
    // Credentials in the URL: dealt with before anything routes, logs or forwards the query.
    let q = url_tokens::scan(req.uri().query(), &rt.cfg.url_tokens.params);
    if q.found {
        match rt.cfg.url_tokens.action {
            UrlTokenAction::Redirect if matches!(*req.method(), Method::GET | Method::HEAD) => {
                let to = url_tokens::with_query(&route::encode(&path), q.clean.as_deref());
                return Respond(body::redirect(StatusCode::SEE_OTHER, &to));
            }
            UrlTokenAction::Redirect | UrlTokenAction::Reject => {
                return Respond(body::bad_request("credentials are not accepted in the URL"));
            }
            UrlTokenAction::Strip => {}
        }
    }
    let query = q.clean.map(|c| c.into_owned());
    // The gateway's cookies, read once; a duplicate is ambiguous.
    let cookies = match crate::cookies::scan(req.headers(), &rt.cookies) {
        Ok(c) => c,
        Err(_) => {
            return Respond(body::bad_request(
                "a gateway cookie was sent more than once",
            ));
        }
    };
    let ctx = RequestCtx {
        client_ip: client_ip(rt, conn, req.headers()),
        peer_ip: conn.peer.ip(),
        navigation: headers::is_navigation(req.method(), req.headers()),
        websocket: headers::is_websocket(req),
        path,
        query,
    };
    // The gateway's own endpoints never reach an upstream.
    if route::is_gateway_path(&ctx.path) {
        return Decision::Gateway(ctx, cookies);
    }
    let mut route: route_table::Route = rt.router.route(&ctx.path);
    if let Some(up) = &rt.cfg.login.upstream {
        // The app's own login page and form must be reachable without a session.
        if ctx.path == up.path || ctx.path == up.page_path {
            route.public = true;
        }
    }
    // Read the bearer token before `strip` removes it from what goes upstream.
    let bearer = headers::bearer_token(req.headers()).map(str::to_owned);
    // Strip spoofed identity, hop-by-hop headers and gateway credentials on every route, before
    // anything is added (so `Connection: x-auth-user` cannot remove what inject sets).
    strip::apply(
        req,
        &rt.identity_names,
        conn.peer_trusted,
        &cookies,
        bearer.is_some(),
    );
    // Session: validate locally, or refresh (protected routes only).
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let outcome = session::check(
        rt,
        bearer.as_deref(),
        &cookies.gateway,
        ctx.client_ip,
        ua,
        !route.public,
    )
    .await;
    let (identity, set_cookies) = match outcome {
        SessionOutcome::Valid(id) => (Some(id), Vec::new()),
        SessionOutcome::Refreshed(id, c) => (Some(id), c),
        SessionOutcome::Anonymous { .. } | SessionOutcome::Unavailable if route.public => {
            (None, Vec::new())
        }
        SessionOutcome::Anonymous { presented, clear } => {
            let return_to = url_tokens::with_query(&route::encode(&ctx.path), ctx.query.as_deref());
            return Respond(session::unauthenticated(
                rt,
                ctx.navigation,
                &return_to,
                presented,
                clear,
            ));
        }
        SessionOutcome::Unavailable => return Respond(session::unavailable(ctx.navigation)),
    };
    // CSRF: an unsafe request on a protected route must come from our own origin (and, in
    // token mode, carry the session's token).
    // A WebSocket upgrade is a GET that opens a two-way channel with the user's cookies:
    // cross-site WebSocket hijacking is CSRF, checked the same way.
    if !route.public
        && (ctx.websocket || csrf::is_unsafe(req.method(), req.headers(), ctx.query.as_deref()))
    {
        // Browsers cannot add headers to a WebSocket handshake: upgrades are judged by origin.
        let token_check = match (&identity, rt.cfg.csrf.mode) {
            (Some(id), crate::config::CsrfMode::Token) if !ctx.websocket && bearer.is_none() => {
                csrf::check_token(
                    &rt.csrf_key,
                    &id.sid,
                    req.headers(),
                    cookies.gateway.csrf.as_deref(),
                )
            }
            _ => Ok(()),
        };
        // A bearer token is no ambient credential: only cookie sessions must prove their origin.
        let cookie_auth = bearer.is_none() && identity.is_some();
        if let Err(why) = csrf::check(
            &rt.cfg.csrf,
            &rt.cfg.server.public_origin.origin,
            req.headers(),
            cookie_auth,
        )
        .and(token_check)
        {
            tracing::info!(reason = why, path = %ctx.path, "csrf: refused");
            return Respond(body::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "forbidden", "reason": why}),
            ));
        }
    }
    // Inject the verified identity (after strip, so these are the only identity headers).
    if let Some(id) = &identity {
        inject::apply(rt, req.headers_mut(), id);
    }
    let mut set_cookies = set_cookies;
    if let Some(up) = &rt.cfg.login.upstream {
        // The app's logout also ends the gateway session (the app still sees who it was).
        if up.logout_paths.contains(&ctx.path) {
            if let Some(id) = &identity {
                if let Err(e) =
                    session::end_session(rt, &id.sub, &id.sid, "logout", ctx.client_ip, None).await
                {
                    tracing::warn!(error = %e, "logout path: session store unavailable");
                    return Respond(session::unavailable(ctx.navigation));
                }
            }
            set_cookies = session::clear_cookies(rt);
        }
    }
    Decision::Forward {
        upstream: route.upstream,
        ctx,
        set_cookies,
        identity,
    }
}

/// The client's address: the TCP peer, or — only when the peer is a trusted proxy — the
/// rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn client_ip(rt: &Runtime, conn: &ConnCtx, h: &http::HeaderMap) -> IpAddr {
    let peer = conn.peer.ip();
    if !conn.peer_trusted {
        return peer;
    }
    let hops: Vec<IpAddr> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !rt.is_trusted_proxy(**ip))
        .copied()
        .unwrap_or(peer)
}

/// Append the gateway's `Set-Cookie` values to a response.
pub fn append_cookies(resp: &mut Response<Body>, cookies: Vec<HeaderValue>) {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
}

#[cfg(test)]
mod tests;
