//! Refresh (transparent and explicit), rotation, reuse detection, and logout.
//!
//! Attacks covered:
//! - replay of a stolen, already-rotated refresh token (reuse → the whole session is revoked,
//!   including access tokens that have not expired yet, and an audit event is written);
//! - a logged-out session living on through its unexpired access token or its refresh token;
//! - an expired access token being accepted on its own;
//! - a rotated-out refresh token replayed just after the grace window: compared in whole
//!   seconds with `<=`, a 1 s grace accepted it up to 2 s after the rotation (issue 10,
//!   item 8); it ends to the millisecond, on either store.
//!
//! Also defends availability: parallel requests refreshing one session at once must not log the
//! user out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::*;

async fn post_refresh_cookie(gw: &Gateway, refresh: &str) -> reqwest::Response {
    gw.refresh_with(
        &format!("{REFRESH_COOKIE}={refresh}"),
        &[("accept", "application/json")],
    )
    .await
}

fn assert_new_session_cookies(resp: &reqwest::Response, old: &Session, what: &str) -> Session {
    let new = Session::from_response_headers(resp.headers()).unwrap_or_else(|| {
        panic!(
            "{what}: response lacks new {ACCESS_COOKIE} and {REFRESH_COOKIE}: {:?}",
            set_cookies(resp.headers())
        )
    });
    assert_ne!(new.access, old.access, "{what}: a new access token");
    assert_ne!(new.refresh, old.refresh, "{what}: a new refresh token");
    assert!(
        jwt_claims(&new.access)["exp"].as_u64().unwrap() > now_unix(),
        "{what}: the new access token is not expired"
    );
    new
}

#[tokio::test]
async fn expired_access_cookie_alone_is_refused() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s")).await;
    let s = gw.login_alice().await;
    // Control: fresh, it works.
    let echo = Echo::from(gw.get_with("/private/fresh", &s.access_only()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
    let resp = gw
        .get("/private/stale")
        .header("cookie", s.access_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "an expired access token alone");
    gw.assert_upstream_never_saw("/private/stale").await;
}

#[tokio::test]
async fn expired_access_is_refreshed_transparently_with_refresh_cookie_alone() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s")).await;
    let s = gw.login_alice().await;
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
    let resp = gw
        .get("/private/after-expiry")
        .header("cookie", s.refresh_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let new = assert_new_session_cookies(&resp, &s, "transparent refresh (refresh cookie alone)");
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert_eq!(echo.header("x-auth-roles"), Some("admin,dev"));
    assert!(!echo.header_all("cookie").join(";").contains("__Host-sg-"));
    // The new access cookie works on its own.
    let echo = Echo::from(gw.get_with("/private/next", &new.access_only()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn expired_access_cookie_with_refresh_cookie_is_refreshed_transparently() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s")).await;
    let s = gw.login_alice().await;
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
    let resp = gw.get_with("/private/both", &s.cookie_header()).await;
    assert_eq!(resp.status(), 200);
    let new = assert_new_session_cookies(&resp, &s, "transparent refresh (both cookies)");
    assert_eq!(
        jwt_claims(&new.access)["sid"],
        jwt_claims(&s.access)["sid"],
        "a refresh keeps the session"
    );
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn transparent_refresh_keeps_the_apps_own_cookies() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s")).await;
    let s = gw.login_alice().await;
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
    let resp = gw.get_with("/private/set-cookie", &s.cookie_header()).await;
    assert_eq!(resp.status(), 200);
    let cookies = set_cookies(resp.headers());
    assert!(
        cookies
            .iter()
            .any(|c| c.name == "appcookie" && c.value == "v1"),
        "the app's Set-Cookie was lost: {cookies:?}"
    );
    assert_new_session_cookies(&resp, &s, "refresh alongside an app cookie");
}

#[tokio::test]
async fn refresh_endpoint_rotates_cookies() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let resp = gw.refresh_with(&s.cookie_header(), &[]).await;
    assert_eq!(resp.status(), 200);
    let new = assert_new_session_cookies(&resp, &s, "POST /.auth/refresh");
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(resp.headers(), name).unwrap();
        assert!(
            c.has("secure") && c.has("httponly") && !c.has("domain"),
            "{}",
            c.raw
        );
        assert_eq!(c.attr("path"), Some("/"));
    }
    let echo = Echo::from(gw.get_with("/private/after", &new.access_only()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert!(
        gw.journal()
            .await
            .iter()
            .all(|e| !e.path.starts_with("/.auth"))
    );
}

#[tokio::test]
async fn refresh_endpoint_accepts_a_json_body() {
    let gw = Gateway::start_default().await;
    let v: Value = gw
        .login_json("alice", ALICE_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let r1 = v["refresh_token"].as_str().unwrap().to_string();
    let resp = gw.refresh_json(&r1).await;
    assert_eq!(resp.status(), 200);
    let n: Value = resp.json().await.unwrap();
    let access = n["access_token"].as_str().expect("access_token");
    let r2 = n["refresh_token"].as_str().expect("refresh_token");
    assert_eq!(n["token_type"], "Bearer");
    assert!(n["expires_in"].as_u64().is_some_and(|e| e > 0));
    assert_ne!(r2, r1, "the refresh token rotates");
    let resp = gw
        .get("/private/api")
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(Echo::from(resp).await.header("x-auth-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_refreshes_within_grace_all_succeed() {
    let gw = Gateway::start(GatewayConfig::new().access_ttl("1s").refresh_grace("10s")).await;
    let s = gw.login_alice().await;
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = if i % 2 == 0 {
            gw.client.clone()
        } else {
            gw.client_h1.clone()
        };
        let url = gw.url(&format!("/private/parallel/{i}"));
        let cookie = s.cookie_header();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = client
                .get(url)
                .header("cookie", cookie)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let new = Session::from_response_headers(resp.headers());
            let body = resp.text().await.unwrap();
            (status, new, body)
        }));
    }
    let mut sessions = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, new, body) = t.await.unwrap();
        assert_eq!(status, 200, "parallel request {i}: {body}");
        let echo: Echo = serde_json::from_str(&body).unwrap();
        assert_eq!(echo.header("x-auth-user"), Some("alice"), "request {i}");
        sessions.push(new.unwrap_or_else(|| panic!("request {i} got no new cookies")));
    }
    // Every access token handed out works, and the session is still alive.
    for (i, new) in sessions.iter().enumerate() {
        let echo = Echo::from(gw.get_with("/private/after", &new.access_only()).await).await;
        assert_eq!(
            echo.header("x-auth-user"),
            Some("alice"),
            "access from response {i}"
        );
    }
    let resp = gw.refresh_with(&sessions[9].cookie_header(), &[]).await;
    assert_eq!(
        resp.status(),
        200,
        "the session stays valid after parallel refreshes"
    );
    let latest = Session::from_response_headers(resp.headers()).expect("cookies");
    let echo = Echo::from(
        gw.get_with("/private/latest", &latest.cookie_header())
            .await,
    )
    .await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert!(
        !gw.audit_text().contains("refresh_reuse"),
        "parallel refreshes within the grace were treated as reuse"
    );
}

#[tokio::test]
async fn previous_refresh_token_within_grace_is_not_reuse() {
    let gw = Gateway::start(GatewayConfig::new().refresh_grace("10s")).await;
    let s1 = gw.login_alice().await;
    let resp = post_refresh_cookie(&gw, &s1.refresh).await;
    assert_eq!(resp.status(), 200);
    let s2 = Session::from_response_headers(resp.headers()).expect("cookies");
    // A second tab still holding R1, within the grace.
    let resp = post_refresh_cookie(&gw, &s1.refresh).await;
    assert_eq!(resp.status(), 200, "R1 again within refresh_grace");
    let again = Session::from_response_headers(resp.headers()).expect("cookies");
    for (what, sess) in [("R2 session", &s2), ("R1-again session", &again)] {
        let echo = Echo::from(gw.get_with("/private/x", &sess.access_only()).await).await;
        assert_eq!(echo.header("x-auth-user"), Some("alice"), "{what}");
    }
    assert!(!gw.audit_text().contains("refresh_reuse"));
}

#[tokio::test]
async fn refresh_token_reuse_revokes_session() {
    let gw = Gateway::start(GatewayConfig::new().refresh_grace("1s")).await;
    let s1 = gw.login_alice().await;
    let resp = post_refresh_cookie(&gw, &s1.refresh).await;
    assert_eq!(resp.status(), 200);
    let s2 = Session::from_response_headers(resp.headers()).expect("cookies after refresh");
    // Control: the new access token works before the reuse.
    let echo = Echo::from(gw.get_with("/private/before", &s2.access_only()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    tokio::time::sleep(Duration::from_millis(2500)).await; // past refresh_grace = 1s

    let resp = post_refresh_cookie(&gw, &s1.refresh).await;
    assert_eq!(
        resp.status(),
        401,
        "a rotated-out refresh token after the grace"
    );
    assert!(
        Session::from_response_headers(resp.headers()).is_none(),
        "reuse must not hand out tokens"
    );
    let resp = post_refresh_cookie(&gw, &s2.refresh).await;
    assert_eq!(resp.status(), 401, "the current refresh token after reuse");
    let resp = gw
        .get("/private/after-reuse")
        .header("cookie", s2.access_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the unexpired access token after reuse");
    let resp = gw
        .get("/private/after-reuse")
        .header("authorization", format!("Bearer {}", s2.access))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the unexpired access token as bearer after reuse"
    );
    gw.assert_upstream_never_saw("/private/after-reuse").await;
    gw.wait_for_audit("refresh_reuse").await;
}

#[tokio::test]
async fn logout_clears_cookies_and_revokes_the_session() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let resp = gw.logout(&s).await;
    assert_eq!(resp.status(), 204);
    assert_cookies_cleared(resp.headers());

    let resp = gw
        .get("/private/after-logout")
        .header("cookie", s.access_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the old, unexpired access token after logout"
    );
    let resp = gw
        .get("/private/after-logout")
        .header("authorization", format!("Bearer {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the old access token as bearer after logout"
    );
    let resp = post_refresh_cookie(&gw, &s.refresh).await;
    assert_eq!(resp.status(), 401, "the old refresh token after logout");
    let resp = gw
        .get("/private/after-logout")
        .header("cookie", s.refresh_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no transparent refresh after logout");
    gw.assert_upstream_never_saw("/private/after-logout").await;
    gw.wait_for_audit("logout").await;
}

#[tokio::test]
async fn browser_logout_redirects_to_login_page() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let resp = gw
        .logout_with(&s.cookie_header(), &[("accept", "text/html")])
        .await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers().get("location").unwrap().to_str().unwrap();
    assert!(
        location == "/.auth/login" || location == gw.url("/.auth/login"),
        "Location {location:?}"
    );
    assert_cookies_cleared(resp.headers());
    let resp = gw
        .get("/private/x")
        .header("cookie", s.access_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

fn assert_cookies_cleared(headers: &reqwest::header::HeaderMap) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(headers, name)
            .unwrap_or_else(|| panic!("logout clears {name}: {:?}", set_cookies(headers)));
        assert_eq!(
            c.max_age(),
            Some(0),
            "{name} cleared with Max-Age=0: {}",
            c.raw
        );
        assert_eq!(
            c.attr("path"),
            Some("/"),
            "{name} cleared on Path=/: {}",
            c.raw
        );
        assert!(c.has("secure"), "{}", c.raw);
    }
}

/// Wait until the wall clock is `ms` milliseconds into a second.
async fn into_the_second(ms: u64) {
    let into = u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis(),
    );
    let wait = if into <= ms {
        ms - into
    } else {
        1000 - into + ms
    };
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// A cookie refresh; asserts `200`. The new pair, and when its answer arrived.
async fn rotate_now(gw: &Gateway, s: &Session, what: &str) -> (Session, Instant) {
    let resp = gw.refresh(s).await;
    assert_eq!(resp.status(), 200, "{what}");
    let arrived = Instant::now();
    let new = Session::from_response_headers(resp.headers()).expect("a new pair");
    (new, arrived)
}

async fn grace_window_ends_to_the_millisecond(store: StoreUnderTest) {
    let gw = store.start(GatewayConfig::new().refresh_grace("1s")).await;
    let a0 = gw.login_alice().await;
    let b0 = gw.login_alice().await;
    // Rotate just after a second begins: whole seconds would still call 1.05 s and 1.3 s
    // later "1 s later" (and accept the replay).
    into_the_second(30).await;
    let sent = Instant::now();
    let (a1, a_at) = rotate_now(&gw, &a0, "rotation a").await;
    let (b1, b_at) = rotate_now(&gw, &b0, "rotation b").await;

    // Within the grace (a parallel request of the same browser): the token already issued.
    tokio::time::sleep_until((sent + Duration::from_millis(600)).into()).await;
    for (old, new, what) in [(&a0, &a1, "a"), (&b0, &b1, "b")] {
        let resp = gw.refresh_json(&old.refresh).await;
        assert_eq!(
            resp.status(),
            200,
            "{what}: the previous token within the grace"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            jwt_claims(body["refresh_token"].as_str().unwrap())["jti"],
            jwt_claims(&new.refresh)["jti"],
            "{what}: within the grace, the token already issued"
        );
    }

    // Just past it: at least 1.05 s and 1.3 s after each rotation (its answer had arrived).
    for (old, new, at, after, what) in [
        (&a0, &a1, a_at, 1050, "a, 1.05 s"),
        (&b0, &b1, b_at, 1300, "b, 1.3 s"),
    ] {
        tokio::time::sleep_until((at + Duration::from_millis(after)).into()).await;
        let resp = gw.refresh_json(&old.refresh).await;
        assert_eq!(
            resp.status(),
            401,
            "{what} after the rotation, the previous token is a replay"
        );
        let resp = gw.refresh_json(&new.refresh).await;
        assert_eq!(resp.status(), 401, "{what}: the reuse revoked the session");
    }
    // Audit lines are written by a background thread: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reuses = || {
        gw.audit_events()
            .into_iter()
            .filter(|e| e["event"] == "refresh_reuse")
            .count()
    };
    while reuses() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reuses(),
        2,
        "both replays are theft alerts: {}",
        gw.audit_text()
    );
}

crate::for_both_stores!(grace_window_ends_to_the_millisecond);
