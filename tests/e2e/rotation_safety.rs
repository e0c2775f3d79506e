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
//! - a cross-site POST to a public route reaching the app with the victim's identity;
//! - a lost answer logging the user out: the access token expired, the request's refresh token
//!   was rotated in the store, and the client went away (HTTP/1.1 connection closed, HTTP/2
//!   stream reset or connection closed) while a slow upstream had the request, so the new
//!   cookies never reached it; after the grace window its old refresh token looked like
//!   theft. Also that taking such a rotation back cannot be abused: it never brings back a
//!   session that ended, never undoes a later rotation, never breaks a parallel answer that
//!   did arrive, and closes once the new token is used (issue 10, item 4).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::harness::*;

/// A gateway whose access tokens expire in a second and whose grace window is a second.
async fn short_lived() -> Gateway {
    Gateway::start(GatewayConfig::new().access_ttl("1s").refresh_grace("1s")).await
}

/// Wait until the gateway (whole seconds, `exp < now`) sees the access token as expired.
async fn past_expiry_and_grace(s: &Session) {
    sleep_past_exp(&s.access, Duration::from_millis(1100)).await;
}

/// Past the 1 s grace window of a rotation made now (counted in milliseconds).
async fn past_grace() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
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

// ---------------------------------------------------------------------------------------------
// A rotation whose answer never reached the client
// ---------------------------------------------------------------------------------------------

/// How a client goes away from a request it is waiting on.
#[derive(Clone, Copy, Debug)]
enum GoAway {
    /// HTTP/1.1: the connection is closed (a browser has no other way to cancel).
    H1Close,
    /// HTTP/2: `RST_STREAM(CANCEL)`; the connection stays open.
    H2Reset,
    /// HTTP/2: the whole connection is closed.
    H2Close,
}

/// A request the upstream holds (`/private/slow`, 8 s): sent, and seen by the upstream, so
/// the gateway has already refreshed and rotated for it.
enum Pending {
    /// Held open until dropped.
    H1 {
        _conn: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    },
    H2(H2),
}

static TAG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn wait_upstream_saw(gw: &Gateway, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.journal().await.iter().any(|e| e.query.contains(tag)) {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream; stderr:\n{}",
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_slow(gw: &Gateway, cookie: &str, how: GoAway) -> Pending {
    let n = TAG.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tag = format!("tag=lost-{}-{n}", std::process::id());
    let path = format!("/private/slow?ms=8000&{tag}");
    let pending = match how {
        GoAway::H1Close => {
            let mut s = gw.raw_connect().await;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: application/json\r\n\r\n",
                gw.host_header()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            Pending::H1 { _conn: s }
        }
        GoAway::H2Reset | GoAway::H2Close => {
            let mut h2 = H2::open(gw).await;
            let block = H2::request_block(
                "GET",
                &path,
                "localhost",
                &[("cookie", cookie), ("accept", "application/json")],
            );
            let flags = frame::END_HEADERS | frame::END_STREAM;
            h2.send(frame::HEADERS, flags, 1, &block).await.unwrap();
            Pending::H2(h2)
        }
    };
    wait_upstream_saw(gw, &tag).await;
    pending
}

/// Go away from `pending` as `how` says; an HTTP/2 connection whose stream was reset is
/// returned (kept open).
async fn go_away(pending: Pending, how: GoAway) -> Option<H2> {
    match (pending, how) {
        (Pending::H2(mut h2), GoAway::H2Reset) => {
            let code = frame::CANCEL.to_be_bytes();
            h2.send(frame::RST_STREAM, 0, 1, &code).await.unwrap();
            Some(h2)
        }
        (p, _) => {
            drop(p);
            None
        }
    }
}

/// A short-lived gateway on `store`: access tokens of a second, a grace window of a second.
async fn short_lived_on(store: &StoreUnderTest) -> Gateway {
    store
        .start(GatewayConfig::new().access_ttl("1s").refresh_grace("1s"))
        .await
}

/// `sessiongate_refreshes_total{outcome="rotated"}`: proves the rotation under test committed.
async fn rotations(gw: &Gateway) -> f64 {
    metric(
        &metrics(gw).await,
        "sessiongate_refreshes_total",
        &[("outcome", "rotated")],
    )
}

/// Wait (up to 5 s) until the gateway has reopened `n` rotations; no assertion (an older
/// binary never does, and its failure should be the logout itself).
async fn wait_reopened(gw: &Gateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let text = metrics(gw).await;
        if metric(&text, "sessiongate_refreshes_undelivered_total", &[]) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Redis record of `s`'s session, when the store is Redis.
fn redis_record(
    store: &StoreUnderTest,
    s: &Session,
) -> Option<std::collections::BTreeMap<String, String>> {
    let redis = store.redis.as_ref()?;
    let sid = jwt_claims(&s.refresh)["sid"].as_str().unwrap().to_string();
    let text = redis.cli(&["HGETALL", &format!("sg:{{alice}}:s:{sid}")]);
    let lines: Vec<&str> = text.lines().collect();
    Some(
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect(),
    )
}

fn jti(token: &str) -> String {
    jwt_claims(token)["jti"].as_str().unwrap().to_string()
}

/// The browser comes back with the cookies it kept: served, with the tokens already issued for
/// the lost rotation; no theft alert.
async fn served_with_kept_cookies(gw: &Gateway, s: &Session, what: &str) -> Session {
    let resp = gw.get_with("/private/after", &s.cookie_header()).await;
    let status = resp.status();
    let pair = Session::from_response_headers(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(
        status,
        200,
        "{what}: the browser's own cookies, after a lost answer and the grace window: {body}; \
         audit:\n{}",
        gw.audit_text()
    );
    let echo: serde_json::Value = serde_json::from_str(&body).expect("the upstream's echo");
    assert_eq!(echo["headers"]["x-auth-user"][0], "alice", "{what}");
    assert!(
        !gw.audit_text().contains("refresh_reuse"),
        "{what}: a theft alert for a lost answer: {}",
        gw.audit_text()
    );
    let pair = pair.unwrap_or_else(|| panic!("{what}: the answer sets the session's tokens"));
    assert_eq!(
        jwt_claims(&pair.refresh)["sid"],
        jwt_claims(&s.refresh)["sid"],
        "{what}: the same session goes on"
    );
    pair
}

async fn a_lost_answer_does_not_log_the_user_out(store: StoreUnderTest, how: GoAway) {
    let what = format!("{how:?}");
    let gw = short_lived_on(&store).await;
    let s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    let before = rotations(&gw).await;
    let pending = send_slow(&gw, &s.cookie_header(), how).await;
    assert_eq!(
        rotations(&gw).await,
        before + 1.0,
        "{what}: the slow request's refresh committed a rotation"
    );
    if let Some(rec) = redis_record(&store, &s) {
        assert_ne!(
            rec.get("cur"),
            Some(&jti(&s.refresh)),
            "{what}: rotated in Redis"
        );
    }
    let _open = go_away(pending, how).await;
    wait_reopened(&gw, 1.0).await;
    past_grace().await;

    let issued = served_with_kept_cookies(&gw, &s, &what).await;
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "sessiongate_refreshes_undelivered_total", &[]),
        1.0,
        "{what}: counted"
    );
    if let Some(rec) = redis_record(&store, &s) {
        assert_eq!(
            rec.get("open").map(String::as_str),
            Some("1"),
            "{what}: {rec:?}"
        );
        assert_eq!(
            rec.get("cur"),
            Some(&jti(&issued.refresh)),
            "{what}: {rec:?}"
        );
    }
    // The session goes on with what the browser now holds.
    let later = gw.get_with("/private/later", &issued.cookie_header()).await;
    assert_eq!(later.status(), 200, "{what}: the reissued pair");
}

async fn a_lost_answer_on_a_closed_http1_connection_does_not_log_the_user_out(
    store: StoreUnderTest,
) {
    a_lost_answer_does_not_log_the_user_out(store, GoAway::H1Close).await
}

async fn a_lost_answer_on_a_reset_http2_stream_does_not_log_the_user_out(store: StoreUnderTest) {
    a_lost_answer_does_not_log_the_user_out(store, GoAway::H2Reset).await
}

#[tokio::test]
async fn a_lost_answer_on_a_closed_http2_connection_does_not_log_the_user_out() {
    a_lost_answer_does_not_log_the_user_out(StoreUnderTest::memory().await, GoAway::H2Close).await
}

#[tokio::test]
async fn a_reopened_rotation_closes_once_the_new_token_is_used() {
    let store = StoreUnderTest::memory().await;
    let gw = short_lived_on(&store).await;
    let s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    let pending = send_slow(&gw, &s.cookie_header(), GoAway::H2Reset).await;
    let _open = go_away(pending, GoAway::H2Reset).await;
    wait_reopened(&gw, 1.0).await;
    past_grace().await;
    let issued = served_with_kept_cookies(&gw, &s, "back after the lost answer").await;
    // The new refresh token is used (its access token expired): it rotates as usual...
    past_expiry_and_grace(&issued).await;
    let resp = gw.get_with("/private/next", &issued.cookie_header()).await;
    assert_eq!(resp.status(), 200, "the new refresh token rotates");
    let newest = Session::from_response_headers(resp.headers()).expect("rotated pair");
    // ...and from then on the old one is a rotated-out token like any other: theft.
    past_grace().await;
    let resp = gw.refresh(&s).await;
    assert_eq!(
        resp.status(),
        401,
        "the old token, once the new one was used"
    );
    gw.wait_for_audit("refresh_reuse").await;
    let resp = gw.refresh(&newest).await;
    assert_eq!(resp.status(), 401, "the reuse revoked the whole session");
}

#[tokio::test]
async fn a_parallel_answer_that_arrived_survives_a_lost_rotation() {
    let store = StoreUnderTest::memory().await;
    let gw = short_lived_on(&store).await;
    let s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    let pending = send_slow(&gw, &s.cookie_header(), GoAway::H1Close).await;
    // Another tab, within the grace: answered with the token the slow request rotated to.
    let resp = gw.get_with("/private/tab", &s.cookie_header()).await;
    assert_eq!(resp.status(), 200, "a parallel request within the grace");
    let tab = Session::from_response_headers(resp.headers()).expect("the tokens already issued");
    go_away(pending, GoAway::H1Close).await;
    wait_reopened(&gw, 1.0).await;
    // The browser holds the parallel answer's cookies: they go on working (a rollback of the
    // lost rotation would have made them rotated-out tokens).
    past_expiry_and_grace(&tab).await;
    let resp = gw.get_with("/private/later", &tab.cookie_header()).await;
    assert_eq!(resp.status(), 200, "the parallel answer's refresh token");
    assert!(
        !gw.audit_text().contains("refresh_reuse"),
        "{}",
        gw.audit_text()
    );
}

async fn a_lost_answer_does_not_bring_back_a_session_that_ended(store: StoreUnderTest) {
    let gw = short_lived_on(&store).await;
    let s = gw.login_alice().await;
    past_expiry_and_grace(&s).await;
    let pending = send_slow(&gw, &s.cookie_header(), GoAway::H2Reset).await;
    // While the upstream holds it, the user signs out (with the refresh token the browser
    // has: the previous one, within the grace).
    let resp = gw.logout(&s).await;
    assert_eq!(resp.status(), 204, "logout");
    let _open = go_away(pending, GoAway::H2Reset).await;
    // Give a reopen every chance to happen (none may).
    tokio::time::sleep(Duration::from_millis(300)).await;
    past_grace().await;
    let resp = gw
        .get("/private/after")
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the ended session stays ended");
    let resp = gw.refresh(&s).await;
    assert_eq!(resp.status(), 401, "its refresh token too");
    if let Some(rec) = redis_record(&store, &s) {
        assert!(rec.is_empty(), "no record came back: {rec:?}");
    }
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "sessiongate_refreshes_undelivered_total", &[]),
        0.0,
        "nothing was reopened"
    );
}

async fn a_lost_answer_does_not_undo_a_later_rotation(store: StoreUnderTest) {
    let gw = short_lived_on(&store).await;
    let s0 = gw.login_alice().await;
    past_expiry_and_grace(&s0).await;
    let pending = send_slow(&gw, &s0.cookie_header(), GoAway::H1Close).await;
    // Within the grace another request gets the new token, and the next refresh uses it.
    let resp = gw.refresh(&s0).await;
    assert_eq!(resp.status(), 200, "the previous token within the grace");
    let s1 = Session::from_response_headers(resp.headers()).unwrap();
    let resp = gw.refresh(&s1).await;
    assert_eq!(resp.status(), 200, "the new token rotates");
    let s2 = Session::from_response_headers(resp.headers()).unwrap();
    go_away(pending, GoAway::H1Close).await;
    // Give a reopen every chance to happen (none may).
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(rec) = redis_record(&store, &s0) {
        assert_eq!(rec.get("cur"), Some(&jti(&s2.refresh)), "{rec:?}");
        assert_ne!(rec.get("open").map(String::as_str), Some("1"), "{rec:?}");
    }
    past_grace().await;
    // The first token is two rotations old: reuse, as before.
    let resp = gw.refresh(&s0).await;
    assert_eq!(resp.status(), 401, "a token two rotations old");
    gw.wait_for_audit("refresh_reuse").await;
}

crate::for_both_stores!(
    a_lost_answer_on_a_closed_http1_connection_does_not_log_the_user_out,
    a_lost_answer_on_a_reset_http2_stream_does_not_log_the_user_out,
    a_lost_answer_does_not_bring_back_a_session_that_ended,
    a_lost_answer_does_not_undo_a_later_rotation,
);
