//! Rate limits (`[rate_limit]`, `[[route]] rate_limit`) through the real binary, with the memory
//! store and with a real `redis-server` shared by two instances.
//!
//! Attacks and failures covered:
//! - one session flooding the app: refused with `429` once its budget is spent (JSON for API
//!   calls, HTML for navigations, `Retry-After`, `RateLimit-Policy`, `RateLimit`), served again
//!   once the bucket refills; another session is not charged for it;
//! - an anonymous client flooding a public route: limited per client address, another address
//!   unaffected; the gateway's own endpoints (`/.auth/`) are not limited by this;
//! - a route's own, stricter limit, on its own bucket;
//! - spreading requests over instances to multiply the budget: with Redis the two instances
//!   share one budget (exactly, at a burst this small: no lease is taken below 8 tokens);
//! - a Redis outage: each instance falls back to the same rate on its own, never a `5xx` and
//!   never unlimited, and counts the store errors;
//! - a reload that would forgive a spent budget: the bucket is kept while its rate stays;
//! - a refusal that comes after a transparent refresh losing the rotated cookies (the client
//!   would later present a rotated-out token and look like a thief);
//! - the Redis script against the Rust arithmetic (`store::conformance`), on one node and on a
//!   Redis Cluster, and no session id in Redis's rate-limit keys.

use std::sync::Arc;
use std::time::Duration;

use sessiongate::store::SessionStore;
use sessiongate::store::redis::RedisStore;

use crate::harness::*;

fn limited(toml: &str) -> GatewayConfig {
    GatewayConfig::new().extra(&format!("[rate_limit]\n{toml}\n"))
}

async fn get(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    gw.get(path)
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// The statuses of `n` API requests for `path` with `cookie`.
async fn statuses(gw: &Gateway, path: &str, cookie: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(gw, path, cookie).await.status().as_u16());
    }
    out
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_session_over_its_limit_gets_429_with_the_headers_and_recovers() {
    let gw = Gateway::start(limited("per_session = \"5/2s\"")).await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    assert_eq!(
        statuses(&gw, "/private/a", &cookie, 5).await,
        [200; 5],
        "the burst"
    );
    let resp = get(&gw, "/private/a", &cookie).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "1", "400 ms, rounded up");
    assert_eq!(header(&resp, "ratelimit-policy"), "\"session\";q=5;w=2");
    assert_eq!(header(&resp, "ratelimit"), "\"session\";r=0;t=1");
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");

    // A navigation gets a page.
    let page = gw
        .get("/private/page")
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert!(page.headers().contains_key("ratelimit-policy"));
    assert!(page.text().await.unwrap().contains("Too many requests"));

    // Another session has its own budget; the gateway's endpoints are not limited.
    let other = gw.login_alice().await;
    assert_eq!(
        get(&gw, "/private/a", &other.cookie_header())
            .await
            .status(),
        200
    );
    let me = get(&gw, "/.auth/me", &cookie).await.status();
    assert_ne!(me, 429, "/.auth/ is not rate limited");

    // The bucket refills: one token per 400 ms, all five after 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(statuses(&gw, "/private/a", &cookie, 5).await, [200; 5]);
    assert_eq!(get(&gw, "/private/a", &cookie).await.status(), 429);

    let text = metrics(&gw).await;
    assert!(
        metric(
            &text,
            "sessiongate_rate_limited_total",
            &[("scope", "session")]
        ) >= 3.0
    );
    assert_eq!(
        metric(&text, "sessiongate_rate_limited_total", &[("scope", "ip")]),
        0.0
    );
    // Audited (once per window and session), by handle: never the session id.
    let event = gw.wait_for_audit("rate_limited").await;
    assert_eq!(event["user"], "alice");
    assert_eq!(event["reason"], "session");
    let sid = jwt_claims(&s.access)["sid"].as_str().unwrap().to_string();
    assert!(
        !gw.audit_text().contains(&sid),
        "the audit names the session id"
    );
    assert!(!all_logs(&gw).contains(&sid), "a log names the session id");
}

#[tokio::test]
async fn a_refusal_after_a_transparent_refresh_keeps_the_rotated_cookies() {
    let gw = Gateway::start(limited("per_session = \"2/30s\"")).await;
    let s = gw.login_alice().await;
    assert_eq!(
        statuses(&gw, "/private/a", &s.cookie_header(), 2).await,
        [200; 2]
    );
    // No access cookie: the refresh token rotates, then the session's budget is found spent.
    let resp = get(&gw, "/private/a", &s.refresh_only()).await;
    assert_eq!(resp.status(), 429);
    let rotated = Session::from_response_headers(resp.headers())
        .expect("the 429 carries the rotated cookies");
    assert_ne!(rotated.refresh, s.refresh);
}

#[tokio::test]
async fn anonymous_requests_on_a_public_route_are_limited_per_client_address() {
    let gw = Gateway::start(limited("anonymous_per_ip = \"3/2s\"")).await;
    let statuses_from = |client: reqwest::Client| {
        let url = gw.url("/public/x");
        async move {
            let mut out = Vec::new();
            for _ in 0..4 {
                out.push(client.get(&url).send().await.unwrap().status().as_u16());
            }
            out
        }
    };
    assert_eq!(statuses_from(gw.client.clone()).await, [200, 200, 200, 429]);
    let resp = gw.get("/public/x").send().await.unwrap();
    assert_eq!(header(&resp, "ratelimit-policy"), "\"ip\";q=3;w=2");
    // Another address has its own bucket.
    let elsewhere = gw.client_from("127.0.0.2".parse().unwrap());
    assert_eq!(statuses_from(elsewhere).await, [200, 200, 200, 429]);
    // A session is not charged as its address (no per-session limit here).
    let s = gw.login_alice().await;
    assert_eq!(
        statuses(&gw, "/public/x", &s.cookie_header(), 4).await,
        [200; 4]
    );
    let text = metrics(&gw).await;
    assert!(metric(&text, "sessiongate_rate_limited_total", &[("scope", "ip")]) >= 3.0);
}

#[tokio::test]
async fn a_route_with_its_own_limit_has_its_own_bucket() {
    let gw = Gateway::start(limited("per_session = \"100/1m\"").extra(
        "\n[[route]]\npath_prefix = \"/private/slow/\"\nrate_limit = { per_session = \"2/2s\" }\n",
    ))
    .await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    assert_eq!(
        statuses(&gw, "/private/slow/x", &cookie, 3).await,
        [200, 200, 429]
    );
    let resp = get(&gw, "/private/slow/y", &cookie).await;
    assert_eq!(header(&resp, "ratelimit-policy"), "\"session\";q=2;w=2");
    // The rest of the site is charged to the gateway's bucket, which has plenty left.
    assert_eq!(statuses(&gw, "/private/fast", &cookie, 5).await, [200; 5]);
}

#[tokio::test]
async fn a_malformed_rate_refuses_to_start_naming_its_key() {
    for (toml, key) in [
        (
            "[rate_limit]\nper_session = \"100\"\n",
            "rate_limit.per_session",
        ),
        (
            "[rate_limit]\nper_session = \"0/1m\"\n",
            "rate_limit.per_session",
        ),
        (
            "[rate_limit]\nanonymous_per_ip = \"5/0s\"\n",
            "rate_limit.anonymous_per_ip",
        ),
        (
            "[rate_limit]\nburst = 0\nper_session = \"5/1s\"\n",
            "rate_limit.burst",
        ),
        (
            "[[route]]\npath_prefix = \"/x/\"\nrate_limit = { burst = 0 }\n",
            "route[1].rate_limit.burst",
        ),
        (
            "[[route]]\npath_prefix = \"/x/\"\nrate_limit = { per_sesion = \"1/1s\" }\n",
            "per_sesion",
        ),
    ] {
        let w = write_config(&GatewayConfig::new().extra(toml), |s| s);
        let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
        assert!(!ok, "{toml}: accepted");
        assert!(out.contains(key), "{toml}: {out}");
    }
}

#[tokio::test]
async fn a_reload_keeps_a_spent_budget_while_the_rate_stays() {
    let mut gw = Gateway::start(limited("per_session = \"3/30s\"")).await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    assert_eq!(
        statuses(&gw, "/private/a", &cookie, 4).await,
        [200, 200, 200, 429]
    );
    // Same rate, another route: the spent budget stays spent.
    let cfg = limited("per_session = \"3/30s\"").route(Route::public("/docs/"));
    gw.reload_with(cfg, "ok", 1).await;
    assert_eq!(get(&gw, "/private/a", &cookie).await.status(), 429);
    // Another rate: a new bucket.
    gw.reload_with(limited("per_session = \"4/30s\""), "ok", 2)
        .await;
    assert_eq!(get(&gw, "/private/a", &cookie).await.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_instances_share_one_budget_through_redis() {
    let redis = RedisServer::start().await;
    // T = 2 s: nothing refills while the test spends the burst.
    let (a, b) = two_instances(
        StoreSpec::Redis { url: redis.url() },
        limited("per_session = \"5/10s\""),
    )
    .await;
    let s = a.login_alice().await;
    let cookie = s.cookie_header();
    let mut seen = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        seen.push(get(gw, "/private/a", &cookie).await.status().as_u16());
    }
    assert_eq!(
        seen.iter().filter(|s| **s == 200).count(),
        5,
        "one budget of 5 over both instances: {seen:?}"
    );
    assert!(seen.iter().all(|s| *s == 200 || *s == 429), "{seen:?}");
    assert_eq!(&seen[5..], [429; 5], "refused on both once spent: {seen:?}");
    // Recovers after an interval (2 s), on either instance: one token.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(&b, "/private/a", &cookie).await.status(), 200);
    assert_eq!(get(&a, "/private/a", &cookie).await.status(), 429);

    // One key per bucket under the prefix, expiring, naming no session id.
    let sid = jwt_claims(&s.access)["sid"].as_str().unwrap().to_string();
    let keys: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|k| k.contains(":rl:"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains(&sid));
    let ttl: i64 = redis.cli(&["PTTL", &keys[0]]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 10_000, "PTTL {ttl}");
}

#[tokio::test]
async fn a_high_limit_through_redis_is_spent_from_local_leases() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(
        StoreSpec::Redis { url: redis.url() },
        limited("per_session = \"1000/1m\""),
    )
    .await;
    let s = a.login_alice().await;
    let cookie = s.cookie_header();
    let before = redis_calls(&redis);
    for gw in [&a, &b] {
        assert_eq!(statuses(gw, "/private/a", &cookie, 40).await, [200; 40]);
    }
    let calls = redis_calls(&redis) - before;
    eprintln!("{calls} rate-limit script calls for 80 requests");
    // Eighty requests, a lease of up to 64 at a time: a handful of script calls, not 80.
    assert!(
        calls < 20,
        "{calls} rate-limit script calls for 80 requests"
    );
}

/// How many times Redis ran a script (`INFO commandstats`: evalsha and eval).
fn redis_calls(redis: &RedisServer) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split([':', ',', '='])
                .skip_while(|p| *p != "calls")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn a_redis_outage_falls_back_to_the_same_limit_on_each_instance() {
    let mut redis = RedisServer::start().await;
    // A token every 12 s: on a loaded machine the requests of the outage (each one that asks
    // Redis waits for its failure) must not outlast a refill and blur the burst.
    let gw = Gateway::start(
        limited("per_session = \"5/60s\"").store(StoreSpec::Redis { url: redis.url() }),
    )
    .await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let s = gw.login_alice().await;
    let cookie = s.cookie_header();
    assert_eq!(statuses(&gw, "/private/a", &cookie, 2).await, [200; 2]);
    redis.kill();
    // The local bucket, with the same rate: a burst of five, then refusals; never a 5xx.
    let seen = statuses(&gw, "/private/a", &cookie, 7).await;
    assert_eq!(
        seen,
        [200, 200, 200, 200, 200, 429, 429],
        "during the outage"
    );
    let text = metrics(&gw).await;
    assert!(
        metric(
            &text,
            "sessiongate_store_errors_total",
            &[("op", "rate_limit")]
        ) >= 1.0
    );
    let warned = "rate limits: the store is unreachable";
    assert!(gw.stderr_shows(warned, Duration::from_secs(2)).await);
    assert_eq!(
        all_logs(&gw).matches(warned).count(),
        1,
        "logged once per outage"
    );
}

// ---------------------------------------------------------------------------------------------
// The script against the arithmetic
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_script_takes_as_the_rust_arithmetic_does() {
    let redis = RedisServer::start().await;
    let cfg = redis_store_config(Some(redis.url()), Vec::new());
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&cfg).expect("redis store"));
    assert!(store.shares_rate_limits());
    sessiongate::store::conformance::rate_take_matches_gcra(store).await;
    // One key per bucket: the same script on a Redis Cluster.
    let cluster = RedisCluster::start().await;
    let cfg = redis_store_config(None, cluster.nodes());
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&cfg).expect("cluster store"));
    sessiongate::store::conformance::rate_take_matches_gcra(store).await;
}
