//! Login (`/.auth/login`, form and JSON) and `/.auth/me`.
//!
//! Attacks covered:
//! - cookie theft and tossing: session cookies without `Secure`/`HttpOnly`/`__Host-` rules,
//!   or with a `Domain`;
//! - open redirect after login through `return_to` (absolute foreign URLs, scheme-relative
//!   `//host`, backslash tricks, `javascript:`, userinfo, other scheme on the same host);
//! - user enumeration: a different answer for an unknown user and for a wrong password;
//! - session fixation: a login that reuses the session the client already carried;
//! - tokens that carry more than identifiers, or are not bound to issuer and audience.

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn login_page_is_an_html_form_posting_to_login() {
    let gw = Gateway::start_default().await;
    let resp = gw.get("/.auth/login").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(ct.starts_with("text/html"), "content-type {ct:?}");
    let body = resp.text().await.unwrap();
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<form").expect("the login page has a <form");
    let tag = &lower[start..start + lower[start..].find('>').expect("closed <form> tag")];
    assert!(
        tag.contains("/.auth/login"),
        "the form posts to /.auth/login: {tag}"
    );
    assert!(tag.contains("post"), "the form uses POST: {tag}");
    assert!(lower.contains("name=\"username\"") || lower.contains("name=username"));
    assert!(lower.contains("name=\"password\"") || lower.contains("name=password"));
    assert!(
        gw.journal().await.is_empty(),
        "/.auth/ never reaches the upstream"
    );
}

#[tokio::test]
async fn form_login_sets_secure_host_prefixed_cookies() {
    let gw = Gateway::start_default().await;
    let resp = gw.login_form("alice", ALICE_PASSWORD, "/").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        "/"
    );
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(resp.headers(), name)
            .unwrap_or_else(|| panic!("login sets {name}: {:?}", set_cookies(resp.headers())));
        assert!(!c.value.is_empty(), "{name} has a value");
        assert!(c.has("secure"), "{name} is Secure: {}", c.raw);
        assert!(c.has("httponly"), "{name} is HttpOnly: {}", c.raw);
        assert_eq!(c.attr("path"), Some("/"), "{name} Path=/: {}", c.raw);
        assert!(
            c.attr("samesite")
                .is_some_and(|v| v.eq_ignore_ascii_case("lax")),
            "{name} SameSite=Lax: {}",
            c.raw
        );
        assert!(
            c.max_age().is_some_and(|m| m > 0),
            "{name} has a positive Max-Age: {}",
            c.raw
        );
        assert!(!c.has("domain"), "{name} has no Domain: {}", c.raw);
    }
}

#[tokio::test]
async fn tokens_carry_bound_identifier_only_claims() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let now = now_unix();

    let h = jwt_header(&s.access);
    assert_eq!(h["alg"], "HS256");
    assert!(
        h["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "access token header has a kid: {h}"
    );
    let c = jwt_claims(&s.access);
    assert_eq!(c["iss"], gw.origin().as_str(), "iss = public_origin: {c}");
    let aud_ok = c["aud"] == "sessiongate"
        || c["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "sessiongate"));
    assert!(aud_ok, "aud = sessiongate: {c}");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["typ"], "access");
    assert_eq!(c["roles"], serde_json::json!(["admin", "dev"]));
    for k in ["sid", "jti"] {
        assert!(c[k].as_str().is_some_and(|v| !v.is_empty()), "{k}: {c}");
    }
    for k in ["iat", "nbf", "exp"] {
        assert!(c[k].as_u64().is_some(), "{k} is a number: {c}");
    }
    let exp = c["exp"].as_u64().unwrap();
    assert!(
        exp > now && exp <= now + 15 * 60 + 5,
        "exp follows access_ttl=15m: exp={exp} now={now}"
    );
    let text = c.to_string();
    assert!(!text.contains(ALICE_PASSWORD) && !text.contains("argon2"));

    let r = jwt_claims(&s.refresh);
    assert_eq!(r["typ"], "refresh");
    assert_eq!(r["sub"], "alice");
    assert_eq!(r["sid"], c["sid"], "both tokens belong to one session");
    assert_ne!(r["jti"], c["jti"]);

    // The two tokens are signed with different keys.
    let key = hmac_key_for(&gw.access_secret, &s.access);
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    assert!(
        jsonwebtoken::decode::<Value>(
            &s.refresh,
            &jsonwebtoken::DecodingKey::from_secret(&key),
            &v
        )
        .is_err(),
        "the refresh token must not verify with the access key"
    );
}

#[tokio::test]
async fn form_login_redirects_to_same_origin_return_to() {
    let gw = Gateway::start_default().await;
    let resp = gw
        .login_form("alice", ALICE_PASSWORD, "/private/page?x=1")
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        "/private/page?x=1"
    );
}

#[tokio::test]
async fn form_login_keeps_an_absolute_same_origin_return_to() {
    // The contract says "validated same-origin return_to": an absolute URL on the public
    // origin is same-origin. (Whether it must be kept is a contract question; see report.)
    let gw = Gateway::start_default().await;
    let absolute = gw.url("/private/abs?y=2");
    let resp = gw.login_form("bob", BOB_PASSWORD, &absolute).await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers().get("location").unwrap().to_str().unwrap();
    assert!(
        location == "/private/abs?y=2" || location == absolute,
        "a same-origin absolute return_to is kept: {location:?}"
    );
}

#[tokio::test]
async fn form_login_ignores_foreign_return_to() {
    let gw = Gateway::start_default().await;
    let port = gw.https.port();
    let foreign = [
        "https://evil.example/".to_string(),
        "//evil.example/x".to_string(),
        "/\\evil.example/x".to_string(),
        "javascript:alert(1)".to_string(),
        format!("http://localhost:{port}/private"),
        format!("https://localhost:{port}@evil.example/"),
    ];
    for (i, rt) in foreign.iter().enumerate() {
        let (user, pass) = if i % 2 == 0 {
            ("alice", ALICE_PASSWORD)
        } else {
            ("bob", BOB_PASSWORD)
        };
        let resp = gw.login_form(user, pass, rt).await;
        assert_eq!(resp.status(), 303, "return_to={rt:?}");
        assert_eq!(
            resp.headers().get("location").unwrap().to_str().unwrap(),
            "/",
            "return_to={rt:?} must fall back to /"
        );
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_401() {
    let gw = Gateway::start_default().await;
    let wrong = gw.login_form("alice", "not-alices-password", "/").await;
    let wrong_status = wrong.status();
    let wrong_cookies = set_cookies(wrong.headers());
    let wrong_ct = wrong.headers().get("content-type").cloned();
    let wrong_body = wrong.text().await.unwrap();

    let unknown = gw.login_form("mallory", "not-alices-password", "/").await;
    let unknown_status = unknown.status();
    let unknown_cookies = set_cookies(unknown.headers());
    let unknown_ct = unknown.headers().get("content-type").cloned();
    let unknown_body = unknown.text().await.unwrap();

    assert_eq!(wrong_status, 401);
    assert_eq!(unknown_status, 401);
    assert_eq!(wrong_body, unknown_body, "same body for both failures");
    assert_eq!(wrong_ct, unknown_ct, "same content-type for both failures");
    for c in wrong_cookies.iter().chain(unknown_cookies.iter()) {
        assert!(
            c.name != ACCESS_COOKIE && c.name != REFRESH_COOKIE || c.value.is_empty(),
            "a failed login must not set a session cookie: {}",
            c.raw
        );
    }
}

#[tokio::test]
async fn json_login_returns_bearer_tokens() {
    let gw = Gateway::start_default().await;
    let resp = gw.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let access = v["access_token"].as_str().expect("access_token");
    assert!(v["refresh_token"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().expect("expires_in is a number");
    assert!(
        expires_in > 0 && expires_in <= 15 * 60,
        "expires_in {expires_in} follows access_ttl=15m"
    );
    let resp = gw
        .get("/private/api")
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn json_login_with_bad_credentials_is_401_json() {
    let gw = Gateway::start_default().await;
    let mut bodies = Vec::new();
    for (user, pass) in [("alice", "wrong-password"), ("nobody", ALICE_PASSWORD)] {
        let resp = gw.login_json(user, pass).await;
        assert_eq!(resp.status(), 401, "{user}");
        let text = resp.text().await.unwrap();
        let v: Result<Value, _> = serde_json::from_str(&text);
        assert!(v.is_ok(), "401 body is JSON: {text:?}");
        assert!(!text.contains("access_token\":\""), "no token on failure");
        bodies.push(text);
    }
    assert_eq!(
        bodies[0], bodies[1],
        "wrong password and unknown user answer alike"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    // Beyond the brief's contract, from DESIGN.md: "login attempts are rate-limited per account
    // and per client IP"; "throttled 429 with Retry-After".
    let gw = Gateway::start_default().await;
    let mut throttled = None;
    for i in 0..30 {
        let resp = gw.login_form("alice", &format!("guess-{i}"), "/").await;
        match resp.status().as_u16() {
            401 => continue,
            429 => {
                throttled = Some((i, resp.headers().get("retry-after").cloned()));
                break;
            }
            other => panic!("attempt {i}: unexpected status {other}"),
        }
    }
    let (after, retry_after) =
        throttled.expect("30 wrong passwords in a row for one account were never throttled (429)");
    let retry_after = retry_after.expect("a 429 carries Retry-After");
    let ra = retry_after.to_str().unwrap().trim();
    assert!(
        ra.parse::<u64>().is_ok() || ra.ends_with("GMT"),
        "Retry-After is delay-seconds or an HTTP-date: {ra:?}"
    );
    assert!(after >= 1, "the first attempt must not be throttled");
}

#[tokio::test]
async fn me_returns_the_verified_identity() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let resp = gw
        .get("/.auth/me")
        .header("cookie", s.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["roles"], serde_json::json!(["admin", "dev"]));
    assert!(
        me["expires_at"].as_u64().is_some_and(|t| t > now_unix()),
        "expires_at is a future unix time: {me}"
    );
    let echo = Echo::from(gw.get_with("/private/who", &s.cookie_header()).await).await;
    let handle = echo.header("x-auth-session").expect("x-auth-session");
    assert_eq!(
        me["session"].as_str(),
        Some(handle),
        "/.auth/me's session equals the x-auth-session handle"
    );
    assert!(gw.assert_no_auth_path_in_journal().await);
}

#[tokio::test]
async fn me_without_session_is_401() {
    let gw = Gateway::start_default().await;
    let resp = gw.get("/.auth/me").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = gw
        .get("/.auth/me")
        .header("cookie", format!("{ACCESS_COOKIE}=garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn every_login_starts_a_new_session() {
    let gw = Gateway::start_default().await;
    let first = gw.login_alice().await;
    // Log in again while carrying the first session's cookies (fixation attempt).
    let body = form_urlencode(&[
        ("username", "alice"),
        ("password", ALICE_PASSWORD),
        ("return_to", "/"),
    ]);
    let resp = gw
        .post("/.auth/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", first.cookie_header())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let second = Session::from_response_headers(resp.headers()).expect("new cookies");
    assert_ne!(
        jwt_claims(&first.access)["sid"],
        jwt_claims(&second.access)["sid"],
        "a login must never reuse the session id the client carried"
    );
    let h1 = Echo::from(gw.get_with("/private/a", &first.cookie_header()).await).await;
    let h2 = Echo::from(gw.get_with("/private/b", &second.cookie_header()).await).await;
    assert_ne!(h1.header("x-auth-session"), h2.header("x-auth-session"));
}

impl Gateway {
    /// True when no `/.auth/` request reached the upstream (asserts otherwise).
    pub async fn assert_no_auth_path_in_journal(&self) -> bool {
        let j = self.journal().await;
        assert!(
            j.iter().all(|e| !e.path.starts_with("/.auth")),
            "a /.auth/ request reached the upstream: {j:?}"
        );
        true
    }
}
