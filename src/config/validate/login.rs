//! `[login]`: the users file (checked by `preflight`, not here), the app's own login form
//! with a signed grant, or OpenID Connect providers (`[oidc]`, validated by `oidc`), and the
//! login throttles. The grant's secret must differ from the token
//! secrets ([`grant_secret_differs`]): an app that can mint grants must not be able to mint
//! access or refresh tokens, nor a leaked token key forge grants.

use super::keys::{RingKeys, read_ring, rings_differ};
use super::{Errors, check_duration};
use crate::config::raw::RawLogin;
use crate::config::{KeysConfig, LoginConfig, LoginMode, SecretRing, Source, UpstreamLogin};

/// The account-wide backstop when `login.max_failures_per_user_total` is not written (and
/// `max_failures_per_user` is not higher).
const DEFAULT_FAILURES_PER_USER_TOTAL: u32 = 50;

pub(super) fn validate(l: &RawLogin, source: &dyn Source, errs: &mut Errors) -> LoginConfig {
    if l.max_failures_per_user == 0 {
        errs.add("login.max_failures_per_user", "must be at least 1");
    }
    if l.max_failures_per_ip == 0 {
        errs.add("login.max_failures_per_ip", "must be at least 1");
    }
    let total = match l.max_failures_per_user_total {
        None => DEFAULT_FAILURES_PER_USER_TOTAL.max(l.max_failures_per_user),
        Some(t) => {
            if t < l.max_failures_per_user {
                errs.add(
                    "login.max_failures_per_user_total",
                    format!(
                        "{t} is below login.max_failures_per_user ({}); the account-wide \
                         backstop counts the failures of every network, so it must be at least \
                         the limit of one",
                        l.max_failures_per_user
                    ),
                );
            }
            t
        }
    };
    check_duration(errs, "login.failure_window", l.failure_window);
    second_factor(l, errs);
    let upstream = match l.mode {
        LoginMode::Upstream => upstream(l, source, errs),
        LoginMode::UsersFile | LoginMode::Oidc => {
            for (set, key) in [
                (l.upstream_path.is_some(), "login.upstream_path"),
                (l.page_path.is_some(), "login.page_path"),
                (l.grant_secret_env.is_some(), "login.grant_secret_env"),
                (!l.drop_cookies.is_empty(), "login.drop_cookies"),
                (!l.logout_paths.is_empty(), "login.logout_paths"),
            ] {
                if set {
                    errs.add(key, "only applies to login.mode = \"upstream\"");
                }
            }
            None
        }
    };
    LoginConfig {
        mode: l.mode,
        users_file: l.users_file_in_use(),
        upstream,
        max_failures_per_user: l.max_failures_per_user,
        max_failures_per_user_total: total,
        max_failures_per_ip: l.max_failures_per_ip,
        failure_window: l.failure_window,
        require_second_factor: l.require_second_factor,
        second_factor_grace: l.second_factor_grace,
    }
}

/// The longest `login.second_factor_grace`: a grace is a time to enrol, not a way out.
const MAX_SECOND_FACTOR_GRACE: std::time::Duration =
    std::time::Duration::from_secs(366 * 24 * 3600);

/// `login.require_second_factor` needs the gateway's own login (the users file), and a grace
/// means nothing without it.
fn second_factor(l: &RawLogin, errs: &mut Errors) {
    if l.require_second_factor && l.users_file_in_use().is_none() {
        errs.add(
            "login.require_second_factor",
            "needs the gateway's own login (a users file): an app or a provider that signs users \
             in asks for their second factor itself",
        );
    }
    if !l.second_factor_grace.is_zero() && !l.require_second_factor {
        errs.add(
            "login.second_factor_grace",
            "only applies with login.require_second_factor = true",
        );
    }
    if l.second_factor_grace > MAX_SECOND_FACTOR_GRACE {
        errs.add("login.second_factor_grace", "must be at most 366d");
    }
}

/// `login.mode = "upstream"`: the app's login path, its login page, and the grant's secret.
fn upstream(l: &RawLogin, source: &dyn Source, errs: &mut Errors) -> Option<UpstreamLogin> {
    let path = match &l.upstream_path {
        Some(p) => normal_path(errs, "login.upstream_path", p).then(|| p.clone()),
        None => {
            errs.add(
                "login.upstream_path",
                "login.mode = \"upstream\" needs the app's login path",
            );
            None
        }
    };
    let page = match &l.page_path {
        Some(p) => normal_path(errs, "login.page_path", p).then(|| p.clone()),
        None => path.clone(),
    };
    for (i, p) in l.logout_paths.iter().enumerate() {
        normal_path(errs, &format!("login.logout_paths[{i}]"), p);
    }
    let secrets = grant_secrets(l, source, errs);
    Some(UpstreamLogin {
        path: path?,
        page_path: page?,
        grant_secrets: secrets?,
        drop_cookies: l
            .drop_cookies
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect(),
        logout_paths: l.logout_paths.clone(),
    })
}

fn grant_secrets(l: &RawLogin, source: &dyn Source, errs: &mut Errors) -> Option<SecretRing> {
    let Some(names) = &l.grant_secret_env else {
        errs.add(
            "login.grant_secret_env",
            "login.mode = \"upstream\" needs the grant's secret",
        );
        return None;
    };
    let keys = RingKeys {
        env_key: "login.grant_secret_env",
        env: Some(names),
        file_key: "login.grant_secret_env",
        files: None,
    };
    // Never a random one, even in `--dev`: the app must know it.
    read_ring(keys, false, source, errs, &mut Vec::new())
}

/// No grant secret may be a token secret: with one key for both, the app (or anyone holding
/// the grant secret) could sign access or refresh tokens, and a token key could sign grants.
/// Every pair of the rings is compared, so a rotation cannot slip one in.
pub(super) fn grant_secret_differs(login: &LoginConfig, keys: &KeysConfig, errs: &mut Errors) {
    let Some(up) = &login.upstream else {
        return;
    };
    for (ring, which) in [
        (&keys.access_secrets, "the access secret"),
        (&keys.refresh_secrets, "the refresh secret"),
    ] {
        rings_differ(
            ring,
            &up.grant_secrets,
            which,
            "a grant secret that is also a token key lets whoever mints grants mint tokens \
             (make one with `sessiongate gen-secret`)",
            errs,
        );
    }
}

/// Whether `p` is an absolute, normalised path outside `/.auth/` (a problem recorded if not).
fn normal_path(errs: &mut Errors, key: &str, p: &str) -> bool {
    let ok = p.starts_with('/')
        && crate::web::path::normalise(p).is_ok_and(|n| n == p)
        && !crate::web::path::is_gateway_path(p);
    if !ok {
        errs.add(
            key,
            format!("{p:?} must be a normalised path outside /.auth/"),
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::OneOrList;

    const GRANT: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

    fn env(name: &str) -> Option<String> {
        (name == "GRANT").then(|| GRANT.to_string())
    }

    fn upstream_mode() -> RawLogin {
        RawLogin {
            mode: LoginMode::Upstream,
            upstream_path: Some("/login".into()),
            grant_secret_env: Some(OneOrList::One("GRANT".into())),
            drop_cookies: vec!["PHPSESSID".into()],
            ..RawLogin::default()
        }
    }

    #[test]
    fn upstream_mode_defaults_its_page_and_keeps_no_users_file() {
        let mut errs = Errors::default();
        let c = validate(&upstream_mode(), &env, &mut errs);
        assert!(errs.0.is_empty(), "{errs:?}");
        assert_eq!(c.users_file, None);
        let u = c.upstream.unwrap();
        assert_eq!(u.page_path, "/login");
        assert_eq!(u.drop_cookies, ["phpsessid"]);
        assert_eq!(u.grant_secrets.signing().expose(), GRANT.as_bytes());
    }

    #[test]
    fn upstream_mode_names_each_missing_or_bad_key() {
        let raw = RawLogin {
            upstream_path: Some("/.auth/login".into()),
            grant_secret_env: Some(OneOrList::One("UNSET".into())),
            logout_paths: vec!["/a/../b".into()],
            ..upstream_mode()
        };
        let mut errs = Errors::default();
        assert!(validate(&raw, &env, &mut errs).upstream.is_none());
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "login.upstream_path",
                "login.logout_paths[0]",
                "login.grant_secret_env"
            ]
        );
    }

    #[test]
    fn users_file_mode_refuses_upstream_keys_and_keeps_the_path_unchecked() {
        let raw = RawLogin {
            users_file: Some("/nonexistent/users.toml".into()),
            page_path: Some("/login".into()),
            ..RawLogin::default()
        };
        let mut errs = Errors::default();
        let c = validate(&raw, &env, &mut errs);
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["login.page_path"]);
        assert_eq!(
            c.users_file.as_deref(),
            Some("/nonexistent/users.toml".as_ref())
        );
    }
}
