//! The policy sections: `[anomaly]`, `[admin]`, `[url_tokens]`, `[csrf]` and `[log]`.

use tracing_subscriber::filter::LevelFilter;

use super::{Errors, parse_origin};
use crate::config::raw::{RawAdmin, RawAnomaly, RawCsrf, RawLog, RawUrlTokens};
use crate::config::{
    AnomalyConfig, CsrfConfig, CsrfMode, DEFAULT_CREDENTIAL_PARAMS, Secret, ServerConfig, Source,
    UrlTokensConfig,
};

pub(super) fn anomaly(an: &RawAnomaly, errs: &mut Errors) -> AnomalyConfig {
    if an.ipv4_prefix == 0 || an.ipv4_prefix > 32 {
        errs.add("anomaly.ipv4_prefix", "must be between 1 and 32");
    }
    if an.ipv6_prefix == 0 || an.ipv6_prefix > 128 {
        errs.add("anomaly.ipv6_prefix", "must be between 1 and 128");
    }
    if an.refresh_rate_max < 2 {
        errs.add(
            "anomaly.refresh_rate_max",
            "must be at least 2 (a client that keeps its cookies refreshes once per session.access_ttl)",
        );
    }
    AnomalyConfig::from_raw(an)
}

/// The admin API's bearer token, from the variable `admin.token_env` names; `None`: no API.
pub(super) fn admin_token(a: &RawAdmin, source: &dyn Source, errs: &mut Errors) -> Option<Secret> {
    let name = a.token_env.as_ref()?;
    match source.env(name) {
        Some(t) if t.len() >= 32 => Some(Secret::new(t.into_bytes())),
        Some(_) => {
            errs.add(
                "admin.token_env",
                format!(
                    "{name} must hold at least 32 bytes (make one with `sessiongate gen-secret`)"
                ),
            );
            None
        }
        None => {
            errs.add(
                "admin.token_env",
                format!("names environment variable {name}, which is not set"),
            );
            None
        }
    }
}

/// The credential parameters: the built-in ones and `url_tokens.params`, lower-cased, once each.
pub(super) fn url_tokens(u: &RawUrlTokens, errs: &mut Errors) -> UrlTokensConfig {
    let mut params: Vec<String> = DEFAULT_CREDENTIAL_PARAMS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (i, p) in u.params.iter().enumerate() {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            errs.add(
                format!("url_tokens.params[{i}]"),
                format!("{p:?} is not a parameter name"),
            );
        } else if !params.contains(&p.to_ascii_lowercase()) {
            params.push(p.to_ascii_lowercase());
        }
    }
    UrlTokensConfig {
        action: u.action,
        params,
    }
}

pub(super) fn csrf(c: &RawCsrf, errs: &mut Errors) -> CsrfConfig {
    let mut allowed_origins = Vec::new();
    for (i, o) in c.allowed_origins.iter().enumerate() {
        if let Some(o) = parse_origin(errs, &format!("csrf.allowed_origins[{i}]"), o) {
            allowed_origins.push(o);
        }
    }
    if c.mode == CsrfMode::Off {
        errs.warn(
            "csrf.mode",
            "\"off\": cross-site requests are not refused; any site a signed-in user visits can \
             make their browser post to the app as them (only for an app that defends itself)",
        );
    }
    CsrfConfig {
        mode: c.mode,
        allowed_origins,
    }
}

/// `log.level`: a level, or a filter of comma-separated `level` and `target=level` directives.
/// A bare word that is not a level would be read by the filter as a target to log in full,
/// and everything else would be silenced: `"inof"` would turn logging off.
pub(super) fn log_level(l: &RawLog, errs: &mut Errors) {
    let bad = l.level.trim().is_empty()
        || l.level
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .any(|d| {
                let level = d.rsplit_once('=').map_or(d, |(_, level)| level).trim();
                level.is_empty() || level.parse::<LevelFilter>().is_err()
            })
        || tracing_subscriber::EnvFilter::try_new(&l.level).is_err();
    if bad {
        errs.add(
            "log.level",
            format!(
                "{:?} is not a level (trace, debug, info, warn, error or off) nor a filter of \
                 levels like \"info,sessiongate=debug\"",
                l.level
            ),
        );
    }
}

/// An admin listener that others can reach is an operator's decision, shown by a token: without
/// `admin.token_env`, whoever reaches it reads `/metrics`, while the admin API stays off.
pub(super) fn admin_exposure(server: &ServerConfig, admin: &RawAdmin, errs: &mut Errors) {
    let Some(addr) = server.admin_listen else {
        return;
    };
    if addr.ip().to_canonical().is_loopback() || admin.token_env.is_some() {
        return;
    }
    errs.add(
        "server.admin_listen",
        format!(
            "{addr} is not a loopback address and admin.token_env is not set: /metrics, /healthz \
             and /readyz would answer anyone who reaches it, and the admin API would be off. \
             Listen on 127.0.0.1, or set admin.token_env (the admin API then needs that token; \
             /healthz, /readyz and /metrics never need one)"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_params_are_lower_cased_once_and_bad_ones_named() {
        let raw = RawUrlTokens {
            params: vec![
                "API_Key".into(),
                "api_key".into(),
                "Token".into(),
                "a b".into(),
            ],
            ..RawUrlTokens::default()
        };
        let mut errs = Errors::default();
        let u = url_tokens(&raw, &mut errs);
        assert_eq!(u.params.len(), DEFAULT_CREDENTIAL_PARAMS.len() + 1);
        assert_eq!(u.params.last().map(String::as_str), Some("api_key"));
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["url_tokens.params[3]"]);
    }

    #[test]
    fn prefixes_and_short_admin_tokens_are_refused() {
        let mut errs = Errors::default();
        let raw = RawAnomaly {
            ipv4_prefix: 0,
            ipv6_prefix: 129,
            ..RawAnomaly::default()
        };
        anomaly(&raw, &mut errs);
        let admin = RawAdmin {
            token_env: Some("T".into()),
        };
        assert!(admin_token(&admin, &|_: &str| Some("short".to_string()), &mut errs).is_none());
        assert!(admin_token(&admin, &|_: &str| None::<String>, &mut errs).is_none());
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "anomaly.ipv4_prefix",
                "anomaly.ipv6_prefix",
                "admin.token_env",
                "admin.token_env"
            ]
        );
    }
}
