//! Soak: the steady load (32 users, Redis store, 3 s `access_ttl`) for `SG_SOAK_MINUTES`
//! (default 30), to find what grows.
//!
//! Every second it reads the gateway's resident memory (`VmRSS` of `/proc/<pid>/status`) and
//! its open file descriptors (`/proc/<pid>/fd`); once a minute it prints the minute's lowest,
//! median and highest reading, and the requests answered and the errors (any outcome but ok)
//! in that minute.
//!
//! RSS is judged by each minute's *lowest* reading: every login hashes its password with
//! argon2id (19 MiB each, several at once), so RSS swings by tens of MiB from one second to
//! the next, and the glibc allocator returns those buffers to the system late. The lowest
//! reading of a minute is what the gateway holds between logins: what would grow if something
//! leaked. The first [`WARM_UP`] minutes are the warm-up (allocator arenas for every worker
//! thread, the store's connection pool, the users' connections). Pass: the last minute's
//! lowest RSS is at most max(the warm-up's last minute × 1.10, + 4 MiB), its median fds at
//! most the warm-up's last minute's + [`FD_MARGIN`], no session was lost and nothing but
//! the expected answers came.
//!
//! Redis runs with `appendfsync everysec` (its production default) rather than the e2e
//! harness's `no`: a soak measures the gateway as deployed, fsyncs in Redis's background
//! thread included (an fsync per write, on this machine's shared disk, can stall past the
//! gateway's 1 s store timeout: the documented 503). Redis's latency monitor is on; what it
//! saw is printed.
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
/// Minutes of warm-up: the baseline is the last of them.
const WARM_UP: u64 = 5;

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
        .max(WARM_UP + 1)
}

pub async fn soak() -> Report {
    let minutes = minutes();
    let redis = RedisServer::start().await;
    redis.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    redis.cli(&["CONFIG", "SET", "latency-monitor-threshold", "100"]);
    let gw = Gateway::start(config(StoreSpec::Redis { url: redis.url() })).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let pid = procfs::pid(&gw);
    print_line(
        "minute",
        "RSS low / median (high)",
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
                "{} / {} ({})",
                procfs::mib(lo),
                procfs::mib(mid),
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
    let latency = redis.cli(&["LATENCY", "LATEST"]);
    let mut report = judge(Report::new(tally, &[], Duration::ZERO), &samples, minutes);
    report = report.note(format!(
        "Redis latency monitor (events over 100 ms: name, last at, last ms, max ms): {}",
        if latency.trim().is_empty() {
            "none".to_string()
        } else {
            latency.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    ));
    if !report.passed() {
        eprintln!("gateway stderr:\n{}", gw.stderr_text());
    }
    report
}

fn judge(report: Report, samples: &[Sample], minutes: u64) -> Report {
    let report = report.note(format!(
        "{} users, think {} ms, Redis store, access_ttl 3s, {minutes} min; warm-up: minutes 1-{WARM_UP}",
        LOAD.users,
        LOAD.think.as_millis()
    ));
    let (Some(base), Some(last)) = (samples.iter().find(|s| s.minute == WARM_UP), samples.last())
    else {
        return report.check(
            format!("the gateway ran past the {WARM_UP}-minute warm-up"),
            false,
        );
    };
    let complete = last.minute == minutes;
    let (rss0, rss1) = (base.rss_kib[0], last.rss_kib[0]);
    let rss_bound = ((rss0 as f64 * RSS_FACTOR) as u64).max(rss0 + RSS_SLACK_KIB);
    let (fds0, fds1) = (base.fds[1], last.fds[1]);
    let first = samples.first().unwrap_or(base);
    report
        .note(format!(
            "first minute: RSS lowest {} (median {}), fds {}; last minute: RSS lowest {} (median {}), fds {}",
            procfs::mib(first.rss_kib[0]),
            procfs::mib(first.rss_kib[1]),
            first.fds[1],
            procfs::mib(last.rss_kib[0]),
            procfs::mib(last.rss_kib[1]),
            last.fds[1],
        ))
        .check(
            format!(
                "the gateway ran all {minutes} minutes (last sample: minute {})",
                last.minute
            ),
            complete,
        )
        .check(
            format!(
                "RSS flat: lowest of minute {} {}, of minute {} {} (bound {} = max(×{RSS_FACTOR}, +4 MiB))",
                base.minute,
                procfs::mib(rss0),
                last.minute,
                procfs::mib(rss1),
                procfs::mib(rss_bound)
            ),
            complete && rss1 <= rss_bound,
        )
        .check(
            format!(
                "fds flat: median of minute {} {fds0}, of minute {} {fds1} (bound +{FD_MARGIN})",
                base.minute, last.minute
            ),
            complete && fds1 <= fds0 + FD_MARGIN,
        )
}
