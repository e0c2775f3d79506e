//! Longest-prefix routing on the normalised path (see `web::path`): which upstream a path
//! goes to and whether it needs a session.

use crate::config::RouteConfig;

/// The routing decision for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub public: bool,
    pub upstream: usize,
}

/// Routes, longest prefix first; anything unmatched is protected and goes to upstream 0.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(String, Route)>,
}

/// Whether `prefix` (a `path_prefix`) matches the normalised `path`, on segment boundaries.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if let Some(dir) = prefix.strip_suffix('/') {
        path.starts_with(prefix) || path == dir
    } else {
        path == prefix
            || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut routes: Vec<(String, Route)> = routes
            .iter()
            .map(|r| {
                (
                    r.path_prefix.clone(),
                    Route {
                        public: r.public,
                        upstream: r.upstream,
                    },
                )
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Self { routes }
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
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::path::normalise;

    fn router() -> Router {
        Router::new(&[
            RouteConfig {
                path_prefix: "/public/".into(),
                public: true,
                upstream: 0,
            },
            RouteConfig {
                path_prefix: "/public/private/".into(),
                public: false,
                upstream: 1,
            },
            RouteConfig {
                path_prefix: "/api".into(),
                public: true,
                upstream: 2,
            },
        ])
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = router();
        assert_eq!(
            r.route("/public/x"),
            Route {
                public: true,
                upstream: 0
            }
        );
        assert_eq!(
            r.route("/public"),
            Route {
                public: true,
                upstream: 0
            }
        );
        assert_eq!(
            r.route("/public/private/x"),
            Route {
                public: false,
                upstream: 1
            }
        );
        assert_eq!(
            r.route("/api"),
            Route {
                public: true,
                upstream: 2
            }
        );
        assert_eq!(
            r.route("/api/v1"),
            Route {
                public: true,
                upstream: 2
            }
        );
        assert_eq!(
            r.route("/apiary"),
            Route {
                public: false,
                upstream: 0
            }
        );
        assert_eq!(
            r.route("/publicity"),
            Route {
                public: false,
                upstream: 0
            }
        );
        assert_eq!(
            r.route("/"),
            Route {
                public: false,
                upstream: 0
            }
        );
    }

    #[test]
    fn traversal_out_of_a_public_prefix_lands_on_the_protected_route() {
        let r = router();
        let p = normalise("/public/%2e%2e/admin").unwrap();
        assert!(!r.route(&p).public);
    }
}
