//! Spans over OTLP/HTTP (built with `--features otel`): a small receiver on loopback takes
//! the gateway's `POST /v1/traces` and the test finds its request's span in them — with the
//! request id, in the client's trace, and the span the upstream was told is its parent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

/// What the receiver got: `(request target, body)` of each POST.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Every body POSTed to `/v1/traces` on a loopback port, answered `200`.
struct Receiver {
    port: u16,
    bodies: Received,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let bodies: Received = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push((target, body));
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        Receiver { port, bodies }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn otel_request_spans_reach_an_otlp_receiver_with_the_request_id() {
    let receiver = Receiver::start();
    let gw = Gateway::start(
        GatewayConfig::new()
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{}", receiver.port),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = gw
        .get("/public/traced")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let echo = Echo::from(resp).await;
    let sent = echo.header("traceparent").unwrap().to_string();
    let parent = sent.split('-').nth(2).unwrap().to_string();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = receiver.bodies.lock().unwrap().clone();
        if let Some((target, body)) = got.iter().find(|(_, b)| contains(b, rid.as_bytes())) {
            assert_eq!(target, "/v1/traces");
            assert!(contains(body, &unhex(trace)), "not in the client's trace");
            assert!(
                contains(body, &unhex(&parent)),
                "the upstream's parent span {parent} was not exported"
            );
            assert!(contains(body, b"sessiongate"), "no service name");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span with request id {rid} in {} export(s); stderr:\n{}",
            got.len(),
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
