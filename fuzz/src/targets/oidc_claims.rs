//! Claim mapping (`oidc::claims::map`, `lookup`): what a provider's ID token or userinfo
//! says becomes the gateway's user id and roles. The input is NUL-separated: `user_claim`,
//! `roles_claim` (empty: unset), `allowed_domains` and `allowed_groups` (comma-separated),
//! then the claims (a JSON object).
//!
//! Oracle:
//! - `lookup` finds the exact key first, else the dotted path through nested objects (a
//!   reference lookup written here);
//! - a mapped user id and roles are always header-safe: a user id is a valid header value the
//!   app reads exactly as it was mapped (printable ASCII, not empty, no surrounding spaces,
//!   at most 256 bytes) and is the user claim's value; each role is such a value without a
//!   comma, taken from the roles claim, each once; the roles joined as `X-Auth-Roles` is a
//!   valid header value that splits back at its commas into exactly those roles;
//! - admission: with `allowed_domains`, a user let in has an email whose domain (after the
//!   last `@`, any case) is one of them and whose `email_verified` is not false; with
//!   `allowed_groups`, a user let in has one of them among the roles.

use http::HeaderValue;
use serde_json::{Map, Value};
use sessiongate::config::{OidcProviderConfig, Secret};
use sessiongate::fuzzing::oidc::{lookup, map};

use crate::support::{fields, text};

pub fn run(data: &[u8]) {
    let f = fields(data, 0, 5);
    if f.len() < 5 {
        return;
    }
    let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(f[4]) else {
        return;
    };
    let list = |b: &[u8]| -> Vec<String> {
        text(b)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_ascii_lowercase())
            .collect()
    };
    let user_claim = text(f[0]).into_owned();
    let roles_claim = (!f[1].is_empty()).then(|| text(f[1]).into_owned());
    let cfg = OidcProviderConfig {
        name: "fz".into(),
        display_name: "Fuzz".into(),
        issuer: "https://idp.example".into(),
        client_id: "gw".into(),
        client_secret: Secret::new(b"s".to_vec()),
        scopes: vec!["openid".into()],
        user_claim: user_claim.clone(),
        roles_claim: roles_claim.clone(),
        allowed_domains: list(f[2]),
        allowed_groups: text(f[3])
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        ca_file: None,
    };
    for name in [Some(&user_claim), roles_claim.as_ref()]
        .into_iter()
        .flatten()
    {
        assert_eq!(
            lookup(&claims, name),
            reference_lookup(&claims, name),
            "lookup {name:?}"
        );
    }
    let Ok(m) = map(&cfg, &claims) else {
        return;
    };
    assert!(header_safe(&m.user), "user {:?} is not header-safe", m.user);
    let claimed = match reference_lookup(&claims, &user_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        other => panic!("a user id from {other:?}"),
    };
    assert_eq!(m.user, claimed, "the user id is not the claim's value");
    let source: Vec<&str> = match roles_claim
        .as_ref()
        .and_then(|r| reference_lookup(&claims, r))
    {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for (i, r) in m.roles.iter().enumerate() {
        assert!(
            header_safe(r) && !r.contains(','),
            "role {r:?} is not header-safe"
        );
        assert!(
            source.contains(&r.as_str()),
            "role {r:?} is not the claim's"
        );
        assert!(!m.roles[..i].contains(r), "role {r:?} twice");
    }
    assert!(m.roles.len() <= 256, "{} roles", m.roles.len());
    let joined = m.roles.join(",");
    assert!(
        HeaderValue::from_str(&joined).is_ok(),
        "X-Auth-Roles {joined:?}"
    );
    if !m.roles.is_empty() {
        let back: Vec<&str> = joined.split(',').collect();
        assert_eq!(back, m.roles.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if !cfg.allowed_domains.is_empty() {
        let email = claims.get("email").and_then(Value::as_str).unwrap_or("");
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        assert!(
            domain.is_some_and(|d| cfg.allowed_domains.contains(&d)),
            "let in with email {email:?}"
        );
        let v = claims.get("email_verified");
        assert!(
            !matches!(v, Some(Value::Bool(false))) && v != Some(&Value::String("false".into())),
            "let in with email_verified {v:?}"
        );
    }
    if !cfg.allowed_groups.is_empty() {
        assert!(
            m.roles.iter().any(|r| cfg.allowed_groups.contains(r)),
            "let in with roles {:?}",
            m.roles
        );
    }
}

fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && HeaderValue::from_str(s).is_ok_and(|v| v.to_str().ok() == Some(s))
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && s.trim_matches([' ', '\t']) == s
}

fn reference_lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut cur: Option<&Value> = None;
    for (i, part) in name.split('.').enumerate() {
        let obj = if i == 0 {
            Some(claims)
        } else {
            cur?.as_object()
        };
        cur = Some(obj?.get(part)?);
    }
    cur
}
