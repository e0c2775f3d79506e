//! Self-service: a user sees their sessions (device, user agent, IP, created, last
//! authenticated, last active, which one is this one) and ends any of them, or all of them.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{Request, Response, StatusCode};

use super::{no_content, presented, require_session, signed_out};
use crate::body::{self, Body};
use crate::cookies::Outgoing;
use crate::pages;
use crate::pipeline::RequestCtx;
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::sessions::{Ending, Identity};
use crate::store::SessionRecord;
use crate::web::headers::{wants_html, wants_json};
use crate::web::user_agent::UserAgent;

pub(super) fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn html_page(
    rt: &Runtime,
    list: &[SessionRecord],
    current_sid: &str,
    factor: Option<Option<usize>>,
    passkeys: Option<&[pages::PasskeyRow]>,
) -> String {
    let rows: Vec<pages::SessionRow> = list
        .iter()
        .map(|r| pages::SessionRow {
            device: r.device.clone(),
            user_agent: r.user_agent.clone(),
            ip: r.ip.clone(),
            created: when(r.created),
            auth_time: when(r.auth_time),
            last_seen: when(r.last_seen),
            handle: (r.sid != current_sid).then(|| rt.sessions.handle(&r.sid)),
        })
        .collect();
    pages::sessions_page(&rows, factor, passkeys)
}

type SessionsOf = (Arc<Identity>, Outgoing, Vec<SessionRecord>);

/// The request's identity (refreshed if needed) and all of its user's sessions.
async fn sessions_of(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    html: bool,
) -> Result<SessionsOf, Refusal> {
    let (id, set) = require_session(rt, ctx, ua).await?;
    match rt.sessions.list(&id.sub).await {
        Ok(list) => Ok((id, set, list)),
        Err(e) => {
            tracing::warn!(error = %e, "sessions: store unavailable");
            Err(Refusal::StoreUnavailable { navigation: html }.keeping(&set))
        }
    }
}

pub async fn list<B>(
    rt: &Arc<Runtime>,
    req: &Request<B>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Result<Response<Body>, Refusal> {
    let (id, set, list) = sessions_of(rt, ctx, ua, ctx.navigation).await?;
    let mut r = if wants_json(req.headers()) {
        let items: Vec<_> = list.iter().map(|r| rt.sessions.view(r, &id.sid)).collect();
        body::json(StatusCode::OK, &serde_json::json!({ "sessions": items }))
    } else {
        let factor = super::second_factor::state(rt, &id.sub).await;
        // The same accounts manage passkeys as manage a code (users of the users file).
        let keys = match factor {
            Some(_) => super::webauthn::rows(rt, &id.sub).await,
            None => None,
        };
        body::html(
            StatusCode::OK,
            html_page(rt, &list, &id.sid, factor, keys.as_deref()),
        )
    };
    refusal::append(&mut r, set);
    Ok(r)
}

pub async fn end_one<B>(
    rt: &Arc<Runtime>,
    req: &Request<B>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    handle: &str,
    form: bool,
) -> Result<Response<Body>, Refusal> {
    let (id, set, list) = sessions_of(rt, ctx, ua, form).await?;
    let target = list
        .iter()
        .find(|r| rt.sessions.handle(&r.sid) == handle)
        .ok_or_else(|| Refusal::NoSuchSession.keeping(&set))?;
    let why = Ending {
        event: "session_revoked",
        ip: ctx.client_ip,
        reason: None,
    };
    if let Err(e) = rt.sessions.end(&id.sub, &target.sid, why).await {
        tracing::warn!(error = %e, "sessions: store unavailable");
        return Err(Refusal::StoreUnavailable { navigation: form }.keeping(&set));
    }
    if target.sid == id.sid {
        return Ok(signed_out(rt, req.headers()));
    }
    let mut r = if form || wants_html(req.headers()) {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/sessions")
    } else {
        no_content()
    };
    refusal::append(&mut r, set);
    Ok(r)
}

pub async fn logout_all<B>(
    rt: &Arc<Runtime>,
    req: &Request<B>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Result<Response<Body>, Refusal> {
    let Some((user, _)) = presented(rt, ctx, ua).await? else {
        return Ok(signed_out(rt, req.headers()));
    };
    if let Err(e) = rt.sessions.revoke_all(&user, "logout_all").await {
        tracing::warn!(error = %e, "logout-all: store unavailable");
        return Err(Refusal::StoreUnavailable {
            navigation: ctx.navigation || wants_html(req.headers()),
        });
    }
    Ok(signed_out(rt, req.headers()))
}
