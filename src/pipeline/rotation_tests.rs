//! Pipeline tests of refresh rotation and revocations on a clock the test moves (no sockets,
//! no sleeping): the grace window to the millisecond, rotations whose answer is lost, and
//! requests while the revocation feed is out of sync.
//!
//! Attacks and failures covered: a rotated-out refresh token replayed just after the grace
//! window (whole seconds let it through up to a second late); a lost answer logging the user
//! out later (and the undo of a lost answer resurrecting an ended session, undoing a later
//! rotation, or breaking a parallel answer that did arrive); a revocation made on another
//! instance while this one's feed is away; a store outage signing users out.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use http::Request;
use tokio::sync::broadcast;

use super::*;
use crate::refusal::Refusal;
use crate::sessions::{Clock, Issued, RefreshError};
use crate::store::memory::MemoryStore;
use crate::store::{
    FeedEvent, IdpKey, IdpLink, Revocation, RotateOutcome, RotatePolicy, SessionRecord,
    SessionStore, StoreError,
};

const CONFIG: &str = r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
[session]
access_ttl = "5m"
idle_timeout = "30m"
refresh_ttl = "1h"
refresh_grace = "1s"
"#;

const START: u64 = 5_000_000;

/// The memory store, which a test can take down and whose calls it can count.
#[derive(Default)]
struct Switchable {
    inner: MemoryStore,
    down: AtomicBool,
    calls: AtomicUsize,
}

impl Switchable {
    fn up(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Timeout)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for Switchable {
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError> {
        self.up()?;
        self.inner.create(rec).await
    }
    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        presented: &str,
        new: &str,
        p: RotatePolicy,
    ) -> Result<RotateOutcome, StoreError> {
        self.up()?;
        self.inner.rotate(user, sid, presented, new, p).await
    }
    async fn reopen(&self, user: &str, sid: &str, p: &str, n: &str) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.reopen(user, sid, p, n).await
    }
    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.up()?;
        self.inner.get(user, sid).await
    }
    async fn revoke(&self, user: &str, sid: &str, ttl: u64) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.revoke(user, sid, ttl).await
    }
    async fn revoke_all(&self, user: &str, ttl: u64) -> Result<Vec<String>, StoreError> {
        self.up()?;
        self.inner.revoke_all(user, ttl).await
    }
    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.up()?;
        self.inner.list(user).await
    }
    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError> {
        self.up()?;
        self.inner.touch(seen).await
    }
    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        self.up()?;
        self.inner.recent_revocations(now).await
    }
    fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.up()
    }
    async fn idp_sessions(
        &self,
        provider: &str,
        key: IdpKey<'_>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.up()?;
        self.inner.idp_sessions(provider, key).await
    }
    async fn first_use(&self, key: &str, until: u64) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.first_use(key, until).await
    }
    async fn update_identity(
        &self,
        user: &str,
        sid: &str,
        roles: &[String],
        idp: Option<&IdpLink>,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.update_identity(user, sid, roles, idp).await
    }
    async fn rate_take(
        &self,
        key: &str,
        gcra: crate::store::gcra::Gcra,
        want: u64,
    ) -> Result<crate::store::gcra::Take, StoreError> {
        self.up()?;
        self.inner.rate_take(key, gcra, want).await
    }
    async fn factor(&self, user: &str) -> Result<Option<crate::store::FactorRecord>, StoreError> {
        self.up()?;
        self.inner.factor(user).await
    }
    async fn set_factor(
        &self,
        user: &str,
        rec: &crate::store::FactorRecord,
        step: u64,
        recovery: &[String],
    ) -> Result<(), StoreError> {
        self.up()?;
        self.inner.set_factor(user, rec, step, recovery).await
    }
    async fn remove_factor(&self, user: &str) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.remove_factor(user).await
    }
    async fn put_pending_factor(&self, u: &str, s: &str, until: u64) -> Result<(), StoreError> {
        self.up()?;
        self.inner.put_pending_factor(u, s, until).await
    }
    async fn pending_factor(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.up()?;
        self.inner.pending_factor(user).await
    }
    async fn use_factor_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.use_factor_step(user, step).await
    }
    async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.use_recovery_code(user, hash).await
    }
    async fn recovery_codes_left(&self, user: &str) -> Result<usize, StoreError> {
        self.up()?;
        self.inner.recovery_codes_left(user).await
    }
    async fn factor_grace_start(&self, user: &str, now: u64) -> Result<u64, StoreError> {
        self.up()?;
        self.inner.factor_grace_start(user, now).await
    }
    async fn passkeys(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.up()?;
        self.inner.passkeys(user).await
    }
    async fn put_passkey(
        &self,
        user: &str,
        id: &str,
        record: &str,
        write: crate::store::PasskeyWrite,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.put_passkey(user, id, record, write).await
    }
    async fn remove_passkey(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.remove_passkey(user, id).await
    }
}

struct Setup {
    rt: Runtime,
    clock: Clock,
    store: Arc<Switchable>,
}

fn setup() -> Setup {
    let clock = Clock::manual(START);
    let store = Arc::new(Switchable::default());
    let rt = crate::runtime::testing::runtime_on(CONFIG, clock.clone(), store.clone());
    Setup { rt, clock, store }
}

fn ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn conn() -> ConnCtx {
    ConnCtx {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_trusted: false,
        framing: None,
    }
}

/// A browser's cookie pair.
#[derive(Clone)]
struct Pair {
    access: String,
    refresh: String,
}

impl Pair {
    fn of(t: &Issued) -> Pair {
        Pair {
            access: t.access.clone(),
            refresh: t.refresh.clone(),
        }
    }
    fn header(&self, rt: &Runtime) -> String {
        let c = rt.sessions.cookies();
        format!(
            "{}={}; {}={}",
            c.access, self.access, c.refresh, self.refresh
        )
    }
    fn sid(&self, rt: &Runtime) -> String {
        let now = rt.sessions.clock().now();
        match rt.sessions.keys().verify_refresh(&self.refresh, now) {
            Ok(c) => c.sid,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn login(s: &Setup) -> Pair {
    let t =
        s.rt.sessions
            .start(
                "alice",
                &["dev".into()],
                ip(),
                &UserAgent::from_bytes(b""),
                None,
            )
            .await;
    Pair::of(&t.unwrap_or_else(|e| panic!("{e}")))
}

async fn decide_with(rt: &Runtime, cookie: &str) -> Decision {
    let mut r = Request::builder()
        .uri("/private")
        .header("host", "localhost:8443")
        .header("cookie", cookie)
        .body(())
        .unwrap_or_else(|e| panic!("{e}"));
    decide(rt, &conn(), &mut r).await
}

/// The token pair a forward sets.
fn pair_in(f: &Forward) -> Pair {
    let find = |name: &str| {
        f.set_cookies
            .values
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", f.set_cookies))
    };
    Pair {
        access: find("__Host-sg-access"),
        refresh: find("__Host-sg-refresh"),
    }
}

/// Forwarded with a rotation: the new pair, and the forward (holding the rotation's
/// delivery) for the test to deliver or lose.
fn rotated(d: Decision) -> (Pair, Forward) {
    let Decision::Forward(f) = d else {
        panic!("expected a forward, got {d:?}")
    };
    assert!(
        f.set_cookies.delivery.is_some(),
        "a committed rotation comes with its delivery"
    );
    (pair_in(&f), f)
}

/// Forwarded with the pair already issued (the previous token of a reopened rotation): no
/// rotation, so nothing to deliver.
fn reissued(d: Decision) -> Pair {
    let Decision::Forward(f) = d else {
        panic!("expected a forward, got {d:?}")
    };
    assert!(f.set_cookies.delivery.is_none(), "nothing rotated");
    pair_in(&f)
}

/// The answer reached the client.
fn deliver(f: &Forward) {
    if let Some(d) = &f.set_cookies.delivery {
        d.delivered();
    }
}

/// Let spawned tasks (the store's rotation, a reopen) run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn record(s: &Setup, p: &Pair) -> Option<SessionRecord> {
    s.store
        .inner
        .get("alice", &p.sid(&s.rt))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A refresh whose answer reaches the client.
async fn refresh(s: &Setup, p: &Pair) -> Result<Issued, RefreshError> {
    let r =
        s.rt.sessions
            .refresh(&p.refresh, ip(), &UserAgent::from_bytes(b""))
            .await;
    if let Some(d) = r.as_ref().ok().and_then(|t| t.delivery.as_ref()) {
        d.delivered();
    }
    r
}

/// Past the access token's lifetime (5 min): the next request refreshes.
fn expire_access(s: &Setup) {
    s.clock.advance(5 * 60 + 1);
}

// --- The grace window, to the millisecond ------------------------------------------------------

#[tokio::test]
async fn the_grace_window_ends_at_the_millisecond_not_the_next_whole_second() {
    // (milliseconds after the rotation, whether the previous token is still accepted)
    for (after_ms, accepted) in [
        (0, true),
        (700, true),
        (1000, true),
        (1001, false),
        (1300, false),
        (1999, false),
    ] {
        let s = setup();
        let p0 = login(&s).await;
        expire_access(&s);
        let (p1, f) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
        deliver(&f);
        s.clock.advance_ms(after_ms);
        let again = refresh(&s, &p0).await;
        match (accepted, &again) {
            (true, Ok(t)) => assert_eq!(
                Pair::of(t).sid(&s.rt),
                p1.sid(&s.rt),
                "{after_ms} ms: the token already issued"
            ),
            (false, Err(RefreshError::Reused)) => {
                assert!(record(&s, &p1).await.is_none(), "{after_ms} ms: revoked");
            }
            _ => panic!("previous token {after_ms} ms after the rotation: {again:?}"),
        }
    }
}

#[tokio::test]
async fn a_rotation_in_the_middle_of_a_second_has_a_whole_grace_window() {
    // Rotated at .600 s: whole seconds ended the window at .999 of the next second (1.4 s)
    // or, with `<=`, let it run to 2.399 s; it is 1.000 s.
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    s.clock.advance_ms(600);
    let (_, f) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
    deliver(&f);
    s.clock.advance_ms(999);
    assert!(refresh(&s, &p0).await.is_ok(), "999 ms after");
    s.clock.advance_ms(2);
    assert!(matches!(refresh(&s, &p0).await, Err(RefreshError::Reused)));
}

// --- A rotation whose answer is lost -----------------------------------------------------------

#[tokio::test]
async fn a_lost_answer_keeps_the_previous_refresh_token_working_past_the_grace() {
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    let (_, f) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
    drop(f); // the client went away: the service future and its response are dropped
    settle().await;
    let rec = record(&s, &p0)
        .await
        .unwrap_or_else(|| panic!("session gone"));
    assert!(rec.prev_open, "reopened: {rec:?}");
    assert_eq!(s.rt.metrics.refreshes_undelivered.get(), 1);

    // Minutes later the browser comes back with the cookies it still has.
    s.clock.advance(4 * 60);
    let p1 = reissued(decide_with(&s.rt, &p0.header(&s.rt)).await);
    assert_eq!(p1.sid(&s.rt), p0.sid(&s.rt), "the same session goes on");
    // Using the new token closes the window: the old one is a rotated-out token again.
    let p2 = Pair::of(&refresh(&s, &p1).await.unwrap_or_else(|e| panic!("{e}")));
    s.clock.advance(2);
    assert!(matches!(refresh(&s, &p0).await, Err(RefreshError::Reused)));
    assert!(refresh(&s, &p2).await.is_err(), "reuse ended the session");
}

#[tokio::test]
async fn a_lost_answer_is_not_undone_when_a_request_of_the_same_flight_delivered_it() {
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    let cookie = p0.header(&s.rt);
    // Two requests of one page at once: one flight, one rotation, one delivery.
    let (a, b) = tokio::join!(decide_with(&s.rt, &cookie), decide_with(&s.rt, &cookie));
    let ((pa, fa), (pb, fb)) = (rotated(a), rotated(b));
    assert_eq!(pa.refresh, pb.refresh, "one rotation for both");
    deliver(&fb);
    drop(fa);
    drop(fb);
    settle().await;
    let rec = record(&s, &p0)
        .await
        .unwrap_or_else(|| panic!("session gone"));
    assert!(!rec.prev_open, "delivered once is delivered: {rec:?}");
    s.clock.advance(2);
    assert!(matches!(refresh(&s, &p0).await, Err(RefreshError::Reused)));
}

#[tokio::test]
async fn a_parallel_answer_within_the_grace_still_works_after_a_lost_rotation() {
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    let (_, lost) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
    // Another tab, within the grace, is answered with the token already issued — and that
    // answer arrives.
    s.clock.advance_ms(300);
    let parallel = Pair::of(&refresh(&s, &p0).await.unwrap_or_else(|e| panic!("{e}")));
    drop(lost);
    settle().await;
    // A rollback would have made the parallel answer's token a rotated-out one.
    s.clock.advance(60);
    let next = refresh(&s, &parallel).await;
    assert!(next.is_ok(), "the token the browser holds now: {next:?}");
}

#[tokio::test]
async fn a_lost_answer_never_brings_back_an_ended_session() {
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    let (p1, lost) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
    let why = crate::sessions::Ending {
        event: "logout",
        ip: ip(),
        reason: None,
    };
    let sid = p1.sid(&s.rt);
    let ended = s.rt.sessions.end("alice", &sid, why).await;
    assert!(ended.is_ok());
    drop(lost);
    settle().await;
    assert!(record(&s, &p0).await.is_none(), "still ended");
    s.clock.advance(60);
    assert!(matches!(
        decide_with(&s.rt, &p0.header(&s.rt)).await,
        Decision::Refuse(Refusal::Unauthenticated { .. })
    ));
}

#[tokio::test]
async fn a_lost_answer_never_undoes_a_later_rotation() {
    let s = setup();
    let p0 = login(&s).await;
    expire_access(&s);
    let (_, lost) = rotated(decide_with(&s.rt, &p0.header(&s.rt)).await);
    // Within the grace another request got the new token, and it was used already.
    let p1 = Pair::of(&refresh(&s, &p0).await.unwrap_or_else(|e| panic!("{e}")));
    let p2 = Pair::of(&refresh(&s, &p1).await.unwrap_or_else(|e| panic!("{e}")));
    drop(lost);
    settle().await;
    let rec = record(&s, &p0)
        .await
        .unwrap_or_else(|| panic!("session gone"));
    assert!(!rec.prev_open, "nothing reopened: {rec:?}");
    assert_eq!(s.rt.metrics.refreshes_undelivered.get(), 0);
    s.clock.advance(2);
    assert!(matches!(refresh(&s, &p0).await, Err(RefreshError::Reused)));
    assert!(refresh(&s, &p2).await.is_err());
}

// --- Revocations while the feed is out of sync -------------------------------------------------

#[tokio::test]
async fn out_of_sync_a_session_ended_elsewhere_is_refused() {
    let s = setup();
    let gone = login(&s).await;
    let kept = login(&s).await;
    s.rt.sessions.revoked().set_synced(false);
    // Another instance ends it: the store knows, this instance's set does not.
    let revoked = s.store.inner.revoke("alice", &gone.sid(&s.rt), 301).await;
    assert!(revoked.is_ok_and(|r| r));
    assert!(matches!(
        decide_with(&s.rt, &gone.access_only(&s.rt)).await,
        Decision::Refuse(Refusal::Unauthenticated { .. })
    ));
    assert!(matches!(
        decide_with(&s.rt, &kept.access_only(&s.rt)).await,
        Decision::Forward(_)
    ));
    // Remembered here: refused without asking again, in sync or not.
    s.rt.sessions.revoked().set_synced(true);
    assert!(s.rt.sessions.revoked().is_revoked(&gone.sid(&s.rt)));
}

#[tokio::test]
async fn out_of_sync_a_confirmation_holds_for_one_second() {
    let s = setup();
    let p = login(&s).await;
    s.rt.sessions.revoked().set_synced(false);
    let cookie = p.access_only(&s.rt);
    assert!(matches!(
        decide_with(&s.rt, &cookie).await,
        Decision::Forward(_)
    ));
    let calls = s.store.calls.load(Ordering::SeqCst);
    assert!(
        s.store
            .inner
            .revoke("alice", &p.sid(&s.rt), 301)
            .await
            .is_ok()
    );
    s.clock.advance_ms(999);
    assert!(matches!(
        decide_with(&s.rt, &cookie).await,
        Decision::Forward(_)
    ));
    assert_eq!(
        s.store.calls.load(Ordering::SeqCst),
        calls,
        "confirmed a moment ago"
    );
    s.clock.advance_ms(1);
    assert!(matches!(
        decide_with(&s.rt, &cookie).await,
        Decision::Refuse(Refusal::Unauthenticated { .. })
    ));
}

#[tokio::test]
async fn in_sync_requests_never_ask_the_store() {
    let s = setup();
    let p = login(&s).await;
    let calls = s.store.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(
            decide_with(&s.rt, &p.access_only(&s.rt)).await,
            Decision::Forward(_)
        ));
    }
    assert_eq!(s.store.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test]
async fn out_of_sync_with_the_store_down_access_tokens_are_honoured_and_nobody_is_signed_out() {
    let s = setup();
    let p = login(&s).await;
    s.rt.sessions.revoked().set_synced(false);
    s.store.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        decide_with(&s.rt, &p.access_only(&s.rt)).await,
        Decision::Forward(_)
    ));
    // One failure is enough: for a second nobody waits on the store.
    let calls = s.store.calls.load(Ordering::SeqCst);
    s.clock.advance_ms(500);
    assert!(matches!(
        decide_with(&s.rt, &p.access_only(&s.rt)).await,
        Decision::Forward(_)
    ));
    assert_eq!(s.store.calls.load(Ordering::SeqCst), calls);
    // An expired access token cannot refresh: 503, the cookies stay.
    expire_access(&s);
    match decide_with(&s.rt, &p.header(&s.rt)).await {
        Decision::Refuse(r @ Refusal::StoreUnavailable { .. }) => {
            assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("refresh with the store down: {other:?}"),
    }
}

#[tokio::test]
async fn the_feed_sync_state_is_a_metric() {
    let s = setup();
    let line = |rt: &Runtime| {
        rt.metrics
            .render()
            .lines()
            .find(|l| l.starts_with("sessiongate_revocation_feed_synced "))
            .map(str::to_owned)
    };
    assert_eq!(
        line(&s.rt).as_deref(),
        Some("sessiongate_revocation_feed_synced 1")
    );
    s.rt.sessions.revoked().set_synced(false);
    assert_eq!(
        line(&s.rt).as_deref(),
        Some("sessiongate_revocation_feed_synced 0")
    );
}

impl Pair {
    fn access_only(&self, rt: &Runtime) -> String {
        format!("{}={}", rt.sessions.cookies().access, self.access)
    }
}
