//! OpenID Connect Back-Channel Logout 1.0, §2.6: validating a logout token.
//!
//! The token is a JWS from the provider: its signature is verified with a key from the
//! provider's JWKS (fetched again, within the cooldown, when it names one we do not have),
//! with an `alg` the provider advertises for ID tokens — never `none` and never a shared-secret
//! alg — by `openidconnect`'s JWK code; `crit` is refused. Then the claims: `iss` is the
//! provider's, `aud` holds our client id, `iat` is recent, `exp` (if any) is not past, `jti` is
//! present (its single use is the caller's, through the store), `events` holds the
//! back-channel-logout member as an object, `nonce` is absent, and `sub` or `sid` is there.

use base64::Engine;
use openidconnect::JsonWebKey;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use serde_json::Value;

use super::provider::Provider;
use crate::config::OidcProviderConfig;

pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this is refused; its `jti` is remembered this long (plus skew).
pub const MAX_AGE: u64 = 600;
const SKEW: u64 = 60;
const MAX_TOKEN: usize = 16 * 1024;

/// What a valid logout token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    pub iat: u64,
}

fn b64json(part: &str) -> Result<serde_json::Map<String, Value>, String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "not base64url".to_string())?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("not a JSON object".into()),
    }
}

/// The `iss` a token claims, unverified: which provider to verify it with.
pub fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    b64json(payload)
        .ok()?
        .get("iss")?
        .as_str()
        .map(str::to_string)
}

/// The token's claims once its signature and every rule above hold.
pub async fn verify(p: &Provider, token: &str, now: u64) -> Result<Logout, String> {
    if token.len() > MAX_TOKEN {
        return Err("too long".into());
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("not a compact JWS".into());
    };
    let header = b64json(h)?;
    if header.contains_key("crit") {
        return Err("crit header parameters are not supported".into());
    }
    if let Some(typ) = header.get("typ") {
        let typ = typ.as_str().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            typ.as_str(),
            "logout+jwt" | "application/logout+jwt" | "jwt"
        ) {
            return Err("typ is not logout+jwt".into());
        }
    }
    let alg: CoreJwsSigningAlgorithm = header
        .get("alg")
        .cloned()
        .and_then(|a| serde_json::from_value(a).ok())
        .ok_or("no usable alg")?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "signature is not base64url")?;
    let kid = header.get("kid").and_then(Value::as_str);
    let signing_input = format!("{h}.{c}");
    verify_signature(p, &alg, kid, signing_input.as_bytes(), &signature).await?;
    claims(&p.cfg, &b64json(c)?, now)
}

async fn verify_signature(
    p: &Provider,
    alg: &CoreJwsSigningAlgorithm,
    kid: Option<&str>,
    input: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let d = p.discovered().await.map_err(|e| e.to_string())?;
    if !d.meta.id_token_signing_alg_values_supported().contains(alg)
        || matches!(
            alg,
            CoreJwsSigningAlgorithm::None
                | CoreJwsSigningAlgorithm::HmacSha256
                | CoreJwsSigningAlgorithm::HmacSha384
                | CoreJwsSigningAlgorithm::HmacSha512
        )
    {
        return Err("alg not advertised by the provider for signatures".into());
    }
    let attempt = |keys: &openidconnect::JsonWebKeySet<CoreJsonWebKey>| -> Option<bool> {
        let candidates: Vec<&CoreJsonWebKey> = keys
            .keys()
            .iter()
            .filter(|k| match (kid, k.key_id()) {
                (Some(want), Some(have)) => have.as_str() == want,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            return None; // no such key: maybe the provider rotated
        }
        Some(
            candidates
                .iter()
                .any(|k| k.verify_signature(alg, input, sig).is_ok()),
        )
    };
    let verdict = match attempt(d.meta.jwks()) {
        Some(v) => v,
        None => {
            let newer = p.refetch_keys(&d).await;
            attempt(newer.meta.jwks()).unwrap_or(false)
        }
    };
    if verdict {
        Ok(())
    } else {
        Err("the signature does not verify with the provider's keys".into())
    }
}

/// The claim rules above, for the provider `p`, once the signature holds.
pub fn claims(
    p: &OidcProviderConfig,
    c: &serde_json::Map<String, Value>,
    now: u64,
) -> Result<Logout, String> {
    if c.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
        return Err("iss is not the provider's".into());
    }
    let ours = |v: &Value| v.as_str() == Some(p.client_id.as_str());
    let aud_ok = match c.get("aud") {
        Some(Value::Array(a)) => a.iter().any(ours),
        Some(v) => ours(v),
        None => false,
    };
    if !aud_ok {
        return Err("aud does not hold our client id".into());
    }
    let iat = c.get("iat").and_then(Value::as_u64).ok_or("no iat")?;
    if iat > now + SKEW || iat + MAX_AGE < now {
        return Err("iat is not recent".into());
    }
    if let Some(exp) = c.get("exp")
        && exp.as_u64().is_none_or(|e| e <= now)
    {
        return Err("expired".into());
    }
    let jti = c
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or("no jti")?;
    let event_ok = c
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(EVENT))
        .is_some_and(Value::is_object);
    if !event_ok {
        return Err("events lacks the back-channel logout event".into());
    }
    if c.contains_key("nonce") {
        return Err("a logout token must not carry a nonce".into());
    }
    let text = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string)
    };
    let (sub, sid) = (text("sub"), text("sid"));
    if sub.is_none() && sid.is_none() {
        return Err("neither sub nor sid".into());
    }
    Ok(Logout {
        sub,
        sid,
        jti: jti.to_string(),
        iat,
    })
}
