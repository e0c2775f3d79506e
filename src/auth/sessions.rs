//! Self-service: a user sees their sessions (device, IP, created, last active, which one is
//! this one) and ends any of them, or all of them.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{require_session, session_of, signed_out};
use crate::audit::Event;
use crate::body::{self, Body};
use crate::cookies::CookieScan;
use crate::pages;
use crate::pipeline::session::Identity;
use crate::pipeline::{RequestCtx, append_cookies};
use crate::runtime::Runtime;
use crate::store::SessionRecord;
use crate::util::now_unix;
use crate::web::headers::wants_html;

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// One session as the user sees it.
pub fn entry(rt: &Runtime, r: &SessionRecord, current_sid: &str) -> serde_json::Value {
    serde_json::json!({
        "handle": rt.keys.session_handle(&r.sid),
        "device": r.device,
        "ip": r.ip,
        "created": r.created,
        "last_active": r.last_seen,
        "expires": r.abs_end,
        "current": r.sid == current_sid,
    })
}

fn html_page(rt: &Runtime, list: &[SessionRecord], current_sid: &str) -> String {
    let rows: String = list
        .iter()
        .map(|r| {
            let handle = rt.keys.session_handle(&r.sid);
            let action = if r.sid == current_sid {
                "<strong>This device</strong>".to_string()
            } else {
                format!(
                    "<form method=\"post\" action=\"/.auth/sessions/{h}/revoke\"><button type=\"submit\" aria-label=\"End session on {d}\">End</button></form>",
                    h = pages::escape(&handle),
                    d = pages::escape(&r.device)
                )
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                pages::escape(&r.device),
                pages::escape(&r.ip),
                when(r.created),
                when(r.last_seen)
            )
        })
        .collect();
    pages::sessions_page(&rows)
}

type SessionsOf = (Arc<Identity>, Vec<HeaderValue>, Vec<SessionRecord>);

/// The request's identity (refreshed if needed) and all of its user's sessions.
async fn sessions_of(
    rt: &Runtime,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
    html: bool,
) -> Result<SessionsOf, Response<Body>> {
    let (id, set) = require_session(rt, req, ctx, cookies).await?;
    match rt.store.list(&id.sub).await {
        Ok(list) => Ok((id, set, list)),
        Err(e) => {
            tracing::warn!(error = %e, "sessions: store unavailable");
            Err(crate::pipeline::session::unavailable(html))
        }
    }
}

pub async fn list(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let (id, set, list) = match sessions_of(rt, req, ctx, cookies, ctx.navigation).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let json = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let mut r = if json {
        let items: Vec<serde_json::Value> = list.iter().map(|r| entry(rt, r, &id.sid)).collect();
        body::json(StatusCode::OK, &serde_json::json!({ "sessions": items }))
    } else {
        body::html(StatusCode::OK, html_page(rt, &list, &id.sid))
    };
    append_cookies(&mut r, set);
    r
}

pub async fn end_one(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
    handle: &str,
    form: bool,
) -> Response<Body> {
    let (id, set, list) = match sessions_of(rt, req, ctx, cookies, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(target) = list
        .iter()
        .find(|r| rt.keys.session_handle(&r.sid) == handle)
    else {
        return body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no_such_session"}),
        );
    };
    if let Err(e) = crate::pipeline::session::end_session(
        rt,
        &id.sub,
        &target.sid,
        "session_revoked",
        ctx.client_ip,
        None,
    )
    .await
    {
        tracing::warn!(error = %e, "sessions: store unavailable");
        return crate::pipeline::session::unavailable(form);
    }
    let mut r = if target.sid == id.sid {
        signed_out(rt, req.headers())
    } else if form || wants_html(req.headers()) {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/sessions")
    } else {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    };
    if target.sid != id.sid {
        append_cookies(&mut r, set);
    }
    r
}

/// End every session of the user, as an operator would after a password change.
pub async fn revoke_all(
    rt: &Runtime,
    user: &str,
    event: &'static str,
) -> Result<usize, crate::store::StoreError> {
    let sids = rt.store.revoke_all(user, rt.revocation_ttl()).await?;
    let until = now_unix() + rt.revocation_ttl();
    for sid in &sids {
        rt.revoked.insert(sid, until);
        if let Some(s) = &rt.signer {
            s.forget(sid);
        }
    }
    rt.audit
        .emit(Event::new(event).user(user).count(sids.len()));
    Ok(sids.len())
}

pub async fn logout_all(
    rt: &Arc<Runtime>,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
    cookies: &CookieScan,
) -> Response<Body> {
    let Some((user, _)) = session_of(rt, req.headers(), cookies, ctx.client_ip).await else {
        return signed_out(rt, req.headers());
    };
    if let Err(e) = revoke_all(rt, &user, "logout_all").await {
        tracing::warn!(error = %e, "logout-all: store unavailable");
        return crate::pipeline::session::unavailable(ctx.navigation || wants_html(req.headers()));
    }
    signed_out(rt, req.headers())
}
