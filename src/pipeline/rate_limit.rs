//! The rate-limit stage: after the session is known, charge the request to its bucket — its
//! session's (by the session's non-secret handle) or, without a session on a public route, its
//! client's network (`crate::ratelimit`). Over the limit: `429` with `Retry-After`,
//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
//!
//! Threat: one session or one anonymous client flooding the app. The gateway's own endpoints
//! (`/.auth/`) never reach this stage (login has its own throttle). A path whose two readings
//! (with and without path parameters, `RequestCtx::bare_path`) fall under different limits is
//! refused by the route stage (two readings are one `[[route]]` or a `400`), so no one picks
//! the looser one.

use std::borrow::Cow;

use super::RequestCtx;
use crate::audit::Event;
use crate::ratelimit::{Scope, ip_key};
use crate::refusal::Refusal;
use crate::routing::Route;
use crate::runtime::Runtime;
use crate::sessions::Identity;

pub async fn check(
    rt: &Runtime,
    ctx: &RequestCtx,
    route: Route,
    identity: Option<&Identity>,
) -> Result<(), Refusal> {
    let limits = &rt.rate_limits;
    if limits.is_empty() {
        return Ok(());
    }
    let (scope, key) = match identity {
        Some(id) => (Scope::Session, Cow::Borrowed(id.handle.as_str())),
        None => (Scope::Ip, Cow::Owned(ip_key(ctx.client_ip))),
    };
    // The route stage chose one `[[route]]` for both readings of a path with parameters, so
    // both are charged to its bucket.
    let Some(bucket) = limits.bucket(route.id, scope) else {
        return Ok(());
    };
    let Err(limited) = limits.charge(bucket, &key).await else {
        return Ok(());
    };
    tracing::debug!(scope = scope.name(), "rate limited");
    if bucket.audit_due(&key) {
        let e = Event::new("rate_limited").reason(scope.name());
        rt.audit.emit(match identity {
            Some(id) => e.user(&id.sub).session(&id.handle),
            None => e.ip(&key),
        });
    }
    Err(Refusal::RateLimited {
        navigation: ctx.navigation,
        limited,
    })
}
