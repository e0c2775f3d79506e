//! The Redis store: many gateway instances, one truth.
//!
//! Keys are hash-tagged by user so that one user's records share a Redis Cluster slot and one
//! Lua script can change them atomically:
//! - `{prefix}:{user}:s:{sid}` — hash: the session record, expiring at the absolute end; a
//!   session signed in through an identity provider has an `idp` field, its [`IdpLink`] as
//!   JSON (absent otherwise, and in records written before it existed);
//! - `{prefix}:{user}:sessions` — sorted set of the user's sids, scored by absolute end;
//! - `{prefix}:{user}:uas` — hash of the user's user-agent texts by a hash of each (a record
//!   names its own by `uah`), expiring with the user's last session: a text is kept once per
//!   user, and a record without it stays a compact listpack (Redis keeps a hash compact only
//!   while every value is at most 64 bytes, and a browser's user agent is longer). Fields at
//!   their default are not written (`prev` none, `open` 0, `auth` = `created`, `rn` 0 or 1);
//! - `{prefix}:revocations` — sorted set of revoked sids, scored by when the last access token
//!   minted for them expires (for instances that start or reconnect);
//! - channel `{prefix}:revocations` — every revocation as it happens, `"<sid> <until>"`;
//! - `{prefix}:idp:sid:{n}:{provider}:{idp sid}` and `{prefix}:idp:sub:{n}:{provider}:{sub}`
//!   (`n` is the provider name's length in bytes, so no provider/value pair reads as another)
//!   — sorted sets of `["user","sid"]` (JSON), the sessions signed in through that provider
//!   session or subject, scored by absolute end, at most [`IDP_INDEX_MAX`] (the first to end
//!   is dropped), expiring with the last of them: what a back-channel logout looks up;
//! - `{prefix}:{user}:2fa` — hash: the user's confirmed second factor (`secret`, sealed by the
//!   gateway; `enrolled`); `{prefix}:{user}:2fa:step` — the last TOTP time step accepted;
//!   `{prefix}:{user}:2fa:rc` — set of the recovery codes' hashes; `{prefix}:{user}:2fa:pending`
//!   — an enrolment not yet confirmed (sealed), expiring; `{prefix}:{user}:2fa:grace` — when the
//!   user's grace to enrol began. Users of the users file only: the gateway asks after their
//!   password;
//! - `{prefix}:{user}:passkeys` — hash: the user's passkeys (WebAuthn credentials: public key,
//!   counter, name, times; JSON) by credential id. Users of the users file only;
//! - `{prefix}:once:{key}` — `first_use` keys (`SET NX EXAT`), expiring at their `until`;
//! - `{prefix}:rl:{key}` — a rate-limit bucket's theoretical arrival time (GCRA, Unix µs on
//!   the Redis clock; `store::gcra`), one key per bucket so its one script is cluster safe,
//!   expiring when the bucket is full again.
//!
//! Create, rotate (grace, reuse detection), reopen (a rotation that never reached its client),
//! revoke, revoke-all and update-identity are each one script, so two instances racing on one
//! refresh token can never both rotate it. Refresh `jti`s are stored, never a token (the IdP's
//! tokens only sealed by the gateway). Every call is bounded by `store.command_timeout`; a
//! failure is a `StoreError`, which the gateway answers with `503`, never a logout.
//!
//! The IdP index is keyed by provider and IdP session, not by user, so in a Redis Cluster it
//! lives in another slot than the user's keys and cannot be written by the same script: it is
//! written in separate commands, after the record. `create` fails (and removes the record
//! again) when the index cannot be written, so a login never completes with a session that
//! back-channel logout cannot find; a crash between the two leaves a record without an index
//! entry whose client never received its tokens, never an index entry that is believed. The
//! entries of a session that ends are removed after it (revoke, revoke-all, reuse, idle; best
//! effort), and `idp_sessions` drops any entry whose record is gone and answers only sessions
//! whose record still carries the link it was looked up by.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::broadcast;

use super::{
    FactorRecord, FeedEvent, IDP_INDEX_MAX, IdpKey, IdpLink, Revocation, RotateOutcome,
    RotatePolicy, SessionRecord, SessionStore, StoreError,
};
use crate::config::RedisConfig;
use crate::util::now_unix;

/// Where the store's commands go: one multiplexed connection per serving thread (thread `i`
/// uses slot `i % store.pool_size`), made lazily on that thread, so its reader and writer run
/// there and a command never wakes another thread. Commands in flight from every request of
/// the thread are pipelined on it (a multiplexed connection matches replies to requests in
/// order and drops the reply of one whose caller went away). A connection that failed, or
/// whose command timed out, is replaced at its next use; the gateway starts while Redis is
/// down and recovers by itself.
#[derive(Clone)]
struct Connections(Arc<ConnectionsInner>);

struct ConnectionsInner {
    client: Client,
    connect_timeout: Duration,
    slots: Box<[Slot]>,
}

enum Client {
    Single(redis::Client, redis::AsyncConnectionConfig),
    Cluster(ClusterClient),
}

#[derive(Default)]
struct Slot {
    live: std::sync::Mutex<Option<Conn>>,
    /// Held while a connection is made: one attempt at a time per slot.
    connecting: tokio::sync::Mutex<()>,
    /// Attempts that failed. A caller that waited through one fails too, rather than trying
    /// again in its turn (under an outage, waiters in a queue would each wait
    /// `connect_timeout` more).
    failures: AtomicU64,
}

/// A connection of either kind, usable wherever redis wants one (clones share it), with a flag
/// set once it failed.
#[derive(Clone)]
struct Conn {
    kind: ConnKind,
    broken: Arc<AtomicBool>,
}

#[derive(Clone)]
enum ConnKind {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connections {
    fn new(client: Client, cfg: &RedisConfig) -> Self {
        let n = usize::try_from(cfg.pool_size).unwrap_or(1).max(1);
        Self(Arc::new(ConnectionsInner {
            client,
            connect_timeout: cfg.connect_timeout,
            slots: (0..n).map(|_| Slot::default()).collect(),
        }))
    }

    /// This thread's connection, made if there is none or it failed (bounded by
    /// `store.connect_timeout`).
    async fn get(&self) -> Result<Conn, StoreError> {
        let inner = &*self.0;
        let slot = &inner.slots[crate::worker::index() % inner.slots.len()];
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let failures = slot.failures.load(Ordering::Acquire);
        let _one = slot.connecting.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        if slot.failures.load(Ordering::Acquire) != failures {
            return Err(StoreError::Unavailable(
                "cannot connect to Redis (an attempt just failed)".into(),
            ));
        }
        match tokio::time::timeout(inner.connect_timeout, inner.client.connect()).await {
            Ok(Ok(kind)) => {
                let c = Conn {
                    kind,
                    broken: Arc::new(AtomicBool::new(false)),
                };
                *slot.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => {
                slot.failures.fetch_add(1, Ordering::Release);
                Err(unavailable(e))
            }
            Err(_) => {
                slot.failures.fetch_add(1, Ordering::Release);
                Err(StoreError::Timeout)
            }
        }
    }
}

impl Slot {
    fn live(&self) -> Option<Conn> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref()
            .filter(|c| !c.broken.load(Ordering::Relaxed))
            .cloned()
    }
}

impl Client {
    async fn connect(&self) -> redis::RedisResult<ConnKind> {
        Ok(match self {
            Client::Single(c, cfg) => {
                ConnKind::Single(c.get_multiplexed_async_connection_with_config(cfg).await?)
            }
            Client::Cluster(c) => ConnKind::Cluster(c.get_async_connection().await?),
        })
    }
}

/// Whether an error means the connection itself is no longer usable.
fn breaks_connection(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || e.is_timeout()
}

fn watch<'a, T: Send + 'a>(flag: &Arc<AtomicBool>, fut: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    let flag = flag.clone();
    Box::pin(async move {
        let r = fut.await;
        if let Err(e) = &r
            && breaks_connection(e)
        {
            flag.store(true, Ordering::Relaxed);
        }
        r
    })
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            ConnKind::Single(c) => watch(&self.broken, c.req_packed_command(cmd)),
            ConnKind::Cluster(c) => watch(&self.broken, c.req_packed_command(cmd)),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            ConnKind::Single(c) => watch(&self.broken, c.req_packed_commands(p, offset, count)),
            ConnKind::Cluster(c) => watch(&self.broken, c.req_packed_commands(p, offset, count)),
        }
    }
    fn get_db(&self) -> i64 {
        match &self.kind {
            ConnKind::Single(c) => c.get_db(),
            ConnKind::Cluster(c) => c.get_db(),
        }
    }
}

/// KEYS: the record, the user's index, the user's user agents. ARGV: sid, absolute end, now,
/// the user agent's hash and text, the user's session-key prefix, then the record's fields.
/// The user agent is kept once per user (`uas`, hash to text) rather than in every record
/// (its text, longer than Redis's 64-byte listpack limit, would make each record a full hash
/// table); it lives as long as the user's last session, and past 16 texts the ones no
/// live session names are dropped.
const CREATE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('EXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[2], last[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('EXPIREAT', KEYS[3], last[2])
if redis.call('HLEN', KEYS[3]) > 16 then
  local live = {}
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local h = redis.call('HGET', ARGV[6] .. sid, 'uah')
    if h then live[h] = true end
  end
  for _, h in ipairs(redis.call('HKEYS', KEYS[3])) do
    if not live[h] then redis.call('HDEL', KEYS[3], h) end
  end
end
return 1
";

/// ARGV: presented jti, new jti, now (s), grace (ms), idle (s), sid, channel, revocation until,
/// now (ms), refresh-rate window (s). Returns {outcome, field, value, ...} with the record as it is after the operation.
/// The previous jti is accepted within the grace (counted in milliseconds: `rot_ms`; a record
/// written before it has only `rot`, in seconds) or while `open` says its rotation never
/// reached the client.
const ROTATE: &str = r"
local function with_ua(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'uah' then
      fields[#fields + 1] = 'ua'
      fields[#fields + 1] = redis.call('HGET', KEYS[3], fields[i + 1]) or ''
      break
    end
  end
  return fields
end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'notfound'} end
h = with_ua(h)
local r = {}
for i = 1, #h, 2 do r[h[i]] = h[i + 1] end
local now = tonumber(ARGV[3])
if tonumber(r['abs_end']) <= now then return {'notfound'} end
local function finish(outcome)
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[6])
  redis.call('PUBLISH', ARGV[7], ARGV[6] .. ' ' .. ARGV[8])
  local out = {outcome}
  for i = 1, #h do out[#out + 1] = h[i] end
  return out
end
local current = r['cur'] == ARGV[1]
local rot_ms = tonumber(r['rot_ms'] or '') or (tonumber(r['rot'] or '') or 0) * 1000
local previous = (not current) and r['prev'] == ARGV[1]
  and (r['open'] == '1' or tonumber(ARGV[9]) - rot_ms <= tonumber(ARGV[4]))
if (current or previous) and now - tonumber(r['last_seen']) > tonumber(ARGV[5]) then
  return finish('idle')
end
if current then
  -- Rotations in a row within the window; written only above 1 (a record with a previous jti
  -- and no count has rotated once), to keep the record small.
  local rn = tonumber(r['rn'] or '') or ((r['prev'] or '') ~= '' and 1 or 0)
  if tonumber(ARGV[9]) - rot_ms >= tonumber(ARGV[10]) * 1000 then rn = 1 else rn = rn + 1 end
  local set = {'prev', r['cur'], 'cur', ARGV[2], 'rot_ms', ARGV[9], 'last_seen', ARGV[3]}
  r['prev'], r['cur'], r['rot_ms'], r['last_seen'] = r['cur'], ARGV[2], ARGV[9], ARGV[3]
  if rn > 1 then
    set[#set + 1], set[#set + 2] = 'rn', tostring(rn)
    r['rn'] = tostring(rn)
  end
  redis.call('HSET', KEYS[1], unpack(set))
  -- Fields the record no longer has, deleted only when it has them (a rotation is one
  -- HGETALL, one HGET and one HSET in the common case).
  local gone = {}
  for _, f in ipairs({'rot', 'open', rn > 1 and '' or 'rn'}) do
    if r[f] then gone[#gone + 1] = f; r[f] = nil end
  end
  if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
  -- The record as it is now, from what was read and written (with its user agent's text).
  local out = {'rotated'}
  for k, v in pairs(r) do out[#out + 1] = k; out[#out + 1] = v end
  return out
end
if previous then
  local out = {'grace'}
  for i = 1, #h do out[#out + 1] = h[i] end
  return out
end
return finish('reused')
";

/// KEYS: the record, the user's user agents. The record's fields, with its user agent's text as
/// `ua` (a record written before the user agents moved out has its own `ua`); {} for none.
const GET: &str = r"
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if h[i] == 'uah' then
    h[#h + 1] = 'ua'
    h[#h + 1] = redis.call('HGET', KEYS[2], h[i + 1]) or ''
    break
  end
end
return h
";

/// ARGV: previous jti, new jti. Marks a rotation whose answer never reached the client, only
/// while the record exists and is still at that rotation (never creates a key).
const REOPEN: &str = r"
local h = redis.call('HMGET', KEYS[1], 'cur', 'prev')
if h[1] == ARGV[2] and h[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'open', '1')
  return 1
end
return 0
";

/// ARGV: sid, channel, revocation until. Returns {'1' or '0', the record's `idp` or ''}.
const REVOKE: &str = r"
local idp = redis.call('HGET', KEYS[1], 'idp') or ''
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. ARGV[3]) end
return {tostring(n), idp}
";

/// KEYS[1] the user's index; ARGV: session key prefix, channel, revocation until. Returns
/// {sid, its `idp` or '', ...} for every sid the index held.
const REVOKE_ALL: &str = r"
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, sid in ipairs(sids) do
  out[#out + 1] = sid
  out[#out + 1] = redis.call('HGET', ARGV[1] .. sid, 'idp') or ''
  if redis.call('DEL', ARGV[1] .. sid) == 1 then
    redis.call('PUBLISH', ARGV[2], sid .. ' ' .. ARGV[3])
  end
end
redis.call('DEL', KEYS[1])
return out
";

/// ARGV: roles (JSON), idp link (JSON, or '' for none). Only on a record that exists (never
/// creates one); touches no other field. Returns {'0'}, or {'1', abs_end, previous idp or ''}.
const UPDATE_IDENTITY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0'} end
local old = redis.call('HGET', KEYS[1], 'idp') or ''
redis.call('HSET', KEYS[1], 'roles', ARGV[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'idp')
else
  redis.call('HSET', KEYS[1], 'idp', ARGV[2])
end
return {'1', redis.call('HGET', KEYS[1], 'abs_end') or '0', old}
";

/// KEYS[1] one IdP index key; ARGV: member, its absolute end, now, the bound. Adds the member,
/// drops ended ones and all but the `bound` that end last, and expires with the last.
const IDP_INDEX: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('EXPIREAT', KEYS[1], last[2]) end
return 1
";

/// ARGV: now. Moves `last_seen` forward only, and only on a live session.
const TOUCH: &str = r"
local cur = redis.call('HGET', KEYS[1], 'last_seen')
if cur and tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
return 1
";

/// Make a second factor the user's, replacing everything before: KEYS factor, step,
/// recovery set, pending; ARGV secret, enrolled, step, recovery hashes...
const SET_FACTOR: &str = r"
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'enrolled', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
if #ARGV > 3 then redis.call('SADD', KEYS[3], unpack(ARGV, 4)) end
return 1
";

/// Remove a second factor and all that goes with it; 1 when there was one.
const REMOVE_FACTOR: &str = r"
local had = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return had
";

/// Accept time step ARGV[1] when the user has a factor (KEYS[1]) and it is later than the last
/// one accepted (KEYS[2]).
const USE_STEP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = redis.call('GET', KEYS[2])
if last and tonumber(last) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
";

/// Write passkey ARGV[1] (record ARGV[2]) into KEYS[1]: ARGV[3] "add" while the hash has fewer
/// than ARGV[4] fields (or already has this one), "update" only when it has this one.
const PUT_PASSKEY: &str = r"
local there = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[3] == 'update' and not there then return 0 end
if ARGV[3] == 'add' and not there and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// The grace's start: the one kept, or ARGV[1] kept from now on.
const GRACE_START: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

struct Scripts {
    set_factor: Script,
    put_passkey: Script,
    remove_factor: Script,
    use_step: Script,
    grace_start: Script,
    create: Script,
    rotate: Script,
    reopen: Script,
    revoke: Script,
    revoke_all: Script,
    touch: Script,
    update_identity: Script,
    idp_index: Script,
    rate_limit: Script,
    get: Script,
}

pub struct RedisStore {
    conns: Connections,
    /// Where the revocation channel is subscribed (a cluster publishes to every node).
    /// Where the revocation channel can be subscribed: the node, or every cluster node (a
    /// cluster forwards publishes to all of them), tried in turn.
    pubsub: Vec<redis::Client>,
    prefix: String,
    command_timeout: Duration,
    scripts: Scripts,
    /// Bounded (4096 events): a subscriber that falls behind gets `Lagged` and resynchronises.
    feed: broadcast::Sender<FeedEvent>,
    feed_started: OnceLock<()>,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// `store.ca_file` as the redis crate takes it: the only roots a `rediss://` node is verified
/// against (without it, the roots built into the binary).
fn certificates(cfg: &RedisConfig) -> Option<redis::TlsCertificates> {
    cfg.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.clone()),
    })
}

/// A client of one node (`url` carries the user and password).
fn node_client(url: &str, cfg: &RedisConfig) -> Result<redis::Client, StoreError> {
    match certificates(cfg) {
        Some(certs) => redis::Client::build_with_tls(url, certs),
        None => redis::Client::open(url),
    }
    .map_err(unavailable)
}

impl RedisStore {
    /// Build the store (no connection is made until first use, so the gateway starts while
    /// Redis is down and reports it on `/readyz`).
    pub fn new(cfg: &RedisConfig) -> Result<Self, StoreError> {
        let (conns, pubsub_url) = match &cfg.url {
            Some(url) => {
                let url = String::from_utf8_lossy(url.expose()).into_owned();
                let client = node_client(&url, cfg)?;
                // Every command is bounded by `store.command_timeout` here (`timed`).
                let conn_cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(cfg.connect_timeout))
                    .set_response_timeout(Some(cfg.command_timeout));
                (Connections::new(Client::Single(client, conn_cfg), cfg), url)
            }
            None => {
                let mut b = ClusterClient::builder(cfg.cluster_nodes.clone())
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.command_timeout);
                if let Some(user) = &cfg.username {
                    b = b.username(user);
                }
                if let Some(pw) = &cfg.password {
                    b = b.password(String::from_utf8_lossy(pw.expose()));
                }
                if let Some(certs) = certificates(cfg) {
                    b = b.certs(certs);
                }
                let client = b.build().map_err(unavailable)?;
                let mut nodes = Vec::new();
                for n in &cfg.cluster_nodes {
                    let mut u = url::Url::parse(n).map_err(unavailable)?;
                    if let Some(user) = &cfg.username {
                        let _ = u.set_username(user);
                    }
                    if let Some(pw) = &cfg.password {
                        let _ = u.set_password(Some(&String::from_utf8_lossy(pw.expose())));
                    }
                    nodes.push(u.to_string());
                }
                (
                    Connections::new(Client::Cluster(client), cfg),
                    nodes.join(" "),
                )
            }
        };
        let pubsub = pubsub_url
            .split(' ')
            .map(|u| node_client(u, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conns,
            pubsub,
            prefix: cfg.key_prefix.clone(),
            command_timeout: cfg.command_timeout,
            scripts: Scripts {
                set_factor: Script::new(SET_FACTOR),
                put_passkey: Script::new(PUT_PASSKEY),
                remove_factor: Script::new(REMOVE_FACTOR),
                use_step: Script::new(USE_STEP),
                grace_start: Script::new(GRACE_START),
                create: Script::new(CREATE),
                rotate: Script::new(ROTATE),
                reopen: Script::new(REOPEN),
                revoke: Script::new(REVOKE),
                revoke_all: Script::new(REVOKE_ALL),
                touch: Script::new(TOUCH),
                update_identity: Script::new(UPDATE_IDENTITY),
                idp_index: Script::new(IDP_INDEX),
                get: Script::new(GET),
                rate_limit: Script::new(super::gcra::REDIS_SCRIPT),
            },
            feed: broadcast::channel(4096).0,
            feed_started: OnceLock::new(),
        })
    }

    fn session_key(&self, user: &str, sid: &str) -> String {
        format!("{}:{{{user}}}:s:{sid}", self.prefix)
    }
    /// One record, with its user agent's text.
    async fn read_record(
        &self,
        c: &mut Conn,
        f: &Arc<AtomicBool>,
        user: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut inv = self.scripts.get.key(self.session_key(user, sid));
        inv.key(self.uas_key(user));
        let out: Vec<String> = self.timed(f, inv.invoke_async(c)).await?;
        Ok(to_record(sid, &pairs_to_map(out)))
    }

    fn index_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:sessions", self.prefix)
    }
    /// The user's user agents, by [`ua_hash`].
    fn uas_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:uas", self.prefix)
    }
    fn revocations_key(&self) -> String {
        format!("{}:revocations", self.prefix)
    }
    fn idp_key(&self, provider: &str, key: IdpKey<'_>) -> String {
        let (kind, value) = match key {
            IdpKey::Sid(v) => ("sid", v),
            IdpKey::Sub(v) => ("sub", v),
        };
        format!(
            "{}:idp:{kind}:{}:{provider}:{value}",
            self.prefix,
            provider.len()
        )
    }
    /// The user's second-factor keys (`""`, `:step`, `:rc`, `:pending`, `:grace`), in the
    /// user's slot.
    fn factor_key(&self, user: &str, part: &str) -> String {
        format!("{}:{{{user}}}:2fa{part}", self.prefix)
    }
    fn factor_keys(&self, user: &str) -> [String; 4] {
        ["", ":step", ":rc", ":pending"].map(|p| self.factor_key(user, p))
    }
    fn passkeys_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:passkeys", self.prefix)
    }
    fn once_key(&self, key: &str) -> String {
        format!("{}:once:{key}", self.prefix)
    }
    fn rate_key(&self, key: &str) -> String {
        format!("{}:rl:{key}", self.prefix)
    }

    /// The members of a sorted set scored by expiry, once the expired ones are removed.
    async fn live_members(
        &self,
        c: &mut Conn,
        f: &AtomicBool,
        key: &str,
    ) -> Result<Vec<String>, StoreError> {
        let () = self
            .timed(
                f,
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(now_unix())
                    .query_async(c),
            )
            .await?;
        self.timed(
            f,
            redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).query_async(c),
        )
        .await
    }

    /// This thread's connection (made within `store.connect_timeout` if there is none).
    async fn conn(&self) -> Result<Conn, StoreError> {
        self.conns.get().await
    }

    /// One command, bounded by `store.command_timeout`.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        self.timed(&f, cmd.query_async(&mut c)).await
    }

    /// One script call, bounded by `store.command_timeout`.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        self.timed(&f, inv.invoke_async(&mut c)).await
    }

    /// One Redis operation, bounded by `store.command_timeout`. A connection on which a
    /// command timed out is replaced at its next use (the commands still in flight on it
    /// finish or fail there): a Redis that stopped answering on one connection may answer on
    /// a new one.
    async fn timed<T>(
        &self,
        flag: &AtomicBool,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.command_timeout, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => {
                flag.store(true, Ordering::Relaxed);
                Err(StoreError::Timeout)
            }
        }
    }

    /// Record revocations for instances that start or reconnect later.
    async fn remember_revocations(&self, sids: &[String], until: u64) -> Result<(), StoreError> {
        if sids.is_empty() {
            return Ok(());
        }
        let key = self.revocations_key();
        let now = now_unix();
        let members: Vec<(u64, &str)> = sids.iter().map(|s| (until, s.as_str())).collect();
        let mut p = redis::pipe();
        p.zadd_multiple(&key, &members).ignore();
        p.zrembyscore(&key, "-inf", now).ignore();
        p.expire(
            &key,
            i64::try_from(until.saturating_sub(now) + 60).unwrap_or(i64::MAX),
        )
        .ignore();
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        self.timed(&f, p.query_async::<()>(&mut c)).await
    }

    /// The index keys a back-channel logout may find `link`'s sessions under.
    fn idp_keys(&self, link: &IdpLink) -> Vec<String> {
        link.keys()
            .map(|k| self.idp_key(&link.provider, k))
            .collect()
    }

    /// Add `member` (ending at `abs_end`) to each IdP index key of `keys`: one single-key
    /// script per key (each may live in its own cluster slot).
    async fn index_idp(
        &self,
        keys: &[String],
        member: &str,
        abs_end: u64,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let now = now_unix();
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        for k in keys {
            let mut inv = self.scripts.idp_index.key(k);
            inv.arg(member).arg(abs_end).arg(now).arg(IDP_INDEX_MAX);
            self.timed(&f, inv.invoke_async::<i64>(&mut c)).await?;
        }
        Ok(())
    }

    /// Remove `member` from the IdP index keys of `keys`, best effort: an entry left behind
    /// expires with its key, and `idp_sessions` drops it once it finds the record gone.
    async fn unindex_idp(&self, keys: &[String], member: &str) {
        if keys.is_empty() {
            return;
        }
        let r: Result<(), StoreError> = async {
            let mut c = self.conn().await?;
            let f = c.broken.clone();
            for k in keys {
                let _: i64 = self
                    .timed(
                        &f,
                        redis::cmd("ZREM").arg(k).arg(member).query_async(&mut c),
                    )
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not drop an ended session's IdP index entries");
        }
    }

    /// After a session ended: drop its IdP index entries, if it had a link.
    async fn unindex_ended(&self, user: &str, sid: &str, link: Option<&IdpLink>) {
        if let Some(link) = link {
            self.unindex_idp(&self.idp_keys(link), &idp_member(user, sid))
                .await;
        }
    }

    fn start_feed(&self) {
        let clients = self.pubsub.clone();
        let conns = self.conns.clone();
        let timeout = self.command_timeout;
        let channel = self.revocations_key();
        let tx = self.feed.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut node = 0usize;
            loop {
                let started = std::time::Instant::now();
                match feed_once(
                    &clients[node % clients.len()],
                    &conns,
                    timeout,
                    &channel,
                    &tx,
                )
                .await
                {
                    Ok(()) => tracing::warn!("revocation feed: connection closed"),
                    Err(e) => tracing::warn!(error = %e, "revocation feed: Redis unreachable"),
                }
                let _ = tx.send(FeedEvent::Lost);
                node += 1;
                // A feed that ran for a while failed afresh: start the backoff over.
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }
}

/// Subscribe, then load the revocations in force (so none falls between the two), then relay
/// messages until the connection drops.
async fn feed_once(
    client: &redis::Client,
    conns: &Connections,
    timeout: Duration,
    channel: &str,
    tx: &broadcast::Sender<FeedEvent>,
) -> redis::RedisResult<()> {
    let mut ps = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    ps.subscribe(channel).await?;
    // Read through the store's connections: in a cluster, only they know which node holds
    // the key.
    let list = read_revocations(conns, timeout, channel, now_unix())
        .await
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "resync", e.to_string())))?;
    let _ = tx.send(FeedEvent::Resynced(list));
    tracing::info!("revocation feed: subscribed and synchronised");
    let mut stream = ps.on_message();
    while let Some(msg) = stream.next().await {
        let Ok(text) = msg.get_payload::<String>() else {
            continue;
        };
        if let Some((sid, until)) = text.split_once(' ')
            && let Ok(until) = until.parse()
        {
            let _ = tx.send(FeedEvent::Revoked(Revocation {
                sid: sid.to_string(),
                until,
            }));
        }
    }
    Ok(())
}

/// An IdP index member: `["user","sid"]` (JSON, so neither part can be read as the other).
fn idp_member(user: &str, sid: &str) -> String {
    serde_json::to_string(&(user, sid)).unwrap_or_default()
}

/// An `idp` field as a script returned it (`''` for none). One that does not parse is `None`:
/// it only decides which index entries to drop, and a left-over entry is harmless.
fn parse_link(json: &str) -> Option<IdpLink> {
    if json.is_empty() {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// The key of a user agent's text in the user's `uas` hash: 72 bits of its SHA-256, base64url
fn ua_hash(ua: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(ua.as_bytes());
    crate::util::b64(&d[..9])
}

fn field<'a>(m: &'a HashMap<String, String>, k: &str) -> &'a str {
    m.get(k).map_or("", String::as_str)
}

fn num(m: &HashMap<String, String>, k: &str) -> u64 {
    field(m, k).parse().unwrap_or(0)
}

fn to_record(sid: &str, m: &HashMap<String, String>) -> Option<SessionRecord> {
    if m.is_empty() {
        return None;
    }
    Some(SessionRecord {
        sid: sid.to_string(),
        user: field(m, "user").to_string(),
        // A record whose roles do not parse is not a record (never a user without roles).
        roles: serde_json::from_str(field(m, "roles")).ok()?,
        created: num(m, "created"),
        last_seen: num(m, "last_seen"),
        abs_end: num(m, "abs_end"),
        cur_jti: field(m, "cur").to_string(),
        prev_jti: m.get("prev").filter(|p| !p.is_empty()).cloned(),
        rotated_at_ms: match field(m, "rot_ms").parse() {
            Ok(ms) => ms,
            Err(_) => num(m, "rot").saturating_mul(1000),
        },
        prev_open: field(m, "open") == "1",
        ip: field(m, "ip").to_string(),
        user_agent: field(m, "ua").to_string(),
        // Derived from the user agent, as the gateway labels it (records written before the
        // user agents moved out kept it).
        device: match m.get("dev") {
            Some(d) => d.clone(),
            None => crate::web::user_agent::UserAgent::from_bytes(field(m, "ua").as_bytes())
                .device()
                .label(),
        },
        // Absent: no provider (or a record from before the field). Present but unreadable: not
        // a record, as with the roles (never a session that escaped its provider's logout).
        idp: match m.get("idp") {
            None => None,
            Some(json) => Some(serde_json::from_str(json).ok()?),
        },
        // Written at creation since step-up; a record from before: its login.
        auth_time: field(m, "auth")
            .parse()
            .unwrap_or_else(|_| num(m, "created")),
        // Written only above 1: with a previous jti and no count, the session rotated once.
        refreshes: match field(m, "rn").parse() {
            Ok(n) => n,
            Err(_) => u32::from(m.get("prev").is_some_and(|p| !p.is_empty())),
        },
    })
}

/// The rotate script's answer: `{"notfound"}`, or a kind and the record's fields. Anything else
/// is an error, never "not found" (which would log the user out).
fn rotate_outcome(sid: &str, out: Vec<String>) -> Result<RotateOutcome, StoreError> {
    let mut out = out.into_iter();
    let Some(kind) = out.next() else {
        return Err(StoreError::UnexpectedReply("empty rotate reply".into()));
    };
    if kind == "notfound" {
        return Ok(RotateOutcome::NotFound);
    }
    let rec = to_record(sid, &pairs_to_map(out)).ok_or_else(|| {
        StoreError::UnexpectedReply(format!("rotate reply {kind:?} without a valid record"))
    });
    match kind.as_str() {
        "rotated" => Ok(RotateOutcome::Rotated(rec?)),
        "grace" => Ok(RotateOutcome::Grace(rec?)),
        "reused" => Ok(RotateOutcome::Reused(rec?)),
        "idle" => Ok(RotateOutcome::Idle(rec?)),
        other => Err(StoreError::UnexpectedReply(format!(
            "unknown rotate reply {other:?}"
        ))),
    }
}

/// `[field, value, field, value, ...]` as a map (a last field without a value is dropped).
fn pairs_to_map(v: impl IntoIterator<Item = String>) -> HashMap<String, String> {
    let mut v = v.into_iter();
    std::iter::from_fn(|| Some((v.next()?, v.next()?))).collect()
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError> {
        let hk = self.session_key(&rec.user, &rec.sid);
        let ik = self.index_key(&rec.user);
        let roles = serde_json::to_string(&rec.roles).unwrap_or_else(|_| "[]".into());
        // Compact: a field whose value is the default is left out (`prev` none, `open` 0, `auth`
        // the login itself), and what the record needs no more is not written (`rot` in seconds,
        // `dev`, the user agent's text: see CREATE); every field an earlier version reads is
        // still written under its name, so instances of it keep working during an upgrade.
        let mut fields: Vec<(&str, String)> = vec![
            ("user", rec.user.clone()),
            ("roles", roles),
            ("created", rec.created.to_string()),
            ("last_seen", rec.last_seen.to_string()),
            ("abs_end", rec.abs_end.to_string()),
            ("cur", rec.cur_jti.clone()),
            ("rot_ms", rec.rotated_at_ms.to_string()),
            ("ip", rec.ip.clone()),
            ("uah", ua_hash(&rec.user_agent)),
        ];
        if let Some(prev) = &rec.prev_jti {
            fields.push(("prev", prev.clone()));
        }
        if rec.prev_open {
            fields.push(("open", "1".into()));
        }
        if rec.auth_time != 0 && rec.auth_time != rec.created {
            fields.push(("auth", rec.auth_time.to_string()));
        }
        // `rn` absent reads as 1 with a previous jti, else 0 (see ROTATE).
        if rec.refreshes != u32::from(rec.prev_jti.is_some()) {
            fields.push(("rn", rec.refreshes.to_string()));
        }
        let idp = match &rec.idp {
            Some(link) => Some(serde_json::to_string(link).map_err(unavailable)?),
            None => None,
        };
        let mut inv = self.scripts.create.key(&hk);
        inv.key(&ik)
            .key(self.uas_key(&rec.user))
            .arg(&rec.sid)
            .arg(rec.abs_end)
            .arg(now_unix())
            .arg(ua_hash(&rec.user_agent))
            .arg(&rec.user_agent)
            .arg(self.session_key(&rec.user, ""));
        for (k, v) in &fields {
            inv.arg(*k).arg(v);
        }
        if let Some(json) = &idp {
            inv.arg("idp").arg(json);
        }
        self.invoke::<i64>(&inv).await?;
        let Some(link) = &rec.idp else {
            return Ok(());
        };
        // After the record (the index lives in other cluster slots). A session back-channel
        // logout could not find must not start: take the record back and fail the login.
        let member = idp_member(&rec.user, &rec.sid);
        if let Err(e) = self
            .index_idp(&self.idp_keys(link), &member, rec.abs_end)
            .await
        {
            if let Err(undo) = self.revoke(&rec.user, &rec.sid, 0).await {
                tracing::warn!(error = %undo, "could not remove a session whose IdP index failed");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn rotate(
        &self,
        user: &str,
        sid: &str,
        presented: &str,
        new_jti: &str,
        p: RotatePolicy,
    ) -> Result<RotateOutcome, StoreError> {
        let until = p.now + p.revocation_ttl;
        let mut inv = self.scripts.rotate.key(self.session_key(user, sid));
        inv.key(self.index_key(user))
            .key(self.uas_key(user))
            .arg(presented)
            .arg(new_jti)
            .arg(p.now)
            .arg(p.grace_ms)
            .arg(p.idle_secs)
            .arg(sid)
            .arg(self.revocations_key())
            .arg(until)
            .arg(p.now_ms)
            .arg(p.window_secs);
        let out: Vec<String> = self.invoke(&inv).await?;
        let outcome = rotate_outcome(sid, out)?;
        if let RotateOutcome::Reused(rec) | RotateOutcome::Idle(rec) = &outcome {
            // The session is gone either way; the list only helps late joiners.
            if let Err(e) = self.remember_revocations(&[sid.to_string()], until).await {
                tracing::warn!(error = %e, "could not record a revocation for resynchronisation");
            }
            self.unindex_ended(user, sid, rec.idp.as_ref()).await;
        }
        Ok(outcome)
    }

    async fn reopen(
        &self,
        user: &str,
        sid: &str,
        prev_jti: &str,
        new_jti: &str,
    ) -> Result<bool, StoreError> {
        let mut inv = self.scripts.reopen.key(self.session_key(user, sid));
        inv.arg(prev_jti).arg(new_jti);
        let n: i64 = self.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        self.read_record(&mut c, &f, user, sid).await
    }

    async fn revoke(&self, user: &str, sid: &str, ttl: u64) -> Result<bool, StoreError> {
        let until = now_unix() + ttl;
        let mut inv = self.scripts.revoke.key(self.session_key(user, sid));
        inv.key(self.index_key(user))
            .arg(sid)
            .arg(self.revocations_key())
            .arg(until);
        let out: Vec<String> = self.invoke(&inv).await?;
        let existed = match out.first().map(String::as_str) {
            Some("1") => true,
            Some("0") => false,
            _ => {
                return Err(StoreError::UnexpectedReply(
                    "unexpected revoke reply".into(),
                ));
            }
        };
        if existed {
            // The session is gone and the revocation published; the list only helps instances
            // that join later, so its failure must not turn a done logout into an error.
            if let Err(e) = self.remember_revocations(&[sid.to_string()], until).await {
                tracing::warn!(error = %e, "could not record a revocation for resynchronisation");
            }
            let link = out.get(1).and_then(|j| parse_link(j));
            self.unindex_ended(user, sid, link.as_ref()).await;
        }
        Ok(existed)
    }

    async fn revoke_all(&self, user: &str, ttl: u64) -> Result<Vec<String>, StoreError> {
        let until = now_unix() + ttl;
        let mut inv = self.scripts.revoke_all.key(self.index_key(user));
        inv.arg(format!("{}:{{{user}}}:s:", self.prefix))
            .arg(self.revocations_key())
            .arg(until);
        let out: Vec<String> = self.invoke(&inv).await?;
        if !out.len().is_multiple_of(2) {
            return Err(StoreError::UnexpectedReply(
                "unexpected revoke-all reply".into(),
            ));
        }
        let sids: Vec<String> = out.iter().step_by(2).cloned().collect();
        if let Err(e) = self.remember_revocations(&sids, until).await {
            tracing::warn!(error = %e, "could not record revocations for resynchronisation");
        }
        for pair in out.chunks_exact(2) {
            self.unindex_ended(user, &pair[0], parse_link(&pair[1]).as_ref())
                .await;
        }
        Ok(sids)
    }

    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let ik = self.index_key(user);
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        let sids = self.live_members(&mut c, &f, &ik).await?;
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            if let Some(r) = self.read_record(&mut c, &f, user, &sid).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        for (user, sid, at) in seen {
            let mut inv = self.scripts.touch.key(self.session_key(user, sid));
            inv.arg(*at);
            self.timed(&f, inv.invoke_async::<i64>(&mut c)).await?;
        }
        Ok(())
    }

    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        read_revocations(
            &self.conns,
            self.command_timeout,
            &self.revocations_key(),
            now,
        )
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        let rx = self.feed.subscribe();
        if self.feed_started.set(()).is_ok() {
            self.start_feed();
        }
        rx
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::UnexpectedReply("unexpected PING answer".into()))
        }
    }

    async fn idp_sessions(
        &self,
        provider: &str,
        key: IdpKey<'_>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let ik = self.idp_key(provider, key);
        let mut c = self.conn().await?;
        let f = c.broken.clone();
        let members = self.live_members(&mut c, &f, &ik).await?;
        let mut out = Vec::with_capacity(members.len());
        let mut gone = Vec::new();
        for member in members {
            let Ok((user, sid)) = serde_json::from_str::<(String, String)>(&member) else {
                gone.push(member);
                continue;
            };
            // Another slot than the index (the user's): one read per session, at most
            // IDP_INDEX_MAX of them.
            let (owner, link): (Option<String>, Option<String>) = self
                .timed(
                    &f,
                    redis::cmd("HMGET")
                        .arg(self.session_key(&user, &sid))
                        .arg("user")
                        .arg("idp")
                        .query_async(&mut c),
                )
                .await?;
            if owner.is_none() {
                gone.push(member);
            } else if link
                .and_then(|j| parse_link(&j))
                .is_some_and(|l| l.matches(provider, key))
            {
                out.push((user, sid));
            }
        }
        if !gone.is_empty() {
            let r: Result<i64, StoreError> = self
                .timed(
                    &f,
                    redis::cmd("ZREM").arg(&ik).arg(&gone).query_async(&mut c),
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not drop ended sessions' IdP index entries");
            }
        }
        Ok(out)
    }

    async fn first_use(&self, key: &str, until: u64) -> Result<bool, StoreError> {
        // Nothing to remember: "already used" (Redis would accept a past EXAT and forget it).
        if until <= now_unix() {
            return Ok(false);
        }
        let v: Value = self
            .query(
                redis::cmd("SET")
                    .arg(self.once_key(key))
                    .arg("1")
                    .arg("NX")
                    .arg("EXAT")
                    .arg(until),
            )
            .await?;
        match v {
            Value::Okay => Ok(true),
            Value::SimpleString(s) if s == "OK" => Ok(true),
            Value::Nil => Ok(false),
            _ => Err(StoreError::UnexpectedReply(
                "unexpected SET NX answer".into(),
            )),
        }
    }

    async fn update_identity(
        &self,
        user: &str,
        sid: &str,
        roles: &[String],
        idp: Option<&IdpLink>,
    ) -> Result<bool, StoreError> {
        let roles_json = serde_json::to_string(roles).map_err(unavailable)?;
        let idp_json = match idp {
            Some(link) => serde_json::to_string(link).map_err(unavailable)?,
            None => String::new(),
        };
        let mut inv = self
            .scripts
            .update_identity
            .key(self.session_key(user, sid));
        inv.arg(roles_json).arg(idp_json);
        let out: Vec<String> = self.invoke(&inv).await?;
        let (abs_end, old) = match out.as_slice() {
            [applied] if applied == "0" => return Ok(false),
            [applied, abs_end, old] if applied == "1" => match abs_end.parse::<u64>() {
                Ok(end) => (end, parse_link(old)),
                Err(_) => {
                    return Err(StoreError::UnexpectedReply(
                        "update-identity reply without an absolute end".into(),
                    ));
                }
            },
            _ => {
                return Err(StoreError::UnexpectedReply(
                    "unexpected update-identity reply".into(),
                ));
            }
        };
        // The record first, then the index (another slot): the keys the new link adds, then
        // the ones it no longer has.
        let member = idp_member(user, sid);
        let old_keys = old.as_ref().map(|l| self.idp_keys(l)).unwrap_or_default();
        let new_keys = idp.map(|l| self.idp_keys(l)).unwrap_or_default();
        let added: Vec<String> = new_keys
            .iter()
            .filter(|k| !old_keys.contains(k))
            .cloned()
            .collect();
        let dropped: Vec<String> = old_keys
            .into_iter()
            .filter(|k| !new_keys.contains(k))
            .collect();
        self.index_idp(&added, &member, abs_end).await?;
        self.unindex_idp(&dropped, &member).await;
        Ok(true)
    }

    async fn factor(&self, user: &str) -> Result<Option<FactorRecord>, StoreError> {
        let m: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.factor_key(user, "")))
            .await?;
        let Some(secret) = m.get("secret") else {
            return Ok(None);
        };
        Ok(Some(FactorRecord {
            secret_sealed: secret.clone(),
            enrolled_at: num(&m, "enrolled"),
        }))
    }

    async fn set_factor(
        &self,
        user: &str,
        rec: &FactorRecord,
        step: u64,
        recovery: &[String],
    ) -> Result<(), StoreError> {
        let keys = self.factor_keys(user);
        let mut inv = self.scripts.set_factor.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(&rec.secret_sealed).arg(rec.enrolled_at).arg(step);
        for h in recovery {
            inv.arg(h);
        }
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    async fn remove_factor(&self, user: &str) -> Result<bool, StoreError> {
        let mut inv = self.scripts.remove_factor.prepare_invoke();
        for k in &self.factor_keys(user) {
            inv.key(k);
        }
        let had: i64 = self.invoke(&inv).await?;
        Ok(had == 1)
    }

    async fn put_pending_factor(
        &self,
        user: &str,
        sealed: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        let () = self
            .query(
                redis::cmd("SET")
                    .arg(self.factor_key(user, ":pending"))
                    .arg(sealed)
                    .arg("EXAT")
                    .arg(until),
            )
            .await?;
        Ok(())
    }

    async fn pending_factor(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(self.factor_key(user, ":pending")))
            .await
    }

    async fn use_factor_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let mut inv = self.scripts.use_step.key(self.factor_key(user, ""));
        inv.key(self.factor_key(user, ":step")).arg(step);
        let ok: i64 = self.invoke(&inv).await?;
        Ok(ok == 1)
    }

    async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .query(
                redis::cmd("SREM")
                    .arg(self.factor_key(user, ":rc"))
                    .arg(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn recovery_codes_left(&self, user: &str) -> Result<usize, StoreError> {
        self.query(redis::cmd("SCARD").arg(self.factor_key(user, ":rc")))
            .await
    }

    async fn factor_grace_start(&self, user: &str, now: u64) -> Result<u64, StoreError> {
        let mut inv = self
            .scripts
            .grace_start
            .key(self.factor_key(user, ":grace"));
        inv.arg(now);
        let v: String = self.invoke(&inv).await?;
        v.parse()
            .map_err(|_| StoreError::UnexpectedReply("a grace start that is no number".into()))
    }

    async fn passkeys(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let m: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.passkeys_key(user)))
            .await?;
        Ok(m.into_iter().collect())
    }

    async fn put_passkey(
        &self,
        user: &str,
        id: &str,
        record: &str,
        write: super::PasskeyWrite,
    ) -> Result<bool, StoreError> {
        let mut inv = self.scripts.put_passkey.key(self.passkeys_key(user));
        inv.arg(id).arg(record);
        match write {
            super::PasskeyWrite::Add { max } => inv.arg("add").arg(max),
            super::PasskeyWrite::Update => inv.arg("update").arg(0),
        };
        let ok: i64 = self.invoke(&inv).await?;
        Ok(ok == 1)
    }

    async fn remove_passkey(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .query(redis::cmd("HDEL").arg(self.passkeys_key(user)).arg(id))
            .await?;
        Ok(n == 1)
    }

    async fn rate_take(
        &self,
        key: &str,
        gcra: super::gcra::Gcra,
        want: u64,
    ) -> Result<super::gcra::Take, StoreError> {
        let mut inv = self.scripts.rate_limit.key(self.rate_key(key));
        inv.arg(gcra.interval_us).arg(gcra.burst).arg(want);
        let out: Vec<i64> = self.invoke(&inv).await?;
        let n = |v: i64| u64::try_from(v).ok();
        match out.as_slice() {
            [g, r, retry, reset] => match (n(*g), n(*r), n(*retry), n(*reset)) {
                (Some(granted), Some(remaining), Some(retry_after_us), Some(reset_us))
                    if granted <= want =>
                {
                    Ok(super::gcra::Take {
                        granted,
                        remaining,
                        retry_after_us,
                        reset_us,
                    })
                }
                _ => Err(StoreError::UnexpectedReply(
                    "rate-limit reply out of range".into(),
                )),
            },
            _ => Err(StoreError::UnexpectedReply(
                "unexpected rate-limit reply".into(),
            )),
        }
    }

    fn shares_rate_limits(&self) -> bool {
        true
    }
}

/// The revocations still in force (`until` after `now`), from the sorted set `key`.
async fn read_revocations(
    conns: &Connections,
    timeout: Duration,
    key: &str,
    now: u64,
) -> Result<Vec<Revocation>, StoreError> {
    let mut c = conns.get().await?;
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(key).arg(now + 1).arg("+inf").arg("WITHSCORES");
    match tokio::time::timeout(timeout, cmd.query_async::<Vec<(String, u64)>>(&mut c)).await {
        Ok(Ok(list)) => Ok(list
            .into_iter()
            .map(|(sid, until)| Revocation { sid, until })
            .collect()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => {
            c.broken.store(true, Ordering::Relaxed);
            Err(StoreError::Timeout)
        }
    }
}

/// Build the configured store.
pub fn build(cfg: &RedisConfig) -> Result<Arc<RedisStore>, StoreError> {
    RedisStore::new(cfg).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silent_server_config(port: u16) -> RedisConfig {
        RedisConfig {
            url: Some(crate::config::Secret::new(
                format!("redis://127.0.0.1:{port}/0").into_bytes(),
            )),
            cluster_nodes: Vec::new(),
            password: None,
            username: None,
            ca_pem: None,
            pool_size: 4,
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_secs(1),
            key_prefix: "sg".into(),
        }
    }

    /// A "Redis" that accepts connections and never answers: making a connection times out.
    /// Requests that queue behind one attempt fail with it, rather than each waiting for an
    /// attempt of its own (8 in a row would take 8 × 300 ms), and the next request tries again.
    #[tokio::test]
    async fn requests_waiting_on_a_failed_connection_attempt_fail_with_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let store = Arc::new(RedisStore::new(&silent_server_config(port)).unwrap());
        let started = std::time::Instant::now();
        let pings: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.ping().await })
            })
            .collect();
        for p in pings {
            assert!(p.await.unwrap().is_err(), "a silent server is not up");
        }
        let wave = started.elapsed();
        assert!(
            wave < Duration::from_millis(1200),
            "8 queued requests took {wave:?}: each made an attempt of its own"
        );
        let again = std::time::Instant::now();
        // (Our bound or the client's own connection timeout, whichever fires first.)
        assert!(store.ping().await.is_err());
        assert!(
            again.elapsed() >= Duration::from_millis(250),
            "the next request tries to connect again"
        );
    }

    fn reply(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_or_broken_rotate_replies_are_errors_not_logouts() {
        assert_eq!(
            rotate_outcome("s", reply(&["notfound"])).ok(),
            Some(RotateOutcome::NotFound)
        );
        for bad in [
            &[][..],
            &["rotated"][..],
            &["grace", "user"][..],
            &["renamed_in_a_newer_script", "user", "alice"][..],
        ] {
            assert!(
                matches!(
                    rotate_outcome("s", reply(bad)),
                    Err(StoreError::UnexpectedReply(_))
                ),
                "{bad:?}"
            );
        }
    }
}
