//! Reload without dropping anything (SIGHUP and `sessiongate reload`).
//!
//! Threats and failures covered:
//! - an operator change (a route, a user removed, a renewed certificate, the log level) that
//!   needs a restart — with the memory store, a restart logs everyone out: a reload keeps every
//!   session, and a connection opened before it keeps working;
//! - a bad reload taking the gateway down or half-applying: the running configuration stays,
//!   `/readyz` stays ready, the problem is logged with its key and counted;
//! - a reload that silently ignores a setting only a restart can change (a listen address):
//!   refused, naming the key.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::harness::*;

async fn status_of(
    client: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    cookie: Option<&str>,
) -> u16 {
    let mut req = client
        .get(gw.url(path))
        .header("accept", "application/json");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sighup_reloads_routes_and_users_and_keeps_every_session() {
    let mut gw = Gateway::start_default().await;
    let alice = gw.login_alice().await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    // A client with a kept-alive connection from before the reload.
    assert_eq!(status_of(&gw.client, &gw, "/later/x", None).await, 401);

    // A new public route, and bob removed from the users file.
    let users = users_toml();
    let without_bob: String = users
        .split("\n[[user]]")
        .filter(|block| !block.contains("\"bob\""))
        .collect::<Vec<_>>()
        .join("\n[[user]]");
    assert!(
        !without_bob.contains("bob") && without_bob.contains("alice"),
        "{without_bob}"
    );
    std::fs::write(gw.dir.path().join("users.toml"), without_bob).unwrap();
    let cfg = gw.config.clone().route(Route::public("/later/"));
    gw.reload_with(cfg, "ok", 1).await;

    assert_eq!(
        status_of(&gw.client, &gw, "/later/x", None).await,
        200,
        "the new route, on the connection kept from before the reload"
    );
    assert_eq!(
        status_of(&gw.client, &gw, "/private/x", Some(&alice.cookie_header())).await,
        200,
        "alice's session survived the reload"
    );
    let refreshed = gw.refresh(&alice).await;
    assert_eq!(refreshed.status(), 200, "and refreshes");
    let resp = gw.login_form("bob", BOB_PASSWORD, "/").await;
    assert_eq!(resp.status(), 401, "bob is no longer in the users file");
    // Removing a user from the file stops new logins; existing sessions end by revocation.
    assert_eq!(
        status_of(&gw.client, &gw, "/private/x", Some(&bob.cookie_header())).await,
        200
    );
    assert!(gw.stderr_text().contains("configuration reloaded"));
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_configuration_and_names_the_key() {
    let mut gw = Gateway::start_default().await;
    let good = gw.config.clone();
    let alice = gw.login_alice().await;
    let bad = [
        (
            "a route to an upstream that does not exist",
            gw.config
                .clone()
                .route(Route::public("/later/").to("nowhere")),
            "route",
        ),
        (
            "an access token outliving its refresh token",
            gw.config.clone().set("session", "access_ttl", "\"30d\""),
            "session.access_ttl",
        ),
        (
            "a typo",
            gw.config.clone().set("session", "acess_ttl", "\"1m\""),
            "acess_ttl",
        ),
        (
            "a listen address, which only a restart can change",
            gw.config
                .clone()
                .set("server", "admin_listen", "\"127.0.0.2:0\""),
            "server.admin_listen",
        ),
    ];
    for (i, (what, cfg, key)) in bad.into_iter().enumerate() {
        gw.reload_with(cfg, "failed", i as u64 + 1).await;
        let err = gw.stderr_text();
        assert!(
            err.lines()
                .any(|l| l.contains("reload refused") && l.contains(key)),
            "{what}: the refusal names `{key}`:\n{err}"
        );
        assert_eq!(gw.readyz().await, Some(200), "{what}: still ready");
        assert_eq!(
            status_of(&gw.client, &gw, "/private/x", Some(&alice.cookie_header())).await,
            200,
            "{what}: the running configuration serves on"
        );
        assert_eq!(
            status_of(&gw.client, &gw, "/later/x", None).await,
            401,
            "{what}"
        );
    }
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "sessiongate_reloads_total", &[("outcome", "ok")]),
        0.0
    );
    // A good one after the bad ones still applies.
    let cfg = good.route(Route::public("/later/"));
    gw.reload_with(cfg, "ok", 1).await;
    assert_eq!(status_of(&gw.client, &gw, "/later/x", None).await, 200);
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_handshakes_and_open_connections_keep_working() {
    let mut gw = Gateway::start_default().await;
    // A keep-alive HTTP/1.1 connection made with the old certificate.
    let mut old = gw.raw_connect().await;
    let h = gw.host_header();
    let get = format!("GET /public/before HTTP/1.1\r\nHost: {h}\r\n\r\n");
    old.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut old, true).await.unwrap().status, 200);

    // Renewal: another CA's certificate and key land in the configured files.
    let renewed_dir = tempfile::tempdir().unwrap();
    let renewed = Pki::generate(renewed_dir.path());
    std::fs::copy(&renewed.cert_path, &gw.pki.cert_path).unwrap();
    std::fs::copy(&renewed.key_path, &gw.pki.key_path).unwrap();
    let cfg = gw.config.clone();
    gw.reload_with(cfg, "ok", 1).await;

    let trusts_new = std::sync::Arc::new(renewed.client_config(&[b"http/1.1"]));
    assert!(
        gw.tls_from(trusts_new, None).await.is_ok(),
        "a new handshake gets the renewed certificate"
    );
    assert!(
        gw.tls_from(gw.tls_config(&[b"http/1.1"]), None)
            .await
            .is_err(),
        "a client that trusts only the old CA no longer gets the old certificate"
    );
    let get = format!("GET /public/after HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
    old.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut old, true).await.unwrap().status,
        200,
        "the connection from before the renewal keeps working"
    );

    // A key that does not match the certificate is refused, and the renewed pair stays.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::generate(other_dir.path());
    std::fs::copy(&other.key_path, &gw.pki.key_path).unwrap();
    let cfg = gw.config.clone();
    gw.reload_with(cfg, "failed", 1).await;
    assert!(
        gw.stderr_text()
            .lines()
            .any(|l| l.contains("reload refused") && l.contains("tls."))
    );
    let trusts_new = std::sync::Arc::new(renewed.client_config(&[b"http/1.1"]));
    assert!(gw.tls_from(trusts_new, None).await.is_ok());
}

#[tokio::test]
async fn sighup_changes_the_log_level() {
    let quiet = GatewayConfig::new().set("log", "level", "\"warn\"");
    let mut gw = Gateway::start(quiet.clone()).await;
    gw.reload_with(quiet, "ok", 1).await;
    assert!(
        !gw.stderr_text().contains("configuration reloaded"),
        "an info line at level warn"
    );
    let cfg = gw.config.clone().set("log", "level", "\"info\"");
    gw.reload_with(cfg, "ok", 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.stderr_text().contains("configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_reload_command_signals_the_process_in_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sessiongate.pid");
    let cfg = GatewayConfig::new().set("server", "pid_file", &format!("{pid_file:?}"));
    let mut gw = Gateway::start(cfg).await;
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), gw.pid().to_string());
    let out = std::process::Command::new(bin())
        .args(["reload", "--config"])
        .arg(&gw.config_path)
        .envs([
            ("SG_TEST_ACCESS_SECRET", gw.access_secret.as_str()),
            ("SG_TEST_REFRESH_SECRET", gw.refresh_secret.as_str()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.wait_reloads("ok", 1).await;
    gw.stop().await;
    assert!(!pid_file.exists(), "the pid file goes with the process");
}
