//! Keep-alive connections to the app: reused while they can carry a request, never when they
//! cannot.
//!
//! Failures covered:
//! - a connection per request (the app pays a handshake for every one);
//! - a response with no body (`HEAD`) that leaves its connection out of the pool;
//! - a keep-alive connection the app closed while the gateway kept it idle, answered `502`
//!   (the request was never written, so the gateway sends it on another connection).

use crate::harness::*;

async fn echo_on(gw: &Gateway, path: &str) -> Echo {
    Echo::from(gw.client_h1.get(gw.url(path)).send().await.unwrap()).await
}

#[tokio::test]
async fn requests_in_turn_share_one_upstream_connection() {
    let gw = Gateway::start_default().await;
    let first = echo_on(&gw, "/public/a").await;
    let port = first.peer_port.expect("the upstream names the connection");
    for i in 0..5 {
        let e = echo_on(&gw, &format!("/public/b{i}")).await;
        assert_eq!(
            e.peer_port,
            Some(port),
            "request {i} opened a new connection"
        );
    }
    // A response without a body gives its connection back too.
    let head = gw
        .client_h1
        .head(gw.url("/public/head"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    drop(head);
    let after = echo_on(&gw, "/public/after-head").await;
    assert_eq!(
        after.peer_port,
        Some(port),
        "the HEAD's connection was not reused"
    );
}

#[tokio::test]
async fn a_connection_the_app_closed_while_idle_costs_no_request() {
    let gw = Gateway::start_default().await;
    for i in 0..20 {
        let closing = echo_on(&gw, &format!("/public/{i}/close-idle")).await;
        // At once: the gateway may not yet have seen the close (a 502 fails `Echo::from`).
        let next = echo_on(&gw, &format!("/public/{i}/next")).await;
        assert_ne!(
            next.peer_port, closing.peer_port,
            "round {i}: a request went over the connection the app closed"
        );
    }
    let log = gw.stderr_text();
    assert!(
        !log.contains("upstream request failed"),
        "a closed idle connection was reported as a failure:\n{log}"
    );
}
