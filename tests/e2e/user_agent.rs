//! The user-agent binding of a session (`[anomaly] user_agent_change`, default `revoke`): what
//! is bound at login is what is compared on every request and at refresh, and it is the device
//! the user agent names, not its exact text.
//!
//! Attacks and defects covered:
//! - a user agent over the 512 bytes the gateway keeps was bound cut but compared whole, so its
//!   owner's session was revoked at the first request (513 bytes, 600, 8 KiB; exactly 512 stays
//!   whole) — at login, on requests, at refresh and in the sessions list alike;
//! - a user agent with bytes outside ASCII (obs-text, RFC 9110 §5.5) was bound as "no user
//!   agent", so a stolen cookie replayed without a `User-Agent` passed the check;
//! - two `User-Agent` headers, which the gateway and the app could each read differently;
//! - a routine browser update (Chrome, Firefox, Safari and Edge on Windows, macOS, Linux,
//!   Android and iOS) ended every session of that browser under the default policy;
//! - a stolen cookie replayed from another browser family, operating system or device class
//!   (phone, tablet, desktop), or with no user agent, must still be noticed, and the configured
//!   policy applies (`revoke`, `reauth`, `log`), on requests and at refresh;
//! - non-browser clients (curl, libraries, bots, apps, unreadable strings): a version bump is no
//!   change, any other edit is;
//! - tokens of an earlier release (`uah`, the exact user agent, no `uad`) after the upgrade:
//!   valid from the same browser, compared exactly as before, bound to the device at their
//!   first refresh; and the `uah` still minted is the one earlier releases compute.

use hmac::{KeyInit, Mac};
use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::harness::*;

/// A user agent as a client sends it: `None` sends no `User-Agent` header at all.
type Ua<'a> = Option<&'a [u8]>;

fn ua(s: &str) -> Ua<'_> {
    Some(s.as_bytes())
}

fn with_ua(req: reqwest::RequestBuilder, ua: Ua) -> reqwest::RequestBuilder {
    match ua {
        Some(bytes) => req.header(
            "user-agent",
            HeaderValue::from_bytes(bytes).expect("a user agent a client can send"),
        ),
        None => req,
    }
}

async fn login(gw: &Gateway, user: &str, password: &str, ua: Ua<'_>) -> Session {
    let body = form_urlencode(&[("username", user), ("password", password)]);
    let req = gw
        .post("/.auth/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let resp = with_ua(req, ua).send().await.expect("POST /.auth/login");
    assert_eq!(resp.status(), 303, "login of {user} with user agent {ua:?}");
    Session::from_response_headers(resp.headers()).expect("login sets both session cookies")
}

async fn alice(gw: &Gateway, ua: Ua<'_>) -> Session {
    login(gw, "alice", ALICE_PASSWORD, ua).await
}

/// `GET path` as an API client with this `Cookie` header and user agent.
async fn get(gw: &Gateway, path: &str, cookie: &str, ua: Ua<'_>) -> reqwest::Response {
    let req = gw
        .get(path)
        .header("cookie", cookie)
        .header("accept", "application/json");
    with_ua(req, ua).send().await.expect("request")
}

/// Whether `GET path` with the session's access token reaches the app as alice.
async fn reaches_app(gw: &Gateway, path: &str, s: &Session, ua: Ua<'_>) -> bool {
    let resp = get(gw, path, &s.access_only(), ua).await;
    resp.status() == 200 && Echo::from(resp).await.header("x-auth-user") == Some("alice")
}

async fn refresh(gw: &Gateway, s: &Session, ua: Ua<'_>) -> reqwest::Response {
    let req = gw.post("/.auth/refresh").header("cookie", s.refresh_only());
    with_ua(req, ua).send().await.expect("POST /.auth/refresh")
}

/// The current session's entry in `GET /.auth/sessions` (JSON).
async fn current_entry(gw: &Gateway, s: &Session, ua: Ua<'_>) -> Value {
    let resp = get(gw, "/.auth/sessions", &s.access_only(), ua).await;
    assert_eq!(resp.status(), 200, "the sessions list");
    let list: Value = resp.json().await.unwrap();
    list["sessions"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["current"] == true).cloned())
        .unwrap_or_else(|| panic!("no current session in {list}"))
}

fn anomalies(gw: &Gateway) -> Vec<Value> {
    gw.audit_events()
        .into_iter()
        .filter(|e| e["event"] == "anomaly")
        .collect()
}

/// Audit lines are written in order: once this logout's line is there, any anomaly raised
/// before it is too.
async fn settle_audit(gw: &Gateway, s: &Session, ua: Ua<'_>) {
    let req = gw.post("/.auth/logout").header("cookie", s.cookie_header());
    let out = with_ua(req, ua).send().await.unwrap();
    assert!(out.status().is_success(), "logout: {}", out.status());
    gw.wait_for_audit("logout").await;
}

/// A Firefox user agent padded with an extension-like comment to exactly `len` bytes.
fn long_ua(len: usize) -> String {
    let base = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 Ext/";
    let mut s = base.to_string();
    let mut i = 0u32;
    while s.len() < len {
        s.push(char::from(b'a' + (i % 26) as u8));
        i += 1;
    }
    s
}

async fn long_user_agents_are_bound_as_they_are_compared(store: StoreUnderTest) {
    let gw = store.start(GatewayConfig::new()).await;
    let mut failures = Vec::new();
    let mut last = None;
    for len in [512usize, 513, 600, 8 * 1024] {
        let full = long_ua(len);
        let sent = ua(&full);
        let mut s = alice(&gw, sent).await;
        if !reaches_app(&gw, &format!("/private/long-{len}"), &s, sent).await {
            failures.push(format!(
                "a {len}-byte user agent: its own session is refused at the first request"
            ));
            continue;
        }
        let r = refresh(&gw, &s, sent).await;
        if r.status() != 200 {
            failures.push(format!(
                "a {len}-byte user agent: refresh answered {}",
                r.status()
            ));
            continue;
        }
        s.update(r.headers());
        if !reaches_app(&gw, &format!("/private/long-{len}-refreshed"), &s, sent).await {
            failures.push(format!("a {len}-byte user agent: refused after a refresh"));
        }
        if len > 512 {
            // Only the first 512 bytes count: a tail that differs is the same user agent.
            let other_tail = format!("{}-another-tail", &full[..512]);
            if !reaches_app(&gw, "/private/long-tail", &s, ua(&other_tail)).await {
                failures.push(format!(
                    "a {len}-byte user agent whose tail past 512 bytes differs is refused"
                ));
            }
        }
        last = Some((s, full));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The sessions list shows what was bound: the first 512 bytes, for every length.
    let (s, full) = last.unwrap();
    let entry = current_entry(&gw, &s, ua(&full)).await;
    assert_eq!(
        entry["user_agent"].as_str(),
        Some(&full[..512]),
        "the sessions list shows the user agent as kept (first 512 bytes): {entry}"
    );
    assert_eq!(entry["device"], "Firefox on Linux", "{entry}");
    settle_audit(&gw, &s, ua(&full)).await;
    assert!(
        anomalies(&gw).is_empty(),
        "long user agents raised anomalies: {:?}",
        anomalies(&gw)
    );
}

#[tokio::test]
async fn user_agents_outside_ascii_are_bound_as_sent_not_as_none() {
    let gw = Gateway::start(GatewayConfig::new()).await;
    // obs-text: a Latin-1 byte, as an old client or a misconfigured app sends it.
    let latin1: &[u8] =
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 Caf\xe9";
    let shown =
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 Caf\u{fffd}";

    // The stolen cookie replayed without a User-Agent, and with a plain ASCII one: both are
    // another client than the one that signed in.
    for (what, replay) in [
        ("no User-Agent", None),
        ("an empty User-Agent", Some(&b""[..])),
        ("a curl User-Agent", ua("curl/8.5.0")),
    ] {
        let victim = alice(&gw, Some(latin1)).await;
        assert!(reaches_app(&gw, "/private/own", &victim, Some(latin1)).await);
        let stolen = get(&gw, "/private/stolen", &victim.access_only(), replay).await;
        assert_eq!(
            stolen.status(),
            401,
            "a session bound to an obs-text user agent, replayed with {what}"
        );
        assert!(
            !reaches_app(&gw, "/private/after", &victim, Some(latin1)).await,
            "{what}: revoke ends the session for its owner too"
        );
    }
    gw.assert_upstream_never_saw("/private/stolen").await;

    // Over HTTP/1.1 and HTTP/2 alike, the same bytes are the same user agent.
    let s = alice(&gw, Some(latin1)).await;
    let h1 = gw
        .client_h1
        .get(gw.url("/private/h1"))
        .header("cookie", s.access_only())
        .header("user-agent", HeaderValue::from_bytes(latin1).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        h1.status(),
        200,
        "the same obs-text user agent over HTTP/1.1"
    );
    assert!(reaches_app(&gw, "/private/h2", &s, Some(latin1)).await);
    let entry = current_entry(&gw, &s, Some(latin1)).await;
    assert_eq!(entry["user_agent"].as_str(), Some(shown), "{entry}");
    assert_eq!(entry["device"], "Firefox on Linux", "{entry}");
    let page = gw
        .get("/.auth/sessions")
        .header("cookie", s.access_only())
        .header("user-agent", HeaderValue::from_bytes(latin1).unwrap())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Gecko/20100101 Firefox/128.0 Caf\u{fffd}"),
        "the sessions page shows the user agent as kept"
    );

    // UTF-8 is text like any other: kept as sent, and an edit of it is a change.
    let utf8 = "MyApp/2.0 (Zürich; 東京)";
    let s = alice(&gw, ua(utf8)).await;
    let entry = current_entry(&gw, &s, ua(utf8)).await;
    assert_eq!(entry["user_agent"].as_str(), Some(utf8), "{entry}");
    assert_eq!(
        get(
            &gw,
            "/private/ascii",
            &s.access_only(),
            ua("MyApp/2.0 (Zurich)")
        )
        .await
        .status(),
        401,
        "another spelling of a UTF-8 user agent"
    );
}

#[tokio::test]
async fn two_user_agent_headers_are_refused() {
    let gw = Gateway::start(GatewayConfig::new()).await;
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let s = alice(&gw, ua(firefox)).await;
    let cookie = s.access_only();
    for (what, pair) in [
        ("the same value twice", [firefox, firefox]),
        ("two browsers", [firefox, "curl/8.5.0"]),
        ("an empty one and a real one", ["", firefox]),
    ] {
        // HTTP/1.1, byte for byte, in two spellings of the name.
        let raw = gw
            .raw_get(
                "/private/two-h1",
                &[
                    ("Cookie", cookie.as_str()),
                    ("User-Agent", pair[0]),
                    ("user-agent", pair[1]),
                ],
            )
            .await;
        assert_eq!(raw.status, 400, "HTTP/1.1 with {what}: {}", raw.body_text());
        // HTTP/2.
        let h2 = gw
            .get("/private/two-h2")
            .header("cookie", cookie.as_str())
            .header("user-agent", pair[0])
            .header("user-agent", pair[1])
            .send()
            .await
            .unwrap();
        assert_eq!(h2.version(), reqwest::Version::HTTP_2);
        assert_eq!(h2.status(), 400, "HTTP/2 with {what}");
    }
    // On a public path and on the gateway's own endpoints too: nothing reads either one.
    let me = gw
        .raw_get(
            "/.auth/me",
            &[
                ("Cookie", cookie.as_str()),
                ("User-Agent", firefox),
                ("User-Agent", firefox),
            ],
        )
        .await;
    assert_eq!(me.status, 400, "/.auth/me with two User-Agent headers");
    gw.assert_upstream_never_saw("/private/two-").await;
    // One is fine, and the session was never judged by the refused requests.
    let one = gw
        .raw_get(
            "/private/one",
            &[("Cookie", cookie.as_str()), ("User-Agent", firefox)],
        )
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(Echo::from_raw(&one).header("x-auth-user"), Some("alice"));
}

/// Real user agents with the browser version as `{v}` and the system version as `{o}`.
const BROWSERS: &[(&str, &str)] = &[
    (
        "Chrome on Windows",
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        "Chrome on macOS",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        "Chrome on Linux",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{o}.0 Safari/537.36",
    ),
    (
        "Chrome on Android",
        "Mozilla/5.0 (Linux; Android {o}; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    ),
    (
        "Chrome on iOS",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.6478.54 Mobile/15E148 Safari/604.1",
    ),
    (
        "Firefox on Windows",
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox on macOS",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.{o}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox on Linux",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox on Android",
        "Mozilla/5.0 (Android {o}; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0",
    ),
    (
        "Firefox on iOS",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/{v}.0 Mobile/15E148 Safari/605.1.15",
    ),
    (
        "Safari on macOS",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.4 Safari/605.1.15",
    ),
    (
        "Safari on iOS",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "Safari on iOS",
        "Mozilla/5.0 (iPad; CPU OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "Edge on Windows",
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.2592.56",
    ),
    (
        "Edge on macOS",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    ),
    (
        "Edge on Linux",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{o}.0",
    ),
    (
        "Edge on Android",
        "Mozilla/5.0 (Linux; Android {o}; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36 EdgA/{v}.0.2592.80",
    ),
    (
        "Edge on iOS",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/{v}.0.2592.56 Version/{o}.0 Mobile/15E148 Safari/604.1",
    ),
];

fn version(template: &str, v: u32, o: u32) -> String {
    template
        .replace("{v}", &v.to_string())
        .replace("{o}", &o.to_string())
}

#[tokio::test]
async fn browser_updates_keep_the_session() {
    // The default policy, user_agent_change = "revoke": an update that counted as a change
    // would end the session.
    let gw = Gateway::start(GatewayConfig::new()).await;
    let mut failures = Vec::new();
    let mut last = None;
    for (label, template) in BROWSERS {
        let at_login = version(template, 126, 10);
        let mut s = alice(&gw, ua(&at_login)).await;
        // The browser updates itself: a new version, then the system's update too.
        let browser_update = version(template, 127, 10);
        if !reaches_app(&gw, "/private/updated", &s, ua(&browser_update)).await {
            failures.push(format!("{label}: 126 -> 127 ended the session"));
            continue;
        }
        let system_update = version(template, 131, 11);
        let r = refresh(&gw, &s, ua(&system_update)).await;
        if r.status() != 200 {
            failures.push(format!(
                "{label}: refresh after a browser and system update answered {}",
                r.status()
            ));
            continue;
        }
        s.update(r.headers());
        if !reaches_app(&gw, "/private/refreshed", &s, ua(&system_update)).await {
            failures.push(format!("{label}: the refreshed session was refused"));
        }
        let entry = current_entry(&gw, &s, ua(&system_update)).await;
        if entry["device"] != *label || entry["user_agent"] != at_login.as_str() {
            failures.push(format!("{label}: the sessions list shows {entry}"));
        }
        last = Some((s, system_update));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (s, last_ua) = last.unwrap();
    settle_audit(&gw, &s, ua(&last_ua)).await;
    assert!(
        anomalies(&gw).is_empty(),
        "browser updates raised anomalies: {:?}",
        anomalies(&gw)
    );
}

#[tokio::test]
async fn non_browser_clients_keep_their_session_across_version_bumps_only() {
    let gw = Gateway::start(GatewayConfig::new()).await;
    for (before, after) in [
        (Some("curl/8.5.0"), Some("curl/8.10.1")),
        (
            Some("python-requests/2.31.0"),
            Some("python-requests/2.32.3"),
        ),
        (Some("Go-http-client/1.1"), Some("Go-http-client/2.0")),
        (
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            Some("Mozilla/5.0 (compatible; Googlebot/2.2; +http://www.google.com/bot.html)"),
        ),
        (
            Some("MyApp/3.2.1 (iPhone; iOS 17.5; Scale/3.00)"),
            Some("MyApp/3.3 (iPhone; iOS 18.0; Scale/3.00)"),
        ),
        (Some("x"), Some("x")),
        (Some(""), None),
        (None, None),
    ] {
        let (b, a) = (before.map(str::as_bytes), after.map(str::as_bytes));
        let mut s = alice(&gw, b).await;
        assert!(
            reaches_app(&gw, "/private/bumped", &s, a).await,
            "{before:?} -> {after:?} ended the session"
        );
        let r = refresh(&gw, &s, a).await;
        assert_eq!(r.status(), 200, "refresh, {before:?} -> {after:?}");
        s.update(r.headers());
        assert!(reaches_app(&gw, "/private/bumped-refreshed", &s, a).await);
    }
    for (before, after) in [
        ("curl/8.5.0", "Wget/1.21.4"),
        ("curl/8.5.0", "curl/8.5.0 (custom)"),
        ("python-requests/2.31.0", "python-httpx/0.27.0"),
        ("x", "y"),
    ] {
        let s = alice(&gw, ua(before)).await;
        let r = get(&gw, "/private/edited", &s.access_only(), ua(after)).await;
        assert_eq!(r.status(), 401, "{before:?} -> {after:?} is another client");
        assert!(
            !reaches_app(&gw, "/private/edited-owner", &s, ua(before)).await,
            "{before:?} -> {after:?}: revoked for its owner too"
        );
    }
}

/// A login's user agent and a request's that must count as another device.
const CHANGES: &[(&str, &str, &str)] = &[
    (
        "another family on one system",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "a browser built on the same engine",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    ),
    (
        "another system, same browser and version",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
    (
        "desktop to phone",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "phone to tablet",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "Android phone to Android tablet",
        "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
    (
        "a phone's \"desktop site\" mode",
        "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
    (
        "a browser to curl",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "curl/8.5.0",
    ),
    (
        "a browser to no user agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "",
    ),
];

fn as_sent(s: &str) -> Ua<'_> {
    (!s.is_empty()).then_some(s.as_bytes())
}

#[tokio::test]
async fn another_family_system_or_class_is_a_change_under_every_policy() {
    for policy in ["revoke", "reauth", "log"] {
        let gw = Gateway::start(
            GatewayConfig::new().extra(&format!("[anomaly]\nuser_agent_change = \"{policy}\"\n")),
        )
        .await;
        let mut failures = Vec::new();
        for (what, own, other) in CHANGES {
            let (own, other) = (as_sent(own), as_sent(other));
            let s = alice(&gw, own).await;
            let before = anomalies(&gw).len();
            let replayed = reaches_app(&gw, "/private/replayed", &s, other).await;
            let from_refresh = refresh(&gw, &s, other).await.status();
            let still_owner = reaches_app(&gw, "/private/owner", &s, own).await;
            let want = match policy {
                // Refused, and over for its owner too.
                "revoke" => (false, 401, false),
                // Refused from there; valid where it came from.
                "reauth" => (false, 401, true),
                // Passes, and is audited.
                _ => (true, 200, true),
            };
            let got = (replayed, from_refresh.as_u16(), still_owner);
            if got != want {
                failures.push(format!(
                    "{what}: (request passes, refresh status, owner keeps it) = {got:?}, \
                     want {want:?}"
                ));
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while anomalies(&gw).len() == before && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            match anomalies(&gw).last() {
                Some(e) if anomalies(&gw).len() > before => {
                    let reason = e["reason"].as_str().unwrap_or("");
                    if e["user"] != "alice" || !reason.contains("user_agent") {
                        failures.push(format!("{what}: the audit line is {e}"));
                    }
                }
                _ => failures.push(format!("{what}: no anomaly audited")),
            }
        }
        assert!(
            failures.is_empty(),
            "user_agent_change = {policy:?}:\n{}",
            failures.join("\n")
        );
    }
}

/// The fingerprint every release derives from the access secret, and earlier releases'
/// `uah`: `base64url(HMAC(HMAC(secret, "sessiongate anomaly fingerprint"), "ua " + ua)[..9])`.
fn earlier_release_uah(access_key: &[u8], user_agent: &str) -> String {
    use base64::Engine as _;
    let mac = |key: &[u8], msg: &[u8]| {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    };
    let key = mac(access_key, b"sessiongate anomaly fingerprint");
    let h = mac(&key, format!("ua {user_agent}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h[..9])
}

/// `s` as an earlier release issued it: the same claims, `uah` alone (no `uad`), signed with
/// the deployment's keys.
fn as_earlier_release(gw: &Gateway, s: &Session) -> Session {
    let strip = |token: &str, secret: &str| {
        let mut claims = jwt_claims(token);
        claims.as_object_mut().unwrap().remove("uad");
        forge_hs256(token, &claims, &hmac_key_for(secret, token))
    };
    Session {
        access: strip(&s.access, &gw.access_secret),
        refresh: strip(&s.refresh, &gw.refresh_secret),
    }
}

#[tokio::test]
async fn tokens_of_an_earlier_release_are_compared_exactly_until_refreshed() {
    let gw = Gateway::start(GatewayConfig::new()).await;
    let firefox_128 = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let firefox_129 = "Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0";
    let access_key = |s: &Session| hmac_key_for(&gw.access_secret, &s.access);

    // What is minted: `uad`, and the `uah` an instance of an earlier release checks.
    let s = alice(&gw, ua(firefox_128)).await;
    for token in [&s.access, &s.refresh] {
        let c = jwt_claims(token);
        assert_eq!(
            c["uah"].as_str(),
            Some(earlier_release_uah(&access_key(&s), firefox_128).as_str()),
            "an earlier release's instance could not check this token: {c}"
        );
        assert!(c["uad"].is_string(), "no device binding: {c}");
    }

    // An earlier release's token, used after a browser update: compared exactly, as it was
    // bound, so it is a change (the token names no device to compare with).
    let old = as_earlier_release(&gw, &alice(&gw, ua(firefox_128)).await);
    assert!(reaches_app(&gw, "/private/old-same", &old, ua(firefox_128)).await);
    assert_eq!(
        get(
            &gw,
            "/private/old-updated",
            &old.access_only(),
            ua(firefox_129)
        )
        .await
        .status(),
        401,
        "an earlier release's token after a browser update"
    );

    // From the same browser it works, and its refresh binds the session to the device.
    let old = as_earlier_release(&gw, &alice(&gw, ua(firefox_128)).await);
    assert!(reaches_app(&gw, "/private/old", &old, ua(firefox_128)).await);
    let r = refresh(&gw, &old, ua(firefox_128)).await;
    assert_eq!(r.status(), 200, "refresh of an earlier release's token");
    let mut new = Session::from_response_headers(r.headers()).expect("new tokens");
    for token in [&new.access, &new.refresh] {
        assert!(
            jwt_claims(token)["uad"].is_string(),
            "a refreshed session of an earlier release is not bound to its device: {}",
            jwt_claims(token)
        );
    }
    assert!(
        reaches_app(&gw, "/private/upgraded-updated", &new, ua(firefox_129)).await,
        "after its refresh, a browser update keeps the session"
    );
    // The `uah` minted at a refresh follows the browser, for earlier instances.
    let r = refresh(&gw, &new, ua(firefox_129)).await;
    assert_eq!(r.status(), 200);
    new.update(r.headers());
    assert_eq!(
        jwt_claims(&new.access)["uah"].as_str(),
        Some(earlier_release_uah(&access_key(&new), firefox_129).as_str())
    );

    // A long user agent: earlier releases bound its first 512 characters, and that is what
    // is compared now, so their tokens stop being refused at the first request.
    let long = long_ua(700);
    let old = as_earlier_release(&gw, &alice(&gw, ua(&long)).await);
    assert_eq!(
        jwt_claims(&old.access)["uah"].as_str(),
        Some(earlier_release_uah(&access_key(&old), &long[..512]).as_str())
    );
    assert!(
        reaches_app(&gw, "/private/old-long", &old, ua(&long)).await,
        "an earlier release's token of a 700-byte user agent"
    );
}

crate::for_both_stores!(long_user_agents_are_bound_as_they_are_compared);
