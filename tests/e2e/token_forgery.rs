//! Forged, confused and stale access tokens on a protected route.
//!
//! Attacks covered (each presented as the `__Host-sg-access` cookie and as
//! `Authorization: Bearer`, never with a refresh cookie, so nothing can be refreshed):
//! - signature with another secret (key guessing / a token from another deployment);
//! - `alg: none` (unsigned token, RFC 8725 §2.1);
//! - algorithm substitution: HS512 with the real secret while HS256 is pinned;
//! - an expired token (`exp` in the past, well beyond any sane leeway);
//! - a token not yet valid (`nbf` in the future);
//! - token confusion: `typ = refresh` signed with the access secret, and a real refresh token
//!   presented as an access token;
//! - wrong issuer and wrong audience with a valid signature;
//! - header parameters the gateway does not set, under a valid signature: `crit` naming an
//!   extension (RFC 7515 §4.1.11), `b64: false`, key-location hints (`jku`, `x5u`, `jwk`),
//!   `zip`;
//! - garbage.
//!
//! Every test first proves that the genuine token is accepted on the same path, so a refusal
//! means the gateway looked at the token, not that the route is broken.

use serde_json::{Value, json};

use crate::harness::*;

struct Ctx {
    gw: Gateway,
    access: String,
    refresh: String,
    key: Vec<u8>,
}

async fn setup() -> Ctx {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let key = hmac_key_for(&gw.access_secret, &s.access);
    // Control: the genuine token works, both ways.
    let echo = Echo::from(gw.get_with("/private/control", &s.access_only()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    let resp = gw
        .get("/private/control")
        .header("authorization", format!("Bearer {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(Echo::from(resp).await.header("x-auth-user"), Some("alice"));
    Ctx {
        gw,
        access: s.access,
        refresh: s.refresh,
        key,
    }
}

impl Ctx {
    fn claims(&self) -> Value {
        jwt_claims(&self.access)
    }

    async fn assert_refused(&self, token: &str, what: &str) {
        let path = "/private/forged";
        let by_cookie = self
            .gw
            .get(path)
            .header("accept", "application/json")
            .header("cookie", format!("{ACCESS_COOKIE}={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(by_cookie.status(), 401, "{what} as cookie");
        let by_bearer = self
            .gw
            .get(path)
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(by_bearer.status(), 401, "{what} as bearer");
        let me = self
            .gw
            .get_with("/.auth/me", &format!("{ACCESS_COOKIE}={token}"))
            .await;
        assert_eq!(me.status(), 401, "{what} on /.auth/me");
        self.gw.assert_upstream_never_saw(path).await;
    }
}

#[tokio::test]
async fn access_token_signed_with_another_secret_is_refused() {
    let ctx = setup().await;
    let other = random_secret();
    let token = forge_hs256(&ctx.access, &ctx.claims(), other.as_bytes());
    ctx.assert_refused(&token, "signed with another secret")
        .await;
    let token = forge_hs256(&ctx.access, &ctx.claims(), ctx.gw.refresh_secret.as_bytes());
    ctx.assert_refused(&token, "signed with the refresh secret")
        .await;
}

#[tokio::test]
async fn unsigned_alg_none_token_is_refused() {
    let ctx = setup().await;
    ctx.assert_refused(&forge_alg_none(&ctx.access, &ctx.claims()), "alg none")
        .await;
    // Same, keeping the genuine signature on the end.
    let sig = ctx.access.rsplit('.').next().unwrap();
    let none = forge_alg_none(&ctx.access, &ctx.claims());
    ctx.assert_refused(&format!("{none}{sig}"), "alg none with a signature")
        .await;
}

#[tokio::test]
async fn algorithm_other_than_the_pinned_one_is_refused() {
    let ctx = setup().await;
    let real = jsonwebtoken::decode_header(&ctx.access).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    header.kid = real.kid;
    let token = jsonwebtoken::encode(
        &header,
        &ctx.claims(),
        &jsonwebtoken::EncodingKey::from_secret(&ctx.key),
    )
    .unwrap();
    ctx.assert_refused(&token, "HS512 with the real secret")
        .await;
}

#[tokio::test]
async fn expired_access_token_is_refused() {
    let ctx = setup().await;
    let now = now_unix();
    let mut c = ctx.claims();
    c["iat"] = json!(now - 7200);
    c["nbf"] = json!(now - 7200);
    c["exp"] = json!(now - 3600);
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "expired")
        .await;
}

#[tokio::test]
async fn not_yet_valid_access_token_is_refused() {
    let ctx = setup().await;
    let now = now_unix();
    let mut c = ctx.claims();
    c["iat"] = json!(now + 3600);
    c["nbf"] = json!(now + 3600);
    c["exp"] = json!(now + 7200);
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "nbf in the future")
        .await;
}

#[tokio::test]
async fn refresh_typed_token_signed_with_access_secret_is_refused() {
    let ctx = setup().await;
    let mut c = ctx.claims();
    c["typ"] = json!("refresh");
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "typ=refresh")
        .await;
    let mut c = ctx.claims();
    c.as_object_mut().unwrap().remove("typ");
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "no typ")
        .await;
}

#[tokio::test]
async fn refresh_token_presented_as_access_token_is_refused() {
    let ctx = setup().await;
    let refresh = ctx.refresh.clone();
    ctx.assert_refused(&refresh, "refresh token as access")
        .await;
}

#[tokio::test]
async fn access_token_for_another_issuer_or_audience_is_refused() {
    let ctx = setup().await;
    let mut c = ctx.claims();
    c["iss"] = json!("https://evil.example");
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "foreign iss")
        .await;
    let mut c = ctx.claims();
    c["aud"] = json!("another-service");
    ctx.assert_refused(&forge_hs256(&ctx.access, &c, &ctx.key), "foreign aud")
        .await;
}

#[tokio::test]
async fn garbage_token_is_refused() {
    let ctx = setup().await;
    for junk in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "....",
        &ctx.access[..ctx.access.len() - 3],
    ] {
        ctx.assert_refused(junk, &format!("garbage {junk:?}")).await;
    }
    // A genuine token with one flipped character in its signature.
    let mut bytes = ctx.access.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    ctx.assert_refused(&tampered, "tampered signature").await;
    // Another subject under the genuine signature.
    let parts: Vec<&str> = ctx.access.split('.').collect();
    let mut c = ctx.claims();
    c["sub"] = json!("bob");
    let forged_payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    ctx.assert_refused(
        &format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        "payload swapped under a genuine signature",
    )
    .await;
}

/// Sign `claims` under `key` (HS256) with exactly this protected header.
fn sign_with_header(header: &Value, claims: &Value, key: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn signed_tokens_with_unexpected_header_parameters_are_refused() {
    let ctx = setup().await;
    let real = jwt_header(&ctx.access);
    let control = sign_with_header(&real, &ctx.claims(), &ctx.key);
    let echo = Echo::from(
        ctx.gw
            .get_with("/private/c", &format!("{ACCESS_COOKIE}={control}"))
            .await,
    )
    .await;
    assert_eq!(
        echo.header("x-auth-user"),
        Some("alice"),
        "control: same header, re-signed"
    );
    for (what, extra) in [
        ("crit exp", json!({"crit": ["exp"], "exp": 1})),
        ("crit b64", json!({"crit": ["b64"], "b64": false})),
        ("jku", json!({"jku": "https://evil.example/jwks.json"})),
        ("x5u", json!({"x5u": "https://evil.example/cert.pem"})),
        ("jwk", json!({"jwk": {"kty": "oct", "k": "AAAA"}})),
        ("zip", json!({"zip": "DEF"})),
    ] {
        let mut header = real.clone();
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        let token = sign_with_header(&header, &ctx.claims(), &ctx.key);
        ctx.assert_refused(&token, what).await;
    }
}
