//! Behind an L4 load balancer (`server.proxy_protocol`): a real HAProxy in TCP mode sends the
//! PROXY protocol (v2 and v1) in front of the gateway, and clients connect from their own
//! loopback addresses (Linux loopback answers all of 127/8).
//!
//! Threats covered:
//! - every client looking like the balancer: one attacker's failed logins throttling every
//!   user, the network-anomaly check comparing the balancer with itself, the audit log and the
//!   app's `X-Forwarded-For` naming the balancer — the header's source address is the client's;
//! - a client claiming an address: `X-Forwarded-For` from a client behind the balancer is not
//!   believed (the client is no trusted proxy), and a PROXY header sent by an untrusted peer
//!   straight to the gateway is not read (its TLS handshake fails);
//! - a trusted balancer that sends no header (misconfigured): refused and logged, never served
//!   as if every client were the balancer.

use crate::harness::*;

fn behind_balancer() -> GatewayConfig {
    GatewayConfig::new()
        .set("server", "trusted_proxies", "[\"127.0.0.1/32\"]")
        .set("server", "proxy_protocol", "true")
}

async fn start(send: &str) -> (Gateway, HaProxy) {
    let gw = Gateway::start(behind_balancer()).await;
    let lb = HaProxy::start(gw.https, send);
    (gw, lb)
}

async fn whoami_via(client: &reqwest::Client, gw: &Gateway, extra: &[(&str, &str)]) -> Echo {
    let mut req = client.get(gw.url("/public/whoami"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request through the balancer");
    assert_eq!(resp.status(), 200);
    Echo::from(resp).await
}

#[tokio::test]
async fn proxy_v2_gives_the_client_address_to_the_app_and_the_audit_log() {
    let (gw, lb) = start("send-proxy-v2").await;
    let client = gw.client_via(&lb, "127.0.0.2".parse().unwrap());
    let echo = whoami_via(&client, &gw, &[]).await;
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.2"]);
    // A client's own X-Forwarded-For is not believed: it is no trusted proxy.
    let spoofing = gw.client_via(&lb, "127.0.0.3".parse().unwrap());
    let echo = whoami_via(&spoofing, &gw, &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.3"]);

    let resp = client
        .post(gw.url("/.auth/login"))
        .header("origin", gw.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(form_urlencode(&[
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let s = Session::from_response_headers(resp.headers()).expect("a session");
    let login = gw.wait_for_audit("login_ok").await;
    assert_eq!(login["ip"], "127.0.0.2", "{login}");
    // The session is bound to the client's network, not the balancer's: it keeps working from
    // the client through the balancer.
    let resp = client
        .get(gw.url("/private/x"))
        .header("cookie", s.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.2"]);
}

#[tokio::test]
async fn proxy_v1_gives_the_client_address_too() {
    let (gw, lb) = start("send-proxy").await;
    let client = gw.client_via(&lb, "127.0.0.4".parse().unwrap());
    let echo = whoami_via(&client, &gw, &[]).await;
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.4"]);
}

#[tokio::test]
async fn one_clients_failed_logins_do_not_throttle_another_behind_the_same_balancer() {
    let gw = Gateway::start(
        behind_balancer()
            .set("login", "max_failures_per_ip", "3")
            .set("login", "max_failures_per_user", "100"),
    )
    .await;
    let lb = HaProxy::start(gw.https, "send-proxy-v2");
    let login = |client: reqwest::Client, user: &'static str, password: String| {
        let url = gw.url("/.auth/login");
        let origin = gw.origin();
        async move {
            client
                .post(url)
                .header("origin", origin)
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let attacker = gw.client_via(&lb, "127.0.0.5".parse().unwrap());
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(login(attacker.clone(), "bob", format!("guess-{i}")).await);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429],
        "the attacker is throttled"
    );
    let user = gw.client_via(&lb, "127.0.0.6".parse().unwrap());
    assert_eq!(
        login(user, "alice", ALICE_PASSWORD.to_string()).await,
        200,
        "another client behind the same balancer signs in"
    );
}

#[tokio::test]
async fn a_trusted_peer_without_a_header_is_refused_and_an_untrusted_one_is_never_read() {
    let (gw, _lb) = start("send-proxy-v2").await;
    // 127.0.0.1 is the trusted balancer's address: straight to the gateway with no header.
    let direct = gw.client_from("127.0.0.1".parse().unwrap());
    let r = direct.get(gw.url("/public/x")).send().await;
    assert!(
        r.is_err(),
        "a trusted peer without a PROXY header was served: {r:?}"
    );
    let logs = all_logs(&gw);
    assert!(
        logs.contains("PROXY protocol header refused"),
        "the refusal is logged: {logs}"
    );
    // Any other peer goes straight to TLS, as without a balancer...
    let other = gw.client_from("127.0.0.7".parse().unwrap());
    let echo = whoami_via(&other, &gw, &[]).await;
    assert_eq!(echo.header_all("x-forwarded-for"), vec!["127.0.0.7"]);
    // ...and a PROXY header it sends is not read: the bytes after it are no TLS handshake.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let mut tcp = sock.connect(gw.https).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"PROXY TCP4 198.51.100.9 10.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), tcp.read(&mut buf))
        .await
        .expect("the gateway answers or closes");
    // A TLS alert or a close; never an HTTP answer.
    if let Ok(n) = n {
        assert!(n == 0 || buf[0] == 0x15, "{:?}", &buf[..n]);
    }
    assert_eq!(
        gw.journal_len().await,
        1,
        "only the untrusted client's own request"
    );
}
