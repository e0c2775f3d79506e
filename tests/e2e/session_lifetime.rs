//! Session lifetime: idle timeout and absolute timeout.
//!
//! Attacks covered:
//! - a stolen refresh token used long after its owner walked away (idle timeout);
//! - a session kept alive forever by continuous refreshing (absolute timeout).
//!
//! Timings: `access_ttl = 1s` forces a refresh at nearly every request, so the session's
//! server-side clocks are what decides.

use std::time::{Duration, Instant};

use crate::harness::*;

async fn request(gw: &Gateway, s: &mut Session, path: &str) -> u16 {
    let resp = gw
        .get(path)
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    s.update(resp.headers());
    let status = resp.status().as_u16();
    if status == 200 {
        let echo = Echo::from(resp).await;
        assert_eq!(echo.header("x-auth-user"), Some("alice"));
    }
    status
}

#[tokio::test]
async fn idle_session_cannot_be_refreshed() {
    let gw = Gateway::start(
        GatewayConfig::new()
            .access_ttl("1s")
            .idle_timeout("3s")
            .refresh_ttl("60s"),
    )
    .await;
    let mut s = gw.login_alice().await;
    assert_eq!(request(&gw, &mut s, "/private/active").await, 200);
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(idle_from.elapsed() >= Duration::from_millis(4500));
    let status = request(&gw, &mut s, "/private/after-idle").await;
    assert_eq!(
        status, 401,
        "a refresh after 4.5 s idle with idle_timeout = 3s"
    );
    let resp = gw.refresh_with(&s.cookie_header(), &[]).await;
    assert_eq!(
        resp.status(),
        401,
        "POST /.auth/refresh after the idle timeout"
    );
    gw.assert_upstream_never_saw("/private/after-idle").await;
}

#[tokio::test]
async fn active_session_outlives_the_idle_timeout() {
    let gw = Gateway::start(
        GatewayConfig::new()
            .access_ttl("1s")
            .idle_timeout("3s")
            .refresh_ttl("60s"),
    )
    .await;
    let mut s = gw.login_alice().await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let status = request(&gw, &mut s, &format!("/private/active/{n}")).await;
        assert_eq!(
            status,
            200,
            "request {n} at {:?} of continuous activity",
            start.elapsed()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(n >= 10);
}

#[tokio::test]
async fn absolute_timeout_ends_the_session_despite_activity() {
    let gw = Gateway::start(
        GatewayConfig::new()
            .access_ttl("1s")
            .idle_timeout("3s")
            .refresh_ttl("4s"),
    )
    .await;
    let login_at = Instant::now();
    let mut s = gw.login_alice().await;
    let mut n = 0;
    while login_at.elapsed() < Duration::from_millis(4500) {
        let at = login_at.elapsed();
        let status = request(&gw, &mut s, &format!("/private/abs/{n}")).await;
        if at < Duration::from_millis(3000) {
            assert_eq!(
                status, 200,
                "request {n} at {at:?}, well inside refresh_ttl = 4s"
            );
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Past the absolute end: the refresh token no longer opens anything.
    let resp = gw
        .get("/private/abs/refresh-only")
        .header("cookie", s.refresh_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "refresh after the absolute end ({:?} after login, refresh_ttl = 4s)",
        login_at.elapsed()
    );
    let resp = gw.refresh(&s).await;
    assert_eq!(
        resp.status(),
        401,
        "POST /.auth/refresh after the absolute end"
    );
    // And once the last access token has expired, nothing works any more.
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
    assert_eq!(request(&gw, &mut s, "/private/abs/final").await, 401);
    gw.assert_upstream_never_saw("/private/abs/refresh-only")
        .await;
    gw.assert_upstream_never_saw("/private/abs/final").await;
}
