//! Logs and audit trail never hold a secret; the audit trail records auth events.
//!
//! Attacks covered:
//! - credential harvesting from log files: token values (cookies, bearer, JSON bodies, URL
//!   parameters), passwords (right and wrong ones), signing secrets;
//! - repudiation: logins, failed logins and logouts that leave no audit record.

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn logs_and_audit_never_contain_secrets() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s")).await;
    secrets_never_reach_logs(gw).await;
}

#[tokio::test]
async fn gateway_trace_logs_never_contain_secrets() {
    // The gateway's own code at its most verbose level (dependencies at info).
    let gw = Gateway::start(
        GatewayConfig::new()
            .access_ttl("1s")
            .env("RUST_LOG", "info,sessiongate=trace"),
    )
    .await;
    secrets_never_reach_logs(gw).await;
}

/// Login, failed logins, bearer and cookie use, transparent and explicit refresh, forged
/// tokens, URL tokens on HTTPS and plain HTTP, logout; then search every log for every secret.
async fn secrets_never_reach_logs(mut gw: Gateway) {
    let mut secrets: Vec<(String, String)> = vec![
        ("alice's password".into(), ALICE_PASSWORD.into()),
        ("bob's password".into(), BOB_PASSWORD.into()),
        ("access secret".into(), gw.access_secret.clone()),
        ("refresh secret".into(), gw.refresh_secret.clone()),
    ];
    let wrong_password = "Wr0ng-Pa55word-for-logs-test";
    secrets.push(("a wrong password".into(), wrong_password.into()));

    // Form login, failed logins (known and unknown user).
    let s1 = gw.login_alice().await;
    assert_eq!(
        gw.login_form("alice", wrong_password, "/").await.status(),
        401
    );
    assert_eq!(
        gw.login_form("nobody", wrong_password, "/").await.status(),
        401
    );
    let bad_json = gw.login_json("bob", wrong_password).await;
    assert_eq!(bad_json.status(), 401);

    // JSON login, bearer use, JSON refresh.
    let v: Value = gw
        .login_json("bob", BOB_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let (a2, r2) = (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    );
    let resp = gw
        .get("/private/bearer")
        .header("authorization", format!("Bearer {a2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = gw.refresh_json(&r2).await.json().await.unwrap();
    let (a3, r3) = (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    );

    // Cookie use, transparent refresh, explicit refresh.
    assert_eq!(
        gw.get_with("/private/cookie", &s1.cookie_header())
            .await
            .status(),
        200
    );
    sleep_past_exp(&s1.access, std::time::Duration::from_millis(1100)).await;
    let resp = gw.get_with("/private/refreshed", &s1.cookie_header()).await;
    assert_eq!(resp.status(), 200);
    let s2 = Session::from_response_headers(resp.headers()).expect("transparent refresh");
    let resp = gw.refresh_with(&s2.cookie_header(), &[]).await;
    assert_eq!(resp.status(), 200);
    let s3 = Session::from_response_headers(resp.headers()).expect("refresh cookies");

    // Forged and garbage tokens, URL tokens.
    let forged = forge_hs256(
        &s3.access,
        &jwt_claims(&s3.access),
        b"not-the-real-secret-0123456789abcdef",
    );
    assert_eq!(
        gw.get("/private/forged")
            .header("authorization", format!("Bearer {forged}"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let url_secret = "UrlCredentialValue9876543210xyz";
    secrets.push(("URL credential value".into(), url_secret.into()));
    assert_eq!(
        gw.get(&format!("/public/x?access_token={url_secret}&a=1"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    let _ = gw
        .post(&format!("/public/x?refresh_token={url_secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        gw.plain
            .get(format!("http://{}/p?session={url_secret}", gw.http))
            .send()
            .await
            .unwrap()
            .status(),
        308
    );

    // Logout.
    let resp = gw.logout(&s3).await;
    assert_eq!(resp.status(), 204);
    // Use the logged-out tokens once more (refused, possibly logged).
    assert_eq!(
        gw.get_with("/private/after", &s3.cookie_header())
            .await
            .status(),
        401
    );

    for (what, session) in [("s1", &s1), ("s2", &s2), ("s3", &s3)] {
        secrets.push((format!("{what} access token"), session.access.clone()));
        secrets.push((format!("{what} refresh token"), session.refresh.clone()));
    }
    for (what, t) in [
        ("a2", &a2),
        ("r2", &r2),
        ("a3", &a3),
        ("r3", &r3),
        ("forged", &forged),
    ] {
        secrets.push((format!("{what} token"), t.clone()));
    }

    // The audit trail has the events.
    gw.wait_for_audit("login_ok").await;
    gw.wait_for_audit("login_failed").await;
    gw.wait_for_audit("logout").await;

    // Stop gracefully so everything is flushed, then search every log.
    gw.stop().await;
    let logs = all_logs(&gw);
    assert!(!logs.trim().is_empty(), "the gateway wrote no logs at all");
    for (what, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the logs contain {what}: {secret}"
        );
        // A token's signature alone is as good as the token for a forger's purposes of proof.
        if let Some(sig) = secret.split('.').nth(2).filter(|s| s.len() >= 20) {
            assert!(
                !logs.contains(sig),
                "the logs contain the signature of {what}"
            );
        }
    }
}

#[tokio::test]
async fn audit_records_login_failure_and_logout_with_the_user() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    assert_eq!(
        gw.login_form("bob", "definitely-wrong", "/").await.status(),
        401
    );
    let resp = gw.logout(&s).await;
    assert_eq!(resp.status(), 204);
    let ok = gw.wait_for_audit("login_ok").await;
    let failed = gw.wait_for_audit("login_failed").await;
    let out = gw.wait_for_audit("logout").await;
    let text = |v: &Value| v.to_string();
    assert!(text(&ok).contains("alice"), "login_ok names the user: {ok}");
    assert!(
        text(&failed).contains("bob"),
        "login_failed names the account: {failed}"
    );
    assert!(text(&out).contains("alice"), "logout names the user: {out}");
    for line in gw.audit_text().lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "every audit line is JSON: {line:?}"
        );
    }
    let audit = gw.audit_text();
    assert!(!audit.contains("definitely-wrong") && !audit.contains(ALICE_PASSWORD));
    assert!(!audit.contains(&s.access) && !audit.contains(&s.refresh));
}
