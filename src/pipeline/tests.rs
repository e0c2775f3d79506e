//! Pipeline tests: the stages in order, driven with built requests (no sockets).
//!
//! Attacks covered: spoofed identity headers on public and protected routes, identity header
//! removal through `Connection`, path traversal out of a public prefix, encoded separators,
//! credentials in the URL, a gateway cookie sent twice, a revoked session's access token.

use std::net::SocketAddr;

use http::{Request, StatusCode};

use super::*;
use crate::config::{self, LoadOptions};
use crate::store::SessionRecord;

const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

pub(crate) fn runtime() -> Runtime {
    let raw = config::parse(
        r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
[[route]]
path_prefix = "/public/"
public = true
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env = |n: &str| match n {
        "SESSIONGATE_ACCESS_SECRET" => Some(A.to_string()),
        "SESSIONGATE_REFRESH_SECRET" => Some(R.to_string()),
        _ => None,
    };
    // dev: the test has no certificate or users file on disk.
    let cfg =
        config::validate(raw, LoadOptions { dev: true }, &env).unwrap_or_else(|e| panic!("{e}"));
    Runtime::in_memory(cfg)
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
    let t = rt.keys.mint_access(
        "alice",
        sid,
        &["admin".into(), "dev".into()],
        now,
        now + 60,
        &Default::default(),
    );
    format!("{}={t}; theme=dark", rt.cookies.access)
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
        Decision::Forward { ctx, .. } => ctx,
        other => panic!("expected Forward, got {other:?}"),
    }
}

async fn status(rt: &Runtime, mut r: Request<()>) -> StatusCode {
    match decide(rt, &conn(), &mut r).await {
        Decision::Respond(resp) => resp.status(),
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
        Decision::Respond(resp) => {
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
    let c = format!("{0}=a; {0}=b", rt.cookies.access);
    assert_eq!(
        status(&rt, req("/public/x", &[("cookie", &c)])).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn revoked_session_access_token_is_refused() {
    let rt = runtime();
    let cookie = access_cookie(&rt, "sid-3");
    rt.revoked.insert("sid-3", crate::util::now_unix() + 60);
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
        rotated_at: now,
        ip: "127.0.0.1".into(),
        user_agent: String::new(),
        device: String::new(),
    };
    rt.store.create(rec).await.unwrap_or_else(|e| panic!("{e}"));
    let refresh = rt
        .keys
        .mint_refresh("alice", "sid-4", "j1", now, now + 600, &Default::default());
    let expired = rt.keys.mint_access(
        "alice",
        "sid-4",
        &[],
        now - 100,
        now - 1,
        &Default::default(),
    );
    let cookie = format!(
        "{}={expired}; {}={refresh}",
        rt.cookies.access, rt.cookies.refresh
    );
    let mut r = req("/private", &[("cookie", &cookie)]);
    match decide(&rt, &conn(), &mut r).await {
        Decision::Forward { set_cookies, .. } => assert_eq!(set_cookies.len(), 2),
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
