//! Who may go where: a route's access policy (`[[route]] allow_roles`, `allow_users`,
//! `deny_roles`, `methods`, `max_auth_age`), decided after the session is verified and before
//! anything is forwarded, on the route the longest prefix chose (a nested route's policy
//! replaces its parent's; nothing is inherited, and `check-config` warns where a nested route
//! lets in users its parent keeps out).
//!
//! The order is fixed: the method, then `deny_roles` (a denied role refuses whatever else
//! allows), then the allow lists (a user passes when named in `allow_users` or holding a role
//! of `allow_roles`; with neither list, every signed-in user passes), then the login's age. A
//! user the policy refuses is never sent to log in again for it: a fresh login would not
//! change the answer.
//!
//! Roles are the session's, whatever gave them (the users file, the app's signed grant, the
//! provider's `roles_claim`): one list, compared exactly (case-sensitive), as users are.

use std::time::Duration;

use http::Method;

/// A route's policy, as validated (`config::validate::routes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    pub allow_roles: Option<Vec<String>>,
    pub allow_users: Option<Vec<String>>,
    pub deny_roles: Vec<String>,
    pub methods: Option<Vec<Method>>,
    pub max_auth_age: Option<Duration>,
}

/// Why the policy refused a request: the `reason` of its audit event and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The method is not in `methods`.
    Method,
    /// The user holds a role of `deny_roles`.
    DeniedRole,
    /// Neither `allow_users` nor `allow_roles` lets the user in.
    NotAllowed,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Method => "method",
            Denial::DeniedRole => "deny_roles",
            Denial::NotAllowed => "not_allowed",
        }
    }
}

/// The policy's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Denial),
    /// The user may pass, but their login is older than `max_auth_age`: log in again.
    StepUp,
}

/// Who is asking: the verified identity's user, roles and when they last authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub roles: &'a [String],
    /// Unix seconds; `0` when unknown (a token from before the claim): always too old.
    pub auth_time: u64,
}

impl RoutePolicy {
    /// Whether the policy checks anything about the user (not only the method).
    pub fn checks_user(&self) -> bool {
        self.allow_roles.is_some()
            || self.allow_users.is_some()
            || !self.deny_roles.is_empty()
            || self.max_auth_age.is_some()
    }

    /// Whether the policy checks anything at all.
    pub fn is_open(&self) -> bool {
        self.methods.is_none() && !self.checks_user()
    }

    /// Whether `method` is one the route takes (`HEAD` wherever `GET` is).
    pub fn allows_method(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(ms) => {
                ms.contains(method) || (*method == Method::HEAD && ms.contains(&Method::GET))
            }
        }
    }

    /// The verdict for `method` by `who` (`None`: no session, a public route) at `now`.
    pub fn decide(&self, method: &Method, who: Option<Subject<'_>>, now: u64) -> Verdict {
        if !self.allows_method(method) {
            return Verdict::Deny(Denial::Method);
        }
        let Some(who) = who else {
            // Only public routes get here without a session, and their policies are methods
            // only (validation refuses the rest there).
            return Verdict::Allow;
        };
        let has = |list: &[String]| who.roles.iter().any(|r| list.contains(r));
        if has(&self.deny_roles) {
            return Verdict::Deny(Denial::DeniedRole);
        }
        if self.allow_roles.is_some() || self.allow_users.is_some() {
            let by_user = self
                .allow_users
                .as_ref()
                .is_some_and(|us| us.iter().any(|u| u == who.user));
            let by_role = self.allow_roles.as_deref().is_some_and(has);
            if !by_user && !by_role {
                return Verdict::Deny(Denial::NotAllowed);
            }
        }
        if let Some(max) = self.max_auth_age
            && now.saturating_sub(who.auth_time) > max.as_secs()
        {
            return Verdict::StepUp;
        }
        Verdict::Allow
    }

    /// Whether some request could ever pass; if not, the key at fault and why (for
    /// `check-config`).
    pub fn never_matches(&self) -> Option<(&'static str, &'static str)> {
        if self.methods.as_ref().is_some_and(Vec::is_empty) {
            return Some(("methods", "is empty: no request can pass"));
        }
        let no_users = self.allow_users.as_ref().is_none_or(Vec::is_empty);
        if let Some(roles) = &self.allow_roles
            && no_users
            && roles.iter().all(|r| self.deny_roles.contains(r))
        {
            return Some(if roles.is_empty() {
                (
                    "allow_roles",
                    "is empty and no allow_users name anyone: no user can pass",
                )
            } else {
                (
                    "allow_roles",
                    "every role it names is in deny_roles, and no allow_users: no user can pass",
                )
            });
        }
        if self.allow_roles.is_none() && self.allow_users.as_ref().is_some_and(Vec::is_empty) {
            return Some((
                "allow_users",
                "is empty and no allow_roles: no user can pass",
            ));
        }
        None
    }

    /// Whether this (a nested route's) policy lets in someone `parent` keeps out, judged by
    /// what each checks: a parent check the child does not make at all.
    pub fn looser_than(&self, parent: &RoutePolicy) -> Option<&'static str> {
        if (parent.allow_roles.is_some() || parent.allow_users.is_some())
            && self.allow_roles.is_none()
            && self.allow_users.is_none()
        {
            return Some("allow_roles/allow_users");
        }
        if let Some(pm) = &parent.methods
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| !pm.contains(x)))
        {
            return Some("methods");
        }
        if parent
            .deny_roles
            .iter()
            .any(|r| !self.deny_roles.contains(r))
        {
            return Some("deny_roles");
        }
        if let Some(p) = parent.max_auth_age
            && self.max_auth_age.is_none_or(|c| c > p)
        {
            return Some("max_auth_age");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(rs: &[&str]) -> Vec<String> {
        rs.iter().map(|s| s.to_string()).collect()
    }

    fn who<'a>(user: &'a str, roles: &'a [String], auth_time: u64) -> Option<Subject<'a>> {
        Some(Subject {
            user,
            roles,
            auth_time,
        })
    }

    #[test]
    fn deny_beats_allow_and_users_or_roles_let_in() {
        let p = RoutePolicy {
            allow_roles: Some(roles(&["admin", "ops"])),
            allow_users: Some(roles(&["carol"])),
            deny_roles: roles(&["suspended"]),
            ..RoutePolicy::default()
        };
        let admin = roles(&["admin"]);
        let both = roles(&["ops", "suspended"]);
        let none = roles(&[]);
        let get = &Method::GET;
        assert_eq!(p.decide(get, who("alice", &admin, 0), 0), Verdict::Allow);
        assert_eq!(p.decide(get, who("carol", &none, 0), 0), Verdict::Allow);
        assert_eq!(
            p.decide(get, who("bob", &none, 0), 0),
            Verdict::Deny(Denial::NotAllowed)
        );
        assert_eq!(
            p.decide(get, who("bob", &both, 0), 0),
            Verdict::Deny(Denial::DeniedRole)
        );
        // A denied role refuses even a user allow_users names.
        let suspended = roles(&["suspended"]);
        assert_eq!(
            p.decide(get, who("carol", &suspended, 0), 0),
            Verdict::Deny(Denial::DeniedRole)
        );
        // Exact comparison: a role or user differing in case is another.
        let upper = roles(&["ADMIN"]);
        assert_eq!(
            p.decide(get, who("Carol", &upper, 0), 0),
            Verdict::Deny(Denial::NotAllowed)
        );
    }

    #[test]
    fn methods_are_checked_first_and_get_lets_head_through() {
        let p = RoutePolicy {
            methods: Some(vec![Method::GET]),
            allow_roles: Some(roles(&["admin"])),
            ..RoutePolicy::default()
        };
        let none = roles(&[]);
        assert_eq!(p.decide(&Method::HEAD, None, 0), Verdict::Allow);
        assert_eq!(
            p.decide(&Method::POST, who("x", &none, 0), 0),
            Verdict::Deny(Denial::Method)
        );
        assert_eq!(
            p.decide(&Method::DELETE, None, 0),
            Verdict::Deny(Denial::Method)
        );
        let post_only = RoutePolicy {
            methods: Some(vec![Method::POST]),
            ..RoutePolicy::default()
        };
        assert!(!post_only.allows_method(&Method::HEAD));
        assert!(RoutePolicy::default().allows_method(&Method::PATCH));
    }

    #[test]
    fn an_old_login_steps_up_only_once_the_user_would_pass() {
        let p = RoutePolicy {
            max_auth_age: Some(Duration::from_secs(600)),
            allow_roles: Some(roles(&["admin"])),
            ..RoutePolicy::default()
        };
        let admin = roles(&["admin"]);
        let none = roles(&[]);
        let get = &Method::GET;
        assert_eq!(p.decide(get, who("a", &admin, 1000), 1600), Verdict::Allow);
        assert_eq!(p.decide(get, who("a", &admin, 1000), 1601), Verdict::StepUp);
        assert_eq!(p.decide(get, who("a", &admin, 0), 1601), Verdict::StepUp);
        assert_eq!(
            p.decide(get, who("b", &none, 1000), 9999),
            Verdict::Deny(Denial::NotAllowed)
        );
    }

    #[test]
    fn policies_that_can_never_match_are_found() {
        let never = |p: RoutePolicy| p.never_matches().is_some();
        assert!(never(RoutePolicy {
            methods: Some(vec![]),
            ..RoutePolicy::default()
        }));
        assert!(never(RoutePolicy {
            allow_roles: Some(vec![]),
            ..RoutePolicy::default()
        }));
        assert!(never(RoutePolicy {
            allow_users: Some(vec![]),
            ..RoutePolicy::default()
        }));
        assert!(never(RoutePolicy {
            allow_roles: Some(roles(&["a"])),
            deny_roles: roles(&["a"]),
            ..RoutePolicy::default()
        }));
        // A user allow_users names can still pass.
        assert!(!never(RoutePolicy {
            allow_roles: Some(roles(&["a"])),
            allow_users: Some(roles(&["u"])),
            deny_roles: roles(&["a"]),
            ..RoutePolicy::default()
        }));
        assert!(!never(RoutePolicy {
            allow_roles: Some(vec![]),
            allow_users: Some(roles(&["u"])),
            ..RoutePolicy::default()
        }));
        assert!(!never(RoutePolicy::default()));
    }

    #[test]
    fn a_nested_route_that_drops_a_parent_check_is_looser() {
        let parent = RoutePolicy {
            allow_roles: Some(roles(&["admin"])),
            deny_roles: roles(&["x"]),
            max_auth_age: Some(Duration::from_secs(600)),
            ..RoutePolicy::default()
        };
        assert_eq!(
            RoutePolicy::default().looser_than(&parent),
            Some("allow_roles/allow_users")
        );
        let same = parent.clone();
        assert_eq!(same.looser_than(&parent), None);
        let longer = RoutePolicy {
            max_auth_age: Some(Duration::from_secs(3600)),
            ..parent.clone()
        };
        assert_eq!(longer.looser_than(&parent), Some("max_auth_age"));
        let no_deny = RoutePolicy {
            deny_roles: vec![],
            ..parent.clone()
        };
        assert_eq!(no_deny.looser_than(&parent), Some("deny_roles"));
    }
}
