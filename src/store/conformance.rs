//! What every [`SessionStore`] must do with sessions signed in through an identity provider,
//! written once and run on each store: the memory store's unit tests, and the end-to-end
//! suite against a real `redis-server` and a real Redis Cluster (`tests/e2e/store_idp.rs`).
//!
//! Threats and failures these behaviours defend against:
//! - a back-channel logout that misses a session (the index lost it on some path, or a
//!   rotation, reopen or touch rewrote the record without its IdP link), or that ends another
//!   user's or another provider's session (a key that reads as another one);
//! - a session that an IdP refresh brings back after it ended (logout, reuse, idle), or whose
//!   refresh-token state an identity update rewinds;
//! - a replayed logout token accepted twice, even by instances racing on it; two instances
//!   re-checking one session with the provider at once;
//! - an index that grows without bound under one provider session or subject.
//!
//! Each function panics on the first difference, naming it. Names are random per call, so the
//! behaviours can share one store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

use std::sync::Arc;
use std::time::Duration;

use super::{
    IDP_INDEX_MAX, IdpKey, IdpLink, RotateOutcome, RotatePolicy, SessionRecord, SessionStore,
};
use crate::util::{now_unix, random_token};
use crate::web::user_agent::UserAgent;

/// A name no other call uses: `what` and a random suffix.
pub fn unique(what: &str) -> String {
    format!("{what}-{}", random_token(6))
}

/// A provider link with every field set, and values that look like keys, hash tags, JSON and
/// separators (a store must hand them back byte for byte).
pub fn link(provider: &str, sub: &str, sid: Option<&str>) -> IdpLink {
    IdpLink {
        provider: provider.into(),
        sub: sub.into(),
        sid: sid.map(str::to_string),
        id_token_sealed: Some(format!("v1.{}.\"{{x}}\":\n\u{e9}", random_token(40))),
        refresh_token_sealed: Some(format!("v1.{}", random_token(60))),
        checked_at: now_unix(),
    }
}

/// A live session of `user` that started now and ends `ttl` seconds from now.
pub fn record(user: &str, ttl: u64, idp: Option<IdpLink>) -> SessionRecord {
    let now = now_unix();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
    SessionRecord {
        sid: random_token(24),
        user: user.into(),
        roles: vec!["staff".into(), "r:{x}".into()],
        created: now,
        last_seen: now,
        abs_end: now + ttl,
        cur_jti: random_token(16),
        prev_jti: None,
        rotated_at_ms: now * 1000,
        prev_open: false,
        ip: "203.0.113.9".into(),
        user_agent: ua.into(),
        // As the gateway derives it (the memory store derives it again when read).
        device: UserAgent::from_bytes(ua.as_bytes()).device().label(),
        idp,
        auth_time: now,
        refreshes: 0,
    }
}

fn policy(grace_ms: u64) -> RotatePolicy {
    RotatePolicy {
        now: now_unix(),
        now_ms: now_unix() * 1000,
        grace_ms,
        idle_secs: 600,
        revocation_ttl: 60,
        window_secs: 60,
    }
}

/// `idp_sessions`, sorted.
pub async fn found(s: &dyn SessionStore, provider: &str, key: IdpKey<'_>) -> Vec<(String, String)> {
    let mut v = s
        .idp_sessions(provider, key)
        .await
        .unwrap_or_else(|e| panic!("idp_sessions: {e}"));
    v.sort();
    v
}

fn pair(r: &SessionRecord) -> (String, String) {
    (r.user.clone(), r.sid.clone())
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// Create → get → list → rotate → grace → reopen → touch → get, and the outcomes that end a
/// session (reuse, idle): the IdP link comes back unchanged from every one of them.
pub async fn idp_link_survives_every_path(s: &dyn SessionStore) {
    let user = unique("alice");
    let l = link(&unique("kc"), &unique("sub"), Some(&unique("{sid}")));
    let rec = record(&user, 3600, Some(l.clone()));
    s.create(rec.clone()).await.unwrap();
    let got = s.get(&user, &rec.sid).await.unwrap().expect("created");
    assert_eq!(got.idp.as_ref(), Some(&l), "get after create");
    assert_eq!(got, rec, "the whole record after create");
    let listed = s.list(&user).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].idp.as_ref(), Some(&l), "list");

    let new_jti = random_token(16);
    match s
        .rotate(&user, &rec.sid, &rec.cur_jti, &new_jti, policy(10_000))
        .await
        .unwrap()
    {
        RotateOutcome::Rotated(r) => assert_eq!(r.idp.as_ref(), Some(&l), "rotated"),
        other => panic!("rotate: {other:?}"),
    }
    match s
        .rotate(&user, &rec.sid, &rec.cur_jti, "unused", policy(10_000))
        .await
        .unwrap()
    {
        RotateOutcome::Grace(r) => assert_eq!(r.idp.as_ref(), Some(&l), "grace"),
        other => panic!("grace: {other:?}"),
    }
    assert!(
        s.reopen(&user, &rec.sid, &rec.cur_jti, &new_jti)
            .await
            .unwrap()
    );
    s.touch(&[(user.clone(), rec.sid.clone(), now_unix() + 1)])
        .await
        .unwrap();
    let got = s.get(&user, &rec.sid).await.unwrap().expect("still there");
    assert_eq!(
        got.idp.as_ref(),
        Some(&l),
        "get after rotate, reopen and touch"
    );
    assert!(got.prev_open && got.cur_jti == new_jti);
    assert_eq!(
        s.list(&user).await.unwrap()[0].idp.as_ref(),
        Some(&l),
        "list after"
    );

    // Reuse: the outcome still names the provider session (the caller may log it out there).
    match s
        .rotate(&user, &rec.sid, "an-older-jti", "x", policy(0))
        .await
        .unwrap()
    {
        RotateOutcome::Reused(r) => assert_eq!(r.idp.as_ref(), Some(&l), "reused"),
        other => panic!("reuse: {other:?}"),
    }
    let mut idle = record(&user, 3600, Some(l.clone()));
    idle.last_seen = now_unix() - 601;
    s.create(idle.clone()).await.unwrap();
    match s
        .rotate(&user, &idle.sid, &idle.cur_jti, "x", policy(0))
        .await
        .unwrap()
    {
        RotateOutcome::Idle(r) => assert_eq!(r.idp.as_ref(), Some(&l), "idle"),
        other => panic!("idle: {other:?}"),
    }
}

/// A session without a provider stays one through every path, and is in no IdP index.
pub async fn records_without_idp_load(s: &dyn SessionStore) {
    let user = unique("bob");
    let rec = record(&user, 3600, None);
    s.create(rec.clone()).await.unwrap();
    assert_eq!(s.get(&user, &rec.sid).await.unwrap(), Some(rec.clone()));
    match s
        .rotate(&user, &rec.sid, &rec.cur_jti, "j2", policy(10_000))
        .await
        .unwrap()
    {
        RotateOutcome::Rotated(r) => assert_eq!(r.idp, None),
        other => panic!("rotate: {other:?}"),
    }
    assert_eq!(s.list(&user).await.unwrap()[0].idp, None);
    assert!(found(s, "", IdpKey::Sub("")).await.is_empty());
    // A record created again under its sid, without the link it had, has none.
    let (p, x) = (unique("kc"), unique("sub"));
    let linked = record(&user, 3600, Some(link(&p, &x, None)));
    s.create(linked.clone()).await.unwrap();
    let again = SessionRecord {
        idp: None,
        ..linked.clone()
    };
    s.create(again.clone()).await.unwrap();
    assert_eq!(s.get(&user, &linked.sid).await.unwrap(), Some(again));
    assert!(found(s, &p, IdpKey::Sub(&x)).await.is_empty());
}

/// `Sid` finds the sessions of one provider session, `Sub` every session of the subject at that
/// provider; nothing of another provider, another subject, or a key spelled nearly alike.
pub async fn idp_sessions_by_sid_and_sub(s: &dyn SessionStore) {
    let (p, q) = (unique("kc"), unique("okta"));
    let (u, v) = (unique("u"), unique("v"));
    let (x, y) = (unique("Sub"), unique("sub"));
    let (s1, s2) = (unique("sid"), unique("sid"));
    let a = record(&u, 3600, Some(link(&p, &x, Some(&s1))));
    let b = record(&u, 3600, Some(link(&p, &x, Some(&s2))));
    let c = record(&u, 3600, Some(link(&p, &x, None)));
    let d = record(&u, 3600, Some(link(&q, &x, Some(&s1))));
    let e = record(&v, 3600, Some(link(&p, &y, Some(&s1))));
    let plain = record(&u, 3600, None);
    for r in [&a, &b, &c, &d, &e, &plain] {
        s.create(r.clone()).await.unwrap();
    }
    assert_eq!(
        found(s, &p, IdpKey::Sid(&s1)).await,
        sorted(vec![pair(&a), pair(&e)])
    );
    assert_eq!(found(s, &p, IdpKey::Sid(&s2)).await, vec![pair(&b)]);
    assert_eq!(
        found(s, &p, IdpKey::Sub(&x)).await,
        sorted(vec![pair(&a), pair(&b), pair(&c)])
    );
    assert_eq!(found(s, &q, IdpKey::Sub(&x)).await, vec![pair(&d)]);
    assert_eq!(found(s, &q, IdpKey::Sid(&s1)).await, vec![pair(&d)]);
    assert_eq!(found(s, &p, IdpKey::Sub(&y)).await, vec![pair(&e)]);
    // Neighbours: other case, a prefix, an extension, the other kind, empty values, a provider
    // name that is the other's with a different case.
    let upper = p.to_uppercase();
    for (prov, key) in [
        (p.as_str(), IdpKey::Sub(&x.to_lowercase())),
        (p.as_str(), IdpKey::Sub(&x[..x.len() - 1])),
        (p.as_str(), IdpKey::Sub(&format!("{x} "))),
        (p.as_str(), IdpKey::Sid(&x)),
        (p.as_str(), IdpKey::Sub(&s1)),
        (p.as_str(), IdpKey::Sid("")),
        (p.as_str(), IdpKey::Sub("")),
        (upper.as_str(), IdpKey::Sub(&x)),
        ("", IdpKey::Sub(&x)),
    ] {
        assert!(found(s, prov, key).await.is_empty(), "{prov:?} {key:?}");
    }
    // Pairs whose provider and value, joined with ':', read alike ("{p}:x" + "y" and
    // "{p}" + "x:y"), and a hash tag in the value.
    let w = unique("w");
    let px = format!("{p}:x");
    let left = record(&w, 3600, Some(link(&px, "y", Some("y"))));
    let right = record(&w, 3600, Some(link(&p, "x:y", Some("x:y"))));
    let tagged = record(&w, 3600, Some(link(&p, "{x}:y", Some("{x}:y"))));
    for r in [&left, &right, &tagged] {
        s.create(r.clone()).await.unwrap();
    }
    for (prov, value, r) in [
        (&px, "y", &left),
        (&p, "x:y", &right),
        (&p, "{x}:y", &tagged),
    ] {
        assert_eq!(
            found(s, prov, IdpKey::Sub(value)).await,
            vec![pair(r)],
            "{prov} {value}"
        );
        assert_eq!(
            found(s, prov, IdpKey::Sid(value)).await,
            vec![pair(r)],
            "{prov} {value}"
        );
    }
}

/// Logout, logout-all, reuse and idle each take the session out of the index at once.
pub async fn ended_sessions_leave_the_index(s: &dyn SessionStore) {
    let p = unique("kc");
    let (u, x, sid) = (unique("u"), unique("sub"), unique("sid"));
    let mk = || record(&u, 3600, Some(link(&p, &x, Some(&sid))));
    let (a, b, c, d, e) = (mk(), mk(), mk(), mk(), mk());
    let mut idle = mk();
    idle.last_seen = now_unix() - 601;
    for r in [&a, &b, &c, &d, &e, &idle] {
        s.create(r.clone()).await.unwrap();
    }
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await.len(), 6);
    assert!(s.revoke(&u, &a.sid, 60).await.unwrap());
    let reused = s
        .rotate(&u, &b.sid, "an-older-jti", "b2", policy(0))
        .await
        .unwrap();
    assert!(matches!(reused, RotateOutcome::Reused(_)), "{reused:?}");
    let out = s
        .rotate(&u, &idle.sid, &idle.cur_jti, "i2", policy(0))
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Idle(_)), "{out:?}");
    let left = sorted(vec![pair(&c), pair(&d), pair(&e)]);
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await, left);
    assert_eq!(found(s, &p, IdpKey::Sid(&sid)).await, left);
    let mut all = s.revoke_all(&u, 60).await.unwrap();
    all.sort();
    assert_eq!(all.len(), 3);
    assert!(found(s, &p, IdpKey::Sub(&x)).await.is_empty());
    assert!(found(s, &p, IdpKey::Sid(&sid)).await.is_empty());
}

/// One provider session or subject indexes at most [`IDP_INDEX_MAX`] sessions: those that end
/// last; the others stay valid sessions.
pub async fn index_is_bounded(s: &dyn SessionStore) {
    let p = unique("kc");
    let (x, sid) = (unique("sub"), unique("sid"));
    let extra = 6;
    let users: Vec<String> = (0..3).map(|i| unique(&format!("u{i}"))).collect();
    let mut recs = Vec::new();
    for i in 0..IDP_INDEX_MAX + extra {
        let r = record(
            &users[i % 3],
            3600 + i as u64,
            Some(link(&p, &x, Some(&sid))),
        );
        s.create(r.clone()).await.unwrap();
        recs.push(r);
    }
    let newest = sorted(recs[extra..].iter().map(pair).collect());
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await, newest, "by sub");
    assert_eq!(found(s, &p, IdpKey::Sid(&sid)).await, newest, "by sid");
    assert!(s.get(&recs[0].user, &recs[0].sid).await.unwrap().is_some());
    // A session that ends sooner than all of them is not indexed over them either.
    let early = record(&users[0], 60, Some(link(&p, &x, Some(&sid))));
    s.create(early).await.unwrap();
    assert_eq!(
        found(s, &p, IdpKey::Sub(&x)).await,
        newest,
        "an earlier end"
    );
}

/// `update_identity` replaces roles and link, moves the index with the link, and leaves the
/// jti state and times alone.
pub async fn update_identity_replaces_roles_and_link(s: &dyn SessionStore) {
    let p = unique("kc");
    let (u, x, s1, s2) = (unique("u"), unique("sub"), unique("sid"), unique("sid"));
    let rec = record(&u, 3600, Some(link(&p, &x, Some(&s1))));
    s.create(rec.clone()).await.unwrap();
    let new_jti = random_token(16);
    s.rotate(&u, &rec.sid, &rec.cur_jti, &new_jti, policy(10_000))
        .await
        .unwrap();
    let before = s.get(&u, &rec.sid).await.unwrap().unwrap();

    let mut l2 = link(&p, &x, Some(&s2));
    l2.checked_at += 7;
    let roles = vec!["admin".to_string(), "\"q\"".to_string()];
    assert!(
        s.update_identity(&u, &rec.sid, &roles, Some(&l2))
            .await
            .unwrap()
    );
    let after = s.get(&u, &rec.sid).await.unwrap().unwrap();
    let expected = SessionRecord {
        roles: roles.clone(),
        idp: Some(l2.clone()),
        ..before.clone()
    };
    assert_eq!(after, expected, "only roles and link change");
    assert_eq!(found(s, &p, IdpKey::Sid(&s2)).await, vec![pair(&rec)]);
    assert!(
        found(s, &p, IdpKey::Sid(&s1)).await.is_empty(),
        "the old sid"
    );
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await, vec![pair(&rec)]);
    // The jti state is untouched: the previous jti is still in its grace, the current rotates.
    let grace = s
        .rotate(&u, &rec.sid, &rec.cur_jti, "g", policy(10_000))
        .await
        .unwrap();
    assert!(
        matches!(grace, RotateOutcome::Grace(ref r) if r.cur_jti == new_jti),
        "{grace:?}"
    );
    match s
        .rotate(&u, &rec.sid, &new_jti, "j3", policy(10_000))
        .await
        .unwrap()
    {
        RotateOutcome::Rotated(r) => assert_eq!((r.roles, r.idp), (roles.clone(), Some(l2))),
        other => panic!("rotate after update: {other:?}"),
    }
    // No link any more: no index either; the session stays.
    assert!(s.update_identity(&u, &rec.sid, &[], None).await.unwrap());
    assert!(found(s, &p, IdpKey::Sub(&x)).await.is_empty());
    assert!(found(s, &p, IdpKey::Sid(&s2)).await.is_empty());
    let got = s.get(&u, &rec.sid).await.unwrap().unwrap();
    assert_eq!((got.roles.len(), got.idp), (0, None));
}

/// An ended session stays ended: revoked, reused, revoked with all, or never there; another
/// user's session is not this user's.
pub async fn update_identity_never_revives(s: &dyn SessionStore) {
    let p = unique("kc");
    let (u, x) = (unique("u"), unique("sub"));
    let l = link(&p, &x, Some(&unique("sid")));
    let roles = vec!["admin".to_string()];
    let revoked = record(&u, 3600, Some(l.clone()));
    let reused = record(&u, 3600, Some(l.clone()));
    let other = record(&unique("v"), 3600, Some(l.clone()));
    for r in [&revoked, &reused, &other] {
        s.create(r.clone()).await.unwrap();
    }
    assert!(s.revoke(&u, &revoked.sid, 60).await.unwrap());
    s.rotate(&u, &reused.sid, "stolen", "x", policy(0))
        .await
        .unwrap();
    for sid in [&revoked.sid, &reused.sid, &random_token(24), &other.sid] {
        assert!(
            !s.update_identity(&u, sid, &roles, Some(&l)).await.unwrap(),
            "update_identity on {sid} of {u}"
        );
        assert_eq!(s.get(&u, sid).await.unwrap(), None, "revived {sid}");
    }
    assert!(s.list(&u).await.unwrap().is_empty());
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await, vec![pair(&other)]);
    assert_eq!(
        s.get(&other.user, &other.sid).await.unwrap(),
        Some(other.clone())
    );
    let all = unique("w");
    let r = record(&all, 3600, Some(l.clone()));
    s.create(r.clone()).await.unwrap();
    s.revoke_all(&all, 60).await.unwrap();
    assert!(
        !s.update_identity(&all, &r.sid, &roles, Some(&l))
            .await
            .unwrap()
    );
    assert_eq!(s.get(&all, &r.sid).await.unwrap(), None);
}

/// `first_use`: once `true`, then `false` until `until` has passed, then `true` again; an
/// `until` that is not in the future is never `true`.
pub async fn first_use_once_then_expires(s: &dyn SessionStore) {
    let k = unique("jti");
    let until = now_unix() + 1;
    assert!(s.first_use(&k, until).await.unwrap(), "first");
    assert!(!s.first_use(&k, until).await.unwrap(), "again");
    assert!(
        !s.first_use(&k, until + 100).await.unwrap(),
        "again, later until"
    );
    assert!(
        s.first_use(&format!("{k}x"), until).await.unwrap(),
        "another key"
    );
    assert!(
        s.first_use(&k.to_uppercase(), until).await.unwrap(),
        "other case"
    );
    let past = unique("jti");
    assert!(
        !s.first_use(&past, now_unix() - 1).await.unwrap(),
        "until in the past"
    );
    assert!(!s.first_use(&past, 0).await.unwrap(), "until 0");
    assert!(
        s.first_use(&past, now_unix() + 60).await.unwrap(),
        "past untils left nothing"
    );
    // Expiry is the clock itself: wait for it to pass `until`.
    while now_unix() <= until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s.first_use(&k, now_unix() + 60).await.unwrap(),
        "after until"
    );
    assert!(
        !s.first_use(&k, now_unix() + 60).await.unwrap(),
        "and recorded again"
    );
}

/// 32 tasks racing on one key (on a multi-threaded runtime): exactly one `true`, round after
/// round, whatever `until` each asks for.
pub async fn first_use_race(s: Arc<dyn SessionStore>) {
    for round in 0..5u64 {
        let k = unique("race");
        let tasks: Vec<_> = (0..32u64)
            .map(|i| {
                let (s, k) = (s.clone(), k.clone());
                tokio::spawn(async move { s.first_use(&k, now_unix() + 30 + i % 3).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}: {wins} tasks won one key");
    }
}

/// The refresh-rate count: each rotation within `window_secs` of the one before adds one; grace
/// answers add none; a rotation `window_secs` or more after the one before starts again at 1.
pub async fn rotations_are_counted_per_window(s: &dyn SessionStore) {
    let user = unique("rate");
    let rec = record(&user, 3600, None);
    s.create(rec.clone()).await.unwrap();
    let mut jti = rec.cur_jti.clone();
    let mut p = policy(60_000);
    // The record was created at `now`: a rotation one window later is the first of a run.
    p.now += p.window_secs;
    p.now_ms = p.now * 1000;
    for n in 1..=4u32 {
        let next = random_token(12);
        match s.rotate(&user, &rec.sid, &jti, &next, p).await.unwrap() {
            RotateOutcome::Rotated(r) => assert_eq!(r.refreshes, n, "rotation {n}"),
            other => panic!("rotate {n}: {other:?}"),
        }
        // The previous token within the grace: answered, not counted.
        match s.rotate(&user, &rec.sid, &jti, "unused", p).await.unwrap() {
            RotateOutcome::Grace(r) => assert_eq!(r.refreshes, n, "grace {n}"),
            other => panic!("grace {n}: {other:?}"),
        }
        jti = next;
        p.now_ms += 1000 * p.window_secs - 1;
        p.now = p.now_ms / 1000;
    }
    p.now_ms += 1;
    p.now = p.now_ms / 1000;
    match s.rotate(&user, &rec.sid, &jti, "j-late", p).await.unwrap() {
        RotateOutcome::Rotated(r) => assert_eq!(r.refreshes, 1, "a whole window after the last"),
        other => panic!("rotate after the window: {other:?}"),
    }
}

/// `rate_take` (rate limits) behaves as [`super::gcra::Gcra::take`] computes, on the store's
/// own clock: a burst, then refusals with the right wait, a take of many granting what is
/// there, tokens coming back one interval at a time, and 24 racing takes never granting more
/// than the bucket holds (one atomic step per take).
pub async fn rate_take_matches_gcra(s: Arc<dyn SessionStore>) {
    use super::gcra::Gcra;
    let g = Gcra::new(5, Duration::from_secs(2), 5); // T = 400 ms
    let key = unique("rl");
    // The model, at a fixed instant: the store's takes follow within far less than T.
    let mut tat = 0;
    for i in 0..6 {
        let (t, want) = g.take(tat, 1_000_000_000, 1);
        tat = t;
        let got = s.rate_take(&key, g, 1).await.unwrap();
        assert_eq!(
            (got.granted, got.remaining),
            (want.granted, want.remaining),
            "take {i}"
        );
        if want.granted == 0 {
            assert!(
                got.retry_after_us > 250_000 && got.retry_after_us <= 400_000,
                "retry after {} µs",
                got.retry_after_us
            );
            assert!(
                got.reset_us > 1_850_000 && got.reset_us <= 2_000_000,
                "reset in {} µs",
                got.reset_us
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let back = s.rate_take(&key, g, 3).await.unwrap();
    assert_eq!(back.granted, 1, "one interval later, one token");
    // A take of many gets what there is; another key is another bucket.
    let many = s
        .rate_take(&unique("rl"), Gcra::new(10, Duration::from_secs(1), 4), 16)
        .await
        .unwrap();
    assert_eq!((many.granted, many.remaining), (4, 0));
    // Racing takes: exactly the burst is granted.
    let key = unique("rl-race");
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.rate_take(&key, g, 1).await.unwrap().granted })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, 5, "racing takes granted {granted} of a burst of 5");
}

/// The second factor's state: a record set, read and removed with everything that goes with
/// it; a pending enrolment kept until its `until`; time steps accepted only forward; recovery
/// codes consumed once; the grace's start kept from its first asking. Users never share any
/// of it (names that look like hash tags and separators).
pub async fn second_factor_state(s: &dyn SessionStore) {
    let user = unique("u:{x}");
    let other = format!("{user}:2fa");
    let rec = super::FactorRecord {
        secret_sealed: format!("k.{}", random_token(40)),
        enrolled_at: now_unix(),
    };
    assert_eq!(s.factor(&user).await.unwrap(), None);
    assert!(!s.use_factor_step(&user, 10).await.unwrap(), "no factor");
    let now = now_unix();
    s.put_pending_factor(&user, "pending-1", now + 60)
        .await
        .unwrap();
    s.put_pending_factor(&user, "pending-2", now + 60)
        .await
        .unwrap();
    assert_eq!(
        s.pending_factor(&user).await.unwrap().as_deref(),
        Some("pending-2")
    );
    assert_eq!(s.pending_factor(&other).await.unwrap(), None);
    let hashes: Vec<String> = (0..10)
        .map(|i| format!("h{i}-{}", random_token(8)))
        .collect();
    s.set_factor(&user, &rec, 100, &hashes).await.unwrap();
    assert_eq!(s.factor(&user).await.unwrap().as_ref(), Some(&rec));
    assert_eq!(s.factor(&other).await.unwrap(), None);
    assert_eq!(s.pending_factor(&user).await.unwrap(), None, "confirmed");
    assert!(
        !s.use_factor_step(&user, 100).await.unwrap(),
        "the confirming step"
    );
    assert!(
        !s.use_factor_step(&user, 99).await.unwrap(),
        "an earlier step"
    );
    assert!(s.use_factor_step(&user, 101).await.unwrap());
    assert!(!s.use_factor_step(&user, 101).await.unwrap(), "replay");
    assert!(s.use_factor_step(&user, 1_000_000_000).await.unwrap());
    assert_eq!(s.recovery_codes_left(&user).await.unwrap(), 10);
    assert!(s.use_recovery_code(&user, &hashes[4]).await.unwrap());
    assert!(
        !s.use_recovery_code(&user, &hashes[4]).await.unwrap(),
        "used"
    );
    assert!(
        !s.use_recovery_code(&other, &hashes[5]).await.unwrap(),
        "another user"
    );
    assert!(!s.use_recovery_code(&user, "nope").await.unwrap());
    assert_eq!(s.recovery_codes_left(&user).await.unwrap(), 9);
    assert_eq!(s.factor_grace_start(&user, 500).await.unwrap(), 500);
    assert_eq!(s.factor_grace_start(&user, 900).await.unwrap(), 500, "kept");
    assert!(s.remove_factor(&user).await.unwrap());
    assert!(!s.remove_factor(&user).await.unwrap(), "gone");
    assert_eq!(s.factor(&user).await.unwrap(), None);
    assert_eq!(s.recovery_codes_left(&user).await.unwrap(), 0);
    assert!(!s.use_recovery_code(&user, &hashes[5]).await.unwrap());
    // A new enrolment starts from its own step, not the old one's.
    s.set_factor(&user, &rec, 5, &[]).await.unwrap();
    assert!(s.use_factor_step(&user, 6).await.unwrap());
    assert_eq!(s.recovery_codes_left(&user).await.unwrap(), 0);
    // A pending enrolment expires.
    let until = now_unix() + 1;
    s.put_pending_factor(&other, "p", until).await.unwrap();
    while now_unix() <= until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.pending_factor(&other).await.unwrap(), None, "expired");
}

/// Passkeys: added up to the limit (replacing one by its id does not count twice), updated only
/// while they exist (a sign-in never revives a revoked one), removed once; users never share
/// them; the second factor's reset leaves them to their own removal.
pub async fn passkeys_state(s: &dyn SessionStore) {
    use super::PasskeyWrite::{Add, Update};
    let user = unique("u:{x}");
    let other = format!("{user}:passkeys");
    assert!(s.passkeys(&user).await.unwrap().is_empty());
    assert!(
        s.put_passkey(&user, "a", "rec-a", Add { max: 2 })
            .await
            .unwrap()
    );
    assert!(
        s.put_passkey(&user, "b", "rec-b", Add { max: 2 })
            .await
            .unwrap()
    );
    assert!(
        !s.put_passkey(&user, "c", "rec-c", Add { max: 2 })
            .await
            .unwrap(),
        "over the limit"
    );
    assert!(
        s.put_passkey(&user, "a", "rec-a2", Add { max: 2 })
            .await
            .unwrap(),
        "the same id again replaces it"
    );
    assert!(s.put_passkey(&user, "b", "rec-b2", Update).await.unwrap());
    let mut got = s.passkeys(&user).await.unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![("a".into(), "rec-a2".into()), ("b".into(), "rec-b2".into())]
    );
    assert!(s.passkeys(&other).await.unwrap().is_empty(), "another user");
    assert!(!s.remove_passkey(&other, "a").await.unwrap(), "not theirs");
    assert!(s.remove_passkey(&user, "a").await.unwrap());
    assert!(!s.remove_passkey(&user, "a").await.unwrap(), "gone");
    assert!(
        !s.put_passkey(&user, "a", "rec-a3", Update).await.unwrap(),
        "an update never revives a removed passkey"
    );
    s.remove_factor(&user).await.unwrap();
    assert_eq!(s.passkeys(&user).await.unwrap().len(), 1);
}

/// 16 tasks racing to use one time step and one recovery code: one winner each.
pub async fn second_factor_race(s: Arc<dyn SessionStore>) {
    let user = unique("race");
    let rec = super::FactorRecord {
        secret_sealed: "k.x".into(),
        enrolled_at: now_unix(),
    };
    s.set_factor(&user, &rec, 1, &["code".to_string()])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (s, u) = (s.clone(), user.clone());
            tokio::spawn(async move {
                (
                    s.use_factor_step(&u, 2).await.unwrap(),
                    s.use_recovery_code(&u, "code").await.unwrap(),
                )
            })
        })
        .collect();
    let (mut steps, mut codes) = (0, 0);
    for t in tasks {
        let (a, b) = t.await.unwrap();
        steps += usize::from(a);
        codes += usize::from(b);
    }
    assert_eq!((steps, codes), (1, 1));
}
