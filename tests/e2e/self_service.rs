//! Self-service: `GET /.auth/sessions`, `DELETE /.auth/sessions/{handle}` (and its form
//! variant), `POST /.auth/logout-all`, and the gateway's own HTML pages.
//!
//! Attacks covered:
//! - a stolen session the user cannot see or end (the list must show it, ending it must stop
//!   its access *and* refresh tokens at once);
//! - ending someone else's session by guessing or copying its handle (IDOR);
//! - a session id leaking through the list (handles only);
//! - logout-all that leaves another device signed in, or signs out another user;
//! - script injection and third-party loads on the gateway's pages (strict CSP, no external
//!   assets), and unlabelled form fields that assistive technology cannot name.

use serde_json::Value;

use crate::harness::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// A signed-in browser: its cookies and the user agent it always sends (the default anomaly
/// policy revokes a session used from another user agent).
struct Device {
    s: Session,
    ua: &'static str,
}

impl Device {
    async fn login(gw: &Gateway, user: &str, password: &str, ua: &'static str) -> Device {
        let s = gw.login_with(user, password, &[("user-agent", ua)]).await;
        Device { s, ua }
    }

    fn get(&self, gw: &Gateway, path: &str) -> reqwest::RequestBuilder {
        gw.get(path)
            .header("cookie", self.s.cookie_header())
            .header("user-agent", self.ua)
    }

    fn send(&self, gw: &Gateway, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        gw.client
            .request(method, gw.url(path))
            .header("cookie", self.s.cookie_header())
            .header("user-agent", self.ua)
            .header("origin", gw.origin())
            .header("sec-fetch-site", "same-origin")
    }

    async fn handle(&self, gw: &Gateway) -> String {
        let resp = self.get(gw, "/.auth/me").send().await.unwrap();
        assert_eq!(resp.status(), 200, "/.auth/me");
        let me: Value = resp.json().await.unwrap();
        me["session"].as_str().expect("session handle").to_string()
    }

    async fn sessions(&self, gw: &Gateway) -> Vec<Value> {
        let resp = self
            .get(gw, "/.auth/sessions")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET /.auth/sessions");
        let v: Value = resp.json().await.unwrap();
        v["sessions"]
            .as_array()
            .unwrap_or_else(|| panic!("{{\"sessions\": [...]}}: {v}"))
            .clone()
    }

    /// Status of a protected API request and of a refresh with this device's tokens.
    async fn access_and_refresh_status(&self, gw: &Gateway, path: &str) -> (u16, u16) {
        let access = gw
            .get(path)
            .header("cookie", self.s.access_only())
            .header("user-agent", self.ua)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let refresh = gw
            .refresh_with(&self.s.refresh_only(), &[("user-agent", self.ua)])
            .await
            .status()
            .as_u16();
        (access, refresh)
    }
}

async fn sessions_list_shows_each_device_and_marks_the_current_one(store: StoreUnderTest) {
    let gw = store.start(GatewayConfig::new()).await;
    let laptop = Device::login(&gw, "alice", ALICE_PASSWORD, FIREFOX).await;
    let desktop = Device::login(&gw, "alice", ALICE_PASSWORD, CHROME).await;
    let bob = Device::login(&gw, "bob", BOB_PASSWORD, FIREFOX).await;
    let (h_laptop, h_desktop, h_bob) = (
        laptop.handle(&gw).await,
        desktop.handle(&gw).await,
        bob.handle(&gw).await,
    );
    assert_ne!(h_laptop, h_desktop);
    let now = now_unix();

    for (me, mine, other, device, other_device) in [
        (&laptop, &h_laptop, &h_desktop, "Firefox", "Chrome"),
        (&desktop, &h_desktop, &h_laptop, "Chrome", "Firefox"),
    ] {
        let list = me.sessions(&gw).await;
        assert_eq!(list.len(), 2, "alice has two sessions: {list:?}");
        let entry = |h: &str| {
            list.iter()
                .find(|e| e["handle"] == h)
                .unwrap_or_else(|| panic!("session {h} listed: {list:?}"))
                .clone()
        };
        let (cur, oth) = (entry(mine), entry(other));
        assert_eq!(cur["current"], true, "{cur}");
        assert_eq!(oth["current"], false, "{oth}");
        assert!(
            cur["device"].as_str().is_some_and(|d| d.contains(device)),
            "device label of the {device} session: {cur}"
        );
        assert!(
            oth["device"]
                .as_str()
                .is_some_and(|d| d.contains(other_device)),
            "{oth}"
        );
        for e in [&cur, &oth] {
            assert_eq!(e["ip"], "127.0.0.1", "{e}");
            let created = e["created"].as_u64().expect("created");
            let last = e["last_active"].as_u64().expect("last_active");
            let expires = e["expires"].as_u64().expect("expires");
            assert!(created <= last && last <= now + 5, "{e}");
            assert!(created + 60 >= now, "created just now: {e}");
            assert!(expires > now + 6 * 24 * 3600, "refresh_ttl = 7d: {e}");
        }
        assert!(
            list.iter().all(|e| e["handle"] != h_bob.as_str()),
            "bob's session in alice's list: {list:?}"
        );
        let text = serde_json::to_string(&list).unwrap();
        for s in [&laptop.s, &desktop.s] {
            let sid = jwt_claims(&s.access)["sid"].as_str().unwrap().to_string();
            assert!(!text.contains(&sid), "the list reveals a session id");
        }
    }

    let html = laptop.get(&gw, "/.auth/sessions").send().await.unwrap();
    assert_eq!(html.status(), 200);
    let ct = html.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "HTML by default: {ct}");
    let page = html.text().await.unwrap();
    assert!(
        page.contains(&format!("/.auth/sessions/{h_desktop}/revoke")),
        "the page offers to end the other session"
    );
    assert!(
        !page.contains(&format!("/.auth/sessions/{h_laptop}/revoke")),
        "the current session is marked, not offered for revocation"
    );
}

async fn deleting_another_session_ends_it_and_only_it(store: StoreUnderTest) {
    let gw = store.start(GatewayConfig::new()).await;
    let laptop = Device::login(&gw, "alice", ALICE_PASSWORD, FIREFOX).await;
    let stolen = Device::login(&gw, "alice", ALICE_PASSWORD, CHROME).await;
    let phone = Device::login(&gw, "alice", ALICE_PASSWORD, CHROME).await;
    let bob = Device::login(&gw, "bob", BOB_PASSWORD, FIREFOX).await;
    let h_stolen = stolen.handle(&gw).await;
    let h_laptop = laptop.handle(&gw).await;
    let h_phone = phone.handle(&gw).await;

    // Bob cannot end alice's sessions, whatever handle he holds.
    for h in [&h_laptop, &h_stolen] {
        let resp = bob
            .send(
                &gw,
                reqwest::Method::DELETE,
                &format!("/.auth/sessions/{h}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "bob deleting alice's session {h}");
    }
    let resp = laptop
        .send(&gw, reqwest::Method::DELETE, "/.auth/sessions/not-a-handle")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = gw
        .client
        .delete(gw.url(&format!("/.auth/sessions/{h_stolen}")))
        .header("origin", gw.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "DELETE without a session");
    assert_eq!(
        stolen.access_and_refresh_status(&gw, "/private/x").await.0,
        200
    );

    // Alice ends the stolen one from her laptop.
    let resp = laptop
        .send(
            &gw,
            reqwest::Method::DELETE,
            &format!("/.auth/sessions/{h_stolen}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        stolen
            .access_and_refresh_status(&gw, "/private/after")
            .await,
        (401, 401),
        "the deleted session's access and refresh tokens must be refused at once"
    );
    gw.assert_upstream_never_saw("/private/after").await;
    let event = gw.wait_for_audit("session_revoked").await;
    assert_eq!(event["session"], h_stolen.as_str(), "{event}");

    // The form variant, from a browser page.
    let resp = laptop
        .send(
            &gw,
            reqwest::Method::POST,
            &format!("/.auth/sessions/{h_phone}/revoke"),
        )
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/.auth/sessions");
    assert_eq!(
        phone.access_and_refresh_status(&gw, "/private/after").await,
        (401, 401)
    );

    // The rest go on.
    let list = laptop.sessions(&gw).await;
    let handles: Vec<&str> = list.iter().filter_map(|e| e["handle"].as_str()).collect();
    assert_eq!(handles, vec![h_laptop.as_str()], "{list:?}");
    let echo = Echo::from(laptop.get(&gw, "/private/laptop").send().await.unwrap()).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    let echo = Echo::from(bob.get(&gw, "/private/bob").send().await.unwrap()).await;
    assert_eq!(echo.header("x-auth-user"), Some("bob"));
}

async fn logout_all_ends_every_session_of_the_user_and_no_one_elses(store: StoreUnderTest) {
    let gw = store.start(GatewayConfig::new()).await;
    let laptop = Device::login(&gw, "alice", ALICE_PASSWORD, FIREFOX).await;
    let desktop = Device::login(&gw, "alice", ALICE_PASSWORD, CHROME).await;
    let bob = Device::login(&gw, "bob", BOB_PASSWORD, FIREFOX).await;

    let resp = laptop
        .send(&gw, reqwest::Method::POST, "/.auth/logout-all")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(resp.headers(), name).unwrap_or_else(|| {
            panic!(
                "logout-all clears {name}: {:?}",
                set_cookies(resp.headers())
            )
        });
        assert!(
            c.value.is_empty() || c.max_age() == Some(0),
            "{name} is cleared: {}",
            c.raw
        );
    }
    for (what, d) in [("this device", &laptop), ("the other device", &desktop)] {
        assert_eq!(
            d.access_and_refresh_status(&gw, "/private/after").await,
            (401, 401),
            "{what} after logout-all"
        );
    }
    let echo = Echo::from(bob.get(&gw, "/private/bob").send().await.unwrap()).await;
    assert_eq!(
        echo.header("x-auth-user"),
        Some("bob"),
        "bob is not signed out"
    );
    let event = gw.wait_for_audit("logout_all").await;
    assert_eq!(event["user"], "alice", "{event}");

    // From the sessions page's button: back to the login page.
    let again = Device::login(&gw, "alice", ALICE_PASSWORD, FIREFOX).await;
    let resp = again
        .send(&gw, reqwest::Method::POST, "/.auth/logout-all")
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/.auth/login");
    assert_eq!(
        again.access_and_refresh_status(&gw, "/private/after").await,
        (401, 401)
    );
}

// --- the gateway's HTML pages -------------------------------------------------------------

/// Every `<name ...>` start tag (lower-cased) in `html`.
fn tags(html: &str, name: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
            let end = after.find('>').map_or(after.len(), |e| e + 1);
            out.push(format!("{open}{}", &after[..end]));
        }
        rest = &rest[i + open.len()..];
    }
    out
}

/// The value of attribute `name` in a start tag (quoted or not).
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let i = rest.find(name)?;
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        if before.is_some_and(|c| c.is_ascii_whitespace()) {
            let after = after.trim_start();
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start();
                return Some(match v.chars().next() {
                    Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
                    _ => v
                        .split(|c: char| c.is_ascii_whitespace() || c == '>')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                });
            }
            if after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
                return Some(String::new());
            }
        }
        rest = after;
    }
}

/// Strict CSP, no scripts, no external assets, every visible input labelled, every button
/// named.
fn assert_page_is_self_contained_and_accessible(what: &str, csp: Option<&str>, html: &str) {
    let csp = csp.unwrap_or_else(|| panic!("{what}: no Content-Security-Policy header"));
    let directives: Vec<(String, String)> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let (k, v) = d.split_once(' ').unwrap_or((d, ""));
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    assert!(
        directives
            .iter()
            .any(|(k, v)| k == "default-src" && v == "'none'"),
        "{what}: CSP without default-src 'none': {csp}"
    );
    for banned in ["script-src-elem", "script-src-attr"] {
        assert!(
            directives.iter().all(|(k, _)| k != banned),
            "{what}: CSP allows scripts ({banned}): {csp}"
        );
    }
    // One script may run: the gateway's passkey script, named by its hash (no 'self', no
    // 'unsafe-inline', no host).
    let allowed = directives
        .iter()
        .find(|(k, _)| k == "script-src")
        .map(|(_, v)| v.clone());
    assert!(
        !csp.contains("unsafe-eval") && !csp.contains('*') && !csp.contains("http"),
        "{what}: CSP opens a source: {csp}"
    );
    assert!(
        directives
            .iter()
            .any(|(k, v)| k == "frame-ancestors" && v == "'none'"),
        "{what}: the page can be framed (clickjacking): {csp}"
    );
    let lower = html.to_ascii_lowercase();
    let mut rest = html;
    while let Some(at) = rest.find("<script") {
        let tail = &rest[at..];
        assert!(
            tail.starts_with("<script>"),
            "{what}: a <script> element with attributes (a src?)"
        );
        let body = &tail[8..tail.find("</script>").expect("a closed <script>")];
        let hash = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body))
        };
        assert_eq!(
            allowed.as_deref(),
            Some(format!("'sha256-{hash}'").as_str()),
            "{what}: the CSP allows exactly the page's one script, by hash"
        );
        rest = &tail[8..];
    }
    assert!(!lower.contains("javascript:"), "{what}: a javascript: URL");
    for attr_name in ["src", "href", "action", "formaction"] {
        for tag in [
            "img", "link", "script", "iframe", "a", "form", "button", "input", "object",
        ]
        .iter()
        .flat_map(|t| tags(html, t))
        {
            if let Some(v) = attr(&tag, attr_name) {
                assert!(
                    !v.starts_with("http:") && !v.starts_with("https:") && !v.starts_with("//"),
                    "{what}: an external asset or target: {tag}"
                );
            }
        }
    }
    let labels: Vec<String> = tags(html, "label")
        .iter()
        .filter_map(|t| attr(t, "for"))
        .collect();
    let inputs = tags(html, "input");
    for input in &inputs {
        if attr(input, "type").as_deref() == Some("hidden") {
            continue;
        }
        let labelled = attr(input, "id").is_some_and(|id| labels.contains(&id))
            || attr(input, "aria-label").is_some_and(|l| !l.is_empty());
        assert!(labelled, "{what}: an input without a label: {input}");
    }
    let buttons = lower.split("<button").skip(1).map(|b| {
        let tag_end = b.find('>').unwrap_or(b.len());
        let text = &b[tag_end + 1..b.find("</button>").unwrap_or(b.len())];
        (b[..tag_end].to_string(), text.trim().to_string())
    });
    for (tag, text) in buttons {
        assert!(
            !text.is_empty() || tag.contains("aria-label"),
            "{what}: a button without a name: <button{tag}>"
        );
    }
}

#[tokio::test]
async fn gateway_pages_have_a_strict_csp_no_external_assets_and_labelled_inputs() {
    let gw = Gateway::start_default().await;
    let laptop = Device::login(&gw, "alice", ALICE_PASSWORD, FIREFOX).await;
    let _desktop = Device::login(&gw, "alice", ALICE_PASSWORD, CHROME).await;

    let login_page = gw
        .get("/.auth/login?return_to=%2Fprivate%2Fpage")
        .send()
        .await
        .unwrap();
    let failed_login = gw.login_form("alice", "wrong-password", "/").await;
    let sessions_page = laptop
        .get(&gw, "/.auth/sessions")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    for (what, resp, expect_status, expect_inputs) in [
        ("login page", login_page, 200, 2),
        ("failed login page", failed_login, 401, 2),
        ("sessions page", sessions_page, 200, 0),
    ] {
        assert_eq!(resp.status(), expect_status, "{what}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{what}: {ct}");
        let csp = resp
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_string());
        let html = resp.text().await.unwrap();
        assert_page_is_self_contained_and_accessible(what, csp.as_deref(), &html);
        let visible = tags(&html, "input")
            .iter()
            .filter(|t| attr(t, "type").as_deref() != Some("hidden"))
            .count();
        assert!(
            visible >= expect_inputs,
            "{what}: {visible} visible inputs, expected at least {expect_inputs}"
        );
    }
}

#[test]
fn html_helpers_find_tags_and_attributes() {
    let html = "<form action=\"/x\"><LABEL for=u>User</LABEL><input id=\"u\" name=u>\
                <input type='hidden' value=\"a b\"><button aria-label=\"End\"></button></form>";
    let inputs = tags(html, "input");
    assert_eq!(inputs.len(), 2);
    assert_eq!(attr(&inputs[0], "id").as_deref(), Some("u"));
    assert_eq!(attr(&inputs[1], "type").as_deref(), Some("hidden"));
    assert_eq!(attr(&inputs[1], "value").as_deref(), Some("a b"));
    assert_eq!(attr(&tags(html, "label")[0], "for").as_deref(), Some("u"));
    assert_eq!(
        attr(&tags(html, "form")[0], "action").as_deref(),
        Some("/x")
    );
    assert!(attr(&inputs[0], "type").is_none());
}

crate::for_both_stores!(
    sessions_list_shows_each_device_and_marks_the_current_one,
    deleting_another_session_ends_it_and_only_it,
    logout_all_ends_every_session_of_the_user_and_no_one_elses,
);
