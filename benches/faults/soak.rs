//! Soak: the steady load (32 users, Redis store, 3 s `access_ttl`) for `SG_SOAK_MINUTES`
//! (default 30), to find what grows.
//!
//! Once a minute it prints the gateway's resident memory (`VmRSS` of `/proc/<pid>/status`),
//! its open file descriptors (`/proc/<pid>/fd`), and the requests answered and the errors (any
//! outcome but ok) in that minute. The first minute is the warm-up (allocator pools, the
//! store's connection pool, the users' connections). Pass: at the end, RSS is at most
//! max(the first sample after the warm-up × 1.10, that sample + 4 MiB), the fds at most that
//! sample's + [`FD_MARGIN`], no session was lost and nothing but the expected answers came.
//!
//! Not in the default run (`cargo bench --bench faults -- soak`).

use std::time::{Duration, Instant};

use crate::harness::{Gateway, RedisServer, StoreSpec};
use crate::load::Load;
use crate::procfs;
use crate::report::Report;
use crate::store::{LOAD, config};

const DEFAULT_MINUTES: u64 = 30;
const MINUTE: Duration = Duration::from_secs(60);
/// How many more open files than after the warm-up the last sample may show (the users'
/// HTTP/1.1 clients may open a second connection, the store's pool may replace one).
const FD_MARGIN: usize = 16;
const RSS_FACTOR: f64 = 1.10;
const RSS_SLACK_KIB: u64 = 4 * 1024;

/// One minute's reading.
struct Sample {
    minute: u64,
    rss_kib: u64,
    fds: usize,
}

fn minutes() -> u64 {
    std::env::var("SG_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MINUTES)
        // The warm-up and at least one minute after it.
        .max(2)
}

pub async fn soak() -> Report {
    let minutes = minutes();
    let redis = RedisServer::start().await;
    let gw = Gateway::start(config(StoreSpec::Redis { url: redis.url() })).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let pid = procfs::pid(&gw);
    println!(
        "{:>6} {:>11} {:>6} {:>9} {:>7}",
        "minute", "RSS", "fds", "requests", "errors"
    );
    println!(
        "{:>6} {:>11} {:>6} {:>9} {:>7}",
        0,
        procfs::mib(procfs::rss_kib(pid).unwrap_or(0)),
        procfs::fds(pid).unwrap_or(0),
        "-",
        "-"
    );
    let t0 = Instant::now();
    let load = Load::start(&[&gw], LOAD);
    let mut samples = Vec::new();
    let mut seen = (0, 0);
    for minute in 1..=minutes {
        let at = t0 + MINUTE * u32::try_from(minute).unwrap_or(u32::MAX);
        tokio::time::sleep_until(at.into()).await;
        let (requests, errors) = load.counts();
        let s = Sample {
            minute,
            rss_kib: procfs::rss_kib(pid).unwrap_or(0),
            fds: procfs::fds(pid).unwrap_or(0),
        };
        println!(
            "{:>6} {:>11} {:>6} {:>9} {:>7}",
            s.minute,
            procfs::mib(s.rss_kib),
            s.fds,
            requests - seen.0,
            errors - seen.1
        );
        seen = (requests, errors);
        samples.push(s);
        if !procfs::alive(pid) {
            break;
        }
    }
    let tally = load.stop().await;
    let report = judge(Report::new(tally, &[], Duration::ZERO), &samples, minutes);
    if !report.passed() {
        eprintln!("gateway stderr:\n{}", gw.stderr_text());
    }
    report
}

fn judge(report: Report, samples: &[Sample], minutes: u64) -> Report {
    let report = report.note(format!(
        "{} users, think {} ms, Redis store, access_ttl 3s, {minutes} min; warm-up: minute 1",
        LOAD.users,
        LOAD.think.as_millis()
    ));
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return report.check("no sample taken", false);
    };
    let complete = last.minute == minutes;
    let rss_bound = ((first.rss_kib as f64 * RSS_FACTOR) as u64).max(first.rss_kib + RSS_SLACK_KIB);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fd_max = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    report
        .check(
            format!(
                "the gateway ran all {minutes} minutes (last sample: minute {})",
                last.minute
            ),
            complete,
        )
        .check(
            format!(
                "RSS flat: minute {} {}, minute {} {} (max {}; bound {} = max(×{RSS_FACTOR}, +4 MiB))",
                first.minute,
                procfs::mib(first.rss_kib),
                last.minute,
                procfs::mib(last.rss_kib),
                procfs::mib(rss_max),
                procfs::mib(rss_bound)
            ),
            complete && last.rss_kib <= rss_bound,
        )
        .check(
            format!(
                "fds flat: minute {} {}, minute {} {} (max {fd_max}; bound +{FD_MARGIN})",
                first.minute, first.fds, last.minute, last.fds
            ),
            complete && last.fds <= first.fds + FD_MARGIN,
        )
}
