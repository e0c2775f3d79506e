//! Spoofed identity by header family and by folded spelling (issue 10, item 13).
//!
//! Attacks covered (raw HTTP/1.1 bytes, so names keep their case and punctuation, and HTTP/2
//! through the client):
//! - identity headers other auth proxies set, which a legacy app moved from oauth2-proxy,
//!   Apache, Authelia, an ingress or a cloud identity-aware proxy trusts: `X-Forwarded-User`,
//!   `-Email`, `-Groups`, `-Preferred-Username`, `-Access-Token`, `X-Auth-Request-*`,
//!   `X-Auth-Email`, `Remote-User`, `Remote-Groups`, `X-Remote-User`, `X-User`, `X-Envoy-*`,
//!   `X-Webauth-User`, `X-Authentik-*`, `X-Pomerium-*`, `X-Goog-Authenticated-*`,
//!   `X-Amzn-Oidc-*`, `X-MS-Client-Principal-*`, `Cf-Access-*`, `X-Sessiongate-*` — in any letter
//!   case, on public and protected routes;
//! - the same names in spellings that a folding server (CGI, PHP, WSGI, Rack, Apache's
//!   `HTTP_*` variables) reads as the real one: `_` and `.` instead of `-`, mixed separators,
//!   mixed case — refused, never forwarded;
//! - names the operator adds (`identity.strip_headers`, a trailing `*` for a prefix), in the same
//!   spellings;
//! - `X-Forwarded-*` from a trusted proxy: only `X-Forwarded-For` is taken (and extended).

use crate::harness::*;

/// Header names a client sends to pose as someone, in the case a client might use.
const FAMILY: &[&str] = &[
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-FORWARDED-GROUPS",
    "x-forwarded-preferred-username",
    "X-Forwarded-Access-Token",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Email",
    "X-Auth-Userid",
    "Remote-User",
    "REMOTE-GROUPS",
    "Remote-Email",
    "X-Remote-User",
    "X-Remote-Group",
    "X-User",
    "X-Envoy-Original-Path",
    "X-Envoy-External-Address",
    "X-WEBAUTH-USER",
    "X-authentik-username",
    "X-Pomerium-Claim-Email",
    "X-Goog-Authenticated-User-Email",
    "X-Amzn-Oidc-Identity",
    "X-MS-CLIENT-PRINCIPAL-NAME",
    "Cf-Access-Authenticated-User-Email",
    "X-Sessiongate-Anything",
    "X-Real-IP",
    "True-Client-IP",
];

/// `GET <path>` with each of `names` set to `spoofed-<i>`, as raw bytes.
fn spoofing_request(gw: &Gateway, path: &str, cookie: Option<&str>, names: &[&str]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", gw.host_header());
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    for (i, n) in names.iter().enumerate() {
        req.push_str(&format!("{n}: spoofed-{i}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

fn assert_no_spoofed_header(echo: &Echo, what: &str) {
    for n in FAMILY {
        assert!(
            echo.header_all(n).is_empty(),
            "{what}: {n} reached the upstream: {:?}",
            echo.header_all(n)
        );
    }
    let all = serde_json::to_string(&echo.headers).unwrap();
    assert!(
        !all.contains("spoofed-"),
        "{what}: a spoofed value reached the upstream: {all}"
    );
}

#[tokio::test]
async fn identity_header_families_are_stripped_on_public_and_protected_routes() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;

    let req = spoofing_request(&gw, "/public/family", None, FAMILY);
    let echo = Echo::from_raw(&gw.raw(req.as_bytes()).await);
    assert_no_spoofed_header(&echo, "public route");
    assert!(echo.header_all("x-auth-user").is_empty());

    let cookie = s.cookie_header();
    let req = spoofing_request(&gw, "/private/family", Some(&cookie), FAMILY);
    let echo = Echo::from_raw(&gw.raw(req.as_bytes()).await);
    assert_no_spoofed_header(&echo, "protected route");
    assert_eq!(echo.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.1"]);

    // HTTP/2 (lower-case names on the wire) takes the same path.
    let mut h2 = gw.get("/public/family-h2");
    for (i, n) in FAMILY.iter().enumerate() {
        h2 = h2.header(*n, format!("spoofed-{i}"));
    }
    let resp = h2.send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_no_spoofed_header(&Echo::from(resp).await, "HTTP/2");

    // Neighbours that are no identity header still pass.
    let echo = Echo::from_raw(
        &gw.raw_get(
            "/public/neighbours",
            &[
                ("X-User-Agent-Hint", "kept-1"),
                ("X-Authorization-Mode", "kept-2"),
                ("X_App_Thing", "kept-3"),
            ],
        )
        .await,
    );
    assert_eq!(echo.header_all("x-user-agent-hint"), vec!["kept-1"]);
    assert_eq!(echo.header_all("x-authorization-mode"), vec!["kept-2"]);
    assert_eq!(echo.header_all("x_app_thing"), vec!["kept-3"]);
}

#[tokio::test]
async fn folded_spellings_of_identity_headers_are_refused() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    for name in [
        "X_Forwarded_User",
        "x.forwarded.user",
        "X-Forwarded_Email",
        "x_auth_request_user",
        "X.Auth.Request.Email",
        "x.auth.user",
        "X.AUTH.ROLES",
        "x-auth.session",
        "x_auth.user",
        "Remote_User",
        "remote.user",
        "X_Remote_User",
        "x.user",
        "X_Envoy_Original_Path",
        "x.forwarded.for",
        "X_Real_IP",
        "x~auth~user",
        "X_Sessiongate_Grant",
    ] {
        for (path, cookie) in [("/public/folded", None), ("/private/folded", Some(&cookie))] {
            let req = spoofing_request(&gw, path, cookie.map(String::as_str), &[name]);
            let resp = gw.raw(req.as_bytes()).await;
            assert_eq!(resp.status, 400, "{name} on {path}: {}", resp.body_text());
            assert!(
                resp.body_text().contains("imitates"),
                "{name}: {}",
                resp.body_text()
            );
        }
    }
    gw.assert_upstream_never_saw("folded").await;
}

#[tokio::test]
async fn configured_strip_headers_are_stripped_in_every_spelling() {
    let gw = Gateway::start(
        GatewayConfig::new()
            .extra("[identity]\nstrip_headers = [\"X-Employee-Id\", \"X-Tenant-*\"]\n"),
    )
    .await;
    let names = ["X-Employee-Id", "x-tenant-name", "X-TENANT-ROLE"];
    let req = spoofing_request(&gw, "/public/extra", None, &names);
    let echo = Echo::from_raw(&gw.raw(req.as_bytes()).await);
    for n in names {
        assert!(echo.header_all(n).is_empty(), "{n} reached the upstream");
    }
    let all = serde_json::to_string(&echo.headers).unwrap();
    assert!(!all.contains("spoofed-"), "{all}");

    for name in ["x_employee_id", "X.Tenant.Name"] {
        let req = spoofing_request(&gw, "/public/extra-folded", None, &[name]);
        assert_eq!(gw.raw(req.as_bytes()).await.status, 400, "{name}");
    }
    gw.assert_upstream_never_saw("extra-folded").await;

    // Names that merely start alike are the app's own.
    let echo = Echo::from_raw(
        &gw.raw_get(
            "/public/extra-neighbour",
            &[("X-Employee", "kept"), ("X-Tenant", "kept-too")],
        )
        .await,
    );
    assert_eq!(echo.header_all("x-employee"), vec!["kept"]);
    assert_eq!(echo.header_all("x-tenant"), vec!["kept-too"]);
}

#[tokio::test]
async fn trusted_proxy_keeps_x_forwarded_for_but_not_the_rest_of_the_family() {
    let gw = Gateway::start(GatewayConfig::new().trust_loopback_proxy()).await;
    let echo = Echo::from_raw(
        &gw.raw_get(
            "/public/behind-proxy",
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-User", "spoofed-user"),
                ("X-Forwarded-Email", "spoofed-email"),
                ("X-Forwarded-Groups", "spoofed-groups"),
                ("Remote-User", "spoofed-remote"),
            ],
        )
        .await,
    );
    assert_eq!(
        echo.header_all("x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.1"]
    );
    let all = serde_json::to_string(&echo.headers).unwrap();
    assert!(!all.contains("spoofed-"), "{all}");
}
