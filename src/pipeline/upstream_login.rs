//! Upstream login (`login.mode = "upstream"`): the app keeps its own login form and tells the
//! gateway who signed in, with a signed grant on its response to `login.upstream_path`.
//!
//! On the way in: the app's login page and form are public (see `route`), and its logout paths
//! end the gateway session too. On the way back ([`on_response`], every mode): the grant header
//! is removed from every response and honoured only on the login path; the app's own session
//! cookies (`login.drop_cookies`) and anything in the gateway's cookie namespace never reach
//! the client. Threats: a forged or replayed grant (`login::grant`), a grant smuggled on
//! another response (a page that reflects headers) — ignored and stripped.

use http::{HeaderMap, HeaderValue, Response, header};

use super::RequestCtx;
use crate::audit::Event;
use crate::body::Body;
use crate::config::UpstreamLogin;
use crate::cookies::Outgoing;
use crate::login::grant;
use crate::metrics::Metrics;
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::sessions::{Ending, Identity};
use crate::web::headers::GRANT_HEADER;
use crate::web::user_agent::UserAgent;

/// Whether `path` is the app's own login page or form (reachable without a session).
pub fn is_login_page(rt: &Runtime, path: &str) -> bool {
    rt.cfg
        .login
        .upstream
        .as_ref()
        .is_some_and(|up| path == up.path || path == up.page_path)
}

/// The app's login form (unsafe methods) and its logout paths (any method: a cross-site GET of
/// a logout link must not end the session) must not be requested from another origin: login
/// CSRF would sign the victim into the attacker's account.
pub fn check_origin<B>(
    rt: &Runtime,
    ctx: &RequestCtx,
    req: &http::Request<B>,
) -> Result<(), Refusal> {
    let Some(up) = &rt.cfg.login.upstream else {
        return Ok(());
    };
    let login_form = ctx.is_for(&up.path)
        && super::csrf::is_unsafe(req.method(), req.headers(), ctx.query.as_deref());
    if login_form || is_logout_path(up, ctx) {
        super::csrf::check_app_path(rt, ctx, req)?;
    }
    Ok(())
}

/// A request for one of the app's logout paths, in either reading of its path.
fn is_logout_path(up: &UpstreamLogin, ctx: &RequestCtx) -> bool {
    up.logout_paths.iter().any(|p| ctx.is_for(p))
}

/// The app's logout also ends the gateway session (the app still sees who it was).
pub async fn on_request(
    rt: &Runtime,
    ctx: &RequestCtx,
    identity: Option<&Identity>,
    set_cookies: Outgoing,
) -> Result<Outgoing, Refusal> {
    let Some(up) = &rt.cfg.login.upstream else {
        return Ok(set_cookies);
    };
    if !is_logout_path(up, ctx) {
        return Ok(set_cookies);
    }
    if let Some(id) = identity {
        let why = Ending {
            event: "logout",
            ip: ctx.client_ip,
            reason: None,
        };
        if let Err(e) = rt.sessions.end(&id.sub, &id.sid, why).await {
            tracing::warn!(error = %e, "logout path: session store unavailable");
            let r = Refusal::StoreUnavailable {
                navigation: ctx.navigation,
            };
            return Err(r.keeping(&set_cookies));
        }
    }
    // The session ended: a rotation this request made is moot (nothing to deliver).
    Ok(rt.sessions.clear_cookies().into())
}

/// What the response half needs from the request, taken before the request goes upstream:
/// the user agent, only on the login path (where a grant may start a session).
pub fn keep_for_response<B>(
    rt: &Runtime,
    ctx: &RequestCtx,
    req: &http::Request<B>,
) -> Option<UserAgent<'static>> {
    let up = rt.cfg.login.upstream.as_ref()?;
    (ctx.path == up.path).then(|| UserAgent::from_headers(req.headers()).into_owned())
}

/// The response half: strip the grant (and start a session when it came on the login path),
/// drop cookies the client must not get from the app, add the gateway's own `Set-Cookie`s.
/// `ua` is what [`keep_for_response`] kept.
pub async fn on_response(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: Option<&UserAgent<'_>>,
    resp: &mut Response<Body>,
    set_cookies: Outgoing,
) {
    let grant = resp.headers_mut().remove(GRANT_HEADER);
    drop_app_cookies(rt, resp.headers_mut());
    refusal::append(resp, set_cookies);
    if let Some(grant) = grant {
        let none = UserAgent::from_bytes(b"");
        let ua = ua.unwrap_or(&none);
        // Boxed: starting a session is a large future, and few responses carry a grant.
        refusal::append(resp, Box::pin(honour_grant(rt, ctx, ua, &grant)).await);
    }
}

/// Start a session when the grant came on the login path and verifies; otherwise ignore it
/// (it was already stripped). Returns `Set-Cookie`s.
async fn honour_grant(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    grant: &HeaderValue,
) -> Vec<HeaderValue> {
    let ip = ctx.client_ip.to_string();
    let Some(up) = &rt.cfg.login.upstream else {
        rt.audit.emit(
            Event::new("grant_ignored")
                .ip(&ip)
                .reason("login.mode is not upstream"),
        );
        return Vec::new();
    };
    if ctx.path != up.path {
        rt.audit.emit(
            Event::new("grant_ignored")
                .ip(&ip)
                .reason("grant on a path other than login.upstream_path"),
        );
        return Vec::new();
    }
    let Some(claims) = grant
        .to_str()
        .ok()
        .and_then(|g| grant::verify(&up.grant_secrets, g))
    else {
        Metrics::outcome(&rt.metrics.logins, "grant_refused");
        rt.audit.emit(
            Event::new("grant_refused")
                .ip(&ip)
                .reason("forged, expired or malformed grant"),
        );
        return Vec::new();
    };
    // The same session when the user already holds one (a step-up through the app's login).
    let started = rt
        .sessions
        .sign_in(
            ctx.held_tokens(),
            &claims.sub,
            &claims.roles,
            ctx.client_ip,
            ua,
            None,
        )
        .await;
    match started {
        Ok(issued) => {
            Metrics::outcome(&rt.metrics.logins, "ok");
            rt.sessions.set_cookies(&issued).values
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream login: session store unavailable");
            Metrics::outcome(&rt.metrics.logins, "unavailable");
            Vec::new()
        }
    }
}

/// Remove `Set-Cookie` values the client must not get from the app: the app's own session
/// cookies in upstream-login mode, and anything in the gateway's cookie namespace.
fn drop_app_cookies(rt: &Runtime, h: &mut HeaderMap) {
    let names = rt.sessions.cookies();
    if !h
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| names.drops_set_cookie(v.as_bytes()))
    {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !names.drops_set_cookie(v.as_bytes()))
        .cloned()
        .collect();
    h.remove(header::SET_COOKIE);
    for v in kept {
        h.append(header::SET_COOKIE, v);
    }
}
