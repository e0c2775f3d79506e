//! Cross-site request forgery on protected routes (`[csrf] mode = "origin"`, the default).
//!
//! Beyond the brief's contract, from DESIGN.md §7: unsafe methods on protected routes must
//! prove they are same-origin (`Sec-Fetch-Site`, else `Origin`, else `Referer`).
//!
//! Attacks covered:
//! - a cross-site form POST riding the victim's `SameSite=Lax` cookies (Lax still sends them
//!   on some top-level navigations, and same-site subdomains are not same-origin);
//! - a POST/DELETE with no origin evidence at all (DESIGN says "must prove"; see report);
//! - `Sec-Fetch-Site: cross-site` from a modern browser.

use crate::harness::*;

async fn post_from(gw: &Gateway, s: &Session, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = gw
        .client
        .post(gw.url(path))
        .header("cookie", s.cookie_header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=1000&to=mallory");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn same_origin_post_with_session_is_forwarded() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let origin = gw.origin();
    assert_eq!(
        post_from(&gw, &s, "/private/transfer-ok", &[("origin", &origin)]).await,
        200
    );
    assert_eq!(
        post_from(
            &gw,
            &s,
            "/private/transfer-ok2",
            &[("sec-fetch-site", "same-origin")]
        )
        .await,
        200
    );
}

#[tokio::test]
async fn cross_site_post_with_session_cookie_is_not_forwarded() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("foreign Origin", &[("origin", "https://evil.example")]),
        ("Origin null", &[("origin", "null")]),
        (
            "foreign Referer",
            &[("referer", "https://evil.example/attack.html")],
        ),
        (
            "Sec-Fetch-Site cross-site",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
        ),
    ];
    for (what, headers) in cases {
        let status = post_from(&gw, &s, "/private/transfer", headers).await;
        assert!(
            (400..500).contains(&status),
            "{what}: a cross-site POST with the victim's cookies got {status}"
        );
    }
    gw.assert_upstream_never_saw("/private/transfer").await;
}

#[tokio::test]
async fn unsafe_request_without_origin_evidence_is_not_forwarded() {
    // DESIGN.md §7: unsafe methods on protected routes "must prove they are same-origin".
    // A request with no Sec-Fetch-Site, no Origin and no Referer proves nothing.
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let status = post_from(&gw, &s, "/private/no-evidence", &[]).await;
    assert!(
        (400..500).contains(&status),
        "a cookie-authenticated POST without any origin evidence got {status}"
    );
    let resp = gw
        .client
        .delete(gw.url("/private/no-evidence"))
        .header("cookie", s.cookie_header())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "DELETE: {}", resp.status());
    gw.assert_upstream_never_saw("/private/no-evidence").await;
}
