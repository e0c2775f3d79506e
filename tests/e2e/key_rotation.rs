//! Key rotation with overlap (README, "Operations > Key rotation"): the access, refresh and
//! grant secrets as key rings (`["NEW", "OLD"]`: the first signs, every one verifies, tokens
//! name their key by `kid`), and the assertion key published beside the one it replaces.
//!
//! Each step of a procedure goes through [`apply`]: the config file is rewritten and the
//! running gateway reloaded by SIGHUP (`Runtime::rebuild`: the new rings take over, sessions
//! and their store stay), as an operator does it.
//!
//! Attacks and failures covered:
//! - a rotation that signs users out: 32 clients browse, post forms with CSRF tokens and
//!   refresh (access tokens live 2 s) through the three steps, not one `401` or `403`, every
//!   refresh `200`, the same session handle throughout, fingerprints (user-agent policy
//!   `revoke`) never taken for a stolen session;
//! - a dropped key that keeps verifying: after the last step an unexpired access token, a
//!   refresh token and a CSRF token signed with the old key alone are refused, and the refused
//!   refresh token is not taken for reuse (its session goes on);
//! - a verifier that tries every key: a token that names the new key but is signed with the
//!   old one is refused while both are in the ring;
//! - a key promoted before every instance verifies it: the instance without it refuses what it
//!   signed (why step 1 must reach every instance first), and accepts once it has it;
//! - the grant secret rotated while the app switches keys; a grant under the dropped key is
//!   refused and stripped;
//! - the assertion key: the JWKS serves both keys through the overlap, an assertion signed by
//!   the previous key verifies against it, none does once that key is gone;
//! - a ring that cannot be right (empty, a key twice, a key in two rings, a weak key, the same
//!   assertion key as current and previous): refused by `check-config`, naming the entry.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const ACCESS_OLD: &str = "SG_ROT_ACCESS_OLD";
const ACCESS_NEW: &str = "SG_ROT_ACCESS_NEW";
const REFRESH_OLD: &str = "SG_ROT_REFRESH_OLD";
const REFRESH_NEW: &str = "SG_ROT_REFRESH_NEW";
const CSRF_COOKIE: &str = "__Host-sg-csrf";

/// The documented procedure, for the access and the refresh ring alike.
const STEPS: [(&str, &[&str], &[&str]); 4] = [
    ("step 0 (the old key)", &[ACCESS_OLD], &[REFRESH_OLD]),
    (
        "step 1 (the new key verifies)",
        &[ACCESS_OLD, ACCESS_NEW],
        &[REFRESH_OLD, REFRESH_NEW],
    ),
    (
        "step 2 (the new key signs)",
        &[ACCESS_NEW, ACCESS_OLD],
        &[REFRESH_NEW, REFRESH_OLD],
    ),
    (
        "step 3 (the old key is gone)",
        &[ACCESS_NEW],
        &[REFRESH_NEW],
    ),
];

/// How long the clients keep going after each step.
const STEP_TRAFFIC: Duration = Duration::from_secs(5);
const BROWSERS: usize = 32;

/// The four secrets, in the environment of every run under their own names.
struct Secrets {
    access_old: String,
    access_new: String,
    refresh_old: String,
    refresh_new: String,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            access_old: random_secret(),
            access_new: random_secret(),
            refresh_old: random_secret(),
            refresh_new: random_secret(),
        }
    }

    fn env(&self, cfg: GatewayConfig) -> GatewayConfig {
        cfg.env(ACCESS_OLD, &self.access_old)
            .env(ACCESS_NEW, &self.access_new)
            .env(REFRESH_OLD, &self.refresh_old)
            .env(REFRESH_NEW, &self.refresh_new)
            .secrets(&self.access_old, &self.refresh_old)
    }
}

/// A TOML value naming these variables: one name, or a list.
fn names(vars: &[&str]) -> String {
    match vars {
        [one] => format!("\"{one}\""),
        many => format!(
            "[{}]",
            many.iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn with_rings(cfg: &GatewayConfig, access: &[&str], refresh: &[&str]) -> GatewayConfig {
    cfg.clone()
        .set("keys", "access_secret_env", &names(access))
        .set("keys", "refresh_secret_env", &names(refresh))
}

/// Make the running gateway take `cfg`: rewrite its config file, SIGHUP, and wait until
/// `/metrics` counts one more successful reload. The process, its listeners and the clients'
/// connections stay; the new key rings apply to the next request.
async fn apply(gw: &mut Gateway, cfg: GatewayConfig) {
    let reloads = |text: &str, outcome: &str| {
        metric(text, "sessiongate_reloads_total", &[("outcome", outcome)]) as u64
    };
    let before = reloads(&metrics(gw).await, "ok");
    gw.reload_with(cfg, "ok", before + 1).await;
    assert_eq!(
        reloads(&metrics(gw).await, "failed"),
        0,
        "a refused reload: {}",
        gw.stderr_text()
    );
}

fn kid(token: &str) -> String {
    jwt_header(token)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("a token without a kid: {token}"))
        .to_string()
}

/// `token`'s claims, signed with `secret` (its bytes are the HMAC key, as the gateway reads a
/// secret) and named as `named_like` names its key, valid for 30 more seconds. With the
/// secret and the `kid` of one key: a token as that key signs them (the control at step 2
/// shows the gateway accepts it while the key is in the ring).
fn resigned(token: &str, named_like: &str, secret: &str) -> String {
    let mut claims = jwt_claims(token);
    claims["exp"] = json!(now_unix() + 30);
    forge_hs256(named_like, &claims, secret.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// 32 browsers

/// One signed-in browser: its cookies, CSRF token and the session handle the app saw first.
#[derive(Debug, Clone)]
struct Browser {
    session: Session,
    csrf: String,
    handle: String,
    /// Its CSRF token before the last re-fetch (a page load).
    old_csrf: Option<String>,
    epoch: usize,
}

/// What the browsers share: the client for the gateway, the stop flag, the failures they saw
/// and what they did.
struct Traffic {
    client: reqwest::Client,
    stop: AtomicBool,
    /// Bumped to make every browser fetch a new CSRF token (a page load).
    csrf_epoch: AtomicUsize,
    refetched: AtomicUsize,
    failures: Mutex<Vec<String>>,
    browsers: Mutex<Vec<Browser>>,
    requests: AtomicUsize,
    refreshes: AtomicUsize,
    posts: AtomicUsize,
}

impl Traffic {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Send the request `build` makes. A reload closes no connection: a request with no answer
/// is a failure, not retried.
async fn send(
    t: &Traffic,
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    match build(&t.client).send().await {
        Ok(r) => {
            t.requests.fetch_add(1, Ordering::Relaxed);
            Some(r)
        }
        Err(e) => {
            t.fail(format!("no answer: {e}"));
            None
        }
    }
}

fn url(path: &str) -> String {
    format!("{DEFAULT_PUBLIC_ORIGIN}{path}")
}

async fn sign_in(gw: &Gateway) -> Browser {
    let session = gw.login_alice().await;
    let csrf = fetch_csrf(&gw.client, &session).await;
    let echo = Echo::from(
        gw.get_with("/private/first", &session.cookie_header())
            .await,
    )
    .await;
    let handle = echo.header("x-auth-session").unwrap().to_string();
    Browser {
        session,
        csrf,
        handle,
        old_csrf: None,
        epoch: 0,
    }
}

async fn fetch_csrf(client: &reqwest::Client, s: &Session) -> String {
    let resp = client
        .get(url("/.auth/csrf"))
        .header("cookie", s.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET /.auth/csrf");
    let v: Value = resp.json().await.unwrap();
    v["csrf_token"].as_str().unwrap().to_string()
}

/// One browser until told to stop: browse, post a form every third round, refresh every
/// seventh. A refusal ends it (a browser that was signed out stays signed out).
async fn browse(t: Arc<Traffic>, i: usize, mut b: Browser) {
    let mut round = 0usize;
    while !t.stop.load(Ordering::SeqCst) {
        round += 1;
        if let Err(why) = one_round(&t, &mut b, round).await {
            t.fail(format!("browser {i}, round {round}: {why}"));
            return;
        }
        t.browsers.lock().unwrap()[i] = b.clone();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn one_round(t: &Traffic, b: &mut Browser, round: usize) -> Result<(), String> {
    let epoch = t.csrf_epoch.load(Ordering::SeqCst);
    if b.epoch != epoch {
        let client = t.client.clone();
        b.old_csrf = Some(std::mem::replace(
            &mut b.csrf,
            fetch_csrf(&client, &b.session).await,
        ));
        b.epoch = epoch;
        t.refetched.fetch_add(1, Ordering::SeqCst);
    }
    let cookie = b.session.cookie_header();
    let Some(resp) = send(t, |c| {
        c.get(url("/private/browse"))
            .header("cookie", &cookie)
            .header("accept", "application/json")
    })
    .await
    else {
        return Err("GET: no answer".into());
    };
    let status = resp.status();
    b.session.update(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    if status != 200 {
        return Err(format!("GET /private/browse answered {status}: {text}"));
    }
    let echo: Echo = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if echo.header("x-auth-session") != Some(b.handle.as_str()) {
        return Err(format!(
            "the session handle changed: {:?}, first {}",
            echo.header("x-auth-session"),
            b.handle
        ));
    }
    if round.is_multiple_of(3) {
        post_form(t, b).await?;
    }
    if round.is_multiple_of(7) {
        refresh(t, b).await?;
    }
    Ok(())
}

async fn post_form(t: &Traffic, b: &mut Browser) -> Result<(), String> {
    let cookie = format!("{}; {CSRF_COOKIE}={}", b.session.cookie_header(), b.csrf);
    let token = b.csrf.clone();
    let resp = send(t, |c| {
        c.post(url("/private/form"))
            .header("cookie", &cookie)
            .header("origin", DEFAULT_PUBLIC_ORIGIN)
            .header("x-csrf-token", &token)
            .header("accept", "application/json")
            .body("a=1")
    })
    .await
    .ok_or("POST: no answer")?;
    let status = resp.status();
    b.session.update(resp.headers());
    if status != 200 {
        return Err(format!(
            "POST with its CSRF token answered {status}: {}",
            resp.text().await.unwrap_or_default()
        ));
    }
    t.posts.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn refresh(t: &Traffic, b: &mut Browser) -> Result<(), String> {
    let cookie = b.session.refresh_only();
    let resp = send(t, |c| {
        c.post(url("/.auth/refresh"))
            .header("cookie", &cookie)
            .header("origin", DEFAULT_PUBLIC_ORIGIN)
            .header("accept", "application/json")
    })
    .await
    .ok_or("refresh: no answer")?;
    let status = resp.status();
    b.session.update(resp.headers());
    if status != 200 {
        return Err(format!(
            "POST /.auth/refresh answered {status}: {}",
            resp.text().await.unwrap_or_default()
        ));
    }
    t.refreshes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn refresh_status(gw: &Gateway, refresh: &str) -> u16 {
    gw.client
        .post(gw.url("/.auth/refresh"))
        .header("cookie", format!("{REFRESH_COOKIE}={refresh}"))
        .header("origin", gw.origin())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn csrf_post_status(gw: &Gateway, s: &Session, token: &str) -> u16 {
    gw.client
        .post(gw.url("/private/form"))
        .header(
            "cookie",
            format!("{}; {CSRF_COOKIE}={token}", s.cookie_header()),
        )
        .header("origin", gw.origin())
        .header("x-csrf-token", token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A redis-backed gateway with 2-second access tokens and CSRF tokens, at step 0. The refresh
/// grace is the default: a reload closes no connection, so no browser presents its previous
/// refresh token again.
async fn rotation_gateway(redis: &RedisServer, secrets: &Secrets) -> (Gateway, GatewayConfig) {
    let base = secrets.env(
        GatewayConfig::new()
            .store(StoreSpec::Redis { url: redis.url() })
            .access_ttl("2s")
            .extra("[csrf]\nmode = \"token\"\n"),
    );
    let (_, access, refresh) = STEPS[0];
    let gw = Gateway::start(with_rings(&base, access, refresh)).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    (gw, base)
}

#[tokio::test]
async fn rotating_the_access_and_refresh_keys_under_load_signs_no_one_out() {
    let redis = RedisServer::start().await;
    let secrets = Secrets::new();
    let (mut gw, base) = rotation_gateway(&redis, &secrets).await;

    let mut browsers = Vec::new();
    for _ in 0..BROWSERS {
        browsers.push(sign_in(&gw).await);
    }
    // Controls: the CSRF check is on, and the token of one session is no other's.
    let (b0, b1) = (&browsers[0], &browsers[1]);
    assert_eq!(csrf_post_status(&gw, &b0.session, &b0.csrf).await, 200);
    assert_eq!(csrf_post_status(&gw, &b0.session, &b1.csrf).await, 403);
    // Made under the old keys, kept to be presented after they are gone.
    let initial = browsers.clone();
    let step0 = browsers[0].clone();
    let old_kids = (kid(&step0.session.access), kid(&step0.session.refresh));

    let traffic = Arc::new(Traffic {
        client: gw.client.clone(),
        stop: AtomicBool::new(false),
        csrf_epoch: AtomicUsize::new(0),
        refetched: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        browsers: Mutex::new(browsers.clone()),
        requests: AtomicUsize::new(0),
        refreshes: AtomicUsize::new(0),
        posts: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = browsers
        .into_iter()
        .enumerate()
        .map(|(i, b)| tokio::spawn(browse(traffic.clone(), i, b)))
        .collect();
    tokio::time::sleep(STEP_TRAFFIC).await;

    for (step, (name, access, refresh)) in STEPS.iter().enumerate().skip(1) {
        if step == 3 {
            before_the_old_key_goes(&gw, &traffic, &secrets, &step0, &old_kids).await;
        }
        apply(&mut gw, with_rings(&base, access, refresh)).await;
        tokio::time::sleep(STEP_TRAFFIC).await;
        let failures = traffic.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "{name}: {failures:#?}");
        let now: Vec<Browser> = traffic.browsers.lock().unwrap().clone();
        let signed_old = now.iter().filter(|b| kid(&b.session.access) == old_kids.0);
        match step {
            1 => assert_eq!(
                signed_old.count(),
                BROWSERS,
                "{name}: the old key still signs"
            ),
            _ => assert_eq!(signed_old.count(), 0, "{name}: the new key signs"),
        }
    }
    traffic.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = traffic.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    let (requests, refreshes, posts) = (
        traffic.requests.load(Ordering::SeqCst),
        traffic.refreshes.load(Ordering::SeqCst),
        traffic.posts.load(Ordering::SeqCst),
    );
    eprintln!(
        "rotation under load: {requests} requests, {refreshes} refreshes, {posts} CSRF posts"
    );
    assert!(
        refreshes >= BROWSERS * 4,
        "every browser refreshed through the steps: {refreshes}"
    );

    let browsers = traffic.browsers.lock().unwrap().clone();
    after_the_old_key_is_gone(&gw, &secrets, &initial, &browsers).await;
}

/// At step 2, before step 3: the old key still verifies what it signed (and nothing named as
/// the new key); every browser's refresh token is signed with the new key (what
/// `session.refresh_ttl` guarantees for every live session in production); every browser
/// loads a page, so fetches a new CSRF token.
async fn before_the_old_key_goes(
    gw: &Gateway,
    t: &Traffic,
    secrets: &Secrets,
    step0: &Browser,
    old_kids: &(String, String),
) {
    let live = t.browsers.lock().unwrap()[1].session.clone();
    let old_signed = resigned(&live.access, &step0.session.access, &secrets.access_old);
    assert_eq!(
        gw.access_status(&old_signed).await,
        200,
        "step 2: a token signed with the old key verifies during the overlap"
    );
    let misnamed = resigned(&live.access, &live.access, &secrets.access_old);
    assert_eq!(
        gw.access_status(&misnamed).await,
        401,
        "a token naming the new key but signed with the old one was accepted: every key tried?"
    );
    assert!(
        t.browsers
            .lock()
            .unwrap()
            .iter()
            .all(|b| kid(&b.session.refresh) != old_kids.1),
        "every browser refreshed since the promotion"
    );
    t.csrf_epoch.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.refetched.load(Ordering::SeqCst) < BROWSERS {
        assert!(Instant::now() < deadline, "the browsers did not reload");
        assert!(t.failures.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After step 3: what only the old keys signed is refused, and nothing else changed.
async fn after_the_old_key_is_gone(
    gw: &Gateway,
    secrets: &Secrets,
    initial: &[Browser],
    browsers: &[Browser],
) {
    let step0 = &initial[0];
    let b = &browsers[1];
    let old_access = resigned(
        &b.session.access,
        &step0.session.access,
        &secrets.access_old,
    );
    assert_eq!(
        gw.access_status(&old_access).await,
        401,
        "an unexpired access token signed with the dropped key was accepted"
    );
    let old_refresh = resigned(
        &b.session.refresh,
        &step0.session.refresh,
        &secrets.refresh_old,
    );
    assert_eq!(
        refresh_status(gw, &old_refresh).await,
        401,
        "a refresh token signed with the dropped key was accepted"
    );
    assert_eq!(
        refresh_status(gw, &b.session.refresh).await,
        200,
        "the refused old-key copy was taken for reuse and ended the session"
    );
    let c = &browsers[2];
    let old_csrf = c.old_csrf.as_deref().expect("the CSRF token from before");
    assert_eq!(old_csrf, initial[2].csrf, "the CSRF token of step 0");
    assert_eq!(
        csrf_post_status(gw, &c.session, old_csrf).await,
        403,
        "a CSRF token bound under the dropped key was accepted"
    );
    assert_eq!(csrf_post_status(gw, &c.session, &c.csrf).await, 200);

    // The sessions page and its handles, as the store lists them, are the ones of step 0.
    let resp = gw
        .get("/.auth/sessions")
        .header("cookie", browsers[3].session.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let listed: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["handle"].as_str())
        .collect();
    for (i, b) in browsers.iter().enumerate() {
        assert!(
            listed.contains(&b.handle.as_str()),
            "browser {i}'s handle of step 0 is not listed"
        );
    }
    let gone = &browsers[4];
    let me = &browsers[3];
    let resp = gw
        .client
        .delete(gw.url(&format!("/.auth/sessions/{}", gone.handle)))
        .header(
            "cookie",
            format!("{}; {CSRF_COOKIE}={}", me.session.cookie_header(), me.csrf),
        )
        .header("origin", gw.origin())
        .header("x-csrf-token", &me.csrf)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        204,
        "ending a session by its handle of step 0: {:?}",
        resp.text().await
    );
    assert_eq!(refresh_status(gw, &gone.session.refresh).await, 401);
}

// ---------------------------------------------------------------------------------------------
// Two instances

#[tokio::test]
async fn a_new_key_may_sign_only_once_every_instance_verifies_it() {
    let redis = RedisServer::start().await;
    let secrets = Secrets::new();
    let base = secrets.env(GatewayConfig::new().store(StoreSpec::Redis { url: redis.url() }));
    let at = |step: usize| with_rings(&base, STEPS[step].1, STEPS[step].2);
    let (mut a, mut b) = tokio::join!(Gateway::start(at(0)), Gateway::start(at(0)));
    a.wait_readyz(200, Duration::from_secs(10)).await;
    b.wait_readyz(200, Duration::from_secs(10)).await;
    let s = a.login_alice().await;

    // Promoted on A while B has not even step 1: B refuses what A now signs.
    apply(&mut a, at(2)).await;
    let resp = a.refresh(&s).await;
    assert_eq!(resp.status(), 200);
    let promoted = Session::from_response_headers(resp.headers()).unwrap();
    assert_eq!(a.access_status(&promoted.access).await, 200);
    assert_eq!(
        b.access_status(&promoted.access).await,
        401,
        "an instance without the new key accepted a token signed with it"
    );
    // The session is not lost: once B verifies the new key, it accepts the same tokens.
    apply(&mut b, at(1)).await;
    assert_eq!(b.access_status(&promoted.access).await, 200);
    let resp = b.refresh(&promoted).await;
    assert_eq!(
        resp.status(),
        200,
        "B refreshes a refresh token A signed with the new key"
    );
    let s = Session::from_response_headers(resp.headers()).unwrap();
    // B (step 1) still signs with the old key; A (step 2) verifies it.
    assert_eq!(a.access_status(&s.access).await, 200);
    apply(&mut b, at(2)).await;
    let resp = b.refresh(&s).await;
    assert_eq!(resp.status(), 200);
    let s = Session::from_response_headers(resp.headers()).unwrap();
    // Step 3, one instance after the other: the session goes on on both.
    apply(&mut a, at(3)).await;
    assert_eq!(a.access_status(&s.access).await, 200);
    apply(&mut b, at(3)).await;
    assert_eq!(b.refresh(&s).await.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// The grant secret (upstream login)

const GRANT_OLD: &str = "SG_ROT_GRANT_OLD";
const GRANT_NEW: &str = "SG_ROT_GRANT_NEW";

fn grant(secret: &str, sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "roles": ["ops"], "exp": now_unix() + 30}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The app's login form answered with `grant` (the app signed it): the session it started,
/// if any. The grant header never reaches the client.
async fn app_login(gw: &Gateway, grant: &str) -> Option<Session> {
    let resp = gw
        .post("/app/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-test-grant", grant)
        .body("username=carol&password=app-checks-this")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("x-sessiongate-grant"),
        "the grant header reached the client"
    );
    Session::from_response_headers(resp.headers())
}

async fn is_carol(gw: &Gateway, s: &Session, what: &str) {
    let echo = Echo::from(gw.get_with("/app/home", &s.cookie_header()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("carol"), "{what}");
}

#[tokio::test]
async fn rotating_the_grant_secret_while_the_app_switches_keys() {
    let redis = RedisServer::start().await;
    let (old, new) = (random_secret(), random_secret());
    let base = GatewayConfig::new()
        .store(StoreSpec::Redis { url: redis.url() })
        .set("login", "mode", "\"upstream\"")
        .set("login", "users_file", "\"/nonexistent/users.toml\"")
        .set("login", "upstream_path", "\"/app/login\"")
        .env(GRANT_OLD, &old)
        .env(GRANT_NEW, &new);
    let ring = |vars: &[&str]| base.clone().set("login", "grant_secret_env", &names(vars));
    let mut gw = Gateway::start(ring(&[GRANT_OLD])).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let before = app_login(&gw, &grant(&old, "carol"))
        .await
        .expect("step 0: the app signs with the old secret");
    assert!(
        app_login(&gw, &grant(&new, "carol")).await.is_none(),
        "control"
    );

    // Step 1: both verify, in either order; the app switches to the new secret.
    for vars in [[GRANT_OLD, GRANT_NEW], [GRANT_NEW, GRANT_OLD]] {
        apply(&mut gw, ring(&vars)).await;
        for (secret, which) in [(&old, "old"), (&new, "new")] {
            let s = app_login(&gw, &grant(secret, "carol")).await;
            let s = s.unwrap_or_else(|| panic!("{vars:?}: a grant under the {which} secret"));
            is_carol(&gw, &s, which).await;
        }
        is_carol(&gw, &before, "the session of step 0").await;
    }

    // Step 2: the old secret is gone; a grant under it starts nothing, and says so.
    apply(&mut gw, ring(&[GRANT_NEW])).await;
    assert!(
        app_login(&gw, &grant(&old, "mallory")).await.is_none(),
        "a grant under the dropped secret started a session"
    );
    let refused = gw.wait_for_audit("grant_refused").await;
    assert_eq!(refused["event"], "grant_refused");
    let s = app_login(&gw, &grant(&new, "carol")).await.expect("step 2");
    is_carol(&gw, &s, "after step 2").await;
    // Grant keys sign no token: the sessions started under either secret go on.
    is_carol(&gw, &before, "the session of step 0, after step 2").await;
    let resp = gw.refresh(&before).await;
    assert_eq!(resp.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// The assertion key

/// A fresh Ed25519 key as PKCS#8 PEM in `dir`, and its public `x`.
fn ed25519_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    use base64::Engine as _;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    let path = dir.join(name);
    std::fs::write(&path, kp.serialize_pem()).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key_raw());
    (path, x)
}

/// `/.auth/jwks.json`: the public `x` of each key by `kid`, and its `Cache-Control`.
async fn jwks(gw: &Gateway) -> (Vec<(String, String)>, String) {
    let resp = gw.get("/.auth/jwks.json").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    let keys = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(k.get("d").is_none(), "a private key published: {k}");
            (
                k["kid"].as_str().unwrap().to_string(),
                k["x"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (keys, cache)
}

/// Whether `token` verifies, as an app does: the JWKS key its `kid` names, EdDSA only.
fn verifies(token: &str, keys: &[(String, String)], gw: &Gateway) -> bool {
    let Some(kid) = jsonwebtoken::decode_header(token).unwrap().kid else {
        return false;
    };
    let Some((_, x)) = keys.iter().find(|(k, _)| *k == kid) else {
        return false;
    };
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["upstream"]);
    v.set_issuer(&[gw.origin()]);
    jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
}

/// The assertion the app receives for `s`, and the session handle beside it.
async fn assertion(gw: &Gateway, s: &Session) -> (String, String) {
    let echo = Echo::from(gw.get_with("/private/a", &s.cookie_header()).await).await;
    (
        echo.header("x-auth-assertion").unwrap().to_string(),
        echo.header("x-auth-session").unwrap().to_string(),
    )
}

#[tokio::test]
async fn rotating_the_assertion_key_keeps_every_assertion_verifiable_while_it_lives() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (old, x_old) = ed25519_key(dir.path(), "assertion.pem");
    let (new, x_new) = ed25519_key(dir.path(), "assertion-new.pem");
    let base = GatewayConfig::new().store(StoreSpec::Redis { url: redis.url() });
    let keys = |current: &std::path::Path, previous: Option<&std::path::Path>| {
        let cfg = base
            .clone()
            .set("keys", "assertion_key_file", &format!("{current:?}"));
        match previous {
            Some(p) => cfg.set("keys", "assertion_previous_key_file", &format!("{p:?}")),
            None => cfg,
        }
    };
    let xs = |keys: &[(String, String)]| keys.iter().map(|(_, x)| x.clone()).collect::<Vec<_>>();
    let mut gw = Gateway::start(keys(&old, None)).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let s = gw.login_alice().await;
    let (a0, handle) = assertion(&gw, &s).await;
    let (published, cache) = jwks(&gw).await;
    assert_eq!(xs(&published), [x_old.as_str()]);
    assert_eq!(
        cache, "public, max-age=300",
        "the cache lifetime the README names"
    );

    // 1: the new key is published, not signing.
    apply(&mut gw, keys(&old, Some(&new))).await;
    let (published, _) = jwks(&gw).await;
    assert_eq!(xs(&published), [x_old.as_str(), x_new.as_str()]);
    let (a1, h1) = assertion(&gw, &s).await;
    assert_eq!(
        h1, handle,
        "the session's handle (the assertion's sid) is the same"
    );
    let kid_old = jsonwebtoken::decode_header(&a0).unwrap().kid;
    assert_eq!(
        jsonwebtoken::decode_header(&a1).unwrap().kid,
        kid_old,
        "the old key signs"
    );
    assert!(verifies(&a0, &published, &gw) && verifies(&a1, &published, &gw));

    // 2: swapped; what the old key signed still verifies against the JWKS.
    apply(&mut gw, keys(&new, Some(&old))).await;
    let (published, _) = jwks(&gw).await;
    assert_eq!(xs(&published), [x_new.as_str(), x_old.as_str()]);
    let (a2, h2) = assertion(&gw, &s).await;
    assert_eq!(h2, handle);
    assert_ne!(
        jsonwebtoken::decode_header(&a2).unwrap().kid,
        kid_old,
        "the new key signs"
    );
    for (a, which) in [(&a0, "step 0"), (&a1, "step 1"), (&a2, "step 2")] {
        assert!(verifies(a, &published, &gw), "the assertion of {which}");
    }

    // 3: the previous key removed: only the new key is published, and verifies.
    apply(&mut gw, keys(&new, None)).await;
    let (published, _) = jwks(&gw).await;
    assert_eq!(xs(&published), [x_new.as_str()]);
    assert!(verifies(&a2, &published, &gw));
    assert!(
        !verifies(&a0, &published, &gw),
        "an assertion of the removed key still verifies"
    );
    let (a3, _) = assertion(&gw, &s).await;
    assert!(verifies(&a3, &published, &gw));

    // A step gone wrong: the same key as current and previous is refused at check-config.
    let copy = dir.path().join("assertion-copy.pem");
    std::fs::copy(&new, &copy).unwrap();
    gw.rewrite_config(keys(&new, Some(&copy)));
    let (ok, out) = check_config(&gw.config_path, &gw.access_secret, &gw.refresh_secret);
    assert!(!ok, "the same assertion key twice was accepted:\n{out}");
    assert!(
        out.contains(
            "keys.assertion_previous_key_file: holds the same key as keys.assertion_key_file"
        ),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rings that cannot be right

#[tokio::test]
async fn check_config_names_each_bad_entry_of_a_ring() {
    install_crypto_provider();
    let (a, b, c) = (random_secret(), random_secret(), random_secret());
    let (g1, g2) = (random_secret(), random_secret());
    let env = [
        ("RING_G1", g1.as_str()),
        ("RING_G2", g2.as_str()),
        ("SG_TEST_ACCESS_SECRET", a.as_str()),
        ("SG_TEST_REFRESH_SECRET", b.as_str()),
        ("RING_B", b.as_str()),
        ("RING_C", c.as_str()),
        ("RING_C_AGAIN", c.as_str()),
        ("RING_SHORT", "0123456789"),
        ("RING_PLACEHOLDER", "changeme-changeme-changeme-changeme-00"),
    ];
    let check = |cfg: GatewayConfig| {
        let w = write_config(&cfg, |s| s);
        check_config_env(&w.path, &env)
    };
    let access = |value: &str| GatewayConfig::new().set("keys", "access_secret_env", value);
    let upstream = |grant: &str| {
        GatewayConfig::new()
            .set(
                "keys",
                "access_secret_env",
                "[\"SG_TEST_ACCESS_SECRET\", \"RING_C\"]",
            )
            .set("login", "mode", "\"upstream\"")
            .set("login", "users_file", "\"/nonexistent/users.toml\"")
            .set("login", "upstream_path", "\"/app/login\"")
            .set("login", "grant_secret_env", grant)
    };
    for (cfg, what) in [
        (
            access("[\"SG_TEST_ACCESS_SECRET\", \"RING_C\"]"),
            "an access ring",
        ),
        (access("[\"SG_TEST_ACCESS_SECRET\"]"), "a ring of one"),
        (upstream("[\"RING_G1\", \"RING_G2\"]"), "a grant ring"),
    ] {
        let (ok, out) = check(cfg);
        assert!(ok, "{what} is accepted:\n{out}");
    }
    let cases = [
        (
            access("[]"),
            "keys.access_secret_env: is an empty list",
            "an empty ring",
        ),
        (
            access("[\"SG_TEST_ACCESS_SECRET\", \"RING_SHORT\"]"),
            "keys.access_secret_env[1]: the secret is 10 bytes",
            "a short key",
        ),
        (
            access("[\"RING_PLACEHOLDER\", \"SG_TEST_ACCESS_SECRET\"]"),
            "keys.access_secret_env[0]: the secret contains the placeholder",
            "a placeholder key",
        ),
        (
            access("[\"RING_C\", \"RING_C_AGAIN\"]"),
            "keys.access_secret_env[1]: is the same secret as keys.access_secret_env[0]",
            "one key twice",
        ),
        (
            access("[\"SG_TEST_ACCESS_SECRET\", \"RING_B\"]"),
            "keys.refresh_secret_env: must differ from the access secret (keys.access_secret_env[1])",
            "the refresh key in the access ring",
        ),
        (
            access("[\"SG_TEST_ACCESS_SECRET\", \"RING_UNSET\"]"),
            "keys.access_secret_env[1]: names environment variable RING_UNSET",
            "an unset variable",
        ),
        (
            access("[\"SG_TEST_ACCESS_SECRET\", 7]"),
            "keys.access_secret_env[1]",
            "a number in the list",
        ),
        (
            GatewayConfig::new().set("keys", "refresh_secret_env", "[]"),
            "keys.refresh_secret_env: is an empty list",
            "an empty refresh ring",
        ),
        (
            upstream("[\"RING_C\"]"),
            "login.grant_secret_env[0]: must differ from the access secret (keys.access_secret_env[1])",
            "a grant secret that is an access key of the ring",
        ),
        (
            upstream("\"RING_C\""),
            "login.grant_secret_env: must differ from the access secret (keys.access_secret_env[1])",
            "one grant secret, an access key of the ring",
        ),
        (
            upstream("[\"RING_G1\", \"RING_B\"]"),
            "login.grant_secret_env[1]: must differ from the refresh secret",
            "a grant secret that is the refresh key",
        ),
    ];
    for (cfg, named, what) in cases {
        let (ok, out) = check(cfg);
        assert!(!ok, "{what}: accepted:\n{out}");
        assert!(
            out.contains(named),
            "{what}: the error names `{named}`:\n{out}"
        );
        for (_, secret) in &env {
            assert!(!out.contains(secret), "{what}: a secret is echoed:\n{out}");
        }
    }
}
