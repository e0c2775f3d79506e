//! HTTP/1.1 keep-alive connections are parked between requests (`src/server/h1.rs`): hyper's
//! connection and its buffers go, the TLS stream stays, and a new hyper connection takes the
//! stream over when the client writes again. Every request that arrives after a pause — whole,
//! split across TLS records, pipelined, with a body that comes later — is served on the same
//! connection, and the deadlines hold: a parked connection closes `server.header_read_timeout`
//! after it began to wait, and a head that starts after a pause must be whole within that
//! deadline of its first bytes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::harness::*;

/// `server.header_read_timeout` in these tests.
const DEADLINE: Duration = Duration::from_secs(2);
/// Long enough for the gateway to park the connection (it parks after 100 ms of waiting).
const PAUSE: Duration = Duration::from_millis(300);
/// How long after its deadline the gateway may take to close a connection (2 loaded cores).
const SLACK: Duration = Duration::from_secs(6);
const EARLY: Duration = Duration::from_millis(100);

async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    s.write_all(bytes).await.expect("write");
    s.flush().await.expect("flush");
}

async fn response<S: AsyncRead + Unpin>(s: &mut S, what: &str) -> RawResponse {
    let r = tokio::time::timeout(Duration::from_secs(15), read_response(s, true))
        .await
        .unwrap_or_else(|_| panic!("{what}: no response within 15 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status, 200, "{what}: {}", r.body_text());
    assert!(
        r.header("connection")
            .is_none_or(|v| !v.eq_ignore_ascii_case("close")),
        "{what}: the connection must stay open"
    );
    r
}

/// The upstream's echo of the request: its path and body.
fn echoed(r: &RawResponse, what: &str, path: &str, body: &str) {
    let echo = r.json();
    assert_eq!(echo["path"], path, "{what}: the path the upstream saw");
    assert_eq!(echo["body"], body, "{what}: the body the upstream saw");
}

#[tokio::test]
async fn requests_after_pauses_are_served_on_the_same_parked_connection() {
    let gw =
        Gateway::start(GatewayConfig::new().set("server", "header_read_timeout", "\"2s\"")).await;
    let host = gw.host_header();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut s = gw.raw_connect().await;

    send(&mut s, get("/public/first").as_bytes()).await;
    echoed(
        &response(&mut s, "first").await,
        "first",
        "/public/first",
        "",
    );

    // A head split across the park: its first half wakes the connection, the rest follows.
    tokio::time::sleep(PAUSE).await;
    let head = get("/public/split");
    let (a, b) = head.as_bytes().split_at(head.len() / 2);
    send(&mut s, a).await;
    tokio::time::sleep(PAUSE).await;
    send(&mut s, b).await;
    echoed(
        &response(&mut s, "split").await,
        "split head",
        "/public/split",
        "",
    );

    // Two pipelined requests in one record after a pause: both, in order.
    tokio::time::sleep(PAUSE).await;
    send(
        &mut s,
        format!("{}{}", get("/public/p1"), get("/public/p2")).as_bytes(),
    )
    .await;
    echoed(
        &response(&mut s, "p1").await,
        "pipelined 1",
        "/public/p1",
        "",
    );
    echoed(
        &response(&mut s, "p2").await,
        "pipelined 2",
        "/public/p2",
        "",
    );

    // A body that arrives after its head, and a chunked one split the same way.
    tokio::time::sleep(PAUSE).await;
    let post = format!(
        "POST /public/body HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
    );
    send(&mut s, post.as_bytes()).await;
    tokio::time::sleep(PAUSE).await;
    send(&mut s, b"hello world").await;
    echoed(
        &response(&mut s, "body").await,
        "fixed body",
        "/public/body",
        "hello world",
    );

    tokio::time::sleep(PAUSE).await;
    let chunked = format!(
        "POST /public/chunked HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    );
    send(&mut s, chunked.as_bytes()).await;
    tokio::time::sleep(PAUSE).await;
    send(&mut s, b"6\r\n world\r\n0\r\n\r\n").await;
    echoed(
        &response(&mut s, "chunked").await,
        "chunked body",
        "/public/chunked",
        "hello world",
    );

    // Longer than the deadline in all, but never idle that long at once: still open.
    for i in 0..3 {
        tokio::time::sleep(DEADLINE / 2).await;
        let path = format!("/public/again{i}");
        send(&mut s, get(&path).as_bytes()).await;
        echoed(&response(&mut s, &path).await, &path, &path, "");
    }
}

#[tokio::test]
async fn a_parked_connection_closes_at_the_deadline_and_a_late_head_gets_the_deadline_from_its_first_bytes()
 {
    let gw =
        Gateway::start(GatewayConfig::new().set("server", "header_read_timeout", "\"2s\"")).await;
    let request = format!(
        "GET /public/x HTTP/1.1\r\nHost: {}\r\n\r\n",
        gw.host_header()
    );

    // Idle after a response: closed DEADLINE after it began to wait.
    let mut idle = gw.raw_connect().await;
    send(&mut idle, request.as_bytes()).await;
    response(&mut idle, "idle").await;
    let closed = hold(
        &mut idle,
        b"",
        b"",
        Duration::from_secs(1),
        DEADLINE + SLACK,
    )
    .await;
    let after = closed.expect("a parked connection stays open past its deadline");
    assert!(
        after + EARLY >= DEADLINE && after <= DEADLINE + SLACK,
        "parked connection closed after {after:?}; the deadline is {DEADLINE:?}"
    );

    // A head that starts halfway through the wait and then trickles (slowloris): closed
    // DEADLINE after its first bytes, never later than twice the deadline from the wait.
    let mut late = gw.raw_connect().await;
    send(&mut late, request.as_bytes()).await;
    response(&mut late, "late").await;
    let waited = Instant::now();
    tokio::time::sleep(DEADLINE / 2).await;
    let first = Instant::now();
    let slow = format!(
        "GET /public/slow HTTP/1.1\r\nHost: {}\r\nX-Slow: {}",
        gw.host_header(),
        "a".repeat(200)
    );
    let closed = hold(
        &mut late,
        &slow.as_bytes()[..1],
        &slow.as_bytes()[1..],
        Duration::from_millis(200),
        2 * DEADLINE + SLACK,
    )
    .await;
    assert!(
        closed.is_some(),
        "a trickled head stays open past twice its deadline"
    );
    let (from_first, from_wait) = (first.elapsed(), waited.elapsed());
    assert!(
        from_first + EARLY >= DEADLINE && from_wait <= 2 * DEADLINE + SLACK,
        "trickled head closed {from_first:?} after its first byte, {from_wait:?} after the wait began"
    );

    // The gateway still serves.
    let r = gw.raw_get("/public/x", &[]).await;
    assert_eq!(r.status, 200);
}
