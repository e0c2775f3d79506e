//! Store faults: the Redis node killed and restarted; (more to come).

use std::time::{Duration, Instant};

use crate::harness::{Gateway, GatewayConfig, RedisServer, Session, StoreSpec};
use crate::load::{Load, LoadSpec, Outcome, Phase};
use crate::report::Report;

/// The load every store scenario runs.
pub const LOAD: LoadSpec = LoadSpec {
    users: 32,
    think: Duration::from_millis(20),
};
/// Load before the fault and after recovery: longer than an access token lives, so that
/// every user refreshes in each phase.
pub const STEADY: Duration = Duration::from_secs(8);

/// The gateway of the fault scenarios: a 3 s access token, so that refreshes (store round
/// trips) are a steady part of the load.
pub fn config(store: StoreSpec) -> GatewayConfig {
    GatewayConfig::new().access_ttl("3s").store(store)
}

/// `n` sessions logged in and out before the fault; their cookies, which must stay refused.
pub async fn revoked_sessions(gw: &Gateway, n: usize) -> Vec<Session> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = if i % 2 == 0 {
            gw.login_alice().await
        } else {
            gw.login("bob", crate::harness::BOB_PASSWORD).await
        };
        let r = gw.logout(&s).await;
        assert_eq!(r.status(), 204, "logout before the fault");
        out.push(s);
    }
    out
}

/// How many of `sessions` are refused: the access token (`401`) and the refresh token
/// (`401`) both.
pub async fn refused(gw: &Gateway, sessions: &[Session]) -> usize {
    let mut n = 0;
    for s in sessions {
        let access = gw.access_status(&s.access).await;
        let refresh = gw.refresh(s).await.status().as_u16();
        if access == 401 && refresh == 401 {
            n += 1;
        }
    }
    n
}

/// Redis (one node, `appendonly yes`) killed with SIGKILL under load, down for 5 s, started
/// again on the same port and directory. The fault phase lasts until the gateway's `/readyz`
/// answers 200 again (its revocation feed resubscribed and reloaded).
pub async fn redis_restart() -> Report {
    let mut redis = RedisServer::start().await;
    let gw = Gateway::start(config(StoreSpec::Redis { url: redis.url() })).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let revoked = revoked_sessions(&gw, 40).await;

    let load = Load::start(&[&gw], LOAD);
    tokio::time::sleep(STEADY).await;
    load.phase(Phase::Fault);
    let t0 = Instant::now();
    redis.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.restart().await;
    gw.wait_readyz(200, Duration::from_secs(30)).await;
    let window = t0.elapsed();
    load.phase(Phase::After);
    tokio::time::sleep(STEADY).await;
    let tally = load.stop().await;

    let n = refused(&gw, &revoked).await;
    Report::new(tally, &[Outcome::Store503], window)
        .log_of(&gw)
        .check(
            format!(
                "sessions logged out before the fault refused after it: {n}/{}",
                revoked.len()
            ),
            n == revoked.len(),
        )
}
