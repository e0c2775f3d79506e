//! `[[route]]`: path prefixes, public or protected, each sent to a named upstream.

use http::Method;

use super::Errors;
use crate::config::raw::{RawRoute, RawUpstream};
use crate::config::{RouteConfig, WHOAMI_UPSTREAM};
use crate::policy::RoutePolicy;

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
        let policy = policy(r, &key, errs);
        if let Some(upstream) = upstream_index(r, upstreams, builtin_whoami, &key("upstream"), errs)
        {
            routes.push(RouteConfig {
                path_prefix: p.clone(),
                public: r.public,
                upstream,
                policy,
            });
        }
    }
    nested_looser(&routes, errs);
    routes
}

/// A route's policy. A public route has no user to check (only `methods` applies there); a
/// policy no request can pass is refused; a method must be an HTTP token.
fn policy(r: &RawRoute, key: &dyn Fn(&str) -> String, errs: &mut Errors) -> RoutePolicy {
    let mut methods = None;
    if let Some(ms) = &r.methods {
        let mut parsed = Vec::new();
        for (j, m) in ms.iter().enumerate() {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => parsed.push(method),
                _ => errs.add(
                    format!("{}[{j}]", key("methods")),
                    format!("{m:?} is not a method in upper case (\"GET\", \"POST\", ...)"),
                ),
            }
        }
        methods = Some(parsed);
    }
    let p = RoutePolicy {
        allow_roles: r.allow_roles.clone(),
        allow_users: r.allow_users.clone(),
        deny_roles: r.deny_roles.clone(),
        methods,
        max_auth_age: r.max_auth_age,
    };
    if r.public {
        for (set, k) in [
            (r.allow_roles.is_some(), "allow_roles"),
            (r.allow_users.is_some(), "allow_users"),
            (!r.deny_roles.is_empty(), "deny_roles"),
            (r.max_auth_age.is_some(), "max_auth_age"),
        ] {
            if set {
                errs.add(
                    key(k),
                    "a public route has no user to check: drop `public = true` or this key",
                );
            }
        }
    }
    if let Some(d) = r.max_auth_age
        && d < std::time::Duration::from_secs(1)
    {
        errs.add(key("max_auth_age"), "must be at least 1s");
    }
    if let Some((k, why)) = p.never_matches() {
        errs.add(key(k), why);
    }
    p
}

/// A route nested under another whose policy it does not keep: the most specific route wins, so
/// the nested one lets in users the outer one keeps out. Allowed (a report under `/admin/` may
/// be for everyone), but said.
fn nested_looser(routes: &[RouteConfig], errs: &mut Errors) {
    for (i, r) in routes.iter().enumerate() {
        let parent = routes
            .iter()
            .filter(|o| o.path_prefix.len() < r.path_prefix.len())
            .filter(|o| crate::config::prefix_matches(&o.path_prefix, &r.path_prefix))
            .max_by_key(|o| o.path_prefix.len());
        let Some(parent) = parent else { continue };
        if parent.public {
            continue;
        }
        let looser = if r.public && parent.policy.checks_user() {
            Some("the whole policy (it is public)")
        } else {
            r.policy.looser_than(&parent.policy)
        };
        if let Some(what) = looser {
            errs.warn(
                format!("route[{i}]"),
                format!(
                    "{:?} is inside {:?} but does not keep its {what}: the most specific route \
                     wins, so {:?} lets in users {:?} keeps out",
                    r.path_prefix, parent.path_prefix, r.path_prefix, parent.path_prefix
                ),
            );
        }
    }
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
    use std::time::Duration;

    use super::*;

    fn route(prefix: &str, upstream: Option<&str>) -> RawRoute {
        RawRoute {
            path_prefix: prefix.into(),
            public: false,
            upstream: upstream.map(str::to_string),
            allow_roles: None,
            allow_users: None,
            deny_roles: vec![],
            methods: None,
            max_auth_age: None,
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

    fn with(prefix: &str, public: bool, f: impl Fn(&mut RawRoute)) -> RawRoute {
        let mut r = route(prefix, None);
        r.public = public;
        f(&mut r);
        r
    }

    #[test]
    fn policies_are_checked_under_their_keys() {
        let public_roles = with("/p/", true, |r| r.allow_roles = Some(vec!["a".into()]));
        assert_eq!(keys(&[public_roles], false), ["route[0].allow_roles"]);
        let public_methods = with("/p/", true, |r| r.methods = Some(vec!["GET".into()]));
        assert!(
            keys(&[public_methods], false).is_empty(),
            "methods fit a public route"
        );
        let bad = with("/a/", false, |r| {
            r.methods = Some(vec!["GET".into(), "get".into(), "BAD METHOD".into()])
        });
        assert_eq!(
            keys(&[bad], false),
            ["route[0].methods[1]", "route[0].methods[2]"]
        );
        let instant = with("/a/", false, |r| r.max_auth_age = Some(Duration::ZERO));
        assert_eq!(keys(&[instant], false), ["route[0].max_auth_age"]);
        let never = with("/a/", false, |r| r.allow_users = Some(vec![]));
        assert_eq!(keys(&[never], false), ["route[0].allow_users"]);
    }

    #[test]
    fn a_nested_route_that_opens_its_parent_is_warned_about() {
        let warnings = |routes: &[RawRoute]| {
            let mut errs = Errors::default();
            validate(routes, &[], false, &mut errs);
            assert!(errs.0.is_empty(), "{:?}", errs.0);
            errs.1.into_iter().map(|e| e.key).collect::<Vec<_>>()
        };
        let admin = || {
            with("/admin/", false, |r| {
                r.allow_roles = Some(vec!["admin".into()])
            })
        };
        let open = route("/admin/api/", None);
        let public = with("/admin/health", true, |_| {});
        let kept = with("/admin/x/", false, |r| {
            r.allow_users = Some(vec!["u".into()])
        });
        assert_eq!(
            warnings(&[open, admin(), public, kept]),
            ["route[0]", "route[2]"]
        );
        // Not nested (a sibling), or under a route with no policy: nothing to say.
        assert!(warnings(&[admin(), route("/administrator/", None)]).is_empty());
        assert!(warnings(&[route("/a/", None), route("/a/b/", None)]).is_empty());
    }
}
