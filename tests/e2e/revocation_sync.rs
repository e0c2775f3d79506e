//! Revocations while an instance's revocation feed is out of sync (issue 10, item 9).
//!
//! Two gateway instances (A and B: same secrets, same public origin) share one real
//! `redis-server`. B connects as a Redis ACL user of its own, so the test takes B's pub/sub
//! away deterministically: `ACL SETUSER <b> resetchannels` makes Redis drop B's subscription and
//! refuse its resubscription (`NOPERM`), while every other command of B's still works. B's feed
//! stays out of sync for exactly as long as the test wants — no timing race, no test hook in
//! the gateway — as after a Redis failover or a killed pub/sub connection, only longer.
//!
//! Attacks and failures covered:
//! - a logout, and an operator's revoke-all, made on A while B's feed is away, and B honouring
//!   the revoked access tokens until its resync (which here never comes until the test allows
//!   it): B must refuse them within a second, as in sync;
//! - live sessions on B being refused meanwhile, or B claiming to be in sync (`/readyz`,
//!   `sessiongate_revocation_feed_synced`) while it is not;
//! - a Redis outage (feed lost and store unreachable at once) signing anyone out: valid access
//!   tokens are honoured on both instances until they expire, refreshes answer `503` and leave
//!   the cookies alone, and everything recovers when Redis returns.

use std::time::{Duration, Instant};

use crate::harness::*;

/// How fast a revocation on A must be honoured on B, in sync or not.
const WITHIN: Duration = Duration::from_millis(1500);
const B_USER: &str = "gateway-b";
const B_PASSWORD_ENV: &str = "SG_TEST_REDIS_PASSWORD";

/// Let B subscribe to channels, or not (Redis then drops its current subscription).
fn allow_b_pubsub(redis: &RedisServer, allowed: bool) {
    let channels = if allowed { "&*" } else { "resetchannels" };
    assert_eq!(
        redis.cli(&["ACL", "SETUSER", B_USER, channels]).trim(),
        "OK"
    );
}

/// A (Redis's default user, the admin API on) and B, both ready. With `b_own_user`, B
/// connects as its own ACL user (see [`allow_b_pubsub`]; Redis forgets it at a restart).
async fn instances(redis: &RedisServer, admin: &str, b_own_user: bool) -> (Gateway, Gateway) {
    let (access, refresh) = (random_secret(), random_secret());
    let cfg = GatewayConfig::new()
        .secrets(&access, &refresh)
        .public_origin(SHARED_ORIGIN);
    let a = cfg
        .clone()
        .store(StoreSpec::Redis { url: redis.url() })
        .admin_api_token(admin);
    let b = if b_own_user {
        let password = random_secret();
        let acl = [
            "ACL",
            "SETUSER",
            B_USER,
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ];
        assert_eq!(redis.cli(&acl).trim(), "OK");
        let b_url = format!("redis://{B_USER}@127.0.0.1:{}/0", redis.port);
        cfg.store(StoreSpec::Redis { url: b_url })
            .set("store", "password_env", &format!("\"{B_PASSWORD_ENV}\""))
            .env(B_PASSWORD_ENV, &password)
    } else {
        cfg.store(StoreSpec::Redis { url: redis.url() })
    };
    let (a, b) = tokio::join!(Gateway::start(a), Gateway::start(b));
    tokio::join!(
        a.wait_readyz(200, Duration::from_secs(10)),
        b.wait_readyz(200, Duration::from_secs(10))
    );
    (a, b)
}

/// Poll until `gw` refuses this access token (401), within [`WITHIN`].
async fn refused_within(gw: &Gateway, access: &str, what: &str) -> Duration {
    gw.refused_within(access, WITHIN, what).await
}

/// `sessiongate_revocation_feed_synced` (1 in sync, 0 not); the series must be there.
async fn feed_synced(gw: &Gateway) -> f64 {
    let text = metrics(gw).await;
    assert!(
        text.contains("# TYPE sessiongate_revocation_feed_synced gauge"),
        "/metrics lacks sessiongate_revocation_feed_synced:\n{text}"
    );
    metric(&text, "sessiongate_revocation_feed_synced", &[])
}

#[tokio::test]
async fn revocations_made_while_an_instance_is_out_of_sync_are_honoured_before_it_resyncs() {
    let redis = RedisServer::start().await;
    let admin = random_secret();
    let (a, b) = instances(&redis, &admin, true).await;
    let gone = a.login_alice().await;
    let kept = a.login_alice().await;
    let bob = a.login("bob", BOB_PASSWORD).await;
    for (s, who) in [(&gone, "gone"), (&kept, "kept"), (&bob, "bob")] {
        assert_eq!(b.access_status(&s.access).await, 200, "control: {who} on B");
    }

    // B's feed goes away and cannot come back.
    allow_b_pubsub(&redis, false);
    b.wait_readyz(503, Duration::from_secs(5)).await;
    assert_eq!(a.readyz().await, Some(200), "A's feed is fine");
    // Out of sync, a live session still works on B (confirmed with Redis).
    assert_eq!(
        b.access_status(&gone.access).await,
        200,
        "live, out of sync"
    );

    let resp = a
        .client
        .post(a.url("/.auth/logout"))
        .header("origin", SHARED_ORIGIN)
        .header("cookie", gone.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "logout on A");
    let took = refused_within(
        &b,
        &gone.access,
        "a token logged out on A, on B out of sync",
    )
    .await;
    eprintln!("logout on A honoured on B (out of sync) in {took:?}");

    let resp = a
        .plain
        .post(a.admin_url("/admin/users/bob/revoke-all"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "revoke-all on A: {}",
        resp.status()
    );
    refused_within(&b, &bob.access, "bob's token after a revoke-all on A, on B").await;

    assert_eq!(
        b.access_status(&kept.access).await,
        200,
        "the other session"
    );
    assert_eq!(
        b.readyz().await,
        Some(503),
        "B was still out of sync: the refusals came from Redis, not from a resync"
    );
    assert_eq!(feed_synced(&b).await, 0.0, "B says it is out of sync");
    assert_eq!(feed_synced(&a).await, 1.0, "A says it is in sync");

    // The feed comes back: B resynchronises and keeps refusing what was revoked.
    allow_b_pubsub(&redis, true);
    b.wait_readyz(200, Duration::from_secs(10)).await;
    assert_eq!(feed_synced(&b).await, 1.0);
    assert_eq!(b.access_status(&gone.access).await, 401, "after the resync");
    assert_eq!(b.access_status(&bob.access).await, 401, "after the resync");
    assert_eq!(b.access_status(&kept.access).await, 200, "after the resync");
}

#[tokio::test]
async fn nobody_is_signed_out_while_redis_is_down_and_revocations_are_out_of_sync() {
    let mut redis = RedisServer::start().await;
    let (a, b) = instances(&redis, &random_secret(), false).await;
    let on_a = a.login_alice().await;
    let on_b = b.login("bob", BOB_PASSWORD).await;

    redis.kill();
    tokio::join!(
        a.wait_readyz(503, Duration::from_secs(5)),
        b.wait_readyz(503, Duration::from_secs(5))
    );
    for (gw, name) in [(&a, "A"), (&b, "B")] {
        for (s, user) in [(&on_a, "alice"), (&on_b, "bob")] {
            for round in 0..3 {
                let started = Instant::now();
                let resp = gw.get_with("/private/down", &s.cookie_header()).await;
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "{name}, {user}, round {round}: {:?} while Redis is down",
                    started.elapsed()
                );
                let echo = Echo::from(resp).await;
                assert_eq!(
                    echo.header("x-auth-user"),
                    Some(user),
                    "{name}: {user}'s valid access token while Redis is down"
                );
            }
        }
        for s in [&on_a, &on_b] {
            let resp = gw.refresh(s).await;
            assert_eq!(resp.status(), 503, "{name}: a refresh while Redis is down");
            assert!(resp.headers().get("retry-after").is_some(), "{name}");
            let touched: Vec<SetCookie> = set_cookies(resp.headers())
                .into_iter()
                .filter(|c| c.name == ACCESS_COOKIE || c.name == REFRESH_COOKIE)
                .collect();
            assert!(touched.is_empty(), "{name}: cookies touched: {touched:?}");
        }
        assert_eq!(feed_synced(gw).await, 0.0, "{name} says it is out of sync");
    }

    redis.restart().await;
    tokio::join!(
        a.wait_readyz(200, Duration::from_secs(10)),
        b.wait_readyz(200, Duration::from_secs(10))
    );
    for (gw, name) in [(&a, "A"), (&b, "B")] {
        for s in [&on_a, &on_b] {
            let resp = gw.get_with("/private/back", &s.access_only()).await;
            assert_eq!(resp.status(), 200, "{name}: after Redis returned");
        }
    }
    let resp = b.refresh(&on_a).await;
    assert_eq!(resp.status(), 200, "refresh after Redis returned");
}
