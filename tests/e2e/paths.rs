//! Path normalisation before routing, and agreement between what the policy saw and what the
//! upstream receives.
//!
//! Attacks covered (raw bytes over TLS, since HTTP clients normalise these away):
//! - traversal out of a public prefix: `/public/../private`, `/public/%2e%2e/private`,
//!   `/public/.%2E/private`;
//! - encoded separators that a backend decodes after the policy decision: `%2F`, `%5C` (any
//!   case), and NUL (`%00`);
//! - invalid UTF-8 in percent-encoding (`%ff`, `%c3%28`);
//! - policy/upstream disagreement: the upstream must receive the normalised path the policy
//!   judged (`//`, `.`, `..` resolved), never the raw one;
//! - policy fooled by the query string (`/private?/public/`).

use crate::harness::*;

fn assert_not_forwarded_status(status: u16, what: &str) {
    assert!(
        status == 401 || status == 302,
        "{what}: expected the protected-route answer (401/302), got {status}"
    );
}

#[tokio::test]
async fn dot_dot_from_public_prefix_does_not_reach_protected_path() {
    let gw = Gateway::start_default().await;
    for target in [
        "/public/../private",
        "/public/../private/secret",
        "/public/./../private",
        "/public/x/../../private",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_not_forwarded_status(resp.status, target);
    }
    gw.assert_upstream_never_saw("private").await;
}

#[tokio::test]
async fn encoded_dot_dot_does_not_escape_public_prefix() {
    let gw = Gateway::start_default().await;
    for target in [
        "/public/%2e%2e/private",
        "/public/%2E%2E/private",
        "/public/.%2e/private",
        "/public/%2e./private",
        "/public/%2e%2e/private?x=1",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_not_forwarded_status(resp.status, target);
    }
    gw.assert_upstream_never_saw("private").await;
}

#[tokio::test]
async fn encoded_slash_backslash_or_nul_in_path_is_rejected() {
    let gw = Gateway::start_default().await;
    for target in [
        "/public/..%2Fprivate",
        "/public/..%2fprivate",
        "/public/%2F..",
        "/public/a%2Fb",
        "/public/%5C..%5Cprivate",
        "/public/..%5cprivate",
        "/public/a%00b",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);
}

#[tokio::test]
async fn invalid_utf8_percent_encoding_is_rejected() {
    let gw = Gateway::start_default().await;
    for target in ["/%ff", "/public/%ff", "/public/%c3%28", "/public/%e2%82"] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);
}

#[tokio::test]
async fn double_slash_is_collapsed_before_forwarding() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    let echo = Echo::from_raw(&gw.raw_get("/private//x", &[("Cookie", &cookie)]).await);
    assert_eq!(echo.path, "/private/x");
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    // `//private` must not turn into an authority or a public path either.
    let resp = gw.raw_get("//private/y", &[]).await;
    assert!(
        [302, 400, 401].contains(&resp.status),
        "//private/y without a session: {}",
        resp.status
    );
    gw.assert_upstream_never_saw("/private/y").await;
}

#[tokio::test]
async fn upstream_receives_the_normalised_path_the_policy_saw() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();

    // Judged as /private/y (protected): forwarded as /private/y with identity.
    let echo = Echo::from_raw(
        &gw.raw_get("/public/../private/y", &[("Cookie", &cookie)])
            .await,
    );
    assert_eq!(echo.path, "/private/y");
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    let echo = Echo::from_raw(
        &gw.raw_get("/private/a/./b/../c?k=v", &[("Cookie", &cookie)])
            .await,
    );
    assert_eq!(echo.path, "/private/a/c");
    assert_eq!(echo.query, "k=v");

    let echo = Echo::from_raw(
        &gw.raw_get("/public/%2e%2e/private/z", &[("Cookie", &cookie)])
            .await,
    );
    assert_eq!(echo.path, "/private/z");

    // Judged as /public/z (public, no session needed): forwarded as /public/z.
    let echo = Echo::from_raw(&gw.raw_get("/private/../public/z", &[]).await);
    assert_eq!(echo.path, "/public/z");
    assert!(echo.header_all("x-auth-user").is_empty());

    // Nothing the upstream received still carries a dot segment or an empty segment.
    for e in gw.journal().await {
        assert!(
            !e.path.contains("/../")
                && !e.path.contains("/./")
                && !e.path.contains("//")
                && !e.path.to_ascii_lowercase().contains("%2e"),
            "a non-normalised path reached the upstream: {e:?}"
        );
    }
}

#[tokio::test]
async fn policy_ignores_the_query_string() {
    let gw = Gateway::start_default().await;
    for target in [
        "/private?/public/",
        "/private?x=/../public/",
        "/private/x?/public/y",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_not_forwarded_status(resp.status, target);
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);
}
