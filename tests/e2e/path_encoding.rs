//! Paths the app would read differently from the policy: double encoding, decoded characters
//! that gain a meaning, and a fragment in the request target (issue 10, item 14).
//!
//! Attacks covered (raw HTTP/1.1 bytes over TLS; clients would re-encode or drop these):
//! - double encoding of every path-significant character — `%252F`, `%252f`, `%255C`,
//!   `%252E%252E`, `%253B`, `%2500`, `%2525`, triple `%25252F` — and an escape assembled by
//!   the first decoding (`%25%32%46`), or of an ordinary letter (`%2561`), which an app or
//!   framework that decodes twice reads as another path: refused by default, forwarded literally
//!   with `paths.allow_double_encoding = true`;
//! - a literal `%` that is no escape (`50%25off`) still passes, unchanged;
//! - an encoded `;` (`%3B`, `%3b`), which Tomcat, Jetty and Spring would read as the start of a
//!   path parameter once decoded: reaches the app still encoded, and the policy does not treat
//!   it as a parameter either; a raw `;` stays raw; `%3F` and `%23` stay encoded;
//! - a raw `#` in the request target, which the parser cuts off (the gateway would serve a
//!   shorter path than the one a proxy in front judged): refused, on its own connection and
//!   behind a first request on a keep-alive connection.

use tokio::io::AsyncWriteExt;

use crate::harness::*;

#[tokio::test]
async fn double_encoded_path_characters_are_refused_by_default() {
    let gw = Gateway::start_default().await;
    for target in [
        "/public/a%252Fb",
        "/public/a%252fb",
        "/public/%252F..%252Fprivate",
        "/public/a%255Cb",
        "/public/%252E%252E/private",
        "/public/%252e%252e/private",
        "/public/a%253Bx",
        "/public/a%2500",
        "/public/a%2525",
        "/public/a%25252F",
        "/public/a%25%32%46b",
        "/public/a%25%32%65%25%32%65",
        "/public/%2561dmin",
        "/public/a%252Fb?q=1",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}: {}", resp.body_text());
        assert!(
            resp.body_text().contains("double-encoded"),
            "{target}: {}",
            resp.body_text()
        );
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);

    // A literal percent sign that starts no escape is no double encoding.
    for (target, want) in [
        ("/public/50%25off", "/public/50%25off"),
        ("/public/a%25", "/public/a%25"),
        ("/public/a%25zz", "/public/a%25zz"),
    ] {
        let echo = Echo::from_raw(&gw.raw_get(target, &[]).await);
        assert_eq!(echo.path, want, "{target}");
    }
}

#[tokio::test]
async fn allow_double_encoding_forwards_the_path_literally() {
    let gw =
        Gateway::start(GatewayConfig::new().extra("[paths]\nallow_double_encoding = true\n")).await;
    for (target, want) in [
        ("/public/a%252Fb", "/public/a%252Fb"),
        ("/public/%252e%252e/x", "/public/%252e%252e/x"),
        ("/public/a%2525", "/public/a%2525"),
        ("/public/a%25%32%46b", "/public/a%252Fb"),
    ] {
        let echo = Echo::from_raw(&gw.raw_get(target, &[]).await);
        assert_eq!(echo.path, want, "{target}");
    }
    // The hatch is for double encoding only: single encoded separators stay refused.
    assert_eq!(gw.raw_get("/public/a%2Fb", &[]).await.status, 400);
}

#[tokio::test]
async fn encoded_semicolon_reaches_the_upstream_encoded() {
    let gw = Gateway::start_default().await;
    for (target, want) in [
        ("/public/a%3Bjsessionid=x", "/public/a%3Bjsessionid=x"),
        ("/public/a%3bb", "/public/a%3Bb"),
        ("/public/%3B/x", "/public/%3B/x"),
        // Neighbours: a raw `;` stays a raw `;`; an encoded `?` or `#` stays encoded.
        ("/public/a;b=1", "/public/a;b=1"),
        ("/public/a%3Fb", "/public/a%3Fb"),
        ("/public/a%23b", "/public/a%23b"),
    ] {
        let echo = Echo::from_raw(&gw.raw_get(target, &[]).await);
        assert_eq!(echo.path, want, "{target}");
    }
    // `/public%3B/x` is not under `/public/` for the policy (nor, decoded, for the app).
    let resp = gw.raw_get("/public%3B/private-x", &[]).await;
    assert!(
        [302, 401].contains(&resp.status),
        "/public%3B/private-x: {}",
        resp.status
    );
    gw.assert_upstream_never_saw("private-x").await;
    for e in gw.journal().await {
        assert!(
            !e.path.contains(";jsessionid") && !e.path.contains("a;b;"),
            "a decoded ; reached the upstream: {e:?}"
        );
    }
}

#[tokio::test]
async fn raw_fragment_in_the_request_target_is_refused() {
    let gw = Gateway::start_default().await;
    for target in [
        "/public/frag#x",
        "/public/frag?a=1#x",
        "/public/frag#",
        "/public/frag#/../../private",
        "/private/frag#/public/",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}: {}", resp.body_text());
        assert!(
            resp.body_text().contains("fragment"),
            "{target}: {}",
            resp.body_text()
        );
    }
    gw.assert_upstream_never_saw("frag").await;

    // Behind a good request on the same keep-alive connection: the first is served, the second
    // refused.
    let h = gw.host_header();
    let mut s = gw.raw_connect().await;
    let two = format!(
        "GET /public/first HTTP/1.1\r\nHost: {h}\r\n\r\n\
         GET /public/second#x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(two.as_bytes()).await.unwrap();
    let first = read_response(&mut s, true).await.unwrap();
    assert_eq!(first.status, 200);
    let second = read_response(&mut s, true).await.unwrap();
    assert_eq!(second.status, 400, "{}", second.body_text());
    gw.assert_upstream_never_saw("second").await;
}

/// Over HTTP/2 there is no request line to refuse: the `http` crate cuts `#…` off `:path`
/// before any of the gateway's code sees the request. What must hold is that the policy and the
/// app read the same shorter path — `/public/frag#/../../private` is `/public/frag` to both, and
/// nothing behind the `#` is ever routed or forwarded.
#[tokio::test]
async fn a_fragment_in_an_http2_path_is_cut_before_the_policy_and_the_app_read_it() {
    let gw = Gateway::start_default().await;
    let mut h2 = H2::open(&gw).await;
    let cases = [
        ("/public/frag#x", true),
        ("/public/frag#/../../private", true),
        ("/public/frag?a=1#/private", true),
        ("/private/frag#/public/", false),
    ];
    for (i, (path, public)) in cases.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let block = H2::request_block("GET", path, "localhost", &[]);
        h2.send(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            id,
            &block,
        )
        .await
        .unwrap();
        let status = h2.response(id).await.expect("an answer on the stream");
        if *public {
            assert_eq!(status, 200, "{path}");
        } else {
            assert_ne!(status, 200, "{path}: a protected path behind a fragment");
        }
    }
    let journal = gw.journal().await;
    let paths: Vec<&str> = journal.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/public/frag"; 3], "{journal:?}");
    assert_eq!(journal[2].query, "a=1", "{journal:?}");
}
