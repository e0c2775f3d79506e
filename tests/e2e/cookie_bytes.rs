//! Cookies that are not ASCII text (issue 10, item 18).
//!
//! Attacks and accidents covered (raw HTTP/1.1 bytes, and HTTP/2 through the client):
//! - a cookie with a non-ASCII byte in its value or name — UTF-8 (`café`), Latin-1 (`\xe9`),
//!   bytes that are no text at all (`\xff\xfe`) — set by a sibling domain or the app itself:
//!   it used to make every request fail with a false "sent more than once"; now it reaches
//!   the app byte for byte, in one `Cookie` header or split over several;
//! - the gateway's cookies beside such a cookie: still found (the session works), still
//!   removed from what the app receives, and a duplicate of one still refused, with the
//!   honest reason;
//! - a gateway cookie whose value holds such bytes: no token, so the request is
//!   unauthenticated (401/302), not a misleading 400.

use crate::harness::*;

/// What the upstream received in its `Cookie` header(s), as bytes (its echo decodes header
/// bytes as Latin-1, one char per byte).
fn cookie_bytes(echo: &Echo) -> Vec<u8> {
    echo.header_all("cookie")
        .join("; ")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 char"))
        .collect()
}

fn raw_request(gw: &Gateway, path: &str, cookie_lines: &[&[u8]], accept: &str) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n",
        gw.host_header()
    )
    .into_bytes();
    for c in cookie_lines {
        req.extend_from_slice(b"Cookie: ");
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    req
}

#[tokio::test]
async fn non_ascii_cookies_reach_the_app_byte_for_byte() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;

    // Protected route: the session is found among them, and removed from what the app gets.
    let mut cookie = b"theme=caf\xc3\xa9; ".to_vec();
    cookie.extend_from_slice(s.access_only().as_bytes());
    cookie.extend_from_slice(b"; lang=\xe9t\xe9; caf\xe9=1; ");
    cookie.extend_from_slice(s.refresh_only().as_bytes());
    let resp = gw
        .raw(&raw_request(&gw, "/private/bytes", &[&cookie], "*/*"))
        .await;
    let echo = Echo::from_raw(&resp);
    assert_eq!(echo.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(
        cookie_bytes(&echo),
        b"theme=caf\xc3\xa9; lang=\xe9t\xe9; caf\xe9=1".to_vec()
    );

    // Public route, no gateway cookie: forwarded exactly as sent.
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/public/bytes",
            &[b"x=\xff\xfe; a=1"],
            "*/*",
        ))
        .await;
    assert_eq!(
        cookie_bytes(&Echo::from_raw(&resp)),
        b"x=\xff\xfe; a=1".to_vec()
    );

    // Split over two headers, the session in the second.
    let access = s.access_only();
    let mut second = access.as_bytes().to_vec();
    second.extend_from_slice(b"; y=\xc3\xa9");
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/private/bytes-split",
            &[b"x=\xff", &second],
            "*/*",
        ))
        .await;
    let echo = Echo::from_raw(&resp);
    assert_eq!(echo.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(cookie_bytes(&echo), b"x=\xff; y=\xc3\xa9".to_vec());

    // HTTP/2.
    let mut value = b"x=\xe9; ".to_vec();
    value.extend_from_slice(access.as_bytes());
    let resp = gw
        .get("/private/bytes-h2")
        .header(
            "cookie",
            reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(cookie_bytes(&echo), b"x=\xe9".to_vec());
    assert!(
        !serde_json::to_string(&echo.headers)
            .unwrap()
            .contains(&s.access)
    );
}

#[tokio::test]
async fn gateway_cookies_beside_non_ascii_bytes_keep_honest_answers() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let t = gw.login_alice().await;

    // A duplicate of a gateway cookie is still refused, and says so.
    let mut dup = t.access_only().into_bytes();
    dup.extend_from_slice(b"; z=\xe9");
    let mut first = b"x=\xff; ".to_vec();
    first.extend_from_slice(s.access_only().as_bytes());
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/private/dup",
            &[&first, &dup],
            "application/json",
        ))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body_text());
    assert!(
        resp.body_text().contains("more than once"),
        "{}",
        resp.body_text()
    );

    // A non-ASCII cookie without a session: the protected route's usual answers, not a 400.
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/private/none",
            &[b"x=\xff\xfe"],
            "application/json",
        ))
        .await;
    assert_eq!(resp.status, 401, "{}", resp.body_text());
    assert!(!resp.body_text().contains("more than once"));
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/private/none-nav",
            &[b"caf\xe9=1"],
            "text/html",
        ))
        .await;
    assert_eq!(resp.status, 302, "{}", resp.body_text());

    // A gateway cookie whose value is no text is no token: unauthenticated, and removed.
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/private/bad-value",
            &[b"__Host-sg-access=\xff\xfe; a=1"],
            "application/json",
        ))
        .await;
    assert_eq!(resp.status, 401, "{}", resp.body_text());
    let resp = gw
        .raw(&raw_request(
            &gw,
            "/public/bad-value",
            &[b"__Host-sg-access=\xff\xfe; a=\xe9"],
            "*/*",
        ))
        .await;
    let echo = Echo::from_raw(&resp);
    assert_eq!(cookie_bytes(&echo), b"a=\xe9".to_vec());
    assert!(echo.header_all("x-auth-user").is_empty());

    for path in ["/private/dup", "/private/none", "/private/bad-value"] {
        gw.assert_upstream_never_saw(path).await;
    }
}
