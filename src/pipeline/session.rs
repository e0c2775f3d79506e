//! The session stage: a valid access token (cookie, or `Authorization: Bearer` for API
//! clients) verified locally, or — on protected routes — the refresh cookie rotated
//! transparently. The domain logic is `crate::sessions`; this stage only chooses what to
//! present and says what it found. [`require`] then turns "no session" into the answer a
//! protected route gives.

use std::sync::Arc;

use super::RequestCtx;
use crate::cookies::Outgoing;
use crate::refusal::Refusal;
use crate::routing::Route;
use crate::runtime::Runtime;
use crate::sessions::Identity;
use crate::web::user_agent::UserAgent;

/// What the session stage found.
#[derive(Debug)]
pub enum SessionState {
    /// A valid access token, not yet compared with the request's fingerprint.
    Verified(Arc<Identity>),
    /// The access token was missing or expired and the refresh token was rotated (its
    /// fingerprint checked before anything rotated): these `Set-Cookie`s go on the response.
    Refreshed(Arc<Identity>, Outgoing),
    /// No usable credential. `presented`: one was sent (for `WWW-Authenticate`); `clear`: the
    /// client's gateway cookies are dead and should be removed.
    Anonymous { presented: bool, clear: bool },
    /// A refresh was needed but the store is unreachable: the client keeps its cookies.
    Unavailable,
}

/// Verify, or refresh when `allow_refresh` (false on public routes: identity is passed on when
/// a valid access token is there, but nothing is rotated for a page that needs no session).
pub async fn check(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    allow_refresh: bool,
) -> SessionState {
    let access = ctx
        .bearer
        .as_deref()
        .or(ctx.cookies.gateway.access.as_deref());
    if let Some(token) = access {
        // Verified locally; confirmed with the store only while revocations are out of sync.
        let verified = match rt.sessions.verify_access(token) {
            Ok(id) => rt.sessions.confirm(&id).await.map(|()| id),
            Err(e) => Err(e),
        };
        match verified {
            Ok(id) => return SessionState::Verified(id),
            Err(e) => tracing::trace!(reason = %e, "access token not accepted"),
        }
    }
    // API clients holding a bearer token refresh explicitly through /.auth/refresh.
    let refresh = match ctx.bearer {
        None => ctx.cookies.gateway.refresh.as_deref(),
        Some(_) => None,
    };
    let presented = access.is_some() || refresh.is_some();
    let Some(refresh) = refresh.filter(|_| allow_refresh) else {
        return SessionState::Anonymous {
            presented,
            clear: false,
        };
    };
    // Boxed: a rotation's future is kilobytes, and most requests carry a valid access token.
    match Box::pin(rt.sessions.refresh(refresh, ctx.client_ip, ua)).await {
        Ok(t) => {
            let cookies = rt.sessions.set_cookies(&t);
            SessionState::Refreshed(t.identity, cookies)
        }
        Err(e) if e.is_unavailable() => SessionState::Unavailable,
        Err(e) => {
            tracing::debug!(reason = %e, "refresh refused");
            SessionState::Anonymous {
                presented: true,
                clear: true,
            }
        }
    }
}

/// The session stage and the anomaly stage, as a gateway endpoint that needs a session runs
/// them (refresh allowed).
pub async fn authenticate(rt: &Runtime, ctx: &RequestCtx, ua: &UserAgent<'_>) -> SessionState {
    let state = check(rt, ctx, ua, true).await;
    super::anomaly::check(rt, ctx, ua, state).await
}

/// The identity and `Set-Cookie`s to go on with; on a protected route, no session is a
/// refusal (`302` to login for navigations, `401` otherwise; `503` when the store is down).
pub fn require(
    ctx: &RequestCtx,
    route: Route,
    state: SessionState,
) -> Result<(Option<Arc<Identity>>, Outgoing), Refusal> {
    match state {
        SessionState::Verified(id) => Ok((Some(id), Outgoing::default())),
        SessionState::Refreshed(id, c) => Ok((Some(id), c)),
        SessionState::Anonymous { .. } | SessionState::Unavailable if route.public => {
            Ok((None, Outgoing::default()))
        }
        SessionState::Anonymous { presented, clear } => Err(Refusal::Unauthenticated {
            navigation: ctx.navigation,
            return_to: ctx.here(),
            presented,
            clear,
        }),
        SessionState::Unavailable => Err(Refusal::StoreUnavailable {
            navigation: ctx.navigation,
        }),
    }
}

/// [`require`] for a gateway endpoint: always protected.
pub fn required(
    ctx: &RequestCtx,
    state: SessionState,
) -> Result<(Arc<Identity>, Outgoing), Refusal> {
    let protected = Route {
        public: false,
        upstream: 0,
        id: None,
    };
    match require(ctx, protected, state)? {
        (Some(id), cookies) => Ok((id, cookies)),
        (None, _) => Err(Refusal::Unauthenticated {
            navigation: ctx.navigation,
            return_to: ctx.here(),
            presented: false,
            clear: false,
        }),
    }
}
