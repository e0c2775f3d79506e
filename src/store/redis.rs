//! The Redis store: many gateway instances, one truth.
//!
//! Keys are hash-tagged by user so that one user's records share a Redis Cluster slot and one
//! Lua script can change them atomically:
//! - `{prefix}:{user}:s:{sid}` — hash: the session record, expiring at the absolute end;
//! - `{prefix}:{user}:sessions` — sorted set of the user's sids, scored by absolute end;
//! - `{prefix}:revocations` — sorted set of revoked sids, scored by when the last access token
//!   minted for them expires (for instances that start or reconnect);
//! - channel `{prefix}:revocations` — every revocation as it happens, `"<sid> <until>"`.
//!
//! Create, rotate (grace, reuse detection), reopen (a rotation that never reached its client),
//! revoke and revoke-all are each one script, so two instances racing on one refresh token can
//! never both rotate it. Refresh `jti`s are stored, never a token. Every call is bounded by
//! `store.command_timeout`; a failure is a `StoreError`, which the gateway answers with `503`,
//! never a logout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::broadcast;

use super::{
    FeedEvent, Revocation, RotateOutcome, RotatePolicy, SessionRecord, SessionStore, StoreError,
};
use crate::config::RedisConfig;
use crate::util::now_unix;

/// A pooled connection plus a flag set when it failed: bb8 drops it instead of handing a dead
/// multiplexed connection out again, so the store recovers by itself when Redis comes back.
pub struct Tracked<C> {
    conn: C,
    broken: Arc<AtomicBool>,
}

/// Wraps a connection manager so that failed connections are discarded (`has_broken`).
pub struct Managed<M>(M);

impl<M: bb8::ManageConnection> bb8::ManageConnection for Managed<M> {
    type Connection = Tracked<M::Connection>;
    type Error = M::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(Tracked {
            conn: self.0.connect().await?,
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn is_valid(&self, c: &mut Self::Connection) -> Result<(), Self::Error> {
        self.0.is_valid(&mut c.conn).await
    }

    fn has_broken(&self, c: &mut Self::Connection) -> bool {
        c.broken.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
enum Pool {
    Single(bb8::Pool<Managed<redis::Client>>),
    Cluster(bb8::Pool<Managed<ClusterClient>>),
}

/// A pooled connection of either kind, usable wherever redis wants a connection.
enum Conn<'a> {
    Single(bb8::PooledConnection<'a, Managed<redis::Client>>),
    Cluster(bb8::PooledConnection<'a, Managed<ClusterClient>>),
}

impl Conn<'_> {
    fn flag(&self) -> Arc<AtomicBool> {
        match self {
            Conn::Single(c) => c.broken.clone(),
            Conn::Cluster(c) => c.broken.clone(),
        }
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

fn watch<'a, T: Send + 'a>(flag: Arc<AtomicBool>, fut: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let r = fut.await;
        if let Err(e) = &r {
            if breaks_connection(e) {
                flag.store(true, Ordering::Relaxed);
            }
        }
        r
    })
}

impl ConnectionLike for Conn<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let flag = self.flag();
        match self {
            Conn::Single(c) => watch(flag, c.conn.req_packed_command(cmd)),
            Conn::Cluster(c) => watch(flag, c.conn.req_packed_command(cmd)),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let flag = self.flag();
        match self {
            Conn::Single(c) => watch(flag, c.conn.req_packed_commands(p, offset, count)),
            Conn::Cluster(c) => watch(flag, c.conn.req_packed_commands(p, offset, count)),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.conn.get_db(),
            Conn::Cluster(c) => c.conn.get_db(),
        }
    }
}

const CREATE: &str = r"
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[2], last[2])
return 1
";

/// ARGV: presented jti, new jti, now (s), grace (ms), idle (s), sid, channel, revocation until,
/// now (ms). Returns {outcome, field, value, ...} with the record as it is after the operation.
/// The previous jti is accepted within the grace (counted in milliseconds: `rot_ms`; a record
/// written before it has only `rot`, in seconds) or while `open` says its rotation never
/// reached the client.
const ROTATE: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'notfound'} end
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
  redis.call('HSET', KEYS[1], 'prev', r['cur'], 'cur', ARGV[2], 'rot', ARGV[3], 'rot_ms', ARGV[9],
    'open', '0', 'last_seen', ARGV[3])
  local out = {'rotated'}
  local h2 = redis.call('HGETALL', KEYS[1])
  for i = 1, #h2 do out[#out + 1] = h2[i] end
  return out
end
if previous then
  local out = {'grace'}
  for i = 1, #h do out[#out + 1] = h[i] end
  return out
end
return finish('reused')
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

/// ARGV: sid, channel, revocation until.
const REVOKE: &str = r"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. ARGV[3]) end
return n
";

/// KEYS[1] the user's index; ARGV: session key prefix, channel, revocation until.
const REVOKE_ALL: &str = r"
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, sid in ipairs(sids) do
  if redis.call('DEL', ARGV[1] .. sid) == 1 then
    redis.call('PUBLISH', ARGV[2], sid .. ' ' .. ARGV[3])
  end
end
redis.call('DEL', KEYS[1])
return sids
";

/// ARGV: now. Moves `last_seen` forward only, and only on a live session.
const TOUCH: &str = r"
local cur = redis.call('HGET', KEYS[1], 'last_seen')
if cur and tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
return 1
";

struct Scripts {
    create: Script,
    rotate: Script,
    reopen: Script,
    revoke: Script,
    revoke_all: Script,
    touch: Script,
}

pub struct RedisStore {
    pool: Pool,
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

fn pool_builder<M: bb8::ManageConnection>(cfg: &RedisConfig) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(cfg.pool_size)
        .connection_timeout(cfg.connect_timeout)
        .retry_connection(false)
        .test_on_check_out(false)
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
    /// Build the pool (no connection is made until first use, so the gateway starts while Redis
    /// is down and reports it on `/readyz`).
    pub fn new(cfg: &RedisConfig) -> Result<Self, StoreError> {
        let (pool, pubsub_url) = match &cfg.url {
            Some(url) => {
                let url = String::from_utf8_lossy(url.expose()).into_owned();
                let client = node_client(&url, cfg)?;
                (
                    Pool::Single(pool_builder(cfg).build_unchecked(Managed(client))),
                    url,
                )
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
                    Pool::Cluster(pool_builder(cfg).build_unchecked(Managed(client))),
                    nodes.join(" "),
                )
            }
        };
        let pubsub = pubsub_url
            .split(' ')
            .map(|u| node_client(u, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pool,
            pubsub,
            prefix: cfg.key_prefix.clone(),
            command_timeout: cfg.command_timeout,
            scripts: Scripts {
                create: Script::new(CREATE),
                rotate: Script::new(ROTATE),
                reopen: Script::new(REOPEN),
                revoke: Script::new(REVOKE),
                revoke_all: Script::new(REVOKE_ALL),
                touch: Script::new(TOUCH),
            },
            feed: broadcast::channel(4096).0,
            feed_started: OnceLock::new(),
        })
    }

    fn session_key(&self, user: &str, sid: &str) -> String {
        format!("{}:{{{user}}}:s:{sid}", self.prefix)
    }
    fn index_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:sessions", self.prefix)
    }
    fn revocations_key(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// A pooled connection (bounded by `store.connect_timeout`).
    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        Ok(match &self.pool {
            Pool::Single(p) => Conn::Single(p.get().await.map_err(unavailable)?),
            Pool::Cluster(p) => Conn::Cluster(p.get().await.map_err(unavailable)?),
        })
    }

    /// One Redis operation, bounded by `store.command_timeout`. A connection that timed out
    /// is not reused (its answer may still arrive and would be read as the next one's).
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
        let f = c.flag();
        self.timed(&f, p.query_async::<()>(&mut c)).await
    }

    fn start_feed(&self) {
        let clients = self.pubsub.clone();
        let pool = self.pool.clone();
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
                    &pool,
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
    pool: &Pool,
    timeout: Duration,
    channel: &str,
    tx: &broadcast::Sender<FeedEvent>,
) -> redis::RedisResult<()> {
    let mut ps = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    ps.subscribe(channel).await?;
    // Read through the pool: in a cluster, only it knows which node holds the key.
    let list = read_revocations(pool, timeout, channel, now_unix())
        .await
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "resync", e.to_string())))?;
    let _ = tx.send(FeedEvent::Resynced(list));
    tracing::info!("revocation feed: subscribed and synchronised");
    let mut stream = ps.on_message();
    while let Some(msg) = stream.next().await {
        let Ok(text) = msg.get_payload::<String>() else {
            continue;
        };
        if let Some((sid, until)) = text.split_once(' ') {
            if let Ok(until) = until.parse() {
                let _ = tx.send(FeedEvent::Revoked(Revocation {
                    sid: sid.to_string(),
                    until,
                }));
            }
        }
    }
    Ok(())
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
        idp: None,
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
        device: field(m, "dev").to_string(),
    })
}

/// The rotate script's answer: `{"notfound"}`, or a kind and the record's fields. Anything else
/// is an error, never "not found" (which would log the user out).
fn rotate_outcome(sid: &str, out: &[String]) -> Result<RotateOutcome, StoreError> {
    let Some((kind, rest)) = out.split_first() else {
        return Err(StoreError::UnexpectedReply("empty rotate reply".into()));
    };
    if kind == "notfound" {
        return Ok(RotateOutcome::NotFound);
    }
    let rec = to_record(sid, &pairs_to_map(rest)).ok_or_else(|| {
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

fn pairs_to_map(v: &[String]) -> HashMap<String, String> {
    v.chunks_exact(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, rec: SessionRecord) -> Result<(), StoreError> {
        let hk = self.session_key(&rec.user, &rec.sid);
        let ik = self.index_key(&rec.user);
        let roles = serde_json::to_string(&rec.roles).unwrap_or_else(|_| "[]".into());
        // `rot` (seconds) beside `rot_ms` keeps instances of the previous version working
        // during a rolling upgrade.
        let fields: [(&str, String); 13] = [
            ("user", rec.user.clone()),
            ("roles", roles),
            ("created", rec.created.to_string()),
            ("last_seen", rec.last_seen.to_string()),
            ("abs_end", rec.abs_end.to_string()),
            ("cur", rec.cur_jti.clone()),
            ("prev", rec.prev_jti.clone().unwrap_or_default()),
            ("rot", (rec.rotated_at_ms / 1000).to_string()),
            ("rot_ms", rec.rotated_at_ms.to_string()),
            ("open", if rec.prev_open { "1" } else { "0" }.to_string()),
            ("ip", rec.ip.clone()),
            ("ua", rec.user_agent.clone()),
            ("dev", rec.device.clone()),
        ];
        let mut inv = self.scripts.create.key(&hk);
        inv.key(&ik).arg(&rec.sid).arg(rec.abs_end).arg(now_unix());
        for (k, v) in &fields {
            inv.arg(*k).arg(v);
        }
        let mut c = self.conn().await?;
        let f = c.flag();
        self.timed(&f, inv.invoke_async::<i64>(&mut c))
            .await
            .map(|_| ())
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
            .arg(presented)
            .arg(new_jti)
            .arg(p.now)
            .arg(p.grace_ms)
            .arg(p.idle_secs)
            .arg(sid)
            .arg(self.revocations_key())
            .arg(until)
            .arg(p.now_ms);
        let mut c = self.conn().await?;
        let f = c.flag();
        let out: Vec<String> = self.timed(&f, inv.invoke_async(&mut c)).await?;
        drop(c);
        let outcome = rotate_outcome(sid, &out)?;
        if matches!(outcome, RotateOutcome::Reused(_) | RotateOutcome::Idle(_)) {
            // The session is gone either way; the list only helps late joiners.
            if let Err(e) = self.remember_revocations(&[sid.to_string()], until).await {
                tracing::warn!(error = %e, "could not record a revocation for resynchronisation");
            }
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
        let mut c = self.conn().await?;
        let f = c.flag();
        let n: i64 = self.timed(&f, inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    async fn get(&self, user: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn().await?;
        let f = c.flag();
        let m: HashMap<String, String> = self
            .timed(
                &f,
                redis::cmd("HGETALL")
                    .arg(self.session_key(user, sid))
                    .query_async(&mut c),
            )
            .await?;
        Ok(to_record(sid, &m))
    }

    async fn revoke(&self, user: &str, sid: &str, ttl: u64) -> Result<bool, StoreError> {
        let until = now_unix() + ttl;
        let mut inv = self.scripts.revoke.key(self.session_key(user, sid));
        inv.key(self.index_key(user))
            .arg(sid)
            .arg(self.revocations_key())
            .arg(until);
        let mut c = self.conn().await?;
        let f = c.flag();
        let n: i64 = self.timed(&f, inv.invoke_async(&mut c)).await?;
        drop(c);
        if n == 1 {
            // The session is gone and the revocation published; the list only helps instances
            // that join later, so its failure must not turn a done logout into an error.
            if let Err(e) = self.remember_revocations(&[sid.to_string()], until).await {
                tracing::warn!(error = %e, "could not record a revocation for resynchronisation");
            }
        }
        Ok(n == 1)
    }

    async fn revoke_all(&self, user: &str, ttl: u64) -> Result<Vec<String>, StoreError> {
        let until = now_unix() + ttl;
        let mut inv = self.scripts.revoke_all.key(self.index_key(user));
        inv.arg(format!("{}:{{{user}}}:s:", self.prefix))
            .arg(self.revocations_key())
            .arg(until);
        let mut c = self.conn().await?;
        let f = c.flag();
        let sids: Vec<String> = self.timed(&f, inv.invoke_async(&mut c)).await?;
        drop(c);
        if let Err(e) = self.remember_revocations(&sids, until).await {
            tracing::warn!(error = %e, "could not record revocations for resynchronisation");
        }
        Ok(sids)
    }

    async fn list(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let ik = self.index_key(user);
        let mut c = self.conn().await?;
        let f = c.flag();
        let () = self
            .timed(
                &f,
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(&ik)
                    .arg("-inf")
                    .arg(now_unix())
                    .query_async(&mut c),
            )
            .await?;
        let sids: Vec<String> = self
            .timed(
                &f,
                redis::cmd("ZRANGE")
                    .arg(&ik)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            let m: HashMap<String, String> = self
                .timed(
                    &f,
                    redis::cmd("HGETALL")
                        .arg(self.session_key(user, &sid))
                        .query_async(&mut c),
                )
                .await?;
            if let Some(r) = to_record(&sid, &m) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    async fn touch(&self, seen: &[(String, String, u64)]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let f = c.flag();
        for (user, sid, at) in seen {
            let mut inv = self.scripts.touch.key(self.session_key(user, sid));
            inv.arg(*at);
            self.timed(&f, inv.invoke_async::<i64>(&mut c)).await?;
        }
        Ok(())
    }

    async fn recent_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        read_revocations(
            &self.pool,
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
        let mut c = self.conn().await?;
        let f = c.flag();
        let pong: String = self
            .timed(&f, redis::cmd("PING").query_async(&mut c))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::UnexpectedReply("unexpected PING answer".into()))
        }
    }
}

/// The revocations still in force (`until` after `now`), from the sorted set `key`.
async fn read_revocations(
    pool: &Pool,
    timeout: Duration,
    key: &str,
    now: u64,
) -> Result<Vec<Revocation>, StoreError> {
    let mut c = match pool {
        Pool::Single(p) => Conn::Single(p.get().await.map_err(unavailable)?),
        Pool::Cluster(p) => Conn::Cluster(p.get().await.map_err(unavailable)?),
    };
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(key).arg(now + 1).arg("+inf").arg("WITHSCORES");
    match tokio::time::timeout(timeout, cmd.query_async::<Vec<(String, u64)>>(&mut c)).await {
        Ok(Ok(list)) => Ok(list
            .into_iter()
            .map(|(sid, until)| Revocation { sid, until })
            .collect()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => {
            c.flag().store(true, Ordering::Relaxed);
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

    fn reply(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_or_broken_rotate_replies_are_errors_not_logouts() {
        assert_eq!(
            rotate_outcome("s", &reply(&["notfound"])).ok(),
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
                    rotate_outcome("s", &reply(bad)),
                    Err(StoreError::UnexpectedReply(_))
                ),
                "{bad:?}"
            );
        }
    }
}
