//! Criterion micro-benchmarks of the hot path: what every request with a valid session cookie
//! pays before it is forwarded. Measures token verification, cookie scanning, path
//! normalisation, and the whole pre-forward pipeline (`pipeline::decide`) on a built request
//! with no I/O — the valid-cookie path must do no store round trip and no blocking work, so
//! its cost is pure CPU and shows here.
//!
//! Run: `cargo bench --bench hot_path`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request};
use sessiongate::pipeline::{self, Decision};
use sessiongate::runtime::{ConnCtx, Runtime};
use sessiongate::sessions::AccessLifetime;
use sessiongate::web::path as route;

fn runtime() -> Runtime {
    sessiongate::runtime::testing::runtime(
        "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9\"\n[[route]]\npath_prefix = \"/static/\"\npublic = true\n",
        sessiongate::sessions::Clock::system(),
    )
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let now = sessiongate::util::now_unix();
    let token = rt
        .sessions
        .keys()
        .mint_access(
            "alice",
            "sid-bench-0123456789",
            &["admin".into(), "dev".into()],
            AccessLifetime {
                now,
                exp: now + 3600,
                session_end: now + 3600 + 3600,
            },
            &Default::default(),
        )
        .expect("bench token");
    let cookie_header = format!(
        "theme=dark; {}={token}; _ga=GA1.2.3456; lang=en",
        rt.sessions.cookies().access
    );

    c.bench_function("token_verify_hs256", |b| {
        b.iter(|| {
            rt.sessions
                .keys()
                .verify_access(std::hint::black_box(&token), now)
                .is_ok()
        })
    });

    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&cookie_header).expect("valid header"),
    );
    c.bench_function("cookie_scan", |b| {
        b.iter(|| {
            sessiongate::cookies::scan(std::hint::black_box(&headers), rt.sessions.cookies())
                .is_ok()
        })
    });

    c.bench_function("path_normalise_clean", |b| {
        b.iter(|| route::normalise(std::hint::black_box("/app/api/v1/items/42")).is_ok())
    });
    c.bench_function("path_normalise_dirty", |b| {
        b.iter(|| {
            route::normalise(std::hint::black_box("/app/./api//v1/%69tems/../items/42")).is_ok()
        })
    });

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let conn = ConnCtx {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_trusted: false,
        framing: None,
    };
    c.bench_function("pipeline_valid_cookie", |b| {
        b.iter(|| {
            let mut req = Request::builder()
                .uri("/app/api/v1/items/42?page=2")
                .header("host", "localhost:8443")
                .header(
                    "user-agent",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                )
                .header("accept", "application/json")
                .header("cookie", cookie_header.as_str())
                .body(())
                .expect("request");
            let d = tokio_rt.block_on(pipeline::decide(&rt, &conn, &mut req));
            assert!(matches!(d, Decision::Forward(_)));
            req
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
