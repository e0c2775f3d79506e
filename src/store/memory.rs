//! The embedded store for one instance: a map behind a mutex. Every operation is a few
//! hash-map steps under the lock, so each is atomic and never awaits while holding it.
//!
//! Records are kept compact (about 400 bytes a session rather than the ~740 of the plain
//! `SessionRecord`): each record is one boxed allocation behind a small table entry, the user
//! name and roles are shared by all of a user's sessions, the IP is an `IpAddr`, and the device
//! label is derived from the user agent when read rather than stored.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::web::user_agent::UserAgent;

use super::{
    FeedEvent, Revocation, RotateOutcome, RotatePolicy, SessionRecord, SessionStore, StoreError,
};

/// A session as held in memory.
struct Stored {
    user: Arc<str>,
    roles: Arc<[Box<str>]>,
    created: u64,
    last_seen: u64,
    abs_end: u64,
    /// Unix milliseconds.
    rotated_at_ms: u64,
    cur_jti: Box<str>,
    prev_jti: Option<Box<str>>,
    prev_open: bool,
    /// Parsed when it is an address (always, for sessions the gateway starts).
    ip: Result<IpAddr, Box<str>>,
    user_agent: Box<str>,
}

impl Stored {
    fn to_record(&self, sid: &str) -> SessionRecord {
        SessionRecord {
            idp: None,
            sid: sid.to_string(),
            user: self.user.to_string(),
            roles: self.roles.iter().map(|r| r.to_string()).collect(),
            created: self.created,
            last_seen: self.last_seen,
            abs_end: self.abs_end,
            cur_jti: self.cur_jti.to_string(),
            prev_jti: self.prev_jti.as_ref().map(|j| j.to_string()),
            rotated_at_ms: self.rotated_at_ms,
            prev_open: self.prev_open,
            ip: match &self.ip {
                Ok(ip) => ip.to_string(),
                Err(raw) => raw.to_string(),
            },
            user_agent: self.user_agent.to_string(),
            device: UserAgent::from_bytes(self.user_agent.as_bytes())
                .device()
                .label(),
        }
    }
}

/// Bounded by what succeeded logins create: a session lives until its idle timeout or
/// absolute end and `MemoryStore::sweep` (every 15 s) removes it then, and `recent` holds the
/// revocations of the last access-token lifetime, popped by the same sweep. Logins are paced by
/// the argon2 verification slots (`login::users`), so a client cannot mint sessions faster.
#[derive(Default)]
struct Inner {
    sessions: HashMap<Arc<str>, Box<Stored>>,
    by_user: HashMap<Arc<str>, Vec<Arc<str>>>,
    recent: VecDeque<Revocation>,
}

impl Inner {
    fn remove(&mut self, sid: &str) -> Option<(Arc<str>, Box<Stored>)> {
        let (key, rec) = self.sessions.remove_entry(sid)?;
        if let Some(list) = self.by_user.get_mut(&rec.user) {
            list.retain(|s| **s != *sid);
            if list.is_empty() {
                self.by_user.remove(&rec.user);
            }
        }
        Some((key, rec))
    }

    /// The shared user name and roles for a new session of `user`.
    fn interned(&self, user: &str, roles: &[String]) -> (Arc<str>, Arc<[Box<str>]>) {
        let existing = self.by_user.get_key_value(user).and_then(|(u, sids)| {
            let roles_of = sids
                .first()
                .and_then(|s| self.sessions.get(s))
                .map(|r| r.roles.clone());
            Some((u.clone(), roles_of?))
        });
        match existing {
            Some((u, r))
                if r.len() == roles.len() && r.iter().zip(roles).all(|(a, b)| **a == **b) =>
            {
                (u, r)
            }
            Some((u, _)) => (u, roles.iter().map(|r| r.as_str().into()).collect()),
            None => (
                user.into(),
                roles.iter().map(|r| r.as_str().into()).collect(),
            ),
        }
    }
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Bounded (1024 events): a subscriber that falls behind gets `Lagged` and resynchronises.
    feed: broadcast::Sender<FeedEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            feed: broadcast::channel(1024).0,
        }
    }

    fn record_revocation(&self, inner: &mut Inner, sid: &str, until: u64) {
        let r = Revocation {
            sid: sid.to_string(),
            until,
        };
        inner.recent.push_back(r.clone());
        // Nobody listening is fine: this instance also updates its set directly.
        let _ = self.feed.send(FeedEvent::Revoked(r));
    }

    /// Remove sessions past their absolute end or idle for longer than `idle_secs`, and
    /// revocations nobody needs any more. Returns how many sessions were removed.
    pub fn sweep(&self, now: u64, idle_secs: u64) -> usize {
        let mut inner = self.inner.lock();
        let dead: Vec<Arc<str>> = inner
            .sessions
            .iter()
            .filter(|(_, r)| r.abs_end <= now || now.saturating_sub(r.last_seen) > idle_secs)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in &dead {
            inner.remove(sid);
        }
        while inner.recent.front().is_some_and(|r| r.until <= now) {
            inner.recent.pop_front();
        }
        dead.len()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let (user, roles) = inner.interned(&rec.user, &rec.roles);
        let sid: Arc<str> = rec.sid.as_str().into();
        let stored = Box::new(Stored {
            user: user.clone(),
            roles,
            created: rec.created,
            last_seen: rec.last_seen,
            abs_end: rec.abs_end,
            rotated_at_ms: rec.rotated_at_ms,
            cur_jti: rec.cur_jti.into_boxed_str(),
            prev_jti: rec.prev_jti.map(String::into_boxed_str),
            prev_open: rec.prev_open,
            ip: rec.ip.parse().map_err(|_| rec.ip.into_boxed_str()),
            user_agent: rec.user_agent.into_boxed_str(),
        });
        if let Some((_, old)) = inner.remove(&sid) {
            drop(old);
        }
        inner.by_user.entry(user).or_default().push(sid.clone());
        inner.sessions.insert(sid, stored);
        Ok(())
    }

    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        p: RotatePolicy,
    ) -> Result<RotateOutcome, StoreError> {
        let mut inner = self.inner.lock();
        let Some(rec) = inner.sessions.get_mut(sid) else {
            return Ok(RotateOutcome::NotFound);
        };
        if *rec.user != *user || rec.abs_end <= p.now {
            return Ok(RotateOutcome::NotFound);
        }
        let jti_is = |a: &str, b: &str| crate::util::ct_eq(a.as_bytes(), b.as_bytes());
        let current = jti_is(&rec.cur_jti, presented_jti);
        let accepted_previous = !current
            && (rec.prev_open || p.now_ms.saturating_sub(rec.rotated_at_ms) <= p.grace_ms)
            && rec
                .prev_jti
                .as_deref()
                .is_some_and(|prev| jti_is(prev, presented_jti));
        if (current || accepted_previous) && p.now.saturating_sub(rec.last_seen) > p.idle_secs {
            let (_, rec) = inner
                .remove(sid)
                .unwrap_or_else(|| unreachable!("present above"));
            self.record_revocation(&mut inner, sid, p.now + p.revocation_ttl);
            return Ok(RotateOutcome::Idle(rec.to_record(sid)));
        }
        if current {
            rec.prev_jti = Some(std::mem::replace(&mut rec.cur_jti, new_jti.into()));
            rec.rotated_at_ms = p.now_ms;
            rec.prev_open = false;
            rec.last_seen = p.now;
            return Ok(RotateOutcome::Rotated(rec.to_record(sid)));
        }
        if accepted_previous {
            return Ok(RotateOutcome::Grace(rec.to_record(sid)));
        }
        let (_, rec) = inner
            .remove(sid)
            .unwrap_or_else(|| unreachable!("present above"));
        self.record_revocation(&mut inner, sid, p.now + p.revocation_ttl);
        Ok(RotateOutcome::Reused(rec.to_record(sid)))
    }

    async fn reopen(
        &self,
        user: &str,
        sid: &str,
        prev_jti: &str,
        new_jti: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let Some(rec) = inner.sessions.get_mut(sid).filter(|r| *r.user == *user) else {
            return Ok(false);
        };
        let jti_is = |a: &str, b: &str| crate::util::ct_eq(a.as_bytes(), b.as_bytes());
        let applies = jti_is(&rec.cur_jti, new_jti)
            && rec.prev_jti.as_deref().is_some_and(|p| jti_is(p, prev_jti));
        if applies {
            rec.prev_open = true;
        }
        Ok(applies)
    }

    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .inner
            .lock()
            .sessions
            .get(sid)
            .filter(|r| *r.user == *user)
            .map(|r| r.to_record(sid)))
    }

    async fn revoke(&self, user: &str, sid: &str, ttl: u64) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let existed = inner.sessions.get(sid).is_some_and(|r| *r.user == *user)
            && inner.remove(sid).is_some();
        if existed {
            self.record_revocation(&mut inner, sid, crate::util::now_unix() + ttl);
        }
        Ok(existed)
    }

    async fn revoke_all(&self, user: &str, ttl: u64) -> Result<Vec<String>, StoreError> {
        let mut inner = self.inner.lock();
        let sids: Vec<String> = inner
            .by_user
            .get(user)
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let until = crate::util::now_unix() + ttl;
        for sid in &sids {
            inner.remove(sid);
            self.record_revocation(&mut inner, sid, until);
        }
        Ok(sids)
    }

    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.inner.lock();
        let mut out: Vec<SessionRecord> = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|sid| inner.sessions.get(sid).map(|r| r.to_record(sid)))
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        for (user, sid, at) in seen {
            if let Some(r) = inner
                .sessions
                .get_mut(sid.as_str())
                .filter(|r| *r.user == **user)
            {
                r.last_seen = r.last_seen.max(*at);
            }
        }
        Ok(())
    }

    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        Ok(self
            .inner
            .lock()
            .recent
            .iter()
            .filter(|r| r.until > now)
            .cloned()
            .collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sid: &str, user: &str, now: u64) -> SessionRecord {
        SessionRecord {
            idp: None,
            sid: sid.into(),
            user: user.into(),
            roles: vec![],
            created: now,
            last_seen: now,
            abs_end: now + 1000,
            cur_jti: "j1".into(),
            prev_jti: None,
            rotated_at_ms: now * 1000,
            prev_open: false,
            ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            device: "d".into(),
        }
    }

    fn policy(now: u64) -> RotatePolicy {
        at_ms(now * 1000)
    }

    fn at_ms(now_ms: u64) -> RotatePolicy {
        RotatePolicy {
            now: now_ms / 1000,
            now_ms,
            grace_ms: 10_000,
            idle_secs: 100,
            revocation_ttl: 60,
        }
    }

    #[tokio::test]
    async fn rotation_grace_and_reuse() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        assert!(
            matches!(s.rotate("u", "s1", "j1", "j2", policy(1001)).await.unwrap(), RotateOutcome::Rotated(r) if r.cur_jti == "j2")
        );
        // the previous jti within grace gets the current one
        assert!(
            matches!(s.rotate("u", "s1", "j1", "j3", policy(1005)).await.unwrap(), RotateOutcome::Grace(r) if r.cur_jti == "j2")
        );
        // after the grace it is reuse: the session is gone and its revocation is recorded
        let mut feed = s.subscribe();
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j4", policy(1020)).await.unwrap(),
            RotateOutcome::Reused(_)
        ));
        assert!(matches!(feed.try_recv().unwrap(), FeedEvent::Revoked(r) if r.sid == "s1"));
        assert_eq!(
            s.rotate("u", "s1", "j2", "j5", policy(1021)).await.unwrap(),
            RotateOutcome::NotFound
        );
        assert_eq!(s.recent_revocations(1021).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_older_jti_is_reuse_even_within_grace() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        s.rotate("u", "s1", "j1", "j2", policy(1001)).await.unwrap();
        s.rotate("u", "s1", "j2", "j3", policy(1002)).await.unwrap();
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j4", policy(1003)).await.unwrap(),
            RotateOutcome::Reused(_)
        ));
    }

    #[tokio::test]
    async fn idle_and_absolute_end() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j2", policy(1101)).await.unwrap(),
            RotateOutcome::Idle(_)
        ));
        s.create(rec("s2", "u", 1000)).await.unwrap();
        s.touch(&[("u".into(), "s2".into(), 1950)]).await.unwrap();
        assert_eq!(
            s.rotate("u", "s2", "j1", "j2", policy(2000)).await.unwrap(),
            RotateOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn wrong_user_cannot_rotate_or_revoke() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        assert_eq!(
            s.rotate("v", "s1", "j1", "j2", policy(1001)).await.unwrap(),
            RotateOutcome::NotFound
        );
        assert!(!s.revoke("v", "s1", 60).await.unwrap());
        assert!(s.get("u", "s1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_grace_window_is_counted_in_milliseconds() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        // Rotated at 1000.400 s; the grace is 10 s.
        s.rotate("u", "s1", "j1", "j2", at_ms(1_000_400))
            .await
            .unwrap();
        for (at, grace) in [
            (1_000_400, true),
            (1_009_999, true),
            (1_010_400, true),
            (1_010_401, false),
        ] {
            let s2 = MemoryStore::new();
            s2.create(rec("s1", "u", 1000)).await.unwrap();
            s2.rotate("u", "s1", "j1", "j2", at_ms(1_000_400))
                .await
                .unwrap();
            let out = s2.rotate("u", "s1", "j1", "j3", at_ms(at)).await.unwrap();
            assert_eq!(
                matches!(out, RotateOutcome::Grace(_)),
                grace,
                "previous jti at {at} ms: {out:?}"
            );
            if !grace {
                assert!(matches!(out, RotateOutcome::Reused(_)), "{out:?}");
            }
        }
        // Whole seconds would have called 1010.999 s "10 s later" and let it through.
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j3", at_ms(1_010_999))
                .await
                .unwrap(),
            RotateOutcome::Reused(_)
        ));
    }

    #[tokio::test]
    async fn a_reopened_rotation_accepts_the_previous_jti_until_the_new_one_is_used() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        s.rotate("u", "s1", "j1", "j2", policy(1001)).await.unwrap();
        // Not this rotation, not this user, not a session that exists: nothing happens.
        assert!(!s.reopen("u", "s1", "j0", "j2").await.unwrap());
        assert!(!s.reopen("u", "s1", "j1", "j9").await.unwrap());
        assert!(!s.reopen("v", "s1", "j1", "j2").await.unwrap());
        assert!(!s.reopen("u", "s9", "j1", "j2").await.unwrap());
        assert!(s.reopen("u", "s1", "j1", "j2").await.unwrap());
        // Long past the grace, the previous jti gets the tokens already issued, any number of
        // times (each answer may be lost too), and rotates nothing.
        for at in [1050, 1090] {
            match s.rotate("u", "s1", "j1", "jx", policy(at)).await.unwrap() {
                RotateOutcome::Grace(r) => assert_eq!(r.cur_jti, "j2"),
                other => panic!("reopened previous jti at {at}: {other:?}"),
            }
        }
        // The new jti works and closes the window again: the old one is reuse from then on.
        assert!(matches!(
            s.rotate("u", "s1", "j2", "j3", policy(1095)).await.unwrap(),
            RotateOutcome::Rotated(r) if r.cur_jti == "j3" && !r.prev_open
        ));
        assert!(
            !s.reopen("u", "s1", "j1", "j2").await.unwrap(),
            "a later rotation stays"
        );
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j4", policy(1190)).await.unwrap(),
            RotateOutcome::Reused(_)
        ));
        // A session that ended stays ended.
        assert!(!s.reopen("u", "s1", "j2", "j3").await.unwrap());
        assert!(s.get("u", "s1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_reopened_rotation_still_ends_at_the_idle_timeout() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        s.rotate("u", "s1", "j1", "j2", policy(1001)).await.unwrap();
        assert!(s.reopen("u", "s1", "j1", "j2").await.unwrap());
        assert!(matches!(
            s.rotate("u", "s1", "j1", "j3", policy(1102)).await.unwrap(),
            RotateOutcome::Idle(_)
        ));
    }

    #[tokio::test]
    async fn revoke_all_and_sweep() {
        let s = MemoryStore::new();
        s.create(rec("s1", "u", 1000)).await.unwrap();
        s.create(rec("s2", "u", 1000)).await.unwrap();
        s.create(rec("s3", "w", 1000)).await.unwrap();
        assert_eq!(s.list("u").await.unwrap().len(), 2);
        let mut gone = s.revoke_all("u", 60).await.unwrap();
        gone.sort();
        assert_eq!(gone, vec!["s1".to_string(), "s2".to_string()]);
        assert!(s.list("u").await.unwrap().is_empty());
        assert_eq!(s.sweep(2001, 10_000), 1);
        assert!(s.is_empty());
    }
}
