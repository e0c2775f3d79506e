//! Passkeys (WebAuthn) at the HTTP level: what the ceremonies start with, and the answers the
//! gateway refuses. A real authenticator's answers are the browser tier's (`browser.rs`:
//! Chromium's virtual authenticator registers a passkey, signs in with it alone and as the
//! second step); here no browser is needed to see that:
//! - the relying party is the public origin's host, user verification is required, and a
//!   registration asks for a discoverable credential (passwordless sign-in) when it can;
//! - a forged answer is refused (`401 passkey_refused`), audited, and counted in the login
//!   throttle like a wrong password;
//! - a ceremony is used once (a replayed one, or one of another step, is `ceremony_expired`);
//! - registering needs a session; JSON only; unknown paths and methods are refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::Digest;

use crate::harness::*;

async fn post(gw: &Gateway, path: &str, access: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = gw.client.post(gw.url(path)).json(&body);
    if let Some(a) = access {
        req = req.bearer_auth(a);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn access_of(gw: &Gateway, user: &str, password: &str) -> String {
    let v: Value = gw.login_json(user, password).await.json().await.unwrap();
    v["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// The handle the gateway gives `user` (`login::passkeys::user_handle`).
fn handle_of(user: &str) -> String {
    let d = sha2::Sha256::new()
        .chain_update(b"sessiongate passkey user\0")
        .chain_update(user.as_bytes())
        .finalize();
    B64.encode(&d[..16])
}

/// An assertion no authenticator made: a random credential id, the user handle given, and a
/// client data that names the gateway's origin and a made-up challenge.
fn forged_assertion(user_handle: &str) -> Value {
    let id = B64.encode(rand_bytes());
    let client_data = json!({
        "type": "webauthn.get",
        "challenge": B64.encode(rand_bytes()),
        "origin": "https://localhost",
    });
    json!({
        "id": id,
        "rawId": id,
        "type": "public-key",
        "response": {
            "authenticatorData": B64.encode([0u8; 37]),
            "clientDataJSON": B64.encode(client_data.to_string()),
            "signature": B64.encode([1u8; 70]),
            "userHandle": user_handle,
        },
        "extensions": {},
    })
}

fn rand_bytes() -> [u8; 32] {
    rand::random()
}

#[tokio::test]
async fn ceremonies_start_as_the_relying_party_of_the_public_origin() {
    let gw = Gateway::start(GatewayConfig::new().set("ui", "product_name", "\"Acme Gate\"")).await;

    let resp = gw
        .client
        .post(gw.url("/.auth/webauthn/login/start"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    let pk = &v["publicKey"];
    assert_eq!(pk["rpId"], "localhost", "{v}");
    assert_eq!(pk["userVerification"], "required", "{v}");
    assert!(
        pk["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "a passwordless sign-in names no credential (the authenticator picks): {v}"
    );
    assert!(
        B64.decode(pk["challenge"].as_str().unwrap()).unwrap().len() >= 16,
        "{v}"
    );
    assert!(v["ceremony"].as_str().is_some_and(|c| c.len() > 40), "{v}");
    assert!(v.get("mediation").is_none(), "{v}");

    // Registering needs a session.
    let (status, v) = post(&gw, "/.auth/webauthn/register/start", None, json!({})).await;
    assert_eq!(status, 401, "{v}");
    let access = access_of(&gw, "alice", ALICE_PASSWORD).await;
    let (status, v) = post(
        &gw,
        "/.auth/webauthn/register/start",
        Some(&access),
        json!({"name": "laptop"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let pk = &v["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost", "{v}");
    assert_eq!(pk["rp"]["name"], "Acme Gate", "{v}");
    assert_eq!(pk["user"]["name"], "alice", "{v}");
    assert_eq!(pk["user"]["id"], handle_of("alice"), "{v}");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "preferred");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    let (status, v) = post(
        &gw,
        "/.auth/webauthn/register/start",
        Some(&access),
        json!({"name": "x".repeat(65)}),
    )
    .await;
    assert_eq!(status, 400, "a name over 64 characters: {v}");

    // The sessions page's list, empty; removing what is not there.
    let resp = gw
        .client
        .get(gw.url("/.auth/webauthn/credentials"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["passkeys"], json!([]), "{v}");
    let resp = gw
        .client
        .delete(gw.url("/.auth/webauthn/credentials/bm9uZQ"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn forged_and_replayed_answers_are_refused_and_throttled() {
    let gw = Gateway::start(GatewayConfig::new().set("login", "max_failures_per_user", "3")).await;
    let start = || async {
        let (status, v) = post(&gw, "/.auth/webauthn/login/start", None, json!({})).await;
        assert_eq!(status, 200, "{v}");
        v["ceremony"].as_str().unwrap().to_string()
    };

    // A passkey of nobody.
    let ceremony = start().await;
    let finish = |ceremony: String, credential: Value| {
        let gw = &gw;
        async move {
            post(
                gw,
                "/.auth/webauthn/login/finish",
                None,
                json!({"ceremony": ceremony, "credential": credential, "return_to": "/x"}),
            )
            .await
        }
    };
    let nobody = B64.encode([9u8; 16]);
    let (status, v) = finish(ceremony.clone(), forged_assertion(&nobody)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("passkey_refused"))
    );
    // The ceremony was used up by that answer.
    let (status, v) = finish(ceremony, forged_assertion(&nobody)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("ceremony_expired")),
        "{v}"
    );
    // Tampered, or of another step.
    let mut bent = start().await;
    let last = bent.pop().unwrap();
    bent.push(if last == 'A' { 'B' } else { 'A' });
    let (status, v) = finish(bent, forged_assertion(&nobody)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("ceremony_expired"))
    );
    let access = access_of(&gw, "alice", ALICE_PASSWORD).await;
    let (_, reg) = post(
        &gw,
        "/.auth/webauthn/register/start",
        Some(&access),
        json!({}),
    )
    .await;
    let (status, v) = finish(
        reg["ceremony"].as_str().unwrap().into(),
        forged_assertion(&nobody),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("ceremony_expired")),
        "a registration's ceremony at a sign-in: {v}"
    );

    // Alice's handle with a credential that is not hers: a failed sign-in of hers, audited,
    // and the throttle counts it.
    for _ in 0..3 {
        let (status, v) = finish(start().await, forged_assertion(&handle_of("alice"))).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("passkey_refused"))
        );
    }
    let (status, v) = finish(start().await, forged_assertion(&handle_of("alice"))).await;
    assert_eq!(status, 429, "the throttle after three failures: {v}");
    gw.wait_for_audit("login_failed").await;
    let failed: Vec<Value> = gw
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "login_failed" && e["user"] == "alice")
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0]["reason"], "passkey not the user's", "{failed:?}");
    let (status, _) = post(
        &gw,
        "/.auth/login",
        None,
        json!({"username": "alice", "password": ALICE_PASSWORD}),
    )
    .await;
    assert_eq!(status, 429, "the password too, while throttled");

    // A registration answer no authenticator made.
    let (_, reg) = post(
        &gw,
        "/.auth/webauthn/register/start",
        Some(&access),
        json!({}),
    )
    .await;
    let id = B64.encode(rand_bytes());
    let attestation = json!({
        "id": id, "rawId": id, "type": "public-key",
        "response": {
            "attestationObject": B64.encode([0xa0u8]),
            "clientDataJSON": B64.encode(json!({"type": "webauthn.create", "challenge": "AAAA", "origin": "https://localhost"}).to_string()),
        },
        "extensions": {},
    });
    let (status, v) = post(
        &gw,
        "/.auth/webauthn/register/finish",
        Some(&access),
        json!({"ceremony": reg["ceremony"], "credential": attestation}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("passkey_refused")),
        "{v}"
    );
    assert!(
        !gw.stderr_text().contains(reg["ceremony"].as_str().unwrap()),
        "a ceremony in the log"
    );
}

#[tokio::test]
async fn json_only_and_known_paths_only() {
    let gw = Gateway::start_default().await;
    let resp = gw
        .client
        .post(gw.url("/.auth/webauthn/login/finish"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("ceremony=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = gw
        .client
        .get(gw.url("/.auth/webauthn/login/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = gw
        .client
        .post(gw.url("/.auth/webauthn/nothing"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (status, v) = post(
        &gw,
        "/.auth/webauthn/login/finish",
        None,
        json!({"ceremony": 1}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(
        &gw,
        "/.auth/webauthn/verify/start",
        None,
        json!({"token": "not-a-sign-in"}),
    )
    .await;
    assert_eq!(status, 400, "a second step without a sign-in: {v}");
}
