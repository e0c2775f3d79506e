//! The Redis store over TLS (`rediss://`) with a private CA (`store.ca_file`) and an ACL user
//! (`store.username`), against a real `redis-server --tls-port` whose ACL lets that user touch
//! the store's keys and channels only.
//!
//! Attacks covered:
//! - someone on the network between the gateway and Redis reading or rewriting sessions: the
//!   gateway speaks TLS to Redis and verifies its certificate against `store.ca_file` — a
//!   server the CA does not vouch for (no `ca_file`, or another CA's) gets no session data,
//!   and the gateway says it is unavailable (`503`, `/readyz` `503`), never falls back to
//!   plain text or to no verification;
//! - a shared Redis where the gateway's credentials are a least-privilege ACL user: sessions,
//!   rotation and the revocation feed (publish and subscribe) all work as that user, and the
//!   same password without the user name (the `default` user) gets nowhere;
//! - a `store.ca_file` that cannot be read, or that would go unused on a `redis://` URL,
//!   refuses to start naming the key.

use std::time::{Duration, Instant};

use crate::harness::*;

const REDIS_PW_ENV: &str = "SG_TEST_REDIS_PW";

/// A gateway config on `redis` over TLS, authenticating with `password` and these `[store]`
/// keys (raw TOML values).
fn on_tls_redis(redis: &RedisTls, password: &str, keys: &[(&str, String)]) -> GatewayConfig {
    let mut cfg = GatewayConfig::new()
        .store(StoreSpec::Redis { url: redis.url() })
        .set("store", "password_env", &format!("\"{REDIS_PW_ENV}\""))
        .env(REDIS_PW_ENV, password);
    for (k, v) in keys {
        cfg = cfg.set("store", k, v);
    }
    cfg
}

fn quoted(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// `[store]` keys and their raw TOML values.
type StoreKeys = Vec<(&'static str, String)>;

fn acl_user() -> (&'static str, String) {
    ("username", format!("\"{REDIS_ACL_USER}\""))
}

#[tokio::test]
async fn sessions_live_in_redis_over_tls_as_the_acl_user() {
    let redis = RedisTls::start().await;
    let (access, refresh) = (random_secret(), random_secret());
    let cfg = on_tls_redis(
        &redis,
        REDIS_ACL_PASSWORD,
        &[acl_user(), ("ca_file", quoted(&redis.ca_path))],
    )
    .access_ttl("2s")
    .secrets(&access, &refresh);
    let (a, b) = tokio::join!(Gateway::start(cfg.clone()), Gateway::start(cfg));
    tokio::join!(
        a.wait_readyz(200, Duration::from_secs(10)),
        b.wait_readyz(200, Duration::from_secs(10))
    );

    let mut s = a.login_alice().await;
    let keys = redis.keys();
    assert!(
        keys.iter().any(|k| k.starts_with("sg:{alice}:s:")),
        "the session record is in Redis: {keys:?}"
    );
    let echo = Echo::from(b.get_with("/private/x", &s.cookie_header()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    // A rotation through Redis, on the other instance.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = b
        .get("/private/after-expiry")
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "refresh over TLS as the ACL user");
    s.update(resp.headers());

    // The revocation feed (PUBLISH on one, SUBSCRIBE on the other) runs over TLS too.
    assert_eq!(a.logout(&s).await.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = b
            .get("/private/after-logout")
            .header("cookie", s.access_only())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance B still accepts the access token of a session A ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !redis.keys().iter().any(|k| k.starts_with("sg:{alice}:s:")),
        "{:?}",
        redis.keys()
    );

    // Every client Redis sees, but the test's own admin connection, is the ACL user.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let users: Vec<&str> = clients
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("user=")))
        .filter(|u| *u != "admin")
        .collect();
    assert!(!users.is_empty(), "{clients}");
    assert!(users.iter().all(|u| *u == REDIS_ACL_USER), "{clients}");
}

/// The gateway starts, but the store never becomes ready and a login is `503`.
async fn assert_unavailable(gw: &Gateway, what: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(gw.readyz().await, Some(503), "{what}: /readyz");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = gw.login_json("alice", ALICE_PASSWORD).await;
    assert_eq!(resp.status(), 503, "{what}: login");
}

#[tokio::test]
async fn a_redis_the_gateway_cannot_verify_or_authenticate_to_is_unavailable() {
    let redis = RedisTls::start().await;
    let other = TestCa::new(redis.dir.path(), "other");
    let right_ca = ("ca_file", quoted(&redis.ca_path));
    // (what, password, [store] keys, what the log must say)
    let cases: [(&str, &str, StoreKeys, &str); 4] = [
        (
            "no ca_file (the built-in roots do not know the private CA)",
            REDIS_ACL_PASSWORD,
            vec![acl_user()],
            "UnknownIssuer",
        ),
        (
            "another CA's ca_file",
            REDIS_ACL_PASSWORD,
            vec![acl_user(), ("ca_file", quoted(&other.path))],
            "UnknownIssuer",
        ),
        (
            "the ACL user's password without its user name",
            REDIS_ACL_PASSWORD,
            vec![right_ca.clone()],
            "AuthenticationFailed",
        ),
        (
            "the ACL user with a wrong password",
            "not-the-password",
            vec![acl_user(), right_ca.clone()],
            "AuthenticationFailed",
        ),
    ];
    for (what, password, keys, logged) in cases {
        let gw = Gateway::start(on_tls_redis(&redis, password, &keys)).await;
        assert_unavailable(&gw, what).await;
        assert!(
            gw.stderr_text().contains(logged),
            "{what}: the log should say {logged}:\n{}",
            gw.stderr_text()
        );
    }
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}

#[tokio::test]
async fn redis_tls_settings_that_cannot_work_refuse_to_start() {
    let redis = RedisTls::start().await;
    let missing = redis.dir.path().join("missing-ca.pem");
    let plain_url = format!("\"redis://127.0.0.1:{}/0\"", redis.plain_port);
    for (what, cfg, key, says) in [
        (
            "an unreadable ca_file",
            on_tls_redis(
                &redis,
                REDIS_ACL_PASSWORD,
                &[acl_user(), ("ca_file", quoted(&missing))],
            ),
            "store.ca_file",
            "cannot read",
        ),
        (
            "a ca_file on a redis:// URL",
            on_tls_redis(
                &redis,
                REDIS_ACL_PASSWORD,
                &[
                    ("ca_file", quoted(&redis.ca_path)),
                    ("url", plain_url.clone()),
                ],
            ),
            "store.ca_file",
            "only applies to rediss://",
        ),
        (
            "a user name without a password",
            GatewayConfig::new()
                .store(StoreSpec::Redis { url: redis.url() })
                .set("store", "username", "\"gateway\""),
            "store.username",
            "needs store.password_env",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_gateway_toml(dir.path(), &cfg);
        let env: Vec<(&str, &str)> = cfg
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (refused, out) = run_refused(&path, &random_secret(), &random_secret(), &env);
        assert!(refused, "{what}: run started anyway:\n{out}");
        assert!(
            out.lines().any(|l| l.contains(key) && l.contains(says)),
            "{what}: no line names {key} ({says}):\n{out}"
        );
    }
}
