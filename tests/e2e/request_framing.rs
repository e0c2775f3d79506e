//! HTTP/1.1 framing is read exactly as hyper reads it, on every request of a keep-alive
//! connection, so that no request reaches the app unseen by the framing guard.
//!
//! Attacks covered (raw bytes over TLS; each connection ends with a request carrying both
//! `Content-Length` and `Transfer-Encoding`, which must be refused, and the upstream's journal
//! must hold exactly the requests that were meant to reach it):
//! - a refused upgrade used to switch the guard off: `Upgrade: h2c` forwarded as a plain
//!   request, a WebSocket upgrade the gateway refuses (no session) or the app refuses (no
//!   `101`), an upgrade with a body; `CONNECT` (refused: the gateway is no forward proxy, and
//!   hyper would make a tunnel of a `2xx`); an accepted upgrade, whose tunnel bytes must not
//!   be read as HTTP;
//! - a head ending in a bare LF (`\n\n`, `\r\n\n`, `\n\r\n`), which hyper serves, used to hide
//!   the next head from the guard;
//! - chunk sizes written with more than 15 hex digits (leading zeros), which hyper reads;
//! - a bare LF inside a chunked trailer, which makes the next line a trailer for hyper but a
//!   request head for a reader that splits lines at LF;
//! - `Content-Length` repeated with the same value, which hyper merges and serves (item 19:
//!   refused, identical or not), and its neighbours: lists, signs, spaces;
//! - `Transfer-Encoding` spellings (`chunked, identity`, several lines, case, spaces, HTTP/1.0),
//!   obs-fold, bare CR and NUL in a head;
//! - all of the above with every byte in its own TLS record (heads split at every byte);
//! - `Expect: 100-continue`, with the body sent after `100`, never sent, or with CL+TE;
//! - an HTTP/1.1 client on a connection that negotiated `h2` (it is HTTP/2 only), an HTTP/2
//!   preface on an `http/1.1` connection, and a client without ALPN (HTTP/1.1, guarded).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A request with both framing headers whose `Content-Length` covers a smuggled request: a
/// front end that frames by `Content-Length` forwards one request, hyper (by
/// `Transfer-Encoding`) would see two.
fn cl_te(h: &str, path: &str) -> String {
    let body = format!("0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n");
    format!(
        "POST {path} HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    )
}

/// What went wrong, case by case: every case of a test runs, and the test fails at its end
/// naming all that failed (so a run against an older binary shows which neighbours it missed).
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    /// Send `bytes` on one connection (whole, and again one byte per TLS record); the
    /// statuses answered must be `statuses`, and the upstream must have received exactly
    /// `reached`, in order.
    async fn check(
        &mut self,
        gw: &Gateway,
        what: &str,
        bytes: &[u8],
        statuses: &[u16],
        reached: &[&str],
    ) {
        for bytewise in [false, true] {
            let before = gw.journal().await.len();
            let resp = if bytewise {
                gw.raw_exchange_bytewise(bytes).await
            } else {
                gw.raw_exchange(&[bytes]).await
            };
            let got: Vec<u16> = resp.iter().map(|r| r.status).collect();
            let j = gw.journal().await;
            let new: Vec<&str> = j[before..].iter().map(|e| e.path.as_str()).collect();
            if got != statuses || new != reached {
                let how = if bytewise {
                    "one byte per record"
                } else {
                    "whole"
                };
                self.0.push(format!(
                    "{what} ({how}): answered {got:?}, want {statuses:?}; upstream got {new:?}, want {reached:?}"
                ));
            }
        }
    }

    fn note(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }

    async fn assert_none(self, gw: &Gateway) {
        let j = gw.journal().await;
        let smuggled: Vec<&str> = j
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| p.contains("smuggled"))
            .collect();
        assert!(
            self.0.is_empty() && smuggled.is_empty(),
            "{} case(s) failed:\n{}\nsmuggled requests served: {smuggled:?}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

#[tokio::test]
async fn refused_upgrades_keep_the_guard_on() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    let origin = gw.origin();
    let ws = |path: &str, key: bool| {
        let key = if key {
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        } else {
            ""
        };
        format!(
            "GET {path} HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             {key}Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        )
    };
    // Forwarded as a plain request: the gateway never switches to h2c.
    let h2c = format!(
        "GET /public/h2c HTTP/1.1\r\nHost: {h}\r\nUpgrade: h2c\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    f.check(
        &gw,
        "Upgrade: h2c, then CL+TE",
        (h2c + &cl_te(&h, "/public/after-h2c")).as_bytes(),
        &[200, 400],
        &["/public/h2c"],
    )
    .await;
    // Refused by the gateway: no session on a protected path.
    f.check(
        &gw,
        "WebSocket upgrade refused by the gateway, then CL+TE",
        (ws("/private/ws", true) + &cl_te(&h, "/public/after-401")).as_bytes(),
        &[401, 400],
        &[],
    )
    .await;
    // Refused by the app: no Sec-WebSocket-Key, the upstream answers 400, not 101.
    f.check(
        &gw,
        "WebSocket upgrade refused by the app, then CL+TE",
        (ws("/public/ws-no-key", false) + &cl_te(&h, "/public/after-app-400")).as_bytes(),
        &[400, 400],
        &["/public/ws-no-key"],
    )
    .await;
    // An upgrade request with a body: the body is framed, the next head found after it.
    let with_body = format!(
        "POST /public/upgrade-body HTTP/1.1\r\nHost: {h}\r\nUpgrade: foo\r\nConnection: upgrade\r\n\
         Content-Length: 5\r\n\r\nhello"
    );
    f.check(
        &gw,
        "upgrade with a body, then CL+TE",
        (with_body + &cl_te(&h, "/public/after-upgrade-body")).as_bytes(),
        &[200, 400],
        &["/public/upgrade-body"],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn connect_is_refused_and_does_not_switch_the_guard_off() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    // The gateway is no forward proxy: CONNECT (which hyper would turn into a tunnel on a
    // `2xx`, and forwards to the upstream as a CONNECT to the upstream's own address) is
    // refused and the connection closed; the request after it is never read.
    for target in [h.clone(), "/public/connect".to_string()] {
        let bytes = format!("CONNECT {target} HTTP/1.1\r\nHost: {h}\r\n\r\n")
            + &cl_te(&h, "/public/after-connect");
        f.check(
            &gw,
            &format!("CONNECT {target}, then CL+TE"),
            bytes.as_bytes(),
            &[400],
            &[],
        )
        .await;
    }
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn heads_ending_in_a_bare_lf_do_not_hide_the_next_head() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    for (what, first, path) in [
        (
            "every line ending in LF",
            format!("GET /public/lf-a HTTP/1.1\nHost: {h}\n\n"),
            "/public/lf-a",
        ),
        (
            "CRLF lines, LF empty line",
            format!("GET /public/lf-b HTTP/1.1\r\nHost: {h}\r\n\n"),
            "/public/lf-b",
        ),
        (
            "LF lines, CRLF empty line",
            format!("GET /public/lf-c HTTP/1.1\nHost: {h}\n\r\n"),
            "/public/lf-c",
        ),
        (
            "LF head with a body",
            format!("POST /public/lf-d HTTP/1.1\nHost: {h}\nContent-Length: 5\n\nhello"),
            "/public/lf-d",
        ),
    ] {
        let bytes = first + &cl_te(&h, "/public/after-lf");
        f.check(&gw, what, bytes.as_bytes(), &[200, 400], &[path])
            .await;
    }
    // The ambiguous request itself in bare LF.
    let lf_cl_te = format!(
        "POST /public/lf-cl-te HTTP/1.1\nHost: {h}\nContent-Length: 5\n\
         Transfer-Encoding: chunked\n\n0\r\n\r\n"
    );
    f.check(&gw, "CL+TE in bare LF", lf_cl_te.as_bytes(), &[400], &[])
        .await;
    // A bare-LF request alone is served.
    let alone = format!("GET /public/lf-alone HTTP/1.1\nHost: {h}\nConnection: close\n\n");
    f.check(
        &gw,
        "bare LF alone",
        alone.as_bytes(),
        &[200],
        &["/public/lf-alone"],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn long_chunk_sizes_do_not_hide_the_next_head() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    for (what, body) in [
        ("16 hex digits", "0000000000000005\r\nhello\r\n0\r\n\r\n"),
        (
            "33 hex digits",
            "000000000000000000000000000000005\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "upper case, a long last chunk",
            "000000000000000000000A\r\n0123456789\r\n00000000000000000000\r\n\r\n",
        ),
        (
            "an extension and white space",
            "5 \t;name=\"v\"\r\nhello\r\n0;last\r\n\r\n",
        ),
    ] {
        let bytes = format!(
            "POST /public/long-chunk HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ) + &cl_te(&h, "/public/after-long-chunk");
        f.check(
            &gw,
            what,
            bytes.as_bytes(),
            &[200, 400],
            &["/public/long-chunk"],
        )
        .await;
    }
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn a_bare_lf_in_a_chunked_trailer_does_not_shift_the_count_of_requests() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    // hyper reads `X: a\n` and the decoy line after it as trailers, so the CL+TE request is
    // its second request; a reader that ends lines at LF would count the decoy as the second.
    let bytes = format!(
        "POST /public/trailer HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nX: a\n\r\nGET /public/decoy HTTP/1.1\r\nHost: {h}\r\n\r\n"
    ) + &cl_te(&h, "/public/after-trailer");
    f.check(
        &gw,
        "bare LF in a trailer",
        bytes.as_bytes(),
        &[200, 400],
        &["/public/trailer"],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn a_repeated_content_length_is_refused_identical_or_not() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    let post =
        |cl_lines: &str| format!("POST /public/cl HTTP/1.1\r\nHost: {h}\r\n{cl_lines}\r\nhello");
    for (what, lines) in [
        (
            "the same value twice",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
        ),
        (
            "the same value, other case and spacing",
            "content-length: 5\r\nContent-Length:   5  \r\n",
        ),
        (
            "different values",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        ("a list in one line", "Content-Length: 5, 5\r\n"),
        ("a sign", "Content-Length: +5\r\n"),
        ("a hex value", "Content-Length: 0x5\r\n"),
        ("two numbers", "Content-Length: 5 5\r\n"),
        ("empty", "Content-Length: \r\n"),
    ] {
        f.check(&gw, what, post(lines).as_bytes(), &[400], &[])
            .await;
    }
    // After a request that was served, on the same connection.
    let first = format!("GET /public/before-cl HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let bytes = first + &post("Content-Length: 5\r\nContent-Length: 5\r\n");
    f.check(
        &gw,
        "repeated after a good request",
        bytes.as_bytes(),
        &[200, 400],
        &["/public/before-cl"],
    )
    .await;
    // One value with spaces around it is a plain Content-Length.
    let spaced = format!(
        "POST /public/cl-spaced HTTP/1.1\r\nHost: {h}\r\nContent-Length:   5  \r\nConnection: close\r\n\r\nhello"
    );
    f.check(
        &gw,
        "one value, spaced",
        spaced.as_bytes(),
        &[200],
        &["/public/cl-spaced"],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn transfer_encoding_spellings_are_refused() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    let chunked = "0\r\n\r\n";
    for (what, version, lines) in [
        (
            "chunked, identity",
            "1.1",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        (
            "identity, chunked with CL",
            "1.1",
            "Transfer-Encoding: identity, chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "two lines, chunked last is not",
            "1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
        (
            "two lines with CL",
            "1.1",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "Chunked with CL",
            "1.1",
            "Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "spaces around chunked, with CL",
            "1.1",
            "Transfer-Encoding:   chunked  \r\nContent-Length: 5\r\n",
        ),
        (
            "CL before, invalid",
            "1.1",
            "Content-Length: +5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "CL after, invalid",
            "1.1",
            "Transfer-Encoding: chunked\r\nContent-Length: +5\r\n",
        ),
        ("xchunked", "1.1", "Transfer-Encoding: xchunked\r\n"),
        ("a parameter", "1.1", "Transfer-Encoding: chunked;q=1\r\n"),
        (
            "space before the colon",
            "1.1",
            "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
        ),
        ("HTTP/1.0", "1.0", "Transfer-Encoding: chunked\r\n"),
    ] {
        let bytes = format!("POST /public/te HTTP/{version}\r\nHost: {h}\r\n{lines}\r\n{chunked}");
        f.check(&gw, what, bytes.as_bytes(), &[400], &[]).await;
    }
    // Chunked alone, in any case, is a plain chunked request.
    let plain = format!(
        "POST /public/te-plain HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: Chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    f.check(
        &gw,
        "Chunked alone",
        plain.as_bytes(),
        &[200],
        &["/public/te-plain"],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn folded_and_damaged_heads_are_refused() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    for (what, head) in [
        (
            "obs-fold into Transfer-Encoding",
            format!(
                "POST /public/bad HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n"
            ),
        ),
        (
            "obs-fold after a header",
            format!(
                "POST /public/bad HTTP/1.1\r\nHost: {h}\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            ),
        ),
        (
            "obs-fold of Content-Length",
            format!("POST /public/bad HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n 5\r\n"),
        ),
        (
            "bare CR between headers",
            format!(
                "POST /public/bad HTTP/1.1\r\nHost: {h}\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            ),
        ),
        (
            "bare CR before CRLF",
            format!("POST /public/bad HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\r\n"),
        ),
        (
            "bare CR in the request line",
            format!("POST /public/bad HTTP/1.1\rHost: {h}\r\nContent-Length: 5\r\n"),
        ),
        (
            "NUL in a value",
            format!("POST /public/bad HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\0\r\n"),
        ),
        (
            "bare CR before the request line",
            format!("\rPOST /public/bad HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n"),
        ),
    ] {
        let bytes = format!("{head}\r\nhello");
        f.check(&gw, what, bytes.as_bytes(), &[400], &[]).await;
        let after = format!("GET /public/before-bad HTTP/1.1\r\nHost: {h}\r\n\r\n{bytes}");
        f.check(
            &gw,
            what,
            after.as_bytes(),
            &[200, 400],
            &["/public/before-bad"],
        )
        .await;
    }
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn one_connection_of_every_spelling_hyper_serves_is_followed_to_its_end() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    // Pipelined on one connection, whole and one byte per TLS record.
    let bytes = [
        format!("GET /public/seq-1 HTTP/1.1\nHost: {h}\n\n"),
        format!("POST /public/seq-2 HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000005\r\nhello\r\n0\r\nX: a\n\r\nGET /public/decoy HTTP/1.1\r\n\r\n"),
        format!("POST /public/seq-3 HTTP/1.1\r\nHost: {h}\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\nhello"),
        format!("\r\n\r\nGET /public/seq-4 HTTP/1.1\r\nHost: {h}\r\n\r\n"),
        cl_te(&h, "/public/seq-5"),
    ]
    .concat();
    f.check(
        &gw,
        "a mixed keep-alive connection",
        bytes.as_bytes(),
        &[200, 200, 200, 200, 400],
        &[
            "/public/seq-1",
            "/public/seq-2",
            "/public/seq-3",
            "/public/seq-4",
        ],
    )
    .await;
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn expect_100_continue_is_framed_like_any_body() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    // The body after `100 Continue`, then an ambiguous request.
    let before = gw.journal().await.len();
    let mut s = gw.raw_connect().await;
    let head = format!(
        "POST /public/expect HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let cont = tokio::time::timeout(RAW_IDLE, read_response(&mut s, true))
        .await
        .expect("100 Continue in time")
        .expect("a response");
    assert_eq!(cont.status, 100, "{cont:?}");
    s.write_all(format!("hello{}", cl_te(&h, "/public/after-expect")).as_bytes())
        .await
        .unwrap();
    let got: Vec<u16> = read_responses(&mut s, RAW_IDLE)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    let j = gw.journal().await;
    let new: Vec<&str> = j[before..].iter().map(|e| e.path.as_str()).collect();
    f.note(
        got == [200, 400] && new == ["/public/expect"],
        format!("body after 100, then CL+TE: answered {got:?}, upstream got {new:?}"),
    );
    // CL+TE with Expect: refused at once, before any `100`.
    let bytes = format!(
        "POST /public/expect-cl-te HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    );
    f.check(&gw, "CL+TE with Expect", bytes.as_bytes(), &[400], &[])
        .await;
    // Refused before the body was asked for, and the client sends another request instead of
    // the body: whatever hyper makes of it, no ambiguous request is served.
    let before = gw.journal().await.len();
    let bytes = format!(
        "POST /private/expect HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    let resp = gw
        .raw_exchange(&[
            bytes.as_bytes(),
            cl_te(&h, "/public/after-refused-expect").as_bytes(),
        ])
        .await;
    let got: Vec<u16> = resp.iter().map(|r| r.status).collect();
    let reached = gw.journal().await.len() - before;
    f.note(
        got.first() == Some(&401) && got[1..].iter().all(|s| *s >= 400) && reached == 0,
        format!(
            "refused Expect, no body, then CL+TE: answered {got:?}, {reached} reached the upstream"
        ),
    );
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn http1_on_an_h2_connection_is_not_served() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    let mut f = Findings::default();
    let before = gw.journal().await.len();
    // ALPN h2: the connection is HTTP/2 only; HTTP/1 bytes fail the connection preface.
    let mut s = gw.tls_from(gw.tls_config(&[b"h2"]), None).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let bytes = format!("GET /public/h1-on-h2 HTTP/1.1\r\nHost: {h}\r\n\r\n")
        + &cl_te(&h, "/public/h1-on-h2-cl-te");
    let _ = s.write_all(bytes.as_bytes()).await;
    let _ = s.flush().await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(RAW_IDLE * 3, s.read_to_end(&mut got)).await;
    let reached = gw.journal().await.len() - before;
    f.note(
        read.is_ok() && !got.starts_with(b"HTTP/") && reached == 0,
        format!(
            "HTTP/1 on h2: closed {}, answered {:?}, {reached} reached the upstream",
            read.is_ok(),
            String::from_utf8_lossy(&got)
        ),
    );
    // ALPN http/1.1 and the HTTP/2 preface: not HTTP/1.1, not served.
    let preface = [H2_PREFACE, &frame_bytes(frame::SETTINGS, 0, 0, &[])].concat();
    let resp = gw.raw_exchange(&[&preface]).await;
    let got: Vec<u16> = resp.iter().map(|r| r.status).collect();
    f.note(
        got.iter().all(|s| *s >= 400) && gw.journal().await.len() == before,
        format!("HTTP/2 preface on http/1.1: answered {got:?}"),
    );
    // No ALPN at all: HTTP/1.1, guarded like http/1.1.
    let mut s = gw.tls_from(gw.tls_config(&[]), None).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let bytes = format!("GET /public/no-alpn HTTP/1.1\r\nHost: {h}\r\n\r\n")
        + &cl_te(&h, "/public/no-alpn-cl-te");
    s.write_all(bytes.as_bytes()).await.unwrap();
    let got: Vec<u16> = read_responses(&mut s, RAW_IDLE)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    let j = gw.journal().await;
    let new: Vec<&str> = j[before..].iter().map(|e| e.path.as_str()).collect();
    f.note(
        got == [200, 400] && new == ["/public/no-alpn"],
        format!("no ALPN, then CL+TE: answered {got:?}, upstream got {new:?}"),
    );
    f.assert_none(&gw).await;
}

#[tokio::test]
async fn an_accepted_websocket_tunnel_is_not_read_as_http() {
    let gw = Gateway::start_default().await;
    let h = gw.host_header();
    // After a `101` the bytes are the tunnel's: HTTP-looking frames pass through untouched.
    let mut s = gw.raw_connect().await;
    let upgrade = format!(
        "GET /public/ws HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {}\r\n\r\n",
        gw.origin()
    );
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let resp = tokio::time::timeout(RAW_IDLE, read_response(&mut s, false))
        .await
        .expect("upgrade answer in time")
        .expect("an answer");
    assert_eq!(resp.status, 101, "{resp:?}");
    let text =
        "POST /public/smuggled HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for mask in [[0u8; 4], [0x37, 0xfa, 0x21, 0x3d]] {
        // A zero mask puts the HTTP bytes on the wire as they are.
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut head = [0u8; 2];
        tokio::time::timeout(RAW_IDLE, s.read_exact(&mut head))
            .await
            .expect("echo in time")
            .expect("echo frame");
        assert_eq!(head, [0x81, text.len() as u8]);
        let mut payload = vec![0u8; text.len()];
        s.read_exact(&mut payload).await.unwrap();
        assert_eq!(payload, text.as_bytes());
    }
    gw.assert_upstream_never_saw("smuggled").await;
}
