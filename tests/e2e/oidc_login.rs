//! Sign-in through a real OpenID provider (panva's `oidc-provider`, run by node over HTTPS;
//! `support/oidc.rs`): the authorization-code flow from `/.auth/oidc/start` through the
//! provider to `/.auth/oidc/callback`, on the memory and the Redis stores, and every way it
//! must refuse. Defended here:
//!
//! - identity confusion and token leaks: the app gets `X-Auth-User` from the configured claim
//!   (`sub`, `email`) and `X-Auth-Roles` from `groups`; the browser gets only the gateway's own
//!   cookies; no provider token (ID token, access or refresh token) and no flow cookie reaches
//!   the browser's jar, a response of the gateway, the app, or Redis in clear;
//! - open redirect through a sign-in (CWE-601): `return_to` survives the provider's round trip
//!   when it is local, ends at `/` when off-site (`https://evil.example/`, `//evil`, `/\evil`,
//!   …), and never travels to the provider;
//! - parallel tabs that overwrite each other's flow, and a browser that piles up flows: each
//!   tab finds its own flow whatever the order; a fifth flow drops the oldest, whose callback
//!   gets the clear page;
//! - login CSRF / session injection and code injection at the callback (RFC 6749 §10.12,
//!   RFC 9700 §4.5, §4.2.4): another, a missing, an empty or a repeated `state`, a changed,
//!   missing or repeated `code`, another tab's `state` with this code, the callback replayed
//!   after success; mix-up (RFC 9207 §2.4): `iss` of another issuer, another spelling of ours,
//!   or none although the provider advertises it — each a 400 page with "Start again", no
//!   session cookie, and no redirect (so no loop);
//! - forged or misdirected ID tokens (OpenID Connect Core 1.0 §3.1.3.7): a bad signature,
//!   another `aud`, `iss`, `nonce` or `azp`, an extra audience, expired, issued in the future
//!   or too long ago, an `alg` the provider does not advertise (HS256 keyed with the client
//!   secret), a key the provider never published, no `nonce`, a `sub` other than userinfo's, a
//!   wrong `at_hash` — a 502 page, audit `login_failed`, no session;
//! - a provider's key rotation locking users out: an unknown `kid` makes the gateway fetch the
//!   JWKS again;
//! - a provider outage taking the site down: `start` answers a 502 page at once (no redirect
//!   into the void) while existing sessions keep working and refreshing;
//! - reflected markup through the provider's `error` parameter (XSS), an error page that loops;
//! - admission rules bypassed: `allowed_domains` (another domain, an unverified email, look-alike
//!   domains) and `allowed_groups` (none of them, a look-alike) — a 403 "Access denied" page,
//!   audit `login_denied`, no session;
//! - the login page: one provider without a users file goes straight to the provider (but not
//!   after a sign-out: "You are signed out" and no redirect), a users file adds the form that
//!   still signs its users in, two providers give two buttons that each sign in through their
//!   own provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::cookie::CookieStore as _;
use reqwest::header::{HeaderMap, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::harness::*;

const CLIENT: &str = "gateway";
const SECRET: &str = "gateway-client-secret-0123456789abcdefghijkl";
const PROVIDER: &str = "corp";
/// The provider table's keys: the provider releases `groups` only for its scope.
const KEYS: &str = "display_name = \"Corp SSO\"\n\
                    scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n\
                    roles_claim = \"groups\"\n";
const ALICE: (&str, &str) = ("alice", "alice-pw");
const FLOW_COOKIE_PREFIX: &str = "__Secure-sg-oidc-";

fn alice() -> IdpUser {
    IdpUser::new("sub-alice", "alice", "alice-pw").groups(&["staff", "admins"])
}

// ---------------------------------------------------------------- the site

/// The gateway registered at `idp` as [`CLIENT`] (with the sign-out URI of the login page),
/// and these users.
async fn register(idp: &OidcProvider, gw: &Gateway, users: Vec<IdpUser>) {
    let mut c = IdpClient::for_gateway(gw, CLIENT, SECRET);
    c.post_logout_redirect_uris
        .push(format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?signed_out=1"));
    let mut s = IdpSetup::new(vec![c], users);
    s.trust_ca = Some(gw.ca_file());
    idp.configure(&s).await;
}

/// A provider, and a gateway on `store` whose provider `corp` (with `keys`) it is.
async fn site_on(
    store: &StoreUnderTest,
    cfg: GatewayConfig,
    keys: &str,
    users: Vec<IdpUser>,
) -> (OidcProvider, Gateway) {
    let idp = OidcProvider::launch().await;
    let cfg = cfg.oidc_provider_with(&idp, PROVIDER, CLIENT, SECRET, keys);
    let gw = store.start(cfg).await;
    register(&idp, &gw, users).await;
    (idp, gw)
}

/// [`site_on`] the memory store with the harness's default config.
async fn site(keys: &str, users: Vec<IdpUser>) -> (OidcProvider, Gateway) {
    let store = StoreUnderTest::memory().await;
    site_on(&store, GatewayConfig::new(), keys, users).await
}

// ---------------------------------------------------------------- the browser

/// A browser: a cookie jar the test can read, `Accept: text/html` on every request (as a
/// navigation sends it), redirects not followed, the gateway's and the providers' CAs trusted.
struct Browser {
    client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    fn new(gw: &Gateway, idps: &[&OidcProvider]) -> Browser {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(gw.pki.ca_der.clone()).unwrap();
        for idp in idps {
            roots
                .add(CertificateDer::from_pem_file(idp.ca_file()).unwrap())
                .unwrap();
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .cookie_provider(jar.clone())
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(PUBLIC_HOST, gw.https)
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Browser { client, jar }
    }

    /// The names of the cookies this browser would send to `path` on the gateway.
    fn cookie_names(&self, path: &str) -> Vec<String> {
        let url = reqwest::Url::parse(&format!("{DEFAULT_PUBLIC_ORIGIN}{path}")).unwrap();
        let header = self.jar.cookies(&url);
        let text = header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        text.split(';')
            .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim().to_string()))
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The flow cookies it holds.
    fn flow_cookies(&self) -> Vec<String> {
        self.cookie_names("/.auth/oidc/callback")
            .into_iter()
            .filter(|n| n.starts_with(FLOW_COOKIE_PREFIX))
            .collect()
    }
}

/// One response, read whole.
#[derive(Debug)]
struct Answer {
    url: String,
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// `Location`, resolved against the request's URL.
    fn location(&self) -> Option<String> {
        let l = self.headers.get("location")?.to_str().ok()?;
        Some(
            reqwest::Url::parse(&self.url)
                .ok()?
                .join(l)
                .ok()?
                .to_string(),
        )
    }

    /// Whether it sets a gateway session cookie (with a value that is not a removal).
    fn sets_session(&self) -> bool {
        set_cookies(&self.headers).iter().any(|c| {
            (c.name == ACCESS_COOKIE || c.name == REFRESH_COOKIE)
                && !c.value.is_empty()
                && c.max_age() != Some(0)
        })
    }

    /// Every header as `name: value` lines, and the body.
    fn text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        s.push('\n');
        s.push_str(&self.body);
        s
    }
}

async fn get(b: &Browser, url: &str) -> Answer {
    let resp = b
        .client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    Answer {
        url: url.to_string(),
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// `/.auth/me` in this browser, as a script asks it: status and JSON.
async fn me(b: &Browser) -> (u16, Value) {
    let resp = b
        .client
        .get(format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/me"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What the app echoed for `path` requested in this browser.
async fn app(b: &Browser, path: &str) -> Echo {
    let resp = b
        .client
        .get(format!("{DEFAULT_PUBLIC_ORIGIN}{path}"))
        .send()
        .await
        .unwrap();
    Echo::from(resp).await
}

// ---------------------------------------------------------------- the flow

fn start_url(query: &str) -> String {
    format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/oidc/start?{query}")
}

fn at_callback(u: &str) -> bool {
    u.starts_with(OIDC_CALLBACK_URI)
}

/// Start a flow with `query` and walk the provider (logging in if it asks) up to its
/// redirect back to the callback, which is returned, not requested.
async fn to_callback(b: &Browser, query: &str, login: (&str, &str)) -> String {
    let hops = follow(
        &b.client,
        &start_url(query),
        Some(login),
        Some(&at_callback),
    )
    .await;
    hops.stopped_at
        .clone()
        .unwrap_or_else(|| panic!("the walk did not reach the callback: {hops:#?}"))
}

/// A whole sign-in in `b`: start, provider, callback. The callback's answer.
async fn sign_in(b: &Browser, query: &str, login: (&str, &str)) -> Answer {
    let cb = to_callback(b, query, login).await;
    get(b, &cb).await
}

/// A query parameter of `url`.
fn param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The callback URL with this query instead of its own.
fn callback_with(query: &str) -> String {
    format!("{OIDC_CALLBACK_URI}?{query}")
}

/// A refusal page: `status`, HTML, "Start again" and `words`, no redirect, no session cookie,
/// and the browser is not signed in.
async fn assert_refusal_page(b: &Browser, a: &Answer, status: u16, words: &[&str], what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text());
    assert!(
        a.headers.get("location").is_none(),
        "{what}: a refusal must not redirect (a loop): {:?}",
        a.headers
    );
    let ct = a
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(ct.starts_with("text/html"), "{what}: content-type {ct:?}");
    assert!(a.body.contains("Start again"), "{what}: {}", a.body);
    assert!(
        a.body.contains("href=\"/.auth/login?signed_out=1"),
        "{what}: \"Start again\" goes to the login page without signing in by itself: {}",
        a.body
    );
    for w in words {
        assert!(
            a.body.contains(w),
            "{what}: {w:?} not on the page: {}",
            a.body
        );
    }
    assert!(!a.sets_session(), "{what}: a session cookie was set");
    assert_eq!(me(b).await.0, 401, "{what}: the browser is signed in");
}

// ---------------------------------------------------------------- what must not leak

/// Every JWT-shaped run (`eyJ….….…`) in `text`, decoded: `(header, claims)`.
fn jwts_in(text: &str) -> Vec<(Value, Value)> {
    let decode = |s: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        let run: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let parts: Vec<&str> = run.split('.').collect();
        if parts.len() >= 3
            && let (Some(h), Some(c)) = (decode(parts[0]), decode(parts[1]))
        {
            out.push((h, c));
        }
        rest = &rest[i + run.len().max(3)..];
    }
    out
}

/// The provider's signing key ids.
async fn kids(idp: &OidcProvider) -> Vec<String> {
    idp.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

/// No JWT the provider issued or signed in `text`.
fn assert_no_provider_jwt(text: &str, idp: &OidcProvider, kids: &[String], what: &str) {
    for (h, c) in jwts_in(text) {
        assert_ne!(
            c["iss"],
            idp.issuer(),
            "{what}: a provider token leaked: {c}"
        );
        assert!(
            !h["kid"]
                .as_str()
                .is_some_and(|k| kids.iter().any(|x| x == k)),
            "{what}: a token signed by the provider leaked: {h} {c}"
        );
    }
}

/// Runs of 40 or more base64url characters (an opaque token's shape) in `text`.
fn opaque_runs(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|r| r.len() >= 40)
        .map(str::to_string)
        .collect()
}

fn audit_of(gw: &Gateway, event: &str) -> Vec<Value> {
    gw.audit_events()
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

/// Wait (up to 10 s) until the audit file holds `n` events `event`; they.
async fn audit_count(gw: &Gateway, event: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = audit_of(gw, event);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {event} events expected, {} within 10 s:\n{}",
            got.len(),
            gw.audit_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- sign-in

crate::for_both_stores!(
    sign_in_through_the_provider_gives_the_app_the_identity_and_the_browser_only_gateway_cookies
);

/// A sign-in through the provider, once with `user_claim = "sub"` (the default) and once with
/// `"email"`: the start sends the browser to the provider with a sealed, `Secure`, `HttpOnly`,
/// `SameSite=Lax` flow cookie on `/.auth/oidc/` and an authorization request with PKCE S256,
/// `state`, `nonce`, the exact redirect URI and no `return_to`; the callback answers `303` to
/// `return_to` with the gateway's own two cookies and the flow cookie's removal, nothing else;
/// the app gets the identity and roles and never a flow cookie, a code, a `state` or a
/// provider token; `/.auth/me` and audit `login_ok` name the user and the provider; Redis holds
/// the session with no provider token readable.
async fn sign_in_through_the_provider_gives_the_app_the_identity_and_the_browser_only_gateway_cookies(
    store: StoreUnderTest,
) {
    for (user_claim, user) in [("sub", "sub-alice"), ("email", "alice@example.test")] {
        let keys = format!("{KEYS}user_claim = \"{user_claim}\"\n");
        let (idp, gw) = site_on(&store, GatewayConfig::new(), &keys, vec![alice()]).await;
        let kids = kids(&idp).await;
        let b = Browser::new(&gw, &[&idp]);
        let what = format!("user_claim = {user_claim}");

        let start = get(
            &b,
            &start_url("provider=corp&return_to=%2Fapp%2Fhome%3Fx%3D1"),
        )
        .await;
        assert_eq!(start.status, 302, "{what}: {}", start.text());
        let to_idp = start.location().unwrap();
        assert_authorization_request(&to_idp, &idp, &what);
        let flow = assert_one_flow_cookie(&start, &what);

        let hops = follow(&b.client, &to_idp, Some(ALICE), Some(&at_callback)).await;
        let cb = hops.stopped_at.clone().expect("at the callback");
        assert_eq!(param(&cb, "state"), param(&to_idp, "state"), "{what}");
        let code = param(&cb, "code").expect("a code");
        let state = param(&cb, "state").unwrap();

        let done = get(&b, &cb).await;
        assert_eq!(done.status, 303, "{what}: {}", done.text());
        assert_eq!(
            done.location().as_deref(),
            Some("https://localhost/app/home?x=1")
        );
        assert_only_gateway_cookies(&done, &flow, &gw, user, &what);
        assert!(b.flow_cookies().is_empty(), "{what}: the flow cookie stays");
        for name in b.cookie_names("/app/home") {
            assert!(
                name == ACCESS_COOKIE || name == REFRESH_COOKIE,
                "{what}: the browser holds a cookie {name} for the app"
            );
        }
        assert!(
            jwts_in(&done.text()).len() >= 2,
            "the scan finds the gateway's own tokens"
        );
        for a in [&start, &done] {
            assert_no_provider_jwt(&a.text(), &idp, &kids, &what);
        }
        let headers: String = done
            .headers
            .iter()
            .filter(|(k, _)| *k != "set-cookie")
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or_default()))
            .collect();
        assert!(
            opaque_runs(&headers).is_empty() && opaque_runs(&done.body).is_empty(),
            "{what}: a token-shaped value in the callback's answer: {}",
            done.text()
        );

        let echo = app(&b, "/app/home?x=1").await;
        assert_eq!(echo.header("x-auth-user"), Some(user), "{what}");
        assert_eq!(echo.header("x-auth-roles"), Some("staff,admins"), "{what}");
        assert!(echo.header("x-auth-session").is_some(), "{what}");
        let seen = serde_json::to_string(&echo.headers).unwrap();
        for secret in [code.as_str(), state.as_str(), FLOW_COOKIE_PREFIX, SECRET] {
            assert!(
                !seen.contains(secret),
                "{what}: the app saw {secret:?}: {seen}"
            );
        }
        assert_no_provider_jwt(&seen, &idp, &kids, &what);
        for e in gw.journal().await {
            assert!(!e.path.starts_with("/.auth/"), "{what}: the app got {e:?}");
            assert!(
                !e.query.contains(&code) && !e.query.contains(&state),
                "{what}: {e:?}"
            );
        }

        let (status, who) = me(&b).await;
        assert_eq!(status, 200, "{what}: {who}");
        assert_eq!(who["sub"], user, "{what}");
        assert_eq!(who["roles"], json!(["staff", "admins"]), "{what}");
        let ok = gw.wait_for_audit("login_ok").await;
        assert_eq!(ok["provider"], PROVIDER, "{what}: {ok}");
        assert_eq!(ok["user"], user, "{what}: {ok}");
        assert!(
            !all_logs(&gw).contains(&code),
            "{what}: the code is in a log"
        );
        if let Some(redis) = &store.redis {
            assert_redis_holds_no_provider_token(redis, &idp, &kids, user, &what);
        }
    }
}

/// The authorization request: code flow for our client, the exact redirect URI, PKCE S256,
/// fresh `state` and `nonce`, the configured scopes, and no `return_to`.
fn assert_authorization_request(url: &str, idp: &OidcProvider, what: &str) {
    assert!(
        url.starts_with(&format!("{}/", idp.issuer())),
        "{what}: {url}"
    );
    let p = |n: &str| param(url, n).unwrap_or_default();
    assert_eq!(p("response_type"), "code", "{what}: {url}");
    assert_eq!(p("client_id"), CLIENT, "{what}");
    assert_eq!(p("redirect_uri"), OIDC_CALLBACK_URI, "{what}");
    assert_eq!(p("code_challenge_method"), "S256", "{what}");
    assert!(p("code_challenge").len() >= 43, "{what}: {url}");
    assert!(
        p("state").len() >= 16 && p("nonce").len() >= 16,
        "{what}: {url}"
    );
    assert_ne!(p("state"), p("nonce"), "{what}");
    let scopes: Vec<String> = p("scope").split(' ').map(str::to_string).collect();
    for s in ["openid", "email", "profile", "groups"] {
        assert!(scopes.iter().any(|x| x == s), "{what}: scope {scopes:?}");
    }
    assert!(
        !url.contains("app%2Fhome") && !url.contains("/app/home"),
        "{what}: return_to travels to the provider: {url}"
    );
}

/// `start` set exactly one cookie, the flow's, hardened; its name.
fn assert_one_flow_cookie(start: &Answer, what: &str) -> String {
    let set = set_cookies(&start.headers);
    assert_eq!(set.len(), 1, "{what}: {set:?}");
    let c = &set[0];
    assert!(c.name.starts_with(FLOW_COOKIE_PREFIX), "{what}: {}", c.raw);
    assert!(c.has("secure") && c.has("httponly"), "{what}: {}", c.raw);
    assert_eq!(c.attr("path"), Some("/.auth/oidc/"), "{what}: {}", c.raw);
    assert_eq!(
        c.attr("samesite").map(str::to_ascii_lowercase).as_deref(),
        Some("lax"),
        "{what}: {}",
        c.raw
    );
    assert_eq!(c.max_age(), Some(600), "{what}: {}", c.raw);
    assert!(c.attr("domain").is_none(), "{what}: {}", c.raw);
    assert!(
        jwts_in(&c.value).is_empty(),
        "{what}: the flow cookie is sealed"
    );
    c.name.clone()
}

/// The callback set the two session cookies (the gateway's own HS256 tokens for `user`) and
/// removed the flow cookie `flow`; nothing else.
fn assert_only_gateway_cookies(done: &Answer, flow: &str, gw: &Gateway, user: &str, what: &str) {
    let set = set_cookies(&done.headers);
    let session = Session::from_response_headers(&done.headers)
        .unwrap_or_else(|| panic!("{what}: no session cookies: {}", done.text()));
    for c in &set {
        if c.name == ACCESS_COOKIE || c.name == REFRESH_COOKIE {
            continue;
        }
        assert_eq!(c.name, flow, "{what}: an unexpected cookie: {}", c.raw);
        assert!(
            c.value.is_empty() && c.max_age() == Some(0),
            "{what}: the flow cookie is not removed: {}",
            c.raw
        );
    }
    assert_eq!(set.len(), 3, "{what}: {set:?}");
    for token in [&session.access, &session.refresh] {
        assert_eq!(jwt_header(token)["alg"], "HS256", "{what}");
        assert_eq!(jwt_claims(token)["iss"], gw.public_origin(), "{what}");
    }
    assert_eq!(jwt_claims(&session.access)["sub"], user, "{what}");
    assert_eq!(
        jwt_claims(&session.access)["roles"],
        json!(["staff", "admins"])
    );
}

/// Redis has the user's session, and neither its keys nor its append-only file show a
/// provider token or a flow cookie.
fn assert_redis_holds_no_provider_token(
    redis: &RedisServer,
    idp: &OidcProvider,
    kids: &[String],
    user: &str,
    what: &str,
) {
    let keys = redis.keys();
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("sg:{{{user}}}:s:"))),
        "{what}: no session of {user} in Redis: {keys:?}"
    );
    for (path, bytes) in redis.files() {
        let text = String::from_utf8_lossy(&bytes);
        assert_no_provider_jwt(&text, idp, kids, &format!("{what}: {}", path.display()));
        assert!(!text.contains(FLOW_COOKIE_PREFIX), "{what}");
    }
}

// ---------------------------------------------------------------- return_to

/// `return_to` survives the round trip through the provider (kept in the sealed flow cookie,
/// validated at the start): a local path with its query, an absolute URL on the public origin
/// (as its path), an encoded path; a credential parameter is dropped from it. Off-site and
/// hostile targets end at `/`: another origin, scheme-relative `//evil`, `/\evil`, encoded
/// slashes, `javascript:`, plain `http` on our host, userinfo tricks, a gateway path, nothing.
#[tokio::test]
async fn return_to_is_kept_through_the_provider_and_an_off_site_one_ends_at_root() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let cases: &[(&str, &str)] = &[
        ("/app/page?x=1&y=2", "/app/page?x=1&y=2"),
        ("https://localhost/app/abs?y=2", "/app/abs?y=2"),
        ("/app/caf%C3%A9", "/app/caf%C3%A9"),
        ("/app/t?access_token=abc&keep=1", "/app/t?keep=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("http://localhost/app/x", "/"),
        ("https://localhost@evil.example/", "/"),
        ("https://localhost.evil.example/", "/"),
        ("/.auth/me", "/"),
        ("", "/"),
    ];
    for (i, (raw, want)) in cases.iter().enumerate() {
        let query = if raw.is_empty() {
            "provider=corp".to_string()
        } else {
            format!("provider=corp&return_to={}", pct(raw))
        };
        let start = get(&b, &start_url(&query)).await;
        assert_eq!(start.status, 302, "return_to={raw:?}: {}", start.text());
        let to_idp = start.location().unwrap();
        assert!(
            !to_idp.contains("evil"),
            "return_to={raw:?} travels to the provider: {to_idp}"
        );
        let hops = follow(&b.client, &to_idp, Some(ALICE), None).await;
        let back = hops
            .hops
            .iter()
            .find(|h| at_callback(&h.url))
            .unwrap_or_else(|| panic!("return_to={raw:?}: no callback: {hops:#?}"));
        assert_eq!(back.status, 303, "return_to={raw:?}: {hops:#?}");
        assert_eq!(
            back.location.as_deref(),
            Some(format!("https://localhost{want}").as_str()),
            "return_to={raw:?}"
        );
        assert_eq!(hops.status, 200, "return_to={raw:?}: {}", hops.body);
        assert!(hops.url.starts_with("https://localhost/"), "{}", hops.url);
        audit_count(&gw, "login_ok", i + 1).await;
    }
}

/// With `session.same_site = "strict"` the callback cannot redirect (the browser would not
/// send Strict cookies on the rest of the provider's cross-site navigation): it answers a
/// page that moves on to `return_to` by itself — the target escaped in it, the cookies set.
#[tokio::test]
async fn with_strict_cookies_the_callback_answers_a_page_that_moves_on_to_return_to() {
    let store = StoreUnderTest::memory().await;
    let cfg = GatewayConfig::new().set("session", "same_site", "\"strict\"");
    let (idp, gw) = site_on(&store, cfg, KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let done = sign_in(&b, "return_to=%2Fapp%2Fq%3Fa%3D1%26b%3D%22x%22", ALICE).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.headers.get("location").is_none());
    assert!(done.sets_session(), "{}", done.text());
    assert!(done.body.contains("url=/app/q?a=1&amp;b="), "{}", done.body);
    assert!(!done.body.contains("\"x\""), "{}", done.body);
    let echo = app(&b, "/app/q?a=1").await;
    assert_eq!(echo.header("x-auth-user"), Some("sub-alice"));
}

// ---------------------------------------------------------------- parallel tabs

/// Start a flow in `b` and walk up to the provider's login form (a tab waiting for the user);
/// the form's URL.
async fn open_tab(b: &Browser, return_to: &str) -> String {
    let query = format!("provider=corp&return_to={}", pct(return_to));
    let hops = follow(&b.client, &start_url(&query), None, Some(&at_callback)).await;
    assert!(
        hops.is_login_form(),
        "tab {return_to}: not at the login form: {hops:#?}"
    );
    hops.url
}

/// In the tab at `form`: log in (if the provider still asks) and come back through the
/// callback; the callback's answer.
async fn finish_tab(b: &Browser, form: &str) -> Answer {
    let hops = follow(&b.client, form, Some(ALICE), Some(&at_callback)).await;
    let cb = hops
        .stopped_at
        .clone()
        .unwrap_or_else(|| panic!("tab {form}: no callback: {hops:#?}"));
    get(b, &cb).await
}

/// Two tabs start a sign-in each; the second is completed first, then the first: each finds
/// its own flow cookie (its own `state`, nonce and verifier) and signs in with its own
/// `return_to`, and each flow cookie is removed by its own callback only.
#[tokio::test]
async fn two_tabs_completed_in_reverse_order_both_sign_in() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let one = open_tab(&b, "/app/one").await;
    let two = open_tab(&b, "/app/two").await;
    assert_eq!(b.flow_cookies().len(), 2, "{:?}", b.flow_cookies());

    let second = finish_tab(&b, &two).await;
    assert_eq!(second.status, 303, "{}", second.text());
    assert_eq!(
        second.location().as_deref(),
        Some("https://localhost/app/two")
    );
    assert!(second.sets_session());
    assert_eq!(b.flow_cookies().len(), 1, "tab one's flow must stay");

    let first = finish_tab(&b, &one).await;
    assert_eq!(first.status, 303, "{}", first.text());
    assert_eq!(
        first.location().as_deref(),
        Some("https://localhost/app/one")
    );
    assert!(first.sets_session());
    assert!(b.flow_cookies().is_empty());
    let sessions: Vec<String> = audit_count(&gw, "login_ok", 2)
        .await
        .iter()
        .map(|e| e["session"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(sessions[0], sessions[1], "two sign-ins, two sessions");
    assert_eq!(
        app(&b, "/app/one").await.header("x-auth-user"),
        Some("sub-alice")
    );
}

/// Five tabs start a sign-in: at most four flows are kept, so the first (oldest) tab's
/// callback gets the clear "not started in this browser" page (and no session), and the other
/// four sign in, in any order.
#[tokio::test]
async fn five_tabs_the_oldest_fails_with_the_clear_page_and_the_other_four_sign_in() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let mut tabs = Vec::new();
    for i in 1..=5 {
        tabs.push(open_tab(&b, &format!("/app/tab{i}")).await);
        assert_eq!(b.flow_cookies().len(), i.min(4), "after tab {i}");
    }
    let oldest = finish_tab(&b, &tabs[0]).await;
    assert_refusal_page(
        &b,
        &oldest,
        400,
        &["was not started in this browser"],
        "the oldest tab",
    )
    .await;
    assert_eq!(
        b.flow_cookies().len(),
        4,
        "the refusal removes no other flow"
    );
    for i in [4usize, 1, 3, 2] {
        let done = finish_tab(&b, &tabs[i]).await;
        assert_eq!(done.status, 303, "tab {}: {}", i + 1, done.text());
        assert_eq!(
            done.location(),
            Some(format!("https://localhost/app/tab{}", i + 1))
        );
        assert!(done.sets_session(), "tab {}", i + 1);
    }
    assert!(b.flow_cookies().is_empty(), "{:?}", b.flow_cookies());
    assert_eq!(audit_count(&gw, "login_ok", 4).await.len(), 4);
    let m = metrics(&gw).await;
    assert_eq!(
        metric(
            &m,
            "sessiongate_logins_total",
            &[("outcome", "oidc_no_flow")]
        ),
        1.0
    );
}

// ---------------------------------------------------------------- the callback, altered

/// The callback URL altered before the browser follows it — each a `400` page with "Start
/// again", no session cookie, no redirect: `state` of no flow, removed, empty, repeated (same
/// or another value first), another live tab's `state` with this code (its PKCE verifier does
/// not fit), `iss` of another issuer or another spelling of ours (trailing slash, `http`,
/// upper case), `iss` removed or repeated (the provider advertises RFC 9207), the `code`
/// changed, removed or repeated. Then, after a good sign-in, the same callback again (the
/// flow is gone) in the same browser and in another — refused, and the session it made lives on.
#[tokio::test]
async fn an_altered_or_replayed_callback_gets_a_400_page_and_no_session() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let iss = idp.issuer().to_string();
    for k in 0..altered("c", "s", &iss).len() {
        let cb = to_callback(&b, "return_to=%2Fapp%2Fx", ALICE).await;
        let (code, state) = (param(&cb, "code").unwrap(), param(&cb, "state").unwrap());
        let (what, query) = altered(&code, &state, &iss).swap_remove(k);
        let a = get(&b, &callback_with(&query)).await;
        assert_refusal_page(&b, &a, 400, &["Sign-in could not be completed"], what).await;
    }
    // Another tab's state with this tab's code: the flow opens, the verifier does not fit.
    let other = to_callback(&b, "return_to=%2Fapp%2Fother", ALICE).await;
    let other_state = param(&other, "state").unwrap();
    let cb = to_callback(&b, "return_to=%2Fapp%2Fx", ALICE).await;
    let code = param(&cb, "code").unwrap();
    let swapped = get(
        &b,
        &callback_with(&q(&[
            ("code", &code),
            ("state", &other_state),
            ("iss", &iss),
        ])),
    )
    .await;
    assert_refusal_page(&b, &swapped, 400, &[], "another tab's state").await;
    assert!(audit_of(&gw, "login_ok").is_empty());

    let cb = to_callback(&b, "return_to=%2Fapp%2Fx", ALICE).await;
    let done = get(&b, &cb).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let replay = get(&b, &cb).await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert!(replay.body.contains("Start again") && replay.headers.get("location").is_none());
    assert!(!replay.sets_session(), "{}", replay.text());
    let elsewhere = Browser::new(&gw, &[&idp]);
    let a = get(&elsewhere, &cb).await;
    assert_refusal_page(
        &elsewhere,
        &a,
        400,
        &["not started in this browser"],
        "replayed elsewhere",
    )
    .await;
    assert_eq!(
        me(&b).await.0,
        200,
        "the replay must not end the good session"
    );
    assert_eq!(audit_count(&gw, "login_ok", 1).await.len(), 1);
}

/// The callback's query altered each way, from its real `code`, `state` and `iss`: `(what,
/// query)`.
fn altered(c: &str, s: &str, i: &str) -> Vec<(&'static str, String)> {
    let (no_flow, code2) = (random_secret(), random_secret());
    let (slash, http, upper) = (
        format!("{i}/"),
        i.replace("https:", "http:"),
        i.to_ascii_uppercase(),
    );
    let attacker = "https://attacker.example.test";
    vec![
        (
            "state of no flow",
            q(&[("code", c), ("state", &no_flow), ("iss", i)]),
        ),
        ("state removed", q(&[("code", c), ("iss", i)])),
        ("state empty", q(&[("code", c), ("state", ""), ("iss", i)])),
        (
            "state repeated",
            q(&[("code", c), ("state", s), ("state", s), ("iss", i)]),
        ),
        (
            "state repeated, another first",
            q(&[("code", c), ("state", "x"), ("state", s), ("iss", i)]),
        ),
        (
            "iss of another issuer",
            q(&[("code", c), ("state", s), ("iss", attacker)]),
        ),
        (
            "iss with a trailing slash",
            q(&[("code", c), ("state", s), ("iss", &slash)]),
        ),
        (
            "iss over http",
            q(&[("code", c), ("state", s), ("iss", &http)]),
        ),
        (
            "iss in upper case",
            q(&[("code", c), ("state", s), ("iss", &upper)]),
        ),
        ("iss removed", q(&[("code", c), ("state", s)])),
        (
            "iss repeated",
            q(&[("code", c), ("state", s), ("iss", i), ("iss", i)]),
        ),
        (
            "code changed",
            q(&[("code", &code2), ("state", s), ("iss", i)]),
        ),
        ("code removed", q(&[("state", s), ("iss", i)])),
        (
            "code repeated",
            q(&[("code", c), ("code", c), ("state", s), ("iss", i)]),
        ),
    ]
}

/// A query from pairs, each value encoded.
fn q(pairs: &[(&str, &str)]) -> String {
    form_urlencode(pairs)
}

// ---------------------------------------------------------------- ID tokens, altered

/// Every way the provider's ID token can be wrong (the provider alters it at its token
/// endpoint, `OidcProvider::tamper`) is refused with a `502` page, audit `login_failed` naming
/// the provider, and no session: a bad signature; another `aud`, `iss`, `nonce`; expired;
/// issued an hour ahead or 11 minutes ago; HS256 keyed with the client secret (an `alg` the
/// provider does not advertise); a key the JWKS never had; `azp` of another client; `aud` a
/// list with another audience (with and without `azp`); no `nonce`; a `sub` other than
/// userinfo's; a wrong `at_hash`. Then, untampered, the same browser signs in (the refusals
/// were the token's fault, not the setup's).
#[tokio::test]
async fn every_altered_id_token_is_refused_with_a_502_page_and_no_session() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let now = now_unix();
    let modes: Vec<(&str, Value)> = vec![
        ("bad_signature", json!({"mode": "bad_signature"})),
        ("wrong_aud", json!({"mode": "wrong_aud"})),
        ("wrong_iss", json!({"mode": "wrong_iss"})),
        ("wrong_nonce", json!({"mode": "wrong_nonce"})),
        ("expired", json!({"mode": "expired"})),
        ("future_iat", json!({"mode": "future_iat"})),
        ("hs256", json!({"mode": "hs256"})),
        ("foreign_key", json!({"mode": "foreign_key"})),
        (
            "azp of another client",
            json!({"mode": "claims", "claims": {"azp": "other-client"}}),
        ),
        (
            "aud with another audience",
            json!({"mode": "claims", "claims": {"aud": [CLIENT, "other-client"]}}),
        ),
        (
            "aud with another audience, azp ours",
            json!({"mode": "claims", "claims": {"aud": [CLIENT, "other-client"], "azp": CLIENT}}),
        ),
        (
            "aud of another client only",
            json!({"mode": "claims", "claims": {"aud": ["other-client"]}}),
        ),
        (
            "no nonce",
            json!({"mode": "claims", "claims": {"nonce": null}}),
        ),
        (
            "iat 11 minutes ago",
            json!({"mode": "claims", "claims": {"iat": now - 660, "exp": now + 3600}}),
        ),
        (
            "another sub",
            json!({"mode": "claims", "claims": {"sub": "sub-mallory"}}),
        ),
        (
            "wrong at_hash",
            json!({"mode": "claims", "claims": {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}}),
        ),
    ];
    for (i, (what, tamper)) in modes.iter().enumerate() {
        idp.tamper_with(tamper).await;
        let a = sign_in(&b, "return_to=%2Fapp%2Fx", ALICE).await;
        assert_refusal_page(&b, &a, 502, &["could not be verified"], what).await;
        let failed = audit_count(&gw, "login_failed", i + 1).await;
        assert_eq!(failed[i]["provider"], PROVIDER, "{what}: {}", failed[i]);
    }
    idp.tamper("none").await;
    let done = sign_in(&b, "return_to=%2Fapp%2Fx", ALICE).await;
    assert_eq!(done.status, 303, "untampered: {}", done.text());
    assert_eq!(me(&b).await.1["sub"], "sub-alice");
    assert_eq!(audit_of(&gw, "login_ok").len(), 1);
    let logs = all_logs(&gw);
    assert!(!logs.contains(SECRET), "the client secret is in a log");
}

// ---------------------------------------------------------------- keys

/// The provider rotates its signing key (the old one withdrawn from the JWKS) after a first
/// sign-in: the next sign-in, whose ID token names a `kid` the gateway has not seen, still
/// works because the gateway fetches the JWKS again; the first session is untouched.
#[tokio::test]
async fn after_the_provider_rotates_its_keys_the_next_sign_in_still_works() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let first = Browser::new(&gw, &[&idp]);
    let done = sign_in(&first, "return_to=%2Fapp%2F1", ALICE).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let old = kids(&idp).await;

    idp.rotate_keys(false).await;
    let new = kids(&idp).await;
    assert!(new.iter().all(|k| !old.contains(k)), "{old:?} {new:?}");
    let second = Browser::new(&gw, &[&idp]);
    let done = sign_in(&second, "return_to=%2Fapp%2F2", ALICE).await;
    assert_eq!(done.status, 303, "after the rotation: {}", done.text());
    assert_eq!(me(&second).await.1["sub"], "sub-alice");
    assert_eq!(me(&first).await.0, 200, "the first session survives");
    assert!(
        gw.stderr_shows("fetched the provider's keys again", Duration::from_secs(5))
            .await,
        "{}",
        gw.stderr_plain()
    );
}

// ---------------------------------------------------------------- the provider down

/// The provider goes down (its process killed) between a user's login there and the
/// callback: the callback is refused at once with a `502` page ("cannot be reached"), not a
/// hang (well under 12 s) nor a redirect, audit `login_failed`, no session. The session
/// signed in before keeps working: it reaches the app and refreshes (no provider needed
/// without `recheck_interval`); a password (users-file) login works too.
#[tokio::test]
async fn with_the_provider_down_a_sign_in_gets_a_502_page_and_sessions_keep_working() {
    let (mut idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let done = sign_in(&b, "return_to=%2Fapp%2Fx", ALICE).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let session = Session::from_response_headers(&done.headers).unwrap();
    let late = Browser::new(&gw, &[&idp]);
    let cb = to_callback(&late, "return_to=%2Fapp%2Fy", ALICE).await;

    idp.kill();
    let t = Instant::now();
    let a = get(&late, &cb).await;
    let took = t.elapsed();
    assert_refusal_page(&late, &a, 502, &["cannot be reached"], "the callback").await;
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert_eq!(
        audit_count(&gw, "login_failed", 1).await[0]["provider"],
        PROVIDER
    );

    let echo = app(&b, "/app/still").await;
    assert_eq!(echo.header("x-auth-user"), Some("sub-alice"));
    let resp = gw
        .post("/.auth/refresh")
        .header("cookie", session.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a refresh needs no provider");
    let mut s = session.clone();
    s.update(resp.headers());
    assert_ne!(s.refresh, session.refresh, "the refresh token rotated");
    assert_eq!(gw.access_status(&s.access).await, 200);
    gw.login_alice().await;
}

/// A provider that is down when the gateway first needs it: `/.auth/oidc/start` answers a
/// `502` page ("Sign-in is unavailable") at once — not a redirect, not a hang — and again at
/// once while the gateway backs off; the login page still answers.
#[tokio::test]
async fn a_provider_down_from_the_start_gives_a_502_page_at_once() {
    let (mut idp, gw) = site(KEYS, vec![alice()]).await;
    idp.kill();
    let b = Browser::new(&gw, &[]);
    for attempt in ["first", "second"] {
        let t = Instant::now();
        let a = get(&b, &start_url("provider=corp")).await;
        assert!(
            t.elapsed() < Duration::from_secs(12),
            "{attempt}: {:?}",
            t.elapsed()
        );
        assert_refusal_page(&b, &a, 502, &["Sign-in is unavailable"], attempt).await;
    }
    let page = get(&b, &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login")).await;
    assert_eq!(page.status, 200, "{}", page.text());
}

/// The provider goes down after the gateway has used it once: a new sign-in should get the
/// `502` page at `/.auth/oidc/start` too, rather than a redirect to a provider that is not
/// there (where the browser shows a connection error and no way back). The start asks the
/// provider for its documents unless another request did within 2 s.
#[tokio::test]
async fn after_a_first_sign_in_start_with_the_provider_down_answers_a_502_page() {
    let (mut idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    assert_eq!(sign_in(&b, "return_to=%2Fapp%2Fx", ALICE).await.status, 303);
    idp.kill();
    // Starts within 2 s of the provider's last answer use it without asking again (a flood of
    // starts costs the provider one fetch per 2 s); past that, the start asks.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let other = Browser::new(&gw, &[]);
    let t = Instant::now();
    let a = get(&other, &start_url("provider=corp")).await;
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    assert_refusal_page(&other, &a, 502, &["cannot be reached"], "after discovery").await;
    // And again, now from the failure cooldown: at once.
    let t = Instant::now();
    let a = get(&other, &start_url("provider=corp")).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_refusal_page(&other, &a, 502, &["cannot be reached"], "in the cooldown").await;
}

// ---------------------------------------------------------------- the provider's error

/// `(what, the error parameters, the code the page must name)`.
type ErrorCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// The provider's `error` on the callback (with the real `state` and `iss`): a `403` page that
/// names a protocol error code (`access_denied`, `login_required`, …), audit `login_failed`,
/// no session, no redirect. An error value that is not a plain code (markup, quotes, upper
/// case, too long, empty) shows as "unknown" and is never reflected; `error_description` and
/// `error_uri` are never shown. The error with another `iss` is a 400 (the issuer is checked
/// first).
#[tokio::test]
async fn the_providers_error_gets_a_403_page_and_markup_is_not_reflected() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let iss = idp.issuer().to_string();
    let long = "a".repeat(65);
    let cases: Vec<ErrorCase> = vec![
        (
            "access_denied",
            vec![("error", "access_denied")],
            "access_denied",
        ),
        (
            "login_required",
            vec![("error", "login_required")],
            "login_required",
        ),
        (
            "with a description",
            vec![
                ("error", "access_denied"),
                ("error_description", "<img src=x onerror=alert(1)>"),
                ("error_uri", "https://evil.example/x"),
            ],
            "access_denied",
        ),
        (
            "markup",
            vec![("error", "<script>alert(1)</script>")],
            "unknown",
        ),
        (
            "quotes",
            vec![("error", "x\"onmouseover=\"alert(1)")],
            "unknown",
        ),
        ("upper case", vec![("error", "ACCESS_DENIED")], "unknown"),
        ("too long", vec![("error", long.as_str())], "unknown"),
        ("empty", vec![("error", "")], "unknown"),
    ];
    for (i, (what, extra, shown)) in cases.iter().enumerate() {
        let cb = to_callback(&b, "return_to=%2Fapp%2Fx", ALICE).await;
        let state = param(&cb, "state").unwrap();
        let mut pairs = extra.clone();
        pairs.push(("state", &state));
        pairs.push(("iss", &iss));
        let a = get(&b, &callback_with(&q(&pairs))).await;
        let named = format!("({shown})");
        assert_refusal_page(&b, &a, 403, &["Sign-in did not happen", &named], what).await;
        for bad in [
            "<script",
            "<img",
            "onerror",
            "onmouseover",
            "evil.example",
            "ACCESS_DENIED",
        ] {
            assert!(!a.body.contains(bad), "{what}: {bad} reflected: {}", a.body);
        }
        let failed = audit_count(&gw, "login_failed", i + 1).await;
        assert_eq!(failed[i]["reason"], *shown, "{what}");
        assert_eq!(failed[i]["provider"], PROVIDER, "{what}");
    }
    let cb = to_callback(&b, "return_to=%2Fapp%2Fx", ALICE).await;
    let state = param(&cb, "state").unwrap();
    let a = get(
        &b,
        &callback_with(&q(&[
            ("error", "access_denied"),
            ("state", &state),
            ("iss", "https://attacker.example.test"),
        ])),
    )
    .await;
    assert_refusal_page(&b, &a, 400, &[], "an error from another issuer").await;
    assert!(audit_of(&gw, "login_ok").is_empty());
}

// ---------------------------------------------------------------- admission

/// `allowed_domains = ["example.test"]` and `allowed_groups = ["staff"]`: a user who passes
/// both signs in; each who fails one gets a `403` "Access denied" page, audit `login_denied`
/// naming the provider, and no session — an email of another domain, of a subdomain, of a
/// domain that only ends like ours, an address with two `@`, an unverified email, no email; groups none of which is allowed, none at all, a case variant, the allowed name
/// inside a comma list. An email in upper case and an email without `email_verified` pass.
#[tokio::test]
async fn users_outside_allowed_domains_or_groups_get_an_access_denied_page() {
    let keys =
        format!("{KEYS}allowed_domains = [\"example.test\"]\nallowed_groups = [\"staff\"]\n");
    let user = |login: &str| IdpUser::new(&format!("sub-{login}"), login, "pw").groups(&["staff"]);
    let denied = vec![
        user("mallory").claim("email", json!("mallory@evil.test")),
        user("sub").claim("email", json!("sub@corp.example.test")),
        user("ends").claim("email", json!("ends@notexample.test")),
        user("trick").claim("email", json!("trick@example.test@evil.test")),
        user("eve").claim("email_verified", json!(false)),
        user("noemail").claim("email", Value::Null),
        user("bob").groups(&["contractors"]),
        user("carol").groups(&[]),
        user("dave").groups(&["Staff", "STAFF"]),
        user("erin").groups(&["staff,admins"]),
    ];
    let allowed = vec![
        alice(),
        user("upper").claim("email", json!("Upper@EXAMPLE.TEST")),
        user("unsaid").claim("email_verified", Value::Null),
    ];
    let mut users = denied.clone();
    users.extend(allowed.clone());
    let (idp, gw) = site(&keys, users).await;
    for (i, u) in denied.iter().enumerate() {
        let b = Browser::new(&gw, &[&idp]);
        let a = sign_in(&b, "return_to=%2Fapp%2Fx", (&u.login, &u.password)).await;
        assert_refusal_page(&b, &a, 403, &["Access denied"], &u.login).await;
        let ev = audit_count(&gw, "login_denied", i + 1).await;
        assert_eq!(ev[i]["provider"], PROVIDER, "{}", u.login);
    }
    for u in &allowed {
        let b = Browser::new(&gw, &[&idp]);
        let done = sign_in(&b, "return_to=%2Fapp%2Fx", (&u.login, &u.password)).await;
        assert_eq!(done.status, 303, "{}: {}", u.login, done.text());
        assert_eq!(me(&b).await.1["sub"], u.sub.as_str());
    }
    assert_eq!(audit_of(&gw, "login_ok").len(), allowed.len());
    let j = gw.journal().await;
    assert!(
        j.iter().all(|e| e.path != "/app/x"),
        "a denied user reached the app: {j:?}"
    );
}

// ---------------------------------------------------------------- the login page

/// One provider and no users file: a navigation to a protected page walks to the provider's
/// login form in one go (gateway login page → start → provider), and after the login ends at
/// that page, signed in. A script's request gets `401` (no redirect); the password endpoint
/// answers `404`. `/.auth/login?signed_out=1` says "You are signed out", offers the button and
/// does not redirect (that would sign the user in again at once).
#[tokio::test]
async fn one_provider_without_a_users_file_goes_straight_to_the_provider() {
    let store = StoreUnderTest::memory().await;
    let cfg = GatewayConfig::new().unset("login", "users_file");
    let (idp, gw) = site_on(&store, cfg, KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let hops = follow(&b.client, &gw.url("/app/deep?x=1"), None, None).await;
    assert!(hops.is_login_form(), "{hops:#?}\n{}", hops.body);
    assert!(hops.url.starts_with(idp.issuer()), "{}", hops.url);
    let path: Vec<String> = hops.hops.iter().map(|h| h.url.clone()).collect();
    assert!(
        path[1].starts_with("https://localhost/.auth/login?"),
        "{path:#?}"
    );
    assert!(
        path[2].starts_with("https://localhost/.auth/oidc/start?"),
        "{path:#?}"
    );

    let done = follow(&b.client, &hops.url, Some(ALICE), None).await;
    assert_eq!(done.status, 200, "{done:#?}");
    assert_eq!(done.url, "https://localhost/app/deep?x=1");
    assert_eq!(me(&b).await.1["sub"], "sub-alice");

    let other = Browser::new(&gw, &[&idp]);
    let api = other
        .client
        .get(gw.url("/app/deep"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let login = gw.login_form("alice", ALICE_PASSWORD, "/").await;
    assert_eq!(login.status(), 404, "no users file, no password login");

    let out = get(
        &other,
        &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?signed_out=1"),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.body.contains("You are signed out"), "{}", out.body);
    assert!(out.body.contains("Sign in with Corp SSO"), "{}", out.body);
    assert!(!out.body.contains("name=\"password\""), "{}", out.body);
    assert!(
        other.flow_cookies().is_empty(),
        "a signed-out page starts no flow"
    );
}

/// One provider and a users file: the login page shows the provider's button and the form;
/// the button signs in through the provider (to `return_to`), the form still signs a
/// users-file user in; `signed_out=1` shows the notice and no redirect.
#[tokio::test]
async fn with_a_users_file_the_login_page_offers_the_button_and_the_form() {
    let (idp, gw) = site(KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let page = get(
        &b,
        &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?return_to=%2Fapp%2Fz"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.body.contains("Sign in with Corp SSO"), "{}", page.body);
    let href = "/.auth/oidc/start?provider=corp&amp;return_to=%2Fapp%2Fz";
    assert!(page.body.contains(href), "{}", page.body);
    let forms = html_forms(&page.body);
    let form = forms
        .iter()
        .find(|f| f.action == "/.auth/login")
        .expect("the form");
    assert!(form.fields.iter().any(|(n, _)| n == "password"));
    assert!(
        form.fields
            .iter()
            .any(|(n, v)| n == "return_to" && v == "/app/z")
    );

    let button = gw.url(&href.replace("&amp;", "&"));
    let done = follow(&b.client, &button, Some(ALICE), None).await;
    assert_eq!(done.url, "https://localhost/app/z", "{done:#?}");
    assert_eq!(me(&b).await.1["sub"], "sub-alice");

    let resp = gw.login_form("bob", BOB_PASSWORD, "/app/z").await;
    assert_eq!(resp.status(), 303, "the users-file form still works");
    let s = Session::from_response_headers(resp.headers()).unwrap();
    assert_eq!(jwt_claims(&s.access)["sub"], "bob");
    let ok = audit_count(&gw, "login_ok", 2).await;
    assert_eq!(ok[0]["provider"], PROVIDER);
    assert!(ok[1].get("provider").is_none(), "{}", ok[1]);

    let out = get(
        &b,
        &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?signed_out=1"),
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out.body.contains("You are signed out") && out.body.contains("name=\"password\""));
}

/// Two providers (two real provider processes): the login page shows two buttons and no
/// redirect; each button signs in through its own provider only, as that provider's user;
/// audit `login_ok` names each provider. A start naming no provider (there are two) or an
/// unknown one is a `404` page; `signed_out=1` shows the notice and both buttons.
#[tokio::test]
async fn two_providers_two_buttons_each_signs_in_through_its_own() {
    let (corp, partner) = tokio::join!(OidcProvider::launch(), OidcProvider::launch());
    let pat = IdpUser::new("sub-pat", "pat", "pat-pw").groups(&["partners"]);
    let partner_keys = KEYS.replace("Corp SSO", "Partner ID");
    let cfg = GatewayConfig::new()
        .unset("login", "users_file")
        .oidc_provider_with(&corp, PROVIDER, CLIENT, SECRET, KEYS)
        .oidc_provider_with(&partner, "partner", CLIENT, SECRET, &partner_keys);
    let gw = Gateway::start(cfg).await;
    register(&corp, &gw, vec![alice()]).await;
    register(&partner, &gw, vec![pat]).await;

    let b = Browser::new(&gw, &[&corp, &partner]);
    let page = get(
        &b,
        &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?return_to=%2Fapp%2Fw"),
    )
    .await;
    assert_eq!(
        page.status,
        200,
        "two providers: a choice, not a redirect: {}",
        page.text()
    );
    for (name, shown) in [("corp", "Corp SSO"), ("partner", "Partner ID")] {
        assert!(
            page.body.contains(&format!("Sign in with {shown}")),
            "{}",
            page.body
        );
        assert!(
            page.body.contains(&format!("provider={name}&amp;")),
            "{}",
            page.body
        );
    }
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);

    let walks = [
        (
            &corp,
            &partner,
            "corp",
            ("alice", "alice-pw"),
            "sub-alice",
            "staff,admins",
        ),
        (
            &partner,
            &corp,
            "partner",
            ("pat", "pat-pw"),
            "sub-pat",
            "partners",
        ),
    ];
    for (own, other, name, login, sub, roles) in walks {
        let tab = Browser::new(&gw, &[&corp, &partner]);
        let url = start_url(&format!("provider={name}&return_to=%2Fapp%2Fw"));
        let done = follow(&tab.client, &url, Some(login), None).await;
        assert_eq!(done.url, "https://localhost/app/w", "{name}: {done:#?}");
        assert!(
            done.visited(&format!("{}/", own.issuer())),
            "{name}: {done:#?}"
        );
        assert!(
            !done.visited(&format!("{}/", other.issuer())),
            "{name} went to the other provider"
        );
        let echo = app(&tab, "/app/w").await;
        assert_eq!(echo.header("x-auth-user"), Some(sub), "{name}");
        assert_eq!(echo.header("x-auth-roles"), Some(roles), "{name}");
    }
    let ok = audit_count(&gw, "login_ok", 2).await;
    assert_eq!(ok[0]["provider"], "corp");
    assert_eq!(ok[1]["provider"], "partner");

    for query in ["return_to=%2F", "provider=nobody", "provider=CORP"] {
        let a = get(&b, &start_url(query)).await;
        assert_refusal_page(&b, &a, 404, &["Unknown sign-in provider"], query).await;
    }
    let out = get(
        &b,
        &format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/login?signed_out=1"),
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out.body.contains("You are signed out"));
    assert!(
        out.body.contains("Sign in with Corp SSO") && out.body.contains("Sign in with Partner ID")
    );
}

/// `email_verified` sent as the string `"true"` / `"false"` (AWS Cognito does, in userinfo):
/// the gateway's admission rules read it as the boolean (`src/oidc/claims.rs` says so), so
/// `"true"` signs in and `"false"` gets the `403` "Access denied" page. (Found failing with a
/// `502`: `openidconnect`'s typed userinfo claims took only a boolean until its
/// `accept-string-booleans` feature was turned on.)
#[tokio::test]
async fn email_verified_sent_as_a_string_is_read_as_its_boolean() {
    let keys = format!("{KEYS}allowed_domains = [\"example.test\"]\n");
    let yes = IdpUser::new("sub-yes", "yes", "pw").claim("email_verified", json!("true"));
    let no = IdpUser::new("sub-no", "no", "pw").claim("email_verified", json!("false"));
    let (idp, gw) = site(&keys, vec![yes, no]).await;
    let b = Browser::new(&gw, &[&idp]);
    let a = sign_in(&b, "return_to=%2Fapp%2Fx", ("no", "pw")).await;
    assert_refusal_page(&b, &a, 403, &["Access denied"], "\"false\"").await;
    let b = Browser::new(&gw, &[&idp]);
    let done = sign_in(&b, "return_to=%2Fapp%2Fx", ("yes", "pw")).await;
    assert_eq!(done.status, 303, "\"true\": {}", done.text());
}

/// Step-up through the provider (`[[route]] max_auth_age`): a login older than the route allows
/// goes back to the provider asking it to authenticate again (`prompt=login`, so the
/// provider's own session does not answer for the user), and the gateway session goes on
/// under a new id once the user has.
#[tokio::test]
async fn an_old_login_steps_up_at_the_provider_with_prompt_login_and_the_session_goes_on() {
    let store = StoreUnderTest::memory().await;
    let cfg = GatewayConfig::new().routes(vec![
        Route::public("/public/"),
        Route::protected("/billing/").with(r#"max_auth_age = "2s""#),
    ]);
    let (idp, gw) = site_on(&store, cfg, KEYS, vec![alice()]).await;
    let b = Browser::new(&gw, &[&idp]);
    let done = sign_in(&b, "provider=corp&return_to=%2Fbilling%2Fx", ALICE).await;
    assert_eq!(done.status, 303, "{}", done.text());
    let (_, first) = me(&b).await;
    assert_eq!(
        app(&b, "/billing/x").await.header("x-auth-user"),
        Some("sub-alice")
    );

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let page = format!("{DEFAULT_PUBLIC_ORIGIN}/billing/x");
    let back = b
        .client
        .get(&page)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let login = back.headers()["location"].to_str().unwrap().to_string();
    assert!(login.ends_with("&reauth=1"), "{login}");
    // The login page says why, and its provider button asks for the step-up too.
    let page = get(&b, &format!("{DEFAULT_PUBLIC_ORIGIN}{login}")).await;
    assert!(
        page.body.contains("needs a recent sign-in"),
        "{}",
        page.text()
    );
    let href = page
        .body
        .split("href=\"")
        .skip(1)
        .filter_map(|h| h.split('"').next())
        .find(|h| h.starts_with("/.auth/oidc/start"))
        .expect("a provider button")
        .replace("&amp;", "&");
    assert!(href.ends_with("&reauth=1"), "{href}");
    let start = format!("{DEFAULT_PUBLIC_ORIGIN}{href}");
    let to_idp = get(&b, &start).await.location().expect("to the provider");
    assert_eq!(
        param(&to_idp, "prompt").as_deref(),
        Some("login"),
        "{to_idp}"
    );
    // The provider asks for the password again although its own session is still alive.
    let asked = follow(&b.client, &to_idp, None, Some(&at_callback)).await;
    assert!(
        asked.stopped_at.is_none() && asked.is_login_form(),
        "the provider authenticates the user again: {asked:#?}"
    );
    let hops = follow(&b.client, &to_idp, Some(ALICE), Some(&at_callback)).await;
    let cb = hops.stopped_at.clone().expect("at the callback");
    let again = get(&b, &cb).await;
    assert_eq!(again.status, 303, "{}", again.text());
    let (_, renewed) = me(&b).await;
    assert_ne!(renewed["session"], first["session"], "a new session id");
    assert_eq!(
        app(&b, "/billing/x").await.header("x-auth-user"),
        Some("sub-alice")
    );
    let sessions: Value = b
        .client
        .get(format!("{DEFAULT_PUBLIC_ORIGIN}/.auth/sessions"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sessions["sessions"].as_array().map(Vec::len),
        Some(1),
        "{sessions}"
    );
}
