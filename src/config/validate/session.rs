//! `[session]`: token lifetimes and the cookies' attributes.

use std::time::Duration;

use super::{Errors, check_duration};
use crate::config::SessionConfig;
use crate::config::raw::RawSession;

pub(super) fn validate(ss: &RawSession, errs: &mut Errors) -> SessionConfig {
    for (key, d) in [
        ("session.access_ttl", ss.access_ttl),
        ("session.refresh_ttl", ss.refresh_ttl),
        ("session.idle_timeout", ss.idle_timeout),
        ("session.refresh_grace", ss.refresh_grace),
    ] {
        check_duration(errs, key, d);
    }
    if ss.access_ttl >= ss.refresh_ttl {
        errs.add(
            "session.access_ttl",
            format!(
                "({}) must be below session.refresh_ttl ({})",
                humantime::format_duration(ss.access_ttl),
                humantime::format_duration(ss.refresh_ttl)
            ),
        );
    }
    if ss.refresh_grace > Duration::from_secs(120) {
        errs.add(
            "session.refresh_grace",
            "must be at most 2m: a longer window lets a stolen refresh token be replayed",
        );
    }
    if let Some(d) = &ss.cookie_domain
        && (d.is_empty() || d.starts_with('.') || d.contains([';', ',', ' ', '/']))
    {
        errs.add(
            "session.cookie_domain",
            format!("{d:?} is not a host name browsers accept"),
        );
    }
    SessionConfig {
        access_ttl: ss.access_ttl,
        refresh_ttl: ss.refresh_ttl,
        idle_timeout: ss.idle_timeout,
        refresh_grace: ss.refresh_grace,
        same_site: ss.same_site,
        cookie_domain: ss.cookie_domain.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_grace_and_a_dotted_cookie_domain_are_refused() {
        let raw = RawSession {
            refresh_grace: Duration::from_secs(600),
            cookie_domain: Some(".example.com".into()),
            ..RawSession::default()
        };
        let mut errs = Errors::default();
        validate(&raw, &mut errs);
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["session.refresh_grace", "session.cookie_domain"]);
    }
}
