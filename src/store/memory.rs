//! The embedded store for one instance: a map behind a mutex. Every operation is a few
//! hash-map steps under the lock, so each is atomic and never awaits while holding it.
//!
//! Records are kept compact (about 400 bytes a session rather than the ~740 of the plain
//! `SessionRecord`): each record is one boxed allocation behind a small table entry, the user
//! name and roles are shared by all of a user's sessions, the IP is an `IpAddr`, and the device
//! label is derived from the user agent when read rather than stored.
//!
//! Sessions signed in through an identity provider are also indexed by the provider's session
//! id and subject (for back-channel logout), at most [`IDP_INDEX_MAX`] sessions per key; every
//! removal of a session drops its entries under the same lock. `first_use` keys live in their
//! own bounded table ([`FIRST_USE_MAX`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::web::user_agent::UserAgent;

use super::{
    FactorRecord, FeedEvent, IDP_INDEX_MAX, IdpKey, IdpLink, Revocation, RotateOutcome,
    RotatePolicy, SessionRecord, SessionStore, StoreError,
};

/// How many `first_use` keys the memory store remembers at once. When the table is full of
/// keys that have not expired, a new key is answered "already used" (`false`): a replay check
/// that cannot remember must not accept.
pub const FIRST_USE_MAX: usize = 100_000;

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
    /// Boxed: most sessions have none, and the table entry stays small.
    idp: Option<Box<IdpLink>>,
    auth_time: u64,
    refreshes: u32,
}

impl Stored {
    fn to_record(&self, sid: &str) -> SessionRecord {
        SessionRecord {
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
            idp: self.idp.as_deref().cloned(),
            auth_time: self.auth_time,
            refreshes: self.refreshes,
        }
    }
}

/// A key of the IdP index: one provider's session id or subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdxKey {
    provider: Box<str>,
    by_sub: bool,
    value: Box<str>,
}

impl IdxKey {
    fn new(provider: &str, key: IdpKey<'_>) -> Self {
        let (by_sub, value) = match key {
            IdpKey::Sid(v) => (false, v),
            IdpKey::Sub(v) => (true, v),
        };
        Self {
            provider: provider.into(),
            by_sub,
            value: value.into(),
        }
    }

    /// The keys `link` is indexed under.
    fn of(link: &IdpLink) -> impl Iterator<Item = IdxKey> + '_ {
        link.keys().map(|k| IdxKey::new(&link.provider, k))
    }
}

/// Sessions under one [`IdxKey`], ordered by absolute end (the first ends first).
type IdxEntries = Vec<(u64, Arc<str>)>;

/// Bounded by what succeeded logins create: a session lives until its idle timeout or
/// absolute end and `MemoryStore::sweep` (every 15 s) removes it then, and `recent` holds the
/// revocations of the last access-token lifetime, popped by the same sweep. Logins are paced by
/// the argon2 verification slots (`login::users`), so a client cannot mint sessions faster.
///
/// The IdP index holds at most two entries per session (its provider `sid` and `sub`), each
/// key at most [`IDP_INDEX_MAX`], and loses a session's entries whenever the session is
/// removed, so it is bounded by the sessions.
#[derive(Default)]
struct Inner {
    sessions: HashMap<Arc<str>, Box<Stored>>,
    by_user: HashMap<Arc<str>, Vec<Arc<str>>>,
    recent: VecDeque<Revocation>,
    idp_index: HashMap<IdxKey, IdxEntries>,
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
        if let Some(link) = &rec.idp {
            self.unindex(link, sid);
        }
        Some((key, rec))
    }

    /// Index session `sid` (ending at `abs_end`) under `link`'s keys; a key over
    /// [`IDP_INDEX_MAX`] drops the session that ends first.
    fn index(&mut self, link: &IdpLink, sid: &Arc<str>, abs_end: u64) {
        for k in IdxKey::of(link) {
            let list = self.idp_index.entry(k).or_default();
            if list.iter().any(|(_, s)| s == sid) {
                continue;
            }
            let at = list.partition_point(|(end, _)| *end <= abs_end);
            list.insert(at, (abs_end, sid.clone()));
            if list.len() > IDP_INDEX_MAX {
                list.remove(0);
            }
        }
    }

    /// Drop session `sid`'s entries under `link`'s keys.
    fn unindex(&mut self, link: &IdpLink, sid: &str) {
        for k in IdxKey::of(link) {
            if let Some(list) = self.idp_index.get_mut(&k) {
                list.retain(|(_, s)| **s != *sid);
                if list.is_empty() {
                    self.idp_index.remove(&k);
                }
            }
        }
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

/// `first_use` keys (their SHA-256, so an entry's size does not depend on the key) and when
/// each may be forgotten.
#[derive(Default)]
struct Once {
    until: HashMap<[u8; 32], u64>,
    /// Whether "full" was logged since the table last had room (one warning per episode).
    warned_full: bool,
}

impl Once {
    fn sweep(&mut self, now: u64) {
        self.until.retain(|_, until| *until > now);
    }

    /// `true` when `key` was not remembered (or had expired) and now is, until `until`.
    fn first_use(&mut self, key: &str, until: u64, now: u64) -> bool {
        if until <= now {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match self.until.get_mut(&digest) {
            Some(t) if *t > now => return false,
            Some(t) => {
                *t = until;
                return true;
            }
            None => {}
        }
        if self.until.len() >= FIRST_USE_MAX {
            self.sweep(now);
        }
        if self.until.len() >= FIRST_USE_MAX {
            if !self.warned_full {
                self.warned_full = true;
                tracing::warn!(
                    max = FIRST_USE_MAX,
                    "first-use table full of unexpired keys: new keys are treated as already used"
                );
            }
            return false;
        }
        self.warned_full = false;
        self.until.insert(digest, until);
        true
    }
}

/// One user's second-factor state. Only users of the users file get one (the gateway asks
/// after their password), so the table is bounded by the file.
#[derive(Default)]
struct Factor {
    rec: Option<FactorRecord>,
    /// The last time step accepted.
    step: Option<u64>,
    recovery: std::collections::HashSet<String>,
    pending: Option<(String, u64)>,
    grace: Option<u64>,
    /// Passkeys by id (at most the `max` each `put_passkey` names).
    passkeys: HashMap<String, String>,
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    factors: Mutex<HashMap<String, Factor>>,
    once: Mutex<Once>,
    /// Bounded (1024 events): a subscriber that falls behind gets `Lagged` and resynchronises.
    feed: broadcast::Sender<FeedEvent>,
    /// `rate_take`'s buckets (the gateway's own table is the authority with this store; this
    /// one answers the store conformance suite and any other caller), bounded like it.
    rates: super::gcra::GcraTable<String>,
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
            factors: Mutex::new(HashMap::new()),
            once: Mutex::new(Once::default()),
            feed: broadcast::channel(1024).0,
            rates: super::gcra::GcraTable::new(super::gcra::TABLE_MAX),
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

    /// Remove sessions past their absolute end or idle for longer than `idle_secs` (with their
    /// IdP index entries), revocations nobody needs any more and expired `first_use` keys.
    /// Returns how many sessions were removed.
    pub fn sweep(&self, now: u64, idle_secs: u64) -> usize {
        self.once.lock().sweep(now);
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
        let idp = rec.idp.map(Box::new);
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
            idp,
            auth_time: if rec.auth_time == 0 {
                rec.created
            } else {
                rec.auth_time
            },
            refreshes: rec.refreshes,
        });
        if let Some((_, old)) = inner.remove(&sid) {
            drop(old);
        }
        if let Some(link) = &stored.idp {
            inner.index(link, &sid, stored.abs_end);
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
            let gap_ms = p.now_ms.saturating_sub(rec.rotated_at_ms);
            rec.refreshes = if gap_ms >= p.window_secs.saturating_mul(1000) {
                1
            } else {
                rec.refreshes.saturating_add(1)
            };
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

    async fn idp_sessions(
        &self,
        provider: &str,
        key: IdpKey<'_>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let k = IdxKey::new(provider, key);
        let Some(list) = inner.idp_index.get_mut(&k) else {
            return Ok(Vec::new());
        };
        // Every removal drops its entries already; an entry whose session is gone anyway (or
        // no longer carries this link) is dropped here rather than answered.
        let sessions = &inner.sessions;
        list.retain(|(_, sid)| {
            sessions
                .get(sid)
                .and_then(|r| r.idp.as_deref())
                .is_some_and(|l| l.matches(provider, key))
        });
        let out = list
            .iter()
            .filter_map(|(_, sid)| {
                let r = sessions.get(sid)?;
                Some((r.user.to_string(), sid.to_string()))
            })
            .collect();
        if list.is_empty() {
            inner.idp_index.remove(&k);
        }
        Ok(out)
    }

    async fn first_use(&self, key: &str, until: u64) -> Result<bool, StoreError> {
        Ok(self
            .once
            .lock()
            .first_use(key, until, crate::util::now_unix()))
    }

    async fn update_identity(
        &self,
        user: &str,
        sid: &str,
        roles: &[String],
        idp: Option<&IdpLink>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let Some(sid) = inner
            .sessions
            .get_key_value(sid)
            .filter(|(_, r)| *r.user == *user)
            .map(|(s, _)| s.clone())
        else {
            return Ok(false);
        };
        // Only the roles and the link change: the jti state, the times and the session's
        // place in the user's index stay as they are.
        let Some(r) = inner.sessions.get_mut(&sid) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut r.idp, idp.cloned().map(Box::new));
        r.roles = roles.iter().map(|x| x.as_str().into()).collect();
        let abs_end = r.abs_end;
        if let Some(old) = &old {
            inner.unindex(old, &sid);
        }
        if let Some(link) = idp {
            inner.index(link, &sid, abs_end);
        }
        Ok(true)
    }

    async fn factor(&self, user: &str) -> Result<Option<FactorRecord>, StoreError> {
        Ok(self.factors.lock().get(user).and_then(|f| f.rec.clone()))
    }

    async fn set_factor(
        &self,
        user: &str,
        rec: &FactorRecord,
        step: u64,
        recovery: &[String],
    ) -> Result<(), StoreError> {
        let mut all = self.factors.lock();
        let f = all.entry(user.to_string()).or_default();
        f.rec = Some(rec.clone());
        f.step = Some(step);
        f.recovery = recovery.iter().cloned().collect();
        f.pending = None;
        Ok(())
    }

    async fn remove_factor(&self, user: &str) -> Result<bool, StoreError> {
        let mut all = self.factors.lock();
        let Some(f) = all.get_mut(user) else {
            return Ok(false);
        };
        let had = f.rec.take().is_some();
        f.step = None;
        f.recovery.clear();
        f.pending = None;
        Ok(had)
    }

    async fn put_pending_factor(
        &self,
        user: &str,
        sealed: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut all = self.factors.lock();
        all.entry(user.to_string()).or_default().pending = Some((sealed.to_string(), until));
        Ok(())
    }

    async fn pending_factor(&self, user: &str) -> Result<Option<String>, StoreError> {
        let now = crate::util::now_unix();
        Ok(self
            .factors
            .lock()
            .get(user)
            .and_then(|f| f.pending.as_ref())
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| s.clone()))
    }

    async fn use_factor_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let mut all = self.factors.lock();
        let Some(f) = all.get_mut(user).filter(|f| f.rec.is_some()) else {
            return Ok(false);
        };
        if f.step.is_some_and(|last| step <= last) {
            return Ok(false);
        }
        f.step = Some(step);
        Ok(true)
    }

    async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        Ok(self
            .factors
            .lock()
            .get_mut(user)
            .is_some_and(|f| f.recovery.remove(hash)))
    }

    async fn recovery_codes_left(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self
            .factors
            .lock()
            .get(user)
            .map_or(0, |f| f.recovery.len()))
    }

    async fn factor_grace_start(&self, user: &str, now: u64) -> Result<u64, StoreError> {
        let mut all = self.factors.lock();
        Ok(*all
            .entry(user.to_string())
            .or_default()
            .grace
            .get_or_insert(now))
    }

    async fn passkeys(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.factors.lock().get(user).map_or_else(Vec::new, |f| {
            f.passkeys
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    async fn put_passkey(
        &self,
        user: &str,
        id: &str,
        record: &str,
        write: super::PasskeyWrite,
    ) -> Result<bool, StoreError> {
        let mut all = self.factors.lock();
        let keys = &mut all.entry(user.to_string()).or_default().passkeys;
        let allowed = match write {
            super::PasskeyWrite::Add { max } => keys.contains_key(id) || keys.len() < max,
            super::PasskeyWrite::Update => keys.contains_key(id),
        };
        if allowed {
            keys.insert(id.to_string(), record.to_string());
        }
        Ok(allowed)
    }

    async fn remove_passkey(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .factors
            .lock()
            .get_mut(user)
            .is_some_and(|f| f.passkeys.remove(id).is_some()))
    }

    async fn rate_take(
        &self,
        key: &str,
        gcra: super::gcra::Gcra,
        want: u64,
    ) -> Result<super::gcra::Take, StoreError> {
        Ok(self.rates.take(&gcra, key, super::gcra::now_us(), want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sid: &str, user: &str, now: u64) -> SessionRecord {
        SessionRecord {
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
            idp: None,
            auth_time: now,
            refreshes: 0,
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
            window_secs: 900,
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

    /// The behaviours every store shares (`store::conformance`), on this one.
    mod idp {
        use std::sync::Arc;

        use super::MemoryStore;
        use crate::store::conformance as c;

        #[tokio::test]
        async fn idp_link_survives_every_path() {
            c::idp_link_survives_every_path(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn records_without_idp_load() {
            c::records_without_idp_load(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn idp_sessions_by_sid_and_sub() {
            c::idp_sessions_by_sid_and_sub(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn ended_sessions_leave_the_index() {
            c::ended_sessions_leave_the_index(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn index_is_bounded() {
            c::index_is_bounded(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn update_identity_replaces_roles_and_link() {
            c::update_identity_replaces_roles_and_link(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn update_identity_never_revives() {
            c::update_identity_never_revives(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn first_use_once_then_expires() {
            c::first_use_once_then_expires(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn rotations_are_counted_per_window() {
            c::rotations_are_counted_per_window(&MemoryStore::new()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn first_use_race() {
            c::first_use_race(Arc::new(MemoryStore::new())).await
        }
        #[tokio::test]
        async fn second_factor_state() {
            c::second_factor_state(&MemoryStore::new()).await
        }
        #[tokio::test]
        async fn passkeys_state() {
            c::passkeys_state(&MemoryStore::new()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn second_factor_race() {
            c::second_factor_race(Arc::new(MemoryStore::new())).await
        }
    }

    fn linked(sid: &str, user: &str, now: u64, provider: &str, sub: &str) -> SessionRecord {
        SessionRecord {
            idp: Some(crate::store::conformance::link(
                provider,
                sub,
                Some("idp-sid"),
            )),
            ..rec(sid, user, now)
        }
    }

    #[tokio::test]
    async fn an_index_entry_whose_session_vanished_is_dropped_when_read() {
        let s = MemoryStore::new();
        s.create(linked("s1", "u", 1000, "kc", "x")).await.unwrap();
        s.create(linked("s2", "u", 1000, "kc", "x")).await.unwrap();
        // Gone without passing through `Inner::remove` (which drops the entries itself).
        s.inner.lock().sessions.remove("s1");
        let got = s.idp_sessions("kc", IdpKey::Sub("x")).await.unwrap();
        assert_eq!(got, vec![("u".to_string(), "s2".to_string())]);
        assert_eq!(
            s.inner.lock().idp_index[&IdxKey::new("kc", IdpKey::Sub("x"))].len(),
            1
        );
        s.inner.lock().sessions.remove("s2");
        assert!(
            s.idp_sessions("kc", IdpKey::Sub("x"))
                .await
                .unwrap()
                .is_empty()
        );
        let inner = s.inner.lock();
        assert_eq!(inner.idp_index.len(), 1, "only the sid key is left");
        assert!(
            !inner
                .idp_index
                .contains_key(&IdxKey::new("kc", IdpKey::Sub("x")))
        );
    }

    #[tokio::test]
    async fn the_sweep_empties_the_index_and_forgets_expired_first_use_keys() {
        let s = MemoryStore::new();
        for i in 0..70 {
            s.create(linked(&format!("s{i}"), "u", 1000, "kc", "x"))
                .await
                .unwrap();
        }
        assert_eq!(s.inner.lock().idp_index.len(), 2);
        let now = crate::util::now_unix();
        assert!(s.first_use("short", now + 5).await.unwrap());
        assert!(s.first_use("long", now + 500).await.unwrap());
        // Every session ended at 2000; the short key at now + 5.
        assert_eq!(s.sweep(now + 5, 10_000), 70);
        assert!(
            s.inner.lock().idp_index.is_empty(),
            "the index went with them"
        );
        assert_eq!(s.once.lock().until.len(), 1, "only the long key is left");
        assert!(!s.first_use("long", now + 500).await.unwrap());
    }

    #[tokio::test]
    async fn the_index_never_outgrows_the_sessions() {
        let s = MemoryStore::new();
        for i in 0..200 {
            s.create(linked(
                &format!("s{i}"),
                &format!("u{}", i % 7),
                1000,
                "kc",
                "x",
            ))
            .await
            .unwrap();
        }
        {
            let inner = s.inner.lock();
            let entries: usize = inner.idp_index.values().map(Vec::len).sum();
            assert_eq!(entries, 2 * IDP_INDEX_MAX, "two keys, each at its bound");
        }
        for u in 0..7 {
            s.revoke_all(&format!("u{u}"), 60).await.unwrap();
        }
        assert!(s.inner.lock().idp_index.is_empty());
    }

    #[test]
    fn a_full_first_use_table_answers_already_used_until_keys_expire() {
        let mut once = Once::default();
        for i in 0..FIRST_USE_MAX {
            assert!(once.first_use(&format!("k{i}"), 1000, 500));
        }
        // Full of keys that have not expired: a new key cannot be remembered, so it is "used".
        assert!(!once.first_use("new", 2000, 999));
        assert!(
            !once.first_use("new", 2000, 999),
            "and still not remembered"
        );
        assert!(
            !once.first_use("k7", 2000, 999),
            "a remembered key stays used"
        );
        assert_eq!(once.until.len(), FIRST_USE_MAX);
        // At 1000 every key has expired: the sweep makes room.
        assert!(once.first_use("new", 2000, 1000));
        assert_eq!(once.until.len(), 1);
        assert!(
            once.first_use("k7", 2000, 1000),
            "an expired key is new again"
        );
    }

    #[test]
    fn an_expired_first_use_key_is_new_again_and_a_past_until_never_counts() {
        let mut once = Once::default();
        assert!(once.first_use("k", 100, 50));
        assert!(!once.first_use("k", 200, 99));
        assert!(once.first_use("k", 200, 100), "expired at its until");
        assert!(!once.first_use("k", 300, 150));
        assert!(!once.first_use("p", 150, 150), "until == now");
        assert!(!once.first_use("p", 149, 150), "until before now");
        assert!(once.first_use("p", 151, 150));
    }

    #[test]
    fn first_use_keys_are_held_as_digests_whatever_their_length() {
        let mut once = Once::default();
        let long = "k".repeat(1 << 20);
        assert!(once.first_use(&long, 100, 50));
        assert!(!once.first_use(&long, 100, 50));
        assert!(once.first_use(&long[1..], 100, 50), "a different key");
        assert_eq!(std::mem::size_of_val(once.until.keys().next().unwrap()), 32);
    }
}
