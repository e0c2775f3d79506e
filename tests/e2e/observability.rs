//! What an operator sees of requests: the access log, request ids and trace context passed to
//! the upstream, flat JSON logs, and the metrics that page someone after upstream failures.
//!
//! Attacks covered:
//! - credential harvesting from the access log and the logs: a password, session cookies,
//!   a bearer token, an app cookie and a credential in the query string never appear;
//! - log forgery: a client that is not a trusted proxy cannot choose its request id (it could
//!   make its requests look like someone else's), and a trusted proxy's malformed one is
//!   replaced too (no structure, no spaces, at most 128 characters).

use serde_json::{Map, Value};

use crate::harness::*;

const JSON_LOGS: (&str, &str, &str) = ("log", "format", "\"json\"");

fn json_gateway() -> GatewayConfig {
    let (t, k, v) = JSON_LOGS;
    GatewayConfig::new().set(t, k, v)
}

/// Every line of standard error, each a flat JSON object (a failure names the line).
fn json_lines(gw: &Gateway) -> Vec<Map<String, Value>> {
    gw.stderr_text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            _ => panic!("a log line that is no JSON object: {l}"),
        })
        .collect()
}

fn access_lines(gw: &Gateway) -> Vec<Map<String, Value>> {
    json_lines(gw)
        .into_iter()
        .filter(|m| m.get("target").and_then(Value::as_str) == Some("sessiongate::access"))
        .collect()
}

/// Wait until the access log has a line for `path` (the line is written once the response's
/// body has been sent).
async fn access_line(gw: &Gateway, path: &str) -> Map<String, Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(l) = access_lines(gw)
            .into_iter()
            .find(|m| m.get("path").and_then(Value::as_str) == Some(path))
        {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {path}; stderr:\n{}",
            gw.stderr_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_access_log_has_one_line_per_request_and_no_secret() {
    let mut gw = Gateway::start(json_gateway()).await;
    let s = gw.login_alice().await;
    let me: Value = gw
        .get_with("/.auth/me", &s.cookie_header())
        .await
        .json()
        .await
        .unwrap();
    let handle = me["session"].as_str().unwrap().to_string();

    // Cookies (the gateway's and the app's own), then a bearer token.
    let app_cookie = "AppCookieValue-5b2f0c9e81";
    let resp = gw
        .get("/private/page")
        .header(
            "cookie",
            format!("{}; theme={app_cookie}", s.cookie_header()),
        )
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-request-id"), Some(rid.as_str()));
    let resp = gw
        .get("/private/bearer")
        .header("authorization", format!("Bearer {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A credential in the query, on a public and a protected route.
    let url_secret = "QueryCredential-0f6d2a7b93c4";
    let resp = gw
        .get(&format!("/public/q?access_token={url_secret}&x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let resp = gw
        .get(&format!("/private/q?token={url_secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    // A refresh, and a login that fails: the gateway's endpoints log their session and reason.
    assert_eq!(gw.refresh(&s).await.status(), 200);
    assert_eq!(
        gw.login_json("alice", "not-her-password").await.status(),
        401
    );
    // Refused: no session.
    assert_eq!(
        gw.get("/private/anon")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let page = access_line(&gw, "/private/page").await;
    assert_eq!(page["request_id"], rid.as_str());
    assert_eq!(page["method"], "GET");
    assert_eq!(page["status"], 200);
    assert_eq!(page["upstream"], "app");
    assert_eq!(page["session"], handle.as_str());
    assert_eq!(page["reason"], "-");
    assert_eq!(page["client_ip"], "127.0.0.1");
    assert_eq!(page["msg"], "request");
    assert!(page["bytes"].as_u64().unwrap() > 0, "{page:?}");
    assert!(page["duration_ms"].as_f64().is_some(), "{page:?}");
    assert!(page["time"].as_str().unwrap().ends_with('Z'), "{page:?}");
    let login = access_line(&gw, "/.auth/login").await;
    assert_eq!(login["method"], "POST");
    assert_eq!(login["status"], 303);
    assert_eq!(login["upstream"], "-");
    assert_eq!(
        login["session"],
        handle.as_str(),
        "the new session's handle"
    );
    let refresh = access_line(&gw, "/.auth/refresh").await;
    assert_eq!(
        (refresh["status"].as_u64(), refresh["session"].as_str()),
        (Some(200), Some(handle.as_str())),
        "the refreshed session's handle"
    );
    let failed = access_lines(&gw)
        .into_iter()
        .find(|l| l["path"] == "/.auth/login" && l["status"] == 401)
        .expect("the failed login's line");
    assert_eq!(failed["reason"], "invalid_credentials");
    let anon = access_line(&gw, "/private/anon").await;
    assert_eq!(anon["status"], 401);
    assert_eq!(anon["reason"], "unauthenticated");
    assert_eq!(anon["session"], "-");
    let q = access_line(&gw, "/public/q").await;
    assert_eq!(q["reason"], "url_credentials_redirect");
    access_line(&gw, "/private/bearer").await;
    access_line(&gw, "/private/q").await;

    gw.stop().await;
    let logs = all_logs(&gw);
    for (what, secret) in [
        ("alice's password", ALICE_PASSWORD),
        ("the access token", s.access.as_str()),
        ("the refresh token", s.refresh.as_str()),
        ("the app's cookie", app_cookie),
        ("the query credential", url_secret),
    ] {
        assert!(!logs.contains(secret), "the logs contain {what}");
    }
    assert!(!logs.contains("x=1"), "a query string reached the logs");
}

#[tokio::test]
async fn json_logs_are_flat_objects_with_stable_keys() {
    let mut gw = Gateway::start(json_gateway()).await;
    let s = gw.login_alice().await;
    let _ = gw.get_with("/private/x", &s.cookie_header()).await;
    // A warning inside a request (an unreachable upstream) carries the request's id.
    let closed = free_port();
    let mut down = Gateway::start(
        json_gateway()
            .upstream("down", &format!("http://127.0.0.1:{closed}"))
            .route(Route::public("/down/").to("down")),
    )
    .await;
    let resp = down.get("/down/x").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    access_line(&down, "/down/x").await;
    gw.stop().await;
    down.stop().await;

    for g in [&gw, &down] {
        let lines = json_lines(g);
        assert!(lines.len() >= 3, "{lines:?}");
        for l in &lines {
            for key in ["time", "level", "target", "msg"] {
                assert!(l.get(key).is_some_and(Value::is_string), "{key} in {l:?}");
            }
            for (k, v) in l {
                assert!(
                    !v.is_object() && !v.is_array(),
                    "nested {k} in the log line {l:?}"
                );
                let text = v.to_string();
                for debug in ["Some(", "None", "Os {"] {
                    assert!(!text.contains(debug), "{debug} in {k}: {l:?}");
                }
            }
            for nested in ["fields", "span", "spans", "message"] {
                assert!(!l.contains_key(nested), "{nested} in {l:?}");
            }
        }
        let ready = lines.iter().find(|l| l["msg"] == "ready").expect("ready");
        assert_eq!(ready["target"], "sessiongate::lifecycle");
        assert!(ready["https"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(!g.stdout_text().contains("ready"), "{}", g.stdout_text());
    }
    let failed = json_lines(&down)
        .into_iter()
        .find(|l| l["msg"] == "upstream request failed")
        .expect("the upstream failure is logged");
    assert_eq!(failed["request_id"], rid.as_str());
    assert_eq!(failed["level"], "warn");
    assert_eq!(failed["upstream"], "down");
}

#[tokio::test]
async fn text_logs_are_not_coloured_when_standard_error_is_a_file() {
    let gw = Gateway::start_default().await;
    let _ = gw.get("/public/x").send().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw.stderr_text().contains(" INFO request ") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = gw.stderr_text();
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    let line = text.lines().find(|l| l.contains(" INFO request ")).unwrap();
    assert!(line.contains(" path=/public/x status=200 "), "{line}");
    assert!(line.contains(" upstream=app session=- reason=-"), "{line}");
}

#[tokio::test]
async fn the_access_log_goes_to_its_file_or_nowhere() {
    let gw = Gateway::start(json_gateway().set("access_log", "file", "\"access.log\"")).await;
    let _ = gw.get("/public/filed").send().await.unwrap();
    let file = gw.dir.path().join("access.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("/public/filed")) {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], 200);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no line in {file:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!gw.stderr_text().contains("/public/filed"));

    let off = Gateway::start(json_gateway().set("access_log", "enabled", "false")).await;
    let _ = off.get("/public/unlogged").send().await.unwrap();
    let m = metrics(&off).await;
    assert!(m.contains("sessiongate_requests_total"), "still counted");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(access_lines(&off).is_empty(), "{}", off.stderr_text());
}

#[tokio::test]
async fn the_upstream_gets_a_request_id_that_only_a_trusted_proxy_may_choose() {
    // An untrusted client's id is replaced, on the request upstream and on the response.
    let gw = Gateway::start_default().await;
    let resp = gw
        .get("/public/a")
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let echo = Echo::from(resp).await;
    assert_ne!(rid, "chosen-by-the-client");
    assert_eq!(rid.len(), 32);
    assert!(rid.bytes().all(|b| b.is_ascii_hexdigit()), "{rid}");
    assert_eq!(echo.header_all("x-request-id"), vec![rid.clone()]);
    // Without one, a fresh one each time.
    let other = Echo::from(gw.get("/public/b").send().await.unwrap()).await;
    let other = other.header("x-request-id").unwrap().to_string();
    assert_ne!(other, rid);

    // A login's audit event carries its request's id.
    let resp = gw.login_form("alice", ALICE_PASSWORD, "/").await;
    let login_rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let ok = gw.wait_for_audit("login_ok").await;
    assert_eq!(ok["request_id"], login_rid.as_str(), "{ok}");

    // A trusted proxy's valid id is kept; its invalid ones are replaced.
    let gw = Gateway::start(GatewayConfig::new().trust_loopback_proxy()).await;
    let kept = Echo::from(
        gw.get("/public/c")
            .header("x-request-id", "lb-01:7f3a.9_z")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(kept.header_all("x-request-id"), vec!["lb-01:7f3a.9_z"]);
    let long = "a".repeat(129);
    for bad in ["has a space", "{\"x\":1}", long.as_str()] {
        let resp = gw
            .get("/public/d")
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let sent = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let echo = Echo::from(resp).await;
        assert_ne!(sent, bad);
        assert_eq!(echo.header_all("x-request-id"), vec![sent]);
    }
}

#[tokio::test]
async fn traceparent_goes_upstream_as_a_child_of_the_gateway() {
    let gw = Gateway::start_default().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let echo = Echo::from(
        gw.get("/public/t")
            .header("traceparent", incoming)
            .header("tracestate", "vendor=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sent = echo.header("traceparent").unwrap().to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the gateway's own span");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01", "flags kept");
    assert_eq!(echo.header("tracestate"), Some("vendor=1"));

    // None (or a malformed one): a new trace, named by the request id.
    for sent in [None, Some("00-garbage")] {
        let mut req = gw.get("/public/u");
        if let Some(v) = sent {
            req = req
                .header("traceparent", v)
                .header("tracestate", "vendor=2");
        }
        let echo = Echo::from(req.send().await.unwrap()).await;
        let tp = echo.header("traceparent").unwrap();
        let rid = echo.header("x-request-id").unwrap();
        assert_eq!(tp.split('-').nth(1), Some(rid), "{tp} for {rid}");
        assert_eq!(tp.len(), 55, "{tp}");
        assert_eq!(echo.header("tracestate"), None);
    }
}

#[tokio::test]
async fn a_502_and_a_504_are_counted_by_status_class_upstream_and_kind() {
    let closed = free_port();
    // A second app process behind an upstream with a short timeout.
    let slow_app = tokio::task::spawn_blocking(Upstream::start).await.unwrap();
    let app = slow_app.url();
    let gw = Gateway::start(
        json_gateway()
            .upstream("down", &format!("http://127.0.0.1:{closed}"))
            .upstream_with("slow", &app, "timeout = \"1s\"")
            .route(Route::public("/down/").to("down"))
            .route(Route::public("/slowapp/").to("slow")),
    )
    .await;
    assert_eq!(gw.get("/down/x").send().await.unwrap().status(), 502);
    assert_eq!(
        gw.get("/slowapp/slow?ms=3000")
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    assert_eq!(gw.get("/public/ok").send().await.unwrap().status(), 200);

    let m = metrics(&gw).await;
    let req = |outcome: &str, class: &str, upstream: &str| {
        metric(
            &m,
            "sessiongate_requests_total",
            &[
                ("outcome", outcome),
                ("status_class", class),
                ("upstream", upstream),
            ],
        )
    };
    assert_eq!(req("upstream_error", "5xx", "down"), 1.0, "{m}");
    assert_eq!(req("upstream_error", "5xx", "slow"), 1.0, "{m}");
    assert_eq!(req("forwarded", "2xx", "app"), 1.0, "{m}");
    let err = |upstream: &str, kind: &str| {
        metric(
            &m,
            "sessiongate_upstream_errors_total",
            &[("upstream", upstream), ("kind", kind)],
        )
    };
    assert_eq!(err("down", "connect"), 1.0, "{m}");
    assert_eq!(err("slow", "timeout"), 1.0, "{m}");
    assert_eq!(err("app", "connect") + err("app", "timeout"), 0.0, "{m}");
    // The latency buckets reach the longest timeout (the default 30 s) and the short one.
    for le in ["1.0", "30.0"] {
        assert!(
            m.lines().any(
                |l| l.starts_with("sessiongate_upstream_duration_seconds_bucket")
                    && l.contains(&format!("le=\"{le}\""))
            ),
            "no {le} s bucket:\n{m}"
        );
    }
    // Connections: the HTTPS client's (HTTP/2) and this scrape's own on the admin listener.
    let open = |listener: &str, protocol: &str| {
        metric(
            &m,
            "sessiongate_connections_open",
            &[("listener", listener), ("protocol", protocol)],
        )
    };
    assert!(open("https", "h2") >= 1.0, "{m}");
    assert!(open("admin", "h1") >= 1.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "sessiongate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "process_resident_memory_bytes", &[]) > 0.0,
        "{m}"
    );

    // The access log says why.
    assert_eq!(
        access_line(&gw, "/down/x").await["reason"],
        "upstream_connect"
    );
    let slow = access_line(&gw, "/slowapp/slow").await;
    assert_eq!(slow["reason"], "upstream_timeout");
    assert_eq!(slow["status"], 504);
    assert_eq!(slow["upstream"], "slow");
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted() {
    use tokio::io::AsyncWriteExt;
    let gw = Gateway::start_default().await;
    let before = metric(
        &metrics(&gw).await,
        "sessiongate_tls_handshake_failures_total",
        &[],
    );
    let mut tcp = tokio::net::TcpStream::connect(gw.https).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = metric(
            &metrics(&gw).await,
            "sessiongate_tls_handshake_failures_total",
            &[],
        );
        if now == before + 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{before} then {now}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
