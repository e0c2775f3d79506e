//! Upstream login (`[login] mode = "upstream"`): the app keeps its own login form and tells the
//! gateway who signed in with an `X-Sessiongate-Grant` header on its response to
//! `login.upstream_path`.
//!
//! Attacks covered:
//! - a forged grant (another secret, `alg: none`, another HMAC algorithm), an expired one, a
//!   long-lived one, garbage;
//! - a grant smuggled onto any other response (a public page that reflects a header, the app's
//!   login *page* path, a path that merely starts with the login path, a protected page with
//!   someone else's session) — ignored, and stripped before the client sees it;
//! - a client sending `X-Sessiongate-Grant` itself (it never reaches the app, starts nothing);
//! - the app's own session cookie (`login.drop_cookies`) leaking to the client or being
//!   accepted from it, next to the gateway's session;
//! - a gateway session that outlives the app's logout (`login.logout_paths`);
//! - the gateway's own password login still being reachable when the app owns sign-in.

use serde_json::{Value, json};

use crate::harness::*;

const GRANT_ENV: &str = "SG_TEST_GRANT_SECRET";

struct App {
    gw: Gateway,
    secret: String,
}

async fn start(store: &StoreUnderTest) -> App {
    let secret = random_secret();
    let gw = store
        .start(
            GatewayConfig::new()
                .set("login", "mode", "\"upstream\"")
                // Not read in this mode: a path that does not exist proves it.
                .set(
                    "login",
                    "users_file",
                    "\"/nonexistent/sessiongate-users.toml\"",
                )
                .set("login", "upstream_path", "\"/app/login\"")
                .set("login", "page_path", "\"/app/signin\"")
                .set("login", "grant_secret_env", &format!("\"{GRANT_ENV}\""))
                .set("login", "drop_cookies", "[\"appsession\"]")
                .set("login", "logout_paths", "[\"/app/logout\"]")
                .env(GRANT_ENV, &secret),
        )
        .await;
    App { gw, secret }
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

impl App {
    fn grant(&self, sub: &str, roles: &[&str], exp: u64) -> String {
        hs256(
            self.secret.as_bytes(),
            &json!({"sub": sub, "roles": roles, "exp": exp}),
        )
    }

    /// `POST path` through the gateway; the app answers with `grant` as its grant header.
    async fn post_with_grant(
        &self,
        path: &str,
        grant: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .gw
            .post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-test-grant", grant)
            .body("username=carol&password=app-checks-this");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }

    /// Sign carol in through the app.
    async fn sign_in_carol(&self) -> Session {
        let resp = self
            .post_with_grant(
                "/app/login",
                &self.grant("carol", &["ops", "dev"], now_unix() + 30),
                &[],
            )
            .await;
        assert_eq!(resp.status(), 200);
        Session::from_response_headers(resp.headers())
            .expect("a grant on the login path starts a session")
    }
}

/// The response reached the client without the grant header and without a gateway session.
fn assert_no_session_no_grant(resp: &reqwest::Response, what: &str) {
    assert!(
        !resp.headers().contains_key("x-sessiongate-grant"),
        "{what}: the grant header reached the client"
    );
    let gateway_cookies: Vec<_> = set_cookies(resp.headers())
        .into_iter()
        .filter(|c| c.name.starts_with("__Host-sg-") && !c.value.is_empty())
        .collect();
    assert!(
        gateway_cookies.is_empty(),
        "{what}: a session was started: {gateway_cookies:?}"
    );
}

async fn app_grant_on_the_login_path_starts_a_session_and_is_stripped(store: StoreUnderTest) {
    let app = start(&store).await;
    let gw = &app.gw;
    let grant = app.grant("carol", &["ops", "dev"], now_unix() + 30);
    let resp = app
        .post_with_grant(
            "/app/login",
            &grant,
            &[
                (
                    "x-test-set-cookie",
                    "appsession=app-secret-1; Path=/; HttpOnly",
                ),
                ("x-test-set-cookie", "theme=dark; Path=/"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("x-sessiongate-grant"),
        "the grant header reached the client"
    );
    let s = Session::from_response_headers(resp.headers())
        .expect("the app's answer on the login path carries the gateway's session cookies");
    let names: Vec<String> = set_cookies(resp.headers())
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("appsession")),
        "the app's session cookie (login.drop_cookies) reached the client: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "theme"),
        "the app's other cookies are kept: {names:?}"
    );
    let echo = Echo::from(resp).await;
    assert_eq!(
        echo.path, "/app/login",
        "the app handled its own login form"
    );
    assert!(echo.header_all("x-sessiongate-grant").is_empty());

    let claims = jwt_claims(&s.access);
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["roles"], json!(["ops", "dev"]));
    let resp = gw
        .get("/private/dashboard")
        .header(
            "cookie",
            format!("appsession=planted; {}; theme=dark", s.cookie_header()),
        )
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("carol"));
    assert_eq!(echo.header("x-auth-roles"), Some("ops,dev"));
    let cookie = echo.header_all("cookie").join("; ");
    assert!(cookie.contains("theme=dark"), "{cookie:?}");
    assert!(
        !cookie.to_ascii_lowercase().contains("appsession"),
        "the app's own session cookie reached the app from the client: {cookie:?}"
    );
    let event = gw.wait_for_audit("login_ok").await;
    assert_eq!(event["user"], "carol", "{event}");
}

#[tokio::test]
async fn forged_expired_long_lived_or_misplaced_grants_start_nothing_and_are_stripped() {
    let app = start(&StoreUnderTest::memory().await).await;
    let gw = &app.gw;
    let now = now_unix();
    let valid = app.grant("mallory", &["admin"], now + 30);
    let other_secret = random_secret();
    let mut none_header = jwt_header(&valid);
    none_header["alg"] = json!("none");
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&none_header),
        b64(&json!({"sub": "mallory", "roles": ["admin"], "exp": now + 30}))
    );
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"sub": "mallory", "roles": ["admin"], "exp": now + 30}),
        &jsonwebtoken::EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap();
    let on_login_path: Vec<(&str, String)> = vec![
        (
            "signed with another secret",
            hs256(
                other_secret.as_bytes(),
                &json!({"sub": "mallory", "roles": ["admin"], "exp": now + 30}),
            ),
        ),
        ("alg none", alg_none),
        ("HS512 instead of the pinned HS256", hs512),
        ("expired", app.grant("mallory", &["admin"], now - 5)),
        (
            "valid for an hour",
            app.grant("mallory", &["admin"], now + 3600),
        ),
        (
            "valid for two minutes",
            app.grant("mallory", &["admin"], now + 120),
        ),
        (
            "without exp",
            hs256(
                app.secret.as_bytes(),
                &json!({"sub": "mallory", "roles": ["admin"]}),
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, grant) in &on_login_path {
        let resp = app.post_with_grant("/app/login", grant, &[]).await;
        assert_eq!(resp.status(), 200, "{what}");
        assert_no_session_no_grant(&resp, what);
    }
    gw.wait_for_audit("grant_refused").await;

    // A valid grant anywhere but on the login path, with or without a session.
    let carol = app.sign_in_carol().await;
    for (path, cookie) in [
        ("/public/reflect", None),
        ("/app/signin", None),
        ("/public/reflect", Some(carol.cookie_header())),
        ("/app/login/extra", Some(carol.cookie_header())),
        ("/app/login-other", Some(carol.cookie_header())),
        ("/private/profile", Some(carol.cookie_header())),
    ] {
        let mut extra = vec![];
        if let Some(c) = &cookie {
            extra.push(("cookie", c.as_str()));
        }
        let resp = app.post_with_grant(path, &valid, &extra).await;
        let what = format!("valid grant on {path} (session: {})", cookie.is_some());
        assert_eq!(resp.status(), 200, "{what}");
        assert_no_session_no_grant(&resp, &what);
        let echo = Echo::from(resp).await;
        assert_eq!(echo.path, path, "{what}: the app answered");
        if cookie.is_some() {
            assert_eq!(echo.header("x-auth-user"), Some("carol"), "{what}");
        }
    }
    gw.wait_for_audit("grant_ignored").await;

    // A client sending the grant header itself.
    let resp = gw
        .post("/app/login")
        .header("x-sessiongate-grant", &valid)
        .body("")
        .send()
        .await
        .unwrap();
    assert_no_session_no_grant(&resp, "client-sent grant");
    let echo = Echo::from(resp).await;
    assert!(
        echo.header_all("x-sessiongate-grant").is_empty(),
        "a client's grant header reached the app"
    );

    let logins: Vec<Value> = gw
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "login_ok")
        .collect();
    assert!(
        logins.iter().all(|e| e["user"] == "carol"),
        "a refused or misplaced grant started a session: {logins:?}"
    );
}

#[tokio::test]
async fn navigation_without_session_goes_to_the_apps_login_page() {
    let app = start(&StoreUnderTest::memory().await).await;
    let gw = &app.gw;
    let resp = gw
        .get("/private/page?tab=2")
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let to_login = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(to_login.starts_with("/.auth/login?"), "{to_login}");
    let resp = gw.get(&to_login).send().await.unwrap();
    assert_eq!(resp.status(), 302, "GET {to_login}");
    assert_eq!(
        resp.headers()["location"],
        "/app/signin?return_to=%2Fprivate%2Fpage%3Ftab%3D2",
        "the app's login page, with the validated return_to"
    );
    let resp = gw
        .get("/.auth/login?return_to=%2F%2Fevil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/app/signin?return_to=%2F");

    // The app's login page and form need no session.
    for path in ["/app/signin", "/app/login"] {
        let echo = Echo::from(gw.get(path).send().await.unwrap()).await;
        assert_eq!(echo.path, path);
        assert!(echo.header_all("x-auth-user").is_empty());
    }
    // The gateway's own password login is off: the app owns sign-in.
    let resp = gw.login_form("alice", ALICE_PASSWORD, "/").await;
    assert_eq!(resp.status(), 404);
    assert!(Session::from_response_headers(resp.headers()).is_none());
}

async fn app_logout_path_ends_the_gateway_session(store: StoreUnderTest) {
    let app = start(&store).await;
    let gw = &app.gw;
    let s = app.sign_in_carol().await;
    let resp = gw.get_with("/app/logout", &s.cookie_header()).await;
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(resp.headers(), name)
            .unwrap_or_else(|| panic!("the app's logout clears {name}"));
        assert!(c.value.is_empty() || c.max_age() == Some(0), "{}", c.raw);
    }
    let echo = Echo::from(resp).await;
    assert_eq!(echo.path, "/app/logout", "the app still handles its logout");
    assert_eq!(echo.header("x-auth-user"), Some("carol"));

    let resp = gw
        .get("/private/after")
        .header("cookie", s.access_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the access token outlived the app's logout"
    );
    let resp = gw.refresh(&s).await;
    assert_eq!(
        resp.status(),
        401,
        "the refresh token outlived the app's logout"
    );
    gw.assert_upstream_never_saw("/private/after").await;
    let event = gw.wait_for_audit("logout").await;
    assert_eq!(event["user"], "carol", "{event}");
}

crate::for_both_stores!(
    app_grant_on_the_login_path_starts_a_session_and_is_stripped,
    app_logout_path_ends_the_gateway_session,
);

/// Login CSRF through the app's own form (a public path): a cross-site POST that makes the
/// app issue a grant for the attacker's account must not sign the victim in; a cross-site GET
/// of an app logout path must not end the victim's session.
#[tokio::test]
async fn cross_site_app_login_and_logout_are_refused() {
    let store = StoreUnderTest::memory().await;
    let app = start(&store).await;
    let gw = &app.gw;
    let grant = app.grant("mallory", &["ops"], now_unix() + 30);
    for (what, k, v) in [
        ("sec-fetch-site", "sec-fetch-site", "cross-site"),
        ("sibling", "sec-fetch-site", "same-site"),
        ("origin", "origin", "https://evil.example"),
        ("referer", "referer", "https://evil.example/login"),
    ] {
        let resp = gw
            .client
            .post(gw.url("/app/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-test-grant", &grant)
            .header(k, v)
            .body("username=mallory&password=x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{what}: cross-site app login refused");
        assert_no_session_no_grant(&resp, what);
    }
    assert_eq!(
        gw.journal_len().await,
        0,
        "the app never saw the forged logins"
    );
    let s = app.sign_in_carol().await;
    let resp = gw
        .client
        .get(gw.url("/app/logout"))
        .header("cookie", s.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a cross-site logout link is refused");
    let still = gw.get_with("/private/still", &s.cookie_header()).await;
    assert_eq!(
        still.status(),
        200,
        "the session survived the cross-site logout"
    );
}

/// A path parameter does not hide the app's login or logout path: `/app/logout;jsessionid=1`
/// is `/app/logout` to a Java app, so it gets the logout path's origin check and ends the
/// gateway session; `/app/login;x` would be the public login form to the app but a protected
/// path to the router, so it is refused.
#[tokio::test]
async fn path_parameters_do_not_hide_the_apps_login_or_logout_path() {
    let store = StoreUnderTest::memory().await;
    let app = start(&store).await;
    let gw = &app.gw;
    let s = app.sign_in_carol().await;
    for target in [
        "/app/logout;jsessionid=1",
        "/app/logout;",
        "/app/logout;a;b",
    ] {
        let resp = gw
            .client
            .get(gw.url(target))
            .header("cookie", s.cookie_header())
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{target}: a cross-site logout link");
    }
    gw.assert_upstream_never_saw("/app/logout").await;
    let still = gw.get_with("/private/still", &s.cookie_header()).await;
    assert_eq!(still.status(), 200, "the session survived");

    let grant = app.grant("carol", &["ops"], now_unix() + 30);
    for target in ["/app/login;jsessionid=1", "/app/login;"] {
        let resp = app.post_with_grant(target, &grant, &[]).await;
        assert_eq!(
            resp.status(),
            400,
            "{target}: the login form behind a parameter"
        );
        assert_no_session_no_grant(&resp, target);
    }
    let resp = gw.get("/app/signin;x").send().await.unwrap();
    assert_eq!(resp.status(), 400, "the login page behind a parameter");
    gw.assert_upstream_never_saw(";").await;

    let resp = gw
        .get_with("/app/logout;jsessionid=1", &s.cookie_header())
        .await;
    let c = set_cookie_named(resp.headers(), ACCESS_COOKIE).expect("the logout clears cookies");
    assert!(c.value.is_empty() || c.max_age() == Some(0), "{}", c.raw);
    let echo = Echo::from(resp).await;
    assert_eq!(
        echo.path, "/app/logout;jsessionid=1",
        "the app handles its logout"
    );
    let after = gw.refresh(&s).await;
    assert_eq!(
        after.status(),
        401,
        "the gateway session ended with the app's"
    );
}
