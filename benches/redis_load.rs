//! Load on the Redis store, end to end: logins per second and refreshes per second through a
//! release-built gateway backed by a local `redis-server`, next to `redis-benchmark`'s figures
//! for the same server (SET, GET and an EVALSHA shaped like the rotation script), all in one
//! run on one machine, so the gateway's numbers are read against what Redis itself does here.
//!
//! - logins: JSON `POST /.auth/login`, each client on its own keep-alive TLS connection; the
//!   argon2id password check dominates (one store write per login);
//! - refreshes: JSON `POST /.auth/refresh`, each virtual client chaining its own refresh tokens
//!   (one atomic rotation script, one Redis round trip, per refresh).
//!
//! Loopback only, the same processes and settings as the end-to-end harness (which it reuses:
//! `redis-server --appendonly yes --appendfsync no`); every phase is bounded, so the whole
//! run stops by itself in about a minute.
//!
//! Run: `cargo bench --bench redis_load`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{
    ALICE_PASSWORD, Gateway, GatewayConfig, RedisServer, StoreSpec, install_crypto_provider,
    redis_cli,
};

const LOGIN_CLIENTS: usize = 8;
const LOGIN_SECS: u64 = 5;
const REFRESH_CLIENTS: usize = 32;
const REFRESH_SECS: u64 = 10;
const WARMUP: Duration = Duration::from_secs(1);
const REDIS_BENCH_CLIENTS: usize = 32;
const REDIS_BENCH_REQUESTS: usize = 50_000;

/// A rotation-shaped script: read the record, write two fields, return one.
const ROTATE_LIKE: &str = "local h = redis.call('HGETALL', KEYS[1]) \
     redis.call('HSET', KEYS[1], 'prev', ARGV[1], 'cur', ARGV[1]) \
     return #h";

struct Phase {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> String {
        if self.latencies.is_empty() {
            return "-".into();
        }
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        format!("{:.1} ms", l[i].as_secs_f64() * 1000.0)
    }
}

async fn login(gw: &Gateway) -> Result<(String, Duration), String> {
    let t = Instant::now();
    let resp = gw
        .client_h1
        .post(gw.url("/.auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": ALICE_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    let took = t.elapsed();
    match body["refresh_token"].as_str() {
        Some(r) if status == 200 => Ok((r.to_string(), took)),
        _ => Err(format!("login answered {status}: {body}")),
    }
}

async fn refresh(gw: &Gateway, token: &str) -> Result<(String, Duration), String> {
    let t = Instant::now();
    let resp = gw
        .client_h1
        .post(gw.url("/.auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": token }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    let took = t.elapsed();
    match body["refresh_token"].as_str() {
        Some(r) if status == 200 => Ok((r.to_string(), took)),
        _ => Err(format!("refresh answered {status}: {body}")),
    }
}

/// `clients` tasks run `step` in a loop; only what completes after the warm-up and before
/// the end counts.
async fn measure<S, F, Fut>(
    gw: &Arc<Gateway>,
    clients: usize,
    secs: u64,
    init: Vec<S>,
    step: F,
) -> Phase
where
    S: Send + 'static,
    F: Fn(Arc<Gateway>, S) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = (S, Result<Duration, String>)> + Send,
{
    let start = Instant::now() + WARMUP;
    let end = start + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for state in init.into_iter().take(clients) {
        let gw = gw.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = state;
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::new());
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let began = Instant::now();
                let (next, r) = step(gw.clone(), state).await;
                state = next;
                let counted = began >= start && Instant::now() <= end;
                match r {
                    Ok(d) if counted => {
                        ok += 1;
                        lat.push(d);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (ok, errors, lat, first_error)
        }));
    }
    let mut phase = Phase {
        ok: 0,
        errors: 0,
        elapsed: Duration::from_secs(secs),
        latencies: Vec::new(),
    };
    // Bounded: a request has the client's 30 s timeout at most.
    for t in tasks {
        let (ok, errors, lat, first_error) = t.await.expect("load task");
        phase.ok += ok;
        phase.errors += errors;
        phase.latencies.extend(lat);
        if let Some(e) = first_error {
            eprintln!("redis_load: error: {e}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    phase
}

/// Run a command, killed after `within`; its standard output.
fn run_bounded(cmd: &mut Command, within: Duration, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): install redis-server (redis-tools)"));
    let deadline = Instant::now() + within;
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-benchmark -q` lines (`NAME: N requests per second, p50=X msec`), progress removed.
fn redis_benchmark(port: u16, args: &[&str]) -> Vec<(String, String, String)> {
    let out = run_bounded(
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .args(["-c", &REDIS_BENCH_CLIENTS.to_string()])
            .args(["-n", &REDIS_BENCH_REQUESTS.to_string()])
            .args(args),
        Duration::from_secs(60),
        "redis-benchmark",
    );
    // The name may itself hold `:` (a custom command's key), so split at the last `: `
    // before the rate.
    out.split(['\n', '\r'])
        .filter_map(|l| {
            let (head, tail) = l.split_once(" requests per second")?;
            let (name, rate) = head.rsplit_once(": ")?;
            let p50 = tail
                .split("p50=")
                .nth(1)
                .map(|p| p.trim().to_string())
                .unwrap_or_default();
            Some((name.trim().to_string(), rate.trim().to_string(), p50))
        })
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// Sessions and users of the memory-per-session measurement: ten sessions per user.
const MEMORY_SESSIONS: usize = 10_000;
const MEMORY_USERS: usize = 1_000;

/// Bytes of Redis memory (`used_memory`) per stored session, `(fresh, rotated)`:
/// `MEMORY_SESSIONS` sessions of `MEMORY_USERS` users written by the store as a login writes
/// them (ids and refresh jtis as the gateway makes them, a desktop browser's user agent, two
/// roles), on a Redis of its own; then the same sessions once each has rotated its refresh
/// token (a previous jti and a rotation count kept).
async fn bytes_per_session() -> (f64, f64, String) {
    use sessiongate::store::{RotatePolicy, SessionRecord, SessionStore, redis::RedisStore};
    use sessiongate::util::{now_unix, random_token};
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&harness::redis_store_config(Some(redis.url()), Vec::new()))
        .expect("redis store");
    let used = || {
        let info = String::from_utf8_lossy(&redis_cli(redis.port, &["INFO", "memory"])).to_string();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("used_memory")
    };
    const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    let device = sessiongate::web::user_agent::UserAgent::from_bytes(UA.as_bytes())
        .device()
        .label();
    let before = used();
    let now = now_unix();
    let mut started = Vec::with_capacity(MEMORY_SESSIONS);
    for i in 0..MEMORY_SESSIONS {
        let rec = SessionRecord {
            sid: random_token(16),
            user: format!("user{:05}@example.com", i % MEMORY_USERS),
            roles: vec!["staff".into(), "reader".into()],
            created: now,
            last_seen: now,
            abs_end: now + 7 * 86_400,
            cur_jti: random_token(12),
            prev_jti: None,
            rotated_at_ms: now * 1000,
            prev_open: false,
            ip: format!("203.0.113.{}", i % 250),
            user_agent: UA.into(),
            device: device.clone(),
            idp: None,
            auth_time: now,
            refreshes: 0,
        };
        started.push((rec.user.clone(), rec.sid.clone(), rec.cur_jti.clone()));
        store.create(rec).await.expect("create");
    }
    let fresh = used();
    let policy = RotatePolicy {
        now,
        now_ms: now * 1000,
        grace_ms: 10_000,
        idle_secs: 1800,
        revocation_ttl: 900,
        window_secs: 900,
    };
    for (user, sid, jti) in &started {
        store
            .rotate(user, sid, jti, &random_token(12), policy)
            .await
            .expect("rotate");
    }
    let rotated = used();
    let version = String::from_utf8_lossy(&redis_cli(redis.port, &["INFO", "server"]))
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let per = |b: u64| b.saturating_sub(before) as f64 / MEMORY_SESSIONS as f64;
    (per(fresh), per(rotated), version)
}

async fn run() {
    install_crypto_provider();
    let (fresh, rotated, redis_v) = bytes_per_session().await;
    let redis = RedisServer::start().await;
    let gw = Arc::new(
        Gateway::start(
            GatewayConfig::new()
                .store(StoreSpec::Redis { url: redis.url() })
                // One user logging in from 8 clients at once: attempts in flight count against
                // the login throttle's budgets (so parallel guesses cannot all pass), which are
                // not what this measures.
                .set("login", "max_failures_per_user", "1000000")
                .set("login", "max_failures_per_user_total", "1000000")
                .set("login", "max_failures_per_ip", "1000000"),
        )
        .await,
    );
    gw.wait_readyz(200, Duration::from_secs(10)).await;

    // Logins: argon2id per request.
    let logins = measure(
        &gw,
        LOGIN_CLIENTS,
        LOGIN_SECS,
        vec![(); LOGIN_CLIENTS],
        |gw, ()| async move { ((), login(&gw).await.map(|(_, d)| d)) },
    )
    .await;

    // Refreshes: each virtual client logs in once, then chains its own refresh tokens.
    let mut tokens = Vec::new();
    for _ in 0..REFRESH_CLIENTS {
        tokens.push(login(&gw).await.expect("login for a refresh client").0);
    }
    let refreshes = measure(
        &gw,
        REFRESH_CLIENTS,
        REFRESH_SECS,
        tokens,
        |gw, token: String| async move {
            match refresh(&gw, &token).await {
                Ok((next, d)) => (next, Ok(d)),
                Err(e) => (token, Err(e)),
            }
        },
    )
    .await;

    // Redis alone, same server, same run.
    let port = redis.port;
    let sha = String::from_utf8_lossy(&redis_cli(port, &["SCRIPT", "LOAD", ROTATE_LIKE]))
        .trim()
        .to_string();
    let redis_rows = tokio::task::spawn_blocking(move || {
        let mut rows = redis_benchmark(port, &["-r", "100000", "-t", "set,get"]);
        rows.extend(
            redis_benchmark(
                port,
                &[
                    "-r",
                    "100000",
                    "EVALSHA",
                    &sha,
                    "1",
                    "bench:{u}:s:__rand_int__",
                    "jti",
                ],
            )
            .into_iter()
            .map(|(_, rate, p50)| ("EVALSHA rotate-like".to_string(), rate, p50)),
        );
        rows
    })
    .await
    .expect("redis-benchmark task");
    let redis_version = run_bounded(
        Command::new("redis-server").arg("--version"),
        Duration::from_secs(10),
        "redis-server --version",
    );

    println!();
    println!("redis_load: sessiongate with store.kind = \"redis\", one run");
    println!("machine:  {}", machine());
    println!(
        "gateway:  release build (cargo bench profile), 1 instance, store.pool_size 16, TLS 1.3 on loopback"
    );
    println!(
        "redis:    {} on loopback, appendonly yes, appendfsync no (the test harness's settings)",
        redis_version
            .split_whitespace()
            .find(|w| w.starts_with("v="))
            .unwrap_or("redis-server")
    );
    println!(
        "client:   this process on the same machine (tokio, reqwest, HTTP/1.1 keep-alive, one connection per client); {WARMUP:?} warm-up not counted"
    );
    println!();
    println!(
        "| {:<36} | {:<34} | {:>12} | {:>9} | {:>9} | {:>6} |",
        "what", "method", "rate", "p50", "p99", "errors"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(38),
        "-".repeat(36),
        "-".repeat(14),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(8)
    );
    for (what, method, p) in [
        (
            "gateway logins (JSON, argon2id)",
            format!("{LOGIN_CLIENTS} connections, {LOGIN_SECS} s"),
            &logins,
        ),
        (
            "gateway refreshes (JSON, chained)",
            format!("{REFRESH_CLIENTS} connections, {REFRESH_SECS} s"),
            &refreshes,
        ),
    ] {
        println!(
            "| {:<36} | {:<34} | {:>10.1}/s | {:>9} | {:>9} | {:>6} |",
            what,
            method,
            p.rate(),
            p.pct(0.50),
            p.pct(0.99),
            p.errors
        );
    }
    for (name, rate, p50) in &redis_rows {
        println!(
            "| {:<36} | {:<34} | {:>10}/s | {:>9} | {:>9} | {:>6} |",
            format!("redis-benchmark {name}"),
            format!("{REDIS_BENCH_CLIENTS} connections, {REDIS_BENCH_REQUESTS} requests"),
            rate,
            p50.replace(" msec", " ms"),
            "-",
            "-"
        );
    }
    println!();
    println!(
        "A refresh costs one EVALSHA round trip (the rotation script); a login one EVALSHA plus argon2id."
    );
    println!();
    println!(
        "Redis memory per stored session: {fresh:.0} bytes as started, {rotated:.0} bytes once each has rotated its refresh token (used_memory growth over {MEMORY_SESSIONS} sessions of {MEMORY_USERS} users, Redis {redis_v}; target <= 500)"
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` must not run a minute of load.
    if !std::env::args().any(|a| a == "--bench") {
        println!("redis_load: run it with `cargo bench --bench redis_load`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}
