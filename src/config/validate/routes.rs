//! `[[route]]`: path prefixes, public or protected, each sent to a named upstream.

use super::Errors;
use crate::config::raw::{RawRoute, RawUpstream};
use crate::config::{RouteConfig, WHOAMI_UPSTREAM};

pub(super) fn validate(
    raw: &[RawRoute],
    upstreams: &[RawUpstream],
    builtin_whoami: bool,
    errs: &mut Errors,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        let p = &r.path_prefix;
        if !p.starts_with('/')
            || p.contains(['?', '#', '%', '\\'])
            || p.contains("//")
            || p.split('/').any(|s| s == "." || s == "..")
        {
            errs.add(key("path_prefix"), format!("{p:?} must be a normalised path starting with '/' (no '?', '#', '%', '\\\\', '//' or dot segments)"));
        }
        if p.starts_with("/.auth/") || p == "/.auth" {
            errs.add(
                key("path_prefix"),
                "/.auth/ belongs to the gateway's own endpoints",
            );
        }
        if raw[..i].iter().any(|o| o.path_prefix == *p) {
            errs.add(key("path_prefix"), format!("{p:?} is routed twice"));
        }
        if let Some(upstream) = upstream_index(r, upstreams, builtin_whoami, &key("upstream"), errs)
        {
            routes.push(RouteConfig {
                path_prefix: p.clone(),
                public: r.public,
                upstream,
            });
        }
    }
    routes
}

/// The index of the upstream a route names (the first one when it names none).
fn upstream_index(
    r: &RawRoute,
    upstreams: &[RawUpstream],
    builtin_whoami: bool,
    key: &str,
    errs: &mut Errors,
) -> Option<usize> {
    let Some(name) = &r.upstream else {
        return Some(0);
    };
    if builtin_whoami && name == WHOAMI_UPSTREAM {
        return Some(0);
    }
    let found = upstreams.iter().position(|u| &u.name == name);
    if found.is_none() {
        let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        errs.add(
            key,
            format!("names unknown upstream {name:?} (defined: {known:?})"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, upstream: Option<&str>) -> RawRoute {
        RawRoute {
            path_prefix: prefix.into(),
            public: false,
            upstream: upstream.map(str::to_string),
            rate_limit: None,
        }
    }

    fn keys(routes: &[RawRoute], whoami: bool) -> Vec<String> {
        let mut errs = Errors::default();
        validate(routes, &[], whoami, &mut errs);
        errs.0.into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn gateway_paths_duplicates_and_dot_segments_are_refused() {
        assert_eq!(
            keys(&[route("/.auth/x", None)], false),
            ["route[0].path_prefix"]
        );
        assert_eq!(
            keys(&[route("/a/", None), route("/a/", None)], false),
            ["route[1].path_prefix"]
        );
        assert_eq!(
            keys(&[route("/a/../b", None)], false),
            ["route[0].path_prefix"]
        );
    }

    #[test]
    fn whoami_is_an_upstream_only_when_built_in() {
        assert!(keys(&[route("/w/", Some(WHOAMI_UPSTREAM))], true).is_empty());
        assert_eq!(
            keys(&[route("/w/", Some(WHOAMI_UPSTREAM))], false),
            ["route[0].upstream"]
        );
    }
}
