//! Ambiguous HTTP/1.1 input is refused with `400` and never forwarded.
//!
//! Attacks covered (raw bytes over TLS, on a public path so that anything not refused would
//! show up in the upstream's journal):
//! - request smuggling with both `Content-Length` and `Transfer-Encoding` (CL.TE / TE.CL);
//! - conflicting `Content-Length` values;
//! - Host confusion: two `Host` headers (equal or different), no `Host` at all, an absolute-form
//!   target naming another authority than `Host`;
//! - session cookie confusion: `__Host-sg-access` sent twice (cookie tossing, or two sessions
//!   in one request), in one `Cookie` header or in two.

use crate::harness::*;

async fn assert_400_not_forwarded(gw: &Gateway, request: String, what: &str) {
    let before = gw.journal().await.len();
    let resp = gw.raw(request.as_bytes()).await;
    assert_eq!(resp.status, 400, "{what}: {}", resp.body_text());
    let j = gw.journal().await;
    assert_eq!(j.len(), before, "{what} reached the upstream: {j:?}");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    // CL.TE: a front end honouring Content-Length would forward the smuggled request as body.
    let smuggled = format!("GET /public/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let body = format!("0\r\n\r\n{smuggled}");
    assert_400_not_forwarded(
        &gw,
        format!(
            "POST /public/cl-te HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        "Content-Length + Transfer-Encoding",
    )
    .await;
    // TE first, CL second.
    assert_400_not_forwarded(
        &gw,
        format!(
            "POST /public/te-cl HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        "Transfer-Encoding + Content-Length",
    )
    .await;
    gw.assert_upstream_never_saw("smuggled").await;
}

#[tokio::test]
async fn conflicting_content_lengths_are_rejected() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    assert_400_not_forwarded(
        &gw,
        format!(
            "POST /public/cl-cl HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\
             Content-Length: 11\r\nConnection: close\r\n\r\nhello world"
        ),
        "two different Content-Length headers",
    )
    .await;
}

#[tokio::test]
async fn duplicate_host_header_is_rejected() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    assert_400_not_forwarded(
        &gw,
        format!(
            "GET /public/dup-host HTTP/1.1\r\nHost: {h}\r\nHost: evil.example\r\n\
             Connection: close\r\n\r\n"
        ),
        "two different Host headers",
    )
    .await;
    assert_400_not_forwarded(
        &gw,
        format!(
            "GET /public/dup-host HTTP/1.1\r\nHost: {h}\r\nHost: {h}\r\nConnection: close\r\n\r\n"
        ),
        "two equal Host headers",
    )
    .await;
}

#[tokio::test]
async fn missing_host_header_is_rejected() {
    let gw = Gateway::start_default().await;
    assert_400_not_forwarded(
        &gw,
        "GET /public/no-host HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        "HTTP/1.1 without Host",
    )
    .await;
}

#[tokio::test]
async fn absolute_form_target_is_rejected() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    assert_400_not_forwarded(
        &gw,
        format!(
            "GET https://evil.example/public/x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
        ),
        "absolute-form target naming another authority",
    )
    .await;
}

#[tokio::test]
async fn duplicate_session_cookie_is_rejected() {
    let gw = Gateway::start_default().await;
    let alice = gw.login_alice().await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    let h = gw.host_header();
    // Control: each cookie alone is accepted.
    let echo = Echo::from_raw(
        &gw.raw_get("/private/one", &[("Cookie", &alice.access_only())])
            .await,
    );
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    for (what, cookie_lines) in [
        (
            "two sessions in one Cookie header",
            format!(
                "Cookie: {ACCESS_COOKIE}={}; {ACCESS_COOKIE}={}\r\n",
                bob.access, alice.access
            ),
        ),
        (
            "the same cookie twice",
            format!(
                "Cookie: {ACCESS_COOKIE}={a}; theme=dark; {ACCESS_COOKIE}={a}\r\n",
                a = alice.access
            ),
        ),
        (
            "two Cookie headers",
            format!(
                "Cookie: {ACCESS_COOKIE}={}\r\nCookie: {ACCESS_COOKIE}={}\r\n",
                alice.access, bob.access
            ),
        ),
    ] {
        let path = "/private/dup-cookie";
        assert_400_not_forwarded(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: {h}\r\n{cookie_lines}Connection: close\r\n\r\n"),
            what,
        )
        .await;
    }
    gw.assert_upstream_never_saw("dup-cookie").await;
}
