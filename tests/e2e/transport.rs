//! Transport: HSTS on every HTTPS response, the plain-HTTP listener that only redirects, the
//! admin listener, and HTTP/2 clients in front of an HTTP/1.1 upstream.
//!
//! Attacks covered:
//! - SSL stripping: a response without HSTS (an error page, say) lets a later visit go over
//!   plain HTTP;
//! - credentials leaking through the plain-HTTP redirect (`?access_token=` copied into the
//!   `Location` of the 308);
//! - open redirect through the plain listener (a forged `Host` steering the 308 elsewhere);
//! - the plain listener forwarding anything to the upstream.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::*;

#[tokio::test]
async fn every_https_response_carries_hsts() {
    let closed = free_port();
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream("down", &format!("http://127.0.0.1:{closed}"))
            .route(Route::public("/down/").to("down")),
    )
    .await;
    let session = gw.login_alice().await;

    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("public 200", gw.get("/public/x")),
        ("login page", gw.get("/.auth/login")),
        (
            "protected with session",
            gw.get("/private/x")
                .header("cookie", session.cookie_header()),
        ),
        (
            "protected API without session (401)",
            gw.get("/private/x").header("accept", "application/json"),
        ),
        (
            "protected navigation without session (302)",
            gw.get("/private/x").header("accept", "text/html"),
        ),
        (
            "url token redirect (303)",
            gw.get("/public/x?access_token=abc"),
        ),
        ("invalid path (400)", gw.get("/public/%ff")),
        ("upstream down (502)", gw.get("/down/x")),
        ("me without session (401)", gw.get("/.auth/me")),
        (
            "bad login (401)",
            gw.post("/.auth/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=alice&password=wrong-password&return_to=%2F"),
        ),
    ];
    for (what, req) in cases {
        let resp = req.send().await.expect(what);
        assert_hsts(
            resp.headers(),
            &format!("{what} (status {})", resp.status()),
        );
    }

    // Errors produced before any routing, on HTTP/1.1.
    let dup_host = gw
        .raw(
            format!(
                "GET /public/x HTTP/1.1\r\nHost: {h}\r\nHost: {h}\r\nConnection: close\r\n\r\n",
                h = gw.host_header()
            )
            .as_bytes(),
        )
        .await;
    assert_hsts_value(
        dup_host.header("strict-transport-security"),
        &format!("duplicate Host (status {})", dup_host.status),
    );
}

#[tokio::test]
async fn plain_http_answers_308_to_https_public_origin() {
    let gw = Gateway::start_default().await;
    for (method, path) in [
        ("GET", "/some/path?a=1&b=2"),
        ("POST", "/private/form?x=y"),
        ("GET", "/"),
    ] {
        let resp = gw
            .plain
            .request(
                method.parse().unwrap(),
                format!("http://{}{}", gw.http, path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 308, "{method} {path} on plain HTTP");
        assert_eq!(
            resp.headers().get("location").unwrap().to_str().unwrap(),
            gw.url(path),
            "{method} {path}: Location"
        );
    }
    assert!(
        gw.journal().await.is_empty(),
        "the plain listener forwarded something"
    );
}

#[tokio::test]
async fn plain_http_redirect_drops_credential_params() {
    let gw = Gateway::start_default().await;
    let path = "/private/page?a=1&access_token=SECRET-A&Refresh_Token=SECRET-R&TOKEN=SECRET-T\
                &id_token=SECRET-I&JWT=SECRET-J&session=SECRET-S&Sid=SECRET-D&b=2";
    let resp = gw
        .plain
        .get(format!("http://{}{}", gw.http, path))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    let location = resp.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(location, gw.url("/private/page?a=1&b=2"));

    // Only credentials: nothing of them survives.
    let resp = gw
        .plain
        .get(format!("http://{}/x?token=SECRET-ONLY", gw.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    let location = resp.headers().get("location").unwrap().to_str().unwrap();
    assert!(
        location == gw.url("/x") || location == gw.url("/x?"),
        "Location {location:?} should be {}",
        gw.url("/x")
    );
    assert!(gw.journal().await.is_empty());
}

#[tokio::test]
async fn plain_http_redirect_ignores_the_client_host_header() {
    let gw = Gateway::start_default().await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /landing?q=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s, true))
        .await
        .expect("response in time")
        .expect("well-formed response");
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(gw.url("/landing?q=1").as_str()),
        "the redirect must go to the configured public origin, not the request's Host"
    );
}

#[tokio::test]
async fn admin_listener_answers_health_and_readiness() {
    let gw = Gateway::start_default().await;
    for path in ["/healthz", "/readyz"] {
        let resp = gw
            .plain
            .get(format!("http://{}{}", gw.admin, path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "admin {path}");
    }
}

#[tokio::test]
async fn http2_client_is_served_and_forwarded_to_http1_upstream() {
    let gw = Gateway::start_default().await;
    let session = gw.login_alice().await;
    let resp = gw
        .get_with("/private/h2?x=1", &session.cookie_header())
        .await;
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "ALPN h2 was offered; the gateway should speak HTTP/2"
    );
    assert_hsts(resp.headers(), "HTTP/2 response");
    let echo = Echo::from(resp).await;
    assert_eq!(echo.path, "/private/h2");
    assert_eq!(echo.query, "x=1");
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    // The upstream speaks HTTP/1.1, so it must have received a Host header.
    assert_eq!(echo.header("host"), Some(gw.host_header().as_str()));

    // A body over HTTP/2 arrives intact.
    let resp = gw
        .post("/private/h2-body")
        .header("cookie", session.cookie_header())
        .header("content-type", "text/plain")
        .body("hello over h2")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.body, "hello over h2");
}

/// The header every HTTPS response carries, from a gateway started with these `[server]` keys.
async fn hsts_of(keys: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    let cfg = keys
        .iter()
        .fold(GatewayConfig::new(), |c, (k, v)| c.set("server", k, v));
    let gw = Gateway::start(cfg).await;
    let mut seen = Vec::new();
    for (what, req) in [
        ("public 200", gw.get("/public/x")),
        ("login page", gw.get("/.auth/login")),
        ("invalid path (400)", gw.get("/public/%ff")),
        (
            "protected API without session (401)",
            gw.get("/private/x").header("accept", "application/json"),
        ),
    ] {
        let resp = req.send().await.unwrap();
        let v = resp
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        seen.push((what.to_string(), v));
    }
    seen
}

/// HSTS as configured: an operator whose sibling subdomains are not all on HTTPS turns
/// `includeSubDomains` off (with it, a browser that visited the gateway refuses every plain
/// sibling for a year), one who preloads gets `preload`; the default stays a year with
/// subdomains. Every response carries the one configured value.
#[tokio::test]
async fn hsts_follows_the_server_hsts_settings_on_every_response() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "max-age=31536000; includeSubDomains"),
        (
            &[
                ("hsts_max_age", "\"30d\""),
                ("hsts_include_subdomains", "false"),
            ],
            "max-age=2592000",
        ),
        (
            &[("hsts_max_age", "\"730d\""), ("hsts_preload", "true")],
            "max-age=63072000; includeSubDomains; preload",
        ),
    ];
    for (keys, want) in cases {
        for (what, got) in hsts_of(keys).await {
            assert_eq!(got.as_deref(), Some(want), "{keys:?}: {what}");
        }
    }
}
