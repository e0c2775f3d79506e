//! JWT helpers: read a token's claims without verifying it, wait for its `exp`, and forge
//! tokens (right key, `alg: none`) for the forgery tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The JSON payload of a JWT, without verifying anything.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token:?}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON payload")
}

pub fn jwt_header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("base64url header"))
        .expect("JSON header")
}

/// Sleep until the wall clock is past the token's `exp` by `margin`.
pub async fn sleep_past_exp(token: &str, margin: Duration) {
    let exp = jwt_claims(token)["exp"]
        .as_u64()
        .expect("token has a numeric exp");
    let target = UNIX_EPOCH + Duration::from_secs(exp) + margin;
    if let Ok(d) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

/// The HMAC key bytes the gateway uses for a secret given as a string: either the string's
/// bytes or its base64url decoding. Decided by checking a real token's signature.
pub fn hmac_key_for(secret: &str, real_token: &str) -> Vec<u8> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let mut candidates = vec![secret.as_bytes().to_vec()];
    if let Ok(b) = URL_SAFE_NO_PAD.decode(secret) {
        candidates.push(b);
    }
    for key in candidates {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        if decode::<Value>(real_token, &DecodingKey::from_secret(&key), &v).is_ok() {
            return key;
        }
    }
    panic!("the token is not HS256-signed with the configured secret (as text or base64url)");
}

/// Sign `claims` with HS256 and `key`, copying `kid` from `like`.
pub fn forge_hs256(like: &str, claims: &Value, key: &[u8]) -> String {
    let real = jsonwebtoken::decode_header(like).expect("real token header");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = real.kid;
    header.typ = real.typ;
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("encode forged token")
}

/// An unsigned (`alg: none`) token with these claims and the real token's `kid`.
pub fn forge_alg_none(like: &str, claims: &Value) -> String {
    let mut header = jwt_header(like);
    header["alg"] = Value::String("none".into());
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}
