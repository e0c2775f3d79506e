//! The identity assertion (`X-Auth-Assertion`, EdDSA JWT) and its keys at `/.auth/jwks.json`.
//!
//! Attacks covered:
//! - an app trusting identity headers that any host on its network could send: the assertion
//!   must verify against the gateway's published key, for the configured audience and issuer,
//!   and a tampered one must not;
//! - a client sending its own `X-Auth-Assertion` (signed with its own key) to a public or a
//!   protected route;
//! - a key rotation that breaks apps still holding assertions signed with the previous key
//!   (both keys published), and a JWKS that leaks private key material;
//! - a long-lived assertion (at most 5 minutes) that can be replayed.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::harness::*;

/// A fresh Ed25519 key as PKCS#8 PEM in `dir`: `(path, x)` with `x` the base64url public key.
fn ed25519_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    use base64::Engine as _;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    let path = dir.join(name);
    std::fs::write(&path, kp.serialize_pem()).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key_raw());
    (path, x)
}

fn toml_path(p: &std::path::Path) -> String {
    format!("\"{}\"", p.display())
}

async fn jwks(gw: &Gateway) -> Vec<Value> {
    let resp = gw.get("/.auth/jwks.json").send().await.unwrap();
    assert_eq!(resp.status(), 200, "the JWKS needs no session");
    let v: Value = resp.json().await.unwrap();
    let keys = v["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    for k in &keys {
        assert_eq!(k["kty"], "OKP", "{k}");
        assert_eq!(k["crv"], "Ed25519", "{k}");
        assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        assert!(k["x"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        assert!(
            k.get("d").is_none(),
            "the JWKS publishes a private key: {k}"
        );
    }
    keys
}

/// Verify `token` against the JWKS key its `kid` names; the claims, or the error.
fn verify(
    token: &str,
    keys: &[Value],
    audience: &str,
    issuer: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, Algorithm::EdDSA, "pinned algorithm");
    let kid = header.kid.expect("the assertion names its key (kid)");
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS: {keys:?}"));
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap())?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[audience]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
    v.leeway = 0;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &v)?.claims)
}

/// The one assertion and session handle the app received for `cookie`.
async fn assertion_for(gw: &Gateway, path: &str, cookie: &str) -> (String, String) {
    let echo = Echo::from(gw.get_with(path, cookie).await).await;
    let assertions = echo.header_all("x-auth-assertion");
    assert_eq!(assertions.len(), 1, "one assertion: {assertions:?}");
    let handle = echo.header("x-auth-session").expect("x-auth-session");
    (assertions[0].clone(), handle.to_string())
}

#[tokio::test]
async fn assertion_verifies_against_the_published_jwks() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (key, x) = ed25519_key(keys_dir.path(), "assertion.pem");
    let gw = Gateway::start(
        GatewayConfig::new()
            .set("keys", "assertion_key_file", &toml_path(&key))
            .set("keys", "assertion_audience", "\"legacy-app\"")
            .set("keys", "assertion_ttl", "\"90s\""),
    )
    .await;
    let s = gw.login_alice().await;
    let (token, handle) = assertion_for(&gw, "/private/a", &s.cookie_header()).await;
    let keys = jwks(&gw).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        keys[0]["x"],
        x.as_str(),
        "the JWKS publishes the configured key"
    );

    let now = now_unix();
    let c = verify(&token, &keys, "legacy-app", &gw.origin())
        .unwrap_or_else(|e| panic!("the assertion does not verify against the JWKS: {e}"));
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["roles"], json!(["admin", "dev"]));
    assert_eq!(
        c["sid"],
        handle.as_str(),
        "sid is the x-auth-session handle"
    );
    let sid = jwt_claims(&s.access)["sid"].clone();
    assert_ne!(c["sid"], sid, "never the session id");
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert!(iat <= now + 2 && iat + 60 >= now, "iat {iat} vs now {now}");
    assert_eq!(exp - iat, 90, "assertion_ttl = 90s");

    // The checks an app relies on can fail.
    assert!(
        verify(&token, &keys, "upstream", &gw.origin()).is_err(),
        "the assertion verifies for another audience"
    );
    assert!(
        verify(&token, &keys, "legacy-app", "https://evil.example").is_err(),
        "the assertion verifies for another issuer"
    );
    use base64::Engine as _;
    let mut forged_claims = c.clone();
    forged_claims["sub"] = json!("bob");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged_claims).unwrap()),
        parts[2]
    );
    assert!(
        verify(&tampered, &keys, "legacy-app", &gw.origin()).is_err(),
        "a tampered assertion verifies"
    );

    // Another user, another assertion.
    let b = gw.login("bob", BOB_PASSWORD).await;
    let (bob_token, _) = assertion_for(&gw, "/private/b", &b.cookie_header()).await;
    let cb = verify(&bob_token, &keys, "legacy-app", &gw.origin()).unwrap();
    assert_eq!(cb["sub"], "bob");
    assert_eq!(cb["roles"], json!(["dev"]));
}

#[tokio::test]
async fn previous_assertion_key_stays_published_after_rotation() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (current, x_current) = ed25519_key(keys_dir.path(), "current.pem");
    let (previous, x_previous) = ed25519_key(keys_dir.path(), "previous.pem");
    let gw = Gateway::start(
        GatewayConfig::new()
            .set("keys", "assertion_key_file", &toml_path(&current))
            .set("keys", "assertion_previous_key_file", &toml_path(&previous)),
    )
    .await;
    let keys = jwks(&gw).await;
    let xs: Vec<&str> = keys.iter().filter_map(|k| k["x"].as_str()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(xs.contains(&x_current.as_str()) && xs.contains(&x_previous.as_str()));
    assert_ne!(keys[0]["kid"], keys[1]["kid"], "distinct kids: {keys:?}");

    let s = gw.login_alice().await;
    let (token, _) = assertion_for(&gw, "/private/a", &s.cookie_header()).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let signing = keys.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    assert_eq!(
        signing["x"],
        x_current.as_str(),
        "new assertions are signed with the current key"
    );
    // Defaults: audience "upstream", lifetime 2 minutes.
    let c = verify(&token, &keys, "upstream", &gw.origin()).unwrap();
    let lifetime = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 120, "assertion_ttl defaults to 2m");
}

#[tokio::test]
async fn client_sent_assertion_never_reaches_the_app() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (key, _) = ed25519_key(keys_dir.path(), "assertion.pem");
    let gw =
        Gateway::start(GatewayConfig::new().set("keys", "assertion_key_file", &toml_path(&key)))
            .await;
    // The attacker signs an assertion with a key of their own, claiming to be an admin.
    let attacker = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = jwks(&gw).await[0]["kid"].as_str().map(str::to_string);
    let now = now_unix();
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"iss": gw.origin(), "aud": "upstream", "sub": "root", "roles": ["admin"],
                "sid": "x", "iat": now, "exp": now + 60}),
        &jsonwebtoken::EncodingKey::from_ed_der(&attacker.serialize_der()),
    )
    .unwrap();

    let resp = gw
        .get("/public/page")
        .header("x-auth-assertion", &forged)
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert!(
        echo.header_all("x-auth-assertion").is_empty(),
        "a client's assertion reached the app on a public route"
    );

    let s = gw.login("bob", BOB_PASSWORD).await;
    let resp = gw
        .get("/private/page")
        .header("cookie", s.cookie_header())
        .header("x-auth-assertion", &forged)
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    let got = echo.header_all("x-auth-assertion");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ne!(got[0], forged, "a client's assertion reached the app");
    let keys = jwks(&gw).await;
    let c = verify(&got[0], &keys, "upstream", &gw.origin()).unwrap();
    assert_eq!(c["sub"], "bob");
    assert!(
        verify(&forged, &keys, "upstream", &gw.origin()).is_err(),
        "the attacker's own signature verifies against the gateway's JWKS"
    );
}
