//! Criterion micro-benchmarks of the hot path: what every request with a valid session cookie
//! pays before it is forwarded. Measures token verification, cookie scanning, path
//! normalisation, the user agent (its normalisation, and the device classification that a
//! request pays only when its user agent is not memoised), and the whole pre-forward pipeline
//! (`pipeline::decide`) on a built request with no I/O, with a session bound to no fingerprint
//! and with one bound to the client's network and device — the valid-cookie path must do no
//! store round trip and no blocking work, so its cost is pure CPU and shows here; and the same
//! with a per-session rate limit configured (`pipeline_valid_cookie_rate_limited`).
//!
//! The `observe_*` benches measure what observability adds to each request outside the
//! pipeline (request id, trace context, the access-log line).
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
use sessiongate::web::user_agent::UserAgent;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const EDGE_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36 EdgA/126.0.2592.80";

fn runtime() -> Runtime {
    sessiongate::runtime::testing::runtime(
        "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9\"\n[[route]]\npath_prefix = \"/static/\"\npublic = true\n",
        sessiongate::sessions::Clock::system(),
    )
}

/// A valid access token of `rt` for alice, valid for an hour from `now`, and a browser's
/// `Cookie` header carrying it among other cookies.
fn session_cookie(rt: &Runtime, now: u64) -> (String, String) {
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
                auth_time: now,
            },
            &Default::default(),
        )
        .expect("bench token");
    let cookie = format!(
        "theme=dark; {}={token}; _ga=GA1.2.3456; lang=en",
        rt.sessions.cookies().access
    );
    (token, cookie)
}

/// The API request the pipeline benches send: Firefox asking for JSON, with `cookie`.
fn api_request(cookie: &str) -> Request<()> {
    Request::builder()
        .uri("/app/api/v1/items/42?page=2")
        .header("host", "localhost:8443")
        .header("user-agent", FIREFOX)
        .header("accept", "application/json")
        .header("cookie", cookie)
        .body(())
        .expect("request")
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let now = sessiongate::util::now_unix();
    let (token, cookie_header) = session_cookie(&rt, now);

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

    let mut ua_headers = HeaderMap::new();
    ua_headers.insert(http::header::USER_AGENT, HeaderValue::from_static(FIREFOX));
    c.bench_function("user_agent_normalise", |b| {
        b.iter(|| {
            UserAgent::from_headers(std::hint::black_box(&ua_headers))
                .as_str()
                .len()
        })
    });
    // What a request pays when its user agent is not in the thread's memo (then the keyed
    // hash of this text, about as much again): the one-pass classification.
    for (name, ua) in [
        ("user_agent_device_firefox", FIREFOX),
        ("user_agent_device_edge_android", EDGE_ANDROID),
        ("user_agent_device_curl", "curl/8.5.0"),
    ] {
        let ua = UserAgent::from_bytes(ua.as_bytes());
        c.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(&ua).device().fingerprint_input())
        });
    }

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let conn = ConnCtx {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_trusted: false,
        framing: None,
    };
    c.bench_function("pipeline_valid_cookie", |b| {
        b.iter(|| {
            let mut req = api_request(&cookie_header);
            let d = tokio_rt.block_on(pipeline::decide(&rt, &conn, &mut req));
            assert!(matches!(d, Decision::Forward(_)));
            req
        })
    });

    // The same, with a per-session rate limit configured that never triggers: what charging
    // the session's bucket (memory store: the local table, no await) adds.
    let limited = sessiongate::runtime::testing::runtime(
        "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9\"\n[rate_limit]\nper_session = \"100000000/1s\"\n",
        sessiongate::sessions::Clock::system(),
    );
    let (_, limited_cookie) = session_cookie(&limited, now);
    c.bench_function("pipeline_valid_cookie_rate_limited", |b| {
        b.iter(|| {
            let mut req = api_request(&limited_cookie);
            let d = tokio_rt.block_on(pipeline::decide(&limited, &conn, &mut req));
            assert!(matches!(d, Decision::Forward(_)));
            req
        })
    });

    // A session as a login binds it: to the client's network and to its user agent's device
    // (the anomaly stage compares both, from the thread's memo after the first request).
    let bound = tokio_rt
        .block_on(rt.sessions.start(
            "alice",
            &["admin".into(), "dev".into()],
            conn.peer.ip(),
            &UserAgent::from_bytes(FIREFOX.as_bytes()),
            None,
        ))
        .expect("bench session");
    let bound_cookie = format!(
        "theme=dark; {}={}; _ga=GA1.2.3456; lang=en",
        rt.sessions.cookies().access,
        bound.access
    );
    c.bench_function("pipeline_valid_cookie_bound", |b| {
        b.iter(|| {
            let mut req = api_request(&bound_cookie);
            let d = tokio_rt.block_on(pipeline::decide(&rt, &conn, &mut req));
            assert!(matches!(d, Decision::Forward(_)));
            req
        })
    });

    // What observability adds to every request before and after the pipeline: its id, the
    // trace context for the upstream, and its access-log line (JSON, formatted; the write is
    // a queue push to another thread).
    c.bench_function("observe_request_id_and_trace", |b| {
        b.iter(|| {
            let mut h = HeaderMap::new();
            let id = sessiongate::request_id::assign(&mut h, false);
            let (parent, trace) = sessiongate::trace_context::incoming(&h, &id);
            let span = sessiongate::trace_context::new_span_id();
            sessiongate::trace_context::forward(&mut h, parent.as_ref(), trace, span, false);
            h
        })
    });
    let entry = sessiongate::access_log::Entry {
        time: std::time::SystemTime::now(),
        request_id: sessiongate::request_id::generate(),
        client_ip: conn.peer.ip(),
        method: http::Method::GET,
        path: "/app/api/v1/items/42".into(),
        status: 200,
        bytes: 1234,
        duration: std::time::Duration::from_micros(850),
        upstream: Some("app".into()),
        session: Some("h-0123456789abcdef".into()),
        reason: None,
    };
    c.bench_function("observe_access_log_line_json", |b| {
        b.iter(|| sessiongate::access_log::json_line(std::hint::black_box(&entry)))
    });
    c.bench_function("observe_access_log_line_text", |b| {
        b.iter(|| sessiongate::access_log::text_line(std::hint::black_box(&entry)))
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
