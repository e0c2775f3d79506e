//! The admin listener (plain HTTP, loopback): `/metrics`, and the admin API
//! (`GET /admin/users/{user}/sessions`, `POST /admin/users/{user}/revoke-all`) behind
//! `Authorization: Bearer` with the token named by `admin.token_env`.
//!
//! Attacks covered:
//! - using the admin API without the token, with a wrong one, a prefix or an extension of the
//!   right one, or the right one under another scheme;
//! - reaching the admin API through the public HTTPS listener;
//! - an operator's revoke-all (lost device, password change) that leaves an access token
//!   working until it expires, or touches another user;
//! - metrics that do not move, so that an attack (refresh-token reuse, anomalies, failed
//!   logins) goes unseen.

use serde_json::Value;

use crate::harness::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// Label pairs a sample must carry.
type Labels<'a> = &'a [(&'a str, &'a str)];

async fn metrics_need_no_token_and_move_with_traffic(store: StoreUnderTest) {
    let gw = store
        .start(GatewayConfig::new().admin_api_token(&random_secret()))
        .await;
    let before = metrics(&gw).await;
    // Traffic: a login, a forwarded request, two rotations, a reuse, an anomaly, a failure.
    let ua = [("user-agent", FIREFOX)];
    let mut s = gw.login_with("alice", ALICE_PASSWORD, &ua).await;
    let r0 = s.clone();
    let resp = gw
        .get("/private/x")
        .header("cookie", s.cookie_header())
        .header("user-agent", FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for i in 0..2 {
        let resp = gw
            .refresh_with(&s.refresh_only(), &[("user-agent", FIREFOX)])
            .await;
        assert_eq!(resp.status(), 200, "rotation {i}");
        s.update(resp.headers());
    }
    let reuse = gw
        .refresh_with(&r0.refresh_only(), &[("user-agent", FIREFOX)])
        .await;
    assert_eq!(
        reuse.status(),
        401,
        "a twice-rotated-out refresh token is reuse"
    );
    let bob = gw.login_with("bob", BOB_PASSWORD, &ua).await;
    let stolen = gw
        .get("/private/y")
        .header("cookie", bob.cookie_header())
        .header("user-agent", CHROME)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 401, "user-agent change under revoke");
    let failed = gw.login_form("alice", "wrong", "/").await;
    assert_eq!(failed.status(), 401);

    let after = metrics(&gw).await;
    // Labelled families appear once they have a sample.
    for family in [
        "sessiongate_requests",
        "sessiongate_logins",
        "sessiongate_refreshes",
        "sessiongate_refresh_reuse_detections",
        "sessiongate_anomalies",
        "sessiongate_store_duration_seconds",
        "sessiongate_upstream_duration_seconds",
    ] {
        assert!(
            after.contains(&format!("# TYPE {family} ")),
            "/metrics lacks {family}:\n{after}"
        );
    }

    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    let checks: [(&str, Labels, f64); 10] = [
        ("sessiongate_logins_total", &[("outcome", "ok")], 2.0),
        ("sessiongate_logins_total", &[("outcome", "failed")], 1.0),
        (
            "sessiongate_requests_total",
            &[("outcome", "forwarded")],
            1.0,
        ),
        (
            "sessiongate_refreshes_total",
            &[("outcome", "rotated")],
            2.0,
        ),
        ("sessiongate_refreshes_total", &[("outcome", "reused")], 1.0),
        ("sessiongate_refresh_reuse_detections_total", &[], 1.0),
        (
            "sessiongate_anomalies_total",
            &[("signal", "user_agent"), ("action", "revoke")],
            1.0,
        ),
        (
            "sessiongate_store_duration_seconds_count",
            &[("op", "create")],
            2.0,
        ),
        (
            "sessiongate_store_duration_seconds_count",
            &[("op", "rotate")],
            3.0,
        ),
        ("sessiongate_upstream_duration_seconds_count", &[], 1.0),
    ];
    let mut wrong = Vec::new();
    for (name, labels, want) in checks {
        let got = delta(name, labels);
        if got < want {
            wrong.push(format!("{name}{labels:?}: moved by {got}, expected {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "metrics did not follow the traffic:\n{}\n--- after ---\n{after}",
        wrong.join("\n")
    );
    // The stolen cookie's request; the gateway's own endpoints: 2 logins, 3 refreshes, 1 failure.
    let unauthenticated = delta(
        "sessiongate_requests_total",
        &[("outcome", "unauthenticated")],
    );
    let gateway = delta("sessiongate_requests_total", &[("outcome", "gateway")]);
    assert!(
        unauthenticated >= 1.0 && gateway >= 6.0,
        "requests by outcome: unauthenticated moved by {unauthenticated} (want 1), gateway by \
         {gateway} (want 6)"
    );
}

/// `(status, body)` of an admin API call with this `Authorization` header.
async fn admin_call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, bool) {
    let mut req = gw.plain.request(method, gw.admin_url(path));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let www = resp.headers().contains_key("www-authenticate");
    (status, resp.text().await.unwrap(), www)
}

#[tokio::test]
async fn admin_api_refuses_requests_without_the_exact_token() {
    let token = random_secret();
    let gw = Gateway::start(GatewayConfig::new().admin_api_token(&token)).await;
    let alice = gw.login_with("alice", ALICE_PASSWORD, &[]).await;
    let wrong = random_secret();
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("a wrong token", Some(format!("Bearer {wrong}"))),
        (
            "an extension of the token",
            Some(format!("Bearer {token}x")),
        ),
        (
            "a prefix of the token",
            Some(format!("Bearer {}", &token[..token.len() - 1])),
        ),
        ("another scheme", Some(format!("Basic {token}"))),
        ("the bare token", Some(token.clone())),
        ("an empty bearer", Some("Bearer ".to_string())),
    ];
    for (what, auth) in &bad {
        for (method, path) in [
            (reqwest::Method::GET, "/admin/users/alice/sessions"),
            (reqwest::Method::POST, "/admin/users/alice/revoke-all"),
        ] {
            let (status, body, www) = admin_call(&gw, method.clone(), path, auth.as_deref()).await;
            assert_eq!(status, 401, "{what}: {method} {path}: {body}");
            assert!(www, "{what}: a 401 without WWW-Authenticate");
            assert!(!body.contains("handle"), "{what}: {body}");
        }
    }
    // The session survived every attempt.
    let echo = Echo::from(gw.get_with("/private/x", &alice.cookie_header()).await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    // The admin API is not served on the public listener, token or not.
    let resp = gw
        .get("/admin/users/alice/sessions")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let body = resp.text().await.unwrap();
    assert!(
        !body.contains("\"sessions\""),
        "the admin API answered on the public HTTPS listener: {body}"
    );

    let (status, body, _) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/users/alice/sessions",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn admin_revoke_all_ends_every_session_of_the_user_at_once(store: StoreUnderTest) {
    let token = random_secret();
    let bearer = format!("Bearer {token}");
    let gw = store
        .start(GatewayConfig::new().admin_api_token(&token))
        .await;
    let laptop = gw
        .login_with("alice", ALICE_PASSWORD, &[("user-agent", FIREFOX)])
        .await;
    let desktop = gw
        .login_with("alice", ALICE_PASSWORD, &[("user-agent", CHROME)])
        .await;
    let bob = gw.login("bob", BOB_PASSWORD).await;

    let (status, body, _) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/users/alice/sessions",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let sessions = v["sessions"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(sessions.len(), 2, "{v}");
    let mut devices: Vec<&str> = sessions
        .iter()
        .filter_map(|e| e["device"].as_str())
        .collect();
    devices.sort();
    assert_eq!(
        devices,
        vec!["Chrome on Windows", "Firefox on Linux"],
        "{v}"
    );
    for e in sessions {
        assert!(e["handle"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
    }

    let (status, _, _) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/users/alice/revoke-all",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 405, "revoke-all is POST only");

    let (status, body, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/admin/users/alice/revoke-all",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["revoked"], 2, "{v}");

    // At once: the access tokens, not only the refresh tokens.
    for (what, s, ua) in [("laptop", &laptop, FIREFOX), ("desktop", &desktop, CHROME)] {
        let resp = gw
            .get("/private/after-revoke")
            .header("cookie", s.access_only())
            .header("user-agent", ua)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            401,
            "{what}: the access token outlived revoke-all"
        );
        let resp = gw
            .refresh_with(&s.refresh_only(), &[("user-agent", ua)])
            .await;
        assert_eq!(
            resp.status(),
            401,
            "{what}: the refresh token outlived revoke-all"
        );
    }
    gw.assert_upstream_never_saw("/private/after-revoke").await;
    let echo = Echo::from(gw.get_with("/private/bob", &bob.cookie_header()).await).await;
    assert_eq!(
        echo.header("x-auth-user"),
        Some("bob"),
        "bob was signed out too"
    );

    let (_, body, _) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/users/alice/sessions",
        Some(&bearer),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sessions"], serde_json::json!([]), "{v}");
    let event = gw.wait_for_audit("admin_revoke_all").await;
    assert_eq!(event["user"], "alice", "{event}");
    assert_eq!(event["count"], 2, "{event}");
}

#[test]
fn metric_parser_reads_labelled_and_plain_samples() {
    let text = "# TYPE a counter\na_total{outcome=\"ok\"} 3\na_total{outcome=\"failed\"} 1\n\
                h_count 7\nh_count{op=\"create\"} 2\n";
    assert_eq!(metric(text, "a_total", &[("outcome", "ok")]), 3.0);
    assert_eq!(metric(text, "a_total", &[]), 4.0);
    assert_eq!(metric(text, "h_count", &[("op", "create")]), 2.0);
    assert_eq!(metric(text, "missing", &[]), 0.0);
}

crate::for_both_stores!(
    metrics_need_no_token_and_move_with_traffic,
    admin_revoke_all_ends_every_session_of_the_user_at_once,
);
