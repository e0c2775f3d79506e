//! The OpenID Connect endpoints: `GET /.auth/oidc/start`, `GET /.auth/oidc/callback`,
//! `POST /.auth/oidc/backchannel-logout`, and the provider's part of `/.auth/logout`
//! (RP-initiated logout). The protocol is `crate::oidc`'s; this is the HTTP around it.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Answer, read_body, valid_return_to};
use crate::audit::Event;
use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::oidc::flow::{self, Flow, Lost};
use crate::oidc::{Oidc, OidcError, Provider, claims, logout_token};
use crate::pipeline::RequestCtx;
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::sessions::Ending;
use crate::store::{IdpKey, IdpLink};
use crate::web::user_agent::UserAgent;

fn oidc(rt: &Runtime) -> Result<&Arc<Oidc>, Refusal> {
    rt.sessions.oidc().ok_or(Refusal::NotFound(Some(
        "sign-in through an identity provider is off",
    )))
}

/// The query's parameters; a parameter given twice is refused (two readings of one request).
fn params(ctx: &RequestCtx) -> Result<Vec<(String, String)>, Refusal> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(ctx.query.as_deref().unwrap_or("").as_bytes()) {
        if out.iter().any(|(have, _)| *have == k) {
            return Err(Refusal::BadRequest("a query parameter is given twice"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn param<'a>(ps: &'a [(String, String)], name: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn failed(
    status: StatusCode,
    title: &'static str,
    message: impl Into<String>,
    return_to: &str,
    clear: Option<HeaderValue>,
) -> Refusal {
    let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    Refusal::SignInFailed {
        status,
        title,
        message: message.into(),
        again: format!("/.auth/login?signed_out=1&return_to={enc}"),
        clear,
    }
}

/// What the user reads for a provider error (never the error's detail: it may name internals;
/// that goes to the log).
fn explained(p: &Provider, e: &OidcError, return_to: &str, clear: Option<HeaderValue>) -> Refusal {
    tracing::warn!(provider = %p.name(), error = %e, "oidc: sign-in failed");
    let who = &p.cfg.display_name;
    match e {
        OidcError::Unreachable(_) | OidcError::Discovery(_) => failed(
            StatusCode::BAD_GATEWAY,
            "Sign-in is unavailable",
            format!("{who} cannot be reached right now. Try again in a moment."),
            return_to,
            clear,
        ),
        OidcError::ProviderRefused(_) | OidcError::IdToken(_) => failed(
            StatusCode::BAD_GATEWAY,
            "Sign-in could not be completed",
            format!(
                "The answer from {who} could not be verified. Start again; if it keeps happening, tell the site's operator."
            ),
            return_to,
            clear,
        ),
        OidcError::Callback(_) => failed(
            StatusCode::BAD_REQUEST,
            "Sign-in could not be completed",
            format!(
                "This sign-in response is not one that {who} sent for this browser. Start again."
            ),
            return_to,
            clear,
        ),
    }
}

/// `GET /.auth/oidc/start?provider=NAME&return_to=…`: a new flow, its cookie, and the
/// redirect to the provider.
pub(super) async fn start(rt: &Arc<Runtime>, req: &Request<Incoming>, ctx: &RequestCtx) -> Answer {
    let o = oidc(rt)?;
    let ps = params(ctx)?;
    let target = valid_return_to(rt, param(&ps, "return_to"));
    let p = match param(&ps, "provider") {
        Some(name) => o.provider(name),
        None if o.providers().len() == 1 => o.providers().first(),
        None => None,
    };
    let Some(p) = p else {
        return Err(failed(
            StatusCode::NOT_FOUND,
            "Unknown sign-in provider",
            "This sign-in link names no provider of this site.",
            &target,
            None,
        ));
    };
    let begun = p
        .begin(param(&ps, "reauth").is_some())
        .await
        .map_err(|e| explained(p, &e, &target, None))?;
    let now = rt.sessions.clock().now();
    let f = Flow {
        provider: p.name().to_string(),
        state: begun.state,
        nonce: begun.nonce,
        verifier: begun.verifier,
        return_to: target.clone(),
        expires: now + flow::FLOW_TTL_SECS,
        started: flow::now_micros(),
    };
    let cookies = flow::begin(o.sealer(), &f, req.headers(), now)
        .ok_or(Refusal::StoreUnavailable { navigation: true })?;
    let mut r = body::redirect(StatusCode::FOUND, &begun.url);
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

fn audit(rt: &Runtime, ctx: &RequestCtx, p: &Provider, event: &'static str, reason: &str) {
    rt.audit.emit(
        Event::new(event)
            .ip(&ctx.client_ip.to_string())
            .provider(p.name())
            .reason(reason),
    );
}

/// `GET /.auth/oidc/callback`: the provider's answer. The flow named by `state`, RFC 9207's
/// `iss`, the provider's error if any, then the code exchange and the ID token; then the
/// user's admission; then a new gateway session.
pub(super) async fn callback(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let o = oidc(rt)?;
    // A navigation from the provider: a malformed answer gets the page with "Start again" too.
    let ps = params(ctx).map_err(|_| {
        failed(
            StatusCode::BAD_REQUEST,
            "Sign-in could not be completed",
            "This sign-in response is malformed (a parameter is given twice). Start again.",
            "/",
            None,
        )
    })?;
    let now = rt.sessions.clock().now();
    let Some(state) = param(&ps, "state") else {
        return Err(failed(
            StatusCode::BAD_REQUEST,
            "Sign-in could not be completed",
            "This sign-in response carries no state: it was not started here.",
            "/",
            None,
        ));
    };
    let (flow, clear) = flow::take(o.sealer(), state, req.headers(), now);
    let f = flow.map_err(|lost| {
        Metrics::outcome(&rt.metrics.logins, "oidc_no_flow");
        let msg = match lost {
            Lost::Expired => "This sign-in took too long. Start again.",
            Lost::Missing | Lost::Invalid => {
                "This sign-in was not started in this browser, or it was already completed. Start again."
            }
        };
        failed(StatusCode::BAD_REQUEST, "Sign-in could not be completed", msg, "/", clear.clone())
    })?;
    let Some(p) = o.provider(&f.provider) else {
        return Err(failed(
            StatusCode::BAD_REQUEST,
            "Unknown sign-in provider",
            "The provider this sign-in started with is no longer configured.",
            &f.return_to,
            clear,
        ));
    };
    p.check_response_issuer(param(&ps, "iss"))
        .await
        .map_err(|e| explained(p, &e, &f.return_to, clear.clone()))?;
    if let Some(err) = param(&ps, "error") {
        Metrics::outcome(&rt.metrics.logins, "oidc_provider_error");
        // Shown only when it is one of the protocol's codes (RFC 6749 §4.1.2.1 spells them so).
        let code = if !err.is_empty()
            && err.len() <= 64
            && err.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            err
        } else {
            "unknown"
        };
        audit(rt, ctx, p, "login_failed", code);
        return Err(failed(
            StatusCode::FORBIDDEN,
            "Sign-in did not happen",
            format!("{} did not sign you in ({code}).", p.cfg.display_name),
            &f.return_to,
            clear,
        ));
    }
    let Some(code) = param(&ps, "code") else {
        return Err(explained(
            p,
            &OidcError::Callback("no code"),
            &f.return_to,
            clear,
        ));
    };
    complete(rt, o, p, &f, code, ctx, ua, now, clear).await
}

/// The code exchanged and the ID token verified, the user admitted, a new gateway session.
#[allow(clippy::too_many_arguments)]
async fn complete(
    rt: &Runtime,
    o: &Oidc,
    p: &Provider,
    f: &Flow,
    code: &str,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    now: u64,
    clear: Option<HeaderValue>,
) -> Answer {
    let signed = match p.finish(code, &f.verifier, &f.nonce, now).await {
        Ok(s) => s,
        Err(e) => {
            Metrics::outcome(&rt.metrics.logins, "oidc_failed");
            audit(rt, ctx, p, "login_failed", "id_token");
            return Err(explained(p, &e, &f.return_to, clear));
        }
    };
    let mapped = match claims::map(&p.cfg, &signed.claims) {
        Ok(m) => m,
        Err(d) => {
            Metrics::outcome(&rt.metrics.logins, "oidc_denied");
            audit(rt, ctx, p, "login_denied", &d.to_string());
            return Err(failed(
                StatusCode::FORBIDDEN,
                "Access denied",
                format!(
                    "You are signed in at {}, but {d}, so this site does not let you in.",
                    p.cfg.display_name
                ),
                &f.return_to,
                clear,
            ));
        }
    };
    let link = IdpLink {
        provider: p.name().to_string(),
        sub: signed.sub.clone(),
        sid: signed.sid.clone(),
        id_token_sealed: o.seal_token("id", p.name(), &signed.sub, &signed.id_token),
        refresh_token_sealed: o
            .recheck_interval()
            .and(signed.refresh_token.as_deref())
            .and_then(|t| o.seal_token("refresh", p.name(), &signed.sub, t)),
        checked_at: now,
    };
    let issued = rt
        .sessions
        .sign_in(
            ctx.held_tokens(),
            &mapped.user,
            &mapped.roles,
            ctx.client_ip,
            ua,
            Some(link),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "oidc login: session store unavailable");
            Metrics::outcome(&rt.metrics.logins, "unavailable");
            Refusal::StoreUnavailable { navigation: true }
        })?;
    Metrics::outcome(&rt.metrics.logins, "ok");
    let mut r = signed_in_response(rt, &f.return_to);
    refusal::append(&mut r, rt.sessions.set_cookies(&issued));
    if let Some(c) = clear {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

/// On to `return_to`. With `SameSite=Strict` session cookies, a redirect would continue the
/// provider's cross-site navigation and the browser would not send them on its first request;
/// a page of ours that moves on by itself makes that request same-site.
fn signed_in_response(rt: &Runtime, to: &str) -> Response<Body> {
    if rt.cfg.session.same_site == crate::config::SameSite::Lax {
        return body::redirect(StatusCode::SEE_OTHER, to);
    }
    let esc = crate::pages::escape(to);
    let mut r = body::html(
        StatusCode::OK,
        format!(
            "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={esc}\"><title>Signed in</title><p><a href=\"{esc}\">Continue</a></p>"
        ),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn backchannel_error(status: StatusCode, why: &str) -> Response<Body> {
    let mut r = body::json(
        status,
        &serde_json::json!({"error": "invalid_request", "error_description": why}),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /.auth/oidc/backchannel-logout` (Back-Channel Logout 1.0 §2.5–2.8): a logout token
/// from a provider ends the sessions it names on every instance (through the store's
/// revocation feed). `400` for a token that does not validate or was seen before, `503` when
/// the store cannot be reached, `200` otherwise (also when no session matched).
pub(super) async fn backchannel(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Answer {
    let o = oidc(rt)?.clone();
    if !super::is_form(req.headers()) {
        return Err(Refusal::UnsupportedMediaType);
    }
    let raw = read_body(req).await?;
    let token = url::form_urlencoded::parse(&raw)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return Ok(backchannel_error(
            StatusCode::BAD_REQUEST,
            "no logout_token",
        ));
    };
    let ip = ctx.client_ip.to_string();
    let refused = |why: &str| {
        tracing::info!(reason = why, "oidc: back-channel logout refused");
        rt.audit
            .emit(Event::new("backchannel_logout_refused").ip(&ip).reason(why));
        Metrics::outcome(&rt.metrics.logins, "backchannel_refused");
        Ok(backchannel_error(StatusCode::BAD_REQUEST, why))
    };
    let Some(p) = logout_token::claimed_issuer(&token).and_then(|iss| o.by_issuer(&iss).cloned())
    else {
        return refused("the token's issuer is not a provider of this gateway");
    };
    let now = rt.sessions.clock().now();
    let lt = match logout_token::verify(&p, &token, now).await {
        Ok(l) => l,
        Err(why) => return refused(&why),
    };
    let store = rt.sessions.store();
    let replay_key = format!("oidc-bcl:{}:{}", p.name(), lt.jti);
    match store
        .first_use(&replay_key, lt.iat + logout_token::MAX_AGE + 60)
        .await
    {
        Ok(true) => {}
        Ok(false) => return refused("the token was used before"),
        Err(e) => {
            tracing::warn!(error = %e, "oidc: back-channel logout: store unavailable");
            return Err(Refusal::StoreUnavailable { navigation: false });
        }
    }
    let key = match (&lt.sid, &lt.sub) {
        (Some(sid), _) => IdpKey::Sid(sid),
        (None, Some(sub)) => IdpKey::Sub(sub),
        (None, None) => return refused("neither sub nor sid"),
    };
    let found = store.idp_sessions(p.name(), key).await.map_err(|e| {
        tracing::warn!(error = %e, "oidc: back-channel logout: store unavailable");
        Refusal::StoreUnavailable { navigation: false }
    })?;
    for (user, sid) in &found {
        let why = Ending {
            event: "session_revoked",
            ip: ctx.client_ip,
            reason: Some("backchannel_logout"),
        };
        rt.sessions
            .end(user, sid, why)
            .await
            .map_err(|_| Refusal::StoreUnavailable { navigation: false })?;
    }
    rt.audit.emit(
        Event::new("backchannel_logout")
            .ip(&ip)
            .provider(p.name())
            .count(found.len()),
    );
    Metrics::outcome(&rt.metrics.logins, "backchannel_logout");
    let mut r = Response::new(Body::Empty);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Where the browser goes after `/.auth/logout` ends a session signed in through a provider
/// with an `end_session_endpoint`: RP-initiated logout, with the ID token as the hint and our
/// login page as the (registered) post-logout redirect. Read before the session ends.
pub(super) async fn end_session_url(rt: &Runtime, user: &str, sid: &str) -> Option<String> {
    let o = rt.sessions.oidc()?;
    let rec = rt.sessions.store().get(user, sid).await.ok()??;
    let link = rec.idp?;
    let p = o.provider(&link.provider)?;
    let hint = link
        .id_token_sealed
        .as_deref()
        .and_then(|s| o.open_token("id", &link.provider, &link.sub, s));
    p.end_session_url(hint.as_deref(), o.post_logout_uri())
        .await
}
