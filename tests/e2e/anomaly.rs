//! Session anomalies (`[anomaly]`): a session used from another network or another browser.
//!
//! Attacks covered:
//! - a stolen session cookie replayed from the attacker's browser (another `User-Agent`) under
//!   `user_agent_change = "revoke"`: the session ends everywhere, for the victim too, and its
//!   refresh token dies with it;
//! - a stolen session replayed from another network under `ip_change = "reauth"`: that request
//!   is treated as unauthenticated (cookies cleared, no refresh from there) while the session
//!   keeps working from its own network; a move inside the /24 is no anomaly;
//! - an attacker faking its network with `X-Forwarded-For` from a peer that is not a trusted
//!   proxy (both to dodge the check and to frame the victim's session as moved);
//! - fingerprints that leak the client's raw IP or user agent inside the tokens.

use serde_json::Value;

use crate::harness::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// `GET path` with the session's cookies and extra headers.
async fn get_from(
    gw: &Gateway,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gw.get(path).header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// A `401` for an API client: JSON, `WWW-Authenticate`, the session cookies cleared.
async fn assert_unauthenticated_and_cleared(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 401, "{what}");
    assert!(
        resp.headers().contains_key("www-authenticate"),
        "{what}: 401 without WWW-Authenticate"
    );
    let cleared = set_cookie_named(resp.headers(), ACCESS_COOKIE)
        .is_some_and(|c| c.value.is_empty() || c.max_age() == Some(0));
    assert!(
        cleared,
        "{what}: the dead session's access cookie is not cleared: {:?}",
        set_cookies(resp.headers())
    );
    let text = resp.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_ok(),
        "{what}: 401 body is JSON: {text:?}"
    );
}

fn anomalies(gw: &Gateway) -> Vec<Value> {
    gw.audit_events()
        .into_iter()
        .filter(|e| e["event"] == "anomaly")
        .collect()
}

#[tokio::test]
async fn session_is_bound_to_keyed_fingerprints_not_raw_values() {
    let gw = Gateway::start(GatewayConfig::new().trust_loopback_proxy()).await;
    let s = gw
        .login_with(
            "alice",
            ALICE_PASSWORD,
            &[("user-agent", FIREFOX), ("x-forwarded-for", "203.0.113.7")],
        )
        .await;
    for (name, token) in [("access", &s.access), ("refresh", &s.refresh)] {
        let c = jwt_claims(token);
        for k in ["ipn", "uah", "uad"] {
            assert!(
                c[k].as_str().is_some_and(|v| !v.is_empty()),
                "the {name} token carries {k}: {c}"
            );
        }
        let text = c.to_string();
        for raw in ["203.0.113", "Firefox", "Gecko", "Mozilla"] {
            assert!(
                !text.contains(raw),
                "the {name} token leaks {raw:?}: {text}"
            );
        }
    }
    let (a, r) = (jwt_claims(&s.access), jwt_claims(&s.refresh));
    assert_eq!(a["ipn"], r["ipn"], "both tokens carry one network binding");
    for k in ["uah", "uad"] {
        assert_eq!(a[k], r[k], "both tokens carry one user-agent binding ({k})");
    }
}

async fn user_agent_change_under_revoke_ends_the_session_everywhere(store: StoreUnderTest) {
    // Default policy: user_agent_change = "revoke".
    let gw = store.start(GatewayConfig::new()).await;
    let s = gw
        .login_with("alice", ALICE_PASSWORD, &[("user-agent", FIREFOX)])
        .await;
    let ok = get_from(
        &gw,
        "/private/before",
        &s.cookie_header(),
        &[("user-agent", FIREFOX)],
    )
    .await;
    assert_eq!(Echo::from(ok).await.header("x-auth-user"), Some("alice"));

    // The stolen cookies, replayed from another browser.
    let stolen = get_from(
        &gw,
        "/private/stolen",
        &s.cookie_header(),
        &[("user-agent", CHROME), ("accept", "application/json")],
    )
    .await;
    assert_unauthenticated_and_cleared(stolen, "request from another user agent").await;
    gw.assert_upstream_never_saw("/private/stolen").await;
    let event = gw.wait_for_audit("anomaly").await;
    assert_eq!(event["user"], "alice", "{event}");
    assert!(
        event.to_string().contains("user_agent"),
        "the audit line names the signal: {event}"
    );

    // The session is over for its owner too: access token and refresh token refused.
    let after = get_from(
        &gw,
        "/private/after",
        &s.access_only(),
        &[("user-agent", FIREFOX), ("accept", "application/json")],
    )
    .await;
    assert_eq!(
        after.status(),
        401,
        "the revoked session's access token still works from its own browser"
    );
    let r = gw
        .refresh_with(&s.refresh_only(), &[("user-agent", FIREFOX)])
        .await;
    assert_eq!(
        r.status(),
        401,
        "the revoked session's refresh token still works from its own browser"
    );
    assert!(Session::from_response_headers(r.headers()).is_none());
    gw.assert_upstream_never_saw("/private/after").await;
    let revoked = gw.wait_for_audit("session_revoked").await;
    assert_eq!(revoked["user"], "alice", "{revoked}");
}

async fn ip_move_within_the_prefix_passes_and_across_it_needs_reauth(store: StoreUnderTest) {
    let gw = store
        .start(
            GatewayConfig::new()
                .trust_loopback_proxy()
                .extra("[anomaly]\nip_change = \"reauth\"\n"),
        )
        .await;
    let home = [("user-agent", FIREFOX), ("x-forwarded-for", "203.0.113.7")];
    let s = gw.login_with("alice", ALICE_PASSWORD, &home).await;

    // Same /24: no anomaly.
    let same_net = get_from(
        &gw,
        "/private/same-net",
        &s.cookie_header(),
        &[
            ("user-agent", FIREFOX),
            ("x-forwarded-for", "203.0.113.200"),
        ],
    )
    .await;
    let echo = Echo::from(same_net).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));

    // Another network: this request must sign in again.
    let elsewhere = [
        ("user-agent", FIREFOX),
        ("x-forwarded-for", "198.51.100.7"),
        ("accept", "application/json"),
    ];
    let resp = get_from(&gw, "/private/other-net", &s.cookie_header(), &elsewhere).await;
    assert_unauthenticated_and_cleared(resp, "API request from another network").await;
    let nav = get_from(
        &gw,
        "/private/other-net-page",
        &s.cookie_header(),
        &[
            ("user-agent", FIREFOX),
            ("x-forwarded-for", "198.51.100.7"),
            ("accept", "text/html"),
            ("sec-fetch-mode", "navigate"),
        ],
    )
    .await;
    assert_eq!(nav.status(), 302, "a navigation from another network");
    let location = nav.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/.auth/login"),
        "sent to the login page: {location}"
    );
    // No refresh from there either (the refresh token is bound to the same network).
    let r = gw.refresh_with(&s.refresh_only(), &elsewhere).await;
    assert_eq!(r.status(), 401, "refresh from another network");
    assert!(Session::from_response_headers(r.headers()).is_none());
    gw.assert_upstream_never_saw("/private/other-net").await;

    let event = gw.wait_for_audit("anomaly").await;
    assert_eq!(event["user"], "alice", "{event}");
    assert_eq!(
        event["ip"], "198.51.100.7",
        "the audit names the client IP: {event}"
    );
    assert!(
        anomalies(&gw)
            .iter()
            .all(|e| e["ip"] != "203.0.113.200" && e["ip"] != "203.0.113.7"),
        "a move within the /24 was reported as an anomaly: {:?}",
        anomalies(&gw)
    );

    // The session still works from its own network, access and refresh alike.
    let back = get_from(&gw, "/private/home", &s.cookie_header(), &home).await;
    assert_eq!(Echo::from(back).await.header("x-auth-user"), Some("alice"));
    let r = gw
        .refresh_with(
            &s.refresh_only(),
            &[("user-agent", FIREFOX), ("x-forwarded-for", "203.0.113.50")],
        )
        .await;
    let (status, session) = (r.status(), Session::from_response_headers(r.headers()));
    // The answer's body and the gateway's log name the reason when this fails (a store
    // timeout on a loaded machine answers 503, an anomaly 401).
    let body = r.text().await.unwrap_or_default();
    assert_eq!(
        status,
        200,
        "refresh from the session's own network: {body}\n{}",
        gw.stderr_plain()
    );
    assert!(session.is_some());

    // IPv6: the same rule with /64, and an IPv4-mapped address is its IPv4 network.
    let v6 = gw
        .login_with(
            "bob",
            BOB_PASSWORD,
            &[("x-forwarded-for", "2001:db8:1:2::10")],
        )
        .await;
    for (xff, want) in [
        ("2001:db8:1:2:ffff::9", 200),
        ("2001:db8:1:3::10", 401),
        ("2001:db8:1:2::11", 200),
    ] {
        let resp = get_from(
            &gw,
            "/private/v6",
            &v6.access_only(),
            &[("x-forwarded-for", xff), ("accept", "application/json")],
        )
        .await;
        assert_eq!(resp.status(), want, "IPv6 session used from {xff}");
    }
    let mapped = get_from(
        &gw,
        "/private/mapped",
        &s.access_only(),
        &[
            ("user-agent", FIREFOX),
            ("x-forwarded-for", "::ffff:203.0.113.99"),
        ],
    )
    .await;
    assert_eq!(
        mapped.status(),
        200,
        "IPv4-mapped IPv6 in the session's /24"
    );
}

/// A stolen cookie used from another network under `reauth` must not act on the session at
/// all: "that request is answered as unauthenticated ... the session stays valid from where it
/// came" — including the gateway's own logout endpoints.
async fn stolen_cookie_from_another_network_cannot_sign_the_user_out(store: StoreUnderTest) {
    let gw = store
        .start(
            GatewayConfig::new()
                .trust_loopback_proxy()
                .extra("[anomaly]\nip_change = \"reauth\"\n"),
        )
        .await;
    let home = [("user-agent", FIREFOX), ("x-forwarded-for", "203.0.113.7")];
    let mut failures = Vec::new();
    for action in ["DELETE the other session", "logout-all", "logout"] {
        // A fresh pair of sessions for each request, so that each verdict stands alone.
        let s = gw.login_with("alice", ALICE_PASSWORD, &home).await;
        let other = gw.login_with("alice", ALICE_PASSWORD, &home).await;
        let me: Value = get_from(&gw, "/.auth/me", &other.cookie_header(), &home)
            .await
            .json()
            .await
            .unwrap();
        let (method, path) = match action {
            "logout-all" => (reqwest::Method::POST, "/.auth/logout-all".to_string()),
            "logout" => (reqwest::Method::POST, "/.auth/logout".to_string()),
            _ => (
                reqwest::Method::DELETE,
                format!("/.auth/sessions/{}", me["session"].as_str().unwrap()),
            ),
        };
        let resp = gw
            .client
            .request(method.clone(), gw.url(&path))
            .header("origin", gw.origin())
            .header("cookie", s.cookie_header())
            .header("user-agent", FIREFOX)
            .header("x-forwarded-for", "198.51.100.7")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        for (what, sess) in [("this session", &s), ("the user's other session", &other)] {
            let back = get_from(&gw, "/private/home", &sess.access_only(), &home).await;
            if back.status() != 200 {
                failures.push(format!(
                    "{method} {path} with the stolen cookies from another network (answered \
                     {status}) ended {what} on its own network (then {})",
                    back.status()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn ip_change_under_the_default_log_policy_passes_and_is_audited() {
    let gw = Gateway::start(GatewayConfig::new().trust_loopback_proxy()).await;
    let s = gw
        .login_with("bob", BOB_PASSWORD, &[("x-forwarded-for", "203.0.113.7")])
        .await;
    let resp = get_from(
        &gw,
        "/private/moved",
        &s.cookie_header(),
        &[("x-forwarded-for", "198.51.100.99")],
    )
    .await;
    let echo = Echo::from(resp).await;
    assert_eq!(echo.header("x-auth-user"), Some("bob"));
    assert_eq!(
        echo.header_all("x-forwarded-for").join(","),
        "198.51.100.99, 127.0.0.1",
        "the client address from the trusted proxy, then the proxy itself"
    );
    let event = gw.wait_for_audit("anomaly").await;
    assert_eq!(event["user"], "bob", "{event}");
    assert_eq!(event["ip"], "198.51.100.99", "{event}");
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    // No trusted proxies: X-Forwarded-For is the client's word and must be ignored, even with
    // the strictest IP policy.
    let gw =
        Gateway::start(GatewayConfig::new().extra("[anomaly]\nip_change = \"revoke\"\n")).await;
    // Logging in with a fake address does not bind the session to it ...
    let s = gw
        .login_with(
            "alice",
            ALICE_PASSWORD,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    // ... and requests claiming other networks are the same client, on the same network.
    for (i, fake) in ["203.0.113.9", "10.9.8.7, 192.0.2.1", "2001:db8::1"]
        .iter()
        .enumerate()
    {
        let resp = get_from(
            &gw,
            &format!("/private/spoof-{i}"),
            &s.cookie_header(),
            &[("x-forwarded-for", fake)],
        )
        .await;
        let echo = Echo::from(resp).await;
        assert_eq!(echo.header("x-auth-user"), Some("alice"), "XFF {fake:?}");
        assert_eq!(
            echo.header_all("x-forwarded-for"),
            vec!["127.0.0.1"],
            "XFF {fake:?}: the upstream sees the real peer only"
        );
    }
    let plain = get_from(&gw, "/private/no-xff", &s.cookie_header(), &[]).await;
    assert_eq!(Echo::from(plain).await.header("x-auth-user"), Some("alice"));
    let list: Value = gw
        .get("/.auth/sessions")
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["sessions"][0]["ip"], "127.0.0.1",
        "the session records the real peer: {list}"
    );
    // Audit lines are written in order: once the logout is there, any anomaly would be too.
    let out = gw.logout_with(&s.cookie_header(), &[]).await;
    assert_eq!(out.status(), 204);
    gw.wait_for_audit("logout").await;
    assert!(
        anomalies(&gw).is_empty(),
        "a spoofed X-Forwarded-For from an untrusted peer raised an anomaly: {:?}",
        anomalies(&gw)
    );
}

crate::for_both_stores!(
    user_agent_change_under_revoke_ends_the_session_everywhere,
    ip_move_within_the_prefix_passes_and_across_it_needs_reauth,
    stolen_cookie_from_another_network_cannot_sign_the_user_out,
);

/// Rotate `refresh` `n` times through `POST /.auth/refresh` (JSON), returning each answer's
/// status and the last tokens issued.
async fn refresh_times(gw: &Gateway, refresh: &str, n: usize) -> (Vec<u16>, String, String) {
    let (mut access, mut refresh) = (String::new(), refresh.to_string());
    let mut statuses = Vec::new();
    for _ in 0..n {
        let resp = gw.refresh_json(&refresh).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            let v: Value = resp.json().await.unwrap();
            access = v["access_token"].as_str().unwrap().to_string();
            refresh = v["refresh_token"].as_str().unwrap().to_string();
        }
    }
    (statuses, access, refresh)
}

fn refresh_rate_events(gw: &Gateway) -> Vec<Value> {
    anomalies(gw)
        .into_iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("refresh_rate"))
        })
        .collect()
}

async fn tokens_of(gw: &Gateway) -> (String, String) {
    let v: Value = gw
        .login_json("alice", ALICE_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    )
}

/// A session refreshed far more often than its access TTL explains (a stolen refresh token
/// replayed beside the real client, or a client that loses its access cookie): under
/// `revoke`, the refresh that goes over `refresh_rate_max` ends the session everywhere, with
/// its access tokens; counted across instances by the store, so it holds on Redis too.
async fn refresh_rate_under_revoke_ends_the_session(store: StoreUnderTest) {
    let gw = store
        .start(
            GatewayConfig::new()
                .set("anomaly", "refresh_rate", "\"revoke\"")
                .set("anomaly", "refresh_rate_max", "3"),
        )
        .await;
    // Session A stays within the limit; session B goes over it.
    let (_, a_refresh) = tokens_of(&gw).await;
    let (statuses, _, a_last) = refresh_times(&gw, &a_refresh, 2).await;
    assert_eq!(statuses, [200, 200]);
    let (b_access0, b_refresh) = tokens_of(&gw).await;
    let (statuses, b_access, b_last) = refresh_times(&gw, &b_refresh, 3).await;
    assert_eq!(statuses, [200, 200, 200], "within the limit");
    assert!(
        refresh_rate_events(&gw).is_empty(),
        "no anomaly within the limit"
    );
    assert_eq!(gw.access_status(&b_access).await, 200, "the session works");
    let over = gw.refresh_json(&b_last).await;
    assert_eq!(
        over.status(),
        401,
        "the fourth refresh within one access TTL"
    );
    gw.refused_within(
        &b_access,
        std::time::Duration::from_secs(2),
        "revoked session",
    )
    .await;
    assert_eq!(gw.access_status(&b_access0).await, 401);
    let events = refresh_rate_events(&gw);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("policy revoke")
    );
    assert!(
        gw.audit_events()
            .iter()
            .any(|e| e["event"] == "session_revoked" && e["reason"] == "refresh_rate"),
        "the revocation is audited"
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric(
            &m,
            "sessiongate_anomalies_total",
            &[("signal", "refresh_rate"), ("action", "revoke")]
        ),
        1.0,
        "{m}"
    );
    // Session A was within the limit all along: its third refresh goes through.
    assert_eq!(gw.refresh_json(&a_last).await.status(), 200);
}

crate::for_both_stores!(refresh_rate_under_revoke_ends_the_session);

#[tokio::test]
async fn refresh_rate_under_log_is_audited_and_under_reauth_refused_without_ending_the_session() {
    let gw = Gateway::start(GatewayConfig::new().set("anomaly", "refresh_rate_max", "2")).await;
    // The default policy is log: every refresh goes on, each one over the limit audited.
    let (_, refresh) = tokens_of(&gw).await;
    let (statuses, access, _) = refresh_times(&gw, &refresh, 4).await;
    assert_eq!(statuses, [200, 200, 200, 200]);
    assert_eq!(gw.access_status(&access).await, 200);
    assert_eq!(
        refresh_rate_events(&gw).len(),
        2,
        "the third and the fourth"
    );

    let gw = Gateway::start(
        GatewayConfig::new()
            .set("anomaly", "refresh_rate", "\"reauth\"")
            .set("anomaly", "refresh_rate_max", "2"),
    )
    .await;
    let (_, refresh) = tokens_of(&gw).await;
    let (statuses, access, last) = refresh_times(&gw, &refresh, 2).await;
    assert_eq!(statuses, [200, 200]);
    // The third is refused, and so is the same token retried: sign in again.
    assert_eq!(gw.refresh_json(&last).await.status(), 401);
    assert_eq!(gw.refresh_json(&last).await.status(), 401, "a retry");
    // The session itself was not ended: its access token still works until it expires.
    assert_eq!(gw.access_status(&access).await, 200);
    assert!(
        !gw.audit_events()
            .iter()
            .any(|e| e["event"] == "session_revoked"),
        "reauth ends no session"
    );
}
