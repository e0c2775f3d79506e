//! The gateway's own endpoints under `/.auth/`: login, refresh, logout, me.
//! None of them ever reaches an upstream. Unsafe methods pass the CSRF origin check first
//! (login CSRF is an attack too: it signs the victim into the attacker's account).

pub mod device;
pub mod pages;
pub mod return_to;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::audit::Event;
use crate::body::{self, Body};
use crate::cookies::CookieScan;
use crate::pipeline::session::{self, Identity, RefreshResult, SessionOutcome};
use crate::pipeline::{RequestCtx, append_cookies, csrf};
use crate::runtime::Runtime;
use crate::store::SessionRecord;
use crate::util::{now_unix, random_token};

const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    if csrf::is_unsafe(req.method(), req.headers(), ctx.query.as_deref()) {
        if let Err(why) = csrf::check(
            &rt.cfg.csrf,
            &rt.cfg.server.public_origin.origin,
            req.headers(),
        ) {
            tracing::info!(reason = why, path = %ctx.path, "csrf: refused");
            return body::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "forbidden", "reason": why}),
            );
        }
    }
    let method = req.method().clone();
    match (ctx.path.as_str(), &method) {
        ("/.auth/login", &Method::GET | &Method::HEAD) => {
            let rt_param = ctx.query.as_deref().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "return_to")
                    .map(|(_, v)| v.into_owned())
            });
            let target = return_to::validate(rt_param.as_deref(), &rt.cfg.url_tokens.params);
            body::html(StatusCode::OK, pages::login_page(&target, None))
        }
        ("/.auth/login", &Method::POST) => login(rt, req, ctx).await,
        ("/.auth/refresh", &Method::POST) => refresh(rt, req, cookies).await,
        ("/.auth/logout", &Method::POST) => logout(rt, req, ctx, cookies).await,
        ("/.auth/me", &Method::GET | &Method::HEAD) => me(rt, &req, ctx, cookies).await,
        ("/.auth/login" | "/.auth/refresh" | "/.auth/logout" | "/.auth/me", _) => body::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "method_not_allowed"}),
        ),
        _ => body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found"}),
        ),
    }
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            let c = c.split(';').next().unwrap_or("").trim();
            c.eq_ignore_ascii_case("application/json")
        })
}

fn is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            let c = c.split(';').next().unwrap_or("").trim();
            c.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
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

async fn login(rt: &Arc<Runtime>, req: Request<Incoming>, ctx: &RequestCtx) -> Response<Body> {
    let json = is_json(req.headers());
    if !json && !is_form(req.headers()) {
        return body::json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &serde_json::json!({"error": "unsupported_media_type", "accepted": ["application/x-www-form-urlencoded", "application/json"]}),
        );
    }
    let ua: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(512)
        .collect();
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
    let target = return_to::validate(form.return_to.as_deref(), &rt.cfg.url_tokens.params);
    let ip = ctx.client_ip.to_string();
    let Some(user) = rt.users.verify(&form.username, &form.password).await else {
        let shown: String = form.username.chars().take(128).collect();
        rt.audit
            .emit(Event::new("login_failed").user(&shown).ip(&ip));
        return invalid_credentials(json, &target);
    };
    // A new session id at every login: nothing from before the login is trusted after it.
    let now = now_unix();
    let rec = SessionRecord {
        sid: random_token(24),
        user: user.name.clone(),
        roles: user.roles.clone(),
        created: now,
        last_seen: now,
        abs_end: now + rt.cfg.session.refresh_ttl.as_secs(),
        cur_jti: random_token(16),
        prev_jti: None,
        rotated_at: now,
        ip: ip.clone(),
        device: device::label(&ua),
        user_agent: ua,
    };
    if let Err(e) = rt.store.create(rec.clone()).await {
        tracing::warn!(error = %e, "login: session store unavailable");
        return session::unavailable(!json);
    }
    let issued = session::issue(rt, &rec, now);
    rt.audit.emit(
        Event::new("login_ok")
            .user(&rec.user)
            .session(&rt.keys.session_handle(&rec.sid))
            .ip(&ip),
    );
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
    cookies: &CookieScan,
) -> Response<Body> {
    let from_body = is_json(req.headers());
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
    match session::refresh_session(rt, &token).await {
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

async fn logout(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let bearer = session::bearer_token(req.headers());
    // The session to end: from a valid access token, else from the refresh token (an expired
    // access token must not stop a logout).
    let who: Option<(String, String)> = bearer
        .or(cookies.gateway.access.as_deref())
        .and_then(|t| rt.keys.verify_access(t).ok())
        .map(|c| (c.sub, c.sid))
        .or_else(|| {
            cookies
                .gateway
                .refresh
                .as_deref()
                .and_then(|t| rt.keys.verify_refresh(t).ok())
                .map(|c| (c.sub, c.sid))
        });
    if let Some((user, sid)) = who {
        if let Err(e) = rt.store.revoke(&user, &sid, rt.revocation_ttl()).await {
            tracing::warn!(error = %e, "logout: session store unavailable");
            return session::unavailable(ctx.navigation || wants_html(req.headers()));
        }
        rt.revoked.insert(&sid, now_unix() + rt.revocation_ttl());
        rt.audit.emit(
            Event::new("logout")
                .user(&user)
                .session(&rt.keys.session_handle(&sid))
                .ip(&ctx.client_ip.to_string()),
        );
    }
    let mut r = if wants_html(req.headers()) {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/login")
    } else {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        r
    };
    append_cookies(&mut r, session::clear_cookies(rt));
    r
}

fn me_json(rt: &Runtime, id: &Identity) -> serde_json::Value {
    serde_json::json!({
        "sub": id.sub,
        "roles": id.roles,
        "session": rt.keys.session_handle(&id.sid),
        "expires_at": id.exp,
    })
}

async fn me(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let bearer = session::bearer_token(req.headers());
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match session::check(rt, bearer, &cookies.gateway, ctx.client_ip, ua, true).await {
        SessionOutcome::Valid(id) => body::json(StatusCode::OK, &me_json(rt, &id)),
        SessionOutcome::Refreshed(id, c) => {
            let mut r = body::json(StatusCode::OK, &me_json(rt, &id));
            append_cookies(&mut r, c);
            r
        }
        SessionOutcome::Anonymous { presented, clear } => {
            session::unauthenticated(rt, false, "/", presented, clear)
        }
        SessionOutcome::Unavailable => session::unavailable(false),
    }
}
