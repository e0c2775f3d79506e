//! The rate-limit stage: after the session is known, charge the request to its bucket — its
//! session's (by the session's non-secret handle) or, without a session on a public route, its
//! client's network (`crate::ratelimit`). Over the limit: `429` with `Retry-After`,
//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
//!
//! Threat: one session or one anonymous client flooding the app. The gateway's own endpoints
//! (`/.auth/`) never reach this stage (login has its own throttle). A path whose two readings
//! (with and without path parameters, `RequestCtx::bare_path`) fall under different limits is
//! refused, so no one picks the looser one.

use std::borrow::Cow;
use std::sync::Arc;

use super::RequestCtx;
use crate::audit::Event;
use crate::ratelimit::{Scope, ip_key};
use crate::refusal::Refusal;
use crate::runtime::Runtime;
use crate::sessions::Identity;
use crate::web::path::PathError;

pub async fn check(
    rt: &Runtime,
    ctx: &RequestCtx,
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
    let bucket = limits.bucket(&ctx.path, scope);
    if let Some(bare) = &ctx.bare_path {
        let other = limits.bucket(bare, scope);
        let same = match (bucket, other) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(Refusal::Path(PathError::ParameterChangesRoute));
        }
    }
    let Some(bucket) = bucket else {
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
