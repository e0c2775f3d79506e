//! Upstream failures are answered by the gateway without leaking internals.
//!
//! Attacks covered:
//! - internal topology disclosure: an error page naming the upstream's address or port.

use crate::harness::*;

#[tokio::test]
async fn unreachable_upstream_answers_502_without_leaking_its_address() {
    let closed = free_port();
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream("down", &format!("http://127.0.0.1:{closed}"))
            .route(Route::public("/down/").to("down")),
    )
    .await;
    for client in [&gw.client, &gw.client_h1] {
        let resp = client.get(gw.url("/down/x")).send().await.unwrap();
        assert_eq!(resp.status(), 502);
        assert_hsts(resp.headers(), "502");
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap();
        for leak in [closed.to_string(), "127.0.0.1".to_string()] {
            assert!(!body.contains(&leak), "502 body leaks {leak}: {body}");
            assert!(
                !headers.contains(&leak),
                "502 headers leak {leak}: {headers}"
            );
        }
    }
    // The healthy upstream is unaffected.
    let echo = Echo::from(gw.get("/public/ok").send().await.unwrap()).await;
    assert_eq!(echo.path, "/public/ok");
}

/// The operator's side of the same failure: the log line says what happened in words, not
/// in Rust's debug names (`Some(ConnectError("tcp connect error", Os { code: 111, kind:
/// ConnectionRefused, .. }))`), and still names no secret.
#[tokio::test]
async fn an_unreachable_upstream_is_logged_in_words() {
    let closed = free_port();
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream("down", &format!("http://127.0.0.1:{closed}"))
            .route(Route::public("/down/").to("down")),
    )
    .await;
    let resp = gw.get("/down/x").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let log = gw.stderr_text();
        if let Some(l) = log.lines().find(|l| l.contains("upstream request failed")) {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `upstream request failed` line; stderr:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(line.contains("cannot connect"), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    for debug in ["Os {", "kind:", "ConnectError(", "Some("] {
        assert!(!line.contains(debug), "{debug:?} in the log line: {line}");
    }
}
