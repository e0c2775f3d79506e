//! Store faults: the Redis node killed and restarted; a Redis Cluster master killed and its
//! replica promoted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, GatewayConfig, RedisCluster, RedisServer, Session, StoreSpec};
use crate::load::{Kind, Load, LoadSpec, Outcome, Phase};
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

/// What the gateway logged that an operator would look at: each distinct warning or error
/// (timestamps and fields aside) with its count, and the audit events by name.
pub fn gateway_evidence(gw: &Gateway) -> Vec<String> {
    let mut lines: BTreeMap<String, usize> = BTreeMap::new();
    for l in gw.stderr_plain().lines() {
        let Some(at) = l.find(" WARN ").or_else(|| l.find(" ERROR ")) else {
            continue;
        };
        let msg: String = l[at + 1..].chars().take(200).collect();
        *lines.entry(msg).or_default() += 1;
    }
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    for e in gw.audit_events() {
        if let Some(name) = e.get("event").and_then(|v| v.as_str()) {
            *events.entry(name.to_string()).or_default() += 1;
        }
    }
    let mut out: Vec<String> = lines
        .into_iter()
        .map(|(msg, n)| format!("gateway log ×{n}: {msg}"))
        .collect();
    out.push(format!("audit events: {events:?}"));
    out
}

/// The hash tag of alice's keys: every session of hers (half the virtual users) lives in its
/// slot, so the master that serves it is the one to kill.
const ALICE_KEYS: &str = "{alice}";
/// `cluster-node-timeout` of the failover scenario: the master is failed a second after it
/// stops answering, and its replica promoted about a second later.
const FAILOVER_NODE_TIMEOUT_MS: u64 = 1000;

/// A Redis Cluster of three masters and three replicas; under load, the master that serves
/// alice's slot is killed with SIGKILL and not restarted. The fault phase lasts until every
/// live node says `cluster_state:ok` with the slot on a live master (its former replica), and
/// then until the gateway's `/readyz` answers 200.
pub async fn cluster_failover() -> Report {
    let mut cluster = RedisCluster::start_six_node_timeout(FAILOVER_NODE_TIMEOUT_MS).await;
    let gw = Gateway::start(config(StoreSpec::Cluster {
        nodes: cluster.nodes(),
    }))
    .await;
    gw.wait_readyz(200, Duration::from_secs(30)).await;
    let revoked = revoked_sessions(&gw, 40).await;
    let slot = cluster.key_slot(ALICE_KEYS);

    let load = Load::start(&[&gw], LOAD);
    tokio::time::sleep(STEADY).await;
    load.phase(Phase::Fault);
    let t0 = Instant::now();
    let killed = tokio::task::block_in_place(|| cluster.kill_master_of(ALICE_KEYS));
    let promoted = cluster.wait_failover(slot, Duration::from_secs(30)).await;
    let failed_over = t0.elapsed();
    gw.wait_readyz(200, Duration::from_secs(30)).await;
    let window = t0.elapsed();
    load.phase(Phase::After);
    tokio::time::sleep(STEADY).await;
    let tally = load.stop().await;

    let n = refused(&gw, &revoked).await;
    let lost_refreshes = tally
        .total()
        .count_by(|_, k, o| k == Kind::Refresh && o == Outcome::Lost401);
    let mut report = Report::new(tally, &[Outcome::Store503], window)
        .check(
            match &promoted {
                Ok(p) => format!(
                    "slot {slot} (alice) moved from the killed master {killed} to {p}, \
                     cluster_state:ok {:.1} s after the kill",
                    failed_over.as_secs_f64()
                ),
                Err(e) => format!("slot {slot} never failed over from {killed}: {e}"),
            },
            promoted.is_ok(),
        )
        .check(
            format!("refreshes answered 401 (a rotation the failover lost): {lost_refreshes}"),
            lost_refreshes == 0,
        )
        .check(
            format!(
                "sessions logged out before the fault refused after it: {n}/{}",
                revoked.len()
            ),
            n == revoked.len(),
        );
    if !report.passed() {
        for line in gateway_evidence(&gw) {
            report = report.note(line);
        }
    }
    report
}
