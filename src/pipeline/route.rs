//! The route stage: longest prefix on the normalised path (`routing`), with the app's own
//! login page and form public in upstream-login mode (they must be reachable without a
//! session).
//!
//! Threat: a path parameter that moves a path to another route for the app than for the
//! router (`/public/private;x/y` is `/public/private/y` to Tomcat). A path with a `;` is routed
//! in both readings; if they disagree it is refused.

use super::RequestCtx;
use crate::refusal::Refusal;
use crate::routing::Route;
use crate::runtime::Runtime;
use crate::web::path::PathError;

pub fn check(rt: &Runtime, ctx: &RequestCtx) -> Result<Route, Refusal> {
    let route = route_of(rt, &ctx.path);
    match &ctx.bare_path {
        Some(bare) if route_of(rt, bare) != route => {
            Err(Refusal::Path(PathError::ParameterChangesRoute))
        }
        _ => Ok(route),
    }
}

fn route_of(rt: &Runtime, path: &str) -> Route {
    let mut route = rt.router.route(path);
    if super::upstream_login::is_login_page(rt, path) {
        route.public = true;
    }
    route
}
