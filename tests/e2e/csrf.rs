//! Cross-site request forgery on protected routes (`[csrf] mode = "origin"`, the default).
//!
//! Beyond the brief's contract, from DESIGN.md §7: unsafe methods on protected routes must
//! prove they are same-origin (`Sec-Fetch-Site`, else `Origin`, else `Referer`).
//!
//! Attacks covered:
//! - a cross-site form POST riding the victim's `SameSite=Lax` cookies (Lax still sends them
//!   on some top-level navigations, and same-site subdomains are not same-origin);
//! - a POST/DELETE with no origin evidence at all (DESIGN says "must prove"; see report);
//! - `Sec-Fetch-Site: cross-site` from a modern browser, and `same-site` from a sibling;
//! - look-alike origins and referers (`https://localhost.evil.example`, another port, the
//!   listener's own port behind the port mapping, `http:`, the IP instead of the name, a sibling
//!   subdomain, `null`), for POST, PUT, PATCH, DELETE;
//! - method overrides (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`,
//!   `_method=`) that turn a "safe" GET into a DELETE in the app's framework;
//! - look-alikes of a configured `csrf.allowed_origins` entry;
//! - login CSRF (signing the victim into the attacker's account) and cross-site requests to the
//!   gateway's own unsafe endpoints (logout, logout-all, refresh, ending a session);
//! - in `token` mode: a missing token, a header that differs from the cookie, a token from
//!   another session of the same user or of another user, a forged pair planted in both
//!   places (cookie tossing), the right token from another origin.
//!
//! Every refusal is `403` and leaves the upstream untouched (its journal is checked).

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

// ---------------------------------------------------------------------------------------------
// Exact origins, method overrides, allowed origins, the gateway's own endpoints, token mode
// ---------------------------------------------------------------------------------------------

/// Extra request headers.
type Header<'a> = (&'a str, &'a str);
type Headers<'a> = &'a [Header<'a>];

/// `status` of `method path` with the session's cookies and these headers.
async fn send_as(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gw
        .client
        .request(method, gw.url(path))
        .header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

async fn assert_refused_403(resp: reqwest::Response, what: &str) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 403, "{what}: {text}");
    assert!(
        !text.contains("\"headers\""),
        "{what}: answered by the upstream: {text}"
    );
}

#[tokio::test]
async fn look_alike_origins_and_referers_are_refused_with_403() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    // The public origin is `https://<host>` on the default port; the gateway listens on
    // another port (`gw.https`), as behind a port mapping.
    let (origin, host, bound_port) = (gw.origin(), gw.host_header(), gw.https.port());
    let origins = [
        format!("{origin}.evil.example"),
        format!("{origin}:8443"),
        format!("{origin}:{bound_port}"),
        format!("http://{host}"),
        "https://127.0.0.1".to_string(),
        format!("https://127.0.0.1:{bound_port}"),
        format!("https://evil.{host}"),
        // A prefix of the origin (an origin check written as `public_origin.starts_with(o)`).
        format!("https://{}", &host[..host.len() - 1]),
        "null".to_string(),
    ];
    for o in &origins {
        let resp = send_as(
            &gw,
            reqwest::Method::POST,
            "/private/look-alike",
            &s.cookie_header(),
            &[("origin", o)],
        )
        .await;
        assert_refused_403(resp, &format!("Origin {o}")).await;
    }
    let referers = [
        format!("{origin}.evil.example/form"),
        format!("http://{host}/form"),
        format!("https://evil.example/{origin}/"),
        "not a url".to_string(),
    ];
    for r in &referers {
        let resp = send_as(
            &gw,
            reqwest::Method::POST,
            "/private/look-alike",
            &s.cookie_header(),
            &[("referer", r)],
        )
        .await;
        assert_refused_403(resp, &format!("Referer {r}")).await;
    }
    // A same-site sibling is not the same origin.
    let resp = send_as(
        &gw,
        reqwest::Method::POST,
        "/private/look-alike",
        &s.cookie_header(),
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", &format!("https://evil.{host}")),
        ],
    )
    .await;
    assert_refused_403(resp, "Sec-Fetch-Site: same-site").await;
    gw.assert_upstream_never_saw("/private/look-alike").await;

    // The genuine article passes, by Referer alone too.
    let referer = gw.url("/private/form?step=2");
    let ok = send_as(
        &gw,
        reqwest::Method::POST,
        "/private/by-referer",
        &s.cookie_header(),
        &[("referer", &referer)],
    )
    .await;
    assert_eq!(ok.status(), 200, "a same-origin Referer is evidence enough");
}

#[tokio::test]
async fn put_patch_and_delete_from_another_origin_are_refused() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
        reqwest::Method::POST,
    ] {
        let resp = send_as(
            &gw,
            method.clone(),
            "/private/resource",
            &s.cookie_header(),
            &[("origin", "https://evil.example")],
        )
        .await;
        assert_refused_403(resp, &format!("{method} from another origin")).await;
        let resp = send_as(
            &gw,
            method.clone(),
            "/private/resource",
            &s.cookie_header(),
            &[],
        )
        .await;
        assert_refused_403(resp, &format!("{method} without evidence")).await;
    }
    gw.assert_upstream_never_saw("/private/resource").await;
    let ok = send_as(
        &gw,
        reqwest::Method::DELETE,
        "/private/resource-ok",
        &s.cookie_header(),
        &[("origin", &gw.origin())],
    )
    .await;
    assert_eq!(ok.status(), 200, "a same-origin DELETE is forwarded");
}

#[tokio::test]
async fn method_override_makes_a_get_an_unsafe_request() {
    // Frameworks (Rails, Laravel, Express method-override) turn these into DELETE/PUT: the
    // gateway must hold them to the same rule.
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cases: [(&str, &str, Headers); 6] = [
        (
            "X-HTTP-Method-Override",
            "/private/override-a",
            &[
                ("x-http-method-override", "DELETE"),
                ("origin", "https://evil.example"),
            ],
        ),
        (
            "X-HTTP-Method",
            "/private/override-b",
            &[("x-http-method", "PUT"), ("origin", "https://evil.example")],
        ),
        (
            "X-Method-Override",
            "/private/override-c",
            &[("x-method-override", "PATCH")],
        ),
        (
            "_method parameter",
            "/private/override-d?_method=DELETE",
            &[("referer", "https://evil.example/")],
        ),
        (
            "_METHOD parameter, no evidence",
            "/private/override-e?id=1&_METHOD=put",
            &[],
        ),
        (
            "override with Sec-Fetch-Site cross-site",
            "/private/override-f",
            &[
                ("x-http-method-override", "DELETE"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ];
    for (what, path, headers) in cases {
        let resp = send_as(&gw, reqwest::Method::GET, path, &s.cookie_header(), headers).await;
        assert_refused_403(resp, what).await;
    }
    gw.assert_upstream_never_saw("/private/override").await;
    // The same override from the gateway's own origin is an ordinary same-origin request.
    let ok = send_as(
        &gw,
        reqwest::Method::GET,
        "/private/ok-override?_method=DELETE",
        &s.cookie_header(),
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn allowed_origins_are_accepted_exactly_and_nothing_like_them() {
    let gw = Gateway::start(
        GatewayConfig::new().extra("[csrf]\nallowed_origins = [\"https://app.example.test\"]\n"),
    )
    .await;
    let s = gw.login_alice().await;
    for headers in [
        &[("origin", "https://app.example.test")][..],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.example.test"),
        ],
        &[("referer", "https://app.example.test/page")],
    ] {
        let resp = send_as(
            &gw,
            reqwest::Method::POST,
            "/private/allowed",
            &s.cookie_header(),
            headers,
        )
        .await;
        assert_eq!(resp.status(), 200, "{headers:?}");
    }
    for o in [
        "https://app.example.test.evil.example",
        "http://app.example.test",
        "https://app.example.test:8443",
        "https://evil.app.example.test",
    ] {
        let resp = send_as(
            &gw,
            reqwest::Method::POST,
            "/private/not-allowed",
            &s.cookie_header(),
            &[("origin", o)],
        )
        .await;
        assert_refused_403(resp, &format!("Origin {o}")).await;
    }
    gw.assert_upstream_never_saw("/private/not-allowed").await;
}

#[tokio::test]
async fn login_csrf_from_another_origin_is_refused() {
    // Login CSRF signs the victim into the attacker's account (their later input lands there).
    let gw = Gateway::start_default().await;
    let form = form_urlencode(&[("username", "bob"), ("password", BOB_PASSWORD)]);
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("referer", "https://evil.example/login-csrf.html")],
    ] {
        let mut req = gw
            .client
            .post(gw.url("/.auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert!(
            Session::from_response_headers(resp.headers()).is_none(),
            "{headers:?}: a cross-site login set session cookies"
        );
        assert_refused_403(resp, &format!("form login with {headers:?}")).await;
    }
    let resp = gw
        .client
        .post(gw.url("/.auth/login"))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({"username": "bob", "password": BOB_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_refused_403(resp, "JSON login from another origin").await;
    assert!(
        gw.audit_events().iter().all(|e| e["event"] != "login_ok"),
        "a cross-site login succeeded: {}",
        gw.audit_text()
    );
}

#[tokio::test]
async fn gateway_unsafe_endpoints_refuse_cross_site_requests() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let me: serde_json::Value = gw
        .get_with("/.auth/me", &s.cookie_header())
        .await
        .json()
        .await
        .unwrap();
    let handle = me["session"].as_str().unwrap().to_string();
    let evil = [("origin", "https://evil.example")];
    let cases = [
        (
            reqwest::Method::POST,
            "/.auth/logout".to_string(),
            &evil[..],
        ),
        (
            reqwest::Method::POST,
            "/.auth/logout-all".to_string(),
            &evil,
        ),
        (reqwest::Method::POST, "/.auth/refresh".to_string(), &evil),
        (
            reqwest::Method::DELETE,
            format!("/.auth/sessions/{handle}"),
            &evil,
        ),
        (
            reqwest::Method::POST,
            format!("/.auth/sessions/{handle}/revoke"),
            &[("sec-fetch-site", "cross-site")],
        ),
        // A cookie-authenticated request with no evidence at all.
        (reqwest::Method::POST, "/.auth/logout".to_string(), &[]),
        (reqwest::Method::POST, "/.auth/logout-all".to_string(), &[]),
    ];
    for (method, path, headers) in cases {
        let resp = send_as(&gw, method.clone(), &path, &s.cookie_header(), headers).await;
        assert_refused_403(resp, &format!("{method} {path} {headers:?}")).await;
    }
    // None of them touched the session.
    let resp = gw.get_with("/private/still-here", &s.cookie_header()).await;
    assert_eq!(
        Echo::from(resp).await.header("x-auth-user"),
        Some("alice"),
        "a refused cross-site request ended the session"
    );
}

const CSRF_COOKIE: &str = "__Host-sg-csrf";

/// `GET /.auth/csrf`: the token from the JSON body, checked against the cookie it sets.
async fn csrf_token(gw: &Gateway, s: &Session) -> String {
    let resp = gw.get_with("/.auth/csrf", &s.cookie_header()).await;
    assert_eq!(resp.status(), 200);
    let c = set_cookie_named(resp.headers(), CSRF_COOKIE).unwrap_or_else(|| {
        panic!(
            "GET /.auth/csrf sets {CSRF_COOKIE}: {:?}",
            set_cookies(resp.headers())
        )
    });
    let v: serde_json::Value = resp.json().await.unwrap();
    let token = v["csrf_token"].as_str().expect("csrf_token").to_string();
    assert!(!token.is_empty());
    assert_eq!(c.value, token, "the cookie carries the same token");
    assert!(!c.has("httponly"), "scripts must read it: {}", c.raw);
    assert!(c.has("secure"), "{}", c.raw);
    assert_eq!(c.attr("path"), Some("/"), "{}", c.raw);
    assert!(!c.has("domain"), "{}", c.raw);
    token
}

#[tokio::test]
async fn token_mode_requires_the_session_bound_double_submit_token() {
    let gw = Gateway::start(GatewayConfig::new().extra("[csrf]\nmode = \"token\"\n")).await;
    let alice = gw.login_alice().await;
    let alice_other = gw.login_alice().await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    let token = csrf_token(&gw, &alice).await;
    let other_token = csrf_token(&gw, &alice_other).await;
    let bob_token = csrf_token(&gw, &bob).await;
    assert_ne!(token, other_token, "each session has its own token");
    let origin = gw.origin();
    let with_cookie = |t: &str| format!("{}; {CSRF_COOKIE}={t}", alice.cookie_header());

    let ok = send_as(
        &gw,
        reqwest::Method::POST,
        "/private/token-ok",
        &with_cookie(&token),
        &[("origin", &origin), ("x-csrf-token", &token)],
    )
    .await;
    assert_eq!(Echo::from(ok).await.header("x-auth-user"), Some("alice"));

    let cases: Vec<(&str, String, Vec<Header>)> = vec![
        (
            "no header",
            with_cookie(&token),
            vec![("origin", origin.as_str())],
        ),
        (
            "no cookie",
            alice.cookie_header(),
            vec![
                ("origin", origin.as_str()),
                ("x-csrf-token", token.as_str()),
            ],
        ),
        (
            "header differs from cookie",
            with_cookie(&other_token),
            vec![
                ("origin", origin.as_str()),
                ("x-csrf-token", token.as_str()),
            ],
        ),
        (
            "both from another session of the same user",
            with_cookie(&other_token),
            vec![
                ("origin", origin.as_str()),
                ("x-csrf-token", other_token.as_str()),
            ],
        ),
        (
            "both from another user's session",
            with_cookie(&bob_token),
            vec![
                ("origin", origin.as_str()),
                ("x-csrf-token", bob_token.as_str()),
            ],
        ),
        (
            "forged token, planted in both",
            with_cookie("AAAAAAAAAAAAAAAAAAAAAA.AAAA"),
            vec![
                ("origin", origin.as_str()),
                ("x-csrf-token", "AAAAAAAAAAAAAAAAAAAAAA.AAAA"),
            ],
        ),
        (
            "right token from another origin",
            with_cookie(&token),
            vec![
                ("origin", "https://evil.example"),
                ("x-csrf-token", token.as_str()),
            ],
        ),
    ];
    for (what, cookie, headers) in cases {
        let resp = send_as(
            &gw,
            reqwest::Method::POST,
            "/private/token-refused",
            &cookie,
            &headers,
        )
        .await;
        assert_refused_403(resp, what).await;
    }
    gw.assert_upstream_never_saw("/private/token-refused").await;
}
