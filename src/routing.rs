//! Longest-prefix routing on the normalised path (see `web::path`): which upstream a path
//! goes to, whether it needs a session, and whose policy (`crate::policy`) applies.

use crate::config::{RouteConfig, prefix_matches};
use crate::policy::RoutePolicy;

/// The routing decision for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub public: bool,
    pub upstream: usize,
    /// Which configured route matched (its index among `[[route]]`), `None` for none: two
    /// readings of a path are the same route only when this is the same, so a path parameter
    /// cannot move a request to another route's policy either.
    pub id: Option<usize>,
}

/// Routes, longest prefix first; anything unmatched is protected and goes to upstream 0.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(String, Route)>,
    /// The policy of each configured route, by `Route::id`.
    policies: Vec<RoutePolicy>,
}

/// The policy of a path no route matches: none (any signed-in user).
static OPEN: RoutePolicy = RoutePolicy {
    allow_roles: None,
    allow_users: None,
    deny_roles: Vec::new(),
    methods: None,
    max_auth_age: None,
};

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let policies = routes.iter().map(|r| r.policy.clone()).collect();
        let mut routes: Vec<(String, Route)> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.path_prefix.clone(),
                    Route {
                        public: r.public,
                        upstream: r.upstream,
                        id: Some(i),
                    },
                )
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Self { routes, policies }
    }

    /// The policy of a route this router chose.
    pub fn policy(&self, route: &Route) -> &RoutePolicy {
        route.id.and_then(|i| self.policies.get(i)).unwrap_or(&OPEN)
    }

    /// The `path_prefix` of a route this router chose (`"/"` for none), for audit events.
    pub fn prefix(&self, route: &Route) -> &str {
        self.routes
            .iter()
            .find(|(_, r)| r.id == route.id && route.id.is_some())
            .map_or("/", |(p, _)| p.as_str())
    }

    /// Route a *normalised* path.
    pub fn route(&self, path: &str) -> Route {
        self.routes
            .iter()
            .find(|(p, _)| prefix_matches(p, path))
            .map(|(_, r)| *r)
            .unwrap_or(Route {
                public: false,
                upstream: 0,
                id: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::path::normalise;

    fn route(prefix: &str, public: bool, upstream: usize) -> RouteConfig {
        RouteConfig {
            path_prefix: prefix.into(),
            public,
            upstream,
            policy: RoutePolicy::default(),
        }
    }

    fn router() -> Router {
        Router::new(&[
            route("/public/", true, 0),
            route("/public/private/", false, 1),
            route("/api", true, 2),
        ])
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = router();
        let at = |p: &str| {
            let x = r.route(p);
            (x.public, x.upstream, x.id, r.prefix(&x).to_string())
        };
        assert_eq!(at("/public/x"), (true, 0, Some(0), "/public/".into()));
        assert_eq!(at("/public"), (true, 0, Some(0), "/public/".into()));
        assert_eq!(
            at("/public/private/x"),
            (false, 1, Some(1), "/public/private/".into())
        );
        assert_eq!(at("/api"), (true, 2, Some(2), "/api".into()));
        assert_eq!(at("/api/v1"), (true, 2, Some(2), "/api".into()));
        for unmatched in ["/apiary", "/publicity", "/"] {
            assert_eq!(at(unmatched), (false, 0, None, "/".into()), "{unmatched}");
        }
    }

    #[test]
    fn each_route_has_its_own_policy_and_unmatched_paths_none() {
        let mut admin = route("/admin/", false, 0);
        admin.policy.allow_roles = Some(vec!["admin".into()]);
        let r = Router::new(&[route("/", false, 0), admin]);
        assert!(r.policy(&r.route("/admin/x")).allow_roles.is_some());
        assert!(r.policy(&r.route("/x")).is_open());
        assert!(Router::new(&[]).policy(&r.route("/x")).is_open());
    }

    #[test]
    fn traversal_out_of_a_public_prefix_lands_on_the_protected_route() {
        let r = router();
        let p = normalise("/public/%2e%2e/admin").unwrap();
        assert!(!r.route(&p).public);
    }
}
