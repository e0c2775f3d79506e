//! The route stage: longest prefix on the normalised path (`routing`), with the app's own
//! login page and form public in upstream-login mode (they must be reachable without a
//! session).

use super::RequestCtx;
use crate::routing::Route;
use crate::runtime::Runtime;

pub fn check(rt: &Runtime, ctx: &RequestCtx) -> Route {
    let mut route = rt.router.route(&ctx.path);
    if super::upstream_login::is_login_page(rt, &ctx.path) {
        route.public = true;
    }
    route
}
