//! The second factor (TOTP, RFC 6238) on the gateway's own login: enrolment through
//! `POST /.auth/totp/enroll` and `/.auth/totp/confirm`, then sign-ins that need a code.
//! Codes are computed here from the secret the gateway hands out, with `totp-rs`.
//!
//! Attacks covered:
//! - a stolen password alone: a user with a factor gets `401 second_factor_required`;
//! - a replayed code (seen over a shoulder, phished), on the same instance and on a second
//!   instance sharing the Redis store;
//! - a code from far off the clock (three steps away) while one step of skew is accepted;
//! - online guessing of codes: wrong codes are failed logins in the throttle (`429`, even for
//!   the right code afterwards);
//! - a recovery code used twice;
//! - a user dodging `login.require_second_factor` once the grace to enrol is over;
//! - the browser's second step carrying the password (it carries a sealed, single-use
//!   sign-in; replaying it is refused);
//! - an operator reset through the admin API removing the factor.

use std::time::Duration;

use serde_json::Value;
use totp_rs::{Algorithm, Builder, Secret};

use crate::harness::*;

const STEP: u64 = 30;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Wait out the end of a time step when it is near, so that a code computed here is of the
/// step the gateway sees too.
async fn away_from_step_edge() {
    let into = now() % STEP;
    if into >= STEP - 4 {
        tokio::time::sleep(Duration::from_secs(STEP - into + 1)).await;
    }
}

/// The code of `secret` (base32) at `time`.
fn code_at(secret: &str, time: u64) -> String {
    let bytes = Secret::try_from_base32(secret).expect("base32 secret");
    let t = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(bytes.as_ref().to_vec())
        .build()
        .expect("totp");
    t.generate(time).to_string()
}

async fn json_login(gw: &Gateway, user: &str, password: &str, extra: Value) -> (u16, Value) {
    let mut body = serde_json::json!({"username": user, "password": password});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let resp = gw
        .client
        .post(gw.url("/.auth/login"))
        .json(&body)
        .send()
        .await
        .expect("POST /.auth/login");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn bearer_post(gw: &Gateway, path: &str, access: &str, body: Value) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What an enrolment hands out, and the step of the code that confirmed it.
struct Enrolled {
    secret: String,
    recovery: Vec<String>,
}

/// Enrol `user` through the JSON endpoints, confirming with the code of `confirm_at`.
async fn enrol_at(gw: &Gateway, user: &str, password: &str, confirm_at: u64) -> Enrolled {
    let (status, v) = json_login(gw, user, password, Value::Null).await;
    assert_eq!(status, 200, "password login before enrolment: {v}");
    let access = v["access_token"].as_str().unwrap().to_string();
    let (status, v) = bearer_post(gw, "/.auth/totp/enroll", &access, Value::Null).await;
    assert_eq!(status, 200, "enroll: {v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let uri = v["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains(user), "{uri}");
    let wrong = bearer_post(
        gw,
        "/.auth/totp/confirm",
        &access,
        serde_json::json!({"code": code_at(&secret, now() + 10 * STEP)}),
    )
    .await;
    assert_eq!(wrong.0, 400, "a wrong first code: {}", wrong.1);
    assert_eq!(wrong.1["error"], "invalid_code");
    let code = code_at(&secret, confirm_at);
    let (status, v) = bearer_post(
        gw,
        "/.auth/totp/confirm",
        &access,
        serde_json::json!({ "code": code }),
    )
    .await;
    assert_eq!(status, 200, "confirm: {v}");
    let recovery: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let again = bearer_post(gw, "/.auth/totp/enroll", &access, Value::Null).await;
    assert_eq!(again.0, 409, "enrolling again: {}", again.1);
    Enrolled { secret, recovery }
}

async fn enrol(gw: &Gateway, user: &str, password: &str) -> Enrolled {
    away_from_step_edge().await;
    enrol_at(gw, user, password, now()).await
}

async fn audited(gw: &Gateway, event: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found: Vec<Value> = gw
            .audit_events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn a_user_with_a_factor_needs_a_code_and_a_code_is_used_once() {
    let gw = Gateway::start_default().await;
    let e = enrol(&gw, "alice", ALICE_PASSWORD).await;
    let (status, v) = json_login(&gw, "alice", ALICE_PASSWORD, Value::Null).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("second_factor_required"))
    );
    assert!(v.get("access_token").is_none());
    // The confirming code's step is used: the next step's code (within the skew) signs in.
    let next = code_at(&e.secret, now() + STEP);
    let (status, v) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": next}),
    )
    .await;
    assert_eq!(status, 200, "right code: {v}");
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(gw.access_status(access).await, 200);
    let (status, v) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": next}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_second_factor")),
        "replay"
    );
    // A wrong password with a right code is still a wrong password.
    let (status, v) = json_login(&gw, "alice", "wrong", serde_json::json!({"totp": next})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    // Bob has no factor: his password alone still works.
    let (status, _) = json_login(&gw, "bob", BOB_PASSWORD, Value::Null).await;
    assert_eq!(status, 200);
    assert!(!audited(&gw, "second_factor_enrolled").await.is_empty());
    let failed = audited(&gw, "second_factor_failed").await;
    assert_eq!(failed[0]["user"], "alice");
    let text = gw.audit_text() + &all_logs(&gw);
    assert!(!text.contains(&e.secret), "the secret is in a log");
}

#[tokio::test]
async fn one_step_of_skew_is_accepted_and_three_are_not() {
    let gw = Gateway::start_default().await;
    away_from_step_edge().await;
    // The enrolment is confirmed with the previous step's code: one step behind is accepted.
    let e = enrol_at(&gw, "alice", ALICE_PASSWORD, now() - STEP).await;
    for far in [now() + 3 * STEP, now() - 3 * STEP, now() + 2 * STEP] {
        let (status, v) = json_login(
            &gw,
            "alice",
            ALICE_PASSWORD,
            serde_json::json!({"totp": code_at(&e.secret, far)}),
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("invalid_second_factor")),
            "{far}"
        );
    }
    // One step ahead is accepted too.
    let (status, v) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": code_at(&e.secret, now() + STEP)}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_wrong_passwords() {
    let gw = Gateway::start(GatewayConfig::new().set("login", "max_failures_per_user", "3")).await;
    let e = enrol(&gw, "alice", ALICE_PASSWORD).await;
    // Leaving the code out neither counts nor clears.
    for _ in 0..5 {
        let (status, _) = json_login(&gw, "alice", ALICE_PASSWORD, Value::Null).await;
        assert_eq!(status, 401);
    }
    for _ in 0..3 {
        let (status, v) = json_login(
            &gw,
            "alice",
            ALICE_PASSWORD,
            serde_json::json!({"totp": "000000"}),
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("invalid_second_factor"))
        );
    }
    let right = code_at(&e.secret, now() + STEP);
    let (status, _) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": right}),
    )
    .await;
    assert_eq!(
        status, 429,
        "the account is throttled, even for the right code"
    );
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let gw = Gateway::start_default().await;
    let e = enrol(&gw, "alice", ALICE_PASSWORD).await;
    let code = e.recovery[2].to_lowercase();
    let (status, v) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": code}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": code}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_second_factor"))
    );
    let (status, _) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": "AAAA-BBBB-CCCC-DDDD"}),
    )
    .await;
    assert_eq!(status, 401, "a made-up code");
    let (status, _) = json_login(
        &gw,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": e.recovery[3]}),
    )
    .await;
    assert_eq!(status, 200, "another code still works");
    assert_eq!(audited(&gw, "recovery_code_used").await[0]["user"], "alice");
}

#[tokio::test]
async fn required_second_factor_allows_a_grace_and_refuses_after_it() {
    let with_grace = Gateway::start(
        GatewayConfig::new()
            .set("login", "require_second_factor", "true")
            .set("login", "second_factor_grace", "\"7d\""),
    )
    .await;
    let (status, v) = json_login(&with_grace, "bob", BOB_PASSWORD, Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let by = v["second_factor_enrol_by"].as_u64().unwrap();
    assert!(by > now() + 6 * 86_400 && by <= now() + 7 * 86_400, "{by}");
    let resp = with_grace.login_form("bob", BOB_PASSWORD, "/").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "/.auth/sessions#second-factor",
        "sent to enrol"
    );
    // Once enrolled, the factor is asked for like anywhere else.
    let e = enrol(&with_grace, "alice", ALICE_PASSWORD).await;
    let (status, _) = json_login(&with_grace, "alice", ALICE_PASSWORD, Value::Null).await;
    assert_eq!(status, 401);
    let right = code_at(&e.secret, now() + STEP);
    let (status, v) = json_login(
        &with_grace,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": right}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("second_factor_enrol_by").is_none());

    let no_grace =
        Gateway::start(GatewayConfig::new().set("login", "require_second_factor", "true")).await;
    let (status, v) = json_login(&no_grace, "bob", BOB_PASSWORD, Value::Null).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("second_factor_enrolment_required"))
    );
    assert!(v["reason"].as_str().unwrap().contains("operator"), "{v}");
    let resp = no_grace.login_form("bob", BOB_PASSWORD, "/").await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("contact the operator"));
}

#[tokio::test]
async fn a_bad_grace_refuses_to_start_naming_the_key() {
    for (key, value) in [
        ("second_factor_grace", "\"soon\""),
        ("second_factor_grace", "\"400d\""),
    ] {
        let cfg = GatewayConfig::new()
            .set("login", "require_second_factor", "true")
            .set("login", key, value);
        let w = write_config(&cfg, |s| s);
        let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
        assert!(!ok, "{key} = {value} accepted");
        assert!(out.contains("login.second_factor_grace"), "{out}");
    }
}

#[tokio::test]
async fn a_second_instance_on_redis_honours_the_enrolment_and_the_used_codes() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(StoreSpec::Redis { url: redis.url() }, GatewayConfig::new()).await;
    let e = enrol(&a, "alice", ALICE_PASSWORD).await;
    let (status, v) = json_login(&b, "alice", ALICE_PASSWORD, Value::Null).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("second_factor_required"))
    );
    let next = code_at(&e.secret, now() + STEP);
    let (status, v) = json_login(
        &b,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": next}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = json_login(
        &a,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"totp": next}),
    )
    .await;
    assert_eq!(status, 401, "the code used on b is refused on a");
    let code = &e.recovery[0];
    let (status, _) = json_login(
        &a,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": code}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = json_login(
        &b,
        "alice",
        ALICE_PASSWORD,
        serde_json::json!({"recovery_code": code}),
    )
    .await;
    assert_eq!(status, 401, "the recovery code used on a is refused on b");
    // The secret is kept sealed under the prefix, in alice's slot.
    let keys = String::from_utf8_lossy(&redis_cli(
        redis.port,
        &["--scan", "--pattern", "sg:{alice}:2fa*"],
    ))
    .into_owned();
    assert!(keys.contains("sg:{alice}:2fa"), "{keys}");
    let dump = String::from_utf8_lossy(&redis_cli(redis.port, &["HGETALL", "sg:{alice}:2fa"]))
        .into_owned();
    assert!(
        !dump.is_empty() && !dump.contains(&e.secret),
        "the secret in clear: {dump}"
    );
}

fn hidden_token(page: &str) -> String {
    let at = page.find("name=\"token\" value=\"").expect("a token field") + 20;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

async fn verify_form(gw: &Gateway, token: &str, totp: &str) -> reqwest::Response {
    gw.post("/.auth/totp/verify")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(form_urlencode(&[("token", token), ("totp", totp)]))
        .send()
        .await
        .expect("POST /.auth/totp/verify")
}

#[tokio::test]
async fn the_browser_signs_in_through_the_second_factor_page() {
    let gw = Gateway::start_default().await;
    let e = enrol(&gw, "alice", ALICE_PASSWORD).await;
    let resp = gw
        .login_form("alice", ALICE_PASSWORD, "/private/page")
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        Session::from_response_headers(resp.headers()).is_none(),
        "no session yet"
    );
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = resp.text().await.unwrap();
    assert!(page.contains("action=\"/.auth/totp/verify\""), "{page}");
    assert!(
        !page.contains(ALICE_PASSWORD),
        "the password is in the page"
    );
    let token = hidden_token(&page);
    let wrong = verify_form(&gw, &token, "000000").await;
    assert_eq!(wrong.status(), 401);
    let page = wrong.text().await.unwrap();
    assert!(page.contains("not right"), "{page}");
    let retry = hidden_token(&page);
    let resp = verify_form(&gw, &token, &code_at(&e.secret, now() + STEP)).await;
    assert_eq!(
        resp.status(),
        400,
        "the first token was used by the wrong code"
    );
    let resp = verify_form(&gw, &retry, &code_at(&e.secret, now() + STEP)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "/private/page"
    );
    let session = Session::from_response_headers(resp.headers()).expect("session cookies");
    let app = gw.get_with("/private/page", &session.cookie_header()).await;
    assert_eq!(app.status(), 200);
    let again = verify_form(&gw, &retry, &code_at(&e.secret, now() + STEP)).await;
    assert_eq!(again.status(), 400, "a used sign-in token is refused");
    // The sessions page shows the factor as on.
    let page = gw
        .get_with("/.auth/sessions", &session.cookie_header())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Two-factor authentication") && page.contains("recovery codes left"),
        "{page}"
    );
}

#[tokio::test]
async fn the_sessions_page_enrols_through_forms_and_shows_a_qr_code() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let page = gw
        .get_with("/.auth/sessions", &s.cookie_header())
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/.auth/totp/enroll\""), "{page}");
    let form = |path: &str, body: String| {
        gw.post(path)
            .header("cookie", s.cookie_header())
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    // Cross-site, the enrolment is refused like any unsafe /.auth/ request.
    let cross = gw
        .client
        .post(gw.url("/.auth/totp/enroll"))
        .header("cookie", s.cookie_header())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let resp = form("/.auth/totp/enroll", String::new())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("<svg") && page.contains("<path"),
        "an inline QR code"
    );
    assert!(
        !page.contains("<img") && !page.contains("<script src"),
        "{page}"
    );
    let at = page.find("<code>").unwrap() + 6;
    let secret = &page[at..at + page[at..].find('<').unwrap()];
    away_from_step_edge().await;
    let resp = form(
        "/.auth/totp/confirm",
        form_urlencode(&[("code", &code_at(secret, now()))]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Recovery codes") && page.matches("<li>").count() == 10,
        "{page}"
    );
}

#[tokio::test]
async fn an_operator_reset_removes_the_factor() {
    let token = random_secret();
    let gw = Gateway::start(GatewayConfig::new().admin_api_token(&token)).await;
    enrol(&gw, "alice", ALICE_PASSWORD).await;
    let resp = gw
        .plain
        .post(gw.admin_url("/admin/users/alice/reset-second-factor"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["removed"], true);
    let (status, v) = json_login(&gw, "alice", ALICE_PASSWORD, Value::Null).await;
    assert_eq!(status, 200, "the password alone again: {v}");
}

#[tokio::test]
async fn every_page_names_the_product() {
    let gw =
        Gateway::start(GatewayConfig::new().set("ui", "product_name", "\"Acme <Intranet>\"")).await;
    let page = gw
        .get("/.auth/login")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<title>Sign in · Acme &lt;Intranet&gt;</title>"),
        "{page}"
    );
    assert!(page.contains("Acme &lt;Intranet&gt;</header>"), "{page}");
    assert!(!page.contains("<Intranet>"));
}
