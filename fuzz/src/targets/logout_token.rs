//! Back-channel logout tokens (`oidc::logout_token`): the structure read before a signature
//! is checked and the claim rules after. The first byte picks what the rest is:
//! - 0: a token, for `claimed_issuer` (which provider to verify it with);
//! - 1: the claims of a token whose signature held (a JSON object), for the claim checks at a
//!   fixed time, for a provider with issuer `https://idp.example` and client id `gw`.
//!
//! Oracle:
//! - `claimed_issuer` is the `iss` string of the token's second part read as base64url JSON
//!   (a reference decoding here), and nothing when there is none;
//! - a logout token is accepted only when OpenID Connect Back-Channel Logout 1.0 §2.6 says:
//!   `iss` is the provider's, `aud` is or holds our client id, `iat` is recent (at most 600 s
//!   old, 60 s ahead), an `exp` is not past, a `jti` of 1 to 256 bytes, `events` holds the
//!   back-channel logout event as an object, no `nonce`, and a `sub` or a `sid` (1 to 256
//!   bytes) — and what it names is what the claims say.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sessiongate::config::{OidcProviderConfig, Secret};
use sessiongate::fuzzing::oidc::{EVENT, MAX_AGE, claimed_issuer, claims};

use crate::support::text;

const NOW: u64 = 1_750_000_000;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let token = text(rest);
        let want = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .and_then(|m| m.get("iss").and_then(Value::as_str).map(String::from));
        assert_eq!(claimed_issuer(&token), want, "{token:?}");
        return;
    }
    let Ok(c) = serde_json::from_slice::<Map<String, Value>>(rest) else {
        return;
    };
    let cfg = OidcProviderConfig {
        name: "fz".into(),
        display_name: "Fuzz".into(),
        issuer: "https://idp.example".into(),
        client_id: "gw".into(),
        client_secret: Secret::new(b"s".to_vec()),
        scopes: vec!["openid".into()],
        user_claim: "sub".into(),
        roles_claim: None,
        allowed_domains: Vec::new(),
        allowed_groups: Vec::new(),
        ca_file: None,
    };
    let Ok(l) = claims(&cfg, &c, NOW) else {
        return;
    };
    let what = Value::Object(c.clone()).to_string();
    assert_eq!(
        c.get("iss").and_then(Value::as_str),
        Some("https://idp.example"),
        "{what}"
    );
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == "gw",
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some("gw")),
        _ => false,
    };
    assert!(aud_ok, "{what}: aud");
    let iat = c.get("iat").and_then(Value::as_u64);
    assert!(
        iat.is_some_and(|i| (NOW - MAX_AGE..=NOW + 60).contains(&i)),
        "{what}: iat"
    );
    if let Some(exp) = c.get("exp") {
        assert!(exp.as_u64().is_some_and(|e| e > NOW), "{what}: exp");
    }
    let text_claim = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(String::from)
    };
    assert_eq!(Some(l.jti.clone()), text_claim("jti"), "{what}: jti");
    let event = c
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(EVENT));
    assert!(event.is_some_and(Value::is_object), "{what}: events");
    assert!(!c.contains_key("nonce"), "{what}: nonce");
    assert!(
        l.sub.is_some() || l.sid.is_some(),
        "{what}: neither sub nor sid"
    );
    assert_eq!(l.sub, text_claim("sub"), "{what}: sub");
    assert_eq!(l.sid, text_claim("sid"), "{what}: sid");
    assert_eq!(Some(l.iat), iat);
}
