//! Checks of the OpenID provider the OIDC tests run against (`tests/oidc-provider`, driven by
//! `support/oidc.rs`), independent of the gateway. The gateway's OIDC tests are only as good
//! as the provider under them; each test here defends against a harness that lies:
//!
//! - a provider that is not the protocol the gateway will meet: the authorization-code flow
//!   with PKCE (S256 only, required), `state` echoed, `iss` in the authorization response
//!   (RFC 9207), an ID token with `sub`, `sid`, `aud`, `iss`, `nonce` signed by a key of the
//!   JWKS, claims from userinfo only (as many real providers do), codes single-use;
//! - a login form that lets anyone in (a wrong password must not reach the callback);
//! - refresh that keeps working for a user the provider no longer has;
//! - a tamper mode that silently does nothing (a gateway that checks no `aud` would pass its
//!   "wrong aud" test) or that breaks the signature where only a claim should be wrong (a
//!   gateway that checks only signatures would pass its claim tests);
//! - logout tokens, key rotation and session ends that do not do what the tests rely on (a
//!   logout token the JWKS does not verify, a rotation that leaves the JWKS as it was, a
//!   back-channel POST that is never made);
//! - a provider process that outlives its test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::harness::*;

const CLIENT: &str = "selftest-rp";
const SECRET: &str = "selftest-rp-secret-0123456789abcdefghijklmnop";
const CALLBACK: &str = "https://localhost/cb";
const SCOPE: &str = "openid email profile groups";

fn alice() -> IdpUser {
    IdpUser::new("sub-alice", "alice", "alice-password").groups(&["staff", "admins"])
}

fn is_callback(url: &str) -> bool {
    url.starts_with(CALLBACK)
}

async fn provider_with(
    clients: Vec<IdpClient>,
    trust_ca: Option<std::path::PathBuf>,
) -> OidcProvider {
    let idp = OidcProvider::launch().await;
    let mut setup = IdpSetup::new(
        clients,
        vec![alice(), IdpUser::new("sub-bob", "bob", "bob-pw")],
    );
    setup.trust_ca = trust_ca;
    idp.configure(&setup).await;
    idp
}

async fn provider() -> OidcProvider {
    provider_with(vec![IdpClient::new(CLIENT, SECRET, CALLBACK)], None).await
}

/// One authorization request as a relying party sends it.
struct Authorize {
    client: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    pkce: Pkce,
}

impl Authorize {
    fn new() -> Authorize {
        Authorize::for_client(CLIENT)
    }

    fn for_client(client: &str) -> Authorize {
        Authorize::to(client, CALLBACK)
    }

    fn to(client: &str, redirect_uri: &str) -> Authorize {
        Authorize {
            client: client.into(),
            redirect_uri: redirect_uri.into(),
            state: random_secret(),
            nonce: random_secret(),
            pkce: Pkce::new(),
        }
    }

    async fn url(&self, idp: &OidcProvider, extra: &[(&str, &str)]) -> String {
        let d = idp.discovery().await;
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", SCOPE),
            ("state", self.state.as_str()),
            ("nonce", self.nonce.as_str()),
            ("code_challenge", self.pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        url::Url::parse_with_params(d["authorization_endpoint"].as_str().unwrap(), &params)
            .unwrap()
            .to_string()
    }

    /// Walk the flow in `b` up to the redirect to the callback.
    async fn run(
        &self,
        idp: &OidcProvider,
        b: &reqwest::Client,
        login: Option<(&str, &str)>,
    ) -> Hops {
        let url = self.url(idp, &[]).await;
        let at_callback = |u: &str| u.starts_with(&self.redirect_uri);
        follow(b, &url, login, Some(&at_callback)).await
    }
}

/// A token-endpoint request with client_secret_basic: its status and JSON.
async fn token(idp: &OidcProvider, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    let d = idp.discovery().await;
    let resp = idp
        .https_client()
        .post(d["token_endpoint"].as_str().unwrap())
        .basic_auth(client.0, Some(client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencode(form))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn exchange(idp: &OidcProvider, a: &Authorize, code: &str, secret: &str) -> (u16, Value) {
    token(
        idp,
        (&a.client, secret),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &a.redirect_uri),
            ("code_verifier", &a.pkce.verifier),
        ],
    )
    .await
}

async fn refresh(idp: &OidcProvider, refresh_token: &str) -> (u16, Value) {
    token(
        idp,
        (CLIENT, SECRET),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn userinfo(idp: &OidcProvider, access_token: &str) -> (u16, Value) {
    let d = idp.discovery().await;
    let resp = idp
        .https_client()
        .get(d["userinfo_endpoint"].as_str().unwrap())
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A whole flow (login in `b` when asked) and the code exchange: the token response.
async fn tokens(idp: &OidcProvider, b: &reqwest::Client, a: &Authorize) -> Value {
    let hops = a.run(idp, b, Some(("alice", "alice-password"))).await;
    let code = hops
        .param("code")
        .unwrap_or_else(|| panic!("no code at the callback: {hops:#?}\n{}", idp.stderr_text()));
    let (status, body) = exchange(idp, a, &code, SECRET).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The provider answers 503 before it is configured (a test that forgot to configure it gets
/// no half-made provider), then its discovery names the issuer and what the gateway's tests
/// rely on: `iss` in authorization responses, S256 only, back-channel logout with `sid`, an
/// end-session endpoint, RS256 only for ID tokens (so `hs256` is an alg it does not advertise).
#[tokio::test]
async fn provider_answers_503_until_configured_then_discovery_names_its_issuer() {
    let idp = OidcProvider::launch().await;
    assert!(idp.issuer().starts_with("https://127.0.0.1:"));
    let before = idp
        .https_client()
        .get(format!("{}/.well-known/openid-configuration", idp.issuer()))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status().as_u16(), 503);

    idp.configure(&IdpSetup::new(
        vec![IdpClient::new(CLIENT, SECRET, CALLBACK)],
        vec![alice()],
    ))
    .await;
    let d = idp.discovery().await;
    assert_eq!(d["issuer"], idp.issuer());
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert!(
        d["end_session_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(idp.issuer())
    );
    assert!(
        d["revocation_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(idp.issuer())
    );
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(
            d["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(scope)),
            "{d}"
        );
    }
    let jwks = idp.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert!(
        keys[0].get("d").is_none(),
        "the JWKS must not publish the private key"
    );

    // Bad control requests are refused with a reason, and change nothing.
    let (status, body) = idp
        .try_control(
            reqwest::Method::POST,
            "/configure",
            Some(&json!({"clients": []})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(idp.discovery().await["issuer"], idp.issuer());
}

/// The whole code flow through the browser-like client (its cookie jar trusting the gateway's
/// and the provider's CAs), for the gateway as a client ([`IdpClient::for_gateway`]): the login
/// form filled, consent given without asking, the redirect to the gateway's callback with
/// `code`, the same `state` and `iss` (RFC 9207); the code exchanged with client_secret_basic
/// and the PKCE verifier for an ID token signed by a key of the JWKS, whose `iss`, `aud`,
/// `sub`, `sid`, `nonce` are right and which carries no profile claims (those come from
/// userinfo); the code works once. A client without a back-channel URI gets no `sid`
/// (oidc-provider adds it only for `backchannel_logout_session_required`).
#[tokio::test]
async fn code_flow_with_pkce_reaches_the_callback_and_the_code_buys_a_verifiable_id_token() {
    let idp = OidcProvider::launch().await;
    let gw = Gateway::start_default().await;
    let gateway = IdpClient::for_gateway(&gw, "gateway", SECRET);
    assert_eq!(gateway.redirect_uris, vec![OIDC_CALLBACK_URI.to_string()]);
    let mut setup = IdpSetup::new(
        vec![gateway, IdpClient::new(CLIENT, SECRET, CALLBACK)],
        vec![alice()],
    );
    setup.trust_ca = Some(gw.ca_file());
    idp.configure(&setup).await;
    let b = browser(&gw, &idp);
    let a = Authorize::to("gateway", OIDC_CALLBACK_URI);
    let hops = a.run(&idp, &b, Some(("alice", "alice-password"))).await;
    assert!(
        hops.stopped_at
            .as_deref()
            .is_some_and(|u| u.starts_with(OIDC_CALLBACK_URI)),
        "{hops:#?}"
    );
    assert!(
        hops.hops
            .iter()
            .any(|h| h.method == "POST" && h.url.contains("/interaction/")),
        "the login form was not posted: {hops:#?}"
    );
    assert_eq!(hops.param("state").as_deref(), Some(a.state.as_str()));
    assert_eq!(hops.param("iss").as_deref(), Some(idp.issuer()));
    let code = hops.param("code").expect("code");

    // A wrong client secret buys nothing (and does not use the code up).
    let (status, body) = exchange(&idp, &a, &code, "not-the-secret").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");

    let (status, t) = exchange(&idp, &a, &code, SECRET).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert!(
        t["refresh_token"].is_string(),
        "no refresh token without offline_access: {t}"
    );
    let id_token = t["id_token"].as_str().unwrap();
    let claims = verify_with_jwks(id_token, &idp.jwks().await).expect("ID token verifies");
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], "gateway");
    assert_eq!(claims["sub"], "sub-alice");
    assert_eq!(claims["nonce"], a.nonce.as_str());
    assert!(
        claims["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{claims}"
    );
    let now = now_unix();
    assert!(claims["iat"].as_u64().unwrap() <= now + 1);
    assert!(claims["exp"].as_u64().unwrap() > now);
    for absent in ["email", "groups", "name"] {
        assert!(
            claims.get(absent).is_none(),
            "{absent} in the ID token: {claims}"
        );
    }

    let (status, info) = userinfo(&idp, t["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], "sub-alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["groups"], json!(["staff", "admins"]));

    // A code is single-use.
    let (status, body) = exchange(&idp, &a, &code, SECRET).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // The provider remembers the login: a second flow in the same browser needs none, and a
    // client with no back-channel URI gets an ID token without `sid`.
    let other = Authorize::new();
    let again = other.run(&idp, &b, None).await;
    let code = again.param("code").unwrap_or_else(|| panic!("{again:#?}"));
    let (status, t) = exchange(&idp, &other, &code, SECRET).await;
    assert_eq!(status, 200, "{t}");
    let claims = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], CLIENT);
    assert!(claims.get("sid").is_none(), "{claims}");
}

/// PKCE is required and S256 only: no challenge, or `plain`, comes back to the callback as an
/// error (never a code); a code exchanged with the wrong verifier, or none, is refused.
#[tokio::test]
async fn pkce_is_required_and_a_wrong_verifier_is_refused() {
    let idp = provider().await;
    let b = idp.browser();
    let a = Authorize::new();
    for extra in [
        vec![("code_challenge", ""), ("code_challenge_method", "")],
        vec![("code_challenge_method", "plain")],
        vec![
            ("code_challenge", a.pkce.verifier.as_str()),
            ("code_challenge_method", "plain"),
        ],
    ] {
        let url = a.url(&idp, &extra).await;
        let hops = follow(
            &b,
            &url,
            Some(("alice", "alice-password")),
            Some(&is_callback),
        )
        .await;
        assert!(
            hops.param("code").is_none(),
            "{extra:?} got a code: {hops:#?}"
        );
        assert_eq!(
            hops.param("error").as_deref(),
            Some("invalid_request"),
            "{extra:?}: {hops:#?}"
        );
    }
    let hops = a.run(&idp, &b, Some(("alice", "alice-password"))).await;
    let code = hops.param("code").expect("code");
    for verifier in [
        Pkce::new().verifier,
        String::new(),
        a.pkce.challenge.clone(),
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
        ];
        if !verifier.is_empty() {
            form.push(("code_verifier", verifier.as_str()));
        }
        let (status, body) = token(&idp, (CLIENT, SECRET), &form).await;
        assert_eq!(status, 400, "verifier {verifier:?}: {body}");
        assert!(
            ["invalid_grant", "invalid_request"].contains(&body["error"].as_str().unwrap()),
            "{body}"
        );
    }
}

/// A wrong password (or an unknown login, or the right password of another user) shows the
/// form again with 200 and an error, and never reaches the callback; the right one then does.
#[tokio::test]
async fn wrong_password_shows_the_form_again_and_reaches_no_callback() {
    let idp = provider().await;
    let b = idp.browser();
    for (login, password) in [
        ("alice", "wrong"),
        ("alice", "ALICE-PASSWORD"),
        ("alice", ""),
        ("nobody", "alice-password"),
        ("alice", "bob-pw"),
        ("Alice", "alice-password"),
    ] {
        let hops = Authorize::new()
            .run(&idp, &b, Some((login, password)))
            .await;
        assert!(
            hops.stopped_at.is_none(),
            "{login}/{password} got in: {hops:#?}"
        );
        assert_eq!(hops.status, 200);
        assert!(hops.is_login_form(), "{}", hops.body);
        assert!(
            hops.body.contains("Invalid login or password"),
            "{}",
            hops.body
        );
    }
    // Without credentials the walk stops at the form.
    let hops = Authorize::new().run(&idp, &b, None).await;
    assert!(
        hops.is_login_form() && !hops.body.contains("Invalid"),
        "{}",
        hops.body
    );
    let hops = Authorize::new()
        .run(&idp, &b, Some(("bob", "bob-pw")))
        .await;
    assert!(hops.param("code").is_some(), "{hops:#?}");
}

/// Refresh works for a client with the grant (no `offline_access` asked), a changed user shows
/// in the next userinfo, and once the user is gone the refresh token fails with
/// `invalid_grant` and the access token buys no userinfo.
#[tokio::test]
async fn refresh_follows_the_user_and_fails_once_the_user_is_gone() {
    let idp = provider().await;
    let b = idp.browser();
    let t = tokens(&idp, &b, &Authorize::new()).await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();

    let (status, r) = refresh(&idp, &rt).await;
    assert_eq!(status, 200, "{r}");
    let id = verify_with_jwks(r["id_token"].as_str().unwrap(), &idp.jwks().await).unwrap();
    assert_eq!(id["sub"], "sub-alice");
    let rt = r["refresh_token"].as_str().unwrap_or(&rt).to_string();

    idp.put_user(
        &alice()
            .groups(&["staff"])
            .claim("name", json!("Alice Renamed")),
    )
    .await;
    let (status, info) = userinfo(&idp, r["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["groups"], json!(["staff"]));
    assert_eq!(info["name"], "Alice Renamed");

    idp.delete_user("sub-alice").await;
    let (status, body) = refresh(&idp, &rt).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, _) = userinfo(&idp, r["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "userinfo for a user who is gone");

    // Back again (a user can return): a fresh login works; the old refresh token stays dead
    // only if the provider consumed it, so it is not asserted either way.
    idp.put_user(&alice()).await;
    let t = tokens(&idp, &b, &Authorize::new()).await;
    assert!(t["id_token"].is_string());
}

/// Each tamper mode changes the ID token of the token response exactly as documented: the
/// claim modes stay signed by the provider's real key (only a claim check can catch them),
/// `bad_signature` keeps every claim right, `hs256` and `foreign_key` do not verify with the
/// JWKS. `none` gives real tokens again; an unknown mode is refused.
#[tokio::test]
async fn each_tamper_mode_alters_the_id_token_as_documented() {
    let idp = provider().await;
    let b = idp.browser();
    let jwks = idp.jwks().await;
    let kids: Vec<Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    let now = now_unix();
    for mode in [
        "none",
        "bad_signature",
        "wrong_aud",
        "wrong_iss",
        "wrong_nonce",
        "expired",
        "future_iat",
        "hs256",
        "foreign_key",
        "none",
    ] {
        idp.tamper(mode).await;
        let a = Authorize::new();
        let t = tokens(&idp, &b, &a).await;
        let token = t["id_token"].as_str().unwrap();
        let header = jwt_header(token);
        let claims = jwt_claims(token);
        let verified = verify_with_jwks(token, &jwks);
        let right = |name: &str| match name {
            "iss" => claims["iss"] == idp.issuer(),
            "aud" => claims["aud"] == CLIENT,
            "nonce" => claims["nonce"] == a.nonce.as_str(),
            "sub" => claims["sub"] == "sub-alice",
            "exp" => claims["exp"].as_u64().unwrap() > now,
            "iat" => claims["iat"].as_u64().unwrap() <= now_unix() + 1,
            _ => unreachable!(),
        };
        let wrong: Vec<&str> = ["iss", "aud", "nonce", "sub", "exp", "iat"]
            .into_iter()
            .filter(|c| !right(c))
            .collect();
        let expect_wrong: &[&str] = match mode {
            "wrong_aud" => &["aud"],
            "wrong_iss" => &["iss"],
            "wrong_nonce" => &["nonce"],
            "expired" => &["exp"],
            "future_iat" => &["iat"],
            _ => &[],
        };
        assert_eq!(wrong, expect_wrong, "{mode}: {claims}");
        match mode {
            "bad_signature" => {
                assert!(verified.is_err(), "{mode} still verifies");
                assert_eq!(header["alg"], "RS256");
                assert!(kids.contains(&header["kid"]));
            }
            "hs256" => {
                assert_eq!(header["alg"], "HS256");
                assert!(verified.is_err(), "{mode} verifies with the JWKS");
                verify_hs256(token, SECRET.as_bytes()).expect("HS256 with the client secret");
            }
            "foreign_key" => {
                assert_eq!(header["alg"], "RS256");
                assert!(!kids.contains(&header["kid"]), "{header}");
                assert!(verified.is_err(), "{mode} verifies with the JWKS");
            }
            _ => {
                let v = verified.unwrap_or_else(|e| panic!("{mode}: does not verify ({e})"));
                assert_eq!(v, claims);
                assert!(kids.contains(&header["kid"]));
            }
        }
        if mode == "future_iat" {
            assert!(claims["iat"].as_u64().unwrap() > now + 3000, "{claims}");
            assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
        }
    }

    // Tampering reaches refreshed ID tokens too, and `claims` re-signs any change.
    idp.tamper_with(&json!({"mode": "claims", "claims": {"nonce": null, "azp": "someone"}}))
        .await;
    let t = tokens(&idp, &b, &Authorize::new()).await;
    let c = verify_with_jwks(t["id_token"].as_str().unwrap(), &jwks).unwrap();
    assert!(c.get("nonce").is_none() && c["azp"] == "someone", "{c}");
    idp.tamper("wrong_aud").await;
    let (_, r) = refresh(&idp, t["refresh_token"].as_str().unwrap()).await;
    assert_ne!(jwt_claims(r["id_token"].as_str().unwrap())["aud"], CLIENT);

    for bad in [
        json!({"mode": "bogus"}),
        json!({}),
        json!({"mode": "claims"}),
    ] {
        let (status, body) = idp
            .try_control(reqwest::Method::POST, "/tamper", Some(&bad))
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// A logout token from the control endpoint verifies with the JWKS and carries what a real one
/// does (`typ: logout+jwt`, `iss`, `aud`, `iat`, `exp`, a fresh `jti`, the back-channel
/// `events`); overrides set and remove claims; `foreign_key`, `HS256` and `none` make tokens
/// the JWKS does not verify.
#[tokio::test]
async fn logout_tokens_verify_with_the_jwks_and_take_overrides() {
    let idp = provider().await;
    let jwks = idp.jwks().await;
    let t = idp
        .logout_token(json!({"sub": "sub-alice", "sid": "s-1"}))
        .await;
    let claims = verify_with_jwks(&t, &jwks).expect("logout token verifies");
    assert_eq!(jwt_header(&t)["typ"], "logout+jwt");
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], "sub-alice");
    assert_eq!(claims["sid"], "s-1");
    assert_eq!(
        claims["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(claims["iat"].as_u64().unwrap().abs_diff(now_unix()) <= 2);
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert!(claims.get("nonce").is_none());
    let other = idp.logout_token(json!({"sub": "sub-alice"})).await;
    assert_ne!(
        jwt_claims(&other)["jti"],
        claims["jti"],
        "jti must be fresh"
    );

    let t = idp
        .logout_token(json!({"events": null, "nonce": "n", "aud": "other", "iat": 1, "typ": null}))
        .await;
    let c = verify_with_jwks(&t, &jwks).unwrap();
    assert!(c.get("events").is_none() && c["nonce"] == "n" && c["aud"] == "other" && c["iat"] == 1);
    assert!(jwt_header(&t).get("typ").is_none());

    let foreign = idp
        .logout_token(json!({"sub": "sub-alice", "foreign_key": true}))
        .await;
    assert!(verify_with_jwks(&foreign, &jwks).is_err());
    let hs = idp
        .logout_token(json!({"sub": "sub-alice", "alg": "HS256"}))
        .await;
    assert_eq!(jwt_header(&hs)["alg"], "HS256");
    verify_hs256(&hs, SECRET.as_bytes()).expect("HS256 with the client secret");
    assert!(verify_with_jwks(&hs, &jwks).is_err());
    let none = idp
        .logout_token(json!({"sub": "sub-alice", "alg": "none"}))
        .await;
    assert!(none.ends_with('.') && jwt_header(&none)["alg"] == "none");
    assert!(verify_with_jwks(&none, &jwks).is_err());
}

/// A rotation puts a new key (new kid) first in the JWKS, keeping the old one or not; what the
/// provider signs afterwards names the new kid; the provider's sessions survive (no new login).
#[tokio::test]
async fn rotated_keys_change_the_jwks_and_sessions_survive() {
    let idp = provider().await;
    let b = idp.browser();
    let t = tokens(&idp, &b, &Authorize::new()).await;
    let kid = |jwks: &Value, i: usize| jwks["keys"][i]["kid"].as_str().unwrap().to_string();
    let first = idp.jwks().await;
    let old = kid(&first, 0);
    assert_eq!(
        jwt_header(t["id_token"].as_str().unwrap())["kid"],
        old.as_str()
    );

    idp.rotate_keys(true).await;
    let second = idp.jwks().await;
    assert_eq!(second["keys"].as_array().unwrap().len(), 2, "{second}");
    let new = kid(&second, 0);
    assert_ne!(new, old);
    assert_eq!(kid(&second, 1), old);
    let hops = Authorize::new().run(&idp, &b, None).await;
    assert!(
        hops.param("code").is_some(),
        "the session did not survive: {hops:#?}"
    );
    let t2 = tokens(&idp, &b, &Authorize::new()).await;
    assert_eq!(
        jwt_header(t2["id_token"].as_str().unwrap())["kid"],
        new.as_str()
    );
    verify_with_jwks(t2["id_token"].as_str().unwrap(), &second).unwrap();
    let lt = idp.logout_token(json!({"sub": "sub-alice"})).await;
    assert_eq!(jwt_header(&lt)["kid"], new.as_str());
    // An ID token from before the rotation still verifies while its key is listed...
    verify_with_jwks(t["id_token"].as_str().unwrap(), &second).unwrap();

    idp.rotate_keys(false).await;
    let third = idp.jwks().await;
    let kids: Vec<String> = (0..third["keys"].as_array().unwrap().len())
        .map(|i| kid(&third, i))
        .collect();
    assert_eq!(kids.len(), 1, "{third}");
    assert!(!kids.contains(&old) && !kids.contains(&new));
    // ...and no longer once it is gone; refresh still works (the grant survived).
    assert!(verify_with_jwks(t["id_token"].as_str().unwrap(), &third).is_err());
    let (status, r) = refresh(&idp, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        jwt_header(r["id_token"].as_str().unwrap())["kid"],
        kids[0].as_str()
    );
}

/// What a back-channel logout endpoint received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

/// A small HTTPS endpoint on loopback (certificate for `localhost` from `ca`) that records
/// every request and answers `status`.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(ca: &TestCa, stem: &str, status: u16) -> Recorder {
        use http_body_util::BodyExt as _;
        let files = ca.server(stem, &["localhost"]);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = hyper::StatusCode::from_u16(status).unwrap();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let content_type = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                seen.lock().unwrap().push(Received {
                                    path,
                                    content_type,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                let mut resp = hyper::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::new(),
                                ));
                                *resp.status_mut() = answer;
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Recorder { addr, seen, task }
    }

    fn uri(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

fn logout_token_of(r: &Received) -> String {
    url::form_urlencoded::parse(r.body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no logout_token in {r:?}"))
}

/// `end_sessions` ends the user's provider session and POSTs a logout token (form-encoded,
/// verifying with the JWKS, naming the user's `sub` and the `sid` of the ID token that client
/// got, with the back-channel `events`) to each client that registered a back-channel URI,
/// over HTTPS trusting the configured CA with `localhost` resolved to loopback; deliveries
/// record each attempt with its status and the provider's outcome, a 500 as an error. The
/// user must log in again afterwards; a user with no session causes no POST.
#[tokio::test]
async fn end_sessions_posts_logout_tokens_to_each_backchannel_uri() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "rp");
    let ok = Recorder::start(&ca, "ok", 200).await;
    let failing = Recorder::start(&ca, "failing", 500).await;
    let mut first = IdpClient::new(CLIENT, SECRET, CALLBACK);
    first.backchannel_logout_uri = Some(ok.uri("/bc"));
    let mut second = IdpClient::new("second-rp", SECRET, CALLBACK);
    second.backchannel_logout_uri = Some(failing.uri("/bc2"));
    let idp = provider_with(
        vec![first, second, IdpClient::new("third-rp", SECRET, CALLBACK)],
        Some(ca.path.clone()),
    )
    .await;
    let b = idp.browser();
    let t1 = tokens(&idp, &b, &Authorize::new()).await;
    let t2 = tokens(&idp, &b, &Authorize::for_client("second-rp")).await;
    tokens(&idp, &b, &Authorize::for_client("third-rp")).await;
    let sid1 = jwt_claims(t1["id_token"].as_str().unwrap())["sid"].clone();
    let sid2 = jwt_claims(t2["id_token"].as_str().unwrap())["sid"].clone();

    assert_eq!(idp.end_sessions("sub-bob").await["sessions"], 0);
    assert!(idp.deliveries().await.is_empty());
    let ended = idp.end_sessions("sub-alice").await;
    assert_eq!(ended["sessions"], 1, "{ended}");

    let got = ok.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/bc");
    assert_eq!(got[0].content_type, "application/x-www-form-urlencoded");
    let jwks = idp.jwks().await;
    let lt = logout_token_of(&got[0]);
    let c = verify_with_jwks(&lt, &jwks).expect("the logout token verifies");
    assert_eq!(jwt_header(&lt)["typ"], "logout+jwt");
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(c["aud"], CLIENT);
    assert_eq!(c["sub"], "sub-alice");
    assert_eq!(c["sid"], sid1);
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(c.get("nonce").is_none() && c["jti"].is_string());
    let got2 = failing.received();
    assert_eq!(got2.len(), 1, "{got2:?}");
    assert_eq!(jwt_claims(&logout_token_of(&got2[0]))["sid"], sid2);

    let d = idp.deliveries().await;
    assert_eq!(d.len(), 2, "{d:?}");
    let of = |client: &str| {
        d.iter()
            .find(|x| x["client_id"] == client)
            .unwrap_or_else(|| panic!("{d:?}"))
    };
    assert_eq!(of(CLIENT)["status"], 200);
    assert_eq!(of(CLIENT)["outcome"], "success");
    assert_eq!(of(CLIENT)["uri"], ok.uri("/bc"));
    assert_eq!(of("second-rp")["status"], 500);
    assert_eq!(of("second-rp")["outcome"], "error");

    // The provider session is gone: the next authorization asks for the password again.
    let hops = Authorize::new().run(&idp, &b, None).await;
    assert!(hops.is_login_form(), "{hops:#?}");
    assert_eq!(idp.end_sessions("sub-alice").await["sessions"], 0);
}

/// RP-initiated logout: the end-session endpoint with `id_token_hint` and a registered
/// `post_logout_redirect_uri` shows a confirmation form; "yes" sends the back-channel logout
/// and redirects to that URI with the `state`; an unregistered URI is refused.
#[tokio::test]
async fn rp_initiated_logout_confirms_then_notifies_the_backchannel() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "rp");
    let rec = Recorder::start(&ca, "rec", 204).await;
    let mut client = IdpClient::new(CLIENT, SECRET, CALLBACK);
    client.backchannel_logout_uri = Some(rec.uri("/bc"));
    client.post_logout_redirect_uris = vec!["https://localhost/bye".into()];
    let idp = provider_with(vec![client], Some(ca.path.clone())).await;
    let b = idp.browser();
    let t = tokens(&idp, &b, &Authorize::new()).await;
    let id_token = t["id_token"].as_str().unwrap();
    let end = idp.discovery().await["end_session_endpoint"]
        .as_str()
        .unwrap()
        .to_string();

    let bad = url::Url::parse_with_params(
        &end,
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://localhost/elsewhere"),
        ],
    )
    .unwrap();
    let hops = follow(&b, bad.as_str(), None, None).await;
    assert_eq!(hops.status, 400, "{hops:#?}");
    assert!(rec.received().is_empty());

    let url = url::Url::parse_with_params(
        &end,
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://localhost/bye"),
            ("state", "st-1"),
        ],
    )
    .unwrap();
    let page = follow(&b, url.as_str(), None, None).await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert!(page.body.contains("op.logoutForm"), "{}", page.body);
    let done = confirm_logout(
        &b,
        &page,
        true,
        Some(&|u: &str| u.starts_with("https://localhost/bye")),
    )
    .await;
    assert!(done.stopped_at.is_some(), "{done:#?}");
    assert_eq!(done.param("state").as_deref(), Some("st-1"));
    let got = rec.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let c = verify_with_jwks(&logout_token_of(&got[0]), &idp.jwks().await).unwrap();
    assert_eq!(c["sid"], jwt_claims(id_token)["sid"]);
    let d = idp.deliveries().await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], 204);
    assert_eq!(d[0]["outcome"], "success");
    let hops = Authorize::new().run(&idp, &b, None).await;
    assert!(
        hops.is_login_form(),
        "still signed in after logout: {hops:#?}"
    );
}

/// The provider goes down when a test says so (the issuer refuses connections), and it stops
/// by itself once its standard input closes, so no node process outlives a test.
#[tokio::test]
async fn provider_goes_down_when_killed_and_stops_when_its_stdin_closes() {
    let mut idp = provider().await;
    let issuer = idp.issuer().to_string();
    idp.kill();
    let err = idp
        .https_client()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(err.is_err(), "the killed provider answered: {err:?}");

    let mut idp = provider().await;
    let pid = idp.pid().unwrap();
    let exited = tokio::task::spawn_blocking(move || {
        let gone = idp.close_stdin_and_wait(Duration::from_secs(5));
        (gone, idp)
    })
    .await
    .unwrap();
    assert!(
        exited.0,
        "node (pid {pid}) still runs after its stdin closed"
    );
}
