//! GCRA, the generic cell rate algorithm (ITU-T I.371; the token bucket in another form): a
//! bucket of capacity `burst`, refilled `COUNT` tokens per `DURATION`, kept as one number per
//! key — the theoretical arrival time (TAT) of the next request. Used by the rate limits
//! (`crate::ratelimit`).
//!
//! Written by hand rather than taken from a crate (`governor`) because the same arithmetic must
//! run inside Redis as one atomic Lua script (`store::redis`, [`REDIS_SCRIPT`]) so that every
//! instance charges one shared bucket; a crate's arithmetic could not be mirrored there line
//! for line, and the conformance suite (`store::conformance`) checks the two agree. All
//! arithmetic is in integer microseconds: Redis `TIME` gives microseconds, and a Lua number
//! (a double) holds the Unix time in microseconds exactly.
//!
//! [`GcraTable`] is a bounded table of buckets for one instance: the authority with the memory
//! store, and the fallback while Redis is unreachable.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use parking_lot::Mutex;

/// One bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// The emission interval `T`: one token comes back every `interval_us` (`DURATION / COUNT`,
    /// rounded up, so the rate is never more than the one configured; at least 1 µs).
    pub interval_us: u64,
    /// The bucket's capacity in tokens.
    pub burst: u64,
}

/// What one take did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Tokens taken (at most the number asked for; 0 is a refusal).
    pub granted: u64,
    /// Tokens left in the bucket after the take.
    pub remaining: u64,
    /// When `remaining` is 0: how long until one token is back (µs); 0 otherwise.
    pub retry_after_us: u64,
    /// How long until the bucket is full again (µs).
    pub reset_us: u64,
}

impl Gcra {
    /// `count` tokens per `window`, `burst` at most at once. `count`, `burst` and `window`
    /// must be non-zero (configuration validation refuses the rest).
    pub fn new(count: u64, window: Duration, burst: u64) -> Self {
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let count = count.max(1);
        Self {
            interval_us: window_us.div_ceil(count).max(1),
            burst: burst.max(1),
        }
    }

    /// The bucket's capacity as time: `burst × T`.
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(self.burst)
    }

    /// Take up to `want` tokens from the bucket whose TAT is `tat` (0 or any past time: a full
    /// bucket) at `now_us`. Returns the new TAT (unchanged when nothing was granted) and what
    /// the take did. The Lua script [`REDIS_SCRIPT`] is this function, line for line.
    pub fn take(&self, tat: u64, now_us: u64, want: u64) -> (u64, Take) {
        let t = self.interval_us;
        let tol = self.tolerance_us();
        let tat = tat.max(now_us);
        let used = tat - now_us;
        let available = tol.saturating_sub(used) / t;
        let granted = want.min(available);
        let new_tat = tat.saturating_add(granted.saturating_mul(t));
        let used = new_tat - now_us;
        let remaining = tol.saturating_sub(used) / t;
        let retry_after_us = if remaining == 0 {
            (used + t).saturating_sub(tol)
        } else {
            0
        };
        (
            new_tat,
            Take {
                granted,
                remaining,
                retry_after_us,
                reset_us: used,
            },
        )
    }
}

/// The Redis mirror of [`Gcra::take`], one atomic script on one key (so it is Redis Cluster
/// safe), on the Redis server's clock (`TIME`) so every instance shares one clock.
/// KEYS[1]: the bucket; ARGV: interval µs, burst, want. Returns
/// `{granted, remaining, retry_after_us, reset_us}`. The key expires when the bucket is full
/// again (a full bucket and no key are the same).
pub const REDIS_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tol = interval * tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local used = tat - now
local available = 0
if tol > used then available = math.floor((tol - used) / interval) end
local granted = math.min(want, available)
local new_tat = tat + granted * interval
used = new_tat - now
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(used / 1000))
end
local remaining = 0
if tol > used then remaining = math.floor((tol - used) / interval) end
local retry = 0
if remaining == 0 then retry = used + interval - tol end
return {granted, remaining, retry, used}
"#;

/// The Unix time in microseconds (the clock of the local tables).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How many buckets one [`GcraTable`] holds at most (see [`GcraTable::take`] for what a new
/// key does when it is full).
pub const TABLE_MAX: usize = 100_000;

const SHARDS: usize = 16;

/// A bounded table of buckets, sharded to keep the lock short on many cores.
///
/// Bounded: at most `cap` keys (rounded to the shards). A new key in a full shard first evicts
/// every bucket that is full again (TAT in the past: the same as no entry, so nothing is
/// forgotten); when none is, the eighth of the shard closest to full is evicted — those
/// clients get at most the tokens they were missing back, and no key is ever admitted without
/// a bucket. Memory stays under `cap` × (key + 8 bytes).
pub struct GcraTable<K> {
    shards: Vec<Mutex<HashMap<K, u64>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl<K: Hash + Eq> GcraTable<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: cap.div_ceil(SHARDS).max(1),
        }
    }

    /// Take up to `want` tokens for `key` at `now_us` (the key is copied only when new).
    pub fn take<Q>(&self, gcra: &Gcra, key: &Q, now_us: u64, want: u64) -> Take
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let Some(shard) = self.shards.get(i) else {
            // Unreachable (the index is reduced modulo the length); refuse rather than admit.
            return gcra.take(u64::MAX / 2, now_us, 0).1;
        };
        let mut map = shard.lock();
        let tat = match map.get(key) {
            Some(tat) => *tat,
            None => {
                if map.len() >= self.per_shard {
                    evict(&mut map, now_us);
                }
                0
            }
        };
        let (new_tat, take) = gcra.take(tat, now_us, want);
        if new_tat <= now_us {
            map.remove(key);
        } else if let Some(t) = map.get_mut(key) {
            *t = new_tat;
        } else {
            map.insert(key.to_owned(), new_tat);
        }
        take
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Make room in a full shard: drop the buckets that are full again; if none is, the eighth
/// closest to full.
fn evict<K: Hash + Eq>(map: &mut HashMap<K, u64>, now_us: u64) {
    let before = map.len();
    map.retain(|_, tat| *tat > now_us);
    if map.len() < before {
        return;
    }
    let mut tats: Vec<u64> = map.values().copied().collect();
    let n = (tats.len() / 8).max(1);
    let Some(idx) = n.checked_sub(1) else { return };
    let (_, cut, _) = tats.select_nth_unstable(idx);
    let cut = *cut;
    let mut left = n;
    map.retain(|_, tat| {
        if left > 0 && *tat <= cut {
            left -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn the_interval_rounds_up_so_the_rate_is_never_exceeded() {
        let g = Gcra::new(3, Duration::from_secs(1), 3);
        assert_eq!(g.interval_us, 333_334);
        let g = Gcra::new(100, Duration::from_secs(15 * 60), 100);
        assert_eq!(g.interval_us, 9 * S);
        // Faster than one a microsecond: one a microsecond.
        assert_eq!(
            Gcra::new(100_000_000, Duration::from_secs(1), 1).interval_us,
            1
        );
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_per_interval() {
        let g = Gcra::new(5, Duration::from_secs(2), 5); // T = 400 ms
        let now = 1_000 * S;
        let mut tat = 0;
        for i in 0..5 {
            let (t, take) = g.take(tat, now, 1);
            assert_eq!((take.granted, take.remaining), (1, 4 - i), "take {i}");
            tat = t;
        }
        let (t, refused) = g.take(tat, now, 1);
        assert_eq!(t, tat, "a refusal changes nothing");
        assert_eq!(refused.granted, 0);
        assert_eq!(refused.retry_after_us, 400_000);
        assert_eq!(refused.reset_us, 2 * S);
        // 399 ms later: still none; 400 ms: one.
        assert_eq!(g.take(tat, now + 399_999, 1).1.granted, 0);
        let (tat, one) = g.take(tat, now + 400_000, 1);
        assert_eq!((one.granted, one.remaining), (1, 0));
        // Two seconds of idleness fill it again, never beyond the burst.
        let full = g.take(tat, now + 100 * S, 0).1;
        assert_eq!((full.remaining, full.reset_us), (5, 0));
    }

    #[test]
    fn a_take_of_many_gets_what_is_there() {
        let g = Gcra::new(10, Duration::from_secs(1), 4);
        let (tat, t) = g.take(0, 50 * S, 16);
        assert_eq!((t.granted, t.remaining), (4, 0));
        assert_eq!(t.retry_after_us, 100_000);
        let (_, t) = g.take(tat, 50 * S + 250_000, 16);
        assert_eq!(t.granted, 2, "two intervals later, two tokens");
    }

    #[test]
    fn burst_smaller_and_larger_than_count() {
        let g = Gcra::new(10, Duration::from_secs(10), 2); // T = 1 s, capacity 2
        let (tat, t) = g.take(0, 0, 10);
        assert_eq!(t.granted, 2);
        assert_eq!(g.take(tat, S, 10).1.granted, 1);
        let g = Gcra::new(1, Duration::from_secs(1), 50);
        assert_eq!(g.take(0, 0, 100).1.granted, 50);
    }

    #[test]
    fn the_table_stays_bounded_and_evicts_full_buckets_first() {
        let g = Gcra::new(1, Duration::from_secs(10), 1);
        let table: GcraTable<u32> = GcraTable::new(SHARDS * 8);
        for k in 0..10_000u32 {
            table.take(&g, &k, 0, 1);
            assert!(table.len() <= SHARDS * 8, "{} keys", table.len());
        }
        // Key 10_000 was refused nothing: every key gets a bucket.
        assert_eq!(table.take(&g, &10_000, 0, 1).granted, 1);
        // A key still in the table stays refused while its bucket is empty.
        let kept = (0..10_001u32)
            .find(|k| table.take(&g, k, 0, 0).remaining == 0)
            .expect("some key kept");
        assert_eq!(table.take(&g, &kept, 0, 1).granted, 0);
        // Eleven seconds on, every bucket is full again: a new key evicts them all.
        let later = 11 * S;
        for k in 20_000..20_000 + SHARDS as u32 * 4 {
            table.take(&g, &k, later, 1);
        }
        assert!(table.len() <= SHARDS * 8);
    }

    #[test]
    fn a_bucket_that_is_full_again_leaves_the_table() {
        let g = Gcra::new(2, Duration::from_secs(1), 2);
        let table: GcraTable<&str> = GcraTable::new(100);
        table.take(&g, &"a", 0, 1);
        assert_eq!(table.len(), 1);
        table.take(&g, &"a", 10 * S, 0);
        assert!(table.is_empty());
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use crate::store::memory::MemoryStore;

    /// The store behaviour the Redis script must match (`tests/e2e/rate_limit.rs` runs it on
    /// a real `redis-server`), on the memory store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_take_matches_gcra() {
        crate::store::conformance::rate_take_matches_gcra(Arc::new(MemoryStore::new())).await
    }
}
