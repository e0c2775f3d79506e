//! Soak: the steady load (32 users, Redis store, 3 s `access_ttl`) for `SG_SOAK_MINUTES`
//! (default 30), to find what grows.
//!
//! Every second it reads the gateway's resident memory (`VmRSS` of `/proc/<pid>/status`) and
//! its open file descriptors (`/proc/<pid>/fd`); once a minute it prints their median over the
//! minute (with the lowest and highest), and the requests answered and the errors (any outcome
//! but ok) in that minute. The median, because one reading is noisy: every login hashes its
//! password with argon2id (19 MiB each, several at once), so RSS swings by tens of MiB from one
//! second to the next. The first minute is the warm-up (allocator pools, the store's
//! connection pool, the users' connections). Pass: the last minute's median RSS is at most
//! max(the first minute's × 1.10, the first minute's + 4 MiB), its median fds at most the first
//! minute's + [`FD_MARGIN`], no session was lost and nothing but the expected answers came.
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
/// How many more open files than after the warm-up the last minute may show (the users'
/// HTTP/1.1 clients may open a second connection, the store's pool may replace one).
const FD_MARGIN: u64 = 16;
const RSS_FACTOR: f64 = 1.10;
const RSS_SLACK_KIB: u64 = 4 * 1024;

/// One minute's readings, one a second: `[lowest, median, highest]`.
struct Sample {
    minute: u64,
    rss_kib: [u64; 3],
    fds: [u64; 3],
}

fn spread(mut v: Vec<u64>) -> [u64; 3] {
    v.sort_unstable();
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(lo), Some(mid), Some(hi)) => [*lo, *mid, *hi],
        _ => [0; 3],
    }
}

/// Read RSS and fds every second until `until`.
async fn minute_of(pid: u32, minute: u64, until: Instant) -> Sample {
    let (mut rss, mut fds) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < until {
        tick.tick().await;
        rss.push(procfs::rss_kib(pid).unwrap_or(0));
        fds.push(procfs::fds(pid).unwrap_or(0) as u64);
    }
    Sample {
        minute,
        rss_kib: spread(rss),
        fds: spread(fds),
    }
}

fn print_line(minute: &str, rss: &str, fds: &str, requests: &str, errors: &str) {
    println!("{minute:>6} {rss:>32} {fds:>14} {requests:>9} {errors:>7}");
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
    print_line(
        "minute",
        "RSS median (low-high)",
        "fds (low-high)",
        "requests",
        "errors",
    );
    print_line(
        "0",
        &procfs::mib(procfs::rss_kib(pid).unwrap_or(0)),
        &procfs::fds(pid).unwrap_or(0).to_string(),
        "-",
        "-",
    );
    let t0 = Instant::now();
    let load = Load::start(&[&gw], LOAD);
    let mut samples = Vec::new();
    let mut seen = (0, 0);
    for minute in 1..=minutes {
        let at = t0 + MINUTE * u32::try_from(minute).unwrap_or(u32::MAX);
        let s = minute_of(pid, minute, at).await;
        let (requests, errors) = load.counts();
        let [lo, mid, hi] = s.rss_kib;
        print_line(
            &s.minute.to_string(),
            &format!(
                "{} ({}-{})",
                procfs::mib(mid),
                procfs::mib(lo),
                procfs::mib(hi)
            ),
            &format!("{} ({}-{})", s.fds[1], s.fds[0], s.fds[2]),
            &(requests - seen.0).to_string(),
            &(errors - seen.1).to_string(),
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
    let (rss0, rss1) = (first.rss_kib[1], last.rss_kib[1]);
    let rss_bound = ((rss0 as f64 * RSS_FACTOR) as u64).max(rss0 + RSS_SLACK_KIB);
    let (fds0, fds1) = (first.fds[1], last.fds[1]);
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
                "RSS flat: median minute {} {}, minute {} {} (bound {} = max(×{RSS_FACTOR}, +4 MiB))",
                first.minute,
                procfs::mib(rss0),
                last.minute,
                procfs::mib(rss1),
                procfs::mib(rss_bound)
            ),
            complete && rss1 <= rss_bound,
        )
        .check(
            format!(
                "fds flat: median minute {} {fds0}, minute {} {fds1} (bound +{FD_MARGIN})",
                first.minute, last.minute
            ),
            complete && fds1 <= fds0 + FD_MARGIN,
        )
}
