//! WebSocket upgrades through the gateway (HTTP/1.1, RFC 6455).
//!
//! Attacks covered:
//! - an unauthenticated upgrade to a protected path (the upgrade is a request like any other);
//! - an upgraded connection outliving the session it was opened with: logout, the user ending
//!   it from another device (`DELETE /.auth/sessions/{handle}`), an operator's revoke-all —
//!   on the memory store and on Redis — while other users' connections stay up;
//! - cross-site WebSocket hijacking: a page on another origin opening a socket with the
//!   victim's cookies (foreign, `null`, look-alike and `http:` origins), in `origin` and
//!   `token` CSRF modes (a browser cannot add `X-CSRF-Token` to a handshake).

use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;

use crate::harness::*;

#[test]
fn sha1_matches_rfc6455_example() {
    assert_eq!(
        accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[tokio::test]
async fn websocket_upgrade_with_session_is_proxied_and_echoes() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let key = base64::engine::general_purpose::STANDARD.encode(&random_secret().as_bytes()[..16]);
    let mut stream = gw.raw_connect().await;
    stream
        .write_all(upgrade_request(&gw, "/private/ws", &key, Some(&s.cookie_header())).as_bytes())
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream, false))
        .await
        .expect("upgrade answer in time")
        .expect("well-formed upgrade answer");
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(accept_for(&key).as_str())
    );
    assert!(
        resp.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    );
    assert_eq!(
        resp.header("x-echo-auth-user"),
        Some("alice"),
        "the upgrade request reached the upstream with the verified identity"
    );
    for msg in ["hello sessiongate", "second frame"] {
        send_text(&mut stream, msg).await;
        let (op, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
            .await
            .expect("echo in time")
            .expect("echo frame");
        assert_eq!(op, 1, "text frame");
        assert_eq!(String::from_utf8(payload).unwrap(), msg);
    }
    // Close handshake.
    let mask = [1u8, 2, 3, 4];
    let code = 1000u16.to_be_bytes();
    let mut frame = vec![0x88, 0x82];
    frame.extend_from_slice(&mask);
    frame.extend([code[0] ^ mask[0], code[1] ^ mask[1]]);
    stream.write_all(&frame).await.unwrap();
    let (op, _) = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
        .await
        .expect("close in time")
        .expect("close frame");
    assert_eq!(op, 8);
    let j = gw.journal().await;
    assert!(j.iter().any(|e| e.path == "/private/ws"), "{j:?}");
}

#[tokio::test]
async fn websocket_upgrade_without_session_is_refused() {
    let gw = Gateway::start_default().await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let resp = gw
        .raw(upgrade_request(&gw, "/private/ws", key, None).as_bytes())
        .await;
    assert_eq!(resp.status, 401);
    let forged = format!("{ACCESS_COOKIE}=garbage.token.value");
    let resp = gw
        .raw(upgrade_request(&gw, "/private/ws", key, Some(&forged)).as_bytes())
        .await;
    assert_eq!(resp.status, 401);
    gw.assert_upstream_never_saw("/private/ws").await;
}

#[tokio::test]
async fn websocket_is_closed_when_its_session_logs_out() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut stream = gw.raw_connect().await;
    stream
        .write_all(
            upgrade_request(&gw, "/private/ws-logout", key, Some(&s.cookie_header())).as_bytes(),
        )
        .await
        .unwrap();
    let resp = read_response(&mut stream, false).await.unwrap();
    assert_eq!(resp.status, 101);
    send_text(&mut stream, "before logout").await;
    let (_, payload) = read_frame(&mut stream).await.unwrap();
    assert_eq!(payload, b"before logout");

    let out = gw.logout(&s).await;
    assert_eq!(out.status(), 204);

    // The gateway must close the tunnel: a close frame or EOF, within a few seconds.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read_frame(&mut stream).await {
                Ok((8, _)) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(
        closed,
        "the upgraded connection stayed open after its session logged out"
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-site WebSocket hijacking, and connections of revoked sessions
// ---------------------------------------------------------------------------------------------

/// One raw upgrade attempt: the response status.
async fn upgrade_status(gw: &Gateway, path: &str, cookie: &str, headers: &[(&str, &str)]) -> u16 {
    gw.raw(upgrade_request_from(path, &gw.host_header(), Some(cookie), headers).as_bytes())
        .await
        .status
}

#[tokio::test]
async fn cross_site_websocket_upgrade_with_session_cookie_is_refused() {
    // Cross-site WebSocket hijacking: browsers send cookies on a cross-site WebSocket handshake
    // and no CORS check applies to it; `Origin` is the only evidence.
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let look_alike = format!("{}.evil.example", gw.origin());
    let http_scheme = format!("http://{}", gw.host_header());
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("foreign Origin", vec![("Origin", "https://evil.example")]),
        ("Origin null", vec![("Origin", "null")]),
        ("look-alike Origin", vec![("Origin", look_alike.as_str())]),
        ("http Origin", vec![("Origin", http_scheme.as_str())]),
        (
            "Sec-Fetch-Site cross-site",
            vec![
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", "https://evil.example"),
            ],
        ),
    ];
    for (what, headers) in cases {
        let status = upgrade_status(&gw, "/private/ws-cross", &s.cookie_header(), &headers).await;
        assert_eq!(
            status, 403,
            "{what}: cross-site upgrade with the victim's cookies"
        );
    }
    gw.assert_upstream_never_saw("/private/ws-cross").await;
    // The same upgrade from the gateway's own origin works.
    let mut ws = open_ws(&gw, "/private/ws-same", &s.cookie_header(), &[]).await;
    assert_echoes(&mut ws, "same origin").await;
}

#[tokio::test]
async fn websocket_upgrade_in_token_mode_is_judged_by_origin() {
    // A browser's WebSocket API cannot add an X-CSRF-Token header to the handshake: in token
    // mode an upgrade must still pass on its Origin, and a cross-site one must still fail.
    let gw = Gateway::start(GatewayConfig::new().extra("[csrf]\nmode = \"token\"\n")).await;
    let s = gw.login_alice().await;
    let status = upgrade_status(
        &gw,
        "/private/ws-cross",
        &s.cookie_header(),
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "cross-site upgrade in token mode");
    let origin = gw.origin();
    let resp = gw
        .raw(
            upgrade_request_from(
                "/private/ws-token",
                &gw.host_header(),
                Some(&s.cookie_header()),
                &[("Origin", origin.as_str())],
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(
        resp.status,
        101,
        "a same-origin upgrade in token mode, as a browser sends it (no X-CSRF-Token header): \
         {}",
        resp.body_text()
    );
}

async fn websocket_is_closed_when_its_session_is_deleted_from_another_session(
    store: StoreUnderTest,
) {
    let gw = store.start(GatewayConfig::new()).await;
    let phone = gw.login_alice().await;
    let laptop_ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let laptop = gw
        .login_with("alice", ALICE_PASSWORD, &[("user-agent", laptop_ua)])
        .await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    let mut phone_ws = open_ws(&gw, "/private/ws-phone", &phone.cookie_header(), &[]).await;
    let mut bob_ws = open_ws(&gw, "/private/ws-bob", &bob.cookie_header(), &[]).await;

    let me: serde_json::Value = gw
        .get_with("/.auth/me", &phone.cookie_header())
        .await
        .json()
        .await
        .unwrap();
    let handle = me["session"].as_str().unwrap();
    let resp = gw
        .client
        .delete(gw.url(&format!("/.auth/sessions/{handle}")))
        .header("cookie", laptop.cookie_header())
        .header("user-agent", laptop_ua)
        .header("origin", gw.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(
        closed_within(&mut phone_ws, Duration::from_secs(5)).await,
        "the upgraded connection outlived its session's revocation from another device"
    );
    assert_echoes(&mut bob_ws, "bob is still connected").await;
    let status = upgrade_status(
        &gw,
        "/private/ws-phone-again",
        &phone.cookie_header(),
        &[("Origin", gw.origin().as_str())],
    )
    .await;
    assert_eq!(status, 401, "a new upgrade with the revoked session");
}

async fn websocket_is_closed_by_an_admin_revoke_all(store: StoreUnderTest) {
    let token = random_secret();
    let gw = store
        .start(GatewayConfig::new().admin_api_token(&token))
        .await;
    let s = gw.login_alice().await;
    let mut ws = open_ws(&gw, "/private/ws-admin", &s.cookie_header(), &[]).await;
    let resp = gw
        .plain
        .post(gw.admin_url("/admin/users/alice/revoke-all"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        closed_within(&mut ws, Duration::from_secs(5)).await,
        "the upgraded connection outlived an operator's revoke-all"
    );
}

crate::for_both_stores!(
    websocket_is_closed_when_its_session_is_deleted_from_another_session,
    websocket_is_closed_by_an_admin_revoke_all,
);
