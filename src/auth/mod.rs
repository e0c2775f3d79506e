//! The gateway's own endpoints under `/.auth/`: login, refresh, logout, logout-all, me, the
//! sessions list, CSRF tokens and the assertion keys. None of them ever reaches an upstream.
//! Unsafe methods pass the CSRF origin check first (login CSRF is an attack too: it signs the
//! victim into the attacker's account). Each endpoint answers `Ok(response)` or a `Refusal`;
//! the session logic is `crate::sessions`'.

mod oidc;
pub(crate) mod return_to;
pub(crate) mod second_factor;
pub(crate) mod sessions;
mod webauthn;

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
use crate::cookies::Outgoing;
use crate::metrics::Metrics;
use crate::pages;
use crate::pipeline::session::{self, SessionState};
use crate::pipeline::{RequestCtx, csrf};
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::sessions::{Ending, Identity};
use crate::web::headers::{self, wants_html};
use crate::web::user_agent::UserAgent;

const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

type Answer = Result<Response<Body>, Refusal>;

/// The endpoint's answer, and the refusal's code when it refused (for the access log).
pub async fn handle(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> (Response<Body>, Option<&'static str>) {
    match route(rt, req, ctx).await {
        Ok(r) => (r, None),
        Err(r) => {
            let code = r.code();
            (r.into_response(&rt.sessions), Some(code))
        }
    }
}

async fn route(rt: &Arc<Runtime>, req: Request<Incoming>, ctx: &RequestCtx) -> Answer {
    // Server to server from the provider: no ambient credential to protect, no Origin to show;
    // the logout token's signature is what authenticates it.
    if ctx.path == crate::config::oidc::OIDC_BACKCHANNEL_LOGOUT_PATH {
        return match *req.method() {
            Method::POST => oidc::backchannel(rt, req, ctx).await,
            _ => Err(Refusal::MethodNotAllowed),
        };
    }
    csrf::check_gateway(rt, ctx, &req)?;
    // Copied: the body of a login or refresh consumes the request.
    let ua = UserAgent::from_headers(req.headers()).into_owned();
    let ua = &ua;
    let method = req.method().clone();
    let path = ctx.path.as_str();
    if let Some(rest) = path.strip_prefix("/.auth/sessions/") {
        let (handle, form) = match rest.strip_suffix("/revoke") {
            Some(h) => (h, true),
            None => (rest, false),
        };
        return match (&method, form) {
            (&Method::DELETE, false) | (&Method::POST, true) => {
                sessions::end_one(rt, &req, ctx, ua, handle, form).await
            }
            _ => Err(Refusal::MethodNotAllowed),
        };
    }
    if let Some(rest) = path.strip_prefix("/.auth/webauthn/") {
        return webauthn::route(rt, req, ctx, ua, rest).await;
    }
    match (path, &method) {
        ("/.auth/login", &Method::GET | &Method::HEAD) => Ok(login_page(rt, ctx)),
        ("/.auth/oidc/start", &Method::GET | &Method::HEAD) => oidc::start(rt, &req, ctx).await,
        ("/.auth/oidc/callback", &Method::GET) => oidc::callback(rt, &req, ctx, ua).await,
        ("/.auth/login", &Method::POST) => login(rt, req, ctx, ua).await,
        ("/.auth/refresh", &Method::POST) => refresh(rt, req, ctx, ua).await,
        ("/.auth/logout", &Method::POST) => logout(rt, &req, ctx, ua).await,
        ("/.auth/logout-all", &Method::POST) => sessions::logout_all(rt, &req, ctx, ua).await,
        ("/.auth/me", &Method::GET | &Method::HEAD) => me(rt, ctx, ua).await,
        ("/.auth/sessions", &Method::GET | &Method::HEAD) => {
            sessions::list(rt, &req, ctx, ua).await
        }
        ("/.auth/csrf", &Method::GET) => csrf_token(rt, ctx, ua).await,
        ("/.auth/jwks.json", &Method::GET | &Method::HEAD) => jwks(rt),
        ("/.auth/totp/enroll", &Method::POST) => second_factor::enroll(rt, &req, ctx, ua).await,
        ("/.auth/totp/confirm", &Method::POST) => second_factor::confirm(rt, req, ctx, ua).await,
        ("/.auth/totp/verify", &Method::POST) => second_factor::verify(rt, req, ctx, ua).await,
        (
            "/.auth/login"
            | "/.auth/refresh"
            | "/.auth/logout"
            | "/.auth/logout-all"
            | "/.auth/me"
            | "/.auth/sessions"
            | "/.auth/csrf"
            | "/.auth/jwks.json"
            | "/.auth/oidc/start"
            | "/.auth/oidc/callback"
            | "/.auth/totp/enroll"
            | "/.auth/totp/confirm"
            | "/.auth/totp/verify",
            _,
        ) => Err(Refusal::MethodNotAllowed),
        _ => Err(Refusal::NotFound(None)),
    }
}

fn is_json(h: &HeaderMap) -> bool {
    headers::content_type_is(h, "application/json")
}

fn is_form(h: &HeaderMap) -> bool {
    headers::content_type_is(h, "application/x-www-form-urlencoded")
}

/// Read a small request body, bounded in size and time.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    match collected {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(Refusal::BodyTooLarge),
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

fn return_to_param(rt: &Runtime, ctx: &RequestCtx) -> String {
    let raw = ctx.query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
    });
    valid_return_to(rt, raw.as_deref())
}

fn valid_return_to(rt: &Runtime, raw: Option<&str>) -> String {
    return_to::validate_with_origin(
        raw,
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
    let reauth = query_has(ctx, "reauth");
    let Some(o) = rt.sessions.oidc() else {
        return body::html(StatusCode::OK, pages::login_page_for(&target, None, reauth));
    };
    let form = rt.cfg.login.users_file.is_some();
    let signed_out = query_has(ctx, "signed_out");
    let again = if reauth { "&reauth=1" } else { "" };
    let enc: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    // One way in and a navigation that wants in: straight to the provider. Not after a
    // logout (that would sign the user in again at once).
    if let [only] = o.providers()
        && !form
        && !signed_out
        && ctx.navigation
    {
        let name: String = url::form_urlencoded::byte_serialize(only.name().as_bytes()).collect();
        return body::redirect(
            StatusCode::FOUND,
            &format!("/.auth/oidc/start?provider={name}&return_to={enc}{again}"),
        );
    }
    let buttons: Vec<(&str, &str)> = o
        .providers()
        .iter()
        .map(|p| (p.name(), p.cfg.display_name.as_str()))
        .collect();
    let notice = if reauth {
        Some(pages::REAUTH_NOTICE)
    } else {
        signed_out.then_some("You are signed out.")
    };
    body::html(
        StatusCode::OK,
        pages::login_choices(&target, None, notice, &buttons, form),
    )
}

fn query_has(ctx: &RequestCtx, name: &str) -> bool {
    ctx.query
        .as_deref()
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == name))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    return_to: Option<String>,
    /// The second factor's code, or one of its recovery codes (`auth::second_factor`).
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// What a right password led to.
enum SignedIn {
    /// A session; `enrol_by`: the user must enrol a second factor by then.
    Session {
        issued: crate::sessions::Issued,
        enrol_by: Option<u64>,
    },
    /// The user has a second factor and sent no code: a browser is asked for it.
    AskCode(String),
}

/// `POST /.auth/login`: the form or JSON body, throttled, then a new session.
async fn login(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    if rt.cfg.login.mode == LoginMode::Upstream {
        return Err(Refusal::NotFound(Some(
            "sign-in is handled by the application",
        )));
    }
    if rt.cfg.login.mode == LoginMode::Oidc && rt.cfg.login.users_file.is_none() {
        return Err(Refusal::NotFound(Some(
            "sign-in is handled by the identity provider",
        )));
    }
    let json = is_json(req.headers());
    if !json && !is_form(req.headers()) {
        return Err(Refusal::UnsupportedMediaType);
    }
    let raw = read_body(req).await?;
    let form: Option<LoginForm> = if json {
        serde_json::from_slice(&raw).ok()
    } else {
        serde_urlencoded::from_bytes(&raw).ok()
    };
    let form = form.ok_or(Refusal::BadRequest("expected username and password"))?;
    let target = valid_return_to(rt, form.return_to.as_deref());
    let (issued, enrol_by) = match check_credentials(rt, ctx, ua, &form, json, &target).await? {
        SignedIn::Session { issued, enrol_by } => (issued, enrol_by),
        SignedIn::AskCode(_) if json => return Err(Refusal::SecondFactorRequired),
        SignedIn::AskCode(user) => {
            return Ok(second_factor::ask_page(rt, &user, ctx.client_ip, &target).await);
        }
    };
    Metrics::outcome(&rt.metrics.logins, "ok");
    if json {
        let mut v = serde_json::json!({
            "access_token": issued.access,
            "refresh_token": issued.refresh,
            "token_type": "Bearer",
            "expires_in": issued.access_max_age,
        });
        if let Some(by) = enrol_by {
            v["second_factor_enrol_by"] = by.into();
        }
        return Ok(body::json(StatusCode::OK, &v));
    }
    // A user who must enrol a second factor goes to the sessions page, where it is set up.
    let target = match enrol_by {
        Some(_) => "/.auth/sessions#second-factor",
        None => target.as_str(),
    };
    let mut r = body::redirect(StatusCode::SEE_OTHER, target);
    refusal::append(&mut r, rt.sessions.set_cookies(&issued));
    Ok(r)
}

/// The throttle, the password, the second factor, then the session; each failure audited and
/// counted.
async fn check_credentials(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    form: &LoginForm,
    json: bool,
    target: &str,
) -> Result<SignedIn, Refusal> {
    let ip = ctx.client_ip;
    let shown: String = form.username.chars().take(128).collect();
    // The attempt is counted before any password work, atomically: a guesser learns nothing
    // and costs nothing past the limit, and parallel guesses cannot all pass one check.
    let attempt = match rt.throttle.begin(&form.username, ip) {
        Ok(a) => a,
        Err(retry) => {
            Metrics::outcome(&rt.metrics.logins, "throttled");
            rt.audit.emit(
                Event::new("login_throttled")
                    .user(&shown)
                    .ip(&ip.to_string()),
            );
            return Err(Refusal::Throttled { json, retry });
        }
    };
    let Some(user) = rt.users.verify(&form.username, &form.password).await else {
        attempt.failed();
        Metrics::outcome(&rt.metrics.logins, "failed");
        rt.audit
            .emit(Event::new("login_failed").user(&shown).ip(&ip.to_string()));
        return Err(Refusal::InvalidCredentials {
            json,
            return_to: target.to_string(),
        });
    };
    let codes = second_factor::Codes::new(form.totp.as_deref(), form.recovery_code.as_deref());
    let verdict = second_factor::at_login(rt, &user.name, codes, ip)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "login: session store unavailable");
            Refusal::StoreUnavailable { navigation: !json }
        })?;
    second_factor::finish(attempt, verdict);
    let enrol_by = match verdict {
        second_factor::Verdict::Open { enrol_by } => enrol_by,
        second_factor::Verdict::Ask => return Ok(SignedIn::AskCode(user.name)),
        second_factor::Verdict::Wrong => {
            Metrics::outcome(&rt.metrics.logins, "failed");
            return Err(Refusal::InvalidSecondFactor);
        }
        second_factor::Verdict::Overdue => {
            Metrics::outcome(&rt.metrics.logins, "failed");
            return Err(Refusal::SecondFactorEnrolmentRequired { json });
        }
    };
    let issued = start_session(rt, ctx, ua, &user, json).await?;
    Ok(SignedIn::Session { issued, enrol_by })
}

/// A new session for `user`, who proved who they are.
pub(crate) async fn start_session(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    user: &crate::login::users::User,
    json: bool,
) -> Result<crate::sessions::Issued, Refusal> {
    let started = rt
        .sessions
        .sign_in(
            ctx.held_tokens(),
            &user.name,
            &user.roles,
            ctx.client_ip,
            ua,
            None,
        )
        .await;
    started.map_err(|e| {
        tracing::warn!(error = %e, "login: session store unavailable");
        Metrics::outcome(&rt.metrics.logins, "unavailable");
        Refusal::StoreUnavailable { navigation: !json }
    })
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /.auth/refresh`: from the cookie, or a JSON body (API clients).
async fn refresh(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let from_body = is_json(req.headers());
    let token = if from_body {
        let raw = read_body(req).await?;
        serde_json::from_slice::<RefreshBody>(&raw)
            .map_err(|_| Refusal::BadRequest("expected {\"refresh_token\": ...}"))?
            .refresh_token
    } else {
        ctx.cookies
            .gateway
            .refresh
            .clone()
            .ok_or(Refusal::InvalidRefreshToken { clear: false })?
    };
    let t = match rt.sessions.refresh(&token, ctx.client_ip, ua).await {
        Ok(t) => t,
        Err(e) if e.is_unavailable() => {
            return Err(Refusal::StoreUnavailable { navigation: false });
        }
        Err(e) => {
            tracing::debug!(reason = %e, "refresh refused");
            return Err(Refusal::InvalidRefreshToken { clear: !from_body });
        }
    };
    crate::request_id::note_session(&t.identity.handle);
    if from_body {
        let mut r = body::json(
            StatusCode::OK,
            &serde_json::json!({"access_token": t.access, "refresh_token": t.refresh, "token_type": "Bearer", "expires_in": t.access_max_age}),
        );
        // The new tokens are in the body: the rotation is delivered with it.
        if let Some(d) = t.delivery {
            crate::delivery::attach(&mut r, d);
        }
        return Ok(r);
    }
    let mut r = body::json(
        StatusCode::OK,
        &serde_json::json!({"expires_in": t.access_max_age}),
    );
    refusal::append(&mut r, rt.sessions.set_cookies(&t));
    Ok(r)
}

/// The session the request's tokens name (anomaly policy applied), as `(user, sid)`.
pub(crate) async fn presented(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Result<Option<(String, String)>, Refusal> {
    let (access, refresh) = ctx.held_tokens();
    rt.sessions
        .presented(access, refresh, ctx.client_ip, ua)
        .await
        .map(|p| p.map(|p| (p.user, p.sid)))
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot confirm the session with the store");
            Refusal::StoreUnavailable {
                navigation: ctx.navigation,
            }
        })
}

/// `204`, or `303` to the login page for a browser form.
pub(crate) fn signed_out(rt: &Runtime, h: &HeaderMap) -> Response<Body> {
    let mut r = if wants_html(h) {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/login")
    } else {
        no_content()
    };
    refusal::append(&mut r, rt.sessions.clear_cookies());
    r
}

pub(crate) fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn logout(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let mut end_session = None;
    if let Some((user, sid)) = presented(rt, ctx, ua).await? {
        if wants_html(req.headers()) {
            end_session = oidc::end_session_url(rt, &user, &sid).await;
        }
        let why = Ending {
            event: "logout",
            ip: ctx.client_ip,
            reason: None,
        };
        if let Err(e) = rt.sessions.end(&user, &sid, why).await {
            tracing::warn!(error = %e, "logout: session store unavailable");
            return Err(Refusal::StoreUnavailable {
                navigation: ctx.navigation || wants_html(req.headers()),
            });
        }
    }
    if let Some(to) = end_session {
        // On to the provider, to end the session there too (RP-initiated logout).
        let mut r = body::redirect(StatusCode::SEE_OTHER, &to);
        refusal::append(&mut r, rt.sessions.clear_cookies());
        return Ok(r);
    }
    Ok(signed_out(rt, req.headers()))
}

/// The request's identity (refreshing if needed), or the refusal to send instead.
pub(crate) async fn require_session(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Result<(Arc<Identity>, Outgoing), Refusal> {
    let state: SessionState = session::authenticate(rt, ctx, ua).await;
    session::required(ctx, state)
}

async fn me(rt: &Arc<Runtime>, ctx: &RequestCtx, ua: &UserAgent<'_>) -> Answer {
    let (id, set) = require_session(rt, &ctx.as_api_call(), ua).await?;
    let mut r = body::json(
        StatusCode::OK,
        &serde_json::json!({
            "sub": id.sub,
            "roles": id.roles,
            "session": id.handle,
            "expires_at": id.exp,
        }),
    );
    refusal::append(&mut r, set);
    Ok(r)
}

async fn csrf_token(rt: &Arc<Runtime>, ctx: &RequestCtx, ua: &UserAgent<'_>) -> Answer {
    let (id, set) = require_session(rt, &ctx.as_api_call(), ua).await?;
    let token = csrf::mint_token(&rt.csrf_keys, &id.sid);
    let mut r = body::json(StatusCode::OK, &serde_json::json!({ "csrf_token": token }));
    refusal::append(&mut r, set);
    // Readable by scripts (that is the point of a double-submit cookie); bound to the session.
    let c = crate::cookies::set_cookie(
        &rt.sessions.cookies().csrf,
        &token,
        rt.cfg.session.refresh_ttl.as_secs(),
        &rt.cfg.session,
        false,
    );
    r.headers_mut().append(header::SET_COOKIE, c);
    Ok(r)
}

fn jwks(rt: &Runtime) -> Answer {
    let s = rt
        .sessions
        .signer()
        .ok_or(Refusal::NotFound(Some("no assertion key configured")))?;
    let mut r = body::json(StatusCode::OK, &s.jwks());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}
