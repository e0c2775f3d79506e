//! The fault harness: each scenario runs real processes on loopback (release-built gateways,
//! `redis-server`, Redis Cluster, the upstream), puts them under steady load from many virtual
//! users that log in, browse, refresh (a 3 s `access_ttl`) and log out while every response is
//! checked, injects one fault, and prints a table: requests by phase (before, during and after
//! the fault), outcomes by kind, sessions lost (valid, then answered `401` without a logout),
//! p50/p99. A scenario passes when no session is lost, no revocation is lost, and nothing but
//! the documented answers (`503` store unavailable, `502` upstream unreachable) appears, and
//! those only during the fault.
//!
//! Everything is bounded in time and stops by itself; the exit status is non-zero when a
//! scenario fails.
//!
//! Run: `cargo bench --bench faults` (every scenario, a few minutes), `cargo bench --bench
//! faults -- redis-restart upstream-restart` (those), `cargo bench --bench faults -- --list`.
//! The soak runs only when named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

#[path = "../../tests/e2e/harness.rs"]
mod harness;

mod h2_abuse;
mod load;
mod pressure;
mod process;
mod procfs;
mod report;
mod soak;
mod store;

use std::future::Future;
use std::pin::Pin;

use report::Report;

type Run = fn() -> Pin<Box<dyn Future<Output = Report>>>;

/// A scenario: its name on the command line, what it does, and its run.
struct Scenario {
    name: &'static str,
    about: &'static str,
    run: Run,
    /// Run when no scenario is named (`false`: only when named, as the long soak).
    default: bool,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "redis-restart",
            about: "Redis (one node, append-only file) killed for 5 s and restarted",
            run: || Box::pin(store::redis_restart()),
            default: true,
        },
        Scenario {
            name: "cluster-failover",
            about: "Redis Cluster (3 masters, 3 replicas): a master killed, its replica promoted",
            run: || Box::pin(store::cluster_failover()),
            default: true,
        },
        Scenario {
            name: "upstream-restart",
            about: "the app killed for 5 s and restarted on the same port",
            run: || Box::pin(process::upstream_restart()),
            default: true,
        },
        Scenario {
            name: "sigterm-one-of-two",
            about: "one of two instances (shared Redis) stopped with SIGTERM, slow requests in flight",
            run: || Box::pin(process::sigterm_one_of_two()),
            default: true,
        },
        Scenario {
            name: "sigterm-h1-race",
            about: "32 HTTP/1.1 keep-alive clients, no think time, one instance stopped with \
                    SIGTERM: no request written on a connection the drain closes",
            run: || Box::pin(process::sigterm_h1_race()),
            default: true,
        },
        Scenario {
            name: "slowloris-and-idle",
            about: "5,000 slowloris clients and 5,000 idle TLS sockets held while 64 users browse",
            run: || Box::pin(pressure::slowloris_and_idle()),
            default: true,
        },
        Scenario {
            name: "h2-abuse",
            about: "HTTP/2 rapid reset, CONTINUATION, SETTINGS and WINDOW_UPDATE floods while 64 users browse",
            run: || Box::pin(h2_abuse::h2_abuse()),
            default: true,
        },
        Scenario {
            name: "soak",
            about: "the steady load (Redis) for SG_SOAK_MINUTES (default 30): RSS and fds stay flat; only when named",
            run: || Box::pin(soak::soak()),
            default: false,
        },
    ]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let all = scenarios();
    if args.iter().any(|a| a == "--list") {
        for s in &all {
            println!("{:<20} {}", s.name, s.about);
        }
        return;
    }
    let picked: Vec<&Scenario> = if args.is_empty() {
        all.iter().filter(|s| s.default).collect()
    } else {
        args.iter()
            .map(|a| {
                all.iter().find(|s| s.name == a).unwrap_or_else(|| {
                    eprintln!("unknown scenario {a:?}; `-- --list` names them");
                    std::process::exit(2)
                })
            })
            .collect()
    };
    harness::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = Vec::new();
    for s in picked {
        println!("\n== {}: {}", s.name, s.about);
        let report = runtime.block_on((s.run)());
        report.print();
        if !report.passed() {
            failed.push(s.name);
        }
    }
    if failed.is_empty() {
        println!("\nfaults: every scenario passed");
    } else {
        println!("\nfaults: FAILED: {}", failed.join(", "));
        std::process::exit(1);
    }
}
