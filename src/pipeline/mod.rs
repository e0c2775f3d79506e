//! The request pipeline: small named stages, called in one place, in order.
//!
//! ```text
//! client ─TLS─▶ framing ─▶ path ─▶ url tokens ─▶ cookies ─▶ /.auth/? ─▶ route ─▶ csrf (origin)
//!        ─▶ strip ─▶ session (verify | refresh) ─▶ anomaly ─▶ require ─▶ rate limit ─▶ policy
//!        ─▶ csrf (token) ─▶ inject ─▶ upstream login ─▶ forward (forwarding headers, proxy)
//!        ─▶ upstream login (grant)
//! ```
//!
//! Each stage returns continue-or-refuse (`Result<_, Refusal>`); [`decide`] is the list.
//! [`decide`] is generic over the body so tests and benchmarks drive it without sockets; the
//! service (`crate::service`) answers its [`Decision`].

pub(crate) mod anomaly;
pub(crate) mod csrf;
pub(crate) mod forwarding;
pub(crate) mod framing;
pub(crate) mod inject;
pub(crate) mod policy;
pub(crate) mod rate_limit;
pub(crate) mod route;
pub(crate) mod session;
pub(crate) mod strip;
pub(crate) mod upstream_login;
pub(crate) mod url_tokens;

use std::net::IpAddr;
use std::sync::Arc;

use http::Request;

use crate::cookies::{self, CookieScan, Outgoing};
use crate::refusal::Refusal;
use crate::runtime::{ConnCtx, Runtime};
use crate::sessions::Identity;
use crate::web::user_agent::UserAgent;
use crate::web::{headers, path};

/// Per-request facts, computed once by the early stages.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The normalised path: what the policy saw and what the upstream receives.
    pub path: String,
    /// The same path as servers that strip path parameters read it (`path::without_parameters`),
    /// when it has a `;`: every decision by path must hold for both readings.
    pub bare_path: Option<String>,
    /// The query without credential parameters.
    pub query: Option<String>,
    pub client_ip: IpAddr,
    /// The TCP peer (a trusted proxy, or the client itself).
    pub peer_ip: IpAddr,
    pub navigation: bool,
    /// A WebSocket upgrade request (HTTP/1.1).
    pub websocket: bool,
    /// The `Authorization: Bearer` token, read before `strip` removes it.
    pub bearer: Option<String>,
    /// The gateway's cookies, and the `Cookie` header to forward without them.
    pub cookies: CookieScan,
}

impl RequestCtx {
    fn new<B>(
        rt: &Runtime,
        conn: &ConnCtx,
        req: &Request<B>,
        path: String,
        query: Option<String>,
        cookies: CookieScan,
    ) -> Self {
        let h = req.headers();
        Self {
            client_ip: client_ip(rt, conn, h),
            peer_ip: conn.peer.ip(),
            navigation: headers::is_navigation(req.method(), h),
            websocket: headers::is_websocket(req),
            bearer: headers::bearer_token(h).map(str::to_owned),
            bare_path: path::without_parameters(&path),
            path,
            query,
            cookies,
        }
    }

    /// The same request, answered as an API call (`401` JSON, never a login redirect).
    pub fn as_api_call(&self) -> Self {
        Self {
            navigation: false,
            ..self.clone()
        }
    }

    /// Whether the request is for `app_path` in either reading of its path (with or without
    /// path parameters): `/logout;jsessionid=1` is `/logout` to a Java app.
    pub fn is_for(&self, app_path: &str) -> bool {
        self.path == app_path || self.bare_path.as_deref() == Some(app_path)
    }

    /// The session tokens the request carries, `(access, refresh)`: a Bearer token before the
    /// access cookie.
    pub fn held_tokens(&self) -> (Option<&str>, Option<&str>) {
        let g = &self.cookies.gateway;
        (
            self.bearer.as_deref().or(g.access.as_deref()),
            g.refresh.as_deref(),
        )
    }

    /// `path?query`, as the client should come back to it.
    pub fn here(&self) -> String {
        crate::web::query::with_query(&path::encode(&self.path), self.query.as_deref())
    }
}

/// What the stages before forwarding decided.
#[derive(Debug)]
pub enum Decision {
    /// Answer the client now.
    Refuse(Refusal),
    /// A request for the gateway's own endpoints.
    Gateway(RequestCtx),
    /// Forward to the upstream.
    Forward(Forward),
}

/// A request cleared for its upstream.
#[derive(Debug)]
pub struct Forward {
    pub upstream: usize,
    pub ctx: RequestCtx,
    /// The gateway's `Set-Cookie`s for the response (a refresh, a logout path).
    pub set_cookies: Outgoing,
    /// The verified identity, if any.
    pub identity: Option<Arc<Identity>>,
}

/// Every stage up to forwarding, in order. Mutates the request into what goes upstream.
pub async fn decide<B>(rt: &Runtime, conn: &ConnCtx, req: &mut Request<B>) -> Decision {
    match stages(rt, conn, req).await {
        Ok(d) => d,
        Err(r) => Decision::Refuse(r),
    }
}

async fn stages<B>(
    rt: &Runtime,
    conn: &ConnCtx,
    req: &mut Request<B>,
) -> Result<Decision, Refusal> {
    // Framing first: nothing below may interpret a request that two parties would read
    // differently.
    framing::check(rt, conn, req)?;
    // One normalised path, used by the policy and sent upstream.
    let path =
        path::normalise_with(req.uri().path(), rt.cfg.paths.allow_double_encoding)?.into_owned();
    // Credentials in the URL: dealt with before anything routes, logs or forwards the query.
    let query = url_tokens::check(rt, req, &path)?;
    // The gateway's cookies, read once; a duplicate is ambiguous.
    let cookies = cookies::scan(req.headers(), rt.sessions.cookies())?;
    let ctx = RequestCtx::new(rt, conn, req, path, query, cookies);
    // The gateway's own endpoints never reach an upstream.
    if path::is_gateway_path(&ctx.path) {
        return Ok(Decision::Gateway(ctx));
    }
    // Longest prefix on the normalised path; the app's own login pages are public.
    let route = route::check(rt, &ctx)?;
    // CSRF (origin), before anything rotates: unsafe requests with the gateway's cookies prove
    // their origin (refused on protected routes, anonymous on public ones), and so do the
    // app's own login form and logout paths.
    let origin = csrf::check_origin(rt, &ctx, route, req)?;
    upstream_login::check_origin(rt, &ctx, req)?;
    // Strip spoofed identity, hop-by-hop headers and gateway credentials on every route,
    // before anything is added (so `Connection: x-auth-user` cannot remove what inject sets).
    strip::apply(rt, conn, &ctx, req);
    // Session: verify the access token locally, or refresh (protected routes only).
    let ua = &UserAgent::from_headers(req.headers());
    let refresh = !route.public && origin == csrf::Origin::Proven;
    let state = session::check(rt, &ctx, ua, refresh).await;
    // Anomaly: a verified token used from another network or browser.
    let state = anomaly::check(rt, &ctx, ua, state).await;
    // A protected route needs a session from here on; a public one goes on without.
    let (identity, set_cookies) = session::require(&ctx, route, state)?;
    // Rate limits: charged to the session (its handle), or to the client's network when
    // anonymous on a public route; here, once the session is known and before any work for it.
    rate_limit::check(rt, &ctx, route, identity.as_deref())
        .await
        .map_err(|r| r.keeping(&set_cookies))?;
    let identity = identity.filter(|_| origin == csrf::Origin::Proven);
    // From here on, a refusal carries any rotated cookies: a rotation is never lost.
    let keep = |r: Refusal| r.keeping(&set_cookies);
    // The route's policy: who may use it, with which methods, how recent a login.
    policy::check(rt, &ctx, route, req.method(), identity.as_deref()).map_err(keep)?;
    // CSRF (token mode): the double-submit token bound to the session.
    csrf::check_token(rt, &ctx, route, identity.as_deref(), req).map_err(keep)?;
    // Inject the verified identity (after strip, so these are the only identity headers).
    if let Some(id) = &identity {
        inject::apply(rt, req.headers_mut(), id);
    }
    // Upstream login: the app's logout paths end the gateway session too.
    let set_cookies =
        upstream_login::on_request(rt, &ctx, identity.as_deref(), set_cookies).await?;
    Ok(Decision::Forward(Forward {
        upstream: route.upstream,
        ctx,
        set_cookies,
        identity,
    }))
}

/// The client's address: the TCP peer, or — only when the peer is a trusted proxy — the
/// rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn client_ip(rt: &Runtime, conn: &ConnCtx, h: &http::HeaderMap) -> IpAddr {
    let peer = conn.peer.ip();
    if !conn.peer_trusted {
        return peer;
    }
    let hops: Vec<IpAddr> = h
        .get_all(&headers::X_FORWARDED_FOR_NAME)
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

#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
