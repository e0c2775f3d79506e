//! The Redis store: many gateway instances, one truth, and honest behaviour when Redis is down.
//!
//! Two gateway processes (A and B, as behind a load balancer: same secrets, same public origin)
//! share one real `redis-server` (or a real three-master Redis Cluster). Defended here:
//! - a session started on one instance is valid, refreshable and revocable on the other, and a
//!   logout, a logout-all or an operator's revoke-all on one instance stops the old, unexpired
//!   access tokens on the other within a second (no store round trip on the hot path: the
//!   revocation feed carries it);
//! - replay of a stolen, rotated-out refresh token on another instance revokes the session
//!   everywhere; concurrent refreshes of one token on both instances rotate exactly once;
//! - an instance that restarts keeps its sessions and learns the revocations made meanwhile;
//! - no raw token (nor a token's signature) is ever stored in Redis or its append-only file;
//! - a Redis outage never logs anyone out: valid access tokens keep working, login and refresh
//!   answer `503` with `Retry-After` and leave the cookies alone, `/readyz` says so, and
//!   everything recovers when Redis returns, without a gateway restart.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::*;

/// The one origin both instances serve behind their (imagined) load balancer.
/// How fast a revocation on one instance must reach the other.
const PROPAGATION: Duration = Duration::from_secs(1);

fn redis_store(redis: &RedisServer) -> StoreSpec {
    StoreSpec::Redis { url: redis.url() }
}

/// A cookie-authenticated unsafe request as a browser page on the public origin sends it:
/// `Origin: <public origin>`, no `Sec-Fetch-Site`.
fn browser_post(gw: &Gateway, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    gw.client
        .post(gw.url(path))
        .header("origin", gw.public_origin())
        .header("cookie", cookie)
        .header("accept", "application/json")
}

/// `POST /.auth/logout` with both of `s`'s cookies, as a page on the public origin sends it.
async fn logout_on(gw: &Gateway, s: &Session) -> reqwest::Response {
    browser_post(gw, "/.auth/logout", &s.cookie_header())
        .send()
        .await
        .expect("POST /.auth/logout")
}

async fn refresh_with_cookie(gw: &Gateway, refresh: &str) -> reqwest::Response {
    browser_post(gw, "/.auth/refresh", &format!("{REFRESH_COOKIE}={refresh}"))
        .send()
        .await
        .expect("POST /.auth/refresh (cookie)")
}

/// Refresh through the cookie; asserts `200` and returns the new pair.
async fn refreshed(gw: &Gateway, s: &Session, what: &str) -> Session {
    let resp = refresh_with_cookie(gw, &s.refresh).await;
    let status = resp.status();
    let new = Session::from_response_headers(resp.headers());
    assert_eq!(status, 200, "{what}: {:?}", resp.text().await);
    let new = new.unwrap_or_else(|| panic!("{what}: no new session cookies"));
    assert_ne!(
        jwt_claims(&new.refresh)["jti"],
        jwt_claims(&s.refresh)["jti"],
        "{what}: the refresh token was not rotated"
    );
    new
}

/// The upstream's echo of a protected request with this access token: the identity it got.
async fn identity_on(gw: &Gateway, access: &str, what: &str) -> Echo {
    let resp = gw
        .get("/private/whoami")
        .header("cookie", format!("{ACCESS_COOKIE}={access}"))
        .send()
        .await
        .expect("GET /private/whoami");
    assert_eq!(resp.status(), 200, "{what}: the access token was refused");
    Echo::from(resp).await
}

/// Poll until `gw` refuses this access token (401); panics if that takes longer than
/// `within`. Returns how long it took.
async fn refused_within(gw: &Gateway, access: &str, within: Duration, what: &str) -> Duration {
    gw.refused_within(access, within, what).await
}

fn jti(token: &str) -> String {
    jwt_claims(token)["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("token without a jti: {token}"))
        .to_string()
}

fn sid(token: &str) -> String {
    jwt_claims(token)["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("token without a sid: {token}"))
        .to_string()
}

/// Redis's view of a user's sessions: `(index members, session hash keys)`.
fn sessions_in_redis(redis: &RedisServer, user: &str) -> (Vec<String>, Vec<String>) {
    let index = redis
        .cli(&["ZRANGE", &format!("sg:{{{user}}}:sessions"), "0", "-1"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let prefix = format!("sg:{{{user}}}:s:");
    let records = redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    (index, records)
}

/// `HGETALL` as a map.
fn hash(redis: &RedisServer, key: &str) -> std::collections::BTreeMap<String, String> {
    let text = redis.cli(&["HGETALL", key]);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

async fn admin_sessions(gw: &Gateway, token: &str, user: &str) -> Value {
    let resp = gw
        .plain
        .get(gw.admin_url(&format!("/admin/users/{user}/sessions")))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /admin/users/{user}/sessions");
    assert_eq!(resp.status(), 200, "admin sessions of {user}");
    resp.json().await.expect("admin sessions JSON")
}

fn assert_retry_after(resp: &reqwest::Response, what: &str) {
    let v = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: 503 without Retry-After"));
    assert!(
        v.parse::<u64>().is_ok_and(|s| s >= 1),
        "{what}: Retry-After is not a positive number of seconds: {v:?}"
    );
}

fn assert_no_session_cookie_touched(resp: &reqwest::Response, what: &str) {
    let touched: Vec<SetCookie> = set_cookies(resp.headers())
        .into_iter()
        .filter(|c| c.name == ACCESS_COOKIE || c.name == REFRESH_COOKIE)
        .collect();
    assert!(
        touched.is_empty(),
        "{what}: the store is down, yet the session cookies were set or cleared: {touched:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Many instances, one truth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn session_started_on_one_instance_is_used_and_refreshed_on_another() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(redis_store(&redis), GatewayConfig::new()).await;
    let s = a.login_alice().await;
    assert_eq!(
        jwt_claims(&s.access)["iss"],
        SHARED_ORIGIN,
        "iss is the shared public origin"
    );

    let echo = identity_on(&b, &s.access, "A's access token on B").await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert_eq!(echo.header("x-auth-roles"), Some("admin,dev"));

    let s2 = refreshed(&b, &s, "A's refresh token on B").await;
    assert_eq!(
        sid(&s2.access),
        sid(&s.access),
        "a refresh keeps the session"
    );
    let echo = identity_on(&a, &s2.access, "B's refreshed access token on A").await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    // And the rotation B made is the store's truth: A rotates the new token in turn.
    let s3 = refreshed(&a, &s2, "B's refresh token on A").await;
    assert_eq!(
        hash(&redis, &format!("sg:{{alice}}:s:{}", sid(&s.access)))
            .get("cur")
            .map(String::as_str),
        Some(jti(&s3.refresh).as_str()),
        "Redis holds the jti of the last refresh token issued"
    );
}

#[tokio::test]
async fn instance_with_another_public_origin_refuses_the_tokens() {
    // `iss` is the public origin: instances behind one load balancer must share it.
    let redis = RedisServer::start().await;
    let (access, refresh) = (random_secret(), random_secret());
    let cfg = GatewayConfig::new()
        .store(redis_store(&redis))
        .secrets(&access, &refresh);
    let (a, other) = tokio::join!(
        Gateway::start(cfg.clone().public_origin(SHARED_ORIGIN)),
        Gateway::start(cfg.public_origin("https://elsewhere.example.test"))
    );
    let s = a.login_alice().await;
    identity_on(&a, &s.access, "control: the token on its own instance").await;
    assert_eq!(
        other.access_status(&s.access).await,
        401,
        "an access token issued for another origin"
    );
}

#[tokio::test]
async fn logout_on_one_instance_refuses_the_old_access_token_on_another_within_a_second() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(redis_store(&redis), GatewayConfig::new()).await;
    let s = a.login_alice().await;
    identity_on(&b, &s.access, "control: before the logout").await;

    let resp = logout_on(&a, &s).await;
    assert_eq!(resp.status(), 204, "logout on A");
    let took = refused_within(&b, &s.access, PROPAGATION, "logged-out token on B").await;
    eprintln!("logout on A reached B in {took:?}");
    assert!(
        jwt_claims(&s.access)["exp"].as_u64().unwrap() > now_unix() + 60,
        "the refused access token had not expired"
    );
    assert_eq!(a.access_status(&s.access).await, 401, "and on A");
    let resp = refresh_with_cookie(&b, &s.refresh).await;
    assert_eq!(resp.status(), 401, "the logged-out refresh token on B");
    assert_eq!(sessions_in_redis(&redis, "alice"), (vec![], vec![]));
}

#[tokio::test]
async fn replayed_rotated_out_refresh_token_on_another_instance_revokes_the_session_everywhere() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(
        redis_store(&redis),
        GatewayConfig::new().refresh_grace("1s"),
    )
    .await;
    let s0 = a.login_alice().await;
    let s1 = refreshed(&a, &s0, "rotation on A").await;

    // Within the grace, the previous token is a parallel tab, not a thief: B answers with the
    // token A already issued (same jti), and rotates nothing.
    let resp = b.refresh_json(&s0.refresh).await;
    assert_eq!(
        resp.status(),
        200,
        "previous refresh token within the grace"
    );
    let body: Value = resp.json().await.unwrap();
    let grace_refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        jti(grace_refresh),
        jti(&s1.refresh),
        "within the grace B returns the already-issued current jti"
    );

    // Past the grace (1 s after the rotation, which happened within the second of `iat`), it
    // is a replay.
    let rotated_at = jwt_claims(&s1.refresh)["iat"].as_u64().unwrap();
    let past_grace = UNIX_EPOCH + Duration::from_secs(rotated_at + 2) + Duration::from_millis(50);
    if let Ok(wait) = past_grace.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let resp = b.refresh_json(&s0.refresh).await;
    assert_eq!(
        resp.status(),
        401,
        "replayed rotated-out refresh token on B"
    );
    let event = b.wait_for_audit("refresh_reuse").await;
    assert_eq!(event["user"], "alice", "audit: {event}");

    // The whole session is gone, on both instances: the current pair too.
    refused_within(&a, &s1.access, PROPAGATION, "current access token on A").await;
    assert_eq!(b.access_status(&s1.access).await, 401, "on B");
    assert_eq!(a.access_status(&s0.access).await, 401, "first access on A");
    for (gw, name) in [(&a, "A"), (&b, "B")] {
        let resp = refresh_with_cookie(gw, &s1.refresh).await;
        assert_eq!(
            resp.status(),
            401,
            "the legitimate current refresh token on {name} after the reuse"
        );
    }
    assert_eq!(sessions_in_redis(&redis, "alice"), (vec![], vec![]));
    assert!(
        redis
            .cli(&["ZRANGE", "sg:revocations", "0", "-1"])
            .lines()
            .any(|l| l == sid(&s0.access)),
        "the revoked sid is recorded for instances that join later"
    );
}

#[tokio::test]
async fn logout_all_and_admin_revoke_all_on_one_instance_end_every_session_on_the_other() {
    let redis = RedisServer::start().await;
    let admin = random_secret();
    let (a, b) = two_instances(
        redis_store(&redis),
        GatewayConfig::new().admin_api_token(&admin),
    )
    .await;
    let alice_a = a.login_alice().await;
    let alice_b = b.login_alice().await;
    let bob = a.login("bob", BOB_PASSWORD).await;
    assert_eq!(
        admin_sessions(&b, &admin, "alice").await["sessions"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "B's admin API sees both of alice's sessions"
    );

    // A cookie-authenticated logout-all must prove its origin.
    for origin in [None, Some("https://evil.example")] {
        let mut req = b
            .client
            .post(b.url("/.auth/logout-all"))
            .header("cookie", alice_a.cookie_header());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "logout-all with Origin {origin:?}");
    }
    identity_on(&a, &alice_a.access, "control: after the refused logout-all").await;

    let resp = browser_post(&b, "/.auth/logout-all", &alice_a.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "logout-all on B");
    for (s, what) in [(&alice_a, "session from A"), (&alice_b, "session from B")] {
        refused_within(&a, &s.access, PROPAGATION, what).await;
        let resp = refresh_with_cookie(&a, &s.refresh).await;
        assert_eq!(resp.status(), 401, "{what}: refresh on A after logout-all");
    }
    assert_eq!(sessions_in_redis(&redis, "alice"), (vec![], vec![]));
    let listed = admin_sessions(&a, &admin, "alice").await;
    assert_eq!(listed["sessions"], serde_json::json!([]), "{listed}");

    // Another user is untouched, until an operator revokes all of them on B.
    identity_on(&a, &bob.access, "bob after alice's logout-all").await;
    let resp = b
        .plain
        .post(b.admin_url("/admin/users/bob/revoke-all"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "admin revoke-all on B");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["revoked"], 1, "{body}");
    refused_within(
        &a,
        &bob.access,
        PROPAGATION,
        "bob on A after revoke-all on B",
    )
    .await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_on_two_instances_rotate_it_once() {
    const N: usize = 20;
    let redis = RedisServer::start().await;
    let admin = random_secret();
    let (a, b) = two_instances(
        redis_store(&redis),
        GatewayConfig::new().admin_api_token(&admin),
    )
    .await;
    let resp = a.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let login: Value = resp.json().await.unwrap();
    let r0 = login["refresh_token"].as_str().unwrap().to_string();

    let calls = (0..N).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r0 = r0.clone();
        async move {
            // Half through the cookie (a browser), half through the JSON body (an API client).
            if i % 4 < 2 {
                let resp = refresh_with_cookie(gw, &r0).await;
                let status = resp.status().as_u16();
                let s = Session::from_response_headers(resp.headers());
                let text = resp.text().await.unwrap_or_default();
                (i, status, s.map(|s| s.refresh), text)
            } else {
                let resp = gw.refresh_json(&r0).await;
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let t = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["refresh_token"].as_str().map(str::to_string));
                (i, status, t, text)
            }
        }
    });
    let results = futures_util::future::join_all(calls).await;

    let mut jtis = std::collections::BTreeSet::new();
    for (i, status, token, text) in &results {
        assert_eq!(*status, 200, "refresh #{i} failed: {text}");
        let token = token
            .as_deref()
            .unwrap_or_else(|| panic!("refresh #{i} returned no refresh token: {text}"));
        assert_eq!(sid(token), sid(&r0), "refresh #{i} is of the same session");
        jtis.insert(jti(token));
    }
    assert_eq!(
        jtis.len(),
        1,
        "{N} concurrent refreshes of one token rotated it more than once: {jtis:?}"
    );
    let winner = jtis.into_iter().next().unwrap();
    assert_ne!(winner, jti(&r0), "the token was rotated");

    let (index, records) = sessions_in_redis(&redis, "alice");
    assert_eq!(index, vec![sid(&r0)], "one session in the user's index");
    assert_eq!(records.len(), 1, "one session record: {records:?}");
    let rec = hash(&redis, &records[0]);
    assert_eq!(rec.get("cur"), Some(&winner), "record: {rec:?}");
    assert_eq!(rec.get("prev"), Some(&jti(&r0)), "record: {rec:?}");
    for gw in [&a, &b] {
        let listed = admin_sessions(gw, &admin, "alice").await;
        assert_eq!(
            listed["sessions"].as_array().map(Vec::len),
            Some(1),
            "admin API: {listed}"
        );
    }

    // The winning token is live: it rotates once more, on either instance.
    let (_, _, token, _) = &results[0];
    let resp = b.refresh_json(token.as_deref().unwrap()).await;
    assert_eq!(resp.status(), 200, "the rotated token refreshes");
    let next: Value = resp.json().await.unwrap();
    assert_ne!(jti(next["refresh_token"].as_str().unwrap()), winner);
}

// ---------------------------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_survive_a_gateway_restart() {
    let redis = RedisServer::start().await;
    let mut gw = Gateway::start(GatewayConfig::new().store(redis_store(&redis))).await;
    let s = gw.login_alice().await;
    identity_on(&gw, &s.access, "control: before the restart").await;

    gw.restart().await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;

    let echo = identity_on(&gw, &s.access, "access cookie from before the restart").await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    let s2 = refreshed(&gw, &s, "refresh cookie from before the restart").await;
    identity_on(&gw, &s2.access, "access token refreshed after the restart").await;
}

#[tokio::test]
async fn instance_restarted_after_a_logout_elsewhere_refuses_the_revoked_token() {
    let redis = RedisServer::start().await;
    let (mut a, b) = two_instances(redis_store(&redis), GatewayConfig::new()).await;
    let gone = a.login_alice().await;
    let kept = a.login_alice().await;

    a.stop().await;
    let resp = logout_on(&b, &gone).await;
    assert_eq!(resp.status(), 204, "logout on B while A is down");
    a.relaunch().await;
    // Ready means synchronised: from then on A must know what it missed.
    a.wait_readyz(200, Duration::from_secs(10)).await;

    assert_eq!(
        a.access_status(&gone.access).await,
        401,
        "A, started after the logout on B, accepted the logged-out access token"
    );
    identity_on(&a, &kept.access, "the other session, after A's restart").await;
    refreshed(&a, &kept, "the other session's refresh, after A's restart").await;
}

// ---------------------------------------------------------------------------------------------
// What Redis holds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_holds_session_records_but_never_a_raw_token() {
    let redis = RedisServer::start().await;
    let gw = Gateway::start(GatewayConfig::new().store(redis_store(&redis))).await;
    let mut tokens: Vec<String> = Vec::new();

    let s1 = gw.login_alice().await;
    let s1b = refreshed(&gw, &s1, "cookie refresh").await;
    tokens.extend([&s1.access, &s1.refresh, &s1b.access, &s1b.refresh].map(String::clone));

    let resp = gw.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let j: Value = resp.json().await.unwrap();
    let (a2, r2) = (
        j["access_token"].as_str().unwrap().to_string(),
        j["refresh_token"].as_str().unwrap().to_string(),
    );
    let resp = gw.refresh_json(&r2).await;
    assert_eq!(resp.status(), 200);
    let j: Value = resp.json().await.unwrap();
    let (a2b, r2b) = (
        j["access_token"].as_str().unwrap().to_string(),
        j["refresh_token"].as_str().unwrap().to_string(),
    );
    tokens.extend([a2.clone(), r2, a2b.clone(), r2b]);
    // End the second session, so that the revocation list holds something too.
    let resp = gw
        .client
        .post(gw.url("/.auth/logout"))
        .bearer_auth(&a2b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "bearer logout");

    let (sid1, sid2) = (sid(&s1.access), sid(&a2));
    let record_key = format!("sg:{{alice}}:s:{sid1}");
    let mut expected = vec![
        "sg:revocations".to_string(),
        "sg:{alice}:sessions".to_string(),
        "sg:{alice}:uas".to_string(),
        record_key.clone(),
    ];
    expected.sort();
    let keys = redis.keys();
    assert_eq!(keys, expected, "the keys in Redis");

    // The record: identifiers and metadata, refresh jtis, an expiry at the absolute end.
    let rec = hash(&redis, &record_key);
    assert_eq!(
        rec.get("user").map(String::as_str),
        Some("alice"),
        "{rec:?}"
    );
    assert_eq!(rec.get("cur"), Some(&jti(&s1b.refresh)), "{rec:?}");
    assert_eq!(rec.get("prev"), Some(&jti(&s1.refresh)), "{rec:?}");
    let ttl: i64 = redis.cli(&["TTL", &record_key]).trim().parse().unwrap();
    let until_end = jwt_claims(&s1.refresh)["exp"].as_u64().unwrap() as i64 - now_unix() as i64;
    assert!(
        ttl > 0 && (ttl - until_end).abs() <= 5,
        "the record expires at the session's absolute end: TTL {ttl}, end in {until_end}s"
    );
    let index = redis.cli(&["ZRANGE", "sg:{alice}:sessions", "0", "-1"]);
    assert_eq!(index.lines().collect::<Vec<_>>(), vec![sid1.as_str()]);
    // The user agent is kept once per user, named by a hash in the record (its text would make
    // every record a full hash table: Redis keeps small hashes compact only up to 64 bytes a
    // value); the record stays compact.
    let uas = hash(&redis, "sg:{alice}:uas");
    let uah = rec.get("uah").expect("the record names its user agent");
    assert!(uas.contains_key(uah), "{uas:?}");
    assert!(
        !rec.contains_key("ua") && !rec.contains_key("dev"),
        "{rec:?}"
    );
    assert_eq!(
        redis.cli(&["OBJECT", "ENCODING", &record_key]).trim(),
        "listpack",
        "a compact record"
    );
    let uas_ttl: i64 = redis
        .cli(&["TTL", "sg:{alice}:uas"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        uas_ttl >= ttl - 5,
        "the user agents live as long as the last session"
    );
    let revoked = redis.cli(&["ZRANGE", "sg:revocations", "0", "-1"]);
    assert_eq!(revoked.lines().collect::<Vec<_>>(), vec![sid2.as_str()]);

    // Everything Redis holds, value by value, and its serialised form.
    let mut haystack = String::new();
    for key in &keys {
        haystack.push_str(key);
        haystack.push('\n');
        let kind = redis.cli(&["TYPE", key]);
        let dump = match kind.trim() {
            "hash" => redis.cli(&["HGETALL", key]),
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "set" => redis.cli(&["SMEMBERS", key]),
            "list" => redis.cli(&["LRANGE", key, "0", "-1"]),
            "string" => redis.cli(&["GET", key]),
            other => panic!("unexpected Redis type {other:?} for {key}"),
        };
        haystack.push_str(&dump);
        haystack.push_str(&redis.cli(&["DUMP", key]));
    }
    // What persists on disk: the append-only file holds every write ever made.
    let files = redis.files();
    let disk: String = files
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    // The scans see the data (else "no token found" would prove nothing).
    assert!(haystack.contains(&jti(&s1b.refresh)), "scan: {haystack}");
    assert!(
        disk.contains(&jti(&s1b.refresh)),
        "the append-only files hold the writes: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );

    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        assert!(signature.len() >= 32, "a JWT signature: {t}");
        for (needle, what) in [(t.as_str(), "token"), (signature, "token signature")] {
            assert!(
                !haystack.contains(needle),
                "Redis holds a raw {what}: {needle}"
            );
            assert!(
                !disk.contains(needle),
                "Redis's files hold a raw {what}: {needle}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis outage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_outage_keeps_sessions_working_answers_503_and_recovers_without_restart() {
    let mut redis = RedisServer::start().await;
    let gw = Gateway::start(GatewayConfig::new().store(redis_store(&redis))).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let s = gw.login_alice().await;
    // Open many pooled connections (up to store.pool_size, 16), as real load would: the
    // outage breaks every one, and none may cost a request a 503 once Redis is back.
    futures_util::future::join_all((0..16).map(|_| gw.readyz())).await;
    let clients = redis.cli(&["CLIENT", "LIST"]).lines().count();
    eprintln!("Redis clients before the outage: {clients}");

    redis.kill();

    let echo = Echo::from(gw.get_with("/private/during", &s.cookie_header()).await).await;
    assert_eq!(
        echo.header("x-auth-user"),
        Some("alice"),
        "a valid access token is forwarded with its identity while Redis is down"
    );

    let resp = gw.login_form("alice", ALICE_PASSWORD, "/").await;
    assert_eq!(resp.status(), 503, "form login while Redis is down");
    assert_retry_after(&resp, "form login");
    assert_no_session_cookie_touched(&resp, "form login");
    let resp = gw.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 503, "JSON login while Redis is down");
    assert_retry_after(&resp, "JSON login");

    let resp = refresh_with_cookie(&gw, &s.refresh).await;
    assert_eq!(resp.status(), 503, "cookie refresh while Redis is down");
    assert_retry_after(&resp, "cookie refresh");
    assert_no_session_cookie_touched(&resp, "cookie refresh");
    let resp = gw.refresh_json(&s.refresh).await;
    assert_eq!(resp.status(), 503, "JSON refresh while Redis is down");
    assert_retry_after(&resp, "JSON refresh");
    // A transparent refresh (no access token left) must not log the user out either.
    let resp = gw
        .get("/private/needs-refresh")
        .header("cookie", s.refresh_only())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        503,
        "transparent refresh while Redis is down"
    );
    assert_retry_after(&resp, "transparent refresh");
    assert_no_session_cookie_touched(&resp, "transparent refresh");

    gw.wait_readyz(503, Duration::from_secs(5)).await;
    identity_on(&gw, &s.access, "still, with /readyz at 503").await;

    redis.restart().await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;

    // Ready again means working again: no request pays for the outage any more.
    let s2 = refreshed(
        &gw,
        &s,
        "the pre-outage refresh token, after Redis returned",
    )
    .await;
    identity_on(&gw, &s2.access, "refreshed after the outage").await;
    let fresh = gw.login_alice().await;
    identity_on(&gw, &fresh.access, "login after the outage").await;
    refreshed(&gw, &fresh, "refresh of a post-outage session").await;
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn core_flow_works_on_a_three_master_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let (a, b) = two_instances(
        StoreSpec::Cluster {
            nodes: cluster.nodes(),
        },
        GatewayConfig::new(),
    )
    .await;
    let s = a.login_alice().await;
    let echo = identity_on(&b, &s.access, "A's session on B").await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    let s2 = refreshed(&b, &s, "A's refresh token on B").await;
    identity_on(&a, &s2.access, "B's refreshed token on A").await;

    // One user's keys share a hash slot, hence a node: one script can change them together.
    let alice_keys: Vec<(u16, String)> = cluster
        .keys()
        .into_iter()
        .filter(|(_, k)| k.contains("{alice}"))
        .collect();
    assert_eq!(
        alice_keys.len(),
        3,
        "record, index, user agents: {alice_keys:?}"
    );
    assert!(
        alice_keys.iter().all(|(slot, _)| *slot == alice_keys[0].0),
        "{alice_keys:?}"
    );

    let resp = logout_on(&a, &s2).await;
    assert_eq!(resp.status(), 204, "logout on A");
    refused_within(
        &b,
        &s2.access,
        PROPAGATION,
        "logged-out token on B (cluster)",
    )
    .await;
    let resp = refresh_with_cookie(&b, &s2.refresh).await;
    assert_eq!(
        resp.status(),
        401,
        "logged-out refresh token on B (cluster)"
    );
}

// ---------------------------------------------------------------------------------------------
// The harness's Redis, checked on its own
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn harness_redis_server_keeps_its_data_across_kill_and_restart_on_the_same_port() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    assert_eq!(redis.cli(&["SET", "k", "v"]).trim(), "OK");
    redis.kill();
    let down = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&down.stdout).contains("PONG"),
        "killed, yet something answers on port {port}"
    );
    redis.restart().await;
    assert_eq!(redis.port, port);
    assert_eq!(
        redis.cli(&["GET", "k"]).trim(),
        "v",
        "data lost across restart"
    );
}
