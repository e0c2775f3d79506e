//! Sessions that end when they should not (issue 10, items 4, 5, 11, 12).
//!
//! Attacks covered:
//! - logging a user out from any site: a cross-site unsafe request (a form POST, a top-level
//!   GET with a method-override parameter, a WebSocket upgrade) with an expired access token
//!   used to rotate the refresh token and then be refused, dropping the new cookies; after the
//!   grace window the browser's rotated-out token looked like theft and revoked the session;
//! - a refusal after a committed rotation (an unknown session handle) dropping the new cookies;
//! - a refresh token of a session that ended, or one rotated out, signing the user's other
//!   sessions out through `/.auth/logout-all`;
//! - login CSRF through the app's own login form (`login.upstream_path`, a public path) and a
//!   cross-site GET of an app logout path ending the gateway session;
//! - a cross-site POST to a public route reaching the app with the victim's identity.

use std::time::Duration;

use crate::harness::*;

/// A gateway whose access tokens expire in a second and whose grace window is a second.
async fn short_lived() -> Gateway {
    Gateway::start(GatewayConfig::new().access_ttl("1s").refresh_grace("1s")).await
}

/// Wait until the gateway (whole seconds, `exp < now`) sees the access token as expired.
async fn past_expiry_and_grace(s: &Session) {
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
}

/// Past the 1 s grace window of a rotation made now, at the store's whole-second precision.
async fn past_grace() {
    tokio::time::sleep(Duration::from_millis(2200)).await;
}

#[tokio::test]
async fn cross_site_requests_cannot_log_the_user_out_through_a_lost_rotation() {
    let gw = short_lived().await;
    let s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    let cross: [(&str, reqwest::Method, &str); 3] = [
        ("form POST", reqwest::Method::POST, "/private/transfer"),
        (
            "method override",
            reqwest::Method::GET,
            "/private/item?_method=DELETE",
        ),
        ("PUT", reqwest::Method::PUT, "/private/item"),
    ];
    for (what, method, path) in cross {
        let resp = gw
            .client
            .request(method, gw.url(path))
            .header("cookie", s.cookie_header())
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{what}: refused");
        assert!(
            set_cookie_named(resp.headers(), REFRESH_COOKIE).is_none(),
            "{what}: nothing rotated for a refused request"
        );
    }
    // Past the grace window of any rotation those requests could have made: the browser's
    // own cookies still work (no false theft alert, no logout).
    past_grace().await;
    let resp = gw.get_with("/private/after", &s.cookie_header()).await;
    assert_eq!(
        resp.status(),
        200,
        "the session survived the cross-site requests"
    );
    assert!(
        !gw.audit_text().contains("refresh_reuse"),
        "no theft alert: {}",
        gw.audit_text()
    );
}

#[tokio::test]
async fn a_refusal_after_a_rotation_carries_the_new_cookies() {
    let gw = short_lived().await;
    let mut s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    // The access token expired: this request refreshes, then finds no such session handle.
    let resp = gw
        .client
        .delete(gw.url("/.auth/sessions/no-such-handle"))
        .header("cookie", s.cookie_header())
        .header("origin", gw.origin())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let rotated = Session::from_response_headers(resp.headers())
        .expect("the 404 after a rotation carries both new cookies");
    assert_ne!(rotated.refresh, s.refresh);
    s.update(resp.headers());
    past_grace().await;
    let after = gw.get_with("/private/x", &s.cookie_header()).await;
    assert_eq!(after.status(), 200, "the rotated session goes on");
}

#[tokio::test]
async fn a_dead_or_rotated_out_refresh_token_cannot_sign_other_sessions_out() {
    let gw = short_lived().await;
    let victim = gw.login_alice().await;
    let other_device = gw.login_alice().await;
    // The victim's refresh token is rotated once; its old value is kept (as a thief would).
    let old = victim.clone();
    past_expiry_and_grace(&old).await;
    let r = gw.refresh(&victim).await;
    assert_eq!(r.status(), 200);
    past_grace().await;
    let resp = gw
        .post("/.auth/logout-all")
        .header("cookie", old.refresh_only())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success() || resp.status().is_redirection());
    // The rotated-out token acted on nothing: the other device is still signed in.
    let mut dev = other_device.clone();
    let check = gw.get_with("/private/y", &dev.cookie_header()).await;
    assert_eq!(
        check.status(),
        200,
        "a rotated-out refresh token ended nothing"
    );
    dev.update(check.headers());
    // A session that ended: its refresh token cannot end the others either.
    let ended = gw.login_alice().await;
    assert!(gw.logout(&ended).await.status().is_success());
    past_grace().await;
    let resp = gw
        .post("/.auth/logout-all")
        .header("cookie", ended.refresh_only())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success() || resp.status().is_redirection());
    let check = gw.get_with("/private/z", &dev.cookie_header()).await;
    assert_eq!(
        check.status(),
        200,
        "an ended session's refresh token ended nothing"
    );
}

#[tokio::test]
async fn cross_site_post_to_a_public_route_reaches_the_app_without_the_identity() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    for (what, headers) in [
        (
            "sec-fetch-site cross-site",
            vec![("sec-fetch-site", "cross-site")],
        ),
        ("foreign origin", vec![("origin", "https://evil.example")]),
        (
            "foreign referer",
            vec![("referer", "https://evil.example/page")],
        ),
    ] {
        let mut req = gw
            .client
            .post(gw.url("/public/comment"))
            .header("cookie", s.cookie_header());
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let echo = Echo::from(req.send().await.unwrap()).await;
        assert_eq!(
            echo.header("x-auth-user"),
            None,
            "{what}: no identity upstream"
        );
    }
    let echo = Echo::from(
        gw.post("/public/comment")
            .header("cookie", s.cookie_header())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echo.header("x-auth-user"),
        Some("alice"),
        "same-origin keeps it"
    );
}
