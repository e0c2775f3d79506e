//! WebSocket tunnels end with their session: at its absolute end, after `session.idle_timeout`
//! with no byte either way, and at revocation — on the client's side and on the app's.
//!
//! Attacks covered:
//! - a tunnel opened a moment before the session's absolute end (`session.refresh_ttl`), or
//!   opened early and kept busy, carrying the user's identity to the app after the session is
//!   over: the pipeline never sees an upgraded connection again, so only the gateway's own
//!   timer can end it;
//! - a tunnel left open on a walked-away machine (no byte for the idle timeout) staying a live,
//!   authenticated channel into the app for as long as the network lets it;
//! - a one-sided tunnel (only the app pushes, or only the client sends) mistaken for an idle
//!   one and cut, or an idle one mistaken for a busy one;
//! - a tunnel that the gateway "closes" towards the client only, leaving the app holding an
//!   authenticated connection (every close is checked on the upstream's side too).
//!
//! Timings: the absolute end is a whole Unix second (`exp` of the refresh token); the gateway
//! closes at that instant, and the tests allow 2.5 s after it (a busy tunnel notices the close
//! at its next echo, every 300 ms).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::harness::*;

/// Keep a tunnel busy — a text frame every 300 ms, each echo awaited — until the gateway closes
/// it or `give_up` passes. When it closed (wall clock), or `None` if it never did.
async fn busy_until_closed<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut S,
    give_up: Duration,
) -> Option<SystemTime> {
    let deadline = Instant::now() + give_up;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let msg = format!("busy {n}");
        // Closed: the write fails, or the read ends (EOF, error, a close frame). A slow echo on
        // a loaded machine is not a close.
        let echoed = match try_send_text(ws, &msg).await {
            Err(_) => false,
            Ok(()) => matches!(
                tokio::time::timeout(Duration::from_secs(10), read_frame(ws)).await,
                Ok(Ok((1, p))) if p == msg.as_bytes()
            ),
        };
        if !echoed {
            return Some(SystemTime::now());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

/// The session's absolute end, from the refresh token's `exp`.
fn absolute_end(s: &Session) -> SystemTime {
    let exp = jwt_claims(&s.refresh)["exp"].as_u64().expect("refresh exp");
    UNIX_EPOCH + Duration::from_secs(exp)
}

fn secs_from(end: SystemTime, at: SystemTime) -> f64 {
    match at.duration_since(end) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[tokio::test]
async fn tunnels_are_closed_at_the_sessions_absolute_end_however_busy() {
    // idle_timeout 3s < the 10 s the first tunnel stays busy: only the absolute end may close
    // it. The second tunnel is opened 3 s before that end.
    let gw = Gateway::start(
        GatewayConfig::new()
            .access_ttl("9s")
            .refresh_ttl("10s")
            .idle_timeout("3s"),
    )
    .await;
    let s = gw.login_alice().await;
    let end = absolute_end(&s);
    let early = open_ws(&gw, "/private/ws-early", &s.cookie_header(), &[]).await;
    let opened_early = SystemTime::now();
    let early = tokio::spawn(async move {
        let mut ws = early;
        busy_until_closed(&mut ws, Duration::from_secs(16)).await
    });
    if let Ok(wait) = (end - Duration::from_secs(3)).duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let mut late = open_ws(&gw, "/private/ws-late", &s.cookie_header(), &[]).await;
    let late_closed = busy_until_closed(&mut late, Duration::from_secs(8)).await;
    let early_closed = early.await.unwrap();

    for (what, closed) in [
        ("the tunnel opened at login", early_closed),
        ("the tunnel opened 3 s before the end", late_closed),
    ] {
        let closed = closed.unwrap_or_else(|| {
            panic!("{what} was still open 5 s after the session's absolute end")
        });
        let after = secs_from(end, closed);
        assert!(
            (-0.3..=2.5).contains(&after),
            "{what} closed {after:.2} s after the absolute end (expected at it)"
        );
    }
    assert!(
        secs_from(opened_early, end) > 6.0,
        "the early tunnel was busy for longer than the idle timeout"
    );
    for path in ["/private/ws-early", "/private/ws-late"] {
        assert!(
            gw.upstream_ws_closed(path, Duration::from_secs(5))
                .await
                .is_some(),
            "the app still holds {path} open after the gateway closed it"
        );
    }
    assert!(
        gw.stderr_text()
            .contains("its session reached its absolute end"),
        "the log says why: {}",
        gw.stderr_text()
    );
    // And the session is over for plain requests too.
    let status = gw
        .get("/private/after")
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let gw = Gateway::start(GatewayConfig::new().idle_timeout("2s")).await;
    let s = gw.login_alice().await;
    let mut ws = open_ws(&gw, "/private/ws-idle", &s.cookie_header(), &[]).await;
    assert_echoes(&mut ws, "then nothing").await;
    let silent_from = Instant::now();
    assert!(
        closed_within(&mut ws, Duration::from_secs(8)).await,
        "a tunnel silent for 8 s stayed open with idle_timeout = 2s"
    );
    let after = silent_from.elapsed();
    assert!(
        after >= Duration::from_millis(1800) && after <= Duration::from_secs(5),
        "closed after {after:?} of silence (idle_timeout = 2s)"
    );
    assert_eq!(
        gw.upstream_ws_closed("/private/ws-idle", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("eof"),
        "the app's end of the tunnel was closed too"
    );
    assert!(
        gw.stderr_text().contains("idle: no byte either way"),
        "{}",
        gw.stderr_text()
    );
}

#[tokio::test]
async fn traffic_in_one_direction_keeps_a_tunnel_open_until_both_are_silent() {
    let gw = Gateway::start(GatewayConfig::new().idle_timeout("2s")).await;
    let s = gw.login_alice().await;
    let mut ws = open_ws(&gw, "/private/ws-oneway", &s.cookie_header(), &[]).await;

    // Only the app speaks: 12 pushes over 3.6 s while the client sends nothing.
    send_text(&mut ws, "push 12 300").await;
    for i in 1..=12 {
        let frame = tokio::time::timeout(Duration::from_secs(3), read_frame(&mut ws)).await;
        let Ok(Ok((1, payload))) = frame else {
            panic!("push {i}: the tunnel closed while the app was pushing ({frame:?})");
        };
        assert_eq!(payload, format!("push {i}").as_bytes());
    }

    // Only the client speaks: the app is muted, a frame every 400 ms for 3.6 s.
    send_text(&mut ws, "mute").await;
    for i in 0..9 {
        send_text(&mut ws, &format!("into the void {i}")).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    send_text(&mut ws, "unmute").await;
    assert_echoes(&mut ws, "still open after the client alone spoke for 3.6 s").await;

    // Now neither speaks.
    assert!(
        closed_within(&mut ws, Duration::from_secs(6)).await,
        "a tunnel silent both ways stayed open"
    );
    assert!(
        gw.upstream_ws_closed("/private/ws-oneway", Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn revocation_closes_a_busy_tunnel_on_both_sides() {
    let gw = Gateway::start(GatewayConfig::new().idle_timeout("30s")).await;
    let s = gw.login_alice().await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    let mut ws = open_ws(&gw, "/private/ws-revoked", &s.cookie_header(), &[]).await;
    let mut bob_ws = open_ws(&gw, "/private/ws-bob", &bob.cookie_header(), &[]).await;
    let busy = tokio::spawn(async move {
        let closed = busy_until_closed(&mut ws, Duration::from_secs(10)).await;
        (closed, SystemTime::now())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let logout_at = SystemTime::now();
    assert_eq!(gw.logout(&s).await.status(), 204);
    let (closed, _) = busy.await.unwrap();
    let closed = closed.expect("the tunnel outlived its session's logout");
    assert!(
        secs_from(logout_at, closed) < 3.0,
        "closed {:.2} s after the logout",
        secs_from(logout_at, closed)
    );
    assert!(
        gw.upstream_ws_closed("/private/ws-revoked", Duration::from_secs(5))
            .await
            .is_some(),
        "the app still holds the revoked session's tunnel"
    );
    assert_echoes(&mut bob_ws, "another user's tunnel is untouched").await;
    assert!(gw.stderr_text().contains("its session ended"));
}
