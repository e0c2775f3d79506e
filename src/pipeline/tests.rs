//! Pipeline tests: the stages in order, driven with built requests (no sockets).
//!
//! Attacks covered: spoofed identity headers on public and protected routes, identity header
//! removal through `Connection`, path traversal out of a public prefix, encoded separators,
//! credentials in the URL, a gateway cookie sent twice, a revoked session's access token.

use std::net::SocketAddr;

use http::{Request, StatusCode};

use super::*;
use crate::refusal::Refusal;
use crate::store::SessionRecord;
use crate::tokens::AccessLifetime;

pub(crate) fn runtime() -> Runtime {
    crate::runtime::testing::runtime(
        r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
[[route]]
path_prefix = "/public/"
public = true
"#,
        crate::sessions::Clock::system(),
    )
}

fn conn() -> ConnCtx {
    ConnCtx {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_trusted: false,
        framing: None,
    }
}

fn access_cookie(rt: &Runtime, sid: &str) -> String {
    let now = crate::util::now_unix();
    let t = rt
        .sessions
        .keys()
        .mint_access(
            "alice",
            sid,
            &["admin".into(), "dev".into()],
            AccessLifetime {
                now,
                exp: now + 60,
                session_end: now + 60 + 3600,
                auth_time: 0,
            },
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    format!("{}={t}; theme=dark", rt.sessions.cookies().access)
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder()
        .uri(path)
        .header("host", "localhost:8443");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap_or_else(|e| panic!("{e}"))
}

async fn forwarded(rt: &Runtime, r: &mut Request<()>) -> RequestCtx {
    match decide(rt, &conn(), r).await {
        Decision::Forward(f) => f.ctx,
        other => panic!("expected Forward, got {other:?}"),
    }
}

async fn status(rt: &Runtime, mut r: Request<()>) -> StatusCode {
    match decide(rt, &conn(), &mut r).await {
        Decision::Refuse(r) => r.status(),
        other => panic!("expected Respond, got {other:?}"),
    }
}

#[tokio::test]
async fn spoofed_identity_is_stripped_before_identity_is_injected() {
    let rt = runtime();
    let cookie = access_cookie(&rt, "sid-1");
    let mut r = req(
        "/private",
        &[
            ("cookie", &cookie),
            ("x-auth-user", "mallory"),
            ("x-auth-roles", "root"),
            ("connection", "x-auth-user"),
        ],
    );
    forwarded(&rt, &mut r).await;
    let h = r.headers();
    assert_eq!(
        h.get_all("x-auth-user").iter().collect::<Vec<_>>(),
        vec!["alice"]
    );
    assert_eq!(
        h.get_all("x-auth-roles").iter().collect::<Vec<_>>(),
        vec!["admin,dev"]
    );
    assert_eq!(
        h.get("cookie").map(|v| v.to_str().unwrap_or("")),
        Some("theme=dark")
    );
    assert_ne!(
        h.get("x-auth-session").map(|v| v.to_str().unwrap_or("")),
        Some("sid-1")
    );
}

#[tokio::test]
async fn spoofed_identity_is_stripped_on_public_route_without_session() {
    let rt = runtime();
    let mut r = req(
        "/public/x",
        &[
            ("X-Auth-User", "mallory"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-auth-assertion", "x"),
        ],
    );
    forwarded(&rt, &mut r).await;
    for h in ["x-auth-user", "x-auth-assertion", "x-forwarded-for"] {
        assert!(r.headers().get(h).is_none(), "{h} reached the upstream");
    }
}

#[tokio::test]
async fn traversal_out_of_public_prefix_needs_a_session() {
    let rt = runtime();
    assert_eq!(
        status(&rt, req("/public/../private", &[])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&rt, req("/public/%2e%2e/private", &[])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&rt, req("/public/..%2Fprivate", &[])).await,
        StatusCode::BAD_REQUEST
    );
    // `..;` is `..` to Java servers that strip path parameters: refused, never forwarded.
    assert_eq!(
        status(&rt, req("/public/..;/private", &[])).await,
        StatusCode::BAD_REQUEST
    );
    let cookie = access_cookie(&rt, "sid-2");
    let mut r = req("/public/../private//x", &[("cookie", &cookie)]);
    assert_eq!(forwarded(&rt, &mut r).await.path, "/private/x");
}

#[tokio::test]
async fn credentials_in_url_redirect_to_the_clean_url() {
    let rt = runtime();
    let mut r = req("/public/x?a=1&access_token=secret", &[]);
    match decide(&rt, &conn(), &mut r).await {
        Decision::Refuse(r) => {
            let resp = r.into_response(&rt.sessions);
            assert_eq!(resp.status(), StatusCode::SEE_OTHER);
            assert_eq!(
                resp.headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap_or("")),
                Some("/public/x?a=1")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn duplicate_gateway_cookie_is_refused() {
    let rt = runtime();
    let c = format!("{0}=a; {0}=b", rt.sessions.cookies().access);
    assert_eq!(
        status(&rt, req("/public/x", &[("cookie", &c)])).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn revoked_session_access_token_is_refused() {
    let rt = runtime();
    let cookie = access_cookie(&rt, "sid-3");
    rt.sessions
        .revoked()
        .insert("sid-3", crate::util::now_unix() + 60);
    assert_eq!(
        status(&rt, req("/private", &[("cookie", &cookie)])).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn expired_access_cookie_is_refreshed_transparently() {
    let rt = runtime();
    let now = crate::util::now_unix();
    let rec = SessionRecord {
        sid: "sid-4".into(),
        user: "alice".into(),
        roles: vec!["admin".into()],
        created: now,
        last_seen: now,
        abs_end: now + 600,
        cur_jti: "j1".into(),
        prev_jti: None,
        rotated_at_ms: now * 1000,
        prev_open: false,
        ip: "127.0.0.1".into(),
        user_agent: String::new(),
        device: String::new(),
        idp: None,
        auth_time: now,
        refreshes: 0,
    };
    rt.sessions
        .store()
        .create(rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refresh = rt
        .sessions
        .keys()
        .mint_refresh("alice", "sid-4", "j1", now, now + 600, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let expired = rt
        .sessions
        .keys()
        .mint_access(
            "alice",
            "sid-4",
            &[],
            AccessLifetime {
                now: now - 100,
                exp: now - 1,
                session_end: now - 1 + 3600,
                auth_time: 0,
            },
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let cookie = format!(
        "{}={expired}; {}={refresh}",
        rt.sessions.cookies().access,
        rt.sessions.cookies().refresh
    );
    let mut r = req("/private", &[("cookie", &cookie)]);
    match decide(&rt, &conn(), &mut r).await {
        Decision::Forward(f) => assert_eq!(f.set_cookies.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.headers()
            .get("x-auth-user")
            .map(|v| v.to_str().unwrap_or("")),
        Some("alice")
    );
    assert!(r.headers().get("cookie").is_none());
}

// --- Session lifetime on a clock the test moves (no sleeping) ---------------------------------

const SHORT_SESSIONS: &str = r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
[session]
access_ttl = "5m"
idle_timeout = "30m"
refresh_ttl = "1h"
refresh_grace = "10s"
"#;

/// A runtime on a manual clock, and a signed-in session's cookie header.
async fn signed_in_at(start: u64) -> (Runtime, crate::sessions::Clock, String, String) {
    let clock = crate::sessions::Clock::manual(start);
    let rt = crate::runtime::testing::runtime(SHORT_SESSIONS, clock.clone());
    let ip = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    let t = rt
        .sessions
        .start(
            "alice",
            &["dev".into()],
            ip,
            &UserAgent::from_bytes(b""),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = rt.sessions.cookies();
    let header = format!("{}={}; {}={}", c.access, t.access, c.refresh, t.refresh);
    (rt, clock, header, t.refresh)
}

async fn decide_at(rt: &Runtime, cookie: &str) -> Decision {
    let mut r = req("/private", &[("cookie", cookie)]);
    decide(rt, &conn(), &mut r).await
}

#[tokio::test]
async fn access_token_expiry_refreshes_transparently_on_the_clock() {
    let (rt, clock, cookie, _) = signed_in_at(1_000_000).await;
    match decide_at(&rt, &cookie).await {
        Decision::Forward(f) => assert!(f.set_cookies.is_empty(), "a fresh token needs nothing"),
        other => panic!("{other:?}"),
    }
    clock.advance(5 * 60 + 1);
    match decide_at(&rt, &cookie).await {
        Decision::Forward(f) => assert_eq!(f.set_cookies.len(), 2, "rotated on expiry"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn idle_session_cannot_be_refreshed() {
    let (rt, clock, cookie, _) = signed_in_at(2_000_000).await;
    clock.advance(30 * 60 + 1);
    match decide_at(&rt, &cookie).await {
        Decision::Refuse(Refusal::Unauthenticated {
            presented: true,
            clear: true,
            ..
        }) => {}
        other => panic!("an idle session must sign in again: {other:?}"),
    }
}

#[tokio::test]
async fn refresh_grace_window_then_reuse_revokes() {
    let (rt, clock, _, refresh) = signed_in_at(3_000_000).await;
    let ip = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    clock.advance(60);
    let next = rt
        .sessions
        .refresh(&refresh, ip, &UserAgent::from_bytes(b""))
        .await;
    assert!(next.is_ok(), "first use rotates: {next:?}");
    clock.advance(9);
    let again = rt
        .sessions
        .refresh(&refresh, ip, &UserAgent::from_bytes(b""))
        .await;
    assert!(again.is_ok(), "a parallel tab within the grace: {again:?}");
    clock.advance(2);
    let late = rt
        .sessions
        .refresh(&refresh, ip, &UserAgent::from_bytes(b""))
        .await;
    assert!(
        matches!(late, Err(crate::sessions::RefreshError::Reused)),
        "the old token after the grace is theft: {late:?}"
    );
    let newest = next.unwrap_or_else(|e| panic!("{e}")).refresh;
    assert!(
        rt.sessions
            .refresh(&newest, ip, &UserAgent::from_bytes(b""))
            .await
            .is_err(),
        "reuse ended the whole session"
    );
}

#[tokio::test]
async fn absolute_end_stops_refreshing_an_active_session() {
    let (rt, clock, _, mut refresh) = signed_in_at(4_000_000).await;
    let ip = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    // Active every 20 minutes: never idle, but the session ends one hour after login.
    for _ in 0..2 {
        clock.advance(20 * 60);
        refresh = rt
            .sessions
            .refresh(&refresh, ip, &UserAgent::from_bytes(b""))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .refresh;
    }
    clock.advance(20 * 60 + 1);
    let past = rt
        .sessions
        .refresh(&refresh, ip, &UserAgent::from_bytes(b""))
        .await;
    assert!(past.is_err(), "past refresh_ttl: {past:?}");
}

async fn refusal(rt: &Runtime, mut r: Request<()>) -> Refusal {
    match decide(rt, &conn(), &mut r).await {
        Decision::Refuse(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_say_why() {
    use crate::web::path::PathError;
    let rt = runtime();
    assert!(matches!(
        refusal(&rt, req("/public/..%2Fprivate", &[])).await,
        Refusal::Path(PathError::EncodedSeparator)
    ));
    assert!(matches!(
        refusal(&rt, req("/public/..;/private", &[])).await,
        Refusal::Path(PathError::DotSegmentParameter)
    ));
    assert!(matches!(
        refusal(&rt, req("/x?token=a", &[])).await,
        Refusal::CleanUrl(to) if to == "/x"
    ));
    let two = format!("{0}=a; {0}=b", rt.sessions.cookies().access);
    assert!(matches!(
        refusal(&rt, req("/x", &[("cookie", &two)])).await,
        Refusal::Cookies(crate::cookies::CookieError::Duplicate("access"))
    ));
    assert!(matches!(
        refusal(&rt, req("/x", &[("x_auth_user", "mallory")])).await,
        Refusal::Ambiguous(_)
    ));
    let cookie = access_cookie(&rt, "sid-why");
    let mut post = req(
        "/private",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    );
    *post.method_mut() = http::Method::POST;
    assert!(matches!(
        refusal(&rt, post).await,
        Refusal::Csrf(crate::refusal::CsrfError::CrossOrigin)
    ));
    assert!(matches!(
        refusal(&rt, req("/private", &[])).await,
        Refusal::Unauthenticated {
            presented: false,
            clear: false,
            ..
        }
    ));
}
