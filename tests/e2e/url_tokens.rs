//! Credentials in the URL (`url_tokens`): `redirect`, `strip` and `reject`.
//!
//! Attacks covered:
//! - a token in the query string leaking to the upstream (and from there to its logs, referrers
//!   and analytics) — every credential parameter name, in any letter case;
//! - a token in the query string being accepted as a credential (session fixation / login CSRF
//!   through a crafted link);
//! - the `redirect` action being abused on unsafe methods (a POST replayed as a GET);
//! - a credential parameter name hidden by percent-encoding (`acc%65ss_token`), which the
//!   upstream's query parser would decode (beyond the written contract; see report).

use crate::harness::*;

fn mixed_case(name: &str, variant: usize) -> String {
    match variant % 3 {
        0 => name.to_string(),
        1 => name.to_ascii_uppercase(),
        _ => name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

#[tokio::test]
async fn url_token_on_get_is_redirected_to_the_clean_url() {
    let gw = Gateway::start_default().await;
    for (i, param) in CREDENTIAL_PARAMS.iter().enumerate() {
        for variant in 0..3 {
            let name = mixed_case(param, i + variant);
            let resp = gw
                .get(&format!("/public/x?a=1&{name}=URLSECRET{i}{variant}&b=2"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303, "GET with {name}=");
            assert_eq!(
                resp.headers().get("location").unwrap().to_str().unwrap(),
                "/public/x?a=1&b=2",
                "GET with {name}=: Location"
            );
        }
    }
    // Only a credential: the clean URL is the bare path.
    let resp = gw
        .get("/public/y?token=URLSECRETonly")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers().get("location").unwrap().to_str().unwrap();
    assert!(
        location == "/public/y" || location == "/public/y?",
        "Location {location:?}"
    );
    gw.assert_upstream_never_saw("URLSECRET").await;
    assert!(gw.journal().await.is_empty(), "nothing should be forwarded");
}

#[tokio::test]
async fn url_token_on_head_is_redirected_to_the_clean_url() {
    let gw = Gateway::start_default().await;
    let resp = gw
        .client
        .head(gw.url("/public/x?jwt=URLSECRET&a=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        "/public/x?a=1"
    );
    assert!(gw.journal().await.is_empty());
}

#[tokio::test]
async fn url_token_on_unsafe_method_is_rejected_in_redirect_mode() {
    let gw = Gateway::start_default().await;
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let resp = gw
            .client
            .request(
                method.parse().unwrap(),
                gw.url("/public/x?a=1&access_token=URLSECRET"),
            )
            .header("origin", gw.origin())
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{method} with access_token=");
    }
    assert!(gw.journal().await.is_empty(), "nothing should be forwarded");
}

#[tokio::test]
async fn strip_mode_forwards_without_credential_params() {
    let gw = Gateway::start(GatewayConfig::new().url_tokens("strip")).await;
    for (i, param) in CREDENTIAL_PARAMS.iter().enumerate() {
        let name = mixed_case(param, i);
        let resp = gw
            .get(&format!("/public/x?a=1&{name}=URLSECRET{i}&b=2"))
            .send()
            .await
            .unwrap();
        let echo = Echo::from(resp).await;
        assert_eq!(echo.path, "/public/x");
        assert_eq!(echo.query, "a=1&b=2", "strip mode with {name}=");
    }
    // POST is stripped too, and its body still arrives.
    let resp = gw
        .post("/public/form?sid=URLSECRETpost&keep=yes")
        .body("body-survives")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.query, "keep=yes");
    assert_eq!(echo.body, "body-survives");
    gw.assert_upstream_never_saw("URLSECRET").await;
}

#[tokio::test]
async fn reject_mode_answers_400_and_forwards_nothing() {
    let gw = Gateway::start(GatewayConfig::new().url_tokens("reject")).await;
    for (i, param) in CREDENTIAL_PARAMS.iter().enumerate() {
        let name = mixed_case(param, i);
        let resp = gw
            .get(&format!("/public/x?{name}=URLSECRET{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "reject mode with {name}=");
    }
    // A query without credentials is still fine.
    let echo = Echo::from(gw.get("/public/x?a=1").send().await.unwrap()).await;
    assert_eq!(echo.query, "a=1");
    gw.assert_upstream_never_saw("URLSECRET").await;
}

#[tokio::test]
async fn valid_access_token_in_query_does_not_authenticate() {
    let gw = Gateway::start(GatewayConfig::new().url_tokens("strip")).await;
    let resp = gw.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let tokens: serde_json::Value = resp.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    for param in ["access_token", "token", "jwt"] {
        let resp = gw
            .get(&format!("/private/by-url?{param}={access}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            401,
            "a token in ?{param}= must never be accepted as a credential"
        );
    }
    gw.assert_upstream_never_saw("/private/by-url").await;
    gw.assert_upstream_never_saw(access).await;
}

#[tokio::test]
async fn percent_encoded_credential_param_name_is_still_caught() {
    let gw = Gateway::start(GatewayConfig::new().url_tokens("strip")).await;
    // `acc%65ss_token` decodes to `access_token` in any query parser the upstream may use.
    let resp = gw
        .get("/public/x?a=1&acc%65ss_token=URLSECRETenc&b=2")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if status == 200 {
        let echo = Echo::from(resp).await;
        assert!(
            !echo.query.contains("URLSECRET"),
            "an encoded credential parameter name reached the upstream: {:?}",
            echo.query
        );
    } else {
        assert_eq!(status, 400, "either stripped (200) or rejected (400)");
    }
    gw.assert_upstream_never_saw("URLSECRET").await;
}
