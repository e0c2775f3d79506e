//! The policy stage: the route's access policy (`crate::policy`) for the verified identity,
//! after the session is known and before anything is forwarded. A route with no policy costs
//! one check. Every refusal, and every step-up, is audited and counted
//! (`sessiongate_policy_denials_total{reason}`); the client's answer names no rule.

use http::Method;

use super::RequestCtx;
use crate::audit::Event;
use crate::metrics::Reason;
use crate::policy::{Subject, Verdict};
use crate::refusal::Refusal;
use crate::routing::Route;
use crate::runtime::Runtime;
use crate::sessions::Identity;

pub fn check(
    rt: &Runtime,
    ctx: &RequestCtx,
    route: Route,
    method: &Method,
    identity: Option<&Identity>,
) -> Result<(), Refusal> {
    let policy = rt.router.policy(&route);
    if policy.is_open() {
        return Ok(());
    }
    let who = identity.map(|id| Subject {
        user: &id.sub,
        roles: &id.roles,
        auth_time: id.auth_time,
    });
    let verdict = policy.decide(method, who, rt.sessions.clock().now());
    let (reason, refusal) = match verdict {
        Verdict::Allow => return Ok(()),
        Verdict::Deny(d) => (
            d.as_str(),
            Refusal::Forbidden {
                navigation: ctx.navigation,
                reason: d,
            },
        ),
        Verdict::StepUp => (
            "step_up",
            Refusal::StepUp {
                navigation: ctx.navigation,
                return_to: ctx.here(),
                max_age: policy.max_auth_age.map_or(0, |d| d.as_secs()),
            },
        ),
    };
    rt.metrics
        .policy_denials
        .get_or_create(&Reason {
            reason: reason.into(),
        })
        .inc();
    let kind = if verdict == Verdict::StepUp {
        "step_up"
    } else {
        "access_denied"
    };
    let mut e = Event::new(kind)
        .ip(&ctx.client_ip.to_string())
        .reason(&format!("{reason} on route {}", rt.router.prefix(&route)));
    if let Some(id) = identity {
        e = e.user(&id.sub).session(&id.handle);
    }
    rt.audit.emit(e);
    Err(refusal)
}
