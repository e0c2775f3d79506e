//! The session store's identity-provider support (issue 12, store side) on real Redis: a
//! `redis-server`, and a six-node Redis Cluster (three masters, a replica each), driven
//! through the library's `RedisStore` — the OpenID Connect endpoints that will call it are not
//! built yet, so these are store tests on real processes rather than through the binary.
//!
//! Every behaviour of `sessiongate::store::conformance` (which the memory store's unit tests
//! run too) runs here on both: the IdP link kept by every path, the index by provider session
//! and subject, its bound, ended sessions leaving it, `update_identity` never reviving a
//! session, `first_use` once per key (32 racing tasks, one winner). Defended here besides:
//! - a record written by the previous version (no `idp` field) still loads, rotates and lists,
//!   and becomes reachable by back-channel logout once an identity update gives it a link;
//! - an `idp` field that does not parse is no session (never one that escaped its provider's
//!   logout), and a refresh on it is an error (`503`), not a logout;
//! - a login whose index cannot be written fails and leaves no session behind (an ACL that
//!   denies the index keys), so back-channel logout can reach every session that started;
//! - an index entry whose record vanished, or that does not parse, is dropped when read; an
//!   entry whose record now carries another link is not answered;
//! - the keys: under the prefix, the IdP index in other cluster slots than the user's keys,
//!   expiring with the last session it holds, `first_use` keys expiring at their `until`.

use std::sync::Arc;
use std::time::Duration;

use sessiongate::config::RedisConfig;
use sessiongate::store::conformance::{self as c, found, link, record, unique};
use sessiongate::store::redis::RedisStore;
use sessiongate::store::{IdpKey, RotateOutcome, RotatePolicy, SessionStore, StoreError};
use sessiongate::util::now_unix;

use crate::harness::*;

fn config(url: Option<String>, nodes: Vec<String>) -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_secs(2),
        ..redis_store_config(url, nodes)
    }
}

fn single(url: String) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(&config(Some(url), Vec::new())).expect("redis store"))
}

fn clustered(cluster: &RedisCluster) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(&config(None, cluster.nodes())).expect("cluster store"))
}

/// `redis-cli` as one node, or as the cluster (`-c` follows the redirects).
struct Cli {
    port: u16,
    cluster: bool,
}

impl Cli {
    fn of(redis: &RedisServer) -> Cli {
        Cli {
            port: redis.port,
            cluster: false,
        }
    }
    fn of_cluster(cluster: &RedisCluster) -> Cli {
        Cli {
            port: cluster.ports[0],
            cluster: true,
        }
    }
    fn run(&self, args: &[&str]) -> String {
        let mut all = Vec::new();
        if self.cluster {
            all.push("-c");
        }
        all.extend_from_slice(args);
        String::from_utf8_lossy(&redis_cli(self.port, &all))
            .trim_end()
            .to_string()
    }
}

fn policy() -> RotatePolicy {
    RotatePolicy {
        now: now_unix(),
        now_ms: now_unix() * 1000,
        grace_ms: 10_000,
        idle_secs: 600,
        revocation_ttl: 60,
        window_secs: 60,
    }
}

/// `sg:idp:{kind}:{provider length}:{provider}:{value}`, as the store's module docs give it.
fn idp_key(kind: &str, provider: &str, value: &str) -> String {
    format!("sg:idp:{kind}:{}:{provider}:{value}", provider.len())
}

// ---------------------------------------------------------------------------------------------
// The shared behaviours, on one redis-server each
// ---------------------------------------------------------------------------------------------

macro_rules! on_one_redis {
    ($($name:ident),+ $(,)?) => {
        mod shared_on_one_redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = RedisServer::start().await;
                    c::$name(&*single(redis.url())).await
                }
            )+
        }
    };
}

on_one_redis!(
    idp_link_survives_every_path,
    records_without_idp_load,
    idp_sessions_by_sid_and_sub,
    ended_sessions_leave_the_index,
    index_is_bounded,
    update_identity_replaces_roles_and_link,
    update_identity_never_revives,
    first_use_once_then_expires,
    rotations_are_counted_per_window,
    second_factor_state,
    passkeys_state,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_factor_race_on_one_redis_has_one_winner() {
    let redis = RedisServer::start().await;
    c::second_factor_race(single(redis.url())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_use_race_on_one_redis_has_one_winner() {
    let redis = RedisServer::start().await;
    c::first_use_race(single(redis.url())).await
}

/// Two stores (two gateway instances) on one Redis: a key recorded by one is used for the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_use_is_shared_by_instances() {
    let redis = RedisServer::start().await;
    let (a, b) = (single(redis.url()), single(redis.url()));
    let k = unique("jti");
    assert!(a.first_use(&k, now_unix() + 60).await.unwrap());
    assert!(!b.first_use(&k, now_unix() + 60).await.unwrap());
    let k2 = unique("lease");
    let (x, y) = tokio::join!(
        a.first_use(&k2, now_unix() + 60),
        b.first_use(&k2, now_unix() + 60)
    );
    assert!(
        x.unwrap() ^ y.unwrap(),
        "exactly one instance holds the lease"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis only: records from before, broken fields, keys, failure of the index write
// ---------------------------------------------------------------------------------------------

/// Write a session record as the previous version did (its fields, no `idp`).
fn write_old_record(cli: &Cli, user: &str, sid: &str, jti: &str) {
    let now = now_unix();
    let key = format!("sg:{{{user}}}:s:{sid}");
    let (n, end) = (now.to_string(), (now + 3600).to_string());
    let ms = (now * 1000).to_string();
    let out = cli.run(&[
        "HSET",
        &key,
        "user",
        user,
        "roles",
        r#"["staff"]"#,
        "created",
        &n,
        "last_seen",
        &n,
        "abs_end",
        &end,
        "cur",
        jti,
        "prev",
        "",
        "rot",
        &n,
        "rot_ms",
        &ms,
        "open",
        "0",
        "ip",
        "127.0.0.1",
        "ua",
        "curl/8",
        "dev",
        "Other",
    ]);
    assert_eq!(out, "13", "HSET of an old record: {out}");
    cli.run(&["EXPIREAT", &key, &end]);
    cli.run(&["ZADD", &format!("sg:{{{user}}}:sessions"), &end, sid]);
}

async fn a_record_from_the_previous_version_still_loads(s: &dyn SessionStore, cli: &Cli) {
    let (user, sid) = (unique("old"), unique("sid"));
    write_old_record(cli, &user, &sid, "j1");
    let got = s
        .get(&user, &sid)
        .await
        .unwrap()
        .expect("the old record loads");
    assert_eq!(
        (got.idp.clone(), got.roles.clone()),
        (None, vec!["staff".to_string()])
    );
    assert_eq!(s.list(&user).await.unwrap(), vec![got]);
    match s.rotate(&user, &sid, "j1", "j2", policy()).await.unwrap() {
        RotateOutcome::Rotated(r) => assert_eq!((r.cur_jti.as_str(), r.idp), ("j2", None)),
        other => panic!("rotate of an old record: {other:?}"),
    }
    // Re-checked with a provider, it gains a link and the index finds it.
    let (p, x) = (unique("kc"), unique("sub"));
    let l = link(&p, &x, Some("idp-sid"));
    assert!(
        s.update_identity(&user, &sid, &["a".into()], Some(&l))
            .await
            .unwrap()
    );
    assert_eq!(
        found(s, &p, IdpKey::Sub(&x)).await,
        vec![(user.clone(), sid.clone())]
    );
    assert_eq!(
        found(s, &p, IdpKey::Sid("idp-sid")).await,
        vec![(user.clone(), sid.clone())]
    );
    assert_eq!(s.get(&user, &sid).await.unwrap().unwrap().idp, Some(l));
}

async fn an_unreadable_link_is_no_session(s: &dyn SessionStore, cli: &Cli) {
    let (p, x) = (unique("kc"), unique("sub"));
    let user = unique("u");
    let r = record(&user, 3600, Some(link(&p, &x, None)));
    s.create(r.clone()).await.unwrap();
    let key = format!("sg:{{{user}}}:s:{}", r.sid);
    for broken in [
        "",
        "not json",
        "{\"provider\":1}",
        "{\"sub\":\"x\"}",
        "[]",
        "null",
    ] {
        cli.run(&["HSET", &key, "idp", broken]);
        assert_eq!(
            s.get(&user, &r.sid).await.unwrap(),
            None,
            "idp = {broken:?}"
        );
        assert!(s.list(&user).await.unwrap().is_empty(), "idp = {broken:?}");
        let out = s.rotate(&user, &r.sid, &r.cur_jti, "j2", policy()).await;
        assert!(
            matches!(out, Err(StoreError::UnexpectedReply(_))),
            "a refresh on idp = {broken:?} must be an error, not a logout: {out:?}"
        );
        assert!(
            found(s, &p, IdpKey::Sub(&x)).await.is_empty(),
            "idp = {broken:?}"
        );
    }
    // An anomaly to repair, not a logout: the record is still there.
    assert_eq!(cli.run(&["EXISTS", &key]), "1");
}

/// Entries whose record vanished (a crash after a revoke, an operator's `DEL`) or that do not
/// parse are dropped when read; one whose record carries another link is kept, not answered.
async fn stale_index_entries_are_dropped_when_read(s: &dyn SessionStore, cli: &Cli) {
    let (p, x) = (unique("kc"), unique("sub"));
    let user = unique("u");
    let recs: Vec<_> = (0..4)
        .map(|_| record(&user, 3600, Some(link(&p, &x, None))))
        .collect();
    for r in &recs {
        s.create(r.clone()).await.unwrap();
    }
    let ik = idp_key("sub", &p, &x);
    assert_eq!(cli.run(&["ZCARD", &ik]), "4");
    cli.run(&["DEL", &format!("sg:{{{user}}}:s:{}", recs[0].sid)]);
    let moved = link(&p, &unique("other"), None);
    let moved_json = serde_json::to_string(&moved).unwrap();
    cli.run(&[
        "HSET",
        &format!("sg:{{{user}}}:s:{}", recs[1].sid),
        "idp",
        &moved_json,
    ]);
    let end = (now_unix() + 3600).to_string();
    cli.run(&["ZADD", &ik, &end, "not json"]);
    cli.run(&["ZADD", &ik, &end, r#"["nobody","nothing"]"#]);
    assert_eq!(cli.run(&["ZCARD", &ik]), "6");
    let want: Vec<_> = {
        let mut v: Vec<_> = recs[2..]
            .iter()
            .map(|r| (r.user.clone(), r.sid.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(found(s, &p, IdpKey::Sub(&x)).await, want);
    assert_eq!(
        cli.run(&["ZCARD", &ik]),
        "3",
        "the vanished, the broken, the moved one kept"
    );
}

/// Key names, where they live and when they expire.
async fn keys_are_named_placed_and_expire(s: &dyn SessionStore, cli: &Cli) {
    let (p, x, sid) = (unique("kc"), unique("sub"), unique("sid"));
    let user = unique("u");
    let short = record(&user, 600, Some(link(&p, &x, Some(&sid))));
    let long = record(&user, 7200, Some(link(&p, &x, Some(&sid))));
    s.create(long.clone()).await.unwrap();
    s.create(short.clone()).await.unwrap();
    for ik in [idp_key("sid", &p, &sid), idp_key("sub", &p, &x)] {
        assert_eq!(cli.run(&["ZCARD", &ik]), "2", "{ik}");
        assert_eq!(
            cli.run(&["EXPIRETIME", &ik]),
            long.abs_end.to_string(),
            "{ik} expires with its last session"
        );
        let member = serde_json::to_string(&(&user, &long.sid)).unwrap();
        assert_eq!(cli.run(&["ZSCORE", &ik, &member]), long.abs_end.to_string());
    }
    let session_key = format!("sg:{{{user}}}:s:{}", long.sid);
    let stored: sessiongate::store::IdpLink =
        serde_json::from_str(&cli.run(&["HGET", &session_key, "idp"])).unwrap();
    assert_eq!(
        Some(stored),
        long.idp,
        "the link is one JSON field, as given"
    );
    let plain = record(&user, 600, None);
    s.create(plain.clone()).await.unwrap();
    let plain_key = format!("sg:{{{user}}}:s:{}", plain.sid);
    assert_eq!(
        cli.run(&["HEXISTS", &plain_key, "idp"]),
        "0",
        "no link, no field"
    );
    let k = unique("jti");
    let until = now_unix() + 300;
    assert!(s.first_use(&k, until).await.unwrap());
    assert_eq!(
        cli.run(&["EXPIRETIME", &format!("sg:once:{k}")]),
        until.to_string()
    );
    // A revoke takes its entries out at once (not only when a lookup finds the record gone),
    // and revoking the last session of a key removes the key.
    assert!(s.revoke(&user, &short.sid, 60).await.unwrap());
    for ik in [idp_key("sid", &p, &sid), idp_key("sub", &p, &x)] {
        assert_eq!(cli.run(&["ZCARD", &ik]), "1", "{ik} after a revoke");
    }
    s.revoke_all(&user, 60).await.unwrap();
    for ik in [idp_key("sid", &p, &sid), idp_key("sub", &p, &x)] {
        assert_eq!(cli.run(&["EXISTS", &ik]), "0", "{ik} after revoke-all");
    }
}

#[tokio::test]
async fn a_record_from_the_previous_version_still_loads_on_one_redis() {
    let redis = RedisServer::start().await;
    a_record_from_the_previous_version_still_loads(&*single(redis.url()), &Cli::of(&redis)).await
}

#[tokio::test]
async fn an_unreadable_link_is_no_session_on_one_redis() {
    let redis = RedisServer::start().await;
    an_unreadable_link_is_no_session(&*single(redis.url()), &Cli::of(&redis)).await
}

#[tokio::test]
async fn stale_index_entries_are_dropped_when_read_on_one_redis() {
    let redis = RedisServer::start().await;
    stale_index_entries_are_dropped_when_read(&*single(redis.url()), &Cli::of(&redis)).await
}

#[tokio::test]
async fn keys_are_named_placed_and_expire_on_one_redis() {
    let redis = RedisServer::start().await;
    keys_are_named_placed_and_expire(&*single(redis.url()), &Cli::of(&redis)).await
}

/// A login whose IdP index cannot be written must not leave a session that back-channel
/// logout cannot find: the gateway's Redis user may write everything but the index keys.
#[tokio::test]
async fn a_session_whose_index_cannot_be_written_does_not_start() {
    let redis = RedisServer::start().await;
    let acl = redis.cli(&[
        "ACL",
        "SETUSER",
        "noindex",
        "on",
        ">noindex-pw-5c1e",
        "~sg:{*",
        "~sg:revocations",
        "~sg:once:*",
        "&*",
        "+@all",
    ]);
    assert_eq!(acl.trim(), "OK", "{acl}");
    let s = single(format!(
        "redis://noindex:noindex-pw-5c1e@127.0.0.1:{}/0",
        redis.port
    ));
    let user = unique("u");
    let plain = record(&user, 3600, None);
    s.create(plain.clone())
        .await
        .expect("a session without a provider needs no index");
    let (p, x) = (unique("kc"), unique("sub"));
    let linked = record(&user, 3600, Some(link(&p, &x, Some("idp-sid"))));
    let err = s.create(linked.clone()).await;
    assert!(
        err.is_err(),
        "create must fail when the index cannot be written"
    );
    assert_eq!(
        s.get(&user, &linked.sid).await.unwrap(),
        None,
        "and take the record back"
    );
    let listed: Vec<String> = s
        .list(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.sid)
        .collect();
    assert_eq!(listed, vec![plain.sid.clone()]);
    assert!(
        !redis.keys().iter().any(|k| k.starts_with("sg:idp:")),
        "{:?}",
        redis.keys()
    );
}

// ---------------------------------------------------------------------------------------------
// A six-node Redis Cluster: every behaviour, in turn, on one cluster
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_idp_behaviour_holds_on_a_six_node_redis_cluster() {
    let cluster = RedisCluster::start_six().await;
    assert_eq!(cluster.ports.len(), 6);
    let s = clustered(&cluster);
    let cli = Cli::of_cluster(&cluster);
    c::idp_link_survives_every_path(&*s).await;
    c::records_without_idp_load(&*s).await;
    c::idp_sessions_by_sid_and_sub(&*s).await;
    c::ended_sessions_leave_the_index(&*s).await;
    c::index_is_bounded(&*s).await;
    c::update_identity_replaces_roles_and_link(&*s).await;
    c::update_identity_never_revives(&*s).await;
    c::first_use_once_then_expires(&*s).await;
    c::rotations_are_counted_per_window(&*s).await;
    c::first_use_race(s.clone()).await;
    c::second_factor_state(&*s).await;
    c::passkeys_state(&*s).await;
    c::second_factor_race(s.clone()).await;
    a_record_from_the_previous_version_still_loads(&*s, &cli).await;
    an_unreadable_link_is_no_session(&*s, &cli).await;
    stale_index_entries_are_dropped_when_read(&*s, &cli).await;
    keys_are_named_placed_and_expire(&*s, &cli).await;

    // The index is keyed by provider session, the record by user: other slots, one store.
    let slot = |k: &str| cli.run(&["CLUSTER", "KEYSLOT", k]);
    let (p, x) = (unique("kc"), unique("sub"));
    let user = (0..100)
        .map(|_| unique("u"))
        .find(|u| slot(&format!("sg:{{{u}}}:s:x")) != slot(&idp_key("sub", &p, &x)))
        .expect("a user whose keys live in another slot than the index");
    let r = record(&user, 3600, Some(link(&p, &x, None)));
    s.create(r.clone()).await.unwrap();
    assert_eq!(
        found(&*s, &p, IdpKey::Sub(&x)).await,
        vec![(user.clone(), r.sid.clone())]
    );
    assert!(s.revoke(&user, &r.sid, 60).await.unwrap());
    assert!(found(&*s, &p, IdpKey::Sub(&x)).await.is_empty());
}
