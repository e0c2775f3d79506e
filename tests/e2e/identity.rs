//! Identity handed to the upstream, and what happens without a session.
//!
//! Attacks covered:
//! - spoofed identity headers (`X-Auth-User`, `X-Auth-Roles`, `X-Auth-Session`,
//!   `X-Auth-Assertion`, any letter case, repeated) on public and protected routes;
//! - spoofed `X-Forwarded-For` / `-Proto` / `-Host` from an untrusted peer;
//! - header-name confusion: `X_Auth_User` / `x-auth_user`, which CGI-style upstreams (PHP, WSGI,
//!   Rails) fold into the same variable as `X-Auth-User`;
//! - the upstream seeing the gateway's tokens (`__Host-sg-*` cookies, `Authorization: Bearer`);
//! - unauthenticated requests reaching the upstream, and open redirects through `return_to`.

use serde_json::Value;

use crate::harness::*;

const IDENTITY_HEADERS: [&str; 4] = [
    "x-auth-user",
    "x-auth-roles",
    "x-auth-session",
    "x-auth-assertion",
];

fn echo_text(echo: &Echo) -> String {
    serde_json::to_string(&echo.headers).unwrap()
}

/// The app gets the host the client named, once, as `Host` and `X-Forwarded-Host`: from
/// `Host` over HTTP/1.1, from `:authority` over HTTP/2.
#[tokio::test]
async fn the_app_gets_the_clients_host_once_over_both_protocols() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cookie = format!("{ACCESS_COOKIE}={}", s.access);
    let h1 = gw.client_h1_from("127.0.0.1".parse().unwrap());
    for (client, want) in [
        (&h1, reqwest::Version::HTTP_11),
        (&gw.client, reqwest::Version::HTTP_2),
    ] {
        let resp = client
            .get(gw.url("/private/host"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.version(), want);
        let echo = Echo::from(resp).await;
        assert_eq!(echo.header_all("host"), vec![gw.host_header()], "{want:?}");
        assert_eq!(
            echo.header_all("x-forwarded-host"),
            vec![gw.host_header()],
            "{want:?}"
        );
    }
}

#[tokio::test]
async fn protected_route_forwards_verified_identity_from_cookie() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cookie = format!(
        "theme=dark; {ACCESS_COOKIE}={}; lang=en; {REFRESH_COOKIE}={}",
        s.access, s.refresh
    );
    let resp = gw.get_with("/private/page?q=1", &cookie).await;
    let echo = Echo::from(resp).await;
    assert_eq!(echo.path, "/private/page");
    assert_eq!(echo.query, "q=1");
    assert_eq!(echo.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(echo.header_all("x-auth-roles"), vec!["admin,dev"]);
    let handle = echo.header("x-auth-session").expect("x-auth-session");
    let sid = jwt_claims(&s.access)["sid"].as_str().unwrap().to_string();
    assert!(!handle.is_empty());
    assert_ne!(handle, sid, "the handle is not the session id");
    assert!(
        !handle.contains(&sid),
        "the handle does not contain the session id"
    );
    assert_eq!(echo.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echo.header_all("x-forwarded-host"), vec![gw.host_header()]);
    assert_eq!(echo.header_all("host"), vec![gw.host_header()]);

    let forwarded_cookie = echo.header_all("cookie").join("; ");
    assert!(
        forwarded_cookie.contains("theme=dark"),
        "{forwarded_cookie:?}"
    );
    assert!(forwarded_cookie.contains("lang=en"), "{forwarded_cookie:?}");
    assert!(
        !forwarded_cookie.contains("__Host-sg-"),
        "gateway cookies reached the upstream: {forwarded_cookie:?}"
    );
    let all = echo_text(&echo);
    for secret in [&s.access, &s.refresh] {
        assert!(
            !all.contains(secret.as_str()),
            "a token reached the upstream"
        );
    }
}

#[tokio::test]
async fn only_gateway_cookies_leave_no_cookie_for_upstream() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let echo = Echo::from(gw.get_with("/private/x", &s.cookie_header()).await).await;
    let forwarded = echo.header_all("cookie").join("; ");
    assert!(
        !forwarded.contains("__Host-sg-") && !forwarded.contains(&s.access),
        "upstream cookie header: {forwarded:?}"
    );
}

#[tokio::test]
async fn bearer_token_authenticates_and_is_not_forwarded() {
    let gw = Gateway::start_default().await;
    let v: Value = gw
        .login_json("alice", ALICE_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let access = v["access_token"].as_str().unwrap();
    let resp = gw
        .get("/private/api")
        .header("authorization", format!("Bearer {access}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert_eq!(echo.header("x-auth-roles"), Some("admin,dev"));
    for a in echo.header_all("authorization") {
        assert!(
            !a.contains(access),
            "the gateway's bearer token reached the upstream"
        );
    }
    assert!(!echo_text(&echo).contains(access));
}

#[tokio::test]
async fn identity_reflects_the_logged_in_user() {
    let gw = Gateway::start_default().await;
    let s = gw.login("bob", BOB_PASSWORD).await;
    let echo = Echo::from(gw.get_with("/private/x", &s.cookie_header()).await).await;
    assert_eq!(echo.header_all("x-auth-user"), vec!["bob"]);
    assert_eq!(echo.header_all("x-auth-roles"), vec!["dev"]);
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_public_route() {
    let gw = Gateway::start_default().await;
    // Raw bytes, so that names keep their letter case and repeats.
    let req = format!(
        "GET /public/spoof HTTP/1.1\r\nHost: {}\r\n\
         X-Auth-User: mallory\r\nX-AUTH-USER: mallory2\r\nx-auth-roles: admin\r\n\
         X-Auth-Session: stolen-handle\r\nx-AUTH-assertion: forged.jwt.value\r\n\
         X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
        gw.host_header()
    );
    let resp = gw.raw(req.as_bytes()).await;
    let echo = Echo::from_raw(&resp);
    for h in IDENTITY_HEADERS {
        assert!(
            echo.header_all(h).is_empty(),
            "{h} reached the upstream on a public route: {:?}",
            echo.header_all(h)
        );
    }
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    for v in echo.header_all("x-forwarded-proto") {
        assert_eq!(v, "https", "spoofed X-Forwarded-Proto passed through");
    }
    for v in echo.header_all("x-forwarded-host") {
        assert!(!v.contains("evil.example"), "spoofed X-Forwarded-Host: {v}");
    }
    let all = echo_text(&echo);
    assert!(!all.contains("mallory") && !all.contains("6.6.6.6") && !all.contains("stolen-handle"));
}

#[tokio::test]
async fn spoofed_identity_headers_are_replaced_on_protected_route() {
    let gw = Gateway::start_default().await;
    let s = gw.login("bob", BOB_PASSWORD).await;
    let req = format!(
        "GET /private/spoof HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\
         X-Auth-User: alice\r\nx-auth-user: mallory\r\nX-Auth-Roles: admin\r\n\
         X-AUTH-SESSION: stolen-handle\r\nX-Auth-Assertion: forged.jwt.value\r\n\
         X-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
        gw.host_header(),
        s.cookie_header()
    );
    let echo = Echo::from_raw(&gw.raw(req.as_bytes()).await);
    assert_eq!(echo.header_all("x-auth-user"), vec!["bob"]);
    assert_eq!(echo.header_all("x-auth-roles"), vec!["dev"]);
    let sessions = echo.header_all("x-auth-session");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_ne!(sessions[0], "stolen-handle");
    for a in echo.header_all("x-auth-assertion") {
        assert_ne!(a, "forged.jwt.value", "a spoofed assertion passed through");
    }
    assert!(echo.header_all("x-auth-assertion").len() <= 1);
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    let all = echo_text(&echo);
    assert!(!all.contains("mallory") && !all.contains("6.6.6.6"));
}

#[tokio::test]
async fn underscore_variants_of_identity_headers_are_rejected() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    for name in [
        "X_Auth_User",
        "x-auth_user",
        "x_auth-user",
        "X_AUTH_ROLES",
        "x_auth_session",
        "X-Auth_Assertion",
    ] {
        for (path, cookie) in [
            ("/public/underscore", None),
            ("/private/underscore", Some(s.cookie_header())),
        ] {
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", gw.host_header());
            if let Some(c) = &cookie {
                req.push_str(&format!("Cookie: {c}\r\n"));
            }
            req.push_str(&format!("{name}: mallory\r\nConnection: close\r\n\r\n"));
            let resp = gw.raw(req.as_bytes()).await;
            assert_eq!(resp.status, 400, "{name} on {path}");
        }
    }
    gw.assert_upstream_never_saw("underscore").await;
}

#[tokio::test]
async fn unauthenticated_navigation_redirects_to_login() {
    let gw = Gateway::start_default().await;
    let resp = gw
        .get("/private/page")
        .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        "/.auth/login?return_to=%2Fprivate%2Fpage"
    );
    assert!(gw.journal().await.is_empty(), "upstream untouched");
}

#[tokio::test]
async fn unauthenticated_api_request_gets_401_json_with_www_authenticate() {
    let gw = Gateway::start_default().await;
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "GET application/json",
            gw.get("/private/api").header("accept", "application/json"),
        ),
        ("GET without Accept", gw.get("/private/api")),
        (
            "fetch with Sec-Fetch-Mode: cors",
            gw.get("/private/api")
                .header("accept", "text/html")
                .header("sec-fetch-mode", "cors"),
        ),
        (
            "POST from a form",
            gw.post("/private/api")
                .header("accept", "text/html")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("a=1"),
        ),
    ];
    for (what, req) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        let www = resp
            .headers()
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no www-authenticate"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            www.starts_with("Bearer"),
            "{what}: www-authenticate {www:?}"
        );
        let text = resp.text().await.unwrap();
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "{what}: 401 body is JSON: {text:?}"
        );
    }
    assert!(gw.journal().await.is_empty(), "upstream untouched");
}

#[tokio::test]
async fn public_route_needs_no_session_and_gets_no_identity() {
    let gw = Gateway::start_default().await;
    let echo = Echo::from(gw.get("/public/page").send().await.unwrap()).await;
    assert_eq!(echo.path, "/public/page");
    assert!(echo.header_all("x-auth-user").is_empty());
}

#[tokio::test]
async fn auth_endpoints_never_reach_the_upstream() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    for path in ["/.auth/does-not-exist", "/.auth/", "/.auth/me/extra"] {
        let resp = gw.get_with(path, &s.cookie_header()).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("\"headers\""),
            "{path} answered by the upstream ({status}): {body}"
        );
    }
    gw.assert_no_auth_path_in_journal().await;
}
