//! Process faults: the app behind the gateway killed and restarted; one of two gateway
//! instances stopped with SIGTERM under load.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::harness::{
    BOB_PASSWORD, DEFAULT_PUBLIC_ORIGIN, Gateway, RedisServer, Session, Stopped, StoreSpec,
    random_secret, tls_to,
};
use crate::load::{Kind, Load, Outcome, Phase, Tally, causes};
use crate::report::Report;
use crate::store::{LOAD, STEADY, config, gateway_evidence};

/// How long the app stays down.
const UPSTREAM_DOWN: Duration = Duration::from_secs(5);

/// Poll the upstream itself (not through the gateway) until it answers; how long that took,
/// or `None` after `within`.
async fn upstream_answers(gw: &Gateway, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let url = format!("{}/__journal", gw.upstream.url());
    while t0.elapsed() < within {
        let r = gw
            .plain
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The upstream (`tests/upstream.py`) killed with SIGKILL under load and started again on the
/// same port 5 s later. The fault phase lasts until the upstream answers again. Pages may get
/// `502` meanwhile; logins, refreshes and logouts do not need the app and must keep working.
pub async fn upstream_restart() -> Report {
    let mut gw = Gateway::start(config(StoreSpec::Memory)).await;
    let load = Load::start(&[&gw], LOAD);
    tokio::time::sleep(STEADY).await;
    load.phase(Phase::Fault);
    let t0 = Instant::now();
    gw.upstream.kill();
    tokio::time::sleep(UPSTREAM_DOWN).await;
    tokio::task::block_in_place(|| gw.upstream.start_again());
    let back = upstream_answers(&gw, Duration::from_secs(10)).await;
    let window = t0.elapsed();
    load.phase(Phase::After);
    tokio::time::sleep(STEADY).await;
    let tally = load.stop().await;

    let fault = tally.phase(Phase::Fault);
    let without_app = |k: Kind| fault.count_by(|_, kind, o| kind == k && o == Outcome::Ok);
    let (logins, refreshes, logouts) = (
        without_app(Kind::Login),
        without_app(Kind::Refresh),
        without_app(Kind::Logout),
    );
    // Everything but a page is the gateway's own business.
    let failed_own = fault.count_by(|_, k, o| k != Kind::Page && o != Outcome::Ok);
    let pages_502 = fault.count_by(|_, k, o| k == Kind::Page && o == Outcome::Upstream502);
    let mut report = Report::new(tally, &[Outcome::Upstream502], window)
        .check(
            match back {
                Some(d) => format!(
                    "the upstream answered again {:.1} s after its restart",
                    d.as_secs_f64()
                ),
                None => "the upstream did not answer within 10 s of its restart".into(),
            },
            back.is_some(),
        )
        .check(
            format!("pages answered 502 while the app was down: {pages_502}"),
            pages_502 > 0,
        )
        .check(
            format!(
                "while the app was down: {logins} logins, {refreshes} refreshes, {logouts} \
                 logouts answered; {failed_own} of the gateway's own requests failed"
            ),
            logins > 0 && refreshes > 0 && logouts > 0 && failed_own == 0,
        );
    if !report.passed() {
        for line in gateway_evidence(&gw) {
            report = report.note(line);
        }
    }
    report
}

/// The drain deadline of the instance that is stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Slow requests in flight on it when it is stopped, and how long the app takes to answer
/// them (well within the grace, so each must be answered).
const SLOW_REQUESTS: usize = 8;
const SLOW_MS: u64 = 3000;

/// `n` sessions logged in on `gw` (alice and bob in turn).
async fn sessions_on(gw: &Gateway, n: usize) -> Vec<Session> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(if i % 2 == 0 {
            gw.login_alice().await
        } else {
            gw.login("bob", BOB_PASSWORD).await
        });
    }
    out
}

/// One slow protected request per session on `gw` (`…/slow?ms=SLOW_MS`: the upstream
/// answers after that long), half over HTTP/2, half over HTTP/1.1. Each answers the session
/// with the cookies it got (the gateway refreshed the expired access token on the way) when
/// the answer was `200` with the user in the echo, or what it got instead.
fn slow_requests(gw: &Gateway, sessions: &[Session]) -> Vec<JoinHandle<Result<Session, String>>> {
    sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let client = if i % 2 == 0 {
                gw.client.clone()
            } else {
                gw.client_h1.clone()
            };
            let url = gw.url(&format!("/app/slow-{i}/slow?ms={SLOW_MS}"));
            let mut session = s.clone();
            tokio::spawn(async move {
                let r = client
                    .get(&url)
                    .header("cookie", session.cookie_header())
                    .header("accept", "application/json")
                    .send()
                    .await
                    .map_err(|e| format!("slow request {i}: {e:?}"))?;
                let (status, headers) = (r.status(), r.headers().clone());
                let body = r
                    .text()
                    .await
                    .map_err(|e| format!("slow request {i}, its body: {e:?}"))?;
                if status == 200 && body.contains("x-auth-user") {
                    session.update(&headers);
                    Ok(session)
                } else {
                    let body: String = body.chars().take(120).collect();
                    Err(format!("slow request {i}: {status} {body}"))
                }
            })
        })
        .collect()
}

/// What a new connection to an instance that drains gets.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Refused at once: a client (or balancer) goes elsewhere.
    Refused,
    /// Accepted by the kernel, then no TLS handshake within the probe's second: the client
    /// waits until the instance exits.
    Hung,
    /// A TLS handshake completed: the instance still serves new connections.
    Served,
    /// Something else (reset, ...).
    Failed(String),
    /// The instance never logged that it was draining.
    NotDraining,
}

/// Once the instance logged that it is shutting down (its stderr log at `stderr`), open a new
/// TCP connection and a TLS handshake to its HTTPS listener at `https`.
async fn probe_while_draining(
    https: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    stderr: std::path::PathBuf,
) -> Probe {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        if log.contains("shutting down") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(2) {
            return Probe::NotDraining;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The line is written as the drain begins, a moment before the listeners are closed:
    // a connection in that moment is still served. Try again for up to a second; what the
    // last attempt got is the answer.
    let t1 = Instant::now();
    loop {
        let got =
            match tokio::time::timeout(Duration::from_secs(1), tls_to(https, tls.clone(), None))
                .await
            {
                Err(_) => Probe::Hung,
                Ok(Ok(_)) => Probe::Served,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
                Ok(Err(e)) => Probe::Failed(e.to_string()),
            };
        if got == Probe::Refused || t1.elapsed() > Duration::from_secs(1) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `gw`'s upstream has received `n` slow requests (its journal has a request as
/// soon as it arrives): they are in flight.
async fn slow_in_flight(gw: &Gateway, n: usize, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        let seen = gw
            .journal()
            .await
            .iter()
            .filter(|e| e.path.ends_with("/slow"))
            .count();
        if seen >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Each session works on `gw`: a protected page (`200`, the gateway refreshing an expired
/// access token on the way) and an explicit refresh (`200`/`204`, a new refresh token).
async fn sessions_work_on(gw: &Gateway, sessions: &[Session]) -> usize {
    let mut ok = 0;
    for s in sessions {
        let page = gw
            .get("/app/after/page")
            .header("cookie", s.cookie_header())
            .header("accept", "application/json")
            .send()
            .await;
        let Ok(page) = page else { continue };
        if page.status() != 200 {
            continue;
        }
        let mut s = s.clone();
        s.update(page.headers());
        let refreshed = gw.refresh(&s).await;
        if refreshed.status().is_success() {
            ok += 1;
        }
    }
    ok
}

/// What `sigterm-one-of-two` saw of the stopped instance, beside the load's tally.
struct Drained {
    stopped: Stopped,
    /// A new connection opened while it drained.
    probe: Probe,
    /// Whether the slow requests had all reached the app before SIGTERM.
    in_flight: bool,
    /// The slow requests that did not get their answer, and what they got.
    slow_failed: Vec<String>,
    /// Sessions logged in on the stopped instance that worked on the survivor afterwards.
    carried: usize,
}

/// The checks of `sigterm-one-of-two`: instance 0 of the load is the stopped one.
fn judge_sigterm(report: Report, seen: &Drained) -> Report {
    let tally = &report.tally;
    let before_transport = tally.phase(Phase::Before).count(Outcome::Transport);
    let failed_on = |i: usize| {
        tally
            .total()
            .count_by(|inst, _, o| inst == i && o != Outcome::Ok)
    };
    let (failed_stopped, failed_survivor) = (failed_on(0), failed_on(1));
    let drained_on_stopped = tally
        .phase(Phase::Fault)
        .count_by(|i, _, o| i == 0 && o == Outcome::Ok);
    let stopped = &seen.stopped;
    let how = match stopped.exited {
        Some(s) if s.success() => "cleanly".to_string(),
        Some(s) => format!("with {s}"),
        None => "only when killed".to_string(),
    };
    let exited_by_itself = stopped.exited.is_some_and(|s| s.success());
    report
        .check(
            format!(
                "the stopped instance exited {how} {:.2} s after SIGTERM (shutdown_grace {} s)",
                stopped.after.as_secs_f64(),
                SHUTDOWN_GRACE.as_secs()
            ),
            exited_by_itself && stopped.after <= SHUTDOWN_GRACE,
        )
        .check(
            format!(
                "slow requests in flight at SIGTERM answered: {}/{SLOW_REQUESTS}{}",
                SLOW_REQUESTS - seen.slow_failed.len(),
                if seen.in_flight {
                    ""
                } else {
                    " (they never all reached the app)"
                }
            ),
            seen.in_flight && seen.slow_failed.is_empty(),
        )
        .check(
            format!(
                "a new connection while it drained (slow requests in flight): {:?}",
                seen.probe
            ),
            seen.probe == Probe::Refused,
        )
        .check(
            format!("requests sent before SIGTERM that broke (transport): {before_transport}"),
            before_transport == 0,
        )
        .check(
            format!(
                "failed requests: {failed_stopped} on the stopped instance ({drained_on_stopped} \
                 answered there after SIGTERM), {failed_survivor} on the survivor"
            ),
            failed_stopped == 0 && failed_survivor == 0,
        )
        .check(
            format!(
                "sessions logged in on the stopped instance that work on the survivor (page and \
                 refresh): {}/{SLOW_REQUESTS}",
                seen.carried
            ),
            seen.carried == SLOW_REQUESTS,
        )
}

/// Two gateway instances sharing one Redis and the same secrets, under load spread over both
/// (client-side round robin); slow requests in flight on the first when it gets SIGTERM
/// (`server.shutdown_grace = "5s"`). The fault phase lasts from SIGTERM until that instance
/// exited. Nothing may fail: requests in flight on the stopped instance are answered, a
/// connection it refuses is tried on the survivor, and sessions carry over.
pub async fn sigterm_one_of_two() -> Report {
    let redis = RedisServer::start().await;
    let (access, refresh) = (random_secret(), random_secret());
    let cfg = || {
        config(StoreSpec::Redis { url: redis.url() })
            .secrets(&access, &refresh)
            .set(
                "server",
                "shutdown_grace",
                &format!("\"{}s\"", SHUTDOWN_GRACE.as_secs()),
            )
    };
    let mut stopped_gw = Gateway::start(cfg()).await;
    let survivor = Gateway::start(cfg()).await;
    stopped_gw.wait_readyz(200, Duration::from_secs(10)).await;
    survivor.wait_readyz(200, Duration::from_secs(10)).await;
    let slow_sessions = sessions_on(&stopped_gw, SLOW_REQUESTS).await;

    let load = Load::start(&[&stopped_gw, &survivor], LOAD);
    tokio::time::sleep(STEADY).await;
    let slow = slow_requests(&stopped_gw, &slow_sessions);
    let in_flight = slow_in_flight(&stopped_gw, SLOW_REQUESTS, Duration::from_secs(5)).await;
    let probe = tokio::spawn(probe_while_draining(
        stopped_gw.https,
        stopped_gw.tls_config(&[b"http/1.1"]),
        stopped_gw.stderr_log.clone(),
    ));
    load.phase(Phase::Fault);
    let t0 = Instant::now();
    let stopped = stopped_gw
        .stop_within(SHUTDOWN_GRACE + Duration::from_secs(5))
        .await
        .expect("the instance was running");
    let window = t0.elapsed();
    load.phase(Phase::After);
    let probe = probe.await.expect("probe task");
    let (mut carried_over, mut slow_failed) = (Vec::new(), Vec::new());
    for t in slow {
        match t.await.expect("slow request task") {
            Ok(s) => carried_over.push(s),
            Err(e) => slow_failed.push(e),
        }
    }
    tokio::time::sleep(STEADY).await;
    let tally = load.stop().await;
    let seen = Drained {
        stopped,
        probe,
        in_flight,
        carried: sessions_work_on(&survivor, &carried_over).await,
        slow_failed,
    };
    let mut report = judge_sigterm(Report::new(tally, &[], window), &seen);
    for e in &seen.slow_failed {
        report = report.note(e.clone());
    }
    if !report.passed() {
        for line in gateway_evidence(&stopped_gw) {
            report = report.note(format!("stopped instance: {line}"));
        }
        for line in gateway_evidence(&survivor) {
            report = report.note(format!("survivor: {line}"));
        }
    }
    report
}

/// Clients of the keep-alive race experiment, and how long they run before SIGTERM.
const RACE_CLIENTS: usize = 32;
const RACE_BEFORE_TERM: Duration = Duration::from_secs(3);

/// What one request of the keep-alive race got.
struct RaceResult {
    /// Its path (unique), to look up in the app's journal.
    path: String,
    /// Its send started before the scenario sent SIGTERM.
    phase: Phase,
    elapsed: Duration,
    /// The status, or whether it was a connect error and the error's causes.
    outcome: Result<u16, (bool, String)>,
}

/// One keep-alive HTTP/1.1 client sending back to back (no think time) until a connection is
/// refused.
fn race_client(gw: &Gateway, i: usize, term: &Arc<AtomicBool>) -> JoinHandle<Vec<RaceResult>> {
    let client = gw.client_h1_from(crate::load::user_address(i));
    let base = gw.url(&format!("/public/race-{i}/"));
    let term = term.clone();
    tokio::spawn(async move {
        let mut out = Vec::new();
        for n in 0..100_000 {
            let url = format!("{base}{n}");
            let phase = if term.load(Ordering::SeqCst) {
                Phase::Fault
            } else {
                Phase::Before
            };
            let started = Instant::now();
            let outcome = match client.get(&url).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    match r.text().await {
                        Ok(_) => Ok(s),
                        Err(e) => Err((false, format!("body: {}", causes(&e)))),
                    }
                }
                Err(e) => Err((e.is_connect(), causes(&e))),
            };
            let refused = matches!(&outcome, Err((true, _)));
            out.push(RaceResult {
                path: url.trim_start_matches(DEFAULT_PUBLIC_ORIGIN).to_string(),
                phase,
                elapsed: started.elapsed(),
                outcome,
            });
            if refused {
                break;
            }
        }
        out
    })
}

/// HTTP/1.1 keep-alive clients sending back to back to one instance (memory store, public
/// route) when it gets SIGTERM. A drain that closes an idle keep-alive connection at once
/// races the request its client is writing on it: never read, and the client sees the
/// connection end without an answer (`0-5` per stop before the drain became a lame duck, see
/// `server::conn::LameDuck`). Each failed request is looked up in the app's journal: one the
/// gateway forwarded must have been answered. A connection refused after the listener closed
/// ends a client (allowed after SIGTERM).
pub async fn sigterm_h1_race() -> Report {
    let mut gw = Gateway::start(config(StoreSpec::Memory).set(
        "server",
        "shutdown_grace",
        &format!("\"{}s\"", SHUTDOWN_GRACE.as_secs()),
    ))
    .await;
    let term = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..RACE_CLIENTS)
        .map(|i| race_client(&gw, i, &term))
        .collect();
    tokio::time::sleep(RACE_BEFORE_TERM).await;
    term.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let stopped = gw
        .stop_within(SHUTDOWN_GRACE + Duration::from_secs(5))
        .await
        .expect("the instance was running");
    let window = t0.elapsed();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("race client task"));
    }
    let forwarded: HashSet<String> = gw.journal().await.into_iter().map(|e| e.path).collect();

    let mut tally = Tally::default();
    let (mut raced, mut lost_forwarded) = (0, 0);
    for r in &all {
        let t = &mut tally.phases[r.phase as usize];
        let outcome = match &r.outcome {
            Ok(200) => Outcome::Ok,
            Ok(s) => Outcome::Other(*s),
            Err((true, _)) => Outcome::Connect,
            Err((false, _)) => Outcome::Transport,
        };
        *t.outcomes.entry(outcome).or_default() += 1;
        if let Err((connect, e)) = &r.outcome {
            let reached = forwarded.contains(&r.path);
            if !connect && reached {
                lost_forwarded += 1;
            } else if !connect {
                raced += 1;
            }
            let what = if reached {
                "forwarded to the app"
            } else {
                "never forwarded"
            };
            t.samples
                .entry(outcome)
                .or_insert_with(|| format!("{} ({what}): {e}", r.path));
        } else {
            t.micros
                .push(u32::try_from(r.elapsed.as_micros()).unwrap_or(u32::MAX));
        }
    }
    Report::new(tally, &[Outcome::Connect], window)
        .check(
            format!(
                "the instance exited {:.2} s after SIGTERM (by itself: {})",
                stopped.after.as_secs_f64(),
                stopped.exited.is_some()
            ),
            stopped.exited.is_some_and(|s| s.success()) && stopped.after <= SHUTDOWN_GRACE,
        )
        .check(
            format!("requests forwarded to the app whose answer was lost: {lost_forwarded}"),
            lost_forwarded == 0,
        )
        .check(
            format!(
                "requests written to a keep-alive connection as the drain closed it (never \
                 forwarded, no answer): {raced}"
            ),
            raced == 0,
        )
}
