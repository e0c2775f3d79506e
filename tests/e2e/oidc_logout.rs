//! Logging out of sessions that came through an OpenID provider, and staying in step with the
//! provider afterwards, against the real provider (`oidc-provider`, `support/oidc.rs`), the real
//! gateway binary and, across instances, a real `redis-server`.
//!
//! Attacks and failures covered:
//! - a logout that ends the gateway session but leaves the provider session alive, so the next
//!   click on "Sign in" signs the user in again without a password (RP-initiated logout: the
//!   browser must reach the provider's end-session endpoint with an `id_token_hint` the
//!   provider verifies, our `client_id` and the registered post-logout URI); a login page that
//!   starts a new sign-in by itself after the logout; the old cookies still working;
//! - an API client's logout turned into a redirect it cannot follow;
//! - a back-channel logout that ends the session only on the instance the provider called
//!   (the others keep honouring its access and refresh tokens), or slowly;
//! - a back-channel logout that ends too much: another user's session, the same user's other
//!   provider session (by `sid`), or the same user's session from another provider (the gateway
//!   user id is the same, the provider is not), or too little (by `sub`: every session of that
//!   user at that provider);
//! - a captured logout token replayed (to the same instance, to another one, or re-signed with
//!   the same `jti`) to sign the user out again and again;
//! - forged or malformed logout tokens accepted: another audience, another issuer, no
//!   back-channel event, a `nonce` (an ID token passed off as a logout token), stale or future
//!   `iat`, past `exp`, no subject, a key the provider does not have, `alg: none`, HS256 with the
//!   client secret, an `at+jwt` access token; and request shapes the endpoint must refuse;
//! - a user deleted or changed at the provider who keeps the gateway session, or the roles it
//!   had, past `oidc.recheck_interval`; and the reverse: a provider outage that signs everyone
//!   out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const CLIENT: &str = "gateway";
const SECRET: &str = "gateway-client-secret-0123456789abcdefghijkl";
const CLIENT_2: &str = "gateway-at-other";
const SECRET_2: &str = "gateway-other-secret-0123456789abcdefghijklm";
/// The post-logout redirect URI the gateway sends (register it at the provider).
const SIGNED_OUT_URI: &str = "https://localhost/.auth/login?signed_out=1";
const BACKCHANNEL: &str = "/.auth/oidc/backchannel-logout";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Where each sign-in returns to (a protected path of the app).
const LANDING: &str = "/app/home";
/// What a browser sends for a form submission's response.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
/// Roles from the provider's `groups`, which it releases only for the `groups` scope.
const GROUPS: &str =
    "scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\nroles_claim = \"groups\"\n";
/// How fast a back-channel logout must be honoured, on every instance.
const WITHIN: Duration = Duration::from_secs(1);

fn alice() -> IdpUser {
    IdpUser::new("sub-alice", "alice", "alice-pw").groups(&["staff"])
}

fn bob() -> IdpUser {
    IdpUser::new("sub-bob", "bob", "bob-pw").groups(&["staff"])
}

const ALICE: Option<(&str, &str)> = Some(("alice", "alice-pw"));
const BOB: Option<(&str, &str)> = Some(("bob", "bob-pw"));

/// The gateway as a client of a provider: the post-logout URI it sends registered, back-channel
/// logout POSTed to `backchannel`.
fn registered(id: &str, secret: &str, backchannel: &Gateway) -> IdpClient {
    let mut c = IdpClient::for_gateway(backchannel, id, secret);
    c.post_logout_redirect_uris = vec![SIGNED_OUT_URI.into()];
    c
}

/// Clients and users at `idp`, which trusts `backchannel`'s CA for its logout POSTs.
async fn configure(
    idp: &OidcProvider,
    client: IdpClient,
    backchannel: &Gateway,
    users: Vec<IdpUser>,
) {
    let mut s = IdpSetup::new(vec![client], users);
    s.trust_ca = Some(backchannel.ca_file());
    idp.configure(&s).await;
}

/// One provider (`corp`, alice and bob) and one gateway using it, back-channel logout to it.
async fn setup(cfg: GatewayConfig) -> (OidcProvider, Gateway) {
    let idp = OidcProvider::launch().await;
    let gw = Gateway::start(cfg.oidc_provider_with(&idp, "corp", CLIENT, SECRET, GROUPS)).await;
    configure(
        &idp,
        registered(CLIENT, SECRET, &gw),
        &gw,
        vec![alice(), bob()],
    )
    .await;
    (idp, gw)
}

/// One provider and two gateway instances (A, B) sharing `redis` and their secrets; the
/// provider's back-channel logout goes to B.
async fn two_instances(redis: &RedisServer) -> (OidcProvider, Gateway, Gateway) {
    let idp = OidcProvider::launch().await;
    let (access, refresh) = (random_secret(), random_secret());
    let cfg = GatewayConfig::new()
        .secrets(&access, &refresh)
        .store(StoreSpec::Redis { url: redis.url() })
        .oidc_provider_with(&idp, "corp", CLIENT, SECRET, GROUPS);
    let (a, b) = tokio::join!(Gateway::start(cfg.clone()), Gateway::start(cfg));
    tokio::join!(
        a.wait_readyz(200, Duration::from_secs(10)),
        b.wait_readyz(200, Duration::from_secs(10))
    );
    configure(
        &idp,
        registered(CLIENT, SECRET, &b),
        &b,
        vec![alice(), bob()],
    )
    .await;
    (idp, a, b)
}

/// Sign in through `provider` in browser `b` (typing `login` if the provider asks for it):
/// the session cookies the callback set (the browser's jar keeps them too).
async fn sign_in(
    gw: &Gateway,
    b: &reqwest::Client,
    provider: &str,
    login: Option<(&str, &str)>,
) -> Session {
    let landing = gw.url(LANDING);
    let at_landing = |u: &str| u == landing;
    let start = gw.url(&format!(
        "/.auth/oidc/start?provider={provider}&return_to={LANDING}"
    ));
    let hops = follow(b, &start, login, Some(&at_landing)).await;
    assert!(
        hops.stopped_at.is_some() && hops.url.starts_with(&gw.url("/.auth/oidc/callback")),
        "sign-in through {provider} did not complete: {} {}\n{:#?}\ngateway stderr:\n{}",
        hops.status,
        hops.body,
        hops.hops,
        gw.stderr_text()
    );
    Session::from_response_headers(&hops.headers).expect("the callback sets both session cookies")
}

/// `POST /.auth/refresh` with `s`'s refresh cookie; `s` takes the new tokens. The status.
async fn refreshed(gw: &Gateway, s: &mut Session) -> u16 {
    let resp = gw.refresh(s).await;
    s.update(resp.headers());
    resp.status().as_u16()
}

/// A protected API request with both of `s`'s cookies (refreshing transparently when the
/// access token expired; `s` takes the new tokens): its status and the app's echo.
async fn app_request(gw: &Gateway, s: &mut Session) -> (u16, Option<Echo>) {
    let resp = gw
        .get("/app/probe")
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET /app/probe");
    s.update(resp.headers());
    let status = resp.status().as_u16();
    if status == 200 {
        (status, Some(Echo::from(resp).await))
    } else {
        (status, None)
    }
}

/// A logout token POSTed as a provider does (form-encoded, no Origin): status and JSON body.
async fn post_logout_token(gw: &Gateway, token: &str) -> (u16, Value) {
    post_backchannel(
        gw,
        "application/x-www-form-urlencoded",
        form_urlencode(&[("logout_token", token)]),
    )
    .await
}

async fn post_backchannel(gw: &Gateway, content_type: &str, body: String) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url(BACKCHANNEL))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST the back-channel logout endpoint");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Poll until `gw` refuses this access token (401) and return how long that took; fails past
/// [`WITHIN`].
async fn refused_within(gw: &Gateway, access: &str, what: &str) -> Duration {
    gw.refused_within(access, WITHIN, what).await
}

/// The audit events named `event`, once there are at least `n` of them (audit lines are
/// written off the request path); fails after 5 s.
async fn audit_events_n(gw: &Gateway, event: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<Value> = gw
            .audit_events()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} {event:?} audit events; audit file:\n{}",
            gw.audit_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count_events(gw: &Gateway, event: &str) -> usize {
    gw.audit_events()
        .iter()
        .filter(|v| v["event"] == event)
        .count()
}

fn query_map(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Both session cookies of a response are cleared.
fn assert_cookies_cleared(headers: &reqwest::header::HeaderMap, what: &str) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let c = set_cookie_named(headers, name)
            .unwrap_or_else(|| panic!("{what}: {name} is not cleared: {headers:?}"));
        assert!(
            c.value.is_empty() || c.max_age() == Some(0),
            "{what}: {name} not cleared: {}",
            c.raw
        );
    }
}

/// A browser's logout: a form POST from our own page.
async fn browser_logout(b: &reqwest::Client, gw: &Gateway) -> reqwest::Response {
    post_form(b, &gw.url("/.auth/logout"), &[])
        .header("accept", BROWSER_ACCEPT)
        .header("origin", gw.origin())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("POST /.auth/logout")
}

/// A browser that sends what browsers send on every request (`Accept: text/html, ...`), so
/// that the gateway takes each of its GETs as a top-level navigation — and would send it on to
/// the provider from the login page if the page did that; else as [`browser`].
fn navigating_browser(gw: &Gateway, idp: &OidcProvider) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.pki.ca_der.clone()).unwrap();
    roots
        .add(CertificateDer::from_pem_file(idp.ca_file()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static(BROWSER_ACCEPT),
    );
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(headers)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .resolve(PUBLIC_HOST, gw.https)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- RP-initiated logout

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). A browser's `POST
/// /.auth/logout` ends the gateway session at once (cookies cleared, the old ones refused,
/// access and refresh) and goes on, `303`, to the provider's end-session endpoint with exactly
/// `id_token_hint` (an ID token the provider's JWKS verifies, for our client and this user),
/// `client_id` and the registered post-logout URI. After the user confirms there, the walk
/// ends at the gateway's login page saying "You are signed out" — and stays there (the same
/// page without `signed_out` would start a sign-in by itself: one provider, no password form).
/// The provider session is over: a new sign-in shows the provider's login form again; the
/// provider's back-channel logout that follows ends nothing more (alice's session from another
/// browser is another provider session). A logout that did not reach the provider would leave
/// the user one click from being signed in again by whoever uses the browser next.
#[tokio::test]
async fn browser_logout_ends_the_provider_session_too_and_lands_on_the_signed_out_page() {
    let (idp, gw) = setup(GatewayConfig::new().unset("login", "users_file")).await;
    let b = navigating_browser(&gw, &idp);
    let s = sign_in(&gw, &b, "corp", ALICE).await;
    let elsewhere = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    assert_eq!(gw.access_status(&s.access).await, 200, "control: signed in");

    let resp = browser_logout(&b, &gw).await;
    assert_eq!(resp.status(), 303, "{:?}", resp.headers());
    assert_cookies_cleared(resp.headers(), "browser logout");
    let to = location(&resp).expect("a Location");
    let url = url::Url::parse(&to).expect("an absolute URL to the provider");
    let end = idp.discovery().await["end_session_endpoint"]
        .as_str()
        .expect("the provider has an end_session_endpoint")
        .to_string();
    let mut bare = url.clone();
    bare.set_query(None);
    assert_eq!(bare.as_str(), end, "to the end-session endpoint: {to}");
    let q = query_map(&url);
    assert_eq!(
        url.query_pairs().count(),
        3,
        "exactly three parameters: {to}"
    );
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT));
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some(SIGNED_OUT_URI)
    );
    let hint = q.get("id_token_hint").expect("an id_token_hint");
    let claims = verify_with_jwks(hint, &idp.jwks().await).expect("the provider's own ID token");
    assert_eq!(claims["iss"], idp.issuer());
    assert!(
        claims["aud"] == CLIENT
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == CLIENT)),
        "aud is our client: {claims}"
    );
    assert_eq!(claims["sub"], "sub-alice");
    // The gateway session is over before the browser even reaches the provider.
    assert_eq!(gw.access_status(&s.access).await, 401, "old access token");
    assert_eq!(gw.refresh(&s).await.status(), 401, "old refresh token");
    let ev = gw.wait_for_audit("logout").await;
    assert_eq!(ev["user"], "sub-alice", "{ev}");

    let page = follow(&b, &to, None, None).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let done = confirm_logout(&b, &page, true, None).await;
    assert_eq!(done.url, SIGNED_OUT_URI, "{done:#?}");
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("You are signed out"), "{}", done.body);
    assert!(
        done.body.contains("/.auth/oidc/start?provider=corp"),
        "the page offers the provider: {}",
        done.body
    );
    assert_eq!(gw.access_status(&s.access).await, 401, "still refused");
    // The provider told the gateway by back channel too, naming that provider session: nothing
    // was left to end, and alice's session from another browser lives on.
    let d = idp.deliveries().await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["uri"], gw.oidc_backchannel_uri());
    assert_eq!(d[0]["outcome"], "success", "{d:?}");
    assert_eq!(d[0]["sid"], claims["sid"], "{d:?}");
    assert_eq!(
        audit_events_n(&gw, "backchannel_logout", 1).await[0]["count"],
        0
    );
    assert_eq!(
        gw.access_status(&elsewhere.access).await,
        200,
        "the other browser"
    );

    // Without `signed_out`, a navigation to the login page goes straight to the provider...
    let login = b.get(gw.url("/.auth/login")).send().await.unwrap();
    assert_eq!(login.status(), 302);
    let start = location(&login).unwrap_or_default();
    assert!(
        start.starts_with("/.auth/oidc/start?provider=corp"),
        "{start}"
    );
    // ...where the provider session is gone: it asks for the password again.
    let again = follow(&b, &gw.url(&start), None, None).await;
    assert!(
        again.is_login_form(),
        "signed in again without a password: {again:#?}"
    );
}

/// An API client's logout (`Accept: application/json`, `*/*`, or none) is `204` with the
/// cookies cleared and no `Location`: it cannot follow a redirect to the provider, and must
/// not be told to. Its session ends all the same; the provider session is left alone (the
/// same browser signs in again without a password). A browser logout of a session that did
/// not come through the provider (a password session; the users file is on too), or with
/// cookies already dead, goes to the gateway's login page, never to the provider with an ID
/// token.
#[tokio::test]
async fn api_logout_answers_204_without_a_redirect_and_other_logouts_stay_at_the_gateway() {
    let (idp, gw) = setup(GatewayConfig::new()).await;
    let b = browser(&gw, &idp);
    let mut dead = Vec::new();
    for accept in [Some("application/json"), Some("*/*"), None] {
        let s = sign_in(&gw, &b, "corp", if dead.is_empty() { ALICE } else { None }).await;
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let resp = gw.logout_with(&s.cookie_header(), &headers).await;
        assert_eq!(resp.status(), 204, "Accept {accept:?}");
        assert_eq!(location(&resp), None, "Accept {accept:?}: no redirect");
        assert_cookies_cleared(resp.headers(), "API logout");
        assert_eq!(gw.access_status(&s.access).await, 401, "Accept {accept:?}");
        assert_eq!(gw.refresh(&s).await.status(), 401, "Accept {accept:?}");
        dead.push(s);
    }
    assert!(
        idp.deliveries().await.is_empty(),
        "the provider was not involved"
    );

    let p = gw.login_alice().await;
    let resp = gw
        .logout_with(&p.cookie_header(), &[("accept", BROWSER_ACCEPT)])
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp).as_deref(),
        Some("/.auth/login"),
        "password session"
    );
    assert_eq!(gw.access_status(&p.access).await, 401);

    let resp = gw
        .logout_with(&dead[0].cookie_header(), &[("accept", BROWSER_ACCEPT)])
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp).as_deref(),
        Some("/.auth/login"),
        "dead cookies"
    );
}

// ---------------------------------------------------------------- back-channel logout

/// The provider ends the user's session (`end_sessions`): its logout token reaches instance B,
/// and instance A — which issued the session and never heard from the provider — refuses the
/// access token within a second and the refresh token too, through the store's revocation
/// feed. Another user's session lives on both. The provider records the delivery as a success;
/// B audits `backchannel_logout` (count 1) and the ended session.
#[tokio::test]
async fn backchannel_logout_at_one_instance_ends_the_session_on_the_other_within_a_second() {
    let redis = RedisServer::start().await;
    let (idp, a, b) = two_instances(&redis).await;
    let mut s = sign_in(&a, &browser(&a, &idp), "corp", ALICE).await;
    let mut other = sign_in(&a, &browser(&a, &idp), "corp", BOB).await;
    assert_eq!(
        b.access_status(&s.access).await,
        200,
        "control: B honours A's session"
    );

    let t0 = Instant::now();
    let ended = idp.end_sessions("sub-alice").await;
    let answered = t0.elapsed();
    assert_eq!(ended["sessions"], 1, "{ended}");
    let took = refused_within(&a, &s.access, "A, after B's back-channel logout").await;
    eprintln!("back-channel logout: provider round trip {answered:?}, then A refused in {took:?}");
    assert_eq!(b.access_status(&s.access).await, 401, "B");
    assert_eq!(refreshed(&a, &mut s).await, 401, "refresh on A");
    assert_eq!(refreshed(&b, &mut s).await, 401, "refresh on B");

    assert_eq!(a.access_status(&other.access).await, 200, "bob on A");
    assert_eq!(b.access_status(&other.access).await, 200, "bob on B");
    assert_eq!(refreshed(&a, &mut other).await, 200, "bob refreshes");

    let d = idp.deliveries().await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["uri"], b.oidc_backchannel_uri());
    assert_eq!(d[0]["client_id"], CLIENT);
    assert_eq!(d[0]["status"], 200, "{d:?}");
    assert_eq!(d[0]["outcome"], "success", "{d:?}");
    let ev = b.wait_for_audit("backchannel_logout").await;
    assert_eq!(
        (&ev["provider"], &ev["count"]),
        (&json!("corp"), &json!(1)),
        "{ev}"
    );
    let revoked = audit_events_n(&b, "session_revoked", 1).await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["user"], "sub-alice");
    assert_eq!(revoked[0]["reason"], "backchannel_logout");
    assert_eq!(
        count_events(&a, "backchannel_logout"),
        0,
        "A was not called"
    );
}

/// The provider sid of the gateway session that browser `b` holds: read from the
/// `id_token_hint` of a browser logout, which ends that one session (the browser does not go on
/// to the provider, so the provider session and its sid stay).
async fn provider_sid(gw: &Gateway, b: &reqwest::Client) -> String {
    let resp = browser_logout(b, gw).await;
    assert_eq!(resp.status(), 303);
    let url = url::Url::parse(&location(&resp).expect("to the provider")).unwrap();
    let hint = query_map(&url)
        .remove("id_token_hint")
        .expect("an id_token_hint");
    jwt_claims(&hint)["sid"]
        .as_str()
        .expect("the ID token has a sid")
        .to_string()
}

/// Logout tokens naming only a `sid`, then only a `sub`, posted to `receiver`; the sessions
/// were issued by `issuer` (the same gateway on the memory store, another instance on Redis).
/// By `sid` (with the `sub`, as providers send it, and alone): exactly the sessions of that
/// provider session end, not the same user's session from another browser. By `sub`: every
/// remaining session of the user at this provider. Bob's lives through both (and is returned).
async fn by_sid_then_by_sub(idp: &OidcProvider, issuer: &Gateway, receiver: &Gateway) -> Session {
    let x = browser(issuer, idp);
    sign_in(issuer, &x, "corp", ALICE).await;
    let sid = provider_sid(issuer, &x).await;
    let elsewhere = sign_in(issuer, &browser(issuer, idp), "corp", ALICE).await;
    let bob = sign_in(issuer, &browser(issuer, idp), "corp", BOB).await;
    let base = count_events(receiver, "backchannel_logout");

    // As providers send it (`sid` and `sub`), then `sid` alone: that provider session only.
    let by_sid = [
        ("by sid and sub", json!({ "sid": sid, "sub": "sub-alice" })),
        ("by sid alone", json!({ "sid": sid, "sub": null })),
    ];
    for (n, (what, claims)) in by_sid.into_iter().enumerate() {
        // The provider session lives on (only the gateway heard of a logout): no password.
        let same_browser = sign_in(issuer, &x, "corp", None).await;
        let t = idp.logout_token(claims).await;
        assert_eq!(post_logout_token(receiver, &t).await.0, 200, "{what}");
        refused_within(issuer, &same_browser.access, what).await;
        assert_eq!(issuer.refresh(&same_browser).await.status(), 401, "{what}");
        let other = issuer.access_status(&elsewhere.access).await;
        assert_eq!(other, 200, "{what}: alice's other provider session");
        assert_eq!(issuer.access_status(&bob.access).await, 200, "{what}: bob");
        let ev = audit_events_n(receiver, "backchannel_logout", base + n + 1).await;
        assert_eq!(ev[base + n]["count"], 1, "{what}: {ev:?}");
    }

    let t = idp
        .logout_token(json!({ "sub": "sub-alice", "sid": null }))
        .await;
    assert_eq!(post_logout_token(receiver, &t).await.0, 200, "by sub");
    refused_within(issuer, &elsewhere.access, "alice's session, by sub").await;
    assert_eq!(issuer.refresh(&elsewhere).await.status(), 401);
    assert_eq!(issuer.access_status(&bob.access).await, 200, "bob");
    let ev = audit_events_n(receiver, "backchannel_logout", base + 3).await;
    assert_eq!(ev[base + 2]["count"], 1, "{ev:?}");
    bob
}

/// [`by_sid_then_by_sub`] across two instances sharing Redis: tokens posted to B end sessions
/// that A issued, on A.
#[tokio::test]
async fn logout_tokens_by_sid_and_by_sub_end_exactly_their_sessions_across_instances() {
    let redis = RedisServer::start().await;
    let (idp, a, b) = two_instances(&redis).await;
    by_sid_then_by_sub(&idp, &a, &b).await;
}

/// [`by_sid_then_by_sub`] on the memory store (one instance), then the provider's own
/// back-channel logout for bob (his two provider sessions, one POST each); and the same token
/// twice: the second is a replay (`400`).
#[tokio::test]
async fn logout_tokens_by_sid_and_by_sub_on_the_memory_store() {
    let (idp, gw) = setup(GatewayConfig::new()).await;
    let bob = by_sid_then_by_sub(&idp, &gw, &gw).await;

    let bob_again = sign_in(&gw, &browser(&gw, &idp), "corp", BOB).await;
    assert_eq!(idp.end_sessions("sub-bob").await["sessions"], 2);
    refused_within(&gw, &bob.access, "bob, by the provider").await;
    refused_within(&gw, &bob_again.access, "bob again, by the provider").await;
    let d = idp.deliveries().await;
    assert_eq!(d.len(), 2, "{d:?}");
    for d in &d {
        assert_eq!(
            (&d["status"], &d["outcome"]),
            (&json!(200), &json!("success")),
            "{d}"
        );
    }

    let t = idp.logout_token(json!({ "sub": "sub-nobody" })).await;
    assert_eq!(post_logout_token(&gw, &t).await.0, 200);
    let (status, body) = post_logout_token(&gw, &t).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
}

/// Two providers configured; alice signs in through each (one gateway user, `sub-alice`, with
/// two sessions) and bob through the first. The first provider's logout — its own
/// back-channel POST, and a crafted `sub` token — ends only its session of alice's; the other
/// provider's session lives on, until that provider's own token ends it. A token signed by
/// the other provider but claiming the first one's issuer is refused (the keys are per
/// issuer).
#[tokio::test]
async fn backchannel_logout_leaves_the_same_users_session_from_another_provider() {
    let (corp, other) = tokio::join!(OidcProvider::launch(), OidcProvider::launch());
    let cfg = GatewayConfig::new()
        .oidc_provider_with(&corp, "corp", CLIENT, SECRET, GROUPS)
        .oidc_provider_with(&other, "other", CLIENT_2, SECRET_2, GROUPS);
    let gw = Gateway::start(cfg).await;
    configure(
        &corp,
        registered(CLIENT, SECRET, &gw),
        &gw,
        vec![alice(), bob()],
    )
    .await;
    configure(
        &other,
        registered(CLIENT_2, SECRET_2, &gw),
        &gw,
        vec![alice()],
    )
    .await;
    let x = browser(&gw, &corp);
    let via_corp = sign_in(&gw, &x, "corp", ALICE).await;
    let xo = browser(&gw, &other);
    let via_other = sign_in(&gw, &xo, "other", ALICE).await;
    let bob = sign_in(&gw, &browser(&gw, &corp), "corp", BOB).await;
    for s in [&via_corp, &via_other] {
        let me = gw.get_with("/.auth/me", &s.access_only()).await;
        let me: Value = me.json().await.unwrap();
        assert_eq!(me["sub"], "sub-alice", "one gateway user: {me}");
    }

    assert_eq!(corp.end_sessions("sub-alice").await["sessions"], 1);
    refused_within(&gw, &via_corp.access, "alice through corp").await;
    assert_eq!(
        gw.access_status(&via_other.access).await,
        200,
        "through other"
    );
    assert_eq!(gw.access_status(&bob.access).await, 200, "bob");
    let t = corp.logout_token(json!({ "sub": "sub-alice" })).await;
    assert_eq!(post_logout_token(&gw, &t).await.0, 200);
    let ev = audit_events_n(&gw, "backchannel_logout", 2).await;
    assert_eq!(
        (&ev[1]["provider"], &ev[1]["count"]),
        (&json!("corp"), &json!(0)),
        "{ev:?}"
    );
    assert_eq!(
        gw.access_status(&via_other.access).await,
        200,
        "through other"
    );

    let forged = other
        .logout_token(json!({ "sub": "sub-alice", "iss": corp.issuer(), "aud": CLIENT }))
        .await;
    assert_eq!(
        post_logout_token(&gw, &forged).await.0,
        400,
        "other's key as corp"
    );
    assert_eq!(
        gw.access_status(&via_other.access).await,
        200,
        "through other"
    );

    let t = other.logout_token(json!({ "sub": "sub-alice" })).await;
    assert_eq!(post_logout_token(&gw, &t).await.0, 200);
    refused_within(&gw, &via_other.access, "alice through other").await;
    assert_eq!(gw.access_status(&bob.access).await, 200, "bob");
    let ev = audit_events_n(&gw, "backchannel_logout", 3).await;
    assert_eq!(
        (&ev[2]["provider"], &ev[2]["count"]),
        (&json!("other"), &json!(1)),
        "{ev:?}"
    );
}

/// A captured logout token replayed: the same token a second time at the same instance, at
/// another instance (the `jti` is remembered in the shared store), after the user signed in
/// again (a replay must not end the new session), and re-signed with the same `jti`: each `400
/// {"error": "invalid_request"}`, and the new session lives. A fresh token still works.
#[tokio::test]
async fn a_replayed_logout_token_is_refused_on_every_instance() {
    let redis = RedisServer::start().await;
    let (idp, a, b) = two_instances(&redis).await;
    let first = sign_in(&a, &browser(&a, &idp), "corp", ALICE).await;
    let t = idp.logout_token(json!({ "sub": "sub-alice" })).await;
    assert_eq!(post_logout_token(&a, &t).await.0, 200, "first use");
    refused_within(&a, &first.access, "first session").await;

    let again = sign_in(&a, &browser(&a, &idp), "corp", ALICE).await;
    let jti = jwt_claims(&t)["jti"].clone();
    let resigned = idp
        .logout_token(json!({ "sub": "sub-alice", "jti": jti, "iat": now_unix() - 5 }))
        .await;
    assert_ne!(resigned, t);
    for (gw, token, what) in [
        (&a, &t, "the same token, same instance"),
        (&b, &t, "the same token, other instance"),
        (&b, &resigned, "the same jti, re-signed"),
        (&a, &resigned, "the same jti, re-signed, same instance"),
    ] {
        let (status, body) = post_logout_token(gw, token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        assert_eq!(
            a.access_status(&again.access).await,
            200,
            "{what}: new session"
        );
    }
    assert_eq!(
        audit_events_n(&a, "backchannel_logout_refused", 2)
            .await
            .len(),
        2
    );
    assert_eq!(
        audit_events_n(&b, "backchannel_logout_refused", 2)
            .await
            .len(),
        2
    );

    let fresh = idp.logout_token(json!({ "sub": "sub-alice" })).await;
    assert_eq!(post_logout_token(&b, &fresh).await.0, 200, "a fresh token");
    refused_within(&a, &again.access, "new session, fresh token").await;
}

/// Logout tokens the gateway must refuse, each wrong in one way only (the others are as the
/// provider makes them): each `400 {"error": "invalid_request"}`, audited as refused, and the
/// session lives. Their neighbours that must pass (`typ` `JWT` or absent, `aud` a list holding
/// ours, `iat` 9 minutes old or 30 s ahead, no `exp`) are accepted, for a user with no session.
/// Last, a good token for the user ends the session (the refusals were the token's fault).
#[tokio::test]
async fn invalid_logout_tokens_are_refused_and_end_nothing() {
    let (idp, gw) = setup(GatewayConfig::new()).await;
    let s = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    let now = now_unix();
    let bad: Vec<(&str, Value)> = vec![
        ("aud of another client", json!({ "aud": "another-client" })),
        (
            "aud a list without ours",
            json!({ "aud": ["another-client", "third"] }),
        ),
        ("no aud", json!({ "aud": null })),
        (
            "an unknown issuer",
            json!({ "iss": "https://idp.example.test" }),
        ),
        (
            "the issuer with a trailing slash",
            json!({ "iss": format!("{}/", idp.issuer()) }),
        ),
        ("no iss", json!({ "iss": null })),
        ("no events", json!({ "events": null })),
        ("events empty", json!({ "events": {} })),
        (
            "another event only",
            json!({ "events": { "http://schemas.openid.net/event/other": {} } }),
        ),
        ("the event a string", json!({ "events": { EVENT: "yes" } })),
        ("the event a list", json!({ "events": { EVENT: [] } })),
        ("the event true", json!({ "events": { EVENT: true } })),
        ("events a list", json!({ "events": [EVENT] })),
        ("a nonce", json!({ "nonce": "n-1" })),
        ("an empty nonce", json!({ "nonce": "" })),
        ("iat 20 minutes old", json!({ "iat": now - 1200 })),
        (
            "iat an hour ahead",
            json!({ "iat": now + 3600, "exp": now + 3720 }),
        ),
        ("no iat", json!({ "iat": null })),
        ("iat a string", json!({ "iat": now.to_string() })),
        ("exp past", json!({ "exp": now - 5 })),
        ("exp a string", json!({ "exp": "later" })),
        ("no jti", json!({ "jti": null })),
        ("neither sub nor sid", json!({ "sub": null, "sid": null })),
        ("empty sub, no sid", json!({ "sub": "", "sid": null })),
        ("a numeric sub, no sid", json!({ "sub": 42, "sid": null })),
        ("a key not in the JWKS", json!({ "foreign_key": true })),
        ("a kid not in the JWKS", json!({ "kid": "no-such-kid" })),
        ("alg none", json!({ "alg": "none" })),
        ("HS256 with the client secret", json!({ "alg": "HS256" })),
        ("typ at+jwt", json!({ "typ": "at+jwt" })),
        ("typ secevent+jwt", json!({ "typ": "secevent+jwt" })),
    ];
    for (i, (what, claims)) in bad.iter().enumerate() {
        let mut claims = claims.clone();
        if claims.get("sub").is_none() {
            claims["sub"] = json!("sub-alice");
        }
        let t = idp.logout_token(claims).await;
        let (status, body) = post_logout_token(&gw, &t).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        assert_eq!(
            gw.access_status(&s.access).await,
            200,
            "{what}: the session"
        );
        assert_eq!(
            audit_events_n(&gw, "backchannel_logout_refused", i + 1)
                .await
                .len(),
            i + 1,
            "{what}"
        );
    }
    assert_eq!(count_events(&gw, "backchannel_logout"), 0);

    let good: Vec<(&str, Value)> = vec![
        ("typ JWT", json!({ "typ": "JWT" })),
        (
            "typ application/logout+jwt",
            json!({ "typ": "application/logout+jwt" }),
        ),
        ("no typ", json!({ "typ": null })),
        (
            "aud a list holding ours",
            json!({ "aud": ["another-client", CLIENT] }),
        ),
        ("iat 9 minutes old", json!({ "iat": now - 540 })),
        ("iat 30 s ahead", json!({ "iat": now + 30 })),
        ("no exp", json!({ "exp": null })),
    ];
    for (i, (what, claims)) in good.iter().enumerate() {
        let mut claims = claims.clone();
        claims["sub"] = json!("sub-nobody");
        let t = idp.logout_token(claims).await;
        let (status, body) = post_logout_token(&gw, &t).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(
            audit_events_n(&gw, "backchannel_logout", i + 1).await.len(),
            i + 1
        );
    }
    assert_eq!(
        gw.access_status(&s.access).await,
        200,
        "nothing named alice yet"
    );

    let t = idp.logout_token(json!({ "sub": "sub-alice" })).await;
    assert_eq!(post_logout_token(&gw, &t).await.0, 200);
    refused_within(&gw, &s.access, "a good token").await;
}

/// Requests to the back-channel endpoint that carry no usable logout token: a form without
/// `logout_token` (or with it empty, or not a JWS), an empty body, a body past the size limit,
/// a JSON body holding a good token (`415`: the spec's form encoding only), `text/plain`
/// (`415`), `GET` and `PUT` (`405`). None ends the session; a form with a charset parameter is
/// still a form.
#[tokio::test]
async fn the_backchannel_endpoint_refuses_requests_without_a_form_encoded_token() {
    let (idp, gw) = setup(GatewayConfig::new()).await;
    let s = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    let good = idp.logout_token(json!({ "sub": "sub-alice" })).await;
    let form = "application/x-www-form-urlencoded";
    let big = "a".repeat(20 * 1024);
    let cases: Vec<(&str, &str, String, u16)> = vec![
        (
            "no logout_token",
            form,
            form_urlencode(&[("token", good.as_str())]),
            400,
        ),
        ("an empty logout_token", form, "logout_token=".into(), 400),
        ("not a JWS", form, "logout_token=abc".into(), 400),
        ("an empty body", form, String::new(), 400),
        (
            "a body past the limit",
            form,
            format!("logout_token={big}"),
            413,
        ),
        (
            "JSON",
            "application/json",
            json!({ "logout_token": good }).to_string(),
            415,
        ),
        (
            "text/plain",
            "text/plain",
            format!("logout_token={good}"),
            415,
        ),
    ];
    for (what, ct, body, want) in cases {
        let (status, answer) = post_backchannel(&gw, ct, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        if want == 400 {
            assert_eq!(answer["error"], "invalid_request", "{what}: {answer}");
        }
        assert_eq!(
            gw.access_status(&s.access).await,
            200,
            "{what}: the session"
        );
    }
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let resp = gw
            .client
            .request(method.clone(), gw.url(BACKCHANNEL))
            .header("content-type", form)
            .body(form_urlencode(&[("logout_token", good.as_str())]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method}");
    }
    assert_eq!(gw.access_status(&s.access).await, 200, "after GET and PUT");

    let (status, body) = post_backchannel(
        &gw,
        "application/x-www-form-urlencoded; charset=UTF-8",
        form_urlencode(&[("logout_token", good.as_str())]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    refused_within(&gw, &s.access, "the good token, as a form").await;
}

// ---------------------------------------------------------------- re-check with the provider

/// `oidc.recheck_interval = "10s"`, access tokens of 2 s: every request past 2 s refreshes,
/// and a refresh at least 10 s after the last check asks the provider again.
fn recheck_config() -> GatewayConfig {
    GatewayConfig::new()
        .access_ttl("2s")
        .set("oidc", "recheck_interval", "\"10s\"")
}

const RECHECK: Duration = Duration::from_secs(10);
/// How long after the interval a re-check's outcome may take to show.
const RECHECK_SLACK: Duration = Duration::from_secs(5);

/// Poll `s` with protected API requests (each refreshing when due) every 400 ms until `done`
/// says so of `(status, echo)`, for at most the interval and [`RECHECK_SLACK`]; how long after
/// `since` (taken before the sign-in began) that was. Fails if it happens sooner than 1 s
/// before the interval (the interval's seconds are whole, so the first re-check may come up to
/// 1 s early).
async fn poll_until(
    gw: &Gateway,
    s: &mut Session,
    since: Instant,
    what: &str,
    done: impl Fn(u16, Option<&Echo>) -> bool,
) -> Duration {
    loop {
        let (status, echo) = app_request(gw, s).await;
        let at = since.elapsed();
        if done(status, echo.as_ref()) {
            assert!(
                at + Duration::from_secs(1) >= RECHECK,
                "{what} after {at:?}, before the re-check interval; stderr:\n{}",
                gw.stderr_text()
            );
            return at;
        }
        assert_eq!(status, 200, "{what}: unexpected status after {at:?}");
        assert!(
            at < RECHECK + RECHECK_SLACK,
            "{what}: not after {at:?}; stderr:\n{}",
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// A user deleted at the provider is signed out at the first refresh after the re-check
/// interval: the provider answers the kept refresh token with `invalid_grant`, the session ends
/// (API `401`, the refresh cookie refused, a navigation sent to log in), audited as
/// `session_revoked` with the reason. Before the interval, refreshes go on without asking. Bob,
/// still at the provider, is re-checked at the same time and stays signed in.
#[tokio::test]
async fn a_user_deleted_at_the_provider_is_signed_out_at_the_next_recheck() {
    let (idp, gw) = setup(recheck_config()).await;
    let since = Instant::now();
    let mut s = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    let mut other = sign_in(&gw, &browser(&gw, &idp), "corp", BOB).await;
    idp.delete_user("sub-alice").await;

    let at = poll_until(&gw, &mut s, since, "alice signed out", |st, _| st == 401).await;
    eprintln!("the deleted user was signed out {at:?} after the sign-in began");
    assert_eq!(refreshed(&gw, &mut s).await, 401, "the refresh token");
    let nav = gw
        .get(LANDING)
        .header("cookie", s.cookie_header())
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), 302, "a navigation is sent to log in");
    assert!(
        location(&nav)
            .unwrap_or_default()
            .starts_with("/.auth/login")
    );
    let ev = audit_events_n(&gw, "session_revoked", 1).await;
    assert_eq!(ev.len(), 1, "only alice's session: {ev:?}");
    assert_eq!(ev[0]["user"], "sub-alice");
    assert_eq!(
        ev[0]["reason"], "identity provider ended the grant",
        "{ev:?}"
    );

    // Bob's re-check is due too (his session is as old, his access token long expired), and
    // the provider still has him.
    let (status, echo) = app_request(&gw, &mut other).await;
    assert_eq!(status, 200, "bob");
    assert_eq!(echo.unwrap().header("x-auth-user"), Some("sub-bob"));
    assert_eq!(count_events(&gw, "session_revoked"), 1);
}

/// New groups at the provider reach the app (`X-Auth-Roles`) at the first refresh after the
/// re-check interval, not before; a user whose new groups fall outside `allowed_groups` is
/// signed out instead (`session_revoked`, "claims no longer allowed"). Stale roles would keep
/// a demoted user's rights for as long as the session lasts.
#[tokio::test]
async fn changed_groups_at_the_provider_change_the_roles_at_the_next_recheck() {
    let idp = OidcProvider::launch().await;
    let keys = format!("{GROUPS}allowed_groups = [\"staff\", \"admins\"]\n");
    let cfg = recheck_config().oidc_provider_with(&idp, "corp", CLIENT, SECRET, &keys);
    let gw = Gateway::start(cfg).await;
    configure(
        &idp,
        registered(CLIENT, SECRET, &gw),
        &gw,
        vec![alice(), bob()],
    )
    .await;
    let since = Instant::now();
    let mut s = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    let since_bob = Instant::now();
    let mut other = sign_in(&gw, &browser(&gw, &idp), "corp", BOB).await;
    let (_, echo) = app_request(&gw, &mut s).await;
    assert_eq!(echo.unwrap().header("x-auth-roles"), Some("staff"));
    idp.put_user(&alice().groups(&["admins", "auditors"])).await;
    idp.put_user(&bob().groups(&["contractors"])).await;

    let roles = |_: u16, e: Option<&Echo>| {
        e.and_then(|e| e.header("x-auth-roles")) == Some("admins,auditors")
    };
    let at = poll_until(&gw, &mut s, since, "alice's new roles", roles).await;
    eprintln!("the new roles reached the app {at:?} after the sign-in began");
    let me: Value = gw
        .get_with("/.auth/me", &s.access_only())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["admins", "auditors"]), "{me}");

    let at = poll_until(&gw, &mut other, since_bob, "bob signed out", |st, _| {
        st == 401
    })
    .await;
    eprintln!("bob, out of allowed_groups, was signed out {at:?} after his sign-in began");
    let ev = audit_events_n(&gw, "session_revoked", 1).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["user"], "sub-bob");
    assert_eq!(
        ev[0]["reason"],
        "identity provider claims no longer allowed"
    );
    let (status, _) = app_request(&gw, &mut s).await;
    assert_eq!(status, 200, "alice stays");
}

/// The provider goes down: past the re-check interval every request keeps working and every
/// refresh succeeds (new cookies each time), the gateway says it could not re-check, and
/// nothing is logged out. An outage at the provider must not become an outage of every app
/// behind the gateway.
#[tokio::test]
async fn an_unreachable_provider_at_recheck_ends_no_session() {
    let (mut idp, gw) = setup(recheck_config()).await;
    let since = Instant::now();
    let mut s = sign_in(&gw, &browser(&gw, &idp), "corp", ALICE).await;
    idp.kill();

    let mut refreshes = 0;
    let mut last = s.refresh.clone();
    while since.elapsed() < RECHECK + Duration::from_secs(3) {
        let (status, echo) = app_request(&gw, &mut s).await;
        assert_eq!(status, 200, "after {:?}", since.elapsed());
        assert_eq!(echo.unwrap().header("x-auth-user"), Some("sub-alice"));
        if s.refresh != last {
            refreshes += 1;
            last = s.refresh.clone();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(refreshes >= 4, "the session refreshed {refreshes} times");
    assert_eq!(refreshed(&gw, &mut s).await, 200, "an explicit refresh");
    assert_eq!(gw.access_status(&s.access).await, 200);
    let stderr = gw.stderr_plain();
    assert!(
        stderr.contains("re-check failed") || stderr.contains("did not answer the re-check"),
        "the re-check was tried: {stderr}"
    );
    for event in ["session_revoked", "logout"] {
        assert_eq!(count_events(&gw, event), 0, "{event}: {}", gw.audit_text());
    }
}
