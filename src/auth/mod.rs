//! The gateway's own endpoints under `/.auth/`: login, refresh, logout, logout-all, me, the
//! sessions list, CSRF tokens and the assertion keys. None of them ever reaches an upstream.
//! Unsafe methods pass the CSRF origin check first (login CSRF is an attack too: it signs the
//! victim into the attacker's account).

pub mod grant;
pub mod return_to;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::audit::Event;
use crate::body::{self, Body};
use crate::config::LoginMode;
use crate::cookies::CookieScan;
use crate::metrics::Metrics;
use crate::pages;
use crate::pipeline::session::{self, Identity, Issued, RefreshResult, SessionOutcome};
use crate::pipeline::{RequestCtx, append_cookies, csrf};
use crate::runtime::Runtime;
use crate::store::device;
use crate::store::{SessionRecord, StoreError};
use crate::util::{now_unix, random_token};
use crate::web::headers::{self, user_agent, wants_html};

const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    rt.metrics.req_gateway.inc();
    if csrf::is_unsafe(req.method(), req.headers(), ctx.query.as_deref()) {
        // Cookie sessions must prove their origin; a login form or bearer client has nothing to
        // forge with, and must still not come from another origin when a browser says so.
        let cookie_auth = headers::bearer_token(req.headers()).is_none()
            && (cookies.gateway.access.is_some() || cookies.gateway.refresh.is_some());
        if let Err(why) = csrf::check(
            &rt.cfg.csrf,
            &rt.cfg.server.public_origin.origin,
            req.headers(),
            cookie_auth,
        ) {
            tracing::info!(reason = why, path = %ctx.path, "csrf: refused");
            return body::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "forbidden", "reason": why}),
            );
        }
    }
    let method = req.method().clone();
    let path = ctx.path.as_str();
    if let Some(rest) = path.strip_prefix("/.auth/sessions/") {
        let (handle, form) = match rest.strip_suffix("/revoke") {
            Some(h) => (h, true),
            None => (rest, false),
        };
        return match (&method, form) {
            (&Method::DELETE, false) | (&Method::POST, true) => {
                sessions::end_one(rt, &req, ctx, cookies, handle, form).await
            }
            _ => method_not_allowed(),
        };
    }
    match (path, &method) {
        ("/.auth/login", &Method::GET | &Method::HEAD) => login_page(rt, ctx),
        ("/.auth/login", &Method::POST) => login(rt, req, ctx).await,
        ("/.auth/refresh", &Method::POST) => refresh(rt, req, ctx, cookies).await,
        ("/.auth/logout", &Method::POST) => logout(rt, req, ctx, cookies).await,
        ("/.auth/logout-all", &Method::POST) => sessions::logout_all(rt, &req, ctx, cookies).await,
        ("/.auth/me", &Method::GET | &Method::HEAD) => me(rt, &req, ctx, cookies).await,
        ("/.auth/sessions", &Method::GET | &Method::HEAD) => {
            sessions::list(rt, &req, ctx, cookies).await
        }
        ("/.auth/csrf", &Method::GET) => csrf_token(rt, &req, ctx, cookies).await,
        ("/.auth/jwks.json", &Method::GET | &Method::HEAD) => jwks(rt),
        (
            "/.auth/login" | "/.auth/refresh" | "/.auth/logout" | "/.auth/logout-all" | "/.auth/me"
            | "/.auth/sessions" | "/.auth/csrf" | "/.auth/jwks.json",
            _,
        ) => method_not_allowed(),
        _ => body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found"}),
        ),
    }
}

fn method_not_allowed() -> Response<Body> {
    body::json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"error": "method_not_allowed"}),
    )
}

fn is_json(h: &HeaderMap) -> bool {
    headers::content_type_is(h, "application/json")
}

fn is_form(h: &HeaderMap) -> bool {
    headers::content_type_is(h, "application/x-www-form-urlencoded")
}

/// Read a small request body, bounded in size and time.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    match collected {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(body::json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &serde_json::json!({"error": "body_too_large"}),
        )),
        Err(_) => Err(body::json(
            StatusCode::REQUEST_TIMEOUT,
            &serde_json::json!({"error": "body_timeout"}),
        )),
    }
}

fn return_to_param(rt: &Runtime, ctx: &RequestCtx) -> String {
    let raw = ctx.query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
    });
    return_to::validate_with_origin(
        raw.as_deref(),
        &rt.cfg.url_tokens.params,
        &rt.cfg.server.public_origin.origin,
    )
}

fn login_page(rt: &Runtime, ctx: &RequestCtx) -> Response<Body> {
    let target = return_to_param(rt, ctx);
    if let Some(up) = &rt.cfg.login.upstream {
        // The app has its own login page; send the browser there.
        let enc: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        return body::redirect(
            StatusCode::FOUND,
            &format!("{}?return_to={enc}", up.page_path),
        );
    }
    body::html(StatusCode::OK, pages::login_page(&target, None))
}

/// Start a new session (a new id at every login: nothing from before it is trusted after it).
pub async fn start_session(
    rt: &Runtime,
    user: &str,
    roles: &[String],
    ip: IpAddr,
    ua: &str,
) -> Result<(SessionRecord, Issued), StoreError> {
    let now = now_unix();
    let ua: String = ua.chars().take(512).collect();
    let rec = SessionRecord {
        sid: random_token(24),
        user: user.to_string(),
        roles: roles.to_vec(),
        created: now,
        last_seen: now,
        abs_end: now + rt.cfg.session.refresh_ttl.as_secs(),
        cur_jti: random_token(16),
        prev_jti: None,
        rotated_at: now,
        ip: ip.to_string(),
        device: device::label(&ua),
        user_agent: ua.clone(),
    };
    let started = std::time::Instant::now();
    let r = rt.store.create(rec.clone()).await;
    rt.metrics
        .store_op("create", started.elapsed().as_secs_f64());
    r?;
    let fp = rt.fingerprints.bind(ip, &ua);
    let issued = session::issue(rt, &rec, now, &fp);
    rt.audit.emit(
        Event::new("login_ok")
            .user(&rec.user)
            .session(&rt.keys.session_handle(&rec.sid))
            .ip(&rec.ip),
    );
    Ok((rec, issued))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    return_to: Option<String>,
}

fn invalid_credentials(json: bool, return_to: &str) -> Response<Body> {
    if json {
        body::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_credentials"}),
        )
    } else {
        body::html(
            StatusCode::UNAUTHORIZED,
            pages::login_page(return_to, Some("Invalid username or password.")),
        )
    }
}

fn throttled(json: bool, retry: Duration) -> Response<Body> {
    let secs = retry.as_secs().max(1);
    let mut r = if json {
        body::json(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"error": "too_many_attempts", "retry_after": secs}),
        )
    } else {
        body::html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::message_page(
                "Too many attempts",
                &format!("Too many failed sign-ins. Try again in {secs} seconds."),
            ),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn login(rt: &Arc<Runtime>, req: Request<Incoming>, ctx: &RequestCtx) -> Response<Body> {
    if rt.cfg.login.mode == LoginMode::Upstream {
        return body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found", "reason": "sign-in is handled by the application"}),
        );
    }
    let json = is_json(req.headers());
    if !json && !is_form(req.headers()) {
        return body::json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &serde_json::json!({"error": "unsupported_media_type", "accepted": ["application/x-www-form-urlencoded", "application/json"]}),
        );
    }
    let ua = user_agent(req.headers()).to_string();
    let raw = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form: Option<LoginForm> = if json {
        serde_json::from_slice(&raw).ok()
    } else {
        serde_urlencoded::from_bytes(&raw).ok()
    };
    let Some(form) = form else {
        return body::bad_request("expected username and password");
    };
    let target = return_to::validate_with_origin(
        form.return_to.as_deref(),
        &rt.cfg.url_tokens.params,
        &rt.cfg.server.public_origin.origin,
    );
    let ip = ctx.client_ip;
    let shown: String = form.username.chars().take(128).collect();
    // Throttle before any password work: a guesser learns nothing and costs nothing.
    if let Some(retry) = rt.throttle.check(&form.username, ip) {
        Metrics::outcome(&rt.metrics.logins, "throttled");
        rt.audit.emit(
            Event::new("login_throttled")
                .user(&shown)
                .ip(&ip.to_string()),
        );
        return throttled(json, retry);
    }
    let Some(user) = rt.users.verify(&form.username, &form.password).await else {
        rt.throttle.failure(&form.username, ip);
        Metrics::outcome(&rt.metrics.logins, "failed");
        rt.audit
            .emit(Event::new("login_failed").user(&shown).ip(&ip.to_string()));
        return invalid_credentials(json, &target);
    };
    rt.throttle.success(&user.name);
    let issued = match start_session(rt, &user.name, &user.roles, ip, &ua).await {
        Ok((_, issued)) => issued,
        Err(e) => {
            tracing::warn!(error = %e, "login: session store unavailable");
            Metrics::outcome(&rt.metrics.logins, "unavailable");
            return session::unavailable(!json);
        }
    };
    Metrics::outcome(&rt.metrics.logins, "ok");
    if json {
        body::json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": issued.access,
                "refresh_token": issued.refresh,
                "token_type": "Bearer",
                "expires_in": issued.access_max_age,
            }),
        )
    } else {
        let mut r = body::redirect(StatusCode::SEE_OTHER, &target);
        append_cookies(&mut r, session::session_cookies(rt, &issued));
        r
    }
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let from_body = is_json(req.headers());
    let ua = user_agent(req.headers()).to_string();
    let token = if from_body {
        let raw = match read_body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match serde_json::from_slice::<RefreshBody>(&raw) {
            Ok(b) => b.refresh_token,
            Err(_) => return body::bad_request("expected {\"refresh_token\": ...}"),
        }
    } else {
        match &cookies.gateway.refresh {
            Some(t) => t.clone(),
            None => return refused(rt, false),
        }
    };
    match session::refresh_session(rt, &token, ctx.client_ip, &ua).await {
        RefreshResult::Issued(t) if from_body => body::json(
            StatusCode::OK,
            &serde_json::json!({"access_token": t.access, "refresh_token": t.refresh, "token_type": "Bearer", "expires_in": t.access_max_age}),
        ),
        RefreshResult::Issued(t) => {
            let mut r = body::json(
                StatusCode::OK,
                &serde_json::json!({"expires_in": t.access_max_age}),
            );
            append_cookies(&mut r, session::session_cookies(rt, &t));
            r
        }
        RefreshResult::Refused => refused(rt, !from_body),
        RefreshResult::Unavailable => session::unavailable(false),
    }
}

fn refused(rt: &Runtime, clear: bool) -> Response<Body> {
    let mut r = body::json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "invalid_refresh_token"}),
    );
    if clear {
        append_cookies(&mut r, session::clear_cookies(rt));
    }
    r
}

/// The session a request belongs to, from a valid access token or, failing that (an expired
/// access token must not stop a logout), a valid refresh token: `(user, sid)`. The anomaly
/// policy applies as on any request: a stolen cookie used from elsewhere must not be able to
/// sign the user out (`reauth`: nothing is ended), and under `revoke` only that session ends.
pub(crate) async fn session_of(
    rt: &Runtime,
    h: &HeaderMap,
    cookies: &CookieScan,
    ip: IpAddr,
) -> Option<(String, String)> {
    let found = headers::bearer_token(h)
        .or(cookies.gateway.access.as_deref())
        .and_then(|t| rt.keys.verify_access(t).ok())
        .map(|c| {
            (
                c.sub,
                c.sid,
                crate::tokens::Fingerprint {
                    ipn: c.ipn,
                    uah: c.uah,
                },
            )
        })
        .or_else(|| {
            cookies
                .gateway
                .refresh
                .as_deref()
                .and_then(|t| rt.keys.verify_refresh(t).ok())
                .map(|c| {
                    (
                        c.sub,
                        c.sid,
                        crate::tokens::Fingerprint {
                            ipn: c.ipn,
                            uah: c.uah,
                        },
                    )
                })
        })
        .filter(|(_, sid, _)| !rt.revoked.is_revoked(sid))?;
    let (user, sid, fp) = found;
    match crate::pipeline::anomaly::evaluate(rt, &fp, ip, user_agent(h), &user, &sid) {
        crate::pipeline::anomaly::Verdict::Pass => Some((user, sid)),
        crate::pipeline::anomaly::Verdict::Reauth => None,
        crate::pipeline::anomaly::Verdict::Revoke => {
            session::revoke_session(rt, &user, &sid, ip).await;
            None
        }
    }
}

/// `204`, or `303` to the login page for a browser form.
pub(crate) fn signed_out(rt: &Runtime, h: &HeaderMap) -> Response<Body> {
    let mut r = if wants_html(h) {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/login")
    } else {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    append_cookies(&mut r, session::clear_cookies(rt));
    r
}

async fn logout(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    if let Some((user, sid)) = session_of(rt, req.headers(), cookies, ctx.client_ip).await {
        if let Err(e) = session::end_session(rt, &user, &sid, "logout", ctx.client_ip, None).await {
            tracing::warn!(error = %e, "logout: session store unavailable");
            return session::unavailable(ctx.navigation || wants_html(req.headers()));
        }
    }
    signed_out(rt, req.headers())
}

fn me_json(id: &Identity) -> serde_json::Value {
    serde_json::json!({
        "sub": id.sub,
        "roles": id.roles,
        "session": id.handle,
        "expires_at": id.exp,
    })
}

/// The request's identity (refreshing if needed), or the response to send instead.
pub(crate) async fn require_session(
    rt: &Runtime,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Result<(Arc<Identity>, Vec<HeaderValue>), Response<Body>> {
    let bearer = headers::bearer_token(req.headers());
    match session::check(
        rt,
        bearer,
        &cookies.gateway,
        ctx.client_ip,
        user_agent(req.headers()),
        true,
    )
    .await
    {
        SessionOutcome::Valid(id) => Ok((id, Vec::new())),
        SessionOutcome::Refreshed(id, c) => Ok((id, c)),
        SessionOutcome::Anonymous { presented, clear } => {
            let here = crate::web::query::with_query(&ctx.path, ctx.query.as_deref());
            Err(session::unauthenticated(
                rt,
                ctx.navigation,
                &here,
                presented,
                clear,
            ))
        }
        SessionOutcome::Unavailable => Err(session::unavailable(ctx.navigation)),
    }
}

/// The request as an API call: answered with `401` JSON, never a login redirect.
fn api(ctx: &RequestCtx) -> RequestCtx {
    RequestCtx {
        navigation: false,
        ..ctx.clone()
    }
}

async fn me(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    match require_session(rt, req, &api(ctx), cookies).await {
        Ok((id, set)) => {
            let mut r = body::json(StatusCode::OK, &me_json(&id));
            append_cookies(&mut r, set);
            r
        }
        Err(r) => r,
    }
}

async fn csrf_token(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let (id, set) = match require_session(rt, req, &api(ctx), cookies).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = csrf::mint_token(&rt.csrf_key, &id.sid);
    let mut r = body::json(StatusCode::OK, &serde_json::json!({ "csrf_token": token }));
    append_cookies(&mut r, set);
    // Readable by scripts (that is the point of a double-submit cookie); bound to the session.
    let c = crate::cookies::set_cookie(
        &rt.cookies.csrf,
        &token,
        rt.cfg.session.refresh_ttl.as_secs(),
        &rt.cfg.session,
        false,
    );
    r.headers_mut().append(header::SET_COOKIE, c);
    r
}

/// Handle a grant the app sent with a response: start a session when it came on the login
/// path and verifies; otherwise ignore it (it was already stripped). Returns `Set-Cookie`s.
pub async fn upstream_grant(
    rt: &Runtime,
    ctx: &RequestCtx,
    grant: &HeaderValue,
    ua: &str,
) -> Vec<HeaderValue> {
    let Some(up) = &rt.cfg.login.upstream else {
        rt.audit.emit(
            Event::new("grant_ignored")
                .ip(&ctx.client_ip.to_string())
                .reason("login.mode is not upstream"),
        );
        return Vec::new();
    };
    if ctx.path != up.path {
        rt.audit.emit(
            Event::new("grant_ignored")
                .ip(&ctx.client_ip.to_string())
                .reason("grant on a path other than login.upstream_path"),
        );
        return Vec::new();
    }
    let Some(claims) = grant
        .to_str()
        .ok()
        .and_then(|g| grant::verify(up.grant_secret.expose(), g))
    else {
        Metrics::outcome(&rt.metrics.logins, "grant_refused");
        rt.audit.emit(
            Event::new("grant_refused")
                .ip(&ctx.client_ip.to_string())
                .reason("forged, expired or malformed grant"),
        );
        return Vec::new();
    };
    match start_session(rt, &claims.sub, &claims.roles, ctx.client_ip, ua).await {
        Ok((_, issued)) => {
            Metrics::outcome(&rt.metrics.logins, "ok");
            session::session_cookies(rt, &issued)
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream login: session store unavailable");
            Metrics::outcome(&rt.metrics.logins, "unavailable");
            Vec::new()
        }
    }
}

fn jwks(rt: &Runtime) -> Response<Body> {
    match &rt.signer {
        Some(s) => {
            let mut r = body::json(StatusCode::OK, &s.jwks());
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            r
        }
        None => body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found", "reason": "no assertion key configured"}),
        ),
    }
}
